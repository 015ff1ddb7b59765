-- propensity 0.9.0 -> 0.10.0: Apache Kafka sources (librdkafka), consumed
-- by the ingest worker with the offsets stored in the transaction of the
-- events; an external schema registry (libcurl) for unknown schema ids;
-- dead letters keyed by partition too, since Kafka offsets are per
-- partition.
\echo Use "ALTER EXTENSION propensity UPDATE TO '0.10.0'" to load this file. \quit

ALTER TABLE @extschema@.dead_letters
    DROP CONSTRAINT dead_letters_consumer_group_topic_msg_offset_key,
    ADD CONSTRAINT dead_letters_consumer_group_topic_partition_msg_offset_key
        UNIQUE (consumer_group, topic, partition, msg_offset);

-- ---------------------------------------------------------------------------
-- An external schema registry: writer schemas of ids the embedded registry
-- does not hold are asked of a Confluent-compatible registry over HTTP
-- (GET <url>/schemas/ids/<id>) and kept in avro_schemas under their id.
-- The credentials are readable by admins and the worker only.
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.schema_registry (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    url       text NOT NULL CHECK (url ~ '^https?://[^[:space:]]+$'),
    username  text,
    password  text,
    timeout   interval NOT NULL DEFAULT '5 seconds'
              CHECK (timeout >= interval '1 millisecond' AND timeout <= interval '1 minute')
);

COMMENT ON TABLE @extschema@.schema_registry IS
    'The Confluent-compatible schema registry asked for writer schemas the embedded registry does not hold (one row, or none); readable by propensity_admin and the worker only';

CREATE FUNCTION @extschema@.set_schema_registry(url text, username text DEFAULT NULL,
                                                password text DEFAULT NULL,
                                                timeout interval DEFAULT '5 seconds')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF url IS NULL THEN
        DELETE FROM @extschema@.schema_registry;
        RETURN;
    END IF;
    IF url !~ '^https?://[^[:space:]]+$' THEN
        RAISE EXCEPTION 'the schema registry''s url must be an http:// or https:// address, not "%"', url
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF timeout IS NULL OR timeout < interval '1 millisecond' OR timeout > interval '1 minute' THEN
        RAISE EXCEPTION 'the schema registry''s timeout must be between 1 millisecond and 1 minute'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.schema_registry AS r (singleton, url, username, password, timeout)
    VALUES (true, url, username, password, timeout)
    ON CONFLICT (singleton) DO UPDATE
       SET url = EXCLUDED.url, username = EXCLUDED.username, password = EXCLUDED.password,
           timeout = EXCLUDED.timeout;
END
$$;

COMMENT ON FUNCTION @extschema@.set_schema_registry(text, text, text, interval) IS
    'Sets (or with a NULL url removes) the Confluent-compatible schema registry asked for unknown schema ids, with basic-auth credentials and a timeout';

CREATE FUNCTION @extschema@.registry_cache_schema(schema_id integer, schema text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seq text := pg_catalog.pg_get_serial_sequence('@extschema@.avro_schemas', 'schema_id');
BEGIN
    PERFORM @extschema@.check_writer_schema(schema);
    INSERT INTO @extschema@.avro_schemas (schema_id, subject, version, schema)
    VALUES (registry_cache_schema.schema_id, 'schema-registry', registry_cache_schema.schema_id,
            registry_cache_schema.schema)
    ON CONFLICT DO NOTHING;
    -- ids handed out here later start after it
    PERFORM pg_catalog.setval(seq, greatest(coalesce(pg_catalog.pg_sequence_last_value(seq::regclass), 1),
                                            registry_cache_schema.schema_id));
END
$$;

COMMENT ON FUNCTION @extschema@.registry_cache_schema(integer, text) IS
    'Keeps a writer schema fetched from the schema registry in avro_schemas under its id (internal)';

REVOKE ALL ON FUNCTION @extschema@.set_schema_registry(text, text, text, interval),
    @extschema@.registry_cache_schema(integer, text) FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.schema_registry TO propensity_admin;

GRANT SELECT ON @extschema@.schema_registry TO propensity_worker;

GRANT EXECUTE ON FUNCTION @extschema@.set_schema_registry(text, text, text, interval),
    @extschema@.registry_cache_schema(integer, text) TO propensity_admin;

GRANT EXECUTE ON FUNCTION @extschema@.registry_cache_schema(integer, text) TO propensity_worker;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.schema_registry', '');

-- ===========================================================================
-- Apache Kafka sources.  The ingest worker consumes a Kafka topic through
-- librdkafka with the same pipeline as an embedded topic; the next offset
-- of every partition is stored in kafka_offsets in the transaction that
-- stores the batch's events, and the consumer is positioned from there on
-- every start (manual assignment), so each message is stored once.
-- ===========================================================================

CREATE TABLE @extschema@.kafka_sources (
    source            text PRIMARY KEY CHECK (source ~ '^[A-Za-z0-9._-]{1,100}$'),
    bootstrap_servers text NOT NULL CHECK (bootstrap_servers <> ''),
    topic             text NOT NULL CHECK (topic ~ '^[A-Za-z0-9._-]{1,249}$'),
    start_from        text NOT NULL DEFAULT 'earliest',
    attribute         boolean NOT NULL DEFAULT true,
    kafka_group       text CHECK (kafka_group <> ''),
    enabled           boolean NOT NULL DEFAULT true,
    offsets_epoch     bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    messages          bigint NOT NULL DEFAULT 0,
    dead_letters      bigint NOT NULL DEFAULT 0,
    batches           bigint NOT NULL DEFAULT 0,
    rate              double precision,
    last_batch_at     timestamptz,
    last_error        text,
    last_error_at     timestamptz
);

COMMENT ON TABLE @extschema@.kafka_sources IS
    'Kafka topics the ingest worker consumes: where (bootstrap_servers, topic), where to start without a stored offset (earliest, latest or a time), attribution on or off; and the counters of the worker''s batches';

COMMENT ON COLUMN @extschema@.kafka_sources.kafka_group IS
    'A Kafka consumer group the worker also commits the stored offsets to after each batch, for Kafka''s own lag tools (NULL: none); the offsets in kafka_offsets stay the ones that count';

COMMENT ON COLUMN @extschema@.kafka_sources.offsets_epoch IS
    'Moved by reset_kafka_offsets() and set_kafka_offsets(): a consumer positioned before it is positioned again from kafka_offsets';

-- librdkafka properties (security.protocol, sasl.*, ssl.* ...): the secrets,
-- readable by admins and the worker only, and never shown in status or logs
CREATE TABLE @extschema@.kafka_source_properties (
    source text NOT NULL REFERENCES @extschema@.kafka_sources ON DELETE CASCADE,
    name   text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (source, name)
);

COMMENT ON TABLE @extschema@.kafka_source_properties IS
    'librdkafka configuration properties of each Kafka source; readable by propensity_admin and the worker only';

CREATE TABLE @extschema@.kafka_offsets (
    source         text NOT NULL REFERENCES @extschema@.kafka_sources ON DELETE CASCADE,
    partition      integer NOT NULL CHECK (partition >= 0),
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    messages       bigint NOT NULL DEFAULT 0,
    committed_at   timestamptz,
    high_watermark bigint,
    PRIMARY KEY (source, partition)
);

COMMENT ON TABLE @extschema@.kafka_offsets IS
    'Per Kafka source and partition: the offset of the next message to store, committed with the events (authoritative: the consumer seeks here), and the broker''s high watermark last seen';

CREATE FUNCTION @extschema@.kafka_check_properties(properties jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'propensity_kafka_check_properties'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.kafka_check_properties(jsonb) IS
    'Raises an error unless every key of the object is a librdkafka consumer property this product lets a source set, with a valid string value (internal)';

CREATE FUNCTION @extschema@.kafka_check_start(start_from text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF start_from IS NULL THEN
        RAISE EXCEPTION 'start_from must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF start_from IN ('earliest', 'latest') THEN
        RETURN;
    END IF;
    BEGIN
        PERFORM start_from::timestamptz;
    EXCEPTION WHEN others THEN
        RAISE EXCEPTION 'start_from must be earliest, latest or a time, not "%"', start_from
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A time such as ''2026-11-01 00:00+00'' starts each partition at its first message of that time or later.';
    END;
    IF NOT isfinite(start_from::timestamptz) THEN
        RAISE EXCEPTION 'start_from must be a finite time, not "%"', start_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

COMMENT ON FUNCTION @extschema@.kafka_check_start(text) IS
    'Raises an error unless start_from is earliest, latest or a finite time (internal)';

CREATE FUNCTION @extschema@.create_kafka_source(source text, bootstrap_servers text, topic text,
                                                properties jsonb DEFAULT '{}',
                                                start_from text DEFAULT 'earliest',
                                                attribute boolean DEFAULT true,
                                                kafka_group text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.kafka_check_start(start_from);
    PERFORM @extschema@.kafka_check_properties(coalesce(properties, '{}'));
    -- a partition's lock is keyed by hashtext(source): no two sources share one
    IF EXISTS (SELECT FROM @extschema@.kafka_sources k
                WHERE pg_catalog.hashtext(k.source) = pg_catalog.hashtext(create_kafka_source.source)
                  AND k.source <> create_kafka_source.source) THEN
        RAISE EXCEPTION 'Kafka source name "%" collides with an existing source''s', source
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'The locks that give each partition to one process are keyed by hashtext() of the name.',
                  HINT = 'Choose another name.';
    END IF;
    INSERT INTO @extschema@.kafka_sources (source, bootstrap_servers, topic, start_from, attribute, kafka_group)
    VALUES (source, bootstrap_servers, topic, start_from, coalesce(attribute, true), kafka_group);
    INSERT INTO @extschema@.kafka_source_properties (source, name, value)
    SELECT create_kafka_source.source, p.key, p.value
      FROM jsonb_each_text(coalesce(properties, '{}')) p;
    PERFORM @extschema@.wake_workers();
END
$$;

COMMENT ON FUNCTION @extschema@.create_kafka_source(text, text, text, jsonb, text, boolean, text) IS
    'Declares a Kafka topic the ingest worker consumes: brokers, topic, librdkafka properties (kept readable by admins only), the start position of partitions without a stored offset (earliest, latest or a time), whether attribution runs, and a Kafka consumer group to commit the offsets to as well';

CREATE FUNCTION @extschema@.alter_kafka_source(source text, bootstrap_servers text DEFAULT NULL,
                                               properties jsonb DEFAULT NULL,
                                               attribute boolean DEFAULT NULL,
                                               enabled boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF properties IS NOT NULL THEN
        PERFORM @extschema@.kafka_check_properties(properties);
    END IF;
    UPDATE @extschema@.kafka_sources k
       SET bootstrap_servers = coalesce(alter_kafka_source.bootstrap_servers, k.bootstrap_servers),
           attribute = coalesce(alter_kafka_source.attribute, k.attribute),
           enabled = coalesce(alter_kafka_source.enabled, k.enabled)
     WHERE k.source = alter_kafka_source.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Kafka source "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'See propensity.kafka_sources.';
    END IF;
    IF properties IS NOT NULL THEN
        DELETE FROM @extschema@.kafka_source_properties p WHERE p.source = alter_kafka_source.source;
        INSERT INTO @extschema@.kafka_source_properties (source, name, value)
        SELECT alter_kafka_source.source, e.key, e.value FROM jsonb_each_text(properties) e;
    END IF;
    PERFORM @extschema@.wake_workers();
END
$$;

COMMENT ON FUNCTION @extschema@.alter_kafka_source(text, text, jsonb, boolean, boolean) IS
    'Changes a Kafka source: brokers, librdkafka properties (replaced as a whole), attribution, enabled; NULL keeps a setting. The worker reconnects with the new settings from the stored offsets';

CREATE FUNCTION @extschema@.drop_kafka_source(source text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.kafka_sources k WHERE k.source = drop_kafka_source.source;
    RETURN FOUND;
END
$$;

COMMENT ON FUNCTION @extschema@.drop_kafka_source(text) IS
    'Forgets a Kafka source with its properties and offsets (its dead letters are kept); false when there was none';

CREATE FUNCTION @extschema@.reset_kafka_offsets(source text, start_from text DEFAULT 'earliest')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM @extschema@.kafka_check_start(start_from);
    UPDATE @extschema@.kafka_sources k
       SET start_from = reset_kafka_offsets.start_from, offsets_epoch = k.offsets_epoch + 1
     WHERE k.source = reset_kafka_offsets.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Kafka source "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'See propensity.kafka_sources.';
    END IF;
    DELETE FROM @extschema@.kafka_offsets o WHERE o.source = reset_kafka_offsets.source;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@.wake_workers();
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.reset_kafka_offsets(text, text) IS
    'Forgets a Kafka source''s stored offsets: every partition starts again at start_from (earliest, latest or a time); returns the offsets forgotten';

CREATE FUNCTION @extschema@.set_kafka_offsets(source text, partitions integer[], offsets bigint[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF partitions IS NULL OR offsets IS NULL OR cardinality(partitions) <> cardinality(offsets) THEN
        RAISE EXCEPTION 'partitions and offsets must be arrays of the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(partitions, offsets) u(p, o) WHERE u.p IS NULL OR u.p < 0 OR u.o IS NULL OR u.o < 0) THEN
        RAISE EXCEPTION 'partitions and offsets must not be null or negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE @extschema@.kafka_sources k SET offsets_epoch = k.offsets_epoch + 1
     WHERE k.source = set_kafka_offsets.source;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Kafka source "%" does not exist', source
            USING ERRCODE = 'undefined_object', HINT = 'See propensity.kafka_sources.';
    END IF;
    INSERT INTO @extschema@.kafka_offsets AS o (source, partition, next_offset)
    SELECT set_kafka_offsets.source, u.p, u.o FROM unnest(partitions, offsets) u(p, o)
    ON CONFLICT ON CONSTRAINT kafka_offsets_pkey DO UPDATE SET next_offset = EXCLUDED.next_offset;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM @extschema@.wake_workers();
    RETURN n;
END
$$;

COMMENT ON FUNCTION @extschema@.set_kafka_offsets(text, integer[], bigint[]) IS
    'Sets the offset of the next message to store for partitions of a Kafka source (the others keep theirs); returns the partitions set';

CREATE FUNCTION @extschema@.consume_kafka(source text, max_messages integer DEFAULT NULL,
                                          wait interval DEFAULT '1 second',
                                          OUT messages bigint, OUT events bigint, OUT dead_letters bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'propensity_consume_kafka'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION @extschema@.consume_kafka(text, integer, interval) IS
    'One batch of a Kafka source in this transaction, as the worker does it: connect, position from the stored offsets, read for wait (or up to max_messages), store, commit the offsets';

CREATE VIEW @extschema@.kafka_status AS
SELECT k.source, k.topic, o.partition, l.pid AS worker_pid, k.enabled, o.next_offset, o.high_watermark,
       greatest(o.high_watermark - o.next_offset, 0) AS lag,
       k.rate AS messages_per_second, k.last_batch_at, o.committed_at,
       coalesce(d.n, 0) AS dead_letters, k.last_error, k.last_error_at
  FROM @extschema@.kafka_sources k
  LEFT JOIN @extschema@.kafka_offsets o ON o.source = k.source
  LEFT JOIN (SELECT dl.consumer_group, dl.topic, dl.partition, count(*) AS n
               FROM @extschema@.dead_letters dl WHERE dl.replayed_at IS NULL
              GROUP BY 1, 2, 3) d
         ON d.consumer_group = k.source AND d.topic = k.topic AND d.partition = o.partition
  -- the lock on (database, source, partition) of the process consuming it
  -- (source_kafka.c: objsubid 19280, classid hashtext(source))
  LEFT JOIN pg_catalog.pg_locks l
         ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 19280
        AND l.database = (SELECT db.oid FROM pg_catalog.pg_database db
                           WHERE db.datname = pg_catalog.current_database())
        AND l.classid = (pg_catalog.hashtext(k.source)::bigint & 4294967295)::oid
        AND l.objid = o.partition::oid;

COMMENT ON VIEW @extschema@.kafka_status IS
    'Per Kafka source and partition: the process consuming it (worker_pid, NULL when none), the stored offset, the broker''s high watermark, lag, consumption rate, last batch, dead letters and last error (no properties)';

REVOKE ALL ON FUNCTION @extschema@.create_kafka_source(text, text, text, jsonb, text, boolean, text),
    @extschema@.alter_kafka_source(text, text, jsonb, boolean, boolean),
    @extschema@.drop_kafka_source(text), @extschema@.reset_kafka_offsets(text, text),
    @extschema@.set_kafka_offsets(text, integer[], bigint[]),
    @extschema@.consume_kafka(text, integer, interval) FROM PUBLIC;

GRANT SELECT ON @extschema@.kafka_sources, @extschema@.kafka_offsets, @extschema@.kafka_status TO propensity_reader;

GRANT INSERT, UPDATE, DELETE ON @extschema@.kafka_sources TO propensity_admin;

GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.kafka_source_properties TO propensity_admin;

GRANT INSERT, UPDATE, DELETE ON @extschema@.kafka_offsets TO propensity_admin;

GRANT EXECUTE ON FUNCTION @extschema@.create_kafka_source(text, text, text, jsonb, text, boolean, text),
    @extschema@.alter_kafka_source(text, text, jsonb, boolean, boolean),
    @extschema@.drop_kafka_source(text), @extschema@.reset_kafka_offsets(text, text),
    @extschema@.set_kafka_offsets(text, integer[], bigint[]),
    @extschema@.consume_kafka(text, integer, interval) TO propensity_admin;

-- the worker's share: read the sources and their properties, write the
-- offsets and the counters
GRANT SELECT ON @extschema@.kafka_source_properties TO propensity_worker;

GRANT UPDATE ON @extschema@.kafka_sources TO propensity_worker;

GRANT INSERT, UPDATE ON @extschema@.kafka_offsets TO propensity_worker;

ALTER FUNCTION @extschema@.consume_kafka(text, integer, interval) OWNER TO propensity_worker;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.kafka_sources', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.kafka_source_properties', '');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.kafka_offsets', '');
