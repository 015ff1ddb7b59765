/*
 * features_agg.c - the feature and score aggregates (docs/computing.md sections 2 and 3):
 * window_counts and decayed_counts per event type, and feature_values and
 * score_events for a model.  All are parallel safe: states live in the
 * aggregate context, combine adds them, and serialize writes a versioned
 * bytea that deserialize checks.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "models.h"
#include "util.h"

#define STATE_FORMAT_VERSION 1

/* ---------- window_counts and decayed_counts ---------- */

typedef struct TypeSumsState
{
	double		v[FEAT_NTYPES];
} TypeSumsState;

static MemoryContext
agg_context(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcxt;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "%s called in non-aggregate context", fname);
	return aggcxt;
}

static Datum
type_sums_accum(FunctionCallInfo fcinfo, FeatKind kind, const char *span_name)
{
	MemoryContext aggcxt = agg_context(fcinfo, "type_sums_accum");
	TypeSumsState *st = PG_ARGISNULL(0) ? NULL : (TypeSumsState *) PG_GETARG_POINTER(0);
	FeatEventType type = prop_arg_event_type(fcinfo, 1);
	int64		event_us = prop_arg_time(fcinfo, 2, "event time");
	int64		as_of_us = prop_arg_time(fcinfo, 3, "as-of time");
	int64		span_us = prop_arg_span(fcinfo, 4, span_name);

	if (st == NULL)
		st = MemoryContextAllocZero(aggcxt, sizeof(TypeSumsState));
	st->v[type] += feat_contribution(kind, span_us, event_us, as_of_us);
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(propensity_window_counts_accum);
Datum
propensity_window_counts_accum(PG_FUNCTION_ARGS)
{
	return type_sums_accum(fcinfo, FEAT_WINDOW_COUNT, "window");
}

PG_FUNCTION_INFO_V1(propensity_decayed_counts_accum);
Datum
propensity_decayed_counts_accum(PG_FUNCTION_ARGS)
{
	return type_sums_accum(fcinfo, FEAT_DECAYED_COUNT, "half-life");
}

PG_FUNCTION_INFO_V1(propensity_type_sums_combine);
Datum
propensity_type_sums_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "propensity_type_sums_combine");
	TypeSumsState *a = PG_ARGISNULL(0) ? NULL : (TypeSumsState *) PG_GETARG_POINTER(0);
	TypeSumsState *b = PG_ARGISNULL(1) ? NULL : (TypeSumsState *) PG_GETARG_POINTER(1);
	int			i;

	if (b == NULL)
		PG_RETURN_POINTER(a);	/* may be NULL: the result is then NULL too */
	if (a == NULL)
	{
		a = MemoryContextAlloc(aggcxt, sizeof(TypeSumsState));
		*a = *b;
		PG_RETURN_POINTER(a);
	}
	for (i = 0; i < FEAT_NTYPES; i++)
		a->v[i] += b->v[i];
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(propensity_type_sums_serialize);
Datum
propensity_type_sums_serialize(PG_FUNCTION_ARGS)
{
	TypeSumsState *st;
	StringInfoData buf;
	int			i;

	agg_context(fcinfo, "propensity_type_sums_serialize");
	st = (TypeSumsState *) PG_GETARG_POINTER(0);
	pq_begintypsend(&buf);
	pq_sendbyte(&buf, STATE_FORMAT_VERSION);
	for (i = 0; i < FEAT_NTYPES; i++)
		pq_sendfloat8(&buf, st->v[i]);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Point buf at a serialized state and check its format version and length. */
static void
read_state_header(StringInfo buf, bytea *raw, int min_len, const char *what)
{
	int			version;

	buf->data = VARDATA_ANY(raw);
	buf->len = VARSIZE_ANY_EXHDR(raw);
	buf->maxlen = buf->len;
	buf->cursor = 0;

	if (buf->len < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("empty %s state", what)));
	version = pq_getmsgbyte(buf);
	if (version != STATE_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("unsupported %s state format version %d", what, version),
				 errhint("This build reads format version %d.", STATE_FORMAT_VERSION)));
	if (buf->len < min_len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("%s state is truncated: %d bytes, at least %d expected", what, buf->len, min_len)));
}

PG_FUNCTION_INFO_V1(propensity_type_sums_deserialize);
Datum
propensity_type_sums_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "propensity_type_sums_deserialize");
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	TypeSumsState *st;
	int			i;

	read_state_header(&buf, raw, 1 + FEAT_NTYPES * 8, "type sums");
	st = MemoryContextAlloc(aggcxt, sizeof(TypeSumsState));
	for (i = 0; i < FEAT_NTYPES; i++)
		st->v[i] = pq_getmsgfloat8(&buf);
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(st);
}

static Datum
type_sums_final(FunctionCallInfo fcinfo, bool as_counts)
{
	TypeSumsState *st = PG_ARGISNULL(0) ? NULL : (TypeSumsState *) PG_GETARG_POINTER(0);
	TupleDesc	desc;
	Datum		values[FEAT_NTYPES];
	bool		nulls[FEAT_NTYPES] = {false};
	int			i;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	for (i = 0; i < FEAT_NTYPES; i++)
	{
		double		v = st ? st->v[i] : 0.0;

		values[i] = as_counts ? Int64GetDatum((int64) v) : Float8GetDatum(v);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

PG_FUNCTION_INFO_V1(propensity_window_counts_final);
Datum
propensity_window_counts_final(PG_FUNCTION_ARGS)
{
	return type_sums_final(fcinfo, true);
}

PG_FUNCTION_INFO_V1(propensity_decayed_counts_final);
Datum
propensity_decayed_counts_final(PG_FUNCTION_ARGS)
{
	return type_sums_final(fcinfo, false);
}

/* ---------- feature_values and score_events ---------- */

/*
 * One group's feature accumulators for one model.  The model itself is
 * looked up once per query and cached in fn_extra; the state carries only
 * its id so that a state deserialized in another process can find it.
 */
typedef struct ModelState
{
	int32		model_id;
	int32		nterms;
	double		acc[FLEXIBLE_ARRAY_MEMBER];
} ModelState;

#define MODEL_STATE_SIZE(n) (offsetof(ModelState, acc) + (n) * sizeof(double))

typedef struct ModelCache
{
	bool		by_name;		/* loaded for an explicit model name */
	LoadedModel lm;
} ModelCache;

static const LoadedModel *
cached_model_by_name(FunctionCallInfo fcinfo, int argno)
{
	ModelCache *cache = (ModelCache *) fcinfo->flinfo->fn_extra;
	text	   *name = NULL;

	if (argno < PG_NARGS() && !PG_ARGISNULL(argno))
		name = PG_GETARG_TEXT_PP(argno);
	if (cache != NULL)
	{
		if (name == NULL ? !cache->by_name :
			(cache->by_name &&
			 strlen(cache->lm.name) == VARSIZE_ANY_EXHDR(name) &&
			 memcmp(cache->lm.name, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name)) == 0))
			return &cache->lm;
	}
	else
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ModelCache));
	prop_load_model_by_name(name ? text_to_cstring(name) : NULL, &cache->lm);
	cache->by_name = (name != NULL);
	fcinfo->flinfo->fn_extra = cache;
	return &cache->lm;
}

static const LoadedModel *
cached_model_by_id(FunctionCallInfo fcinfo, int32 model_id)
{
	ModelCache *cache = (ModelCache *) fcinfo->flinfo->fn_extra;

	if (cache != NULL && cache->lm.model_id == model_id)
		return &cache->lm;
	if (cache == NULL)
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ModelCache));
	prop_load_model_by_id(model_id, &cache->lm);
	fcinfo->flinfo->fn_extra = cache;
	return &cache->lm;
}

/* (state, event_type, event_time, as_of [, model]) */
PG_FUNCTION_INFO_V1(propensity_model_accum);
Datum
propensity_model_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "propensity_model_accum");
	ModelState *st = PG_ARGISNULL(0) ? NULL : (ModelState *) PG_GETARG_POINTER(0);
	FeatEventType type = prop_arg_event_type(fcinfo, 1);
	int64		event_us = prop_arg_time(fcinfo, 2, "event time");
	int64		as_of_us = prop_arg_time(fcinfo, 3, "as-of time");
	const LoadedModel *lm = cached_model_by_name(fcinfo, 4);

	if (st == NULL)
	{
		st = MemoryContextAllocZero(aggcxt, MODEL_STATE_SIZE(lm->model.nterms));
		st->model_id = lm->model_id;
		st->nterms = lm->model.nterms;
	}
	else if (st->model_id != lm->model_id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model changed within one aggregate group"),
				 errhint("Pass the same model to every row of a group.")));
	feat_accumulate(&lm->model, st->acc, type, event_us, as_of_us);
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(propensity_model_combine);
Datum
propensity_model_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "propensity_model_combine");
	ModelState *a = PG_ARGISNULL(0) ? NULL : (ModelState *) PG_GETARG_POINTER(0);
	ModelState *b = PG_ARGISNULL(1) ? NULL : (ModelState *) PG_GETARG_POINTER(1);
	int			i;

	if (b == NULL)
		PG_RETURN_POINTER(a);
	if (a == NULL)
	{
		a = MemoryContextAlloc(aggcxt, MODEL_STATE_SIZE(b->nterms));
		memcpy(a, b, MODEL_STATE_SIZE(b->nterms));
		PG_RETURN_POINTER(a);
	}
	if (a->model_id != b->model_id || a->nterms != b->nterms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot combine states of models %d and %d", a->model_id, b->model_id),
				 errhint("Pass the same model to every row of a group.")));
	for (i = 0; i < a->nterms; i++)
		a->acc[i] += b->acc[i];
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(propensity_model_serialize);
Datum
propensity_model_serialize(PG_FUNCTION_ARGS)
{
	ModelState *st;
	StringInfoData buf;
	int			i;

	agg_context(fcinfo, "propensity_model_serialize");
	st = (ModelState *) PG_GETARG_POINTER(0);
	pq_begintypsend(&buf);
	pq_sendbyte(&buf, STATE_FORMAT_VERSION);
	pq_sendint32(&buf, st->model_id);
	pq_sendint32(&buf, st->nterms);
	for (i = 0; i < st->nterms; i++)
		pq_sendfloat8(&buf, st->acc[i]);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(propensity_model_deserialize);
Datum
propensity_model_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "propensity_model_deserialize");
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	ModelState *st;
	int32		model_id;
	int32		nterms;
	int			i;

	read_state_header(&buf, raw, 9, "model");
	model_id = pq_getmsgint(&buf, 4);
	nterms = pq_getmsgint(&buf, 4);
	if (nterms < 0 || nterms > FEAT_MAX_TERMS || buf.len != 9 + nterms * 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("model state has %d bytes for %d terms", buf.len, nterms)));
	st = MemoryContextAlloc(aggcxt, MODEL_STATE_SIZE(nterms));
	st->model_id = model_id;
	st->nterms = nterms;
	for (i = 0; i < nterms; i++)
		st->acc[i] = pq_getmsgfloat8(&buf);
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(propensity_feature_values_final);
Datum
propensity_feature_values_final(PG_FUNCTION_ARGS)
{
	ModelState *st = PG_ARGISNULL(0) ? NULL : (ModelState *) PG_GETARG_POINTER(0);
	Datum	   *elems;
	int			i;

	if (st == NULL)
		PG_RETURN_NULL();
	elems = palloc(sizeof(Datum) * (st->nterms > 0 ? st->nterms : 1));
	for (i = 0; i < st->nterms; i++)
		elems[i] = Float8GetDatum(st->acc[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, st->nterms, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

PG_FUNCTION_INFO_V1(propensity_score_events_final);
Datum
propensity_score_events_final(PG_FUNCTION_ARGS)
{
	ModelState *st = PG_ARGISNULL(0) ? NULL : (ModelState *) PG_GETARG_POINTER(0);
	const LoadedModel *lm;

	if (st == NULL)
		PG_RETURN_NULL();
	lm = cached_model_by_id(fcinfo, st->model_id);
	if (lm->model.nterms != st->nterms)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("model \"%s\" changed during the query", lm->name)));
	PG_RETURN_FLOAT8(feat_score(&lm->model, st->acc));
}
