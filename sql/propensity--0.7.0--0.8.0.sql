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

-- ---------------------------------------------------------------------------
-- The queue, robust to what an operator can do to it: a slot table dropped
-- by hand is skipped (its messages are gone) instead of breaking
-- queue_status for every topic; a retention must stay below 100 years
-- (1000000 years overflowed every maintenance pass); one topic whose
-- maintenance fails is reported and the others go on.
-- ---------------------------------------------------------------------------
ALTER TABLE @extschema@.topics
    ADD CONSTRAINT topics_retention_bound CHECK (retention < interval '100 years') NOT VALID;

CREATE OR REPLACE FUNCTION @extschema@.create_topic(topic text, partitions integer DEFAULT 8,
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

CREATE OR REPLACE FUNCTION @extschema@.queue_lag(topic text, consumer_group text DEFAULT 'propensity')
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

CREATE OR REPLACE FUNCTION @extschema@.queue_maintain(OUT topic text, OUT action text, OUT slot integer)
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

CREATE OR REPLACE FUNCTION @extschema@.drop_topic(topic text)
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

CREATE OR REPLACE FUNCTION @extschema@.cron_schedule(what text, schedule text, statement text, timeout interval)
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

CREATE OR REPLACE FUNCTION @extschema@.schedules()
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

-- ---------------------------------------------------------------------------
-- Fitting: a NaN or infinite tolerance is refused (a NaN one returned zeros)
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.fit_irls(examples_query text, n_inputs integer,
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

-- ---------------------------------------------------------------------------
-- NULL arguments get a clear error (sql/null_args.sql calls every function
-- with NULLs): these gave a syntax error or a bare not-null violation.
-- CREATE OR REPLACE keeps a function's owner but not SECURITY DEFINER
-- unless restated, as it is for track_history (run as propensity_worker).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.evaluation_metrics(source regclass,
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

CREATE OR REPLACE FUNCTION @extschema@.register_schema(subject text, schema text)
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

CREATE OR REPLACE FUNCTION @extschema@.track_history(model text)
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
