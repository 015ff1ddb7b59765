-- propensity 0.6.0 -> 0.7.0: batch attribution by a C scan of the stored
-- events (issue 4): attribute_batch(), and attribution_backfill() on top of
-- it instead of replaying the streaming engine in event-time order.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.7.0'" to load this file. \quit

CREATE FUNCTION @extschema@.attribute_batch(skip_late boolean DEFAULT true)
RETURNS TABLE (user_id text, advertiser_id bigint, conversion_event_id text,
               conversion_time timestamptz, kind text, campaign_id bigint,
               impression_event_id text)
AS 'MODULE_PATHNAME', 'propensity_attribute_batch'
LANGUAGE C STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
ROWS 100000;
COMMENT ON FUNCTION @extschema@.attribute_batch(boolean) IS
    'Credit of every stored conversion by SPEC section 5, from one scan of the events (late ones left out unless skip_late is false); memory bounded by propensity.batch_memory';

COMMENT ON FUNCTION @extschema@.attribution_backfill() IS
    'Recomputes the changelog (one +1 per conversion), current attribution and totals from the stored events, late ones excluded: the state streaming reaches';
