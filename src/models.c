/*
 * models.c - reading logistic models from propensity.models into the core's
 * FeatModel, validating them (also for the table's trigger), and applying a
 * model to a feature vector.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "models.h"
#include "util.h"

char	   *propensity_default_model = NULL;

void
prop_models_init(void)
{
	DefineCustomStringVariable("propensity.default_model",
							   "Model used when a function is given no model name.",
							   "The latest version of the model with this name in propensity.models.",
							   &propensity_default_model,
							   "seed",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
}

/* attribute numbers of propensity.model_term */
#define TERM_NAME 1
#define TERM_FEATURE 2
#define TERM_EVENT_TYPE 3
#define TERM_WIDTH 4
#define TERM_TRANSFORM 5
#define TERM_COEFFICIENT 6

static char *
term_text(HeapTupleHeader term, int attno, const char *what, const char *model, int index)
{
	bool		isnull;
	Datum		d = GetAttributeByNum(term, attno, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s of term %d of model \"%s\" must not be null", what, index, model)));
	return TextDatumGetCString(d);
}

/* Parse a model_term[] into model->terms; errors name the model and term. */
static void
parse_terms(Datum terms_datum, const char *model_name, FeatModel *model)
{
	ArrayType  *arr = DatumGetArrayTypeP(terms_datum);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("terms of model \"%s\" must be a one-dimensional array", model_name)));
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign, &elems, &nulls, &n);
	if (n > FEAT_MAX_TERMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model \"%s\" has %d terms", model_name, n),
				 errdetail("A model has at most %d terms.", FEAT_MAX_TERMS)));

	model->nterms = n;
	for (i = 0; i < n; i++)
	{
		HeapTupleHeader term;
		FeatTerm   *t = &model->terms[i];
		char	   *feature;
		char	   *type;
		char	   *transform;
		bool		isnull;
		Datum		d;
		int			parsed;
		char		what[64];

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("term %d of model \"%s\" is null", i + 1, model_name)));
		term = DatumGetHeapTupleHeader(elems[i]);

		feature = term_text(term, TERM_FEATURE, "feature", model_name, i + 1);
		parsed = feat_parse_kind(feature);
		if (parsed < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown feature \"%s\" in term %d of model \"%s\"", feature, i + 1, model_name),
					 errhint("Valid features are window_count and decayed_count.")));
		t->kind = (FeatKind) parsed;

		type = term_text(term, TERM_EVENT_TYPE, "event type", model_name, i + 1);
		parsed = feat_parse_type(type, strlen(type));
		if (parsed < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown event type \"%s\" in term %d of model \"%s\"", type, i + 1, model_name),
					 errhint("Valid types are IM, CL, PS and CN.")));
		t->type = (FeatEventType) parsed;

		transform = term_text(term, TERM_TRANSFORM, "transform", model_name, i + 1);
		parsed = feat_parse_transform(transform);
		if (parsed < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown transform \"%s\" in term %d of model \"%s\"", transform, i + 1, model_name),
					 errhint("Valid transforms are identity and log1p.")));
		t->transform = (FeatTransform) parsed;

		d = GetAttributeByNum(term, TERM_WIDTH, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("width of term %d of model \"%s\" must not be null", i + 1, model_name)));
		snprintf(what, sizeof(what), "width of term %d", i + 1);
		t->span_us = prop_interval_to_us(DatumGetIntervalP(d), what);

		d = GetAttributeByNum(term, TERM_COEFFICIENT, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("coefficient of term %d of model \"%s\" must not be null", i + 1, model_name)));
		t->coef = DatumGetFloat8(d);
	}
}

static void
check_model(const char *model_name, const FeatModel *model)
{
	int			bad_term;
	const char *problem = feat_validate(model, &bad_term);

	if (problem == NULL)
		return;
	if (bad_term >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid model \"%s\": %s in term %d", model_name, problem, bad_term + 1),
				 errhint("Coefficients must be finite numbers and widths positive.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid model \"%s\": %s", model_name, problem),
			 errhint("The intercept must be a finite number.")));
}

static void
load_model(const char *query, Oid argtype, Datum arg, const char *what, LoadedModel *out)
{
	int			ret;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext caller_cxt = CurrentMemoryContext;
	FeatModel	model;
	char		name[NAMEDATALEN];
	int32		model_id;
	int32		version;
	int			nest_level;

	SPI_connect();
	nest_level = prop_pin_search_path();
	ret = SPI_execute_with_args(query, 1, &argtype, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model %s does not exist", what),
				 errhint("See SELECT name, version FROM propensity.models; the default model is set by propensity.default_model.")));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	model_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	strlcpy(name, TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull)), NAMEDATALEN);
	memset(&model, 0, sizeof(model));
	model.intercept = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
	parse_terms(SPI_getbinval(tup, desc, 5, &isnull), name, &model);
	check_model(name, &model);
	prop_restore_search_path(nest_level);
	SPI_finish();

	MemoryContextSwitchTo(caller_cxt);
	out->model_id = model_id;
	out->version = version;
	strlcpy(out->name, name, NAMEDATALEN);
	out->model = model;
}

void
prop_load_model_by_name(const char *name, LoadedModel *out)
{
	char	   *quoted;

	if (name == NULL)
		name = propensity_default_model;
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no model given and propensity.default_model is empty"),
				 errhint("Pass a model name or SET propensity.default_model.")));
	quoted = psprintf("\"%s\"", name);
	load_model("SELECT model_id, version, name, intercept, terms FROM propensity.models "
			   "WHERE name = $1 ORDER BY version DESC LIMIT 1",
			   TEXTOID, CStringGetTextDatum(name), quoted, out);
}

void
prop_load_model_by_id(int32 model_id, LoadedModel *out)
{
	load_model("SELECT model_id, version, name, intercept, terms FROM propensity.models "
			   "WHERE model_id = $1",
			   INT4OID, Int32GetDatum(model_id), psprintf("with id %d", model_id), out);
}

/*
 * validate_model(name, intercept, terms): raises the error a bad model
 * deserves; used by the trigger on propensity.models.
 */
PG_FUNCTION_INFO_V1(propensity_validate_model);
Datum
propensity_validate_model(PG_FUNCTION_ARGS)
{
	char	   *name = PG_ARGISNULL(0) ? "(unnamed)" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	FeatModel	model;

	memset(&model, 0, sizeof(model));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("intercept of model \"%s\" must not be null", name)));
	model.intercept = PG_GETARG_FLOAT8(1);
	if (!PG_ARGISNULL(2))
		parse_terms(PG_GETARG_DATUM(2), name, &model);
	check_model(name, &model);
	PG_RETURN_VOID();
}

/*
 * apply_model(features float8[], model text): the score of a feature vector,
 * one value per term in the model's order; NULL features mean all zero.
 */
PG_FUNCTION_INFO_V1(propensity_apply_model);
Datum
propensity_apply_model(PG_FUNCTION_ARGS)
{
	LoadedModel lm;
	double		acc[FEAT_MAX_TERMS];

	prop_load_model_by_name(PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)), &lm);
	memset(acc, 0, sizeof(acc));
	if (!PG_ARGISNULL(0))
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			i;

		deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, &nulls, &n);
		if (ARR_NDIM(arr) > 1 || n != lm.model.nterms)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("model \"%s\" has %d terms but %d features were given",
							lm.name, lm.model.nterms, n),
					 errhint("Give one value per term, in the order of the model's terms.")));
		for (i = 0; i < n; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("feature %d must not be null", i + 1)));
			acc[i] = DatumGetFloat8(elems[i]);
		}
	}
	PG_RETURN_FLOAT8(feat_score(&lm.model, acc));
}
