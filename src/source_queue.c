/*
 * source_queue.c - the embedded queue as a source: one consumer batch in
 * the caller's transaction: read the next messages of a group's snapshot
 * range, decode them, hand the events to the ingest pipeline (ingest.c),
 * dead-letter what cannot be stored, and move the group's position and
 * per-partition offsets.  Everything commits together or not at all, so a
 * message is consumed exactly once.  Also consume() and
 * replay_dead_letters().
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

#include "crash_guard.h"
#include "decode.h"
#include "ingest.h"
#include "source_queue.h"
#include "store.h"
#include "util.h"

int			propensity_batch_size = 10000;
int			propensity_batch_bytes = 64 * 1024;	/* kB */

void
prop_source_queue_init(void)
{
	DefineCustomIntVariable("propensity.batch_size",
							"Messages the ingest worker consumes per transaction.",
							NULL, &propensity_batch_size, 10000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.batch_bytes",
							"Message bytes the ingest worker consumes per transaction.",
							"A batch ends at propensity.batch_size messages or at this many bytes of messages, whichever comes first (at least one message).",
							&propensity_batch_bytes, 64 * 1024, 64, MAX_KILOBYTES,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
}

/* dead letters up to this many bytes go in with one statement */
#define DEAD_LETTER_CHUNK (1024 * 1024)

/* Accumulates the events and dead letters of one batch. */
typedef struct Batch
{
	const char *group;			/* NULL: not from a subscription (replay) */
	const char *topic;
	Oid			rowtype;
	TupleDesc	desc;
	EventRow   *events;
	int			nevents;
	int			cap;
	/* dead letters */
	Datum	   *dl_part;
	Datum	   *dl_off;
	Datum	   *dl_key;
	bool	   *dl_key_null;
	Datum	   *dl_value;
	Datum	   *dl_error;
	int			ndead;
	int			dcap;
} Batch;

static void
batch_init(Batch *b, int cap)
{
	memset(b, 0, sizeof(*b));
	b->rowtype = prop_events_rowtype();
	b->desc = lookup_rowtype_tupdesc_copy(b->rowtype, -1);
	prop_check_events_rowtype(b->desc);
	b->cap = Max(cap, 1);
	b->events = palloc(sizeof(EventRow) * b->cap);
	b->dcap = 16;
	b->dl_part = palloc(sizeof(Datum) * b->dcap);
	b->dl_off = palloc(sizeof(Datum) * b->dcap);
	b->dl_key = palloc(sizeof(Datum) * b->dcap);
	b->dl_key_null = palloc(sizeof(bool) * b->dcap);
	b->dl_value = palloc(sizeof(Datum) * b->dcap);
	b->dl_error = palloc(sizeof(Datum) * b->dcap);
}

static void
batch_dead(Batch *b, int32 part, int64 off, Datum key, bool key_null, Datum value, const char *error)
{
	if (b->ndead == b->dcap)
	{
		b->dcap *= 2;
		b->dl_part = repalloc(b->dl_part, sizeof(Datum) * b->dcap);
		b->dl_off = repalloc(b->dl_off, sizeof(Datum) * b->dcap);
		b->dl_key = repalloc(b->dl_key, sizeof(Datum) * b->dcap);
		b->dl_key_null = repalloc(b->dl_key_null, sizeof(bool) * b->dcap);
		b->dl_value = repalloc(b->dl_value, sizeof(Datum) * b->dcap);
		b->dl_error = repalloc(b->dl_error, sizeof(Datum) * b->dcap);
	}
	b->dl_part[b->ndead] = Int32GetDatum(part);
	b->dl_off[b->ndead] = Int64GetDatum(off);
	b->dl_key[b->ndead] = key;
	b->dl_key_null[b->ndead] = key_null;
	b->dl_value[b->ndead] = value;
	b->dl_error[b->ndead] = CStringGetTextDatum(error);
	b->ndead++;
}

/* the size of a message as stored, without detoasting it */
static Size
raw_size(Datum d)
{
	return toast_raw_datum_size(d) - VARHDRSZ;
}

/*
 * Decode one message into the batch, or dead-letter it.  The message is
 * copied out of storage once, for decoding, and that copy is freed; a dead
 * letter keeps the stored (toasted) value, and one over
 * propensity.max_message_size is not even read.
 */
static bool
batch_add(Batch *b, int32 part, int64 off, Datum key, bool key_null, Datum value)
{
	bytea	   *v;
	char		err[DECODE_ERR_LEN];
	Size		size = raw_size(value);
	bool		ok;

	if (b->nevents == b->cap)
	{
		b->cap *= 2;
		b->events = repalloc(b->events, sizeof(EventRow) * b->cap);
	}
	if (size > (Size) propensity_max_message_size)
	{
		snprintf(err, sizeof(err), "message of %zu bytes exceeds propensity.max_message_size (%d bytes)",
				 (size_t) size, propensity_max_message_size);
		batch_dead(b, part, off, key, key_null, value, err);
		return false;
	}
	if (b->group != NULL && prop_guard_poisoned(b->group, b->topic, part, off))
	{
		batch_dead(b, part, off, key, key_null, value,
				   "the worker's process died while decoding this message (a crash, or memory running out); it is not decoded again");
		return false;
	}
	v = DatumGetByteaPP(value);
	if (b->group != NULL)
		prop_guard_enter(b->group, b->topic, part, off);
	ok = prop_decode_message(VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), b->events[b->nevents].values,
							 b->events[b->nevents].nulls, err);
	if (b->group != NULL)
		prop_guard_leave();
	if ((Pointer) v != DatumGetPointer(value))
		pfree(v);
	if (!ok)
	{
		batch_dead(b, part, off, key, key_null, value, err);
		return false;
	}
	b->nevents++;
	return true;
}

/*
 * The batch's dead letters, in chunks of up to DEAD_LETTER_CHUNK bytes per
 * statement (an array holds its values detoasted), so that memory stays
 * within the chunk and one large message plus its own copy.
 */
static void
write_dead_letters(Batch *b, const char *group, const char *topic)
{
	Oid			types[7] = {TEXTOID, TEXTOID, INT4ARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	BYTEAARRAYOID, TEXTARRAYOID};
	Datum		args[7];
	int			from = 0;
	MemoryContext chunk_cxt;
	MemoryContext oldcxt;

	if (b->ndead == 0)
		return;
	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "dead letters", ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(chunk_cxt);
	args[0] = CStringGetTextDatum(group);
	args[1] = CStringGetTextDatum(topic);
	while (from < b->ndead)
	{
		Size		bytes = 0;
		int			to = from;
		int			ret;

		while (to < b->ndead && (to == from || bytes < DEAD_LETTER_CHUNK))
		{
			bytes += raw_size(b->dl_value[to]) + (b->dl_key_null[to] ? 0 : raw_size(b->dl_key[to]));
			to++;
		}
		args[2] = prop_array_datum(b->dl_part + from, NULL, to - from, INT4OID);
		args[3] = prop_array_datum(b->dl_off + from, NULL, to - from, INT8OID);
		args[4] = prop_array_datum(b->dl_key + from, b->dl_key_null + from, to - from, TEXTOID);
		args[5] = prop_array_datum(b->dl_value + from, NULL, to - from, BYTEAOID);
		args[6] = prop_array_datum(b->dl_error + from, NULL, to - from, TEXTOID);
		ret = SPI_execute_with_args("INSERT INTO propensity.dead_letters"
									" (consumer_group, topic, partition, msg_offset, key, value, error)"
									" SELECT $1, $2, d.p, d.o, d.k, d.v, d.e"
									"   FROM unnest($3, $4, $5, $6, $7) AS d(p, o, k, v, e)"
									" ON CONFLICT (consumer_group, topic, msg_offset) DO NOTHING",
									7, types, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "dead letter insert failed: %s", SPI_result_code_string(ret));
		from = to;
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(chunk_cxt);
		MemoryContextSwitchTo(chunk_cxt);
		args[0] = CStringGetTextDatum(group);
		args[1] = CStringGetTextDatum(topic);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(chunk_cxt);
}

typedef struct StoreCall
{
	Batch	   *b;
	bool		attribute;
	int64	   *out;
} StoreCall;

static void
store_call(void *arg)
{
	StoreCall  *c = arg;

	prop_ingest_rows(c->b->events, c->b->nevents, c->b->rowtype, c->attribute, c->out);
}

/*
 * Store the batch's events.  With isolate, inside a subtransaction: if
 * storing fails, the messages become dead letters with the error instead
 * of failing the batch.
 */
static void
store_events(Batch *b, bool attribute, bool isolate, const int32 *parts, const int64 *offs,
			 const Datum *keys, const bool *key_nulls, const Datum *vals, int64 *out)
{
	StoreCall	c = {b, attribute, out};
	ErrorData  *edata;
	int			i;

	memset(out, 0, sizeof(int64) * 5);
	if (b->nevents == 0)
		return;
	if (!isolate)
	{
		store_call(&c);
		return;
	}
	if (!prop_subxact_try(store_call, &c, &edata))
	{
		char		msg[DECODE_ERR_LEN];

		snprintf(msg, sizeof(msg), "cannot store: %s", edata->message);
		FreeErrorData(edata);
		for (i = 0; i < b->nevents; i++)
			batch_dead(b, parts[i], offs[i], keys[i], key_nulls[i], vals[i], msg);
		b->nevents = 0;
		memset(out, 0, sizeof(int64) * 5);
	}
}

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

ConsumeStatus
prop_consume_batch(const char *group, const char *topic, int limit, bool isolate,
				   ConsumeResult *res)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, INT8OID, INT4OID};
	Datum		args[6];
	int64		max_bytes = (int64) propensity_batch_bytes * 1024;
	bool		isnull;
	char	   *lo;
	char	   *hi;
	char	   *last_txid;
	int64		last_offset;
	bool		attribute;
	Oid			topic_id;
	int			partitions;
	bool		new_range;
	int			ret;
	uint64		nrows;
	uint64		i;
	Batch		b;
	int32	   *parts;
	int64	   *offs;
	Datum	   *keys;
	bool	   *key_nulls;
	Datum	   *vals;
	int64	   *part_max;
	int64	   *part_count;
	int64		ingest_out[5];
	bool		exhausted;
	SPITupleTable *rows;
	int			nest;

	memset(res, 0, sizeof(*res));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("consuming a topic needs READ COMMITTED isolation"),
				 errdetail("A transaction snapshot older than the consumer's position could skip messages.")));
	nest = prop_pin_search_path();
	SPI_connect();

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
		SPI_finish();
		prop_restore_search_path(nest);
		return CONSUME_BUSY;
	}
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull)))
	{
		SPI_finish();
		prop_restore_search_path(nest);
		return CONSUME_PAUSED;
	}
	lo = spi_text(1, &isnull);
	hi = spi_text(2, &isnull);
	last_txid = spi_text(3, &isnull);
	last_offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	if (isnull)
		last_offset = -1;
	attribute = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	topic_id = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	partitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));

	new_range = (hi == NULL);
	if (new_range)
	{
		/* taken before the read, so the read's snapshot sees all it shows */
		ret = SPI_execute("SELECT pg_current_snapshot()::text", false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "snapshot failed");
		hi = spi_text(1, &isnull);
		last_txid = pstrdup("0");
		last_offset = -1;
	}
	if (last_txid == NULL)
		last_txid = pstrdup("0");

	args[0] = CStringGetTextDatum(lo);
	args[1] = CStringGetTextDatum(hi);
	args[2] = CStringGetTextDatum(last_txid);
	args[3] = Int64GetDatum(last_offset);
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
	exhausted = nrows < (uint64) limit &&
		(nrows == 0 ||
		 DatumGetInt64(SPI_getbinval(rows->vals[nrows - 1], rows->tupdesc, 6, &isnull)) < max_bytes);

	if (nrows == 0 && new_range)
	{
		/* nothing new: move the position only if the snapshot moved */
		if (strcmp(lo, hi) != 0)
		{
			args[0] = CStringGetTextDatum(group);
			args[1] = CStringGetTextDatum(topic);
			args[2] = CStringGetTextDatum(hi);
			SPI_execute_with_args("UPDATE propensity.subscriptions SET snap_lo = $3::pg_snapshot"
								  " WHERE consumer_group = $1 AND topic = $2",
								  3, types, args, NULL, false, 0);
		}
		SPI_finish();
		prop_restore_search_path(nest);
		return CONSUME_OK;
	}

	batch_init(&b, (int) Min(nrows, (uint64) 100000));
	b.group = group;
	b.topic = topic;
	parts = palloc(sizeof(int32) * Max(nrows, 1));
	offs = palloc(sizeof(int64) * Max(nrows, 1));
	keys = palloc(sizeof(Datum) * Max(nrows, 1));
	key_nulls = palloc(sizeof(bool) * Max(nrows, 1));
	vals = palloc(sizeof(Datum) * Max(nrows, 1));
	part_max = palloc(sizeof(int64) * partitions);
	part_count = palloc0(sizeof(int64) * partitions);
	for (i = 0; i < (uint64) partitions; i++)
		part_max[i] = -1;
	for (i = 0; i < nrows; i++)
	{
		HeapTuple	tup = rows->vals[i];
		TupleDesc	td = rows->tupdesc;
		int32		p = DatumGetInt32(SPI_getbinval(tup, td, 3, &isnull));
		int64		o = DatumGetInt64(SPI_getbinval(tup, td, 2, &isnull));
		Datum		k = SPI_getbinval(tup, td, 4, &key_nulls[b.nevents]);
		Datum		v = SPI_getbinval(tup, td, 5, &isnull);
		int			slot = b.nevents;

		if (i == nrows - 1)
		{
			last_txid = SPI_getvalue(tup, td, 1);
			last_offset = o;
		}
		if (p >= 0 && p < partitions)
		{
			part_max[p] = Max(part_max[p], o);
			part_count[p]++;
		}
		/* k and v point into the read's tuple table, which lives until SPI_finish */
		if (batch_add(&b, p, o, k, key_nulls[slot], v))
		{
			parts[slot] = p;
			offs[slot] = o;
			keys[slot] = k;
			vals[slot] = v;
		}
	}
	res->messages = (int64) nrows;

	store_events(&b, attribute, isolate, parts, offs, keys, key_nulls, vals, ingest_out);
	res->events = ingest_out[0];
	res->duplicates = ingest_out[1];
	res->deltas = ingest_out[4];
	write_dead_letters(&b, group, topic);
	res->dead_letters = b.ndead;

	/* the position and offsets, in the same transaction as the rows */
	{
		Oid			utypes[9] = {TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID,
		INT4ARRAYOID};
		Datum		uargs[9];
		Datum	   *pd = palloc(sizeof(Datum) * partitions);
		Datum	   *md = palloc(sizeof(Datum) * partitions);
		Datum	   *cd = palloc(sizeof(Datum) * partitions);
		int			np = 0;
		int			p;

		uargs[0] = CStringGetTextDatum(group);
		uargs[1] = CStringGetTextDatum(topic);
		uargs[2] = BoolGetDatum(exhausted);
		uargs[3] = CStringGetTextDatum(hi);
		uargs[4] = CStringGetTextDatum(last_txid);
		uargs[5] = Int64GetDatum(last_offset);
		uargs[6] = Int64GetDatum((int64) nrows);
		uargs[7] = Int64GetDatum((int64) b.ndead);
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

		for (p = 0; p < partitions; p++)
			if (part_count[p] > 0)
			{
				pd[np] = Int32GetDatum(p);
				md[np] = Int64GetDatum(part_max[p]);
				cd[np] = Int64GetDatum(part_count[p]);
				np++;
			}
		if (np > 0)
		{
			Oid			otypes[5] = {TEXTOID, TEXTOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
			Datum		oargs[5];

			oargs[0] = uargs[0];
			oargs[1] = uargs[1];
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
	}
	SPI_finish();
	prop_restore_search_path(nest);
	return CONSUME_OK;
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

typedef struct ReplayCall
{
	Batch	   *b;
	int			from;
	int			n;
	bool		attribute;
} ReplayCall;

static void
replay_call(void *arg)
{
	ReplayCall *c = arg;
	int64		out[5];

	prop_ingest_rows(c->b->events + c->from, c->n, c->b->rowtype, c->attribute, out);
}

/*
 * Store a replay chunk's decoded events, the whole batch in one
 * subtransaction, or, if that fails, one event per subtransaction, so that
 * an event that cannot be stored fails alone.  ids[i] is the dead letter
 * of event i; those stored go to ok_ids, the others with their error to
 * bad_ids and bad_err.
 */
static void
replay_store(Batch *b, bool attribute, const Datum *ids, Datum *ok_ids, int *nok,
			 Datum *bad_ids, Datum *bad_err, int *nbad)
{
	ReplayCall	c = {b, 0, b->nevents, attribute};
	ErrorData  *edata;
	int			i;

	if (b->nevents == 0)
		return;
	if (prop_subxact_try(replay_call, &c, NULL))
	{
		for (i = 0; i < b->nevents; i++)
			ok_ids[(*nok)++] = ids[i];
		return;
	}
	for (i = 0; i < b->nevents; i++)
	{
		c.from = i;
		c.n = 1;
		CHECK_FOR_INTERRUPTS();
		if (prop_subxact_try(replay_call, &c, &edata))
			ok_ids[(*nok)++] = ids[i];
		else
		{
			bad_ids[*nbad] = ids[i];
			bad_err[*nbad] = CStringGetTextDatum(psprintf("cannot store: %s", edata->message));
			(*nbad)++;
			FreeErrorData(edata);
		}
	}
}

/*
 * replay_dead_letters(topic, group) -> (replayed, failed): decode the dead
 * letters not yet replayed again; store those that now decode (with the
 * subscription's attribution setting) and mark them replayed; record the
 * new error of the others, a message that decodes but cannot be stored
 * among them.  In chunks, so memory stays bounded.
 */
PG_FUNCTION_INFO_V1(propensity_replay_dead_letters);
Datum
propensity_replay_dead_letters(PG_FUNCTION_ARGS)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		args[3];
	char		argnulls[3] = {' ', ' ', ' '};
	int64		last_id = 0;
	int64		replayed = 0;
	int64		failed = 0;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	MemoryContext chunk_cxt;
	MemoryContext oldcxt;
	int			nest;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "replay_dead_letters() must return a record");
	args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	argnulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
	argnulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "replay chunk", ALLOCSET_DEFAULT_SIZES);
	nest = prop_pin_search_path();
	SPI_connect();
	for (;;)
	{
		uint64		n;
		uint64		i;
		Batch		b[2];		/* without and with attribution */
		Datum	   *ids[2];		/* the dead letter of each event of b[k] */
		Datum	   *ok_ids;
		Datum	   *bad_ids;
		Datum	   *bad_err;
		int			nok = 0;
		int			nbad = 0;
		int			k;
		SPITupleTable *rows;

		args[2] = Int64GetDatum(last_id);
		if (SPI_execute_with_args("SELECT d.dead_letter_id, d.value, coalesce(s.attribute, true)"
								  "  FROM propensity.dead_letters d"
								  "  LEFT JOIN propensity.subscriptions s"
								  "    ON s.consumer_group = d.consumer_group AND s.topic = d.topic"
								  " WHERE d.replayed_at IS NULL AND d.dead_letter_id > $3"
								  "   AND ($1 IS NULL OR d.topic = $1) AND ($2 IS NULL OR d.consumer_group = $2)"
								  " ORDER BY d.dead_letter_id LIMIT 1000 FOR UPDATE OF d",
								  3, types, args, argnulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "dead letter read failed");
		n = SPI_processed;
		if (n == 0)
			break;
		rows = SPI_tuptable;
		oldcxt = MemoryContextSwitchTo(chunk_cxt);
		for (k = 0; k < 2; k++)
		{
			batch_init(&b[k], (int) n);
			ids[k] = palloc(sizeof(Datum) * n);
		}
		ok_ids = palloc(sizeof(Datum) * n);
		bad_ids = palloc(sizeof(Datum) * n);
		bad_err = palloc(sizeof(Datum) * n);
		for (i = 0; i < n; i++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			Datum		v = SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull);
			bool		attr = DatumGetBool(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));
			Batch	   *bb = &b[attr ? 1 : 0];

			last_id = id;
			if (batch_add(bb, 0, id, (Datum) 0, true, v))
				ids[attr ? 1 : 0][bb->nevents - 1] = Int64GetDatum(id);
			else
			{
				bad_ids[nbad] = Int64GetDatum(id);
				bad_err[nbad] = bb->dl_error[bb->ndead - 1];
				nbad++;
			}
		}
		for (k = 0; k < 2; k++)
			replay_store(&b[k], k == 1, ids[k], ok_ids, &nok, bad_ids, bad_err, &nbad);
		if (nok > 0)
		{
			Oid			t1 = INT8ARRAYOID;
			Datum		a1 = prop_array_datum(ok_ids, NULL, nok, INT8OID);

			SPI_execute_with_args("UPDATE propensity.dead_letters SET replayed_at = now(), replay_error = NULL"
								  " WHERE dead_letter_id = ANY ($1)", 1, &t1, &a1, NULL, false, 0);
		}
		if (nbad > 0)
		{
			Oid			t2[2] = {INT8ARRAYOID, TEXTARRAYOID};
			Datum		a2[2];

			a2[0] = prop_array_datum(bad_ids, NULL, nbad, INT8OID);
			a2[1] = prop_array_datum(bad_err, NULL, nbad, TEXTOID);
			SPI_execute_with_args("UPDATE propensity.dead_letters d SET replay_error = u.e"
								  "  FROM unnest($1, $2) AS u(id, e) WHERE d.dead_letter_id = u.id",
								  2, t2, a2, NULL, false, 0);
		}
		replayed += nok;
		failed += nbad;
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(chunk_cxt);
		SPI_freetuptable(rows);
	}
	SPI_finish();
	prop_restore_search_path(nest);
	values[0] = Int64GetDatum(replayed);
	values[1] = Int64GetDatum(failed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
