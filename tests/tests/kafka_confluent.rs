//! The real `rill` binary against confluent-kafka, i.e. the librdkafka that PyPI bundles today
//! (pinned in `tests/python/requirements.txt`): the client behind most Kafka tools and language
//! bindings, newer than Debian's kcat. `tests/python/confluent_kafka_client.py` lists topics (the
//! request librdkafka 2.10+ sends with 3 stray bytes), creates them, alters and describes
//! configs, produces idempotently in every codec, consumes in a group with commits, lists and
//! describes groups, lists offsets by time, deletes records, and shows that a group whose
//! committed offsets fell below the log start resets and reads on (a null record set in the
//! out-of-range answer made librdkafka drop the whole Fetch response, forever).

use rill_tests::{Running, python_client};

#[test]
fn confluent_kafka_admin_produce_consume_and_recover_below_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    let stdout = python_client("confluent_kafka_client.py", &[&broker]);
    assert!(stdout.contains("confluent-kafka: ok"), "{stdout}");
    let log = rill.drain_log().join("\n");
    assert!(!log.contains("closing kafka connection"), "no connection was closed for a protocol error:\n{log}");
    rill.stop();
}
