"""kafka-python (a Python Kafka client nobody here wrote) against `rill serve`.

Usage: kafka_python_client.py HOST:PORT. Exits non-zero, with the failed assertion, on any
mismatch. Run by tests/tests/kafka_python.rs with the interpreter `cargo xtask test` prepares.
"""

import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

RECORDS = 300


def main(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker, client_id="rill-python-test")
    admin.create_topics([NewTopic("py-readings", num_partitions=3, replication_factor=1)])
    assert "py-readings" in admin.list_topics(), admin.list_topics()

    # Topic settings: altered and described.
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "py-readings", configs={"retention.ms": "3600000"})])
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "py-readings")])
    assert "3600000" in str(described), described

    # An idempotent producer, gzip, acks=all, keyed records over three partitions.
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", compression_type="gzip", enable_idempotence=True)
    futures = [producer.send("py-readings", key=str(i % 7).encode(), value=f"reading-{i}".encode()) for i in range(RECORDS)]
    producer.flush()
    acknowledged = [f.get(timeout=10) for f in futures]
    assert {m.partition for m in acknowledged} == {0, 1, 2}, "keys spread over every partition"
    producer.close()

    # A consumer group reads everything once and commits.
    consumer = KafkaConsumer(
        "py-readings",
        bootstrap_servers=broker,
        group_id="py-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10000,
    )
    seen = []
    for message in consumer:
        seen.append(message.value.decode())
        if len(seen) == RECORDS:
            break
    consumer.commit()
    assert sorted(seen) == sorted(f"reading-{i}" for i in range(RECORDS)), f"{len(seen)} records read"
    assert len(set(seen)) == RECORDS, "each record once"

    groups = [g[0] if isinstance(g, tuple) else g for g in admin.list_groups()]
    assert any("py-group" in str(g) for g in groups), groups
    offsets = admin.list_group_offsets("py-group")
    # Keyed by group in kafka-python 3 (by partition in 2.x).
    offsets = offsets.get("py-group", offsets)
    assert sum(o.offset for o in offsets.values()) == RECORDS, offsets
    consumer.close()

    # After the member left: the group can be deleted.
    admin.delete_groups(["py-group"])
    admin.delete_topics(["py-readings"])
    assert "py-readings" not in admin.list_topics()
    admin.close()
    print("kafka-python: ok")


if __name__ == "__main__":
    main(sys.argv[1])
