//! A partition's bytes in one commit, kept where they arrived until redb takes them.
//!
//! A produce request's batches stay in the request frame's buffer (shared, immutable) from the
//! listener to the commit. The writer stamps each batch's base offset and leader epoch into a
//! 16-byte copy of its first bytes, and [`write_rows`] assembles each row from heads and bodies in
//! one reused buffer, which redb copies into its page. (redb's `insert_reserve` would let the
//! writer fill the page directly, but it allocates, zeroes and copies a buffer of the row's size
//! itself: more work than the one reused buffer.)

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use rill_core::batch::{self, LEADER_FIELDS_LEN};

use super::StorageError;
use super::journal::redo::Logged;
use super::layout::extend_group;

/// One partition's batches in a commit, in order.
#[derive(Debug, Default)]
pub(super) struct Staged {
    pieces: Vec<Piece>,
    len: usize,
}

/// One batch: its first bytes as stored (stamped by the writer) and the whole batch as it arrived.
#[derive(Debug)]
struct Piece {
    head: [u8; LEADER_FIELDS_LEN],
    batch: Bytes,
}

/// Where a [`Staged`] stood, to take back what followed (an append refused half-way, a transaction
/// undone).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mark {
    pieces: usize,
    len: usize,
}

impl Staged {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn mark(&self) -> Mark {
        Mark { pieces: self.pieces.len(), len: self.len }
    }

    pub(super) fn truncate(&mut self, mark: Mark) {
        self.pieces.truncate(mark.pieces);
        self.len = mark.len;
    }

    /// Adds one batch (at least a header long: validated) with the leader's fields set.
    pub(super) fn push_stamped(&mut self, batch: Bytes, base_offset: i64, epoch: i32) {
        let head = batch::leader_fields(first_bytes(&batch), base_offset, epoch);
        self.push(head, batch);
    }

    /// Adds batches stored as they are (a mirror's copy, whose leader stamped them).
    pub(super) fn push_as_is(&mut self, batch: Bytes) {
        self.push(first_bytes(&batch), batch);
    }

    fn push(&mut self, head: [u8; LEADER_FIELDS_LEN], batch: Bytes) {
        self.len += batch.len();
        self.pieces.push(Piece { head, batch });
    }

    /// The base offset of the first batch, as stored.
    pub(super) fn first_base_offset(&self) -> Option<i64> {
        let head = self.pieces.first()?.head;
        Some(i64::from_be_bytes(head[..8].try_into().unwrap_or_default()))
    }

    /// Appends bytes `range` of the staged stream (as stored) to `out`.
    pub(super) fn extend_into(&self, range: Range<usize>, out: &mut Vec<u8>) {
        let mut piece_start = 0;
        for piece in &self.pieces {
            let piece_end = piece_start + piece.batch.len();
            if piece_end <= range.start {
                piece_start = piece_end;
                continue;
            }
            if piece_start >= range.end {
                break;
            }
            let from = range.start.max(piece_start) - piece_start;
            let to = range.end.min(piece_end) - piece_start;
            let head_len = piece.head.len().min(piece.batch.len());
            if from < head_len {
                let head_to = to.min(head_len);
                out.extend_from_slice(&piece.head[from..head_to]);
                out.extend_from_slice(&piece.batch[head_to..to]);
            } else {
                out.extend_from_slice(&piece.batch[from..to]);
            }
            piece_start = piece_end;
        }
    }

    /// The staged stream, as stored, in one buffer.
    #[cfg(test)]
    pub(super) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        self.extend_into(0..self.len, &mut out);
        out
    }
}

/// Each partition's bytes in one commit.
pub(super) type Groups = BTreeMap<u64, Staged>;

/// Where a group's next bytes go after a commit: its partial last part (a copy, rewritten by the
/// next commit), and that part's number.
pub(super) struct GroupTail {
    pub(super) next_part: u32,
    pub(super) bytes: Vec<u8>,
}

/// Writes `staged` after the partial last part `tail` of the group at `(key, base_offset)`, from
/// part `first_part` on, each row assembled in `scratch` (reused: no allocation per row).
pub(super) fn write_rows(
    rows: &mut Logged<'_, '_, (u64, u64, u32), &'static [u8]>,
    (key, base_offset, first_part): (u64, u64, u32),
    tail: &[u8],
    staged: &Staged,
    scratch: &mut Vec<u8>,
) -> Result<GroupTail, StorageError> {
    let extension = extend_group(first_part, tail.len(), staged.len());
    let mut new_tail = Vec::new();
    for (part, range) in &extension.rows {
        scratch.clear();
        // Ranges run over the old tail followed by the staged bytes.
        scratch.extend_from_slice(&tail[range.start.min(tail.len())..range.end.min(tail.len())]);
        staged.extend_into(range.start.max(tail.len()) - tail.len()..range.end - tail.len(), scratch);
        if range.start == 0 && !tail.is_empty() {
            // The partial last part, completed: the journal records only what was added.
            rows.insert_extending((key, base_offset, *part), tail.len(), scratch.as_slice())?;
        } else {
            rows.insert((key, base_offset, *part), scratch.as_slice())?;
        }
        if *range == extension.tail {
            new_tail = scratch.clone();
        }
    }
    Ok(GroupTail { next_part: extension.next_part, bytes: new_tail })
}

/// A batch's first [`LEADER_FIELDS_LEN`] bytes (zero-padded: only a validated batch, at least a
/// header long, is staged).
fn first_bytes(batch: &[u8]) -> [u8; LEADER_FIELDS_LEN] {
    let mut head = [0; LEADER_FIELDS_LEN];
    let n = batch.len().min(LEADER_FIELDS_LEN);
    head[..n].copy_from_slice(&batch[..n]);
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn copies_any_range_with_the_stamped_heads() {
        let mut staged = Staged::default();
        staged.push_stamped(batch_of(70, 1), 0x0102_0304_0506_0708, 9);
        staged.push_as_is(batch_of(61, 2));
        staged.push_stamped(batch_of(100, 3), 77, 1);
        let whole = staged.to_vec();
        assert_eq!(whole.len(), 231);
        assert_eq!(&whole[..8], &0x0102_0304_0506_0708_i64.to_be_bytes());
        assert_eq!(&whole[8..12], &[1; 4], "batchLength is kept");
        assert_eq!(&whole[12..16], &9_i32.to_be_bytes());
        assert!(whole[16..131].iter().all(|&b| b == 1 || b == 2));
        assert_eq!(&whole[131..139], &77_i64.to_be_bytes());
        assert_eq!(staged.first_base_offset(), Some(0x0102_0304_0506_0708));
        // Every range copies what the whole stream holds there.
        for start in [0, 3, 15, 16, 69, 70, 71, 131, 140, 230] {
            for end in [start, start + 1, start + 17, 131, 231] {
                if end < start || end > whole.len() {
                    continue;
                }
                let mut out = Vec::new();
                staged.extend_into(start..end, &mut out);
                assert_eq!(out, whole[start..end], "{start}..{end}");
            }
        }
    }

    #[test]
    fn truncating_to_a_mark_takes_back_what_followed() {
        let mut staged = Staged::default();
        staged.push_as_is(batch_of(61, 1));
        let mark = staged.mark();
        staged.push_as_is(batch_of(80, 2));
        staged.truncate(mark);
        assert_eq!(staged.len(), 61);
        assert_eq!(staged.to_vec(), vec![1; 61]);
    }
}
