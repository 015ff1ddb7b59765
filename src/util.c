/*
 * util.c - what every room of the glue uses: argument readers that raise
 * the documented errors, search_path pinning, the core's allocator and
 * interrupt check over PostgreSQL's, subtransactions, arrays and prepared
 * SPI plans.
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/int.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "util.h"

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

SPIPlanPtr
prop_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = p;
	}
	return *slot;
}

void
prop_plan_run(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types, Datum *values,
			  const char *nulls, int expect)
{
	int			ret = SPI_execute_plan(prop_plan(slot, sql, nargs, types), values, nulls, false, 0);

	if (ret != expect)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s", sql, SPI_result_code_string(ret));
}

void
prop_plan_forget(SPIPlanPtr *slot)
{
	if (*slot != NULL)
	{
		SPI_freeplan(*slot);
		*slot = NULL;
	}
}
