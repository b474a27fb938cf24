//! The worker-facing side: `impl Handler for Orchestrator`.

use super::auth::{self, Credential};
use super::state::State;
use super::store::Catalog;
use super::{Inner, MAX_SKILLS, Orchestrator, Waiting};
use rxon_core::validate::validate_identifier;
use rxon_core::{
    BoxFuture, CommandReceiver, Handler, HandlerError, HandlerResult, Heartbeat, HeartbeatReply,
    ProgressUpdatePayload, RegisterReply, RequestContext, ResultOutcome, SkillInfo, TaskPayload,
    TaskResult, TokenResponse, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// A worker's command channel, as handed to a listener.
pub(super) struct ChannelReceiver {
    rx: crate::state::CommandReceiver,
    inner: Weak<Inner>,
    worker_id: String,
}

impl ChannelReceiver {
    pub(super) fn new(
        rx: crate::state::CommandReceiver,
        orch: &Orchestrator,
        worker_id: String,
    ) -> Self {
        ChannelReceiver {
            rx,
            inner: Arc::downgrade(&orch.inner),
            worker_id,
        }
    }
}

impl CommandReceiver for ChannelReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Option<WorkerCommand>> {
        Box::pin(async { self.rx.recv().await.map(|command| *command) })
    }

    /// A cancel the listener could not write goes back into the worker's heartbeat
    /// list (and so into its next channel), unless the task has moved on.
    fn undelivered(&mut self, command: WorkerCommand) {
        let (Some(inner), Some(task_id)) = (self.inner.upgrade(), command.task_id) else {
            return;
        };
        #[cfg(feature = "redis")]
        if let Some(r) = inner.redis.as_ref() {
            return r.undelivered(self.worker_id.clone(), task_id);
        }
        let mut st = inner.lock();
        let still_held = st
            .store
            .workers
            .get(&self.worker_id)
            .is_some_and(|w| w.current.contains(&task_id));
        if let Some(w) = st.store.workers.get_mut(&self.worker_id)
            && still_held
            && !w.pending_cancels.contains(&task_id)
        {
            w.pending_cancels.push(task_id);
        }
    }
}

/// A listener dropping the receiver closes the channel; waiters on channel state
/// (`wait_for_no_command_channel`) hear of it.
impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        self.rx.close();
        if let Some(inner) = self.inner.upgrade() {
            inner.events.notify_waiters();
        }
    }
}

/// Counts a poll as waiting while it exists, and uncounts it even when the poll future
/// is dropped; the end of a poll is contact from its worker.
struct PollGuard<'a> {
    inner: &'a Inner,
    worker_id: &'a str,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        {
            let mut st = self.inner.lock();
            st.pending_polls = st.pending_polls.saturating_sub(1);
            if let Some(w) = st.store.workers.get_mut(self.worker_id) {
                w.pending_polls = w.pending_polls.saturating_sub(1);
                if w.is_active() {
                    w.last_seen = Instant::now();
                }
            }
        }
        self.inner.events.notify_waiters();
    }
}

impl Inner {
    /// Waits for work: tries `attempt` at once and again on every wake-up of the work
    /// signal (a requeue; any change on the Redis storage) or of the waiters `listen`
    /// joins before each try (in memory: the worker's skills, woken by an enqueue of
    /// one of them, and the worker's own key, by its registration or heartbeat), until
    /// it yields a task, fails, or `wait` ends (`Ok(None)`).
    pub(super) async fn park<'a, F>(
        &'a self,
        wait: Duration,
        mut listen: impl FnMut() -> Option<Waiting<'a>>,
        mut attempt: impl FnMut() -> F,
    ) -> HandlerResult<Option<TaskPayload>>
    where
        F: std::future::Future<Output = HandlerResult<Option<TaskPayload>>>,
    {
        let deadline = Instant::now().checked_add(wait);
        loop {
            // The work signal is listened to before `listen` looks at the worker: a
            // change announced in between is heard (a `Notified` hears `notify_waiters`
            // from its creation on).
            let work = Box::pin(self.work.notified());
            let waiting = listen();
            let mut notified: Vec<_> = std::iter::once(work)
                .chain(
                    waiting
                        .iter()
                        .flat_map(Waiting::notifies)
                        .map(|n| Box::pin(n.notified())),
                )
                .collect();
            // Register interest before looking at the queues, so a wake-up in between
            // is not missed.
            for n in &mut notified {
                n.as_mut().enable();
            }
            if let Some(task) = attempt().await? {
                return Ok(Some(task));
            }
            let woken = std::future::poll_fn(|cx| {
                if notified.iter_mut().any(|n| n.as_mut().poll(cx).is_ready()) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            });
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, woken).await.is_err() {
                        return Ok(None);
                    }
                }
                None => woken.await,
            }
        }
    }
}

/// Most `current_tasks` entries of one heartbeat looked at.
const MAX_LISTED: usize = 4_096;

pub(super) fn bad_request(e: rxon_core::RxonError) -> HandlerError {
    HandlerError::bad_request(e.message())
}

/// Checks a skill list from a worker (at most [`MAX_SKILLS`], valid names, schemas
/// that compile) and returns it without repeated names, with its contracts compiled
/// (through the orchestrator's cache: a fleet's one catalog is compiled once).
pub(super) fn catalog(inner: &Inner, skills: Vec<SkillInfo>) -> HandlerResult<Catalog> {
    if skills.len() > MAX_SKILLS {
        return Err(HandlerError::bad_request(format!(
            "too many supported_skills (at most {MAX_SKILLS})"
        )));
    }
    let mut out = Catalog::default();
    for skill in skills {
        validate_identifier(&skill.name, "skill").map_err(bad_request)?;
        if out.skills.iter().any(|k| k.name == skill.name) {
            continue;
        }
        let contract = inner
            .contracts
            .get_or_compile(&skill)
            .map_err(|e| HandlerError::bad_request(e.to_string()))?;
        if !contract.is_empty() {
            out.contracts.insert(skill.name.clone(), contract);
        }
        out.skills.push(skill);
    }
    // Kept for the worker's whole life: no spare capacity from the pushes.
    out.skills.shrink_to_fit();
    Ok(out)
}

/// Checks a list of skill names (`available_skills`): bounded, valid names.
pub(super) fn skill_names(names: &[String]) -> HandlerResult<()> {
    if names.len() > MAX_SKILLS {
        return Err(HandlerError::bad_request(format!(
            "too many skills listed (at most {MAX_SKILLS})"
        )));
    }
    for name in names {
        validate_identifier(name, "skill").map_err(bad_request)?;
    }
    Ok(())
}

/// Checks a heartbeat before anything is recorded (a bad heartbeat changes nothing),
/// its catalog compiled; `None` for an empty heartbeat (a liveness ping, or a peer's
/// protocol probe).
pub(super) fn checked_heartbeat(
    inner: &Inner,
    heartbeat: Option<Heartbeat>,
) -> HandlerResult<Option<(Heartbeat, Option<Catalog>)>> {
    let Some(mut heartbeat) = heartbeat else {
        return Ok(None);
    };
    // An empty catalog says nothing new (a 1.0b3 heartbeat without skills, the last
    // `offline` one).
    let catalog = match heartbeat.supported_skills.take() {
        Some(skills) if !skills.is_empty() => Some(catalog(inner, skills)?),
        _ => None,
    };
    if let Some(names) = &heartbeat.available_skills {
        skill_names(names)?;
    }
    heartbeat.current_tasks.truncate(MAX_LISTED);
    Ok(Some((heartbeat, catalog)))
}

/// Checks an event's sender and type; a progress event is returned as progress.
pub(super) fn checked_event(
    event: &WorkerEventPayload,
) -> HandlerResult<Option<ProgressUpdatePayload>> {
    validate_identifier(&event.worker_id, "worker_id").map_err(bad_request)?;
    // Any name a skill may declare (dots, colons…), bounded and printable.
    let kind = &event.event_type;
    if kind.is_empty() || kind.len() > 256 || kind.chars().any(char::is_control) {
        return Err(HandlerError::bad_request(format!(
            "invalid event_type {:?}: use 1-256 printable characters",
            shown(kind)
        )));
    }
    if event.event_type != rxon_core::constants::EVENT_TYPE_PROGRESS {
        return Ok(None);
    }
    event.as_progress().map(Some).ok_or_else(|| {
        HandlerError::bad_request(
            "a progress event needs a numeric payload.progress and a target task",
        )
    })
}

/// The refusal of an event whose payload its skill's `events_schema` rejects.
pub(super) fn check_event_payload(
    contract: Option<&rxon_schema::Contract>,
    event: &WorkerEventPayload,
) -> HandlerResult<()> {
    if let Some(contract) = contract
        && let Err(v) = contract.check_event(&event.event_type, &event.payload)
    {
        return Err(HandlerError::bad_request(format!(
            "the payload of the {:?} event violates the skill's events_schema: {v}",
            shown(&event.event_type)
        )));
    }
    Ok(())
}

/// At most this many characters of a peer's string in an error message.
pub(super) fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

pub(super) fn not_registered(worker_id: &str) -> HandlerError {
    let shown: String = worker_id.chars().take(64).collect();
    HandlerError::not_found(format!("worker {shown:?} is not registered"))
}

impl Inner {
    /// Authenticates the request and counts it against the rate limit of the key
    /// `key` picks (falling back to the context's worker id, then the token).
    fn admit(
        &self,
        st: &mut State,
        ctx: &RequestContext,
        for_sts: bool,
        key: impl FnOnce(&Credential, &State) -> Option<String>,
    ) -> HandlerResult<Credential> {
        let now = Instant::now();
        let cred = auth::authenticate(&self.config, st, ctx.token.as_deref(), for_sts, now)?;
        if self.config.rate_limit.is_some() {
            let key = key(&cred, st)
                .or_else(|| ctx.worker_id.clone())
                // '~' is not an identifier character: no clash with worker ids.
                .unwrap_or_else(|| format!("~{}", ctx.token.as_deref().unwrap_or_default()));
            auth::rate_limit(&self.config, st, &key, now)?;
        }
        Ok(cred)
    }

    /// Refuses acting as `claimed` when the credential or the verified client
    /// certificate proves a different worker, or when the request is of an older
    /// generation than the one `claimed` registered with (a 1.0b17 worker's messages
    /// are signed; a 1.0b3 request for it would skip the envelope).
    fn act_as(
        &self,
        st: &State,
        cred: &Credential,
        ctx: &RequestContext,
        claimed: &str,
    ) -> HandlerResult<()> {
        auth::check_identity(&self.config, cred, ctx.cert_identity.as_deref(), claimed)?;
        let registered = st
            .store
            .workers
            .get(claimed)
            .filter(|w| w.is_active())
            .map(|w| w.protocol);
        refuse_downgrade(ctx, claimed, registered)
    }
}

/// Refuses a request of an older generation than the one the active worker `claimed`
/// registered with (`registered`).
pub(super) fn refuse_downgrade(
    ctx: &RequestContext,
    claimed: &str,
    registered: Option<rxon_core::Protocol>,
) -> HandlerResult<()> {
    match registered {
        Some(p) if ctx.protocol() < p => Err(HandlerError::forbidden(format!(
            "worker {:?} registered with RXON {p}: its requests must use it (signed), not {}",
            shown(claimed),
            ctx.protocol()
        ))),
        _ => Ok(()),
    }
}

/// Appends `item`, dropping the oldest beyond `max` (none kept when `max` is 0).
pub(super) fn push_bounded<T>(list: &mut std::collections::VecDeque<T>, item: T, max: usize) {
    if max == 0 {
        return;
    }
    while list.len() >= max {
        list.pop_front();
    }
    list.push_back(item);
}

/// The task an event is for: its target (or origin) task, which `event.worker_id`
/// must hold; else, for an event naming only a job, the oldest task of that job the
/// worker holds. Refused (403) when the worker holds no such task, 404 for an unknown
/// task, 400 when the event names no target.
fn event_target(st: &State, event: &WorkerEventPayload) -> HandlerResult<String> {
    let sender = event.worker_id.as_str();
    if let Some(task_id) = event.task_id() {
        let rec = st.store.tasks.get(task_id);
        check_event_task(
            event,
            task_id,
            rec.map(|r| (r.holder(), r.payload.job_id.as_str())),
        )?;
        return Ok(task_id.to_owned());
    }
    let job = event_job(event)?;
    st.store
        .workers
        .get(sender)
        .into_iter()
        .flat_map(|w| &w.current)
        .find(|t| {
            st.store
                .tasks
                .get(*t)
                .is_some_and(|r| r.payload.job_id == *job)
        })
        .cloned()
        .ok_or_else(|| no_task_of_job(sender, job))
}

/// Checks that the sender of an event for `task_id` holds it, and that the task is of
/// the event's job if it names one; `task` is the task's holder and job (`None`: no
/// such task).
pub(super) fn check_event_task(
    event: &WorkerEventPayload,
    task_id: &str,
    task: Option<(Option<&str>, &str)>,
) -> HandlerResult<()> {
    let sender = event.worker_id.as_str();
    let forbidden = |what: String| {
        HandlerError::forbidden(format!("Forbidden: worker {:?} {what}", shown(sender)))
    };
    let Some((holder, job_id)) = task else {
        return Err(HandlerError::not_found(format!(
            "no task {:?}",
            shown(task_id)
        )));
    };
    if holder != Some(sender) {
        return Err(forbidden(format!(
            "does not hold task {:?}",
            shown(task_id)
        )));
    }
    if let Some(job) = &event.target_job_id
        && job != job_id
    {
        return Err(forbidden(format!(
            "holds task {:?}, which is not part of job {:?}",
            shown(task_id),
            shown(job)
        )));
    }
    Ok(())
}

/// The job an event that names no task is for (400 when it names none either).
pub(super) fn event_job(event: &WorkerEventPayload) -> HandlerResult<&str> {
    event
        .target_job_id
        .as_deref()
        .ok_or_else(|| HandlerError::bad_request("the event names no target task or job"))
}

/// The refusal of an event for a job of which its sender holds no task.
pub(super) fn no_task_of_job(sender: &str, job: &str) -> HandlerError {
    HandlerError::forbidden(format!(
        "Forbidden: worker {:?} holds no task of job {:?}",
        shown(sender),
        shown(job)
    ))
}

/// The contract `worker_id` declared for the type of task `task_id`, if any.
fn contract_of<'a>(
    st: &'a State,
    worker_id: &str,
    task_id: &str,
) -> Option<&'a rxon_schema::Contract> {
    let task_type = &st.store.tasks.get(task_id)?.payload.task_type;
    let w = st.store.workers.get(worker_id)?;
    w.reported.catalog.contracts.get(task_type).map(|c| &**c)
}

/// A success whose `data` violates the `output_schema` its worker declared becomes a
/// `CONTRACT_VIOLATION_ERROR` failure (the result is still taken, as the reference
/// does); every other result is unchanged. The same result gives the same failure, so
/// a resent one is a duplicate.
fn held_to_contract(st: &State, result: TaskResult) -> TaskResult {
    if result.status != rxon_core::TaskStatus::Success {
        return result;
    }
    let Some(contract) = contract_of(st, &result.worker_id, &result.task_id) else {
        return result;
    };
    held_to(contract, result)
}

/// [`held_to_contract`] with the contract found.
pub(super) fn held_to(contract: &rxon_schema::Contract, mut result: TaskResult) -> TaskResult {
    if result.status != rxon_core::TaskStatus::Success {
        return result;
    }
    let data = result.data.take().unwrap_or_default();
    match contract.check_output(&data) {
        Ok(()) => result.data = Some(data),
        Err(v) => {
            result.status = rxon_core::TaskStatus::Failure;
            result.error = Some(rxon_core::TaskError::new(
                rxon_core::ErrorCode::ContractViolation,
                format!("the result's data violates the skill's output_schema: {v}"),
            ));
        }
    }
    result
}

impl Inner {
    /// Records a report (progress, event) about `task_id` from `holder` (when known):
    /// it confirms the holder's claim and counts as contact.
    fn record_report(
        &self,
        st: &mut State,
        task_id: &str,
        holder: Option<&str>,
        record: impl FnOnce(&mut super::store::TaskRecord),
    ) -> HandlerResult<()> {
        if let Some(holder) = holder {
            st.store.confirm(holder, task_id);
        }
        let Some(rec) = st.store.tasks.get_mut(task_id) else {
            return Err(HandlerError::not_found(format!(
                "no task {:?}",
                shown(task_id)
            )));
        };
        let holder = rec.holder().map(str::to_owned);
        record(rec);
        if let Some(holder) = holder
            && let Some(w) = st.store.workers.get_mut(&holder)
            && w.is_active()
        {
            w.last_seen = Instant::now();
        }
        Ok(())
    }
}

impl Handler for Orchestrator {
    fn register(
        &self,
        ctx: RequestContext,
        registration: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
        Box::pin(crate::metrics::call("register", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.register(self, ctx, registration).await;
            }
            let inner = &*self.inner;
            {
                let mut st = inner.lock();
                let cred = inner.admit(&mut st, &ctx, false, |_, _| {
                    Some(registration.worker_id.clone())
                })?;
                validate_identifier(&registration.worker_id, "worker_id").map_err(bad_request)?;
                inner.act_as(&st, &cred, &ctx, &registration.worker_id)?;
            }
            // Schemas compile without the lock (an authenticated request only).
            let mut registration = registration;
            let skills = catalog(inner, std::mem::take(&mut registration.supported_skills))?;
            {
                let mut st = inner.lock();
                let worker_id = registration.worker_id.clone();
                st.store
                    .register(
                        &inner.config,
                        &worker_id,
                        skills,
                        registration,
                        ctx.protocol(),
                        Instant::now(),
                    )
                    .map_err(|()| {
                        HandlerError::unavailable(format!(
                            "too many workers (at most {})",
                            inner.config.max_workers
                        ))
                    })?;
                if let Some(token) = &ctx.token {
                    // Bounded like the workers: one entry per token.
                    if st.token_owner.len() < inner.config.max_workers
                        || st.token_owner.contains_key(token)
                    {
                        st.token_owner.insert(token.clone(), worker_id.clone());
                    }
                }
                // New skills may match queued tasks for this worker's polls already
                // waiting.
                st.poll_waiters
                    .wake_with_permit(&crate::state::worker_key(&worker_id));
            }
            inner.events.notify_waiters();
            Ok(RegisterReply {
                version: Some(ctx.protocol().as_str().to_owned()),
                ..RegisterReply::default()
            })
        }))
    }

    fn poll(
        &self,
        ctx: RequestContext,
        wait: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
        Box::pin(crate::metrics::poll(async move {
            // Boxed: a poll parked on the in-memory storage is not sized for the
            // Redis one's future (every parked worker holds one).
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return Box::pin(r.poll(self, ctx, wait)).await;
            }
            let worker_id = ctx.require_worker_id()?.to_owned();
            let inner = &*self.inner;
            let poll_epoch = {
                let mut st = inner.lock();
                let cred = inner.admit(&mut st, &ctx, false, |_, _| Some(worker_id.clone()))?;
                inner.act_as(&st, &cred, &ctx, &worker_id)?;
                let now = Instant::now();
                let epoch = match st.store.workers.get_mut(&worker_id) {
                    Some(w) if w.is_active() => {
                        w.last_seen = now;
                        w.pending_polls += 1;
                        w.reported.epoch
                    }
                    _ => return Err(not_registered(&worker_id)),
                };
                st.pending_polls += 1;
                epoch
            };
            let _guard = PollGuard {
                inner,
                worker_id: &worker_id,
            };
            inner.events.notify_waiters();
            // An enqueue wakes the polls of its task's skill only, a registration or a
            // heartbeat the worker's own (each try joins the worker's skills as they
            // are then, and the worker's own key).
            let listen = || {
                let mut st = inner.lock();
                let own = crate::state::worker_key(&worker_id);
                let skills: Vec<String> = st
                    .store
                    .workers
                    .get(&worker_id)
                    .map(|w| {
                        let skills = &w.reported.catalog.skills;
                        skills.iter().map(|s| s.name.clone()).collect()
                    })
                    .unwrap_or_default();
                let keys = skills.into_iter().chain(std::iter::once(own));
                Some(Waiting::new(
                    inner,
                    &mut st,
                    |st| &mut st.poll_waiters,
                    keys,
                ))
            };
            inner
                .park(wait, listen, || {
                    // The claim and the return happen in the same step of this future:
                    // a future dropped while waiting has claimed nothing.
                    let lease = Instant::now().checked_add(inner.config.claim_lease);
                    std::future::ready(
                        inner
                            .lock()
                            .store
                            .claim(&worker_id, lease, poll_epoch)
                            .map_err(|()| not_registered(&worker_id)),
                    )
                })
                .await
        }))
    }

    fn result(
        &self,
        ctx: RequestContext,
        result: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
        Box::pin(crate::metrics::result(async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.result(self, ctx, result).await;
            }
            let inner = &*self.inner;
            let outcome = {
                let mut st = inner.lock();
                let cred =
                    inner.admit(&mut st, &ctx, false, |_, _| Some(result.worker_id.clone()))?;
                inner.act_as(&st, &cred, &ctx, &result.worker_id)?;
                let result = held_to_contract(&st, result);
                let waited = (!st.result_waiters.is_empty()).then(|| result.task_id.clone());
                let outcome = st.store.apply_result(&inner.config, result, Instant::now());
                match waited {
                    Some(task_id) => st.settled(&task_id),
                    None => st.store.forgotten.clear(),
                }
                outcome
            };
            inner.events.notify_waiters();
            Ok(outcome)
        }))
    }

    fn heartbeat(
        &self,
        ctx: RequestContext,
        heartbeat: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
        Box::pin(crate::metrics::call("heartbeat", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.heartbeat(self, ctx, heartbeat).await;
            }
            let worker_id = ctx.require_worker_id()?.to_owned();
            let inner = &*self.inner;
            {
                let mut st = inner.lock();
                let cred = inner.admit(&mut st, &ctx, false, |_, _| Some(worker_id.clone()))?;
                inner.act_as(&st, &cred, &ctx, &worker_id)?;
            }
            let checked = checked_heartbeat(inner, heartbeat)?;
            let mut st = inner.lock();
            let listed = checked.as_ref().map(|(h, _)| h.current_tasks.clone());
            // The tasks it lists are tasks it has: their claims are confirmed.
            for task_id in listed.iter().flatten() {
                st.store.confirm(&worker_id, task_id);
            }
            let reply = match st.store.workers.get_mut(&worker_id) {
                Some(w) if w.is_active() => {
                    w.last_seen = Instant::now();
                    let reported = checked.is_some();
                    let require_full_sync = checked.is_some_and(|(heartbeat, catalog)| {
                        st.store.report(&worker_id, heartbeat, catalog)
                    });
                    // Its status, free skills or catalog may have changed: its own
                    // parked polls look at the queues again.
                    if reported {
                        st.poll_waiters
                            .wake_with_permit(&crate::state::worker_key(&worker_id));
                    }
                    HeartbeatReply {
                        cancel_task_ids: st.store.heartbeat_cancels(&worker_id, listed.as_deref()),
                        require_full_sync,
                        ..HeartbeatReply::default()
                    }
                }
                _ => HeartbeatReply {
                    require_full_sync: true,
                    ..HeartbeatReply::default()
                },
            };
            Ok(reply)
        }))
    }

    fn progress(
        &self,
        ctx: RequestContext,
        progress: ProgressUpdatePayload,
    ) -> BoxFuture<'_, HandlerResult<()>> {
        Box::pin(crate::metrics::call("progress", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.progress(self, ctx, progress).await;
            }
            let inner = &*self.inner;
            {
                let mut st = inner.lock();
                // 1.0b3 progress names no worker: the task's holder is the one acting.
                let holder = st
                    .store
                    .tasks
                    .get(&progress.task_id)
                    .and_then(|r| r.holder().map(str::to_owned));
                let cred = inner.admit(&mut st, &ctx, false, |_, _| holder.clone())?;
                if let Some(holder) = &holder {
                    inner.act_as(&st, &cred, &ctx, holder)?;
                }
                inner.record_report(&mut st, &progress.task_id, holder.as_deref(), |rec| {
                    push_bounded(
                        &mut rec.progress,
                        progress.clone(),
                        inner.config.progress_history,
                    )
                })?;
            }
            // No subscriber is not an error.
            let _ = inner.progress_tx.send(progress);
            Ok(())
        }))
    }

    /// Takes an event from the worker holding the task it targets (403 otherwise):
    /// progress is stored as progress, any other type among the task's events (and
    /// sent to [`Orchestrator::subscribe_events`]).
    fn event(
        &self,
        ctx: RequestContext,
        event: WorkerEventPayload,
    ) -> BoxFuture<'_, HandlerResult<()>> {
        let span = crate::otel::event_span(&event);
        Box::pin(crate::otel::traced(
            span,
            crate::metrics::call("event", async move {
                #[cfg(feature = "redis")]
                if let Some(r) = self.inner.redis.as_ref() {
                    return r.event(self, ctx, event).await;
                }
                let inner = &*self.inner;
                let progress = checked_event(&event)?;
                {
                    let mut st = inner.lock();
                    let cred =
                        inner.admit(&mut st, &ctx, false, |_, _| Some(event.worker_id.clone()))?;
                    inner.act_as(&st, &cred, &ctx, &event.worker_id)?;
                    let task_id = event_target(&st, &event)?;
                    check_event_payload(contract_of(&st, &event.worker_id, &task_id), &event)?;
                    let max = inner.config.progress_history;
                    inner.record_report(&mut st, &task_id, Some(&event.worker_id), |rec| {
                        match &progress {
                            Some(p) => push_bounded(&mut rec.progress, p.clone(), max),
                            None => push_bounded(&mut rec.events, event.clone(), max),
                        }
                    })?;
                }
                // No subscriber is not an error.
                match progress {
                    Some(p) => drop(inner.progress_tx.send(p)),
                    None => drop(inner.event_tx.send(event)),
                }
                Ok(())
            }),
        ))
    }

    /// The worker's static secret, as avtomatika keys envelopes: the token configured
    /// for this worker; else the static credential the request's token is or descends
    /// from (an issued token keeps the one that bought it); else the shared token.
    /// `None` (signatures unchecked, clock and replays still) only when no static
    /// credential is configured at all.
    fn envelope_key(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<Option<String>>> {
        Box::pin(crate::metrics::call("envelope_key", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.envelope_key(self, ctx).await;
            }
            let worker_id = ctx.require_worker_id()?;
            let inner = &*self.inner;
            if let Some(own) = inner.config.worker_token_of(worker_id) {
                return Ok(Some(own.to_owned()));
            }
            let st = inner.lock();
            let root = ctx
                .token
                .as_deref()
                .and_then(|t| auth::root_of(&inner.config, &st, t, Instant::now()));
            Ok(root.or_else(|| inner.config.tokens.first().cloned()))
        }))
    }

    fn task_signing_key(&self) -> Option<String> {
        self.inner.config.task_signing_key.clone()
    }

    /// Admits a session whose credential some operation accepts (a bootstrap credential
    /// included: the session may trade it for a token) and, when the upgrade names a
    /// worker, that may act as that worker.
    fn authenticate(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<()>> {
        Box::pin(crate::metrics::call("authenticate", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.authenticate(self, ctx).await;
            }
            let inner = &*self.inner;
            let st = inner.lock();
            // Not counted against the rate limit: this check precedes an operation
            // that counts itself (a session's requests, a signed message's handling).
            let cred = auth::authenticate(
                &inner.config,
                &st,
                ctx.token.as_deref(),
                true,
                Instant::now(),
            )?;
            if let Some(worker_id) = &ctx.worker_id {
                inner.act_as(&st, &cred, &ctx, worker_id)?;
            }
            Ok(())
        }))
    }

    fn token(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        Box::pin(crate::metrics::call("token", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.token(self, ctx).await;
            }
            let inner = &*self.inner;
            let mut st = inner.lock();
            let cred = inner.admit(&mut st, &ctx, true, |cred, _| {
                cred.worker().map(str::to_owned)
            })?;
            let worker_id = ctx
                .worker_id
                .clone()
                .or_else(|| cred.worker().map(str::to_owned));
            // A token can be refreshed for its own worker only.
            if let Some(id) = &worker_id {
                inner.act_as(&st, &cred, &ctx, id)?;
            }
            // 1.0b17 workers also get a refresh token.
            let refresh = if ctx.protocol().signs() {
                auth::Refresh::New
            } else {
                auth::Refresh::None
            };
            let now = Instant::now();
            let root = ctx
                .token
                .as_deref()
                .and_then(|t| auth::root_of(&inner.config, &st, t, now));
            Ok(auth::mint(
                &inner.config,
                &mut st,
                worker_id,
                root,
                refresh,
                now,
            ))
        }))
    }

    /// A new access token for the worker a live refresh token was issued to (no
    /// access-token check, as the reference); the refresh token stays valid.
    fn refresh(
        &self,
        ctx: RequestContext,
        refresh_token: String,
    ) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        Box::pin(crate::metrics::call("refresh", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.refresh(self, ctx, refresh_token).await;
            }
            let inner = &*self.inner;
            let mut st = inner.lock();
            let now = Instant::now();
            let (worker_id, root) =
                auth::redeem(&st, &refresh_token, ctx.worker_id.as_deref(), now)?;
            if let Some(id) = &worker_id {
                auth::rate_limit(&inner.config, &mut st, id, now)?;
            }
            Ok(auth::mint(
                &inner.config,
                &mut st,
                worker_id,
                root,
                auth::Refresh::Keep(refresh_token),
                now,
            ))
        }))
    }

    fn commands(
        &self,
        ctx: RequestContext,
    ) -> BoxFuture<'_, HandlerResult<Box<dyn CommandReceiver>>> {
        Box::pin(crate::metrics::call("commands", async move {
            #[cfg(feature = "redis")]
            if let Some(r) = self.inner.redis.as_ref() {
                return r.commands(self, ctx).await;
            }
            let inner = &*self.inner;
            let mut st = inner.lock();
            let cred = inner.admit(&mut st, &ctx, false, |_, _| None)?;
            // The reference worker opens `/_worker/ws` without its id: fall back to the
            // worker that registered with this token.
            let owner = ctx
                .token
                .as_ref()
                .and_then(|t| st.token_owner.get(t).cloned());
            let proven = cred.worker().map(str::to_owned);
            let Some(worker_id) = ctx.worker_id.clone().or(proven).or(owner) else {
                return Err(HandlerError::bad_request(
                    "a command channel needs the worker id (use /_worker/ws/{worker_id}, \
                     or register with this token first)",
                ));
            };
            validate_identifier(&worker_id, "worker_id").map_err(bad_request)?;
            inner.act_as(&st, &cred, &ctx, &worker_id)?;
            // A worker that reconnects gets the cancels it has not acknowledged yet.
            let pending: Vec<WorkerCommand> = st
                .store
                .workers
                .get(&worker_id)
                .into_iter()
                .flat_map(|w| &w.pending_cancels)
                .map(|task_id| {
                    let job_id = st
                        .store
                        .tasks
                        .get(task_id)
                        .map(|t| t.payload.job_id.clone());
                    WorkerCommand::cancel_task(task_id.clone(), job_id)
                })
                .collect();
            let rx = st.open_channel(&inner.config, &worker_id, pending)?;
            drop(st);
            inner.events.notify_waiters();
            Ok(Box::new(ChannelReceiver::new(rx, self, worker_id)) as Box<dyn CommandReceiver>)
        }))
    }
}
