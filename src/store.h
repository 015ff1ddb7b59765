/*
 * store.h - the events table (store.c): its one lookup, its row type,
 * the list of its partitions a scan reads, and the two ways a batch goes
 * in (COPY of decoded rows, INSERT of an events[] array), both skipping
 * nothing and storing each event once.  Partitions are store_partition.h's.
 */
#ifndef PROPENSITY_STORE_H
#define PROPENSITY_STORE_H

#include "postgres.h"
#include "access/tupdesc.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/timestamp.h"

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

/* One event as the columns of propensity.events. */
typedef struct EventRow
{
	Datum		values[EVENT_NATTS];
	bool		nulls[EVENT_NATTS];
} EventRow;

/*
 * propensity.events and its row type; an error with a hint when the
 * extension is not installed.
 */
extern Oid	prop_events_relid(void);
extern Oid	prop_events_rowtype(void);

/* Raises an error unless desc has the columns of propensity.events. */
extern void prop_check_events_rowtype(TupleDesc desc);

/* Leaf partitions that can hold events up to as_of, in CurrentMemoryContext. */
extern List *prop_event_partitions(Oid parent, TimestampTz as_of);

/*
 * Store rows[n] by COPY's own machinery (binary, partition routing,
 * multi-insert).  A row stored before makes it fail with a unique
 * violation: the caller falls back to prop_store_array().
 */
extern uint64 prop_store_copy(const EventRow *rows, int n);

/*
 * Store an events[] array (SPI connected) by INSERT ... ON CONFLICT DO
 * NOTHING; returns how many were new.  With new_rows, *new_rows gets those
 * (in SPI's memory), with the columns the attribution engine reads set:
 * user, type, time, id, advertiser, campaign, auction and pixel.
 */
extern uint64 prop_store_array(Datum batch, Oid array_type, EventRow **new_rows);

/* The partitions the events of an events[] array, or of rows[n], need (SPI connected). */
extern void prop_ensure_array_partitions(ArrayType *batch);
extern void prop_ensure_row_partitions(const EventRow *rows, int n);

#endif
