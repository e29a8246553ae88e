//! Replication frames over tokio streams: a reader task decodes frames ahead of the state machine
//! (bounded), and a ready's messages go out in one write.

use rill_core::replication::protocol::{self, FrameError, LENGTH_PREFIX};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tokio::sync::mpsc;

use crate::limits::{REPLICATION_FRAMES_QUEUED, REPLICATION_LINK_TIMEOUT};

/// Why a replication link failed: the connection ends, and the edge connects again.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("reading from the link: {0}")]
    Read(std::io::Error),
    #[error("writing to the link: {0}")]
    Write(std::io::Error),
    #[error("writing to the link: nothing moved for {0:?}")]
    Stalled(std::time::Duration),
    #[error("a frame of {len} bytes is over the {limit} allowed here")]
    TooLong { len: usize, limit: usize },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Reads frames from `reader`, decodes them with `decode` and queues them, until the stream ends
/// (`None` is queued last: the peer closed) or fails (an error is queued last). Stops when the
/// receiver is dropped.
/// Frames longer than `limit` (read at each frame, so it can be raised once the peer is known)
/// end the stream with an error before anything of them is allocated.
pub fn spawn_reader<M: Send + 'static>(
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    decode: fn(&[u8]) -> Result<M, FrameError>,
    limit: Arc<AtomicUsize>,
) -> mpsc::Receiver<Result<Option<M>, LinkError>> {
    let (frames, queue) = mpsc::channel(REPLICATION_FRAMES_QUEUED);
    tokio::spawn(async move {
        loop {
            let next = match read_frame(&mut reader, limit.load(Ordering::Acquire)).await {
                Ok(Some(body)) => decode(&body).map(Some).map_err(LinkError::from),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            let last = !matches!(next, Ok(Some(_)));
            if frames.send(next).await.is_err() || last {
                return;
            }
        }
    });
    queue
}

/// One frame's body; `None` when the stream ends cleanly between frames.
async fn read_frame(reader: &mut (impl AsyncRead + Unpin), limit: usize) -> Result<Option<Vec<u8>>, LinkError> {
    let mut prefix = [0; LENGTH_PREFIX];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(LinkError::Read(e)),
    }
    let len = protocol::frame_len(prefix)?;
    if len > limit {
        return Err(LinkError::TooLong { len, limit });
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await.map_err(LinkError::Read)?;
    Ok(Some(body))
}

/// Encodes `messages` as frames and writes them in one go.
pub async fn write_all<M>(
    writer: &mut (impl AsyncWrite + Unpin),
    messages: &[M],
    encode: fn(&M, &mut Vec<u8>) -> Result<(), FrameError>,
) -> Result<(), LinkError> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut out = Vec::new();
    for message in messages {
        encode(message, &mut out)?;
    }
    // A peer that stopped reading (a dead link TCP has not noticed yet) must not hold the loop
    // past the link timeout: ticks, stops and shutdowns wait on it.
    match tokio::time::timeout(REPLICATION_LINK_TIMEOUT, writer.write_all(&out)).await {
        Ok(written) => written.map_err(LinkError::Write),
        Err(_) => Err(LinkError::Stalled(REPLICATION_LINK_TIMEOUT)),
    }
}
