//! Benchmark servers and the load generator behind `cargo xtask bench`.
//!
//! ```text
//! rxon-bench serve <http|ws|grpc|hyper|tonic>  # prints "LISTENING <url>", serves until stdin closes
//! rxon-bench serve-shared <redis-url> <prefix> <addr>  # an HTTP listener process of a Redis-backed orchestrator
//! rxon-bench dispatch-shared <n>            # the same on Redis: same process, then across processes
//! rxon-bench load-shared <processes> <workers> <seconds>  # jobs end to end on Redis, CPU of each side
//! rxon-bench load <url> <workers> <seconds> [server-pid]  # prints one JSON line of figures
//! rxon-bench load-hyper <url> <w> <s> [server-pid]       # the same cycles, bare hyper client
//! rxon-bench dispatch <http|ws|grpc> <n>    # enqueue → parked worker holds the task
//! rxon-bench dispatch-crowd <parked> <n>   # the same in process, beside <parked> polls of another skill
//! rxon-bench jobs <rxon|avtomatika> <url> <seconds> <orch-pid> <worker-pid>  # jobs end to end through a client API
//! rxon-bench blob <MiB>                     # one object up to S3 (moto) and back, peak RSS
//! rxon-bench idle <rxon|rxon-redis|ws|grpc|hyper|python> <n>  # listener memory and CPU with n parked polls
//! ```
//!
//! The servers answer every poll with a task at once and accept every result, so a
//! poll → result cycle measures the transport and the listener, not an orchestrator's
//! queueing. `hyper` is a bare hyper server answering the same two routes with fixed
//! bodies: the ceiling no RXON HTTP listener can beat; `tonic`, a bare tonic server of
//! `rxon.v1.WorkerService` with fixed answers, is the gRPC listener's. The load
//! generator runs `workers`
//! loops of poll → result over the project's own transports (chosen by the URL).
//!
//! The load generator's clock starts once every worker's client is built, and only then
//! do the loops start: the cycles, the client CPU and (given `server-pid`) the server's
//! CPU it reports are all counted from that moment until the last loop's last cycle
//! ends, the window `cycles_per_s` divides by. Each client opens its connection on its
//! first request, inside the window, as a worker would (`Transport::connect` sends
//! nothing); `load` and `load-hyper` alike.
#![allow(clippy::print_stdout)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rxon::{Handler, Listener, Map, TaskPayload, TaskResult, Transport, Value, WorkerRegistration};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

mod blob;
mod ceiling;
mod idle;
mod jobs;
mod shared;

/// The task every poll gets.
fn task() -> TaskPayload {
    let mut params = Map::new();
    params.insert("n".into(), Value::from(42u8));
    params.insert("text".into(), Value::from("hello"));
    TaskPayload {
        job_id: "job-bench".into(),
        task_id: "task-bench".into(),
        task_type: "echo".into(),
        params,
        ..Default::default()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rxon-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", kind] => runtime.block_on(serve(kind)),
        ["dispatch-crowd", parked, samples] => match (parked.parse(), samples.parse()) {
            (Ok(p), Ok(n)) => runtime.block_on(dispatch_crowd(p, n)),
            _ => Err("usage: dispatch-crowd <parked> <samples>".into()),
        },
        ["dispatch", kind, samples] => match samples.parse() {
            Ok(n) => runtime.block_on(dispatch(kind, n)),
            Err(_) => Err("samples must be a number".into()),
        },
        ["cycle", kind, samples, via @ ..] => match (samples.parse(), via) {
            (Ok(n), []) => runtime.block_on(cycle(kind, n, false)),
            (Ok(n), ["tor"]) => runtime.block_on(cycle(kind, n, true)),
            _ => Err("usage: cycle <http|ws|grpc> <samples> [tor]".into()),
        },
        ["idle", kind, n] => match n.parse() {
            Ok(n) => runtime.block_on(idle::run(kind, n)),
            Err(_) => Err("n must be a number".into()),
        },
        ["serve-idle", kind, n] => match n.parse() {
            Ok(n) => runtime.block_on(idle::serve(kind, n)),
            Err(_) => Err("n must be a number".into()),
        },
        ["serve-shared", url, prefix, addr] => runtime.block_on(shared::serve(url, prefix, addr)),
        ["load-shared", processes, workers, seconds] => {
            match (processes.parse(), workers.parse(), seconds.parse()) {
                (Ok(p), Ok(w), Ok(s)) => runtime.block_on(shared::load(p, w, s)),
                _ => Err("usage: load-shared <processes> <workers> <seconds>".into()),
            }
        }
        ["dispatch-shared", samples] => match samples.parse() {
            Ok(n) => runtime.block_on(shared::dispatch(n)),
            Err(_) => Err("samples must be a number".into()),
        },
        ["jobs", api, base, seconds, orchestrator, worker] => {
            match (seconds.parse(), orchestrator.parse(), worker.parse()) {
                (Ok(s), Ok(o), Ok(w)) => runtime.block_on(jobs::run(api, base, s, o, w)),
                _ => Err("usage: jobs <rxon|avtomatika> <base-url> <seconds> <orchestrator-pid> <worker-pid>".into()),
            }
        }
        ["blob", mib] => match mib.parse() {
            Ok(mib) => runtime.block_on(blob::run(mib)),
            Err(_) => Err("MiB must be a number".into()),
        },
        ["load", url, workers, seconds, server @ ..] => match load_args(workers, seconds, server) {
            Ok((w, s, pid)) => runtime.block_on(load(url, w, s, pid)),
            Err(e) => Err(e),
        },
        ["load-hyper", url, workers, seconds, server @ ..] => {
            match load_args(workers, seconds, server) {
                Ok((w, s, pid)) => runtime.block_on(load_hyper(url, w, s, pid)),
                Err(e) => Err(e),
            }
        }
        _ => Err(
            "usage: rxon-bench serve <http|ws|grpc|hyper|tonic> | load <url> <workers> <seconds> [server-pid] | load-hyper <url> <workers> <seconds> [server-pid] | dispatch <http|ws|grpc> <samples> | cycle <http|ws|grpc> <samples> [tor] | serve-shared <redis-url> <prefix> <addr> | dispatch-shared <samples> | load-shared <processes> <workers> <seconds> | blob <MiB> | idle <rxon|rxon-redis|ws|grpc|hyper|python> <n>".into(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rxon-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `<workers> <seconds> [server-pid]` of `load` and `load-hyper`.
fn load_args(
    workers: &str,
    seconds: &str,
    server: &[&str],
) -> Result<(usize, u64, Option<u32>), String> {
    let (Ok(workers), Ok(seconds)) = (workers.parse::<usize>(), seconds.parse::<u64>()) else {
        return Err("workers and seconds must be numbers".into());
    };
    let server = match server {
        [] => None,
        [pid] => Some(
            pid.parse::<u32>()
                .map_err(|_| format!("server-pid must be a process id, got {pid:?}"))?,
        ),
        _ => return Err("too many arguments after <seconds>".into()),
    };
    Ok((workers, seconds, server))
}

/// The worker token and the orchestrator's task key of the bench: with them a 1.0b17
/// cycle is sealed, verified and its task signed and checked, as in production.
const BENCH_TOKEN: &str = "bench";
const BENCH_TASK_KEY: &str = "bench-orchestrator-key";

/// [`FixedTask`](rxon::testing::FixedTask) with keys: envelopes are verified and tasks
/// signed for 1.0b17 workers (1.0b3 workers see neither).
struct Keyed(rxon::testing::FixedTask);

impl Handler for Keyed {
    fn register(
        &self,
        ctx: rxon::RequestContext,
        r: rxon::WorkerRegistration,
    ) -> rxon::BoxFuture<'_, rxon::HandlerResult<rxon::RegisterReply>> {
        self.0.register(ctx, r)
    }
    fn poll(
        &self,
        ctx: rxon::RequestContext,
        wait: Duration,
    ) -> rxon::BoxFuture<'_, rxon::HandlerResult<Option<TaskPayload>>> {
        self.0.poll(ctx, wait)
    }
    fn result(
        &self,
        ctx: rxon::RequestContext,
        r: TaskResult,
    ) -> rxon::BoxFuture<'_, rxon::HandlerResult<rxon::ResultOutcome>> {
        self.0.result(ctx, r)
    }
    fn heartbeat(
        &self,
        ctx: rxon::RequestContext,
        h: Option<rxon::Heartbeat>,
    ) -> rxon::BoxFuture<'_, rxon::HandlerResult<rxon::HeartbeatReply>> {
        self.0.heartbeat(ctx, h)
    }
    fn envelope_key(
        &self,
        _: rxon::RequestContext,
    ) -> rxon::BoxFuture<'_, rxon::HandlerResult<Option<String>>> {
        Box::pin(async { Ok(Some(BENCH_TOKEN.to_owned())) })
    }
    fn task_signing_key(&self) -> Option<String> {
        Some(BENCH_TASK_KEY.to_owned())
    }
}

async fn serve(kind: &str) -> Result<(), String> {
    let handler: Arc<dyn Handler> = Arc::new(Keyed(rxon::testing::FixedTask(task())));
    let listener: Box<dyn Listener> = match kind {
        "http" => Box::new(rxon::http::HttpListener::bind(
            "127.0.0.1:0".parse().map_err(|_| "addr")?,
        )),
        "ws" => Box::new(rxon::ws::WsListener::bind(
            "127.0.0.1:0".parse().map_err(|_| "addr")?,
        )),
        "grpc" => Box::new(rxon::grpc::GrpcListener::bind(
            "127.0.0.1:0".parse().map_err(|_| "addr")?,
        )),
        "hyper" => return ceiling::hyper().await,
        "tonic" => return ceiling::tonic().await,
        other => return Err(format!("unknown server kind {other:?}")),
    };
    listener.start(handler).await.map_err(|e| e.to_string())?;
    println!("LISTENING {}", listener.endpoint().unwrap_or_default());
    wait_for_stdin_eof().await;
    listener
        .stop(Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())
}

async fn wait_for_stdin_eof() {
    let mut sink = Vec::new();
    let _ = tokio::io::stdin()
        .take(1 << 20)
        .read_to_end(&mut sink)
        .await;
}

async fn load(url: &str, workers: usize, seconds: u64, server: Option<u32>) -> Result<(), String> {
    // Every worker's transport is built before the clock starts; no loop runs before it.
    // (`connect` sends nothing: the connection opens on the first request, in the window.)
    // RXON_BENCH_PROTOCOL pins the generation (1.0b3: plain; 1.0b17: sealed, verified,
    // tasks signed and checked); without it the transport asks (`auto`).
    let mut options = rxon::TransportOptions::default();
    if let Ok(p) = std::env::var("RXON_BENCH_PROTOCOL") {
        options.protocol = p.parse().map_err(|e: rxon::RxonError| e.to_string())?;
        options.task_key = Some(BENCH_TASK_KEY.to_owned());
    }
    let mut transports = Vec::with_capacity(workers.max(1));
    for i in 0..workers.max(1) {
        let transport: Arc<dyn Transport> =
            rxon::create_transport(url, &format!("bench-{i}"), BENCH_TOKEN, options.clone())
                .map_err(|e| e.to_string())?;
        transport.connect().await.map_err(|e| e.to_string())?;
        transports.push(transport);
    }
    let window = Window::start(seconds, server);
    let mut runs = tokio::task::JoinSet::new();
    for transport in transports {
        runs.spawn(cycles(window.until, move || {
            let transport = transport.clone();
            async move {
                let Some(task) = transport.poll_task(Duration::from_secs(1)).await? else {
                    return Ok::<bool, rxon::RxonError>(false);
                };
                let result = TaskResult::success(&task, transport.worker_id(), Map::new());
                transport.send_result(&result).await?;
                Ok(true)
            }
        }));
    }
    report(runs, window).await
}

/// The timed window of a load run: opened after every worker is ready and before any
/// loop starts, closed when the last loop has finished its last cycle. Every cycle
/// counted starts and ends inside it, and the CPU figures are read at its two ends.
struct Window {
    started: Instant,
    /// Loops start no new cycle after this.
    until: Instant,
    client_cpu_s: f64,
    /// The server's process id and its CPU seconds when the window opened.
    server: Option<(u32, f64)>,
}

impl Window {
    fn start(seconds: u64, server: Option<u32>) -> Window {
        let server = server.map(|pid| (pid, process_cpu_seconds(pid)));
        let client_cpu_s = cpu_seconds();
        let started = Instant::now();
        Window {
            started,
            until: started + Duration::from_secs(seconds),
            client_cpu_s,
            server,
        }
    }
}

/// One worker's loop: runs `cycle` until `until`; times each cycle that carried a task
/// (`Ok(true)`) and counts the failed ones.
async fn cycles<F, Fut, E>(until: Instant, mut cycle: F) -> (Vec<Duration>, u64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let mut latencies = Vec::with_capacity(16 * 1024);
    let mut errors = 0u64;
    while Instant::now() < until {
        let start = Instant::now();
        match cycle().await {
            Ok(true) => latencies.push(start.elapsed()),
            Ok(false) => {}
            Err(e) => {
                // The first failure of each loop says why (the count is in the figures).
                if errors == 0 {
                    eprintln!("rxon-bench: a cycle failed: {e}");
                }
                errors += 1;
            }
        }
    }
    (latencies, errors)
}

/// Joins the worker loops: every cycle's latency, and the failed cycles.
async fn joined(
    mut runs: tokio::task::JoinSet<(Vec<Duration>, u64)>,
) -> Result<(Vec<Duration>, u64), String> {
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(done) = runs.join_next().await {
        let (l, e) = done.map_err(|e| e.to_string())?;
        all.extend(l);
        errors += e;
    }
    Ok((all, errors))
}

/// Joins the worker loops, closes the window and prints one JSON line of figures.
async fn report(
    runs: tokio::task::JoinSet<(Vec<Duration>, u64)>,
    window: Window,
) -> Result<(), String> {
    let (mut all, errors) = joined(runs).await?;
    let elapsed = window.started.elapsed().as_secs_f64().max(f64::EPSILON);
    let client_cpu = cpu_seconds() - window.client_cpu_s;
    let server_cpu = window
        .server
        .map(|(pid, before)| process_cpu_seconds(pid) - before);
    all.sort();
    let pct = |p: f64| percentile(&all, p).as_secs_f64() * 1e6;
    let mut figures = serde_json::json!({
        "cycles": all.len(),
        "seconds": elapsed,
        "cycles_per_s": all.len() as f64 / elapsed,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "errors": errors,
        "client_cpu_s": client_cpu,
    });
    if let (Some(server_cpu), Some(fields)) = (server_cpu, figures.as_object_mut()) {
        fields.insert(
            "server_cpu_s".to_owned(),
            serde_json::Value::from(server_cpu),
        );
    }
    println!("{figures}");
    Ok(())
}

/// The worker side's ceiling: the same poll → result requests as `load`, made with a
/// bare hyper client per worker (pooled; it decodes each task and encodes its result, as any worker
/// must, and does nothing else), for comparing the client CPU per cycle of
/// `HttpTransport` with it.
async fn load_hyper(
    url: &str,
    workers: usize,
    seconds: u64,
    server: Option<u32>,
) -> Result<(), String> {
    use hyper_util::client::legacy::Client;
    // Every worker's client and URIs are ready before the clock starts (the clients
    // connect on their first request, inside the window, as a worker would).
    let mut clients = Vec::with_capacity(workers.max(1));
    for i in 0..workers.max(1) {
        // One client per worker, as each `HttpTransport` in `load` has its own.
        let client: Client<_, Full<Bytes>> = Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let worker_id = format!("bench-{i}");
        let poll_uri: http::Uri = format!("{url}/_worker/workers/bench-{i}/tasks/next?timeout=1")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let result_uri: http::Uri = format!("{url}/_worker/tasks/result")
            .parse()
            .map_err(|e| format!("{e}"))?;
        clients.push((client, worker_id, poll_uri, result_uri));
    }
    let window = Window::start(seconds, server);
    let mut runs = tokio::task::JoinSet::new();
    for (client, worker_id, poll_uri, result_uri) in clients {
        runs.spawn(cycles(window.until, move || {
            let (client, worker_id) = (client.clone(), worker_id.clone());
            let (poll_uri, result_uri) = (poll_uri.clone(), result_uri.clone());
            async move {
                let poll = http::Request::get(poll_uri)
                    .header("X-Worker-Token", "bench")
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let answer = client.request(poll).await.map_err(|e| e.to_string())?;
                let body = answer
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                // Decode the task and encode its result, as any worker must.
                let task: TaskPayload =
                    serde_json::from_slice(&body.to_bytes()).map_err(|e| e.to_string())?;
                let result = TaskResult::success(&task, &worker_id, Map::new());
                let result = serde_json::to_vec(&result).map_err(|e| e.to_string())?;
                let post = http::Request::post(result_uri)
                    .header("X-Worker-Token", "bench")
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(result)))
                    .map_err(|e| e.to_string())?;
                let answer = client.request(post).await.map_err(|e| e.to_string())?;
                let status = answer.status();
                let _ = answer
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                if status.is_success() {
                    Ok(true)
                } else {
                    Err(format!("result: {status}"))
                }
            }
        }));
    }
    report(runs, window).await
}

/// Serves HTTP/1 on a free 127.0.0.1 port until the process ends, answering every
/// request with `respond`'s status and an empty body; returns the address. The
/// stand-in servers of the measurements (a parking server, a webhook receiver).
pub(crate) async fn serve_http1<F, Fut>(respond: F) -> Result<std::net::SocketAddr, String>
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::StatusCode> + Send + 'static,
{
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = tcp.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let _ = stream.set_nodelay(true);
            let respond = respond.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let status = respond(req);
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = status.await;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A started listener of `kind` on a free loopback port, serving `orchestrator`.
async fn started_listener(
    kind: &str,
    orchestrator: &rxon::orchestrator::Orchestrator,
) -> Result<Box<dyn Listener>, String> {
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(|_| "addr")?;
    let listener: Box<dyn Listener> = match kind {
        "http" => Box::new(rxon::http::HttpListener::bind(addr)),
        "ws" => Box::new(rxon::ws::WsListener::bind(addr)),
        "grpc" => Box::new(rxon::grpc::GrpcListener::bind(addr)),
        other => return Err(format!("unknown transport {other:?}")),
    };
    listener
        .start(Arc::new(orchestrator.clone()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(listener)
}

/// The worker `worker_id` (skill `echo`) connected to `url` and registered.
pub(crate) async fn registered_worker(
    url: &str,
    worker_id: &str,
    options: rxon::TransportOptions,
) -> Result<Arc<dyn Transport>, String> {
    let transport: Arc<dyn Transport> =
        rxon::create_transport(url, worker_id, BENCH_TOKEN, options).map_err(|e| e.to_string())?;
    transport.connect().await.map_err(|e| e.to_string())?;
    let registration = WorkerRegistration {
        worker_id: worker_id.to_owned(),
        worker_type: "bench".into(),
        supported_skills: vec!["echo".into()],
        ..Default::default()
    };
    transport
        .register(&registration)
        .await
        .map_err(|e| format!("registration of {worker_id}: {e}"))?;
    Ok(transport)
}

/// The `p` quantile (0..=1) of sorted `latencies` (zero when empty).
fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies.get(i).copied().unwrap_or_default()
}

/// Dispatch latency: a worker parked in a long-poll against the embedded orchestrator;
/// the time from enqueue to the worker holding the task, `samples` times.
async fn dispatch(kind: &str, samples: usize) -> Result<(), String> {
    let orchestrator = rxon::orchestrator::Orchestrator::builder()
        .token("bench")
        .build();
    let listener = started_listener(kind, &orchestrator).await?;
    let url = listener.endpoint().unwrap_or_default();
    let transport = registered_worker(&url, "bench-0", Default::default()).await?;
    let latencies = hand_offs(&orchestrator, 1, samples, "echo", || {
        let t = transport.clone();
        async move {
            t.poll_task(Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    listener
        .stop(Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    let pct = |p: f64| percentile(&latencies, p).as_secs_f64() * 1e6;
    println!(
        "{}",
        serde_json::json!({"transport": kind, "samples": latencies.len(), "p50_us": pct(0.5), "p99_us": pct(0.99)})
    );
    Ok(())
}

/// `samples` hand-offs: `poll` is started, and once `pollers` polls are parked a task
/// of `task_type` is enqueued; the time until the poll returns it. Sorted.
async fn hand_offs<P, Fut>(
    orchestrator: &rxon::orchestrator::Orchestrator,
    pollers: usize,
    samples: usize,
    task_type: &str,
    poll: P,
) -> Result<Vec<Duration>, String>
where
    P: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<TaskPayload>, String>> + Send + 'static,
{
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let polled = tokio::spawn(poll());
        orchestrator
            .wait_for_pollers(pollers, Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        let mut next = task();
        next.task_type = task_type.into();
        next.task_id = format!("d-{i}");
        let start = Instant::now();
        orchestrator
            .enqueue(next)
            .await
            .map_err(|e| e.to_string())?;
        let got = polled.await.map_err(|e| e.to_string())??;
        latencies.push(start.elapsed());
        if got.is_none() {
            return Err("a parked poll returned without the task".into());
        }
    }
    latencies.sort();
    Ok(latencies)
}

/// Enqueue → the parked poll of the one worker with the task's skill returns it, in
/// process (the orchestrator's `Handler` called directly, no transport), while
/// `parked` polls of workers with another skill wait beside it: what the other parked
/// polls cost a dispatch. Prints p50/p99 in microseconds.
async fn dispatch_crowd(parked: usize, samples: usize) -> Result<(), String> {
    let orchestrator = rxon::orchestrator::Orchestrator::builder()
        .token("bench")
        .max_workers(parked + 1)
        .build();
    let ctx = |worker_id: &str| {
        rxon::RequestContext::new("bench")
            .with_token("bench")
            .with_worker_id(worker_id)
    };
    let register = |worker_id: String, skill: &'static str| {
        let o = orchestrator.clone();
        let ctx = ctx(&worker_id);
        async move {
            let registration = WorkerRegistration {
                worker_id,
                supported_skills: rxon::SkillInfo::list([skill]),
                ..Default::default()
            };
            o.register(ctx, registration)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut crowd = tokio::task::JoinSet::new();
    for i in 0..parked {
        let id = format!("idle-{i}");
        register(id.clone(), "other").await?;
        let (o, ctx) = (orchestrator.clone(), ctx(&id));
        crowd.spawn(async move { o.poll(ctx, Duration::from_secs(600)).await });
    }
    register("target".into(), "a").await?;
    let latencies = hand_offs(&orchestrator, parked + 1, samples, "a", || {
        let (o, ctx) = (orchestrator.clone(), ctx("target"));
        async move {
            o.poll(ctx, Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    crowd.abort_all();
    let pct = |p: f64| percentile(&latencies, p).as_secs_f64() * 1e6;
    println!(
        "{}",
        serde_json::json!({"other_parked_polls": parked, "samples": latencies.len(), "p50_us": pct(0.5), "p99_us": pct(0.99)})
    );
    Ok(())
}

/// One worker's cycle, a task already queued: poll (answered at once) then result
/// (applied), `samples` times; p50/p99 in microseconds. With `tor`, the listener is an
/// onion service of the private network `RXON_TOR_NET` describes (published through
/// its service tor) and the worker dials it through the client tor's SOCKS port.
async fn cycle(kind: &str, samples: usize, tor: bool) -> Result<(), String> {
    let orchestrator = rxon::orchestrator::Orchestrator::builder()
        .token("bench")
        .build();
    let listener = started_listener(kind, &orchestrator).await?;
    let mut url = listener.endpoint().unwrap_or_default();
    let mut options = rxon::TransportOptions::default();
    // Held while measuring: the onion service lives as long as its control connection.
    let mut _control = None;
    if tor {
        let net = rxon::testing::tor::TorNet::from_env()?;
        let local: std::net::SocketAddr = url
            .rsplit_once("://")
            .map(|(_, a)| a.trim_end_matches('/'))
            .and_then(|a| a.parse().ok())
            .ok_or("the listener's address")?;
        let mut control =
            rxon::tor::TorControl::connect(&rxon::tor::ControlAddr::Unix(net.control.clone()))
                .await
                .map_err(|e| e.to_string())?;
        control
            .authenticate(None)
            .await
            .map_err(|e| e.to_string())?;
        let onion = control
            .add_onion(&rxon::tor::OnionSpec::forward(80, local))
            .await
            .map_err(|e| e.to_string())?;
        control
            .wait_published(&onion, Duration::from_secs(120))
            .await
            .map_err(|e| e.to_string())?;
        let scheme = url.split_once("://").map_or("http", |(s, _)| s).to_owned();
        url = format!("{scheme}://{}:80", onion.hostname());
        options.proxy = Some(
            net.proxy_url()
                .parse()
                .map_err(|e: rxon::RxonError| e.to_string())?,
        );
        options.connect_timeout = Duration::from_secs(60);
        _control = Some(control);
    }
    let transport = registered_worker(&url, "bench-0", options).await?;
    let mut latencies = Vec::with_capacity(samples);
    // One cycle first: it opens the connection (over Tor, the rendezvous circuit).
    for i in 0..=samples {
        let mut next = task();
        next.task_id = format!("c-{i}");
        orchestrator
            .enqueue(next)
            .await
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let got = transport
            .poll_task(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("a queued task was not handed out")?;
        let result = rxon::TaskResult::success(&got, "bench-0", rxon::Map::new());
        transport
            .send_result(&result)
            .await
            .map_err(|e| e.to_string())?;
        if i > 0 {
            latencies.push(start.elapsed());
        }
    }
    listener
        .stop(Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    latencies.sort();
    let pct = |p: f64| percentile(&latencies, p).as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({"transport": kind, "via": if tor { "onion" } else { "loopback" }, "samples": latencies.len(), "p50_ms": pct(0.5), "p99_ms": pct(0.99)})
    );
    Ok(())
}

/// A `/proc/self/status` figure in KiB (`VmRSS` now, `VmHWM` the peak so far; 0
/// where unavailable).
fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of this process, from /proc (0 where unavailable).
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

/// User + system CPU time of process `pid`, from /proc (0 where unavailable).
fn process_cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// User + system CPU time from a `/proc/<pid>/stat` file (0 where unavailable).
fn stat_cpu_seconds(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}
