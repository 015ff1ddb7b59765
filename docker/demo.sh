#!/usr/bin/env bash
# The propensity demo, from nothing, on Debian 12 as root:
#   bash docker/demo.sh
# Installs what is missing, builds and installs the extension, starts a
# throwaway PostgreSQL 15 whose ingest worker serves the demo database, runs
# the two producers (marketing events as Avro, conversions as JSON; 10%
# delivered out of order, 0.1% malformed) into the embedded queue, lets the
# worker drain it into the event store with attribution, and shows the queue
# status, the dead letters, partitions, the event mix, the top users by
# propensity with their features, and PC/PV attribution: totals, a
# retraction, the daily view; then fits a model on the stream and evaluates
# it next to the seed model on a held-out range.  The seed model's
# event-time history is kept as the events stream in; one user's trajectory
# is shown, then the dashboard views by day, current propensity and its
# snapshot, the pg_cron schedules, and a new seed version taking over the
# history.
# SOURCE=kafka runs the same on Apache Kafka: librdkafka's mock cluster
# (test/kafka/mock_cluster) stands in for a broker, confluent-kafka
# (docker/kafka_produce.py) produces to it, and the worker consumes it as a
# Kafka source.
# KEEP=1 leaves the server running.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
EVENTS=${EVENTS:-200000}
USERS=${USERS:-20000}
DIR=${DEMO_DIR:-/tmp/propensity-demo}
SOURCE=${SOURCE:-queue}
case "$SOURCE" in queue|kafka) ;; *) echo "SOURCE must be queue or kafka, not $SOURCE" >&2; exit 2 ;; esac

bash "$src/docker/install-deps.sh"
. "$src/docker/pg-temp.sh"
build_and_install "$src"
pg_temp_start "$DIR" 5496 "shared_preload_libraries = 'propensity,pg_cron'" \
    "cron.database_name = 'demo'" "cron.use_background_workers = on"
if [ "${KEEP:-0}" != 1 ]; then trap 'pg_temp_stop "$DIR"; stop_kafka' EXIT; fi

stop_kafka() { [ -z "${mock_pid:-}" ] || kill "$mock_pid" "$hold_pid" 2>/dev/null || true; }
if [ "$SOURCE" = kafka ]; then
    # the broker: librdkafka's mock cluster, one broker, topic events with 8 partitions
    make -C "$src" -s test/kafka/mock_cluster
    rm -f "$DIR/mock.in"; mkfifo "$DIR/mock.in"
    sleep infinity > "$DIR/mock.in" & hold_pid=$!
    "$src/test/kafka/mock_cluster" 1 events:8 < "$DIR/mock.in" > "$DIR/mock.out" 2> "$DIR/mock.err" &
    mock_pid=$!
    for _ in $(seq 100); do [ -s "$DIR/mock.out" ] && break; sleep 0.1; done
    bootstrap=$(head -1 "$DIR/mock.out")
    echo "== Kafka: librdkafka's mock cluster at $bootstrap stands in for a broker"
    SETUP_SQL="SELECT propensity.create_kafka_source('events', '$bootstrap', 'events', kafka_group => 'propensity-demo');"
    # messages reach Kafka through confluent-kafka, fed by the server (COPY TO PROGRAM)
    to_kafka="COPY (SELECT k, m FROM (SELECT unnest(keys) AS k, replace(encode(unnest(msgs), 'base64'), E'\\n', '') AS m FROM batch) b)
              TO PROGRAM '/usr/bin/python3 $src/docker/kafka_produce.py $bootstrap events'"
    LAG_SQL="SELECT $EVENTS - coalesce(sum(next_offset), 0) FROM propensity.kafka_offsets WHERE source = 'events'"
    STATUS_SQL="SELECT partition, next_offset, high_watermark, lag, round(messages_per_second) AS msgs_per_s, dead_letters, last_error
  FROM propensity.kafka_status ORDER BY partition;
SELECT messages, dead_letters, batches FROM propensity.kafka_sources;"
    CONSUMED_SQL="SELECT messages FROM propensity.kafka_sources"
    REDELIVER_SQL="CREATE TEMP TABLE batch AS
SELECT ARRAY(SELECT user_id FROM propensity.events ORDER BY event_id LIMIT 10000) AS keys,
       propensity.encode_events(ARRAY(SELECT e FROM propensity.events e ORDER BY event_id LIMIT 10000)) AS msgs;
$to_kafka;
DO \$\$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT sum(next_offset) FROM propensity.kafka_offsets WHERE source = 'events') = $EVENTS + 10000;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
\$\$;"
else
    SETUP_SQL="SELECT propensity.create_topic('events', partitions => 8);
SELECT propensity.subscribe('events');"
    LAG_SQL="SELECT sum(lag) FROM propensity.queue_lag('events')"
    STATUS_SQL="SELECT partition, committed_offset, lag, round(messages_per_second) AS msgs_per_s, dead_letters, last_error
  FROM propensity.queue_status ORDER BY partition;
SELECT messages, dead_letters, batches FROM propensity.subscriptions;"
    CONSUMED_SQL="SELECT messages FROM propensity.subscriptions"
    REDELIVER_SQL="SELECT propensity.produce_many('events', ARRAY(SELECT user_id FROM propensity.events ORDER BY event_id LIMIT 10000),
         propensity.encode_events(ARRAY(SELECT e FROM propensity.events e ORDER BY event_id LIMIT 10000)));
DO \$\$
BEGIN
    FOR i IN 1..600 LOOP
        EXIT WHEN (SELECT sum(lag) FROM propensity.queue_lag('events')) = 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
\$\$;"
fi

psql_pg -d postgres -c "CREATE DATABASE demo"
psql_pg -d demo <<SQL
CREATE EXTENSION propensity;
\echo
\echo '== A source with 8 partitions ($SOURCE), consumed by the ingest worker'
$SETUP_SQL
\echo '== Keep the event-time propensity history of the seed model (docs/computing.md section 4) as events arrive'
SELECT propensity.track_history('seed') AS points_so_far;
SELECT propensity.worker_start() IS NOT NULL AS worker_running;
SQL

# The prototype's two producers, side by side, each at its share of the
# stream's pace, so the worker sees them interleaved as in production.
echo "== Producers: $EVENTS generated events, $USERS users, 30 days, 10% out of order by up to a day, 0.1% malformed"
producer() {  # kind format rate
    psql_pg -d demo -c "CALL propensity.run_producer('events', '$1', seed => 2026, n_events => $EVENTS,
        n_users => $USERS, start_time => '2026-10-01', duration => '30 days', out_of_order => 0.1,
        max_delay => '1 day', malformed => 0.001, rate => $3, format => '$2', batch_size => 1000)"
}
kafka_producer() {  # kind format
    psql_pg -d demo -c "CREATE TEMP TABLE batch AS
        SELECT array_agg(g.user_id ORDER BY g.arrival_time) AS keys,
               propensity.producer_messages(
                   array_agg(ROW(g.event_time, g.user_id, g.event_type, g.event_id, g.advertiser_id, g.campaign_id,
                                 g.auction_id, g.pixel_id, g.publisher, g.creative, g.placement, g.product,
                                 g.quantity, g.revenue)::propensity.events ORDER BY g.arrival_time),
                   array_agg(abs(hashtext(g.event_id)) % 1000 = 0 ORDER BY g.arrival_time), '$2') AS msgs
          FROM propensity.generate_events(2026, $EVENTS, $USERS, '2026-10-01', '30 days', out_of_order => 0.1,
                                          max_delay => '1 day') g
         WHERE (g.event_type = 'CN') = ('$1' = 'conversions')" -c "$to_kafka"
}
echo "   marketing events (IM, CL, PS) as Avro in the Confluent wire format, and conversions (CN) as JSON:"
if [ "$SOURCE" = kafka ]; then
    kafka_producer marketing avro > "$DIR/producer-marketing.out" & p1=$!
    kafka_producer conversions json > "$DIR/producer-conversions.out" & p2=$!
else
    producer marketing avro $((EVENTS / 8)) > "$DIR/producer-marketing.out" & p1=$!
    producer conversions json $((EVENTS / 160)) > "$DIR/producer-conversions.out" & p2=$!
fi
wait "$p1" "$p2"
cat "$DIR/producer-marketing.out" "$DIR/producer-conversions.out"

psql_pg -d demo <<SQL
SET timezone = 'UTC';
\echo '== Waiting for the worker to drain the $SOURCE'
DO \$\$
BEGIN
    FOR i IN 1..3000 LOOP
        EXIT WHEN ($LAG_SQL) = 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
\$\$;
\echo '== Status per partition'
$STATUS_SQL
\echo '== Dead letters by reason (each kept with its topic, partition, offset and bytes)'
SELECT error, count(*) FROM propensity.dead_letters GROUP BY error ORDER BY count(*) DESC;
\echo '== Every message is accounted for: produced = stored events + dead letters'
SELECT (SELECT count(*) FROM propensity.events) AS events,
       (SELECT count(*) FROM propensity.dead_letters) AS dead_letters,
       ($CONSUMED_SQL) AS consumed;

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
\echo
\echo '== Attribution (docs/computing.md section 5): conversions by credit'
SELECT kind, count(*) AS conversions FROM propensity.attribution_current GROUP BY kind ORDER BY kind;
\echo '== Top 10 campaigns by post-click conversions (attribution_totals)'
SELECT advertiser_id, campaign_id, impressions, clicks, pc, pv
  FROM propensity.attribution_totals WHERE campaign_id IS NOT NULL
 ORDER BY pc DESC, pv DESC, advertiser_id, campaign_id LIMIT 10;
\echo '== The changelog: credits (+1) and retractions (-1) as late events arrived'
SELECT kind, sum(delta) FILTER (WHERE delta > 0) AS credits, -sum(delta) FILTER (WHERE delta < 0) AS retractions,
       sum(delta) AS net
  FROM propensity.attribution_changelog GROUP BY kind ORDER BY kind;
\echo '== One corrected conversion, step by step'
WITH c AS (SELECT conversion_event_id FROM propensity.attribution_changelog
            WHERE delta = -1 ORDER BY seq LIMIT 1)
SELECT l.batch, l.conversion_event_id, l.conversion_time, l.kind, l.campaign_id,
       l.impression_event_id, l.delta
  FROM propensity.attribution_changelog l JOIN c USING (conversion_event_id) ORDER BY l.seq;
\echo '== Redelivering 10000 stored events through the $SOURCE changes nothing'
SELECT generation AS generation_before FROM propensity.attribution_state \\gset
$REDELIVER_SQL
SELECT (SELECT count(*) FROM propensity.events) AS events,
       (SELECT generation FROM propensity.attribution_state) = :generation_before AS attribution_unchanged;
\echo '== Backfill (the batch scan over the stored events, same rules) reaches the same state'
CREATE TEMP TABLE streamed AS SELECT * FROM propensity.attribution_current;
SELECT * FROM propensity.attribution_backfill();
SELECT count(*) AS conversions_whose_credit_differs
  FROM streamed s JOIN propensity.attribution_current a USING (conversion_event_id, conversion_time)
 WHERE (s.kind, s.campaign_id, s.impression_event_id) IS DISTINCT FROM (a.kind, a.campaign_id, a.impression_event_id);
\echo '== Dashboard view attribution_daily: the 5 busiest days of advertiser 1'
SELECT propensity.refresh_attribution_views();
SELECT day, sum(impressions) AS impressions, sum(clicks) AS clicks, sum(pc) AS pc, sum(pv) AS pv,
       sum(unattributed) AS unattributed
  FROM propensity.attribution_daily WHERE advertiser_id = 1
 GROUP BY day ORDER BY impressions DESC, day LIMIT 5;
\echo
\echo '== Propensity over time: the busiest user''s trajectory (seed model), one point per event time'
WITH u AS (SELECT user_id FROM propensity.score_history GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1)
SELECT s.user_id, s.event_time, e.types AS events, round(s.score::numeric, 4) AS propensity,
       (SELECT count(*) FROM propensity.score_history_changelog c
         WHERE c.model = s.model AND c.user_id = s.user_id AND c.event_time = s.event_time) - 1 AS corrections
  FROM propensity.score_history s JOIN u USING (user_id)
  CROSS JOIN LATERAL (SELECT string_agg(ev.event_type, ',') AS types FROM propensity.events ev
                       WHERE ev.user_id = s.user_id AND ev.event_time = s.event_time) e
 WHERE s.model = 'seed'
 ORDER BY s.event_time LIMIT 15;
\echo '== History changelog: points written as events streamed in, and later points corrected by late events'
SELECT count(*) FILTER (WHERE old_score IS NULL) AS new_points, count(*) FILTER (WHERE old_score IS NOT NULL) AS corrections,
       (SELECT count(*) FROM propensity.score_history) AS points_now
  FROM propensity.score_history_changelog;
SELECT count(*) AS points_differing_from_a_recomputation
  FROM (SELECT * FROM propensity.score_history WHERE model = 'seed') s
  FULL JOIN propensity.history_points(propensity.model_id('seed')) p USING (user_id, event_time)
 WHERE s.score IS DISTINCT FROM p.score;
\echo '== Dashboards (refresh_dashboards): the seed model by day, users with an event that day at their last score there'
SELECT propensity.refresh_dashboards(concurrent => false);
SELECT o.bucket::date AS day, o.users, round(o.mean_score::numeric, 3) AS mean, round(o.p10::numeric, 3) AS p10,
       round(o.median::numeric, 3) AS median, round(o.p90::numeric, 3) AS p90,
       (SELECT string_agg(b.users::text, ' ' ORDER BY b.band) FROM propensity.propensity_score_bands b
         WHERE b.model = o.model AND b.bucket = o.bucket) AS users_per_band_0_to_1
  FROM propensity.propensity_over_time o WHERE o.model = 'seed' AND o.bucket >= '2026-10-20' ORDER BY o.bucket;
\echo '== Current propensity, decay since the last event included: a snapshot as of 2026-10-31 (rescore) and as of now'
SELECT propensity.rescore('seed', '2026-10-31') AS users_scored;
SELECT as_of::date, users, round(mean_score::numeric, 4) AS mean_score, model_id FROM propensity.snapshot_runs;
SELECT count(*) AS users, round(avg(score)::numeric, 4) AS mean_now FROM propensity.current_propensity('seed');
\echo '== pg_cron: rescoring every 15 minutes and a concurrent dashboard refresh every 5 (they run while the server is up)'
CREATE EXTENSION pg_cron;
SELECT propensity.schedule_rescoring('seed', '*/15 * * * *') AS rescore_job,
       propensity.schedule_dashboard_refresh('*/5 * * * *') AS refresh_job;
SELECT job_name, schedule, command FROM propensity.schedules();
\echo
\echo '== Fitting a model on the stream: the seed model''s terms, fitted on daily snapshots Oct 8-20'
\echo '   (label: converts within 3 days; users active in the 7 days before), stored as model "fitted"'
SELECT version, iterations, examples, positives, round(log_likelihood::numeric, 1) AS log_likelihood
  FROM propensity.fit_model('fitted', '2026-10-08', '2026-10-20', spec => 'seed',
                            horizon => '3 days', lookback => '7 days');
WITH v AS (SELECT m.name AS model,
                  array_prepend('intercept', ARRAY(SELECT u.name FROM unnest(m.terms) u)) AS terms,
                  array_prepend(m.intercept, ARRAY(SELECT u.coefficient FROM unnest(m.terms) u)) AS coefficients
             FROM propensity.models m
            WHERE m.model_id IN (propensity.model_id('seed'), propensity.model_id('fitted')))
SELECT u.term, u.seed, round(u.fitted::numeric, 3) AS fitted, round(u.se::numeric, 3) AS std_error
  FROM (SELECT * FROM v WHERE model = 'seed') s, (SELECT * FROM v WHERE model = 'fitted') f,
       propensity.model_fits fi,
       unnest(s.terms, s.coefficients, f.coefficients, fi.std_errors) u(term, seed, fitted, se)
 WHERE fi.model_id = propensity.model_id('fitted');
\echo '== Held-out evaluation (as-of Oct 24-27, after every training label window): seed vs fitted'
SELECT m AS model, e.examples, e.positives, round(e.auc::numeric, 4) AS auc,
       round(e.log_loss::numeric, 4) AS log_loss, round(e.brier::numeric, 4) AS brier
  FROM unnest(ARRAY['seed', 'fitted']) m,
       propensity.evaluate_model(m, '2026-10-24', '2026-10-27', horizon => '3 days', lookback => '7 days') e;
\echo '== Calibration and gain by decile (decile 1 = highest scores): predicted vs observed conversion rate'
SELECT d.decile, round(s.mean_score::numeric, 3) AS seed_predicted, round(s.observed_rate::numeric, 3) AS seed_observed,
       round(f.mean_score::numeric, 3) AS fitted_predicted, round(f.observed_rate::numeric, 3) AS fitted_observed,
       round(s.lift::numeric, 2) AS seed_lift, round(f.lift::numeric, 2) AS fitted_lift,
       round(s.cumulative_gain::numeric, 3) AS seed_gain, round(f.cumulative_gain::numeric, 3) AS fitted_gain
  FROM generate_series(1, 10) d(decile)
  JOIN propensity.model_evaluation_deciles s ON s.decile = d.decile
       AND s.evaluation_id = (SELECT min(evaluation_id) FROM propensity.model_evaluations)
  JOIN propensity.model_evaluation_deciles f ON f.decile = d.decile
       AND f.evaluation_id = (SELECT max(evaluation_id) FROM propensity.model_evaluations)
 ORDER BY d.decile;
\echo '== Scoring uses the new version at once: top 5 users as of 2026-10-31 under "fitted"'
SELECT user_id, round(score::numeric, 4) AS fitted, round(propensity.score(user_id, '2026-10-31', 'seed')::numeric, 4) AS seed
  FROM propensity.score_all('2026-10-31', 'fitted') ORDER BY score DESC, user_id LIMIT 5;
\echo '== A new version of the tracked seed model (the fitted coefficients) takes over its history in the installing transaction'
INSERT INTO propensity.models (name, version, intercept, terms)
SELECT 'seed', 2, f.intercept, f.terms FROM propensity.models f WHERE f.model_id = propensity.model_id('fitted');
SELECT m.version, count(*) AS points FROM propensity.score_history s JOIN propensity.models m USING (model_id)
 WHERE s.model = 'seed' GROUP BY m.version;
\echo '   the busiest user''s first points, before (version 1) and after (version 2), from the changelog:'
WITH u AS (SELECT user_id FROM propensity.score_history GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1)
SELECT c.event_time, round(c.old_score::numeric, 4) AS version_1, round(c.new_score::numeric, 4) AS version_2
  FROM propensity.score_history_changelog c JOIN u USING (user_id)
 WHERE c.model = 'seed' AND c.model_id = propensity.model_id('seed', 2)
 ORDER BY c.event_time LIMIT 5;
SELECT count(*) AS points_differing_from_a_recomputation_under_version_2
  FROM (SELECT * FROM propensity.score_history WHERE model = 'seed') s
  FULL JOIN propensity.history_points(propensity.model_id('seed', 2)) p USING (user_id, event_time)
 WHERE s.score IS DISTINCT FROM p.score;
SELECT as_of > '2026-11-01' AS as_of_now, users, round(mean_score::numeric, 4) AS mean_score, model_id
  FROM propensity.snapshot_runs ORDER BY as_of;
SQL
if [ "${KEEP:-0}" = 1 ]; then
    echo "server left running: psql -h $DIR -p 5496 -U postgres demo"
fi
