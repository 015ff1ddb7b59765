/*
 * decode.c - messages to rows of propensity.events: Avro in the Confluent
 * wire format through the core decoder (src/core/avro_decode.c) with writer
 * schemas from propensity.avro_schemas, or a JSON object for people testing
 * from psql.  Nothing here throws on bad input: a message that cannot become
 * a valid event yields an error text, which the worker dead-letters.
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "decode.h"
#include "schema_registry.h"
#include "util.h"
#include "core/avro_decode.h"
#include "core/event_schema.h"

#define EPOCH_DIFF_MS (INT64CONST(946684800000))	/* 1970 to 2000, in ms */
#define JSON_MAX_DEPTH 16

int			propensity_max_message_values = AVRO_DEFAULT_MAX_VALUES;
int			propensity_max_message_size = 1024 * 1024;	/* bytes */
int			propensity_max_schema_size = 64 * 1024; /* bytes */
int			propensity_schema_cache_size = 16 * 1024;	/* kB */

/*
 * The session's codec: the reader schema and the writer schemas loaded from
 * propensity.avro_schemas, by id.  Ids are the registry's, so the codec is
 * thrown away when the registry changes under it: the table dropped (DROP
 * EXTENSION, after which CREATE EXTENSION hands out the same ids for other
 * schemas), truncated, or rows updated or deleted (its trigger sends the
 * invalidation).  The relcache callback only marks it; it is freed before
 * the next decode, never while one runs.
 */
static AvroCodec *codec = NULL;
static Oid	schemas_relid = InvalidOid;	/* the registry the codec was filled from */
static bool codec_stale = false;
static bool callback_registered = false;

static void
schemas_invalidated(Datum arg, Oid relid)
{
	if (codec != NULL && (relid == InvalidOid || relid == schemas_relid))
		codec_stale = true;
}

/*
 * avro-c asked for memory malloc could not give (the walk has bounded what
 * a message may ask for, so this is the process running out).  avro-c
 * cannot survive a NULL, so the process ends here; in the ingest worker,
 * the message being decoded is dead-lettered when it starts again
 * (crash_guard.c).
 */
static void
avro_out_of_memory(size_t size)
{
	ereport(FATAL,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory while decoding an Avro message"),
			 errdetail("Failed on request of size %zu.", size)));
}

void
prop_decode_init(void)
{
	DefineCustomIntVariable("propensity.max_message_values",
							"Values one Avro message may hold: record fields, array items and map entries, nested ones included.",
							"A message holding more is a dead letter, refused before it is decoded; memory per message stays within about 512 bytes per value.",
							&propensity_max_message_values, AVRO_DEFAULT_MAX_VALUES, 100, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.max_message_size",
							"Largest message the ingest worker decodes.",
							"A larger message is a dead letter, stored once without being decoded.",
							&propensity_max_message_size, 1024 * 1024, 1024, MaxAllocSize / 4,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.max_schema_size",
							"Largest Avro writer schema register_schema() accepts and a decoder loads.",
							NULL,
							&propensity_max_schema_size, 64 * 1024, 1024, 16 * 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("propensity.schema_cache_size",
							"Memory the writer schemas a session has loaded may hold.",
							"Past it, the least recently used are dropped, and loaded again from propensity.avro_schemas when a message needs them.",
							&propensity_schema_cache_size, 16 * 1024, 64, MAX_KILOBYTES,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	avro_set_alloc_failure_handler(avro_out_of_memory);
}

static AvroCodec *
get_codec(void)
{
	char		err[AVRO_ERR_LEN];

	if (codec_stale && codec != NULL)
	{
		avro_codec_free(codec);
		codec = NULL;
		schemas_relid = InvalidOid;
	}
	codec_stale = false;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(schemas_invalidated, (Datum) 0);
		callback_registered = true;
	}
	if (codec == NULL)
	{
		codec = avro_codec_new(event_schema_json, strlen(event_schema_json), err);
		if (codec == NULL)
			elog(ERROR, "propensity reader schema: %s", err);
	}
	return codec;
}

/*
 * Schema `id`, not in the embedded registry, from the schema registry over
 * HTTP when one is configured: loaded into the codec, and kept in
 * propensity.avro_schemas when this role may.  false and an error text
 * that names the id otherwise.
 */
static bool
registry_schema(int32 id, char *err)
{
	char		why[REGISTRY_ERR_LEN];
	char	   *json = NULL;

	switch (prop_registry_fetch(id, (Size) propensity_max_schema_size, &json, why))
	{
		case REGISTRY_NONE:
			snprintf(err, AVRO_ERR_LEN, "unknown schema id %d", id);
			return false;
		case REGISTRY_MISSING:
			snprintf(err, AVRO_ERR_LEN, "unknown schema id %d, in the schema registry too", id);
			return false;
		case REGISTRY_FAILED:
			snprintf(err, AVRO_ERR_LEN, "unknown schema id %d here; %s", id, why);
			return false;
		case REGISTRY_FOUND:
			break;
	}
	if (strlen(json) > (size_t) propensity_max_schema_size)
	{
		snprintf(err, AVRO_ERR_LEN, "schema id %d of the schema registry is larger than propensity.max_schema_size (%d bytes)",
				 id, propensity_max_schema_size);
		return false;
	}
	avro_codec_set_cache_limit(codec, (size_t) propensity_schema_cache_size * 1024);
	if (avro_codec_check_writer(codec, id, json, strlen(json), err) != 0)
	{
		char		tmp[AVRO_ERR_LEN];

		snprintf(tmp, sizeof(tmp), "schema id %d of the schema registry: %s", id, err);
		strlcpy(err, tmp, AVRO_ERR_LEN);
		return false;
	}
	prop_registry_cache(id, json);
	return true;
}

/*
 * Load writer schema `id` from the registry into the codec.  Needs an SPI
 * connection.  false and an error text when it is missing or unusable.
 */
static bool
load_schema(int32 id, char *err)
{
	Datum		arg = Int32GetDatum(id);
	Oid			argtype = INT4OID;
	bool		isnull;
	Datum		d;
	char	   *json;
	int			ret;
	AvroCodec  *c = codec;		/* the caller's, got before the decode it retries */

	Assert(c != NULL);
	if (!OidIsValid(schemas_relid))
		schemas_relid = get_relname_relid("avro_schemas", get_namespace_oid("propensity", true));
	ret = SPI_execute_with_args("SELECT schema FROM propensity.avro_schemas WHERE schema_id = $1",
								1, &argtype, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "schema lookup failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return registry_schema(id, err);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (toast_raw_datum_size(d) - VARHDRSZ > (Size) propensity_max_schema_size)
	{
		snprintf(err, AVRO_ERR_LEN, "schema id %d is larger than propensity.max_schema_size (%d bytes)",
				 id, propensity_max_schema_size);
		return false;
	}
	json = TextDatumGetCString(d);
	avro_codec_set_cache_limit(c, (size_t) propensity_schema_cache_size * 1024);
	if (avro_codec_check_writer(c, id, json, strlen(json), err) != 0)
	{
		char		tmp[AVRO_ERR_LEN];

		snprintf(tmp, sizeof(tmp), "schema id %d: %s", id, err);
		strlcpy(err, tmp, AVRO_ERR_LEN);
		return false;
	}
	return true;
}

/* ---- checks shared by both formats ---- */

/*
 * Identifiers are keys of b-tree indexes (events, attribution, history),
 * whose entries must fit a third of a page; descriptive texts are not.
 */
#define ID_MAX_BYTES 1024
#define TEXT_MAX_BYTES 10000

static bool
text_value(AvroStr s, bool required, const char *name, size_t max_bytes, Datum *value, bool *isnull,
		   char *err)
{
	if (s.ptr == NULL)
	{
		if (required)
		{
			snprintf(err, AVRO_ERR_LEN, "%s is missing", name);
			return false;
		}
		*isnull = true;
		return true;
	}
	if (required && s.len == 0)
	{
		snprintf(err, AVRO_ERR_LEN, "%s is empty", name);
		return false;
	}
	if (s.len > max_bytes)
	{
		snprintf(err, AVRO_ERR_LEN, "%s of %zu bytes is longer than %zu bytes", name, s.len, max_bytes);
		return false;
	}
	if (!pg_verifymbstr(s.ptr, (int) s.len, true))
	{
		snprintf(err, AVRO_ERR_LEN, "%s is not valid UTF-8 text (or contains a zero byte)", name);
		return false;
	}
	*value = PointerGetDatum(cstring_to_text_with_len(s.ptr, (int) s.len));
	*isnull = false;
	return true;
}

static bool
time_value(int64 ms, Datum *value, char *err)
{
	int64		us;

	if (pg_sub_s64_overflow(ms, EPOCH_DIFF_MS, &us) || pg_mul_s64_overflow(us, 1000, &us) ||
		!IS_VALID_TIMESTAMP(us))
	{
		snprintf(err, AVRO_ERR_LEN, "event_time %lld ms is out of range", (long long) ms);
		return false;
	}
	*value = TimestampTzGetDatum((TimestampTz) us);
	return true;
}

/* EventRec -> events row; false and err if a field is not valid */
static bool
rec_to_row(const EventRec *r, Datum *values, bool *nulls, char *err)
{
	int			i;

	for (i = 0; i < EVENT_NATTS; i++)
		nulls[i] = false;
	if (!time_value(r->event_time_ms, &values[EV_TIME], err) ||
		!text_value(r->user_id, true, "user_id", ID_MAX_BYTES, &values[EV_USER], &nulls[EV_USER], err) ||
		!text_value(r->event_id, true, "event_id", ID_MAX_BYTES, &values[EV_ID], &nulls[EV_ID], err) ||
		!text_value(r->auction_id, false, "auction_id", ID_MAX_BYTES, &values[EV_AUCTION], &nulls[EV_AUCTION], err) ||
		!text_value(r->publisher, false, "publisher", TEXT_MAX_BYTES, &values[EV_PUBLISHER], &nulls[EV_PUBLISHER], err) ||
		!text_value(r->creative, false, "creative", TEXT_MAX_BYTES, &values[EV_CREATIVE], &nulls[EV_CREATIVE], err) ||
		!text_value(r->placement, false, "placement", TEXT_MAX_BYTES, &values[EV_PLACEMENT], &nulls[EV_PLACEMENT], err) ||
		!text_value(r->product, false, "product", TEXT_MAX_BYTES, &values[EV_PRODUCT], &nulls[EV_PRODUCT], err))
		return false;
	if (r->event_type < 0 || r->event_type > 3)
	{
		snprintf(err, AVRO_ERR_LEN, "event_type index %d out of range", r->event_type);
		return false;
	}
	if (r->has_revenue && !isfinite(r->revenue))
	{
		snprintf(err, AVRO_ERR_LEN, "revenue is not finite");
		return false;
	}
	values[EV_TYPE] = CStringGetTextDatum(avro_event_types[r->event_type]);
	values[EV_ADVERTISER] = Int64GetDatum(r->advertiser_id);
	nulls[EV_ADVERTISER] = !r->has_advertiser_id;
	values[EV_CAMPAIGN] = Int64GetDatum(r->campaign_id);
	nulls[EV_CAMPAIGN] = !r->has_campaign_id;
	values[EV_PIXEL] = Int64GetDatum(r->pixel_id);
	nulls[EV_PIXEL] = !r->has_pixel_id;
	values[EV_QUANTITY] = Int32GetDatum(r->quantity);
	nulls[EV_QUANTITY] = !r->has_quantity;
	values[EV_REVENUE] = Float8GetDatum(r->revenue);
	nulls[EV_REVENUE] = !r->has_revenue;
	return true;
}

/* ---- JSON ---- */

typedef struct JsonState
{
	int			depth;
	int			field;			/* reader field index of the current key, -1 unknown */
	bool		seen[14];
	char	   *tok[14];		/* NULL with seen: JSON null */
	JsonTokenType toktype[14];
	char		err[AVRO_ERR_LEN];
} JsonState;

static const char *const json_fields[14] = {
	"event_id", "user_id", "event_type", "event_time", "advertiser_id", "campaign_id",
	"auction_id", "pixel_id", "publisher", "creative", "placement", "product", "quantity", "revenue"
};

static void
js_object_start(void *state)
{
	JsonState  *s = state;

	s->depth++;
	if (s->depth > 1 && s->err[0] == '\0')
		snprintf(s->err, AVRO_ERR_LEN, "field \"%s\" is an object, not a scalar",
				 s->field >= 0 ? json_fields[s->field] : "?");
}

static void
js_object_end(void *state)
{
	((JsonState *) state)->depth--;
}

static void
js_array_start(void *state)
{
	JsonState  *s = state;

	if (s->depth == 0 && s->err[0] == '\0')
		snprintf(s->err, AVRO_ERR_LEN, "message is a JSON array, not an object");
	else if (s->depth == 1 && s->field >= 0 && s->err[0] == '\0')
		snprintf(s->err, AVRO_ERR_LEN, "field \"%s\" is an array, not a scalar", json_fields[s->field]);
	s->depth++;
}

static void
js_array_end(void *state)
{
	((JsonState *) state)->depth--;
}

static void
js_field_start(void *state, char *fname, bool isnull)
{
	JsonState  *s = state;
	int			i;

	if (s->depth != 1)
		return;
	s->field = -1;
	for (i = 0; i < 14; i++)
		if (strcmp(fname, json_fields[i]) == 0)
		{
			s->field = i;
			if (s->seen[i] && s->err[0] == '\0')
				snprintf(s->err, AVRO_ERR_LEN, "field \"%s\" appears twice", fname);
			s->seen[i] = true;
			s->tok[i] = NULL;
			break;
		}
}

static void
js_scalar(void *state, char *token, JsonTokenType tokentype)
{
	JsonState  *s = state;

	if (s->depth == 0)
	{
		if (s->err[0] == '\0')
			snprintf(s->err, AVRO_ERR_LEN, "message is a JSON scalar, not an object");
		return;
	}
	if (s->depth != 1 || s->field < 0)
		return;
	s->toktype[s->field] = tokentype;
	s->tok[s->field] = tokentype == JSON_TOKEN_NULL ? NULL : token;
}

static bool
json_int(JsonState *s, int i, int64 lo, int64 hi, bool *has, int64 *out, char *err)
{
	char	   *end;
	long long	v;

	*has = false;
	if (!s->seen[i] || s->tok[i] == NULL)
		return true;
	if (s->toktype[i] != JSON_TOKEN_NUMBER && s->toktype[i] != JSON_TOKEN_STRING)
	{
		snprintf(err, AVRO_ERR_LEN, "%s must be an integer", json_fields[i]);
		return false;
	}
	errno = 0;
	v = strtoll(s->tok[i], &end, 10);
	if (errno != 0 || end == s->tok[i] || *end != '\0' || v < lo || v > hi)
	{
		snprintf(err, AVRO_ERR_LEN, "%s \"%.40s\" is not an integer in range", json_fields[i], s->tok[i]);
		return false;
	}
	*has = true;
	*out = v;
	return true;
}

static AvroStr
json_str(JsonState *s, int i)
{
	AvroStr		r = {NULL, 0};

	if (s->seen[i] && s->tok[i] != NULL)
	{
		r.ptr = s->tok[i];
		r.len = strlen(s->tok[i]);
	}
	return r;
}

/* event_time: epoch milliseconds, or a timestamptz string */
static bool
json_time(JsonState *s, int64 *ms, char *err)
{
	const int	i = 3;
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_tm tt;
	fsec_t		fsec;
	int			tz;
	TimestampTz t;
	bool		has;
	int			k;

	if (!s->seen[i] || s->tok[i] == NULL)
	{
		snprintf(err, AVRO_ERR_LEN, "event_time is missing");
		return false;
	}
	if (s->toktype[i] == JSON_TOKEN_NUMBER)
		return json_int(s, i, PG_INT64_MIN, PG_INT64_MAX, &has, ms, err);
	if (s->toktype[i] != JSON_TOKEN_STRING ||
		ParseDateTime(s->tok[i], workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0)
	{
		snprintf(err, AVRO_ERR_LEN, "event_time \"%.60s\" is not a timestamp", s->tok[i]);
		return false;
	}
	/*
	 * A time relative to when it is read ("now", "today"...) would decode
	 * differently in a replay; one without a zone would depend on the
	 * session's TimeZone: it is taken as UTC.
	 */
	for (k = 0; k < nf; k++)
		if (ftype[k] == DTK_STRING &&
			(strcmp(field[k], "now") == 0 || strcmp(field[k], "today") == 0 ||
			 strcmp(field[k], "tomorrow") == 0 || strcmp(field[k], "yesterday") == 0))
		{
			snprintf(err, AVRO_ERR_LEN, "event_time \"%.60s\" is relative to the time it is read; give the time itself",
					 s->tok[i]);
			return false;
		}
	if (DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tz) != 0 ||
		dtype != DTK_DATE)
	{
		snprintf(err, AVRO_ERR_LEN, "event_time \"%.60s\" is not a timestamp", s->tok[i]);
		return false;
	}
	{
		/* decoded again without a zone to take: succeeds only when it gave none */
		struct pg_tm tt2;
		fsec_t		fsec2;
		int			dtype2;

		if (ParseDateTime(s->tok[i], workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) == 0 &&
			DecodeDateTime(field, ftype, nf, &dtype2, &tt2, &fsec2, NULL) == 0)
			tz = 0;
	}
	if (tm2timestamp(&tt, fsec, &tz, &t) != 0 || !IS_VALID_TIMESTAMP(t))
	{
		snprintf(err, AVRO_ERR_LEN, "event_time \"%.60s\" is not a timestamp", s->tok[i]);
		return false;
	}
	/* to ms since 1970, dropping sub-millisecond digits as Avro would */
	*ms = (t - (t % 1000 + 1000) % 1000) / 1000 + EPOCH_DIFF_MS;
	return true;
}

static bool
decode_json(const char *buf, size_t len, Datum *values, bool *nulls, char *err,
			MemoryContext row_cxt)
{
	JsonState	st;
	JsonSemAction sem;
	JsonLexContext *lex;
	JsonParseErrorType perr;
	EventRec	r;
	AvroStr		type;
	int64		v;
	int			i;

	if (!pg_verifymbstr(buf, (int) len, true))
	{
		snprintf(err, AVRO_ERR_LEN, "JSON message is not valid UTF-8 (or contains a zero byte)");
		return false;
	}
	if (json_nesting_exceeds(buf, len, JSON_MAX_DEPTH))
	{
		snprintf(err, AVRO_ERR_LEN, "JSON message nested deeper than %d levels", JSON_MAX_DEPTH);
		return false;
	}
	memset(&st, 0, sizeof(st));
	st.field = -1;
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = js_object_start;
	sem.object_end = js_object_end;
	sem.array_start = js_array_start;
	sem.array_end = js_array_end;
	sem.object_field_start = js_field_start;
	sem.scalar = js_scalar;
	lex = makeJsonLexContextCstringLen(pnstrdup(buf, len), (int) len, GetDatabaseEncoding(), true);
	perr = pg_parse_json(lex, &sem);
	if (perr != JSON_SUCCESS)
	{
		snprintf(err, AVRO_ERR_LEN, "invalid JSON: %s", json_errdetail(perr, lex));
		return false;
	}
	if (st.err[0] != '\0')
	{
		strlcpy(err, st.err, AVRO_ERR_LEN);
		return false;
	}

	memset(&r, 0, sizeof(r));
	for (i = 0; i < 14; i++)
		if (st.seen[i] && st.tok[i] != NULL && i != 3 && i != 13 &&
			(i == 0 || i == 1 || i == 2 || i == 6 || (i >= 8 && i <= 11)) &&
			st.toktype[i] != JSON_TOKEN_STRING)
		{
			snprintf(err, AVRO_ERR_LEN, "%s must be a string", json_fields[i]);
			return false;
		}
	r.event_id = json_str(&st, 0);
	r.user_id = json_str(&st, 1);
	type = json_str(&st, 2);
	r.event_type = -1;
	for (i = 0; type.ptr != NULL && i < 4; i++)
		if (strcmp(type.ptr, avro_event_types[i]) == 0)
			r.event_type = i;
	if (r.event_type < 0)
	{
		if (type.ptr == NULL)
			snprintf(err, AVRO_ERR_LEN, "event_type is missing");
		else
			snprintf(err, AVRO_ERR_LEN, "unknown event type \"%.20s\" (valid: IM, CL, PS, CN)", type.ptr);
		return false;
	}
	if (!json_time(&st, &r.event_time_ms, err) ||
		!json_int(&st, 4, PG_INT64_MIN, PG_INT64_MAX, &r.has_advertiser_id, &r.advertiser_id, err) ||
		!json_int(&st, 5, PG_INT64_MIN, PG_INT64_MAX, &r.has_campaign_id, &r.campaign_id, err) ||
		!json_int(&st, 7, PG_INT64_MIN, PG_INT64_MAX, &r.has_pixel_id, &r.pixel_id, err) ||
		!json_int(&st, 12, PG_INT32_MIN, PG_INT32_MAX, &r.has_quantity, &v, err))
		return false;
	r.quantity = (int32) v;
	r.auction_id = json_str(&st, 6);
	r.publisher = json_str(&st, 8);
	r.creative = json_str(&st, 9);
	r.placement = json_str(&st, 10);
	r.product = json_str(&st, 11);
	if (st.seen[13] && st.tok[13] != NULL)
	{
		char	   *end;

		if (st.toktype[13] != JSON_TOKEN_NUMBER)
		{
			snprintf(err, AVRO_ERR_LEN, "revenue must be a number");
			return false;
		}
		r.revenue = strtod(st.tok[13], &end);
		r.has_revenue = true;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(row_cxt);
		bool		ok = rec_to_row(&r, values, nulls, err);

		MemoryContextSwitchTo(old);
		return ok;
	}
}

/* ---- entry points ---- */

/*
 * Decoding a message allocates in this context, reset after each message:
 * the JSON lexer's copy of the text and its tokens (a long unknown field
 * is one token) go with it, and only the row's values, built in the
 * caller's context, stay.
 */
static MemoryContext decode_cxt = NULL;

static bool decode_message(const char *buf, size_t len, Datum *values, bool *nulls, char *err,
						   MemoryContext row_cxt);

bool
prop_decode_message(const char *buf, size_t len, Datum *values, bool *nulls, char *err)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool ok = false;

	if (decode_cxt == NULL)
		decode_cxt = AllocSetContextCreate(TopMemoryContext, "propensity message decoding",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(decode_cxt);
	PG_TRY();
	{
		ok = decode_message(buf, len, values, nulls, err, caller);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(caller);
		MemoryContextReset(decode_cxt);
	}
	PG_END_TRY();
	return ok;
}

/* prop_decode_message() in decode_cxt; the row's values go to row_cxt */
static bool
decode_message(const char *buf, size_t len, Datum *values, bool *nulls, char *err,
			   MemoryContext row_cxt)
{
	EventRec	r;
	AvroDecodeStatus st;
	int32		id;
	size_t		i;
	bool		ok;
	MemoryContext old;

	err[0] = '\0';
	if (len > (size_t) propensity_max_message_size)
	{
		snprintf(err, AVRO_ERR_LEN, "message of %zu bytes exceeds propensity.max_message_size (%d bytes)",
				 len, propensity_max_message_size);
		return false;
	}
	if (len > 0 && buf[0] == 0)
	{
		AvroCodec  *c = get_codec();

		avro_codec_set_max_values(c, propensity_max_message_values);

		st = avro_decode_event(c, (const uint8 *) buf, len, &r, err);
		if (st == AVRO_UNKNOWN_SCHEMA && avro_wire_schema_id((const uint8 *) buf, len, &id))
		{
			if (!load_schema(id, err))
				return false;
			st = avro_decode_event(c, (const uint8 *) buf, len, &r, err);
		}
		if (st != AVRO_OK)
			return false;
		old = MemoryContextSwitchTo(row_cxt);
		ok = rec_to_row(&r, values, nulls, err);
		MemoryContextSwitchTo(old);
		avro_codec_release(c);
		return ok;
	}
	for (i = 0; i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'); i++)
		;
	if (i < len && buf[i] == '{')
		return decode_json(buf, len, values, nulls, err, row_cxt);
	snprintf(err, AVRO_ERR_LEN, len == 0 ? "empty message"
			 : "neither the Avro wire format (magic byte 0) nor a JSON object");
	return false;
}

/* ---- SQL functions ---- */

/*
 * Statement trigger on propensity.avro_schemas (UPDATE, DELETE): every
 * session drops the writer schemas it has loaded once this commits.
 */
PG_FUNCTION_INFO_V1(propensity_avro_schemas_changed);
Datum
propensity_avro_schemas_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "avro_schemas_changed() must be called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(propensity_event_schema);
Datum
propensity_event_schema(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(event_schema_json));
}

PG_FUNCTION_INFO_V1(propensity_check_writer_schema);
Datum
propensity_check_writer_schema(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char	   *json;
	char		err[AVRO_ERR_LEN];

	if (VARSIZE_ANY_EXHDR(t) > (Size) propensity_max_schema_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("schema of %zu bytes is larger than propensity.max_schema_size (%d bytes)",
						(size_t) VARSIZE_ANY_EXHDR(t), propensity_max_schema_size),
				 errhint("An event schema is a few kilobytes; a superuser can raise the limit.")));
	json = text_to_cstring(t);
	if (avro_codec_check_writer(get_codec(), -1, json, strlen(json), err) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema does not resolve to the propensity event schema"),
				 errdetail("%s", err),
				 errhint("A writer schema is a record with event_id, user_id, event_type and event_time; see propensity.event_schema().")));
	PG_RETURN_VOID();
}

/*
 * decode_message(bytea) -> events: what the worker would store, or the error
 * it would dead-letter, raised as ERRCODE_INVALID_BINARY_REPRESENTATION.
 */
PG_FUNCTION_INFO_V1(propensity_decode_message);
Datum
propensity_decode_message(PG_FUNCTION_ARGS)
{
	bytea	   *msg = PG_GETARG_BYTEA_PP(0);
	TupleDesc	desc;
	Datum		values[EVENT_NATTS];
	bool		nulls[EVENT_NATTS];
	char		err[AVRO_ERR_LEN];
	bool		ok;
	MemoryContext caller;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "decode_message() must return a row");
	prop_check_events_rowtype(desc);
	caller = CurrentMemoryContext;
	SPI_connect();
	/* the values outlive the SPI connection: they go to the caller's context */
	MemoryContextSwitchTo(caller);
	ok = prop_decode_message(VARDATA_ANY(msg), VARSIZE_ANY_EXHDR(msg), values, nulls, err);
	SPI_finish();
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("message cannot be decoded"),
				 errdetail("%s", err)));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

static AvroStr
datum_str(HeapTupleHeader row, TupleDesc desc, int attno, char **keep)
{
	HeapTupleData tup;
	bool		isnull;
	Datum		d;
	AvroStr		s = {NULL, 0};

	tup.t_len = HeapTupleHeaderGetDatumLength(row);
	tup.t_data = row;
	d = heap_getattr(&tup, attno + 1, desc, &isnull);
	if (!isnull)
	{
		text	   *t = DatumGetTextPP(d);

		s.ptr = VARDATA_ANY(t);
		s.len = VARSIZE_ANY_EXHDR(t);
		*keep = (char *) t;
	}
	return s;
}

static bool
datum_int(HeapTupleHeader row, TupleDesc desc, int attno, int64 *out, bool is32, bool isfloat, double *dout)
{
	HeapTupleData tup;
	bool		isnull;
	Datum		d;

	tup.t_len = HeapTupleHeaderGetDatumLength(row);
	tup.t_data = row;
	d = heap_getattr(&tup, attno + 1, desc, &isnull);
	if (isnull)
		return false;
	if (isfloat)
		*dout = DatumGetFloat8(d);
	else
		*out = is32 ? DatumGetInt32(d) : DatumGetInt64(d);
	return true;
}

/* encode_events(events[], schema_id) -> bytea[] */
PG_FUNCTION_INFO_V1(propensity_encode_events);
Datum
propensity_encode_events(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	int32		schema_id = PG_GETARG_INT32(1);
	Oid			elemtype = ARR_ELEMTYPE(arr);
	TupleDesc	desc = lookup_rowtype_tupdesc(elemtype, -1);
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	int			i;
	Datum	   *out;
	bool	   *onulls;
	int			dims[1];
	int			lbs[1] = {1};
	uint8	   *buf = palloc(65536);
	char		err[AVRO_ERR_LEN];
	AvroCodec  *c = get_codec();

	prop_check_events_rowtype(desc);
	if (schema_id < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("schema id must not be negative")));
	deconstruct_array(arr, elemtype, -1, false, TYPALIGN_DOUBLE, &elems, &enulls, &n);
	out = palloc(sizeof(Datum) * Max(n, 1));
	onulls = palloc0(sizeof(bool) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTupleHeader row;
		EventRec	r;
		AvroStr		type;
		char	   *keep = NULL;
		int64		t;
		int64		v = 0;
		long		len;
		int			k;

		if (enulls[i])
		{
			onulls[i] = true;
			continue;
		}
		row = DatumGetHeapTupleHeader(elems[i]);
		memset(&r, 0, sizeof(r));
		r.event_id = datum_str(row, desc, EV_ID, &keep);
		r.user_id = datum_str(row, desc, EV_USER, &keep);
		type = datum_str(row, desc, EV_TYPE, &keep);
		r.event_type = -1;
		for (k = 0; type.ptr != NULL && k < 4; k++)
			if (type.len == 2 && memcmp(type.ptr, avro_event_types[k], 2) == 0)
				r.event_type = k;
		if (r.event_id.ptr == NULL || r.user_id.ptr == NULL || r.event_type < 0 ||
			!datum_int(row, desc, EV_TIME, &t, false, false, NULL))
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("event %d has no event_id, user_id, valid event_type or event_time", i + 1)));
		r.event_time_ms = t / 1000 - (t % 1000 < 0 ? 1 : 0) + EPOCH_DIFF_MS;
		r.has_advertiser_id = datum_int(row, desc, EV_ADVERTISER, &r.advertiser_id, false, false, NULL);
		r.has_campaign_id = datum_int(row, desc, EV_CAMPAIGN, &r.campaign_id, false, false, NULL);
		r.auction_id = datum_str(row, desc, EV_AUCTION, &keep);
		r.has_pixel_id = datum_int(row, desc, EV_PIXEL, &r.pixel_id, false, false, NULL);
		r.publisher = datum_str(row, desc, EV_PUBLISHER, &keep);
		r.creative = datum_str(row, desc, EV_CREATIVE, &keep);
		r.placement = datum_str(row, desc, EV_PLACEMENT, &keep);
		r.product = datum_str(row, desc, EV_PRODUCT, &keep);
		r.has_quantity = datum_int(row, desc, EV_QUANTITY, &v, true, false, NULL);
		r.quantity = (int32) v;
		r.has_revenue = datum_int(row, desc, EV_REVENUE, NULL, false, true, &r.revenue);
		len = avro_encode_event(c, schema_id, &r, buf, 65536, err);
		if (len < 0)
			ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							errmsg("event %d cannot be encoded", i + 1), errdetail("%s", err)));
		{
			bytea	   *b = palloc(VARHDRSZ + len);

			SET_VARSIZE(b, VARHDRSZ + len);
			memcpy(VARDATA(b), buf, len);
			out[i] = PointerGetDatum(b);
		}
	}
	ReleaseTupleDesc(desc);
	dims[0] = n;
	if (n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(BYTEAOID));
	PG_RETURN_ARRAYTYPE_P(construct_md_array(out, onulls, 1, dims, lbs, BYTEAOID, -1, false, TYPALIGN_INT));
}
