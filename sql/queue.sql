-- The embedded queue and its consumer (issue 3): upgrade to 0.3.0, the
-- schema registry, topics and producing, decoding (Avro wire format with
-- schema resolution, JSON), consume() with dead letters and offsets,
-- redelivery, a producer that commits out of order, batches that split a
-- range, replay of dead letters after a fix, COPY, retention, and the
-- background worker.  Expected values are worked out by hand in comments.
SET client_min_messages = warning;
DROP EXTENSION propensity CASCADE;
CREATE EXTENSION propensity VERSION '0.2.0';
ALTER EXTENSION propensity UPDATE TO '0.3.0';
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'propensity';
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- ---------------------------------------------------------------------------
-- Schema registry.  The reader schema is id 1; the same text again is id 1;
-- a writer schema with a field added, fields removed, the enum reordered and
-- extended is id 2 (version 2 of its subject).
-- ---------------------------------------------------------------------------
SELECT schema_id, subject, version, schema = propensity.event_schema() AS is_reader
  FROM propensity.avro_schemas;
SELECT propensity.register_schema('events-value', propensity.event_schema()) AS same_id;
SELECT propensity.register_schema('events-value',
  '{"type":"record","name":"Event","fields":[
     {"name":"event_id","type":"string"},{"name":"user_id","type":"string"},
     {"name":"event_type","type":{"type":"enum","name":"EventType","symbols":["CN","IM","XX"]}},
     {"name":"event_time","type":"long"},{"name":"extra","type":"int"}]}') AS v2_id;
SELECT schema_id, subject, version FROM propensity.avro_schemas ORDER BY schema_id;
-- not Avro; not resolvable (no user_id); a type that does not promote
SELECT propensity.register_schema('x', '{"type":');
SELECT propensity.register_schema('x', '{"type":"record","name":"E","fields":[
     {"name":"event_id","type":"string"},{"name":"event_type","type":"string"},
     {"name":"event_time","type":"long"}]}');
SELECT propensity.register_schema('x', '{"type":"record","name":"E","fields":[
     {"name":"event_id","type":"string"},{"name":"user_id","type":"string"},
     {"name":"event_type","type":{"type":"enum","name":"T","symbols":["IM"]}},
     {"name":"event_time","type":"double"}]}');

-- ---------------------------------------------------------------------------
-- Decoding, one message at a time.
-- ---------------------------------------------------------------------------
-- v2 by hand: 00 | 00000002 | "a" (02 61) | "u" (02 75) | enum index 1 (02) = IM
-- | event_time 1000 ms (zigzag 2000 = d0 0f) | extra 5 (0a).  Missing reader
-- fields take their default, null: 1970-01-01 00:00:01, u, IM, a, all null.
SELECT * FROM propensity.decode_message('\x00000000020261027502d00f0a');
-- the reader schema, encoded by encode_events and decoded again
SELECT (propensity.decode_message(m)).*
  FROM unnest(propensity.encode_events(ARRAY[
         ROW('2026-03-01 12:34:56.789+00', 'user-é', 'CN', 'c-1', 7, NULL, NULL, 3,
             'pub', NULL, '', 'shoes', 2, 99.5)::propensity.events])) AS m;
-- JSON, with the time as text or as epoch milliseconds (1000 ms = 00:00:01)
SELECT * FROM propensity.decode_message(convert_to(
  '{"event_id":"j1","user_id":"u9","event_type":"CL","event_time":"2026-03-01T10:00:00Z",
    "advertiser_id":4,"campaign_id":40,"auction_id":"a9","unknown_field":[1,2]}', 'UTF8'));
SELECT event_time FROM propensity.decode_message(convert_to(
  '{"event_id":"j2","user_id":"u9","event_type":"IM","event_time":1000}', 'UTF8'));
-- errors: each is a dead letter's reason
SELECT propensity.decode_message('\x');
SELECT propensity.decode_message('\x0100000001');
SELECT propensity.decode_message('\x00000000');
SELECT propensity.decode_message('\x0000000063');
SELECT propensity.decode_message('\x00000000020261027502');            -- truncated in event_time
SELECT propensity.decode_message('\x0000000002026102750ad00f0a');      -- enum index 5 of 3
SELECT propensity.decode_message('\x00000000020261027504d00f0a');      -- symbol XX
SELECT propensity.decode_message('\x00000000020261027502d00f0a00');    -- a byte too many
SELECT propensity.decode_message('\x000000000202ff027502d00f0a');      -- invalid UTF-8
SELECT propensity.decode_message('\x000000000200027502d00f0a');        -- empty event_id
SELECT propensity.decode_message('\x00000000027e61027502d00f0a');      -- length 63, 7 left
SELECT propensity.decode_message(convert_to('{"event_id":"e","user_id":"u","event_type":"XX","event_time":1}', 'UTF8'));
SELECT propensity.decode_message(convert_to('{"event_id":"e","user_id":"u","event_type":"IM"}', 'UTF8'));
SELECT propensity.decode_message(convert_to('{"event_id":"e","user_id":"u","event_type":"IM","event_time":"soon"}', 'UTF8'));
SELECT propensity.decode_message(convert_to('{"event_id":"e","user_id":{"a":1},"event_type":"IM","event_time":1}', 'UTF8'));
SELECT propensity.decode_message(convert_to('{"event_id":"e",', 'UTF8'));
SELECT propensity.decode_message(convert_to('[1,2]', 'UTF8'));
SELECT propensity.decode_message(convert_to('hello', 'UTF8'));

-- ---------------------------------------------------------------------------
-- Topics and producing
-- ---------------------------------------------------------------------------
SELECT propensity.create_topic('bad name');
SELECT propensity.create_topic('t', 0);
SELECT propensity.produce('nope', 'k', '\x00'::bytea);
SELECT propensity.create_topic('events', 4);
SELECT propensity.create_topic('events');
SELECT topic, partitions, retention, cur_slot FROM propensity.topics;
SELECT slot, tbl, opened_at IS NOT NULL AS current FROM propensity.topic_slots ORDER BY slot;
SELECT propensity.consume('events', 'g1');
SELECT propensity.subscribe('events', 'g1', 'sometime');
SELECT propensity.subscribe('events', 'g1');

-- Eight messages: offsets 1..8 in production order.  Partition by key: the
-- same key always lands in the same partition.
SELECT propensity.produce('events', 'u1', '{"event_id":"e1","user_id":"u1","event_type":"IM","event_time":"2026-03-01 10:00+00","advertiser_id":1,"campaign_id":10,"auction_id":"a1","pixel_id":5}'::jsonb);
SELECT propensity.produce('events', 'u1', '{"event_id":"e2","user_id":"u1","event_type":"CN","event_time":"2026-03-01 12:00+00","advertiser_id":1,"pixel_id":5}'::jsonb);
SELECT propensity.produce('events', 'u1', '{"event_id":"e3","user_id":"u1"}'::jsonb);  -- no type: dead letter
SELECT propensity.produce_many('events', ARRAY['u2', 'u2', 'u3'],
         propensity.encode_events(ARRAY[
           ROW('2026-03-01 10:00+00', 'u2', 'IM', 'e4', 1, 20, 'a4', 5, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events,
           ROW('2026-03-01 10:05+00', 'u2', 'CL', 'e5', 1, 20, 'a4', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events,
           ROW('2026-03-01 11:00+00', 'u3', 'PS', 'e6', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events]));
SELECT propensity.produce('events', 'u2', '\x00000000030272027500a01f'::bytea);  -- schema 3 does not exist yet: dead letter
SELECT propensity.produce('events', 'u2', '{"event_id":"e8","user_id":"u2","event_type":"CN","event_time":"2026-03-01 11:00+00","advertiser_id":1,"pixel_id":5}'::jsonb);
SELECT msg_offset, partition, key, partition = propensity.partition_for(key, 4) AS by_key
  FROM propensity.queue_1_0 ORDER BY msg_offset;
SELECT * FROM propensity.queue_lag('events', 'g1');

-- One batch: 8 messages, 6 events stored, 2 dead letters (offsets 3 and 7).
SELECT * FROM propensity.consume('events', 'g1');
SELECT event_id, user_id, event_type, event_time FROM propensity.events ORDER BY event_id;
SELECT topic, partition, msg_offset, key, error FROM propensity.dead_letters ORDER BY msg_offset;
-- partitions by key (above): u1 -> offsets 1, 2, 3; u2 -> 4, 5, 7, 8; u3 -> 6
SELECT partition, committed_offset, messages FROM propensity.consumer_offsets ORDER BY partition;
SELECT partition, lag, committed_offset, dead_letters FROM propensity.queue_status ORDER BY partition;
-- attribution ran in the same transaction: e2 is PV to campaign 10 (e1 is
-- its impression, pixel 5, 2 h before); e8 is PC to campaign 20 (click e5
-- on impression e4, 55 min before)
SELECT conversion_event_id, kind, campaign_id, impression_event_id FROM propensity.attribution_current ORDER BY 1;
-- nothing more to consume
SELECT * FROM propensity.consume('events', 'g1');

-- Redelivery: the same two events again are consumed as messages but store
-- nothing and change no attribution.
SELECT propensity.produce('events', 'u1', '{"event_id":"e1","user_id":"u1","event_type":"IM","event_time":"2026-03-01 10:00+00","advertiser_id":1,"campaign_id":10,"auction_id":"a1","pixel_id":5}'::jsonb);
SELECT propensity.produce('events', 'u2', '{"event_id":"e8","user_id":"u2","event_type":"CN","event_time":"2026-03-01 11:00+00","advertiser_id":1,"pixel_id":5}'::jsonb);
SELECT generation AS gen_before FROM propensity.attribution_state \gset
SELECT * FROM propensity.consume('events', 'g1');
SELECT count(*) AS events, (SELECT generation FROM propensity.attribution_state) = :gen_before AS attribution_unchanged
  FROM propensity.events;

-- ---------------------------------------------------------------------------
-- A producer that commits late.  Another session takes offset 11 and keeps
-- its transaction open; this session produces offset 12 and it is
-- consumed; when the other session commits, offset 11 is consumed too,
-- although a higher offset was consumed before it.
-- ---------------------------------------------------------------------------
SELECT dblink_connect('late', 'dbname=' || current_database());
SELECT dblink_exec('late', 'BEGIN');
SELECT * FROM dblink('late', $$SELECT 1 FROM propensity.produce('events', 'u4', '{"event_id":"late-1","user_id":"u4","event_type":"IM","event_time":"2026-03-01 09:00+00"}'::jsonb)$$) AS r(produced int);
SELECT propensity.produce('events', 'u4', '{"event_id":"early-2","user_id":"u4","event_type":"IM","event_time":"2026-03-01 09:30+00"}'::jsonb);
SELECT * FROM propensity.consume('events', 'g1');
SELECT event_id FROM propensity.events WHERE user_id = 'u4' ORDER BY 1;
SELECT sum(lag) AS lag_while_open FROM propensity.queue_lag('events', 'g1');
SELECT dblink_exec('late', 'COMMIT');
SELECT sum(lag) AS lag_after_commit FROM propensity.queue_lag('events', 'g1');
SELECT * FROM propensity.consume('events', 'g1');
SELECT e.event_id, q.msg_offset FROM propensity.events e
  JOIN (SELECT msg_offset, convert_from(value, 'UTF8')::jsonb->>'event_id' AS event_id
          FROM propensity.queue_1_0 WHERE key = 'u4' OFFSET 0) q ON q.event_id = e.event_id
 WHERE e.user_id = 'u4' ORDER BY 1;
-- an aborted producer leaves nothing to consume
SELECT dblink_exec('late', 'BEGIN');
SELECT * FROM dblink('late', $$SELECT 1 FROM propensity.produce('events', 'u4', '{"event_id":"never","user_id":"u4","event_type":"IM","event_time":"2026-03-01 09:00+00"}'::jsonb)$$) AS r(produced int);
SELECT dblink_exec('late', 'ROLLBACK');
SELECT * FROM propensity.consume('events', 'g1');
SELECT dblink_disconnect('late');

-- ---------------------------------------------------------------------------
-- Small batches split a range: five messages in batches of two are
-- consumed 2 + 2 + 1, each exactly once, and the position stays inside the
-- range (snap_hi set) until the range is used up.
-- ---------------------------------------------------------------------------
SELECT propensity.produce_many('events', ARRAY['b1', 'b2', 'b3', 'b4', 'b5'],
         ARRAY(SELECT convert_to(format('{"event_id":"b%s","user_id":"b%s","event_type":"PS","event_time":"2026-03-02 00:00+00"}', i, i), 'UTF8')
                 FROM generate_series(1, 5) i));
SELECT (propensity.consume('events', 'g1', 2)).messages AS first;
SELECT snap_hi IS NOT NULL AS inside_range FROM propensity.subscriptions WHERE consumer_group = 'g1';
SELECT (propensity.consume('events', 'g1', 2)).messages AS second;
SELECT (propensity.consume('events', 'g1', 2)).messages AS third;
SELECT snap_hi IS NULL AS range_done FROM propensity.subscriptions WHERE consumer_group = 'g1';
SELECT count(*) AS b_events FROM propensity.events WHERE event_id LIKE 'b%';
SELECT messages, dead_letters, batches > 0 AS ran FROM propensity.subscriptions WHERE consumer_group = 'g1';
SELECT sum(messages) AS by_partition FROM propensity.consumer_offsets WHERE consumer_group = 'g1';

-- A second group reads the same topic from the start, independently: all
-- 17 messages (8 + 2 + 2 + 5), the same dead letters under its own name.
SELECT propensity.subscribe('events', 'g2');
SELECT * FROM propensity.consume('events', 'g2');
SELECT consumer_group, count(*) FROM propensity.dead_letters GROUP BY 1 ORDER BY 1;
-- a group that starts from the latest message sees only what comes after
SELECT propensity.subscribe('events', 'g3', 'latest');
SELECT * FROM propensity.consume('events', 'g3');
-- paused: consume does nothing, resumed by subscribe
SELECT propensity.pause_subscription('events', 'g3');
SELECT propensity.produce('events', 'u5', '{"event_id":"p1","user_id":"u5","event_type":"IM","event_time":"2026-03-02 00:00+00"}'::jsonb);
SELECT * FROM propensity.consume('events', 'g3');
SELECT propensity.subscribe('events', 'g3');
SELECT * FROM propensity.consume('events', 'g3');

-- ---------------------------------------------------------------------------
-- Replay after a fix: offset 7 names writer schema 3, which did not exist
-- when it was consumed.  Once the schema is registered (it gets id 3), the
-- replay stores its event: "r", user "u", IM (enum 0), 2000 ms.  The JSON
-- dead letter e3 (no event_type) fails again and keeps its reason.
-- ---------------------------------------------------------------------------
SELECT propensity.register_schema('events-value', '{"type":"record","name":"Event","fields":[
     {"name":"event_id","type":"string"},{"name":"user_id","type":"string"},
     {"name":"event_type","type":{"type":"enum","name":"EventType","symbols":["IM","CL","PS","CN"]}},
     {"name":"event_time","type":"long"}]}') AS v3_id;
SELECT * FROM propensity.replay_dead_letters('events', 'g1');
SELECT event_id, user_id, event_type, event_time FROM propensity.events WHERE event_id = 'r';
SELECT msg_offset, replayed_at IS NOT NULL AS replayed, replay_error FROM propensity.dead_letters
 WHERE consumer_group = 'g1' ORDER BY msg_offset;
-- replaying every group: g2's copy of offset 7 is stored (its event is
-- already there, so nothing changes) and both groups' e3 fail again
SELECT * FROM propensity.replay_dead_letters();

-- ---------------------------------------------------------------------------
-- COPY into queue_input produces; the view itself reads empty.
-- ---------------------------------------------------------------------------
COPY propensity.queue_input (topic, key, value) FROM stdin;
events	c1	{"event_id":"c1","user_id":"c1","event_type":"IM","event_time":"2026-03-03 00:00+00"}
events	c2	{"event_id":"c2","user_id":"c2","event_type":"IM","event_time":"2026-03-03 00:00+00"}
events	\N	{"event_id":"c3","user_id":"c3","event_type":"IM","event_time":"2026-03-03 00:00+00"}
\.
SELECT count(*) AS view_rows FROM propensity.queue_input;
-- 4 messages: c1, c2, c3 and p1 (produced above for g3, whose event is
-- already stored)
SELECT * FROM propensity.consume('events', 'g1');
SELECT event_id FROM propensity.events WHERE event_id LIKE 'c_' ORDER BY 1;

-- ---------------------------------------------------------------------------
-- Retention.  A topic with 1-hour retention rotates to slot 1 once slot 0
-- has been current for half of it; slot 0 is sealed by the next run; it is
-- truncated once its retention has passed and every group has consumed
-- past it.  A group that has not consumed holds it; dropping that group
-- releases it.  Time passes by moving the slots' timestamps back, not by
-- sleeping, so that a slow machine (or Valgrind) cannot add a rotation.
-- ---------------------------------------------------------------------------
SELECT propensity.create_topic('short', 1, '1 hour');
SELECT propensity.subscribe('short', 'fast');
SELECT propensity.subscribe('short', 'slow');
SELECT propensity.produce('short', 'k', '{"event_id":"s1","user_id":"s","event_type":"IM","event_time":"2026-03-04 00:00+00"}'::jsonb);
SELECT (propensity.consume('short', 'fast')).messages;
CREATE FUNCTION short_topic_ages(minutes integer) RETURNS void LANGUAGE sql AS $$
    UPDATE propensity.topic_slots s
       SET opened_at = opened_at - make_interval(mins => minutes),
           closed_at = closed_at - make_interval(mins => minutes)
      FROM propensity.topics t
     WHERE t.topic_id = s.topic_id AND t.topic = 'short' $$;
-- slot 0 has been current for 29 minutes: less than half the retention
SELECT short_topic_ages(29);
SELECT action, slot FROM propensity.queue_maintain() WHERE topic = 'short';
SELECT short_topic_ages(2);
SELECT action, slot FROM propensity.queue_maintain() WHERE topic = 'short';
SELECT short_topic_ages(61);
SELECT action, slot FROM propensity.queue_maintain() WHERE topic = 'short' ORDER BY 1;
SELECT (propensity.consume('short', 'fast')).messages;
SELECT action, slot FROM propensity.queue_maintain() WHERE topic = 'short' AND action = 'truncated';
SELECT propensity.unsubscribe('short', 'slow');
SELECT (propensity.consume('short', 'fast')).messages;
SELECT action, slot FROM propensity.queue_maintain() WHERE topic = 'short' AND action = 'truncated';
SELECT slot, opened_at IS NOT NULL AS opened, closed_at IS NOT NULL AS closed
  FROM propensity.topic_slots s JOIN propensity.topics t USING (topic_id) WHERE t.topic = 'short' ORDER BY slot;
SELECT count(*) AS left_in_slot_0 FROM propensity.queue_2_0;

-- ---------------------------------------------------------------------------
-- The background worker: started from SQL, it drains what is produced.  It
-- runs as propensity_worker and only against the SQL of its own version:
-- on the 0.3.0 schema it waits, saying so in the log.
-- ---------------------------------------------------------------------------
SET client_min_messages = warning;
ALTER EXTENSION propensity UPDATE;
RESET client_min_messages;
SELECT propensity.pause_subscription('events', 'g2');
SELECT propensity.pause_subscription('events', 'g3');
SELECT propensity.worker_start() IS NOT NULL AS started;
SELECT propensity.worker_start() = propensity.worker_pid() AS same_worker;
SELECT propensity.produce_many('events', ARRAY(SELECT 'w' || (i % 7) FROM generate_series(1, 500) i),
         propensity.encode_events(ARRAY(
           SELECT ROW('2026-03-05 00:00+00'::timestamptz + i * interval '1 minute', 'w' || (i % 7), 'IM',
                      'w-' || i, 2, 200, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::propensity.events
             FROM generate_series(1, 500) i)));
DO $$
BEGIN
    FOR i IN 1..1800 LOOP
        EXIT WHEN (SELECT sum(lag) FROM propensity.queue_lag('events', 'g1')) = 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT count(*) AS worker_events FROM propensity.events WHERE event_id LIKE 'w-%';
SELECT impressions FROM propensity.attribution_totals WHERE advertiser_id = 2;
-- A batch that cannot be stored (here a trigger refuses one event) is not
-- dropped: the worker records the error, retries the messages one at a
-- time, stores the others and dead-letters the one that fails.
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id = 'poison' THEN
        RAISE EXCEPTION 'poisoned event';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON propensity.events
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
SELECT propensity.produce_many('events', ARRAY['k1', 'k2', 'k3'], ARRAY[
    convert_to('{"event_id":"ok-1","user_id":"k1","event_type":"PS","event_time":"2026-03-06T00:00:00Z"}', 'UTF8'),
    convert_to('{"event_id":"poison","user_id":"k2","event_type":"PS","event_time":"2026-03-06T00:00:00Z"}', 'UTF8'),
    convert_to('{"event_id":"ok-2","user_id":"k3","event_type":"PS","event_time":"2026-03-06T00:00:00Z"}', 'UTF8')]);
DO $$
BEGIN
    FOR i IN 1..1800 LOOP
        EXIT WHEN (SELECT sum(lag) FROM propensity.queue_lag('events', 'g1')) = 0;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT event_id FROM propensity.events WHERE event_id IN ('ok-1', 'poison', 'ok-2') ORDER BY 1;
SELECT key, error FROM propensity.dead_letters WHERE consumer_group = 'g1' AND key LIKE 'k_';
-- the failure was recorded, and cleared by the batches that went through
-- after it (last_error once stayed for good); its time stays
SELECT last_error, last_error_at IS NOT NULL AS failed_once FROM propensity.subscriptions
 WHERE consumer_group = 'g1';
DROP TRIGGER refuse_poison ON propensity.events;
SELECT propensity.worker_stop();
SELECT propensity.worker_pid() IS NULL AS stopped;
SELECT propensity.worker_stop() AS stop_again;
