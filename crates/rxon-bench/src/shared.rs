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
    let transport = super::registered_worker(served, "bench-0", Default::default()).await?;
    let park_key = format!("{prefix}:park:bench-0");
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

/// When the worker's last parked poll's wait ends (Unix ms), 0 when none is parked.
fn parked_until(redis: &rxon::testing::redis::RedisServer, key: &str) -> Result<i64, String> {
    let reply = redis.command(&["ZRANGE", key, "-1", "-1", "WITHSCORES"])?;
    // `*2`, the poll's id, its score (the end of its wait); `*0` when none is parked.
    Ok(reply
        .lines()
        .nth(4)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0))
}

/// Jobs end to end on the Redis storage with `processes` listener processes: `workers`
/// loops, spread over the processes, each enqueueing a task (from this process, the
/// host) then polling for one and reporting its result, for `seconds`. One JSON line:
/// jobs per second, and CPU per 1000 jobs of the listener processes, of Redis and of
/// this process (host and workers).
pub(crate) async fn load(processes: usize, workers: usize, seconds: u64) -> Result<(), String> {
    let redis = rxon::testing::redis::RedisServer::start()?;
    let url = redis.url();
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..processes.max(1) {
        let (child, served) = spawn(&url, "load", "127.0.0.1:0").await?;
        children.push(child);
        urls.push(served);
    }
    let host = orchestrator(&url, "load")?;
    let mut transports = Vec::with_capacity(workers.max(1));
    for i in 0..workers.max(1) {
        let id = format!("bench-{i}");
        let t: Arc<dyn rxon::Transport> =
            rxon::create_transport(&urls[i % urls.len()], &id, "bench", Default::default())
                .map_err(|e| e.to_string())?;
        t.connect().await.map_err(|e| e.to_string())?;
        t.register(&rxon::WorkerRegistration {
            worker_id: id,
            supported_skills: vec!["echo".into()],
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        transports.push(t);
    }
    let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    let cpu = |pids: &[u32]| -> f64 { pids.iter().map(|&p| super::process_cpu_seconds(p)).sum() };
    let redis_pid = [redis.pid().unwrap_or_default()];
    let (server0, redis0, client0) = (cpu(&pids), cpu(&redis_pid), super::cpu_seconds());
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut runs = tokio::task::JoinSet::new();
    for t in transports {
        let (host, next) = (host.clone(), next.clone());
        runs.spawn(super::cycles(until, move || {
            let (t, host, next) = (t.clone(), host.clone(), next.clone());
            async move {
                let mut task = super::task();
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                task.task_id = format!("job-{n}");
                host.enqueue(task).await?;
                let Some(got) = t.poll_task(Duration::from_secs(1)).await? else {
                    return Ok::<bool, rxon::RxonError>(false);
                };
                let result = rxon::TaskResult::success(&got, t.worker_id(), rxon::Map::new());
                t.send_result(&result).await?;
                Ok(true)
            }
        }));
    }
    let (mut all, errors) = super::joined(runs).await?;
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let jobs = all.len();
    let per_1000 = |cpu_s: f64| 1e6 * cpu_s / (jobs.max(1) as f64);
    let (server, redis_cpu, client) = (
        cpu(&pids) - server0,
        cpu(&redis_pid) - redis0,
        super::cpu_seconds() - client0,
    );
    all.sort();
    let pct = |p: f64| super::percentile(&all, p).as_secs_f64() * 1e6;
    println!(
        "{}",
        serde_json::json!({
            "storage": "redis",
            "listener_processes": processes.max(1),
            "workers": workers.max(1),
            "jobs": jobs,
            "jobs_per_s": jobs as f64 / elapsed,
            "p50_us": pct(0.5),
            "p99_us": pct(0.99),
            "errors": errors,
            "listeners_cpu_ms_per_1000": per_1000(server),
            "redis_cpu_ms_per_1000": per_1000(redis_cpu),
            "host_and_workers_cpu_ms_per_1000": per_1000(client),
            "applied": host.applied_results().await,
        })
    );
    for mut child in children {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    Ok(())
}
