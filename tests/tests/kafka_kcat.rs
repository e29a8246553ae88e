//! The real `rill` binary against kcat (librdkafka, as Debian ships it): metadata, produce in every
//! codec with keys, consume, and offsets by timestamp. `cargo xtask test` installs kcat.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rill_tests::Running;

fn kcat(broker: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new("kcat");
    command.arg("-b").arg(broker).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child =
        command.spawn().unwrap_or_else(|e| panic!("kcat must be installed (cargo xtask test installs it): {e}"));
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

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
        kcat(&broker, &["-P", "-t", "readings", "-K:", "-z", codec], Some(&(lines.join("\n") + "\n")));
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
