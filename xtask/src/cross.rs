//! `cargo xtask cross aarch64|armv7`: the release `rill` for an ARM gateway, built with Debian's
//! cross toolchains (the C code of the compression crates included), then proven under qemu-user:
//! `rill-core`'s tests, the black-box smoke test (`tests/tests/platform_smoke.rs`) and the hostile
//! frames (`tests/tests/hostile_frames.rs`) run against the ARM binary. Installs what is missing,
//! as `cargo xtask test` does.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, install_debian_packages, install_rustup_targets, plugins, run, run_counting_tests};

/// An ARM gateway target.
#[derive(Debug)]
pub struct Target {
    /// What `cargo xtask cross` takes.
    pub name: &'static str,
    pub triple: &'static str,
    /// Debian's prefix of the cross tools (`{prefix}-gcc`, `{prefix}-strip`); the sysroot is
    /// `/usr/{prefix}`.
    gnu: &'static str,
    /// Debian's cross toolchain package.
    toolchain: &'static str,
    /// The qemu-user program for the architecture (Debian package `qemu-user`).
    qemu: &'static str,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        gnu: "aarch64-linux-gnu",
        toolchain: "crossbuild-essential-arm64",
        qemu: "qemu-aarch64",
    },
    Target {
        name: "armv7",
        triple: "armv7-unknown-linux-gnueabihf",
        gnu: "arm-linux-gnueabihf",
        toolchain: "crossbuild-essential-armhf",
        qemu: "qemu-arm",
    },
];

impl Target {
    pub fn named(name: &str) -> Result<&'static Target, String> {
        TARGETS.iter().find(|t| t.name == name || t.triple == name).ok_or_else(|| {
            let known: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            format!("unknown cross target {name:?}; known: {known:?}")
        })
    }

    fn gcc(&self) -> String {
        format!("{}-gcc", self.gnu)
    }

    fn sysroot(&self) -> String {
        format!("/usr/{}", self.gnu)
    }

    /// `cargo` with the linker, C compilers and qemu runner of this target set (cargo's and the
    /// `cc` crate's environment variables).
    pub(crate) fn cargo(&self) -> Command {
        let upper = self.triple.to_uppercase().replace('-', "_");
        let lower = self.triple.replace('-', "_");
        let mut command = cargo();
        command
            .env(format!("CARGO_TARGET_{upper}_LINKER"), self.gcc())
            .env(format!("CARGO_TARGET_{upper}_RUNNER"), format!("{} -L {}", self.qemu, self.sysroot()))
            .env(format!("CC_{lower}"), self.gcc())
            .env(format!("CXX_{lower}"), format!("{}-g++", self.gnu))
            .env(format!("AR_{lower}"), format!("{}-ar", self.gnu));
        command
    }
}

/// `cargo xtask cross TARGET`: install, build, test under qemu.
pub fn command(root: &Path, args: &[String]) -> Result<(), String> {
    let [name] = args else {
        return Err("usage: cargo xtask cross aarch64|armv7".into());
    };
    let target = Target::named(name)?;
    let mut counts = crate::TestCounts::default();
    build_and_test(root, target, &mut counts)?;
    println!("tests under qemu ({}): {} passed, {} failed", target.name, counts.passed, counts.failed);
    Ok(())
}

/// What CI runs for `target`: the release binary, its size, `rill-core`'s tests, the smoke test and
/// the hostile frames under qemu-user.
pub fn build_and_test(root: &Path, target: &Target, counts: &mut crate::TestCounts) -> Result<(), String> {
    install(target)?;
    let binary = build(target)?;
    report_size(target, &binary)?;
    // The replication simulation runs its seeds for 60 s natively; under emulation 10 s of them
    // show the same code works on the target, and CI keeps the other 50 s.
    let mut core_tests = target.cargo();
    core_tests.args(["test", "-p", "rill-core", "--target", target.triple]).env("RILL_SIM_SECONDS", "10");
    run_counting_tests(&mut core_tests, counts)?;
    let components = plugins::build(root)?;
    let wrapper = qemu_wrapper(target, &binary)?;
    run_counting_tests(
        cargo()
            .args(["test", "-p", "rill-tests", "--test", "platform_smoke", "--test", "hostile_frames"])
            .env("RILL_BIN", &wrapper)
            .env("RILL_PLUGIN_DIR", &components),
        counts,
    )
}

pub(crate) fn install(target: &Target) -> Result<(), String> {
    install_rustup_targets(&[target.triple])?;
    install_debian_packages(&[(target.gcc().as_str(), target.toolchain), (target.qemu, "qemu-user")])
}

/// Builds the release `rill` for `target`; returns the binary's path.
fn build(target: &Target) -> Result<PathBuf, String> {
    crate::build_binary_with(
        target.cargo(),
        &["build", "--release", "-p", "rill", "--bin", "rill", "--target", target.triple],
    )
}

/// Prints the binary's size as shipped (stripped), the figure the footprint budget is about.
fn report_size(target: &Target, binary: &Path) -> Result<(), String> {
    let stripped = binary.with_file_name("rill.stripped");
    run("strip", Command::new(format!("{}-strip", target.gnu)).arg("-o").arg(&stripped).arg(binary))?;
    let bytes = std::fs::metadata(&stripped).map_err(|e| format!("{}: {e}", stripped.display()))?.len();
    eprintln!("rill for {}: {:.1} MB stripped ({})", target.triple, bytes as f64 / 1e6, stripped.display());
    Ok(())
}

/// A script that runs `binary` under qemu-user with the target's sysroot: what the black-box tests
/// start as `rill`.
fn qemu_wrapper(target: &Target, binary: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = binary.with_file_name("rill-under-qemu");
    let script = format!("#!/bin/sh\nexec {} -L {} {} \"$@\"\n", target.qemu, target.sysroot(), binary.display());
    std::fs::write(&wrapper, script).map_err(|e| format!("{}: {e}", wrapper.display()))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", wrapper.display()))?;
    Ok(wrapper)
}
