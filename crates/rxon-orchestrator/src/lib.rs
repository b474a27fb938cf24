//! An embeddable RXON orchestrator: [`Orchestrator`] implements
//! [`Handler`](rxon_core::Handler) with real queues, leases, long-poll hand-off and
//! state, and [`LocalListener`] / [`LocalTransport`] serve it inside one process
//! (`local://name`).
//!
//! Serve it through any listener (`rxon-http`, `rxon-ws`, `rxon-grpc`, `local://`), or
//! call its [`Handler`](rxon_core::Handler) methods directly. The host side enqueues
//! tasks, cancels them, inspects workers and waits for results.
//!
//! # What it is, and what it is not (yet)
//!
//! - By default it keeps its state in memory, in one process: a restart forgets queued
//!   tasks, and one process serves every worker. With feature `redis` and
//!   [`OrchestratorBuilder::storage`]`(`[`Storage::redis`]`(url)?)`, the state lives in
//!   Redis: several listener processes (on several machines) serve one fleet, and the
//!   state survives their restarts (and Redis's own, with its append-only file on).
//!   The host API is async for that reason: each call may be a round trip.
//! - It has no workflow engine, persistence, scheduling or admin API of its own; the
//!   `rxon orchestrator` command (the `rxon-cli` crate) serves an admin API beside it.
//! - Stability: this crate follows semver like the rest of the workspace (0.x: a minor
//!   release may break). Public enums are `#[non_exhaustive]`; new builder options and
//!   new [`TaskState`]s are not breaking.
//!
//! - **Queues** per task type. A poll gets the oldest queued task among the types its
//!   worker registered for (FIFO within a type, globally oldest across types), waiting
//!   up to its `wait`; an enqueue wakes parked polls at once. A task is claimed only on
//!   the poll future's last step, so a dropped poll never loses one.
//! - **Workers** register their skills; a worker silent for longer than the worker TTL
//!   is marked gone by [`reap_expired`](Orchestrator::reap_expired) (or the periodic
//!   [`spawn_reaper`](Orchestrator::spawn_reaper)) and its tasks go back to the queue.
//! - **Results** are applied once; duplicates are accepted without effect, and results
//!   for unknown, reassigned, cancelled, late or already finished tasks are ignored with
//!   the matching [`IgnoredReason`](rxon_core::IgnoredReason).
//! - **Heartbeats** refresh a worker's last contact and carry its pending cancellations;
//!   an unknown or gone worker is told to re-sync (register again). Skills change only
//!   by registering again.
//! - **Cancellation** reaches the worker over its command channel and in its next
//!   heartbeat reply.
//! - **Auth**: static tokens, bootstrap credentials for the STS operation, short-lived
//!   issued tokens; an optional per-worker rate limit.
//! - **Bounded**: queue length, workers, retained finished tasks, issued tokens,
//!   progress history and command buffers all have limits.
//!
//! The host reads state with [`task_result`](Orchestrator::task_result) and
//! [`task_progress`](Orchestrator::task_progress); `result` and `progress` are the
//! [`Handler`](rxon_core::Handler) methods a listener calls.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use rxon_core::{Handler, Map, RequestContext, TaskPayload, TaskResult, TaskStatus, WorkerRegistration};
//! use rxon_orchestrator::{Orchestrator, TaskState};
//! use std::time::Duration;
//!
//! let orch = Orchestrator::builder().token("secret").build();
//! orch.enqueue(TaskPayload {
//!     job_id: "j1".into(),
//!     task_id: "t1".into(),
//!     task_type: "echo".into(),
//!     ..Default::default()
//! }).await?;
//!
//! // What a listener does for a worker:
//! let ctx = || RequestContext::new("in-process").with_token("secret");
//! let registration = WorkerRegistration {
//!     worker_id: "w1".into(),
//!     supported_skills: vec!["echo".into()],
//!     ..Default::default()
//! };
//! orch.register(ctx(), registration).await?;
//! let task = orch.poll(ctx().with_worker_id("w1"), Duration::from_secs(5)).await?.expect("a task");
//! assert_eq!(orch.task_state("t1").await, Some(TaskState::Running { worker_id: "w1".into() }));
//! let outcome = orch.result(ctx(), TaskResult::success(&task, "w1", Map::new())).await?;
//! assert!(outcome.is_accepted());
//!
//! let result = orch.wait_result("t1", Duration::from_secs(5)).await?;
//! assert_eq!(result.status, TaskStatus::Success);
//! assert_eq!(orch.task_state("t1").await, Some(TaskState::Finished(TaskStatus::Success)));
//! # Ok::<(), rxon_core::RxonError>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `metrics` | | [`metrics`]: tasks enqueued, claimed and requeued, waiting polls, results by outcome, auth failures, dispatch time, through the `metrics` facade |
//! | `otel` | | W3C trace propagation: each task carries the span that enqueued it (`rxon.enqueue`) to its worker in `tracing_context`; each 1.0b17 event is handled in an `rxon.event` span, the child of the worker's span it names (`rxon-otel`) |
//! | `redis` |  | the Redis storage (`Storage::redis`, `storage = "redis://…"`): several listener processes share one state |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod builder;
mod handler;
mod local;
pub mod metrics;
mod otel;
#[cfg(feature = "redis")]
mod redis;
mod state;
mod storage;
mod store;

pub use storage::{DEFAULT_REDIS_PREFIX, Storage};

pub use local::{
    LOCAL_SCHEMES, LOCAL_TRANSPORT_NAME, LocalListener, LocalTransport, LocalTransportFactory,
};

use builder::Config;
pub use builder::OrchestratorBuilder;

use rxon_core::matching::ResourceRequirements;
use rxon_core::{
    ProgressUpdatePayload, Result, RxonError, TaskPayload, TaskResult, TaskStatus,
    WorkerEventPayload,
};
use state::State;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use store::Phase;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

/// Default lifetime of an issued STS token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of a refresh token (1.0b17), as the reference's.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(86_400);
/// Default time after which a silent worker is considered gone.
pub const DEFAULT_WORKER_TTL: Duration = Duration::from_secs(30);
/// Default time a claimed task waits for a sign that its worker received it.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(60);
/// Default bound on unfinished (queued or running) tasks.
pub const DEFAULT_MAX_QUEUE_LEN: usize = 100_000;
/// Default bound on known workers.
pub const DEFAULT_MAX_WORKERS: usize = 10_000;
/// Default number of finished tasks whose state and result are kept.
pub const DEFAULT_MAX_FINISHED_TASKS: usize = 100_000;
/// Default number of progress updates kept per task.
pub const DEFAULT_PROGRESS_HISTORY: usize = 1_000;
/// Default wait before a task every capable worker refuses is ended as a failure.
pub const DEFAULT_UNPLACEABLE_AFTER: Duration = Duration::from_secs(30);
/// Default capacity of a worker's command channel.
pub const DEFAULT_COMMAND_CAPACITY: usize = 64;

pub(crate) const MAX_ISSUED_TOKENS: usize = 100_000;
pub(crate) const MAX_SKILLS: usize = 1_024;
pub(crate) const PROGRESS_BROADCAST_CAPACITY: usize = 1_024;

/// The state of a task as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Claimed by `worker_id`.
    Running {
        /// The worker running it.
        worker_id: String,
    },
    /// Ended with this status. A result that came after the task's deadline ends it as
    /// [`TaskStatus::Failure`] with error code `LATE_RESULT`.
    Finished(TaskStatus),
    /// Cancelled by the host.
    Cancelled,
}

/// How [`Orchestrator::enqueue_with`] queues a task.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// Its deadline from now (else the orchestrator's default, if any).
    pub deadline: Option<Duration>,
    /// What the worker that runs it must have.
    pub requirements: ResourceRequirements,
}

impl TaskOptions {
    /// Sets [`deadline`](Self::deadline).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Sets [`requirements`](Self::requirements).
    pub fn with_requirements(mut self, requirements: ResourceRequirements) -> Self {
        self.requirements = requirements;
        self
    }
}

/// Where a queued task stands with the registered workers, from
/// [`Orchestrator::placement`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// This many active workers offer its type and accept it (they may be busy,
    /// full or draining right now).
    Runnable {
        /// How many.
        workers: usize,
    },
    /// No active worker offers its type: it waits for one.
    NoWorker,
    /// Every active worker offering its type refuses it (its params break their input
    /// schema, or they miss its requirements), each for the reason given
    /// (`(worker_id, reason)`, sorted by worker). Ended after
    /// [`OrchestratorBuilder::unplaceable_after`].
    Refused(Vec<(String, String)>),
}

/// What [`Orchestrator::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The task was still queued: removed, recorded as cancelled.
    Dequeued,
    /// A worker holds the task: it was sent a `cancel_task` command (if its command
    /// channel is open) and the task is listed in its next heartbeat reply.
    Signalled {
        /// The worker holding the task.
        worker_id: String,
    },
    /// The task had already ended (finished or cancelled); nothing changed.
    AlreadyFinished,
}

/// Whether a worker is still considered present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerStatus {
    /// Registered and heard from within the worker TTL.
    Active,
    /// Silent for longer than the worker TTL; must register again.
    Gone,
}

/// A snapshot of one worker, from [`Orchestrator::workers`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id.
    pub worker_id: String,
    /// Task types it offers (its catalog's names).
    pub skills: Vec<String>,
    /// The hash it gave its current catalog (`skills_hash`), if any.
    pub skills_hash: Option<String>,
    /// The protocol generation it registered with.
    pub protocol: rxon_core::Protocol,
    /// Its registration as received (the envelope removed), with its current catalog
    /// (each skill's contract: schemas, version…) as `supported_skills`.
    pub registration: rxon_core::WorkerRegistration,
    /// Its last heartbeat with a body, as received (without the catalog, which is in
    /// `registration.supported_skills`).
    pub last_heartbeat: Option<rxon_core::Heartbeat>,
    /// Active or gone.
    pub status: WorkerStatus,
    /// Tasks it holds, in claim order (including cancelled ones it has not reported).
    pub current_tasks: Vec<String>,
    /// Its last contact: registration, poll, heartbeat or result.
    pub last_seen: Instant,
    /// Whether it has an open command channel.
    pub command_channel: bool,
}

impl WorkerInfo {
    /// Its skill catalog, with each skill's contract.
    pub fn catalog(&self) -> &[rxon_core::SkillInfo] {
        &self.registration.supported_skills
    }

    /// The status its last heartbeat reported (`idle`, `busy`, `full`, `draining`,
    /// `offline`…); `None` before its first heartbeat. `draining` and `offline`
    /// workers are handed no task, nor a `full` one on a poll begun before it said so.
    pub fn reported_status(&self) -> Option<&str> {
        self.last_heartbeat.as_ref().map(|h| h.status.as_str())
    }
}

struct Inner {
    config: Config,
    state: Mutex<State>,
    /// Woken when a poll may now find a task: enqueue, requeue, registration.
    work: Notify,
    /// Woken on every other change the host may wait for: results, cancellations,
    /// polls starting or ending, workers going away.
    events: Notify,
    progress_tx: broadcast::Sender<ProgressUpdatePayload>,
    event_tx: broadcast::Sender<WorkerEventPayload>,
    /// Compiled skill contracts, shared by the workers that declare the same skill.
    contracts: rxon_schema::ContractCache,
    reaper: Mutex<Option<tokio::task::AbortHandle>>,
    /// The shared storage, when one is configured (else the state is `state`'s).
    #[cfg(feature = "redis")]
    redis: Option<redis::Redis>,
}

/// Runs `$body` with the shared storage `$r` and returns its value, when the
/// orchestrator has one.
macro_rules! on_shared {
    ($inner:expr, |$r:ident| $body:expr) => {
        #[cfg(feature = "redis")]
        if let Some($r) = $inner.redis.as_ref() {
            return $body;
        }
    };
}

/// A storage failure on a host operation that cannot report one: logged, and the
/// operation answers as if nothing was found.
#[cfg(feature = "redis")]
fn logged<T: Default>(what: &str, r: std::result::Result<T, ::redis::RedisError>) -> T {
    r.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "{what}: storage unavailable");
        T::default()
    })
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn reap(&self) -> Vec<String> {
        on_shared!(self, |r| logged("reap", r.reap(self).await));
        let (gone, lapsed) = {
            let mut st = self.lock();
            let now = Instant::now();
            let gone = st.reap(&self.config, now);
            let ended = st.store.end_unplaceable(&self.config, now);
            let lapsed = st.store.expire_leases(now) + ended;
            if !gone.is_empty() || lapsed > 0 {
                st.result_waiters.wake_all();
            }
            st.store.forgotten.clear();
            (gone, lapsed)
        };
        if !gone.is_empty() || lapsed > 0 {
            self.work.notify_waiters();
            self.events.notify_waiters();
        }
        gone
    }

    /// Waits until `check` yields a value, re-checking on every event; `None` once
    /// `timeout` has passed.
    async fn wait_event<T>(
        &self,
        timeout: Duration,
        check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        self.wait_on(&self.events, timeout, check).await
    }

    /// [`wait_event`](Self::wait_event) woken by `notify` only.
    async fn wait_on<T>(
        &self,
        notify: &Notify,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let notified = notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Register interest before checking, so a change in between is not missed.
            notified.as_mut().enable();
            if let Some(v) = check(&self.lock()) {
                return Some(v);
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return None;
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// One waiter's place among the waiters of a key (`State::result_waiters`: a task;
/// `State::poll_waiters`: a skill), left when dropped, also when the wait itself is
/// dropped.
pub(crate) struct Waiting<'a> {
    inner: &'a Inner,
    which: fn(&mut State) -> &mut state::Waiters,
    keys: Vec<(String, Arc<Notify>)>,
}

impl<'a> Waiting<'a> {
    pub(crate) fn new(
        inner: &'a Inner,
        st: &mut State,
        which: fn(&mut State) -> &mut state::Waiters,
        keys: impl IntoIterator<Item = String>,
    ) -> Self {
        let waiters = which(st);
        let keys = keys
            .into_iter()
            .map(|k| {
                let notify = waiters.join(&k);
                (k, notify)
            })
            .collect();
        Waiting { inner, which, keys }
    }

    pub(crate) fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.keys.iter().map(|(_, n)| &**n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        let waiters = (self.which)(&mut st);
        for (key, notify) in self.keys.drain(..) {
            waiters.leave(&key, notify);
        }
    }
}

#[cfg(feature = "redis")]
impl Inner {
    /// [`wait_event`](Self::wait_event) for the shared storage: `check` asks the
    /// storage again on every change any process announces.
    async fn wait_shared<T, F>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> F,
    ) -> Result<Option<T>>
    where
        F: std::future::Future<Output = std::result::Result<Option<T>, ::redis::RedisError>>,
    {
        let deadline = Instant::now().checked_add(timeout);
        let mut backoff = Duration::from_millis(20);
        loop {
            let notified = self.events.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match check().await {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) => {}
                // A lost connection (Redis restarting, say) is reopened in the
                // background: ask again until the wait ends.
                Err(e)
                    if redis::transient(&e)
                        && deadline.is_none_or(|d| Instant::now() + backoff < d) =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
                Err(e) => return Err(redis::storage_error(e)),
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return Ok(None);
                    }
                }
                None => notified.await,
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let reaper = self.reaper.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = reaper.take() {
            handle.abort();
        }
    }
}

/// A small, real orchestrator: task queues, long-poll hand-off, worker tracking,
/// results, cancellation, progress and tokens. See the [crate docs](crate).
///
/// Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        #[cfg(feature = "redis")]
        if let Some(r) = self.inner.redis.as_ref() {
            return f
                .debug_struct("Orchestrator")
                .field("storage", &"redis")
                .field("prefix", &r.prefix())
                .field("pending_polls", &st.pending_polls)
                .finish_non_exhaustive();
        }
        f.debug_struct("Orchestrator")
            .field("queued", &st.store.queued)
            .field("tasks", &st.store.tasks.len())
            .field("workers", &st.store.workers.len())
            .field("pending_polls", &st.pending_polls)
            .finish_non_exhaustive()
    }
}

impl Default for Orchestrator {
    fn default() -> Self {
        Self::new()
    }
}

impl Orchestrator {
    /// An orchestrator with the default configuration: open auth (any non-empty token
    /// accepted, see [`is_open`](Self::is_open)), no rate limit, no deadlines.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Whether this orchestrator runs with open auth: no static token, worker token or
    /// STS credential is configured, so any non-empty token is accepted and proves no
    /// worker. Servers should say so loudly at start-up; configuring any credential
    /// (an STS credential alone included) closes it.
    ///
    /// ```
    /// use rxon_orchestrator::Orchestrator;
    /// assert!(Orchestrator::new().is_open());
    /// assert!(!Orchestrator::builder().sts_credential("bootstrap").build().is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        self.inner.config.is_open()
    }

    /// A builder to configure tokens, TTLs, limits and deadlines.
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::default()
    }

    /// Queues `task` (with the default deadline, if one is configured). A waiting poll
    /// of a worker with the task's type gets it at once.
    ///
    /// Fails with [`ErrorKind::InvalidInput`](rxon_core::ErrorKind::InvalidInput) for
    /// an invalid job id, task id or task type or a task id already known, and with
    /// [`ErrorKind::RateLimited`](rxon_core::ErrorKind::RateLimited) when the
    /// orchestrator already holds its maximum of unfinished tasks.
    pub async fn enqueue(&self, task: TaskPayload) -> Result<()> {
        self.enqueue_inner(
            task,
            self.inner.config.default_task_deadline,
            ResourceRequirements::default(),
        )
        .await
    }

    /// Queues `task` with a deadline `deadline` from now: a result arriving later is
    /// ignored as `deadline_exceeded`, and the task ends as a `LATE_RESULT` failure.
    pub async fn enqueue_with_deadline(&self, task: TaskPayload, deadline: Duration) -> Result<()> {
        self.enqueue_inner(task, Some(deadline), ResourceRequirements::default())
            .await
    }

    /// Queues `task` with `options`: a deadline, and what the worker that runs it must
    /// have ([`ResourceRequirements`]: devices, properties, artifacts, software, skill
    /// version and type). Only workers that meet them are handed the task; when every
    /// registered worker offering its type misses them, [`placement`](Self::placement)
    /// says so, and the task ends after
    /// [`OrchestratorBuilder::unplaceable_after`] as a `RESOURCE_EXHAUSTED` failure.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use rxon_orchestrator::{Orchestrator, TaskOptions};
    /// use rxon_core::{map, matching::ResourceRequirements, TaskPayload};
    /// let orch = Orchestrator::new();
    /// let mut needs = ResourceRequirements::default();
    /// needs.resources.properties = Some(map! {"ram_gb": 64});
    /// let task = TaskPayload { job_id: "j".into(), task_id: "t".into(), task_type: "train".into(), ..Default::default() };
    /// orch.enqueue_with(task, TaskOptions::default().with_requirements(needs)).await?;
    /// # Ok::<(), rxon_core::RxonError>(())
    /// # }).unwrap();
    /// ```
    pub async fn enqueue_with(&self, task: TaskPayload, options: TaskOptions) -> Result<()> {
        let deadline = options.deadline.or(self.inner.config.default_task_deadline);
        self.enqueue_inner(task, deadline, options.requirements)
            .await
    }

    async fn enqueue_inner(
        &self,
        task: TaskPayload,
        deadline: Option<Duration>,
        requirements: ResourceRequirements,
    ) -> Result<()> {
        otel::enqueue(task, |task| {
            self.enqueue_stored(task, deadline, requirements)
        })
        .await?;
        metrics::enqueued();
        Ok(())
    }

    /// Queues `task` in whichever storage the orchestrator has.
    async fn enqueue_stored(
        &self,
        task: TaskPayload,
        deadline: Option<Duration>,
        requirements: ResourceRequirements,
    ) -> Result<()> {
        on_shared!(self.inner, |r| r
            .enqueue(&self.inner, task, deadline, requirements)
            .await);
        {
            let mut st = self.inner.lock();
            let skill = (!st.poll_waiters.is_empty()).then(|| task.task_type.clone());
            st.store.enqueue(
                &self.inner.config,
                task,
                deadline,
                requirements,
                Instant::now(),
            )?;
            // Only the polls of workers with the task's skill look at the queues.
            if let Some(skill) = skill {
                st.poll_waiters.wake(&skill);
            }
        }
        self.inner.events.notify_waiters();
        Ok(())
    }

    /// Cancels a task: removes it from its queue, or asks its worker to stop (see
    /// [`CancelOutcome`]). Fails with
    /// [`ErrorKind::InvalidInput`](rxon_core::ErrorKind::InvalidInput) for an unknown
    /// task id.
    pub async fn cancel(&self, task_id: &str) -> Result<CancelOutcome> {
        on_shared!(self.inner, |r| r.cancel(&self.inner, task_id).await);
        let out = {
            let mut st = self.inner.lock();
            let out = st.cancel(&self.inner.config, task_id)?;
            st.settled(task_id);
            out
        };
        self.inner.events.notify_waiters();
        Ok(out)
    }

    /// Cancels every known task of `job_id`; returns each task id with its outcome, in
    /// enqueue order. Fails with
    /// [`ErrorKind::InvalidInput`](rxon_core::ErrorKind::InvalidInput) when no task of
    /// the job is known.
    pub async fn cancel_job(&self, job_id: &str) -> Result<Vec<(String, CancelOutcome)>> {
        #[cfg(feature = "redis")]
        if let Some(r) = self.inner.redis.as_ref() {
            let ids = r.job_tasks(job_id).await?;
            if ids.is_empty() {
                return Err(RxonError::invalid_input(format!("no job {job_id:?}")));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                // A task forgotten since the list was read (retention) has ended.
                let outcome = match r.cancel(&self.inner, &id).await {
                    Err(e) if e.kind() == rxon_core::ErrorKind::InvalidInput => {
                        CancelOutcome::AlreadyFinished
                    }
                    other => other?,
                };
                out.push((id, outcome));
            }
            return Ok(out);
        }
        let out = {
            let mut st = self.inner.lock();
            let ids = st.store.job_tasks(job_id);
            if ids.is_empty() {
                return Err(RxonError::invalid_input(format!("no job {job_id:?}")));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                // A task forgotten since the list was read (cancelling an earlier one
                // of the job pushed it past the retention bound) has ended, as on
                // the Redis storage.
                let outcome = match st.cancel(&self.inner.config, &id) {
                    Err(e) if e.kind() == rxon_core::ErrorKind::InvalidInput => {
                        CancelOutcome::AlreadyFinished
                    }
                    other => other?,
                };
                st.settled(&id);
                out.push((id, outcome));
            }
            out
        };
        self.inner.events.notify_waiters();
        Ok(out)
    }

    /// Waits for the result of `task_id` and returns it.
    ///
    /// Fails with [`ErrorKind::Timeout`](rxon_core::ErrorKind::Timeout) once `timeout`
    /// has passed, and at once with
    /// [`ErrorKind::InvalidInput`](rxon_core::ErrorKind::InvalidInput) when the task is
    /// unknown or can no longer get a result (cancelled with no worker left to confirm).
    pub async fn wait_result(&self, task_id: &str, timeout: Duration) -> Result<TaskResult> {
        #[cfg(feature = "redis")]
        if let Some(r) = self.inner.redis.as_ref() {
            let waited = self
                .inner
                .wait_shared(timeout, || r.result_state(task_id))
                .await?;
            return waited.unwrap_or_else(|| {
                Err(RxonError::timeout(format!(
                    "no result for task {task_id:?} within {timeout:?}"
                )))
            });
        }
        let waiting = {
            let mut st = self.inner.lock();
            let key = task_id.to_owned();
            Waiting::new(&self.inner, &mut st, |st| &mut st.result_waiters, [key])
        };
        let notify = waiting.notifies().next().unwrap_or(&self.inner.events);
        let waited = self
            .inner
            .wait_on(notify, timeout, |st| match st.store.tasks.get(task_id) {
                None => Some(Err(RxonError::invalid_input(format!(
                    "no task {task_id:?}"
                )))),
                Some(rec) => match (&rec.result, &rec.phase) {
                    (Some(r), _) => Some(Ok(r.clone())),
                    (None, Phase::Cancelled { holder: None }) => {
                        Some(Err(RxonError::invalid_input(format!(
                            "task {task_id:?} was cancelled and will get no result"
                        ))))
                    }
                    _ => None,
                },
            })
            .await;
        waited.unwrap_or_else(|| {
            Err(RxonError::timeout(format!(
                "no result for task {task_id:?} within {timeout:?}"
            )))
        })
    }

    /// The recorded result of `task_id`, if it has one. (The handler operation of the
    /// same name is `Handler::result(&orch, ctx, result)`.)
    pub async fn task_result(&self, task_id: &str) -> Option<TaskResult> {
        on_shared!(self.inner, |r| logged(
            "task_result",
            r.task_result(task_id).await
        ));
        self.inner
            .lock()
            .store
            .tasks
            .get(task_id)
            .and_then(|r| r.result.clone())
    }

    /// The state of `task_id`; `None` for a task never enqueued or no longer retained.
    pub async fn task_state(&self, task_id: &str) -> Option<TaskState> {
        on_shared!(self.inner, |r| logged(
            "task_state",
            r.task_state(task_id).await
        ));
        self.inner
            .lock()
            .store
            .tasks
            .get(task_id)
            .map(|r| r.state())
    }

    /// Every known worker, sorted by id.
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        on_shared!(self.inner, |r| logged(
            "workers",
            r.workers(&self.inner).await
        ));
        self.inner.lock().worker_info()
    }

    /// A receiver of every progress update accepted from now on.
    pub fn subscribe_progress(&self) -> broadcast::Receiver<ProgressUpdatePayload> {
        self.inner.progress_tx.subscribe()
    }

    /// The progress updates kept for `task_id`, oldest first. (The handler operation of
    /// the same name is `Handler::progress(&orch, ctx, update)`.)
    pub async fn task_progress(&self, task_id: &str) -> Vec<ProgressUpdatePayload> {
        on_shared!(self.inner, |r| logged(
            "task_progress",
            r.reports("tp", task_id).await
        ));
        self.inner
            .lock()
            .store
            .tasks
            .get(task_id)
            .map(|r| r.progress.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A receiver of every event other than progress accepted from now on (progress
    /// events go to [`subscribe_progress`](Self::subscribe_progress)).
    pub fn subscribe_events(&self) -> broadcast::Receiver<WorkerEventPayload> {
        self.inner.event_tx.subscribe()
    }

    /// The events other than progress kept for `task_id`, oldest first (at most
    /// [`OrchestratorBuilder::progress_history`] of them).
    pub async fn task_events(&self, task_id: &str) -> Vec<WorkerEventPayload> {
        on_shared!(self.inner, |r| logged(
            "task_events",
            r.reports("te", task_id).await
        ));
        self.inner
            .lock()
            .store
            .tasks
            .get(task_id)
            .map(|r| r.events.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Where the queued task `task_id` stands with the registered workers; `None` when
    /// it is not queued (unknown, running or ended).
    pub async fn placement(&self, task_id: &str) -> Option<Placement> {
        on_shared!(self.inner, |r| logged(
            "placement",
            r.placement(&self.inner, task_id).await
        ));
        self.inner.lock().store.placement(task_id)
    }

    /// Tasks waiting in queues.
    pub async fn queued(&self) -> usize {
        on_shared!(self.inner, |r| usize::try_from(logged(
            "queued",
            r.counter("queued").await
        ))
        .unwrap_or(usize::MAX));
        self.inner.lock().store.queued
    }

    /// Results applied so far; duplicates of an applied result are not counted.
    pub async fn applied_results(&self) -> u64 {
        on_shared!(self.inner, |r| logged(
            "applied_results",
            r.counter("applied").await
        ));
        self.inner.lock().store.applied_results
    }

    /// How many claims lapsed unconfirmed and had their task requeued (see
    /// [`OrchestratorBuilder::claim_lease`]).
    pub async fn lapsed_claims(&self) -> u64 {
        on_shared!(self.inner, |r| logged(
            "lapsed_claims",
            r.counter("lapsed").await
        ));
        self.inner.lock().store.lapsed_claims
    }

    /// Polls currently waiting for a task.
    pub fn pending_polls(&self) -> usize {
        self.inner.lock().pending_polls
    }

    /// Waits until at least `n` polls are waiting for a task; fails with
    /// [`ErrorKind::Timeout`](rxon_core::ErrorKind::Timeout) after `timeout`.
    pub async fn wait_for_pollers(&self, n: usize, timeout: Duration) -> Result<()> {
        self.inner
            .wait_event(timeout, |st| (st.pending_polls >= n).then_some(()))
            .await
            .ok_or_else(|| RxonError::timeout(format!("no {n} waiting poll(s) within {timeout:?}")))
    }

    /// Waits until at least `n` results have been applied; fails with
    /// [`ErrorKind::Timeout`](rxon_core::ErrorKind::Timeout) after `timeout`.
    pub async fn wait_for_applied_results(&self, n: u64, timeout: Duration) -> Result<()> {
        #[cfg(feature = "redis")]
        if let Some(r) = self.inner.redis.as_ref() {
            return self
                .inner
                .wait_shared(timeout, move || async move {
                    Ok((r.counter("applied").await? >= n).then_some(()))
                })
                .await?
                .ok_or_else(|| {
                    RxonError::timeout(format!("fewer than {n} results within {timeout:?}"))
                });
        }
        self.inner
            .wait_event(timeout, |st| (st.store.applied_results >= n).then_some(()))
            .await
            .ok_or_else(|| RxonError::timeout(format!("fewer than {n} results within {timeout:?}")))
    }

    /// Waits until no poll is waiting; fails with
    /// [`ErrorKind::Timeout`](rxon_core::ErrorKind::Timeout) after `timeout`.
    pub async fn wait_for_no_pollers(&self, timeout: Duration) -> Result<()> {
        self.inner
            .wait_event(timeout, |st| (st.pending_polls == 0).then_some(()))
            .await
            .ok_or_else(|| RxonError::timeout(format!("polls still waiting after {timeout:?}")))
    }

    /// Waits until task `task_id` is in state `want`; fails with
    /// [`ErrorKind::Timeout`](rxon_core::ErrorKind::Timeout) after `timeout`.
    pub async fn wait_for_task_state(
        &self,
        task_id: &str,
        want: &TaskState,
        timeout: Duration,
    ) -> Result<()> {
        #[cfg(feature = "redis")]
        if let Some(r) = self.inner.redis.as_ref() {
            return self
                .inner
                .wait_shared(timeout, move || async move {
                    Ok((r.task_state(task_id).await?.as_ref() == Some(want)).then_some(()))
                })
                .await?
                .ok_or_else(|| {
                    RxonError::timeout(format!("task {task_id:?} not {want:?} within {timeout:?}"))
                });
        }
        self.inner
            .wait_event(timeout, |st| {
                st.store
                    .tasks
                    .get(task_id)
                    .is_some_and(|t| t.state() == *want)
                    .then_some(())
            })
            .await
            .ok_or_else(|| {
                RxonError::timeout(format!("task {task_id:?} not {want:?} within {timeout:?}"))
            })
    }

    /// Waits until `worker_id` has an open command channel; an error after `timeout`.
    pub async fn wait_for_command_channel(&self, worker_id: &str, timeout: Duration) -> Result<()> {
        self.inner
            .wait_event(timeout, |st| {
                st.channels
                    .get(worker_id)
                    .is_some_and(|tx| !tx.is_closed())
                    .then_some(())
            })
            .await
            .ok_or_else(|| {
                RxonError::timeout(format!(
                    "no command channel for {worker_id:?} within {timeout:?}"
                ))
            })
    }

    /// Waits until `worker_id` has no open command channel (a listener closed it, or
    /// it was never opened); an error after `timeout`.
    pub async fn wait_for_no_command_channel(
        &self,
        worker_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.inner
            .wait_event(timeout, |st| {
                st.channels
                    .get(worker_id)
                    .is_none_or(|tx| tx.is_closed())
                    .then_some(())
            })
            .await
            .ok_or_else(|| {
                RxonError::timeout(format!(
                    "command channel of {worker_id:?} still open after {timeout:?}"
                ))
            })
    }

    /// Marks every active worker silent for longer than the worker TTL as gone, and
    /// puts the tasks it held back in their queues ahead of every task enqueued after
    /// them. A worker with a poll in progress is not silent. Also requeues the tasks
    /// whose claim lapsed unconfirmed (see [`OrchestratorBuilder::claim_lease`]).
    /// Returns the ids of the workers marked gone, sorted; their command channels are
    /// closed.
    pub async fn reap_expired(&self) -> Vec<String> {
        self.inner.reap().await
    }

    /// Runs [`reap_expired`](Self::reap_expired) every `interval` (at least 1 ms) on a
    /// Tokio task, which ends when the last clone of this orchestrator is dropped. A
    /// later call replaces the earlier reaper.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime, as [`tokio::spawn`] does.
    pub fn spawn_reaper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = interval.max(Duration::from_millis(1));
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match weak.upgrade() {
                    Some(inner) => {
                        inner.reap().await;
                    }
                    None => return,
                }
            }
        });
        let previous = self
            .inner
            .reaper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(handle.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxon_core::{Handler, HandlerResult, RequestContext, WorkerRegistration};

    /// The requests of worker `w`.
    fn ctx() -> RequestContext {
        RequestContext::new("test")
            .with_token("any")
            .with_worker_id("w")
    }

    /// Registers worker `w` with `skills`.
    async fn register(o: &Orchestrator, skills: &[&str]) {
        let registration = WorkerRegistration {
            worker_id: "w".into(),
            supported_skills: rxon_core::SkillInfo::list(skills.iter().copied()),
            ..Default::default()
        };
        Handler::register(o, ctx(), registration).await.unwrap();
    }

    /// A poll of worker `w`, parked for up to a minute.
    fn park(o: &Orchestrator) -> tokio::task::JoinHandle<HandlerResult<Option<TaskPayload>>> {
        let o = o.clone();
        tokio::spawn(async move { Handler::poll(&o, ctx(), Duration::from_secs(60)).await })
    }

    /// A task `id` of job `j`, of type `a`.
    fn task(id: &str) -> TaskPayload {
        TaskPayload {
            job_id: "j".into(),
            task_id: id.into(),
            task_type: "a".into(),
            ..Default::default()
        }
    }

    /// Until `check` holds of the state (bounded).
    async fn until(o: &Orchestrator, check: impl Fn(&State) -> bool) {
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            while !check(&o.inner.lock()) {
                tokio::task::yield_now().await;
            }
        });
        reached.await.expect("the state is reached in time");
    }

    /// The task a parked poll returns (bounded).
    async fn taken(
        parked: tokio::task::JoinHandle<HandlerResult<Option<TaskPayload>>>,
    ) -> TaskPayload {
        let got = tokio::time::timeout(Duration::from_secs(10), parked).await;
        got.unwrap().unwrap().unwrap().expect("a task")
    }

    /// A task's entry among the result waiters lasts while someone waits: gone after a
    /// wait that timed out, one that was dropped, and one for an unknown task.
    #[tokio::test]
    async fn result_waiters_leave_no_entry_behind() {
        let o = Orchestrator::new();
        o.enqueue(task("t")).await.unwrap();
        assert!(o.wait_result("t", Duration::from_millis(1)).await.is_err());
        let unknown = o.wait_result("unknown", Duration::from_secs(5)).await;
        assert!(unknown.is_err());
        assert_eq!(o.inner.lock().result_waiters.len(), 0);
        let parked = {
            let o = o.clone();
            tokio::spawn(async move { o.wait_result("t", Duration::from_secs(60)).await })
        };
        until(&o, |st| st.result_waiters.contains("t")).await;
        parked.abort();
        let _ = parked.await;
        let left = o.inner.lock().result_waiters.len();
        assert_eq!(left, 0, "a dropped wait removes its entry");
    }

    /// A parked poll waits among the waiters of its worker's skills and of the worker
    /// itself while it is parked, and leaves them when it ends, also when dropped.
    #[tokio::test]
    async fn parked_polls_leave_no_poll_waiters_behind() {
        let o = Orchestrator::new();
        register(&o, &["a", "b"]).await;
        let keys = |o: &Orchestrator| o.inner.lock().poll_waiters.len();
        let parked = park(&o);
        // Both skills and the worker's own key.
        until(&o, |st| st.poll_waiters.len() == 3).await;
        assert!(o.inner.lock().poll_waiters.contains("@w"));
        parked.abort();
        let _ = parked.await;
        assert_eq!(keys(&o), 0, "a dropped poll leaves its keys");
        let ended = Handler::poll(&o, ctx(), Duration::from_millis(1)).await;
        assert!(ended.unwrap().is_none());
        assert_eq!(keys(&o), 0, "a poll that timed out leaves its keys");
    }

    /// A poll parked before its worker registered again with one more skill joins that
    /// skill's waiters, so that skill's enqueue wakes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_poll_listens_to_skills_registered_since() {
        let o = Orchestrator::new();
        register(&o, &["a"]).await;
        let parked = park(&o);
        until(&o, |st| st.poll_waiters.contains("a")).await;
        register(&o, &["a", "b"]).await;
        // The parked poll joins the new skill's waiters.
        until(&o, |st| st.poll_waiters.contains("b")).await;
        o.enqueue(TaskPayload {
            task_type: "b".into(),
            ..task("t")
        })
        .await
        .unwrap();
        assert_eq!(taken(parked).await.task_id, "t");
    }

    /// A waiter of a task that is forgotten while it waits (the retention bound passes
    /// it while its cancelled holder has not answered) hears at once that no result
    /// will come.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_result_hears_that_its_task_was_forgotten() {
        let o = Orchestrator::builder().max_finished_tasks(1).build();
        register(&o, &["a"]).await;
        o.enqueue(task("held")).await.unwrap();
        let held = Handler::poll(&o, ctx(), Duration::from_secs(5)).await;
        assert_eq!(held.unwrap().unwrap().task_id, "held");
        assert!(matches!(
            o.cancel("held").await.unwrap(),
            CancelOutcome::Signalled { .. }
        ));
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move { o.wait_result("held", Duration::from_secs(60)).await })
        };
        until(&o, |st| st.result_waiters.contains("held")).await;
        o.enqueue(task("next")).await.unwrap();
        o.cancel("next").await.unwrap();
        assert_eq!(o.task_state("held").await, None, "forgotten past the bound");
        let got = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        let err = got.unwrap().unwrap().unwrap_err();
        assert_eq!(err.kind(), rxon_core::ErrorKind::InvalidInput, "{err}");
    }

    /// A heartbeat carrying a catalog with one more skill makes the worker's parked
    /// poll listen to that skill too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_with_a_new_skill_reaches_the_parked_poll() {
        let o = Orchestrator::new();
        register(&o, &["a"]).await;
        let parked = park(&o);
        until(&o, |st| st.poll_waiters.contains("a")).await;
        let heartbeat = rxon_core::Heartbeat {
            worker_id: "w".into(),
            status: "idle".into(),
            supported_skills: Some(rxon_core::SkillInfo::list(["a", "b"])),
            ..Default::default()
        };
        Handler::heartbeat(&o, ctx(), Some(heartbeat))
            .await
            .unwrap();
        until(&o, |st| st.poll_waiters.contains("b")).await;
        o.enqueue(TaskPayload {
            task_type: "b".into(),
            ..task("t")
        })
        .await
        .unwrap();
        assert_eq!(taken(parked).await.task_id, "t");
    }

    /// Cancelling a job whose cancels push its own ended tasks past the retention bound
    /// still cancels every task: a forgotten one counts as finished.
    #[tokio::test]
    async fn cancel_job_counts_its_forgotten_tasks_as_finished() {
        let o = Orchestrator::builder().max_finished_tasks(1).build();
        register(&o, &["a"]).await;
        // t2 ends (cancelled while queued); t1, enqueued before it, waits.
        for id in ["t1", "t2"] {
            o.enqueue(task(id)).await.unwrap();
        }
        assert_eq!(o.cancel("t2").await.unwrap(), CancelOutcome::Dequeued);
        // Cancelling t1 (listed first) pushes t2 past the bound before its turn.
        let out = o.cancel_job("j").await.unwrap();
        let outcomes: Vec<(&str, &CancelOutcome)> =
            out.iter().map(|(id, c)| (id.as_str(), c)).collect();
        assert_eq!(
            outcomes,
            [
                ("t1", &CancelOutcome::Dequeued),
                ("t2", &CancelOutcome::AlreadyFinished),
            ]
        );
        assert_eq!(o.queued().await, 0, "every task of the job is cancelled");
    }
}
