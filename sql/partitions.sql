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

-- Only the ranges that hold events get partitions, within the horizon.  A
-- range with an endpoint in year 100000 or 1 BC used to be walked a day at
-- a time (22 to 66 minutes); two events years apart, each day between.
SET statement_timeout = '30s';
SELECT propensity.ensure_partitions('20000-01-01', '100000-01-01') AS far_future,
       propensity.ensure_partitions('0001-01-01 BC', now() - interval '11 years') AS far_past;
SELECT count(*) AS parts FROM propensity.event_partitions \gset
SELECT propensity.ensure_partitions_for(ARRAY[now() - interval '9 years', now() - interval '9 years',
                                              now() - interval '8 years', '100000-01-01', '0001-06-01 BC',
                                              NULL]::timestamptz[]) AS created;
SELECT count(*) - :parts AS new_partitions FROM propensity.event_partitions;
SELECT count(*) AS covering FROM propensity.event_partitions
 WHERE range_start <= now() - interval '9 years' AND now() - interval '9 years' < range_end;
-- at most propensity.partitions_per_batch new ones per batch; the rest wait
-- in the default partition until maintain_partitions(max_partitions)
SET propensity.partitions_per_batch = 2;
SELECT propensity.ensure_partitions_for(ARRAY(SELECT now() - interval '7 years' + d * interval '1 day'
                                                FROM generate_series(0, 4) d)) AS created_capped;
RESET propensity.partitions_per_batch;
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
SELECT 'cap' || d, 'cap', 'IM', now() - interval '7 years' + d * interval '1 day' FROM generate_series(0, 4) d;
SELECT count(*) FILTER (WHERE tableoid = 'propensity.events_default'::regclass) AS waiting
  FROM propensity.events WHERE user_id = 'cap';
SELECT propensity.maintain_partitions(2) AS created, propensity.maintain_partitions() AS then_created;
SELECT count(*) FILTER (WHERE tableoid = 'propensity.events_default'::regclass) AS waiting
  FROM propensity.events WHERE user_id = 'cap';
SELECT propensity.maintain_partitions(-1);
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;

-- A partition dropped by hand is forgotten and its range gets a partition
-- again (its registry row once kept maintain_partitions() from recreating it
-- and drop_old_partitions() failed on its dangling name); one detached by
-- hand keeps its name, so the new one takes another.
SELECT partition AS gone FROM propensity.event_partitions
 WHERE range_start = date_trunc('day', now() - interval '7 years', 'UTC') \gset
DROP TABLE :gone;
SELECT count(*) AS registry_row_left FROM propensity.event_partitions WHERE partition::text !~ '^propensity\.';
SELECT propensity.ensure_partitions_for(ARRAY[now() - interval '7 years']) AS recreated;
SELECT count(*) AS covered FROM propensity.event_partitions p JOIN pg_inherits i ON i.inhrelid = p.partition
 WHERE p.range_start = date_trunc('day', now() - interval '7 years', 'UTC');
SELECT partition AS detached FROM propensity.event_partitions
 WHERE range_start = date_trunc('day', now() - interval '7 years', 'UTC') + interval '1 day' \gset
ALTER TABLE propensity.events DETACH PARTITION :detached;
SELECT propensity.maintain_partitions() AS after_detach;
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('det', 'cap', 'IM', now() - interval '7 years' + interval '1 day');
SELECT propensity.maintain_partitions() AS recreated_detached;
SELECT p.partition::text = :'detached' || '_2' AS took_another_name FROM propensity.event_partitions p
 WHERE p.range_start = date_trunc('day', now() - interval '7 years', 'UTC') + interval '1 day';
SELECT count(*) AS dropped_old FROM propensity.drop_old_partitions('6 years');
SELECT count(*) AS detached_kept FROM pg_class WHERE oid = :'detached'::regclass;
DROP TABLE :detached;
