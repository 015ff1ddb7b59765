#!/usr/bin/env bash
# The propensity demo, from nothing, on Debian 12 as root:
#   sudo bash docker/demo.sh
# Installs what is missing, builds and installs the extension, starts a
# throwaway PostgreSQL 15, loads a generated event stream (10% delivered out
# of order), and shows partitions, the event mix and the top users by
# propensity with their features.  KEEP=1 leaves the server running.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-200000}
USERS=${USERS:-20000}
DIR=${DEMO_DIR:-/tmp/propensity-demo}

bash "$src/docker/install-deps.sh"
. "$src/docker/pg-temp.sh"
build_and_install "$src"
pg_temp_start "$DIR" 5496
if [ "${KEEP:-0}" != 1 ]; then trap 'pg_temp_stop "$DIR"' EXIT; fi

psql_pg -d postgres -c "CREATE DATABASE demo"
psql_pg -d demo <<SQL
CREATE EXTENSION propensity;
SET timezone = 'UTC';
\echo
\echo '== Load a generated stream: $EVENTS events, $USERS users, 30 days, 10% out of order'
SELECT propensity.load_generated_events(
    seed => 2026, n_events => $EVENTS, n_users => $USERS,
    start_time => '2026-10-01', duration => '30 days',
    out_of_order => 0.1, max_delay => '6 hours') AS events_loaded;

\echo '== Event mix'
SELECT event_type, count(*) AS events, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct
  FROM propensity.events GROUP BY event_type ORDER BY events DESC;

\echo '== Partitions (daily, created on demand)'
SELECT count(*) AS partitions, min(range_start) AS first, max(range_end) AS last
  FROM propensity.event_partitions;

\echo '== The default model'
SELECT m.name AS model, m.version, m.intercept, t.name AS term, t.feature, t.event_type,
       t.width, t.transform, t.coefficient
  FROM propensity.models m, unnest(m.terms) t WHERE m.name = 'seed';

\echo '== Top 10 users by propensity as of 2026-10-31 (features: impressions 30d, clicks 7d, paid search 2d, conversions 365d)'
SELECT user_id, round(score::numeric, 4) AS propensity,
       features[1]::int AS im_30d, features[2]::int AS cl_7d,
       features[3]::int AS ps_2d, features[4]::int AS cn_365d
  FROM propensity.score_all('2026-10-31')
 ORDER BY score DESC, user_id LIMIT 10;

\echo '== Propensity distribution'
SELECT width_bucket(score, 0, 1, 5) AS band,
       format('%s-%s', (width_bucket(score, 0, 1, 5) - 1) * 0.2, width_bucket(score, 0, 1, 5) * 0.2) AS score_range,
       count(*) AS users
  FROM propensity.score_all('2026-10-31') GROUP BY 1 ORDER BY 1;

\echo '== The top user again: features recomputed with the aggregates, and propensity.score()'
WITH u AS (SELECT user_id FROM propensity.score_all('2026-10-31') ORDER BY score DESC, user_id LIMIT 1)
SELECT u.user_id,
       (propensity.window_counts(e.event_type, e.event_time, '2026-10-31', '30 days')).im AS im_30d,
       (propensity.window_counts(e.event_type, e.event_time, '2026-10-31', '7 days')).cl AS cl_7d,
       (propensity.window_counts(e.event_type, e.event_time, '2026-10-31', '2 days')).ps AS ps_2d,
       (propensity.window_counts(e.event_type, e.event_time, '2026-10-31', '365 days')).cn AS cn_365d,
       round(propensity.score(u.user_id, '2026-10-31')::numeric, 4) AS propensity
  FROM u JOIN propensity.events e USING (user_id) GROUP BY u.user_id;
SQL
if [ "${KEEP:-0}" = 1 ]; then
    echo "server left running: psql -h $DIR -p 5496 -U postgres demo"
fi
