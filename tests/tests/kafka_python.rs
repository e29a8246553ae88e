//! The real `rill` binary against kafka-python, a Python client nobody here wrote
//! (`tests/python/kafka_python_client.py`): admin (topics, configs, groups), an idempotent gzip
//! producer with acks=all, and a consumer group that reads everything once and commits.
//! `cargo xtask test` prepares the interpreter and passes it in `RILL_PYTHON`.

use std::process::Command;

use rill_tests::Running;

#[test]
fn kafka_python_admin_produce_and_group_consume() {
    let python = std::env::var_os("RILL_PYTHON")
        .expect("RILL_PYTHON is not set: run the black-box tests with `cargo xtask test`, which installs kafka-python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kafka_python_client.py");
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    let output = Command::new(python).arg(&script).arg(&broker).output().expect("python runs");
    assert!(
        output.status.success(),
        "kafka-python failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("kafka-python: ok"));
    rill.stop();
}
