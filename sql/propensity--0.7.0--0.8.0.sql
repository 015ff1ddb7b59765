-- propensity 0.7.0 -> 0.8.0: hostile input cannot hurt the server.  Event
-- partitions only for the times a batch holds, bounded per batch; limits
-- on messages, batches, schemas and identifiers; events beyond the future
-- horizon kept out of attribution; derived tables written only through the
-- product's functions, and the ingest worker's own role.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.8.0'" to load this file. \quit

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

CREATE OR REPLACE FUNCTION @extschema@.ensure_partition(t timestamptz)
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

-- A range is walked partition by partition only inside the horizon: an
-- endpoint in year 100000 or year 1 costs nothing.
CREATE OR REPLACE FUNCTION @extschema@.ensure_partitions(from_time timestamptz, to_time timestamptz)
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

DROP FUNCTION @extschema@.maintain_partitions();
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

CREATE OR REPLACE FUNCTION @extschema@.drop_old_partitions(older_than interval,
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

REVOKE ALL ON FUNCTION @extschema@.forget_missing_partitions(), @extschema@.maintain_partitions(integer),
    @extschema@.ensure_partitions_for(timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.ensure_partitions_for(timestamptz[]) TO propensity_writer;
GRANT EXECUTE ON FUNCTION @extschema@.forget_missing_partitions(), @extschema@.maintain_partitions(integer)
    TO propensity_admin;
GRANT EXECUTE ON FUNCTION @extschema@.partition_horizon() TO propensity_reader;

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
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'propensity_worker') THEN
        CREATE ROLE propensity_worker LOGIN;
    END IF;
END
$roles$;
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
-- The future horizon: an event later than its ingest plus
-- propensity.future_horizon is stored and listed as future, but neither
-- attributed nor let move the watermark (one event dated 2999 made every
-- later event late, for ever).  A backfill takes the watermark from the
-- events it attributes, and with include_late recounts the listed ones.
-- ---------------------------------------------------------------------------
ALTER TABLE @extschema@.attribution_late
    ADD COLUMN reason text NOT NULL DEFAULT 'late' CHECK (reason IN ('late', 'future'));
COMMENT ON TABLE @extschema@.attribution_late IS
    'Events kept out of attribution: older than the ingest watermark when they arrived (late), or later than the future horizon (future); stored and counted, not attributed';
COMMENT ON COLUMN @extschema@.attribution_late.watermark IS
    'For a late event the watermark it missed; for a future one the limit it passed';
ALTER TABLE @extschema@.attribution_totals ADD COLUMN future bigint NOT NULL DEFAULT 0;
COMMENT ON TABLE @extschema@.attribution_totals IS
    'Per (advertiser, campaign): in-time impressions and clicks, PC and PV conversions, unattributed conversions (NULL campaign), late and future events';

CREATE OR REPLACE VIEW @extschema@.attribution_totals_from_changelog AS
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

DROP FUNCTION @extschema@.attribution_backfill();
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
