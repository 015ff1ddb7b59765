-- propensity 0.8.0 -> 0.9.0: the SQL of the current version kept in one
-- script (sql/propensity.sql), from which the install script is built;
-- what the product computes documented in the repository
-- (docs/computing.md), which the comments below now cite.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.9.0'" to load this file. \quit

COMMENT ON TABLE @extschema@.advertiser_settings IS
    'Per-advertiser attribution windows; an advertiser without a row gets the defaults of docs/computing.md section 5 (30 days each)';
COMMENT ON AGGREGATE @extschema@.attribute(text, text, timestamptz, bigint, text, bigint, interval, interval, interval) IS
    'Credits of the conversions among one (user, advertiser) key''s events, by the rules of docs/computing.md section 5';
COMMENT ON FUNCTION @extschema@.attribute_all() IS
    'Batch evaluation of docs/computing.md section 5 over every event: one row per conversion with its credit';
COMMENT ON FUNCTION @extschema@.attribute_batch(boolean) IS
    'Credit of every stored conversion by docs/computing.md section 5, from one scan of the events (late ones left out unless skip_late is false); memory bounded by propensity.batch_memory';
