//! The Rust `HttpTransport` against the Python reference `HttpListener`.
//!
//! Run by `cargo xtask interop`, which starts `xtask/interop/py_listener.py` and passes
//! its URL: `cargo run -p rxon-http --example interop_worker -- http://127.0.0.1:PORT`.
//! Prints PASS/FAIL per step and exits non-zero on any failure.
#![allow(clippy::print_stdout)]

use rxon_core::{
    ErrorCode, ErrorKind, Heartbeat, IgnoredReason, Map, ProgressUpdatePayload, ResultOutcome,
    TaskError, TaskResult, Transport, TransportConfig, Value, WorkerRegistration,
};
use rxon_http::HttpTransport;
use std::process::ExitCode;
use std::time::Duration;

#[path = "support/steps.rs"]
mod steps;
use steps::Steps;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: interop_worker <base_url>");
        return ExitCode::from(2);
    };
    let mut steps = Steps(0);
    match tokio::time::timeout(Duration::from_secs(120), run(&url, &mut steps)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => steps.check("conversation", false, e),
        Err(_) => steps.check("conversation finished within 120 s", false, ()),
    }
    println!("rust worker: {} failed", steps.0);
    if steps.0 == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(url: &str, steps: &mut Steps) -> rxon_core::Result<()> {
    let mut config = TransportConfig::new(url, "rust-worker", "bootstrap");
    config.options.result_retry_delay = Duration::from_millis(10);
    let t = HttpTransport::from_config(&config)?;
    t.connect().await?;

    let registration = WorkerRegistration {
        worker_id: "rust-worker".into(),
        worker_type: "cpu".into(),
        supported_skills: vec!["echo".into()],
        ..Default::default()
    };
    let reply = t.register(&registration).await;
    steps.check(
        "register after 401 + STS refresh",
        reply
            .as_ref()
            .is_ok_and(|r| r.status == "registered" && r.warning.is_none()),
        &reply,
    );
    steps.check(
        "token replaced by the STS token",
        t.token().starts_with("py-sts-"),
        t.token(),
    );

    let task = t.poll_task(Duration::from_secs(5)).await?;
    let ok = task.as_ref().is_some_and(|task| {
        task.task_id == "t-ok"
            && task.params.get("n").and_then(Value::as_i64) == Some(3)
            && task.tracing_context.contains_key("traceparent")
            && task.params_metadata.is_none()
    });
    steps.check(
        "poll with a task (null and unknown fields tolerated)",
        ok,
        &task,
    );
    if let Some(task) = task {
        let mut data = Map::new();
        data.insert("echo".into(), Value::from("hello"));
        let outcome = t
            .send_result(&TaskResult::success(&task, "rust-worker", data))
            .await?;
        steps.check("success result accepted", outcome.is_accepted(), outcome);
    }

    if let Some(task) = t.poll_task(Duration::from_secs(5)).await? {
        steps.check("poll second task", task.task_id == "t-fail", &task.task_id);
        let error = TaskError::new(ErrorCode::InvalidInput, "bad text");
        let outcome = t
            .send_result(&TaskResult::failure(&task, "rust-worker", error))
            .await?;
        steps.check("failure result accepted", outcome.is_accepted(), outcome);
    } else {
        steps.check("poll second task", false, "no task");
    }

    if let Some(task) = t.poll_task(Duration::from_secs(5)).await? {
        let outcome = t
            .send_result(&TaskResult::cancelled(&task, "rust-worker"))
            .await?;
        steps.check(
            "late result ignored with its reason",
            outcome.ignored_reason() == Some(&IgnoredReason::DeadlineExceeded),
            outcome,
        );
    } else {
        steps.check("poll late task", false, "no task");
    }

    let mut ghost = TaskResult::cancelled(&Default::default(), "rust-worker");
    ghost.task_id = "t-unknown".into();
    let outcome = t.send_result(&ghost).await?;
    steps.check(
        "an unknown ignored reason is kept",
        matches!(&outcome, ResultOutcome::Ignored { reason: IgnoredReason::Other(r), .. } if r == "job_paused"),
        outcome,
    );

    let mut hb = Heartbeat {
        worker_id: "rust-worker".into(),
        status: "idle".into(),
        ..Default::default()
    };
    let reply = t.send_heartbeat(&hb).await?;
    steps.check(
        "heartbeat reply lists tasks to cancel",
        reply.cancel_task_ids == ["t-9"],
        &reply,
    );
    hb.status = "flood".into();
    let err = t.send_heartbeat(&hb).await;
    steps.check(
        "429 is a rate-limited error",
        err.as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::RateLimited),
        &err,
    );

    // The command channel: the Python listener pushes a cancel as soon as we connect,
    // and acknowledges each progress update with another command.
    let cmd = tokio::time::timeout(Duration::from_secs(10), t.next_command()).await;
    steps.check(
        "a command pushed by the Python listener arrives",
        matches!(&cmd, Ok(Ok(Some(c))) if c.task_id.as_deref() == Some("t-9")),
        &cmd,
    );
    let progress = ProgressUpdatePayload::new("t-p", "job-1", 0.5);
    let sent = t.send_progress(&progress).await;
    steps.check("progress sent over the channel", sent.is_ok(), &sent);
    let ack = tokio::time::timeout(Duration::from_secs(10), t.next_command()).await;
    steps.check(
        "the Python listener received the progress",
        matches!(&ack, Ok(Ok(Some(c))) if c.task_id.as_deref() == Some("ack-t-p")),
        &ack,
    );

    let empty = t.poll_task(Duration::from_secs(1)).await?;
    steps.check(
        "poll without a task gives None (204)",
        empty.is_none(),
        &empty,
    );
    t.close().await?;

    let bad = HttpTransport::new(url, "rust-worker", "stolen")?;
    bad.connect().await?;
    let err = bad.register(&registration).await;
    steps.check(
        "bad credential refused with an auth error",
        err.as_ref().is_err_and(|e| e.is_auth()),
        &err,
    );
    Ok(())
}
