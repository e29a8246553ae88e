"""confluent-kafka (librdkafka as PyPI bundles it today) against `rill serve`.

librdkafka is the library behind most Kafka tools and language bindings, so this is the client most
users run. Usage: confluent_kafka_client.py HOST:PORT. Each step prints a line; any mismatch raises
and exits non-zero with the step that failed. Run by tests/tests/kafka_confluent.rs with the
interpreter `cargo xtask test` prepares.
"""

import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

TOPIC = "ck-readings"
PARTITIONS = 3
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 200
TIMEOUT_S = 20


def step(text):
    print(f"confluent-kafka: {text}", flush=True)


def settle(futures):
    """Waits for every future of an AdminClient call; returns {key: result}."""
    return {key: future.result(timeout=TIMEOUT_S) for key, future in futures.items()}


def admin_topics(admin):
    # librdkafka 2.10+ sends 3 stray bytes after an "all topics" Metadata request (#5049).
    assert TOPIC not in admin.list_topics(timeout=TIMEOUT_S).topics
    settle(admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)]))
    listed = admin.list_topics(timeout=TIMEOUT_S).topics
    assert TOPIC in listed, sorted(listed)
    assert len(listed[TOPIC].partitions) == PARTITIONS, listed[TOPIC].partitions
    step("topics listed and created")

    resource = ConfigResource(ResourceType.TOPIC, TOPIC)
    retention = ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
    settle(admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[retention])]))
    described = next(iter(settle(admin.describe_configs([resource])).values()))
    assert described["retention.ms"].value == "3600000", described["retention.ms"]
    step("configs altered and described")


def produce_every_codec(broker):
    """An idempotent producer per codec, acks=all, keyed records; returns (values, start_ms)."""
    delivered, failures = [], []

    def on_delivery(error, message):
        (failures if error else delivered).append(error or message.value().decode())

    start_ms = int(time.time() * 1000)
    for codec in CODECS:
        producer = Producer(
            {
                "bootstrap.servers": broker,
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": codec,
                "linger.ms": 5,
            }
        )
        for i in range(PER_CODEC):
            producer.produce(TOPIC, key=str(i % 11).encode(), value=f"{codec}-{i}".encode(), on_delivery=on_delivery)
        assert producer.flush(TIMEOUT_S) == 0, f"{codec}: messages left unflushed"
    assert not failures, failures[:5]
    assert len(delivered) == len(CODECS) * PER_CODEC, len(delivered)
    step(f"{len(delivered)} records produced idempotently in {', '.join(CODECS)}")
    return delivered, start_ms


def consume(broker, group, wanted, topic=TOPIC, field=lambda message: message.value().decode()):
    """Reads up to `wanted` records of `topic` (from the earliest offset where the group has none)
    in consumer group `group` within TIMEOUT_S, commits, closes; returns `field` of each."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < wanted and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
            continue
        seen.append(field(message))
    consumer.commit(asynchronous=False)
    consumer.close()
    return seen


def groups(admin, broker, produced):
    seen = consume(broker, "ck-group", len(produced))
    assert sorted(seen) == sorted(produced), f"{len(seen)} of {len(produced)} records read"
    step("a consumer group read every record once and committed")

    listed = admin.list_consumer_groups().result(timeout=TIMEOUT_S)
    assert "ck-group" in [g.group_id for g in listed.valid], listed.valid
    description = settle(admin.describe_consumer_groups(["ck-group"]))["ck-group"]
    assert description.group_id == "ck-group" and not description.members, description
    committed = settle(admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("ck-group")]))["ck-group"]
    assert sum(tp.offset for tp in committed.topic_partitions) == len(produced), committed.topic_partitions
    step("groups listed and described, committed offsets fetched")


def offsets_by_time(admin, broker, start_ms):
    now_ms = int(time.time() * 1000)
    asked = {TopicPartition(TOPIC, p): OffsetSpec.for_timestamp(start_ms) for p in range(PARTITIONS)}
    by_admin = settle(admin.list_offsets(asked))
    assert all(info.offset == 0 for info in by_admin.values()), by_admin
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "ck-times"})
    later = consumer.offsets_for_times([TopicPartition(TOPIC, p, now_ms + 60_000) for p in range(PARTITIONS)], TIMEOUT_S)
    assert all(tp.offset == -1 and not tp.error for tp in later), later
    ends = settle(admin.list_offsets({TopicPartition(TOPIC, p): OffsetSpec.latest() for p in range(PARTITIONS)}))
    consumer.close()
    step("offsets listed by time")
    return {tp.partition: info.offset for tp, info in ends.items()}


def delete_records_and_recover(admin, broker, ends):
    """Deletes half of each partition; a group whose committed offsets are below the new log start
    gets OFFSET_OUT_OF_RANGE, resets to the earliest offset and reads the rest."""
    cut = {p: end // 2 for p, end in ends.items()}
    deleted = settle(admin.delete_records([TopicPartition(TOPIC, p, cut[p]) for p in range(PARTITIONS)]))
    assert {tp.partition: r.low_watermark for tp, r in deleted.items()} == cut, deleted
    step("records deleted")

    # ck-group committed the ends; a group that committed offset 0 everywhere is now below the start.
    stale = Consumer({"bootstrap.servers": broker, "group.id": "ck-stale"})
    stale.commit(offsets=[TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)], asynchronous=False)
    stale.close()
    left = sum(ends[p] - cut[p] for p in range(PARTITIONS))
    seen = consume(broker, "ck-stale", left)
    assert len(seen) == left, f"{len(seen)} of {left} records read after the reset"
    step("a group below the log start reset to the earliest offset and read the rest")


def main(broker):
    step(f"version {confluent_kafka.version()[0]}, librdkafka {confluent_kafka.libversion()[0]}")
    admin = AdminClient({"bootstrap.servers": broker})
    admin_topics(admin)
    produced, start_ms = produce_every_codec(broker)
    groups(admin, broker, produced)
    ends = offsets_by_time(admin, broker, start_ms)
    delete_records_and_recover(admin, broker, ends)
    settle(admin.delete_consumer_groups(["ck-group", "ck-stale"]))
    settle(admin.delete_topics([TOPIC]))
    assert TOPIC not in admin.list_topics(timeout=TIMEOUT_S).topics
    step("ok")


if __name__ == "__main__":
    main(sys.argv[1])
