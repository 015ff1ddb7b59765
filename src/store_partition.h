/*
 * store_partition.h - event partitions (store_partition.c): where an event
 * time falls, the horizon that gets partitions of its own, and the
 * partitions a batch of events needs.
 */
#ifndef PROPENSITY_STORE_PARTITION_H
#define PROPENSITY_STORE_PARTITION_H

#include "postgres.h"
#include "utils/timestamp.h"

typedef enum PartitionInterval
{
	PARTITION_HOUR,
	PARTITION_DAY,
	PARTITION_WEEK,
	PARTITION_MONTH
} PartitionInterval;

/* GUCs */
extern int	propensity_partition_interval;	/* a PartitionInterval */
extern int	propensity_partition_max_past;	/* minutes, -1 = no limit */
extern int	propensity_partition_max_future;	/* minutes, -1 = no limit */
extern int	propensity_partitions_per_batch;	/* new partitions one batch may create */

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_store_partition_init(void);

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
