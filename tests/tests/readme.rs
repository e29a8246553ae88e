//! README.md's examples, run in order as a new user would, so that the README cannot drift from
//! what Rill does.
//!
//! Every line of every `sh` block is read from the README itself and run with bash, in a fresh
//! working directory per section that starts a server. What a newcomer's machine has is stood in
//! for, and nothing else is changed:
//! - `cargo run --release -- serve` runs the binary under test (`RILL_BIN`, a debug build);
//! - the README's ports (Kafka 9092, HTTP 9644, replication 9093, the second node's 19092 and
//!   19644, mosquitto's 1883) become free loopback ports, in the commands, in the files they
//!   name (`examples/`), and as the defaults of `rill` and `mosquitto_pub` (through wrappers on
//!   `PATH` and `RILL_BOOTSTRAP`/`RILL_ADMIN`), so the test runs beside anything else;
//! - mosquitto is a private instance, and the plugins are the ones `cargo xtask test` built;
//! - a server (a `rill serve` line, with or without `&`) runs in the background until the next
//!   section that starts one, and the next line waits until it is ready.
//!
//! A line must exit 0 (reads are retried until their check passes, as a user would look again);
//! the lines named in [`checks`] must also print what the README says they do, and every check
//! must have found its line. Lines that install software or open a browser are skipped, each
//! for a reason written in [`SKIPPED`]; an unknown line is simply run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rill_tests::{Mosquitto, free_port, plugin_file, rill_bin};

/// Lines that are not run, by their start, with why.
const SKIPPED: &[(&str, &str)] = &[
    ("apt-get install", "`cargo xtask test` installs the Debian packages the README names"),
    ("cargo xtask plugins", "`cargo xtask test` built the plugins (RILL_PLUGIN_DIR)"),
    ("cargo xtask test", "this test is part of it"),
    ("xdg-open", "no desktop here; tests/tests/status_page.rs loads the page in Chromium"),
];

/// The README's addresses, each replaced by a free loopback port.
const README_PORTS: [u16; 6] = [9092, 9644, 9093, 19092, 19644, 1883];

/// How long a line may run, and how long a read is retried.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
const RETRY_FOR: Duration = Duration::from_secs(30);

type Check = fn(&str) -> Result<(), String>;

/// What a line must print, by a piece of the line as the README has it.
fn checks() -> Vec<(&'static str, Check)> {
    fn has(out: &str, wanted: &[&str]) -> Result<(), String> {
        match wanted.iter().find(|w| !out.contains(**w)) {
            Some(missing) => Err(format!("{missing:?} missing")),
            None => Ok(()),
        }
    }
    vec![
        ("-C -t sensors -o beginning -e", |out| {
            let lines: Vec<&str> = out.lines().collect();
            if lines == ["temp=21.5", "temp=21.7"] { Ok(()) } else { Err(format!("read {lines:?}")) }
        }),
        ("-G dashboards", |out| has(out, &["temp=21.5", "temp=21.7"])),
        ("-L", |out| has(out, &["topic \"sensors\"", "1 brokers"])),
        ("rill topic list", |out| has(out, &["readings\t1 partition", "sensors\t1 partition"])),
        ("rill pipeline list", |out| has(out, &["warm"])),
        ("rill pipeline describe warm", |out| has(out, &["warm", "sensors"])),
        ("rill mqtt list", |out| {
            let state = out.lines().find(|l| l.starts_with("sensors ")).and_then(|l| l.split_whitespace().nth(1));
            if state == Some("connected") { Ok(()) } else { Err(format!("bridge state {state:?}")) }
        }),
        ("-f '%k %s\\n'", |out| has(out, &["urn:dev:dev1:temp", "urn:dev:dev1:hum"])),
        ("-t gw-17.sensors", |out| {
            let lines: Vec<&str> = out.lines().collect();
            let expected: Vec<String> = (1..=1000).map(|n| format!("{} {n}", n - 1)).collect();
            if lines == expected { Ok(()) } else { Err(format!("{} lines, first {:?}", lines.len(), lines.first())) }
        }),
        ("rill mirror status", |out| has(out, &["cloud", "sensors"])),
        ("rill status", |out| has(out, &["sensors"])),
        ("/metrics", |out| has(out, &["rill_"])),
    ]
}

/// The README's `sh` blocks: (section heading, line), comments removed, continuations joined.
fn readme_lines() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let mut out = Vec::new();
    let (mut section, mut in_block, mut pending) = (String::new(), false, String::new());
    for line in readme.lines() {
        if !in_block && line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_owned();
        } else if !in_block && line.trim() == "```sh" {
            in_block = true;
        } else if in_block && line.trim() == "```" {
            in_block = false;
        } else if in_block {
            let code = without_comment(line);
            match code.strip_suffix('\\') {
                Some(continued) => {
                    pending.push_str(if pending.is_empty() { continued.trim_end() } else { continued.trim() });
                    pending.push(' ');
                }
                None => {
                    pending.push_str(if pending.is_empty() { code } else { code.trim_start() });
                    let full = pending.trim().to_owned();
                    if !full.is_empty() {
                        out.push((section.clone(), full));
                    }
                    pending.clear();
                }
            }
        }
    }
    out
}

/// `line` without a trailing `# comment` (a `#` after white space, outside quotes).
fn without_comment(line: &str) -> &str {
    let (mut quote, mut previous) = (None, ' ');
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '#') if previous.is_whitespace() => return line[..at].trim_end(),
            _ => {}
        }
        previous = c;
    }
    line.trim_end()
}

/// One user's session: servers running, the working directory, the ports in use.
struct Session {
    ports: HashMap<u16, u16>,
    bin: tempfile::TempDir,
    cwd: Option<tempfile::TempDir>,
    servers: Vec<Child>,
    mosquitto: Mosquitto,
}

impl Session {
    fn new() -> Session {
        let mosquitto = Mosquitto::start();
        let mut ports: HashMap<u16, u16> = README_PORTS.iter().map(|&p| (p, free_port())).collect();
        ports.insert(1883, mosquitto.port);
        let bin = tempfile::tempdir().unwrap();
        // `rill serve` on the README's default ports; `mosquitto_pub` on the README's default.
        let wrappers = [
            (
                "rill",
                format!(
                    "#!/bin/bash\nif [ \"$1\" = serve ]; then\n  extra=()\n  \
                     [[ \" $* \" == *\" --listen \"* ]] || extra+=(--listen 127.0.0.1:{})\n  \
                     [[ \" $* \" == *\" --http-listen \"* ]] || extra+=(--http-listen 127.0.0.1:{})\n  \
                     exec {} \"$@\" \"${{extra[@]}}\" --replication-listen 127.0.0.1:{}\nfi\nexec {} \"$@\"\n",
                    ports[&9092],
                    ports[&9644],
                    rill_bin().display(),
                    ports[&9093],
                    rill_bin().display()
                ),
            ),
            ("mosquitto_pub", format!("#!/bin/bash\nexec /usr/bin/mosquitto_pub -p {} \"$@\"\n", ports[&1883])),
        ];
        for (name, script) in wrappers {
            let path = bin.path().join(name);
            std::fs::write(&path, script).unwrap();
            let mut permissions = std::fs::metadata(&path).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
            std::fs::set_permissions(&path, permissions).unwrap();
        }
        Session { ports, bin, cwd: None, servers: Vec::new(), mosquitto }
    }

    /// The README's addresses moved to this session's ports.
    fn localize(&self, text: &str) -> String {
        let mut text = text.replace("cargo run --release -- ", "rill ");
        for (readme, free) in &self.ports {
            text = text.replace(&format!("127.0.0.1:{readme}"), &format!("127.0.0.1:{free}"));
        }
        text
    }

    /// A fresh working directory holding what the README's paths name: `examples/` (ports
    /// moved) and the built plugins where `cargo xtask plugins` puts them.
    fn fresh_directory(&mut self) -> PathBuf {
        self.stop_servers();
        let cwd = tempfile::tempdir().unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        std::fs::create_dir(cwd.path().join("examples")).unwrap();
        for entry in std::fs::read_dir(examples).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(cwd.path().join("examples").join(path.file_name().unwrap()), self.localize(&text)).unwrap();
        }
        let plugins = cwd.path().join("plugins/target/plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for entry in std::fs::read_dir(plugin_file("senml").parent().unwrap()).unwrap() {
            let path = entry.unwrap().path();
            std::os::unix::fs::symlink(&path, plugins.join(path.file_name().unwrap())).unwrap();
        }
        let path = cwd.path().to_owned();
        self.cwd = Some(cwd);
        path
    }

    fn shell(&self, line: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(line)
            .current_dir(self.cwd.as_ref().expect("a section started a server first").path())
            .env("PATH", format!("{}:{}", self.bin.path().display(), std::env::var("PATH").unwrap_or_default()))
            .env("RILL_BOOTSTRAP", format!("127.0.0.1:{}", self.ports[&9092]))
            .env("RILL_ADMIN", format!("http://127.0.0.1:{}", self.ports[&9644]))
            .env_remove("RILL_ADMIN_TOKEN")
            .env("RILL_LOG", "info")
            .stdin(Stdio::null());
        command
    }

    /// Starts a server line in the background and waits until its `/ready` answers 200.
    fn start_server(&mut self, line: &str) {
        let line = line.trim_end_matches('&').trim();
        let http = line
            .split_whitespace()
            .skip_while(|w| *w != "--http-listen")
            .nth(1)
            .map_or_else(|| format!("127.0.0.1:{}", self.ports[&9644]), str::to_owned);
        let log =
            std::fs::File::create(self.cwd.as_ref().unwrap().path().join(format!("server-{}.log", self.servers.len())))
                .unwrap();
        let child = self.shell(&format!("exec {line}")).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.servers.push(child);
        let deadline = Instant::now() + LINE_TIMEOUT;
        while !ready(&http) {
            assert!(Instant::now() < deadline, "`{line}` did not get ready; logs: {}", self.server_logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn server_logs(&self) -> String {
        let dir = self.cwd.as_ref().map(|d| d.path().to_owned()).unwrap_or_default();
        (0..self.servers.len())
            .map(|i| std::fs::read_to_string(dir.join(format!("server-{i}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// Runs a line to its end (killed after [`LINE_TIMEOUT`]): (success, stdout, stderr).
    fn run(&self, line: &str) -> (bool, String, String) {
        let timed = format!("timeout {} bash -c {}", LINE_TIMEOUT.as_secs(), shell_quote(line));
        let output = self.shell(&timed).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }

    fn stop_servers(&mut self) {
        for mut server in self.servers.drain(..) {
            // SIGTERM: the clean shutdown a user gets from Ctrl-C or their service manager; one
            // that hangs is killed rather than hang the test.
            let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
            let deadline = Instant::now() + LINE_TIMEOUT;
            while matches!(server.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop_servers();
        self.mosquitto.stop();
    }
}

/// Whether `GET /ready` at `addr` answers 200 (false while nothing listens there yet).
fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1) == Some("200")
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[test]
fn every_readme_example_runs_as_written() {
    let lines = readme_lines();
    assert!(lines.len() >= 20, "the README's examples were not found: {lines:?}");
    let checks = checks();
    let mut checked = vec![false; checks.len()];
    let mut skipped = vec![false; SKIPPED.len()];
    let mut session = Session::new();
    // A section that starts a server starts afresh, in its own directory, as a reader who
    // follows just that section would.
    let server_sections: Vec<&String> =
        lines.iter().filter(|(_, line)| session.localize(line).starts_with("rill serve")).map(|(s, _)| s).collect();
    let mut current_section = None;
    for (section, readme_line) in &lines {
        if current_section != Some(section) {
            current_section = Some(section);
            if server_sections.contains(&section) {
                session.fresh_directory();
            }
        }
        if let Some(i) = SKIPPED.iter().position(|(start, _)| readme_line.starts_with(start)) {
            eprintln!("readme: skipped `{readme_line}`: {}", SKIPPED[i].1);
            skipped[i] = true;
            continue;
        }
        let line = session.localize(readme_line);
        if line.starts_with("rill serve") {
            eprintln!("readme: [{section}] server `{line}`");
            session.start_server(&line);
            continue;
        }
        let check = checks.iter().position(|(piece, _)| readme_line.contains(piece));
        eprintln!("readme: [{section}] `{line}`");
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let (ok, stdout, stderr) = session.run(&line);
            let verdict = match (ok, check) {
                (false, _) => Err(format!("failed: {stderr}")),
                (true, Some(i)) => (checks[i].1)(&stdout),
                (true, None) => Ok(()),
            };
            match verdict {
                Ok(()) => break,
                // Reads look again (a mirror or a bridge may not have delivered yet); writes do not.
                Err(why) if check.is_some() && Instant::now() < deadline => {
                    eprintln!("readme: not yet ({why}); again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(why) => panic!(
                    "README line `{readme_line}` (run as `{line}`), section {section:?}: {why}\nstdout:\n{stdout}\n\
                     server logs:\n{}",
                    session.server_logs()
                ),
            }
        }
        if let Some(i) = check {
            checked[i] = true;
        }
    }
    let unused: Vec<&str> =
        checks.iter().zip(&checked).filter(|(_, used)| !**used).map(|((piece, _), _)| *piece).collect();
    assert!(unused.is_empty(), "checks whose README line is gone: {unused:?}");
    let unused: Vec<&str> =
        SKIPPED.iter().zip(&skipped).filter(|(_, used)| !**used).map(|((start, _), _)| *start).collect();
    assert!(unused.is_empty(), "skips whose README line is gone: {unused:?}");
}
