//! The orchestrator side, standalone: [`HttpListener`].

use crate::service::{ConnectionInfo, HttpService, Mount, ServiceConfig};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rxon_core::ServerTlsOptions;
use rxon_core::constants::PROTOCOL_VERSION_HEADER;
use rxon_core::{
    BoxFuture, Handler, Listener, ListenerOptions, PROTOCOL_VERSION, Result, RxonError,
};
use rxon_net::tls::peer_common_name;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Settings of a standalone [`HttpListener`].
#[derive(Clone)]
#[non_exhaustive]
pub struct HttpListenerConfig {
    /// Address to bind (default `127.0.0.1:0`: loopback, a free port).
    pub bind: SocketAddr,
    /// Limits of the routes.
    pub service: ServiceConfig,
    /// Deadline for receiving a request's headers; slower or idle clients are cut
    /// (default 30 s).
    pub header_read_timeout: Duration,
    /// Most connections served at once (default 10,000), upgraded ones (WebSocket
    /// sessions, command channels) included for as long as they last; further ones are
    /// answered 503 with `Retry-After: 1` and closed (a TLS listener just closes them).
    pub max_connections: usize,
    /// Serve HTTPS (and optionally mTLS) instead of plain HTTP.
    pub tls: Option<ServerTlsOptions>,
    /// Other services on the same port (e.g. `rxon-ws`), checked before the worker
    /// routes.
    pub mounts: Vec<Arc<dyn Mount>>,
    /// Serve the RXON HTTP worker routes (default true); false leaves only `mounts`.
    pub worker_routes: bool,
}

impl std::fmt::Debug for HttpListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListenerConfig")
            .field("bind", &self.bind)
            .field("service", &self.service)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("tls", &self.tls)
            .field("mounts", &self.mounts.len())
            .field("worker_routes", &self.worker_routes)
            .finish()
    }
}

/// The common knobs: `max_message_bytes` bounds request bodies, `handshake_timeout` is
/// the header deadline.
impl From<ListenerOptions> for HttpListenerConfig {
    fn from(o: ListenerOptions) -> Self {
        let mut config = HttpListenerConfig {
            bind: o.bind,
            header_read_timeout: o.handshake_timeout,
            max_connections: o.max_connections,
            tls: o.tls,
            ..HttpListenerConfig::default()
        };
        config.service.poll_wait = o.poll_wait;
        config.service.max_body_bytes = o.max_message_bytes;
        config.service.keepalive = o.keepalive;
        config
    }
}

impl Default for HttpListenerConfig {
    fn default() -> Self {
        HttpListenerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            service: ServiceConfig::default(),
            header_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            tls: None,
            mounts: Vec::new(),
            worker_routes: true,
        }
    }
}

/// Serves the RXON worker routes on its own TCP port.
///
/// ```no_run
/// # async fn demo(handler: std::sync::Arc<dyn rxon_core::Handler>) -> rxon_core::Result<()> {
/// use rxon_core::Listener;
/// use rxon_http::HttpListener;
/// use std::time::Duration;
///
/// let listener = HttpListener::bind("0.0.0.0:8080".parse().unwrap());
/// listener.start(handler).await?;
/// println!("workers dial {}", listener.endpoint().unwrap());
/// // ...
/// listener.stop(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
///
/// To serve the routes from an existing server instead, use [`HttpService`].
#[derive(Debug)]
pub struct HttpListener {
    config: HttpListenerConfig,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    local_addr: SocketAddr,
    /// The connection slots (see `accept_loop`), and how many there are.
    slots: Arc<Semaphore>,
    slot_count: u32,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<JoinSet<()>>,
}

impl HttpListener {
    /// A listener for `addr` with default settings.
    pub fn bind(addr: SocketAddr) -> Self {
        Self::with_config(HttpListenerConfig {
            bind: addr,
            ..HttpListenerConfig::default()
        })
    }

    /// A listener with the common [`ListenerOptions`] (the rest as in
    /// [`HttpListenerConfig::default`]).
    pub fn with_options(options: ListenerOptions) -> Self {
        Self::with_config(options.into())
    }

    /// A listener with `config`.
    pub fn with_config(config: HttpListenerConfig) -> Self {
        HttpListener {
            config,
            running: Mutex::new(None),
        }
    }

    /// The bound address, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|r| r.local_addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Listener for HttpListener {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.lock().is_some() {
                return Err(RxonError::config("HTTP listener is already running"));
            }
            let acceptor = match &self.config.tls {
                Some(tls) => Some(TlsAcceptor::from(rxon_net::tls::server_config(tls)?)),
                None => None,
            };
            let tcp = TcpListener::bind(self.config.bind).await.map_err(|e| {
                RxonError::network(format!("cannot bind {}: {e}", self.config.bind)).with_source(e)
            })?;
            let local_addr = tcp
                .local_addr()
                .map_err(|e| RxonError::network(format!("no local address: {e}")))?;
            let (shutdown, stop_rx) = watch::channel(false);
            let service = HttpService::with_config(handler, self.config.service.clone())
                .with_mounts(self.config.mounts.clone(), self.config.worker_routes)
                .with_shutdown(stop_rx.clone());
            // One permit per connection, held for its whole life: by the connection task,
            // and by any session it was upgraded to (see `ConnectionInfo::slot`).
            let slot_count = u32::try_from(self.config.max_connections).unwrap_or(u32::MAX);
            let slots = Arc::new(Semaphore::new(slot_count as usize));
            let accept = tokio::spawn(accept_loop(
                tcp,
                service,
                stop_rx,
                self.config.clone(),
                acceptor,
                slots.clone(),
            ));
            let mut running = self.lock();
            if running.is_some() {
                accept.abort();
                return Err(RxonError::config("HTTP listener is already running"));
            }
            *running = Some(Running {
                local_addr,
                slots,
                slot_count,
                shutdown,
                accept,
            });
            tracing::info!(%local_addr, "RXON HTTP listener started");
            Ok(())
        })
    }

    fn stop(&self, drain: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(running) = self.lock().take() else {
                return Ok(());
            };
            // Stop accepting, end pending polls (204), ask connections to close.
            let _ = running.shutdown.send(true);
            let mut connections = match running.accept.await {
                Ok(set) => set,
                Err(e) => {
                    return Err(RxonError::new(
                        rxon_core::ErrorKind::Internal,
                        format!("HTTP accept loop failed: {e}"),
                    ));
                }
            };
            // Connections end, and so do the sessions upgraded from them (they hold
            // their slot until they have closed): all of them, within `drain`.
            let drained = tokio::time::timeout(drain, async {
                while connections.join_next().await.is_some() {}
                let _all_back = running.slots.acquire_many(running.slot_count).await;
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    remaining = connections.len(),
                    "drain deadline passed; closing the remaining connections"
                );
                connections.shutdown().await;
            }
            tracing::info!(local_addr = %running.local_addr, "RXON HTTP listener stopped");
            Ok(())
        })
    }

    fn endpoint(&self) -> Option<String> {
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.local_addr().map(|a| format!("{scheme}://{a}"))
    }
}

async fn accept_loop(
    tcp: TcpListener,
    service: HttpService,
    mut stop: watch::Receiver<bool>,
    config: HttpListenerConfig,
    acceptor: Option<TlsAcceptor>,
    slots: Arc<Semaphore>,
) -> JoinSet<()> {
    let mut connections = JoinSet::new();
    let mut refusals = JoinSet::new();
    loop {
        // Reap finished connections so the sets stay bounded by live ones.
        while connections.try_join_next().is_some() {}
        while refusals.try_join_next().is_some() {}
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            () = stopped(&mut stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the limit: a clear refusal instead of a wait in the accept queue.
            // Refusals are bounded too; past that, the connection is just closed.
            // A TLS client gets no plain-text answer: its connection is just closed.
            if acceptor.is_none() && refusals.len() < MAX_REFUSALS_IN_FLIGHT {
                refusals.spawn(refuse(stream, config.max_connections));
            }
            rxon_net::metrics::refused("http");
            tracing::debug!(%remote, limit = config.max_connections, "connection refused: too many");
            continue;
        };
        let info = ConnectionInfo::new(Some(remote)).with_slot(slot);
        let service = service.clone();
        let stop = stop.clone();
        let header_timeout = config.header_read_timeout;
        // Plain and TLS connections are separate task types, so a plain connection's
        // task is not sized for a TLS stream it never has.
        let Some(acceptor) = acceptor.clone() else {
            connections.spawn(serve(stream, info, service, stop, header_timeout));
            continue;
        };
        connections.spawn(async move {
            // The handshake gets the same deadline as request headers.
            match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let cn = peer_common_name(tls.get_ref().1);
                    let info = info.with_cert_identity(cn);
                    serve(tls, info, service, stop, header_timeout).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %remote, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
    connections
}

/// Refusals being written at once, at most.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// Answers a plain-HTTP connection over the limit with 503 and `Retry-After: 1`, within
/// a second, then closes it.
async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    use tokio::io::AsyncWriteExt;
    let body = format!(r#"{{"error":"too many connections (at most {limit})"}}"#);
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Retry-After: 1\r\n{PROTOCOL_VERSION_HEADER}: {PROTOCOL_VERSION}\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves one connection until it ends, or closes it gracefully when `stop` turns true.
async fn serve<S>(
    io: S,
    info: ConnectionInfo,
    service: HttpService,
    mut stop: watch::Receiver<bool>,
    header_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote_addr;
    let svc = hyper::service::service_fn(move |mut request| {
        request.extensions_mut().insert(info.clone());
        let service = service.clone();
        async move { Ok::<_, std::convert::Infallible>(service.handle(request).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, ?remote, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
