//! The device listener: sensor nodes (`firmware/`) send uplink frames (`rill_core::uplink`) over
//! TCP, or over a serial line to one of the gateway's own UARTs (see [`serial`]). Each data
//! frame's batch is appended, as the device built it, to the configured topic (the partition
//! chosen from the device id, as Kafka's default partitioner does for a key, or by a partitioner
//! plugin, see [`partitioning`]), and
//! acknowledged once durable whatever the node's durability policy. A frame sent again after a
//! lost ack — the same device, boot and sequence — is acknowledged again, not stored twice: the
//! last stored (boot, sequence) of each device is written in the same transaction as its batch.
//!
//! Timestamps of a device without a wall clock (`Clock::SinceBoot`) are moved to wall time by
//! the rule in `rill_core::uplink` (arrival minus the frame's age on the device's clock): only the
//! batch header's base and max timestamps change, the records keep their bytes. A batch the
//! gateway cannot store (not a valid v2 batch, a control batch, larger than the topic takes,
//! times that do not map) goes to `<topic>.dlq` with why, and is acknowledged: the device moves on
//! and the bytes are kept.

mod errors;
pub mod metrics;
mod partitioning;
pub mod serial;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rill_core::batch::{self, Batch, BatchHeader, BatchParams, BuildError, RecordSpec};
use rill_core::uplink::{self, DataFrame, Deframer, Frame, UPLINK_FRAME_BYTES_MAX, UPLINK_WIRE_BYTES_MAX};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::limits::{
    DEVICE_CONNECTIONS_MAX, DEVICE_FRAME_ERRORS_MAX, DEVICE_FRAME_TIMEOUT, DEVICE_FRAMES_QUEUED, DEVICE_IDLE_TIMEOUT,
    DEVICES_MAX,
};
use crate::listener::{Accepted, accept_within};
use crate::plugins::PluginCatalog;
use crate::plugins::StageSpec;
use crate::storage::{AppendError, DocumentWrite, Documents, DurabilityPolicy, StorageError, Store, TopicConfig};
pub use errors::{BadBatch, ConnectionEnd, PartitionRefusal};
use partitioning::{Append, NoPartition, Partitioning};

/// `[devices]`: where sensor nodes connect, and where their readings go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesSection {
    /// The TCP listener for uplink frames; off when absent. Port 0 picks one (logged).
    pub listen: Option<SocketAddr>,
    /// The topic readings are appended to (made when missing).
    pub topic: String,
    /// Its partitions when Rill makes it.
    pub partitions: u32,
    /// Serial ports sensor nodes are wired to (`[[devices.serial]]`), each opened and kept open.
    pub serial: Vec<serial::SerialSpec>,
    /// A partitioner plugin choosing each record's partition (by device id without one).
    pub partitioner: Option<StageSpec>,
}

impl Default for DevicesSection {
    fn default() -> Self {
        DevicesSection { listen: None, topic: "devices".into(), partitions: 1, serial: Vec::new(), partitioner: None }
    }
}

impl DevicesSection {
    pub fn check(&self) -> Result<(), String> {
        for name in [self.topic.clone(), dead_letter_topic(&self.topic)] {
            crate::storage::topic::validate_topic_name(&name).map_err(|e| format!("topic: {e}"))?;
        }
        if !(1..=crate::limits::PARTITIONS_PER_TOPIC_MAX).contains(&self.partitions) {
            return Err(format!("partitions: must be 1..={}", crate::limits::PARTITIONS_PER_TOPIC_MAX));
        }
        if self.partitioner.as_ref().is_some_and(|stage| stage.plugin.is_empty()) {
            return Err("partitioner: the plugin has no name".into());
        }
        serial::check(&self.serial)
    }

    /// Whether devices are taken at all (over TCP or a serial port).
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || !self.serial.is_empty()
    }
}

fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// The storage kind of a device's last stored (boot, sequence), named after the device.
const PROGRESS_KIND: &str = "device-progress";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    boot: u32,
    seq: u32,
}

/// What the gateway knows of one device, for `/metrics` and the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub device: String,
    /// Open connections speaking for the device (two while a reconnect overlaps the old one).
    pub connections: u32,
    /// Frames taken: stored, or dead-lettered.
    pub frames: u64,
    pub records: u64,
    pub bytes: u64,
    /// Frames received again (after a lost ack) and acknowledged without storing.
    pub duplicates: u64,
    /// Frames that came after one lost on the way, answered with a nak (sent again).
    pub gaps: u64,
    /// Batches that could not be stored, kept in the dead-letter topic.
    pub refused: u64,
    /// Records the device says it dropped this boot, its log full.
    pub dropped_by_device: u64,
    pub boot: u32,
    pub last_seq: u32,
    pub last_seen_ms: i64,
}

/// How the device listener is set up and how its serial ports are doing, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerStatus {
    /// Whether `[devices]` takes devices at all (over TCP or a serial port).
    pub enabled: bool,
    /// The TCP address bound (the port chosen when 0 was asked for).
    pub listen: Option<SocketAddr>,
    pub topic: String,
    pub partitions: u32,
    /// The partitioner plugin (`name@version`); by device id without one.
    pub partitioner: Option<String>,
    pub serial: Vec<SerialPortStatus>,
}

impl ListenerStatus {
    /// `[devices]` takes no devices: what it would use if it did.
    pub fn disabled() -> ListenerStatus {
        let section = DevicesSection::default();
        ListenerStatus {
            enabled: false,
            listen: None,
            topic: section.topic,
            partitions: section.partitions,
            partitioner: None,
            serial: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialPortStatus {
    pub path: String,
    pub baud: u32,
    pub open: bool,
    /// Why the port last closed or could not be opened.
    pub last_error: Option<String>,
}

/// A device's progress, behind a lock of its own.
type DeviceLock = Arc<tokio::sync::Mutex<Option<Progress>>>;

/// The devices side of a node, shared by its connections.
#[derive(Debug)]
pub struct Devices {
    store: Store,
    section: DevicesSection,
    /// Per device, the last (boot, sequence) stored. Its lock serialises the device's frames
    /// across its connections (a reconnect may overlap the old connection's last frame) without
    /// making other devices wait. At most [`DEVICES_MAX`] devices.
    progress: Mutex<HashMap<String, DeviceLock>>,
    status: Mutex<BTreeMap<String, DeviceStatus>>,
    partitioning: Partitioning,
    /// The TCP address bound, once bound.
    bound: Mutex<Option<SocketAddr>>,
    /// Each serial port's state, in `[[devices.serial]]` order.
    serial: Mutex<Vec<SerialPortStatus>>,
}

/// Why a frame's batch was not stored.
enum Refusal {
    /// The batch itself: it goes to the dead-letter topic.
    Batch(AppendError),
    /// Storage: the connection closes, and the device sends the frame again.
    Storage(ConnectionEnd),
    /// Free space is under the reserve: the frame is not stored, the device is answered `Nak`
    /// with what is held (it keeps the frame and sends it again later), the connection stays.
    NoSpace(AppendError),
}

impl Devices {
    fn new(store: Store, section: DevicesSection, catalog: PluginCatalog) -> std::io::Result<Devices> {
        // Without what was stored, repeats would be stored again: no listener rather than that.
        let stored = store.resources(PROGRESS_KIND).map_err(std::io::Error::other)?;
        let mut progress = HashMap::new();
        for (device, document) in stored {
            match serde_json::from_slice::<Progress>(&document) {
                Ok(stored) => {
                    progress.insert(device, Arc::new(tokio::sync::Mutex::new(Some(stored))));
                }
                Err(e) => tracing::warn!(%device, error = %e, "device progress does not decode; it starts afresh"),
            }
        }
        let partitioning = Partitioning::new(catalog, section.partitioner.clone());
        let serial = section
            .serial
            .iter()
            .map(|spec| SerialPortStatus {
                path: spec.path.display().to_string(),
                baud: spec.baud,
                open: false,
                last_error: None,
            })
            .collect();
        Ok(Devices {
            store,
            section,
            progress: Mutex::new(progress),
            status: Mutex::default(),
            partitioning,
            bound: Mutex::new(None),
            serial: Mutex::new(serial),
        })
    }

    pub fn status(&self) -> Vec<DeviceStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn listener_status(&self) -> ListenerStatus {
        ListenerStatus {
            enabled: true,
            listen: *self.bound.lock().unwrap_or_else(|p| p.into_inner()),
            topic: self.section.topic.clone(),
            partitions: self.section.partitions,
            partitioner: self.section.partitioner.as_ref().map(StageSpec::label),
            serial: self.serial.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Records serial port `path`'s state.
    fn serial_port(&self, path: &str, open: bool, error: Option<String>) {
        let mut ports = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(port) = ports.iter_mut().find(|port| port.path == path) {
            port.open = open;
            if error.is_some() {
                port.last_error = error;
            }
        }
    }

    fn update(&self, device: &str, change: impl FnOnce(&mut DeviceStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = status
            .entry(device.to_owned())
            .or_insert_with(|| DeviceStatus { device: device.to_owned(), ..DeviceStatus::default() });
        change(entry);
    }

    /// The lock over `device`'s progress; `None` past [`DEVICES_MAX`] devices.
    fn device(&self, device: &str) -> Option<DeviceLock> {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = progress.get(device) {
            return Some(Arc::clone(lock));
        }
        if progress.len() >= DEVICES_MAX {
            return None;
        }
        let lock = DeviceLock::default();
        progress.insert(device.to_owned(), Arc::clone(&lock));
        Some(lock)
    }

    /// Stores one data frame (unless it is a repeat) and returns the ack to send.
    async fn accept(&self, frame: OwnedData) -> Result<Frame<'static>, ConnectionEnd> {
        let arrival_ms = frame.arrival_ms;
        let Some(lock) = self.device(&frame.device) else {
            return Err(ConnectionEnd::TooManyDevices { device: frame.device, max: DEVICES_MAX });
        };
        let mut progress = lock.lock().await;
        let held = progress.filter(|last| last.boot == frame.boot).map(|last| last.seq);
        if let Some(seq) = held.filter(|&seq| frame.seq <= seq) {
            self.update(&frame.device, |s| s.duplicates += 1);
            return Ok(Frame::Ack { boot: frame.boot, seq });
        }
        // The device still holds a batch before this one that is not here: its frame was lost on
        // the way. An ack of this one would cover it; ask for what follows what is here instead.
        if frame.prev.is_some_and(|prev| held.is_none_or(|seq| prev > seq)) {
            self.update(&frame.device, |s| s.gaps += 1);
            return Ok(Frame::Nak { boot: frame.boot, after: held });
        }
        let stored = Progress { boot: frame.boot, seq: frame.seq };
        let appends = match stamped(&frame, arrival_ms) {
            Ok((batch, records)) => match self.appends(&frame, batch, records).await {
                Ok(appends) => Ok((appends, records)),
                Err(NoPartition::Refused(reason)) => Err(BadBatch::Partition(reason)),
                // Not acknowledged: the device keeps the frame and sends it again.
                Err(NoPartition::Unavailable(reason)) => return Err(ConnectionEnd::PartitionerUnavailable(reason)),
            },
            Err(reason) => Err(reason),
        };
        let (records, refused) = match appends {
            Ok((appends, records)) => match self.store_frame(&frame, stored, appends).await {
                Ok(()) => (records, false),
                // The store refused the batch itself (a control batch, larger than the topic
                // takes, corrupt compressed records): kept with why, like any bad batch.
                Err(Refusal::Batch(reason)) => {
                    self.store_dead_letter(&frame, stored, &BadBatch::Refused(reason), arrival_ms).await?;
                    (0, true)
                }
                Err(Refusal::Storage(e)) => return Err(e),
                Err(Refusal::NoSpace(_)) => return Ok(Frame::Nak { boot: frame.boot, after: held }),
            },
            Err(reason) => {
                self.store_dead_letter(&frame, stored, &reason, arrival_ms).await?;
                (0, true)
            }
        };
        *progress = Some(stored);
        self.update(&frame.device, |s| {
            s.frames += 1;
            s.records += records;
            s.bytes += frame.batch.len() as u64;
            s.refused += u64::from(refused);
            s.dropped_by_device = u64::from(frame.dropped);
            (s.boot, s.last_seq, s.last_seen_ms) = (frame.boot, frame.seq, arrival_ms);
        });
        Ok(Frame::Ack { boot: stored.boot, seq: stored.seq })
    }

    /// Where a device's good batch goes (see [`partitioning`]).
    async fn appends(&self, frame: &OwnedData, batch: Vec<u8>, records: u64) -> Result<Vec<Append>, NoPartition> {
        let topic = &self.section.topic;
        let partitions = self.store.topic(topic).map_or(self.section.partitions, |t| t.partitions.len() as u32);
        self.partitioning.appends(topic, partitions, &frame.device, batch, records as usize).await
    }

    async fn store_dead_letter(
        &self,
        frame: &OwnedData,
        stored: Progress,
        reason: &BadBatch,
        arrival_ms: i64,
    ) -> Result<(), ConnectionEnd> {
        tracing::warn!(
            device = %frame.device, boot = frame.boot, seq = frame.seq, %reason,
            "device batch refused: kept in the dead-letter topic"
        );
        let letter = dead_letter(frame, &reason.to_string(), arrival_ms).map_err(ConnectionEnd::DeadLetterBuild)?;
        let letter = (dead_letter_topic(&self.section.topic), 0, letter);
        self.store_frame(frame, stored, vec![letter]).await.map_err(|refusal| match refusal {
            Refusal::Batch(e) => ConnectionEnd::DeadLetterRefused(e),
            Refusal::Storage(e) => e,
            // Rare (a bad batch while the disk is nearly full): the device sends it again later.
            Refusal::NoSpace(e) => ConnectionEnd::Storage(e),
        })
    }

    /// Appends `appends` and the device's new progress in one transaction, durably: the ack
    /// follows, and the device deletes on it.
    async fn store_frame(&self, frame: &OwnedData, stored: Progress, appends: Vec<Append>) -> Result<(), Refusal> {
        let document = progress_document(stored);
        let write = DocumentWrite { kind: PROGRESS_KIND.into(), name: frame.device.clone(), document: Some(document) };
        // One topic per frame: the readings' or the dead letters'.
        if let Some((topic, _, _)) = appends.first() {
            let partitions = if *topic == self.section.topic { self.section.partitions } else { 1 };
            self.store
                .topic_or_create(topic, partitions, TopicConfig::default())
                .await
                .map_err(|e| Refusal::Storage(ConnectionEnd::Topic(e)))?;
        }
        // A reopen after an IO error drops commits not yet synced: none of ours may be acked.
        let generation = self.store.generation();
        let documents = Documents(Box::new(move |_| vec![write]));
        match self.store.transact(appends, documents, Some(generation)).await {
            Ok(_) => {}
            Err(
                e @ (AppendError::InvalidBatch(_)
                | AppendError::MessageTooLarge { .. }
                | AppendError::InvalidTimestamp { .. }
                | AppendError::Log(_)),
            ) => {
                return Err(Refusal::Batch(e));
            }
            Err(e @ AppendError::Storage(StorageError::NoSpace(_))) => return Err(Refusal::NoSpace(e)),
            Err(e) => return Err(Refusal::Storage(ConnectionEnd::Storage(e))),
        }
        if self.store.durability() != DurabilityPolicy::EveryCommit {
            self.store.flush().await.map_err(|e| Refusal::Storage(ConnectionEnd::Storage(e)))?;
        }
        if self.store.generation() != generation {
            return Err(Refusal::Storage(ConnectionEnd::Reopened));
        }
        Ok(())
    }
}

/// A data frame, owned (the deframer's buffer is reused).
#[derive(Debug, Clone)]
struct OwnedData {
    device: String,
    boot: u32,
    seq: u32,
    prev: Option<u32>,
    dropped: u32,
    /// When its bytes arrived (wall clock, ms).
    arrival_ms: i64,
    shift_ms: i64,
    batch: Vec<u8>,
}

impl OwnedData {
    fn of(frame: &DataFrame<'_>, arrival_ms: i64) -> OwnedData {
        OwnedData {
            device: frame.device.to_owned(),
            boot: frame.boot,
            seq: frame.seq,
            prev: frame.prev,
            dropped: frame.dropped,
            arrival_ms,
            shift_ms: frame.to_wall_ms(arrival_ms),
            batch: frame.batch.to_vec(),
        }
    }
}

/// How far past its arrival a reading's mapped time may lie (clock drift within one frame).
const FUTURE_TOLERANCE_MS: i64 = 60_000;

/// The frame's batch, checked and with its timestamps on wall time; its records count.
fn stamped(frame: &OwnedData, arrival_ms: i64) -> Result<(Vec<u8>, u64), BadBatch> {
    let parsed = Batch::parse(&frame.batch).map_err(BadBatch::Invalid)?;
    let header = *parsed.header();
    if header.producer_id >= 0 || header.is_control() || header.is_transactional() {
        return Err(BadBatch::NotPlain);
    }
    let records = header.records_count.max(0) as u64;
    if frame.shift_ms == 0 {
        return Ok((frame.batch.clone(), records));
    }
    // Record timestamps are deltas from the base: moving the header's two moves them all.
    let shift = |at: i64| at.checked_add(frame.shift_ms).ok_or(BadBatch::TimestampOverflow);
    let moved = BatchHeader {
        base_timestamp: shift(header.base_timestamp)?,
        max_timestamp: shift(header.max_timestamp)?,
        ..header
    };
    if header.base_timestamp < 0 || moved.max_timestamp > arrival_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err(BadBatch::Unmappable { base: header.base_timestamp, max: header.max_timestamp });
    }
    let mut batch = frame.batch.clone();
    moved.encode(&mut batch).map_err(BadBatch::RestampHeader)?;
    batch::seal_crc(&mut batch).map_err(BadBatch::Restamp)?;
    Ok((batch, records))
}

/// A record holding a refused frame's batch bytes, with headers saying whose and why.
fn dead_letter(frame: &OwnedData, reason: &str, arrival_ms: i64) -> Result<Vec<u8>, BuildError> {
    let (boot, seq) = (frame.boot.to_string(), frame.seq.to_string());
    let headers: [(&[u8], Option<&[u8]>); 4] = [
        (b"rill.device", Some(frame.device.as_bytes())),
        (b"rill.device.boot", Some(boot.as_bytes())),
        (b"rill.device.seq", Some(seq.as_bytes())),
        (b"rill.error", Some(reason.as_bytes())),
    ];
    let spec = RecordSpec {
        timestamp: arrival_ms,
        key: Some(frame.device.as_bytes()),
        value: Some(&frame.batch),
        headers: &headers,
    };
    batch::build_vec(BatchParams::default(), &[spec])
}

/// A device's progress as stored (JSON).
fn progress_document(progress: Progress) -> Vec<u8> {
    // Two integers always serialize.
    serde_json::to_vec(&progress).unwrap_or_default()
}

/// The bound listener: a TCP socket, and the serial ports it keeps open.
#[derive(Debug)]
pub struct DeviceListener {
    listener: Option<TcpListener>,
    devices: Arc<Devices>,
}

impl DeviceListener {
    /// Binds `[devices] listen` when set; the serial ports open when it runs. Partitioner
    /// plugins come from `catalog`.
    pub async fn bind(
        store: Store,
        section: DevicesSection,
        catalog: PluginCatalog,
    ) -> std::io::Result<DeviceListener> {
        let listener = match section.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let devices = Arc::new(Devices::new(store, section, catalog)?);
        *devices.bound.lock().unwrap_or_else(|p| p.into_inner()) =
            listener.as_ref().map(TcpListener::local_addr).transpose()?;
        Ok(DeviceListener { listener, devices })
    }

    /// The TCP address bound, if any.
    pub fn local_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.listener.as_ref().map(TcpListener::local_addr).transpose()
    }

    pub fn devices(&self) -> Arc<Devices> {
        Arc::clone(&self.devices)
    }

    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        let mut connections = tokio::task::JoinSet::new();
        for spec in &self.devices.section.serial {
            let (devices, spec, stopping) = (Arc::clone(&self.devices), spec.clone(), stopping.clone());
            connections.spawn(async move { serial::keep_open(&devices, &spec, stopping).await });
        }
        let Some(listener) = &self.listener else {
            while connections.join_next().await.is_some() {}
            return;
        };
        let slots = Arc::new(Semaphore::new(DEVICE_CONNECTIONS_MAX));
        while let Some(Accepted { socket, peer, permit }) =
            accept_within(listener, &slots, &mut stopping, &mut connections, "devices", || {}).await
        {
            let (devices, stopping) = (Arc::clone(&self.devices), stopping.clone());
            connections.spawn(async move {
                let _ = socket.set_nodelay(true);
                if let Err(e) = serve_device(&devices, socket, &peer.to_string(), stopping).await {
                    tracing::info!(%peer, error = %e, "device connection closed");
                }
                drop(permit);
            });
        }
        while connections.join_next().await.is_some() {}
    }
}

/// One device connection (a TCP connection, or a serial port while open), named `peer` in the
/// log: frames in, acks out, until the device goes or the node stops.
///
/// Reading runs beside storing: a frame's arrival time is when its bytes came, not when the
/// frame before it became durable, and a since-boot clock is mapped to wall time from it.
async fn serve_device<S: AsyncRead + AsyncWrite>(
    devices: &Devices,
    stream: S,
    peer: &str,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), ConnectionEnd> {
    let (reader, mut writer) = tokio::io::split(stream);
    let (frames, mut queued) = tokio::sync::mpsc::channel(DEVICE_FRAMES_QUEUED);
    let mut connection =
        Connection { scratch: vec![0u8; UPLINK_FRAME_BYTES_MAX], out: vec![0u8; UPLINK_WIRE_BYTES_MAX], device: None };
    let mut answering_stop = stopping.clone();
    let result = {
        let mut reading = std::pin::pin!(read_frames(reader, frames, peer));
        let mut answering = std::pin::pin!(async {
            while let Some(frame) = queued.recv().await {
                connection.answer(devices, &mut writer, frame, &mut answering_stop).await?;
            }
            Ok(())
        });
        tokio::select! {
            // Reading ended (the device closed its side, or the stream failed): what it queued
            // is still stored and acked. Dropping the answering side mid-commit would not stop
            // the commit, but would skip recording its progress, and the frame sent again would
            // be stored twice.
            read = &mut reading => {
                let answered = answering.await;
                read.and(answered)
            }
            answered = &mut answering => answered,
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => Ok(()),
        }
    };
    if let Some(device) = connection.device {
        devices.update(&device, |s| s.connections = s.connections.saturating_sub(1));
    }
    result
}

/// Reads and deframes until the stream ends, queueing each data frame stamped with its arrival.
/// Bad frames are counted, and logged once per read (line noise must not flood the log).
async fn read_frames<R: AsyncRead>(
    mut reader: tokio::io::ReadHalf<R>,
    frames: tokio::sync::mpsc::Sender<OwnedData>,
    peer: &str,
) -> Result<(), ConnectionEnd> {
    let mut deframer = Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]);
    let (mut buf, mut errors) = (vec![0u8; 16 * 1024], 0usize);
    // When the frame being read began: a frame must end within DEVICE_FRAME_TIMEOUT, so that a
    // peer dripping a byte now and then does not hold a connection slot for ever.
    let mut frame_began: Option<tokio::time::Instant> = None;
    loop {
        let deadline = match frame_began {
            Some(began) => began + DEVICE_FRAME_TIMEOUT,
            None => tokio::time::Instant::now() + DEVICE_IDLE_TIMEOUT,
        };
        let n = match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) if frame_began.is_some() => return Err(ConnectionEnd::FrameTimeout(DEVICE_FRAME_TIMEOUT)),
            Err(_) => return Err(ConnectionEnd::Idle(DEVICE_IDLE_TIMEOUT)),
        };
        // Frames end with 0x00: a read that does not leaves one unfinished.
        frame_began = match buf[n - 1] {
            0 => None,
            _ => frame_began.or_else(|| Some(tokio::time::Instant::now())),
        };
        let arrival_ms = crate::clock::now_ms();
        let (mut complete, mut first_error, mut bad) = (Vec::new(), None, 0);
        deframer.feed(&buf[..n], |frame| match frame {
            Ok(Frame::Data(data)) => complete.push(OwnedData::of(&data, arrival_ms)),
            Ok(Frame::Ack { .. } | Frame::Nak { .. }) => {}
            Err(e) => {
                bad += 1;
                first_error.get_or_insert(e);
            }
        });
        // Bad frames in a row: a good one shows the peer speaks the uplink (a serial line
        // open for months gathers some noise).
        if !complete.is_empty() {
            errors = 0;
        }
        if let Some(e) = first_error {
            errors += bad;
            tracing::warn!(%peer, error = %e, errors = bad, "uplink frames dropped");
            if errors > DEVICE_FRAME_ERRORS_MAX {
                return Err(ConnectionEnd::NotUplink(errors));
            }
        }
        for frame in complete {
            if frames.send(frame).await.is_err() {
                return Ok(()); // answering ended, with its reason
            }
        }
    }
}

/// A connection's answering side: its buffers, and the device it speaks for.
struct Connection {
    scratch: Vec<u8>,
    out: Vec<u8>,
    /// The device the connection speaks for: the one its first frame names.
    device: Option<String>,
}

impl Connection {
    /// Stores `frame` and sends its ack.
    async fn answer<S: AsyncWrite + Unpin>(
        &mut self,
        devices: &Devices,
        stream: &mut S,
        frame: OwnedData,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<(), ConnectionEnd> {
        match &self.device {
            None => {
                devices.update(&frame.device, |s| s.connections += 1);
                self.device = Some(frame.device.clone());
            }
            Some(named) if *named != frame.device => {
                return Err(ConnectionEnd::MixedDevices { first: named.clone(), other: frame.device });
            }
            Some(_) => {}
        }
        let ack = devices.accept(frame).await?;
        let len = uplink::encode(&ack, &mut self.scratch, &mut self.out).map_err(ConnectionEnd::Encode)?;
        tokio::select! {
            written = tokio::time::timeout(DEVICE_IDLE_TIMEOUT, stream.write_all(&self.out[..len])) => match written {
                Ok(written) => written.map_err(ConnectionEnd::Io),
                Err(_) => Err(ConnectionEnd::AckTimeout(DEVICE_IDLE_TIMEOUT)),
            },
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::{ConnectionEnd, read_frames};

    /// A byte every 15 s keeps the idle timeout from firing, but the frame they make never ends:
    /// the connection closes after DEVICE_FRAME_TIMEOUT.
    #[tokio::test(start_paused = true)]
    async fn a_frame_dripped_too_slowly_closes_the_connection() {
        let (mut peer, gateway) = tokio::io::duplex(1024);
        let (reader, _writer) = tokio::io::split(gateway);
        let (frames, _queued) = tokio::sync::mpsc::channel(4);
        let reading = tokio::spawn(read_frames(reader, frames, "test"));
        for _ in 0..10 {
            let _ = peer.write_all(&[0x17]).await;
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
        let closed = reading.await.unwrap();
        assert!(matches!(closed, Err(ConnectionEnd::FrameTimeout(_))), "{closed:?}");
    }

    /// While free space is under the reserve a frame is not stored: the device is answered `Nak`
    /// with what the gateway holds (it keeps the frame) and stays connected; once space is back
    /// the same frame is stored and acknowledged.
    #[tokio::test]
    async fn a_frame_refused_for_lack_of_space_is_nakked_then_stored_once_space_is_back() {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

        use crate::plugins::{PluginCatalog, PluginRuntime};
        use crate::records::{OwnedRecord, build_batches};
        use crate::storage::fault::SimDisk;
        use crate::storage::{FsSpace, Location, SpaceProbe, Store, StoreConfig};
        use rill_core::uplink::Frame;

        let available = std::sync::Arc::new(AtomicU64::new(0));
        let reading = available.clone();
        let probe = SpaceProbe::new(move || Ok(FsSpace { available: reading.load(Relaxed), total: 1 << 30 }));
        let config = StoreConfig { space_probe: Some(probe), ..StoreConfig::default() };
        let store = Store::open(Location::Backend(SimDisk::new().factory()), config).unwrap();
        let catalog = PluginCatalog::new(PluginRuntime::new().unwrap(), store.clone(), None);
        let devices = super::Devices::new(store.clone(), super::DevicesSection::default(), catalog).unwrap();
        let now = crate::clock::now_ms();
        let record =
            OwnedRecord { offset: 0, timestamp: now, key: None, value: Some(b"21.5".to_vec()), headers: vec![] };
        let frame = || super::OwnedData {
            device: "node-1".into(),
            boot: 7,
            seq: 0,
            prev: None,
            dropped: 0,
            arrival_ms: now,
            shift_ms: 0,
            batch: build_batches(std::slice::from_ref(&record)).unwrap(),
        };
        let answer = devices.accept(frame()).await.expect("the connection stays");
        assert_eq!(answer, Frame::Nak { boot: 7, after: None });
        assert_eq!(store.topic("devices").map(|t| t.partitions[0].offsets().high_watermark), Some(0));
        available.store(1 << 30, Relaxed);
        let answer = devices.accept(frame()).await.expect("stored");
        assert_eq!(answer, Frame::Ack { boot: 7, seq: 0 });
        store.shutdown().await;
    }
}
