//! The uplink task: [`UplinkClient`] driven over a byte stream (a UART, or a TCP socket on a
//! board with a network stack). It sends what the client allows, feeds the gateway's answers
//! back, and takes silence while frames wait for an answer as a broken link: a UART has no
//! connection that could say so. After the client's back-off it sends again from the oldest
//! batch not acknowledged, which the gateway recognises as repeats where they arrived before.
//!
//! With a durable [`Backlog`], what the RAM log holds goes there while the link is down (and each
//! batch appended until it is back), so that a power cut takes none of it; once the link is back,
//! the backlog's batches go first, one at a time, then the RAM log's.

#[cfg(test)]
mod tests;

use embassy_futures::select::{Either, Either3, select, select3};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{Duration, Instant, Timer, with_timeout};
use embedded_io_async::{Read, Write};
use rill_core::batch::BatchHeader;
use rill_core::uplink::Deframer;
pub use rill_core::uplink::{frame_bytes_for, wire_bytes_for};

use crate::backlog::{Backlog, NoBacklog};
use crate::client::UplinkClient;
use crate::node::NodeState;

/// Bytes of a decoded answer (ack or nak) with room to spare: version, tag, two `u32` varints and
/// an option tag, CRC; COBS adds two.
pub const ANSWER_WIRE_BYTES_MAX: usize = 32;

/// The uplink's buffers, which the board sizes for its largest batch.
#[derive(Debug)]
pub struct UplinkBuffers<'b> {
    /// Holds a decoded frame: at least [`frame_bytes_for`] the largest batch.
    pub frame: &'b mut [u8],
    /// Holds the COBS-encoded frame: at least [`wire_bytes_for`] the largest batch.
    pub wire: &'b mut [u8],
    /// Holds one answer being deframed: [`ANSWER_WIRE_BYTES_MAX`].
    pub answer: &'b mut [u8],
}

/// The link took no bytes, or not in time.
struct LinkBroken;

/// Runs the uplink for ever over `rx`/`tx`, without a backlog: while the link is down, batches
/// wait in the RAM log. See [`run_uplink_with`].
pub async fn run_uplink<M, R, W, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    client: &mut UplinkClient<'_>,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    rx: R,
    tx: W,
    buffers: UplinkBuffers<'_>,
) -> !
where
    M: RawMutex,
    R: Read,
    W: Write,
{
    run_uplink_with(client, node, &mut NoBacklog, rx, tx, buffers).await
}

/// Runs the uplink for ever over `rx`/`tx`, moving batches to `backlog` while the link is down.
/// `buffers` must hold frames of the largest batch the batching task builds (see
/// [`frame_bytes_for`]); a frame that does not fit is a sizing bug and panics.
pub async fn run_uplink_with<M, B, R, W, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    client: &mut UplinkClient<'_>,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    backlog: &mut B,
    mut rx: R,
    mut tx: W,
    buffers: UplinkBuffers<'_>,
) -> !
where
    M: RawMutex,
    B: Backlog,
    R: Read,
    W: Write,
{
    let UplinkBuffers { frame, wire, answer } = buffers;
    let mut deframer = Deframer::new(answer);
    let answer_timeout = Duration::from_millis(client.config().answer_timeout_ms);
    let mut read_buf = [0u8; ANSWER_WIRE_BYTES_MAX];
    // Since when frames on the link have waited for an answer, if any wait.
    let mut waiting_since: Option<Instant> = None;
    loop {
        while let Some(retry_at) = client.retry_at() {
            // Down: what RAM holds goes where a power cut cannot take it, and so does each batch
            // appended until the next try.
            spill(client.boot(), node, backlog, frame).await;
            if let Either::First(()) = select(Timer::at(Instant::from_millis(retry_at)), node.appended()).await {
                // Nothing to open on a UART: "connecting" is sending again from the oldest batch
                // not acknowledged.
                client.connected();
                waiting_since = None;
            }
        }
        let now = Instant::now();
        match send_due(client, node, backlog, frame, wire, &mut tx, answer_timeout).await {
            Ok(true) => _ = waiting_since.get_or_insert(now),
            Ok(false) => {}
            Err(LinkBroken) => {
                client.disconnected(Instant::now().as_millis());
                continue;
            }
        }
        let answer_due = async {
            match waiting_since {
                Some(since) => Timer::at(since + answer_timeout).await,
                None => core::future::pending().await,
            }
        };
        match select3(rx.read(&mut read_buf), node.appended(), answer_due).await {
            Either3::First(Ok(n)) if n > 0 => {
                let answered = take_answers(client, node, backlog, &mut deframer, &read_buf[..n]).await;
                if answered {
                    let still_waiting = client.backlog_in_flight() || node.with_log(|log| client.in_flight(log)) > 0;
                    waiting_since = still_waiting.then(Instant::now);
                }
            }
            // The stream ended or failed (a socket closed; a UART reports framing errors).
            Either3::First(_) => client.disconnected(Instant::now().as_millis()),
            Either3::Second(()) => {}
            Either3::Third(()) => client.disconnected(Instant::now().as_millis()),
        }
    }
}

/// Sends what the client allows now: the backlog's oldest batch while it holds any (one at a
/// time; nothing from RAM may pass it), else the RAM log's batches up to the window. Returns
/// whether anything went.
async fn send_due<M, B, W, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    client: &mut UplinkClient<'_>,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    backlog: &mut B,
    frame: &mut [u8],
    wire: &mut [u8],
    tx: &mut W,
    timeout: Duration,
) -> Result<bool, LinkBroken>
where
    M: RawMutex,
    B: Backlog,
    W: Write,
{
    if client.backlog_in_flight() {
        return Ok(false);
    }
    client.set_backlog_dropped(backlog.dropped_records());
    match backlog.oldest().await {
        Ok(Some(spilled)) => {
            let ram_dropped = node.with_log(|log| log.dropped_records());
            let now = Instant::now().as_millis();
            let next = client.next_backlog_frame(&spilled, ram_dropped, now, frame, wire);
            let Some(len) = next.unwrap_or_else(|e| too_small(e)) else { return Ok(false) };
            write_frame(tx, &wire[..len], timeout).await?;
            return Ok(true);
        }
        Ok(None) => {}
        Err(_) => {
            // The backlog may hold batches older than RAM's: those wait for it (the next append
            // or answer tries again), or the gateway would take the older ones for repeats.
            node.count_backlog_error();
            return Ok(false);
        }
    }
    let mut sent = false;
    loop {
        let now = Instant::now().as_millis();
        let next = node.with_log(|log| client.next_frame(log, now, frame, wire));
        let Some(len) = next.unwrap_or_else(|e| too_small(e)) else { return Ok(sent) };
        write_frame(tx, &wire[..len], timeout).await?;
        sent = true;
    }
}

fn too_small(e: rill_core::uplink::EncodeError) -> ! {
    panic!("the uplink's buffers do not hold a frame of the log's batches: {e:?}")
}

/// Writes one frame. A link that stops taking bytes (a gateway that stopped reading, a
/// flow-controlled cable) is as broken as one that stops answering.
async fn write_frame<W: Write>(tx: &mut W, bytes: &[u8], timeout: Duration) -> Result<(), LinkBroken> {
    let sent = with_timeout(timeout, async {
        tx.write_all(bytes).await?;
        tx.flush().await
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok(()),
        _ => Err(LinkBroken),
    }
}

/// Feeds bytes from the gateway to the client: acks release RAM batches, and the ack of the
/// backlog's batch on the link pops it. Returns whether any answer came (the link works).
async fn take_answers<M, B, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    client: &mut UplinkClient<'_>,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    backlog: &mut B,
    deframer: &mut Deframer<&mut [u8]>,
    bytes: &[u8],
) -> bool
where
    M: RawMutex,
    B: Backlog,
{
    let (mut answered, mut to_pop) = (false, None);
    deframer.feed(bytes, |frame| {
        // Frames that do not decode are line noise: the CRC caught it, and a lost answer is made
        // up for by the next one or by the timeout.
        let Ok(frame) = frame else { return };
        answered |= client.is_answer(&frame);
        to_pop = to_pop.or(client.on_backlog_answer(&frame));
        node.with_log(|log| client.on_frame(&frame, log));
    });
    // Popped only now that the gateway holds it; should the pop fail, the batch goes again and
    // the gateway recognises it.
    if let Some((boot, seq)) = to_pop
        && backlog.pop_if(boot, seq).await.is_err()
    {
        node.count_backlog_error();
    }
    answered
}

/// Moves what the RAM log holds to the backlog, oldest first, each batch under the numbers it
/// has (boot, base offset) so that the gateway recognises those it already holds. Stops at the
/// first failure: the rest stays in RAM, behind what went, so the order holds. `scratch` holds a
/// copy of the batch while the flash is written (the log's lock is not held across it).
async fn spill<M, B, const BYTES: usize, const BATCHES: usize, const QUEUE: usize>(
    boot: u32,
    node: &NodeState<M, BYTES, BATCHES, QUEUE>,
    backlog: &mut B,
    scratch: &mut [u8],
) where
    M: RawMutex,
    B: Backlog,
{
    if !backlog.is_durable() {
        return;
    }
    loop {
        let oldest = node.with_log(|log| {
            let batch = log.oldest()?;
            // The log took the batch only after parsing its header.
            let header = BatchHeader::decode(batch).ok()?;
            scratch[..batch.len()].copy_from_slice(batch);
            Some((header.base_offset as u64, header.last_offset() as u64, batch.len()))
        });
        let Some((base, last, len)) = oldest else { return };
        // Base offsets pass u32 only after 4 billion readings in one boot (as in the frames).
        match backlog.push(boot, base as u32, &scratch[..len]).await {
            // Should the log have dropped it meanwhile (full), this releases nothing newer.
            Ok(()) => node.spilled(last),
            Err(_) => {
                node.count_backlog_error();
                return;
            }
        }
    }
}
