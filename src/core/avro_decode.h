/*
 * avro_decode.h - Avro messages in the Confluent wire format (magic byte 0,
 * 4-byte big-endian schema id, Avro binary body) decoded into plain event
 * structs, with the writer schema resolved to the reader schema
 * schemas/event.avsc.  Pure C over avro-c; no PostgreSQL header.
 *
 * Safety: avro-c trusts lengths and indexes read from its input, and does
 * not survive every allocation failure (a NULL in the middle of growing a
 * map or an array crashes it, then or at the next release).  So:
 * - every body is first walked against the writer schema by
 *   avro_validate_body(), which checks each length against the bytes that
 *   remain, each enum and union index against the schema, each block count
 *   against the input size, and counts the values the body would make
 *   (record fields, array items, map entries, union branches): past the
 *   codec's limit (avro_codec_set_max_values) the message is refused before
 *   avro-c sees it, so that memory stays within avro_expansion_bound();
 * - avro-c's per-message allocations never fail for want of budget; a
 *   failure of malloc itself goes to the allocation-failure handler, which
 *   must not return (abort() by default; inside the server, FATAL);
 * - a value avro-c did not finish is released without walking it.
 * Memory of a message is released by the next decode or
 * avro_codec_release().
 */
#ifndef PROPENSITY_AVRO_DECODE_H
#define PROPENSITY_AVRO_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AVRO_WIRE_HEADER 5		/* magic byte + schema id */
#define AVRO_MAX_DEPTH 32		/* nesting of writer schemas we decode */
#define AVRO_ERR_LEN 256
#define AVRO_DEFAULT_MAX_VALUES 10000	/* values one message may hold */

typedef struct AvroCodec AvroCodec;

/* a string of the message; ptr == NULL means null */
typedef struct AvroStr
{
	const char *ptr;
	size_t		len;
} AvroStr;

/* One decoded event: field for field the reader schema schemas/event.avsc. */
typedef struct EventRec
{
	AvroStr		event_id;
	AvroStr		user_id;
	int			event_type;		/* index into avro_event_types: IM, CL, PS, CN */
	int64_t		event_time_ms;	/* timestamp-millis: ms since 1970-01-01 UTC */
	bool		has_advertiser_id;
	int64_t		advertiser_id;
	bool		has_campaign_id;
	int64_t		campaign_id;
	AvroStr		auction_id;
	bool		has_pixel_id;
	int64_t		pixel_id;
	AvroStr		publisher;
	AvroStr		creative;
	AvroStr		placement;
	AvroStr		product;
	bool		has_quantity;
	int32_t		quantity;
	bool		has_revenue;
	double		revenue;
} EventRec;

extern const char *const avro_event_types[4];

typedef enum AvroDecodeStatus
{
	AVRO_OK = 0,
	AVRO_BAD_MESSAGE,			/* not decodable: error text says why */
	AVRO_UNKNOWN_SCHEMA			/* schema id not added yet: add it, retry */
} AvroDecodeStatus;

/*
 * A codec holds the reader schema and the writer schemas added to it by id.
 * Schemas live in malloc'd memory until avro_codec_free().  NULL and an error
 * text when reader_json is not a usable reader schema.
 */
extern AvroCodec *avro_codec_new(const char *reader_json, size_t len, char *err);
extern void avro_codec_free(AvroCodec *codec);

/*
 * Parse a writer schema and check that it resolves to the reader schema
 * (each reader field without a default is in the writer with a type that
 * promotes to it).  0 on success; -1 and an error text otherwise.  With
 * schema_id >= 0 the schema is also kept under that id for decoding, and
 * the least recently used schemas are dropped (they are loaded again when
 * needed) while the codec's schemas hold more than its cache limit.  A
 * schema nested deeper than AVRO_MAX_DEPTH is refused before it is parsed.
 */
extern int	avro_codec_check_writer(AvroCodec *codec, int32_t schema_id,
									const char *json, size_t len, char *err);
extern bool avro_codec_has_schema(const AvroCodec *codec, int32_t schema_id);

/*
 * Whether JSON text nests [ and { (outside strings) deeper than limit: a
 * test made before a recursive parser sees the text.
 */
extern bool json_nesting_exceeds(const char *json, size_t len, int limit);

/* Memory the writer schemas kept may hold (bytes, >= 0); 16 MB at first. */
extern void avro_codec_set_cache_limit(AvroCodec *codec, size_t bytes);

/* Writer schemas kept now, and the memory avro-c holds for them. */
extern int	avro_codec_schema_count(const AvroCodec *codec);
extern size_t avro_codec_schema_bytes(const AvroCodec *codec);

/* The schema id a wire-format message names; false if it has no header. */
extern bool avro_wire_schema_id(const uint8_t *buf, size_t len, int32_t *schema_id);

/*
 * Decode one wire-format message.  On AVRO_OK the strings of *out point into
 * memory that stays valid until the next call on this codec or
 * avro_codec_release(); the caller copies what it keeps.
 */
extern AvroDecodeStatus avro_decode_event(AvroCodec *codec, const uint8_t *buf, size_t len,
										  EventRec *out, char *err);

/* Release what the last decode allocated (also done by the next decode). */
extern void avro_codec_release(AvroCodec *codec);

/* Bytes the per-message arena holds now (0 after a release); for tests. */
extern size_t avro_codec_arena_bytes(const AvroCodec *codec);

/* The most the arena held since the last decode began; for tests. */
extern size_t avro_codec_arena_peak(const AvroCodec *codec);

/* Values one message may hold (>= 1); AVRO_DEFAULT_MAX_VALUES at first. */
extern void avro_codec_set_max_values(AvroCodec *codec, long max_values);

/*
 * What the last validated body held: values (nodes of the decoded tree)
 * and bytes of strings, bytes, fixed and map keys.  The bound that avro-c's
 * memory for such a body stays within: checked by the tests and the fuzzer
 * on every message, so that the value limit bounds memory.
 */
extern void avro_codec_last_expansion(const AvroCodec *codec, size_t *values, size_t *bytes);
extern size_t avro_expansion_bound(size_t values, size_t bytes);

/*
 * Called when malloc fails under avro-c (never for input past a limit:
 * those are refused first).  It must not return; NULL restores abort().
 */
extern void avro_set_alloc_failure_handler(void (*handler) (size_t size));

/*
 * Walk an Avro binary body against the schema of writer schema_id without
 * decoding it.  0 when the whole body is one well-formed value of at most
 * the codec's limit of values; -1 and an error text otherwise.
 */
extern int	avro_validate_body(const AvroCodec *codec, int32_t schema_id,
							   const uint8_t *body, size_t len, char *err);

/*
 * Encode an event with the reader schema under schema_id, in the wire
 * format, into buf (capacity cap).  Returns the length, or -1 and an error
 * text (e.g. buf too small).
 */
extern long avro_encode_event(AvroCodec *codec, int32_t schema_id, const EventRec *ev,
							  uint8_t *buf, size_t cap, char *err);

#endif
