//! Helpers for black-box tests: start the real `rill` binary, read its log, signal it.
//!
//! The binary's path comes from `RILL_BIN`, which `cargo xtask test` sets to the binary it built.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long a test waits for rill to log a line or to exit.
pub const WAIT: Duration = Duration::from_secs(30);

/// The `rill` binary under test.
pub fn rill_bin() -> PathBuf {
    match std::env::var_os("RILL_BIN") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "RILL_BIN is not set: run the black-box tests with `cargo xtask test`, which builds rill and sets it"
        ),
    }
}

/// The component `cargo xtask plugins` built for plugin `name` (directory in `RILL_PLUGIN_DIR`).
pub fn plugin_file(name: &str) -> PathBuf {
    match std::env::var_os("RILL_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir).join(format!("{name}.wasm")),
        None => panic!("RILL_PLUGIN_DIR is not set: run the tests with `cargo xtask test`, which builds the plugins"),
    }
}

/// Runs `tests/python/<script>` with `args` in the interpreter `cargo xtask test` prepared
/// (`RILL_PYTHON`: a virtualenv with the clients pinned in `tests/python/requirements.txt`), and
/// panics with what it printed unless it exits 0.
pub fn python_client(script: &str, args: &[&str]) -> String {
    let python = std::env::var_os("RILL_PYTHON").expect(
        "RILL_PYTHON is not set: run the black-box tests with `cargo xtask test`, which installs the Python clients",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join(script);
    let output = Command::new(python).arg(&script).args(args).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub mod proxy;
pub mod qemu;

/// Reading topics with rskafka, as a consumer of Rill's output would.
pub mod kafka {
    use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
    use rskafka::client::{Client, ClientBuilder};
    use rskafka::record::Record;

    pub async fn connect(addr: &str) -> Client {
        ClientBuilder::new(vec![addr.to_owned()]).build().await.expect("rskafka connects")
    }

    /// A client for one partition, waiting for the topic to appear.
    pub async fn partition(client: &Client, topic: &str, partition: i32) -> PartitionClient {
        client.partition_client(topic, partition, UnknownTopicHandling::Retry).await.expect("partition client")
    }

    /// Every record of a partition from offset 0 up to its high watermark.
    pub async fn read_all(client: &PartitionClient) -> Vec<Record> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let (records, high_watermark) = client.fetch_records(offset, 1..10_000_000, 100).await.expect("fetch");
            for r in records {
                offset = r.offset + 1;
                out.push(r.record);
            }
            if offset >= high_watermark {
                return out;
            }
        }
    }
}

/// A `rill` command with plain-text logs.
pub fn rill() -> Command {
    let mut command = Command::new(rill_bin());
    command.env("RILL_LOG", "info").env_remove("RUST_LOG");
    command
}

/// `rill serve` with its Kafka and HTTP listeners on free loopback ports, so tests run side by
/// side. Read the ports with [`Running::kafka_addr`] and [`Running::http_addr`].
pub fn serve() -> Command {
    let mut command = rill();
    command.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    command
}

/// A running `rill` process whose stderr is read line by line.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    lines: Receiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
}

impl Running {
    pub fn start(command: &mut Command) -> Running {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("rill starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child: Some(child), lines, log: Vec::new() }
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no line with {needle:?} in {WAIT:?}; log:\n{}", self.log.join("\n")));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("rill exited before logging {needle:?}; log:\n{}", self.log.join("\n")));
                }
            }
        }
    }

    /// Every stderr line read so far, reading what has arrived without waiting (a process that
    /// was killed has written all it will).
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    /// `rill serve` on `data_dir` with a free Kafka port; returns it with the address it bound.
    pub fn serve_on(data_dir: &std::path::Path) -> (Running, String) {
        let mut running = Running::start(serve().arg("--data-dir").arg(data_dir));
        let addr = running.kafka_addr();
        (running, addr)
    }

    /// Stops rill with SIGTERM and checks that it exited cleanly.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit();
        assert!(status.success(), "exit {status:?}; log:\n{}", self.log.join("\n"));
    }

    /// Waits for the Kafka listener's startup line and returns the address it bound.
    pub fn kafka_addr(&mut self) -> String {
        self.listener_addr("kafka listening on ")
    }

    /// Waits for the replication listener's startup line and returns the address it bound.
    pub fn replication_addr(&mut self) -> String {
        self.listener_addr("replication listening on ")
    }

    /// Waits for the device listener's startup line and returns the address it bound.
    pub fn devices_addr(&mut self) -> String {
        self.listener_addr("devices listening on ")
    }

    /// Waits for the HTTP listener's startup line and returns the address it bound.
    pub fn http_addr(&mut self) -> String {
        self.listener_addr("http listening on ")
    }

    /// The address after `prefix` in a startup line, read already or still to come.
    fn listener_addr(&mut self, prefix: &str) -> String {
        let line = match self.log.iter().rev().find(|line| line.contains(prefix)) {
            Some(line) => line.clone(),
            None => self.wait_for(prefix).unwrap_or_else(|e| panic!("the listener starts: {e}")),
        };
        let at = line.find(prefix).expect("the line holds the prefix") + prefix.len();
        line[at..].split_whitespace().next().expect("an address follows").to_owned()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY-free: libc::kill has no memory-safety preconditions; it only sends a signal.
        #[allow(unsafe_code)]
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// Waits for the process to exit, collecting the rest of its log.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rill did not exit within {WAIT:?}; log:\n{}", self.log.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs kcat against `broker` with `args` (feeding `stdin` when given) and checks it succeeded.
/// `cargo xtask test` installs kcat.
pub fn kcat(broker: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new("kcat");
    command.arg("-b").arg(broker).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child =
        command.spawn().unwrap_or_else(|e| panic!("kcat must be installed (cargo xtask test installs it): {e}"));
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin is piped").write_all(text.as_bytes()).expect("kcat reads stdin");
    }
    let output = child.wait_with_output().expect("kcat runs");
    assert!(output.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// A command's stdout, line by line.
pub fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// The control plane of a running `rill`, as an operator's HTTP client sees it. Statuses are
/// returned, not turned into errors.
#[derive(Debug)]
pub struct Http {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

/// An HTTP answer: the status and the body (JSON when it is JSON, else a string).
pub type Answer = (u16, serde_json::Value);

impl Http {
    /// `addr` as [`Running::http_addr`] returns it.
    pub fn new(addr: &str) -> Http {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(WAIT)).build().into();
        Http { base: format!("http://{addr}"), agent, token: None }
    }

    /// Sends `token` as the admin bearer token from now on.
    pub fn with_token(mut self, token: &str) -> Http {
        self.token = Some(token.to_owned());
        self
    }

    pub fn get(&self, path: &str) -> Answer {
        answer(self.agent.get(format!("{}{path}", self.base)).call())
    }

    pub fn text(&self, path: &str) -> String {
        let mut response = self.agent.get(format!("{}{path}", self.base)).call().expect("http get");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.body_mut().read_to_string().expect("a text body")
    }

    pub fn delete(&self, path: &str) -> Answer {
        let mut request = self.agent.delete(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        answer(request.call())
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.send("POST", path, body)
    }

    pub fn patch(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.send("PATCH", path, body)
    }

    fn send(&self, method: &str, path: &str, body: &serde_json::Value) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.agent.post(url),
            _ => self.agent.patch(url),
        }
        .header("content-type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        answer(request.send(body.to_string().as_str()))
    }
}

fn answer(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("the HTTP request gets an answer");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// A private mosquitto (Debian's, which `cargo xtask test` installs) on a free loopback port,
/// configured for no-loss tests: persistence on (queued QoS 1 messages survive its restart) and
/// queue limits far above any test's volume (Debian's defaults: no persistence, 1000 queued, 20
/// in flight). Stopped when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    /// The TLS listener of [`Mosquitto::start_with_tls`], which asks clients for a certificate.
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

/// PEM files for a TLS mosquitto: the CA that signed everything, and a client's certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_with(None)
    }

    /// Also listens with TLS (certificates made now by a test CA), requiring a client
    /// certificate signed by that CA.
    pub fn start_with_tls() -> (Mosquitto, TlsFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = make_certificates(dir.path());
        let tls_port = free_port();
        let listener = format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            files.ca.display(),
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display()
        );
        let mut mosquitto = Self::start_with(Some((dir, listener)));
        mosquitto.tls_port = Some(tls_port);
        (mosquitto, files)
    }

    fn start_with(tls: Option<(tempfile::TempDir, String)>) -> Mosquitto {
        let port = free_port();
        let (dir, tls_listener) = tls.unwrap_or_else(|| (tempfile::tempdir().unwrap(), String::new()));
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             autosave_interval 1\nmax_queued_messages 1000000\nmax_queued_bytes 0\nmax_inflight_messages 100\n\
             log_dest stderr\nlog_type error\nlog_type warning\nuser root\n{tls_listener}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), config).unwrap();
        let mut mosquitto = Mosquitto { child: None, port, tls_port: None, dir };
        mosquitto.run();
        mosquitto
    }

    /// `mqtts://127.0.0.1:PORT` of the TLS listener.
    pub fn tls_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.tls_port.expect("started with TLS"))
    }

    fn run(&mut self) {
        let program =
            if std::path::Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let child = Command::new(program)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto must be installed (cargo xtask test installs it): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {} within {WAIT:?}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops it cleanly (it saves its queues) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY-free: libc::kill only sends a signal.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same persistence file.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Publishes each line of `lines` as one message with `mosquitto_pub -l`.
    pub fn publish_lines(&self, topic: &str, qos: u8, lines: &str) {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", topic, "-q", &qos.to_string(), "-l"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("mosquitto_pub must be installed (cargo xtask test installs it): {e}"));
        child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Publishes one message with `mosquitto_pub -m`.
    pub fn publish(&self, topic: &str, qos: u8, message: &str) {
        let output = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", topic, "-q", &qos.to_string(), "-m", message])
            .output()
            .unwrap_or_else(|e| panic!("mosquitto_pub must be installed (cargo xtask test installs it): {e}"));
        assert!(output.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// A test CA, a certificate for mosquitto on 127.0.0.1 and a client certificate, as PEM files
/// in `dir`.
fn make_certificates(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Rill test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let signed = |names: Vec<String>, common_name: &str, file: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (write(&format!("{file}.pem"), cert.pem()), write(&format!("{file}.key"), key.serialize_pem()))
    };
    signed(vec!["127.0.0.1".into(), "localhost".into()], "mosquitto", "server");
    let (client_cert, client_key) = signed(Vec::new(), "rill-bridge", "client");
    TlsFiles { ca: write("ca.pem", ca.pem()), client_cert, client_key }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
