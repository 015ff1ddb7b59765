/*
 * fuzz_avro.c - libFuzzer target for the Avro decoder (src/core/avro_decode.c):
 * any input is a wire-format message for a codec that knows the reader
 * schema (id 1) and a writer schema with arrays, maps and unions (id 2).
 * Build and run: make fuzz-avro (clang, ASan, UBSan).  Every input must
 * return, never crash, leak or overrun, and leave the arena released.
 */
#include <stdint.h>
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static AvroCodec *codec = NULL;
	char		err[AVRO_ERR_LEN];
	EventRec	ev;
	uint8_t    *msg;

	if (codec == NULL)
	{
		codec = avro_codec_new(event_schema_json, strlen(event_schema_json), err);
		if (codec == NULL ||
			avro_codec_check_writer(codec, 1, event_schema_json, strlen(event_schema_json), err) != 0 ||
			avro_codec_check_writer(codec, 2, writer_v2, strlen(writer_v2), err) != 0)
			abort();
	}
	/* the first byte picks the schema id; the rest is the body */
	msg = malloc(size + AVRO_WIRE_HEADER);
	memset(msg, 0, AVRO_WIRE_HEADER);
	msg[4] = (size > 0 && (data[0] & 1)) ? 2 : 1;
	if (size > 1)
		memcpy(msg + AVRO_WIRE_HEADER, data + 1, size - 1);
	if (avro_decode_event(codec, msg, AVRO_WIRE_HEADER + (size > 0 ? size - 1 : 0), &ev, err) == AVRO_OK)
	{
		if (ev.event_type < 0 || ev.event_type > 3 || ev.event_id.ptr == NULL || ev.user_id.ptr == NULL)
			abort();
	}
	avro_codec_release(codec);
	if (avro_codec_arena_bytes(codec) != 0)
		abort();
	free(msg);
	return 0;
}
