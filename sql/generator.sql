-- The event generator: deterministic for a seed, exact size, arrival order,
-- the relations between events, and the out-of-order fraction.
SET timezone = 'UTC';

CREATE TEMP TABLE g AS
SELECT g.* FROM propensity.generate_events(5, 20000, 1000, '2026-06-01', '10 days')
    WITH ORDINALITY AS g(event_time, user_id, event_type, event_id, advertiser_id, campaign_id,
                         auction_id, pixel_id, publisher, creative, placement, product,
                         quantity, revenue, arrival_time, n);

-- exact size, unique ids
SELECT count(*), count(DISTINCT event_id) AS ids FROM g;

-- the same seed gives the same stream; another seed another
SELECT (SELECT md5(string_agg(g::text, '|' ORDER BY n)) FROM g) =
       (SELECT md5(string_agg(x::text, '|' ORDER BY x.ordinality))
          FROM propensity.generate_events(5, 20000, 1000, '2026-06-01', '10 days')
               WITH ORDINALITY AS x) AS same_seed_same_stream;
SELECT (SELECT md5(string_agg(event_id || user_id || event_time, '|' ORDER BY n)) FROM g) <>
       (SELECT md5(string_agg(event_id || user_id || event_time, '|' ORDER BY n))
          FROM propensity.generate_events(6, 20000, 1000, '2026-06-01', '10 days')
               WITH ORDINALITY AS x(event_time, user_id, event_type, event_id, a, b, c, d, e, f, h, i, j, k, l, n))
       AS other_seed_other_stream;

-- the mix of the original producers: about 72% IM, 11% CL, 12% PS, 5% CN
SELECT event_type, round(count(*) / 20000.0, 2) BETWEEN lo AND hi AS share_ok
  FROM g JOIN (VALUES ('IM', 0.65, 0.78), ('CL', 0.07, 0.15), ('PS', 0.08, 0.16), ('CN', 0.03, 0.08))
       AS mix(t, lo, hi) ON g.event_type = mix.t
 GROUP BY event_type, lo, hi ORDER BY event_type;

-- millisecond precision, within the stream's span, users in range
SELECT count(*) FILTER (WHERE date_trunc('milliseconds', event_time) <> event_time) AS sub_ms,
       min(event_time) >= '2026-06-01' AS starts_at_start,
       max(event_time) < timestamptz '2026-06-01' + interval '40 days' AS ends_in_time,
       count(DISTINCT user_id) <= 1000 AS users_in_range
  FROM g;

-- in order of arrival, and with no late delivery arrival is event time
SELECT count(*) FILTER (WHERE arrival_time < prev) AS arrival_inversions,
       count(*) FILTER (WHERE arrival_time <> event_time) AS late
  FROM (SELECT arrival_time, event_time, lag(arrival_time) OVER (ORDER BY n) AS prev FROM g) s;

-- every click has an earlier impression of the same user, auction and campaign
SELECT count(*) AS orphan_clicks
  FROM g c
 WHERE c.event_type = 'CL'
   AND NOT EXISTS (SELECT 1 FROM g i
                    WHERE i.event_type = 'IM' AND i.user_id = c.user_id
                      AND i.auction_id = c.auction_id AND i.campaign_id = c.campaign_id
                      AND i.event_time <= c.event_time);

-- conversions carry a pixel, quantity and revenue and no campaign; most fire
-- the pixel of an earlier impression of the same user and advertiser
SELECT count(*) FILTER (WHERE pixel_id IS NULL OR quantity IS NULL OR revenue IS NULL
                           OR campaign_id IS NOT NULL) AS malformed_conversions,
       avg((EXISTS (SELECT 1 FROM g i
                     WHERE i.event_type = 'IM' AND i.user_id = c.user_id
                       AND i.advertiser_id = c.advertiser_id AND i.pixel_id = c.pixel_id
                       AND i.event_time < c.event_time))::int) > 0.75 AS mostly_attributable
  FROM g c WHERE c.event_type = 'CN';

-- paid search has a campaign and no auction or pixel
SELECT count(*) FILTER (WHERE campaign_id IS NULL OR auction_id IS NOT NULL OR pixel_id IS NOT NULL)
       AS malformed_paid_search
  FROM g WHERE event_type = 'PS';

-- out of order: about the requested fraction arrives late, by at most max_delay,
-- and the output stays in arrival order while event times go back
SELECT round(avg((arrival_time > event_time)::int), 1) AS late_fraction,
       max(arrival_time - event_time) <= interval '2 hours 1 second' AS delays_bounded,
       count(*) FILTER (WHERE arrival_time < prev_arrival) AS arrival_inversions,
       count(*) FILTER (WHERE event_time < max_time_before) > 1000 AS event_time_goes_back
  FROM (SELECT *, lag(arrival_time) OVER (ORDER BY n) AS prev_arrival,
               max(event_time) OVER (ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_time_before
          FROM propensity.generate_events(5, 20000, 1000, '2026-06-01', '10 days', 0.2, '2 hours')
               WITH ORDINALITY AS x(event_time, user_id, event_type, event_id, a, b, c, d, e, f, h, i, j, k, arrival_time, n)) s;

-- the same events, only delivered in another order
SELECT (SELECT md5(string_agg(event_id || event_time, '|' ORDER BY event_id)) FROM g) =
       (SELECT md5(string_agg(event_id || event_time, '|' ORDER BY event_id))
          FROM propensity.generate_events(5, 20000, 1000, '2026-06-01', '10 days', 0.2, '2 hours'))
       AS late_delivery_same_events;
