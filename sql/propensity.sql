-- propensity: the SQL of the current version, in one script.
--
-- The install script of the current version, sql/propensity--VERSION.sql,
-- is built from this file by make.  The install script of 0.1.0 and the
-- upgrade scripts sql/propensity--A--B.sql are released and never change:
-- a change to the SQL goes here and, for the databases installed at the
-- version before, into a new upgrade script.  The regression test
-- sql/catalogue.sql checks that a fresh install and 0.1.0 followed by
-- ALTER EXTENSION propensity UPDATE give the same catalogue.
--
-- The parts follow the data flow: the event store; features, models and
-- scores; the event generator; attribution; ingestion (the embedded queue,
-- the schema registry, the worker); Kafka sources; fitting and evaluating models;
-- propensity over time; and last, the worker's role and what it may write.
\echo Use "CREATE EXTENSION propensity" to load this file. \quit
-- ===========================================================================
-- Roles, the event store and its partitions.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Roles: read (dashboards, analysts), write (producers, loaders), administer.
-- Roles are cluster-wide, so they are created only when missing and survive
-- DROP EXTENSION.  propensity_worker is the role the ingest worker connects
-- as (see Least privilege, at the end).
-- ---------------------------------------------------------------------------
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'propensity_reader') THEN
        CREATE ROLE propensity_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'propensity_writer') THEN
        CREATE ROLE propensity_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'propensity_admin') THEN
        CREATE ROLE propensity_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'propensity_worker') THEN
        CREATE ROLE propensity_worker LOGIN;
    END IF;
END
$roles$;

GRANT propensity_reader TO propensity_writer;

GRANT propensity_writer TO propensity_admin;

GRANT USAGE ON SCHEMA @extschema@ TO propensity_reader;

-- ---------------------------------------------------------------------------
-- Event store (docs/computing.md section 1)
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.events (
    event_time    timestamptz NOT NULL CHECK (pg_catalog.isfinite(event_time)),
    user_id       text NOT NULL,
    event_type    text NOT NULL CHECK (event_type IN ('IM', 'CL', 'PS', 'CN')),
    event_id      text NOT NULL,
    advertiser_id bigint,
    campaign_id   bigint,
    auction_id    text,
    pixel_id      bigint,
    publisher     text,
    creative      text,
    placement     text,
    product       text,
    quantity      integer,
    revenue       double precision,
    PRIMARY KEY (event_id, event_time)
) PARTITION BY RANGE (event_time);

CREATE INDEX events_user_time_idx ON @extschema@.events (user_id, event_time);

COMMENT ON TABLE @extschema@.events IS
    'Marketing events, partitioned by event time; a redelivered (event_id, event_time) is ignored by the loaders';

-- Times outside the partition horizon (propensity.partition_max_past and
-- partition_max_future) and rows inserted before their partition existed
-- land here; propensity.maintain_partitions() moves the latter out.
CREATE TABLE @extschema@.events_default PARTITION OF @extschema@.events DEFAULT;

CREATE TABLE @extschema@.event_partitions (
    partition   regclass PRIMARY KEY,
    range_start timestamptz NOT NULL,
    range_end   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (range_start < range_end)
);

CREATE INDEX event_partitions_range_idx ON @extschema@.event_partitions (range_start);

CREATE FUNCTION @extschema@.partition_bounds(event_time timestamptz,
    OUT range_start timestamptz, OUT range_end timestamptz, OUT in_horizon boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_partition_bounds'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.partition_bounds(timestamptz) IS
    'The partition an event time belongs to under propensity.partition_interval, and whether it is within the partition horizon';

-- Creates the partition covering t unless one exists; returns the end of
-- the range now covering t (or NULL when t is outside the horizon).
CREATE FUNCTION @extschema@.ensure_partition(t timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b      record;
    lo     timestamptz;
    hi     timestamptz;
    base   text;
    pname  text;
    k      integer := 1;
    moved  bigint;
BEGIN
    IF t IS NULL OR NOT isfinite(t) THEN
        RAISE EXCEPTION 'event time must be finite, not %', t
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT p.range_end INTO hi
      FROM @extschema@.event_partitions p
      JOIN pg_inherits i ON i.inhrelid = p.partition
                        AND i.inhparent = '@extschema@.events'::regclass
     WHERE p.range_start <= t AND t < p.range_end;
    IF FOUND THEN
        RETURN hi;
    END IF;

    b := @extschema@.partition_bounds(t);
    IF NOT b.in_horizon THEN
        RETURN NULL;
    END IF;

    -- one creator at a time; re-check under the lock, with the registry
    -- rid of partitions dropped or detached by hand
    PERFORM pg_advisory_xact_lock(hashtext('propensity.events partitions'));
    PERFORM @extschema@.forget_missing_partitions();
    SELECT p.range_end INTO hi
      FROM @extschema@.event_partitions p
     WHERE p.range_start <= t AND t < p.range_end;
    IF FOUND THEN
        RETURN hi;
    END IF;

    -- clip to the neighbours, which may have another width
    SELECT greatest(b.range_start, max(p.range_end)) INTO lo
      FROM @extschema@.event_partitions p WHERE p.range_end <= t;
    lo := coalesce(lo, b.range_start);
    SELECT least(b.range_end, min(p.range_start)) INTO hi
      FROM @extschema@.event_partitions p WHERE p.range_start > t;
    hi := coalesce(hi, b.range_end);

    base := 'events_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
    IF lo <> date_trunc('day', lo, 'UTC') THEN
        base := base || '_' || to_char(lo AT TIME ZONE 'UTC', 'HH24MISS');
    END IF;
    -- a detached partition may still hold the name
    pname := base;
    WHILE to_regclass(format('%I.%I', '@extschema@', pname)) IS NOT NULL LOOP
        k := k + 1;
        pname := base || '_' || k;
    END LOOP;

    -- rows already in the default partition for this range move over
    moved := 0;
    IF EXISTS (SELECT 1 FROM @extschema@.events_default
                WHERE event_time >= lo AND event_time < hi) THEN
        CREATE TEMP TABLE propensity_moving (LIKE @extschema@.events);
        WITH d AS (
            DELETE FROM @extschema@.events_default
             WHERE event_time >= lo AND event_time < hi
            RETURNING *)
        INSERT INTO propensity_moving SELECT * FROM d;
        GET DIAGNOSTICS moved = ROW_COUNT;
    END IF;

    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.events FOR VALUES FROM (%L) TO (%L)',
                   '@extschema@', pname, '@extschema@', lo, hi);
    INSERT INTO @extschema@.event_partitions (partition, range_start, range_end)
    VALUES (format('%I.%I', '@extschema@', pname)::regclass, lo, hi);

    IF moved > 0 THEN
        INSERT INTO @extschema@.events SELECT * FROM propensity_moving;
        DROP TABLE propensity_moving;
    END IF;
    RETURN hi;
END
$$;

-- The partitions of [from_time, to_time], walked partition by partition
-- only inside the horizon: an endpoint in year 100000 or year 1 costs nothing.
CREATE FUNCTION @extschema@.ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h       record;
    t       timestamptz;
    stop    timestamptz;
    before  bigint;
    hi      timestamptz;
BEGIN
    IF from_time IS NULL OR to_time IS NULL THEN
        RAISE EXCEPTION 'time range must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT (isfinite(from_time) AND isfinite(to_time)) THEN
        RAISE EXCEPTION 'time range [%, %] must be finite', from_time, to_time
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    h := @extschema@.partition_horizon();
    t := greatest(from_time, h.horizon_start);
    stop := least(to_time, h.horizon_end - interval '1 microsecond');
    SELECT count(*) INTO before FROM @extschema@.event_partitions;
    WHILE t <= stop LOOP
        hi := coalesce(@extschema@.ensure_partition(t), (@extschema@.partition_bounds(t)).range_end);
        t := hi;
    END LOOP;
    RETURN (SELECT count(*) FROM @extschema@.event_partitions) - before;
END
$$;

COMMENT ON FUNCTION @extschema@.ensure_partitions(timestamptz, timestamptz) IS
    'Creates the event partitions covering [from_time, to_time] within the horizon; returns how many were created';

CREATE FUNCTION @extschema@.drop_old_partitions(older_than interval,
                                                           as_of timestamptz DEFAULT pg_catalog.now())
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz;
    p      record;
BEGIN
    IF older_than IS NULL OR as_of IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'retention interval must be a non-negative interval, not %', older_than
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example: SELECT propensity.drop_old_partitions(''90 days'');';
    END IF;
    cutoff := as_of - older_than;
    PERFORM pg_advisory_xact_lock(hashtext('propensity.events partitions'));
    PERFORM @extschema@.forget_missing_partitions();
    FOR p IN
        SELECT e.partition, e.range_end
          FROM @extschema@.event_partitions e
         WHERE e.range_end <= cutoff
         ORDER BY e.range_start
    LOOP
        EXECUTE format('DROP TABLE %s', p.partition);
        DELETE FROM @extschema@.event_partitions WHERE partition = p.partition;
        RETURN NEXT p.partition::text;
    END LOOP;
    -- far-past rows kept in the default partition age out the same way
    DELETE FROM @extschema@.events_default WHERE event_time < cutoff;
END
$$;

COMMENT ON FUNCTION @extschema@.drop_old_partitions(interval, timestamptz) IS
    'Retention: drops the event partitions that end before as_of - older_than, and older rows of the default partition; returns the dropped partitions';

-- ---------------------------------------------------------------------------
-- Event partitions: only the ranges that hold events, within the horizon,
-- a bounded number per batch; a partition dropped or detached by hand is
-- forgotten instead of breaking maintenance.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.partition_horizon(OUT horizon_start timestamptz, OUT horizon_end timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_partition_horizon'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.partition_horizon() IS
    'Event times in [horizon_start, horizon_end) get partitions of their own (propensity.partition_max_past and partition_max_future)';

CREATE FUNCTION @extschema@.ensure_partitions_for(times timestamptz[])
RETURNS integer
AS 'MODULE_PATHNAME', 'propensity_ensure_partitions_for'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ensure_partitions_for(timestamptz[]) IS
    'Creates the missing partitions of the ranges that hold these times (within the horizon, at most propensity.partitions_per_batch); returns how many';

-- Registry rows of partitions that are no longer attached (dropped or
-- detached by hand) are forgotten; the caller holds the creators' lock.
CREATE FUNCTION @extschema@.forget_missing_partitions()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM @extschema@.event_partitions p
     WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i
                        WHERE i.inhrelid = p.partition
                          AND i.inhparent = '@extschema@.events'::regclass);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.forget_missing_partitions() IS
    'Forgets the registry rows of event partitions that were dropped or detached; returns how many';

CREATE FUNCTION @extschema@.maintain_partitions(max_partitions integer DEFAULT 100)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       timestamptz;
    created integer := 0;
BEGIN
    IF max_partitions IS NULL OR max_partitions < 0 THEN
        RAISE EXCEPTION 'max_partitions must be a non-negative number, not %', max_partitions
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('propensity.events partitions'));
    PERFORM @extschema@.forget_missing_partitions();
    FOR t IN
        SELECT min(d.event_time)
          FROM @extschema@.events_default d
         WHERE (@extschema@.partition_bounds(d.event_time)).in_horizon
         GROUP BY (@extschema@.partition_bounds(d.event_time)).range_start
         ORDER BY 1
    LOOP
        EXIT WHEN created >= max_partitions;
        created := created + @extschema@.ensure_partitions(t, t);
    END LOOP;
    RETURN created;
END
$$;

COMMENT ON FUNCTION @extschema@.maintain_partitions(integer) IS
    'Moves rows of the default partition that are within the horizon into partitions of their own, creating at most max_partitions; returns how many were created';

REVOKE ALL ON FUNCTION @extschema@.forget_missing_partitions(), @extschema@.maintain_partitions(integer),
    @extschema@.ensure_partitions_for(timestamptz[]) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.ensure_partitions_for(timestamptz[]) TO propensity_writer;

GRANT EXECUTE ON FUNCTION @extschema@.forget_missing_partitions(), @extschema@.maintain_partitions(integer)
    TO propensity_admin;

GRANT EXECUTE ON FUNCTION @extschema@.partition_horizon() TO propensity_reader;

-- ===========================================================================
-- Features, models and scores.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Feature aggregates (docs/computing.md section 2)
-- ---------------------------------------------------------------------------
CREATE TYPE @extschema@.counts AS (im bigint, cl bigint, ps bigint, cn bigint);

CREATE TYPE @extschema@.decays AS (im double precision, cl double precision,
                                   ps double precision, cn double precision);

CREATE FUNCTION @extschema@.window_counts_accum(internal, text, timestamptz, timestamptz, interval)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_window_counts_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.decayed_counts_accum(internal, text, timestamptz, timestamptz, interval)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_decayed_counts_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.type_sums_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_type_sums_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.type_sums_serialize(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'propensity_type_sums_serialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.type_sums_deserialize(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_type_sums_deserialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.window_counts_final(internal)
RETURNS @extschema@.counts AS 'MODULE_PATHNAME', 'propensity_window_counts_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.decayed_counts_final(internal)
RETURNS @extschema@.decays AS 'MODULE_PATHNAME', 'propensity_decayed_counts_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE @extschema@.window_counts(event_type text, event_time timestamptz,
                                           as_of timestamptz, width interval) (
    SFUNC = @extschema@.window_counts_accum,
    STYPE = internal,
    SSPACE = 32,
    FINALFUNC = @extschema@.window_counts_final,
    COMBINEFUNC = @extschema@.type_sums_combine,
    SERIALFUNC = @extschema@.type_sums_serialize,
    DESERIALFUNC = @extschema@.type_sums_deserialize,
    PARALLEL = SAFE
);

COMMENT ON AGGREGATE @extschema@.window_counts(text, timestamptz, timestamptz, interval) IS
    'N(type, width, as_of) for each event type: events with as_of - width < event_time <= as_of';

CREATE AGGREGATE @extschema@.decayed_counts(event_type text, event_time timestamptz,
                                            as_of timestamptz, half_life interval) (
    SFUNC = @extschema@.decayed_counts_accum,
    STYPE = internal,
    SSPACE = 32,
    FINALFUNC = @extschema@.decayed_counts_final,
    COMBINEFUNC = @extschema@.type_sums_combine,
    SERIALFUNC = @extschema@.type_sums_serialize,
    DESERIALFUNC = @extschema@.type_sums_deserialize,
    PARALLEL = SAFE
);

COMMENT ON AGGREGATE @extschema@.decayed_counts(text, timestamptz, timestamptz, interval) IS
    'D(type, half_life, as_of) for each event type: the sum of 2^(-(as_of - event_time) / half_life) over events up to as_of';

-- ---------------------------------------------------------------------------
-- Models and scores (docs/computing.md section 3)
-- ---------------------------------------------------------------------------
CREATE TYPE @extschema@.model_term AS (
    name        text,              -- label, e.g. 'clicks'
    feature     text,              -- 'window_count' or 'decayed_count'
    event_type  text,              -- IM, CL, PS or CN
    width       interval,          -- window W or half-life h
    transform   text,              -- 'identity' or 'log1p'
    coefficient double precision
);

CREATE TABLE @extschema@.models (
    model_id   integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    version    integer NOT NULL DEFAULT 1,
    intercept  double precision NOT NULL,
    terms      @extschema@.model_term[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (name, version)
);

COMMENT ON TABLE @extschema@.models IS
    'Logistic models: score = 1 / (1 + exp(-(intercept + sum coefficient * transform(feature)))); functions use the latest version of a name';

CREATE FUNCTION @extschema@.validate_model(name text, intercept double precision,
                                           terms @extschema@.model_term[])
RETURNS void AS 'MODULE_PATHNAME', 'propensity_validate_model'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.models_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.validate_model(NEW.name, NEW.intercept, NEW.terms);
    RETURN NEW;
END
$$;

CREATE TRIGGER models_check BEFORE INSERT OR UPDATE ON @extschema@.models
    FOR EACH ROW EXECUTE FUNCTION @extschema@.models_check();

INSERT INTO @extschema@.models (name, version, intercept, terms) VALUES
    ('seed', 1, -2.78, ARRAY[
        ROW('impressions',      'window_count', 'IM', interval '30 days',  'log1p', 1.09),
        ROW('clicks',           'window_count', 'CL', interval '7 days',   'log1p', 1.77),
        ROW('paid_search',      'window_count', 'PS', interval '2 days',   'log1p', 2.82),
        ROW('past_conversions', 'window_count', 'CN', interval '365 days', 'log1p', 0.99)
    ]::@extschema@.model_term[]);

CREATE FUNCTION @extschema@.model_accum(internal, text, timestamptz, timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_model_accum'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.model_accum(internal, text, timestamptz, timestamptz, text)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_model_accum'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.model_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_model_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.model_serialize(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'propensity_model_serialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.model_deserialize(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_model_deserialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION @extschema@.feature_values_final(internal)
RETURNS double precision[] AS 'MODULE_PATHNAME', 'propensity_feature_values_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.score_events_final(internal)
RETURNS double precision AS 'MODULE_PATHNAME', 'propensity_score_events_final'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE AGGREGATE @extschema@.feature_values(event_type text, event_time timestamptz, as_of timestamptz) (
    SFUNC = @extschema@.model_accum, STYPE = internal, SSPACE = 48,
    FINALFUNC = @extschema@.feature_values_final,
    COMBINEFUNC = @extschema@.model_combine,
    SERIALFUNC = @extschema@.model_serialize, DESERIALFUNC = @extschema@.model_deserialize,
    PARALLEL = SAFE);

CREATE AGGREGATE @extschema@.feature_values(event_type text, event_time timestamptz, as_of timestamptz, model text) (
    SFUNC = @extschema@.model_accum, STYPE = internal, SSPACE = 48,
    FINALFUNC = @extschema@.feature_values_final,
    COMBINEFUNC = @extschema@.model_combine,
    SERIALFUNC = @extschema@.model_serialize, DESERIALFUNC = @extschema@.model_deserialize,
    PARALLEL = SAFE);

CREATE AGGREGATE @extschema@.score_events(event_type text, event_time timestamptz, as_of timestamptz) (
    SFUNC = @extschema@.model_accum, STYPE = internal, SSPACE = 48,
    FINALFUNC = @extschema@.score_events_final,
    COMBINEFUNC = @extschema@.model_combine,
    SERIALFUNC = @extschema@.model_serialize, DESERIALFUNC = @extschema@.model_deserialize,
    PARALLEL = SAFE);

CREATE AGGREGATE @extschema@.score_events(event_type text, event_time timestamptz, as_of timestamptz, model text) (
    SFUNC = @extschema@.model_accum, STYPE = internal, SSPACE = 48,
    FINALFUNC = @extschema@.score_events_final,
    COMBINEFUNC = @extschema@.model_combine,
    SERIALFUNC = @extschema@.model_serialize, DESERIALFUNC = @extschema@.model_deserialize,
    PARALLEL = SAFE);

COMMENT ON AGGREGATE @extschema@.feature_values(text, timestamptz, timestamptz) IS
    'The default model''s feature values as of a time, one per term';

COMMENT ON AGGREGATE @extschema@.feature_values(text, timestamptz, timestamptz, text) IS
    'A model''s feature values as of a time, one per term';

COMMENT ON AGGREGATE @extschema@.score_events(text, timestamptz, timestamptz) IS
    'The default model''s score of these events as of a time';

COMMENT ON AGGREGATE @extschema@.score_events(text, timestamptz, timestamptz, text) IS
    'A model''s score of these events as of a time';

CREATE FUNCTION @extschema@.apply_model(features double precision[], model text DEFAULT NULL)
RETURNS double precision AS 'MODULE_PATHNAME', 'propensity_apply_model'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.apply_model(double precision[], text) IS
    'Score of a feature vector (one value per model term; NULL means no events) under a model';

CREATE FUNCTION @extschema@.score(user_id text, as_of timestamptz DEFAULT pg_catalog.now(),
                                  model text DEFAULT NULL)
RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result double precision;
BEGIN
    IF score.user_id IS NULL OR score.as_of IS NULL THEN
        RAISE EXCEPTION '% must not be null', CASE WHEN score.user_id IS NULL THEN 'user id' ELSE 'as-of time' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT @extschema@.score_events(e.event_type, e.event_time, score.as_of, score.model)
      INTO result
      FROM @extschema@.events e
     WHERE e.user_id = score.user_id AND e.event_time <= score.as_of;
    -- no event up to as_of: the score of an all-zero feature vector
    RETURN coalesce(result, @extschema@.apply_model(NULL, score.model));
END
$$;

COMMENT ON FUNCTION @extschema@.score(text, timestamptz, text) IS
    'Propensity of one user as of a time under a model (default: propensity.default_model)';

CREATE FUNCTION @extschema@.score_all(as_of timestamptz DEFAULT pg_catalog.now(), model text DEFAULT NULL)
RETURNS TABLE (user_id text, score double precision, features double precision[])
AS 'MODULE_PATHNAME', 'propensity_score_all'
LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 100000;

COMMENT ON FUNCTION @extschema@.score_all(timestamptz, text) IS
    'Propensity and features of every user with events up to as_of';

-- ===========================================================================
-- The event generator, and the privileges of the parts above.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Event generator
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.generate_events(
    seed bigint, n_events bigint, n_users integer,
    start_time timestamptz, duration interval,
    out_of_order double precision DEFAULT 0,
    max_delay interval DEFAULT '6 hours',
    n_advertisers integer DEFAULT 20,
    campaigns_per_advertiser integer DEFAULT 5)
RETURNS TABLE (event_time timestamptz, user_id text, event_type text, event_id text,
               advertiser_id bigint, campaign_id bigint, auction_id text, pixel_id bigint,
               publisher text, creative text, placement text, product text,
               quantity integer, revenue double precision, arrival_time timestamptz)
AS 'MODULE_PATHNAME', 'propensity_generate_events'
LANGUAGE C IMMUTABLE PARALLEL SAFE ROWS 1000000;

COMMENT ON FUNCTION @extschema@.generate_events(bigint, bigint, integer, timestamptz, interval, double precision, interval, integer, integer) IS
    'Deterministic synthetic event stream in arrival order: the same arguments give the same events';

CREATE FUNCTION @extschema@.load_generated_events(
    seed bigint, n_events bigint, n_users integer,
    start_time timestamptz, duration interval,
    out_of_order double precision DEFAULT 0,
    max_delay interval DEFAULT '6 hours',
    n_advertisers integer DEFAULT 20,
    campaigns_per_advertiser integer DEFAULT 5)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    inserted bigint;
BEGIN
    -- conversions follow impressions by up to 29 days
    PERFORM @extschema@.ensure_partitions(start_time, start_time + duration + interval '30 days');
    INSERT INTO @extschema@.events
        (event_time, user_id, event_type, event_id, advertiser_id, campaign_id, auction_id,
         pixel_id, publisher, creative, placement, product, quantity, revenue)
    SELECT (g).event_time, (g).user_id, (g).event_type, (g).event_id, (g).advertiser_id,
           (g).campaign_id, (g).auction_id, (g).pixel_id, (g).publisher, (g).creative,
           (g).placement, (g).product, (g).quantity, (g).revenue
      FROM (SELECT @extschema@.generate_events(seed, n_events, n_users, start_time, duration,
                                               out_of_order, max_delay, n_advertisers,
                                               campaigns_per_advertiser) AS g
            OFFSET 0) s
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    RETURN inserted;
END
$$;

COMMENT ON FUNCTION @extschema@.load_generated_events(bigint, bigint, integer, timestamptz, interval, double precision, interval, integer, integer) IS
    'Inserts a generated stream into propensity.events, creating partitions first; returns the rows inserted (redelivered events are skipped)';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION @extschema@.ensure_partition(timestamptz) FROM PUBLIC;

REVOKE ALL ON FUNCTION @extschema@.ensure_partitions(timestamptz, timestamptz) FROM PUBLIC;

REVOKE ALL ON FUNCTION @extschema@.drop_old_partitions(interval, timestamptz) FROM PUBLIC;

REVOKE ALL ON FUNCTION @extschema@.load_generated_events(bigint, bigint, integer, timestamptz, interval, double precision, interval, integer, integer) FROM PUBLIC;

GRANT SELECT ON @extschema@.events, @extschema@.events_default, @extschema@.event_partitions,
                @extschema@.models TO propensity_reader;

GRANT INSERT ON @extschema@.events TO propensity_writer;

GRANT EXECUTE ON FUNCTION @extschema@.ensure_partition(timestamptz),
                          @extschema@.ensure_partitions(timestamptz, timestamptz),
                          @extschema@.load_generated_events(bigint, bigint, integer, timestamptz, interval, double precision, interval, integer, integer)
    TO propensity_writer;

GRANT INSERT, UPDATE, DELETE ON @extschema@.models TO propensity_admin;

GRANT DELETE ON @extschema@.events TO propensity_admin;

GRANT EXECUTE ON FUNCTION @extschema@.drop_old_partitions(interval, timestamptz)
    TO propensity_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.models', 'WHERE name <> ''seed''');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_partitions', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.events_default', '');

-- ===========================================================================
-- Attribution (docs/computing.md section 5): settings, the streaming engine
-- with retractions, its changelog, current attribution, totals and
-- lateness; the batch scan and the backfill; the dashboard view.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Post-click / post-view attribution (docs/computing.md section 5): the batch evaluation
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.advertiser_settings (
    advertiser_id    bigint PRIMARY KEY,
    pc_window        interval NOT NULL DEFAULT '30 days' CHECK (pc_window > interval '0'),
    pv_window        interval NOT NULL DEFAULT '30 days' CHECK (pv_window > interval '0'),
    rolling_window   interval NOT NULL DEFAULT '30 days' CHECK (rolling_window > interval '0'),
    allowed_lateness interval NOT NULL DEFAULT '30 days' CHECK (allowed_lateness >= interval '0')
);

COMMENT ON TABLE @extschema@.advertiser_settings IS
    'Per-advertiser attribution windows; an advertiser without a row gets the defaults of docs/computing.md section 5 (30 days each)';

CREATE TYPE @extschema@.attribution_credit AS (
    conversion_event_id text,
    conversion_time     timestamptz,
    kind                text,        -- PC, PV or NONE
    campaign_id         bigint,      -- NULL for NONE (or an impression without campaign)
    impression_event_id text         -- the credited impression, NULL for NONE
);

CREATE FUNCTION @extschema@.attribute_accum(internal, text, text, timestamptz, bigint, text, bigint,
                                            interval, interval, interval)
RETURNS internal AS 'MODULE_PATHNAME', 'propensity_attribute_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION @extschema@.attribute_final(internal)
RETURNS @extschema@.attribution_credit[] AS 'MODULE_PATHNAME', 'propensity_attribute_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE @extschema@.attribute(event_id text, event_type text, event_time timestamptz,
                                       campaign_id bigint, auction_id text, pixel_id bigint,
                                       pc_window interval, pv_window interval, rolling_window interval) (
    SFUNC = @extschema@.attribute_accum,
    STYPE = internal,
    FINALFUNC = @extschema@.attribute_final,
    PARALLEL = SAFE
);

COMMENT ON AGGREGATE @extschema@.attribute(text, text, timestamptz, bigint, text, bigint, interval, interval, interval) IS
    'Credits of the conversions among one (user, advertiser) key''s events, by the rules of docs/computing.md section 5';

CREATE FUNCTION @extschema@.attribute_all()
RETURNS TABLE (user_id text, advertiser_id bigint, conversion_event_id text,
               conversion_time timestamptz, kind text, campaign_id bigint,
               impression_event_id text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.user_id, k.advertiser_id, c.*
      FROM (SELECT e.user_id, e.advertiser_id,
                   @extschema@.attribute(e.event_id, e.event_type, e.event_time, e.campaign_id,
                                         e.auction_id, e.pixel_id,
                                         coalesce(s.pc_window, interval '30 days'),
                                         coalesce(s.pv_window, interval '30 days'),
                                         coalesce(s.rolling_window, interval '30 days')) AS credits
              FROM @extschema@.events e
              LEFT JOIN @extschema@.advertiser_settings s USING (advertiser_id)
             WHERE e.advertiser_id IS NOT NULL AND e.event_type IN ('IM', 'CL', 'CN')
             GROUP BY e.user_id, e.advertiser_id) k,
           unnest(k.credits) c
$$;

COMMENT ON FUNCTION @extschema@.attribute_all() IS
    'Batch evaluation of docs/computing.md section 5 over every event: one row per conversion with its credit';

GRANT SELECT ON @extschema@.advertiser_settings TO propensity_reader;

GRANT INSERT, UPDATE, DELETE ON @extschema@.advertiser_settings TO propensity_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.advertiser_settings', '');

-- ---------------------------------------------------------------------------
-- Engine state: one row.  generation counts committed engine batches, so a
-- session can tell whether its in-memory state is current; max_event_time
-- is the latest event time ingested, from which the watermark follows.
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.attribution_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation     bigint NOT NULL DEFAULT 0,
    max_event_time timestamptz,
    updated_at     timestamptz
);

INSERT INTO @extschema@.attribution_state DEFAULT VALUES;

COMMENT ON TABLE @extschema@.attribution_state IS
    'Attribution engine state: batches committed (generation) and the latest event time ingested';

-- The changelog: every credit (+1) and every retraction (-1), in order.
CREATE TABLE @extschema@.attribution_changelog (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch               bigint NOT NULL,
    conversion_event_id text NOT NULL,
    conversion_time     timestamptz NOT NULL,
    user_id             text NOT NULL,
    advertiser_id       bigint NOT NULL,
    campaign_id         bigint,
    kind                text NOT NULL CHECK (kind IN ('PC', 'PV', 'NONE')),
    impression_event_id text,
    delta               smallint NOT NULL CHECK (delta IN (-1, 1)),
    logged_at           timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE INDEX attribution_changelog_conversion_idx
    ON @extschema@.attribution_changelog (conversion_event_id, conversion_time);

COMMENT ON TABLE @extschema@.attribution_changelog IS
    'Attribution deltas: a changed credit is retracted (-1) and the new one emitted (+1); sums give attribution_current and attribution_totals';

-- The table side: each conversion's credit now (the changelog's net +1).
CREATE TABLE @extschema@.attribution_current (
    conversion_event_id text NOT NULL,
    conversion_time     timestamptz NOT NULL,
    user_id             text NOT NULL,
    advertiser_id       bigint NOT NULL,
    campaign_id         bigint,
    kind                text NOT NULL CHECK (kind IN ('PC', 'PV', 'NONE')),
    impression_event_id text,
    batch               bigint NOT NULL,
    PRIMARY KEY (conversion_event_id, conversion_time)
);

CREATE INDEX attribution_current_campaign_idx
    ON @extschema@.attribution_current (advertiser_id, campaign_id);

COMMENT ON TABLE @extschema@.attribution_current IS
    'Current credit of every attributed conversion: PC or PV with the campaign and impression, or NONE';

-- Totals per (advertiser, campaign); unattributed conversions under a NULL
-- campaign.  Kept by the engine in the transaction of each batch.
CREATE TABLE @extschema@.attribution_totals (
    advertiser_id bigint NOT NULL,
    campaign_id   bigint,
    impressions   bigint NOT NULL DEFAULT 0,
    clicks        bigint NOT NULL DEFAULT 0,
    pc            bigint NOT NULL DEFAULT 0,
    pv            bigint NOT NULL DEFAULT 0,
    unattributed  bigint NOT NULL DEFAULT 0,
    late          bigint NOT NULL DEFAULT 0,
    future        bigint NOT NULL DEFAULT 0,
    UNIQUE NULLS NOT DISTINCT (advertiser_id, campaign_id)
);

-- Events that arrived older than the watermark: stored in events, counted
-- here, never attributed.
CREATE TABLE @extschema@.attribution_late (
    event_id      text NOT NULL,
    event_time    timestamptz NOT NULL,
    user_id       text NOT NULL,
    event_type    text NOT NULL,
    advertiser_id bigint,
    campaign_id   bigint,
    watermark     timestamptz NOT NULL,
    batch         bigint NOT NULL,
    arrived_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    reason        text NOT NULL DEFAULT 'late' CHECK (reason IN ('late', 'future')),
    PRIMARY KEY (event_id, event_time)
);

-- ---------------------------------------------------------------------------
-- The engine
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.ingest(batch @extschema@.events[],
    OUT inserted bigint, OUT duplicates bigint, OUT late bigint,
    OUT conversions_evaluated bigint, OUT deltas bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_ingest'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.ingest(@extschema@.events[]) IS
    'Stores a batch of events (redelivered ones are ignored) and applies the new ones to the attribution engine, in this transaction';

CREATE FUNCTION @extschema@.attribution_engine_status(
    OUT keys bigint, OUT events bigint, OUT memory_bytes bigint, OUT generation bigint,
    OUT max_event_time timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_attribution_engine_status'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.attribution_engine_status() IS
    'This session''s engine: keys and events held, memory, the generation it reflects (NULL: none loaded) and the latest event time';

-- Ingests a generated stream (generate_events) through ingest() in batches
-- of batch_size, in arrival order: for demos, tests and benchmarks.
CREATE FUNCTION @extschema@.stream_generated_events(
    seed bigint, n_events bigint, n_users integer,
    start_time timestamptz, duration interval,
    out_of_order double precision DEFAULT 0,
    max_delay interval DEFAULT '6 hours',
    n_advertisers integer DEFAULT 20,
    campaigns_per_advertiser integer DEFAULT 5,
    batch_size integer DEFAULT 10000)
RETURNS TABLE (batches bigint, inserted bigint, duplicates bigint, late bigint, deltas bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    buf @extschema@.events[] := '{}';
    r   record;
    res record;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    batches := 0; inserted := 0; duplicates := 0; late := 0; deltas := 0;
    FOR r IN SELECT ROW(g.event_time, g.user_id, g.event_type, g.event_id, g.advertiser_id,
                        g.campaign_id, g.auction_id, g.pixel_id, g.publisher, g.creative,
                        g.placement, g.product, g.quantity, g.revenue)::@extschema@.events AS e
               FROM @extschema@.generate_events(seed, n_events, n_users, start_time, duration,
                                                out_of_order, max_delay, n_advertisers,
                                                campaigns_per_advertiser) g
    LOOP
        buf := buf || r.e;
        IF pg_catalog.cardinality(buf) >= batch_size THEN
            res := @extschema@.ingest(buf);
            batches := batches + 1; inserted := inserted + res.inserted;
            duplicates := duplicates + res.duplicates; late := late + res.late;
            deltas := deltas + res.deltas;
            buf := '{}';
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(buf) > 0 THEN
        res := @extschema@.ingest(buf);
        batches := batches + 1; inserted := inserted + res.inserted;
        duplicates := duplicates + res.duplicates; late := late + res.late;
        deltas := deltas + res.deltas;
    END IF;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION @extschema@.stream_generated_events(bigint, bigint, integer, timestamptz, interval, double precision, interval, integer, integer, integer) IS
    'Ingests a generated stream through ingest() in arrival-order batches; returns what the batches did';

-- ---------------------------------------------------------------------------
-- The batch scan: attribute_batch() credits every stored conversion from
-- one read of the event partitions.
-- ---------------------------------------------------------------------------

CREATE FUNCTION @extschema@.attribute_batch(skip_late boolean DEFAULT true)
RETURNS TABLE (user_id text, advertiser_id bigint, conversion_event_id text,
               conversion_time timestamptz, kind text, campaign_id bigint,
               impression_event_id text)
AS 'MODULE_PATHNAME', 'propensity_attribute_batch'
LANGUAGE C STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
ROWS 100000;

COMMENT ON FUNCTION @extschema@.attribute_batch(boolean) IS
    'Credit of every stored conversion by docs/computing.md section 5, from one scan of the events (late ones left out unless skip_late is false); memory bounded by propensity.batch_memory';

-- ---------------------------------------------------------------------------
-- The future horizon: an event later than its ingest plus
-- propensity.future_horizon is stored and listed as future, but neither
-- attributed nor let move the watermark (one event dated 2999 made every
-- later event late, for ever).  A backfill takes the watermark from the
-- events it attributes, and with include_late recounts the listed ones.
-- ---------------------------------------------------------------------------

COMMENT ON TABLE @extschema@.attribution_late IS
    'Events kept out of attribution: older than the ingest watermark when they arrived (late), or later than the future horizon (future); stored and counted, not attributed';

COMMENT ON COLUMN @extschema@.attribution_late.watermark IS
    'For a late event the watermark it missed; for a future one the limit it passed';

COMMENT ON TABLE @extschema@.attribution_totals IS
    'Per (advertiser, campaign): in-time impressions and clicks, PC and PV conversions, unattributed conversions (NULL campaign), late and future events';

CREATE FUNCTION @extschema@.attribution_backfill(include_late boolean DEFAULT false,
                                                 OUT conversions bigint, OUT deltas bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_attribution_backfill'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION @extschema@.attribution_backfill(boolean) IS
    'Recomputes attribution from the stored events (late and future ones excluded, or with include_late the late list emptied first); one +1 per conversion; the watermark from the events attributed';

ALTER FUNCTION @extschema@.attribution_backfill(boolean) OWNER TO propensity_worker;

REVOKE ALL ON FUNCTION @extschema@.attribution_backfill(boolean) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.attribution_backfill(boolean) TO propensity_admin;

-- ---------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------
-- The totals as sums of the changelog and of the stored in-time events:
-- what attribution_totals must equal (an audit, and the definition).
CREATE VIEW @extschema@.attribution_totals_from_changelog AS
SELECT advertiser_id, campaign_id,
       sum(impressions)::bigint AS impressions, sum(clicks)::bigint AS clicks,
       sum(pc)::bigint AS pc, sum(pv)::bigint AS pv,
       sum(unattributed)::bigint AS unattributed, sum(late)::bigint AS late,
       sum(future)::bigint AS future
  FROM (SELECT e.advertiser_id, e.campaign_id,
               (e.event_type = 'IM')::int AS impressions, (e.event_type = 'CL')::int AS clicks,
               0 AS pc, 0 AS pv, 0 AS unattributed, 0 AS late, 0 AS future
          FROM @extschema@.events e
         WHERE e.advertiser_id IS NOT NULL AND e.event_type IN ('IM', 'CL')
           AND NOT EXISTS (SELECT 1 FROM @extschema@.attribution_late l
                            WHERE l.event_id = e.event_id AND l.event_time = e.event_time)
        UNION ALL
        SELECT advertiser_id, campaign_id, 0, 0,
               CASE WHEN kind = 'PC' THEN delta ELSE 0 END,
               CASE WHEN kind = 'PV' THEN delta ELSE 0 END,
               CASE WHEN kind = 'NONE' THEN delta ELSE 0 END, 0, 0
          FROM @extschema@.attribution_changelog
        UNION ALL
        SELECT advertiser_id, campaign_id, 0, 0, 0, 0, 0,
               (reason = 'late')::int, (reason = 'future')::int
          FROM @extschema@.attribution_late
         WHERE advertiser_id IS NOT NULL) s
 GROUP BY advertiser_id, campaign_id;

COMMENT ON VIEW @extschema@.attribution_totals_from_changelog IS
    'Totals recomputed from the changelog, the in-time events and the late events: attribution_totals must equal it';

-- Dashboards: per day (UTC) and campaign.
CREATE MATERIALIZED VIEW @extschema@.attribution_daily AS
SELECT day, advertiser_id, campaign_id,
       sum(impressions)::bigint AS impressions, sum(clicks)::bigint AS clicks,
       sum(pc)::bigint AS pc, sum(pv)::bigint AS pv, sum(unattributed)::bigint AS unattributed
  FROM (SELECT (e.event_time AT TIME ZONE 'UTC')::date AS day, e.advertiser_id, e.campaign_id,
               (e.event_type = 'IM')::int AS impressions, (e.event_type = 'CL')::int AS clicks,
               0 AS pc, 0 AS pv, 0 AS unattributed
          FROM @extschema@.events e
         WHERE e.advertiser_id IS NOT NULL AND e.event_type IN ('IM', 'CL')
           AND NOT EXISTS (SELECT 1 FROM @extschema@.attribution_late l
                            WHERE l.event_id = e.event_id AND l.event_time = e.event_time)
        UNION ALL
        SELECT (c.conversion_time AT TIME ZONE 'UTC')::date, c.advertiser_id, c.campaign_id,
               0, 0, (c.kind = 'PC')::int, (c.kind = 'PV')::int, (c.kind = 'NONE')::int
          FROM @extschema@.attribution_current c) s
 GROUP BY day, advertiser_id, campaign_id
WITH NO DATA;

CREATE UNIQUE INDEX attribution_daily_key
    ON @extschema@.attribution_daily (day, advertiser_id, campaign_id) NULLS NOT DISTINCT;

COMMENT ON MATERIALIZED VIEW @extschema@.attribution_daily IS
    'Impressions, clicks and conversions by credit per UTC day (conversion day for conversions) and campaign; refresh with refresh_attribution_views()';

CREATE FUNCTION @extschema@.refresh_attribution_views(concurrent boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- CONCURRENTLY needs a populated view: the first refresh is a plain one
    IF concurrent AND (SELECT relispopulated FROM pg_class
                          WHERE oid = '@extschema@.attribution_daily'::regclass) THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.attribution_daily;
    ELSE
        REFRESH MATERIALIZED VIEW @extschema@.attribution_daily;
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.refresh_attribution_views(boolean) IS
    'Refreshes the attribution dashboard views (concurrently once populated)';

-- ---------------------------------------------------------------------------
-- Privileges and dumps
-- ---------------------------------------------------------------------------
GRANT SELECT ON @extschema@.attribution_state, @extschema@.attribution_changelog,
                @extschema@.attribution_current, @extschema@.attribution_totals,
                @extschema@.attribution_late, @extschema@.attribution_totals_from_changelog,
                @extschema@.attribution_daily
    TO propensity_reader;

GRANT SELECT, INSERT, UPDATE ON @extschema@.attribution_state, @extschema@.attribution_current,
                @extschema@.attribution_totals
    TO propensity_writer;

GRANT INSERT ON @extschema@.attribution_changelog, @extschema@.attribution_late
    TO propensity_writer;

REVOKE EXECUTE ON FUNCTION @extschema@.refresh_attribution_views(boolean) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.refresh_attribution_views(boolean)
    TO propensity_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_state', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_changelog', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_current', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_totals', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_late', '');

-- ===========================================================================
-- Ingestion: the Avro schema registry, the embedded queue (topics,
-- partitions, offsets, consumer groups, retention), dead letters, the SQL
-- side of the ingest worker, producers and status.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Schema registry: Confluent-style ids for the writer schemas of messages.
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.avro_schemas (
    schema_id     integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    subject       text NOT NULL,
    version       integer NOT NULL CHECK (version > 0),
    schema        text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (subject, version)
);

COMMENT ON TABLE @extschema@.avro_schemas IS
    'Avro writer schemas by id (the 4-byte id of the Confluent wire format), with subject and version';

CREATE FUNCTION @extschema@.event_schema()
RETURNS text
AS 'MODULE_PATHNAME', 'propensity_event_schema'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.event_schema() IS
    'The reader schema of events (schemas/event.avsc) that every writer schema must resolve to';

CREATE FUNCTION @extschema@.check_writer_schema(schema text)
RETURNS void
AS 'MODULE_PATHNAME', 'propensity_check_writer_schema'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.check_writer_schema(text) IS
    'Raises an error unless the schema is valid Avro and resolves to the reader schema of events';

CREATE FUNCTION @extschema@.register_schema(subject text, schema text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id integer;
BEGIN
    IF subject IS NULL OR schema IS NULL THEN
        RAISE EXCEPTION 'a schema is registered with a subject and its text, neither null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM @extschema@.check_writer_schema(schema);
    PERFORM pg_advisory_xact_lock(hashtext('propensity.avro_schemas ' || subject));
    SELECT s.schema_id INTO found_id
      FROM @extschema@.avro_schemas s
     WHERE s.subject = register_schema.subject
       AND s.schema::jsonb = register_schema.schema::jsonb;
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    INSERT INTO @extschema@.avro_schemas (subject, version, schema)
    SELECT register_schema.subject, coalesce(max(s.version), 0) + 1, register_schema.schema
      FROM @extschema@.avro_schemas s WHERE s.subject = register_schema.subject
    RETURNING schema_id INTO found_id;
    RETURN found_id;
END
$$;

COMMENT ON FUNCTION @extschema@.register_schema(text, text) IS
    'Registers a writer schema under a subject and returns its id; the same schema again returns the same id';

-- The reader schema itself is the first writer schema.
SELECT @extschema@.register_schema('events-value', @extschema@.event_schema());

-- ---------------------------------------------------------------------------
-- Schema registry: a session's decoder drops the writer schemas it loaded
-- when the registry changes (dropped, truncated, or rows updated or
-- deleted), so an id handed out again never decodes by the old schema.
-- register_schema() refuses schemas over propensity.max_schema_size or
-- nested too deep (check_writer_schema).
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.avro_schemas_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'propensity_avro_schemas_changed'
LANGUAGE C;

CREATE TRIGGER avro_schemas_changed AFTER UPDATE OR DELETE ON @extschema@.avro_schemas
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.avro_schemas_changed();

-- ---------------------------------------------------------------------------
-- An external schema registry: writer schemas of ids the embedded registry
-- does not hold are asked of a Confluent-compatible registry over HTTP
-- (GET <url>/schemas/ids/<id>) and kept in avro_schemas under their id.
-- The credentials are readable by admins and the worker only.
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.schema_registry (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    url       text NOT NULL CHECK (url ~ '^https?://[^[:space:]]+$'),
    username  text,
    password  text,
    timeout   interval NOT NULL DEFAULT '5 seconds'
              CHECK (timeout >= interval '1 millisecond' AND timeout <= interval '1 minute')
);

COMMENT ON TABLE @extschema@.schema_registry IS
    'The Confluent-compatible schema registry asked for writer schemas the embedded registry does not hold (one row, or none); readable by propensity_admin and the worker only';

CREATE FUNCTION @extschema@.set_schema_registry(url text, username text DEFAULT NULL,
                                                password text DEFAULT NULL,
                                                timeout interval DEFAULT '5 seconds')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF url IS NULL THEN
        DELETE FROM @extschema@.schema_registry;
        RETURN;
    END IF;
    IF url !~ '^https?://[^[:space:]]+$' THEN
        RAISE EXCEPTION 'the schema registry''s url must be an http:// or https:// address, not "%"', url
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout IS NULL OR timeout < interval '1 millisecond' OR timeout > interval '1 minute' THEN
        RAISE EXCEPTION 'the schema registry''s timeout must be between 1 millisecond and 1 minute'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.schema_registry AS r (singleton, url, username, password, timeout)
    VALUES (true, url, username, password, timeout)
    ON CONFLICT (singleton) DO UPDATE
       SET url = EXCLUDED.url, username = EXCLUDED.username, password = EXCLUDED.password,
           timeout = EXCLUDED.timeout;
END
$$;

COMMENT ON FUNCTION @extschema@.set_schema_registry(text, text, text, interval) IS
    'Sets (or with a NULL url removes) the Confluent-compatible schema registry asked for unknown schema ids, with basic-auth credentials and a timeout';

CREATE FUNCTION @extschema@.registry_cache_schema(schema_id integer, schema text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seq text := pg_catalog.pg_get_serial_sequence('@extschema@.avro_schemas', 'schema_id');
BEGIN
    PERFORM @extschema@.check_writer_schema(schema);
    INSERT INTO @extschema@.avro_schemas (schema_id, subject, version, schema)
    VALUES (registry_cache_schema.schema_id, 'schema-registry', registry_cache_schema.schema_id,
            registry_cache_schema.schema)
    ON CONFLICT DO NOTHING;
    -- ids handed out here later start after it
    PERFORM pg_catalog.setval(seq, greatest(coalesce(pg_catalog.pg_sequence_last_value(seq::regclass), 1),
                                            registry_cache_schema.schema_id));
END
$$;

COMMENT ON FUNCTION @extschema@.registry_cache_schema(integer, text) IS
    'Keeps a writer schema fetched from the schema registry in avro_schemas under its id (internal)';

REVOKE ALL ON FUNCTION @extschema@.set_schema_registry(text, text, text, interval),
    @extschema@.registry_cache_schema(integer, text) FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.schema_registry TO propensity_admin;

GRANT SELECT ON @extschema@.schema_registry TO propensity_worker;

GRANT EXECUTE ON FUNCTION @extschema@.set_schema_registry(text, text, text, interval),
    @extschema@.registry_cache_schema(integer, text) TO propensity_admin;

GRANT EXECUTE ON FUNCTION @extschema@.registry_cache_schema(integer, text) TO propensity_worker;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.schema_registry', '');

-- ---------------------------------------------------------------------------
-- Topics.  Messages are stored PgQ-style: each topic has three slot tables
-- used in rotation; producers append to the current one, and a slot is
-- emptied with TRUNCATE once every consumer group has consumed it and its
-- retention has passed.  No message is ever updated or deleted on its own.
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.topics (
    topic      text PRIMARY KEY CHECK (topic ~ '^[A-Za-z0-9._-]{1,100}$'),
    topic_id   integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    partitions integer NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    retention  interval NOT NULL CHECK (retention >= interval '1 second'),
    cur_slot   integer NOT NULL DEFAULT 0 CHECK (cur_slot BETWEEN 0 AND 2),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE @extschema@.topics IS
    'Queue topics: a fixed number of partitions (a message''s key picks one) and the retention of consumed messages';

CREATE TABLE @extschema@.topic_slots (
    topic_id    integer NOT NULL REFERENCES @extschema@.topics (topic_id) ON DELETE CASCADE,
    slot        integer NOT NULL CHECK (slot BETWEEN 0 AND 2),
    tbl         regclass NOT NULL,
    opened_at   timestamptz,   -- became the current slot
    closed_at   timestamptz,   -- stopped being the current slot
    sealed_xmax xid8,          -- every transaction that wrote into it is below this
    PRIMARY KEY (topic_id, slot)
);

COMMENT ON TABLE @extschema@.topic_slots IS
    'The three storage tables of each topic, used in rotation';

CREATE FUNCTION @extschema@.partition_for(key text, partitions integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN ((hashtextextended(key, 0) % partitions + partitions) % partitions)::integer;

COMMENT ON FUNCTION @extschema@.partition_for(text, integer) IS
    'The partition of a message key: one user''s messages share a partition and keep their order in it';

CREATE FUNCTION @extschema@.create_topic(topic text, partitions integer DEFAULT 8,
                                                    retention interval DEFAULT interval '1 day')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer;
    s integer;
    tname text;
BEGIN
    IF topic IS NULL OR topic !~ '^[A-Za-z0-9._-]{1,100}$' THEN
        RAISE EXCEPTION 'invalid topic name "%"', topic
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1 to 100 letters, digits, ".", "_" or "-".';
    END IF;
    IF partitions IS NULL OR partitions NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 1024, not %', partitions
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retention IS NULL OR retention < interval '1 second' OR retention >= interval '100 years' THEN
        RAISE EXCEPTION 'retention must be at least 1 second and less than 100 years, not %', retention
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.topics t WHERE t.topic = create_topic.topic) THEN
        RAISE EXCEPTION 'topic "%" already exists', topic
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO @extschema@.topics (topic, partitions, retention)
    VALUES (topic, partitions, retention) RETURNING topic_id INTO tid;
    EXECUTE format('CREATE SEQUENCE @extschema@.%I AS bigint', 'queue_' || tid || '_offsets');
    FOR s IN 0..2 LOOP
        tname := 'queue_' || tid || '_' || s;
        EXECUTE format('CREATE TABLE @extschema@.%I ('
                       '  partition   integer NOT NULL,'
                       '  msg_offset  bigint NOT NULL,'
                       '  txid        xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),'
                       '  produced_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),'
                       '  key         text,'
                       '  value       bytea NOT NULL)', tname);
        EXECUTE format('CREATE INDEX %I ON @extschema@.%I (txid, msg_offset)', tname || '_txid_idx', tname);
        EXECUTE format('GRANT SELECT ON @extschema@.%I TO propensity_reader', tname);
        INSERT INTO @extschema@.topic_slots (topic_id, slot, tbl, opened_at)
        VALUES (tid, s, format('@extschema@.%I', tname)::regclass,
                CASE WHEN s = 0 THEN now() END);
    END LOOP;
END
$$;

COMMENT ON FUNCTION @extschema@.create_topic(text, integer, interval) IS
    'Creates a topic with a fixed number of partitions; consumed messages are kept at least for retention';

CREATE FUNCTION @extschema@.drop_topic(topic text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tid integer;
    r record;
BEGIN
    SELECT t.topic_id INTO tid FROM @extschema@.topics t WHERE t.topic = drop_topic.topic FOR UPDATE;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic USING ERRCODE = 'undefined_object';
    END IF;
    FOR r IN SELECT sl.tbl FROM @extschema@.topic_slots sl JOIN pg_class c ON c.oid = sl.tbl
              WHERE sl.topic_id = tid LOOP
        EXECUTE format('DROP TABLE %s', r.tbl);
    END LOOP;
    EXECUTE format('DROP SEQUENCE IF EXISTS @extschema@.%I', 'queue_' || tid || '_offsets');
    DELETE FROM @extschema@.topics t WHERE t.topic_id = tid;
END
$$;

COMMENT ON FUNCTION @extschema@.drop_topic(text) IS
    'Drops a topic with its messages, subscriptions and offsets (dead letters are kept)';

-- ---------------------------------------------------------------------------
-- Topic storage left by an earlier installation.  Topic storage
-- (queue_<id>_<slot>, queue_<id>_offsets) is made at run time, so it is not
-- part of the extension and DROP EXTENSION leaves it in the schema; a new
-- installation's topic ids start again at 1 and would collide with it.
-- Before topics are inserted, the ids move past any such storage, which is
-- kept (it may hold messages) and reported.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.topics_skip_leftovers()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seq text := pg_catalog.pg_get_serial_sequence('@extschema@.topics', 'topic_id');
    highest integer;
    names text;
    used bigint;
BEGIN
    SELECT max(substring(c.relname FROM '^queue_([0-9]+)_')::integer),
           string_agg(c.relname, ', ' ORDER BY c.relname)
      INTO highest, names
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = '@extschema@'::regnamespace
       AND c.relname ~ '^queue_[0-9]+_(offsets|[0-9]+)$'
       AND c.relkind IN ('r', 'S')
       AND NOT EXISTS (SELECT 1 FROM @extschema@.topics t
                        WHERE t.topic_id = substring(c.relname FROM '^queue_([0-9]+)_')::integer);
    IF highest IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT CASE WHEN s.last_value IS NULL THEN 0 ELSE s.last_value END INTO used
      FROM pg_catalog.pg_sequences s
     WHERE pg_catalog.format('%I.%I', s.schemaname, s.sequencename)::regclass = seq::regclass;
    IF highest > used THEN
        PERFORM pg_catalog.setval(seq, highest);
        RAISE NOTICE 'topic storage of an earlier installation is in schema %: %', '@extschema@', names
            USING DETAIL = pg_catalog.format('New topic ids start after %s.', highest),
                  HINT = 'Drop those tables and sequences when their messages are no longer needed.';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER topics_skip_leftovers BEFORE INSERT ON @extschema@.topics
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.topics_skip_leftovers();

-- ---------------------------------------------------------------------------
-- The queue, robust to what an operator can do to it: a slot table dropped
-- by hand is skipped (its messages are gone) instead of breaking
-- queue_status for every topic; a retention must stay below 100 years
-- (1000000 years overflowed every maintenance pass); one topic whose
-- maintenance fails is reported and the others go on.
-- ---------------------------------------------------------------------------
ALTER TABLE @extschema@.topics
    ADD CONSTRAINT topics_retention_bound CHECK (retention < interval '100 years') NOT VALID;

-- ---------------------------------------------------------------------------
-- Producing.  The producer's transaction id is assigned before the current
-- slot is read: queue_maintain() relies on it to know when a slot that
-- stopped being current can have no more writers.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.produce_many(topic text, keys text[], messages bytea[])
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    n bigint;
BEGIN
    PERFORM pg_current_xact_id();
    SELECT tp.topic_id, tp.partitions, sl.tbl INTO t
      FROM @extschema@.topics tp
      JOIN @extschema@.topic_slots sl ON sl.topic_id = tp.topic_id AND sl.slot = tp.cur_slot
     WHERE tp.topic = produce_many.topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object', HINT = 'Create it with propensity.create_topic().';
    END IF;
    IF cardinality(keys) IS DISTINCT FROM cardinality(messages) THEN
        RAISE EXCEPTION 'keys and messages differ in length (% and %)', cardinality(keys), cardinality(messages)
            USING ERRCODE = 'array_subscript_error';
    END IF;
    IF array_position(messages, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a message is NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    EXECUTE format('INSERT INTO %s (partition, msg_offset, key, value)'
                   ' SELECT CASE WHEN m.k IS NULL THEN (m.o %% $3)::integer'
                   '             ELSE @extschema@.partition_for(m.k, $3) END, m.o, m.k, m.v'
                   '   FROM (SELECT nextval(%L) AS o, u.k, u.v FROM unnest($1, $2) AS u(k, v)) m',
                   t.tbl, format('@extschema@.%I', 'queue_' || t.topic_id || '_offsets'))
      USING keys, messages, t.partitions;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@.wake_workers();
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.produce_many(text, text[], bytea[]) IS
    'Appends messages (one per key) to a topic; returns how many';

CREATE FUNCTION @extschema@.produce(topic text, key text, message bytea)
RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT @extschema@.produce_many(topic, ARRAY[key], ARRAY[message]);
END;

COMMENT ON FUNCTION @extschema@.produce(text, text, bytea) IS
    'Appends one message (Avro in the Confluent wire format, or a JSON object) to a topic';

CREATE FUNCTION @extschema@.produce(topic text, key text, message jsonb)
RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT @extschema@.produce_many(topic, ARRAY[key], ARRAY[convert_to(message::text, 'UTF8')]);
END;

COMMENT ON FUNCTION @extschema@.produce(text, text, jsonb) IS
    'Appends one JSON message to a topic: {"event_id": ..., "user_id": ..., "event_type": ..., "event_time": ...}';

-- COPY propensity.queue_input (topic, key, value) FROM ... produces in bulk.
CREATE VIEW @extschema@.queue_input AS
    SELECT NULL::text AS topic, NULL::text AS key, NULL::bytea AS value WHERE false;

COMMENT ON VIEW @extschema@.queue_input IS
    'Insert or COPY (topic, key, value) rows here to produce them; it always reads empty';

CREATE FUNCTION @extschema@.queue_input_insert()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.produce_many(NEW.topic, ARRAY[NEW.key], ARRAY[NEW.value]);
    RETURN NEW;
END
$$;

CREATE TRIGGER queue_input_insert INSTEAD OF INSERT ON @extschema@.queue_input
    FOR EACH ROW EXECUTE FUNCTION @extschema@.queue_input_insert();

-- ---------------------------------------------------------------------------
-- Consumer groups.  A group's position in a topic is a pair of transaction
-- snapshots, as in PgQ: every message whose transaction is visible in
-- snap_lo is consumed; the messages visible in snap_hi and not in snap_lo
-- are being consumed in (txid, msg_offset) order, up to (last_txid,
-- last_offset).  A message whose producer committed after a message with a
-- higher offset was consumed is therefore still consumed: positions are in
-- commit order, never in offset order.
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.subscriptions (
    consumer_group text NOT NULL,
    topic          text NOT NULL REFERENCES @extschema@.topics ON DELETE CASCADE,
    enabled        boolean NOT NULL DEFAULT true,
    attribute      boolean NOT NULL DEFAULT true,
    snap_lo        pg_snapshot NOT NULL,
    snap_hi        pg_snapshot,
    last_txid      xid8,
    last_offset    bigint,
    messages       bigint NOT NULL DEFAULT 0,
    dead_letters   bigint NOT NULL DEFAULT 0,
    batches        bigint NOT NULL DEFAULT 0,
    rate           double precision,
    last_batch_at  timestamptz,
    last_error     text,
    last_error_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (consumer_group, topic)
);

COMMENT ON TABLE @extschema@.subscriptions IS
    'What the ingest worker consumes: a consumer group''s position in a topic, and whether it runs attribution';

CREATE TABLE @extschema@.consumer_offsets (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    partition        integer NOT NULL,
    committed_offset bigint NOT NULL,
    messages         bigint NOT NULL,
    committed_at     timestamptz NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition),
    FOREIGN KEY (consumer_group, topic) REFERENCES @extschema@.subscriptions ON DELETE CASCADE
);

COMMENT ON TABLE @extschema@.consumer_offsets IS
    'Per partition: the highest offset a group has consumed and how many messages, committed with the events';

CREATE TABLE @extschema@.dead_letters (
    dead_letter_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    msg_offset     bigint NOT NULL,
    key            text,
    value          bytea NOT NULL,
    error          text NOT NULL,
    failed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    replayed_at    timestamptz,
    replay_error   text,
    UNIQUE (consumer_group, topic, partition, msg_offset)
);

COMMENT ON TABLE @extschema@.dead_letters IS
    'Messages that could not be decoded or stored, with the reason; propensity.replay_dead_letters() retries them';

CREATE FUNCTION @extschema@.subscribe(topic text, consumer_group text DEFAULT 'propensity',
                                      start_from text DEFAULT 'earliest', attribute boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.topics t WHERE t.topic = subscribe.topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object', HINT = 'Create it with propensity.create_topic().';
    END IF;
    IF consumer_group IS NULL OR consumer_group = '' THEN
        RAISE EXCEPTION 'consumer group must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF start_from IS NULL OR start_from NOT IN ('earliest', 'latest') THEN
        RAISE EXCEPTION 'start_from must be earliest or latest, not "%"', start_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.subscriptions (consumer_group, topic, attribute, snap_lo)
    VALUES (consumer_group, topic, coalesce(attribute, true),
            CASE start_from WHEN 'earliest' THEN '1:1:'::pg_snapshot ELSE pg_current_snapshot() END)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey
    DO UPDATE SET enabled = true, attribute = EXCLUDED.attribute;
    PERFORM @extschema@.wake_workers();
END
$$;

COMMENT ON FUNCTION @extschema@.subscribe(text, text, text, boolean) IS
    'Makes the ingest worker consume a topic for a consumer group, from the earliest retained or the latest message';

CREATE FUNCTION @extschema@.unsubscribe(topic text, consumer_group text DEFAULT 'propensity')
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH d AS (DELETE FROM @extschema@.subscriptions s
                WHERE s.topic = unsubscribe.topic AND s.consumer_group = unsubscribe.consumer_group
               RETURNING 1)
    SELECT count(*) > 0 FROM d;
END;

COMMENT ON FUNCTION @extschema@.unsubscribe(text, text) IS
    'Forgets a consumer group''s position in a topic; its messages no longer wait for it';

CREATE FUNCTION @extschema@.pause_subscription(topic text, consumer_group text DEFAULT 'propensity')
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH u AS (UPDATE @extschema@.subscriptions s SET enabled = false
                WHERE s.topic = pause_subscription.topic
                  AND s.consumer_group = pause_subscription.consumer_group
               RETURNING 1)
    SELECT count(*) > 0 FROM u;
END;

COMMENT ON FUNCTION @extschema@.pause_subscription(text, text) IS
    'Stops consuming a topic for a group, keeping its position (subscribe() resumes it)';

-- Messages a group has not consumed, per partition.
CREATE FUNCTION @extschema@.queue_lag(topic text, consumer_group text DEFAULT 'propensity')
RETURNS TABLE (partition integer, lag bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    q text;
BEGIN
    SELECT sub.snap_lo, sub.snap_hi, sub.last_txid, sub.last_offset, t.topic_id, t.partitions INTO s
      FROM @extschema@.subscriptions sub JOIN @extschema@.topics t USING (topic)
     WHERE sub.topic = queue_lag.topic AND sub.consumer_group = queue_lag.consumer_group;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer group "%" has no subscription to topic "%"', consumer_group, topic
            USING ERRCODE = 'undefined_object';
    END IF;
    -- slot tables dropped by hand are skipped
    SELECT string_agg(format('SELECT partition FROM %s WHERE txid >= pg_snapshot_xmin($1)'
                             ' AND NOT pg_visible_in_snapshot(txid, $1)'
                             ' AND NOT ($2 IS NOT NULL AND pg_visible_in_snapshot(txid, $2)'
                             '          AND (txid, msg_offset) <= ($3, $4))', sl.tbl), ' UNION ALL ')
      INTO q FROM @extschema@.topic_slots sl JOIN pg_class c ON c.oid = sl.tbl
     WHERE sl.topic_id = s.topic_id;
    IF q IS NULL THEN
        q := 'SELECT NULL::integer AS partition WHERE false';
    END IF;
    RETURN QUERY EXECUTE
        'SELECT p::integer, coalesce(c.n, 0)::bigint FROM generate_series(0, $5 - 1) p'
        ' LEFT JOIN (SELECT m.partition, count(*) AS n FROM (' || q || ') m GROUP BY 1) c ON c.partition = p'
        ' ORDER BY 1'
      USING s.snap_lo, s.snap_hi, coalesce(s.last_txid, '0'::xid8), coalesce(s.last_offset, -1), s.partitions;
END
$$;

COMMENT ON FUNCTION @extschema@.queue_lag(text, text) IS
    'Committed messages of a topic that a consumer group has not consumed yet, per partition';

-- Rotation and retention: run by the ingest worker every
-- propensity.maintenance_interval, or by hand.
CREATE FUNCTION @extschema@.queue_maintain(OUT topic text, OUT action text, OUT slot integer)
RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    t record;
    sl record;
    nxt integer;
BEGIN
    FOR t IN SELECT * FROM @extschema@.topics ORDER BY topic_id FOR UPDATE LOOP
        topic := t.topic;
        BEGIN
            -- 1. seal slots closed by an earlier call: the writers that read
            --    them as current all have transaction ids below this xmax
            FOR sl IN UPDATE @extschema@.topic_slots s
                         SET sealed_xmax = pg_snapshot_xmax(pg_current_snapshot())
                       WHERE s.topic_id = t.topic_id AND s.closed_at IS NOT NULL
                         AND s.sealed_xmax IS NULL AND s.closed_at < now()
                      RETURNING s.slot LOOP
                action := 'sealed'; slot := sl.slot; RETURN NEXT;
            END LOOP;
            -- 2. empty sealed slots past retention that every group has consumed
            FOR sl IN SELECT s.slot, s.tbl FROM @extschema@.topic_slots s
                       WHERE s.topic_id = t.topic_id AND s.sealed_xmax IS NOT NULL
                         AND s.closed_at + t.retention <= now()
                         AND NOT EXISTS (SELECT 1 FROM @extschema@.subscriptions sub
                                          WHERE sub.topic = t.topic
                                            AND pg_snapshot_xmin(sub.snap_lo) < s.sealed_xmax) LOOP
                BEGIN
                    IF to_regclass(sl.tbl::text) IS NOT NULL THEN
                        EXECUTE format('TRUNCATE %s', sl.tbl);
                    END IF;
                    UPDATE @extschema@.topic_slots s SET opened_at = NULL, closed_at = NULL, sealed_xmax = NULL
                     WHERE s.topic_id = t.topic_id AND s.slot = sl.slot;
                    action := 'truncated'; slot := sl.slot; RETURN NEXT;
                EXCEPTION WHEN lock_not_available THEN
                    action := 'busy'; slot := sl.slot; RETURN NEXT;
                END;
            END LOOP;
            -- 3. rotate: the current slot has been current for half the
            --    retention and the next one is empty
            nxt := (t.cur_slot + 1) % 3;
            IF EXISTS (SELECT 1 FROM @extschema@.topic_slots s
                        WHERE s.topic_id = t.topic_id AND s.slot = t.cur_slot
                          AND s.opened_at + t.retention / 2 <= now())
               AND EXISTS (SELECT 1 FROM @extschema@.topic_slots s
                            WHERE s.topic_id = t.topic_id AND s.slot = nxt AND s.closed_at IS NULL) THEN
                UPDATE @extschema@.topic_slots s SET closed_at = now()
                 WHERE s.topic_id = t.topic_id AND s.slot = t.cur_slot;
                UPDATE @extschema@.topic_slots s SET opened_at = now()
                 WHERE s.topic_id = t.topic_id AND s.slot = nxt;
                UPDATE @extschema@.topics tp SET cur_slot = nxt WHERE tp.topic_id = t.topic_id;
                action := 'rotated'; slot := nxt; RETURN NEXT;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            -- one topic's failure is reported; the others are maintained
            action := 'failed: ' || SQLERRM; slot := NULL; RETURN NEXT;
        END;
    END LOOP;
END
$$;

COMMENT ON FUNCTION @extschema@.queue_maintain() IS
    'Rotates topic storage and truncates slots that are past retention and consumed by every group';

-- ---------------------------------------------------------------------------
-- The worker, from SQL
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.wake_workers()
RETURNS void
AS 'MODULE_PATHNAME', 'propensity_wake_workers'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.wake_workers() IS
    'Wakes the ingest worker of this database when the transaction commits';

CREATE FUNCTION @extschema@.worker_start()
RETURNS integer
AS 'MODULE_PATHNAME', 'propensity_worker_start'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.worker_start() IS
    'Starts the ingest worker of this database unless it runs; returns its process id';

CREATE FUNCTION @extschema@.worker_stop(wait boolean DEFAULT true)
RETURNS boolean
AS 'MODULE_PATHNAME', 'propensity_worker_stop'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.worker_stop(boolean) IS
    'Stops the ingest worker of this database after its current batch; false if none ran';

CREATE FUNCTION @extschema@.worker_pid()
RETURNS integer
AS 'MODULE_PATHNAME', 'propensity_worker_pid'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.worker_pid() IS
    'Process id of the ingest worker of this database, or NULL';

CREATE FUNCTION @extschema@.consume(topic text, consumer_group text DEFAULT 'propensity',
                                    max_messages integer DEFAULT NULL,
                                    OUT messages bigint, OUT events bigint, OUT dead_letters bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_consume'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.consume(text, text, integer) IS
    'One batch of the worker''s work, in this transaction: decode, store, attribute and commit offsets';

CREATE FUNCTION @extschema@.decode_message(message bytea)
RETURNS @extschema@.events
AS 'MODULE_PATHNAME', 'propensity_decode_message'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.decode_message(bytea) IS
    'The event a message holds (Avro wire format or JSON), or the error that would dead-letter it';

CREATE FUNCTION @extschema@.encode_events(events @extschema@.events[], schema_id integer DEFAULT 1)
RETURNS bytea[]
AS 'MODULE_PATHNAME', 'propensity_encode_events'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.encode_events(@extschema@.events[], integer) IS
    'Events as Avro messages in the Confluent wire format, with the reader schema registered under schema_id';

CREATE FUNCTION @extschema@.replay_dead_letters(topic text DEFAULT NULL, consumer_group text DEFAULT NULL,
                                                OUT replayed bigint, OUT failed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_replay_dead_letters'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION @extschema@.replay_dead_letters(text, text) IS
    'Retries dead letters not yet replayed: those that now decode are stored; the others keep their new error';

-- ---------------------------------------------------------------------------
-- Producers: the prototype's two (marketing events IM/CL/PS, conversions CN)
-- over the generated stream, at a rate, for a while, with out-of-order and
-- malformed messages.  A procedure, so that it commits every batch; the
-- same seed in both producers splits one stream between them.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.producer_messages(events @extschema@.events[], malformed boolean[],
                                              format text DEFAULT 'avro')
RETURNS bytea[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN ARRAY(SELECT CASE WHEN u.b THEN substring(u.m FOR length(u.m) / 2) ELSE u.m END
               FROM unnest(CASE format
                             WHEN 'avro' THEN @extschema@.encode_events(events)
                             ELSE ARRAY(SELECT convert_to(to_jsonb(x)::text, 'UTF8') FROM unnest(events) AS x)
                           END, malformed) AS u(m, b));

COMMENT ON FUNCTION @extschema@.producer_messages(@extschema@.events[], boolean[], text) IS
    'Events as messages (avro or json); those flagged malformed are cut in half, so they cannot be decoded';

CREATE PROCEDURE @extschema@.run_producer(
    topic text, kind text, seed bigint, n_events bigint, n_users integer,
    start_time timestamptz, duration interval,
    out_of_order double precision DEFAULT 0,
    max_delay interval DEFAULT '6 hours',
    malformed double precision DEFAULT 0,
    rate double precision DEFAULT NULL,
    run_for interval DEFAULT NULL,
    format text DEFAULT 'avro',
    batch_size integer DEFAULT 1000,
    INOUT produced bigint DEFAULT NULL,
    INOUT malformed_produced bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    types text[];
    started timestamptz := pg_catalog.clock_timestamp();
    keys text[] := '{}';
    evs @extschema@.events[] := '{}';
    bad boolean[] := '{}';
    r record;
    stop boolean := false;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    types := CASE kind WHEN 'marketing' THEN ARRAY['IM', 'CL', 'PS']
                       WHEN 'conversions' THEN ARRAY['CN']
                       WHEN 'all' THEN ARRAY['IM', 'CL', 'PS', 'CN'] END;
    IF types IS NULL THEN
        RAISE EXCEPTION 'kind must be marketing, conversions or all, not "%"', kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF format IS NULL OR format NOT IN ('avro', 'json') THEN
        RAISE EXCEPTION 'format must be avro or json, not "%"', format
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF malformed IS NULL OR malformed < 0 OR malformed > 1 THEN
        RAISE EXCEPTION 'malformed must be a fraction between 0 and 1, not %', malformed
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rate IS NOT NULL AND rate <= 0 THEN
        RAISE EXCEPTION 'rate must be positive (messages per second), not %', rate
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM @extschema@.topics t WHERE t.topic = run_producer.topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object', HINT = 'Create it with propensity.create_topic().';
    END IF;
    produced := 0;
    malformed_produced := 0;
    FOR r IN SELECT ROW(g.event_time, g.user_id, g.event_type, g.event_id, g.advertiser_id,
                        g.campaign_id, g.auction_id, g.pixel_id, g.publisher, g.creative,
                        g.placement, g.product, g.quantity, g.revenue)::@extschema@.events AS e,
                    g.user_id,
                    (hashtextextended(g.event_id, seed) & 1048575) < malformed * 1048576 AS is_bad
               FROM @extschema@.generate_events(seed, n_events, n_users, start_time, duration,
                                                out_of_order, max_delay) g
              WHERE g.event_type = ANY (types)
    LOOP
        keys := keys || r.user_id;
        evs := evs || r.e;
        bad := bad || r.is_bad;
        IF cardinality(evs) >= batch_size THEN
            produced := produced + @extschema@.produce_many(topic, keys,
                                       @extschema@.producer_messages(evs, bad, format));
            malformed_produced := malformed_produced + cardinality(array_positions(bad, true));
            keys := '{}'; evs := '{}'; bad := '{}';
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            IF rate IS NOT NULL THEN
                PERFORM pg_sleep(greatest(0, produced / rate
                                             - extract(epoch FROM clock_timestamp() - started)));
            END IF;
            stop := run_for IS NOT NULL AND clock_timestamp() - started >= run_for;
            EXIT WHEN stop;
        END IF;
    END LOOP;
    IF cardinality(evs) > 0 AND NOT stop THEN
        produced := produced + @extschema@.produce_many(topic, keys,
                                   @extschema@.producer_messages(evs, bad, format));
        malformed_produced := malformed_produced + cardinality(array_positions(bad, true));
    END IF;
END
$$;

COMMENT ON PROCEDURE @extschema@.run_producer(text, text, bigint, bigint, integer, timestamptz, interval, double precision, interval, double precision, double precision, interval, text, integer, bigint, bigint) IS
    'A producer of the generated stream (kind marketing: IM, CL, PS; conversions: CN; or all) into a topic, committing each batch';

-- ---------------------------------------------------------------------------
-- Status
-- ---------------------------------------------------------------------------
CREATE VIEW @extschema@.queue_status AS
SELECT s.topic, l.partition, s.consumer_group, s.enabled,
       o.committed_offset, l.lag,
       s.rate AS messages_per_second, s.last_batch_at,
       coalesce(d.n, 0) AS dead_letters,
       s.last_error, s.last_error_at
  FROM @extschema@.subscriptions s
  CROSS JOIN LATERAL @extschema@.queue_lag(s.topic, s.consumer_group) l
  LEFT JOIN @extschema@.consumer_offsets o
         ON o.consumer_group = s.consumer_group AND o.topic = s.topic AND o.partition = l.partition
  LEFT JOIN (SELECT dl.consumer_group, dl.topic, dl.partition, count(*) AS n
               FROM @extschema@.dead_letters dl WHERE dl.replayed_at IS NULL
              GROUP BY 1, 2, 3) d
         ON d.consumer_group = s.consumer_group AND d.topic = s.topic AND d.partition = l.partition;

COMMENT ON VIEW @extschema@.queue_status IS
    'Per topic, partition and consumer group: committed offset, lag, consumption rate, last batch, dead letters and last error';

-- ---------------------------------------------------------------------------
-- Privileges: producers write, the reader sees status, the admin runs it all
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION @extschema@.register_schema(text, text), @extschema@.create_topic(text, integer, interval),
    @extschema@.drop_topic(text), @extschema@.produce_many(text, text[], bytea[]),
    @extschema@.produce(text, text, bytea), @extschema@.produce(text, text, jsonb),
    @extschema@.queue_input_insert(), @extschema@.subscribe(text, text, text, boolean),
    @extschema@.unsubscribe(text, text), @extschema@.pause_subscription(text, text),
    @extschema@.queue_lag(text, text), @extschema@.queue_maintain(),
    @extschema@.worker_start(), @extschema@.worker_stop(boolean), @extschema@.consume(text, text, integer),
    @extschema@.replay_dead_letters(text, text) FROM PUBLIC;

GRANT SELECT ON @extschema@.avro_schemas, @extschema@.topics, @extschema@.topic_slots,
    @extschema@.subscriptions, @extschema@.consumer_offsets, @extschema@.dead_letters,
    @extschema@.queue_status TO propensity_reader;

GRANT EXECUTE ON FUNCTION @extschema@.queue_lag(text, text) TO propensity_reader;

GRANT INSERT ON @extschema@.queue_input TO propensity_writer;

GRANT EXECUTE ON PROCEDURE @extschema@.run_producer(text, text, bigint, bigint, integer, timestamptz, interval,
    double precision, interval, double precision, double precision, interval, text, integer, bigint, bigint)
    TO propensity_writer;

GRANT EXECUTE ON FUNCTION @extschema@.register_schema(text, text), @extschema@.produce_many(text, text[], bytea[]),
    @extschema@.produce(text, text, bytea), @extschema@.produce(text, text, jsonb),
    @extschema@.queue_input_insert() TO propensity_writer;

GRANT EXECUTE ON FUNCTION @extschema@.create_topic(text, integer, interval), @extschema@.drop_topic(text),
    @extschema@.subscribe(text, text, text, boolean), @extschema@.unsubscribe(text, text),
    @extschema@.pause_subscription(text, text), @extschema@.queue_maintain(),
    @extschema@.worker_start(), @extschema@.worker_stop(boolean), @extschema@.consume(text, text, integer),
    @extschema@.replay_dead_letters(text, text) TO propensity_admin;

GRANT INSERT, UPDATE, DELETE ON @extschema@.dead_letters TO propensity_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.avro_schemas', 'WHERE schema_id > 1');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.topics', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.topic_slots', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.subscriptions', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.consumer_offsets', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.dead_letters', '');

-- ===========================================================================
-- Apache Kafka sources.  The ingest worker consumes a Kafka topic through
-- librdkafka with the same pipeline as an embedded topic; the next offset
-- of every partition is stored in kafka_offsets in the transaction that
-- stores the batch's events, and the consumer is positioned from there on
-- every start (manual assignment), so each message is stored once.
-- ===========================================================================

CREATE TABLE @extschema@.kafka_sources (
    source            text PRIMARY KEY CHECK (source ~ '^[A-Za-z0-9._-]{1,100}$'),
    bootstrap_servers text NOT NULL CHECK (bootstrap_servers <> ''),
    topic             text NOT NULL CHECK (topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    start_from        text NOT NULL DEFAULT 'earliest',
    attribute         boolean NOT NULL DEFAULT true,
    kafka_group       text CHECK (kafka_group <> ''),
    enabled           boolean NOT NULL DEFAULT true,
    offsets_epoch     bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    messages          bigint NOT NULL DEFAULT 0,
    dead_letters      bigint NOT NULL DEFAULT 0,
    batches           bigint NOT NULL DEFAULT 0,
    rate              double precision,
    last_batch_at     timestamptz,
    last_error        text,
    last_error_at     timestamptz
);

COMMENT ON TABLE @extschema@.kafka_sources IS
    'Kafka topics the ingest worker consumes: where (bootstrap_servers, topic), where to start without a stored offset (earliest, latest or a time), attribution on or off; and the counters of the worker''s batches';

COMMENT ON COLUMN @extschema@.kafka_sources.kafka_group IS
    'A Kafka consumer group the worker also commits the stored offsets to after each batch, for Kafka''s own lag tools (NULL: none); the offsets in kafka_offsets stay the ones that count';

COMMENT ON COLUMN @extschema@.kafka_sources.offsets_epoch IS
    'Moved by reset_kafka_offsets() and set_kafka_offsets(): a consumer positioned before it is positioned again from kafka_offsets';

-- librdkafka properties (security.protocol, sasl.*, ssl.* ...): the secrets,
-- readable by admins and the worker only, and never shown in status or logs
CREATE TABLE @extschema@.kafka_source_properties (
    source text NOT NULL REFERENCES @extschema@.kafka_sources ON DELETE CASCADE,
    name   text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (source, name)
);

COMMENT ON TABLE @extschema@.kafka_source_properties IS
    'librdkafka configuration properties of each Kafka source; readable by propensity_admin and the worker only';

CREATE TABLE @extschema@.kafka_offsets (
    source         text NOT NULL REFERENCES @extschema@.kafka_sources ON DELETE CASCADE,
    partition      integer NOT NULL CHECK (partition >= 0),
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    messages       bigint NOT NULL DEFAULT 0,
    committed_at   timestamptz,
    high_watermark bigint,
    PRIMARY KEY (source, partition)
);

COMMENT ON TABLE @extschema@.kafka_offsets IS
    'Per Kafka source and partition: the offset of the next message to store, committed with the events (authoritative: the consumer seeks here), and the broker''s high watermark last seen';

CREATE FUNCTION @extschema@.kafka_check_properties(properties jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'propensity_kafka_check_properties'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.kafka_check_properties(jsonb) IS
    'Raises an error unless every key of the object is a librdkafka consumer property this product lets a source set, with a valid string value (internal)';

CREATE FUNCTION @extschema@.kafka_check_start(start_from text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF start_from IS NULL THEN
        RAISE EXCEPTION 'start_from must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF start_from IN ('earliest', 'latest') THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM start_from::timestamptz;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'start_from must be earliest, latest or a time, not "%"', start_from
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A time such as ''2026-11-01 00:00+00'' starts each partition at its first message of that time or later.';
    END;
    IF NOT isfinite(start_from::timestamptz) THEN
        RAISE EXCEPTION 'start_from must be a finite time, not "%"', start_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.kafka_check_start(text) IS
    'Raises an error unless start_from is earliest, latest or a finite time (internal)';

CREATE FUNCTION @extschema@.create_kafka_source(source text, bootstrap_servers text, topic text,
                                                properties jsonb DEFAULT '{}',
                                                start_from text DEFAULT 'earliest',
                                                attribute boolean DEFAULT true,
                                                kafka_group text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.kafka_check_start(start_from);
    PERFORM @extschema@.kafka_check_properties(coalesce(properties, '{}'));
    -- a partition's lock is keyed by hashtext(source): no two sources share one
    IF EXISTS (SELECT FROM @extschema@.kafka_sources k
                WHERE pg_catalog.hashtext(k.source) = pg_catalog.hashtext(create_kafka_source.source)
                  AND k.source <> create_kafka_source.source) THEN
        RAISE EXCEPTION 'Kafka source name "%" collides with an existing source''s', source
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'The locks that give each partition to one process are keyed by hashtext() of the name.',
                  HINT = 'Choose another name.';
    END IF;
    INSERT INTO @extschema@.kafka_sources (source, bootstrap_servers, topic, start_from, attribute, kafka_group)
    VALUES (source, bootstrap_servers, topic, start_from, coalesce(attribute, true), kafka_group);
    INSERT INTO @extschema@.kafka_source_properties (source, name, value)
    SELECT create_kafka_source.source, p.key, p.value
      FROM jsonb_each_text(coalesce(properties, '{}')) p;
    PERFORM @extschema@.wake_workers();
END
$$;

COMMENT ON FUNCTION @extschema@.create_kafka_source(text, text, text, jsonb, text, boolean, text) IS
    'Declares a Kafka topic the ingest worker consumes: brokers, topic, librdkafka properties (kept readable by admins only), the start position of partitions without a stored offset (earliest, latest or a time), whether attribution runs, and a Kafka consumer group to commit the offsets to as well';

CREATE FUNCTION @extschema@.alter_kafka_source(source text, bootstrap_servers text DEFAULT NULL,
                                               properties jsonb DEFAULT NULL,
                                               attribute boolean DEFAULT NULL,
                                               enabled boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF properties IS NOT NULL THEN
        PERFORM @extschema@.kafka_check_properties(properties);
    END IF;
    UPDATE @extschema@.kafka_sources k
       SET bootstrap_servers = coalesce(alter_kafka_source.bootstrap_servers, k.bootstrap_servers),
           attribute = coalesce(alter_kafka_source.attribute, k.attribute),
           enabled = coalesce(alter_kafka_source.enabled, k.enabled)
     WHERE k.source = alter_kafka_source.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Kafka source "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'See propensity.kafka_sources.';
    END IF;
    IF properties IS NOT NULL THEN
        DELETE FROM @extschema@.kafka_source_properties p WHERE p.source = alter_kafka_source.source;
        INSERT INTO @extschema@.kafka_source_properties (source, name, value)
        SELECT alter_kafka_source.source, e.key, e.value FROM jsonb_each_text(properties) e;
    END IF;
    PERFORM @extschema@.wake_workers();
END
$$;

COMMENT ON FUNCTION @extschema@.alter_kafka_source(text, text, jsonb, boolean, boolean) IS
    'Changes a Kafka source: brokers, librdkafka properties (replaced as a whole), attribution, enabled; NULL keeps a setting. The worker reconnects with the new settings from the stored offsets';

CREATE FUNCTION @extschema@.drop_kafka_source(source text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.kafka_sources k WHERE k.source = drop_kafka_source.source;
    RETURN FOUND;
END
$$;

COMMENT ON FUNCTION @extschema@.drop_kafka_source(text) IS
    'Forgets a Kafka source with its properties and offsets (its dead letters are kept); false when there was none';

CREATE FUNCTION @extschema@.reset_kafka_offsets(source text, start_from text DEFAULT 'earliest')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@.kafka_check_start(start_from);
    UPDATE @extschema@.kafka_sources k
       SET start_from = reset_kafka_offsets.start_from, offsets_epoch = k.offsets_epoch + 1
     WHERE k.source = reset_kafka_offsets.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Kafka source "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'See propensity.kafka_sources.';
    END IF;
    DELETE FROM @extschema@.kafka_offsets o WHERE o.source = reset_kafka_offsets.source;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@.wake_workers();
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.reset_kafka_offsets(text, text) IS
    'Forgets a Kafka source''s stored offsets: every partition starts again at start_from (earliest, latest or a time); returns the offsets forgotten';

CREATE FUNCTION @extschema@.set_kafka_offsets(source text, partitions integer[], offsets bigint[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF partitions IS NULL OR offsets IS NULL OR cardinality(partitions) <> cardinality(offsets) THEN
        RAISE EXCEPTION 'partitions and offsets must be arrays of the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(partitions, offsets) u(p, o) WHERE u.p IS NULL OR u.p < 0 OR u.o IS NULL OR u.o < 0) THEN
        RAISE EXCEPTION 'partitions and offsets must not be null or negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE @extschema@.kafka_sources k SET offsets_epoch = k.offsets_epoch + 1
     WHERE k.source = set_kafka_offsets.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Kafka source "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'See propensity.kafka_sources.';
    END IF;
    INSERT INTO @extschema@.kafka_offsets AS o (source, partition, next_offset)
    SELECT set_kafka_offsets.source, u.p, u.o FROM unnest(partitions, offsets) u(p, o)
    ON CONFLICT ON CONSTRAINT kafka_offsets_pkey DO UPDATE SET next_offset = EXCLUDED.next_offset;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@.wake_workers();
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.set_kafka_offsets(text, integer[], bigint[]) IS
    'Sets the offset of the next message to store for partitions of a Kafka source (the others keep theirs); returns the partitions set';

CREATE FUNCTION @extschema@.consume_kafka(source text, max_messages integer DEFAULT NULL,
                                          wait interval DEFAULT '1 second',
                                          OUT messages bigint, OUT events bigint, OUT dead_letters bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_consume_kafka'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION @extschema@.consume_kafka(text, integer, interval) IS
    'One batch of a Kafka source in this transaction, as the worker does it: connect, position from the stored offsets, read for wait (or up to max_messages), store, commit the offsets';

CREATE VIEW @extschema@.kafka_status AS
SELECT k.source, k.topic, o.partition, l.pid AS worker_pid, k.enabled, o.next_offset, o.high_watermark,
       greatest(o.high_watermark - o.next_offset, 0) AS lag,
       k.rate AS messages_per_second, k.last_batch_at, o.committed_at,
       coalesce(d.n, 0) AS dead_letters, k.last_error, k.last_error_at
  FROM @extschema@.kafka_sources k
  LEFT JOIN @extschema@.kafka_offsets o ON o.source = k.source
  LEFT JOIN (SELECT dl.consumer_group, dl.topic, dl.partition, count(*) AS n
               FROM @extschema@.dead_letters dl WHERE dl.replayed_at IS NULL
              GROUP BY 1, 2, 3) d
         ON d.consumer_group = k.source AND d.topic = k.topic AND d.partition = o.partition
  -- the lock on (database, source, partition) of the process consuming it
  -- (source_kafka.c: objsubid 19280, classid hashtext(source))
  LEFT JOIN pg_catalog.pg_locks l
         ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 19280
        AND l.database = (SELECT db.oid FROM pg_catalog.pg_database db
                           WHERE db.datname = pg_catalog.current_database())
        AND l.classid = (pg_catalog.hashtext(k.source)::bigint & 4294967295)::oid
        AND l.objid = o.partition::oid;

COMMENT ON VIEW @extschema@.kafka_status IS
    'Per Kafka source and partition: the process consuming it (worker_pid, NULL when none), the stored offset, the broker''s high watermark, lag, consumption rate, last batch, dead letters and last error (no properties)';

REVOKE ALL ON FUNCTION @extschema@.create_kafka_source(text, text, text, jsonb, text, boolean, text),
    @extschema@.alter_kafka_source(text, text, jsonb, boolean, boolean),
    @extschema@.drop_kafka_source(text), @extschema@.reset_kafka_offsets(text, text),
    @extschema@.set_kafka_offsets(text, integer[], bigint[]),
    @extschema@.consume_kafka(text, integer, interval) FROM PUBLIC;

GRANT SELECT ON @extschema@.kafka_sources, @extschema@.kafka_offsets, @extschema@.kafka_status TO propensity_reader;

GRANT INSERT, UPDATE, DELETE ON @extschema@.kafka_sources TO propensity_admin;

GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.kafka_source_properties TO propensity_admin;

GRANT INSERT, UPDATE, DELETE ON @extschema@.kafka_offsets TO propensity_admin;

GRANT EXECUTE ON FUNCTION @extschema@.create_kafka_source(text, text, text, jsonb, text, boolean, text),
    @extschema@.alter_kafka_source(text, text, jsonb, boolean, boolean),
    @extschema@.drop_kafka_source(text), @extschema@.reset_kafka_offsets(text, text),
    @extschema@.set_kafka_offsets(text, integer[], bigint[]),
    @extschema@.consume_kafka(text, integer, interval) TO propensity_admin;

-- the worker's share: read the sources and their properties, write the
-- offsets and the counters
GRANT SELECT ON @extschema@.kafka_source_properties TO propensity_worker;

GRANT UPDATE ON @extschema@.kafka_sources TO propensity_worker;

GRANT INSERT, UPDATE ON @extschema@.kafka_offsets TO propensity_worker;

ALTER FUNCTION @extschema@.consume_kafka(text, integer, interval) OWNER TO propensity_worker;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.kafka_sources', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.kafka_source_properties', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.kafka_offsets', '');

-- ===========================================================================
-- Fitting and evaluating models in the database: logistic regression by
-- Newton/IRLS (the logistic_sums() aggregate, the logistic_step() solver
-- and the fit_logistic() driver), labelled examples from the event store,
-- fits stored as model versions, evaluation on a held-out range.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Logistic regression
-- ---------------------------------------------------------------------------

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

COMMENT ON FUNCTION @extschema@.fit_logistic(regclass, name, name[], double precision, double precision, integer) IS
    'Logistic regression of a boolean column on numeric columns by Newton/IRLS (one logistic_sums() pass per iteration, parallel where the planner allows), with optional L2 on the non-intercept coefficients';

GRANT EXECUTE ON FUNCTION @extschema@.logistic_step(bytea, double precision[], double precision),
    @extschema@.fit_logistic(regclass, name, name[], double precision, double precision, integer) TO propensity_reader;

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
-- Labelled examples
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
-- Fitting
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
    -- NaN sorts above every number: 'NaN' <= 0 is false, and every step is
    -- "below" a NaN tolerance (the fit stopped at zeros)
    IF tolerance IS NULL OR NOT (tolerance > 0 AND tolerance < 'Infinity')
       OR max_iterations IS NULL OR max_iterations < 1 THEN
        RAISE EXCEPTION 'tolerance must be a positive finite number and max_iterations at least 1, not % and %',
                        coalesce(tolerance::text, 'NULL'), coalesce(max_iterations::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF examples_query IS NULL OR n_inputs IS NULL OR n_inputs < 1 THEN
        RAISE EXCEPTION 'fit_irls() needs a query of examples and at least one input'
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
-- Evaluation
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
    IF source IS NULL THEN
        RAISE EXCEPTION 'the relation of (label, score) to evaluate must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
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

-- ===========================================================================
-- Propensity over time (docs/computing.md section 4): the event-time
-- history of tracked models, current propensity and its snapshots, model
-- versions installed without a gap, dashboard materialized views, and
-- pg_cron schedules for rescoring and refreshing.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Propensity over time (docs/computing.md section 4): the event-time
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
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF track_history.model IS NULL THEN
        RAISE EXCEPTION 'the model whose history to keep must be named'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
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

-- ---------------------------------------------------------------------------
-- Current propensity (docs/computing.md section 4): every user's score as of now, decay
-- since the user's last event included.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.current_propensity(model text DEFAULT NULL,
                                               as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (user_id text, score double precision, model_id integer)
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 100000
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.user_id, s.score, v.mid
      FROM (SELECT @extschema@.model_id(current_propensity.model) AS mid OFFSET 0) v,  -- (once, not per row)
           LATERAL @extschema@.model_snapshot(current_propensity.as_of, v.mid) s;
END;

COMMENT ON FUNCTION @extschema@.current_propensity(text, timestamptz) IS
    'Every user''s propensity as of now (or as_of) under the latest version of a model, decay since the last event included';

-- statement_timeout also in pg_cron's background workers (see history.c)
CREATE FUNCTION @extschema@.arm_statement_timeout()
RETURNS boolean
AS 'MODULE_PATHNAME', 'propensity_arm_statement_timeout'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.arm_statement_timeout() IS
    'In a background worker (pg_cron with cron.use_background_workers), start the statement_timeout timer that a client backend starts by itself; true when it did';

-- Snapshots of the current propensity, written by rescore() (by hand or on a
-- pg_cron schedule).  A snapshot is identified by (model, as_of): writing it
-- again replaces it, so a repeated run changes nothing.
CREATE TABLE @extschema@.score_snapshots (
    model    text NOT NULL,
    as_of    timestamptz NOT NULL,
    user_id  text NOT NULL,
    score    double precision NOT NULL,
    model_id integer NOT NULL,
    PRIMARY KEY (model, as_of, user_id)
);

COMMENT ON TABLE @extschema@.score_snapshots IS
    'Snapshots of every user''s propensity as of a time, one per rescore() run (model, as_of)';

CREATE TABLE @extschema@.snapshot_runs (
    model       text NOT NULL,
    as_of       timestamptz NOT NULL,
    model_id    integer NOT NULL,
    users       bigint NOT NULL,
    mean_score  double precision,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    PRIMARY KEY (model, as_of)
);

COMMENT ON TABLE @extschema@.snapshot_runs IS
    'One row per snapshot in score_snapshots: the version used, users scored, mean score and the run''s duration';

CREATE FUNCTION @extschema@.rescore(model text DEFAULT NULL,
                                    as_of timestamptz DEFAULT pg_catalog.now(),
                                    keep interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer := @extschema@.model_id(rescore.model);
    mname text;
    started timestamptz := pg_catalog.clock_timestamp();
    n bigint;
    mean double precision;
BEGIN
    IF rescore.as_of IS NULL OR rescore.keep < interval '0' THEN
        RAISE EXCEPTION 'rescore() needs a time and a non-negative retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('as_of = %s, keep = %s', coalesce(rescore.as_of::text, 'NULL'),
                                             coalesce(rescore.keep::text, 'NULL'));
    END IF;
    PERFORM @extschema@.arm_statement_timeout();
    SELECT m.name INTO mname FROM @extschema@.models m WHERE m.model_id = mid;
    -- one run per model at a time (pg_cron never overlaps a job with itself;
    -- this also orders runs by hand and version installs)
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('propensity.rescore'),
                                             pg_catalog.hashtext(mname));
    DELETE FROM @extschema@.score_snapshots s WHERE s.model = mname AND s.as_of = rescore.as_of;
    WITH written AS (
        INSERT INTO @extschema@.score_snapshots (model, as_of, user_id, score, model_id)
        SELECT mname, rescore.as_of, p.user_id, p.score, mid
          FROM @extschema@.model_snapshot(rescore.as_of, mid) p
        RETURNING score)
    SELECT count(*), avg(w.score) INTO n, mean FROM written w;
    INSERT INTO @extschema@.snapshot_runs AS r (model, as_of, model_id, users, mean_score, started_at, finished_at)
    VALUES (mname, rescore.as_of, mid, n, mean, started, pg_catalog.clock_timestamp())
    ON CONFLICT ON CONSTRAINT snapshot_runs_pkey DO UPDATE
       SET model_id = excluded.model_id, users = excluded.users, mean_score = excluded.mean_score,
           started_at = excluded.started_at, finished_at = excluded.finished_at;
    -- retention: snapshots older than keep before this one (NULL: keep all)
    DELETE FROM @extschema@.score_snapshots s WHERE s.model = mname AND s.as_of < rescore.as_of - rescore.keep;
    DELETE FROM @extschema@.snapshot_runs r WHERE r.model = mname AND r.as_of < rescore.as_of - rescore.keep;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.rescore(text, timestamptz, interval) IS
    'Snapshot every user''s propensity as of a time into score_snapshots (replacing a snapshot of the same time), dropping snapshots older than keep (NULL: none); returns the users scored';

CREATE VIEW @extschema@.latest_scores AS
SELECT s.model, s.as_of, s.user_id, s.score, s.model_id
  FROM @extschema@.score_snapshots s
  JOIN (SELECT r.model, max(r.as_of) AS as_of FROM @extschema@.snapshot_runs r GROUP BY r.model) l
    USING (model, as_of);

COMMENT ON VIEW @extschema@.latest_scores IS
    'Each model''s latest snapshot of the current propensity';

-- ---------------------------------------------------------------------------
-- Model versions installed without a gap
-- ---------------------------------------------------------------------------

-- Recompute a tracked model's whole history under its latest version and
-- write what changed to the changelog (points whose version changes are
-- logged even when the score does not).
CREATE FUNCTION @extschema@.history_switch(model text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer;
    n bigint;
BEGIN
    PERFORM 1 FROM @extschema@.history_models h WHERE h.model = history_switch.model FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the history of model "%" is not kept', history_switch.model
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Start it with SELECT propensity.track_history(''model'').';
    END IF;
    mid := @extschema@.model_id(history_switch.model);
    WITH p AS (SELECT * FROM @extschema@.history_points(mid)),
    diff AS (
        SELECT p.user_id, p.event_time, o.score AS old_score, p.score AS new_score
          FROM p LEFT JOIN @extschema@.score_history o
            ON o.model = history_switch.model AND o.user_id = p.user_id AND o.event_time = p.event_time
         WHERE (o.score, o.model_id) IS DISTINCT FROM (p.score, mid)),
    logged AS (
        INSERT INTO @extschema@.score_history_changelog (model, user_id, event_time, old_score, new_score, model_id)
        SELECT history_switch.model, d.user_id, d.event_time, d.old_score, d.new_score, mid FROM diff d)
    INSERT INTO @extschema@.score_history AS s (model, user_id, event_time, score, model_id)
    SELECT history_switch.model, d.user_id, d.event_time, d.new_score, mid FROM diff d
    ON CONFLICT ON CONSTRAINT score_history_pkey DO UPDATE SET score = excluded.score, model_id = excluded.model_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.history_switch(text) IS
    'Rescore a tracked model''s whole history under its latest version, logging every changed point; returns the points written';

-- A new latest version of a model takes over in the transaction that
-- installs it: the kept history is rescored under it (batches wait on the
-- history_models row meanwhile) and, if the model has snapshots, a snapshot
-- as of now is taken with it.  No reader ever sees a mix or a hole.
CREATE FUNCTION @extschema@.models_installed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.model_id <> @extschema@.model_id(NEW.name) THEN
        RETURN NULL;                -- an older version: nothing takes over
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.history_models h WHERE h.model = NEW.name) THEN
        PERFORM @extschema@.history_switch(NEW.name);
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.snapshot_runs r WHERE r.model = NEW.name) THEN
        PERFORM @extschema@.rescore(NEW.name, pg_catalog.now(), keep => NULL);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER models_installed AFTER INSERT ON @extschema@.models
    FOR EACH ROW EXECUTE FUNCTION @extschema@.models_installed();

-- ---------------------------------------------------------------------------
-- Dashboards (docs/computing.md section 4): materialized views over the event-time
-- history, in buckets set by dashboard_settings, refreshed concurrently.
-- A user counts in a bucket when it has an event there, with the score of
-- its last point in the bucket (what it stood at when it left the bucket).
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.dashboard_settings (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    bucket_width  interval NOT NULL DEFAULT '1 day',
    bucket_origin timestamptz NOT NULL DEFAULT '2000-01-01 00:00:00+00',
    score_bands   integer NOT NULL DEFAULT 10,
    CONSTRAINT dashboard_bucket_width CHECK (bucket_width > interval '0'
                                             AND pg_catalog.date_part('month', bucket_width) = 0
                                             AND pg_catalog.date_part('year', bucket_width) = 0),
    CONSTRAINT dashboard_score_bands CHECK (score_bands BETWEEN 1 AND 100)
);

INSERT INTO @extschema@.dashboard_settings DEFAULT VALUES;

COMMENT ON TABLE @extschema@.dashboard_settings IS
    'Dashboard buckets (width and origin, time-zone independent; no months) and the number of equal score bands over [0, 1]; applied at the next refresh_dashboards()';

CREATE MATERIALIZED VIEW @extschema@.propensity_trajectory AS
SELECT h.model, h.user_id,
       pg_catalog.date_bin(s.bucket_width, h.event_time, s.bucket_origin) AS bucket,
       count(*) AS points,
       (array_agg(h.score ORDER BY h.event_time))[1] AS first_score,
       (array_agg(h.score ORDER BY h.event_time DESC))[1] AS last_score,
       min(h.score) AS min_score,
       max(h.score) AS max_score,
       max(h.event_time) AS last_event,
       (array_agg(h.model_id ORDER BY h.event_time DESC))[1] AS model_id
  FROM @extschema@.score_history h CROSS JOIN @extschema@.dashboard_settings s
 GROUP BY h.model, h.user_id, 3
WITH DATA;

CREATE UNIQUE INDEX propensity_trajectory_key ON @extschema@.propensity_trajectory (model, user_id, bucket);

COMMENT ON MATERIALIZED VIEW @extschema@.propensity_trajectory IS
    'Per tracked model, user and bucket: the points of the event-time history, the first, last, lowest and highest score, and the version of the last point';

CREATE MATERIALIZED VIEW @extschema@.propensity_over_time AS
SELECT t.model, t.bucket, t.bucket + s.bucket_width AS bucket_end,
       count(*) AS users,
       avg(t.last_score) AS mean_score,
       percentile_cont(0.1)  WITHIN GROUP (ORDER BY t.last_score) AS p10,
       percentile_cont(0.25) WITHIN GROUP (ORDER BY t.last_score) AS p25,
       percentile_cont(0.5)  WITHIN GROUP (ORDER BY t.last_score) AS median,
       percentile_cont(0.75) WITHIN GROUP (ORDER BY t.last_score) AS p75,
       percentile_cont(0.9)  WITHIN GROUP (ORDER BY t.last_score) AS p90
  FROM @extschema@.propensity_trajectory t CROSS JOIN @extschema@.dashboard_settings s
 GROUP BY t.model, t.bucket, s.bucket_width
WITH DATA;

CREATE UNIQUE INDEX propensity_over_time_key ON @extschema@.propensity_over_time (model, bucket);

COMMENT ON MATERIALIZED VIEW @extschema@.propensity_over_time IS
    'Per tracked model and bucket: users scored (with an event in the bucket), mean and quantiles (continuous) of their last score in the bucket';

CREATE MATERIALIZED VIEW @extschema@.propensity_score_bands AS
SELECT o.model, o.bucket, b.band,
       (b.band - 1)::double precision / s.score_bands AS lower_bound,
       b.band::double precision / s.score_bands AS upper_bound,
       count(t.user_id) AS users
  FROM @extschema@.propensity_over_time o
 CROSS JOIN @extschema@.dashboard_settings s
 CROSS JOIN LATERAL pg_catalog.generate_series(1, s.score_bands) AS b(band)
  LEFT JOIN @extschema@.propensity_trajectory t
    ON t.model = o.model AND t.bucket = o.bucket
   AND least(pg_catalog.width_bucket(t.last_score, 0.0::double precision, 1.0::double precision, s.score_bands),
             s.score_bands) = b.band
 GROUP BY o.model, o.bucket, b.band, s.score_bands
WITH DATA;

CREATE UNIQUE INDEX propensity_score_bands_key ON @extschema@.propensity_score_bands (model, bucket, band);

COMMENT ON MATERIALIZED VIEW @extschema@.propensity_score_bands IS
    'Per tracked model, bucket and score band [lower, upper) (the last band includes 1): users whose last score in the bucket falls in it, zeros included';

CREATE FUNCTION @extschema@.refresh_dashboards(concurrent boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.arm_statement_timeout();
    -- in dependency order: the other two read the trajectory
    IF concurrent THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.propensity_trajectory;
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.propensity_over_time;
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.propensity_score_bands;
    ELSE
        REFRESH MATERIALIZED VIEW @extschema@.propensity_trajectory;
        REFRESH MATERIALIZED VIEW @extschema@.propensity_over_time;
        REFRESH MATERIALIZED VIEW @extschema@.propensity_score_bands;
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.refresh_dashboards(boolean) IS
    'Refresh the dashboard materialized views (by default concurrently: readers are never blocked)';

-- ---------------------------------------------------------------------------
-- pg_cron schedules.  Jobs are named
-- 'propensity:<database>:<what>' and run in this database as the user who
-- scheduled them.  Without pg_cron, these functions say what is missing and
-- everything else works.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.cron_require(job_name text DEFAULT NULL, schedule text DEFAULT NULL,
                                         command text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := pg_catalog.current_setting('cron.database_name', true);
BEGIN
    IF pg_catalog.to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NOT NULL THEN
        RETURN;
    END IF;
    IF cron_db IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not loaded'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Scheduling rescoring and dashboard refreshes needs the pg_cron extension (1.4 or later); everything else in propensity works without it.',
                  HINT = 'Add pg_cron to shared_preload_libraries, restart the server, and run CREATE EXTENSION pg_cron in the database set by cron.database_name; or run propensity.rescore() and propensity.refresh_dashboards() from another scheduler.';
    ELSIF cron_db <> pg_catalog.current_database() THEN
        RAISE EXCEPTION 'pg_cron lives in database "%", not in this one', cron_db
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('cron.database_name is "%s"; schedules are made there and run here with cron.schedule_in_database().', cron_db),
                  HINT = CASE WHEN command IS NULL
                              THEN pg_catalog.format('Connect to database "%s" to list or remove the jobs (SELECT * FROM cron.job WHERE jobname LIKE %L).',
                                                     cron_db, 'propensity:' || pg_catalog.current_database() || ':%')
                              ELSE pg_catalog.format('In database "%s" run: SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                                     cron_db, job_name, schedule, command, pg_catalog.current_database())
                         END;
    ELSE
        RAISE EXCEPTION 'pg_cron is loaded but not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Scheduling needs cron.schedule_in_database() from pg_cron 1.4 or later.',
                  HINT = 'Run CREATE EXTENSION pg_cron (or ALTER EXTENSION pg_cron UPDATE) in this database.';
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.cron_require(text, text, text) IS
    'Raise a clear error when pg_cron cannot schedule jobs for this database (internal)';

-- The job runs "SET statement_timeout = <timeout>; <statement>".
CREATE FUNCTION @extschema@.cron_schedule(what text, schedule text, statement text, timeout interval)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name text;
    ms numeric;
    command text;
    jobid bigint;
BEGIN
    IF what IS NULL OR schedule IS NULL OR statement IS NULL THEN
        RAISE EXCEPTION 'a scheduled job needs a name, a schedule and a statement'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    ms := extract(epoch FROM timeout) * 1000;
    IF timeout IS NULL OR ms < 1 OR ms > 2147483647 THEN
        RAISE EXCEPTION 'the timeout of a scheduled job must be between 1 millisecond and 2147483647 milliseconds (about 24.8 days), not %',
                        coalesce(timeout::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'statement_timeout, which runs the job, holds at most 2147483647 ms.';
    END IF;
    -- in whole milliseconds, rounded up so that a positive timeout stays one
    command := pg_catalog.format('SET statement_timeout = %L; %s', ceil(ms)::bigint::text, statement);
    job_name := @extschema@.cron_job_name(what);
    PERFORM @extschema@.cron_require(job_name, schedule, command);
    BEGIN
        -- same name, same user: pg_cron replaces the job, so this is idempotent
        EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4, current_user, true)'
           INTO jobid USING job_name, schedule, command, pg_catalog.current_database();
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'permission denied to schedule pg_cron jobs'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = SQLERRM,
                  HINT = pg_catalog.format('A superuser can GRANT USAGE ON SCHEMA cron and EXECUTE ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) and cron.unschedule(bigint) TO %I.', current_user);
    END;
    RETURN jobid;
END
$$;

COMMENT ON FUNCTION @extschema@.cron_schedule(text, text, text, interval) IS
    'Install or replace the pg_cron job propensity:<database>:<what>, running a statement under a timeout (internal)';

CREATE FUNCTION @extschema@.schedule_rescoring(model text DEFAULT NULL,
                                               schedule text DEFAULT '*/15 * * * *',
                                               keep interval DEFAULT '7 days',
                                               timeout interval DEFAULT '10 minutes')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mname text;
BEGIN
    SELECT m.name INTO mname FROM @extschema@.models m
     WHERE m.model_id = @extschema@.model_id(schedule_rescoring.model);
    IF keep IS NULL OR keep < interval '0' THEN
        RAISE EXCEPTION 'schedule_rescoring() needs a non-negative retention, not %', coalesce(keep::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the snapshot's time is the minute the job was due: a repeated run in
    -- the same minute rewrites the same snapshot
    RETURN @extschema@.cron_schedule('rescore:' || mname, schedule,
        pg_catalog.format('SELECT %I.rescore(%L, pg_catalog.date_bin(%L, pg_catalog.now(), %L), %L)',
                          '@extschema@', mname, '1 minute', '2000-01-01 00:00:00+00', keep),
        timeout);
END
$$;

COMMENT ON FUNCTION @extschema@.schedule_rescoring(text, text, interval, interval) IS
    'Install (or replace) a pg_cron job that snapshots a model''s current propensity with rescore() on a cron schedule; returns the job id';

CREATE FUNCTION @extschema@.schedule_dashboard_refresh(schedule text DEFAULT '*/5 * * * *',
                                                       timeout interval DEFAULT '10 minutes')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @extschema@.cron_schedule('refresh dashboards', schedule,
        pg_catalog.format('SELECT %I.refresh_dashboards()', '@extschema@'), timeout);
END
$$;

COMMENT ON FUNCTION @extschema@.schedule_dashboard_refresh(text, interval) IS
    'Install (or replace) a pg_cron job that refreshes the dashboard views concurrently on a cron schedule; returns the job id';

CREATE FUNCTION @extschema@.schedules()
RETURNS TABLE (jobid bigint, job_name text, schedule text, command text, active boolean,
               last_status text, last_start timestamptz, last_end timestamptz, last_message text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.cron_require();
    RETURN QUERY EXECUTE
        'SELECT j.jobid, j.jobname::text, j.schedule, j.command, j.active,
                d.status, d.start_time, d.end_time, d.return_message
           FROM cron.job j
           LEFT JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                                FROM cron.job_run_details r WHERE r.jobid = j.jobid
                               ORDER BY r.runid DESC LIMIT 1) d ON true
          WHERE j.jobname LIKE ''propensity:%'' AND j.database = current_database()
          ORDER BY j.jobname';
END
$$;

COMMENT ON FUNCTION @extschema@.schedules() IS
    'The pg_cron jobs of propensity in this database, each with its latest run';

CREATE FUNCTION @extschema@.unschedule(job_name text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM @extschema@.cron_require();
    SELECT s.jobid INTO id FROM @extschema@.schedules() s WHERE s.job_name = unschedule.job_name;
    IF id IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT cron.unschedule($1)' USING id;
    RETURN true;
END
$$;

COMMENT ON FUNCTION @extschema@.unschedule(text) IS
    'Remove one of propensity''s pg_cron jobs by its name (see schedules()); false when there is none';

-- ---------------------------------------------------------------------------
-- pg_cron jobs: a timeout must be one statement_timeout can hold (1 ms to
-- 2147483647 ms; '30 days' wrote one that failed every run, and less than
-- a millisecond became no timeout at all); a job name longer than pg_cron's
-- 63 bytes keeps a hash of the whole, so two long names cannot collide.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.cron_job_name(what text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN octet_length('propensity:' || current_database() || ':' || what) <= 63
            THEN 'propensity:' || current_database() || ':' || what
            ELSE 'propensity:' || md5(current_database() || ':' || what) || ':'
                 || convert_from(substring(convert_to(what, 'UTF8') FROM 1 FOR 12), 'UTF8')
       END;

COMMENT ON FUNCTION @extschema@.cron_job_name(text) IS
    'The pg_cron job name of one of propensity''s jobs in this database: propensity:<database>:<what>, or with a hash when that is over 63 bytes (internal)';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION @extschema@.rescore(text, timestamptz, interval),
    @extschema@.history_switch(text), @extschema@.refresh_dashboards(boolean),
    @extschema@.cron_schedule(text, text, text, interval),
    @extschema@.schedule_rescoring(text, text, interval, interval),
    @extschema@.schedule_dashboard_refresh(text, interval),
    @extschema@.unschedule(text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.current_propensity(text, timestamptz),
    @extschema@.arm_statement_timeout() TO propensity_reader;

GRANT EXECUTE ON FUNCTION @extschema@.rescore(text, timestamptz, interval),
    @extschema@.history_switch(text), @extschema@.refresh_dashboards(boolean),
    @extschema@.cron_schedule(text, text, text, interval),
    @extschema@.schedule_rescoring(text, text, interval, interval),
    @extschema@.schedule_dashboard_refresh(text, interval),
    @extschema@.unschedule(text) TO propensity_admin;

GRANT SELECT ON @extschema@.score_snapshots, @extschema@.snapshot_runs, @extschema@.latest_scores,
    @extschema@.dashboard_settings, @extschema@.propensity_trajectory,
    @extschema@.propensity_over_time, @extschema@.propensity_score_bands TO propensity_reader;

GRANT INSERT, DELETE ON @extschema@.score_snapshots TO propensity_admin;

GRANT INSERT, UPDATE, DELETE ON @extschema@.snapshot_runs TO propensity_admin;

GRANT UPDATE ON @extschema@.dashboard_settings TO propensity_admin;

-- ===========================================================================
-- The ingest worker's role, and what it alone may write.
-- ===========================================================================

-- ---------------------------------------------------------------------------
-- Least privilege.  The tables the pipeline derives from the events
-- (attribution, score history, snapshots) are written only through the
-- product's functions: a writer's scope is inserting events and producing
-- messages, and it can no longer forge a total, a score or the watermark.
-- Those functions run as propensity_worker, the role the ingest worker
-- connects as: it holds the rights the pipeline needs and nothing more
-- (LOGIN only because PostgreSQL 15 requires it of a background worker's
-- role; it has no password, and a pg_hba.conf "reject" line for it keeps
-- clients out without affecting the worker).
-- ---------------------------------------------------------------------------
GRANT propensity_writer TO propensity_worker;

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON @extschema@.attribution_state, @extschema@.attribution_changelog,
    @extschema@.attribution_current, @extschema@.attribution_totals, @extschema@.attribution_late,
    @extschema@.score_history, @extschema@.score_history_changelog, @extschema@.history_models,
    @extschema@.score_snapshots, @extschema@.snapshot_runs
    FROM propensity_writer, propensity_admin;

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON @extschema@.attribution_state,
    @extschema@.attribution_changelog, @extschema@.attribution_current, @extschema@.attribution_totals,
    @extschema@.attribution_late
    TO propensity_worker;

GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.score_history, @extschema@.score_history_changelog,
    @extschema@.history_models, @extschema@.score_snapshots, @extschema@.snapshot_runs
    TO propensity_worker;

-- the queue side of a batch: the group's position and offsets, dead letters
GRANT SELECT, UPDATE ON @extschema@.subscriptions TO propensity_worker;

GRANT INSERT, UPDATE ON @extschema@.consumer_offsets, @extschema@.dead_letters TO propensity_worker;

GRANT EXECUTE ON FUNCTION @extschema@.queue_maintain() TO propensity_worker;

-- the functions that write derived tables run as propensity_worker
ALTER FUNCTION @extschema@.ingest(@extschema@.events[]) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

REVOKE ALL ON FUNCTION @extschema@.ingest(@extschema@.events[]) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.ingest(@extschema@.events[]) TO propensity_writer;

ALTER FUNCTION @extschema@.consume(text, text, integer) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

ALTER FUNCTION @extschema@.history_refresh(text[], timestamptz[]) SECURITY DEFINER;

ALTER FUNCTION @extschema@.history_rebuild(text) SECURITY DEFINER;

ALTER FUNCTION @extschema@.track_history(text) SECURITY DEFINER;

ALTER FUNCTION @extschema@.untrack_history(text) SECURITY DEFINER;

ALTER FUNCTION @extschema@.history_switch(text) SECURITY DEFINER;

ALTER FUNCTION @extschema@.rescore(text, timestamptz, interval) SECURITY DEFINER;

REVOKE ALL ON FUNCTION @extschema@.history_refresh(text[], timestamptz[]) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION @extschema@.history_refresh(text[], timestamptz[]) TO propensity_writer;

ALTER FUNCTION @extschema@.ingest(@extschema@.events[]) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.consume(text, text, integer) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.replay_dead_letters(text, text) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.history_refresh(text[], timestamptz[]) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.history_rebuild(text) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.track_history(text) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.untrack_history(text) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.history_switch(text) OWNER TO propensity_worker;

ALTER FUNCTION @extschema@.rescore(text, timestamptz, interval) OWNER TO propensity_worker;
