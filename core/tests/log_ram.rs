//! `RamLog` against a `Vec` model of the stored batches, under both full policies: appends of
//! valid and corrupt batches, releases, and reads from every offset.

#![cfg(feature = "alloc")]

use proptest::prelude::*;
use rill_core::batch::{Batch, BatchParams, RecordSpec, build_vec};
use rill_core::ram_log::{FullPolicy, RamLog, RamLogError};

const BYTES: usize = 600;
const BATCHES: usize = 6;
const RECORDS_MAX: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    /// A batch of this many records.
    Append(usize),
    /// A batch with one byte flipped at this position (modulo its length).
    AppendCorrupt(usize),
    /// Release through an offset chosen around the log.
    Release(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..=RECORDS_MAX).prop_map(Op::Append),
        1 => any::<usize>().prop_map(Op::AppendCorrupt),
        2 => any::<u16>().prop_map(Op::Release),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    base: u64,
    values: Vec<Vec<u8>>,
    len: usize,
}

impl ModelBatch {
    fn last(&self) -> u64 {
        self.base + self.values.len() as u64 - 1
    }
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    next: u64,
    dropped_batches: u64,
    dropped_records: u64,
    values_made: u32,
}

impl Model {
    fn used(&self, skip: usize) -> usize {
        self.batches.iter().skip(skip).map(|b| b.len).sum()
    }

    /// The ring may refuse a batch only when the index is full or the free bytes could be split
    /// into runs each too short for it (two runs, plus a tail skipped for an earlier batch).
    fn may_be_full(&self, skip: usize, len: usize, len_max: usize) -> bool {
        self.batches.len() - skip == BATCHES || self.used(skip) + len + len_max > BYTES
    }
}

fn make_batch(model: &mut Model, count: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            model.values_made += 1;
            model.values_made.to_le_bytes().repeat(2)
        })
        .collect();
    let specs: Vec<RecordSpec<'_>> =
        values.iter().map(|v| RecordSpec { timestamp: 1, key: None, value: Some(v), headers: &[] }).collect();
    (build_vec(BatchParams::default(), &specs).unwrap(), values)
}

fn append(log: &mut RamLog<BYTES, BATCHES>, model: &mut Model, policy: FullPolicy, count: usize) {
    let (bytes, values) = make_batch(model, count);
    let len_max = make_batch(&mut Model::default(), RECORDS_MAX).0.len();
    let dropped_before = log.dropped_batches();
    match (log.append(&bytes), policy) {
        (Ok(info), _) => {
            assert_eq!(info.base_offset, model.next);
            let evicted = (log.dropped_batches() - dropped_before) as usize;
            if evicted > 0 {
                assert_eq!(policy, FullPolicy::DropOldest);
                // Evicting one batch fewer would not have been enough room.
                assert!(model.may_be_full(evicted - 1, bytes.len(), len_max));
            }
            for gone in model.batches.drain(..evicted) {
                model.dropped_batches += 1;
                model.dropped_records += gone.values.len() as u64;
            }
            model.batches.push(ModelBatch { base: model.next, values, len: bytes.len() });
            model.next += count as u64;
        }
        (Err(RamLogError::Full), FullPolicy::Reject) => {
            assert!(model.may_be_full(0, bytes.len(), len_max), "refused with room: {model:?}");
        }
        (Err(e), _) => panic!("unexpected {e:?}"),
    }
}

fn apply(log: &mut RamLog<BYTES, BATCHES>, model: &mut Model, policy: FullPolicy, op: &Op) {
    match op {
        Op::Append(count) => append(log, model, policy, *count),
        Op::AppendCorrupt(at) => {
            let (mut bytes, _) = make_batch(model, 1);
            // Bytes 0..8 and 12..16 (base offset, epoch) lie outside the CRC: flipping them
            // leaves a valid batch. Flip a byte covered by the length or the CRC instead.
            let covered: Vec<usize> = (8..12).chain(16..bytes.len()).collect();
            bytes[covered[at % covered.len()]] ^= 0x5a;
            assert!(matches!(log.append(&bytes), Err(RamLogError::InvalidBatch(_))));
        }
        Op::Release(pick) => {
            let offset = u64::from(*pick) % (model.next + 2);
            let before = model.batches.len();
            model.batches.retain(|b| b.last() > offset);
            assert_eq!(log.release_through(offset), before - model.batches.len());
        }
    }
}

fn check(log: &RamLog<BYTES, BATCHES>, model: &Model) {
    assert_eq!(log.next_offset(), model.next);
    assert_eq!(log.len(), model.batches.len());
    assert_eq!(log.bytes_used(), model.used(0));
    assert_eq!((log.dropped_batches(), log.dropped_records()), (model.dropped_batches, model.dropped_records));
    assert_eq!(log.first_offset(), model.batches.first().map(|b| b.base));
    assert_eq!(log.iter().count(), model.batches.len());
    for (bytes, expected) in log.iter().zip(&model.batches) {
        let batch = Batch::parse(bytes).unwrap();
        assert_eq!(batch.base_offset() as u64, expected.base);
        let values: Vec<Vec<u8>> = batch.records().unwrap().map(|r| r.unwrap().value.unwrap().to_vec()).collect();
        assert_eq!(values, expected.values);
    }
    for offset in 0..=model.next {
        let expected = model.batches.iter().find(|b| b.base <= offset && offset <= b.last());
        let got = log.read(offset).map(|bytes| Batch::parse(bytes).unwrap().base_offset() as u64);
        assert_eq!(got, expected.map(|b| b.base), "read({offset})");
    }
}

fn run(policy: FullPolicy, ops: &[Op]) {
    let mut log = RamLog::<BYTES, BATCHES>::new(policy);
    let mut model = Model::default();
    for op in ops {
        apply(&mut log, &mut model, policy, op);
        check(&log, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn ram_log_matches_model_reject(ops in prop::collection::vec(op(), 1..60)) {
        run(FullPolicy::Reject, &ops);
    }

    #[test]
    fn ram_log_matches_model_drop_oldest(ops in prop::collection::vec(op(), 1..60)) {
        run(FullPolicy::DropOldest, &ops);
    }

    #[test]
    fn ram_log_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let mut log = RamLog::<BYTES, BATCHES>::new(FullPolicy::DropOldest);
        prop_assert!(log.append(&bytes).is_err());
        prop_assert!(log.is_empty());
    }
}
