//! [`HttpService`]: the RXON worker routes as a service, for the standalone
//! [`HttpListener`](crate::HttpListener) or for an existing hyper / tower / axum server.

use crate::routes::{WORKER_API_PREFIX, WS_ENDPOINT};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use rxon_core::constants::{AUTH_HEADER_WORKER, PROTOCOL_VERSION_HEADER, WORKER_ID_HEADER};
use rxon_core::protocol::Protocol;
use rxon_core::validate::is_valid_identifier;
use rxon_core::{
    Handler, HandlerError, HandlerResult, Heartbeat, RequestContext, TaskResult,
    WorkerEventPayload, WorkerRegistration,
};
use rxon_net::status::{error_body, handler_error_status};
use rxon_wire::Wire;
use rxon_wire::envelope::{EVENT_UNSIGNED, Verifier};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// Transport name put in every [`RequestContext`].
pub const TRANSPORT_NAME: &str = "http";

/// Limits and timings of the worker routes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Longest a poll waits for a task before answering 204 (default 30 s). A worker's
    /// `?timeout=<seconds>` query (sent by [`HttpTransport`](crate::HttpTransport))
    /// shortens it; the reference worker sends none.
    pub poll_wait: Duration,
    /// Largest request body accepted; larger ones get 413 (default 4 MiB).
    pub max_body_bytes: usize,
    /// Deadline for receiving a whole request body; slower clients get 408 (default 30 s).
    pub body_read_timeout: Duration,
    /// Command channels: a ping this often (default 30 s). A worker that answers nothing
    /// between two pings, or stops reading for this long, is disconnected, so a
    /// connection dropped silently by a NAT or firewall does not stay open forever.
    /// Zero turns the pings off.
    pub keepalive: Duration,
    /// Nonces of 1.0b17 envelopes remembered against replays (default
    /// [`DEFAULT_REPLAY_CAPACITY`](rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY), about
    /// 16 MiB); size it above the signed messages expected within 65 s.
    pub replay_cache_capacity: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            poll_wait: Duration::from_secs(30),
            max_body_bytes: 4 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(30),
            replay_cache_capacity: rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// What the connection knows about the peer. The standalone listener inserts it into
/// each request's extensions; a host server may insert its own.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// Subject common name of the client certificate (mTLS).
    pub cert_identity: Option<String>,
    /// The listener's connection slot, shared by everything serving this connection.
    slot: ConnectionSlot,
}

/// Equality looks at what is known about the peer, not at the connection slot.
impl PartialEq for ConnectionInfo {
    fn eq(&self, other: &Self) -> bool {
        self.remote_addr == other.remote_addr && self.cert_identity == other.cert_identity
    }
}

impl Eq for ConnectionInfo {}

impl ConnectionInfo {
    /// Info for a peer at `remote_addr`.
    pub fn new(remote_addr: Option<SocketAddr>) -> Self {
        ConnectionInfo {
            remote_addr,
            cert_identity: None,
            slot: ConnectionSlot::default(),
        }
    }

    /// Sets the certificate identity.
    pub fn with_cert_identity(mut self, cn: Option<String>) -> Self {
        self.cert_identity = cn;
        self
    }

    /// Counts the connection against a listener's limit until every holder of the
    /// slot is gone.
    pub(crate) fn with_slot(mut self, permit: OwnedSemaphorePermit) -> Self {
        let open = rxon_net::metrics::Open::new("http");
        self.slot = ConnectionSlot(Some(Arc::new((permit, open))));
        self
    }

    /// The connection's slot in the listener's `max_connections`. A service that takes
    /// the connection over (a WebSocket upgrade) keeps it for as long as it serves the
    /// upgraded connection, so upgraded sessions count against the limit too.
    pub fn slot(&self) -> ConnectionSlot {
        self.slot.clone()
    }
}

/// Holds a connection's place in an [`HttpListener`](crate::HttpListener)'s
/// `max_connections` while it (or a clone) lives; see [`ConnectionInfo::slot`]. Empty
/// for requests that did not come through a listener with a limit.
#[derive(Debug, Clone, Default)]
pub struct ConnectionSlot(Option<Arc<(OwnedSemaphorePermit, rxon_net::metrics::Open)>>);

impl ConnectionSlot {
    /// Whether this slot counts against a listener's limit.
    pub fn is_counted(&self) -> bool {
        self.0.is_some()
    }
}

/// The RXON worker routes (`/_worker/...`) over a [`Handler`].
///
/// Cheap to clone. Implements hyper's `Service` and tower's `Service` for any request
/// body, so it can be served by [`HttpListener`](crate::HttpListener) or mounted in an
/// existing server (e.g. as an axum fallback service, or for a `/_worker` prefix).
///
/// In a server of your own, set `TCP_NODELAY` on each accepted connection
/// (`TcpStream::set_nodelay(true)`), as [`HttpListener`](crate::HttpListener) does:
/// the command channel and mounted WebSocket sessions write small frames one after
/// another, and Nagle's algorithm holds each back until the last one is acknowledged
/// (a delayed acknowledgement: tens of milliseconds per task).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use http_body_util::{BodyExt, Empty};
/// use rxon_http::HttpService;
/// # use rxon_core::*; use std::time::Duration;
/// # struct H;
/// # impl Handler for H {
/// #   fn register(&self, _: RequestContext, _: WorkerRegistration) -> BoxFuture<'_, HandlerResult<RegisterReply>> { Box::pin(async { Ok(RegisterReply::default()) }) }
/// #   fn poll(&self, _: RequestContext, _: Duration) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> { Box::pin(async { Ok(None) }) }
/// #   fn result(&self, _: RequestContext, _: TaskResult) -> BoxFuture<'_, HandlerResult<ResultOutcome>> { Box::pin(async { Ok(ResultOutcome::Accepted) }) }
/// #   fn heartbeat(&self, _: RequestContext, _: Option<Heartbeat>) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> { Box::pin(async { Ok(HeartbeatReply::default()) }) }
/// # }
/// # let my_handler = std::sync::Arc::new(H);
/// let service = HttpService::new(my_handler);
/// let request = http::Request::get("/_worker/workers/w-1/tasks/next")
///     .header("X-Worker-Token", "secret")
///     .body(Empty::<bytes::Bytes>::new())
///     .unwrap();
/// let response = service.handle(request).await;
/// assert_eq!(response.status(), 204);
/// assert_eq!(response.headers()["X-RXON-Version"], "1.0b3");
/// # });
/// ```
#[derive(Clone)]
pub struct HttpService {
    handler: Arc<dyn Handler>,
    config: Arc<ServiceConfig>,
    shutdown: Option<watch::Receiver<bool>>,
    mounts: Arc<[Arc<dyn Mount>]>,
    worker_routes: bool,
    /// The replay cache of 1.0b17 envelopes, shared by every connection.
    verifier: Arc<Verifier>,
}

/// Another service answering some paths on the same port (e.g. `rxon-ws`'s WebSocket
/// transport). It gets the request without its body: enough to upgrade it.
pub trait Mount: Send + Sync {
    /// `true` for the paths this mount answers.
    fn matches(&self, path: &str) -> bool;

    /// Answers `request`; `shutdown` turns true when the listener stops.
    fn handle(
        &self,
        request: Request<()>,
        shutdown: Option<watch::Receiver<bool>>,
    ) -> rxon_core::BoxFuture<'static, Response<Full<Bytes>>>;
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type HttpResponse = Response<Full<Bytes>>;

/// The future of [`HttpService`]'s `Service` impls.
type ServiceFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

impl HttpService {
    /// The routes over `handler`, with default limits.
    pub fn new(handler: Arc<dyn Handler>) -> Self {
        Self::with_config(handler, ServiceConfig::default())
    }

    /// The routes over `handler` with `config`.
    pub fn with_config(handler: Arc<dyn Handler>, config: ServiceConfig) -> Self {
        let verifier = Arc::new(Verifier::new(config.replay_cache_capacity));
        HttpService {
            handler,
            config: Arc::new(config),
            shutdown: None,
            mounts: Arc::new([]),
            worker_routes: true,
            verifier,
        }
    }

    /// Also serves `mounts` (checked first, in order); with `worker_routes` false, only
    /// them (other paths get 404).
    pub fn with_mounts(mut self, mounts: Vec<Arc<dyn Mount>>, worker_routes: bool) -> Self {
        self.mounts = mounts.into();
        self.worker_routes = worker_routes;
        self
    }

    /// Ends pending polls (with 204) when `shutdown` turns `true`: what
    /// [`HttpListener`](crate::HttpListener) does on stop, for a listener of your own
    /// that serves these routes over another kind of stream (a Unix socket, an overlay
    /// network's streams).
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Answers one request. Never fails: every problem is an HTTP status with a
    /// `{"error": ...}` body.
    pub async fn handle<B>(&self, request: Request<B>) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Each request is answered in its own generation's dialect.
        let protocol = protocol_of(request.headers());
        let mut response = self.route(request, protocol).await;
        response.headers_mut().insert(
            PROTOCOL_VERSION_HEADER,
            HeaderValue::from_static(protocol.as_str()),
        );
        response
    }

    /// Each route's work is boxed, so the future hyper keeps per connection is small
    /// and a parked poll holds only the poll's own state.
    async fn route<B>(&self, request: Request<B>, protocol: Protocol) -> HttpResponse
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path();
        if let Some(mount) = self.mounts.iter().find(|m| m.matches(path)) {
            let mount = mount.clone();
            return mount
                .handle(request.map(|_| ()), self.shutdown.clone())
                .await;
        }
        if !self.worker_routes {
            return error(StatusCode::NOT_FOUND, "no such route");
        }
        if let Some(rest) = request.uri().path().strip_prefix(WS_ENDPOINT) {
            let worker = match rest.trim_end_matches('/') {
                "" => None,
                r => match r.strip_prefix('/') {
                    Some(id) if !id.contains('/') => Some(id.to_owned()),
                    _ => return error(StatusCode::NOT_FOUND, "no such route"),
                },
            };
            return Box::pin(self.websocket(request, worker)).await;
        }
        let (parts, body) = request.into_parts();
        let Some(rest) = parts.uri.path().strip_prefix(WORKER_API_PREFIX) else {
            return error(StatusCode::NOT_FOUND, "no such route");
        };
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let ctx = context(&parts, protocol);
        let method = &parts.method;
        match (method, segments.as_slice()) {
            (&Method::POST, ["workers", "register"]) => {
                match Box::pin(self.read::<WorkerRegistration, B>(body, &parts, &ctx, &[])).await {
                    Ok(registration) => {
                        reply(protocol, self.handler.register(ctx, registration).await)
                    }
                    Err(r) => r,
                }
            }
            (&Method::GET, ["workers", id, "tasks", "next"]) => {
                let Some(id) = worker_id(id) else {
                    return invalid_worker_id();
                };
                let wait = match requested_wait(parts.uri.query()) {
                    Ok(asked) => {
                        asked.map_or(self.config.poll_wait, |w| w.min(self.config.poll_wait))
                    }
                    Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
                };
                let ctx = ctx.with_worker_id(id);
                // Let go of the request before parking: its head shares hyper's read
                // buffer, which hyper would otherwise duplicate to watch the idle
                // connection for EOF (16 KiB more per parked poll, measured).
                drop(segments);
                drop((parts, body));
                Box::pin(self.poll(ctx, wait, protocol)).await
            }
            (&Method::PATCH, ["workers", id]) => {
                let Some(id) = worker_id(id) else {
                    return invalid_worker_id();
                };
                let ctx = ctx.with_worker_id(id);
                let heartbeat =
                    match Box::pin(self.read_optional::<Heartbeat, B>(body, &parts, &ctx)).await {
                        Ok(h) => h,
                        Err(r) => return r,
                    };
                reply(protocol, self.handler.heartbeat(ctx, heartbeat).await)
            }
            (&Method::POST, ["tasks", "result"]) => {
                match Box::pin(self.read::<TaskResult, B>(body, &parts, &ctx, &[])).await {
                    Ok(mut result) => {
                        // 1.0b17 may leave worker_id out: the sender is the worker.
                        if result.worker_id.is_empty()
                            && let Some(id) = &ctx.worker_id
                        {
                            result.worker_id = id.clone();
                        }
                        reply(protocol, self.handler.result(ctx, result).await)
                    }
                    Err(r) => r,
                }
            }
            (&Method::POST, ["events"]) if protocol.signs() => {
                match Box::pin(self.read::<WorkerEventPayload, B>(
                    body,
                    &parts,
                    &ctx,
                    EVENT_UNSIGNED,
                ))
                .await
                {
                    Ok(event) => match self.handler.event(ctx, event).await {
                        Ok(()) => json(protocol, StatusCode::OK, &event_accepted()),
                        Err(e) => handler_error(&e),
                    },
                    Err(r) => r,
                }
            }
            (&Method::POST, ["auth", "token"]) => reply(protocol, self.handler.token(ctx).await),
            (&Method::POST, ["auth", "token", "refresh"]) if protocol.signs() => {
                let bytes = match Box::pin(self.body(body, &parts)).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let token = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("refresh_token")?.as_str().map(str::to_owned));
                match token {
                    Some(t) if !t.is_empty() => reply(protocol, self.handler.refresh(ctx, t).await),
                    _ => error(StatusCode::BAD_REQUEST, "Missing refresh_token in payload"),
                }
            }
            (_, ["workers", "register"] | ["workers", _, "tasks", "next"] | ["workers", _])
            | (_, ["tasks", "result"] | ["auth", "token"]) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "no such route"),
        }
    }

    /// The command channel: authorises through `Handler::commands`, then upgrades.
    async fn websocket<B>(&self, mut request: Request<B>, worker: Option<String>) -> HttpResponse {
        if request.method() != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        if let Some(id) = &worker
            && !is_valid_identifier(id)
        {
            return invalid_worker_id();
        }
        let headers = request.headers();
        let has = |name: header::HeaderName, token: &str| {
            headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
            })
        };
        if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
            return error(
                StatusCode::UPGRADE_REQUIRED,
                "the command channel is a WebSocket: send Upgrade: websocket",
            );
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
        {
            return error(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return error(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        let (parts, body) = request.into_parts();
        let protocol = protocol_of(&parts.headers);
        let mut ctx = context(&parts, protocol);
        // The path's worker id wins over the 1.0b17 header hint.
        if worker.is_some() {
            ctx.worker_id = worker;
        }
        // The upgraded channel keeps the connection's slot in the listener's limit.
        let slot = parts
            .extensions
            .get::<ConnectionInfo>()
            .map(ConnectionInfo::slot)
            .unwrap_or_default();
        // Authorise before upgrading, so a refusal is a plain HTTP status.
        let receiver = match self.handler.commands(ctx.clone()).await {
            Ok(r) => r,
            Err(e) => return handler_error(&e),
        };
        request = Request::from_parts(parts, body);
        let on_upgrade = hyper::upgrade::on(&mut request);
        let service = self.clone();
        let shutdown = self.shutdown.clone();
        let config = crate::channel::ws_config(self.config.max_body_bytes);
        let keepalive = self.config.keepalive;
        tokio::spawn(async move {
            let _slot = slot;
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        io,
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        Some(config),
                    )
                    .await;
                    crate::channel::serve(ws, keepalive, receiver, service, ctx, shutdown).await;
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        response
    }

    async fn poll(&self, ctx: RequestContext, wait: Duration, protocol: Protocol) -> HttpResponse {
        let shutdown = self.shutdown.clone();
        let stopped = async move {
            match shutdown {
                // Also ends when the listener (the sender) is gone.
                Some(mut rx) => drop(rx.wait_for(|stop| *stop).await),
                None => std::future::pending::<()>().await,
            }
        };
        // A handler must answer by `wait`; the margin bounds one that does not.
        let bounded =
            tokio::time::timeout(wait + Duration::from_secs(5), self.handler.poll(ctx, wait));
        let outcome = tokio::select! {
            r = bounded => r.unwrap_or(Ok(None)),
            () = stopped => Ok(None),
        };
        match outcome {
            Ok(Some(task)) => self.task_reply(protocol, &task),
            Ok(None) => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(e) => handler_error(&e),
        }
    }

    /// A task in `protocol`'s dialect; in 1.0b17, when the handler has a task key,
    /// stamped with the send time (unless the handler set one) and signed.
    fn task_reply(&self, protocol: Protocol, task: &rxon_core::TaskPayload) -> HttpResponse {
        if !protocol.signs() {
            return json(protocol, StatusCode::OK, task);
        }
        let key = self.handler.task_signing_key();
        let value = match rxon_wire::guard::task_for_worker(task, key.as_deref()) {
            Ok(value) => value,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode or sign the task: {e}"),
                );
            }
        };
        match rxon_wire::to_bytes(&Value::Object(value)) {
            Ok(body) => with_body(StatusCode::OK, Bytes::from(body)),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the task: {e}"),
            ),
        }
    }

    /// Reads a bounded body within the read timeout.
    async fn body<B>(&self, body: B, parts: &http::request::Parts) -> Result<Bytes, HttpResponse>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.config.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let read = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.config.body_read_timeout, read).await {
            Err(_) => Err(error(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            )),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
            Ok(Err(e)) => Err(error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read request body: {e}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// The handler.
    pub(crate) fn handler(&self) -> &Arc<dyn Handler> {
        &self.handler
    }

    /// Reads a message in the request's generation; a 1.0b17 one must carry a valid
    /// envelope (403 otherwise), which is then removed.
    async fn read<T, B>(
        &self,
        body: B,
        parts: &http::request::Parts,
        ctx: &RequestContext,
        ignore: &[&str],
    ) -> Result<T, HttpResponse>
    where
        T: Wire,
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let bytes = self.body(body, parts).await?;
        self.message(&bytes, ctx, ignore).await
    }

    /// An empty body or `null` is `None` (and carries no envelope).
    async fn read_optional<T, B>(
        &self,
        body: B,
        parts: &http::request::Parts,
        ctx: &RequestContext,
    ) -> Result<Option<T>, HttpResponse>
    where
        T: Wire,
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let bytes = self.body(body, parts).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.as_ref() == b"null" {
            return Ok(None);
        }
        self.message(&bytes, ctx, &[]).await.map(Some)
    }

    /// A worker's message from `bytes`, read as [`read`](Self::read) reads a body.
    pub(crate) async fn message<T: Wire>(
        &self,
        bytes: &[u8],
        ctx: &RequestContext,
        ignore: &[&str],
    ) -> Result<T, HttpResponse> {
        let protocol = ctx.protocol();
        if !protocol.signs() {
            return rxon_wire::decode_slice(protocol, bytes).map_err(|e| bad_json::<T>(&e));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            bad_json::<T>(&rxon_wire::WireError::invalid(format!(
                "malformed JSON: {e}"
            )))
        })?;
        self.check_envelope(&value, ctx, ignore).await?;
        let mut message: T = rxon_wire::decode(protocol, value).map_err(|e| bad_json::<T>(&e))?;
        message.clear_envelope();
        Ok(message)
    }

    /// The 1.0b17 envelope check, as every transport makes it
    /// ([`rxon_wire::guard::admit`]).
    async fn check_envelope(
        &self,
        value: &Value,
        ctx: &RequestContext,
        ignore: &[&str],
    ) -> Result<(), HttpResponse> {
        rxon_wire::guard::admit(&*self.handler, &self.verifier, value, ctx, ignore)
            .await
            .map_err(|e| handler_error(&e))
    }
}

/// The generation a request speaks: its `X-RXON-Version` (1.0b3 when absent).
fn protocol_of(headers: &http::HeaderMap) -> Protocol {
    Protocol::from_header(
        headers
            .get(PROTOCOL_VERSION_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
}

fn context(parts: &http::request::Parts, protocol: Protocol) -> RequestContext {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut ctx = RequestContext::new(TRANSPORT_NAME);
    ctx.token = header(AUTH_HEADER_WORKER);
    ctx.protocol_version = header(PROTOCOL_VERSION_HEADER);
    // 1.0b17's identity hint; a worker id in the path overrides it.
    if protocol.signs() {
        ctx.worker_id = header(WORKER_ID_HEADER).filter(|id| is_valid_identifier(id));
    }
    if let Some(info) = parts.extensions.get::<ConnectionInfo>() {
        ctx.remote_addr = info.remote_addr;
        ctx.cert_identity = info.cert_identity.clone();
    }
    ctx
}

/// The `timeout` query parameter of a poll (seconds), if any.
fn requested_wait(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("timeout="))
    else {
        return Ok(None);
    };
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Some(Duration::from_secs_f64(s.min(86_400.0))))
        .ok_or_else(|| format!("invalid timeout {value:?}: expected seconds, e.g. 30 or 0.5"))
}

fn worker_id<'a>(segment: &&'a str) -> Option<&'a str> {
    is_valid_identifier(segment).then_some(*segment)
}

fn invalid_worker_id() -> HttpResponse {
    error(
        StatusCode::BAD_REQUEST,
        "invalid worker_id: use 1-256 ASCII letters, digits, '_' or '-'",
    )
}

fn bad_json<T: Wire>(e: &rxon_wire::WireError) -> HttpResponse {
    error(
        StatusCode::BAD_REQUEST,
        &format!("invalid {}: {e}", T::NAME),
    )
}

/// The reference orchestrator's answer to an accepted event.
fn event_accepted() -> rxon_core::Map {
    rxon_core::map! { "status": "event_accepted" }
}

fn too_large(limit: usize) -> HttpResponse {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body exceeds {limit} bytes"),
    )
}

fn reply<T: Wire>(protocol: Protocol, result: HandlerResult<T>) -> HttpResponse {
    match result {
        Ok(v) => json(protocol, StatusCode::OK, &v),
        Err(e) => handler_error(&e),
    }
}

fn handler_error(e: &HandlerError) -> HttpResponse {
    let mut r = error(handler_error_status(e), e.message());
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

fn json<T: Wire>(protocol: Protocol, status: StatusCode, value: &T) -> HttpResponse {
    match rxon_wire::to_vec(protocol, value) {
        Ok(body) => with_body(status, Bytes::from(body)),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode reply: {e}"),
        ),
    }
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    with_body(status, error_body(message))
}

fn with_body(status: StatusCode, body: Bytes) -> HttpResponse {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl<B> hyper::service::Service<Request<B>> for HttpService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

impl<B> tower_service::Service<Request<B>> for HttpService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        hyper::service::Service::call(&*self, request)
    }
}

#[cfg(test)]
mod tests {
    use super::requested_wait;
    use std::time::Duration;

    #[test]
    fn the_poll_timeout_query_is_parsed_strictly() {
        assert_eq!(requested_wait(None), Ok(None));
        assert_eq!(requested_wait(Some("x=1")), Ok(None));
        assert_eq!(
            requested_wait(Some("timeout=2.5")),
            Ok(Some(Duration::from_millis(2500)))
        );
        assert_eq!(
            requested_wait(Some("a=b&timeout=0")),
            Ok(Some(Duration::ZERO))
        );
        assert_eq!(
            requested_wait(Some("timeout=1e9")),
            Ok(Some(Duration::from_secs(86_400)))
        );
        for bad in [
            "timeout=",
            "timeout=-1",
            "timeout=NaN",
            "timeout=inf",
            "timeout=soon",
        ] {
            assert!(requested_wait(Some(bad)).is_err(), "{bad}");
        }
    }
}
