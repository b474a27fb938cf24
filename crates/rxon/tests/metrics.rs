//! Metrics (feature `metrics`) read through the Prometheus exporter: the worker
//! runtime's tasks by outcome, retries and backoff by operation; a listener's open and
//! refused connections. A test binary of its own: the recorder is global to the
//! process, and each test reads only its own series.
#![cfg(all(
    feature = "metrics",
    feature = "testing",
    feature = "worker",
    feature = "http"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rxon::testing::{MockHandle, Operation};
use rxon::worker::Worker;
use rxon::{ErrorKind, Map, TaskPayload, Transport};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::AsyncReadExt;

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

/// The process's recorder, installed by the first test that asks.
fn recorder() -> &'static PrometheusHandle {
    static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
    RECORDER.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
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
    let recorder = recorder();
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

/// Scrapes until `series` is `expected` (bounded: 200 looks, 10 s).
async fn until(series: &str, expected: f64) {
    for _ in 0..200 {
        if value(&recorder().render(), series) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} never became {expected}:\n{}", recorder().render());
}

#[tokio::test]
async fn a_listener_counts_its_open_and_refused_connections() {
    use rxon::Listener;
    let open = r#"rxon_listener_connections{listener="http"}"#;
    let refused = r#"rxon_listener_connections_refused_total{listener="http"}"#;
    let mut config = rxon::http::HttpListenerConfig::default();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.max_connections = 1;
    let listener = rxon::http::HttpListener::with_config(config);
    listener
        .start(Arc::new(
            rxon::orchestrator::Orchestrator::builder().build(),
        ))
        .await
        .unwrap();
    let addr = listener
        .endpoint()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    assert_eq!(value(&recorder().render(), open), 0.0);
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    until(open, 1.0).await;
    // Over the limit: answered 503 and closed, counted as refused.
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(BOUND, second.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(value(&recorder().render(), refused), 1.0);
    assert_eq!(value(&recorder().render(), open), 1.0);
    drop(first);
    until(open, 0.0).await;
    listener.stop(Duration::from_secs(1)).await.unwrap();
}
