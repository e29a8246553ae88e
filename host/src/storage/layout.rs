//! How a partition's log is laid out in redb rows.
//!
//! | table        | key                                        | value                              |
//! |--------------|--------------------------------------------|------------------------------------|
//! | `meta`       | `&str` name                                | `u64` (`format_version`, `next_partition_key`) |
//! | `topics`     | `&str` topic name                          | postcard [`TopicMeta`](super::meta::TopicMeta) |
//! | `partitions` | `u64` partition key                        | postcard [`PartitionMeta`](super::meta::PartitionMeta) |
//! | `batches`    | `(u64 partition key, u64 base offset, u32 part)` | bytes: part of a *group*     |
//!
//! A **group** is the batches one commit appends to one partition, concatenated as they are stored
//! on the wire (Kafka v2 batches are self-delimiting). Its key's base offset is the base offset of
//! its first batch. A group is written as one or more **parts** (rows) numbered from 0.
//!
//! Why groups and parts instead of one row per batch: redb allocates a B-tree leaf as a
//! power-of-two multiple of its 4 KiB page. A leaf holding one 16,384 B value (plus the key and
//! leaf header) needs a 32 KiB page: measured, values of exactly 16 or 64 KiB made the file 2.1–2.5×
//! the payload. So a group's bytes are cut into parts ([`part_lengths`]) where that takes fewer
//! pages: the first part fills the largest page the group overflows, the rest follows. Concatenating the batches of one commit
//! also means that many small producer batches share pages instead of each starting a leaf.
//!
//! Partition keys are allocated from a counter and never reused, so a deleted topic's rows can
//! never be mistaken for a new topic's.

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

/// The lengths of the parts a group of `total` bytes is stored as; they add up to `total`.
pub fn part_lengths(total: usize) -> impl Iterator<Item = usize> {
    let mut rest = total;
    core::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let part = next_part_len(rest);
        rest -= part;
        Some(part)
    })
}

fn next_part_len(rest: usize) -> usize {
    let whole = page_bytes_for(rest);
    if whole == PAGE_BYTES {
        return rest;
    }
    // Cutting pays only when filling the next smaller page and storing the rest separately takes
    // fewer pages than one oversized page (16,384 B: 16 + 4 KiB instead of 32 KiB; 4,090 B: no).
    let first = whole / 2 - LEAF_OVERHEAD_BYTES;
    if whole / 2 + pages_for(rest - first) < whole { first } else { rest }
}

/// The leaf page size a part of `len` bytes takes when it is alone in its leaf.
fn page_bytes_for(len: usize) -> usize {
    (len + LEAF_OVERHEAD_BYTES).next_power_of_two().max(PAGE_BYTES)
}

/// Total page bytes the parts of a group of `total` bytes take.
fn pages_for(total: usize) -> usize {
    part_lengths(total).map(page_bytes_for).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_bytes_for(part: usize) -> usize {
        (part + LEAF_OVERHEAD_BYTES).next_power_of_two().max(PAGE_BYTES)
    }

    #[test]
    fn parts_add_up_and_fill_pages() {
        for total in (1..300_000).step_by(997).chain([16_384, 65_536, 131_072, 16_000, 4_068]) {
            let parts: Vec<usize> = part_lengths(total).collect();
            assert_eq!(parts.iter().sum::<usize>(), total, "total {total}");
            assert!(parts.iter().all(|&p| p > 0));
            let pages: usize = parts.iter().map(|&p| page_bytes_for(p)).sum();
            // Never worse than one page for the whole group, and within half of the payload
            // once the group is larger than two pages.
            assert!(pages <= page_bytes_for(total), "total {total}: {parts:?}");
            if total > 2 * PAGE_BYTES {
                assert!(pages <= total + total / 2, "total {total}: {parts:?}");
            }
        }
    }

    #[test]
    fn power_of_two_groups_do_not_double() {
        // The case measured before this layout: a 16 KiB value took a 32 KiB page.
        let parts: Vec<usize> = part_lengths(16_384).collect();
        assert_eq!(parts, vec![16_384 - LEAF_OVERHEAD_BYTES, LEAF_OVERHEAD_BYTES]);
        let parts: Vec<usize> = part_lengths(16_000).collect();
        assert_eq!(parts, vec![16_000]);
        // Just over a page: cutting would still take two pages, so it stays whole.
        assert_eq!(part_lengths(4_090).collect::<Vec<_>>(), vec![4_090]);
        let parts: Vec<usize> = part_lengths(65_536).collect();
        assert_eq!(parts.iter().map(|&p| page_bytes_for(p)).sum::<usize>(), 65_536 + 4096);
    }

    #[test]
    fn empty_group_has_no_parts() {
        assert_eq!(part_lengths(0).count(), 0);
    }
}
