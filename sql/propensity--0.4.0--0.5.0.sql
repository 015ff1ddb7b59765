-- propensity 0.4.0 -> 0.5.0: training and evaluating models in the database
-- (issue 6): labelled examples from the event store, fits stored as model
-- versions, and evaluation on a held-out range stored per version.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.5.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Model versions
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.model_id(model text DEFAULT NULL, version integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted text := coalesce(model, nullif(current_setting('propensity.default_model', true), ''), 'seed');
    result integer;
BEGIN
    SELECT m.model_id INTO result
      FROM @extschema@.models m
     WHERE m.name = wanted AND (model_id.version IS NULL OR m.version = model_id.version)
     ORDER BY m.version DESC
     LIMIT 1;
    IF result IS NULL THEN
        RAISE EXCEPTION 'model "%"% does not exist', wanted,
                        CASE WHEN model_id.version IS NULL THEN '' ELSE ' version ' || model_id.version END
            USING ERRCODE = 'undefined_object',
                  HINT = 'See SELECT name, version FROM propensity.models.';
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.model_id(text, integer) IS
    'The id of a model version (default: the latest version of the name; the name defaults to propensity.default_model)';

CREATE FUNCTION @extschema@.model_snapshot(as_of timestamptz, model_id integer)
RETURNS TABLE (user_id text, score double precision, features double precision[],
               inputs double precision[])
AS 'MODULE_PATHNAME', 'propensity_model_snapshot'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 100000;
COMMENT ON FUNCTION @extschema@.model_snapshot(timestamptz, integer) IS
    'score_all() for one stored model version, with each user''s inputs: transform(feature), what the coefficients multiply';

-- ---------------------------------------------------------------------------
-- Labelled examples (issue 6, item 1)
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.training_examples(
    model text, as_of_from timestamptz, as_of_to timestamptz,
    spacing interval DEFAULT '1 day', horizon interval DEFAULT '7 days',
    lookback interval DEFAULT '30 days', gap interval DEFAULT '0',
    version integer DEFAULT NULL)
RETURNS TABLE (user_id text, as_of timestamptz, label boolean,
               inputs double precision[], score double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer := @extschema@.model_id(model, version);
    latest timestamptz;
    t timestamptz;
    dropped integer := 0;
BEGIN
    IF as_of_from IS NULL OR as_of_to IS NULL OR as_of_from > as_of_to THEN
        RAISE EXCEPTION 'the as-of range must be given with as_of_from <= as_of_to'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF spacing IS NULL OR spacing <= interval '0' OR horizon IS NULL OR horizon <= interval '0'
       OR lookback IS NULL OR lookback <= interval '0' OR gap IS NULL OR gap < interval '0' THEN
        RAISE EXCEPTION 'spacing, horizon and lookback must be positive and gap not negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('spacing %s, horizon %s, lookback %s, gap %s.', spacing, horizon, lookback, gap);
    END IF;
    IF extract(epoch FROM as_of_to - as_of_from) / extract(epoch FROM spacing) > 10000 THEN
        RAISE EXCEPTION 'too many snapshots: % to % every %', as_of_from, as_of_to, spacing
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Each snapshot reads the event store once; use a wider spacing.';
    END IF;
    -- a label is known only when its whole window lies within the stored events
    SELECT max(e.event_time) INTO latest FROM @extschema@.events e;
    t := as_of_from;
    WHILE t <= as_of_to LOOP
        IF latest IS NULL OR t + gap + horizon > latest THEN
            dropped := dropped + 1;
        ELSE
            RETURN QUERY
            SELECT s.user_id, t, c.user_id IS NOT NULL, s.inputs, s.score
              FROM @extschema@.model_snapshot(t, mid) s
              LEFT JOIN (SELECT DISTINCT e.user_id
                           FROM @extschema@.events e
                          WHERE e.event_type = 'CN'
                            AND e.event_time > t + gap AND e.event_time <= t + gap + horizon) c
                ON c.user_id = s.user_id
             WHERE s.user_id IN (SELECT e.user_id
                                   FROM @extschema@.events e
                                  WHERE e.event_time > t - lookback AND e.event_time <= t);
        END IF;
        t := t + spacing;
    END LOOP;
    IF dropped > 0 THEN
        RAISE NOTICE '% snapshot(s) left out: their label window ends after the latest stored event (%)',
                     dropped, latest;
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.training_examples(text, timestamptz, timestamptz, interval, interval, interval, interval, integer) IS
    'Labelled examples: for each snapshot as_of_from + k * spacing up to as_of_to, every user with an event in (as_of - lookback, as_of], the model''s inputs and score as of then, and whether the user converts in (as_of + gap, as_of + gap + horizon]';

-- ---------------------------------------------------------------------------
-- Fitting (issue 6, item 2)
-- ---------------------------------------------------------------------------

-- The IRLS loop over one query returning (label boolean, inputs float8[]);
-- internal, shared by fit_logistic() and fit_model(), which quote every
-- identifier they put into the query.
CREATE FUNCTION @extschema@.fit_irls(examples_query text, n_inputs integer,
    l2 double precision, tolerance double precision, max_iterations integer,
    OUT coefficients double precision[], OUT std_errors double precision[],
    OUT log_likelihood double precision, OUT iterations integer, OUT examples_used double precision)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text := format('SELECT @extschema@.logistic_sums(x.label, x.inputs, $1) FROM (%s) x', examples_query);
    beta double precision[];
    st record;
    sums bytea;
BEGIN
    IF tolerance IS NULL OR tolerance <= 0 OR max_iterations IS NULL OR max_iterations < 1 THEN
        RAISE EXCEPTION 'tolerance must be positive and max_iterations at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF l2 IS NOT NULL AND (l2 < 0 OR l2 = 'Infinity' OR l2 = 'NaN') THEN
        RAISE EXCEPTION 'the L2 penalty must be a finite number >= 0, not %', l2
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    beta := array_fill(0::float8, ARRAY[n_inputs + 1]);
    FOR i IN 1..max_iterations LOOP
        EXECUTE q INTO sums USING beta;
        IF sums IS NULL THEN
            RAISE EXCEPTION 'no examples to fit' USING ERRCODE = 'no_data_found';
        END IF;
        st := @extschema@.logistic_step(sums, beta, coalesce(l2, 0));
        std_errors := st.std_errors;
        log_likelihood := st.log_likelihood;
        examples_used := st.examples;
        iterations := i;
        IF st.max_change < tolerance THEN
            coefficients := beta;
            RETURN;
        END IF;
        beta := st.coefficients;
    END LOOP;
    IF st.extreme > 0.5 * st.examples OR (SELECT max(abs(b)) FROM unnest(beta) b) > 25 THEN
        RAISE EXCEPTION 'logistic regression does not converge: the classes are (nearly) separated'
            USING ERRCODE = 'data_exception',
                  DETAIL = format('After %s iterations %s of %s examples are fitted with probability 0 or 1 and the coefficients keep growing.',
                                  max_iterations, st.extreme, st.examples),
                  HINT = 'Add an L2 penalty (l2 => 1, say) or drop the feature that separates the classes.';
    END IF;
    RAISE EXCEPTION 'logistic regression did not converge in % iterations', max_iterations
        USING ERRCODE = 'data_exception',
              DETAIL = format('The last step changed a coefficient by %s.', st.max_change),
              HINT = 'Raise max_iterations or tolerance, or scale the features.';
END
$$;
COMMENT ON FUNCTION @extschema@.fit_irls(text, integer, double precision, double precision, integer) IS
    'Internal: the Newton/IRLS loop of fit_logistic() and fit_model() over a query of (label, inputs)';

CREATE OR REPLACE FUNCTION @extschema@.fit_logistic(examples regclass, label_column name, feature_columns name[],
    l2 double precision DEFAULT 0, tolerance double precision DEFAULT 1e-8,
    max_iterations integer DEFAULT 25,
    OUT coefficients double precision[], OUT std_errors double precision[],
    OUT log_likelihood double precision, OUT iterations integer, OUT examples_used double precision)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fit record;
BEGIN
    IF feature_columns IS NULL OR cardinality(feature_columns) < 1 THEN
        RAISE EXCEPTION 'at least one feature column is needed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        fit := @extschema@.fit_irls(
            format('SELECT %I AS label, ARRAY[%s]::float8[] AS inputs FROM %s',
                   label_column,
                   (SELECT string_agg(format('%I', c), ', ' ORDER BY o)
                      FROM unnest(feature_columns) WITH ORDINALITY AS f(c, o)),
                   examples),
            cardinality(feature_columns), l2, tolerance, max_iterations);
    EXCEPTION WHEN no_data_found THEN
        RAISE EXCEPTION 'no examples in %', examples USING ERRCODE = 'no_data_found';
    END;
    coefficients := fit.coefficients;
    std_errors := fit.std_errors;
    log_likelihood := fit.log_likelihood;
    iterations := fit.iterations;
    examples_used := fit.examples_used;
END
$$;

CREATE TABLE @extschema@.model_fits (
    model_id        integer PRIMARY KEY REFERENCES @extschema@.models ON DELETE CASCADE,
    spec_model_id   integer REFERENCES @extschema@.models ON DELETE SET NULL,
    train_from      timestamptz NOT NULL,
    train_to        timestamptz NOT NULL,
    spacing         interval NOT NULL,
    horizon         interval NOT NULL,
    lookback        interval NOT NULL,
    gap             interval NOT NULL,
    l2              double precision NOT NULL,
    examples        bigint NOT NULL,
    positives       bigint NOT NULL,
    iterations      integer NOT NULL,
    log_likelihood  double precision NOT NULL,
    std_errors      double precision[] NOT NULL,
    fitted_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.model_fits IS
    'How each fitted model version was made: its training examples, penalty, standard errors (intercept first) and log-likelihood';

CREATE FUNCTION @extschema@.fit_model(name text, train_from timestamptz, train_to timestamptz,
    spec text DEFAULT 'seed', spacing interval DEFAULT '1 day', horizon interval DEFAULT '7 days',
    lookback interval DEFAULT '30 days', gap interval DEFAULT '0',
    l2 double precision DEFAULT 0, tolerance double precision DEFAULT 1e-8,
    max_iterations integer DEFAULT 25,
    OUT model_id integer, OUT version integer, OUT coefficients double precision[],
    OUT std_errors double precision[], OUT log_likelihood double precision,
    OUT iterations integer, OUT examples bigint, OUT positives bigint)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec_id integer := @extschema@.model_id(spec);
    spec_terms @extschema@.model_term[];
    fit record;
    new_terms @extschema@.model_term[];
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'a model name is needed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT m.terms INTO spec_terms FROM @extschema@.models m WHERE m.model_id = spec_id;
    IF cardinality(spec_terms) IS NULL THEN
        RAISE EXCEPTION 'model "%" has no terms to fit', spec USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF to_regclass('pg_temp.propensity_fit_examples') IS NOT NULL THEN
        DROP TABLE pg_temp.propensity_fit_examples;     -- left by an earlier call in this transaction
    END IF;
    CREATE TEMP TABLE propensity_fit_examples ON COMMIT DROP AS
        SELECT x.label, x.inputs
          FROM @extschema@.training_examples(spec, train_from, train_to, spacing, horizon,
                                              lookback, gap, (SELECT m.version FROM @extschema@.models m
                                                               WHERE m.model_id = spec_id)) x;
    SELECT count(*), count(*) FILTER (WHERE x.label) INTO examples, positives
      FROM pg_temp.propensity_fit_examples x;
    IF examples = 0 THEN
        RAISE EXCEPTION 'no training examples between % and %', train_from, train_to
            USING ERRCODE = 'no_data_found',
                  HINT = 'Users need an event within lookback before an as-of time, and the label window (gap + horizon) must end before the latest stored event.';
    END IF;
    IF positives = 0 OR positives = examples THEN
        RAISE EXCEPTION 'all % training examples are %', examples,
                        CASE WHEN positives = 0 THEN 'negative' ELSE 'positive' END
            USING ERRCODE = 'data_exception',
                  HINT = 'Widen the training range or the horizon.';
    END IF;

    fit := @extschema@.fit_irls('SELECT label, inputs FROM pg_temp.propensity_fit_examples',
                                cardinality(spec_terms), l2, tolerance, max_iterations);

    SELECT array_agg(ROW(t.name, t.feature, t.event_type, t.width, t.transform,
                         fit.coefficients[o + 1])::@extschema@.model_term ORDER BY o)
      INTO new_terms
      FROM unnest(spec_terms) WITH ORDINALITY AS t(name, feature, event_type, width, transform, coefficient, o);

    INSERT INTO @extschema@.models AS m (name, version, intercept, terms)
    VALUES (fit_model.name,
            coalesce((SELECT max(p.version) FROM @extschema@.models p WHERE p.name = fit_model.name), 0) + 1,
            fit.coefficients[1], new_terms)
    RETURNING m.model_id, m.version INTO model_id, version;

    INSERT INTO @extschema@.model_fits (model_id, spec_model_id, train_from, train_to, spacing, horizon,
                                        lookback, gap, l2, examples, positives, iterations,
                                        log_likelihood, std_errors)
    VALUES (model_id, spec_id, train_from, train_to, spacing, horizon, lookback, gap, coalesce(l2, 0),
            examples, positives, fit.iterations, fit.log_likelihood, fit.std_errors);

    DROP TABLE pg_temp.propensity_fit_examples;
    coefficients := fit.coefficients;
    std_errors := fit.std_errors;
    log_likelihood := fit.log_likelihood;
    iterations := fit.iterations;
END
$$;
COMMENT ON FUNCTION @extschema@.fit_model(text, timestamptz, timestamptz, text, interval, interval, interval, interval, double precision, double precision, integer) IS
    'Fit the terms of a specification model on training_examples() over a range and store the result as the next version of a model name, used at once by functions given that name';

-- ---------------------------------------------------------------------------
-- Evaluation (issue 6, item 3)
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.model_evaluations (
    evaluation_id  integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    model_id       integer NOT NULL REFERENCES @extschema@.models ON DELETE CASCADE,
    eval_from      timestamptz NOT NULL,
    eval_to        timestamptz NOT NULL,
    spacing        interval NOT NULL,
    horizon        interval NOT NULL,
    lookback       interval NOT NULL,
    gap            interval NOT NULL,
    examples       bigint NOT NULL,
    positives      bigint NOT NULL,
    auc            double precision,      -- NULL when one class is missing
    log_loss       double precision NOT NULL,
    brier          double precision NOT NULL,
    evaluated_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX model_evaluations_model_idx ON @extschema@.model_evaluations (model_id);
COMMENT ON TABLE @extschema@.model_evaluations IS
    'Held-out evaluations of model versions: AUC-ROC (ties count one half), mean log loss (natural log, probabilities clipped to [1e-15, 1 - 1e-15]) and Brier score';

CREATE TABLE @extschema@.model_evaluation_deciles (
    evaluation_id   integer NOT NULL REFERENCES @extschema@.model_evaluations ON DELETE CASCADE,
    decile          integer NOT NULL CHECK (decile BETWEEN 1 AND 10),
    examples        bigint NOT NULL,
    positives       bigint NOT NULL,
    min_score       double precision NOT NULL,
    max_score       double precision NOT NULL,
    mean_score      double precision NOT NULL,   -- calibration: predicted rate ...
    observed_rate   double precision NOT NULL,   -- ... against the observed one
    lift            double precision,            -- observed_rate / overall rate
    cumulative_gain double precision,            -- share of all positives in deciles 1..decile
    cumulative_lift double precision,            -- rate in deciles 1..decile / overall rate
    PRIMARY KEY (evaluation_id, decile)
);
COMMENT ON TABLE @extschema@.model_evaluation_deciles IS
    'Calibration, lift and cumulative gain by score decile (decile 1 holds the highest scores; ties are split by user and time)';

-- The metrics of (label, score) rows; internal to evaluate_model().
CREATE FUNCTION @extschema@.evaluation_metrics(source regclass,
    OUT examples bigint, OUT positives bigint, OUT auc double precision,
    OUT log_loss double precision, OUT brier double precision)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format($q$
        WITH groups AS (        -- one row per distinct score
            SELECT score, count(*) FILTER (WHERE label) AS pos, count(*) FILTER (WHERE NOT label) AS neg
              FROM %1$s GROUP BY score),
        ranked AS (             -- negatives scored strictly lower
            SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY score ROWS BETWEEN UNBOUNDED PRECEDING
                                                                    AND 1 PRECEDING), 0) AS neg_below
              FROM groups)
        SELECT (SELECT count(*) FROM %1$s),
               (SELECT count(*) FILTER (WHERE label) FROM %1$s),
               (SELECT CASE WHEN sum(pos) > 0 AND sum(neg) > 0
                            THEN sum(pos * (neg_below + neg / 2.0)) / (sum(pos) * sum(neg)) END
                  FROM ranked)::float8,
               (SELECT -avg(CASE WHEN label THEN ln(greatest(score, 1e-15))
                                 ELSE ln(greatest(1 - score, 1e-15)) END) FROM %1$s),
               (SELECT avg((score - CASE WHEN label THEN 1 ELSE 0 END) ^ 2) FROM %1$s)$q$, source)
    INTO examples, positives, auc, log_loss, brier;
END
$$;
COMMENT ON FUNCTION @extschema@.evaluation_metrics(regclass) IS
    'AUC-ROC, log loss and Brier score of a relation with columns label boolean and score float8';

CREATE FUNCTION @extschema@.evaluate_model(model text, eval_from timestamptz, eval_to timestamptz,
    spacing interval DEFAULT '1 day', horizon interval DEFAULT '7 days',
    lookback interval DEFAULT '30 days', gap interval DEFAULT '0',
    version integer DEFAULT NULL)
RETURNS @extschema@.model_evaluations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer := @extschema@.model_id(model, version);
    m record;
    result @extschema@.model_evaluations;
BEGIN
    IF to_regclass('pg_temp.propensity_eval_examples') IS NOT NULL THEN
        DROP TABLE pg_temp.propensity_eval_examples;     -- left by an earlier call in this transaction
    END IF;
    CREATE TEMP TABLE propensity_eval_examples ON COMMIT DROP AS
        SELECT x.user_id, x.as_of, x.label, x.score
          FROM @extschema@.training_examples(model, eval_from, eval_to, spacing, horizon, lookback, gap,
                                              (SELECT v.version FROM @extschema@.models v
                                                WHERE v.model_id = mid)) x;
    m := @extschema@.evaluation_metrics('pg_temp.propensity_eval_examples');
    IF m.examples = 0 THEN
        RAISE EXCEPTION 'no evaluation examples between % and %', eval_from, eval_to
            USING ERRCODE = 'no_data_found',
                  HINT = 'Users need an event within lookback before an as-of time, and the label window (gap + horizon) must end before the latest stored event.';
    END IF;
    IF m.auc IS NULL THEN
        RAISE WARNING 'AUC is undefined: all % evaluation examples are %', m.examples,
                      CASE WHEN m.positives = 0 THEN 'negative' ELSE 'positive' END;
    END IF;

    INSERT INTO @extschema@.model_evaluations AS e
           (model_id, eval_from, eval_to, spacing, horizon, lookback, gap, examples, positives,
            auc, log_loss, brier)
    VALUES (mid, eval_from, eval_to, spacing, horizon, lookback, gap, m.examples, m.positives,
            m.auc, m.log_loss, m.brier)
    RETURNING e.* INTO result;

    INSERT INTO @extschema@.model_evaluation_deciles
    SELECT result.evaluation_id, d.decile, d.n, d.pos, d.lo, d.hi, d.mean_score,
           d.pos::float8 / d.n,
           CASE WHEN m.positives > 0 THEN (d.pos::float8 / d.n) / (m.positives::float8 / m.examples) END,
           CASE WHEN m.positives > 0 THEN sum(d.pos) OVER w / m.positives END,
           CASE WHEN m.positives > 0
                THEN (sum(d.pos) OVER w / sum(d.n) OVER w) / (m.positives::float8 / m.examples) END
      FROM (SELECT b.decile, count(*) AS n, count(*) FILTER (WHERE b.label) AS pos,
                   min(b.score) AS lo, max(b.score) AS hi, avg(b.score) AS mean_score
              FROM (SELECT x.label, x.score,
                           ntile(10) OVER (ORDER BY x.score DESC, x.user_id, x.as_of) AS decile
                      FROM pg_temp.propensity_eval_examples x) b
             GROUP BY b.decile) d
    WINDOW w AS (ORDER BY d.decile);

    DROP TABLE pg_temp.propensity_eval_examples;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.evaluate_model(text, timestamptz, timestamptz, interval, interval, interval, interval, integer) IS
    'Evaluate a model version on training_examples() over a held-out range; stores and returns the metrics, with calibration, lift and gain by decile in model_evaluation_deciles';

CREATE VIEW @extschema@.model_evaluation_summary AS
SELECT e.evaluation_id, m.name AS model, m.version, e.eval_from, e.eval_to, e.horizon,
       e.examples, e.positives, e.auc, e.log_loss, e.brier,
       (SELECT d.lift FROM @extschema@.model_evaluation_deciles d
         WHERE d.evaluation_id = e.evaluation_id AND d.decile = 1) AS top_decile_lift,
       e.evaluated_at
  FROM @extschema@.model_evaluations e
  JOIN @extschema@.models m USING (model_id);
COMMENT ON VIEW @extschema@.model_evaluation_summary IS
    'Evaluations by model name and version, with the lift of the top score decile';

-- ---------------------------------------------------------------------------
-- Privileges: readers build examples and read evaluations; admins fit and
-- evaluate (both write model tables).
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION @extschema@.fit_model(text, timestamptz, timestamptz, text, interval, interval, interval, interval, double precision, double precision, integer),
    @extschema@.evaluate_model(text, timestamptz, timestamptz, interval, interval, interval, interval, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.model_id(text, integer),
    @extschema@.model_snapshot(timestamptz, integer),
    @extschema@.training_examples(text, timestamptz, timestamptz, interval, interval, interval, interval, integer),
    @extschema@.fit_irls(text, integer, double precision, double precision, integer),
    @extschema@.evaluation_metrics(regclass)
    TO propensity_reader;
GRANT EXECUTE ON FUNCTION @extschema@.fit_model(text, timestamptz, timestamptz, text, interval, interval, interval, interval, double precision, double precision, integer),
    @extschema@.evaluate_model(text, timestamptz, timestamptz, interval, interval, interval, interval, integer)
    TO propensity_admin;
GRANT SELECT ON @extschema@.model_fits, @extschema@.model_evaluations,
    @extschema@.model_evaluation_deciles, @extschema@.model_evaluation_summary TO propensity_reader;
GRANT INSERT, DELETE ON @extschema@.model_fits, @extschema@.model_evaluations,
    @extschema@.model_evaluation_deciles TO propensity_admin;

-- ---------------------------------------------------------------------------
-- Propensity over time (SPEC section 4; issue 5, first part): the event-time
-- history of tracked models, kept as a table and its changelog, corrected
-- as events arrive in any order.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.history_points(model_id integer, users text[] DEFAULT NULL,
                                           from_times timestamptz[] DEFAULT NULL)
RETURNS TABLE (user_id text, event_time timestamptz, score double precision)
AS 'MODULE_PATHNAME', 'propensity_history_points'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 100000;
COMMENT ON FUNCTION @extschema@.history_points(integer, text[], timestamptz[]) IS
    'A model version''s score at every distinct event time of the users (all users when NULL), at or after each user''s from time, recomputed from the stored events';

CREATE TABLE @extschema@.history_models (
    model      text PRIMARY KEY,
    tracked_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.history_models IS
    'Models whose event-time score history is kept in score_history (each by name: its latest version scores new points)';

CREATE TABLE @extschema@.score_history (
    model      text NOT NULL REFERENCES @extschema@.history_models ON DELETE CASCADE,
    user_id    text NOT NULL,
    event_time timestamptz NOT NULL,
    score      double precision NOT NULL,
    model_id   integer NOT NULL,          -- the version that computed this point
    PRIMARY KEY (model, user_id, event_time)
);
COMMENT ON TABLE @extschema@.score_history IS
    'Event-time propensity history: per tracked model and user, the score at each distinct event time from the events up to it; equal to history_points() over the stored events';

CREATE TABLE @extschema@.score_history_changelog (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model      text NOT NULL,
    user_id    text NOT NULL,
    event_time timestamptz NOT NULL,
    old_score  double precision,          -- NULL: a new point
    new_score  double precision NOT NULL,
    model_id   integer NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX score_history_changelog_user_idx ON @extschema@.score_history_changelog (model, user_id, event_time);
COMMENT ON TABLE @extschema@.score_history_changelog IS
    'Every change to score_history: new points (old_score NULL) and corrections of later points by events that arrived out of order';

-- Recompute the points of these users at or after their earliest given time
-- and write what changed; duplicates in the arrays are fine.  Called by
-- ingest() and the worker in the batch's transaction.
CREATE FUNCTION @extschema@.history_refresh(users text[], from_times timestamptz[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m record;
    mid integer;
    changed bigint;
    total bigint := 0;
BEGIN
    IF users IS NULL OR cardinality(users) = 0 THEN
        RETURN 0;           -- (history_points() would take NULL as every user)
    END IF;
    -- the rows locked serialize batches: each statement below then reads
    -- the events of every batch committed before this one got the lock
    FOR m IN SELECT h.model FROM @extschema@.history_models h ORDER BY h.model FOR UPDATE LOOP
        mid := @extschema@.model_id(m.model);
        WITH u AS (
            SELECT x.user_id, min(x.from_time) AS from_time
              FROM unnest(users, from_times) AS x(user_id, from_time)
             WHERE x.user_id IS NOT NULL AND x.from_time IS NOT NULL
             GROUP BY x.user_id),
        p AS (SELECT * FROM @extschema@.history_points(mid, users, from_times)),
        old AS (
            SELECT s.user_id, s.event_time, s.score, s.model_id
              FROM @extschema@.score_history s JOIN u ON s.user_id = u.user_id AND s.event_time >= u.from_time
             WHERE s.model = m.model),
        diff AS (
            SELECT p.user_id, p.event_time, o.score AS old_score, p.score AS new_score
              FROM p LEFT JOIN old o USING (user_id, event_time)
             WHERE (o.score, o.model_id) IS DISTINCT FROM (p.score, mid)),
        logged AS (
            INSERT INTO @extschema@.score_history_changelog (model, user_id, event_time, old_score, new_score, model_id)
            SELECT m.model, d.user_id, d.event_time, d.old_score, d.new_score, mid FROM diff d)
        INSERT INTO @extschema@.score_history AS s (model, user_id, event_time, score, model_id)
        SELECT m.model, d.user_id, d.event_time, d.new_score, mid FROM diff d
        ON CONFLICT (model, user_id, event_time) DO UPDATE SET score = excluded.score, model_id = excluded.model_id;
        GET DIAGNOSTICS changed = ROW_COUNT;
        total := total + changed;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION @extschema@.history_refresh(text[], timestamptz[]) IS
    'Correct the score history of users from their earliest new event on, for every tracked model; returns the points written';

CREATE FUNCTION @extschema@.history_rebuild(model text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer := @extschema@.model_id(history_rebuild.model);
    n bigint;
BEGIN
    PERFORM 1 FROM @extschema@.history_models h WHERE h.model = history_rebuild.model FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the history of model "%" is not kept', history_rebuild.model
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Start it with SELECT propensity.track_history(''model'').';
    END IF;
    DELETE FROM @extschema@.score_history s WHERE s.model = history_rebuild.model;
    INSERT INTO @extschema@.score_history (model, user_id, event_time, score, model_id)
    SELECT history_rebuild.model, p.user_id, p.event_time, p.score, mid
      FROM @extschema@.history_points(mid) p;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.history_rebuild(text) IS
    'Recompute a tracked model''s whole score history from the stored events (the changelog is not written); returns the points';

CREATE FUNCTION @extschema@.track_history(model text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.model_id(track_history.model);   -- it must exist
    INSERT INTO @extschema@.history_models (model) VALUES (track_history.model)
    ON CONFLICT DO NOTHING;
    RETURN @extschema@.history_rebuild(track_history.model);
END
$$;
COMMENT ON FUNCTION @extschema@.track_history(text) IS
    'Keep the event-time score history of a model from now on, built first from the stored events; returns the points';

CREATE FUNCTION @extschema@.untrack_history(model text)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    DELETE FROM @extschema@.score_history_changelog c WHERE c.model = untrack_history.model;
    DELETE FROM @extschema@.history_models h WHERE h.model = untrack_history.model RETURNING true;
END;
COMMENT ON FUNCTION @extschema@.untrack_history(text) IS
    'Stop keeping a model''s score history and drop it';

REVOKE ALL ON FUNCTION @extschema@.history_rebuild(text), @extschema@.track_history(text),
    @extschema@.untrack_history(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.history_points(integer, text[], timestamptz[]) TO propensity_reader;
GRANT EXECUTE ON FUNCTION @extschema@.history_refresh(text[], timestamptz[]) TO propensity_writer;
GRANT EXECUTE ON FUNCTION @extschema@.history_rebuild(text), @extschema@.track_history(text),
    @extschema@.untrack_history(text) TO propensity_admin;
GRANT SELECT ON @extschema@.history_models, @extschema@.score_history,
    @extschema@.score_history_changelog TO propensity_reader;
GRANT SELECT, UPDATE ON @extschema@.history_models TO propensity_writer;
GRANT INSERT, UPDATE ON @extschema@.score_history TO propensity_writer;
GRANT INSERT ON @extschema@.score_history_changelog TO propensity_writer;
GRANT INSERT, DELETE ON @extschema@.history_models, @extschema@.score_history_changelog TO propensity_admin;
GRANT DELETE ON @extschema@.score_history TO propensity_admin;
