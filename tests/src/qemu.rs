//! The sensor-node firmware in QEMU: `cargo xtask test` builds it for the board QEMU emulates
//! (`mps2-an386`) and passes the ELF in `RILL_FIRMWARE`; `cargo xtask test` also installs
//! `qemu-system-arm`. The firmware's uplink UART is QEMU's first serial port, connected to a TCP
//! address (QEMU reconnects every second while it is down); its console is the second, kept in a
//! file the test shows when it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The firmware under test.
pub fn firmware() -> PathBuf {
    match std::env::var_os("RILL_FIRMWARE") {
        Some(path) => PathBuf::from(path),
        None => panic!("RILL_FIRMWARE is not set: run the tests with `cargo xtask test`, which builds the firmware"),
    }
}

/// A running QEMU with the firmware; killed on drop.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    console: PathBuf,
}

impl Qemu {
    /// Boots the firmware with its uplink connected to `uplink` and the boot counter at
    /// `boot_counter` (the firmware's boot id is one more), its console in `console`.
    pub fn start(uplink: &str, boot_counter: u32, console: &Path) -> Qemu {
        Qemu::boot(uplink, boot_counter, console, None, Stdio::null())
    }

    /// As [`start`](Self::start), with the board's flash backlog in `flash`, a file that outlives
    /// QEMU as a chip's flash outlives a power cut (made erased if missing; see `qemu.sh`).
    pub fn start_with_flash(uplink: &str, boot_counter: u32, console: &Path, flash: &Path) -> Qemu {
        Qemu::boot(uplink, boot_counter, console, Some(flash), Stdio::null())
    }

    /// Boots the firmware with its uplink UART on a pseudo-terminal, as if on a serial cable;
    /// returns it with the terminal's path, for a gateway's `[[devices.serial]]`.
    pub fn start_on_pty(boot_counter: u32, console: &Path) -> (Qemu, PathBuf) {
        let mut qemu = Qemu::boot("pty", boot_counter, console, None, Stdio::piped());
        // QEMU says `char device redirected to /dev/pts/N (label serial0)` on stdout once it made
        // the pty; the reader goes on reading, so that QEMU never blocks on a full pipe.
        let stdout = qemu.child.stdout.take().expect("stdout is piped");
        let (found, pty) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("redirected to ").nth(1) {
                    let _ = found.send(PathBuf::from(rest.split_whitespace().next().unwrap_or_default()));
                }
            }
        });
        // `qemu` stops QEMU if this panics.
        let pty = pty.recv_timeout(std::time::Duration::from_secs(30)).expect("QEMU names its pty within 30 s");
        (qemu, pty)
    }

    /// Runs the board's QEMU command line, `firmware/mps2-an386/qemu.sh` (which execs QEMU).
    fn boot(uplink: &str, boot_counter: u32, console: &Path, flash: Option<&Path>, stdout: Stdio) -> Qemu {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/mps2-an386/qemu.sh");
        let child = Command::new(script)
            .arg(firmware())
            .arg(uplink)
            .arg(format!("file:{}", console.display()))
            .arg(boot_counter.to_string())
            .args(flash)
            .stdin(Stdio::null())
            .stdout(stdout)
            .spawn()
            .unwrap_or_else(|e| panic!("qemu.sh starts: {e}"));
        Qemu { child, console: console.to_owned() }
    }

    /// What the firmware printed on its console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Powers the board off (`kill -9`: its RAM, and the readings in it, are gone; a flash
    /// file keeps what was written to it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}
