-- Attribution benchmark queries (run by test/bench/attribution.sh on the
-- bench database).  Each prints its time; counts by kind are compared.
\set QUIET on
SET timezone = 'UTC';
SET jit = off;
\timing on
\i :bench_dir/attribution_plain.sql
\echo '-- (g) attribute_all(): the attribute() aggregate with GROUP BY key'
SELECT kind, count(*) FROM propensity.attribute_all() GROUP BY 1 ORDER BY 1;
-- the C scan holds the conversions and the impressions and clicks they can
-- use: about 210 MB for the 1.25M such events here
SET propensity.batch_memory = :'batch_memory';
\echo '-- (c) attribute_batch(): the C scan; run three times, the first warms the memory'
SELECT kind, count(*) FROM propensity.attribute_batch() GROUP BY 1 ORDER BY 1;
SELECT kind, count(*) FROM propensity.attribute_batch() GROUP BY 1 ORDER BY 1;
SELECT kind, count(*) FROM propensity.attribute_batch() GROUP BY 1 ORDER BY 1;
RESET propensity.batch_memory;
\echo '-- (c256) attribute_batch() with the default propensity.batch_memory (256MB)'
SELECT kind, count(*) FROM propensity.attribute_batch() GROUP BY 1 ORDER BY 1;
\echo '-- (p) again, after the others: the page cache is as warm for it as for them'
\i :bench_dir/attribution_plain.sql
SET propensity.batch_memory = :'batch_memory';
\echo '-- (b) attribution_backfill(): the C scan writing changelog, current and totals'
SELECT * FROM propensity.attribution_backfill();
\echo '-- (pw) plain SQL writing the same rows (current and changelog), the baseline of (b)'
BEGIN;
TRUNCATE propensity.attribution_changelog, propensity.attribution_current;
\i :bench_dir/attribution_plain_write.sql
ROLLBACK;
\timing off
SELECT kind, count(*) FROM propensity.attribution_current GROUP BY 1 ORDER BY 1;
SELECT * FROM propensity.attribution_engine_status();
