//! The conformance suite every transport runs: the [`Transport`] and [`Listener`]
//! contracts, exercised end to end through the embedded [`Orchestrator`].
//!
//! A transport crate implements [`Harness`] (how to build its listener and its client)
//! and stamps out one test per case with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! // tests/conformance.rs of a transport crate
//! struct MyHarness;
//! impl rxon_testing::conformance::Harness for MyHarness { /* … */ }
//! rxon_testing::conformance_tests!(MyHarness);
//! ```
//!
//! The cases are listed once (see [`CASES`]); each is also a public `async fn` taking
//! `&dyn Harness`, for running a subset. A case the harness declares it cannot run
//! (`conformance_tests!(harness, without: tcp)`) is reported as ignored, with the
//! reason, never as passed.
//! Cases panic (like `assert!`) on a contract violation. Every wait is bounded.
//!
//! This module is not covered by semver: cases are added as the contract grows.

use rxon_core::{
    ErrorKind, Heartbeat, IgnoredReason, Listener, Map, ProgressUpdatePayload, Protocol,
    ProtocolChoice, ResultOutcome, SkillInfo, TaskPayload, TaskResult, TaskStatus, Transport,
    TransportConfig, Value, WorkerRegistration,
};
use rxon_orchestrator::{CancelOutcome, Orchestrator};
use std::sync::Arc;
use std::time::Duration;

/// Bound on every wait in the suite.
const BOUND: Duration = Duration::from_secs(15);
/// The token the suite's orchestrators accept.
pub const TOKEN: &str = "conformance-token";
/// The credential the suite's orchestrators accept only for STS.
pub const BOOTSTRAP: &str = "conformance-bootstrap";

/// Optional behaviour a transport may lack; the cases that need it are skipped.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Transport::next_command`] delivers commands pushed by the orchestrator.
    pub commands: bool,
    /// [`Transport::send_progress`] reaches the orchestrator.
    pub progress: bool,
    /// The listener's endpoint is `scheme://127.0.0.1:port…`, a TCP address that a
    /// [`FaultProxy`](crate::faults::FaultProxy) can stand in for (needed by
    /// [`silent_connections_are_replaced`]).
    pub tcp: bool,
    /// The transport carries the 1.0b17 messages: events of any type, skill catalogs
    /// with contracts, `skills_hash`, `available_skills`. Without it (a 1.0b3 wire)
    /// the cases check the 1.0b3 behaviour instead: custom events are refused as
    /// `Unsupported`, catalogs arrive as names.
    pub v1b17: bool,
    /// The transport seals its 1.0b17 messages in the signed envelope and the
    /// listener checks it (network transports speaking 1.0b17; not the in-process one,
    /// where nothing travels).
    pub signs: bool,
}

impl Capabilities {
    /// Neither commands nor progress.
    pub fn none() -> Self {
        Self::default()
    }
    /// Commands, progress, a TCP endpoint and 1.0b17 messages: what a full network
    /// transport has.
    pub fn all() -> Self {
        Self::none()
            .with_commands(true)
            .with_progress(true)
            .with_tcp(true)
            .with_v1b17(true)
            .with_signs(true)
    }
    /// Sets [`signs`](Self::signs).
    pub fn with_signs(mut self, yes: bool) -> Self {
        self.signs = yes;
        self
    }
    /// Sets [`v1b17`](Self::v1b17).
    pub fn with_v1b17(mut self, yes: bool) -> Self {
        self.v1b17 = yes;
        self
    }
    /// Sets [`commands`](Self::commands).
    pub fn with_commands(mut self, yes: bool) -> Self {
        self.commands = yes;
        self
    }
    /// Sets [`progress`](Self::progress).
    pub fn with_progress(mut self, yes: bool) -> Self {
        self.progress = yes;
        self
    }
    /// Sets [`tcp`](Self::tcp).
    pub fn with_tcp(mut self, yes: bool) -> Self {
        self.tcp = yes;
        self
    }
}

/// [`ListenerOptions`](rxon_core::ListenerOptions) with every common knob set to a
/// distinct value (bind 127.0.0.2:7, poll wait 3 s, 1234 bytes, keepalive 4 s, 5
/// connections, handshake 6 s, TLS `s.pem`/`s.key`), for a listener crate's test that
/// each knob reaches its own configuration.
pub fn sample_listener_options() -> rxon_core::ListenerOptions {
    rxon_core::ListenerOptions::default()
        .with_bind(std::net::SocketAddr::from(([127, 0, 0, 2], 7)))
        .with_poll_wait(Duration::from_secs(3))
        .with_max_message_bytes(1234)
        .with_keepalive(Duration::from_secs(4))
        .with_max_connections(5)
        .with_handshake_timeout(Duration::from_secs(6))
        .with_tls(rxon_core::ServerTlsOptions::new("s.pem", "s.key"))
}

/// How the suite builds a transport's two sides.
pub trait Harness: Send + Sync {
    /// An unstarted listener on loopback whose polls wait `poll_wait` for a task.
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener>;

    /// An unconnected client for `config` (whose `url` is the listener's endpoint).
    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>>;

    /// What this transport supports beyond the required operations.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
    }

    /// The storage of each orchestrator the suite builds (default
    /// [`Storage::Memory`](rxon_orchestrator::Storage::Memory)); a shared storage
    /// should give each call state of its own (a fresh key prefix).
    fn storage(&self) -> rxon_orchestrator::Storage {
        rxon_orchestrator::Storage::Memory
    }
}

/// An orchestrator builder on the harness's storage.
fn builder(h: &dyn Harness) -> rxon_orchestrator::OrchestratorBuilder {
    Orchestrator::builder().storage(h.storage())
}

/// An orchestrator served by a started listener.
struct Env {
    orch: Orchestrator,
    listener: Box<dyn Listener>,
    endpoint: String,
}

impl Env {
    async fn start(h: &dyn Harness, orch: Orchestrator, poll_wait: Duration) -> Env {
        let listener = h.listener(poll_wait);
        within(listener.start(Arc::new(orch.clone())))
            .await
            .expect("listener starts");
        let endpoint = listener
            .endpoint()
            .expect("a started listener has an endpoint");
        Env {
            orch,
            listener,
            endpoint,
        }
    }

    async fn default(h: &dyn Harness) -> Env {
        let orch = builder(h).token(TOKEN).sts_credential(BOOTSTRAP).build();
        Env::start(h, orch, Duration::from_millis(300)).await
    }

    fn config(&self, worker_id: &str, token: &str) -> TransportConfig {
        let mut c = TransportConfig::new(&self.endpoint, worker_id, token);
        c.options.result_retry_delay = Duration::from_millis(10);
        c.options.request_timeout = Duration::from_secs(10);
        c
    }

    /// A connected, registered worker for the skill `echo`.
    async fn worker(&self, h: &dyn Harness, worker_id: &str) -> Arc<dyn Transport> {
        let t: Arc<dyn Transport> = h
            .transport(&self.config(worker_id, TOKEN))
            .expect("transport builds")
            .into();
        within(t.connect()).await.expect("connect");
        within(t.register(&registration(worker_id, &["echo"])))
            .await
            .expect("register");
        t
    }

    /// Starts a 60 s poll for `t` and returns once the orchestrator holds it.
    async fn parked_poll(
        &self,
        t: &Arc<dyn Transport>,
    ) -> tokio::task::JoinHandle<rxon_core::Result<Option<TaskPayload>>> {
        let t = t.clone();
        let poller = tokio::spawn(async move { t.poll_task(Duration::from_secs(60)).await });
        self.orch
            .wait_for_pollers(1, BOUND)
            .await
            .expect("the poll reaches the orchestrator");
        poller
    }

    async fn stop(self) {
        within(self.listener.stop(Duration::from_secs(5)))
            .await
            .expect("listener stops");
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("conformance: an operation took longer than {BOUND:?}"))
}

fn registration(worker_id: &str, skills: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: worker_id.into(),
        worker_type: "conformance".into(),
        supported_skills: SkillInfo::list(skills.iter().copied()),
        ..Default::default()
    }
}

fn task(id: &str, task_type: &str) -> TaskPayload {
    let mut params = Map::new();
    params.insert("text".into(), Value::from(format!("payload of {id}")));
    params.insert(
        "nested".into(),
        Value::from(vec![Value::from(1u8), Value::Null]),
    );
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: task_type.into(),
        params,
        ..Default::default()
    }
}

/// The next task `t` is handed, within 5 s (the case fails without one).
async fn next_task(t: &dyn Transport) -> TaskPayload {
    within(t.poll_task(Duration::from_secs(5)))
        .await
        .expect("poll")
        .expect("a task")
}

fn echo(task: &TaskPayload, worker_id: &str) -> TaskResult {
    let mut data = Map::new();
    data.insert(
        "echo".into(),
        task.params.get("text").cloned().unwrap_or_default(),
    );
    TaskResult::success(task, worker_id, data)
}

/// Register, poll, result, heartbeat: every required operation, checked on both sides.
pub async fn every_operation(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    assert!(
        env.orch
            .workers()
            .await
            .iter()
            .any(|w| w.worker_id == "w-1"),
        "the orchestrator knows the registered worker"
    );
    env.orch
        .enqueue(task("t-1", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    assert_eq!(got, task("t-1", "echo"), "the task arrives unchanged");
    let outcome = within(t.send_result(&echo(&got, "w-1")))
        .await
        .expect("result");
    assert!(outcome.is_accepted(), "{outcome:?}");
    let stored = env
        .orch
        .task_result("t-1")
        .await
        .expect("the result was applied");
    assert_eq!(stored, echo(&got, "w-1"), "the result arrives unchanged");
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        status: "idle".into(),
        load: 0.25,
        ..Default::default()
    };
    let reply = within(t.send_heartbeat(&hb)).await.expect("heartbeat");
    assert!(
        reply.cancel_task_ids.is_empty() && !reply.require_full_sync,
        "{reply:?}"
    );
    env.stop().await;
}

/// A poll with nothing queued ends with `Ok(None)` after the wait.
pub async fn poll_without_task_is_none(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    let got = within(t.poll_task(Duration::from_millis(300)))
        .await
        .expect("poll");
    assert_eq!(got, None);
    env.stop().await;
}

/// A poll ends with `Ok(None)` close to its own timeout, even when the listener would
/// wait far longer.
pub async fn poll_honours_its_timeout(h: &dyn Harness) {
    let orch = builder(h).token(TOKEN).build();
    let env = Env::start(h, orch, Duration::from_secs(60)).await;
    let t = env.worker(h, "w-1").await;
    let got = tokio::time::timeout(
        Duration::from_secs(4),
        t.poll_task(Duration::from_millis(200)),
    )
    .await
    .expect("a 200 ms poll must not wait for the listener's 60 s")
    .expect("poll");
    assert_eq!(got, None);
    env.stop().await;
}

/// A parked poll gets a task enqueued while it waits, without waiting out its timeout.
pub async fn parked_poll_wakes_for_new_task(h: &dyn Harness) {
    let orch = builder(h).token(TOKEN).build();
    let env = Env::start(h, orch, Duration::from_secs(60)).await;
    let t = env.worker(h, "w-1").await;
    let poller = env.parked_poll(&t).await;
    env.orch
        .enqueue(task("t-late", "echo"))
        .await
        .expect("enqueue");
    // Far less than the 60 s wait: the hand-off is immediate.
    let got = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("the parked poll woke up")
        .expect("poll task")
        .expect("poll");
    assert_eq!(got.map(|t| t.task_id).as_deref(), Some("t-late"));
    env.stop().await;
}

/// Tasks come in FIFO order, and only of the types the worker registered.
pub async fn skills_and_fifo(h: &dyn Harness) {
    let env = Env::default(h).await;
    for (id, ty) in [("a", "echo"), ("b", "other"), ("c", "echo")] {
        env.orch.enqueue(task(id, ty)).await.expect("enqueue");
    }
    let t = env.worker(h, "w-1").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        match within(t.poll_task(Duration::from_millis(300)))
            .await
            .expect("poll")
        {
            Some(task) => seen.push(task.task_id),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "c"], "FIFO within the worker's skills only");
    assert_eq!(env.orch.queued().await, 1, "the other type stays queued");
    env.stop().await;
}

/// A duplicate of an applied result is accepted once; a different one is stale.
pub async fn duplicate_results_apply_once(h: &dyn Harness) {
    let env = Env::default(h).await;
    env.orch
        .enqueue(task("t-d", "echo"))
        .await
        .expect("enqueue");
    let t = env.worker(h, "w-1").await;
    let got = next_task(&*t).await;
    let result = echo(&got, "w-1");
    for _ in 0..2 {
        let outcome = within(t.send_result(&result)).await.expect("result");
        assert!(
            outcome.is_accepted(),
            "a duplicate is acknowledged: {outcome:?}"
        );
    }
    assert_eq!(env.orch.applied_results().await, 1, "applied once");
    let different = TaskResult::cancelled(&got, "w-1");
    let outcome = within(t.send_result(&different)).await.expect("result");
    assert_eq!(outcome.ignored_reason(), Some(&IgnoredReason::StaleTask));
    env.stop().await;
}

/// Each ignored reason reaches the worker as `ResultOutcome::Ignored` with that reason.
pub async fn ignored_results_carry_their_reason(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t1 = env.worker(h, "w-1").await;
    let t2 = env.worker(h, "w-2").await;

    // Unknown task.
    let ghost = echo(&task("t-ghost", "echo"), "w-1");
    let outcome = within(t1.send_result(&ghost)).await.expect("result");
    assert_eq!(outcome.ignored_reason(), Some(&IgnoredReason::JobNotFound));

    // Held by another worker.
    env.orch
        .enqueue(task("t-held", "echo"))
        .await
        .expect("enqueue");
    let held = next_task(&t1).await;
    let outcome = within(t2.send_result(&echo(&held, "w-2")))
        .await
        .expect("result");
    assert_eq!(
        outcome.ignored_reason(),
        Some(&IgnoredReason::WorkerMismatch)
    );

    // Cancelled job.
    let outcome_cancel = env.orch.cancel("t-held").await.expect("cancel");
    assert!(
        matches!(outcome_cancel, CancelOutcome::Signalled { .. }),
        "{outcome_cancel:?}"
    );
    let outcome = within(t1.send_result(&echo(&held, "w-1")))
        .await
        .expect("result");
    assert_eq!(outcome.ignored_reason(), Some(&IgnoredReason::JobCancelled));

    // Past the deadline: a zero deadline has passed by the time any result arrives.
    env.orch
        .enqueue_with_deadline(task("t-late", "echo"), Duration::ZERO)
        .await
        .expect("enqueue");
    let late = next_task(&t1).await;
    let outcome = within(t1.send_result(&echo(&late, "w-1")))
        .await
        .expect("result");
    assert_eq!(
        outcome.ignored_reason(),
        Some(&IgnoredReason::DeadlineExceeded)
    );
    assert!(
        matches!(
            outcome,
            ResultOutcome::Ignored {
                message: Some(_),
                ..
            }
        ),
        "the orchestrator's message reaches the worker"
    );
    assert_eq!(env.orch.applied_results().await, 0);
    env.stop().await;
}

/// A credential only the STS operation accepts: the first call is refused, the
/// transport refreshes once and retries; a credential nobody accepts is an auth error.
pub async fn token_refresh_and_auth_failure(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = h
        .transport(&env.config("w-1", BOOTSTRAP))
        .expect("transport builds");
    within(t.connect()).await.expect("connect");
    within(t.register(&registration("w-1", &["echo"])))
        .await
        .expect("register succeeds after one refresh");
    env.orch
        .enqueue(task("t-a", "echo"))
        .await
        .expect("enqueue");
    let got = within(t.poll_task(Duration::from_secs(5)))
        .await
        .expect("poll");
    assert!(got.is_some(), "the refreshed token keeps working");

    let bad = h
        .transport(&env.config("w-2", "stolen"))
        .expect("transport builds");
    within(bad.connect()).await.expect("connect");
    let err = within(bad.register(&registration("w-2", &["echo"])))
        .await
        .expect_err("a bad credential is refused");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    env.stop().await;
}

/// Over the rate limit: `RateLimited` with the orchestrator's retry-after.
pub async fn rate_limited(h: &dyn Harness) {
    let orch = builder(h)
        .token(TOKEN)
        .rate_limit(3, Duration::from_secs(60))
        .build();
    let env = Env::start(h, orch, Duration::from_millis(300)).await;
    let t = env.worker(h, "w-1").await; // one request
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    let mut limited = None;
    for _ in 0..5 {
        if let Err(e) = within(t.send_heartbeat(&hb)).await {
            limited = Some(e);
            break;
        }
    }
    let err = limited.expect("the limit is enforced");
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert!(
        err.retry_after().is_some(),
        "retry-after reaches the worker"
    );
    assert!(err.is_retryable());
    env.stop().await;
}

/// A handler whose every heartbeat is refused as rate limited with the hint in `hint`,
/// and whose first `unavailable_results` results are refused as unavailable (a 503 on
/// HTTP); it counts the results it saw.
struct Throttling {
    orch: Orchestrator,
    hint: std::sync::Mutex<Duration>,
    unavailable_results: std::sync::atomic::AtomicU32,
    results_seen: std::sync::atomic::AtomicU32,
}

impl Throttling {
    fn new(orch: Orchestrator, hint: Duration, unavailable_results: u32) -> Self {
        Throttling {
            orch,
            hint: std::sync::Mutex::new(hint),
            unavailable_results: unavailable_results.into(),
            results_seen: 0.into(),
        }
    }
}

impl rxon_core::Handler for Throttling {
    fn register(
        &self,
        ctx: rxon_core::RequestContext,
        r: WorkerRegistration,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<rxon_core::RegisterReply>> {
        self.orch.register(ctx, r)
    }
    fn poll(
        &self,
        ctx: rxon_core::RequestContext,
        wait: Duration,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<Option<TaskPayload>>> {
        self.orch.poll(ctx, wait)
    }
    fn result(
        &self,
        ctx: rxon_core::RequestContext,
        r: TaskResult,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<ResultOutcome>> {
        use std::sync::atomic::Ordering;
        self.results_seen.fetch_add(1, Ordering::Relaxed);
        let refuse = self
            .unavailable_results
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Box::pin(async {
                Err(rxon_core::HandlerError::unavailable(
                    "restarting, try again",
                ))
            });
        }
        self.orch.result(ctx, r)
    }
    fn heartbeat(
        &self,
        _: rxon_core::RequestContext,
        _: Option<Heartbeat>,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<rxon_core::HeartbeatReply>> {
        let hint = *self.hint.lock().unwrap_or_else(|p| p.into_inner());
        Box::pin(async move {
            Err(rxon_core::HandlerError::rate_limited(
                "slow down",
                Some(hint),
            ))
        })
    }
    // Everything else is the orchestrator's, authentication of sessions included.
    fn authenticate(
        &self,
        ctx: rxon_core::RequestContext,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<()>> {
        self.orch.authenticate(ctx)
    }
    fn token(
        &self,
        ctx: rxon_core::RequestContext,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<rxon_core::TokenResponse>> {
        self.orch.token(ctx)
    }
    fn refresh(
        &self,
        ctx: rxon_core::RequestContext,
        refresh_token: String,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<rxon_core::TokenResponse>> {
        self.orch.refresh(ctx, refresh_token)
    }
    fn envelope_key(
        &self,
        ctx: rxon_core::RequestContext,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<Option<String>>> {
        self.orch.envelope_key(ctx)
    }
    fn task_signing_key(&self) -> Option<String> {
        self.orch.task_signing_key()
    }
    fn commands(
        &self,
        ctx: rxon_core::RequestContext,
    ) -> rxon_core::BoxFuture<'_, rxon_core::HandlerResult<Box<dyn rxon_core::CommandReceiver>>>
    {
        self.orch.commands(ctx)
    }
}

/// A peer's retry-after hint reaches the worker clamped between
/// [`MIN_RETRY_AFTER`](rxon_core::retry::MIN_RETRY_AFTER) and
/// [`MAX_RETRY_AFTER`](rxon_core::retry::MAX_RETRY_AFTER): "retry after 0" cannot make a
/// worker spin, "retry after ten years" cannot park it for ever.
pub async fn retry_after_hints_are_clamped(h: &dyn Harness) {
    use rxon_core::retry::{MAX_RETRY_AFTER, MIN_RETRY_AFTER};
    let handler = Arc::new(Throttling::new(
        builder(h).token(TOKEN).build(),
        Duration::ZERO,
        0,
    ));
    let listener = h.listener(Duration::from_millis(300));
    within(listener.start(handler.clone()))
        .await
        .expect("listener starts");
    let endpoint = listener.endpoint().expect("an endpoint");
    let mut config = TransportConfig::new(&endpoint, "w-1", TOKEN);
    config.options.request_timeout = Duration::from_secs(10);
    let t = h.transport(&config).expect("transport builds");
    within(t.connect()).await.expect("connect");
    within(t.register(&registration("w-1", &["echo"])))
        .await
        .expect("register");
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    let ten_years = Duration::from_secs(10 * 365 * 24 * 3600);
    // (hint sent, lowest and highest the worker may see: a wire in whole seconds
    // rounds a zero hint up to one second).
    let cases = [
        (Duration::ZERO, MIN_RETRY_AFTER, Duration::from_secs(1)),
        (
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(5),
        ),
        (ten_years, MAX_RETRY_AFTER, MAX_RETRY_AFTER),
    ];
    for (hint, lowest, highest) in cases {
        *handler.hint.lock().unwrap_or_else(|p| p.into_inner()) = hint;
        let err = within(t.send_heartbeat(&hb))
            .await
            .expect_err("the heartbeat is refused");
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
        let seen = err.retry_after().expect("the hint reaches the worker");
        assert!(
            lowest <= seen && seen <= highest,
            "hint {hint:?} reached the worker as {seen:?}, expected {lowest:?}..={highest:?}"
        );
    }
    within(t.close()).await.expect("close");
    within(listener.stop(Duration::from_secs(2)))
        .await
        .expect("listener stops");
}

/// A result whose first attempts meet an unavailable orchestrator (a network-kind
/// refusal: 503 on HTTP, `UNAVAILABLE` on gRPC) is retried and applied once; when
/// every attempt fails, the network error surfaces after exactly `result_retries`
/// attempts.
pub async fn results_are_retried_on_network_failures(h: &dyn Harness) {
    use std::sync::atomic::Ordering;
    let orch = builder(h).token(TOKEN).build();
    let handler = Arc::new(Throttling::new(orch.clone(), Duration::ZERO, 2));
    let listener = h.listener(Duration::from_millis(300));
    within(listener.start(handler.clone()))
        .await
        .expect("listener starts");
    let endpoint = listener.endpoint().expect("endpoint");
    let mut config = TransportConfig::new(&endpoint, "w-1", TOKEN);
    config.options.result_retry_delay = Duration::from_millis(10);
    config.options.result_retries = 3;
    let t = h.transport(&config).expect("transport builds");
    within(t.connect()).await.expect("connect");
    within(t.register(&registration("w-1", &["echo"])))
        .await
        .expect("register");
    orch.enqueue(task("t-1", "echo")).await.expect("enqueue");
    let got = next_task(&*t).await;
    let outcome = within(t.send_result(&echo(&got, "w-1")))
        .await
        .expect("the third attempt reaches the orchestrator");
    assert_eq!(outcome, ResultOutcome::Accepted);
    assert_eq!(
        handler.results_seen.load(Ordering::Relaxed),
        3,
        "two refused attempts, then the one applied"
    );
    let applied = within(orch.wait_result("t-1", BOUND))
        .await
        .expect("applied");
    assert_eq!(applied.status, TaskStatus::Success);

    // Out of attempts: the network error surfaces after exactly result_retries tries.
    handler.unavailable_results.store(10, Ordering::Relaxed);
    handler.results_seen.store(0, Ordering::Relaxed);
    let err = within(t.send_result(&echo(&got, "w-1")))
        .await
        .expect_err("every attempt refused");
    assert!(err.is_network(), "{err}");
    assert_eq!(handler.results_seen.load(Ordering::Relaxed), 3);
    within(listener.stop(Duration::from_secs(5)))
        .await
        .expect("listener stops");
}

/// Invalid identifiers are refused before anything is sent.
pub async fn invalid_identifiers(h: &dyn Harness) {
    let env = Env::default(h).await;
    for bad in ["", "../etc", "a/b", "a b", "w%2F"] {
        let err = h
            .transport(&env.config(bad, TOKEN))
            .err()
            .unwrap_or_else(|| panic!("worker id {bad:?} must be refused"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
    env.stop().await;
}

/// Stopping the listener ends pending polls with "no task", within its deadline.
pub async fn stop_ends_pending_polls(h: &dyn Harness) {
    let orch = builder(h).token(TOKEN).build();
    let env = Env::start(h, orch, Duration::from_secs(60)).await;
    let t = env.worker(h, "w-1").await;
    // A task the worker does not serve stays queued through the stop: stopping ends
    // polls, it neither hands out nor drops work.
    env.orch
        .enqueue(task("t-other", "other"))
        .await
        .expect("enqueue");
    let poller = env.parked_poll(&t).await;
    let orch = env.orch.clone();
    env.stop().await;
    let polled = within(poller).await.expect("poll task");
    assert_eq!(polled.expect("a stopping listener answers no task"), None);
    assert_eq!(orch.pending_polls(), 0, "the parked poll ended");
    assert_eq!(orch.queued().await, 1, "the queued task is still queued");
    assert_eq!(
        orch.task_state("t-other").await,
        Some(rxon_orchestrator::TaskState::Queued)
    );
}

/// A cancelled task is listed in the holder's next heartbeat reply, and pushed over its
/// command channel when the transport has one.
pub async fn cancel_reaches_the_worker(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    env.orch
        .enqueue(task("t-c", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    let commands = h.capabilities().commands.then(|| {
        let t = t.clone();
        tokio::spawn(async move { t.next_command().await })
    });
    if commands.is_some() {
        env.orch
            .wait_for_command_channel("w-1", BOUND)
            .await
            .expect("the worker opens its command channel");
    }
    let outcome = env.orch.cancel(&got.task_id).await.expect("cancel");
    assert!(
        matches!(outcome, CancelOutcome::Signalled { .. }),
        "{outcome:?}"
    );
    if let Some(reader) = commands {
        let cmd = within(reader)
            .await
            .expect("reader")
            .expect("next_command")
            .expect("a command");
        assert_eq!(cmd.task_id.as_deref(), Some("t-c"));
    }
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        current_tasks: vec!["t-c".into()],
        ..Default::default()
    };
    let reply = within(t.send_heartbeat(&hb)).await.expect("heartbeat");
    assert_eq!(reply.cancel_task_ids, ["t-c"]);
    let confirm = TaskResult::cancelled(&got, "w-1");
    let outcome = within(t.send_result(&confirm)).await.expect("result");
    assert!(
        outcome.is_accepted(),
        "confirming a cancel is accepted: {outcome:?}"
    );
    assert_eq!(
        env.orch.task_result("t-c").await.map(|r| r.status),
        Some(TaskStatus::Cancelled)
    );
    env.stop().await;
}

/// Progress reaches the orchestrator (transports with progress), or fails with
/// `Unsupported` (transports without): never silently dropped.
pub async fn progress_is_delivered_or_refused(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    env.orch
        .enqueue(task("t-p", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    let update = ProgressUpdatePayload::new(&got.task_id, &got.job_id, 0.5);
    let sent = within(t.send_progress(&update)).await;
    if h.capabilities().progress {
        sent.expect("progress is sent");
        let mut progress = env.orch.subscribe_progress();
        if env.orch.task_progress("t-p").await.is_empty() {
            within(progress.recv()).await.expect("progress arrives");
        }
        assert_eq!(env.orch.task_progress("t-p").await[0].progress, 0.5);
    } else {
        let err = sent.expect_err("without a channel, progress is refused");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    }
    env.stop().await;
}

/// Events (1.0b17): a custom event from the task's holder reaches the orchestrator with
/// its payload, a `"progress"` event is stored as progress, an event about a task the
/// sender does not hold is refused (403), one about an unknown task is refused (404).
/// On a 1.0b3 wire a custom event is refused as `Unsupported` (never dropped).
pub async fn events_are_delivered_or_refused(h: &dyn Harness) {
    use rxon_core::WorkerEventPayload;
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    let other = env.worker(h, "w-2").await;
    env.orch
        .enqueue(task("t-e", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    let payload = rxon_core::map! {"frame": 7, "name": "ünïcode", "nested": {"ok": true, "list": [1, 2.5, null]}};
    // Any printable name a skill declares, dots included.
    let custom = WorkerEventPayload::new("w-1", "frame.rendered", payload.clone())
        .for_task(&got.task_id, &got.job_id);
    let sent = within(t.emit_event(&custom)).await;
    if !h.capabilities().v1b17 {
        let err = sent.expect_err("a 1.0b3 wire has no custom events");
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        env.stop().await;
        return;
    }
    sent.expect("the holder's event is taken");
    let events = env.orch.task_events("t-e").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, "frame.rendered");
    assert_eq!(events[0].payload, payload, "the payload arrives unchanged");
    assert_eq!(events[0].worker_id, "w-1");
    let progress = WorkerEventPayload::new(
        "w-1",
        rxon_core::constants::EVENT_TYPE_PROGRESS,
        rxon_core::map! {"progress": 0.25, "message": "a quarter"},
    )
    .for_task(&got.task_id, &got.job_id);
    within(t.emit_event(&progress))
        .await
        .expect("a progress event");
    let stored = env.orch.task_progress("t-e").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].progress, 0.25);
    assert_eq!(stored[0].message.as_deref(), Some("a quarter"));
    // Another worker, with a valid credential, about a task it does not hold.
    let intruder = WorkerEventPayload::new("w-2", "frame_rendered", Map::new())
        .for_task(&got.task_id, &got.job_id);
    let err = within(other.emit_event(&intruder))
        .await
        .expect_err("an event about another worker's task is refused");
    assert_eq!(err.status(), Some(403), "{err}");
    let unknown =
        WorkerEventPayload::new("w-1", "frame_rendered", Map::new()).for_task("t-nope", "j-nope");
    let err = within(t.emit_event(&unknown))
        .await
        .expect_err("an event about an unknown task is refused");
    assert_eq!(err.status(), Some(404), "{err}");
    assert_eq!(
        env.orch.task_events("t-e").await.len(),
        1,
        "refused events are not stored"
    );
    env.stop().await;
}

/// A worker whose heartbeat says `draining` (or `offline`) is handed no task, even with
/// a poll waiting; once it says `idle` again, it gets the task.
pub async fn draining_and_offline_workers_get_no_task(h: &dyn Harness) {
    use rxon_core::constants::{WORKER_STATUS_DRAINING, WORKER_STATUS_IDLE, WORKER_STATUS_OFFLINE};
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    env.orch
        .enqueue(task("t-d", "echo"))
        .await
        .expect("enqueue");
    let beat = |status: &str| Heartbeat {
        worker_id: "w-1".into(),
        status: status.into(),
        ..Default::default()
    };
    for status in [WORKER_STATUS_DRAINING, WORKER_STATUS_OFFLINE] {
        within(t.send_heartbeat(&beat(status)))
            .await
            .expect("heartbeat");
        let got = within(t.poll_task(Duration::from_millis(300)))
            .await
            .expect("poll");
        assert_eq!(got, None, "a {status} worker gets no task");
        assert_eq!(env.orch.queued().await, 1, "the task stays queued");
    }
    within(t.send_heartbeat(&beat(WORKER_STATUS_IDLE)))
        .await
        .expect("heartbeat");
    let got = within(t.poll_task(Duration::from_secs(5)))
        .await
        .expect("poll");
    assert_eq!(got.map(|t| t.task_id).as_deref(), Some("t-d"));
    env.stop().await;
}

/// A skill with a contract, for the catalog cases.
fn contract_skill() -> SkillInfo {
    let mut s = SkillInfo::new("echo");
    s.version = Some("2.1.0".into());
    s.skill_type = Some("text".into());
    s.description = Some("repeats its input".into());
    s.input_schema = Some(rxon_core::map! {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 100}},
        "required": ["text"],
    });
    s.output_schema = Some(rxon_core::map! {"type": "object"});
    s.events_schema = Some(rxon_core::map! {"frame_rendered": {"type": "object"}});
    s.output_statuses = Some(vec!["success".into(), "failure".into()]);
    s
}

/// `skills_hash` (1.0b17): the catalog goes once with its hash; a heartbeat with the
/// same hash and no catalog is fine; one with an unknown hash and no catalog is
/// answered `require_full_sync`; one with a catalog replaces it. On a 1.0b3 wire the
/// catalog travels as names in every heartbeat.
pub async fn skills_hash_and_full_sync(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t: Arc<dyn Transport> = h
        .transport(&env.config("w-1", TOKEN))
        .expect("transport")
        .into();
    within(t.connect()).await.expect("connect");
    let mut reg = registration("w-1", &[]);
    reg.supported_skills = vec![contract_skill()];
    reg.skills_hash = Some("hash-1".into());
    within(t.register(&reg)).await.expect("register");
    let info = env.orch.workers().await.pop().expect("the worker");
    if !h.capabilities().v1b17 {
        assert_eq!(info.skills, ["echo"]);
        let hb = Heartbeat {
            worker_id: "w-1".into(),
            status: "idle".into(),
            supported_skills: Some(SkillInfo::list(["echo", "reverse"])),
            ..Default::default()
        };
        let reply = within(t.send_heartbeat(&hb)).await.expect("heartbeat");
        assert!(!reply.require_full_sync, "{reply:?}");
        let info = env.orch.workers().await.pop().expect("the worker");
        assert_eq!(info.skills, ["echo", "reverse"], "the names arrive");
        env.stop().await;
        return;
    }
    assert_eq!(
        info.catalog(),
        [contract_skill()],
        "the contract arrives intact"
    );
    assert_eq!(info.skills_hash.as_deref(), Some("hash-1"));
    let beat = |hash: &str, skills: Option<Vec<SkillInfo>>| Heartbeat {
        worker_id: "w-1".into(),
        status: "idle".into(),
        skills_hash: Some(hash.into()),
        supported_skills: skills,
        ..Default::default()
    };
    let reply = within(t.send_heartbeat(&beat("hash-1", None)))
        .await
        .expect("heartbeat");
    assert!(!reply.require_full_sync, "the known hash: {reply:?}");
    let reply = within(t.send_heartbeat(&beat("hash-2", None)))
        .await
        .expect("heartbeat");
    assert!(reply.require_full_sync, "an unknown hash: {reply:?}");
    let mut v2 = contract_skill();
    v2.version = Some("3.0.0".into());
    let reply = within(t.send_heartbeat(&beat("hash-2", Some(vec![v2.clone()]))))
        .await
        .expect("heartbeat");
    assert!(!reply.require_full_sync, "with the catalog: {reply:?}");
    let info = env.orch.workers().await.pop().expect("the worker");
    assert_eq!(info.catalog(), [v2]);
    assert_eq!(info.skills_hash.as_deref(), Some("hash-2"));
    let reply = within(t.send_heartbeat(&beat("hash-2", None)))
        .await
        .expect("heartbeat");
    assert!(!reply.require_full_sync, "the new hash is known: {reply:?}");
    env.stop().await;
}

/// Every field a registration and a heartbeat carry arrives as sent (a transport that
/// drops one fails here): the ones both generations carry, and on 1.0b17 wires the
/// catalog, `skills_hash`, `available_skills` and `hot_skills`.
pub async fn registration_and_heartbeat_fields_arrive_intact(h: &dyn Harness) {
    use rxon_core::{InstalledArtifact, Resources, WorkerCapabilities};
    let b17 = h.capabilities().v1b17;
    let env = Env::default(h).await;
    let t: Arc<dyn Transport> = h
        .transport(&env.config("w-1", TOKEN))
        .expect("transport")
        .into();
    within(t.connect()).await.expect("connect");
    let reg = WorkerRegistration {
        worker_id: "w-1".into(),
        worker_type: "gpu-box".into(),
        supported_skills: if b17 {
            vec![contract_skill(), SkillInfo::new("reverse")]
        } else {
            SkillInfo::list(["echo", "reverse"])
        },
        resources: Resources {
            max_concurrent_tasks: 3,
            cpu_cores: 16,
            ..Default::default()
        },
        installed_software: [("python".to_owned(), "3.11".to_owned())].into(),
        installed_artifacts: vec![InstalledArtifact::new("llama", "7b")],
        capabilities: WorkerCapabilities {
            hostname: "box-1".into(),
            ip_address: "10.0.0.7".into(),
            cost_per_skill: [("echo".to_owned(), 0.5)].into(),
            ..Default::default()
        },
        skills_hash: b17.then(|| "hash-1".into()),
        available_skills: b17.then(|| vec!["echo".into()]),
        hot_skills: b17.then(|| vec!["reverse".into()]),
        ..Default::default()
    };
    within(t.register(&reg)).await.expect("register");
    let info = env.orch.workers().await.pop().expect("the worker");
    let got = &info.registration;
    assert_eq!(got.worker_type, reg.worker_type);
    assert_eq!(got.supported_skills, reg.supported_skills);
    assert_eq!(got.resources.max_concurrent_tasks, 3, "{:?}", got.resources);
    assert_eq!(got.resources.cpu_cores, 16, "{:?}", got.resources);
    assert_eq!(got.installed_software, reg.installed_software);
    assert_eq!(
        got.installed_artifacts
            .iter()
            .map(|a| (a.name.as_str(), a.version.as_str()))
            .collect::<Vec<_>>(),
        [("llama", "7b")]
    );
    assert_eq!(got.capabilities.hostname, "box-1");
    assert_eq!(got.capabilities.ip_address, "10.0.0.7");
    assert_eq!(
        got.capabilities.cost_per_skill,
        reg.capabilities.cost_per_skill
    );
    assert_eq!(got.skills_hash, reg.skills_hash);
    assert_eq!(got.available_skills, reg.available_skills);
    assert_eq!(got.hot_skills, reg.hot_skills);
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        status: "busy".into(),
        load: if b17 { 0.0 } else { 0.5 },
        current_tasks: vec!["t-a".into(), "t-b".into()],
        supported_skills: (!b17).then(|| SkillInfo::list(["echo", "reverse"])),
        skills_hash: b17.then(|| "hash-1".into()),
        available_skills: b17.then(|| vec!["reverse".into()]),
        hot_skills: Some(vec!["echo".into()]),
        ..Default::default()
    };
    within(t.send_heartbeat(&hb)).await.expect("heartbeat");
    let info = env.orch.workers().await.pop().expect("the worker");
    assert_eq!(info.reported_status(), Some("busy"));
    let got = info.last_heartbeat.expect("the heartbeat is kept");
    assert_eq!(got.available_skills, hb.available_skills);
    assert_eq!(got.status, "busy");
    assert_eq!(got.current_tasks, hb.current_tasks);
    assert_eq!(got.hot_skills, hb.hot_skills);
    assert_eq!(got.skills_hash, hb.skills_hash);
    if !b17 {
        assert_eq!(got.load, 0.5);
    }
    env.stop().await;
}

/// A skill's declared schemas (1.0b17), checked by the orchestrator whatever the wire:
/// a task whose params the worker's `input_schema` rejects is not handed to it (it
/// stays queued), a success whose data breaks `output_schema` is taken as a
/// `CONTRACT_VIOLATION_ERROR` failure, an event whose payload breaks `events_schema` is
/// refused (400). On a 1.0b3 wire the catalog is names only: nothing is checked.
pub async fn schema_violations_are_reported(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t: Arc<dyn Transport> = h
        .transport(&env.config("w-1", TOKEN))
        .expect("transport")
        .into();
    within(t.connect()).await.expect("connect");
    let mut skill = SkillInfo::new("echo");
    skill.input_schema = Some(rxon_core::map! {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    });
    skill.output_schema = Some(rxon_core::map! {"type": "object", "required": ["echo"]});
    skill.events_schema = Some(rxon_core::map! {"frame.rendered": {"required": ["frame"]}});
    let mut reg = registration("w-1", &[]);
    reg.supported_skills = vec![skill];
    within(t.register(&reg)).await.expect("register");
    let mut bad = task("t-bad", "echo");
    bad.params = rxon_core::map! {"text": 5};
    env.orch.enqueue(bad).await.expect("enqueue");
    env.orch
        .enqueue(task("t-good", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    if !h.capabilities().v1b17 {
        assert_eq!(got.task_id, "t-bad", "no schema travels: FIFO as usual");
        env.stop().await;
        return;
    }
    assert_eq!(
        got.task_id, "t-good",
        "the task the schema rejects is passed over"
    );
    assert_eq!(
        env.orch.task_state("t-bad").await,
        Some(rxon_orchestrator::TaskState::Queued)
    );
    let refused = rxon_core::WorkerEventPayload::new("w-1", "frame.rendered", Map::new())
        .for_task(&got.task_id, &got.job_id);
    let err = within(t.emit_event(&refused))
        .await
        .expect_err("a payload the events schema rejects");
    assert_eq!(err.status(), Some(400), "{err}");
    let fine =
        rxon_core::WorkerEventPayload::new("w-1", "frame.rendered", rxon_core::map! {"frame": 1})
            .for_task(&got.task_id, &got.job_id);
    within(t.emit_event(&fine)).await.expect("a valid event");
    assert_eq!(env.orch.task_events("t-good").await.len(), 1);
    let broken = TaskResult::success(&got, "w-1", rxon_core::map! {"other": 1});
    let outcome = within(t.send_result(&broken)).await.expect("result");
    assert!(outcome.is_accepted(), "still taken: {outcome:?}");
    let stored = env.orch.task_result("t-good").await.expect("applied");
    assert_eq!(stored.status, TaskStatus::Failure);
    assert_eq!(
        stored.error.map(|e| e.code),
        Some(rxon_core::ErrorCode::ContractViolation)
    );
    let again = within(t.send_result(&broken)).await.expect("result");
    assert!(
        again.is_accepted(),
        "the same result again is a duplicate: {again:?}"
    );
    env.stop().await;
}

/// Resource matching: what a worker declares at registration (cores, its GPU,
/// software, artifacts: fields every wire carries) decides which tasks it is handed. A
/// task that needs a big machine is passed over by the small worker, which gets the
/// next task it can run instead, and goes to the big one.
pub async fn resource_matching_dispatch(h: &dyn Harness) {
    use rxon_core::matching::ResourceRequirements;
    use rxon_core::{GpuInfo, InstalledArtifact};
    let env = Env::default(h).await;
    let connect = |id: &str| {
        let t: Arc<dyn Transport> = h
            .transport(&env.config(id, TOKEN))
            .expect("transport")
            .into();
        t
    };
    let (small, big) = (connect("w-small"), connect("w-big"));
    within(small.connect()).await.expect("connect");
    within(big.connect()).await.expect("connect");
    let mut reg = registration("w-small", &["echo"]);
    reg.resources.cpu_cores = 2;
    within(small.register(&reg)).await.expect("register");
    let mut reg = registration("w-big", &["echo"]);
    reg.resources.cpu_cores = 16;
    reg.resources.gpu_info = Some(GpuInfo {
        model: "NVIDIA A100-SXM4".into(),
        vram_gb: 80,
    });
    reg.installed_software = [("cuda".to_owned(), "12.1".to_owned())].into();
    reg.installed_artifacts = vec![InstalledArtifact::new("llama", "7b")];
    within(big.register(&reg)).await.expect("register");
    let mut needs = ResourceRequirements::default();
    needs.resources.cpu_cores = 8;
    needs.resources.gpu_info = Some(GpuInfo {
        model: "a100".into(),
        vram_gb: 40,
    });
    needs.installed_software = [("cuda".to_owned(), "any".to_owned())].into();
    needs.installed_artifacts = vec![InstalledArtifact::new("llama", "7b")];
    env.orch
        .enqueue_with(
            task("t-big", "echo"),
            rxon_orchestrator::TaskOptions::default().with_requirements(needs),
        )
        .await
        .expect("enqueue");
    env.orch
        .enqueue(task("t-plain", "echo"))
        .await
        .expect("enqueue");
    let got = within(small.poll_task(Duration::from_secs(5)))
        .await
        .expect("poll")
        .map(|t| t.task_id);
    assert_eq!(
        got.as_deref(),
        Some("t-plain"),
        "the small worker skips t-big"
    );
    let got = within(small.poll_task(Duration::from_millis(300)))
        .await
        .expect("poll");
    assert_eq!(got, None, "nothing else fits the small worker");
    let got = within(big.poll_task(Duration::from_secs(5)))
        .await
        .expect("poll")
        .map(|t| t.task_id);
    assert_eq!(
        got.as_deref(),
        Some("t-big"),
        "the big worker has what it needs"
    );
    env.stop().await;
}

/// The signed envelope (1.0b17): a worker that signs with the wrong key is refused
/// (403) on every message, the right key is accepted; the orchestrator keys a
/// worker's envelope by its token. A transport without signing (a 1.0b3 wire, the
/// in-process one) accepts either: nothing is signed there.
pub async fn signed_envelopes_are_verified(h: &dyn Harness) {
    let env = Env::default(h).await;
    let mut config = env.config("w-forger", TOKEN);
    config.options.signing_key = Some("not-the-token".into());
    let forger: Arc<dyn Transport> = h.transport(&config).expect("transport").into();
    within(forger.connect()).await.expect("connect");
    let sent = within(forger.register(&registration("w-forger", &["echo"]))).await;
    if !h.capabilities().signs {
        sent.expect("nothing is signed on this wire");
        env.stop().await;
        return;
    }
    let err = sent.expect_err("a wrong signature is refused");
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(
        !env.orch
            .workers()
            .await
            .iter()
            .any(|w| w.worker_id == "w-forger"),
        "nothing registered"
    );
    let t = env.worker(h, "w-1").await;
    env.orch
        .enqueue(task("t-s", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    // Two identical results, each sealed afresh: the second is a duplicate, not a
    // replay.
    for _ in 0..2 {
        let outcome = within(t.send_result(&echo(&got, "w-1")))
            .await
            .expect("result");
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    assert_eq!(
        env.orch
            .task_result("t-s")
            .await
            .map(|r| (r.timestamp, r.security)),
        Some((None, None)),
        "the envelope is removed before the handler"
    );
    env.stop().await;
}

/// A worker holding the orchestrator's task key (signatures required, the default)
/// checks the `sig` of 1.0b17 tasks only: pinned to 1.0b3, whose tasks are never
/// signed, it takes its tasks; in 1.0b17 the signed task verifies; a worker holding
/// another key refuses the task (where the wire signs).
pub async fn task_signatures_are_checked_in_1b17_only(h: &dyn Harness) {
    const KEY: &str = "conformance-task-key";
    let orch = builder(h).token(TOKEN).task_signing_key(KEY).build();
    let env = Env::start(h, orch, Duration::from_millis(300)).await;
    let worker = |worker_id: &str, protocol: Protocol, key: &str| {
        let mut config = env.config(worker_id, TOKEN);
        config.options.protocol = ProtocolChoice::Pinned(protocol);
        config.options.task_key = Some(key.into());
        config.options.require_task_signature = true;
        let t: Arc<dyn Transport> = h.transport(&config).expect("transport builds").into();
        let registration = registration(worker_id, &["echo"]);
        async move {
            within(t.connect()).await.expect("connect");
            within(t.register(&registration)).await.expect("register");
            t
        }
    };
    for (worker_id, protocol) in [("w-b3", Protocol::V1b3), ("w-b17", Protocol::V1b17)] {
        let t = worker(worker_id, protocol, KEY).await;
        let id = format!("t-{worker_id}");
        env.orch.enqueue(task(&id, "echo")).await.expect("enqueue");
        let got = next_task(&*t).await;
        assert_eq!(got.task_id, id, "{protocol:?}");
        let outcome = within(t.send_result(&echo(&got, worker_id)))
            .await
            .expect("result");
        assert!(outcome.is_accepted(), "{protocol:?}: {outcome:?}");
    }
    if h.capabilities().signs {
        let t = worker("w-other-key", Protocol::V1b17, "another-key").await;
        env.orch
            .enqueue(task("t-forged", "echo"))
            .await
            .expect("enqueue");
        let refused = within(t.poll_task(Duration::from_secs(5)))
            .await
            .expect_err("a task signed with another key is refused");
        assert!(
            refused.to_string().contains("t-forged"),
            "the refusal names the task: {refused}"
        );
    }
    env.stop().await;
}

/// A short-lived token that expires while the worker works: the transport renews it
/// (before expiry, or after one refusal) from its bootstrap credential, and the
/// worker's operations go on without an error.
pub async fn a_token_expiring_mid_session_is_replaced(h: &dyn Harness) {
    let orch = builder(h)
        .token(TOKEN)
        .sts_credential(BOOTSTRAP)
        .token_ttl(Duration::from_secs(1))
        .build();
    let env = Env::start(h, orch, Duration::from_millis(300)).await;
    let t = h
        .transport(&env.config("w-1", BOOTSTRAP))
        .expect("transport builds");
    within(t.connect()).await.expect("connect");
    within(t.register(&registration("w-1", &["echo"])))
        .await
        .expect("register with an issued token");
    // The token's lifetime is the thing under test: let it run out for real.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        status: "idle".into(),
        ..Default::default()
    };
    within(t.send_heartbeat(&hb))
        .await
        .expect("a heartbeat after the first token expired");
    env.orch
        .enqueue(task("t-x", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    let outcome = within(t.send_result(&echo(&got, "w-1")))
        .await
        .expect("result");
    assert!(outcome.is_accepted(), "{outcome:?}");
    env.stop().await;
}

/// A message larger than the listener's limit is refused (an error, not a hang and
/// not a partial result), and the transport goes on working afterwards.
///
/// Needs [`Capabilities::tcp`]: an in-process transport moves no bytes to limit.
pub async fn oversized_messages_are_refused(h: &dyn Harness) {
    assert!(
        h.capabilities().tcp,
        "oversized_messages_are_refused needs a network transport (Capabilities::tcp)"
    );
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    env.orch
        .enqueue(task("t-big", "echo"))
        .await
        .expect("enqueue");
    let got = next_task(&*t).await;
    let limit = rxon_core::ListenerOptions::default().max_message_bytes;
    let huge = TaskResult::success(
        &got,
        "w-1",
        rxon_core::map! {"blob": ("x".repeat(limit + 1024))},
    );
    let sent = within(t.send_result(&huge)).await;
    assert!(
        !matches!(sent, Ok(ResultOutcome::Accepted)),
        "an oversized result is not taken: {sent:?}"
    );
    assert_eq!(
        env.orch.task_result("t-big").await,
        None,
        "nothing was applied"
    );
    let small = within(t.send_result(&echo(&got, "w-1")))
        .await
        .expect("the transport still works");
    assert!(small.is_accepted(), "{small:?}");
    env.stop().await;
}

/// Two polls of one worker at once (a worker with two free slots): each gets its own
/// task, none gets a task twice.
pub async fn concurrent_pollers_share_no_task(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    let (a, b) = (t.clone(), t.clone());
    let first = tokio::spawn(async move { a.poll_task(Duration::from_secs(10)).await });
    let second = tokio::spawn(async move { b.poll_task(Duration::from_secs(10)).await });
    env.orch
        .wait_for_pollers(2, BOUND)
        .await
        .expect("both polls reach the orchestrator");
    env.orch
        .enqueue(task("t-1", "echo"))
        .await
        .expect("enqueue");
    env.orch
        .enqueue(task("t-2", "echo"))
        .await
        .expect("enqueue");
    let mut got: Vec<String> = Vec::new();
    for poll in [first, second] {
        let task = within(poll)
            .await
            .expect("poll task")
            .expect("poll")
            .expect("each poll gets a task");
        got.push(task.task_id);
    }
    got.sort();
    assert_eq!(got, ["t-1", "t-2"]);
    assert_eq!(env.orch.queued().await, 0);
    env.stop().await;
}

/// `close()` ends a poll parked on the orchestrator: it returns (no task, or `Closed`)
/// within the bound, not after its 60 s wait, and the transport stays closed.
pub async fn close_ends_a_parked_poll(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = env.worker(h, "w-1").await;
    let poller = env.parked_poll(&t).await;
    within(t.close()).await.expect("close");
    let polled = within(poller).await.expect("poll task");
    match polled {
        Ok(None) => {}
        Err(e) if e.kind() == ErrorKind::Closed => {}
        other => panic!("a closed transport's poll ends with no task or Closed: {other:?}"),
    }
    let err = within(t.poll_task(Duration::from_millis(100)))
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    env.stop().await;
}

/// Every connection goes silent at once, with no FIN and no RST (what a worker behind a
/// NAT or firewall sees when its mapping is dropped). With `keepalive` at 250 ms and
/// `request_timeout` at 2 s, the transport notices within its own deadlines: polls find
/// tasks again, and a cancel sent into the dead command channel reaches `next_command`
/// (transports with commands).
///
/// Needs [`Capabilities::tcp`]: a harness without it declares so with
/// `conformance_tests!(harness, without: tcp)`, which reports the case as ignored;
/// run against a harness without `tcp` anyway, the case fails rather than pass
/// without having run.
pub async fn silent_connections_are_replaced(h: &dyn Harness) {
    assert!(
        h.capabilities().tcp,
        "silent_connections_are_replaced needs Capabilities::tcp; a harness without it \
         skips the case with `conformance_tests!(harness, without: tcp)`"
    );
    let env = Env::default(h).await;
    let upstream = tcp_address(&env.endpoint);
    let proxy = crate::faults::FaultProxy::start(upstream)
        .await
        .expect("the proxy starts");
    let mut config = env.config("w-1", TOKEN);
    config.url = env
        .endpoint
        .replacen(&upstream.to_string(), &proxy.addr().to_string(), 1);
    config.options.keepalive = Duration::from_millis(250);
    config.options.request_timeout = Duration::from_secs(2);
    let t: Arc<dyn Transport> = h.transport(&config).expect("transport builds").into();
    within(t.connect()).await.expect("connect");
    within(t.register(&registration("w-1", &["echo"])))
        .await
        .expect("register");
    env.orch
        .enqueue(task("t-held", "echo"))
        .await
        .expect("enqueue");
    let held = next_task(&*t).await;
    let commands = h.capabilities().commands.then(|| {
        let t = t.clone();
        tokio::spawn(async move {
            // Network errors while the channel is replaced are the transport's to
            // report; a bounded number of them is fine.
            for _ in 0..20 {
                match t.next_command().await {
                    Ok(Some(command)) => return command,
                    Ok(None) => panic!("next_command ended while the transport is open"),
                    Err(e) if e.is_network() || e.kind() == ErrorKind::Timeout => {}
                    Err(e) => panic!("next_command failed: {e}"),
                }
            }
            panic!("next_command: 20 network errors and no command");
        })
    });
    if commands.is_some() {
        env.orch
            .wait_for_command_channel("w-1", BOUND)
            .await
            .expect("the worker opens its command channel");
    }

    proxy.strand_all();
    let outcome = env.orch.cancel(&held.task_id).await.expect("cancel");
    assert!(
        matches!(outcome, CancelOutcome::Signalled { .. }),
        "{outcome:?}"
    );
    env.orch
        .enqueue(task("t-after", "echo"))
        .await
        .expect("enqueue");
    let mut failures = Vec::new();
    let after = loop {
        assert!(
            failures.len() < 5,
            "polls did not recover from a silent connection: {failures:?}"
        );
        match within(t.poll_task(Duration::from_secs(1))).await {
            Ok(Some(task)) => break task,
            Ok(None) => failures.push("no task".to_owned()),
            Err(e) if e.is_network() || e.kind() == ErrorKind::Timeout => {
                failures.push(e.to_string())
            }
            Err(e) => panic!("a poll on a silent connection failed with {e}"),
        }
    };
    assert_eq!(after.task_id, "t-after");
    let outcome = within(t.send_result(&echo(&after, "w-1")))
        .await
        .expect("result after recovery");
    assert!(outcome.is_accepted(), "{outcome:?}");
    if let Some(reader) = commands {
        let command = within(reader).await.expect("the command reader");
        assert_eq!(command.task_id.as_deref(), Some("t-held"));
    }
    assert!(proxy.stats().stranded >= 1, "a connection was stranded");
    env.stop().await;
}

/// The `127.0.0.1:port` of a `scheme://127.0.0.1:port…` endpoint.
fn tcp_address(endpoint: &str) -> std::net::SocketAddr {
    endpoint
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
        .and_then(|authority| authority.parse().ok())
        .unwrap_or_else(|| {
            panic!("Capabilities::tcp needs a scheme://127.0.0.1:port endpoint, got {endpoint}")
        })
}

/// Before `connect` and after `close` operations fail with `Closed`; a stopped
/// listener is a network error.
pub async fn lifecycle_and_unreachable_peer(h: &dyn Harness) {
    let env = Env::default(h).await;
    let t = h.transport(&env.config("w-1", TOKEN)).expect("transport");
    let err = within(t.poll_task(Duration::from_millis(10)))
        .await
        .expect_err("not connected");
    assert_eq!(err.kind(), ErrorKind::Closed);
    within(t.connect()).await.expect("connect");
    within(t.close()).await.expect("close");
    let err = within(t.register(&registration("w-1", &["echo"])))
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(within(t.next_command()).await.expect("ends"), None);

    let live = env.worker(h, "w-2").await;
    let config = env.config("w-2", TOKEN);
    env.stop().await;
    let err = within(live.poll_task(Duration::from_millis(10)))
        .await
        .expect_err("the listener is gone");
    assert!(err.is_network(), "{err}");
    let fresh = h.transport(&config).expect("transport");
    within(fresh.connect()).await.ok();
    let err = within(fresh.register(&registration("w-2", &["echo"])))
        .await
        .expect_err("nothing listens");
    assert!(err.is_network(), "{err}");
}

/// The list of conformance cases, written once: each case with the capability it
/// needs (`none`, or `tcp` for [`Capabilities::tcp`](crate::conformance::Capabilities::tcp)).
/// [`conformance_tests!`](crate::conformance_tests) stamps tests from it and
/// [`CASES`](crate::conformance::CASES) lists it; a unit test checks that every public
/// case function of the module is in it.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($callback:ident!($($args:tt)*)) => {
        $crate::$callback!($($args)*;
            every_operation: none,
            poll_without_task_is_none: none,
            poll_honours_its_timeout: none,
            parked_poll_wakes_for_new_task: none,
            skills_and_fifo: none,
            duplicate_results_apply_once: none,
            ignored_results_carry_their_reason: none,
            token_refresh_and_auth_failure: none,
            rate_limited: none,
            retry_after_hints_are_clamped: none,
            results_are_retried_on_network_failures: none,
            invalid_identifiers: none,
            stop_ends_pending_polls: none,
            cancel_reaches_the_worker: none,
            progress_is_delivered_or_refused: none,
            events_are_delivered_or_refused: none,
            draining_and_offline_workers_get_no_task: none,
            skills_hash_and_full_sync: none,
            registration_and_heartbeat_fields_arrive_intact: none,
            schema_violations_are_reported: none,
            resource_matching_dispatch: none,
            signed_envelopes_are_verified: none,
            task_signatures_are_checked_in_1b17_only: none,
            a_token_expiring_mid_session_is_replaced: none,
            oversized_messages_are_refused: tcp,
            concurrent_pollers_share_no_task: none,
            close_ends_a_parked_poll: none,
            silent_connections_are_replaced: tcp,
            lifecycle_and_unreachable_peer: none,
        );
    };
}

/// One conformance case: its name, the capability it needs (`"tcp"`) if any, and the
/// function that runs it.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (its function's).
    pub name: &'static str,
    /// The capability the case needs, if any.
    pub needs: Option<&'static str>,
    /// Runs the case.
    pub run: for<'a> fn(&'a dyn Harness) -> rxon_core::BoxFuture<'a, ()>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("needs", &self.needs)
            .finish_non_exhaustive()
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    (; $($case:ident: $needs:ident),* $(,)?) => {
        /// Every conformance case, in the order [`conformance_tests!`](crate::conformance_tests)
        /// stamps them.
        pub const CASES: &[Case] = &[
            $(Case {
                name: stringify!($case),
                needs: $crate::__conformance_case_list!(@needs $needs),
                run: |h| Box::pin($case(h)),
            }),*
        ];
    };
    (@needs none) => { None };
    (@needs tcp) => { Some("tcp") };
}

__conformance_cases!(__conformance_case_list!());

/// Stamps out one `#[tokio::test]` per conformance case for a [`Harness`](crate::conformance::Harness) value.
///
/// `conformance_tests!(harness, without: tcp)` is for a harness without
/// [`Capabilities::tcp`](crate::conformance::Capabilities::tcp): the case that needs a TCP
/// endpoint is then reported as ignored (skipped), never as passed.
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
/// dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    // Every case ignored by a plain `cargo test`: run by `cargo xtask tor-test`
    // (`--ignored tor::`) on a private Tor network.
    ($harness:expr, needs: tor) => {
        $crate::__conformance_cases!(__conformance_stamp!(@ $harness, tor));
    };
    ($harness:expr, without: tcp) => {
        $crate::__conformance_cases!(__conformance_stamp!(@ $harness, without_tcp));
    };
    ($harness:expr) => {
        $crate::__conformance_cases!(__conformance_stamp!(@ $harness, all));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_stamp {
    (@ $harness:expr, $mode:ident; $($case:ident: $needs:ident),* $(,)?) => {
        $( $crate::__conformance_stamp!(@one $harness, $mode, $case, $needs); )*
    };
    // A case the harness declared it cannot run: reported as ignored, with the reason.
    (@one $harness:expr, without_tcp, $case:ident, tcp) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "skipped: the harness lacks Capabilities::tcp"]
        async fn $case() {
            $crate::conformance::$case(&$harness).await
        }
    };
    (@one $harness:expr, tor, $case:ident, $needs:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs a private Tor network (RXON_TOR_NET): cargo xtask tor-test"]
        async fn $case() {
            $crate::conformance::$case(&$harness).await
        }
    };
    (@one $harness:expr, $mode:ident, $case:ident, $needs:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            $crate::conformance::$case(&$harness).await
        }
    };
}

#[cfg(test)]
mod tests {
    /// Every public case function of this module is in the one list: a case left out
    /// would silently never run.
    #[test]
    fn every_case_function_is_listed_once() {
        let source = include_str!("conformance.rs");
        let mut defined: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter_map(|l| l.split_once("(h: &dyn Harness)").map(|(name, _)| name))
            .collect();
        let mut listed: Vec<&str> = super::CASES.iter().map(|c| c.name).collect();
        assert!(defined.len() >= 17, "the scan found the cases: {defined:?}");
        defined.sort_unstable();
        listed.sort_unstable();
        let before = listed.len();
        listed.dedup();
        assert_eq!(before, listed.len(), "a case is listed twice");
        assert_eq!(defined, listed);
    }
}
