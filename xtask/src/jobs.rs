//! Jobs end to end in `cargo xtask bench`: the same job (an `echo` of a small JSON
//! object, 1.0b17 with signed tasks and sealed results) through each stack a user could
//! pick, one orchestrator process and one worker process each, measured by one driver
//! (`rxon-bench jobs`) that creates jobs on the orchestrator's client API and learns of
//! each result with one request (rxon: a waiting query; avtomatika: its webhook):
//!
//! - rxon's `rxon orchestrator` with rxon's `worker` example, over HTTP, WebSocket
//!   and gRPC;
//! - avtomatika 1.0b30 with avtomatika-worker 1.0b20 (the stack of the reference);
//! - avtomatika 1.0b30 with rxon's `worker` example.
//!
//! Both Python processes log at WARNING, and avtomatika without aiohttp's access log
//! (their per-request lines cost them CPU that a busy deployment would not spend);
//! rxon's examples log nothing per job. avtomatika's client rate limit is off: the
//! driver's state requests would trip it.

use crate::interop::{Peer, stop};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Seconds each stack is measured (after the driver's one-second warm-up).
const SECONDS: &str = "5";
const WORKER_TOKEN: &str = "bench-worker-token";
const SIGNING_KEY: &str = "bench-orchestrator-secret";
const CLIENT_TOKEN: &str = "bench-client-token";
/// Task slots of each worker: more than the driver keeps in flight (16).
const SLOTS: &str = "32";

/// One stack's figures, from the driver's JSON line.
struct Row {
    name: String,
    jobs_per_s: f64,
    orchestrator_ms: f64,
    worker_ms: f64,
}

/// Measures every stack and prints a row for each, then the ratios. `bench` is the
/// release `rxon-bench`, `examples` the release examples of `rxon`, `python` the venv
/// with avtomatika and its SDK.
pub(crate) fn run(root: &Path, bench: &Path, examples: &Path, python: &Path) -> Result<(), String> {
    let scripts = root.join("xtask/interop");
    // avtomatika's warnings (the SDK worker's repeated heartbeat nonces are logged as
    // replay attacks, with a traceback each) go to a file, not into the figures.
    let log = root.join("target/bench-avtomatika.log");
    std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut rows = Vec::new();
    for (transport, scheme) in [("HTTP", "http"), ("WebSocket", "ws"), ("gRPC", "grpc")] {
        let mut orch = crate::rxon_orchestrator(examples);
        orch.args([
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--token",
            WORKER_TOKEN,
            "--task-signing-key",
            SIGNING_KEY,
            "--admin-token",
            CLIENT_TOKEN,
        ]);
        let orch = Peer::start_matching(orch, "orchestrator listening on ")?;
        // The WebSocket transport is served on the HTTP port; gRPC on its own.
        let url = match scheme {
            "grpc" => orch
                .earlier()
                .iter()
                .find_map(|l| l.strip_prefix("gRPC on "))
                .map(str::to_owned)
                .ok_or("`rxon orchestrator` printed no gRPC address")?,
            _ => orch.url.replacen("http", scheme, 1),
        };
        let worker = rxon_worker(examples, &url)?;
        let row = measure(format!("rxon {transport}"), bench, "rxon", &orch, &worker);
        finish(worker, orch, "`rxon orchestrator`")?;
        rows.push(row?);
    }
    for (name, sdk) in [
        ("avtomatika + avtomatika-worker", true),
        ("avtomatika + rxon worker", false),
    ] {
        let mut avt = Command::new(python);
        avt.arg(scripts.join("avt_orchestrator.py"))
            .args([
                "--serve-only",
                "--no-rate-limit",
                "--no-access-log",
                "--secret-key",
                SIGNING_KEY,
                "--worker-token",
                WORKER_TOKEN,
                "--client-token",
                CLIENT_TOKEN,
            ])
            .env("LOG_LEVEL", "WARNING")
            .stderr(log_file(&log)?);
        let avt = Peer::start(avt)?;
        let worker = if sdk {
            Command::new(python)
                .arg(scripts.join("sdk_worker.py"))
                .env("ORCHESTRATOR_URL", &avt.url)
                .env("WORKER_ID", "bench-sdk-worker")
                .env("WORKER_TOKEN", WORKER_TOKEN)
                .env("ORCHESTRATOR_SECRET_KEY", SIGNING_KEY)
                .env("MAX_CONCURRENT_TASKS", SLOTS)
                .env("ECHO_DELAY", "0")
                .env("ECHO_PROGRESS", "0")
                .env("LOG_LEVEL", "WARNING")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start the SDK worker: {e}"))?
        } else {
            rxon_worker(examples, &avt.url)?
        };
        let row = measure(name.to_owned(), bench, "avtomatika", &avt, &worker)
            .map_err(|e| format!("{e} (avtomatika's log: {})", log.display()));
        finish(worker, avt, "avt_orchestrator.py")
            .map_err(|e| format!("{e} (its log: {})", log.display()))?;
        rows.push(row?);
    }
    let Some(python_stack) = rows.iter().find(|r| r.name.contains("avtomatika-worker")) else {
        return Ok(());
    };
    for row in rows.iter().filter(|r| r.name != python_stack.name) {
        let cpu = |r: &Row| r.orchestrator_ms + r.worker_ms;
        println!(
            "bench: jobs {:<32} {:>5.1}x the jobs/s of avtomatika + avtomatika-worker, CPU per job {:.2}x (orchestrator {:.2}x, worker {:.2}x)",
            row.name,
            row.jobs_per_s / python_stack.jobs_per_s.max(f64::EPSILON),
            cpu(row) / cpu(python_stack).max(f64::EPSILON),
            row.orchestrator_ms / python_stack.orchestrator_ms.max(f64::EPSILON),
            row.worker_ms / python_stack.worker_ms.max(f64::EPSILON),
        );
    }
    Ok(())
}

/// `path`, opened for appending (the two avtomatika runs of one bench follow each
/// other in it).
fn log_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// rxon's `worker` example for `url`, pinned to nothing (it asks the orchestrator), with
/// the orchestrator's task-signing key, its output discarded.
fn rxon_worker(examples: &Path, url: &str) -> Result<Child, String> {
    Command::new(examples.join("worker"))
        .args([
            "--url",
            url,
            "--worker-id",
            "bench-rxon-worker",
            "--token",
            WORKER_TOKEN,
            "--task-key",
            SIGNING_KEY,
            "--concurrency",
            SLOTS,
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the worker example: {e}"))
}

/// Runs the driver against `orchestrator` (whose worker is `worker`) and prints its row.
fn measure(
    name: String,
    bench: &Path,
    api: &str,
    orchestrator: &Peer,
    worker: &Child,
) -> Result<Row, String> {
    let line = crate::bench::run_to_end(
        Command::new(bench)
            .args([
                "jobs",
                api,
                &orchestrator.url,
                SECONDS,
                &orchestrator.child.id().to_string(),
                &worker.id().to_string(),
            ])
            .env("RXON_BENCH_CLIENT_TOKEN", CLIENT_TOKEN),
    )?;
    let field =
        |key: &str| crate::bench::json_field(&line, key).map_err(|e| format!("{name}: {e}"));
    let row = Row {
        jobs_per_s: field("jobs_per_s")?,
        orchestrator_ms: field("orchestrator_cpu_ms_per_job")?,
        worker_ms: field("worker_cpu_ms_per_job")?,
        name: name.clone(),
    };
    if field("failed")? > 0.0 {
        return Err(format!("{}: some jobs failed: {}", row.name, line.trim()));
    }
    println!(
        "bench: jobs {:<32} {:>7.0} jobs/s  p50 {:>6.2} ms  p99 {:>6.2} ms  orchestrator {:>6.3} ms CPU/job  worker {:>6.3} ms CPU/job",
        row.name,
        row.jobs_per_s,
        field("p50_ms")?,
        field("p99_ms")?,
        row.orchestrator_ms,
        row.worker_ms,
    );
    Ok(row)
}

/// Stops the worker (SIGTERM), then the orchestrator (SIGINT); an error naming `what`
/// when either does not exit cleanly.
fn finish(worker: Child, orchestrator: Peer, what: &str) -> Result<(), String> {
    let worker_ok = stop(worker)?;
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(orchestrator.child.id().to_string())
        .status();
    let (ok, _) = orchestrator.finish_when_done()?;
    match (worker_ok, ok) {
        (true, true) => Ok(()),
        (false, _) => Err(format!(
            "the worker of {what} did not exit cleanly on SIGTERM"
        )),
        (true, false) => Err(format!("{what} did not exit cleanly on SIGINT")),
    }
}
