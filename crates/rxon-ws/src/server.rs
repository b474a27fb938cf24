//! The orchestrator side: [`WsMount`] (on an HTTP listener's port) and [`WsListener`]
//! (its own port).

use crate::codec::{Call, ClientFrame, Codec, PATH_PREFIX, Reply, ServerFrame, WireError};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use rxon_core::ServerTlsOptions;
use rxon_core::validate::is_valid_identifier;
use rxon_core::{
    BoxFuture, Handler, HandlerError, Listener, ListenerOptions, RequestContext, Result, RxonError,
    constants::{AUTH_HEADER_WORKER, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER},
};
use rxon_http::{ConnectionInfo, ConnectionSlot, HttpListener, HttpListenerConfig, Mount};
use rxon_wire::envelope::{EVENT_UNSIGNED, Verifier};
use rxon_wire::guard::admit_message;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

/// Transport name in the [`RequestContext`] of WebSocket requests.
pub const TRANSPORT_NAME: &str = "ws";

/// Limits of WebSocket sessions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// Longest a poll waits for a task (a worker's shorter timeout wins; default 30 s).
    pub poll_wait: Duration,
    /// Largest frame accepted (default 16 MiB); larger ones close the session (1009).
    pub max_message_bytes: usize,
    /// Requests of one session handled at once; more wait (default 64).
    pub max_in_flight: usize,
    /// A ping this often (default 30 s). A worker that sends nothing (not one byte)
    /// between two pings is disconnected, so a connection dropped silently by a NAT or
    /// firewall does not stay open forever. Zero turns the pings off.
    pub keepalive: Duration,
    /// How many 1.0b17 nonces are remembered against replays (default
    /// [`DEFAULT_REPLAY_CAPACITY`](rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY)).
    pub replay_cache_capacity: usize,
    /// A session's read buffer: its size when the session opens, and the most read
    /// from the socket at once (default 4 KiB, at least 64 bytes). It is what an idle
    /// session holds for reading; a larger frame grows it to that frame's size while
    /// it arrives. tungstenite's own default (128 KiB, zero-filled on the first read) would
    /// make every parked worker cost that much.
    pub read_buffer_bytes: usize,
}

/// [`WsConfig::read_buffer_bytes`] by default.
pub const DEFAULT_READ_BUFFER_BYTES: usize = 4 * 1024;

impl WsConfig {
    /// The session's tungstenite settings.
    fn websocket(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
            .read_buffer_size(self.read_buffer_bytes.max(64))
            // Every reply and command is sent and flushed on its own: nothing is
            // gathered before writing, so no write buffer is kept for it.
            .write_buffer_size(0)
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            poll_wait: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            max_in_flight: 64,
            keepalive: Duration::from_secs(30),
            replay_cache_capacity: rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY,
            read_buffer_bytes: DEFAULT_READ_BUFFER_BYTES,
        }
    }
}

/// The WebSocket transport's route (`/_worker/rxon/{worker_id}`) as a [`Mount`] for an
/// `HttpListener` or `HttpService`: HTTP workers and WebSocket workers on one port,
/// served by one handler.
///
/// Mounted in a server of your own, its connections need `TCP_NODELAY` (see
/// `HttpService`): without it every frame after the first waits for a delayed
/// acknowledgement.
#[derive(Clone)]
pub struct WsMount {
    handler: Arc<dyn Handler>,
    config: Arc<WsConfig>,
    /// The replay cache of every session on this route.
    verifier: Arc<Verifier>,
}

impl std::fmt::Debug for WsMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsMount")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WsMount {
    /// The route over `handler`.
    pub fn new(handler: Arc<dyn Handler>, config: WsConfig) -> Self {
        WsMount {
            handler,
            verifier: Arc::new(Verifier::new(config.replay_cache_capacity)),
            config: Arc::new(config),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        PROTOCOL_VERSION_HEADER,
        HeaderValue::from_static(PROTOCOL_VERSION),
    );
    r
}

impl Mount for WsMount {
    fn matches(&self, path: &str) -> bool {
        path.starts_with(PATH_PREFIX)
    }

    fn handle(
        &self,
        mut request: Request<()>,
        shutdown: Option<watch::Receiver<bool>>,
    ) -> BoxFuture<'static, Response<Full<Bytes>>> {
        let this = self.clone();
        Box::pin(async move {
            let worker_id = request
                .uri()
                .path()
                .strip_prefix(PATH_PREFIX)
                .unwrap_or_default()
                .to_owned();
            if !is_valid_identifier(&worker_id) {
                return error(StatusCode::BAD_REQUEST, "invalid worker_id in the path");
            }
            let headers = request.headers();
            let has = |name: header::HeaderName, token: &str| {
                headers.get_all(name).iter().any(|v| {
                    v.to_str()
                        .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
                })
            };
            if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
                return error(StatusCode::UPGRADE_REQUIRED, "send Upgrade: websocket");
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
            // The worker lists the codecs it speaks, preferred first.
            let codec = headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .find_map(Codec::from_subprotocol);
            let Some(codec) = codec else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "no supported subprotocol: offer rxon.v1.json or rxon.v1.msgpack",
                );
            };
            let text = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let mut ctx = RequestContext::new(TRANSPORT_NAME).with_worker_id(worker_id);
            ctx.token = text(AUTH_HEADER_WORKER);
            ctx.protocol_version = text(PROTOCOL_VERSION_HEADER);
            let mut slot = ConnectionSlot::default();
            if let Some(info) = request.extensions().get::<ConnectionInfo>() {
                ctx.remote_addr = info.remote_addr;
                ctx.cert_identity = info.cert_identity.clone();
                slot = info.slot();
            }
            // Authenticate before upgrading: a refusal is a plain HTTP status with the
            // usual JSON body, and an unauthenticated peer never holds a session.
            if let Err(e) = this.handler.authenticate(ctx.clone()).await {
                tracing::debug!(error = %e, remote = ?ctx.remote_addr, "WebSocket upgrade refused");
                return error(rxon_net::status::status_for(e.kind()), e.message());
            }
            let on_upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                // The session keeps the connection's slot in the listener's limit.
                let _slot = slot;
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let config = this.config.websocket();
                        // Any byte read is proof of life, a large frame still arriving
                        // included.
                        let heard = Arc::new(AtomicBool::new(true));
                        let io = rxon_net::io::Tap::new(
                            hyper_util::rt::TokioIo::new(upgraded),
                            rxon_net::io::Heard(heard.clone()),
                        );
                        let ws =
                            WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                        let session_ctx = Session {
                            handler: this.handler,
                            config: this.config,
                            verifier: this.verifier,
                            ctx,
                            heard,
                        };
                        session(ws, codec, session_ctx, shutdown).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
                }
            });
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = response.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(codec.subprotocol()),
            );
            h.insert(
                PROTOCOL_VERSION_HEADER,
                HeaderValue::from_static(PROTOCOL_VERSION),
            );
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
            }
            response
        })
    }
}

/// Resolves when `shutdown` turns true (never without one).
async fn stopping(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(rx) => drop(rx.wait_for(|s| *s).await),
        None => std::future::pending().await,
    }
}

/// What a session serves, and for whom.
struct Session {
    handler: Arc<dyn Handler>,
    config: Arc<WsConfig>,
    verifier: Arc<Verifier>,
    ctx: RequestContext,
    /// Set whenever bytes arrive from the worker.
    heard: Arc<AtomicBool>,
}

/// One worker's connection: requests run concurrently, replies and commands share
/// one writer.
async fn session<S>(
    ws: WebSocketStream<S>,
    codec: Codec,
    session: Session,
    mut shutdown: Option<watch::Receiver<bool>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Session {
        handler,
        config,
        verifier,
        ctx,
        heard,
    } = session;
    let (mut sink, mut stream) = ws.split();
    // Frames travel boxed: the channel allocates its first block of slots when it
    // opens, and every idle session holds one, so a slot is a pointer, not a frame.
    let (out, mut out_rx) = mpsc::channel::<Box<Message>>(256);
    let keepalive = config.keepalive;
    // No deadline per frame: a large reply to a slow worker may take long. Liveness is
    // the pings' business (the worker's frames arrive while ours go out), and the end
    // of the session bounds a writer stuck on a worker that stopped reading.
    let mut writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let closing = matches!(*message, Message::Close(_));
            if sink.send(*message).await.is_err() || closing {
                break;
            }
        }
    });
    let mut ping = rxon_net::keepalive::Pings::every(keepalive);
    // Bounds the writer at the end of the session, keepalive or not.
    let end_limit = if keepalive.is_zero() {
        Duration::from_secs(30)
    } else {
        keepalive
    };
    // The session's credential: the upgrade's, then whatever a token request issued.
    let token = Arc::new(Mutex::new(ctx.token.clone()));
    let mut commands = Box::pin(open_commands(&handler, &ctx, codec, &out)).await;
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let mut requests = tokio::task::JoinSet::new();
    loop {
        let message = tokio::select! {
            m = stream.next() => m,
            () = ping.tick() => {
                if !heard.swap(false, Ordering::Relaxed) {
                    tracing::info!(worker_id = ?ctx.worker_id, "session silent for two keepalives; closing");
                    break;
                }
                // A full queue means the writer is stuck behind a worker that stopped
                // reading; that worker misses our pongs and leaves, or goes silent and
                // the next tick ends the session.
                let _ = out.try_send(Box::new(Message::Ping(Vec::new().into())));
                continue;
            }
            () = stopping(&mut shutdown) => {
                // Requests in flight finish first (pending polls answer "no task" at
                // once); then the session closes with 1001. Boxed, as every step taken
                // once per session: an idle session's task is not sized for them.
                Box::pin(async {
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while requests.join_next().await.is_some() {}
                    })
                    .await;
                    let _ = out.send(Box::new(Message::Close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "listener stopping".into(),
                    })))).await;
                })
                .await;
                break;
            }
        };
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                tracing::warn!(error = %e, "frame over the size limit; closing");
                let _ = Box::pin(out.send(Box::new(Message::Close(Some(CloseFrame {
                    code: CloseCode::Size,
                    reason: "frame exceeds the size limit".into(),
                })))))
                .await;
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "session ended");
                break;
            }
            None => break,
        };
        if matches!(message, Message::Close(_)) {
            break;
        }
        let frame = match codec.decode::<ClientFrame>(&message) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "bad frame skipped");
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let mut ctx = ctx.clone();
        ctx.token = token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (handler, config, verifier, out, token) = (
            handler.clone(),
            config.clone(),
            verifier.clone(),
            out.clone(),
            token.clone(),
        );
        let shutdown = shutdown.clone();
        let reopen = commands.is_none() && matches!(frame.call, Call::Token | Call::TokenWith(_));
        let commands_out = out.clone();
        let id = frame.id;
        let call = match frame.call {
            Call::Poll(args) => Job::Poll(args),
            other => Job::Other(Box::new(other)),
        };
        let reply = async move {
            let answer = execute(&handler, &config, &verifier, ctx.clone(), call, shutdown).await;
            if let Ok(Reply::Token(t)) = &answer {
                *token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.access_token.clone());
            }
            let frame = match answer {
                Ok(reply) => ServerFrame::Reply { id, reply },
                Err(e) => ServerFrame::Error {
                    id,
                    error: WireError {
                        status: rxon_net::status::status_for(e.kind()).as_u16(),
                        message: e.message().to_owned(),
                        retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
                    },
                },
            };
            if let Ok(m) = codec.encode(&frame) {
                let _ = out.send(Box::new(m)).await;
            }
            drop(permit);
            // A fresh token may open the command channel the upgrade's could not.
            if reopen {
                let mut ctx = ctx;
                ctx.token = token.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Box::pin(open_commands(&handler, &ctx, codec, &commands_out)).await;
            }
            None
        };
        requests.spawn(reply);
        while let Some(done) = requests.try_join_next() {
            if let Ok(Some(opened)) = done
                && let Some(old) = commands.replace(opened)
            {
                old.abort();
            }
        }
    }
    requests.abort_all();
    if let Some(c) = commands {
        c.abort();
    }
    drop(out);
    if Box::pin(tokio::time::timeout(end_limit, &mut writer))
        .await
        .is_err()
    {
        tracing::info!("worker stopped reading; dropping the session's unsent frames");
        writer.abort();
    }
}

/// Opens the handler's command channel for this worker and forwards it; `None` when
/// the handler has none for this session.
async fn open_commands(
    handler: &Arc<dyn Handler>,
    ctx: &RequestContext,
    codec: Codec,
    out: &mpsc::Sender<Box<Message>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut receiver = match handler.commands(ctx.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "no command channel for this session");
            return None;
        }
    };
    let out = out.clone();
    Some(tokio::spawn(async move {
        while let Some(command) = receiver.recv().await {
            let Ok(message) = codec.encode(&ServerFrame::Command {
                command: command.clone(),
            }) else {
                continue;
            };
            if out.send(Box::new(message)).await.is_err() {
                receiver.undelivered(command);
                return;
            }
        }
    }))
}

/// A request as its task holds it: a poll's arguments inline, any other call boxed
/// (a parked poll's task is not sized for the largest message).
enum Job {
    Poll(crate::codec::PollArgs),
    Other(Box<Call>),
}

/// Serves one request. A poll is served here; every other call in a boxed future of
/// its own ([`execute_call`]): a parked poll's task then holds only what a poll needs,
/// not room for the largest call and its envelope check.
async fn execute(
    handler: &Arc<dyn Handler>,
    config: &WsConfig,
    verifier: &Verifier,
    ctx: RequestContext,
    job: Job,
    mut shutdown: Option<watch::Receiver<bool>>,
) -> std::result::Result<Reply, HandlerError> {
    let args = match job {
        Job::Poll(args) => args,
        Job::Other(call) => {
            return Box::pin(execute_call(handler, verifier, ctx, *call)).await;
        }
    };
    let signs = ctx.protocol().signs();
    let wait = Duration::from_millis(args.timeout_ms).min(config.poll_wait);
    let poll = tokio::time::timeout(wait + Duration::from_secs(5), handler.poll(ctx, wait));
    let task = tokio::select! {
        r = poll => r.unwrap_or(Ok(None))?,
        () = stopping(&mut shutdown) => None,
    };
    // A 1.0b17 session's tasks carry the orchestrator's `sig` when it has a key.
    let task = match task {
        Some(t) if signs => match handler.task_signing_key() {
            Some(key) => Some(
                rxon_wire::guard::signed_task(&t, &key)
                    .map_err(|e| HandlerError::internal(format!("cannot sign the task: {e}")))?,
            ),
            None => Some(t),
        },
        task => task,
    };
    Ok(Reply::Poll(task.map(Box::new)))
}

/// Serves every call but a poll.
async fn execute_call(
    handler: &Arc<dyn Handler>,
    verifier: &Verifier,
    ctx: RequestContext,
    mut call: Call,
) -> std::result::Result<Reply, HandlerError> {
    // A 1.0b17 session's messages carry the signed envelope: admitted first, as on
    // every transport.
    if ctx.protocol().signs() {
        let h = &**handler;
        match &mut call {
            Call::Register(m) => admit_message(h, verifier, m, &ctx, &[]).await?,
            Call::Heartbeat(m) => admit_message(h, verifier, m, &ctx, &[]).await?,
            Call::Result(m) => admit_message(h, verifier, m, &ctx, &[]).await?,
            Call::Event(m) => admit_message(h, verifier, m, &ctx, EVENT_UNSIGNED).await?,
            Call::Poll(_) | Call::Progress(_) | Call::Token | Call::TokenWith(_) => {}
        }
    }
    Ok(match call {
        Call::Register(r) => Reply::Register(handler.register(ctx, r).await?),
        Call::Poll(_) => {
            return Err(HandlerError::internal(
                "a poll reached the path of the other calls",
            ));
        }
        Call::Result(r) => Reply::Result(handler.result(ctx, r).await?),
        Call::Heartbeat(h) => Reply::Heartbeat(handler.heartbeat(ctx, Some(h)).await?),
        Call::Progress(p) => {
            handler.progress(ctx, p).await?;
            Reply::Progress
        }
        Call::Event(e) => {
            handler.event(ctx, e).await?;
            Reply::Event
        }
        Call::Token => Reply::Token(handler.token(ctx).await?),
        Call::TokenWith(args) => {
            let mut ctx = ctx;
            ctx.token = Some(args.credential);
            Reply::Token(handler.token(ctx).await?)
        }
    })
}

/// Settings of a standalone [`WsListener`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsListenerConfig {
    /// Address to bind (default `127.0.0.1:0`).
    pub bind: Option<SocketAddr>,
    /// Session limits.
    pub ws: WsConfig,
    /// Serve `wss://` with this certificate (and optional client certificates).
    pub tls: Option<ServerTlsOptions>,
    /// Most connections at once, sessions included for their whole life (default
    /// 10,000); further ones are answered 503 and closed.
    pub max_connections: usize,
}

/// The common knobs; `max_message_bytes` bounds frames.
impl From<ListenerOptions> for WsListenerConfig {
    fn from(o: ListenerOptions) -> Self {
        let mut config = WsListenerConfig {
            bind: Some(o.bind),
            tls: o.tls,
            max_connections: o.max_connections,
            ..WsListenerConfig::default()
        };
        config.ws.poll_wait = o.poll_wait;
        config.ws.max_message_bytes = o.max_message_bytes;
        config.ws.keepalive = o.keepalive;
        config
    }
}

impl Default for WsListenerConfig {
    fn default() -> Self {
        WsListenerConfig {
            bind: None,
            ws: WsConfig::default(),
            tls: None,
            max_connections: HttpListenerConfig::default().max_connections,
        }
    }
}

/// Serves the WebSocket transport on its own port (`ws://` or `wss://`). To serve it
/// beside the HTTP routes on one port, add a [`WsMount`] to the `HttpListenerConfig`
/// instead.
#[derive(Debug, Default)]
pub struct WsListener {
    config: WsListenerConfig,
    http: Mutex<Option<Arc<HttpListener>>>,
}

impl WsListener {
    /// A listener on `addr`.
    pub fn bind(addr: SocketAddr) -> Self {
        Self::with_config(WsListenerConfig {
            bind: Some(addr),
            ..Default::default()
        })
    }

    /// A listener with the common [`ListenerOptions`] (the rest as in
    /// [`WsListenerConfig::default`]).
    pub fn with_options(options: ListenerOptions) -> Self {
        Self::with_config(options.into())
    }

    /// A listener with `config`.
    pub fn with_config(config: WsListenerConfig) -> Self {
        WsListener {
            config,
            http: Mutex::new(None),
        }
    }

    fn http(&self) -> Option<Arc<HttpListener>> {
        self.http.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Listener for WsListener {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.http().is_some() {
                return Err(RxonError::config("WebSocket listener is already running"));
            }
            let mut config = HttpListenerConfig::default();
            if let Some(bind) = self.config.bind {
                config.bind = bind;
            }
            config.tls = self.config.tls.clone();
            config.max_connections = self.config.max_connections;
            config.service.max_body_bytes = self.config.ws.max_message_bytes;
            config.mounts = vec![Arc::new(WsMount::new(
                handler.clone(),
                self.config.ws.clone(),
            ))];
            config.worker_routes = false;
            let http = Arc::new(HttpListener::with_config(config));
            http.start(handler).await?;
            *self.http.lock().unwrap_or_else(|p| p.into_inner()) = Some(http);
            Ok(())
        })
    }

    fn stop(&self, drain: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let http = self.http.lock().unwrap_or_else(|p| p.into_inner()).take();
            match http {
                Some(h) => h.stop(drain).await,
                None => Ok(()),
            }
        })
    }

    fn endpoint(&self) -> Option<String> {
        self.http()
            .and_then(|h| h.endpoint())
            .map(|e| e.replacen("http", "ws", 1))
    }
}
