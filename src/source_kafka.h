/*
 * source_kafka.h - Apache Kafka as a source (source_kafka.c), through
 * librdkafka: the consumer of a source declared in propensity.kafka_sources,
 * positioned from the offsets stored in propensity.kafka_offsets, one batch
 * at a time in the caller's transaction (source.h).
 */
#ifndef PROPENSITY_SOURCE_KAFKA_H
#define PROPENSITY_SOURCE_KAFKA_H

#include "postgres.h"

#include "source.h"

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_source_kafka_init(void);

/*
 * One batch of a Kafka source in the current transaction: up to limit
 * messages, waiting up to wait_ms for the first, then taking what the
 * consumer has fetched.  The consumer of the source is kept across calls
 * in this process (the worker) and positioned again from the stored
 * offsets whenever needed; with isolate, as for prop_consume_batch().
 * It consumes the partitions p with p % share_count == share_index (this
 * worker's number among the database's propensity.kafka_workers), each
 * under a session lock that no other process can hold at the same time.
 */
extern ConsumeStatus prop_kafka_consume_batch(const char *source, int share_index, int share_count,
											  int limit, int wait_ms, bool isolate,
											  ConsumeResult *res);

/*
 * Whether the source's consumer in this process is yet to be positioned:
 * the worker then positions it in a transaction of its own (a batch with
 * limit 0), so that start offsets resolved from the brokers (latest, a
 * time) are stored before any message is read.
 */
extern bool prop_kafka_needs_position(const char *source);

/*
 * After a failed batch: the consumer read past what was stored, so it is
 * positioned again from the stored offsets before the next read.
 */
extern void prop_kafka_invalidate(const char *source);

/*
 * After a batch of the source committed: commit its offsets to the Kafka
 * consumer group named by kafka_group too, if any (asynchronously), so that
 * Kafka's lag tools see the progress.  The stored offsets stay the ones
 * that count.
 */
extern void prop_kafka_commit_group(const char *source);

/* Close the consumers of sources not in names[n] (the worker, once a second). */
extern void prop_kafka_close_others(char **names, int n);

/* Note a failed batch on the source (last_error), in the caller's transaction. */
extern void prop_kafka_record_error(const char *source, const char *message);

#endif
