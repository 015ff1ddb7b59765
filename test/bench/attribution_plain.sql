-- The analyst's plain-SQL query for docs/computing.md section 5, counted by
-- kind: the shared oracle test/reference/attribution_rules.sql
-- (test/bench/attribution.sql runs it).
\echo '-- (p) plain SQL: the analyst''s query for docs/computing.md section 5, counted by kind'
\timing off
\ir ../reference/attribution_rules.sql
\timing on
SELECT kind, count(*) FROM attribution_reference GROUP BY 1 ORDER BY 1;
