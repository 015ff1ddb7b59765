-- Propensity over time (docs/computing.md section 4; issue 5, first part): the
-- event-time score history kept by ingest() and the worker, corrected when
-- events arrive out of order, checked by hand and as a property over random
-- arrival orders, batch boundaries and redeliveries.
-- It runs on the 0.5.0 installation the fitting test left.
SELECT extversion FROM pg_extension WHERE extname = 'propensity';
SET timezone = 'UTC';

-- Model h: intercept -1; clicks = N(CL, 1 day) as is, coefficient 1;
-- recent impressions = D(IM, half-life 1 hour), coefficient 0.5.
INSERT INTO propensity.models (name, intercept, terms) VALUES ('h', -1, ARRAY[
    ROW('clicks', 'window_count', 'CL', interval '1 day', 'identity', 1),
    ROW('recent_impressions', 'decayed_count', 'IM', interval '1 hour', 'identity', 0.5)
]::propensity.model_term[]);
-- Built at once from the stored events (the fitting test's users a, b, c and d:
-- 3 + 1 + 2 + 1 distinct event times).
SELECT propensity.track_history('h') AS points_built;

CREATE FUNCTION ev(id text, usr text, typ text, t timestamptz) RETURNS propensity.events
LANGUAGE sql AS $$ SELECT ROW(t, usr, typ, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events $$;

-- By hand, user u:
--  IM 10:00 -> point 10:00: z = -1 + 0.5 * 1 = -0.5, score 1/(1 + e^0.5) = 0.377541
--  CL 12:00 -> point 12:00: clicks 1, IM decayed 2^-2 = 0.25:
--              z = -1 + 1 + 0.125 = 0.125, score 0.531209
--  IM 11:00 arrives late -> new point 11:00: IM 1 + 2^-1 = 1.5, z = -0.25, score 0.437823;
--              point 12:00 corrected: IM 2^-2 + 2^-1 = 0.75, z = 0.375, score 0.592667;
--              point 10:00 unchanged (the late event is after it).
SELECT inserted FROM propensity.ingest(ARRAY[ev('u1', 'u', 'IM', '2026-03-01 10:00')]);
SELECT inserted FROM propensity.ingest(ARRAY[ev('u2', 'u', 'CL', '2026-03-01 12:00')]);
SELECT inserted FROM propensity.ingest(ARRAY[ev('u3', 'u', 'IM', '2026-03-01 11:00')]);
SELECT event_time, round(score::numeric, 6) AS score, model_id = propensity.model_id('h') AS by_h
  FROM propensity.score_history WHERE user_id = 'u' ORDER BY event_time;
SELECT seq, event_time, round(old_score::numeric, 6) AS old_score, round(new_score::numeric, 6) AS new_score
  FROM propensity.score_history_changelog WHERE user_id = 'u' ORDER BY seq;
-- A redelivered event changes nothing, and writes nothing.
SELECT inserted, duplicates FROM propensity.ingest(ARRAY[ev('u3', 'u', 'IM', '2026-03-01 11:00')]);
SELECT count(*) AS changelog_rows FROM propensity.score_history_changelog WHERE user_id = 'u';
-- Two events at the same time make one point.
SELECT inserted FROM propensity.ingest(ARRAY[ev('v1', 'v', 'CL', '2026-03-01 09:00'),
                                             ev('v2', 'v', 'IM', '2026-03-01 09:00')]);
-- z = -1 + 1 + 0.5 = 0.5: score 0.622459
SELECT event_time, round(score::numeric, 6) AS score FROM propensity.score_history WHERE user_id = 'v';

-- ---------------------------------------------------------------------------
-- Property: 8 trials, each a generated stream of 300 events for 20 users over
-- 5 days, delivered in a random order (all of it shuffled, not only the late
-- tenth) in random batches of 1 to 40 through ingest(), a fifth of the
-- batches followed by a redelivery of the last 30 events.  Afterwards the
-- history must equal (a) the batch recomputation history_points() exactly,
-- (b) score_events() of each user's events up to each point (an independent
-- path, the aggregate) to 1e-12, with one point per distinct (user, time),
-- and (c) the changelog's last value of every point.
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    evs propensity.events[];
    pos int;
    sz int;
BEGIN
    FOR trial IN 1..8 LOOP
        PERFORM setseed(trial / 10.0);
        SELECT array_agg(e ORDER BY random()) INTO evs
          FROM (SELECT ROW(g.event_time, trial || ':' || g.user_id, g.event_type, trial || ':' || g.event_id,
                           g.advertiser_id, g.campaign_id, g.auction_id, g.pixel_id, g.publisher, g.creative,
                           g.placement, g.product, g.quantity, g.revenue)::propensity.events AS e
                  FROM propensity.generate_events(trial, 300, 20, '2026-03-02', '5 days', 0.1, '6 hours') g) s;
        pos := 1;
        WHILE pos <= cardinality(evs) LOOP
            sz := 1 + floor(random() * 40)::int;
            PERFORM propensity.ingest(evs[pos:pos + sz - 1]);
            IF random() < 0.2 THEN
                PERFORM propensity.ingest(evs[greatest(1, pos + sz - 30):pos + sz - 1]);
            END IF;
            pos := pos + sz;
        END LOOP;
    END LOOP;
END
$$;
SELECT count(*) AS events, count(DISTINCT (user_id, event_time)) AS distinct_user_times
  FROM propensity.events WHERE user_id LIKE '%:%';
SELECT count(*) AS points FROM propensity.score_history WHERE user_id LIKE '%:%';
-- (a)
SELECT count(*) AS differences_from_recomputation
  FROM (SELECT * FROM propensity.score_history WHERE model = 'h') s
  FULL JOIN propensity.history_points(propensity.model_id('h')) p USING (user_id, event_time)
 WHERE s.score IS DISTINCT FROM p.score;
-- (b)
SELECT max(abs(s.score - (SELECT propensity.score_events(e.event_type, e.event_time, s.event_time, 'h')
                            FROM propensity.events e
                           WHERE e.user_id = s.user_id AND e.event_time <= s.event_time))) < 1e-12
       AS equals_score_events
  FROM propensity.score_history s WHERE s.user_id LIKE '%:%';
-- (c) and the stream did need corrections
SELECT count(*) AS points_whose_last_change_differs
  FROM propensity.score_history s
  JOIN LATERAL (SELECT c.new_score FROM propensity.score_history_changelog c
                 WHERE c.model = s.model AND c.user_id = s.user_id AND c.event_time = s.event_time
                 ORDER BY c.seq DESC LIMIT 1) c ON true
 WHERE c.new_score IS DISTINCT FROM s.score;
SELECT count(*) FILTER (WHERE old_score IS NULL) = (SELECT count(*) FROM propensity.score_history WHERE user_id LIKE '%:%')
       AS one_new_point_each,
       count(*) FILTER (WHERE old_score IS NOT NULL) > 100 AS many_corrections
  FROM propensity.score_history_changelog WHERE user_id LIKE '%:%';

-- The worker's path (consume(): COPY, then the history in the same
-- transaction) keeps it the same way: 200 JSON events of 5 users, produced
-- in reverse time order.
-- (DROP EXTENSION leaves the storage of topics behind, and the queue test's
-- topic 1 would collide with this one: remove it first.)
SET client_min_messages = warning;
DROP TABLE IF EXISTS propensity.queue_1_0, propensity.queue_1_1, propensity.queue_1_2;
DROP SEQUENCE IF EXISTS propensity.queue_1_offsets;
RESET client_min_messages;
SELECT propensity.create_topic('t', partitions => 2);
SELECT propensity.subscribe('t');
SELECT count(*) AS produced FROM (
    SELECT propensity.produce('t', 'w' || (i % 5),
           jsonb_build_object('event_id', 'w' || i, 'user_id', 'w' || (i % 5),
                              'event_type', (ARRAY['IM', 'CL', 'PS', 'CN'])[1 + i % 4],
                              'event_time', (extract(epoch FROM timestamptz '2026-04-01' + i * interval '7 minutes') * 1000)::bigint))
      FROM generate_series(200, 1, -1) i) p;
SELECT messages, events, dead_letters FROM propensity.consume('t');
SELECT count(*) AS points,
       count(*) FILTER (WHERE s.score IS DISTINCT FROM p.score) AS differences_from_recomputation
  FROM (SELECT * FROM propensity.score_history WHERE user_id LIKE 'w%') s
  FULL JOIN (SELECT * FROM propensity.history_points(propensity.model_id('h'))
              WHERE user_id LIKE 'w%') p USING (user_id, event_time);

-- A rebuild gives the same history; untracking drops it.
CREATE TEMP TABLE kept AS SELECT * FROM propensity.score_history;
SELECT propensity.history_rebuild('h') = (SELECT count(*) FROM kept) AS same_count;
SELECT count(*) AS differences FROM kept k FULL JOIN propensity.score_history s USING (model, user_id, event_time)
 WHERE k.score IS DISTINCT FROM s.score;
SELECT propensity.untrack_history('h');
SELECT count(*) AS points_left FROM propensity.score_history;

-- Errors
SELECT propensity.history_rebuild('h');
SELECT propensity.track_history('nope');
SELECT * FROM propensity.history_points(NULL);
SELECT * FROM propensity.history_points(1, ARRAY['a'], NULL);
RESET timezone;
