-- Event store partitioning: bounds, creation on demand, the default
-- partition and its policy, redelivery, retention.
SET timezone = 'UTC';

-- bounds under each propensity.partition_interval (computed in UTC)
SELECT * FROM propensity.partition_bounds('2026-03-01 13:45:10+00');
SET propensity.partition_interval = 'hour';
SELECT range_start, range_end FROM propensity.partition_bounds('2026-03-01 13:45:10+00');
SET propensity.partition_interval = 'week';
-- 2026-03-01 is a Sunday: its ISO week runs from Monday 02-23 to Monday 03-02
SELECT range_start, range_end FROM propensity.partition_bounds('2026-03-01 13:45:10+00');
SELECT range_start, range_end FROM propensity.partition_bounds('2026-03-02 00:00:00+00');
SET propensity.partition_interval = 'month';
SELECT range_start, range_end FROM propensity.partition_bounds('2026-12-31 23:59:59.999+00');
SELECT range_start, range_end FROM propensity.partition_bounds('1999-12-31 23:00:00-02');
RESET propensity.partition_interval;
-- bounds do not depend on the session time zone
SET timezone = 'Asia/Tokyo';
SELECT range_start AT TIME ZONE 'UTC' AS start_utc FROM propensity.partition_bounds('2026-03-01 05:00:00+09');
SET timezone = 'UTC';

-- the horizon: far past and far future stay in the default partition
SELECT in_horizon FROM propensity.partition_bounds(now());
SELECT in_horizon FROM propensity.partition_bounds(now() + interval '6 days');
SELECT in_horizon FROM propensity.partition_bounds(now() + interval '8 days');
SELECT in_horizon FROM propensity.partition_bounds(now() - interval '11 years');
SET propensity.partition_max_future = -1;
SET propensity.partition_max_past = -1;
SELECT in_horizon FROM propensity.partition_bounds(now() + interval '50 years');
SELECT in_horizon FROM propensity.partition_bounds(now() - interval '50 years');
RESET propensity.partition_max_future;
RESET propensity.partition_max_past;

-- ensure_partitions creates each missing day once
SELECT propensity.ensure_partitions('2026-05-01 10:00', '2026-05-03 09:00');
SELECT propensity.ensure_partitions('2026-05-01', '2026-05-03');
SELECT partition, range_start, range_end FROM propensity.event_partitions
 WHERE range_start >= '2026-05-01' AND range_start < '2026-06-01' ORDER BY range_start;

-- a plain INSERT for a time with no partition does not fail: the row waits
-- in the default partition until maintain_partitions() moves it
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('p1', 'pu', 'IM', '2026-05-10 08:00+00'), ('p2', 'pu', 'CL', '2026-05-10 09:00+00');
SELECT event_id, tableoid::regclass FROM propensity.events WHERE user_id = 'pu' ORDER BY 1;
-- 3 partitions: 2026-05-10, and the days of the two 2025 conversions the
-- score test left in the default partition
SELECT propensity.maintain_partitions();
SELECT event_id, tableoid::regclass FROM propensity.events WHERE user_id = 'pu' ORDER BY 1;
SELECT count(*) AS in_default FROM propensity.events_default WHERE user_id = 'pu';

-- same through ensure_partitions: the rows move when their partition is made
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('p3', 'pu', 'PS', '2026-05-11 08:00+00');
SELECT propensity.ensure_partitions('2026-05-11', '2026-05-11');
SELECT event_id, tableoid::regclass FROM propensity.events WHERE event_id = 'p3';

-- far future and far past: kept, visible and scored, in the default partition
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('f1', 'far', 'IM', now() + interval '2 years'),
       ('f2', 'far', 'IM', now() - interval '20 years');
SELECT propensity.maintain_partitions();
SELECT event_id, tableoid::regclass FROM propensity.events WHERE user_id = 'far' ORDER BY 1;
SELECT propensity.ensure_partitions(now() + interval '2 years', now() + interval '2 years');
SELECT (propensity.window_counts(event_type, event_time, now() + interval '3 years', '3650 days')).im
  FROM propensity.events WHERE user_id = 'far';

-- a changed interval takes effect for new partitions, clipped to fit
SET propensity.partition_interval = 'month';
SELECT propensity.ensure_partitions('2026-05-20', '2026-05-20');
SELECT partition, range_start, range_end FROM propensity.event_partitions
 WHERE range_start >= '2026-05-01' AND range_start < '2026-06-01' ORDER BY range_start;
RESET propensity.partition_interval;

-- redelivery: loading the same stream again inserts nothing and changes nothing
SELECT propensity.load_generated_events(21, 3000, 300, '2026-05-01', '3 days');
SELECT count(*), md5(string_agg(event_id || event_time || user_id, ',' ORDER BY event_id)) AS digest
  FROM propensity.events WHERE event_id LIKE 'e21-%' \gset first_
SELECT propensity.load_generated_events(21, 3000, 300, '2026-05-01', '3 days');
SELECT count(*) = :first_count AS same_count,
       md5(string_agg(event_id || event_time || user_id, ',' ORDER BY event_id)) = :'first_digest' AS same_rows
  FROM propensity.events WHERE event_id LIKE 'e21-%';
-- a redelivered event in a plain INSERT is skipped with ON CONFLICT DO NOTHING
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('p1', 'pu', 'IM', '2026-05-10 08:00+00') ON CONFLICT DO NOTHING;
SELECT count(*) FROM propensity.events WHERE event_id = 'p1';

-- retention: partitions ending on or before as_of - older_than go, and so
-- do default-partition rows older than that
SELECT count(*) AS partitions_before FROM propensity.event_partitions \gset
SELECT count(*) AS dropped FROM propensity.drop_old_partitions('10 days', '2026-05-12 00:00+00');
SELECT :partitions_before - count(*) AS gone FROM propensity.event_partitions;
SELECT min(range_start) FROM propensity.event_partitions;
SELECT count(*) AS rows_before_may FROM propensity.events WHERE event_time < '2026-05-02';
SELECT event_id FROM propensity.events WHERE user_id = 'far' ORDER BY 1;
