//! The worker side: [`GrpcTransport`].

use crate::codec::*;
use crate::pb;
use crate::pb::worker_service_client::WorkerServiceClient;
use crate::server::WORKER_ID_METADATA;
use crate::status::from_status;
use rxon_core::constants::{AUTH_HEADER_WORKER, POLL_REQUEST_MARGIN_SECS, PROTOCOL_VERSION_HEADER};
use rxon_core::policy::{Policy, Token, TokenExchange};
use rxon_core::{
    BoxFuture, Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, Result,
    ResultOutcome, RxonError, TaskPayload, TaskResult, TokenResponse, Transport, TransportConfig,
    TransportFactory, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};

/// URL schemes served by [`GrpcTransportFactory`].
pub const SCHEMES: &[&str] = &["grpc", "grpcs"];

type Client = WorkerServiceClient<Channel>;

/// A worker's connection to an orchestrator over gRPC (`grpc://`, `grpcs://`).
///
/// Unary calls with deadlines for every operation (a poll's deadline is its timeout
/// plus a margin), a server stream for commands; credentials in metadata
/// (`x-worker-token`, `x-rxon-version`, `x-worker-id`); `UNAUTHENTICATED` triggers one
/// token refresh and one retry; statuses map to the same [`ErrorKind`](rxon_core::ErrorKind)
/// families as on HTTP. TLS: system roots, or `tls.ca_file`; client certificate for mTLS.
pub struct GrpcTransport {
    inner: Arc<Inner>,
}

struct Inner {
    worker_id: String,
    client: Client,
    /// Lifecycle, credential, options: the contract's rules.
    policy: Policy,
    commands: tokio::sync::Mutex<Option<tonic::Streaming<pb::WorkerCommand>>>,
    closed: watch::Sender<bool>,
    /// The generation spoken: pinned, else the latest (rxon listeners serve both).
    protocol: rxon_core::Protocol,
    /// What every call carries, parsed once.
    metadata: Metadata,
    /// The secret of the 1.0b17 envelope.
    signing_key: String,
    /// The orchestrator's key for tasks' `sig`, and whether a task must carry one.
    task_key: Option<String>,
    require_task_signature: bool,
}

/// The metadata keys and the values every call of one transport carries.
struct Metadata {
    token_key: MetadataKey<Ascii>,
    version_key: MetadataKey<Ascii>,
    version: MetadataValue<Ascii>,
    worker_id: MetadataValue<Ascii>,
}

impl Metadata {
    fn new(protocol: rxon_core::Protocol, worker_id: &str) -> Result<Metadata> {
        let key = |name: &str| {
            MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| RxonError::config(format!("metadata key {name}")))
        };
        Ok(Metadata {
            token_key: key(AUTH_HEADER_WORKER)?,
            version_key: key(PROTOCOL_VERSION_HEADER)?,
            version: MetadataValue::from_static(protocol.as_str()),
            worker_id: metadata_value(worker_id)?,
        })
    }
}

/// A credential or id as a metadata value.
fn metadata_value(v: &str) -> Result<MetadataValue<Ascii>> {
    v.parse().map_err(|_| {
        RxonError::config("a credential or id contains characters not allowed in metadata")
    })
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("worker_id", &self.inner.worker_id)
            .finish_non_exhaustive()
    }
}

impl GrpcTransport {
    /// A transport from a configuration (`grpc://host:port` or `grpcs://host:port`).
    /// No connection is made until the first call.
    pub fn from_config(config: &TransportConfig) -> Result<Self> {
        config.validate()?;
        let scheme = config.scheme()?;
        let http_url = match scheme.as_str() {
            "grpc" => config.url.replacen("grpc", "http", 1),
            "grpcs" => config.url.replacen("grpcs", "https", 1),
            other => {
                return Err(RxonError::config(format!(
                    "rxon-grpc serves grpc:// and grpcs:// URLs, not {other}://"
                )));
            }
        };
        let o = &config.options;
        let mut endpoint = Endpoint::from_shared(http_url.clone())
            .map_err(|e| RxonError::config(format!("invalid URL {}: {e}", config.url)))?
            .connect_timeout(o.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(o.keepalive)
            .keep_alive_timeout(o.keepalive);
        if scheme == "grpcs" {
            let mut tls = ClientTlsConfig::new();
            tls = match &o.tls.ca_file {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(rxon_net::tls::read_pem(ca)?)),
                None => tls.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&o.tls.client_cert, &o.tls.client_key) {
                tls = tls.identity(Identity::from_pem(
                    rxon_net::tls::read_pem(cert)?,
                    rxon_net::tls::read_pem(key)?,
                ));
            }
            if let Some(name) = &o.tls.server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| RxonError::config(format!("TLS: {e}")))?;
        }
        // The one dialer (direct or through the proxy); tonic adds TLS on top.
        let channel = endpoint.connect_with_connector_lazy(rxon_net::dial::Connector::new(o));
        let client = WorkerServiceClient::new(channel)
            .max_decoding_message_size(o.max_message_bytes)
            .max_encoding_message_size(o.max_message_bytes);
        Ok(GrpcTransport {
            inner: Arc::new(Inner {
                worker_id: config.worker_id.clone(),
                client,
                policy: Policy::new("gRPC", config, |d| Box::pin(tokio::time::sleep(d))),
                commands: tokio::sync::Mutex::new(None),
                closed: watch::channel(false).0,
                protocol: config.options.protocol.without_negotiation(),
                metadata: Metadata::new(
                    config.options.protocol.without_negotiation(),
                    &config.worker_id,
                )?,
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
}

impl Inner {
    fn request<T>(&self, message: T, token: &str, timeout: Option<Duration>) -> Result<Request<T>> {
        let mut request = Request::new(message);
        let meta = request.metadata_mut();
        meta.insert(self.metadata.token_key.clone(), metadata_value(token)?);
        meta.insert(
            self.metadata.version_key.clone(),
            self.metadata.version.clone(),
        );
        meta.insert(WORKER_ID_METADATA, self.metadata.worker_id.clone());
        if let Some(t) = timeout {
            request.set_timeout(t);
        }
        Ok(request)
    }

    /// One call with its deadline, through the policy (`UNAUTHENTICATED` refreshes the
    /// token once).
    async fn call<T, R, F, Fut>(
        &self,
        what: &'static str,
        message: impl Fn() -> Result<T>,
        timeout: Duration,
        call: F,
    ) -> Result<R>
    where
        F: Fn(Client, Request<T>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<R>, Status>>,
    {
        let (message, call) = (&message, &call);
        self.policy
            .call(self, |token| async move {
                // Built for each attempt: a signed message is sealed afresh.
                let request = self.request(message()?, token.as_str(), Some(timeout))?;
                match tokio::time::timeout(timeout, call(self.client.clone(), request)).await {
                    Err(_) => Err(RxonError::timeout(format!(
                        "{what}: no reply within {timeout:?}"
                    ))),
                    Ok(Ok(response)) => Ok(response.into_inner()),
                    Ok(Err(status)) => Err(from_status(&status, what)),
                }
            })
            .await
    }
}

/// The `Token` call with the token given.
impl Inner {
    /// `message` as this attempt sends it: in 1.0b17 sealed afresh
    /// ([`rxon_wire::guard::seal_message`], as every transport seals) over what the
    /// listener will read from the protobuf message, so that it verifies there.
    fn sealed<M: rxon_wire::Wire, P>(
        &self,
        message: &M,
        to_pb: fn(&M) -> P,
        from_pb: fn(P) -> std::result::Result<M, Invalid>,
        ignore: &[&str],
    ) -> Result<P> {
        if !self.protocol.signs() {
            return Ok(to_pb(message));
        }
        let carried = from_pb(to_pb(message))
            .map_err(|e| RxonError::invalid_input(format!("cannot encode {}: {e}", M::NAME)))?;
        let sealed =
            rxon_wire::guard::seal_message(&carried, &self.signing_key, &self.worker_id, ignore)
                .map_err(|e| e.outgoing("the signed envelope"))?;
        Ok(to_pb(&sealed))
    }
}

impl TokenExchange for Inner {
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
        Box::pin(async move {
            let timeout = self.policy.options().request_timeout;
            let request = self.request(pb::TokenRequest {}, token.as_str(), Some(timeout))?;
            let mut client = self.client.clone();
            let response = tokio::time::timeout(timeout, client.token(request))
                .await
                .map_err(|_| RxonError::timeout("token: no reply in time"))?
                .map_err(|s| from_status(&s, "token"))?;
            Ok(token_from_pb(response.into_inner()))
        })
    }
}

impl GrpcTransport {
    fn decode<V>(what: &str, v: std::result::Result<V, String>) -> Result<V> {
        v.map_err(|e| RxonError::protocol(format!("{what}: invalid reply: {e}")))
    }
}

async fn until(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

impl Transport for GrpcTransport {
    fn name(&self) -> &'static str {
        "grpc"
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
            Ok(())
        })
    }

    fn register<'a>(
        &'a self,
        registration: &'a WorkerRegistration,
    ) -> BoxFuture<'a, Result<RegisterReply>> {
        Box::pin(async move {
            let reply = self
                .inner
                .call(
                    "register",
                    || {
                        self.inner.sealed(
                            registration,
                            registration_to_pb,
                            registration_from_pb,
                            &[],
                        )
                    },
                    self.inner.policy.options().request_timeout,
                    |mut c, r| async move { c.register(r).await },
                )
                .await?;
            Self::decode("register", register_reply_from_pb(reply))
        })
    }

    fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>> {
        Box::pin(async move {
            let message = pb::PollRequest {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
            let deadline = timeout + Duration::from_secs(POLL_REQUEST_MARGIN_SECS);
            let reply = self
                .inner
                .call(
                    "poll",
                    || Ok(message),
                    deadline,
                    |mut c, r| async move { c.poll(r).await },
                )
                .await?;
            let task = reply
                .task
                .map(|t| Self::decode("poll", task_from_pb(t)))
                .transpose()?;
            if let Some(task) = &task {
                // The orchestrator's `sig`, checked as every transport checks it.
                let inner = &self.inner;
                rxon_wire::guard::check_task_message(
                    task,
                    inner.protocol,
                    inner.task_key.as_deref(),
                    inner.require_task_signature,
                )?;
            }
            Ok(task)
        })
    }

    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let timeout = inner.policy.options().request_timeout;
            inner
                .policy
                .send_result(inner, |token| async move {
                    let message = inner.sealed(result, result_to_pb, result_from_pb, &[])?;
                    let request = inner.request(message, token.as_str(), Some(timeout))?;
                    let mut client = inner.client.clone();
                    match tokio::time::timeout(timeout, client.send_result(request)).await {
                        Err(_) => Err(RxonError::timeout(format!(
                            "result: no reply within {timeout:?}"
                        ))),
                        Ok(Ok(reply)) => Ok(Some(outcome_from_pb(reply.into_inner()))),
                        Ok(Err(status)) => Err(from_status(&status, "result")),
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
            let reply = self
                .inner
                .call(
                    "heartbeat",
                    || {
                        self.inner
                            .sealed(heartbeat, heartbeat_to_pb, heartbeat_from_pb, &[])
                    },
                    self.inner.policy.options().request_timeout,
                    |mut c, r| async move { c.send_heartbeat(r).await },
                )
                .await?;
            Self::decode("heartbeat", heartbeat_reply_from_pb(reply))
        })
    }

    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner
                .call(
                    "progress",
                    || Ok(progress_to_pb(progress)),
                    self.inner.policy.options().request_timeout,
                    |mut c, r| async move { c.send_progress(r).await },
                )
                .await
                .map(|_| ())
        })
    }

    fn known_protocol(&self) -> Option<rxon_core::Protocol> {
        Some(self.inner.protocol)
    }

    fn emit_event<'a>(&'a self, event: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner
                .call(
                    "event",
                    || {
                        self.inner.sealed(
                            event,
                            event_to_pb,
                            event_from_pb,
                            rxon_wire::envelope::EVENT_UNSIGNED,
                        )
                    },
                    self.inner.policy.options().request_timeout,
                    |mut c, r| async move { c.emit_event(r).await },
                )
                .await
                .map(|_| ())
        })
    }

    fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
        let inner = &*self.inner;
        Box::pin(inner.policy.next_command(move || async move {
            let mut closed = inner.closed.subscribe();
            let mut slot = inner.commands.lock().await;
            if slot.is_none() {
                // The stream lives until the listener ends it: no deadline on the call,
                // only on getting it started.
                let timeout = inner.policy.options().request_timeout;
                let stream = inner
                    .policy
                    .call(inner, |token| async move {
                        let request =
                            inner.request(pb::CommandsRequest {}, token.as_str(), None)?;
                        let mut client = inner.client.clone();
                        tokio::time::timeout(timeout, client.commands(request))
                            .await
                            .map_err(|_| RxonError::timeout("commands: no reply in time"))?
                            .map_err(|status| from_status(&status, "commands"))
                    })
                    .await?;
                *slot = Some(stream.into_inner());
            }
            let Some(stream) = slot.as_mut() else {
                return Ok(None);
            };
            loop {
                let message = tokio::select! {
                    m = stream.message() => m,
                    () = until(&mut closed) => return Ok(None),
                };
                match message {
                    Ok(Some(command)) => match command_from_pb(command) {
                        Ok(c) if c.command.is_known() => return Ok(Some(c)),
                        Ok(c) => tracing::warn!(command = %c.command, "unknown command skipped"),
                        Err(e) => tracing::warn!(error = %e, "invalid command skipped"),
                    },
                    Ok(None) => {
                        *slot = None;
                        return Err(RxonError::network(
                            "the command stream ended; it reopens on the next call",
                        ));
                    }
                    Err(status) => {
                        *slot = None;
                        return Err(from_status(&status, "commands"));
                    }
                }
            }
        }))
    }

    fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>> {
        Box::pin(self.inner.policy.refresh_token(&*self.inner))
    }
}

/// Builds [`GrpcTransport`]s for `grpc://` and `grpcs://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTransportFactory;

impl TransportFactory for GrpcTransportFactory {
    fn schemes(&self) -> &[&'static str] {
        SCHEMES
    }

    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        Ok(Box::new(GrpcTransport::from_config(config)?))
    }
}
