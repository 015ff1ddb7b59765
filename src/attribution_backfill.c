/*
 * attribution_backfill.c - attribution_backfill(): the state the streaming
 * engine reaches, computed in batch from every stored event by the
 * attribution scan (attribution_scan.c) and written through the changelog
 * writer into emptied tables; the state row then starts from it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "attribution_changelog.h"
#include "attribution_engine.h"
#include "attribution_scan.h"
#include "util.h"

#define BACKFILL_CHUNK 50000

typedef struct Backfill
{
	int64		batch;
	AttrDelta  *deltas;			/* a class's credits */
	size_t		n;
	size_t		cap;
	HTAB	   *totals;
	MemoryContext chunk_cxt;
	int64		ndeltas;
} Backfill;

/* a class's credits */
static void
backfill_credit(void *arg, const AttrBatchCredit *c)
{
	Backfill   *bf = arg;
	AttrDelta  *d;

	if (bf->n == bf->cap)
	{
		bf->cap *= 2;
		bf->deltas = repalloc_huge(bf->deltas, sizeof(AttrDelta) * bf->cap);
	}
	d = &bf->deltas[bf->n++];
	d->user_id = c->user_id;
	d->user_len = c->user_len;
	d->advertiser_id = c->advertiser_id;
	d->conversion_id = c->conversion_id;
	d->conversion_time_us = c->conversion_time_us;
	d->credit = c->credit;
	d->sign = 1;
}

static void
backfill_total(void *arg, const AttrBatchTotal *t)
{
	Backfill   *bf = arg;

	prop_attr_totals_add(bf->totals, t->advertiser_id, t->has_campaign, t->campaign_id, TOTAL_IM, t->impressions);
	prop_attr_totals_add(bf->totals, t->advertiser_id, t->has_campaign, t->campaign_id, TOTAL_CL, t->clicks);
}

static int
by_conversion(const void *a, const void *b)
{
	const AttrDelta *x = a;
	const AttrDelta *y = b;
	int			c = strcmp(x->conversion_id, y->conversion_id);

	if (c != 0)
		return c;
	return x->conversion_time_us < y->conversion_time_us ? -1 : x->conversion_time_us > y->conversion_time_us;
}

/*
 * Write a class's credits (one +1 each), before their strings go.  In
 * conversion id order: the b-tree inserts of the tables' indexes on it then
 * walk the index instead of landing on random pages.
 */
static void
backfill_class_done(void *arg)
{
	Backfill   *bf = arg;
	size_t		at;

	qsort(bf->deltas, bf->n, sizeof(AttrDelta), by_conversion);
	for (at = 0; at < bf->n; at += BACKFILL_CHUNK)
	{
		AttrBatchResult r;
		MemoryContext old;

		memset(&r, 0, sizeof(r));
		r.deltas = bf->deltas + at;
		r.ndeltas = Min(BACKFILL_CHUNK, bf->n - at);
		old = MemoryContextSwitchTo(bf->chunk_cxt);
		prop_attr_write_deltas(bf->batch, &r, bf->totals, true);
		MemoryContextSwitchTo(old);
		MemoryContextReset(bf->chunk_cxt);
		bf->ndeltas += r.ndeltas;
	}
	bf->n = 0;
}

/*
 * attribution_backfill(include_late) -> (conversions, deltas): the state
 * the streaming engine reaches, computed in batch from every stored event
 * (those listed late or future excluded) into emptied tables: one +1 per
 * conversion in the changelog, its credit in attribution_current, and the
 * totals.  Events past the future horizon now are listed as future first.
 * With include_late, the list is emptied before that: the events it held
 * count as if they had arrived in time (an admin's repair after a clock
 * went wrong).  The watermark becomes the latest time of the events
 * attributed, so an event deleted since no longer holds it.  The session's
 * engine cache is dropped; the next engine batch rebuilds it from what
 * this wrote.
 */
PG_FUNCTION_INFO_V1(propensity_attribution_backfill);
Datum
propensity_attribution_backfill(PG_FUNCTION_ARGS)
{
	TupleDesc	rdesc;
	Datum		result[2];
	bool		rnulls[2] = {false, false};
	int			nest;
	AttrState	state;
	AttrSettingsTable settings;
	AttrScanInfo info;
	AttrScanSink sink;
	Backfill	bf;

	/* 0.7.0's SQL declares no argument */
	bool		include_late = PG_NARGS() > 0 && !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	bool		has_future;

	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "attribution_backfill() must return a record");
	nest = prop_pin_search_path();
	SPI_connect();
	state = prop_attr_lock_state();
	settings = prop_attr_load_settings();

	if (include_late &&
		SPI_execute("DELETE FROM propensity.attribution_late", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not empty the list of late events");
	has_future = prop_attr_schema_has_future();
	if (has_future && prop_future_limit() != PG_INT64_MAX)
	{
		Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
		Datum		args[2] = {Int64GetDatum(state.generation + 1), TimestampTzGetDatum(prop_future_limit())};

		if (SPI_execute_with_args("INSERT INTO propensity.attribution_late"
								  "       (batch, event_id, event_time, user_id, event_type, advertiser_id,"
								  "        campaign_id, watermark, reason)"
								  " SELECT $1, e.event_id, e.event_time, e.user_id, e.event_type, e.advertiser_id,"
								  "        e.campaign_id, $2, 'future'"
								  "   FROM propensity.events e WHERE e.event_time > $2"
								  " ON CONFLICT DO NOTHING",
								  2, types, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not list the future events");
	}
	if (SPI_execute("TRUNCATE propensity.attribution_changelog, propensity.attribution_current,"
					" propensity.attribution_totals", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not truncate the attribution tables");
	if (SPI_execute(has_future ?
					"INSERT INTO propensity.attribution_totals (advertiser_id, campaign_id, late, future)"
					" SELECT advertiser_id, campaign_id, count(*) FILTER (WHERE reason = 'late'),"
					"        count(*) FILTER (WHERE reason = 'future')"
					"   FROM propensity.attribution_late"
					"  WHERE advertiser_id IS NOT NULL GROUP BY advertiser_id, campaign_id" :
					"INSERT INTO propensity.attribution_totals (advertiser_id, campaign_id, late)"
					" SELECT advertiser_id, campaign_id, count(*) FROM propensity.attribution_late"
					"  WHERE advertiser_id IS NOT NULL GROUP BY advertiser_id, campaign_id",
					false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not count the late events");

	memset(&bf, 0, sizeof(bf));
	bf.batch = state.generation + 1;
	bf.cap = BACKFILL_CHUNK;
	bf.deltas = palloc(sizeof(AttrDelta) * bf.cap);
	bf.totals = prop_attr_totals_create();
	bf.chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "propensity backfill chunk",
										 ALLOCSET_DEFAULT_SIZES);
	sink.credit = backfill_credit;
	sink.total = backfill_total;
	sink.class_done = backfill_class_done;
	sink.arg = &bf;
	/* the scan reads under the active snapshot: let it see the late list just changed */
	CommandCounterIncrement();
	PushCopiedSnapshot(GetActiveSnapshot());
	UpdateActiveSnapshotCommandId();
	prop_attr_scan(true, &settings, &sink, &info);
	PopActiveSnapshot();
	prop_attr_write_totals(bf.totals);
	MemoryContextDelete(bf.chunk_cxt);

	/* the state row: the latest time of the events attributed */
	prop_attr_engine_restart(info.has_max, info.max_time);

	SPI_finish();
	prop_restore_search_path(nest);
	result[0] = Int64GetDatum(info.conversions);
	result[1] = Int64GetDatum(bf.ndeltas);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), result, rnulls)));
}
