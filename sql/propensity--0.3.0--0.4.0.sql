-- propensity 0.3.0 -> 0.4.0: fitting logistic regression in the database
-- (Newton/IRLS; issue 6, first part): the logistic_sums() aggregate, the
-- logistic_step() solver and the fit_logistic() driver.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.4.0'" to load this file. \quit

CREATE FUNCTION @extschema@.logistic_sums_accum(internal, boolean, double precision[], double precision[])
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_logistic_sums_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.logistic_sums_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_logistic_sums_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION @extschema@.logistic_sums_serialize(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'propensity_logistic_sums_serialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.logistic_sums_deserialize(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_logistic_sums_deserialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.logistic_sums_final(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'propensity_logistic_sums_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE @extschema@.logistic_sums(label boolean, features double precision[],
                                           coefficients double precision[]) (
    SFUNC = @extschema@.logistic_sums_accum,
    STYPE = internal,
    COMBINEFUNC = @extschema@.logistic_sums_combine,
    SERIALFUNC = @extschema@.logistic_sums_serialize,
    DESERIALFUNC = @extschema@.logistic_sums_deserialize,
    FINALFUNC = @extschema@.logistic_sums_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.logistic_sums(boolean, double precision[], double precision[]) IS
    'One IRLS pass at the given coefficients (intercept first): gradient, Hessian and log-likelihood, for logistic_step()';

CREATE FUNCTION @extschema@.logistic_step(sums bytea, coefficients double precision[],
    l2 double precision DEFAULT 0,
    OUT coefficients double precision[], OUT std_errors double precision[],
    OUT max_change double precision, OUT log_likelihood double precision,
    OUT examples double precision, OUT extreme double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_logistic_step'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.logistic_step(bytea, double precision[], double precision) IS
    'The Newton step from logistic_sums(): next coefficients, standard errors and the (penalized) log-likelihood at the given ones';

CREATE FUNCTION @extschema@.fit_logistic(examples regclass, label_column name, feature_columns name[],
    l2 double precision DEFAULT 0, tolerance double precision DEFAULT 1e-8,
    max_iterations integer DEFAULT 25,
    OUT coefficients double precision[], OUT std_errors double precision[],
    OUT log_likelihood double precision, OUT iterations integer, OUT examples_used double precision)
RETURNS record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text;
    beta double precision[];
    st record;
    sums bytea;
BEGIN
    IF feature_columns IS NULL OR cardinality(feature_columns) < 1 THEN
        RAISE EXCEPTION 'at least one feature column is needed' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tolerance IS NULL OR tolerance <= 0 OR max_iterations IS NULL OR max_iterations < 1 THEN
        RAISE EXCEPTION 'tolerance must be positive and max_iterations at least 1'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    q := format('SELECT @extschema@.logistic_sums(%I, ARRAY[%s]::float8[], $1) FROM %s',
                label_column,
                (SELECT string_agg(format('%I', c), ', ' ORDER BY o)
                   FROM unnest(feature_columns) WITH ORDINALITY AS f(c, o)),
                examples);
    beta := array_fill(0::float8, ARRAY[cardinality(feature_columns) + 1]);
    FOR i IN 1..max_iterations LOOP
        EXECUTE q INTO sums USING beta;
        IF sums IS NULL THEN
            RAISE EXCEPTION 'no examples in %', examples USING ERRCODE = 'no_data_found';
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
COMMENT ON FUNCTION @extschema@.fit_logistic(regclass, name, name[], double precision, double precision, integer) IS
    'Logistic regression of a boolean column on numeric columns by Newton/IRLS (one logistic_sums() pass per iteration, parallel where the planner allows), with optional L2 on the non-intercept coefficients';

GRANT EXECUTE ON FUNCTION @extschema@.logistic_step(bytea, double precision[], double precision),
    @extschema@.fit_logistic(regclass, name, name[], double precision, double precision, integer) TO propensity_reader;
