//! A worker for any RXON orchestrator, 1.0b3 or 1.0b17 (e.g. avtomatika 1.0b30):
//! copy it to start your own.
//!
//! ```text
//! cargo run --example worker -- --url http://127.0.0.1:8080 --worker-id w1 --token secret
//! # pin the generation, and check the orchestrator's task signatures:
//! cargo run --example worker -- … --protocol 1.0b17 --task-key "$ORCHESTRATOR_SECRET_KEY"
//! RXON_URL=… RXON_WORKER_ID=… RXON_WORKER_TOKEN=… cargo run --example worker
//! # an onion service, through a tor daemon's SOCKS port (names resolved by the proxy):
//! cargo run --example worker -- --url http://<56 chars>.onion … --proxy socks5h://127.0.0.1:9050
//! cargo run --example worker -- --config worker.toml     # a TransportConfig in TOML
//! ```
//!
//! The transport comes from the URL's scheme. It serves task type `echo`:
//!
//! - the result is `{"echo": <params>}` with status `success`;
//! - `params.fail == true`: failure with `INVALID_INPUT_ERROR`;
//! - `params.sleep == S`: works S seconds (at most one hour) sending progress, and stops
//!   with status `cancelled` when the orchestrator cancels it.
//!
//! It heartbeats every few seconds and shuts down gracefully on Ctrl-C or SIGTERM.
#![allow(clippy::print_stdout)]

use clap::Parser;
use rxon::worker::{TaskContext, TaskFailure, Worker};
use rxon::{Map, TaskPayload, TransportConfig, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// An RXON worker serving the task type `echo`.
#[derive(Parser, Debug)]
struct Args {
    /// Orchestrator URL (`http://`, `https://`, …).
    #[arg(long, env = "RXON_URL")]
    url: Option<String>,
    /// This worker's id.
    #[arg(long, env = "RXON_WORKER_ID")]
    worker_id: Option<String>,
    /// The worker credential.
    #[arg(long, env = "RXON_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Protocol generation: `auto` (default: ask the orchestrator), `1.0b3` or `1.0b17`.
    #[arg(long, env = "RXON_PROTOCOL")]
    protocol: Option<String>,
    /// The orchestrator's task-signing key: 1.0b17 tasks whose `sig` does not verify
    /// are refused.
    #[arg(long, env = "RXON_TASK_KEY", hide_env_values = true)]
    task_key: Option<String>,
    /// Dial through this proxy: `socks5h://[user:pass@]host:port` (e.g. a tor daemon's
    /// SOCKS port, 9050) or `arti` (the embedded Tor client, feature `tor`).
    #[arg(long, env = "RXON_PROXY", hide_env_values = true)]
    proxy: Option<String>,
    /// A TOML transport configuration; flags and environment override its values.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 3)]
    heartbeat_secs: u64,
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
            eprintln!("worker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> rxon::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| rxon::RxonError::config(format!("{}: {e}", path.display())))?;
            toml::from_str::<TransportConfig>(&text)
                .map_err(|e| rxon::RxonError::config(format!("{}: {e}", path.display())))?
        }
        None => TransportConfig::new("", "", ""),
    };
    if let Some(url) = args.url {
        config.url = url;
    }
    if let Some(id) = args.worker_id {
        config.worker_id = id;
    }
    if let Some(token) = args.token {
        config.token = token;
    }
    if let Some(p) = args.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
        config.options.proxy = Some(p.parse()?);
    }
    if let Some(p) = &args.protocol {
        config.options.protocol = p.parse()?;
    }
    if let Some(key) = args.task_key {
        config.options.task_key = Some(key);
    }
    if config.url.is_empty() || config.worker_id.is_empty() {
        return Err(rxon::RxonError::config(
            "give --url and --worker-id (or RXON_URL / RXON_WORKER_ID, or --config)",
        ));
    }
    let transport = rxon::create_transport_from_config(&config)?;
    let worker = Worker::builder(transport)
        .max_concurrent_tasks(args.concurrency)
        .heartbeat_interval(Duration::from_secs(args.heartbeat_secs.max(1)))
        .poll_timeout(config.options.poll_timeout)
        .handler("echo", echo)
        .build()?;
    println!(
        "worker {} serving \"echo\" for {}; Ctrl-C to stop",
        config.worker_id, config.url
    );
    worker.run_until_signal().await?;
    let stats = worker.stats();
    println!(
        "stopped: {} succeeded, {} failed, {} cancelled, {} ignored",
        stats.succeeded, stats.failed, stats.cancelled, stats.ignored
    );
    Ok(())
}

async fn echo(task: TaskPayload, ctx: TaskContext) -> Result<Map, TaskFailure> {
    if task.params.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err(TaskFailure::invalid_input("params.fail is true"));
    }
    if let Some(secs) = task.params.get("sleep").and_then(Value::as_f64) {
        if !(0.0..=3600.0).contains(&secs) {
            return Err(TaskFailure::invalid_input(
                "params.sleep must be 0..=3600 seconds",
            ));
        }
        let total = Duration::from_secs_f64(secs);
        let step = Duration::from_millis(500);
        let mut done = Duration::ZERO;
        while done < total {
            let pause = step.min(total - done);
            tokio::select! {
                () = tokio::time::sleep(pause) => done += pause,
                () = ctx.cancelled() => return Err(TaskFailure::transient("cancelled")),
            }
            let fraction = done.as_secs_f64() / total.as_secs_f64();
            ctx.progress(
                fraction,
                Some(&format!("{:.1}s of {secs}s", done.as_secs_f64())),
            )
            .await;
        }
    }
    let mut out = Map::new();
    out.insert("echo".into(), Value::Object(task.params));
    Ok(out)
}
