/*
 * batch.c - score_all(): the propensity of every user as of a time, in one
 * sequential pass over the event partitions into the core's UserTable.
 *
 * Memory is bounded by propensity.batch_memory: when the table would
 * outgrow it, the users are split by hash into two classes that are scored
 * in separate passes, recursively, so large user sets cost extra scans
 * rather than unbounded memory.  Results stream into a tuplestore, which
 * spills to disk past work_mem.
 */
#include "postgres.h"

#include <sys/mman.h>

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "propensity.h"
#include "core/user_table.h"

#define MAX_HASH_CLASSES (1 << 16)

typedef struct HashClass
{
	uint32		modulus;		/* users with floor(hash * modulus / 2^32) == residue */
	uint32		residue;
} HashClass;

/*
 * The user table's allocator.  Large blocks (the slot array) are mapped
 * with transparent huge pages where the kernel allows it: with a million
 * users every row touches a random slot, and 2 MB pages keep those touches
 * from also missing the TLB.  Mappings are recorded so that an error cannot
 * leak them (see unmap_all); everything else comes from a memory context.
 */
#define HUGE_BLOCK ((size_t) 2 * 1024 * 1024)
#define MAX_MAPPINGS 16

typedef struct Mapping
{
	void	   *user;
	void	   *base;
	size_t		len;
} Mapping;

typedef struct BatchAllocator
{
	MemoryContext cxt;
	int			nmaps;
	Mapping		maps[MAX_MAPPINGS];
} BatchAllocator;

static void *
batch_alloc(void *ctx, size_t size)
{
	BatchAllocator *ba = (BatchAllocator *) ctx;
	size_t		len;
	char	   *base;
	char	   *user;

	if (size < HUGE_BLOCK || ba->nmaps == MAX_MAPPINGS)
		return MemoryContextAllocHuge(ba->cxt, size);
	len = size + HUGE_BLOCK;
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on a request of size %zu for the score_all user table.", size),
				 errhint("Lower propensity.batch_memory.")));
	user = (char *) TYPEALIGN(HUGE_BLOCK, base);
#ifdef MADV_HUGEPAGE
	(void) madvise(user, TYPEALIGN_DOWN(HUGE_BLOCK, size), MADV_HUGEPAGE);
#endif
	ba->maps[ba->nmaps++] = (Mapping) {user, base, len};
	return user;
}

static void *
batch_realloc(void *ctx, void *ptr, size_t size)
{
	elog(ERROR, "the score_all allocator does not reallocate");
	return NULL;
}

static void
batch_free(void *ctx, void *ptr)
{
	BatchAllocator *ba = (BatchAllocator *) ctx;
	int			i;

	for (i = 0; i < ba->nmaps; i++)
	{
		if (ba->maps[i].user == ptr)
		{
			munmap(ba->maps[i].base, ba->maps[i].len);
			ba->maps[i] = ba->maps[--ba->nmaps];
			return;
		}
	}
	pfree(ptr);
}

static void
unmap_all(BatchAllocator *ba)
{
	while (ba->nmaps > 0)
	{
		ba->nmaps--;
		munmap(ba->maps[ba->nmaps].base, ba->maps[ba->nmaps].len);
	}
}

/*
 * Users expected up to as_of, from the planner's statistics, so that the
 * table is sized once instead of doubling its way up.  0 when unknown.
 */
static pg_noinline double
expected_users(Oid parent)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(parent)};
	double		result = 0;
	int			ret;

	SPI_connect();
	/* pg_stats, unlike pg_statistic, is readable by whoever may read the table */
	ret = SPI_execute_with_args(
		"SELECT CASE WHEN s.n_distinct >= 0 THEN s.n_distinct "
		"            ELSE -s.n_distinct * (SELECT sum(greatest(c.reltuples, 0)) "
		"                                    FROM pg_catalog.pg_inherits i "
		"                                    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
		"                                   WHERE i.inhparent = $1) END::float8 "
		"  FROM pg_catalog.pg_stats s "
		" WHERE s.schemaname = 'propensity' AND s.tablename = 'events' "
		"   AND s.attname = 'user_id' AND s.inherited",
		1, argtypes, args, NULL, true, 1);
	if (ret == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = DatumGetFloat8(d);
	}
	SPI_finish();
	return result;
}

static Oid
events_relid(void)
{
	Oid			nsp = get_namespace_oid("propensity", false);
	Oid			relid = get_relname_relid("events", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table propensity.events does not exist"),
				 errhint("Is the propensity extension installed in this database?")));
	return relid;
}

/* Leaf partitions that can hold events up to as_of, in CurrentMemoryContext. */
static pg_noinline List *
partitions_upto(Oid parent, TimestampTz as_of)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {OIDOID, TIMESTAMPTZOID};
	Datum		args[2] = {ObjectIdGetDatum(parent), TimestampTzGetDatum(as_of)};
	List	   *result = NIL;
	uint64		i;
	int			ret;

	SPI_connect();
	ret = SPI_execute_with_args(
		"SELECT i.inhrelid FROM pg_catalog.pg_inherits i "
		"LEFT JOIN propensity.event_partitions p ON p.partition = i.inhrelid "
		"WHERE i.inhparent = $1 AND (p.range_start IS NULL OR p.range_start <= $2)",
		2, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext spi = MemoryContextSwitchTo(caller);

		result = lappend_oid(result, oid);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return result;
}

static AttrNumber
column(TupleDesc desc, const char *name, Relation rel)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	elog(ERROR, "partition \"%s\" has no column \"%s\"", RelationGetRelationName(rel), name);
	return InvalidAttrNumber;	/* keep compiler quiet */
}

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

static void
flush_batch(UserTable *table, const FeatModel *model, int64 as_of, PendingRow *rows, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		feat_accumulate(model, ut_lookup(table, rows[i].key, rows[i].len, rows[i].hash),
						rows[i].type, rows[i].event_us, as_of);
}

/*
 * Accumulate the events of one partition for the users of one hash class.
 * Returns false when the table outgrew limit_bytes.
 */
static bool
scan_partition(Oid relid, UserTable *table, const FeatModel *model, int64 as_of,
			   HashClass cls, Size limit_bytes)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	a_time = column(desc, "event_time", rel);
	AttrNumber	a_user = column(desc, "user_id", rel);
	AttrNumber	a_type = column(desc, "event_type", rel);
	int			natts = Max(a_time, Max(a_user, a_type));
	TupleTableSlot *slot;
	TableScanDesc scan;
	PendingRow	batch[BATCH_ROWS];
	int			nbatch = 0;
	uint64		rows = 0;
	bool		fits = true;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("partition \"%s\" of propensity.events is not a plain table",
						RelationGetRelationName(rel))));

	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		int64		event_us;
		struct varlena *user;
		struct varlena *type_text;
		uint32		hash;
		uint32		len;
		int			type;

		if ((++rows & 8191) == 0)
		{
			CHECK_FOR_INTERRUPTS();
			if (ut_memory(table) > limit_bytes)
			{
				fits = false;
				break;
			}
		}
		slot_getsomeattrs(slot, natts);
		if (slot->tts_isnull[a_time - 1] || slot->tts_isnull[a_user - 1] ||
			slot->tts_isnull[a_type - 1])
			continue;			/* NOT NULL columns: cannot happen */
		event_us = DatumGetTimestampTz(slot->tts_values[a_time - 1]);
		if (event_us > as_of)
			continue;
		user = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(slot->tts_values[a_user - 1]));
		len = VARSIZE_ANY_EXHDR(user);
		hash = ut_hash(VARDATA_ANY(user), len);
		if ((uint32) (((uint64) hash * cls.modulus) >> 32) != cls.residue)
			continue;
		type_text = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(slot->tts_values[a_type - 1]));
		type = feat_parse_type(VARDATA_ANY(type_text), VARSIZE_ANY_EXHDR(type_text));
		if (type < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown event type \"%s\" in \"%s\"",
							text_to_cstring((text *) type_text), RelationGetRelationName(rel))));
		if (len > BATCH_KEY)
		{
			/* long ids skip the batch */
			feat_accumulate(model, ut_lookup(table, VARDATA_ANY(user), len, hash),
							(FeatEventType) type, event_us, as_of);
			continue;
		}
		ut_prefetch(table, hash);
		batch[nbatch].event_us = event_us;
		batch[nbatch].hash = hash;
		batch[nbatch].len = len;
		batch[nbatch].type = (FeatEventType) type;
		memcpy(batch[nbatch].key, VARDATA_ANY(user), len);
		if (++nbatch == BATCH_ROWS)
		{
			flush_batch(table, model, as_of, batch, nbatch);
			nbatch = 0;
		}
	}
	flush_batch(table, model, as_of, batch, nbatch);
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return fits && ut_memory(table) <= limit_bytes;
}

static void
emit(ReturnSetInfo *rsinfo, const UserTable *table, const FeatModel *model)
{
	MemoryContext rowcxt = AllocSetContextCreate(CurrentMemoryContext, "score_all row",
												 ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(rowcxt);
	size_t		pos = 0;
	const char *key;
	uint32		len;
	const double *acc;
	Datum		elems[FEAT_MAX_TERMS];

	while (ut_next(table, &pos, &key, &len, &acc))
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		int			i;

		for (i = 0; i < model->nterms; i++)
			elems[i] = Float8GetDatum(acc[i]);
		values[0] = PointerGetDatum(cstring_to_text_with_len(key, len));
		values[1] = Float8GetDatum(feat_score(model, acc));
		values[2] = PointerGetDatum(construct_array(elems, model->nterms, FLOAT8OID, sizeof(float8),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MemoryContextReset(rowcxt);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(rowcxt);
}

/*
 * Score the users class by class; a class whose table outgrows limit_bytes
 * is split in two and retried.
 */
static void
score_classes(ReturnSetInfo *rsinfo, List *parts, const FeatModel *model, int64 as_of,
			  double expected, Size limit_bytes, const CoreAllocator *allocator,
			  MemoryContext tablecxt)
{
	HashClass  *work = palloc(sizeof(HashClass) * (MAX_HASH_CLASSES + 1));
	int			nwork = 0;

	work[nwork++] = (HashClass) {1, 0};
	while (nwork > 0)
	{
		HashClass	cls = work[--nwork];
		UserTable  *table = ut_create(model->nterms, (size_t) (expected / cls.modulus), allocator);
		bool		fits = true;
		ListCell   *lc;

		foreach(lc, parts)
		{
			fits = scan_partition(lfirst_oid(lc), table, model, as_of, cls, limit_bytes);
			if (!fits)
				break;
		}
		if (fits)
			emit(rsinfo, table, model);
		else
		{
			if (cls.modulus >= MAX_HASH_CLASSES || nwork + 2 > MAX_HASH_CLASSES)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("propensity.batch_memory (%d kB) is too small to score these users",
								propensity_batch_memory),
						 errhint("Raise propensity.batch_memory.")));
			ereport(DEBUG1,
					(errmsg("score_all: %zu users outgrew propensity.batch_memory, splitting into %u classes",
							ut_count(table), cls.modulus * 2)));
			work[nwork++] = (HashClass) {cls.modulus * 2, cls.residue * 2 + 1};
			work[nwork++] = (HashClass) {cls.modulus * 2, cls.residue * 2};
		}
		ut_destroy(table);
		MemoryContextReset(tablecxt);
	}
	pfree(work);
}

/* score_all(as_of timestamptz, model text) returns (user_id, score, features) */
PG_FUNCTION_INFO_V1(propensity_score_all);
Datum
propensity_score_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		as_of = prop_arg_time(fcinfo, 0, "as-of time");
	LoadedModel lm;
	Oid			parent;
	Relation	parent_rel;
	List	   *parts;
	MemoryContext tablecxt;
	BatchAllocator *ba;
	CoreAllocator allocator;
	double		expected;
	Size		limit_bytes = (Size) propensity_batch_memory * 1024;
	size_t		max_users;

	prop_load_model_by_name(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)), &lm);

	parent = events_relid();
	if (pg_class_aclcheck(parent, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "events");
	if (check_enable_rls(parent, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("score_all does not support row-level security on propensity.events"),
				 errhint("Use the aggregate: SELECT user_id, propensity.score_events(event_type, event_time, t) FROM propensity.events GROUP BY user_id.")));

	InitMaterializedSRF(fcinfo, 0);

	/* hold the parent so that partitions are not attached or detached under us */
	parent_rel = table_open(parent, AccessShareLock);
	parts = partitions_upto(parent, as_of);

	/* size for the expected users, within what the memory limit allows */
	expected = expected_users(parent);
	max_users = limit_bytes / (24 + sizeof(double) * lm.model.nterms) / 3;
	if (expected > (double) max_users)
		expected = (double) max_users;

	tablecxt = AllocSetContextCreate(CurrentMemoryContext, "score_all users", ALLOCSET_DEFAULT_SIZES);
	ba = palloc0(sizeof(BatchAllocator));
	ba->cxt = tablecxt;
	allocator.alloc = batch_alloc;
	allocator.realloc = batch_realloc;
	allocator.free = batch_free;
	allocator.ctx = ba;

	PG_TRY();
	{
		score_classes(rsinfo, parts, &lm.model, as_of, expected, limit_bytes, &allocator, tablecxt);
	}
	PG_FINALLY();
	{
		unmap_all(ba);
	}
	PG_END_TRY();

	MemoryContextDelete(tablecxt);
	table_close(parent_rel, AccessShareLock);
	return (Datum) 0;
}
