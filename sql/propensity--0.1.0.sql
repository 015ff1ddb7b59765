-- propensity 0.1.0: event store, features, models and scores.
\echo Use "CREATE EXTENSION propensity" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Roles: read (dashboards, analysts), write (producers, loaders), administer.
-- Roles are cluster-wide, so they are created only when missing and survive
-- DROP EXTENSION.
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
END
$roles$;
GRANT propensity_reader TO propensity_writer;
GRANT propensity_writer TO propensity_admin;
GRANT USAGE ON SCHEMA @extschema@ TO propensity_reader;

-- ---------------------------------------------------------------------------
-- Event store (SPEC section 1)
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
    pname  text;
    moved  bigint;
BEGIN
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

    -- one creator at a time; re-check under the lock
    PERFORM pg_advisory_xact_lock(hashtext('propensity.events partitions'));
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

    pname := 'events_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
    IF lo <> date_trunc('day', lo, 'UTC') THEN
        pname := pname || '_' || to_char(lo AT TIME ZONE 'UTC', 'HH24MISS');
    END IF;

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

CREATE FUNCTION @extschema@.ensure_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       timestamptz := from_time;
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
    SELECT count(*) INTO before FROM @extschema@.event_partitions;
    WHILE t <= to_time LOOP
        hi := @extschema@.ensure_partition(t);
        IF hi IS NULL THEN
            hi := (@extschema@.partition_bounds(t)).range_end;
        END IF;
        t := hi;
    END LOOP;
    RETURN (SELECT count(*) FROM @extschema@.event_partitions) - before;
END
$$;

COMMENT ON FUNCTION @extschema@.ensure_partitions(timestamptz, timestamptz) IS
    'Creates the event partitions covering [from_time, to_time] within the horizon; returns how many were created';

CREATE FUNCTION @extschema@.maintain_partitions()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       timestamptz;
    created integer := 0;
BEGIN
    FOR t IN
        SELECT min(d.event_time)
          FROM @extschema@.events_default d
         WHERE (@extschema@.partition_bounds(d.event_time)).in_horizon
         GROUP BY (@extschema@.partition_bounds(d.event_time)).range_start
    LOOP
        created := created + @extschema@.ensure_partitions(t, t);
    END LOOP;
    RETURN created;
END
$$;

COMMENT ON FUNCTION @extschema@.maintain_partitions() IS
    'Moves rows of the default partition that are within the horizon into partitions of their own; returns how many partitions were created';

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
-- Feature aggregates (SPEC section 2)
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
-- Models and scores (SPEC section 3)
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
REVOKE ALL ON FUNCTION @extschema@.maintain_partitions() FROM PUBLIC;
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
GRANT EXECUTE ON FUNCTION @extschema@.maintain_partitions(),
                          @extschema@.drop_old_partitions(interval, timestamptz)
    TO propensity_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.models', 'WHERE name <> ''seed''');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_partitions', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.events_default', '');

-- ---------------------------------------------------------------------------
-- Post-click / post-view attribution (SPEC section 5): the batch evaluation
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.advertiser_settings (
    advertiser_id    bigint PRIMARY KEY,
    pc_window        interval NOT NULL DEFAULT '30 days' CHECK (pc_window > interval '0'),
    pv_window        interval NOT NULL DEFAULT '30 days' CHECK (pv_window > interval '0'),
    rolling_window   interval NOT NULL DEFAULT '30 days' CHECK (rolling_window > interval '0'),
    allowed_lateness interval NOT NULL DEFAULT '30 days' CHECK (allowed_lateness >= interval '0')
);
COMMENT ON TABLE @extschema@.advertiser_settings IS
    'Per-advertiser attribution windows; an advertiser without a row gets the SPEC defaults (30 days each)';

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
    'Credits of the conversions among one (user, advertiser) key''s events, by the rules of SPEC section 5';

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
    'Batch evaluation of SPEC section 5 over every event: one row per conversion with its credit';

GRANT SELECT ON @extschema@.advertiser_settings TO propensity_reader;
GRANT INSERT, UPDATE, DELETE ON @extschema@.advertiser_settings TO propensity_admin;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.advertiser_settings', '');
