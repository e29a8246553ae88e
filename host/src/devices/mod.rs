//! The device listener: sensor nodes (`firmware/`) send uplink frames (`rill_core::uplink`) over
//! TCP. Each data frame's batch is appended, as the device built it, to the configured topic (the
//! partition chosen from the device id, as Kafka's default partitioner does for a key), and
//! acknowledged once durable whatever the node's durability policy. A frame sent again after a
//! lost ack — the same device, boot and sequence — is acknowledged again, not stored twice: the
//! last stored (boot, sequence) of each device is written in the same transaction as its batch.
//!
//! Timestamps of a device without a wall clock (`Clock::SinceBoot`) are moved to wall time by
//! the rule in `rill_core::uplink` (arrival minus the frame's age on the device's clock): only the
//! batch header's base and max timestamps change, the records keep their bytes. A batch that is
//! not a valid v2 batch goes to `<topic>.dlq` with why, and is acknowledged: the device moves on
//! and nothing is lost.

pub mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rill_core::batch::{self, Batch, BatchHeader, BatchParams, RecordSpec};
use rill_core::uplink::{self, DataFrame, Deframer, Frame, UPLINK_FRAME_BYTES_MAX, UPLINK_WIRE_BYTES_MAX};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::limits::{DEVICE_CONNECTIONS_MAX, DEVICE_IDLE_TIMEOUT};
use crate::storage::{DocumentWrite, Documents, DurabilityPolicy, Store, TopicConfig};

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
}

impl Default for DevicesSection {
    fn default() -> Self {
        DevicesSection { listen: None, topic: "devices".into(), partitions: 1 }
    }
}

impl DevicesSection {
    pub fn check(&self) -> Result<(), String> {
        let valid = !self.topic.is_empty()
            && self.topic.len() <= 240
            && self.topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(format!("topic: {:?} is not a topic name", self.topic));
        }
        if !(1..=crate::limits::PARTITIONS_PER_TOPIC_MAX).contains(&self.partitions) {
            return Err(format!("partitions: must be 1..={}", crate::limits::PARTITIONS_PER_TOPIC_MAX));
        }
        Ok(())
    }
}

/// The storage kind of a device's last stored (boot, sequence), named after the device.
const PROGRESS_KIND: &str = "device-progress";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    boot: u32,
    seq: u32,
}

/// What the gateway knows of one device, for `/metrics` and the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    pub device: String,
    pub connected: bool,
    pub frames: u64,
    pub records: u64,
    pub bytes: u64,
    /// Frames received again (after a lost ack) and acknowledged without storing.
    pub duplicates: u64,
    /// Batches that were not valid, sent to the dead-letter topic.
    pub refused: u64,
    /// Records the device says it dropped this boot, its log full.
    pub dropped_by_device: u64,
    pub boot: u32,
    pub last_seq: u32,
    pub last_seen_ms: i64,
}

/// The devices side of a node, shared by its connections.
#[derive(Debug)]
pub struct Devices {
    store: Store,
    section: DevicesSection,
    /// Per device, the last (boot, sequence) stored; serialises a device's frames across its
    /// connections (a reconnect may overlap the old connection's last frame).
    progress: tokio::sync::Mutex<HashMap<String, Progress>>,
    status: Mutex<BTreeMap<String, DeviceStatus>>,
}

impl Devices {
    fn new(store: Store, section: DevicesSection) -> Devices {
        let mut progress = HashMap::new();
        for (device, document) in store.resources(PROGRESS_KIND).unwrap_or_default() {
            match serde_json::from_slice::<Progress>(&document) {
                Ok(stored) => {
                    progress.insert(device, stored);
                }
                Err(e) => tracing::warn!(%device, error = %e, "device progress does not decode; it starts afresh"),
            }
        }
        Devices { store, section, progress: tokio::sync::Mutex::new(progress), status: Mutex::default() }
    }

    pub fn status(&self) -> Vec<DeviceStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn update(&self, device: &str, change: impl FnOnce(&mut DeviceStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = status
            .entry(device.to_owned())
            .or_insert_with(|| DeviceStatus { device: device.to_owned(), ..DeviceStatus::default() });
        change(entry);
    }

    /// Stores one data frame (unless it is a repeat) and returns the ack to send.
    async fn accept(&self, frame: OwnedData, arrival_ms: i64) -> Result<Frame<'static>, String> {
        let mut progress = self.progress.lock().await;
        let last = progress.get(&frame.device).copied();
        if let Some(last) = last.filter(|last| last.boot == frame.boot && frame.seq <= last.seq) {
            self.update(&frame.device, |s| s.duplicates += 1);
            return Ok(Frame::Ack { boot: last.boot, seq: last.seq });
        }
        let topic = &self.section.topic;
        let (appended_to, records, refused) = match stamped(&frame) {
            Ok((batch, records)) => {
                let partitions = self.store.topic(topic).map_or(self.section.partitions, |t| t.partitions.len() as u32);
                let partition = rill_core::partitioner::partition_for_key(frame.device.as_bytes(), partitions)
                    .map_err(|e| e.to_string())?;
                ((topic.clone(), partition, batch), records, false)
            }
            Err(reason) => {
                tracing::warn!(device = %frame.device, boot = frame.boot, seq = frame.seq, %reason, "device batch refused: sent to the dead-letter topic");
                ((format!("{topic}.dlq"), 0, dead_letter(&frame, &reason, arrival_ms)?), 0, true)
            }
        };
        let stored = Progress { boot: frame.boot, seq: frame.seq };
        let document = serde_json::to_vec(&stored).map_err(|e| e.to_string())?;
        let write = DocumentWrite { kind: PROGRESS_KIND.into(), name: frame.device.clone(), document: Some(document) };
        self.store
            .topic_or_create(&appended_to.0, self.section.partitions.max(1), TopicConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .transact(vec![appended_to], Documents(Box::new(move |_| vec![write])), None)
            .await
            .map_err(|e| e.to_string())?;
        // Acknowledged means durable, whatever the node's policy: the device deletes on it.
        if self.store.durability() != DurabilityPolicy::EveryCommit {
            self.store.flush().await.map_err(|e| e.to_string())?;
        }
        progress.insert(frame.device.clone(), stored);
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
}

/// A data frame, owned (the deframer's buffer is reused).
#[derive(Debug, Clone)]
struct OwnedData {
    device: String,
    boot: u32,
    seq: u32,
    dropped: u32,
    shift_ms: i64,
    batch: Vec<u8>,
}

impl OwnedData {
    fn of(frame: &DataFrame<'_>, arrival_ms: i64) -> OwnedData {
        OwnedData {
            device: frame.device.to_owned(),
            boot: frame.boot,
            seq: frame.seq,
            dropped: frame.dropped,
            shift_ms: frame.to_wall_ms(arrival_ms),
            batch: frame.batch.to_vec(),
        }
    }
}

/// The frame's batch, checked and with its timestamps on wall time; its records count.
fn stamped(frame: &OwnedData) -> Result<(Vec<u8>, u64), String> {
    let parsed = Batch::parse(&frame.batch).map_err(|e| format!("not a valid record batch: {e}"))?;
    let header = *parsed.header();
    if header.producer_id >= 0 {
        return Err("a device batch carries no producer id".into());
    }
    let records = header.records_count.max(0) as u64;
    if frame.shift_ms == 0 {
        return Ok((frame.batch.clone(), records));
    }
    // Record timestamps are deltas from the base: moving the header's two moves them all.
    let shift = |at: i64| at.checked_add(frame.shift_ms).ok_or("a timestamp out of range once on wall time");
    let moved = BatchHeader {
        base_timestamp: shift(header.base_timestamp)?,
        max_timestamp: shift(header.max_timestamp)?,
        ..header
    };
    let mut batch = frame.batch.clone();
    moved.encode(&mut batch).map_err(|e| e.to_string())?;
    batch::seal_crc(&mut batch).map_err(|e| e.to_string())?;
    Ok((batch, records))
}

/// A record holding a refused frame's batch bytes, with headers saying whose and why.
fn dead_letter(frame: &OwnedData, reason: &str, arrival_ms: i64) -> Result<Vec<u8>, String> {
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
    batch::build_vec(BatchParams::default(), &[spec]).map_err(|e| e.to_string())
}

/// The bound listener.
#[derive(Debug)]
pub struct DeviceListener {
    listener: TcpListener,
    devices: Arc<Devices>,
}

impl DeviceListener {
    pub async fn bind(store: Store, section: DevicesSection, addr: SocketAddr) -> std::io::Result<DeviceListener> {
        let listener = TcpListener::bind(addr).await?;
        Ok(DeviceListener { listener, devices: Arc::new(Devices::new(store, section)) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn devices(&self) -> Arc<Devices> {
        Arc::clone(&self.devices)
    }

    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(DEVICE_CONNECTIONS_MAX));
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            tracing::warn!(%peer, limit = DEVICE_CONNECTIONS_MAX, "device connection refused: too many");
                            continue;
                        };
                        let devices = Arc::clone(&self.devices);
                        let stopping = stopping.clone();
                        connections.spawn(async move {
                            if let Err(e) = serve_device(&devices, stream, stopping).await {
                                tracing::info!(%peer, error = %e, "device connection closed");
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "device accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stopping.changed() => break,
            }
        }
        while connections.join_next().await.is_some() {}
    }
}

/// One device connection: frames in, acks out, until the device goes or the node stops.
async fn serve_device(
    devices: &Devices,
    mut stream: TcpStream,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut deframer = Deframer::new(vec![0u8; UPLINK_WIRE_BYTES_MAX]);
    let mut read = vec![0u8; 16 * 1024];
    let (mut scratch, mut out) = (vec![0u8; UPLINK_FRAME_BYTES_MAX], vec![0u8; UPLINK_WIRE_BYTES_MAX]);
    let mut seen = Vec::new();
    let result = loop {
        let n = tokio::select! {
            n = tokio::time::timeout(DEVICE_IDLE_TIMEOUT, stream.read(&mut read)) => match n {
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => break Err(e.to_string()),
                Err(_) => break Err(format!("nothing for {DEVICE_IDLE_TIMEOUT:?}")),
            },
            _ = stopping.changed() => break Ok(()),
        };
        let arrival_ms = crate::clock::now_ms();
        let mut frames = Vec::new();
        deframer.feed(&read[..n], |frame| match frame {
            Ok(Frame::Data(data)) => frames.push(OwnedData::of(&data, arrival_ms)),
            Ok(Frame::Ack { .. }) => tracing::debug!("an ack from a device: ignored"),
            Err(e) => tracing::warn!(error = %e, "uplink frame dropped"),
        });
        for frame in frames {
            if !seen.contains(&frame.device) {
                devices.update(&frame.device, |s| s.connected = true);
                seen.push(frame.device.clone());
            }
            let ack = devices.accept(frame, arrival_ms).await?;
            let len = uplink::encode(&ack, &mut scratch, &mut out).map_err(|e| e.to_string())?;
            match tokio::time::timeout(DEVICE_IDLE_TIMEOUT, stream.write_all(&out[..len])).await {
                Ok(written) => written.map_err(|e| e.to_string())?,
                Err(_) => return Err(format!("an ack not taken for {DEVICE_IDLE_TIMEOUT:?}")),
            }
        }
    };
    for device in seen {
        devices.update(&device, |s| s.connected = false);
    }
    result
}
