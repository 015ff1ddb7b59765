/*
 * test_avro.c - standalone tests of the Avro decoder (src/core/avro_decode.c)
 * under ASan/UBSan or Valgrind: round trips, schema resolution (fields added
 * and removed, promotions, enum symbols), and hostile input: every truncation
 * of a valid message, single-byte corruptions, oversized lengths and counts,
 * out-of-range enum and union indexes, and random bytes.  Every call must
 * return, never crash or leak, and leave the per-message arena released.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/avro_decode.h"
#include "core/event_schema.h"
#include "check.h"

int			passed = 0;
int			failed = 0;

static char err[AVRO_ERR_LEN];

#define S(lit) ((AvroStr) {lit, sizeof(lit) - 1})
#define NOSTR ((AvroStr) {NULL, 0})

static bool
str_eq(AvroStr a, const char *b)
{
	if (b == NULL)
		return a.ptr == NULL;
	return a.ptr != NULL && a.len == strlen(b) && memcmp(a.ptr, b, a.len) == 0;
}

/* ---- hand encoding of Avro binary, for writer schemas of our own ---- */

typedef struct Buf
{
	uint8_t		b[4096];
	size_t		n;
} Buf;

static void
put_long(Buf *b, int64_t v)
{
	uint64_t	z = ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);

	while (z >= 0x80)
	{
		b->b[b->n++] = (uint8_t) (z | 0x80);
		z >>= 7;
	}
	b->b[b->n++] = (uint8_t) z;
}

static void
put_str(Buf *b, const char *s)
{
	size_t		len = strlen(s);

	put_long(b, (int64_t) len);
	memcpy(b->b + b->n, s, len);
	b->n += len;
}

static void
put_header(Buf *b, int32_t id)
{
	b->n = 0;
	b->b[b->n++] = 0;
	b->b[b->n++] = (uint8_t) ((uint32_t) id >> 24);
	b->b[b->n++] = (uint8_t) ((uint32_t) id >> 16);
	b->b[b->n++] = (uint8_t) ((uint32_t) id >> 8);
	b->b[b->n++] = (uint8_t) id;
}

/* v2 of the event schema: adds a field, drops most optional ones, promotes */
static const char *writer_v2 =
"{\"type\":\"record\",\"name\":\"Event\",\"namespace\":\"propensity\",\"fields\":["
"{\"name\":\"user_id\",\"type\":\"bytes\"},"
"{\"name\":\"event_id\",\"type\":\"string\"},"
"{\"name\":\"session\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
"{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":[\"CN\",\"IM\",\"XX\"]}},"
"{\"name\":\"event_time\",\"type\":\"long\"},"
"{\"name\":\"advertiser_id\",\"type\":\"int\"},"
"{\"name\":\"revenue\",\"type\":[\"null\",\"float\"]},"
"{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":\"null\"}}"
"]}";

static const char *writer_no_user =
"{\"type\":\"record\",\"name\":\"Event\",\"fields\":["
"{\"name\":\"event_id\",\"type\":\"string\"},"
"{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"T\",\"symbols\":[\"IM\"]}},"
"{\"name\":\"event_time\",\"type\":\"long\"}]}";

static const char *writer_bad_type =
"{\"type\":\"record\",\"name\":\"Event\",\"fields\":["
"{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"
"{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"T\",\"symbols\":[\"IM\"]}},"
"{\"name\":\"event_time\",\"type\":\"double\"}]}";

static void
test_roundtrip(AvroCodec *c)
{
	EventRec	ev;
	EventRec	out;
	uint8_t		buf[1024];
	long		n;
	AvroDecodeStatus st;

	memset(&ev, 0, sizeof(ev));
	ev.event_id = S("e-1");
	ev.user_id = S("u\xc3\xa9-42");
	ev.event_type = 3;
	ev.event_time_ms = 1700000000123LL;
	ev.has_advertiser_id = true;
	ev.advertiser_id = 7;
	ev.has_campaign_id = true;
	ev.campaign_id = -5000000000LL;
	ev.auction_id = S("a-9");
	ev.has_pixel_id = false;
	ev.publisher = NOSTR;
	ev.creative = S("");
	ev.placement = S("top");
	ev.product = NOSTR;
	ev.has_quantity = true;
	ev.quantity = -3;
	ev.has_revenue = true;
	ev.revenue = 12.5;

	n = avro_encode_event(c, 1, &ev, buf, sizeof(buf), err);
	CHECK(n > AVRO_WIRE_HEADER, "encode: %s", err);
	CHECK(buf[0] == 0 && buf[4] == 1, "wire header");
	st = avro_decode_event(c, buf, (size_t) n, &out, err);
	CHECK(st == AVRO_OK, "decode round trip: %s", err);
	if (st != AVRO_OK)
		return;
	CHECK(str_eq(out.event_id, "e-1"), "event_id");
	CHECK(str_eq(out.user_id, "u\xc3\xa9-42"), "user_id");
	CHECK(out.event_type == 3, "event_type CN");
	CHECK(out.event_time_ms == 1700000000123LL, "event_time");
	CHECK(out.has_advertiser_id && out.advertiser_id == 7, "advertiser");
	CHECK(out.has_campaign_id && out.campaign_id == -5000000000LL, "campaign");
	CHECK(str_eq(out.auction_id, "a-9"), "auction");
	CHECK(!out.has_pixel_id, "pixel null");
	CHECK(str_eq(out.publisher, NULL), "publisher null");
	CHECK(str_eq(out.creative, ""), "creative empty, not null");
	CHECK(str_eq(out.placement, "top"), "placement");
	CHECK(out.has_quantity && out.quantity == -3, "quantity");
	CHECK(out.has_revenue && out.revenue == 12.5, "revenue");
	CHECK(avro_codec_arena_bytes(c) > 0, "decode allocated in the arena");
	avro_codec_release(c);
	CHECK(avro_codec_arena_bytes(c) == 0, "release empties the arena");

	/* trailing bytes after the record are an error */
	buf[n] = 0;
	st = avro_decode_event(c, buf, (size_t) n + 1, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "extra bytes after the record: 1"), "trailing byte: %s", err);
	/* unknown schema id */
	buf[4] = 9;
	st = avro_decode_event(c, buf, (size_t) n, &out, err);
	CHECK(st == AVRO_UNKNOWN_SCHEMA && strstr(err, "unknown schema id 9"), "unknown id: %s", err);
	buf[4] = 1;
	buf[0] = 1;
	st = avro_decode_event(c, buf, (size_t) n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "magic byte 1"), "magic: %s", err);
}

/*
 * The strings a PostgreSQL text gives the encoder end without a NUL: each
 * here is a heap block of exactly its length (ASan and Valgrind see a read
 * past it), short and longer than the encoder's stack copy.
 */
static AvroStr
heap_str(const char *s, size_t len, char **keep)
{
	char	   *p = malloc(len > 0 ? len : 1);

	memcpy(p, s, len);
	*keep = p;
	return (AvroStr) {p, len};
}

static void
test_unterminated(AvroCodec *c)
{
	char		longer[300];
	char	   *keep[4];
	EventRec	ev;
	EventRec	out;
	uint8_t		buf[2048];
	long		n;
	AvroDecodeStatus st;
	int			i;

	memset(longer, 'x', sizeof(longer));
	memset(&ev, 0, sizeof(ev));
	ev.event_id = heap_str("e-unterminated", 14, &keep[0]);
	ev.user_id = heap_str(longer, sizeof(longer), &keep[1]);
	ev.event_type = 1;
	ev.event_time_ms = 1700000000000LL;
	ev.auction_id = heap_str("", 0, &keep[2]);
	ev.placement = heap_str("top-slot", 8, &keep[3]);
	n = avro_encode_event(c, 1, &ev, buf, sizeof(buf), err);
	CHECK(n > AVRO_WIRE_HEADER, "encode of unterminated strings: %s", err);
	st = avro_decode_event(c, buf, (size_t) n, &out, err);
	CHECK(st == AVRO_OK, "decode of unterminated strings: %s", err);
	if (st == AVRO_OK)
	{
		CHECK(str_eq(out.event_id, "e-unterminated"), "unterminated event_id");
		CHECK(out.user_id.ptr != NULL && out.user_id.len == sizeof(longer) &&
			  memcmp(out.user_id.ptr, longer, sizeof(longer)) == 0, "unterminated long user_id");
		CHECK(str_eq(out.auction_id, ""), "unterminated empty auction_id");
		CHECK(str_eq(out.placement, "top-slot"), "unterminated placement");
	}
	avro_codec_release(c);
	CHECK(avro_codec_arena_bytes(c) == 0, "release after the encode of long strings");
	for (i = 0; i < 4; i++)
		free(keep[i]);
}

static void
test_resolution(AvroCodec *c)
{
	Buf			b;
	EventRec	out;
	AvroDecodeStatus st;

	CHECK(avro_codec_check_writer(c, 2, writer_v2, strlen(writer_v2), err) == 0, "v2 resolves: %s", err);
	CHECK(avro_codec_check_writer(c, -1, writer_no_user, strlen(writer_no_user), err) != 0 &&
		  strstr(err, "\"user_id\""), "missing required field: %s", err);
	CHECK(avro_codec_check_writer(c, -1, writer_bad_type, strlen(writer_bad_type), err) != 0 &&
		  strstr(err, "\"event_time\""), "double does not promote to timestamp: %s", err);
	CHECK(avro_codec_check_writer(c, -1, "{\"type\":", 8, err) != 0 &&
		  strstr(err, "not a valid Avro schema"), "bad json: %s", err);
	CHECK(avro_codec_check_writer(c, -1, "\"string\"", 8, err) != 0 &&
		  strstr(err, "not a record"), "not a record: %s", err);

	put_header(&b, 2);
	put_str(&b, "user-b");		/* bytes -> string */
	put_str(&b, "ev-b");
	put_long(&b, 2);			/* array block of 2 strings */
	put_str(&b, "s1");
	put_str(&b, "s2");
	put_long(&b, 0);
	put_long(&b, 1);			/* enum index 1 of the writer = IM */
	put_long(&b, 1600000000000LL);
	put_long(&b, 77);			/* int -> long */
	put_long(&b, 1);			/* union branch float */
	{
		float		f = 2.25f;

		memcpy(b.b + b.n, &f, 4);
		b.n += 4;
	}
	put_long(&b, -1);			/* map: negative count with block size */
	put_long(&b, 2);
	put_str(&b, "k");
	put_long(&b, 0);
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_OK, "v2 decode: %s", err);
	if (st == AVRO_OK)
	{
		CHECK(str_eq(out.user_id, "user-b") && str_eq(out.event_id, "ev-b"), "v2 strings");
		CHECK(out.event_type == 0, "writer symbol IM maps to reader index 0");
		CHECK(out.event_time_ms == 1600000000000LL, "v2 time");
		CHECK(out.has_advertiser_id && out.advertiser_id == 77, "int promoted to long");
		CHECK(!out.has_campaign_id && out.auction_id.ptr == NULL && !out.has_quantity,
			  "fields missing from the writer take the reader's default null");
		CHECK(out.has_revenue && out.revenue == 2.25, "float promoted to double");
	}

	/* writer symbol XX is not in the reader's enum */
	b.b[b.n - 1] = 0;			/* keep the map terminator */
	put_header(&b, 2);
	put_str(&b, "u");
	put_str(&b, "e");
	put_long(&b, 0);
	put_long(&b, 2);			/* XX */
	put_long(&b, 1);
	put_long(&b, 1);
	put_long(&b, 0);
	put_long(&b, 0);
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "\"XX\""), "unknown symbol: %s", err);

	/* enum index past the writer's symbols: caught before avro-c sees it */
	b.b[5 + 2 + 2 + 1] = 6;		/* zigzag 3 */
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "enum index 3 out of range"), "enum range: %s", err);

	/* a union branch out of range */
	put_header(&b, 2);
	put_str(&b, "u");
	put_str(&b, "e");
	put_long(&b, 0);
	put_long(&b, 1);
	put_long(&b, 1);
	put_long(&b, 1);
	put_long(&b, 5);
	put_long(&b, 0);
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "union branch 5"), "union range: %s", err);
}

/* A string length of 2^62 must not reach malloc: caught by the walk. */
static void
test_oversized(AvroCodec *c)
{
	Buf			b;
	EventRec	out;
	AvroDecodeStatus st;

	put_header(&b, 1);
	put_long(&b, INT64_C(1) << 62);
	put_str(&b, "x");
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "truncated: string"), "huge string: %s", err);
	CHECK(avro_codec_arena_bytes(c) == 0, "nothing allocated for it");

	put_header(&b, 1);
	put_long(&b, -4);
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "negative string length"), "negative length: %s", err);

	/* an array count far beyond the message, of zero-byte items */
	put_header(&b, 2);
	put_str(&b, "u");
	put_str(&b, "e");
	put_long(&b, INT64_C(1) << 40);
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "exceeds the message"), "huge count: %s", err);

	/* a varint that never ends */
	put_header(&b, 1);
	memset(b.b + b.n, 0xff, 20);
	b.n += 20;
	st = avro_decode_event(c, b.b, b.n, &out, err);
	CHECK(st == AVRO_BAD_MESSAGE && strstr(err, "varint longer"), "endless varint: %s", err);
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Every prefix, every byte corruption, and random input: no crash, no leak. */
static void
test_hostile(AvroCodec *c)
{
	EventRec	ev;
	EventRec	out;
	uint8_t		good[1024];
	uint8_t		buf[1024];
	long		n;
	long		i;
	int			ok = 0;
	int			bad = 0;
	int			other = 0;
	int			k;

	memset(&ev, 0, sizeof(ev));
	ev.event_id = S("event-123456");
	ev.user_id = S("user-9");
	ev.event_type = 1;
	ev.event_time_ms = 1700000000000LL;
	ev.has_advertiser_id = true;
	ev.advertiser_id = 3;
	ev.auction_id = S("auction-1");
	ev.publisher = S("pub");
	ev.has_revenue = true;
	ev.revenue = 1.0;
	n = avro_encode_event(c, 1, &ev, good, sizeof(good), err);
	CHECK(n > 0, "encode: %s", err);

	for (i = 0; i < n; i++)
	{
		AvroDecodeStatus st = avro_decode_event(c, good, (size_t) i, &out, err);

		if (st == AVRO_BAD_MESSAGE)
			bad++;
		else
			other++;
	}
	CHECK(bad == n && other == 0, "all %ld truncations rejected (%d were not)", n, other);

	bad = ok = other = 0;
	for (i = AVRO_WIRE_HEADER; i < n; i++)
		for (k = 0; k < 256; k += 5)
		{
			AvroDecodeStatus st;

			memcpy(buf, good, (size_t) n);
			buf[i] = (uint8_t) k;
			st = avro_decode_event(c, buf, (size_t) n, &out, err);
			if (st == AVRO_OK)
			{
				ok++;
				/* what decodes must be in range */
				if (out.event_type < 0 || out.event_type > 3 || out.event_id.ptr == NULL ||
					out.user_id.ptr == NULL)
					other++;
			}
			else if (st == AVRO_BAD_MESSAGE)
				bad++;
			else
				other++;
		}
	CHECK(other == 0 && ok > 0 && bad > 0, "corruptions: %d decoded, %d rejected, %d wrong", ok, bad, other);

	bad = ok = other = 0;
	for (i = 0; i < 20000; i++)
	{
		size_t		len = (size_t) (next_rand() % 200);
		size_t		j;
		AvroDecodeStatus st;

		for (j = 0; j < len; j++)
			buf[j] = (uint8_t) next_rand();
		if (len >= AVRO_WIRE_HEADER && (i % 2) == 0)
		{
			/* aim at the real schema so the walk gets deep */
			buf[0] = buf[1] = buf[2] = buf[3] = 0;
			buf[4] = (uint8_t) (1 + (i % 4 == 0));
		}
		st = avro_decode_event(c, buf, len, &out, err);
		if (st == AVRO_OK)
			ok++;
		else
			bad++;
		{
			size_t		values;
			size_t		bytes;

			avro_codec_last_expansion(c, &values, &bytes);
			if (avro_codec_arena_peak(c) > avro_expansion_bound(values, bytes))
				other++;
		}
	}
	CHECK(other == 0, "arena within the expansion bound on random input");
	CHECK(bad > 19000, "random input rejected: %d of 20000 (%d decoded)", bad, ok);
	avro_codec_release(c);
	CHECK(avro_codec_arena_bytes(c) == 0, "arena empty at the end");
}

/* ---- expansion: bodies that make avro-c build far more than they weigh ---- */

typedef struct BigBuf
{
	uint8_t    *b;
	size_t		n;
	size_t		cap;
} BigBuf;

static void
big_byte(BigBuf *b, uint8_t v)
{
	if (b->n == b->cap)
	{
		b->cap = b->cap ? b->cap * 2 : 4096;
		b->b = realloc(b->b, b->cap);
	}
	b->b[b->n++] = v;
}

static void
big_long(BigBuf *b, int64_t v)
{
	uint64_t	z = ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);

	while (z >= 0x80)
	{
		big_byte(b, (uint8_t) (z | 0x80));
		z >>= 7;
	}
	big_byte(b, (uint8_t) z);
}

/* The reader schema with one more field, `m` of the given type, at the end. */
static char *
schema_with_extra(const char *type_json)
{
	const char *end = strrchr(event_schema_json, ']');
	size_t		head = (size_t) (end - event_schema_json);
	char	   *s = malloc(head + strlen(type_json) + 64 + strlen(end));

	memcpy(s, event_schema_json, head);
	sprintf(s + head, ",{\"name\":\"m\",\"type\":%s}%s", type_json, end);
	return s;
}

/* A message under schema id: a valid event (reader encoding), then the extra field's body. */
static void
start_message(AvroCodec *c, BigBuf *b, int32_t id)
{
	EventRec	ev;
	uint8_t		tmp[512];
	long		n;
	long		i;

	memset(&ev, 0, sizeof(ev));
	ev.event_id = S("x-1");
	ev.user_id = S("u-1");
	ev.event_type = 2;
	ev.event_time_ms = 1700000000000LL;
	n = avro_encode_event(c, 1, &ev, tmp, sizeof(tmp), err);
	b->n = 0;
	big_byte(b, 0);
	big_byte(b, (uint8_t) ((uint32_t) id >> 24));
	big_byte(b, (uint8_t) ((uint32_t) id >> 16));
	big_byte(b, (uint8_t) ((uint32_t) id >> 8));
	big_byte(b, (uint8_t) id);
	for (i = AVRO_WIRE_HEADER; i < n; i++)
		big_byte(b, tmp[i]);
}

/*
 * Decode b under the codec's limit: refused when it holds more values than
 * that, else decoded, with the arena within avro_expansion_bound() of what
 * the walk counted.  Twice, as a second decode once crashed on what the
 * first left behind.
 */
static void
check_expansion(AvroCodec *c, const char *what, BigBuf *b, size_t values_expected)
{
	EventRec	out;
	size_t		values;
	size_t		bytes;
	int			round;

	avro_codec_set_max_values(c, AVRO_DEFAULT_MAX_VALUES);
	CHECK(avro_decode_event(c, b->b, b->n, &out, err) == AVRO_BAD_MESSAGE &&
		  strstr(err, "more than 10000 values") != NULL,
		  "%s: refused under the default limit: %s", what, err);
	CHECK(avro_codec_arena_peak(c) == 0, "%s: refused before avro-c allocates anything", what);
	avro_codec_set_max_values(c, 2000000);
	for (round = 0; round < 2; round++)
	{
		AvroDecodeStatus st = avro_decode_event(c, b->b, b->n, &out, err);

		avro_codec_last_expansion(c, &values, &bytes);
		CHECK(st == AVRO_OK && str_eq(out.event_id, "x-1") && out.event_type == 2,
			  "%s: decodes under a raised limit (round %d): %s", what, round, err);
		CHECK(values == values_expected, "%s: %zu values counted, %zu expected", what, values,
			  values_expected);
		CHECK(avro_codec_arena_peak(c) <= avro_expansion_bound(values, bytes),
			  "%s: avro-c held %zu bytes, above the bound %zu for %zu values", what,
			  avro_codec_arena_peak(c), avro_expansion_bound(values, bytes), values);
	}
	avro_codec_release(c);
	CHECK(avro_codec_arena_bytes(c) == 0, "%s: released", what);
	avro_codec_set_max_values(c, AVRO_DEFAULT_MAX_VALUES);
}

/* the top-level record of start_message(): the record, 14 fields, 10 union branches */
#define EVENT_VALUES (1 + 14 + 10)

static void
test_expansion(AvroCodec *c)
{
	BigBuf		b = {NULL, 0, 0};
	char		rec200[200 * 40 + 100];
	const char *type;
	char	   *schema;
	int			i;

	/* map<record of 200 nulls>, 300 distinct 2-byte keys: 926 bytes that crashed the backend */
	strcpy(rec200, "{\"type\":\"map\",\"values\":{\"type\":\"record\",\"name\":\"R\",\"fields\":[");
	for (i = 0; i < 200; i++)
		sprintf(rec200 + strlen(rec200), "%s{\"name\":\"f%d\",\"type\":\"null\"}", i ? "," : "", i);
	strcat(rec200, "]}}");
	schema = schema_with_extra(rec200);
	CHECK(avro_codec_check_writer(c, 30, schema, strlen(schema), err) == 0, "map of wide records: %s", err);
	start_message(c, &b, 30);
	big_long(&b, 300);
	for (i = 0; i < 300; i++)
	{
		big_long(&b, 2);
		big_byte(&b, (uint8_t) ('a' + i / 26));
		big_byte(&b, (uint8_t) ('a' + i % 26));
	}
	big_long(&b, 0);
	CHECK(b.n < 1000, "the map message is small: %zu bytes", b.n);
	check_expansion(c, "map<record of 200 nulls> x 300", &b, EVENT_VALUES + 1 + 300 * 201);
	free(schema);

	/* array<string> of 100,000 empty strings */
	schema = schema_with_extra("{\"type\":\"array\",\"items\":\"string\"}");
	CHECK(avro_codec_check_writer(c, 31, schema, strlen(schema), err) == 0, "array of strings: %s", err);
	start_message(c, &b, 31);
	big_long(&b, 100000);
	for (i = 0; i < 100000; i++)
		big_long(&b, 0);
	big_long(&b, 0);
	check_expansion(c, "array<string> x 100000", &b, EVENT_VALUES + 1 + 100000);
	free(schema);

	/* array<map<null>>: 20,000 maps of 3 entries */
	schema = schema_with_extra("{\"type\":\"array\",\"items\":{\"type\":\"map\",\"values\":\"null\"}}");
	CHECK(avro_codec_check_writer(c, 32, schema, strlen(schema), err) == 0, "array of maps: %s", err);
	start_message(c, &b, 32);
	big_long(&b, 20000);
	for (i = 0; i < 20000; i++)
	{
		int			k;

		big_long(&b, 3);
		for (k = 0; k < 3; k++)
		{
			big_long(&b, 1);
			big_byte(&b, (uint8_t) ('a' + k));
		}
		big_long(&b, 0);
	}
	big_long(&b, 0);
	check_expansion(c, "array<map<null>> x 20000", &b, EVENT_VALUES + 1 + 20000 * 4);
	free(schema);

	/* array<union<null, record>> and map<union<null, record>>: every branch a record */
	type = "{\"type\":\"array\",\"items\":[\"null\",{\"type\":\"record\",\"name\":\"Q\","
		"\"fields\":[{\"name\":\"a\",\"type\":\"null\"},{\"name\":\"b\",\"type\":\"long\"}]}]}";
	schema = schema_with_extra(type);
	CHECK(avro_codec_check_writer(c, 33, schema, strlen(schema), err) == 0, "array of unions: %s", err);
	start_message(c, &b, 33);
	big_long(&b, 30000);
	for (i = 0; i < 30000; i++)
	{
		big_long(&b, 1);		/* branch 1: the record */
		big_long(&b, i);		/* b */
	}
	big_long(&b, 0);
	check_expansion(c, "array<union<null, record>> x 30000", &b, EVENT_VALUES + 1 + 30000 * 4);
	free(schema);

	type = "{\"type\":\"map\",\"values\":[\"null\",{\"type\":\"record\",\"name\":\"Q\","
		"\"fields\":[{\"name\":\"a\",\"type\":\"null\"}]}]}";
	schema = schema_with_extra(type);
	CHECK(avro_codec_check_writer(c, 34, schema, strlen(schema), err) == 0, "map of unions: %s", err);
	start_message(c, &b, 34);
	big_long(&b, 20000);
	for (i = 0; i < 20000; i++)
	{
		char		key[16];
		size_t		k;

		snprintf(key, sizeof(key), "k%05d", i);
		big_long(&b, 6);
		for (k = 0; k < 6; k++)
			big_byte(&b, (uint8_t) key[k]);
		big_long(&b, 1);
	}
	big_long(&b, 0);
	check_expansion(c, "map<union<null, record>> x 20000", &b, EVENT_VALUES + 1 + 20000 * 3);
	free(schema);
	free(b.b);
}

/*
 * Writer schemas are kept up to the cache limit, least recently used
 * dropped first (and loaded again on their next message, as the glue does
 * for an unknown id); a schema nested too deep is refused unparsed.
 */
static void
test_schema_cache(void)
{
	AvroCodec  *c = avro_codec_new(event_schema_json, strlen(event_schema_json), err);
	char		extra[64];
	char	   *schema;
	size_t		one;
	int			i;
	int			reloaded = 0;
	bool		bounded = true;
	char		deep[4096];

	snprintf(extra, sizeof(extra), "\"long\"");
	schema = schema_with_extra(extra);
	CHECK(avro_codec_check_writer(c, 100, schema, strlen(schema), err) == 0, "first schema: %s", err);
	one = avro_codec_schema_bytes(c);
	CHECK(one > 1000, "a schema's memory is counted: %zu bytes", one);
	free(schema);
	avro_codec_set_cache_limit(c, one * 5 + one / 2);
	for (i = 0; i < 40; i++)
	{
		EventRec	out;
		BigBuf		b = {NULL, 0, 0};
		int32_t		id = 100 + i % 20;
		AvroDecodeStatus st;

		snprintf(extra, sizeof(extra), "{\"type\":\"fixed\",\"name\":\"X%d\",\"size\":1}", id);
		schema = schema_with_extra(extra);
		start_message(c, &b, id);
		big_byte(&b, 7);
		st = avro_decode_event(c, b.b, b.n, &out, err);
		if (st == AVRO_UNKNOWN_SCHEMA)
		{
			if (i >= 20)
				reloaded++;
			CHECK(avro_codec_check_writer(c, id, schema, strlen(schema), err) == 0, "schema %d: %s", id, err);
			st = avro_decode_event(c, b.b, b.n, &out, err);
		}
		CHECK(st == AVRO_OK && str_eq(out.event_id, "x-1"), "message under schema %d: %s", id, err);
		if (avro_codec_schema_count(c) > 6 || avro_codec_schema_bytes(c) > one * 6)
			bounded = false;
		free(schema);
		free(b.b);
	}
	CHECK(bounded, "at most 6 schemas kept under a limit of 5.5 schemas' memory (%d, %zu bytes)",
		  avro_codec_schema_count(c), avro_codec_schema_bytes(c));
	CHECK(reloaded == 20, "schemas dropped are loaded again when their messages come: %d", reloaded);

	memset(deep, 0, sizeof(deep));
	for (i = 0; i < 100; i++)
		strcat(deep, "{\"type\":\"array\",\"items\":");
	strcat(deep, "\"long\"");
	for (i = 0; i < 100; i++)
		strcat(deep, "}");
	schema = schema_with_extra(deep);
	CHECK(avro_codec_check_writer(c, 200, schema, strlen(schema), err) != 0 && strstr(err, "nested deeper"),
		  "a schema nested 100 deep is refused: %s", err);
	free(schema);
	avro_codec_free(c);
}

int
main(void)
{
	AvroCodec  *c = avro_codec_new(event_schema_json, strlen(event_schema_json), err);

	CHECK(c != NULL, "codec: %s", err);
	if (c == NULL)
		return 1;
	CHECK(avro_codec_check_writer(c, 1, event_schema_json, strlen(event_schema_json), err) == 0,
		  "the reader schema resolves to itself: %s", err);
	CHECK(avro_codec_has_schema(c, 1) && !avro_codec_has_schema(c, 2), "has_schema");
	CHECK(avro_codec_new("{\"type\":\"record\",\"name\":\"X\",\"fields\":[]}", 40, err) == NULL &&
		  strstr(err, "event_id"), "a reader schema that is not Event is refused: %s", err);

	test_roundtrip(c);
	test_unterminated(c);
	test_resolution(c);
	test_oversized(c);
	test_hostile(c);
	test_expansion(c);
	test_schema_cache();
	avro_codec_free(c);

	printf("avro decoder: %d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
