/*
 * source_queue.h - the embedded queue as a source (source_queue.c): one
 * consumer batch in the caller's transaction, used by the ingest worker
 * and by consume().
 */
#ifndef PROPENSITY_SOURCE_QUEUE_H
#define PROPENSITY_SOURCE_QUEUE_H

#include "postgres.h"

#include "source.h"

/*
 * Consume up to limit messages of topic for group, in the current
 * transaction (READ COMMITTED).  With isolate, a failure to store the
 * batch's events dead-letters them instead of raising the error.
 */
extern ConsumeStatus prop_consume_batch(const char *group, const char *topic, int limit,
										bool isolate, ConsumeResult *res);

/* Note a failed batch on its subscription (last_error, last_error_at). */
extern void prop_record_error(const char *group, const char *topic, const char *message);

#endif
