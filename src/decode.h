/*
 * decode.h - messages (Avro wire format or JSON) to rows of propensity.events,
 * for the worker, consume() and replay_dead_letters().
 */
#ifndef PROPENSITY_DECODE_H
#define PROPENSITY_DECODE_H

#include "postgres.h"
#include "access/tupdesc.h"

/* the columns of propensity.events, in table order */
#define EVENT_NATTS 14
#define EV_TIME 0
#define EV_USER 1
#define EV_TYPE 2
#define EV_ID 3
#define EV_ADVERTISER 4
#define EV_CAMPAIGN 5
#define EV_AUCTION 6
#define EV_PIXEL 7
#define EV_PUBLISHER 8
#define EV_CREATIVE 9
#define EV_PLACEMENT 10
#define EV_PRODUCT 11
#define EV_QUANTITY 12
#define EV_REVENUE 13

#define DECODE_ERR_LEN 256

/* GUCs of decoding, defined by prop_decode_init() */
extern int	propensity_max_message_values;
extern int	propensity_max_message_size;	/* bytes */
extern int	propensity_max_schema_size; /* bytes */

/* Define the decoding GUCs; called from _PG_init. */
extern void prop_decode_init(void);

/* One decoded event: the values of a propensity.events row. */
typedef struct EventRow
{
	Datum		values[EVENT_NATTS];
	bool		nulls[EVENT_NATTS];
} EventRow;

/*
 * Store rows in propensity.events by COPY (binary, multi-insert), in the
 * current transaction; partitions must exist.  Returns the rows stored.  A
 * row already stored raises unique_violation.  Defined in bulk_insert.c.
 */
extern uint64 prop_copy_events(const EventRow *rows, int n);

/*
 * Store rows and, with attribute, run attribution on them (the worker's
 * path); out[5] as for prop_ingest().  Defined in attribution_engine.c.
 */
extern void prop_ingest_rows(EventRow *rows, int n, Oid rowtype, bool attribute, int64 *out);

/*
 * After events were stored, inside an SPI connection: correct the score
 * history of their users for the tracked models.  Defined in history.c.
 */
extern void prop_history_after_rows(const EventRow *rows, int n);
extern void prop_history_after_array(Datum batch, Oid array_type);

/*
 * Decode a message into the values of an events row (allocated in the
 * current memory context).  Never throws for bad input: returns false with
 * the reason in err (DECODE_ERR_LEN bytes).  Needs an SPI connection, to
 * look up writer schemas not seen before.
 */
extern bool prop_decode_message(const char *buf, size_t len, Datum *values, bool *nulls,
								char *err);

/* Raise an error unless desc is the row type of propensity.events. */
extern void prop_check_events_rowtype(TupleDesc desc);

#endif
