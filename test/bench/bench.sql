-- Benchmark body: run by test/bench/bench.sh against a loaded database.
-- The queries run round-robin, :reps rounds each with JIT off and on, after
-- one warm-up round, so that drift in the machine's speed hits them alike;
-- each figure is the median of its samples.
\set ON_ERROR_STOP on
\set as_of '''2026-10-31 00:00:00+00'''
CREATE TEMP TABLE queries (label text, q text);
INSERT INTO queries VALUES
 ('a: score_all (batch, C)',
  'SELECT count(*), avg(score) FROM propensity.score_all(' || quote_literal(:as_of) || ')'),
 ('a2: GROUP BY score_events aggregate',
  'SELECT count(*), avg(s) FROM (SELECT user_id, propensity.score_events(event_type, event_time, ' || quote_literal(:as_of) || ') s FROM propensity.events WHERE event_time <= ' || quote_literal(:as_of) || ' GROUP BY user_id) x'),
 ('b: plain SQL count(*) FILTER',
  'SELECT count(*), avg(score) FROM (SELECT user_id, 1 / (1 + exp(-(-2.78'
  ' + 1.09 * ln(1 + count(*) FILTER (WHERE event_type = ''IM'' AND event_time > ' || quote_literal(:as_of) || '::timestamptz - interval ''30 days''))'
  ' + 1.77 * ln(1 + count(*) FILTER (WHERE event_type = ''CL'' AND event_time > ' || quote_literal(:as_of) || '::timestamptz - interval ''7 days''))'
  ' + 2.82 * ln(1 + count(*) FILTER (WHERE event_type = ''PS'' AND event_time > ' || quote_literal(:as_of) || '::timestamptz - interval ''2 days''))'
  ' + 0.99 * ln(1 + count(*) FILTER (WHERE event_type = ''CN'' AND event_time > ' || quote_literal(:as_of) || '::timestamptz - interval ''365 days''))))) AS score'
  ' FROM propensity.events WHERE event_time <= ' || quote_literal(:as_of) || ' GROUP BY user_id) x'),
 ('c: bare scan count(*), sum()',
  'SELECT count(*), sum(length(user_id)) FROM propensity.events'),
 ('c0: bare scan, serial',
  'SELECT count(*), sum(length(user_id)) FROM propensity.events');

-- the three computations agree before anything is timed
CREATE FUNCTION pg_temp.answer(q text) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    EXECUTE q INTO r;
    RETURN r.avg;
END $$;
SELECT max(a) - min(a) < 1e-9 AS scorings_agree
  FROM (SELECT pg_temp.answer(q) AS a FROM queries WHERE label ~ '^(a|a2|b):') s \gset
\if :scorings_agree
\else
\echo 'batch scoring, the aggregate and plain SQL disagree'
SELECT 1/0;
\endif

CREATE TEMP TABLE samples (label text, jit boolean, ms double precision);
DO $$
DECLARE
    qr record;
    t0 timestamptz;
    reps int := current_setting('bench.reps')::int;
BEGIN
    FOR rep IN 0..reps LOOP
        FOR j IN 0..1 LOOP
            PERFORM set_config('jit', CASE WHEN j = 1 THEN 'on' ELSE 'off' END, false);
            FOR qr IN SELECT * FROM queries ORDER BY label LOOP
                CONTINUE WHEN qr.label LIKE 'c0:%' AND j = 1;
                PERFORM set_config('max_parallel_workers_per_gather',
                                   CASE WHEN qr.label LIKE 'c0:%' THEN '0' ELSE '2' END, false);
                t0 := clock_timestamp();
                EXECUTE qr.q;
                IF rep > 0 THEN     -- round 0 warms up
                    INSERT INTO samples
                    VALUES (qr.label, j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000);
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;

\echo
\echo 'median milliseconds (score_all does not use JIT: its row pools both settings)'
SELECT label, CASE WHEN label LIKE 'a:%' THEN 'n/a' ELSE jit::text END AS jit,
       count(*) AS samples,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms,
       round(min(ms)::numeric, 1) AS min_ms, round(max(ms)::numeric, 1) AS max_ms
  FROM (SELECT label, CASE WHEN label LIKE 'a:%' THEN NULL ELSE jit END AS jit, ms FROM samples) s
 GROUP BY label, jit ORDER BY label, jit;

\echo 'ratios (baselines: the faster of JIT off and on)'
WITH m AS (SELECT label, CASE WHEN label LIKE 'a:%' THEN NULL ELSE jit END AS jit,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM samples GROUP BY 1, 2),
     best AS (SELECT left(label, strpos(label, ':') - 1) AS k, min(ms) AS ms FROM m GROUP BY 1)
SELECT round(((SELECT ms FROM best WHERE k = 'a') / (SELECT ms FROM best WHERE k = 'c'))::numeric, 2) AS "a/c (target <= 1.5)",
       round(((SELECT ms FROM best WHERE k = 'a') / (SELECT ms FROM best WHERE k = 'c0'))::numeric, 2) AS "a/c0 serial scan",
       round(((SELECT ms FROM best WHERE k = 'b') / (SELECT ms FROM best WHERE k = 'a'))::numeric, 2) AS "b/a (target >= 6)",
       round(((SELECT ms FROM best WHERE k = 'b') / (SELECT ms FROM best WHERE k = 'a2'))::numeric, 2) AS "b/a2 aggregate";
