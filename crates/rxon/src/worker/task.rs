//! What a task handler sees and returns: [`TaskContext`], [`TaskFailure`].

use rxon_core::{
    ErrorCode, Map, ProgressUpdatePayload, RxonError, TaskError, Transport, Value,
    WorkerEventPayload,
};
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

/// Why a handler failed; becomes the result's [`TaskError`].
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    /// The error code reported to the orchestrator.
    pub code: ErrorCode,
    /// Human-readable description.
    pub message: String,
    /// Structured details.
    pub details: Option<Map>,
}

impl TaskFailure {
    /// A failure with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TaskFailure {
            code,
            message: message.into(),
            details: None,
        }
    }
    /// `TRANSIENT_ERROR`: may succeed if tried again.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Transient, message)
    }
    /// `PERMANENT_ERROR`: will not succeed if tried again.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Permanent, message)
    }
    /// `INVALID_INPUT_ERROR`: the task's parameters are wrong.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
    /// `RESOURCE_EXHAUSTED_ERROR`: not enough local resources right now.
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceExhausted, message)
    }
    /// `DEPENDENCY_ERROR`: something the task depends on failed.
    pub fn dependency(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Dependency, message)
    }
    /// `INTERNAL_ERROR`: a bug or unexpected state in the worker.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Adds one detail.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    pub(crate) fn into_task_error(self) -> TaskError {
        TaskError {
            code: self.code,
            message: self.message,
            details: self.details,
        }
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for TaskFailure {}

impl From<RxonError> for TaskFailure {
    /// A library error inside a handler: retryable kinds are transient, integrity and
    /// validation keep their codes, the rest is internal.
    fn from(e: RxonError) -> Self {
        let code = match e.kind() {
            rxon_core::ErrorKind::Integrity => ErrorCode::IntegrityMismatch,
            rxon_core::ErrorKind::ParamValidation | rxon_core::ErrorKind::InvalidInput => {
                ErrorCode::InvalidInput
            }
            _ if e.is_retryable() => ErrorCode::Transient,
            _ => ErrorCode::Internal,
        };
        TaskFailure::new(code, e.to_string())
    }
}

/// The task's side of the runtime: progress reporting and cancellation.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) task_id: String,
    pub(crate) job_id: String,
    pub(crate) worker_id: String,
    pub(crate) contract: Option<Arc<rxon_schema::Contract>>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) cancelled: watch::Receiver<bool>,
    /// The task span's W3C context, which events carry (feature `otel`; empty without).
    pub(crate) trace_context: std::collections::BTreeMap<String, String>,
}

/// The W3C context of the current span (the task's), for its events: feature `otel`.
pub(crate) fn current_trace() -> std::collections::BTreeMap<String, String> {
    #[allow(unused_mut)]
    let mut carrier = std::collections::BTreeMap::new();
    #[cfg(feature = "otel")]
    rxon_otel::inject_span(&tracing::Span::current(), &mut carrier);
    carrier
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("task_id", &self.task_id)
            .field("job_id", &self.job_id)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl TaskContext {
    /// The task's id.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// `true` once the orchestrator cancelled the task (by command or heartbeat reply),
    /// or the worker is shutting down past its grace period.
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Resolves when the task is cancelled; use it in `tokio::select!` beside the work.
    pub async fn cancelled(&self) {
        let mut rx = self.cancelled.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Sends an event of `event_type` about this task (1.0b17; any type the skill
    /// declares in its `events_schema`), e.g. `ctx.emit_event("frame_rendered",
    /// map! {"frame": 7})`. Unlike [`progress`](Self::progress), the outcome is
    /// returned: the orchestrator may refuse the event (a payload its schema rejects,
    /// a task this worker no longer holds), and a 1.0b3 orchestrator has no events.
    ///
    /// A payload the skill's own `events_schema` rejects is refused here
    /// ([`ErrorKind::InvalidInput`](rxon_core::ErrorKind::InvalidInput)), before it is sent.
    pub async fn emit_event(&self, event_type: &str, payload: Map) -> rxon_core::Result<()> {
        if let Some(c) = &self.contract
            && let Err(v) = c.check_event(event_type, &payload)
        {
            return Err(RxonError::invalid_input(format!(
                "the payload of the {event_type:?} event violates the skill's events_schema: {v}"
            )));
        }
        let mut event = WorkerEventPayload::new(&self.worker_id, event_type, payload)
            .for_task(&self.task_id, &self.job_id);
        // The orchestrator handles the event as a child of this task's span.
        if !self.trace_context.is_empty() {
            event.trace_context = Some(self.trace_context.clone());
        }
        self.transport.emit_event(&event).await
    }

    /// Reports progress (`0.0..=1.0` by convention). Failures to deliver are logged,
    /// not returned: progress is advisory and must not fail the task.
    pub async fn progress(&self, progress: f64, message: Option<&str>) {
        let mut update = ProgressUpdatePayload::new(&self.task_id, &self.job_id, progress);
        update.message = message.map(str::to_owned);
        if let Err(e) = self.transport.send_progress(&update).await {
            tracing::debug!(task_id = %self.task_id, error = %e, "progress not delivered");
        }
    }
}
