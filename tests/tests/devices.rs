//! The device listener of a real `rill serve`, driven by a test device that speaks the uplink
//! (`rill_core::uplink`) over TCP: readings are stored in order and acknowledged, a frame sent
//! again is not stored twice (also across a restart of the gateway), a new boot's frames are not
//! taken for repeats, line noise costs nothing, a bad batch goes to the dead-letter topic, and
//! times since boot arrive as wall time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_core::batch::{BatchParams, RecordSpec, build_vec};
use rill_core::uplink::{self, Clock, DataFrame, Deframer, Frame, UPLINK_FRAME_BYTES_MAX, UPLINK_WIRE_BYTES_MAX};
use rill_tests::{Running, kcat, stdout_lines};

/// The device's clock when it sends: a day after boot.
const SENT_AT: u64 = 86_400_000;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("rill.toml");
    std::fs::write(&file, "[devices]\nlisten = \"127.0.0.1:0\"\ntopic = \"readings\"\npartitions = 2\n").unwrap();
    file
}

fn serve(dir: &std::path::Path) -> Running {
    Running::start(rill_tests::serve().arg("--config").arg(config(dir)).arg("--data-dir").arg(dir.join("data")))
}

/// A device's connection: frames out, acks in.
struct Device {
    stream: TcpStream,
    deframer: Deframer<Vec<u8>>,
}

impl Device {
    fn connect(addr: &str) -> Device {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Device { stream, deframer: Deframer::new(vec![0; UPLINK_WIRE_BYTES_MAX]) }
    }

    /// One frame of `readings` (values), stamped `SENT_AT - 1000 * (n - i)` since boot.
    fn send(&mut self, boot: u32, seq: u32, readings: &[&str]) {
        self.send_after(boot, seq, None, readings);
    }

    /// [`send`](Self::send), naming `prev` as the batch before it the device still holds.
    fn send_after(&mut self, boot: u32, seq: u32, prev: Option<u32>, readings: &[&str]) {
        let header: [(&[u8], Option<&[u8]>); 1] = [(b"device", Some(b"node-1"))];
        let specs: Vec<RecordSpec<'_>> = readings
            .iter()
            .enumerate()
            .map(|(i, value)| RecordSpec {
                timestamp: (SENT_AT - 1_000 * (readings.len() - i) as u64) as i64,
                key: Some(b"node-1"),
                value: Some(value.as_bytes()),
                headers: &header,
            })
            .collect();
        self.send_frame(boot, seq, prev, &build_vec(BatchParams::default(), &specs).unwrap());
    }

    fn send_batch(&mut self, boot: u32, seq: u32, batch: &[u8]) {
        self.send_frame(boot, seq, None, batch);
    }

    fn send_frame(&mut self, boot: u32, seq: u32, prev: Option<u32>, batch: &[u8]) {
        let frame = Frame::Data(DataFrame {
            device: "node-1",
            boot,
            seq,
            prev,
            dropped: 3,
            clock: Clock::SinceBoot,
            sent_at: SENT_AT,
            batch,
        });
        let (mut scratch, mut out) = (vec![0; UPLINK_FRAME_BYTES_MAX], vec![0; UPLINK_WIRE_BYTES_MAX]);
        let len = uplink::encode(&frame, &mut scratch, &mut out).unwrap();
        self.stream.write_all(&out[..len]).unwrap();
    }

    /// The next ack: (boot, sequence).
    fn ack(&mut self) -> (u32, u32) {
        match self.answer() {
            Frame::Ack { boot, seq } => (boot, seq),
            other => panic!("not an ack: {other:?}"),
        }
    }

    /// The gateway's next answer.
    fn answer(&mut self) -> Frame<'static> {
        let mut buffer = [0u8; 512];
        loop {
            let n = self.stream.read(&mut buffer).expect("an ack within 10 s");
            assert!(n > 0, "the gateway closed the connection");
            let mut answers = Vec::new();
            self.deframer.feed(&buffer[..n], |frame| match frame {
                Ok(Frame::Ack { boot, seq }) => answers.push(Frame::Ack { boot, seq }),
                Ok(Frame::Nak { boot, after }) => answers.push(Frame::Nak { boot, after }),
                other => panic!("not an answer: {other:?}"),
            });
            if let Some(&answer) = answers.first() {
                assert_eq!(answers.len(), 1, "one answer per frame, one frame at a time");
                return answer;
            }
        }
    }
}

/// (offset, value, timestamp) of every record of `topic`, both partitions.
fn records(kafka: &str, topic: &str) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    for partition in ["0", "1"] {
        let args = ["-C", "-t", topic, "-p", partition, "-o", "beginning", "-e", "-f", "%o\t%s\t%T\n"];
        let output = kcat(kafka, &args, None);
        for line in stdout_lines(&output) {
            let fields: Vec<&str> = line.split('\t').collect();
            out.push((fields[0].to_owned(), fields[1].to_owned(), fields[2].parse().unwrap()));
        }
    }
    out
}

#[test]
fn readings_are_stored_once_in_order_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut rill = serve(dir.path());
    let (addr, kafka) = (rill.devices_addr(), rill.kafka_addr());
    let mut device = Device::connect(&addr);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    for seq in 0..5 {
        device.send(0xA, seq, &[&format!("a{seq}-0"), &format!("a{seq}-1")]);
        assert_eq!(device.ack(), (0xA, seq));
    }
    // A frame sent again (its ack lost) is acknowledged, not stored again.
    device.send(0xA, 3, &["a3-0", "a3-1"]);
    assert_eq!(device.ack(), (0xA, 4), "the ack says how far the gateway holds");
    // Line noise, then the next frame on a new connection.
    let mut device = Device::connect(&addr);
    device.stream.write_all(b"\x17\x42noise\x00\x00").unwrap();
    device.send(0xA, 5, &["a5-0"]);
    assert_eq!(device.ack(), (0xA, 5));
    // A frame lost on the way (the device still holds 6, the gateway never got it): the next one
    // is not stored, and the nak says where to go on from.
    device.send_after(0xA, 7, Some(6), &["a7-0"]);
    assert_eq!(device.answer(), Frame::Nak { boot: 0xA, after: Some(5) });
    device.send(0xA, 6, &["a6-0"]);
    assert_eq!(device.ack(), (0xA, 6));
    device.send_after(0xA, 7, Some(6), &["a7-0"]);
    assert_eq!(device.ack(), (0xA, 7));
    // A reboot starts its sequence at 0 again: stored, not taken for a repeat.
    device.send(0xB, 0, &["b0-0"]);
    assert_eq!(device.ack(), (0xB, 0));
    // A batch that is not one: acknowledged, and kept in the dead-letter topic with why.
    device.send_batch(0xB, 1, b"not a record batch");
    assert_eq!(device.ack(), (0xB, 1));
    // So does a valid batch the log does not take from a device (a transactional one).
    let spec = RecordSpec { timestamp: 1, key: None, value: Some(b"txn"), headers: &[] };
    let transactional = build_vec(BatchParams { is_transactional: true, ..BatchParams::default() }, &[spec]).unwrap();
    device.send_batch(0xB, 2, &transactional);
    assert_eq!(device.ack(), (0xB, 2));
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;

    let stored = records(&kafka, "readings");
    let values: Vec<&str> = stored.iter().map(|(_, v, _)| v.as_str()).collect();
    let expected = [
        "a0-0", "a0-1", "a1-0", "a1-1", "a2-0", "a2-1", "a3-0", "a3-1", "a4-0", "a4-1", "a5-0", "a6-0", "a7-0", "b0-0",
    ];
    assert_eq!(values, expected, "every reading once, in order (one device: one partition)");
    for (_, value, at) in &stored {
        // The last reading of a frame was taken 1 s before sending; the frame left at once.
        let single = ["a5-0", "a6-0", "a7-0", "b0-0"].contains(&value.as_str());
        let age = if value.ends_with("-1") || single { 1_000 } else { 2_000 };
        assert!((before - age - 1_000..=after - age + 1_000).contains(at), "{value} at {at}: wall time expected");
    }
    let dead = kcat(&kafka, &["-C", "-t", "readings.dlq", "-o", "beginning", "-e", "-f", "%s|%h\n"], None);
    let dead = String::from_utf8_lossy(&dead.stdout).into_owned();
    assert!(dead.contains("not a record batch") && dead.contains("rill.error="), "{dead}");
    assert_eq!(dead.lines().count(), 2, "both refused batches are kept: {dead}");
    let metrics = rill_tests::Http::new(&rill.http_addr()).text("/metrics");
    assert!(metrics.contains("rill_device_records_total{device=\"node-1\"} 14"), "{metrics}");
    assert!(metrics.contains("rill_device_gaps_total{device=\"node-1\"} 1"), "{metrics}");
    assert!(metrics.contains("rill_device_duplicate_frames_total{device=\"node-1\"} 1"), "{metrics}");
    assert!(metrics.contains("rill_device_dropped_records{device=\"node-1\"} 3"), "{metrics}");
    let http = rill_tests::Http::new(&rill.http_addr());
    let (status, listed) = http.get("/v1/devices");
    assert_eq!((status, listed[0]["device"].as_str(), listed[0]["records"].as_u64()), (200, Some("node-1"), Some(14)));
    let page = http.text("/");
    assert!(page.contains("Devices (uplink)") && page.contains("node-1"), "the status page lists the device");
    let admin = format!("http://{}", rill.http_addr());
    let cli = rill_tests::rill().args(["status", "--admin", &admin]).output().unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        text.contains("DEVICE") && text.lines().any(|l| l.starts_with("node-1") && l.contains("0xb / 2")),
        "{text}"
    );

    // After a restart of the gateway, a repeat is still known.
    drop(device);
    rill.stop();
    let mut rill = serve(dir.path());
    let mut device = Device::connect(&rill.devices_addr());
    device.send(0xB, 0, &["b0-0"]);
    assert_eq!(device.ack(), (0xB, 2));
    device.send(0xB, 3, &["b3-0"]);
    assert_eq!(device.ack(), (0xB, 3));
    let values: Vec<String> = records(&rill.kafka_addr(), "readings").into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(values.len(), 15, "{values:?}");
    assert_eq!(values.last().map(String::as_str), Some("b3-0"));
}

/// With `[devices.partitioner]` the plugin places each reading: a batch whose readings go to
/// several partitions is regrouped per partition, in order. Until the plugin is there (uploaded
/// after the gateway started) frames are not acknowledged, so the device keeps them; a batch the
/// plugin refuses is kept in the dead-letter topic.
#[test]
fn a_partitioner_plugin_places_each_reading() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(
        &config,
        "[devices]\nlisten = \"127.0.0.1:0\"\ntopic = \"rooms\"\npartitions = 3\n\
         [devices.partitioner]\nplugin = \"key-field-partitioner\"\nconfig = { field = \"room\", on_missing = \"error\" }\n",
    )
    .unwrap();
    let mut rill =
        Running::start(rill_tests::serve().arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("data")));
    let (addr, kafka, http) = (rill.devices_addr(), rill.kafka_addr(), rill.http_addr());
    let first = [r#"{"room":"a","n":0}"#, r#"{"room":"b","n":1}"#, r#"{"room":"a","n":2}"#];

    // The plugin is not uploaded yet: no ack, the connection closes, nothing is stored.
    let mut device = Device::connect(&addr);
    device.send(1, 0, &first);
    let mut buffer = [0u8; 64];
    assert!(matches!(device.stream.read(&mut buffer), Ok(0) | Err(_)), "closed without an answer");

    let upload = rill_tests::rill()
        .args(["plugin", "upload"])
        .arg(rill_tests::plugin_file("key-field-partitioner"))
        .args(["--admin", &format!("http://{http}")])
        .output()
        .unwrap();
    assert!(upload.status.success(), "{}", String::from_utf8_lossy(&upload.stderr));

    // Sent again, as the device does after a back-off, until the gateway (which tries a failed
    // plugin again after a few seconds) takes it: each reading in its room's partition, in order.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut device = loop {
        let mut device = Device::connect(&addr);
        device.send(1, 0, &first);
        let mut buffer = [0u8; 64];
        match device.stream.read(&mut buffer) {
            Ok(n) if n > 0 => {
                let mut acked = None;
                device.deframer.feed(&buffer[..n], |frame| {
                    if let Ok(Frame::Ack { boot, seq }) = frame {
                        acked = Some((boot, seq));
                    }
                });
                assert_eq!(acked, Some((1, 0)));
                break device;
            }
            _ => {
                assert!(std::time::Instant::now() < deadline, "the partitioner was never loaded");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    device.send(1, 1, &[r#"{"room":"b","n":3}"#]);
    assert_eq!(device.ack(), (1, 1));
    let in_partition = |room: &str| {
        let partition = rill_core::partitioner::partition_for_key(room.as_bytes(), 3).unwrap().to_string();
        let output =
            kcat(&kafka, &["-C", "-t", "rooms", "-p", &partition, "-o", "beginning", "-e", "-f", "%s\n"], None);
        stdout_lines(&output)
    };
    let (a, b) = (in_partition("a"), in_partition("b"));
    assert!(a.starts_with(&[first[0].to_owned(), first[2].to_owned()]), "room a: {a:?}");
    assert!(b.ends_with(&[first[1].to_owned(), r#"{"room":"b","n":3}"#.to_owned()]), "room b: {b:?}");

    let (_, listener) = rill_tests::Http::new(&http).get("/v1/devices/listener");
    assert_eq!(listener["partitioner"].as_str(), Some("key-field-partitioner@newest"), "{listener}");
    assert_eq!(listener["listen"].as_str(), Some(addr.as_str()), "{listener}");

    // A reading without a room: the plugin refuses the batch, which is kept with why, and acked.
    device.send(1, 2, &[r#"{"n":4}"#]);
    assert_eq!(device.ack(), (1, 2));
    let dead = kcat(&kafka, &["-C", "-t", "rooms.dlq", "-o", "beginning", "-e", "-f", "%h\n"], None);
    let dead = String::from_utf8_lossy(&dead.stdout).into_owned();
    assert!(dead.contains("partitioner key-field-partitioner"), "{dead}");
    rill.stop();
}
