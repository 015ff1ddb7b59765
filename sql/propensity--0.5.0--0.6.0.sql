-- propensity 0.5.0 -> 0.6.0: propensity over time, second part (issue 5):
-- current propensity and its snapshots, dashboard materialized views over
-- the event-time history, model versions installed without a gap, and
-- pg_cron schedules for rescoring and refreshing.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.6.0'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Current propensity (SPEC section 4): every user's score as of now, decay
-- since the user's last event included.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.current_propensity(model text DEFAULT NULL,
                                               as_of timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (user_id text, score double precision, model_id integer)
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 100000
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.user_id, s.score, v.mid
      FROM (SELECT @extschema@.model_id(current_propensity.model) AS mid OFFSET 0) v,  -- (once, not per row)
           LATERAL @extschema@.model_snapshot(current_propensity.as_of, v.mid) s;
END;
COMMENT ON FUNCTION @extschema@.current_propensity(text, timestamptz) IS
    'Every user''s propensity as of now (or as_of) under the latest version of a model, decay since the last event included';

-- statement_timeout also in pg_cron's background workers (see history.c)
CREATE FUNCTION @extschema@.arm_statement_timeout()
RETURNS boolean
AS 'MODULE_PATHNAME', 'propensity_arm_statement_timeout'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.arm_statement_timeout() IS
    'In a background worker (pg_cron with cron.use_background_workers), start the statement_timeout timer that a client backend starts by itself; true when it did';

-- Snapshots of the current propensity, written by rescore() (by hand or on a
-- pg_cron schedule).  A snapshot is identified by (model, as_of): writing it
-- again replaces it, so a repeated run changes nothing.
CREATE TABLE @extschema@.score_snapshots (
    model    text NOT NULL,
    as_of    timestamptz NOT NULL,
    user_id  text NOT NULL,
    score    double precision NOT NULL,
    model_id integer NOT NULL,
    PRIMARY KEY (model, as_of, user_id)
);
COMMENT ON TABLE @extschema@.score_snapshots IS
    'Snapshots of every user''s propensity as of a time, one per rescore() run (model, as_of)';

CREATE TABLE @extschema@.snapshot_runs (
    model       text NOT NULL,
    as_of       timestamptz NOT NULL,
    model_id    integer NOT NULL,
    users       bigint NOT NULL,
    mean_score  double precision,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    PRIMARY KEY (model, as_of)
);
COMMENT ON TABLE @extschema@.snapshot_runs IS
    'One row per snapshot in score_snapshots: the version used, users scored, mean score and the run''s duration';

CREATE FUNCTION @extschema@.rescore(model text DEFAULT NULL,
                                    as_of timestamptz DEFAULT pg_catalog.now(),
                                    keep interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer := @extschema@.model_id(rescore.model);
    mname text;
    started timestamptz := pg_catalog.clock_timestamp();
    n bigint;
    mean double precision;
BEGIN
    IF rescore.as_of IS NULL OR rescore.keep < interval '0' THEN
        RAISE EXCEPTION 'rescore() needs a time and a non-negative retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('as_of = %s, keep = %s', coalesce(rescore.as_of::text, 'NULL'),
                                             coalesce(rescore.keep::text, 'NULL'));
    END IF;
    PERFORM @extschema@.arm_statement_timeout();
    SELECT m.name INTO mname FROM @extschema@.models m WHERE m.model_id = mid;
    -- one run per model at a time (pg_cron never overlaps a job with itself;
    -- this also orders runs by hand and version installs)
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('propensity.rescore'),
                                             pg_catalog.hashtext(mname));
    DELETE FROM @extschema@.score_snapshots s WHERE s.model = mname AND s.as_of = rescore.as_of;
    WITH written AS (
        INSERT INTO @extschema@.score_snapshots (model, as_of, user_id, score, model_id)
        SELECT mname, rescore.as_of, p.user_id, p.score, mid
          FROM @extschema@.model_snapshot(rescore.as_of, mid) p
        RETURNING score)
    SELECT count(*), avg(w.score) INTO n, mean FROM written w;
    INSERT INTO @extschema@.snapshot_runs AS r (model, as_of, model_id, users, mean_score, started_at, finished_at)
    VALUES (mname, rescore.as_of, mid, n, mean, started, pg_catalog.clock_timestamp())
    ON CONFLICT ON CONSTRAINT snapshot_runs_pkey DO UPDATE
       SET model_id = excluded.model_id, users = excluded.users, mean_score = excluded.mean_score,
           started_at = excluded.started_at, finished_at = excluded.finished_at;
    -- retention: snapshots older than keep before this one (NULL: keep all)
    DELETE FROM @extschema@.score_snapshots s WHERE s.model = mname AND s.as_of < rescore.as_of - rescore.keep;
    DELETE FROM @extschema@.snapshot_runs r WHERE r.model = mname AND r.as_of < rescore.as_of - rescore.keep;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.rescore(text, timestamptz, interval) IS
    'Snapshot every user''s propensity as of a time into score_snapshots (replacing a snapshot of the same time), dropping snapshots older than keep (NULL: none); returns the users scored';

CREATE VIEW @extschema@.latest_scores AS
SELECT s.model, s.as_of, s.user_id, s.score, s.model_id
  FROM @extschema@.score_snapshots s
  JOIN (SELECT r.model, max(r.as_of) AS as_of FROM @extschema@.snapshot_runs r GROUP BY r.model) l
    USING (model, as_of);
COMMENT ON VIEW @extschema@.latest_scores IS
    'Each model''s latest snapshot of the current propensity';

-- ---------------------------------------------------------------------------
-- Model versions installed without a gap (issue 5, item 4)
-- ---------------------------------------------------------------------------

-- Recompute a tracked model's whole history under its latest version and
-- write what changed to the changelog (points whose version changes are
-- logged even when the score does not).
CREATE FUNCTION @extschema@.history_switch(model text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mid integer;
    n bigint;
BEGIN
    PERFORM 1 FROM @extschema@.history_models h WHERE h.model = history_switch.model FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the history of model "%" is not kept', history_switch.model
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Start it with SELECT propensity.track_history(''model'').';
    END IF;
    mid := @extschema@.model_id(history_switch.model);
    WITH p AS (SELECT * FROM @extschema@.history_points(mid)),
    diff AS (
        SELECT p.user_id, p.event_time, o.score AS old_score, p.score AS new_score
          FROM p LEFT JOIN @extschema@.score_history o
            ON o.model = history_switch.model AND o.user_id = p.user_id AND o.event_time = p.event_time
         WHERE (o.score, o.model_id) IS DISTINCT FROM (p.score, mid)),
    logged AS (
        INSERT INTO @extschema@.score_history_changelog (model, user_id, event_time, old_score, new_score, model_id)
        SELECT history_switch.model, d.user_id, d.event_time, d.old_score, d.new_score, mid FROM diff d)
    INSERT INTO @extschema@.score_history AS s (model, user_id, event_time, score, model_id)
    SELECT history_switch.model, d.user_id, d.event_time, d.new_score, mid FROM diff d
    ON CONFLICT ON CONSTRAINT score_history_pkey DO UPDATE SET score = excluded.score, model_id = excluded.model_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.history_switch(text) IS
    'Rescore a tracked model''s whole history under its latest version, logging every changed point; returns the points written';

-- A new latest version of a model takes over in the transaction that
-- installs it: the kept history is rescored under it (batches wait on the
-- history_models row meanwhile) and, if the model has snapshots, a snapshot
-- as of now is taken with it.  No reader ever sees a mix or a hole.
CREATE FUNCTION @extschema@.models_installed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.model_id <> @extschema@.model_id(NEW.name) THEN
        RETURN NULL;                -- an older version: nothing takes over
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.history_models h WHERE h.model = NEW.name) THEN
        PERFORM @extschema@.history_switch(NEW.name);
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.snapshot_runs r WHERE r.model = NEW.name) THEN
        PERFORM @extschema@.rescore(NEW.name, pg_catalog.now(), keep => NULL);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER models_installed AFTER INSERT ON @extschema@.models
    FOR EACH ROW EXECUTE FUNCTION @extschema@.models_installed();

-- ---------------------------------------------------------------------------
-- Dashboards (SPEC section 4): materialized views over the event-time
-- history, in buckets set by dashboard_settings, refreshed concurrently.
-- A user counts in a bucket when it has an event there, with the score of
-- its last point in the bucket (what it stood at when it left the bucket).
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.dashboard_settings (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    bucket_width  interval NOT NULL DEFAULT '1 day',
    bucket_origin timestamptz NOT NULL DEFAULT '2000-01-01 00:00:00+00',
    score_bands   integer NOT NULL DEFAULT 10,
    CONSTRAINT dashboard_bucket_width CHECK (bucket_width > interval '0'
                                             AND pg_catalog.date_part('month', bucket_width) = 0
                                             AND pg_catalog.date_part('year', bucket_width) = 0),
    CONSTRAINT dashboard_score_bands CHECK (score_bands BETWEEN 1 AND 100)
);
INSERT INTO @extschema@.dashboard_settings DEFAULT VALUES;
COMMENT ON TABLE @extschema@.dashboard_settings IS
    'Dashboard buckets (width and origin, time-zone independent; no months) and the number of equal score bands over [0, 1]; applied at the next refresh_dashboards()';

CREATE MATERIALIZED VIEW @extschema@.propensity_trajectory AS
SELECT h.model, h.user_id,
       pg_catalog.date_bin(s.bucket_width, h.event_time, s.bucket_origin) AS bucket,
       count(*) AS points,
       (array_agg(h.score ORDER BY h.event_time))[1] AS first_score,
       (array_agg(h.score ORDER BY h.event_time DESC))[1] AS last_score,
       min(h.score) AS min_score,
       max(h.score) AS max_score,
       max(h.event_time) AS last_event,
       (array_agg(h.model_id ORDER BY h.event_time DESC))[1] AS model_id
  FROM @extschema@.score_history h CROSS JOIN @extschema@.dashboard_settings s
 GROUP BY h.model, h.user_id, 3
WITH DATA;
CREATE UNIQUE INDEX propensity_trajectory_key ON @extschema@.propensity_trajectory (model, user_id, bucket);
COMMENT ON MATERIALIZED VIEW @extschema@.propensity_trajectory IS
    'Per tracked model, user and bucket: the points of the event-time history, the first, last, lowest and highest score, and the version of the last point';

CREATE MATERIALIZED VIEW @extschema@.propensity_over_time AS
SELECT t.model, t.bucket, t.bucket + s.bucket_width AS bucket_end,
       count(*) AS users,
       avg(t.last_score) AS mean_score,
       percentile_cont(0.1)  WITHIN GROUP (ORDER BY t.last_score) AS p10,
       percentile_cont(0.25) WITHIN GROUP (ORDER BY t.last_score) AS p25,
       percentile_cont(0.5)  WITHIN GROUP (ORDER BY t.last_score) AS median,
       percentile_cont(0.75) WITHIN GROUP (ORDER BY t.last_score) AS p75,
       percentile_cont(0.9)  WITHIN GROUP (ORDER BY t.last_score) AS p90
  FROM @extschema@.propensity_trajectory t CROSS JOIN @extschema@.dashboard_settings s
 GROUP BY t.model, t.bucket, s.bucket_width
WITH DATA;
CREATE UNIQUE INDEX propensity_over_time_key ON @extschema@.propensity_over_time (model, bucket);
COMMENT ON MATERIALIZED VIEW @extschema@.propensity_over_time IS
    'Per tracked model and bucket: users scored (with an event in the bucket), mean and quantiles (continuous) of their last score in the bucket';

CREATE MATERIALIZED VIEW @extschema@.propensity_score_bands AS
SELECT o.model, o.bucket, b.band,
       (b.band - 1)::double precision / s.score_bands AS lower_bound,
       b.band::double precision / s.score_bands AS upper_bound,
       count(t.user_id) AS users
  FROM @extschema@.propensity_over_time o
 CROSS JOIN @extschema@.dashboard_settings s
 CROSS JOIN LATERAL pg_catalog.generate_series(1, s.score_bands) AS b(band)
  LEFT JOIN @extschema@.propensity_trajectory t
    ON t.model = o.model AND t.bucket = o.bucket
   AND least(pg_catalog.width_bucket(t.last_score, 0.0::double precision, 1.0::double precision, s.score_bands),
             s.score_bands) = b.band
 GROUP BY o.model, o.bucket, b.band, s.score_bands
WITH DATA;
CREATE UNIQUE INDEX propensity_score_bands_key ON @extschema@.propensity_score_bands (model, bucket, band);
COMMENT ON MATERIALIZED VIEW @extschema@.propensity_score_bands IS
    'Per tracked model, bucket and score band [lower, upper) (the last band includes 1): users whose last score in the bucket falls in it, zeros included';

CREATE FUNCTION @extschema@.refresh_dashboards(concurrent boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.arm_statement_timeout();
    -- in dependency order: the other two read the trajectory
    IF concurrent THEN
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.propensity_trajectory;
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.propensity_over_time;
        REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.propensity_score_bands;
    ELSE
        REFRESH MATERIALIZED VIEW @extschema@.propensity_trajectory;
        REFRESH MATERIALIZED VIEW @extschema@.propensity_over_time;
        REFRESH MATERIALIZED VIEW @extschema@.propensity_score_bands;
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.refresh_dashboards(boolean) IS
    'Refresh the dashboard materialized views (by default concurrently: readers are never blocked)';

-- ---------------------------------------------------------------------------
-- pg_cron schedules (issue 5, item 3).  Jobs are named
-- 'propensity:<database>:<what>' and run in this database as the user who
-- scheduled them.  Without pg_cron, these functions say what is missing and
-- everything else works.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.cron_require(job_name text DEFAULT NULL, schedule text DEFAULT NULL,
                                         command text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := pg_catalog.current_setting('cron.database_name', true);
BEGIN
    IF pg_catalog.to_regprocedure('cron.schedule_in_database(text,text,text,text,text,boolean)') IS NOT NULL THEN
        RETURN;
    END IF;
    IF cron_db IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not loaded'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Scheduling rescoring and dashboard refreshes needs the pg_cron extension (1.4 or later); everything else in propensity works without it.',
                  HINT = 'Add pg_cron to shared_preload_libraries, restart the server, and run CREATE EXTENSION pg_cron in the database set by cron.database_name; or run propensity.rescore() and propensity.refresh_dashboards() from another scheduler.';
    ELSIF cron_db <> pg_catalog.current_database() THEN
        RAISE EXCEPTION 'pg_cron lives in database "%", not in this one', cron_db
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('cron.database_name is "%s"; schedules are made there and run here with cron.schedule_in_database().', cron_db),
                  HINT = CASE WHEN command IS NULL
                              THEN pg_catalog.format('Connect to database "%s" to list or remove the jobs (SELECT * FROM cron.job WHERE jobname LIKE %L).',
                                                     cron_db, 'propensity:' || pg_catalog.current_database() || ':%')
                              ELSE pg_catalog.format('In database "%s" run: SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                                     cron_db, job_name, schedule, command, pg_catalog.current_database())
                         END;
    ELSE
        RAISE EXCEPTION 'pg_cron is loaded but not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Scheduling needs cron.schedule_in_database() from pg_cron 1.4 or later.',
                  HINT = 'Run CREATE EXTENSION pg_cron (or ALTER EXTENSION pg_cron UPDATE) in this database.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.cron_require(text, text, text) IS
    'Raise a clear error when pg_cron cannot schedule jobs for this database (internal)';

-- The job runs "SET statement_timeout = <timeout>; <statement>".
CREATE FUNCTION @extschema@.cron_schedule(what text, schedule text, statement text, timeout interval)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_name text := 'propensity:' || pg_catalog.current_database() || ':' || what;
    command text;
    jobid bigint;
BEGIN
    IF timeout IS NULL OR timeout <= interval '0' THEN
        RAISE EXCEPTION 'the timeout of a scheduled job must be positive, not %', coalesce(timeout::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    command := pg_catalog.format('SET statement_timeout = %L; %s',
                                 (extract(epoch FROM timeout) * 1000)::bigint::text, statement);
    PERFORM @extschema@.cron_require(job_name, schedule, command);
    BEGIN
        -- same name, same user: pg_cron replaces the job, so this is idempotent
        EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4, current_user, true)'
           INTO jobid USING job_name, schedule, command, pg_catalog.current_database();
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'permission denied to schedule pg_cron jobs'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = SQLERRM,
                  HINT = pg_catalog.format('A superuser can GRANT USAGE ON SCHEMA cron and EXECUTE ON FUNCTION cron.schedule_in_database(text,text,text,text,text,boolean) and cron.unschedule(bigint) TO %I.', current_user);
    END;
    RETURN jobid;
END
$$;
COMMENT ON FUNCTION @extschema@.cron_schedule(text, text, text, interval) IS
    'Install or replace the pg_cron job propensity:<database>:<what>, running a statement under a timeout (internal)';

CREATE FUNCTION @extschema@.schedule_rescoring(model text DEFAULT NULL,
                                               schedule text DEFAULT '*/15 * * * *',
                                               keep interval DEFAULT '7 days',
                                               timeout interval DEFAULT '10 minutes')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mname text;
BEGIN
    SELECT m.name INTO mname FROM @extschema@.models m
     WHERE m.model_id = @extschema@.model_id(schedule_rescoring.model);
    IF keep IS NULL OR keep < interval '0' THEN
        RAISE EXCEPTION 'schedule_rescoring() needs a non-negative retention, not %', coalesce(keep::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the snapshot's time is the minute the job was due: a repeated run in
    -- the same minute rewrites the same snapshot
    RETURN @extschema@.cron_schedule('rescore:' || mname, schedule,
        pg_catalog.format('SELECT %I.rescore(%L, pg_catalog.date_bin(%L, pg_catalog.now(), %L), %L)',
                          '@extschema@', mname, '1 minute', '2000-01-01 00:00:00+00', keep),
        timeout);
END
$$;
COMMENT ON FUNCTION @extschema@.schedule_rescoring(text, text, interval, interval) IS
    'Install (or replace) a pg_cron job that snapshots a model''s current propensity with rescore() on a cron schedule; returns the job id';

CREATE FUNCTION @extschema@.schedule_dashboard_refresh(schedule text DEFAULT '*/5 * * * *',
                                                       timeout interval DEFAULT '10 minutes')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @extschema@.cron_schedule('refresh dashboards', schedule,
        pg_catalog.format('SELECT %I.refresh_dashboards()', '@extschema@'), timeout);
END
$$;
COMMENT ON FUNCTION @extschema@.schedule_dashboard_refresh(text, interval) IS
    'Install (or replace) a pg_cron job that refreshes the dashboard views concurrently on a cron schedule; returns the job id';

CREATE FUNCTION @extschema@.schedules()
RETURNS TABLE (jobid bigint, job_name text, schedule text, command text, active boolean,
               last_status text, last_start timestamptz, last_end timestamptz, last_message text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.cron_require();
    RETURN QUERY EXECUTE
        'SELECT j.jobid, j.jobname::text, j.schedule, j.command, j.active,
                d.status, d.start_time, d.end_time, d.return_message
           FROM cron.job j
           LEFT JOIN LATERAL (SELECT r.status, r.start_time, r.end_time, r.return_message
                                FROM cron.job_run_details r WHERE r.jobid = j.jobid
                               ORDER BY r.runid DESC LIMIT 1) d ON true
          WHERE j.jobname LIKE $1 AND j.database = current_database()
          ORDER BY j.jobname'
        USING 'propensity:' || pg_catalog.current_database() || ':%';
END
$$;
COMMENT ON FUNCTION @extschema@.schedules() IS
    'The pg_cron jobs of propensity in this database, each with its latest run';

CREATE FUNCTION @extschema@.unschedule(job_name text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM @extschema@.cron_require();
    SELECT s.jobid INTO id FROM @extschema@.schedules() s WHERE s.job_name = unschedule.job_name;
    IF id IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT cron.unschedule($1)' USING id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.unschedule(text) IS
    'Remove one of propensity''s pg_cron jobs by its name (see schedules()); false when there is none';

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
REVOKE ALL ON FUNCTION @extschema@.rescore(text, timestamptz, interval),
    @extschema@.history_switch(text), @extschema@.refresh_dashboards(boolean),
    @extschema@.cron_schedule(text, text, text, interval),
    @extschema@.schedule_rescoring(text, text, interval, interval),
    @extschema@.schedule_dashboard_refresh(text, interval),
    @extschema@.unschedule(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.current_propensity(text, timestamptz),
    @extschema@.arm_statement_timeout() TO propensity_reader;
GRANT EXECUTE ON FUNCTION @extschema@.rescore(text, timestamptz, interval),
    @extschema@.history_switch(text), @extschema@.refresh_dashboards(boolean),
    @extschema@.cron_schedule(text, text, text, interval),
    @extschema@.schedule_rescoring(text, text, interval, interval),
    @extschema@.schedule_dashboard_refresh(text, interval),
    @extschema@.unschedule(text) TO propensity_admin;
GRANT SELECT ON @extschema@.score_snapshots, @extschema@.snapshot_runs, @extschema@.latest_scores,
    @extschema@.dashboard_settings, @extschema@.propensity_trajectory,
    @extschema@.propensity_over_time, @extschema@.propensity_score_bands TO propensity_reader;
GRANT INSERT, DELETE ON @extschema@.score_snapshots TO propensity_admin;
GRANT INSERT, UPDATE, DELETE ON @extschema@.snapshot_runs TO propensity_admin;
GRANT UPDATE ON @extschema@.dashboard_settings TO propensity_admin;

-- ---------------------------------------------------------------------------
-- Topic storage left by an earlier installation.  Topic storage
-- (queue_<id>_<slot>, queue_<id>_offsets) is made at run time, so it is not
-- part of the extension and DROP EXTENSION leaves it in the schema; a new
-- installation's topic ids start again at 1 and would collide with it.
-- Before topics are inserted, the ids move past any such storage, which is
-- kept (it may hold messages) and reported.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.topics_skip_leftovers()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seq text := pg_catalog.pg_get_serial_sequence('@extschema@.topics', 'topic_id');
    highest integer;
    names text;
    used bigint;
BEGIN
    SELECT max(substring(c.relname FROM '^queue_([0-9]+)_')::integer),
           string_agg(c.relname, ', ' ORDER BY c.relname)
      INTO highest, names
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace = '@extschema@'::regnamespace
       AND c.relname ~ '^queue_[0-9]+_(offsets|[0-9]+)$'
       AND c.relkind IN ('r', 'S')
       AND NOT EXISTS (SELECT 1 FROM @extschema@.topics t
                        WHERE t.topic_id = substring(c.relname FROM '^queue_([0-9]+)_')::integer);
    IF highest IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT CASE WHEN s.last_value IS NULL THEN 0 ELSE s.last_value END INTO used
      FROM pg_catalog.pg_sequences s
     WHERE pg_catalog.format('%I.%I', s.schemaname, s.sequencename)::regclass = seq::regclass;
    IF highest > used THEN
        PERFORM pg_catalog.setval(seq, highest);
        RAISE NOTICE 'topic storage of an earlier installation is in schema %: %', '@extschema@', names
            USING DETAIL = pg_catalog.format('New topic ids start after %s.', highest),
                  HINT = 'Drop those tables and sequences when their messages are no longer needed.';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER topics_skip_leftovers BEFORE INSERT ON @extschema@.topics
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.topics_skip_leftovers();
