"""Reads a whole topic with confluent-kafka (librdkafka) as a consumer group would.

Usage: confluent_kafka_read.py HOST:PORT TOPIC COUNT. Reads from the earliest offset until COUNT
records arrived (or 20 s passed) and prints one JSON line: {"read": N, "timestamps": [...]}.
"""

import json
import sys

from confluent_kafka_client import consume


def main(broker, topic, count):
    timestamps = consume(broker, f"read-{topic}", count, topic, lambda message: message.timestamp()[1])
    print(json.dumps({"read": len(timestamps), "timestamps": sorted(timestamps)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
