//! Opening the store's files (the redb database and its journal) on the filesystem or on any
//! [`redb::StorageBackend`] (tests inject faults through one).

use std::path::Path;
use std::sync::Arc;

use redb::StorageBackend;

use super::journal::{self, Journal};
use super::{DB_FILE_NAME, JOURNAL_FILE_NAME, OpenError, StoreConfig, catalog};

/// The files a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreFile {
    /// The redb database (`rill.redb`).
    Database,
    /// The write-ahead journal in front of it (`rill.journal`, see `storage::journal`).
    Journal,
}

/// Makes a fresh backend over the same storage each time a file is (re)opened.
pub type BackendFactory = Arc<dyn Fn(StoreFile) -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync>;

pub(super) fn file_factory(dir: &Path) -> Result<BackendFactory, OpenError> {
    std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir { path: dir.to_owned(), source })?;
    let dir = dir.to_owned();
    Ok(Arc::new(move |which| {
        let path = dir.join(match which {
            StoreFile::Database => DB_FILE_NAME,
            StoreFile::Journal => JOURNAL_FILE_NAME,
        });
        let existed = path.exists();
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        if !existed {
            // The new file's name must survive a power cut as well as what is synced into it.
            std::fs::File::open(&dir)?.sync_all()?;
        }
        match which {
            StoreFile::Database => {
                let backend = redb::backends::FileBackend::new(file).map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => {
                        std::io::Error::new(std::io::ErrorKind::WouldBlock, "locked")
                    }
                    other => std::io::Error::other(other.to_string()),
                })?;
                Ok(Box::new(backend) as Box<dyn StorageBackend>)
            }
            // The database's lock guards the directory; the journal is reopened with it.
            StoreFile::Journal => Ok(Box::new(JournalFile(file)) as Box<dyn StorageBackend>),
        }
    }))
}

/// The journal's file: positioned reads and writes, no locks.
#[derive(Debug)]
struct JournalFile(std::fs::File);

impl StorageBackend for JournalFile {
    fn len(&self) -> IoResult<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> IoResult<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, out, offset)
    }
    fn set_len(&self, len: u64) -> IoResult<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> IoResult<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
    }
}

/// Opens the database and its journal, ready to read: created or migrated, with whatever only the
/// journal held replayed into the database.
pub(super) fn open_store(
    factory: &BackendFactory,
    config: &StoreConfig,
) -> Result<(redb::Database, Journal), OpenError> {
    let db = open_database(factory, config.cache_bytes)?;
    let fresh = catalog::prepare(&db, config.clock.now_ms())?;
    let cluster_id = catalog::cluster_id(&db)?;
    let journal = journal::open(factory, &db, cluster_id, config.journal_bytes, fresh)?;
    Ok((db, journal))
}

pub(super) fn open_database(factory: &BackendFactory, cache_bytes: usize) -> Result<redb::Database, OpenError> {
    let backend = factory(StoreFile::Database).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => OpenError::Locked,
        _ => OpenError::Storage(e.into()),
    })?;
    let db = redb::Builder::new().set_cache_size(cache_bytes).create_with_backend(Boxed(backend));
    match db {
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(OpenError::Locked),
        other => Ok(other?),
    }
}

/// `Box<dyn StorageBackend>` as a `StorageBackend`, every call forwarded (locks included, so a
/// file stays locked against a second `rill serve`).
#[derive(Debug)]
struct Boxed(Box<dyn StorageBackend>);

type IoResult<T> = Result<T, std::io::Error>;
type LockResult<T> = Result<T, redb::BackendError>;
type Bound = std::ops::Bound<u64>;

impl StorageBackend for Boxed {
    fn len(&self) -> IoResult<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> IoResult<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> IoResult<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> IoResult<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> IoResult<()> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound, end: Bound) -> LockResult<bool> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound, end: Bound) -> LockResult<bool> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound, end: Bound) -> LockResult<()> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound, end: Bound) -> LockResult<()> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound, end: Bound) -> LockResult<()> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound, end: Bound) -> LockResult<bool> {
        self.0.query_lock_range(start, end)
    }
}
