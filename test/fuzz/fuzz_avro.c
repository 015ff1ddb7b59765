/*
 * fuzz_avro.c - libFuzzer target for the Avro decoder (src/core/avro_decode.c).
 * The first byte of an input picks its shape (modulo 3):
 * 0: a wire-format message for a codec that knows the reader schema (id 1)
 *    and a fixed writer schema with arrays, maps and unions (id 2);
 * 1: the next bytes generate a writer schema, the reader's fields plus one
 *    field of a generated type (any nesting of records, arrays, maps,
 *    unions, enums, fixed and primitives) at a generated position, and the
 *    rest is a body under it, decoded by a fresh codec;
 * 2: the same with the generated field last and the body a valid event
 *    followed by the rest of the input, so that the fuzzer spends its time
 *    on the generated part;
 * and with bit 4 set, modes 1 and 2 decode under a value limit of a
 * million instead of the default, so that wide expansions are decoded (and
 * measured against the bound), not only refused.
 * Seeds in test/fuzz/seeds reach arrays of strings, maps of records and
 * arrays of unions of thousands of zero-byte items.
 * Build and run: make fuzz-avro (clang, ASan, UBSan).  Every input must
 * return, never crash, leak or overrun, keep avro-c's memory within
 * avro_expansion_bound() of what the walk counted, and leave the arena
 * released.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/avro_decode.h"
#include "core/event_schema.h"

static const char *writer_v2 =
"{\"type\":\"record\",\"name\":\"Event\",\"fields\":["
"{\"name\":\"user_id\",\"type\":\"bytes\"},"
"{\"name\":\"event_id\",\"type\":\"string\"},"
"{\"name\":\"session\",\"type\":{\"type\":\"array\",\"items\":[\"null\",\"string\",{\"type\":\"fixed\",\"name\":\"F\",\"size\":3}]}},"
"{\"name\":\"event_type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":[\"CN\",\"IM\",\"XX\"]}},"
"{\"name\":\"event_time\",\"type\":\"long\"},"
"{\"name\":\"advertiser_id\",\"type\":\"int\"},"
"{\"name\":\"revenue\",\"type\":[\"null\",\"float\",\"double\"]},"
"{\"name\":\"ok\",\"type\":\"boolean\"},"
"{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":\"long\"}}}"
"]}";

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- writer schemas from bytes ---- */

typedef struct Gen
{
	const uint8_t *p;
	const uint8_t *end;
	char	   *out;
	size_t		n;
	size_t		cap;
	int			names;			/* named types so far */
} Gen;

static unsigned
gen_byte(Gen *g)
{
	return g->p < g->end ? *g->p++ : 0;
}

static void
gen_put(Gen *g, const char *s)
{
	size_t		len = strlen(s);

	if (g->n + len + 1 > g->cap)
	{
		g->cap = (g->n + len + 1) * 2;
		g->out = realloc(g->out, g->cap);
	}
	memcpy(g->out + g->n, s, len + 1);
	g->n += len;
}

static void
gen_type(Gen *g, int depth)
{
	static const char *const prim[] = {"\"null\"", "\"boolean\"", "\"int\"", "\"long\"", "\"float\"",
	"\"double\"", "\"bytes\"", "\"string\""};
	unsigned	b = gen_byte(g);
	unsigned	kind = b % (depth >= 5 ? 8 : 14);
	char		tmp[64];
	unsigned	i;
	unsigned	k;

	switch (kind)
	{
		case 8:					/* fixed */
			snprintf(tmp, sizeof(tmp), "{\"type\":\"fixed\",\"name\":\"N%d\",\"size\":%u}", g->names++,
					 gen_byte(g) % 9);
			gen_put(g, tmp);
			return;
		case 9:					/* enum */
			snprintf(tmp, sizeof(tmp), "{\"type\":\"enum\",\"name\":\"N%d\",\"symbols\":[", g->names++);
			gen_put(g, tmp);
			k = 1 + gen_byte(g) % 4;
			for (i = 0; i < k; i++)
			{
				snprintf(tmp, sizeof(tmp), "%s\"S%u\"", i ? "," : "", i);
				gen_put(g, tmp);
			}
			gen_put(g, "]}");
			return;
		case 10:				/* array */
			gen_put(g, "{\"type\":\"array\",\"items\":");
			gen_type(g, depth + 1);
			gen_put(g, "}");
			return;
		case 11:				/* map */
			gen_put(g, "{\"type\":\"map\",\"values\":");
			gen_type(g, depth + 1);
			gen_put(g, "}");
			return;
		case 12:				/* union of distinct branches (a union may not hold a union) */
			gen_put(g, "[\"null\"");
			k = gen_byte(g) % 4;
			for (i = 0; i < k; i++)
			{
				gen_put(g, ",");
				if (i == 0)
				{
					snprintf(tmp, sizeof(tmp), "{\"type\":\"record\",\"name\":\"N%d\",\"fields\":[{\"name\":\"a\",\"type\":",
							 g->names++);
					gen_put(g, tmp);
					gen_type(g, depth + 1);
					gen_put(g, "}]}");
				}
				else
					gen_put(g, prim[1 + i]);
			}
			gen_put(g, "]");
			return;
		case 13:				/* record */
			snprintf(tmp, sizeof(tmp), "{\"type\":\"record\",\"name\":\"N%d\",\"fields\":[", g->names++);
			gen_put(g, tmp);
			k = gen_byte(g) % 7;
			for (i = 0; i < k; i++)
			{
				snprintf(tmp, sizeof(tmp), "%s{\"name\":\"f%u\",\"type\":", i ? "," : "", i);
				gen_put(g, tmp);
				gen_type(g, depth + 1);
				gen_put(g, "}");
			}
			gen_put(g, "]}");
			return;
		default:
			gen_put(g, prim[kind]);
			return;
	}
}

/*
 * The reader schema's fields with a generated field "x" inserted before
 * field `at` (a byte of the input; 14: last).
 */
static char *
gen_schema(Gen *g, bool last)
{
	const char *fields = strchr(strstr(event_schema_json, "\"fields\""), '[') + 1;
	unsigned	at = last ? 14 : gen_byte(g) % 15;
	unsigned	field = 0;
	int			depth = 0;
	const char *p;

	g->n = 0;
	gen_put(g, "");
	/* copy the schema up to the start of field `at` (top-level field objects counted by depth) */
	for (p = event_schema_json; *p; p++)
	{
		char		c[2] = {*p, 0};

		if (p >= fields && depth == 0 && *p == '{' && field++ == at)
		{
			gen_put(g, "{\"name\":\"x\",\"type\":");
			gen_type(g, 0);
			gen_put(g, "},");
		}
		if (p >= fields && *p == ']' && depth == 0)
		{
			if (field <= at)
			{
				gen_put(g, ",{\"name\":\"x\",\"type\":");
				gen_type(g, 0);
				gen_put(g, "}");
				field = 99;
			}
			gen_put(g, p);
			break;
		}
		if (p >= fields)
		{
			if (*p == '{' || *p == '[')
				depth++;
			else if (*p == '}' || *p == ']')
				depth--;
		}
		gen_put(g, c);
	}
	return g->out;
}

static void
check_decode(AvroCodec *codec, const uint8_t *msg, size_t len)
{
	char		err[AVRO_ERR_LEN];
	EventRec	ev;
	size_t		values;
	size_t		bytes;

	if (avro_decode_event(codec, msg, len, &ev, err) == AVRO_OK)
	{
		if (ev.event_type < 0 || ev.event_type > 3 || ev.event_id.ptr == NULL || ev.user_id.ptr == NULL)
			abort();
	}
	avro_codec_last_expansion(codec, &values, &bytes);
	if (avro_codec_arena_peak(codec) > avro_expansion_bound(values, bytes))
	{
		fprintf(stderr, "avro-c held %zu bytes for %zu values, %zu bytes: above the bound\n",
				avro_codec_arena_peak(codec), values, bytes);
		abort();
	}
	avro_codec_release(codec);
	if (avro_codec_arena_bytes(codec) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static AvroCodec *codec = NULL;
	char		err[AVRO_ERR_LEN];
	uint8_t    *msg;

	if (codec == NULL)
	{
		codec = avro_codec_new(event_schema_json, strlen(event_schema_json), err);
		if (codec == NULL ||
			avro_codec_check_writer(codec, 1, event_schema_json, strlen(event_schema_json), err) != 0 ||
			avro_codec_check_writer(codec, 2, writer_v2, strlen(writer_v2), err) != 0)
			abort();
	}
	msg = malloc(size + AVRO_WIRE_HEADER + 256);
	memset(msg, 0, AVRO_WIRE_HEADER);
	if (size > 0 && data[0] % 3 != 0)
	{
		bool		last = data[0] % 3 == 2;
		Gen			g = {data + 1, data + size, NULL, 0, 0, 0};
		char	   *schema = gen_schema(&g, last);
		AvroCodec  *fresh = avro_codec_new(event_schema_json, strlen(event_schema_json), err);
		size_t		prefix = 0;
		size_t		body;

		if (fresh == NULL)
			abort();
		if (data[0] & 16)
			avro_codec_set_max_values(fresh, 1000000);
		if (last)
		{
			/* a valid event first: the reader's own encoding of it */
			EventRec	ev;
			long		n;

			memset(&ev, 0, sizeof(ev));
			ev.event_id.ptr = "e";
			ev.event_id.len = 1;
			ev.user_id.ptr = "u";
			ev.user_id.len = 1;
			ev.event_type = 1;
			n = avro_encode_event(codec, 1, &ev, msg, 256, err);
			if (n < AVRO_WIRE_HEADER)
				abort();
			prefix = (size_t) n - AVRO_WIRE_HEADER;
		}
		body = (size_t) (g.end - g.p);
		if (avro_codec_check_writer(fresh, 7, schema, strlen(schema), err) == 0)
		{
			memset(msg, 0, AVRO_WIRE_HEADER);
			msg[4] = 7;
			memcpy(msg + AVRO_WIRE_HEADER + prefix, g.p, body);
			check_decode(fresh, msg, AVRO_WIRE_HEADER + prefix + body);
		}
		avro_codec_free(fresh);
		free(g.out);
	}
	else
	{
		/* the rest is the body under schema 1 or 2 */
		msg[4] = (size > 0 && (data[0] & 8)) ? 2 : 1;
		if (size > 1)
			memcpy(msg + AVRO_WIRE_HEADER, data + 1, size - 1);
		check_decode(codec, msg, AVRO_WIRE_HEADER + (size > 0 ? size - 1 : 0));
	}
	free(msg);
	return 0;
}
