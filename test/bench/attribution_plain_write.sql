-- The plain-SQL baseline of attribution_backfill(): the shared oracle
-- (test/reference/attribution_rules.sql) writing each conversion's credit into
-- attribution_current and its +1 into attribution_changelog
-- (test/bench/attribution.sql runs it inside a rolled-back transaction).
\timing off
\ir ../reference/attribution_rules.sql
\timing on
WITH res AS (
    SELECT conv AS event_id, conv_time AS event_time, user_id, advertiser_id, campaign_id, kind, imp
      FROM attribution_reference),
cur AS (
    INSERT INTO propensity.attribution_current
           (conversion_event_id, conversion_time, user_id, advertiser_id, campaign_id, kind,
            impression_event_id, batch)
    SELECT event_id, event_time, user_id, advertiser_id, campaign_id, kind, imp, 0 FROM res)
INSERT INTO propensity.attribution_changelog
       (batch, conversion_event_id, conversion_time, user_id, advertiser_id, campaign_id, kind,
        impression_event_id, delta)
SELECT 0, event_id, event_time, user_id, advertiser_id, campaign_id, kind, imp, 1 FROM res;
