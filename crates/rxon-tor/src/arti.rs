//! The embedded Tor client (`arti-client`), feature `arti`: a worker reaches
//! `http://<56 chars>.onion` (or any host, through an exit) with no tor daemon
//! installed. One client per process, bootstrapped on first use (once, however many
//! connections ask at the same time), bounded by [`ArtiConfig::bootstrap_timeout`],
//! its progress reported through `tracing`.
//!
//! ```no_run
//! # async fn demo() -> rxon_core::Result<()> {
//! use rxon_tor::arti::{self, ArtiConfig};
//! // Optional, before the first connection: where arti keeps its state and cache.
//! arti::configure(ArtiConfig::default().with_dirs("/var/lib/rxon/arti", "/var/cache/rxon/arti"))?;
//! let stream = arti::connect("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion", 80).await?;
//! # drop(stream); Ok(()) }
//! ```
//!
//! The RXON transports use it through `rxon-net`'s dialer with its `tor` feature:
//! `proxy = "arti"`, or any `.onion` URL with no proxy configured.

use arti_client::config::{CfgPath, TorClientConfigBuilder, dir};
use arti_client::{DataStream, TorClient};
use rxon_core::{Result, RxonError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tor_rtcompat::PreferredRuntime;

/// Default bound on bootstrapping (the real network: directory documents, guards).
pub const DEFAULT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(180);

/// How the embedded client runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtiConfig {
    /// Persistent state (guards, keys); `None`: arti's default (`~/.local/share/arti`).
    pub state_dir: Option<PathBuf>,
    /// Directory cache; `None`: arti's default (`~/.cache/arti`).
    pub cache_dir: Option<PathBuf>,
    /// Longest wait for the client to be ready (default 180 s).
    pub bootstrap_timeout: Duration,
    /// A Tor network other than the public one (a test network), or `None`.
    pub network: Option<PrivateNetwork>,
}

impl Default for ArtiConfig {
    fn default() -> Self {
        ArtiConfig {
            state_dir: None,
            cache_dir: None,
            bootstrap_timeout: DEFAULT_BOOTSTRAP_TIMEOUT,
            network: None,
        }
    }
}

impl ArtiConfig {
    /// Sets the state and cache directories.
    pub fn with_dirs(mut self, state: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(state.into());
        self.cache_dir = Some(cache.into());
        self
    }
}

/// A private Tor network: its directory authorities and the relays to fetch the first
/// directory documents from. All on one host: relays are not grouped by subnet and
/// local addresses are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateNetwork {
    /// v3 identities (hex) of the directory authorities.
    pub authorities: Vec<String>,
    /// Fallback directory caches.
    pub fallbacks: Vec<Fallback>,
    /// Directories of the network trusted whatever their permissions (a test's
    /// temporary directories).
    pub trust_any_permissions: bool,
    /// Consensus parameters to override, e.g. `hsdir_interval`: a C tor with
    /// `TestingTorNetwork 1` makes the onion-service time period one shared-random run
    /// (24 votes: 8 minutes with 20 s votes) whatever the consensus says, which arti,
    /// having no testing mode, must be told to find the same directories.
    pub net_params: Vec<(String, i32)>,
}

/// A fallback directory cache of a [`PrivateNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// RSA identity fingerprint (40 hex digits).
    pub rsa_identity: String,
    /// ed25519 identity (unpadded base64).
    pub ed_identity: String,
    /// OR port.
    pub orport: SocketAddr,
}

type Client = Arc<TorClient<PreferredRuntime>>;

static CONFIG: Mutex<Option<ArtiConfig>> = Mutex::new(None);
static CLIENT: tokio::sync::OnceCell<Client> = tokio::sync::OnceCell::const_new();

/// Sets the configuration of the process's client; an error once it has started.
pub fn configure(config: ArtiConfig) -> Result<()> {
    if CLIENT.initialized() {
        return Err(RxonError::config(
            "the embedded Tor client has already started: configure it before the first connection",
        ));
    }
    *CONFIG.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
    Ok(())
}

/// The process's client, bootstrapped (the first caller bootstraps it; a failed
/// bootstrap is retried by the next caller).
pub async fn client() -> Result<Client> {
    CLIENT.get_or_try_init(bootstrap).await.cloned()
}

/// A stream to `host:port` over Tor; `host` is passed to Tor as a name (an onion
/// address, or a name the exit resolves), never resolved locally.
pub async fn connect(host: &str, port: u16) -> Result<DataStream> {
    let client = client().await?;
    client.connect((host, port)).await.map_err(|e| {
        RxonError::network(format!("connecting to {host}:{port} over Tor (arti): {e}"))
            .with_source(e)
    })
}

fn tor_config(config: &ArtiConfig) -> Result<arti_client::TorClientConfig> {
    let mut b = TorClientConfigBuilder::default();
    if let Some(state) = &config.state_dir {
        b.storage().state_dir(CfgPath::new_literal(state));
    }
    if let Some(cache) = &config.cache_dir {
        b.storage().cache_dir(CfgPath::new_literal(cache));
    }
    if let Some(net) = &config.network {
        let mut authorities = dir::AuthorityContacts::builder();
        for v3 in &net.authorities {
            let id = tor_llcrypto::pk::rsa::RsaIdentity::from_hex(v3).ok_or_else(|| {
                RxonError::config(format!(
                    "arti: authority v3 identity {v3:?} is not 40 hex digits"
                ))
            })?;
            authorities.v3idents().push(id);
        }
        *b.tor_network().authorities() = authorities;
        let mut fallbacks = Vec::new();
        for f in &net.fallbacks {
            let mut fb = dir::FallbackDir::builder();
            let rsa = tor_llcrypto::pk::rsa::RsaIdentity::from_hex(&f.rsa_identity)
                .ok_or_else(|| RxonError::config("arti: a fallback's RSA identity is not hex"))?;
            let ed = tor_llcrypto::pk::ed25519::Ed25519Identity::from_base64(&f.ed_identity)
                .ok_or_else(|| {
                    RxonError::config("arti: a fallback's ed25519 identity is not base64")
                })?;
            fb.rsa_identity(rsa).ed_identity(ed);
            fb.orports().push(f.orport);
            fallbacks.push(fb);
        }
        b.tor_network().set_fallback_caches(fallbacks);
        // Every relay on one address: do not treat them as one family.
        b.path_rules()
            .ipv4_subnet_family_prefix(33)
            .ipv6_subnet_family_prefix(129);
        b.address_filter().allow_local_addrs(true);
        for (name, value) in &net.net_params {
            b.override_net_params().insert(name.clone(), *value);
        }
        if net.trust_any_permissions {
            b.storage().permissions().dangerously_trust_everyone();
        }
    }
    b.build()
        .map_err(|e| RxonError::config(format!("arti configuration: {e}")))
}

/// The client's runtime, created once and never dropped: the client outlives the
/// runtime of whichever task first asked for it (a test's, say), and its background
/// work must go on after that. Created on a thread of its own, since creating it
/// blocks.
async fn runtime() -> Result<PreferredRuntime> {
    static RUNTIME: tokio::sync::OnceCell<PreferredRuntime> = tokio::sync::OnceCell::const_new();
    RUNTIME
        .get_or_try_init(|| async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("rxon-arti-init".into())
                .spawn(move || {
                    let _ = tx.send(PreferredRuntime::create());
                })
                .map_err(|e| RxonError::io("arti: starting its runtime", e))?;
            rx.await
                .map_err(|_| RxonError::network("arti: the runtime thread ended"))?
                .map_err(|e| RxonError::io("arti: starting its runtime", e))
        })
        .await
        .cloned()
}

async fn bootstrap() -> Result<Client> {
    let config = CONFIG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    // arti's TLS is rustls, whose process-wide provider must be chosen once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tor = tor_config(&config)?;
    let client = TorClient::with_runtime(runtime().await?)
        .config(tor)
        .create_unbootstrapped()
        .map_err(|e| RxonError::config(format!("arti: {e}")).with_source(e))?;
    let mut events = client.bootstrap_events();
    let progress = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut last = -1i32;
        while let Some(status) = events.next().await {
            let percent = (status.as_frac() * 100.0) as i32;
            if percent != last {
                last = percent;
                tracing::info!(percent, %status, "embedded Tor bootstrapping");
            }
            if let Some(blocked) = status.blocked() {
                tracing::warn!(%blocked, "embedded Tor bootstrap blocked");
            }
            if status.ready_for_traffic() {
                break;
            }
        }
    });
    let limit = config.bootstrap_timeout;
    let outcome = tokio::time::timeout(limit, client.bootstrap()).await;
    progress.abort();
    match outcome {
        Ok(Ok(())) => {
            tracing::info!("embedded Tor ready");
            Ok(client)
        }
        Ok(Err(e)) => Err(RxonError::network(format!("arti bootstrap: {e}")).with_source(e)),
        Err(_) => Err(RxonError::timeout(format!(
            "the embedded Tor client did not bootstrap within {limit:?}"
        ))),
    }
}

/// An onion service of the embedded client that forwards each stream to a loopback
/// listener, as a tor daemon's `HiddenServicePort` does: serve the HTTP, WebSocket or
/// gRPC listener on 127.0.0.1 and publish it with no tor daemon. Its key lives in the
/// client's state directory under `nickname`, so the address stays the same across
/// restarts. Dropping it stops forwarding and takes the service down.
pub struct ArtiOnion {
    hostname: String,
    service: Arc<tor_hsservice::RunningOnionService>,
    forward: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ArtiOnion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtiOnion")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl ArtiOnion {
    /// Launches the service `nickname` forwarding `(virtual port, loopback target)`
    /// pairs, and waits (at most `timeout`) until it is reachable: introduction points
    /// established and the descriptor published. Streams to other ports are refused.
    pub async fn launch(
        nickname: &str,
        ports: &[(u16, SocketAddr)],
        timeout: Duration,
    ) -> Result<ArtiOnion> {
        use futures_util::StreamExt;
        if ports.is_empty() {
            return Err(RxonError::config(
                "an onion service needs at least one port",
            ));
        }
        let client = client().await?;
        let nick: tor_hsservice::HsNickname = nickname
            .parse()
            .map_err(|e| RxonError::config(format!("onion service nickname {nickname:?}: {e}")))?;
        let config = arti_client::config::onion_service::OnionServiceConfigBuilder::default()
            .nickname(nick)
            .build()
            .map_err(|e| RxonError::config(format!("onion service: {e}")))?;
        let (service, requests) = client
            .launch_onion_service(config)
            .map_err(|e| RxonError::config(format!("launching the onion service: {e}")))?
            .ok_or_else(|| {
                RxonError::config("the onion service is disabled in arti's configuration")
            })?;
        let hostname = {
            use safelog::DisplayRedacted;
            service
                .onion_address()
                .ok_or_else(|| RxonError::protocol("arti gave the onion service no address"))?
                .display_unredacted()
                .to_string()
        };
        let ports = ports.to_vec();
        let forward = tokio::spawn(async move {
            let mut streams = std::pin::pin!(tor_hsservice::handle_rend_requests(requests));
            while let Some(request) = streams.next().await {
                let port = match request.request() {
                    tor_proto::stream::IncomingStreamRequest::Begin(begin) => begin.port(),
                    _ => 0,
                };
                let Some(&(_, target)) = ports.iter().find(|(v, _)| *v == port) else {
                    let _ = request
                        .reject(tor_cell::relaycell::msg::End::new_misc())
                        .await;
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut local) = tokio::net::TcpStream::connect(target).await else {
                        let end = tor_cell::relaycell::msg::End::new_misc();
                        let _ = request.reject(end).await;
                        return;
                    };
                    let connected = tor_cell::relaycell::msg::Connected::new_empty();
                    if let Ok(stream) = request.accept(connected).await {
                        let mut stream = Box::pin(stream);
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut local).await;
                    }
                });
            }
        });
        let onion = ArtiOnion {
            hostname,
            service,
            forward,
        };
        onion.wait_reachable(timeout).await?;
        tracing::info!(onion = %onion.hostname, "onion service reachable");
        Ok(onion)
    }

    /// `<56 chars>.onion`.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    async fn wait_reachable(&self, timeout: Duration) -> Result<()> {
        use futures_util::StreamExt;
        let mut events = self.service.status_events();
        let wait = async {
            let now = self.service.status();
            if published(now.state(), now.current_problem().is_some()) {
                return Ok(());
            }
            while let Some(status) = events.next().await {
                let state = status.state();
                tracing::debug!(?state, problem = ?status.current_problem(), "onion service");
                if published(state, status.current_problem().is_some()) {
                    return Ok(());
                }
                if matches!(state, tor_hsservice::status::State::Broken) {
                    return Err(RxonError::network(format!(
                        "the onion service {} broke: {:?}",
                        self.hostname,
                        status.current_problem()
                    )));
                }
            }
            Err(RxonError::closed("the onion service stopped"))
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            RxonError::timeout(format!(
                "the onion service {} was not reachable within {timeout:?}",
                self.hostname
            ))
        })?
    }
}

/// Whether a service in `state` counts as published: `Running`, `DegradedReachable`,
/// or `DegradedUnreachable` with no problem reported. arti stays in the last until it
/// has uploaded descriptors for both the current and the next time period, which on
/// a small network can wait out its upload rate limit for minutes while clients of the
/// current period already reach the service; the same state also comes just before
/// the first upload, so a caller that must know dials the service (a client of a
/// testing network asks again after 5 s, of the real one after 15 minutes).
fn published(state: tor_hsservice::status::State, problem: bool) -> bool {
    use tor_hsservice::status::State;
    match state {
        State::Running | State::DegradedReachable => true,
        State::DegradedUnreachable => !problem,
        _ => false,
    }
}

impl Drop for ArtiOnion {
    fn drop(&mut self) {
        self.forward.abort();
    }
}
