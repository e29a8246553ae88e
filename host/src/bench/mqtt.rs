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

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use sha2::{Digest, Sha256};

use crate::mqtt::{BridgeSpec, Bridges, Subscription};
use crate::pipelines::StageSpec;
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

/// Messages per second through a Rill bridge into a fresh store (fsync before every ack).
async fn rill(port: u16, run: usize, count: u64, qos: QoS, senml: &[u8]) -> Result<f64, String> {
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
    let bridges = Bridges::new(store.clone(), PluginCatalog::new(PluginRuntime::new()?, store.clone(), None));
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
        batch_window_ms: crate::limits::MQTT_BATCH_WINDOW_MS_DEFAULT,
        dedup: None,
    };
    let name = spec.name.clone();
    bridges.add(spec).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridges.get(&name).is_some_and(|v| v.status.connected) {
        if Instant::now() > deadline {
            return Err("the bridge did not connect".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The subscription's SubAck follows the ConnAck.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let publisher = tokio::spawn({
        let prefix = prefix.clone();
        async move { publish(port, &format!("bench-pub-rill-{run}"), &prefix, count, qos).await }
    });
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
    bridges.shutdown().await;
    store.shutdown().await;
    Ok(stored as f64 / last.duration_since(started).as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
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
    if let Some(path) = &args.out {
        std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
