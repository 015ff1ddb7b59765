/*
 * batch_scan.h - reading event partitions into a UserTable for batch
 * scoring (batch_scan.c); used by score_all and its parallel workers.
 */
#ifndef PROPENSITY_BATCH_SCAN_H
#define PROPENSITY_BATCH_SCAN_H

#include "postgres.h"

#include "core/features.h"
#include "core/user_table.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

typedef struct HashClass
{
	uint32		modulus;		/* users with floor(hash * modulus / 2^32) == residue */
	uint32		residue;
} HashClass;

/*
 * Accumulate the events up to as_of of one partition, for the users of one
 * hash class, into table.  Returns false when the table outgrew limit_bytes.
 */
extern bool scan_partition(Oid relid, UserTable *table, const FeatModel *model, int64 as_of,
						   HashClass cls, Size limit_bytes);

/*
 * Defined in batch.c, for the batch readers of propensity.events: its oid
 * (an error when missing), and the leaf partitions that can hold events up
 * to as_of.
 */
extern Oid	prop_events_relid(void);
extern List *prop_event_partitions(Oid parent, TimestampTz as_of);

#endif
