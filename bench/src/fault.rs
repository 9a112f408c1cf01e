//! A fault-injecting TCP proxy: a real dependency (an ingest, Redis, PostgreSQL, `outworx
//! serve`) behind it, and the fault it plays switched at run time.
//!
//! | [`Fault`] | what a client sees |
//! |---|---|
//! | `Pass` | the dependency |
//! | `BlackHole` | connections accepted, requests read and never answered; open connections stop answering too |
//! | `Refuse` | connections refused (the proxy stops listening); open connections reset |
//! | `Latency(d)` | the dependency, each chunk of its answers `d` late |
//! | `Http { status, retry_after }` | every request answered `status` (with `Retry-After`), `Connection: close` |
//!
//! When a fault clears, the connections it held are closed, as a healed network path or a
//! restarted peer would leave them: clients reconnect to the dependency.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use outworx_hooks_bench::fault::{Fault, FaultProxy};
//! let proxy = FaultProxy::start("127.0.0.1:6379".parse().unwrap()).await?;
//! let url = format!("redis://{}", proxy.addr());
//! proxy.set(Fault::BlackHole);
//! // ... measure ...
//! proxy.set(Fault::Pass);
//! # let _ = url; Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

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

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end with their fault channel.
        let _ = self.fault.send(Fault::Refuse);
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Rebound at once after a refusal, whatever the closed connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream`, passing traffic.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = listen("127.0.0.1:0".parse().map_err(std::io::Error::other)?)?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(watch::channel(Fault::Pass).0);
        let task = tokio::spawn(accept_loop(listener, addr, upstream, fault.clone()));
        Ok(FaultProxy { addr, fault, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Plays `fault` from now on.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault playing.
    pub fn fault(&self) -> Fault {
        self.fault.borrow().clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
) {
    let mut rx = fault.subscribe();
    let mut listener = Some(listener);
    loop {
        let refusing = *rx.borrow_and_update() == Fault::Refuse;
        match (refusing, listener.take()) {
            // Refusing: not listening at all, until the fault changes.
            (true, open) => {
                drop(open);
                if rx.changed().await.is_err() {
                    return;
                }
            }
            (false, None) => match listen(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            (false, Some(l)) => {
                tokio::select! {
                    accepted = l.accept() => {
                        if let Ok((client, _)) = accepted {
                            let _ = client.set_nodelay(true);
                            tokio::spawn(connection(client, upstream, fault.subscribe()));
                        }
                        listener = Some(l);
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        listener = Some(l);
                    }
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

async fn connection(client: TcpStream, upstream: SocketAddr, mut rx: watch::Receiver<Fault>) {
    let fault = rx.borrow_and_update().clone();
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

/// Reads and discards until the black hole ends, then closes.
async fn hold(mut client: TcpStream, mut rx: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            changed = rx.changed() => {
                if changed.is_err() || *rx.borrow_and_update() != Fault::BlackHole {
                    return;
                }
            }
        }
    }
}

/// Answers every request on the connection with `status` and closes it.
async fn answer(mut client: TcpStream, status: u16, retry_after: Option<u32>) {
    let mut buf = vec![0u8; 64 * 1024];
    // One read is enough to know a request came; its body is not needed.
    if !matches!(client.read(&mut buf).await, Ok(n) if n > 0) {
        return;
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
/// the client's side is held, to anything else the connection is reset.
async fn pipe(client: TcpStream, server: TcpStream, mut rx: watch::Receiver<Fault>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // The latency is read per chunk: passing and slowing switch without a reconnect.
    let now = rx.clone();
    let latency = move || match *now.borrow() {
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
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let delay = latency();
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let changed = async {
        loop {
            if rx.changed().await.is_err() {
                return Fault::Refuse;
            }
            let now = rx.borrow_and_update().clone();
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
    drop(sr);
    let Ok(client) = cr.reunite(cw) else { return };
    if next == Fault::BlackHole {
        hold(client, rx).await;
    } else {
        reset(client);
    }
}
