//! The WebSocket command channel of HttpTransport / HttpListener on 127.0.0.1: restarts,
//! bad frames, size limits, refusals before and after the upgrade.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use rxon_core::*;
use rxon_http::{HttpListener, HttpListenerConfig, HttpTransport};
use rxon_orchestrator::{CancelOutcome, Orchestrator};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const BOUND: Duration = Duration::from_secs(15);

fn task(id: &str) -> TaskPayload {
    TaskPayload {
        job_id: "job-1".into(),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    }
}

async fn start_on(orch: &Orchestrator, bind: SocketAddr) -> HttpListener {
    let mut config = HttpListenerConfig::default();
    config.bind = bind;
    let listener = HttpListener::with_config(config);
    listener.start(Arc::new(orch.clone())).await.unwrap();
    listener
}

async fn worker(url: &str, token: &str) -> Arc<HttpTransport> {
    let mut config = TransportConfig::new(url, "w-1", token);
    config.options.max_message_bytes = 1024;
    // The 1.0b3 channel: progress and commands share the socket.
    config.options.protocol = ProtocolChoice::Pinned(Protocol::V1b3);
    let t = HttpTransport::from_config(&config).unwrap();
    t.connect().await.unwrap();
    Arc::new(t)
}

/// `w-1` with the token "good", connected and registered for `echo`.
async fn registered(url: &str) -> Arc<HttpTransport> {
    let t = worker(url, "good").await;
    t.register(&WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: vec!["echo".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    t
}

async fn next(t: &HttpTransport) -> Result<Option<WorkerCommand>> {
    tokio::time::timeout(BOUND, t.next_command())
        .await
        .expect("next_command is bounded")
}

#[tokio::test]
async fn commands_reach_the_worker_across_a_listener_restart() {
    let orch = Orchestrator::builder().token("good").build();
    let listener = start_on(&orch, "127.0.0.1:0".parse().unwrap()).await;
    let addr = listener.local_addr().unwrap();
    let t = registered(&listener.endpoint().unwrap()).await;
    let mut held = Vec::new();
    for id in ["t-1", "t-2"] {
        orch.enqueue(task(id)).await.unwrap();
        held.push(t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap());
    }

    let reader = {
        let t = t.clone();
        tokio::spawn(async move { next(&t).await })
    };
    orch.wait_for_command_channel("w-1", BOUND).await.unwrap();
    orch.cancel("t-1").await.unwrap();
    let first = reader.await.unwrap().unwrap().unwrap();
    assert_eq!(first.task_id.as_deref(), Some("t-1"));
    // The heartbeat reply lists it too, until the worker reports the cancelled task:
    // that acknowledges it (no re-send later).
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        current_tasks: vec!["t-1".into(), "t-2".into()],
        ..Default::default()
    };
    assert_eq!(
        t.send_heartbeat(&hb).await.unwrap().cancel_task_ids,
        ["t-1"]
    );
    let confirmed = t
        .send_result(&TaskResult::cancelled(&held[0], "w-1"))
        .await
        .unwrap();
    assert!(confirmed.is_accepted(), "{confirmed:?}");

    // The listener goes away; a cancel issued meanwhile must not be lost.
    listener.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(
            orch.cancel("t-2").await.unwrap(),
            CancelOutcome::Signalled { .. }
        ),
        "t-2 is held by w-1"
    );
    let listener = start_on(&orch, addr).await;
    // The worker reconnects by itself (backoff from 1 s) and receives it.
    let second = next(&t).await.unwrap().unwrap();
    assert_eq!(second.task_id.as_deref(), Some("t-2"));
    assert_eq!(second.command, CommandName::CancelTask);

    // close() ends a pending next_command with Ok(None).
    let reader = {
        let t = t.clone();
        tokio::spawn(async move { next(&t).await })
    };
    orch.wait_for_command_channel("w-1", BOUND).await.unwrap();
    t.close().await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), None);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_upgrade_refreshes_once_then_reports_auth() {
    let orch = Orchestrator::builder()
        .token("good")
        .sts_credential("bootstrap")
        .build();
    let listener = start_on(&orch, "127.0.0.1:0".parse().unwrap()).await;
    let url = listener.endpoint().unwrap();

    let t = worker(&url, "bootstrap").await;
    let reader = {
        let t = t.clone();
        tokio::spawn(async move { next(&t).await })
    };
    orch.wait_for_command_channel("w-1", BOUND).await.unwrap();
    assert!(t.token().starts_with("sts-"), "refreshed: {}", t.token());
    t.close().await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), None);

    let stolen = worker(&url, "stolen").await;
    let err = next(&stolen).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

/// Reads one HTTP request head from `stream`.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn bad_frames_are_skipped_and_an_oversized_one_closes_with_1009() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = tcp.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        for frame in [
            Message::Binary(vec![1, 2, 3].into()),
            Message::Text("{not json".into()),
            Message::Text(r#"{"command":"pause_task","task_id":"t-x"}"#.into()),
            Message::Text(r#"{"command":"cancel_task","task_id":"t-ok","job_id":null}"#.into()),
        ] {
            ws.send(frame).await.unwrap();
        }
        ws.send(Message::Text("x".repeat(4096).into()))
            .await
            .unwrap();
        // The worker closes with "message too big"…
        let mut code = None;
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                code = frame.map(|f| f.code);
                break;
            }
        }
        // …and comes back.
        let (again, _) = tokio::time::timeout(BOUND, tcp.accept())
            .await
            .unwrap()
            .unwrap();
        let mut ws = tokio_tungstenite::accept_async(again).await.unwrap();
        ws.send(Message::Text(
            r#"{"command":"cancel_task","task_id":"t-after"}"#.into(),
        ))
        .await
        .unwrap();
        let _ = ws.next().await;
        code
    });
    let t = worker(&url, "good").await;
    let first = next(&t).await.unwrap().unwrap();
    assert_eq!(
        first.task_id.as_deref(),
        Some("t-ok"),
        "bad and unknown frames skipped"
    );
    let after = next(&t).await.unwrap().unwrap();
    assert_eq!(
        after.task_id.as_deref(),
        Some("t-after"),
        "reconnected after 1009"
    );
    t.close().await.unwrap();
    assert_eq!(server.await.unwrap(), Some(CloseCode::Size));
}

#[tokio::test]
async fn a_raw_http_401_after_the_upgrade_is_an_auth_error_not_a_hang() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    tokio::spawn(async move {
        // Bounded: a few connections are all the test needs.
        for _ in 0..8 {
            let Ok((mut stream, _)) = tcp.accept().await else {
                return;
            };
            let head = read_head(&mut stream).await;
            let body = r#"{"error":"invalid worker token"}"#;
            let refusal = format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let reply = match header(&head, "Sec-WebSocket-Key") {
                // Accept the upgrade, then refuse in plain HTTP inside the stream.
                Some(key) => format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n{refusal}",
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
                ),
                None => refusal,
            };
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    let t = worker(&url, "good").await;
    let err = next(&t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.message().contains("invalid worker token"), "{err}");
    t.close().await.unwrap();
}

/// A zero keepalive (which turns the listener's pings off: `rxon-ws`'s
/// `a_zero_keepalive_turns_the_pings_off` counts the frames) leaves the channel working.
#[tokio::test]
async fn a_zero_keepalive_keeps_the_channel_working() {
    let orch = Orchestrator::builder().token("good").build();
    let mut config = HttpListenerConfig::default();
    config.service.keepalive = Duration::ZERO;
    let listener = HttpListener::with_config(config);
    listener.start(Arc::new(orch.clone())).await.unwrap();
    let t = registered(&listener.endpoint().unwrap()).await;
    orch.enqueue(task("t-1")).await.unwrap();
    t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();
    let reader = {
        let t = t.clone();
        tokio::spawn(async move { next(&t).await })
    };
    orch.wait_for_command_channel("w-1", BOUND).await.unwrap();
    orch.cancel("t-1").await.unwrap();
    let command = reader.await.unwrap().unwrap().unwrap();
    assert_eq!(command.task_id.as_deref(), Some("t-1"));
    listener.stop(Duration::from_secs(2)).await.unwrap();
}

/// A worker that never reads `next_command` keeps a working channel when more commands
/// arrive than the queue holds: progress still goes out (the extra cancels are dropped
/// with a warning; heartbeat replies repeat them).
#[tokio::test]
async fn unread_commands_never_block_the_channel() {
    // Room for every cancel on the orchestrator's side, so all 80 reach the socket.
    let orch = Orchestrator::builder()
        .token("good")
        .command_capacity(256)
        .build();
    let listener = start_on(&orch, "127.0.0.1:0".parse().unwrap()).await;
    let t = registered(&listener.endpoint().unwrap()).await;
    let mut held = Vec::new();
    for i in 0..80 {
        orch.enqueue(task(&format!("t-{i}"))).await.unwrap();
        held.push(t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap());
    }
    let progress = |task: &TaskPayload, message: &str| ProgressUpdatePayload {
        event: "progress_update".into(),
        task_id: task.task_id.clone(),
        job_id: task.job_id.clone(),
        progress: 0.5,
        message: Some(message.into()),
    };
    // Progress opens the channel; nothing ever reads a command from it.
    tokio::time::timeout(BOUND, t.send_progress(&progress(&held[79], "first")))
        .await
        .unwrap()
        .unwrap();
    orch.wait_for_command_channel("w-1", BOUND).await.unwrap();
    for task in &held[..79] {
        orch.cancel(&task.task_id).await.unwrap();
    }
    let mut updates = orch.subscribe_progress();
    // Several in a row: between them the channel reads the 79 command frames.
    for i in 0..5 {
        let message = if i == 4 { "after" } else { "meanwhile" };
        tokio::time::timeout(BOUND, t.send_progress(&progress(&held[79], message)))
            .await
            .expect("progress is not stuck behind unread commands")
            .unwrap();
    }
    // The first update may still be on its way too; wait for this one.
    tokio::time::timeout(BOUND, async {
        while updates.recv().await.unwrap().message.as_deref() != Some("after") {}
    })
    .await
    .expect("the orchestrator receives it");
    t.close().await.unwrap();
    listener.stop(Duration::from_secs(2)).await.unwrap();
}

/// 1.0b17 workers send events over the channel (the reference SDK's `emit_event` uses
/// the socket when it is open): each frame's envelope is checked as on
/// `POST /_worker/events`; a forged frame is skipped and the channel stays open.
#[tokio::test]
async fn signed_event_frames_are_verified_and_forged_ones_skipped() {
    let orch = Orchestrator::builder().token("t").build();
    let listener = start_on(&orch, "127.0.0.1:0".parse().unwrap()).await;
    let url = listener.endpoint().unwrap();
    let t = HttpTransport::new(&url, "w-1", "t").unwrap();
    t.connect().await.unwrap();
    assert_eq!(t.protocol().await.unwrap(), Protocol::V1b17);
    t.register(&WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: SkillInfo::list(["echo"]),
        ..Default::default()
    })
    .await
    .unwrap();
    orch.enqueue(task("t-ev")).await.unwrap();
    let held = t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();

    let ws_url = format!("{}/_worker/ws/w-1", url.replacen("http", "ws", 1));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url)
            .unwrap();
    let headers = request.headers_mut();
    headers.insert("X-Worker-Token", "t".parse().unwrap());
    headers.insert("X-RXON-Version", "1.0b17".parse().unwrap());
    headers.insert("X-Worker-ID", "w-1".parse().unwrap());
    let tcp = TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let frame = |message: &str, key: &str| {
        let mut p = ProgressUpdatePayload::new(&held.task_id, &held.job_id, 0.5);
        p.message = Some(message.into());
        let event = WorkerEventPayload::progress(&p, "w-1", format!("ev-{message}"));
        let serde_json::Value::Object(mut m) = rxon_wire::encode(Protocol::V1b17, &event).unwrap()
        else {
            unreachable!()
        };
        rxon_wire::envelope::seal(
            &mut m,
            key,
            "w-1",
            rxon_wire::envelope::unix_now(),
            rxon_wire::envelope::EVENT_UNSIGNED,
        )
        .unwrap();
        Message::Text(serde_json::to_string(&m).unwrap().into())
    };
    let mut updates = orch.subscribe_progress();
    ws.send(frame("forged", "not-the-token")).await.unwrap();
    ws.send(frame("good", "t")).await.unwrap();
    let got = tokio::time::timeout(BOUND, updates.recv())
        .await
        .expect("progress in time")
        .unwrap();
    assert_eq!(
        got.message.as_deref(),
        Some("good"),
        "the forged frame was skipped"
    );
    assert_eq!(orch.task_progress("t-ev").await.len(), 1);
    listener.stop(BOUND).await.unwrap();
}
