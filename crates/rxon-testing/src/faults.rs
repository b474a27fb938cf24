//! [`FaultProxy`]: a TCP proxy on 127.0.0.1 between workers and a listener that delays,
//! black-holes, refuses and resets connections on command, for fault tests.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use rxon_testing::faults::{Fault, FaultProxy};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let proxy = FaultProxy::start(upstream.local_addr().unwrap()).await.unwrap();
//! tokio::spawn(async move {
//!     let (mut s, _) = upstream.accept().await.unwrap();
//!     let mut buf = [0u8; 4];
//!     s.read_exact(&mut buf).await.unwrap();
//!     s.write_all(&buf).await.unwrap();
//! });
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
//! client.write_all(b"ping").await.unwrap();
//! let mut echo = [0u8; 4];
//! client.read_exact(&mut echo).await.unwrap();
//! assert_eq!(&echo, b"ping");
//!
//! // Refused: the connection is accepted, then reset.
//! proxy.set_fault(Fault::Refuse);
//! let mut refused = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
//! let read = refused.read(&mut echo).await;
//! assert!(matches!(read, Err(_) | Ok(0)));
//! assert_eq!(proxy.stats().refused, 1);
//! # });
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic, from now on (existing connections included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Hold each chunk this long before forwarding it.
    Delay(Duration),
    /// Accept and keep connections, forward nothing (a network black hole).
    Blackhole,
    /// Reset new connections at once (a host that refuses).
    Refuse,
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Connections reset by the proxy (a share, [`FaultProxy::reset_all`], or the
    /// upstream being unreachable).
    pub resets: u64,
    /// Connections refused under [`Fault::Refuse`].
    pub refused: u64,
    /// Connections left open but silent by [`FaultProxy::strand_all`].
    pub stranded: u64,
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    fault: watch::Sender<Fault>,
    /// Bumped by `reset_all`: every connection open at that moment is reset.
    generation: watch::Sender<u64>,
    /// Bumped by `strand_all`: every connection open at that moment goes silent.
    strands: watch::Sender<u64>,
    /// (probability in 1/1,000,000, largest byte budget) for new connections.
    reset_share: Mutex<(u32, u64)>,
    rng: Mutex<u64>,
    accepted: AtomicU64,
    resets: AtomicU64,
    refused: AtomicU64,
    stranded: AtomicU64,
}

impl Shared {
    fn next_random(&self) -> u64 {
        // xorshift64*: reproducible from the seed, good enough to pick victims.
        let mut x = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *x ^= *x >> 12;
        *x ^= *x << 25;
        *x ^= *x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// How many bytes a new connection carries before the proxy resets it, if it is
    /// one of the chosen share.
    fn reset_budget(&self) -> Option<u64> {
        let (per_million, max_bytes) = *self.reset_share.lock().unwrap_or_else(|p| p.into_inner());
        if per_million == 0 || self.next_random() % 1_000_000 >= u64::from(per_million) {
            return None;
        }
        Some(1 + self.next_random() % max_bytes.max(1))
    }
}

/// A fault-injecting TCP proxy on `127.0.0.1`; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("fault", &*self.shared.fault.borrow())
            .field("stats", &self.stats())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            fault: watch::Sender::new(Fault::Pass),
            generation: watch::Sender::new(0),
            strands: watch::Sender::new(0),
            reset_share: Mutex::new((0, 0)),
            rng: Mutex::new(0x9e37_79b9_7f4a_7c15),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stranded: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{scheme}://127.0.0.1:{port}`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// Where new connections go.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = upstream;
    }

    /// Changes what happens to traffic from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// From now on, each new connection is, with probability `share` (0 to 1), reset
    /// after carrying a random number of bytes between 1 and `max_bytes` (both
    /// directions counted). `seed` makes the choice reproducible.
    pub fn reset_share(&self, share: f64, max_bytes: u64, seed: u64) {
        let per_million = (share.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        *self
            .shared
            .reset_share
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (per_million, max_bytes);
        *self.shared.rng.lock().unwrap_or_else(|p| p.into_inner()) = seed | 1;
    }

    /// Resets every connection open now.
    pub fn reset_all(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Strands every connection open now: from here on it carries nothing in either
    /// direction and is never closed (until [`reset_all`](Self::reset_all) or the
    /// proxy is dropped), while new connections pass. This is what a worker behind a
    /// NAT or firewall sees when its mapping is dropped silently: no FIN, no RST, only
    /// silence, which only a keepalive or a timeout can notice.
    pub fn strand_all(&self) {
        self.shared.strands.send_modify(|g| *g += 1);
    }

    /// Counters so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            resets: self.shared.resets.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            stranded: self.shared.stranded.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Ends the connections too: they stop when the generation channel closes.
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        if *shared.fault.borrow() == Fault::Refuse {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            reset(client);
            continue;
        }
        tokio::spawn(connection(client, shared.clone()));
    }
}

/// Closes with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

enum End {
    /// Both directions finished normally.
    Closed,
    /// The proxy decided to reset.
    Reset,
    /// `strand_all`: keep both sockets open, carry nothing.
    Stranded,
}

async fn connection(mut client: TcpStream, shared: Arc<Shared>) {
    let upstream = *shared.upstream.lock().unwrap_or_else(|p| p.into_inner());
    let mut generation = shared.generation.subscribe();
    let mut strands = shared.strands.subscribe();
    let strand_generation = *strands.borrow_and_update();
    let mut server =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await {
            Ok(Ok(s)) => s,
            _ => {
                shared.resets.fetch_add(1, Ordering::Relaxed);
                reset(client);
                return;
            }
        };
    let _ = server.set_nodelay(true);
    let budget = shared.reset_budget();
    let carried = AtomicU64::new(0);
    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = pump(
            &mut cr,
            &mut sw,
            &shared,
            budget,
            &carried,
            strand_generation,
        );
        let down = pump(
            &mut sr,
            &mut cw,
            &shared,
            budget,
            &carried,
            strand_generation,
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                r = &mut up, if !up_done => match r {
                    Pumped::Eof => up_done = true,
                    Pumped::Reset => break End::Reset,
                    Pumped::Failed => break End::Closed,
                    Pumped::Stranded => break End::Stranded,
                },
                r = &mut down, if !down_done => match r {
                    Pumped::Eof => down_done = true,
                    Pumped::Reset => break End::Reset,
                    Pumped::Failed => break End::Closed,
                    Pumped::Stranded => break End::Stranded,
                },
                changed = generation.changed() => {
                    if changed.is_err() {
                        break End::Closed;
                    }
                    break End::Reset;
                }
                Ok(()) = strands.changed() => break End::Stranded,
            }
            if up_done && down_done {
                break End::Closed;
            }
        }
    };
    let reset_now = match end {
        End::Closed => false,
        End::Reset => true,
        End::Stranded => {
            shared.stranded.fetch_add(1, Ordering::Relaxed);
            // Nothing is read or written from here on; `reset_all` or the proxy's
            // drop ends the connection.
            generation.changed().await.is_ok()
        }
    };
    if reset_now {
        shared.resets.fetch_add(1, Ordering::Relaxed);
        reset(client);
        reset(server);
    }
}

enum Pumped {
    Eof,
    Reset,
    Failed,
    Stranded,
}

/// Copies one direction, applying the current fault to each chunk.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    shared: &Shared,
    budget: Option<u64>,
    carried: &AtomicU64,
    strand_generation: u64,
) -> Pumped
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut fault = shared.fault.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Pumped::Eof;
            }
            Ok(n) => n,
            Err(_) => return Pumped::Failed,
        };
        loop {
            let now = *fault.borrow_and_update();
            match now {
                Fault::Blackhole => {
                    // Hold the data until the fault changes.
                    if fault.changed().await.is_err() {
                        return Pumped::Failed;
                    }
                }
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Fault::Pass | Fault::Refuse => break,
            }
        }
        // Checked right before writing: once `strand_all` returns, not one more byte of
        // a connection opened before it passes.
        if *shared.strands.borrow() != strand_generation {
            return Pumped::Stranded;
        }
        let mut chunk = &buf[..n];
        if let Some(budget) = budget {
            let before = carried.fetch_add(n as u64, Ordering::Relaxed);
            if before + n as u64 >= budget {
                // Forward up to the budget, then cut.
                let keep = budget.saturating_sub(before).min(n as u64) as usize;
                chunk = &buf[..keep];
                let _ = to.write_all(chunk).await;
                let _ = to.flush().await;
                return Pumped::Reset;
            }
        }
        if to.write_all(chunk).await.is_err() || to.flush().await.is_err() {
            return Pumped::Failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(proxy: &FaultProxy, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut c = TcpStream::connect(proxy.addr()).await?;
        round_trip_on(&mut c, data).await
    }

    /// Polls `done` every 10 ms for at most 5 s.
    async fn wait_until(done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 5 s");
    }

    async fn round_trip_on(c: &mut TcpStream, data: &[u8]) -> std::io::Result<Vec<u8>> {
        c.write_all(data).await?;
        let mut out = vec![0u8; data.len()];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut out))
            .await
            .map_err(|_| std::io::Error::other("timed out"))??;
        Ok(out)
    }

    #[tokio::test]
    async fn passes_refuses_resets_and_blackholes() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(&proxy, b"hello").await.unwrap(), b"hello");

        proxy.set_fault(Fault::Refuse);
        assert!(round_trip(&proxy, b"x").await.is_err());
        assert_eq!(proxy.stats().refused, 1);

        // Every connection reset after 1..=4 bytes: a 64-byte echo cannot complete.
        proxy.set_fault(Fault::Pass);
        proxy.reset_share(1.0, 4, 7);
        assert!(round_trip(&proxy, &[1u8; 64]).await.is_err());
        assert!(proxy.stats().resets >= 1);
        proxy.reset_share(0.0, 0, 7);

        // A black hole holds the data; lifting it delivers it.
        proxy.set_fault(Fault::Blackhole);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"held").await.unwrap();
        let mut out = [0u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut out))
                .await
                .is_err(),
            "nothing passes a black hole"
        );
        proxy.set_fault(Fault::Pass);
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&out, b"held");

        // reset_all cuts open connections.
        let before = proxy.stats().resets;
        proxy.reset_all();
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(r.is_err() || rest.is_empty(), "{r:?}");
        assert_eq!(proxy.stats().resets, before + 1);

        // A stranded connection goes silent for good; a new one passes.
        let mut stranded = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip_on(&mut stranded, b"before").await.unwrap(),
            b"before"
        );
        proxy.strand_all();
        stranded.write_all(b"after").await.unwrap();
        wait_until(|| proxy.stats().stranded >= 1).await;
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), stranded.read(&mut one))
                .await
                .is_err(),
            "a stranded connection neither answers nor closes"
        );
        assert_eq!(round_trip(&proxy, b"fresh").await.unwrap(), b"fresh");
    }
}
