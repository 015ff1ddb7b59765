#!/usr/bin/env bash
# Kafka ingest benchmark, as root: bash test/bench/kafka.sh  (make bench-kafka)
# In one run, on one throwaway cluster and one mock Kafka cluster
# (librdkafka's, 8 partitions; test/kafka/mock_cluster):
#   (p) MESSAGES generated events as Avro messages (wire format), produced
#       to Kafka by confluent-kafka, and to the embedded queue;
#   (c) the baseline: the same rows by binary COPY into the events table;
#   (k) the ingest worker draining the Kafka topic, events only.  The
#       mock cluster keeps about 5 MB per partition and drops the oldest,
#       so the messages are produced in chunks of CHUNK with the source
#       paused, and each is drained before the next is produced; (k) is the
#       sum of the drain times (from resuming the source to the chunk's last
#       message stored, reconnecting and positioning included);
#   (q) the ingest worker draining the embedded queue, events only;
#   (l) produce-to-visible latency: confluent-kafka produces JSON events at
#       a steady RATE per second for LAT_SECONDS (test/bench/kafka_latency.py,
#       which logs each message's partition, offset and produce time) while
#       a session samples the stored offsets every 5 ms; a message is
#       visible at the first sample whose offset of its partition is past it.
# Figures are printed as ratios against (c) and (q) measured in the same run.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
MESSAGES=${MESSAGES:-10000000}
USERS=${USERS:-1000000}
CHUNK=${CHUNK:-100000}
RATE=${RATE:-20000}
LAT_SECONDS=${LAT_SECONDS:-20}
DIR=${BENCH_DIR:-/tmp/propensity-bench-kafka}
. "$here/docker/pg-temp.sh"
build_and_install "$here"
make -C "$here" -s test/kafka/mock_cluster
mkdir -p "$DIR"
rm -f "$DIR/mock.in"; mkfifo "$DIR/mock.in"
sleep infinity > "$DIR/mock.in" & hold=$!
"$here/test/kafka/mock_cluster" 1 events:8 latency:8 < "$DIR/mock.in" > "$DIR/mock.out" 2> "$DIR/mock.err" & mock=$!
trap 'pg_temp_stop "$DIR"; kill $mock $hold 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$DIR/mock.out" ] && break; sleep 0.1; done
bootstrap=$(head -1 "$DIR/mock.out")
pg_temp_start "$DIR" 5494 "shared_buffers = 4GB" "max_wal_size = 16GB" "work_mem = 64MB" \
    "maintenance_work_mem = 1GB" "checkpoint_timeout = 30min" \
    "propensity.database = 'bench'" "propensity.batch_size = 10000" "propensity.poll_interval = 20"
psql_pg -d postgres -c "CREATE DATABASE bench"
bin="$DIR/events.bin"

psql_pg -d bench <<SQL
CREATE EXTENSION propensity;
SET jit = off;
\echo '== setup: $MESSAGES generated events (10% out of order by up to 6 hours), Kafka at $bootstrap'
CREATE UNLOGGED TABLE gen AS
SELECT row_number() OVER () AS n, ROW(g.event_time, g.user_id, g.event_type, g.event_id, g.advertiser_id,
           g.campaign_id, g.auction_id, g.pixel_id, g.publisher, g.creative, g.placement,
           g.product, g.quantity, g.revenue)::propensity.events AS e
  FROM propensity.generate_events(11, $MESSAGES, $USERS, '2026-10-01', '30 days', 0.1, '6 hours') g;
CREATE INDEX ON gen (n);
VACUUM ANALYZE gen;
SELECT propensity.ensure_partitions('2026-09-30', '2026-11-02');
SELECT propensity.create_topic('events', 8);
COPY (SELECT (e).* FROM gen ORDER BY n) TO '$bin' (FORMAT binary);
\timing on
\echo '== (p) produce $MESSAGES Avro messages to the embedded queue (Kafka: by chunks, below)'
DO \$\$
DECLARE lo bigint := 0;
BEGIN
    WHILE lo < $MESSAGES LOOP
        PERFORM propensity.produce_many('events',
                  ARRAY(SELECT (e).user_id FROM gen WHERE n > lo AND n <= lo + 100000 ORDER BY n),
                  propensity.encode_events(ARRAY(SELECT e FROM gen WHERE n > lo AND n <= lo + 100000 ORDER BY n)));
        lo := lo + 100000;
    END LOOP;
END
\$\$;
\timing off
CHECKPOINT;
\echo '== (c) binary COPY of the same rows into propensity.events (PK + user/time index)'
SELECT clock_timestamp() AS t0 \gset
COPY propensity.events FROM '$bin' (FORMAT binary);
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS copy_s \gset
SELECT round(:copy_s::numeric, 2) AS copy_seconds, round($MESSAGES / :copy_s) AS copy_rows_per_s;
CREATE TABLE copy_time AS SELECT :copy_s::float8 AS copy_s;
CREATE TABLE drain_times (s float8);
TRUNCATE propensity.events;
CHECKPOINT;
\echo '== (k) the worker drains the Kafka topic by chunks of $CHUNK: events only'
SELECT propensity.create_kafka_source('events', '$bootstrap', 'events', attribute => false);
SELECT propensity.alter_kafka_source('events', enabled => false);
SQL
for ((lo = 0; lo < MESSAGES; lo += CHUNK)); do
    psql_pg -d bench -q <<SQL
COPY (SELECT (e).user_id, replace(encode(m, 'base64'), E'\n', '')
        FROM (SELECT g.e, unnest(propensity.encode_events(ARRAY[g.e])) AS m
                FROM gen g WHERE g.n > $lo AND g.n <= $lo + $CHUNK ORDER BY g.n) x)
  TO PROGRAM '/usr/bin/python3 $here/docker/kafka_produce.py $bootstrap events';
SELECT clock_timestamp() AS t0 \gset
SELECT propensity.alter_kafka_source('events', enabled => true);
DO \$\$
BEGIN
    WHILE coalesce((SELECT sum(next_offset) FROM propensity.kafka_offsets WHERE source = 'events'), 0)
          < least($lo + $CHUNK, $MESSAGES) LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
END
\$\$;
INSERT INTO drain_times SELECT extract(epoch FROM clock_timestamp() - :'t0');
SELECT propensity.alter_kafka_source('events', enabled => false);
SQL
done
psql_pg -d bench <<SQL
SELECT sum(s) AS kafka_s FROM drain_times \gset
SELECT copy_s FROM copy_time \gset
SELECT round(:kafka_s::numeric, 2) AS worker_seconds, round($MESSAGES / :kafka_s) AS worker_msgs_per_s,
       round((:copy_s / :kafka_s)::numeric, 2) AS kafka_vs_copy,
       (SELECT count(*) FROM propensity.events) AS events_stored,
       (SELECT count(*) FROM propensity.dead_letters) AS dead_letters,
       (SELECT count(*) FROM drain_times) AS chunks;
-- the worker's private memory (RssAnon: its resident size less the shared buffers it touched)
SELECT (regexp_match(pg_read_file('/proc/' || propensity.worker_pid() || '/status'),
                     'RssAnon:\s+(\d+) kB'))[1]::bigint / 1024 AS worker_private_mb_after_kafka;
TRUNCATE propensity.events;
CHECKPOINT;
\echo '== (q) the worker drains the embedded queue: events only'
SELECT clock_timestamp() AS t0 \gset
SELECT propensity.subscribe('events', 'plain', attribute => false);
DO \$\$
BEGIN
    WHILE (SELECT messages FROM propensity.subscriptions WHERE consumer_group = 'plain') < $MESSAGES LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END
\$\$;
SELECT extract(epoch FROM clock_timestamp() - :'t0') AS queue_s \gset
SELECT round(:queue_s::numeric, 2) AS worker_seconds, round($MESSAGES / :queue_s) AS worker_msgs_per_s,
       round((:copy_s / :queue_s)::numeric, 2) AS queue_vs_copy,
       (SELECT count(*) FROM propensity.events) AS events_stored;
\echo '== ratios (targets: Kafka >= 0.7x COPY, and not slower than the embedded queue)'
SELECT round((:copy_s / :kafka_s)::numeric, 2) AS kafka_vs_copy,
       round((:copy_s / :queue_s)::numeric, 2) AS queue_vs_copy,
       round((:queue_s / :kafka_s)::numeric, 2) AS kafka_vs_queue;
SQL
psql_pg -d bench <<SQL
TRUNCATE propensity.events;
\echo '== (l) produce-to-visible latency at $RATE messages/s for $LAT_SECONDS s (JSON, events only)'
SELECT propensity.create_kafka_source('lat', '$bootstrap', 'latency', attribute => false);
DO \$\$
BEGIN
    WHILE (SELECT count(*) FROM propensity.kafka_offsets WHERE source = 'lat') < 8 LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END
\$\$;
CREATE UNLOGGED TABLE lat_samples (t timestamptz, p int, next_offset bigint);
CREATE UNLOGGED TABLE lat_msgs (p int, o bigint, sent_ms bigint);
SQL
psql_pg -d bench -c "DO \$\$
DECLARE t_end timestamptz := clock_timestamp() + interval '$((LAT_SECONDS + 5)) seconds';
BEGIN
    WHILE clock_timestamp() < t_end LOOP
        INSERT INTO lat_samples SELECT clock_timestamp(), partition, next_offset
          FROM propensity.kafka_offsets WHERE source = 'lat';
        PERFORM pg_sleep(0.005);
    END LOOP;
END
\$\$" & poller=$!
/usr/bin/python3 "$here/test/bench/kafka_latency.py" "$bootstrap" latency "$RATE" "$LAT_SECONDS" "$DIR/lat.tsv"
wait $poller
chmod a+r "$DIR/lat.tsv"
psql_pg -d bench <<SQL
COPY lat_msgs FROM '$DIR/lat.tsv';
CREATE INDEX ON lat_samples (p, next_offset, t);
ANALYZE lat_samples, lat_msgs;
SELECT count(*) AS messages, count(v.t) AS seen_visible,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.t) * 1000 - m.sent_ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM v.t) * 1000 - m.sent_ms)::numeric, 1) AS p99_ms,
       round(max(extract(epoch FROM v.t) * 1000 - m.sent_ms)::numeric, 1) AS max_ms
  FROM lat_msgs m
  LEFT JOIN LATERAL (SELECT s.t FROM lat_samples s WHERE s.p = m.p AND s.next_offset > m.o
                      ORDER BY s.next_offset, s.t LIMIT 1) v ON true;
SELECT count(*) AS lat_events_stored FROM propensity.events WHERE event_id LIKE 'lat-%';
SELECT (regexp_match(pg_read_file('/proc/' || propensity.worker_pid() || '/status'),
                     'RssAnon:\s+(\d+) kB'))[1]::bigint / 1024 AS worker_private_mb_at_end;
SQL
