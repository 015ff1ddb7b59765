#!/usr/bin/env bash
# Attribution benchmark, as root: bash test/bench/attribution.sh
# (1) batch, on the bench database of test/bench/bench.sh (reused when it
#     exists, else loaded: EVENTS, USERS): the plain-SQL query, the
#     attribute() aggregate, the C scan attribute_batch() (with
#     propensity.batch_memory = BATCH_MEMORY, default 2GB, and with the
#     default 256MB) and attribution_backfill() against plain SQL writing
#     the same rows, in one run.
# (2) streaming: STREAM_EVENTS generated events with 10% out of order
#     (up to 6 hours) through ingest() in batches of BATCH, against the
#     same stream inserted by load_generated_events (no attribution), each
#     into a fresh database; ingest()'s DEBUG1 phases, summed, give the
#     engine's own rate and the rate of storing the rows.
# (3) a hot key: HOT_KEY_EVENTS (default 100,000) events of one user and
#     advertiser through ingest() and attribute_batch(), against INSERT of
#     the same rows (test/bench/hot_key.sql).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-1000000}
STREAM_EVENTS=${STREAM_EVENTS:-1000000}
STREAM_USERS=${STREAM_USERS:-100000}
BATCH=${BATCH:-10000}
HOT_KEY_EVENTS=${HOT_KEY_EVENTS:-100000}
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
# ingest() reports each batch's phases at DEBUG1: summed, they split the
# run into storing the rows and the engine's work (its own rate)
debug=$(mktemp)
psql_pg -d stream_ingest 2>"$debug" <<SQL
\timing on
\echo '-- (i) stream_generated_events: ingest() per batch, insert + attribution'
SET client_min_messages = debug1;
SELECT * FROM propensity.stream_generated_events(7, $STREAM_EVENTS, $STREAM_USERS, '2026-10-01', '30 days', 0.1, '6 hours', batch_size => $BATCH);
RESET client_min_messages;
\timing off
SELECT kind, count(*) FROM propensity.attribution_current GROUP BY 1 ORDER BY 1;
SELECT * FROM propensity.attribution_engine_status();
SQL
awk -F'[:,]' '/ingest: .* events/ {
        for (i = 1; i <= NF; i++) {
            if ($i ~ / new$/) { split($i, w, " "); n += w[1] }
            if ($i ~ /engine sync/) { split($i, w, " "); sync += w[3] }
            if ($i ~ /store/) { split($i, w, " "); store += w[2] }
            if ($i ~ /attribution/) { split($i, w, " "); attr += w[2] }
        }
    }
    END {
        if (n == 0) { print "-- (i) no ingest() phases reported"; exit 1 }
        printf "-- (i) phases summed over the batches: %d new events; engine sync %.0f ms, store %.0f ms, attribution %.0f ms\n", n, sync, store, attr
        printf "-- (i) engine alone (attribution phase): %.0f events/s; storing alone: %.0f events/s\n", n / (attr / 1000), n / (store / 1000)
    }' "$debug"
grep -v 'DEBUG:' "$debug" >&2 || true
rm -f "$debug"

echo "== hot key: $HOT_KEY_EVENTS events of one (user, advertiser)"
psql_pg -d postgres -c "DROP DATABASE IF EXISTS stream_hot" -c "CREATE DATABASE stream_hot" >/dev/null
psql_pg -d stream_hot -c "CREATE EXTENSION propensity" >/dev/null
PGOPTIONS="-c bench.batch=$BATCH" psql_pg -d stream_hot -v n="$HOT_KEY_EVENTS" -f "$here/test/bench/hot_key.sql"
