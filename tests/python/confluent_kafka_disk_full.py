"""confluent-kafka against a `rill serve` whose data directory is a small filesystem, filled up.

Usage: confluent_kafka_disk_full.py KAFKA_HOST:PORT HTTP_HOST:PORT. Produces incompressible
records until the broker refuses one, and checks that:
- the refusal is an answer (KAFKA_STORAGE_ERROR, with Rill's reason), not a client timeout;
- `/ready` is 503 and says appends are refused and why, `/metrics` counts the refusals;
- every acknowledged record reads back, and a consumer group still commits;
- DeleteRecords frees space through Kafka, and appends resume without a restart.
Each step prints a line; any mismatch raises. Run by tests/tests/disk_full.rs.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "fill"
VALUE_BYTES = 16 * 1024
TIMEOUT_S = 20


def step(text):
    print(f"disk-full: {text}", flush=True)


def http_get(http, path):
    """(status, body) of GET http://HTTP/path, whatever the status."""
    try:
        with urllib.request.urlopen(f"http://{http}{path}", timeout=TIMEOUT_S) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.read().decode()


def produce_until_refused(broker, values, limit):
    """Produces one record at a time (no retries: the broker's answer is the outcome) until one is
    refused or `limit` are stored; returns the refusal (or None) with `values` extended by
    {offset: value} of the acknowledged ones."""
    producer = Producer({"bootstrap.servers": broker, "acks": "all", "retries": 0, "linger.ms": 0,
                         "compression.type": "none", "message.timeout.ms": 10000})
    outcome = {}

    def delivered(err, message):
        outcome["err"] = err
        if err is None:
            outcome["offset"] = message.offset()

    for _ in range(limit):
        value = os.urandom(VALUE_BYTES)
        outcome.clear()
        producer.produce(TOPIC, value=value, partition=0, on_delivery=delivered)
        producer.flush(TIMEOUT_S)
        assert outcome, "a delivery report arrived"
        if outcome["err"] is not None:
            return outcome["err"]
        values[outcome["offset"]] = value
    return None


def read_back(broker, group, values, start):
    """Reads the partition from `start` in consumer group `group`, checks every record against
    `values`, and commits."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(TOPIC, 0, start)])
    wanted = {offset for offset in values if offset >= start}
    deadline = time.time() + TIMEOUT_S * 3
    while wanted and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        assert values[message.offset()] == message.value(), f"record {message.offset()} differs"
        wanted.discard(message.offset())
    assert not wanted, f"{len(wanted)} acknowledged records not read, from {min(wanted)}"
    consumer.commit(asynchronous=False)
    consumer.close()


def main(broker, http):
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=TIMEOUT_S)
    values = {}
    refusal = produce_until_refused(broker, values, limit=4000)
    assert refusal is not None, "the filesystem filled up"
    assert refusal.code() == KafkaError.KAFKA_STORAGE_ERROR, refusal
    filled = len(values)
    assert filled > 100, f"only {filled} records fitted"
    step(f"refused after {filled} records: {refusal.str()}")

    status, body = http_get(http, "/ready")
    ready = json.loads(body)
    assert status == 503 and ready["appends"] == "refused", (status, body)
    # Refused where one more record would eat into the reserve.
    assert ready["available_bytes"] < ready["reserve_bytes"] + 2 * VALUE_BYTES, body
    assert "disk almost full" in ready["reason"], body
    _, metrics = http_get(http, "/metrics")
    refused = [line for line in metrics.splitlines() if line.startswith("rill_storage_appends_refused_no_space_total")]
    assert refused and float(refused[0].split()[-1]) >= 1, refused
    step("/ready says why appends are refused; /metrics counts them")

    read_back(broker, "fill-readers", values, 0)
    step("every acknowledged record reads back; the group committed")

    cut = max(values) // 2 + 1
    deleted = admin.delete_records([TopicPartition(TOPIC, 0, cut)])
    for result in deleted.values():
        assert result.result(timeout=TIMEOUT_S).low_watermark == cut
    status, body = http_get(http, "/ready")
    assert status == 200 and json.loads(body)["appends"] == "accepted", (status, body)
    step(f"DeleteRecords below {cut} freed space; /ready is 200 again")

    values = {offset: value for offset, value in values.items() if offset >= cut}
    refusal = produce_until_refused(broker, values, limit=200)
    assert len(values) - (filled - cut) >= 100, f"only {len(values) - (filled - cut)} records after the deletion"
    read_back(broker, "fill-readers-2", values, cut)
    step(f"appends resumed without a restart ({len(values) - (filled - cut)} more); all read back")
    step("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
