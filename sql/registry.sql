-- The schema registry and the decoders' copies of it: schema size and
-- nesting limits, a bounded cache of writer schemas, and decoders (a
-- session's and the running worker's) that forget what they loaded when
-- the registry is recreated, so that an id handed out again decodes by its
-- new schema, not the old one (fields once came out swapped).
SET client_min_messages = warning;
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity;
RESET client_min_messages;
SET timezone = 'UTC';

-- limits at registration
\set VERBOSITY default
SELECT propensity.register_schema('wide', (jsonb_set(propensity.event_schema()::jsonb, '{fields}',
    (propensity.event_schema()::jsonb -> 'fields')
    || (SELECT jsonb_agg(jsonb_build_object('name', 'pad' || i, 'type', 'null')) FROM generate_series(1, 3000) i)))::text);
\echo :LAST_ERROR_SQLSTATE
SELECT propensity.register_schema('deep', (jsonb_set(propensity.event_schema()::jsonb, '{fields}',
    (propensity.event_schema()::jsonb -> 'fields')
    || jsonb_build_array(jsonb_build_object('name', 'm', 'type',
         (repeat('{"type": "array", "items": ', 100) || '"long"' || repeat('}', 100))::jsonb))))::text);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SET propensity.max_schema_size = '1MB';
SELECT propensity.register_schema('wide', (jsonb_set(propensity.event_schema()::jsonb, '{fields}',
    (propensity.event_schema()::jsonb -> 'fields')
    || (SELECT jsonb_agg(jsonb_build_object('name', 'pad' || i, 'type', 'null')) FROM generate_series(1, 3000) i)))::text)
       > 1 AS wide_registered;
RESET propensity.max_schema_size;
-- a decoder loading a schema over the limit (registered while it was
-- higher) refuses it: the message is a dead letter with the reason
\set VERBOSITY default
SELECT event_id FROM propensity.decode_message(
    (propensity.encode_events(ARRAY[ROW('2026-11-27 10:00+00', 'u', 'PS', 'e', NULL, NULL, NULL, NULL,
                                        NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events],
                              (SELECT schema_id FROM propensity.avro_schemas WHERE subject = 'wide')))[1]);
\set VERBOSITY terse

-- A cache of 64kB holds a few schemas: 30 schemas used in turn, twice,
-- each message decoded by its own (schemas dropped are loaded again)
SET propensity.schema_cache_size = '64kB';
CREATE TEMP TABLE many AS
SELECT i, propensity.register_schema('many-' || i, (jsonb_set(propensity.event_schema()::jsonb, '{fields}',
           (propensity.event_schema()::jsonb -> 'fields')
           || jsonb_build_array(jsonb_build_object('name', 'tag' || i, 'type', 'long'))))::text) AS id
  FROM generate_series(1, 30) i;
SELECT count(*) AS decoded_right
  FROM many, generate_series(1, 2) r,
       LATERAL propensity.decode_message(
           (propensity.encode_events(ARRAY[ROW('2026-11-27 10:00+00', 'u-' || i, 'PS', 'e-' || i || '-' || r,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events], id))[1]
           || '\x02'::bytea) d
 WHERE d.event_id = 'e-' || i || '-' || r AND d.user_id = 'u-' || i;
RESET propensity.schema_cache_size;

-- Recreated registry, same id, other schema.  Round 1: schema 2 puts
-- user_id before event_id.  A message under it: the reader's encoding with
-- the two 3-byte strings (each 4 bytes with its length) swapped.
SET client_min_messages = warning;
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity;
RESET client_min_messages;
SELECT propensity.register_schema('swapped', (jsonb_set(propensity.event_schema()::jsonb, '{fields}',
    jsonb_build_array(propensity.event_schema()::jsonb -> 'fields' -> 1, propensity.event_schema()::jsonb -> 'fields' -> 0)
    || ((propensity.event_schema()::jsonb -> 'fields') - 0 - 0)))::text) AS swapped_id;
CREATE FUNCTION swapped_message(e text, u text) RETURNS bytea LANGUAGE sql AS $$
    SELECT substring(m FROM 1 FOR 5) || substring(m FROM 10 FOR 4) || substring(m FROM 6 FOR 4) || substring(m FROM 14)
      FROM (SELECT (propensity.encode_events(ARRAY[ROW('2026-11-27 10:00+00', u, 'PS', e, NULL, NULL, NULL,
                    NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events], 2))[1] AS m) s
$$;
SELECT event_id, user_id FROM propensity.decode_message(swapped_message('e-1', 'u-1'));
-- the running worker decodes by it too
SET client_min_messages = warning;
SELECT propensity.create_topic('reg', 1);
RESET client_min_messages;
SELECT propensity.subscribe('reg');
SELECT propensity.worker_start() IS NOT NULL AS started;
CREATE FUNCTION wait_for_reg() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..1800 LOOP
        IF (SELECT sum(lag) FROM propensity.queue_lag('reg')) = 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END $$;
SELECT propensity.produce('reg', 'uw1', swapped_message('ew1', 'uw1'));
SELECT wait_for_reg() AS drained;
SELECT event_id, user_id FROM propensity.events;
-- Round 2: the extension again; schema 2 is now the reader's own order
SET client_min_messages = warning;
DROP FUNCTION swapped_message(text, text);
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity;
RESET client_min_messages;
SELECT propensity.register_schema('plain', propensity.event_schema()) AS plain_id;
SELECT event_id, user_id FROM propensity.decode_message(
    (propensity.encode_events(ARRAY[ROW('2026-11-27 10:00+00', 'u-2', 'PS', 'e-2', NULL, NULL, NULL,
                                        NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events], 2))[1]);
SET client_min_messages = warning;
SELECT propensity.create_topic('reg', 1);
RESET client_min_messages;
SELECT propensity.subscribe('reg');
SELECT propensity.produce('reg', 'u-w2', (propensity.encode_events(ARRAY[ROW('2026-11-27 10:00+00', 'u-w2', 'PS',
    'e-w2', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events], 2))[1]);
SELECT wait_for_reg() AS drained;
SELECT event_id, user_id FROM propensity.events;
-- a row changed by hand (here deleted) is forgotten by every decoder too
DELETE FROM propensity.avro_schemas WHERE schema_id = 2;
\set VERBOSITY default
SELECT event_id FROM propensity.decode_message(
    (propensity.encode_events(ARRAY[ROW('2026-11-27 10:00+00', 'u-3', 'PS', 'e-3', NULL, NULL, NULL,
                                        NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events], 2))[1]);
SELECT propensity.worker_stop();
DROP FUNCTION wait_for_reg();
