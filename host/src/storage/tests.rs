//! Store tests: behaviour, and behaviour against a model (faults: `fault_tests.rs`).

use std::sync::Arc;

use proptest::prelude::*;
use rill_core::batch::{Batch, BatchParams, RecordSpec, batches, build_vec};

use super::fault::SimDisk;
use super::*;

pub(super) const T0: i64 = 1_700_000_000_000;

/// A batch of `records` records whose values are `tag` repeated `value_len` times.
pub(super) fn batch(records: usize, value_len: usize, timestamp: i64, tag: u8) -> Vec<u8> {
    let value = vec![tag; value_len];
    let specs: Vec<RecordSpec> =
        (0..records).map(|_| RecordSpec { timestamp, key: Some(b"k"), value: Some(&value), headers: &[] }).collect();
    build_vec(BatchParams::default(), &specs).expect("test batch builds")
}

pub(super) fn open(disk: &Arc<SimDisk>, durability: DurabilityPolicy) -> Store {
    open_grouped(disk, durability, StoreConfig::default().group_bytes_max)
}

/// A store whose row groups close at `group_bytes_max` (1: every commit starts its own group),
/// on a clock that stands at [`T0`].
fn open_grouped(disk: &Arc<SimDisk>, durability: DurabilityPolicy, group_bytes_max: usize) -> Store {
    open_at(disk, durability, group_bytes_max, Clock::manual(T0))
}

/// [`open_grouped`] on `clock`.
pub(super) fn open_at(
    disk: &Arc<SimDisk>,
    durability: DurabilityPolicy,
    group_bytes_max: usize,
    clock: Clock,
) -> Store {
    let config = StoreConfig {
        durability,
        cache_bytes: 4 << 20,
        group_bytes_max,
        disk_budget_bytes: None,
        clock,
        ..StoreConfig::default()
    };
    Store::open(Location::Backend(disk.factory()), config).expect("store opens")
}

/// A data directory holding the gzipped `rill.redb` of a test fixture (`testdata/`).
pub(super) fn data_dir_of(gzipped: &[u8]) -> tempfile::TempDir {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut file = Vec::new();
    flate2::read::GzDecoder::new(gzipped).read_to_end(&mut file).unwrap();
    std::fs::write(dir.path().join(DB_FILE_NAME), file).unwrap();
    dir
}

pub(super) fn no_retention() -> TopicConfig {
    TopicConfig { retention_ms: None, ..TopicConfig::default() }
}

/// The stored batch at `offset`, with the fields the broker assigns (base offset, leader epoch)
/// reset to what the producer sent, so it compares equal to the produced bytes.
pub(super) fn stored_as_produced(store: &Store, topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    let read = store.read(topic, partition, offset, 1).expect("read");
    let first = batches(&read.records).next().expect("a batch").expect("valid batch");
    assert!(first.base_offset() as u64 <= offset && offset <= first.last_offset() as u64);
    as_produced(first.as_bytes())
}

/// A stored batch with base offset and leader epoch reset to a producer's values (0 and -1).
pub(super) fn as_produced(stored: &[u8]) -> Vec<u8> {
    let mut bytes = stored.to_vec();
    rill_core::batch::set_base_offset(&mut bytes, 0).unwrap();
    rill_core::batch::set_partition_leader_epoch(&mut bytes, -1).unwrap();
    bytes
}

/// Every batch of a partition from its log start, checked for CRC and contiguous offsets.
pub(super) fn all_batches(store: &Store, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let start = store.topic(topic).unwrap().partition(partition).unwrap().offsets().log_start_offset;
    let mut offset = start;
    loop {
        let read = store.read(topic, partition, offset, 1 << 20).expect("read");
        if read.records.is_empty() {
            assert_eq!(offset, read.high_watermark, "a read below the high watermark returned nothing");
            return out;
        }
        for parsed in batches(&read.records) {
            let parsed = parsed.expect("stored batches are valid");
            if (parsed.last_offset() as u64) < offset {
                continue;
            }
            assert!(parsed.base_offset() as u64 <= offset, "offsets are contiguous");
            out.push((parsed.base_offset() as u64, parsed.as_bytes().to_vec()));
            offset = parsed.last_offset() as u64 + 1;
        }
    }
}

#[tokio::test]
async fn appended_batches_read_back_byte_for_byte() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("sensors", 2, no_retention()).await.unwrap();
    let produced = [batch(3, 10, T0, 1), batch(1, 5000, T0 + 1, 2), batch(20, 100, T0 + 2, 3)];
    let mut offsets = Vec::new();
    for b in &produced {
        offsets.push(store.append("sensors", 1, b.clone()).await.unwrap());
    }
    assert_eq!(offsets[0].base_offset, 0);
    assert_eq!(offsets[0].last_offset, 2);
    assert_eq!(offsets[1].base_offset, 3);
    assert_eq!(offsets[2].base_offset, 4);
    assert_eq!(offsets[2].last_offset, 23);
    for (b, at) in produced.iter().zip(&offsets) {
        for offset in at.base_offset..=at.last_offset {
            assert_eq!(&stored_as_produced(&store, "sensors", 1, offset), b);
        }
    }
    // The stamped epoch is the partition's (0), and partition 0 is untouched.
    let read = store.read("sensors", 1, 0, 1 << 20).unwrap();
    assert!(batches(&read.records).all(|b| b.unwrap().header().partition_leader_epoch == 0));
    assert_eq!(read.high_watermark, 24);
    assert_eq!(store.read("sensors", 0, 0, 100).unwrap().records, Vec::<u8>::new());
    store.shutdown().await;
}

#[tokio::test]
async fn reads_honour_byte_limit_but_return_one_whole_batch() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("t", 1, no_retention()).await.unwrap();
    for i in 0..5 {
        store.append("t", 0, batch(10, 1000, T0, i)).await.unwrap();
    }
    let one = store.read("t", 0, 0, 1).unwrap();
    assert_eq!(batches(&one.records).count(), 1, "a batch larger than the limit is still returned whole");
    let two = store.read("t", 0, 15, 2 * one.records.len()).unwrap();
    let got: Vec<_> = batches(&two.records).map(|b| b.unwrap().base_offset()).collect();
    assert_eq!(got, vec![10, 20], "starts at the batch containing offset 15");
    assert!(matches!(store.read("t", 0, 51, 100), Err(ReadError::OffsetOutOfRange { next_offset: 50, .. })));
    assert_eq!(store.read("t", 0, 50, 100).unwrap().records.len(), 0, "reading at the end is empty, not an error");
    store.shutdown().await;
}

#[tokio::test]
async fn invalid_batches_are_refused_and_store_nothing() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    let config = TopicConfig { max_message_bytes: 2000, ..no_retention() };
    store.create_topic("t", 1, config).await.unwrap();
    let mut corrupt = batch(2, 10, T0, 1);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(
        store.append("t", 0, corrupt).await,
        Err(AppendError::InvalidBatch(InvalidBatch::Codec { index: 0, .. }))
    ));
    assert!(matches!(
        store.append("t", 0, batch(1, 3000, T0, 1)).await,
        Err(AppendError::MessageTooLarge { max: 2000, .. })
    ));
    assert!(matches!(store.append("t", 0, Vec::new()).await, Err(AppendError::InvalidBatch(InvalidBatch::Empty))));
    let mut good_then_truncated = batch(1, 10, T0, 1);
    good_then_truncated.extend_from_slice(&batch(1, 10, T0, 2)[..30]);
    assert!(store.append("t", 0, good_then_truncated).await.is_err());
    assert!(matches!(store.append("nope", 0, batch(1, 1, T0, 1)).await, Err(AppendError::UnknownTopic(_))));
    assert!(matches!(store.append("t", 7, batch(1, 1, T0, 1)).await, Err(AppendError::UnknownPartition { .. })));
    assert_eq!(store.topic("t").unwrap().partition(0).unwrap().offsets().high_watermark, 0);
    assert_eq!(store.append("t", 0, batch(1, 10, T0, 1)).await.unwrap().base_offset, 0);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_get_distinct_offsets() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("t", 2, no_retention()).await.unwrap();
    let commits_before = store.stats().commits();
    let mut tasks = Vec::new();
    for producer in 0..8u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40u8 {
                let b = batch(2, 50, T0, producer.wrapping_mul(40).wrapping_add(i));
                let at = store.append("t", u32::from(producer % 2), b.clone()).await.unwrap();
                acked.push((u32::from(producer % 2), at.base_offset, b));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let commits = store.stats().commits() - commits_before;
    assert!(commits <= 320, "one commit per append at most");
    for partition in 0..2 {
        let stored = all_batches(&store, "t", partition);
        assert_eq!(stored.len(), 160);
        let mut bases: Vec<u64> = acked.iter().filter(|a| a.0 == partition).map(|a| a.1).collect();
        bases.sort_unstable();
        assert_eq!(bases, (0..160).map(|i| i * 2).collect::<Vec<_>>(), "offsets are unique and contiguous");
    }
    for (partition, offset, produced) in &acked {
        assert_eq!(&stored_as_produced(&store, "t", *partition, *offset), produced);
    }
    store.shutdown().await;
}

#[tokio::test]
async fn topics_and_offsets_survive_reopen() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    let created = store.create_topic("a", 1, TopicConfig::default()).await.unwrap();
    store.create_topic("b", 3, TopicConfig::default()).await.unwrap();
    assert!(matches!(store.create_topic("a", 1, TopicConfig::default()).await, Err(TopicError::AlreadyExists(_))));
    assert!(matches!(
        store.create_topic("bad name", 1, TopicConfig::default()).await,
        Err(TopicError::InvalidName { .. })
    ));
    assert!(matches!(
        store.create_topic("z", 0, TopicConfig::default()).await,
        Err(TopicError::InvalidPartitions { .. })
    ));
    store.append("a", 0, batch(4, 10, T0, 1)).await.unwrap();
    store.append("b", 2, batch(2, 10, T0, 1)).await.unwrap();
    let mut config = TopicConfig::default();
    config.set("retention.bytes", "12345").unwrap();
    store.alter_topic_config("a", config.clone()).await.unwrap();
    store.create_partitions("a", 3).await.unwrap();
    store.append("a", 2, batch(1, 10, T0, 1)).await.unwrap();
    store.delete_topic("b").await.unwrap();
    assert!(matches!(store.delete_topic("b").await, Err(TopicError::Unknown(_))));
    let cluster_id = store.cluster_id();
    store.shutdown().await;

    let store = open(&disk, DurabilityPolicy::EveryCommit);
    assert_eq!(store.cluster_id(), cluster_id, "clients see the same cluster after a restart");
    let other = open(&SimDisk::new(), DurabilityPolicy::EveryCommit);
    assert_ne!(other.cluster_id(), cluster_id, "other data, another cluster");
    other.shutdown().await;
    let names: Vec<String> = store.topics().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, vec!["a"]);
    let a = store.topic("a").unwrap();
    assert_eq!(a.id, created.id, "topic ids are stable");
    assert_eq!(a.config, config);
    assert_eq!(a.partitions.len(), 3);
    assert_eq!(a.partition(0).unwrap().offsets().high_watermark, 4);
    assert_eq!(a.partition(2).unwrap().offsets().high_watermark, 1);
    assert_eq!(store.append("a", 0, batch(1, 10, T0, 1)).await.unwrap().base_offset, 4);
    // A re-created topic gets a new id and none of the old data.
    store.create_topic("b", 1, TopicConfig::default()).await.unwrap();
    assert_eq!(store.topic("b").unwrap().partition(0).unwrap().offsets().high_watermark, 0);
    store.shutdown().await;
}

#[test]
fn newer_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join(DB_FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(layout::META).unwrap().insert(layout::FORMAT_VERSION_KEY, layout::FORMAT_VERSION + 1).unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, OpenError::NewerFormat { .. }), "{err}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default()).unwrap();
    let second = Store::open(Location::Dir(dir.path().to_owned()), StoreConfig::default());
    assert!(matches!(second, Err(OpenError::Locked)), "{second:?}");
    drop(first);
}

#[tokio::test]
async fn retention_deletes_whole_groups_by_time_and_by_size() {
    let disk = SimDisk::new();
    // Every append its own group, so that groups and batches can be counted alike.
    let clock = Clock::manual(T0);
    let store = open_at(&disk, DurabilityPolicy::EveryCommit, 1, clock.clone());
    let config = TopicConfig { retention_ms: Some(60_000), ..TopicConfig::default() };
    store.create_topic("t", 1, config).await.unwrap();
    for i in 0..10 {
        // Appended 10 s apart; the records' own timestamps are from long ago and say nothing.
        clock.set_ms(T0 + i * 10_000);
        store.append("t", 0, batch(2, 100, 0, i as u8)).await.unwrap();
    }
    // Now = T0 + 125 s: groups appended before T0 + 65 s are expired. A group's age is bounded
    // by the next group's start (its newest batch came before that), so groups 0..=5 go.
    let report = store.enforce_retention(T0 + 125_000).await.unwrap();
    assert_eq!(report.groups_deleted, 6);
    let offsets = store.topic("t").unwrap().partition(0).unwrap().offsets();
    assert_eq!(offsets.log_start_offset, 12);
    assert!(matches!(store.read("t", 0, 11, 100), Err(ReadError::OffsetOutOfRange { log_start_offset: 12, .. })));
    assert_eq!(all_batches(&store, "t", 0).len(), 4);
    assert_eq!(store.enforce_retention(T0 + 125_000).await.unwrap().groups_deleted, 0, "idempotent");

    let one_batch = offsets.size_bytes / 4;
    let mut config = TopicConfig { retention_ms: None, ..TopicConfig::default() };
    // Kafka's rule: delete the oldest while what remains is still at least retention.bytes.
    config.retention_bytes = Some(one_batch + 1);
    store.alter_topic_config("t", config.clone()).await.unwrap();
    assert_eq!(store.enforce_retention(T0).await.unwrap().groups_deleted, 2, "2 batches stay: 1 more would go below");
    config.retention_bytes = Some(one_batch);
    store.alter_topic_config("t", config).await.unwrap();
    let report = store.enforce_retention(T0).await.unwrap();
    assert_eq!(report.groups_deleted, 1);
    assert_eq!(all_batches(&store, "t", 0).len(), 1);
    store.shutdown().await;
    let store = open_grouped(&disk, DurabilityPolicy::EveryCommit, 1);
    assert_eq!(store.topic("t").unwrap().partition(0).unwrap().offsets().log_start_offset, 18);
    store.shutdown().await;
}

#[tokio::test]
async fn delete_records_advances_log_start_inside_a_batch() {
    let disk = SimDisk::new();
    let store = open_grouped(&disk, DurabilityPolicy::EveryCommit, 1);
    store.create_topic("t", 1, no_retention()).await.unwrap();
    for i in 0..4 {
        store.append("t", 0, batch(5, 10, T0, i)).await.unwrap();
    }
    assert_eq!(store.delete_records("t", 0, 7).await.unwrap(), 7);
    let read = store.read("t", 0, 7, 1).unwrap();
    assert_eq!(batches(&read.records).next().unwrap().unwrap().base_offset(), 5, "the batch holding 7 stays");
    assert!(matches!(store.read("t", 0, 6, 1), Err(ReadError::OffsetOutOfRange { .. })));
    assert!(store.delete_records("t", 0, 21).await.is_err(), "beyond the high watermark");
    assert_eq!(
        store.topic("t").unwrap().partition(0).unwrap().offsets().size_bytes,
        3 * batch(5, 10, T0, 0).len() as u64
    );
    store.shutdown().await;
}

#[tokio::test]
async fn small_commits_fill_shared_leaves_and_groups_resume_after_reopen() {
    let disk = SimDisk::new();
    let group_bytes_max = 64 * 1024;
    let mut store = open_grouped(&disk, DurabilityPolicy::EveryCommit, group_bytes_max);
    store.create_topic("t", 1, no_retention()).await.unwrap();
    let empty = store.space_usage().await.unwrap().allocated_bytes;
    let mut produced = Vec::new();
    for i in 0..300u32 {
        if i == 150 {
            // Reopened in the middle of an open group: the appends that follow go on filling it.
            store.shutdown().await;
            drop(store);
            store = open_grouped(&disk, DurabilityPolicy::EveryCommit, group_bytes_max);
        }
        let b = batch(1, 4020, T0 + i64::from(i), i as u8);
        store.append("t", 0, b.clone()).await.unwrap();
        produced.push(b);
    }
    let stored: Vec<Vec<u8>> = all_batches(&store, "t", 0).iter().map(|(_, b)| as_produced(b)).collect();
    assert_eq!(stored, produced, "every batch, in order, byte for byte");
    // One ~4 KB batch per commit: stored alone, each would need an 8 KiB leaf (2x the payload, as
    // measured with one group per commit).
    let payload = produced.iter().map(Vec::len).sum::<usize>() as f64;
    let allocated = (store.space_usage().await.unwrap().allocated_bytes - empty) as f64;
    assert!(allocated / payload < 1.3, "allocated {allocated} B for {payload} B of batches");
    // Groups are the unit of retention: by size, whole closed groups go and the open one stays.
    let mut config = no_retention();
    config.retention_bytes = Some(1);
    store.alter_topic_config("t", config).await.unwrap();
    let report = store.enforce_retention(T0).await.unwrap();
    assert!(report.groups_deleted >= 3, "{report:?}");
    let offsets = store.topic("t").unwrap().partition(0).unwrap().offsets();
    assert!(offsets.log_start_offset > 0 && offsets.log_start_offset < 300, "{offsets:?}");
    assert_eq!(offsets.high_watermark, 300);
    let left = all_batches(&store, "t", 0);
    assert_eq!(left.first().map(|(base, _)| *base), Some(offsets.log_start_offset));
    assert_eq!(store.append("t", 0, batch(1, 1, T0, 0)).await.unwrap().base_offset, 300);
    store.shutdown().await;
}

// ---- model (faults: fault_tests.rs) ---------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Append { partition: u32, records: usize, value_len: usize },
    Read { partition: u32, offset_pick: u64, max_bytes: usize },
    DeleteRecords { partition: u32, offset_pick: u64 },
    RetainBytes { bytes: u64 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u32, 1..6usize, 0..3000usize).prop_map(|(partition, records, value_len)| Op::Append { partition, records, value_len }),
        3 => (0..2u32, any::<u64>(), 1..20_000usize).prop_map(|(partition, offset_pick, max_bytes)| Op::Read { partition, offset_pick, max_bytes }),
        1 => (0..2u32, any::<u64>()).prop_map(|(partition, offset_pick)| Op::DeleteRecords { partition, offset_pick }),
        1 => (0..30_000u64).prop_map(|bytes| Op::RetainBytes { bytes }),
        1 => Just(Op::Reopen),
    ]
}

/// The model: per partition, the records (offset, value) still readable and the log start.
#[derive(Debug, Default, Clone)]
struct Model {
    records: Vec<(u64, Vec<u8>)>,
    log_start: u64,
    next: u64,
}

fn values_of(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for parsed in batches(bytes) {
        let parsed: Batch = parsed.unwrap();
        let base = parsed.base_offset();
        for record in parsed.records().unwrap() {
            let record = record.unwrap();
            out.push(((base + i64::from(record.offset_delta)) as u64, record.value.unwrap_or_default().to_vec()));
        }
    }
    out
}

/// Small groups, so that a run closes some and reopens the store in the middle of others.
const MODEL_GROUP_BYTES_MAX: usize = 10_000;

async fn run_model(ops: Vec<Op>) {
    let disk = SimDisk::new();
    let mut store = open_grouped(&disk, DurabilityPolicy::EveryCommit, MODEL_GROUP_BYTES_MAX);
    store.create_topic("m", 2, no_retention()).await.unwrap();
    let mut models = [Model::default(), Model::default()];
    let mut tag = 0u8;
    for op in ops {
        match op {
            Op::Append { partition, records, value_len } => {
                tag = tag.wrapping_add(1);
                let model = &mut models[partition as usize];
                let at = store.append("m", partition, batch(records, value_len, T0, tag)).await.unwrap();
                assert_eq!(at.base_offset, model.next);
                for i in 0..records as u64 {
                    model.records.push((model.next + i, vec![tag; value_len]));
                }
                model.next += records as u64;
            }
            Op::Read { partition, offset_pick, max_bytes } => {
                let model = &models[partition as usize];
                let offset = model.log_start + offset_pick % (model.next - model.log_start + 1);
                let read = store.read("m", partition, offset, max_bytes).unwrap();
                let got = values_of(&read.records);
                let wanted: Vec<_> = model
                    .records
                    .iter()
                    .filter(|(o, _)| *o >= offset)
                    .take(got.iter().filter(|(o, _)| *o >= offset).count())
                    .cloned()
                    .collect();
                let got_from: Vec<_> = got.into_iter().filter(|(o, _)| *o >= offset).collect();
                assert_eq!(got_from, wanted, "read from {offset}");
                assert!(
                    offset == model.next || !got_from.is_empty(),
                    "a read below the end returns at least one record"
                );
                assert_eq!(read.high_watermark, model.next);
            }
            Op::DeleteRecords { partition, offset_pick } => {
                let model = &mut models[partition as usize];
                let offset = model.log_start + offset_pick % (model.next - model.log_start + 1);
                store.delete_records("m", partition, offset).await.unwrap();
                model.log_start = offset;
                model.records.retain(|(o, _)| *o >= offset);
            }
            Op::RetainBytes { bytes } => {
                let mut config = no_retention();
                config.retention_bytes = Some(bytes);
                store.alter_topic_config("m", config).await.unwrap();
                store.enforce_retention(T0).await.unwrap();
                for (partition, model) in models.iter_mut().enumerate() {
                    let offsets = store.topic("m").unwrap().partition(partition as u32).unwrap().offsets();
                    assert!(offsets.log_start_offset >= model.log_start);
                    assert!(offsets.size_bytes >= bytes.min(offsets.size_bytes), "never deletes below retention.bytes");
                    model.log_start = offsets.log_start_offset;
                    let start = model.log_start;
                    model.records.retain(|(o, _)| *o >= start);
                }
                store.alter_topic_config("m", no_retention()).await.unwrap();
            }
            Op::Reopen => {
                store.shutdown().await;
                store = open_grouped(&disk, DurabilityPolicy::EveryCommit, MODEL_GROUP_BYTES_MAX);
            }
        }
    }
    for (partition, model) in models.iter().enumerate() {
        let stored: Vec<_> = all_batches(&store, "m", partition as u32)
            .iter()
            .flat_map(|(_, b)| values_of(b))
            .filter(|(o, _)| *o >= model.log_start)
            .collect();
        assert_eq!(stored, model.records);
    }
    store.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_a_simple_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_model(ops));
    }
}

// ---- idempotent producers and committed offsets ----------------------------------------------------

/// A batch of idempotent producer `producer_id` (epoch `epoch`) starting at `sequence`.
pub(super) fn sequenced(records: usize, producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let specs: Vec<RecordSpec> =
        (0..records).map(|_| RecordSpec { timestamp: T0, key: None, value: Some(b"v"), headers: &[] }).collect();
    let params = BatchParams { producer_id, producer_epoch: epoch, base_sequence: sequence, ..BatchParams::default() };
    build_vec(params, &specs).expect("test batch builds")
}

#[tokio::test]
async fn retried_producer_batches_are_stored_once_even_across_a_restart() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("t", 1, no_retention()).await.unwrap();
    let pid = store.allocate_producer_id().await.unwrap();
    assert_ne!(pid, store.allocate_producer_id().await.unwrap(), "every producer gets its own id");
    let first = store.append("t", 0, sequenced(3, pid, 0, 0)).await.unwrap();
    let second = store.append("t", 0, sequenced(2, pid, 0, 3)).await.unwrap();
    // A retry of the first (its acknowledgement was lost) gets its original offsets.
    let retried = store.append("t", 0, sequenced(3, pid, 0, 0)).await.unwrap();
    assert_eq!((retried.base_offset, retried.last_offset), (first.base_offset, first.last_offset));
    // The same batch twice in one append is not a retry: refused whole, nothing stored.
    let mut twice = sequenced(1, pid, 0, 5);
    twice.extend(sequenced(1, pid, 0, 5));
    assert!(matches!(
        store.append("t", 0, twice).await,
        Err(AppendError::OutOfOrderSequence { found: 5, expected: 6, .. })
    ));
    // A gap is refused, and so is an older epoch once a newer one appended.
    assert!(matches!(
        store.append("t", 0, sequenced(1, pid, 0, 9)).await,
        Err(AppendError::OutOfOrderSequence { found: 9, expected: 5, .. })
    ));
    store.shutdown().await;

    let store = open(&disk, DurabilityPolicy::EveryCommit);
    let retried = store.append("t", 0, sequenced(2, pid, 0, 3)).await.unwrap();
    assert_eq!(retried.base_offset, second.base_offset, "producer state survives the restart");
    store.append("t", 0, sequenced(1, pid, 1, 0)).await.unwrap();
    assert!(matches!(store.append("t", 0, sequenced(1, pid, 0, 5)).await, Err(AppendError::StaleProducerEpoch { .. })));
    assert_eq!(store.topic("t").unwrap().partition(0).unwrap().offsets().high_watermark, 6, "3 + 2 + 1 stored");
    let next = store.allocate_producer_id().await.unwrap();
    assert!(next > pid, "ids are not reused after a restart");
    store.shutdown().await;
}

#[tokio::test]
async fn committed_offsets_survive_reopen_and_go_with_their_topic() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("a", 2, no_retention()).await.unwrap();
    store.create_topic("b", 1, no_retention()).await.unwrap();
    let committed = |offset: i64| CommittedOffset { offset, leader_epoch: -1, metadata: "m".into(), commit_ms: T0 };
    // Commits run concurrently with appends and share their group commit.
    let (appended, offsets) = tokio::join!(
        store.append("a", 0, batch(2, 10, T0, 1)),
        store.commit_offsets(
            "g",
            vec![(("a".into(), 0), committed(2)), (("a".into(), 1), committed(0)), (("b".into(), 0), committed(7))]
        )
    );
    appended.unwrap();
    offsets.unwrap();
    store.commit_offsets("g", vec![(("a".into(), 0), committed(5))]).await.unwrap();
    store.commit_offsets("h", vec![(("b".into(), 0), committed(1))]).await.unwrap();
    store.shutdown().await;

    let store = open(&disk, DurabilityPolicy::EveryCommit);
    assert_eq!(store.groups_with_offsets(), vec!["g".to_owned(), "h".to_owned()]);
    let g = store.committed_offsets("g");
    assert_eq!(g.len(), 3);
    assert_eq!(g[&("a".to_owned(), 0)], committed(5), "the latest commit wins");
    store.delete_topic("b").await.unwrap();
    assert_eq!(store.committed_offsets("g").len(), 2);
    assert_eq!(store.groups_with_offsets(), vec!["g".to_owned()], "h had offsets for b only");
    assert!(store.delete_group_offsets("g").await.unwrap());
    assert!(!store.delete_group_offsets("g").await.unwrap());
    store.shutdown().await;

    let store = open(&disk, DurabilityPolicy::EveryCommit);
    assert!(store.groups_with_offsets().is_empty());
    store.shutdown().await;
}

#[tokio::test]
async fn a_transaction_commits_its_appends_and_documents_together_or_not_at_all() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("in", 1, no_retention()).await.unwrap();
    store.create_topic("out", 2, no_retention()).await.unwrap();
    store.append("out", 1, batch(2, 4, T0, 1)).await.unwrap();
    let progress = |outcomes: &[AppendOutcome]| {
        let offsets: Vec<String> = outcomes.iter().map(|o| format!("{}-{}", o.base_offset, o.last_offset)).collect();
        vec![
            DocumentWrite { kind: "progress".into(), name: "p".into(), document: Some(offsets.join(",").into_bytes()) },
            DocumentWrite { kind: "old".into(), name: "p".into(), document: None },
        ]
    };
    store.put_resource("old", "p", b"x".to_vec(), PutMode::Create, None).await.unwrap();
    let appends = vec![("out".to_owned(), 0, batch(3, 4, T0, 2)), ("out".to_owned(), 1, batch(1, 4, T0, 3))];
    let outcomes = store.transact(appends, Documents(Box::new(progress)), None).await.unwrap();
    assert_eq!(outcomes.iter().map(|o| (o.base_offset, o.last_offset)).collect::<Vec<_>>(), [(0, 2), (2, 2)]);
    assert_eq!(store.resource("progress", "p").unwrap().as_deref(), Some(b"0-2,2-2".as_slice()));
    assert_eq!(store.resource("old", "p").unwrap(), None, "a transaction deletes documents too");

    // A refused append takes the whole transaction back, documents included.
    let out_0 = store.topic("out").unwrap().partition(0).unwrap().key;
    let (reply, answer) = oneshot::channel();
    let refused = Command::Transact {
        appends: vec![
            (out_0, Checked::headers_only(batch(1, 4, T0, 4))),
            (u64::MAX, Checked::headers_only(batch(1, 4, T0, 5))),
        ],
        documents: Documents(Box::new(|_| vec![DocumentWrite { kind: "k".into(), name: "n".into(), document: None }])),
        generation: None,
        reply,
    };
    store.commands.send(refused).await.unwrap();
    assert!(answer.await.unwrap().is_err());
    let idempotent = sequenced(1, 7, 0, 0);
    let refused = store.transact(vec![("in".into(), 0, idempotent)], Documents(Box::new(|_| Vec::new())), None).await;
    assert!(matches!(refused, Err(AppendError::Log(_))), "{refused:?}");
    assert_eq!(store.append("out", 0, batch(1, 4, T0, 6)).await.unwrap().base_offset, 3, "nothing was kept");

    let store = {
        store.shutdown().await;
        open(&disk, DurabilityPolicy::EveryCommit)
    };
    assert_eq!(all_batches(&store, "out", 0).len(), 2);
    assert_eq!(store.resource("progress", "p").unwrap().as_deref(), Some(b"0-2,2-2".as_slice()));
}

/// A batch as a leader stored it: `records` records at `base` in `epoch`.
fn replica_batch(base: u64, records: usize, epoch: i32, tag: u8) -> Vec<u8> {
    let value = vec![tag; 20];
    let specs: Vec<RecordSpec> =
        (0..records).map(|_| RecordSpec { timestamp: T0, key: None, value: Some(&value), headers: &[] }).collect();
    let params = BatchParams { base_offset: base as i64, partition_leader_epoch: epoch, ..BatchParams::default() };
    build_vec(params, &specs).expect("test batch builds")
}

/// The stored batches of a partition as (base offset, bytes), gaps allowed.
fn stored_batches(store: &Store, topic: &str) -> Vec<(u64, Vec<u8>)> {
    let read = store.read(topic, 0, store.topic(topic).unwrap().partitions[0].offsets().log_start_offset, usize::MAX);
    batches(&read.expect("read").records)
        .map(|b| b.unwrap())
        .map(|b| (b.base_offset() as u64, b.as_bytes().to_vec()))
        .collect()
}

#[tokio::test]
async fn a_mirror_copy_keeps_the_leaders_offsets_skips_gaps_and_truncates() {
    let disk = SimDisk::new();
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    store.create_topic("copy", 1, no_retention()).await.unwrap();
    let (first, second) = (replica_batch(0, 3, 0, 1), replica_batch(3, 2, 0, 2));
    let outcome = store.append_replica("copy", 0, first.clone()).await.unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (0, 2));
    store.append_replica("copy", 0, second.clone()).await.unwrap();
    // Not at the log end: refused, nothing stored.
    let refused = store.append_replica("copy", 0, replica_batch(10, 1, 0, 3)).await;
    assert!(matches!(&refused, Err(AppendError::Log(e)) if e.to_string().contains("ends at 5")), "{refused:?}");
    // A gap, then the leader's next batch (in a new epoch) at its own offset.
    let gap = DocumentWrite { kind: "test-gap".into(), name: "copy/0".into(), document: Some(b"{}".to_vec()) };
    store.reset_replica("copy", 0, ReplicaReset::SkipTo(10), Some(gap)).await.unwrap();
    let third = replica_batch(10, 4, 1, 3);
    store.append_replica("copy", 0, third.clone()).await.unwrap();
    assert_eq!(stored_batches(&store, "copy"), vec![(0, first.clone()), (3, second), (10, third.clone())]);
    assert_eq!(store.resource("test-gap", "copy/0").unwrap(), Some(b"{}".to_vec()));
    // A read inside the gap starts at the next batch.
    let read = store.read("copy", 0, 7, 1 << 20).unwrap();
    assert_eq!(read.records, third);
    assert_eq!(read.high_watermark, 14);
    // Truncation inside a group (the first two batches share one) rewrites it.
    store.reset_replica("copy", 0, ReplicaReset::TruncateTo(3), None).await.unwrap();
    assert_eq!(stored_batches(&store, "copy"), vec![(0, first.clone())]);
    let state = store.log_state("copy", 0).await.unwrap();
    assert_eq!((state.next_offset(), state.leader_epoch()), (3, 1));
    assert_eq!(state.epochs().entries(), &[rill_core::log::EpochEntry { epoch: 0, start_offset: 0 }]);
    // All of it survives a restart, and the copy goes on where it ends.
    store.shutdown().await;
    let store = open(&disk, DurabilityPolicy::EveryCommit);
    assert_eq!(store.log_state("copy", 0).await.unwrap(), state);
    let again = replica_batch(3, 1, 2, 4);
    store.append_replica("copy", 0, again.clone()).await.unwrap();
    assert_eq!(stored_batches(&store, "copy"), vec![(0, first), (3, again)]);
}

#[tokio::test]
async fn retention_keeps_what_a_mirror_lacks_until_the_disk_budget_runs_out() {
    let disk = SimDisk::new();
    // One group per commit, so retention can delete batch by batch.
    let store = open_grouped(&disk, DurabilityPolicy::EveryCommit, 1);
    let expiring = TopicConfig { retention_ms: Some(1), ..TopicConfig::default() };
    store.create_topic("t", 1, expiring).await.unwrap();
    for i in 0..5 {
        store.append("t", 0, batch(2, 100, T0 + i, i as u8)).await.unwrap();
    }
    store.set_retention_floor("mirror-a", "t", 0, 4);
    store.set_retention_floor("mirror-b", "t", 0, 6);
    store.enforce_retention(T0 + 1_000_000).await.unwrap();
    let offsets = store.topic("t").unwrap().partitions[0].offsets();
    assert_eq!(offsets.log_start_offset, 4, "the lowest floor holds");
    store.clear_retention_floors("mirror-a");
    store.enforce_retention(T0 + 1_000_000).await.unwrap();
    assert_eq!(store.topic("t").unwrap().partitions[0].offsets().log_start_offset, 6);
    store.shutdown().await;

    // With a budget: kept beyond it only until the budget is exhausted, oldest first.
    let disk = SimDisk::new();
    let one = batch(2, 100, T0, 0).len() as u64;
    let config = StoreConfig { group_bytes_max: 1, disk_budget_bytes: Some(2 * one), ..StoreConfig::default() };
    let store = Store::open(Location::Backend(disk.factory()), config).unwrap();
    store.create_topic("kept", 1, no_retention()).await.unwrap();
    for i in 0..5 {
        store.append("kept", 0, batch(2, 100, T0 + i, i as u8)).await.unwrap();
    }
    store.set_retention_floor("mirror", "kept", 0, 0);
    let report = store.enforce_retention(T0).await.unwrap();
    assert_eq!(report.groups_deleted, 3);
    let offsets = store.topic("kept").unwrap().partitions[0].offsets();
    assert_eq!((offsets.log_start_offset, offsets.size_bytes), (6, 2 * one));
}
