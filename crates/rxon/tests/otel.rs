//! Trace propagation (feature `otel`) across a real HTTP connection on 127.0.0.1, read
//! back from an in-memory exporter: the orchestrator's `rxon.enqueue` span reaches the
//! worker in the task's `tracing_context` and the worker's task span is its child; the
//! handler's own spans are the task's children; the task's span rides back in the
//! event's `trace_context` and the orchestrator's `rxon.event` span is its child. A
//! test binary of its own: the subscriber is global to the process.
#![cfg(all(
    feature = "otel",
    feature = "orchestrator",
    feature = "worker",
    feature = "http"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rxon::orchestrator::Orchestrator;
use rxon::worker::Worker;
use rxon::{Listener, Map, TaskPayload, TransportConfig, map};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

const BOUND: Duration = Duration::from_secs(15);

/// The process's exporter and provider, installed by the first test that asks.
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("rxon-test")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        (exporter, provider)
    })
}

/// The finished spans of `trace`, once every one of `names` is among them: the
/// worker closes its task span after the result is delivered, so a little after the
/// orchestrator has it (bounded: 200 looks, 10 s).
async fn spans_of(trace: TraceId, names: &[&str]) -> Vec<SpanData> {
    let (exporter, provider) = exporter();
    for _ in 0..200 {
        provider.force_flush().unwrap();
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the spans {names:?} of {trace} did not all finish");
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "{name} in {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

fn task(id: &str, tracing_context: BTreeMap<String, String>) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: "traced".into(),
        params: Map::new(),
        tracing_context,
        ..Default::default()
    }
}

/// An orchestrator behind an HTTP listener, and a running worker (1.0b17, negotiated)
/// whose `traced` handler opens a span of its own and emits an event.
async fn setup() -> (
    Orchestrator,
    rxon::http::HttpListener,
    rxon::worker::ShutdownHandle,
) {
    let orch = Orchestrator::builder().token("otel-secret").build();
    let listener = rxon::http::HttpListener::bind("127.0.0.1:0".parse().unwrap());
    listener.start(Arc::new(orch.clone())).await.unwrap();
    let url = listener.endpoint().unwrap();
    let config = TransportConfig::new(&url, "otel-w1", "otel-secret");
    let transport = rxon::create_transport_from_config(&config).unwrap();
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_secs(1))
        .handler("traced", |task, ctx| async move {
            let work = tracing::info_span!("handler.work");
            async {
                ctx.emit_event("checkpoint", map! {"at": 1}).await?;
                Ok(task.params)
            }
            .instrument(work)
            .await
        })
        .build()
        .unwrap();
    let stop = worker.shutdown_handle();
    tokio::spawn(async move { worker.run().await });
    (orch, listener, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_crosses_the_connection_to_the_worker_and_back() {
    exporter();
    let (orch, _listener, stop) = setup().await;
    let request = tracing::info_span!("client.request");
    let trace = rxon::otel::trace_id(&request);
    assert_ne!(trace, TraceId::INVALID);
    orch.enqueue(task("t-1", BTreeMap::new()))
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    let result = orch.wait_result("t-1", BOUND).await.unwrap();
    assert_eq!(result.status, rxon::TaskStatus::Success, "{result:?}");
    stop.shutdown();

    let spans = spans_of(
        trace,
        &[
            "client.request",
            "rxon.enqueue",
            "task",
            "handler.work",
            "rxon.event",
        ],
    )
    .await;
    let request = one(&spans, "client.request");
    let enqueue = one(&spans, "rxon.enqueue");
    let task = one(&spans, "task");
    let work = one(&spans, "handler.work");
    let event = one(&spans, "rxon.event");
    assert_eq!(enqueue.parent_span_id, request.span_context.span_id());
    // Crossed the connection in the task's tracing_context.
    assert_eq!(task.parent_span_id, enqueue.span_context.span_id());
    assert!(
        task.parent_span_is_remote,
        "the task's parent came over the wire"
    );
    assert_eq!(work.parent_span_id, task.span_context.span_id());
    // Crossed back in the event's trace_context.
    assert_eq!(event.parent_span_id, task.span_context.span_id());
    assert!(event.parent_span_is_remote);
}

/// A task that already carries a caller's `traceparent` (from an HTTP request, say)
/// goes on with that trace: `rxon.enqueue` is the remote span's child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_traceparent_is_continued() {
    exporter();
    let (orch, _listener, stop) = setup().await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let caller = BTreeMap::from([(
        "traceparent".to_owned(),
        format!("00-{trace}-b7ad6b7169203331-01"),
    )]);
    orch.enqueue(task("t-2", caller)).await.unwrap();
    orch.wait_result("t-2", BOUND).await.unwrap();
    stop.shutdown();
    let spans = spans_of(TraceId::from_hex(trace).unwrap(), &["rxon.enqueue", "task"]).await;
    let enqueue = one(&spans, "rxon.enqueue");
    assert_eq!(
        enqueue.parent_span_id,
        SpanId::from_hex("b7ad6b7169203331").unwrap()
    );
    assert_eq!(
        one(&spans, "task").parent_span_id,
        enqueue.span_context.span_id()
    );
}
