/*
 * store.c - the events table: its one lookup, its row type, the partitions
 * a bulk read goes over, and how a batch goes in.  Decoded rows go in
 * through COPY's own machinery (binary format from memory, partition
 * routing and multi-insert), the worker's fast path; the caller falls back
 * to INSERT ... ON CONFLICT DO NOTHING of an events[] array when a row was
 * already stored, which is also ingest()'s path.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "libpq/pqformat.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/typcache.h"

#include "store.h"
#include "store_partition.h"
#include "util.h"

/* ---- the table ---- */

Oid
prop_events_relid(void)
{
	Oid			nsp = get_namespace_oid("propensity", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("events", nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table propensity.events does not exist"),
				 errhint("Is the propensity extension installed in this database?")));
	return relid;
}

Oid
prop_events_rowtype(void)
{
	return get_rel_type_id(prop_events_relid());
}

void
prop_check_events_rowtype(TupleDesc desc)
{
	static const char *const names[EVENT_NATTS] = {
		"event_time", "user_id", "event_type", "event_id", "advertiser_id", "campaign_id",
		"auction_id", "pixel_id", "publisher", "creative", "placement", "product", "quantity", "revenue"
	};
	int			i;

	if (desc->natts != EVENT_NATTS)
		elog(ERROR, "propensity.events has %d columns, expected %d", desc->natts, EVENT_NATTS);
	for (i = 0; i < EVENT_NATTS; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), names[i]) != 0)
			elog(ERROR, "propensity.events column %d is \"%s\", expected \"%s\"", i + 1,
				 NameStr(TupleDescAttr(desc, i)->attname), names[i]);
}

/* Leaf partitions that can hold events up to as_of, in CurrentMemoryContext. */
List *
prop_event_partitions(Oid parent, TimestampTz as_of)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {OIDOID, TIMESTAMPTZOID};
	Datum		args[2] = {ObjectIdGetDatum(parent), TimestampTzGetDatum(as_of)};
	List	   *result = NIL;
	uint64		i;
	int			ret;
	int			nest_level;

	SPI_connect();
	nest_level = prop_pin_search_path();
	ret = SPI_execute_with_args(
		"SELECT i.inhrelid FROM pg_catalog.pg_inherits i "
		"LEFT JOIN propensity.event_partitions p ON p.partition = i.inhrelid "
		"WHERE i.inhparent = $1 AND (p.range_start IS NULL OR p.range_start <= $2)",
		2, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext spi = MemoryContextSwitchTo(caller);

		result = lappend_oid(result, oid);
		MemoryContextSwitchTo(spi);
	}
	prop_restore_search_path(nest_level);
	SPI_finish();
	return result;
}

/* ---- COPY of decoded rows ---- */

/* the COPY data source: CopyFrom's callback has no argument of its own */
static StringInfoData copy_data;
static int	copy_pos;

static int
copy_source(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_data.len - copy_pos);

	memcpy(outbuf, copy_data.data + copy_pos, n);
	copy_pos += n;
	return n;
}

static void
send_text(StringInfo buf, Datum d)
{
	text	   *t = DatumGetTextPP(d);

	pq_sendint32(buf, VARSIZE_ANY_EXHDR(t));
	pq_sendbytes(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* binary COPY format: header, then per row the field count and each field */
static void
build_copy_data(StringInfo buf, const EventRow *rows, int n)
{
	static const char signature[11] = "PGCOPY\n\377\r\n\0";
	int			i;
	int			k;

	appendBinaryStringInfo(buf, signature, 11);
	pq_sendint32(buf, 0);		/* flags */
	pq_sendint32(buf, 0);		/* header extension */
	for (i = 0; i < n; i++)
	{
		const EventRow *r = &rows[i];

		pq_sendint16(buf, EVENT_NATTS);
		for (k = 0; k < EVENT_NATTS; k++)
		{
			if (r->nulls[k])
			{
				pq_sendint32(buf, -1);
				continue;
			}
			switch (k)
			{
				case EV_TIME:
				case EV_ADVERTISER:
				case EV_CAMPAIGN:
				case EV_PIXEL:
					pq_sendint32(buf, 8);
					pq_sendint64(buf, DatumGetInt64(r->values[k]));
					break;
				case EV_QUANTITY:
					pq_sendint32(buf, 4);
					pq_sendint32(buf, DatumGetInt32(r->values[k]));
					break;
				case EV_REVENUE:
					pq_sendint32(buf, 8);
					pq_sendfloat8(buf, DatumGetFloat8(r->values[k]));
					break;
				default:
					send_text(buf, r->values[k]);
					break;
			}
		}
	}
	pq_sendint16(buf, -1);		/* trailer */
}

uint64
prop_store_copy(const EventRow *rows, int n)
{
	Oid			relid = prop_events_relid();
	Relation	rel;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	CopyFromState cstate;
	uint64		stored;
	int			k;

	initStringInfo(&copy_data);
	build_copy_data(&copy_data, rows, n);
	copy_pos = 0;

	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	nsitem->p_rte->requiredPerms = ACL_INSERT;
	for (k = 1; k <= EVENT_NATTS; k++)
		nsitem->p_rte->insertedCols = bms_add_member(nsitem->p_rte->insertedCols,
													 k - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(pstate->p_rtable, true);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source, NIL,
						   list_make1(makeDefElem("format", (Node *) makeString("binary"), -1)));
	stored = CopyFrom(cstate);
	EndCopyFrom(cstate);
	table_close(rel, NoLock);
	free_parsestate(pstate);
	pfree(copy_data.data);
	copy_data.data = NULL;
	return stored;
}

/* ---- INSERT of an events[] array ---- */

static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr insert_returning_plan = NULL;
static Oid	plans_array_type = InvalidOid;

uint64
prop_store_array(Datum batch, Oid array_type, EventRow **new_rows)
{
	uint64		i;

	if (array_type != plans_array_type)
	{
		/* the extension was recreated: the plans name the old row type */
		prop_plan_forget(&insert_plan);
		prop_plan_forget(&insert_returning_plan);
		plans_array_type = array_type;
	}
	if (new_rows == NULL)
	{
		prop_plan_run(&insert_plan,
					  "INSERT INTO propensity.events SELECT * FROM pg_catalog.unnest($1)"
					  " ON CONFLICT DO NOTHING",
					  1, &array_type, &batch, NULL, SPI_OK_INSERT);
		return SPI_processed;
	}
	prop_plan_run(&insert_returning_plan,
				  "INSERT INTO propensity.events SELECT * FROM pg_catalog.unnest($1)"
				  " ON CONFLICT DO NOTHING"
				  " RETURNING user_id, event_type, event_time, event_id, advertiser_id,"
				  "           campaign_id, auction_id, pixel_id",
				  1, &array_type, &batch, NULL, SPI_OK_INSERT_RETURNING);
	*new_rows = palloc(sizeof(EventRow) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		static const int cols[8] = {EV_USER, EV_TYPE, EV_TIME, EV_ID, EV_ADVERTISER,
		EV_CAMPAIGN, EV_AUCTION, EV_PIXEL};
		EventRow   *row = &(*new_rows)[i];
		int			k;

		memset(row->nulls, true, sizeof(row->nulls));
		for (k = 0; k < 8; k++)
			row->values[cols[k]] = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
												 k + 1, &row->nulls[cols[k]]);
	}
	return SPI_processed;
}

void
prop_ensure_array_partitions(ArrayType *batch)
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

void
prop_ensure_row_partitions(const EventRow *rows, int n)
{
	TimestampTz *times = palloc(sizeof(TimestampTz) * n);
	int			i;

	for (i = 0; i < n; i++)
		times[i] = DatumGetTimestampTz(rows[i].values[EV_TIME]);
	(void) prop_ensure_batch_partitions(times, n);
	pfree(times);
}
