/*
 * ingest.c - the pipeline of one batch of events, in the caller's
 * transaction: the partitions its events need, the store (by COPY for
 * decoded rows, by INSERT ... ON CONFLICT DO NOTHING for an events[] array
 * or a batch holding a redelivered event), then the downstream stages on
 * what was stored, in order: attribution of the new events, then the score
 * history of the batch's users.  A later stage goes in beside them, after
 * the store and in the same transaction.  ingest() is the SQL face.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "portability/instr_time.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "attribution_engine.h"
#include "history.h"
#include "ingest.h"
#include "store.h"
#include "util.h"

/*
 * An events[] array: store it and, with attribute, hand the new events to
 * the attribution engine; then the history of every user of the batch.
 * Connects to SPI itself.
 */
void
prop_ingest(ArrayType *batch, Oid array_type, bool attribute, int64 *out)
{
	int			nbatch = ArrayGetNItems(ARR_NDIM(batch), ARR_DIMS(batch));
	Datum		arg = PointerGetDatum(batch);
	int			nest;
	AttrIngest	attr;
	EventRow   *rows = NULL;
	int			n = 0;
	instr_time	t_start;
	instr_time	t_synced;
	instr_time	t_stored;
	instr_time	t_done;

	memset(out, 0, sizeof(int64) * INGEST_NOUT);
	nest = prop_pin_search_path();
	SPI_connect();
	if (nbatch > 0)
		prop_ensure_array_partitions(batch);
	if (!attribute)
	{
		/* events only: the engine learns of them at its next rebuild or backfill */
		out[INGEST_INSERTED] = nbatch > 0 ? (int64) prop_store_array(arg, array_type, NULL) : 0;
		out[INGEST_DUPLICATES] = nbatch - out[INGEST_INSERTED];
		if (nbatch > 0)
			prop_history_after_array(arg, array_type);
		SPI_finish();
		prop_restore_search_path(nest);
		return;
	}

	INSTR_TIME_SET_CURRENT(t_start);
	prop_attr_ingest_begin(&attr);
	INSTR_TIME_SET_CURRENT(t_synced);
	if (nbatch > 0)
		n = (int) prop_store_array(arg, array_type, &rows);
	INSTR_TIME_SET_CURRENT(t_stored);
	prop_attr_ingest_apply(&attr, rows, n, out);
	INSTR_TIME_SET_CURRENT(t_done);
	out[INGEST_INSERTED] = n;
	out[INGEST_DUPLICATES] = nbatch - n;
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

	(void) prop_store_copy(c->rows, c->n);
}

/*
 * rows[n] again as an events[] array, in the caller's context (SPI's is
 * freed by SPI_finish() before the array is used).
 */
static ArrayType *
rows_to_array(EventRow *rows, int n, Oid rowtype, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum	   *elems = palloc(sizeof(Datum) * n);
	TupleDesc	desc = lookup_rowtype_tupdesc(rowtype, -1);
	ArrayType  *array;
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = HeapTupleGetDatum(heap_form_tuple(desc, rows[i].values, rows[i].nulls));
	ReleaseTupleDesc(desc);
	array = construct_array(elems, n, rowtype, -1, false, TYPALIGN_DOUBLE);
	MemoryContextSwitchTo(old);
	return array;
}

/*
 * The worker's path: rows[n] of events columns, decoded and valid.  They go
 * in by COPY (multi-insert, as fast as COPY itself) inside a
 * subtransaction; if one of them was stored before (a redelivery), the
 * unique index refuses the COPY and the batch takes the INSERT ... ON
 * CONFLICT DO NOTHING path of prop_ingest() instead.
 */
void
prop_ingest_rows(EventRow *rows, int n, Oid rowtype, bool attribute, int64 *out)
{
	MemoryContext caller = CurrentMemoryContext;
	CopyCall	copy;
	ErrorData  *edata;
	AttrIngest	attr;
	int			nest;

	memset(out, 0, sizeof(int64) * INGEST_NOUT);
	if (n == 0)
		return;
	nest = prop_pin_search_path();
	SPI_connect();
	prop_ensure_row_partitions(rows, n);
	/* before the rows go in: a rebuild must not see them as old events */
	if (attribute)
		prop_attr_ingest_begin(&attr);

	copy.rows = rows;
	copy.n = n;
	if (!prop_subxact_try(copy_call, &copy, &edata))
	{
		ArrayType  *array;

		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg("propensity: a batch of %d events holds one stored before; storing it by INSERT ... ON CONFLICT DO NOTHING", n),
				 errdetail("%s", edata->detail ? edata->detail : edata->message)));
		FreeErrorData(edata);
		/* some were stored before: the general path skips them */
		if (attribute)
			prop_attr_ingest_abandon(&attr);
		array = rows_to_array(rows, n, rowtype, caller);
		SPI_finish();
		prop_restore_search_path(nest);
		prop_ingest(array, get_array_type(rowtype), attribute, out);
		return;
	}
	out[INGEST_INSERTED] = n;
	if (attribute)
		prop_attr_ingest_apply(&attr, rows, n, out);
	prop_history_after_rows(rows, n);
	SPI_finish();
	prop_restore_search_path(nest);
}

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
	Datum		result[INGEST_NOUT];
	bool		rnulls[INGEST_NOUT] = {false, false, false, false, false};
	int64		out[INGEST_NOUT];
	int			i;

	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "ingest() must return a record");
	prop_ingest(batch, array_type, true, out);
	for (i = 0; i < INGEST_NOUT; i++)
		result[i] = Int64GetDatum(out[i]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), result, rnulls)));
}
