//! A gateway's SD card fills up, for real: `rill serve` on a 24 MiB tmpfs of its own, filled by
//! confluent-kafka (librdkafka) until the broker refuses (`tests/python/confluent_kafka_disk_full.py`).
//! Proves that the broker stops appends before the filesystem is full and says so at once
//! (KAFKA_STORAGE_ERROR, `/ready`, a metric, one log line), keeps serving every acknowledged record,
//! lets DeleteRecords free space through Kafka, and resumes appends by itself.
//!
//! The tmpfs is mounted in a private mount namespace (`unshare`) that dies with the process: even a
//! `kill -9` leaves nothing mounted. As root (CI) the namespace needs no more; elsewhere a user
//! namespace maps the caller to root inside it.

use std::path::Path;
use std::process::Command;

use rill_tests::{Running, python_client, rill_bin};

/// Size of the filesystem: a reserve of 4 MiB (its default for this size) and room for ~1,200
/// records of 16 KiB.
const FILESYSTEM_BYTES: &str = "24m";

/// `rill serve` on a fresh tmpfs mounted over `dir`, in a mount namespace of its own.
fn serve_on_small_filesystem(dir: &Path) -> Command {
    // SAFETY-free: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = Command::new("unshare");
    if !root {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o "size=$1" tmpfs "$2" && shift 2 && exec "$@""#)
        .args(["sh", FILESYSTEM_BYTES])
        .arg(dir)
        .arg(rill_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RILL_LOG", "info")
        .env_remove("RUST_LOG");
    command
}

#[test]
fn a_full_filesystem_refuses_appends_keeps_reads_and_recovers_through_delete_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(&mut serve_on_small_filesystem(dir.path()));
    let broker = rill.kafka_addr();
    let http = rill.http_addr();
    let stdout = python_client("confluent_kafka_disk_full.py", &[&broker, &http]);
    assert!(stdout.contains("disk-full: ok"), "{stdout}");
    rill.stop();
    let log = rill.log.join("\n");
    let started = rill.log.iter().filter(|line| line.contains("disk almost full: appends are refused")).count();
    let ended = rill.log.iter().filter(|line| line.contains("free space is back")).count();
    assert!(
        ended >= 1 && (started == ended || started == ended + 1),
        "one line when refusals start, one when they end:\n{log}"
    );
    assert!(!log.contains("reopening the database"), "the disk never filled: no IO error, no reopen:\n{log}");
    assert!(!dir.path().join("rill.redb").exists(), "the data lived on the private tmpfs only");
}
