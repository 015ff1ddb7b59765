-- The aggregates run in parallel workers (partial aggregation with
-- combine, serialize and deserialize) and agree with serial plans.
SET timezone = 'UTC';
CREATE TABLE pev AS
SELECT event_time, user_id, event_type
  FROM propensity.generate_events(3, 60000, 3000, '2026-07-01', '20 days', 0.1);
ANALYZE pev;

-- the aggregates under test, over all events and per user
CREATE VIEW totals AS
SELECT propensity.window_counts(event_type, event_time, '2026-07-15', '7 days') AS w,
       propensity.decayed_counts(event_type, event_time, '2026-07-15', '2 days') AS d,
       propensity.score_events(event_type, event_time, '2026-07-15') AS s,
       propensity.feature_values(event_type, event_time, '2026-07-15') AS f
  FROM pev;
CREATE VIEW per_user AS
SELECT user_id,
       propensity.window_counts(event_type, event_time, '2026-07-15', '7 days') AS w,
       propensity.decayed_counts(event_type, event_time, '2026-07-15', '2 days') AS d,
       propensity.score_events(event_type, event_time, '2026-07-15') AS s,
       propensity.feature_values(event_type, event_time, '2026-07-15') AS f
  FROM pev GROUP BY user_id;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET enable_hashagg = off;

EXPLAIN (COSTS OFF)
SELECT propensity.window_counts(event_type, event_time, '2026-07-15', '7 days'),
       propensity.decayed_counts(event_type, event_time, '2026-07-15', '2 days'),
       propensity.score_events(event_type, event_time, '2026-07-15')
  FROM pev;

EXPLAIN (COSTS OFF)
SELECT user_id, propensity.score_events(event_type, event_time, '2026-07-15')
  FROM pev GROUP BY user_id;

-- workers really run (the leader does not participate, so every state is
-- serialized in a worker and deserialized in the leader)
CREATE FUNCTION pg_temp.workers_launched(q text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO plan;
    RETURN jsonb_path_query_first(plan, 'strict $.**."Workers Launched"')::int;
END $$;
SELECT pg_temp.workers_launched('SELECT * FROM per_user') AS workers_launched,
       pg_temp.workers_launched('SELECT * FROM totals') AS workers_launched_total;
CREATE TABLE par_total AS SELECT * FROM totals;
CREATE TABLE par_users AS SELECT * FROM per_user;

RESET parallel_leader_participation;
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF)
SELECT user_id, propensity.score_events(event_type, event_time, '2026-07-15')
  FROM pev GROUP BY user_id;
CREATE TABLE ser_total AS SELECT * FROM totals;
CREATE TABLE ser_users AS SELECT * FROM per_user;

-- window counts are exact; sums of floating-point weights agree to rounding
SELECT p.w = s.w AS counts_equal,
       abs((p.d).im - (s.d).im) < 1e-9 AND abs((p.d).cn - (s.d).cn) < 1e-9 AS decays_equal,
       abs(p.s - s.s) < 1e-12 AS scores_equal,
       p.f = s.f AS features_equal
  FROM par_total p, ser_total s;
SELECT count(*) AS users,
       count(*) FILTER (WHERE p.w <> s.w OR abs((p.d).cl - (s.d).cl) > 1e-12
                           OR abs(p.s - s.s) > 1e-12 OR p.f <> s.f) AS mismatches
  FROM par_users p FULL JOIN ser_users s USING (user_id);
-- and an independent count in plain SQL
SELECT (s.w).cl = (SELECT count(*) FROM pev WHERE event_type = 'CL'
                    AND event_time > '2026-07-08' AND event_time <= '2026-07-15') AS cl_count_matches_sql
  FROM ser_total s;
