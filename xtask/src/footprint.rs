//! The footprint of the release `rill`: its stripped size and the resident memory of `rill serve`
//! idling on embedded defaults, checked against a budget so that they do not creep up
//! (`cargo xtask test` fails past it) and reported beside issue 20's targets, which are lower.
//! `cargo xtask bench footprint` measures more starts and mosquitto beside it, as a reference from
//! the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::run;

/// What CI enforces: today's figures (33.3 MB stripped, 16 MiB idle on x86-64) with headroom for
/// noise. Lower them as the targets below are reached; never raise them without saying why in
/// `docs/benchmarks.md`.
const STRIPPED_BYTES_BUDGET: u64 = 35_000_000;
const IDLE_RSS_BYTES_BUDGET: u64 = 18 << 20;

/// Issue 20's targets: the budget once they are reached.
const STRIPPED_BYTES_TARGET: u64 = 20_000_000;
const IDLE_RSS_BYTES_TARGET: u64 = 12 << 20;

/// How long `rill serve` idles before its memory is read (start-up done, nothing to do).
const IDLE_AFTER: Duration = Duration::from_secs(5);

/// Measures `binary` (a release build): its stripped size and the median idle RSS over `starts`
/// starts; fails past the budget.
pub fn check(binary: &Path, starts: usize) -> Result<(), String> {
    let stripped = stripped_size(binary)?;
    let mut rss = Vec::with_capacity(starts);
    for _ in 0..starts {
        rss.push(idle_rss(binary)?);
    }
    rss.sort_unstable();
    let median = rss[rss.len() / 2];
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "footprint: stripped {:.1} MB (budget {:.1}, target {:.1}); idle RSS {:.1} MiB median of {starts} \
         (range {:.1}-{:.1}; budget {:.1}, target {:.1})",
        stripped as f64 / 1e6,
        STRIPPED_BYTES_BUDGET as f64 / 1e6,
        STRIPPED_BYTES_TARGET as f64 / 1e6,
        mib(median),
        mib(rss[0]),
        mib(rss[rss.len() - 1]),
        mib(IDLE_RSS_BYTES_BUDGET),
        mib(IDLE_RSS_BYTES_TARGET),
    );
    if stripped > STRIPPED_BYTES_BUDGET {
        return Err(format!("the stripped binary grew past its budget: {stripped} > {STRIPPED_BYTES_BUDGET} bytes"));
    }
    if median > IDLE_RSS_BYTES_BUDGET {
        return Err(format!("idle memory grew past its budget: {median} > {IDLE_RSS_BYTES_BUDGET} bytes"));
    }
    Ok(())
}

/// `cargo xtask bench footprint`: the check with 5 starts, and mosquitto's idle RSS beside it.
pub fn bench(binary: &Path) -> Result<(), String> {
    check(binary, 5)?;
    let mut rss = Vec::new();
    for _ in 0..3 {
        rss.push(mosquitto_idle_rss()?);
    }
    rss.sort_unstable();
    eprintln!("reference: mosquitto idle RSS {:.1} MiB median of 3", rss[1] as f64 / (1 << 20) as f64);
    Ok(())
}

fn stripped_size(binary: &Path) -> Result<u64, String> {
    let stripped = binary.with_file_name("rill.stripped");
    run("strip", Command::new("strip").arg("-o").arg(&stripped).arg(binary))?;
    std::fs::metadata(&stripped).map(|m| m.len()).map_err(|e| format!("{}: {e}", stripped.display()))
}

/// Starts `rill serve` on its defaults (a fresh data directory, ports 0), lets it idle, reads its
/// resident set, stops it.
fn idle_rss(binary: &Path) -> Result<u64, String> {
    let dir = scratch_dir("rill-footprint")?;
    let mut command = Command::new(binary);
    command.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"]).arg(&dir);
    let rss = idle_rss_of(&mut command);
    let _ = std::fs::remove_dir_all(&dir);
    rss
}

fn mosquitto_idle_rss() -> Result<u64, String> {
    let dir = scratch_dir("mosquitto-footprint")?;
    let config = dir.join("mosquitto.conf");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?;
    std::fs::write(&config, format!("listener {} 127.0.0.1\n", port.port())).map_err(|e| e.to_string())?;
    let rss = idle_rss_of(Command::new("mosquitto").arg("-c").arg(&config));
    let _ = std::fs::remove_dir_all(&dir);
    rss
}

fn scratch_dir(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// VmRSS of `command`'s process after [`IDLE_AFTER`]; the process is stopped with SIGTERM.
fn idle_rss_of(command: &mut Command) -> Result<u64, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    std::thread::sleep(IDLE_AFTER);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let status = status.map_err(|e| format!("{command:?} ended before its memory was read: {e}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}
