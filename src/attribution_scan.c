/*
 * attribution_scan.c - batch attribution over the stored events: one
 * sequential read of the event partitions into the core's AttrBatch
 * (src/core/attr_batch.c), which credits every conversion by the rules of
 * docs/computing.md section 5.  attribute_batch() returns the credits;
 * attribution_backfill() (attribution_backfill.c) writes them as the state
 * the streaming engine reaches.
 *
 * Each pass reads the partitions twice: the conversions first, then the
 * impressions and clicks, which are all counted but kept only when their
 * (user, advertiser) has a conversion at or after them (about one in ten
 * in the generated set: the others cannot affect any credit).  Heap
 * partitions are read a page at a time and only the eight columns the
 * rules need are decoded, in place, the event type first; any other table
 * goes through tuple slots.  Memory is bounded by propensity.batch_memory: users are split by
 * hash into classes, each evaluated after a scan of its own.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "partitioning/partdesc.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/partcache.h"
#include "utils/rel.h"

#include "attribution_scan.h"
#include "huge_alloc.h"
#include "store.h"
#include "store_scan.h"
#include "util.h"

#define NCOLS 8

/* the columns the rules read, in the order consume() takes them */
enum
{
	C_TIME, C_USER, C_TYPE, C_ID, C_ADVERTISER, C_CAMPAIGN, C_AUCTION, C_PIXEL
};
static const char *const col_names[NCOLS] = {
	"event_time", "user_id", "event_type", "event_id", "advertiser_id", "campaign_id",
	"auction_id", "pixel_id"
};
static const Oid col_types[NCOLS] = {
	TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, INT8OID
};

/* ---- the late events, left out as the streaming engine left them out ---- */

typedef struct LateKey
{
	int64		time;
	const char *id;
	uint32		len;
} LateKey;

static uint32
late_hash(const void *key, Size keysize)
{
	const LateKey *k = key;

	return hash_bytes((const unsigned char *) k->id, k->len) ^
		murmurhash32((uint32) k->time ^ (uint32) (k->time >> 32));
}

static int
late_match(const void *a, const void *b, Size keysize)
{
	const LateKey *x = a;
	const LateKey *y = b;

	return !(x->time == y->time && x->len == y->len && memcmp(x->id, y->id, x->len) == 0);
}

/*
 * The (event_id, event_time) of attribution_late, in cxt; NULL when there
 * are none.  SPI is connected.
 */
static HTAB *
load_late(MemoryContext cxt)
{
	HASHCTL		ctl;
	HTAB	   *h = NULL;
	Portal		portal;

	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT event_id, event_time FROM propensity.attribution_late",
									   0, NULL, NULL, NULL, true, CURSOR_OPT_NO_SCROLL);
	ctl.keysize = sizeof(LateKey);
	ctl.entrysize = sizeof(LateKey);
	ctl.hash = late_hash;
	ctl.match = late_match;
	ctl.hcxt = cxt;
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		if (h == NULL)
			h = hash_create("propensity late events", 1024, &ctl,
							HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			text	   *id = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
			LateKey		k;
			MemoryContext old = MemoryContextSwitchTo(ctl.hcxt);

			k.time = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 2, &isnull));
			k.len = VARSIZE_ANY_EXHDR(id);
			k.id = pnstrdup(VARDATA_ANY(id), k.len);
			MemoryContextSwitchTo(old);
			(void) hash_search(h, &k, HASH_ENTER, NULL);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	return h;
}

/* ---- the scan ---- */

/*
 * An impression or click not needed when it was read, of a partition read
 * in one pass: the conversions read after it in the same partition may
 * need it.
 */
typedef struct Candidate
{
	int64		time;
	uint32		key;			/* ab_key() */
	BlockNumber blk;
	OffsetNumber off;
} Candidate;

typedef struct AttrScan
{
	AttrBatch  *ab;
	HashClass	cls;
	HTAB	   *late;
	Relation	rel;
	AttrScanInfo *info;
	/* the candidates of the partition being read in one pass */
	bool		deferring;
	BlockNumber cur_blk;
	OffsetNumber cur_off;
	Candidate  *cands;
	int			ncands;
	int			maxcands;		/* allocated */
	int			capcands;		/* the most allowed */
	int64		ndeferred;		/* for DEBUG1 */
	int64		nrefetched;
} AttrScan;

/* a text Datum's contents (see prop_text_contents) */
static inline const char *
text_contents(Datum d, uint32 *len, struct varlena **copy)
{
	return prop_text_contents(DatumGetPointer(d), len, copy);
}

/*
 * The phases of a read: the conversions, or the impressions and clicks
 * (all counted, only those ab_needed() kept: most cannot affect any
 * conversion), or all in one read of a heap partition.  Read in one pass,
 * a partition's impressions and clicks not needed when read become
 * candidates, checked again once the partition is read; they are few when
 * later partitions were read before (conversions follow impressions) and
 * each partition is read backwards (events arrive mostly in time order).
 */
typedef enum ScanPhase
{
	PHASE_CONVERSIONS,
	PHASE_OTHERS,
	PHASE_ALL					/* both in one read, with candidates */
} ScanPhase;

/* Whether an event is in attribution_late, which the engine left out. */
static bool
is_late(AttrScan *as, int64 time, Datum id)
{
	LateKey		k;
	struct varlena *id_copy = NULL;
	bool		found;

	k.time = time;
	k.id = text_contents(id, &k.len, &id_copy);
	found = hash_search(as->late, &k, HASH_FIND, NULL) != NULL;
	if (id_copy != NULL)
		pfree(id_copy);
	return found;
}

/* The event type of a row; errors out on an unknown one. */
static inline int
row_type(AttrScan *as, Datum d)
{
	struct varlena *copy = NULL;
	uint32		len;
	const char *text = text_contents(d, &len, &copy);
	int			type = feat_parse_type(text, len);

	if (unlikely(type < 0))
		prop_unknown_event_type(as->rel, text, len);
	if (copy != NULL)
		pfree(copy);
	return type;
}

/* Add an event whose leading fields in are set, reading the rest from v. */
static void
add_event(AttrScan *as, AttrInput *in, uint32 hash, const Datum *v, const bool *isnull)
{
	struct varlena *id_copy = NULL;
	struct varlena *auction_copy = NULL;
	uint32		id_len;
	uint32		auction_len = 0;

	in->event_id = text_contents(v[C_ID], &id_len, &id_copy);
	in->auction_id = isnull[C_AUCTION] ? NULL :
		text_contents(v[C_AUCTION], &auction_len, &auction_copy);
	in->has_pixel = !isnull[C_PIXEL];
	in->pixel_id = isnull[C_PIXEL] ? 0 : DatumGetInt64(v[C_PIXEL]);
	ab_add(as->ab, in, hash, id_len, auction_len);
	as->info->events++;
	as->info->conversions += in->type == FEAT_CN;
	if (id_copy != NULL)
		pfree(id_copy);
	if (auction_copy != NULL)
		pfree(auction_copy);
}

/*
 * One stored event of the given type (row_type()): v[] and isnull[] in the
 * order of col_names.  A conversion is added; an impression or click is
 * counted, and added when it can matter to the conversions added so far,
 * else, while deferring, kept as a candidate.  refetch: a candidate read
 * again, to be added (it was counted).
 */
static void
consume(AttrScan *as, int type, const Datum *v, const bool *isnull, bool refetch)
{
	struct varlena *user_copy = NULL;
	const char *user;
	uint32		user_len;
	uint32		hash;
	AttrInput	in;

	if (unlikely(isnull[C_TIME] || isnull[C_USER] || isnull[C_TYPE] || isnull[C_ID]))
		return;					/* NOT NULL columns: cannot happen */
	in.time_us = DatumGetTimestampTz(v[C_TIME]);
	if (!refetch)
	{
		if (as->late != NULL && is_late(as, in.time_us, v[C_ID]))
			return;
		if (!as->info->has_max || in.time_us > as->info->max_time)
		{
			as->info->has_max = true;
			as->info->max_time = in.time_us;
		}
	}
	if (isnull[C_ADVERTISER] || type == FEAT_PS)
		return;
	user = text_contents(v[C_USER], &user_len, &user_copy);
	hash = ab_hash(user, user_len);
	if ((uint32) (((uint64) hash * as->cls.modulus) >> 32) == as->cls.residue)
	{
		in.user_id = user;
		in.user_len = user_len;
		in.type = (FeatEventType) type;
		in.advertiser_id = DatumGetInt64(v[C_ADVERTISER]);
		in.has_campaign = !isnull[C_CAMPAIGN];
		in.campaign_id = isnull[C_CAMPAIGN] ? 0 : DatumGetInt64(v[C_CAMPAIGN]);
		if (type == FEAT_CN || refetch)
			add_event(as, &in, hash, v, isnull);
		else
		{
			uint32		key = ab_key(hash, in.advertiser_id);

			ab_count(as->ab, &in);
			if (ab_needed(as->ab, key, in.time_us))
				add_event(as, &in, hash, v, isnull);
			else if (as->deferring)
			{
				Candidate  *c;

				if (as->ncands == as->maxcands)
				{
					as->maxcands *= 2;
					as->cands = repalloc_huge(as->cands, sizeof(Candidate) * as->maxcands);
				}
				c = &as->cands[as->ncands++];
				as->ndeferred++;
				c->time = in.time_us;
				c->key = key;
				c->blk = as->cur_blk;
				c->off = as->cur_off;
			}
		}
	}
	if (user_copy != NULL)
		pfree(user_copy);
}

/* Whether a row of this type belongs to the phase. */
static inline bool
in_phase(ScanPhase phase, int type)
{
	return phase == PHASE_ALL || (type == FEAT_CN) == (phase == PHASE_CONVERSIONS);
}

static bool
over_limit(AttrScan *as, Size limit_bytes)
{
	return ab_memory(as->ab) + sizeof(Candidate) * as->maxcands > limit_bytes ||
		ab_event_count(as->ab) >= (size_t) PG_UINT32_MAX - 2;
}

/* Where the columns are in a partition's rows. */
typedef struct ColumnMap
{
	TupleDesc	desc;
	AttrNumber	attnums[NCOLS];
	int			natts;			/* attributes to decode for all */
	int			head;			/* attributes to decode for the event type */
	Datum	   *values;			/* natts */
	bool	   *nulls;
} ColumnMap;

/* Decode a heap row in place: false for a row without an event type. */
static inline bool
decode_row(ColumnMap *cm, HeapTupleHeader tup, ScanPhase phase, AttrScan *as, int *type,
		   Datum *v, bool *isnull)
{
	uint32		off = 0;
	int			c;

	prop_deform_range(tup, cm->desc, 0, cm->head, &off, cm->values, cm->nulls);
	if (unlikely(cm->nulls[cm->head - 1]))
		return false;			/* NOT NULL: cannot happen */
	*type = row_type(as, cm->values[cm->head - 1]);
	if (!in_phase(phase, *type))
		return false;
	prop_deform_range(tup, cm->desc, cm->head, cm->natts, &off, cm->values, cm->nulls);
	for (c = 0; c < NCOLS; c++)
	{
		v[c] = cm->values[cm->attnums[c] - 1];
		isnull[c] = cm->nulls[cm->attnums[c] - 1];
	}
	return true;
}

/*
 * Blocks [0, end) of a heap partition, in one phase, the last block and
 * row first.  Returns the number of blocks not read: 0, unless the class
 * outgrew limit_bytes (*fits is then false) or, in PHASE_ALL, the
 * candidates filled their room.
 */
static BlockNumber
scan_heap(AttrScan *as, EventRead *r, ColumnMap *cm, BlockNumber end, ScanPhase phase,
		  Size limit_bytes, bool *fits)
{
	BlockNumber blk;
	Datum		v[NCOLS];
	bool		isnull[NCOLS];

	as->deferring = phase == PHASE_ALL;
	for (blk = end; blk > 0; blk--)
	{
		int			i;

		if (phase == PHASE_ALL && as->ncands + MaxHeapTuplesPerPage > as->capcands)
			break;
		if ((blk & 63) == 0 && over_limit(as, limit_bytes))
		{
			*fits = false;
			break;
		}
		as->cur_blk = blk - 1;
		for (i = prop_event_read_page(r, blk - 1) - 1; i >= 0; i--)	/* checks for interrupts */
		{
			HeapTupleHeader tup = prop_event_read_tuple(r, i, &as->cur_off);
			int			type;

			if (decode_row(cm, tup, phase, as, &type, v, isnull))
				consume(as, type, v, isnull, false);
		}
	}
	as->deferring = false;
	return blk;
}

/* Add the candidates that the partition's conversions need, read again. */
static void
resolve_candidates(AttrScan *as, EventRead *r, ColumnMap *cm)
{
	BlockNumber cur = InvalidBlockNumber;
	Datum		v[NCOLS];
	bool		isnull[NCOLS];
	int			i;

	for (i = 0; i < as->ncands; i++)
	{
		const Candidate *c = &as->cands[i];
		int			type;

		if (!ab_needed(as->ab, c->key, c->time))
			continue;
		as->nrefetched++;
		if (c->blk != cur)
		{
			(void) prop_event_read_page(r, c->blk);
			cur = c->blk;
		}
		if (decode_row(cm, prop_event_read_at(r, c->off), PHASE_OTHERS, as, &type, v, isnull))
			consume(as, type, v, isnull, true);
	}
	as->ncands = 0;
}

/* A partition through tuple slots, in one phase (not PHASE_ALL). */
static bool
scan_slots(AttrScan *as, EventRead *r, ColumnMap *cm, ScanPhase phase, Size limit_bytes)
{
	TupleTableSlot *slot = r->slot;
	Datum		v[NCOLS];
	bool		isnull[NCOLS];
	bool		tick;

	while (prop_event_read_slot(r, &tick))
	{
		int			type;
		int			c;

		if (tick && over_limit(as, limit_bytes))
			return false;
		slot_getsomeattrs(slot, cm->head);
		if (unlikely(slot->tts_isnull[cm->head - 1]))
			continue;
		type = row_type(as, slot->tts_values[cm->head - 1]);
		if (!in_phase(phase, type))
			continue;
		slot_getsomeattrs(slot, cm->natts);
		for (c = 0; c < NCOLS; c++)
		{
			v[c] = slot->tts_values[cm->attnums[c] - 1];
			isnull[c] = slot->tts_isnull[cm->attnums[c] - 1];
		}
		consume(as, type, v, isnull, false);
	}
	return true;
}

/*
 * One partition in one phase; false when the class outgrew limit_bytes.
 * PHASE_ALL needs every conversion after the partition's rows to have been
 * added already, except the partition's own.
 */
static bool
scan_relation(AttrScan *as, Oid relid, ScanPhase phase, Size limit_bytes)
{
	ColumnMap	cm;
	EventRead	r;
	int			c;
	bool		fits = true;

	as->rel = prop_event_partition_open(relid);
	cm.desc = RelationGetDescr(as->rel);
	prop_event_columns(as->rel, col_names, col_types, NCOLS, cm.attnums);
	cm.natts = 0;
	for (c = 0; c < NCOLS; c++)
		cm.natts = Max(cm.natts, cm.attnums[c]);
	/* the event type is decoded first: many rows stop there */
	cm.head = cm.attnums[C_TYPE];
	cm.values = palloc(sizeof(Datum) * cm.natts);
	cm.nulls = palloc(sizeof(bool) * cm.natts);

	prop_event_read_begin(&r, as->rel, cm.natts);
	if (r.in_place)
	{
		BlockNumber left = scan_heap(as, &r, &cm, r.nblocks, phase, limit_bytes, &fits);

		if (phase == PHASE_ALL)
		{
			/*
			 * Out of room for candidates: the blocks left are read for their
			 * conversions, then for their impressions and clicks.
			 */
			if (fits && left > 0)
				(void) scan_heap(as, &r, &cm, left, PHASE_CONVERSIONS, limit_bytes, &fits);
			if (fits)
				resolve_candidates(as, &r, &cm);
			as->ncands = 0;
			if (fits && left > 0)
				(void) scan_heap(as, &r, &cm, left, PHASE_OTHERS, limit_bytes, &fits);
		}
	}
	else if (phase == PHASE_ALL)
	{
		fits = scan_slots(as, &r, &cm, PHASE_CONVERSIONS, limit_bytes);
		table_rescan(r.scan, NULL);
		fits = fits && scan_slots(as, &r, &cm, PHASE_OTHERS, limit_bytes);
	}
	else
		fits = scan_slots(as, &r, &cm, phase, limit_bytes);
	prop_event_read_end(&r);
	pfree(cm.values);
	pfree(cm.nulls);
	table_close(as->rel, AccessShareLock);
	as->rel = NULL;
	return fits && !over_limit(as, limit_bytes);
}

/*
 * The partitions in the order the scan needs.  ranged: by range of
 * event_time, the latest first, each read in one pass (PHASE_ALL: every
 * conversion after its rows is in it or in one read before).  deferred:
 * the default partition and any other whose range is not known here, read
 * for their conversions before all, and for the rest after all.
 */
static void
order_partitions(Relation parent, List *parts, List **ranged, List **deferred)
{
	PartitionKey key = RelationGetPartitionKey(parent);
	PartitionDesc pd = RelationGetPartitionDesc(parent, true);
	Oid			default_oid = get_default_oid_from_partdesc(pd);
	ListCell   *lc;

	*ranged = NIL;
	*deferred = NIL;
	if (key->strategy == PARTITION_STRATEGY_RANGE && key->partnatts == 1 &&
		key->partattrs[0] == get_attnum(RelationGetRelid(parent), "event_time"))
	{
		int			i;

		/* in the order of their bounds */
		for (i = pd->nparts - 1; i >= 0; i--)
			if (pd->oids[i] != default_oid && list_member_oid(parts, pd->oids[i]))
				*ranged = lappend_oid(*ranged, pd->oids[i]);
	}
	foreach(lc, parts)
		if (!list_member_oid(*ranged, lfirst_oid(lc)))
			*deferred = lappend_oid(*deferred, lfirst_oid(lc));
}

/* One pass of prop_attr_scan(): the events of one hash class of users. */
typedef struct AttrPass
{
	AttrScan   *as;
	List	   *ranged;
	List	   *deferred;
	const AttrSettingsTable *settings;
	const AttrScanSink *sink;
	AttrScanInfo *info;
	CoreAllocator *allocator;
	MemoryContext cxt;
	Size		limit_bytes;
} AttrPass;

static bool
attr_class(HashClass cls, void *arg)
{
	AttrPass   *p = arg;
	AttrScan   *as = p->as;
	AttrScanInfo *info = p->info;
	bool		fits = true;
	ListCell   *lc;
	AttrScanInfo before = *info;
	instr_time	t_start;
	instr_time	t_scanned;
	instr_time	t_done;

	INSTR_TIME_SET_CURRENT(t_start);
	as->cls = cls;
	as->ndeferred = as->nrefetched = 0;
	as->ab = ab_create(p->allocator);
	ab_set_interrupt(as->ab, &prop_core_interrupt);
	info->passes++;
	foreach(lc, p->deferred)
		if (fits)
			fits = scan_relation(as, lfirst_oid(lc), PHASE_CONVERSIONS, p->limit_bytes);
	foreach(lc, p->ranged)
		if (fits)
			fits = scan_relation(as, lfirst_oid(lc), PHASE_ALL, p->limit_bytes);
	foreach(lc, p->deferred)
		if (fits)
			fits = scan_relation(as, lfirst_oid(lc), PHASE_OTHERS, p->limit_bytes);
	if (fits)
	{
		size_t		pos = 0;
		AttrBatchTotal t;

		INSTR_TIME_SET_CURRENT(t_scanned);
		ab_evaluate(as->ab, prop_attr_settings_lookup, (void *) p->settings, p->sink->credit, p->sink->arg);
		INSTR_TIME_SET_CURRENT(t_done);
		INSTR_TIME_SUBTRACT(t_done, t_scanned);
		INSTR_TIME_SUBTRACT(t_scanned, t_start);
		ereport(DEBUG1,
				(errmsg("batch attribution: class %u/%u: %zu users, %zu events (" INT64_FORMAT " read again of " INT64_FORMAT " deferred), %zu kB, scan %.1f ms, evaluation %.1f ms",
						cls.residue, cls.modulus, ab_user_count(as->ab),
						ab_event_count(as->ab), as->nrefetched, as->ndeferred, ab_memory(as->ab) / 1024,
						INSTR_TIME_GET_MILLISEC(t_scanned), INSTR_TIME_GET_MILLISEC(t_done))));
		while (ab_next_total(as->ab, &pos, &t))
			p->sink->total(p->sink->arg, &t);
		p->sink->class_done(p->sink->arg);
	}
	else
	{
		ereport(DEBUG1,
				(errmsg("batch attribution: %zu events outgrew propensity.batch_memory, splitting into %u classes",
						ab_event_count(as->ab), cls.modulus * 2)));
		/* the counts of an unfinished pass do not stand */
		info->events = before.events;
		info->conversions = before.conversions;
	}
	ab_destroy(as->ab);
	as->ab = NULL;
	MemoryContextReset(p->cxt);
	return fits;
}

void
prop_attr_scan(bool skip_late, const AttrSettingsTable *settings, const AttrScanSink *sink,
			   AttrScanInfo *info)
{
	Relation	parent_rel;
	List	   *parts;
	List	   *ranged;
	List	   *deferred;
	HTAB	   *late = NULL;
	MemoryContext cxt;
	CoreAllocator allocator;
	Size		limit_bytes = (Size) propensity_batch_memory * 1024;
	AttrScan	as;
	AttrPass	pass;
	HugeAllocator ha;
	int			nest;

	memset(info, 0, sizeof(*info));
	parent_rel = prop_events_scan_begin("batch attribution",
										"Use propensity.attribute_all(), which reads the events through SQL.");
	parts = prop_event_partitions(RelationGetRelid(parent_rel), DT_NOEND);
	order_partitions(parent_rel, parts, &ranged, &deferred);
	if (skip_late)
	{
		MemoryContext caller = CurrentMemoryContext;

		nest = prop_pin_search_path();
		SPI_connect();
		late = load_late(caller);
		SPI_finish();
		prop_restore_search_path(nest);
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "propensity batch attribution",
								ALLOCSET_DEFAULT_SIZES);
	huge_allocator_init(&ha, &allocator, cxt, "batch attribution");
	memset(&as, 0, sizeof(as));
	as.late = late;
	as.info = info;
	/* candidates take up to an eighth of the memory */
	as.maxcands = 1024;
	as.capcands = (int) Min(Max(limit_bytes / 8 / sizeof(Candidate), 4096), INT_MAX / 2);
	as.cands = palloc(sizeof(Candidate) * as.maxcands);
	pass.as = &as;
	pass.ranged = ranged;
	pass.deferred = deferred;
	pass.settings = settings;
	pass.sink = sink;
	pass.info = info;
	pass.allocator = &allocator;
	pass.cxt = cxt;
	pass.limit_bytes = limit_bytes;
	PG_TRY();
	{
		prop_hash_class_passes(attr_class, &pass, "attribute these events");
	}
	PG_FINALLY();
	{
		huge_unmap_all(&ha);
	}
	PG_END_TRY();
	pfree(as.cands);
	MemoryContextDelete(cxt);
	if (ha.maps != NULL)
		pfree(ha.maps);
	if (as.late != NULL)
		hash_destroy(as.late);
	table_close(parent_rel, AccessShareLock);
}

/* ---- attribute_batch() ---- */

/* A text value rebuilt in place for each row: tuplestore_putvalues copies it. */
typedef struct TextBuf
{
	text	   *t;
	Size		cap;			/* bytes of contents */
} TextBuf;

typedef struct BatchOut
{
	ReturnSetInfo *rsinfo;
	TextBuf		user;
	TextBuf		conversion;
	TextBuf		impression;
	Datum		kinds[3];		/* by AttrKind */
} BatchOut;

static Datum
text_buf_set(TextBuf *b, const char *s, Size len)
{
	if (b->t == NULL || len > b->cap)
	{
		b->cap = Max(len, 64);
		b->t = b->t == NULL ? palloc(VARHDRSZ + b->cap) : repalloc(b->t, VARHDRSZ + b->cap);
	}
	memcpy(VARDATA(b->t), s, len);
	SET_VARSIZE(b->t, VARHDRSZ + len);
	return PointerGetDatum(b->t);
}

static void
emit_row(void *arg, const AttrBatchCredit *c)
{
	BatchOut   *out = arg;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	values[0] = text_buf_set(&out->user, c->user_id, c->user_len);
	values[1] = Int64GetDatum(c->advertiser_id);
	values[2] = text_buf_set(&out->conversion, c->conversion_id, strlen(c->conversion_id));
	values[3] = TimestampTzGetDatum(c->conversion_time_us);
	values[4] = out->kinds[c->credit.kind];
	values[5] = Int64GetDatum(c->credit.campaign_id);
	nulls[5] = !c->credit.has_campaign;
	nulls[6] = c->credit.impression_id == NULL;
	values[6] = nulls[6] ? (Datum) 0 :
		text_buf_set(&out->impression, c->credit.impression_id, strlen(c->credit.impression_id));
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
}

static void
ignore_total(void *arg, const AttrBatchTotal *t)
{
}

static void
ignore_class_done(void *arg)
{
}

/*
 * attribute_batch(skip_late boolean DEFAULT true) returns (user_id,
 * advertiser_id, conversion_event_id, conversion_time, kind, campaign_id,
 * impression_event_id): the credit of every stored conversion.
 */
PG_FUNCTION_INFO_V1(propensity_attribute_batch);
Datum
propensity_attribute_batch(PG_FUNCTION_ARGS)
{
	bool		skip_late = PG_ARGISNULL(0) ? true : PG_GETARG_BOOL(0);
	BatchOut	out;
	AttrSettingsTable settings;
	AttrScanInfo info;
	AttrScanSink sink;
	MemoryContext old;
	int			nest;

	InitMaterializedSRF(fcinfo, 0);
	memset(&out, 0, sizeof(out));
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	out.kinds[ATTR_NONE] = CStringGetTextDatum(attr_kind_name(ATTR_NONE));
	out.kinds[ATTR_PC] = CStringGetTextDatum(attr_kind_name(ATTR_PC));
	out.kinds[ATTR_PV] = CStringGetTextDatum(attr_kind_name(ATTR_PV));
	nest = prop_pin_search_path();
	SPI_connect();
	/* the settings outlive the SPI connection */
	old = MemoryContextSwitchTo(out.rsinfo->econtext->ecxt_per_query_memory);
	settings = prop_attr_load_settings();
	MemoryContextSwitchTo(old);
	SPI_finish();
	prop_restore_search_path(nest);
	sink.credit = emit_row;
	sink.total = ignore_total;
	sink.class_done = ignore_class_done;
	sink.arg = &out;
	prop_attr_scan(skip_late, &settings, &sink, &info);
	return (Datum) 0;
}
