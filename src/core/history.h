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

#endif
