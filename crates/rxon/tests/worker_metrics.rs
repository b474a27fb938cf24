//! The worker runtime's metrics (feature `metrics`), read through the Prometheus
//! exporter: tasks by outcome, retries and backoff by operation. A test binary of its
//! own: the recorder it installs is global to the process.
#![cfg(all(feature = "metrics", feature = "testing", feature = "worker"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::testing::{MockHandle, Operation};
use rxon::worker::Worker;
use rxon::{ErrorKind, Map, TaskPayload, Transport};
use std::sync::Arc;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(15);

fn task(id: &str, task_type: &str) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: task_type.into(),
        params: Map::new(),
        ..Default::default()
    }
}

/// The value of `series` in the exporter's text; 0 when it was never recorded.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn tasks_retries_and_backoff_are_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_millis(100))
        .handler("echo", |task, _| async move { Ok(task.params) })
        .build()
        .unwrap();
    for _ in 0..3 {
        mock.fail_next(Operation::Result, ErrorKind::Network, "connection reset");
    }
    mock.fail_next(Operation::Poll, ErrorKind::Network, "connection refused");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run().await }
    });
    mock.push_task(task("e-1", "echo"));
    // No handler for "other": a failure result.
    mock.push_task(task("e-2", "other"));
    mock.wait_for_results(2, BOUND).await.unwrap();
    stop.shutdown();
    tokio::time::timeout(BOUND, run)
        .await
        .expect("the worker stops in time")
        .unwrap()
        .unwrap();

    let text = recorder.render();
    for (series, expected) in [
        (r#"rxon_worker_tasks_total{outcome="success"}"#, 1.0),
        (r#"rxon_worker_tasks_total{outcome="failure"}"#, 1.0),
        (r#"rxon_worker_tasks_total{outcome="cancelled"}"#, 0.0),
        (r#"rxon_worker_retries_total{operation="result"}"#, 3.0),
        (r#"rxon_worker_retries_total{operation="poll"}"#, 1.0),
        (
            r#"rxon_worker_backoff_seconds_count{operation="result"}"#,
            3.0,
        ),
        (
            r#"rxon_worker_backoff_seconds_count{operation="poll"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), expected, "{series} in:\n{text}");
    }
    // Each pause is within the runtime's backoff (first pause 200 ms ± 25 %, at most
    // 60 s).
    let pauses = value(
        &text,
        r#"rxon_worker_backoff_seconds_sum{operation="result"}"#,
    );
    assert!((0.45..=180.0).contains(&pauses), "{pauses} in:\n{text}");
}
