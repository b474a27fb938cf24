//! Hostile peers at the WebSocket door, on 127.0.0.1: nothing is upgraded before the
//! credential is checked, and every upgraded connection (a WebSocket transport session
//! or the reference command channel) keeps its slot in `max_connections` for its whole
//! life, so silent sessions cannot outnumber the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::{Handler, Listener, RequestContext, WorkerRegistration};
use rxon_http::{HttpListener, HttpListenerConfig};
use rxon_orchestrator::Orchestrator;
use rxon_ws::{WsConfig, WsListener, WsListenerConfig, WsMount};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(5);

/// What the listener answered to a raw upgrade request.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// The connection, still open when the upgrade was accepted.
    stream: TcpStream,
}

/// Sends a WebSocket upgrade for `path` over a fresh connection and reads the answer's
/// head (and its body, when it is not a 101). `None` when the listener closed the
/// connection without an answer.
async fn upgrade(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let token = token
        .map(|t| format!("X-Worker-Token: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: rxon.v1.json\r\n{token}\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        assert!(raw.len() < 64 * 1024, "an answer head over 64 KiB");
        let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
            .await
            .expect("the listener answers in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
    let mut body = raw[end..].to_vec();
    if status != 101 {
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while body.len() < length {
            let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
                .await
                .expect("the body arrives in time")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
    }
    Some(Answer {
        status,
        head,
        body,
        stream,
    })
}

/// The `error` message of a refusal's JSON body.
fn error_message(answer: &Answer) -> String {
    let v: serde_json::Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("the refusal's body is not JSON ({e}): {}", answer.head));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
        .to_owned()
}

fn orchestrator() -> Orchestrator {
    Orchestrator::builder()
        .worker_token("w-1", "t-1")
        .worker_token("w-2", "t-2")
        .worker_token("w-3", "t-3")
        .sts_credential("bootstrap")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_is_refused_before_the_101_without_a_valid_credential() {
    let listener = WsListener::bind("127.0.0.1:0".parse().unwrap());
    listener.start(Arc::new(orchestrator())).await.unwrap();
    let addr: SocketAddr = listener.endpoint().unwrap()["ws://".len()..]
        .parse()
        .unwrap();
    for (what, path, token, status) in [
        ("no token", "/_worker/rxon/w-1", None, 401),
        ("a wrong token", "/_worker/rxon/w-1", Some("guess"), 401),
        (
            "another worker's token",
            "/_worker/rxon/w-2",
            Some("t-1"),
            403,
        ),
    ] {
        let answer = upgrade(addr, path, token)
            .await
            .unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert_eq!(answer.status, status, "{what}: {}", answer.head);
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: {}",
            answer.head
        );
        assert!(!error_message(&answer).is_empty(), "{what}");
    }
    // The worker's own token, and a bootstrap credential (which the session may trade
    // for a token), are upgraded.
    for token in ["t-1", "bootstrap"] {
        let answer = upgrade(addr, "/_worker/rxon/w-1", Some(token))
            .await
            .unwrap();
        assert_eq!(answer.status, 101, "{token}: {}", answer.head);
    }
    listener.stop(Duration::from_secs(2)).await.unwrap();
}

/// Polls `addr` with upgrades for `path` until one is accepted: the listener gave a
/// slot back. Bounded: 100 attempts, 50 ms apart.
async fn until_upgraded(addr: SocketAddr, path: &str, token: &str) -> Answer {
    for _ in 0..100 {
        if let Some(answer) = upgrade(addr, path, Some(token)).await
            && answer.status == 101
        {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no slot came back within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sessions_hold_their_connection_slot_for_their_whole_life() {
    let orch = orchestrator();
    // The reference command channel needs a registered worker. Each worker gets its own
    // connection: a worker's new command channel replaces its old one, which would
    // free a slot for another reason.
    orch.register(
        RequestContext::new("test").with_token("t-2"),
        WorkerRegistration {
            worker_id: "w-2".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let handler: Arc<dyn Handler> = Arc::new(orch);
    let mut config = HttpListenerConfig::default();
    config.max_connections = 2;
    config.mounts = vec![Arc::new(WsMount::new(handler.clone(), WsConfig::default()))];
    let listener = HttpListener::with_config(config);
    listener.start(handler.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();

    // A WebSocket transport session (w-1) and a reference command channel (w-2): both
    // silent, both kept.
    let session = upgrade(addr, "/_worker/rxon/w-1", Some("t-1"))
        .await
        .unwrap();
    assert_eq!(session.status, 101, "{}", session.head);
    let channel = upgrade(addr, "/_worker/ws/w-2", Some("t-2")).await.unwrap();
    assert_eq!(channel.status, 101, "{}", channel.head);
    // A third connection (w-3) finds no slot: 503.
    for path in ["/_worker/rxon/w-3", "/_worker/ws/w-3"] {
        let over = upgrade(addr, path, Some("t-3")).await.unwrap();
        assert_eq!(over.status, 503, "{path}: {}", over.head);
        assert!(error_message(&over).contains("too many connections"));
    }

    // Closing a session gives its slot back, once the listener has seen it go.
    drop(session.stream);
    let again = until_upgraded(addr, "/_worker/rxon/w-3", "t-3").await;
    let over = upgrade(addr, "/_worker/rxon/w-1", Some("t-1"))
        .await
        .unwrap();
    assert_eq!(over.status, 503, "still two slots taken: {}", over.head);
    drop(channel.stream);
    let channel = until_upgraded(addr, "/_worker/rxon/w-1", "t-1").await;
    drop((again, channel));
    listener.stop(Duration::from_secs(2)).await.unwrap();

    // The standalone WebSocket listener has the same bound.
    let mut config = WsListenerConfig::default();
    config.max_connections = 1;
    let listener = WsListener::with_config(config);
    listener.start(handler).await.unwrap();
    let addr: SocketAddr = listener.endpoint().unwrap()["ws://".len()..]
        .parse()
        .unwrap();
    let held = upgrade(addr, "/_worker/rxon/w-1", Some("t-1"))
        .await
        .unwrap();
    assert_eq!(held.status, 101, "{}", held.head);
    let over = upgrade(addr, "/_worker/rxon/w-3", Some("t-3"))
        .await
        .unwrap();
    assert_eq!(over.status, 503, "{}", over.head);
    drop(held);
    listener.stop(Duration::from_secs(2)).await.unwrap();
}
