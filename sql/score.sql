-- Scores (docs/computing.md section 3) with the seed model: one user, every user, and
-- agreement between the per-user function, the batch function, the
-- aggregate and the plain-SQL formula.
SET timezone = 'UTC';
SELECT propensity.ensure_partitions('2026-01-25', '2026-03-02');

INSERT INTO propensity.events (event_id, user_id, event_type, event_time) VALUES
    -- the example of docs/computing.md section 3: 3 impressions and 1 click in their windows, nothing else in a window
    ('s1', 'spec', 'IM', '2026-02-28 10:00+00'),
    ('s2', 'spec', 'IM', '2026-02-15 10:00+00'),
    ('s3', 'spec', 'IM', '2026-01-30 00:00:00.001+00'),
    ('s4', 'spec', 'CL', '2026-02-22 00:00:00.001+00'),
    ('s5', 'spec', 'IM', '2026-01-30 00:00+00'),     -- exactly t - 30 days: out
    ('s6', 'spec', 'PS', '2026-02-26 00:00+00'),     -- 3 days before: out of the 2-day window
    ('s7', 'spec', 'CN', '2025-01-25 00:00+00'),     -- 400 days before: out of 365 days
    ('s8', 'spec', 'CL', '2026-03-01 00:00:00.001+00'), -- 1 ms after t: future
    -- 2 IM, 1 PS, 1 CN in their windows
    ('u1', 'u2', 'IM', '2026-02-27 00:00+00'),
    ('u2', 'u2', 'IM', '2026-02-28 00:00+00'),
    ('u3', 'u2', 'PS', '2026-02-28 12:00+00'),
    ('u4', 'u2', 'CN', '2025-11-21 00:00+00'),
    -- only future events
    ('l1', 'later', 'CL', '2026-03-02 00:00+00');

-- the two 2025 conversions are outside the partition range created above,
-- so they sit in the default partition; scoring reads both
SELECT count(*) AS in_default FROM propensity.events_default;

-- z = -2.78 + 1.09 ln 4 + 1.77 ln 2 = -0.042069, score 0.489484
SELECT round(propensity.score('spec', '2026-03-01')::numeric, 6) AS score,
       round(ln(propensity.score('spec', '2026-03-01') / (1 - propensity.score('spec', '2026-03-01')))::numeric, 6) AS z;

-- -2.78 + 1.09 ln 3 + 2.82 ln 2 + 0.99 ln 2: 0.742380
SELECT round(propensity.score('u2', '2026-03-01')::numeric, 6);

-- no event up to t: the intercept alone, 1 / (1 + e^2.78) = 0.058415
SELECT round(propensity.score('later', '2026-03-01')::numeric, 6) AS only_future,
       round(propensity.score('nobody', '2026-03-01')::numeric, 6) AS no_events;

-- batch: every user with an event up to t, with its features in model order
SELECT user_id, round(score::numeric, 6) AS score, features
  FROM propensity.score_all('2026-03-01') ORDER BY user_id;

-- the aggregates give the same
SELECT user_id,
       round(propensity.score_events(event_type, event_time, '2026-03-01')::numeric, 6) AS score,
       propensity.feature_values(event_type, event_time, '2026-03-01') AS features
  FROM propensity.events WHERE event_time <= '2026-03-01'
 GROUP BY user_id ORDER BY user_id;

-- an explicit model name is the same as the default
SELECT round(propensity.score('spec', '2026-03-01', 'seed')::numeric, 6);
SELECT round(propensity.apply_model('{3,1,0,0}', 'seed')::numeric, 6) AS spec_features,
       round(propensity.apply_model(NULL)::numeric, 6) AS no_features;

-- On a generated stream: batch scoring equals per-user scoring and an
-- independent plain-SQL evaluation of docs/computing.md section 3, for every user.
SELECT propensity.load_generated_events(11, 20000, 2000, '2026-02-01', '28 days', 0.1);
CREATE TEMP TABLE plain AS
SELECT user_id,
       1 / (1 + exp(-(-2.78
            + 1.09 * ln(1 + count(*) FILTER (WHERE event_type = 'IM' AND event_time > '2026-03-01'::timestamptz - interval '30 days'))
            + 1.77 * ln(1 + count(*) FILTER (WHERE event_type = 'CL' AND event_time > '2026-03-01'::timestamptz - interval '7 days'))
            + 2.82 * ln(1 + count(*) FILTER (WHERE event_type = 'PS' AND event_time > '2026-03-01'::timestamptz - interval '2 days'))
            + 0.99 * ln(1 + count(*) FILTER (WHERE event_type = 'CN' AND event_time > '2026-03-01'::timestamptz - interval '365 days'))))) AS score
  FROM propensity.events WHERE event_time <= '2026-03-01' GROUP BY user_id;
CREATE TEMP TABLE batch AS SELECT * FROM propensity.score_all('2026-03-01');
SELECT (SELECT count(*) FROM plain) > 1900 AS many_users,
       (SELECT count(*) FROM plain) = (SELECT count(*) FROM batch) AS same_users,
       (SELECT count(*) FROM plain p JOIN batch b USING (user_id)
         WHERE abs(p.score - b.score) > 1e-12) AS batch_vs_sql_mismatches,
       (SELECT count(*) FROM batch b
         WHERE abs(b.score - propensity.score(b.user_id, '2026-03-01')) > 1e-12) AS batch_vs_score_mismatches;

-- bounded memory: with a tiny propensity.batch_memory the users are split
-- into several passes, and the result is the same
SET propensity.batch_memory = '64kB';
SET client_min_messages = debug1;
SELECT count(*) FROM propensity.score_all('2026-03-01');
RESET client_min_messages;
SELECT count(*) = (SELECT count(*) FROM batch) AS same_users,
       count(*) FILTER (WHERE abs(b.score - s.score) > 1e-12 OR b.features <> s.features) AS mismatches
  FROM batch b JOIN propensity.score_all('2026-03-01') s USING (user_id);
RESET propensity.batch_memory;

-- serial and parallel batch scoring agree (workers: none, one, two)
SET propensity.batch_workers = 0;
CREATE TEMP TABLE serial AS SELECT * FROM propensity.score_all('2026-03-01');
SET propensity.batch_workers = 1;
CREATE TEMP TABLE one_worker AS SELECT * FROM propensity.score_all('2026-03-01');
SET propensity.batch_workers = 2;
CREATE TEMP TABLE two_workers AS SELECT * FROM propensity.score_all('2026-03-01');
RESET propensity.batch_workers;
SELECT (SELECT count(*) FROM serial) = (SELECT count(*) FROM batch) AS same_users,
       (SELECT count(*) FROM serial s FULL JOIN one_worker p USING (user_id)
         WHERE p.user_id IS NULL OR s.user_id IS NULL
            OR abs(s.score - p.score) > 1e-12 OR s.features <> p.features) AS one_worker_mismatches,
       (SELECT count(*) FROM serial s FULL JOIN two_workers p USING (user_id)
         WHERE p.user_id IS NULL OR s.user_id IS NULL
            OR abs(s.score - p.score) > 1e-12 OR s.features <> p.features) AS two_worker_mismatches;
-- a user id longer than a parallel worker's message chunk (100 kB here,
-- compressible, so the index takes it) is scored by a worker too (it used to
-- raise an internal error).  One impression within 30 days:
-- z = -2.78 + 1.09 ln 2 = -2.024470, score 0.116658
BEGIN;
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('long-u', repeat('u', 100000), 'IM', '2026-02-27 10:00+00');
SET LOCAL propensity.batch_workers = 1;
SET LOCAL parallel_leader_participation = off;
SELECT length(user_id), round(score::numeric, 6), features FROM propensity.score_all('2026-03-01')
 WHERE length(user_id) > 1000;
ROLLBACK;
-- and the direct heap reading agrees with reading through tuple slots
SET propensity.batch_fast_scan = off;
SELECT count(*) AS slot_path_mismatches
  FROM serial s FULL JOIN propensity.score_all('2026-03-01') p USING (user_id)
 WHERE p.user_id IS NULL OR s.user_id IS NULL OR abs(s.score - p.score) > 1e-12;
RESET propensity.batch_fast_scan;

-- as of an earlier time, later events do not count
SELECT count(*) AS mismatches
  FROM propensity.score_all('2026-02-10') b
 WHERE abs(b.score - propensity.score(b.user_id, '2026-02-10')) > 1e-12;
SELECT (SELECT count(*) FROM propensity.score_all('2026-02-10')) =
       (SELECT count(DISTINCT user_id) FROM propensity.events WHERE event_time <= '2026-02-10') AS users_up_to_t;

-- visibility: inside a transaction that deletes and inserts, every path of
-- score_all sees what the transaction sees (spec's click deleted, an extra
-- paid search for u2: spec {3,0,0,0} = -2.78 + 1.09 ln 4 -> 0.219439,
-- u2 {2,0,2,1} -> 0.900410)
BEGIN;
DELETE FROM propensity.events WHERE user_id = 'spec' AND event_type = 'CL';
INSERT INTO propensity.events (event_id, user_id, event_type, event_time)
VALUES ('u5', 'u2', 'PS', '2026-02-28 18:00+00');
SET LOCAL propensity.batch_workers = 0;
SELECT user_id, round(score::numeric, 6), features FROM propensity.score_all('2026-03-01')
 WHERE user_id IN ('spec', 'u2') ORDER BY 1;
SET LOCAL propensity.batch_workers = 1;
SELECT user_id, round(score::numeric, 6), features FROM propensity.score_all('2026-03-01')
 WHERE user_id IN ('spec', 'u2') ORDER BY 1;
SET LOCAL propensity.batch_fast_scan = off;
SELECT user_id, round(score::numeric, 6), features FROM propensity.score_all('2026-03-01')
 WHERE user_id IN ('spec', 'u2') ORDER BY 1;
ROLLBACK;
SELECT user_id, round(score::numeric, 6), features FROM propensity.score_all('2026-03-01')
 WHERE user_id IN ('spec', 'u2') ORDER BY 1;
