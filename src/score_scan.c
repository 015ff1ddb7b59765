/*
 * score_scan.c - one partition of propensity.events into a UserTable.
 *
 * Heap partitions laid out as the install script makes them are read page
 * at a time: heapgetpage() lists the tuples visible to the snapshot, and the
 * three leading columns are decoded in place.  Anything else goes through
 * tuple slots.  Rows are batched so that their table slots can be
 * prefetched together.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "score_scan.h"
#include "store_scan.h"
#include "util.h"

/*
 * Rows wait in a small batch while their slots are prefetched, so that the
 * cache misses of a large user table overlap instead of queueing.
 */
#define BATCH_ROWS 32
#define BATCH_KEY 32

typedef struct PendingRow
{
	int64		event_us;
	uint32		hash;
	uint32		len;
	FeatEventType type;
	char		key[BATCH_KEY];
} PendingRow;

/* One partition scan for one hash class of users. */
typedef struct BatchScan
{
	UserTable  *table;
	const FeatModel *model;
	int64		as_of;
	HashClass	cls;
	Relation	rel;
	int			nbatch;
	PendingRow	batch[BATCH_ROWS];
} BatchScan;

static void
flush_batch(BatchScan *ss)
{
	int			i;

	for (i = 0; i < ss->nbatch; i++)
	{
		PendingRow *r = &ss->batch[i];

		feat_accumulate(ss->model, ut_lookup(ss->table, r->key, r->len, r->hash),
						r->type, r->event_us, ss->as_of);
	}
	ss->nbatch = 0;
}

/* One event: count it for its user if it is up to as_of and in the class. */
static inline void
consume(BatchScan *ss, int64 event_us, const char *user, uint32 user_len,
		const char *type_text, uint32 type_len)
{
	uint32		hash;
	int			type;
	PendingRow *r;

	if (event_us > ss->as_of)
		return;
	hash = ut_hash(user, user_len);
	if ((uint32) (((uint64) hash * ss->cls.modulus) >> 32) != ss->cls.residue)
		return;
	type = feat_parse_type(type_text, type_len);
	if (unlikely(type < 0))
		prop_unknown_event_type(ss->rel, type_text, type_len);
	if (unlikely(user_len > BATCH_KEY))
	{
		/* long ids skip the batch */
		feat_accumulate(ss->model, ut_lookup(ss->table, user, user_len, hash),
						(FeatEventType) type, event_us, ss->as_of);
		return;
	}
	ut_prefetch(ss->table, hash);
	r = &ss->batch[ss->nbatch];
	r->event_us = event_us;
	r->hash = hash;
	r->len = user_len;
	r->type = (FeatEventType) type;
	memcpy(r->key, user, user_len);
	if (++ss->nbatch == BATCH_ROWS)
		flush_batch(ss);
}

/*
 * True when the partition is a heap whose first three columns are
 * event_time, user_id and event_type, NOT NULL, as the install script makes
 * them; then scan_heap_pages can decode them straight from the page.
 */
static bool
heap_fast_path_ok(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	static const char *const names[3] = {"event_time", "user_id", "event_type"};
	static const Oid types[3] = {TIMESTAMPTZOID, TEXTOID, TEXTOID};
	int			i;

	if (!prop_heap_in_place(rel, 3))
		return false;
	for (i = 0; i < 3; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || !att->attnotnull ||
			att->atttypid != types[i] || strcmp(NameStr(att->attname), names[i]) != 0)
			return false;
	}
	return TupleDescAttr(desc, 0)->attlen == sizeof(int64) &&
		TupleDescAttr(desc, 0)->attalign == TYPALIGN_DOUBLE;
}

/*
 * Page-at-a-time over a heap: heapgetpage() pins the page and lists the
 * tuples visible to our snapshot (as heapgettup_pagemode does), and the
 * three leading columns are read in place.  Returns false when the table
 * outgrew limit_bytes.
 */
static bool
scan_heap_pages(BatchScan *ss, Size limit_bytes)
{
	TableScanDesc scan = table_beginscan_strat(ss->rel, GetActiveSnapshot(), 0, NULL,
											   true, false);
	HeapScanDesc hscan = (HeapScanDesc) scan;
	BlockNumber blk;
	bool		fits = true;

	for (blk = 0; blk < hscan->rs_nblocks; blk++)
	{
		Page		page;
		int			i;

		if ((blk & 63) == 0 && ut_memory(ss->table) > limit_bytes)
		{
			fits = false;
			break;
		}
		heapgetpage(scan, blk);	/* checks for interrupts */
		page = BufferGetPage(hscan->rs_cbuf);
		for (i = 0; i < hscan->rs_ntuples; i++)
		{
			HeapTupleHeader tup = (HeapTupleHeader)
				PageGetItem(page, PageGetItemId(page, hscan->rs_vistuples[i]));
			char	   *data = (char *) tup + tup->t_hoff;
			uint32		off;
			int64		event_us;
			const char *user;
			const char *type_text;
			uint32		user_len;
			uint32		type_len;
			struct varlena *user_copy = NULL;
			struct varlena *type_copy = NULL;

			if (unlikely(HeapTupleHeaderGetNatts(tup) < 3))
				continue;		/* cannot happen: the columns are NOT NULL */
			memcpy(&event_us, data, sizeof(int64));
			off = att_align_pointer(sizeof(int64), TYPALIGN_INT, -1, data + sizeof(int64));
			user = prop_text_contents(data + off, &user_len, &user_copy);
			off = att_addlength_pointer(off, -1, data + off);
			off = att_align_pointer(off, TYPALIGN_INT, -1, data + off);
			type_text = prop_text_contents(data + off, &type_len, &type_copy);
			consume(ss, event_us, user, user_len, type_text, type_len);
			if (unlikely(user_copy != NULL))
				pfree(user_copy);
			if (unlikely(type_copy != NULL))
				pfree(type_copy);
		}
	}
	table_endscan(scan);
	return fits;
}

/* Any table access method and column order, through tuple slots. */
static bool
scan_slots(BatchScan *ss, Size limit_bytes)
{
	static const char *const names[3] = {"event_time", "user_id", "event_type"};
	AttrNumber	attnums[3];
	AttrNumber	a_time;
	AttrNumber	a_user;
	AttrNumber	a_type;
	int			natts;
	TupleTableSlot *slot;
	TableScanDesc scan;
	uint64		rows = 0;
	bool		fits = true;

	prop_event_columns(ss->rel, names, NULL, 3, attnums);
	a_time = attnums[0];
	a_user = attnums[1];
	a_type = attnums[2];
	natts = Max(a_time, Max(a_user, a_type));
	slot = table_slot_create(ss->rel, NULL);
	scan = table_beginscan(ss->rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		struct varlena *user;
		struct varlena *type_text;

		if ((++rows & 8191) == 0)
		{
			CHECK_FOR_INTERRUPTS();
			if (ut_memory(ss->table) > limit_bytes)
			{
				fits = false;
				break;
			}
		}
		slot_getsomeattrs(slot, natts);
		if (slot->tts_isnull[a_time - 1] || slot->tts_isnull[a_user - 1] ||
			slot->tts_isnull[a_type - 1])
			continue;			/* NOT NULL columns: cannot happen */
		user = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(slot->tts_values[a_user - 1]));
		type_text = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(slot->tts_values[a_type - 1]));
		consume(ss, DatumGetTimestampTz(slot->tts_values[a_time - 1]),
				VARDATA_ANY(user), VARSIZE_ANY_EXHDR(user),
				VARDATA_ANY(type_text), VARSIZE_ANY_EXHDR(type_text));
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return fits;
}

/*
 * Accumulate the events of one partition for the users of one hash class.
 * Returns false when the table outgrew limit_bytes.
 */
bool
scan_partition(Oid relid, UserTable *table, const FeatModel *model, int64 as_of,
			   HashClass cls, Size limit_bytes)
{
	BatchScan  *ss = palloc(sizeof(BatchScan));
	bool		fits;

	ss->rel = prop_event_partition_open(relid);
	ss->table = table;
	ss->model = model;
	ss->as_of = as_of;
	ss->cls = cls;
	ss->nbatch = 0;
	if (heap_fast_path_ok(ss->rel))
		fits = scan_heap_pages(ss, limit_bytes);
	else
		fits = scan_slots(ss, limit_bytes);
	flush_batch(ss);
	table_close(ss->rel, AccessShareLock);
	pfree(ss);
	return fits && ut_memory(table) <= limit_bytes;
}

