//! The backlog against a NOR flash in RAM that loses power after any byte written or erased.

use std::vec::Vec;

use embassy_futures::block_on;
use rill_core::batch::{BatchBuilder, BatchParams, RecordSpec};

use super::*;
use crate::testing::{CutStyle, FakeNor, FakeNorError, PAGE_BYTES};

const BUF: usize = 1024;

/// Batch `n`: `records` readings whose values name it, about `records` × 40 bytes.
fn batch(n: u32, records: usize) -> Vec<u8> {
    let values: Vec<std::string::String> = (0..records).map(|i| std::format!("{{\"n\":{n},\"i\":{i}}}")).collect();
    let mut buf = [0u8; BUF];
    let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
    for v in &values {
        let spec = RecordSpec { timestamp: i64::from(n), key: Some(b"t"), value: Some(v.as_bytes()), headers: &[] };
        builder.push(&spec).unwrap();
    }
    builder.finish().unwrap().to_vec()
}

fn open(flash: FakeNor) -> FlashBacklog<FakeNor> {
    let end = flash.capacity_bytes();
    block_on(FlashBacklog::open(flash, 0..end, &mut [0u8; BUF])).unwrap()
}

/// Every stored (boot, seq), oldest first, removing them; each batch must read back as it
/// was written.
fn try_drain(backlog: &mut FlashBacklog<FakeNor>) -> Result<Vec<(u32, u32)>, std::string::String> {
    let mut buf = [0u8; BUF];
    let mut out = Vec::new();
    loop {
        let oldest = block_on(backlog.oldest(&mut buf)).map_err(|e| std::format!("oldest: {e:?}"))?;
        let Some(stored) = oldest else { return Ok(out) };
        if stored.batch != &batch(stored.seq, 4)[..] {
            return Err(std::format!("batch {} does not read back as written", stored.seq));
        }
        let (boot, seq) = (stored.boot, stored.seq);
        out.push((boot, seq));
        match block_on(backlog.pop_oldest_if(boot, seq, &mut buf)) {
            Ok(true) => {}
            other => return Err(std::format!("popping ({boot}, {seq}) after {out:?}: {other:?}")),
        }
    }
}

fn drain(backlog: &mut FlashBacklog<FakeNor>) -> Vec<(u32, u32)> {
    try_drain(backlog).unwrap()
}

#[test]
fn batches_outlive_a_reboot_with_their_numbers_in_order() {
    let mut backlog = open(FakeNor::new(4));
    let mut buf = [0u8; BUF];
    for seq in 0..20 {
        block_on(backlog.push(7, seq, &batch(seq, 4), &mut buf)).unwrap();
    }
    let mut rebooted = open(backlog.into_flash());
    let expected: Vec<(u32, u32)> = (0..20).map(|seq| (7, seq)).collect();
    assert_eq!(drain(&mut rebooted), expected);
}

/// A workload of pushes and pops that goes more than twice round 4 pages (erasing them as it
/// goes), cut at every 31st byte it writes or erases, each cut leaving the flash as `style`
/// says. After each reboot the backlog must hold exactly what was confirmed and not popped,
/// give or take the one operation the cut interrupted, in order and byte for byte, and work
/// on. Returns how many cuts were tried, or the first that broke this.
fn cut_everywhere(style: CutStyle) -> Result<usize, std::string::String> {
    const PUSHES: u32 = 200;
    const PAGES: usize = 4;
    // The pushes and pops of the workload; returns (pushes confirmed, pops confirmed, what
    // was in flight when the power went).
    fn workload(flash: FakeNor) -> (FakeNor, u32, u32, Option<&'static str>) {
        let mut backlog = open(flash);
        let mut buf = [0u8; BUF];
        let (mut pushed, mut popped) = (0, 0);
        for seq in 0..PUSHES {
            if let Err(e) = block_on(backlog.push(1, seq, &batch(seq, 4), &mut buf)) {
                assert_eq!(e, FlashLogError::Flash(FakeNorError::PowerCut));
                return (backlog.into_flash(), pushed, popped, Some("push"));
            }
            pushed += 1;
            // Two pops for three pushes until 40 batches wait, then one pop per push.
            if seq % 3 != 0 || pushed - popped > 40 {
                match block_on(backlog.pop_oldest_if(1, popped, &mut buf)) {
                    Ok(true) => popped += 1,
                    Ok(false) => panic!("batch {popped} is the oldest"),
                    Err(e) => {
                        assert_eq!(e, FlashLogError::Flash(FakeNorError::PowerCut));
                        return (backlog.into_flash(), pushed, popped, Some("pop"));
                    }
                }
            }
        }
        (backlog.into_flash(), pushed, popped, None)
    }
    let (whole, _, _, _) = workload(FakeNor::new(PAGES));
    assert!(whole.erased_pages >= PAGES as u64, "the workload erases pages: {}", whole.erased_pages);
    let total = whole.written + whole.erased_pages * PAGE_BYTES as u64;
    let mut cuts = 0;
    for cut in (0..total).step_by(31) {
        let mut flash = FakeNor::new(PAGES);
        flash.cut_after(cut, style);
        let (mut flash, pushed, popped, in_flight) = workload(flash);
        flash.revive();
        let mut rebooted = open(flash);
        let broken = |why: std::string::String| {
            std::format!(
                "{style:?} cut after {cut} bytes ({in_flight:?} in flight, {pushed} pushed, {popped} popped): {why}"
            )
        };
        let seqs: Vec<u32> = try_drain(&mut rebooted).map_err(broken)?.into_iter().map(|(_, seq)| seq).collect();
        let first_ok = if in_flight == Some("pop") { [popped, popped + 1] } else { [popped, popped] };
        let last_ok = if in_flight == Some("push") { [pushed, pushed + 1] } else { [pushed, pushed] };
        let (first, end) = (seqs.first().copied().unwrap_or(popped), seqs.last().map_or(popped, |s| s + 1));
        if in_flight.is_none()
            || !seqs.windows(2).all(|w| w[1] == w[0] + 1)
            || !first_ok.contains(&first)
            || !last_ok.contains(&end)
        {
            return Err(broken(std::format!("found {seqs:?}")));
        }
        let mut buf = [0u8; BUF];
        block_on(rebooted.push(2, 0, &batch(0, 4), &mut buf))
            .map_err(|e| broken(std::format!("no push after the reboot: {e:?}")))?;
        cuts += 1;
    }
    Ok(cuts)
}

#[test]
fn a_power_cut_anywhere_loses_nothing_confirmed() {
    for style in [CutStyle::Clean, CutStyle::Garbled] {
        let cuts = cut_everywhere(style).unwrap();
        assert!(cuts > 1_000, "{style:?}: {cuts} cuts tried");
    }
}

/// An erase cut short that leaves the page's end erased and its start not (some parts erase
/// that way) leaves a page header and old entries behind: the trailer of the page before
/// condemned it, so they are never read as live. (sequential-storage 8.0.2 lost a confirmed
/// batch here.)
#[test]
fn a_power_cut_in_an_erase_from_the_page_end_loses_nothing_confirmed() {
    let cuts = cut_everywhere(CutStyle::EraseBackwards).unwrap();
    assert!(cuts > 1_000, "{cuts} cuts tried");
}

/// A backlog that overflows (the link down for long) with a few batches popped early: the pop
/// markers sit in the first page, and no later page has any. When the log comes round to that
/// page, it drops what is left there; a cut erase may leave the page's start (popped batches)
/// and lose its markers. Whatever the cut, no popped batch may come back, the newest confirmed
/// batch is kept, and only the oldest are missing.
fn cut_while_dropping(style: CutStyle) -> Result<usize, std::string::String> {
    const PAGES: usize = 4;
    fn workload(flash: FakeNor) -> (FakeNor, u32, u32, u64, Option<&'static str>) {
        let mut backlog = open(flash);
        let mut buf = [0u8; BUF];
        let (mut pushed, mut popped) = (0, 0);
        for seq in 0..120 {
            if block_on(backlog.push(1, seq, &batch(seq, 4), &mut buf)).is_err() {
                return (backlog.into_flash(), pushed, popped, 0, Some("push"));
            }
            pushed += 1;
            while seq == 15 && popped < 10 {
                if block_on(backlog.pop_oldest_if(1, popped, &mut buf)).is_err() {
                    return (backlog.into_flash(), pushed, popped, 0, Some("pop"));
                }
                popped += 1;
            }
        }
        let dropped = backlog.dropped_batches();
        (backlog.into_flash(), pushed, popped, dropped, None)
    }
    let (whole, _, _, dropped, _) = workload(FakeNor::new(PAGES));
    assert!(dropped > 20, "the workload overflows the backlog: {dropped} dropped");
    let total = whole.written + whole.erased_pages * PAGE_BYTES as u64;
    let mut cuts = 0;
    for cut in (0..total).step_by(17) {
        let mut flash = FakeNor::new(PAGES);
        flash.cut_after(cut, style);
        let (mut flash, pushed, popped, _, in_flight) = workload(flash);
        flash.revive();
        let broken = |why: std::string::String| {
            std::format!("{style:?} cut after {cut} bytes ({in_flight:?} in flight, {pushed} pushed): {why}")
        };
        let seqs: Vec<u32> = try_drain(&mut open(flash)).map_err(broken)?.into_iter().map(|(_, seq)| seq).collect();
        let end = seqs.last().map_or(0, |s| s + 1);
        let in_order = seqs.windows(2).all(|w| w[1] == w[0] + 1);
        let popped_back = seqs.first().is_some_and(|&first| first < popped);
        if in_flight.is_none() || !in_order || popped_back || !(pushed..=pushed + 1).contains(&end) {
            return Err(broken(std::format!("found {seqs:?} with {popped} popped")));
        }
        cuts += 1;
    }
    Ok(cuts)
}

#[test]
fn a_power_cut_while_the_backlog_drops_never_brings_back_a_popped_batch() {
    for style in [CutStyle::Clean, CutStyle::EraseBackwards, CutStyle::Garbled] {
        let cuts = cut_while_dropping(style).unwrap();
        assert!(cuts > 1_000, "{style:?}: {cuts} cuts tried");
    }
}

#[test]
fn a_full_backlog_drops_its_oldest_batches_and_counts_their_records() {
    let mut backlog = open(FakeNor::new(3));
    let mut buf = [0u8; BUF];
    for seq in 0..200 {
        block_on(backlog.push(1, seq, &batch(seq, 4), &mut buf)).unwrap();
    }
    assert!(backlog.dropped_batches() > 0);
    assert_eq!(backlog.dropped_records(), backlog.dropped_batches() * 4);
    let seqs: Vec<u32> = drain(&mut backlog).into_iter().map(|(_, seq)| seq).collect();
    assert_eq!(seqs.last(), Some(&199), "the newest are kept");
    assert_eq!(seqs.first().map(|&s| u64::from(s)), Some(backlog.dropped_batches()), "the oldest went first");
    assert!(matches!(
        block_on(backlog.push(1, 200, &[0u8; PAGE_BYTES], &mut [0u8; 2 * PAGE_BYTES])),
        Err(FlashLogError::TooLarge)
    ));
}

/// The write cost, counted on the fake: bytes written and pages erased per byte of batch,
/// pushing and popping 2,000 batches of ~170 bytes through 16 pages of 4 KiB.
#[test]
fn write_cost_stays_near_the_bytes_stored() {
    let mut backlog = open(FakeNor::new(16));
    let mut buf = [0u8; BUF];
    let mut payload = 0u64;
    for seq in 0..2_000 {
        let batch = batch(seq, 4);
        payload += batch.len() as u64;
        block_on(backlog.push(1, seq, &batch, &mut buf)).unwrap();
        if seq >= 50 {
            assert!(block_on(backlog.pop_oldest_if(1, seq - 50, &mut buf)).unwrap());
        }
    }
    // What awaiting a push or a pop holds (in an embassy task, in the task's static storage).
    let push_future = core::mem::size_of_val(&backlog.push(1, 0, &[], &mut buf));
    let pop_future = core::mem::size_of_val(&backlog.pop_oldest_if(1, 0, &mut buf));
    let flash = backlog.into_flash();
    let amplification = flash.written as f64 / payload as f64;
    let erases_per_mib = flash.erased_pages as f64 / (payload as f64 / (1 << 20) as f64);
    std::println!(
        "flash backlog: {payload} batch bytes -> {} bytes written ({amplification:.2}x), {} page erases ({erases_per_mib:.0} per MiB); RAM {} bytes besides the flash and a batch buffer, futures: push {push_future} bytes, pop {pop_future} bytes (64-bit host)",
        flash.written,
        flash.erased_pages,
        core::mem::size_of::<FlashBacklog<FakeNor>>() - core::mem::size_of::<FakeNor>(),
    );
    // Item headers, alignment and pop marks cost something; a rewrite of the data would not.
    assert!(amplification < 1.3, "{amplification}");
    assert!(erases_per_mib < 1.5 * (1 << 20) as f64 / PAGE_BYTES as f64, "{erases_per_mib}");
}

#[test]
fn flash_holding_anything_else_opens_empty_and_a_bad_range_is_refused() {
    let mut noise = FakeNor::new(3);
    let mut state = 0x9e37_79b9u32;
    let words: Vec<u8> = (0..3 * PAGE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    block_on(embedded_storage_async::nor_flash::NorFlash::write(&mut noise, 0, &words)).unwrap();
    let mut backlog = open(noise);
    assert_eq!(drain(&mut backlog), Vec::new());
    let mut buf = [0u8; BUF];
    for seq in 0..60 {
        block_on(backlog.push(3, seq, &batch(seq, 4), &mut buf)).unwrap();
    }
    let mut rebooted = open(backlog.into_flash());
    assert_eq!(drain(&mut rebooted).len(), 60, "nothing dropped: the noise was erased, not counted");

    for range in [0..PAGE_BYTES as u32, 1..2 * PAGE_BYTES as u32, 0..4 * PAGE_BYTES as u32] {
        let opened = block_on(FlashBacklog::open(FakeNor::new(3), range.clone(), &mut buf));
        assert!(matches!(opened, Err(FlashLogError::Layout)), "{range:?}");
    }
    let opened = block_on(FlashBacklog::open(FakeNor::new(3), 0..3 * PAGE_BYTES as u32, &mut [0u8; 8]));
    assert!(matches!(opened, Err(FlashLogError::Buffer)));
}
