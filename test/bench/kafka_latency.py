#!/usr/bin/python3
"""Produces JSON events to a Kafka topic at a steady rate with confluent-kafka
(a client independent of the product), for the produce-to-visible latency
of test/bench/kafka.sh, and writes one line per acknowledged message:

    PARTITION<TAB>OFFSET<TAB>PRODUCED_AT_MS

    kafka_latency.py BOOTSTRAP TOPIC RATE SECONDS OUTFILE

The produce time is taken when the message is handed to the client; the
messages go out in ticks of 10 ms (RATE / 100 each), keyed by user id.
"""
import json
import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    rate, seconds, outfile = int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2,
                         "queue.buffering.max.messages": 1000000})
    rows = []
    failed = []

    def report(err, msg, sent):
        if err is not None:
            failed.append(err)
        else:
            rows.append("%d\t%d\t%d\n" % (msg.partition(), msg.offset(), sent))

    per_tick = max(rate // 100, 1)
    start = time.time()
    n = 0
    tick = 0
    while time.time() - start < seconds:
        target = start + tick * 0.01
        now = time.time()
        if target > now:
            time.sleep(target - now)
        sent = int(time.time() * 1000)
        for _ in range(per_tick):
            user = "lat%d" % (n % 50000)
            value = json.dumps({"event_id": "lat-%d" % n, "user_id": user, "event_type": "IM",
                                "event_time": sent, "advertiser_id": 1, "campaign_id": 1 + n % 10})
            producer.produce(topic, value.encode(), user.encode(),
                             on_delivery=lambda err, msg, s=sent: report(err, msg, s))
            n += 1
        producer.poll(0)
        tick += 1
    producer.flush(60)
    with open(outfile, "w") as f:
        f.writelines(rows)
    print("%d messages produced at %d/s for %.0f s, %d acknowledged"
          % (n, rate, seconds, len(rows)))
    if failed:
        print("failed: %s" % failed[0], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
