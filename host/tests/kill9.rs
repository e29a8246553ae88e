//! `kill -9` in the middle of a stream of acknowledged appends loses nothing acknowledged.
//!
//! The test re-runs its own executable as a child process (selected by `RILL_KILL9_CHILD`) that
//! appends batches and prints each acknowledgement; the parent kills it with SIGKILL mid-stream,
//! reopens the store and checks every acknowledged batch. A SIGKILL keeps the page cache, so this
//! proves crash consistency of the file, not that anything reached the disk: the power-cut tests
//! in `storage::tests` (a simulated disk that drops unsynced writes) prove that.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use rill::storage::{Location, Store, StoreConfig, TopicConfig};
use rill_core::batch::{BatchParams, RecordSpec, batches, build_vec, set_base_offset, set_partition_leader_epoch};

const CHILD_ENV: &str = "RILL_KILL9_CHILD";

fn produced(i: u64) -> Vec<u8> {
    let value = format!("reading {i} ").repeat(1 + (i % 50) as usize);
    let records = [RecordSpec {
        timestamp: 1_700_000_000_000 + i as i64,
        key: Some(b"sensor-1"),
        value: Some(value.as_bytes()),
        headers: &[],
    }];
    build_vec(BatchParams::default(), &records).unwrap()
}

/// Not a test of its own: the child process's body when `RILL_KILL9_CHILD` names a data dir.
#[test]
fn kill9_child_entry_point() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = Store::open(Location::Dir(dir.into()), StoreConfig::default()).unwrap();
        store.create_topic("t", 1, TopicConfig { retention_ms: None, ..TopicConfig::default() }).await.unwrap();
        let mut stdout = std::io::stdout().lock();
        for i in 0.. {
            let at = store.append("t", 0, produced(i)).await.unwrap();
            writeln!(stdout, "acked {i} {}", at.base_offset).unwrap();
            stdout.flush().unwrap();
        }
    });
}

#[test]
fn kill9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill9_child_entry_point", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("acked ") else {
            continue;
        };
        let (i, offset) = rest.split_once(' ').unwrap();
        acked.push((i.parse::<u64>().unwrap(), offset.parse::<u64>().unwrap()));
        if acked.len() == 300 {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 300, "the child acknowledged appends before it was killed");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::open(Location::Dir(dir.path().into()), StoreConfig::default()).unwrap();
        let offsets = store.topic("t").unwrap().partition(0).unwrap().offsets();
        assert!(offsets.high_watermark >= 300, "high watermark {}", offsets.high_watermark);
        for (i, offset) in &acked {
            let read = store.read("t", 0, *offset, 1).unwrap();
            let mut stored = batches(&read.records).next().unwrap().unwrap().as_bytes().to_vec();
            set_base_offset(&mut stored, 0).unwrap();
            set_partition_leader_epoch(&mut stored, -1).unwrap();
            assert_eq!(stored, produced(*i), "batch {i} at offset {offset}");
        }
        store.shutdown().await;
    });
}
