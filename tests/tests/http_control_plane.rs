//! The real `rill` binary's control plane: health and readiness, the admin API with a token,
//! and `/metrics` read by a Prometheus text parser against traffic a Kafka client made.

use std::collections::BTreeMap;

use chrono::Utc;
use rill_tests::{Http, Running, serve};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::json;

fn records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(b"21.5".to_vec()),
            headers: BTreeMap::new(),
            timestamp: Utc::now(),
        })
        .collect()
}

/// Every sample of `/metrics`, by metric name and labels.
fn scrape(http: &Http) -> prometheus_parse::Scrape {
    let text = http.text("/metrics");
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics ends with # EOF");
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("the text format parses")
}

/// The value of the one sample of `metric` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(matching.len(), 1, "one sample of {metric} with {labels:?}, found {}", matching.len());
    match &matching[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{metric} is not a single number: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_and_metrics_match_kafka_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(serve().arg("--data-dir").arg(dir.path()).env("RILL_ADMIN_TOKEN", "s3cret"));
    let kafka_addr = rill.kafka_addr();
    let anonymous = Http::new(&rill.http_addr());
    let admin = Http::new(&rill.http_addr()).with_token("s3cret");

    // The real broker's listeners, each serving, and a writer that takes writes.
    let healthy = json!({
        "status": "ok",
        "writer": {"state": "accepting"},
        "listeners": {"http": "serving", "kafka": "serving"},
    });
    assert_eq!(anonymous.get("/health"), (200, healthy));
    let (status, ready) = anonymous.get("/ready");
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "{ready}");

    let create = json!({"name": "sensors", "partitions": 2});
    let (status, body) = anonymous.post("/v1/topics", &create);
    assert_eq!((status, &body["error"]["code"]), (401, &json!("unauthorized")), "{body}");
    let (status, body) = admin.post("/v1/topics", &create);
    assert_eq!(status, 201, "{body}");

    // Traffic from a Kafka client nobody here wrote.
    let client = ClientBuilder::new(vec![kafka_addr]).build().await.expect("rskafka connects");
    let p0 = client.partition_client("sensors", 0, UnknownTopicHandling::Error).await.unwrap();
    let p1 = client.partition_client("sensors", 1, UnknownTopicHandling::Error).await.unwrap();
    for _ in 0..3 {
        p0.produce(records(10), Compression::NoCompression).await.expect("produce");
    }
    p1.produce(records(5), Compression::Lz4).await.expect("produce");
    let mut fetched = 0;
    let mut offset = 0;
    while fetched < 30 {
        let (batch, _) = p0.fetch_records(offset, 1..1_000_000, 1_000).await.expect("fetch");
        fetched += batch.len();
        offset = batch.last().map_or(offset, |r| r.offset + 1);
    }
    let controller = client.controller_client().unwrap();
    controller.create_topic("sensors", 2, 1, 5_000).await.expect_err("the topic exists");

    // A consumer group known by its committed offsets: set them through the admin API.
    let (status, body) =
        admin.post("/v1/groups/dashboard/reset-offsets", &json!({"to": "earliest", "topic": "sensors"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lag"], 35, "{body}");

    let scrape = scrape(&anonymous);
    let p = |partition: &'static str| [("topic", "sensors"), ("partition", partition)];
    assert_eq!(value(&scrape, "rill_partition_records_in_total", &p("0")), 30.0);
    assert_eq!(value(&scrape, "rill_partition_records_in_total", &p("1")), 5.0);
    assert_eq!(value(&scrape, "rill_partition_log_end_offset", &p("0")), 30.0);
    assert_eq!(value(&scrape, "rill_partition_high_watermark", &p("1")), 5.0);
    assert_eq!(value(&scrape, "rill_partition_records_out_total", &p("0")), 30.0);
    assert_eq!(value(&scrape, "rill_partition_records_out_total", &p("1")), 0.0);
    let (_, topic) = anonymous.get("/v1/topics/sensors");
    let stored = topic["partitions"][0]["size_bytes"].as_f64().unwrap();
    assert_eq!(value(&scrape, "rill_partition_bytes_in_total", &p("0")), stored);
    assert_eq!(value(&scrape, "rill_partition_size_bytes", &p("0")), stored);
    assert_eq!(value(&scrape, "rill_kafka_request_seconds_count", &[("api", "Produce")]), 4.0);
    assert_eq!(
        value(&scrape, "rill_kafka_errors_total", &[("api", "CreateTopics"), ("error", "TOPIC_ALREADY_EXISTS")]),
        1.0
    );
    assert_eq!(value(&scrape, "rill_group_lag", &[("group", "dashboard"), ("partition", "0")]), 30.0);
    assert!(value(&scrape, "rill_storage_commit_seconds_count", &[]) >= 4.0);
    assert!(value(&scrape, "rill_kafka_connections_accepted_total", &[]) >= 1.0);

    // The CLI's resource commands go through the same API and its token.
    let component = dir.path().join("p.wasm");
    std::fs::write(&component, [b"\0asm".as_slice(), &[0x0d, 0, 1, 0]].concat()).unwrap();
    let admin_url = format!("http://{}", rill.http_addr());
    let upload = |token: Option<&str>| {
        let mut command = rill_tests::rill();
        command
            .args(["plugin", "upload"])
            .arg(&component)
            .args(["--name", "p", "--version", "1.0.0"])
            .args(["--admin", &admin_url]);
        command.env_remove("RILL_ADMIN_TOKEN");
        if let Some(token) = token {
            command.args(["--admin-token", token]);
        }
        command.output().unwrap()
    };
    let refused = upload(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("RILL_ADMIN_TOKEN"), "{stderr}");
    let stored = upload(Some("s3cret"));
    assert!(stored.status.success(), "{}", String::from_utf8_lossy(&stored.stderr));
    assert_eq!(anonymous.get("/v1/plugins").1[0]["name"], "p");
    let unreachable = rill_tests::rill().args(["status", "--admin", "http://127.0.0.1:1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success() && stderr.contains("is `rill serve` running"), "{stderr}");

    // What the admin API changed is in redb: it survives a restart.
    let (status, body) = admin.patch("/v1/topics/sensors", &json!({"config": {"retention.ms": 3_600_000}}));
    assert_eq!(status, 200, "{body}");
    drop(client);
    rill.stop();
    let mut again = Running::start(serve().arg("--data-dir").arg(dir.path()));
    let http = Http::new(&again.http_addr());
    let (_, topic) = http.get("/v1/topics/sensors");
    assert_eq!(topic["config"]["retention.ms"], "3600000", "{topic}");
    assert_eq!(topic["partitions"][0]["log_end_offset"], 30);
    let (_, group) = http.get("/v1/groups/dashboard");
    assert_eq!(group["lag"], 35, "{group}");
    assert_eq!(http.get("/v1/plugins/p/1.0.0").0, 200, "plugins survive restarts");
    let (status, _) = http.delete("/v1/groups/dashboard");
    assert_eq!(status, 204, "no token configured on this run");
    again.stop();
}
