//! The embedded orchestrator as a server, with a small JSON admin API: any RXON
//! worker (not only ours), 1.0b3 or 1.0b17, can connect to it; each request is answered
//! in its worker's generation. With `--task-signing-key`, tasks for 1.0b17 workers
//! carry the orchestrator's `sig` (set the same key as the reference SDK's
//! `ORCHESTRATOR_SECRET_KEY`).
//!
//! ```text
//! cargo run --example orchestrator -- --listen 127.0.0.1:8080 --token secret \
//!     --grpc-listen 127.0.0.1:9090 --ws-listen 127.0.0.1:8081
//! curl -s -XPOST localhost:8080/admin/tasks -d '{"type":"echo","params":{"x":1}}'
//! curl -s localhost:8080/admin/tasks/task-1
//! curl -s 'localhost:8080/admin/tasks/task-1?wait=10'   # answers once it has a result (≤ 10 s)
//! curl -s -XPOST localhost:8080/admin/tasks/task-1/cancel
//! curl -s localhost:8080/admin/workers
//! curl -s localhost:8080/metrics            # Prometheus text: tasks, polls, results, auth failures
//! ```
//!
//! As an onion service (no open port, no public address), with a tor daemon whose
//! control port is enabled (`ControlPort 9051` or `ControlSocket /run/tor/control`):
//!
//! ```text
//! cargo run --example orchestrator -- --token secret --tor 127.0.0.1:9051
//! # prints: onion service: http://<56 chars>.onion (worker routes, WebSocket on /_worker/rxon/)
//! cargo run --example worker -- --url http://<56 chars>.onion --proxy socks5h://127.0.0.1:9050 …
//! # or with the embedded Tor client, no daemon at all (the key, hence the address,
//! # is kept in arti's state directory):
//! cargo run --example orchestrator --features tor -- --token secret --tor arti
//! ```
//!
//! Several processes serve one fleet on a shared Redis storage (each with the same
//! tokens and keys), behind a TCP load balancer or with workers pointed at either:
//!
//! ```text
//! cargo run --example orchestrator --features redis -- --token secret \
//!     --storage redis://127.0.0.1:6379/0 --listen 127.0.0.1:8080
//! cargo run --example orchestrator --features redis -- --token secret \
//!     --storage redis://127.0.0.1:6379/0 --listen 127.0.0.1:8082
//! ```
//!
//! Workers use the RXON routes on the same port: HTTP (`/_worker/...`, with the
//! WebSocket command channel) and the WebSocket transport (`ws://host:port`, under
//! `/_worker/rxon/`), both served by the one orchestrator. With `--admin-token`, admin requests need it in `X-Client-Token`.
#![allow(clippy::print_stdout)]

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use clap::Parser;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rxon::http::HttpService;
use rxon::orchestrator::{Orchestrator, TaskState, WorkerStatus};
use rxon::{Map, TaskPayload};
use serde_json::{Value as Json, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An RXON orchestrator with an admin API.
#[derive(Parser, Debug)]
struct Args {
    /// Address of the HTTP listener (worker routes and admin API).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Accepted worker token (repeat for several). With neither `--token` nor
    /// `--sts-credential` the orchestrator runs open: any token is accepted.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Credential accepted only for fetching short-lived tokens (STS).
    #[arg(long)]
    sts_credential: Vec<String>,
    /// The orchestrator's secret: signs the tasks handed to 1.0b17 workers.
    #[arg(long, env = "RXON_TASK_SIGNING_KEY", hide_env_values = true)]
    task_signing_key: Option<String>,
    /// Required in `X-Client-Token` for the admin API, when set.
    #[arg(long)]
    admin_token: Option<String>,
    /// Also serve the WebSocket transport (`ws://`) on its own address; it is always
    /// served on the HTTP port too, under `/_worker/rxon/`.
    #[arg(long)]
    ws_listen: Option<SocketAddr>,
    /// Also serve gRPC (`rxon.v1.WorkerService`) on this address.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Publish the listeners as an onion service through this tor control port
    /// (`IP:PORT` or a unix socket path), or `arti` for the embedded Tor client (built
    /// with `--features tor`); prints the onion address once published. The service
    /// lasts as long as this process.
    #[arg(long)]
    tor: Option<String>,
    /// Password of the tor control port (`HashedControlPassword`); cookie and no
    /// authentication need none.
    #[arg(long, env = "RXON_TOR_CONTROL_PASSWORD", hide_env_values = true)]
    tor_password: Option<String>,
    /// Where the state lives: `memory`, or `redis://[:password@]host:port/db` (built
    /// with `--features redis`), which several orchestrator processes can share.
    #[arg(
        long,
        env = "RXON_STORAGE",
        default_value = "memory",
        hide_env_values = true
    )]
    storage: rxon::orchestrator::Storage,
}

/// How long a stop waits for open connections (parked polls answer at once, WebSocket
/// sessions close with 1001) before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestrator: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> rxon::Result<()> {
    let mut builder = Orchestrator::builder().storage(args.storage.clone());
    for t in &args.tokens {
        builder = builder.token(t.clone());
    }
    for c in &args.sts_credential {
        builder = builder.sts_credential(c.clone());
    }
    if let Some(key) = &args.task_signing_key {
        builder = builder.task_signing_key(key.clone());
    }
    let orchestrator = builder.build();
    if args.admin_token.as_deref() == Some("") {
        return Err(rxon::RxonError::config(
            "--admin-token must not be empty (an empty header would match it)",
        ));
    }
    if args.admin_token.is_none() {
        eprintln!(
            "orchestrator: WARNING: no --admin-token: the admin API (/admin/...) is open to \
             anyone who can reach {}",
            args.listen
        );
    }
    if orchestrator.is_open() {
        tracing::warn!(
            "OPEN AUTH: no --token and no --sts-credential given, so ANY worker token is \
             accepted and any client can act as any worker; use this only on a trusted network"
        );
        eprintln!(
            "orchestrator: WARNING: running with open auth (no --token, no --sts-credential): \
             any worker token is accepted"
        );
    }
    let _reaper = orchestrator.spawn_reaper(Duration::from_secs(5));
    let handler: Arc<dyn rxon::Handler> = Arc::new(orchestrator.clone());
    let ws_listener = match args.ws_listen {
        Some(addr) => {
            let listener = rxon::ws::WsListener::bind(addr);
            rxon::Listener::start(&listener, handler.clone()).await?;
            println!(
                "WebSocket transport on {}",
                rxon::Listener::endpoint(&listener).unwrap_or_default()
            );
            Some(listener)
        }
        None => None,
    };
    let grpc_listener = match args.grpc_listen {
        Some(addr) => {
            let listener = rxon::grpc::GrpcListener::bind(addr);
            rxon::Listener::start(&listener, handler.clone()).await?;
            println!(
                "gRPC on {}",
                rxon::Listener::endpoint(&listener).unwrap_or_default()
            );
            Some(listener)
        }
        None => None,
    };
    // The worker routes (HTTP, its command channel, and the WebSocket transport under
    // `/_worker/rxon/`) are one tower service: the router's fallback, beside the admin
    // API. On stop, parked polls answer at once and sessions close.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let ws_mount: Arc<dyn rxon::http::Mount> = Arc::new(rxon::ws::WsMount::new(
        handler.clone(),
        rxon::ws::WsConfig::default(),
    ));
    let worker_api = HttpService::new(handler)
        .with_mounts(vec![ws_mount], true)
        .with_shutdown(stopping.clone());
    let metrics = metrics_recorder()?;
    let app = Router::new()
        .nest("/admin", admin_api(orchestrator, args.admin_token))
        // The Prometheus text format. Counts only (no task data, no credentials), so it
        // is served without the admin token, as scrapers expect.
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .fallback_service(worker_api);
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| rxon::RxonError::network(format!("cannot bind {}: {e}", args.listen)))?;
    let addr = tcp
        .local_addr()
        .map_err(|e| rxon::RxonError::network(e.to_string()))?;
    // Small frames (WebSocket sessions, command-channel pings) go out at once, not
    // held back by Nagle's algorithm until the peer acknowledges the last one.
    let tcp = tcp.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    println!("orchestrator listening on http://{addr} (Ctrl-C to stop)");
    // Held for the life of the process: the onion service ends with its connection.
    let _onion = match &args.tor {
        Some(control) => Some(
            publish_onion(
                control,
                args.tor_password.as_deref(),
                addr,
                ws_listener.as_ref().and(args.ws_listen),
                grpc_listener.as_ref().and(args.grpc_listen),
            )
            .await?,
        ),
        None => None,
    };
    let mut signal = stopping;
    let server = tokio::spawn(
        axum::serve(tcp, app)
            .with_graceful_shutdown(async move {
                let _ = signal.wait_for(|s| *s).await;
            })
            .into_future(),
    );
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop.send(true);
    if tokio::time::timeout(STOP_GRACE, server).await.is_err() {
        eprintln!("orchestrator: connections still open after {STOP_GRACE:?}; closing them");
    }
    if let Some(l) = ws_listener {
        rxon::Listener::stop(&l, STOP_GRACE).await?;
    }
    if let Some(l) = grpc_listener {
        rxon::Listener::stop(&l, STOP_GRACE).await?;
    }
    println!("orchestrator stopped");
    Ok(())
}

/// What keeps the onion service up: the control connection, or arti's service.
enum Onion {
    Daemon(#[allow(dead_code)] rxon::tor::TorControl),
    #[cfg(feature = "tor")]
    Arti(#[allow(dead_code)] rxon::tor::arti::ArtiOnion),
}

/// Publishes the listeners as one onion service: HTTP on port 80, the WebSocket and
/// gRPC listeners on their own port numbers.
async fn publish_onion(
    control: &str,
    password: Option<&str>,
    http: SocketAddr,
    ws: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
) -> rxon::Result<Onion> {
    use rxon::tor::{OnionSpec, TorControl};
    let mut ports = vec![(80, http)];
    ports.extend(ws.into_iter().chain(grpc).map(|a| (a.port(), a)));
    let publish = std::time::Duration::from_secs(180);
    let (host, keep) = if control == "arti" {
        #[cfg(feature = "tor")]
        {
            println!("publishing onion service with the embedded Tor client …");
            let onion =
                rxon::tor::arti::ArtiOnion::launch("rxon-orchestrator", &ports, publish).await?;
            (onion.hostname().to_owned(), Onion::Arti(onion))
        }
        #[cfg(not(feature = "tor"))]
        return Err(rxon::RxonError::config(
            "--tor arti needs the embedded Tor client: cargo run --example orchestrator --features tor",
        ));
    } else {
        let mut tor = TorControl::connect(&control.parse()?).await?;
        tor.authenticate(password).await?;
        let mut spec = OnionSpec::forward(80, http);
        spec.ports = ports;
        let onion = tor.add_onion(&spec).await?;
        println!("publishing onion service {} …", onion.hostname());
        tor.wait_published(&onion, publish).await?;
        (onion.hostname(), Onion::Daemon(tor))
    };
    println!("onion service: http://{host} (worker routes, WebSocket on /_worker/rxon/)");
    if let Some(a) = ws {
        println!("onion service: ws://{host}:{}", a.port());
    }
    if let Some(a) = grpc {
        println!("onion service: grpc://{host}:{}", a.port());
    }
    println!(
        "workers: --url http://{host} --proxy socks5h://127.0.0.1:9050 (a tor SOCKS port) or --proxy arti"
    );
    Ok(keep)
}

/// Records the orchestrator's and the listeners' metrics (the `metrics` facade) for
/// Prometheus; histograms are compacted every few seconds.
fn metrics_recorder() -> rxon::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| {
        rxon::RxonError::config(format!("cannot install the metrics recorder: {e}"))
    })?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

// The admin API: an axum router with typed extractors and JSON errors throughout.

/// What the admin handlers share.
#[derive(Clone)]
struct Admin {
    orchestrator: Orchestrator,
    next_id: Arc<AtomicU64>,
}

/// The admin routes (nested under `/admin`). With `token`, every request, a wrong
/// route's included, needs it in `X-Client-Token`.
fn admin_api(orchestrator: Orchestrator, token: Option<String>) -> Router {
    let admin = Admin {
        orchestrator,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/tasks", post(create_task))
        .route("/tasks/{id}", get(task))
        .route("/tasks/{id}/cancel", post(cancel))
        .route("/workers", get(workers))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such admin route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .with_state(admin)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            token.map(Arc::<str>::from),
            require_admin_token,
        ))
}

/// The largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// The longest `?wait=` a task query may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Refuses a request without the exact admin token, when one is set.
async fn require_admin_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = token {
        let given = request
            .headers()
            .get(rxon::constants::AUTH_HEADER_CLIENT)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Constant time: the answer's timing does not tell how close a guess was.
        if !rxon::validate::constant_time_eq(given, expected.as_bytes()) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "admin token required").into_response();
        }
    }
    next.run(request).await
}

/// An admin error: its status and `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": self.message}))).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

/// A JSON request body, whatever its `Content-Type` says (`curl -d` sends a form's);
/// a body too large is a 413, one that is not the expected JSON a 400, both as JSON.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }
}

/// `POST /admin/tasks` with `{"type": …, "params": {…}, "job_id": …}`.
#[derive(serde::Deserialize)]
struct NewTask {
    #[serde(rename = "type")]
    task_type: String,
    #[serde(default)]
    params: Map,
    #[serde(default)]
    job_id: Option<String>,
}

async fn create_task(
    State(admin): State<Admin>,
    JsonBody(new): JsonBody<NewTask>,
) -> Result<(StatusCode, axum::Json<Json>), ApiError> {
    let n = admin.next_id.fetch_add(1, Ordering::Relaxed);
    let task_id = format!("task-{n}");
    let task = TaskPayload {
        job_id: new.job_id.unwrap_or_else(|| format!("job-{n}")),
        task_id: task_id.clone(),
        task_type: new.task_type,
        params: new.params,
        ..Default::default()
    };
    admin
        .orchestrator
        .enqueue(task)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.message()))?;
    Ok((StatusCode::CREATED, axum::Json(json!({"task_id": task_id}))))
}

/// `GET /admin/tasks/{id}[?wait=SECONDS]`.
#[derive(serde::Deserialize)]
struct TaskQuery {
    /// Answer once the task has its result, or after this many seconds (at most
    /// [`MAX_WAIT`]) with its state then.
    wait: Option<String>,
}

async fn task(
    State(admin): State<Admin>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let Path(id) = id?;
    let Query(query) = query?;
    if let Some(wait) = query.wait.as_deref().map(wait_seconds).transpose()? {
        // Timing out, or a task that will get no result, still answers with the
        // task's state; only an unknown task is a 404 (below).
        let _ = admin.orchestrator.wait_result(&id, wait).await;
    }
    let orchestrator = &admin.orchestrator;
    let Some(state) = orchestrator.task_state(&id).await else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such task"));
    };
    let (state, worker) = match state {
        TaskState::Queued => ("queued".to_owned(), None),
        TaskState::Running { worker_id } => ("running".to_owned(), Some(worker_id)),
        TaskState::Finished(status) => (status.to_string(), None),
        TaskState::Cancelled => ("cancelled".to_owned(), None),
        other => (format!("{other:?}").to_lowercase(), None),
    };
    let result = orchestrator
        .task_result(&id)
        .await
        .and_then(|r| serde_json::to_value(r).ok());
    let progress = orchestrator
        .task_progress(&id)
        .await
        .last()
        .map(|p| p.progress);
    Ok(axum::Json(json!({
        "task_id": id, "state": state, "worker_id": worker, "progress": progress, "result": result,
    })))
}

/// `wait=SECONDS`: 0 to [`MAX_WAIT`], fractions allowed.
fn wait_seconds(value: &str) -> Result<Duration, ApiError> {
    match value.parse::<f64>() {
        Ok(secs) if (0.0..=MAX_WAIT.as_secs_f64()).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "wait must be 0 to {} seconds, not {value:?}",
                MAX_WAIT.as_secs()
            ),
        )),
    }
}

/// `POST /admin/tasks/{id}/cancel`.
async fn cancel(
    State(admin): State<Admin>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let Path(id) = id?;
    let outcome = admin
        .orchestrator
        .cancel(&id)
        .await
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.message()))?;
    Ok(axum::Json(
        json!({"task_id": id, "outcome": format!("{outcome:?}")}),
    ))
}

/// `GET /admin/workers`.
async fn workers(State(admin): State<Admin>) -> axum::Json<Json> {
    let workers = admin.orchestrator.workers().await.into_iter().map(|w| {
        json!({
            "worker_id": w.worker_id,
            "skills": w.skills,
            "status": if w.status == WorkerStatus::Active { "active" } else { "gone" },
            "current_tasks": w.current_tasks,
            "command_channel": w.command_channel,
        })
    });
    axum::Json(Json::Array(workers.collect()))
}
