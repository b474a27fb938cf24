//! The worker side: [`HttpTransport`].

use crate::channel::Channel;
use crate::routes::{
    ENDPOINT_EVENTS, ENDPOINT_TASK_RESULT, ENDPOINT_WORKER_REGISTER, STS_REFRESH_ENDPOINT,
    STS_TOKEN_ENDPOINT, heartbeat_path, task_next_path,
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rxon_core::constants::{
    AUTH_HEADER_WORKER, POLL_REQUEST_MARGIN_SECS, PROTOCOL_VERSION_HEADER, WORKER_ID_HEADER,
};
use rxon_core::policy::{Policy, Token, TokenExchange};
use rxon_core::protocol::{Protocol, ProtocolChoice};
use rxon_core::retry::parse_retry_after;
use rxon_core::validate::validate_identifier;
use rxon_core::{
    BoxFuture, Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, Result,
    ResultOutcome, RxonError, TaskPayload, TaskResult, TokenResponse, Transport, TransportConfig,
    TransportFactory, TransportOptions, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use rxon_net::dial::ClientStream;
use rxon_net::status::error_for_status;
use rxon_wire::Wire;
use rxon_wire::envelope::{self, EVENT_UNSIGNED};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

/// URL schemes served by [`HttpTransportFactory`].
pub const SCHEMES: &[&str] = &["http", "https"];

/// A worker's connection to an orchestrator over HTTP/1.1, wire-compatible with the
/// reference `HttpTransport`.
///
/// - One pooled keep-alive client: polls, results and heartbeats reuse connections.
/// - Speaks RXON 1.0b3 or 1.0b17, as `protocol` says: pinned, or `"auto"` (the
///   default), which asks the orchestrator before the first operation with an empty
///   heartbeat (`PATCH /_worker/workers/{id}`, no body: both generations accept it,
///   and it is never signed) and speaks the generation named by the answer's
///   `X-RXON-Version`, whatever its status (none: 1.0b3).
/// - Every request carries `X-Worker-Token` and `X-RXON-Version` (and, in 1.0b17,
///   `X-Worker-ID`); a different version in a response is logged once as a warning.
/// - In 1.0b17, registrations, heartbeats, results and events are sealed in the signed
///   envelope (a fresh `timestamp`, `nonce` and HMAC on every attempt, keyed by
///   `signing_key` or else the configured token), progress goes to
///   `POST /_worker/events` as a `"progress"` event, and a task's `sig` is checked when
///   `task_key` is set (a task that fails the check is refused with a protocol error
///   and never reaches the caller).
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
    client: Client<Connector, Full<Bytes>>,
    version_warned: AtomicBool,
    /// `protocol` from the configuration.
    choice: ProtocolChoice,
    /// The generation in use, once known.
    protocol: tokio::sync::OnceCell<Protocol>,
    /// Key of the 1.0b17 envelope.
    signing_key: String,
    /// Key of the orchestrator's task `sig`, and whether a task must carry one.
    task_key: Option<String>,
    require_task_signature: bool,
    /// The refresh token of the last STS answer (1.0b17).
    refresh_token: Mutex<Option<String>>,
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

/// The connector every HTTP request of rxon goes through: rxon's dialer (directly,
/// through the configured proxy, or the embedded Tor client) under rustls, with the
/// configuration's TLS options (CA, client certificate, `server_name`).
pub type Connector = hyper_rustls::HttpsConnector<rxon_net::dial::Connector>;

/// The [`Connector`] for `config`, for requests of your own that should reach the
/// orchestrator exactly as the transport does (`rxon probe` sends its checks so).
pub fn connector(config: &TransportConfig) -> Result<Connector> {
    connector_with(client_tls(config, &config.scheme()?)?, config)
}

/// TLS for `scheme`: the configuration's for `https`, the platform's roots otherwise
/// (a plain URL needs none, but the connector is the same type).
fn client_tls(config: &TransportConfig, scheme: &str) -> Result<rustls::ClientConfig> {
    if scheme == "https" {
        rxon_net::tls::client_config(&config.options.tls)
    } else {
        rxon_net::tls::plain_client_config()
    }
}

fn connector_with(tls: rustls::ClientConfig, config: &TransportConfig) -> Result<Connector> {
    // Every connection through the one dialer: directly or through the proxy.
    let http = rxon_net::dial::Connector::new(&config.options);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = match &config.options.tls.server_name {
        Some(name) => {
            let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                RxonError::config(format!("TLS: invalid tls.server_name {name:?}: {e}"))
            })?;
            connector.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => connector,
    };
    Ok(connector.enable_http1().wrap_connector(http))
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
        let tls = client_tls(config, &scheme)?;
        let channel_tls = (scheme == "https").then(|| Arc::new(tls.clone()));
        let connector = connector_with(tls, config)?;
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
                choice: config.options.protocol,
                protocol: tokio::sync::OnceCell::new(),
                signing_key: config.envelope_key().to_owned(),
                task_key: config.options.task_key.clone(),
                require_task_signature: config.options.require_task_signature,
                refresh_token: Mutex::new(None),
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
            self.options(),
        )
        .await
    }

    /// The generation spoken with this orchestrator: the pinned one, or (`auto`)
    /// the one its answer to an empty heartbeat names, asked once.
    pub async fn protocol(&self) -> Result<Protocol> {
        match self.inner.choice {
            ProtocolChoice::Pinned(p) => Ok(p),
            ProtocolChoice::Auto => self
                .inner
                .protocol
                .get_or_try_init(|| self.inner.probe())
                .await
                .copied(),
        }
    }

    /// Posts a 1.0b17 event. avtomatika refuses a bad event with
    /// `200 {"status": "error", …}`, which is an error here too.
    async fn post_event(&self, event: &WorkerEventPayload) -> Result<()> {
        let reply = self
            .json_call::<_, rxon_core::Map>(Method::POST, ENDPOINT_EVENTS, event, EVENT_UNSIGNED)
            .await?;
        if let Some(reply) = reply
            && reply.get("status").and_then(|s| s.as_str()) == Some("error")
        {
            let message = reply.get("message").and_then(|m| m.as_str()).unwrap_or("");
            return Err(RxonError::protocol(format!(
                "POST {ENDPOINT_EVENTS}: the event was refused: {message}"
            )));
        }
        Ok(())
    }

    /// One request/response through the policy (a refused credential is refreshed
    /// once). `Ok(None)` for 204. A signed body is sealed afresh for every attempt.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Option<Bytes>> {
        let protocol = self.protocol().await?;
        let call = Call::new(protocol, &method, path, timeout);
        let (call, body) = (&call, &body);
        self.inner
            .policy
            .call(self.exchanger(), |token| async move {
                let bytes = self.inner.seal(body)?;
                let Answer {
                    status,
                    retry_after,
                    body: bytes,
                    ..
                } = self.inner.exchange(call, bytes, &token).await?;
                let what = call.what;
                match status {
                    StatusCode::NO_CONTENT => Ok(None),
                    s if s.is_success() => Ok(Some(bytes)),
                    s if s.is_client_error() || s.is_server_error() => {
                        Err(error_for_status(s, &bytes, retry_after, &what.to_string()))
                    }
                    s => Err(RxonError::protocol(format!(
                        "{what}: unexpected HTTP {}",
                        s.as_u16()
                    ))
                    .with_detail("status", s.as_u16())),
                }
            })
            .await
    }

    /// Sends `message` (sealed when `signed` in 1.0b17) and decodes the answer;
    /// `None` for no body or `null`.
    async fn json_call<M: Wire, T: Wire>(
        &self,
        method: Method,
        path: &str,
        message: &M,
        ignore: &'static [&'static str],
    ) -> Result<Option<T>> {
        let protocol = self.protocol().await?;
        let body = Body::message(protocol, message, ignore, self.worker_id_str())?;
        match self
            .call(method, path, body, self.options().request_timeout)
            .await?
        {
            Some(b) if !b.is_empty() => decode(protocol, &b),
            _ => Ok(None),
        }
    }

    /// Checks a 1.0b17 task's `sig` (over the task as received) when a task key is
    /// configured ([`rxon_wire::guard::check_task`]).
    fn check_task(&self, raw: &Value) -> Result<()> {
        let checked = rxon_wire::guard::check_task(
            raw,
            self.inner.task_key.as_deref(),
            self.inner.require_task_signature,
        );
        if let Err(e) = &checked {
            let id = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or("?");
            tracing::warn!(task_id = id("task_id"), job_id = id("job_id"), "{e}");
        }
        checked
    }
}

/// The fixed parts of one request.
#[derive(Clone, Copy)]
struct Call<'a> {
    protocol: Protocol,
    method: &'a Method,
    path: &'a str,
    timeout: Duration,
    /// The operation, in errors.
    what: What<'a>,
    /// Warn (once) when the answer names another generation.
    warn_on_version: bool,
}

impl<'a> Call<'a> {
    fn new(protocol: Protocol, method: &'a Method, path: &'a str, timeout: Duration) -> Self {
        Call {
            protocol,
            method,
            path,
            timeout,
            what: What {
                method,
                path,
                note: "",
            },
            warn_on_version: true,
        }
    }
}

/// An operation as errors name it (`POST /_worker/tasks/result`): written only when
/// an error is, not for every request.
#[derive(Clone, Copy)]
struct What<'a> {
    method: &'a Method,
    path: &'a str,
    note: &'static str,
}

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}{}", self.method, self.path, self.note)
    }
}

/// One answer: its status, retry-after hint, body and `X-RXON-Version`.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
    version: Option<HeaderValue>,
}

/// What a request carries.
enum Body {
    /// No body.
    Empty,
    /// Bytes sent as they are.
    Plain(Bytes),
    /// A 1.0b17 message, sealed for each attempt by `signer_id`; `ignore` lists the
    /// keys left out of the signature.
    Signed {
        message: serde_json::Map<String, Value>,
        signer_id: String,
        ignore: &'static [&'static str],
    },
}

impl Body {
    /// `message` in `protocol`'s dialect: plain in 1.0b3, signed in 1.0b17.
    fn message<M: Wire>(
        protocol: Protocol,
        message: &M,
        ignore: &'static [&'static str],
        signer_id: &str,
    ) -> Result<Body> {
        if !protocol.signs() {
            return rxon_wire::to_vec(protocol, message)
                .map(|b| Body::Plain(b.into()))
                .map_err(|e| e.outgoing(M::NAME));
        }
        match rxon_wire::encode(protocol, message).map_err(|e| e.outgoing(M::NAME))? {
            Value::Object(message) => Ok(Body::Signed {
                message,
                signer_id: signer_id.to_owned(),
                ignore,
            }),
            _ => Err(RxonError::invalid_input(format!(
                "cannot encode {}: not a JSON object",
                M::NAME
            ))),
        }
    }
}

impl Inner {
    /// The bytes of `body` for one attempt: sealed now when signed.
    fn seal(&self, body: &Body) -> Result<Option<Bytes>> {
        match body {
            Body::Empty => Ok(None),
            Body::Plain(b) => Ok(Some(b.clone())),
            Body::Signed {
                message,
                signer_id,
                ignore,
            } => {
                let mut message = message.clone();
                let now = envelope::unix_now();
                envelope::seal(&mut message, &self.signing_key, signer_id, now, ignore)
                    .and_then(|()| rxon_wire::to_bytes(&Value::Object(message)))
                    .map(|b| Some(b.into()))
                    .map_err(|e| e.outgoing("the signed envelope"))
            }
        }
    }

    /// The generation the orchestrator names in its answer to an empty heartbeat.
    async fn probe(&self) -> Result<Protocol> {
        self.policy.ready()?;
        let path = heartbeat_path(&self.worker_id);
        let timeout = self.policy.options().request_timeout;
        let mut call = Call::new(Protocol::LATEST, &Method::PATCH, &path, timeout);
        call.what.note = " (protocol probe)";
        let what = call.what;
        // The answer names the orchestrator's generation: not a mismatch to warn about.
        call.warn_on_version = false;
        let answer = self.exchange(&call, None, &self.policy.token()).await?;
        let version = answer.version.as_ref().and_then(|v| v.to_str().ok());
        // A 5xx without the header is a proxy or a server starting up, not an
        // orchestrator saying "1.0b3": ask again next time instead of remembering it.
        if version.is_none() && answer.status.is_server_error() {
            return Err(RxonError::network(format!(
                "{what}: HTTP {} without {PROTOCOL_VERSION_HEADER}: the generation is not known yet",
                answer.status.as_u16()
            ))
            .with_detail("status", answer.status.as_u16()));
        }
        let protocol = Protocol::from_header(version).min(Protocol::LATEST);
        tracing::info!(
            orchestrator = version.unwrap_or("(none)"),
            protocol = %protocol,
            "RXON protocol chosen"
        );
        Ok(protocol)
    }

    /// Sends one request and reads the whole (bounded) response within the call's
    /// timeout; a different `X-RXON-Version` in the answer is warned about once.
    async fn exchange(
        &self,
        call: &Call<'_>,
        body: Option<Bytes>,
        token: &Token,
    ) -> Result<Answer> {
        let Call {
            protocol,
            method,
            path,
            timeout,
            what,
            warn_on_version,
        } = *call;
        let token = self.header_for(token)?;
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base_url))
            .header(AUTH_HEADER_WORKER, token)
            .header(PROTOCOL_VERSION_HEADER, protocol.as_str());
        if protocol.signs() {
            builder = builder.header(WORKER_ID_HEADER, self.worker_id.as_str());
        }
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
            let version = parts.headers.get(PROTOCOL_VERSION_HEADER).cloned();
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
            Ok::<_, RxonError>(Answer {
                status: parts.status,
                retry_after,
                body: bytes,
                version,
            })
        };
        let answer = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RxonError::timeout(format!(
                    "{what}: no complete response within {timeout:?}"
                )));
            }
        };
        if warn_on_version {
            self.check_version(answer.version.as_ref(), protocol);
        }
        Ok(answer)
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

    fn check_version(&self, theirs: Option<&HeaderValue>, ours: Protocol) {
        let Some(theirs) = theirs else {
            return;
        };
        if theirs.as_bytes() != ours.as_str().as_bytes()
            && !self.version_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                orchestrator = ?theirs,
                worker = ours.as_str(),
                "RXON protocol version mismatch"
            );
        }
    }

    /// The generation in use, for the token exchange (which may run before it is
    /// known: then the latest, whose headers a 1.0b3 peer ignores).
    fn known_protocol(&self) -> Protocol {
        match self.choice {
            ProtocolChoice::Pinned(p) => p,
            ProtocolChoice::Auto => self.protocol.get().copied().unwrap_or(Protocol::LATEST),
        }
    }

    /// One STS call: the refresh endpoint with `refresh` (1.0b17), or the token
    /// endpoint.
    async fn sts(
        &self,
        protocol: Protocol,
        token: &Token,
        refresh: Option<&str>,
    ) -> Result<TokenResponse> {
        let (path, body) = match refresh {
            Some(r) => (
                STS_REFRESH_ENDPOINT,
                Some(Bytes::from(
                    serde_json::to_vec(&serde_json::json!({ "refresh_token": r }))
                        .map_err(|e| RxonError::invalid_input(e.to_string()))?,
                )),
            ),
            None => (STS_TOKEN_ENDPOINT, None),
        };
        let timeout = self.policy.options().request_timeout;
        let call = Call::new(protocol, &Method::POST, path, timeout);
        let what = call.what.to_string();
        let Answer {
            status,
            retry_after,
            body: bytes,
            ..
        } = self.exchange(&call, body, token).await?;
        if !status.is_success() {
            return Err(error_for_status(status, &bytes, retry_after, &what));
        }
        // Not `decode`: its errors quote the body, which here holds tokens.
        let response: TokenResponse = rxon_wire::decode_slice(protocol, &bytes)
            .map_err(|e| RxonError::protocol(format!("{what}: invalid TokenResponse: {e}")))?;
        HeaderValue::from_str(&response.access_token).map_err(|_| {
            RxonError::protocol("the STS token contains characters not allowed in a header")
        })?;
        Ok(response)
    }
}

/// `POST /_worker/auth/token` with the token given; in 1.0b17, first
/// `POST /_worker/auth/token/refresh` when the last answer carried a refresh token
/// (falling back to the token endpoint if that is refused).
impl TokenExchange for Inner {
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
        Box::pin(async move {
            let protocol = self.known_protocol();
            let refresh = if protocol.signs() {
                self.refresh_token
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            } else {
                None
            };
            let response = match refresh {
                Some(r) => match self.sts(protocol, token, Some(&r)).await {
                    Ok(t) => Ok(t),
                    // A refused or unknown refresh token, or a peer without the
                    // route: forget it and ask the token endpoint. A network failure
                    // is not retried here.
                    Err(e) if !e.is_network() => {
                        tracing::info!(error = %e, "refresh token refused; asking the token endpoint");
                        *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        self.sts(protocol, token, None).await
                    }
                    Err(e) => Err(e),
                },
                None => self.sts(protocol, token, None).await,
            }?;
            if let Some(r) = &response.refresh_token {
                *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
            }
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

/// Decodes a JSON body in `protocol`'s dialect; `null` is `None`.
fn decode<T: Wire>(protocol: Protocol, bytes: &[u8]) -> Result<Option<T>> {
    if bytes.trim_ascii() == b"null" {
        return Ok(None);
    }
    rxon_wire::decode_slice(protocol, bytes)
        .map(Some)
        .map_err(|e| invalid_body::<T>(e, bytes))
}

/// The JSON of a body that should hold a `T`.
fn parse_json<T: Wire>(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        invalid_body::<T>(
            rxon_wire::WireError::invalid(format!("malformed JSON: {e}")),
            bytes,
        )
    })
}

fn invalid_body<T: Wire>(e: rxon_wire::WireError, bytes: &[u8]) -> RxonError {
    e.from_peer(T::NAME)
        .with_detail("body", rxon_net::status::error_text(bytes))
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
                .json_call::<_, RegisterReply>(
                    Method::POST,
                    ENDPOINT_WORKER_REGISTER,
                    registration,
                    &[],
                )
                .await?;
            Ok(reply.unwrap_or_default())
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
            let protocol = self.protocol().await?;
            let bytes = match self.call(Method::GET, &path, Body::Empty, deadline).await? {
                Some(bytes) if !bytes.is_empty() => bytes,
                _ => return Ok(None),
            };
            if !protocol.signs() {
                return decode::<TaskPayload>(protocol, &bytes);
            }
            let raw = parse_json::<TaskPayload>(&bytes)?;
            if raw.is_null() {
                return Ok(None);
            }
            self.check_task(&raw)?;
            rxon_wire::decode(protocol, raw)
                .map(Some)
                .map_err(|e| invalid_body::<TaskPayload>(e, &bytes))
        })
    }

    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
        Box::pin(async move {
            let protocol = self.protocol().await?;
            let body = Body::message(protocol, result, &[], self.worker_id_str())?;
            let timeout = self.options().request_timeout;
            let call = Call::new(protocol, &Method::POST, ENDPOINT_TASK_RESULT, timeout);
            self.inner
                .policy
                .send_result(self.exchanger(), |token| {
                    let (body, call) = (&body, &call);
                    async move {
                        let body = self.inner.seal(body)?;
                        let Answer {
                            status,
                            retry_after,
                            body: bytes,
                            ..
                        } = self.inner.exchange(call, body, &token).await?;
                        if !status.is_success() {
                            let what = call.what.to_string();
                            return Err(error_for_status(status, &bytes, retry_after, &what));
                        }
                        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                            return Ok(None);
                        }
                        decode::<ResultOutcome>(protocol, &bytes)
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
                .json_call::<_, HeartbeatReply>(Method::PATCH, &path, heartbeat, &[])
                .await?;
            Ok(reply.unwrap_or_default())
        })
    }

    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.policy.ready()?;
            if self.protocol().await?.signs() {
                let event = WorkerEventPayload::progress(
                    progress,
                    self.worker_id_str(),
                    rxon_core::messages::unique_id(),
                );
                return self.post_event(&event).await;
            }
            self.channel()
                .send_progress(progress, self.options().request_timeout)
                .await
        })
    }

    /// 1.0b17: `POST /_worker/events`. A 1.0b3 orchestrator has no events: progress
    /// goes the 1.0b3 way, any other type is refused here.
    fn emit_event<'a>(&'a self, event: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.policy.ready()?;
            if self.protocol().await?.signs() {
                return self.post_event(event).await;
            }
            match event.as_progress() {
                Some(progress) => self.send_progress(&progress).await,
                None => Err(RxonError::unsupported(format!(
                    "the orchestrator speaks RXON 1.0b3, which has no events (event type {:?})",
                    event.event_type
                ))),
            }
        })
    }

    fn known_protocol(&self) -> Option<Protocol> {
        match self.inner.choice {
            ProtocolChoice::Pinned(p) => Some(p),
            ProtocolChoice::Auto => self.inner.protocol.get().copied(),
        }
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
