//! Idle cost: what a listener process holds per parked long-poll, and the CPU it burns
//! while nothing happens.
//!
//! `rxon-bench idle <rxon|rxon-redis|ws|grpc|hyper|python> <n>` starts the listener as
//! a child process (`rxon-bench serve-idle <kind>`, or the Python script; so its
//! memory is the listener's alone), registers `n` workers (over raw TCP connections on
//! HTTP, over the project's transport on WebSocket and gRPC) and leaves one poll
//! parked on each. It then reads the child's resident memory before and after, and its
//! CPU time over 5 idle seconds (divided by the time measured between the two
//! readings, not by the nominal 5 s). A child that exits before it is asked to, or
//! exits with a failure status, fails the run.
//!
//! - `rxon`: `HttpListener` over the embedded `Orchestrator` (polls park in its queue
//!   hand-off, as in production).
//! - `rxon-redis`: the same with the orchestrator's state in Redis (a `redis-server` the
//!   child starts: its memory is not the listener's).
//! - `ws`, `grpc`: `WsListener` and `GrpcListener` over the embedded `Orchestrator`, the
//!   workers on the project's own `WsTransport` and `GrpcTransport` (1.0b3), one
//!   connection each, a poll parked on each;
//! - `hyper`: a bare hyper server whose poll route just sleeps: the cost of the HTTP
//!   connection alone;
//! - `python`: the Python reference's `HttpListener` (rxon 1.0b3 on aiohttp) whose poll
//!   handler sleeps (`xtask/interop/py_idle_listener.py`, run by `RXON_BENCH_PYTHON`).

use http_body_util::BodyExt;
use rxon::orchestrator::Orchestrator;
use rxon::{Listener, WorkerRegistration};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const POLL_WAIT: Duration = Duration::from_secs(300);
/// The Python row's listener: the reference's aiohttp `HttpListener` (rxon 1.0b3).
const PY_IDLE_LISTENER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../xtask/interop/py_idle_listener.py"
);
const IDLE_WINDOW: Duration = Duration::from_secs(5);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The child: a listener that answers `STATUS` lines on stdin with its parked polls,
/// resident memory and CPU time.
pub(crate) async fn serve(kind: &str, capacity: usize) -> Result<(), String> {
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(|_| "addr")?;
    let mut serving: Option<Box<dyn Listener>> = None;
    // `rxon-redis`: the orchestrator's state in a redis-server of its own (another
    // process, so not in this one's memory).
    let mut _redis = None;
    let (url, pending): (String, Box<dyn Fn() -> usize + Send>) = match kind {
        "rxon" | "rxon-redis" | "ws" | "grpc" => {
            let mut builder = Orchestrator::builder().token("bench").max_workers(capacity);
            if kind == "rxon-redis" {
                let server = rxon::testing::redis::RedisServer::start_with_appendfsync("everysec")?;
                let storage =
                    rxon::orchestrator::Storage::redis(server.url()).map_err(|e| e.to_string())?;
                builder = builder.storage(storage);
                _redis = Some(server);
            }
            let orchestrator = builder.build();
            let mut options = rxon::ListenerOptions::default();
            options.bind = addr;
            options.max_connections = capacity + 16;
            options.poll_wait = POLL_WAIT;
            let listener: Box<dyn Listener> = match kind {
                "ws" => Box::new(rxon::ws::WsListener::with_options(options)),
                "grpc" => Box::new(rxon::grpc::GrpcListener::with_options(options)),
                _ => Box::new(rxon::http::HttpListener::with_options(options)),
            };
            listener
                .start(Arc::new(orchestrator.clone()))
                .await
                .map_err(|e| e.to_string())?;
            let url = listener.endpoint().unwrap_or_default();
            serving = Some(listener);
            (url, Box::new(move || orchestrator.pending_polls()))
        }
        "hyper" => {
            let parked = Arc::new(AtomicUsize::new(0));
            let url = parking_hyper(parked.clone()).await?;
            (url, Box::new(move || parked.load(Ordering::Relaxed)))
        }
        other => return Err(format!("unknown idle server {other:?}")),
    };
    println!("LISTENING {url}");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "STATUS" {
            println!(
                "STATUS {} {} {}",
                pending(),
                crate::proc_status_kib("VmRSS"),
                crate::cpu_seconds()
            );
        }
    }
    if let Some(listener) = serving {
        listener
            .stop(Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A bare hyper server: register answers at once, a poll sleeps until `POLL_WAIT`.
async fn parking_hyper(parked: Arc<AtomicUsize>) -> Result<String, String> {
    let addr = crate::serve_http1(move |req: http::Request<hyper::body::Incoming>| {
        let parked = parked.clone();
        async move {
            if req.method() == http::Method::GET {
                parked.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(POLL_WAIT).await;
                parked.fetch_sub(1, Ordering::Relaxed);
                http::StatusCode::NO_CONTENT
            } else {
                // Read the body so the connection stays usable.
                let _ = req.into_body().collect().await;
                http::StatusCode::OK
            }
        }
    })
    .await?;
    Ok(format!("http://{addr}"))
}

struct Status {
    pending: usize,
    rss_kib: u64,
    cpu_s: f64,
}

/// The parent: spawns the server, parks `n` polls on it, measures.
pub(crate) async fn run(kind: &str, n: usize) -> Result<(), String> {
    // RXON_BENCH_SERVER_WRAPPER: a script that execs rxon-bench with its arguments under
    // a profiler (valgrind --tool=massif, perf record).
    let exe = match std::env::var_os("RXON_BENCH_SERVER_WRAPPER") {
        Some(wrapper) => wrapper.into(),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let mut command = if kind == "python" {
        let python = std::env::var_os("RXON_BENCH_PYTHON").ok_or(
            "idle python needs RXON_BENCH_PYTHON: a Python with rxon==1.0b3 (cargo xtask bench sets it)",
        )?;
        let mut c = tokio::process::Command::new(python);
        c.arg(PY_IDLE_LISTENER);
        c
    } else {
        let mut c = tokio::process::Command::new(&exe);
        c.args(["serve-idle", kind, &n.to_string()]);
        c
    };
    let shown = format!("{:?}", command.as_std()).replace('"', "");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the idle server ({shown}): {e}"))?;
    let mut to_child = child.stdin.take().ok_or("no stdin")?;
    let mut from_child = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let announced = tokio::time::timeout(Duration::from_secs(120), from_child.next_line())
        .await
        .map_err(|_| "the idle server did not start".to_owned())
        .and_then(|line| line.map_err(|e| e.to_string()))
        .and_then(|line| {
            line.and_then(|l| l.strip_prefix("LISTENING ").map(str::to_owned))
                .ok_or_else(|| "the idle server did not announce its URL".to_owned())
        });
    let url = announced.map_err(|e| with_exit_status(&mut child, &shown, e))?;

    let mut status = async || -> Result<Status, String> {
        to_child
            .write_all(b"STATUS\n")
            .await
            .map_err(|e| e.to_string())?;
        let line = tokio::time::timeout(Duration::from_secs(10), from_child.next_line())
            .await
            .map_err(|_| "no STATUS answer")?
            .map_err(|e| e.to_string())?
            .ok_or("the idle server exited")?;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["STATUS", p, r, c] => Ok(Status {
                pending: p.parse().map_err(|_| "pending")?,
                rss_kib: r.parse().map_err(|_| "rss")?,
                cpu_s: c.parse().map_err(|_| "cpu")?,
            }),
            _ => Err(format!("bad STATUS line {line:?}")),
        }
    };

    // The measurement; on an error, the child's exit status (if it has exited) is added.
    let measured = async {
        let baseline = status().await?;
        let started = Instant::now();
        let mut parked = tokio::task::JoinSet::new();
        let gate = Arc::new(tokio::sync::Semaphore::new(128));
        for i in 0..n {
            let (url, gate, kind) = (url.clone(), gate.clone(), kind.to_owned());
            parked.spawn(async move {
                let permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
                let worker_id = format!("idle-{i}");
                let conn = match kind.as_str() {
                    "ws" | "grpc" => park_transport(&url, &worker_id).await,
                    _ => park_one(url.trim_start_matches("http://"), &worker_id)
                        .await
                        .map(|c| Box::new(c) as Box<dyn Send>),
                };
                drop(permit);
                conn
            });
        }
        let mut conns = Vec::with_capacity(n);
        while let Some(done) = parked.join_next().await {
            conns.push(done.map_err(|e| e.to_string())??);
        }
        let settle_deadline = Instant::now() + SETTLE_TIMEOUT;
        let loaded = loop {
            let s = status().await?;
            if s.pending >= n {
                break s;
            }
            if Instant::now() > settle_deadline {
                return Err(format!("only {} of {n} polls parked", s.pending));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let setup_s = started.elapsed().as_secs_f64();
        // The idle window: from one CPU reading to the next, as measured here (each
        // reading lags its request by about the same round trip), not the nominal 5 s.
        let cpu_start = status().await?.cpu_s;
        let window_started = Instant::now();
        tokio::time::sleep(IDLE_WINDOW).await;
        let idle = status().await?;
        let window_s = window_started.elapsed().as_secs_f64().max(f64::EPSILON);
        let per_conn = (loaded.rss_kib.saturating_sub(baseline.rss_kib)) as f64 / n as f64;
        let figures = serde_json::json!({
            "server": kind,
            "parked_polls": loaded.pending,
            "baseline_rss_kib": baseline.rss_kib,
            "loaded_rss_kib": loaded.rss_kib,
            "kib_per_poll": (per_conn * 10.0).round() / 10.0,
            "idle_cpu_ms_per_s": ((idle.cpu_s - cpu_start) * 1000.0 / window_s * 10.0).round() / 10.0,
            "setup_s": (setup_s * 10.0).round() / 10.0,
            "server_cpu_during_setup_s": loaded.cpu_s - baseline.cpu_s,
        });
        Ok::<_, String>((figures, conns))
    }
    .await;
    let (figures, conns) = measured.map_err(|e| with_exit_status(&mut child, &shown, e))?;
    drop(conns);
    drop(to_child);
    // Stdin closed: the child stops its listener and exits. One still running after
    // 10 s is killed on drop (that end is not a failure); a failure status is.
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(exit)) if exit.success() => {}
        Ok(Ok(exit)) => return Err(format!("{shown} exited with {exit}")),
        Ok(Err(e)) => return Err(format!("{shown}: {e}")),
        Err(_) => {
            eprintln!("rxon-bench: {shown} did not exit within 10 s of its stdin closing; killed")
        }
    }
    println!("{figures}");
    Ok(())
}

/// `e`, with `child`'s exit status added when it has already exited (it was not asked to).
fn with_exit_status(child: &mut tokio::process::Child, shown: &str, e: String) -> String {
    match child.try_wait() {
        Ok(Some(exit)) => format!("{e} ({shown} exited early with {exit})"),
        _ => e,
    }
}

/// A worker over the project's own transport for `url` (WebSocket or gRPC, 1.0b3):
/// registered, with a poll sent; returns what keeps its connection and its poll alive.
/// The poll is parked once the listener counts it (the caller waits for that).
async fn park_transport(url: &str, worker_id: &str) -> Result<Box<dyn Send>, String> {
    let mut options = rxon::TransportOptions::default();
    options.protocol = rxon::ProtocolChoice::Pinned(rxon::Protocol::V1b3);
    let transport = crate::registered_worker(url, worker_id, options).await?;
    let poll = tokio::spawn({
        let transport = transport.clone();
        async move { transport.poll_task(POLL_WAIT).await }
    });
    Ok(Box::new((transport, AbortOnDrop(poll))))
}

/// Aborts the task when dropped (a parked poll outlives nothing it is held by).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Registers `worker_id` and sends its poll on the same connection; returns the
/// connection with the poll parked on it.
async fn park_one(addr: &str, worker_id: &str) -> Result<TcpStream, String> {
    let mut conn = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let registration = WorkerRegistration {
        worker_id: worker_id.to_owned(),
        worker_type: "bench".into(),
        supported_skills: vec!["echo".into()],
        ..Default::default()
    };
    // A 1.0b3 worker (no X-RXON-Version): the seed's shape.
    let body =
        rxon::wire::to_vec(rxon::Protocol::V1b3, &registration).map_err(|e| e.to_string())?;
    let head = format!(
        "POST /_worker/workers/register HTTP/1.1\r\nHost: {addr}\r\nX-Worker-Token: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    conn.write_all(&body).await.map_err(|e| e.to_string())?;
    // Read the whole answer: the head, then Content-Length bytes of body.
    let mut got = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = conn.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during registration".to_owned());
            }
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if rest.len() >= len {
                    return Ok(head.lines().next().unwrap_or_default().to_owned());
                }
            }
        }
    })
    .await
    .map_err(|_| "registration timed out".to_owned())??;
    if !answer.contains(" 200") {
        return Err(format!("registration of {worker_id}: {answer}"));
    }
    let poll = format!(
        "GET /_worker/workers/{worker_id}/tasks/next HTTP/1.1\r\nHost: {addr}\r\nX-Worker-Token: bench\r\n\r\n"
    );
    conn.write_all(poll.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}
