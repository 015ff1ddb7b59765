/*
 * store_scan.h - reading the event partitions in bulk (store_scan.c), the
 * parts score_all's scan and the attribution scan share: the checks before
 * a bulk read, opening a partition, finding its columns, whether its heap
 * pages can be decoded in place, the text of a column, and the driver that
 * splits the users by hash into classes when they outgrow
 * propensity.batch_memory.
 */
#ifndef PROPENSITY_STORE_SCAN_H
#define PROPENSITY_STORE_SCAN_H

#include "postgres.h"
#include "utils/rel.h"

/*
 * A bulk read too large for its memory splits the users by hash into
 * classes, read one after another: the users with
 * floor(hash * modulus / 2^32) == residue.
 */
typedef struct HashClass
{
	uint32		modulus;
	uint32		residue;
} HashClass;

/* GUCs of the bulk reads (score_all, attribute_batch, the backfill) */
extern int	propensity_batch_memory;	/* kB */
extern bool propensity_batch_fast_scan;

/* Defines the GUCs of this room (from _PG_init). */
extern void prop_store_scan_init(void);

/*
 * Before a bulk read by who: the caller may read propensity.events, which
 * has no row-level security (hint: what to use instead).  Returns the
 * parent table, locked AccessShare so that partitions are not attached or
 * detached under the read.
 */
extern Relation prop_events_scan_begin(const char *who, const char *hint);

/* A leaf partition, locked AccessShare; an error unless it is a plain table. */
extern Relation prop_event_partition_open(Oid relid);

/*
 * The attribute numbers of columns names[n] of rel (of types[n], unless
 * types is NULL); an error when one is missing.
 */
extern void prop_event_columns(Relation rel, const char *const *names, const Oid *types, int n,
							   AttrNumber *attnums);

/*
 * Whether rel's heap pages can be decoded in place up to column natts:
 * propensity.batch_fast_scan, the heap access method, and none of those
 * columns with a value stored for rows older than the column.
 */
extern bool prop_heap_in_place(Relation rel, int natts);

/* An unknown event type in a row of rel. */
extern void prop_unknown_event_type(Relation rel, const char *type, uint32 len) pg_attribute_noreturn();

/*
 * Read the users class by class: pass(cls, arg) reads one class and says
 * whether it fitted in memory; one that did not is split in two and read
 * again, up to 65536 classes, past which the read is an error ("...is too
 * small to <what>").
 */
typedef bool (*HashClassPass) (HashClass cls, void *arg);
extern void prop_hash_class_passes(HashClassPass pass, void *arg, const char *what);

/* A text datum's contents; detoasts into *copy (caller frees) only when needed. */
static inline const char *
prop_text_contents(Pointer p, uint32 *len, struct varlena **copy)
{
	struct varlena *v = (struct varlena *) p;

	if (VARATT_IS_SHORT(v))
	{
		*len = VARSIZE_SHORT(v) - VARHDRSZ_SHORT;
		return VARDATA_SHORT(v);
	}
	if (VARATT_IS_4B_U(v))
	{
		*len = VARSIZE(v) - VARHDRSZ;
		return VARDATA(v);
	}
	*copy = pg_detoast_datum_packed(v);
	*len = VARSIZE_ANY_EXHDR(*copy);
	return VARDATA_ANY(*copy);
}

#endif
