//! gRPC specifics on 127.0.0.1: the client certificate's CN reaches the handler, a
//! client without one is refused by strict mTLS, messages over the limit are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::*;
use rxon_grpc::{GrpcListener, GrpcListenerConfig, GrpcTransport};
use rxon_testing::ContextEcho;
use rxon_testing::pki::Pki;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

async fn listener(config: GrpcListenerConfig) -> GrpcListener {
    let l = GrpcListener::with_config(config);
    l.start(Arc::new(ContextEcho)).await.unwrap();
    l
}

fn client(url: &str, dir: &std::path::Path, with_cert: bool) -> GrpcTransport {
    let mut config = TransportConfig::new(url, "w-1", "t");
    config.options.tls.ca_file = Some(dir.join("ca.pem"));
    if with_cert {
        config.options.tls.client_cert = Some(dir.join("client.pem"));
        config.options.tls.client_key = Some(dir.join("client.key"));
    }
    config.options.request_timeout = Duration::from_secs(10);
    GrpcTransport::from_config(&config).unwrap()
}

async fn register(t: &GrpcTransport) -> Result<RegisterReply> {
    t.connect().await?;
    t.register(&WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn mtls_passes_the_cn_and_strict_mode_refuses_anonymous_clients() {
    let pki = Pki::new(&["127.0.0.1"], "worker-42").unwrap();
    let dir: PathBuf = pki.path("");
    let mut config = GrpcListenerConfig::default();
    config.tls = Some(
        ServerTlsOptions::new(dir.join("server.pem"), dir.join("server.key"))
            .with_client_ca(dir.join("ca.pem")),
    );
    let optional = listener(config.clone()).await;
    let url = optional.endpoint().unwrap();
    assert!(url.starts_with("grpcs://127.0.0.1:"), "{url}");
    let named = register(&client(&url, &dir, true)).await.unwrap();
    assert_eq!(named.extra["cn"].as_str(), Some("worker-42"));
    assert_eq!(named.extra["transport"].as_str(), Some("grpc"));
    assert_eq!(named.extra["worker_id"].as_str(), Some("w-1"));
    assert_eq!(
        named.extra["token"].as_str(),
        Some("t"),
        "metadata carries the token"
    );
    let anonymous = register(&client(&url, &dir, false)).await.unwrap();
    assert_eq!(anonymous.extra["cn"], Value::Null);
    optional.stop(Duration::from_secs(5)).await.unwrap();

    config.tls = config.tls.map(|t| t.with_required_client_cert(true));
    let strict = listener(config).await;
    let url = strict.endpoint().unwrap();
    let err = register(&client(&url, &dir, false)).await.unwrap_err();
    assert!(err.is_network(), "{err}");
    register(&client(&url, &dir, true)).await.unwrap();
    strict.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn oversized_messages_are_refused_not_buffered() {
    let mut config = GrpcListenerConfig::default();
    config.max_message_bytes = 1024;
    let l = listener(config).await;
    let t = GrpcTransport::from_config(&TransportConfig::new(l.endpoint().unwrap(), "w-1", "t"))
        .unwrap();
    t.connect().await.unwrap();
    let mut reg = WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    reg.capabilities.hostname = "h".repeat(4096);
    let err = t.register(&reg).await.unwrap_err();
    assert!(err.is_protocol() || err.is_network(), "{err}");
    assert!(
        err.message().contains("RESOURCE_EXHAUSTED")
            || err.message().to_lowercase().contains("message"),
        "{err}"
    );
    // The listener keeps serving normal requests.
    reg.capabilities.hostname = "h".into();
    t.register(&reg).await.unwrap();
    l.stop(Duration::from_secs(5)).await.unwrap();
}

/// A flood of silent connections beyond `max_connections`: those over the limit are
/// closed as soon as they are accepted, those admitted are closed at the handshake
/// deadline, and a connected worker is served all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_while_a_worker_is_served() {
    use tokio::io::AsyncReadExt;
    let mut config = GrpcListenerConfig::default();
    config.max_connections = 10;
    config.handshake_timeout = Duration::from_millis(300);
    let l = GrpcListener::with_config(config);
    l.start(Arc::new(
        rxon_orchestrator::Orchestrator::builder()
            .token("t")
            .build(),
    ))
    .await
    .unwrap();
    let addr = l.local_addr().unwrap();
    let worker =
        GrpcTransport::from_config(&TransportConfig::new(l.endpoint().unwrap(), "w-good", "t"))
            .unwrap();
    worker.connect().await.unwrap();
    let registration = WorkerRegistration {
        worker_id: "w-good".into(),
        supported_skills: vec!["a".into()],
        ..Default::default()
    };
    worker.register(&registration).await.unwrap();

    // 60 connections that send nothing. One closed before the listener wrote a byte was
    // refused at once; one that got the server's HTTP/2 settings was admitted.
    let started = std::time::Instant::now();
    let mut flood = Vec::new();
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        flood.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            let ended = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
                .await
                .is_ok();
            (ended, answer.len())
        }));
    }
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let start = std::time::Instant::now();
        worker.register(&registration).await.unwrap();
        assert_eq!(worker.poll_task(Duration::ZERO).await.unwrap(), None);
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let p99 = latencies[98];
    let mut refused = 0;
    for f in flood {
        let (ended, bytes) = f.await.unwrap();
        assert!(ended, "every flooding connection is closed");
        if bytes == 0 {
            refused += 1;
        }
    }
    let all_ended = started.elapsed();
    println!(
        "gRPC connection flood: 60 beyond a limit of 10 with one worker connected: {refused} \
         closed at once, the rest at the handshake deadline, all ended in {all_ended:?}; \
         meanwhile 100 register+poll cycles, p99 {p99:?}"
    );
    assert!(refused >= 50, "{refused}");
    assert!(all_ended < Duration::from_secs(3), "{all_ended:?}");
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    l.stop(Duration::from_secs(2)).await.unwrap();
}

/// Connections beyond `max_connections` are closed as soon as they are accepted;
/// connections that never send a byte are closed at the handshake deadline, which frees
/// their slots for real workers.
#[tokio::test]
async fn connections_over_the_limit_and_silent_ones_are_closed() {
    use tokio::io::AsyncReadExt;
    let mut config = GrpcListenerConfig::default();
    config.max_connections = 2;
    config.handshake_timeout = Duration::from_secs(2);
    let l = listener(config).await;
    let addr = l.local_addr().unwrap();
    // Accepted in order: the first two take both slots and say nothing.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let opened = std::time::Instant::now();
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), over.read(&mut byte))
        .await
        .expect("the connection over the limit is closed, not left waiting");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let refused_after = opened.elapsed();
    assert!(
        refused_after < Duration::from_millis(1500),
        "closed at once, not at the handshake deadline: {refused_after:?}"
    );
    // The server speaks first (its HTTP/2 settings), then closes.
    for mut s in silent {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .expect("a silent connection is closed at the handshake deadline")
            .ok();
    }
    let t = GrpcTransport::from_config(&TransportConfig::new(l.endpoint().unwrap(), "w-1", "t"))
        .unwrap();
    let reply = register(&t).await.unwrap();
    assert_eq!(reply.extra["worker_id"].as_str(), Some("w-1"));
    l.stop(Duration::from_secs(5)).await.unwrap();
}

/// Sends `bytes` on a fresh connection to `addr`, then stalls; returns how long the
/// listener took to close it (`None`: still open after 5 s).
async fn stall_after(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let opened = std::time::Instant::now();
    s.write_all(bytes).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .ok()
        .map(|_| opened.elapsed())
}

/// The handshake deadline holds until the first accepted request, not the first byte: a
/// peer that sends one byte (or the whole HTTP/2 preface and settings, or the start of a
/// TLS hello) and stalls is closed at the deadline, and so is one whose requests are
/// refused; a worker whose connection is set up is not, even when its call outlasts the
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_deadline_whatever_it_sent() {
    const DEADLINE: Duration = Duration::from_millis(500);
    let pki = Pki::new(&["127.0.0.1"], "worker-42").unwrap();
    let dir: PathBuf = pki.path("");
    let mut plain = GrpcListenerConfig::default();
    plain.handshake_timeout = DEADLINE;
    let mut tls = plain.clone();
    tls.tls = Some(ServerTlsOptions::new(
        dir.join("server.pem"),
        dir.join("server.key"),
    ));
    // An orchestrator, so that a poll really waits (and outlasts the deadline).
    let orch = rxon_orchestrator::Orchestrator::builder()
        .token("t")
        .build();
    let start = |config| {
        let orch = orch.clone();
        async move {
            let l = GrpcListener::with_config(config);
            l.start(Arc::new(orch)).await.unwrap();
            l
        }
    };
    let plain = start(plain).await;
    let tls = start(tls).await;
    // The HTTP/2 client preface and an empty SETTINGS frame.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let cases: [(&str, std::net::SocketAddr, &[u8]); 3] = [
        ("one byte", plain.local_addr().unwrap(), b"P"),
        (
            "preface and settings",
            plain.local_addr().unwrap(),
            &preface,
        ),
        (
            "one byte of a TLS hello",
            tls.local_addr().unwrap(),
            &[0x16],
        ),
    ];
    for (what, addr, bytes) in cases {
        let closed = stall_after(addr, bytes).await;
        let Some(after) = closed else {
            panic!("{what}: the stalled connection is still open after 5 s");
        };
        assert!(
            after >= DEADLINE.mul_f64(0.8) && after < Duration::from_secs(3),
            "{what}: closed after {after:?}, not at the {DEADLINE:?} deadline"
        );
        println!(
            "gRPC handshake deadline {DEADLINE:?}: {what} then a stall, closed after {after:?}"
        );
    }
    // A worker's call that outlasts the deadline on a set-up connection is answered.
    let t =
        GrpcTransport::from_config(&TransportConfig::new(plain.endpoint().unwrap(), "w-1", "t"))
            .unwrap();
    let outlasting = |t: GrpcTransport| async move {
        register(&t).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(t.poll_task(DEADLINE * 3).await.unwrap(), None);
        assert!(started.elapsed() >= DEADLINE * 2, "the poll waited");
        register(&t).await.unwrap();
    };
    outlasting(t).await;
    // The same over TLS: the first request lifts the deadline there too.
    outlasting(client(&tls.endpoint().unwrap(), &dir, false)).await;

    // Refused requests do not lift it: a client with a wrong token is cut at the
    // deadline (its next call needs a new connection), one with the right token is not.
    // Through a proxy that counts connections; the wait lets the deadline pass.
    let proxy = rxon_testing::faults::FaultProxy::start(plain.local_addr().unwrap())
        .await
        .unwrap();
    for (token, connections) in [("t", 1), ("wrong", 2)] {
        let before = proxy.stats().accepted;
        let t = GrpcTransport::from_config(&TransportConfig::new(proxy.url("grpc"), "w-1", token))
            .unwrap();
        t.connect().await.unwrap();
        let call = || async {
            let hb = Heartbeat {
                worker_id: "w-1".into(),
                ..Default::default()
            };
            // A connection cut while idle may fail one call before the next reconnects.
            for _ in 0..3 {
                match t.send_heartbeat(&hb).await {
                    Err(e) if e.is_network() => continue,
                    other => return other,
                }
            }
            panic!("three network errors in a row");
        };
        let first = call().await;
        tokio::time::sleep(DEADLINE * 3).await;
        let second = call().await;
        assert_eq!(first.is_ok(), token == "t", "{token}: {first:?}");
        assert_eq!(second.is_ok(), token == "t", "{token}: {second:?}");
        assert_eq!(
            proxy.stats().accepted - before,
            connections,
            "{token}: connections used"
        );
    }
    plain.stop(Duration::from_secs(2)).await.unwrap();
    tls.stop(Duration::from_secs(2)).await.unwrap();
}

/// The 1.0b17 envelope on gRPC, at the message level: a sealed registration is taken
/// once; the same message again is refused as a replay, and one changed after sealing
/// as forged (both `PERMISSION_DENIED`, 403 to a worker).
#[tokio::test]
async fn a_sealed_message_is_taken_once_and_a_forged_one_never() {
    use rxon_grpc::pb;
    let orch = rxon_orchestrator::Orchestrator::builder()
        .token("t")
        .build();
    let l = GrpcListener::with_config(GrpcListenerConfig::default());
    l.start(Arc::new(orch.clone())).await.unwrap();
    let url = l.endpoint().unwrap().replacen("grpc://", "http://", 1);
    let mut client = pb::worker_service_client::WorkerServiceClient::connect(url)
        .await
        .unwrap();
    let registration = WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: SkillInfo::list(["echo"]),
        ..Default::default()
    };
    let sealed = rxon_wire::guard::seal_message(&registration, "t", "w-1", &[]).unwrap();
    let message = |r: &WorkerRegistration| {
        let mut m = pb::WorkerRegistration {
            worker_id: r.worker_id.clone(),
            supported_skills: vec!["echo".into()],
            timestamp: r.timestamp,
            nonce: r.nonce.clone(),
            security: r.security.as_ref().map(|s| pb::SecurityContext {
                signature: s.signature.clone(),
                signer_id: s.signer_id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        m.worker_type = r.worker_type.clone();
        let mut request = tonic::Request::new(m);
        let meta = request.metadata_mut();
        meta.insert("x-worker-token", "t".parse().unwrap());
        meta.insert("x-rxon-version", "1.0b17".parse().unwrap());
        meta.insert("x-worker-id", "w-1".parse().unwrap());
        request
    };
    client.register(message(&sealed)).await.expect("taken once");
    let replay = client.register(message(&sealed)).await.unwrap_err();
    assert_eq!(replay.code(), tonic::Code::PermissionDenied, "{replay:?}");
    assert!(replay.message().contains("replay"), "{replay:?}");
    let mut forged = sealed.clone();
    forged.worker_type = "not-what-was-signed".into();
    let forged = client.register(message(&forged)).await.unwrap_err();
    assert_eq!(forged.code(), tonic::Code::PermissionDenied, "{forged:?}");
    assert!(forged.message().contains("signature"), "{forged:?}");
    l.stop(Duration::from_secs(2)).await.unwrap();
}
