//! The plugin runtime with real components built by `cargo xtask plugins` (directory in
//! `RILL_PLUGIN_DIR`): results checked record by record, and misbehaving plugins contained.

use std::time::{Duration, Instant};

use rill::plugins::{
    CompiledPlugin, ErrorKind, PluginError, PluginInstance, PluginKind, PluginLimits, PluginRuntime, SourceMessage,
};
use rill_core::batch::{Batch, BatchParams, RecordSpec, batches, build_vec};

fn compile(runtime: &PluginRuntime, name: &str) -> CompiledPlugin {
    let path = rill_tests::plugin_file(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    runtime.compile(&bytes).unwrap_or_else(|e| panic!("{name} compiles: {e}"))
}

fn config(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn batch_of(values: &[&str]) -> Vec<u8> {
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RecordSpec {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(b"k"),
            value: Some(v.as_bytes()),
            headers: &[],
        })
        .collect();
    build_vec(BatchParams::default(), &specs).unwrap()
}

/// Every value in `bytes`, each batch passing the full check (CRC included).
fn values(bytes: &[u8]) -> Vec<String> {
    batches(bytes)
        .map(|b| b.expect("a valid, sealed batch"))
        .flat_map(|b: Batch<'_>| {
            b.records()
                .unwrap()
                .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn range_filter_keeps_readings_in_range() {
    let runtime = PluginRuntime::new().unwrap();
    let compiled = compile(&runtime, "range-filter");
    let mut filter = PluginInstance::new(
        &runtime,
        &compiled,
        config(&[("field", "c"), ("min", "-40"), ("max", "85")]),
        PluginLimits::default(),
    )
    .unwrap();
    assert_eq!(filter.metadata().name, "range-filter");
    let input = [batch_of(&[r#"{"c": 21.5}"#, r#"{"c": -127}"#, "junk"]), batch_of(&[r#"{"c": 85}"#])].concat();
    let output = filter.transform("sensors", 0, 0, &input).unwrap();
    assert_eq!(values(&output), [r#"{"c": 21.5}"#, r#"{"c": 85}"#]);

    let refused = PluginInstance::new(&runtime, &compiled, config(&[("field", "c")]), PluginLimits::default());
    assert!(matches!(refused, Err(PluginError::Config { .. })), "{refused:?}");
}

#[test]
fn misbehaving_plugins_are_contained_and_the_next_call_works() {
    let runtime = PluginRuntime::new().unwrap();
    let compiled = compile(&runtime, "misbehave");
    let limits = PluginLimits { fuel_per_call: 50_000_000, memory_bytes: 16 << 20 };
    let mut plugin = PluginInstance::new(&runtime, &compiled, Vec::new(), limits).unwrap();
    let fine = batch_of(&["a", "b"]);
    assert_eq!(values(&plugin.transform("t", 0, 0, &fine).unwrap()), ["a", "b"]);

    let started = Instant::now();
    let looped = plugin.transform("t", 0, 2, &batch_of(&["a", "loop"])).unwrap_err();
    assert!(matches!(&looped, PluginError::Trap { reason, .. } if reason.contains("fuel")), "{looped}");
    assert!(started.elapsed() < Duration::from_secs(5), "the fuel budget stops an endless loop");
    assert_eq!(values(&plugin.transform("t", 0, 4, &fine).unwrap()), ["a", "b"], "a fresh instance after the trap");

    let bomb = plugin.transform("t", 0, 6, &batch_of(&["alloc"])).unwrap_err();
    assert!(matches!(bomb, PluginError::Trap { .. }), "{bomb}");
    let panicked = plugin.transform("t", 0, 7, &batch_of(&["trap"])).unwrap_err();
    assert!(matches!(&panicked, PluginError::Trap { reason, .. } if reason.contains("panicked")), "{panicked}");
    let error = plugin.transform("t", 0, 8, &batch_of(&["a", "error"])).unwrap_err();
    assert!(
        matches!(error, PluginError::Returned { kind: ErrorKind::InvalidInput, record_index: Some(1), .. }),
        "{error}"
    );
    assert_eq!(values(&plugin.transform("t", 0, 10, &fine).unwrap()), ["a", "b"]);
}

#[test]
fn what_is_not_a_plugin_component_is_refused_before_it_runs() {
    let runtime = PluginRuntime::new().unwrap();
    for bytes in [b"not wasm".to_vec(), [b"\0asm".as_slice(), &[1, 0, 0, 0]].concat()] {
        assert!(matches!(runtime.compile(&bytes), Err(PluginError::Invalid(_))));
    }
}

#[test]
fn redact_removes_fields() {
    let runtime = PluginRuntime::new().unwrap();
    let compiled = compile(&runtime, "redact");
    let mut redact =
        PluginInstance::new(&runtime, &compiled, config(&[("fields", "lat,lon")]), PluginLimits::default()).unwrap();
    let output = redact.transform("t", 0, 0, &batch_of(&[r#"{"t":1,"lat":52.1,"lon":4.3}"#, "text"])).unwrap();
    assert_eq!(values(&output), [r#"{"t":1}"#, "text"]);
}

/// A stateful plugin's state goes out with `snapshot` and comes back in a new instance.
#[test]
fn downsample_state_survives_a_restart() {
    let runtime = PluginRuntime::new().unwrap();
    let compiled = compile(&runtime, "downsample");
    let settings = config(&[("window_ms", "1000")]);
    let mut plugin = PluginInstance::new(&runtime, &compiled, settings.clone(), PluginLimits::default()).unwrap();
    assert!(plugin.metadata().stateful);
    // batch_of stamps records 1_700_000_000_000 + index.
    assert_eq!(values(&plugin.transform("t", 0, 0, &batch_of(&["a", "b"])).unwrap()), ["a"], "one per window");
    let state = plugin.snapshot().unwrap();
    plugin.commit_state(state.clone());
    assert!(!state.is_empty());

    // A restart: a new instance restored from the committed state keeps the window closed.
    let mut restarted = PluginInstance::new(&runtime, &compiled, settings, PluginLimits::default()).unwrap();
    assert_eq!(values(&restarted.transform("t", 0, 2, &batch_of(&["c"])).unwrap()), ["c"], "no state: kept");
    restarted.restore(state).unwrap();
    assert!(values(&restarted.transform("t", 0, 3, &batch_of(&["d"])).unwrap()).is_empty(), "restored: dropped");
}

#[test]
fn key_field_partitioner_agrees_with_kafka_for_the_field() {
    let runtime = PluginRuntime::new().unwrap();
    let compiled = compile(&runtime, "key-field-partitioner");
    assert_eq!(compiled.kind(), PluginKind::Partitioner);
    let mut partitioner =
        PluginInstance::new(&runtime, &compiled, config(&[("field", "device")]), PluginLimits::default()).unwrap();
    let input = batch_of(&[r#"{"device":"gw-1"}"#, r#"{"device":"gw-2"}"#, r#"{"device":"gw-1"}"#]);
    let chosen = partitioner.partition("t", 0, &input, 6, 3).unwrap();
    let kafka = |key: &str| rill_core::partitioner::partition_for_key(key.as_bytes(), 6).unwrap();
    assert_eq!(chosen, [kafka("gw-1"), kafka("gw-2"), kafka("gw-1")]);
    let wrong = partitioner.transform("t", 0, 0, &input).unwrap_err();
    assert!(matches!(wrong, PluginError::WrongKind { .. }), "{wrong}");
}

#[test]
fn senml_ingests_a_pack_into_one_record_per_measurement() {
    let runtime = PluginRuntime::new().unwrap();
    let compiled = compile(&runtime, "senml");
    assert_eq!(compiled.kind(), PluginKind::Ingest);
    let mut senml = PluginInstance::new(&runtime, &compiled, Vec::new(), PluginLimits::default()).unwrap();
    let message = |payload: &str| SourceMessage {
        payload: payload.as_bytes().to_vec().into(),
        topic: "sensors/greenhouse".into(),
        qos: 1,
        retained: false,
        properties: Vec::new(),
        received_ms: 1_700_000_000_000,
    };
    let pack = r#"[{"bn":"gh/","bt":1.7e9,"u":"Cel","n":"t1","v":21.5},{"n":"t2","v":22}]"#;
    let output = senml.ingest(&[message(pack)]).unwrap();
    assert_eq!(values(&output), [r#"{"n":"gh/t1","u":"Cel","v":21.5}"#, r#"{"n":"gh/t2","v":22.0}"#]);
    let refused = senml.ingest(&[message(pack), message("{}")]).unwrap_err();
    assert!(matches!(refused, PluginError::Returned { record_index: Some(1), .. }), "{refused}");
}
