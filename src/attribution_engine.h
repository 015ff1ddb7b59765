/*
 * attribution_engine.h - the session's streaming attribution engine
 * (attribution_engine.c): the ingest pipeline's attribution stage, and
 * what a backfill needs of the state row.  SPI is connected throughout.
 */
#ifndef PROPENSITY_ATTRIBUTION_ENGINE_H
#define PROPENSITY_ATTRIBUTION_ENGINE_H

#include "postgres.h"

#include "attribution_settings.h"
#include "store.h"

/* propensity.attribution_state, as locked by a batch */
typedef struct AttrState
{
	int64		generation;
	bool		has_max;
	int64		max_time;		/* the watermark's event time */
	char		xmin[32];
} AttrState;

/* one ingest batch's attribution stage */
typedef struct AttrIngest
{
	AttrState	state;
	AttrSettingsTable settings;
	bool		snapshot_pushed;	/* the stage's snapshot is active */
} AttrIngest;

/*
 * Before a batch's events are stored: lock the state row, read the
 * settings and bring the session's engine up to the committed state (a
 * rebuild must not see the new events as old ones).  The stage reads the
 * store with a snapshot taken once the lock is held, so that it sees the
 * events of a batch another process committed while this one waited.
 */
extern void prop_attr_ingest_begin(AttrIngest *a);

/* A stage begun but not applied (the caller stores the batch another way). */
extern void prop_attr_ingest_abandon(AttrIngest *a);

/*
 * The n events the batch stored as new (rows with at least the columns
 * store.h's prop_store_array() returns): apply them to the engine and
 * write what it said; out[2..4] get late (and future), conversions
 * evaluated and changelog rows.
 */
extern void prop_attr_ingest_apply(AttrIngest *a, const EventRow *rows, int n, int64 *out);

/* Lock the state row (FOR UPDATE) and read it. */
extern AttrState prop_attr_lock_state(void);

/*
 * After a backfill rewrote the tables: the state row's next generation
 * with the watermark at max_time (none without has_max), and the session's
 * engine dropped, so the next batch rebuilds it from what was written.
 */
extern void prop_attr_engine_restart(bool has_max, int64 max_time);

#endif
