//! The orchestrator's state: the [task store](crate::store) (the seam a shared backend
//! provides), plus what belongs to this process (command channels, parked poll counts)
//! and to authentication (issued tokens, rate-limit windows). Everything here runs
//! under the orchestrator's lock and never waits.

use super::auth::{IssuedToken, Window};
use super::store::Store;
use super::{CancelOutcome, Config, WorkerInfo};
use rxon_core::{HandlerError, HandlerResult, Result, WorkerCommand};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Everything the orchestrator knows.
/// The sending end of a worker's command channel. Commands travel boxed: a channel
/// allocates its first block of slots when it opens, and every parked worker holds
/// one, so a slot is a pointer rather than a whole command.
pub(super) type CommandSender = mpsc::Sender<Box<WorkerCommand>>;
/// The receiving end, read by the command receiver handed to the listener.
pub(super) type CommandReceiver = mpsc::Receiver<Box<WorkerCommand>>;

#[derive(Default)]
pub(super) struct State {
    /// Tasks, queues, claims, results, workers: the shared part.
    pub(super) store: Store,
    /// Each worker's command channel (this process's connections).
    pub(super) channels: HashMap<String, CommandSender>,
    /// Polls parked in this process.
    pub(super) pending_polls: usize,
    /// The worker that last registered with each token, so that a command channel
    /// opened without a worker id in its URL (the reference worker's) finds its worker.
    pub(super) token_owner: HashMap<String, String>,
    pub(super) tokens: HashMap<String, IssuedToken>,
    /// Refresh tokens (1.0b17), each bound to the worker it was issued to.
    pub(super) refresh_tokens: HashMap<String, IssuedToken>,
    pub(super) next_token: u64,
    pub(super) limiter: HashMap<String, Window>,
    /// Who waits for which task's result (`Orchestrator::wait_result`): woken one task
    /// at a time, not with every change of the state.
    pub(super) result_waiters: Waiters,
    /// Parked polls by skill, and by worker ([`worker_key`]): an enqueued task wakes
    /// the polls of workers with its skill only, a worker's registration or heartbeat
    /// its own polls only, not every parked poll.
    pub(super) poll_waiters: Waiters,
}

/// The key of `worker_id`'s own parked polls among the poll waiters: `@` cannot start
/// a skill name (an identifier), so it names no skill.
pub(super) fn worker_key(worker_id: &str) -> String {
    format!("@{worker_id}")
}

/// Waiters by key (a task id, a skill name): one notification per key, shared by
/// everyone waiting on it, kept while someone does.
#[derive(Default)]
pub(super) struct Waiters(HashMap<String, Arc<Notify>>);

impl Waiters {
    /// Joins the waiters of `key`; hand the notification back to
    /// [`leave`](Self::leave).
    pub(super) fn join(&mut self, key: &str) -> Arc<Notify> {
        match self.0.get(key) {
            Some(notify) => notify.clone(),
            None => {
                let notify = Arc::new(Notify::new());
                self.0.insert(key.to_owned(), notify.clone());
                notify
            }
        }
    }

    /// Leaves the waiters of `key`; the key goes when its last waiter does.
    pub(super) fn leave(&mut self, key: &str, notify: Arc<Notify>) {
        // The map's and this one's: no other waiter left.
        if Arc::strong_count(&notify) == 2 {
            self.0.remove(key);
        }
    }

    /// Wakes whoever waits on `key`.
    pub(super) fn wake(&self, key: &str) {
        if let Some(notify) = self.0.get(key) {
            notify.notify_waiters();
        }
    }

    /// Wakes whoever waits on `key`, and leaves a permit for a waiter that joined but
    /// is not listening yet (it wakes as soon as it listens): for a change the waiter
    /// could not see by looking at the queues (its worker's skills or status).
    pub(super) fn wake_with_permit(&self, key: &str) {
        if let Some(notify) = self.0.get(key) {
            notify.notify_waiters();
            notify.notify_one();
        }
    }

    /// Wakes every waiter (after changes not named key by key).
    pub(super) fn wake_all(&self) {
        for notify in self.0.values() {
            notify.notify_waiters();
        }
    }

    /// Whether anyone waits at all.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many keys have waiters.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `key` has waiters.
    #[cfg(test)]
    pub(super) fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

impl State {
    /// Wakes the waiters of `task_id`'s result, and those of the tasks forgotten since
    /// (the oldest ended tasks beyond the retention bound).
    pub(super) fn settled(&mut self, task_id: &str) {
        self.result_waiters.wake(task_id);
        for forgotten in self.store.forgotten.drain(..) {
            self.result_waiters.wake(&forgotten);
        }
    }

    /// Cancels one task; a running one's holder also gets the command on its channel
    /// (a full channel keeps the cancel in the heartbeat replies only).
    pub(super) fn cancel(&mut self, cfg: &Config, task_id: &str) -> Result<CancelOutcome> {
        let (outcome, command) = self.store.cancel(cfg, task_id)?;
        if let (CancelOutcome::Signalled { worker_id }, Some(command)) = (&outcome, command) {
            self.send_command(worker_id, command);
        }
        Ok(outcome)
    }

    /// Puts `command` on `worker_id`'s channel, if it has one open in this process. A
    /// full channel keeps the command in the heartbeat replies only; a closed one is
    /// forgotten.
    pub(super) fn send_command(&mut self, worker_id: &str, command: WorkerCommand) {
        if let Some(tx) = self.channels.get(worker_id)
            && let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Box::new(command))
        {
            self.channels.remove(worker_id);
        }
    }

    /// Opens `worker_id`'s command channel in this process with `pending` already in
    /// it, replacing (and so closing) its previous one; at most `max_workers` channels.
    pub(super) fn open_channel(
        &mut self,
        cfg: &Config,
        worker_id: &str,
        pending: impl IntoIterator<Item = WorkerCommand>,
    ) -> HandlerResult<CommandReceiver> {
        let cap = cfg.max_workers.max(1);
        if !self.channels.contains_key(worker_id) && self.channels.len() >= cap {
            self.channels.retain(|_, tx| !tx.is_closed());
            if self.channels.len() >= cap {
                return Err(HandlerError::unavailable(format!(
                    "too many command channels (at most {cap})"
                )));
            }
        }
        let (tx, rx) = mpsc::channel(cfg.command_capacity.max(1));
        for command in pending {
            let _ = tx.try_send(Box::new(command));
        }
        self.channels.insert(worker_id.to_owned(), tx);
        Ok(rx)
    }

    /// Marks silent workers as gone (closing their command channels) and requeues what
    /// they held.
    pub(super) fn reap(&mut self, cfg: &Config, now: Instant) -> Vec<String> {
        let gone = self.store.reap(cfg, now);
        for id in &gone {
            // Dropping the sender closes the worker's command channel.
            self.channels.remove(id);
        }
        gone
    }

    /// What the host sees of each worker.
    pub(super) fn worker_info(&self) -> Vec<WorkerInfo> {
        let mut out = self.store.worker_info();
        for w in &mut out {
            w.command_channel = self
                .channels
                .get(&w.worker_id)
                .is_some_and(|tx| !tx.is_closed());
        }
        out
    }
}
