//! The worker runtime: what every worker would otherwise write by hand, over any
//! [`Transport`].
//!
//! - registers with its capabilities, then heartbeats at an interval, reporting load
//!   and current tasks, and acts on the replies (cancel lists, full-sync requests);
//! - polls and runs up to `max_concurrent_tasks` handlers at once, one async function
//!   per task type;
//! - cancels a task when a `cancel_task` command arrives over the command channel **or**
//!   in a heartbeat reply's `cancel_task_ids`;
//! - turns handler errors into result error codes, a panic into an `INTERNAL_ERROR`
//!   failure (the worker lives on), a per-task timeout into `TIMEOUT_ERROR`;
//! - backs off (jittered, capped) when the orchestrator is unreachable, and keeps each
//!   finished result until it is delivered;
//! - shuts down gracefully: stops polling, lets running tasks finish within a deadline,
//!   delivers their results, closes the transport.
//!
//! ```no_run
//! # async fn demo() -> rxon::Result<()> {
//! use rxon::worker::{TaskFailure, Worker};
//! use rxon::{Map, Value};
//! use std::sync::Arc;
//!
//! let transport = rxon::create_transport("http://127.0.0.1:8080", "worker-1", "secret", Default::default())?;
//! let worker = Worker::builder(transport)
//!     .max_concurrent_tasks(4)
//!     .handler("echo", |task, ctx| async move {
//!         ctx.progress(0.5, Some("halfway")).await;
//!         if task.params.get("fail").and_then(Value::as_bool) == Some(true) {
//!             return Err(TaskFailure::invalid_input("asked to fail"));
//!         }
//!         let mut out = Map::new();
//!         out.insert("echo".into(), Value::Object(task.params.clone()));
//!         Ok(out)
//!     })
//!     .build()?;
//! worker.run_until_signal().await?; // Ctrl-C or SIGTERM
//! # Ok(()) }
//! ```

pub mod metrics;
mod task;

pub use task::{TaskContext, TaskFailure};

use rxon_core::DynTransport;
use rxon_core::constants::{
    WORKER_STATUS_DRAINING, WORKER_STATUS_FULL, WORKER_STATUS_IDLE, WORKER_STATUS_OFFLINE,
};
use rxon_core::retry::Backoff;
use rxon_core::{
    CommandName, ErrorCode, ErrorKind, Heartbeat, Map, Result, RxonError, SkillInfo, TaskError,
    TaskPayload, TaskResult, Transport, WorkerRegistration,
};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

type HandlerFuture = Pin<Box<dyn Future<Output = std::result::Result<Map, TaskFailure>> + Send>>;
type TaskHandler = Arc<dyn Fn(TaskPayload, TaskContext) -> HandlerFuture + Send + Sync>;

/// Longest pause between two attempts to reach an unreachable orchestrator.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// On shutdown, how long a poll in flight may still take to hand over a task.
pub const POLL_DRAIN: Duration = Duration::from_secs(2);
/// How long the worker waits for its last (`offline`) heartbeat to be answered.
pub const OFFLINE_HEARTBEAT_WAIT: Duration = Duration::from_secs(2);
/// First pause after a failure to reach the orchestrator.
pub const FIRST_BACKOFF: Duration = rxon_core::retry::MIN_RETRY_AFTER;

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    transport: Arc<dyn Transport>,
    handlers: BTreeMap<String, TaskHandler>,
    skills: BTreeMap<String, SkillInfo>,
    registration: WorkerRegistration,
    max_concurrent: usize,
    heartbeat_interval: Duration,
    poll_timeout: Duration,
    task_timeout: Option<Duration>,
    cancel_grace: Duration,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("worker_id", &self.transport.worker_id())
            .field("task_types", &self.handlers.keys().collect::<Vec<_>>())
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Handles tasks of `task_type` with `handler`. The task types become the
    /// registration's `supported_skills` (skills without a contract; see
    /// [`skill`](Self::skill) to declare one).
    pub fn handler<F, Fut>(self, task_type: &str, handler: F) -> Self
    where
        F: Fn(TaskPayload, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Map, TaskFailure>> + Send + 'static,
    {
        self.skill(SkillInfo::new(task_type), handler)
    }

    /// Handles tasks of `skill.name` with `handler`, declaring the skill's contract
    /// (version, description, `input_schema`, `output_schema`, `events_schema`…) in the
    /// registration's catalog, where orchestrators read it.
    ///
    /// ```
    /// # fn demo(transport: rxon::DynTransport) -> rxon::Result<rxon::worker::Worker> {
    /// use rxon::{map, SkillInfo};
    /// let mut resize = SkillInfo::new("resize");
    /// resize.version = Some("2.1".into());
    /// resize.input_schema = Some(map! {
    ///     "type": "object",
    ///     "properties": {"width": {"type": "integer", "minimum": 1}},
    ///     "required": ["width"],
    /// });
    /// rxon::worker::Worker::builder(transport)
    ///     .skill(resize, |task, _ctx| async move { Ok(task.params) })
    ///     .build()
    /// # }
    /// ```
    pub fn skill<F, Fut>(mut self, skill: SkillInfo, handler: F) -> Self
    where
        F: Fn(TaskPayload, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Map, TaskFailure>> + Send + 'static,
    {
        let handler: TaskHandler = Arc::new(move |task, ctx| Box::pin(handler(task, ctx)));
        self.handlers.insert(skill.name.clone(), handler);
        self.skills.insert(skill.name.clone(), skill);
        self
    }

    /// Tasks run at once (default 1). Also reported as the registration's
    /// `max_concurrent_tasks`.
    pub fn max_concurrent_tasks(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Interval between heartbeats (default 5 s).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long each poll waits for a task (default 30 s). On shutdown the poll in
    /// flight gets at most [`POLL_DRAIN`] more.
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Deadline of every task; past it the task fails with `TIMEOUT_ERROR`.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// After a cancel, how long a handler may take to return before it is stopped
    /// (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// On shutdown, how long running tasks may take to finish (default 30 s); tasks
    /// still running then are cancelled and reported as `TRANSIENT_ERROR` so the
    /// orchestrator can run them elsewhere.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The registration to send (the worker id, skills and concurrency are filled in).
    pub fn registration(mut self, registration: WorkerRegistration) -> Self {
        self.registration = registration;
        self
    }

    /// Checks the configuration and builds the worker.
    pub fn build(self) -> Result<Worker> {
        if self.handlers.is_empty() {
            return Err(RxonError::config(
                "a worker needs at least one task handler",
            ));
        }
        for task_type in self.handlers.keys() {
            rxon_core::validate::validate_identifier(task_type, "task type")?;
        }
        // A schema that does not compile is this worker's mistake: say so now.
        let mut contracts = BTreeMap::new();
        for skill in self.skills.values() {
            let contract = rxon_schema::Contract::compile(skill)
                .map_err(|e| RxonError::config(e.to_string()))?;
            if !contract.is_empty() {
                contracts.insert(skill.name.clone(), Arc::new(contract));
            }
        }
        let mut registration = self.registration;
        registration.worker_id = self.transport.worker_id().to_owned();
        registration.supported_skills = self.skills.into_values().collect();
        registration.skills_hash = Some(
            rxon_wire::catalog::skills_hash(
                &registration.supported_skills,
                &registration.capabilities.cost_per_skill,
                registration
                    .capabilities
                    .extra
                    .as_ref()
                    .unwrap_or(&Map::new()),
            )
            .map_err(|e| RxonError::config(format!("the skill catalog: {e}")))?,
        );
        registration.resources.max_concurrent_tasks =
            u32::try_from(self.max_concurrent).unwrap_or(u32::MAX);
        if registration.worker_type.is_empty() {
            registration.worker_type = "rxon".into();
        }
        let (shutdown, _) = watch::channel(false);
        Ok(Worker {
            inner: Arc::new(Inner {
                transport: self.transport,
                handlers: self.handlers,
                contracts,
                registration,
                max_concurrent: self.max_concurrent,
                heartbeat_interval: self.heartbeat_interval,
                poll_timeout: self.poll_timeout,
                task_timeout: self.task_timeout,
                cancel_grace: self.cancel_grace,
                shutdown_grace: self.shutdown_grace,
                running: Mutex::new(HashMap::new()),
                catalog_synced: AtomicBool::new(false),
                shutdown,
                stats: Stats::default(),
            }),
        })
    }
}

/// Counters of a worker's activity.
#[derive(Debug, Default)]
struct Stats {
    succeeded: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    ignored: AtomicU64,
}

/// A snapshot of a worker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Results reported with status `success`.
    pub succeeded: u64,
    /// Results reported with status `failure`.
    pub failed: u64,
    /// Results reported with status `cancelled`.
    pub cancelled: u64,
    /// Results the orchestrator ignored.
    pub ignored: u64,
}

/// A running task, as the runtime tracks it.
struct Running {
    cancel: watch::Sender<bool>,
}

struct Inner {
    transport: Arc<dyn Transport>,
    handlers: BTreeMap<String, TaskHandler>,
    /// The compiled contracts of the skills that declare schemas.
    contracts: BTreeMap<String, Arc<rxon_schema::Contract>>,
    registration: WorkerRegistration,
    max_concurrent: usize,
    heartbeat_interval: Duration,
    poll_timeout: Duration,
    task_timeout: Option<Duration>,
    cancel_grace: Duration,
    shutdown_grace: Duration,
    running: Mutex<HashMap<String, Running>>,
    /// The orchestrator holds this worker's catalog (a registration went through), so
    /// 1.0b17 heartbeats send only its `skills_hash`.
    catalog_synced: AtomicBool,
    shutdown: watch::Sender<bool>,
    stats: Stats,
}

/// Runs task handlers for an orchestrator over a [`Transport`]. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker_id", &self.inner.transport.worker_id())
            .field("running", &self.running_tasks())
            .finish_non_exhaustive()
    }
}

/// Asks a [`Worker`] to shut down gracefully.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shutdown: watch::Sender<bool>,
}

impl ShutdownHandle {
    /// Stops polling; running tasks get the shutdown grace period to finish.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

impl Worker {
    /// A builder for a worker over `transport` (connected or not): what
    /// `rxon::create_transport` returns, or any `Arc`/`Box` of a transport.
    pub fn builder(transport: impl Into<DynTransport>) -> WorkerBuilder {
        WorkerBuilder {
            transport: transport.into(),
            handlers: BTreeMap::new(),
            skills: BTreeMap::new(),
            registration: WorkerRegistration::default(),
            max_concurrent: 1,
            heartbeat_interval: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(30),
            task_timeout: None,
            cancel_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// A handle that shuts this worker down from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shutdown: self.inner.shutdown.clone(),
        }
    }

    /// Ids of the tasks running now.
    pub fn running_tasks(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.lock_running().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkerStats {
        let s = &self.inner.stats;
        WorkerStats {
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            cancelled: s.cancelled.load(Ordering::Relaxed),
            ignored: s.ignored.load(Ordering::Relaxed),
        }
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(&self) -> Result<()> {
        let handle = self.shutdown_handle();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            handle.shutdown();
        });
        let out = self.run().await;
        signals.abort();
        out
    }

    /// Connects, registers and works until [`ShutdownHandle::shutdown`] is called;
    /// returns after the graceful shutdown. Fails only if registration fails for a
    /// reason other than the network (which is retried).
    pub async fn run(&self) -> Result<()> {
        let inner = &self.inner;
        let mut stop = inner.shutdown.subscribe();
        inner.transport.connect().await?;
        if !inner.register_until_ok(&mut stop).await? {
            inner.transport.close().await?;
            return Ok(());
        }
        let permits = Arc::new(Semaphore::new(inner.max_concurrent));
        let heartbeat = tokio::spawn(self.inner.clone().heartbeat_loop());
        let commands = tokio::spawn(self.inner.clone().command_loop());
        let mut tasks = tokio::task::JoinSet::new();
        let mut backoff = backoff();
        loop {
            // Only poll when a task could start at once.
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = stopped(&mut stop) => break,
            };
            // On shutdown the poll in flight gets a short while to finish, so that a task
            // it is being handed is run; past that it is dropped, and an orchestrator
            // that handed a task to a vanished poll requeues it when this worker's
            // heartbeats stop (its lease expires).
            let poll = inner.transport.poll_task(inner.poll_timeout);
            let polled = tokio::select! {
                r = poll => Some(r),
                () = async {
                    stopped(&mut stop).await;
                    tokio::time::sleep(POLL_DRAIN).await;
                } => None,
            };
            let Some(polled) = polled else { break };
            match polled {
                Ok(Some(task)) => {
                    backoff.reset();
                    tasks.spawn(self.inner.clone().run_task(task, permit));
                }
                Ok(None) => backoff.reset(),
                Err(e) if e.kind() == ErrorKind::Closed => break,
                Err(e) => {
                    let pause = metrics::retrying("poll", backoff.pause_after(&e));
                    tracing::warn!(error = %e, retry_in = ?pause, "poll failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stopped(&mut stop) => break,
                    }
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        // Graceful shutdown: let running tasks finish, then cancel the rest.
        let drained = tokio::time::timeout(inner.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(remaining = tasks.len(), "shutdown grace passed; cancelling");
            for running in inner.lock_running().values() {
                running.cancel.send_replace(true);
            }
            // Cancelled tasks report within their cancel grace, bounded.
            let _ = tokio::time::timeout(inner.cancel_grace + Duration::from_secs(1), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.shutdown().await;
        }
        heartbeat.abort();
        commands.abort();
        // The last word: nothing runs here any more (as the reference SDK says it).
        let offline = Heartbeat {
            worker_id: inner.registration.worker_id.clone(),
            status: WORKER_STATUS_OFFLINE.into(),
            supported_skills: Some(Vec::new()),
            available_skills: Some(Vec::new()),
            ..Default::default()
        };
        let last = inner.transport.send_heartbeat(&offline);
        match tokio::time::timeout(OFFLINE_HEARTBEAT_WAIT, last).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "the offline heartbeat failed"),
            Err(_) => tracing::debug!("the offline heartbeat timed out"),
        }
        inner.transport.close().await
    }
}

impl Inner {
    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cancel(&self, task_id: &str, how: &str) {
        if let Some(running) = self.lock_running().get(task_id) {
            tracing::info!(task_id, via = how, "cancelling task");
            running.cancel.send_replace(true);
        }
    }

    /// Registers, retrying network failures with backoff. `Ok(false)` if shut down
    /// before it succeeded.
    async fn register_until_ok(&self, stop: &mut watch::Receiver<bool>) -> Result<bool> {
        let mut backoff = backoff();
        loop {
            match self.transport.register(&self.registration).await {
                Ok(reply) => {
                    self.catalog_synced.store(true, Ordering::Relaxed);
                    if let Some(warning) = reply.warning {
                        tracing::warn!(%warning, "orchestrator warning at registration");
                    }
                    return Ok(true);
                }
                Err(e) if e.is_retryable() => {
                    let pause = metrics::retrying("register", backoff.pause_after(&e));
                    tracing::warn!(error = %e, retry_in = ?pause, "registration failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stopped(stop) => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let current: Vec<String> = {
                let mut ids: Vec<String> = self.lock_running().keys().cloned().collect();
                ids.sort();
                ids
            };
            // "idle" means "can start a task" (1.0b17 orchestrators dispatch only to
            // idle workers), "full" that every slot is taken.
            // While shutting down it finishes what it has and takes nothing new.
            let draining = *self.shutdown.borrow();
            let full = current.len() >= self.max_concurrent;
            let available = if full || draining {
                Vec::new()
            } else {
                self.registration
                    .supported_skills
                    .iter()
                    .map(|s| s.name.clone())
                    .collect()
            };
            // The catalog goes once; then its hash says "unchanged". A 1.0b3 peer reads
            // a heartbeat without one as "no skills", so it always gets it.
            let omit_catalog = self.catalog_synced.load(Ordering::Relaxed)
                && self.transport.known_protocol() != Some(rxon_core::Protocol::V1b3);
            let heartbeat = Heartbeat {
                worker_id: self.registration.worker_id.clone(),
                status: if draining {
                    WORKER_STATUS_DRAINING
                } else if full {
                    WORKER_STATUS_FULL
                } else {
                    WORKER_STATUS_IDLE
                }
                .into(),
                load: current.len() as f64 / self.max_concurrent as f64,
                current_tasks: current,
                supported_skills: (!omit_catalog)
                    .then(|| self.registration.supported_skills.clone()),
                skills_hash: self.registration.skills_hash.clone(),
                available_skills: Some(available),
                ..Default::default()
            };
            match self.transport.send_heartbeat(&heartbeat).await {
                Ok(reply) => {
                    for task_id in &reply.cancel_task_ids {
                        self.cancel(task_id, "heartbeat reply");
                    }
                    if reply.require_full_sync {
                        tracing::info!("orchestrator asked for a full sync; registering again");
                        self.reregister().await;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Closed => return,
                // The orchestrator forgot this worker (a restart) or no longer takes
                // its session: register again, as the reference SDK does.
                Err(e) if e.is_auth() || e.status() == Some(404) => {
                    tracing::warn!(error = %e, "heartbeat refused; registering again");
                    self.reregister().await;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    /// Registers again (the whole state); until that succeeds, heartbeats carry the
    /// whole catalog.
    async fn reregister(&self) {
        match self.transport.register(&self.registration).await {
            Ok(_) => self.catalog_synced.store(true, Ordering::Relaxed),
            Err(e) => {
                self.catalog_synced.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "re-registration failed");
            }
        }
    }

    async fn command_loop(self: Arc<Self>) {
        let mut backoff = backoff();
        loop {
            match self.transport.next_command().await {
                Ok(Some(command)) => {
                    backoff.reset();
                    if command.command == CommandName::CancelTask
                        && let Some(task_id) = &command.task_id
                    {
                        self.cancel(task_id, "command");
                    }
                }
                Ok(None) => return,
                Err(e) if e.kind() == ErrorKind::Unsupported || e.kind() == ErrorKind::Closed => {
                    tracing::info!(error = %e, "no command channel; cancellation comes with heartbeats");
                    return;
                }
                Err(e) => {
                    let pause = metrics::retrying("commands", backoff.next());
                    tracing::warn!(error = %e, retry_in = ?pause, "command channel error");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Runs one task to its result and delivers the result; holds `permit` throughout
    /// so that a worker that cannot deliver results stops taking new tasks.
    async fn run_task(
        self: Arc<Self>,
        task: TaskPayload,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let span = tracing::info_span!(
            "task",
            task_id = %task.task_id,
            job_id = %task.job_id,
            task_type = %task.task_type,
            traceparent = task.tracing_context.get("traceparent").map(String::as_str).unwrap_or(""),
        );
        // The orchestrator's span that enqueued the task is this one's parent.
        #[cfg(feature = "otel")]
        rxon_otel::continue_trace(&span, &task.tracing_context);
        async move {
            let (cancel, cancelled) = watch::channel(false);
            self.lock_running()
                .insert(task.task_id.clone(), Running { cancel });
            let started = tokio::time::Instant::now();
            let mut result = self.execute(&task, cancelled).await;
            // The SDK's cost report (1.0b17 peers read it; 1.0b3 ones never see it).
            result.costs = Some(rxon_core::map! {
                "execution_time_seconds": (started.elapsed().as_secs_f64()),
            });
            result.origin_worker_id = Some(self.registration.worker_id.clone());
            self.lock_running().remove(&task.task_id);
            self.deliver(result).await;
            drop(permit);
        }
        .instrument(span)
        .await
    }

    async fn execute(&self, task: &TaskPayload, cancelled: watch::Receiver<bool>) -> TaskResult {
        let worker_id = self.registration.worker_id.as_str();
        let Some(handler) = self.handlers.get(&task.task_type).cloned() else {
            let error = TaskError::new(
                ErrorCode::Permanent,
                format!(
                    "this worker has no handler for task type {:?}",
                    task.task_type
                ),
            );
            return TaskResult::failure(task, worker_id, error);
        };
        let contract = self.contracts.get(&task.task_type).cloned();
        // The skill's own contract, both ways: bad params never reach the handler, and
        // a result that breaks the promised output is not sent as a success.
        if let Some(c) = &contract
            && let Err(v) = c.check_input(&task.params)
        {
            let error = TaskError::new(
                ErrorCode::InvalidInput,
                format!("the params violate the skill's input_schema: {v}"),
            );
            return TaskResult::failure(task, worker_id, error);
        }
        let ctx = TaskContext {
            task_id: task.task_id.clone(),
            job_id: task.job_id.clone(),
            worker_id: self.registration.worker_id.clone(),
            contract: contract.clone(),
            transport: self.transport.clone(),
            cancelled: cancelled.clone(),
            trace_context: task::current_trace(),
        };
        // The handler runs in its own task so that a panic is caught as a JoinError,
        // in the task's span (its own spans are the task's children).
        let mut work = tokio::spawn(tracing::Instrument::in_current_span(handler(
            task.clone(),
            ctx,
        )));
        let mut cancel_watch = cancelled.clone();
        let deadline = async {
            match self.task_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            joined = &mut work => match joined {
                Ok(Ok(data)) => match contract.as_ref().map(|c| c.check_output(&data)) {
                    Some(Err(v)) => TaskResult::failure(task, worker_id, TaskError::new(
                        ErrorCode::ContractViolation,
                        format!("the handler's output violates the skill's output_schema: {v}"),
                    )),
                    _ => TaskResult::success(task, worker_id, data),
                },
                Ok(Err(failure)) if *cancelled.borrow() => {
                    tracing::debug!(%failure, "handler ended after a cancel");
                    self.stopped_result(task)
                }
                Ok(Err(failure)) => TaskResult::failure(task, worker_id, failure.into_task_error()),
                Err(e) => {
                    let message = panic_message(e);
                    tracing::error!(%message, "task handler panicked");
                    TaskResult::failure(task, worker_id, TaskError::new(ErrorCode::Internal, format!("handler panicked: {message}")))
                }
            },
            () = deadline => {
                work.abort();
                let limit = self.task_timeout.unwrap_or_default();
                TaskResult::failure(task, worker_id, TaskError::new(ErrorCode::Timeout, format!("task exceeded its {limit:?} timeout")))
            }
            () = stopped(&mut cancel_watch) => {
                // Give the handler its grace period to stop cleanly.
                let _ = tokio::time::timeout(self.cancel_grace, &mut work).await;
                work.abort();
                self.stopped_result(task)
            }
        }
    }

    /// The result of a task stopped by a cancel: `cancelled` when the orchestrator asked,
    /// a transient failure when the worker is shutting down (so the task runs elsewhere).
    fn stopped_result(&self, task: &TaskPayload) -> TaskResult {
        let worker_id = self.registration.worker_id.as_str();
        if *self.shutdown.borrow() {
            let error = TaskError::new(
                ErrorCode::Transient,
                "worker shut down before the task finished",
            );
            TaskResult::failure(task, worker_id, error)
        } else {
            TaskResult::cancelled(task, worker_id)
        }
    }

    /// Delivers `result`, retrying network failures until it is accepted, ignored or
    /// refused; gives up only after the shutdown grace once shutdown has begun.
    async fn deliver(&self, result: TaskResult) {
        let mut backoff = backoff();
        let mut stop = self.shutdown.subscribe();
        let mut shutdown_deadline: Option<tokio::time::Instant> = None;
        loop {
            match self.transport.send_result(&result).await {
                Ok(outcome) => {
                    if let rxon_core::ResultOutcome::Ignored { reason, message } = &outcome {
                        tracing::warn!(
                            task_id = %result.task_id,
                            %reason,
                            message = message.as_deref().unwrap_or(""),
                            "result ignored by the orchestrator"
                        );
                    }
                    let (counter, name) = match (&outcome, &result.status) {
                        (rxon_core::ResultOutcome::Ignored { .. }, _) => {
                            (&self.stats.ignored, "ignored")
                        }
                        (_, rxon_core::TaskStatus::Success) => (&self.stats.succeeded, "success"),
                        (_, rxon_core::TaskStatus::Cancelled) => {
                            (&self.stats.cancelled, "cancelled")
                        }
                        _ => (&self.stats.failed, "failure"),
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    metrics::delivered(name);
                    return;
                }
                Err(e) if e.is_retryable() => {
                    if *stop.borrow() {
                        let deadline = *shutdown_deadline.get_or_insert_with(|| {
                            tokio::time::Instant::now() + self.shutdown_grace
                        });
                        if tokio::time::Instant::now() >= deadline {
                            tracing::error!(error = %e, "result not delivered before shutdown");
                            return;
                        }
                    }
                    let pause = metrics::retrying("result", backoff.pause_after(&e));
                    tracing::warn!(error = %e, retry_in = ?pause, "result not delivered yet; keeping it");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "result refused; it cannot be delivered");
                    return;
                }
            }
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the handler was aborted".into();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Resolves when `rx` turns true or its sender is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The runtime's backoff: from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`] with ±25 % jitter,
/// so that many workers losing the same orchestrator do not return in lockstep.
fn backoff() -> Backoff {
    Backoff::jittered(FIRST_BACKOFF, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = backoff();
        let first = b.next();
        assert!(first >= Duration::from_millis(150) && first <= Duration::from_millis(250));
        let mut last = first;
        for _ in 0..20 {
            last = b.next();
        }
        assert!(last <= super::MAX_BACKOFF, "never above the cap");
        assert!(last >= super::MAX_BACKOFF.mul_f64(0.75));
        b.reset();
        assert!(b.next() <= Duration::from_millis(250));
    }
}
