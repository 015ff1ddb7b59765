/*
 * store_scan.h - reading the event partitions in bulk (store_scan.c), the
 * parts score_all's scan and the attribution scan share: the checks before
 * a bulk read, opening a partition, finding its columns, whether its heap
 * pages can be decoded in place, the text of a column, and the driver that
 * splits the users by hash into classes when they outgrow
 * propensity.batch_memory; and the reader of one partition (EventRead):
 * its heap pages decoded in place, or its rows through tuple slots.
 */
#ifndef PROPENSITY_STORE_SCAN_H
#define PROPENSITY_STORE_SCAN_H

#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
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

/*
 * A read of one event partition.  When prop_heap_in_place() allows, the
 * heap's pages are read one by one (prop_event_read_page: the tuples
 * visible to the snapshot, as heapgettup_pagemode lists them) and their
 * leading columns decoded in place (prop_deform_range); otherwise its rows
 * come through a tuple slot (prop_event_read_slot).
 */
typedef struct EventRead
{
	Relation	rel;
	bool		in_place;
	TableScanDesc scan;
	BlockNumber nblocks;		/* in place: the heap's blocks */
	Page		page;			/* in place: the page read last */
	TupleTableSlot *slot;		/* through slots */
	uint64		rows;			/* through slots: rows read */
} EventRead;

/* Begin a read of rel, decoding its columns 1..natts. */
extern void prop_event_read_begin(EventRead *r, Relation rel, int natts);
extern void prop_event_read_end(EventRead *r);

/* Read block blk (checks for interrupts); returns its visible tuples' count. */
static inline int
prop_event_read_page(EventRead *r, BlockNumber blk)
{
	HeapScanDesc hscan = (HeapScanDesc) r->scan;

	heapgetpage(r->scan, blk);
	r->page = BufferGetPage(hscan->rs_cbuf);
	return hscan->rs_ntuples;
}

/* The page's visible tuple i, and its offset. */
static inline HeapTupleHeader
prop_event_read_tuple(EventRead *r, int i, OffsetNumber *off)
{
	*off = ((HeapScanDesc) r->scan)->rs_vistuples[i];
	return (HeapTupleHeader) PageGetItem(r->page, PageGetItemId(r->page, *off));
}

/* The tuple at offset off of the page read last (the same snapshot: still visible). */
static inline HeapTupleHeader
prop_event_read_at(EventRead *r, OffsetNumber off)
{
	return (HeapTupleHeader) PageGetItem(r->page, PageGetItemId(r->page, off));
}

/*
 * The next row into r->slot (its attributes not yet decoded); false at the
 * end.  *tick turns true every 8192 rows, after a check for interrupts:
 * the caller's moment to check its memory.
 */
static inline bool
prop_event_read_slot(EventRead *r, bool *tick)
{
	*tick = (++r->rows & 8191) == 0;
	if (*tick)
		CHECK_FOR_INTERRUPTS();
	return table_scan_getnextslot(r->scan, ForwardScanDirection, r->slot);
}

/*
 * Attributes [from, to) of a heap tuple, in place, from *offp (the offset
 * of attribute from; 0 for the first), which is advanced (heap_deform_tuple
 * stops at none).  Missing trailing attributes read as NULL, which is right
 * when none of them has a stored default (prop_heap_in_place checks).
 * Always inlined: called per row, and left out of line it costs the
 * attribution scan about 14% of its time.
 */
static pg_attribute_always_inline void
prop_deform_range(HeapTupleHeader tup, TupleDesc desc, int from, int to, uint32 *offp,
				  Datum *values, bool *isnull)
{
	bool		hasnulls = (tup->t_infomask & HEAP_HASNULL) != 0;
	bits8	   *bp = tup->t_bits;
	char	   *tp = (char *) tup + tup->t_hoff;
	int			tupnatts = HeapTupleHeaderGetNatts(tup);
	uint32		off = *offp;
	int			i;

	for (i = from; i < to; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (i >= tupnatts || (hasnulls && att_isnull(i, bp)))
		{
			values[i] = (Datum) 0;
			isnull[i] = true;
			continue;
		}
		isnull[i] = false;
		if (att->attlen == -1)
			off = att_align_pointer(off, att->attalign, -1, tp + off);
		else
			off = att_align_nominal(off, att->attalign);
		values[i] = fetchatt(att, tp + off);
		off = att_addlength_pointer(off, att->attlen, tp + off);
	}
	*offp = off;
}

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
