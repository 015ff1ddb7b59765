-- Hot key: :n events of one (user, advertiser), as in the hot-key case of
-- sql/attribution_stream.sql (impression, conversion, and a click on every
-- other impression, 4 s apart), against plain INSERT of the same rows.
-- (h0) INSERT only; (h) ingest() in batches of :batch, in event order, the
-- clicks late by one batch; (hl) one late click before every conversion,
-- re-evaluating the whole key; (hb) attribute_batch() over the key.
SET timezone = 'UTC';
SELECT propensity.ensure_partitions('2026-11-01', '2026-11-10');
CREATE TABLE hot AS
SELECT row_number() OVER (ORDER BY j, o) AS seq,
       ROW('2026-11-01'::timestamptz + (4 * j + o) * interval '1 second', 'bot', t,
           t || j, 7, CASE WHEN t = 'CN' THEN NULL ELSE 100 + j % 3 END,
           CASE WHEN t = 'CN' THEN NULL ELSE 'a' || j END, CASE WHEN t = 'CL' THEN NULL ELSE 5 END,
           NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events AS e
  FROM generate_series(0, (:n * 2 / 5) - 1) j,
       (VALUES ('IM', 0), ('CN', 1), ('CL', 2)) v(t, o)
 WHERE t <> 'CL' OR j % 2 = 0;
SELECT count(*) AS hot_events FROM hot;
CREATE TABLE plain_copy (LIKE propensity.events);
\timing on
\echo '-- (h0) INSERT of the same rows into a table with the events indexes'
CREATE INDEX ON plain_copy (event_id, event_time);
CREATE INDEX ON plain_copy (user_id, event_time);
INSERT INTO plain_copy SELECT (e).* FROM hot;
\echo '-- (h) ingest(): the key grows batch by batch, each batch re-evaluating its tail'
DO $$
DECLARE b bigint;
BEGIN
    FOR b IN 0 .. (SELECT max(seq) FROM hot) / current_setting('bench.batch')::int LOOP
        PERFORM propensity.ingest(ARRAY(SELECT e FROM hot
                                         WHERE seq > b * current_setting('bench.batch')::int
                                           AND seq <= (b + 1) * current_setting('bench.batch')::int));
    END LOOP;
END $$;
\echo '-- (hl) one late batch: a click before every 100th conversion, re-evaluating the whole key'
SELECT inserted, conversions_evaluated, deltas FROM propensity.ingest(ARRAY(
    SELECT ROW('2026-11-01'::timestamptz + (4 * j) * interval '1 second' + interval '1 ms', 'bot', 'CL',
               'late' || j, 7, 100, 'a' || j, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events
      FROM generate_series(1, (:n * 2 / 5) - 1, 100) j));
\echo '-- (hb) attribute_batch() over the key'
SELECT kind, count(*) FROM propensity.attribute_batch() GROUP BY 1 ORDER BY 1;
\timing off
SELECT * FROM propensity.attribution_engine_status();
