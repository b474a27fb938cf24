//! The Rust `HttpListener` (over the embedded orchestrator) for the Python reference
//! `HttpTransport`.
//!
//! Run by `cargo xtask interop`: prints `LISTENING <url>`, serves until its standard
//! input closes, then checks what the Python worker left behind and exits non-zero if
//! anything is missing.
#![allow(clippy::print_stdout)]

use rxon_core::{ErrorCode, Listener, TaskPayload, TaskStatus, Value};
use rxon_http::{HttpListener, HttpListenerConfig, ServiceConfig};
use rxon_orchestrator::Orchestrator;
use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn task(id: &str) -> TaskPayload {
    let mut t = TaskPayload {
        job_id: "job-1".into(),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    };
    t.params.insert("text".into(), Value::from("hello"));
    t
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("interop_listener: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> rxon_core::Result<usize> {
    let orchestrator = Orchestrator::builder()
        .token("good")
        .sts_credential("bootstrap")
        .build();
    orchestrator.enqueue(task("t-ok")).await?;
    orchestrator.enqueue(task("t-fail")).await?;
    orchestrator
        .enqueue_with_deadline(task("t-late"), Duration::from_millis(1))
        .await?;
    orchestrator.enqueue(task("t-cmd")).await?;
    // Cancel t-cmd through the command channel once the Python worker opens it and the
    // channel has outlived five of the listener's keepalives: the Python worker answers
    // the listener's pings.
    let keepalive = Duration::from_millis(200);
    let canceller = {
        let orchestrator = orchestrator.clone();
        tokio::spawn(async move {
            orchestrator
                .wait_for_command_channel("py-worker", Duration::from_secs(120))
                .await?;
            let closed = orchestrator
                .wait_for_no_command_channel("py-worker", keepalive * 5)
                .await;
            if closed.is_ok() {
                return Err(rxon_core::RxonError::network(
                    "the listener's keepalive closed the Python worker's command channel",
                ));
            }
            orchestrator.cancel("t-cmd").await
        })
    };

    let mut service = ServiceConfig::default();
    service.poll_wait = Duration::from_secs(1);
    service.keepalive = keepalive;
    let mut config = HttpListenerConfig::default();
    config.service = service;
    let listener = HttpListener::with_config(config);
    listener.start(Arc::new(orchestrator.clone())).await?;
    println!("LISTENING {}", listener.endpoint().unwrap_or_default());

    // Serve until the driver closes our standard input (bounded by its own timeout).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().take(1 << 20).read_to_end(&mut sink);
    })
    .await
    .map_err(|e| rxon_core::RxonError::network(e.to_string()))?;
    listener.stop(Duration::from_secs(5)).await?;

    let mut failed = 0;
    let mut check = |name: &str, ok: bool| {
        println!("{} listener saw {name}", if ok { "PASS" } else { "FAIL" });
        failed += usize::from(!ok);
    };
    let ok = orchestrator.task_result("t-ok").await;
    check(
        "the success result with its data",
        ok.as_ref().is_some_and(|r| {
            r.status == TaskStatus::Success
                && r.data
                    .as_ref()
                    .and_then(|d| d.get("echo"))
                    .and_then(Value::as_str)
                    == Some("hello")
        }),
    );
    let fail = orchestrator.task_result("t-fail").await;
    check(
        "the failure result with its error code",
        fail.as_ref().is_some_and(|r| {
            r.status == TaskStatus::Failure
                && r.error.as_ref().map(|e| &e.code) == Some(&ErrorCode::InvalidInput)
        }),
    );
    check(
        "exactly two applied results",
        orchestrator.applied_results().await == 2,
    );
    check(
        "the cancel pushed over the command channel, after five keepalives",
        canceller.await.is_ok_and(|r| r.is_ok()),
    );
    check(
        "progress over the command channel",
        orchestrator
            .task_progress("t-cmd")
            .await
            .iter()
            .any(|p| p.progress == 0.5 && p.message.as_deref() == Some("half")),
    );
    check(
        "the registered Python worker",
        orchestrator
            .workers()
            .await
            .iter()
            .any(|w| w.worker_id == "py-worker"),
    );
    Ok(failed)
}
