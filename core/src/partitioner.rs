//! Kafka-compatible partitioners: the same key lands in the same partition whether a record was
//! produced by a Java client, librdkafka (with `partitioner=murmur2_random`), a device or Rill.
//!
//! - Keyed records: [`partition_for_key`] = `to_positive(murmur2(key)) % partitions`, exactly
//!   Kafka's `BuiltInPartitioner.partitionForKey`.
//! - Unkeyed records: [`StickyPartitioner`] (KIP-480: one partition for a whole batch, a new one
//!   when the next batch starts) or [`RoundRobin`] (Kafka's `RoundRobinPartitioner`).
//!
//! The core has no random number generator: the sticky partitioner draws from a small xorshift32
//! seeded by the caller (the host seeds it from its RNG, a device from its hardware RNG or id).
//! Zero partitions is an error, never a division by zero.

use core::fmt;

/// Why no partition could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionerError {
    /// The topic has no partitions (a config or metadata bug upstream).
    NoPartitions,
}

impl fmt::Display for PartitionerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPartitions => f.write_str("the topic has no partitions"),
        }
    }
}

impl core::error::Error for PartitionerError {}

/// Kafka's `Utils.murmur2`, bit for bit: the Java code works on `int` with wrapping multiplication
/// and `>>>` (unsigned shift), which is what `u32` arithmetic gives; the result is reinterpreted
/// as Java's signed `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's `int length`: keys are far below 2 GiB, and truncation is what Java would do anyway.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from case 3 to case 1; the multiply happens once if any tail.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub const fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: u32) -> Result<u32, PartitionerError> {
    if partitions == 0 {
        return Err(PartitionerError::NoPartitions);
    }
    Ok(to_positive(murmur2(key)) % partitions)
}

/// KIP-480 sticky partitioning for unkeyed records: every record goes to the current partition
/// until the caller says a new batch started ([`StickyPartitioner::on_new_batch`]), which moves to
/// another partition. Batches fill up, so fewer, larger batches are sent than with round-robin.
#[derive(Debug, Clone)]
pub struct StickyPartitioner {
    rng: XorShift32,
    current: Option<u32>,
}

impl StickyPartitioner {
    /// `seed` drives the choice of partitions; any value works (zero included).
    pub const fn new(seed: u32) -> Self {
        Self { rng: XorShift32::new(seed), current: None }
    }

    /// The partition for the next unkeyed record: the sticky one, chosen on first use or when the
    /// partition count shrank below it.
    pub fn partition(&mut self, partitions: u32) -> Result<u32, PartitionerError> {
        if partitions == 0 {
            return Err(PartitionerError::NoPartitions);
        }
        match self.current {
            Some(current) if current < partitions => Ok(current),
            _ => {
                let chosen = self.rng.next() % partitions;
                self.current = Some(chosen);
                Ok(chosen)
            }
        }
    }

    /// A batch for the sticky partition was closed: pick another partition (a different one when
    /// there are at least two, as Kafka's `StickyPartitionCache.nextPartition` does).
    pub fn on_new_batch(&mut self, partitions: u32) -> Result<u32, PartitionerError> {
        if partitions == 0 {
            return Err(PartitionerError::NoPartitions);
        }
        let chosen = match self.current {
            Some(previous) if previous < partitions && partitions > 1 => {
                // Draw among the other `partitions - 1` and skip over the previous one: no retry
                // loop, and still uniform over the others.
                let pick = self.rng.next() % (partitions - 1);
                if pick >= previous { pick + 1 } else { pick }
            }
            _ => self.rng.next() % partitions,
        };
        debug_assert!(chosen < partitions);
        self.current = Some(chosen);
        Ok(chosen)
    }
}

/// Kafka's `RoundRobinPartitioner`: each call takes the next partition, wrapping around.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    counter: u32,
}

impl RoundRobin {
    /// Starts at partition `start % partitions`; producers pass different starts so that they do
    /// not all hit partition 0 first.
    pub const fn new(start: u32) -> Self {
        Self { counter: start }
    }

    /// The next partition.
    pub fn next_partition(&mut self, partitions: u32) -> Result<u32, PartitionerError> {
        if partitions == 0 {
            return Err(PartitionerError::NoPartitions);
        }
        let chosen = self.counter % partitions;
        self.counter = self.counter.wrapping_add(1);
        Ok(chosen)
    }
}

/// Marsaglia's xorshift32: tiny, no tables, good enough to spread batches over partitions (not
/// for anything that needs unpredictability).
#[derive(Debug, Clone)]
struct XorShift32 {
    state: u32,
}

impl XorShift32 {
    const fn new(seed: u32) -> Self {
        // Zero is xorshift's only fixed point; any non-zero replacement works.
        Self { state: if seed == 0 { 0x9e37_79b9 } else { seed } }
    }

    fn next(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_utils_test_vectors() {
        // From Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            // Kafka's test passes this one as `new byte[] {'a', 'b', 'c'}`.
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "key {:?}", core::str::from_utf8(key));
        }
    }

    #[test]
    fn murmur2_of_empty_key() {
        // Java: h = seed ^ 0; no body, no tail; then the final mix of 0x9747b28c.
        let mut h: u32 = 0x9747_b28c;
        h ^= h >> 13;
        h = h.wrapping_mul(0x5bd1_e995);
        h ^= h >> 15;
        assert_eq!(murmur2(b""), h as i32);
        assert_eq!(murmur2(b""), 275_646_681);
    }

    #[test]
    fn to_positive_clears_only_the_sign_bit() {
        assert_eq!(to_positive(0), 0);
        assert_eq!(to_positive(5), 5);
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(i32::MAX), 0x7fff_ffff);
    }

    #[test]
    fn partition_for_key_is_kafka_formula_and_rejects_zero_partitions() {
        assert_eq!(partition_for_key(b"foobar", 0), Err(PartitionerError::NoPartitions));
        let expected = to_positive(-790_332_482) % 12;
        assert_eq!(partition_for_key(b"foobar", 12), Ok(expected));
        assert_eq!(partition_for_key(b"anything", 1), Ok(0));
    }

    #[test]
    fn keyed_partitions_cover_every_partition() {
        let mut seen = [false; 16];
        for i in 0u32..1000 {
            let p = partition_for_key(&i.to_le_bytes(), 16).unwrap();
            seen[p as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn sticky_keeps_partition_until_new_batch_and_then_changes() {
        let mut sticky = StickyPartitioner::new(42);
        let first = sticky.partition(8).unwrap();
        for _ in 0..100 {
            assert_eq!(sticky.partition(8).unwrap(), first);
        }
        let mut previous = first;
        for _ in 0..100 {
            let next = sticky.on_new_batch(8).unwrap();
            assert_ne!(next, previous, "a new batch must move to another partition");
            assert_eq!(sticky.partition(8).unwrap(), next);
            previous = next;
        }
    }

    #[test]
    fn sticky_covers_all_partitions_and_handles_edge_counts() {
        for seed in [0, 1, 0xdead_beef] {
            let mut sticky = StickyPartitioner::new(seed);
            let mut seen = [0u32; 7];
            for _ in 0..7000 {
                seen[sticky.on_new_batch(7).unwrap() as usize] += 1;
            }
            // Roughly uniform: each partition within ±30% of 1000.
            assert!(seen.iter().all(|&n| (700..=1300).contains(&n)), "{seen:?}");
            assert_eq!(sticky.partition(0), Err(PartitionerError::NoPartitions));
            assert_eq!(sticky.on_new_batch(0), Err(PartitionerError::NoPartitions));
            assert_eq!(sticky.on_new_batch(1), Ok(0));
            assert_eq!(sticky.partition(1), Ok(0));
        }
    }

    #[test]
    fn sticky_repicks_when_partition_count_shrinks() {
        let mut sticky = StickyPartitioner::new(7);
        let mut p = sticky.on_new_batch(100).unwrap();
        while p < 3 {
            p = sticky.on_new_batch(100).unwrap();
        }
        assert!(sticky.partition(3).unwrap() < 3);
    }

    #[test]
    fn round_robin_cycles_and_wraps() {
        let mut rr = RoundRobin::new(0);
        let got: [u32; 7] = core::array::from_fn(|_| rr.next_partition(3).unwrap());
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(rr.next_partition(0), Err(PartitionerError::NoPartitions));
        let mut rr = RoundRobin::new(u32::MAX);
        assert_eq!(rr.next_partition(5), Ok(u32::MAX % 5));
        assert_eq!(rr.next_partition(5), Ok(0));
    }
}
