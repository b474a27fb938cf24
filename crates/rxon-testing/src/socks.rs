//! A SOCKS5 server on loopback for tests of proxied dialing: it records every CONNECT
//! (the host *name* it carried, or an address), checks username/password when asked,
//! and forwards to targets it knows by name, never through DNS, so a client that
//! resolved a name locally is caught. It can also refuse, stall or hang up.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use rxon_testing::socks::{SocksServer, SocksTarget};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let proxy = SocksServer::builder().route("orchestrator.invalid", echo.local_addr().unwrap())
//!     .start().await.unwrap();
//! let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
//! s.write_all(&[5, 1, 0]).await.unwrap();                       // greeting: no auth
//! let mut reply = [0u8; 2];
//! s.read_exact(&mut reply).await.unwrap();
//! assert_eq!(reply, [5, 0]);
//! let name = b"orchestrator.invalid";
//! let mut req = vec![5, 1, 0, 3, name.len() as u8];
//! req.extend_from_slice(name);
//! req.extend_from_slice(&80u16.to_be_bytes());
//! s.write_all(&req).await.unwrap();
//! let mut reply = [0u8; 10];
//! s.read_exact(&mut reply).await.unwrap();
//! assert_eq!(reply[1], 0);                                       // success
//! assert_eq!(proxy.requests()[0].target, SocksTarget::Name("orchestrator.invalid".into()));
//! # });
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for a client's next handshake bytes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a CONNECT asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksTarget {
    /// A host name (address type 3): the client left resolution to the proxy.
    Name(String),
    /// An IPv4 or IPv6 address (address types 1 and 4).
    Ip(IpAddr),
}

/// One CONNECT the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// Where to.
    pub target: SocksTarget,
    /// The port asked for.
    pub port: u16,
    /// The username the client authenticated with, if any.
    pub username: Option<String>,
}

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Forward CONNECTs to known names and loopback addresses (the default).
    Forward,
    /// Answer every CONNECT with this SOCKS5 reply code (e.g. 5, connection refused).
    Refuse(u8),
    /// Accept TCP connections and never answer.
    Stall,
    /// Close each connection right after reading the client's greeting.
    CloseAfterGreeting,
}

/// Settings of a [`SocksServer`].
#[derive(Debug, Clone)]
pub struct SocksServerBuilder {
    routes: HashMap<String, SocketAddr>,
    auth: Option<(String, String)>,
    behaviour: Behaviour,
}

/// A running SOCKS5 server on 127.0.0.1; it stops when dropped.
#[derive(Debug)]
pub struct SocksServer {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Log {
    accepted: usize,
    requests: Vec<SocksRequest>,
    auth_failures: usize,
}

impl SocksServer {
    /// A builder: forwarding, no authentication, no routes.
    pub fn builder() -> SocksServerBuilder {
        SocksServerBuilder {
            routes: HashMap::new(),
            auth: None,
            behaviour: Behaviour::Forward,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy as a configuration value, `socks5h://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("socks5h://{}", self.addr)
    }

    /// Every CONNECT received so far.
    pub fn requests(&self) -> Vec<SocksRequest> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .clone()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).accepted
    }

    /// Username/password pairs refused so far.
    pub fn auth_failures(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .auth_failures
    }
}

impl Drop for SocksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SocksServerBuilder {
    /// Forwards CONNECTs for the host name `name` to `to` (names are never looked up).
    pub fn route(mut self, name: impl Into<String>, to: SocketAddr) -> Self {
        self.routes.insert(name.into().to_ascii_lowercase(), to);
        self
    }

    /// Requires username/password authentication with this pair.
    pub fn auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((username.into(), password.into()));
        self
    }

    /// Sets how the server answers.
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Binds 127.0.0.1 on a free port and serves until the server is dropped.
    pub async fn start(self) -> std::io::Result<SocksServer> {
        self.spawn()
    }

    /// [`start`](Self::start) from synchronous code inside a tokio runtime.
    pub fn spawn(self) -> std::io::Result<SocksServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let settings = Arc::new(self);
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                let mut sessions = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    log.lock().unwrap_or_else(|p| p.into_inner()).accepted += 1;
                    let (settings, log) = (settings.clone(), log.clone());
                    sessions.spawn(async move {
                        let _ = serve(stream, &settings, &log).await;
                    });
                    while sessions.try_join_next().is_some() {}
                }
            }
        });
        Ok(SocksServer { addr, log, task })
    }
}

async fn read<const N: usize>(s: &mut TcpStream) -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, s.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(buf)
}

async fn read_vec(s: &mut TcpStream, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, s.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(buf)
}

async fn reply(s: &mut TcpStream, code: u8) -> std::io::Result<()> {
    s.write_all(&[5, code, 0, 1, 127, 0, 0, 1, 0, 0]).await
}

async fn serve(
    mut s: TcpStream,
    cfg: &SocksServerBuilder,
    log: &Mutex<Log>,
) -> std::io::Result<()> {
    if cfg.behaviour == Behaviour::Stall {
        // Hold the connection open without a byte until the client gives up.
        let mut sink = [0u8; 512];
        while s.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let [version, n] = read::<2>(&mut s).await?;
    let methods = read_vec(&mut s, usize::from(n)).await?;
    if version != 5 || cfg.behaviour == Behaviour::CloseAfterGreeting {
        return Ok(());
    }
    let mut username = None;
    match &cfg.auth {
        None if methods.contains(&0) => s.write_all(&[5, 0]).await?,
        Some((user, password)) if methods.contains(&2) => {
            s.write_all(&[5, 2]).await?;
            let [_, ulen] = read::<2>(&mut s).await?;
            let u = read_vec(&mut s, usize::from(ulen)).await?;
            let [plen] = read::<1>(&mut s).await?;
            let p = read_vec(&mut s, usize::from(plen)).await?;
            if u != user.as_bytes() || p != password.as_bytes() {
                log.lock().unwrap_or_else(|p| p.into_inner()).auth_failures += 1;
                s.write_all(&[1, 1]).await?;
                return Ok(());
            }
            s.write_all(&[1, 0]).await?;
            username = Some(user.clone());
        }
        _ => {
            s.write_all(&[5, 0xFF]).await?;
            return Ok(());
        }
    }
    let [_, command, _, atyp] = read::<4>(&mut s).await?;
    let target = match atyp {
        1 => SocksTarget::Ip(IpAddr::from(read::<4>(&mut s).await?)),
        4 => SocksTarget::Ip(IpAddr::from(read::<16>(&mut s).await?)),
        3 => {
            let [len] = read::<1>(&mut s).await?;
            let name = read_vec(&mut s, usize::from(len)).await?;
            SocksTarget::Name(String::from_utf8_lossy(&name).into_owned())
        }
        _ => return reply(&mut s, 8).await,
    };
    let port = u16::from_be_bytes(read::<2>(&mut s).await?);
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .push(SocksRequest {
            target: target.clone(),
            port,
            username,
        });
    if command != 1 {
        return reply(&mut s, 7).await;
    }
    if let Behaviour::Refuse(code) = cfg.behaviour {
        return reply(&mut s, code).await;
    }
    let to = match &target {
        SocksTarget::Name(name) => match cfg.routes.get(&name.to_ascii_lowercase()) {
            Some(addr) => *addr,
            None => return reply(&mut s, 4).await,
        },
        // Loopback only: a test proxy never reaches beyond this machine.
        SocksTarget::Ip(ip) if ip.is_loopback() => SocketAddr::new(*ip, port),
        SocksTarget::Ip(_) => return reply(&mut s, 2).await,
    };
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        return reply(&mut s, 5).await;
    };
    reply(&mut s, 0).await?;
    tokio::io::copy_bidirectional(&mut s, &mut upstream).await?;
    Ok(())
}

/// A conformance [`Harness`](crate::conformance::Harness) that runs another one with every
/// worker connection through a [`SocksServer`] of its own: the worker's URL names the
/// orchestrator `orchestrator.invalid` (a name no resolver knows, RFC 2606), which only
/// the proxy can route, so a client resolving locally fails. When dropped (after its
/// case passed) it asserts that every CONNECT carried that name.
#[derive(Debug)]
pub struct ThroughSocks<H> {
    inner: H,
    servers: Mutex<Vec<SocksServer>>,
}

/// The host name [`ThroughSocks`] gives the orchestrator.
pub const PROXIED_HOST: &str = "orchestrator.invalid";

impl<H> ThroughSocks<H> {
    /// Wraps `inner`.
    pub fn new(inner: H) -> Self {
        ThroughSocks {
            inner,
            servers: Mutex::new(Vec::new()),
        }
    }
}

/// `url` with its `host:port` replaced by `name:port`; returns the new URL and the
/// original `host:port` (`None` when the URL has no authority).
pub fn rename_host(url: &str, name: &str) -> Option<(String, String, u16)> {
    let (scheme, host, port, path) = split_url(url)?;
    Some((format!("{scheme}://{name}:{port}{path}"), host, port))
}

/// `scheme://host:port/path` as its scheme, host (without brackets), port and path.
pub fn split_url(url: &str) -> Option<(String, String, u16, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_matches(['[', ']']).to_owned();
    Some((scheme.to_owned(), host, port, path.to_owned()))
}

impl<H: crate::conformance::Harness> crate::conformance::Harness for ThroughSocks<H> {
    fn listener(&self, poll_wait: Duration) -> Box<dyn rxon_core::Listener> {
        self.inner.listener(poll_wait)
    }

    fn transport(
        &self,
        config: &rxon_core::TransportConfig,
    ) -> rxon_core::Result<Box<dyn rxon_core::Transport>> {
        let (url, host, port) = rename_host(&config.url, PROXIED_HOST).ok_or_else(|| {
            rxon_core::RxonError::config(format!("{}: no host:port to proxy", config.url))
        })?;
        let to: IpAddr = host
            .parse()
            .map_err(|_| rxon_core::RxonError::config(format!("{host} is not an address")))?;
        let server = SocksServer::builder()
            .route(PROXIED_HOST, SocketAddr::new(to, port))
            .spawn()
            .map_err(|e| rxon_core::RxonError::network(e.to_string()))?;
        let mut proxied = config.clone();
        proxied.url = url;
        proxied.options.proxy = Some(server.url().parse()?);
        if proxied.options.tls.server_name.is_none() {
            proxied.options.tls.server_name = Some(host);
        }
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(server);
        self.inner.transport(&proxied)
    }

    fn capabilities(&self) -> crate::conformance::Capabilities {
        self.inner.capabilities()
    }
}

impl<H> Drop for ThroughSocks<H> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for server in self
            .servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for r in server.requests() {
                assert_eq!(
                    r.target,
                    SocksTarget::Name(PROXIED_HOST.to_owned()),
                    "a CONNECT that did not carry the orchestrator's name"
                );
            }
        }
    }
}
