//! The status page as a person sees it: headless Chromium (Debian's, installed by
//! `cargo xtask test`) loads it from the real broker with data in it; the test checks what it
//! rendered and keeps a screenshot as an artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use rill_tests::{Http, Running, rill, serve};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::json;

/// Headless Chromium with the flags a CI container needs, its profile in `profile`.
fn chromium(profile: &Path) -> Command {
    let mut command = Command::new("chromium");
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .env("HOME", profile);
    command
}

fn run(command: &mut Command) -> String {
    let output =
        command.output().unwrap_or_else(|e| panic!("chromium must be installed (cargo xtask test installs it): {e}"));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_topics_groups_and_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Running::start(serve().arg("--data-dir").arg(dir.path()));
    let kafka = broker.kafka_addr();
    let http_addr = broker.http_addr();
    let http = Http::new(&http_addr);
    assert_eq!(http.post("/v1/topics", &json!({"name": "greenhouse.temperature", "partitions": 3})).0, 201);

    let client = ClientBuilder::new(vec![kafka]).build().await.unwrap();
    let partition = client.partition_client("greenhouse.temperature", 1, UnknownTopicHandling::Error).await.unwrap();
    let records: Vec<Record> = (0..1234)
        .map(|i| Record {
            key: None,
            value: Some(format!("{}", 18.0 + (i % 40) as f64 / 10.0).into_bytes()),
            headers: BTreeMap::new(),
            timestamp: Utc::now(),
        })
        .collect();
    partition.produce(records, Compression::NoCompression).await.unwrap();
    let reset = json!({"to": {"offset": 1000}, "topic": "greenhouse.temperature", "partitions": [1]});
    assert_eq!(http.post("/v1/groups/dashboards/reset-offsets", &reset).0, 200);
    let component = dir.path().join("smoothing.wasm");
    std::fs::write(&component, [b"\0asm".as_slice(), &[0x0d, 0, 1, 0], b"demo"].concat()).unwrap();
    let admin = format!("http://{http_addr}");
    let upload = rill()
        .args(["plugin", "upload"])
        .arg(&component)
        .args(["--name", "smoothing", "--version", "0.3.1"])
        .args(["--admin", &admin])
        .output()
        .unwrap();
    assert!(upload.status.success(), "{}", String::from_utf8_lossy(&upload.stderr));

    let url = format!("http://{http_addr}/");
    let profile = tempfile::tempdir().unwrap();
    let dom = run(chromium(profile.path()).arg("--dump-dom").arg(&url));
    for expected in ["greenhouse.temperature", "1,234", "dashboards", "234", "smoothing", "0.3.1", "ready"] {
        assert!(dom.contains(expected), "the rendered page shows {expected:?}:\n{dom}");
    }
    assert!(dom.contains("<svg"), "each topic has its rate chart");
    let partition_row = "<td>greenhouse.temperature</td><td>1</td><td>0</td><td>1,234</td>";
    assert!(dom.contains(partition_row), "partition 1's offsets are shown:\n{dom}");

    let artifact = artifact_dir().join("status-page.png");
    run(chromium(profile.path())
        .arg(format!("--screenshot={}", artifact.display()))
        .arg("--window-size=1280,800")
        .arg(&url));
    let png = std::fs::read(&artifact).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a real screenshot: {} bytes", png.len());
    eprintln!("status page screenshot: {}", artifact.display());

    // `rill status` shows the same on one screen.
    let status = rill().args(["status", "--admin", &admin]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    for expected in ["ready", "greenhouse.temperature", "1,234", "dashboards", "smoothing 0.3.1"] {
        assert!(text.contains(expected), "rill status shows {expected:?}:\n{text}");
    }
    drop(client);
    broker.stop();
}

/// Where test artifacts go: `RILL_TEST_ARTIFACTS`, or cargo's scratch directory for tests.
fn artifact_dir() -> PathBuf {
    let dir = std::env::var_os("RILL_TEST_ARTIFACTS")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
