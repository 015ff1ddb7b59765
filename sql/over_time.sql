-- Propensity over time, second part (docs/computing.md section 4; issue 5): current
-- propensity and its snapshots, the dashboard views on a small stream
-- checked by hand, a new model version taking over without a gap, and
-- pg_cron schedules that fire within the test.
-- It upgrades the 0.5.0 installation the history test left.
ALTER EXTENSION propensity UPDATE TO '0.6.0';
SELECT extversion FROM pg_extension WHERE extname = 'propensity';
SET timezone = 'UTC';

-- A clean event store; model h of the history test (intercept -1, clicks =
-- N(CL, 1 day) coefficient 1, recent impressions = D(IM, 1 hour)
-- coefficient 0.5) is tracked again from nothing.
TRUNCATE propensity.events;
SELECT propensity.track_history('h') AS points_built;

CREATE FUNCTION evt(id text, usr text, typ text, t timestamptz) RETURNS propensity.events
LANGUAGE sql AS $$ SELECT ROW(t, usr, typ, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events $$;

-- The stream, by hand (s(z) = 1 / (1 + e^-z)):
--  p  IM 05-01 10:00  z = -1 + 0.5              s = 0.377541
--  p  CL 05-01 12:00  z = -1 + 1 + 0.5 * 2^-2   s = 0.531209
--  q  CL 05-01 20:00  z = -1 + 1                s = 0.5
--  r  IM 05-02 08:00  z = -1 + 0.5              s = 0.377541
--  p  CL 05-02 09:00  z = -1 + 2 + 0.5 * 2^-23  s = 0.731059 (the 12:00 click is 21 h old)
--  q  IM 05-02 21:00  z = -1 + 0 + 0.5          s = 0.377541 (the click is 25 h old)
SELECT sum(inserted) AS inserted FROM (
    SELECT (propensity.ingest(ARRAY[evt(id, usr, typ, t::timestamptz)])).inserted
      FROM (VALUES ('d1', 'p', 'IM', '2026-05-01 10:00'), ('d2', 'p', 'CL', '2026-05-01 12:00'),
                   ('d3', 'q', 'CL', '2026-05-01 20:00'), ('d4', 'r', 'IM', '2026-05-02 08:00'),
                   ('d5', 'p', 'CL', '2026-05-02 09:00'), ('d6', 'q', 'IM', '2026-05-02 21:00')) v(id, usr, typ, t)) i;
SELECT user_id, event_time, round(score::numeric, 6) AS score FROM propensity.score_history
 WHERE model = 'h' ORDER BY user_id, event_time;

-- ---------------------------------------------------------------------------
-- Dashboards (buckets of 1 day from midnight UTC, 10 score bands).  A user
-- counts in a bucket with its last score there:
--  05-01: p 0.531209, q 0.5: 2 users, mean 0.515605, p10 0.503121,
--         p25 0.507802, median 0.515605, p75 0.523407, p90 0.528088
--         (percentile_cont interpolates: p10 = 0.5 + 0.1 * 0.031209);
--         both in band 6, [0.5, 0.6).
--  05-02: p 0.731059, q 0.377541, r 0.377541: 3 users, mean 0.495380,
--         p10 = p25 = median = 0.377541, p75 = 0.377541 + 0.5 * 0.353518
--         = 0.554300, p90 = 0.377541 + 0.8 * 0.353518 = 0.660355;
--         band 4 [0.3, 0.4) holds 2, band 8 [0.7, 0.8) holds 1.
-- ---------------------------------------------------------------------------
SELECT propensity.refresh_dashboards(concurrent => false);
SELECT bucket, bucket_end, users, round(mean_score::numeric, 6) AS mean, round(p10::numeric, 6) AS p10,
       round(p25::numeric, 6) AS p25, round(median::numeric, 6) AS median, round(p75::numeric, 6) AS p75,
       round(p90::numeric, 6) AS p90
  FROM propensity.propensity_over_time WHERE model = 'h' ORDER BY bucket;
SELECT bucket, band, lower_bound, upper_bound, users FROM propensity.propensity_score_bands
 WHERE model = 'h' AND users > 0 ORDER BY bucket, band;
SELECT bucket, count(*) AS bands, sum(users) AS users FROM propensity.propensity_score_bands
 WHERE model = 'h' GROUP BY bucket ORDER BY bucket;
-- p's trajectory: 05-01 two points 0.377541 -> 0.531209, 05-02 one point.
SELECT user_id, bucket, points, round(first_score::numeric, 6) AS first, round(last_score::numeric, 6) AS last,
       round(min_score::numeric, 6) AS min, round(max_score::numeric, 6) AS max, last_event,
       model_id = propensity.model_id('h') AS by_h
  FROM propensity.propensity_trajectory WHERE model = 'h' ORDER BY user_id, bucket;

-- A late click of r at 05-02 07:00 adds the point 07:00 (z = 0, 0.5) and
-- corrects 08:00 (z = -1 + 1 + 0.5 = 0.5, 0.622459).  After a concurrent
-- refresh, 05-02 is p 0.731059, q 0.377541, r 0.622459: mean 0.577020,
-- p10 = 0.377541 + 0.2 * 0.244918 = 0.426525, p25 = 0.5 (0.377541 + 0.5 *
-- 0.244918), median 0.622459, p75 = 0.622459 + 0.5 * 0.108600 = 0.676759,
-- p90 = 0.622459 + 0.8 * 0.108600 = 0.709339; bands 4, 7 and 8 hold one each.
SELECT inserted FROM propensity.ingest(ARRAY[evt('d7', 'r', 'CL', '2026-05-02 07:00')]);
SELECT propensity.refresh_dashboards();
SELECT bucket, users, round(mean_score::numeric, 6) AS mean, round(p10::numeric, 6) AS p10,
       round(p25::numeric, 6) AS p25, round(median::numeric, 6) AS median, round(p75::numeric, 6) AS p75,
       round(p90::numeric, 6) AS p90
  FROM propensity.propensity_over_time WHERE model = 'h' ORDER BY bucket;
SELECT bucket, band, users FROM propensity.propensity_score_bands
 WHERE model = 'h' AND users > 0 ORDER BY bucket, band;

-- Buckets of 12 hours: 05-01 00:00 has p's 10:00 point alone (0.377541);
-- 05-01 12:00 has p (12:00, 0.531209) and q (0.5), mean 0.515605; 05-02
-- 00:00 has r (08:00, 0.622459) and p (0.731059), mean 0.676759; 05-02
-- 12:00 has q alone (0.377541).  With 4 bands, r and p are both in band 3,
-- [0.5, 0.75).
UPDATE propensity.dashboard_settings SET bucket_width = '12 hours', score_bands = 4;
SELECT propensity.refresh_dashboards();
SELECT bucket, users, round(mean_score::numeric, 6) AS mean FROM propensity.propensity_over_time
 WHERE model = 'h' ORDER BY bucket;
SELECT bucket, band, lower_bound, upper_bound, users FROM propensity.propensity_score_bands
 WHERE model = 'h' AND bucket = '2026-05-02 00:00' ORDER BY band;
UPDATE propensity.dashboard_settings SET bucket_width = '1 month';
UPDATE propensity.dashboard_settings SET bucket_width = '1 day', score_bands = 10;

-- The views depend on the events only, not on their arrival order: the
-- same 7 events ingested again in reverse order give the same contents.
CREATE FUNCTION view_rows() RETURNS TABLE (v text, r jsonb) LANGUAGE sql AS $$
    SELECT 'over_time', to_jsonb(o) FROM propensity.propensity_over_time o
    UNION ALL SELECT 'bands', to_jsonb(b) FROM propensity.propensity_score_bands b
    UNION ALL SELECT 'trajectory', to_jsonb(t) FROM propensity.propensity_trajectory t $$;
SELECT propensity.refresh_dashboards();
CREATE TEMP TABLE views_before AS SELECT * FROM view_rows();
CREATE TEMP TABLE stream AS SELECT array_agg(e ORDER BY e.event_time DESC) AS evs FROM propensity.events e;
TRUNCATE propensity.events;
SELECT propensity.history_rebuild('h') AS points_left;
DO $$
DECLARE
    e propensity.events;
BEGIN
    FOREACH e IN ARRAY (SELECT evs FROM stream) LOOP
        PERFORM propensity.ingest(ARRAY[e]);
    END LOOP;
END
$$;
SELECT count(*) AS reingested FROM propensity.events;
SELECT propensity.refresh_dashboards();
SELECT (SELECT count(*) FROM views_before) AS view_rows,
       (SELECT count(*) FROM (TABLE views_before EXCEPT SELECT * FROM view_rows()) d) AS missing,
       (SELECT count(*) FROM (SELECT * FROM view_rows() EXCEPT TABLE views_before) d) AS extra;

-- ---------------------------------------------------------------------------
-- Current propensity, decay since the last event included.  As of 05-02
-- 22:00:  p  clicks in (05-01 22:00, 05-02 22:00] 1, IM 36 h old: z = 0.5 * 2^-36, 0.500000
--         q  no click within a day, IM 1 h old: z = -1 + 0.25, 0.320821
--            (its last history point, at 21:00, was 0.377541)
--         r  click 07:00, IM 14 h old: z = 0.5 * 2^-14, 0.500008
-- As of now, months later: no click within a day, nothing left of the
-- decay: s(-1) = 0.268941 for all.
-- ---------------------------------------------------------------------------
SELECT user_id, round(score::numeric, 6) AS score, model_id = propensity.model_id('h') AS by_h
  FROM propensity.current_propensity('h', '2026-05-02 22:00') ORDER BY user_id;
SELECT user_id, round(score::numeric, 6) AS score FROM propensity.current_propensity('h') ORDER BY user_id;

-- Snapshots: the same run twice leaves one snapshot; a later one with a
-- retention of a day drops it.  Mean (0.5 + 0.320821 + 0.500008) / 3 = 0.440276.
SELECT propensity.rescore('h', '2026-05-02 22:00', keep => '1 day') AS users;
SELECT propensity.rescore('h', '2026-05-02 22:00', keep => '1 day') AS users;
SELECT as_of, users, round(mean_score::numeric, 6) AS mean, finished_at >= started_at AS timed
  FROM propensity.snapshot_runs WHERE model = 'h';
SELECT count(*) AS differences FROM propensity.score_snapshots s
  JOIN propensity.current_propensity('h', '2026-05-02 22:00') c USING (user_id)
 WHERE s.score <> c.score OR s.model_id <> c.model_id;
SELECT propensity.rescore('h', '2026-05-04 00:00', keep => '1 day') AS users;
SELECT as_of, users FROM propensity.snapshot_runs WHERE model = 'h';
SELECT as_of, count(*) FROM propensity.latest_scores WHERE model = 'h' GROUP BY as_of;
SELECT propensity.rescore('h', NULL);
SELECT propensity.rescore('h', '2026-05-04', keep => '-1 day');

-- ---------------------------------------------------------------------------
-- A new version takes over without a gap: installing h version 2
-- (intercept -2) rescores the whole history under it in the installing
-- transaction, logging every point, and takes a snapshot with it as of now.
--  p 05-01 10:00 s(-1.5) 0.182426, 12:00 s(-0.875) 0.294215,
--    05-02 09:00 s(0 + 0.5 * 2^-23) 0.500000
--  q 05-01 20:00 s(-1) 0.268941, 05-02 21:00 s(-1.5) 0.182426
--  r 05-02 07:00 s(-1) 0.268941, 08:00 s(-0.5) 0.377541
-- ---------------------------------------------------------------------------
SELECT max(seq) AS seq_before FROM propensity.score_history_changelog \gset
INSERT INTO propensity.models (name, version, intercept, terms)
SELECT name, 2, -2, terms FROM propensity.models WHERE name = 'h' AND version = 1;
SELECT user_id, event_time, round(score::numeric, 6) AS score, model_id = propensity.model_id('h', 2) AS by_v2
  FROM propensity.score_history WHERE model = 'h' ORDER BY user_id, event_time;
SELECT count(*) AS logged, count(*) FILTER (WHERE c.old_score = s1.score) AS old_is_v1,
       bool_and(c.model_id = propensity.model_id('h', 2)) AS all_v2
  FROM propensity.score_history_changelog c
  JOIN propensity.history_points(propensity.model_id('h', 1)) s1 USING (user_id, event_time)
 WHERE c.seq > :seq_before;
-- (as of now, long after the stream: s(-2) = 0.119203 for each of the 3)
SELECT model_id = propensity.model_id('h', 2) AS by_v2, users, round(mean_score::numeric, 6) AS mean
  FROM propensity.snapshot_runs WHERE model = 'h' AND as_of > '2026-06-01';
-- An older version installed later does not take over.
INSERT INTO propensity.models (name, version, intercept, terms)
SELECT name, 0, 5, terms FROM propensity.models WHERE name = 'h' AND version = 1;
SELECT count(*) FILTER (WHERE model_id <> propensity.model_id('h', 2)) AS points_not_v2
  FROM propensity.score_history WHERE model = 'h';

-- ---------------------------------------------------------------------------
-- pg_cron.  Before CREATE EXTENSION pg_cron the scheduling functions say
-- what is missing (this server preloads it); everything above ran without it.
-- ---------------------------------------------------------------------------
SELECT propensity.schedule_dashboard_refresh('* * * * *');
SELECT * FROM propensity.schedules();
-- A change the views do not show until a refresh: a click of s.
SELECT inserted FROM propensity.ingest(ARRAY[evt('d8', 's', 'CL', '2026-05-03 10:00')]);
SELECT count(*) AS buckets_before FROM propensity.propensity_over_time WHERE model = 'h';
CREATE EXTENSION pg_cron;
-- Every minute: the dashboards, a rescore of h with a retention of an hour
-- and a timeout, and (directly with pg_cron) a job that must hit its
-- timeout: statement_timeout holds in pg_cron's background workers too.
SELECT propensity.schedule_dashboard_refresh('* * * * *') > 0 AS refresh_job;
SELECT propensity.schedule_rescoring('h', '* * * * *', keep => '1 hour', timeout => '5 minutes') > 0 AS rescore_job;
SELECT propensity.schedule_dashboard_refresh('* * * * *') > 0 AS same_job_again;
SELECT cron.schedule('propensity:' || current_database() || ':timeout test', '* * * * *',
                     'SET statement_timeout = 1000; SELECT propensity.arm_statement_timeout(); SELECT pg_sleep(60)') > 0 AS timeout_job;
SELECT job_name, schedule, command, active FROM propensity.schedules();
SELECT now() AS t_scheduled \gset
-- pg_cron starts jobs on minute boundaries: wait for all three to finish,
-- at most 150 s.
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        EXIT WHEN (SELECT count(*) FROM propensity.schedules() WHERE last_end IS NOT NULL) = 3;
        PERFORM pg_sleep(0.5);
    END LOOP;
END
$$;
SELECT job_name, last_status, last_message FROM propensity.schedules();
-- (s under version 2: z = -2 + 1, 0.268941; the rescore saw 4 users)
SELECT bucket, users, round(mean_score::numeric, 6) AS mean FROM propensity.propensity_over_time
 WHERE model = 'h' AND bucket = '2026-05-03';
SELECT as_of = date_bin('1 minute', as_of, '2000-01-01') AS on_the_minute, users,
       model_id = propensity.model_id('h', 2) AS by_v2
  FROM propensity.snapshot_runs WHERE model = 'h' AND as_of > :'t_scheduled';
SELECT propensity.unschedule(job_name) FROM propensity.schedules() ORDER BY job_name;
SELECT propensity.unschedule('propensity:nothing');
SELECT count(*) AS jobs_left FROM propensity.schedules();

-- Privileges: a reader reads the views and current propensity, and cannot
-- rescore or schedule.
SET ROLE propensity_reader;
SELECT count(*) > 0 AS reads FROM propensity.propensity_over_time;
SELECT count(*) AS users FROM propensity.current_propensity('h');
SELECT propensity.rescore('h');
SELECT propensity.refresh_dashboards();
RESET ROLE;

-- DROP EXTENSION leaves topic storage behind (it is made at run time): the
-- history test's topic 1 (its 200 messages) and the queue test's topic 2
-- are still here.  A new installation's topics skip past them (ids 3 and
-- 4), keep them, and say so.
SET client_min_messages = warning;
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity;
RESET client_min_messages;
SELECT relname FROM pg_class WHERE relnamespace = 'propensity'::regnamespace
   AND relname ~ '^queue_[0-9]+_(offsets|[0-9]+)$' ORDER BY relname;
SELECT propensity.create_topic('again', partitions => 1);
SELECT propensity.create_topic('once.more', partitions => 1);
SELECT topic, topic_id FROM propensity.topics ORDER BY topic_id;
SELECT count(*) AS messages FROM propensity.queue_1_0;
RESET timezone;
