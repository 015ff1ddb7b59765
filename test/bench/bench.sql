-- Benchmark body: run by test/bench/bench.sh against a loaded database.
-- Each query runs once to warm up, then :reps times; the median counts.
\set ON_ERROR_STOP on
CREATE TEMP TABLE timings (label text, jit boolean, ms double precision);

CREATE FUNCTION pg_temp.median_ms(q text, reps int) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    times double precision[] := '{}';
BEGIN
    EXECUTE q;
    FOR i IN 1..reps LOOP
        t0 := clock_timestamp();
        EXECUTE q;
        times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(times) x);
END $$;

\set as_of '''2026-10-31 00:00:00+00'''
\set q_batch 'SELECT count(*), avg(score) FROM propensity.score_all(' :as_of ')'
\set q_agg 'SELECT count(*), avg(s) FROM (SELECT user_id, propensity.score_events(event_type, event_time, ' :as_of ') s FROM propensity.events WHERE event_time <= ' :as_of ' GROUP BY user_id) x'
\set q_sql 'SELECT count(*), avg(score) FROM (SELECT user_id, 1 / (1 + exp(-(-2.78 + 1.09 * ln(1 + count(*) FILTER (WHERE event_type = ''IM'' AND event_time > ' :as_of '::timestamptz - interval ''30 days'')) + 1.77 * ln(1 + count(*) FILTER (WHERE event_type = ''CL'' AND event_time > ' :as_of '::timestamptz - interval ''7 days'')) + 2.82 * ln(1 + count(*) FILTER (WHERE event_type = ''PS'' AND event_time > ' :as_of '::timestamptz - interval ''2 days'')) + 0.99 * ln(1 + count(*) FILTER (WHERE event_type = ''CN'' AND event_time > ' :as_of '::timestamptz - interval ''365 days''))))) AS score FROM propensity.events WHERE event_time <= ' :as_of ' GROUP BY user_id) x'
\set q_scan 'SELECT count(*), sum(length(user_id)) FROM propensity.events'

-- the three computations agree before anything is timed
SELECT abs((SELECT avg(score) FROM propensity.score_all(:as_of)) -
           (SELECT avg FROM (:q_sql) y)) < 1e-9 AND
       abs((SELECT avg FROM (:q_agg) y) - (SELECT avg FROM (:q_sql) y)) < 1e-9 AS batch_equals_plain_sql \gset
\if :batch_equals_plain_sql
\else
\echo 'batch scoring and plain SQL disagree'
SELECT 1/0;
\endif

SET jit = off;
INSERT INTO timings SELECT 'a: score_all (batch, C)', false, pg_temp.median_ms(:'q_batch', :reps);
INSERT INTO timings SELECT 'a2: GROUP BY score_events aggregate', false, pg_temp.median_ms(:'q_agg', :reps);
INSERT INTO timings SELECT 'b: plain SQL count(*) FILTER', false, pg_temp.median_ms(:'q_sql', :reps);
INSERT INTO timings SELECT 'c: bare scan count(*), sum()', false, pg_temp.median_ms(:'q_scan', :reps);
SET jit = on;
INSERT INTO timings SELECT 'a: score_all (batch, C)', true, pg_temp.median_ms(:'q_batch', :reps);
INSERT INTO timings SELECT 'a2: GROUP BY score_events aggregate', true, pg_temp.median_ms(:'q_agg', :reps);
INSERT INTO timings SELECT 'b: plain SQL count(*) FILTER', true, pg_temp.median_ms(:'q_sql', :reps);
INSERT INTO timings SELECT 'c: bare scan count(*), sum()', true, pg_temp.median_ms(:'q_scan', :reps);
SET max_parallel_workers_per_gather = 0;
SET jit = off;
INSERT INTO timings SELECT 'c0: bare scan, serial', false, pg_temp.median_ms(:'q_scan', :reps);
RESET max_parallel_workers_per_gather;

\echo
\echo 'median milliseconds'
SELECT label, jit, round(ms::numeric, 1) AS ms FROM timings ORDER BY jit, label;

\echo 'ratios (best of jit on/off for each baseline, jit off for a)'
WITH t AS (SELECT label, min(ms) AS ms FROM timings GROUP BY label),
     a AS (SELECT ms FROM timings WHERE label LIKE 'a:%' AND NOT jit)
SELECT round(((SELECT ms FROM a) / (SELECT ms FROM t WHERE label LIKE 'c:%'))::numeric, 2) AS "a/c (target <= 1.5)",
       round(((SELECT ms FROM a) / (SELECT ms FROM t WHERE label LIKE 'c0:%'))::numeric, 2) AS "a/c0 serial scan",
       round(((SELECT ms FROM t WHERE label LIKE 'b:%') / (SELECT ms FROM a))::numeric, 2) AS "b/a (target >= 6)",
       round(((SELECT ms FROM t WHERE label LIKE 'b:%') / (SELECT ms FROM t WHERE label LIKE 'a2:%'))::numeric, 2) AS "b/a2 aggregate";
