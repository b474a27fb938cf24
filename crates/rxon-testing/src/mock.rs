//! [`MockTransport`] and its script/inspect handle [`MockHandle`].

use rxon_core::transport::Lifecycle;
use rxon_core::{
    BoxFuture, ErrorKind, Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, Result,
    ResultOutcome, RxonError, TaskPayload, TaskResult, TokenResponse, Transport, TransportConfig,
    TransportFactory, WorkerCommand, WorkerEventPayload, WorkerRegistration,
    validate::validate_identifier,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The URL scheme served by [`MockTransportFactory`].
pub const SCHEMES: &[&str] = &["mock"];

/// An operation of [`Transport`], to target injected failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Transport::register`].
    Register,
    /// [`Transport::poll_task`].
    Poll,
    /// [`Transport::send_result`].
    Result,
    /// [`Transport::send_heartbeat`].
    Heartbeat,
    /// [`Transport::send_progress`].
    Progress,
    /// [`Transport::emit_event`].
    Event,
    /// [`Transport::refresh_token`].
    Token,
}

#[derive(Default)]
struct Inner {
    tasks: VecDeque<TaskPayload>,
    commands: VecDeque<WorkerCommand>,
    registrations: Vec<WorkerRegistration>,
    heartbeats: Vec<Heartbeat>,
    results: Vec<TaskResult>,
    progress: Vec<ProgressUpdatePayload>,
    events: Vec<WorkerEventPayload>,
    result_outcomes: VecDeque<ResultOutcome>,
    heartbeat_replies: VecDeque<HeartbeatReply>,
    failures: HashMap<Operation, VecDeque<(ErrorKind, String)>>,
    pending_polls: usize,
    tokens_issued: u64,
}

/// State shared by a [`MockHandle`] and the transports attached to it.
struct Shared {
    name: String,
    inner: Mutex<Inner>,
    /// Woken on every change: a task or command pushed, a record added, a poll started
    /// or ended, a transport closed. Waiters re-check their condition.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }

    /// Waits until `check` yields a value or `stop()` is true; `None` on stop.
    async fn wait<T>(
        &self,
        mut check: impl FnMut(&mut Inner) -> Option<T>,
        stop: impl Fn() -> bool,
    ) -> Option<T> {
        loop {
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            // Register interest before checking, so a change between the check and
            // the await is not missed.
            notified.as_mut().enable();
            if stop() {
                return None;
            }
            if let Some(v) = check(&mut self.lock()) {
                return Some(v);
            }
            notified.await;
        }
    }
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Scripts and inspects a mock orchestrator: push tasks and commands, read what workers
/// sent, choose replies, inject failures.
///
/// Cheap to clone; all clones and all attached transports share one state.
#[derive(Clone)]
pub struct MockHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

impl Default for MockHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHandle {
    /// A fresh mock orchestrator with a unique name; transports reach it through
    /// [`url`](Self::url).
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self::named(&format!("mock-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// The mock orchestrator called `name`, created if no live one has that name.
    /// `mock://{name}` URLs reach the same one.
    pub fn named(name: &str) -> Self {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = reg.get(name).and_then(Weak::upgrade) {
            return MockHandle { shared };
        }
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        });
        reg.insert(name.to_owned(), Arc::downgrade(&shared));
        MockHandle { shared }
    }

    /// The mock's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// `mock://{name}`: give this to `create_transport` or a `TransportConfig`.
    pub fn url(&self) -> String {
        format!("mock://{}", self.shared.name)
    }

    /// A transport for `worker_id` attached to this mock.
    pub fn transport(&self, worker_id: &str, token: &str) -> Result<MockTransport> {
        validate_identifier(worker_id, "worker_id")?;
        Ok(MockTransport {
            worker_id: worker_id.to_owned(),
            token: Mutex::new(token.to_owned()),
            shared: self.shared.clone(),
            lifecycle: Arc::new(Lifecycle::new("mock")),
        })
    }

    /// Queues a task; the next (or a waiting) poll gets it. FIFO.
    pub fn push_task(&self, task: TaskPayload) {
        self.shared.update(|i| i.tasks.push_back(task));
    }

    /// Queues a command for [`Transport::next_command`]. FIFO.
    pub fn push_command(&self, command: WorkerCommand) {
        self.shared.update(|i| i.commands.push_back(command));
    }

    /// The reply to the next result (default: accepted). Queued replies are used once
    /// each, in order.
    pub fn push_result_outcome(&self, outcome: ResultOutcome) {
        self.shared.update(|i| i.result_outcomes.push_back(outcome));
    }

    /// The reply to the next heartbeat (default: empty). Used once each, in order.
    pub fn push_heartbeat_reply(&self, reply: HeartbeatReply) {
        self.shared.update(|i| i.heartbeat_replies.push_back(reply));
    }

    /// Makes the next call of `op` fail with an error of `kind`; queued failures are
    /// used once each, in order.
    pub fn fail_next(&self, op: Operation, kind: ErrorKind, message: &str) {
        self.shared.update(|i| {
            i.failures
                .entry(op)
                .or_default()
                .push_back((kind, message.to_owned()))
        });
    }

    /// Registrations received so far.
    pub fn registrations(&self) -> Vec<WorkerRegistration> {
        self.shared.lock().registrations.clone()
    }
    /// Heartbeats received so far.
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.shared.lock().heartbeats.clone()
    }
    /// Results received so far, in arrival order.
    pub fn results(&self) -> Vec<TaskResult> {
        self.shared.lock().results.clone()
    }
    /// Progress updates received so far.
    pub fn progress(&self) -> Vec<ProgressUpdatePayload> {
        self.shared.lock().progress.clone()
    }
    /// Events other than through [`progress`](Self::progress) received so far.
    pub fn events(&self) -> Vec<WorkerEventPayload> {
        self.shared.lock().events.clone()
    }
    /// Tasks pushed and not yet polled.
    pub fn queued_tasks(&self) -> usize {
        self.shared.lock().tasks.len()
    }
    /// Polls currently waiting for a task.
    pub fn pending_polls(&self) -> usize {
        self.shared.lock().pending_polls
    }

    /// Waits until at least `n` results have arrived and returns them; an error after
    /// `timeout`.
    pub async fn wait_for_results(&self, n: usize, timeout: Duration) -> Result<Vec<TaskResult>> {
        self.wait_until(timeout, &format!("{n} result(s)"), |i| {
            (i.results.len() >= n).then(|| i.results.clone())
        })
        .await
    }

    /// Waits until at least `n` progress updates have arrived and returns them; an
    /// error after `timeout`.
    pub async fn wait_for_progress(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ProgressUpdatePayload>> {
        self.wait_until(timeout, &format!("{n} progress update(s)"), |i| {
            (i.progress.len() >= n).then(|| i.progress.clone())
        })
        .await
    }

    /// Waits until at least `n` registrations have arrived and returns them; an error
    /// after `timeout`.
    pub async fn wait_for_registrations(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<WorkerRegistration>> {
        self.wait_until(timeout, &format!("{n} registration(s)"), |i| {
            (i.registrations.len() >= n).then(|| i.registrations.clone())
        })
        .await
    }

    /// Waits until at least `n` heartbeats have been answered and returns them; an
    /// error after `timeout`.
    pub async fn wait_for_heartbeats(&self, n: usize, timeout: Duration) -> Result<Vec<Heartbeat>> {
        self.wait_until(timeout, &format!("{n} heartbeat(s)"), |i| {
            (i.heartbeats.len() >= n).then(|| i.heartbeats.clone())
        })
        .await
    }

    /// Waits until a heartbeat matching `check` has been answered and returns it; an
    /// error after `timeout`.
    pub async fn wait_for_heartbeat_where(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Heartbeat) -> bool,
    ) -> Result<Heartbeat> {
        self.wait_until(timeout, "a matching heartbeat", |i| {
            i.heartbeats.iter().find(|h| check(h)).cloned()
        })
        .await
    }

    /// Waits until at least `n` polls are waiting for a task; an error after `timeout`.
    pub async fn wait_for_pollers(&self, n: usize, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, &format!("{n} waiting poll(s)"), |i| {
            (i.pending_polls >= n).then_some(())
        })
        .await
    }

    /// Waits until `check` yields a value; an error naming `what` after `timeout`.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl FnMut(&mut Inner) -> Option<T>,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, self.shared.wait(check, || false)).await {
            Ok(Some(v)) => Ok(v),
            _ => Err(RxonError::timeout(format!(
                "mock {}: no {what} within {timeout:?}",
                self.shared.name
            ))),
        }
    }
}

/// An in-memory [`Transport`] for testing workers without an orchestrator.
///
/// Create one with [`MockHandle::transport`], or through the URL factory with
/// `mock://{name}` (see [`MockTransportFactory`]); script it through its
/// [`MockHandle`]. It follows the [`Transport`] contract: operations before
/// [`connect`](Transport::connect) or after [`close`](Transport::close) fail with
/// [`ErrorKind::Closed`], polls wait for pushed tasks up to their timeout, and a pending
/// [`next_command`](Transport::next_command) ends with `Ok(None)` on close.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use rxon_core::{TaskPayload, TaskResult, Transport, Map};
/// use rxon_testing::MockHandle;
/// use std::time::Duration;
///
/// let mock = MockHandle::new();
/// let transport = mock.transport("worker-1", "token")?;
/// transport.connect().await?;
/// mock.push_task(TaskPayload { task_id: "t1".into(), job_id: "j1".into(), ..Default::default() });
///
/// let task = transport.poll_task(Duration::from_secs(1)).await?.expect("a task");
/// transport.send_result(&TaskResult::success(&task, "worker-1", Map::new())).await?;
/// assert_eq!(mock.results()[0].task_id, "t1");
/// # Ok::<(), rxon_core::RxonError>(())
/// # }).unwrap();
/// ```
pub struct MockTransport {
    worker_id: String,
    token: Mutex<String>,
    shared: Arc<Shared>,
    lifecycle: Arc<Lifecycle>,
}

impl std::fmt::Debug for MockTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockTransport")
            .field("mock", &self.shared.name)
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

impl MockTransport {
    /// A transport attached to a fresh, private mock; reach it with [`handle`](Self::handle).
    pub fn new(worker_id: &str, token: &str) -> Result<Self> {
        MockHandle::new().transport(worker_id, token)
    }

    /// The handle of the mock this transport talks to.
    pub fn handle(&self) -> MockHandle {
        MockHandle {
            shared: self.shared.clone(),
        }
    }

    /// The credential the transport currently uses.
    pub fn token(&self) -> String {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn ready(&self, op: Operation) -> Result<()> {
        self.lifecycle.ready()?;
        let injected = self
            .shared
            .lock()
            .failures
            .get_mut(&op)
            .and_then(VecDeque::pop_front);
        match injected {
            Some((kind, msg)) => Err(RxonError::new(kind, msg)),
            None => Ok(()),
        }
    }
}

impl Transport for MockTransport {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn connect(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.lifecycle.connect() })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.lifecycle.close();
            self.shared.changed.notify_waiters();
            Ok(())
        })
    }

    fn register<'a>(
        &'a self,
        registration: &'a WorkerRegistration,
    ) -> BoxFuture<'a, Result<RegisterReply>> {
        Box::pin(async move {
            self.ready(Operation::Register)?;
            self.shared
                .update(|i| i.registrations.push(registration.clone()));
            Ok(RegisterReply::default())
        })
    }

    fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>> {
        Box::pin(async move {
            self.ready(Operation::Poll)?;
            // Counted while waiting, and uncounted even if this future is dropped.
            struct Pending<'a>(&'a Shared);
            impl Drop for Pending<'_> {
                fn drop(&mut self) {
                    self.0.update(|i| i.pending_polls -= 1);
                }
            }
            self.shared.update(|i| i.pending_polls += 1);
            let _pending = Pending(&self.shared);
            let life = self.lifecycle.clone();
            let waited = tokio::time::timeout(
                timeout,
                self.shared
                    .wait(|i| i.tasks.pop_front(), || life.is_closed()),
            )
            .await;
            match waited {
                Ok(Some(task)) => Ok(Some(task)),
                Ok(None) => Err(RxonError::closed("mock transport closed during poll")),
                Err(_) => Ok(None),
            }
        })
    }

    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
        Box::pin(async move {
            self.ready(Operation::Result)?;
            Ok(self.shared.update(|i| {
                i.results.push(result.clone());
                i.result_outcomes
                    .pop_front()
                    .unwrap_or(ResultOutcome::Accepted)
            }))
        })
    }

    fn send_heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<HeartbeatReply>> {
        Box::pin(async move {
            self.ready(Operation::Heartbeat)?;
            Ok(self.shared.update(|i| {
                i.heartbeats.push(heartbeat.clone());
                i.heartbeat_replies.pop_front().unwrap_or_default()
            }))
        })
    }

    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.ready(Operation::Progress)?;
            self.shared.update(|i| i.progress.push(progress.clone()));
            Ok(())
        })
    }

    fn emit_event<'a>(&'a self, event: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.ready(Operation::Event)?;
            self.shared.update(|i| i.events.push(event.clone()));
            Ok(())
        })
    }

    fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
        Box::pin(async move {
            if self.lifecycle.is_closed() {
                return Ok(None);
            }
            self.lifecycle.ready()?;
            let life = self.lifecycle.clone();
            Ok(self
                .shared
                .wait(|i| i.commands.pop_front(), || life.is_closed())
                .await)
        })
    }

    fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>> {
        Box::pin(async move {
            self.ready(Operation::Token)?;
            let n = self.shared.update(|i| {
                i.tokens_issued += 1;
                i.tokens_issued
            });
            let access_token = format!("mock-sts-{n}");
            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = access_token.clone();
            Ok(TokenResponse {
                access_token,
                expires_in: 3600,
                worker_id: self.worker_id.clone(),
                ..Default::default()
            })
        })
    }
}

/// Builds [`MockTransport`]s for `mock://` URLs.
///
/// `mock://{name}` attaches to the mock called `name` (the one [`MockHandle::named`]
/// or [`MockHandle::url`] gives), creating it if needed; plain `mock://` gives a
/// private mock that nothing else can reach.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockTransportFactory;

impl TransportFactory for MockTransportFactory {
    fn schemes(&self) -> &[&'static str] {
        SCHEMES
    }

    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        config.validate()?;
        let rest = config
            .url
            .split_once("://")
            .map(|(_, rest)| rest.trim_matches('/'))
            .unwrap_or_default();
        let handle = if rest.is_empty() {
            MockHandle::new()
        } else {
            validate_identifier(rest, "mock name")
                .map_err(|e| RxonError::config(format!("{}: {}", config.url, e.message())))?;
            MockHandle::named(rest)
        };
        Ok(Box::new(
            handle.transport(&config.worker_id, &config.token)?,
        ))
    }
}
