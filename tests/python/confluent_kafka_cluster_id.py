"""Prints the cluster id a broker reports, as librdkafka (confluent-kafka) sees it.

Usage: confluent_kafka_cluster_id.py HOST:PORT. Prints the id on one line.
"""

import sys

from confluent_kafka.admin import AdminClient


def main(broker):
    metadata = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10)
    if not metadata.cluster_id:
        sys.exit("the broker reported no cluster id")
    print(metadata.cluster_id)


if __name__ == "__main__":
    main(sys.argv[1])
