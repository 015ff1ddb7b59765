/*
 * attribution_batch.c - batch attribution over the stored events: one
 * sequential read of the event partitions into the core's AttrBatch
 * (src/core/attr_batch.c), which credits every conversion by the rules of
 * SPEC section 5.  attribute_batch() returns the credits;
 * attribution_backfill() (attribution_engine.c) writes them as the state
 * the streaming engine reaches.
 *
 * Heap partitions are read a page at a time and only the eight columns the
 * rules need are decoded, in place; any other table goes through tuple
 * slots.  Memory is bounded by propensity.batch_memory: users are split by
 * hash into classes, each evaluated after a scan of its own.
 */
#include "postgres.h"

#include <sys/mman.h>

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
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "propensity.h"
#include "attribution.h"
#include "batch_scan.h"

#define MAX_HASH_CLASSES (1 << 16)
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

typedef struct AttrScan
{
	AttrBatch  *ab;
	HashClass	cls;
	HTAB	   *late;
	Relation	rel;
	AttrScanInfo *info;
} AttrScan;

/* Text datum contents; detoasts into *copy (caller frees) only when needed. */
static inline const char *
text_contents(Datum d, uint32 *len, struct varlena **copy)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

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

static pg_noinline void
unknown_type(AttrScan *as, const char *type, uint32 len)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown event type \"%.*s\" in \"%s\"", (int) len, type,
					RelationGetRelationName(as->rel))));
}

/* One stored event: v[] and isnull[] in the order of col_names. */
static void
consume(AttrScan *as, const Datum *v, const bool *isnull)
{
	struct varlena *user_copy = NULL;
	struct varlena *type_copy = NULL;
	const char *user;
	const char *type_text;
	uint32		user_len;
	uint32		type_len;
	int			type;
	uint32		hash;
	AttrInput	in;

	if (unlikely(isnull[C_TIME] || isnull[C_USER] || isnull[C_TYPE] || isnull[C_ID]))
		return;					/* NOT NULL columns: cannot happen */
	in.time_us = DatumGetTimestampTz(v[C_TIME]);
	if (as->late != NULL)
	{
		LateKey		k;
		struct varlena *id_copy = NULL;
		bool		found;

		k.time = in.time_us;
		k.id = text_contents(v[C_ID], &k.len, &id_copy);
		found = hash_search(as->late, &k, HASH_FIND, NULL) != NULL;
		if (id_copy != NULL)
			pfree(id_copy);
		if (found)
			return;
	}
	if (!as->info->has_max || in.time_us > as->info->max_time)
	{
		as->info->has_max = true;
		as->info->max_time = in.time_us;
	}
	if (isnull[C_ADVERTISER])
		return;
	type_text = text_contents(v[C_TYPE], &type_len, &type_copy);
	type = feat_parse_type(type_text, type_len);
	if (unlikely(type < 0))
		unknown_type(as, type_text, type_len);
	if (type_copy != NULL)
		pfree(type_copy);
	if (type == FEAT_PS)
		return;
	user = text_contents(v[C_USER], &user_len, &user_copy);
	hash = ab_hash(user, user_len);
	if ((uint32) (((uint64) hash * as->cls.modulus) >> 32) == as->cls.residue)
	{
		struct varlena *id_copy = NULL;
		struct varlena *auction_copy = NULL;
		uint32		id_len;
		uint32		auction_len = 0;

		in.user_id = user;
		in.user_len = user_len;
		in.type = (FeatEventType) type;
		in.advertiser_id = DatumGetInt64(v[C_ADVERTISER]);
		in.event_id = text_contents(v[C_ID], &id_len, &id_copy);
		in.has_campaign = !isnull[C_CAMPAIGN];
		in.campaign_id = isnull[C_CAMPAIGN] ? 0 : DatumGetInt64(v[C_CAMPAIGN]);
		in.auction_id = isnull[C_AUCTION] ? NULL :
			text_contents(v[C_AUCTION], &auction_len, &auction_copy);
		in.has_pixel = !isnull[C_PIXEL];
		in.pixel_id = isnull[C_PIXEL] ? 0 : DatumGetInt64(v[C_PIXEL]);
		ab_add(as->ab, &in, hash, id_len, auction_len);
		as->info->events++;
		as->info->conversions += type == FEAT_CN;
		if (id_copy != NULL)
			pfree(id_copy);
		if (auction_copy != NULL)
			pfree(auction_copy);
	}
	if (user_copy != NULL)
		pfree(user_copy);
}

/*
 * The leading natts attributes of a heap tuple, in place (heap_deform_tuple
 * stops at none); missing trailing attributes read as NULL, which is right
 * when none of them has a stored default (heap_fast_path checks).
 */
static inline void
deform_leading(HeapTupleHeader tup, TupleDesc desc, int natts, Datum *values, bool *isnull)
{
	bool		hasnulls = (tup->t_infomask & HEAP_HASNULL) != 0;
	bits8	   *bp = tup->t_bits;
	char	   *tp = (char *) tup + tup->t_hoff;
	int			tupnatts = HeapTupleHeaderGetNatts(tup);
	uint32		off = 0;
	int			i;

	for (i = 0; i < natts; i++)
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
}

/* The attribute numbers of the columns, checked for type. */
static void
column_map(Relation rel, AttrNumber *attnums)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			c;

	for (c = 0; c < NCOLS; c++)
	{
		int			i;

		attnums[c] = InvalidAttrNumber;
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), col_names[c]) == 0 &&
				att->atttypid == col_types[c])
				attnums[c] = att->attnum;
		}
		if (attnums[c] == InvalidAttrNumber)
			elog(ERROR, "partition \"%s\" has no column \"%s\" of the expected type",
				 RelationGetRelationName(rel), col_names[c]);
	}
}

/* A heap none of whose leading columns (up to the last read) has a stored default. */
static bool
heap_fast_path(Relation rel, int natts)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (rel->rd_tableam != GetHeapamTableAmRoutine())
		return false;
	for (i = 0; i < natts; i++)
		if (TupleDescAttr(desc, i)->atthasmissing)
			return false;
	return true;
}

static bool
over_limit(AttrScan *as, Size limit_bytes)
{
	return ab_memory(as->ab) > limit_bytes || ab_event_count(as->ab) >= (size_t) PG_UINT32_MAX - 2;
}

/* One partition; false when the class outgrew limit_bytes. */
static bool
scan_relation(AttrScan *as, Oid relid, Size limit_bytes)
{
	AttrNumber	attnums[NCOLS];
	int			natts = 0;
	int			c;
	Datum	   *all_values;
	bool	   *all_nulls;
	Datum		v[NCOLS];
	bool		isnull[NCOLS];
	TableScanDesc scan;
	bool		fits = true;

	as->rel = table_open(relid, AccessShareLock);
	if (as->rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("partition \"%s\" of propensity.events is not a plain table",
						RelationGetRelationName(as->rel))));
	column_map(as->rel, attnums);
	for (c = 0; c < NCOLS; c++)
		natts = Max(natts, attnums[c]);
	all_values = palloc(sizeof(Datum) * natts);
	all_nulls = palloc(sizeof(bool) * natts);

	if (propensity_batch_fast_scan && heap_fast_path(as->rel, natts))
	{
		HeapScanDesc hscan;
		BlockNumber blk;
		TupleDesc	desc = RelationGetDescr(as->rel);

		scan = table_beginscan_strat(as->rel, GetActiveSnapshot(), 0, NULL, true, false);
		hscan = (HeapScanDesc) scan;
		for (blk = 0; blk < hscan->rs_nblocks && fits; blk++)
		{
			Page		page;
			int			i;

			if ((blk & 63) == 0 && over_limit(as, limit_bytes))
				fits = false;
			heapgetpage(scan, blk); /* checks for interrupts */
			page = BufferGetPage(hscan->rs_cbuf);
			for (i = 0; i < hscan->rs_ntuples && fits; i++)
			{
				HeapTupleHeader tup = (HeapTupleHeader)
					PageGetItem(page, PageGetItemId(page, hscan->rs_vistuples[i]));

				deform_leading(tup, desc, natts, all_values, all_nulls);
				for (c = 0; c < NCOLS; c++)
				{
					v[c] = all_values[attnums[c] - 1];
					isnull[c] = all_nulls[attnums[c] - 1];
				}
				consume(as, v, isnull);
			}
		}
		table_endscan(scan);
	}
	else
	{
		TupleTableSlot *slot = table_slot_create(as->rel, NULL);
		uint64		rows = 0;

		scan = table_beginscan(as->rel, GetActiveSnapshot(), 0, NULL);
		while (fits && table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			if ((++rows & 8191) == 0)
			{
				CHECK_FOR_INTERRUPTS();
				if (over_limit(as, limit_bytes))
					fits = false;
			}
			slot_getsomeattrs(slot, natts);
			for (c = 0; c < NCOLS; c++)
			{
				v[c] = slot->tts_values[attnums[c] - 1];
				isnull[c] = slot->tts_isnull[attnums[c] - 1];
			}
			consume(as, v, isnull);
		}
		table_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}
	pfree(all_values);
	pfree(all_nulls);
	table_close(as->rel, AccessShareLock);
	as->rel = NULL;
	return fits && !over_limit(as, limit_bytes);
}

/*
 * The AttrBatch's allocator: large blocks are mapped on transparent huge
 * pages where the kernel allows it (a gigabyte of records faults in 2 MB
 * at a time, and the scan's writes to a thousand parts do not miss the
 * TLB); the mappings are listed so that an error cannot leak them.  The
 * rest comes from a memory context.
 */
#define HUGE_BLOCK ((size_t) 2 * 1024 * 1024)

typedef struct Mapping
{
	void	   *user;
	void	   *base;
	size_t		len;
} Mapping;

typedef struct ScanAllocator
{
	MemoryContext cxt;			/* small allocations */
	MemoryContext maps_cxt;		/* the list of mappings */
	Mapping    *maps;
	int			nmaps;
	int			maxmaps;
} ScanAllocator;

static void *
scan_alloc(void *ctx, size_t size)
{
	ScanAllocator *sa = ctx;
	size_t		len;
	char	   *base;
	char	   *user;

	if (size < HUGE_BLOCK)
		return MemoryContextAllocHuge(sa->cxt, size);
	if (sa->nmaps == sa->maxmaps)
	{
		sa->maxmaps = sa->maxmaps == 0 ? 64 : sa->maxmaps * 2;
		sa->maps = sa->maps == NULL ?
			MemoryContextAlloc(sa->maps_cxt, sizeof(Mapping) * sa->maxmaps) :
			repalloc(sa->maps, sizeof(Mapping) * sa->maxmaps);
	}
	len = size + HUGE_BLOCK;
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on a request of size %zu for batch attribution.", size),
				 errhint("Lower propensity.batch_memory.")));
	user = (char *) TYPEALIGN(HUGE_BLOCK, base);
#ifdef MADV_HUGEPAGE
	(void) madvise(user, TYPEALIGN_DOWN(HUGE_BLOCK, size), MADV_HUGEPAGE);
#endif
	sa->maps[sa->nmaps++] = (Mapping) {user, base, len};
	return user;
}

static void *
scan_realloc(void *ctx, void *ptr, size_t size)
{
	elog(ERROR, "the batch attribution allocator does not reallocate");
	return NULL;
}

static void
scan_free(void *ctx, void *ptr)
{
	ScanAllocator *sa = ctx;
	int			i;

	for (i = sa->nmaps - 1; i >= 0; i--)
	{
		if (sa->maps[i].user == ptr)
		{
			munmap(sa->maps[i].base, sa->maps[i].len);
			sa->maps[i] = sa->maps[--sa->nmaps];
			return;
		}
	}
	pfree(ptr);
}

static void
unmap_all(ScanAllocator *sa)
{
	while (sa->nmaps > 0)
	{
		sa->nmaps--;
		munmap(sa->maps[sa->nmaps].base, sa->maps[sa->nmaps].len);
	}
}

void
prop_attr_scan(bool skip_late, const AttrSettingsTable *settings, const AttrScanSink *sink,
			   AttrScanInfo *info)
{
	Oid			parent = prop_events_relid();
	Relation	parent_rel;
	List	   *parts;
	HTAB	   *late = NULL;
	MemoryContext cxt;
	CoreAllocator allocator;
	Size		limit_bytes = (Size) propensity_batch_memory * 1024;
	HashClass  *work;
	int			nwork = 0;
	AttrScan	as;
	ScanAllocator sa;
	int			nest;

	memset(info, 0, sizeof(*info));
	if (pg_class_aclcheck(parent, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "events");
	if (check_enable_rls(parent, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("batch attribution does not support row-level security on propensity.events"),
				 errhint("Use propensity.attribute_all(), which reads the events through SQL.")));

	/* hold the parent so that partitions are not attached or detached under us */
	parent_rel = table_open(parent, AccessShareLock);
	parts = prop_event_partitions(parent, DT_NOEND);
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
	memset(&sa, 0, sizeof(sa));
	sa.cxt = cxt;
	sa.maps_cxt = AllocSetContextCreate(CurrentMemoryContext, "propensity batch attribution maps",
										ALLOCSET_SMALL_SIZES);
	allocator.alloc = scan_alloc;
	allocator.realloc = scan_realloc;
	allocator.free = scan_free;
	allocator.ctx = &sa;
	memset(&as, 0, sizeof(as));
	as.late = late;
	as.info = info;

	work = palloc(sizeof(HashClass) * (MAX_HASH_CLASSES + 1));
	work[nwork++] = (HashClass) {1, 0};
	PG_TRY();
	{
		while (nwork > 0)
		{
			HashClass	cls = work[--nwork];
			bool		fits = true;
			ListCell   *lc;
			AttrScanInfo before = *info;
			instr_time	t_start;
			instr_time	t_scanned;
			instr_time	t_done;

			INSTR_TIME_SET_CURRENT(t_start);
			as.cls = cls;
			as.ab = ab_create(&allocator);
			info->passes++;
			foreach(lc, parts)
			{
				fits = scan_relation(&as, lfirst_oid(lc), limit_bytes);
				if (!fits)
					break;
			}
			if (fits)
			{
				size_t		pos = 0;
				AttrBatchTotal t;

				INSTR_TIME_SET_CURRENT(t_scanned);
				ab_evaluate(as.ab, prop_attr_settings_lookup, (void *) settings, sink->credit, sink->arg);
				INSTR_TIME_SET_CURRENT(t_done);
				INSTR_TIME_SUBTRACT(t_done, t_scanned);
				INSTR_TIME_SUBTRACT(t_scanned, t_start);
				ereport(DEBUG1,
						(errmsg("batch attribution: class %u/%u: %zu users, %zu events, %zu kB, scan %.1f ms, evaluation %.1f ms",
								cls.residue, cls.modulus, ab_user_count(as.ab),
								ab_event_count(as.ab), ab_memory(as.ab) / 1024,
								INSTR_TIME_GET_MILLISEC(t_scanned), INSTR_TIME_GET_MILLISEC(t_done))));
				while (ab_next_total(as.ab, &pos, &t))
					sink->total(sink->arg, &t);
				sink->class_done(sink->arg);
			}
			else
			{
				if (cls.modulus >= MAX_HASH_CLASSES || nwork + 2 > MAX_HASH_CLASSES)
					ereport(ERROR,
							(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							 errmsg("propensity.batch_memory (%d kB) is too small to attribute these events",
									propensity_batch_memory),
							 errhint("Raise propensity.batch_memory.")));
				ereport(DEBUG1,
						(errmsg("batch attribution: %zu events outgrew propensity.batch_memory, splitting into %u classes",
								ab_event_count(as.ab), cls.modulus * 2)));
				/* the counts of an unfinished pass do not stand */
				info->events = before.events;
				info->conversions = before.conversions;
				work[nwork++] = (HashClass) {cls.modulus * 2, cls.residue * 2 + 1};
				work[nwork++] = (HashClass) {cls.modulus * 2, cls.residue * 2};
			}
			ab_destroy(as.ab);
			as.ab = NULL;
			MemoryContextReset(cxt);
		}
	}
	PG_FINALLY();
	{
		unmap_all(&sa);
	}
	PG_END_TRY();
	pfree(work);
	MemoryContextDelete(cxt);
	MemoryContextDelete(sa.maps_cxt);
	if (late != NULL)
		hash_destroy(late);
	table_close(parent_rel, AccessShareLock);
}

/* ---- attribute_batch() ---- */

typedef struct BatchOut
{
	ReturnSetInfo *rsinfo;
	StringInfoData buf;
} BatchOut;

static void
emit_row(void *arg, const AttrBatchCredit *c)
{
	BatchOut   *out = arg;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	values[0] = PointerGetDatum(cstring_to_text_with_len(c->user_id, c->user_len));
	values[1] = Int64GetDatum(c->advertiser_id);
	values[2] = CStringGetTextDatum(c->conversion_id);
	values[3] = TimestampTzGetDatum(c->conversion_time_us);
	values[4] = CStringGetTextDatum(attr_kind_name(c->credit.kind));
	values[5] = Int64GetDatum(c->credit.campaign_id);
	nulls[5] = !c->credit.has_campaign;
	nulls[6] = c->credit.impression_id == NULL;
	values[6] = nulls[6] ? (Datum) 0 : CStringGetTextDatum(c->credit.impression_id);
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
	pfree(DatumGetPointer(values[0]));
	pfree(DatumGetPointer(values[2]));
	pfree(DatumGetPointer(values[4]));
	if (!nulls[6])
		pfree(DatumGetPointer(values[6]));
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
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
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
