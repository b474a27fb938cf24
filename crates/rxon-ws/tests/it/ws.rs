//! The WebSocket transport on 127.0.0.1: one socket for concurrent operations, codecs,
//! restarts, hostile frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use rxon_core::*;

use rxon_orchestrator::Orchestrator;
use rxon_ws::{Codec, WsConfig, WsListener, WsListenerConfig, WsTransport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const BOUND: Duration = Duration::from_secs(15);

async fn listener(orch: &Orchestrator, bind: SocketAddr, max_message_bytes: usize) -> WsListener {
    let mut config = WsListenerConfig::default();
    config.bind = Some(bind);
    config.ws = WsConfig::default();
    config.ws.poll_wait = Duration::from_secs(60);
    config.ws.max_message_bytes = max_message_bytes;
    let l = WsListener::with_config(config);
    l.start(Arc::new(orch.clone())).await.unwrap();
    l
}

async fn worker(url: &str, codec: Option<&str>) -> Arc<WsTransport> {
    worker_with(url, |config| {
        if let Some(c) = codec {
            config.options.params.insert("codec".into(), Value::from(c));
        }
    })
    .await
}

/// A connected worker `w-1`, registered for `echo`, with `configure` applied.
async fn worker_with(url: &str, configure: impl FnOnce(&mut TransportConfig)) -> Arc<WsTransport> {
    let mut config = TransportConfig::new(url, "w-1", "t");
    config.options.result_retry_delay = Duration::from_millis(10);
    configure(&mut config);
    let t = WsTransport::from_config(&config).unwrap();
    t.connect().await.unwrap();
    t.register(&WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: vec!["echo".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    Arc::new(t)
}

/// Enqueues an `echo` task `id` and returns it as `t`'s poll receives it.
async fn hand_out(orch: &Orchestrator, t: &WsTransport, id: &str) -> TaskPayload {
    orch.enqueue(TaskPayload {
        job_id: "j".into(),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(BOUND, t.poll_task(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap()
        .expect("a task")
}

/// A raw WebSocket client over plain TCP.
async fn connect(
    request: http::Request<()>,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let host = request.uri().host().unwrap_or_default().to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tokio_tungstenite::client_async(request, tcp).await
}

fn task(id: &str) -> TaskPayload {
    TaskPayload {
        job_id: "j".into(),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn operations_share_one_socket_while_a_poll_waits() {
    let orch = Orchestrator::builder().token("t").build();
    let l = listener(&orch, "127.0.0.1:0".parse().unwrap(), 1 << 20).await;
    let t = worker(&l.endpoint().unwrap(), None).await;
    assert_eq!(
        t.codec().await,
        Some(Codec::MessagePack),
        "MessagePack is preferred"
    );

    orch.enqueue(task("first")).await.unwrap();
    let first = t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();
    let poller = {
        let t = t.clone();
        tokio::spawn(async move { t.poll_task(Duration::from_secs(60)).await })
    };
    orch.wait_for_pollers(1, BOUND).await.unwrap();
    // While the poll waits on the socket, other requests go through it.
    let outcome = t
        .send_result(&TaskResult::success(&first, "w-1", Map::new()))
        .await
        .unwrap();
    assert!(outcome.is_accepted());
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    t.send_heartbeat(&hb).await.unwrap();
    assert!(!poller.is_finished(), "the poll is still waiting");
    orch.enqueue(task("second")).await.unwrap();
    let second = tokio::time::timeout(BOUND, poller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.unwrap().task_id, "second");

    let json = worker(&l.endpoint().unwrap(), Some("json")).await;
    assert_eq!(json.codec().await, Some(Codec::Json));
    l.stop(BOUND).await.unwrap();
}

#[tokio::test]
async fn a_restarted_listener_is_reached_again() {
    let orch = Orchestrator::builder().token("t").build();
    let l = listener(&orch, "127.0.0.1:0".parse().unwrap(), 1 << 20).await;
    let url = l.endpoint().unwrap();
    let addr: SocketAddr = url.trim_start_matches("ws://").parse().unwrap();
    let t = worker(&url, None).await;
    l.stop(BOUND).await.unwrap();
    let err = t.poll_task(Duration::from_millis(100)).await.unwrap_err();
    assert!(err.is_network(), "{err}");
    let l = listener(&orch, addr, 1 << 20).await;
    // The next operation reconnects.
    orch.enqueue(task("after")).await.unwrap();
    let got = t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(got.task_id, "after");
    l.stop(BOUND).await.unwrap();
}

#[tokio::test]
async fn hostile_frames_are_skipped_and_oversized_ones_close_with_1009() {
    let orch = Orchestrator::builder().token("t").build();
    let l = listener(&orch, "127.0.0.1:0".parse().unwrap(), 1024).await;
    let url = format!("{}/_worker/rxon/raw-1", l.endpoint().unwrap());

    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "rxon.v1.json".parse().unwrap());
    request
        .headers_mut()
        .insert("X-Worker-Token", "t".parse().unwrap());
    let (mut ws, response) = connect(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "rxon.v1.json");
    for bad in [
        Message::Text("{not json".into()),
        Message::Binary(vec![1, 2, 3].into()),
        Message::Text(r#"{"id":1,"call":{"op":"explode"}}"#.into()),
    ] {
        ws.send(bad).await.unwrap();
    }
    // The session is still up: a valid request gets its reply.
    ws.send(Message::Text(
        r#"{"id":9,"call":{"op":"heartbeat","body":{"worker_id":"raw-1","status":"idle","load":0.0,"current_tasks":[],"supported_skills":[],"hot_cache":[]}}}"#.into(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(BOUND, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = reply.to_text().unwrap();
    assert!(text.starts_with(r#"{"type":"reply","id":9"#), "{text}");

    ws.send(Message::Text("x".repeat(4096).into()))
        .await
        .unwrap();
    let mut code = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(BOUND, ws.next()).await {
        if let Message::Close(frame) = msg {
            code = frame.map(|f| f.code);
            break;
        }
    }
    assert_eq!(code, Some(CloseCode::Size));

    // No codec in common: refused at the upgrade.
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "rxon.v9.xml".parse().unwrap());
    let err = connect(request).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    l.stop(BOUND).await.unwrap();
}

/// A slow link: every 16 KiB takes 40 ms through the proxy, so a 512 KiB task takes
/// over a second to arrive and a 512 KiB result over a second to leave, many times the
/// 150 ms keepalive of both sides. A frame still moving is proof of life: the session
/// survives both transfers instead of being replaced as silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_on_a_slow_link_are_not_mistaken_for_silence() {
    use rxon_testing::faults::{Fault, FaultProxy};
    let keepalive = Duration::from_millis(150);
    let orch = Orchestrator::builder().token("t").build();
    let mut config = WsListenerConfig::default();
    config.ws.keepalive = keepalive;
    let l = WsListener::with_config(config);
    l.start(Arc::new(orch.clone())).await.unwrap();
    let upstream = l
        .endpoint()
        .unwrap()
        .trim_start_matches("ws://")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(upstream).await.unwrap();

    let t = worker_with(&proxy.url("ws"), |config| {
        config.options.keepalive = keepalive;
        config.options.request_timeout = Duration::from_secs(20);
    })
    .await;
    proxy.set_fault(Fault::Delay(Duration::from_millis(40)));

    let big = "x".repeat(512 * 1024);
    let mut params = Map::new();
    params.insert("blob".into(), Value::from(big.as_str()));
    orch.enqueue(TaskPayload {
        job_id: "job-big".into(),
        task_id: "t-big".into(),
        task_type: "echo".into(),
        params,
        ..Default::default()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let task = tokio::time::timeout(BOUND, t.poll_task(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap()
        .expect("the large task arrives");
    let down = started.elapsed();
    assert_eq!(task.params["blob"].as_str().map(str::len), Some(big.len()));
    let mut data = Map::new();
    data.insert("blob".into(), Value::from(big.as_str()));
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(
        BOUND,
        t.send_result(&TaskResult::success(&task, "w-1", data)),
    )
    .await
    .unwrap()
    .unwrap();
    let up = started.elapsed();
    assert!(outcome.is_accepted(), "{outcome:?}");
    assert!(
        down > keepalive * 4 && up > keepalive * 4,
        "the link is slow enough to matter: down {down:?}, up {up:?}"
    );
    assert_eq!(
        proxy.stats().accepted,
        1,
        "one session throughout: neither side took the transfers for silence"
    );
    l.stop(Duration::from_secs(2)).await.unwrap();
}

/// A raw WebSocket to `url` as worker `w-1` with token `t`, speaking 1.0b17 (the
/// transport's default: a 1.0b3 session for a worker registered with 1.0b17 would be
/// refused as a downgrade), with the JSON subprotocol on the transport's route (the
/// command channel has none).
async fn raw_session(url: &str) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let mut request = url.into_client_request().unwrap();
    let h = request.headers_mut();
    h.insert("X-Worker-Token", "t".parse().unwrap());
    h.insert("X-RXON-Version", "1.0b17".parse().unwrap());
    if url.contains(rxon_ws::PATH_PREFIX) {
        h.insert("Sec-WebSocket-Protocol", "rxon.v1.json".parse().unwrap());
    }
    let authority = request.uri().authority().unwrap().as_str().to_owned();
    let tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (ws, _) = tokio::time::timeout(BOUND, tokio_tungstenite::client_async(request, tcp))
        .await
        .unwrap()
        .unwrap();
    ws
}

/// Opens a raw WebSocket to `url` (with the token, and the JSON subprotocol on the
/// transport's route) and returns how many pings the listener sent within `window`. The
/// client answers them (tungstenite replies to pings as it reads), so the listener never
/// takes it for silent.
async fn pings_within(url: &str, window: Duration) -> usize {
    let mut ws = raw_session(url).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + window;
    while let Ok(Some(frame)) = tokio::time::timeout_at(until, ws.next()).await {
        if matches!(frame.unwrap(), Message::Ping(_)) {
            pings += 1;
        }
    }
    pings
}

/// A zero keepalive turns the listener's pings off, on WebSocket transport sessions and
/// on the reference command channel alike; sessions work as usual. The same listeners
/// with a 100 ms keepalive send pings within the same window, so the check can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_keepalive_turns_the_pings_off() {
    let window = Duration::from_millis(600);
    for keepalive in [Duration::from_millis(100), Duration::ZERO] {
        let orch = Orchestrator::builder().token("t").build();
        let mut ws = WsConfig::default();
        ws.keepalive = keepalive;
        let mut config = rxon_http::HttpListenerConfig::default();
        config.service.keepalive = keepalive;
        config.mounts = vec![Arc::new(rxon_ws::WsMount::new(Arc::new(orch.clone()), ws))];
        let l = rxon_http::HttpListener::with_config(config);
        l.start(Arc::new(orch.clone())).await.unwrap();
        let base = l.endpoint().unwrap().replacen("http", "ws", 1);
        let t = worker(&base, None).await;
        assert_eq!(hand_out(&orch, &t, "t-1").await.task_id, "t-1");
        for path in ["/_worker/rxon/w-2", "/_worker/ws/w-1"] {
            let pings = pings_within(&format!("{base}{path}"), window).await;
            if keepalive.is_zero() {
                assert_eq!(pings, 0, "{path}: pings with the keepalive off");
            } else {
                assert!(
                    pings >= 2,
                    "{path}: {pings} pings in {window:?} every {keepalive:?}"
                );
            }
        }
        l.stop(Duration::from_secs(2)).await.unwrap();
    }
}

/// A worker that never reads `next_command` still gets its replies when more commands
/// arrive than the queue holds: the socket's reader never waits on the queue (the extra
/// cancels are dropped with a warning; heartbeat replies repeat them).
#[tokio::test]
async fn unread_commands_never_hold_up_replies() {
    // Room for every cancel on the orchestrator's side, so all 80 reach the socket.
    let orch = Orchestrator::builder()
        .token("t")
        .command_capacity(256)
        .build();
    let l = listener(&orch, "127.0.0.1:0".parse().unwrap(), 1 << 20).await;
    let t = worker(&l.endpoint().unwrap(), None).await;
    // The command channel opens with the session; 80 held tasks, then 80 cancels.
    orch.wait_for_command_channel("w-1", BOUND).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..80 {
        let id = format!("t-{i}");
        ids.push(hand_out(&orch, &t, &id).await.task_id);
    }
    for id in &ids {
        orch.cancel(id).await.unwrap();
    }
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        current_tasks: ids.clone(),
        ..Default::default()
    };
    let reply = tokio::time::timeout(BOUND, t.send_heartbeat(&hb))
        .await
        .expect("the reply is not stuck behind unread commands")
        .unwrap();
    assert_eq!(
        reply.cancel_task_ids.len(),
        80,
        "every cancel is in the reply"
    );
    l.stop(Duration::from_secs(2)).await.unwrap();
}

/// The 1.0b17 envelope on the WebSocket transport, at the frame level: a sealed
/// registration is taken once; the same frame again is refused as a replay (403), and
/// one whose content was changed after sealing is refused as forged (403).
#[tokio::test]
async fn a_sealed_frame_is_taken_once_and_a_forged_one_never() {
    let orch = Orchestrator::builder().token("t").build();
    let l = listener(&orch, "127.0.0.1:0".parse().unwrap(), 1 << 20).await;
    let url = format!("{}{}w-1", l.endpoint().unwrap(), rxon_ws::PATH_PREFIX);
    let mut ws = raw_session(&url).await;
    let registration = WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: SkillInfo::list(["echo"]),
        ..Default::default()
    };
    let sealed = rxon_wire::guard::seal_message(&registration, "t", "w-1", &[]).unwrap();
    let frame = |id: u64, body: &WorkerRegistration| {
        let f = serde_json::json!({"id": id, "call": {"op": "register", "body": body}});
        Message::Text(f.to_string().into())
    };
    let mut forged = sealed.clone();
    forged.worker_type = "not-what-was-signed".into();
    let mut answers = Vec::new();
    for (id, body) in [(1, &sealed), (2, &sealed), (3, &forged)] {
        ws.send(frame(id, body)).await.unwrap();
        let reply = loop {
            let m = tokio::time::timeout(BOUND, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Text(t) = m {
                break serde_json::from_str::<serde_json::Value>(&t).unwrap();
            }
        };
        answers.push(reply);
    }
    assert_eq!(answers[0]["type"], "reply", "{}", answers[0]);
    assert_eq!(answers[1]["type"], "error", "{}", answers[1]);
    assert_eq!(answers[1]["error"]["status"], 403);
    assert!(
        answers[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replay"),
        "{}",
        answers[1]
    );
    assert_eq!(answers[2]["error"]["status"], 403, "{}", answers[2]);
    assert!(
        answers[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{}",
        answers[2]
    );
    l.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn a_small_read_buffer_still_takes_large_frames_whole() {
    let orch = Orchestrator::builder().token("t").build();
    let mut config = WsListenerConfig::default();
    // Far below any frame of this test: every frame arrives over many reads.
    config.ws.read_buffer_bytes = 64;
    let l = WsListener::with_config(config);
    l.start(Arc::new(orch.clone())).await.unwrap();
    for codec in ["msgpack", "json"] {
        let t = worker(&l.endpoint().unwrap(), Some(codec)).await;
        let id = format!("t-big-{codec}");
        let task = hand_out(&orch, &t, &id).await;
        let big: String = (0..300_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let mut data = Map::new();
        data.insert("blob".into(), Value::from(big.as_str()));
        let outcome = tokio::time::timeout(
            BOUND,
            t.send_result(&TaskResult::success(&task, "w-1", data)),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(outcome.is_accepted(), "{codec}: {outcome:?}");
        let stored = orch.task_result(&id).await.expect("the result is stored");
        let blob = stored.data.as_ref().and_then(|d| d["blob"].as_str());
        assert_eq!(blob, Some(big.as_str()), "{codec}: the frame arrived whole");
        // The session still serves small frames after the large one.
        t.send_heartbeat(&Heartbeat {
            worker_id: "w-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    l.stop(BOUND).await.unwrap();
}
