//! The orchestrator's metrics, through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`): install a recorder in the application (for Prometheus,
//! `metrics-exporter-prometheus`) and they appear under these names; with no recorder
//! installed each is a call that does nothing, and without the feature there is no
//! call at all.
//!
//! | name | type | labels | counts |
//! | --- | --- | --- | --- |
//! | `rxon_orchestrator_tasks_enqueued_total` | counter | | tasks accepted by `enqueue` |
//! | `rxon_orchestrator_tasks_claimed_total` | counter | | tasks handed to a worker's poll |
//! | `rxon_orchestrator_tasks_requeued_total` | counter | | tasks put back in their queue: a claim never confirmed, a worker gone (in-memory storage) |
//! | `rxon_orchestrator_polls_waiting` | gauge | | polls being answered: parked until a task comes or their wait ends |
//! | `rxon_orchestrator_results_total` | counter | `outcome` (`accepted`, `ignored`), `reason` (the reason a result was ignored, empty when accepted) | results answered |
//! | `rxon_orchestrator_auth_failures_total` | counter | `operation` (the handler call that refused: `authenticate`, which listeners call before they read a body, `register`, `poll`, `result`, …), `kind` (`unauthorized`: no or a wrong credential; `forbidden`: a credential acting beyond its rights) | refused requests |
//! | `rxon_orchestrator_dispatch_seconds` | histogram | | from a task's enqueue to its claim by a worker (in-memory storage) |
//!
//! The Redis storage counts all but the two marked in-memory: its requeues, and the
//! claims that would time a dispatch, happen inside its scripts.
//!
//! ```
//! // The names are constants, for dashboards and tests.
//! assert_eq!(rxon_orchestrator::metrics::TASKS_CLAIMED, "rxon_orchestrator_tasks_claimed_total");
//! ```

use rxon_core::{HandlerResult, ResultOutcome, TaskPayload};
use std::future::Future;

/// Counter: tasks accepted by `enqueue`.
pub const TASKS_ENQUEUED: &str = "rxon_orchestrator_tasks_enqueued_total";
/// Counter: tasks handed to a worker's poll.
pub const TASKS_CLAIMED: &str = "rxon_orchestrator_tasks_claimed_total";
/// Counter: tasks put back in their queue (in-memory storage).
pub const TASKS_REQUEUED: &str = "rxon_orchestrator_tasks_requeued_total";
/// Gauge: polls being answered, parked until a task comes or their wait ends.
pub const POLLS_WAITING: &str = "rxon_orchestrator_polls_waiting";
/// Counter, labels `outcome` and `reason`: results answered.
pub const RESULTS: &str = "rxon_orchestrator_results_total";
/// Counter, labels `operation` and `kind`: requests refused for their credential.
pub const AUTH_FAILURES: &str = "rxon_orchestrator_auth_failures_total";
/// Histogram, seconds: from a task's enqueue to its claim (in-memory storage).
pub const DISPATCH_SECONDS: &str = "rxon_orchestrator_dispatch_seconds";

/// Serves one handler call, counting a refusal for its credential.
#[cfg(feature = "metrics")]
pub(crate) async fn call<T>(
    operation: &'static str,
    call: impl Future<Output = HandlerResult<T>>,
) -> HandlerResult<T> {
    let answer = call.await;
    if let Err(e) = &answer {
        let kind = match e.kind() {
            rxon_core::HandlerErrorKind::Unauthorized => "unauthorized",
            rxon_core::HandlerErrorKind::Forbidden => "forbidden",
            _ => return answer,
        };
        metrics::counter!(AUTH_FAILURES, "operation" => operation, "kind" => kind).increment(1);
    }
    answer
}

/// Without the feature: the call itself.
#[cfg(not(feature = "metrics"))]
pub(crate) fn call<F>(_operation: &'static str, call: F) -> F {
    call
}

/// Serves a poll: waiting while it runs, claimed when it hands out a task.
#[cfg(feature = "metrics")]
pub(crate) async fn poll(
    poll: impl Future<Output = HandlerResult<Option<TaskPayload>>>,
) -> HandlerResult<Option<TaskPayload>> {
    /// Counts the poll out however it ends, dropped mid-wait included.
    struct Waiting(metrics::Gauge);
    impl Drop for Waiting {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }
    let gauge = metrics::gauge!(POLLS_WAITING);
    gauge.increment(1.0);
    let _waiting = Waiting(gauge);
    let answer = call("poll", poll).await;
    if let Ok(Some(_)) = &answer {
        metrics::counter!(TASKS_CLAIMED).increment(1);
    }
    answer
}

/// Without the feature: the poll itself.
#[cfg(not(feature = "metrics"))]
pub(crate) fn poll<F: Future<Output = HandlerResult<Option<TaskPayload>>>>(poll: F) -> F {
    poll
}

/// Serves a result, counting its outcome.
#[cfg(feature = "metrics")]
pub(crate) async fn result(
    result: impl Future<Output = HandlerResult<ResultOutcome>>,
) -> HandlerResult<ResultOutcome> {
    let answer = call("result", result).await;
    match &answer {
        Ok(ResultOutcome::Accepted) => {
            metrics::counter!(RESULTS, "outcome" => "accepted", "reason" => "").increment(1);
        }
        Ok(ResultOutcome::Ignored { reason, .. }) => {
            let reason = reason.as_str().to_owned();
            metrics::counter!(RESULTS, "outcome" => "ignored", "reason" => reason).increment(1);
        }
        // An outcome added to the enum later.
        Ok(_) => {
            metrics::counter!(RESULTS, "outcome" => "other", "reason" => "").increment(1);
        }
        Err(_) => {}
    }
    answer
}

/// Without the feature: the result call itself.
#[cfg(not(feature = "metrics"))]
pub(crate) fn result<F: Future<Output = HandlerResult<ResultOutcome>>>(result: F) -> F {
    result
}

/// A task was enqueued.
pub(crate) fn enqueued() {
    #[cfg(feature = "metrics")]
    metrics::counter!(TASKS_ENQUEUED).increment(1);
}

/// A task went back to its queue.
pub(crate) fn requeued() {
    #[cfg(feature = "metrics")]
    metrics::counter!(TASKS_REQUEUED).increment(1);
}

/// A task was claimed `since` its enqueue.
pub(crate) fn dispatched(since: tokio::time::Instant) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(DISPATCH_SECONDS).record(since.elapsed().as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = since;
}
