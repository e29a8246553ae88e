//! Edge → cloud replication between real `rill serve` processes on loopback: an edge mirrors its
//! topics to an aggregation node through a proxy the test breaks (cut, stall, throttle, reset)
//! while both processes are killed with SIGKILL; a fleet of edges into one node; an edge whose
//! data dir is wiped. Compared at the end with a Kafka client on both sides, offset for offset.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rill_tests::proxy::FaultProxy;
use rill_tests::{Running, kcat};
use rskafka::client::Client;
use rskafka::client::partition::OffsetAt;
use rskafka::record::Record;

/// How long the copy may take to catch up once the link is healthy again.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A `rill serve` with its config file, data dir and Kafka address.
struct Node {
    running: Running,
    root: PathBuf,
    kafka: String,
}

impl Node {
    fn start(root: &Path, config: &str) -> Node {
        std::fs::create_dir_all(root).unwrap();
        let file = root.join("rill.toml");
        std::fs::write(&file, config).unwrap();
        let mut running =
            Running::start(rill_tests::serve().arg("--config").arg(&file).arg("--data-dir").arg(root.join("data")));
        let kafka = running.kafka_addr();
        Node { running, root: root.to_owned(), kafka }
    }

    /// SIGKILL, then the same config and data dir again.
    fn kill_and_restart(&mut self) {
        self.running.signal(libc::SIGKILL);
        self.running.wait_exit();
        let config = std::fs::read_to_string(self.root.join("rill.toml")).unwrap();
        *self = Node::start(&self.root, &config);
    }

    fn logs(&mut self) -> String {
        self.running.drain_log().join("\n")
    }
}

fn cloud_config(edges: &[(&str, &str)]) -> String {
    let edges: Vec<String> =
        edges.iter().map(|(id, token)| format!("{{ id = \"{id}\", token = \"{token}\" }}")).collect();
    format!("[replication]\nlisten = \"127.0.0.1:0\"\nedges = [{}]\n", edges.join(", "))
}

fn edge_config(upstream: &str, edge: &str, token: &str, topics: &[&str]) -> String {
    let topics: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[mirror]]\nname = \"cloud\"\nupstream = \"{upstream}\"\nedge_id = \"{edge}\"\ntoken = \"{token}\"\ntopics = [{}]\n",
        topics.join(", ")
    )
}

fn create_topic(kafka: &str, topic: &str, partitions: u32) {
    let output = rill_tests::rill()
        .args(["topic", "create", topic, "--partitions", &partitions.to_string(), "--bootstrap", kafka])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Produces `count` keyed records (`key-N:value-N`, N from `first`) with acks=all.
fn produce(kafka: &str, topic: &str, first: u64, count: u64) {
    produce_compressed(kafka, topic, first, count, "none");
}

/// [`produce`] with the producer compressing batches by `codec`.
fn produce_compressed(kafka: &str, topic: &str, first: u64, count: u64, codec: &str) {
    let lines: String = (first..first + count)
        .map(|n| format!("key-{}:value-{n}-{}\n", n % 97, "x".repeat((n % 50) as usize)))
        .collect();
    let args = ["-P", "-t", topic, "-K", ":", "-X", "acks=all", "-X", "linger.ms=5", "-z", codec];
    kcat(kafka, &args, Some(&lines));
}

/// Every record of a partition with its offset.
async fn records(client: &Client, topic: &str, partition: i32) -> Vec<(i64, Record)> {
    let client = rill_tests::kafka::partition(client, topic, partition).await;
    let mut out = Vec::new();
    let mut offset = client.get_offset(OffsetAt::Earliest).await.expect("earliest offset");
    loop {
        let (batch, high_watermark) = client.fetch_records(offset, 1..10_000_000, 100).await.expect("fetch");
        // Nothing below the high watermark: the rest is a gap (records deleted on the edge).
        let gap_to_the_end = batch.is_empty();
        for r in batch {
            offset = r.offset + 1;
            out.push((r.offset, r.record));
        }
        if offset >= high_watermark || gap_to_the_end {
            return out;
        }
    }
}

async fn end_offset(client: &Client, topic: &str, partition: i32) -> Option<i64> {
    let client = client
        .partition_client(topic, partition, rskafka::client::partition::UnknownTopicHandling::Error)
        .await
        .ok()?;
    client.get_offset(OffsetAt::Latest).await.ok()
}

/// Waits until every partition of the copy ends where the edge's does, then compares them record
/// for record, offset for offset.
async fn assert_mirrored(edge: &mut Node, cloud: &mut Node, topic: &str, copy: &str, partitions: i32) -> usize {
    let edge_client = rill_tests::kafka::connect(&edge.kafka).await;
    let cloud_client = rill_tests::kafka::connect(&cloud.kafka).await;
    let deadline = Instant::now() + CATCH_UP;
    for partition in 0..partitions {
        let want = end_offset(&edge_client, topic, partition).await.expect("the edge topic exists");
        loop {
            let have = end_offset(&cloud_client, copy, partition).await;
            if have == Some(want) {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "{copy}/{partition} ends at {have:?}, the edge's {topic} at {want}\n--- edge log:\n{}\n--- cloud log:\n{}",
                    edge.logs(),
                    cloud.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut total = 0;
    for partition in 0..partitions {
        let on_edge = records(&edge_client, topic, partition).await;
        let on_cloud = records(&cloud_client, copy, partition).await;
        assert_eq!(on_edge.len(), on_cloud.len(), "{copy}/{partition}: record counts differ");
        assert!(on_edge == on_cloud, "{copy}/{partition} differs from the edge's {topic}");
        total += on_edge.len();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_equals_the_edge_after_a_flapping_link_and_kill_9_of_both_sides() {
    const RECORDS: u64 = 200_000;
    const ROUNDS: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&[("gw-1", "t1")]));
    let proxy = FaultProxy::start(&cloud.running.replication_addr());
    let mut edge = Node::start(&dir.path().join("edge"), &edge_config(&proxy.addr(), "gw-1", "t1", &["sensors"]));
    create_topic(&edge.kafka, "sensors", 3);
    let per_round = RECORDS / ROUNDS;
    for round in 0..ROUNDS {
        produce(&edge.kafka, "sensors", round * per_round, per_round);
        match round {
            1 => proxy.throttle(Some(512 * 1024)),
            2 => proxy.cut(),
            3 => proxy.heal(),
            4 => edge.kill_and_restart(),
            5 => proxy.stall(),
            6 => {
                cloud.kill_and_restart();
                proxy.set_upstream(&cloud.running.replication_addr());
                proxy.reset();
                proxy.heal();
            }
            7 => proxy.reset(),
            8 => {
                proxy.throttle(None);
                edge.kill_and_restart();
                cloud.kill_and_restart();
                proxy.set_upstream(&cloud.running.replication_addr());
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    proxy.heal();
    proxy.throttle(None);
    let total = assert_mirrored(&mut edge, &mut cloud, "sensors", "gw-1.sensors", 3).await;
    assert!(total as u64 >= RECORDS, "every produced record is on the edge: {total}");
    assert!(proxy.forwarded() > 0);
    // The copy is read-only for producers.
    let refused = std::process::Command::new("kcat")
        .args(["-b", &cloud.kafka, "-P", "-t", "gw-1.sensors", "-X", "message.timeout.ms=5000"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"intruder\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("authorization failed"), "a producer is refused on a copy: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_three_edges_mirrors_into_one_aggregation_node() {
    let dir = tempfile::tempdir().unwrap();
    let edges = [("gw-a", "ta"), ("gw-b", "tb"), ("gw-c", "tc")];
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&edges));
    let upstream = cloud.running.replication_addr();
    // Two edges mirror from their config file, the third through the admin API.
    let mut nodes: Vec<Node> = edges
        .iter()
        .map(|(id, token)| {
            let config =
                if *id == "gw-c" { String::new() } else { edge_config(&upstream, id, token, &["sensors", "alerts.*"]) };
            Node::start(&dir.path().join(id), &config)
        })
        .collect();
    let admin = format!("http://{}", nodes[2].running.http_addr());
    let added = rill_tests::rill()
        .args(["mirror", "add", "cloud", "--upstream", &upstream, "--edge-id", "gw-c", "--token", "tc"])
        .args(["--topic", "sensors", "--topic", "alerts.*", "--admin", &admin])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    for (i, node) in nodes.iter().enumerate() {
        create_topic(&node.kafka, "sensors", 2);
        produce(&node.kafka, "sensors", 0, 3_000 + 1_000 * i as u64);
        produce(&node.kafka, &format!("alerts.{i}"), 0, 500);
    }
    for (i, ((id, _), node)) in edges.iter().zip(&mut nodes).enumerate() {
        let sensors = assert_mirrored(node, &mut cloud, "sensors", &format!("{id}.sensors"), 2).await;
        assert_eq!(sensors, 3_000 + 1_000 * i);
        let alerts = format!("alerts.{i}");
        assert_eq!(assert_mirrored(node, &mut cloud, &alerts, &format!("{id}.{alerts}"), 1).await, 500);
    }
    // Both sides say where the copies stand.
    let status = |admin: &str| {
        let output = rill_tests::rill().args(["mirror", "status", "--admin", admin]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let cloud_view = status(&format!("http://{}", cloud.running.http_addr()));
    for (id, _) in edges {
        assert!(cloud_view.contains(&format!("edge {id} (connected")), "{cloud_view}");
    }
    let replication = rill_tests::Http::new(&cloud.running.http_addr()).text("/v1/replication");
    assert!(cloud_view.contains("gw-b.sensors"), "{cloud_view}\n{replication}\n{}", cloud.logs());
    let edge_http = rill_tests::Http::new(&admin.replace("http://", ""));
    let deadline = Instant::now() + CATCH_UP;
    loop {
        // Acknowledgements reach the edge's status a moment after the copy is readable.
        let (_, mirrors) = edge_http.get("/v1/mirrors");
        let partitions = mirrors[0]["status"]["partitions"].as_array().cloned().unwrap_or_default();
        let caught_up = partitions.len() == 3
            && partitions.iter().all(|p| p["lag_records"] == 0 && p["state"] == "streaming" && p["acked_offset"] != 0);
        let metrics = edge_http.text("/metrics");
        let lag_metric = "rill_mirror_lag_records{mirror=\"cloud\",topic=\"sensors\",partition=\"1\"} 0";
        if caught_up && metrics.contains(lag_metric) {
            assert!(metrics.contains("rill_mirror_connected{mirror=\"cloud\"} 1"), "{metrics}");
            let edge_view = status(&admin);
            assert!(edge_view.contains("mirror cloud -> ") && edge_view.contains("streaming"), "{edge_view}");
            break;
        }
        assert!(Instant::now() < deadline, "the edge's status never showed the copy caught up:\n{mirrors}\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_edge_is_mirrored_separately_and_the_old_copy_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&[("gw-1", "t1")]));
    let config = edge_config(&cloud.running.replication_addr(), "gw-1", "t1", &["sensors"]);
    let edge_root = dir.path().join("edge");
    let mut edge = Node::start(&edge_root, &config);
    produce(&edge.kafka, "sensors", 0, 1_000);
    assert_eq!(assert_mirrored(&mut edge, &mut cloud, "sensors", "gw-1.sensors", 1).await, 1_000);
    let cloud_client = rill_tests::kafka::connect(&cloud.kafka).await;
    let old_copy = records(&cloud_client, "gw-1.sensors", 0).await;

    edge.running.stop();
    std::fs::remove_dir_all(edge_root.join("data")).unwrap();
    let mut edge = Node::start(&edge_root, &config);
    produce(&edge.kafka, "sensors", 5_000, 300);
    // The new incarnation gets its own copy, named after it; find it.
    let deadline = Instant::now() + CATCH_UP;
    let new_copy = loop {
        let topics = cloud_client.list_topics().await.expect("list topics");
        if let Some(topic) = topics.iter().find(|t| t.name.starts_with("gw-1.sensors.")) {
            break topic.name.clone();
        }
        assert!(Instant::now() < deadline, "no copy for the new incarnation: {}", cloud.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(assert_mirrored(&mut edge, &mut cloud, "sensors", &new_copy, 1).await, 300);
    assert!(records(&cloud_client, "gw-1.sensors", 0).await == old_copy, "the old incarnation's copy is untouched");
    let log = cloud.logs();
    assert!(log.contains("a new incarnation of an edge topic"), "the node says why: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_a_wrong_token_is_refused_and_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&[("gw-1", "right")]));
    let config = edge_config(&cloud.running.replication_addr(), "gw-1", "wrong", &["sensors"]);
    let mut edge = Node::start(&dir.path().join("edge"), &config);
    produce(&edge.kafka, "sensors", 0, 10);
    let line = edge.running.wait_for("mirror link down").unwrap();
    assert!(line.contains("not accepted here"), "{line}");
    let cloud_client = rill_tests::kafka::connect(&cloud.kafka).await;
    let topics = cloud_client.list_topics().await.unwrap();
    assert!(topics.iter().all(|t| !t.name.starts_with("gw-1")), "nothing mirrored: {topics:?}");
}

async fn earliest(client: &Client, topic: &str, partition: i32) -> i64 {
    rill_tests::kafka::partition(client, topic, partition).await.get_offset(OffsetAt::Earliest).await.expect("earliest")
}

/// Retention on the edge keeps what the aggregation node has not acknowledged — until the disk
/// budget runs out: then the oldest go, the edge counts them lost and the copy records the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_the_mirror_until_the_disk_budget_runs_out() {
    const BUDGET: u64 = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&[("gw-1", "t1")]));
    let proxy = FaultProxy::start(&cloud.running.replication_addr());
    proxy.cut();
    let storage = format!("[storage]\nretention_check_interval_ms = 200\ndisk_budget_bytes = {BUDGET}\n\n");
    let config = storage + &edge_config(&proxy.addr(), "gw-1", "t1", &["sensors"]);
    let mut edge = Node::start(&dir.path().join("edge"), &config);
    let output = rill_tests::rill()
        .args(["topic", "create", "sensors", "--config", "retention.ms=500", "--bootstrap", &edge.kafka])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let edge_client = rill_tests::kafka::connect(&edge.kafka).await;
    let cloud_client = rill_tests::kafka::connect(&cloud.kafka).await;

    // Expired, but not mirrored yet: kept.
    produce(&edge.kafka, "sensors", 0, 1_000);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(earliest(&edge_client, "sensors", 0).await, 0, "retention waits for the mirror");

    // Mirrored: retention goes on. (The edge may delete as soon as the copy acknowledges, so
    // the copy is checked on its own.)
    proxy.heal();
    let deadline = Instant::now() + CATCH_UP;
    while end_offset(&cloud_client, "gw-1.sensors", 0).await != Some(1_000) {
        assert!(Instant::now() < deadline, "the copy did not catch up: {}", cloud.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(records(&cloud_client, "gw-1.sensors", 0).await.len(), 1_000);
    let deadline = Instant::now() + CATCH_UP;
    while earliest(&edge_client, "sensors", 0).await == 0 {
        assert!(Instant::now() < deadline, "retention never deleted what was mirrored: {}", edge.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The link goes down and the edge fills past its budget: the oldest go anyway.
    proxy.cut();
    for round in 0..4 {
        produce(&edge.kafka, "sensors", 1_000 + round * 10_000, 10_000);
    }
    let deadline = Instant::now() + CATCH_UP;
    while !edge.logs().contains("disk budget exhausted") {
        assert!(Instant::now() < deadline, "the budget was never enforced: {}", edge.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let edge_start = earliest(&edge_client, "sensors", 0).await;
    assert!(edge_start > 1_000, "unmirrored records were deleted: the edge starts at {edge_start}");
    proxy.heal();
    let end = end_offset(&edge_client, "sensors", 0).await.unwrap();
    let deadline = Instant::now() + CATCH_UP;
    while end_offset(&cloud_client, "gw-1.sensors", 0).await != Some(end) {
        assert!(Instant::now() < deadline, "the copy did not catch up: {}\n--- edge:\n{}", cloud.logs(), edge.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The copy holds the first 1,000, a gap, then what the edge still has, at the same offsets.
    // (Once acknowledged, the edge's own retention may delete more: what it still has is checked
    // against the copy, offset by offset.)
    let copy = records(&cloud_client, "gw-1.sensors", 0).await;
    let on_edge = records(&edge_client, "sensors", 0).await;
    assert!(copy.iter().take_while(|(o, _)| *o < 1_000).count() == 1_000, "the mirrored records stay");
    assert!(!copy.iter().any(|(o, _)| (1_000..edge_start).contains(o)), "the lost records are a gap");
    let copied: std::collections::BTreeMap<i64, &Record> = copy.iter().map(|(o, r)| (*o, r)).collect();
    assert!(on_edge.iter().all(|(o, r)| copied.get(o) == Some(&r)), "what the edge kept is copied offset for offset");
    // Both sides say so.
    let mirrors = rill_tests::Http::new(&edge.running.http_addr()).text("/v1/mirrors");
    let lost: serde_json::Value = serde_json::from_str(&mirrors).unwrap();
    assert!(lost[0]["status"]["records_lost"].as_u64().unwrap() > 0, "{mirrors}");
    let replication = rill_tests::Http::new(&cloud.running.http_addr()).text("/v1/replication");
    let gaps: serde_json::Value = serde_json::from_str(&replication).unwrap();
    assert!(gaps["edges"][0]["gaps"].as_u64().unwrap() >= 1, "{replication}");
}

/// A peer without a token cannot make the aggregation node read a large frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_before_the_hello_closes_the_connection() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&[("gw-1", "t1")]));
    let mut peer = std::net::TcpStream::connect(cloud.running.replication_addr()).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // An 8 MiB frame is announced (allowed once an edge is accepted, not before).
    peer.write_all(&(8u32 << 20).to_be_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = [0; 16];
    let read = peer.read(&mut answer);
    assert!(matches!(read, Ok(0)) || read.is_err(), "the node closes the connection: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "at once, not after a timeout");
}

/// What the `downsample` plugin keeps of `records` (one partition, in offset order): per key, a
/// record once `window_ms` passed since the last one kept.
fn downsampled(records: &[(i64, Record)], window_ms: i64) -> Vec<String> {
    let mut last_kept: std::collections::HashMap<Vec<u8>, i64> = std::collections::HashMap::new();
    let mut kept = Vec::new();
    for (offset, record) in records {
        let key = record.key.clone().unwrap_or_default();
        let at = record.timestamp.timestamp_millis();
        if last_kept.get(&key).is_none_or(|&last| at - last >= window_ms) {
            last_kept.insert(key.clone(), at);
            let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
            kept.push(format!("{offset}\t{}\t{at}\t{value}", String::from_utf8_lossy(&key)));
        }
    }
    kept
}

/// A stateful filter between two real processes, its link cut and reset and the edge killed:
/// upstream gets exactly what the plugin keeps of each partition read once in order, at the
/// edge's offsets (gaps between), and a Kafka consumer reads the copy to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downsampling_filter_thins_what_goes_upstream_and_the_copy_keeps_the_edge_offsets() {
    const WINDOW_MS: i64 = 20;
    const PER_ROUND: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cloud = Node::start(&dir.path().join("cloud"), &cloud_config(&[("gw-f", "tf")]));
    let proxy = FaultProxy::start(&cloud.running.replication_addr());
    let mut edge = Node::start(&dir.path().join("edge"), "");
    create_topic(&edge.kafka, "sensors", 2);
    let admin = format!("http://{}", edge.running.http_addr());
    let component = rill_tests::plugin_file("downsample");
    let added = rill_tests::rill()
        .args(["mirror", "add", "cloud", "--upstream", &proxy.addr(), "--edge-id", "gw-f", "--token", "tf"])
        .args(["--topic", "sensors", "--filter", component.to_str().unwrap()])
        .args(["--filter-config", &format!("window_ms={WINDOW_MS}"), "--admin", &admin])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    for round in 0..6 {
        // Compressed batches are filtered too, and go upstream compressed.
        let codec = if round % 2 == 1 { "gzip" } else { "none" };
        produce_compressed(&edge.kafka, "sensors", round * PER_ROUND, PER_ROUND, codec);
        match round {
            1 => proxy.cut(),
            2 => proxy.heal(),
            3 => edge.kill_and_restart(),
            4 => proxy.reset(),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let edge_client = rill_tests::kafka::connect(&edge.kafka).await;
    let cloud_client = rill_tests::kafka::connect(&cloud.kafka).await;
    let deadline = Instant::now() + CATCH_UP;
    for partition in 0..2 {
        let want = end_offset(&edge_client, "sensors", partition).await;
        while end_offset(&cloud_client, "gw-f.sensors", partition).await != want {
            assert!(
                Instant::now() < deadline,
                "the copy did not catch up:\n{}\n--- edge:\n{}",
                cloud.logs(),
                edge.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut dropped = 0;
    for partition in 0..2 {
        let on_edge = records(&edge_client, "sensors", partition).await;
        let expected = downsampled(&on_edge, WINDOW_MS);
        let format = ["-C", "-t", "gw-f.sensors", "-p", &partition.to_string(), "-o", "beginning", "-e"];
        let copy = kcat(&cloud.kafka, &[&format[..], &["-f", "%o\t%k\t%T\t%s\n"]].concat(), None);
        let copy = rill_tests::stdout_lines(&copy);
        assert!(
            expected.len() < on_edge.len() / 2,
            "the window thins the series: {} of {}",
            expected.len(),
            on_edge.len()
        );
        assert_eq!(copy.len(), expected.len(), "gw-f.sensors/{partition}: records kept\n--- edge:\n{}", edge.logs());
        assert!(copy == expected, "gw-f.sensors/{partition} holds what the filter keeps, at the edge's offsets");
        dropped += on_edge.len() - expected.len();
    }
    let mirrors: serde_json::Value =
        serde_json::from_str(&rill_tests::Http::new(&edge.running.http_addr()).text("/v1/mirrors")).unwrap();
    let status = &mirrors[0]["status"];
    assert!(status["filter"].as_str().unwrap().starts_with("downsample@"), "{mirrors}");
    // Counted since the edge's restart (and again for what is sent again), so only its sign is sure.
    assert!(dropped > 0 && status["records_filtered"].as_u64().unwrap() > 0, "{mirrors}");
}
