//! HttpTransport against HttpListener on 127.0.0.1, with a scripted handler that records
//! what it saw; and raw HTTP against the listener for hostile input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::*;
use rxon_http::{HttpListener, HttpListenerConfig, HttpTransport, ServiceConfig};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const BOUND: Duration = Duration::from_secs(10);

/// An orchestrator whose answers the test scripts.
#[derive(Default)]
struct Scripted {
    tasks: Mutex<VecDeque<TaskPayload>>,
    changed: Notify,
    pending_polls: AtomicUsize,
    contexts: Mutex<Vec<RequestContext>>,
    heartbeats: Mutex<Vec<Option<Heartbeat>>>,
    results: Mutex<Vec<TaskResult>>,
    result_calls: AtomicUsize,
    /// Errors returned by the next result calls, in order.
    result_errors: Mutex<VecDeque<HandlerError>>,
    outcome: Mutex<Option<ResultOutcome>>,
    register_error: Mutex<Option<HandlerError>>,
    register_hangs: std::sync::atomic::AtomicBool,
    big_reply: AtomicUsize,
    sts_calls: AtomicUsize,
}

impl Scripted {
    fn authorize(&self, ctx: &RequestContext) -> HandlerResult<()> {
        self.contexts.lock().unwrap().push(ctx.clone());
        match ctx.token.as_deref() {
            Some("good") => Ok(()),
            Some(t) if t.starts_with("sts-") => Ok(()),
            _ => Err(HandlerError::unauthorized("invalid worker token")),
        }
    }

    fn push(&self, task: TaskPayload) {
        self.tasks.lock().unwrap().push_back(task);
        self.changed.notify_waiters();
    }

    async fn wait_for_pollers(&self, n: usize) {
        tokio::time::timeout(BOUND, async {
            while self.pending_polls.load(Ordering::SeqCst) < n {
                let notified = self.changed.notified();
                if self.pending_polls.load(Ordering::SeqCst) >= n {
                    break;
                }
                notified.await;
            }
        })
        .await
        .expect("poll reached the handler");
    }
}

impl Handler for Scripted {
    fn register(
        &self,
        ctx: RequestContext,
        registration: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
        Box::pin(async move {
            self.authorize(&ctx)?;
            if self.register_hangs.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if let Some(e) = self.register_error.lock().unwrap().take() {
                return Err(e);
            }
            let mut reply = RegisterReply {
                version: Some(PROTOCOL_VERSION.into()),
                ..Default::default()
            };
            reply
                .extra
                .insert("worker".into(), Value::from(registration.worker_id));
            let big = self.big_reply.load(Ordering::SeqCst);
            if big > 0 {
                reply
                    .extra
                    .insert("padding".into(), Value::from("x".repeat(big)));
            }
            Ok(reply)
        })
    }

    fn poll(
        &self,
        ctx: RequestContext,
        wait: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
        Box::pin(async move {
            self.authorize(&ctx)?;
            struct Parked<'a>(&'a Scripted);
            impl Drop for Parked<'_> {
                fn drop(&mut self) {
                    self.0.pending_polls.fetch_sub(1, Ordering::SeqCst);
                }
            }
            self.pending_polls.fetch_add(1, Ordering::SeqCst);
            let _parked = Parked(self);
            self.changed.notify_waiters();
            let wait_for_task = async {
                loop {
                    let notified = self.changed.notified();
                    let mut notified = std::pin::pin!(notified);
                    notified.as_mut().enable();
                    if let Some(t) = self.tasks.lock().unwrap().pop_front() {
                        return t;
                    }
                    notified.await;
                }
            };
            Ok(tokio::time::timeout(wait, wait_for_task).await.ok())
        })
    }

    fn result(
        &self,
        ctx: RequestContext,
        result: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
        Box::pin(async move {
            self.authorize(&ctx)?;
            self.result_calls.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = self.result_errors.lock().unwrap().pop_front() {
                return Err(e);
            }
            self.results.lock().unwrap().push(result);
            Ok(self
                .outcome
                .lock()
                .unwrap()
                .clone()
                .unwrap_or(ResultOutcome::Accepted))
        })
    }

    fn heartbeat(
        &self,
        ctx: RequestContext,
        heartbeat: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
        Box::pin(async move {
            self.authorize(&ctx)?;
            self.heartbeats.lock().unwrap().push(heartbeat);
            Ok(HeartbeatReply {
                cancel_task_ids: vec!["t-cancel".into()],
                ..Default::default()
            })
        })
    }

    fn token(&self, ctx: RequestContext) -> BoxFuture<'_, HandlerResult<TokenResponse>> {
        Box::pin(async move {
            self.contexts.lock().unwrap().push(ctx.clone());
            if !matches!(ctx.token.as_deref(), Some("bootstrap" | "good")) {
                return Err(HandlerError::unauthorized("unknown credential"));
            }
            // Yield so that concurrent refreshers would overlap if not serialised.
            tokio::task::yield_now().await;
            let n = self.sts_calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(TokenResponse {
                access_token: format!("sts-{n}"),
                expires_in: 60,
                worker_id: ctx.worker_id.unwrap_or_else(|| "w-1".into()),
                ..Default::default()
            })
        })
    }
}

struct Setup {
    handler: Arc<Scripted>,
    listener: HttpListener,
    url: String,
}

async fn setup_with(service: ServiceConfig) -> Setup {
    let handler = Arc::new(Scripted::default());
    let mut config = HttpListenerConfig::default();
    config.service = service;
    let listener = HttpListener::with_config(config);
    listener.start(handler.clone()).await.unwrap();
    let url = listener.endpoint().unwrap();
    Setup {
        handler,
        listener,
        url,
    }
}

async fn setup() -> Setup {
    let mut service = ServiceConfig::default();
    service.poll_wait = Duration::from_millis(300);
    setup_with(service).await
}

async fn worker(url: &str, token: &str) -> HttpTransport {
    worker_speaking(url, token, ProtocolChoice::Auto).await
}

async fn worker_speaking(url: &str, token: &str, protocol: ProtocolChoice) -> HttpTransport {
    let mut config = TransportConfig::new(url, "w-1", token);
    config.options.result_retry_delay = Duration::from_millis(5);
    config.options.protocol = protocol;
    let t = HttpTransport::from_config(&config).unwrap();
    t.connect().await.unwrap();
    t
}

fn task(id: &str) -> TaskPayload {
    TaskPayload {
        job_id: "job-1".into(),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_operation_round_trips_with_its_context() {
    let s = setup().await;
    let t = worker_speaking(&s.url, "good", ProtocolChoice::Pinned(Protocol::V1b3)).await;
    let reg = WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    let reply = t.register(&reg).await.unwrap();
    assert_eq!(reply.status, "registered");
    assert_eq!(reply.version.as_deref(), Some(PROTOCOL_VERSION));
    assert_eq!(reply.extra["worker"].as_str(), Some("w-1"));

    s.handler.push(task("t-1"));
    let got = t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(got, task("t-1"));

    let outcome = t
        .send_result(&TaskResult::success(&got, "w-1", Map::new()))
        .await
        .unwrap();
    assert!(outcome.is_accepted());
    assert_eq!(s.handler.results.lock().unwrap()[0].task_id, "t-1");

    let hb = Heartbeat {
        worker_id: "w-1".into(),
        status: "idle".into(),
        ..Default::default()
    };
    let reply = t.send_heartbeat(&hb).await.unwrap();
    assert_eq!(reply.cancel_task_ids, ["t-cancel"]);
    // 1.0b3 always carries the skill list: an unset one arrives empty.
    let arrived = Heartbeat {
        supported_skills: Some(vec![]),
        ..hb
    };
    assert_eq!(s.handler.heartbeats.lock().unwrap()[0], Some(arrived));

    let token = t.refresh_token().await.unwrap();
    assert_eq!(token.access_token, "sts-1");
    assert_eq!(t.token(), "sts-1");

    let contexts = s.handler.contexts.lock().unwrap().clone();
    assert!(contexts.len() >= 5);
    for ctx in &contexts {
        assert_eq!(ctx.transport, "http");
        assert_eq!(ctx.protocol_version.as_deref(), Some(PROTOCOL_VERSION));
        assert!(ctx.remote_addr.unwrap().ip().is_loopback());
        assert_eq!(ctx.cert_identity, None);
    }
    assert_eq!(
        contexts[1].worker_id.as_deref(),
        Some("w-1"),
        "poll path id"
    );
    assert_eq!(contexts[0].worker_id, None, "register has no path id");
    // Sequential operations share one pooled keep-alive connection.
    let first = contexts[0].remote_addr;
    assert!(
        contexts.iter().all(|c| c.remote_addr == first),
        "{contexts:?}"
    );
    s.listener.stop(BOUND).await.unwrap();
}

/// The same operations in 1.0b17, chosen by `auto`: the probe comes first (an empty
/// heartbeat), every request names the worker, and the envelope stays on the wire.
#[tokio::test]
async fn auto_speaks_1_0b17_to_a_listener_that_answers_it() {
    let s = setup().await;
    let t = worker(&s.url, "good").await;
    assert_eq!(t.protocol().await.unwrap(), Protocol::V1b17);
    let reg = WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: SkillInfo::list(["echo"]),
        ..Default::default()
    };
    t.register(&reg).await.unwrap();
    s.handler.push(task("t-1"));
    let got = t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(got, task("t-1"));
    let ok = TaskResult::success(&got, "w-1", Map::new());
    assert!(t.send_result(&ok).await.unwrap().is_accepted());
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        status: "idle".into(),
        ..Default::default()
    };
    t.send_heartbeat(&hb).await.unwrap();
    assert_eq!(
        *s.handler.heartbeats.lock().unwrap(),
        [None, Some(hb)],
        "the probe, then the heartbeat without its envelope"
    );
    assert_eq!(s.handler.results.lock().unwrap()[0], ok);
    let contexts = s.handler.contexts.lock().unwrap().clone();
    for ctx in &contexts {
        assert_eq!(ctx.protocol(), Protocol::V1b17);
        assert_eq!(
            ctx.worker_id.as_deref(),
            Some("w-1"),
            "X-Worker-ID or the path"
        );
    }
    s.listener.stop(BOUND).await.unwrap();
}

#[tokio::test]
async fn an_empty_poll_is_none_and_a_parked_poll_wakes_for_a_new_task() {
    let s = setup().await;
    let t = Arc::new(worker(&s.url, "good").await);
    assert_eq!(t.poll_task(Duration::from_secs(1)).await.unwrap(), None);

    let mut service = ServiceConfig::default();
    service.poll_wait = Duration::from_secs(30);
    let long = setup_with(service).await;
    let t = Arc::new(worker(&long.url, "good").await);
    let poller = {
        let t = t.clone();
        tokio::spawn(async move { t.poll_task(Duration::from_secs(30)).await })
    };
    long.handler.wait_for_pollers(1).await;
    long.handler.push(task("fresh"));
    let got = tokio::time::timeout(BOUND, poller).await.unwrap().unwrap();
    assert_eq!(got.unwrap().unwrap().task_id, "fresh");
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries_even_when_concurrent() {
    let s = setup().await;
    // "bootstrap" is accepted only by the STS endpoint.
    let t = Arc::new(worker(&s.url, "bootstrap").await);
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    let mut calls = Vec::new();
    for _ in 0..8 {
        let t = t.clone();
        let hb = hb.clone();
        calls.push(tokio::spawn(async move { t.send_heartbeat(&hb).await }));
    }
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(s.handler.sts_calls.load(Ordering::SeqCst), 1, "one refresh");
    assert_eq!(s.handler.heartbeats.lock().unwrap().len(), 8);
    assert_eq!(t.token(), "sts-1");

    // A credential nobody accepts: the refresh fails and the error is Auth.
    let bad = worker(&s.url, "stolen").await;
    let err = bad.send_heartbeat(&hb).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
}

#[tokio::test]
async fn rate_limits_carry_retry_after_and_protocol_errors_their_status() {
    let s = setup().await;
    let t = worker(&s.url, "good").await;
    let reg = WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    *s.handler.register_error.lock().unwrap() = Some(HandlerError::rate_limited(
        "slow down",
        Some(Duration::from_millis(2500)),
    ));
    let err = t.register(&reg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(3)),
        "rounded up"
    );
    assert!(err.message().contains("slow down"));

    *s.handler.register_error.lock().unwrap() = Some(HandlerError::conflict("already there"));
    let err = t.register(&reg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert_eq!(err.details()["status"].as_u64(), Some(409));
    assert_eq!(err.details()["body"].as_str(), Some("already there"));
}

#[tokio::test]
async fn results_retry_network_failures_only() {
    let s = setup().await;
    let t = worker(&s.url, "good").await;
    let r = TaskResult::cancelled(&task("t-r"), "w-1");

    // Two 503s (network family), then success: three calls, applied once.
    s.handler.result_errors.lock().unwrap().extend([
        HandlerError::unavailable("restarting"),
        HandlerError::unavailable("restarting"),
    ]);
    assert!(t.send_result(&r).await.unwrap().is_accepted());
    assert_eq!(s.handler.result_calls.load(Ordering::SeqCst), 3);
    assert_eq!(s.handler.results.lock().unwrap().len(), 1);

    // Three 503s exhaust the three attempts.
    s.handler.result_errors.lock().unwrap().extend([
        HandlerError::unavailable("down"),
        HandlerError::unavailable("down"),
        HandlerError::unavailable("down"),
    ]);
    let err = t.send_result(&r).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network);
    assert_eq!(s.handler.result_calls.load(Ordering::SeqCst), 6);

    // A protocol error is not retried.
    s.handler
        .result_errors
        .lock()
        .unwrap()
        .push_back(HandlerError::bad_request("no"));
    assert!(t.send_result(&r).await.unwrap_err().is_protocol());
    assert_eq!(s.handler.result_calls.load(Ordering::SeqCst), 7);

    // An ignored answer is returned, not retried.
    *s.handler.outcome.lock().unwrap() = Some(ResultOutcome::ignored(
        IgnoredReason::WorkerMismatch,
        "held by w-2",
    ));
    let outcome = t.send_result(&r).await.unwrap();
    assert_eq!(
        outcome.ignored_reason(),
        Some(&IgnoredReason::WorkerMismatch)
    );
    assert_eq!(s.handler.result_calls.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn network_failures_timeouts_limits_and_lifecycle() {
    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = worker(&format!("http://127.0.0.1:{port}"), "good").await;
    let err = t.poll_task(Duration::from_millis(10)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");

    let s = setup().await;
    let reg = WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    };
    // A reply over max_message_bytes is refused.
    s.handler.big_reply.store(4096, Ordering::SeqCst);
    let mut cfg = TransportConfig::new(&s.url, "w-1", "good");
    cfg.options.max_message_bytes = 1024;
    let small = HttpTransport::from_config(&cfg).unwrap();
    small.connect().await.unwrap();
    let err = small.register(&reg).await.unwrap_err();
    assert!(
        err.is_protocol() && err.message().contains("max_message_bytes"),
        "{err}"
    );

    // A handler that never answers hits the request timeout.
    s.handler.register_hangs.store(true, Ordering::SeqCst);
    cfg.options.request_timeout = Duration::from_millis(200);
    cfg.options.max_message_bytes = 1 << 20;
    let impatient = HttpTransport::from_config(&cfg).unwrap();
    impatient.connect().await.unwrap();
    let err = impatient.register(&reg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

    // Lifecycle.
    let fresh = HttpTransport::new(&s.url, "w-1", "good").unwrap();
    assert_eq!(
        fresh
            .poll_task(Duration::from_millis(1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
    fresh.connect().await.unwrap();
    fresh.close().await.unwrap();
    assert_eq!(
        fresh.register(&reg).await.unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(fresh.next_command().await.unwrap(), None);
    assert_eq!(fresh.connect().await.unwrap_err().kind(), ErrorKind::Closed);

    // A handler without command channels: the channel's refusal (501) surfaces as
    // Unsupported; progress cannot be sent while the channel is down.
    let t = worker(&s.url, "good").await;
    assert_eq!(
        t.next_command().await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let p = ProgressUpdatePayload::new("t", "j", 0.1);
    assert!(t.send_progress(&p).await.is_err());

    // Bad configuration.
    assert_eq!(
        HttpTransport::new("http://h", "bad/id", "t")
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        HttpTransport::new("ftp://h", "w", "t").unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(
        HttpTransport::new("http://h", "w", "bad\ntoken")
            .unwrap_err()
            .kind(),
        ErrorKind::Config
    );
}

#[tokio::test]
async fn stop_ends_pending_polls_with_no_task() {
    let mut service = ServiceConfig::default();
    service.poll_wait = Duration::from_secs(60);
    let s = setup_with(service).await;
    let t = Arc::new(worker(&s.url, "good").await);
    let poller = {
        let t = t.clone();
        tokio::spawn(async move { t.poll_task(Duration::from_secs(60)).await })
    };
    s.handler.wait_for_pollers(1).await;
    tokio::time::timeout(BOUND, s.listener.stop(Duration::from_secs(5)))
        .await
        .expect("stop is bounded")
        .unwrap();
    let polled = tokio::time::timeout(BOUND, poller).await.unwrap().unwrap();
    assert_eq!(polled.unwrap(), None, "a stopping listener answers 204");
    assert_eq!(s.handler.pending_polls.load(Ordering::SeqCst), 0);
    assert!(s.listener.endpoint().is_none());
    // The port is closed now.
    let err = t.poll_task(Duration::from_millis(10)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network);
}

/// Sends raw bytes, reads until the server closes; returns (status, head, body).
async fn raw(url: &str, request: &[u8]) -> (u16, String, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut out))
        .await
        .expect("server answered and closed")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nX-Worker-Token: good\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn hostile_requests_get_clear_statuses() {
    let mut service = ServiceConfig::default();
    service.max_body_bytes = 1024;
    service.poll_wait = Duration::from_millis(100);
    let s = setup_with(service).await;
    let u = &s.url;

    let (status, head, body) = raw(
        u,
        &request("POST", "/_worker/tasks/result", "{\"job_id\": 1"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid TaskResult"), "{body}");
    assert!(
        head.to_ascii_lowercase().contains("x-rxon-version: 1.0b3"),
        "{head}"
    );

    let missing = r#"{"job_id":"j","task_id":"t","worker_id":"w"}"#;
    let (status, _, body) = raw(u, &request("POST", "/_worker/tasks/result", missing)).await;
    assert_eq!(status, 400);
    assert!(body.contains("missing field `status`"), "{body}");

    let wrong_type = r#"{"job_id":"j","task_id":"t","worker_id":"w","status":5}"#;
    let (status, _, _) = raw(u, &request("POST", "/_worker/tasks/result", wrong_type)).await;
    assert_eq!(status, 400);

    // Declared too large: refused without reading the body.
    let head_only = b"POST /_worker/tasks/result HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000000000\r\n\r\n";
    let (status, _, body) = raw(u, head_only).await;
    assert_eq!(status, 413, "{body}");

    // Chunked and too large: cut at the limit.
    let big = "x".repeat(4096);
    let chunked = format!(
        "POST /_worker/tasks/result HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (status, _, _) = raw(u, chunked.as_bytes()).await;
    assert_eq!(status, 413);

    let (status, _, body) = raw(
        u,
        &request("GET", "/_worker/workers/..%2Fetc/tasks/next", ""),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid worker_id"), "{body}");
    let (status, _, body) = raw(
        u,
        &request("GET", "/_worker/workers/w-1/tasks/next?timeout=-3", ""),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid timeout"), "{body}");
    let (status, _, _) = raw(u, &request("PATCH", "/_worker/workers/a.b", "")).await;
    assert_eq!(status, 400);
    let (status, _, _) = raw(u, &request("GET", "/_worker/nope", "")).await;
    assert_eq!(status, 404);
    let (status, _, _) = raw(u, &request("GET", "/", "")).await;
    assert_eq!(status, 404);
    let (status, _, _) = raw(u, &request("DELETE", "/_worker/tasks/result", "")).await;
    assert_eq!(status, 405);
    let (status, _, body) = raw(u, &request("GET", "/_worker/ws", "")).await;
    assert_eq!(
        status, 426,
        "a plain GET on the channel asks for an upgrade: {body}"
    );
    let (status, _, _) = raw(u, &request("GET", "/_worker/ws/a.b", "")).await;
    assert_eq!(status, 400);

    // Empty heartbeat body: the handler gets None.
    let (status, _, body) = raw(u, &request("PATCH", "/_worker/workers/w-1", "")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.handler.heartbeats.lock().unwrap().last(), Some(&None));

    // Wrong token: 401 with the reference's error body.
    let bad = b"GET /_worker/workers/w-1/tasks/next HTTP/1.1\r\nHost: x\r\nX-Worker-Token: nope\r\nConnection: close\r\n\r\n";
    let (status, _, body) = raw(u, bad).await;
    assert_eq!(status, 401);
    assert_eq!(body, r#"{"error":"invalid worker token"}"#);

    // No task: 204 and no body.
    let (status, _, body) = raw(u, &request("GET", "/_worker/workers/w-1/tasks/next", "")).await;
    assert_eq!((status, body.as_str()), (204, ""));

    // Garbage instead of HTTP: the connection is closed, the listener lives on.
    let (status, _, _) = raw(u, b"\x00\x01\x02 not http\r\n\r\n").await;
    assert_eq!(status, 400);
    let (status, _, _) = raw(u, &request("GET", "/_worker/workers/w-1/tasks/next", "")).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn slow_clients_are_cut_by_the_header_timeout() {
    let handler = Arc::new(Scripted::default());
    let mut config = HttpListenerConfig::default();
    config.header_read_timeout = Duration::from_millis(200);
    let listener = HttpListener::with_config(config);
    listener.start(handler).await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Half a request line, then silence: the listener must hang up, not wait forever.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /_worker/workers/w-1/tas")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut out))
        .await
        .expect("the listener closed the idle connection")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    listener.stop(BOUND).await.unwrap();
}

#[tokio::test]
async fn the_service_mounts_in_a_host_server_beside_its_own_routes() {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;

    let handler = Arc::new(Scripted::default());
    handler.push(task("mounted"));
    let rxon = rxon_http::HttpService::new(handler.clone());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let rxon = rxon.clone();
            tokio::spawn(async move {
                // The host's own router: /health is its own, /_worker/* is RXON's.
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let rxon = rxon.clone();
                        async move {
                            if req.uri().path() == "/health" {
                                let body = Full::new(bytes::Bytes::from_static(b"ok"));
                                return Ok::<_, std::convert::Infallible>(http::Response::new(
                                    body,
                                ));
                            }
                            Ok(rxon.handle(req).await)
                        }
                    });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let t = worker(&url, "good").await;
    let got = t.poll_task(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(got.task_id, "mounted");
    let health = raw(
        &url,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((health.0, health.2.as_str()), (200, "ok"));
    server.abort();
}

/// An issued token that a restarted orchestrator no longer knows: the refresh asks
/// the token service with the configured credential, so the worker is not locked out.
#[tokio::test]
async fn a_forgotten_issued_token_is_replaced_with_the_configured_credential() {
    for protocol in [Protocol::V1b3, Protocol::V1b17] {
        let first = rxon_orchestrator::Orchestrator::builder()
            .token("static")
            .build();
        let listener = HttpListener::bind("127.0.0.1:0".parse().unwrap());
        listener.start(Arc::new(first)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = listener.endpoint().unwrap();
        let t = worker_speaking(&url, "static", ProtocolChoice::Pinned(protocol)).await;
        let issued = t.refresh_token().await.unwrap();
        assert_eq!(t.token(), issued.access_token);
        listener.stop(BOUND).await.unwrap();

        let second = rxon_orchestrator::Orchestrator::builder()
            .token("static")
            .build();
        let mut config = HttpListenerConfig::default();
        config.bind = addr;
        let listener = HttpListener::with_config(config);
        listener.start(Arc::new(second)).await.unwrap();
        let reg = WorkerRegistration {
            worker_id: "w-1".into(),
            ..Default::default()
        };
        t.register(&reg)
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_ne!(t.token(), issued.access_token, "{protocol}");
        listener.stop(BOUND).await.unwrap();
    }
}
