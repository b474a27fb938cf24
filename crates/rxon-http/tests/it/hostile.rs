//! Hostile input on every route, generated: whatever the bytes, the listener answers
//! with a status and a JSON error body, never a panic or a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use rxon_http::{HttpService, ServiceConfig};
use rxon_orchestrator::Orchestrator;
use std::sync::Arc;
use std::time::Duration;

const LIMIT: usize = 64 * 1024;

fn service() -> HttpService {
    let mut config = ServiceConfig::default();
    config.max_body_bytes = LIMIT;
    config.poll_wait = Duration::from_millis(1);
    HttpService::with_config(Arc::new(Orchestrator::builder().token("t").build()), config)
}

/// Sends one request through the service in memory; returns status and body.
fn call(service: &HttpService, method: &str, target: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let request = http::Request::builder()
            .method(method)
            .uri(target)
            .header("X-Worker-Token", "t")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), service.handle(request))
            .await
            .expect("answered in bounded time");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec())
    })
}

fn check(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        status != 500,
        "500 with {:?}",
        String::from_utf8_lossy(body)
    );
    if status >= 400 {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| TestCaseError::fail(format!("error body is not JSON: {e}")))?;
        prop_assert!(v["error"].is_string(), "no error message in {v}");
    }
    Ok(())
}

/// JSON documents of any shape, including the messages' own field names.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[a-z_-]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("worker_id".to_owned()),
                    Just("task_id".to_owned()),
                    Just("job_id".to_owned()),
                    Just("status".to_owned()),
                    Just("data".to_owned()),
                    Just("params".to_owned()),
                    Just("supported_skills".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

const ROUTES: [(&str, &str); 5] = [
    ("POST", "/_worker/workers/register"),
    ("POST", "/_worker/tasks/result"),
    ("PATCH", "/_worker/workers/w-1"),
    ("POST", "/_worker/auth/token"),
    ("GET", "/_worker/workers/w-1/tasks/next"),
];

proptest! {
    // Failing cases are saved beside this file (hostile.regressions) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 1_000,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_on_any_route(route in 0..ROUTES.len(), body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let (method, path) = ROUTES[route];
        let (status, reply) = call(&service(), method, path, body);
        check(status, &reply)?;
    }

    #[test]
    fn any_json_on_any_route(route in 0..ROUTES.len(), doc in json()) {
        let (method, path) = ROUTES[route];
        let (status, reply) = call(&service(), method, path, serde_json::to_vec(&doc).unwrap());
        check(status, &reply)?;
    }

    #[test]
    fn any_path_and_query(path in "/_worker/[a-zA-Z0-9/._%~-]{0,60}", query in proptest::option::of("[a-z=&.%0-9-]{0,30}")) {
        let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        for method in ["GET", "POST", "PATCH", "DELETE"] {
            let (status, reply) = call(&service(), method, &target, Vec::new());
            check(status, &reply)?;
        }
    }
}

#[test]
fn deep_nesting_and_huge_maps_are_refused_or_bounded() {
    let s = service();
    // 30,000 levels of arrays, inside the body limit: the JSON parser's depth limit
    // refuses it; nothing recurses 30,000 deep.
    let mut deep = String::from(
        r#"{"job_id":"j","task_id":"t","worker_id":"w","status":"success","data":{"x":"#,
    );
    deep.push_str(&"[".repeat(30_000));
    deep.push_str(&"]".repeat(30_000));
    deep.push_str("}}");
    let (status, body) = call(&s, "POST", "/_worker/tasks/result", deep.into_bytes());
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("recursion limit"));

    // A map with as many keys as fit under the limit: decoded, answered, no 500.
    let keys: Vec<String> = (0..LIMIT / 12).map(|i| format!("\"k{i}\":0")).collect();
    let map = format!(
        r#"{{"job_id":"j","task_id":"t","worker_id":"w","status":"success","data":{{{}}}}}"#,
        keys.join(",")
    );
    assert!(map.len() <= LIMIT, "{}", map.len());
    let (status, body) = call(&s, "POST", "/_worker/tasks/result", map.into_bytes());
    check(status, &body).unwrap();
    // One byte over the limit: 413.
    let (status, _) = call(&s, "POST", "/_worker/tasks/result", vec![b' '; LIMIT + 1]);
    assert_eq!(status, 413);
}

/// Slow clients — heads and bodies trickled a byte at a time — are cut at their
/// deadlines (408 for a body) while a well-behaved worker is served at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn slow_clients_are_cut_while_well_behaved_workers_are_served() {
    use rxon_core::{Listener, Transport};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let orchestrator = Orchestrator::builder().token("t").build();
    let mut config = rxon_http::HttpListenerConfig::default();
    config.header_read_timeout = Duration::from_millis(300);
    config.service.body_read_timeout = Duration::from_millis(300);
    let listener = rxon_http::HttpListener::with_config(config);
    listener.start(Arc::new(orchestrator)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = listener.endpoint().unwrap();

    // 20 clients trickling a head, 20 trickling a body, one byte every 50 ms.
    let mut slow = Vec::new();
    for i in 0..40 {
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let bytes: Vec<u8> = if i % 2 == 0 {
                b"GET /_worker/workers/w-1/tasks/next HTTP/1.1\r\nHost: x\r\nX-Worker-Token: t\r\n\r\n".to_vec()
            } else {
                s.write_all(b"POST /_worker/tasks/result HTTP/1.1\r\nHost: x\r\nX-Worker-Token: t\r\nContent-Length: 1000\r\n\r\n")
                    .await
                    .unwrap();
                vec![b' '; 1000]
            };
            let started = std::time::Instant::now();
            for b in bytes {
                if s.write_all(&[b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                if started.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
            (started.elapsed(), String::from_utf8_lossy(&answer).into_owned())
        }));
    }

    // Meanwhile a worker registers and polls, 100 times.
    let worker = rxon_http::HttpTransport::new(&url, "w-good", "t").unwrap();
    worker.connect().await.unwrap();
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let start = std::time::Instant::now();
        worker
            .register(&rxon_core::WorkerRegistration {
                worker_id: "w-good".into(),
                supported_skills: vec!["a".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(worker.poll_task(Duration::ZERO).await.unwrap(), None);
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let p99 = latencies[98];

    let mut cut_within = Duration::ZERO;
    let mut timed_out_bodies = 0;
    for (i, s) in slow.into_iter().enumerate() {
        let (took, answer) = s.await.unwrap();
        cut_within = cut_within.max(took);
        if i % 2 == 1 {
            assert!(answer.starts_with("HTTP/1.1 408"), "slow body: {answer:?}");
            timed_out_bodies += 1;
        } else {
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer:?}"
            );
        }
    }
    println!(
        "slow clients: 40 (20 heads, {timed_out_bodies} bodies answered 408), all cut within \
         {cut_within:?}; meanwhile 100 register+poll cycles, p99 {p99:?}"
    );
    assert!(cut_within < Duration::from_secs(2), "{cut_within:?}");
    assert!(
        p99 < Duration::from_millis(500),
        "the worker was served: p99 {p99:?}"
    );
    listener.stop(Duration::from_secs(2)).await.unwrap();
}

/// Connections beyond `max_connections` get a clear 503 at once, while a worker already
/// connected is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn a_connection_flood_beyond_the_limit_is_refused_while_workers_are_served() {
    use rxon_core::{Listener, Transport};
    use tokio::io::AsyncReadExt;

    let mut config = rxon_http::HttpListenerConfig::default();
    config.max_connections = 10;
    config.header_read_timeout = Duration::from_millis(300);
    let listener = rxon_http::HttpListener::with_config(config);
    listener
        .start(Arc::new(Orchestrator::builder().token("t").build()))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let worker =
        rxon_http::HttpTransport::new(&listener.endpoint().unwrap(), "w-good", "t").unwrap();
    worker.connect().await.unwrap();
    let registration = rxon_core::WorkerRegistration {
        worker_id: "w-good".into(),
        supported_skills: vec!["a".into()],
        ..Default::default()
    };
    worker.register(&registration).await.unwrap();

    // 60 connections that send nothing.
    let started = std::time::Instant::now();
    let mut flood = Vec::new();
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        flood.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    // A worker's pool may hold a second, idle connection: cut by the header timeout
    // (300 ms here), its next use fails with a retryable network error, which the worker
    // runtime retries. Counted, and bounded.
    let mut latencies = Vec::new();
    let mut retried = 0;
    while latencies.len() < 100 {
        let start = std::time::Instant::now();
        let cycle = async {
            worker.register(&registration).await?;
            worker.poll_task(Duration::ZERO).await
        };
        match cycle.await {
            Ok(task) => {
                assert_eq!(task, None);
                latencies.push(start.elapsed());
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                retried += 1;
                assert!(retried <= 10, "refused too often: {e}");
            }
        }
    }
    latencies.sort();
    let p99 = latencies[98];
    let mut refused = 0;
    for f in flood {
        let answer = f.await.unwrap();
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("Retry-After: 1"), "{answer}");
            assert!(answer.contains("too many connections"), "{answer}");
            refused += 1;
        } else {
            // Admitted, then cut for sending no request.
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer:?}"
            );
        }
    }
    let all_ended = started.elapsed();
    println!(
        "connection flood: 60 beyond a limit of 10 with one worker connected: {refused} \
         answered 503 at once, the rest cut by the header timeout, all ended in \
         {all_ended:?}; meanwhile 100 register+poll cycles, p99 {p99:?}, {retried} \
         retried (a pooled connection cut while idle)"
    );
    assert!(refused >= 50, "{refused}");
    assert!(all_ended < Duration::from_secs(3), "{all_ended:?}");
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    listener.stop(Duration::from_secs(2)).await.unwrap();
}
