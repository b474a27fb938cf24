//! [`LocalListener`] and [`LocalTransport`]: RXON inside one process (`local://name`).
//!
//! The transport calls the listener's [`Handler`] directly: no sockets, no encoding.
//! It keeps every rule of the [`Transport`] contract (lifecycle, refresh once on
//! `Unauthorized`, result retries, typed errors), so workers and orchestrators can be
//! embedded in one program, tested without a network, and measured without one.

use rxon_core::constants::PROTOCOL_VERSION;
use rxon_core::policy::{Policy, Token, TokenExchange};
use rxon_core::validate::validate_identifier;
use rxon_core::{
    BoxFuture, CommandReceiver, Handler, HandlerResult, Heartbeat, HeartbeatReply, Listener,
    ProgressUpdatePayload, RegisterReply, RequestContext, Result, ResultOutcome, RxonError,
    TaskPayload, TaskResult, TokenResponse, Transport, TransportConfig, TransportFactory,
    WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// URL scheme served by [`LocalTransportFactory`].
pub const LOCAL_SCHEMES: &[&str] = &["local"];

/// Transport name in the [`RequestContext`] of local calls.
pub const LOCAL_TRANSPORT_NAME: &str = "local";

/// A started listener, as transports find it.
struct Endpoint {
    handler: Arc<dyn Handler>,
    poll_wait: Duration,
    stop: watch::Sender<bool>,
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Endpoint>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Endpoint>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn lookup(name: &str) -> Option<Arc<Endpoint>> {
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(name)
        .and_then(Weak::upgrade)
}

/// Serves a [`Handler`] to [`LocalTransport`]s of the same process under
/// `local://{name}`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use rxon_core::{Listener, Transport, TransportConfig, TransportFactory, WorkerRegistration};
/// use rxon_orchestrator::{LocalListener, LocalTransportFactory, Orchestrator};
/// use std::sync::Arc;
///
/// let orchestrator = Orchestrator::builder().token("t").build();
/// let listener = LocalListener::new();
/// listener.start(Arc::new(orchestrator.clone())).await?;
///
/// let config = TransportConfig::new(listener.endpoint().unwrap(), "w1", "t");
/// let worker = LocalTransportFactory.create(&config)?;
/// worker.connect().await?;
/// worker.register(&WorkerRegistration { worker_id: "w1".into(), ..Default::default() }).await?;
/// assert_eq!(orchestrator.workers().await[0].worker_id, "w1");
/// # Ok::<(), rxon_core::RxonError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct LocalListener {
    name: String,
    poll_wait: Duration,
    running: Mutex<Option<Arc<Endpoint>>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("poll_wait", &self.poll_wait)
            .finish_non_exhaustive()
    }
}

impl Default for LocalListener {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalListener {
    /// A listener with a unique name and a 30 s poll wait.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LocalListener {
            name: format!("local-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            poll_wait: Duration::from_secs(30),
            running: Mutex::new(None),
        }
    }

    /// A listener called `name` (an identifier).
    pub fn named(name: &str) -> Result<Self> {
        validate_identifier(name, "local listener name")?;
        Ok(LocalListener {
            name: name.to_owned(),
            ..Self::new()
        })
    }

    /// Longest a poll waits for a task (a worker's shorter timeout wins).
    pub fn with_poll_wait(mut self, poll_wait: Duration) -> Self {
        self.poll_wait = poll_wait;
        self
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<Arc<Endpoint>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Listener for LocalListener {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut running = self.running();
            if running.is_some() {
                return Err(RxonError::config("local listener is already running"));
            }
            let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
            reg.retain(|_, w| w.strong_count() > 0);
            if reg.contains_key(&self.name) {
                return Err(RxonError::config(format!(
                    "another local listener is serving local://{}",
                    self.name
                )));
            }
            let endpoint = Arc::new(Endpoint {
                handler,
                poll_wait: self.poll_wait,
                stop: watch::channel(false).0,
            });
            reg.insert(self.name.clone(), Arc::downgrade(&endpoint));
            *running = Some(endpoint);
            Ok(())
        })
    }

    fn stop(&self, _drain: Duration) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(endpoint) = self.running().take() else {
                return Ok(());
            };
            registry()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.name);
            // Pending polls answer "no task"; command channels end.
            endpoint.stop.send_replace(true);
            Ok(())
        })
    }

    fn endpoint(&self) -> Option<String> {
        self.running()
            .is_some()
            .then(|| format!("local://{}", self.name))
    }
}

/// A [`Transport`] that calls a [`LocalListener`]'s handler in the same process.
pub struct LocalTransport {
    name: String,
    worker_id: String,
    /// Lifecycle, credential, options: the contract's rules.
    policy: Policy,
    closed: watch::Sender<bool>,
    commands: tokio::sync::Mutex<Option<Box<dyn CommandReceiver>>>,
}

impl std::fmt::Debug for LocalTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTransport")
            .field("listener", &self.name)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl LocalTransport {
    /// A transport for `config` (`local://{name}`).
    pub fn from_config(config: &TransportConfig) -> Result<Self> {
        config.validate()?;
        let name = config
            .url
            .split_once("://")
            .map(|(_, rest)| rest.trim_matches('/'))
            .unwrap_or_default();
        validate_identifier(name, "local listener name")
            .map_err(|e| RxonError::config(format!("{}: {}", config.url, e.message())))?;
        Ok(LocalTransport {
            name: name.to_owned(),
            worker_id: config.worker_id.clone(),
            policy: Policy::new("local", config, |d| Box::pin(tokio::time::sleep(d))),
            closed: watch::channel(false).0,
            commands: tokio::sync::Mutex::new(None),
        })
    }

    /// The credential currently used.
    pub fn token(&self) -> String {
        self.policy.token().as_str().to_owned()
    }

    fn endpoint(&self) -> Result<Arc<Endpoint>> {
        lookup(&self.name).ok_or_else(|| {
            RxonError::network(format!(
                "no local listener is serving local://{}",
                self.name
            ))
        })
    }

    fn context(&self, token: String, with_worker: bool) -> RequestContext {
        let ctx = RequestContext::new(LOCAL_TRANSPORT_NAME)
            .with_token(token)
            .with_protocol_version(PROTOCOL_VERSION);
        if with_worker {
            ctx.with_worker_id(self.worker_id.clone())
        } else {
            ctx
        }
    }

    /// One handler call through the policy (`Unauthorized` refreshes the token once).
    async fn call<T, F, Fut>(&self, with_worker: bool, op: F) -> Result<T>
    where
        F: Fn(Arc<Endpoint>, RequestContext) -> Fut,
        Fut: Future<Output = HandlerResult<T>>,
    {
        let op = &op;
        self.policy
            .call(self, |token| async move {
                let endpoint = self.endpoint()?;
                op(
                    endpoint,
                    self.context(token.as_str().to_owned(), with_worker),
                )
                .await
                .map_err(RxonError::from)
            })
            .await
    }
}

/// The handler's `token` call with the token given.
impl TokenExchange for LocalTransport {
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
        Box::pin(async move {
            self.endpoint()?
                .handler
                .token(self.context(token.as_str().to_owned(), true))
                .await
                .map_err(RxonError::from)
        })
    }
}

/// Resolves when `rx` turns true or its sender is gone.
async fn until_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

impl Transport for LocalTransport {
    fn name(&self) -> &'static str {
        LOCAL_TRANSPORT_NAME
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn connect(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.policy.connect() })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.policy.close();
            self.closed.send_replace(true);
            Ok(())
        })
    }

    fn register<'a>(
        &'a self,
        registration: &'a WorkerRegistration,
    ) -> BoxFuture<'a, Result<RegisterReply>> {
        Box::pin(self.call(false, move |ep, ctx| async move {
            ep.handler.register(ctx, registration.clone()).await
        }))
    }

    fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>> {
        Box::pin(self.call(true, move |ep, ctx| async move {
            let wait = timeout.min(ep.poll_wait);
            let stopped = until_true(ep.stop.subscribe());
            let poll = ep.handler.poll(ctx, wait);
            tokio::select! {
                r = tokio::time::timeout(wait + Duration::from_secs(5), poll) => r.unwrap_or(Ok(None)),
                () = stopped => Ok(None),
            }
        }))
    }

    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
        Box::pin(self.policy.send_result(self, move |token| async move {
            let endpoint = self.endpoint()?;
            endpoint
                .handler
                .result(
                    self.context(token.as_str().to_owned(), false),
                    result.clone(),
                )
                .await
                .map(Some)
                .map_err(RxonError::from)
        }))
    }

    fn send_heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<HeartbeatReply>> {
        Box::pin(self.call(true, move |ep, ctx| async move {
            ep.handler.heartbeat(ctx, Some(heartbeat.clone())).await
        }))
    }

    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.call(true, move |ep, ctx| async move {
            ep.handler.progress(ctx, progress.clone()).await
        }))
    }

    fn emit_event<'a>(&'a self, event: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.call(true, move |ep, ctx| async move {
            ep.handler.event(ctx, event.clone()).await
        }))
    }

    fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
        Box::pin(self.policy.next_command(move || async move {
            let mut slot = self.commands.lock().await;
            if slot.is_none() {
                let rx = self
                    .call(
                        true,
                        |ep, ctx| async move { ep.handler.commands(ctx).await },
                    )
                    .await?;
                *slot = Some(rx);
            }
            let endpoint = self.endpoint()?;
            let closed = until_true(self.closed.subscribe());
            let stopped = until_true(endpoint.stop.subscribe());
            let Some(rx) = slot.as_mut() else {
                return Ok(None);
            };
            tokio::select! {
                command = rx.recv() => {
                    if command.is_none() {
                        *slot = None;
                    }
                    Ok(command)
                }
                () = closed => Ok(None),
                () = stopped => {
                    *slot = None;
                    Err(RxonError::network(format!("local://{} stopped", self.name)))
                }
            }
        }))
    }

    fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>> {
        Box::pin(self.policy.refresh_token(self))
    }
}

/// Builds [`LocalTransport`]s for `local://{name}` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalTransportFactory;

impl TransportFactory for LocalTransportFactory {
    fn schemes(&self) -> &[&'static str] {
        LOCAL_SCHEMES
    }

    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        Ok(Box::new(LocalTransport::from_config(config)?))
    }
}
