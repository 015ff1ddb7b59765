/*
 * history.h - the event-time propensity history of one user (docs/computing.md section
 * 4): one point per distinct event time t_k, valued from the events with
 * event_time <= t_k.  Pure C, allocation-free: one sweep over the user's
 * events in time order, with per-term window edges and decayed sums.
 */
#ifndef PROPENSITY_HISTORY_H
#define PROPENSITY_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "features.h"

typedef struct HistEvent
{
	int64_t		time_us;
	FeatEventType type;
} HistEvent;

/* Called once per point: t and the model's features as of t (nterms values). */
typedef void (*HistEmit) (void *arg, int64_t t_us, const double *features);

/*
 * Sweep events[0 .. n-1], which must be sorted by time, and emit the points
 * at t >= from_us in ascending order.  Earlier points are computed but not
 * emitted (later ones depend on them only through the sums).
 */
extern void hist_points(const FeatModel *model, const HistEvent *events, size_t n,
						int64_t from_us, HistEmit emit, void *arg);

/*
 * A sweep that can stop and go on: what hist_points() carries from point
 * to point.  A user's state between batches is this and the events its
 * window terms still need (see hist_sweep_compact()).
 */
typedef struct HistSweep
{
	size_t		next;			/* events swept */
	size_t		left[FEAT_MAX_TERMS];	/* window terms: first event still inside */
	double		left_count[FEAT_MAX_TERMS]; /* ... and events of the type before it */
	double		seen[FEAT_NTYPES];	/* events of each type up to prev_t */
	double		acc[FEAT_MAX_TERMS];	/* the features at prev_t */
	int64_t		prev_t;			/* time of the last point */
	uint64_t	points;			/* points computed */
} HistSweep;

/* A sweep before any event. */
extern void hist_sweep_init(HistSweep *s);

/*
 * Go on over events[s->next .. n-1]: events[0 .. n-1] sorted by time, the
 * first s->next of them the ones already swept (after compaction, the ones
 * kept), and every later one at a time after s->prev_t when s->points > 0
 * (an event at prev_t or before changes points already computed: sweep the
 * user again from the start).  Emits the points at t >= from_us.  The
 * points are the very doubles hist_points() computes over all the events
 * at once: the sweep does the same operations in the same order.
 */
extern void hist_sweep_run(const FeatModel *model, HistSweep *s, const HistEvent *events, size_t n,
						   int64_t from_us, HistEmit emit, void *arg);

/*
 * How many leading events the sweep no longer needs (those before every
 * window term's first event still inside, and already swept); the caller
 * drops them from its array, and the sweep's indexes are moved to match.
 */
extern size_t hist_sweep_compact(const FeatModel *model, HistSweep *s);

#endif
