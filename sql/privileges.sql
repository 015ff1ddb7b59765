-- Least privilege.  The tables the pipeline derives from the events are
-- written only through the product's functions, which run as
-- propensity_worker; a writer inserts events and produces messages and
-- cannot forge a total, a score or the watermark; an admin consumes and
-- replays with the worker's rights; the ingest worker runs as
-- propensity_worker whoever starts it, and never as a superuser.
SET timezone = 'UTC';
CREATE ROLE priv_writer IN ROLE propensity_writer;
CREATE ROLE priv_admin IN ROLE propensity_admin;
CREATE ROLE priv_reader IN ROLE propensity_reader;

-- the worker's role: no superuser or other powers; LOGIN, which PostgreSQL
-- 15 needs for a background worker's connection; a writer besides its own
-- rights on the derived tables
SELECT rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication,
       pg_has_role('propensity_worker', 'propensity_writer', 'MEMBER') AS writer,
       pg_has_role('propensity_worker', 'propensity_admin', 'MEMBER') AS admin
  FROM pg_roles WHERE rolname = 'propensity_worker';

-- every SECURITY DEFINER function of the extension pins search_path
SELECT p.oid::regprocedure AS unpinned FROM pg_proc p
 WHERE p.pronamespace = 'propensity'::regnamespace AND p.prosecdef
   AND NOT coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp'];
-- the functions that write the derived tables run as propensity_worker
SELECT p.oid::regprocedure AS runs_as_worker FROM pg_proc p
 WHERE p.pronamespace = 'propensity'::regnamespace AND p.prosecdef
   AND pg_get_userbyid(p.proowner) = 'propensity_worker' ORDER BY p.oid::regprocedure::text COLLATE "C";
-- and only it may write them directly
SELECT c.relname, r.rolname, string_agg(priv, ',' ORDER BY priv) AS may
  FROM pg_class c
 CROSS JOIN (VALUES ('propensity_reader'), ('propensity_writer'), ('propensity_admin'),
                    ('propensity_worker')) r(rolname)
 CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) priv
 WHERE c.relnamespace = 'propensity'::regnamespace
   AND c.relname IN ('attribution_state', 'attribution_changelog', 'attribution_current',
                     'attribution_totals', 'attribution_late', 'score_history',
                     'score_history_changelog', 'history_models', 'score_snapshots', 'snapshot_runs')
   AND has_table_privilege(r.rolname, c.oid, priv)
 GROUP BY 1, 2 ORDER BY 1, 2;

-- A writer ingests: the engine writes the derived rows as propensity_worker
SET ROLE priv_writer;
SELECT inserted, deltas FROM propensity.ingest(ARRAY[
    ROW('2026-11-25 10:00+00', 'pw', 'IM', 'pw-i', 31, 310, 'pw-a', 3, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events,
    ROW('2026-11-25 11:00+00', 'pw', 'CN', 'pw-c', 31, NULL, NULL, 3, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events]);
-- but cannot forge what it derives: each is refused (42501)
INSERT INTO propensity.attribution_totals (advertiser_id, campaign_id, pc) VALUES (31, 310, 1000000);
\echo :LAST_ERROR_SQLSTATE
UPDATE propensity.attribution_totals SET pc = pc + 1000 WHERE advertiser_id = 31;
\echo :LAST_ERROR_SQLSTATE
UPDATE propensity.attribution_state SET max_event_time = 'infinity';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.attribution_changelog
       (batch, conversion_event_id, conversion_time, user_id, advertiser_id, kind, delta)
VALUES (0, 'pw-c', '2026-11-25 11:00+00', 'pw', 31, 'PC', 1);
\echo :LAST_ERROR_SQLSTATE
UPDATE propensity.attribution_current SET kind = 'NONE', campaign_id = NULL WHERE advertiser_id = 31;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.attribution_late (event_id, event_time, user_id, event_type, watermark, batch)
VALUES ('pw-i', '2026-11-25 10:00+00', 'pw', 'IM', now(), 0);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.score_history (model, user_id, event_time, score, model_id)
VALUES ('seed', 'pw', '2026-11-25 10:00+00', 0.99, 1);
\echo :LAST_ERROR_SQLSTATE
UPDATE propensity.history_models SET model = model;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM propensity.score_history_changelog;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE propensity.attribution_totals;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT campaign_id, impressions, pc, pv FROM propensity.attribution_totals WHERE advertiser_id = 31 ORDER BY 1;

-- An admin consumes by hand (it once met "permission denied" on
-- subscriptions) and still cannot write a derived table
SET ROLE priv_admin;
SELECT propensity.create_topic('priv', 2);
SELECT propensity.subscribe('priv', 'privg');
RESET ROLE;
SET ROLE priv_writer;
SELECT propensity.produce('priv', 'pw', '{"event_id": "pw-2", "user_id": "pw", "event_type": "CN",
    "event_time": "2026-11-25T12:00:00Z", "advertiser_id": 31, "pixel_id": 3}'::jsonb);
RESET ROLE;
SET ROLE priv_admin;
SELECT * FROM propensity.consume('priv', 'privg');
UPDATE propensity.attribution_totals SET pc = 0;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM propensity.score_history;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT campaign_id, pv FROM propensity.attribution_totals WHERE advertiser_id = 31 ORDER BY 1;

-- The worker runs as propensity_worker, also when an admin starts it
SET ROLE priv_admin;
SELECT propensity.worker_start() IS NOT NULL AS started;
RESET ROLE;
SELECT usename FROM pg_stat_activity WHERE pid = propensity.worker_pid();
CREATE FUNCTION wait_for_lag_zero() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..1800 LOOP
        IF (SELECT sum(lag) FROM propensity.queue_lag('priv', 'privg')) = 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END $$;
SET ROLE priv_writer;
SELECT propensity.produce('priv', 'pw', '{"event_id": "pw-3", "user_id": "pw", "event_type": "PS",
    "event_time": "2026-11-25T13:00:00Z"}'::jsonb);
RESET ROLE;
SELECT wait_for_lag_zero() AS drained;
SELECT count(*) AS stored FROM propensity.events WHERE event_id = 'pw-3';
-- an error it cannot even record on the subscription (here the worker has
-- lost its right to update it) does not make it exit and restart: it goes
-- on, and once the right is back the message goes through
REVOKE UPDATE ON propensity.subscriptions FROM propensity_worker;
SELECT propensity.worker_pid() AS worker_pid \gset
SET ROLE priv_writer;
SELECT propensity.produce('priv', 'pw', '{"event_id": "pw-4", "user_id": "pw", "event_type": "PS",
    "event_time": "2026-11-25T14:00:00Z"}'::jsonb);
RESET ROLE;
SELECT pg_sleep(2);
SELECT propensity.worker_pid() = :worker_pid AS same_worker;
GRANT UPDATE ON propensity.subscriptions TO propensity_worker;
SELECT wait_for_lag_zero() AS drained;
SELECT count(*) AS stored FROM propensity.events WHERE event_id = 'pw-4';
SELECT propensity.worker_stop();

-- worker_start() refuses a superuser, a missing role and one that cannot log in
\set VERBOSITY default
SELECT set_config('propensity.worker_role', current_user, false) IS NOT NULL AS superuser_role;
SELECT propensity.worker_start();
\echo :LAST_ERROR_SQLSTATE
SET propensity.worker_role = 'priv_no_such_role';
SELECT propensity.worker_start();
\echo :LAST_ERROR_SQLSTATE
SET propensity.worker_role = 'priv_reader';
SELECT propensity.worker_start();
\echo :LAST_ERROR_SQLSTATE
RESET propensity.worker_role;
SELECT propensity.worker_pid() IS NULL AS none_running;
\set VERBOSITY terse

SELECT propensity.drop_topic('priv');
DROP FUNCTION wait_for_lag_zero();
DROP ROLE priv_writer, priv_admin, priv_reader;
