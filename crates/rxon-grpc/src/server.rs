//! The orchestrator side: [`GrpcListener`].

use crate::codec::*;
use crate::pb;
use crate::pb::worker_service_server::{WorkerService, WorkerServiceServer};
use crate::status::to_status;
use rxon_core::constants::{AUTH_HEADER_WORKER, PROTOCOL_VERSION_HEADER};
use rxon_core::validate::is_valid_identifier;
use rxon_core::{
    BoxFuture, Handler, Listener, ListenerOptions, RequestContext, Result, RxonError,
    ServerTlsOptions,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

/// Transport name in the [`RequestContext`] of gRPC requests.
pub const TRANSPORT_NAME: &str = "grpc";
/// Metadata key of the worker id.
pub const WORKER_ID_METADATA: &str = "x-worker-id";

/// Settings of a [`GrpcListener`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GrpcListenerConfig {
    /// Address to bind (default `127.0.0.1:0`).
    pub bind: SocketAddr,
    /// Longest a poll waits (a worker's shorter timeout wins; default 30 s).
    pub poll_wait: Duration,
    /// Largest message in either direction (default 16 MiB).
    pub max_message_bytes: usize,
    /// TLS, optionally with client certificates.
    pub tls: Option<ServerTlsOptions>,
    /// Most connections served at once (default 10,000; at least 1); further ones are
    /// closed as soon as they are accepted, and the worker retries with its backoff.
    pub max_connections: usize,
    /// Deadline for a new connection to finish its handshakes (TLS, the HTTP/2 preface
    /// and settings) and deliver a whole first request whose credential the handler
    /// accepts ([`Handler::authenticate`]); default 10 s. A connection that has not is
    /// closed, however many bytes or refused requests it sent, so stalled, idle or
    /// unauthenticated sockets cannot hold every slot of `max_connections`. A first
    /// request larger than the link carries in this time (a big result after a
    /// reconnect on a slow link) needs a longer deadline. Zero: no deadline.
    pub handshake_timeout: Duration,
    /// An HTTP/2 ping this often (default 30 s); a connection that does not answer
    /// within this long is closed, so one dropped silently by a NAT or firewall does
    /// not keep its polls and command stream open forever. Zero turns the pings off.
    pub keepalive: Duration,
    /// How many 1.0b17 nonces are remembered against replays (default
    /// [`DEFAULT_REPLAY_CAPACITY`](rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY)).
    pub replay_cache_capacity: usize,
}

/// The common knobs; `handshake_timeout` is the handshake deadline.
impl From<ListenerOptions> for GrpcListenerConfig {
    fn from(o: ListenerOptions) -> Self {
        GrpcListenerConfig {
            bind: o.bind,
            poll_wait: o.poll_wait,
            max_message_bytes: o.max_message_bytes,
            tls: o.tls,
            max_connections: o.max_connections,
            handshake_timeout: o.handshake_timeout,
            keepalive: o.keepalive,
            replay_cache_capacity: rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY,
        }
    }
}

impl Default for GrpcListenerConfig {
    fn default() -> Self {
        GrpcListenerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            poll_wait: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            tls: None,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            replay_cache_capacity: rxon_wire::envelope::DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// Serves the `rxon.v1.WorkerService` of `proto/rxon/v1/rxon.proto` over a [`Handler`].
#[derive(Debug)]
pub struct GrpcListener {
    config: GrpcListenerConfig,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl GrpcListener {
    /// A listener on `addr`.
    pub fn bind(addr: SocketAddr) -> Self {
        Self::with_config(GrpcListenerConfig {
            bind: addr,
            ..Default::default()
        })
    }

    /// A listener with the common [`ListenerOptions`] (the rest as in
    /// [`GrpcListenerConfig::default`]).
    pub fn with_options(options: ListenerOptions) -> Self {
        Self::with_config(options.into())
    }

    /// A listener with `config`.
    pub fn with_config(config: GrpcListenerConfig) -> Self {
        GrpcListener {
            config,
            running: Mutex::new(None),
        }
    }

    /// The bound address, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|r| r.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The connections still inside their handshake deadline, by peer address (unique
/// among a listener's open connections): the first request of a connection marks it
/// done, which lifts the deadline.
#[derive(Clone, Default)]
struct Handshakes(Arc<Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>>);

impl Handshakes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<AtomicBool>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the connection from `remote` is still inside its handshake deadline.
    fn is_pending(&self, remote: Option<SocketAddr>) -> bool {
        remote.is_some_and(|remote| self.lock().contains_key(&remote))
    }

    /// An accepted request arrived from `remote`: its connection's handshakes are
    /// complete.
    fn completed(&self, remote: Option<SocketAddr>) {
        let Some(remote) = remote else { return };
        if let Some(done) = self.lock().remove(&remote) {
            done.store(true, Ordering::Release);
        }
    }
}

/// A connection's handshake deadline, until its first request.
struct Handshake {
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: Arc<AtomicBool>,
    remote: SocketAddr,
    registry: Handshakes,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut pending = self.registry.lock();
        if pending
            .get(&self.remote)
            .is_some_and(|d| Arc::ptr_eq(d, &self.done))
        {
            pending.remove(&self.remote);
        }
    }
}

/// Accepts connections for tonic while fewer than `max` are open; closes the others at
/// once. Ends when the server drops its end of `out`.
async fn accept_loop(
    tcp: tokio::net::TcpListener,
    max: usize,
    handshake_within: Duration,
    handshakes: Handshakes,
    out: mpsc::Sender<std::io::Result<Counted>>,
) {
    let open = Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)));
    loop {
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            () = out.closed() => return,
        };
        match accepted {
            Ok((io, remote)) => match open.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _ = io.set_nodelay(true);
                    let handshake = (!handshake_within.is_zero()).then(|| {
                        let done = Arc::new(AtomicBool::new(false));
                        handshakes.lock().insert(remote, done.clone());
                        Handshake {
                            deadline: Box::pin(tokio::time::sleep(handshake_within)),
                            done,
                            remote,
                            registry: handshakes.clone(),
                        }
                    });
                    let counted = Counted {
                        io,
                        _permit: permit,
                        _open: rxon_net::metrics::Open::new("grpc"),
                        handshake,
                    };
                    if out.send(Ok(counted)).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    rxon_net::metrics::refused("grpc");
                    tracing::debug!(%remote, limit = max, "connection refused: too many");
                    drop(io);
                }
            },
            Err(e) => {
                // Out of file descriptors, most likely: give connections time to end.
                tracing::warn!(error = %e, "gRPC listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An accepted connection, counted against `max_connections` until it is dropped.
struct Counted {
    io: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
    _open: rxon_net::metrics::Open,
    /// Until the first request arrives: when it must have.
    handshake: Option<Handshake>,
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(handshake) = this.handshake.as_mut() {
            if handshake.done.load(Ordering::Acquire) {
                this.handshake = None;
            } else if handshake.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request before the handshake deadline",
                )));
            }
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

rxon_net::forward_async_write!([] Counted => io);

impl Listener for GrpcListener {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.lock().is_some() {
                return Err(RxonError::config("gRPC listener is already running"));
            }
            let mut builder = tonic::transport::Server::builder()
                .http2_keepalive_interval(
                    (!self.config.keepalive.is_zero()).then_some(self.config.keepalive),
                )
                .http2_keepalive_timeout(Some(self.config.keepalive));
            if let Some(tls) = &self.config.tls {
                let identity = tonic::transport::Identity::from_pem(
                    rxon_net::tls::read_pem(&tls.cert_file)?,
                    rxon_net::tls::read_pem(&tls.key_file)?,
                );
                let mut server_tls = tonic::transport::ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &tls.client_ca_file {
                    server_tls = server_tls
                        .client_ca_root(tonic::transport::Certificate::from_pem(
                            rxon_net::tls::read_pem(ca)?,
                        ))
                        .client_auth_optional(!tls.require_client_cert);
                } else if tls.require_client_cert {
                    return Err(RxonError::config(
                        "require_client_cert needs a client_ca_file",
                    ));
                }
                builder = builder
                    .tls_config(server_tls)
                    .map_err(|e| RxonError::config(format!("TLS: {e}")))?;
            }
            let tcp = tokio::net::TcpListener::bind(self.config.bind)
                .await
                .map_err(|e| {
                    RxonError::network(format!("cannot bind {}: {e}", self.config.bind))
                        .with_source(e)
                })?;
            let addr = tcp
                .local_addr()
                .map_err(|e| RxonError::network(e.to_string()))?;
            let (stop, stop_rx) = watch::channel(false);
            let handshakes = Handshakes::default();
            let service = WorkerServiceServer::new(Service {
                handler,
                poll_wait: self.config.poll_wait,
                stop: stop_rx.clone(),
                handshakes: handshakes.clone(),
                verifier: Arc::new(rxon_wire::envelope::Verifier::new(
                    self.config.replay_cache_capacity,
                )),
                keys: MetadataKeys::default(),
            })
            .max_decoding_message_size(self.config.max_message_bytes)
            .max_encoding_message_size(self.config.max_message_bytes);
            let mut shutdown = stop_rx;
            let (accepted, incoming) = mpsc::channel(16);
            tokio::spawn(accept_loop(
                tcp,
                self.config.max_connections,
                self.config.handshake_timeout,
                handshakes,
                accepted,
            ));
            let serve = builder.add_service(service).serve_with_incoming_shutdown(
                ReceiverStream::new(incoming),
                async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                },
            );
            let server = tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::warn!(error = %e, "gRPC server ended with an error");
                }
            });
            *self.lock() = Some(Running { addr, stop, server });
            Ok(())
        })
    }

    fn stop(&self, drain: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(running) = self.lock().take() else {
                return Ok(());
            };
            // Pending polls answer "no task", command streams end, then connections close.
            running.stop.send_replace(true);
            let mut server = running.server;
            if tokio::time::timeout(drain, &mut server).await.is_err() {
                tracing::warn!("gRPC drain deadline passed; closing the remaining connections");
                server.abort();
            }
            Ok(())
        })
    }

    fn endpoint(&self) -> Option<String> {
        let scheme = if self.config.tls.is_some() {
            "grpcs"
        } else {
            "grpc"
        };
        self.local_addr().map(|a| format!("{scheme}://{a}"))
    }
}

struct Service {
    handler: Arc<dyn Handler>,
    poll_wait: Duration,
    stop: watch::Receiver<bool>,
    handshakes: Handshakes,
    /// The replay cache of every connection.
    verifier: Arc<rxon_wire::envelope::Verifier>,
    keys: MetadataKeys,
}

/// The metadata keys read from every call, in the lowercase gRPC requires.
struct MetadataKeys {
    token: String,
    version: String,
}

impl Default for MetadataKeys {
    fn default() -> Self {
        MetadataKeys {
            token: AUTH_HEADER_WORKER.to_ascii_lowercase(),
            version: PROTOCOL_VERSION_HEADER.to_ascii_lowercase(),
        }
    }
}

impl Service {
    /// Every call starts here. The first call of a connection whose credential the
    /// handler accepts ([`Handler::authenticate`]) lifts the connection's handshake
    /// deadline: a peer that never sends an acceptable request cannot keep a slot.
    async fn context<T>(
        &self,
        request: &Request<T>,
    ) -> std::result::Result<RequestContext, Status> {
        let ctx = self.request_context(request)?;
        if self.handshakes.is_pending(ctx.remote_addr)
            && self.handler.authenticate(ctx.clone()).await.is_ok()
        {
            self.handshakes.completed(ctx.remote_addr);
        }
        Ok(ctx)
    }

    fn request_context<T>(
        &self,
        request: &Request<T>,
    ) -> std::result::Result<RequestContext, Status> {
        let meta = request.metadata();
        let text = |k: &str| meta.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut ctx = RequestContext::new(TRANSPORT_NAME);
        ctx.token = text(&self.keys.token);
        ctx.protocol_version = text(&self.keys.version);
        if let Some(id) = text(WORKER_ID_METADATA) {
            if !is_valid_identifier(&id) {
                return Err(Status::invalid_argument("invalid x-worker-id"));
            }
            ctx.worker_id = Some(id);
        }
        ctx.remote_addr = request.remote_addr();
        ctx.cert_identity = request
            .peer_certs()
            .and_then(|certs| rxon_net::tls::common_name(certs.first()?));
        Ok(ctx)
    }

    /// A 1.0b17 call's message carries the signed envelope: admitted before the
    /// handler sees it, as on every transport ([`rxon_wire::guard::admit_message`]).
    async fn admit<M: rxon_wire::Wire>(
        &self,
        message: &mut M,
        ctx: &RequestContext,
        ignore: &[&str],
    ) -> std::result::Result<(), Status> {
        if !ctx.protocol().signs() {
            return Ok(());
        }
        rxon_wire::guard::admit_message(&*self.handler, &self.verifier, message, ctx, ignore)
            .await
            .map_err(|e| to_status(&e))
    }

    /// A task as a 1.0b17 worker receives it: stamped and signed when the handler has
    /// a task key ([`rxon_wire::guard::task_for_worker`]).
    fn task_for(
        &self,
        ctx: &RequestContext,
        task: &rxon_core::TaskPayload,
    ) -> std::result::Result<pb::TaskPayload, Status> {
        if !ctx.protocol().signs() {
            return Ok(task_to_pb(task));
        }
        let Some(key) = self.handler.task_signing_key() else {
            return Ok(task_to_pb(task));
        };
        // Signed over what the worker will read from the protobuf message.
        let carried = task_from_pb(task_to_pb(task)).map_err(Status::internal)?;
        let signed = rxon_wire::guard::signed_task(&carried, &key)
            .map_err(|e| Status::internal(format!("cannot sign the task: {e}")))?;
        Ok(task_to_pb(&signed))
    }

    /// Poll and heartbeat name their worker in `x-worker-id` metadata.
    fn worker_id(ctx: &RequestContext) -> std::result::Result<(), Status> {
        ctx.worker_id
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| Status::invalid_argument("this call needs x-worker-id metadata"))
    }
}

fn invalid(e: String) -> Status {
    Status::invalid_argument(e)
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

type CommandStream = Pin<
    Box<
        dyn tonic::codegen::tokio_stream::Stream<
                Item = std::result::Result<pb::WorkerCommand, Status>,
            > + Send,
    >,
>;

#[tonic::async_trait]
impl WorkerService for Service {
    async fn register(
        &self,
        request: Request<pb::WorkerRegistration>,
    ) -> std::result::Result<Response<pb::RegisterReply>, Status> {
        let ctx = self.context(&request).await?;
        let mut registration = registration_from_pb(request.into_inner()).map_err(invalid)?;
        self.admit(&mut registration, &ctx, &[]).await?;
        let reply = self
            .handler
            .register(ctx, registration)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(register_reply_to_pb(&reply)))
    }

    async fn poll(
        &self,
        request: Request<pb::PollRequest>,
    ) -> std::result::Result<Response<pb::PollReply>, Status> {
        let ctx = self.context(&request).await?;
        Self::worker_id(&ctx)?;
        let wait = Duration::from_millis(request.get_ref().timeout_ms).min(self.poll_wait);
        let ctx_for_task = ctx.clone();
        let poll =
            tokio::time::timeout(wait + Duration::from_secs(5), self.handler.poll(ctx, wait));
        let task = tokio::select! {
            r = poll => r.unwrap_or(Ok(None)).map_err(|e| to_status(&e))?,
            () = stopped(self.stop.clone()) => None,
        };
        Ok(Response::new(pb::PollReply {
            task: task
                .as_ref()
                .map(|t| self.task_for(&ctx_for_task, t))
                .transpose()?,
        }))
    }

    async fn send_result(
        &self,
        request: Request<pb::TaskResult>,
    ) -> std::result::Result<Response<pb::ResultReply>, Status> {
        let ctx = self.context(&request).await?;
        let mut result = result_from_pb(request.into_inner()).map_err(invalid)?;
        self.admit(&mut result, &ctx, &[]).await?;
        let outcome = self
            .handler
            .result(ctx, result)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(outcome_to_pb(&outcome)))
    }

    async fn send_heartbeat(
        &self,
        request: Request<pb::Heartbeat>,
    ) -> std::result::Result<Response<pb::HeartbeatReply>, Status> {
        let ctx = self.context(&request).await?;
        Self::worker_id(&ctx)?;
        let mut heartbeat = heartbeat_from_pb(request.into_inner()).map_err(invalid)?;
        self.admit(&mut heartbeat, &ctx, &[]).await?;
        let reply = self
            .handler
            .heartbeat(ctx, Some(heartbeat))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(heartbeat_reply_to_pb(&reply)))
    }

    async fn send_progress(
        &self,
        request: Request<pb::ProgressUpdate>,
    ) -> std::result::Result<Response<pb::ProgressReply>, Status> {
        let ctx = self.context(&request).await?;
        let update = progress_from_pb(request.into_inner());
        self.handler
            .progress(ctx, update)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ProgressReply {}))
    }

    async fn emit_event(
        &self,
        request: Request<pb::WorkerEvent>,
    ) -> std::result::Result<Response<pb::EventReply>, Status> {
        let ctx = self.context(&request).await?;
        let mut event = event_from_pb(request.into_inner()).map_err(invalid)?;
        self.admit(&mut event, &ctx, rxon_wire::envelope::EVENT_UNSIGNED)
            .await?;
        self.handler
            .event(ctx, event)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::EventReply {}))
    }

    async fn token(
        &self,
        request: Request<pb::TokenRequest>,
    ) -> std::result::Result<Response<pb::TokenResponse>, Status> {
        let ctx = self.context(&request).await?;
        let token = self.handler.token(ctx).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(token_to_pb(&token)))
    }

    type CommandsStream = CommandStream;

    async fn commands(
        &self,
        request: Request<pb::CommandsRequest>,
    ) -> std::result::Result<Response<Self::CommandsStream>, Status> {
        let ctx = self.context(&request).await?;
        Self::worker_id(&ctx)?;
        let mut receiver = self
            .handler
            .commands(ctx)
            .await
            .map_err(|e| to_status(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let command = tokio::select! {
                    c = receiver.recv() => c,
                    () = stopped(stop.clone()) => None,
                    // The stream ended (the worker or its connection is gone): close the
                    // channel now rather than at the next command.
                    () = tx.closed() => None,
                };
                let Some(command) = command else { return };
                if tx.send(Ok(command_to_pb(&command))).await.is_err() {
                    // The worker went away: hand the command back.
                    receiver.undelivered(command);
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
