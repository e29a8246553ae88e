//! A simulated disk for fault tests: it keeps what a real disk would keep across a power cut
//! (only what was synced), can run out of space, and can fail syncs or die mid-stream.

use std::io::{Error, ErrorKind};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;

use super::BackendFactory;

/// A filesystem block: the unit a sparse disk allocates.
const BLOCK: u64 = 4096;

#[derive(Debug, Default)]
pub struct SimDisk {
    state: Mutex<DiskState>,
}

#[derive(Debug, Default)]
struct DiskState {
    /// What reads see: the page cache.
    current: Vec<u8>,
    /// What survives a power cut: the contents at the last successful sync.
    durable: Vec<u8>,
    /// Writes since the last sync, in order, for torn-write power cuts.
    unsynced: Vec<(u64, Vec<u8>)>,
    /// Bytes the disk can hold; growing past it fails with ENOSPC.
    capacity: Option<u64>,
    /// Like ext4 or tmpfs: growing the file (`set_len`) takes no space, writing does; only writes
    /// past the written end count against the capacity.
    sparse: bool,
    /// Which 4 KiB blocks of the file were written (what a sparse file occupies).
    written_blocks: std::collections::BTreeSet<u64>,
    /// Mutating operations left before the power goes out (every later operation fails).
    ops_until_cut: Option<u64>,
    dead: bool,
    fail_syncs: bool,
}

impl SimDisk {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn factory(self: &Arc<Self>) -> BackendFactory {
        let disk = self.clone();
        Arc::new(move || Ok(Box::new(SimBackend(disk.clone())) as Box<dyn StorageBackend>))
    }

    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power goes out after `ops` more writes, resizes or syncs.
    pub fn cut_power_after(&self, ops: u64) {
        self.state().ops_until_cut = Some(ops);
    }

    pub fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// Power comes back: the disk holds what was synced, plus — with `torn_seed` — a random
    /// subset of the writes issued since (a disk may persist some unsynced writes, in any order).
    pub fn restore_power(&self, torn_seed: Option<u64>) {
        let mut state = self.state();
        let mut image = state.durable.clone();
        if let Some(mut seed) = torn_seed {
            for (offset, data) in &state.unsynced {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if seed % 2 == 0 {
                    let end = *offset as usize + data.len();
                    if image.len() < end {
                        image.resize(end, 0);
                    }
                    image[*offset as usize..end].copy_from_slice(data);
                }
            }
        }
        state.current = image.clone();
        state.durable = image;
        state.unsynced.clear();
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

    /// Bytes the disk's file occupies: its length, or on a sparse disk what was written of it.
    fn occupied(state: &DiskState) -> u64 {
        if state.sparse { state.written_blocks.len() as u64 * BLOCK } else { state.current.len() as u64 }
    }

    /// Reads the simulated disk's free space (capacity less what it holds), for the store's
    /// free-space reserve; a disk without a capacity reads as 1 TiB free.
    pub fn space_probe(self: &Arc<Self>) -> super::SpaceProbe {
        let disk = self.clone();
        super::SpaceProbe::new(move || {
            let state = disk.state();
            let total = state.capacity.unwrap_or(1 << 40);
            Ok(super::FsSpace { available: total.saturating_sub(Self::occupied(&state)), total })
        })
    }

    /// Bytes the disk holds now (the page cache's view).
    pub fn size_bytes(&self) -> u64 {
        self.state().current.len() as u64
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

    fn grow_to(&mut self, len: u64) -> Result<(), Error> {
        if !self.sparse && self.capacity.is_some_and(|cap| len > cap) {
            return Err(Error::new(ErrorKind::StorageFull, "No space left on device (simulated)"));
        }
        if len as usize > self.current.len() {
            self.current.resize(len as usize, 0);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SimBackend(Arc<SimDisk>);

impl StorageBackend for SimBackend {
    fn len(&self) -> Result<u64, Error> {
        let state = self.0.state();
        if state.dead {
            return Err(Error::other("simulated power cut"));
        }
        Ok(state.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        let state = self.0.state();
        if state.dead {
            return Err(Error::other("simulated power cut"));
        }
        let end = offset as usize + out.len();
        let data = state
            .current
            .get(offset as usize..end)
            .ok_or_else(|| Error::new(ErrorKind::UnexpectedEof, "read past end"))?;
        out.copy_from_slice(data);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), Error> {
        let mut state = self.0.state();
        state.spend_op()?;
        if len as usize <= state.current.len() {
            state.current.truncate(len as usize);
            state.written_blocks.retain(|block| block * BLOCK < len);
            return Ok(());
        }
        state.grow_to(len)
    }

    fn sync_data(&self) -> Result<(), Error> {
        let mut state = self.0.state();
        state.spend_op()?;
        if state.fail_syncs {
            return Err(Error::other("simulated fsync failure"));
        }
        state.durable = state.current.clone();
        state.unsynced.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut state = self.0.state();
        state.spend_op()?;
        let end = offset + data.len() as u64;
        if state.sparse && !data.is_empty() {
            let blocks = offset / BLOCK..=(end - 1) / BLOCK;
            let new = blocks.clone().filter(|block| !state.written_blocks.contains(block)).count() as u64;
            let occupied = SimDisk::occupied(&state);
            if state.capacity.is_some_and(|cap| occupied + new * BLOCK > cap) {
                return Err(Error::new(ErrorKind::StorageFull, "No space left on device (simulated)"));
            }
            state.written_blocks.extend(blocks);
        }
        state.grow_to(end)?;
        state.current[offset as usize..end as usize].copy_from_slice(data);
        state.unsynced.push((offset, data.to_vec()));
        Ok(())
    }
}
