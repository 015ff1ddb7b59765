-- Every error a user can cause: message, hint, and SQLSTATE.
SET timezone = 'UTC';
\set VERBOSITY default

-- unknown or missing event type
SELECT propensity.window_counts('XX', '2026-03-01', '2026-03-01', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.window_counts('im', '2026-03-01', '2026-03-01', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.decayed_counts(NULL, '2026-03-01', '2026-03-01', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.score_events('CLICK', '2026-03-01', '2026-03-01');
\echo :LAST_ERROR_SQLSTATE

-- NULL or infinite times
SELECT propensity.window_counts('IM', NULL, '2026-03-01', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.window_counts('IM', '2026-03-01', NULL, '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.score_events('IM', 'infinity', '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.feature_values('IM', '2026-03-01', '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.score('u', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.score(NULL, '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM propensity.score_all(NULL);
\echo :LAST_ERROR_SQLSTATE

-- windows and half-lives
SELECT propensity.window_counts('IM', '2026-03-01', '2026-03-01', '1 month');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.window_counts('IM', '2026-03-01', '2026-03-01', '0 seconds');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.decayed_counts('IM', '2026-03-01', '2026-03-01', '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.decayed_counts('IM', '2026-03-01', '2026-03-01', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.window_counts('IM', '2026-03-01', '2026-03-01', '2000000000 days');
\echo :LAST_ERROR_SQLSTATE

-- unknown models
SELECT propensity.score('u', '2026-03-01', 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.score_events('IM', '2026-03-01', '2026-03-01', 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM propensity.score_all('2026-03-01', 'nope');
\echo :LAST_ERROR_SQLSTATE
SET propensity.default_model = 'gone';
SELECT propensity.score('u', '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
SET propensity.default_model = '';
SELECT propensity.apply_model(NULL);
\echo :LAST_ERROR_SQLSTATE
RESET propensity.default_model;
SELECT propensity.apply_model('{1,2,3}');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.apply_model('{1,2,NULL,4}');
\echo :LAST_ERROR_SQLSTATE

-- one model per aggregate group
SELECT propensity.score_events(t, '2026-03-01', '2026-03-01', m)
  FROM (VALUES ('IM', 'seed'), ('CL', 'mixed')) v(t, m);
\echo :LAST_ERROR_SQLSTATE

-- the event table's own checks
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('x1', 'u', 'XX', '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('x2', 'u', 'IM', NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('x3', 'u', 'IM', 'infinity');
\echo :LAST_ERROR_SQLSTATE

-- partition functions
SELECT propensity.ensure_partitions(NULL, '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.ensure_partitions('2026-03-01', 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.drop_old_partitions('-1 day');
\echo :LAST_ERROR_SQLSTATE
SET propensity.partition_interval = 'year';
\echo :LAST_ERROR_SQLSTATE
SET propensity.batch_memory = '1kB';
\echo :LAST_ERROR_SQLSTATE
SET propensity.no_such_setting = 1;
\echo :LAST_ERROR_SQLSTATE

-- generator settings
SELECT count(*) FROM propensity.generate_events(1, 10, 0, '2026-03-01', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM propensity.generate_events(1, 10, 10, '2026-03-01', '1 day', 1.5);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM propensity.generate_events(1, -1, 10, '2026-03-01', '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM propensity.generate_events(1, 10, 10, '2026-03-01', '0 days');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM propensity.generate_events(1, 10, 10, NULL, '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM propensity.generate_events(1, 10, 10, '2026-03-01', '1 day', 0, '1 day', 0);
\echo :LAST_ERROR_SQLSTATE

-- privileges: a role with no grant cannot read events or create partitions
CREATE ROLE propensity_test_nobody;
SET ROLE propensity_test_nobody;
SELECT count(*) FROM propensity.events;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM propensity.score_all('2026-03-01');
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.ensure_partitions('2026-03-01', '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- propensity_reader reads and scores; propensity_writer also loads
GRANT propensity_reader TO propensity_test_nobody;
SET ROLE propensity_test_nobody;
SELECT count(*) >= 0 AS reader_can_read FROM propensity.events;
SELECT count(*) >= 0 AS reader_can_score FROM propensity.score_all('2026-03-01');
INSERT INTO propensity.events (event_id, user_id, event_type, event_time) VALUES ('r1', 'u', 'IM', '2026-03-01');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT propensity_writer TO propensity_test_nobody;
SET ROLE propensity_test_nobody;
SELECT propensity.load_generated_events(99, 10, 5, '2026-08-01', '1 day') AS writer_loads;
DELETE FROM propensity.models;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP OWNED BY propensity_test_nobody;
DROP ROLE propensity_test_nobody;
