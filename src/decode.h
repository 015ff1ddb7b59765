/*
 * decode.h - messages (Avro wire format or JSON) to rows of propensity.events
 * (decode.c), for the worker, consume() and replay_dead_letters().
 */
#ifndef PROPENSITY_DECODE_H
#define PROPENSITY_DECODE_H

#include "postgres.h"

#include "store.h"

#define DECODE_ERR_LEN 256

/* GUCs of decoding, defined by prop_decode_init() */
extern int	propensity_max_message_values;
extern int	propensity_max_message_size;	/* bytes */
extern int	propensity_max_schema_size; /* bytes */

/* Define the decoding GUCs; called from _PG_init. */
extern void prop_decode_init(void);

/*
 * Decode a message into the values of an events row (allocated in the
 * current memory context).  Never throws for bad input: returns false with
 * the reason in err (DECODE_ERR_LEN bytes).  Needs an SPI connection, to
 * look up writer schemas not seen before.
 */
extern bool prop_decode_message(const char *buf, size_t len, Datum *values, bool *nulls,
								char *err);

#endif
