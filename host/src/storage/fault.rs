//! A simulated disk for fault tests: it keeps what a real disk would keep across a power cut
//! (only what was synced), can run out of space, and can fail syncs or die mid-stream. It holds
//! the store's files (the database and its journal) side by side: a power cut stops both at the
//! same operation, and they share the disk's capacity.

use std::collections::BTreeMap;
use std::io::{Error, ErrorKind};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;

use super::BackendFactory;
use super::backend::StoreFile;

/// A filesystem block: the unit a sparse disk allocates.
const BLOCK: u64 = 4096;

#[derive(Debug, Default)]
pub struct SimDisk {
    state: Mutex<DiskState>,
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<StoreFile, FileState>,
    /// Bytes the disk can hold; growing past it fails with ENOSPC.
    capacity: Option<u64>,
    /// Like ext4 or tmpfs: growing a file (`set_len`) takes no space, writing does; only writes
    /// past a file's written end count against the capacity.
    sparse: bool,
    /// Mutating operations left before the power goes out (every later operation fails).
    ops_until_cut: Option<u64>,
    dead: bool,
    fail_syncs: bool,
}

#[derive(Debug, Default)]
struct FileState {
    /// What reads see: the page cache.
    current: Vec<u8>,
    /// What survives a power cut: the contents at the last successful sync.
    durable: Vec<u8>,
    /// Writes since the last sync, in order, for torn-write power cuts.
    unsynced: Vec<(u64, Vec<u8>)>,
    /// The shortest the file was made since the last sync (what a sync must cut off).
    shrunk_to: Option<usize>,
    /// Which 4 KiB blocks of the file were ever written (what a sparse file occupies).
    written_blocks: std::collections::BTreeSet<u64>,
}

impl SimDisk {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn factory(self: &Arc<Self>) -> BackendFactory {
        let disk = self.clone();
        Arc::new(move |file| Ok(Box::new(SimBackend(disk.clone(), file)) as Box<dyn StorageBackend>))
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes out after `ops` more writes, resizes or syncs (of any file).
    pub fn cut_power_after(&self, ops: u64) {
        self.state().ops_until_cut = Some(ops);
    }

    pub fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// Power comes back: each file holds what was synced, plus — with `torn_seed` — a random
    /// subset of the writes issued since (a disk may persist some unsynced writes, in any order).
    pub fn restore_power(&self, torn_seed: Option<u64>) {
        let mut state = self.state();
        let mut seed = torn_seed.unwrap_or(0);
        for file in state.files.values_mut() {
            let mut image = file.durable.clone();
            if torn_seed.is_some() {
                for (offset, data) in &file.unsynced {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed.is_multiple_of(2) {
                        let end = *offset as usize + data.len();
                        if image.len() < end {
                            image.resize(end, 0);
                        }
                        image[*offset as usize..end].copy_from_slice(data);
                    }
                }
            }
            file.current = image.clone();
            file.durable = image;
            file.unsynced.clear();
            file.shrunk_to = None;
        }
        state.dead = false;
        state.ops_until_cut = None;
    }

    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state().capacity = bytes;
    }

    /// Makes the disk sparse (see [`DiskState::sparse`]), as the filesystems Rill runs on are.
    pub fn set_sparse(&self, sparse: bool) {
        self.state().sparse = sparse;
    }

    /// Reads the simulated disk's free space (capacity less what it holds), for the store's
    /// free-space reserve; a disk without a capacity reads as 1 TiB free.
    pub fn space_probe(self: &Arc<Self>) -> super::SpaceProbe {
        let disk = self.clone();
        super::SpaceProbe::new(move || {
            let state = disk.state();
            let total = state.capacity.unwrap_or(1 << 40);
            Ok(super::FsSpace { available: total.saturating_sub(state.occupied()), total })
        })
    }

    /// Bytes the disk's files hold now (the page cache's view).
    pub fn size_bytes(&self) -> u64 {
        self.state().files.values().map(|file| file.current.len() as u64).sum()
    }

    pub fn fail_syncs(&self, fail: bool) {
        self.state().fail_syncs = fail;
    }
}

impl DiskState {
    /// Counts one mutating operation; fails if the power is (now) out.
    fn spend_op(&mut self) -> Result<(), Error> {
        if let Some(left) = self.ops_until_cut.as_mut() {
            if *left == 0 {
                self.dead = true;
            } else {
                *left -= 1;
            }
        }
        if self.dead {
            return Err(Error::other("simulated power cut"));
        }
        Ok(())
    }

    fn alive(&self) -> Result<(), Error> {
        if self.dead { Err(Error::other("simulated power cut")) } else { Ok(()) }
    }

    /// Bytes the files occupy: their lengths, or on a sparse disk what was written of them.
    fn occupied(&self) -> u64 {
        let files = self.files.values();
        if self.sparse {
            files.map(|file| file.written_blocks.len() as u64 * BLOCK).sum()
        } else {
            files.map(|file| file.current.len() as u64).sum()
        }
    }

    fn no_space() -> Error {
        Error::new(ErrorKind::StorageFull, "No space left on device (simulated)")
    }

    fn grow_to(&mut self, name: StoreFile, len: u64) -> Result<(), Error> {
        let current = self.files.get(&name).map_or(0, |file| file.current.len() as u64);
        if !self.sparse && self.capacity.is_some_and(|cap| self.occupied() + len.saturating_sub(current) > cap) {
            return Err(Self::no_space());
        }
        let file = self.files.entry(name).or_default();
        if len as usize > file.current.len() {
            file.current.resize(len as usize, 0);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SimBackend(Arc<SimDisk>, StoreFile);

impl StorageBackend for SimBackend {
    fn len(&self) -> Result<u64, Error> {
        let state = self.0.state();
        state.alive()?;
        Ok(state.files.get(&self.1).map_or(0, |file| file.current.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        let state = self.0.state();
        state.alive()?;
        let end = offset as usize + out.len();
        let data = state
            .files
            .get(&self.1)
            .and_then(|file| file.current.get(offset as usize..end))
            .ok_or_else(|| Error::new(ErrorKind::UnexpectedEof, "read past end"))?;
        out.copy_from_slice(data);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), Error> {
        let mut state = self.0.state();
        state.spend_op()?;
        let file = state.files.entry(self.1).or_default();
        if len as usize <= file.current.len() {
            file.current.truncate(len as usize);
            file.shrunk_to = Some(file.shrunk_to.map_or(len as usize, |shrunk| shrunk.min(len as usize)));
            file.written_blocks.retain(|block| block * BLOCK < len);
            return Ok(());
        }
        state.grow_to(self.1, len)
    }

    fn sync_data(&self) -> Result<(), Error> {
        let mut state = self.0.state();
        state.spend_op()?;
        if state.fail_syncs {
            return Err(Error::other("simulated fsync failure"));
        }
        let file = state.files.entry(self.1).or_default();
        // What the page cache holds now (cheaper than copying a whole file at every sync).
        if let Some(shrunk) = file.shrunk_to.take() {
            file.durable.truncate(shrunk);
        }
        file.durable.resize(file.current.len(), 0);
        for (offset, data) in std::mem::take(&mut file.unsynced) {
            let (start, end) = (offset as usize, offset as usize + data.len());
            if start < file.current.len() {
                let end = end.min(file.current.len());
                file.durable[start..end].copy_from_slice(&file.current[start..end]);
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut state = self.0.state();
        state.spend_op()?;
        let end = offset + data.len() as u64;
        if !data.is_empty() {
            let blocks = offset / BLOCK..=(end - 1) / BLOCK;
            let written = state.files.get(&self.1).map(|file| &file.written_blocks);
            let new = blocks.clone().filter(|block| !written.is_some_and(|w| w.contains(block))).count() as u64;
            if state.sparse && state.capacity.is_some_and(|cap| state.occupied() + new * BLOCK > cap) {
                return Err(DiskState::no_space());
            }
            state.files.entry(self.1).or_default().written_blocks.extend(blocks);
        }
        state.grow_to(self.1, end)?;
        let file = state.files.entry(self.1).or_default();
        file.current[offset as usize..end as usize].copy_from_slice(data);
        file.unsynced.push((offset, data.to_vec()));
        Ok(())
    }
}
