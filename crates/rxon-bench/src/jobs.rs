//! Jobs end to end through a whole stack: a client creates a job on an orchestrator's
//! client API, a worker process runs it, and the client learns its result the way that
//! stack offers. The same driver measures `rxon orchestrator` and avtomatika,
//! with whichever worker the caller started:
//!
//! - rxon: `POST /admin/tasks`, then one `GET /admin/tasks/{id}?wait=30`, which
//!   answers once the task has its result;
//! - avtomatika: `POST /api/v1/jobs/echo` with a `webhook_url` on the driver's own
//!   HTTP server, which avtomatika calls once the job is finished (its client API has
//!   no waiting query; asking for the state over and over would add requests to its
//!   side of the figures).
//!
//! ```text
//! rxon-bench jobs <rxon|avtomatika> <base-url> <seconds> <orchestrator-pid> <worker-pid>
//! ```
//!
//! `RXON_BENCH_CLIENT_TOKEN` is sent as `X-Client-Token` (both APIs read that header).
//! [`WINDOW`] loops (`RXON_BENCH_IN_FLIGHT` to change it) each create a job, wait for
//! its end, then create the next; none starts a job after `seconds`. A one-second
//! warm-up runs first, uncounted. Every job must end in success with its own
//! parameters inside the result. One JSON line of figures is printed; the CPU of the
//! orchestrator and worker processes is read from /proc at the window's two ends.

use crate::{percentile, process_cpu_seconds};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Jobs in flight at once; below the workers' task slots (32), so that a worker never
/// reports itself busy (avtomatika refuses to dispatch to a busy worker).
const WINDOW: usize = 16;
/// The longest a job may take before it counts as failed.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for a worker with the `echo` skill to show up.
const WORKER_WAIT: Duration = Duration::from_secs(60);
/// The longest one request may take, a waiting task query included.
const CALL_TIMEOUT: Duration = Duration::from_secs(JOB_TIMEOUT.as_secs() + 10);
/// Largest answer read from either API.
const MAX_ANSWER: usize = 1 << 20;
/// Largest webhook body accepted.
const MAX_HOOK: usize = 1 << 20;

/// Whose client API the driver speaks.
enum Api {
    /// `rxon orchestrator`: `POST /admin/tasks`, `GET /admin/tasks/{id}?wait=`.
    Rxon,
    /// avtomatika 1.0b30 with the `echo` blueprint of `avt_orchestrator.py`; its
    /// webhooks come to `hook_url`.
    Avtomatika { hook_url: String, hooks: Arc<Hooks> },
}

struct Driver {
    api: Api,
    base: String,
    token: String,
    /// Jobs in flight at once.
    in_flight: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What a job ended as.
enum Outcome {
    Done,
    Failed(String),
}

/// Webhooks received or waited for, by job id.
#[derive(Default)]
struct Hooks(std::sync::Mutex<std::collections::HashMap<String, Hook>>);

enum Hook {
    /// A job's webhook came before anyone waited for it (the job's creation had not
    /// answered yet).
    Arrived(Json),
    Waiting(tokio::sync::oneshot::Sender<Json>),
}

impl Hooks {
    /// Hands a webhook's payload to its waiter, or keeps it for one.
    fn deliver(&self, payload: Json) {
        let Some(id) = payload
            .get("job_id")
            .and_then(Json::as_str)
            .map(str::to_owned)
        else {
            return;
        };
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.remove(&id) {
            Some(Hook::Waiting(tx)) => {
                let _ = tx.send(payload);
            }
            _ => {
                map.insert(id, Hook::Arrived(payload));
            }
        }
    }

    /// The payload of `id`'s webhook, once it arrives.
    fn wait(&self, id: &str) -> tokio::sync::oneshot::Receiver<Json> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.remove(id) {
            Some(Hook::Arrived(payload)) => {
                let _ = tx.send(payload);
            }
            _ => {
                map.insert(id.to_owned(), Hook::Waiting(tx));
            }
        }
        rx
    }

    /// Forgets `id` (its job timed out).
    fn forget(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }
}

/// Serves avtomatika's webhooks on 127.0.0.1 (`POST /hook`, JSON); their URL.
async fn webhook_server(hooks: Arc<Hooks>) -> Result<String, String> {
    let addr = crate::serve_http1(move |req: http::Request<hyper::body::Incoming>| {
        let hooks = hooks.clone();
        async move {
            let body = Limited::new(req.into_body(), MAX_HOOK).collect().await;
            match body.map(|b| serde_json::from_slice::<Json>(&b.to_bytes())) {
                Ok(Ok(payload)) => {
                    hooks.deliver(payload);
                    http::StatusCode::OK
                }
                _ => http::StatusCode::BAD_REQUEST,
            }
        }
    })
    .await?;
    Ok(format!("http://{addr}/hook"))
}

impl Driver {
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Json>,
    ) -> Result<(u16, Json), String> {
        let uri = format!("{}{path}", self.base);
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("X-Client-Token", &self.token);
        let bytes = match body {
            Some(b) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let exchange = async {
            let answer = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = answer.status().as_u16();
            let body = Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{uri}: no answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| format!("{uri}: {e}"))?;
        let json = if body.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                format!(
                    "{uri}: {status}, not JSON ({e}): {}",
                    String::from_utf8_lossy(&body)
                )
            })?
        };
        Ok((status, json))
    }

    /// Creates a job with `params`; its id.
    async fn create(&self, params: &Json) -> Result<String, String> {
        let (path, body, id_field, want) = match &self.api {
            Api::Rxon => (
                "/admin/tasks",
                json!({"type": "echo", "params": params}),
                "task_id",
                201,
            ),
            Api::Avtomatika { hook_url, .. } => (
                "/api/v1/jobs/echo",
                json!({"initial_data": params, "webhook_url": hook_url}),
                "job_id",
                202,
            ),
        };
        let (status, answer) = self.call(http::Method::POST, path, Some(&body)).await?;
        match answer.get(id_field).and_then(Json::as_str) {
            Some(id) if status == want => Ok(id.to_owned()),
            _ => Err(format!("creating a job: {status} {answer}")),
        }
    }

    /// Waits for job `id` to end: whether it succeeded, and what the orchestrator said.
    async fn finished(&self, id: &str) -> Result<(bool, Json), String> {
        match &self.api {
            Api::Rxon => {
                let wait = JOB_TIMEOUT.as_secs();
                let path = format!("/admin/tasks/{id}?wait={wait}");
                let (status, answer) = self.call(http::Method::GET, &path, None).await?;
                if status != 200 {
                    return Err(format!("task {id}: {status} {answer}"));
                }
                let state = answer
                    .get("state")
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                if matches!(state, "queued" | "running") {
                    return Err(format!(
                        "task {id} not finished after {JOB_TIMEOUT:?}: {answer}"
                    ));
                }
                Ok((state == "success", answer))
            }
            Api::Avtomatika { hooks, .. } => {
                let hook = hooks.wait(id);
                match tokio::time::timeout(JOB_TIMEOUT, hook).await {
                    Ok(Ok(payload)) => {
                        Ok((payload.get("status") == Some(&json!("finished")), payload))
                    }
                    _ => {
                        hooks.forget(id);
                        Err(format!("job {id}: no webhook within {JOB_TIMEOUT:?}"))
                    }
                }
            }
        }
    }

    /// Whether a live worker serving `echo` is known to the orchestrator.
    async fn worker_ready(&self) -> bool {
        let path = match self.api {
            Api::Rxon => "/admin/workers",
            Api::Avtomatika { .. } => "/api/v1/workers",
        };
        let Ok((200, Json::Array(workers))) = self.call(http::Method::GET, path, None).await else {
            return false;
        };
        workers.iter().any(|w| {
            let (skills, live) = match self.api {
                Api::Rxon => (w.get("skills"), w.get("status") == Some(&json!("active"))),
                Api::Avtomatika { .. } => (
                    w.get("supported_skills"),
                    w.get("status").is_none_or(|s| s == "idle"),
                ),
            };
            live && skills.and_then(Json::as_array).is_some_and(|s| {
                s.iter()
                    .any(|s| s == "echo" || s.get("name") == Some(&json!("echo")))
            })
        })
    }

    /// Runs one job to its end.
    async fn job(&self, i: u64) -> Outcome {
        let params = params(i);
        let id = match self.create(&params).await {
            Ok(id) => id,
            Err(e) => return Outcome::Failed(e),
        };
        match self.finished(&id).await {
            Ok((true, answer)) if contains(&answer, &params) => Outcome::Done,
            Ok((_, answer)) => {
                Outcome::Failed(format!("job {id} ended without its echo: {answer}"))
            }
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// The parameters of job `i`: a few fields of each JSON kind, unique per job.
fn params(i: u64) -> Json {
    json!({
        "msg": format!("hello-{i}"),
        "i": i,
        "tags": ["a", "b"],
        "nested": {"x": 1.5, "u": "é", "ok": true},
    })
}

/// Whether `params` occurs somewhere in `answer` (each stack nests the echo differently:
/// `result.data.echo`, `result.echo`, `result`).
fn contains(answer: &Json, params: &Json) -> bool {
    answer == params
        || match answer {
            Json::Object(m) => m.values().any(|v| contains(v, params)),
            Json::Array(a) => a.iter().any(|v| contains(v, params)),
            _ => false,
        }
}

/// Figures of one loop: each finished job's latency and state requests, failures.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    failed: u64,
}

async fn run_loops(
    driver: &Arc<Driver>,
    next: &Arc<AtomicU64>,
    until: Instant,
) -> Result<Tally, String> {
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..driver.in_flight {
        let (driver, next) = (driver.clone(), next.clone());
        loops.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < until {
                let started = Instant::now();
                match driver.job(next.fetch_add(1, Ordering::Relaxed)).await {
                    Outcome::Done => tally.latencies.push(started.elapsed()),
                    Outcome::Failed(e) => {
                        if tally.failed == 0 {
                            eprintln!("rxon-bench jobs: a job failed: {e}");
                        }
                        tally.failed += 1;
                    }
                }
            }
            tally
        });
    }
    let mut all = Tally::default();
    while let Some(done) = loops.join_next().await {
        let t = done.map_err(|e| e.to_string())?;
        all.latencies.extend(t.latencies);
        all.failed += t.failed;
    }
    Ok(all)
}

/// `rxon-bench jobs`: see the module text.
pub(crate) async fn run(
    api: &str,
    base: &str,
    seconds: u64,
    orchestrator: u32,
    worker: u32,
) -> Result<(), String> {
    let api = match api {
        "rxon" => Api::Rxon,
        "avtomatika" => {
            let hooks = Arc::new(Hooks::default());
            Api::Avtomatika {
                hook_url: webhook_server(hooks.clone()).await?,
                hooks,
            }
        }
        other => return Err(format!("unknown API {other:?} (rxon or avtomatika)")),
    };
    let driver = Arc::new(Driver {
        api,
        base: base.trim_end_matches('/').to_owned(),
        token: std::env::var("RXON_BENCH_CLIENT_TOKEN").unwrap_or_default(),
        in_flight: match std::env::var("RXON_BENCH_IN_FLIGHT") {
            Ok(n) => n
                .parse()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or("RXON_BENCH_IN_FLIGHT must be 1 to 1024")?,
            Err(_) => WINDOW,
        },
        client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new()),
    });
    let ready_by = Instant::now() + WORKER_WAIT;
    while !driver.worker_ready().await {
        if Instant::now() >= ready_by {
            return Err(format!(
                "no live worker serving echo at {base} after {WORKER_WAIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = Arc::new(AtomicU64::new(0));
    let warm = run_loops(&driver, &next, Instant::now() + Duration::from_secs(1)).await?;
    if warm.failed > 0 {
        return Err(format!("{} jobs failed in the warm-up", warm.failed));
    }
    let cpu = || {
        (
            process_cpu_seconds(orchestrator),
            process_cpu_seconds(worker),
            crate::cpu_seconds(),
        )
    };
    let before = cpu();
    let started = Instant::now();
    let mut tally = run_loops(&driver, &next, started + Duration::from_secs(seconds)).await?;
    let elapsed = started.elapsed().as_secs_f64().max(f64::EPSILON);
    let after = cpu();
    let jobs = tally.latencies.len();
    let per_job = |s: f64| 1000.0 * s / jobs.max(1) as f64;
    tally.latencies.sort();
    let ms = |p: f64| percentile(&tally.latencies, p).as_secs_f64() * 1e3;
    println!(
        "{}",
        json!({
            "jobs": jobs,
            "failed": tally.failed,
            "seconds": elapsed,
            "jobs_per_s": jobs as f64 / elapsed,
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "orchestrator_cpu_ms_per_job": per_job(after.0 - before.0),
            "worker_cpu_ms_per_job": per_job(after.1 - before.1),
            "client_cpu_ms_per_job": per_job(after.2 - before.2),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_counts_only_with_its_own_params_inside() {
        let p = params(7);
        assert!(contains(&json!({"data": {"echo": p.clone()}}), &p));
        assert!(contains(&json!({"result": p.clone()}), &p));
        assert!(contains(&json!([1, {"echo": p.clone()}]), &p));
        assert!(!contains(&json!({"data": {"echo": params(8)}}), &p));
        assert!(!contains(&json!({"echo": {"i": 7}}), &p));
    }
}
