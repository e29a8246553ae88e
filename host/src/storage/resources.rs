//! Rill's own resources (plugins, and later pipelines, MQTT bridges, mirrors, devices): JSON
//! documents keyed by (kind, name) in the `resources` table, and content-addressed blobs (plugin
//! components) in `blobs`, keyed by their SHA-256. Written by the writer thread in durable
//! transactions; read in read transactions.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::Shared;
use super::StorageError;
use super::journal::redo::{self, Txn};
use super::layout::{BLOBS, RESOURCES};

/// Why a resource change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    #[error("unknown {kind} {name:?}")]
    Unknown { kind: String, name: String },
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
}

/// How [`put`] treats an existing document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Refuse when the name is taken.
    Create,
    /// Refuse when the name is free.
    Replace,
}

/// A blob stored with a resource document in the same transaction.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// Writes one document (and its blob, unless the same bytes are stored already).
pub(super) fn put(
    txn: &WriteTransaction,
    kind: &str,
    name: &str,
    document: &[u8],
    mode: PutMode,
    blob: Option<&Blob>,
) -> Result<Result<(), ResourceError>, StorageError> {
    let mut table = txn.open_table(RESOURCES)?;
    let exists = table.get((kind, name))?.is_some();
    match (mode, exists) {
        (PutMode::Create, true) => {
            return Ok(Err(ResourceError::AlreadyExists { kind: kind.to_owned(), name: name.to_owned() }));
        }
        (PutMode::Replace, false) => {
            return Ok(Err(ResourceError::Unknown { kind: kind.to_owned(), name: name.to_owned() }));
        }
        _ => {}
    }
    table.insert((kind, name), document)?;
    if let Some(blob) = blob {
        let mut blobs = txn.open_table(BLOBS)?;
        if blobs.get(blob.sha256.as_str())?.is_none() {
            blobs.insert(blob.sha256.as_str(), blob.bytes.as_slice())?;
        }
    }
    Ok(Ok(()))
}

/// Writes or deletes documents as a transaction says (no blobs, no existence checks).
pub(super) fn write_documents(txn: &Txn<'_>, documents: &[super::DocumentWrite]) -> Result<(), StorageError> {
    if documents.is_empty() {
        return Ok(());
    }
    let mut table = txn.open(&redo::RESOURCES)?;
    for write in documents {
        let key = (write.kind.as_str(), write.name.as_str());
        match &write.document {
            Some(document) => table.insert(key, document.as_slice()),
            None => table.remove(key),
        }?;
    }
    Ok(())
}

/// Deletes one document, and the blobs in `unreferenced` that no document of `kind` names any
/// more (`references` reads a document's blob, if it has one).
pub(super) fn delete(
    txn: &WriteTransaction,
    kind: &str,
    name: &str,
    references: fn(&[u8]) -> Option<String>,
) -> Result<bool, StorageError> {
    let mut table = txn.open_table(RESOURCES)?;
    let Some(removed) = table.remove((kind, name))?.map(|v| v.value().to_vec()) else {
        return Ok(false);
    };
    if let Some(sha) = references(&removed) {
        let still_used = table
            .range((kind, "")..)?
            .map_while(|row| row.ok().filter(|(key, _)| key.value().0 == kind))
            .any(|(_, value)| references(value.value()).as_deref() == Some(sha.as_str()));
        if !still_used {
            txn.open_table(BLOBS)?.remove(sha.as_str())?;
        }
    }
    Ok(true)
}

/// One document.
pub(super) fn get(shared: &Shared, kind: &str, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let db = shared.database()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(RESOURCES)?;
    Ok(table.get((kind, name))?.map(|v| v.value().to_vec()))
}

/// Every document of `kind`, by name.
pub(super) fn list(shared: &Shared, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let db = shared.database()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(RESOURCES)?;
    let mut out = Vec::new();
    for row in table.range((kind, "")..)? {
        let (key, value) = row?;
        let (row_kind, name) = key.value();
        if row_kind != kind {
            break;
        }
        out.push((name.to_owned(), value.value().to_vec()));
    }
    Ok(out)
}

/// A blob by its SHA-256.
pub(super) fn blob(shared: &Shared, sha256: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let db = shared.database()?;
    let txn = db.begin_read()?;
    let table = txn.open_table(BLOBS)?;
    Ok(table.get(sha256)?.map(|v| v.value().to_vec()))
}
