//! Test doubles shared by the library's tests.

use std::vec;
use std::vec::Vec;

use rill_core::uplink::{self, Deframer, Frame, UPLINK_WIRE_BYTES_MAX};

/// A gateway in memory, as the host's device listener behaves: decodes the device's byte stream
/// (frames may arrive in pieces), stores each new (boot, seq) once, acks what it holds, and
/// answers a frame whose `prev` it lacks with a nak.
#[derive(Debug)]
pub struct Gateway {
    deframer: Deframer<Vec<u8>>,
    /// (boot, seq, batch) of every frame stored, in order.
    pub stored: Vec<(u32, u32, Vec<u8>)>,
    last: Option<(u32, u32)>,
    pub duplicates: usize,
    pub naks: usize,
    /// Frames that did not decode (line noise, a frame cut by a broken link).
    pub bad_frames: usize,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            deframer: Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]),
            stored: Vec::new(),
            last: None,
            duplicates: 0,
            naks: 0,
            bad_frames: 0,
        }
    }
}

impl Gateway {
    /// Takes bytes the device sent; returns the answers' wire bytes.
    pub fn receive(&mut self, wire: &[u8]) -> Vec<u8> {
        let mut answers = Vec::new();
        let Gateway { deframer, stored, last, duplicates, naks, bad_frames } = self;
        deframer.feed(wire, |frame| {
            let data = match frame {
                Ok(Frame::Data(data)) => data,
                Ok(other) => panic!("the device sent {other:?}"),
                Err(_) => {
                    *bad_frames += 1;
                    return;
                }
            };
            let held = last.filter(|(boot, _)| *boot == data.boot).map(|(_, seq)| seq);
            if held.is_some_and(|seq| data.seq <= seq) {
                *duplicates += 1;
            } else if data.prev.is_some_and(|prev| held.is_none_or(|seq| prev > seq)) {
                *naks += 1;
                answers.push(Frame::Nak { boot: data.boot, after: held });
                return;
            } else {
                stored.push((data.boot, data.seq, data.batch.to_vec()));
                *last = Some((data.boot, data.seq));
            }
            let (boot, seq) = last.unwrap_or((data.boot, data.seq));
            answers.push(Frame::Ack { boot, seq });
        });
        let mut wire = Vec::new();
        for answer in answers {
            let (mut scratch, mut out) = ([0u8; 64], [0u8; 128]);
            let len = uplink::encode(&answer, &mut scratch, &mut out).expect("an answer fits");
            wire.extend_from_slice(&out[..len]);
        }
        wire
    }
}
