-- The post-click / post-view rules of docs/computing.md section 5 in plain
-- SQL, written from the rules and independent of the C engine: the oracle
-- the regression tests compare the engine with, and the benchmarks' plain-SQL
-- baseline.  One row per conversion with an advertiser: its kind, and the
-- campaign and impression credited; advertiser_settings honoured (30 days
-- each without a row, both windows capped by the rolling window).
CREATE OR REPLACE TEMP VIEW attribution_reference AS
WITH cn AS (
    SELECT e.*,
           least(coalesce(s.pc_window, '30 days'), coalesce(s.rolling_window, '30 days')) AS pcw,
           least(coalesce(s.pv_window, '30 days'), coalesce(s.rolling_window, '30 days')) AS pvw
      FROM propensity.events e LEFT JOIN propensity.advertiser_settings s USING (advertiser_id)
     WHERE e.event_type = 'CN' AND e.advertiser_id IS NOT NULL),
candidates AS (
    SELECT e.event_id AS conv, i.event_id AS imp, i.event_time AS imp_time,
           i.campaign_id, i.auction_id, e.user_id, e.advertiser_id, e.event_time AS conv_time,
           e.pcw, e.pvw
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
     WHERE k.conv_time - k.imp_time <= k.pcw
     ORDER BY k.conv, c.event_time DESC, k.imp_time DESC, k.imp COLLATE "C"),
pv AS (
    SELECT DISTINCT ON (k.conv) k.conv, k.campaign_id, k.imp
      FROM candidates k
     WHERE k.conv_time - k.imp_time <= k.pvw
     ORDER BY k.conv, k.imp_time DESC, k.imp COLLATE "C")
SELECT e.event_id AS conv, e.event_time AS conv_time, e.user_id, e.advertiser_id,
       CASE WHEN pc.conv IS NOT NULL THEN 'PC' WHEN pv.conv IS NOT NULL THEN 'PV' ELSE 'NONE' END AS kind,
       coalesce(pc.campaign_id, pv.campaign_id) AS campaign_id,
       coalesce(pc.imp, pv.imp) AS imp
  FROM cn e LEFT JOIN pc ON pc.conv = e.event_id LEFT JOIN pv ON pv.conv = e.event_id;
