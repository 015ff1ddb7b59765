/*
 * score_scan.h - reading event partitions into a UserTable for batch
 * scoring (score_scan.c); used by score_all and its parallel workers.
 */
#ifndef PROPENSITY_SCORE_SCAN_H
#define PROPENSITY_SCORE_SCAN_H

#include "postgres.h"

#include "core/features.h"
#include "core/user_table.h"
#include "store_scan.h"

/*
 * Accumulate the events up to as_of of one partition, for the users of one
 * hash class, into table.  Returns false when the table outgrew limit_bytes.
 */
extern bool scan_partition(Oid relid, UserTable *table, const FeatModel *model, int64 as_of,
						   HashClass cls, Size limit_bytes);

#endif
