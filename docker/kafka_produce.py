#!/usr/bin/python3
"""Produces messages to a Kafka topic with confluent-kafka (Debian's
python3-confluent-kafka, a client independent of the product): one message
per input line "KEY<TAB>BASE64-VALUE", in order, keyed by KEY.

    kafka_produce.py BOOTSTRAP TOPIC < lines

Prints how many messages the brokers acknowledged; exits 1 if any failed.
"""
import base64
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "queue.buffering.max.messages": 1000000})
    failed = []
    acked = [0]

    def report(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked[0] += 1

    for line in sys.stdin:
        key, value = line.rstrip("\n").split("\t", 1)
        while True:
            try:
                producer.produce(topic, base64.b64decode(value), key.encode(), on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    print("%d messages acknowledged by the brokers" % acked[0])
    if failed:
        print("%d failed: %s" % (len(failed), failed[0]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
