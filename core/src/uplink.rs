//! The uplink between a sensor node and its gateway, sans-IO: frames over a byte stream (a UART,
//! or TCP), built and read without allocating.
//!
//! On the wire a frame is COBS-encoded and ends with one `0x00` byte, which nothing inside a frame
//! contains: a reader that starts mid-stream, or meets line noise, drops what it has and starts
//! again at the next `0x00`. Decoded, a frame is
//!
//! | bytes | field |
//! |---|---|
//! | 1 | protocol version ([`UPLINK_VERSION`]) |
//! | varies | the header, postcard-encoded: what the frame is, and for data the device id, its boot id, the frame's sequence number, the sequence of the batch before it the device still holds, records dropped so far this boot, the clock its timestamps come from and that clock's reading as the frame was sent |
//! | varies | data only: one Kafka v2 record batch, as the core codec built it on the device |
//! | 4 | CRC-32C of everything before it, big-endian |
//!
//! - **Device → gateway: [`Frame::Data`].** The boot id changes at every reboot (sequence
//!   numbers start again at 0), so the gateway tells a repeated frame (same device, boot and
//!   sequence: sent again after a lost ack) from a new boot's first.
//! - **Gateway → device: [`Frame::Ack`]**, the highest (boot, sequence) of the device the gateway
//!   holds durably. The device drops what it keeps only below that.
//! - **Nothing lost between frames.** Acks are cumulative, so a frame lost on the way (noise on a
//!   UART) must not be covered by the ack of the next. A data frame names the batch before it that
//!   the device still holds (`prev`); when the gateway has not stored that one, it stores nothing
//!   and answers [`Frame::Nak`] with what it holds, and the device sends again from there.
//!   Batches the device dropped (its log full) are not named, so they leave a gap, as they must.
//! - **Time.** A device without a wall clock stamps records with milliseconds since boot
//!   ([`Clock::SinceBoot`]) and sends its clock's reading with every frame (`sent_at`). The
//!   gateway maps a record's time `t` to `arrival - (sent_at - t)`: exact but for the frame's
//!   transit (milliseconds on a UART or a LAN), however long the frame waited on the device.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::batch::crc32c;
use crate::limits::{UPLINK_BATCH_BYTES_MAX, UPLINK_DEVICE_ID_BYTES_MAX};

/// The protocol version this codec speaks; a frame of another is refused, not guessed at.
pub const UPLINK_VERSION: u8 = 1;

/// Largest header (version byte included): postcard's enum tag, a device id of
/// [`UPLINK_DEVICE_ID_BYTES_MAX`] with its length, three `u32` varints (5 bytes each at most), the
/// clock, a `u64` varint (10) and an optional `u32` (6), with room to spare.
pub const UPLINK_HEADER_BYTES_MAX: usize = 1 + 1 + 2 + UPLINK_DEVICE_ID_BYTES_MAX + 4 * 5 + 1 + 10 + 6;

/// Largest decoded frame: header, the largest batch, CRC.
pub const UPLINK_FRAME_BYTES_MAX: usize = frame_bytes_for(UPLINK_BATCH_BYTES_MAX);

/// Largest frame on the wire. A reader's buffer of this size holds any frame (it decodes in
/// place).
pub const UPLINK_WIRE_BYTES_MAX: usize = wire_bytes_for(UPLINK_BATCH_BYTES_MAX);

/// Bytes of a decoded frame carrying a batch of at most `batch_bytes`: header, batch, CRC. A
/// device that builds smaller batches sizes its buffers with this.
pub const fn frame_bytes_for(batch_bytes: usize) -> usize {
    UPLINK_HEADER_BYTES_MAX + batch_bytes + 4
}

/// Bytes of that frame on the wire: COBS adds a byte per 254, and the `0x00` ends it.
pub const fn wire_bytes_for(batch_bytes: usize) -> usize {
    cobs::max_encoding_length(frame_bytes_for(batch_bytes)) + 1
}

/// Where a device's record timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clock {
    /// Milliseconds since the Unix epoch (a device with a real-time clock or network time).
    Wall,
    /// Milliseconds since the device booted: the gateway maps them to wall time.
    SinceBoot,
}

/// One frame, decoded; borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data(DataFrame<'a>),
    /// Everything of boot `boot` up to sequence `seq` is durable at the gateway.
    Ack {
        boot: u32,
        seq: u32,
    },
    /// A frame came whose `prev` the gateway has not stored: it holds boot `boot` up to `after`
    /// (nothing of it: `None`) and wants what follows, again.
    Nak {
        boot: u32,
        after: Option<u32>,
    },
}

/// Readings from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    pub device: &'a str,
    /// Changes at every reboot.
    pub boot: u32,
    /// Grows within a boot (gaps allowed: the device's numbering, e.g. its log's offsets).
    pub seq: u32,
    /// The batch before this one that the device still holds, unacknowledged (`None`: every
    /// earlier one was acknowledged, or dropped).
    pub prev: Option<u32>,
    /// Records the device dropped this boot, its log full (the count so far, not since the last).
    pub dropped: u32,
    pub clock: Clock,
    /// The device's clock (as `clock` says) when it sent the frame, in ms.
    pub sent_at: u64,
    /// One v2 record batch (the gateway validates it).
    pub batch: &'a [u8],
}

impl DataFrame<'_> {
    /// What to add to this frame's record timestamps to make them wall time, the frame having
    /// arrived at `arrival_ms` (wall): 0 for [`Clock::Wall`].
    pub fn to_wall_ms(&self, arrival_ms: i64) -> i64 {
        match self.clock {
            Clock::Wall => 0,
            Clock::SinceBoot => arrival_ms.saturating_sub(i64::try_from(self.sent_at).unwrap_or(i64::MAX)),
        }
    }
}

/// The header as postcard carries it.
#[derive(Serialize, Deserialize)]
enum Header<'a> {
    Data { device: &'a str, boot: u32, seq: u32, prev: Option<u32>, dropped: u32, clock: Clock, sent_at: u64 },
    Ack { boot: u32, seq: u32 },
    Nak { boot: u32, after: Option<u32> },
}

/// Why a frame could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The scratch or output buffer is smaller than this frame needs.
    BufferTooSmall { needed: usize },
    /// The batch is above [`UPLINK_BATCH_BYTES_MAX`].
    BatchTooLarge { len: usize },
    /// The device id is empty or above [`UPLINK_DEVICE_ID_BYTES_MAX`].
    InvalidDeviceId { len: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed } => write!(f, "the frame needs a buffer of {needed} bytes"),
            Self::BatchTooLarge { len } => {
                write!(f, "a batch of {len} bytes is above the uplink's {UPLINK_BATCH_BYTES_MAX}")
            }
            Self::InvalidDeviceId { len } => {
                write!(f, "a device id of {len} bytes; 1 to {UPLINK_DEVICE_ID_BYTES_MAX} are allowed")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why bytes between two `0x00` were not a frame. The reader goes on with the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes than [`UPLINK_WIRE_BYTES_MAX`] without a `0x00`: dropped up to the next one.
    TooLong,
    /// Not valid COBS (line noise, or a frame joined mid-way).
    Cobs,
    /// The CRC does not match: corrupted on the way.
    Crc { stored: u32, computed: u32 },
    /// Another protocol version.
    Version(u8),
    /// The CRC matches but the header does not decode or breaks a bound: a sender's bug.
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLong => write!(f, "no frame end within {UPLINK_WIRE_BYTES_MAX} bytes"),
            Self::Cobs => f.write_str("not a COBS-encoded frame"),
            Self::Crc { stored, computed } => {
                write!(f, "CRC-32C {computed:#010x} does not match the frame's {stored:#010x}")
            }
            Self::Version(version) => write!(f, "uplink protocol version {version}; this side speaks {UPLINK_VERSION}"),
            Self::Malformed(what) => write!(f, "malformed frame: {what}"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Writes `frame` into `out` as it goes on the wire (COBS, then `0x00`), using `scratch` for the
/// decoded form; returns the bytes of `out` used. Buffers of [`UPLINK_FRAME_BYTES_MAX`] and
/// [`UPLINK_WIRE_BYTES_MAX`] hold any frame.
pub fn encode(frame: &Frame<'_>, scratch: &mut [u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let (header, payload) = match *frame {
        Frame::Data(DataFrame { device, boot, seq, prev, dropped, clock, sent_at, batch }) => {
            if device.is_empty() || device.len() > UPLINK_DEVICE_ID_BYTES_MAX {
                return Err(EncodeError::InvalidDeviceId { len: device.len() });
            }
            if batch.len() > UPLINK_BATCH_BYTES_MAX {
                return Err(EncodeError::BatchTooLarge { len: batch.len() });
            }
            (Header::Data { device, boot, seq, prev, dropped, clock, sent_at }, batch)
        }
        Frame::Ack { boot, seq } => (Header::Ack { boot, seq }, &[][..]),
        Frame::Nak { boot, after } => (Header::Nak { boot, after }, &[][..]),
    };
    let too_small = |needed: usize| EncodeError::BufferTooSmall { needed };
    let needed = UPLINK_HEADER_BYTES_MAX + payload.len() + 4;
    let (version, rest) = scratch.split_first_mut().ok_or(too_small(needed))?;
    *version = UPLINK_VERSION;
    let header_len = postcard::to_slice(&header, rest).map_err(|_| too_small(needed))?.len();
    let payload_end = 1 + header_len + payload.len();
    scratch.get_mut(1 + header_len..payload_end).ok_or(too_small(needed))?.copy_from_slice(payload);
    let crc = crc32c(scratch.get(..payload_end).unwrap_or_default()).to_be_bytes();
    scratch.get_mut(payload_end..payload_end + 4).ok_or(too_small(needed))?.copy_from_slice(&crc);
    let decoded = scratch.get(..payload_end + 4).unwrap_or_default();
    let wire_needed = cobs::max_encoding_length(decoded.len()) + 1;
    let written = cobs::try_encode(decoded, out).map_err(|_| too_small(wire_needed))?;
    *out.get_mut(written).ok_or(too_small(wire_needed))? = 0;
    Ok(written + 1)
}

/// Reads frames out of a byte stream, in a buffer the caller owns (`[u8; N]` on a device, a
/// `Vec` on the gateway; [`UPLINK_WIRE_BYTES_MAX`] holds any frame). Never panics, whatever it
/// is fed; after garbage it finds the next frame.
#[derive(Debug)]
pub struct Deframer<B> {
    buf: B,
    len: usize,
    /// Past the buffer's end without a `0x00`: bytes are dropped until the next one.
    overflowed: bool,
}

impl<B: AsMut<[u8]>> Deframer<B> {
    pub fn new(buf: B) -> Self {
        Deframer { buf, len: 0, overflowed: false }
    }

    /// Takes `bytes` (any split of the stream); calls `each` with every frame completed, or why
    /// what ended there was not one. Empty frames (`0x00` after `0x00`, a sender's way to
    /// resynchronise the reader) are skipped.
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(Result<Frame<'_>, FrameError>)) {
        for &byte in bytes {
            if byte != 0 {
                match self.buf.as_mut().get_mut(self.len) {
                    Some(slot) if !self.overflowed => {
                        *slot = byte;
                        self.len += 1;
                    }
                    _ => self.overflowed = true,
                }
                continue;
            }
            let (len, overflowed) = (self.len, self.overflowed);
            (self.len, self.overflowed) = (0, false);
            if overflowed {
                each(Err(FrameError::TooLong));
            } else if len > 0 {
                let encoded = self.buf.as_mut().get_mut(..len).unwrap_or_default();
                match cobs::decode_in_place(encoded) {
                    Ok(decoded) => each(parse(encoded.get(..decoded).unwrap_or_default())),
                    Err(_) => each(Err(FrameError::Cobs)),
                }
            }
        }
    }
}

/// A decoded frame's fields, checked.
fn parse(decoded: &[u8]) -> Result<Frame<'_>, FrameError> {
    let Some((body, crc)) = decoded.split_last_chunk::<4>() else {
        return Err(FrameError::Malformed("shorter than a CRC"));
    };
    let (stored, computed) = (u32::from_be_bytes(*crc), crc32c(body));
    if stored != computed {
        return Err(FrameError::Crc { stored, computed });
    }
    let Some((&version, rest)) = body.split_first() else {
        return Err(FrameError::Malformed("no version"));
    };
    if version != UPLINK_VERSION {
        return Err(FrameError::Version(version));
    }
    let (header, payload) = postcard::take_from_bytes::<Header<'_>>(rest)
        .map_err(|_| FrameError::Malformed("the header does not decode"))?;
    match header {
        Header::Data { device, boot, seq, prev, dropped, clock, sent_at } => {
            if device.is_empty() || device.len() > UPLINK_DEVICE_ID_BYTES_MAX {
                return Err(FrameError::Malformed("device id length"));
            }
            if payload.len() > UPLINK_BATCH_BYTES_MAX {
                return Err(FrameError::Malformed("batch above the uplink's bound"));
            }
            if prev.is_some_and(|prev| prev >= seq) {
                return Err(FrameError::Malformed("the batch before comes after"));
            }
            Ok(Frame::Data(DataFrame { device, boot, seq, prev, dropped, clock, sent_at, batch: payload }))
        }
        Header::Ack { .. } | Header::Nak { .. } if !payload.is_empty() => {
            Err(FrameError::Malformed("bytes after an ack"))
        }
        Header::Ack { boot, seq } => Ok(Frame::Ack { boot, seq }),
        Header::Nak { boot, after } => Ok(Frame::Nak { boot, after }),
    }
}

#[cfg(test)]
mod tests {
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn data(batch: &[u8]) -> Frame<'_> {
        let (boot, seq, prev, dropped, sent_at) = (0xB007, 3, Some(1), 1, 86_400_000);
        Frame::Data(DataFrame { device: "node-7", boot, seq, prev, dropped, clock: Clock::SinceBoot, sent_at, batch })
    }

    fn wire(frame: &Frame<'_>) -> Vec<u8> {
        let (mut scratch, mut out) = (vec![0; UPLINK_FRAME_BYTES_MAX], vec![0; UPLINK_WIRE_BYTES_MAX]);
        let len = encode(frame, &mut scratch, &mut out).unwrap();
        out.truncate(len);
        out
    }

    /// What a reader makes of `stream`, fed in pieces of `piece` bytes.
    fn read(stream: &[u8], piece: usize) -> Vec<Result<String, FrameError>> {
        let mut deframer = Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]);
        let mut out = Vec::new();
        for chunk in stream.chunks(piece.max(1)) {
            deframer.feed(chunk, |frame| out.push(frame.map(|f| std::format!("{f:?}"))));
        }
        out
    }

    #[test]
    fn frames_round_trip_whole_or_in_pieces() {
        let batch: Vec<u8> = (0..=255u8).cycle().take(3000).collect(); // zeros inside, as batches have
        let frames = [data(&batch), Frame::Ack { boot: 0xB007, seq: 3 }, Frame::Nak { boot: 0xB007, after: None }];
        let stream: Vec<u8> = frames.iter().flat_map(wire).collect();
        let expected: Vec<Result<String, FrameError>> = frames.iter().map(|f| Ok(std::format!("{f:?}"))).collect();
        for piece in [1, 7, 4096] {
            assert_eq!(read(&stream, piece), expected, "fed {piece} bytes at a time");
        }
        assert_eq!(stream.iter().filter(|&&b| b == 0).count(), 3, "a 0x00 ends each frame, and only that");
    }

    #[test]
    fn garbage_and_corruption_cost_only_the_frame_they_hit() {
        let one = wire(&data(b"first"));
        let mut corrupted = wire(&data(b"second"));
        corrupted[4] ^= 0x20;
        let three = wire(&Frame::Ack { boot: 1, seq: 2 });
        let stream = [&b"\x13noise\x00"[..], &one, &corrupted, b"\x00\x00", &three, b"half a fram"].concat();
        let got = read(&stream, 3);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].is_err(), "noise before the first frame: {got:?}");
        assert_eq!(got[1], Ok(std::format!("{:?}", data(b"first"))));
        assert!(matches!(got[2], Err(FrameError::Crc { .. } | FrameError::Cobs)), "{got:?}");
        assert_eq!(got[3], Ok(std::format!("{:?}", Frame::Ack { boot: 1, seq: 2 })));
    }

    #[test]
    fn an_endless_frame_is_dropped_and_the_next_one_read() {
        let mut deframer = Deframer::new([0u8; 64]);
        let mut got = Vec::new();
        deframer.feed(&[7u8; 100], |f| got.push(f.map(|_| ())));
        assert!(got.is_empty(), "nothing ends yet");
        let ack = wire(&Frame::Ack { boot: 9, seq: 9 });
        deframer.feed(&[&[0u8][..], &ack].concat(), |f| got.push(f.map(|_| ())));
        assert_eq!(got, [Err(FrameError::TooLong), Ok(())]);
    }

    #[test]
    fn since_boot_times_map_to_wall_time_by_the_frame_s_send_time() {
        let Frame::Data(frame) = data(b"") else { unreachable!("data") };
        // Sent a day after boot, arrived at this wall time: a reading 5 s before sending is 5 s before arrival.
        let arrival = 1_795_000_000_000;
        assert_eq!(86_400_000 - 5_000 + frame.to_wall_ms(arrival), arrival - 5_000);
        assert_eq!(DataFrame { clock: Clock::Wall, ..frame }.to_wall_ms(arrival), 0);
    }

    #[test]
    fn refusals() {
        let (mut scratch, mut out) = ([0u8; 64], [0u8; 16]);
        let big = vec![1u8; UPLINK_BATCH_BYTES_MAX + 1];
        assert_eq!(encode(&data(&big), &mut scratch, &mut out), Err(EncodeError::BatchTooLarge { len: big.len() }));
        assert!(matches!(encode(&data(b"x"), &mut scratch, &mut out), Err(EncodeError::BufferTooSmall { .. })));
        let nameless = Frame::Data(DataFrame {
            device: "",
            boot: 0,
            seq: 0,
            prev: None,
            dropped: 0,
            clock: Clock::Wall,
            sent_at: 0,
            batch: b"",
        });
        assert_eq!(encode(&nameless, &mut [0; 256], &mut [0; 512]), Err(EncodeError::InvalidDeviceId { len: 0 }));
        // A batch named as before this one that comes after it: a sender's bug, refused.
        let backwards = Frame::Data(DataFrame {
            device: "n",
            boot: 1,
            seq: 3,
            prev: Some(3),
            dropped: 0,
            clock: Clock::Wall,
            sent_at: 0,
            batch: b"",
        });
        assert_eq!(read(&wire(&backwards), 100), [Err(FrameError::Malformed("the batch before comes after"))]);
        // Another version, with a valid CRC: refused by name.
        let mut decoded = vec![2u8];
        decoded.extend(postcard::to_allocvec(&Header::Ack { boot: 1, seq: 1 }).unwrap());
        decoded.extend(crc32c(&decoded).to_be_bytes());
        let mut stream = vec![0u8; cobs::max_encoding_length(decoded.len()) + 1];
        let len = cobs::encode(&decoded, &mut stream);
        stream.truncate(len + 1);
        assert_eq!(read(&stream, 100), [Err(FrameError::Version(2))]);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_without_panicking_and_a_frame_after_them_is_found(
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
            piece in 1usize..64,
        ) {
            let ack = Frame::Ack { boot: 5, seq: 6 };
            let stream = [&garbage[..], &[0u8], &wire(&ack)].concat();
            let got = read(&stream, piece);
            proptest::prop_assert_eq!(got.last().cloned(), Some(Ok(std::format!("{ack:?}"))));
        }
    }
}
