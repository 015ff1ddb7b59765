/*
 * source.c - what every source does with a batch of messages, between its
 * read and its commit (source.h): decode each message, store the events
 * through the ingest pipeline, dead-letter what cannot be decoded or
 * stored.  Also replay_dead_letters(), which decodes and stores dead
 * letters again, message by message.
 */
#include "postgres.h"

#include "utils/guc.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "crash_guard.h"
#include "decode.h"
#include "ingest.h"
#include "source.h"
#include "store.h"
#include "util.h"

int			propensity_batch_size = 10000;
int			propensity_batch_bytes = 64 * 1024;	/* kB */

void
prop_source_init(void)
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
typedef struct MessageBatch
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
} MessageBatch;

static void
batch_init(MessageBatch *b, int cap)
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
batch_dead(MessageBatch *b, int32 part, int64 off, Datum key, bool key_null, Datum value, const char *error)
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
batch_add(MessageBatch *b, int32 part, int64 off, Datum key, bool key_null, Datum value)
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
write_dead_letters(MessageBatch *b, const char *group, const char *topic)
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
									" ON CONFLICT DO NOTHING",
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
	MessageBatch	   *b;
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
 * of failing the batch.  msg_of[i] is the message of event i.
 */
static void
store_events(MessageBatch *b, bool attribute, bool isolate, const SourceMessage *msgs,
			 const int *msg_of, int64 *out)
{
	StoreCall	c = {b, attribute, out};
	ErrorData  *edata;
	int			i;

	memset(out, 0, sizeof(int64) * INGEST_NOUT);
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
		{
			const SourceMessage *m = &msgs[msg_of[i]];

			batch_dead(b, m->partition, m->offset, m->key, m->key_null, m->value, msg);
		}
		b->nevents = 0;
		memset(out, 0, sizeof(int64) * INGEST_NOUT);
	}
}

/* Decode, store and dead-letter the messages of a read (SPI connected). */
static void
ingest_messages(const char *group, const char *topic, const SourceRead *read, bool isolate,
				ConsumeResult *res)
{
	MessageBatch b;
	int		   *msg_of = palloc(sizeof(int) * Max(read->n, 1));
	int64		out[INGEST_NOUT];
	int			i;

	batch_init(&b, Min(read->n, 100000));
	b.group = group;
	b.topic = topic;
	for (i = 0; i < read->n; i++)
	{
		const SourceMessage *m = &read->msgs[i];
		int			slot = b.nevents;

		if (batch_add(&b, m->partition, m->offset, m->key, m->key_null, m->value))
			msg_of[slot] = i;
	}
	res->messages = read->n;
	store_events(&b, read->attribute, isolate, read->msgs, msg_of, out);
	res->events = out[INGEST_INSERTED];
	res->duplicates = out[INGEST_DUPLICATES];
	res->deltas = out[INGEST_DELTAS];
	write_dead_letters(&b, group, topic);
	res->dead_letters = b.ndead;
}

ConsumeStatus
prop_source_consume(const Source *src, const char *group, const char *topic, int limit,
					int64 max_bytes, bool isolate, ConsumeResult *res)
{
	SourceRead	read;
	ConsumeStatus st;
	int			nest;

	memset(res, 0, sizeof(*res));
	memset(&read, 0, sizeof(read));
	nest = prop_pin_search_path();
	SPI_connect();
	st = src->read(src->arg, group, topic, limit, max_bytes, &read);
	if (st == CONSUME_OK)
	{
		if (topic == NULL)
			topic = read.topic;
		Assert(topic != NULL);
		if (read.n > 0)
			ingest_messages(group, topic, &read, isolate, res);
		/* the position, in the same transaction as the rows */
		src->commit(src->arg, group, topic, &read, res);
	}
	SPI_finish();
	prop_restore_search_path(nest);
	return st;
}

typedef struct ReplayCall
{
	MessageBatch	   *b;
	int			from;
	int			n;
	bool		attribute;
} ReplayCall;

static void
replay_call(void *arg)
{
	ReplayCall *c = arg;
	int64		out[INGEST_NOUT];

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
replay_store(MessageBatch *b, bool attribute, const Datum *ids, Datum *ok_ids, int *nok,
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
	bool		kafka;
	bool		kafka_isnull;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "replay_dead_letters() must return a record");
	args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	argnulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
	argnulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "replay chunk", ALLOCSET_DEFAULT_SIZES);
	nest = prop_pin_search_path();
	SPI_connect();
	/* Kafka sources exist from 0.10.0 on; a database still at an older version has none */
	kafka = SPI_execute("SELECT pg_catalog.to_regclass('propensity.kafka_sources') IS NOT NULL", true, 1) == SPI_OK_SELECT &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &kafka_isnull));
	for (;;)
	{
		uint64		n;
		uint64		i;
		MessageBatch		b[2];		/* without and with attribution */
		Datum	   *ids[2];		/* the dead letter of each event of b[k] */
		Datum	   *ok_ids;
		Datum	   *bad_ids;
		Datum	   *bad_err;
		int			nok = 0;
		int			nbad = 0;
		int			k;
		SPITupleTable *rows;

		args[2] = Int64GetDatum(last_id);
		if (SPI_execute_with_args(kafka ?
								  "SELECT d.dead_letter_id, d.value, coalesce(s.attribute, k.attribute, true)"
								  "  FROM propensity.dead_letters d"
								  "  LEFT JOIN propensity.subscriptions s"
								  "    ON s.consumer_group = d.consumer_group AND s.topic = d.topic"
								  "  LEFT JOIN propensity.kafka_sources k"
								  "    ON k.source = d.consumer_group AND k.topic = d.topic"
								  " WHERE d.replayed_at IS NULL AND d.dead_letter_id > $3"
								  "   AND ($1 IS NULL OR d.topic = $1) AND ($2 IS NULL OR d.consumer_group = $2)"
								  " ORDER BY d.dead_letter_id LIMIT 1000 FOR UPDATE OF d" :
								  "SELECT d.dead_letter_id, d.value, coalesce(s.attribute, true)"
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
			MessageBatch	   *bb = &b[attr ? 1 : 0];

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
