//! The worker side: [`WsTransport`].

use crate::codec::{
    Call, ClientFrame, Codec, PATH_PREFIX, PollArgs, Reply, ServerFrame, TokenArgs,
};
use futures_util::{SinkExt, StreamExt};
use rxon_core::constants::{AUTH_HEADER_WORKER, POLL_REQUEST_MARGIN_SECS, PROTOCOL_VERSION_HEADER};
use rxon_core::policy::{Policy, Token, TokenExchange};
use rxon_core::{
    BoxFuture, Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, Result,
    ResultOutcome, RxonError, TaskPayload, TaskResult, TokenResponse, Transport, TransportConfig,
    TransportFactory, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use rxon_wire::envelope::EVENT_UNSIGNED;
use rxon_wire::guard::seal_message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// URL schemes served by [`WsTransportFactory`].
pub const SCHEMES: &[&str] = &["ws", "wss"];

/// Requests waiting for their reply, by correlation id; `None` once the socket is gone,
/// so that a request can never wait on a session that will not answer.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<ServerFrame>>>>>;

/// One open socket.
struct Session {
    out: mpsc::Sender<Message>,
    pending: Pending,
    codec: Codec,
    /// Turns true when the socket is gone.
    dead: watch::Receiver<bool>,
}

impl Session {
    fn alive(&self) -> bool {
        !*self.dead.borrow()
    }
}

/// Every [`Transport`] operation over one WebSocket connection
/// (`ws(s)://host/_worker/rxon/{worker_id}`): a worker behind a proxy that allows one
/// upgraded connection needs nothing else.
///
/// - Requests carry correlation ids, so a result upload and a waiting poll share the
///   socket; commands are pushed on the same socket.
/// - Codec by subprotocol: MessagePack preferred, JSON accepted (set
///   `params.codec = "json"` in the transport options to insist on JSON).
/// - The same rules as HTTP: refresh the token once on 401, retry results on network
///   failures, typed errors.
/// - When the socket drops, requests in flight fail with a network error; the next
///   operation reconnects. `send_result` retries, so results are not lost to a blink.
pub struct WsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    worker_id: String,
    /// Lifecycle, credential, options: the contract's rules.
    policy: Policy,
    tls: Option<Arc<rustls::ClientConfig>>,
    codecs: Vec<Codec>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    commands_tx: mpsc::Sender<WorkerCommand>,
    commands: tokio::sync::Mutex<mpsc::Receiver<WorkerCommand>>,
    closed: watch::Sender<bool>,
    next_id: AtomicU64,
    /// The generation spoken: pinned, else the latest (rxon listeners serve both).
    protocol: rxon_core::Protocol,
    /// The secret of the 1.0b17 envelope.
    signing_key: String,
    /// The orchestrator's key for tasks' `sig`, and whether a task must carry one.
    task_key: Option<String>,
    require_task_signature: bool,
}

impl std::fmt::Debug for WsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsTransport")
            .field("url", &self.inner.base_url)
            .field("worker_id", &self.inner.worker_id)
            .finish_non_exhaustive()
    }
}

impl WsTransport {
    /// A transport from a configuration (`ws://` or `wss://` URL).
    pub fn from_config(config: &TransportConfig) -> Result<Self> {
        config.validate()?;
        let scheme = config.scheme()?;
        if scheme != "ws" && scheme != "wss" {
            return Err(RxonError::config(format!(
                "rxon-ws serves ws:// and wss:// URLs, not {scheme}://"
            )));
        }
        let tls = if scheme == "wss" {
            Some(Arc::new(rxon_net::tls::client_config(&config.options.tls)?))
        } else {
            None
        };
        let codecs = match config.options.param("codec").and_then(|v| v.as_str()) {
            None => vec![Codec::MessagePack, Codec::Json],
            Some("json") => vec![Codec::Json],
            Some("msgpack") => vec![Codec::MessagePack],
            Some(other) => {
                return Err(RxonError::config(format!(
                    "params.codec must be \"json\" or \"msgpack\", not {other:?}"
                )));
            }
        };
        let (commands_tx, commands) = mpsc::channel(64);
        Ok(WsTransport {
            inner: Arc::new(Inner {
                base_url: config.url.trim_end_matches('/').to_owned(),
                worker_id: config.worker_id.clone(),
                policy: Policy::new("WebSocket", config, |d| Box::pin(tokio::time::sleep(d))),
                tls,
                codecs,
                session: tokio::sync::Mutex::new(None),
                commands_tx,
                commands: tokio::sync::Mutex::new(commands),
                closed: watch::channel(false).0,
                next_id: AtomicU64::new(1),
                protocol: config.options.protocol.without_negotiation(),
                signing_key: config.envelope_key().to_owned(),
                task_key: config.options.task_key.clone(),
                require_task_signature: config.options.require_task_signature,
            }),
        })
    }

    /// The credential currently used.
    pub fn token(&self) -> String {
        self.inner.policy.token().as_str().to_owned()
    }

    /// The codec of the open session, if one is open.
    pub async fn codec(&self) -> Option<Codec> {
        self.inner
            .session
            .lock()
            .await
            .as_ref()
            .filter(|s| s.alive())
            .map(|s| s.codec)
    }

    /// The open session, connecting if there is none (or it died).
    async fn session(&self) -> Result<Arc<Session>> {
        self.inner.policy.ready()?;
        let mut slot = self.inner.session.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| s.alive()) {
            return Ok(s.clone());
        }
        let session = Arc::new(self.open().await?);
        *slot = Some(session.clone());
        Ok(session)
    }

    async fn open(&self) -> Result<Session> {
        let inner = &self.inner;
        let url = format!("{}{PATH_PREFIX}{}", inner.base_url, inner.worker_id);
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            )
            .map_err(|e| RxonError::config(format!("invalid URL {url}: {e}")))?;
        let token = self.token();
        let h = request.headers_mut();
        h.insert(
            AUTH_HEADER_WORKER,
            http::HeaderValue::from_str(&token).map_err(|_| {
                RxonError::config("the token contains characters not allowed in a header")
            })?,
        );
        h.insert(
            PROTOCOL_VERSION_HEADER,
            http::HeaderValue::from_static(inner.protocol.as_str()),
        );
        let offer: Vec<&str> = inner.codecs.iter().map(|c| c.subprotocol()).collect();
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_str(&offer.join(", "))
                .map_err(|e| RxonError::config(e.to_string()))?,
        );
        let stream = rxon_net::dial::connect_stream(
            &inner.base_url.replacen("ws", "http", 1),
            inner.tls.as_ref(),
            inner.policy.options(),
        )
        .await?;
        // Any byte read is proof of life, a large frame still arriving included.
        let heard = Arc::new(AtomicBool::new(true));
        let stream = rxon_net::io::Tap::new(stream, rxon_net::io::Heard(heard.clone()));
        let config = WebSocketConfig::default()
            .max_message_size(Some(inner.policy.options().max_message_bytes))
            .max_frame_size(Some(inner.policy.options().max_message_bytes));
        let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
        let (ws, response) =
            match tokio::time::timeout(inner.policy.options().connect_timeout, handshake).await {
                Err(_) => {
                    return Err(RxonError::timeout(format!(
                        "{url}: no WebSocket handshake in time"
                    )));
                }
                Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                    let body = response.body().as_deref().unwrap_or_default().to_vec();
                    return Err(rxon_net::status::error_for_status(
                        response.status(),
                        &body,
                        None,
                        &format!("GET {url}"),
                    ));
                }
                Ok(Err(e)) => return Err(RxonError::network(format!("{url}: {e}")).with_source(e)),
                Ok(Ok(pair)) => pair,
            };
        let codec = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .and_then(Codec::from_subprotocol)
            .filter(|c| inner.codecs.contains(c))
            .ok_or_else(|| {
                RxonError::protocol(format!("{url}: the listener chose no codec we offered"))
            })?;

        let (sink, stream) = ws.split();
        let (out, out_rx) = mpsc::channel::<Message>(256);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (dead_tx, dead) = watch::channel(false);
        let dead_tx = Arc::new(dead_tx);
        // Writer (with the keepalive) and reader of the session.
        let writer_heard = heard;
        let writer_dead = dead_tx.clone();
        let closed = inner.closed.subscribe();
        let keepalive = inner.policy.options().keepalive;
        let write_limit = keepalive.max(inner.policy.options().request_timeout);
        tokio::spawn(write_loop(
            sink,
            out_rx,
            writer_heard,
            writer_dead,
            closed,
            (keepalive, write_limit),
        ));
        let reader_pending = pending.clone();
        let commands = inner.commands_tx.clone();
        let writer_gone = dead.clone();
        tokio::spawn(read_loop(
            stream,
            codec,
            reader_pending,
            commands,
            writer_gone,
            dead_tx,
        ));
        Ok(Session {
            out,
            pending,
            codec,
            dead,
        })
    }

    /// One request and its reply, within `timeout`.
    /// `call` as this attempt sends it: in 1.0b17 a worker message is sealed afresh
    /// ([`rxon_wire::guard::seal_message`], as every transport seals).
    fn sealed(&self, call: &Call) -> Result<Call> {
        if !self.inner.protocol.signs() {
            return Ok(call.clone());
        }
        let (key, me) = (&self.inner.signing_key, &self.inner.worker_id);
        let seal = |e: rxon_wire::WireError| e.outgoing("the signed envelope");
        Ok(match call {
            Call::Register(m) => Call::Register(seal_message(m, key, me, &[]).map_err(seal)?),
            Call::Heartbeat(m) => Call::Heartbeat(seal_message(m, key, me, &[]).map_err(seal)?),
            Call::Result(m) => Call::Result(seal_message(m, key, me, &[]).map_err(seal)?),
            Call::Event(m) => Call::Event(seal_message(m, key, me, EVENT_UNSIGNED).map_err(seal)?),
            other => other.clone(),
        })
    }

    async fn request(&self, call: &Call, timeout: Duration) -> Result<Reply> {
        let call = &self.sealed(call)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // A session can die between being handed out and taking the request: then
        // nothing was sent, and one more session is tried.
        let mut tx = Some(tx);
        let mut session = None;
        for _ in 0..2 {
            let candidate = self.session().await?;
            let registered = match candidate
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                Some(waiting) => {
                    if let Some(sender) = tx.take() {
                        waiting.insert(id, sender);
                    }
                    true
                }
                None => false,
            };
            if registered {
                session = Some(candidate);
                break;
            }
        }
        let Some(session) = session else {
            return Err(RxonError::network(format!(
                "{}: the connection closed as the request was made",
                call.name()
            )));
        };
        let frame = session.codec.encode(&ClientFrame {
            id,
            call: call.clone(),
        })?;
        let what = call.name();
        let result = async {
            session
                .out
                .send(frame)
                .await
                .map_err(|_| RxonError::network(format!("{what}: the connection is gone")))?;
            rx.await.map_err(|_| {
                RxonError::network(format!("{what}: the connection dropped before the reply"))
            })
        };
        let answer = match tokio::time::timeout(timeout, result).await {
            Ok(r) => r,
            Err(_) => Err(RxonError::timeout(format!(
                "{what}: no reply within {timeout:?}"
            ))),
        };
        if let Some(waiting) = session
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            waiting.remove(&id);
        }
        // A call that close() cut short ends as the contract says: Closed.
        let answer = answer.map_err(|e| {
            if self.inner.policy.is_closed() {
                RxonError::closed(format!("{what}: the transport was closed"))
            } else {
                e
            }
        });
        match answer? {
            ServerFrame::Reply { reply, .. } => Ok(reply),
            ServerFrame::Error { error, .. } => {
                let retry = error.retry_after_ms.map(Duration::from_millis);
                Err(RxonError::for_status(
                    error.status,
                    what,
                    &error.message,
                    retry,
                ))
            }
            ServerFrame::Command { .. } => {
                Err(RxonError::protocol("a command where a reply was expected"))
            }
        }
    }

    /// A request through the policy (a refused credential is refreshed once). The
    /// session carries the credential: the upgrade's, then the one a token request
    /// issued.
    async fn call(&self, call: Call, timeout: Duration) -> Result<Reply> {
        let call = &call;
        self.inner
            .policy
            .call(self, |_| self.request(call, timeout))
            .await
    }
}

/// One token request on the session (the session then carries the new token); the
/// policy's [`Credential`](rxon_core::policy::Credential) installs it.
impl TokenExchange for WsTransport {
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
        Box::pin(async move {
            // The session's credential is the current token; the configured one (the
            // fallback after a refused issued token) is named explicitly.
            let call = if token.generation() == 0 && token.as_str() != self.token() {
                Call::TokenWith(TokenArgs {
                    credential: token.as_str().to_owned(),
                })
            } else {
                Call::Token
            };
            match self
                .request(&call, self.inner.policy.options().request_timeout)
                .await?
            {
                Reply::Token(t) => Ok(t),
                other => Err(unexpected("token", &other)),
            }
        })
    }
}

/// The socket of a session, as the worker dials it.
type Socket = tokio_tungstenite::WebSocketStream<
    rxon_net::io::Tap<rxon_net::dial::ClientStream, rxon_net::io::Heard>,
>;

/// A session's writer: frames out, plus a keepalive ping. A connection that answered
/// nothing (no pong, no reply, no command) between two pings is gone: a NAT or firewall
/// may drop it without a word. So is one that does not take a frame within the request
/// deadline. The session dies (`writer_dead`) and the next operation opens a new one.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut out_rx: mpsc::Receiver<Message>,
    writer_heard: Arc<AtomicBool>,
    writer_dead: Arc<watch::Sender<bool>>,
    mut closed: watch::Receiver<bool>,
    (keepalive, write_limit): (Duration, Duration),
) {
    let mut ping = rxon_net::keepalive::Pings::every(keepalive);
    loop {
        let message = tokio::select! {
            m = out_rx.recv() => match m { Some(m) => m, None => break },
            () = ping.tick() => {
                if !writer_heard.swap(false, Ordering::Relaxed) {
                    tracing::warn!(?keepalive, "WebSocket peer silent for two keepalives; reconnecting");
                    break;
                }
                Message::Ping(Vec::new().into())
            }
            () = until(&mut closed) => {
                let _ = tokio::time::timeout(keepalive, sink.send(Message::Close(None))).await;
                break;
            }
        };
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(write_limit, sink.send(message)).await {
            // A frame that took a while to go out (a large one on a slow link)
            // went out because the peer acknowledged it: proof of life, and our
            // ping waited behind it.
            Ok(Ok(())) if started.elapsed() >= keepalive / 2 => {
                writer_heard.store(true, Ordering::Relaxed);
            }
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!(?write_limit, "WebSocket peer stopped reading; reconnecting");
                break;
            }
        }
    }
    writer_dead.send_replace(true);
}

/// A session's reader: replies to their requests, commands to the command queue, until
/// the socket ends or the writer declares the session dead.
async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Socket>,
    codec: Codec,
    reader_pending: Pending,
    commands: mpsc::Sender<WorkerCommand>,
    mut writer_gone: watch::Receiver<bool>,
    dead_tx: Arc<watch::Sender<bool>>,
) {
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            // The writer declared the session dead: stop reading and drop the
            // socket, so requests waiting on it fail now.
            _ = writer_gone.wait_for(|d| *d) => break,
        };
        let Some(frame) = frame else { break };
        let message = match frame {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket session ended");
                break;
            }
        };
        if matches!(message, Message::Close(_)) {
            break;
        }
        match codec.decode::<ServerFrame>(&message) {
            Ok(Some(ServerFrame::Command { command })) => {
                if !command.command.is_known() {
                    tracing::warn!(command = %command.command, "unknown command skipped");
                } else {
                    // Never wait here: replies behind this frame would wait too.
                    match commands.try_send(command) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(c)) => tracing::warn!(
                            task_id = ?c.task_id,
                            "command dropped: nobody reads next_command (an orchestrator \
                             repeats cancels in heartbeat replies)"
                        ),
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
            }
            Ok(Some(frame @ (ServerFrame::Reply { .. } | ServerFrame::Error { .. }))) => {
                let id = match &frame {
                    ServerFrame::Reply { id, .. } | ServerFrame::Error { id, .. } => *id,
                    ServerFrame::Command { .. } => continue,
                };
                let waiter = reader_pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .and_then(|waiting| waiting.remove(&id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(frame);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "bad frame skipped"),
        }
    }
    dead_tx.send_replace(true);
    // Requests still waiting fail now (their senders are dropped), and later ones
    // cannot register here.
    reader_pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
}

/// Resolves when `rx` turns true or its sender is gone.
async fn until(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn unexpected(op: &str, reply: &Reply) -> RxonError {
    RxonError::protocol(format!(
        "{op}: the listener answered a different operation ({reply:?})"
    ))
}

impl Transport for WsTransport {
    fn name(&self) -> &'static str {
        "ws"
    }

    fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    fn connect(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.inner.policy.connect() })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.inner.policy.close();
            self.inner.closed.send_replace(true);
            *self.inner.session.lock().await = None;
            Ok(())
        })
    }

    fn register<'a>(
        &'a self,
        registration: &'a WorkerRegistration,
    ) -> BoxFuture<'a, Result<RegisterReply>> {
        Box::pin(async move {
            match self
                .call(
                    Call::Register(registration.clone()),
                    self.inner.policy.options().request_timeout,
                )
                .await?
            {
                Reply::Register(r) => Ok(r),
                other => Err(unexpected("register", &other)),
            }
        })
    }

    fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>> {
        Box::pin(async move {
            let args = PollArgs {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
            let deadline = timeout + Duration::from_secs(POLL_REQUEST_MARGIN_SECS);
            match self.call(Call::Poll(args), deadline).await? {
                Reply::Poll(task) => {
                    if let Some(task) = &task {
                        // The orchestrator's `sig`, checked as every transport checks it.
                        rxon_wire::guard::check_task_message(
                            task,
                            self.inner.protocol,
                            self.inner.task_key.as_deref(),
                            self.inner.require_task_signature,
                        )?;
                    }
                    Ok(task.map(|t| *t))
                }
                other => Err(unexpected("poll", &other)),
            }
        })
    }

    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
        Box::pin(async move {
            let call = Call::Result(result.clone());
            let (call, timeout) = (&call, self.inner.policy.options().request_timeout);
            self.inner
                .policy
                .send_result(self, |_| async move {
                    match self.request(call, timeout).await? {
                        Reply::Result(outcome) => Ok(Some(outcome)),
                        other => Err(unexpected("result", &other)),
                    }
                })
                .await
        })
    }

    fn send_heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<HeartbeatReply>> {
        Box::pin(async move {
            match self
                .call(
                    Call::Heartbeat(heartbeat.clone()),
                    self.inner.policy.options().request_timeout,
                )
                .await?
            {
                Reply::Heartbeat(r) => Ok(r),
                other => Err(unexpected("heartbeat", &other)),
            }
        })
    }

    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self
                .call(
                    Call::Progress(progress.clone()),
                    self.inner.policy.options().request_timeout,
                )
                .await?
            {
                Reply::Progress => Ok(()),
                other => Err(unexpected("progress", &other)),
            }
        })
    }

    fn known_protocol(&self) -> Option<rxon_core::Protocol> {
        Some(self.inner.protocol)
    }

    fn emit_event<'a>(&'a self, event: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self
                .call(
                    Call::Event(event.clone()),
                    self.inner.policy.options().request_timeout,
                )
                .await?
            {
                Reply::Event => Ok(()),
                other => Err(unexpected("event", &other)),
            }
        })
    }

    fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
        Box::pin(self.inner.policy.next_command(move || async move {
            // Commands arrive on the session: make sure there is one.
            let session = self.session().await?;
            let mut dead = session.dead.clone();
            let mut closed = self.inner.closed.subscribe();
            let mut queue = self.inner.commands.lock().await;
            tokio::select! {
                command = queue.recv() => Ok(command),
                () = until(&mut closed) => Ok(None),
                () = until(&mut dead) => Err(RxonError::network("the WebSocket session dropped; it reconnects on the next call")),
            }
        }))
    }

    fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>> {
        Box::pin(self.inner.policy.refresh_token(self))
    }
}

/// Builds [`WsTransport`]s for `ws://` and `wss://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct WsTransportFactory;

impl TransportFactory for WsTransportFactory {
    fn schemes(&self) -> &[&'static str] {
        SCHEMES
    }

    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        Ok(Box::new(WsTransport::from_config(config)?))
    }
}
