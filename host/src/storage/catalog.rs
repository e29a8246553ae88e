//! The in-memory view of topics and partitions that readers use without touching redb.
//! Only the writer thread changes it, and only after the commit that made the change durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::watch;
use uuid::Uuid;

use super::OpenError;
use super::StorageError;
use super::layout::{CLUSTER_ID_KEYS, FORMAT_VERSION, FORMAT_VERSION_KEY, META, PARTITIONS, TOPICS};
use super::meta::{self, PartitionMeta, TopicMeta};
use super::topic::TopicConfig;

/// A partition's offsets as readers may see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start_offset: u64,
    /// Consumers read below this: everything committed.
    pub high_watermark: u64,
    /// Everything below this has been fsynced (equal to the high watermark under the
    /// every-commit policy).
    pub durable_offset: u64,
    pub size_bytes: u64,
}

#[derive(Debug)]
pub struct PartitionState {
    pub index: u32,
    /// The partition's key in the `batches` and `partitions` tables.
    pub key: u64,
    offsets: watch::Sender<PartitionOffsets>,
    /// Records and bytes through this partition since the process started, for metrics and
    /// the status page's rates.
    pub traffic: Traffic,
}

/// Counters of what went into and out of a partition. Monotonic for the life of the process.
#[derive(Debug, Default)]
pub struct Traffic {
    records_in: AtomicU64,
    bytes_in: AtomicU64,
    records_out: AtomicU64,
    bytes_out: AtomicU64,
}

/// A snapshot of [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub bytes_out: u64,
}

impl Traffic {
    pub(super) fn count_in(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts records handed to a consumer (or a follower).
    pub fn count_out(&self, records: u64, bytes: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            records_in: self.records_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

impl PartitionState {
    pub(super) fn new(index: u32, key: u64, offsets: PartitionOffsets) -> Self {
        Self { index, key, offsets: watch::Sender::new(offsets), traffic: Traffic::default() }
    }

    pub fn offsets(&self) -> PartitionOffsets {
        *self.offsets.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<PartitionOffsets> {
        self.offsets.subscribe()
    }

    pub(super) fn publish(&self, offsets: PartitionOffsets) {
        self.offsets.send_if_modified(|current| {
            let changed = *current != offsets;
            *current = offsets;
            changed
        });
    }
}

/// An immutable snapshot of a topic; a change replaces the whole entry.
#[derive(Debug)]
pub struct TopicState {
    pub name: String,
    pub id: Uuid,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<PartitionState>>,
}

impl TopicState {
    pub fn partition(&self, index: u32) -> Option<Arc<PartitionState>> {
        self.partitions.get(index as usize).cloned()
    }
}

#[derive(Debug, Default)]
pub struct Catalog {
    topics: BTreeMap<String, Arc<TopicState>>,
    /// Every partition by its storage key, for the writer's per-commit updates.
    by_key: HashMap<u64, Arc<PartitionState>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<Arc<TopicState>> {
        self.topics.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<TopicState>> {
        self.topics.values().cloned().collect()
    }

    pub(super) fn partition(&self, key: u64) -> Option<Arc<PartitionState>> {
        self.by_key.get(&key).cloned()
    }

    pub(super) fn insert(&mut self, topic: Arc<TopicState>) {
        for partition in &topic.partitions {
            self.by_key.insert(partition.key, partition.clone());
        }
        if let Some(old) = self.topics.insert(topic.name.clone(), topic.clone()) {
            self.forget_partitions_not_in(&old, &topic);
        }
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Arc<TopicState>> {
        let removed = self.topics.remove(name)?;
        for partition in &removed.partitions {
            self.by_key.remove(&partition.key);
        }
        Some(removed)
    }

    fn forget_partitions_not_in(&mut self, old: &TopicState, new: &TopicState) {
        for partition in &old.partitions {
            if !new.partitions.iter().any(|p| p.key == partition.key) {
                self.by_key.remove(&partition.key);
            }
        }
    }
}

/// Makes a database ready to read: creates what a new one lacks, checks the format version, and
/// migrates an older one (`now_ms`: see [`super::migrate`]). `true` when the database is new.
pub(super) fn prepare(db: &redb::Database, now_ms: i64) -> Result<bool, OpenError> {
    let fresh = super::migrate::found_version(db).ok().flatten().is_none();
    ensure_tables(db)?;
    if let Some(found) = super::migrate::found_version(db)?
        && found < FORMAT_VERSION
    {
        super::migrate::to_current(db, found, now_ms)?;
    }
    match super::migrate::found_version(db)? {
        Some(found) if found > FORMAT_VERSION => Err(OpenError::NewerFormat { found, supported: FORMAT_VERSION }),
        Some(_) => Ok(fresh),
        None => Err(OpenError::Storage(StorageError::corrupt("database", "it has no format version"))),
    }
}

/// Reads the catalog and every partition's metadata (of a database [`prepare`]d).
pub(super) fn load(db: &redb::Database) -> Result<(Catalog, BTreeMap<u64, PartitionMeta>), OpenError> {
    let txn = db.begin_read().map_err(|e| OpenError::Storage(e.into()))?;
    let partitions_table = txn.open_table(PARTITIONS).map_err(|e| OpenError::Storage(e.into()))?;
    let mut partitions = BTreeMap::new();
    for row in partitions_table.iter().map_err(|e| OpenError::Storage(e.into()))? {
        let (key, value) = row.map_err(|e| OpenError::Storage(e.into()))?;
        let key = key.value();
        let partition: PartitionMeta = meta::decode(|| format!("partition {key}"), value.value())?;
        partitions.insert(key, partition);
    }
    let mut catalog = Catalog::default();
    for row in txn
        .open_table(TOPICS)
        .map_err(|e| OpenError::Storage(e.into()))?
        .iter()
        .map_err(|e| OpenError::Storage(e.into()))?
    {
        let (name, value) = row.map_err(|e| OpenError::Storage(e.into()))?;
        let name = name.value().to_owned();
        let topic: TopicMeta = meta::decode(|| format!("topic {name}"), value.value())?;
        let states = topic
            .partition_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let offsets = partitions.get(key).map(offsets_of).unwrap_or_default();
                Arc::new(PartitionState::new(index as u32, *key, offsets))
            })
            .collect();
        catalog.insert(Arc::new(TopicState {
            name,
            id: Uuid::from_bytes(topic.id),
            config: topic.config,
            partitions: states,
        }));
    }
    Ok((catalog, partitions))
}

/// The cluster id stored in `meta` (made by [`ensure_tables`] where there was none).
pub(super) fn cluster_id(db: &redb::Database) -> Result<Uuid, OpenError> {
    let txn = db.begin_read().map_err(|e| OpenError::Storage(e.into()))?;
    let table = txn.open_table(META).map_err(|e| OpenError::Storage(e.into()))?;
    match read_cluster_id(&table)? {
        Some(id) => Ok(id),
        None => Err(OpenError::Storage(StorageError::corrupt("database", "it has no cluster id"))),
    }
}

fn read_cluster_id(table: &impl ReadableTable<&'static str, u64>) -> Result<Option<Uuid>, OpenError> {
    let [high, low] = CLUSTER_ID_KEYS.map(|key| table.get(key).map(|value| value.map(|v| v.value())));
    match (high.map_err(|e| OpenError::Storage(e.into()))?, low.map_err(|e| OpenError::Storage(e.into()))?) {
        (Some(high), Some(low)) => Ok(Some(Uuid::from_u64_pair(high, low))),
        _ => Ok(None),
    }
}

/// Offsets as they are right after opening: everything in the file is committed and durable.
pub(super) fn offsets_of(partition: &PartitionMeta) -> PartitionOffsets {
    PartitionOffsets {
        log_start_offset: partition.log_start_offset,
        high_watermark: partition.next_offset,
        durable_offset: partition.next_offset,
        size_bytes: partition.size_bytes,
    }
}

/// Creates the tables, the format version and the cluster id in a new database, and what was added
/// since an older build created it; a no-op when all are there.
fn ensure_tables(db: &redb::Database) -> Result<(), OpenError> {
    use super::layout::{BATCHES, BLOBS, GROUP_OFFSETS, GROUP_TIMES, PRODUCERS, RESOURCES};
    {
        let txn = db.begin_read().map_err(|e| OpenError::Storage(e.into()))?;
        let complete = txn.open_table(TOPICS).is_ok()
            && txn.open_table(PARTITIONS).is_ok()
            && txn.open_table(BATCHES).is_ok()
            && txn.open_table(GROUP_OFFSETS).is_ok()
            && txn.open_table(PRODUCERS).is_ok()
            && txn.open_table(RESOURCES).is_ok()
            && txn.open_table(BLOBS).is_ok()
            && txn.open_table(GROUP_TIMES).is_ok();
        if let Ok(table) = txn.open_table(META)
            && let Some(version) = table.get(FORMAT_VERSION_KEY).map_err(|e| OpenError::Storage(e.into()))?
            // A newer format is refused by `load`, untouched.
            && ((complete && read_cluster_id(&table)?.is_some()) || version.value() > FORMAT_VERSION)
        {
            return Ok(());
        }
    }
    let txn = db.begin_write().map_err(|e| OpenError::Storage(e.into()))?;
    {
        let mut meta_table = txn.open_table(META).map_err(|e| OpenError::Storage(e.into()))?;
        if meta_table.get(FORMAT_VERSION_KEY).map_err(|e| OpenError::Storage(e.into()))?.is_none() {
            meta_table.insert(FORMAT_VERSION_KEY, FORMAT_VERSION).map_err(|e| OpenError::Storage(e.into()))?;
        }
        // A cluster id is added without a format change: a build that does not know it ignores
        // it. Data from before it gets one here, at its first open.
        if read_cluster_id(&meta_table)?.is_none() {
            let (high, low) = Uuid::new_v4().as_u64_pair();
            for (key, half) in CLUSTER_ID_KEYS.into_iter().zip([high, low]) {
                meta_table.insert(key, half).map_err(|e| OpenError::Storage(e.into()))?;
            }
        }
        txn.open_table(TOPICS).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(PARTITIONS).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(BATCHES).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(GROUP_OFFSETS).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(PRODUCERS).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(RESOURCES).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(BLOBS).map_err(|e| OpenError::Storage(e.into()))?;
        txn.open_table(GROUP_TIMES).map_err(|e| OpenError::Storage(e.into()))?;
    }
    txn.commit().map_err(|e| OpenError::Storage(e.into()))
}
