//! The task store: the one seam of the orchestrator's state that a shared backend
//! (several listener processes on one database) must provide. It holds the tasks and
//! their per-type FIFO queues, claims with leases, results applied once, and the
//! workers' claim bookkeeping: everything that must be the same for every process.
//! What is local to one process (a worker's command channel, wake-ups, the total of
//! parked polls) and the credentials stay outside, in the orchestrator's `State`. One
//! process-local figure is still inside: each worker record's count of parked polls,
//! which reaping and registering read (a worker with a parked poll is not silent); a
//! backend shared by several processes keeps that count per process.
//!
//! [`Store`] is the in-memory implementation: plain maps under the orchestrator's
//! lock; no method waits. Each method is one atomic step of the protocol (the unit a
//! shared backend implements as one transaction or script): enqueue, claim, apply a
//! result, cancel, confirm, expire leases, reap, register.

use super::{CancelOutcome, Config, Placement, TaskState, WorkerInfo, WorkerStatus};
use rxon_core::constants::{WORKER_STATUS_DRAINING, WORKER_STATUS_FULL, WORKER_STATUS_OFFLINE};
use rxon_core::matching::ResourceRequirements;
use rxon_core::validate::validate_identifier;
use rxon_core::{
    ErrorCode, IgnoredReason, ProgressUpdatePayload, Result, ResultOutcome, RxonError, SkillInfo,
    TaskError, TaskPayload, TaskResult, TaskStatus, WorkerCommand, WorkerEventPayload,
};
use std::collections::{HashMap, VecDeque};
use tokio::time::Instant;

/// Where a task is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting in its type's queue.
    Queued,
    /// Claimed by a worker.
    Running { worker_id: String },
    /// A result was applied; it is in [`TaskRecord::result`].
    Finished,
    /// The holder's result came after the deadline; a `LATE_RESULT` failure is recorded.
    Expired,
    /// Cancelled by the host. `holder` is the worker still running it, until it reports
    /// or goes away.
    Cancelled { holder: Option<String> },
}

#[derive(Debug)]
pub(super) struct TaskRecord {
    pub(super) payload: TaskPayload,
    /// What its worker must have.
    requirements: ResourceRequirements,
    seq: u64,
    /// When it was enqueued (a requeue keeps it).
    enqueued: Instant,
    deadline: Option<Instant>,
    pub(super) phase: Phase,
    pub(super) result: Option<TaskResult>,
    pub(super) progress: VecDeque<ProgressUpdatePayload>,
    /// Events other than progress, oldest first (bounded like `progress`).
    pub(super) events: VecDeque<WorkerEventPayload>,
    /// Until when the current claim stands without a sign that the worker received the
    /// task (a heartbeat listing it, progress, a result); `None` once confirmed.
    lease: Option<Instant>,
    /// The worker whose unconfirmed claim expired: if its result arrives after all, it
    /// is applied instead of running the task again.
    lapsed_holder: Option<String>,
}

impl TaskRecord {
    pub(super) fn state(&self) -> TaskState {
        match &self.phase {
            Phase::Queued => TaskState::Queued,
            Phase::Running { worker_id } => TaskState::Running {
                worker_id: worker_id.clone(),
            },
            Phase::Finished => TaskState::Finished(
                self.result
                    .as_ref()
                    .map_or(TaskStatus::Failure, |r| r.status.clone()),
            ),
            Phase::Expired => TaskState::Finished(TaskStatus::Failure),
            Phase::Cancelled { .. } => TaskState::Cancelled,
        }
    }

    /// The worker currently running this task, if any.
    pub(super) fn holder(&self) -> Option<&str> {
        match &self.phase {
            Phase::Running { worker_id } => Some(worker_id),
            Phase::Cancelled { holder } => holder.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct WorkerRecord {
    pub(super) status: WorkerStatus,
    pub(super) last_seen: Instant,
    /// Claimed tasks, in claim order.
    pub(super) current: Vec<String>,
    /// Cancelled tasks the worker has not acknowledged: by reporting the result, or by
    /// a heartbeat that no longer lists a task it had confirmed. Every heartbeat reply
    /// and every new command channel repeats them, so a cancel lost with a connection
    /// is not lost for good.
    pub(super) pending_cancels: Vec<String>,
    pub(super) pending_polls: usize,
    /// The generation it registered with: a 1.0b17 worker's requests must stay 1.0b17
    /// (signed), or anyone holding its token could send unsigned 1.0b3 ones for it.
    pub(super) protocol: rxon_core::Protocol,
    /// What the worker last said about itself. Boxed: the workers' table keeps spare
    /// slots (a hash map's load factor), and each slot is then a pointer, not a whole
    /// registration and heartbeat.
    pub(super) reported: Box<Reported>,
}

/// Why a worker that offers a task's type cannot run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// It misses the task's resource requirements.
    Resources(String),
    /// Its input schema rejects the task's params.
    Params(String),
}

impl Refusal {
    pub(super) fn reason(&self) -> &str {
        match self {
            Refusal::Resources(r) | Refusal::Params(r) => r,
        }
    }
}

/// How many queued tasks of one type a claim looks at for one whose params the
/// worker's input schema accepts.
pub(super) const MAX_SCAN: usize = 64;

/// Most forgotten task ids kept for waking their waiters between two looks.
const MAX_FORGOTTEN: usize = 1_024;

/// A worker's skills, each with its compiled contract (when it declares schemas).
#[derive(Debug, Default)]
pub(super) struct Catalog {
    /// Every skill with its contract as sent (the names are the task types the worker
    /// is handed).
    pub(super) skills: Vec<SkillInfo>,
    /// The compiled contracts of the skills that declare schemas, by name.
    pub(super) contracts: std::collections::BTreeMap<String, std::sync::Arc<rxon_schema::Contract>>,
}

/// A worker's own account of itself: its skill catalog (registration, or a heartbeat
/// that carries one) and its state (heartbeats).
#[derive(Debug, Default)]
pub(super) struct Reported {
    /// The catalog.
    pub(super) catalog: Catalog,
    /// The hash the worker gave the catalog held here (`skills_hash`); a heartbeat
    /// with another hash and no catalog does not change it.
    pub(super) skills_hash: Option<String>,
    /// Heartbeats received since registration: a poll begun before the last one is
    /// older than what the worker said there.
    pub(super) epoch: u64,
    /// The registration, its catalog moved to `catalog`.
    pub(super) registration: rxon_core::WorkerRegistration,
    /// The last heartbeat with a body (its `status` and `available_skills` decide
    /// dispatch), its catalog moved to `catalog`.
    pub(super) heartbeat: Option<rxon_core::Heartbeat>,
}

impl Reported {
    /// Whether a poll begun at `poll_epoch` may be handed a task: see [`takes_work`].
    pub(super) fn takes_work(&self, poll_epoch: u64) -> bool {
        takes_work(self.heartbeat.as_ref(), self.epoch, poll_epoch)
    }

    /// Whether the worker can start `skill` now.
    pub(super) fn can_start(&self, skill: &str) -> bool {
        can_start(self.heartbeat.as_ref(), skill)
    }
}

/// Whether a poll begun at heartbeat `poll_epoch` of a worker now at heartbeat `epoch`,
/// whose last heartbeat with a body is `heartbeat`, may be handed a task: never while
/// the worker drains or is offline; not when it said it was full after the poll began
/// (a poll begun after a `full` heartbeat says a slot is free again).
pub(super) fn takes_work(
    heartbeat: Option<&rxon_core::Heartbeat>,
    epoch: u64,
    poll_epoch: u64,
) -> bool {
    match heartbeat.map(|h| h.status.as_str()) {
        Some(WORKER_STATUS_DRAINING | WORKER_STATUS_OFFLINE) => false,
        Some(WORKER_STATUS_FULL) => epoch <= poll_epoch,
        _ => true,
    }
}

/// Whether a worker whose last heartbeat is `heartbeat` can start `skill` now (a
/// non-empty `available_skills` lists the skills it can).
pub(super) fn can_start(heartbeat: Option<&rxon_core::Heartbeat>, skill: &str) -> bool {
    heartbeat
        .and_then(|h| h.available_skills.as_deref())
        .filter(|a| !a.is_empty())
        .is_none_or(|a| a.iter().any(|s| s == skill))
}

impl Reported {
    /// Whether this worker offers the task's type and, if so, why it refuses it: see
    /// [`verdict`].
    pub(super) fn verdict(
        &self,
        task: &TaskPayload,
        requirements: &ResourceRequirements,
    ) -> Option<Option<Refusal>> {
        verdict(&self.catalog, &self.registration, task, requirements)
    }
}

/// Whether a worker with `catalog` and `registration` offers the task's type and, if
/// so, why it refuses it: `None` (not offered), `Some(None)` (accepted),
/// `Some(Some(refusal))`.
pub(super) fn verdict(
    catalog: &Catalog,
    registration: &rxon_core::WorkerRegistration,
    task: &TaskPayload,
    requirements: &ResourceRequirements,
) -> Option<Option<Refusal>> {
    let skill = catalog.skills.iter().find(|s| s.name == task.task_type)?;
    if let Err(why) = requirements.check(registration, skill) {
        return Some(Some(Refusal::Resources(why)));
    }
    Some(
        catalog
            .contracts
            .get(&task.task_type)
            .and_then(|c| c.check_input(&task.params).err())
            .map(|v| Refusal::Params(format!("the params violate its input_schema: {v}"))),
    )
}

impl WorkerRecord {
    fn verdict(&self, rec: &TaskRecord) -> Option<Option<Refusal>> {
        self.reported.verdict(&rec.payload, &rec.requirements)
    }

    pub(super) fn is_active(&self) -> bool {
        self.status == WorkerStatus::Active
    }

    fn release(&mut self, task_id: &str) {
        self.current.retain(|t| t != task_id);
        self.pending_cancels.retain(|t| t != task_id);
    }
}

/// Tasks, queues, claims, results and workers: see the [module](self) documentation.
#[derive(Default)]
pub(crate) struct Store {
    pub(super) workers: HashMap<String, WorkerRecord>,
    pub(super) tasks: HashMap<String, TaskRecord>,
    /// Queued task ids by type, ordered by enqueue sequence.
    queues: HashMap<String, VecDeque<(u64, String)>>,
    pub(super) queued: usize,
    /// Queued or running tasks.
    unfinished: usize,
    /// Ended tasks, oldest first, for bounded retention.
    ended: VecDeque<String>,
    /// Tasks forgotten (beyond the retention bound) since the caller last looked: their
    /// result waiters must hear of it. At most [`MAX_FORGOTTEN`].
    pub(super) forgotten: Vec<String>,
    next_seq: u64,
    pub(super) applied_results: u64,
    /// Claim leases by expiry; entries of confirmed or ended claims are skipped lazily.
    leases: std::collections::BTreeSet<(Instant, String)>,
    /// Claims that lapsed unconfirmed and were requeued.
    pub(super) lapsed_claims: u64,
}

impl Store {
    pub(super) fn enqueue(
        &mut self,
        cfg: &Config,
        task: TaskPayload,
        deadline: Option<std::time::Duration>,
        requirements: ResourceRequirements,
        now: Instant,
    ) -> Result<()> {
        check_new_task(&task)?;
        if self.tasks.contains_key(&task.task_id) {
            return Err(duplicate_task(&task.task_id));
        }
        if self.unfinished >= cfg.max_queue_len {
            return Err(queue_full(cfg));
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.queues
            .entry(task.task_type.clone())
            .or_default()
            .push_back((seq, task.task_id.clone()));
        self.queued += 1;
        self.unfinished += 1;
        self.tasks.insert(
            task.task_id.clone(),
            TaskRecord {
                payload: task,
                requirements,
                seq,
                enqueued: now,
                deadline: deadline.and_then(|d| now.checked_add(d)),
                phase: Phase::Queued,
                result: None,
                progress: VecDeque::new(),
                events: VecDeque::new(),
                lease: None,
                lapsed_holder: None,
            },
        );
        Ok(())
    }

    /// Claims the oldest queued task `worker_id` can run. `Err` when the worker is not
    /// registered (or has gone).
    pub(super) fn claim(
        &mut self,
        worker_id: &str,
        lease: Option<Instant>,
        poll_epoch: u64,
    ) -> std::result::Result<Option<TaskPayload>, ()> {
        loop {
            let worker = match self.workers.get(worker_id) {
                Some(w) if w.is_active() => w,
                _ => return Err(()),
            };
            if !worker.reported.takes_work(poll_epoch) {
                return Ok(None);
            }
            // The oldest task, over the worker's skills, whose params its input schema
            // accepts: a skill with a schema looks past the tasks it refuses (at most
            // MAX_SCAN of them; they stay queued, in order, for other workers).
            let mut best: Option<(u64, &String, usize)> = None;
            for skill in &worker.reported.catalog.skills {
                let skill = &skill.name;
                if !worker.reported.can_start(skill) {
                    continue;
                }
                let Some(queue) = self.queues.get(skill) else {
                    continue;
                };
                // Usually the first entry; past it only when the worker refuses it.
                let accepted = queue
                    .iter()
                    .take(MAX_SCAN)
                    .enumerate()
                    .find(|(_, (_, id))| {
                        self.tasks
                            .get(id)
                            .is_none_or(|r| worker.verdict(r) == Some(None))
                    });
                if let Some((pos, &(seq, _))) = accepted
                    && best.is_none_or(|(b, _, _)| seq < b)
                {
                    best = Some((seq, skill, pos));
                }
            }
            let Some((_, skill, pos)) = best else {
                return Ok(None);
            };
            let skill = skill.clone();
            let Some(task_id) = self.take_queued(&skill, pos) else {
                return Ok(None);
            };
            let Some(rec) = self.tasks.get_mut(&task_id) else {
                continue; // not expected: queue entries always have a record
            };
            if rec.phase != Phase::Queued {
                continue;
            }
            rec.phase = Phase::Running {
                worker_id: worker_id.to_owned(),
            };
            rec.lease = lease;
            rec.lapsed_holder = None;
            if let Some(until) = lease {
                self.leases.insert((until, task_id.clone()));
            }
            let payload = rec.payload.clone();
            crate::metrics::dispatched(rec.enqueued);
            if let Some(w) = self.workers.get_mut(worker_id) {
                w.current.push(task_id);
            }
            return Ok(Some(payload));
        }
    }

    /// Takes the queue entry at `pos` of `task_type`'s queue.
    fn take_queued(&mut self, task_type: &str, pos: usize) -> Option<String> {
        let q = self.queues.get_mut(task_type)?;
        let (_, id) = q.remove(pos)?;
        if q.is_empty() {
            self.queues.remove(task_type);
        }
        self.queued = self.queued.saturating_sub(1);
        Some(id)
    }

    /// Puts a task back in its queue at its enqueue position: ahead of every task
    /// enqueued after it.
    fn requeue(&mut self, task_id: &str) {
        let Some(rec) = self.tasks.get_mut(task_id) else {
            return;
        };
        rec.phase = Phase::Queued;
        rec.lease = None;
        crate::metrics::requeued();
        let seq = rec.seq;
        let q = self
            .queues
            .entry(rec.payload.task_type.clone())
            .or_default();
        let pos = q.partition_point(|(s, _)| *s < seq);
        q.insert(pos, (seq, task_id.to_owned()));
        self.queued += 1;
    }

    fn unqueue(&mut self, task_id: &str, task_type: &str) {
        if let Some(q) = self.queues.get_mut(task_type) {
            if let Some(pos) = q.iter().position(|(_, id)| id == task_id) {
                q.remove(pos);
                self.queued = self.queued.saturating_sub(1);
            }
            if q.is_empty() {
                self.queues.remove(task_type);
            }
        }
    }

    /// Records that `task_id` ended, forgetting the oldest ended tasks beyond the bound.
    fn ended(&mut self, cfg: &Config, task_id: &str) {
        self.unfinished = self.unfinished.saturating_sub(1);
        self.ended.push_back(task_id.to_owned());
        while self.ended.len() > cfg.max_finished_tasks {
            if let Some(old) = self.ended.pop_front() {
                self.tasks.remove(&old);
                // Its result waiters, if any, learn that no result will come (the
                // caller drains this; a full list is dropped: a reap wakes them all).
                if self.forgotten.len() < MAX_FORGOTTEN {
                    self.forgotten.push(old);
                }
            }
        }
    }

    fn touch(&mut self, worker_id: &str, now: Instant) {
        if let Some(w) = self.workers.get_mut(worker_id)
            && w.is_active()
        {
            w.last_seen = now;
        }
    }

    /// Applies `result` at most once; the answer says what happened.
    pub(super) fn apply_result(
        &mut self,
        cfg: &Config,
        result: TaskResult,
        now: Instant,
    ) -> ResultOutcome {
        self.touch(&result.worker_id, now);
        let Some(rec) = self.tasks.get_mut(&result.task_id) else {
            return Verdict::Unknown.outcome(&result.task_id);
        };
        match rec.phase.clone() {
            Phase::Finished => {
                if rec.result.as_ref() == Some(&result) {
                    ResultOutcome::Accepted
                } else {
                    Verdict::DuplicateOther.outcome(&result.task_id)
                }
            }
            Phase::Expired => Verdict::Late.outcome(&result.task_id),
            Phase::Queued if rec.lapsed_holder.as_deref() == Some(result.worker_id.as_str()) => {
                // The claim lapsed unconfirmed, yet the worker had the task after all:
                // take its result rather than run the task again.
                let task_id = result.task_id.clone();
                let task_type = rec.payload.task_type.clone();
                rec.phase = Phase::Running {
                    worker_id: result.worker_id.clone(),
                };
                rec.lapsed_holder = None;
                self.unqueue(&task_id, &task_type);
                self.apply_result(cfg, result, now)
            }
            Phase::Queued => Verdict::Unassigned.outcome(&result.task_id),
            Phase::Cancelled { holder } => {
                if rec.result.as_ref() == Some(&result) {
                    return ResultOutcome::Accepted;
                }
                let from_holder = holder.as_deref() == Some(result.worker_id.as_str());
                if !from_holder {
                    return Verdict::Cancelled.outcome(&result.task_id);
                }
                // The holder is done with the task either way, and nothing it sends later
                // is applied: the same result again is accepted above, any other one
                // is ignored as cancelled.
                rec.phase = Phase::Cancelled { holder: None };
                let confirmed = result.status == TaskStatus::Cancelled;
                if confirmed {
                    rec.result = Some(result.clone());
                    self.applied_results += 1;
                }
                if let Some(w) = self.workers.get_mut(&result.worker_id) {
                    w.release(&result.task_id);
                }
                if confirmed {
                    ResultOutcome::Accepted
                } else {
                    Verdict::Cancelled.outcome(&result.task_id)
                }
            }
            Phase::Running { worker_id } => {
                if worker_id != result.worker_id {
                    return Verdict::Mismatch.outcome(&result.task_id);
                }
                let late = rec.deadline.is_some_and(|d| now > d);
                let task_id = result.task_id.clone();
                let outcome = if late {
                    rec.phase = Phase::Expired;
                    rec.result = Some(late_failure(&rec.payload, &worker_id));
                    Verdict::Late.outcome(&task_id)
                } else {
                    rec.phase = Phase::Finished;
                    rec.result = Some(result);
                    self.applied_results += 1;
                    ResultOutcome::Accepted
                };
                if let Some(w) = self.workers.get_mut(&worker_id) {
                    w.release(&task_id);
                }
                self.ended(cfg, &task_id);
                outcome
            }
        }
    }

    /// Cancels one task. A running task's cancel is kept for the holder's heartbeat
    /// replies and returned as the command the caller pushes on the holder's channel.
    pub(super) fn cancel(
        &mut self,
        cfg: &Config,
        task_id: &str,
    ) -> Result<(CancelOutcome, Option<WorkerCommand>)> {
        let Some(rec) = self.tasks.get_mut(task_id) else {
            return Err(RxonError::invalid_input(format!("no task {task_id:?}")));
        };
        match rec.phase.clone() {
            Phase::Queued => {
                rec.phase = Phase::Cancelled { holder: None };
                let task_type = rec.payload.task_type.clone();
                self.unqueue(task_id, &task_type);
                self.ended(cfg, task_id);
                Ok((CancelOutcome::Dequeued, None))
            }
            Phase::Running { worker_id } => {
                rec.phase = Phase::Cancelled {
                    holder: Some(worker_id.clone()),
                };
                let command = WorkerCommand::cancel_task(task_id, Some(rec.payload.job_id.clone()));
                if let Some(w) = self.workers.get_mut(&worker_id)
                    && !w.pending_cancels.iter().any(|t| t == task_id)
                {
                    w.pending_cancels.push(task_id.to_owned());
                }
                self.ended(cfg, task_id);
                Ok((CancelOutcome::Signalled { worker_id }, Some(command)))
            }
            Phase::Finished | Phase::Expired | Phase::Cancelled { .. } => {
                Ok((CancelOutcome::AlreadyFinished, None))
            }
        }
    }

    /// The cancels for `worker_id`'s heartbeat reply, given the tasks the heartbeat
    /// lists (`None`: a heartbeat without a body, which tells nothing). Drops the ones
    /// the worker is done with: confirmed earlier, no longer listed.
    pub(super) fn heartbeat_cancels(
        &mut self,
        worker_id: &str,
        listed: Option<&[String]>,
    ) -> Vec<String> {
        let tasks = &self.tasks;
        let Some(w) = self.workers.get_mut(worker_id) else {
            return Vec::new();
        };
        if let Some(listed) = listed {
            w.pending_cancels.retain(|id| {
                listed.contains(id) || tasks.get(id).is_some_and(|t| t.lease.is_some())
            });
        }
        w.pending_cancels.clone()
    }

    /// `worker_id` showed it has `task_id` (a heartbeat listing it, or progress): its
    /// claim no longer lapses.
    pub(super) fn confirm(&mut self, worker_id: &str, task_id: &str) {
        if let Some(rec) = self.tasks.get_mut(task_id)
            && rec.holder() == Some(worker_id)
        {
            rec.lease = None;
        }
    }

    /// Requeues the tasks whose claim lapsed unconfirmed: handed to a poll whose worker
    /// never showed it got them (a response lost with its connection). Returns how many.
    pub(super) fn expire_leases(&mut self, now: Instant) -> usize {
        let mut requeued = 0;
        while let Some((until, task_id)) = self.leases.first().cloned() {
            if until > now {
                break;
            }
            self.leases.pop_first();
            let Some(rec) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let holder = match &rec.phase {
                Phase::Running { worker_id } if rec.lease == Some(until) => worker_id.clone(),
                _ => continue, // confirmed, ended or claimed again since
            };
            rec.lapsed_holder = Some(holder.clone());
            if let Some(w) = self.workers.get_mut(&holder) {
                w.release(&task_id);
            }
            self.requeue(&task_id);
            self.lapsed_claims += 1;
            requeued += 1;
        }
        requeued
    }

    /// Marks silent workers as gone and requeues what they held; returns their ids
    /// (the caller closes their command channels).
    pub(super) fn reap(&mut self, cfg: &Config, now: Instant) -> Vec<String> {
        let mut gone: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                w.is_active()
                    && w.pending_polls == 0
                    && now.saturating_duration_since(w.last_seen) > cfg.worker_ttl
            })
            .map(|(id, _)| id.clone())
            .collect();
        gone.sort();
        for id in &gone {
            let held = match self.workers.get_mut(id) {
                Some(w) => {
                    w.status = WorkerStatus::Gone;
                    w.pending_cancels.clear();
                    std::mem::take(&mut w.current)
                }
                None => continue,
            };
            for task_id in held {
                let Some(rec) = self.tasks.get_mut(&task_id) else {
                    continue;
                };
                match &rec.phase {
                    Phase::Running { worker_id } if worker_id == id => self.requeue(&task_id),
                    Phase::Cancelled { holder }
                        if holder.as_deref() == Some(id) && rec.result.is_none() =>
                    {
                        rec.phase = Phase::Cancelled { holder: None };
                    }
                    _ => {}
                }
            }
        }
        gone
    }

    /// Registers or re-registers a worker. `Err` when the worker table is full of
    /// active workers.
    pub(super) fn register(
        &mut self,
        cfg: &Config,
        worker_id: &str,
        catalog: Catalog,
        registration: rxon_core::WorkerRegistration,
        protocol: rxon_core::Protocol,
        now: Instant,
    ) -> std::result::Result<(), ()> {
        if !self.workers.contains_key(worker_id) && self.workers.len() >= cfg.max_workers {
            self.workers
                .retain(|_, w| w.is_active() || w.pending_polls > 0);
            if self.workers.len() >= cfg.max_workers {
                return Err(());
            }
        }
        let w = self
            .workers
            .entry(worker_id.to_owned())
            .or_insert_with(|| WorkerRecord {
                status: WorkerStatus::Active,
                last_seen: now,
                current: Vec::new(),
                pending_cancels: Vec::new(),
                pending_polls: 0,
                protocol,
                reported: Box::default(),
            });
        *w.reported = Reported {
            catalog,
            skills_hash: registration.skills_hash.clone(),
            registration,
            ..Reported::default()
        };
        w.protocol = protocol;
        w.status = WorkerStatus::Active;
        w.last_seen = now;
        Ok(())
    }

    /// Records a heartbeat of `worker_id` (already checked), with the catalog it
    /// carries, if any. Returns whether the worker must send its whole state again
    /// (`require_full_sync`): it gave a `skills_hash` without a catalog, and the hash is
    /// not the one of the catalog held here.
    pub(super) fn report(
        &mut self,
        worker_id: &str,
        heartbeat: rxon_core::Heartbeat,
        catalog: Option<Catalog>,
    ) -> bool {
        let Some(w) = self.workers.get_mut(worker_id) else {
            return true;
        };
        let r = &mut w.reported;
        r.epoch += 1;
        let hash = heartbeat.skills_hash.clone();
        r.heartbeat = Some(heartbeat);
        match catalog {
            Some(catalog) => {
                r.catalog = catalog;
                r.skills_hash = hash;
                false
            }
            None => hash.is_some_and(|h| {
                r.catalog.skills.is_empty() || r.skills_hash.as_deref() != Some(&h)
            }),
        }
    }

    /// How the active workers offering a queued task's type stand with it: how many
    /// accept it, and each refusal; `None` when `task_id` is not queued.
    fn verdicts(&self, task_id: &str) -> Option<(usize, Vec<(String, Refusal)>)> {
        let rec = self.tasks.get(task_id)?;
        if rec.phase != Phase::Queued {
            return None;
        }
        let mut runnable = 0;
        let mut refused = Vec::new();
        for (id, w) in &self.workers {
            if !w.is_active() {
                continue;
            }
            match w.verdict(rec) {
                None => {}
                Some(None) => runnable += 1,
                Some(Some(refusal)) => refused.push((id.clone(), refusal)),
            }
        }
        refused.sort_by(|a, b| a.0.cmp(&b.0));
        Some((runnable, refused))
    }

    /// Where the queued task `task_id` stands with the active workers.
    pub(super) fn placement(&self, task_id: &str) -> Option<Placement> {
        let (runnable, refused) = self.verdicts(task_id)?;
        Some(placement_of(runnable, refused))
    }

    /// Ends the tasks queued for longer than `unplaceable_after` that every active
    /// worker offering their type refuses (at most [`MAX_SCAN`] per type and call,
    /// oldest first): see [`unplaceable_failure`]. Returns how many.
    pub(super) fn end_unplaceable(&mut self, cfg: &Config, now: Instant) -> usize {
        let mut doomed: Vec<(String, TaskResult)> = Vec::new();
        for queue in self.queues.values() {
            for (_, id) in queue.iter().take(MAX_SCAN) {
                let Some(rec) = self.tasks.get(id) else {
                    continue;
                };
                if now.saturating_duration_since(rec.enqueued) < cfg.unplaceable_after {
                    continue;
                }
                let Some((0, refused)) = self.verdicts(id) else {
                    continue;
                };
                if let Some(failure) = unplaceable_failure(&rec.payload, &refused) {
                    doomed.push((id.clone(), failure));
                }
            }
        }
        let n = doomed.len();
        for (id, failure) in doomed {
            let Some(rec) = self.tasks.get_mut(&id) else {
                continue;
            };
            let task_type = rec.payload.task_type.clone();
            rec.result = Some(failure);
            rec.phase = Phase::Finished;
            self.unqueue(&id, &task_type);
            self.ended(cfg, &id);
        }
        n
    }

    /// What the host sees of each worker (`command_channel` is the caller's to fill).
    pub(super) fn worker_info(&self) -> Vec<WorkerInfo> {
        let mut out: Vec<WorkerInfo> = self
            .workers
            .iter()
            .map(|(id, w)| WorkerInfo {
                worker_id: id.clone(),
                skills: w
                    .reported
                    .catalog
                    .skills
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
                registration: rxon_core::WorkerRegistration {
                    supported_skills: w.reported.catalog.skills.clone(),
                    ..w.reported.registration.clone()
                },
                last_heartbeat: w.reported.heartbeat.clone(),
                skills_hash: w.reported.skills_hash.clone(),
                protocol: w.protocol,
                status: w.status,
                current_tasks: w.current.clone(),
                last_seen: w.last_seen,
                command_channel: false,
            })
            .collect();
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        out
    }

    /// Ids of the known tasks of `job_id`, in enqueue order.
    pub(super) fn job_tasks(&self, job_id: &str) -> Vec<String> {
        let mut ids: Vec<(u64, &String)> = self
            .tasks
            .iter()
            .filter(|(_, r)| r.payload.job_id == job_id)
            .map(|(id, r)| (r.seq, id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id.clone()).collect()
    }
}

/// Where a queued task stands, given how many active workers accept it and each
/// refusal of the others that offer its type.
pub(super) fn placement_of(runnable: usize, refused: Vec<(String, Refusal)>) -> Placement {
    if runnable > 0 {
        Placement::Runnable { workers: runnable }
    } else if refused.is_empty() {
        Placement::NoWorker
    } else {
        Placement::Refused(
            refused
                .into_iter()
                .map(|(w, r)| (w, r.reason().to_owned()))
                .collect(),
        )
    }
}

/// The failure that ends a task every worker offering its type refuses (`None` when
/// no worker refuses it: it waits for one): `INVALID_INPUT_ERROR` when every refusal
/// is of the params, `RESOURCE_EXHAUSTED` when a worker lacks what the task requires.
/// No worker ran it: the failure names none.
pub(super) fn unplaceable_failure(
    task: &TaskPayload,
    refused: &[(String, Refusal)],
) -> Option<TaskResult> {
    if refused.is_empty() {
        return None;
    }
    let code = if refused.iter().all(|(_, r)| matches!(r, Refusal::Params(_))) {
        ErrorCode::InvalidInput
    } else {
        ErrorCode::ResourceExhausted
    };
    // One line per distinct reason, with the workers that gave it.
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (w, r) in refused {
        by_reason.entry(r.reason()).or_default().push(w);
    }
    let why: Vec<String> = by_reason
        .iter()
        .map(|(r, ws)| format!("{r} (workers {})", ws.join(", ")))
        .collect();
    Some(TaskResult::failure(
        task,
        String::new(),
        TaskError::new(
            code,
            format!(
                "every worker offering {:?} refuses this task: {}",
                task.task_type,
                why.join("; ")
            ),
        ),
    ))
}

/// What became of a result, as both storages decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Applied, or the same result again.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Accepted,
    /// No such task.
    Unknown,
    /// The task already has another result.
    DuplicateOther,
    /// The task passed its deadline.
    Late,
    /// The task is queued, held by no worker.
    Unassigned,
    /// The task was cancelled.
    Cancelled,
    /// Another worker holds the task.
    Mismatch,
}

impl Verdict {
    /// The answer to the worker that sent a result for `task_id`.
    pub(super) fn outcome(self, task_id: &str) -> ResultOutcome {
        let (reason, what) = match self {
            Verdict::Accepted => return ResultOutcome::Accepted,
            Verdict::Unknown => {
                return ResultOutcome::ignored(
                    IgnoredReason::JobNotFound,
                    format!("no task {task_id:?}"),
                );
            }
            Verdict::DuplicateOther => (IgnoredReason::StaleTask, "already has a result"),
            Verdict::Late => (IgnoredReason::DeadlineExceeded, "passed its deadline"),
            Verdict::Unassigned => (IgnoredReason::StaleTask, "is not assigned to any worker"),
            Verdict::Cancelled => (IgnoredReason::JobCancelled, "was cancelled"),
            Verdict::Mismatch => (
                IgnoredReason::WorkerMismatch,
                "is assigned to another worker",
            ),
        };
        ResultOutcome::ignored(reason, format!("task {task_id:?} {what}"))
    }
}

/// The failure a task ends with when its holder's result came after the deadline.
pub(super) fn late_failure(task: &TaskPayload, worker_id: &str) -> TaskResult {
    TaskResult::failure(
        task,
        worker_id.to_owned(),
        TaskError::new(
            ErrorCode::LateResult,
            "the result arrived after the task's deadline",
        ),
    )
}

/// Checks the identifiers of a task to enqueue.
pub(super) fn check_new_task(task: &TaskPayload) -> Result<()> {
    validate_identifier(&task.job_id, "job_id")?;
    validate_identifier(&task.task_id, "task_id")?;
    validate_identifier(&task.task_type, "task_type")
}

/// The refusal of a task whose id is already known.
pub(super) fn duplicate_task(task_id: &str) -> RxonError {
    RxonError::invalid_input(format!("duplicate task_id {task_id:?}"))
        .with_detail("field", "task_id")
}

/// The refusal of a task when the orchestrator holds its maximum of unfinished ones.
pub(super) fn queue_full(cfg: &Config) -> RxonError {
    RxonError::rate_limited(
        format!(
            "orchestrator queue is full ({} unfinished tasks)",
            cfg.max_queue_len
        ),
        None,
    )
}
