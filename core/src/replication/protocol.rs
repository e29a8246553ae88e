//! The messages of the replication link and their frames.
//!
//! A frame is a `u32` big-endian length, then the message in postcard. A `Batches` frame carries
//! its record batches raw after the postcard part, byte for byte as the leader stores them (CRC
//! intact), so nothing re-encodes them on the way. Every length is bounded by
//! [`REPLICATION_FRAME_BYTES_MAX`]; decoding never panics.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{
    REPLICATION_EPOCHS_STATED_MAX, REPLICATION_FRAME_BYTES_MAX, REPLICATION_PARTITIONS_MAX, REPLICATION_TEXT_BYTES_MAX,
};
use crate::log::EpochEntry;

/// The protocol version a `Hello` states. A follower refuses any other.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// A partition of the leader's log, named as the edge names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId {
    pub topic: String,
    pub partition: u32,
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A log incarnation: a UUID made when the partition's log was created. A wiped or replaced data
/// dir makes new logs with new incarnations, whose offsets have nothing to do with the old ones.
pub type Incarnation = [u8; 16];

/// One mirrored partition as the leader announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionHello {
    pub id: PartitionId,
    pub incarnation: Incarnation,
}

/// Why the leader skips offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GapReason {
    /// The leader deleted them before the follower had them (its disk budget ran out).
    Deleted,
    /// The leader's own log has no batch there (it has gaps itself).
    Hole,
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deleted => "deleted on the edge before it was mirrored",
            Self::Hole => "no records on the edge",
        })
    }
}

/// Edge (leader) → aggregation node (follower). A `slot` is a partition's index in the `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToFollower {
    /// The first message of a connection.
    Hello { version: u16, edge_id: String, token: String, partitions: Vec<PartitionHello> },
    /// Start streaming a partition: the follower, whose log ended at `follower_end` when it said
    /// `Welcome`, truncates to `truncate_to` (the divergence point; equal to `follower_end` when
    /// nothing diverged). Applied once per connection; batches before it are not taken.
    Start { slot: u32, follower_end: u64, truncate_to: u64 },
    /// Whole batches, concatenated, starting at the follower's log end.
    Batches {
        slot: u32,
        /// Travels raw after the postcard part of the frame.
        #[serde(skip)]
        bytes: Vec<u8>,
    },
    /// The leader has nothing in `from..to`: the follower's log end jumps to `to`.
    Skip { slot: u32, from: u64, to: u64, reason: GapReason },
    /// Liveness: answered by `Pong`.
    Ping { nonce: u64 },
}

/// Aggregation node (follower) → edge (leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToLeader {
    /// The follower's state of every partition of the `Hello`, in its order.
    Welcome {
        partitions: Vec<SlotWelcome>,
    },
    /// The whole connection is refused (token, version, unknown edge).
    Refused {
        reason: String,
    },
    /// Where a partition's copy stands. `started` is false until the follower took the slot's
    /// `Start`: the leader then sends it again.
    Ack {
        slot: u32,
        started: bool,
        log_end: u64,
        durable_end: u64,
    },
    /// The follower stopped mirroring one partition (it cannot take what it was sent).
    SlotStopped {
        slot: u32,
        reason: String,
    },
    Pong {
        nonce: u64,
    },
}

/// A follower's copy of one partition, as stated in `Welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotWelcome {
    Follows {
        log_start: u64,
        log_end: u64,
        /// The newest epochs of its history (at most [`REPLICATION_EPOCHS_STATED_MAX`]).
        epochs: Vec<EpochEntry>,
        /// Older epochs exist that are not stated.
        epochs_truncated: bool,
    },
    /// The follower will not mirror this partition (e.g. a new incarnation the operator must
    /// decide about).
    Stopped { reason: String },
}

/// Why a frame could not be decoded. The connection cannot go on after one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix exceeds [`REPLICATION_FRAME_BYTES_MAX`].
    TooLarge { len: usize },
    /// The message does not decode.
    Malformed,
    /// A field is over its bound.
    OverLimit(&'static str),
    /// The message did not fit the output (encoding only).
    Encode,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => {
                write!(f, "frame of {len} bytes exceeds the limit of {REPLICATION_FRAME_BYTES_MAX}")
            }
            Self::Malformed => f.write_str("malformed replication message"),
            Self::OverLimit(what) => write!(f, "replication message over its bound: {what}"),
            Self::Encode => f.write_str("replication message does not encode"),
        }
    }
}

impl core::error::Error for FrameError {}

/// The body length a frame's prefix announces, checked against the bound.
pub fn frame_len(prefix: [u8; LENGTH_PREFIX]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > REPLICATION_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len });
    }
    Ok(len)
}

/// Appends `message` as one frame (prefix included) to `out`.
pub fn encode_to_follower(message: &ToFollower, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let payload: &[u8] = match message {
        ToFollower::Batches { bytes, .. } => bytes,
        _ => &[],
    };
    encode(message, payload, out)
}

/// Appends `message` as one frame (prefix included) to `out`.
pub fn encode_to_leader(message: &ToLeader, out: &mut Vec<u8>) -> Result<(), FrameError> {
    encode(message, &[], out)
}

fn encode<T: Serialize>(message: &T, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    // The postcard part is a few dozen bytes (a `Hello` or `Welcome` at most a few MiB, once per
    // connection); the payload is copied once, into the frame.
    let header = postcard::to_allocvec(message).map_err(|_| FrameError::Encode)?;
    let len = header.len() + payload.len();
    if len > REPLICATION_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len });
    }
    out.reserve(LENGTH_PREFIX + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(())
}

/// Decodes a frame's body (without the prefix).
pub fn decode_to_follower(body: &[u8]) -> Result<ToFollower, FrameError> {
    let (mut message, rest): (ToFollower, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| FrameError::Malformed)?;
    match &mut message {
        ToFollower::Batches { bytes, .. } => bytes.extend_from_slice(rest),
        _ if !rest.is_empty() => return Err(FrameError::Malformed),
        ToFollower::Hello { edge_id, token, partitions, .. } => {
            check_text(edge_id, "edge id")?;
            check_text(token, "token")?;
            if partitions.len() > REPLICATION_PARTITIONS_MAX {
                return Err(FrameError::OverLimit("partitions in a Hello"));
            }
        }
        _ => {}
    }
    Ok(message)
}

/// Decodes a frame's body (without the prefix).
pub fn decode_to_leader(body: &[u8]) -> Result<ToLeader, FrameError> {
    let message: ToLeader = postcard::from_bytes(body).map_err(|_| FrameError::Malformed)?;
    match &message {
        ToLeader::Welcome { partitions } => {
            if partitions.len() > REPLICATION_PARTITIONS_MAX {
                return Err(FrameError::OverLimit("partitions in a Welcome"));
            }
            for slot in partitions {
                match slot {
                    SlotWelcome::Follows { epochs, .. } if epochs.len() > REPLICATION_EPOCHS_STATED_MAX => {
                        return Err(FrameError::OverLimit("epochs in a Welcome"));
                    }
                    SlotWelcome::Stopped { reason } => check_text(reason, "reason")?,
                    SlotWelcome::Follows { .. } => {}
                }
            }
        }
        ToLeader::Refused { reason } | ToLeader::SlotStopped { reason, .. } => check_text(reason, "reason")?,
        ToLeader::Ack { .. } | ToLeader::Pong { .. } => {}
    }
    Ok(message)
}

fn check_text(text: &str, what: &'static str) -> Result<(), FrameError> {
    if text.len() > REPLICATION_TEXT_BYTES_MAX {
        return Err(FrameError::OverLimit(what));
    }
    Ok(())
}

/// Keeps only `bytes[keep]` (a run of whole batches read or received), without a copy when it
/// is all of them.
pub(crate) fn keep_only(bytes: &mut Vec<u8>, keep: core::ops::Range<usize>) {
    bytes.truncate(keep.end);
    if keep.start > 0 {
        bytes.drain(..keep.start);
    }
}

/// Cuts `text` to at most [`REPLICATION_TEXT_BYTES_MAX`] bytes on a character boundary, so a
/// long error message still fits a refusal.
pub fn bounded_text(mut text: String) -> String {
    if text.len() > REPLICATION_TEXT_BYTES_MAX {
        let mut cut = REPLICATION_TEXT_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;

    fn round_trip_follower(message: ToFollower) {
        let mut out = Vec::new();
        encode_to_follower(&message, &mut out).unwrap();
        let len = frame_len(out[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, out.len() - 4);
        assert_eq!(decode_to_follower(&out[4..]).unwrap(), message);
    }

    #[test]
    fn messages_round_trip_and_batches_travel_raw() {
        round_trip_follower(ToFollower::Hello {
            version: PROTOCOL_VERSION,
            edge_id: "gw-1".into(),
            token: "secret".into(),
            partitions: vec![PartitionHello {
                id: PartitionId { topic: "sensors".into(), partition: 3 },
                incarnation: [7; 16],
            }],
        });
        round_trip_follower(ToFollower::Start { slot: 1, follower_end: 10, truncate_to: 8 });
        round_trip_follower(ToFollower::Skip { slot: 0, from: 5, to: 9, reason: GapReason::Deleted });
        let bytes = vec![1, 2, 3, 4, 5];
        let mut out = Vec::new();
        encode_to_follower(&ToFollower::Batches { slot: 2, bytes: bytes.clone() }, &mut out).unwrap();
        assert!(out.ends_with(&bytes), "batches follow the header as they are");
        assert_eq!(decode_to_follower(&out[4..]).unwrap(), ToFollower::Batches { slot: 2, bytes });

        let ack = ToLeader::Ack { slot: 4, started: true, log_end: 100, durable_end: 90 };
        let mut out = Vec::new();
        encode_to_leader(&ack, &mut out).unwrap();
        assert_eq!(decode_to_leader(&out[4..]).unwrap(), ack);
    }

    #[test]
    fn decoding_garbage_is_an_error_never_a_panic() {
        assert_eq!(frame_len([0xff; 4]), Err(FrameError::TooLarge { len: u32::MAX as usize }));
        for body in [&[][..], &[0xff], &[9, 9, 9], &[0, 1, 200, 200, 200, 200, 200]] {
            assert!(decode_to_follower(body).is_err());
            assert!(decode_to_leader(body).is_err());
        }
        // Trailing bytes after a control message are refused.
        let mut out = Vec::new();
        encode_to_follower(&ToFollower::Ping { nonce: 1 }, &mut out).unwrap();
        out.push(0);
        assert_eq!(decode_to_follower(&out[4..]), Err(FrameError::Malformed));
    }

    #[test]
    fn over_long_texts_are_refused_and_bounded_text_cuts_on_a_char_boundary() {
        let long = "é".repeat(REPLICATION_TEXT_BYTES_MAX);
        let mut out = Vec::new();
        let refused = ToLeader::Refused { reason: long.clone() };
        encode_to_leader(&refused, &mut out).unwrap();
        assert_eq!(decode_to_leader(&out[4..]), Err(FrameError::OverLimit("reason")));
        let cut = bounded_text(long);
        assert!(cut.len() <= REPLICATION_TEXT_BYTES_MAX && cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded_text("short".to_string()), "short");
    }
}
