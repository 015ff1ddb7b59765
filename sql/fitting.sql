-- Training and evaluating models (issue 6): upgrade to 0.5.0, fit_logistic()
-- against statsmodels and scikit-learn on a fixed dataset, recovery of known
-- coefficients, labelled examples from a small stream checked by hand, fits
-- stored as model versions, evaluation metrics checked by hand, errors.
SET client_min_messages = warning;
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity VERSION '0.4.0';
ALTER EXTENSION propensity UPDATE TO '0.5.0';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'propensity';

-- ---------------------------------------------------------------------------
-- 1. Reference solvers.  test/data/logit_fixture.csv (2,000 examples, four
-- features) and the reference fits in test/data/logit_reference.csv were
-- made by test/reference/logit_reference.py: statsmodels' Newton MLE
-- (coefficients, standard errors, log-likelihood) and scikit-learn with
-- penalty='l2', C = 1/2.5, which is l2 => 2.5 here.  Everything must agree
-- to 1e-6 relative.
-- ---------------------------------------------------------------------------
\getenv abs_srcdir PG_ABS_SRCDIR
\set fixture :abs_srcdir '/test/data/logit_fixture.csv'
\set reference :abs_srcdir '/test/data/logit_reference.csv'
CREATE TABLE fixture (id int PRIMARY KEY, y boolean, x1 float8, x2 float8, x3 float8, x4 float8);
COPY fixture FROM :'fixture' WITH (FORMAT csv, HEADER true);
CREATE TABLE reference (fit text, l2 float8, term int, coefficient float8, std_error float8,
                        log_likelihood float8);
COPY reference FROM :'reference' WITH (FORMAT csv, HEADER true);
SELECT count(*) AS examples, count(*) FILTER (WHERE y) AS positives FROM fixture;

CREATE TABLE our_fits AS
SELECT 'statsmodels_mle' AS fit, f.*
  FROM propensity.fit_logistic('fixture', 'y', ARRAY['x1', 'x2', 'x3', 'x4'], tolerance => 1e-10) f
UNION ALL
SELECT 'sklearn_l2', f.*
  FROM propensity.fit_logistic('fixture', 'y', ARRAY['x1', 'x2', 'x3', 'x4'], l2 => 2.5, tolerance => 1e-10) f;

SELECT r.fit, r.term, round(r.coefficient::numeric, 6) AS reference,
       abs(o.coefficients[r.term + 1] - r.coefficient) / abs(r.coefficient) < 1e-6 AS coefficient_ok,
       r.std_error IS NULL OR abs(o.std_errors[r.term + 1] - r.std_error) / r.std_error < 1e-6 AS std_error_ok,
       r.log_likelihood IS NULL OR abs(o.log_likelihood - r.log_likelihood) / abs(r.log_likelihood) < 1e-9 AS log_likelihood_ok
  FROM reference r JOIN our_fits o USING (fit)
 ORDER BY r.fit, r.term;

-- ---------------------------------------------------------------------------
-- 2. Known coefficients.  20,000 examples drawn from the model
-- logit P(y) = -0.5 + 1.0 x1 - 0.7 x2 (x1 standard normal by Box-Muller,
-- x2 uniform on [0, 3]; fixed seed).  Tolerance: each fitted coefficient is
-- within 4 of its standard errors of the truth, and those errors are
-- below 0.05, so the check could not pass with a wrong sign or scale.
-- ---------------------------------------------------------------------------
SELECT setseed(0.42);
CREATE TABLE drawn AS
SELECT x1, x2, random() < 1 / (1 + exp(-(-0.5 + 1.0 * x1 - 0.7 * x2))) AS y
  FROM (SELECT sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS x1, 3 * random() AS x2
          FROM generate_series(1, 20000)) g;
SELECT t.term, t.truth,
       abs(f.coefficients[t.i] - t.truth) < 4 * f.std_errors[t.i] AS within_4_se,
       f.std_errors[t.i] < 0.05 AS se_below_005
  FROM propensity.fit_logistic('drawn', 'y', ARRAY['x1', 'x2']) f,
       (VALUES (1, 'intercept', -0.5), (2, 'x1', 1.0), (3, 'x2', -0.7)) t(i, term, truth)
 ORDER BY t.i;

-- ---------------------------------------------------------------------------
-- 3. Labelled examples from a small stream.  Model 'tiny': intercept -1,
-- clicks = N(CL, 7 days) through log1p with coefficient 2, impressions =
-- N(IM, 30 days) as is with coefficient 0.5.
--   a: IM Jan 1 10:00, CL Jan 2 10:00, CN Jan 4 12:00
--   b: IM Jan 1 12:00
--   c: IM Dec 1 (more than 30 days before Jan 3), CN Jan 3 06:00
--   d: IM Jan 20 00:00 (the latest event: labels are known up to then)
-- Snapshots Jan 3, 4, 5 (00:00), lookback 30 days, horizon 2 days, gap 0:
--   Jan 3: a (label: CN Jan 4 12:00 in (Jan 3, Jan 5]: true), b false;
--          c is left out (no event in the 30 days up to Jan 3)
--   Jan 4: a true (Jan 4 12:00 in (Jan 4, Jan 6]), b false, c false
--   Jan 5: a false (its conversion is in the past), b false, c false
-- Inputs: a [ln 2 = 0.693147, 1], b [0, 1], c [0, 0] (its IM is 34 days old);
-- scores: a 1/(1 + e^-(-1 + 2 ln 2 + 0.5)) = 1/(1 + e^-0.886294) = 0.708125,
-- b 1/(1 + e^0.5) = 0.377541, c 1/(1 + e) = 0.268941.
-- ---------------------------------------------------------------------------
INSERT INTO propensity.models (name, version, intercept, terms) VALUES
    ('tiny', 1, -1, ARRAY[
        ROW('clicks', 'window_count', 'CL', interval '7 days', 'log1p', 2),
        ROW('impressions', 'window_count', 'IM', interval '30 days', 'identity', 0.5)
    ]::propensity.model_term[]);
INSERT INTO propensity.events (event_id, user_id, event_type, event_time) VALUES
    ('a1', 'a', 'IM', '2026-01-01 10:00+00'), ('a2', 'a', 'CL', '2026-01-02 10:00+00'),
    ('a3', 'a', 'CN', '2026-01-04 12:00+00'), ('b1', 'b', 'IM', '2026-01-01 12:00+00'),
    ('c1', 'c', 'IM', '2025-12-01 00:00+00'), ('c2', 'c', 'CN', '2026-01-03 06:00+00'),
    ('d1', 'd', 'IM', '2026-01-20 00:00+00');
SET timezone = 'UTC';
SELECT user_id, as_of, label, inputs::numeric(8,6)[] AS inputs, round(score::numeric, 6) AS score
  FROM propensity.training_examples('tiny', '2026-01-03', '2026-01-05', horizon => '2 days')
 ORDER BY as_of, user_id;
-- A gap of 1 day 13 hours moves the Jan 3 label window to (Jan 4 13:00,
-- Jan 6 13:00]: a's conversion at Jan 4 12:00 is no longer in it.
SELECT user_id, as_of, label
  FROM propensity.training_examples('tiny', '2026-01-03', '2026-01-03', horizon => '2 days',
                                    gap => '1 day 13 hours')
 ORDER BY user_id;
-- A lookback of 2 days at Jan 5 keeps a (its CN at Jan 4 12:00) and c
-- (Jan 3 06:00) and leaves out b (last event Jan 1 12:00).
SELECT user_id, as_of FROM propensity.training_examples('tiny', '2026-01-05', '2026-01-05',
                                                        horizon => '2 days', lookback => '2 days')
 ORDER BY user_id;
-- Snapshots whose label window ends after Jan 20 00:00 are left out:
-- Jan 18 (window ends Jan 20 00:00) stays, Jan 19 goes, with a notice.
SELECT as_of, count(*) FROM propensity.training_examples('tiny', '2026-01-18', '2026-01-19', horizon => '2 days')
 GROUP BY as_of;

-- ---------------------------------------------------------------------------
-- 4. Fits stored as model versions.  fit_model() fits tiny's terms on the
-- Jan 3-5 examples (l2 => 1: clicks > 0 would otherwise separate the
-- negatives); the next fit of the same name is version 2, and score() uses
-- the latest at once.  Checked without the fitting code: at the penalized
-- optimum the intercept's score equation gives sum(p) = sum(y) = 2, and
-- each other coefficient satisfies sum((y - p) * input) = l2 * coefficient.
-- ---------------------------------------------------------------------------
SELECT model_id, version, iterations BETWEEN 3 AND 15 AS converged, examples, positives,
       cardinality(coefficients) AS n, cardinality(std_errors) AS n_se
  FROM propensity.fit_model('tiny_fit', '2026-01-03', '2026-01-05', spec => 'tiny',
                            horizon => '2 days', l2 => 1);
SELECT name, version, terms[1].name, terms[1].feature, terms[1].width, terms[1].transform,
       terms[2].name, terms[2].transform
  FROM propensity.models WHERE name = 'tiny_fit';
SELECT f.spec_model_id = propensity.model_id('tiny') AS spec_recorded, f.train_from, f.train_to, f.horizon,
       f.l2, f.examples, f.positives
  FROM propensity.model_fits f WHERE f.model_id = propensity.model_id('tiny_fit');
WITH x AS (
    SELECT e.label::int AS y, e.inputs,
           propensity.score(e.user_id, e.as_of, 'tiny_fit') AS p
      FROM propensity.training_examples('tiny', '2026-01-03', '2026-01-05', horizon => '2 days') e),
m AS (SELECT (terms[1]).coefficient AS b1, (terms[2]).coefficient AS b2
        FROM propensity.models WHERE model_id = propensity.model_id('tiny_fit'))
SELECT abs(sum(p) - 2) < 1e-7 AS intercept_equation,
       abs(sum((y - p) * inputs[1]) - 1 * min(b1)) < 1e-7 AS clicks_equation,
       abs(sum((y - p) * inputs[2]) - 1 * min(b2)) < 1e-7 AS impressions_equation,
       min(b1) > 0 AS clicks_positive
  FROM x, m;
-- The same examples through fit_logistic() give the same coefficients.
CREATE TABLE tiny_examples AS
SELECT label, inputs[1] AS clicks, inputs[2] AS impressions
  FROM propensity.training_examples('tiny', '2026-01-03', '2026-01-05', horizon => '2 days');
SELECT max(abs(f.coefficients[i] - CASE i WHEN 1 THEN m.intercept ELSE (m.terms[i - 1]).coefficient END)) < 1e-9
       AS same_as_fit_logistic
  FROM propensity.fit_logistic('tiny_examples', 'label', ARRAY['clicks', 'impressions'], l2 => 1) f,
       propensity.models m, generate_series(1, 3) i
 WHERE m.model_id = propensity.model_id('tiny_fit');
-- A second fit, with a stronger penalty, is version 2 and is used at once;
-- version 1 stays readable.
SELECT version FROM propensity.fit_model('tiny_fit', '2026-01-03', '2026-01-05', spec => 'tiny',
                                         horizon => '2 days', l2 => 10);
SELECT propensity.score('a', '2026-01-03', 'tiny_fit') =
       (SELECT score FROM propensity.model_snapshot('2026-01-03', propensity.model_id('tiny_fit', 2))
         WHERE user_id = 'a') AS latest_used,
       propensity.score('a', '2026-01-03', 'tiny_fit') <>
       (SELECT score FROM propensity.model_snapshot('2026-01-03', propensity.model_id('tiny_fit', 1))
         WHERE user_id = 'a') AS differs_from_v1;

-- ---------------------------------------------------------------------------
-- 5. Evaluation.  evaluation_metrics() on eight (label, score) pairs:
--   0.9 T, 0.8 F, 0.7 T, 0.7 F, 0.6 T, 0.4 F, 0.3 F, 0.2 T
-- AUC: pairs (positive, negative) ordered right count 1, ties 1/2:
--   0.9 beats 4; 0.7 beats 0.4 and 0.3 and ties 0.7: 2.5; 0.6 beats 2;
--   0.2 beats none: 8.5 / 16 = 0.53125.
-- Log loss: -(ln .9 + ln .2 + ln .7 + ln .3 + ln .6 + ln .6 + ln .7 + ln .2) / 8
--   = (0.1053605 + 1.6094379 + 0.3566749 + 1.2039728 + 0.5108256 + 0.5108256
--      + 0.3566749 + 1.6094379) / 8 = 6.2632101 / 8 = 0.7829013.
-- Brier: (.01 + .64 + .09 + .49 + .16 + .16 + .09 + .64) / 8 = 2.28 / 8 = 0.285.
-- ---------------------------------------------------------------------------
CREATE TABLE scored (label boolean, score float8);
INSERT INTO scored VALUES (true, 0.9), (false, 0.8), (true, 0.7), (false, 0.7), (true, 0.6),
                          (false, 0.4), (false, 0.3), (true, 0.2);
SELECT examples, positives, auc, round(log_loss::numeric, 7) AS log_loss, round(brier::numeric, 10) AS brier
  FROM propensity.evaluation_metrics('scored');
-- Tiny on its own Jan 3-5 examples: scores 0.708125 (a Jan 3 T, a Jan 4 T,
-- a Jan 5 F), 0.377541 (b three times, F), 0.268941 (c twice, F).
-- AUC: each positive beats 5 negatives and ties 1: (5.5 + 5.5) / (2 * 6) = 0.916667.
-- Deciles (ntile(10) of 8 examples: one each, highest score first, ties by
-- user and time): a Jan 3, a Jan 4, a Jan 5, b x3, c x2.  Overall rate 2/8:
-- decile 1 lift 1 / 0.25 = 4, gain 1/2; decile 2 gain 1, cumulative lift
-- (2/2) / 0.25 = 4; decile 3 cumulative lift (2/3) / 0.25 = 2.666667;
-- decile 8 cumulative lift 1.
SELECT model_id = propensity.model_id('tiny') AS tiny, examples, positives, round(auc::numeric, 6) AS auc,
       abs(log_loss - (-(2 * ln(0.708125) + ln(1 - 0.708125) + 3 * ln(1 - 0.377541) + 2 * ln(1 - 0.268941)) / 8)) < 1e-5 AS log_loss_ok,
       abs(brier - ((2 * (1 - 0.708125) ^ 2 + 0.708125 ^ 2 + 3 * 0.377541 ^ 2 + 2 * 0.268941 ^ 2) / 8)) < 1e-5 AS brier_ok
  FROM propensity.evaluate_model('tiny', '2026-01-03', '2026-01-05', horizon => '2 days');
SELECT decile, examples, positives, round(mean_score::numeric, 6) AS mean_score, observed_rate,
       round(lift::numeric, 6) AS lift, round(cumulative_gain::numeric, 6) AS gain,
       round(cumulative_lift::numeric, 6) AS cumulative_lift
  FROM propensity.model_evaluation_deciles
 WHERE evaluation_id = (SELECT max(evaluation_id) FROM propensity.model_evaluations)
 ORDER BY decile;
SELECT model, version, examples, positives, round(auc::numeric, 6) AS auc, top_decile_lift
  FROM propensity.model_evaluation_summary;

-- ---------------------------------------------------------------------------
-- 6. Errors
-- ---------------------------------------------------------------------------
\set SHOW_CONTEXT never
SELECT * FROM propensity.training_examples('nope', '2026-01-03', '2026-01-05');
SELECT propensity.model_id('tiny', 7);
SELECT * FROM propensity.training_examples('tiny', '2026-01-05', '2026-01-03');
SELECT * FROM propensity.training_examples('tiny', '2026-01-03', '2026-01-05', spacing => '0');
SELECT * FROM propensity.training_examples('tiny', '2020-01-01', '2026-01-05', spacing => '1 minute');
SELECT * FROM propensity.fit_model('x', '2026-01-18', '2026-01-19', spec => 'tiny', horizon => '2 days',
                                   lookback => '1 hour');
SELECT * FROM propensity.fit_model('x', '2026-01-05', '2026-01-05', spec => 'tiny', horizon => '2 days');
SELECT * FROM propensity.fit_logistic('fixture', 'y', ARRAY['x1'], l2 => -1);
-- One class only: AUC is undefined (NULL, with a warning); log loss
-- (-ln(1 - .708125) - ln(1 - .377541) - ln(1 - .268941)) / 3 = (1.231430 +
-- 0.474078 + 0.313261) / 3 = 0.672923 and Brier (.708125^2 + .377541^2 +
-- .268941^2) / 3 = 0.238769 are still stored.
SELECT examples, positives, auc IS NULL AS no_auc, round(log_loss::numeric, 5) AS log_loss,
       round(brier::numeric, 5) AS brier
  FROM propensity.evaluate_model('tiny', '2026-01-05', '2026-01-05', horizon => '2 days');
SELECT count(*) AS models_named_x FROM propensity.models WHERE name = 'x';

-- Privileges: readers build examples, admins fit and evaluate.
SET ROLE propensity_reader;
SELECT count(*) FROM propensity.training_examples('tiny', '2026-01-03', '2026-01-05', horizon => '2 days');
SELECT * FROM propensity.fit_model('r', '2026-01-03', '2026-01-05', spec => 'tiny');
RESET ROLE;
SET ROLE propensity_admin;
SELECT version FROM propensity.fit_model('admin_fit', '2026-01-03', '2026-01-05', spec => 'tiny',
                                         horizon => '2 days', l2 => 1);
SELECT examples FROM propensity.evaluate_model('admin_fit', '2026-01-03', '2026-01-05', horizon => '2 days');
RESET ROLE;
RESET timezone;
\set SHOW_CONTEXT errors
