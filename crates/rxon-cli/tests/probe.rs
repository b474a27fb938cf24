//! The built `rxon probe` against orchestrators on 127.0.0.1: it names the generation,
//! passes a sound orchestrator, fails a refused token or a server that is not RXON,
//! touches no job unless `--poll` asks, and exits 2 when it cannot probe at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::orchestrator::{Orchestrator, TaskState};
use rxon::{Listener, TaskPayload, TaskStatus};
use serde_json::Value as Json;
use std::process::{Command, Output};
use std::sync::Arc;

/// An orchestrator (worker token `p-secret`) behind an HTTP listener on loopback.
async fn orchestrator() -> (Orchestrator, rxon::http::HttpListener, String) {
    let orch = Orchestrator::builder().token("p-secret").build();
    let listener = rxon::http::HttpListener::bind("127.0.0.1:0".parse().unwrap());
    listener.start(Arc::new(orch.clone())).await.unwrap();
    let url = listener.endpoint().unwrap();
    (orch, listener, url)
}

/// Runs `rxon probe ARGS` to its end (each of its requests is bounded by `--timeout`).
async fn probe(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rxon"));
    command.arg("probe").args(args).args(["--timeout", "10"]);
    // Only what the test says: no token or proxy from the environment.
    command
        .env_remove("RXON_WORKER_TOKEN")
        .env_remove("RXON_PROXY");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The `--json` report, and its checks by `group/name`.
fn report(out: &Output) -> (Json, Vec<(String, String, String)>) {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!(
                    "{}/{}",
                    c["group"].as_str().unwrap(),
                    c["name"].as_str().unwrap()
                ),
                c["outcome"].as_str().unwrap().to_owned(),
                c["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (v, checks)
}

fn outcome<'a>(checks: &'a [(String, String, String)], name: &str) -> &'a str {
    checks
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, o, _)| o.as_str())
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

fn task(id: &str) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    }
}

/// rxon's orchestrator speaks 1.0b17 and 1.0b3 at once, serves every route of both,
/// refuses missing and wrong tokens with JSON errors and accepts the right one; the
/// probe touches no queued task and registers no worker.
#[tokio::test]
async fn a_sound_orchestrator_passes_and_no_job_is_touched() {
    let (orch, _listener, url) = orchestrator().await;
    orch.enqueue(task("queued-1")).await.unwrap();
    let out = probe(&[&url, "--token", "p-secret", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let (v, checks) = report(&out);
    assert_eq!(v["generation"], "1.0b17", "{v}");
    assert_eq!(v["version_header"], "1.0b17", "{v}");
    for (name, expected) in [
        ("generation/1.0b3 workers", "pass"),
        ("routes/POST register", "pass"),
        ("routes/GET poll", "pass"),
        ("routes/POST events", "pass"),
        ("routes/POST sts refresh", "pass"),
        ("auth/no token", "pass"),
        ("auth/wrong token", "pass"),
        ("auth/--token accepted", "pass"),
        ("errors/malformed JSON", "pass"),
        ("errors/unknown route", "pass"),
        ("errors/wrong method", "pass"),
    ] {
        assert_eq!(outcome(&checks, name), expected, "{name}: {checks:?}");
    }
    assert!(
        checks.iter().all(|(_, o, _)| o != "fail" && o != "warn"),
        "{checks:?}"
    );
    // The token is never printed.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("p-secret"));
    assert!(matches!(
        orch.task_state("queued-1").await,
        Some(TaskState::Queued)
    ));
    assert!(orch.workers().await.is_empty(), "the probe registered");

    // The text report ends with the verdict.
    let out = probe(&[&url, "--token", "p-secret"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\ngeneration 1.0b17: ") && text.contains(" 0 failed,"),
        "{text}"
    );
}

/// A token the orchestrator refuses fails the probe (exit 1); without a token the
/// checks that need one are reported skipped, not passed.
#[tokio::test]
async fn a_refused_token_fails_and_a_missing_one_skips() {
    let (_orch, _listener, url) = orchestrator().await;
    let out = probe(&[&url, "--token", "not-the-token", "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (_, checks) = report(&out);
    assert_eq!(outcome(&checks, "auth/--token accepted"), "fail");
    assert_eq!(outcome(&checks, "auth/no token"), "pass");

    let out = probe(&[&url, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let (_, checks) = report(&out);
    assert_eq!(outcome(&checks, "auth/--token accepted"), "skipped");
    assert_eq!(outcome(&checks, "errors/bad requests"), "skipped");
}

/// `--register --poll SKILL` registers, heartbeats, claims the waiting task and hands
/// it back at once as a transient failure.
#[tokio::test]
async fn poll_claims_one_task_and_hands_it_back_as_transient() {
    let (orch, _listener, url) = orchestrator().await;
    orch.enqueue(task("claimed-1")).await.unwrap();
    let out = probe(&[
        &url,
        "--token",
        "p-secret",
        "--register",
        "--poll",
        "echo",
        "--json",
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    let (_, checks) = report(&out);
    assert_eq!(outcome(&checks, "session/register"), "pass");
    assert_eq!(outcome(&checks, "session/heartbeat"), "pass");
    let poll = checks
        .iter()
        .find(|(n, _, _)| n == "session/poll echo")
        .unwrap();
    assert!(poll.2.contains(r#"got task "claimed-1""#), "{poll:?}");
    let result = orch.task_result("claimed-1").await.expect("handed back");
    assert_eq!(result.status, TaskStatus::Failure);
    assert_eq!(
        result.error.unwrap().code.as_str(),
        rxon::constants::ERROR_CODE_TRANSIENT
    );
    assert_eq!(orch.workers().await[0].worker_id, "rxon-probe");
}

/// A WebSocket URL has no HTTP routes: without `--register` the probe cannot run
/// (exit 2); with it, the session runs over the WebSocket transport.
#[tokio::test]
async fn a_websocket_orchestrator_is_probed_with_a_session() {
    let orch = Orchestrator::builder().token("p-secret").build();
    let listener = rxon::ws::WsListener::bind("127.0.0.1:0".parse().unwrap());
    listener.start(Arc::new(orch.clone())).await.unwrap();
    let url = listener.endpoint().unwrap();
    assert!(url.starts_with("ws://"), "{url}");
    let out = probe(&[&url, "--token", "p-secret"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("add --register"),
        "{out:?}"
    );
    let out = probe(&[&url, "--token", "p-secret", "--register", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let (_, checks) = report(&out);
    let register = checks
        .iter()
        .find(|(n, _, _)| n == "session/register")
        .unwrap();
    assert_eq!(register.1, "pass", "{register:?}");
    assert!(register.2.contains("over ws"), "{register:?}");
}

/// Nothing listening is exit 2; a web server that is not an RXON orchestrator (404
/// everywhere, no `X-RXON-Version`) fails the probe.
#[tokio::test]
async fn an_unreachable_or_foreign_server_is_not_passed() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = probe(&[&format!("http://{closed}"), "--token", "t"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("rxon: "));

    let (addr, task) =
        foreign(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let out = probe(&[&format!("http://{addr}"), "--token", "t", "--json"]).await;
    task.abort();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (v, checks) = report(&out);
    assert_eq!(outcome(&checks, "generation/X-RXON-Version"), "fail");
    assert!(v.get("generation").is_none(), "{v}");

    // A server that refuses every request before routing it: its routes are not
    // passed (they are unknown), and the missing X-RXON-Version is noted.
    let (addr, task) = foreign(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 14\r\nconnection: close\r\n\r\n{\"error\":\"no\"}",
    )
    .await;
    let out = probe(&[&format!("http://{addr}"), "--token", "t", "--json"]).await;
    task.abort();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (_, checks) = report(&out);
    assert_eq!(outcome(&checks, "generation/X-RXON-Version"), "note");
    assert_eq!(outcome(&checks, "routes/worker routes"), "skipped");
    assert!(
        !checks.iter().any(|(n, _, _)| n == "routes/POST register"),
        "{checks:?}"
    );
    assert_eq!(outcome(&checks, "auth/--token accepted"), "fail");
}

/// A server on loopback answering every request with `answer`; the test aborts it.
async fn foreign(answer: &'static [u8]) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // One request per connection.
        loop {
            let (mut s, _) = server.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            });
        }
    });
    (addr, task)
}
