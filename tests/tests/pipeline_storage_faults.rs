//! A pipeline stays exactly once through storage faults: fsyncs that fail and a full disk while
//! records keep arriving, and a disk that goes away and comes back with only what was synced
//! (under the interval policy, commits that were acknowledged but not yet durable are then gone,
//! the pipeline's included, though none of its own commits failed). Afterwards the output is the
//! plugin chain applied to the source as the store kept it: nothing twice, nothing skipped.
//!
//! Drives rill's library with real plugin components (`RILL_PLUGIN_DIR`) on a simulated disk.

use std::time::{Duration, Instant};

use rill::pipelines::{PipelineSpec, Pipelines};
use rill::plugins::StageSpec;
use rill::plugins::catalog::{self, PluginArtifact};
use rill::plugins::{PluginCatalog, PluginInstance, PluginLimits, PluginRuntime};
use rill::storage::fault::SimDisk;
use rill::storage::{Blob, DurabilityPolicy, Location, PutMode, Store, StoreConfig, TopicConfig};
use rill_core::batch::{BatchParams, RecordSpec, batches, build_vec};

const T0: i64 = 1_700_000_000_000;

/// Stores a component as the admin API's upload does (the address only has to be unique here).
async fn upload(store: &Store, name: &str) {
    let artifact = PluginArtifact {
        name: name.to_owned(),
        version: "0.1.0".to_owned(),
        sha256: format!("{:0>64}", name.len()),
        size_bytes: 0,
        uploaded_ms: 0,
    };
    let blob = Blob { sha256: artifact.sha256.clone(), bytes: std::fs::read(rill_tests::plugin_file(name)).unwrap() };
    let document = serde_json::to_vec(&artifact).unwrap();
    store
        .put_resource(catalog::KIND, &catalog::key(name, "0.1.0"), document, PutMode::Create, Some(blob))
        .await
        .unwrap();
}

fn stage(plugin: &str, config: &[(&str, &str)]) -> StageSpec {
    StageSpec {
        plugin: plugin.to_owned(),
        version: None,
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

const FILTER: &[(&str, &str)] = &[("field", "temp"), ("min", "0")];
const DOWNSAMPLE: &[(&str, &str)] = &[("window_ms", "1000")];

/// `(key, value, timestamp)` of every record of a partition, as the store has it.
fn records(store: &Store, topic: &str) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let mut out = Vec::new();
    let mut offset = store.topic(topic).unwrap().partition(0).unwrap().offsets().log_start_offset;
    loop {
        let read = store.read(topic, 0, offset, 1 << 20).unwrap();
        if read.records.is_empty() {
            return out;
        }
        for parsed in batches(&read.records) {
            let parsed = parsed.unwrap();
            let base_timestamp = parsed.header().base_timestamp;
            for r in parsed.records().unwrap() {
                let r = r.unwrap();
                if (r.offset(parsed.base_offset()) as u64) >= offset {
                    out.push((r.key.unwrap().to_vec(), r.value.unwrap().to_vec(), r.timestamp(base_timestamp)));
                }
            }
            offset = parsed.last_offset() as u64 + 1;
        }
    }
}

/// The chain applied in-process to `input`, in one pass.
fn expected(input: &[(Vec<u8>, Vec<u8>, i64)]) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let runtime = PluginRuntime::new().unwrap();
    let load = |name: &str, config: &[(&str, &str)]| {
        let compiled = runtime.compile(&std::fs::read(rill_tests::plugin_file(name)).unwrap()).unwrap();
        let config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        PluginInstance::new(&runtime, &compiled, config, PluginLimits::default()).unwrap()
    };
    let (mut filter, mut downsample) = (load("range-filter", FILTER), load("downsample", DOWNSAMPLE));
    let mut out = Vec::new();
    for chunk in input.chunks(1000) {
        let specs: Vec<RecordSpec<'_>> = chunk
            .iter()
            .map(|(k, v, t)| RecordSpec { timestamp: *t, key: Some(k), value: Some(v), headers: &[] })
            .collect();
        let batch = build_vec(BatchParams::default(), &specs).unwrap();
        let kept = downsample.transform("in", 0, 0, &filter.transform("in", 0, 0, &batch).unwrap()).unwrap();
        out.extend(records_of(&kept));
    }
    out
}

/// Waits until storage works and the pipeline has processed everything the source holds.
async fn caught_up(store: &Store, pipelines: &Pipelines) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = pipelines.get("p").unwrap();
        let done = store.is_open() && view.status.lag == 0 && view.status.state == "running";
        if done && store.flush().await.is_ok() && pipelines.get("p").unwrap().status.lag == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the pipeline did not catch up: {view:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn records_of(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    let mut out = Vec::new();
    for parsed in batches(bytes) {
        let parsed = parsed.unwrap();
        let base_timestamp = parsed.header().base_timestamp;
        for r in parsed.records().unwrap() {
            let r = r.unwrap();
            out.push((r.key.unwrap().to_vec(), r.value.unwrap().to_vec(), r.timestamp(base_timestamp)));
        }
    }
    out
}

/// 100 readings from 20 devices, 50 ms apart, from reading `first` on.
fn readings(first: usize) -> Vec<u8> {
    let values: Vec<(String, String)> = (first..first + 100)
        .map(|n| (format!("dev-{}", n % 20), format!("{{\"temp\": {}, \"seq\": {n}}}", (n % 29) as i64 - 4)))
        .collect();
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, (k, v))| RecordSpec {
            timestamp: T0 + (first + i) as i64 * 50,
            key: Some(k.as_bytes()),
            value: Some(v.as_bytes()),
            headers: &[],
        })
        .collect();
    build_vec(BatchParams::default(), &specs).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_stays_exactly_once_through_failed_fsyncs_a_full_disk_and_a_disk_that_goes_away() {
    let disk = SimDisk::new();
    let config = StoreConfig {
        durability: DurabilityPolicy::Interval(Duration::from_millis(20)),
        cache_bytes: 8 << 20,
        ..StoreConfig::default()
    };
    let store = Store::open(Location::Backend(disk.factory()), config).unwrap();
    store.create_topic("in", 1, TopicConfig { retention_ms: None, ..TopicConfig::default() }).await.unwrap();
    upload(&store, "range-filter").await;
    upload(&store, "downsample").await;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let catalog = PluginCatalog::new(PluginRuntime::new().unwrap(), store.clone(), None);
    let pipelines = Pipelines::for_store(store.clone(), catalog, stopping);
    let spec: PipelineSpec = serde_json::from_value(serde_json::json!({
        "name": "p", "from": "in", "to": "out", "plugins": [], "pause_after_failures": 1000
    }))
    .unwrap();
    let spec = PipelineSpec { plugins: vec![stage("range-filter", FILTER), stage("downsample", DOWNSAMPLE)], ..spec };
    pipelines.create(spec).await.unwrap();

    let mut next = 0;
    let mut refused = 0;
    for round in 0..12 {
        for _ in 0..10 {
            // Refused while storage recovers from the last fault: tried again until stored.
            while store.append("in", 0, readings(next)).await.is_err() {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            next += 100;
        }
        match round % 3 {
            // fsync fails: the writer reopens the file and acknowledged commits since the last
            // sync (source appends and pipeline commits alike) are gone.
            0 => {
                disk.fail_syncs(true);
                tokio::time::sleep(Duration::from_millis(60)).await;
                disk.fail_syncs(false);
            }
            // The disk fills up: commits fail until there is room again.
            1 => {
                disk.set_capacity(Some(disk.size_bytes()));
                tokio::time::sleep(Duration::from_millis(60)).await;
                disk.set_capacity(None);
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }

    caught_up(&store, &pipelines).await;

    // The case no commit of the pipeline sees fail: it processes records that are acknowledged
    // but not yet durable, then the disk goes away (a power cut of the disk alone, say a USB
    // disk) and comes back with what was synced: neither those records nor the pipeline's commit.
    // New records then take their offsets; the pipeline must carry on from what the file says,
    // not from where its memory was.
    let generation = store.generation();
    store.append("in", 0, readings(next)).await.unwrap();
    let lost = next;
    next += 100;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pipelines.get("p").unwrap().status.lag > 0 {
        assert!(Instant::now() < deadline, "the pipeline did not process the unsynced records");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    disk.cut_power_after(0);
    while store.generation() == generation {
        assert!(Instant::now() < deadline, "the failed sync did not reopen the store");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    disk.restore_power(None);
    for _ in 0..3 {
        while store.append("in", 0, readings(next)).await.is_err() {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        next += 100;
    }
    caught_up(&store, &pipelines).await;
    let view = pipelines.get("p").unwrap();
    assert_eq!(view.status.state, "running", "{view:#?}");
    let input = records(&store, "in");
    let output = records(&store, "out");
    let want = expected(&input);
    eprintln!("{} of {next} readings stored ({refused} appends refused), {} out", input.len(), output.len());
    assert!(input.len() < next, "failed fsyncs lost acknowledged appends, as the interval policy allows");
    let marker = format!("\"seq\": {lost}}}");
    assert!(
        !input.iter().any(|(_, value, _)| value.ends_with(marker.as_bytes())),
        "the readings appended before the disk went away are gone"
    );
    assert!(refused > 0, "the faults refused appends");
    assert_eq!(view.status.counts.records_in, input.len() as u64, "every stored record processed once");
    assert_eq!(output.len(), want.len(), "no duplicate, no gap");
    assert!(output == want, "the output is the chain applied to the stored input");
    let _ = stop.send(true);
    pipelines.shutdown().await;
    store.shutdown().await;
}
