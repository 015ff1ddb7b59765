#!/usr/bin/env bash
# Attribution benchmark, as root: sudo bash test/bench/attribution.sh
# (1) batch, on the bench database of test/bench/bench.sh (reused when it
#     exists, else loaded: EVENTS, USERS): the plain-SQL query, the
#     attribute() aggregate, the C scan attribute_batch() (one pass with
#     propensity.batch_memory = BATCH_MEMORY, default 2GB, and several with
#     256MB) and attribution_backfill() against plain SQL writing the same
#     rows, in one run.
# (2) streaming: STREAM_EVENTS generated events with 10% out of order
#     (up to 6 hours) through ingest() in batches of BATCH, against the
#     same stream inserted by load_generated_events (no attribution), each
#     into a fresh database.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-1000000}
STREAM_EVENTS=${STREAM_EVENTS:-1000000}
STREAM_USERS=${STREAM_USERS:-100000}
BATCH=${BATCH:-10000}
DIR=${BENCH_DIR:-/tmp/propensity-bench}
. "$here/docker/pg-temp.sh"
build_and_install "$here"
trap 'pg_temp_stop "$DIR"' EXIT
conf=("shared_buffers = 4GB" "max_wal_size = 8GB" "work_mem = 64MB" "maintenance_work_mem = 1GB"
      "checkpoint_timeout = 30min" "synchronous_commit = off")
if [ -d "$DIR/data" ]; then
    as_pg pg_ctl -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
    export PGHOST=$DIR PGPORT=5497
else
    pg_temp_start "$DIR" 5497 "${conf[@]}"
    psql_pg -d postgres -c "CREATE DATABASE bench"
    psql_pg -d bench -c "CREATE EXTENSION propensity"
    psql_pg -d bench -c "SELECT propensity.load_generated_events(42, $EVENTS, $USERS, '2026-10-01', '30 days')"
    psql_pg -d bench -c "VACUUM (ANALYZE) propensity.events" -c "CHECKPOINT"
fi
psql_pg -d bench -c "ALTER EXTENSION propensity UPDATE"
psql_pg -d bench -c "SELECT count(*) AS events, count(*) FILTER (WHERE event_type = 'CN') AS conversions FROM propensity.events"
echo "== batch"
psql_pg -d bench -v bench_dir="$here/test/bench" -v batch_memory="${BATCH_MEMORY:-2GB}" \
    -f "$here/test/bench/attribution.sql"

echo "== streaming: $STREAM_EVENTS events, $STREAM_USERS users, 10% out of order, batches of $BATCH"
for db in stream_ingest stream_plain; do
    psql_pg -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    psql_pg -d $db -c "CREATE EXTENSION propensity" >/dev/null
done
psql_pg -d stream_plain <<SQL
\timing on
\echo '-- (i0) load_generated_events: the same stream, INSERT only'
SELECT propensity.load_generated_events(7, $STREAM_EVENTS, $STREAM_USERS, '2026-10-01', '30 days', 0.1, '6 hours');
SQL
psql_pg -d stream_ingest <<SQL
\timing on
\echo '-- (i) stream_generated_events: ingest() per batch, insert + attribution'
SELECT * FROM propensity.stream_generated_events(7, $STREAM_EVENTS, $STREAM_USERS, '2026-10-01', '30 days', 0.1, '6 hours', batch_size => $BATCH);
\timing off
SELECT kind, count(*) FROM propensity.attribution_current GROUP BY 1 ORDER BY 1;
SELECT * FROM propensity.attribution_engine_status();
SQL
