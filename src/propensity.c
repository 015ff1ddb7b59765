/*
 * propensity.c - module entry point: GUC definitions, and the argument
 * checks shared by the SQL-callable functions.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "access/xact.h"
#include "utils/resowner.h"
#include "miscadmin.h"
#include "common/int.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "postmaster/bgworker_internals.h"
#include "utils/timestamp.h"

#include "propensity.h"
#include "attribution.h"
#include "decode.h"
#include "partition.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *propensity_default_model = NULL;
int			propensity_partition_interval = PARTITION_DAY;
int			propensity_partition_max_past = 3650 * 24 * 60;
int			propensity_partition_max_future = 7 * 24 * 60;
int			propensity_partitions_per_batch = 32;
int			propensity_batch_memory = 256 * 1024;
bool		propensity_batch_fast_scan = true;
int			propensity_batch_workers = -1;

static const struct config_enum_entry partition_interval_options[] = {
	{"hour", PARTITION_HOUR, false},
	{"day", PARTITION_DAY, false},
	{"week", PARTITION_WEEK, false},
	{"month", PARTITION_MONTH, false},
	{NULL, 0, false}
};

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("propensity.default_model",
							   "Model used when a function is given no model name.",
							   "The latest version of the model with this name in propensity.models.",
							   &propensity_default_model,
							   "seed",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("propensity.partition_interval",
							 "Width of the event partitions created from now on.",
							 "Existing partitions keep their bounds; new ones are clipped to fit between them.",
							 &propensity_partition_interval,
							 PARTITION_DAY,
							 partition_interval_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("propensity.partition_max_past",
							"How far before now an event time still gets its own partition.",
							"Older events are kept in the default partition propensity.events_default. -1 means no limit.",
							&propensity_partition_max_past,
							3650 * 24 * 60,
							-1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("propensity.partition_max_future",
							"How far after now an event time still gets its own partition.",
							"Later events are kept in the default partition propensity.events_default. -1 means no limit.",
							&propensity_partition_max_future,
							7 * 24 * 60,
							-1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("propensity.partitions_per_batch",
							"New event partitions one ingest batch may create.",
							"Only the ranges that hold the batch's events get partitions; events of ranges past this many wait in the default partition until propensity.maintain_partitions().",
							&propensity_partitions_per_batch,
							32,
							0, 10000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("propensity.future_horizon",
							"How far after its ingest an event may be and still count for attribution.",
							"A later event is stored and listed in propensity.attribution_late as future, but neither attributed nor let move the watermark. -1 means no limit.",
							&propensity_future_horizon,
							24 * 60,
							-1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("propensity.batch_memory",
							"Memory score_all may use for its table of users.",
							"Past this, users are split by hash into classes scored in separate passes.",
							&propensity_batch_memory,
							256 * 1024,
							64, MAX_KILOBYTES,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("propensity.batch_fast_scan",
							 "Lets score_all read heap pages directly instead of through tuple slots.",
							 "Off forces the generic path, for comparison and testing; results are the same.",
							 &propensity_batch_fast_scan,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("propensity.batch_workers",
							"Parallel workers score_all starts besides the leader.",
							"-1 means one per CPU beyond the first, at most max_parallel_workers_per_gather; 0 scores serially.",
							&propensity_batch_workers,
							-1,
							-1, MAX_PARALLEL_WORKER_LIMIT,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	prop_decode_init();
	prop_worker_init();

	MarkGUCPrefixReserved("propensity");
}

FeatEventType
prop_arg_event_type(FunctionCallInfo fcinfo, int argno)
{
	text	   *t;
	int			type;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event type must not be null"),
				 errhint("Valid types are IM, CL, PS and CN.")));
	t = PG_GETARG_TEXT_PP(argno);
	type = feat_parse_type(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (type < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event type \"%s\"", text_to_cstring(t)),
				 errhint("Valid types are IM, CL, PS and CN.")));
	return (FeatEventType) type;
}

int64
prop_arg_time(FunctionCallInfo fcinfo, int argno, const char *what)
{
	TimestampTz ts;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	ts = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be finite", what),
				 errhint("Features are defined for finite times only.")));
	return (int64) ts;
}

int64
prop_interval_to_us(const Interval *span, const char *what)
{
	int64		us;

	if (span->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain months or years", what),
				 errdetail("Months have no fixed length."),
				 errhint("Give it in days, for example '30 days'.")));
	if (pg_mul_s64_overflow((int64) span->day, USECS_PER_DAY, &us) ||
		pg_add_s64_overflow(us, span->time, &us))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s is out of range", what)));
	if (us <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what)));
	return us;
}

int64
prop_arg_span(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return prop_interval_to_us(PG_GETARG_INTERVAL_P(argno), what);
}

int
prop_pin_search_path(void)
{
	int			nest_level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest_level;
}

void
prop_restore_search_path(int nest_level)
{
	AtEOXact_GUC(true, nest_level);
}

static void *
context_alloc(void *ctx, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) ctx, size, MCXT_ALLOC_HUGE);
}

static void *
context_realloc(void *ctx, void *ptr, size_t size)
{
	return ptr ? repalloc_huge(ptr, size) : context_alloc(ctx, size);
}

static void
context_free(void *ctx, void *ptr)
{
	pfree(ptr);
}

CoreAllocator
prop_context_allocator(MemoryContext cxt)
{
	CoreAllocator a;

	a.alloc = context_alloc;
	a.realloc = context_realloc;
	a.free = context_free;
	a.ctx = cxt;
	return a;
}

static void
core_check_interrupts(void *arg)
{
	CHECK_FOR_INTERRUPTS();
}

const CoreInterrupt prop_core_interrupt = {core_check_interrupts, NULL};

bool
prop_subxact_try(void (*fn) (void *arg), void *arg, ErrorData **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (error != NULL)
			*error = edata;
		else
			FreeErrorData(edata);
	}
	PG_END_TRY();
	return ok;
}

Datum
prop_array_datum(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, elemtype,
											  typlen, typbyval, typalign));
}
