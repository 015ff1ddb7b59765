/*
 * attribution_agg.c - attribute(): the docs/computing.md section 5 credits of one
 * (user, advertiser) key's conversions, as an aggregate over the key's
 * events.  The state is the key's events; the final function credits them
 * all with the core's attr_credit_key().  Order of rows is irrelevant.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "util.h"
#include "core/attribution.h"

typedef struct AttrState
{
	int			n;
	int			cap;
	AttrEvent  *events;
	AttrSettings settings;
} AttrState;

static char *
text_arg_or_null(FunctionCallInfo fcinfo, int argno, MemoryContext cxt)
{
	if (PG_ARGISNULL(argno))
		return NULL;
	return MemoryContextStrdup(cxt, text_to_cstring(PG_GETARG_TEXT_PP(argno)));
}

/*
 * (state, event_id, event_type, event_time, campaign_id, auction_id,
 *  pixel_id, pc_window, pv_window, rolling_window)
 */
PG_FUNCTION_INFO_V1(propensity_attribute_accum);
Datum
propensity_attribute_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	AttrState  *st;
	AttrEvent  *e;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "propensity_attribute_accum called in non-aggregate context");
	st = PG_ARGISNULL(0) ? NULL : (AttrState *) PG_GETARG_POINTER(0);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event id must not be null")));
	if (st == NULL)
	{
		st = MemoryContextAllocZero(aggcxt, sizeof(AttrState));
		st->cap = 16;
		st->events = MemoryContextAlloc(aggcxt, sizeof(AttrEvent) * st->cap);
		st->settings.pc_window_us = prop_arg_span(fcinfo, 7, "post-click window");
		st->settings.pv_window_us = prop_arg_span(fcinfo, 8, "post-view window");
		st->settings.rolling_us = prop_arg_span(fcinfo, 9, "rolling window");
	}
	if (st->n == st->cap)
	{
		st->cap *= 2;
		st->events = repalloc_huge(st->events, sizeof(AttrEvent) * st->cap);
	}
	e = &st->events[st->n];
	memset(e, 0, sizeof(*e));
	e->type = prop_arg_event_type(fcinfo, 2);
	e->time_us = prop_arg_time(fcinfo, 3, "event time");
	e->event_id = text_arg_or_null(fcinfo, 1, aggcxt);
	e->has_campaign = !PG_ARGISNULL(4);
	e->campaign_id = e->has_campaign ? PG_GETARG_INT64(4) : 0;
	e->auction_id = text_arg_or_null(fcinfo, 5, aggcxt);
	e->has_pixel = !PG_ARGISNULL(6);
	e->pixel_id = e->has_pixel ? PG_GETARG_INT64(6) : 0;
	st->n++;
	PG_RETURN_POINTER(st);
}

/*
 * Final: attribution_credit[] with one element per conversion of the key:
 * (conversion_event_id, conversion_time, kind, campaign_id, impression_event_id).
 */
PG_FUNCTION_INFO_V1(propensity_attribute_final);
Datum
propensity_attribute_final(PG_FUNCTION_ARGS)
{
	AttrState  *st = PG_ARGISNULL(0) ? NULL : (AttrState *) PG_GETARG_POINTER(0);
	Oid			array_type = get_fn_expr_rettype(fcinfo->flinfo);
	Oid			elem_type = get_element_type(array_type);
	TupleDesc	desc;
	Datum	   *elems;
	AttrCredit *credits = NULL;
	int			nconv = 0;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	if (!OidIsValid(elem_type))
		elog(ERROR, "attribute() must return an array");
	desc = lookup_rowtype_tupdesc_copy(elem_type, -1);
	BlessTupleDesc(desc);
	elems = palloc(sizeof(Datum) * (st ? st->n : 1));
	if (st != NULL)
	{
		CoreAllocator a = prop_context_allocator(CurrentMemoryContext);
		AttrScratch *sweep = attr_scratch_create(&a, &prop_core_interrupt);

		credits = palloc(sizeof(AttrCredit) * st->n);
		attr_credit_key(sweep, st->events, st->n, PG_INT64_MIN, &st->settings, credits);
		attr_scratch_destroy(sweep);
	}
	for (i = 0; st != NULL && i < st->n; i++)
	{
		AttrCredit	c;
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		if (st->events[i].type != FEAT_CN)
			continue;
		c = credits[i];
		values[0] = CStringGetTextDatum(st->events[i].event_id);
		values[1] = TimestampTzGetDatum((TimestampTz) st->events[i].time_us);
		values[2] = CStringGetTextDatum(attr_kind_name(c.kind));
		nulls[3] = !c.has_campaign;
		values[3] = Int64GetDatum(c.campaign_id);
		nulls[4] = c.impression < 0;
		values[4] = nulls[4] ? (Datum) 0 : CStringGetTextDatum(st->events[c.impression].event_id);
		elems[nconv++] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	}
	get_typlenbyvalalign(elem_type, &typlen, &typbyval, &typalign);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, nconv, elem_type, typlen, typbyval, typalign));
}
