-- Fitting logistic regression (issue 6, first part): upgrade to 0.4.0,
-- fit_logistic() against closed forms, the aggregate in a parallel plan,
-- the L2 optimum's stationarity checked in plain SQL, and the errors.
SET client_min_messages = warning;
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity VERSION '0.3.0';
ALTER EXTENSION propensity UPDATE TO '0.4.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'propensity';

-- One binary feature: x = 0 has 30 positives of 100, x = 1 has 60 of 80.
-- The maximum-likelihood fit has a closed form: intercept = logit(0.3) =
-- ln(3/7) = -0.8472978604, slope = logit(0.75) - logit(0.3) = ln 3 - ln(3/7)
-- = ln 7 = 1.9459101491; standard errors sqrt(1/(100*0.3*0.7)) = 0.2182178902 and
-- sqrt(1/21 + 1/(80*0.75*0.25)) = sqrt(1/21 + 1/15) = 0.3380617019;
-- log-likelihood 30 ln .3 + 70 ln .7 + 60 ln .75 + 20 ln .25 = -36.1191841
-- - 24.9672461 - 17.2609244 - 27.7258872 = -106.0732418.
CREATE TABLE ex (y boolean, x float8, x_copy float8);
INSERT INTO ex SELECT i <= 30, 0, 0 FROM generate_series(1, 100) i;
INSERT INTO ex SELECT i <= 60, 1, 1 FROM generate_series(1, 80) i;
SELECT round(coefficients[1]::numeric, 10) AS intercept, round(coefficients[2]::numeric, 10) AS slope,
       round(std_errors[1]::numeric, 10) AS se_intercept, round(std_errors[2]::numeric, 10) AS se_slope,
       round(log_likelihood::numeric, 7) AS log_likelihood, examples_used,
       abs(coefficients[1] - ln(3.0 / 7)) < 1e-9 AND abs(coefficients[2] - (ln(3.0) - ln(3.0 / 7))) < 1e-9 AS closed_form,
       iterations BETWEEN 3 AND 10 AS few_iterations
  FROM propensity.fit_logistic('ex', 'y', ARRAY['x']);

-- The aggregate runs in parallel (partial states serialized and combined)
-- and gives the same sums as a serial pass.
CREATE TABLE big AS
SELECT (g % 7 < 3) AS y, (g % 5)::float8 AS a, ((g::bigint * 7919) % 11)::float8 / 11 AS b
  FROM generate_series(1, 300000) g;
ANALYZE big;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT propensity.logistic_sums(y, ARRAY[a, b], ARRAY[0.1, -0.2, 0.3]::float8[]) FROM big;
CREATE TEMP TABLE par AS
SELECT (propensity.logistic_step(propensity.logistic_sums(y, ARRAY[a, b], ARRAY[0.1, -0.2, 0.3]::float8[]),
                                 ARRAY[0.1, -0.2, 0.3]::float8[])).* FROM big;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE ser AS
SELECT (propensity.logistic_step(propensity.logistic_sums(y, ARRAY[a, b], ARRAY[0.1, -0.2, 0.3]::float8[]),
                                 ARRAY[0.1, -0.2, 0.3]::float8[])).* FROM big;
RESET max_parallel_workers_per_gather;
SELECT par.examples, abs(par.log_likelihood - ser.log_likelihood) < 1e-6 AS same_log_likelihood,
       (SELECT max(abs(p - s)) FROM unnest(par.coefficients, ser.coefficients) u(p, s)) < 1e-9 AS same_step
  FROM par, ser;
-- the log-likelihood at those coefficients, in plain SQL
SELECT abs(ser.log_likelihood - (
         SELECT sum(CASE WHEN y THEN -ln(1 + exp(-(0.1 - 0.2 * a + 0.3 * b)))
                         ELSE -ln(1 + exp(0.1 - 0.2 * a + 0.3 * b)) END) FROM big)) < 1e-6 AS log_likelihood_matches
  FROM ser;

-- With L2 = 2, the penalized optimum is where the gradient of the
-- log-likelihood equals l2 times each non-intercept coefficient (and is 0
-- for the intercept): checked in plain SQL at the fitted coefficients.
CREATE TEMP TABLE l2fit AS SELECT * FROM propensity.fit_logistic('big', 'y', ARRAY['a', 'b'], l2 => 2);
SELECT abs(g0) < 1e-6 AS intercept_stationary, abs(g1 - 2 * c[2]) < 1e-6 AS a_stationary,
       abs(g2 - 2 * c[3]) < 1e-6 AS b_stationary
  FROM (SELECT f.coefficients AS c,
               sum(y::int - p) AS g0, sum(a * (y::int - p)) AS g1, sum(b * (y::int - p)) AS g2
          FROM l2fit f, big,
               LATERAL (SELECT 1 / (1 + exp(-(f.coefficients[1] + f.coefficients[2] * a + f.coefficients[3] * b))) AS p) pp
         GROUP BY f.coefficients) s;

-- Errors
SELECT * FROM propensity.fit_logistic('ex', 'y', ARRAY['x', 'x_copy']);      -- duplicated feature
SELECT (propensity.fit_logistic('ex', 'y', ARRAY['x', 'x_copy'], l2 => 1)).coefficients IS NOT NULL AS with_l2_it_fits;
-- y = (x > 0): the likelihood has no maximum; with L2 it has one
CREATE TABLE separated AS SELECT (i > 50) AS y, (i - 50.5)::float8 AS x FROM generate_series(1, 100) i;
SELECT * FROM propensity.fit_logistic('separated', 'y', ARRAY['x']);
SELECT round(coefficients[2]::numeric, 3) > 0 AS fits_with_l2 FROM propensity.fit_logistic('separated', 'y', ARRAY['x'], l2 => 1);
SELECT * FROM propensity.fit_logistic('ex', 'y', ARRAY[]::name[]);
SELECT * FROM propensity.fit_logistic('ex', 'no_such_column', ARRAY['x']);
SELECT propensity.logistic_sums(true, ARRAY[1, NULL]::float8[], ARRAY[0, 0, 0]::float8[]);
SELECT propensity.logistic_sums(true, ARRAY[1, 2]::float8[], ARRAY[0, 0]::float8[]);
SELECT propensity.logistic_step('\x00', ARRAY[0]::float8[]);
SELECT propensity.logistic_step(propensity.logistic_sums(y, ARRAY[x], ARRAY[0, 0]::float8[]), ARRAY[0, 0]::float8[], -1) FROM ex;
