//! Quickstart: an orchestrator and a few workers in one process, over real HTTP on
//! 127.0.0.1, running a batch of tasks end to end.
//!
//! ```text
//! cargo run --example quickstart                      # 3 workers, 60 tasks, HTTP
//! cargo run --example quickstart -- --workers 8 --tasks 500
//! cargo run --example quickstart -- --transport ws    # one WebSocket per worker
//! cargo run --example quickstart -- --transport grpc
//! cargo run --example quickstart -- --transport local # in-process, no sockets
//! cargo run --example quickstart --features redis -- --storage redis://127.0.0.1:6379/0
//! ```
//!
//! The embedded orchestrator listens on a free port; the workers (the `rxon::worker`
//! runtime over `HttpTransport`) register, poll and report. The batch includes a task
//! that reports progress and then a custom event (`rendered`), one whose params the
//! `echo` skill's declared input schema refuses (the orchestrator hands it to no worker
//! and reports it as `INVALID_INPUT_ERROR`), and one that is cancelled mid-flight over
//! the command channel. The program prints a summary and exits 0 only
//! if every task ended as expected.
#![allow(clippy::print_stdout)]

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rxon::http::{HttpListener, HttpListenerConfig};
use rxon::orchestrator::{LocalListener, Orchestrator};
use rxon::worker::{TaskFailure, Worker};
use rxon::{ErrorCode, Listener, Map, TaskPayload, TaskStatus, Transport, Value};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportKind {
    /// HTTP on 127.0.0.1 (commands over the WebSocket channel).
    Http,
    /// In-process, no sockets.
    Local,
    /// Every operation over one WebSocket per worker.
    Ws,
    /// gRPC (unary calls, a stream for commands).
    Grpc,
}

/// Runs an RXON orchestrator and workers in one process.
#[derive(Parser, Debug)]
struct Args {
    /// How workers reach the orchestrator.
    #[arg(long, value_enum, default_value = "http")]
    transport: TransportKind,
    /// Number of workers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Number of tasks (at least 4: one progress, one failure, one cancelled).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(4..=100_000))]
    tasks: u32,
    /// Tasks each worker runs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Where the orchestrator keeps its state: `memory`, or a `redis://` URL (built
    /// with `--features redis`).
    #[arg(long, default_value = "memory")]
    storage: rxon::orchestrator::Storage,
}

const TOKEN: &str = "quickstart-token";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> rxon::Result<bool> {
    // A task every worker refuses is reported after 200 ms (checked by the reaper).
    let orchestrator = Orchestrator::builder()
        .storage(args.storage.clone())
        .token(TOKEN)
        .unplaceable_after(Duration::from_millis(200))
        .build();
    let _reaper = orchestrator.spawn_reaper(Duration::from_millis(100));
    let listener: Box<dyn Listener> = match args.transport {
        TransportKind::Http => {
            let mut config = HttpListenerConfig::default();
            config.service.poll_wait = Duration::from_secs(2);
            Box::new(HttpListener::with_config(config))
        }
        TransportKind::Local => {
            Box::new(LocalListener::new().with_poll_wait(Duration::from_secs(2)))
        }
        TransportKind::Ws => {
            let mut config = rxon::ws::WsListenerConfig::default();
            config.ws.poll_wait = Duration::from_secs(2);
            Box::new(rxon::ws::WsListener::with_config(config))
        }
        TransportKind::Grpc => {
            let mut config = rxon::grpc::GrpcListenerConfig::default();
            config.poll_wait = Duration::from_secs(2);
            Box::new(rxon::grpc::GrpcListener::with_config(config))
        }
    };
    listener.start(Arc::new(orchestrator.clone())).await?;
    let url = listener.endpoint().unwrap_or_default();
    println!(
        "rxon quickstart: orchestrator at {url}, {} workers",
        args.workers
    );

    // Workers: the same code whatever the URL.
    let mut workers = Vec::new();
    let mut runs = Vec::new();
    for i in 0..args.workers {
        let transport: Arc<dyn Transport> =
            rxon::create_transport(&url, &format!("worker-{i}"), TOKEN, Default::default())?;
        let worker = Worker::builder(transport)
            .max_concurrent_tasks(usize::from(args.concurrency))
            .poll_timeout(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_secs(2))
            .shutdown_grace(Duration::from_secs(5))
            .skill(echo_skill(), echo)
            .handler("render", render)
            .build()?;
        let w = worker.clone();
        runs.push(tokio::spawn(async move { w.run().await }));
        workers.push(worker);
    }

    // The batch: echoes, one failure, one task with progress, one to cancel.
    let started = Instant::now();
    let total = args.tasks as usize;
    let mut expected = Vec::with_capacity(total);
    let mut enqueued_at = Vec::with_capacity(total);
    let mut progress = orchestrator.subscribe_progress();
    for n in 0..total {
        let (id, task_type, params, want) = match n {
            0 => (
                "render".to_string(),
                "render",
                params(&[("steps", Value::from(5u8))]),
                TaskStatus::Success,
            ),
            1 => (
                "doomed".to_string(),
                "render",
                params(&[("steps", Value::from(10_000u32))]),
                TaskStatus::Cancelled,
            ),
            2 => (
                "bad-input".to_string(),
                "echo",
                params(&[("n", Value::from("three"))]),
                TaskStatus::Failure,
            ),
            _ => (
                format!("echo-{n}"),
                "echo",
                params(&[("n", Value::from(n as u64))]),
                TaskStatus::Success,
            ),
        };
        enqueued_at.push(Instant::now());
        orchestrator
            .enqueue(TaskPayload {
                job_id: format!("job-{}", n / 10),
                task_id: id.clone(),
                task_type: task_type.into(),
                params,
                ..Default::default()
            })
            .await?;
        expected.push((id, want));
    }

    // Cancel "doomed" as soon as it reports progress.
    let canceller = {
        let orchestrator = orchestrator.clone();
        tokio::spawn(async move {
            while let Ok(update) = progress.recv().await {
                if update.task_id == "doomed" {
                    return orchestrator.cancel("doomed").await.is_ok();
                }
            }
            false
        })
    };

    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks  {per_sec}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut waits = tokio::task::JoinSet::new();
    for ((id, want), at) in expected.iter().cloned().zip(enqueued_at) {
        let orchestrator = orchestrator.clone();
        waits.spawn(async move {
            let result = orchestrator
                .wait_result(&id, Duration::from_secs(120))
                .await;
            (id, want, result, at.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let mut unexpected = Vec::new();
    let (mut ok, mut failed, mut cancelled) = (0, 0, 0);
    while let Some(joined) = waits.join_next().await {
        let Ok((id, want, result, latency)) = joined else {
            continue;
        };
        bar.inc(1);
        latencies.push(latency);
        match result {
            Ok(r) => {
                match r.status {
                    TaskStatus::Success => ok += 1,
                    TaskStatus::Failure => failed += 1,
                    TaskStatus::Cancelled => cancelled += 1,
                    _ => {}
                }
                if r.status != want {
                    unexpected.push(format!("{id}: expected {want}, got {}", r.status));
                }
            }
            Err(e) => unexpected.push(format!("{id}: {e}")),
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let cancel_sent = canceller.await.unwrap_or(false);

    for worker in &workers {
        worker.shutdown_handle().shutdown();
    }
    for run in runs {
        if let Ok(Err(e)) = run.await {
            unexpected.push(format!("a worker ended with an error: {e}"));
        }
    }
    listener.stop(Duration::from_secs(5)).await?;

    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    let progress_reports = orchestrator.task_progress("render").await.len();
    let events = orchestrator.task_events("render").await;
    println!(
        "  tasks          {total} in {elapsed:.2?} ({:.0} tasks/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    println!("  succeeded      {ok}");
    println!("  failed         {failed} (expected: bad-input, refused by echo's input_schema)");
    println!("  cancelled      {cancelled} (expected: doomed, cancelled mid-flight)");
    println!("  progress       {progress_reports} updates from \"render\"");
    println!(
        "  events         {} from \"render\" ({})",
        events.len(),
        events
            .iter()
            .map(|e| format!("{} {}", e.event_type, Value::Object(e.payload.clone())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  latency        p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    if !cancel_sent {
        unexpected.push("the cancel for \"doomed\" was never sent".into());
    }
    if progress_reports == 0 {
        unexpected.push("\"render\" reported no progress".into());
    }
    let rendered = params(&[("frames", Value::from(5u8))]);
    if events.len() != 1 || events[0].event_type != "rendered" || events[0].payload != rendered {
        unexpected.push(format!(
            "\"render\" should have sent one rendered event with {}",
            Value::Object(rendered)
        ));
    }
    match orchestrator
        .task_result("bad-input")
        .await
        .and_then(|r| r.error)
    {
        Some(e) if e.code == ErrorCode::InvalidInput && e.message.contains("input_schema") => {
            println!("  refused        bad-input: {}", e.message);
        }
        _ => unexpected
            .push("bad-input was not refused by the input_schema (INVALID_INPUT_ERROR)".into()),
    }
    if unexpected.is_empty() {
        println!("  result         every task ended as expected");
        Ok(true)
    } else {
        for u in &unexpected {
            println!("  UNEXPECTED     {u}");
        }
        Ok(false)
    }
}

fn params(pairs: &[(&str, Value)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// `echo` declares its contract: params with an integer `n`, an object back.
fn echo_skill() -> rxon::SkillInfo {
    let mut skill = rxon::SkillInfo::new("echo");
    skill.version = Some("1.0".into());
    skill.input_schema = Some(rxon::map! {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}},
        "required": ["n"],
    });
    skill.output_schema = Some(rxon::map! {"type": "object", "required": ["echo"]});
    skill
}

async fn echo(task: TaskPayload, _ctx: rxon::worker::TaskContext) -> Result<Map, TaskFailure> {
    Ok(params(&[("echo", Value::Object(task.params))]))
}

async fn render(task: TaskPayload, ctx: rxon::worker::TaskContext) -> Result<Map, TaskFailure> {
    let steps = task
        .params
        .get("steps")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1);
    for step in 1..=steps {
        ctx.progress(
            step as f64 / steps as f64,
            Some(&format!("frame {step}/{steps}")),
        )
        .await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            () = ctx.cancelled() => return Err(TaskFailure::transient("cancelled")),
        }
    }
    // A custom event (1.0b17) about this task; a refusal fails the task.
    ctx.emit_event("rendered", params(&[("frames", Value::from(steps))]))
        .await
        .map_err(|e| TaskFailure::internal(format!("the rendered event was refused: {e}")))?;
    Ok(params(&[("frames", Value::from(steps))]))
}
