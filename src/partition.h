/*
 * partition.h - event partitions: where an event time falls, the horizon
 * that gets partitions of its own, and the partitions a batch of events
 * needs (partition.c).
 */
#ifndef PROPENSITY_PARTITION_H
#define PROPENSITY_PARTITION_H

#include "postgres.h"
#include "utils/timestamp.h"

/* new partitions one batch may create (GUC, defined in propensity.c) */
extern int	propensity_partitions_per_batch;

/* The partition range [lo, hi) of t and whether t is within the horizon. */
extern void prop_partition_range(TimestampTz t, TimestampTz *lo, TimestampTz *hi, bool *in_horizon);

/* Times in [lo, hi) get partitions of their own (infinite when unlimited). */
extern void prop_partition_horizon(TimestampTz *lo, TimestampTz *hi);

/*
 * Create the missing partitions of the ranges that hold times[0..n), within
 * the horizon, at most propensity.partitions_per_batch of them.  Needs an
 * SPI connection; returns how many were created.
 */
extern int	prop_ensure_batch_partitions(const TimestampTz *times, int n);

#endif
