-- Post-click / post-view attribution in batch (docs/computing.md section 5): hand-made
-- keys, per-advertiser settings, and agreement with an independent
-- plain-SQL evaluation of the rules on a generated stream.
SET timezone = 'UTC';
SELECT propensity.ensure_partitions('2026-09-01', '2026-10-15') >= 0 AS ensured;
-- one partition a day, 1 September to 15 October (some may be older)
SELECT count(*) AS days FROM propensity.event_partitions
 WHERE range_start >= '2026-09-01' AND range_start < '2026-10-16';

INSERT INTO propensity.events
    (event_id, user_id, event_type, event_time, advertiser_id, campaign_id, auction_id, pixel_id) VALUES
    -- the MediaMath example, all arrived: impression, click between, conversion: PC
    ('m-i', 'mm', 'IM', '2026-09-01 00:00+00', 1, 101, 'a-m', 11),
    ('m-c', 'mm', 'CL', '2026-09-02 00:00+00', 1, 101, 'a-m', NULL),
    ('m-e', 'mm', 'CN', '2026-09-03 00:00+00', 1, NULL, NULL, 11),
    -- view only, two impressions: the later one (campaign 202) is credited PV
    ('v-i1', 'vv', 'IM', '2026-09-01 00:00+00', 1, 201, 'a-v1', 11),
    ('v-i2', 'vv', 'IM', '2026-09-05 00:00+00', 1, 202, 'a-v2', 11),
    ('v-e', 'vv', 'CN', '2026-09-06 00:00+00', 1, NULL, NULL, 11),
    -- the same user at another advertiser is another key: the pixel does not match
    ('v-x', 'vv', 'CN', '2026-09-06 00:00+00', 2, NULL, NULL, 11),
    -- advertiser 3 has a 2-day post-view window: an impression 3 days before is too old
    ('s-i', 'ss', 'IM', '2026-09-01 00:00+00', 3, 301, 'a-s', 31),
    ('s-e', 'ss', 'CN', '2026-09-04 00:00+00', 3, NULL, NULL, 31),
    -- a click on another auction is no post-click: PV for campaign 401
    ('o-i', 'oo', 'IM', '2026-09-01 00:00+00', 4, 401, 'a-o', 41),
    ('o-c', 'oo', 'CL', '2026-09-01 01:00+00', 4, 402, 'a-other', NULL),
    ('o-e', 'oo', 'CN', '2026-09-02 00:00+00', 4, NULL, NULL, 41);
INSERT INTO propensity.advertiser_settings (advertiser_id, pv_window) VALUES (3, '2 days');

SELECT user_id, advertiser_id, conversion_event_id, kind, campaign_id, impression_event_id
  FROM propensity.attribute_all()
 WHERE user_id IN ('mm', 'vv', 'ss', 'oo')
 ORDER BY user_id, advertiser_id, conversion_event_id;

-- with the default window advertiser 3's conversion is post-view
UPDATE propensity.advertiser_settings SET pv_window = '30 days' WHERE advertiser_id = 3;
SELECT kind, campaign_id FROM propensity.attribute_all() WHERE conversion_event_id = 's-e';
-- and a post-view window longer than the rolling window acts as the rolling window
UPDATE propensity.advertiser_settings SET pv_window = '30 days', rolling_window = '2 days'
 WHERE advertiser_id = 3;
SELECT kind, campaign_id FROM propensity.attribute_all() WHERE conversion_event_id = 's-e';
DELETE FROM propensity.advertiser_settings;

-- the aggregate directly, in any row order
SELECT (c).kind, (c).campaign_id, (c).impression_event_id
  FROM (SELECT unnest(propensity.attribute(event_id, event_type, event_time, campaign_id, auction_id,
                                           pixel_id, '30 days', '30 days', '30 days'
                                           ORDER BY event_time DESC)) AS c
          FROM propensity.events WHERE user_id = 'mm') s;

-- a generated stream: every conversion's credit equals an independent
-- plain-SQL evaluation of docs/computing.md section 5.  Advertiser 1 has short windows,
-- advertiser 2 a 3-day rolling window that caps both, advertiser 3 no row
-- (the 30-day defaults), and advertiser 5, with no events, a row of its
-- own: every batch path below must look each advertiser up, not just the
-- defaults (a settings table freed too early once gave NONE for all).
SELECT propensity.load_generated_events(31, 30000, 400, '2026-09-01', '30 days', 0.1,
                                        n_advertisers => 3, campaigns_per_advertiser => 4);
INSERT INTO propensity.advertiser_settings (advertiser_id, pc_window, pv_window, rolling_window) VALUES
    (1, '5 days', '10 days', '30 days'), (2, '30 days', '30 days', '3 days'),
    (5, '1 day', '1 day', '1 day');
\i test/reference/attribution_rules.sql
CREATE TEMP TABLE reference AS SELECT conv, kind, campaign_id, imp FROM attribution_reference;
CREATE TEMP TABLE batch AS SELECT * FROM propensity.attribute_all();

SELECT (SELECT count(*) FROM reference) = (SELECT count(*) FROM batch) AS same_conversions,
       (SELECT count(*) FROM reference r FULL JOIN batch b ON b.conversion_event_id = r.conv
         WHERE r.conv IS NULL OR b.conversion_event_id IS NULL
            OR r.kind <> b.kind OR r.campaign_id IS DISTINCT FROM b.campaign_id
            OR r.imp IS DISTINCT FROM b.impression_event_id) AS mismatches;
-- the stream exercises every kind, and the settings change credits: per
-- advertiser, the kinds differ from a 30-day evaluation
SELECT kind, count(*) > 20 AS many FROM batch GROUP BY kind ORDER BY kind;
CREATE TEMP TABLE settings_saved AS SELECT * FROM propensity.advertiser_settings;
DELETE FROM propensity.advertiser_settings;
CREATE TEMP TABLE batch_defaults AS SELECT * FROM propensity.attribute_all();
INSERT INTO propensity.advertiser_settings SELECT * FROM settings_saved;
SELECT b.advertiser_id, count(*) FILTER (WHERE b.kind IS DISTINCT FROM d.kind) > 10 AS changed_by_settings
  FROM batch b JOIN batch_defaults d USING (conversion_event_id, conversion_time)
 WHERE b.advertiser_id <= 3 GROUP BY 1 ORDER BY 1;

-- attribute_batch(), the C scan, gives the same rows as the aggregate (and
-- so as the reference), on each of its paths: one pass over heap pages;
-- many passes when propensity.batch_memory is 1MB (the 30k events need
-- several, so users must be split into hash classes); tuple slots.
CREATE FUNCTION diff(a regclass, b regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT (SELECT count(*) FROM (TABLE %s EXCEPT ALL TABLE %s) x)
                         + (SELECT count(*) FROM (TABLE %s EXCEPT ALL TABLE %s) y)', a, b, b, a) INTO n;
    RETURN n;
END $$;
CREATE TEMP TABLE scan_one AS SELECT * FROM propensity.attribute_batch();
SET propensity.batch_memory = '1MB';
CREATE TEMP TABLE scan_classes AS SELECT * FROM propensity.attribute_batch();
RESET propensity.batch_memory;
SET propensity.batch_fast_scan = off;
CREATE TEMP TABLE scan_slots AS SELECT * FROM propensity.attribute_batch(skip_late => false);
RESET propensity.batch_fast_scan;
SELECT (SELECT count(*) FROM scan_one) > 1500 AS many_conversions,
       diff('batch', 'scan_one') AS one_pass, diff('batch', 'scan_classes') AS classes,
       diff('batch', 'scan_slots') AS slots;
-- a partition whose columns are in another order (attached), behind a
-- dropped column, is read by name: the same credits for its events, and
-- the same scores, read in place and through tuple slots
CREATE TEMP TABLE scores_plain AS SELECT * FROM propensity.score_all('2026-09-21');
CREATE TABLE reordered (junk int, pixel_id bigint, auction_id text, campaign_id bigint,
                        advertiser_id bigint, event_id text NOT NULL,
                        event_type text NOT NULL CONSTRAINT events_event_type_check
                            CHECK (event_type IN ('IM', 'CL', 'PS', 'CN')),
                        user_id text NOT NULL,
                        event_time timestamptz NOT NULL
                            CONSTRAINT events_event_time_check CHECK (pg_catalog.isfinite(event_time)),
                        publisher text,
                        creative text, placement text, product text, quantity integer,
                        revenue double precision);
ALTER TABLE reordered DROP COLUMN junk;
INSERT INTO reordered SELECT pixel_id, auction_id, campaign_id, advertiser_id, event_id, event_type,
                             user_id, event_time, publisher, creative, placement, product, quantity, revenue
  FROM propensity.events WHERE event_time >= '2026-09-20' AND event_time < '2026-09-21';
SELECT count(*) > 500 AS day_has_events FROM reordered;
SELECT p.partition AS day_partition FROM propensity.event_partitions p
 WHERE p.range_start = '2026-09-20' \gset
ALTER TABLE propensity.events DETACH PARTITION :day_partition;
ALTER TABLE propensity.events ATTACH PARTITION reordered FOR VALUES FROM ('2026-09-20') TO ('2026-09-21');
CREATE TEMP TABLE scan_reordered AS SELECT * FROM propensity.attribute_batch();
SELECT diff('batch', 'scan_reordered') AS reordered;
SELECT count(DISTINCT user_id) > 300 AS day_has_users,
       (SELECT count(*) FROM propensity.score_all('2026-09-21')) = (SELECT count(*) FROM scores_plain)
         AS same_users
  FROM reordered;
SET propensity.batch_fast_scan = off;
SELECT count(*) AS score_slot_mismatches
  FROM scores_plain s FULL JOIN propensity.score_all('2026-09-21') r USING (user_id)
 WHERE s.user_id IS NULL OR r.user_id IS NULL OR abs(s.score - r.score) > 1e-12 OR s.features <> r.features;
RESET propensity.batch_fast_scan;
SELECT count(*) AS score_mismatches_all
  FROM scores_plain s FULL JOIN propensity.score_all('2026-09-21') r USING (user_id)
 WHERE s.user_id IS NULL OR r.user_id IS NULL OR abs(s.score - r.score) > 1e-12 OR s.features <> r.features;
ALTER TABLE propensity.events DETACH PARTITION reordered;
ALTER TABLE propensity.events ATTACH PARTITION :day_partition FOR VALUES FROM ('2026-09-20') TO ('2026-09-21');
DROP TABLE reordered;

-- A partition is read last row first, and its impressions and clicks are
-- kept only when a conversion read before needs them; the others are
-- candidates, checked again when the partition is done.  Here one
-- partition holds the whole month with every conversion stored first, so
-- each needed impression and click is read before its conversion and must
-- be read again; with 1MB, the candidates also outgrow their room (an
-- eighth of it), and the rest of the partition is read in two phases.
CREATE TABLE month_rows (LIKE propensity.events INCLUDING CONSTRAINTS);
INSERT INTO month_rows SELECT * FROM propensity.events
 WHERE event_time >= '2026-09-01' AND event_time < '2026-11-01'
 ORDER BY event_type <> 'CN', event_time;
SELECT count(*) AS month_rows FROM month_rows;
CREATE TEMP TABLE month_days AS
SELECT partition, range_start, range_end FROM propensity.event_partitions
 WHERE range_start >= '2026-09-01' AND range_end <= '2026-11-01';
CREATE FUNCTION month_days(attach boolean, except_day regclass DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE d record;
BEGIN
    FOR d IN SELECT * FROM month_days WHERE partition IS DISTINCT FROM except_day LOOP
        IF attach THEN
            EXECUTE format('ALTER TABLE propensity.events ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
                           d.partition, d.range_start, d.range_end);
        ELSE
            EXECUTE format('ALTER TABLE propensity.events DETACH PARTITION %s', d.partition);
        END IF;
    END LOOP;
END $$;
SELECT count(*) AS days FROM month_days;
SELECT month_days(attach => false);
ALTER TABLE propensity.events ATTACH PARTITION month_rows FOR VALUES FROM ('2026-09-01') TO ('2026-11-01');
CREATE TEMP TABLE scan_month AS SELECT * FROM propensity.attribute_batch();
SET propensity.batch_memory = '1MB';
CREATE TEMP TABLE scan_month_small AS SELECT * FROM propensity.attribute_batch();
RESET propensity.batch_memory;
SELECT diff('batch', 'scan_month') AS conversions_first, diff('batch', 'scan_month_small') AS small;
ALTER TABLE propensity.events DETACH PARTITION month_rows;
DROP TABLE month_rows;
-- The default partition is read for its conversions before the others and
-- for its impressions and clicks after them: here it holds one day of the
-- stream, whose impressions serve later conversions and whose conversions
-- are served by earlier impressions.
SELECT partition AS day_partition FROM month_days WHERE range_start = '2026-09-15' \gset
SELECT month_days(attach => true, except_day => :'day_partition');
INSERT INTO propensity.events SELECT * FROM :day_partition;
SELECT (SELECT count(*) FROM propensity.events_default
         WHERE event_time >= '2026-09-15' AND event_time < '2026-09-16')
       = (SELECT count(*) FROM :day_partition) AS day_in_default;
CREATE TEMP TABLE scan_default AS SELECT * FROM propensity.attribute_batch();
SELECT diff('batch', 'scan_default') AS default_partition;
DELETE FROM propensity.events_default
 WHERE event_time >= '2026-09-15' AND event_time < '2026-09-16';
ALTER TABLE propensity.events ATTACH PARTITION :day_partition FOR VALUES FROM ('2026-09-15') TO ('2026-09-16');
SELECT count(*) AS month_rows_again FROM propensity.events
 WHERE event_time >= '2026-09-01' AND event_time < '2026-11-01';
DROP FUNCTION month_days(boolean, regclass);
-- the backfill, the scan's other caller, writes the same credits
SELECT conversions = (SELECT count(*) FROM propensity.events WHERE event_type = 'CN') AS every_conversion,
       conversions > 0 AS some
  FROM propensity.attribution_backfill();
SELECT count(*) AS backfill_differs FROM propensity.attribution_current c
  FULL JOIN batch b ON b.conversion_event_id = c.conversion_event_id AND b.conversion_time = c.conversion_time
 WHERE c.kind IS DISTINCT FROM b.kind OR c.campaign_id IS DISTINCT FROM b.campaign_id
    OR c.impression_event_id IS DISTINCT FROM b.impression_event_id;
DELETE FROM propensity.advertiser_settings;

-- bad input
\set VERBOSITY default
SELECT propensity.attribute(NULL, 'IM', '2026-09-01', 1, 'a', 1, '30 days', '30 days', '30 days');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.attribute('x', 'IMP', '2026-09-01', 1, 'a', 1, '30 days', '30 days', '30 days');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.attribute('x', 'IM', '2026-09-01', 1, 'a', 1, '1 month', '30 days', '30 days');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.advertiser_settings (advertiser_id, pc_window) VALUES (9, '-1 day');
\echo :LAST_ERROR_SQLSTATE
-- the C scan reads the partitions itself: no row-level security, and the
-- caller must be allowed to read the events
ALTER TABLE propensity.events ENABLE ROW LEVEL SECURITY;
SET ROLE propensity_reader;
SELECT count(*) FROM propensity.attribute_batch();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER TABLE propensity.events DISABLE ROW LEVEL SECURITY;
CREATE ROLE attr_nobody;
GRANT USAGE ON SCHEMA propensity TO attr_nobody;
GRANT SELECT ON propensity.advertiser_settings TO attr_nobody;
SET ROLE attr_nobody;
SELECT count(*) FROM propensity.attribute_batch();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE SELECT ON propensity.advertiser_settings FROM attr_nobody;
REVOKE USAGE ON SCHEMA propensity FROM attr_nobody;
DROP ROLE attr_nobody;
