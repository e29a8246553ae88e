//! The uplink client: sans-IO, over the core's RAM log.
//!
//! A batch's sequence number is its base offset in the RAM log, so a batch keeps its number when
//! it is sent again after a reconnect (the gateway recognises the repeat), numbers only grow
//! within a boot, and batches the log dropped when full leave a gap the gateway accepts. On every
//! (re)connection everything not yet acknowledged is sent again, oldest first, at most
//! `window` frames ahead of the acks; an ack releases the batches up to the one it names. Each
//! frame names the batch before it still held (`prev`): a gateway that lacks it (a frame lost on
//! the way) answers `Nak`, and sending starts again after what it holds.
//!
//! Batches the uplink moved to the backlog while the link was down ([`crate::backlog`]) go before
//! anything in RAM, one at a time (stop and wait: the next only once the gateway answered), each
//! under the (boot, sequence) it was first numbered with. One at a time because a frame of the
//! backlog cannot name a `prev` the gateway could check: its predecessor may be of another boot.

use rill_core::batch::BatchHeader;
use rill_core::ram_log::RamLog;
use rill_core::uplink::{self, Clock, DataFrame, EncodeError, Frame};

use crate::backlog::Spilled;

/// How the client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Frames sent ahead of the gateway's acks.
    pub window: usize,
    /// The first wait before trying the link again, doubling up to `backoff_max_ms`.
    pub backoff_first_ms: u64,
    pub backoff_max_ms: u64,
    /// How long frames may wait for an answer before the link counts as down. A UART has no
    /// connection that could report a broken link: silence is the only sign.
    pub answer_timeout_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { window: 4, backoff_first_ms: 250, backoff_max_ms: 30_000, answer_timeout_ms: 2_000 }
    }
}

/// Waits between connection attempts: doubling from the first to the most, back to the first
/// once the link carried an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first_ms: u64,
    max_ms: u64,
    next_ms: u64,
}

impl Backoff {
    pub const fn new(first_ms: u64, max_ms: u64) -> Self {
        Backoff { first_ms, max_ms, next_ms: first_ms }
    }

    /// The wait before the next attempt; the one after is twice as long.
    pub fn next_wait(&mut self) -> u64 {
        let wait = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        wait
    }

    pub fn reset(&mut self) {
        self.next_ms = self.first_ms;
    }
}

/// The link as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Down; try again at this time (device clock, ms).
    Down { retry_at_ms: u64 },
    /// Up; everything at or below `sent_through` (a base offset) went on this connection.
    Up { sent_through: Option<u64> },
}

/// The sending side of a device's uplink. See the module doc.
#[derive(Debug)]
pub struct UplinkClient<'a> {
    device: &'a str,
    boot: u32,
    clock: Clock,
    config: ClientConfig,
    link: Link,
    backoff: Backoff,
    /// What the last nak acted on said the gateway holds, until an ack shows progress. The
    /// gateway naks every frame after a lost one: the naks for frames sent before the rewind
    /// must not rewind again, or one lost frame costs `window` × `window` frames.
    rewound_after: Option<Option<u32>>,
    /// The (boot, sequence) of the backlog's batch on the link, waiting for its answer.
    backlog_in_flight: Option<(u32, u32)>,
    /// Records the backlog dropped, full: reported upstream with the RAM log's.
    backlog_dropped: u64,
}

impl<'a> UplinkClient<'a> {
    /// A client for `device` in boot `boot` (a value that changes at every reboot), whose
    /// readings are stamped on `clock`. The link starts down, to be tried at once.
    pub fn new(device: &'a str, boot: u32, clock: Clock, config: ClientConfig) -> Self {
        let backoff = Backoff::new(config.backoff_first_ms, config.backoff_max_ms);
        UplinkClient {
            device,
            boot,
            clock,
            config,
            link: Link::Down { retry_at_ms: 0 },
            backoff,
            rewound_after: None,
            backlog_in_flight: None,
            backlog_dropped: 0,
        }
    }

    /// Whether to try connecting now.
    pub fn should_connect(&self, now_ms: u64) -> bool {
        matches!(self.link, Link::Down { retry_at_ms } if now_ms >= retry_at_ms)
    }

    /// When to try next (`None` while up): the board sleeps until then.
    pub fn retry_at(&self) -> Option<u64> {
        match self.link {
            Link::Down { retry_at_ms } => Some(retry_at_ms),
            Link::Up { .. } => None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// The boot this client speaks for.
    pub fn boot(&self) -> u32 {
        self.boot
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Whether `frame` is the gateway answering this boot (an ack or a nak): a sign the link
    /// works, whether or not it releases anything.
    pub fn is_answer(&self, frame: &Frame<'_>) -> bool {
        let backlog_boot = self.backlog_in_flight.map(|(boot, _)| boot);
        answer_boot(frame).is_some_and(|boot| boot == self.boot || Some(boot) == backlog_boot)
    }

    /// Whether a batch of the backlog is on the link, waiting for its answer.
    pub fn backlog_in_flight(&self) -> bool {
        self.backlog_in_flight.is_some()
    }

    /// The backlog's count of records it dropped, full, to report with the RAM log's.
    pub fn set_backlog_dropped(&mut self, records: u64) {
        self.backlog_dropped = records;
    }

    /// Batches sent on this connection and not yet acknowledged.
    pub fn in_flight<const BYTES: usize, const BATCHES: usize>(&self, log: &RamLog<BYTES, BATCHES>) -> usize {
        let Link::Up { sent_through: Some(sent) } = self.link else { return 0 };
        log.iter()
            .filter_map(|batch| BatchHeader::decode(batch).ok())
            .take_while(|header| header.base_offset as u64 <= sent)
            .count()
    }

    /// The link came up: everything not acknowledged goes again.
    pub fn connected(&mut self) {
        self.link = Link::Up { sent_through: None };
        self.rewound_after = None;
        self.backlog_in_flight = None;
    }

    /// The link went down (or a connection attempt failed).
    pub fn disconnected(&mut self, now_ms: u64) {
        self.link = Link::Down { retry_at_ms: now_ms.saturating_add(self.backoff.next_wait()) };
        self.backlog_in_flight = None;
    }

    /// Records dropped so far, by the RAM log and the backlog: every frame reports it.
    fn dropped(&self, ram_dropped: u64) -> u32 {
        ram_dropped.saturating_add(self.backlog_dropped).min(u64::from(u32::MAX)) as u32
    }

    /// Writes the frame of `spilled`, the backlog's oldest batch, into `out` as
    /// [`next_frame`](Self::next_frame) does; `None` when the link is down or a batch of the
    /// backlog still waits for its answer. Nothing from RAM may go while the backlog holds any.
    ///
    /// A batch of an earlier boot on a since-boot clock is sent as if just read: that boot's
    /// clock ended with its power, so the gateway stamps its readings with their arrival (keeping
    /// their spacing within the batch). A board with a wall clock keeps their true times.
    pub fn next_backlog_frame(
        &mut self,
        spilled: &Spilled<'_>,
        ram_dropped: u64,
        now_ms: u64,
        scratch: &mut [u8],
        out: &mut [u8],
    ) -> Result<Option<usize>, EncodeError> {
        if !self.is_up() || self.backlog_in_flight.is_some() {
            return Ok(None);
        }
        let sent_at = match self.clock {
            Clock::SinceBoot if spilled.boot != self.boot => {
                BatchHeader::decode(spilled.batch).map_or(0, |header| header.max_timestamp.max(0) as u64)
            }
            _ => now_ms,
        };
        let frame = Frame::Data(DataFrame {
            device: self.device,
            boot: spilled.boot,
            seq: spilled.seq,
            prev: None,
            dropped: self.dropped(ram_dropped),
            clock: self.clock,
            sent_at,
            batch: spilled.batch,
        });
        let len = uplink::encode(&frame, scratch, out)?;
        self.backlog_in_flight = Some((spilled.boot, spilled.seq));
        Ok(Some(len))
    }

    /// An answer to the backlog's batch on the link: the (boot, sequence) to pop once the gateway
    /// holds it (an ack of that boot at or past it: what it acknowledges is durable there). A nak
    /// (the gateway could not store it) lets it go again.
    pub fn on_backlog_answer(&mut self, frame: &Frame<'_>) -> Option<(u32, u32)> {
        let (boot, seq) = self.backlog_in_flight?;
        match *frame {
            Frame::Ack { boot: acked_boot, seq: acked } if acked_boot == boot && acked >= seq => {
                self.backlog_in_flight = None;
                self.backoff.reset();
                Some((boot, seq))
            }
            Frame::Nak { boot: naked_boot, .. } if naked_boot == boot => {
                self.backlog_in_flight = None;
                None
            }
            _ => None,
        }
    }

    /// Writes the next frame to send into `out` (COBS, with its `0x00`), using `scratch`;
    /// returns its length, or `None` when there is nothing to send now (link down, nothing new,
    /// or `window` frames unacknowledged). `now_ms` is the device clock (as `clock` says).
    pub fn next_frame<const BYTES: usize, const BATCHES: usize>(
        &mut self,
        log: &RamLog<BYTES, BATCHES>,
        now_ms: u64,
        scratch: &mut [u8],
        out: &mut [u8],
    ) -> Result<Option<usize>, EncodeError> {
        let Link::Up { sent_through } = self.link else { return Ok(None) };
        let (mut in_flight, mut previous, mut next) = (0, None, None);
        for batch in log.iter() {
            let Ok(header) = BatchHeader::decode(batch) else { continue };
            let base = header.base_offset as u64;
            if sent_through.is_some_and(|sent| base <= sent) {
                in_flight += 1;
                previous = Some(base);
                continue;
            }
            next = Some((base, batch));
            break;
        }
        let Some((base, batch)) = next.filter(|_| in_flight < self.config.window) else { return Ok(None) };
        // Base offsets pass u32 only after 4 billion readings in one boot.
        let prev = previous.map(|base| base as u32);
        let frame = Frame::Data(DataFrame {
            device: self.device,
            boot: self.boot,
            seq: base as u32,
            prev,
            dropped: self.dropped(log.dropped_records()),
            clock: self.clock,
            sent_at: now_ms,
            batch,
        });
        let len = uplink::encode(&frame, scratch, out)?;
        self.link = Link::Up { sent_through: Some(base) };
        Ok(Some(len))
    }

    /// A frame from the gateway: an ack of this boot releases the batches up to the one it names
    /// (their readings are durable at the gateway); a nak does too, and sending starts again
    /// after them. Returns how many batches were released.
    pub fn on_frame<const BYTES: usize, const BATCHES: usize>(
        &mut self,
        frame: &Frame<'_>,
        log: &mut RamLog<BYTES, BATCHES>,
    ) -> usize {
        let held = match *frame {
            Frame::Ack { seq, .. } => Some(seq),
            Frame::Nak { after, .. } => after,
            Frame::Data(_) => return 0,
        };
        if answer_boot(frame) != Some(self.boot) {
            // From an earlier boot: the gateway knew the device before it rebooted, or answers
            // the backlog's batch of that boot (see `on_backlog_answer`). Not about the RAM log.
            return 0;
        }
        self.backoff.reset();
        match (frame, self.link) {
            (Frame::Nak { .. }, Link::Up { .. }) if self.rewound_after != Some(held) => {
                self.link = Link::Up { sent_through: held.map(u64::from) };
                self.rewound_after = Some(held);
            }
            (Frame::Ack { .. }, _) => self.rewound_after = None,
            _ => {}
        }
        let Some(seq) = held else { return 0 };
        let acked = u64::from(seq);
        let last = log
            .read(acked)
            .and_then(|batch| BatchHeader::decode(batch).ok())
            .filter(|header| header.base_offset as u64 == acked)
            .map_or(acked, |header| header.last_offset() as u64);
        log.release_through(last)
    }
}

/// The boot an ack or a nak answers.
fn answer_boot(frame: &Frame<'_>) -> Option<u32> {
    match *frame {
        Frame::Ack { boot, .. } | Frame::Nak { boot, .. } => Some(boot),
        Frame::Data(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use rill_core::batch::{BatchBuilder, BatchParams, BuildError};
    use rill_core::ram_log::FullPolicy;
    use rill_core::uplink::{Deframer, UPLINK_FRAME_BYTES_MAX, UPLINK_WIRE_BYTES_MAX};

    use super::*;
    use crate::reading;
    use crate::testing::Gateway;

    type Log = RamLog<4096, 16>;

    /// Appends one batch of `values` read at `at` ms.
    fn record(log: &mut Log, at: i64, values: &[&str]) {
        let mut buf = [0u8; 512];
        let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
        for value in values {
            reading(&mut builder, "node-1", at, b"temperature", value.as_bytes()).unwrap();
        }
        log.append(builder.finish().unwrap()).unwrap();
    }

    /// Every frame the client would send now.
    fn drain(client: &mut UplinkClient<'_>, log: &Log, now: u64) -> Vec<u8> {
        let (mut scratch, mut out) = (vec![0u8; UPLINK_FRAME_BYTES_MAX], vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        let mut wire = Vec::new();
        while let Some(len) = client.next_frame(log, now, &mut scratch, &mut out).unwrap() {
            wire.extend_from_slice(&out[..len]);
        }
        wire
    }

    fn deliver_acks(client: &mut UplinkClient<'_>, log: &mut Log, wire: &[u8]) {
        let mut deframer = Deframer::new(vec![0u8; 256]);
        let mut answers = Vec::new();
        deframer.feed(wire, |frame| answers.push(owned(&frame.unwrap())));
        for answer in answers {
            client.on_frame(&answer, log);
        }
    }

    fn owned(frame: &Frame<'_>) -> Frame<'static> {
        match *frame {
            Frame::Ack { boot, seq } => Frame::Ack { boot, seq },
            Frame::Nak { boot, after } => Frame::Nak { boot, after },
            Frame::Data(_) => panic!("data from the gateway"),
        }
    }

    /// The wire bytes of `wire`'s frames but the one for sequence `lost`.
    fn without(wire: &[u8], lost: u32) -> Vec<u8> {
        let mut kept = Vec::new();
        for frame in wire.split_inclusive(|&b| b == 0) {
            let mut deframer = Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]);
            let mut seq = None;
            deframer.feed(frame, |f| {
                if let Ok(Frame::Data(data)) = f {
                    seq = Some(data.seq);
                }
            });
            if seq != Some(lost) {
                kept.extend_from_slice(frame);
            }
        }
        kept
    }

    #[test]
    fn a_frame_lost_on_the_way_is_not_covered_by_the_next_ack() {
        let config = ClientConfig { window: 3, ..ClientConfig::default() };
        let mut client = UplinkClient::new("node-1", 9, Clock::Wall, config);
        let mut log = Log::new(FullPolicy::Reject);
        let mut gateway = Gateway::default();
        client.connected();
        for i in 0..3 {
            record(&mut log, i, &["x"]);
        }
        // Noise eats the frame of batch 1: the gateway gets 0 and 2, and must not ack 2.
        let wire = without(&drain(&mut client, &log, 10), 1);
        let answers = gateway.receive(&wire);
        assert_eq!((gateway.stored.len(), gateway.naks), (1, 1));
        deliver_acks(&mut client, &mut log, &answers);
        assert_eq!(log.len(), 2, "batches 1 and 2 are still held");
        let answers = gateway.receive(&drain(&mut client, &log, 20));
        deliver_acks(&mut client, &mut log, &answers);
        assert!(log.is_empty());
        let seqs: Vec<u32> = gateway.stored.iter().map(|(_, seq, _)| *seq).collect();
        assert_eq!(seqs, [0, 1, 2], "sent again from where the gateway was, in order, once");
    }

    #[test]
    fn the_naks_after_one_lost_frame_make_one_resend_not_one_each() {
        let config = ClientConfig { window: 4, ..ClientConfig::default() };
        let mut client = UplinkClient::new("node-1", 9, Clock::Wall, config);
        let mut log = Log::new(FullPolicy::Reject);
        let mut gateway = Gateway::default();
        client.connected();
        for i in 0..4 {
            record(&mut log, i, &["x"]);
        }
        // Batch 1's frame is lost: the gateway acks 0 and naks 2 and 3.
        let mut answers = gateway.receive(&without(&drain(&mut client, &log, 10), 1));
        assert_eq!(gateway.naks, 2);
        // Answers arrive one at a time, and the client sends between them, as on a real link.
        let mut rounds = 0;
        while !answers.is_empty() && rounds < 20 {
            let end = answers.iter().position(|&b| b == 0).map_or(answers.len(), |i| i + 1);
            let one: Vec<u8> = answers.drain(..end).collect();
            deliver_acks(&mut client, &mut log, &one);
            answers.extend(gateway.receive(&drain(&mut client, &log, 20)));
            rounds += 1;
        }
        assert!(log.is_empty(), "everything acknowledged");
        let seqs: Vec<u32> = gateway.stored.iter().map(|(_, seq, _)| *seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(gateway.duplicates, 0, "the second nak did not send the same frames again");
    }

    #[test]
    fn readings_buffered_while_the_link_is_down_arrive_once_in_order_after_it_returns() {
        let config = ClientConfig { window: 2, ..ClientConfig::default() };
        let mut client = UplinkClient::new("node-1", 7, Clock::SinceBoot, config);
        let mut log = Log::new(FullPolicy::DropOldest);
        let mut gateway = Gateway::default();
        assert!(client.should_connect(0));
        client.connected();
        for i in 0..3 {
            record(&mut log, i, &["a", "b"]);
        }
        // The window lets two frames out; the acks release them and let the third go.
        let wire = drain(&mut client, &log, 100);
        let acks = gateway.receive(&wire);
        assert_eq!(gateway.stored.len(), 2);
        deliver_acks(&mut client, &mut log, &acks);
        assert_eq!(log.len(), 1, "acknowledged batches are released");
        // The link drops before the third frame's ack comes back, and while it is down more is read.
        let wire = drain(&mut client, &log, 200);
        gateway.receive(&wire); // stored; the ack is lost
        client.disconnected(300);
        assert!(!client.should_connect(400) && client.should_connect(300 + 250));
        for i in 3..6 {
            record(&mut log, i, &["c"]);
        }
        // Back: the unacknowledged third goes again (a repeat at the gateway), then the rest.
        client.connected();
        let mut rounds = 0;
        while !log.is_empty() && rounds < 10 {
            let wire = drain(&mut client, &log, 1_000);
            let acks = gateway.receive(&wire);
            deliver_acks(&mut client, &mut log, &acks);
            rounds += 1;
        }
        assert!(log.is_empty(), "everything acknowledged");
        assert_eq!(gateway.duplicates, 1, "the frame whose ack was lost was recognised");
        let seqs: Vec<u32> = gateway.stored.iter().map(|(_, seq, _)| *seq).collect();
        assert_eq!(seqs, [0, 2, 4, 6, 7, 8], "each batch once, in order, numbered by its base offset");
    }

    #[test]
    fn a_full_log_drops_the_oldest_reports_it_upstream_and_acks_of_another_boot_release_nothing() {
        let mut log = RamLog::<600, 16>::new(FullPolicy::DropOldest);
        for i in 0..20 {
            record_small(&mut log, i);
        }
        assert!(log.dropped_records() > 0);
        let mut client = UplinkClient::new("node-1", 8, Clock::Wall, ClientConfig::default());
        client.connected();
        let (mut scratch, mut out) = (vec![0u8; UPLINK_FRAME_BYTES_MAX], vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        let len = client.next_frame(&log, 5, &mut scratch, &mut out).unwrap().unwrap();
        let mut deframer = Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        let mut seen = None;
        deframer.feed(&out[..len], |frame| {
            if let Ok(Frame::Data(data)) = frame {
                seen = Some((data.boot, data.seq, data.dropped));
            }
        });
        let (boot, seq, dropped) = seen.unwrap();
        assert_eq!((boot, u64::from(dropped)), (8, log.dropped_records()), "drops reported upstream");
        assert_eq!(u64::from(seq), log.first_offset().unwrap(), "the gap shows in the sequence");
        // An ack of another boot releases nothing.
        assert_eq!(client.on_frame(&Frame::Ack { boot: 7, seq: 1_000 }, &mut log), 0);
    }

    /// The one data frame in `wire`.
    fn data_of(wire: &[u8]) -> (u32, u32, Option<u32>, u64) {
        let mut deframer = Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        let mut seen = None;
        deframer.feed(wire, |frame| {
            if let Ok(Frame::Data(data)) = frame {
                seen = Some((data.boot, data.seq, data.prev, data.sent_at));
            }
        });
        seen.expect("a data frame")
    }

    #[test]
    fn the_backlog_goes_one_batch_at_a_time_and_an_earlier_boots_ack_pops_it_not_the_ram_log() {
        let mut client = UplinkClient::new("node-1", 5, Clock::SinceBoot, ClientConfig::default());
        let mut log = Log::new(FullPolicy::Reject);
        record(&mut log, 40, &["now"]);
        let mut old = Log::new(FullPolicy::Reject);
        record(&mut old, 1_234, &["then"]);
        let spilled = Spilled { boot: 4, seq: 17, batch: old.oldest().unwrap() };
        let (mut scratch, mut out) = (vec![0u8; UPLINK_FRAME_BYTES_MAX], vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        assert_eq!(client.next_backlog_frame(&spilled, 0, 50, &mut scratch, &mut out), Ok(None), "link down");
        client.connected();
        let len = client.next_backlog_frame(&spilled, 0, 50, &mut scratch, &mut out).unwrap().unwrap();
        // Boot 4's clock ended with its power: the batch goes as if just read.
        assert_eq!(data_of(&out[..len]), (4, 17, None, 1_234));
        assert_eq!(client.next_backlog_frame(&spilled, 0, 60, &mut scratch, &mut out), Ok(None), "one at a time");
        // An ack of boot 4 is an answer, pops the batch, and releases nothing of boot 5's log.
        let ack = Frame::Ack { boot: 4, seq: 17 };
        assert!(client.is_answer(&ack));
        assert_eq!(client.on_backlog_answer(&ack), Some((4, 17)));
        assert_eq!(client.on_frame(&ack, &mut log), 0);
        assert_eq!(log.len(), 1);
        assert!(!client.backlog_in_flight() && !client.is_answer(&ack), "boot 4 is done with");
        // A batch of this boot, moved to the backlog during an outage, keeps its age.
        let spilled = Spilled { boot: 5, seq: 0, batch: log.oldest().unwrap() };
        let len = client.next_backlog_frame(&spilled, 0, 90, &mut scratch, &mut out).unwrap().unwrap();
        assert_eq!(data_of(&out[..len]), (5, 0, None, 90));
        // A nak (the gateway could not store it) lets it go again.
        assert_eq!(client.on_backlog_answer(&Frame::Nak { boot: 5, after: None }), None);
        assert!(client.next_backlog_frame(&spilled, 0, 95, &mut scratch, &mut out).unwrap().is_some());
    }

    fn record_small(log: &mut RamLog<600, 16>, i: i64) {
        let mut buf = [0u8; 256];
        let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
        reading(&mut builder, "node-1", i, b"t", b"21.5").unwrap();
        log.append(builder.finish().unwrap()).unwrap();
    }

    #[test]
    fn backoff_doubles_to_its_bound_and_an_ack_resets_it() {
        let mut client = UplinkClient::new(
            "n",
            1,
            Clock::Wall,
            ClientConfig { backoff_first_ms: 100, backoff_max_ms: 350, window: 1, ..ClientConfig::default() },
        );
        let mut waits = Vec::new();
        for now in [0u64, 1_000, 2_000, 3_000] {
            client.disconnected(now);
            waits.push(client.retry_at().unwrap() - now);
        }
        assert_eq!(waits, [100, 200, 350, 350]);
        let mut log = Log::new(FullPolicy::Reject);
        client.connected();
        client.on_frame(&Frame::Ack { boot: 1, seq: 0 }, &mut log);
        client.disconnected(10_000);
        assert_eq!(client.retry_at(), Some(10_100));
        let mut buf = [0u8; 64];
        let mut builder = BatchBuilder::new(&mut buf, BatchParams::default()).unwrap();
        assert!(matches!(reading(&mut builder, "n", 0, b"k", &[0u8; 64]), Err(BuildError::RecordTooLarge { .. })));
    }
}
