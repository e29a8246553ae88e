//! The CLI's client commands against the real broker: topics, produce, consume, groups, and clear
//! errors for bad input.

use std::io::Write;
use std::process::{Output, Stdio};

use rill_tests::{Running, rill, stdout_lines};

/// `rill ARGS --bootstrap BROKER`, feeding `stdin`; returns the output, successful or not.
fn cli(broker: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = rill()
        .args(args)
        .args(["--bootstrap", broker])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rill starts");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(broker: &str, args: &[&str], stdin: Option<&str>) -> Vec<String> {
    let output = cli(broker, args, stdin);
    assert!(output.status.success(), "rill {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    stdout_lines(&output)
}

fn refused(broker: &str, args: &[&str]) -> String {
    let output = cli(broker, args, None);
    assert!(!output.status.success(), "rill {args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn topics_records_and_groups_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    assert_eq!(ok(&broker, &["topic", "list"], None), vec!["(no topics)"]);
    ok(&broker, &["topic", "create", "readings", "--partitions", "2", "--config", "retention.ms=3600000"], None);
    assert_eq!(ok(&broker, &["topic", "list"], None), vec!["readings\t2 partitions"]);
    assert!(refused(&broker, &["topic", "create", "readings"]).contains("TopicAlreadyExists"));
    assert!(refused(&broker, &["topic", "create", "bad name"]).contains("InvalidTopicException"));

    // Keyed records all land in one partition; a file goes in batches over both.
    ok(&broker, &["produce", "readings", "--key", "dev-1"], Some("t=20.5\nt=20.7\nt=20.9\n"));
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, (0..1000).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
    ok(&broker, &["produce", "readings", "--partition", "1", "--file", file.to_str().unwrap()], None);
    let described = ok(&broker, &["topic", "describe", "readings"], None).join("\n");
    assert!(described.contains("retention.ms = 3600000"), "{described}");

    let all = ok(&broker, &["consume", "readings", "--exit"], None);
    assert_eq!(all.len(), 1003, "every record, then exit at the end");
    let keyed = ok(&broker, &["consume", "readings", "--exit", "--format", "json"], None)
        .into_iter()
        .filter(|line| line.contains("\"key\":\"dev-1\""))
        .collect::<Vec<_>>();
    assert_eq!(keyed.len(), 3);
    // Partition 1 holds the file's lines after the keyed records, if the key hashed there.
    let before = if keyed[0].contains("\"partition\":1") { 3 } else { 0 };
    let from = (before + 998).to_string();
    let tail =
        ok(&broker, &["consume", "readings", "--partition", "1", "--offset", &from, "--max", "5", "--exit"], None);
    assert_eq!(tail, vec!["line 998", "line 999"]);

    ok(
        &broker,
        &["topic", "alter", "readings", "--config", "retention.bytes=1000000", "--delete-config", "retention.ms"],
        None,
    );
    let described = ok(&broker, &["topic", "describe", "readings"], None).join("\n");
    assert!(
        described.contains("retention.bytes = 1000000") && described.contains("retention.ms = 604800000  (default)"),
        "{described}"
    );
    assert!(
        refused(&broker, &["topic", "alter", "readings", "--config", "retention.ms=soon"]).contains("InvalidConfig")
    );

    // A group made by resetting its offsets, described with its lag, then deleted.
    ok(&broker, &["group", "reset-offsets", "dashboard", "--topic", "readings", "--to", "earliest"], None);
    ok(
        &broker,
        &["group", "reset-offsets", "dashboard", "--topic", "readings", "--partition", "1", "--to", "990"],
        None,
    );
    assert_eq!(ok(&broker, &["group", "list"], None), vec!["dashboard\tEmpty\t"]);
    let group = ok(&broker, &["group", "describe", "dashboard"], None).join("\n");
    assert!(group.contains("state Empty") && group.contains("members 0"), "{group}");
    let partition_one = group
        .lines()
        .find(|l| l.trim_start().starts_with("readings") && l.split_whitespace().nth(1) == Some("1"))
        .unwrap();
    let end = (before + 1000).to_string();
    let lag = (before + 10).to_string();
    assert_eq!(partition_one.split_whitespace().collect::<Vec<_>>()[2..], ["990", &end, &lag], "committed, end, lag");
    ok(&broker, &["group", "delete", "dashboard"], None);
    assert!(refused(&broker, &["group", "describe", "dashboard"]).contains("does not exist"));

    // Bad input: clear errors, nothing changed.
    assert!(refused(&broker, &["consume", "nope", "--exit"]).contains("topic nope does not exist"));
    assert!(refused(&broker, &["consume", "readings", "--offset", "soon"]).contains("expected earliest"));
    assert!(refused(&broker, &["produce", "readings", "--partition", "7"]).contains("no partition 7"));
    ok(&broker, &["topic", "delete", "readings"], None);
    assert_eq!(ok(&broker, &["topic", "list"], None), vec!["(no topics)"]);
    rill.stop();
    let unreachable = refused(&broker, &["topic", "list"]);
    assert!(unreachable.contains("cannot connect") && unreachable.contains("rill serve"), "{unreachable}");
}

/// `rill produce` behaves like the Kafka producers beside it: a topic it names is created where
/// the broker creates topics on demand (the default), and where it does not, the error says so
/// and how to create it; nothing is created by the refusal.
#[test]
fn produce_creates_a_missing_topic_where_the_broker_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rill, broker) = Running::serve_on(dir.path());
    ok(&broker, &["produce", "sensors"], Some(&(1..=1000).map(|i| format!("{i}\n")).collect::<String>()));
    assert_eq!(ok(&broker, &["topic", "list"], None), vec!["sensors\t1 partition"]);
    assert_eq!(ok(&broker, &["consume", "sensors", "--exit"], None).len(), 1000);
    rill.stop();

    let config = dir.path().join("no-auto-create.toml");
    std::fs::write(&config, "[kafka]\nauto_create_topics = false\n").unwrap();
    let mut rill = Running::start(
        rill_tests::serve().arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join("strict")),
    );
    let broker = rill.kafka_addr();
    let error = refused(&broker, &["produce", "sensors"]);
    assert!(
        error.contains("does not create topics on demand") && error.contains("rill topic create sensors"),
        "{error}"
    );
    assert_eq!(ok(&broker, &["topic", "list"], None), vec!["(no topics)"]);
    rill.stop();
}
