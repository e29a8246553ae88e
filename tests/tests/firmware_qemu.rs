//! The sensor-node firmware, built for the MPS2 AN386 board and run in QEMU, its uplink UART
//! connected through a proxy to a real `rill serve`'s device listener. A Kafka client (kcat)
//! checks that the readings arrive in order; that readings taken while the link is cut arrive
//! after it returns, none lost or repeated; that after a reboot the new boot's readings —
//! whose sequence numbers start again — are stored, not taken for repeats; and that readings the
//! node confirmed as stored in its flash backlog outlive a power cut.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rill_tests::proxy::FaultProxy;
use rill_tests::qemu::Qemu;
use rill_tests::{Running, stdout_lines};

/// How long a step may take: QEMU boots in well under a second, and the firmware samples 10
/// readings a second.
const STEP: Duration = Duration::from_secs(60);

/// kcat's line per record: offset, timestamp, key, headers, value.
const FORMAT: &str = "%o %T %k %h %s\\n";

/// One stored reading, as a consumer sees it.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    offset: u64,
    timestamp_ms: i64,
    boot: u64,
    n: u64,
}

/// Every reading in the topic, in offset order, checking each record's key and device header.
/// The gateway creates the topic with the first frame: until then there is nothing.
fn readings(kafka: &str) -> Vec<Stored> {
    let output = Command::new("kcat")
        .args(["-b", kafka, "-C", "-t", "sensors", "-p", "0", "-o", "beginning", "-e", "-f", FORMAT])
        .output()
        .expect("kcat runs (cargo xtask test installs it)");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Unknown topic or partition"), "kcat: {stderr}");
        return Vec::new();
    }
    stdout_lines(&output)
        .iter()
        .map(|line| {
            let mut fields = line.splitn(5, ' ');
            let mut next = || fields.next().unwrap_or_else(|| panic!("a kcat line of five fields: {line:?}"));
            let (offset, timestamp, key, headers, value) = (next(), next(), next(), next(), next());
            assert_eq!((key, headers), ("temperature", "device=mps2-node-1"), "{line}");
            let json: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}"));
            Stored {
                offset: offset.parse().unwrap(),
                timestamp_ms: timestamp.parse().unwrap(),
                boot: json["boot"].as_u64().unwrap(),
                n: json["n"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// The reading numbers stored for each boot, in offset order.
fn by_boot(stored: &[Stored]) -> BTreeMap<u64, Vec<u64>> {
    let mut boots: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for reading in stored {
        boots.entry(reading.boot).or_default().push(reading.n);
    }
    boots
}

/// Waits until `done` holds for what the topic holds; returns it.
fn wait_until(kafka: &str, qemu: &Qemu, what: &str, done: impl Fn(&[Stored]) -> bool) -> Vec<Stored> {
    let deadline = Instant::now() + STEP;
    loop {
        let stored = readings(kafka);
        if done(&stored) {
            return stored;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {STEP:?}; stored per boot: {:?}\nfirmware console:\n{}",
            by_boot(&stored).iter().map(|(boot, ns)| (boot, ns.len(), ns.last())).collect::<Vec<_>>(),
            qemu.console()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The highest reading number stored for `boot`.
fn last_n(stored: &[Stored], boot: u64) -> Option<u64> {
    stored.iter().filter(|r| r.boot == boot).map(|r| r.n).max()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Each boot's readings are 0, 1, 2, … without a gap or a repeat.
fn assert_each_boot_complete(stored: &[Stored], console: &str) {
    for (boot, numbers) in by_boot(stored) {
        let expected: Vec<u64> = (0..numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "boot {boot}: every reading once, in order\nconsole:\n{console}");
    }
}

/// A gateway with a device listener (topic `sensors`, one partition) in a fresh directory, and a
/// fault proxy in front of the listener for the node to connect to.
fn gateway_behind_a_proxy() -> (tempfile::TempDir, Running, FaultProxy) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "[devices]\nlisten = \"127.0.0.1:0\"\ntopic = \"sensors\"\npartitions = 1\n").unwrap();
    let mut gateway =
        Running::start(rill_tests::serve().arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("data")));
    let proxy = FaultProxy::start(&gateway.devices_addr());
    (dir, gateway, proxy)
}

#[test]
fn firmware_in_qemu_forwards_readings_through_a_cut_link_and_a_reboot() {
    let (dir, mut gateway, proxy) = gateway_behind_a_proxy();
    let kafka = gateway.kafka_addr();
    let started_ms = now_ms();

    // The board's boot counter says 100: this boot is 101.
    let mut qemu = Qemu::start(&proxy.addr(), 100, &dir.path().join("console-1.txt"));
    let stored = wait_until(&kafka, &qemu, "20 readings of boot 101", |s| last_n(s, 101) >= Some(19));
    assert_each_boot_complete(&stored, &qemu.console());
    // Since-boot times became wall time at the gateway: within the test's run, and 100 ms apart
    // on average (within a batch exactly; between batches the mapping moves with each frame's
    // transit time, which a loaded machine stretches).
    let (first, last) = (&stored[0], &stored[stored.len() - 1]);
    assert!(first.timestamp_ms >= started_ms - 1_000 && last.timestamp_ms <= now_ms() + 1_000, "{first:?} {last:?}");
    let mean_step = (last.timestamp_ms - first.timestamp_ms) / (stored.len() as i64 - 1);
    assert!((80..=120).contains(&mean_step), "readings 100 ms apart, not {mean_step} ms: {stored:?}");

    // The link goes down for 6 s: nothing arrives meanwhile, and the node keeps reading into its
    // RAM log (~30 s of capacity).
    proxy.cut();
    let console_at_cut = qemu.console().len();
    std::thread::sleep(Duration::from_secs(1));
    let stored_in_cut = readings(&kafka).len();
    std::thread::sleep(Duration::from_secs(5));
    let during_cut = readings(&kafka);
    assert_eq!(during_cut.len(), stored_in_cut, "the cut held: nothing arrived through it");
    // The node kept the readings of the cut: in its RAM log (`held`), or moved to its flash
    // backlog (`spilled`; here without a flash file, memory that lasts as long as QEMU).
    let console = qemu.console();
    let kept = console[console_at_cut..]
        .lines()
        .filter_map(|line| Some(status_field(line, "held")? + status_field(line, "spilled")?))
        .max();
    assert!(kept.is_some_and(|batches| batches > 0), "the node kept batches during the cut:\n{console}");
    proxy.heal();
    // Readings of the cut are ~60; wait for them and 20 more.
    let target = last_n(&during_cut, 101).unwrap() + 80;
    let stored = wait_until(&kafka, &qemu, "the readings of the cut", |s| last_n(s, 101) >= Some(target));
    assert_each_boot_complete(&stored, &qemu.console());

    // Power off and on: the RAM log is gone, the boot counter (kept by the harness, as flash
    // would) moved on, and the sequence numbers start again at 0.
    qemu.kill();
    let before_reboot = readings(&kafka);
    let qemu = Qemu::start(&proxy.addr(), 101, &dir.path().join("console-2.txt"));
    let stored = wait_until(&kafka, &qemu, "20 readings of boot 102", |s| last_n(s, 102) >= Some(19));
    assert_eq!(&stored[..before_reboot.len()], &before_reboot[..], "the first boot's readings stay as they were");
    assert_each_boot_complete(&stored, &qemu.console());
    let offsets: Vec<u64> = stored.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..stored.len() as u64).collect::<Vec<_>>(), "one partition, dense offsets");

    // The gateway knows the device in its new boot; nothing was refused, nor dropped on the node.
    let (status, listed) = rill_tests::Http::new(&gateway.http_addr()).get("/v1/devices");
    let device = &listed[0];
    assert_eq!(status, 200);
    assert_eq!((device["device"].as_str(), device["boot"].as_u64()), (Some("mps2-node-1"), Some(102)), "{listed}");
    assert_eq!((device["refused"].as_u64(), device["dropped_by_device"].as_u64()), (Some(0), Some(0)), "{listed}");
    assert!(device["records"].as_u64() >= Some(stored.len() as u64), "{listed}");
    gateway.stop();
}

/// The number after `name` in a status line of the firmware's console.
fn status_field(line: &str, name: &str) -> Option<u64> {
    line.split(&format!(" {name} ")).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// The last status line's `stored` and `spilled` (see the firmware's status task).
fn last_status(console: &str) -> Option<(u64, u64)> {
    let line = console.lines().rev().find(|line| line.contains(" stored "))?;
    Some((status_field(line, "stored")?, status_field(line, "spilled")?))
}

/// A power cut of the node with its link down: the node had moved the readings of the outage
/// into its flash backlog (a file that outlives QEMU, as flash outlives a power cut) and said so
/// on its console (`stored`: below it, readings are at the gateway or in flash). After `kill -9`
/// and a new boot, every reading the first boot confirmed arrives, once, in order, under the
/// first boot's numbers and before the new boot's.
#[test]
fn firmware_in_qemu_keeps_what_it_confirmed_through_a_power_cut() {
    let (dir, mut gateway, proxy) = gateway_behind_a_proxy();
    let kafka = gateway.kafka_addr();
    let flash = dir.path().join("flash.bin");
    let mut qemu = Qemu::start_with_flash(&proxy.addr(), 300, &dir.path().join("console-1.txt"), &flash);
    wait_until(&kafka, &qemu, "10 readings of boot 301", |s| last_n(s, 301) >= Some(9));

    // The link goes down; once the answer timeout says so, each batch goes to flash. Wait for
    // a status line that counts some.
    proxy.cut();
    let deadline = Instant::now() + STEP;
    let confirmed = loop {
        let console = qemu.console();
        if let Some((stored, spilled)) = last_status(&console)
            && spilled >= 4
        {
            break stored;
        }
        assert!(Instant::now() < deadline, "no batch went to flash within {STEP:?}:\n{console}");
        std::thread::sleep(Duration::from_millis(200));
    };
    qemu.kill();
    let before = readings(&kafka);
    let delivered = last_n(&before, 301).map_or(0, |n| n + 1);
    assert!(confirmed > delivered + 10, "the flash held readings the gateway lacked: {delivered} < {confirmed}");

    proxy.heal();
    let qemu = Qemu::start_with_flash(&proxy.addr(), 301, &dir.path().join("console-2.txt"), &flash);
    let stored = wait_until(&kafka, &qemu, "20 readings of boot 302", |s| last_n(s, 302) >= Some(19));
    assert_each_boot_complete(&stored, &qemu.console());
    let first_boot = by_boot(&stored)[&301].len() as u64;
    assert!(first_boot >= confirmed, "{first_boot} readings of boot 301 arrived; it had confirmed {confirmed}");
    let boots: Vec<u64> = stored.iter().map(|r| r.boot).collect();
    assert!(boots.is_sorted(), "boot 301's readings all came before boot 302's");
    let (status, listed) = rill_tests::Http::new(&gateway.http_addr()).get("/v1/devices");
    assert_eq!(status, 200);
    let device = &listed[0];
    assert_eq!((device["refused"].as_u64(), device["dropped_by_device"].as_u64()), (Some(0), Some(0)), "{listed}");
    gateway.stop();
}

/// The same firmware on a serial line: QEMU's uplink UART is a pseudo-terminal, which the
/// gateway opens as a `[[devices.serial]]` port. The readings arrive in order, and across a
/// restart of the gateway (the port closed, then opened again) none is lost or repeated.
#[test]
fn firmware_in_qemu_on_a_serial_port_of_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (qemu, pty) = Qemu::start_on_pty(200, &dir.path().join("console.txt"));
    let config = dir.path().join("rill.toml");
    let toml = format!(
        "[devices]\ntopic = \"sensors\"\npartitions = 1\n[[devices.serial]]\npath = \"{}\"\nbaud = 115200\n",
        pty.display()
    );
    std::fs::write(&config, toml).unwrap();
    let serve = || {
        Running::start(rill_tests::serve().arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("data")))
    };
    let mut gateway = serve();
    gateway.wait_for("devices on serial port").unwrap();
    let kafka = gateway.kafka_addr();
    let stored = wait_until(&kafka, &qemu, "20 readings over the serial port", |s| last_n(s, 201) >= Some(19));
    assert_each_boot_complete(&stored, &qemu.console());
    let (status, listener) = rill_tests::Http::new(&gateway.http_addr()).get("/v1/devices/listener");
    assert_eq!(status, 200);
    let port = &listener["serial"][0];
    assert_eq!((port["path"].as_str(), port["open"].as_bool()), (pty.to_str(), Some(true)), "{listener}");
    assert_eq!(listener["listen"], serde_json::Value::Null, "no TCP listener was asked for: {listener}");
    let page = rill_tests::Http::new(&gateway.http_addr()).text("/");
    let pty_path = pty.display().to_string();
    assert!(page.contains("Serial ports (devices)") && page.contains(&pty_path), "the status page shows the port");
    let admin = format!("http://{}", gateway.http_addr());
    let cli = rill_tests::rill().args(["status", "--admin", &admin]).output().unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        text.lines().any(|l| l.starts_with(&pty_path) && l.contains("open")),
        "rill status shows the port:\n{text}"
    );

    // The gateway goes away for 2 s; the node keeps its readings until it is back.
    gateway.stop();
    std::thread::sleep(Duration::from_secs(2));
    let mut gateway = serve();
    gateway.wait_for("devices on serial port").unwrap();
    let kafka = gateway.kafka_addr();
    let target = last_n(&stored, 201).unwrap() + 40;
    let stored = wait_until(&kafka, &qemu, "the readings of the restart", |s| last_n(s, 201) >= Some(target));
    assert_each_boot_complete(&stored, &qemu.console());
    gateway.stop();
}

/// The flash backlog on the board's CPU: the flash probe (built beside the firmware) pushes 100
/// batches through 16 KiB of RAM behaving as NOR flash, reading back and popping the oldest every
/// other step, and says how it went on its console.
#[test]
fn flash_backlog_probe_runs_on_the_board() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.txt");
    let probe = rill_tests::qemu::firmware().with_file_name("flash-probe");
    let mut qemu = std::process::Command::new("qemu-system-arm")
        .args(["-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&probe)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-arm runs");
    let deadline = Instant::now() + STEP;
    let text = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains('\n') || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(text.contains("100 batches pushed, 50 read back intact and popped"), "probe console: {text:?}");
}
