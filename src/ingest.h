/*
 * ingest.h - the pipeline of one batch of events (ingest.c), in the
 * caller's transaction: partitions, store, then each downstream stage
 * (attribution, history).  ingest(), the worker, consume() and
 * replay_dead_letters() all come through here.
 */
#ifndef PROPENSITY_INGEST_H
#define PROPENSITY_INGEST_H

#include "postgres.h"
#include "utils/array.h"

#include "store.h"

/* what a batch did: out[] of prop_ingest() and prop_ingest_rows() */
#define INGEST_INSERTED 0
#define INGEST_DUPLICATES 1
#define INGEST_LATE 2
#define INGEST_EVALUATED 3
#define INGEST_DELTAS 4
#define INGEST_NOUT 5

/*
 * Store an events[] array (of type array_type) and, with attribute, run the
 * attribution engine on the new events.  out[INGEST_NOUT]: inserted,
 * duplicates, late, conversions evaluated, changelog rows.  With or
 * without an SPI connection.
 */
extern void prop_ingest(ArrayType *batch, Oid array_type, bool attribute, int64 *out);

/*
 * The same for rows[n] decoded and valid (the worker's path, by COPY; a
 * batch holding an event stored before goes the way of prop_ingest()).
 */
extern void prop_ingest_rows(EventRow *rows, int n, Oid rowtype, bool attribute, int64 *out);

#endif
