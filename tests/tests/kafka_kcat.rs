//! The real `rill` binary against kcat (librdkafka, as Debian ships it): metadata, produce in every
//! codec with keys (idempotently too), consume, offsets by timestamp, and consumer groups.
//! `cargo xtask test` installs kcat.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_tests::{Running, kcat, stdout_lines};

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[test]
fn kcat_lists_produces_in_every_codec_and_consumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());

    let mut expected = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: Vec<String> = (0..20).map(|i| format!("{codec}-key-{i}:{codec} reading {i}")).collect();
        // librdkafka's idempotent producer (InitProducerId, sequence numbers) for one codec.
        let idempotence = if codec == "gzip" { "enable.idempotence=true" } else { "enable.idempotence=false" };
        let args = ["-P", "-t", "readings", "-K:", "-z", codec, "-X", idempotence];
        kcat(&broker, &args, Some(&(lines.join("\n") + "\n")));
        expected.extend(lines);
    }
    // Auto-created on first use, with one partition, and listed.
    let metadata = String::from_utf8_lossy(&kcat(&broker, &["-L"], None).stdout).to_string();
    assert!(metadata.contains("1 brokers") && metadata.contains(&format!("at {broker}")), "{metadata}");
    assert!(metadata.contains("topic \"readings\" with 1 partitions"), "{metadata}");

    let consumed = kcat(&broker, &["-C", "-t", "readings", "-o", "beginning", "-e", "-f", "%o %k:%s\\n"], None);
    let lines = stdout_lines(&consumed);
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for (i, (line, want)) in lines.iter().zip(&expected).enumerate() {
        assert_eq!(line, &format!("{i} {want}"), "offsets are dense and in produce order");
    }
    // From an offset in the middle of a compressed batch.
    let tail = kcat(&broker, &["-C", "-t", "readings", "-o", "45", "-e", "-f", "%o\\n"], None);
    assert_eq!(stdout_lines(&tail), (45..100).map(|o| o.to_string()).collect::<Vec<_>>());
    rill.stop();
}

#[test]
fn kcat_reads_from_a_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    kcat(&broker, &["-P", "-t", "timed"], Some("early-1\nearly-2\n"));
    std::thread::sleep(Duration::from_millis(50));
    let since = now_ms();
    std::thread::sleep(Duration::from_millis(50));
    kcat(&broker, &["-P", "-t", "timed"], Some("late-1\nlate-2\n"));
    let from = format!("s@{since}");
    let consumed = kcat(&broker, &["-C", "-t", "timed", "-o", &from, "-e", "-f", "%o %s\\n"], None);
    assert_eq!(stdout_lines(&consumed), vec!["2 late-1", "3 late-2"]);
    // A timestamp after every record: nothing to read, and kcat still ends cleanly.
    let later = format!("s@{}", now_ms() + 60_000);
    let none = kcat(&broker, &["-C", "-t", "timed", "-o", &later, "-e", "-f", "%o %s\\n"], None);
    assert!(stdout_lines(&none).is_empty(), "{:?}", stdout_lines(&none));
    rill.stop();
}

/// A kcat consumer group member running in the background, its output collected as it comes.
struct Member {
    name: &'static str,
    child: std::process::Child,
    /// "partition offset value" per record consumed.
    records: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// kcat's stderr: rebalance events among them.
    events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Member {
    fn join(name: &'static str, broker: &str, group: &str, topic: &str) -> Member {
        let mut child = Command::new("kcat")
            .args(["-b", broker, "-G", group, topic, "-u", "-f", "%p %o %s\\n"])
            .args(["-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=100"])
            .args(["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kcat starts");
        let records = collect(child.stdout.take().unwrap());
        let events = collect(child.stderr.take().unwrap());
        Member { name, child, records, events }
    }

    /// How many assignments kcat has reported, and the partitions of the latest.
    fn assignment(&self) -> (usize, Vec<u32>) {
        let events = self.events.lock().unwrap();
        let assigned: Vec<&String> = events.iter().filter(|line| line.contains("assigned:")).collect();
        let latest = assigned.last().map_or_else(Vec::new, |line| {
            let list = &line[line.find("assigned:").unwrap()..];
            list.split('[').skip(1).map(|part| part[..part.find(']').unwrap()].trim().parse().unwrap()).collect()
        });
        (assigned.len(), latest)
    }

    /// Leaves the group as a user's Ctrl-C would: kcat commits and sends LeaveGroup.
    fn leave(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) has no memory-safety preconditions.
        let sent = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(sent, 0);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status:?}: {:?}", self.name, self.events.lock().unwrap());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every member in `live` has reported a new assignment since `before` (its count of
/// assignments then), then checks that together they own every partition exactly once.
fn wait_for_rebalance(live: &[&Member], before: &[usize], partitions: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while live.iter().zip(before).any(|(m, seen)| m.assignment().0 <= *seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "no rebalance: {:?}",
            live.iter().map(|m| m.events.lock().unwrap().clone()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut owned: Vec<u32> = live.iter().flat_map(|m| m.assignment().1).collect();
    owned.sort_unstable();
    assert_eq!(owned, (0..partitions).collect::<Vec<_>>(), "each partition has exactly one owner");
    for member in live {
        assert!(!member.assignment().1.is_empty(), "{} got no partition", member.name);
    }
}

/// The values consumed so far by any member that start with `prefix`, without repeats.
fn consumed_with_prefix(members: &[Member], prefix: &str) -> std::collections::HashSet<String> {
    members
        .iter()
        .flat_map(|m| m.records.lock().unwrap().clone())
        .filter_map(|line| line.split(' ').nth(2).map(str::to_owned))
        .filter(|value| value.starts_with(prefix))
        .collect()
}

#[test]
fn kcat_group_members_join_and_leave_in_turn_without_losing_records() {
    const PARTITIONS: u32 = 4;
    const PER_PHASE: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    // Four partitions, made through Kafka's CreateTopics by a client nobody here wrote.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![broker.clone()]).build().await.unwrap();
        client.controller_client().unwrap().create_topic("grouped", PARTITIONS as i32, 1, 5_000).await.unwrap();
    });
    // Each phase produces records after the group settled, then waits until all are consumed.
    let phase = |members: &[Member], live: &[usize], before: &[usize], phase: usize| {
        let live_members: Vec<&Member> = live.iter().map(|&i| &members[i]).collect();
        wait_for_rebalance(&live_members, before, PARTITIONS);
        let lines: Vec<String> = (0..PER_PHASE).map(|i| format!("key-{i}:phase{phase}-{i}")).collect();
        kcat(&broker, &["-P", "-t", "grouped", "-K:"], Some(&(lines.join("\n") + "\n")));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let seen = consumed_with_prefix(members, &format!("phase{phase}-")).len();
            if seen == PER_PHASE {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "phase {phase}: {seen} of {PER_PHASE} consumed");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let assignments = |members: &[Member], live: &[usize]| -> Vec<usize> {
        live.iter().map(|&i| members[i].assignment().0).collect()
    };

    let mut members = vec![Member::join("first", &broker, "readers", "grouped")];
    phase(&members, &[0], &[0], 0);
    members.push(Member::join("second", &broker, "readers", "grouped"));
    phase(&members, &[0, 1], &[1, 0], 1);
    let before = assignments(&members, &[0, 1]);
    members.push(Member::join("third", &broker, "readers", "grouped"));
    phase(&members, &[0, 1, 2], &[before[0], before[1], 0], 2);
    let before = assignments(&members, &[1, 2]);
    members[0].leave();
    phase(&members, &[1, 2], &before, 3);
    let before = assignments(&members, &[2]);
    members[1].leave();
    phase(&members, &[2], &before, 4);
    members[2].leave();

    // Every record was consumed; within a phase each partition was read by one member only; and
    // with commits every 100 ms and on every leave, nothing was read twice.
    let mut owners: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    let mut reads: BTreeMap<String, usize> = BTreeMap::new();
    for member in &members {
        for line in member.records.lock().unwrap().iter() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (partition, value) = (fields[0].to_owned(), fields[2].to_owned());
            let phase = value.split('-').next().unwrap().to_owned();
            owners.entry((phase, partition)).or_default().insert(member.name);
            *reads.entry(value).or_default() += 1;
        }
    }
    assert_eq!(reads.len(), 5 * PER_PHASE, "every acknowledged record consumed");
    for ((phase, partition), readers) in &owners {
        assert_eq!(readers.len(), 1, "{phase} partition {partition} read by {readers:?}");
    }
    let duplicates: Vec<(&String, &usize)> = reads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "read twice: {duplicates:?}");
    rill.stop();
}
