//! The worker side: [`HttpTransport`].

use crate::channel::Channel;
use crate::routes::{
    ENDPOINT_TASK_RESULT, ENDPOINT_WORKER_REGISTER, STS_TOKEN_ENDPOINT, heartbeat_path,
    task_next_path,
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rxon_core::constants::{
    AUTH_HEADER_WORKER, POLL_REQUEST_MARGIN_SECS, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER,
};
use rxon_core::policy::{Policy, Token, TokenExchange};
use rxon_core::retry::parse_retry_after;
use rxon_core::validate::validate_identifier;
use rxon_core::{
    BoxFuture, Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, Result,
    ResultOutcome, RxonError, TaskPayload, TaskResult, TokenResponse, Transport, TransportConfig,
    TransportFactory, TransportOptions, WorkerCommand, WorkerRegistration,
};
use rxon_net::dial::ClientStream;
use rxon_net::status::error_for_status;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

/// URL schemes served by [`HttpTransportFactory`].
pub const SCHEMES: &[&str] = &["http", "https"];

/// A worker's connection to an orchestrator over HTTP/1.1, wire-compatible with the
/// reference `HttpTransport`.
///
/// - One pooled keep-alive client: polls, results and heartbeats reuse connections.
/// - Every request carries `X-Worker-Token` and `X-RXON-Version`; a different version
///   in a response is logged once as a warning.
/// - A 401 triggers one token refresh through the STS endpoint and one retry;
///   concurrent 401s share a single refresh.
/// - [`send_result`](Transport::send_result) retries network failures with
///   exponential backoff (`result_retries`, `result_retry_delay`); never auth or
///   protocol errors, never an "ignored" answer.
/// - A 429 is [`ErrorKind::RateLimited`](rxon_core::ErrorKind::RateLimited) with the
///   `Retry-After` delay (seconds or HTTP date).
/// - Response bodies are bounded by `max_message_bytes`.
/// - `https://` verifies the orchestrator against the system roots, or against
///   `tls.ca_file` when set; `tls.client_cert` + `tls.client_key` add a client
///   certificate (mTLS); `tls.server_name` overrides the name verified.
///
/// [`next_command`](Transport::next_command) and
/// [`send_progress`](Transport::send_progress) use the WebSocket command channel
/// (`ws(s)://…/_worker/ws/{worker_id}`), opened on first use and kept open in the
/// background: ping keepalive, reconnection with backoff (1 s doubling to 60 s),
/// bad frames skipped, oversized frames refused.
///
/// ```no_run
/// # async fn demo() -> rxon_core::Result<()> {
/// use rxon_core::Transport;
/// use rxon_http::HttpTransport;
/// use std::time::Duration;
///
/// let transport = HttpTransport::new("http://127.0.0.1:8080", "worker-1", "secret")?;
/// transport.connect().await?;
/// if let Some(task) = transport.poll_task(Duration::from_secs(30)).await? {
///     println!("got {}", task.task_id);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpTransport {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    base_url: String,
    worker_id: String,
    /// Lifecycle, credential, options: the contract's rules.
    policy: Policy,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    version_warned: AtomicBool,
    /// The header of the current token, by generation: built once per token, not per
    /// request.
    header: std::sync::Mutex<Option<(u64, HeaderValue)>>,
    /// TLS for the WebSocket command channel (`wss://`), when the URL is `https://`.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The command channel, started on first use.
    channel: OnceLock<Channel>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("base_url", &self.inner.base_url)
            .field("worker_id", &self.inner.worker_id)
            .finish_non_exhaustive()
    }
}

impl HttpTransport {
    /// A transport with default options for `base_url` (e.g. `http://host:8080`).
    pub fn new(base_url: &str, worker_id: &str, token: &str) -> Result<Self> {
        Self::from_config(&TransportConfig::new(base_url, worker_id, token))
    }

    /// A transport from a full configuration.
    pub fn from_config(config: &TransportConfig) -> Result<Self> {
        config.validate()?;
        let scheme = config.scheme()?;
        if scheme != "http" && scheme != "https" {
            return Err(RxonError::config(format!(
                "rxon-http serves http:// and https:// URLs, not {scheme}://"
            )));
        }
        let base_url = config.url.trim_end_matches('/').to_owned();
        base_url.parse::<http::Uri>().map_err(|e| {
            RxonError::config(format!("invalid orchestrator URL {:?}: {e}", config.url))
        })?;
        HeaderValue::from_str(&config.token).map_err(|_| {
            RxonError::config("the token contains characters not allowed in a header")
        })?;
        let tls = if scheme == "https" {
            rxon_net::tls::client_config(&config.options.tls)?
        } else {
            rxon_net::tls::plain_client_config()?
        };
        let channel_tls = (scheme == "https").then(|| Arc::new(tls.clone()));
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.options.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = match &config.options.tls.server_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                    RxonError::config(format!("TLS: invalid tls.server_name {name:?}: {e}"))
                })?;
                connector
                    .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => connector,
        };
        let connector = connector.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // Below the listener's 30 s header timeout, which cuts idle keep-alive
            // connections (with a 408 hyper's client reports as an unexpected message).
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(32)
            .build(connector);
        Ok(HttpTransport {
            inner: Arc::new(Inner {
                base_url,
                worker_id: config.worker_id.clone(),
                policy: Policy::new("HTTP", config, |d| Box::pin(tokio::time::sleep(d))),
                client,
                version_warned: AtomicBool::new(false),
                header: std::sync::Mutex::new(None),
                tls: channel_tls,
                channel: OnceLock::new(),
            }),
        })
    }

    /// The orchestrator's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The credential currently sent.
    pub fn token(&self) -> String {
        self.inner.policy.token().as_str().to_owned()
    }

    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &Weak<Inner>) -> Option<HttpTransport> {
        weak.upgrade().map(|inner| HttpTransport { inner })
    }

    pub(crate) fn worker_id_str(&self) -> &str {
        &self.inner.worker_id
    }

    pub(crate) fn options(&self) -> &TransportOptions {
        self.inner.policy.options()
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The token exchange the policy refreshes with.
    pub(crate) fn exchanger(&self) -> &dyn TokenExchange {
        &*self.inner
    }

    fn channel(&self) -> &Channel {
        self.inner.channel.get_or_init(|| Channel::start(self))
    }

    /// A TCP (or TLS, for `https://`) stream to the orchestrator, for the channel.
    pub(crate) async fn open_stream(&self) -> Result<ClientStream> {
        rxon_net::dial::connect_stream(
            &self.inner.base_url,
            self.inner.tls.as_ref(),
            self.options().tls.server_name.as_deref(),
            self.options().connect_timeout,
        )
        .await
    }

    /// One request/response through the policy (a refused credential is refreshed
    /// once). `Ok(None)` for 204.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Option<Bytes>> {
        let what = format!("{method} {path}");
        let (method, what) = (&method, what.as_str());
        self.inner
            .policy
            .call(self.exchanger(), |token| {
                let body = body.clone();
                async move {
                    let (status, retry_after, bytes) = self
                        .inner
                        .exchange(method, path, body, &token, timeout, what)
                        .await?;
                    match status {
                        StatusCode::NO_CONTENT => Ok(None),
                        s if s.is_success() => Ok(Some(bytes)),
                        s if s.is_client_error() || s.is_server_error() => {
                            Err(error_for_status(s, &bytes, retry_after, what))
                        }
                        s => Err(RxonError::protocol(format!(
                            "{what}: unexpected HTTP {}",
                            s.as_u16()
                        ))
                        .with_detail("status", s.as_u16())),
                    }
                }
            })
            .await
    }

    async fn json_call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
        what: &'static str,
    ) -> Result<Option<T>> {
        let bytes = encode(body)?;
        match self
            .call(method, path, Some(bytes), self.options().request_timeout)
            .await?
        {
            Some(b) if !b.is_empty() => decode(&b, what),
            _ => Ok(None),
        }
    }
}

impl Inner {
    /// Sends one request and reads the whole (bounded) response within `timeout`.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
        token: &Token,
        timeout: Duration,
        what: &str,
    ) -> Result<(StatusCode, Option<Duration>, Bytes)> {
        let token = self.header_for(token)?;
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base_url))
            .header(AUTH_HEADER_WORKER, token)
            .header(PROTOCOL_VERSION_HEADER, PROTOCOL_VERSION);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| RxonError::config(format!("{what}: cannot build request: {e}")))?;
        let limit = self.policy.options().max_message_bytes;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                RxonError::network(format!("{what}: {}", error_chain(&e))).with_source(e)
            })?;
            let (parts, incoming) = response.into_parts();
            self.check_version(&parts.headers);
            let retry_after = parts
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let bytes = Limited::new(incoming, limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        RxonError::protocol(format!(
                            "{what}: response body exceeds max_message_bytes ({limit})"
                        ))
                    } else {
                        RxonError::network(format!("{what}: reading the response: {e}"))
                    }
                })?
                .to_bytes();
            Ok::<_, RxonError>((parts.status, retry_after, bytes))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(RxonError::timeout(format!(
                "{what}: no complete response within {timeout:?}"
            ))),
        }
    }

    /// `token` as a header value, cached for its generation.
    fn header_for(&self, token: &Token) -> Result<HeaderValue> {
        let mut cached = self.header.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, value)) = cached.as_ref()
            && *generation == token.generation()
        {
            return Ok(value.clone());
        }
        let value = HeaderValue::from_str(token.as_str()).map_err(|_| {
            RxonError::config("the token contains characters not allowed in a header")
        })?;
        *cached = Some((token.generation(), value.clone()));
        Ok(value)
    }

    fn check_version(&self, headers: &http::HeaderMap) {
        let Some(theirs) = headers.get(PROTOCOL_VERSION_HEADER) else {
            return;
        };
        if theirs != PROTOCOL_VERSION && !self.version_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                orchestrator = ?theirs,
                worker = PROTOCOL_VERSION,
                "RXON protocol version mismatch"
            );
        }
    }
}

/// `POST /_worker/auth/token` with the token given.
impl TokenExchange for Inner {
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
        Box::pin(async move {
            let what = format!("POST {STS_TOKEN_ENDPOINT}");
            let (status, retry_after, bytes) = self
                .exchange(
                    &Method::POST,
                    STS_TOKEN_ENDPOINT,
                    None,
                    token,
                    self.policy.options().request_timeout,
                    &what,
                )
                .await?;
            if !status.is_success() {
                return Err(error_for_status(status, &bytes, retry_after, &what));
            }
            let response: TokenResponse = decode(&bytes, "TokenResponse")?;
            HeaderValue::from_str(&response.access_token).map_err(|_| {
                RxonError::protocol("the STS token contains characters not allowed in a header")
            })?;
            tracing::info!(expires_in = response.expires_in, "worker token refreshed");
            Ok(response)
        })
    }
}

/// `e` and its sources, "outer: inner: root", so that a TLS or DNS failure deep in the
/// connector shows in the message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Bounded: connector errors nest a handful of levels.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn encode(value: &impl Serialize) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| RxonError::invalid_input(format!("cannot encode request: {e}")))
}

/// Decodes a JSON body; `null` is `None`.
fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        RxonError::protocol(format!("invalid {what} from orchestrator: {e}"))
            .with_detail("body", rxon_net::status::error_text(bytes))
    })
}

impl Transport for HttpTransport {
    fn name(&self) -> &'static str {
        "http"
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
            if let Some(channel) = self.inner.channel.get() {
                channel.stop();
            }
            Ok(())
        })
    }

    fn register<'a>(
        &'a self,
        registration: &'a WorkerRegistration,
    ) -> BoxFuture<'a, Result<RegisterReply>> {
        Box::pin(async move {
            validate_identifier(&registration.worker_id, "worker_id")?;
            let reply = self
                .json_call::<Option<RegisterReply>>(
                    Method::POST,
                    ENDPOINT_WORKER_REGISTER,
                    registration,
                    "registration reply",
                )
                .await?;
            Ok(reply.flatten().unwrap_or_default())
        })
    }

    fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>> {
        Box::pin(async move {
            // The reference sends no timeout: its listener waits as long as it likes.
            // Ours honours `timeout` (capped by its own wait); others ignore the query.
            let path = format!(
                "{}?timeout={}",
                task_next_path(&self.inner.worker_id),
                timeout.as_secs_f64()
            );
            let deadline = timeout + Duration::from_secs(POLL_REQUEST_MARGIN_SECS);
            match self.call(Method::GET, &path, None, deadline).await? {
                Some(bytes) if !bytes.is_empty() => {
                    decode::<Option<TaskPayload>>(&bytes, "TaskPayload")
                }
                _ => Ok(None),
            }
        })
    }

    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
        Box::pin(async move {
            let body = encode(result)?;
            let what = format!("POST {ENDPOINT_TASK_RESULT}");
            let timeout = self.options().request_timeout;
            self.inner
                .policy
                .send_result(self.exchanger(), |token| {
                    let (body, what) = (body.clone(), what.as_str());
                    async move {
                        let (status, retry_after, bytes) = self
                            .inner
                            .exchange(
                                &Method::POST,
                                ENDPOINT_TASK_RESULT,
                                Some(body),
                                &token,
                                timeout,
                                what,
                            )
                            .await?;
                        if !status.is_success() {
                            return Err(error_for_status(status, &bytes, retry_after, what));
                        }
                        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                            return Ok(None);
                        }
                        decode::<Option<ResultOutcome>>(&bytes, "result reply")
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
            let path = heartbeat_path(&self.inner.worker_id);
            let reply = self
                .json_call::<Option<HeartbeatReply>>(
                    Method::PATCH,
                    &path,
                    heartbeat,
                    "heartbeat reply",
                )
                .await?;
            Ok(reply.flatten().unwrap_or_default())
        })
    }

    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.policy.ready()?;
            self.channel()
                .send_progress(progress, self.options().request_timeout)
                .await
        })
    }

    fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
        Box::pin(self.inner.policy.next_command(|| self.channel().next()))
    }

    fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>> {
        Box::pin(self.inner.policy.refresh_token(self.exchanger()))
    }
}

/// Builds [`HttpTransport`]s for `http://` and `https://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpTransportFactory;

impl TransportFactory for HttpTransportFactory {
    fn schemes(&self) -> &[&'static str] {
        SCHEMES
    }

    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        Ok(Box::new(HttpTransport::from_config(config)?))
    }
}
