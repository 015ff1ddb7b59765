-- What operators and careless producers do, each met with a clear error
-- or absorbed: a slot table dropped by hand, an absurd retention, a topic
-- whose maintenance fails, 300 subscriptions and a 200-byte group name,
-- relative and zone-less JSON times, generated times past the timestamp
-- range, a NaN tolerance, pg_cron timeouts statement_timeout cannot hold,
-- and job names past pg_cron's 63 bytes.
SET timezone = 'UTC';
SET client_min_messages = warning;
SELECT propensity.create_topic('ops-a', 1);
SELECT propensity.create_topic('ops-b', 1);
SELECT propensity.subscribe('ops-a', 'ops');
SELECT propensity.subscribe('ops-b', 'ops');
RESET client_min_messages;

-- a retention of a million years is refused (it used to be accepted, and
-- then every queue_maintain() failed, for every topic)
\set VERBOSITY default
SELECT propensity.create_topic('ops-c', 1, '1000000 years');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
-- one left by an older version fails its own maintenance, not the others'
ALTER TABLE propensity.topics DROP CONSTRAINT topics_retention_bound;
UPDATE propensity.topics SET retention = '1000000 years' WHERE topic = 'ops-a';
UPDATE propensity.topic_slots SET opened_at = now() - interval '1 day', closed_at = now() - interval '1 hour'
 WHERE topic_id = (SELECT topic_id FROM propensity.topics WHERE topic = 'ops-b') AND slot = 1;
SELECT topic, left(action, 30) AS action, slot FROM propensity.queue_maintain()
 WHERE topic IN ('ops-a', 'ops-b') ORDER BY 1, 2;
UPDATE propensity.topics SET retention = '1 day' WHERE topic = 'ops-a';
ALTER TABLE propensity.topics
    ADD CONSTRAINT topics_retention_bound CHECK (retention < interval '100 years') NOT VALID;

-- a slot table dropped by hand: queue_status and queue_lag skip it (they
-- failed for every topic), consume() and drop_topic() go on
SELECT propensity.produce('ops-a', 'k', '{"event_id": "ops-1", "user_id": "k", "event_type": "PS", "event_time": 1764151200000}'::jsonb);
SELECT tbl AS slot0 FROM propensity.topic_slots
 WHERE topic_id = (SELECT topic_id FROM propensity.topics WHERE topic = 'ops-b') AND slot = 0 \gset
DROP TABLE :slot0;
SELECT topic, partition, lag FROM propensity.queue_status WHERE topic LIKE 'ops-%' ORDER BY 1, 2;
SELECT * FROM propensity.consume('ops-b', 'ops');
SELECT * FROM propensity.consume('ops-a', 'ops');
SELECT propensity.drop_topic('ops-b');
SELECT count(*) AS ops_b_left FROM propensity.topics WHERE topic = 'ops-b';

-- JSON times: relative ones are refused (a replay would read another
-- time), one without a zone is UTC whatever the session's TimeZone
\set VERBOSITY default
SELECT event_time FROM propensity.decode_message(convert_to(
    '{"event_id": "t", "user_id": "u", "event_type": "PS", "event_time": "now"}', 'UTF8'));
SELECT event_time FROM propensity.decode_message(convert_to(
    '{"event_id": "t", "user_id": "u", "event_type": "PS", "event_time": "yesterday 10:00"}', 'UTF8'));
\set VERBOSITY terse
SET timezone = 'Asia/Tokyo';
SELECT event_time AT TIME ZONE 'UTC' AS utc FROM propensity.decode_message(convert_to(
    '{"event_id": "t", "user_id": "u", "event_type": "PS", "event_time": "2026-03-01 10:00"}', 'UTF8'));
SET timezone = 'America/New_York';
SELECT event_time AT TIME ZONE 'UTC' AS utc FROM propensity.decode_message(convert_to(
    '{"event_id": "t", "user_id": "u", "event_type": "PS", "event_time": "2026-03-01 10:00"}', 'UTF8'));
SELECT event_time AT TIME ZONE 'UTC' AS utc_from_plus_two FROM propensity.decode_message(convert_to(
    '{"event_id": "t", "user_id": "u", "event_type": "PS", "event_time": "2026-03-01 10:00+02"}', 'UTF8'));
SET timezone = 'UTC';

-- generated events must stay timestamps COPY can read back
\set VERBOSITY default
SELECT count(*) FROM propensity.generate_events(1, 10, 5, '294276-12-01', '30 days');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT count(*) AS generated_far FROM propensity.generate_events(1, 10, 5, '200000-01-01', '1 day');

-- a NaN tolerance is refused (it returned zero coefficients)
CREATE TEMP TABLE ex AS SELECT (g % 3 = 0) AS y, g::float8 / 100 AS x FROM generate_series(1, 100) g;
SELECT propensity.fit_logistic('ex', 'y', ARRAY['x'], tolerance => 'NaN');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.fit_logistic('ex', 'y', ARRAY['x'], tolerance => 'Infinity');
\echo :LAST_ERROR_SQLSTATE

-- pg_cron timeouts: statement_timeout holds 1 to 2147483647 ms ('30 days'
-- wrote one that failed every run; under a millisecond became none)
SELECT propensity.schedule_dashboard_refresh('* * * * *', '30 days');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.schedule_dashboard_refresh('* * * * *', '0.5 milliseconds');
\echo :LAST_ERROR_SQLSTATE
-- job names: short ones as before, long ones hashed under 63 bytes, so two
-- long names with the same first 63 bytes no longer collide
SELECT propensity.cron_job_name('rescore:h') = 'propensity:' || current_database() || ':rescore:h' AS short_kept;
SELECT octet_length(a) <= 63 AND octet_length(b) <= 63 AS fit, a <> b AS distinct_names,
       a LIKE 'propensity:%' AS prefixed
  FROM (SELECT propensity.cron_job_name('rescore:' || repeat('m', 80) || '-one') AS a,
               propensity.cron_job_name('rescore:' || repeat('m', 80) || '-two') AS b) n;

-- 300 subscriptions and a group of 200 bytes: the worker consumes them all
-- (it took the first 256 and cut names at 128 bytes)
SET client_min_messages = warning;
SELECT propensity.create_topic('ops-many', 1);
SELECT count(propensity.subscribe('ops-many', 'g' || lpad(i::text, 3, '0'))) FROM generate_series(1, 300) i;
SELECT propensity.subscribe('ops-many', repeat('x', 200));
RESET client_min_messages;
SELECT propensity.produce('ops-many', 'k', '{"event_id": "ops-m", "user_id": "k", "event_type": "PS", "event_time": 1764151200000}'::jsonb);
SELECT propensity.worker_start() IS NOT NULL AS started;
DO $$
BEGIN
    FOR i IN 1..1800 LOOP
        EXIT WHEN (SELECT count(*) FROM propensity.subscriptions WHERE topic = 'ops-many' AND messages = 1) = 301;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) AS groups_consumed, max(octet_length(consumer_group)) AS longest_group
  FROM propensity.subscriptions WHERE topic = 'ops-many' AND messages = 1;
SELECT propensity.worker_stop();
SET client_min_messages = warning;
SELECT propensity.drop_topic('ops-many');
SELECT propensity.drop_topic('ops-a');
RESET client_min_messages;
