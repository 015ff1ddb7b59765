/*
 * score.c - score_all(): the propensity of every user as of a time, in one
 * sequential pass over the event partitions into the core's UserTable.
 *
 * Memory is bounded by propensity.batch_memory: when the table would
 * outgrow it, the users are split by hash into two classes that are scored
 * in separate passes, recursively, so large user sets cost extra scans
 * rather than unbounded memory.  Results stream into a tuplestore, which
 * spills to disk past work_mem.
 *
 * With propensity.batch_workers parallel workers (by default one per CPU
 * beyond the first), the leader and the workers share the partitions: each participant builds a table from the partitions it
 * claims, the workers stream theirs to the leader through shm_mq, and the
 * leader merges them (window counts add exactly, decayed sums add).
 */
#include "postgres.h"

#include "optimizer/optimizer.h"

#include <unistd.h>

#include "access/parallel.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "portability/instr_time.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "optimizer/cost.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "postmaster/bgworker_internals.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "core/user_table.h"
#include "huge_alloc.h"
#include "models.h"
#include "score.h"
#include "score_scan.h"
#include "store.h"
#include "store_scan.h"
#include "util.h"

int			propensity_batch_workers = -1;

void
prop_score_init(void)
{
	DefineCustomIntVariable("propensity.batch_workers",
							"Parallel workers score_all starts besides the leader.",
							"-1 means one per CPU beyond the first, at most max_parallel_workers_per_gather; 0 scores serially.",
							&propensity_batch_workers,
							-1,
							-1, MAX_PARALLEL_WORKER_LIMIT,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);
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
	int			nest_level;

	SPI_connect();
	nest_level = prop_pin_search_path();
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
	prop_restore_search_path(nest_level);
	SPI_finish();
	return result;
}

/*
 * Put one row per user into the result tuplestore.  The user id and the
 * arrays are built in place in reusable buffers: with a million users, a
 * palloc per value is a visible share of the run.  A result with a fourth
 * column (model_snapshot) also gets the model's inputs, transform(feature).
 */
static ArrayType *
float8_array_buffer(int n)
{
	Size		size = ARR_OVERHEAD_NONULLS(1) + sizeof(float8) * n;
	ArrayType  *a = palloc0(size);

	SET_VARSIZE(a, size);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = FLOAT8OID;
	ARR_DIMS(a)[0] = n;
	ARR_LBOUND(a)[0] = 1;
	return a;
}

static void
emit(ReturnSetInfo *rsinfo, const UserTable *table, const FeatModel *model)
{
	int			nterms = model->nterms;
	bool		with_inputs = rsinfo->setDesc->natts >= 4;
	ArrayType  *features = float8_array_buffer(nterms);
	ArrayType  *inputs = float8_array_buffer(nterms);
	float8	   *input_values = (float8 *) ARR_DATA_PTR(inputs);
	text	   *user = palloc(VARHDRSZ + 64);
	Size		user_cap = 64;
	size_t		pos = 0;
	const char *key;
	uint32		len;
	const double *acc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	while (ut_next(table, &pos, &key, &len, &acc))
	{
		if (len > user_cap)
		{
			user_cap = len;
			user = repalloc(user, VARHDRSZ + user_cap);
		}
		SET_VARSIZE(user, VARHDRSZ + len);
		memcpy(VARDATA(user), key, len);
		memcpy(ARR_DATA_PTR(features), acc, sizeof(float8) * nterms);
		values[0] = PointerGetDatum(user);
		values[1] = Float8GetDatum(feat_score(model, acc));
		values[2] = PointerGetDatum(features);
		if (with_inputs)
		{
			for (int i = 0; i < nterms; i++)
				input_values[i] = feat_input(&model->terms[i], acc[i]);
			values[3] = PointerGetDatum(inputs);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(features);
	pfree(inputs);
	pfree(user);
}

/* One pass of score_classes(): the users of one hash class. */
typedef struct ScorePass
{
	ReturnSetInfo *rsinfo;
	List	   *parts;
	const FeatModel *model;
	int64		as_of;
	double		expected;
	Size		limit_bytes;
	const CoreAllocator *allocator;
	MemoryContext tablecxt;
} ScorePass;

static bool
score_class(HashClass cls, void *arg)
{
	ScorePass  *sp = arg;
	UserTable  *table = ut_create(sp->model->nterms, (size_t) (sp->expected / cls.modulus), sp->allocator);
	bool		fits = true;
	ListCell   *lc;
	instr_time	start;
	instr_time	scanned;
	instr_time	emitted;

	INSTR_TIME_SET_CURRENT(start);
	foreach(lc, sp->parts)
	{
		fits = scan_partition(lfirst_oid(lc), table, sp->model, sp->as_of, cls, sp->limit_bytes);
		if (!fits)
			break;
	}
	INSTR_TIME_SET_CURRENT(scanned);
	if (fits)
	{
		emit(sp->rsinfo, table, sp->model);
		INSTR_TIME_SET_CURRENT(emitted);
		INSTR_TIME_SUBTRACT(emitted, scanned);
		INSTR_TIME_SUBTRACT(scanned, start);
		ereport(DEBUG2,
				(errmsg("score_all: class %u/%u: %zu users, %zu kB, scan %.1f ms, output %.1f ms",
						cls.residue, cls.modulus, ut_count(table), ut_memory(table) / 1024,
						INSTR_TIME_GET_MILLISEC(scanned), INSTR_TIME_GET_MILLISEC(emitted))));
	}
	else
		ereport(DEBUG1,
				(errmsg("score_all: %zu users outgrew propensity.batch_memory, splitting into %u classes",
						ut_count(table), cls.modulus * 2)));
	ut_destroy(table);
	MemoryContextReset(sp->tablecxt);
	return fits;
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
	ScorePass	sp = {rsinfo, parts, model, as_of, expected, limit_bytes, allocator, tablecxt};

	prop_hash_class_passes(score_class, &sp, "score these users");
}

/* ---------- parallel scoring ---------- */

#define PARALLEL_KEY_SHARED UINT64CONST(0x50524F5053480001)
#define PARALLEL_KEY_QUEUES UINT64CONST(0x50524F5053480002)
#define QUEUE_SIZE ((Size) 4 * 1024 * 1024)
#define CHUNK_SIZE ((Size) 64 * 1024)

typedef struct BatchShared
{
	int64		as_of;
	FeatModel	model;
	Size		limit_bytes;
	double		expected;
	pg_atomic_uint32 next_part;
	pg_atomic_uint32 overflowed;	/* some participant outgrew limit_bytes */
	int			nparts;
	Oid			parts[FLEXIBLE_ARRAY_MEMBER];
} BatchShared;

PGDLLEXPORT void propensity_score_all_worker(dsm_segment *seg, shm_toc *toc);

/* Claim partitions until none is left.  False when the table overflowed. */
static bool
scan_claimed(BatchShared *shared, UserTable *table)
{
	HashClass	all = {1, 0};

	for (;;)
	{
		uint32		i = pg_atomic_fetch_add_u32(&shared->next_part, 1);

		if (i >= (uint32) shared->nparts)
			return true;
		if (pg_atomic_read_u32(&shared->overflowed) != 0)
			return false;
		if (!scan_partition(shared->parts[i], table, &shared->model, shared->as_of, all,
							shared->limit_bytes))
		{
			pg_atomic_write_u32(&shared->overflowed, 1);
			return false;
		}
	}
}


/*
 * Worker: build a table from claimed partitions and send it to the leader
 * as chunks of records (uint32 length, key bytes, nterms doubles).
 */
void
propensity_score_all_worker(dsm_segment *seg, shm_toc *toc)
{
	BatchShared *shared = shm_toc_lookup(toc, PARALLEL_KEY_SHARED, false);
	char	   *queues = shm_toc_lookup(toc, PARALLEL_KEY_QUEUES, false);
	shm_mq	   *mq = (shm_mq *) (queues + ParallelWorkerNumber * QUEUE_SIZE);
	shm_mq_handle *mqh;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "score_all worker",
											  ALLOCSET_DEFAULT_SIZES);
	HugeAllocator ba;
	CoreAllocator allocator;
	int			nterms = shared->model.nterms;

	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	huge_allocator_init(&ba, &allocator, cxt, "the score_all user table");
	PG_TRY();
	{
		UserTable  *table = ut_create(nterms, (size_t) shared->expected, &allocator);

		if (scan_claimed(shared, table))
		{
			char	   *chunk = palloc(CHUNK_SIZE);
			Size		used = 0;
			Size		record = sizeof(uint32) + sizeof(double) * nterms;
			size_t		pos = 0;
			const char *key;
			uint32		len;
			const double *acc;

			while (ut_next(table, &pos, &key, &len, &acc))
			{
				if (used + record + len > CHUNK_SIZE && used > 0)
				{
					if (shm_mq_send(mqh, used, chunk, false, true) != SHM_MQ_SUCCESS)
						break;	/* leader gone */
					used = 0;
				}
				if (record + len > CHUNK_SIZE)
				{
					/* a user id longer than a chunk travels in a message of its own */
					char	   *big = palloc(record + len);

					memcpy(big, &len, sizeof(uint32));
					memcpy(big + sizeof(uint32), key, len);
					memcpy(big + sizeof(uint32) + len, acc, sizeof(double) * nterms);
					if (used > 0 && shm_mq_send(mqh, used, chunk, false, true) != SHM_MQ_SUCCESS)
						break;
					used = 0;
					if (shm_mq_send(mqh, record + len, big, false, true) != SHM_MQ_SUCCESS)
						break;
					pfree(big);
					continue;
				}
				memcpy(chunk + used, &len, sizeof(uint32));
				memcpy(chunk + used + sizeof(uint32), key, len);
				memcpy(chunk + used + sizeof(uint32) + len, acc, sizeof(double) * nterms);
				used += record + len;
			}
			if (used > 0)
				(void) shm_mq_send(mqh, used, chunk, false, true);
		}
	}
	PG_FINALLY();
	{
		huge_unmap_all(&ba);
	}
	PG_END_TRY();
	shm_mq_detach(mqh);
}

/* Add a worker's records into the leader's table. */
static void
merge_chunk(UserTable *table, int nterms, const char *data, Size nbytes)
{
	Size		off = 0;
	double		acc[FEAT_MAX_TERMS];

	while (off < nbytes)
	{
		uint32		len;
		double	   *dst;
		int			i;

		memcpy(&len, data + off, sizeof(uint32));
		off += sizeof(uint32);
		dst = ut_lookup(table, data + off, len, ut_hash(data + off, len));
		off += len;
		memcpy(acc, data + off, sizeof(double) * nterms);
		off += sizeof(double) * nterms;
		for (i = 0; i < nterms; i++)
			dst[i] += acc[i];
	}
	if (off != nbytes)
		elog(ERROR, "malformed score_all message from a parallel worker");
}

/* Workers to ask for: propensity.batch_workers, or one per spare CPU. */
static int
batch_workers(int nparts)
{
	int			n = propensity_batch_workers;

	if (n < 0)
	{
		long		cpus = sysconf(_SC_NPROCESSORS_ONLN);

		n = Min(max_parallel_workers_per_gather, cpus > 1 ? (int) cpus - 1 : 0);
	}
	return Max(0, Min(n, nparts - 1));
}

/*
 * Score every user with parallel workers.  Returns false, having emitted
 * nothing, when some table outgrew limit_bytes; the caller then falls back
 * to the serial multi-pass path.
 */
static bool
score_parallel(ReturnSetInfo *rsinfo, List *parts, const FeatModel *model, int64 as_of,
			   double expected, Size limit_bytes, const CoreAllocator *allocator,
			   int nworkers)
{
	ParallelContext *pcxt;
	BatchShared *shared;
	char	   *queues;
	Size		shared_size = offsetof(BatchShared, parts) + sizeof(Oid) * list_length(parts);
	shm_mq_handle **mqh;
	UserTable  *table;
	bool		fits;
	int			i;
	ListCell   *lc;
	instr_time	start;
	instr_time	scanned;
	instr_time	merged;
	instr_time	emitted;

	EnterParallelMode();
	pcxt = CreateParallelContext("propensity", "propensity_score_all_worker", nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator, shared_size);
	shm_toc_estimate_chunk(&pcxt->estimator, QUEUE_SIZE * nworkers);
	shm_toc_estimate_keys(&pcxt->estimator, 2);
	InitializeParallelDSM(pcxt);

	shared = shm_toc_allocate(pcxt->toc, shared_size);
	shared->as_of = as_of;
	shared->model = *model;
	shared->limit_bytes = limit_bytes;
	shared->expected = expected;
	pg_atomic_init_u32(&shared->next_part, 0);
	pg_atomic_init_u32(&shared->overflowed, 0);
	shared->nparts = 0;
	foreach(lc, parts)
		shared->parts[shared->nparts++] = lfirst_oid(lc);
	shm_toc_insert(pcxt->toc, PARALLEL_KEY_SHARED, shared);

	queues = shm_toc_allocate(pcxt->toc, QUEUE_SIZE * nworkers);
	for (i = 0; i < nworkers; i++)
		shm_mq_set_receiver(shm_mq_create(queues + i * QUEUE_SIZE, QUEUE_SIZE), MyProc);
	shm_toc_insert(pcxt->toc, PARALLEL_KEY_QUEUES, queues);

	LaunchParallelWorkers(pcxt);
	mqh = palloc0(sizeof(shm_mq_handle *) * nworkers);
	for (i = 0; i < pcxt->nworkers_launched; i++)
		mqh[i] = shm_mq_attach((shm_mq *) (queues + i * QUEUE_SIZE), pcxt->seg,
							   pcxt->worker[i].bgwhandle);

	/*
	 * The leader scans too (unless parallel_leader_participation is off and
	 * a worker runs), then merges what the workers found.
	 */
	INSTR_TIME_SET_CURRENT(start);
	table = ut_create(model->nterms, (size_t) expected, allocator);
	fits = (!parallel_leader_participation && pcxt->nworkers_launched > 0) ? true :
		scan_claimed(shared, table);
	INSTR_TIME_SET_CURRENT(scanned);
	for (i = 0; i < pcxt->nworkers_launched; i++)
	{
		for (;;)
		{
			Size		nbytes;
			void	   *data;

			if (shm_mq_receive(mqh[i], &nbytes, &data, false) != SHM_MQ_SUCCESS)
				break;			/* the worker detached: all sent */
			if (fits)
				merge_chunk(table, model->nterms, data, nbytes);
		}
		if (ut_memory(table) > limit_bytes)
			fits = false;
	}
	WaitForParallelWorkersToFinish(pcxt);
	INSTR_TIME_SET_CURRENT(merged);
	fits = fits && pg_atomic_read_u32(&shared->overflowed) == 0;
	if (fits)
		emit(rsinfo, table, model);
	INSTR_TIME_SET_CURRENT(emitted);
	INSTR_TIME_SUBTRACT(emitted, merged);
	INSTR_TIME_SUBTRACT(merged, scanned);
	INSTR_TIME_SUBTRACT(scanned, start);
	ereport(DEBUG2,
			(errmsg("score_all: %d of %d parallel workers launched, %zu users, leader scan %.1f ms, merge %.1f ms, output %.1f ms",
					pcxt->nworkers_launched, nworkers, ut_count(table),
					INSTR_TIME_GET_MILLISEC(scanned), INSTR_TIME_GET_MILLISEC(merged),
					INSTR_TIME_GET_MILLISEC(emitted))));
	ut_destroy(table);
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	return fits;
}

/*
 * Score every user with events up to as_of under a loaded model into the
 * function's result set.
 */
static void
score_all_into(FunctionCallInfo fcinfo, int64 as_of, const LoadedModel *loaded)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LoadedModel lm = *loaded;
	Oid			parent;
	Relation	parent_rel;
	List	   *parts;
	MemoryContext tablecxt;
	HugeAllocator *ba;
	CoreAllocator allocator;
	double		expected;
	Size		limit_bytes = (Size) propensity_batch_memory * 1024;
	size_t		max_users;

	parent_rel = prop_events_scan_begin("score_all",
										"Use the aggregate: SELECT user_id, propensity.score_events(event_type, event_time, t) FROM propensity.events GROUP BY user_id.");
	parent = RelationGetRelid(parent_rel);
	InitMaterializedSRF(fcinfo, 0);
	parts = prop_event_partitions(parent, as_of);

	/* size for the expected users, within what the memory limit allows */
	expected = expected_users(parent);
	max_users = limit_bytes / (24 + sizeof(double) * lm.model.nterms) / 3;
	if (expected > (double) max_users)
		expected = (double) max_users;

	tablecxt = AllocSetContextCreate(CurrentMemoryContext, "score_all users", ALLOCSET_DEFAULT_SIZES);
	ba = palloc(sizeof(HugeAllocator));
	huge_allocator_init(ba, &allocator, tablecxt, "the score_all user table");

	PG_TRY();
	{
		int			nworkers = batch_workers(list_length(parts));
		bool		done = false;

		/* parallel when the whole table is expected to fit in one pass */
		if (nworkers > 0 && !IsInParallelMode() && expected < (double) max_users)
			done = score_parallel(rsinfo, parts, &lm.model, as_of, expected, limit_bytes,
								  &allocator, nworkers);
		if (!done)
		{
			MemoryContextReset(tablecxt);
			score_classes(rsinfo, parts, &lm.model, as_of, expected, limit_bytes, &allocator, tablecxt);
		}
	}
	PG_FINALLY();
	{
		huge_unmap_all(ba);
	}
	PG_END_TRY();

	MemoryContextDelete(tablecxt);
	table_close(parent_rel, AccessShareLock);
}

/* score_all(as_of timestamptz, model text) returns (user_id, score, features) */
PG_FUNCTION_INFO_V1(propensity_score_all);
Datum
propensity_score_all(PG_FUNCTION_ARGS)
{
	int64		as_of = prop_arg_time(fcinfo, 0, "as-of time");
	LoadedModel lm;

	prop_load_model_by_name(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)), &lm);
	score_all_into(fcinfo, as_of, &lm);
	return (Datum) 0;
}

/*
 * model_snapshot(as_of timestamptz, model_id integer) returns (user_id,
 * score, features, inputs): score_all for one stored model version, with
 * the inputs that its coefficients multiply (training and evaluation).
 */
PG_FUNCTION_INFO_V1(propensity_model_snapshot);
Datum
propensity_model_snapshot(PG_FUNCTION_ARGS)
{
	int64		as_of = prop_arg_time(fcinfo, 0, "as-of time");
	LoadedModel lm;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model id must not be null")));
	prop_load_model_by_id(PG_GETARG_INT32(1), &lm);
	score_all_into(fcinfo, as_of, &lm);
	return (Datum) 0;
}
