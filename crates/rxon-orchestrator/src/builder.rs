//! [`OrchestratorBuilder`] and the configuration it collects.

use super::state::State;
use super::{
    DEFAULT_CLAIM_LEASE, DEFAULT_COMMAND_CAPACITY, DEFAULT_MAX_FINISHED_TASKS,
    DEFAULT_MAX_QUEUE_LEN, DEFAULT_MAX_WORKERS, DEFAULT_PROGRESS_HISTORY,
    DEFAULT_REFRESH_TOKEN_TTL, DEFAULT_TOKEN_TTL, DEFAULT_UNPLACEABLE_AFTER, DEFAULT_WORKER_TTL,
    Inner, MAX_ISSUED_TOKENS, Orchestrator, PROGRESS_BROADCAST_CAPACITY,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// The configuration an [`OrchestratorBuilder`] collects.
#[derive(Clone)]
pub(super) struct Config {
    pub(super) tokens: Vec<String>,
    pub(super) worker_tokens: Vec<(String, String)>,
    pub(super) sts_credentials: Vec<String>,
    pub(super) bind_cert_identity: bool,
    pub(super) token_ttl: Duration,
    pub(super) refresh_token_ttl: Duration,
    pub(super) worker_ttl: Duration,
    pub(super) claim_lease: Duration,
    pub(super) rate_limit: Option<(u32, Duration)>,
    pub(super) default_task_deadline: Option<Duration>,
    pub(super) max_queue_len: usize,
    pub(super) max_workers: usize,
    pub(super) max_finished_tasks: usize,
    pub(super) max_issued_tokens: usize,
    pub(super) progress_history: usize,
    pub(super) command_capacity: usize,
    pub(super) unplaceable_after: Duration,
    /// The key of the `sig` on 1.0b17 tasks.
    pub(super) task_signing_key: Option<String>,
}

impl Config {
    /// The static token configured for `worker_id` alone, if any.
    pub(super) fn worker_token_of(&self, worker_id: &str) -> Option<&str> {
        self.worker_tokens
            .iter()
            .find(|(_, w)| w == worker_id)
            .map(|(t, _)| t.as_str())
    }

    /// Open auth: no credential of any kind is configured, so any non-empty token is
    /// accepted. A bootstrap (STS) credential alone closes it: then only issued tokens
    /// are accepted on the worker operations.
    pub(super) fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.worker_tokens.is_empty() && self.sts_credentials.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tokens: Vec::new(),
            worker_tokens: Vec::new(),
            sts_credentials: Vec::new(),
            bind_cert_identity: false,
            token_ttl: DEFAULT_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            worker_ttl: DEFAULT_WORKER_TTL,
            claim_lease: DEFAULT_CLAIM_LEASE,
            rate_limit: None,
            default_task_deadline: None,
            max_queue_len: DEFAULT_MAX_QUEUE_LEN,
            max_workers: DEFAULT_MAX_WORKERS,
            max_finished_tasks: DEFAULT_MAX_FINISHED_TASKS,
            max_issued_tokens: MAX_ISSUED_TOKENS,
            progress_history: DEFAULT_PROGRESS_HISTORY,
            command_capacity: DEFAULT_COMMAND_CAPACITY,
            unplaceable_after: DEFAULT_UNPLACEABLE_AFTER,
            task_signing_key: None,
        }
    }
}

/// Builds an [`Orchestrator`]; start with [`Orchestrator::builder`].
///
/// ```
/// use rxon_orchestrator::Orchestrator;
/// use std::time::Duration;
///
/// let orch = Orchestrator::builder()
///     .token("secret")
///     .sts_credential("bootstrap")
///     .worker_ttl(Duration::from_secs(10))
///     .rate_limit(100, Duration::from_secs(1))
///     .build();
/// assert!(!orch.is_open());
/// ```
#[derive(Clone, Default)]
pub struct OrchestratorBuilder {
    config: Config,
    storage: crate::Storage,
}

impl std::fmt::Debug for OrchestratorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are secrets: show how many there are, not what they are.
        f.debug_struct("OrchestratorBuilder")
            .field("tokens", &self.config.tokens.len())
            .field("worker_tokens", &self.config.worker_tokens.len())
            .field("sts_credentials", &self.config.sts_credentials.len())
            .field("bind_cert_identity", &self.config.bind_cert_identity)
            .field("token_ttl", &self.config.token_ttl)
            .field("worker_ttl", &self.config.worker_ttl)
            .field("claim_lease", &self.config.claim_lease)
            .field("rate_limit", &self.config.rate_limit)
            .field("default_task_deadline", &self.config.default_task_deadline)
            .field("max_queue_len", &self.config.max_queue_len)
            .finish_non_exhaustive()
    }
}

impl OrchestratorBuilder {
    /// Accepts `token` as a static worker token on every operation. When no credential
    /// at all is configured (no token, worker token or STS credential), any non-empty
    /// token is accepted: see [`Orchestrator::is_open`].
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        if !self.config.tokens.contains(&token) {
            self.config.tokens.push(token);
        }
        self
    }

    /// Accepts `token` as the static token of `worker_id` alone: a request carrying it
    /// may act only as that worker (register, poll, heartbeat, results, progress and
    /// commands for another worker id get 403).
    pub fn worker_token(mut self, worker_id: impl Into<String>, token: impl Into<String>) -> Self {
        let token = token.into();
        self.config.worker_tokens.retain(|(t, _)| *t != token);
        self.config.worker_tokens.push((token, worker_id.into()));
        self
    }

    /// Signs every task handed to a 1.0b17 worker (`sig`, HMAC-SHA256 of the task) with
    /// `key`, the orchestrator's secret (avtomatika's `ORCHESTRATOR_SECRET_KEY`): a
    /// worker holding the same key refuses tasks that do not verify. Without it, tasks
    /// carry no `sig`, and the reference SDK drops them when it has a key of its own.
    pub fn task_signing_key(mut self, key: impl Into<String>) -> Self {
        self.config.task_signing_key = Some(key.into()).filter(|k| !k.is_empty());
        self
    }

    /// Binds workers to their client certificates: every request must come over mTLS
    /// with a verified certificate whose subject CN is the worker id it acts as
    /// (default off, for deployments whose certificates name hosts, not workers).
    pub fn bind_cert_identity(mut self, bind: bool) -> Self {
        self.config.bind_cert_identity = bind;
        self
    }

    /// Accepts `credential` as a bootstrap credential: only the STS (`token`)
    /// operation accepts it, and trades it for a short-lived token.
    pub fn sts_credential(mut self, credential: impl Into<String>) -> Self {
        let credential = credential.into();
        if !self.config.sts_credentials.contains(&credential) {
            self.config.sts_credentials.push(credential);
        }
        self
    }

    /// Lifetime of the refresh tokens issued to 1.0b17 workers beside their access
    /// tokens (default [`DEFAULT_REFRESH_TOKEN_TTL`](crate::DEFAULT_REFRESH_TOKEN_TTL)).
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.config.refresh_token_ttl = ttl;
        self
    }

    /// Lifetime of issued STS tokens (default [`DEFAULT_TOKEN_TTL`]).
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.config.token_ttl = ttl;
        self
    }

    /// How long a claimed task waits for a sign that its worker received it: a
    /// heartbeat listing it in `current_tasks`, progress, or its result (default
    /// [`DEFAULT_CLAIM_LEASE`]). A poll's response can be lost with its connection after
    /// the task was handed to it; when the lease lapses unconfirmed, the reaper (see
    /// [`Orchestrator::spawn_reaper`](super::Orchestrator::spawn_reaper)) requeues the
    /// task. Should the worker report a result for it after all, that result is applied
    /// and the task is not run again. Keep it above the workers' heartbeat interval.
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.config.claim_lease = lease;
        self
    }

    /// How long a worker may stay silent before it is considered gone (default
    /// [`DEFAULT_WORKER_TTL`]). A worker with a poll in progress is never silent.
    pub fn worker_ttl(mut self, ttl: Duration) -> Self {
        self.config.worker_ttl = ttl;
        self
    }

    /// Allows each worker at most `max_requests` requests in each fixed window of
    /// `per`; more are refused with a rate-limited error whose retry-after is the time
    /// left in the window. Requests are counted per worker id (the operation's, else
    /// the request context's), else per token.
    pub fn rate_limit(mut self, max_requests: u32, per: Duration) -> Self {
        self.config.rate_limit = Some((max_requests, per));
        self
    }

    /// How long a task may wait while every registered worker that offers its type
    /// refuses it (its params break their `input_schema`, or they miss its
    /// [requirements](crate::TaskOptions::requirements)): past that, the reaper
    /// ([`Orchestrator::reap_expired`]) ends it as an `INVALID_INPUT_ERROR` (params) or
    /// `RESOURCE_EXHAUSTED` (requirements) failure naming each worker's reason,
    /// instead of leaving it queued for ever (default
    /// [`DEFAULT_UNPLACEABLE_AFTER`]). A task no registered worker offers to run waits
    /// for one: [`Orchestrator::placement`] says which case a queued task is in.
    pub fn unplaceable_after(mut self, wait: Duration) -> Self {
        self.config.unplaceable_after = wait;
        self
    }

    /// The deadline of tasks enqueued with [`Orchestrator::enqueue`], counted from the
    /// enqueue; none by default.
    pub fn default_task_deadline(mut self, deadline: Duration) -> Self {
        self.config.default_task_deadline = Some(deadline);
        self
    }

    /// Most unfinished (queued or running) tasks; an enqueue beyond it fails (default
    /// [`DEFAULT_MAX_QUEUE_LEN`]).
    pub fn max_queue_len(mut self, max: usize) -> Self {
        self.config.max_queue_len = max;
        self
    }

    /// Most known workers; gone workers are forgotten to make room, and a registration
    /// beyond it is refused as unavailable (default [`DEFAULT_MAX_WORKERS`]).
    pub fn max_workers(mut self, max: usize) -> Self {
        self.config.max_workers = max;
        self
    }

    /// How many ended tasks keep their state, result and progress; the oldest are
    /// forgotten first (default [`DEFAULT_MAX_FINISHED_TASKS`]).
    pub fn max_finished_tasks(mut self, max: usize) -> Self {
        self.config.max_finished_tasks = max;
        self
    }

    /// How many progress updates, and how many other events, are kept per task; older
    /// ones are dropped (default [`DEFAULT_PROGRESS_HISTORY`]).
    pub fn progress_history(mut self, max: usize) -> Self {
        self.config.progress_history = max;
        self
    }

    /// Capacity of each worker's command channel, at least 1 (default
    /// [`DEFAULT_COMMAND_CAPACITY`]). A cancel that does not fit still reaches the
    /// worker through its heartbeat reply.
    pub fn command_capacity(mut self, capacity: usize) -> Self {
        self.config.command_capacity = capacity;
        self
    }

    /// Where the state lives (default [`Storage::Memory`](crate::Storage::Memory)).
    /// With [`Storage::Redis`](crate::Storage::Redis) (feature `redis`), every
    /// orchestrator built on the same server and prefix, in any process, serves one
    /// fleet: tasks, queues, claims, workers, tokens and rate limits are shared. The
    /// connection opens on first use; a storage that cannot be reached fails the
    /// operations (`503` to workers, a network error to the host) until it can.
    pub fn storage(mut self, storage: crate::Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Builds the orchestrator.
    pub fn build(self) -> Orchestrator {
        let (progress_tx, _) = broadcast::channel(PROGRESS_BROADCAST_CAPACITY);
        let (event_tx, _) = broadcast::channel(PROGRESS_BROADCAST_CAPACITY);
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let storage = self.storage;
        Orchestrator {
            inner: Arc::new_cyclic(|_me| Inner {
                #[cfg(feature = "redis")]
                redis: match &storage {
                    crate::Storage::Redis { url, prefix } => {
                        Some(crate::redis::Redis::new(url, prefix, _me.clone()))
                    }
                    crate::Storage::Memory => None,
                },
                config: self.config,
                state: Mutex::new(State::default()),
                work: Notify::new(),
                events: Notify::new(),
                progress_tx,
                event_tx,
                contracts: rxon_schema::ContractCache::default(),
                reaper: Mutex::new(None),
            }),
        }
    }
}
