/*
 * logistic_agg.c - logistic regression in SQL: the aggregate logistic_sums()
 * (one IRLS pass at given coefficients: gradient, Hessian, log-likelihood;
 * parallel safe, states merge by addition) and logistic_step() (the Newton
 * step and standard errors from those sums).  fit_logistic() in SQL drives
 * the passes.  The arithmetic is src/core/logistic.c.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "util.h"
#include "core/logistic.h"

#define SUMS_FORMAT_VERSION 1

static MemoryContext
agg_cxt(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		elog(ERROR, "%s called in non-aggregate context", fname);
	return cxt;
}

/* float8[] without nulls into out[]; returns its length */
static int
read_vector(ArrayType *a, double *out, int max, const char *what)
{
	Datum	   *d;
	bool	   *nulls;
	int			n;
	int			i;

	if (ARR_NDIM(a) > 1)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(a, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &d, &nulls, &n);
	if (n > max)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("%s has %d values, at most %d are supported", what, n, max)));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("%s must not contain nulls", what),
							errhint("Leave out or impute examples with missing features.")));
		out[i] = DatumGetFloat8(d[i]);
		if (!isfinite(out[i]))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("%s must be finite", what)));
	}
	return n;
}

/* logistic_sums(label boolean, features float8[], coefficients float8[]) */
PG_FUNCTION_INFO_V1(propensity_logistic_sums_accum);
Datum
propensity_logistic_sums_accum(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_cxt(fcinfo, "propensity_logistic_sums_accum");
	LogisticAcc   *acc = PG_ARGISNULL(0) ? NULL : (LogisticAcc *) PG_GETARG_POINTER(0);
	double		x[LOGISTIC_MAX_K];
	double		beta[LOGISTIC_MAX_K];
	int			nx;
	int			nb;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("label, features and coefficients must not be null")));
	x[0] = 1;
	nx = read_vector(PG_GETARG_ARRAYTYPE_P(2), x + 1, LOGISTIC_MAX_K - 1, "features") + 1;
	nb = read_vector(PG_GETARG_ARRAYTYPE_P(3), beta, LOGISTIC_MAX_K, "coefficients");
	if (nb != nx)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%d features need %d coefficients, not %d", nx - 1, nx, nb),
						errhint("Give the intercept first, then one coefficient per feature.")));
	if (acc == NULL)
	{
		acc = MemoryContextAlloc(cxt, sizeof(LogisticAcc));
		logistic_acc_init(acc, nx);
	}
	else if (acc->k != nx)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("examples have %d and %d features", acc->k - 1, nx - 1)));
	logistic_acc_add(acc, x, PG_GETARG_BOOL(1), 1.0, beta);
	PG_RETURN_POINTER(acc);
}

PG_FUNCTION_INFO_V1(propensity_logistic_sums_combine);
Datum
propensity_logistic_sums_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_cxt(fcinfo, "propensity_logistic_sums_combine");
	LogisticAcc   *a = PG_ARGISNULL(0) ? NULL : (LogisticAcc *) PG_GETARG_POINTER(0);
	LogisticAcc   *b = PG_ARGISNULL(1) ? NULL : (LogisticAcc *) PG_GETARG_POINTER(1);

	if (b == NULL)
		PG_RETURN_POINTER(a);
	if (a == NULL)
	{
		a = MemoryContextAlloc(cxt, sizeof(LogisticAcc));
		*a = *b;
		PG_RETURN_POINTER(a);
	}
	if (a->k != b->k)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("examples have %d and %d features", a->k - 1, b->k - 1)));
	logistic_acc_merge(a, b);
	PG_RETURN_POINTER(a);
}

static bytea *
sums_to_bytea(const LogisticAcc *acc)
{
	StringInfoData buf;
	int			i;

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, SUMS_FORMAT_VERSION);
	pq_sendint32(&buf, acc->k);
	pq_sendfloat8(&buf, acc->n);
	pq_sendfloat8(&buf, acc->positives);
	pq_sendfloat8(&buf, acc->loglik);
	pq_sendfloat8(&buf, acc->extreme);
	for (i = 0; i < acc->k; i++)
		pq_sendfloat8(&buf, acc->grad[i]);
	for (i = 0; i < acc->k * (acc->k + 1) / 2; i++)
		pq_sendfloat8(&buf, acc->hess[i]);
	return pq_endtypsend(&buf);
}

static void
bytea_to_sums(bytea *raw, LogisticAcc *acc)
{
	StringInfoData buf;
	int			k;
	int			i;

	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if (buf.len < 5 || pq_getmsgbyte(&buf) != SUMS_FORMAT_VERSION)
		ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						errmsg("not logistic_sums() output of this version")));
	k = pq_getmsgint(&buf, 4);
	if (k < 1 || k > LOGISTIC_MAX_K || buf.len != 5 + 8 * (4 + k + k * (k + 1) / 2))
		ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						errmsg("logistic sums of %d bytes do not match %d coefficients", buf.len, k)));
	logistic_acc_init(acc, k);
	acc->n = pq_getmsgfloat8(&buf);
	acc->positives = pq_getmsgfloat8(&buf);
	acc->loglik = pq_getmsgfloat8(&buf);
	acc->extreme = pq_getmsgfloat8(&buf);
	for (i = 0; i < k; i++)
		acc->grad[i] = pq_getmsgfloat8(&buf);
	for (i = 0; i < k * (k + 1) / 2; i++)
		acc->hess[i] = pq_getmsgfloat8(&buf);
}

PG_FUNCTION_INFO_V1(propensity_logistic_sums_serialize);
Datum
propensity_logistic_sums_serialize(PG_FUNCTION_ARGS)
{
	agg_cxt(fcinfo, "propensity_logistic_sums_serialize");
	PG_RETURN_BYTEA_P(sums_to_bytea((LogisticAcc *) PG_GETARG_POINTER(0)));
}

PG_FUNCTION_INFO_V1(propensity_logistic_sums_deserialize);
Datum
propensity_logistic_sums_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_cxt(fcinfo, "propensity_logistic_sums_deserialize");
	LogisticAcc   *acc = MemoryContextAlloc(cxt, sizeof(LogisticAcc));

	bytea_to_sums(PG_GETARG_BYTEA_PP(0), acc);
	PG_RETURN_POINTER(acc);
}

/* final: the sums as bytea, for logistic_step(); NULL over no examples */
PG_FUNCTION_INFO_V1(propensity_logistic_sums_final);
Datum
propensity_logistic_sums_final(PG_FUNCTION_ARGS)
{
	agg_cxt(fcinfo, "propensity_logistic_sums_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(sums_to_bytea((LogisticAcc *) PG_GETARG_POINTER(0)));
}

static ArrayType *
vector_array(const double *v, int n)
{
	Datum		d[LOGISTIC_MAX_K];
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Float8GetDatum(v[i]);
	return construct_array(d, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * logistic_step(sums bytea, coefficients float8[], l2 float8) ->
 * (coefficients, std_errors, max_change, log_likelihood, examples, extreme)
 */
PG_FUNCTION_INFO_V1(propensity_logistic_step);
Datum
propensity_logistic_step(PG_FUNCTION_ARGS)
{
	LogisticAcc	acc;
	LogisticStep	st;
	double		beta[LOGISTIC_MAX_K];
	double		l2 = PG_GETARG_FLOAT8(2);
	char		err[LOGISTIC_ERR_LEN];
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	int			nb;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "logistic_step() must return a record");
	if (!(l2 >= 0) || !isfinite(l2))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("l2 must be a finite number >= 0, not %g", l2)));
	bytea_to_sums(PG_GETARG_BYTEA_PP(0), &acc);
	nb = read_vector(PG_GETARG_ARRAYTYPE_P(1), beta, LOGISTIC_MAX_K, "coefficients");
	if (nb != acc.k)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%d coefficients for sums of %d", nb, acc.k)));
	if (logistic_newton_step(&acc, beta, l2, &st, err) != 0)
		ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
						errmsg("logistic regression cannot be fitted"),
						errdetail("%s", err),
						errhint("Drop constant or duplicated features, or add an L2 penalty.")));
	values[0] = PointerGetDatum(vector_array(st.beta, acc.k));
	values[1] = PointerGetDatum(vector_array(st.se, acc.k));
	values[2] = Float8GetDatum(st.max_change);
	values[3] = Float8GetDatum(st.objective);
	values[4] = Float8GetDatum(acc.n);
	values[5] = Float8GetDatum(acc.extreme);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
