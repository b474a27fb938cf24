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

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rxon::http::HttpService;
use rxon::orchestrator::{Orchestrator, TaskState, WorkerStatus};
use rxon::{Map, TaskPayload};
use serde_json::{Value as Json, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

struct App {
    orchestrator: Orchestrator,
    rxon: HttpService,
    admin_token: Option<String>,
    next_id: AtomicU64,
}

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
    let _reaper = orchestrator.spawn_reaper(std::time::Duration::from_secs(5));
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
    let ws_mount: Arc<dyn rxon::http::Mount> = Arc::new(rxon::ws::WsMount::new(
        handler.clone(),
        rxon::ws::WsConfig::default(),
    ));
    let app = Arc::new(App {
        rxon: HttpService::new(handler).with_mounts(vec![ws_mount], true),
        orchestrator,
        admin_token: args.admin_token,
        next_id: AtomicU64::new(1),
    });
    let tcp = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| rxon::RxonError::network(format!("cannot bind {}: {e}", args.listen)))?;
    let addr = tcp
        .local_addr()
        .map_err(|e| rxon::RxonError::network(e.to_string()))?;
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
    loop {
        let (stream, _) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        // Small frames (WebSocket sessions, command-channel pings) go out at once,
        // not held back by Nagle's algorithm until the peer acknowledges the last one.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(app.route(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
    if let Some(l) = ws_listener {
        rxon::Listener::stop(&l, std::time::Duration::from_secs(5)).await?;
    }
    if let Some(l) = grpc_listener {
        rxon::Listener::stop(&l, std::time::Duration::from_secs(5)).await?;
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

impl App {
    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(rest) = req.uri().path().strip_prefix("/admin/") else {
            return self.rxon.handle(req).await;
        };
        if let Some(expected) = &self.admin_token {
            let given = req
                .headers()
                .get(rxon::constants::AUTH_HEADER_CLIENT)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            // Constant time: the answer's timing does not tell how close a guess was.
            if !rxon::validate::constant_time_eq(given, expected.as_bytes()) {
                return reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "admin token required"}),
                );
            }
        }
        let segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
        let method = req.method().clone();
        match (
            method,
            segments
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
        ) {
            (Method::POST, ["tasks"]) => self.create_task(req).await,
            (Method::GET, ["tasks", id]) => match wait_param(req.uri().query()) {
                Ok(Some(wait)) => {
                    // Timing out, or a task that will get no result, still answers
                    // with the task's state; only an unknown task is a 404 (below).
                    let _ = self.orchestrator.wait_result(id, wait).await;
                    self.task(id).await
                }
                Ok(None) => self.task(id).await,
                Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e})),
            },
            (Method::POST, ["tasks", id, "cancel"]) => match self.orchestrator.cancel(id).await {
                Ok(outcome) => reply(
                    StatusCode::OK,
                    json!({"task_id": id, "outcome": format!("{outcome:?}")}),
                ),
                Err(e) => reply(StatusCode::NOT_FOUND, json!({"error": e.message()})),
            },
            (Method::GET, ["workers"]) => {
                let workers: Vec<Json> = self
                    .orchestrator
                    .workers().await
                    .into_iter()
                    .map(|w| {
                        json!({
                            "worker_id": w.worker_id,
                            "skills": w.skills,
                            "status": if w.status == WorkerStatus::Active { "active" } else { "gone" },
                            "current_tasks": w.current_tasks,
                            "command_channel": w.command_channel,
                        })
                    })
                    .collect();
                reply(StatusCode::OK, Json::Array(workers))
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"error": "no such admin route"}),
            ),
        }
    }

    async fn create_task(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"error": e.to_string()}),
                );
            }
        };
        #[derive(serde::Deserialize)]
        struct NewTask {
            #[serde(rename = "type")]
            task_type: String,
            #[serde(default)]
            params: Map,
            #[serde(default)]
            job_id: Option<String>,
        }
        let new: NewTask = match serde_json::from_slice(&body) {
            Ok(t) => t,
            Err(e) => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": format!("invalid task: {e}")}),
                );
            }
        };
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let task_id = format!("task-{n}");
        let task = TaskPayload {
            job_id: new.job_id.unwrap_or_else(|| format!("job-{n}")),
            task_id: task_id.clone(),
            task_type: new.task_type,
            params: new.params,
            ..Default::default()
        };
        match self.orchestrator.enqueue(task).await {
            Ok(()) => reply(StatusCode::CREATED, json!({"task_id": task_id})),
            Err(e) => reply(StatusCode::BAD_REQUEST, json!({"error": e.message()})),
        }
    }

    async fn task(&self, id: &str) -> Response<Full<Bytes>> {
        let Some(state) = self.orchestrator.task_state(id).await else {
            return reply(StatusCode::NOT_FOUND, json!({"error": "no such task"}));
        };
        let (state, worker) = match state {
            TaskState::Queued => ("queued".to_owned(), None),
            TaskState::Running { worker_id } => ("running".to_owned(), Some(worker_id)),
            TaskState::Finished(status) => (status.to_string(), None),
            TaskState::Cancelled => ("cancelled".to_owned(), None),
            other => (format!("{other:?}").to_lowercase(), None),
        };
        let result = self
            .orchestrator
            .task_result(id)
            .await
            .and_then(|r| serde_json::to_value(r).ok());
        let progress = self
            .orchestrator
            .task_progress(id)
            .await
            .last()
            .map(|p| p.progress);
        reply(
            StatusCode::OK,
            json!({"task_id": id, "state": state, "worker_id": worker, "progress": progress, "result": result}),
        )
    }
}

/// The longest `?wait=` a task query may ask for.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `wait=SECONDS` from a query: how long `GET /admin/tasks/{id}` waits for the task's
/// result before answering (at most [`MAX_WAIT`]).
fn wait_param(query: Option<&str>) -> Result<Option<std::time::Duration>, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("wait="))
    else {
        return Ok(None);
    };
    match value.parse::<f64>() {
        Ok(secs) if (0.0..=MAX_WAIT.as_secs_f64()).contains(&secs) => {
            Ok(Some(std::time::Duration::from_secs_f64(secs)))
        }
        _ => Err(format!(
            "wait must be 0 to {} seconds, not {value:?}",
            MAX_WAIT.as_secs()
        )),
    }
}

fn reply(status: StatusCode, body: Json) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
