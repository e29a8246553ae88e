//! `rill bench plugins`: what a batch costs through a WebAssembly plugin, against the same work in
//! native Rust in the same run.
//!
//! For `passthrough` (keeps every record: the machinery alone), `range-filter`, `redact` and the
//! partitioner `key-field-partitioner` (one partition per record, by a JSON field), at 1,
//! 100 and 1000 records of ~100 B JSON per call: the plugin path is one [`PluginInstance`] call
//! (copy into the instance, the SDK decoding and rebuilding the batch with rill-core compiled to
//! Wasm, the host validating and sealing the output's CRC); the native path does the same decode →
//! apply → build → seal in Rust in this process (the ceiling). Reported: ns per record for both,
//! the difference (the per-record overhead of the plugin boundary) and the ratio. Also the cold
//! start: compiling a component (or loading it compiled from the disk cache) and instantiating it.
//! With `--pulley`, the transform cases again, compiled for Pulley, wasmtime's interpreter (what
//! armv7 gateways run), beside Cranelift in the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use rill_core::batch::{self, Batch, BatchHeader, BatchParams, RecordSpec, build_vec, build_vec_without_crc};
use serde_json::Value;

use crate::plugins::{PluginInstance, PluginLimits, PluginRuntime};

#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// Directory of the built components (`cargo xtask plugins` writes them to
    /// `<target dir>/plugins`).
    #[arg(long, default_value = "plugins/target/plugins")]
    plugins: PathBuf,
    /// How long each case runs (seconds), after a warm-up of a fifth of it.
    #[arg(long, default_value_t = 1.0)]
    seconds_per_case: f64,
    /// Repetitions per case; the table reports medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Short runs of a few cases, to check that the benchmark still works (CI).
    #[arg(long)]
    quick: bool,
    /// Also write the markdown tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also run each transform case compiled for Pulley (`pulley64`, wasmtime's interpreter), as
    /// armv7 gateways run plugins, beside Cranelift. Needs a build with the `pulley` feature
    /// (`cargo xtask bench plugins --pulley` makes one).
    #[arg(long)]
    pulley: bool,
}

/// A plugin case: the component, its configuration, and the same work natively.
struct Case {
    plugin: &'static str,
    config: &'static [(&'static str, &'static str)],
    native: Native,
}

/// What the native path does with one record, as the plugin would.
enum Verdict {
    Drop,
    /// Keep the record's bytes as they are.
    Keep,
    Replace(Value),
}

/// `None`: keep every record without parsing it (the passthrough).
type Native = Option<fn(Value) -> Verdict>;

fn in_range(value: Value) -> Verdict {
    match value.pointer("/c").and_then(Value::as_f64) {
        Some(c) if (-40.0..=85.0).contains(&c) => Verdict::Keep,
        _ => Verdict::Drop,
    }
}

fn redact(mut value: Value) -> Verdict {
    if let Some(object) = value.as_object_mut() {
        let removed = object.remove("lat").is_some() | object.remove("lon").is_some();
        if removed {
            return Verdict::Replace(value);
        }
    }
    Verdict::Keep
}

const CASES: &[Case] = &[
    Case { plugin: "passthrough", config: &[], native: None },
    Case { plugin: "range-filter", config: &[("field", "c"), ("min", "-40"), ("max", "85")], native: Some(in_range) },
    Case { plugin: "redact", config: &[("fields", "lat,lon")], native: Some(redact) },
];

/// `count` records of ~100 B JSON; one in ten out of range-filter's range.
fn input(count: usize) -> Result<Vec<u8>, String> {
    let values: Vec<String> = (0..count)
        .map(|i| {
            let c = if i % 10 == 9 { -127.0 } else { 15.0 + (i % 20) as f64 * 0.5 };
            format!(r#"{{"device":"gw-{:03}","c":{c},"lat":52.0917,"lon":5.1214,"seq":"{i:08}"}}"#, i % 100)
        })
        .collect();
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RecordSpec {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(b"gw"),
            value: Some(v.as_bytes()),
            headers: &[],
        })
        .collect();
    build_vec(BatchParams::default(), &specs).map_err(|e| e.to_string())
}

/// The native path: decode, apply `f` to each JSON value (a passthrough keeps the bytes), build
/// the output batch and seal its CRC, as the plugin path does across the boundary.
fn native(input: &[u8], f: Native) -> Result<Vec<u8>, String> {
    let batch = Batch::parse_without_crc(input).map_err(|e| e.to_string())?;
    let header: &BatchHeader = batch.header();
    let records: Vec<_> =
        batch.records().map_err(|e| e.to_string())?.collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    // The records kept, by index, with a new value or `None` to keep their own.
    let mut kept: Vec<(usize, Option<Vec<u8>>)> = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let Some(f) = f else {
            kept.push((index, None));
            continue;
        };
        let parsed: Value = serde_json::from_slice(record.value.unwrap_or_default()).map_err(|e| e.to_string())?;
        match f(parsed) {
            Verdict::Drop => {}
            Verdict::Keep => kept.push((index, None)),
            Verdict::Replace(out) => kept.push((index, Some(serde_json::to_vec(&out).map_err(|e| e.to_string())?))),
        }
    }
    let specs: Vec<RecordSpec<'_>> = kept
        .iter()
        .map(|(index, value)| {
            let record = &records[*index];
            RecordSpec {
                timestamp: header.timestamp_of(record),
                key: record.key,
                value: value.as_deref().or(record.value),
                headers: &[],
            }
        })
        .collect();
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = build_vec_without_crc(BatchParams::default(), &specs).map_err(|e| e.to_string())?;
    batch::seal_crc(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Output partitions of the partitioner case.
const PARTITIONS: u32 = 12;

/// The partitioner's work natively: the JSON field `device` of each record, murmur2.
fn native_partitions(input: &[u8], partitions: u32) -> Result<Vec<u32>, String> {
    let batch = Batch::parse_without_crc(input).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(batch.header().records_count.max(0) as usize);
    for record in batch.records().map_err(|e| e.to_string())? {
        let record = record.map_err(|e| e.to_string())?;
        let parsed: Value = serde_json::from_slice(record.value.unwrap_or_default()).map_err(|e| e.to_string())?;
        let device = parsed.pointer("/device").and_then(Value::as_str).ok_or("no device field")?;
        out.push(rill_core::partitioner::partition_for_key(device.as_bytes(), partitions).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// One row of the per-record table.
fn row(plugin: &str, size: usize, wasm: f64, rust: f64) -> String {
    format!("| {plugin} | {size} | {wasm:.0} | {rust:.0} | {:.0} | {:.2} |\n", wasm - rust, wasm / rust)
}

/// Medians of compiling `bytes`, loading the compiled form from a file (the broker's disk cache),
/// and instantiating + configuring it: `(plugin, component bytes, compile, cached, instantiate)` ms.
fn cold_start(
    runtime: &PluginRuntime,
    plugin: &'static str,
    bytes: &[u8],
    config: &[(String, String)],
    repeat: usize,
) -> Result<(&'static str, usize, f64, f64, f64), String> {
    let (mut compile_ms, mut cached_ms, mut instantiate_ms) = (Vec::new(), Vec::new(), Vec::new());
    // The broker's disk cache: the compiled form, loaded again at the next start.
    let cache = std::env::temp_dir().join(format!("rill-bench-{}-{}.cwasm", std::process::id(), plugin));
    for _ in 0..repeat.max(3) {
        let started = Instant::now();
        let compiled = runtime.compile(bytes).map_err(|e| e.to_string())?;
        compile_ms.push(started.elapsed().as_secs_f64() * 1e3);
        std::fs::write(&cache, runtime.serialize(&compiled).map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", cache.display()))?;
        let started = Instant::now();
        let compiled = runtime.load_compiled(&cache).map_err(|e| e.to_string())?;
        cached_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        PluginInstance::new(runtime, &compiled, config.to_vec(), PluginLimits::default()).map_err(|e| e.to_string())?;
        instantiate_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let _ = std::fs::remove_file(&cache);
    let (compile, cached, instantiate) = (median(&mut compile_ms), median(&mut cached_ms), median(&mut instantiate_ms));
    Ok((plugin, bytes.len(), compile, cached, instantiate))
}

/// Each transform case compiled by Cranelift and for Pulley (`pulley64`) in the same run: what a
/// plugin costs where it is interpreted (armv7 gateways) against where it is compiled.
fn pulley_table(plugins: &std::path::Path, seconds: f64, repeat: usize, sizes: &[usize]) -> Result<String, String> {
    let runtimes = [
        PluginRuntime::new()?,
        PluginRuntime::for_target("pulley64").map_err(|e| {
            format!("{e} (Pulley on this machine needs the `pulley` feature: cargo xtask bench plugins --pulley)")
        })?,
    ];
    let mut table = String::from(
        "\nPulley (wasmtime's interpreter, as on armv7) against Cranelift, same run:\n\n\
         | plugin | records/call | cranelift ns/record | pulley ns/record | pulley / cranelift |\n\
         |---|---|---|---|---|\n",
    );
    for case in CASES {
        let path = plugins.join(format!("{}.wasm", case.plugin));
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: Vec<(String, String)> = case.config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut instances = Vec::new();
        for runtime in &runtimes {
            let compiled = runtime.compile(&bytes).map_err(|e| e.to_string())?;
            instances.push(
                PluginInstance::new(runtime, &compiled, config.clone(), PluginLimits::default())
                    .map_err(|e| e.to_string())?,
            );
        }
        for &size in sizes {
            let batch = input(size)?;
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..repeat {
                for (instance, times) in instances.iter_mut().zip(&mut times) {
                    let transform = || instance.transform("bench", 0, 0, &batch).map(drop).map_err(|e| e.to_string());
                    times.push(time_calls(seconds, transform)? / size as f64);
                }
            }
            let (cranelift, pulley) = (median(&mut times[0]), median(&mut times[1]));
            let ratio = pulley / cranelift;
            table.push_str(&format!("| {} | {size} | {cranelift:.0} | {pulley:.0} | {ratio:.1} |\n", case.plugin));
        }
    }
    Ok(table)
}

/// Calls `f` for `seconds` after a warm-up; returns ns per call.
fn time_calls(seconds: f64, mut f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let warm_up = Instant::now() + Duration::from_secs_f64(seconds / 5.0);
    while Instant::now() < warm_up {
        f()?;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut calls = 0u64;
    while Instant::now() < until {
        f()?;
        calls += 1;
    }
    Ok(started.elapsed().as_nanos() as f64 / calls.max(1) as f64)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(args: PluginsArgs) -> Result<(), String> {
    // Plugin calls are CPU-bound and synchronous: run them off the async runtime.
    tokio::task::spawn_blocking(move || run_blocking(&args)).await.map_err(|e| e.to_string())?
}

/// Every case of the plugin benchmark, and its tables. Long because it is the benchmark's script:
/// cases, warm-up, repeats and report in the order they run.
fn run_blocking(args: &PluginsArgs) -> Result<(), String> {
    let (seconds, repeat, sizes): (f64, usize, &[usize]) =
        if args.quick { (0.1, 1, &[100]) } else { (args.seconds_per_case, args.repeat.max(1), &[1, 100, 1000]) };
    let runtime = PluginRuntime::new()?;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "unset".into());
    let mut out = format!(
        "rill bench plugins: {seconds} s/case after a {} s warm-up, {repeat} repeats (medians), {} build, \
         GLIBC_TUNABLES={tunables}\n\n\
         | plugin | records/call | plugin ns/record | native ns/record | overhead ns/record | ratio |\n\
         |---|---|---|---|---|---|\n",
        seconds / 5.0,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    print!("{out}");
    let mut cold = Vec::new();
    for case in CASES {
        let path = args.plugins.join(format!("{}.wasm", case.plugin));
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("{}: {e} (build the plugins with `cargo xtask plugins`)", path.display()))?;
        let config: Vec<(String, String)> = case.config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        cold.push(cold_start(&runtime, case.plugin, &bytes, &config, repeat)?);
        let compiled = runtime.compile(&bytes).map_err(|e| e.to_string())?;
        let mut instance =
            PluginInstance::new(&runtime, &compiled, config, PluginLimits::default()).map_err(|e| e.to_string())?;
        for &size in sizes {
            let batch = input(size)?;
            let expected = native(&batch, case.native)?;
            let got = instance.transform("bench", 0, 0, &batch).map_err(|e| e.to_string())?;
            if batch::batches(&got).map(|b| b.map(|b| b.header().records_count)).collect::<Result<Vec<_>, _>>()
                != batch::batches(&expected).map(|b| b.map(|b| b.header().records_count)).collect()
            {
                return Err(format!("{}: the plugin and the native path disagree", case.plugin));
            }
            let (mut wasm, mut rust) = (Vec::new(), Vec::new());
            for _ in 0..repeat {
                wasm.push(
                    time_calls(seconds, || {
                        instance.transform("bench", 0, 0, &batch).map(drop).map_err(|e| e.to_string())
                    })? / size as f64,
                );
                rust.push(time_calls(seconds, || native(&batch, case.native).map(drop))? / size as f64);
            }
            let row = row(case.plugin, size, median(&mut wasm), median(&mut rust));
            print!("{row}");
            out.push_str(&row);
        }
    }
    // The partitioner: one partition per record, by the JSON field `device`, over 12 partitions.
    let plugin = "key-field-partitioner";
    let path = args.plugins.join(format!("{plugin}.wasm"));
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("{}: {e} (build the plugins with `cargo xtask plugins`)", path.display()))?;
    let config = vec![("field".to_owned(), "device".to_owned())];
    cold.push(cold_start(&runtime, plugin, &bytes, &config, repeat)?);
    let compiled = runtime.compile(&bytes).map_err(|e| e.to_string())?;
    let mut instance =
        PluginInstance::new(&runtime, &compiled, config, PluginLimits::default()).map_err(|e| e.to_string())?;
    for &size in sizes {
        let batch = input(size)?;
        let expected = native_partitions(&batch, PARTITIONS)?;
        if instance.partition("bench", 0, &batch, PARTITIONS, size).map_err(|e| e.to_string())? != expected {
            return Err(format!("{plugin}: the plugin and the native path disagree"));
        }
        let (mut wasm, mut rust) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            wasm.push(
                time_calls(seconds, || {
                    instance.partition("bench", 0, &batch, PARTITIONS, size).map(drop).map_err(|e| e.to_string())
                })? / size as f64,
            );
            rust.push(time_calls(seconds, || native_partitions(&batch, PARTITIONS).map(drop))? / size as f64);
        }
        let row = row(plugin, size, median(&mut wasm), median(&mut rust));
        print!("{row}");
        out.push_str(&row);
    }
    let mut table = String::from(
        "\nCold start: compile the component with cranelift (first load), or load it compiled from the \
         disk cache (every later start), then instantiate and init it:\n\n\
         | plugin | component bytes | compile ms | load cached ms | instantiate + init ms | cached cold start ms |\n\
         |---|---|---|---|---|---|\n",
    );
    for (plugin, size, compile, cached, instantiate) in cold {
        let start = cached + instantiate;
        table
            .push_str(&format!("| {plugin} | {size} | {compile:.1} | {cached:.2} | {instantiate:.2} | {start:.2} |\n"));
    }
    print!("{table}");
    out.push_str(&table);
    if args.pulley {
        let table = pulley_table(&args.plugins, seconds, repeat, sizes)?;
        print!("{table}");
        out.push_str(&table);
    }
    if let Some(path) = &args.out {
        std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
