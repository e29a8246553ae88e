//! `rill bench mirror`: edge → cloud replication between two `rill serve` processes on loopback.
//!
//! - Catch-up: a backlog written into the edge's data dir before it starts, copied once the
//!   edge connects; MB/s against the same bytes pushed through a plain TCP socket from this
//!   process into a sink process (`rill bench mirror-sink`), the ceiling.
//! - Steady lag: records produced to the edge at a fixed rate (acks=all), each batch's time from
//!   its produce request to the copy's high watermark covering it (a long-polling fetch on the
//!   aggregation node); p99 against fdatasync p99 + loopback round trip p99, measured here.
//!
//! Both nodes fsync before acknowledging (the default policy).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::protocol::StrBytes;

use super::storage::batch_of;
use crate::client::Client;
use crate::client::admin::{AdminArgs, AdminClient};
use crate::http::mirrors::ReplicationView;
use crate::storage::{Location, Store, StoreConfig, TopicConfig};

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Scratch directory (both data dirs go below it).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The backlog the edge holds when it connects.
    #[arg(long, default_value_t = 1 << 30)]
    backlog_bytes: u64,
    /// Records per second in the steady-state case.
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Seconds of the steady-state case.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Catch-up runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// A short run for CI: 64 MiB, one catch-up, 2 s steady.
    #[arg(long)]
    quick: bool,
}

/// `rill bench mirror-sink`: reads a TCP stream to its end and says how much it got.
#[derive(Debug, Args)]
pub struct SinkArgs {}

const TOPIC: &str = "bench";
const EDGE: &str = "bench-edge";
const TOKEN: &str = "bench-token";
/// Bytes per backlog batch (what a busy producer sends) and per record.
const BACKLOG_BATCH_BYTES: usize = 256 * 1024;
const RECORD_BYTES: usize = 100;
/// Records per produce request in the steady case: 100 requests per second at 10k records/s.
const STEADY_RECORDS_PER_BATCH: u32 = 100;

/// The mirror benchmark from start to report. Long because it is a script: two nodes, a
/// backlog case, a steady case, then the tables, in the order they run.
pub async fn run(mut args: MirrorArgs) -> Result<(), String> {
    if args.quick {
        args.backlog_bytes = args.backlog_bytes.min(64 << 20);
        args.repeat = 1;
        args.seconds = args.seconds.min(2.0);
    }
    let scratch = args.dir.join("rill-bench-mirror");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!(
        "rill bench mirror: backlog {} MiB, {} catch-up run(s), steady {} records/s for {} s; both nodes fsync before ack; \
         GLIBC_TUNABLES={}",
        args.backlog_bytes >> 20,
        args.repeat,
        args.rate,
        args.seconds,
        std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "(unset)".into())
    );
    let mut ceilings = Vec::new();
    let mut disk_ceilings = Vec::new();
    let mut rill = Vec::new();
    let mut last = None;
    for run in 0..args.repeat {
        let _ = std::fs::remove_dir_all(&scratch);
        let bytes = write_backlog(&scratch.join("edge"), args.backlog_bytes).await?;
        let ceiling = plain_socket(&exe, bytes).await?;
        let disk = durable_file(&scratch, bytes)?;
        let (pair, mb_per_s) = catch_up(&exe, &scratch, bytes).await?;
        println!(
            "  run {run}: plain socket {ceiling:.0} MB/s, file append + fdatasync {disk:.0} MB/s, mirror catch-up \
             {mb_per_s:.0} MB/s ({:.2}× socket, {:.2}× file)",
            mb_per_s / ceiling,
            mb_per_s / disk
        );
        ceilings.push(ceiling);
        disk_ceilings.push(disk);
        rill.push(mb_per_s);
        if let Some(previous) = last.replace(pair) {
            drop(previous);
        }
    }
    let (ceiling, disk, mirror) = (median(&ceilings), median(&disk_ceilings), median(&rill));
    let Some(mut pair) = last else { return Err("no run".into()) };
    let lag = steady_lag(&pair, args.rate, args.seconds).await?;
    let sync = fdatasync_p99(&scratch)?;
    let rtt = loopback_rtt_p99().await?;
    let bound = 2.0 * (sync + rtt);
    pair.stop();
    println!();
    println!("| case | Rill | ceiling | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| catch-up of {} MiB (median of {}) | {mirror:.0} MB/s | {ceiling:.0} MB/s plain TCP socket to a sink process | {:.2}× | ≥ 0.7× |",
        args.backlog_bytes >> 20,
        args.repeat,
        mirror / ceiling
    );
    println!(
        "| the same, against what the disk allows | {mirror:.0} MB/s | {disk:.0} MB/s appended to a file in 1 MiB writes, \
         fdatasync every 8 MiB (the window) | {:.2}× | (none set) |",
        mirror / disk
    );
    println!(
        "| steady lag at {} records/s, p50 / p99 / max | {:.2} / {:.2} / {:.2} ms | 2 × (fdatasync p99 {sync:.2} + loopback RTT p99 {rtt:.3}) = {bound:.2} ms | {:.2}× | ≤ 1× |",
        args.rate,
        lag.copy.0,
        lag.copy.1,
        lag.copy.2,
        lag.copy.1 / bound
    );
    println!(
        "| of which the edge's own acks=all answer, p50 / p99 | {:.2} / {:.2} ms | fdatasync p99 {sync:.2} + loopback RTT p99 {rtt:.3} = {:.2} ms | {:.2}× | |",
        lag.edge_ack.0,
        lag.edge_ack.1,
        sync + rtt,
        lag.edge_ack.1 / (sync + rtt)
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// Writes the backlog into a fresh edge data dir; returns its bytes.
async fn write_backlog(dir: &Path, bytes: u64) -> Result<u64, String> {
    let store = Store::open(Location::Dir(dir.join("data")), StoreConfig::default()).map_err(|e| e.to_string())?;
    let config = TopicConfig { retention_ms: None, ..TopicConfig::default() };
    store.create_topic(TOPIC, 1, config).await.map_err(|e| e.to_string())?;
    let (batch, _) = batch_of(RECORD_BYTES, BACKLOG_BATCH_BYTES)?;
    let mut written = 0;
    while written < bytes {
        // Several batches per commit, as a busy producer's requests would share one.
        let mut many = Vec::with_capacity(batch.len() * 16);
        for _ in 0..16 {
            many.extend_from_slice(&batch);
        }
        written += many.len() as u64;
        store.append(TOPIC, 0, many).await.map_err(|e| e.to_string())?;
    }
    store.shutdown().await;
    Ok(written)
}

/// A `rill` child process whose stderr is scanned for the addresses it bound.
struct Node {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    stdout: Option<std::process::ChildStdout>,
    /// Lines read so far (addresses come in any order).
    seen: std::cell::RefCell<Vec<String>>,
}

impl Node {
    fn spawn(command: &mut Command) -> Result<Node, String> {
        let mut child = command
            .env("RILL_LOG", "warn,rill::serve=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let stdout = child.stdout.take();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Node { child, lines, stdout, seen: Default::default() })
    }

    /// The address after `prefix` in the first line holding it.
    fn address(&self, prefix: &str) -> Result<String, String> {
        let after = |line: &str| {
            let at = line.find(prefix)? + prefix.len();
            line[at..].split_whitespace().next().map(str::to_owned)
        };
        if let Some(found) = self.seen.borrow().iter().find_map(|line| after(line)) {
            return Ok(found);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).map_err(|_| format!("no {prefix:?} line from the node"))?;
            if let Some(found) = after(&line) {
                return Ok(found);
            }
            self.seen.borrow_mut().push(line);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An edge and an aggregation node mirroring between them.
struct Pair {
    edge: Node,
    cloud: Node,
    edge_kafka: String,
    cloud_kafka: String,
}

impl Pair {
    fn stop(&mut self) {
        for node in [&mut self.edge, &mut self.cloud] {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn serve(exe: &Path, root: &Path, config: &str) -> Result<Node, String> {
    std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
    let file = root.join("rill.toml");
    std::fs::write(&file, config).map_err(|e| e.to_string())?;
    Node::spawn(
        Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .arg("--data-dir")
            .arg(root.join("data")),
    )
}

/// Starts the aggregation node, then the edge with its backlog; MB/s from the edge's connection
/// to the copy's durable end reaching the backlog's.
async fn catch_up(exe: &Path, scratch: &Path, bytes: u64) -> Result<(Pair, f64), String> {
    let cloud_config =
        format!("[replication]\nlisten = \"127.0.0.1:0\"\nedges = [{{ id = \"{EDGE}\", token = \"{TOKEN}\" }}]\n");
    let cloud = serve(exe, &scratch.join("cloud"), &cloud_config)?;
    let cloud_kafka = cloud.address("kafka listening on ")?;
    let cloud_http = cloud.address("http listening on ")?;
    let upstream = cloud.address("replication listening on ")?;
    let admin = AdminClient::new(&AdminArgs { admin: format!("http://{cloud_http}"), admin_token: None })
        .map_err(|e| e.to_string())?;
    let edge_config = format!(
        "[[mirror]]\nname = \"bench\"\nupstream = \"{upstream}\"\nedge_id = \"{EDGE}\"\ntoken = \"{TOKEN}\"\ntopics = [\"{TOPIC}\"]\n"
    );
    let edge = serve(exe, &scratch.join("edge"), &edge_config)?;
    let edge_kafka = edge.address("kafka listening on ")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut connected = None;
    loop {
        let view: ReplicationView = admin.get("/v1/replication").await.map_err(|e| e.to_string())?;
        let partition = view.edges.iter().flat_map(|e| &e.partitions).next();
        if connected.is_none() && partition.is_some() {
            connected = Some(Instant::now());
        }
        let end = partition.map_or(0, |p| p.durable_end);
        let target = view.edges.iter().flat_map(|e| &e.partitions).map(|p| p.durable_end).max().unwrap_or(0);
        if let (Some(started), true) = (connected, end > 0 && end == target && done(&edge_kafka, end).await?) {
            let seconds = started.elapsed().as_secs_f64();
            let pair = Pair { edge, cloud, edge_kafka, cloud_kafka };
            return Ok((pair, bytes as f64 / seconds / 1e6));
        }
        if Instant::now() > deadline {
            return Err("the copy did not catch up within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `end` is the edge's log end (the whole backlog is copied).
async fn done(edge_kafka: &str, end: u64) -> Result<bool, String> {
    Ok(high_watermark(edge_kafka, TOPIC).await? == end as i64)
}

async fn high_watermark(kafka: &str, topic: &str) -> Result<i64, String> {
    let mut client = Client::connect(kafka).await.map_err(|e| e.to_string())?;
    let (_, high_watermark) = fetch(&mut client, topic, i64::MAX, 0).await?;
    Ok(high_watermark)
}

/// One fetch of partition 0 at `offset`, waiting up to `wait_ms` for data; (records bytes,
/// high watermark). An offset past the end answers with the high watermark and no records.
async fn fetch(client: &mut Client, topic: &str, offset: i64, wait_ms: i32) -> Result<(usize, i64), String> {
    let version = client.version::<FetchRequest>(12).map_err(|e| e.to_string())?;
    let request = FetchRequest::default()
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1024)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_owned()))).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset.max(0))
                    .with_partition_max_bytes(1024),
            ]),
        ]);
    let response = client.send(&request, version).await.map_err(|e| e.to_string())?;
    let data = response.responses.into_iter().flat_map(|t| t.partitions).next().ok_or("empty fetch")?;
    Ok((data.records.map_or(0, |r| r.len()), data.high_watermark))
}

/// The same bytes through a plain loopback socket into a sink process; MB/s.
async fn plain_socket(exe: &Path, bytes: u64) -> Result<f64, String> {
    let mut sink = Node::spawn(Command::new(exe).args(["bench", "mirror-sink"]))?;
    let mut stdout = BufReader::new(sink.stdout.take().ok_or("the sink has no stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line).map_err(|e| e.to_string())?;
    let addr =
        line.trim().strip_prefix("sink listening on ").ok_or(format!("unexpected sink line {line:?}"))?.to_owned();
    let (batch, _) = batch_of(RECORD_BYTES, BACKLOG_BATCH_BYTES)?;
    let chunk: Vec<u8> = batch.iter().copied().cycle().take(1 << 20).collect();
    let started = Instant::now();
    let sent = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let mut stream = std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())?;
        let mut sent = 0;
        while sent < bytes {
            stream.write_all(&chunk).map_err(|e| e.to_string())?;
            sent += chunk.len() as u64;
        }
        stream.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
        // The sink answers once it has read everything.
        let mut answer = [0; 1];
        let _ = stream.read(&mut answer);
        Ok(sent)
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok(sent as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// The sink: accepts one connection, reads it to its end, answers one byte.
pub fn sink(_: SinkArgs) -> Result<(), String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    println!("sink listening on {}", listener.local_addr().map_err(|e| e.to_string())?);
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let mut buffer = vec![0; 1 << 20];
    while stream.read(&mut buffer).map_err(|e| e.to_string())? > 0 {}
    stream.write_all(b"k").map_err(|e| e.to_string())?;
    Ok(())
}

/// Steady lag in ms: (p50, p99, max) from each produce request to the copy's high watermark
/// covering it, and (p50, p99) of the produce request's own acks=all answer from the edge (the
/// edge's share).
struct Lag {
    copy: (f64, f64, f64),
    edge_ack: (f64, f64),
}

/// Produces `rate` records per second to the edge for `seconds`, timing the copy catching up.
async fn steady_lag(pair: &Pair, rate: u32, seconds: f64) -> Result<Lag, String> {
    let copy = format!("{EDGE}.{TOPIC}");
    let start = high_watermark(&pair.cloud_kafka, &copy).await?;
    // A batch of about STEADY_RECORDS_PER_BATCH records (their overhead makes it a few less),
    // sent as often as the rate needs.
    let (batch, records) = batch_of(RECORD_BYTES, RECORD_BYTES * STEADY_RECORDS_PER_BATCH as usize)?;
    let records = records as u32;
    let batches = ((f64::from(rate) * seconds) as u32 / records).max(1);
    let interval = Duration::from_secs_f64(f64::from(records) / f64::from(rate));
    let (sent_at, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    let edge_kafka = pair.edge_kafka.clone();
    let producer = tokio::spawn(async move {
        let mut client = Client::connect(&edge_kafka).await.map_err(|e| e.to_string())?;
        let mut next = Instant::now();
        let mut end = start;
        let mut acks = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        for _ in 0..batches {
            tokio::time::sleep_until(next.into()).await;
            let at = Instant::now();
            end += i64::from(records);
            // Sent before the request: the copy may be readable before the edge's answer arrives.
            let _ = sent_at.send((end, at));
            produce(&mut client, &batch).await?;
            acks.record(at.elapsed().as_micros().max(1) as u64).map_err(|e| e.to_string())?;
            next += interval;
        }
        Ok::<_, String>(acks)
    });
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut client = Client::connect(&pair.cloud_kafka).await.map_err(|e| e.to_string())?;
    let mut waiting: std::collections::VecDeque<(i64, Instant)> = std::collections::VecDeque::new();
    let mut seen = start;
    let mut counted = 0;
    while counted < batches {
        let (_, high_watermark) = fetch(&mut client, &copy, seen, 500).await?;
        let now = Instant::now();
        while let Ok(sent) = sent_rx.try_recv() {
            waiting.push_back(sent);
        }
        seen = seen.max(high_watermark);
        while waiting.front().is_some_and(|&(end, _)| end <= seen) {
            if let Some((_, at)) = waiting.pop_front() {
                histogram.record((now - at).as_micros().max(1) as u64).map_err(|e| e.to_string())?;
                counted += 1;
            }
        }
        if producer.is_finished() && waiting.is_empty() && sent_rx.is_empty() && counted < batches {
            // Every sent batch counted: the producer stopped early.
            break;
        }
    }
    let acks = producer.await.map_err(|e| e.to_string())??;
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(Lag {
        copy: (ms(histogram.value_at_quantile(0.5)), ms(histogram.value_at_quantile(0.99)), ms(histogram.max())),
        edge_ack: (ms(acks.value_at_quantile(0.5)), ms(acks.value_at_quantile(0.99))),
    })
}

/// One produce request of `batch` to partition 0 with acks=all; an error code is an error.
async fn produce(client: &mut Client, batch: &[u8]) -> Result<(), String> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
    let version = client.version::<ProduceRequest>(9).map_err(|e| e.to_string())?;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(batch.to_vec().into())),
        ]),
    ]);
    let response = client.send(&request, version).await.map_err(|e| e.to_string())?;
    let code = response.responses.iter().flat_map(|t| &t.partition_responses).map(|p| p.error_code).find(|&c| c != 0);
    match code {
        Some(code) => Err(format!("produce failed with error code {code}")),
        None => Ok(()),
    }
}

/// A durable copy's ceiling on this disk: `bytes` appended to a fresh file in 1 MiB writes
/// (a frame), with an fdatasync after every 8 MiB (the default window, which the aggregation node
/// commits at most at a time) and at the end, in MB/s. No network, no storage engine.
fn durable_file(scratch: &Path, bytes: u64) -> Result<f64, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let path = scratch.join("durable.bench");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let chunk = vec![b'x'; 1 << 20];
    let started = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&chunk).map_err(|e| e.to_string())?;
        written += chunk.len() as u64;
        if written.is_multiple_of(crate::limits::MIRROR_WINDOW_BYTES_DEFAULT) {
            file.sync_data().map_err(|e| e.to_string())?;
        }
    }
    file.sync_data().map_err(|e| e.to_string())?;
    let mb_per_s = written as f64 / started.elapsed().as_secs_f64() / 1e6;
    let _ = std::fs::remove_file(&path);
    Ok(mb_per_s)
}

/// p99 of appending one steady batch's bytes (10 KiB) and fdatasync, in ms.
fn fdatasync_p99(scratch: &Path) -> Result<f64, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let path = scratch.join("fdatasync.bench");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = vec![b'x'; RECORD_BYTES * STEADY_RECORDS_PER_BATCH as usize];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for _ in 0..1000 {
        let started = Instant::now();
        file.write_all(&block).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        histogram.record(started.elapsed().as_micros().max(1) as u64).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(&path);
    Ok(histogram.value_at_quantile(0.99) as f64 / 1000.0)
}

/// p99 of a 64-byte ping-pong over a loopback TCP socket, in ms.
async fn loopback_rtt_p99() -> Result<f64, String> {
    tokio::task::spawn_blocking(|| -> Result<f64, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let echo = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            let mut buffer = [0; 64];
            while stream.read_exact(&mut buffer).is_ok() {
                stream.write_all(&buffer)?;
            }
            Ok(())
        });
        let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        let mut buffer = [0; 64];
        for _ in 0..5000 {
            let started = Instant::now();
            stream.write_all(&buffer).map_err(|e| e.to_string())?;
            stream.read_exact(&mut buffer).map_err(|e| e.to_string())?;
            histogram.record(started.elapsed().as_nanos().max(1) as u64 / 1000 + 1).map_err(|e| e.to_string())?;
        }
        drop(stream);
        let _ = echo.join();
        Ok(histogram.value_at_quantile(0.99) as f64 / 1000.0)
    })
    .await
    .map_err(|e| e.to_string())?
}
