//! A journal record's body: the row changes of one redb commit, replayable on the database as it
//! was before that commit.
//!
//! Each change is `[kind: u8][table: u8][key length: u32][key]` followed, for a put, by
//! `[value length: u32][value]`, for an extension by `[kept: u32][suffix length: u32][suffix]`
//! (the row's new value is its first `kept` bytes followed by the suffix: a group's partial last
//! part completed with new batches, which would otherwise be journaled whole at every small
//! commit), and for a delete by nothing. Keys and values are in redb's own encoding of their
//! types, so a replay decodes them with the same types the writer used.

use std::borrow::Borrow;
use std::cell::RefCell;

use redb::{Key, ReadableTable, TableDefinition, Value, WriteTransaction};

use super::{JournalError, RECORD_HEADER_BYTES};
use crate::limits::JOURNAL_RECORD_BYTES_MAX;
use crate::storage::StorageError;
use crate::storage::layout;

/// A change's kind, table and key length.
const CHANGE_OVERHEAD: usize = 2 + 4;
const PUT: u8 = 1;
const EXTEND: u8 = 2;
const DELETE: u8 = 3;

/// The tables a journaled commit may change, by their number in a record. Every table the group
/// commit writes is here; the rest change only in durable commits of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::storage) enum TableId {
    Batches = 1,
    Partitions = 2,
    GroupTimes = 3,
    Producers = 4,
    GroupOffsets = 5,
    Resources = 6,
}

impl TableId {
    fn from_u8(id: u8) -> Option<TableId> {
        [Self::Batches, Self::Partitions, Self::GroupTimes, Self::Producers, Self::GroupOffsets, Self::Resources]
            .into_iter()
            .find(|table| *table as u8 == id)
    }
}

/// A table definition with its number in journal records.
pub(in crate::storage) struct Journaled<K: Key + 'static, V: Value + 'static>(TableId, TableDefinition<'static, K, V>);

pub(in crate::storage) const BATCHES: Journaled<(u64, u64, u32), &[u8]> = Journaled(TableId::Batches, layout::BATCHES);
pub(in crate::storage) const PARTITIONS: Journaled<u64, &[u8]> = Journaled(TableId::Partitions, layout::PARTITIONS);
pub(in crate::storage) const GROUP_TIMES: Journaled<(u64, u64), i64> =
    Journaled(TableId::GroupTimes, layout::GROUP_TIMES);
pub(in crate::storage) const PRODUCERS: Journaled<(u64, i64), &[u8]> = Journaled(TableId::Producers, layout::PRODUCERS);
pub(in crate::storage) const GROUP_OFFSETS: Journaled<(&str, &str, u32), &[u8]> =
    Journaled(TableId::GroupOffsets, layout::GROUP_OFFSETS);
pub(in crate::storage) const RESOURCES: Journaled<(&str, &str), &[u8]> =
    Journaled(TableId::Resources, layout::RESOURCES);

/// A record being built: room for the record header, then the changes. Past
/// [`JOURNAL_RECORD_BYTES_MAX`] it stops recording (such a commit is not journaled), so a large
/// commit costs no copy of its bytes.
#[derive(Debug)]
pub(in crate::storage) struct Redo {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl Default for Redo {
    fn default() -> Self {
        Redo { bytes: vec![0; RECORD_HEADER_BYTES], overflowed: false }
    }
}

impl Redo {
    /// The body's length; `usize::MAX` once it outgrew what the journal takes.
    pub(in crate::storage) fn body_len(&self) -> usize {
        if self.overflowed { usize::MAX } else { self.bytes.len() - RECORD_HEADER_BYTES }
    }

    /// Whether a change of `len` more bytes is still recorded (`false`: the record overflowed).
    fn has_room(&mut self, len: usize) -> bool {
        if !self.overflowed && self.bytes.len() - RECORD_HEADER_BYTES + len > JOURNAL_RECORD_BYTES_MAX {
            self.overflowed = true;
            self.bytes.truncate(RECORD_HEADER_BYTES);
        }
        !self.overflowed
    }

    /// The record, header room included (see [`super::Journal::append`]).
    pub(in crate::storage) fn record_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn change(&mut self, kind: u8, table: TableId, key: &[u8]) {
        self.bytes.extend([kind, table as u8]);
        self.put_bytes(key);
    }

    fn put_bytes(&mut self, bytes: &[u8]) {
        self.bytes.extend((bytes.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(bytes);
    }
}

/// A write transaction whose row changes are also recorded for the journal — or not, for the
/// commits that are durable in redb by themselves.
pub(in crate::storage) struct Txn<'t> {
    pub(in crate::storage) txn: &'t WriteTransaction,
    redo: Option<RefCell<Redo>>,
}

impl<'t> Txn<'t> {
    pub(in crate::storage) fn journaled(txn: &'t WriteTransaction) -> Self {
        Txn { txn, redo: Some(RefCell::new(Redo::default())) }
    }

    pub(in crate::storage) fn unjournaled(txn: &'t WriteTransaction) -> Self {
        Txn { txn, redo: None }
    }

    pub(in crate::storage) fn open<K: Key + 'static, V: Value + 'static>(
        &self,
        table: &Journaled<K, V>,
    ) -> Result<Logged<'t, '_, K, V>, StorageError> {
        Ok(Logged { table: self.txn.open_table(table.1)?, id: table.0, redo: self.redo.as_ref() })
    }

    /// What was recorded (`None` for an unjournaled transaction).
    pub(in crate::storage) fn into_redo(self) -> Option<Redo> {
        self.redo.map(RefCell::into_inner)
    }
}

/// A table of a [`Txn`]: every change is made and, in a journaled transaction, recorded.
pub(in crate::storage) struct Logged<'t, 'r, K: Key + 'static, V: Value + 'static> {
    table: redb::Table<'t, K, V>,
    id: TableId,
    redo: Option<&'r RefCell<Redo>>,
}

impl<K: Key + 'static, V: Value + 'static> Logged<'_, '_, K, V> {
    pub(in crate::storage) fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<(), StorageError> {
        if let Some(redo) = self.redo {
            let mut redo = redo.borrow_mut();
            let (key, value) = (K::as_bytes(key.borrow()), V::as_bytes(value.borrow()));
            if redo.has_room(CHANGE_OVERHEAD + key.as_ref().len() + 4 + value.as_ref().len()) {
                redo.change(PUT, self.id, key.as_ref());
                redo.put_bytes(value.as_ref());
            }
        }
        self.table.insert(key, value)?;
        Ok(())
    }

    pub(in crate::storage) fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<(), StorageError> {
        if let Some(redo) = self.redo {
            let mut redo = redo.borrow_mut();
            let key = K::as_bytes(key.borrow());
            if redo.has_room(CHANGE_OVERHEAD + key.as_ref().len()) {
                redo.change(DELETE, self.id, key.as_ref());
            }
        }
        self.table.remove(key)?;
        Ok(())
    }
}

impl<K: Key + 'static> Logged<'_, '_, K, &'static [u8]> {
    /// Replaces a row that holds `value[..kept]` with `value`; only the new bytes are recorded.
    pub(in crate::storage) fn insert_extending<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        kept: usize,
        value: &[u8],
    ) -> Result<(), StorageError> {
        if kept == 0 {
            return self.insert(key, value);
        }
        if let Some(redo) = self.redo {
            let mut redo = redo.borrow_mut();
            let key_bytes = K::as_bytes(key.borrow());
            if redo.has_room(CHANGE_OVERHEAD + key_bytes.as_ref().len() + 8 + value.len() - kept) {
                redo.change(EXTEND, self.id, key_bytes.as_ref());
                redo.bytes.extend((kept as u32).to_le_bytes());
                redo.put_bytes(&value[kept..]);
            }
        }
        self.table.insert(key, value)?;
        Ok(())
    }
}

/// One change read back from a record.
struct Change<'a> {
    kind: u8,
    table: TableId,
    key: &'a [u8],
    /// The value (put), or the suffix (extend).
    value: &'a [u8],
    /// Extend: how many bytes of the row to keep.
    kept: usize,
}

/// Applies a record's changes to `txn`, in order.
pub(super) fn apply(txn: &WriteTransaction, seq: u64, mut body: &[u8]) -> Result<(), ApplyError> {
    while !body.is_empty() {
        let change = next_change(&mut body).ok_or(ApplyError::Malformed { seq, detail: "truncated change" })?;
        match change.table {
            TableId::Batches => apply_to(txn, layout::BATCHES, &change, seq)?,
            TableId::Partitions => apply_to(txn, layout::PARTITIONS, &change, seq)?,
            TableId::GroupTimes => apply_to(txn, layout::GROUP_TIMES, &change, seq)?,
            TableId::Producers => apply_to(txn, layout::PRODUCERS, &change, seq)?,
            TableId::GroupOffsets => apply_to(txn, layout::GROUP_OFFSETS, &change, seq)?,
            TableId::Resources => apply_to(txn, layout::RESOURCES, &change, seq)?,
        }
    }
    Ok(())
}

/// Why a record could not be applied.
#[derive(Debug)]
pub(super) enum ApplyError {
    Storage(StorageError),
    Malformed { seq: u64, detail: &'static str },
}

impl From<redb::TableError> for ApplyError {
    fn from(e: redb::TableError) -> Self {
        ApplyError::Storage(e.into())
    }
}

impl From<redb::StorageError> for ApplyError {
    fn from(e: redb::StorageError) -> Self {
        ApplyError::Storage(e.into())
    }
}

impl From<ApplyError> for crate::storage::OpenError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Storage(e) => e.into(),
            ApplyError::Malformed { seq, detail } => JournalError::Record { seq, detail: detail.into() }.into(),
        }
    }
}

fn next_change<'a>(body: &mut &'a [u8]) -> Option<Change<'a>> {
    let (&[kind, table], rest) = body.split_first_chunk::<2>()?;
    *body = rest;
    let table = TableId::from_u8(table)?;
    let key = take_bytes(body)?;
    let (value, kept) = match kind {
        PUT => (take_bytes(body)?, 0),
        EXTEND => {
            let kept = take_u32(body)? as usize;
            (take_bytes(body)?, kept)
        }
        DELETE => (&[][..], 0),
        _ => return None,
    };
    Some(Change { kind, table, key, value, kept })
}

fn take_u32(body: &mut &[u8]) -> Option<u32> {
    let (len, rest) = body.split_first_chunk::<4>()?;
    *body = rest;
    Some(u32::from_le_bytes(*len))
}

fn take_bytes<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_u32(body)? as usize;
    let bytes = body.get(..len)?;
    *body = &body[len..];
    Some(bytes)
}

fn apply_to<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    definition: TableDefinition<K, V>,
    change: &Change<'_>,
    seq: u64,
) -> Result<(), ApplyError> {
    let mut table = txn.open_table(definition)?;
    let key = K::from_bytes(change.key);
    match change.kind {
        PUT => {
            table.insert(key, V::from_bytes(change.value))?;
        }
        DELETE => {
            table.remove(key)?;
        }
        _ => {
            let mut value = match table.get(K::from_bytes(change.key))? {
                Some(old) => V::as_bytes(&old.value()).as_ref().to_vec(),
                None => return Err(ApplyError::Malformed { seq, detail: "extends a row that is not there" }),
            };
            if value.len() != change.kept {
                return Err(ApplyError::Malformed { seq, detail: "extends a row of another length" });
            }
            value.extend_from_slice(change.value);
            table.insert(key, V::from_bytes(&value))?;
        }
    }
    Ok(())
}
