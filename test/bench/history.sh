#!/usr/bin/env bash
# Propensity-over-time benchmark (issue 5), as root:
#   bash test/bench/history.sh          (make bench-history)
# In one run, on one throwaway cluster: one generated stream of USERS users
# over 31 days, 10% of it out of order by up to a day; its first EVENTS
# messages (in arrival order) are stored, the next BATCHES x BATCH are the
# new events of (2).
#  (1) the whole event-time history of the seed model built from the
#      stored events (track_history);
#  (2) BATCHES batches of BATCH new events, each applied to the same stored
#      state and rolled back, three ways: the incremental refresh that ingest() and
#      the worker run (each user's points from its earliest new event on),
#      the same refresh recomputing the affected users' whole histories,
#      and the naive rescoring (delete the affected users' points, insert
#      them all recomputed);
#  (3) rescoring every user as of the stream's end into a snapshot
#      (rescore()) against plain SQL computing and writing the same scores,
#      and the computation alone (current_propensity against plain SQL),
#      JIT off and on.
# Figures are ratios against the baseline measured in the same run.
#   EVENTS=1000000 USERS=100000 bash test/bench/history.sh
# PARTITION_INTERVAL=week partitions the events by week; SKIP_RESCORE=1 stops
# after (2).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-1000000}
BATCHES=${BATCHES:-20}
BATCH=${BATCH:-10000}
REPS=${REPS:-3}
PARTITION_INTERVAL=${PARTITION_INTERVAL:-day}
DIR=${BENCH_DIR:-/tmp/propensity-bench-history}

bash "$here/docker/install-deps.sh"
. "$here/docker/pg-temp.sh"
build_and_install "$here"
trap 'pg_temp_stop "$DIR"' EXIT
pg_temp_start "$DIR" 5494 "shared_buffers = 4GB" "max_wal_size = 16GB" "work_mem = 64MB" \
    "maintenance_work_mem = 1GB" "checkpoint_timeout = 30min" "synchronous_commit = off"
psql_pg -d postgres -c "CREATE DATABASE bench"
psql_pg -d bench -c "CREATE EXTENSION propensity"
psql_pg -d bench -c "ALTER DATABASE bench SET propensity.partition_interval = '$PARTITION_INTERVAL'"
PGOPTIONS="-c bench.events=$EVENTS -c bench.reps=$REPS -c bench.batches=$BATCHES -c bench.batch=$BATCH -c bench.users=$USERS" \
    psql_pg -d bench ${SKIP_RESCORE:+-v skip_rescore=1} -f "$here/test/bench/history.sql"
