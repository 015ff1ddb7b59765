/*
 * score_scan.c - one partition of propensity.events into a UserTable.
 *
 * The partition is read by store_scan.c's EventRead: heap pages with their
 * columns decoded in place, or tuple slots.  Rows are batched so that their
 * table slots can be prefetched together.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/rel.h"

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
	AttrNumber	a_time;			/* the columns read */
	AttrNumber	a_user;
	AttrNumber	a_type;
	int			natts;			/* attributes decoded */
	bool		leading;		/* columns_lead() */
	Datum	   *values;			/* natts, in place */
	bool	   *isnull;
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

/* One row's three columns, from values[]/isnull[] by attribute number. */
static inline void
consume_row(BatchScan *ss, const Datum *values, const bool *isnull)
{
	struct varlena *user_copy = NULL;
	struct varlena *type_copy = NULL;
	const char *user;
	const char *type_text;
	uint32		user_len;
	uint32		type_len;

	if (unlikely(isnull[ss->a_time - 1] || isnull[ss->a_user - 1] || isnull[ss->a_type - 1]))
		return;					/* NOT NULL columns: cannot happen */
	user = prop_text_contents(DatumGetPointer(values[ss->a_user - 1]), &user_len, &user_copy);
	type_text = prop_text_contents(DatumGetPointer(values[ss->a_type - 1]), &type_len, &type_copy);
	consume(ss, DatumGetTimestampTz(values[ss->a_time - 1]), user, user_len, type_text, type_len);
	if (unlikely(user_copy != NULL))
		pfree(user_copy);
	if (unlikely(type_copy != NULL))
		pfree(type_copy);
}

/*
 * Whether the three columns lead the row as the install script makes them:
 * event_time, user_id and event_type, NOT NULL.  Their offsets then follow
 * from the tuple alone, and read_leading() reads them without the general
 * decoder (serial score_all is about 15% faster for it).
 */
static bool
columns_lead(Relation rel, const AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	static const Oid types[3] = {TIMESTAMPTZOID, TEXTOID, TEXTOID};
	int			i;

	for (i = 0; i < 3; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (attnums[i] != i + 1 || !att->attnotnull || att->atttypid != types[i])
			return false;
	}
	return TupleDescAttr(desc, 0)->attlen == sizeof(int64) &&
		TupleDescAttr(desc, 0)->attalign == TYPALIGN_DOUBLE;
}

/* One row of that layout. */
static inline void
read_leading(BatchScan *ss, HeapTupleHeader tup)
{
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
		return;					/* cannot happen: the columns are NOT NULL */
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

/*
 * The heap's pages one by one, the columns decoded in place.  Returns
 * false when the table outgrew limit_bytes.
 */
static bool
scan_heap_pages(BatchScan *ss, EventRead *r, Size limit_bytes)
{
	TupleDesc	desc = RelationGetDescr(ss->rel);
	BlockNumber blk;

	for (blk = 0; blk < r->nblocks; blk++)
	{
		int			ntuples;
		int			i;

		if ((blk & 63) == 0 && ut_memory(ss->table) > limit_bytes)
			return false;
		ntuples = prop_event_read_page(r, blk);	/* checks for interrupts */
		for (i = 0; i < ntuples; i++)
		{
			OffsetNumber off;
			HeapTupleHeader tup = prop_event_read_tuple(r, i, &off);
			uint32		pos = 0;

			if (ss->leading)
				read_leading(ss, tup);
			else
			{
				prop_deform_range(tup, desc, 0, ss->natts, &pos, ss->values, ss->isnull);
				consume_row(ss, ss->values, ss->isnull);
			}
		}
	}
	return true;
}

/* Any table access method, through tuple slots. */
static bool
scan_slots(BatchScan *ss, EventRead *r, Size limit_bytes)
{
	bool		tick;

	while (prop_event_read_slot(r, &tick))
	{
		if (tick && ut_memory(ss->table) > limit_bytes)
			return false;
		slot_getsomeattrs(r->slot, ss->natts);
		consume_row(ss, r->slot->tts_values, r->slot->tts_isnull);
	}
	return true;
}

/*
 * Accumulate the events of one partition for the users of one hash class.
 * Returns false when the table outgrew limit_bytes.
 */
bool
scan_partition(Oid relid, UserTable *table, const FeatModel *model, int64 as_of,
			   HashClass cls, Size limit_bytes)
{
	static const char *const names[3] = {"event_time", "user_id", "event_type"};
	AttrNumber	attnums[3];
	BatchScan  *ss = palloc(sizeof(BatchScan));
	EventRead	r;
	bool		fits;

	ss->rel = prop_event_partition_open(relid);
	ss->table = table;
	ss->model = model;
	ss->as_of = as_of;
	ss->cls = cls;
	ss->nbatch = 0;
	prop_event_columns(ss->rel, names, NULL, 3, attnums);
	ss->a_time = attnums[0];
	ss->a_user = attnums[1];
	ss->a_type = attnums[2];
	ss->natts = Max(ss->a_time, Max(ss->a_user, ss->a_type));
	ss->leading = columns_lead(ss->rel, attnums);
	ss->values = palloc(sizeof(Datum) * ss->natts);
	ss->isnull = palloc(sizeof(bool) * ss->natts);
	prop_event_read_begin(&r, ss->rel, ss->natts);
	if (r.in_place)
		fits = scan_heap_pages(ss, &r, limit_bytes);
	else
		fits = scan_slots(ss, &r, limit_bytes);
	prop_event_read_end(&r);
	flush_batch(ss);
	table_close(ss->rel, AccessShareLock);
	pfree(ss->values);
	pfree(ss->isnull);
	pfree(ss);
	return fits && ut_memory(table) <= limit_bytes;
}
