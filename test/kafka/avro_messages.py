#!/usr/bin/python3
"""Writes Avro messages in the Confluent wire format (byte 0, a 4-byte
big-endian schema id, the Avro binary body), one file per message, with
Debian's python3-avro: an encoder independent of the product's decoder.

    avro_messages.py SCHEMA_FILE SCHEMA_ID OUT_DIR < events.jsonl

Each input line is a JSON object of one event (event_time in epoch
milliseconds); OUT_DIR gets 000000.msg, 000001.msg, ... and keys.txt (the
user id of each message, one per line).
"""
import io
import json
import os
import struct
import sys

import datetime

import avro.io
import avro.schema


def millis_fields(schema):
    """The record's fields of logical type timestamp-millis."""
    return [f.name for f in schema.fields
            if getattr(f.type, "logical_type", None) == "timestamp-millis"]


def main():
    schema_file, schema_id, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(schema_file) as f:
        schema = avro.schema.parse(f.read())
    writer = avro.io.DatumWriter(schema)
    os.makedirs(out_dir, exist_ok=True)
    keys = []
    millis = millis_fields(schema)
    for n, line in enumerate(sys.stdin):
        event = json.loads(line)
        for name in millis:
            # python3-avro takes a datetime for timestamp-millis
            event[name] = datetime.datetime.fromtimestamp(event[name] / 1000, datetime.timezone.utc)
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", schema_id))
        writer.write(event, avro.io.BinaryEncoder(buf))
        with open(os.path.join(out_dir, "%06d.msg" % n), "wb") as f:
            f.write(buf.getvalue())
        keys.append(event["user_id"])
    with open(os.path.join(out_dir, "keys.txt"), "w") as f:
        f.write("\n".join(keys) + "\n")


if __name__ == "__main__":
    main()
