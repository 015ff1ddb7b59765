-- Features (docs/computing.md section 2): window counts and decayed counts as of a time.
CREATE EXTENSION propensity;
SET timezone = 'UTC';

CREATE TABLE ev (user_id text, event_type text, event_time timestamptz);

-- "edges", as of 2026-03-01 00:00 with a 7-day window:
-- an IM exactly at t - 7 days is out, one a millisecond later is in,
-- one exactly at t is in, one a millisecond after t is out.
INSERT INTO ev VALUES
    ('edges', 'IM', '2026-02-22 00:00:00+00'),
    ('edges', 'IM', '2026-02-22 00:00:00.001+00'),
    ('edges', 'IM', '2026-03-01 00:00:00+00'),
    ('edges', 'IM', '2026-03-01 00:00:00.001+00'),
    ('edges', 'CL', '2026-02-28 12:00:00+00'),
    ('edges', 'CN', '2026-03-02 00:00:00+00');

SELECT propensity.window_counts(event_type, event_time, '2026-03-01', '7 days')
  FROM ev WHERE user_id = 'edges';
-- (2,1,0,0): two IM in (t - 7 days, t], the CL, no PS, the CN is in the future

-- a wider window takes the edge event in; the future events stay out
SELECT propensity.window_counts(event_type, event_time, '2026-03-01', '8 days')
  FROM ev WHERE user_id = 'edges';

-- as of 2026-03-02 the window is (02-23 00:00, 03-02 00:00]: both 02-22 IMs are out,
-- both 03-01 IMs and the CL are in, and the CN exactly at t is in: (2,1,0,1)
SELECT propensity.window_counts(event_type, event_time, '2026-03-02', '7 days')
  FROM ev WHERE user_id = 'edges';

-- decayed counts, half-life one day, as of 2026-03-01:
-- IM at t weighs 1, at t - 1 day 1/2, at t - 2 days 1/4, in the future 0: 1.75
-- CL at t - 3 days weighs 1/8
CREATE TABLE dv (event_type text, event_time timestamptz);
INSERT INTO dv VALUES
    ('IM', '2026-03-01 00:00+00'),
    ('IM', '2026-02-28 00:00+00'),
    ('IM', '2026-02-27 00:00+00'),
    ('IM', '2026-03-05 00:00+00'),
    ('CL', '2026-02-26 00:00+00');
SELECT propensity.decayed_counts(event_type, event_time, '2026-03-01', '1 day') FROM dv;

-- one half-life later, with no new events in between, every decayed count halves
SELECT abs(d0.im / 2 - d1.im) < 1e-15 AND abs(d0.cl / 2 - d1.cl) < 1e-15 AND d1.im > 0
       AS halves_after_one_half_life
  FROM (SELECT (propensity.decayed_counts(event_type, event_time, '2026-03-01', '36 hours')).*
          FROM dv WHERE event_time <= '2026-03-01') d0,
       (SELECT (propensity.decayed_counts(event_type, event_time, '2026-03-02 12:00', '36 hours')).*
          FROM dv WHERE event_time <= '2026-03-01') d1;

-- the decayed count equals the formula of docs/computing.md section 2 written in SQL
SELECT abs((propensity.decayed_counts(event_type, event_time, '2026-03-03 07:00', '5 hours')).im -
           (SELECT sum(power(2, -extract(epoch FROM '2026-03-03 07:00'::timestamptz - event_time) / (5 * 3600)))
              FROM dv WHERE event_type = 'IM' AND event_time <= '2026-03-03 07:00')) < 1e-12 AS matches_formula
  FROM dv;

-- no rows: zero counts, not NULL
SELECT propensity.window_counts(event_type, event_time, '2026-03-01', '7 days') FROM ev WHERE false;
SELECT propensity.decayed_counts(event_type, event_time, '2026-03-01', '7 days') FROM ev WHERE false;

-- the fields read by name, per user
SELECT user_id, (propensity.window_counts(event_type, event_time, '2026-03-01', '7 days')).im
  FROM ev GROUP BY user_id;
