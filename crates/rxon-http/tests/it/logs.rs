//! What the HTTP side logs: a peer speaking another protocol version is logged once,
//! never refused. (That no token reaches logs, errors or `Debug` output is checked on
//! every transport by `crates/rxon/tests/it/secrets.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use rxon_core::Transport;
use rxon_http::HttpTransport;
use rxon_testing::Captured;
use std::time::Duration;

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
    let text = logs.text();
    assert_eq!(
        text.matches("protocol version mismatch").count(),
        1,
        "{text}"
    );
    // "auto" takes an unknown version for the newest generation it speaks.
    assert!(text.contains("2.0") && text.contains("1.0b17"), "{text}");
}
