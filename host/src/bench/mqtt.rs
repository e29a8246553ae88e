//! `rill bench mqtt`: sustained ingest from an MQTT broker into Rill, beside the same broker's
//! delivery to a plain subscriber that discards messages, in the same run.
//!
//! A private mosquitto (the machine's `mosquitto`, on a free loopback port) gets `--messages`
//! SenML packs (~60 B) from one publisher (QoS as the case says, 100 in flight). The baseline is
//! a rumqttc subscriber with the same QoS that counts and drops them; the Rill case is a bridge in
//! this process (the `senml` ingest plugin, murmur2 partitioning, one transaction per batch,
//! fsync before acknowledging: durability class "fsync before ack") into a fresh store. Each
//! case measures from the first publish to the last message received (baseline) or stored
//! (Rill); medians of `--repeat` runs. Target: Rill ≥ 0.9× the plain delivery rate.
//!
//! Latency: a publisher paces QoS 1 packs at 1k messages/s, each carrying its send time; the
//! plain subscriber notes when it receives each, Rill when the partition's high watermark (what
//! Kafka consumers may read) passes each record; beside them, fdatasync of small appends in the
//! same directory. Target: Rill p99 ≤ 2 × plain p99 + fdatasync p99.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use sha2::{Digest, Sha256};

use crate::mqtt::{BridgeSpec, Bridges, Subscription};
use crate::plugins::StageSpec;
use crate::plugins::{PluginArtifact, PluginCatalog, PluginRuntime, catalog};
use crate::storage::{Blob, Location, PutMode, Store, StoreConfig};

#[derive(Debug, Args)]
pub struct MqttArgs {
    /// Directory of the built components (`cargo xtask plugins` writes them to
    /// `<target dir>/plugins`); the `senml` plugin is used.
    #[arg(long, default_value = "plugins/target/plugins")]
    plugins: PathBuf,
    /// Messages per case.
    #[arg(long, default_value_t = 50_000)]
    messages: u64,
    /// Seconds of paced publishing (1k messages/s) per latency case.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Repetitions per case; the table reports medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A short run, to check that the benchmark still works (CI).
    #[arg(long)]
    quick: bool,
    /// The mosquitto binary.
    #[arg(long, default_value = "mosquitto")]
    mosquitto: PathBuf,
    /// Also write the markdown table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A directory under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rill-bench-mqtt-{}-{what}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private mosquitto for the run.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: Scratch,
}

impl Mosquitto {
    fn start(program: &std::path::Path) -> Result<Mosquitto, String> {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let dir = Scratch::new("mosquitto")?;
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000000\n\
             max_queued_bytes 0\nmax_inflight_messages 100\nlog_dest none\nuser root\n"
        );
        let path = dir.0.join("mosquitto.conf");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let program = if program.as_os_str() == "mosquitto" && std::path::Path::new("/usr/sbin/mosquitto").exists() {
            PathBuf::from("/usr/sbin/mosquitto")
        } else {
            program.to_owned()
        };
        let child = Command::new(&program)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {} (Debian: apt-get install mosquitto): {e}", program.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("mosquitto did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Mosquitto { child, port, _dir: dir })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pack(n: u64) -> String {
    format!("[{{\"bn\":\"urn:dev:d{}:\",\"n\":\"temp\",\"u\":\"Cel\",\"v\":{}}}]", n % 100, n % 40)
}

/// Publishes `count` packs to `prefix/d<i>` and returns once the broker has them all.
async fn publish(port: u16, client_id: &str, prefix: &str, count: u64, qos: QoS) -> Result<(), String> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let prefix = prefix.to_owned();
    let sender = tokio::spawn(async move {
        for n in 0..count {
            let topic = format!("{prefix}/d{}", n % 100);
            if client.publish(topic, qos, false, pack(n)).await.is_err() {
                break;
            }
        }
        client
    });
    let mut done = 0;
    while done < count {
        match eventloop.poll().await.map_err(|e| e.to_string())? {
            Event::Incoming(Packet::PubAck(_)) if qos == QoS::AtLeastOnce => done += 1,
            Event::Outgoing(Outgoing::Publish(_)) if qos == QoS::AtMostOnce => done += 1,
            _ => {}
        }
    }
    let client = sender.await.map_err(|e| e.to_string())?;
    let _ = client.disconnect().await;
    // Let the disconnect leave.
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    Ok(())
}

/// Messages per second through a subscriber that counts and drops them.
async fn plain(port: u16, run: usize, count: u64, qos: QoS) -> Result<f64, String> {
    let prefix = format!("bench/plain/{run}/{}", qos as u8);
    let mut options = MqttOptions::new(format!("bench-plain-{run}-{}", qos as u8), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client.subscribe(format!("{prefix}/+"), qos).await.map_err(|e| e.to_string())?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.map_err(|e| e.to_string())? {
            break;
        }
    }
    let started = Instant::now();
    let publisher = tokio::spawn({
        let prefix = prefix.clone();
        async move { publish(port, &format!("bench-pub-plain-{run}"), &prefix, count, qos).await }
    });
    let mut received = 0;
    let mut last = started;
    while received < count {
        match tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => {
                received += 1;
                last = Instant::now();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            // QoS 0 may lose messages: count what came.
            Err(_) => break,
        }
    }
    publisher.await.map_err(|e| e.to_string())??;
    Ok(received as f64 / last.duration_since(started).as_secs_f64())
}

/// A Rill bridge in this process, into a fresh store (fsync before every ack), subscribed to
/// `prefix/+`.
struct RillCase {
    store: Store,
    bridges: Bridges,
    prefix: String,
    _dir: Scratch,
}

impl RillCase {
    async fn start(port: u16, run: usize, qos: QoS, senml: &[u8]) -> Result<RillCase, String> {
        let dir = Scratch::new("store")?;
        let store = Store::open(Location::Dir(dir.0.clone()), StoreConfig::default()).map_err(|e| e.to_string())?;
        let sha256: String = Sha256::digest(senml).iter().map(|b| format!("{b:02x}")).collect();
        let artifact = PluginArtifact {
            name: "senml".into(),
            version: "bench".into(),
            sha256: sha256.clone(),
            size_bytes: senml.len() as u64,
            uploaded_ms: 0,
        };
        let document = serde_json::to_vec(&artifact).map_err(|e| e.to_string())?;
        let blob = Blob { sha256, bytes: senml.to_vec() };
        store
            .put_resource(catalog::KIND, &catalog::key("senml", "bench"), document, PutMode::Create, Some(blob))
            .await
            .map_err(|e| e.to_string())?;
        let bridges = Bridges::for_store(store.clone(), PluginCatalog::new(PluginRuntime::new()?, store.clone(), None));
        let prefix = format!("bench/rill/{run}/{}", qos as u8);
        let spec = BridgeSpec {
            name: format!("bench-{run}"),
            url: format!("mqtt://127.0.0.1:{port}"),
            version: "3.1.1".into(),
            session_expiry_s: None,
            tls: None,
            client_id: Some(format!("bench-rill-{run}-{}", qos as u8)),
            username: None,
            password: None,
            keep_alive_s: 30,
            subscriptions: vec![Subscription { filter: format!("{prefix}/+"), qos: qos as u8 }],
            target: "bench".into(),
            partitions: 1,
            ingest: StageSpec { plugin: "senml".into(), version: None, config: Default::default() },
            partitioner: None,
            dead_letter_topic: None,
            batch_messages: crate::limits::MQTT_BATCH_MESSAGES_DEFAULT,
            batch_bytes: crate::limits::MQTT_BATCH_BYTES_DEFAULT,
            max_message_bytes: crate::limits::MQTT_MESSAGE_BYTES_DEFAULT,
            batch_window_ms: crate::limits::MQTT_BATCH_WINDOW_MS_DEFAULT,
            dedup: None,
        };
        let name = spec.name.clone();
        bridges.create(spec).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bridges.get(&name).is_some_and(|v| v.status.connected) {
            if Instant::now() > deadline {
                return Err("the bridge did not connect".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The subscription's SubAck follows the ConnAck.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(RillCase { store, bridges, prefix, _dir: dir })
    }

    async fn stop(self) {
        self.bridges.shutdown().await;
        self.store.shutdown().await;
    }
}

/// Messages per second through a Rill bridge into a fresh store (fsync before every ack).
async fn rill(port: u16, run: usize, count: u64, qos: QoS, senml: &[u8]) -> Result<f64, String> {
    let case = RillCase::start(port, run, qos, senml).await?;
    let started = Instant::now();
    let publisher = tokio::spawn({
        let prefix = case.prefix.clone();
        async move { publish(port, &format!("bench-pub-rill-{run}"), &prefix, count, qos).await }
    });
    let store = &case.store;
    let (mut stored, mut last, mut idle_since) = (0, started, Instant::now());
    while stored < count {
        let now = store.topic("bench").map_or(0, |t| t.partitions.iter().map(|p| p.offsets().high_watermark).sum());
        if now > stored {
            (stored, last, idle_since) = (now, Instant::now(), Instant::now());
        } else if idle_since.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    publisher.await.map_err(|e| e.to_string())??;
    case.stop().await;
    Ok(stored as f64 / last.duration_since(started).as_secs_f64())
}

/// The latency pace: one message a millisecond.
const LATENCY_RATE: u64 = 1000;

/// Publishes `count` packs at [`LATENCY_RATE`] with QoS 1, each carrying its send time in
/// microseconds since `epoch` as its value. Returns how far behind its schedule the publisher
/// fell at most (ms): tokio's timer makes that up to a millisecond or so; more means the
/// publisher was held back, and latencies measured from the send hide the wait (coordinated
/// omission).
async fn publish_paced(
    port: u16,
    client_id: String,
    prefix: String,
    count: u64,
    epoch: Instant,
) -> Result<f64, String> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let sender = tokio::spawn(async move {
        let period = 1_000_000 / LATENCY_RATE;
        let mut tick = tokio::time::interval(Duration::from_micros(period));
        let start = epoch.elapsed().as_micros() as u64;
        let mut behind = 0;
        for n in 0..count {
            tick.tick().await;
            let sent = epoch.elapsed().as_micros() as u64;
            behind = behind.max(sent.saturating_sub(start + n * period));
            let pack = format!("[{{\"bn\":\"urn:dev:d{}:\",\"n\":\"sent\",\"v\":{sent}}}]", n % 100);
            if client.publish(format!("{prefix}/d{}", n % 100), QoS::AtLeastOnce, false, pack).await.is_err() {
                break;
            }
        }
        (client, behind)
    });
    let mut acknowledged = 0;
    while acknowledged < count {
        if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await.map_err(|e| e.to_string())? {
            acknowledged += 1;
        }
    }
    let (client, behind) = sender.await.map_err(|e| e.to_string())?;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
    Ok(behind as f64 / 1000.0)
}

/// The send time a pack of [`publish_paced`] carries, from a SenML payload or a stored record's
/// value (`{"n":…,"v":…}`).
fn sent_micros(json: &[u8]) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let record = if value.is_array() { value.get(0)? } else { &value };
    record.get("v")?.as_f64()
}

/// Latencies (ms) from publish to receipt by a plain QoS 1 subscriber.
async fn plain_latency(port: u16, run: usize, count: u64) -> Result<(Vec<f64>, f64), String> {
    let prefix = format!("bench/plain-latency/{run}");
    let mut options = MqttOptions::new(format!("bench-plain-latency-{run}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client.subscribe(format!("{prefix}/+"), QoS::AtLeastOnce).await.map_err(|e| e.to_string())?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = eventloop.poll().await.map_err(|e| e.to_string())? {
            break;
        }
    }
    let epoch = Instant::now();
    let publisher = tokio::spawn(publish_paced(port, format!("bench-pub-plain-latency-{run}"), prefix, count, epoch));
    let mut latencies = Vec::with_capacity(count as usize);
    while (latencies.len() as u64) < count {
        match tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                let now = epoch.elapsed().as_micros() as f64;
                let sent = sent_micros(&publish.payload).ok_or("a paced pack without its send time")?;
                latencies.push((now - sent) / 1000.0);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("the plain subscriber stopped receiving".into()),
        }
    }
    let behind = publisher.await.map_err(|e| e.to_string())??;
    Ok((latencies, behind))
}

/// Latencies (ms) from publish to consumable in Rill: the moment the partition's high watermark
/// (what Kafka consumers may read) passes the record.
async fn rill_latency(port: u16, run: usize, count: u64, senml: &[u8]) -> Result<(Vec<f64>, f64), String> {
    let case = RillCase::start(port, run, QoS::AtLeastOnce, senml).await?;
    let epoch = Instant::now();
    let publisher =
        tokio::spawn(publish_paced(port, format!("bench-pub-rill-latency-{run}"), case.prefix.clone(), count, epoch));
    let store = &case.store;
    // The bridge creates the topic with the first message.
    let mut offsets = loop {
        if let Some(offsets) = store.watch_offsets("bench", 0) {
            break offsets;
        }
        if epoch.elapsed() > Duration::from_secs(10) {
            return Err("no record arrived".into());
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let (mut next, mut latencies) = (0, Vec::with_capacity(count as usize));
    while (latencies.len() as u64) < count {
        let high_watermark = offsets.borrow_and_update().high_watermark;
        let now = epoch.elapsed().as_micros() as f64;
        while next < high_watermark {
            let read = store.read("bench", 0, next, 1024 * 1024).map_err(|e| e.to_string())?;
            for record in crate::records::owned_records(&read.records).map_err(|e| e.to_string())? {
                if record.offset >= next && record.offset < high_watermark {
                    let value = record.value.as_deref().unwrap_or_default();
                    latencies.push((now - sent_micros(value).ok_or("a record without its send time")?) / 1000.0);
                    next = record.offset + 1;
                }
            }
        }
        if (latencies.len() as u64) < count
            && tokio::time::timeout(Duration::from_secs(2), offsets.changed()).await.is_err()
        {
            return Err(format!("Rill stopped storing after {} records", latencies.len()));
        }
    }
    let behind = publisher.await.map_err(|e| e.to_string())??;
    case.stop().await;
    Ok((latencies, behind))
}

/// fdatasync latencies (ms) of small appends to a file in the temporary directory (where the
/// stores live): the floor of "fsync before ack".
fn fdatasync_latencies(count: usize) -> Result<Vec<f64>, String> {
    use std::io::Write as _;
    let dir = Scratch::new("fdatasync")?;
    let mut file = std::fs::File::create(dir.0.join("log")).map_err(|e| e.to_string())?;
    let record = [0u8; 128];
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        file.write_all(&record).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latencies)
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1]
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(args: MqttArgs) -> Result<(), String> {
    let (count, repeat) = if args.quick { (2_000, 1) } else { (args.messages, args.repeat.max(1)) };
    let path = args.plugins.join("senml.wasm");
    let senml = std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (build the plugins with `cargo xtask plugins`)", path.display()))?;
    let mosquitto = Mosquitto::start(&args.mosquitto)?;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "unset".into());
    let mut out = format!(
        "rill bench mqtt: {count} SenML packs per case, {repeat} repeats (medians), {} build, mosquitto on loopback \
         (100 in flight), Rill durability: fsync before ack, GLIBC_TUNABLES={tunables}\n\n\
         | QoS | plain subscriber msg/s | Rill msg/s (= records/s) | ratio |\n|---|---|---|---|\n",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    print!("{out}");
    let mut run = 0;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let (mut plains, mut rills) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            run += 1;
            plains.push(plain(mosquitto.port, run, count, qos).await?);
            rills.push(rill(mosquitto.port, run, count, qos, &senml).await?);
        }
        let (p, r) = (median(&mut plains), median(&mut rills));
        let row = format!("| {} | {p:.0} | {r:.0} | {:.2} |\n", qos as u8, r / p);
        print!("{row}");
        out.push_str(&row);
    }
    // Latency at 1k messages/s, QoS 1: plain subscriber, Rill, and the fdatasync floor, in the
    // same run (p50 and p99 over every message of every repeat).
    let latency_count = if args.quick { 500 } else { args.latency_seconds.max(1) * LATENCY_RATE };
    let (mut plain_ms, mut rill_ms, mut sync_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut behind: f64 = 0.0;
    for _ in 0..repeat {
        run += 1;
        let (latencies, late) = plain_latency(mosquitto.port, run, latency_count).await?;
        plain_ms.extend(latencies);
        let (latencies, late_too) = rill_latency(mosquitto.port, run, latency_count, &senml).await?;
        rill_ms.extend(latencies);
        behind = behind.max(late).max(late_too);
        sync_ms.extend(fdatasync_latencies(latency_count as usize / 2)?);
    }
    let (plain_p99, rill_p99, sync_p99) =
        (percentile(&mut plain_ms, 0.99), percentile(&mut rill_ms, 0.99), percentile(&mut sync_ms, 0.99));
    let ceiling = 2.0 * plain_p99 + sync_p99;
    let table = format!(
        "\nPublish → consumable latency at {LATENCY_RATE} msg/s, QoS 1, {latency_count} messages × {repeat} (ms):\n\n\
         | | p50 | p99 |\n|---|---|---|\n\
         | plain subscriber (receipt) | {:.2} | {plain_p99:.2} |\n\
         | fdatasync of a 128 B append | {:.2} | {sync_p99:.2} |\n\
         | Rill (high watermark passes the record) | {:.2} | {rill_p99:.2} |\n\n\
         Target: Rill p99 ≤ 2 × plain p99 + fdatasync p99 = {ceiling:.2} ms: {} ({:.2} of it). The publisher \
         fell behind its schedule by at most {behind:.2} ms (more than ~1 ms: it was held back, and those waits \
         are not in the latencies).\n",
        percentile(&mut plain_ms, 0.5),
        percentile(&mut sync_ms, 0.5),
        percentile(&mut rill_ms, 0.5),
        if rill_p99 <= ceiling { "met" } else { "not met" },
        rill_p99 / ceiling,
    );
    print!("{table}");
    out.push_str(&table);
    if let Some(path) = &args.out {
        std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
