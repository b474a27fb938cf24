//! The orchestrator side: [`GrpcListener`].

use crate::convert::*;
use crate::pb;
use crate::pb::worker_service_server::{WorkerService, WorkerServiceServer};
use crate::status::to_status;
use rxon_core::constants::{AUTH_HEADER_WORKER, PROTOCOL_VERSION_HEADER};
use rxon_core::validate::is_valid_identifier;
use rxon_core::{
    BoxFuture, Handler, Listener, RequestContext, Result, RxonError, ServerTlsOptions,
};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
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
}

impl Default for GrpcListenerConfig {
    fn default() -> Self {
        GrpcListenerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            poll_wait: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            tls: None,
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

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| RxonError::config(format!("TLS: cannot read {}: {e}", path.display())))
}

impl Listener for GrpcListener {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.lock().is_some() {
                return Err(RxonError::config("gRPC listener is already running"));
            }
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = &self.config.tls {
                let identity = tonic::transport::Identity::from_pem(
                    read(&tls.cert_file)?,
                    read(&tls.key_file)?,
                );
                let mut server_tls = tonic::transport::ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &tls.client_ca_file {
                    server_tls = server_tls
                        .client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?))
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
            let service = WorkerServiceServer::new(Service {
                handler,
                poll_wait: self.config.poll_wait,
                stop: stop_rx.clone(),
            })
            .max_decoding_message_size(self.config.max_message_bytes)
            .max_encoding_message_size(self.config.max_message_bytes);
            let mut shutdown = stop_rx;
            let serve = builder.add_service(service).serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(tcp),
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
}

impl Service {
    fn context<T>(&self, request: &Request<T>) -> std::result::Result<RequestContext, Status> {
        let meta = request.metadata();
        let text = |k: &str| meta.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut ctx = RequestContext::new(TRANSPORT_NAME);
        ctx.token = text(&AUTH_HEADER_WORKER.to_ascii_lowercase());
        ctx.protocol_version = text(&PROTOCOL_VERSION_HEADER.to_ascii_lowercase());
        if let Some(id) = text(WORKER_ID_METADATA) {
            if !is_valid_identifier(&id) {
                return Err(Status::invalid_argument("invalid x-worker-id"));
            }
            ctx.worker_id = Some(id);
        }
        ctx.remote_addr = request.remote_addr();
        ctx.cert_identity = request.peer_certs().and_then(|certs| {
            let leaf = certs.first()?;
            let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
            let cn = cert.subject().iter_common_name().next()?;
            cn.as_str().ok().map(str::to_owned)
        });
        Ok(ctx)
    }

    fn worker_id(ctx: &RequestContext) -> std::result::Result<String, Status> {
        ctx.worker_id
            .clone()
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
        let ctx = self.context(&request)?;
        let registration = registration_from_pb(request.into_inner()).map_err(invalid)?;
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
        let ctx = self.context(&request)?;
        let worker_id = Self::worker_id(&ctx)?;
        let wait = Duration::from_millis(request.get_ref().timeout_ms).min(self.poll_wait);
        let poll = tokio::time::timeout(
            wait + Duration::from_secs(5),
            self.handler.poll(ctx, worker_id, wait),
        );
        let task = tokio::select! {
            r = poll => r.unwrap_or(Ok(None)).map_err(|e| to_status(&e))?,
            () = stopped(self.stop.clone()) => None,
        };
        Ok(Response::new(pb::PollReply {
            task: task.as_ref().map(task_to_pb),
        }))
    }

    async fn send_result(
        &self,
        request: Request<pb::TaskResult>,
    ) -> std::result::Result<Response<pb::ResultReply>, Status> {
        let ctx = self.context(&request)?;
        let result = result_from_pb(request.into_inner()).map_err(invalid)?;
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
        let ctx = self.context(&request)?;
        let worker_id = Self::worker_id(&ctx)?;
        let heartbeat = heartbeat_from_pb(request.into_inner());
        let reply = self
            .handler
            .heartbeat(ctx, worker_id, Some(heartbeat))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(heartbeat_reply_to_pb(&reply)))
    }

    async fn send_progress(
        &self,
        request: Request<pb::ProgressUpdate>,
    ) -> std::result::Result<Response<pb::ProgressReply>, Status> {
        let ctx = self.context(&request)?;
        let update = progress_from_pb(request.into_inner());
        self.handler
            .progress(ctx, update)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(pb::ProgressReply {}))
    }

    async fn token(
        &self,
        request: Request<pb::TokenRequest>,
    ) -> std::result::Result<Response<pb::TokenResponse>, Status> {
        let ctx = self.context(&request)?;
        let token = self.handler.token(ctx).await.map_err(|e| to_status(&e))?;
        Ok(Response::new(token_to_pb(&token)))
    }

    type CommandsStream = CommandStream;

    async fn commands(
        &self,
        request: Request<pb::CommandsRequest>,
    ) -> std::result::Result<Response<Self::CommandsStream>, Status> {
        let ctx = self.context(&request)?;
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
                };
                let Some(command) = command else { return };
                if tx.send(Ok(command_to_pb(&command))).await.is_err() {
                    // The worker went away: hand the command back.
                    receiver.undelivered(command);
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream(rx))))
    }
}

/// An mpsc receiver as a stream.
struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> tonic::codegen::tokio_stream::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
