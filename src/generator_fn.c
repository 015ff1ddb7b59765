/*
 * generator_fn.c - generate_events(), the SQL face of the core generator:
 * a value-per-call set-returning function, so that loading ten million
 * events streams them rather than materializing them.
 */
#include "postgres.h"

#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "util.h"
#include "core/generator.h"

#define N_OUTPUT_COLUMNS 15

typedef struct GenCall
{
	GenConfig	config;
	GenState   *state;
} GenCall;

static Datum
int_or_null(int64 v, bool *isnull)
{
	*isnull = (v == 0);
	return Int64GetDatum(v);
}

static Datum
label_or_null(const char *prefix, int v, bool *isnull)
{
	*isnull = (v < 0);
	return *isnull ? (Datum) 0 : CStringGetTextDatum(psprintf("%s%02d", prefix, v));
}

/*
 * generate_events(seed, n_events, n_users, start_time, duration,
 *                 out_of_order, max_delay, n_advertisers, campaigns_per_advertiser)
 */
PG_FUNCTION_INFO_V1(propensity_generate_events);
Datum
propensity_generate_events(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	GenCall    *call;
	GenEvent	ev;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext oldcxt;
		TupleDesc	desc;
		CoreAllocator allocator;
		const char *err;
		int			i;

		for (i = 0; i < 9; i++)
			if (PG_ARGISNULL(i))
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("arguments of generate_events must not be null"),
						 errdetail("Argument %d is null.", i + 1)));

		funcctx = SRF_FIRSTCALL_INIT();
		oldcxt = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		if (desc->natts != N_OUTPUT_COLUMNS)
			elog(ERROR, "generate_events must return %d columns", N_OUTPUT_COLUMNS);
		funcctx->tuple_desc = BlessTupleDesc(desc);

		call = palloc0(sizeof(GenCall));
		call->config.seed = (uint64) PG_GETARG_INT64(0);
		call->config.n_events = PG_GETARG_INT64(1);
		call->config.n_users = PG_GETARG_INT32(2);
		call->config.start_us = prop_arg_time(fcinfo, 3, "start time");
		call->config.duration_us = prop_arg_span(fcinfo, 4, "duration");
		call->config.out_of_order = PG_GETARG_FLOAT8(5);
		call->config.max_delay_us = prop_arg_span(fcinfo, 6, "maximum delay");
		call->config.n_advertisers = PG_GETARG_INT32(7);
		call->config.campaigns_per_advertiser = PG_GETARG_INT32(8);

		allocator = prop_context_allocator(funcctx->multi_call_memory_ctx);
		/*
		 * Event times run from the start over the duration, plus conversion
		 * and click delays (a month at most) and the stream's own overrun:
		 * all must stay timestamps (COPY could not read back one past the
		 * range).  Each event is checked again as it is made.
		 */
		{
			int64		slack = 2 * call->config.duration_us + 60 * USECS_PER_DAY;
			int64		end;

			if (call->config.duration_us > END_TIMESTAMP / 4 ||
				pg_add_s64_overflow(call->config.start_us, slack, &end) || !IS_VALID_TIMESTAMP(end) ||
				pg_add_s64_overflow(end, call->config.max_delay_us, &end) || !IS_VALID_TIMESTAMP(end))
				ereport(ERROR,
						(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
						 errmsg("generated events starting at the given time would run past the end of the timestamp range"),
						 errhint("Choose an earlier start time or a shorter duration.")));
		}
		call->state = gen_create(&call->config, &allocator, &err);
		if (call->state == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid generator setting: %s", err)));
		funcctx->user_fctx = call;
		MemoryContextSwitchTo(oldcxt);
	}

	funcctx = SRF_PERCALL_SETUP();
	call = (GenCall *) funcctx->user_fctx;

	if (gen_next(call->state, &ev))
	{
		Datum		values[N_OUTPUT_COLUMNS];
		bool		nulls[N_OUTPUT_COLUMNS];
		char		buf[GEN_ID_BUFSIZE];

		memset(nulls, 0, sizeof(nulls));
		if (!IS_VALID_TIMESTAMP(ev.time_us) || !IS_VALID_TIMESTAMP(ev.arrival_us))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("a generated event time runs past the end of the timestamp range"),
					 errhint("Choose an earlier start time or a shorter duration.")));
		values[0] = TimestampTzGetDatum((TimestampTz) ev.time_us);
		gen_format_user_id(ev.user, buf);
		values[1] = CStringGetTextDatum(buf);
		values[2] = CStringGetTextDatum(feat_type_name(ev.type));
		gen_format_event_id(&call->config, &ev, buf);
		values[3] = CStringGetTextDatum(buf);
		values[4] = int_or_null(ev.advertiser_id, &nulls[4]);
		values[5] = int_or_null(ev.campaign_id, &nulls[5]);
		nulls[6] = (ev.auction < 0);
		if (!nulls[6])
		{
			gen_format_auction_id(&call->config, ev.auction, buf);
			values[6] = CStringGetTextDatum(buf);
		}
		values[7] = int_or_null(ev.pixel_id, &nulls[7]);
		values[8] = label_or_null("pub", ev.publisher, &nulls[8]);
		values[9] = label_or_null("cr", ev.creative, &nulls[9]);
		values[10] = label_or_null("pl", ev.placement, &nulls[10]);
		values[11] = label_or_null("prod", ev.product, &nulls[11]);
		nulls[12] = (ev.quantity == 0);
		values[12] = Int32GetDatum(ev.quantity);
		nulls[13] = (ev.revenue < 0);
		values[13] = Float8GetDatum(ev.revenue);
		values[14] = TimestampTzGetDatum((TimestampTz) ev.arrival_us);

		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc, values, nulls)));
	}
	gen_destroy(call->state);
	call->state = NULL;
	SRF_RETURN_DONE(funcctx);
}
