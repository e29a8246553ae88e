//! Store faults through [`SimDisk`]: power cuts, a full disk, failing fsyncs, and what the
//! interval durability policy may lose.

use std::time::Duration;

use super::fault::SimDisk;
use super::tests::{T0, all_batches, as_produced, batch, no_retention, open, stored_as_produced};
use super::*;

/// Appends until the disk dies, then checks after power returns that every acknowledged batch is
/// there byte for byte and that nothing unacknowledged is half-visible.
async fn power_cut_run(seed: u64, torn: bool) {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("t", 2, no_retention()).await.unwrap();
    disk.cut_power_after(20 + seed * 7 % 400);
    let mut acked = Vec::new();
    let mut attempted = Vec::new();
    for i in 0..200u64 {
        let partition = (i % 2) as u32;
        let produced = batch(1 + (i * 13 % 9) as usize, (seed as usize * 31 + i as usize * 97) % 6000, T0, i as u8);
        attempted.push(produced.clone());
        match store.append("t", partition, produced.clone()).await {
            Ok(at) => acked.push((partition, at.base_offset, produced)),
            Err(_) => break,
        }
    }
    assert!(disk.is_dead(), "seed {seed}: the power cut happened");
    store.shutdown().await;
    disk.restore_power(torn.then_some(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1));

    let store = open(&disk, DurabilityPolicy::EveryCommit);
    for (partition, offset, produced) in &acked {
        assert_eq!(
            &stored_as_produced(&store, "t", *partition, *offset),
            produced,
            "seed {seed}: acknowledged batch lost"
        );
    }
    for partition in 0..2 {
        let stored = all_batches(&store, "t", partition);
        let acked_here = acked.iter().filter(|a| a.0 == partition).count();
        // At most the one in-flight append may have landed without its acknowledgement, whole.
        assert!(
            stored.len() == acked_here || stored.len() == acked_here + 1,
            "seed {seed}: {} stored, {acked_here} acked",
            stored.len()
        );
        for (_, bytes) in stored.iter().skip(acked_here) {
            assert!(
                attempted.contains(&as_produced(bytes)),
                "seed {seed}: an unacknowledged batch is stored whole or not at all"
            );
        }
    }
    // And the store keeps working.
    store.append("t", 0, batch(1, 10, T0, 0)).await.unwrap();
    store.shutdown().await;
}

#[tokio::test]
async fn power_cut_keeps_every_acknowledged_batch() {
    for seed in 0..40 {
        power_cut_run(seed, false).await;
    }
}

#[tokio::test]
async fn power_cut_with_torn_unsynced_writes_keeps_every_acknowledged_batch() {
    for seed in 0..40 {
        power_cut_run(seed, true).await;
    }
}

#[tokio::test]
async fn interval_policy_loses_only_the_unsynced_window() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::Interval(Duration::from_secs(3600)));
    store.create_topic("t", 1, no_retention()).await.unwrap();
    for i in 0..5 {
        store.append("t", 0, batch(1, 100, T0, i)).await.unwrap();
    }
    store.flush().await.unwrap();
    let offsets = store.topic("t").unwrap().partition(0).unwrap().offsets();
    assert_eq!(offsets.durable_offset, 5);
    for i in 5..9 {
        store.append("t", 0, batch(1, 100, T0, i)).await.unwrap();
    }
    let offsets = store.topic("t").unwrap().partition(0).unwrap().offsets();
    assert_eq!((offsets.high_watermark, offsets.durable_offset), (9, 5), "visible at once, durable later");
    disk.cut_power_after(0);
    store.shutdown().await;
    disk.restore_power(None);
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    assert_eq!(all_batches(&store, "t", 0).len(), 5, "exactly the synced prefix survives");
    store.shutdown().await;
}

#[tokio::test]
async fn interval_policy_syncs_on_its_own() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::Interval(Duration::from_millis(20)));
    store.create_topic("t", 1, no_retention()).await.unwrap();
    store.append("t", 0, batch(1, 100, T0, 1)).await.unwrap();
    let mut offsets = store.watch_offsets("t", 0).unwrap();
    tokio::time::timeout(Duration::from_secs(10), offsets.wait_for(|o| o.durable_offset == 1)).await.unwrap().unwrap();
    disk.cut_power_after(0);
    store.shutdown().await;
    disk.restore_power(None);
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    assert_eq!(all_batches(&store, "t", 0).len(), 1);
    store.shutdown().await;
}

/// Appends fail with a clear error while the disk is full or fsync fails, reads keep working,
/// and appends resume when the fault clears, without losing anything acknowledged.
async fn storage_fault_run(full_disk: bool) {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("t", 1, no_retention()).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..10 {
        let produced = batch(3, 200, T0, i);
        acked.push((store.append("t", 0, produced.clone()).await.unwrap().base_offset, produced));
    }
    if full_disk {
        disk.set_capacity(Some(disk.size_bytes()));
    } else {
        disk.fail_syncs(true);
    }
    let mut refused = 0;
    for i in 0..200 {
        let produced = batch(3, 3000, T0, i as u8);
        match store.append("t", 0, produced.clone()).await {
            Ok(at) => acked.push((at.base_offset, produced)),
            Err(AppendError::Storage(cause)) => {
                refused += 1;
                let expected = if full_disk { "No space left" } else { "fsync" };
                assert!(cause.to_string().contains(expected), "the error names the cause: {cause}");
                // A full disk is told apart from other IO errors (retry later, free space), and
                // neither is mistaken for corrupt data.
                assert_eq!(cause.is_full(), full_disk, "{cause:?}");
                assert!(!cause.is_corrupt(), "{cause:?}");
                if refused >= 3 {
                    break;
                }
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(refused >= 3, "appends fail while the fault lasts");
    assert!(matches!(store.writer_state(), WriterState::Recovering { .. }), "/health says so");
    if full_disk {
        for (offset, produced) in &acked {
            assert_eq!(
                &stored_as_produced(&store, "t", 0, *offset),
                produced,
                "reads keep working while the disk is full"
            );
        }
    } else {
        // A disk that fails every fsync cannot even be reopened (redb's repair syncs), so reads
        // wait for it; what they must never do is return something else.
        for (offset, produced) in &acked {
            match store.read("t", 0, *offset, 1) {
                Ok(read) => assert!(
                    read.records.windows(produced.len() - 17).any(|w| w == &produced[17..]) || read.records.is_empty()
                ),
                Err(e) => assert!(matches!(e, ReadError::Storage(_)), "{e}"),
            }
        }
    }
    disk.set_capacity(None);
    disk.fail_syncs(false);
    let produced = batch(1, 10, T0, 99);
    let mut resumed = None;
    for _ in 0..200 {
        match store.append("t", 0, produced.clone()).await {
            Ok(at) => {
                resumed = Some(at.base_offset);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let offset = resumed.expect("appends resume once the fault clears");
    assert_eq!(store.writer_state(), WriterState::Accepting);
    acked.push((offset, produced));
    store.shutdown().await;
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    for (offset, produced) in &acked {
        assert_eq!(&stored_as_produced(&store, "t", 0, *offset), produced, "acknowledged batch lost");
    }
    // all_batches checks CRCs and contiguous offsets. After a failed fsync the data may still
    // have reached the disk (the kernel does not say), so a refused append may be there — whole.
    let stored = all_batches(&store, "t", 0).len();
    if full_disk {
        assert_eq!(stored, acked.len(), "refused appends left nothing behind");
    } else {
        assert!(stored >= acked.len() && stored <= acked.len() + refused, "{stored} stored, {} acked", acked.len());
    }
    store.shutdown().await;
}

#[tokio::test]
async fn disk_full_refuses_appends_keeps_reads_and_recovers() {
    storage_fault_run(true).await;
}

#[tokio::test]
async fn fsync_failure_refuses_appends_keeps_reads_and_recovers() {
    storage_fault_run(false).await;
}

#[tokio::test]
async fn a_failed_interval_sync_counts_one_failure_not_one_per_wake_up() {
    // The interval policy syncs in the background. When that sync fails, the commits it was to
    // make durable cannot be synced any more; the writer must not keep trying (each try counted
    // one more failure and doubled the back-off, to its 30 s cap within a millisecond).
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::Interval(Duration::from_millis(10)));
    store.create_topic("t", 1, no_retention()).await.unwrap();
    store.append("t", 0, batch(1, 10, T0, 1)).await.unwrap();
    disk.fail_syncs(true);
    store.append("t", 0, batch(1, 10, T0, 2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    disk.fail_syncs(false);
    let cleared = std::time::Instant::now();
    while store.append("t", 0, batch(1, 10, T0, 3)).await.is_err() {
        assert!(cleared.elapsed() < Duration::from_secs(5), "writes resume after the first back-off (100 ms)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.shutdown().await;
}

/// Appends 32 KB batches to `t`/0 until one is refused, adding the acknowledged ones to `acked`;
/// returns the refusal.
async fn fill_until_refused(store: &Store, acked: &mut Vec<(u64, Vec<u8>)>) -> StorageError {
    for _ in 0..10_000 {
        let produced = batch(4, 8000, T0, acked.len() as u8);
        match store.append("t", 0, produced.clone()).await {
            Ok(at) => acked.push((at.base_offset, produced)),
            Err(AppendError::Storage(cause)) => return cause,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    panic!("10,000 batches fitted: the disk never filled up");
}

/// A disk that fills up meets the free-space reserve before it is full: appends are refused at
/// once with `NoSpace` (no IO error, no reopen), while offset commits, reads and deletions go on;
/// DeleteRecords frees pages inside the file (not on the filesystem) and appends resume by
/// themselves, without a restart, up to what the deletion freed.
#[tokio::test]
async fn appends_stop_at_the_free_space_reserve_and_deletions_make_room() {
    const RESERVE: u64 = 2 << 20;
    let disk = SimDisk::new();
    let config = StoreConfig {
        reserve_bytes: Some(RESERVE),
        space_probe: Some(disk.space_probe()),
        group_bytes_max: 64 << 10,
        ..StoreConfig::default()
    };
    let store = Store::open(Location::Backend(disk.factory()), config.clone()).unwrap();
    store.create_topic("t", 1, no_retention()).await.unwrap();
    disk.set_sparse(true);
    disk.set_capacity(Some(disk.size_bytes() + (12 << 20)));
    let mut acked = Vec::new();
    let refusal = fill_until_refused(&store, &mut acked).await;
    assert!(matches!(refusal, StorageError::NoSpace(_)), "refused before the disk is full: {refusal:?}");
    assert!(refusal.is_full() && !refusal.needs_reopen(), "{refusal:?}");
    assert!(matches!(store.writer_state(), WriterState::RefusingAppends(_)));
    assert_eq!(
        store.appends_refused(),
        match refusal {
            StorageError::NoSpace(no_space) => Some(no_space),
            _ => None,
        }
    );
    assert!(store.stats().appends_refused_no_space.get() >= 1);
    // Metadata still commits from the reserve; everything acknowledged reads back.
    let committed = CommittedOffset { offset: 5, leader_epoch: -1, metadata: String::new(), commit_ms: T0 };
    store.commit_offsets("g", vec![(("t".to_owned(), 0), committed)]).await.expect("offset commits go on");
    for (offset, produced) in &acked {
        assert_eq!(&stored_as_produced(&store, "t", 0, *offset), produced, "reads go on");
    }
    // Freeing space through Kafka's DeleteRecords: appends resume by themselves.
    let half = acked[acked.len() / 2].0;
    store.delete_records("t", 0, half).await.expect("deletions use the reserve");
    assert_eq!(store.writer_state(), WriterState::Accepting, "the deletion ended the refusal");
    let resumed_at = acked.len();
    // They refill the pages the deletion freed, and stop again before the disk is full.
    let refusal = fill_until_refused(&store, &mut acked).await;
    assert!(acked.len() - resumed_at > 10, "appends resumed without a restart");
    assert!(matches!(refusal, StorageError::NoSpace(_)), "reusing freed pages did not fill the disk: {refusal:?}");
    store.delete_records("t", 0, acked[acked.len() - 1].0).await.expect("the reserve still holds a deletion");
    store.shutdown().await;
    let store = Store::open(Location::Backend(disk.factory()), config).unwrap();
    let last = acked.len() - 1;
    for (offset, produced) in acked[last..].iter() {
        assert_eq!(&stored_as_produced(&store, "t", 0, *offset), produced, "acknowledged batch lost");
    }
    store.shutdown().await;
}

/// While appends are refused, retention (here `retention.bytes`, lowered through the topic's
/// config) and deleting another topic free space too, and each ends the refusal by itself.
#[tokio::test]
async fn retention_and_topic_deletion_end_a_refusal_for_lack_of_space() {
    let disk = SimDisk::new();
    let config = StoreConfig {
        reserve_bytes: Some(2 << 20),
        space_probe: Some(disk.space_probe()),
        group_bytes_max: 64 << 10,
        ..StoreConfig::default()
    };
    let store = Store::open(Location::Backend(disk.factory()), config).unwrap();
    store.create_topic("t", 1, no_retention()).await.unwrap();
    store.create_topic("other", 1, no_retention()).await.unwrap();
    disk.set_sparse(true);
    disk.set_capacity(Some(disk.size_bytes() + (12 << 20)));
    for i in 0..40u8 {
        store.append("other", 0, batch(4, 8000, T0, i)).await.expect("room for the other topic");
    }
    let mut acked = Vec::new();
    assert!(matches!(fill_until_refused(&store, &mut acked).await, StorageError::NoSpace(_)));

    let trimmed = TopicConfig { retention_bytes: Some(1 << 20), ..no_retention() };
    store.alter_topic_config("t", trimmed).await.expect("metadata commits from the reserve");
    let report = store.enforce_retention(T0).await.expect("retention runs while appends are refused");
    assert!(report.bytes_deleted > 0, "{report:?}");
    assert_eq!(store.writer_state(), WriterState::Accepting, "retention ended the refusal");

    assert!(matches!(fill_until_refused(&store, &mut acked).await, StorageError::NoSpace(_)));
    store.delete_topic("other").await.expect("a topic deletion commits from the reserve");
    assert_eq!(store.writer_state(), WriterState::Accepting, "the deletion ended the refusal");
    store.append("t", 0, batch(4, 8000, T0, 1)).await.expect("appends resume");
    store.shutdown().await;
}
