-- The analyst's plain-SQL query for SPEC section 5, counted by kind
-- (test/bench/attribution.sql runs it).
\echo '-- (p) plain SQL: the analyst''s query for SPEC section 5, counted by kind'
WITH cn AS (
    SELECT * FROM propensity.events WHERE event_type = 'CN' AND advertiser_id IS NOT NULL),
candidates AS (
    SELECT e.event_id AS conv, i.event_id AS imp, i.event_time AS imp_time,
           i.campaign_id, i.auction_id, e.user_id, e.advertiser_id, e.event_time AS conv_time
      FROM cn e
      JOIN propensity.events i
        ON i.user_id = e.user_id AND i.advertiser_id = e.advertiser_id AND i.event_type = 'IM'
       AND i.pixel_id = e.pixel_id AND i.event_time < e.event_time),
pc AS (
    SELECT DISTINCT ON (k.conv) k.conv, k.campaign_id, k.imp
      FROM candidates k
      JOIN propensity.events c
        ON c.user_id = k.user_id AND c.advertiser_id = k.advertiser_id AND c.event_type = 'CL'
       AND c.auction_id = k.auction_id
       AND c.event_time >= k.imp_time AND c.event_time <= k.conv_time
     WHERE k.conv_time - k.imp_time <= interval '30 days'
     ORDER BY k.conv, c.event_time DESC, k.imp_time DESC, k.imp COLLATE "C"),
pv AS (
    SELECT DISTINCT ON (k.conv) k.conv, k.campaign_id, k.imp
      FROM candidates k
     WHERE k.conv_time - k.imp_time <= interval '30 days'
     ORDER BY k.conv, k.imp_time DESC, k.imp COLLATE "C")
SELECT CASE WHEN pc.conv IS NOT NULL THEN 'PC' WHEN pv.conv IS NOT NULL THEN 'PV' ELSE 'NONE' END AS kind,
       count(*)
  FROM cn e LEFT JOIN pc ON pc.conv = e.event_id LEFT JOIN pv ON pv.conv = e.event_id
 GROUP BY 1 ORDER BY 1;
