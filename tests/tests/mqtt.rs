//! MQTT ingest with real parts: a private mosquitto, `mosquitto_pub` publishing SenML packs, the
//! real `rill` binary bridging them through the `senml` plugin, and rskafka reading the records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rill_tests::kafka::{connect, partition, read_all};
use rill_tests::{Http, Mosquitto, Running, WAIT, plugin_file};
use serde_json::{Value, json};

fn upload(http_addr: &str, plugin: &str) {
    let output = rill_tests::rill()
        .args(["plugin", "upload"])
        .arg(plugin_file(plugin))
        .args(["--admin", &format!("http://{http_addr}")])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Waits until `topic` exists in the broker and holds at least `count` records over its
/// partitions (or panics after `within`).
fn wait_for_records(http: &Http, topic: &str, count: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = http.get(&format!("/v1/topics/{topic}"));
        let records: u64 = body["partitions"]
            .as_array()
            .map(|ps| ps.iter().map(|p| p["log_end_offset"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0);
        if status == 200 && records >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{topic}: fewer than {count} records in {within:?}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until bridge `name` is connected to its MQTT broker (or panics after [`WAIT`]).
fn wait_connected(http: &Http, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let view = http.get(&format!("/v1/mqtt/{name}")).1;
        if view["status"]["connected"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "the bridge {name} did not connect: {view}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bridge(name: &str, mosquitto: &Mosquitto, target: &str, partitions: u32) -> Value {
    json!({"name": name, "url": mosquitto.url(), "subscriptions": [{"filter": "sensors/+/telemetry", "qos": 1}],
        "target": target, "partitions": partitions, "ingest": {"plugin": "senml"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_over_mqtt_becomes_keyed_records_and_survives_a_broker_outage() {
    let mut mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let (kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
    let http = Http::new(&http_addr);
    upload(&http_addr, "senml");
    let (status, body) = http.post("/v1/mqtt", &bridge("sensors", &mosquitto, "sensors.{1}", 3));
    assert_eq!(status, 201, "{body}");
    wait_connected(&http, "sensors");
    std::thread::sleep(Duration::from_millis(200)); // the subscription's SubAck

    let pack = |device: &str, t: f64| {
        json!([{"bn": format!("urn:dev:{device}:"), "bt": t, "n": "temp", "u": "Cel", "v": 21.5},
            {"n": "hum", "u": "%RH", "v": 40}, {"n": "battery", "u": "%EL", "v": 97}])
        .to_string()
    };
    for device in ["dev1", "dev2"] {
        let packs: Vec<String> = (0..20).map(|i| pack(device, 1.7e9 + f64::from(i))).collect();
        mosquitto.publish_lines(&format!("sensors/{device}/telemetry"), 1, &(packs.join("\n") + "\n"));
    }
    mosquitto.publish("sensors/dev1/telemetry", 1, "this is not SenML");
    // A record too large for its topic is refused by the log: that message goes to the
    // dead-letter topic, the rest of its batch is stored.
    let (status, body) = http
        .post("/v1/topics", &json!({"name": "sensors.big", "partitions": 1, "config": {"max.message.bytes": "2048"}}));
    assert_eq!(status, 201, "{body}");
    let big = json!([{"bn": "urn:dev:big:", "n": "log", "vs": "x".repeat(4000)}]).to_string();
    let small = json!([{"bn": "urn:dev:small:", "n": "temp", "v": 1}]).to_string();
    mosquitto.publish_lines("sensors/big/telemetry", 1, &format!("{big}\n"));
    mosquitto.publish_lines("sensors/small/telemetry", 1, &format!("{small}\n"));
    for device in ["dev1", "dev2"] {
        wait_for_records(&http, &format!("sensors.{device}"), 60, WAIT);
    }
    let client = connect(&kafka).await;
    for device in ["dev1", "dev2"] {
        let mut by_key: BTreeMap<String, i32> = BTreeMap::new();
        let mut records = 0;
        for p in 0..3 {
            for record in read_all(&partition(&client, &format!("sensors.{device}"), p).await).await {
                let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
                assert!(key.starts_with(&format!("urn:dev:{device}:")), "keyed by the full sensor name: {key}");
                let expected = rill_core::partitioner::partition_for_key(key.as_bytes(), 3).unwrap() as i32;
                assert_eq!(p, expected, "{key} is in the partition murmur2 of its key gives");
                assert_eq!(*by_key.entry(key).or_insert(p), p);
                let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
                assert!(value["v"].is_number(), "{value}");
                records += 1;
            }
        }
        assert_eq!((records, by_key.len()), (60, 3), "one record per measurement: {device}");
    }
    wait_for_records(&http, "sensors.small", 1, WAIT);
    wait_for_records(&http, "mqtt.dlq", 2, WAIT);
    let letters = read_all(&partition(&client, "mqtt.dlq", 0).await).await;
    let rejected = |topic: &str| {
        letters
            .iter()
            .find(|r| r.headers["rill.dlq.mqtt.topic"] == topic.as_bytes())
            .unwrap_or_else(|| panic!("no dead letter from {topic}"))
    };
    let not_senml = rejected("sensors/dev1/telemetry");
    assert_eq!(not_senml.value.as_deref(), Some(b"this is not SenML".as_slice()));
    assert!(String::from_utf8_lossy(&not_senml.headers["rill.dlq.error"]).contains("not SenML"));
    let too_large = rejected("sensors/big/telemetry");
    assert_eq!(too_large.value.as_deref(), Some(big.as_bytes()));
    assert!(String::from_utf8_lossy(&too_large.headers["rill.dlq.error"]).contains("max.message.bytes"));

    // A device sending its packs again (its own retry after a lost connection) makes new MQTT
    // messages: ids from the content (senml's `senml.id`, name@time) store them once.
    let mut dedup = bridge("packs", &mosquitto, "dedup.dev9", 1);
    dedup["subscriptions"] = json!([{"filter": "sensors/dev9/telemetry", "qos": 1}]);
    dedup["dedup"] = json!({"record_header": "senml.id"});
    let (status, body) = http.post("/v1/mqtt", &dedup);
    assert_eq!(status, 201, "{body}");
    wait_connected(&http, "packs");
    std::thread::sleep(Duration::from_millis(200));
    let packs: Vec<String> = (0..10).map(|i| pack("dev9", 1.8e9 + f64::from(i))).collect();
    mosquitto.publish_lines("sensors/dev9/telemetry", 1, &(packs.join("\n") + "\n"));
    wait_for_records(&http, "dedup.dev9", 30, WAIT);
    // Again, then one new pack: MQTT delivers in order, so once the new one is stored the
    // repeats have been through the bridge.
    mosquitto.publish_lines("sensors/dev9/telemetry", 1, &(packs.join("\n") + "\n" + &pack("dev9", 1.9e9) + "\n"));
    wait_for_records(&http, "dedup.dev9", 33, WAIT);
    let stored = read_all(&partition(&client, "dedup.dev9", 0).await).await;
    assert_eq!(stored.len(), 33, "each measurement once");
    assert_eq!(http.get("/v1/mqtt/packs").1["status"]["duplicates_dropped"], 30);

    // The MQTT broker goes away and comes back: the bridge reconnects by itself, and what is
    // published while Rill reconnects (queued for its persistent session) arrives.
    mosquitto.restart();
    mosquitto.publish_lines("sensors/dev3/telemetry", 1, &(pack("dev3", 1.7e9) + "\n"));
    wait_for_records(&http, "sensors.dev3", 3, Duration::from_secs(30));
    let view = http.get("/v1/mqtt/sensors").1;
    assert!(view["status"]["connects"].as_u64().unwrap() >= 2, "{view}");
    assert_eq!(view["status"]["messages_dead_lettered"], 2, "{view}");
    let metrics = http.text("/metrics");
    let messages_in = metrics
        .lines()
        .find_map(|line| line.strip_prefix("rill_mqtt_messages_in_total{bridge=\"sensors\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(messages_in >= Some(44), "every message counted (redeliveries too): {metrics}");

    // MQTT 5 with ids in a user property: a message sent twice under one id is stored once.
    let mut v5 = bridge("props", &mosquitto, "props", 1);
    v5["version"] = json!("5");
    v5["subscriptions"] = json!([{"filter": "props/+", "qos": 1}]);
    v5["dedup"] = json!({"user_property": "msg-id"});
    let (status, body) = http.post("/v1/mqtt", &v5);
    assert_eq!(status, 201, "{body}");
    wait_connected(&http, "props");
    std::thread::sleep(Duration::from_millis(200));
    for (id, value) in [("a", 1), ("a", 1), ("b", 2), ("", 3), ("", 3)] {
        publish_v5(mosquitto.port, "props/dev1", &format!(r#"[{{"n":"x","v":{value}}}]"#), id).await;
    }
    // In order: once the last is stored, the others have been through the bridge.
    wait_for_records(&http, "props", 4, WAIT);
    let values: Vec<Value> = read_all(&partition(&client, "props", 0).await)
        .await
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r.value.as_deref().unwrap()).unwrap()["v"].clone())
        .collect();
    // An empty id is no id: both of those are stored.
    assert_eq!(values, [json!(1.0), json!(2.0), json!(3.0), json!(3.0)]);
    assert_eq!(http.get("/v1/mqtt/props").1["status"]["duplicates_dropped"], 1);

    // A message over max_message_bytes (1 MiB): MQTT 3.1.1 cannot refuse it, so the bridge stops
    // at it, leaving it at the broker, and says what to do.
    publish_one(mosquitto.port, "sensors/huge/telemetry", vec![b'x'; 1536 * 1024]).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let view = http.get("/v1/mqtt/sensors").1;
        if view["status"]["last_error"].as_str().is_some_and(|e| e.contains("max_message_bytes (1048576)")) {
            break;
        }
        assert!(Instant::now() < deadline, "the oversized message is not explained: {view}");
        std::thread::sleep(Duration::from_millis(20));
    }
    rill.stop();
}

/// Publishes one message over MQTT 5 with QoS 1 and user property `msg-id` = `id`, and waits
/// for mosquitto's acknowledgement.
async fn publish_v5(port: u16, topic: &str, payload: &str, id: &str) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new("test-publish-v5", "127.0.0.1", port), 10);
    let properties = PublishProperties { user_properties: vec![("msg-id".into(), id.into())], ..Default::default() };
    client.publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_owned(), properties).await.unwrap();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("publishing to {topic}: {e}"),
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
}

/// Publishes one message with QoS 1 and waits for mosquitto's acknowledgement.
async fn publish_one(port: u16, topic: &str, payload: Vec<u8>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new("test-publish-one", "127.0.0.1", port);
    options.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("publishing to {topic}: {e}"),
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_client_certificate() {
    let (mosquitto, files) = Mosquitto::start_with_tls();
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let http_addr = rill.http_addr();
    let http = Http::new(&http_addr);
    upload(&http_addr, "senml");
    let add = |name: &str, tls: &[&std::path::Path]| {
        let mut command = rill_tests::rill();
        command
            .args(["mqtt", "add", name, "--url", &mosquitto.tls_url(), "--subscribe", "sensors/+/telemetry"])
            .args(["--target", name, "--ingest", "senml", "--admin", &format!("http://{http_addr}")]);
        for (flag, path) in ["--tls-ca-file", "--tls-cert-file", "--tls-key-file"].iter().zip(tls) {
            command.arg(flag).arg(path);
        }
        command.output().unwrap()
    };
    let added = add("secure", &[&files.ca, &files.client_cert, &files.client_key]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    // Without a client certificate mosquitto refuses the handshake; with a file that is no
    // certificate the bridge is refused at once, naming the key.
    let anonymous = add("anonymous", &[&files.ca]);
    assert!(anonymous.status.success(), "{}", String::from_utf8_lossy(&anonymous.stderr));
    let not_pem = add("broken", &[&files.ca, &files.client_key, &files.client_key]);
    assert!(!not_pem.status.success());
    assert!(
        String::from_utf8_lossy(&not_pem.stderr).contains("tls.cert_file"),
        "{}",
        String::from_utf8_lossy(&not_pem.stderr)
    );

    wait_connected(&http, "secure");
    std::thread::sleep(Duration::from_millis(200));
    mosquitto.publish("sensors/dev1/telemetry", 1, r#"[{"bn":"urn:dev:dev1:","n":"temp","v":21.5}]"#);
    wait_for_records(&http, "secure", 1, WAIT);
    let deadline = Instant::now() + WAIT;
    let anonymous = loop {
        let view = http.get("/v1/mqtt/anonymous").1;
        if view["status"]["last_error"].is_string() || Instant::now() > deadline {
            break view;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(anonymous["status"]["connected"], false, "{anonymous}");
    assert!(
        anonymous["status"]["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "the refusal is shown: {anonymous}"
    );
    assert_eq!(anonymous["tls"]["ca_file"], files.ca.canonicalize().unwrap().to_str().unwrap());
    rill.stop();
}

/// The MQTT broker keeps a session's subscriptions: a bridge removed and added again under the
/// same client id with another filter must get the new filter, and lose the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_added_again_with_other_filters_gets_them_on_its_kept_session() {
    let mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let http_addr = rill.http_addr();
    let http = Http::new(&http_addr);
    upload(&http_addr, "senml");
    for filter in ["old/+/telemetry", "new/+/telemetry"] {
        let mut spec = bridge("b", &mosquitto, "kept", 1);
        spec["subscriptions"] = json!([{"filter": filter, "qos": 1}]);
        if filter.starts_with("new") {
            let (status, body) = http.delete("/v1/mqtt/b");
            assert!(status < 300, "{status} {body}");
        }
        let (status, body) = http.post("/v1/mqtt", &spec);
        assert_eq!(status, 201, "{body}");
        wait_connected(&http, "b");
        // Its SubAck (or UnsubAck) follows the ConnAck.
        std::thread::sleep(Duration::from_millis(300));
    }
    mosquitto.publish("old/dev1/telemetry", 1, r#"[{"n":"old","v":1}]"#);
    mosquitto.publish("new/dev1/telemetry", 1, r#"[{"n":"new","v":2}]"#);
    wait_for_records(&http, "kept", 1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let client = connect(&rill.kafka_addr()).await;
    let records = read_all(&partition(&client, "kept", 0).await).await;
    let names: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r.value.as_deref().unwrap()).unwrap()["n"].clone())
        .collect();
    assert_eq!(names, [json!("new")], "the new filter only");
    rill.stop();
}

/// Two bridges on the same messages: MQTT 3.1.1 without ids (duplicates bounded by the in-flight
/// window) and MQTT 5 deduplicating by the id senml derives (no duplicates at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_1_messages_survive_kill_9_of_the_gateway() {
    const MESSAGES: u64 = 100_000;
    const KILLS: u64 = 3;
    let mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let mut rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
    let http_addr = rill.http_addr();
    upload(&http_addr, "senml");
    for (name, target, extra) in [
        ("ingest", "readings", &[][..]),
        ("ingest5", "readings5", &["--mqtt-version", "5", "--dedup-header", "senml.id"][..]),
    ] {
        let added = rill_tests::rill()
            .args(["mqtt", "add", name, "--url", &mosquitto.url(), "--subscribe", "sensors/+/telemetry@1"])
            .args(["--target", target, "--ingest", "senml", "--admin", &format!("http://{http_addr}")])
            .args(extra)
            .output()
            .unwrap();
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        wait_connected(&Http::new(&http_addr), name);
    }
    std::thread::sleep(Duration::from_millis(200));

    // One pack per message, each with its own sequence number (and an absolute time, so senml
    // gives it an id), published with QoS 1 by a client that counts mosquitto's
    // acknowledgements: every message is accepted by the broker.
    let publisher = tokio::spawn(publish_acknowledged(mosquitto.port, MESSAGES));
    // Warnings of every process, shown if the test fails (reconnects and retries explain
    // duplicates).
    let mut warnings: Vec<String> = Vec::new();
    let mut keep_warnings = |rill: &mut Running| {
        let log = rill.drain_log();
        warnings.extend(log.iter().filter(|l| l.contains("WARN") || l.contains("ERROR")).cloned());
    };
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(700 + 300 * kill));
        rill.signal(libc::SIGKILL);
        rill.wait_exit();
        keep_warnings(&mut rill);
        rill = Running::start(rill_tests::serve().arg("--data-dir").arg(dir.path()));
        rill.wait_for("MQTT bridges started").unwrap();
    }
    assert_eq!(publisher.await.unwrap(), MESSAGES, "mosquitto acknowledged every message");
    let (kafka, http_addr) = (rill.kafka_addr(), rill.http_addr());
    let http = Http::new(&http_addr);
    let client = connect(&kafka).await;
    let mut duplicates = BTreeMap::new();
    for topic in ["readings", "readings5"] {
        wait_for_records(&http, topic, MESSAGES, Duration::from_secs(120));
        // Let anything still in flight land before counting.
        std::thread::sleep(Duration::from_millis(500));
        let records = read_all(&partition(&client, topic, 0).await).await;
        let mut seen = vec![0u32; MESSAGES as usize];
        for record in &records {
            let value: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            seen[value["v"].as_f64().unwrap() as usize] += 1;
        }
        let missing: Vec<usize> = seen.iter().enumerate().filter(|(_, n)| **n == 0).map(|(i, _)| i).take(10).collect();
        assert!(missing.is_empty(), "{topic}: lost messages, first ones: {missing:?}");
        duplicates.insert(topic, records.len() as u64 - MESSAGES);
    }
    // The bridge's in-flight window: messages received and not yet acknowledged are those
    // waiting to be batched (channel and stash) plus the batch being committed.
    use rill::limits::{MQTT_BATCH_MESSAGES_DEFAULT, MQTT_INFLIGHT_MAX, MQTT_STASH_MAX};
    let window = (MQTT_INFLIGHT_MAX + MQTT_STASH_MAX + MQTT_BATCH_MESSAGES_DEFAULT) as u64;
    let dropped = http.get("/v1/mqtt/ingest5").1["status"].clone();
    eprintln!("duplicates after {KILLS} kills (window {window}): {duplicates:?}; deduplicating bridge: {dropped}");
    keep_warnings(&mut rill);
    assert!(
        duplicates["readings"] <= window * KILLS,
        "{} duplicates, more than the in-flight window per kill; warnings logged:\n{}",
        duplicates["readings"],
        warnings.join("\n")
    );
    assert_eq!(duplicates["readings5"], 0, "messages with ids are stored once");
    rill.stop();
}

/// Publishes `count` SenML packs `[{"n":"seq","bt":T,"v":N}]` (a time of its own for each) with
/// QoS 1, and returns how many the MQTT broker acknowledged.
async fn publish_acknowledged(port: u16, count: u64) -> u64 {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new("test-publisher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    // Recent times, a millisecond apart.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let sender = tokio::spawn(async move {
        for n in 0..count {
            let pack =
                format!("[{{\"n\":\"seq\",\"bt\":{}.{:03},\"v\":{n}}}]", (now_ms + n) / 1000, (now_ms + n) % 1000);
            client.publish("sensors/bulk/telemetry", QoS::AtLeastOnce, false, pack).await.unwrap();
        }
        client
    });
    let mut acknowledged = 0;
    while acknowledged < count {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acknowledged += 1,
            Ok(_) => {}
            Err(e) => panic!("the publisher lost its connection: {e}"),
        }
    }
    let client = sender.await.unwrap();
    let _ = client.disconnect().await;
    acknowledged
}

/// Readings from devices whose clocks are wrong (one says 2023, one 2040) go in over MQTT, each
/// device's to a topic of its own (so no newer reading shares their storage group) with the
/// default retention (7 days), and the gateway restarts with retention passes every 200 ms.
/// Retention ages data by when it was appended, so the passes after the restart delete nothing
/// (they deleted the 2023 readings before anyone read them), and the current librdkafka reads
/// every reading back with the time its device gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_stamped_2023_and_2040_survive_a_restart_and_librdkafka_reads_them() {
    let mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "[storage]\nretention_check_interval_ms = 200\n").unwrap();
    let serve = || {
        let mut command = rill_tests::serve();
        command.arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("data"));
        command
    };
    let mut rill = Running::start(&mut serve());
    let http_addr = rill.http_addr();
    let http = Http::new(&http_addr);
    upload(&http_addr, "senml");
    let (status, body) = http.post("/v1/mqtt", &bridge("sensors", &mosquitto, "readings.{1}", 1));
    assert_eq!(status, 201, "{body}");
    wait_connected(&http, "sensors");
    std::thread::sleep(Duration::from_millis(200)); // the subscription's SubAck

    // 2023-01-01 and 2040-01-01 in SenML's seconds; five packs of three measurements each.
    let devices = [("in2023", 1_672_531_200.0, 1_672_531_200_000i64), ("in2040", 2_208_988_800.0, 2_208_988_800_000)];
    for (device, bt, _) in devices {
        let packs: Vec<String> = (0..5)
            .map(|i| {
                json!([{"bn": format!("urn:dev:{device}:"), "bt": bt + f64::from(i), "n": "temp", "u": "Cel", "v": 21.5},
                    {"n": "hum", "u": "%RH", "v": 40}, {"n": "battery", "u": "%EL", "v": 97}])
                .to_string()
            })
            .collect();
        mosquitto.publish_lines(&format!("sensors/{device}/telemetry"), 1, &(packs.join("\n") + "\n"));
        wait_for_records(&http, &format!("readings.{device}"), 15, WAIT);
    }

    rill.stop();
    let mut rill = Running::start(&mut serve());
    let kafka = rill.kafka_addr();
    rill.wait_for("MQTT bridges started").unwrap();
    std::thread::sleep(Duration::from_secs(1)); // five retention passes
    for (device, _, stamped_ms) in devices {
        let topic = format!("readings.{device}");
        let read: Value =
            serde_json::from_str(&rill_tests::python_client("confluent_kafka_read.py", &[&kafka, &topic, "15"]))
                .unwrap();
        assert_eq!(read["read"], 15, "{topic}: every reading is read back: {read}");
        let stamps = read["timestamps"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap());
        assert!(stamps.into_iter().all(|t| (stamped_ms..stamped_ms + 5_000).contains(&t)), "{topic}: {read}");
    }
    let log = rill.drain_log().join("\n");
    assert!(!log.contains("retention deleted"), "retention deleted fresh readings:\n{log}");
    rill.stop();
}
