/*
 * attribution_engine.c - the streaming attribution engine inside the server:
 * ingest(), attribution_backfill() and attribution_engine_status().
 *
 * ingest() stores a batch of events (ON CONFLICT DO NOTHING: a redelivered
 * event is not returned by the insert and so never reaches the engine) and
 * applies the new ones to the core engine (src/core/attr_engine.c), then
 * writes what the engine said in the same transaction: the changelog, the
 * current credit of each changed conversion, the totals, the late events and
 * the state row.  Whoever commits the batch's offsets in that transaction
 * gets exactly-once attribution.
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
#include "common/int.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "catalog/namespace.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "propensity.h"
#include "attribution.h"
#include "core/attr_engine.h"
#include "decode.h"
#include "partition.h"
#include "utils/resowner.h"
#include "utils/typcache.h"

#define DEFAULT_WINDOW_US (INT64CONST(30) * USECS_PER_DAY)
#define EVICT_EVERY_US USECS_PER_HOUR
#define REBUILD_FETCH 10000
#define BACKFILL_CHUNK 50000

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

/* ---- advertiser settings ---- */

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

int			propensity_future_horizon = 24 * 60;	/* minutes, -1: none */

/*
 * Events later than this (the transaction's start plus
 * propensity.future_horizon) are future: kept out of attribution and off
 * the watermark.  PG_INT64_MAX without a horizon.
 */
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

/* ---- SPI plans, prepared once per session ---- */

enum
{
	P_LOCK, P_SETTINGS, P_INSERT, P_LATE, P_CHANGELOG, P_CURRENT, P_TOTALS,
	P_STATE, P_INSERT_ONLY, P_CURRENT_NEW, NPLANS
};

static SPIPlanPtr plans[NPLANS];
static Oid	plans_array_type = InvalidOid;

static SPIPlanPtr
get_plan(int which, const char *sql, int nargs, Oid *types)
{
	if (plans[which] == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		plans[which] = p;
	}
	return plans[which];
}

static void
run_plan(int which, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		 int expect)
{
	int			ret = SPI_execute_plan(get_plan(which, sql, nargs, types), values, nulls, false, 0);

	if (ret != expect)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s", sql, SPI_result_code_string(ret));
}

/*
 * The advertiser settings, in the caller's memory context: SPI leaves its
 * own procedure context current after a query, and that one is freed at
 * SPI_finish(), before attribute_batch() reads the settings.
 */
/*
 * Whether the installed schema has the columns of future events (0.8.0:
 * attribution_totals.future, attribution_late.reason).  A session whose
 * library is newer than the schema it writes (between installing the
 * library and ALTER EXTENSION ... UPDATE, or in the upgrade tests) lists
 * and counts a future event as late.  The two plans that name the columns
 * are prepared again when this changes under the session.
 */
static int	plans_future = -1;

static bool
schema_has_future(void)
{
	Oid			nsp = get_namespace_oid("propensity", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("attribution_totals", nsp) : InvalidOid;
	bool		has = OidIsValid(rel) && get_attnum(rel, "future") != InvalidAttrNumber;

	if (plans_future != (int) has)
	{
		int			which[2] = {P_TOTALS, P_LATE};
		int			i;

		for (i = 0; i < 2; i++)
			if (plans[which[i]] != NULL)
			{
				SPI_freeplan(plans[which[i]]);
				plans[which[i]] = NULL;
			}
		plans_future = has;
	}
	return has;
}

AttrSettingsTable
prop_attr_load_settings(void)
{
	MemoryContext caller = CurrentMemoryContext;
	AttrSettingsTable st;
	uint64		i;

	run_plan(P_SETTINGS,
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

/* ---- state row ---- */

typedef struct EngineState
{
	int64		generation;
	bool		has_max;
	int64		max_time;
	char		xmin[32];
} EngineState;

static EngineState
lock_state(void)
{
	EngineState s;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	run_plan(P_LOCK,
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

	run_plan(P_STATE,
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

/* ---- rebuilding the cache ---- */

static void
engine_rebuild(const EngineState *state, AttrSettingsTable *settings)
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
engine_sync(const EngineState *state, AttrSettingsTable *settings)
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

/* ---- writing what the engine said ---- */

typedef struct TotalsKey
{
	int64		advertiser_id;
	int64		campaign_id;
	int32		has_campaign;
	int32		pad;
} TotalsKey;

enum
{
	T_IM, T_CL, T_PC, T_PV, T_NONE, T_LATE, T_FUTURE, T_N
};

typedef struct TotalsEntry
{
	TotalsKey	key;
	int64		c[T_N];
} TotalsEntry;

static void
totals_add(HTAB *h, int64 adv, bool has_campaign, int64 campaign, int which, int64 n)
{
	TotalsKey	k;
	TotalsEntry *e;
	bool		found;

	memset(&k, 0, sizeof(k));
	k.advertiser_id = adv;
	k.has_campaign = has_campaign;
	k.campaign_id = has_campaign ? campaign : 0;
	e = hash_search(h, &k, HASH_ENTER, &found);
	if (!found)
		memset(e->c, 0, sizeof(e->c));
	e->c[which] += n;
}

static void
write_totals(HTAB *h)
{
	long		n = hash_get_num_entries(h);
	Datum	   *cols[2 + T_N];
	bool	   *campnull = palloc(sizeof(bool) * Max(n, 1));
	Oid			types[2 + T_N];
	Datum		values[2 + T_N];
	HASH_SEQ_STATUS seq;
	TotalsEntry *e;
	int			i = 0,
				j;

	if (n == 0)
		return;
	for (j = 0; j < 2 + T_N; j++)
	{
		cols[j] = palloc(sizeof(Datum) * n);
		types[j] = INT8ARRAYOID;
	}
	hash_seq_init(&seq, h);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		cols[0][i] = Int64GetDatum(e->key.advertiser_id);
		cols[1][i] = Int64GetDatum(e->key.campaign_id);
		campnull[i] = !e->key.has_campaign;
		for (j = 0; j < T_N; j++)
			cols[2 + j][i] = Int64GetDatum(e->c[j]);
		i++;
	}
	for (j = 0; j < 2 + T_N; j++)
		values[j] = prop_array_datum(cols[j], j == 1 ? campnull : NULL, n, INT8OID);
	if (schema_has_future())
		run_plan(P_TOTALS,
				 "INSERT INTO propensity.attribution_totals AS t"
				 "       (advertiser_id, campaign_id, impressions, clicks, pc, pv, unattributed, late, future)"
				 " SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9)"
				 " ON CONFLICT (advertiser_id, campaign_id) DO UPDATE SET"
				 "   impressions = t.impressions + excluded.impressions,"
				 "   clicks = t.clicks + excluded.clicks, pc = t.pc + excluded.pc,"
				 "   pv = t.pv + excluded.pv, unattributed = t.unattributed + excluded.unattributed,"
				 "   late = t.late + excluded.late, future = t.future + excluded.future",
				 2 + T_N, types, values, NULL, SPI_OK_INSERT);
	else
		run_plan(P_TOTALS,
				 "INSERT INTO propensity.attribution_totals AS t"
				 "       (advertiser_id, campaign_id, impressions, clicks, pc, pv, unattributed, late)"
				 " SELECT a, c, i, l, p, v, u, late + fut FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9)"
				 "        AS x(a, c, i, l, p, v, u, late, fut)"
				 " ON CONFLICT (advertiser_id, campaign_id) DO UPDATE SET"
				 "   impressions = t.impressions + excluded.impressions,"
				 "   clicks = t.clicks + excluded.clicks, pc = t.pc + excluded.pc,"
				 "   pv = t.pv + excluded.pv, unattributed = t.unattributed + excluded.unattributed,"
				 "   late = t.late + excluded.late",
				 2 + T_N, types, values, NULL, SPI_OK_INSERT);
}

/*
 * The changelog rows of a batch, and each changed conversion's new credit
 * into attribution_current; fresh: the conversions have no row there yet
 * (a backfill into emptied tables), so no conflict is looked for.
 */
static void
write_deltas(int64 batch, const AttrBatchResult *r, HTAB *totals, bool fresh)
{
	int			n = (int) r->ndeltas;
	Datum	   *conv = palloc(sizeof(Datum) * n),
			   *ctime = palloc(sizeof(Datum) * n),
			   *user = palloc(sizeof(Datum) * n),
			   *adv = palloc(sizeof(Datum) * n),
			   *camp = palloc(sizeof(Datum) * n),
			   *kind = palloc(sizeof(Datum) * n),
			   *imp = palloc(sizeof(Datum) * n),
			   *sign = palloc(sizeof(Datum) * n);
	bool	   *campnull = palloc(sizeof(bool) * n),
			   *impnull = palloc(sizeof(bool) * n);
	Oid			types[9] = {INT8OID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
	INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT2ARRAYOID};
	Datum		values[9];
	int			i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++)
	{
		const AttrDelta *d = &r->deltas[i];

		conv[i] = CStringGetTextDatum(d->conversion_id);
		ctime[i] = TimestampTzGetDatum(d->conversion_time_us);
		user[i] = PointerGetDatum(cstring_to_text_with_len(d->user_id, d->user_len));
		adv[i] = Int64GetDatum(d->advertiser_id);
		campnull[i] = !d->credit.has_campaign;
		camp[i] = Int64GetDatum(d->credit.campaign_id);
		kind[i] = CStringGetTextDatum(attr_kind_name(d->credit.kind));
		impnull[i] = d->credit.impression_id == NULL;
		imp[i] = impnull[i] ? (Datum) 0 : CStringGetTextDatum(d->credit.impression_id);
		sign[i] = Int16GetDatum((int16) d->sign);
		totals_add(totals, d->advertiser_id, d->credit.has_campaign, d->credit.campaign_id,
				   d->credit.kind == ATTR_PC ? T_PC : d->credit.kind == ATTR_PV ? T_PV : T_NONE,
				   d->sign);
	}
	values[0] = Int64GetDatum(batch);
	values[1] = prop_array_datum(conv, NULL, n, TEXTOID);
	values[2] = prop_array_datum(ctime, NULL, n, TIMESTAMPTZOID);
	values[3] = prop_array_datum(user, NULL, n, TEXTOID);
	values[4] = prop_array_datum(adv, NULL, n, INT8OID);
	values[5] = prop_array_datum(camp, campnull, n, INT8OID);
	values[6] = prop_array_datum(kind, NULL, n, TEXTOID);
	values[7] = prop_array_datum(imp, impnull, n, TEXTOID);
	values[8] = prop_array_datum(sign, NULL, n, INT2OID);
	run_plan(P_CHANGELOG,
			 "INSERT INTO propensity.attribution_changelog"
			 "       (batch, conversion_event_id, conversion_time, user_id, advertiser_id,"
			 "        campaign_id, kind, impression_event_id, delta)"
			 " SELECT $1, * FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)",
			 9, types, values, NULL, SPI_OK_INSERT);
	/* the table side: each changed conversion's new credit (its one +1) */
	if (fresh)
		run_plan(P_CURRENT_NEW,
				 "INSERT INTO propensity.attribution_current"
				 "       (conversion_event_id, conversion_time, user_id, advertiser_id, campaign_id,"
				 "        kind, impression_event_id, batch)"
				 " SELECT d.conv, d.ctime, d.usr, d.adv, d.camp, d.kind, d.imp, $1"
				 "   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)"
				 "        AS d(conv, ctime, usr, adv, camp, kind, imp, sign)"
				 "  WHERE d.sign = 1",
				 9, types, values, NULL, SPI_OK_INSERT);
	else
		run_plan(P_CURRENT,
				 "INSERT INTO propensity.attribution_current AS c"
				 "       (conversion_event_id, conversion_time, user_id, advertiser_id, campaign_id,"
				 "        kind, impression_event_id, batch)"
				 " SELECT d.conv, d.ctime, d.usr, d.adv, d.camp, d.kind, d.imp, $1"
				 "   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)"
				 "        AS d(conv, ctime, usr, adv, camp, kind, imp, sign)"
				 "  WHERE d.sign = 1"
				 " ON CONFLICT (conversion_event_id, conversion_time) DO UPDATE SET"
				 "   campaign_id = excluded.campaign_id, kind = excluded.kind,"
				 "   impression_event_id = excluded.impression_event_id, batch = excluded.batch",
				 9, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Late and future events of a batch: recorded with the watermark they
 * missed, or the future limit they passed.
 */
static void
write_late(int64 batch, const AttrInput *in, char **type_names, const bool *has_adv, int n,
		   const bool *late, const bool *future, int64 max_before, int64 future_limit,
		   AttrSettingsTable *settings, HTAB *totals)
{
	Datum	   *id = palloc(sizeof(Datum) * n),
			   *time = palloc(sizeof(Datum) * n),
			   *user = palloc(sizeof(Datum) * n),
			   *type = palloc(sizeof(Datum) * n),
			   *adv = palloc(sizeof(Datum) * n),
			   *camp = palloc(sizeof(Datum) * n),
			   *mark = palloc(sizeof(Datum) * n),
			   *reason = palloc(sizeof(Datum) * n);
	bool	   *advnull = palloc(sizeof(bool) * n),
			   *campnull = palloc(sizeof(bool) * n);
	Oid			types[9] = {INT8OID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		values[9];
	Datum		late_text = CStringGetTextDatum("late");
	Datum		future_text = CStringGetTextDatum("future");
	int			i,
				m = 0;

	for (i = 0; i < n; i++)
	{
		AttrAdvSettings s;

		if (!late[i] && !future[i])
			continue;
		prop_attr_settings_lookup(settings, in[i].advertiser_id, &s);
		id[m] = CStringGetTextDatum(in[i].event_id);
		time[m] = TimestampTzGetDatum(in[i].time_us);
		user[m] = CStringGetTextDatum(in[i].user_id);
		/* the stored type: an event without advertiser was handed over as PS */
		type[m] = CStringGetTextDatum(type_names[i]);
		advnull[m] = !has_adv[i];
		adv[m] = Int64GetDatum(in[i].advertiser_id);
		campnull[m] = !in[i].has_campaign;
		camp[m] = Int64GetDatum(in[i].campaign_id);
		mark[m] = TimestampTzGetDatum(future[i] ? future_limit : max_before - s.lateness_us);
		reason[m] = future[i] ? future_text : late_text;
		if (!advnull[m])
			totals_add(totals, in[i].advertiser_id, in[i].has_campaign, in[i].campaign_id,
					   future[i] ? T_FUTURE : T_LATE, 1);
		m++;
	}
	if (m == 0)
		return;
	values[0] = Int64GetDatum(batch);
	values[1] = prop_array_datum(id, NULL, m, TEXTOID);
	values[2] = prop_array_datum(time, NULL, m, TIMESTAMPTZOID);
	values[3] = prop_array_datum(user, NULL, m, TEXTOID);
	values[4] = prop_array_datum(type, NULL, m, TEXTOID);
	values[5] = prop_array_datum(adv, advnull, m, INT8OID);
	values[6] = prop_array_datum(camp, campnull, m, INT8OID);
	values[7] = prop_array_datum(mark, NULL, m, TIMESTAMPTZOID);
	values[8] = prop_array_datum(reason, NULL, m, TEXTOID);
	if (schema_has_future())
		run_plan(P_LATE,
				 "INSERT INTO propensity.attribution_late"
				 "       (batch, event_id, event_time, user_id, event_type, advertiser_id, campaign_id, watermark, reason)"
				 " SELECT $1, * FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)",
				 9, types, values, NULL, SPI_OK_INSERT);
	else
		run_plan(P_LATE,
				 "INSERT INTO propensity.attribution_late"
				 "       (batch, event_id, event_time, user_id, event_type, advertiser_id, campaign_id, watermark)"
				 " SELECT $1, x.i, x.t, x.u, x.y, x.a, x.c, x.w"
				 "   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9) AS x(i, t, u, y, a, c, w, r)",
				 9, types, values, NULL, SPI_OK_INSERT);
}

static HTAB *
totals_create(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(TotalsKey);
	ctl.entrysize = sizeof(TotalsEntry);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create("propensity attribution totals", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Counts in-time impressions and clicks into the totals. */
static void
count_events(const AttrInput *in, int n, const bool *late, const bool *future, HTAB *totals)
{
	int			i;

	for (i = 0; i < n; i++)
		if ((late == NULL || (!late[i] && !future[i])) && (in[i].type == FEAT_IM || in[i].type == FEAT_CL))
			totals_add(totals, in[i].advertiser_id, in[i].has_campaign, in[i].campaign_id,
					   in[i].type == FEAT_IM ? T_IM : T_CL, 1);
}

/* ---- the ingest path, for ingest() and the worker ---- */

/*
 * Run the engine on n newly stored events and write what it said, in the
 * current transaction; out[2..4] get late, conversions evaluated and
 * deltas.  SPI is connected and the state row locked by the caller.
 */
static void
apply_new_events(const EngineState *state, AttrSettingsTable *settings, AttrInput *inputs,
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

	totals = totals_create();
	for (i = 0; i < n; i++)
		nlate += r->late[i] || r->future[i];
	write_late(state->generation + 1, inputs, type_names, has_adv, n, r->late, r->future, max_before,
			   future_limit, settings, totals);
	count_events(inputs, n, r->late, r->future, totals);
	write_deltas(state->generation + 1, r, totals, false);
	write_totals(totals);
	out[2] = nlate;
	out[3] = (int64) r->naffected;
	out[4] = (int64) r->ndeltas;
	save_state(1);
	maybe_evict(settings);
}

static void
reset_plans_for(Oid array_type)
{
	int			i;

	if (array_type == plans_array_type)
		return;
	/* the extension was recreated: plans name the old row type */
	for (i = 0; i < NPLANS; i++)
		if (plans[i] != NULL)
		{
			SPI_freeplan(plans[i]);
			plans[i] = NULL;
		}
	plans_array_type = array_type;
}

/* The partitions the events of an events[] array need (SPI connected). */
static void
ensure_array_partitions(ArrayType *batch)
{
	Oid			elemtype = ARR_ELEMTYPE(batch);
	TupleDesc	desc = lookup_rowtype_tupdesc(elemtype, -1);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			m = 0;
	int			i;
	TimestampTz *times;

	prop_check_events_rowtype(desc);
	deconstruct_array(batch, elemtype, -1, false, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	times = palloc(sizeof(TimestampTz) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTupleHeader row;
		HeapTupleData tup;
		bool		isnull;
		Datum		d;

		if (nulls[i])
			continue;
		row = DatumGetHeapTupleHeader(elems[i]);
		tup.t_len = HeapTupleHeaderGetDatumLength(row);
		tup.t_data = row;
		d = heap_getattr(&tup, EV_TIME + 1, desc, &isnull);
		if (!isnull && !TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(d)))
			times[m++] = DatumGetTimestampTz(d);
	}
	ReleaseTupleDesc(desc);
	(void) prop_ensure_batch_partitions(times, m);
	pfree(times);
}

/*
 * Store a batch of events and, with attribute, apply the new ones to the
 * engine; out[] gets (inserted, duplicates, late, conversions_evaluated,
 * deltas).  Runs in the caller's transaction; may be called with or without
 * an SPI connection.  ingest() and the worker's fallback path call this.
 */
void
prop_ingest(ArrayType *batch, Oid array_type, bool attribute, int64 *out)
{
	int			nbatch = ArrayGetNItems(ARR_NDIM(batch), ARR_DIMS(batch));
	int			nest;
	EngineState state;
	AttrSettingsTable settings;
	AttrInput  *inputs = NULL;
	char	  **type_names = NULL;
	bool	   *has_adv = NULL;
	int			n = 0;
	uint64		i;
	Datum		arg = PointerGetDatum(batch);
	instr_time	t_start;
	instr_time	t_synced;
	instr_time	t_stored;
	instr_time	t_done;

	reset_plans_for(array_type);
	memset(out, 0, sizeof(int64) * 5);
	nest = prop_pin_search_path();
	SPI_connect();
	if (nbatch > 0)
		ensure_array_partitions(batch);
	if (!attribute)
	{
		/* events only: the engine learns of them at its next rebuild or backfill */
		if (nbatch > 0)
			run_plan(P_INSERT_ONLY,
					 "INSERT INTO propensity.events SELECT * FROM pg_catalog.unnest($1)"
					 " ON CONFLICT DO NOTHING",
					 1, &array_type, &arg, NULL, SPI_OK_INSERT);
		out[0] = nbatch > 0 ? (int64) SPI_processed : 0;
		out[1] = nbatch - out[0];
		if (nbatch > 0)
			prop_history_after_array(arg, array_type);
		SPI_finish();
		prop_restore_search_path(nest);
		return;
	}

	INSTR_TIME_SET_CURRENT(t_start);
	state = lock_state();
	settings = prop_attr_load_settings();
	engine_sync(&state, &settings);
	INSTR_TIME_SET_CURRENT(t_synced);
	if (nbatch > 0)
	{
		run_plan(P_INSERT,
				 "INSERT INTO propensity.events SELECT * FROM pg_catalog.unnest($1)"
				 " ON CONFLICT DO NOTHING"
				 " RETURNING user_id, event_type, event_time, event_id, advertiser_id,"
				 "           campaign_id, auction_id, pixel_id",
				 1, &array_type, &arg, NULL, SPI_OK_INSERT_RETURNING);
		inputs = palloc(sizeof(AttrInput) * Max(SPI_processed, 1));
		type_names = palloc(sizeof(char *) * Max(SPI_processed, 1));
		has_adv = palloc(sizeof(bool) * Max(SPI_processed, 1));
		for (i = 0; i < SPI_processed; i++, n++)
			row_to_input(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, &inputs[n],
						 &type_names[n], &has_adv[n]);
	}
	INSTR_TIME_SET_CURRENT(t_stored);
	apply_new_events(&state, &settings, inputs, type_names, has_adv, n, out);
	INSTR_TIME_SET_CURRENT(t_done);
	out[0] = n;
	out[1] = nbatch - n;
	INSTR_TIME_SUBTRACT(t_done, t_stored);
	INSTR_TIME_SUBTRACT(t_stored, t_synced);
	INSTR_TIME_SUBTRACT(t_synced, t_start);
	ereport(DEBUG1,
			(errmsg("ingest: %d events, %d new: engine sync %.3f ms, store %.3f ms, attribution %.3f ms",
					nbatch, n, INSTR_TIME_GET_MILLISEC(t_synced), INSTR_TIME_GET_MILLISEC(t_stored),
					INSTR_TIME_GET_MILLISEC(t_done))));
	if (nbatch > 0)
		prop_history_after_array(arg, array_type);
	SPI_finish();
	prop_restore_search_path(nest);
}

typedef struct CopyCall
{
	EventRow   *rows;
	int			n;
} CopyCall;

static void
copy_call(void *arg)
{
	CopyCall   *c = arg;

	(void) prop_copy_events(c->rows, c->n);
}

/*
 * The worker's path: rows[n] of events columns, decoded and valid.  They go
 * in by COPY (multi-insert, as fast as COPY itself) inside a
 * subtransaction; if one of them was stored before (a redelivery), the
 * unique index refuses the COPY and the batch takes the INSERT ... ON
 * CONFLICT DO NOTHING path of prop_ingest() instead.  With attribute, the
 * engine runs on the new events.  out[] as for prop_ingest().
 */
void
prop_ingest_rows(EventRow *rows, int n, Oid rowtype, bool attribute, int64 *out)
{
	MemoryContext caller = CurrentMemoryContext;
	TimestampTz *times;
	bool		copied;
	CopyCall	copy;
	ErrorData  *edata;
	EngineState state;
	AttrSettingsTable settings;
	int			nest;
	int			i;

	memset(out, 0, sizeof(int64) * 5);
	if (n == 0)
		return;
	reset_plans_for(get_array_type(rowtype));
	nest = prop_pin_search_path();
	SPI_connect();
	times = palloc(sizeof(TimestampTz) * n);
	for (i = 0; i < n; i++)
		times[i] = DatumGetTimestampTz(rows[i].values[EV_TIME]);
	(void) prop_ensure_batch_partitions(times, n);
	pfree(times);
	if (attribute)
	{
		/* before the rows go in: a rebuild must not see them as old events */
		state = lock_state();
		settings = prop_attr_load_settings();
		engine_sync(&state, &settings);
	}

	copy.rows = rows;
	copy.n = n;
	copied = prop_subxact_try(copy_call, &copy, &edata);
	if (!copied)
	{
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg("propensity: a batch of %d events holds one stored before; storing it by INSERT ... ON CONFLICT DO NOTHING", n),
				 errdetail("%s", edata->detail ? edata->detail : edata->message)));
		FreeErrorData(edata);
	}

	if (!copied)
	{
		/*
		 * Some were stored before: the general path skips them.  The array
		 * goes to the caller's context: SPI_finish() below frees SPI's.
		 */
		MemoryContext old = MemoryContextSwitchTo(caller);
		Datum	   *elems = palloc(sizeof(Datum) * n);
		TupleDesc	desc = lookup_rowtype_tupdesc(rowtype, -1);

		for (i = 0; i < n; i++)
			elems[i] = HeapTupleGetDatum(heap_form_tuple(desc, rows[i].values, rows[i].nulls));
		ReleaseTupleDesc(desc);
		MemoryContextSwitchTo(old);
		SPI_finish();
		prop_restore_search_path(nest);
		prop_ingest(construct_array(elems, n, rowtype, -1, false, TYPALIGN_DOUBLE),
					get_array_type(rowtype), attribute, out);
		return;
	}
	out[0] = n;
	if (attribute)
	{
		AttrInput  *inputs = palloc(sizeof(AttrInput) * n);
		char	  **type_names = palloc(sizeof(char *) * n);
		bool	   *has_adv = palloc(sizeof(bool) * n);
		static const int cols[8] = {EV_USER, EV_TYPE, EV_TIME, EV_ID, EV_ADVERTISER,
		EV_CAMPAIGN, EV_AUCTION, EV_PIXEL};

		for (i = 0; i < n; i++)
		{
			Datum		v[8];
			bool		isnull[8];
			int			k;

			for (k = 0; k < 8; k++)
			{
				v[k] = rows[i].values[cols[k]];
				isnull[k] = rows[i].nulls[cols[k]];
			}
			values_to_input(v, isnull, &inputs[i], &type_names[i], &has_adv[i]);
		}
		apply_new_events(&state, &settings, inputs, type_names, has_adv, n, out);
	}
	prop_history_after_rows(rows, n);
	SPI_finish();
	prop_restore_search_path(nest);
}

/* ---- SQL functions ---- */

/*
 * ingest(batch events[]) -> (inserted, duplicates, late, conversions_evaluated, deltas)
 */
PG_FUNCTION_INFO_V1(propensity_ingest);
Datum
propensity_ingest(PG_FUNCTION_ARGS)
{
	ArrayType  *batch = PG_GETARG_ARRAYTYPE_P(0);
	Oid			array_type = get_fn_expr_argtype(fcinfo->flinfo, 0);
	TupleDesc	rdesc;
	Datum		result[5];
	bool		rnulls[5] = {false, false, false, false, false};
	int64		out[5];
	int			i;

	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ingest() must return a record");
	prop_ingest(batch, array_type, true, out);
	for (i = 0; i < 5; i++)
		result[i] = Int64GetDatum(out[i]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), result, rnulls)));
}

/* ---- attribution_backfill() ---- */

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

	totals_add(bf->totals, t->advertiser_id, t->has_campaign, t->campaign_id, T_IM, t->impressions);
	totals_add(bf->totals, t->advertiser_id, t->has_campaign, t->campaign_id, T_CL, t->clicks);
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
		write_deltas(bf->batch, &r, bf->totals, true);
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
	EngineState state;
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
	state = lock_state();
	settings = prop_attr_load_settings();

	if (include_late &&
		SPI_execute("DELETE FROM propensity.attribution_late", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not empty the list of late events");
	has_future = schema_has_future();
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
	bf.totals = totals_create();
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
	write_totals(bf.totals);
	MemoryContextDelete(bf.chunk_cxt);

	/* the state row: the latest time of the events attributed */
	engine_new();
	engine_dirty = true;
	if (info.has_max)
		ae_observe_time(engine, info.max_time);
	save_state(1);
	engine_discard();

	SPI_finish();
	prop_restore_search_path(nest);
	result[0] = Int64GetDatum(info.conversions);
	result[1] = Int64GetDatum(bf.ndeltas);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), result, rnulls)));
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
