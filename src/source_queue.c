/*
 * source_queue.c - the embedded queue as a source (source.h): read the
 * next messages of a group's snapshot range, and move the group's position
 * and per-partition offsets after them, in the caller's transaction; in
 * between, source.c decodes and stores.  Also consume() and the record of
 * a failed batch on its subscription.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/typcache.h"

#include "access/detoast.h"

#include "source.h"
#include "source_queue.h"
#include "util.h"

static char *
read_query(Oid topic_id)
{
	Datum		arg = ObjectIdGetDatum(topic_id);
	Oid			argtype = INT4OID;
	StringInfoData q;
	uint64		i;
	int			ret;

	/* a slot table dropped by hand is skipped (its messages are gone) */
	ret = SPI_execute_with_args("SELECT s.tbl::text FROM propensity.topic_slots s"
								"  JOIN pg_catalog.pg_class c ON c.oid = s.tbl"
								" WHERE s.topic_id = $1 ORDER BY s.slot",
								1, &argtype, &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("topic %u has no storage tables", topic_id),
				 errhint("Its tables were dropped by hand; drop the topic with propensity.drop_topic() and create it again.")));
	/*
	 * The row comparison is the scan's only lower bound, so the index scan
	 * starts at the position (or at the range's xmin) instead of checking
	 * every older entry; txid < xmax ends it.  Each slot is read in index
	 * order up to the limit, then merged: the planner does not turn a
	 * filtered UNION ALL into an ordered merge by itself, and a sort of the
	 * whole range would be paid on every batch.  The running sum of message
	 * sizes (octet_length reads a stored value's size without fetching it)
	 * ends the batch at $6 bytes, the message that crosses it included.
	 */
	initStringInfo(&q);
	appendStringInfoString(&q,
						   "SELECT w.txid::text, w.msg_offset, w.partition, w.key, w.value, w.upto FROM ("
						   " SELECT m.*, (sum(m.len) OVER (ORDER BY m.txid, m.msg_offset ROWS UNBOUNDED PRECEDING))::int8 AS upto"
						   "   FROM (SELECT m.*, pg_catalog.octet_length(m.value)::int8"
						   "                     + coalesce(pg_catalog.octet_length(m.key), 0) AS len FROM (");
	for (i = 0; i < SPI_processed; i++)
	{
		/* regclass::text is already quoted as needed */
		char	   *tbl = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (i > 0)
			appendStringInfoString(&q, " UNION ALL ");
		appendStringInfo(&q, "(SELECT txid, msg_offset, partition, key, value FROM %s"
						 " WHERE (txid, msg_offset) > (greatest($3::xid8, pg_snapshot_xmin($1::pg_snapshot)), $4)"
						 "   AND txid < pg_snapshot_xmax($2::pg_snapshot)"
						 "   AND pg_visible_in_snapshot(txid, $2::pg_snapshot)"
						 "   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)"
						 " ORDER BY txid, msg_offset LIMIT $5)", tbl);
	}
	appendStringInfoString(&q, ") m ORDER BY m.txid, m.msg_offset LIMIT $5) m) w"
						   " WHERE w.upto - w.len < $6 ORDER BY w.txid, w.msg_offset");
	return q.data;
}

/*
 * The read must be the ordered index scans read_query() spells out: with no
 * statistics yet on a freshly filled slot (or skewed ones), the planner may
 * prefer a bitmap scan and a sort of the whole range, paid on every batch.
 * Returns the GUC nest level to restore.
 */
static int
force_ordered_scans(void)
{
	int			nest = NewGUCNestLevel();
	static const char *const off[] = {"enable_seqscan", "enable_bitmapscan", "enable_sort"};
	int			i;

	for (i = 0; i < lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

static char *
spi_text(int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? NULL : TextDatumGetCString(d);
}

/* Where a read of the queue ended, for its commit. */
typedef struct QueuePosition
{
	bool		new_range;		/* the read started a new snapshot range */
	char	   *lo;				/* the range read: (lo, hi] */
	char	   *hi;
	char	   *last_txid;		/* the last message read, or where the range began */
	int64		last_offset;
	bool		exhausted;		/* nothing of the range is left */
	int			partitions;
	int64	   *part_max;		/* per partition: the highest offset read */
	int64	   *part_count;		/* and how many messages */
} QueuePosition;

/*
 * Lock the subscription (skipping it when another session holds it) and
 * read the next messages of its range, a new range (up to the current
 * snapshot) when the last one is done.
 */
static ConsumeStatus
queue_read(void *arg, const char *group, const char *topic, int limit, int64 max_bytes,
		   SourceRead *read)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[6];
	bool		isnull;
	QueuePosition *pos = palloc0(sizeof(QueuePosition));
	Oid			topic_id;
	int			ret;
	uint64		nrows;
	uint64		i;
	SPITupleTable *rows;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("consuming a topic needs READ COMMITTED isolation"),
				 errdetail("A transaction snapshot older than the consumer's position could skip messages.")));
	args[0] = CStringGetTextDatum(group);
	args[1] = CStringGetTextDatum(topic);
	ret = SPI_execute_with_args("SELECT s.snap_lo::text, s.snap_hi::text, s.last_txid::text,"
								"       s.last_offset, s.attribute, t.topic_id, t.partitions, s.enabled"
								"  FROM propensity.subscriptions s JOIN propensity.topics t ON t.topic = s.topic"
								" WHERE s.consumer_group = $1 AND s.topic = $2"
								" FOR NO KEY UPDATE OF s SKIP LOCKED",
								2, types, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "subscription lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		ret = SPI_execute_with_args("SELECT 1 FROM propensity.subscriptions"
									" WHERE consumer_group = $1 AND topic = $2",
									2, types, args, NULL, true, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("consumer group \"%s\" has no subscription to topic \"%s\"", group, topic),
					 errhint("Subscribe it with propensity.subscribe().")));
		return CONSUME_BUSY;
	}
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull)))
		return CONSUME_PAUSED;
	pos->lo = spi_text(1, &isnull);
	pos->hi = spi_text(2, &isnull);
	pos->last_txid = spi_text(3, &isnull);
	pos->last_offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	if (isnull)
		pos->last_offset = -1;
	read->attribute = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	topic_id = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	pos->partitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));

	pos->new_range = (pos->hi == NULL);
	if (pos->new_range)
	{
		/* taken before the read, so the read's snapshot sees all it shows */
		ret = SPI_execute("SELECT pg_current_snapshot()::text", false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "snapshot failed");
		pos->hi = spi_text(1, &isnull);
		pos->last_txid = pstrdup("0");
		pos->last_offset = -1;
	}
	if (pos->last_txid == NULL)
		pos->last_txid = pstrdup("0");

	args[0] = CStringGetTextDatum(pos->lo);
	args[1] = CStringGetTextDatum(pos->hi);
	args[2] = CStringGetTextDatum(pos->last_txid);
	args[3] = Int64GetDatum(pos->last_offset);
	args[4] = Int32GetDatum(limit);
	args[5] = Int64GetDatum(max_bytes);
	{
		char	   *sql = read_query(topic_id);
		int			gucs = force_ordered_scans();
		Oid			rtypes[6] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID, INT8OID};

		ret = SPI_execute_with_args(sql, 6, rtypes, args, NULL, false, 0);
		AtEOXact_GUC(true, gucs);
	}
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "queue read failed: %s", SPI_result_code_string(ret));
	rows = SPI_tuptable;
	nrows = SPI_processed;
	/* a batch that ended at the byte bound is no sign that the range has */
	pos->exhausted = nrows < (uint64) limit &&
		(nrows == 0 ||
		 DatumGetInt64(SPI_getbinval(rows->vals[nrows - 1], rows->tupdesc, 6, &isnull)) < max_bytes);

	pos->part_max = palloc(sizeof(int64) * pos->partitions);
	pos->part_count = palloc0(sizeof(int64) * pos->partitions);
	for (i = 0; i < (uint64) pos->partitions; i++)
		pos->part_max[i] = -1;
	read->msgs = palloc(sizeof(SourceMessage) * Max(nrows, 1));
	read->n = (int) nrows;
	read->position = pos;
	for (i = 0; i < nrows; i++)
	{
		HeapTuple	tup = rows->vals[i];
		TupleDesc	td = rows->tupdesc;
		SourceMessage *m = &read->msgs[i];

		/* key and value point into the read's tuple table, which lives until SPI_finish */
		m->partition = DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
		m->offset = DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull));
		m->key = SPI_getbinval(tup, td, 4, &m->key_null);
		m->value = SPI_getbinval(tup, td, 5, &isnull);
		if (i == nrows - 1)
		{
			pos->last_txid = SPI_getvalue(tup, td, 1);
			pos->last_offset = m->offset;
		}
		if (m->partition >= 0 && m->partition < pos->partitions)
		{
			pos->part_max[m->partition] = Max(pos->part_max[m->partition], m->offset);
			pos->part_count[m->partition]++;
		}
	}
	return CONSUME_OK;
}

/* The per-partition offsets a batch read, into consumer_offsets. */
static void
commit_offsets(const char *group, const char *topic, const QueuePosition *pos)
{
	Datum	   *pd = palloc(sizeof(Datum) * pos->partitions);
	Datum	   *md = palloc(sizeof(Datum) * pos->partitions);
	Datum	   *cd = palloc(sizeof(Datum) * pos->partitions);
	Oid			otypes[5] = {TEXTOID, TEXTOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	Datum		oargs[5];
	int			np = 0;
	int			p;
	int			ret;

	for (p = 0; p < pos->partitions; p++)
		if (pos->part_count[p] > 0)
		{
			pd[np] = Int32GetDatum(p);
			md[np] = Int64GetDatum(pos->part_max[p]);
			cd[np] = Int64GetDatum(pos->part_count[p]);
			np++;
		}
	if (np == 0)
		return;
	oargs[0] = CStringGetTextDatum(group);
	oargs[1] = CStringGetTextDatum(topic);
	oargs[2] = prop_array_datum(pd, NULL, np, INT4OID);
	oargs[3] = prop_array_datum(md, NULL, np, INT8OID);
	oargs[4] = prop_array_datum(cd, NULL, np, INT8OID);
	ret = SPI_execute_with_args(
								"INSERT INTO propensity.consumer_offsets AS c"
								" (consumer_group, topic, partition, committed_offset, messages, committed_at)"
								" SELECT $1, $2, u.p, u.o, u.n, clock_timestamp()"
								"   FROM unnest($3, $4, $5) AS u(p, o, n)"
								" ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET"
								"   committed_offset = greatest(c.committed_offset, EXCLUDED.committed_offset),"
								"   messages = c.messages + EXCLUDED.messages,"
								"   committed_at = EXCLUDED.committed_at",
								5, otypes, oargs, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "offset commit failed: %s", SPI_result_code_string(ret));
}

/*
 * The subscription's position after a batch: past the range when it is
 * exhausted, else at the last message read; its counters; and the
 * per-partition offsets.
 */
static void
queue_commit(void *arg, const char *group, const char *topic, const SourceRead *read,
			 const ConsumeResult *res)
{
	const QueuePosition *pos = read->position;
	Oid			utypes[8] = {TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		uargs[8];
	int			ret;

	uargs[0] = CStringGetTextDatum(group);
	uargs[1] = CStringGetTextDatum(topic);
	if (read->n == 0 && pos->new_range)
	{
		/* nothing new: move the position only if the snapshot moved */
		if (strcmp(pos->lo, pos->hi) != 0)
		{
			uargs[2] = CStringGetTextDatum(pos->hi);
			SPI_execute_with_args("UPDATE propensity.subscriptions SET snap_lo = $3::pg_snapshot"
								  " WHERE consumer_group = $1 AND topic = $2",
								  3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID}, uargs, NULL, false, 0);
		}
		return;
	}
	uargs[2] = BoolGetDatum(pos->exhausted);
	uargs[3] = CStringGetTextDatum(pos->hi);
	uargs[4] = CStringGetTextDatum(pos->last_txid);
	uargs[5] = Int64GetDatum(pos->last_offset);
	uargs[6] = Int64GetDatum((int64) read->n);
	uargs[7] = Int64GetDatum(res->dead_letters);
	ret = SPI_execute_with_args(
								"UPDATE propensity.subscriptions SET"
								"  snap_lo = CASE WHEN $3 THEN $4::pg_snapshot ELSE snap_lo END,"
								"  snap_hi = CASE WHEN $3 THEN NULL ELSE $4::pg_snapshot END,"
								"  last_txid = CASE WHEN $3 THEN NULL ELSE $5::xid8 END,"
								"  last_offset = CASE WHEN $3 THEN NULL ELSE $6 END,"
								"  messages = messages + $7, dead_letters = dead_letters + $8,"
								"  batches = batches + 1,"
								"  last_error = CASE WHEN $7 > 0 THEN NULL ELSE last_error END,"
								"  rate = CASE WHEN last_batch_at IS NULL THEN NULL"
								"              ELSE 0.7 * coalesce(rate, $7 / greatest(extract(epoch FROM clock_timestamp() - last_batch_at)::float8, 0.001))"
								"                 + 0.3 * ($7 / greatest(extract(epoch FROM clock_timestamp() - last_batch_at)::float8, 0.001)) END,"
								"  last_batch_at = clock_timestamp()"
								" WHERE consumer_group = $1 AND topic = $2",
								8, utypes, uargs, NULL, false, 0);
	if (ret != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "subscription update failed: %s", SPI_result_code_string(ret));
	commit_offsets(group, topic, pos);
}

static const Source queue_source = {"queue", queue_read, queue_commit, NULL};

ConsumeStatus
prop_consume_batch(const char *group, const char *topic, int limit, bool isolate,
				   ConsumeResult *res)
{
	return prop_source_consume(&queue_source, group, topic, limit,
							   (int64) propensity_batch_bytes * 1024, isolate, res);
}

/* Note a batch's failure on its subscription, in the caller's (fresh) transaction. */
void
prop_record_error(const char *group, const char *topic, const char *message)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	int			nest = prop_pin_search_path();

	SPI_connect();
	args[0] = CStringGetTextDatum(group);
	args[1] = CStringGetTextDatum(topic);
	args[2] = CStringGetTextDatum(message);
	SPI_execute_with_args("UPDATE propensity.subscriptions SET last_error = $3, last_error_at = now()"
						  " WHERE consumer_group = $1 AND topic = $2", 3, types, args, NULL, false, 0);
	SPI_finish();
	prop_restore_search_path(nest);
}

/* consume(topic, group, max_messages) -> (messages, events, dead_letters) */
PG_FUNCTION_INFO_V1(propensity_consume);
Datum
propensity_consume(PG_FUNCTION_ARGS)
{
	char	   *topic;
	char	   *group;
	int			limit = propensity_batch_size;
	ConsumeResult res;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("topic and consumer group must not be null")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	group = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
	{
		limit = PG_GETARG_INT32(2);
		if (limit < 1)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("max_messages must be at least 1, not %d", limit)));
	}
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "consume() must return a record");
	prop_consume_batch(group, topic, limit, false, &res);
	values[0] = Int64GetDatum(res.messages);
	values[1] = Int64GetDatum(res.events);
	values[2] = Int64GetDatum(res.dead_letters);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

