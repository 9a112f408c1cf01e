//! A fault-injecting TCP proxy: a real dependency (an ingest, Redis, PostgreSQL, `outworx
//! serve`) behind it, and the fault it plays switched at run time.
//!
//! | [`Fault`] | what a client sees |
//! |---|---|
//! | `Pass` | the dependency |
//! | `BlackHole` | connections accepted, requests read and never answered; open connections stop answering too |
//! | `Refuse` | connections refused (the port is held, not listened on); open connections reset |
//! | `Latency(d)` | the dependency, each chunk of its answers `d` after it was sent |
//! | `Http { status, retry_after }` | every request read whole and answered `status` (with `Retry-After`), `Connection: close` |
//!
//! [`FaultProxy::set`] returns once the fault is in place (a refusing port is closed, a passing
//! one listens again). When a fault clears, the connections it held are closed, as a healed
//! network path or a restarted peer would leave them: clients reconnect to the dependency.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use outworx_test_support::fault::{Fault, FaultProxy};
//! let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
//! let url = format!("redis://{}", proxy.addr());
//! proxy.set(Fault::BlackHole).await;
//! // ... measure ...
//! proxy.set(Fault::Pass).await;
//! # let _ = url; Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the proxy does to traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Accept, read, never answer.
    BlackHole,
    /// Refuse new connections, reset open ones.
    Refuse,
    /// Forward, each chunk of the dependency's answers this late.
    Latency(Duration),
    /// Answer every request with this HTTP status itself (`Retry-After` when given).
    Http {
        /// The status.
        status: u16,
        /// Seconds for `Retry-After`.
        retry_after: Option<u32>,
    },
}

/// The fault playing, numbered: the accept loop says which number it has put in place.
type Playing = (u64, Fault);

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<watch::Sender<Playing>>,
    applied: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end with their fault channel.
        self.fault.send_modify(|p| *p = (p.0 + 1, Fault::Refuse));
    }
}

fn socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Bound again at once after a refusal, whatever the closed connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream`, passing traffic.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener =
            socket("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?.listen(1024)?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(watch::channel((0, Fault::Pass)).0);
        let (applied_tx, applied) = watch::channel(0);
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            fault.clone(),
            applied_tx,
        ));
        Ok(FaultProxy {
            addr,
            fault,
            applied,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Plays `fault` from now on; returns once it is in place.
    pub async fn set(&self, fault: Fault) {
        let mut number = 0;
        self.fault.send_modify(|p| {
            number = p.0 + 1;
            *p = (number, fault);
        });
        let mut applied = self.applied.clone();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), applied.wait_for(|a| *a >= number)).await;
    }

    /// The fault playing.
    pub fn fault(&self) -> Fault {
        self.fault.borrow().1.clone()
    }
}

/// Where the accept loop stands: listening, or holding the port without listening.
enum Port {
    Listening(TcpListener),
    Held(TcpSocket),
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    fault: Arc<watch::Sender<Playing>>,
    applied: watch::Sender<u64>,
) {
    let mut rx = fault.subscribe();
    let mut port = Some(Port::Listening(listener));
    loop {
        let (number, playing) = rx.borrow_and_update().clone();
        let refusing = playing == Fault::Refuse;
        port = match (refusing, port.take()) {
            // Refusing: the port stays bound (no one else can take it) but nothing listens,
            // so connections are refused.
            (true, Some(Port::Listening(l))) => {
                drop(l);
                socket(addr).ok().map(Port::Held)
            }
            (true, None) => socket(addr).ok().map(Port::Held),
            (false, Some(Port::Held(s))) => s.listen(1024).ok().map(Port::Listening),
            (false, None) => socket(addr)
                .and_then(|s| s.listen(1024))
                .ok()
                .map(Port::Listening),
            (_, p) => p,
        };
        applied.send_replace(number);
        match &port {
            Some(Port::Listening(l)) => {
                tokio::select! {
                    accepted = l.accept() => {
                        if let Ok((client, _)) = accepted {
                            let _ = client.set_nodelay(true);
                            tokio::spawn(connection(client, upstream, fault.subscribe()));
                        }
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
            _ => {
                if port.is_none() {
                    // The port could not be had back yet: try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resets a connection (RST, not FIN), as a refused or crashed peer does.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Playing>) {
    let fault = rx.borrow_and_update().1.clone();
    match fault {
        Fault::Refuse => reset(client),
        Fault::BlackHole => hold(client, rx).await,
        Fault::Http {
            status,
            retry_after,
        } => answer(client, status, retry_after).await,
        Fault::Pass | Fault::Latency(_) => match TcpStream::connect(upstream).await {
            Ok(server) => {
                let _ = server.set_nodelay(true);
                pipe(client, server, rx).await;
            }
            Err(_) => reset(client),
        },
    }
}

/// Reads and discards until the black hole ends; then closes (reset, when it turns into a
/// refusal).
async fn hold(mut client: TcpStream, mut rx: watch::Receiver<Playing>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = rx.borrow_and_update().1.clone();
                if now == Fault::Refuse {
                    return reset(client);
                }
                if now != Fault::BlackHole {
                    return;
                }
            }
        }
    }
}

/// The length of an HTTP/1.1 request's head (through its blank line) and its
/// `Content-Length`, once the head is all in `buf`.
fn request_head(buf: &[u8]) -> Option<(usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((end, length))
}

/// Reads one request whole (head and body, at most 64 MiB), answers it with `status` and
/// closes the connection.
async fn answer(mut client: TcpStream, status: u16, retry_after: Option<u32>) {
    const MAX: usize = 64 << 20;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some((head, length)) = request_head(&buf)
            && buf.len() >= head + length.min(MAX)
        {
            break;
        }
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) if buf.len() + n <= MAX + 64 * 1024 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => break,
        }
    }
    let retry = retry_after
        .map(|s| format!("retry-after: {s}\r\n"))
        .unwrap_or_default();
    let body = format!("{{\"error\": \"fault injected: {status}\"}}");
    let response = format!(
        "HTTP/1.1 {status} Fault\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Forwards both ways until either side closes or the fault stops forwarding: to a black hole
/// the client's side is held, to anything else the connection is reset. Under `Latency(d)`
/// each chunk of the dependency's answer is written `d` after it was read (a delay, not a
/// throttle: chunks in flight overlap).
async fn pipe(client: TcpStream, server: TcpStream, mut rx: watch::Receiver<Playing>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // The latency is read per chunk: passing and slowing switch without a reconnect.
    let now = rx.clone();
    let latency = move || match now.borrow().1 {
        Fault::Latency(d) => d,
        _ => Duration::ZERO,
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let (tx, mut chunks) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read_down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let due = Instant::now() + latency();
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let write_down = async {
        while let Some((due, bytes)) = chunks.recv().await {
            // Passing: no timer at all (one would cost each chunk up to its 1 ms tick).
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            if cw.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        // Everything read is written before the direction ends.
        tokio::join!(read_down, write_down);
    };
    let changed = async {
        loop {
            if rx.changed().await.is_err() {
                return Fault::Refuse;
            }
            let now = rx.borrow_and_update().1.clone();
            if !matches!(now, Fault::Pass | Fault::Latency(_)) {
                return now;
            }
        }
    };
    let next = tokio::select! {
        _ = up => None,
        _ = down => None,
        f = changed => Some(f),
    };
    let Some(next) = next else { return };
    drop(sw);
    let Ok(client) = cr.reunite(cw) else { return };
    if next == Fault::BlackHole {
        hold(client, rx).await;
    } else {
        reset(client);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_is_read_to_the_end_of_its_body() {
        let req = b"POST /api/ingest HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(super::request_head(req), Some((req.len() - 5, 5)));
        assert_eq!(super::request_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
