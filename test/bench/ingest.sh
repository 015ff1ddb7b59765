#!/usr/bin/env bash
# Ingest benchmark, as root: bash test/bench/ingest.sh  (make bench-ingest)
# In one run, on one throwaway cluster:
#   (p) MESSAGES generated events produced to the queue as Avro (wire format);
#   (c) the baseline: the same rows by binary COPY into the events table
#       (same partitions, same indexes);
#   (w) the ingest worker draining the queue into the same, emptied table,
#       events only (a subscription with attribute => false);
#   (a) the same with attribution in the worker's transaction;
#   (h) events only, with the seed model's history tracked;
#   (ah) attribution and the seed model's history (the product's main
#       streaming job); for (h) and (ah) the time of the history stage
#       (history_refresh) and of its computation from the stored events
#       (history_points: reading each user's events and scoring them) is
#       taken from pg_stat_user_functions, so the figures show where the
#       time goes;
#   (l) latency at a steady produced rate (RATE messages/s for SECONDS):
#       producer commit to the commit that makes the event visible, p50 and
#       p99, from commit timestamps.
# Figures are printed as ratios against (c) measured in the same run.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
MESSAGES=${MESSAGES:-10000000}
USERS=${USERS:-1000000}
RATE=${RATE:-50000}
SECONDS_STEADY=${SECONDS_STEADY:-20}
DIR=${BENCH_DIR:-/tmp/propensity-bench-ingest}
. "$here/docker/pg-temp.sh"
build_and_install "$here"
trap 'pg_temp_stop "$DIR"' EXIT
pg_temp_start "$DIR" 5495 "shared_buffers = 4GB" "max_wal_size = 16GB" "work_mem = 64MB" \
    "maintenance_work_mem = 1GB" "checkpoint_timeout = 30min" "track_commit_timestamp = on" \
    "propensity.database = 'bench'" "propensity.batch_size = 10000" "propensity.poll_interval = 20" \
    "track_functions = all"
psql_pg -d postgres -c "CREATE DATABASE bench"
bin="$DIR/events.bin"

psql_pg -d bench <<SQL
CREATE EXTENSION propensity;
SET jit = off;
\echo '== setup: $MESSAGES generated events (10% out of order by up to 6 hours) into a staging table'
CREATE UNLOGGED TABLE gen AS
SELECT row_number() OVER () AS n, ROW(g.event_time, g.user_id, g.event_type, g.event_id, g.advertiser_id,
           g.campaign_id, g.auction_id, g.pixel_id, g.publisher, g.creative, g.placement,
           g.product, g.quantity, g.revenue)::propensity.events AS e
  FROM propensity.generate_events(11, $MESSAGES, $USERS, '2026-10-01', '30 days', 0.1, '6 hours') g;
CREATE INDEX ON gen (n);
VACUUM ANALYZE gen;
SELECT propensity.ensure_partitions('2026-09-30', '2026-11-02');
SELECT propensity.create_topic('events', 8);
-- waits until a consumer group has committed n messages
CREATE FUNCTION wait_consumed(grp text, n bigint) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    WHILE (SELECT messages FROM propensity.subscriptions WHERE consumer_group = grp) < n LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END
\$\$;
COPY (SELECT (e).* FROM gen ORDER BY n) TO '$bin' (FORMAT binary);
\timing on
\echo '== (p) produce $MESSAGES Avro messages, 100000 per transaction'
DO \$\$
DECLARE lo bigint := 0;
BEGIN
    WHILE lo < $MESSAGES LOOP
        PERFORM propensity.produce_many('events',
                  ARRAY(SELECT (e).user_id FROM gen WHERE n > lo AND n <= lo + 100000 ORDER BY n),
                  propensity.encode_events(ARRAY(SELECT e FROM gen WHERE n > lo AND n <= lo + 100000 ORDER BY n)));
        lo := lo + 100000;
    END LOOP;
END
\$\$;
\timing off
CHECKPOINT;
\echo '== (c) binary COPY of the same rows into propensity.events (PK + user/time index)'
SELECT clock_timestamp() AS t0 \gset
COPY propensity.events FROM '$bin' (FORMAT binary);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS copy_s \gset
SELECT round(:copy_s::numeric, 2) AS copy_seconds, round($MESSAGES / :copy_s) AS copy_rows_per_s;
TRUNCATE propensity.events;
CHECKPOINT;
\echo '== (w) the worker drains the queue: events only'
SELECT clock_timestamp() AS t0 \gset
SELECT propensity.subscribe('events', 'plain', attribute => false);
SELECT wait_consumed('plain', $MESSAGES);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS worker_s \gset
SELECT round(:worker_s::numeric, 2) AS worker_seconds, round($MESSAGES / :worker_s) AS worker_msgs_per_s,
       round((:copy_s / :worker_s)::numeric, 2) AS worker_vs_copy,
       (SELECT count(*) FROM propensity.events) AS events_stored;
SELECT propensity.pause_subscription('events', 'plain');
TRUNCATE propensity.events;
CHECKPOINT;
\echo '== (a) the worker drains the queue: events and attribution'
SELECT clock_timestamp() AS t0 \gset
SELECT propensity.subscribe('events', 'attr', attribute => true);
SELECT wait_consumed('attr', $MESSAGES);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS attr_s \gset
SELECT round(:attr_s::numeric, 2) AS worker_seconds, round($MESSAGES / :attr_s) AS worker_msgs_per_s,
       round((:copy_s / :attr_s)::numeric, 2) AS worker_vs_copy,
       (SELECT count(*) FROM propensity.events) AS events_stored,
       (SELECT count(*) FROM propensity.attribution_current) AS conversions_attributed;
SELECT propensity.pause_subscription('events', 'attr');
TRUNCATE propensity.events;
CHECKPOINT;
\echo '== (h) the worker drains the queue: events and the seed model''s history'
SELECT propensity.track_history('seed');
SELECT pg_stat_reset();
SELECT clock_timestamp() AS t0 \gset
SELECT propensity.subscribe('events', 'hist', attribute => false);
SELECT wait_consumed('hist', $MESSAGES);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS hist_s \gset
SELECT pg_sleep(1);
SELECT round(:hist_s::numeric, 2) AS worker_seconds, round($MESSAGES / :hist_s) AS worker_msgs_per_s,
       round((:copy_s / :hist_s)::numeric, 2) AS worker_vs_copy,
       round((:worker_s / :hist_s)::numeric, 2) AS h_vs_w,
       (SELECT count(*) FROM propensity.score_history) AS history_points;
SELECT funcname, calls, round((total_time / 1000)::numeric, 2) AS total_s,
       round((self_time / 1000)::numeric, 2) AS self_s,
       round((total_time / 1000 / :hist_s * 100)::numeric, 1) AS pct_of_worker
  FROM pg_stat_user_functions WHERE schemaname = 'propensity'
   AND funcname IN ('history_refresh', 'history_points') ORDER BY 1;
SELECT propensity.pause_subscription('events', 'hist');
TRUNCATE propensity.events, propensity.score_history, propensity.score_history_changelog;
SELECT * FROM propensity.attribution_backfill();
CHECKPOINT;
\echo '== (ah) the worker drains the queue: events, attribution and the seed model''s history'
SELECT pg_stat_reset();
SELECT clock_timestamp() AS t0 \gset
SELECT propensity.subscribe('events', 'both', attribute => true);
SELECT wait_consumed('both', $MESSAGES);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS both_s \gset
SELECT pg_sleep(1);
SELECT round(:both_s::numeric, 2) AS worker_seconds, round($MESSAGES / :both_s) AS worker_msgs_per_s,
       round((:copy_s / :both_s)::numeric, 2) AS worker_vs_copy,
       round((:worker_s / :both_s)::numeric, 2) AS ah_vs_w,
       round((:worker_s / :attr_s)::numeric, 2) AS a_vs_w,
       (SELECT count(*) FROM propensity.attribution_current) AS conversions_attributed,
       (SELECT count(*) FROM propensity.score_history) AS history_points;
SELECT funcname, calls, round((total_time / 1000)::numeric, 2) AS total_s,
       round((self_time / 1000)::numeric, 2) AS self_s,
       round((total_time / 1000 / :both_s * 100)::numeric, 1) AS pct_of_worker
  FROM pg_stat_user_functions WHERE schemaname = 'propensity'
   AND funcname IN ('history_refresh', 'history_points') ORDER BY 1;
SELECT propensity.pause_subscription('events', 'both');
SELECT propensity.untrack_history('seed');
SQL

echo "== (l) latency: $RATE messages/s for $SECONDS_STEADY s, producer commit to visible (worker commit)"
for mode in plain attr; do
    psql_pg -d bench <<SQL
SELECT propensity.create_topic('steady_$mode', 8);
SELECT propensity.subscribe('steady_$mode', 'lat_$mode', attribute => ('$mode' = 'attr'));
CALL propensity.run_producer('steady_$mode', 'all', seed => $( [ $mode = plain ] && echo 99 || echo 98 ), n_events => $((RATE * SECONDS_STEADY)), n_users => 100000,
     start_time => '2026-11-05', duration => '1 day', out_of_order => 0.1, rate => $RATE, batch_size => $((RATE / 100)));
SELECT wait_consumed('lat_$mode', $((RATE * SECONDS_STEADY)));
SELECT propensity.pause_subscription('steady_$mode', 'lat_$mode');
SELECT 'queue_' || topic_id || '_0' AS tbl FROM propensity.topics WHERE topic = 'steady_$mode' \\gset
WITH m AS (
    SELECT (propensity.decode_message(q.value)).event_id AS event_id,
           pg_xact_commit_timestamp(q.txid::xid) AS produced
      FROM propensity.:"tbl" q
), v AS (
    SELECT m.event_id, extract(epoch FROM pg_xact_commit_timestamp(e.xmin) - m.produced) * 1000 AS ms
      FROM m JOIN propensity.events e ON e.event_id = m.event_id
     WHERE e.event_time >= '2026-11-04'
)
SELECT '$mode' AS worker, count(*) AS messages,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p99_ms,
       round(max(ms)::numeric, 1) AS max_ms
  FROM v;
SQL
done
