#!/usr/bin/env bash
# Fitting and scoring benchmark (issue 6): in one run,
#  (1) logistic regression on EXAMPLES examples x 5 features drawn from a
#      known model: seconds per Newton/IRLS iteration, serial and parallel,
#      JIT off and on, against the same pass written in plain SQL (the 5
#      gradient and 15 Hessian sums an analyst would write) and a bare scan;
#  (2) the fitted model as a model version: fit_model() on a generated
#      stream of EVENTS events (5 terms), then score_all() under it against
#      the plain-SQL scoring of the same 5 terms.
#   bash test/bench/fit.sh                         # 1M examples, 10M events
#   EXAMPLES=100000 EVENTS=1000000 USERS=100000 bash test/bench/fit.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
EXAMPLES=${EXAMPLES:-1000000}
EVENTS=${EVENTS:-10000000}
USERS=${USERS:-1000000}
REPS=${REPS:-3}
DIR=${BENCH_DIR:-/tmp/propensity-bench-fit}

bash "$here/docker/install-deps.sh"
. "$here/docker/pg-temp.sh"
build_and_install "$here"
trap 'pg_temp_stop "$DIR"' EXIT
pg_temp_start "$DIR" 5496 "shared_buffers = 4GB" "max_wal_size = 8GB" "work_mem = 64MB" \
    "maintenance_work_mem = 1GB" "checkpoint_timeout = 30min" "synchronous_commit = off" \
    "max_parallel_workers_per_gather = 2"
psql_pg -d postgres -c "CREATE DATABASE bench"
psql_pg -d bench -c "CREATE EXTENSION propensity"
echo "loading $EVENTS events for $USERS users..."
psql_pg -d bench -c "SELECT propensity.load_generated_events(42, $EVENTS, $USERS, '2026-10-01', '30 days')" \
    -c "VACUUM (ANALYZE) propensity.events" -c "CHECKPOINT"
PGOPTIONS="-c bench.reps=$REPS -c bench.examples=$EXAMPLES" psql_pg -d bench -f "$here/test/bench/fit.sql"
