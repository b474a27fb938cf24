//! `serve-shared`: one listener process of an orchestrator whose state is in Redis,
//! for the scale-out tests and benchmarks (several of them on one server).

use rxon::Listener;
use rxon::orchestrator::{Orchestrator, Storage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The claim lease of these processes: a task whose hand-off died with a connection
/// is requeued after it.
pub(crate) const LEASE: Duration = Duration::from_secs(1);
/// The reaper's period.
pub(crate) const REAPER: Duration = Duration::from_millis(50);

/// The orchestrator every process of one run builds alike (token `bench`).
pub(crate) fn orchestrator(url: &str, prefix: &str) -> Result<Orchestrator, String> {
    let storage = Storage::redis(url)
        .and_then(|s| s.with_prefix(prefix))
        .map_err(|e| e.to_string())?;
    Ok(Orchestrator::builder()
        .token("bench")
        .storage(storage)
        .claim_lease(LEASE)
        .worker_ttl(Duration::from_secs(10))
        .build())
}

/// Serves HTTP on `addr` for the orchestrator on `url` / `prefix`, with its reaper;
/// prints `LISTENING <url>` and serves until stdin closes (or the process is killed).
pub(crate) async fn serve(url: &str, prefix: &str, addr: &str) -> Result<(), String> {
    let orch = orchestrator(url, prefix)?;
    let _reaper = orch.spawn_reaper(REAPER);
    let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    // A port given back by a killed process may take a moment to be free (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        let l = rxon::http::HttpListener::bind(addr);
        match l.start(Arc::new(orch.clone())).await {
            Ok(()) => break l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("serve-shared: {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("cannot listen on {addr}: {e}")),
        }
    };
    println!("LISTENING {}", listener.endpoint().unwrap_or_default());
    super::wait_for_stdin_eof().await;
    listener
        .stop(Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())
}

/// A `serve-shared` child process of this binary and the URL it serves.
pub(crate) async fn spawn(
    url: &str,
    prefix: &str,
    addr: &str,
) -> Result<(tokio::process::Child, String), String> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe)
        .args(["serve-shared", url, prefix, addr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start serve-shared: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| "serve-shared did not start within 30 s")?
        .map_err(|e| e.to_string())?
        .ok_or("serve-shared exited")?;
    let served = line
        .strip_prefix("LISTENING ")
        .ok_or_else(|| format!("unexpected line {line:?}"))?;
    Ok((child, served.to_owned()))
}

/// Dispatch latency on the Redis storage: from enqueue to the worker holding the task
/// when its poll is parked on the same process as the enqueue, then on another
/// process (a `serve-shared` child); one JSON line each.
pub(crate) async fn dispatch(samples: usize) -> Result<(), String> {
    // `always`: nothing acknowledged is lost even when Redis is killed (an fsync per
    // write); `everysec`: up to a second of writes lost then.
    for fsync in ["always", "everysec"] {
        let redis = rxon::testing::redis::RedisServer::start_with_appendfsync(fsync)?;
        let url = redis.url();
        let here = orchestrator(&url, "same")?;
        let listener = super::started_listener("http", &here).await?;
        let local_url = listener.endpoint().unwrap_or_default();
        let same = measure(&redis, "same", &here, &local_url, samples).await?;
        listener
            .stop(Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        let (mut child, remote_url) = spawn(&url, "across", "127.0.0.1:0").await?;
        let host = orchestrator(&url, "across")?;
        let across = measure(&redis, "across", &host, &remote_url, samples).await?;
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        for (name, mut latencies) in [("same_process", same), ("across_processes", across)] {
            latencies.sort();
            let pct = |p: f64| super::percentile(&latencies, p).as_secs_f64() * 1e6;
            println!(
                "{}",
                serde_json::json!({"storage": "redis", "appendfsync": fsync, "dispatch": name, "samples": latencies.len(), "p50_us": pct(0.5), "p99_us": pct(0.99)})
            );
        }
    }
    Ok(())
}

/// `samples` dispatches: a worker's poll parked on `served`, a task enqueued on `host`.
async fn measure(
    redis: &rxon::testing::redis::RedisServer,
    prefix: &str,
    host: &Orchestrator,
    served: &str,
    samples: usize,
) -> Result<Vec<Duration>, String> {
    let transport = super::registered_worker(served, Default::default()).await?;
    let park_key = format!("{prefix}:w:bench-0");
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let before = parked_until(redis, &park_key)?;
        let t = transport.clone();
        let poll = tokio::spawn(async move { t.poll_task(Duration::from_secs(30)).await });
        // The poll is parked once its process marked the worker (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while parked_until(redis, &park_key)? <= before {
            if Instant::now() > deadline {
                return Err("the poll did not park within 10 s".into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let mut next = super::task();
        next.task_id = format!("{prefix}-{i}");
        let start = Instant::now();
        host.enqueue(next).await.map_err(|e| e.to_string())?;
        let got = poll
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        latencies.push(start.elapsed());
        let Some(got) = got else {
            return Err("a parked poll returned without the task".into());
        };
        let result = rxon::TaskResult::success(&got, "bench-0", rxon::Map::new());
        transport
            .send_result(&result)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(latencies)
}

/// The worker's `park` mark (Unix ms), 0 when absent.
fn parked_until(redis: &rxon::testing::redis::RedisServer, key: &str) -> Result<i64, String> {
    let reply = redis.command(&["HGET", key, "park"])?;
    // A bulk string `$n\r\n<digits>\r\n`, or `$-1` when absent.
    Ok(reply
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0))
}
