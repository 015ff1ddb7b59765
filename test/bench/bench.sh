#!/usr/bin/env bash
# Batch-scoring benchmark (issue 2): N events for U users over 30 days, and in
# the same run (a) score_all, (a2) the GROUP BY aggregate, (b) the plain SQL an
# analyst would write, (c) a bare scan.  Prints medians and ratios.
#   bash test/bench/bench.sh            # 10M events, 1M users
#   EVENTS=1000000 USERS=100000 bash test/bench/bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-1000000}
REPS=${REPS:-5}
DIR=${BENCH_DIR:-/tmp/propensity-bench}

bash "$here/docker/install-deps.sh"
. "$here/docker/pg-temp.sh"
build_and_install "$here"
trap 'pg_temp_stop "$DIR"' EXIT
conf=("shared_buffers = 4GB" "max_wal_size = 8GB" "work_mem = 64MB" "maintenance_work_mem = 1GB"
      "checkpoint_timeout = 30min" "synchronous_commit = off")
if [ "${BENCH_REUSE:-0}" = 1 ] && [ -d "$DIR/data" ]; then
    # reuse the data a previous run loaded (same EVENTS and USERS)
    as_pg pg_ctl -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
    export PGHOST=$DIR PGPORT=5497
else
    pg_temp_start "$DIR" 5497 "${conf[@]}"
    psql_pg -d postgres -c "CREATE DATABASE bench"
    psql_pg -d bench -c "CREATE EXTENSION propensity"
    echo "loading $EVENTS events for $USERS users..."
    start=$(date +%s)
    psql_pg -d bench -c "SELECT propensity.load_generated_events(42, $EVENTS, $USERS, '2026-10-01', '30 days')"
    psql_pg -d bench -c "VACUUM (ANALYZE) propensity.events" -c "CHECKPOINT"
    echo "loaded in $(( $(date +%s) - start )) s"
fi
psql_pg -d bench -c "SELECT count(*) AS events, count(DISTINCT user_id) AS users,
    pg_size_pretty((SELECT sum(pg_relation_size(partition)) FROM propensity.event_partitions)) AS heap
    FROM propensity.events"
PGOPTIONS="-c bench.reps=$REPS" psql_pg -d bench -f "$here/test/bench/bench.sql"
