//! The mirror filter's refitting and checkpoints, on batches built here.

use super::*;
use rill_core::batch::{Batch, BatchParams, OffsetLayout, RecordSpec};

fn spec(value: &[u8]) -> RecordSpec<'_> {
    RecordSpec { timestamp: 1_000, key: Some(b"k"), value: Some(value), headers: &[] }
}

/// A stored batch of `count` records at `base`, in leader epoch 3, by producer 7.
fn stored(base: i64, count: usize) -> Vec<u8> {
    let specs = vec![spec(b"reading"); count];
    let params = BatchParams { base_offset: base, partition_leader_epoch: 3, producer_id: 7, ..BatchParams::default() };
    batch::build_vec(params, &specs).unwrap()
}

/// What a plugin keeping `deltas` of the batch at `base` (spanning `last_delta`) returns.
fn kept(base: i64, deltas: &[i32], last_delta: i32) -> Vec<u8> {
    // Long and alike, as sensor readings: they compress.
    let value = b"kept ".repeat(100);
    let specs = vec![spec(&value); deltas.len()];
    let layout = OffsetLayout { offset_deltas: deltas, last_offset_delta: last_delta };
    let params = BatchParams { base_offset: base, ..BatchParams::default() };
    let mut bytes = batch::build_vec_at_without_crc(params, &specs, layout).unwrap();
    batch::seal_crc(&mut bytes).unwrap();
    bytes
}

/// The read `batches` make, and each taken for filtering.
fn read(batches: &[&[u8]]) -> (Vec<u8>, Vec<Taken>) {
    let raw = batches.concat();
    let mut taken = Vec::new();
    let mut position = 0;
    for parsed in batch::batches(&raw) {
        let parsed = parsed.unwrap();
        let at = position..position + parsed.as_bytes().len();
        position = at.end;
        let plain = Some(plain_batch(&parsed, DECOMPRESSED_BYTES_MAX).unwrap());
        taken.push(Taken { at, stored: *parsed.header(), plain });
    }
    (raw, taken)
}

fn fresh() -> Filtered {
    Filtered { bytes: Vec::new(), next: 0, records_dropped: 0, refused: Vec::new() }
}

fn gzip(plain: &[u8]) -> Vec<u8> {
    let header = *Batch::parse(plain).unwrap().header();
    let packed = compression::compress(Compression::Gzip, &plain[batch::HEADER_LEN..]).unwrap();
    with_records(&header, &packed, Compression::Gzip).unwrap()
}

/// (base offset, last offset, records' offsets, epoch, producer id, codec) of each batch.
fn shipped(bytes: &[u8]) -> Vec<(i64, i64, Vec<i64>, i32, i64, Compression)> {
    batch::batches(bytes)
        .map(|parsed| {
            let parsed = parsed.unwrap();
            let h = *parsed.header();
            let plain = plain_batch(&parsed, DECOMPRESSED_BYTES_MAX).unwrap();
            let records = Batch::parse(&plain).unwrap().records().unwrap().map(|r| r.unwrap().offset(h.base_offset));
            let epoch = h.partition_leader_epoch;
            (h.base_offset, h.last_offset(), records.collect(), epoch, h.producer_id, parsed.compression())
        })
        .collect()
}

#[test]
fn survivors_keep_their_offsets_and_an_emptied_batch_keeps_its_range() {
    let (a, b) = (stored(10, 4), stored(14, 2));
    let (raw, taken) = read(&[&a, &b]);
    let mut filtered = fresh();
    refit(&raw, &taken, &kept(10, &[1, 3], 3), &mut filtered).unwrap();
    assert_eq!(
        shipped(&filtered.bytes),
        [(10, 13, vec![11, 13], 3, -1, Compression::None), (14, 15, vec![], 3, 7, Compression::None)],
        "the stored epoch; the plugin is not the producer of what it made"
    );
    assert_eq!(filtered.records_dropped, 4);
}

#[test]
fn compressed_input_goes_upstream_compressed_and_a_batch_kept_whole_as_stored() {
    let packed = gzip(&stored(20, 3));
    let whole = gzip(&stored(23, 2));
    let (raw, taken) = read(&[&packed, &whole]);
    assert_eq!(taken[0].plain.as_deref(), Some(stored(20, 3).as_slice()), "decompressed at the same offsets");
    let mut output = kept(20, &[0, 2], 2);
    output.extend(taken[1].plain.clone().unwrap());
    let mut filtered = fresh();
    refit(&raw, &taken, &output, &mut filtered).unwrap();
    assert_eq!(shipped(&filtered.bytes)[0], (20, 22, vec![20, 22], 3, -1, Compression::Gzip));
    assert!(filtered.bytes.ends_with(&whole), "the batch kept whole goes as the producer stored it");
}

#[test]
fn records_with_moved_timestamps_are_not_taken_for_the_stored_batch() {
    // A clock-correcting plugin: the same records section (deltas), another base timestamp.
    let a = stored(10, 2);
    let (raw, taken) = read(&[&a]);
    let header = *Batch::parse(&a).unwrap().header();
    let moved = BatchHeader {
        base_timestamp: header.base_timestamp + 3_600_000,
        max_timestamp: header.max_timestamp + 3_600_000,
        ..header
    };
    let output = with_records(&moved, &a[batch::HEADER_LEN..], Compression::None).unwrap();
    let mut filtered = fresh();
    refit(&raw, &taken, &output, &mut filtered).unwrap();
    let shipped = Batch::parse(&filtered.bytes).unwrap();
    assert_eq!(shipped.header().base_timestamp, header.base_timestamp + 3_600_000, "the plugin's times go up");
}

#[test]
fn output_that_does_not_keep_offsets_is_refused() {
    let a = stored(10, 4);
    let (raw, taken) = read(&[&a]);
    let mut several = kept(10, &[0, 1], 3);
    batch::set_base_offset(&mut several, -1).unwrap();
    let error = refit(&raw, &taken, &several, &mut fresh()).unwrap_err().to_string();
    assert!(error.contains("stands for no input batch"), "{error}");
    let error = refit(&raw, &taken, &kept(10, &[0, 1], 1), &mut fresh()).unwrap_err().to_string();
    assert!(error.contains("does not keep offsets"), "{error}");
}

#[test]
fn checkpoints_thin_out_keeping_the_oldest_and_the_newest() {
    let plugin_less = |checkpoints: VecDeque<(u64, Vec<u8>)>| checkpoints.iter().map(|(end, _)| *end).collect();
    let mut checkpoints = VecDeque::new();
    let mut part = |end: u64| {
        checkpoints.push_back((end, vec![0u8; 8]));
        thin(&mut checkpoints);
        plugin_less(checkpoints.clone())
    };
    let mut kept: Vec<u64> = Vec::new();
    for end in 1..=200 {
        kept = part(end);
    }
    assert!(kept.len() <= MIRROR_FILTER_CHECKPOINTS_MAX);
    assert_eq!((kept[0], *kept.last().unwrap()), (1, 200));
    assert!(kept.windows(2).all(|w| w[0] < w[1]));
}
