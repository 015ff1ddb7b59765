/*
 * store_partition.c - where an event time falls in the partitioning scheme: the
 * bounds of its partition under propensity.partition_interval (in UTC) and
 * whether it lies within the horizon that gets partitions of its own; and
 * the partitions a batch of events needs.  The DDL itself is in the
 * install script (ensure_partition).
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "funcapi.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/guc.h"

#include "store_partition.h"
#include "util.h"

int			propensity_partition_interval = PARTITION_DAY;
int			propensity_partition_max_past = 3650 * 24 * 60;
int			propensity_partition_max_future = 7 * 24 * 60;
int			propensity_partitions_per_batch = 32;

static const struct config_enum_entry partition_interval_options[] = {
	{"hour", PARTITION_HOUR, false},
	{"day", PARTITION_DAY, false},
	{"week", PARTITION_WEEK, false},
	{"month", PARTITION_MONTH, false},
	{NULL, 0, false}
};

void
prop_store_partition_init(void)
{
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
}

#define USECS_PER_WEEK (7 * USECS_PER_DAY)
/* 2000-01-01, PostgreSQL's epoch, is a Saturday; weeks start on Monday */
#define WEEK_OFFSET (2 * USECS_PER_DAY)

static int64
floor_to(int64 t, int64 unit, int64 offset)
{
	int64		r = (t - offset) % unit;

	if (r < 0)
		r += unit;
	return t - r;
}

static TimestampTz
month_start(TimestampTz t, int add_months)
{
	struct pg_tm tm;
	fsec_t		fsec;
	Timestamp	result;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	tm.tm_mon += add_months;
	while (tm.tm_mon > MONTHS_PER_YEAR)
	{
		tm.tm_mon -= MONTHS_PER_YEAR;
		tm.tm_year++;
	}
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (tm2timestamp(&tm, 0, NULL, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return result;
}

void
prop_partition_range(TimestampTz t, TimestampTz *lo_out, TimestampTz *hi_out, bool *in_horizon)
{
	TimestampTz lo;
	TimestampTz hi;
	TimestampTz h_lo;
	TimestampTz h_hi;

	switch (propensity_partition_interval)
	{
		case PARTITION_HOUR:
			lo = floor_to(t, USECS_PER_HOUR, 0);
			hi = lo + USECS_PER_HOUR;
			break;
		case PARTITION_WEEK:
			lo = floor_to(t, USECS_PER_WEEK, WEEK_OFFSET);
			hi = lo + USECS_PER_WEEK;
			break;
		case PARTITION_MONTH:
			lo = month_start(t, 0);
			hi = month_start(t, 1);
			break;
		case PARTITION_DAY:
		default:
			lo = floor_to(t, USECS_PER_DAY, 0);
			hi = lo + USECS_PER_DAY;
			break;
	}
	prop_partition_horizon(&h_lo, &h_hi);
	*lo_out = lo;
	*hi_out = hi;
	*in_horizon = t >= h_lo && t < h_hi;
}

void
prop_partition_horizon(TimestampTz *lo, TimestampTz *hi)
{
	int64		now = GetCurrentTransactionStartTimestamp();

	*lo = DT_NOBEGIN;
	*hi = DT_NOEND;
	if (propensity_partition_max_past >= 0)
		*lo = now - (int64) propensity_partition_max_past * USECS_PER_MINUTE;
	if (propensity_partition_max_future >= 0)
		*hi = now + (int64) propensity_partition_max_future * USECS_PER_MINUTE;
}

static int
cmp_timestamptz(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return x < y ? -1 : x > y;
}

/*
 * The partitions that times[0..n) fall in, created where missing: one per
 * partition range that holds an event (never the ranges between them), only
 * within the horizon, and at most propensity.partitions_per_batch new ones;
 * the events of further ranges wait in the default partition, as rows
 * inserted before their partition existed do, until maintain_partitions().
 * Returns how many were created.  Needs an SPI connection.
 */
int
prop_ensure_batch_partitions(const TimestampTz *times, int n)
{
	TimestampTz *starts = palloc(sizeof(TimestampTz) * Max(n, 1) * 2);
	Datum	   *reps;
	int			m = 0;
	int			nreps = 0;
	int			created = 0;
	int			i;
	Oid			argtype = TIMESTAMPTZARRAYOID;
	Datum		arg;
	uint64		nmissing;
	SPITupleTable *missing;

	/* (range start, first event time of it) pairs, in order of range start */
	for (i = 0; i < n; i++)
	{
		TimestampTz lo;
		TimestampTz hi;
		bool		in_horizon;

		prop_partition_range(times[i], &lo, &hi, &in_horizon);
		if (!in_horizon)
			continue;
		starts[2 * m] = lo;
		starts[2 * m + 1] = times[i];
		m++;
	}
	if (m == 0)
		return 0;
	qsort(starts, m, 2 * sizeof(TimestampTz), cmp_timestamptz);
	reps = palloc(sizeof(Datum) * m);
	for (i = 0; i < m; i++)
		if (i == 0 || starts[2 * i] != starts[2 * (i - 1)])
			reps[nreps++] = TimestampTzGetDatum(starts[2 * i + 1]);
	arg = prop_array_datum(reps, NULL, nreps, TIMESTAMPTZOID);
	if (SPI_execute_with_args("SELECT r FROM pg_catalog.unnest($1) r"
							  " WHERE NOT EXISTS (SELECT 1 FROM propensity.event_partitions p"
							  "                     JOIN pg_catalog.pg_inherits i ON i.inhrelid = p.partition"
							  "                    WHERE i.inhparent = 'propensity.events'::pg_catalog.regclass"
							  "                      AND p.range_start <= r AND r < p.range_end)"
							  " ORDER BY r",
							  1, &argtype, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the event partitions");
	missing = SPI_tuptable;
	nmissing = SPI_processed;
	for (i = 0; i < (int) nmissing && created < propensity_partitions_per_batch; i++)
	{
		bool		isnull;
		Datum		t = SPI_getbinval(missing->vals[i], missing->tupdesc, 1, &isnull);
		Oid			type = TIMESTAMPTZOID;

		CHECK_FOR_INTERRUPTS();
		if (SPI_execute_with_args("SELECT propensity.ensure_partition($1)", 1, &type, &t, NULL,
								  false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not create an event partition");
		created++;
	}
	if ((int) nmissing > created)
		ereport(DEBUG1,
				(errmsg("propensity: %d event partitions not created in this batch",
						(int) nmissing - created),
				 errdetail("At most propensity.partitions_per_batch (%d) are created per batch; the events of the other ranges wait in propensity.events_default.",
						   propensity_partitions_per_batch)));
	SPI_freetuptable(missing);
	return created;
}

/*
 * partition_bounds(t) -> (range_start, range_end, in_horizon): the partition
 * that t belongs to, [range_start, range_end), and whether t is within
 * propensity.partition_max_past / partition_max_future of now.
 */
PG_FUNCTION_INFO_V1(propensity_partition_bounds);
Datum
propensity_partition_bounds(PG_FUNCTION_ARGS)
{
	int64		t = prop_arg_time(fcinfo, 0, "event time");
	TimestampTz lo;
	TimestampTz hi;
	bool		in_horizon;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	prop_partition_range(t, &lo, &hi, &in_horizon);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	values[0] = TimestampTzGetDatum(lo);
	values[1] = TimestampTzGetDatum(hi);
	values[2] = BoolGetDatum(in_horizon);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* partition_horizon() -> (horizon_start, horizon_end): times in [start, end) get partitions */
PG_FUNCTION_INFO_V1(propensity_partition_horizon);
Datum
propensity_partition_horizon(PG_FUNCTION_ARGS)
{
	TimestampTz lo;
	TimestampTz hi;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	prop_partition_horizon(&lo, &hi);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = TimestampTzGetDatum(lo);
	values[1] = TimestampTzGetDatum(hi);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* ensure_partitions_for(times timestamptz[]) -> partitions created */
PG_FUNCTION_INFO_V1(propensity_ensure_partitions_for);
Datum
propensity_ensure_partitions_for(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			m = 0;
	int			i;
	TimestampTz *times;
	int			created;
	int			nest;

	deconstruct_array(arr, TIMESTAMPTZOID, sizeof(TimestampTz), true, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	times = palloc(sizeof(TimestampTz) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!nulls[i] && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(elems[i])))
			times[m++] = DatumGetTimestampTz(elems[i]);
	nest = prop_pin_search_path();
	SPI_connect();
	created = prop_ensure_batch_partitions(times, m);
	SPI_finish();
	prop_restore_search_path(nest);
	PG_RETURN_INT32(created);
}
