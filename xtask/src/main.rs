//! `cargo xtask <task>`: the project's commands that are more than one cargo call.
//!
//! - `cargo xtask test`: what CI runs and what a newcomer runs on a fresh machine. Installs what
//!   is missing (rustup targets, Debian packages such as kcat), checks formatting and lints,
//!   builds the `rill` binary, runs every test (black-box tests get the binary in `RILL_BIN` and a
//!   Python with kafka-python in `RILL_PYTHON`),
//!   builds `rill-core` and the firmware library for Cortex-M, and smoke-runs the benchmarks.
//!   Prints how long each phase took.
//! - `cargo xtask plugins`: builds the plugins under `plugins/` for `wasm32-unknown-unknown` and
//!   makes them components (`<target dir>/plugins/<name>.wasm`); `test` does it too and hands the
//!   directory to the tests in `RILL_PLUGIN_DIR`.
//! - `cargo xtask bench storage|kafka|mirror|plugins|mqtt [ARGS]`: a benchmark on a release build;
//!   `bench footprint`: the stripped size and idle memory of the release binary, against the
//!   budget `test` enforces (`footprint.rs`), with mosquitto's idle memory beside it.
//! - `cargo xtask firmware build|size|run --gateway HOST:PORT`: the sensor-node firmware for the
//!   board QEMU emulates (`firmware/mps2-an386`): build it, report its flash and RAM against the
//!   budget, or run it in QEMU with its uplink connected to a gateway's device listener.
//! - `cargo xtask cross aarch64|armv7`: the release `rill` for an ARM gateway (Debian's cross
//!   toolchains), its stripped size, and `rill-core`'s tests and the black-box smoke test under
//!   qemu-user. `test` runs it for armv7.
//! - `cargo xtask package [aarch64|armv7]`: the Debian package (amd64, or arm64/armhf), built by
//!   cargo-deb (installed when missing). `test` builds the amd64 one and installs, runs, verifies
//!   and purges it (`tests/tests/package.rs`), and builds the armhf one.
//! - `cargo xtask soak replication [--seconds N]`: the replication simulation for longer than CI
//!   runs it (600 s of seeds by default, release build).
//! - `cargo xtask startup-order`: traces `rill serve` from start to idle under valgrind and
//!   rewrites `host/startup-order.txt`, the functions the linker places together
//!   (`startup_order.rs`). Rerun it when start-up changes.

mod cross;
mod firmware;
mod footprint;
mod package;
mod plugins;
mod startup_order;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// Targets that `cargo xtask test` builds for besides the host.
const TARGETS: &[&str] = &["thumbv7em-none-eabihf"];

/// Programs the black-box tests run, with the Debian package that provides each: real clients
/// nobody here wrote.
/// `qemu-system-arm` runs the firmware; `readelf` reads its size.
const PROGRAMS: &[(&str, &str)] = &[
    ("kcat", "kcat"),
    ("chromium", "chromium"),
    ("mosquitto", "mosquitto"),
    ("mosquitto_pub", "mosquitto-clients"),
    ("qemu-system-arm", "qemu-system-arm"),
    ("readelf", "binutils"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("cross") => install_targets().and_then(|()| cross::command(&workspace_root(), &args[1..])),
        Some("package") => package::command(&args[1..]),
        Some("firmware") => install_targets().and_then(|()| firmware::command(&workspace_root(), &args[1..])),
        Some("plugins") => install_targets().and_then(|()| plugins::build(&workspace_root())).map(drop),
        Some("startup-order") => startup_order(),
        _ => Err(format!(
            "usage: cargo xtask test | cargo xtask plugins | cargo xtask bench storage|kafka|mirror|plugins|mqtt|footprint [ARGS] | \
             cargo xtask firmware build|size|run --gateway HOST:PORT | cargo xtask soak replication [--seconds N] | \
             cargo xtask cross aarch64|armv7 | cargo xtask package [aarch64|armv7] | cargo xtask startup-order\n\
             (got {:?})",
            args.first()
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root. `cargo run` sets CARGO_MANIFEST_DIR for the
    // process; the value baked in at build time is only the fallback, because cargo reuses this
    // binary for another checkout of the same sources sharing the target dir (CI's fresh clone
    // and a developer's tree, both in ~/.cache/rill/target), and its baked path is the other one.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{what}: cannot start {command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed ({status})"));
    }
    Ok(())
}

struct Phases {
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn run<T>(&mut self, name: &'static str, phase: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        eprintln!("\n==> {name}");
        let started = Instant::now();
        let result = phase();
        let took = started.elapsed();
        eprintln!("==> {name}: {} in {:.1} s", if result.is_ok() { "ok" } else { "FAILED" }, took.as_secs_f64());
        self.done.push((name, took));
        result
    }

    fn summary(&self) {
        eprintln!("\nphase times:");
        for (name, took) in &self.done {
            eprintln!("  {name:<28} {:>7.1} s", took.as_secs_f64());
        }
        let total: Duration = self.done.iter().map(|(_, t)| *t).sum();
        eprintln!("  {:<28} {:>7.1} s", "total", total.as_secs_f64());
    }
}

fn test() -> Result<(), String> {
    let mut phases = Phases { done: Vec::new() };
    let mut counts = TestCounts::default();
    let result = test_phases(&mut phases, &mut counts);
    phases.summary();
    // One closing line for every test binary together (cargo prints one per binary, the last of
    // which is often a crate without tests).
    println!("tests: {} passed, {} failed", counts.passed, counts.failed);
    result
}

/// Tests counted from cargo's `test result:` lines.
#[derive(Debug, Default)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    /// Adds a `test result: ok. 12 passed; 0 failed; …` line; other lines are ignored.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else { return };
        let number_before = |word: &str| -> u64 {
            rest.split(';')
                .find_map(|part| part.trim().strip_suffix(word))
                .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        self.passed += number_before(" passed");
        self.failed += number_before(" failed");
    }
}

/// Runs `cargo test` with its output passed through, counting the results.
fn run_counting_tests(command: &mut Command, counts: &mut TestCounts) -> Result<(), String> {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("tests: cannot start {command:?}: {e}"))?;
    let stdout = child.stdout.take().ok_or("tests: no stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("tests: reading output: {e}"))?;
        println!("{line}");
        counts.add_line(&line);
    }
    let status = child.wait().map_err(|e| format!("tests: {e}"))?;
    if !status.success() {
        return Err(format!("tests failed ({status})"));
    }
    Ok(())
}

fn test_phases(phases: &mut Phases, counts: &mut TestCounts) -> Result<(), String> {
    phases.run("install rustup targets", install_targets)?;
    phases.run("install test programs", install_programs)?;
    phases.run("cargo fmt --check", || run("fmt", cargo().args(["fmt", "--all", "--check"])))?;
    phases.run("cargo clippy", || {
        run(
            "clippy",
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "rill-node/flash-backlog",
                "--",
                "-D",
                "warnings",
            ]),
        )
    })?;
    phases.run("plugins: fmt, clippy, test", || {
        let plugins = || {
            let mut command = cargo();
            command.current_dir(workspace_root().join("plugins"));
            command
        };
        run("plugins fmt", plugins().args(["fmt", "--all", "--check"]))?;
        run("plugins clippy", plugins().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
        run_counting_tests(plugins().arg("test"), counts)
    })?;
    let plugin_dir = phases.run("plugins: build components", || plugins::build(&workspace_root()))?;
    let python = phases.run("install Python test clients", install_python_clients)?;
    let rill_bin = phases.run("build rill", build_rill)?;
    let firmware = phases.run("firmware: fmt, clippy, build, size", || {
        let root = workspace_root();
        firmware::check(&root)?;
        let elf = firmware::build(&root)?;
        let size = firmware::Size::of(&elf)?;
        eprintln!("{}", size.report());
        let backlog = firmware::backlog_code_bytes(&root)?;
        eprintln!("flash backlog (feature flash-backlog): {:.1} KiB of code", backlog as f64 / 1024.0);
        size.check_budget()?;
        Ok(elf)
    })?;
    phases.run("cargo test (workspace)", || {
        run_counting_tests(
            cargo()
                .args(["test", "--workspace"])
                .env("RILL_BIN", &rill_bin)
                .env("RILL_PYTHON", &python)
                .env("RILL_PLUGIN_DIR", &plugin_dir)
                .env("RILL_FIRMWARE", &firmware),
            counts,
        )
    })?;
    phases.run("rill-node's flash backlog (feature)", || {
        // Only its own tests: the rest of rill-node ran above.
        run_counting_tests(
            cargo().args(["test", "-p", "rill-node", "--features", "flash-backlog", "flash_log"]),
            counts,
        )
    })?;
    phases.run("rill-core and rill-node for Cortex-M", || {
        for target in TARGETS {
            run("firmware library build", cargo().args(["build", "-p", "rill-node", "--target", target]))?;
            run(
                "firmware library build with the flash backlog",
                cargo().args(["build", "-p", "rill-node", "--features", "flash-backlog", "--target", target]),
            )?;
            run(
                "no_std build",
                cargo().args(["build", "-p", "rill-core", "--target", target, "--no-default-features"]),
            )?;
            run(
                "no_std+alloc build",
                cargo().args([
                    "build",
                    "-p",
                    "rill-core",
                    "--target",
                    target,
                    "--no-default-features",
                    "--features",
                    "alloc",
                ]),
            )?;
        }
        Ok(())
    })?;
    phases.run("release build, footprint, package (amd64)", || {
        let release = build_binary(&["build", "--release", "-p", "rill", "--bin", "rill"])?;
        footprint::check(&release, 3)?;
        let deb = package::build(None, false)?;
        run_counting_tests(
            cargo()
                .args(["test", "-p", "rill-tests", "--test", "package", "--", "--ignored"])
                .env("RILL_DEB", &deb)
                .env("RILL_BIN", &rill_bin),
            counts,
        )
    })?;
    phases.run("armv7: release build, tests under qemu, package", || {
        let armv7 = cross::Target::named("armv7")?;
        cross::build_and_test(&workspace_root(), armv7, counts)?;
        package::build(Some(armv7), false).map(drop)
    })?;
    phases.run("benchmark smoke run", || {
        let scratch = std::env::temp_dir();
        for which in ["storage", "kafka", "mirror"] {
            run(
                &format!("bench {which} --quick"),
                Command::new(&rill_bin).args(["bench", which, "--quick", "--dir"]).arg(&scratch),
            )?;
        }
        for which in ["plugins", "mqtt"] {
            run(
                &format!("bench {which} --quick"),
                Command::new(&rill_bin).args(["bench", which, "--quick", "--plugins"]).arg(&plugin_dir),
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

fn install_targets() -> Result<(), String> {
    let targets: Vec<&str> = TARGETS.iter().copied().chain([plugins::PLUGIN_TARGET]).collect();
    install_rustup_targets(&targets)
}

/// Adds the rustup targets of `targets` that are missing.
fn install_rustup_targets(targets: &[&str]) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add targets: {e}"))?;
    let installed = String::from_utf8_lossy(&installed.stdout).to_string();
    for target in targets {
        if installed.lines().any(|line| line.trim() == *target) {
            eprintln!("{target}: installed");
            continue;
        }
        run("rustup target add", Command::new("rustup").args(["target", "add", target]))?;
    }
    Ok(())
}

/// Installs the Debian packages of [`PROGRAMS`] that are missing.
fn install_programs() -> Result<(), String> {
    install_debian_packages(PROGRAMS)
}

/// Installs the Debian package of each (program, package) whose program is not on the PATH (CI
/// runs as root; elsewhere the error names the packages to install).
fn install_debian_packages(programs: &[(&str, &str)]) -> Result<(), String> {
    let mut missing: Vec<&str> =
        programs.iter().filter(|(program, _)| !on_path(program)).map(|&(_, package)| package).collect();
    missing.dedup();
    if missing.is_empty() {
        eprintln!("programs {:?}: installed", programs.iter().map(|(program, _)| program).collect::<Vec<_>>());
        return Ok(());
    }
    let hint = format!("install the Debian packages {missing:?} (apt-get install {})", missing.join(" "));
    run("apt-get update", Command::new("apt-get").args(["update", "-qq"])).map_err(|e| format!("{e}; {hint}"))?;
    run(
        "apt-get install",
        Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends"]).args(&missing),
    )
    .map_err(|e| format!("{e}; {hint}"))
}

/// A virtualenv with the Python Kafka clients of `tests/python/requirements.txt` (pinned), kept
/// in the user's cache outside the repository; returns its interpreter.
fn install_python_clients() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/rill/python-clients");
    let python = venv.join("bin/python");
    let requirements = workspace_root().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv.join("installed-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        eprintln!("python clients: installed");
        return Ok(python);
    }
    let hint = "needs python3 with the venv module (Debian: apt-get install python3-venv)";
    run("python3 -m venv", Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .map_err(|e| format!("{e}; {hint}"))?;
    run(
        "pip install",
        Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Builds `rill` in the test profile and returns the binary's path, as cargo reports it.
fn build_rill() -> Result<PathBuf, String> {
    build_binary(&["build", "-p", "rill", "--bin", "rill"])
}

fn build_binary(args: &[&str]) -> Result<PathBuf, String> {
    build_binary_with(cargo(), args)
}

/// Runs `command` (a `cargo`) with `args` and returns the `rill` binary it reports building.
fn build_binary_with(mut command: Command, args: &[&str]) -> Result<PathBuf, String> {
    let output = command
        .args(args)
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err("building rill failed".into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_rill_bin = message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "rill"
            && message["target"]["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        if let (true, Some(path)) = (is_rill_bin, message["executable"].as_str()) {
            eprintln!("rill binary: {path}");
            return Ok(PathBuf::from(path));
        }
    }
    Err("cargo did not report the rill binary".into())
}

fn bench(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some(which @ ("storage" | "kafka" | "mirror")) => {
            let rill = build_binary(&["build", "--release", "-p", "rill", "--bin", "rill"])?;
            let mut command = Command::new(rill);
            command.current_dir(workspace_root()).args(["bench", which]).args(&args[1..]);
            run(&format!("rill bench {which}"), &mut command)
        }
        Some(which @ ("plugins" | "mqtt")) => {
            install_targets()?;
            if which == "mqtt" {
                install_programs()?;
            }
            let components = plugins::build(&workspace_root())?;
            // `--pulley` measures wasmtime's interpreter too, which x86-64 builds leave out.
            let features = if args.iter().any(|a| a == "--pulley") { "pulley" } else { "" };
            let rill = build_binary(&["build", "--release", "-p", "rill", "--bin", "rill", "--features", features])?;
            let mut command = Command::new(rill);
            command.current_dir(workspace_root()).args(["bench", which, "--plugins"]).arg(components).args(&args[1..]);
            run(&format!("rill bench {which}"), &mut command)
        }
        Some("footprint") => {
            install_programs()?;
            footprint::bench(&build_binary(&["build", "--release", "-p", "rill", "--bin", "rill"])?)
        }
        other => Err(format!("unknown benchmark {other:?}; known: storage, kafka, mirror, plugins, mqtt, footprint")),
    }
}

/// `cargo xtask startup-order`: traces a release `rill serve` and rewrites the ordering file
/// (`startup_order.rs`).
fn startup_order() -> Result<(), String> {
    install_debian_packages(&[("valgrind", "valgrind"), ("nm", "binutils")])?;
    let binary = build_binary(&["build", "--release", "-p", "rill", "--bin", "rill"])?;
    let out = workspace_root().join("host/startup-order.txt");
    let functions = startup_order::write(&binary, &out)?;
    eprintln!("{}: {functions} functions; rebuild to link with it", out.display());
    Ok(())
}

/// `cargo xtask soak replication [--seconds N]`: the replication simulation on a release build
/// for N seconds (default 600) of fresh seeds; a failure prints the seed to replay.
fn soak(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("replication") => {
            let seconds = match args.get(1..) {
                Some([flag, value]) if flag == "--seconds" => value.clone(),
                Some([]) | None => "600".to_owned(),
                Some(other) => {
                    return Err(format!("usage: cargo xtask soak replication [--seconds N] (got {other:?})"));
                }
            };
            run(
                "replication simulation",
                cargo()
                    .args(["test", "--release", "-p", "rill-core", "--lib", "replication::sim", "--", "--nocapture"])
                    .env("RILL_SIM_SECONDS", seconds),
            )
        }
        other => Err(format!("unknown soak {other:?}; known: replication")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_result_lines_are_counted() {
        let mut counts = TestCounts::default();
        counts
            .add_line("test result: ok. 43 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.59s");
        counts.add_line("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        counts.add_line("running 3 tests");
        assert_eq!((counts.passed, counts.failed), (45, 1));
    }
}
