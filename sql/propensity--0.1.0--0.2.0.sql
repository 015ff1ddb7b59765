-- propensity 0.1.0 -> 0.2.0: the streaming attribution engine (SPEC section 5)
-- with retractions, its changelog, current attribution, totals, lateness and
-- the dashboard view.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.2.0'" to load this file. \quit

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
    UNIQUE NULLS NOT DISTINCT (advertiser_id, campaign_id)
);
COMMENT ON TABLE @extschema@.attribution_totals IS
    'Per (advertiser, campaign): in-time impressions and clicks, PC and PV conversions, unattributed conversions (NULL campaign) and late events';

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
    PRIMARY KEY (event_id, event_time)
);
COMMENT ON TABLE @extschema@.attribution_late IS
    'Events older than the ingest watermark when they arrived: stored and counted, not attributed';

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

CREATE FUNCTION @extschema@.attribution_backfill(OUT conversions bigint, OUT deltas bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_attribution_backfill'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.attribution_backfill() IS
    'Recomputes the changelog, current attribution and totals from the stored events (late ones excluded) with the streaming engine';

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
-- Views
-- ---------------------------------------------------------------------------
-- The totals as sums of the changelog and of the stored in-time events:
-- what attribution_totals must equal (an audit, and the definition).
CREATE VIEW @extschema@.attribution_totals_from_changelog AS
SELECT advertiser_id, campaign_id,
       sum(impressions)::bigint AS impressions, sum(clicks)::bigint AS clicks,
       sum(pc)::bigint AS pc, sum(pv)::bigint AS pv,
       sum(unattributed)::bigint AS unattributed, sum(late)::bigint AS late
  FROM (SELECT e.advertiser_id, e.campaign_id,
               (e.event_type = 'IM')::int AS impressions, (e.event_type = 'CL')::int AS clicks,
               0 AS pc, 0 AS pv, 0 AS unattributed, 0 AS late
          FROM @extschema@.events e
         WHERE e.advertiser_id IS NOT NULL AND e.event_type IN ('IM', 'CL')
           AND NOT EXISTS (SELECT 1 FROM @extschema@.attribution_late l
                            WHERE l.event_id = e.event_id AND l.event_time = e.event_time)
        UNION ALL
        SELECT advertiser_id, campaign_id, 0, 0,
               CASE WHEN kind = 'PC' THEN delta ELSE 0 END,
               CASE WHEN kind = 'PV' THEN delta ELSE 0 END,
               CASE WHEN kind = 'NONE' THEN delta ELSE 0 END, 0
          FROM @extschema@.attribution_changelog
        UNION ALL
        SELECT advertiser_id, campaign_id, 0, 0, 0, 0, 0, 1
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
REVOKE EXECUTE ON FUNCTION @extschema@.attribution_backfill(),
                           @extschema@.refresh_attribution_views(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.attribution_backfill(),
                          @extschema@.refresh_attribution_views(boolean)
    TO propensity_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_state', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_changelog', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_current', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_totals', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.attribution_late', '');
