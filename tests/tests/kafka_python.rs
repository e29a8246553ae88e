//! The real `rill` binary against kafka-python, a Python client nobody here wrote
//! (`tests/python/kafka_python_client.py`): admin (topics, configs, groups), an idempotent gzip
//! producer with acks=all, and a consumer group that reads everything once and commits.
//! `cargo xtask test` prepares the interpreter and passes it in `RILL_PYTHON`.

use rill_tests::{Running, python_client};

#[test]
fn kafka_python_admin_produce_and_group_consume() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    let stdout = python_client("kafka_python_client.py", &[&broker]);
    assert!(stdout.contains("kafka-python: ok"), "{stdout}");
    rill.stop();
}
