//! OpenTelemetry for RXON: the W3C Trace Context (`traceparent`, `tracestate`) that
//! tasks carry in `tracing_context` and 1.0b17 events in `trace_context`, read and
//! written as [`tracing`] spans through `tracing-opentelemetry`.
//!
//! The orchestrator stamps each task with the span that enqueued it
//! ([`inject_span`]); the worker opens the task's span as a child of it
//! ([`continue_trace`]) and stamps its events with the task's span; the orchestrator
//! opens each event's span as a child of that. The format is W3C Trace Context, as
//! avtomatika and its worker SDK use, whatever propagator the application installed
//! globally; this crate needs the OpenTelemetry API only, the application picks the
//! SDK and exporter. Without an OpenTelemetry layer in the subscriber nothing is written (a
//! span has no OpenTelemetry context), and a carrier without a valid `traceparent`
//! continues nothing.
//!
//! # Quickstart
//!
//! ```
//! use std::collections::BTreeMap;
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")));
//! tracing::subscriber::with_default(subscriber, || {
//!     // Orchestrator side: the task carries the span that enqueued it.
//!     let enqueue = tracing::info_span!("enqueue");
//!     let mut tracing_context = BTreeMap::new();
//!     rxon_otel::inject_span(&enqueue, &mut tracing_context);
//!     assert!(tracing_context["traceparent"].starts_with("00-"));
//!
//!     // Worker side: the task's span continues that trace.
//!     let task = tracing::info_span!("task");
//!     assert!(rxon_otel::continue_trace(&task, &tracing_context));
//!     assert_eq!(rxon_otel::trace_id(&task), rxon_otel::trace_id(&enqueue));
//! });
//! ```
//!
//! # Feature flags
//!
//! This crate has no features.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::collections::BTreeMap;
use std::str::FromStr as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` key: `00-<trace id>-<parent span id>-<flags>`.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` key: vendor entries, passed along unchanged.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` read from a peer: 512 bytes, what W3C Trace Context asks
/// every implementation to propagate.
pub const MAX_TRACESTATE: usize = rxon_core::validate::MAX_TRACESTATE_LEN;

/// Writes the OpenTelemetry context `cx` into `carrier` (`traceparent`, and
/// `tracestate` when it has entries); writes nothing when `cx` has no valid span.
pub fn inject_context(cx: &Context, carrier: &mut BTreeMap<String, String>) {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    carrier.insert(
        TRACEPARENT.to_owned(),
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            (sc.trace_flags() & TraceFlags::SAMPLED).to_u8()
        ),
    );
    // A state that came with another parent (or was dropped as too long) goes.
    carrier.remove(TRACESTATE);
    let state = sc.trace_state().header();
    if !state.is_empty() {
        carrier.insert(TRACESTATE.to_owned(), state);
    }
}

/// Writes `span`'s OpenTelemetry context into `carrier`, as [`inject_context`].
pub fn inject_span(span: &tracing::Span, carrier: &mut BTreeMap<String, String>) {
    inject_context(&span.context(), carrier);
}

/// The remote parent `carrier` names, when its `traceparent` is valid (a
/// `tracestate` over [`MAX_TRACESTATE`] bytes is dropped, the parent kept).
pub fn extract(carrier: &BTreeMap<String, String>) -> Option<Context> {
    let parent = carrier
        .get(TRACEPARENT)
        .filter(|p| rxon_core::validate::is_traceparent(p))?;
    let mut parts = parent.split('-').skip(1);
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?) & TraceFlags::SAMPLED;
    let state = carrier
        .get(TRACESTATE)
        .filter(|s| rxon_core::validate::is_tracestate(s))
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let sc = SpanContext::new(trace, span, flags, true, state);
    sc.is_valid()
        .then(|| Context::new().with_remote_span_context(sc))
}

/// Makes `span` a child of the remote parent in `carrier`; `false` (and `span`
/// unchanged) when the carrier has none, or when no OpenTelemetry layer records
/// `span`.
pub fn continue_trace(span: &tracing::Span, carrier: &BTreeMap<String, String>) -> bool {
    match extract(carrier) {
        Some(parent) => span.set_parent(parent).is_ok(),
        None => false,
    }
}

/// `span`'s OpenTelemetry trace id; [`TraceId::INVALID`] when it has none.
pub fn trace_id(span: &tracing::Span) -> TraceId {
    span.context().span().span_context().trace_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    fn recorded<T>(f: impl FnOnce() -> T) -> (T, Vec<opentelemetry_sdk::trace::SpanData>) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let out = tracing::subscriber::with_default(subscriber, f);
        let _ = provider.force_flush();
        (out, exporter.get_finished_spans().unwrap())
    }

    #[test]
    fn a_continued_span_is_the_child_of_the_injected_one() {
        let (carrier, spans) = recorded(|| {
            let parent = tracing::info_span!("enqueue");
            let mut carrier = BTreeMap::new();
            inject_span(&parent, &mut carrier);
            drop(parent);
            let child = tracing::info_span!("task");
            assert!(continue_trace(&child, &carrier));
            carrier
        });
        let parent = spans.iter().find(|s| s.name == "enqueue").unwrap();
        let child = spans.iter().find(|s| s.name == "task").unwrap();
        assert_eq!(
            child.span_context.trace_id(),
            parent.span_context.trace_id()
        );
        assert_eq!(child.parent_span_id, parent.span_context.span_id());
        assert_eq!(
            carrier[TRACEPARENT],
            format!(
                "00-{}-{}-01",
                parent.span_context.trace_id(),
                parent.span_context.span_id()
            )
        );
    }

    #[test]
    fn a_remote_traceparent_and_tracestate_are_continued() {
        let carrier = BTreeMap::from([
            (
                TRACEPARENT.to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
            (TRACESTATE.to_owned(), "rxon=t61rcWkgMzE".to_owned()),
        ]);
        let (state, spans) = recorded(|| {
            let span = tracing::info_span!("task");
            assert!(continue_trace(&span, &carrier));
            let mut out = BTreeMap::new();
            inject_span(&span, &mut out);
            out.get(TRACESTATE).cloned()
        });
        let task = &spans[0];
        assert_eq!(
            task.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(task.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(state.as_deref(), Some("rxon=t61rcWkgMzE"));
    }

    #[test]
    fn invalid_or_oversized_carriers_continue_nothing() {
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let long = format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01{}",
            "0".repeat(64)
        );
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let dashes = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0-";
        for parent in [zero, "garbage", "", long.as_str(), upper, ff, dashes] {
            let carrier = BTreeMap::from([(TRACEPARENT.to_owned(), parent.to_owned())]);
            assert!(extract(&carrier).is_none(), "{parent:?}");
        }
        assert!(extract(&BTreeMap::new()).is_none());
        // An oversized tracestate is dropped; the parent still counts.
        let carrier = BTreeMap::from([
            (
                TRACEPARENT.to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
            (
                TRACESTATE.to_owned(),
                format!("a={}", "x".repeat(MAX_TRACESTATE)),
            ),
        ]);
        let cx = extract(&carrier).unwrap();
        assert_eq!(cx.span().span_context().trace_state().header(), "");
        // Stamped again with a span continuing it, the carrier loses the old state.
        let (carrier, _) = recorded(|| {
            let span = tracing::info_span!("enqueue");
            assert!(continue_trace(&span, &carrier));
            let mut carrier = carrier.clone();
            inject_span(&span, &mut carrier);
            carrier
        });
        assert!(carrier[TRACEPARENT].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!carrier.contains_key(TRACESTATE), "{carrier:?}");
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_written() {
        let span = tracing::info_span!("untraced");
        let mut carrier = BTreeMap::new();
        inject_span(&span, &mut carrier);
        assert!(carrier.is_empty());
        assert_eq!(trace_id(&span), TraceId::INVALID);
    }
}
