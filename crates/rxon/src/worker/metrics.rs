//! The worker runtime's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): install a recorder in the application (for Prometheus,
//! `metrics-exporter-prometheus`) and they appear under these names; without the
//! feature nothing is recorded.
//!
//! | name | type | labels | counts |
//! | --- | --- | --- | --- |
//! | `rxon_worker_tasks_total` | counter | `outcome` (`success`, `failure`, `cancelled`, `ignored`: the orchestrator refused the result) | tasks whose result was delivered |
//! | `rxon_worker_retries_total` | counter | `operation` (`register`, `poll`, `result`, `commands`) | failed calls the runtime will try again |
//! | `rxon_worker_backoff_seconds` | histogram | `operation` | the pause before each of those tries |
//!
//! ```
//! assert_eq!(rxon::worker::metrics::TASKS, "rxon_worker_tasks_total");
//! ```

use std::time::Duration;

/// Counter, label `outcome`: tasks whose result was delivered.
pub const TASKS: &str = "rxon_worker_tasks_total";
/// Counter, label `operation`: failed calls the runtime will try again.
pub const RETRIES: &str = "rxon_worker_retries_total";
/// Histogram, seconds, label `operation`: the pause before each retry.
pub const BACKOFF_SECONDS: &str = "rxon_worker_backoff_seconds";

/// A task's result was delivered with `outcome`.
pub(super) fn delivered(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(TASKS, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// `operation` failed and is tried again after `pause`; returns `pause`.
pub(super) fn retrying(operation: &'static str, pause: Duration) -> Duration {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!(RETRIES, "operation" => operation).increment(1);
        ::metrics::histogram!(BACKOFF_SECONDS, "operation" => operation)
            .record(pause.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = operation;
    pause
}
