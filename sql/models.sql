-- Models: the seed model ships as the default; other models, versions, and
-- decayed-count terms; validation of what goes into the models table.
SET timezone = 'UTC';

SELECT name, version, intercept, terms FROM propensity.models ORDER BY model_id;
SHOW propensity.default_model;

-- a model with a decayed count and a window count
INSERT INTO propensity.models (name, version, intercept, terms) VALUES
    ('mixed', 1, -1, ARRAY[
        ROW('recent_clicks', 'decayed_count', 'CL', '1 day', 'identity', 0.5),
        ROW('impressions', 'window_count', 'IM', '30 days', 'log1p', 0.3)
    ]::propensity.model_term[]);

-- user "spec" (from the score test) as of 2026-03-01: one click 6 days
-- 23:59:59.999 before, weight 2^-6.99999998843 = 0.0078125001; 3 impressions.
-- z = -1 + 0.5 * 0.0078125001 + 0.3 ln 4: score 0.358885
SELECT round(propensity.score('spec', '2026-03-01', 'mixed')::numeric, 6);
SELECT propensity.feature_values(event_type, event_time, '2026-03-01', 'mixed')
  FROM propensity.events WHERE user_id = 'spec';

-- a new version replaces the old one for functions that name the model
INSERT INTO propensity.models (name, version, intercept, terms)
SELECT name, 2, 0, terms FROM propensity.models WHERE name = 'mixed' AND version = 1;
-- z = 0.5 * 0.0078125001 + 0.3 ln 4: 0.603434; with no events z = 0: 0.5
SELECT round(propensity.score('spec', '2026-03-01', 'mixed')::numeric, 6);
SELECT round(propensity.score('nobody', '2026-03-01', 'mixed')::numeric, 6);

-- the default model is a setting
SET propensity.default_model = 'mixed';
SELECT round(propensity.score('spec', '2026-03-01')::numeric, 6);
SELECT user_id, round(score::numeric, 6), features
  FROM propensity.score_all('2026-03-01') WHERE user_id IN ('spec', 'u2') ORDER BY 1;
RESET propensity.default_model;
SELECT round(propensity.score('spec', '2026-03-01')::numeric, 6);

-- two models side by side in one query
SELECT user_id,
       round(propensity.score_events(event_type, event_time, '2026-03-01', 'seed')::numeric, 6) AS seed,
       round(propensity.score_events(event_type, event_time, '2026-03-01', 'mixed')::numeric, 6) AS mixed
  FROM propensity.events WHERE user_id = 'spec' AND event_time <= '2026-03-01' GROUP BY user_id;

-- what the table refuses
\set VERBOSITY default
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'IM', '1 day', 'log1p', 'NaN')]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'IM', '1 day', 'log1p', '-Infinity')]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES ('bad', 'Infinity', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'XX', '1 day', 'log1p', 1)]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'max_count', 'IM', '1 day', 'log1p', 1)]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'IM', '1 day', 'sqrt', 1)]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'IM', '1 month', 'log1p', 1)]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'IM', '-1 day', 'log1p', 1)]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO propensity.models (name, intercept, terms) VALUES
    ('bad', -1, ARRAY[ROW('x', 'window_count', 'IM', '1 day', 'log1p', NULL)]::propensity.model_term[]);
\echo :LAST_ERROR_SQLSTATE
UPDATE propensity.models SET intercept = 'NaN' WHERE name = 'seed';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS bad_models FROM propensity.models WHERE name = 'bad';

-- a hostile search_path cannot change which model is read: with an "=" on
-- text that is always true, the lookup of 'seed' would return the latest
-- version of any name (mixed v2, 0.603434) instead of seed's 0.489484
CREATE SCHEMA hostile;
CREATE FUNCTION hostile.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.always);
SET search_path = hostile, pg_catalog, public;
SELECT round(propensity.score_events(event_type, event_time, '2026-03-01', 'seed')::numeric, 6) AS seed
  FROM propensity.events
 WHERE user_id OPERATOR(pg_catalog.=) 'spec' AND event_time <= '2026-03-01';
SELECT user_id, round(score::numeric, 6) FROM propensity.score_all('2026-03-01', 'seed')
 WHERE user_id OPERATOR(pg_catalog.=) 'spec';
RESET search_path;
DROP SCHEMA hostile CASCADE;
