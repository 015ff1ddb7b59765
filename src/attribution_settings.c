/*
 * attribution_settings.c - the attribution rules' parameters: each
 * advertiser's post-click, post-view and rolling windows and allowed
 * lateness (propensity.advertiser_settings, 30 days each by default), and
 * propensity.future_horizon.
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "common/int.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "attribution_settings.h"
#include "util.h"

#define DEFAULT_WINDOW_US (INT64CONST(30) * USECS_PER_DAY)

int			propensity_future_horizon = 24 * 60;	/* minutes, -1: none */

static SPIPlanPtr settings_plan = NULL;

void
prop_attr_settings_init(void)
{
	DefineCustomIntVariable("propensity.future_horizon",
							"How far after its ingest an event may be and still count for attribution.",
							"A later event is stored and listed in propensity.attribution_late as future, but neither attributed nor let move the watermark. -1 means no limit.",
							&propensity_future_horizon,
							24 * 60,
							-1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
}

void
prop_attr_settings_lookup(void *arg, int64_t advertiser_id, AttrAdvSettings *out)
{
	AttrSettingsTable *st = (AttrSettingsTable *) arg;
	int			lo = 0,
				hi = st->n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (st->rows[mid].advertiser_id == advertiser_id)
		{
			*out = st->rows[mid].s;
			return;
		}
		if (st->rows[mid].advertiser_id < advertiser_id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	*out = st->defaults;
}

int64
prop_future_limit(void)
{
	int64		limit;

	if (propensity_future_horizon < 0 ||
		pg_add_s64_overflow(GetCurrentTransactionStartTimestamp(),
							(int64) propensity_future_horizon * USECS_PER_MINUTE, &limit))
		return PG_INT64_MAX;
	return limit;
}

static int64
lateness_us(Datum d)
{
	Interval   *span = DatumGetIntervalP(d);

	if (span->month == 0 && span->day == 0 && span->time == 0)
		return 0;
	return prop_interval_to_us(span, "allowed lateness");
}

/*
 * The advertiser settings, in the caller's memory context: SPI leaves its
 * own procedure context current after a query, and that one is freed at
 * SPI_finish(), before attribute_batch() reads the settings.
 */
AttrSettingsTable
prop_attr_load_settings(void)
{
	MemoryContext caller = CurrentMemoryContext;
	AttrSettingsTable st;
	uint64		i;

	prop_plan_run(&settings_plan,
				  "SELECT advertiser_id, pc_window, pv_window, rolling_window, allowed_lateness"
				  "  FROM propensity.advertiser_settings ORDER BY advertiser_id",
				  0, NULL, NULL, NULL, SPI_OK_SELECT);
	st.n = (int) SPI_processed;
	st.rows = MemoryContextAlloc(caller, sizeof(AdvRow) * (st.n + 1));
	st.defaults.windows.pc_window_us = DEFAULT_WINDOW_US;
	st.defaults.windows.pv_window_us = DEFAULT_WINDOW_US;
	st.defaults.windows.rolling_us = DEFAULT_WINDOW_US;
	st.defaults.lateness_us = DEFAULT_WINDOW_US;
	st.max_reach_us = st.defaults.lateness_us + st.defaults.windows.rolling_us;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		AdvRow	   *r = &st.rows[i];

		r->advertiser_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r->s.windows.pc_window_us =
			prop_interval_to_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 2, &isnull)), "post-click window");
		r->s.windows.pv_window_us =
			prop_interval_to_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 3, &isnull)), "post-view window");
		r->s.windows.rolling_us =
			prop_interval_to_us(DatumGetIntervalP(SPI_getbinval(tup, desc, 4, &isnull)), "rolling window");
		r->s.lateness_us = lateness_us(SPI_getbinval(tup, desc, 5, &isnull));
		st.max_reach_us = Max(st.max_reach_us, r->s.lateness_us + r->s.windows.rolling_us);
	}
	SPI_freetuptable(SPI_tuptable);
	return st;
}
