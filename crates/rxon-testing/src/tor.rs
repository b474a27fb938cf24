//! RXON over real onion services, on the private Tor network `cargo xtask tor-net up`
//! starts on 127.0.0.1 (its description file is named by `RXON_TOR_NET`).
//!
//! [`ThroughTor`] runs a conformance [`Harness`] with every worker connection going
//! worker → the network's client tor (SOCKS5, the onion name in the CONNECT) → the
//! Tor network → the onion service → the case's listener. One onion service per test
//! process is published through the service tor's control port, with
//! [`SLOTS`] virtual ports; each forwards to a small loopback relay that a running
//! case points at its own listener (the listener's port is only known once the case
//! starts it, and publishing an onion per case would take seconds each).

use crate::conformance::{Capabilities, Harness};
use crate::socks::split_url;
use rxon_core::{Listener, RxonError, Transport, TransportConfig};
use rxon_tor::control::{ControlAddr, OnionSpec, TorControl};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Virtual ports of the test process's onion service (cases running at once).
pub const SLOTS: usize = 16;
/// Bound on publishing the onion service.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

/// A running private Tor network, as `cargo xtask tor-net up` describes it.
#[derive(Debug, Clone)]
pub struct TorNet {
    /// The client tor's SOCKS port.
    pub socks: SocketAddr,
    /// The control socket of the tor that hosts onion services.
    pub control: PathBuf,
    /// The directory authority's v3 identity (hex).
    pub authority_v3ident: String,
    /// Every relay as `(RSA identity hex, ed25519 identity base64, OR port)`.
    pub fallbacks: Vec<(String, String, SocketAddr)>,
    /// The onion-service time period of this testing network, in minutes.
    pub hsdir_interval_minutes: i32,
}

impl TorNet {
    /// Reads the file `RXON_TOR_NET` names.
    pub fn from_env() -> Result<TorNet, String> {
        let path = std::env::var("RXON_TOR_NET").map_err(|_| {
            "RXON_TOR_NET is not set: run the Tor tests with `cargo xtask tor-test`, or \
             start a network with `cargo xtask tor-net up` and export the file it prints"
                .to_owned()
        })?;
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .ok_or_else(|| format!("{path}: no {key}="))
        };
        let mut fallbacks = Vec::new();
        for f in get("FALLBACKS")?.split(';').filter(|f| !f.is_empty()) {
            let mut parts = f.split(',');
            let (Some(rsa), Some(ed), Some(or)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("{path}: bad FALLBACKS entry {f:?}"));
            };
            let or = or
                .parse()
                .map_err(|_| format!("{path}: bad OR port in {f:?}"))?;
            fallbacks.push((rsa.to_owned(), ed.to_owned(), or));
        }
        Ok(TorNet {
            socks: get("SOCKS")?
                .parse()
                .map_err(|_| format!("{path}: bad SOCKS"))?,
            control: PathBuf::from(get("CONTROL")?),
            authority_v3ident: get("AUTHORITY_V3IDENT")?.to_owned(),
            fallbacks,
            hsdir_interval_minutes: get("HSDIR_INTERVAL_MINUTES")?
                .parse()
                .map_err(|_| format!("{path}: bad HSDIR_INTERVAL_MINUTES"))?,
        })
    }

    /// Points the process's embedded Tor client (arti) at this network, with state and
    /// cache in a fresh temporary directory. Once per process; later calls do nothing.
    #[cfg(feature = "arti")]
    pub fn configure_arti(&self) -> Result<(), String> {
        use rxon_tor::arti::{ArtiConfig, Fallback, PrivateNetwork};
        static DONE: OnceLock<Result<(), String>> = OnceLock::new();
        DONE.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("rxon-arti-{}", std::process::id()));
            let network = PrivateNetwork {
                authorities: vec![self.authority_v3ident.clone()],
                fallbacks: self
                    .fallbacks
                    .iter()
                    .map(|(rsa, ed, or)| Fallback {
                        rsa_identity: rsa.clone(),
                        ed_identity: ed.clone(),
                        orport: *or,
                    })
                    .collect(),
                trust_any_permissions: true,
                net_params: vec![("hsdir_interval".into(), self.hsdir_interval_minutes)],
            };
            let mut config = ArtiConfig::default().with_dirs(dir.join("state"), dir.join("cache"));
            config.network = Some(network);
            config.bootstrap_timeout = Duration::from_secs(120);
            rxon_tor::arti::configure(config).map_err(|e| e.to_string())
        })
        .clone()
    }

    /// `socks5h://` URL of the client tor.
    pub fn proxy_url(&self) -> String {
        format!("socks5h://{}", self.socks)
    }
}

/// Per virtual port: the harness holding it and the listener it forwards to.
type Slots = Arc<Mutex<Vec<Option<(usize, SocketAddr)>>>>;

/// The test process's onion service and its relays, on a thread of their own (tests
/// each run on their own runtime; this outlives them all).
struct Gateway {
    net: TorNet,
    hostname: String,
    /// Where each slot's relay forwards, and the harness holding it.
    slots: Slots,
}

static GATEWAY: OnceLock<Gateway> = OnceLock::new();

fn gateway() -> &'static Gateway {
    GATEWAY.get_or_init(|| {
        let net = TorNet::from_env().unwrap_or_else(|e| panic!("{e}"));
        let slots = Arc::new(Mutex::new(vec![None; SLOTS]));
        let (tx, rx) = std::sync::mpsc::channel();
        let (control, shared, socks) = (net.control.clone(), slots.clone(), net.socks);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                match publish(&control, &shared).await {
                    Ok((hostname, _tor)) => {
                        let reachable = reachable(socks, &hostname).await.map(|()| hostname);
                        let _ = tx.send(reachable);
                        // Holding the control connection keeps the service up.
                        std::future::pending::<()>().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let hostname = rx
            .recv_timeout(2 * PUBLISH_TIMEOUT + Duration::from_secs(10))
            .unwrap_or_else(|_| Err("the onion service thread did not answer".into()))
            .unwrap_or_else(|e| panic!("publishing the test onion service: {e}"));
        Gateway {
            net,
            hostname,
            slots,
        }
    })
}

/// Waits until the client tor reaches `hostname` (its first port) through its SOCKS
/// port. A descriptor just uploaded is not always found by the first fetch ("host
/// unreachable"): the cases start once a connection has gone through. Bounded by
/// [`PUBLISH_TIMEOUT`], one try a second.
async fn reachable(socks: SocketAddr, hostname: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + PUBLISH_TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(30), socks_connect(socks, hostname, 1)).await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no SOCKS reply within 30 s".into(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!(
        "{hostname} was published but not reachable through {socks} within {PUBLISH_TIMEOUT:?}: {last}"
    ))
}

/// One SOCKS5 CONNECT (no authentication) to `host:port`; `Ok` once the proxy says
/// the connection is made.
async fn socks_connect(socks: SocketAddr, host: &str, port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = |e: std::io::Error| e.to_string();
    let mut s = tokio::net::TcpStream::connect(socks).await.map_err(io)?;
    s.write_all(&[5, 1, 0]).await.map_err(io)?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.map_err(io)?;
    if choice != [5, 0] {
        return Err(format!("the SOCKS port chose method {choice:?}"));
    }
    let name = u8::try_from(host.len()).map_err(|_| "host name too long".to_owned())?;
    let mut request = vec![5, 1, 0, 3, name];
    request.extend_from_slice(host.as_bytes());
    request.extend_from_slice(&port.to_be_bytes());
    s.write_all(&request).await.map_err(io)?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.map_err(io)?;
    match reply {
        [5, 0] => Ok(()),
        [5, code] => Err(format!("SOCKS reply {code} (4: host unreachable)")),
        other => Err(format!("not a SOCKS5 reply: {other:?}")),
    }
}

/// Binds the relays, publishes the service, starts forwarding.
async fn publish(control: &std::path::Path, slots: &Slots) -> Result<(String, TorControl), String> {
    let mut ports = Vec::new();
    for i in 0..SLOTS {
        let relay = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = relay.local_addr().map_err(|e| e.to_string())?;
        ports.push((u16::try_from(i + 1).unwrap_or(1), addr));
        let slots = slots.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = relay.accept().await {
                let target = slots.lock().unwrap_or_else(|p| p.into_inner())[i].map(|s| s.1);
                tokio::spawn(async move {
                    let Some(target) = target else { return };
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
    }
    let mut tor = TorControl::connect(&ControlAddr::Unix(control.to_owned()))
        .await
        .map_err(|e| e.to_string())?;
    tor.authenticate(None).await.map_err(|e| e.to_string())?;
    let mut spec = OnionSpec::forward(1, ports[0].1);
    spec.ports = ports;
    let onion = tor.add_onion(&spec).await.map_err(|e| e.to_string())?;
    tor.wait_published(&onion, PUBLISH_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok((onion.hostname(), tor))
}

/// A conformance [`Harness`] over a real onion service (see the module docs). Its
/// cases need `RXON_TOR_NET`; stamp them with
/// `conformance_tests!(ThroughTor::new(h), needs: tor)`.
pub struct ThroughTor<H> {
    inner: H,
    id: usize,
    /// Dial with the embedded client (`proxy = "arti"`) instead of the SOCKS port.
    arti: bool,
}

impl<H> ThroughTor<H> {
    /// Wraps `inner`: workers dial through the client tor's SOCKS port.
    pub fn new(inner: H) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        ThroughTor {
            inner,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            arti: false,
        }
    }

    /// Wraps `inner`: workers dial with the embedded Tor client (arti), pointed at the
    /// private network (needs the `arti` feature here and `rxon-net`'s `tor`).
    #[cfg(feature = "arti")]
    pub fn arti(inner: H) -> Self {
        let mut h = Self::new(inner);
        h.arti = true;
        h
    }

    /// The virtual port forwarding to `target` for this harness (claimed if needed).
    fn slot_for(&self, target: SocketAddr) -> rxon_core::Result<u16> {
        let g = gateway();
        let mut slots = g.slots.lock().unwrap_or_else(|p| p.into_inner());
        let i = match slots.iter().position(|s| *s == Some((self.id, target))) {
            Some(i) => i,
            None => {
                let i = slots.iter().position(Option::is_none).ok_or_else(|| {
                    RxonError::unsupported(format!("more than {SLOTS} listeners over Tor at once"))
                })?;
                slots[i] = Some((self.id, target));
                i
            }
        };
        Ok(u16::try_from(i + 1).unwrap_or(1))
    }
}

impl<H> std::fmt::Debug for ThroughTor<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThroughTor").field("id", &self.id).finish()
    }
}

impl<H: Harness> Harness for ThroughTor<H> {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        self.inner.listener(poll_wait)
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        let g = gateway();
        let (scheme, host, port, path) = split_url(&config.url).ok_or_else(|| {
            RxonError::config(format!("{}: no host:port to reach over Tor", config.url))
        })?;
        let ip = host
            .parse()
            .map_err(|_| RxonError::config(format!("{host} is not an address")))?;
        let virt = self.slot_for(SocketAddr::new(ip, port))?;
        let mut over = config.clone();
        over.url = format!("{scheme}://{}:{virt}{path}", g.hostname);
        over.options.proxy = Some(if self.arti {
            #[cfg(feature = "arti")]
            g.net.configure_arti().map_err(RxonError::config)?;
            rxon_core::Proxy::Arti
        } else {
            g.net.proxy_url().parse()?
        });
        // Latency-tolerant: a first stream to an onion builds a rendezvous circuit.
        over.options.connect_timeout = over.options.connect_timeout.max(Duration::from_secs(60));
        if over.options.tls.server_name.is_none() {
            over.options.tls.server_name = Some(host);
        }
        self.inner.transport(&over)
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

impl<H> Drop for ThroughTor<H> {
    fn drop(&mut self) {
        let Some(g) = GATEWAY.get() else {
            return;
        };
        let mut slots = g.slots.lock().unwrap_or_else(|p| p.into_inner());
        for s in slots.iter_mut() {
            if s.is_some_and(|(id, _)| id == self.id) {
                *s = None;
            }
        }
    }
}
