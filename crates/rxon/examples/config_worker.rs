//! A worker whose transport comes from configuration, not code.
//!
//! ```text
//! cargo run --example config_worker                       # reads examples/worker.toml
//! cargo run --example config_worker -- path/to/worker.toml
//! RXON_URL=mock://env-demo RXON_WORKER_ID=w1 RXON_TOKEN=t \
//!     cargo run --example config_worker -- --env          # reads RXON_* variables
//! ```
//!
//! The worker code below only sees `dyn Transport`; the URL in the configuration picks
//! the transport. With a `mock://` URL there is no orchestrator, so the example seeds
//! the mock with a few tasks first.
#![allow(clippy::print_stdout)]

use rxon::{Map, Scheme, TaskPayload, TaskResult, Transport, TransportConfig, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("config_worker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> rxon::Result<()> {
    let arg = std::env::args().nth(1);
    let config = if arg.as_deref() == Some("--env") {
        TransportConfig::from_env("RXON")?
    } else {
        let path = arg.map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/worker.toml")
        });
        let text = std::fs::read_to_string(&path)
            .map_err(|e| rxon::RxonError::config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| rxon::RxonError::config(format!("{}: {e}", path.display())))?
    };
    println!("transport: {config:?}");

    if config.scheme()?.parse::<Scheme>().ok() == Some(Scheme::Mock) {
        seed_mock(&config.url);
    }

    let transport = rxon::create_transport_from_config(&config)?;
    transport.connect().await?;
    let done = work(transport.as_ref(), config.options.poll_timeout).await?;
    transport.close().await?;
    println!("processed {done} task(s) over {}", transport.name());
    Ok(())
}

/// The worker: polls until an empty poll, answers `upper` tasks. Transport-agnostic.
/// Bounded to 1000 tasks so a flooded queue cannot keep the example running forever.
async fn work(transport: &dyn Transport, poll_timeout: std::time::Duration) -> rxon::Result<usize> {
    let mut done = 0;
    while done < 1000 {
        let Some(task) = transport.poll_task(poll_timeout).await? else {
            break;
        };
        let text = task
            .params
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut data = Map::new();
        data.insert("upper".into(), Value::from(text.to_uppercase()));
        let outcome = transport
            .send_result(&TaskResult::success(&task, transport.worker_id(), data))
            .await?;
        println!("  {} -> {text:?} uppercased, {outcome:?}", task.task_id);
        done += 1;
    }
    Ok(done)
}

fn seed_mock(url: &str) {
    let name = url.trim_start_matches("mock://").trim_matches('/');
    if name.is_empty() {
        return;
    }
    let mock = rxon::testing::MockHandle::named(name);
    for (i, word) in ["reverse", "axon"].iter().enumerate() {
        let mut params = Map::new();
        params.insert("text".into(), Value::from(*word));
        mock.push_task(TaskPayload {
            job_id: "demo".into(),
            task_id: format!("t{i}"),
            task_type: "upper".into(),
            params,
            ..Default::default()
        });
    }
    // Keep the mock alive for the rest of the program.
    std::mem::forget(mock);
}
