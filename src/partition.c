/*
 * partition.c - where an event time falls in the partitioning scheme: the
 * bounds of its partition under propensity.partition_interval (in UTC) and
 * whether it lies within the horizon that gets partitions of its own.
 * The DDL itself is in the install script (ensure_partitions).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "funcapi.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "propensity.h"

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
	int64		now = GetCurrentTransactionStartTimestamp();
	int64		lo;
	int64		hi;
	bool		in_horizon = true;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

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
	if (propensity_partition_max_past >= 0 &&
		t < now - (int64) propensity_partition_max_past * USECS_PER_MINUTE)
		in_horizon = false;
	if (propensity_partition_max_future >= 0 &&
		t >= now + (int64) propensity_partition_max_future * USECS_PER_MINUTE)
		in_horizon = false;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	values[0] = TimestampTzGetDatum(lo);
	values[1] = TimestampTzGetDatum(hi);
	values[2] = BoolGetDatum(in_horizon);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
