//! `MemLog` against a trivially simple model: a `Vec` of stored batches, each a list of
//! `(offset, value)` records. After every operation, reads from every offset, the offsets, the
//! high watermark, the log start and the leader-epoch answers must match the model.

#![cfg(feature = "alloc")]

use proptest::prelude::*;
use rill_core::batch::{Batch, BatchParams, RecordSpec, build_vec};
use rill_core::log::{MemLog, StateError};
use rill_core::retention::RetentionPolicy;

#[derive(Debug, Clone)]
enum Op {
    /// The new batch's record timestamps (anything, as a device with a wrong clock sends), and
    /// when it is appended: retention goes by the latter alone.
    Append {
        timestamps: Vec<i64>,
        appended_ms: i64,
    },
    AdvanceHighWatermark(u16),
    Truncate(u16),
    AdvanceLogStart(u16),
    Retention {
        now_ms: i64,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        keep_from: Option<u16>,
    },
    BumpEpoch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(-5_000i64..5_000, 1..=5), 0i64..1_000)
            .prop_map(|(timestamps, appended_ms)| Op::Append { timestamps, appended_ms }),
        2 => any::<u16>().prop_map(Op::AdvanceHighWatermark),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => any::<u16>().prop_map(Op::AdvanceLogStart),
        1 => (
            0i64..2_000,
            prop::option::of(0u64..1_000),
            prop::option::of(0u64..2_000),
            prop::option::of(any::<u16>()),
        )
            .prop_map(|(now_ms, retention_ms, retention_bytes, keep_from)| Op::Retention {
                now_ms,
                retention_ms,
                retention_bytes,
                keep_from,
            }),
        1 => Just(Op::BumpEpoch),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    base: u64,
    last: u64,
    epoch: u32,
    appended_ms: i64,
    size: u64,
    records: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    log_start: u64,
    next: u64,
    hw: u64,
    epoch: u32,
    values_made: u32,
}

impl Model {
    fn containing(&self, offset: u64) -> Option<&ModelBatch> {
        self.batches.iter().find(|b| b.base <= offset && offset <= b.last)
    }

    /// Kafka retention, written the obvious way, ageing batches by their append time.
    fn retention(&self, now: i64, policy: RetentionPolicy, keep_from: Option<u64>) -> Option<u64> {
        let keep_from = keep_from.map_or(self.hw, |k| k.min(self.hw));
        let mut remaining: u64 = self.batches.iter().map(|b| b.size).sum();
        let mut delete_below = None;
        for b in &self.batches {
            let expired = policy.retention_ms.is_some_and(|ms| b.appended_ms < now - ms as i64);
            let over = policy.retention_bytes.is_some_and(|limit| remaining - b.size >= limit);
            if b.last >= keep_from || !(expired || over) {
                break;
            }
            remaining -= b.size;
            delete_below = Some(b.last + 1);
        }
        delete_below
    }

    fn advance_log_start(&mut self, offset: u64) {
        self.log_start = self.log_start.max(offset.min(self.hw));
        let log_start = self.log_start;
        self.batches.retain(|b| b.last >= log_start);
    }
}

/// Picks an offset around the log (a little past its end too) from a random `u16`.
fn around(model: &Model, pick: u16) -> u64 {
    u64::from(pick) % (model.next + 3)
}

fn apply(log: &mut MemLog, model: &mut Model, op: &Op) {
    match op {
        Op::Append { timestamps, appended_ms } => append(log, model, timestamps, *appended_ms),
        Op::AdvanceHighWatermark(pick) => {
            let offset = around(model, *pick);
            model.hw = model.hw.max(offset.min(model.next));
            assert_eq!(log.advance_high_watermark(offset), model.hw);
        }
        Op::Truncate(pick) => truncate(log, model, around(model, *pick)),
        Op::AdvanceLogStart(pick) => {
            let offset = around(model, *pick);
            model.advance_log_start(offset);
            assert_eq!(log.advance_log_start(offset), model.log_start);
        }
        Op::Retention { now_ms, retention_ms, retention_bytes, keep_from } => {
            let policy = RetentionPolicy { retention_ms: *retention_ms, retention_bytes: *retention_bytes };
            let keep_from = keep_from.map(|k| around(model, k));
            let decision = log.retention_decision(*now_ms, policy, keep_from);
            let expected = model.retention(*now_ms, policy, keep_from);
            assert_eq!(decision.map(|d| d.delete_below), expected);
            if let (Some(decision), Some(delete_below)) = (decision, expected) {
                model.advance_log_start(delete_below);
                assert_eq!(log.apply_retention(&decision), model.log_start);
                assert_eq!(model.log_start, delete_below, "retention must not pass the hw");
            }
        }
        Op::BumpEpoch => {
            model.epoch += 1;
            log.set_leader_epoch(model.epoch).unwrap();
        }
    }
}

fn append(log: &mut MemLog, model: &mut Model, timestamps: &[i64], appended_ms: i64) {
    let values: Vec<Vec<u8>> = timestamps
        .iter()
        .map(|_| {
            model.values_made += 1;
            model.values_made.to_le_bytes().to_vec()
        })
        .collect();
    let specs: Vec<RecordSpec<'_>> = timestamps
        .iter()
        .zip(&values)
        .map(|(&timestamp, value)| RecordSpec { timestamp, key: None, value: Some(value), headers: &[] })
        .collect();
    let bytes = build_vec(BatchParams::default(), &specs).unwrap();
    let size = bytes.len() as u64;
    let info = log.append(bytes, appended_ms).unwrap();
    let base = model.next;
    let count = timestamps.len() as u64;
    assert_eq!((info.base_offset, info.last_offset), (base, base + count - 1));
    model.batches.push(ModelBatch {
        base,
        last: base + count - 1,
        epoch: model.epoch,
        appended_ms,
        size,
        records: (base..).zip(values).collect(),
    });
    model.next += count;
}

fn truncate(log: &mut MemLog, model: &mut Model, offset: u64) {
    if offset < model.log_start {
        let expected = StateError::BelowLogStart { offset, log_start_offset: model.log_start };
        assert_eq!(log.truncate_to(offset), Err(expected));
        return;
    }
    // Whole batches only: the one holding `offset` goes entirely.
    let cut = model.containing(offset).map_or(offset, |b| b.base);
    model.batches.retain(|b| b.base < cut);
    model.next = model.next.min(cut.max(model.log_start));
    model.hw = model.hw.min(model.next);
    assert_eq!(log.truncate_to(offset), Ok(model.next));
}

fn records_of(batch: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let batch = Batch::parse(batch).unwrap();
    batch
        .records()
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.offset(batch.base_offset()) as u64, r.value.unwrap().to_vec())
        })
        .collect()
}

fn check(log: &MemLog, model: &Model) {
    let state = log.state();
    assert_eq!(
        (state.log_start_offset(), state.high_watermark(), state.next_offset()),
        (model.log_start, model.hw, model.next)
    );
    assert_eq!(log.total_bytes(), model.batches.iter().map(|b| b.size).sum::<u64>());
    assert_eq!(log.batch_count(), model.batches.len());
    // Everything, decoded once, against the model.
    let all = log.read(model.log_start, usize::MAX).unwrap();
    assert_eq!(all.len(), model.batches.len());
    for (bytes, expected) in all.iter().zip(&model.batches) {
        assert_eq!(records_of(bytes), expected.records);
        let header = *Batch::parse(bytes).unwrap().header();
        assert_eq!(header.partition_leader_epoch, expected.epoch as i32);
    }
    // Every offset: the suffix of `all` starting at the batch holding it.
    for offset in model.log_start..=model.next {
        let got = log.read(offset, usize::MAX).unwrap();
        let first = model.batches.iter().position(|b| b.last >= offset).unwrap_or(all.len());
        assert_eq!(got.len(), all.len() - first, "read({offset})");
        if let Some(bytes) = got.first() {
            assert!(core::ptr::eq(*bytes, all[first]));
            assert!(model.batches[first].base <= offset);
        }
        // A tiny max_bytes still returns one whole batch.
        assert_eq!(log.read(offset, 0).unwrap().len(), got.len().min(1));
    }
    for offset in [model.log_start.wrapping_sub(1), model.next + 1] {
        assert!(log.read(offset, usize::MAX).is_err());
    }
    check_epochs(log, model);
}

/// For every stored batch's epoch, the end offset a follower would be told is where the next
/// higher epoch's first stored batch starts, or the log end for the latest.
fn check_epochs(log: &MemLog, model: &Model) {
    for b in &model.batches {
        let end = model.batches.iter().find(|o| o.epoch > b.epoch).map_or(model.next, |o| o.base);
        assert_eq!(log.state().end_offset_for(b.epoch), Some((b.epoch, end)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn mem_log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut log = MemLog::new();
        let mut model = Model::default();
        for op in &ops {
            apply(&mut log, &mut model, op);
            check(&log, &model);
        }
    }
}

#[test]
fn read_respects_max_bytes_after_the_first_batch() {
    let mut log = MemLog::new();
    let mut sizes = Vec::new();
    for n in 1..=4 {
        let specs: Vec<RecordSpec<'_>> =
            (0..n).map(|_| RecordSpec { timestamp: 0, key: None, value: Some(b"x"), headers: &[] }).collect();
        sizes.push(log.append(build_vec(BatchParams::default(), &specs).unwrap(), 0).unwrap().size_bytes);
    }
    assert_eq!(log.read(0, sizes[0] + sizes[1]).unwrap().len(), 2);
    assert_eq!(log.read(0, sizes[0] + sizes[1] - 1).unwrap().len(), 1);
    assert_eq!(log.read(2, sizes[1] + sizes[2] + sizes[3]).unwrap().len(), 3);
    assert!(log.read(10, 0).unwrap().is_empty());
}
