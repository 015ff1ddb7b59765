-- Benchmark body: run by test/bench/fit.sh against a loaded database.
\set ON_ERROR_STOP on
\pset footer off

-- (1) Examples drawn from logit P(y) = -1 + 0.8 x1 - 0.5 x2 + 0.3 x3 + 0.05 x4 - 0.7 x5.
SELECT setseed(0.5);
CREATE TABLE examples AS
SELECT x1, x2, x3, x4, x5,
       random() < 1 / (1 + exp(-(-1 + 0.8 * x1 - 0.5 * x2 + 0.3 * x3 + 0.05 * x4 - 0.7 * x5))) AS y
  FROM (SELECT sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS x1,
               2 * random() AS x2, ln(1 + 10 * random()) AS x3, 20 * random() AS x4,
               (random() < 0.3)::int::float8 AS x5
          FROM generate_series(1, current_setting('bench.examples')::int)) g;
VACUUM ANALYZE examples;
SELECT count(*) AS examples, count(*) FILTER (WHERE y) AS positives,
       pg_size_pretty(pg_relation_size('examples')) AS size FROM examples;

-- One IRLS pass in plain SQL at beta = 0.1 (p is then the same for every
-- row's linear predictor): the 6 gradient sums and 21 Hessian sums.
CREATE FUNCTION pg_temp.plain_pass() RETURNS float8[] LANGUAGE sql AS $$
SELECT ARRAY[sum(r), sum(r*x1), sum(r*x2), sum(r*x3), sum(r*x4), sum(r*x5),
             sum(w), sum(w*x1), sum(w*x2), sum(w*x3), sum(w*x4), sum(w*x5),
             sum(w*x1*x1), sum(w*x1*x2), sum(w*x1*x3), sum(w*x1*x4), sum(w*x1*x5),
             sum(w*x2*x2), sum(w*x2*x3), sum(w*x2*x4), sum(w*x2*x5),
             sum(w*x3*x3), sum(w*x3*x4), sum(w*x3*x5),
             sum(w*x4*x4), sum(w*x4*x5), sum(w*x5*x5)]
  FROM (SELECT x1, x2, x3, x4, x5, y::int - p AS r, p * (1 - p) AS w
          FROM (SELECT *, 1 / (1 + exp(-(0.1 + 0.1 * (x1 + x2 + x3 + x4 + x5)))) AS p FROM examples) a) b
$$;

CREATE TEMP TABLE samples (label text, jit boolean, ms double precision, iterations int);
DO $$
DECLARE
    t0 timestamptz;
    fit record;
    reps int := current_setting('bench.reps')::int;
    workers text;
BEGIN
    PERFORM set_config('parallel_setup_cost', '0', false);
    FOR rep IN 0..reps LOOP
        FOR j IN 0..1 LOOP
            PERFORM set_config('jit', CASE WHEN j = 1 THEN 'on' ELSE 'off' END, false);
            FOREACH workers IN ARRAY ARRAY['0', '1', '2'] LOOP
                PERFORM set_config('max_parallel_workers_per_gather', workers, false);
                t0 := clock_timestamp();
                fit := propensity.fit_logistic('examples', 'y', ARRAY['x1', 'x2', 'x3', 'x4', 'x5']);
                IF rep > 0 THEN
                    INSERT INTO samples VALUES ('fit_logistic, ' || workers || ' workers', j = 1,
                        extract(epoch FROM clock_timestamp() - t0) * 1000, fit.iterations);
                END IF;
                t0 := clock_timestamp();
                PERFORM pg_temp.plain_pass();
                IF rep > 0 THEN
                    INSERT INTO samples VALUES ('plain SQL pass, ' || workers || ' workers', j = 1,
                        extract(epoch FROM clock_timestamp() - t0) * 1000, 1);
                END IF;
                t0 := clock_timestamp();
                PERFORM count(*), sum(x1) FROM examples;
                IF rep > 0 THEN
                    INSERT INTO samples VALUES ('bare scan, ' || workers || ' workers', j = 1,
                        extract(epoch FROM clock_timestamp() - t0) * 1000, 1);
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
END $$;
RESET max_parallel_workers_per_gather;
RESET jit;

\echo '(1) seconds per IRLS iteration (median of reps; an iteration of fit_logistic is one logistic_sums() pass plus logistic_step())'
SELECT label, jit, max(iterations) AS iterations,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms / iterations) / 1000)::numeric, 3) AS s_per_iteration
  FROM samples GROUP BY label, jit ORDER BY jit, label;
WITH m AS (SELECT label, jit, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms / iterations) AS ms FROM samples GROUP BY 1, 2)
SELECT f.jit, replace(f.label, 'fit_logistic, ', '') AS workers,
       round((p.ms / f.ms)::numeric, 2) AS plain_sql_pass_over_iteration,
       round((f.ms / s.ms)::numeric, 2) AS iteration_over_bare_scan
  FROM m f JOIN m p ON p.jit = f.jit AND p.label = replace(f.label, 'fit_logistic', 'plain SQL pass')
           JOIN m s ON s.jit = f.jit AND s.label = replace(f.label, 'fit_logistic', 'bare scan')
 WHERE f.label LIKE 'fit_logistic%' ORDER BY 1, 2;
WITH m AS (SELECT label, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms / iterations) AS ms
             FROM samples WHERE NOT jit AND label LIKE 'fit_logistic%' GROUP BY 1)
SELECT p.label, round((s.ms / p.ms)::numeric, 2) AS speedup_over_serial_jit_off
  FROM m p, m s WHERE s.label = 'fit_logistic, 0 workers' ORDER BY 1;

-- the fit recovers the drawing model (a sanity check of the benchmark's data)
SELECT round(c::numeric, 3) AS fitted, round(s::numeric, 3) AS std_error, t AS truth
  FROM propensity.fit_logistic('examples', 'y', ARRAY['x1', 'x2', 'x3', 'x4', 'x5']) f,
       unnest(f.coefficients, f.std_errors, ARRAY[-1, 0.8, -0.5, 0.3, 0.05, -0.7]) u(c, s, t);

-- (2) A 5-term specification fitted on the generated stream and stored as a model version.
INSERT INTO propensity.models (name, intercept, terms) VALUES ('spec5', 0, ARRAY[
    ROW('impressions', 'window_count', 'IM', interval '30 days', 'log1p', 0),
    ROW('clicks', 'window_count', 'CL', interval '7 days', 'log1p', 0),
    ROW('paid_search', 'window_count', 'PS', interval '2 days', 'log1p', 0),
    ROW('past_conversions', 'window_count', 'CN', interval '365 days', 'log1p', 0),
    ROW('recent_clicks', 'decayed_count', 'CL', interval '1 day', 'identity', 0)
]::propensity.model_term[]);
\timing on
SELECT model_id, version, iterations, examples, positives,
       (SELECT array_agg(round(c::numeric, 3)) FROM unnest(coefficients) c) AS coefficients
  FROM propensity.fit_model('fitted5', '2026-10-10', '2026-10-20', spec => 'spec5', spacing => '2 days',
                            horizon => '3 days', lookback => '7 days');
SELECT m AS model, e.examples, e.positives, round(e.auc::numeric, 4) AS auc,
       round(e.log_loss::numeric, 4) AS log_loss, round(e.brier::numeric, 4) AS brier
  FROM unnest(ARRAY['seed', 'fitted5']) m,
       propensity.evaluate_model(m, '2026-10-24', '2026-10-26', horizon => '3 days', lookback => '7 days') e;
\timing off

-- scoring throughput with the fitted model: score_all() against plain SQL
-- computing the same five terms, medians of reps, JIT off and on
\set as_of '''2026-10-31 00:00:00+00'''
SELECT 'SELECT count(*), avg(score) FROM propensity.score_all(' || quote_literal(:as_of) || ', ''fitted5'')' AS q_c,
       format($q$SELECT count(*), avg(score) FROM (SELECT user_id, 1 / (1 + exp(-(%s
         + %s * ln(1 + count(*) FILTER (WHERE event_type = 'IM' AND event_time > %L::timestamptz - interval '30 days'))
         + %s * ln(1 + count(*) FILTER (WHERE event_type = 'CL' AND event_time > %L::timestamptz - interval '7 days'))
         + %s * ln(1 + count(*) FILTER (WHERE event_type = 'PS' AND event_time > %L::timestamptz - interval '2 days'))
         + %s * ln(1 + count(*) FILTER (WHERE event_type = 'CN' AND event_time > %L::timestamptz - interval '365 days'))
         + %s * coalesce(sum(2 ^ (-extract(epoch FROM %L::timestamptz - event_time) / 86400)) FILTER (WHERE event_type = 'CL'), 0)))) AS score
         FROM propensity.events WHERE event_time <= %L GROUP BY user_id) x$q$,
         m.intercept, (m.terms[1]).coefficient, :as_of, (m.terms[2]).coefficient, :as_of,
         (m.terms[3]).coefficient, :as_of, (m.terms[4]).coefficient, :as_of,
         (m.terms[5]).coefficient, :as_of, :as_of) AS q_p
  FROM propensity.models m WHERE m.model_id = propensity.model_id('fitted5') \gset
CREATE FUNCTION pg_temp.answer(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE r record; BEGIN EXECUTE q INTO r; RETURN r.avg; END $$;
SELECT abs(pg_temp.answer(:'q_c') - pg_temp.answer(:'q_p')) < 1e-9 AS scorings_agree \gset
\if :scorings_agree
\else
\echo 'score_all and plain SQL disagree under the fitted model'
SELECT 1/0;
\endif
SELECT set_config('bench.q_c', :'q_c', false) IS NOT NULL AS q_c_set,
       set_config('bench.q_p', :'q_p', false) IS NOT NULL AS q_p_set;
CREATE TEMP TABLE score_samples (label text, jit boolean, ms double precision);
DO $$
DECLARE
    t0 timestamptz;
    reps int := current_setting('bench.reps')::int;
BEGIN
    FOR rep IN 0..reps LOOP
        FOR j IN 0..1 LOOP
            PERFORM set_config('jit', CASE WHEN j = 1 THEN 'on' ELSE 'off' END, false);
            t0 := clock_timestamp();
            EXECUTE current_setting('bench.q_c');
            IF rep > 0 THEN INSERT INTO score_samples VALUES ('score_all, fitted5', j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000); END IF;
            t0 := clock_timestamp();
            EXECUTE current_setting('bench.q_p');
            IF rep > 0 THEN INSERT INTO score_samples VALUES ('plain SQL, fitted5', j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000); END IF;
        END LOOP;
    END LOOP;
END $$;
RESET jit;
\echo '(2) scoring with the fitted model (medians of reps)'
SELECT label, jit, round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / 1000)::numeric, 2) AS s,
       round((SELECT count(*) FROM propensity.events WHERE event_time <= '2026-10-31')
             / (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / 1000)) AS events_per_s,
       round((SELECT count(DISTINCT user_id) FROM propensity.events WHERE event_time <= '2026-10-31')
             / (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) / 1000)) AS users_per_s
  FROM score_samples GROUP BY label, jit ORDER BY jit, label;
WITH m AS (SELECT label, jit, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM score_samples GROUP BY 1, 2)
SELECT p.jit, round((p.ms / c.ms)::numeric, 2) AS plain_sql_over_score_all
  FROM m c JOIN m p ON p.jit = c.jit AND p.label LIKE 'plain%' WHERE c.label LIKE 'score_all%' ORDER BY 1;
