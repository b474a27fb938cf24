//! The Rust `HttpTransport` (protocol `auto`) against the reference `HttpListener` of
//! rxon 1.0b17, which checks every message with the reference's own signer and strict
//! decoders (`xtask/interop/py17_listener.py`).
//!
//! Run by `cargo xtask interop`: `interop_worker_1b17 <base_url> <token> <orchestrator secret>`.
//! Prints PASS/FAIL per step and exits non-zero on any failure.
#![allow(clippy::print_stdout)]

use rxon_core::{
    Heartbeat, ProgressUpdatePayload, Protocol, Resources, SkillInfo, TaskResult, Transport,
    TransportConfig, WorkerRegistration, map,
};
use rxon_http::HttpTransport;
use std::process::ExitCode;
use std::time::Duration;

#[path = "support/steps.rs"]
mod steps;
use steps::Steps;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, secret] = args.as_slice() else {
        eprintln!("usage: interop_worker_1b17 <base_url> <token> <orchestrator secret>");
        return ExitCode::from(2);
    };
    let mut steps = Steps(0);
    match tokio::time::timeout(Duration::from_secs(60), run(url, token, secret, &mut steps)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => steps.check("conversation", false, e),
        Err(_) => steps.check("conversation finished within 60 s", false, ()),
    }
    println!("rust 1.0b17 worker: {} failed", steps.0);
    if steps.0 == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(url: &str, token: &str, secret: &str, steps: &mut Steps) -> rxon_core::Result<()> {
    let mut config = TransportConfig::new(url, "rust17", token);
    config.options.task_key = Some(secret.to_owned());
    let t = HttpTransport::from_config(&config)?;
    t.connect().await?;
    let protocol = t.protocol().await?;
    steps.check("auto chose 1.0b17", protocol == Protocol::V1b17, protocol);

    let mut echo = SkillInfo::new("echo");
    echo.input_schema = Some(map! {"type": "object"});
    let registration = WorkerRegistration {
        worker_id: "rust17".into(),
        worker_type: "cpu".into(),
        supported_skills: vec![echo],
        resources: Resources {
            max_concurrent_tasks: 2,
            cpu_cores: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let reply = t.register(&registration).await?;
    steps.check(
        "signed registration accepted",
        reply.status == "registered",
        &reply,
    );

    let heartbeat = Heartbeat {
        worker_id: "rust17".into(),
        status: "idle".into(),
        load: 0.25,
        supported_skills: Some(SkillInfo::list(["echo"])),
        ..Default::default()
    };
    let reply = t.send_heartbeat(&heartbeat).await?;
    steps.check(
        "signed heartbeat answered with cancel_task_ids",
        reply.cancel_task_ids == ["t-gone"],
        &reply,
    );

    let task = t.poll_task(Duration::from_secs(5)).await?;
    let Some(task) = task else {
        steps.check("a signed task", false, "none");
        return Ok(());
    };
    steps.check(
        "the signed task verified and decoded (task_id, step, priority)",
        task.task_id == "t-signed" && task.job_id == "j-1" && task.step == 1,
        &task,
    );
    let mut progress = ProgressUpdatePayload::new(&task.task_id, &task.job_id, 0.5);
    progress.message = Some("half".into());
    let sent = t.send_progress(&progress).await;
    steps.check("progress sent as a signed event", sent.is_ok(), &sent);
    let mut result = TaskResult::success(&task, "rust17", map! {"echo": "é", "n": 2.0});
    result.costs = Some(map! {"execution_time_seconds": 0.5});
    let outcome = t.send_result(&result).await?;
    steps.check("signed result accepted", outcome.is_accepted(), &outcome);

    let forged = t.poll_task(Duration::from_secs(5)).await;
    steps.check(
        "a task whose sig does not verify is refused",
        forged
            .as_ref()
            .is_err_and(|e| e.is_protocol() && e.message().contains("t-forged")),
        &forged,
    );

    let token1 = t.refresh_token().await?;
    steps.check(
        "STS token with a refresh token",
        token1.access_token == "py17-sts-1" && token1.refresh_token.is_some(),
        &token1,
    );
    let token2 = t.refresh_token().await?;
    steps.check(
        "refreshed with the refresh token",
        token2.access_token == "py17-sts-2",
        &token2,
    );
    let reply = t.send_heartbeat(&heartbeat).await;
    steps.check(
        "heartbeat under the new token, still signed with the static one",
        reply.is_ok(),
        &reply,
    );
    let command = tokio::time::timeout(Duration::from_secs(10), t.next_command()).await;
    steps.check(
        "a cancel pushed on /_worker/ws/{id}",
        matches!(&command, Ok(Ok(Some(c))) if c.task_id.as_deref() == Some("t-ws")),
        &command,
    );
    t.close().await?;
    Ok(())
}
