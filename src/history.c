/*
 * history.c - history_points(): the event-time score history of users
 * (docs/computing.md section 4) from the stored events, one sweep of the core's
 * hist_points() per user.  The events stream through an SPI cursor in
 * (user_id, event_time) order; only one user's events are held at a time.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "history.h"
#include "models.h"
#include "util.h"
#include "core/history.h"

#define HISTORY_FETCH 10000

typedef struct EmitState
{
	ReturnSetInfo *rsinfo;
	const FeatModel *model;
	text	   *user;
} EmitState;

static void
emit_point(void *arg, int64_t t_us, const double *features)
{
	EmitState  *es = arg;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	values[0] = PointerGetDatum(es->user);
	values[1] = TimestampTzGetDatum((TimestampTz) t_us);
	values[2] = Float8GetDatum(feat_score(es->model, features));
	tuplestore_putvalues(es->rsinfo->setResult, es->rsinfo->setDesc, values, nulls);
}

/* Emit one user's points from its events, then forget the user. */
static void
sweep_user(EmitState *es, const char *user, int64 from, const HistEvent *events, size_t n,
		   MemoryContext usercxt)
{
	MemoryContext old = MemoryContextSwitchTo(usercxt);

	es->user = cstring_to_text(user);
	MemoryContextSwitchTo(old);
	hist_points(es->model, events, n, from, emit_point, es);
	MemoryContextReset(usercxt);
}

/*
 * history_points(model_id integer, users text[], from_times timestamptz[])
 * returns (user_id, event_time, score): the points at or after each user's
 * from time (the earliest given for a user); NULL users means every user,
 * from the beginning.
 */
PG_FUNCTION_INFO_V1(propensity_history_points);
Datum
propensity_history_points(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LoadedModel lm;
	EmitState	es;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext usercxt;
	Portal		portal;
	HistEvent  *events;
	size_t		nevents = 0;
	size_t		capacity = 1024;
	char	   *current = NULL;
	Size		current_len = 0;
	int64		current_from = 0;
	int			nest;
	bool		all_users = PG_ARGISNULL(1);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model id must not be null")));
	if (!all_users && PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("from_times must be given with users")));
	prop_load_model_by_id(PG_GETARG_INT32(0), &lm);
	InitMaterializedSRF(fcinfo, 0);

	usercxt = AllocSetContextCreate(callcxt, "history user", ALLOCSET_DEFAULT_SIZES);
	events = MemoryContextAlloc(callcxt, sizeof(HistEvent) * capacity);
	es.rsinfo = rsinfo;
	es.model = &lm.model;
	es.user = NULL;

	nest = prop_pin_search_path();
	SPI_connect();
	if (all_users)
		portal = SPI_cursor_open_with_args(NULL,
										   "SELECT user_id, event_time, event_type, '-infinity'::timestamptz"
										   "  FROM propensity.events ORDER BY user_id, event_time",
										   0, NULL, NULL, NULL, true, 0);
	else
	{
		Oid			types[2] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		args[2] = {PG_GETARG_DATUM(1), PG_GETARG_DATUM(2)};

		portal = SPI_cursor_open_with_args(NULL,
										   "SELECT e.user_id, e.event_time, e.event_type, u.from_time"
										   "  FROM (SELECT u.user_id, min(u.from_time) AS from_time"
										   "          FROM unnest($1, $2) AS u(user_id, from_time)"
										   "         WHERE u.user_id IS NOT NULL AND u.from_time IS NOT NULL"
										   "         GROUP BY u.user_id) u"
										   "  JOIN propensity.events e ON e.user_id = u.user_id"
										   " ORDER BY e.user_id, e.event_time",
										   2, types, args, NULL, true, 0);
	}

	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, HISTORY_FETCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			text	   *user = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
			Size		len = VARSIZE_ANY_EXHDR(user);
			text	   *type;
			int			t;

			/* the user changes: sweep the one before (no copy per row) */
			if (current != NULL &&
				(current_len != len || memcmp(current, VARDATA_ANY(user), len) != 0))
			{
				sweep_user(&es, current, current_from, events, nevents, usercxt);
				current = NULL;
				nevents = 0;
			}
			if (current == NULL)
			{
				current = MemoryContextAlloc(usercxt, len + 1);
				memcpy(current, VARDATA_ANY(user), len);
				current[len] = '\0';
				current_len = len;
				current_from = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
			}
			if (nevents == capacity)
			{
				capacity *= 2;
				events = repalloc_huge(events, sizeof(HistEvent) * capacity);
			}
			type = DatumGetTextPP(SPI_getbinval(tup, desc, 3, &isnull));
			t = feat_parse_type(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
			if (t < 0)
				elog(ERROR, "unexpected event type in propensity.events");
			events[nevents].time_us = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
			events[nevents].type = (FeatEventType) t;
			nevents++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	if (current != NULL)
		sweep_user(&es, current, current_from, events, nevents, usercxt);
	SPI_cursor_close(portal);
	SPI_finish();
	prop_restore_search_path(nest);
	MemoryContextDelete(usercxt);
	pfree(events);
	return (Datum) 0;
}

/*
 * After a batch of events was stored (inside an SPI connection): correct
 * the score history of their users from each one's earliest event in the
 * batch, for every tracked model.  Costs one query when none is tracked.
 */
static bool
query_bool(const char *sql)
{
	bool		isnull;
	int			ret = SPI_execute(sql, true, 1);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Is any model's history kept?  (Before 0.5.0 there is no such table.) */
static bool
history_tracked(void)
{
	return query_bool("SELECT pg_catalog.to_regclass('propensity.history_models') IS NOT NULL") &&
		query_bool("SELECT EXISTS (SELECT 1 FROM propensity.history_models)");
}

static void
history_refresh(Datum users, Datum times)
{
	Oid			types[2] = {TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[2] = {users, times};
	int			ret = SPI_execute_with_args("SELECT propensity.history_refresh($1, $2)",
											2, types, args, NULL, false, 1);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
}

void
prop_history_after_rows(const EventRow *rows, int n)
{
	Datum	   *users;
	Datum	   *times;

	if (n == 0 || !history_tracked())
		return;
	users = palloc(sizeof(Datum) * n);
	times = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		users[i] = rows[i].values[EV_USER];
		times[i] = rows[i].values[EV_TIME];
	}
	history_refresh(PointerGetDatum(construct_array(users, n, TEXTOID, -1, false, TYPALIGN_INT)),
					PointerGetDatum(construct_array(times, n, TIMESTAMPTZOID, sizeof(TimestampTz),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)));
	pfree(users);
	pfree(times);
}

void
prop_history_after_array(Datum batch, Oid array_type)
{
	int			ret;

	if (!history_tracked())
		return;
	ret = SPI_execute_with_args("SELECT propensity.history_refresh(pg_catalog.array_agg(user_id),"
								"                                  pg_catalog.array_agg(event_time))"
								"  FROM pg_catalog.unnest($1)",
								1, &array_type, &batch, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
}
