//! Pipelines on the real `rill` binary: every example plugin uploaded with the CLI and driven with
//! a Kafka client (rskafka); misbehaving plugins contained (dead letters, self-pause) while the
//! broker serves others; upgrades; and exactly-once output across `kill -9` and an upgrade.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rill::plugins::{PluginInstance, PluginLimits, PluginRuntime};
use rill_core::batch::{BatchParams, RecordSpec, batches, build_vec};
use rill_tests::kafka::{connect, partition, read_all};
use rill_tests::{Http, Running, WAIT, plugin_file};
use rskafka::client::partition::Compression;
use rskafka::record::Record;
use serde_json::{Value, json};

/// Runs the `rill` CLI against the broker's admin API; returns stdout, or panics with stderr.
fn cli(http: &str, args: &[&str]) -> String {
    let output = rill_tests::rill().args(args).args(["--admin", &format!("http://{http}")]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "rill {args:?}: {stderr}");
    stdout.into_owned()
}

fn record(key: &str, value: &str, timestamp_ms: i64) -> Record {
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: BTreeMap::new(),
        timestamp: Utc.timestamp_millis_opt(timestamp_ms).unwrap(),
    }
}

/// Polls pipeline `name` until `done` holds for its status (or panics after [`WAIT`]).
fn wait_for_pipeline(http: &Http, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http.get(&format!("/v1/pipelines/{name}"));
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "pipeline {name}: no {what} in {WAIT:?}: {body:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn caught_up(view: &Value) -> bool {
    view["status"]["lag"] == 0 && view["status"]["state"] == "running"
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn values(records: &[Record]) -> Vec<Value> {
    records.iter().map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_run_in_pipelines_on_a_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let (kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
    let http = Http::new(&http_addr);
    for plugin in ["range-filter", "redact", "downsample", "key-field-partitioner", "senml"] {
        let out = cli(&http_addr, &["plugin", "upload", plugin_file(plugin).to_str().unwrap()]);
        assert!(out.contains(&format!("stored {plugin} ")), "{out}");
    }
    let client = connect(&kafka).await;
    let controller = client.controller_client().unwrap();
    controller.create_topic("readings", 2, 1, 5_000).await.unwrap();
    controller.create_topic("by-device", 3, 1, 5_000).await.unwrap();

    // Readings from four devices, every 100 ms, on both partitions.
    let t0 = now_ms() - 60_000;
    let mut produced: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for p in 0..2 {
        let batch: Vec<Record> = (0..40)
            .map(|i| {
                let device = format!("d{}", i % 4 + p as usize * 4);
                let value = json!({"device": device, "temp": 10 + i, "lat": 48.1, "lon": 11.5}).to_string();
                record(&device, &value, t0 + i as i64 * 100)
            })
            .collect();
        partition(&client, "readings", p).await.produce(batch.clone(), Compression::Lz4).await.unwrap();
        produced.insert(p, batch);
    }

    // range-filter, created with the CLI: only 20..=29 °C.
    let out = cli(
        &http_addr,
        &[
            "pipeline",
            "create",
            "warm",
            "--from",
            "readings",
            "--to",
            "warm",
            "--plugin",
            "range-filter",
            "--config",
            "field=temp",
            "--config",
            "min=20",
            "--config",
            "max=29",
        ],
    );
    assert!(out.contains("range-filter@"), "{out}");
    // redact, then key-field-partitioner choosing the partition by device.
    let (status, body) = http.post(
        "/v1/pipelines",
        &json!({"name": "private", "from": "readings", "to": "by-device",
            "plugins": [{"plugin": "redact", "config": {"fields": "lat,lon"}}],
            "partitioner": {"plugin": "key-field-partitioner", "config": {"field": "device"}}}),
    );
    assert_eq!(status, 201, "{body}");
    // downsample: one reading per device per second.
    cli(
        &http_addr,
        &[
            "pipeline",
            "create",
            "sampled",
            "--from",
            "readings",
            "--to",
            "sampled",
            "--plugin",
            "downsample",
            "--config",
            "window_ms=1000",
        ],
    );

    let warm = wait_for_pipeline(&http, "warm", "catch-up", caught_up);
    assert_eq!(warm["status"]["counts"]["records_in"], 80);
    let mut warm_temps: Vec<i64> = Vec::new();
    for p in 0..2 {
        let out = read_all(&partition(&client, "warm", p).await).await;
        warm_temps.extend(values(&out).iter().map(|v| v["temp"].as_i64().unwrap()));
    }
    warm_temps.sort();
    assert_eq!(warm_temps, (20..=29).flat_map(|t| [t, t]).collect::<Vec<_>>());

    wait_for_pipeline(&http, "private", "catch-up", caught_up);
    let mut devices_by_partition: BTreeMap<String, i32> = BTreeMap::new();
    let mut redacted = 0;
    for p in 0..3 {
        for v in values(&read_all(&partition(&client, "by-device", p).await).await) {
            assert!(v.get("lat").is_none() && v.get("lon").is_none(), "{v}");
            let device = v["device"].as_str().unwrap().to_owned();
            assert_eq!(*devices_by_partition.entry(device).or_insert(p), p, "one device, one partition");
            redacted += 1;
        }
    }
    assert_eq!((redacted, devices_by_partition.len()), (80, 8));

    let sampled = wait_for_pipeline(&http, "sampled", "catch-up", caught_up);
    // 40 readings 100 ms apart from 4 devices, 400 ms apart per device: one in three kept.
    for p in 0..2 {
        let kept = read_all(&partition(&client, "sampled", p).await).await;
        let expected: Vec<&Record> =
            produced[&p].iter().enumerate().filter(|(i, _)| (i / 4) % 3 == 0 && (i / 4) < 10).map(|(_, r)| r).collect();
        assert_eq!(kept.len(), expected.len(), "partition {p}");
        for (got, want) in kept.iter().zip(expected) {
            assert_eq!((&got.key, &got.value, got.timestamp), (&want.key, &want.value, want.timestamp));
        }
    }
    assert_eq!(sampled["status"]["history"].as_array().unwrap().len(), 1);

    // senml, an ingest plugin: raw packs (keyed by the MQTT topic they came from) to one record
    // per measurement.
    controller.create_topic("raw-senml", 1, 1, 5_000).await.unwrap();
    cli(
        &http_addr,
        &["pipeline", "create", "measurements", "--from", "raw-senml", "--to", "measurements", "--plugin", "senml"],
    );
    let pack = json!([{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.7e9, "bu": "Cel", "n": "temp", "v": 23.1},
        {"n": "hum", "u": "%RH", "v": 40, "t": 1}])
    .to_string();
    let raw = partition(&client, "raw-senml", 0).await;
    raw.produce(vec![record("sensors/dev1/telemetry", &pack, now_ms())], Compression::NoCompression).await.unwrap();
    wait_for_pipeline(&http, "measurements", "catch-up", caught_up);
    let measured = read_all(&partition(&client, "measurements", 0).await).await;
    let names: Vec<String> = measured.iter().map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap()).collect();
    assert_eq!(names, ["urn:dev:ow:10e2073a01080063:temp", "urn:dev:ow:10e2073a01080063:hum"]);
    assert_eq!(measured[1].timestamp.timestamp_millis(), 1_700_000_001_000, "time from the pack, base time added");

    // Upgrade downsample to another version: the state goes with it (a device just kept stays
    // quiet), and the history says which version wrote which offsets.
    let component = plugin_file("downsample");
    cli(&http_addr, &["plugin", "upload", component.to_str().unwrap(), "--name", "downsample", "--version", "9.0.0"]);
    let out = cli(
        &http_addr,
        &["pipeline", "upgrade", "sampled", "--plugin", "downsample@9.0.0", "--config", "window_ms=1000"],
    );
    assert!(out.contains("downsample@9.0.0"), "{out}");
    let last = produced[&0][39].timestamp.timestamp_millis();
    let more = vec![record("d3", "{\"temp\": 1}", last + 100), record("d3", "{\"temp\": 2}", last + 1_000)];
    partition(&client, "readings", 0).await.produce(more, Compression::NoCompression).await.unwrap();
    let sampled = wait_for_pipeline(&http, "sampled", "catch-up", caught_up);
    let kept = read_all(&partition(&client, "sampled", 0).await).await;
    assert_eq!(
        kept.last().unwrap().value.as_deref(),
        Some(b"{\"temp\": 2}".as_slice()),
        "the one 100 ms after is dropped"
    );
    let history = sampled["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1]["plugins"], json!(["downsample@9.0.0"]));
    let first_range = history[0]["outputs"]["0"].as_array().unwrap();
    let second_range = history[1]["outputs"]["0"].as_array().unwrap();
    assert_eq!(second_range[0].as_u64().unwrap(), first_range[1].as_u64().unwrap() + 1, "{history:?}");
    let (status, body) = http.delete("/v1/plugins/downsample/9.0.0");
    assert_eq!(status, 409, "a plugin in use is not deleted: {body}");

    // A restart: every pipeline comes back where it was, nothing processed twice.
    rill.stop();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let (kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
    rill.wait_for("pipelines started").unwrap();
    let http = Http::new(&http_addr);
    let listed = cli(&http_addr, &["pipeline", "list"]);
    for name in ["warm", "private", "sampled", "measurements"] {
        assert!(listed.lines().any(|l| l.starts_with(name) && l.contains("running")), "{listed}");
    }
    let client = connect(&kafka).await;
    partition(&client, "readings", 1)
        .await
        .produce(vec![record("d9", "{\"temp\": 25}", now_ms())], Compression::NoCompression)
        .await
        .unwrap();
    wait_for_pipeline(&http, "warm", "the new record", |v| v["status"]["counts"]["records_in"] == 83);
    let mut warm_count = 0;
    for p in 0..2 {
        warm_count += read_all(&partition(&client, "warm", p).await).await.len();
    }
    assert_eq!(warm_count, 21, "20 before the restart, one after, none twice");
    let described = cli(&http_addr, &["pipeline", "describe", "sampled"]);
    assert!(described.contains("downsample@9.0.0") && described.contains("history"), "{described}");
    cli(&http_addr, &["pipeline", "delete", "measurements"]);
    assert_eq!(http.get("/v1/pipelines/measurements").0, 404);
    rill.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_are_dead_lettered_and_pause_the_pipeline_not_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let (kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
    let http = Http::new(&http_addr);
    cli(&http_addr, &["plugin", "upload", plugin_file("misbehave").to_str().unwrap()]);
    let client = connect(&kafka).await;
    client.controller_client().unwrap().create_topic("chaos", 1, 1, 5_000).await.unwrap();
    let (status, body) = http.post(
        "/v1/pipelines",
        &json!({"name": "chaos", "from": "chaos", "to": "calm", "plugins": [{"plugin": "misbehave"}],
            "pause_after_failures": 3, "limits": {"fuel_per_call": 50_000_000, "memory_bytes": 16_777_216}}),
    );
    assert_eq!(status, 201, "{body}");
    let chaos = partition(&client, "chaos", 0).await;
    // Each produce is one batch: good ones between bad ones, so no three failures in a row.
    for value in ["ok1", "loop", "ok2", "alloc", "ok3", "trap", "ok4", "error", "ok5", "retry", "ok6"] {
        chaos.produce(vec![record("k", value, now_ms())], Compression::NoCompression).await.unwrap();
    }
    let view = wait_for_pipeline(&http, "chaos", "catch-up", caught_up);
    let header = |r: &Record, name: &str| String::from_utf8(r.headers[name].clone()).unwrap();
    assert_eq!(view["status"]["counts"]["batches_failed"], 5, "{view:#}");
    let calm = read_all(&partition(&client, "calm", 0).await).await;
    let kept: Vec<&[u8]> = calm.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(kept, [b"ok1", b"ok2", b"ok3", b"ok4", b"ok5", b"ok6"].map(|v| v.as_slice()));
    let letters = read_all(&partition(&client, "chaos.dlq", 0).await).await;
    let misdeeds: Vec<&[u8]> = letters.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(misdeeds, [b"loop".as_slice(), b"alloc", b"trap", b"error", b"retry"]);
    assert!(header(&letters[4], "rill.dlq.error").contains("Retryable"), "{:?}", letters[4].headers);
    assert!(header(&letters[0], "rill.dlq.error").contains("fuel"), "{:?}", letters[0].headers);
    assert!(header(&letters[3], "rill.dlq.error").contains("error on purpose"));
    assert!(header(&letters[0], "rill.dlq.plugin").starts_with("misbehave@"));
    assert_eq!(header(&letters[1], "rill.dlq.source.topic"), "chaos");
    assert_eq!(header(&letters[1], "rill.dlq.source.offset"), "3");

    // Three failures in a row pause it, saying why; the broker serves everyone else meanwhile.
    for _ in 0..3 {
        chaos.produce(vec![record("k", "error", now_ms())], Compression::NoCompression).await.unwrap();
    }
    let paused = wait_for_pipeline(&http, "chaos", "pause", |v| v["status"]["state"] == "paused");
    assert!(paused["status"]["reason"].as_str().unwrap().contains("3 failed batches in a row"), "{paused:#}");
    chaos.produce(vec![record("k", "ok7", now_ms())], Compression::NoCompression).await.unwrap();
    client.controller_client().unwrap().create_topic("other", 1, 1, 5_000).await.unwrap();
    let other = partition(&client, "other", 0).await;
    other.produce(vec![record("k", "still serving", now_ms())], Compression::NoCompression).await.unwrap();
    assert_eq!(read_all(&other).await.len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http.get("/v1/pipelines/chaos").1["status"]["lag"], 1, "paused: ok7 waits");
    let metrics = http.text("/metrics");
    assert!(metrics.contains("rill_pipeline_batches_failed_total{pipeline=\"chaos\"} 8"), "{metrics}");
    assert!(metrics.contains("rill_pipeline_paused{pipeline=\"chaos\"} 1"), "{metrics}");
    cli(&http_addr, &["pipeline", "resume", "chaos"]);
    wait_for_pipeline(&http, "chaos", "catch-up", caught_up);
    assert_eq!(read_all(&partition(&client, "calm", 0).await).await.len(), 7);
    rill.stop();
    let retries = rill.log.iter().filter(|line| line.contains("plugin asked to retry")).count();
    assert_eq!(retries, 3, "a retryable batch is tried three more times before it is dead-lettered");
}

/// The chain the exactly-once test runs, applied in-process to a partition's whole input: what
/// the output must equal, record for record.
fn expected_output(input: &[Record]) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let runtime = PluginRuntime::new().unwrap();
    let load = |name: &str, config: &[(&str, &str)]| {
        let compiled = runtime.compile(&std::fs::read(plugin_file(name)).unwrap()).unwrap();
        let config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        PluginInstance::new(&runtime, &compiled, config, PluginLimits::default()).unwrap()
    };
    let mut filter = load("range-filter", &[("field", "temp"), ("min", "0")]);
    let mut downsample = load("downsample", &[("window_ms", "1000")]);
    let mut out = Vec::new();
    for chunk in input.chunks(1000) {
        let specs: Vec<RecordSpec<'_>> = chunk
            .iter()
            .map(|r| RecordSpec {
                timestamp: r.timestamp.timestamp_millis(),
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &[],
            })
            .collect();
        let batch = build_vec(BatchParams::default(), &specs).unwrap();
        let filtered = filter.transform("in", 0, 0, &batch).unwrap();
        let sampled = downsample.transform("in", 0, 0, &filtered).unwrap();
        for b in batches(&sampled) {
            let b = b.unwrap();
            let base_timestamp = b.header().base_timestamp;
            for r in b.records().unwrap() {
                let r = r.unwrap();
                out.push((r.key.unwrap().to_vec(), r.value.unwrap().to_vec(), r.timestamp(base_timestamp)));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_output_is_exactly_once_across_kill_9_and_an_upgrade() {
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let (mut kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
    cli(&http_addr, &["plugin", "upload", plugin_file("range-filter").to_str().unwrap()]);
    cli(&http_addr, &["plugin", "upload", plugin_file("downsample").to_str().unwrap()]);
    let downsample = plugin_file("downsample");
    cli(&http_addr, &["plugin", "upload", downsample.to_str().unwrap(), "--name", "downsample", "--version", "0.2.0"]);
    connect(&kafka).await.controller_client().unwrap().create_topic("in", 2, 1, 5_000).await.unwrap();
    cli(
        &http_addr,
        &[
            "pipeline",
            "create",
            "eo",
            "--from",
            "in",
            "--to",
            "out",
            "--plugin",
            "range-filter",
            "--plugin",
            "downsample",
            "--config",
            "range-filter:field=temp",
            "--config",
            "range-filter:min=0",
            "--config",
            "downsample:window_ms=1000",
        ],
    );

    let t0 = now_ms() - 3_600_000;
    let mut produced: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut http_addr = http_addr;
    let mut killed_mid_way = 0;
    for round in 0..ROUNDS {
        // Paused while the round is produced, so the kill lands while it works through it.
        let http = Http::new(&http_addr);
        assert_eq!(http.post("/v1/pipelines/eo/pause", &json!({})).0, 200);
        let client = connect(&kafka).await;
        for p in 0..2 {
            let client = partition(&client, "in", p).await;
            for chunk in 0..PER_ROUND / 500 {
                let batch: Vec<Record> = (0..500)
                    .map(|i| {
                        let n = round * PER_ROUND + chunk * 500 + i;
                        // Some below zero (filtered); 50 devices per partition (a key stays in
                        // one partition, as with keyed producers), 20 ms apart.
                        let value = json!({"temp": (n % 37) as i64 - 5, "seq": n}).to_string();
                        record(&format!("dev-{p}-{}", n % 50), &value, t0 + n as i64 * 20)
                    })
                    .collect();
                client.produce(batch.clone(), Compression::Zstd).await.unwrap();
                produced.entry(p).or_default().extend(batch);
            }
        }
        assert_eq!(http.post("/v1/pipelines/eo/resume", &json!({})).0, 200);
        if round == ROUNDS / 2 {
            // An upgrade while the pipeline works: swapped between two batches, state carried.
            let chain = json!({"plugins": [
                {"plugin": "range-filter", "config": {"field": "temp", "min": "0"}},
                {"plugin": "downsample", "version": "0.2.0", "config": {"window_ms": "1000"}}]});
            let (status, body) = http.post("/v1/pipelines/eo/upgrade", &chain);
            assert_eq!(status, 200, "{body}");
        }
        std::thread::sleep(Duration::from_millis(5 + 10 * round as u64));
        let lag = http.get("/v1/pipelines/eo").1["status"]["lag"].as_u64().unwrap_or(0);
        killed_mid_way += usize::from(lag > 0);
        rill.signal(libc::SIGKILL);
        rill.wait_exit();
        rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
        (kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
        rill.wait_for("pipelines started").unwrap();
    }
    let http = Http::new(&http_addr);
    let view = wait_for_pipeline(&http, "eo", "catch-up", caught_up);
    eprintln!("{killed_mid_way} of {ROUNDS} kills landed while the pipeline had records to process");
    assert!(killed_mid_way > 0, "no kill landed while the pipeline had records to process");
    assert_eq!(view["status"]["counts"]["records_in"], (ROUNDS * PER_ROUND * 2) as u64, "{view:#}");
    let history = view["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{view:#}");
    assert_eq!(history[1]["plugins"][1], "downsample@0.2.0");
    let client = connect(&kafka).await;
    for p in 0..2 {
        let got: Vec<(Vec<u8>, Vec<u8>, i64)> = read_all(&partition(&client, "out", p).await)
            .await
            .into_iter()
            .map(|r| (r.key.unwrap(), r.value.unwrap(), r.timestamp.timestamp_millis()))
            .collect();
        let want = expected_output(&produced[&p]);
        assert_eq!(got.len(), want.len(), "partition {p}: no duplicate, no gap; {view:#}");
        assert!(got == want, "partition {p}: the output is the chain applied to the input");
    }
    rill.stop();
}
