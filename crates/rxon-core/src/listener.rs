//! The orchestrator side: [`Handler`] (what the orchestrator does with each message),
//! [`Listener`] (a server that accepts worker connections and calls the handler), and the
//! [`RequestContext`] a listener passes along.

use crate::error::{HandlerError, HandlerResult, Result};
use crate::future::BoxFuture;
use crate::messages::{
    Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, ResultOutcome, TaskPayload,
    TaskResult, TokenResponse, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use crate::protocol::Protocol;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a listener knows about the request it hands to the [`Handler`].
///
/// `Debug` never shows the token, only whether there is one:
///
/// ```
/// use rxon_core::RequestContext;
/// let ctx = RequestContext::new("http").with_token("s3cret");
/// let shown = format!("{ctx:?}");
/// assert!(!shown.contains("s3cret") && shown.contains("<redacted>"), "{shown}");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// Name of the transport that received the request (`"http"`, `"ws"`, `"grpc"`…).
    pub transport: &'static str,
    /// The worker credential (`X-Worker-Token`), if sent.
    pub token: Option<String>,
    /// The peer's protocol version (`X-RXON-Version`), if sent.
    pub protocol_version: Option<String>,
    /// The worker id named by the request path (or stream), already validated.
    pub worker_id: Option<String>,
    /// Subject common name of the client certificate on an mTLS connection.
    pub cert_identity: Option<String>,
    /// The peer's address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for RequestContext {
    /// Redacts the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("transport", &self.transport)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("protocol_version", &self.protocol_version)
            .field("worker_id", &self.worker_id)
            .field("cert_identity", &self.cert_identity)
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

impl RequestContext {
    /// An empty context for `transport`.
    pub fn new(transport: &'static str) -> Self {
        RequestContext {
            transport,
            token: None,
            protocol_version: None,
            worker_id: None,
            cert_identity: None,
            remote_addr: None,
        }
    }

    /// The peer's protocol generation, from [`protocol_version`](Self::protocol_version)
    /// (1.0b3 when absent).
    pub fn protocol(&self) -> Protocol {
        Protocol::from_header(self.protocol_version.as_deref())
    }

    /// Sets the token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Sets the protocol version.
    pub fn with_protocol_version(mut self, version: impl Into<String>) -> Self {
        self.protocol_version = Some(version.into());
        self
    }
    /// Sets the worker id.
    pub fn with_worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// The worker the request names (the one source of truth for `poll` and
    /// `heartbeat`), or a `BadRequest` refusal when the listener set none.
    pub fn require_worker_id(&self) -> HandlerResult<&str> {
        self.worker_id.as_deref().ok_or_else(|| {
            crate::HandlerError::bad_request(
                "the request names no worker (a route or field with the worker id)",
            )
        })
    }
    /// Sets the certificate identity.
    pub fn with_cert_identity(mut self, cn: impl Into<String>) -> Self {
        self.cert_identity = Some(cn.into());
        self
    }
    /// Sets the remote address.
    pub fn with_remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }
}

/// The per-worker stream of commands a handler opens for a listener.
///
/// The listener pulls commands with [`recv`](Self::recv) and writes each to the worker's
/// channel. `None` means the orchestrator has closed the channel.
pub trait CommandReceiver: Send {
    /// Waits for the next command for this worker.
    fn recv(&mut self) -> BoxFuture<'_, Option<WorkerCommand>>;

    /// Called by the listener with a command it took but could not write to the worker
    /// (the connection broke), so the orchestrator can deliver it another way or
    /// report it. The default drops it: override it unless commands are also
    /// delivered by other means (e.g. heartbeat replies).
    fn undelivered(&mut self, command: WorkerCommand) {
        let _ = command;
    }
}

impl<R: CommandReceiver + ?Sized> CommandReceiver for Box<R> {
    fn recv(&mut self) -> BoxFuture<'_, Option<WorkerCommand>> {
        (**self).recv()
    }
    fn undelivered(&mut self, command: WorkerCommand) {
        (**self).undelivered(command)
    }
}

/// The knobs every listener has, in one type: a listener crate builds its own
/// configuration from it (`HttpListener::with_options`, `WsListener::with_options`,
/// `GrpcListener::with_options`), so a harness or an application sets them once,
/// whatever the transport. Transport-specific settings stay in each crate's config.
///
/// ```
/// use rxon_core::ListenerOptions;
/// use std::time::Duration;
/// let options = ListenerOptions::default().with_poll_wait(Duration::from_secs(5));
/// assert_eq!(options.poll_wait, Duration::from_secs(5));
/// assert!(options.bind.ip().is_loopback(), "loopback unless told otherwise");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerOptions {
    /// Address to bind (default `127.0.0.1:0`: loopback, a free port).
    pub bind: SocketAddr,
    /// Longest a poll waits for a task; a worker's shorter timeout wins (default 30 s).
    pub poll_wait: Duration,
    /// Largest message (request body, frame) accepted from a worker (default 16 MiB).
    pub max_message_bytes: usize,
    /// How often a long-lived connection is checked (default 30 s; zero: never).
    pub keepalive: Duration,
    /// Most connections at once, long-lived ones for their whole life (default 10,000).
    pub max_connections: usize,
    /// Deadline for a new connection's first request (its headers on HTTP, its
    /// handshakes and first accepted request on gRPC); default 30 s.
    pub handshake_timeout: Duration,
    /// Serve TLS (and optionally require client certificates).
    pub tls: Option<crate::ServerTlsOptions>,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            poll_wait: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            keepalive: Duration::from_secs(30),
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl ListenerOptions {
    /// Sets [`bind`](Self::bind).
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }
    /// Sets [`poll_wait`](Self::poll_wait).
    pub fn with_poll_wait(mut self, poll_wait: Duration) -> Self {
        self.poll_wait = poll_wait;
        self
    }
    /// Sets [`max_message_bytes`](Self::max_message_bytes).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }
    /// Sets [`keepalive`](Self::keepalive).
    pub fn with_keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive;
        self
    }
    /// Sets [`max_connections`](Self::max_connections).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }
    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
    /// Sets [`tls`](Self::tls).
    pub fn with_tls(mut self, tls: crate::ServerTlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// The orchestrator's logic, one method per worker message; every listener calls it.
///
/// One handler can be served by several listeners at once (HTTP, WebSocket, gRPC); the
/// [`RequestContext::transport`] says which one a request came through.
///
/// # Contract
///
/// - **Authentication is the handler's job**: check [`RequestContext::token`] (or the
///   certificate identity) and refuse with [`HandlerError::unauthorized`]; the worker
///   then refreshes its token once and retries.
/// - **Errors are typed**: each [`HandlerErrorKind`](crate::HandlerErrorKind) maps to a
///   status on every transport (HTTP 400/401/403/404/409/413/429/501/503/500).
/// - **Polls are cancellable**: a listener drops the future returned by
///   [`poll`](Self::poll) when the worker goes away or the listener stops. A handler
///   that hands a task out must not lose it if the future is dropped before it
///   completes (hand the task over only on the future's last step, or requeue it on
///   drop).
/// - Methods with a default answer [`HandlerError::not_implemented`].
pub trait Handler: Send + Sync {
    /// A worker registers (`register`).
    fn register(
        &self,
        ctx: RequestContext,
        registration: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>>;

    /// A worker long-polls (`poll`): return a task as soon as one is available for the
    /// worker the request names ([`RequestContext::require_worker_id`]: listeners set
    /// it from the route), or `None` once `wait` has passed.
    fn poll(
        &self,
        ctx: RequestContext,
        wait: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>>;

    /// A worker reports a result (`result`).
    fn result(
        &self,
        ctx: RequestContext,
        result: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>>;

    /// A worker sends a heartbeat (`heartbeat`) for the worker the request names
    /// ([`RequestContext::require_worker_id`]); `None` when the request had no body.
    fn heartbeat(
        &self,
        ctx: RequestContext,
        heartbeat: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>>;

    /// The secret that signs the 1.0b17 envelopes of `ctx.worker_id` (its static
    /// token, as the reference orchestrator keys them), asked by a listener before it
    /// hands a signed message over. `Ok(None)` (the default) checks only the
    /// envelope's clock and replay window, not its signature; an error refuses the
    /// message.
    fn envelope_key(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<Option<String>>> {
        let _ = ctx;
        Box::pin(async { Ok(None) })
    }

    /// The orchestrator's secret for the `sig` of the tasks it hands to 1.0b17 workers;
    /// the listener signs each task with it as it writes the task. `None` (the
    /// default): tasks carry no `sig`.
    fn task_signing_key(&self) -> Option<String> {
        None
    }

    /// A worker sends an event (1.0b17 `POST /_worker/events`). The default hands a
    /// `"progress"` event to [`progress`](Self::progress) and refuses any other type
    /// as not implemented.
    fn event(
        &self,
        ctx: RequestContext,
        event: WorkerEventPayload,
    ) -> BoxFuture<'_, HandlerResult<()>> {
        match event.as_progress() {
            Some(p) => self.progress(ctx, p),
            None => Box::pin(async move {
                Err(HandlerError::not_implemented(format!(
                    "events of type {:?} are not supported",
                    event.event_type
                )))
            }),
        }
    }

    /// A worker reports progress.
    fn progress(
        &self,
        ctx: RequestContext,
        progress: ProgressUpdatePayload,
    ) -> BoxFuture<'_, HandlerResult<()>> {
        let _ = (ctx, progress);
        Box::pin(async {
            Err(HandlerError::not_implemented(
                "progress updates are not handled",
            ))
        })
    }

    /// A worker asks to open a long-lived connection (a WebSocket session): the
    /// listener calls this with the upgrade request's context *before* it upgrades, and
    /// refuses the connection with the error's status (401, 403…) when it fails, so an
    /// unauthenticated peer never holds a session. Accept what any operation on the
    /// session could accept, a bootstrap credential included (the session may trade it
    /// for a token). Every request on the session is still checked by its own method.
    ///
    /// The default accepts every connection: a handler that authenticates workers
    /// should override it, and a handler that wraps another must forward it (as every
    /// method), or the wrapper silently opens sessions to anyone.
    fn authenticate(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<()>> {
        let _ = ctx;
        Box::pin(async { Ok(()) })
    }

    /// A worker trades a refresh token for a new access token (1.0b17
    /// `POST /_worker/auth/token/refresh`, `sts_refresh`); `ctx.worker_id` is the
    /// `X-Worker-ID` hint. The credential header is not checked by the caller: the
    /// refresh token is the credential.
    fn refresh(
        &self,
        ctx: RequestContext,
        refresh_token: String,
    ) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        let _ = (ctx, refresh_token);
        Box::pin(async {
            Err(HandlerError::not_implemented(
                "token refreshing is not supported",
            ))
        })
    }

    /// A worker asks for a short-lived token (`sts_token`).
    fn token(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        let _ = ctx;
        Box::pin(async {
            Err(HandlerError::not_implemented(
                "token issuing is not supported",
            ))
        })
    }

    /// A worker opens its command channel; the listener forwards what the returned
    /// receiver yields. The worker id is in [`RequestContext::worker_id`] when the
    /// channel URL named it.
    fn commands(
        &self,
        ctx: RequestContext,
    ) -> BoxFuture<'_, HandlerResult<Box<dyn CommandReceiver>>> {
        let _ = ctx;
        Box::pin(async {
            Err(HandlerError::not_implemented(
                "command channels are not supported",
            ))
        })
    }
}

macro_rules! forward_handler {
    ($($ptr:ty),*) => {$(
        impl<H: Handler + ?Sized> Handler for $ptr {
            fn register(&self, ctx: RequestContext, r: WorkerRegistration) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
                (**self).register(ctx, r)
            }
            fn poll(&self, ctx: RequestContext, wait: Duration) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
                (**self).poll(ctx, wait)
            }
            fn result(&self, ctx: RequestContext, r: TaskResult) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
                (**self).result(ctx, r)
            }
            fn heartbeat(&self, ctx: RequestContext, h: Option<Heartbeat>) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
                (**self).heartbeat(ctx, h)
            }
            fn progress(&self, ctx: RequestContext, p: ProgressUpdatePayload) -> BoxFuture<'_, HandlerResult<()>> {
                (**self).progress(ctx, p)
            }
            fn event(&self, ctx: RequestContext, e: WorkerEventPayload) -> BoxFuture<'_, HandlerResult<()>> {
                (**self).event(ctx, e)
            }
            fn envelope_key(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<Option<String>>> {
                (**self).envelope_key(ctx)
            }
            fn task_signing_key(&self) -> Option<String> {
                (**self).task_signing_key()
            }
            fn authenticate(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<()>> {
                (**self).authenticate(ctx)
            }
            fn token(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
                (**self).token(ctx)
            }
            fn refresh(&self, ctx: RequestContext, r: String) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
                (**self).refresh(ctx, r)
            }
            fn commands(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<Box<dyn CommandReceiver>>> {
                (**self).commands(ctx)
            }
        }
    )*};
}
forward_handler!(Box<H>, Arc<H>, &H);

/// A server that accepts worker connections and routes their messages to a [`Handler`].
///
/// # Contract
///
/// - [`start`](Self::start) returns once the listener accepts connections (so a worker
///   may dial [`endpoint`](Self::endpoint) right after); starting twice is an error.
/// - [`stop`](Self::stop) stops accepting, lets in-flight requests finish for at most
///   `drain`, then ends the rest (pending polls answer "no task", command channels
///   close) and returns. It never waits longer than `drain` plus a small constant.
pub trait Listener: Send + Sync {
    /// Starts serving `handler`.
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>>;

    /// Stops serving, draining in-flight requests for at most `drain`.
    fn stop(&self, drain: Duration) -> BoxFuture<'_, Result<()>>;

    /// The URL workers dial to reach this listener (e.g. `http://127.0.0.1:8080`),
    /// once started.
    fn endpoint(&self) -> Option<String>;
}

impl<L: Listener + ?Sized> Listener for Arc<L> {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        (**self).start(handler)
    }
    fn stop(&self, drain: Duration) -> BoxFuture<'_, Result<()>> {
        (**self).stop(drain)
    }
    fn endpoint(&self) -> Option<String> {
        (**self).endpoint()
    }
}

impl<L: Listener + ?Sized> Listener for Box<L> {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        (**self).start(handler)
    }
    fn stop(&self, drain: Duration) -> BoxFuture<'_, Result<()>> {
        (**self).stop(drain)
    }
    fn endpoint(&self) -> Option<String> {
        (**self).endpoint()
    }
}
