//! The Debian package (`cargo xtask package`): installed with `dpkg -i` as a gateway's operator
//! would, it puts the binary, the loopback-only config and the systemd unit in place, makes the
//! `rill` user and `/var/lib/rill`; the unit passes `systemd-analyze verify`; the installed binary
//! runs as `rill` on the installed config (ports moved to free ones) and serves Kafka; `dpkg
//! --purge` leaves nothing behind. Needs root and the package in `RILL_DEB`: `cargo xtask test`
//! runs it (`--ignored`) after building the package. Whatever happens, the package is purged.

use std::path::{Path, PathBuf};
use std::process::Command;

use rill_tests::{Http, Running, kcat, stdout_lines};

const UNIT: &str = "/usr/lib/systemd/system/rill.service";
const CONFIG: &str = "/etc/rill/rill.toml";
const DATA: &str = "/var/lib/rill";

fn succeeds(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed: {stdout}\n{stderr}");
    format!("{stdout}{stderr}")
}

/// Purges the package when dropped, so that a failed test leaves nothing installed either.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "rill"]).status();
    }
}

fn owner_of(path: &str) -> String {
    succeeds(Command::new("stat").args(["-c", "%U:%G %a", path])).trim().to_owned()
}

#[test]
#[ignore = "installs a package system-wide: needs root and RILL_DEB (cargo xtask test runs it)"]
fn the_package_installs_runs_as_its_own_user_and_purges_clean() {
    let deb = PathBuf::from(std::env::var_os("RILL_DEB").expect("RILL_DEB names the package to install"));
    let installed = Installed;
    succeeds(Command::new("dpkg").arg("-i").arg(&deb));
    for path in ["/usr/bin/rill", CONFIG, UNIT, "/usr/share/doc/rill/README.md"] {
        assert!(Path::new(path).exists(), "{path} is installed");
    }
    succeeds(Command::new("getent").args(["passwd", "rill"]));
    assert_eq!(owner_of(DATA), "rill:rill 750");
    assert_eq!(owner_of(CONFIG), "root:rill 640", "the config may hold a token: not world-readable");
    let config = std::fs::read_to_string(CONFIG).unwrap();
    assert!(config.contains("listen = \"127.0.0.1:9092\"") && !config.contains("0.0.0.0"), "loopback only");
    // Offline verification: syntax, directives, and that ExecStart's binary exists.
    let verified = succeeds(Command::new("systemd-analyze").args(["verify", UNIT]));
    assert!(!verified.contains("rill.service:"), "the unit verifies without warnings: {verified}");
    let help = succeeds(Command::new("/usr/bin/rill").args(["serve", "--help"]));
    assert!(help.contains("/etc/rill/rill.toml") && help.contains("/var/lib/rill"), "{help}");

    // As the unit runs it: user rill, the installed config; only the ports move to free ones.
    let mut serve = Command::new("setpriv");
    serve
        .args(["--reuid=rill", "--regid=rill", "--init-groups", "--", "/usr/bin/rill", "serve", "--config", CONFIG])
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .env("RILL_LOG", "info");
    let mut rill = Running::start(&mut serve);
    let (broker, http) = (rill.kafka_addr(), rill.http_addr());
    kcat(&broker, &["-P", "-t", "installed"], Some("one\ntwo\n"));
    let read = kcat(&broker, &["-C", "-t", "installed", "-o", "beginning", "-e", "-f", "%s\\n"], None);
    assert_eq!(stdout_lines(&read), ["one", "two"]);
    assert_eq!(Http::new(&http).get("/ready").0, 200);
    assert!(Path::new(DATA).join("rill.redb").exists(), "the data lives in {DATA}");
    rill.stop();

    succeeds(Command::new("dpkg").args(["--purge", "rill"]));
    drop(installed);
    for path in ["/usr/bin/rill", CONFIG, UNIT, DATA] {
        assert!(!Path::new(path).exists(), "{path} is gone after the purge");
    }
    let user = Command::new("getent").args(["passwd", "rill"]).output().unwrap();
    assert!(!user.status.success(), "the rill user is gone after the purge");
}
