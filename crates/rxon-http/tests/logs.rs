//! What the HTTP side logs: a peer speaking another protocol version is logged once,
//! never refused; tokens never appear in logs, errors or `Debug` output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rxon_core::Transport;
use rxon_http::HttpTransport;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_version_mismatch_is_warned_about_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // An orchestrator from the future: every answer is 204 with version 2.0.
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    let mut r = hyper::Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                    r.headers_mut().insert(
                        "X-RXON-Version",
                        hyper::header::HeaderValue::from_static("2.0"),
                    );
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let t = HttpTransport::new(&url, "w-1", "t").unwrap();
    t.connect().await.unwrap();
    for _ in 0..3 {
        assert_eq!(t.poll_task(Duration::from_millis(10)).await.unwrap(), None);
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("protocol version mismatch").count(),
        1,
        "{text}"
    );
    assert!(text.contains("2.0") && text.contains("1.0b3"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_never_reach_logs_errors_or_debug_output() {
    const WRONG: &str = "wrong-token-4f1c9a";
    const RIGHT: &str = "right-token-77d02e";
    const BOOTSTRAP: &str = "bootstrap-credential-9b3e";
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let orchestrator = rxon_testing::Orchestrator::builder()
        .token(RIGHT)
        .sts_credential(BOOTSTRAP)
        .build();
    let listener = rxon_http::HttpListener::bind("127.0.0.1:0".parse().unwrap());
    rxon_core::Listener::start(&listener, Arc::new(orchestrator.clone()))
        .await
        .unwrap();
    let url = rxon_core::Listener::endpoint(&listener).unwrap();
    let registration = rxon_core::WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    };

    let mut seen = Vec::new();
    // A refused token: on an operation and on the command channel.
    let t = HttpTransport::new(&url, "w-1", WRONG).unwrap();
    t.connect().await.unwrap();
    let e = t.register(&registration).await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    seen.push(format!("{e} {e:?}"));
    let e = tokio::time::timeout(Duration::from_secs(10), t.next_command())
        .await
        .expect("a refused channel is reported, not retried silently")
        .unwrap_err();
    seen.push(format!("{e} {e:?}"));
    seen.push(format!("{t:?}"));
    // A bootstrap credential: refused on register, traded for a token, retried.
    let t = HttpTransport::new(&url, "w-1", BOOTSTRAP).unwrap();
    t.connect().await.unwrap();
    t.register(&registration).await.unwrap();
    let minted = t.token();
    assert!(minted.starts_with("sts-"), "refreshed");
    seen.push(format!("{t:?}"));
    // The right token works, and its transport and config print no secret either.
    let config = rxon_core::TransportConfig::new(&url, "w-1", RIGHT);
    seen.push(format!("{config:?}"));
    let t = HttpTransport::from_config(&config).unwrap();
    t.connect().await.unwrap();
    t.register(&registration).await.unwrap();
    seen.push(format!("{t:?}"));
    seen.push(format!(
        "{:?}",
        rxon_testing::Orchestrator::builder().token(RIGHT)
    ));
    rxon_core::Listener::stop(&listener, Duration::from_secs(2))
        .await
        .unwrap();

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logged.is_empty(), "the run logged something to check");
    for secret in [WRONG, RIGHT, BOOTSTRAP, minted.as_str()] {
        assert!(!logged.contains(secret), "{secret} in the logs:\n{logged}");
        for text in &seen {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
