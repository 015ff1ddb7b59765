-- Benchmark body: run by test/bench/history.sh against a loaded database.
\set ON_ERROR_STOP on
\pset footer off
SET jit = off;

-- one stream in arrival order: the first bench.events messages stored, the
-- rest cut into batches of new events
\echo 'generating and loading...'
CREATE UNLOGGED TABLE bench_stream AS
SELECT g.*
  FROM propensity.generate_events(42, current_setting('bench.events')::bigint
                                      + current_setting('bench.batches')::bigint * current_setting('bench.batch')::bigint,
                                  current_setting('bench.users')::int, '2026-10-01', '31 days', 0.1, '1 day')
       WITH ORDINALITY AS g(event_time, user_id, event_type, event_id, advertiser_id, campaign_id, auction_id,
                            pixel_id, publisher, creative, placement, product, quantity, revenue, arrival_time, n);
-- partitions for the stream's days, in propensity.partition_interval
SELECT propensity.ensure_partitions(min(event_time), max(event_time)) AS partitions,
       current_setting('propensity.partition_interval') AS partition_interval FROM bench_stream;
INSERT INTO propensity.events
SELECT event_time, user_id, event_type, event_id, advertiser_id, campaign_id, auction_id,
       pixel_id, publisher, creative, placement, product, quantity, revenue
  FROM bench_stream WHERE n <= current_setting('bench.events')::bigint;
CREATE TABLE bench_new AS
SELECT (n - current_setting('bench.events')::bigint - 1) / current_setting('bench.batch')::int + 1 AS batch, *
  FROM bench_stream WHERE n > current_setting('bench.events')::bigint;
DROP TABLE bench_stream;
VACUUM ANALYZE propensity.events;
CHECKPOINT;

\echo '(1) the seed model''s whole event-time history from the stored events'
\timing on
SELECT propensity.track_history('seed') AS points;
\timing off
VACUUM ANALYZE propensity.score_history;
SELECT count(*) AS events, count(DISTINCT user_id) AS users FROM propensity.events;

-- (2) the new events, in arrival order, cut into batches
CREATE INDEX ON bench_new (batch);
ANALYZE bench_new;
SELECT count(*) AS new_events,
       count(*) FILTER (WHERE event_time < (SELECT max(event_time) FROM propensity.events e WHERE e.user_id = b.user_id))
           AS before_their_users_last_stored_event,
       count(DISTINCT batch) AS batches FROM bench_new b;

CREATE TEMP TABLE batch_samples (batch int, variant text, ms double precision, points_written bigint,
                                 users int, points_recomputed bigint);
DO $$
DECLARE
    mid integer := propensity.model_id('seed');
    us text[];
    ts timestamptz[];
    t0 timestamptz;
    ms double precision;
    written bigint;
    recomputed bigint;
    variant text;
    variants text[] := ARRAY['incremental', 'whole users, diff', 'naive rescoring'];
    infs timestamptz[];
BEGIN
    FOR b IN 1..current_setting('bench.batches')::int LOOP
        SELECT array_agg(user_id), array_agg(event_time) INTO us, ts FROM bench_new WHERE batch = b;
        infs := array_fill('-infinity'::timestamptz, ARRAY[cardinality(us)]);
        -- each batch on the same stored state, the variants in turn first
        FOR k IN 0..2 LOOP
            variant := variants[1 + (b + k) % 3];
            BEGIN
                INSERT INTO propensity.events
                SELECT event_time, user_id, event_type, event_id, advertiser_id, campaign_id, auction_id,
                       pixel_id, publisher, creative, placement, product, quantity, revenue
                  FROM bench_new WHERE batch = b;
                t0 := clock_timestamp();
                IF variant = 'incremental' THEN
                    written := propensity.history_refresh(us, ts);
                ELSIF variant = 'whole users, diff' THEN
                    written := propensity.history_refresh(us, infs);
                ELSE
                    DELETE FROM propensity.score_history WHERE model = 'seed' AND user_id = ANY (us);
                    INSERT INTO propensity.score_history (model, user_id, event_time, score, model_id)
                    SELECT 'seed', p.user_id, p.event_time, p.score, mid
                      FROM propensity.history_points(mid, us, infs) p;
                    GET DIAGNOSTICS written = ROW_COUNT;
                END IF;
                ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
                SELECT count(*) INTO recomputed
                  FROM propensity.history_points(mid, us, CASE WHEN variant = 'incremental' THEN ts ELSE infs END);
                RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'roll back';
            EXCEPTION WHEN raise_exception THEN
                NULL;
            END;
            INSERT INTO batch_samples VALUES (b, variant, ms, written, (SELECT count(DISTINCT u) FROM unnest(us) u), recomputed);
        END LOOP;
    END LOOP;
END
$$;

\echo '(2) per batch of new events, on the same stored state (medians over batches)'
WITH m AS (
    SELECT variant, count(*) AS batches, avg(users) AS users, avg(points_recomputed) AS recomputed,
           avg(points_written) AS written, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
      FROM batch_samples GROUP BY variant)
SELECT m.variant, m.batches, round(m.users) AS users_per_batch, round(m.recomputed) AS points_recomputed,
       round(m.written) AS points_written, round(m.ms::numeric, 1) AS median_ms,
       round((m.ms / i.ms)::numeric, 2) AS over_incremental
  FROM m CROSS JOIN (SELECT ms FROM m WHERE variant = 'incremental') i ORDER BY m.ms;

\if :{?skip_rescore}
\quit
\endif

-- (3) rescoring every user as of the stream's end (its "now"), seed model
\set as_of '''2026-11-01 00:00:00+00'''
CREATE TABLE plain_snapshots (LIKE propensity.score_snapshots INCLUDING ALL);
SELECT format($q$SELECT e.user_id, 1 / (1 + exp(-(%s
         + %s * ln(1 + count(*) FILTER (WHERE e.event_type = 'IM' AND e.event_time > %L::timestamptz - interval '30 days'))
         + %s * ln(1 + count(*) FILTER (WHERE e.event_type = 'CL' AND e.event_time > %L::timestamptz - interval '7 days'))
         + %s * ln(1 + count(*) FILTER (WHERE e.event_type = 'PS' AND e.event_time > %L::timestamptz - interval '2 days'))
         + %s * ln(1 + count(*) FILTER (WHERE e.event_type = 'CN' AND e.event_time > %L::timestamptz - interval '365 days'))))) AS score
         FROM propensity.events e WHERE e.event_time <= %L GROUP BY e.user_id$q$,
         m.intercept, (m.terms[1]).coefficient, :as_of, (m.terms[2]).coefficient, :as_of,
         (m.terms[3]).coefficient, :as_of, (m.terms[4]).coefficient, :as_of, :as_of) AS q_plain
  FROM propensity.models m WHERE m.model_id = propensity.model_id('seed') \gset
-- the plain SQL is the seed model: it must agree with current_propensity
SELECT count(*) AS users, max(abs(c.score - p.score)) < 1e-12 AS plain_sql_agrees
  FROM propensity.current_propensity('seed', :as_of) c
  FULL JOIN (:q_plain) p USING (user_id) \gset
\if :plain_sql_agrees
\else
\echo 'current_propensity and plain SQL disagree'
SELECT 1/0;
\endif
SELECT set_config('bench.q_plain', :'q_plain', false) IS NOT NULL AS set,
       set_config('bench.as_of', :as_of, false) IS NOT NULL AS set2;
CREATE TEMP TABLE rescore_samples (label text, jit boolean, ms double precision, users bigint);
DO $$
DECLARE
    t0 timestamptz;
    n bigint;
    as_of timestamptz := current_setting('bench.as_of')::timestamptz;
    q text := current_setting('bench.q_plain');
BEGIN
    FOR rep IN 0..current_setting('bench.reps')::int LOOP
        FOR j IN 0..1 LOOP
            PERFORM set_config('jit', CASE WHEN j = 1 THEN 'on' ELSE 'off' END, false);
            t0 := clock_timestamp();
            n := propensity.rescore('seed', as_of, keep => NULL);
            IF rep > 0 THEN INSERT INTO rescore_samples VALUES ('rescore() snapshot', j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000, n); END IF;
            t0 := clock_timestamp();
            DELETE FROM plain_snapshots;
            EXECUTE format('INSERT INTO plain_snapshots (model, as_of, user_id, score, model_id) SELECT %L, %L, p.user_id, p.score, %s FROM (%s) p',
                           'seed', as_of, propensity.model_id('seed'), q);
            GET DIAGNOSTICS n = ROW_COUNT;
            IF rep > 0 THEN INSERT INTO rescore_samples VALUES ('plain SQL snapshot', j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000, n); END IF;
            t0 := clock_timestamp();
            SELECT count(*) INTO n FROM propensity.current_propensity('seed', as_of);
            IF rep > 0 THEN INSERT INTO rescore_samples VALUES ('current_propensity()', j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000, n); END IF;
            t0 := clock_timestamp();
            EXECUTE format('SELECT count(*) FROM (%s) p', q) INTO n;
            IF rep > 0 THEN INSERT INTO rescore_samples VALUES ('plain SQL scores', j = 1, extract(epoch FROM clock_timestamp() - t0) * 1000, n); END IF;
        END LOOP;
    END LOOP;
END
$$;
RESET jit;
\echo '(3) rescoring every user as of the stream''s end (medians of reps)'
WITH m AS (SELECT label, jit, max(users) AS users, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM rescore_samples GROUP BY 1, 2)
SELECT m.label, m.jit, m.users, round((m.ms / 1000)::numeric, 2) AS s, round(m.users / (m.ms / 1000)) AS users_per_s,
       round((p.ms / m.ms)::numeric, 2) AS plain_sql_over_this
  FROM m JOIN m p ON p.jit = m.jit
   AND p.label = CASE WHEN m.label LIKE '%snapshot' THEN 'plain SQL snapshot' ELSE 'plain SQL scores' END
 ORDER BY m.jit, m.label;
