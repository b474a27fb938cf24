//! Security checks over real HTTP on 127.0.0.1: an orchestrator configured with an STS
//! credential alone is not open, and an orchestrator's `Retry-After` reaches the worker
//! clamped whatever it says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rxon_core::retry::{MAX_RETRY_AFTER, MIN_RETRY_AFTER};
use rxon_core::{ErrorKind, Heartbeat, Listener, Transport, WorkerRegistration};
use rxon_http::{HttpListener, HttpTransport};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

fn registration() -> WorkerRegistration {
    WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_sts_only_orchestrator_refuses_a_random_token() {
    let orchestrator = rxon_orchestrator::Orchestrator::builder()
        .sts_credential("bootstrap")
        .build();
    assert!(!orchestrator.is_open());
    let listener = HttpListener::bind("127.0.0.1:0".parse().unwrap());
    listener.start(Arc::new(orchestrator)).await.unwrap();
    let url = listener.endpoint().unwrap();

    let random = HttpTransport::new(&url, "w-1", "0f3c9e-random").unwrap();
    random.connect().await.unwrap();
    let err = random.register(&registration()).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert_eq!(err.details()["status"].as_u64(), Some(401), "{err}");

    // The bootstrap credential still works: traded for a token, then registered.
    let worker = HttpTransport::new(&url, "w-1", "bootstrap").unwrap();
    worker.connect().await.unwrap();
    worker.register(&registration()).await.unwrap();
    assert!(worker.token().starts_with("sts-"));
    listener.stop(Duration::from_secs(2)).await.unwrap();
}

/// An orchestrator that answers every request 429 with the `Retry-After` in `value`.
async fn throttling_server(value: Arc<Mutex<String>>) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let value = value.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let retry_after = value.lock().unwrap().clone();
                    async move {
                        let mut r = hyper::Response::new(Full::new(Bytes::from_static(
                            br#"{"error":"slow down"}"#,
                        )));
                        *r.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
                        r.headers_mut()
                            .insert("Retry-After", retry_after.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_peers_retry_after_is_clamped_whatever_it_says() {
    let value = Arc::new(Mutex::new(String::new()));
    let url = throttling_server(value.clone()).await;
    let t = HttpTransport::new(&url, "w-1", "t").unwrap();
    t.connect().await.unwrap();
    let far = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10 * 365 * 86_400));
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    // (Retry-After, what the worker must see; None: no hint, the backoff decides).
    let cases: [(&str, Option<Duration>); 7] = [
        ("0", Some(MIN_RETRY_AFTER)),
        ("7", Some(Duration::from_secs(7))),
        ("99999999999", Some(MAX_RETRY_AFTER)),
        (&far, Some(MAX_RETRY_AFTER)),
        (&past, Some(MIN_RETRY_AFTER)),
        ("soon", None),
        ("-5", None),
    ];
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    for (header, expected) in cases {
        *value.lock().unwrap() = header.to_owned();
        let err = t.send_heartbeat(&hb).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{header}: {err}");
        assert_eq!(err.retry_after(), expected, "Retry-After: {header}");
        let err = t.poll_task(Duration::from_millis(10)).await.unwrap_err();
        assert_eq!(err.retry_after(), expected, "poll, Retry-After: {header}");
    }
}
