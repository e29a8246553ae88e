//! `cargo xtask package [aarch64|armv7]`: the Debian package of `rill` (amd64 by default; arm64 or
//! armhf for a cross target), built by cargo-deb from `[package.metadata.deb]` in
//! `host/Cargo.toml` and the files in `packaging/`. Installs cargo-deb when missing.

use std::path::PathBuf;
use std::process::Command;

use crate::cross::Target;
use crate::{cargo, run};

/// The cargo-deb release the packages are built with (pinned: the package layout is its output).
const CARGO_DEB_VERSION: &str = "3.7.0";

pub fn command(args: &[String]) -> Result<(), String> {
    let target = match args {
        [] => None,
        [name] => Some(Target::named(name)?),
        _ => return Err("usage: cargo xtask package [aarch64|armv7]".into()),
    };
    if let Some(target) = target {
        crate::cross::install(target)?;
    }
    let deb = build(target, true)?;
    println!("{}", deb.display());
    Ok(())
}

/// Builds the package (with `build`: the release binary too; else the one built already);
/// returns the `.deb`'s path.
pub fn build(target: Option<&Target>, build: bool) -> Result<PathBuf, String> {
    install_cargo_deb()?;
    let mut command = match target {
        Some(target) => target.cargo(),
        None => cargo(),
    };
    // Into the target directory's `debian/`, cargo-deb's default. Stripped: the release profile
    // keeps line tables for backtraces, which a gateway's package does not carry.
    command.args(["deb", "-p", "rill", "--strip"]);
    if let Some(target) = target {
        command.args(["--target", target.triple]);
    }
    if !build {
        command.arg("--no-build");
    }
    let output =
        command.stderr(std::process::Stdio::inherit()).output().map_err(|e| format!("cannot run cargo deb: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo deb failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let deb =
        stdout.lines().rev().find(|line| line.trim_end().ends_with(".deb")).ok_or("cargo deb named no package")?;
    let deb = PathBuf::from(deb.trim());
    let bytes = std::fs::metadata(&deb).map_err(|e| format!("{}: {e}", deb.display()))?.len();
    eprintln!("package: {} ({:.1} MB)", deb.display(), bytes as f64 / 1e6);
    Ok(deb)
}

fn install_cargo_deb() -> Result<(), String> {
    let installed = cargo().args(["deb", "--version"]).output().is_ok_and(|output| {
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains(CARGO_DEB_VERSION)
    });
    if installed {
        return Ok(());
    }
    run(
        "cargo install cargo-deb",
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ]),
    )
}
