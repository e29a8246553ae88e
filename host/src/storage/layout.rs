//! How a partition's log is laid out in redb rows.
//!
//! | table        | key                                        | value                              |
//! |--------------|--------------------------------------------|------------------------------------|
//! | `meta`       | `&str` name                                | `u64` (`format_version`, `next_partition_key`) |
//! | `topics`     | `&str` topic name                          | postcard [`TopicMeta`](super::meta::TopicMeta) |
//! | `partitions` | `u64` partition key                        | postcard [`PartitionMeta`](super::meta::PartitionMeta) |
//! | `batches`    | `(u64 partition key, u64 base offset, u32 part)` | bytes: part of a *group*     |
//!
//! A **group** is a run of whole batches of one partition, concatenated as they are stored on the
//! wire (Kafka v2 batches are self-delimiting). Its key's base offset is the base offset of its
//! first batch. A group is stored as **parts** (rows) numbered from 0, each exactly [`PART_BYTES`]
//! long but the last.
//!
//! Why: redb allocates a B-tree leaf as a power-of-two multiple of its 4 KiB page. A leaf holding
//! one 16,384 B value (plus the key and leaf header) needs a 32 KiB page, one holding a 4,090 B
//! value an 8 KiB page: measured, such values made the file 2–2.5× the payload. A part of
//! [`PART_BYTES`] fills a 4 KiB leaf exactly, whatever the batch sizes.
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

use std::borrow::Cow;

use redb::TableDefinition;

pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
pub const PARTITIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("partitions");
pub const BATCHES: TableDefinition<(u64, u64, u32), &[u8]> = TableDefinition::new("batches");

/// Key of the on-disk format version in `meta`.
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// Key of the next unused partition key in `meta`.
pub const NEXT_PARTITION_KEY: &str = "next_partition_key";
/// Bumped whenever this layout changes incompatibly. A database with a newer version is refused.
pub const FORMAT_VERSION: u64 = 1;

/// redb's page size (its default, which Rill keeps).
const PAGE_BYTES: usize = 4096;
/// What a leaf spends besides the value when it holds a single entry: page header (4 B), the
/// value's end offset (4 B) and the fixed-width key (8 + 8 + 4 B).
const LEAF_OVERHEAD_BYTES: usize = 4 + 4 + 20;
/// A full part: exactly one 4 KiB leaf.
pub const PART_BYTES: usize = PAGE_BYTES - LEAF_OVERHEAD_BYTES;

/// What one commit writes to a group: the rows, and where the group's next bytes go.
#[derive(Debug)]
pub struct Extension<'a> {
    /// `(part, bytes)` rows to insert; the first one may replace the group's partial last part.
    pub rows: Vec<(u32, Cow<'a, [u8]>)>,
    /// The part the next bytes start in (see `tail`).
    pub next_part: u32,
    /// The group's partial last part after this commit: empty when it ends on a whole part.
    pub tail: Vec<u8>,
}

/// Appends `new` to a group whose partial last part `tail` is part `first_part` (or, with an empty
/// `tail`, whose next part is `first_part`). Only the partial part is rewritten, completed with the
/// first bytes of `new`; the rest of `new` is cut into whole parts without copying, and at most one
/// partial part is left at the end.
pub fn extend_group(first_part: u32, mut tail: Vec<u8>, new: &[u8]) -> Extension<'_> {
    debug_assert!(tail.len() < PART_BYTES, "a tail is a partial part");
    let mut rows = Vec::with_capacity(new.len() / PART_BYTES + 2);
    let mut part = first_part;
    let mut rest = new;
    if !tail.is_empty() {
        let fill = (PART_BYTES - tail.len()).min(rest.len());
        tail.extend_from_slice(&rest[..fill]);
        rest = &rest[fill..];
        if tail.len() < PART_BYTES {
            // `new` ended inside the partial part: it stays the tail.
            rows.push((part, Cow::Owned(tail.clone())));
            return Extension { rows, next_part: part, tail };
        }
        rows.push((part, Cow::Owned(tail)));
        part += 1;
    }
    for chunk in rest.chunks(PART_BYTES) {
        rows.push((part, Cow::Borrowed(chunk)));
        if chunk.len() < PART_BYTES {
            return Extension { rows, next_part: part, tail: chunk.to_vec() };
        }
        part += 1;
    }
    Extension { rows, next_part: part, tail: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_fills_one_leaf_exactly() {
        assert_eq!(PART_BYTES + LEAF_OVERHEAD_BYTES, PAGE_BYTES);
    }

    fn shape(extension: &Extension) -> (Vec<(u32, usize)>, u32, usize) {
        let rows = extension.rows.iter().map(|(part, bytes)| (*part, bytes.len())).collect();
        (rows, extension.next_part, extension.tail.len())
    }

    #[test]
    fn a_new_group_is_cut_into_whole_parts_and_one_tail() {
        let new = vec![7u8; 3 * PART_BYTES + 10];
        let extension = extend_group(0, Vec::new(), &new);
        assert_eq!(shape(&extension), (vec![(0, PART_BYTES), (1, PART_BYTES), (2, PART_BYTES), (3, 10)], 3, 10));
        assert!(extension.rows[..3].iter().all(|(_, bytes)| matches!(bytes, Cow::Borrowed(_))), "no copy");
        let exact = vec![1u8; PART_BYTES];
        assert_eq!(shape(&extend_group(2, Vec::new(), &exact)), (vec![(2, PART_BYTES)], 3, 0));
        assert_eq!(shape(&extend_group(4, Vec::new(), &[])), (vec![], 4, 0));
    }

    #[test]
    fn extending_rewrites_only_the_partial_part() {
        // The tail grows but stays partial.
        let extension = extend_group(5, vec![1; 100], &[2; 50]);
        assert_eq!(shape(&extension), (vec![(5, 150)], 5, 150));
        assert_eq!(&extension.tail[..], &[[1u8; 100].as_slice(), [2u8; 50].as_slice()].concat()[..]);
        // The tail is completed, then whole parts and a new tail follow.
        let new = vec![3u8; (PART_BYTES - 100) + PART_BYTES + 7];
        let extension = extend_group(5, vec![1; 100], &new);
        assert_eq!(shape(&extension), (vec![(5, PART_BYTES), (6, PART_BYTES), (7, 7)], 7, 7));
        // Completed exactly: the next bytes start a new part.
        let extension = extend_group(5, vec![1; 100], &new[..PART_BYTES - 100]);
        assert_eq!(shape(&extension), (vec![(5, PART_BYTES)], 6, 0));
    }

    #[test]
    fn parts_concatenate_to_the_stream() {
        let mut stored: Vec<u8> = Vec::new();
        let (mut next_part, mut tail) = (0u32, Vec::new());
        let mut rows: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        for (i, len) in [10usize, 5000, 4058, 1, PART_BYTES, 9000, 0, 3].into_iter().enumerate() {
            let new: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            stored.extend_from_slice(&new);
            let extension = extend_group(next_part, tail, &new);
            for (part, bytes) in &extension.rows {
                rows.insert(*part, bytes.to_vec());
            }
            (next_part, tail) = (extension.next_part, extension.tail);
            assert!(rows.values().rev().skip(1).all(|part| part.len() == PART_BYTES), "only the last part is partial");
        }
        assert_eq!(rows.into_values().flatten().collect::<Vec<u8>>(), stored);
    }
}
