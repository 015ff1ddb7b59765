/*
 * attribution_engine.c - the streaming attribution engine inside the
 * server, for ingest and the worker, and attribution_engine_status().
 *
 * The ingest pipeline stores a batch of events (a redelivered event is not
 * stored again and so never reaches the engine) and hands the new ones to
 * the core engine (src/core/attr_engine.c); what the engine says is
 * written in the same transaction (attribution_changelog.c): the
 * changelog, the current credit of each changed conversion, the totals,
 * the late events and the state row.  Whoever commits the batch's offsets
 * in that transaction gets exactly-once attribution.
 *
 * The engine's per-key events live in session memory as a cache of the
 * database.  The state row serializes engine batches (it is locked FOR
 * UPDATE) and identifies the last committed one (generation, and the xmin of
 * the row version); a session whose cache does not match rebuilds it from the
 * stored events of the reachable window and attribution_current.  A cache
 * touched by a transaction that aborts is discarded.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "attribution_changelog.h"
#include "attribution_engine.h"
#include "util.h"

#define EVICT_EVERY_US USECS_PER_HOUR
#define REBUILD_FETCH 10000

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr state_plan = NULL;

/* ---- the session's engine ---- */

static MemoryContext engine_cxt = NULL;
static AttrEngine *engine = NULL;
static int64 engine_generation = -1;
static char engine_xmin[32];
static int64 engine_last_evict = 0;
static size_t engine_events_after_evict = 0;
static bool engine_dirty = false;	/* changed by the current transaction */
static bool callbacks_registered = false;

static void
engine_discard(void)
{
	if (engine_cxt != NULL)
		MemoryContextDelete(engine_cxt);
	engine_cxt = NULL;
	engine = NULL;
	engine_generation = -1;
	engine_xmin[0] = '\0';
}

static void
engine_xact_callback(XactEvent event, void *arg)
{
	if (!engine_dirty)
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		engine_discard();
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		engine_dirty = false;
}

static void
engine_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	/* a rolled-back savepoint may have held engine work: start over */
	if (engine_dirty && event == SUBXACT_EVENT_ABORT_SUB)
		engine_discard();
}

static void
engine_new(void)
{
	CoreAllocator a;

	engine_discard();
	if (!callbacks_registered)
	{
		RegisterXactCallback(engine_xact_callback, NULL);
		RegisterSubXactCallback(engine_subxact_callback, NULL);
		callbacks_registered = true;
	}
	engine_cxt = AllocSetContextCreate(TopMemoryContext, "propensity attribution engine",
									   ALLOCSET_DEFAULT_SIZES);
	a = prop_context_allocator(engine_cxt);
	engine = ae_create(&a);
	ae_set_interrupt(engine, &prop_core_interrupt);
	engine_last_evict = 0;
	engine_events_after_evict = 0;
}

/* ---- state row ---- */

AttrState
prop_attr_lock_state(void)
{
	AttrState s;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	prop_plan_run(&lock_plan,
				  "SELECT generation, max_event_time, xmin::text FROM propensity.attribution_state FOR UPDATE",
				  0, NULL, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("propensity.attribution_state must hold exactly one row"),
				 errhint("Reinstall the extension, or insert the row with INSERT INTO propensity.attribution_state DEFAULT VALUES.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	s.generation = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	d = SPI_getbinval(tup, desc, 2, &isnull);
	s.has_max = !isnull;
	s.max_time = isnull ? 0 : DatumGetTimestampTz(d);
	strlcpy(s.xmin, TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull)), sizeof(s.xmin));
	SPI_freetuptable(SPI_tuptable);
	return s;
}

static void
save_state(int64 generation_add)
{
	int64		max_time;
	bool		has_max = ae_max_time(engine, &max_time);
	Oid			types[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int64GetDatum(generation_add), TimestampTzGetDatum(max_time)};
	char		nulls[2] = {' ', has_max ? ' ' : 'n'};
	bool		isnull;

	prop_plan_run(&state_plan,
				  "UPDATE propensity.attribution_state SET generation = generation + $1,"
				  "       max_event_time = $2, updated_at = pg_catalog.now()"
				  " RETURNING generation, xmin::text",
				  2, types, values, nulls, SPI_OK_UPDATE_RETURNING);
	engine_generation = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	strlcpy(engine_xmin, TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 2, &isnull)),
			sizeof(engine_xmin));
	SPI_freetuptable(SPI_tuptable);
}

/* ---- reading event rows ---- */

/*
 * An event's user_id, event_type, event_time, event_id, advertiser_id,
 * campaign_id, auction_id and pixel_id (v[0..7], with nulls) as engine
 * input.  An event without an advertiser cannot be attributed: it becomes a
 * PS for the engine, which only lets it move the watermark.
 */
static void
values_to_input(const Datum *v, const bool *isnull, AttrInput *in, char **type_out,
				bool *has_adv_out)
{
	char	   *type;

	memset(in, 0, sizeof(*in));
	in->user_id = TextDatumGetCString(v[0]);
	in->user_len = strlen(in->user_id);
	type = TextDatumGetCString(v[1]);
	in->type = strcmp(type, "IM") == 0 ? FEAT_IM : strcmp(type, "CL") == 0 ? FEAT_CL :
		strcmp(type, "CN") == 0 ? FEAT_CN : FEAT_PS;
	in->time_us = DatumGetTimestampTz(v[2]);
	in->event_id = TextDatumGetCString(v[3]);
	if (isnull[4])
		in->type = FEAT_PS;
	else
		in->advertiser_id = DatumGetInt64(v[4]);
	if (type_out != NULL)
		*type_out = type;
	if (has_adv_out != NULL)
		*has_adv_out = !isnull[4];
	in->has_campaign = !isnull[5];
	in->campaign_id = isnull[5] ? 0 : DatumGetInt64(v[5]);
	in->auction_id = isnull[6] ? NULL : TextDatumGetCString(v[6]);
	in->has_pixel = !isnull[7];
	in->pixel_id = isnull[7] ? 0 : DatumGetInt64(v[7]);
}

/* Columns 1..8 of a row, in the order values_to_input() takes them. */
static void
row_to_input(HeapTuple tup, TupleDesc desc, AttrInput *in, char **type_out, bool *has_adv_out)
{
	Datum		v[8];
	bool		isnull[8];
	int			i;

	for (i = 0; i < 8; i++)
		v[i] = SPI_getbinval(tup, desc, i + 1, &isnull[i]);
	values_to_input(v, isnull, in, type_out, has_adv_out);
}

/* The same columns of a stored event. */
static void
event_to_input(const EventRow *row, AttrInput *in, char **type_out, bool *has_adv_out)
{
	static const int cols[8] = {EV_USER, EV_TYPE, EV_TIME, EV_ID, EV_ADVERTISER,
	EV_CAMPAIGN, EV_AUCTION, EV_PIXEL};
	Datum		v[8];
	bool		isnull[8];
	int			k;

	for (k = 0; k < 8; k++)
	{
		v[k] = row->values[cols[k]];
		isnull[k] = row->nulls[cols[k]];
	}
	values_to_input(v, isnull, in, type_out, has_adv_out);
}

/* ---- rebuilding the cache ---- */

static void
engine_rebuild(const AttrState *state, AttrSettingsTable *settings)
{
	Oid			type = TIMESTAMPTZOID;
	Datum		horizon;
	Portal		portal;

	engine_new();
	if (!state->has_max)
	{
		engine_generation = state->generation;
		strlcpy(engine_xmin, state->xmin, sizeof(engine_xmin));
		return;
	}
	horizon = TimestampTzGetDatum(state->max_time - settings->max_reach_us);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT e.user_id, e.event_type, e.event_time, e.event_id, e.advertiser_id,"
									   "       e.campaign_id, e.auction_id, e.pixel_id,"
									   "       c.kind, c.campaign_id, c.impression_event_id"
									   "  FROM propensity.events e"
									   "  LEFT JOIN propensity.attribution_current c"
									   "    ON e.event_type = 'CN' AND c.conversion_event_id = e.event_id"
									   "   AND c.conversion_time = e.event_time"
									   " WHERE e.event_type IN ('IM', 'CL', 'CN') AND e.advertiser_id IS NOT NULL"
									   "   AND e.event_time >= $1"
									   "   AND NOT EXISTS (SELECT 1 FROM propensity.attribution_late l"
									   "                    WHERE l.event_id = e.event_id AND l.event_time = e.event_time)",
									   1, &type, &horizon, NULL, true, CURSOR_OPT_NO_SCROLL);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, REBUILD_FETCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			AttrInput	in;
			AttrStored	credit;
			bool		isnull;
			Datum		d;
			char	   *kind;

			row_to_input(tup, desc, &in, NULL, NULL);
			d = SPI_getbinval(tup, desc, 9, &isnull);
			if (isnull)
			{
				ae_load(engine, &in, NULL);
				continue;
			}
			kind = TextDatumGetCString(d);
			credit.kind = strcmp(kind, "PC") == 0 ? ATTR_PC : strcmp(kind, "PV") == 0 ? ATTR_PV : ATTR_NONE;
			d = SPI_getbinval(tup, desc, 10, &isnull);
			credit.has_campaign = !isnull;
			credit.campaign_id = isnull ? 0 : DatumGetInt64(d);
			d = SPI_getbinval(tup, desc, 11, &isnull);
			credit.impression_id = isnull ? NULL : TextDatumGetCString(d);
			ae_load(engine, &in, &credit);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	ae_observe_time(engine, state->max_time);
	engine_last_evict = state->max_time;
	engine_events_after_evict = ae_event_count(engine);
	engine_generation = state->generation;
	strlcpy(engine_xmin, state->xmin, sizeof(engine_xmin));
	elog(DEBUG1, "propensity: attribution engine rebuilt: %zu keys, %zu events",
		 ae_key_count(engine), ae_event_count(engine));
}

static void
engine_sync(const AttrState *state, AttrSettingsTable *settings)
{
	if (engine != NULL && engine_generation == state->generation &&
		strcmp(engine_xmin, state->xmin) == 0)
		return;
	engine_rebuild(state, settings);
}

static void
maybe_evict(AttrSettingsTable *settings)
{
	int64		max_time;

	/*
	 * An eviction visits every key, so it also waits until the engine has
	 * grown by a quarter since the last one: its cost stays proportional to
	 * the events applied however fast event time runs (a backlog or a
	 * replay covers days of event time in minutes), and memory stays within
	 * a quarter of what is in reach.
	 */
	if (!ae_max_time(engine, &max_time) || max_time - engine_last_evict < EVICT_EVERY_US ||
		ae_event_count(engine) < engine_events_after_evict + Max(engine_events_after_evict / 4, 100000))
		return;
	(void) ae_evict(engine, prop_attr_settings_lookup, settings);
	engine_last_evict = max_time;
	engine_events_after_evict = ae_event_count(engine);
}

/* ---- the ingest path, for ingest() and the worker ---- */

/*
 * Run the engine on n newly stored events and write what it said, in the
 * current transaction; out[2..4] get late, conversions evaluated and
 * deltas.  SPI is connected and the state row locked by the caller.
 */
static void
apply_new_events(const AttrState *state, AttrSettingsTable *settings, AttrInput *inputs,
				 char **type_names, bool *has_adv, int n, int64 *out)
{
	int64		max_before = 0;
	int64		future_limit;
	const AttrBatchResult *r;
	HTAB	   *totals;
	int64		nlate = 0;
	int			i;

	/* a batch of redelivered events only changes nothing, not even the state row */
	if (n == 0)
		return;
	/* from here until save_state() the cache is ahead of the database */
	engine_dirty = true;
	engine_generation = -1;
	(void) ae_max_time(engine, &max_before);
	future_limit = prop_future_limit();
	ae_set_future_limit(engine, future_limit);
	r = ae_apply(engine, inputs, n, true, prop_attr_settings_lookup, settings);

	totals = prop_attr_totals_create();
	for (i = 0; i < n; i++)
		nlate += r->late[i] || r->future[i];
	prop_attr_write_late(state->generation + 1, inputs, type_names, has_adv, n, r->late, r->future, max_before,
			   future_limit, settings, totals);
	prop_attr_count_events(inputs, n, r->late, r->future, totals);
	prop_attr_write_deltas(state->generation + 1, r, totals, false);
	prop_attr_write_totals(totals);
	out[2] = nlate;
	out[3] = (int64) r->naffected;
	out[4] = (int64) r->ndeltas;
	save_state(1);
	maybe_evict(settings);
}


void
prop_attr_ingest_begin(AttrIngest *a)
{
	a->state = prop_attr_lock_state();
	/*
	 * The statement's snapshot may predate a batch another process
	 * committed while this one waited for the lock (two workers, or ingest()
	 * beside the worker): a rebuild or a key read with it would miss those
	 * events.  A snapshot taken now sees them, and not this batch's rows,
	 * stored by later commands.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	a->snapshot_pushed = true;
	a->settings = prop_attr_load_settings();
	engine_sync(&a->state, &a->settings);
}

void
prop_attr_ingest_abandon(AttrIngest *a)
{
	if (a->snapshot_pushed)
		PopActiveSnapshot();
	a->snapshot_pushed = false;
}

void
prop_attr_ingest_apply(AttrIngest *a, const EventRow *rows, int n, int64 *out)
{
	AttrInput  *inputs = palloc(sizeof(AttrInput) * Max(n, 1));
	char	  **type_names = palloc(sizeof(char *) * Max(n, 1));
	bool	   *has_adv = palloc(sizeof(bool) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		event_to_input(&rows[i], &inputs[i], &type_names[i], &has_adv[i]);
	apply_new_events(&a->state, &a->settings, inputs, type_names, has_adv, n, out);
	pfree(inputs);
	pfree(type_names);
	pfree(has_adv);
	prop_attr_ingest_abandon(a);
}

/* ---- a backfill ---- */

void
prop_attr_engine_restart(bool has_max, int64 max_time)
{
	engine_new();
	engine_dirty = true;
	if (has_max)
		ae_observe_time(engine, max_time);
	save_state(1);
	engine_discard();
}

/* attribution_engine_status() -> (keys, events, memory_bytes, generation, watermark_time) */
PG_FUNCTION_INFO_V1(propensity_attribution_engine_status);
Datum
propensity_attribution_engine_status(PG_FUNCTION_ARGS)
{
	TupleDesc	rdesc;
	Datum		result[5];
	bool		rnulls[5] = {false, false, false, false, false};
	int64		max_time = 0;

	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "attribution_engine_status() must return a record");
	result[0] = Int64GetDatum(engine ? (int64) ae_key_count(engine) : 0);
	result[1] = Int64GetDatum(engine ? (int64) ae_event_count(engine) : 0);
	result[2] = Int64GetDatum(engine ? (int64) MemoryContextMemAllocated(engine_cxt, true) : 0);
	result[3] = Int64GetDatum(engine_generation);
	rnulls[3] = engine == NULL || engine_generation < 0;
	rnulls[4] = engine == NULL || !ae_max_time(engine, &max_time);
	result[4] = TimestampTzGetDatum(max_time);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), result, rnulls)));
}
