//! Trace propagation (feature `otel`): each task is enqueued in an `rxon.enqueue` span
//! whose W3C context the task carries to its worker in `tracing_context`, and each
//! 1.0b17 event is handled in an `rxon.event` span, the child of the span its worker
//! put in the event's `trace_context`. Without the feature both are plain calls.

use rxon_core::{HandlerResult, Result, TaskPayload, WorkerEventPayload};
use std::future::Future;

/// Stores `task` (through `store`) in an `rxon.enqueue` span and stamps the task with
/// it. A `traceparent` the task already carries (a caller's, e.g. from an HTTP
/// request) is that span's parent, so the trace goes on from it.
#[cfg(feature = "otel")]
pub(crate) async fn enqueue<F: Future<Output = Result<()>>>(
    mut task: TaskPayload,
    store: impl FnOnce(TaskPayload) -> F,
) -> Result<()> {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "rxon.enqueue",
        task_id = %task.task_id,
        job_id = %task.job_id,
        task_type = %task.task_type,
    );
    rxon_otel::continue_trace(&span, &task.tracing_context);
    // Nothing is written without an OpenTelemetry layer: the caller's context stays.
    rxon_otel::inject_span(&span, &mut task.tracing_context);
    store(task).instrument(span).await
}

#[cfg(not(feature = "otel"))]
pub(crate) async fn enqueue<F: Future<Output = Result<()>>>(
    task: TaskPayload,
    store: impl FnOnce(TaskPayload) -> F,
) -> Result<()> {
    store(task).await
}

/// The span an event is handled in: `rxon.event`, the child of the worker's span its
/// `trace_context` names.
#[cfg(feature = "otel")]
pub(crate) fn event_span(event: &WorkerEventPayload) -> tracing::Span {
    let span = tracing::info_span!(
        "rxon.event",
        event_type = %event.event_type,
        worker_id = %event.worker_id,
        task_id = event.origin_task_id.as_deref().unwrap_or(""),
    );
    if let Some(carrier) = &event.trace_context {
        rxon_otel::continue_trace(&span, carrier);
    }
    span
}

/// Without the feature: no span.
#[cfg(not(feature = "otel"))]
pub(crate) struct Untraced;

/// Without the feature: no span.
#[cfg(not(feature = "otel"))]
pub(crate) fn event_span(_event: &WorkerEventPayload) -> Untraced {
    Untraced
}

/// Runs `handle` in `span`.
#[cfg(feature = "otel")]
pub(crate) fn traced<T>(
    span: tracing::Span,
    handle: impl Future<Output = HandlerResult<T>>,
) -> impl Future<Output = HandlerResult<T>> {
    tracing::Instrument::instrument(handle, span)
}

/// Without the feature: `handle` itself.
#[cfg(not(feature = "otel"))]
pub(crate) fn traced<T>(
    _span: Untraced,
    handle: impl Future<Output = HandlerResult<T>>,
) -> impl Future<Output = HandlerResult<T>> {
    handle
}
