//! The Redis storage: the orchestrator's shared state in one Redis server, so that
//! several listener processes (on several machines) serve one fleet.
//!
//! Every step of the protocol that changes state is one Lua script (`lua/*.lua`, each
//! with `lua/common.lua` in front), so it is atomic whichever process runs it and
//! however many run it at once: enqueue, claim, apply a result, cancel, register,
//! heartbeat, record a report, expire leases, reap. What a script cannot decide (a
//! worker's input schema, resource requirements) is decided here first, and the
//! claim script then takes the task only if it is still queued and the worker's
//! catalog and state are still the ones the choice was made with.
//!
//! Wake-ups cross processes by pub/sub: an enqueue or requeue publishes on
//! `{prefix}:work`, any other change on `{prefix}:ev`, a cancel on `{prefix}:cmd` (to the
//! process holding the worker's command channel), progress and events on
//! `{prefix}:prog` / `{prefix}:evt`. A process that loses its subscription wakes every
//! waiter when it is back, so nothing waits on a message it missed.
//!
//! Keys (`P` the prefix): `P:t:{task}` (hash), `P:tp:{task}` / `P:te:{task}`
//! (progress / events), `P:q:{type}` (queue, sorted by enqueue sequence), `P:qtypes`,
//! `P:leases`, `P:job:{job}`, `P:ended`, `P:n` (counters), `P:w:{worker}` (hash),
//! `P:wc:{worker}` / `P:wx:{worker}` (claimed tasks / pending cancels), `P:workers`,
//! `P:alive` (workers by last contact), `P:tok:{digest}` / `P:rt:{digest}` (issued
//! and refresh tokens, expiring with them), `P:own:{digest}` (who registered with a
//! token), `P:rl:{key}` (rate-limit windows), `P:park:{worker}` (its parked polls, by
//! the end of their wait). Tokens are keyed by their SHA-256, and an issued token's
//! root credential is kept as a digest too: no token is stored in the clear, but anyone
//! who can read the server can test guesses of a static credential against its digest
//! offline. Use high-entropy static credentials, and keep Redis private.
//!
//! Times are milliseconds since the Unix epoch from the process's clock: processes
//! on several machines need synchronised clocks (NTP) for leases and deadlines.

mod handler;

use super::store::{self, Catalog, MAX_SCAN, Refusal, Verdict};
use super::{CancelOutcome, Inner, Placement, TaskState, WorkerInfo, WorkerStatus};
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, RedisError, Script};
use futures_util::StreamExt;
use rxon_core::matching::ResourceRequirements;
use rxon_core::{
    HandlerError, ProgressUpdatePayload, Result, RxonError, SkillInfo, TaskPayload, TaskResult,
    TaskStatus, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The version of the layout of the keys; an orchestrator refuses a server holding
/// another one.
const FORMAT: &str = "1";
/// Attempts of one claim that lose the chosen task to another worker before it
/// yields between attempts, and the longest it keeps trying.
const MAX_CLAIM_ATTEMPTS: usize = 16;
const MAX_CLAIM_TIME: Duration = Duration::from_millis(100);
/// Most leases expired, and workers reaped, by one script run.
const REAP_BATCH: usize = 1_000;
/// Bounds on one connection attempt and one command.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection waits for its subscription before it is used anyway.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the subscription's connection is checked.
const PUBSUB_PING: Duration = Duration::from_secs(5);
/// The channels each process subscribes to.
const CHANNELS: [&str; 6] = ["work", "ev", "cmd", "gone", "prog", "evt"];

type R<T> = std::result::Result<T, RedisError>;

/// The Redis storage of one orchestrator.
pub(crate) struct Redis {
    client: std::result::Result<::redis::Client, String>,
    prefix: String,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    /// This orchestrator's id: its own progress and events are not taken back from
    /// pub/sub.
    origin: String,
    /// Workers' registrations and compiled catalogs, by catalog version.
    known: Mutex<HashMap<String, (String, Arc<Known>)>>,
    subscriber: Mutex<Option<tokio::task::AbortHandle>>,
    me: Weak<Inner>,
    /// Numbers this process's polls (their marks in `P:park:{worker}`).
    polls: std::sync::atomic::AtomicU64,
}

/// What a worker said of itself at registration (and in heartbeats with a catalog).
pub(super) struct Known {
    pub(super) registration: WorkerRegistration,
    pub(super) catalog: Catalog,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let sub = self.subscriber.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = sub.take() {
            handle.abort();
        }
    }
}

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!(concat!("lua/", $name, ".lua"))
        ))
    };
}

pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) claim: Script,
    pub(super) take: Script,
    pub(super) result: Script,
    pub(super) cancel: Script,
    pub(super) register: Script,
    pub(super) heartbeat: Script,
    pub(super) poll: Script,
    pub(super) record: Script,
    pub(super) expire: Script,
    pub(super) reap: Script,
    pub(super) misc: Script,
}

pub(super) fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| Scripts {
        enqueue: script!("enqueue"),
        claim: script!("claim"),
        take: script!("take"),
        result: script!("result"),
        cancel: script!("cancel"),
        register: script!("register"),
        heartbeat: script!("heartbeat"),
        poll: script!("poll"),
        record: script!("record"),
        expire: script!("expire"),
        reap: script!("reap"),
        misc: script!("misc"),
    })
}

/// The process's clock in Unix milliseconds, advancing with Tokio's clock (so a
/// paused test clock moves it too).
pub(super) fn now_ms() -> i64 {
    let (at, ms) = anchor();
    ms.saturating_add(millis(Instant::now().saturating_duration_since(*at)))
}

fn anchor() -> &'static (Instant, i64) {
    static A: OnceLock<(Instant, i64)> = OnceLock::new();
    A.get_or_init(|| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (Instant::now(), millis(unix))
    })
}

pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The instant of the Unix milliseconds `ms` on this process's clock.
fn instant_of(ms: i64) -> Instant {
    let now = Instant::now();
    let delta = now_ms().saturating_sub(ms);
    let d = Duration::from_millis(delta.unsigned_abs());
    if delta >= 0 {
        now.checked_sub(d).unwrap_or(now)
    } else {
        now.checked_add(d).unwrap_or(now)
    }
}

/// The hex SHA-256 of a secret: how tokens appear in keys.
pub(super) fn digest(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh unguessable name: `{kind}-` and 32 random hex digits.
pub(super) fn fresh_name(kind: &str) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Not expected: the system's random source failed. Fall back to a keyed hash.
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::UNIX_EPOCH
                    .elapsed()
                    .unwrap_or_default()
                    .as_nanos(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}-{hex}")
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising the crate's own message types does not fail (string keys only).
    serde_json::to_string(value).unwrap_or_default()
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> R<T> {
    serde_json::from_str(s).map_err(|e| {
        RedisError::from((
            ::redis::ErrorKind::Parse,
            "unreadable record in the storage",
            format!("{what}: {e}"),
        ))
    })
}

/// Whether a failure is of the connection (dropped, refused, timed out), which the
/// connection manager repairs by itself: a read may be asked again.
pub(crate) fn transient(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// A storage failure, for the worker-facing operations: the details go to the log,
/// not to the peer.
pub(super) fn unavailable(e: RedisError) -> HandlerError {
    tracing::warn!(error = %e, "storage unavailable");
    HandlerError::unavailable("storage unavailable, retry later")
}

/// A storage failure, for the host operations.
pub(super) fn host_error(e: RedisError) -> RxonError {
    RxonError::network(format!("storage unavailable: {e}"))
}

impl Redis {
    pub(crate) fn new(url: &str, prefix: &str, me: Weak<Inner>) -> Redis {
        let client = ::redis::Client::open(url)
            .map_err(|e| format!("invalid Redis URL {:?}: {e}", crate::storage::redacted(url)));
        Redis {
            client,
            prefix: prefix.to_owned(),
            conn: tokio::sync::OnceCell::new(),
            origin: fresh_name("o"),
            known: Mutex::new(HashMap::new()),
            subscriber: Mutex::new(None),
            me,
            polls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A poll id no other poll of any process has.
    pub(super) fn poll_id(&self) -> String {
        let n = self
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n}", self.origin)
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// The connection (connecting, checking the key layout and subscribing on first
    /// use; a failed first use is retried by the next).
    pub(super) async fn con(&self) -> R<ConnectionManager> {
        self.conn
            .get_or_try_init(|| async {
                let client = self.client.clone().map_err(|e| {
                    RedisError::from((::redis::ErrorKind::Client, "invalid storage", e))
                })?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(6)
                    .set_max_delay(Duration::from_secs(2));
                let mut con = ConnectionManager::new_with_config(client.clone(), config).await?;
                let format_key = self.key(&["format"]);
                let _: () = ::redis::cmd("SET")
                    .arg(&format_key)
                    .arg(FORMAT)
                    .arg("NX")
                    .query_async(&mut con)
                    .await?;
                let found: Option<String> = con.get(&format_key).await?;
                if found.as_deref() != Some(FORMAT) {
                    return Err(RedisError::from((
                        ::redis::ErrorKind::Client,
                        "storage layout mismatch",
                        format!(
                            "{format_key} is {found:?}; this orchestrator writes layout {FORMAT}"
                        ),
                    )));
                }
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                let handle = tokio::spawn(subscribe(
                    client,
                    self.prefix.clone(),
                    self.origin.clone(),
                    self.me.clone(),
                    ready_tx,
                ));
                if let Some(old) = self
                    .subscriber
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(handle.abort_handle())
                {
                    old.abort();
                }
                // Wake-ups published from now on reach this process.
                let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, ready_rx).await;
                Ok(con)
            })
            .await
            .cloned()
    }

    /// The registration and compiled catalog of `worker_id` at catalog version `cv`.
    pub(super) async fn known(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        worker_id: &str,
        cv: &str,
    ) -> R<Arc<Known>> {
        if let Some((v, k)) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(worker_id)
            && v == cv
        {
            return Ok(k.clone());
        }
        let (reg, skills): (Option<String>, Option<String>) = con
            .hmget(self.key(&["w", worker_id]), &["reg", "skills"])
            .await?;
        let mut registration: WorkerRegistration =
            parse("registration", reg.as_deref().unwrap_or("{}"))?;
        let skills: Vec<SkillInfo> = parse("catalog", skills.as_deref().unwrap_or("[]"))?;
        registration.supported_skills = Vec::new();
        // Compiled through the orchestrator's cache; a catalog the registration
        // accepted compiles again.
        let mut catalog = Catalog::default();
        for skill in skills {
            if let Ok(c) = inner.contracts.get_or_compile(&skill)
                && !c.is_empty()
            {
                catalog.contracts.insert(skill.name.clone(), c);
            }
            catalog.skills.push(skill);
        }
        let known = Arc::new(Known {
            registration,
            catalog,
        });
        let mut cache = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= inner.config.max_workers.max(1) && !cache.contains_key(worker_id) {
            cache.clear();
        }
        cache.insert(worker_id.to_owned(), (cv.to_owned(), known.clone()));
        Ok(known)
    }

    // ----- the host side -----

    pub(crate) async fn enqueue(
        &self,
        inner: &Inner,
        task: TaskPayload,
        deadline: Option<Duration>,
        requirements: ResourceRequirements,
    ) -> Result<()> {
        store::check_new_task(&task)?;
        let mut con = self.con().await.map_err(host_error)?;
        let now = now_ms();
        let deadline =
            deadline.map_or(String::new(), |d| now.saturating_add(millis(d)).to_string());
        let requirements = if requirements == ResourceRequirements::default() {
            String::new()
        } else {
            json(&requirements)
        };
        let answer: String = scripts()
            .enqueue
            .arg(&self.prefix)
            .arg(&task.task_id)
            .arg(&task.task_type)
            .arg(&task.job_id)
            .arg(json(&task))
            .arg(requirements)
            .arg(deadline)
            .arg(now)
            .arg(inner.config.max_queue_len)
            .invoke_async(&mut con)
            .await
            .map_err(host_error)?;
        match answer.as_str() {
            "duplicate" => Err(store::duplicate_task(&task.task_id)),
            "full" => Err(store::queue_full(&inner.config)),
            _ => {
                inner.work.notify_waiters();
                inner.events.notify_waiters();
                Ok(())
            }
        }
    }

    pub(crate) async fn cancel(&self, inner: &Inner, task_id: &str) -> Result<CancelOutcome> {
        let mut con = self.con().await.map_err(host_error)?;
        let answer: Vec<String> = scripts()
            .cancel
            .arg(&self.prefix)
            .arg(task_id)
            .arg(inner.config.max_finished_tasks)
            .invoke_async(&mut con)
            .await
            .map_err(host_error)?;
        let outcome = match answer.as_slice() {
            [o] if o == "dequeued" => CancelOutcome::Dequeued,
            [o, holder, job] if o == "signalled" => {
                let command = WorkerCommand::cancel_task(task_id, Some(job.clone()));
                let message = format!("{holder}\n{}", json(&command));
                // The cancel is applied and in the worker's heartbeat replies whatever
                // becomes of this message.
                let sent: R<i64> = con.publish(self.key(&["cmd"]), message).await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "a cancel's message to the holder's process was not sent; the heartbeat reply carries it");
                }
                CancelOutcome::Signalled {
                    worker_id: holder.clone(),
                }
            }
            [o] if o == "finished" => CancelOutcome::AlreadyFinished,
            _ => return Err(RxonError::invalid_input(format!("no task {task_id:?}"))),
        };
        inner.events.notify_waiters();
        Ok(outcome)
    }

    pub(crate) async fn job_tasks(&self, job_id: &str) -> Result<Vec<String>> {
        let mut con = self.con().await.map_err(host_error)?;
        con.zrange(self.key(&["job", job_id]), 0, -1)
            .await
            .map_err(host_error)
    }

    /// A task's phase, holder, result, status and payload.
    async fn task_fields(&self, task_id: &str) -> R<TaskFields> {
        let mut con = self.con().await?;
        type Five = [Option<String>; 5];
        let [ph, h, res, rs, p]: Five = con
            .hmget(self.key(&["t", task_id]), &["ph", "h", "res", "rs", "p"])
            .await?;
        Ok(TaskFields {
            phase: ph,
            holder: h,
            result: res,
            status: rs,
            payload: p,
        })
    }

    pub(crate) async fn task_state(&self, task_id: &str) -> R<Option<TaskState>> {
        Ok(self.task_fields(task_id).await?.state())
    }

    pub(crate) async fn task_result(&self, task_id: &str) -> R<Option<TaskResult>> {
        self.task_fields(task_id).await?.result()
    }

    /// What `wait_result` waits for: `Some` once the task has a result or can get
    /// none.
    pub(crate) async fn result_state(&self, task_id: &str) -> R<Option<Result<TaskResult>>> {
        let f = self.task_fields(task_id).await?;
        if f.phase.is_none() {
            return Ok(Some(Err(RxonError::invalid_input(format!(
                "no task {task_id:?}"
            )))));
        }
        if let Some(r) = f.result()? {
            return Ok(Some(Ok(r)));
        }
        if f.phase.as_deref() == Some("c") && f.holder.is_none() {
            return Ok(Some(Err(RxonError::invalid_input(format!(
                "task {task_id:?} was cancelled and will get no result"
            )))));
        }
        Ok(None)
    }

    pub(crate) async fn reports<T: serde::de::DeserializeOwned>(
        &self,
        list: &str,
        task_id: &str,
    ) -> R<Vec<T>> {
        let mut con = self.con().await?;
        let items: Vec<String> = con.lrange(self.key(&[list, task_id]), 0, -1).await?;
        items.iter().map(|s| parse("report", s)).collect()
    }

    /// A counter of `P:n`.
    pub(crate) async fn counter(&self, name: &str) -> R<u64> {
        let mut con = self.con().await?;
        let v: Option<i64> = con.hget(self.key(&["n"]), name).await?;
        Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
    }

    /// The ids of every known worker.
    async fn worker_ids(&self, con: &mut ConnectionManager) -> R<Vec<String>> {
        let mut ids: Vec<String> = con.smembers(self.key(&["workers"])).await?;
        ids.sort();
        Ok(ids)
    }

    /// Every active worker with its registration and catalog.
    async fn active_workers(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
    ) -> R<Vec<(String, Arc<Known>)>> {
        let ids = self.worker_ids(con).await?;
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.hmget(self.key(&["w", id]), &["st", "cv"]);
        }
        let states: Vec<(Option<String>, Option<String>)> = pipe.query_async(con).await?;
        let mut out = Vec::new();
        for (id, (st, cv)) in ids.into_iter().zip(states) {
            if st.as_deref() == Some("a") {
                let known = self
                    .known(inner, con, &id, cv.as_deref().unwrap_or(""))
                    .await?;
                out.push((id, known));
            }
        }
        Ok(out)
    }

    /// A queued task's payload and requirements; `None` when it is not queued.
    async fn queued_task(
        &self,
        con: &mut ConnectionManager,
        task_id: &str,
    ) -> R<Option<(TaskPayload, ResourceRequirements, i64)>> {
        let (ph, p, r, enq): (Option<String>, Option<String>, Option<String>, Option<i64>) = con
            .hmget(self.key(&["t", task_id]), &["ph", "p", "r", "enq"])
            .await?;
        if ph.as_deref() != Some("q") {
            return Ok(None);
        }
        let payload = parse("task", p.as_deref().unwrap_or("{}"))?;
        let requirements = requirements_of(r.as_deref())?;
        Ok(Some((payload, requirements, enq.unwrap_or(0))))
    }

    fn verdicts(
        workers: &[(String, Arc<Known>)],
        task: &TaskPayload,
        requirements: &ResourceRequirements,
    ) -> (usize, Vec<(String, Refusal)>) {
        let mut runnable = 0;
        let mut refused = Vec::new();
        for (id, known) in workers {
            match store::verdict(&known.catalog, &known.registration, task, requirements) {
                None => {}
                Some(None) => runnable += 1,
                Some(Some(r)) => refused.push((id.clone(), r)),
            }
        }
        (runnable, refused)
    }

    pub(crate) async fn placement(&self, inner: &Inner, task_id: &str) -> R<Option<Placement>> {
        let mut con = self.con().await?;
        let Some((task, requirements, _)) = self.queued_task(&mut con, task_id).await? else {
            return Ok(None);
        };
        let workers = self.active_workers(inner, &mut con).await?;
        let (runnable, refused) = Self::verdicts(&workers, &task, &requirements);
        Ok(Some(store::placement_of(runnable, refused)))
    }

    pub(crate) async fn workers(&self, inner: &Inner) -> R<Vec<WorkerInfo>> {
        let mut con = self.con().await?;
        let ids = self.worker_ids(&mut con).await?;
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.hmget(
                self.key(&["w", id]),
                &["st", "seen", "proto", "reg", "skills", "hash", "hb"],
            )
            .lrange(self.key(&["wc", id]), 0, -1);
        }
        type Fields = (
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<(Fields, Vec<String>)> = pipe.query_async(&mut con).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, ((st, seen, proto, reg, skills, hash, hb), current)) in ids.into_iter().zip(rows) {
            if st.is_none() {
                continue; // forgotten since the list was read
            }
            let mut registration: WorkerRegistration =
                parse("registration", reg.as_deref().unwrap_or("{}"))?;
            registration.supported_skills = parse("catalog", skills.as_deref().unwrap_or("[]"))?;
            let last_heartbeat = hb.as_deref().map(|h| parse("heartbeat", h)).transpose()?;
            out.push(WorkerInfo {
                skills: registration
                    .supported_skills
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
                worker_id: id,
                registration,
                last_heartbeat,
                skills_hash: hash,
                protocol: rxon_core::Protocol::from_header(proto.as_deref()),
                status: if st.as_deref() == Some("a") {
                    WorkerStatus::Active
                } else {
                    WorkerStatus::Gone
                },
                current_tasks: current,
                last_seen: instant_of(seen.unwrap_or(0)),
                command_channel: false,
            });
        }
        let st = inner.lock();
        for w in &mut out {
            w.command_channel = st
                .channels
                .get(&w.worker_id)
                .is_some_and(|tx| !tx.is_closed());
        }
        Ok(out)
    }

    /// Reaps silent workers, requeues lapsed claims and (one process per round) ends
    /// unplaceable tasks; returns the gone workers.
    pub(crate) async fn reap(&self, inner: &Inner) -> R<Vec<String>> {
        let mut con = self.con().await?;
        let now = now_ms();
        let mut gone: Vec<String> = scripts()
            .reap
            .arg(&self.prefix)
            .arg(now)
            .arg(millis(inner.config.worker_ttl))
            .arg(REAP_BATCH)
            .invoke_async(&mut con)
            .await?;
        let lapsed: i64 = scripts()
            .expire
            .arg(&self.prefix)
            .arg(now)
            .arg(REAP_BATCH)
            .invoke_async(&mut con)
            .await?;
        let ended = self.end_unplaceable(inner, &mut con, now).await?;
        gone.sort();
        {
            let mut st = inner.lock();
            for id in &gone {
                st.channels.remove(id);
            }
        }
        if !gone.is_empty() || lapsed > 0 || ended > 0 {
            inner.work.notify_waiters();
            inner.events.notify_waiters();
        }
        Ok(gone)
    }

    /// Ends the tasks every active worker offering their type refuses, once they have
    /// waited `unplaceable_after` (at most [`MAX_SCAN`] per type). One process per
    /// reaper round does it (the others find the round taken).
    async fn end_unplaceable(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        now: i64,
    ) -> R<usize> {
        let lock = self.key(&["lock", "unplaceable"]);
        let round = millis(inner.config.unplaceable_after.min(Duration::from_secs(1))).max(1);
        let taken: Option<String> = ::redis::cmd("SET")
            .arg(&lock)
            .arg(&self.origin)
            .arg("NX")
            .arg("PX")
            .arg(round)
            .query_async(con)
            .await?;
        if taken.is_none() {
            let holder: Option<String> = con.get(&lock).await?;
            if holder.as_deref() != Some(self.origin.as_str()) {
                return Ok(0);
            }
        }
        let types: Vec<String> = con.smembers(self.key(&["qtypes"])).await?;
        let old_enough = now.saturating_sub(millis(inner.config.unplaceable_after));
        let mut workers = None;
        let mut ended = 0;
        for ty in types {
            let ids: Vec<String> = con
                .zrange(self.key(&["q", &ty]), 0, (MAX_SCAN - 1) as isize)
                .await?;
            for id in ids {
                let Some((task, requirements, enq)) = self.queued_task(con, &id).await? else {
                    continue;
                };
                if enq > old_enough {
                    continue;
                }
                if workers.is_none() {
                    workers = Some(self.active_workers(inner, con).await?);
                }
                let ws = workers.as_deref().unwrap_or_default();
                let (0, refused) = Self::verdicts(ws, &task, &requirements) else {
                    continue;
                };
                let Some(failure) = store::unplaceable_failure(&task, &refused) else {
                    continue;
                };
                let done: i64 = scripts()
                    .misc
                    .arg(&self.prefix)
                    .arg("unplaceable")
                    .arg(&id)
                    .arg(json(&failure))
                    .arg(inner.config.max_finished_tasks)
                    .invoke_async(con)
                    .await?;
                ended += usize::try_from(done).unwrap_or(0);
            }
        }
        Ok(ended)
    }
}

fn requirements_of(r: Option<&str>) -> R<ResourceRequirements> {
    match r {
        None | Some("") => Ok(ResourceRequirements::default()),
        Some(s) => parse("requirements", s),
    }
}

/// The fields of a task record the host reads.
struct TaskFields {
    phase: Option<String>,
    holder: Option<String>,
    result: Option<String>,
    status: Option<String>,
    payload: Option<String>,
}

impl TaskFields {
    fn state(&self) -> Option<TaskState> {
        Some(match self.phase.as_deref()? {
            "q" => TaskState::Queued,
            "r" => TaskState::Running {
                worker_id: self.holder.clone().unwrap_or_default(),
            },
            "f" => TaskState::Finished(
                self.status
                    .as_deref()
                    .map_or(TaskStatus::Failure, TaskStatus::from),
            ),
            "x" => TaskState::Finished(TaskStatus::Failure),
            _ => TaskState::Cancelled,
        })
    }

    fn result(&self) -> R<Option<TaskResult>> {
        if let Some(r) = &self.result {
            return parse("result", r).map(Some);
        }
        if self.phase.as_deref() == Some("x") {
            let task: TaskPayload = parse("task", self.payload.as_deref().unwrap_or("{}"))?;
            let holder = self.holder.as_deref().unwrap_or_default();
            return Ok(Some(store::late_failure(&task, holder)));
        }
        Ok(None)
    }
}

/// The verdict a result script answered.
fn verdict_of(answer: &str) -> Verdict {
    match answer {
        "accepted" => Verdict::Accepted,
        "duplicate_other" => Verdict::DuplicateOther,
        "late" | "late_now" => Verdict::Late,
        "unassigned" => Verdict::Unassigned,
        "cancelled" => Verdict::Cancelled,
        "mismatch" => Verdict::Mismatch,
        _ => Verdict::Unknown,
    }
}

/// Follows this orchestrator's channels until it is dropped, subscribing again
/// (with a bounded backoff) whenever the connection is lost.
async fn subscribe(
    client: ::redis::Client,
    prefix: String,
    origin: String,
    me: Weak<Inner>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(20);
    loop {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await;
        if let Ok(Ok(mut pubsub)) = connected {
            let mut subscribed = true;
            for c in CHANNELS {
                let sub = tokio::time::timeout(
                    RESPONSE_TIMEOUT,
                    pubsub.subscribe(format!("{prefix}:{c}")),
                );
                if !matches!(sub.await, Ok(Ok(()))) {
                    subscribed = false;
                    break;
                }
            }
            if subscribed {
                backoff = Duration::from_millis(20);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                // Anything may have changed while no message could arrive.
                match me.upgrade() {
                    Some(inner) => {
                        inner.work.notify_waiters();
                        inner.events.notify_waiters();
                    }
                    None => return,
                }
                let (mut sink, mut messages) = pubsub.split();
                let mut pings = tokio::time::interval(PUBSUB_PING);
                pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                pings.tick().await;
                loop {
                    tokio::select! {
                        msg = messages.next() => {
                            let Some(msg) = msg else { break };
                            let Some(inner) = me.upgrade() else { return };
                            let channel = msg.get_channel_name();
                            let kind = channel.rsplit(':').next().unwrap_or_default();
                            let payload: String = msg.get_payload().unwrap_or_default();
                            deliver(&inner, &origin, kind, &payload);
                        }
                        _ = pings.tick() => {
                            // A half-open connection would leave this process deaf to
                            // every wake-up: one unanswered ping and it subscribes again.
                            let pong = tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<String>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
            }
        }
        if me.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Acts on one pub/sub message in this process.
fn deliver(inner: &Inner, origin: &str, kind: &str, payload: &str) {
    match kind {
        "work" => {
            inner.work.notify_waiters();
            inner.events.notify_waiters();
        }
        "ev" => inner.events.notify_waiters(),
        "cmd" => {
            let Some((worker_id, command)) = payload.split_once('\n') else {
                return;
            };
            let Ok(command) = serde_json::from_str::<WorkerCommand>(command) else {
                return;
            };
            inner.lock().send_command(worker_id, command);
        }
        "gone" => {
            inner.lock().channels.remove(payload);
            inner.events.notify_waiters();
        }
        "prog" | "evt" => {
            let Some((from, item)) = payload.split_once('\n') else {
                return;
            };
            if from == origin {
                return;
            }
            // No subscriber is not an error.
            if kind == "prog" {
                if let Ok(p) = serde_json::from_str::<ProgressUpdatePayload>(item) {
                    let _ = inner.progress_tx.send(p);
                }
            } else if let Ok(e) = serde_json::from_str::<WorkerEventPayload>(item) {
                let _ = inner.event_tx.send(e);
            }
        }
        _ => {}
    }
}

pub(crate) use self::host_error as storage_error;
