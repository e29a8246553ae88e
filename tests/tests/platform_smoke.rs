//! What a gateway does with one broker, end to end: the smoke test a cross-built `rill` passes
//! under qemu-user. `cargo xtask cross armv7|aarch64` runs it with `RILL_BIN` naming a wrapper that
//! starts the ARM binary under qemu; natively it runs with the other black-box tests.
//!
//! kcat (librdkafka) produces in every codec and consumes; a kcat consumer group commits; a
//! pipeline runs an example plugin (compiled by Cranelift where it has a backend, run by Pulley,
//! wasmtime's interpreter, on armv7); a restart keeps the records, the group's offsets and the
//! pipeline, which goes on where it was.

use std::time::{Duration, Instant};

use rill_tests::{Http, Running, kcat, plugin_file, stdout_lines};
use serde_json::{Value, json};

/// Emulation is slow: a plugin's compilation under qemu takes seconds, not milliseconds.
const PIPELINE_WAIT: Duration = Duration::from_secs(120);

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// A reading per codec and index, as JSON with a field the pipeline removes.
fn reading(codec: &str, i: usize) -> String {
    json!({"device": format!("{codec}-{i}"), "temp": 20 + i, "secret": "x"}).to_string()
}

fn serve(dir: &std::path::Path) -> (Running, String, String) {
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir));
    let (kafka, http) = (rill.kafka_addr(), rill.http_addr());
    (rill, kafka, http)
}

/// Polls pipeline `name` until it has read everything of its input and runs.
fn wait_caught_up(http: &Http, name: &str, records_in: u64) -> Value {
    let deadline = Instant::now() + PIPELINE_WAIT;
    loop {
        let (status, body) = http.get(&format!("/v1/pipelines/{name}"));
        let done = body["status"]["state"] == "running" && body["status"]["counts"]["records_in"] == records_in;
        if status == 200 && done {
            return body;
        }
        assert!(Instant::now() < deadline, "pipeline {name} did not catch up in {PIPELINE_WAIT:?}: {body:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every value of `topic`, from the beginning.
fn consume(broker: &str, topic: &str) -> Vec<String> {
    stdout_lines(&kcat(broker, &["-C", "-t", topic, "-o", "beginning", "-e", "-f", "%s\\n"], None))
}

/// Reads `topic` in consumer group `group` from its committed offsets (from the beginning where it
/// has none) to the end. (kcat's `-o` would override the committed offsets.)
fn consume_in_group(broker: &str, group: &str, topic: &str) -> Vec<String> {
    let args = ["-G", group, "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\\n", topic];
    stdout_lines(&kcat(broker, &args, None))
}

#[test]
fn a_gateway_stores_processes_and_keeps_readings_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker, http_addr) = serve(dir.path());
    let http = Http::new(&http_addr);

    let mut expected = Vec::new();
    for codec in CODECS {
        let lines: Vec<String> = (0..10).map(|i| reading(codec, i)).collect();
        kcat(&broker, &["-P", "-t", "readings", "-z", codec], Some(&(lines.join("\n") + "\n")));
        expected.extend(lines);
    }
    assert_eq!(consume(&broker, "readings"), expected, "every codec reads back in order");
    assert_eq!(consume_in_group(&broker, "dashboards", "readings"), expected, "the group reads it all");

    let upload = rill_tests::rill()
        .args(["plugin", "upload"])
        .arg(plugin_file("redact"))
        .args(["--admin", &format!("http://{http_addr}")])
        .output()
        .unwrap();
    assert!(upload.status.success(), "plugin upload: {}", String::from_utf8_lossy(&upload.stderr));
    let (status, body) = http.post(
        "/v1/pipelines",
        &json!({"name": "clean", "from": "readings", "to": "clean",
            "plugins": [{"plugin": "redact", "config": {"fields": "secret"}}]}),
    );
    assert_eq!(status, 201, "{body}");
    wait_caught_up(&http, "clean", expected.len() as u64);
    let cleaned = consume(&broker, "clean");
    assert_eq!(cleaned.len(), expected.len());
    for (out, input) in cleaned.iter().zip(&expected) {
        let mut want: Value = serde_json::from_str(input).unwrap();
        want.as_object_mut().unwrap().remove("secret");
        assert_eq!(serde_json::from_str::<Value>(out).unwrap(), want, "the plugin ran");
    }

    rill.stop();
    let (mut rill, broker, http_addr) = serve(dir.path());
    let http = Http::new(&http_addr);
    assert_eq!(consume(&broker, "readings"), expected, "records survive the restart");
    let late = reading("late", 0);
    kcat(&broker, &["-P", "-t", "readings"], Some(&(late.clone() + "\n")));
    assert_eq!(consume_in_group(&broker, "dashboards", "readings"), vec![late], "the group's offsets survive");
    wait_caught_up(&http, "clean", expected.len() as u64 + 1);
    assert_eq!(consume(&broker, "clean").len(), expected.len() + 1, "the pipeline goes on where it was");
    rill.stop();
}
