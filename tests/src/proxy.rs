//! A TCP proxy on loopback that a test drives to break the link between two processes: cut it
//! (connections closed, new ones refused), stall it (open but silent), throttle it, reset it
//! (every connection closed abruptly, new ones pass).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Stall,
    Down,
}

#[derive(Debug)]
struct Shared {
    upstream: Mutex<SocketAddr>,
    mode: Mutex<Mode>,
    /// Both ends of every live connection, to cut or reset them.
    connections: Mutex<Vec<(TcpStream, TcpStream)>>,
    /// Bytes per second in each direction; 0: unlimited.
    throttle: AtomicU64,
    stop: AtomicBool,
    /// Bytes forwarded, both directions.
    pub forwarded: AtomicU64,
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.parse().expect("upstream is an address")),
            mode: Mutex::new(Mode::Pass),
            connections: Mutex::new(Vec::new()),
            throttle: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || accept_loop(listener, accepting));
        FaultProxy { addr, shared }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Where new connections go (the upstream restarted on another port).
    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().unwrap() = upstream.parse().expect("upstream is an address");
    }

    /// Closes every connection and refuses new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Down;
        for (client, server) in self.shared.connections.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Connections stay open but nothing moves, until [`heal`](Self::heal).
    pub fn stall(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Stall;
    }

    /// Back to forwarding (throttling stays as set).
    pub fn heal(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Pass;
    }

    /// Limits each direction of each connection to `bytes_per_s` (`None`: unlimited).
    pub fn throttle(&self, bytes_per_s: Option<u64>) {
        self.shared.throttle.store(bytes_per_s.unwrap_or(0), Ordering::Relaxed);
    }

    /// Breaks every connection abruptly (zero linger, read sides shut: a peer sees a reset or an
    /// end of stream, whichever the kernel delivers first); new connections pass.
    pub fn reset(&self) {
        for (client, server) in self.shared.connections.lock().unwrap().drain(..) {
            for stream in [&client, &server] {
                set_linger_zero(stream);
                let _ = stream.shutdown(Shutdown::Read);
            }
        }
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

/// Closing a socket with a zero linger sends an RST instead of a FIN.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY-free: setsockopt reads `linger` for the given size; the fd is open (we hold it).
    #[allow(unsafe_code)]
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        if *shared.mode.lock().unwrap() == Mode::Down {
            drop(client);
            continue;
        }
        let upstream = *shared.upstream.lock().unwrap();
        let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client2), Ok(server2), Ok(client3), Ok(server3)) =
            (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
        else {
            continue;
        };
        shared.connections.lock().unwrap().push((client3, server3));
        let (up, down) = (Arc::clone(&shared), Arc::clone(&shared));
        std::thread::spawn(move || pump(client, server2, up));
        std::thread::spawn(move || pump(server, client2, down));
    }
}

/// Copies `from` → `to` as the mode and throttle allow, until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match *shared.mode.lock().unwrap() {
            Mode::Pass => {}
            Mode::Stall => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Mode::Down => break,
        }
        let rate = shared.throttle.load(Ordering::Relaxed);
        // Small reads under a throttle, so the rate is smooth.
        let chunk = if rate == 0 { buffer.len() } else { (rate as usize / 20).clamp(1, buffer.len()) };
        match from.read(&mut buffer[..chunk]) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
                shared.forwarded.fetch_add(n as u64, Ordering::Relaxed);
                if let Some(micros) = (n as u64 * 1_000_000).checked_div(rate) {
                    std::thread::sleep(Duration::from_micros(micros));
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
