//! `rill bench kafka`: produce and consume over the Kafka protocol on loopback, against ceilings
//! measured in the same run.
//!
//! - **Throughput** (closed loop): per partition one connection keeping 5 produce requests in
//!   flight (librdkafka's default `max.in.flight` for idempotence) of ~16 KiB batches (its
//!   `batch.size`), for 100 B and 1 KiB records, 1 and 4 partitions, acks=1 and acks=-1. Ceiling:
//!   the same frames sent over a plain loopback socket to a server that only reads them and answers
//!   with a produce-sized response, and the storage ceiling: appending the same bytes to a file
//!   with fdatasync as often as the broker synced.
//! - **Latency** (open loop): one connection offering `--rate` records/s in 1 ms batches (a 1 ms
//!   linger) with acks=-1. Every request has an intended send time; latency runs from it to the
//!   acknowledgement, so a stall counts against every request it delays (no coordinated
//!   omission). Ceiling: write + fdatasync of the same batches on the same schedule.
//! - **Consume**: fetching everything a throughput case wrote, 1 MiB per fetch.
//!
//! Durability class: the broker's default, fsync before acknowledgement, or with
//! `--flush-interval-ms` the page cache (as Kafka's default). On one node acks=1 and acks=-1 wait
//! for the same commit. The broker runs in this process on its own runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kafka_protocol::messages::{ApiKey, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use super::storage::batch_of;
use crate::client::{Client, decode_records};
use crate::config::KafkaSection;
use crate::kafka::KafkaListener;
use crate::limits::CLIENT_RESPONSE_BYTES_MAX;
use crate::storage::{DurabilityPolicy, Location, Store, StoreConfig, TopicConfig};

#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Directory on the disk to measure (a scratch subdirectory is made and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// How long each case runs (seconds), after a warm-up of a fifth of it.
    #[arg(long, default_value_t = 3.0)]
    seconds_per_case: f64,
    /// Repetitions per case; the table reports medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Offered load of the latency case, records/s.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Short runs of a few cases, to check that the benchmark still works (CI).
    #[arg(long)]
    quick: bool,
    /// Also write the markdown tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run the broker with the interval durability policy (acknowledged from the page cache,
    /// fsync every N ms) instead of fsync before every acknowledgement.
    #[arg(long, value_name = "MS")]
    flush_interval_ms: Option<u64>,
}

/// Produce requests in flight per connection.
const IN_FLIGHT: usize = 5;
/// Bytes per produce batch (librdkafka's and Java's `batch.size`).
const BATCH_BYTES: usize = 16 * 1024;
/// Open-loop requests allowed in flight before the case is declared overloaded.
const OPEN_LOOP_IN_FLIGHT_MAX: usize = 50_000;
/// Bytes a consumer asks for per fetch.
const FETCH_BYTES: i32 = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
struct Throughput {
    records_per_s: f64,
    mb_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

fn median_of(samples: &[Throughput]) -> Throughput {
    let pick = |f: fn(&Throughput) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Throughput {
        records_per_s: pick(|t| t.records_per_s),
        mb_per_s: pick(|t| t.mb_per_s),
        p50_ms: pick(|t| t.p50_ms),
        p99_ms: pick(|t| t.p99_ms),
        p999_ms: pick(|t| t.p999_ms),
    }
}

fn percentiles(histogram: &Histogram<u64>) -> (f64, f64, f64) {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    (ms(0.5), ms(0.99), ms(0.999))
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

pub async fn run(mut args: KafkaArgs) -> Result<(), String> {
    if args.quick {
        args.repeat = 1;
        args.seconds_per_case = args.seconds_per_case.min(0.5);
    }
    let scratch = args.dir.join(format!("rill-bench-kafka-{}", std::process::id()));
    let result = run_all(&scratch, &args).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let tables = result?;
    if let Some(out) = &args.out {
        std::fs::write(out, &tables).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    Ok(())
}

async fn run_all(scratch: &Path, args: &KafkaArgs) -> Result<String, String> {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "unset".into());
    let mut out = format!(
        "rill bench kafka: {} s/case after a {:.1} s warm-up, {} repeats (medians), broker durability {}, \
         GLIBC_TUNABLES={tunables}\n\n\
         | records | partitions | acks | rill rec/s | rill MB/s | p50 / p99 / p999 ms (closed loop) | loopback MB/s | ratio to loopback | fdatasync MB/s (same bytes/sync) | ratio to fdatasync | consume MB/s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        args.seconds_per_case,
        args.seconds_per_case / 5.0,
        args.repeat,
        match args.flush_interval_ms {
            None => "fsync before ack".to_owned(),
            Some(ms) => format!("page cache (fsync every {ms} ms)"),
        }
    );
    print!("{out}");
    let sizes: &[usize] = if args.quick { &[100] } else { &[100, 1024] };
    let partition_counts: &[u32] = if args.quick { &[1] } else { &[1, 4] };
    for &record_bytes in sizes {
        let (batch, records_per_batch) = batch_of(record_bytes, BATCH_BYTES)?;
        for &partitions in partition_counts {
            for acks in [1i16, -1] {
                let mut rill = Vec::new();
                let mut loopback = Vec::new();
                let mut storage = Vec::new();
                let mut consume = Vec::new();
                for _ in 0..args.repeat {
                    let broker = BenchBroker::start(scratch, partitions, args).await?;
                    let syncs_before = broker.store.stats().syncs();
                    let measured =
                        produce_closed_loop(broker.addr, partitions, acks, &batch, records_per_batch, args).await?;
                    let syncs = broker.store.stats().syncs() - syncs_before;
                    consume.push(consume_all(broker.addr, partitions).await?);
                    broker.stop().await;
                    loopback.push(loopback_closed_loop(partitions, &batch, records_per_batch, args).await?);
                    let bytes_per_sync = measured.mb_per_s * 1e6 * args.seconds_per_case / syncs.max(1) as f64;
                    storage.push(fdatasync_throughput(scratch, &batch, bytes_per_sync, args)?);
                    rill.push(measured);
                }
                let (rill, loopback) = (median_of(&rill), median_of(&loopback));
                let storage = median(&storage);
                let consume = median(&consume);
                let row = format!(
                    "| {record_bytes} B | {partitions} | {acks} | {:.0} | {:.1} | {:.2} / {:.2} / {:.2} | {:.1} | {:.2} | {:.1} | {:.2} | {:.1} |\n",
                    rill.records_per_s,
                    rill.mb_per_s,
                    rill.p50_ms,
                    rill.p99_ms,
                    rill.p999_ms,
                    loopback.mb_per_s,
                    rill.mb_per_s / loopback.mb_per_s,
                    storage,
                    rill.mb_per_s / storage,
                    consume,
                );
                print!("{row}");
                out.push_str(&row);
            }
        }
    }
    let latency = latency_table(scratch, args).await?;
    print!("{latency}");
    out.push_str(&latency);
    Ok(out)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

async fn latency_table(scratch: &Path, args: &KafkaArgs) -> Result<String, String> {
    let per_batch = (args.rate / 1000).max(1) as usize;
    let (batch, _) = batch_of(100, per_batch * 100 + 200)?;
    let mut rill = Vec::new();
    let mut disk = Vec::new();
    for _ in 0..args.repeat {
        let broker = BenchBroker::start(scratch, 1, args).await?;
        rill.push(produce_open_loop(broker.addr, &batch, args).await?);
        broker.stop().await;
        disk.push(fdatasync_open_loop(scratch, &batch, args)?);
    }
    let (rill, disk) = (median_of(&rill), median_of(&disk));
    Ok(format!(
        "\nOpen loop, {} records/s offered as one ~{} B batch of 100 B records every 1 ms, acks=-1; latency from each \
         batch's intended send time (no coordinated omission):\n\n\
         | | p50 ms | p99 ms | p999 ms |\n|---|---|---|---|\n\
         | rill produce | {:.2} | {:.2} | {:.2} |\n\
         | write + fdatasync, same schedule | {:.2} | {:.2} | {:.2} |\n\
         | ratio (p99) | | {:.2} | |\n",
        args.rate,
        batch.len(),
        rill.p50_ms,
        rill.p99_ms,
        rill.p999_ms,
        disk.p50_ms,
        disk.p99_ms,
        disk.p999_ms,
        rill.p99_ms / disk.p99_ms,
    ))
}

/// A broker in this process, on its own runtime, with topic `bench` of `partitions` partitions.
struct BenchBroker {
    addr: SocketAddr,
    store: Store,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl BenchBroker {
    async fn start(scratch: &Path, partitions: u32, args: &KafkaArgs) -> Result<BenchBroker, String> {
        let _ = std::fs::remove_dir_all(scratch);
        let durability = match args.flush_interval_ms {
            None => DurabilityPolicy::EveryCommit,
            Some(ms) => DurabilityPolicy::Interval(Duration::from_millis(ms)),
        };
        let config = StoreConfig { durability, ..StoreConfig::default() };
        let store = Store::open(Location::Dir(scratch.to_owned()), config).map_err(|e| e.to_string())?;
        let topic_config = TopicConfig { retention_ms: None, ..TopicConfig::default() };
        store.create_topic("bench", partitions, topic_config).await.map_err(|e| e.to_string())?;
        let (stop, stopped) = watch::channel(false);
        let (bound, addr) = std::sync::mpsc::channel();
        let broker_store = store.clone();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => return drop(bound.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                let config = KafkaSection { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..KafkaSection::default() };
                let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(&broker_store));
                match KafkaListener::bind(config, broker_store, metrics).await {
                    Ok(listener) => {
                        let _ = bound.send(listener.local_addr().map_err(|e| e.to_string()));
                        listener.run(stopped).await;
                    }
                    Err(e) => drop(bound.send(Err(e.to_string()))),
                }
            });
        });
        let addr = addr.recv().map_err(|_| "the bench broker did not start".to_owned())??;
        Ok(BenchBroker { addr, store, stop, thread })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
        self.store.shutdown().await;
    }
}

/// A produce request frame for `partition` (size prefix included; correlation id at bytes 8..12).
fn produce_frame(partition: u32, acks: i16, batch: &[u8]) -> Result<BytesMut, String> {
    const VERSION: i16 = 9;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(VERSION)
        .with_client_id(Some(StrBytes::from_static_str("rill-bench")));
    let request =
        ProduceRequest::default().with_transactional_id(None).with_acks(acks).with_timeout_ms(30_000).with_topic_data(
            vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("bench")))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition as i32)
                            .with_records(Some(batch.to_vec().into())),
                    ]),
            ],
        );
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, ApiKey::Produce.request_header_version(VERSION)).map_err(|e| e.to_string())?;
    request.encode(&mut frame, VERSION).map_err(|e| e.to_string())?;
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

/// Reads one response frame; returns its correlation id.
async fn read_response(reader: &mut OwnedReadHalf, buffer: &mut Vec<u8>) -> Result<i32, String> {
    let size = reader.read_i32().await.map_err(|e| e.to_string())?;
    let size = usize::try_from(size)
        .ok()
        .filter(|size| (4..=CLIENT_RESPONSE_BYTES_MAX).contains(size))
        .ok_or_else(|| format!("response size {size} out of bounds"))?;
    buffer.resize(size, 0);
    reader.read_exact(buffer).await.map_err(|e| e.to_string())?;
    Ok(i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]))
}

/// A request written: its correlation id and the instant its latency counts from.
type Sent = (i32, Instant);

/// Reads one response per request the sender reports, in order, until the sender is done and
/// every request is answered; calls `answered` with each request's start instant.
async fn collect_responses(
    mut reader: OwnedReadHalf,
    mut sent: mpsc::Receiver<Sent>,
    mut answered: impl FnMut(Instant),
) -> Result<(), String> {
    let mut buffer = Vec::new();
    while let Some((expected, at)) = sent.recv().await {
        let correlation = read_response(&mut reader, &mut buffer).await?;
        if correlation != expected {
            return Err(format!("response {correlation} while waiting for {expected}"));
        }
        answered(at);
    }
    Ok(())
}

/// One connection sending `frame` with up to [`IN_FLIGHT`] in flight until `until`; counts
/// acknowledged requests after `measure_from` and their latencies.
async fn pipelined(
    addr: SocketAddr,
    frame: BytesMut,
    measure_from: Instant,
    until: Instant,
) -> Result<(u64, Histogram<u64>), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (reader, mut writer) = stream.into_split();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // The window bounds what is in flight, so the channel never fills.
    let (report, sent) = mpsc::channel::<Sent>(IN_FLIGHT);
    let sending = {
        let slots = Arc::clone(&slots);
        let mut frame = frame;
        tokio::spawn(async move {
            let mut correlation = 0i32;
            while Instant::now() < until {
                slots.acquire().await.map_err(|e| e.to_string())?.forget();
                correlation += 1;
                frame[8..12].copy_from_slice(&correlation.to_be_bytes());
                report.send((correlation, Instant::now())).await.map_err(|e| e.to_string())?;
                writer.write_all(&frame).await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })
    };
    let mut histogram = new_histogram();
    let mut acknowledged = 0u64;
    collect_responses(reader, sent, |at| {
        slots.add_permits(1);
        if at >= measure_from && at < until {
            acknowledged += 1;
            let _ = histogram.record(at.elapsed().as_micros().max(1) as u64);
        }
    })
    .await?;
    sending.await.map_err(|e| e.to_string())??;
    Ok((acknowledged, histogram))
}

async fn closed_loop(
    addr: SocketAddr,
    frames: Vec<BytesMut>,
    batch_bytes: usize,
    records_per_batch: usize,
    args: &KafkaArgs,
) -> Result<Throughput, String> {
    let warm_up = Duration::from_secs_f64(args.seconds_per_case / 5.0);
    let measure = Duration::from_secs_f64(args.seconds_per_case);
    let start = Instant::now();
    let (measure_from, until) = (start + warm_up, start + warm_up + measure);
    let mut connections = Vec::new();
    for frame in frames {
        connections.push(tokio::spawn(pipelined(addr, frame, measure_from, until)));
    }
    let mut total = 0u64;
    let mut histogram = new_histogram();
    for connection in connections {
        let (acknowledged, latencies) = connection.await.map_err(|e| e.to_string())??;
        total += acknowledged;
        histogram.add(latencies).map_err(|e| e.to_string())?;
    }
    let seconds = measure.as_secs_f64();
    let (p50_ms, p99_ms, p999_ms) = percentiles(&histogram);
    Ok(Throughput {
        records_per_s: (total * records_per_batch as u64) as f64 / seconds,
        mb_per_s: (total * batch_bytes as u64) as f64 / seconds / 1e6,
        p50_ms,
        p99_ms,
        p999_ms,
    })
}

async fn produce_closed_loop(
    addr: SocketAddr,
    partitions: u32,
    acks: i16,
    batch: &[u8],
    records_per_batch: usize,
    args: &KafkaArgs,
) -> Result<Throughput, String> {
    let frames = (0..partitions).map(|p| produce_frame(p, acks, batch)).collect::<Result<Vec<_>, _>>()?;
    closed_loop(addr, frames, batch.len(), records_per_batch, args).await
}

/// The same frames to a server that reads them and answers each with a produce-sized response.
async fn loopback_closed_loop(
    partitions: u32,
    batch: &[u8],
    records_per_batch: usize,
    args: &KafkaArgs,
) -> Result<Throughput, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.into_split();
                let mut body = Vec::new();
                // A produce v9 response for one partition is about 60 bytes.
                let mut response = vec![0u8; 64];
                response[..4].copy_from_slice(&60i32.to_be_bytes());
                while let Ok(size) = reader.read_i32().await {
                    // Our own frames; anything shorter than a header ends the connection.
                    let Some(size) = usize::try_from(size).ok().filter(|size| *size >= 8) else { return };
                    body.resize(size, 0);
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    response[4..8].copy_from_slice(&body[4..8]); // the correlation id
                    if writer.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let frames = (0..partitions).map(|p| produce_frame(p, 1, batch)).collect::<Result<Vec<_>, _>>()?;
    let measured = closed_loop(addr, frames, batch.len(), records_per_batch, args).await;
    server.abort();
    measured
}

/// Fetches every partition from offset 0 to its end; MB/s of record bytes.
async fn consume_all(addr: SocketAddr, partitions: u32) -> Result<f64, String> {
    let mut client = Client::connect(&addr.to_string()).await.map_err(|e| e.to_string())?;
    let version = client.version::<FetchRequest>(12).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut bytes = 0u64;
    for partition in 0..partitions {
        let mut offset = 0i64;
        loop {
            let request = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(FETCH_BYTES)
                .with_session_epoch(-1)
                .with_topics(vec![
                    FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("bench"))).with_partitions(
                        vec![
                            FetchPartition::default()
                                .with_partition(partition as i32)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(FETCH_BYTES),
                        ],
                    ),
                ]);
            let response = client.send(&request, version).await.map_err(|e| e.to_string())?;
            let data = response.responses.into_iter().flat_map(|t| t.partitions).next().ok_or("empty fetch")?;
            let records = data.records.unwrap_or_default();
            if records.is_empty() {
                break;
            }
            bytes += records.len() as u64;
            let decoded = decode_records(&records, offset).map_err(|e| e.to_string())?;
            offset = decoded.last().map_or(data.high_watermark, |r| r.offset + 1);
            if offset >= data.high_watermark {
                break;
            }
        }
    }
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// Appends `batch` to a file with fdatasync every `bytes_per_sync` bytes, for the case's time.
fn fdatasync_throughput(scratch: &Path, batch: &[u8], bytes_per_sync: f64, args: &KafkaArgs) -> Result<f64, String> {
    use std::io::Write;
    let mut file = fresh_file(scratch)?;
    let until = Instant::now() + Duration::from_secs_f64(args.seconds_per_case);
    let started = Instant::now();
    let (mut bytes, mut since_sync) = (0u64, 0f64);
    while Instant::now() < until {
        file.write_all(batch).map_err(|e| e.to_string())?;
        bytes += batch.len() as u64;
        since_sync += batch.len() as f64;
        if since_sync >= bytes_per_sync {
            file.sync_data().map_err(|e| e.to_string())?;
            since_sync = 0.0;
        }
    }
    file.sync_data().map_err(|e| e.to_string())?;
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

fn fresh_file(scratch: &Path) -> Result<std::fs::File, String> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new().create(true).append(true).open(scratch.join("baseline.log")).map_err(|e| e.to_string())
}

/// The open-loop schedule: one batch every millisecond from `start`, measured after the warm-up.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    measure_from: Instant,
    until: Instant,
}

impl Schedule {
    fn new(args: &KafkaArgs) -> Schedule {
        let start = Instant::now() + Duration::from_millis(10);
        let measure_from = start + Duration::from_secs_f64(args.seconds_per_case / 5.0);
        Schedule { start, measure_from, until: measure_from + Duration::from_secs_f64(args.seconds_per_case) }
    }

    fn intended(&self, n: u32) -> Instant {
        self.start + Duration::from_millis(1) * n
    }
}

fn summarize(histogram: &Histogram<u64>) -> Throughput {
    let (p50_ms, p99_ms, p999_ms) = percentiles(histogram);
    Throughput { records_per_s: 0.0, mb_per_s: 0.0, p50_ms, p99_ms, p999_ms }
}

/// Produce requests sent on schedule whatever the answers; latency from each intended send time.
async fn produce_open_loop(addr: SocketAddr, batch: &[u8], args: &KafkaArgs) -> Result<Throughput, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (reader, mut writer) = stream.into_split();
    let schedule = Schedule::new(args);
    let (report, sent) = mpsc::channel::<Sent>(OPEN_LOOP_IN_FLIGHT_MAX);
    let mut frame = produce_frame(0, -1, batch)?;
    // The sender paces with the OS's sleep on a blocking thread, as the fdatasync baseline does:
    // tokio's timer wheel fires on whole milliseconds after the deadline, which would add up to
    // 1 ms of the client's own lateness to every latency.
    let runtime = tokio::runtime::Handle::current();
    let sending = tokio::task::spawn_blocking(move || {
        for n in 1u32.. {
            let intended = schedule.intended(n - 1);
            if intended >= schedule.until {
                break;
            }
            std::thread::sleep(intended.saturating_duration_since(Instant::now()));
            frame[8..12].copy_from_slice(&(n as i32).to_be_bytes());
            // Never wait for room: an open loop that waits is a closed loop.
            report
                .try_send((n as i32, intended))
                .map_err(|_| format!("overloaded: {OPEN_LOOP_IN_FLIGHT_MAX} requests unanswered"))?;
            runtime.block_on(writer.write_all(&frame)).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    let mut histogram = new_histogram();
    collect_responses(reader, sent, |intended| {
        if intended >= schedule.measure_from {
            let _ = histogram.record(intended.elapsed().as_micros().max(1) as u64);
        }
    })
    .await?;
    sending.await.map_err(|e| e.to_string())??;
    Ok(summarize(&histogram))
}

/// Write + fdatasync of `batch` on the open-loop schedule; latency from each intended time.
fn fdatasync_open_loop(scratch: &Path, batch: &[u8], args: &KafkaArgs) -> Result<Throughput, String> {
    use std::io::Write;
    let mut file = fresh_file(scratch)?;
    let schedule = Schedule::new(args);
    let mut histogram = new_histogram();
    let mut n = 0u32;
    loop {
        let intended = schedule.intended(n);
        if intended >= schedule.until {
            break;
        }
        std::thread::sleep(intended.saturating_duration_since(Instant::now()));
        file.write_all(batch).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        if intended >= schedule.measure_from {
            let _ = histogram.record(intended.elapsed().as_micros().max(1) as u64);
        }
        n += 1;
    }
    Ok(summarize(&histogram))
}
