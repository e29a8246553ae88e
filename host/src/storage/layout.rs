//! How a partition's log is laid out in redb rows.
//!
//! | table        | key                                        | value                              |
//! |--------------|--------------------------------------------|------------------------------------|
//! | `meta`       | `&str` name                                | `u64` (`format_version`, `next_partition_key`, `next_producer_id`, `cluster_id_high`/`_low`) |
//! | `topics`     | `&str` topic name                          | postcard [`TopicMeta`](super::meta::TopicMeta) |
//! | `partitions` | `u64` partition key                        | postcard [`PartitionMeta`](super::meta::PartitionMeta) |
//! | `batches`    | `(u64 partition key, u64 base offset, u32 part)` | bytes: part of a *group*     |
//! | `group_offsets` | `(&str group, &str topic, u32 partition)` | postcard [`CommittedOffset`](super::offsets::CommittedOffset) |
//! | `producers`  | `(u64 partition key, i64 producer id)`      | postcard [`ProducerState`](super::producers::ProducerState) |
//! | `resources`  | `(&str kind, &str name)`                   | JSON document (see [`super::resources`]) |
//! | `blobs`      | `&str` lowercase hex SHA-256               | bytes (plugin components)          |
//! | `group_times` | `(u64 partition key, u64 group base offset)` | `i64` ms when the group was started (see [`super::ages`]) |
//!
//! A **group** is a run of whole batches of one partition, concatenated as they are stored on the
//! wire (Kafka v2 batches are self-delimiting). Its key's base offset is the base offset of its
//! first batch. A group is stored as **parts** (rows) numbered from 0; every part but the last fills
//! its B-tree leaf exactly ([`is_whole_part`]: 4 KiB, 8 KiB, … 256 KiB leaves), and the last one is
//! either whole too or shorter than one 4 KiB leaf (the group's *tail*).
//!
//! Why: redb allocates a B-tree leaf as a power-of-two multiple of its 4 KiB page. A leaf holding
//! one 16,384 B value (plus the key and leaf header) needs a 32 KiB page, one holding a 4,090 B
//! value an 8 KiB page: measured, such values made the file 2–2.5× the payload. Whole parts waste
//! nothing but their 28 B of leaf overhead, whatever the batch sizes.
//!
//! A partition's newest group stays *open* until it holds `StoreConfig::group_bytes_max` bytes
//! ([`GROUP_BYTES_MAX_DEFAULT`](crate::limits::GROUP_BYTES_MAX_DEFAULT)): the next commit appends
//! to it, rewriting only its last, partial part, so a stream of small commits fills whole leaves
//! instead of starting new ones each time. Readers see each commit's version of that part in their
//! own read transaction (MVCC). Retention deletes whole groups, so the cap plays the part of Kafka's
//! `segment.bytes`: it is the step in which old data goes, and it bounds what a read from the middle
//! of a group loads beyond what it returns.
//!
//! Partition keys are allocated from a counter and never reused, so a deleted topic's rows can
//! never be mistaken for a new topic's.

use std::ops::Range;

use redb::TableDefinition;

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
pub const PARTITIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("partitions");
pub const BATCHES: TableDefinition<(u64, u64, u32), &[u8]> = TableDefinition::new("batches");
pub const GROUP_OFFSETS: TableDefinition<(&str, &str, u32), &[u8]> = TableDefinition::new("group_offsets");
pub const PRODUCERS: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("producers");
pub const RESOURCES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("resources");
pub const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
pub const GROUP_TIMES: TableDefinition<(u64, u64), i64> = TableDefinition::new("group_times");

/// Key of the on-disk format version in `meta`.
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// Key of the next unused partition key in `meta`.
pub const NEXT_PARTITION_KEY: &str = "next_partition_key";
/// Key of the next unused idempotent producer id in `meta`.
pub const NEXT_PRODUCER_ID_KEY: &str = "next_producer_id";
/// Keys of the cluster id (a UUID: its high and low 64 bits) in `meta`, made with the database
/// (or by the first build that knows it): Kafka clients see one cluster across restarts.
pub const CLUSTER_ID_KEYS: [&str; 2] = ["cluster_id_high", "cluster_id_low"];
/// Bumped whenever this layout changes incompatibly. A database with a newer version is refused;
/// an older one is migrated when it is opened ([`super::migrate`]).
///
/// | version | change |
/// |---|---|
/// | 1 | the first layout |
/// | 2 | `group_times`; `PartitionMeta::last_append_ms`; the topic config's timestamp settings |
/// | 3 | the journal: recent commits may be only in `rill.journal` until a checkpoint (`journal_seq`) |
pub const FORMAT_VERSION: u64 = 3;
/// Key in `meta` of the last journal record a commit applied (see `storage::journal`).
pub const JOURNAL_SEQ_KEY: &str = "journal_seq";

/// redb's page size (its default, which Rill keeps).
const PAGE_BYTES: usize = 4096;
/// What a leaf spends besides the value when it holds a single entry: page header (4 B), the
/// value's end offset (4 B) and the fixed-width key (8 + 8 + 4 B).
const LEAF_OVERHEAD_BYTES: usize = 4 + 4 + 20;
/// The smallest whole part: exactly one 4 KiB leaf. A group's last part may be shorter (its tail).
pub const PART_BYTES: usize = PAGE_BYTES - LEAF_OVERHEAD_BYTES;
/// The largest leaf a part fills: 64 pages. Larger runs are cut into several parts; fewer, larger
/// parts mean fewer B-tree inserts per commit (measured: cutting 256 KiB commits into 4 KiB parts
/// halved throughput).
const PART_LEAF_BYTES_MAX: usize = 64 * PAGE_BYTES;

/// Whether a part of `len` bytes fills its leaf exactly (a power-of-two number of pages, at most
/// [`PART_LEAF_BYTES_MAX`]). Every part of a group but the last is whole.
pub fn is_whole_part(len: usize) -> bool {
    let leaf = len + LEAF_OVERHEAD_BYTES;
    leaf.is_power_of_two() && (PAGE_BYTES..=PART_LEAF_BYTES_MAX).contains(&leaf)
}

/// The longest whole part that `available` bytes (at least [`PART_BYTES`]) can fill.
fn whole_part_len(available: usize) -> usize {
    debug_assert!(available >= PART_BYTES);
    let mut leaf = PART_LEAF_BYTES_MAX;
    while leaf > PAGE_BYTES && leaf - LEAF_OVERHEAD_BYTES > available {
        leaf /= 2;
    }
    leaf - LEAF_OVERHEAD_BYTES
}

/// What one commit writes to a group: the rows, and where the group's next bytes go. Ranges are
/// in the bytes of the group's partial last part followed by the commit's new bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Extension {
    /// `(part, range)` rows to insert; the first one may replace the group's partial last part.
    pub rows: Vec<(u32, Range<usize>)>,
    /// The part the next bytes start in (see `tail`).
    pub next_part: u32,
    /// The group's partial last part after this commit (the last row, or nothing when the group
    /// ends on a whole part).
    pub tail: Range<usize>,
}

/// Cuts `new_len` bytes appended to a group whose partial last part of `tail_len` bytes is part
/// `first_part` (or, with no tail, whose next part is `first_part`). Only the partial part is
/// rewritten, completed to [`PART_BYTES`] with the first new bytes; the rest is cut into the
/// largest whole parts that fit (a binary decomposition: a few rows per commit), and what is left
/// below [`PART_BYTES`] becomes the new tail. Lengths only: the writer copies each row's bytes
/// once, straight into the space redb reserves for it.
pub fn extend_group(first_part: u32, tail_len: usize, new_len: usize) -> Extension {
    debug_assert!(tail_len < PART_BYTES, "a tail is a partial part");
    // A binary decomposition: one row per leaf size at most, plus the rewritten tail.
    let mut rows = Vec::with_capacity(PART_LEAF_BYTES_MAX.ilog2() as usize + new_len / PART_LEAF_BYTES_MAX + 2);
    let end = tail_len + new_len;
    let mut part = first_part;
    let mut at = 0;
    if tail_len > 0 {
        let filled = PART_BYTES.min(end);
        rows.push((part, 0..filled));
        if filled < PART_BYTES {
            // The new bytes ended inside the partial part: it stays the tail.
            return Extension { rows, next_part: part, tail: 0..filled };
        }
        at = filled;
        part += 1;
    }
    while at < end {
        let rest = end - at;
        if rest < PART_BYTES {
            rows.push((part, at..end));
            return Extension { rows, next_part: part, tail: at..end };
        }
        let whole = whole_part_len(rest);
        rows.push((part, at..at + whole));
        at += whole;
        part += 1;
    }
    Extension { rows, next_part: part, tail: end..end }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole part that fills a leaf of `pages` pages.
    fn whole(pages: usize) -> usize {
        pages * PAGE_BYTES - LEAF_OVERHEAD_BYTES
    }

    #[test]
    fn whole_parts_fill_power_of_two_leaves() {
        assert_eq!(PART_BYTES, whole(1));
        for pages in [1, 2, 4, 8, 16, 32, 64] {
            assert!(is_whole_part(whole(pages)), "{pages} pages");
        }
        for len in [0, 10, PART_BYTES - 1, PART_BYTES + 1, whole(3), whole(128), 16_384, 65_536] {
            assert!(!is_whole_part(len), "{len} B");
        }
        assert_eq!(whole_part_len(PART_BYTES), PART_BYTES);
        assert_eq!(whole_part_len(whole(2) - 1), PART_BYTES);
        assert_eq!(whole_part_len(whole(16) + 5), whole(16));
        assert_eq!(whole_part_len(usize::MAX / 2), whole(64));
    }

    fn shape(extension: &Extension) -> (Vec<(u32, usize)>, u32, usize) {
        let rows = extension.rows.iter().map(|(part, range)| (*part, range.len())).collect();
        (rows, extension.next_part, extension.tail.len())
    }

    #[test]
    fn a_new_group_is_cut_into_the_largest_whole_parts_and_one_tail() {
        let extension = extend_group(0, 0, whole(2) + whole(1) + 10);
        assert_eq!(shape(&extension), (vec![(0, whole(2)), (1, whole(1)), (2, 10)], 2, 10));
        assert_eq!(shape(&extend_group(2, 0, PART_BYTES)), (vec![(2, PART_BYTES)], 3, 0));
        assert_eq!(shape(&extend_group(4, 0, 0)), (vec![], 4, 0));
        // A commit of 1 MiB: four of the largest parts and a small tail.
        let rows = shape(&extend_group(0, 0, 1 << 20)).0;
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert!(rows[..4].iter().all(|&(_, len)| len == whole(64)));
    }

    #[test]
    fn extending_rewrites_only_the_partial_part() {
        // The tail grows but stays partial.
        let extension = extend_group(5, 100, 50);
        assert_eq!(extension, Extension { rows: vec![(5, 0..150)], next_part: 5, tail: 0..150 });
        // The tail is completed, then whole parts and a new tail follow.
        let extension = extend_group(5, 100, (PART_BYTES - 100) + PART_BYTES + 7);
        assert_eq!(shape(&extension), (vec![(5, PART_BYTES), (6, PART_BYTES), (7, 7)], 7, 7));
        assert_eq!(extension.tail, 2 * PART_BYTES..2 * PART_BYTES + 7);
        // Completed exactly: the next bytes start a new part.
        let extension = extend_group(5, 100, PART_BYTES - 100);
        assert_eq!(shape(&extension), (vec![(5, PART_BYTES)], 6, 0));
    }

    #[test]
    fn parts_concatenate_to_the_stream() {
        let mut stored: Vec<u8> = Vec::new();
        let (mut next_part, mut tail) = (0u32, Vec::new());
        let mut rows: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        for (i, len) in [10usize, 5000, 4058, 1, PART_BYTES, 9000, 0, 3, 300_000, 70_001].into_iter().enumerate() {
            let new: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            stored.extend_from_slice(&new);
            let extension = extend_group(next_part, tail.len(), new.len());
            let concat = [tail.as_slice(), new.as_slice()].concat();
            let mut covered = 0;
            for (part, range) in &extension.rows {
                assert_eq!(range.start, covered, "rows follow each other");
                covered = range.end;
                rows.insert(*part, concat[range.clone()].to_vec());
            }
            assert_eq!(covered, concat.len(), "rows cover every byte");
            (next_part, tail) = (extension.next_part, concat[extension.tail].to_vec());
            assert!(rows.values().rev().skip(1).all(|part| is_whole_part(part.len())), "only the last part is partial");
            let last = rows.values().next_back().map_or(0, Vec::len);
            assert!(is_whole_part(last) || last < PART_BYTES);
        }
        assert_eq!(rows.into_values().flatten().collect::<Vec<u8>>(), stored);
    }
}
