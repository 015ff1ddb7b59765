/*
 * avro_decode.c - Confluent wire-format Avro messages to EventRec, with
 * writer-to-reader schema resolution, over avro-c.  See avro_decode.h for
 * the contract; this file adds the allocator that keeps avro-c's memory per
 * message (and never hands avro-c a NULL), and the walker that validates a
 * body, and bounds what it expands to, before avro-c reads it.
 */
#include "core/avro_decode.h"

#include <avro.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const avro_event_types[4] = {"IM", "CL", "PS", "CN"};

/* ---- allocation: long-lived (schemas) or per-message arena ---- */

#define CHUNK_MAGIC 0x41767241u	/* "Avra" */

typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	size_t		size;
	uint32_t	magic;
	uint32_t	in_arena;
	/* keep the payload 16-byte aligned */
	uint64_t	pad;
} Chunk;

typedef struct Arena
{
	Chunk		head;			/* list sentinel */
	size_t		bytes;
	size_t		peak;			/* most bytes held since the last reset */
} Arena;

/* the arena that allocations go to now; NULL: long-lived, plain malloc */
static Arena *current_arena = NULL;
static size_t long_lived_bytes = 0;	/* held outside arenas (schemas) */
static int	allocator_installed = 0;
static void (*alloc_failure) (size_t size) = NULL;

void
avro_set_alloc_failure_handler(void (*handler) (size_t size))
{
	alloc_failure = handler;
}

/* malloc failed: never return NULL to avro-c, which would crash on it */
static void
out_of_memory(size_t size)
{
	if (alloc_failure != NULL)
		alloc_failure(size);
	abort();
}

static void
arena_init(Arena *a)
{
	a->head.prev = a->head.next = &a->head;
	a->bytes = 0;
	a->peak = 0;
}

static void
arena_unlink(Arena *a, Chunk *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	a->bytes -= c->size;
}

static void
arena_reset(Arena *a)
{
	Chunk	   *c = a->head.next;

	while (c != &a->head)
	{
		Chunk	   *next = c->next;

		c->magic = 0;
		free(c);
		c = next;
	}
	arena_init(a);
}

/*
 * avro-c's single allocation entry point.  Memory allocated while an arena
 * is current belongs to it even if it is reallocated or freed later;
 * everything else is plain heap memory.  It never returns NULL for a
 * request: the walk has bounded what a message may ask for, and a failure
 * of malloc itself goes to the allocation-failure handler.
 */
static void *
codec_allocator(void *ud, void *ptr, size_t osize, size_t nsize)
{
	Chunk	   *old = ptr ? (Chunk *) ptr - 1 : NULL;
	Arena	   *a;
	Chunk	   *c;

	(void) ud;
	(void) osize;
	if (old != NULL && old->magic != CHUNK_MAGIC)
		abort();				/* not ours: a bug, not bad input */
	a = old ? (old->in_arena ? current_arena : NULL) : current_arena;
	if (old != NULL && old->in_arena && a == NULL)
		abort();				/* arena memory touched after its release */

	if (nsize == 0)
	{
		if (old != NULL)
		{
			if (a != NULL)
				arena_unlink(a, old);
			else
				long_lived_bytes -= old->size;
			old->magic = 0;
			free(old);
		}
		return NULL;
	}
	if (nsize > SIZE_MAX / 2)
		out_of_memory(nsize);

	if (old != NULL && a != NULL)
		arena_unlink(a, old);
	else if (old != NULL)
		long_lived_bytes -= old->size;
	c = realloc(old, sizeof(Chunk) + nsize);
	if (c == NULL)
		out_of_memory(nsize);
	if (a == NULL)
		long_lived_bytes += nsize;
	c->magic = CHUNK_MAGIC;
	c->size = nsize;
	c->in_arena = a != NULL;
	if (a != NULL)
	{
		c->next = a->head.next;
		c->prev = &a->head;
		a->head.next->prev = c;
		a->head.next = c;
		a->bytes += nsize;
		if (a->bytes > a->peak)
			a->peak = a->bytes;
	}
	return c + 1;
}

static void
install_allocator(void)
{
	if (!allocator_installed)
	{
		avro_set_allocator(codec_allocator, NULL);
		allocator_installed = 1;
	}
}

/* ---- the reader schema: the fields this decoder fills ---- */

typedef enum ReaderKind
{
	RK_STRING,
	RK_ENUM,
	RK_TIME,
	RK_LONG,
	RK_INT,
	RK_DOUBLE
} ReaderKind;

typedef struct ReaderField
{
	const char *name;
	ReaderKind	kind;
	bool		optional;		/* ["null", X] with default null */
} ReaderField;

#define NFIELDS 14
static const ReaderField reader_fields[NFIELDS] = {
	{"event_id", RK_STRING, false},
	{"user_id", RK_STRING, false},
	{"event_type", RK_ENUM, false},
	{"event_time", RK_TIME, false},
	{"advertiser_id", RK_LONG, true},
	{"campaign_id", RK_LONG, true},
	{"auction_id", RK_STRING, true},
	{"pixel_id", RK_LONG, true},
	{"publisher", RK_STRING, true},
	{"creative", RK_STRING, true},
	{"placement", RK_STRING, true},
	{"product", RK_STRING, true},
	{"quantity", RK_INT, true},
	{"revenue", RK_DOUBLE, true},
};

typedef struct WriterSchema
{
	int32_t		id;
	avro_schema_t schema;
	avro_value_iface_t *iface;
	int			field_index[NFIELDS];	/* writer field, -1 = reader default */
	size_t		bytes;			/* avro-c's memory for it */
	uint64_t	used;			/* last use, for eviction */
} WriterSchema;

struct AvroCodec
{
	avro_schema_t reader;
	avro_value_iface_t *reader_iface;
	WriterSchema *writers;
	int			nwriters;
	int			cap;
	int			last;			/* index of the last writer used */
	avro_reader_t mem_reader;
	Arena		arena;
	avro_value_t value;			/* the arena's value, released on release */
	bool		has_value;
	bool		value_complete; /* avro-c finished reading it */
	long		max_values;		/* per message */
	size_t		cache_limit;	/* bytes of writer schemas kept */
	size_t		schema_bytes;	/* now */
	uint64_t	clock;			/* uses */
	size_t		last_values;	/* what the last validated body held */
	size_t		last_bytes;
};

#if defined(__GNUC__)
static void set_err(char *err, const char *fmt,...) __attribute__((format(printf, 2, 3)));
#endif

static void
set_err(char *err, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(err, AVRO_ERR_LEN, fmt, ap);
	va_end(ap);
}

static avro_schema_t
deref(avro_schema_t s)
{
	int			guard = 0;

	while (s != NULL && avro_typeof(s) == AVRO_LINK && guard++ < AVRO_MAX_DEPTH)
		s = avro_schema_link_target(s);
	return s;
}

/* Does a non-union writer type promote to the reader kind (Avro resolution)? */
static bool
promotes(avro_schema_t w, ReaderKind kind)
{
	int			i;

	switch (avro_typeof(w))
	{
		case AVRO_STRING:
		case AVRO_BYTES:
			return kind == RK_STRING;
		case AVRO_INT32:
			return kind == RK_INT || kind == RK_LONG || kind == RK_TIME || kind == RK_DOUBLE;
		case AVRO_INT64:
			return kind == RK_LONG || kind == RK_TIME || kind == RK_DOUBLE;
		case AVRO_FLOAT:
		case AVRO_DOUBLE:
			return kind == RK_DOUBLE;
		case AVRO_ENUM:
			if (kind != RK_ENUM)
				return false;
			/* at least one symbol in common; others fail when used */
			for (i = 0; i < avro_schema_enum_number_of_symbols(w); i++)
			{
				const char *sym = avro_schema_enum_get(w, i);
				int			j;

				for (j = 0; j < 4; j++)
					if (strcmp(sym, avro_event_types[j]) == 0)
						return true;
			}
			return false;
		default:
			return false;
	}
}

static bool
field_resolves(avro_schema_t w, const ReaderField *rf)
{
	w = deref(w);
	if (w == NULL)
		return false;
	if (avro_typeof(w) == AVRO_UNION)
	{
		size_t		i;

		/* a union resolves if some non-null branch does */
		for (i = 0; i < avro_schema_union_size(w); i++)
		{
			avro_schema_t b = deref(avro_schema_union_branch(w, (int) i));

			if (b != NULL && avro_typeof(b) != AVRO_NULL && promotes(b, rf->kind))
				return true;
		}
		return false;
	}
	if (avro_typeof(w) == AVRO_NULL)
		return rf->optional;
	return promotes(w, rf->kind);
}

/* Resolve a writer record to the reader fields; -1 and err if it cannot. */
static int
resolve(avro_schema_t w, int *field_index, char *err)
{
	int			i;

	w = deref(w);
	if (w == NULL || avro_typeof(w) != AVRO_RECORD)
	{
		set_err(err, "writer schema is not a record");
		return -1;
	}
	for (i = 0; i < NFIELDS; i++)
	{
		const ReaderField *rf = &reader_fields[i];
		int			wi = avro_schema_record_field_get_index(w, rf->name);

		if (wi < 0)
		{
			if (!rf->optional)
			{
				set_err(err, "writer schema has no field \"%s\" and the reader's has no default", rf->name);
				return -1;
			}
			field_index[i] = -1;
			continue;
		}
		if (!field_resolves(avro_schema_record_field_get_by_index(w, wi), rf))
		{
			set_err(err, "field \"%s\" of the writer schema does not resolve to the reader's type", rf->name);
			return -1;
		}
		field_index[i] = wi;
	}
	return 0;
}

AvroCodec *
avro_codec_new(const char *reader_json, size_t len, char *err)
{
	AvroCodec  *codec;
	int			idx[NFIELDS];
	int			i;

	install_allocator();
	if (err)
		err[0] = '\0';
	codec = calloc(1, sizeof(AvroCodec));
	if (codec == NULL)
	{
		set_err(err, "out of memory");
		return NULL;
	}
	arena_init(&codec->arena);
	codec->last = -1;
	codec->max_values = AVRO_DEFAULT_MAX_VALUES;
	codec->cache_limit = 16 * 1024 * 1024;
	if (avro_schema_from_json_length(reader_json, len, &codec->reader) != 0)
	{
		set_err(err, "reader schema: %s", avro_strerror());
		free(codec);
		return NULL;
	}
	/* the reader schema must be the one this decoder was written for */
	if (resolve(codec->reader, idx, err) != 0 ||
		avro_schema_record_size(codec->reader) != NFIELDS)
	{
		if (err && err[0] == '\0')
			set_err(err, "reader schema does not have the %d fields of propensity.Event", NFIELDS);
		avro_schema_decref(codec->reader);
		free(codec);
		return NULL;
	}
	for (i = 0; i < NFIELDS; i++)
	{
		avro_schema_t f = deref(avro_schema_record_field_get_by_index(codec->reader, idx[i]));

		if (idx[i] != i || (reader_fields[i].optional != (avro_typeof(f) == AVRO_UNION)))
		{
			set_err(err, "reader field %d is not \"%s\" as the decoder expects", i, reader_fields[i].name);
			avro_schema_decref(codec->reader);
			free(codec);
			return NULL;
		}
	}
	codec->reader_iface = avro_generic_class_from_schema(codec->reader);
	codec->mem_reader = avro_reader_memory("", 0);
	if (codec->reader_iface == NULL || codec->mem_reader == NULL)
	{
		set_err(err, "reader schema: %s", avro_strerror());
		avro_codec_free(codec);
		return NULL;
	}
	return codec;
}

void
avro_codec_free(AvroCodec *codec)
{
	int			i;

	if (codec == NULL)
		return;
	avro_codec_release(codec);
	for (i = 0; i < codec->nwriters; i++)
	{
		avro_value_iface_decref(codec->writers[i].iface);
		avro_schema_decref(codec->writers[i].schema);
	}
	free(codec->writers);
	if (codec->reader_iface)
		avro_value_iface_decref(codec->reader_iface);
	if (codec->mem_reader)
		avro_reader_free(codec->mem_reader);
	avro_schema_decref(codec->reader);
	free(codec);
}

static WriterSchema *
find_writer(AvroCodec *codec, int32_t id)
{
	int			i;

	if (codec->last >= 0 && codec->writers[codec->last].id == id)
	{
		codec->writers[codec->last].used = ++codec->clock;
		return &codec->writers[codec->last];
	}
	for (i = 0; i < codec->nwriters; i++)
		if (codec->writers[i].id == id)
		{
			codec->last = i;
			codec->writers[i].used = ++codec->clock;
			return &codec->writers[i];
		}
	return NULL;
}

/* Drop writer i (never the one in use: callers release the value first). */
static void
drop_writer(AvroCodec *codec, int i)
{
	WriterSchema *w = &codec->writers[i];

	avro_value_iface_decref(w->iface);
	avro_schema_decref(w->schema);
	codec->schema_bytes -= w->bytes;
	codec->writers[i] = codec->writers[--codec->nwriters];
	codec->last = -1;
}

/* Drop the least recently used writers while over the limit, keeping keep. */
static void
evict_writers(AvroCodec *codec, int32_t keep)
{
	while (codec->schema_bytes > codec->cache_limit && codec->nwriters > 1)
	{
		int			victim = -1;
		int			i;

		for (i = 0; i < codec->nwriters; i++)
			if (codec->writers[i].id != keep &&
				(victim < 0 || codec->writers[i].used < codec->writers[victim].used))
				victim = i;
		if (victim < 0)
			break;
		drop_writer(codec, victim);
	}
}

void
avro_codec_set_cache_limit(AvroCodec *codec, size_t bytes)
{
	codec->cache_limit = bytes;
}

int
avro_codec_schema_count(const AvroCodec *codec)
{
	return codec->nwriters;
}

size_t
avro_codec_schema_bytes(const AvroCodec *codec)
{
	return codec->schema_bytes;
}

/* nesting of [ and { outside strings: avro-c and jansson recurse on it */
bool
json_nesting_exceeds(const char *json, size_t len, int limit)
{
	int			depth = 0;
	bool		in_str = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = json[i];

		if (in_str)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
		}
		else if (c == '"')
			in_str = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > limit)
				return true;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return false;
}

bool
avro_codec_has_schema(const AvroCodec *codec, int32_t schema_id)
{
	return find_writer((AvroCodec *) codec, schema_id) != NULL;
}

int
avro_codec_check_writer(AvroCodec *codec, int32_t schema_id, const char *json, size_t len,
						char *err)
{
	avro_schema_t schema;
	WriterSchema w;
	size_t		before;

	if (json_nesting_exceeds(json, len, 2 * AVRO_MAX_DEPTH))
	{
		set_err(err, "schema nested deeper than %d levels", 2 * AVRO_MAX_DEPTH);
		return -1;
	}
	/* the value of the last message may use a schema about to be dropped */
	avro_codec_release(codec);
	before = long_lived_bytes;
	if (avro_schema_from_json_length(json, len, &schema) != 0)
	{
		const char *msg = avro_strerror();

		set_err(err, "not a valid Avro schema: %s", msg && *msg ? msg : "parse error");
		return -1;
	}
	memset(&w, 0, sizeof(w));
	if (resolve(schema, w.field_index, err) != 0)
	{
		avro_schema_decref(schema);
		return -1;
	}
	if (schema_id < 0 || find_writer(codec, schema_id) != NULL)
	{
		avro_schema_decref(schema);
		return 0;
	}
	w.id = schema_id;
	w.schema = schema;
	w.iface = avro_generic_class_from_schema(schema);
	if (w.iface == NULL)
	{
		set_err(err, "writer schema: %s", avro_strerror());
		avro_schema_decref(schema);
		return -1;
	}
	w.bytes = long_lived_bytes > before ? long_lived_bytes - before : 0;
	w.used = ++codec->clock;
	if (codec->nwriters == codec->cap)
	{
		int			ncap = codec->cap ? codec->cap * 2 : 8;
		WriterSchema *n = realloc(codec->writers, sizeof(WriterSchema) * ncap);

		if (n == NULL)
		{
			set_err(err, "out of memory");
			avro_value_iface_decref(w.iface);
			avro_schema_decref(schema);
			return -1;
		}
		codec->writers = n;
		codec->cap = ncap;
	}
	codec->writers[codec->nwriters++] = w;
	codec->schema_bytes += w.bytes;
	evict_writers(codec, schema_id);
	return 0;
}

bool
avro_wire_schema_id(const uint8_t *buf, size_t len, int32_t *schema_id)
{
	if (len < AVRO_WIRE_HEADER || buf[0] != 0)
		return false;
	*schema_id = (int32_t) (((uint32_t) buf[1] << 24) | ((uint32_t) buf[2] << 16) |
							((uint32_t) buf[3] << 8) | (uint32_t) buf[4]);
	return true;
}

/* ---- validation walk ---- */

typedef struct Walk
{
	const uint8_t *p;
	const uint8_t *end;
	char	   *err;
	size_t		values;			/* nodes of the value tree so far */
	size_t		max_values;
	size_t		bytes;			/* of strings, bytes, fixed and map keys */
} Walk;

static int
walk_long(Walk *w, int64_t *out, int maxbytes)
{
	uint64_t	v = 0;
	int			shift = 0;
	int			n = 0;

	for (;;)
	{
		uint8_t		b;

		if (w->p >= w->end)
		{
			set_err(w->err, "truncated: varint runs past the end of the message");
			return -1;
		}
		if (n == maxbytes)
		{
			set_err(w->err, "varint longer than %d bytes", maxbytes);
			return -1;
		}
		b = *w->p++;
		n++;
		v |= (uint64_t) (b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		shift += 7;
	}
	*out = (int64_t) ((v >> 1) ^ (~(v & 1) + 1));
	return 0;
}

static int
walk_skip(Walk *w, int64_t n, const char *what)
{
	if (n < 0)
	{
		set_err(w->err, "negative %s length %lld", what, (long long) n);
		return -1;
	}
	if ((uint64_t) n > (uint64_t) (w->end - w->p))
	{
		set_err(w->err, "truncated: %s of %lld bytes, %lld left", what, (long long) n,
				(long long) (w->end - w->p));
		return -1;
	}
	w->p += n;
	return 0;
}

static int	walk_value(Walk *w, avro_schema_t s, int depth);

static int
walk_blocks(Walk *w, avro_schema_t items, bool map, int depth)
{
	for (;;)
	{
		int64_t		count;
		int64_t		i;

		if (walk_long(w, &count, 10) != 0)
			return -1;
		if (count == 0)
			return 0;
		if (count < 0)
		{
			int64_t		size;

			if (count == INT64_MIN)
			{
				set_err(w->err, "block count out of range");
				return -1;
			}
			count = -count;
			if (walk_long(w, &size, 10) != 0)
				return -1;
			if (size < 0 || (uint64_t) size > (uint64_t) (w->end - w->p))
			{
				set_err(w->err, "truncated: block of %lld bytes, %lld left", (long long) size,
						(long long) (w->end - w->p));
				return -1;
			}
		}
		/* even zero-byte items may not outnumber the bytes of the message */
		if ((uint64_t) count > (uint64_t) (w->end - w->p) + 1)
		{
			set_err(w->err, "block count %lld exceeds the message", (long long) count);
			return -1;
		}
		for (i = 0; i < count; i++)
		{
			if (map)
			{
				int64_t		klen;

				if (walk_long(w, &klen, 10) != 0 || walk_skip(w, klen, "map key") != 0)
					return -1;
				w->bytes += (size_t) klen;
			}
			if (walk_value(w, items, depth + 1) != 0)
				return -1;
		}
	}
}

static int
walk_value(Walk *w, avro_schema_t s, int depth)
{
	int64_t		v;
	size_t		i;

	if (depth > AVRO_MAX_DEPTH)
	{
		set_err(w->err, "value nested deeper than %d levels", AVRO_MAX_DEPTH);
		return -1;
	}
	if (++w->values > w->max_values)
	{
		set_err(w->err, "message holds more than %zu values (record fields, array items, map entries)",
				w->max_values);
		return -1;
	}
	s = deref(s);
	if (s == NULL)
	{
		set_err(w->err, "unresolved named type in the writer schema");
		return -1;
	}
	switch (avro_typeof(s))
	{
		case AVRO_NULL:
			return 0;
		case AVRO_BOOLEAN:
			if (w->p >= w->end)
			{
				set_err(w->err, "truncated: boolean past the end of the message");
				return -1;
			}
			if (*w->p > 1)
			{
				set_err(w->err, "boolean byte %d is neither 0 nor 1", *w->p);
				return -1;
			}
			w->p++;
			return 0;
		case AVRO_INT32:
			if (walk_long(w, &v, 5) != 0)
				return -1;
			if (v < INT32_MIN || v > INT32_MAX)
			{
				set_err(w->err, "int %lld out of range", (long long) v);
				return -1;
			}
			return 0;
		case AVRO_INT64:
			return walk_long(w, &v, 10);
		case AVRO_FLOAT:
			return walk_skip(w, 4, "float");
		case AVRO_DOUBLE:
			return walk_skip(w, 8, "double");
		case AVRO_STRING:
		case AVRO_BYTES:
			if (walk_long(w, &v, 10) != 0 ||
				walk_skip(w, v, avro_typeof(s) == AVRO_STRING ? "string" : "bytes") != 0)
				return -1;
			w->bytes += (size_t) v;
			return 0;
		case AVRO_FIXED:
			if (walk_skip(w, avro_schema_fixed_size(s), "fixed") != 0)
				return -1;
			w->bytes += (size_t) avro_schema_fixed_size(s);
			return 0;
		case AVRO_ENUM:
			if (walk_long(w, &v, 5) != 0)
				return -1;
			if (v < 0 || v >= avro_schema_enum_number_of_symbols(s))
			{
				set_err(w->err, "enum index %lld out of range for %s (%d symbols)", (long long) v,
						avro_schema_name(s), avro_schema_enum_number_of_symbols(s));
				return -1;
			}
			return 0;
		case AVRO_UNION:
			if (walk_long(w, &v, 10) != 0)
				return -1;
			if (v < 0 || (uint64_t) v >= avro_schema_union_size(s))
			{
				set_err(w->err, "union branch %lld out of range (%zu branches)", (long long) v,
						avro_schema_union_size(s));
				return -1;
			}
			return walk_value(w, avro_schema_union_branch(s, (int) v), depth + 1);
		case AVRO_RECORD:
			for (i = 0; i < avro_schema_record_size(s); i++)
				if (walk_value(w, avro_schema_record_field_get_by_index(s, (int) i), depth + 1) != 0)
					return -1;
			return 0;
		case AVRO_ARRAY:
			return walk_blocks(w, avro_schema_array_items(s), false, depth);
		case AVRO_MAP:
			return walk_blocks(w, avro_schema_map_values(s), true, depth);
		default:
			set_err(w->err, "unsupported type in the writer schema");
			return -1;
	}
}

int
avro_validate_body(const AvroCodec *codec, int32_t schema_id, const uint8_t *body, size_t len,
				   char *err)
{
	WriterSchema *ws = find_writer((AvroCodec *) codec, schema_id);
	Walk		w;

	if (ws == NULL)
	{
		set_err(err, "unknown schema id %d", schema_id);
		return -1;
	}
	w.p = body;
	w.end = body + len;
	w.err = err;
	w.values = 0;
	w.bytes = 0;
	w.max_values = (size_t) codec->max_values;
	((AvroCodec *) codec)->last_values = 0;
	((AvroCodec *) codec)->last_bytes = 0;
	if (walk_value(&w, ws->schema, 0) != 0)
		return -1;
	((AvroCodec *) codec)->last_values = w.values;
	((AvroCodec *) codec)->last_bytes = w.bytes;
	if (w.p != w.end)
	{
		set_err(err, "extra bytes after the record: %zu", (size_t) (w.end - w.p));
		return -1;
	}
	return 0;
}

/* ---- decoding ---- */

void
avro_codec_release(AvroCodec *codec)
{
	if (codec->has_value)
	{
		current_arena = &codec->arena;
		if (codec->value_complete)
			avro_value_decref(&codec->value);	/* frees into the arena */
		else
		{
			/*
			 * avro-c stopped half-way (a partly grown array, say): walking
			 * the value could crash.  Its memory is all in the arena; only
			 * the interface reference it holds is given back.
			 */
			avro_value_iface_decref(codec->value.iface);
		}
		current_arena = NULL;
		codec->has_value = false;
		codec->value_complete = false;
	}
	arena_reset(&codec->arena);
}

size_t
avro_codec_arena_bytes(const AvroCodec *codec)
{
	return codec->arena.bytes;
}

size_t
avro_codec_arena_peak(const AvroCodec *codec)
{
	return codec->arena.peak;
}

void
avro_codec_set_max_values(AvroCodec *codec, long max_values)
{
	codec->max_values = max_values < 1 ? 1 : max_values;
}

void
avro_codec_last_expansion(const AvroCodec *codec, size_t *values, size_t *bytes)
{
	*values = codec->last_values;
	*bytes = codec->last_bytes;
}

/*
 * A generous bound on avro-c's memory for a body of `values` nodes and
 * `bytes` bytes of strings and keys: each node's instance (at most a few
 * words, records inline), a chunk header per allocation, arrays and maps
 * doubling (and briefly held twice while they grow), the hash table of a
 * map, and each string copied with its NUL.
 */
size_t
avro_expansion_bound(size_t values, size_t bytes)
{
	return 65536 + values * 512 + bytes * 8;
}

/* One resolved field value. */
typedef struct FieldVal
{
	bool		isnull;
	AvroStr		s;
	int64_t		i;
	double		d;
} FieldVal;

static int
read_field(avro_value_t *rec, int widx, const ReaderField *rf, FieldVal *fv, char *err)
{
	avro_value_t v;
	avro_value_t branch;
	avro_type_t t;
	int32_t		i32;
	float		f;
	const char *str;
	const void *bytes;
	size_t		size;
	int			e;

	memset(fv, 0, sizeof(*fv));
	if (widx < 0)
	{
		fv->isnull = true;		/* the reader's default, null */
		return 0;
	}
	if (avro_value_get_by_index(rec, (size_t) widx, &v, NULL) != 0)
		goto failed;
	t = avro_value_get_type(&v);
	if (t == AVRO_UNION)
	{
		if (avro_value_get_current_branch(&v, &branch) != 0)
			goto failed;
		v = branch;
		t = avro_value_get_type(&v);
	}
	switch (t)
	{
		case AVRO_NULL:
			if (!rf->optional)
			{
				set_err(err, "field \"%s\" is null", rf->name);
				return -1;
			}
			fv->isnull = true;
			return 0;
		case AVRO_STRING:
			if (rf->kind != RK_STRING || avro_value_get_string(&v, &str, &size) != 0)
				break;
			fv->s.ptr = str;
			fv->s.len = size > 0 ? size - 1 : 0;	/* avro-c counts the NUL */
			return 0;
		case AVRO_BYTES:
			if (rf->kind != RK_STRING || avro_value_get_bytes(&v, &bytes, &size) != 0)
				break;
			fv->s.ptr = bytes ? bytes : "";
			fv->s.len = size;
			return 0;
		case AVRO_INT32:
			if (avro_value_get_int(&v, &i32) != 0)
				goto failed;
			fv->i = i32;
			fv->d = i32;
			return rf->kind == RK_STRING || rf->kind == RK_ENUM ? (set_err(err, "field \"%s\": int does not resolve", rf->name), -1) : 0;
		case AVRO_INT64:
			if (rf->kind == RK_INT || rf->kind == RK_STRING || rf->kind == RK_ENUM)
				break;
			if (avro_value_get_long(&v, &fv->i) != 0)
				goto failed;
			fv->d = (double) fv->i;
			return 0;
		case AVRO_FLOAT:
			if (rf->kind != RK_DOUBLE || avro_value_get_float(&v, &f) != 0)
				break;
			fv->d = f;
			return 0;
		case AVRO_DOUBLE:
			if (rf->kind != RK_DOUBLE || avro_value_get_double(&v, &fv->d) != 0)
				break;
			return 0;
		case AVRO_ENUM:
			if (rf->kind != RK_ENUM)
				break;
			if (avro_value_get_enum(&v, &e) != 0)
				goto failed;
			{
				avro_schema_t es = avro_value_get_schema(&v);
				const char *sym = es ? avro_schema_enum_get(es, e) : NULL;
				int			j;

				for (j = 0; sym != NULL && j < 4; j++)
					if (strcmp(sym, avro_event_types[j]) == 0)
					{
						fv->i = j;
						return 0;
					}
				set_err(err, "field \"%s\": symbol \"%s\" is not in the reader's enum", rf->name,
						sym ? sym : "?");
				return -1;
			}
		default:
			break;
	}
	set_err(err, "field \"%s\": writer type does not resolve to the reader's", rf->name);
	return -1;

failed:
	set_err(err, "field \"%s\": %s", rf->name, avro_strerror());
	return -1;
}

AvroDecodeStatus
avro_decode_event(AvroCodec *codec, const uint8_t *buf, size_t len, EventRec *out, char *err)
{
	int32_t		id;
	WriterSchema *ws;
	avro_value_t value;
	FieldVal	fv[NFIELDS];
	int			i;
	const uint8_t *body;
	size_t		blen;

	avro_codec_release(codec);
	memset(out, 0, sizeof(*out));
	if (!avro_wire_schema_id(buf, len, &id))
	{
		if (len < AVRO_WIRE_HEADER)
			set_err(err, "message of %zu bytes is shorter than the 5-byte header", len);
		else
			set_err(err, "magic byte %d is not 0", (int) buf[0]);
		return AVRO_BAD_MESSAGE;
	}
	ws = find_writer(codec, id);
	if (ws == NULL)
	{
		set_err(err, "unknown schema id %d", id);
		return AVRO_UNKNOWN_SCHEMA;
	}
	body = buf + AVRO_WIRE_HEADER;
	blen = len - AVRO_WIRE_HEADER;
	if (avro_validate_body(codec, id, body, blen, err) != 0)
		return AVRO_BAD_MESSAGE;

	/* avro-c allocates into the arena from here, within the walk's bound */
	codec->arena.peak = 0;
	current_arena = &codec->arena;
	if (avro_generic_value_new(ws->iface, &value) != 0)
	{
		current_arena = NULL;
		set_err(err, "cannot allocate the value: %s", avro_strerror());
		return AVRO_BAD_MESSAGE;
	}
	codec->value = value;
	codec->has_value = true;
	avro_reader_memory_set_source(codec->mem_reader, (const char *) body, (int64_t) blen);
	if (avro_value_read(codec->mem_reader, &value) != 0)
	{
		current_arena = NULL;
		set_err(err, "avro-c: %s", avro_strerror());
		return AVRO_BAD_MESSAGE;	/* the arena is released on the next call */
	}
	codec->value_complete = true;
	for (i = 0; i < NFIELDS; i++)
		if (read_field(&value, ws->field_index[i], &reader_fields[i], &fv[i], err) != 0)
		{
			current_arena = NULL;
			return AVRO_BAD_MESSAGE;
		}
	current_arena = NULL;

	out->event_id = fv[0].s;
	out->user_id = fv[1].s;
	out->event_type = (int) fv[2].i;
	out->event_time_ms = fv[3].i;
	out->has_advertiser_id = !fv[4].isnull;
	out->advertiser_id = fv[4].i;
	out->has_campaign_id = !fv[5].isnull;
	out->campaign_id = fv[5].i;
	out->auction_id = fv[6].s;
	out->has_pixel_id = !fv[7].isnull;
	out->pixel_id = fv[7].i;
	out->publisher = fv[8].s;
	out->creative = fv[9].s;
	out->placement = fv[10].s;
	out->product = fv[11].s;
	out->has_quantity = !fv[12].isnull;
	out->quantity = (int32_t) fv[12].i;
	out->has_revenue = !fv[13].isnull;
	out->revenue = fv[13].d;
	return AVRO_OK;
}

/* ---- encoding (producers and tests) ---- */

/*
 * Set a string value from s.len bytes at s.ptr.  avro-c copies size bytes
 * counting a terminating NUL, which a PostgreSQL text does not have: the
 * string goes through a terminated copy, never read one byte past its end.
 */
static int
set_string(avro_value_t *v, AvroStr s)
{
	char		small[128];
	char	   *tmp = s.len < sizeof(small) ? small : avro_malloc(s.len + 1);
	int			rc;

	memcpy(tmp, s.ptr, s.len);
	tmp[s.len] = '\0';
	rc = avro_value_set_string_len(v, tmp, s.len + 1);
	if (tmp != small)
		avro_free(tmp, s.len + 1);
	return rc;
}

static int
set_opt_string(avro_value_t *rec, int idx, AvroStr s)
{
	avro_value_t f;
	avro_value_t b;

	if (avro_value_get_by_index(rec, (size_t) idx, &f, NULL) != 0)
		return -1;
	if (s.ptr == NULL)
		return avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b);
	return avro_value_set_branch(&f, 1, &b) || set_string(&b, s);
}

static int
set_opt_long(avro_value_t *rec, int idx, bool has, int64_t v, int kind)
{
	avro_value_t f;
	avro_value_t b;

	if (avro_value_get_by_index(rec, (size_t) idx, &f, NULL) != 0)
		return -1;
	if (!has)
		return avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b);
	if (avro_value_set_branch(&f, 1, &b) != 0)
		return -1;
	if (kind == RK_INT)
		return avro_value_set_int(&b, (int32_t) v);
	return avro_value_set_long(&b, v);
}

long
avro_encode_event(AvroCodec *codec, int32_t schema_id, const EventRec *ev, uint8_t *buf,
				  size_t cap, char *err)
{
	avro_value_t rec;
	avro_value_t f;
	avro_value_t b;
	avro_writer_t writer;
	int			rc = 0;
	long		result = -1;

	if (cap < AVRO_WIRE_HEADER || ev->event_id.ptr == NULL || ev->user_id.ptr == NULL ||
		ev->event_type < 0 || ev->event_type > 3)
	{
		set_err(err, "event cannot be encoded: missing field or buffer too small");
		return -1;
	}
	avro_codec_release(codec);
	current_arena = &codec->arena;
	if (avro_generic_value_new(codec->reader_iface, &rec) != 0)
	{
		current_arena = NULL;
		set_err(err, "cannot allocate the value: %s", avro_strerror());
		return -1;
	}
	codec->value = rec;
	codec->has_value = true;
	codec->value_complete = true;	/* built field by field: always whole */
	rc |= avro_value_get_by_index(&rec, 0, &f, NULL) || set_string(&f, ev->event_id);
	rc |= avro_value_get_by_index(&rec, 1, &f, NULL) || set_string(&f, ev->user_id);
	rc |= avro_value_get_by_index(&rec, 2, &f, NULL) || avro_value_set_enum(&f, ev->event_type);
	rc |= avro_value_get_by_index(&rec, 3, &f, NULL) || avro_value_set_long(&f, ev->event_time_ms);
	rc |= set_opt_long(&rec, 4, ev->has_advertiser_id, ev->advertiser_id, RK_LONG);
	rc |= set_opt_long(&rec, 5, ev->has_campaign_id, ev->campaign_id, RK_LONG);
	rc |= set_opt_string(&rec, 6, ev->auction_id);
	rc |= set_opt_long(&rec, 7, ev->has_pixel_id, ev->pixel_id, RK_LONG);
	rc |= set_opt_string(&rec, 8, ev->publisher);
	rc |= set_opt_string(&rec, 9, ev->creative);
	rc |= set_opt_string(&rec, 10, ev->placement);
	rc |= set_opt_string(&rec, 11, ev->product);
	rc |= set_opt_long(&rec, 12, ev->has_quantity, ev->quantity, RK_INT);
	rc |= avro_value_get_by_index(&rec, 13, &f, NULL);
	if (ev->has_revenue)
		rc |= avro_value_set_branch(&f, 1, &b) || avro_value_set_double(&b, ev->revenue);
	else
		rc |= avro_value_set_branch(&f, 0, &b) || avro_value_set_null(&b);
	if (rc != 0)
	{
		current_arena = NULL;
		set_err(err, "cannot build the value: %s", avro_strerror());
		return -1;
	}
	writer = avro_writer_memory((const char *) buf + AVRO_WIRE_HEADER, (int64_t) (cap - AVRO_WIRE_HEADER));
	if (writer == NULL)
		set_err(err, "cannot allocate the writer");
	else if (avro_value_write(writer, &rec) != 0)
		set_err(err, "message does not fit in %zu bytes", cap);
	else
	{
		buf[0] = 0;
		buf[1] = (uint8_t) ((uint32_t) schema_id >> 24);
		buf[2] = (uint8_t) ((uint32_t) schema_id >> 16);
		buf[3] = (uint8_t) ((uint32_t) schema_id >> 8);
		buf[4] = (uint8_t) schema_id;
		result = AVRO_WIRE_HEADER + (long) avro_writer_tell(writer);
	}
	if (writer != NULL)
		avro_writer_free(writer);
	current_arena = NULL;
	avro_codec_release(codec);
	return result;
}
