//! Time in the store: retention ages data by when it was appended (not by what its records say),
//! `LogAppendTime` topics, timestamp bounds, and format 1 data (which kept no append times).

use redb::{ReadableDatabase, ReadableTable};
use rill_core::batch::{TimestampType, batches};

use super::fault::SimDisk;
use super::layout::{FORMAT_VERSION, FORMAT_VERSION_KEY, GROUP_TIMES, META, PARTITIONS, TOPICS};
use super::meta::{self, PartitionMeta, TopicMeta};
use super::migrate::{PartitionMetaV1, TopicConfigV1, TopicMetaV1};
use super::tests::{all_batches, batch, open_at};
use super::*;
use crate::limits::GROUP_BYTES_MAX_DEFAULT;

/// "Now" in these tests: 2027-01-15.
const NOW: i64 = 1_800_000_000_000;
const HOUR_MS: i64 = 3_600_000;
/// A device whose clock says 2023, and one whose clock says 2040.
const STAMPED_2023: i64 = 1_672_531_200_000;
const STAMPED_2040: i64 = 2_208_988_800_000;

fn hourly() -> TopicConfig {
    TopicConfig { retention_ms: Some(HOUR_MS as u64), ..TopicConfig::default() }
}

fn records(store: &Store, topic: &str) -> u64 {
    let offsets = store.topic(topic).unwrap().partitions[0].offsets();
    offsets.high_watermark - offsets.log_start_offset
}

/// What the issue saw: readings stamped long ago were deleted by the first retention pass after a
/// restart, before anyone read them. They stay `retention.ms` after they were appended, across a
/// restart; then they go, and so do readings stamped far in the future (nothing pins data).
#[tokio::test]
async fn readings_stamped_long_ago_or_far_ahead_live_retention_ms_after_their_append() {
    let disk = SimDisk::new();
    let clock = Clock::manual(NOW);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, GROUP_BYTES_MAX_DEFAULT, clock.clone());
    store.create_topic("readings", 1, hourly()).await.unwrap();
    store.append("readings", 0, batch(3, 20, STAMPED_2023, 1)).await.unwrap();
    store.append("readings", 0, batch(3, 20, STAMPED_2040, 2)).await.unwrap();
    assert_eq!(store.enforce_retention(NOW).await.unwrap().groups_deleted, 0);
    store.shutdown().await;

    clock.set_ms(NOW + HOUR_MS / 2);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, GROUP_BYTES_MAX_DEFAULT, clock.clone());
    assert_eq!(store.enforce_retention(NOW + HOUR_MS / 2).await.unwrap().groups_deleted, 0, "after the restart");
    assert_eq!(all_batches(&store, "readings", 0).len(), 2, "both readings are there to be read");
    assert_eq!(store.enforce_retention(NOW + HOUR_MS).await.unwrap().groups_deleted, 0, "exactly an hour: kept");
    let report = store.enforce_retention(NOW + HOUR_MS + 1).await.unwrap();
    assert_eq!(report.groups_deleted, 1, "an hour after the append both go, the 2040 ones too");
    assert_eq!(records(&store, "readings"), 0);
    store.shutdown().await;
}

/// Append times never go backwards in a partition: after the wall clock steps back, a new group
/// is not taken to be older than the data before it.
#[tokio::test]
async fn a_clock_stepping_back_does_not_age_data_early() {
    let disk = SimDisk::new();
    let clock = Clock::manual(NOW);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, 1, clock.clone());
    store.create_topic("t", 1, hourly()).await.unwrap();
    store.append("t", 0, batch(1, 10, NOW, 1)).await.unwrap();
    clock.set_ms(NOW - 10 * HOUR_MS);
    store.append("t", 0, batch(1, 10, NOW, 2)).await.unwrap();
    store.append("t", 0, batch(1, 10, NOW, 3)).await.unwrap();
    assert_eq!(store.enforce_retention(NOW + HOUR_MS).await.unwrap().groups_deleted, 0);
    assert_eq!(store.enforce_retention(NOW + HOUR_MS + 1).await.unwrap().groups_deleted, 3);
    store.shutdown().await;
}

#[tokio::test]
async fn log_append_time_topics_stamp_each_batch_with_the_append_time() {
    let disk = SimDisk::new();
    let clock = Clock::manual(NOW);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, GROUP_BYTES_MAX_DEFAULT, clock.clone());
    let mut config = TopicConfig::default();
    config.set("message.timestamp.type", "LogAppendTime").unwrap();
    store.create_topic("stamped", 1, config).await.unwrap();
    let sent = batch(4, 10, STAMPED_2023, 7);
    let outcome = store.append("stamped", 0, sent.clone()).await.unwrap();
    assert_eq!(outcome.log_append_time_ms, Some(NOW));
    let read = store.read("stamped", 0, 0, 1 << 20).unwrap();
    let stored = batches(&read.records).next().unwrap().expect("the resealed CRC is valid");
    assert_eq!(stored.header().timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(stored.header().max_timestamp, NOW);
    assert_eq!(stored.records_section(), &sent[rill_core::batch::HEADER_LEN..], "records as sent");
    // A CreateTime topic keeps the producer's stamps and reports no append time.
    store.create_topic("kept", 1, TopicConfig::default()).await.unwrap();
    assert_eq!(store.append("kept", 0, sent.clone()).await.unwrap().log_append_time_ms, None);
    let read = store.read("kept", 0, 0, 1 << 20).unwrap();
    assert_eq!(batches(&read.records).next().unwrap().unwrap().header().max_timestamp, STAMPED_2023);
    store.shutdown().await;
}

#[tokio::test]
async fn timestamps_outside_the_topic_bounds_are_refused_and_store_nothing() {
    let disk = SimDisk::new();
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, GROUP_BYTES_MAX_DEFAULT, Clock::manual(NOW));
    let mut config = TopicConfig::default();
    config.set("message.timestamp.before.max.ms", &HOUR_MS.to_string()).unwrap();
    config.set("message.timestamp.after.max.ms", "60000").unwrap();
    store.create_topic("bounded", 1, config).await.unwrap();
    for refused in [NOW - HOUR_MS - 1, NOW + 60_001, STAMPED_2023, STAMPED_2040] {
        let error = store.append("bounded", 0, batch(2, 10, refused, 1)).await.unwrap_err();
        assert!(matches!(error, AppendError::InvalidTimestamp { index: 0, .. }), "{refused}: {error:?}");
        assert!(error.to_string().contains("message.timestamp.before.max.ms"), "{error}");
    }
    // One bad record refuses its whole request, as in Kafka.
    let mut mixed = batch(1, 10, NOW, 1);
    mixed.extend_from_slice(&batch(1, 10, STAMPED_2040, 2));
    let error = store.append("bounded", 0, mixed).await.unwrap_err();
    assert!(matches!(error, AppendError::InvalidTimestamp { index: 1, .. }), "{error:?}");
    assert_eq!(records(&store, "bounded"), 0, "nothing was stored");
    // The bounds are inclusive, and -1 ("no timestamp") is not bounded, as in Kafka.
    for accepted in [NOW - HOUR_MS, NOW, NOW + 60_000, -1] {
        store.append("bounded", 0, batch(1, 10, accepted, 1)).await.unwrap();
    }
    assert_eq!(records(&store, "bounded"), 4);
    store.shutdown().await;
}

/// Rewrites a store's file as format 1 wrote it: topic and partition rows in their format 1
/// shape, no `group_times`, version 1. (Format 1 is this layout without those; its rows were
/// encoded by these very structs' fields, in this order.)
fn downgrade_to_format_1(disk: &Arc<SimDisk>) {
    let db = super::backend::open_database(&disk.factory(), 4 << 20).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut topics = txn.open_table(TOPICS).unwrap();
        let rows: Vec<(String, TopicMeta)> = topics
            .iter()
            .unwrap()
            .map(|row| {
                let (name, value) = row.unwrap();
                (name.value().to_owned(), meta::decode(String::new, value.value()).unwrap())
            })
            .collect();
        for (name, row) in rows {
            let old = TopicMetaV1 {
                id: row.id,
                config: TopicConfigV1 {
                    retention_ms: row.config.retention_ms,
                    retention_bytes: row.config.retention_bytes,
                    max_message_bytes: row.config.max_message_bytes,
                    cleanup_policy: row.config.cleanup_policy,
                },
                partition_keys: row.partition_keys,
                created_ms: row.created_ms,
            };
            topics.insert(name.as_str(), meta::encode(&old).as_slice()).unwrap();
        }
        let mut partitions = txn.open_table(PARTITIONS).unwrap();
        let rows: Vec<(u64, PartitionMeta)> = partitions
            .iter()
            .unwrap()
            .map(|row| {
                let (key, value) = row.unwrap();
                (key.value(), meta::decode(String::new, value.value()).unwrap())
            })
            .collect();
        for (key, row) in rows {
            let old = PartitionMetaV1 {
                log_start_offset: row.log_start_offset,
                next_offset: row.next_offset,
                size_bytes: row.size_bytes,
                leader_epoch: row.leader_epoch,
                epochs: row.epochs,
            };
            partitions.insert(key, meta::encode(&old).as_slice()).unwrap();
        }
        txn.open_table(META).unwrap().insert(FORMAT_VERSION_KEY, 1).unwrap();
    }
    txn.delete_table(GROUP_TIMES).unwrap();
    txn.commit().unwrap();
}

/// Format 1 data opens with every batch and setting, and ages from the upgrade: retention keeps
/// it at least `retention.ms` longer, although its records are stamped years ago.
#[tokio::test]
async fn format_1_data_opens_whole_and_ages_from_the_upgrade() {
    let disk = SimDisk::new();
    let clock = Clock::manual(NOW);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, 1, clock.clone());
    store.create_topic("old", 2, hourly()).await.unwrap();
    for i in 0..3 {
        store.append("old", 0, batch(2, 50, STAMPED_2023, i)).await.unwrap();
    }
    store.append("old", 1, batch(1, 50, STAMPED_2023, 9)).await.unwrap();
    let before = all_batches(&store, "old", 0);
    store.shutdown().await;
    drop(store);
    downgrade_to_format_1(&disk);

    let upgraded_at = NOW + 24 * HOUR_MS;
    clock.set_ms(upgraded_at);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, 1, clock.clone());
    assert_eq!(all_batches(&store, "old", 0), before, "every batch, byte for byte");
    let topic = store.topic("old").unwrap();
    assert_eq!(topic.config, hourly(), "settings kept; the new ones at Kafka's defaults");
    assert_eq!(topic.partitions[1].offsets().high_watermark, 1);
    assert_eq!(store.enforce_retention(upgraded_at + HOUR_MS).await.unwrap().groups_deleted, 0);
    // Appends go on after the upgrade, in the same partitions.
    store.append("old", 0, batch(1, 50, NOW, 3)).await.unwrap();
    store.shutdown().await;

    let store = open_at(&disk, DurabilityPolicy::EveryCommit, 1, clock.clone());
    let db = store.shared.database().unwrap();
    let read = db.begin_read().unwrap();
    assert_eq!(read.open_table(META).unwrap().get(FORMAT_VERSION_KEY).unwrap().unwrap().value(), FORMAT_VERSION);
    assert_eq!(read.open_table(GROUP_TIMES).unwrap().iter().unwrap().count(), 5, "a start time per group");
    drop((read, db));
    let report = store.enforce_retention(upgraded_at + HOUR_MS + 1).await.unwrap();
    assert_eq!(report.groups_deleted, 5, "an hour after the upgrade the old data goes");
    store.shutdown().await;
}

/// A data directory written by the build before format 2 (`testdata/README.md` says how it was
/// made) opens with every record, setting and committed offset, is migrated, and its records,
/// stamped 2023 and 2025, are kept `retention.ms` (an hour) after the upgrade.
#[tokio::test]
async fn a_data_directory_of_format_1_opens_and_migrates() {
    let dir = super::tests::data_dir_of(include_bytes!("testdata/format-1.redb.gz"));
    let clock = Clock::manual(NOW);
    let open = || {
        let config = StoreConfig { clock: clock.clone(), ..StoreConfig::default() };
        Store::open(Location::Dir(dir.path().to_owned()), config).expect("format 1 opens")
    };
    let store = open();
    let topic = store.topic("legacy").expect("the topic is there");
    assert_eq!(topic.config, hourly());
    let mut values = Vec::new();
    for partition in 0..2 {
        let read = store.read("legacy", partition, 0, 1 << 20).unwrap();
        assert_eq!(read.high_watermark, 10);
        for parsed in batches(&read.records) {
            for record in parsed.unwrap().records().unwrap() {
                values.push(String::from_utf8(record.unwrap().value.unwrap().to_vec()).unwrap());
            }
        }
    }
    values.sort();
    let mut expected: Vec<String> = (0..10).flat_map(|i| [format!("old-{i}"), format!("new-{i}")]).collect();
    expected.sort();
    assert_eq!(values, expected);
    let committed = store.committed_offsets("legacy-readers");
    assert_eq!(committed[&("legacy".to_owned(), 0)].offset, 3);
    assert_eq!(store.enforce_retention(NOW + HOUR_MS).await.unwrap().groups_deleted, 0, "kept an hour");
    store.append("legacy", 0, batch(1, 10, NOW, 1)).await.unwrap();
    // Data made before cluster ids were stored gets one at its first open, and keeps it.
    let cluster_id = store.cluster_id();
    store.shutdown().await;
    drop(store);

    let store = open();
    assert_eq!(store.cluster_id(), cluster_id);
    assert_eq!(store.topic("legacy").unwrap().partitions[0].offsets().high_watermark, 11);
    assert_eq!(store.enforce_retention(NOW + HOUR_MS + 1).await.unwrap().groups_deleted, 2, "then it goes");
    store.shutdown().await;
}
