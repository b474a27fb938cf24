//! Quickstart: a worker written against `rxon::Transport`, run end to end.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! The orchestrator side is the in-memory mock (`mock://quickstart`): it queues a batch
//! of tasks, one of which reports progress and one of which is cancelled mid-flight by
//! a `cancel_task` command. The worker registers, heartbeats, polls, runs tasks
//! concurrently, obeys the cancel command and reports every result. The program prints
//! a summary and exits non-zero unless every task ended as expected.
#![allow(clippy::print_stdout)]

use rxon::testing::MockHandle;
use rxon::{
    ErrorCode, Heartbeat, Map, ProgressUpdatePayload, TaskError, TaskPayload, TaskResult,
    TaskStatus, Transport, TransportOptions, Value, WorkerCommand, WorkerRegistration,
};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SQUARES: i64 = 8;
const WORKER_ID: &str = "quickstart-worker";

type Cancels = Arc<Mutex<HashMap<String, watch::Sender<bool>>>>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> rxon::Result<bool> {
    let started = Instant::now();
    let orchestrator = MockHandle::named("quickstart");
    for n in 0..SQUARES {
        orchestrator.push_task(task(&format!("square-{n}"), "square", n));
    }
    orchestrator.push_task(task("render", "slow", 5));
    orchestrator.push_task(task("doomed", "slow", 1000));
    orchestrator.push_task(task("bad-input", "square", -1));
    let expected = SQUARES as usize + 3;

    // Only this line knows the transport: "https://…" would run the same worker.
    let transport: Arc<dyn Transport> = Arc::from(rxon::create_transport(
        &orchestrator.url(),
        WORKER_ID,
        "demo-token",
        TransportOptions::default(),
    )?);
    transport.connect().await?;
    transport.register(&registration()).await?;

    let cancels: Cancels = Arc::default();
    let commands = tokio::spawn(obey_commands(transport.clone(), cancels.clone()));
    let worker = tokio::spawn(poll_and_run(transport.clone(), cancels, expected));

    // The orchestrator's part: cancel "doomed" once it has visibly started
    // (bounded: at most 100 progress reports are inspected).
    let mut doomed_started = false;
    for seen in 1..=100 {
        let progress = orchestrator
            .wait_for_progress(seen, Duration::from_secs(10))
            .await?;
        if progress.iter().any(|p| p.task_id == "doomed") {
            doomed_started = true;
            break;
        }
    }
    orchestrator.push_command(WorkerCommand::cancel_task("doomed", None));

    let results = orchestrator
        .wait_for_results(expected, Duration::from_secs(30))
        .await?;
    worker
        .await
        .map_err(|e| rxon::RxonError::network(e.to_string()))??;
    transport
        .send_heartbeat(&Heartbeat {
            worker_id: WORKER_ID.into(),
            status: "idle".into(),
            supported_skills: vec!["square".into(), "slow".into()],
            ..Default::default()
        })
        .await?;
    transport.close().await?;
    commands.await.ok();

    let count = |s: TaskStatus| results.iter().filter(|r| r.status == s).count();
    let status_of = |id: &str| {
        results
            .iter()
            .find(|r| r.task_id == id)
            .map(|r| r.status.clone())
    };
    let progress_reports = orchestrator.progress().len();
    println!("rxon quickstart: worker over {}", orchestrator.url());
    println!("  tasks          {}", results.len());
    println!("  succeeded      {}", count(TaskStatus::Success));
    println!("  failed         {}", count(TaskStatus::Failure));
    println!("  cancelled      {}", count(TaskStatus::Cancelled));
    println!("  progress sent  {progress_reports}");
    println!("  elapsed        {:.2?}", started.elapsed());

    let ok = results.len() == expected
        && count(TaskStatus::Success) == SQUARES as usize + 1
        && status_of("bad-input") == Some(TaskStatus::Failure)
        && status_of("doomed") == Some(TaskStatus::Cancelled)
        && status_of("render") == Some(TaskStatus::Success)
        && doomed_started;
    println!(
        "  result         {}",
        if ok {
            "every task ended as expected"
        } else {
            "UNEXPECTED"
        }
    );
    Ok(ok)
}

/// Polls until `expected` tasks have been taken, running each in its own task.
async fn poll_and_run(
    transport: Arc<dyn Transport>,
    cancels: Cancels,
    expected: usize,
) -> rxon::Result<()> {
    let mut running = Vec::new();
    while running.len() < expected {
        let Some(task) = transport.poll_task(Duration::from_secs(5)).await? else {
            return Err(rxon::RxonError::timeout(
                "orchestrator ran out of tasks early",
            ));
        };
        let (cancel_tx, cancel_rx) = watch::channel(false);
        cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.task_id.clone(), cancel_tx);
        let transport = transport.clone();
        running.push(tokio::spawn(async move {
            let result = execute(transport.as_ref(), &task, cancel_rx).await;
            transport.send_result(&result).await
        }));
    }
    for handle in running {
        handle
            .await
            .map_err(|e| rxon::RxonError::network(e.to_string()))??;
    }
    Ok(())
}

/// Reads commands until the transport closes; cancels the named tasks.
async fn obey_commands(transport: Arc<dyn Transport>, cancels: Cancels) {
    while let Ok(Some(cmd)) = transport.next_command().await {
        if cmd.command == rxon::CommandName::CancelTask {
            let map = cancels.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = cmd.task_id.as_ref().and_then(|id| map.get(id)) {
                let _ = tx.send(true);
            }
        }
    }
}

async fn execute(
    transport: &dyn Transport,
    task: &TaskPayload,
    mut cancel: watch::Receiver<bool>,
) -> TaskResult {
    let n = task.params.get("n").and_then(Value::as_i64).unwrap_or(0);
    if n < 0 {
        let error = TaskError::new(ErrorCode::InvalidInput, format!("n must be >= 0, got {n}"));
        return TaskResult::failure(task, WORKER_ID, error);
    }
    if task.task_type == "slow" {
        for step in 1..=n {
            let update =
                ProgressUpdatePayload::new(&task.task_id, &task.job_id, step as f64 / n as f64);
            if transport.send_progress(&update).await.is_err() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = cancel.wait_for(|c| *c) => return TaskResult::cancelled(task, WORKER_ID),
            }
        }
    }
    let mut data = Map::new();
    data.insert("value".into(), Value::from(n * n));
    TaskResult::success(task, WORKER_ID, data)
}

fn task(id: &str, task_type: &str, n: i64) -> TaskPayload {
    let mut params = Map::new();
    params.insert("n".into(), Value::from(n));
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: task_type.into(),
        params,
        ..Default::default()
    }
}

fn registration() -> WorkerRegistration {
    WorkerRegistration {
        worker_id: WORKER_ID.into(),
        worker_type: "cpu".into(),
        supported_skills: vec!["square".into(), "slow".into()],
        resources: rxon::Resources {
            max_concurrent_tasks: 16,
            cpu_cores: 2,
            gpu_info: None,
        },
        ..Default::default()
    }
}
