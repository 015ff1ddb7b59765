/*
 * source_queue.h - the embedded queue as a source (source_queue.c): one
 * consumer batch in the caller's transaction, used by the ingest worker
 * and by consume().
 */
#ifndef PROPENSITY_SOURCE_QUEUE_H
#define PROPENSITY_SOURCE_QUEUE_H

#include "postgres.h"

#include "source.h"

extern int	propensity_batch_size;	/* messages per batch */
extern int	propensity_batch_bytes; /* message bytes per batch, kB */

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_source_queue_init(void);

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
