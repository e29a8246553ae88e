//! Where the uplink puts batches while the gateway is out of reach, so that a power cut does not
//! take them: [`NoBacklog`] (the RAM log is all there is) or, with the feature `flash-backlog`,
//! [`FlashSpill`] over the node's NOR flash ([`crate::flash_log`]).
//!
//! The RAM log stays the working set: batches go to the backlog only while the link is down
//! (written through, every batch would wear the flash; see `firmware/README.md`), and come back
//! out of it, oldest first and each under the (boot, sequence) it was first numbered with, before
//! anything newer is sent.

/// One batch the backlog holds, with the numbers it was first sent (or meant to be sent) under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spilled<'b> {
    pub boot: u32,
    pub seq: u32,
    pub batch: &'b [u8],
}

/// Durable storage for batches the link could not deliver. Every method may fail (the flash
/// failed, or lost power mid-operation); a failed call changes nothing the caller relies on:
/// a batch whose push failed stays in RAM, one whose pop failed is sent again.
#[allow(async_fn_in_trait)] // used with concrete types on one executor: no `Send` bound to name
pub trait Backlog {
    type Error: core::fmt::Debug;

    /// Whether pushing can succeed at all: without a backlog the link's outages are held in RAM.
    fn is_durable(&self) -> bool;

    /// Stores `batch` as (`boot`, `seq`), durably when this returns `Ok`. A full backlog drops
    /// its oldest batches to make room (counted in [`dropped_records`](Self::dropped_records)).
    async fn push(&mut self, boot: u32, seq: u32, batch: &[u8]) -> Result<(), Self::Error>;

    /// The oldest batch held, if any.
    async fn oldest(&mut self) -> Result<Option<Spilled<'_>>, Self::Error>;

    /// Removes the oldest batch if it is (`boot`, `seq`); whether it was removed.
    async fn pop_if(&mut self, boot: u32, seq: u32) -> Result<bool, Self::Error>;

    /// Records the backlog dropped, full, since the node started.
    fn dropped_records(&self) -> u64;
}

/// No backlog: while the link is down, batches wait in the RAM log (which drops its oldest when
/// full), and a power cut loses them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBacklog;

/// What [`NoBacklog`] answers a push with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoBacklogError;

impl Backlog for NoBacklog {
    type Error = NoBacklogError;

    fn is_durable(&self) -> bool {
        false
    }

    async fn push(&mut self, _boot: u32, _seq: u32, _batch: &[u8]) -> Result<(), NoBacklogError> {
        Err(NoBacklogError)
    }

    async fn oldest(&mut self) -> Result<Option<Spilled<'_>>, NoBacklogError> {
        Ok(None)
    }

    async fn pop_if(&mut self, _boot: u32, _seq: u32) -> Result<bool, NoBacklogError> {
        Ok(false)
    }

    fn dropped_records(&self) -> u64 {
        0
    }
}

#[cfg(feature = "flash-backlog")]
pub use flash::FlashSpill;

#[cfg(feature = "flash-backlog")]
mod flash {
    use embedded_storage_async::nor_flash::NorFlash;

    use super::{Backlog, Spilled};
    use crate::flash_log::{FlashBacklog, FlashLogError};

    /// The backlog in NOR flash, with the buffer its reads and writes go through.
    pub struct FlashSpill<'b, S: NorFlash> {
        log: FlashBacklog<S>,
        buf: &'b mut [u8],
        /// The last look found the log empty and nothing was pushed since: the uplink asks after
        /// every answer and append, and an empty log need not be read again for it.
        known_empty: bool,
    }

    impl<'b, S: NorFlash> FlashSpill<'b, S> {
        /// `buf` must hold [`crate::flash_log::buffer_bytes`] of the largest batch.
        pub fn new(log: FlashBacklog<S>, buf: &'b mut [u8]) -> Self {
            FlashSpill { log, buf, known_empty: false }
        }

        /// The flash log, for a board's console (and for tests).
        pub fn log(&self) -> &FlashBacklog<S> {
            &self.log
        }

        pub fn into_log(self) -> FlashBacklog<S> {
            self.log
        }
    }

    impl<S: NorFlash> core::fmt::Debug for FlashSpill<'_, S> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("FlashSpill")
                .field("dropped_records", &self.log.dropped_records())
                .field("known_empty", &self.known_empty)
                .finish_non_exhaustive()
        }
    }

    impl<S: NorFlash> Backlog for FlashSpill<'_, S> {
        type Error = FlashLogError<S::Error>;

        fn is_durable(&self) -> bool {
            true
        }

        async fn push(&mut self, boot: u32, seq: u32, batch: &[u8]) -> Result<(), Self::Error> {
            // Whether or not it lands, the log may hold something now (a failed write is read
            // again at the next look).
            self.known_empty = false;
            self.log.push(boot, seq, batch, self.buf).await
        }

        async fn oldest(&mut self) -> Result<Option<Spilled<'_>>, Self::Error> {
            if self.known_empty {
                return Ok(None);
            }
            let oldest = self.log.oldest(self.buf).await?;
            self.known_empty = oldest.is_none();
            Ok(oldest.map(|stored| Spilled { boot: stored.boot, seq: stored.seq, batch: stored.batch }))
        }

        async fn pop_if(&mut self, boot: u32, seq: u32) -> Result<bool, Self::Error> {
            self.log.pop_oldest_if(boot, seq, self.buf).await
        }

        fn dropped_records(&self) -> u64 {
            self.log.dropped_records()
        }
    }
}
