//! `rxon orchestrator`: the embedded orchestrator as a server, with its admin API.
#![allow(clippy::print_stdout)] // Its addresses are its output.

/// The long help of `rxon orchestrator`.
pub(crate) const LONG_ABOUT: &str = "\
Run an orchestrator: any RXON worker (not only rxon's), 1.0b3 or 1.0b17, connects to it,
and each request is answered in its worker's generation. With --task-signing-key, tasks
for 1.0b17 workers carry the orchestrator's `sig` (the same key as the reference SDK's
ORCHESTRATOR_SECRET_KEY).

One port serves the worker routes (HTTP `/_worker/...` with its WebSocket command
channel, and the WebSocket transport `ws://host:port` under `/_worker/rxon/`), the
admin API and the metrics:

  rxon orchestrator --listen 127.0.0.1:8080 --token secret --grpc-listen 127.0.0.1:9090
  curl -s -XPOST localhost:8080/admin/tasks -d '{\"type\":\"echo\",\"params\":{\"x\":1}}'
  curl -s localhost:8080/admin/tasks/task-1
  curl -s 'localhost:8080/admin/tasks/task-1?wait=10'  # once it has a result (<= 10 s)
  curl -s -XPOST localhost:8080/admin/tasks/task-1/cancel
  curl -s localhost:8080/admin/workers
  curl -s localhost:8080/metrics                        # Prometheus text

With --admin-token, admin requests need it in X-Client-Token. Errors are JSON:
{\"error\": MESSAGE}. A W3C traceparent (and tracestate) header on POST /admin/tasks
goes on with the task: its worker continues the caller's trace.

As an onion service (no open port, no public address), through a tor daemon's control
port (`ControlPort 9051` or `ControlSocket /run/tor/control`), or with the embedded Tor
client (`--tor arti`, built with `--features tor`; its key, hence its address, is kept
in arti's state directory):

  rxon orchestrator --token secret --tor 127.0.0.1:9051
  # prints: onion service: http://<56 chars>.onion
  rxon worker --url http://<56 chars>.onion --proxy socks5h://127.0.0.1:9050 ...

Several processes serve one fleet on a shared Redis storage (built with `--features
redis`; each with the same tokens and keys), behind a TCP load balancer or with workers
pointed at either:

  rxon orchestrator --token secret --storage redis://127.0.0.1:6379/0 --listen 127.0.0.1:8080
  rxon orchestrator --token secret --storage redis://127.0.0.1:6379/0 --listen 127.0.0.1:8082

Ctrl-C (SIGINT) stops it: parked polls answer at once, WebSocket sessions close, and
connections still open after 5 s are closed.
";

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rxon::http::HttpService;
use rxon::orchestrator::Orchestrator;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// `rxon orchestrator`'s options.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
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

pub(crate) async fn run(args: Args) -> rxon::Result<()> {
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
        .nest(
            "/admin",
            crate::admin::router(orchestrator, args.admin_token),
        )
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
            "--tor arti needs the embedded Tor client: cargo install rxon-cli --features tor",
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
