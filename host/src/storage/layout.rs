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
//! the payload. So a group's bytes are cut into parts that each fill a page almost exactly
//! ([`part_lengths`]): a part is as long as the rest of the group when that wastes little, or
//! else fills the largest page that the rest overflows. Concatenating the batches of one commit
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
/// Waste (as a fraction 1/N of the part) accepted before a part is cut to fill a smaller page.
const WASTE_DIVISOR: usize = 16;

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
    let needed = rest + LEAF_OVERHEAD_BYTES;
    let page = needed.next_power_of_two().max(PAGE_BYTES);
    let waste = page - needed;
    if page == PAGE_BYTES || waste <= rest / WASTE_DIVISOR {
        return rest;
    }
    // Fill the next smaller page completely; the rest goes into the following part(s).
    page / 2 - LEAF_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_bytes_for(part: usize) -> usize {
        (part + LEAF_OVERHEAD_BYTES)
            .next_power_of_two()
            .max(PAGE_BYTES)
    }

    #[test]
    fn parts_add_up_and_fill_pages() {
        for total in (1..300_000)
            .step_by(997)
            .chain([16_384, 65_536, 131_072, 16_000, 4_068])
        {
            let parts: Vec<usize> = part_lengths(total).collect();
            assert_eq!(parts.iter().sum::<usize>(), total, "total {total}");
            assert!(parts.iter().all(|&p| p > 0));
            let pages: usize = parts.iter().map(|&p| page_bytes_for(p)).sum();
            // Every part but a small tail fills its page to within 1/16; a tail costs one 4 KiB page.
            assert!(
                pages <= total + total / WASTE_DIVISOR + 2 * PAGE_BYTES,
                "total {total}: {parts:?}"
            );
        }
    }

    #[test]
    fn power_of_two_groups_do_not_double() {
        // The case measured before this layout: a 16 KiB value took a 32 KiB page.
        let parts: Vec<usize> = part_lengths(16_384).collect();
        assert_eq!(
            parts,
            vec![16_384 - LEAF_OVERHEAD_BYTES, LEAF_OVERHEAD_BYTES]
        );
        let parts: Vec<usize> = part_lengths(16_000).collect();
        assert_eq!(parts, vec![16_000]);
    }

    #[test]
    fn empty_group_has_no_parts() {
        assert_eq!(part_lengths(0).count(), 0);
    }
}
