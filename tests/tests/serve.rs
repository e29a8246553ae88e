//! `rill serve` as an operator runs it: start, stop on signals, refuse bad input with one line.

use rill_tests::{Running, rill, serve};

#[test]
fn help_and_version_work() {
    let help = rill().arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("serve"), "{text}");
    let version = rill().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("rill "), "version line");
}

fn graceful_stop_on(signal: libc::c_int) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rill_process = Running::start(serve().arg("--data-dir").arg(&data));
    rill_process.wait_for("rill ready").unwrap();
    assert!(data.join("rill.redb").exists(), "storage is created in the data dir");
    rill_process.signal(signal);
    let status = rill_process.wait_exit();
    assert!(status.success(), "exit {status:?}; log:\n{}", rill_process.log.join("\n"));
    assert!(rill_process.log.iter().any(|line| line.contains("storage closed")), "{:?}", rill_process.log);

    // It starts again on the same data.
    let mut again = Running::start(serve().arg("--data-dir").arg(&data));
    again.wait_for("rill ready").unwrap();
    again.signal(libc::SIGTERM);
    assert!(again.wait_exit().success());
}

#[test]
fn serve_stops_gracefully_on_sigterm() {
    graceful_stop_on(libc::SIGTERM);
}

#[test]
fn serve_stops_gracefully_on_sigint() {
    graceful_stop_on(libc::SIGINT);
}

#[test]
fn unknown_config_key_fails_with_one_line_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    std::fs::write(&config, "data_dir = \"x\"\n[storage]\ndurabilty = \"interval\"\n").unwrap();
    let output = serve().arg("--config").arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|line| line.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains("durabilty") && errors[0].contains("line 3") && errors[0].contains("hint:"), "{stderr}");
    assert!(!dir.path().join("x").exists(), "nothing is created on a bad config");
}

#[test]
fn config_file_is_used_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rill.toml");
    let from_file = dir.path().join("from-file");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n[storage]\ndurability = \"interval\"\nflush_interval_ms = 20\n", from_file),
    )
    .unwrap();
    let mut from_config = Running::start(serve().arg("--config").arg(&config));
    let line = from_config.wait_for("storage open").unwrap();
    assert!(line.contains("Interval"), "{line}");
    from_config.signal(libc::SIGTERM);
    assert!(from_config.wait_exit().success());
    assert!(from_file.join("rill.redb").exists());

    let flag_dir = dir.path().join("from-flag");
    let mut overridden = Running::start(serve().arg("--config").arg(&config).arg("--data-dir").arg(&flag_dir));
    overridden.wait_for("rill ready").unwrap();
    overridden.signal(libc::SIGTERM);
    assert!(overridden.wait_exit().success());
    assert!(flag_dir.join("rill.redb").exists());
}

#[test]
fn a_second_serve_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Running::start(serve().arg("--data-dir").arg(dir.path()));
    first.wait_for("rill ready").unwrap();
    let second = serve().arg("--data-dir").arg(dir.path()).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another process") && stderr.contains("hint:"), "{stderr}");
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success());
}

#[test]
fn unknown_command_fails_with_usage() {
    let output = rill().arg("srve").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("serve"));
}
