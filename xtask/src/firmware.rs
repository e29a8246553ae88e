//! `cargo xtask firmware build|size|run`: the sensor-node firmware for the board QEMU emulates
//! (`firmware/mps2-an386`, Cortex-M4F): its build, its flash and RAM against the budget, and a
//! run in QEMU with the uplink UART connected to a gateway's device listener.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The board crate, relative to the workspace root (its own workspace: it builds for Cortex-M only).
const BOARD_DIR: &str = "firmware/mps2-an386";
const BOARD_TARGET: &str = "thumbv7em-none-eabihf";
const BOARD_BIN: &str = "rill-node-mps2-an386";
/// The board's second binary: the flash backlog on the board's CPU (`src/bin/flash_probe.rs`).
const PROBE_BIN: &str = "flash-probe";
/// What QEMU calls the board.
const QEMU_MACHINE: &str = "mps2-an386";

/// The budget the firmware must fit (the firmware issue): flash, and static RAM besides the node's
/// RAM log (which a board sizes to what it has).
const FLASH_BUDGET: u64 = 64 * 1024;
const STATIC_RAM_BUDGET: u64 = 16 * 1024;
/// Addresses at and above this are RAM on the board; below, flash.
const RAM_START: u64 = 0x2000_0000;

fn board_dir(root: &Path) -> PathBuf {
    root.join(BOARD_DIR)
}

fn cargo_in(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(dir);
    command
}

/// Checks formatting and lints of the board crate.
pub fn check(root: &Path) -> Result<(), String> {
    let dir = board_dir(root);
    super::run("firmware fmt", cargo_in(&dir).args(["fmt", "--all", "--check"]))?;
    super::run("firmware clippy", cargo_in(&dir).args(["clippy", "--release", "--", "-D", "warnings"]))
}

/// Builds the firmware (release); returns the ELF.
pub fn build(root: &Path) -> Result<PathBuf, String> {
    let target_dir = target_dir(root);
    super::run(
        "build firmware",
        cargo_in(&board_dir(root)).args(["build", "--release"]).env("CARGO_TARGET_DIR", &target_dir),
    )?;
    elf_in(&target_dir, BOARD_BIN)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| board_dir(root).join("target"), PathBuf::from)
}

fn elf_in(target_dir: &Path, bin: &str) -> Result<PathBuf, String> {
    let elf = target_dir.join(BOARD_TARGET).join("release").join(bin);
    if !elf.is_file() {
        return Err(format!("the firmware build left no {}", elf.display()));
    }
    Ok(elf)
}

/// The code the flash backlog (`rill-node`'s `flash-backlog`) adds: the flash probe's code with
/// the backlog, less the same probe without it (built beside, with `probe-baseline`).
pub fn backlog_code_bytes(root: &Path) -> Result<u64, String> {
    let target_dir = target_dir(root);
    let with = elf_in(&target_dir, PROBE_BIN)?;
    let baseline_dir = target_dir.join("probe-baseline");
    super::run(
        "build the flash probe without the backlog",
        cargo_in(&board_dir(root))
            .args(["build", "--release", "--bin", PROBE_BIN, "--features", "probe-baseline"])
            .env("CARGO_TARGET_DIR", &baseline_dir),
    )?;
    let without = elf_in(&baseline_dir, PROBE_BIN)?;
    let code = |elf: &Path| readelf(elf, "-S").map(|sections| section_sizes(&sections).0);
    Ok(code(&with)?.saturating_sub(code(&without)?))
}

/// (flash bytes, .text, .rodata, static RAM bytes) from `readelf -S -W` output.
fn section_sizes(sections: &str) -> (u64, u64, u64, u64) {
    let (mut flash, mut text, mut rodata, mut ram) = (0, 0, 0, 0);
    for line in sections.lines() {
        // `[ 2] .text  PROGBITS  000000c0 0100c0 005194 00  AX  0   0  4`
        let Some(rest) = line.split_once(']').map(|(_, rest)| rest) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [name, kind, addr, _offset, bytes, _entsize, flags, ..] = fields[..] else { continue };
        let (Ok(addr), Ok(bytes)) = (u64::from_str_radix(addr, 16), u64::from_str_radix(bytes, 16)) else {
            continue;
        };
        if !flags.contains('A') {
            continue; // not loaded: debug info, symbols
        }
        let in_ram = addr >= RAM_START;
        if in_ram {
            ram += bytes;
        }
        // .data lives in RAM and is copied there from flash at reset.
        if kind == "PROGBITS" && (!in_ram || name == ".data") {
            flash += bytes;
        }
        match name {
            ".text" => text = bytes,
            ".rodata" => rodata = bytes,
            _ => {}
        }
    }
    (flash, text, rodata, ram)
}

/// Flash and static RAM of a firmware ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Everything loaded into flash: vector table, code, constants, and .data's initial values.
    pub flash: u64,
    pub text: u64,
    pub rodata: u64,
    /// .data + .bss + .uninit (the stack comes on top).
    pub static_ram: u64,
    /// The node's state (`NODE`: the RAM log's buffer and index, and the readings channel).
    pub node_state: u64,
}

impl Size {
    /// Reads section and symbol sizes with `readelf` (binutils reads any ELF, whatever its CPU).
    pub fn of(elf: &Path) -> Result<Size, String> {
        Size::parse(&readelf(elf, "-S")?, &readelf(elf, "-s")?)
    }

    /// From `readelf -S -W` and `readelf -s -W -C` output.
    fn parse(sections: &str, symbols: &str) -> Result<Size, String> {
        let (flash, text, rodata, static_ram) = section_sizes(sections);
        let mut size = Size { flash, text, rodata, static_ram, node_state: 0 };
        size.node_state = symbols
            .lines()
            .filter(|line| line.trim_end().ends_with("::NODE") || line.contains("::NODE::"))
            .find_map(|line| line.split_whitespace().nth(2)?.parse().ok())
            .ok_or("no NODE symbol in the firmware: cannot tell the RAM log from the rest")?;
        Ok(size)
    }

    /// Static RAM besides the node's state.
    pub fn other_ram(&self) -> u64 {
        self.static_ram.saturating_sub(self.node_state)
    }

    pub fn report(&self) -> String {
        let kib = |bytes: u64| bytes as f64 / 1024.0;
        format!(
            "firmware {QEMU_MACHINE}: flash {:.1} KiB (code {:.1}, constants {:.1}) of a {:.0} KiB budget; static RAM \
             {:.1} KiB = node state (RAM log and readings channel) {:.1} KiB + the rest {:.1} KiB of a {:.0} KiB \
             budget",
            kib(self.flash),
            kib(self.text),
            kib(self.rodata),
            kib(FLASH_BUDGET),
            kib(self.static_ram),
            kib(self.node_state),
            kib(self.other_ram()),
            kib(STATIC_RAM_BUDGET),
        )
    }

    /// Fails when the firmware outgrew its budget.
    pub fn check_budget(&self) -> Result<(), String> {
        if self.flash > FLASH_BUDGET || self.other_ram() > STATIC_RAM_BUDGET {
            return Err(format!("over budget: {}", self.report()));
        }
        Ok(())
    }
}

fn readelf(elf: &Path, what: &str) -> Result<String, String> {
    let output = Command::new("readelf")
        .args([what, "-W", "-C"])
        .arg(elf)
        .output()
        .map_err(|e| format!("readelf (Debian package binutils) is needed: {e}"))?;
    if !output.status.success() {
        return Err(format!("readelf {what} {}: {}", elf.display(), String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `cargo xtask firmware build|size|run --gateway ADDR [--boot-counter N] [--flash FILE]`.
pub fn command(root: &Path, args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask firmware build | size | run --gateway HOST:PORT [--boot-counter N] [--flash FILE]";
    match args.first().map(String::as_str) {
        Some("build") => build(root).map(|elf| eprintln!("firmware: {}", elf.display())),
        Some("size") => {
            let size = Size::of(&build(root)?)?;
            println!("{}", size.report());
            let backlog = backlog_code_bytes(root)?;
            println!("flash backlog (feature flash-backlog): {:.1} KiB of code", backlog as f64 / 1024.0);
            size.check_budget()
        }
        Some("run") => {
            let (mut gateway, mut boot_counter, mut flash) = (None, String::new(), String::new());
            for pair in args[1..].chunks(2) {
                match pair {
                    [flag, value] if flag == "--gateway" => gateway = Some(value),
                    [flag, value] if flag == "--boot-counter" => boot_counter.clone_from(value),
                    [flag, value] if flag == "--flash" => flash.clone_from(value),
                    _ => return Err(usage.into()),
                }
            }
            let gateway = gateway.ok_or(usage)?;
            let elf = build(root)?;
            // qemu.sh holds the board's QEMU command line (the tests use it too); an empty boot
            // counter is a random one, an empty flash none.
            let mut qemu = Command::new(board_dir(root).join("qemu.sh"));
            qemu.arg(&elf).arg(gateway).arg("stdio").arg(boot_counter).arg(flash);
            eprintln!("{qemu:?} (Ctrl-C quits QEMU)");
            super::run("qemu", &mut qemu)
        }
        _ => Err(usage.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_and_ram_are_read_from_readelf() {
        let sections = "\
  [Nr] Name              Type            Addr     Off    Size   ES Flg Lk Inf Al
  [ 0]                   NULL            00000000 000000 000000 00      0   0  0
  [ 1] .vector_table     PROGBITS        00000000 010000 0000c0 00   A  0   0  4
  [ 2] .text             PROGBITS        000000c0 0100c0 005000 00  AX  0   0  4
  [ 3] .rodata           PROGBITS        000050c0 0150c0 000800 00 AMS  0   0  8
  [ 4] .data             PROGBITS        20000000 020000 000020 00  WA  0   0  8
  [ 5] .gnu.sgstubs      PROGBITS        000058e0 020020 000000 00  AX  0   0 32
  [ 6] .bss              NOBITS          20000020 020020 00b000 00  WA  0   0  8
  [ 7] .uninit           NOBITS          2000b020 020020 000000 00  WA  0   0  4
  [ 8] .debug_info       PROGBITS        00000000 020020 0a0000 00      0   0  1
";
        let symbols = "\
    16: 20000068 40000 OBJECT  LOCAL  DEFAULT    6 rill_node_mps2_an386::NODE
    17: 20000068   100 OBJECT  LOCAL  DEFAULT    6 rill_node_mps2_an386::NODES
";
        let size = Size::parse(sections, symbols).unwrap();
        assert_eq!((size.flash, size.text, size.rodata), (0xc0 + 0x5000 + 0x800 + 0x20, 0x5000, 0x800));
        assert_eq!((size.static_ram, size.node_state), (0x20 + 0xb000, 40_000));
        assert_eq!(size.other_ram(), 0x20 + 0xb000 - 40_000);
        assert!(size.check_budget().is_ok());
        assert!(Size::parse(sections, "").is_err(), "without the node's symbol the split is unknown");
    }
}
