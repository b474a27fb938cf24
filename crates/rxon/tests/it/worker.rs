//! The worker runtime against the embedded orchestrator (in-process transport) and the
//! scriptable mock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::orchestrator::{LocalListener, Orchestrator};
use rxon::testing::{MockHandle, Operation};
use rxon::worker::{TaskFailure, Worker};
use rxon::{
    ErrorCode, ErrorKind, HeartbeatReply, Listener, Map, TaskPayload, TaskResult, TaskStatus,
    Transport, TransportConfig, Value,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

const BOUND: Duration = Duration::from_secs(15);

fn task(id: &str, task_type: &str, params: Map) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: task_type.into(),
        params,
        ..Default::default()
    }
}

fn params(pairs: &[(&str, Value)]) -> Map {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

struct Local {
    orch: Orchestrator,
    listener: LocalListener,
}

async fn local() -> Local {
    let orch = Orchestrator::builder().token("t").build();
    let listener = LocalListener::new().with_poll_wait(Duration::from_millis(200));
    listener.start(Arc::new(orch.clone())).await.unwrap();
    Local { orch, listener }
}

impl Local {
    fn transport(&self, worker_id: &str) -> Arc<dyn Transport> {
        let url = self.listener.endpoint().unwrap();
        rxon::create_transport(&url, worker_id, "t", Default::default()).unwrap()
    }
}

/// A worker running in the background, shut down (bounded) by the test.
struct Running {
    stop: rxon::worker::ShutdownHandle,
    run: tokio::task::JoinHandle<rxon::Result<()>>,
}

impl Running {
    fn start(worker: &Worker) -> Self {
        let w = worker.clone();
        Running {
            stop: worker.shutdown_handle(),
            run: tokio::spawn(async move { w.run().await }),
        }
    }

    /// Asks for a graceful shutdown and checks that `run` returns `Ok` in time.
    async fn shutdown(self) {
        self.stop.shutdown();
        self.finished().await;
    }

    /// Checks that `run` returns `Ok` in time.
    async fn finished(self) {
        tokio::time::timeout(BOUND, self.run)
            .await
            .expect("the worker stops in time")
            .expect("the worker task did not panic")
            .expect("run() returns Ok");
    }
}

async fn result(orch: &Orchestrator, id: &str) -> TaskResult {
    orch.wait_result(id, BOUND).await.unwrap()
}

#[tokio::test]
async fn runs_at_most_max_concurrent_tasks_at_once() {
    let env = local().await;
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let (gate, gate_rx) = watch::channel(false);
    let worker = {
        let (active, peak, started) = (active.clone(), peak.clone(), started.clone());
        Worker::builder(env.transport("w-1"))
            .max_concurrent_tasks(3)
            .poll_timeout(Duration::from_millis(200))
            .handler("slow", move |_task, _ctx| {
                let (active, peak, started, mut gate) = (
                    active.clone(),
                    peak.clone(),
                    started.clone(),
                    gate_rx.clone(),
                );
                async move {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    started.notify_waiters();
                    let _ = gate.wait_for(|open| *open).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    Ok(Map::new())
                }
            })
            .build()
            .unwrap()
    };
    let running = Running::start(&worker);
    for i in 0..9 {
        env.orch
            .enqueue(task(&format!("s-{i}"), "slow", Map::new()))
            .await
            .unwrap();
    }
    tokio::time::timeout(BOUND, async {
        while active.load(Ordering::SeqCst) < 3 {
            let notified = started.notified();
            if active.load(Ordering::SeqCst) >= 3 {
                break;
            }
            notified.await;
        }
    })
    .await
    .expect("three tasks start");
    assert_eq!(worker.running_tasks().len(), 3);
    gate.send_replace(true);
    for i in 0..9 {
        assert_eq!(
            result(&env.orch, &format!("s-{i}")).await.status,
            TaskStatus::Success
        );
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "never more than max_concurrent_tasks"
    );
    running.shutdown().await;
    assert_eq!(worker.stats().succeeded, 9);
}

#[tokio::test]
async fn errors_panics_and_timeouts_become_failure_results() {
    let env = local().await;
    let worker = Worker::builder(env.transport("w-1"))
        .max_concurrent_tasks(2)
        .poll_timeout(Duration::from_millis(200))
        .task_timeout(Duration::from_millis(300))
        .handler("job", |task, _ctx| async move {
            match task.params.get("do").and_then(Value::as_str) {
                Some("fail") => Err(TaskFailure::invalid_input("bad n").with_detail("n", -1)),
                Some("panic") => panic!("handler bug"),
                Some("hang") => std::future::pending().await,
                _ => Ok(params(&[("ok", Value::from(true))])),
            }
        })
        .build()
        .unwrap();
    let running = Running::start(&worker);
    for what in ["fail", "panic", "hang", "fine"] {
        env.orch
            .enqueue(task(what, "job", params(&[("do", Value::from(what))])))
            .await
            .unwrap();
    }
    let fail = result(&env.orch, "fail").await;
    let error = fail.error.unwrap();
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert_eq!(error.details.unwrap()["n"].as_i64(), Some(-1));
    let panicked = result(&env.orch, "panic").await.error.unwrap();
    assert_eq!(panicked.code, ErrorCode::Internal);
    assert!(
        panicked.message.contains("handler bug"),
        "{}",
        panicked.message
    );
    let hung = result(&env.orch, "hang").await.error.unwrap();
    assert_eq!(hung.code, ErrorCode::Timeout);
    // The worker survived all of it.
    let fine = result(&env.orch, "fine").await;
    assert_eq!(fine.data.unwrap()["ok"], Value::from(true));
    running.shutdown().await;
    assert_eq!(worker.stats().failed, 3);
}

/// A handler that reports progress and then waits to be cancelled.
fn cancellable(
    started: Arc<Notify>,
) -> impl Fn(
    TaskPayload,
    rxon::worker::TaskContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Map, TaskFailure>> + Send>>
+ Send
+ Sync
+ 'static {
    move |_task, ctx| {
        let started = started.clone();
        Box::pin(async move {
            ctx.progress(0.1, Some("started")).await;
            started.notify_waiters();
            ctx.cancelled().await;
            Err(TaskFailure::transient("stopped"))
        })
    }
}

#[tokio::test]
async fn a_cancel_command_stops_the_task_and_reports_cancelled() {
    let env = local().await;
    let started = Arc::new(Notify::new());
    let worker = Worker::builder(env.transport("w-1"))
        .poll_timeout(Duration::from_millis(200))
        .handler("long", cancellable(started.clone()))
        .build()
        .unwrap();
    let running = Running::start(&worker);
    let began = started.notified();
    env.orch
        .enqueue(task("c-1", "long", Map::new()))
        .await
        .unwrap();
    tokio::time::timeout(BOUND, began)
        .await
        .expect("task started");
    env.orch
        .wait_for_command_channel("w-1", BOUND)
        .await
        .unwrap();
    env.orch.cancel("c-1").await.unwrap();
    assert_eq!(result(&env.orch, "c-1").await.status, TaskStatus::Cancelled);
    assert_eq!(
        env.orch.task_progress("c-1").await[0].message.as_deref(),
        Some("started")
    );
    running.shutdown().await;
}

/// A heartbeat refused as unauthorized (avtomatika answers 403 "Unauthorized…" for a
/// worker it forgot) makes the worker register again, as the reference SDK does; a
/// plain failure does not.
#[tokio::test]
async fn a_refused_heartbeat_registers_again() {
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(20))
        .handler("long", cancellable(Arc::new(Notify::new())))
        .build()
        .unwrap();
    mock.fail_next(Operation::Heartbeat, ErrorKind::Protocol, "HTTP 500");
    mock.fail_next(
        Operation::Heartbeat,
        ErrorKind::Auth,
        "HTTP 403: Unauthorized: No valid token found",
    );
    let running = Running::start(&worker);
    let regs = mock.wait_for_registrations(2, BOUND).await.unwrap();
    assert_eq!(regs[1], regs[0], "the same registration again");
    // The loop is sequential: once a third heartbeat succeeded, both failures were
    // handled, and only the refusal registered again.
    mock.wait_for_heartbeats(1, BOUND).await.unwrap();
    assert_eq!(mock.registrations().len(), 2);
    running.shutdown().await;
}

/// During a graceful shutdown the worker reports `draining` (it takes nothing new) and,
/// once stopped, a last `offline` heartbeat with an empty catalog, as the reference SDK.
#[tokio::test]
async fn shutdown_reports_draining_then_offline() {
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r) = (started.clone(), release.clone());
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(20))
        .shutdown_grace(BOUND)
        .handler("slow", move |_task: TaskPayload, _ctx| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                s.notify_one();
                r.notified().await;
                Ok::<Map, TaskFailure>(Map::new())
            }
        })
        .build()
        .unwrap();
    let running = Running::start(&worker);
    let began = started.notified();
    mock.push_task(task("d-1", "slow", Map::new()));
    tokio::time::timeout(BOUND, began)
        .await
        .expect("task started");
    running.stop.shutdown();
    let draining = mock
        .wait_for_heartbeat_where(BOUND, |h| h.status == "draining")
        .await
        .unwrap();
    assert_eq!(draining.current_tasks, ["d-1"], "still finishing its task");
    assert_eq!(draining.available_skills, Some(vec![]), "takes nothing new");
    release.notify_one();
    running.finished().await;
    let last = mock.heartbeats().pop().unwrap();
    assert_eq!(last.status, "offline");
    assert!(last.current_tasks.is_empty());
    assert_eq!(last.supported_skills, Some(vec![]));
    assert_eq!(mock.results()[0].task_id, "d-1", "the task finished first");
}

#[tokio::test]
async fn a_cancel_in_a_heartbeat_reply_stops_the_task_too() {
    // The mock has no command channel pushes here: only heartbeats carry the cancel.
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let started = Arc::new(Notify::new());
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(50))
        .handler("long", cancellable(started.clone()))
        .build()
        .unwrap();
    let running = Running::start(&worker);
    let began = started.notified();
    mock.push_task(task("h-1", "long", Map::new()));
    tokio::time::timeout(BOUND, began)
        .await
        .expect("task started");
    mock.push_heartbeat_reply(HeartbeatReply {
        cancel_task_ids: vec!["h-1".into()],
        ..Default::default()
    });
    let results = mock.wait_for_results(1, BOUND).await.unwrap();
    assert_eq!(results[0].status, TaskStatus::Cancelled);
    assert!(
        mock.heartbeats().iter().any(|h| h.current_tasks == ["h-1"]
            && h.status == "full"
            && h.available_skills == Some(vec![])),
        "heartbeats report the running task, and the one slot taken"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn results_are_kept_through_network_blips() {
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_millis(100))
        .handler("echo", |task, _| async move { Ok(task.params) })
        .build()
        .unwrap();
    for _ in 0..3 {
        mock.fail_next(Operation::Result, ErrorKind::Network, "connection reset");
    }
    mock.fail_next(Operation::Poll, ErrorKind::Network, "connection refused");
    let running = Running::start(&worker);
    mock.push_task(task("e-1", "echo", params(&[("x", Value::from(1u8))])));
    mock.push_task(task("e-2", "other", Map::new()));
    let results = mock.wait_for_results(2, BOUND).await.unwrap();
    let echo = results.iter().find(|r| r.task_id == "e-1").unwrap();
    assert_eq!(echo.data.as_ref().unwrap()["x"].as_u64(), Some(1));
    // A task type without a handler fails permanently instead of vanishing.
    let other = results.iter().find(|r| r.task_id == "e-2").unwrap();
    assert_eq!(other.error.as_ref().unwrap().code, ErrorCode::Permanent);
    assert_eq!(results.len(), 2, "each result delivered once");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_running_tasks_finish_then_cancels_stragglers() {
    let env = local().await;
    let started = Arc::new(Notify::new());
    let (gate, gate_rx) = watch::channel(false);
    let worker = {
        let gated_started = started.clone();
        Worker::builder(env.transport("w-1"))
            .max_concurrent_tasks(2)
            .poll_timeout(Duration::from_millis(200))
            .shutdown_grace(Duration::from_millis(500))
            .handler("gated", move |_task, _ctx| {
                let (started, mut gate) = (gated_started.clone(), gate_rx.clone());
                async move {
                    started.notify_waiters();
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(Map::new())
                }
            })
            .handler("stubborn", cancellable(started.clone()))
            .build()
            .unwrap()
    };
    let running = Running::start(&worker);
    env.orch
        .enqueue(task("g-1", "gated", Map::new()))
        .await
        .unwrap();
    env.orch
        .enqueue(task("s-1", "stubborn", Map::new()))
        .await
        .unwrap();
    tokio::time::timeout(BOUND, async {
        loop {
            // Created before the check: a notify_waiters in between still wakes it.
            let notified = started.notified();
            if worker.running_tasks().len() >= 2 {
                break;
            }
            notified.await;
        }
    })
    .await
    .expect("both tasks running");
    running.stop.shutdown();
    gate.send_replace(true);
    running.finished().await;
    assert_eq!(result(&env.orch, "g-1").await.status, TaskStatus::Success);
    let straggler = result(&env.orch, "s-1").await;
    assert_eq!(straggler.error.unwrap().code, ErrorCode::Transient);
}

#[tokio::test]
async fn building_needs_handlers_with_valid_types() {
    let t: Arc<dyn Transport> =
        rxon::create_transport_from_config(&TransportConfig::new("mock://", "w", "t")).unwrap();
    assert_eq!(
        Worker::builder(t.clone()).build().unwrap_err().kind(),
        ErrorKind::Config
    );
    let err = Worker::builder(t)
        .handler("bad type", |_, _| async { Ok(Map::new()) })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A skill's declared contract holds both ways in the runtime: params its input schema
/// rejects never reach the handler (`INVALID_INPUT_ERROR`), an output that breaks the
/// output schema is reported as `CONTRACT_VIOLATION_ERROR`, an event payload that
/// breaks its events schema is refused before it is sent; the catalog reaches the
/// orchestrator with the schemas and a `skills_hash`, and later heartbeats send only
/// the hash.
#[tokio::test]
async fn a_declared_contract_is_held_both_ways() {
    let env = local().await;
    let mut skill = rxon::SkillInfo::new("resize");
    skill.input_schema = Some(rxon::map! {
        "type": "object",
        "properties": {"width": {"type": "integer", "minimum": 1}},
        "required": ["width"],
    });
    skill.output_schema = Some(rxon::map! {"type": "object", "required": ["width"]});
    skill.events_schema = Some(rxon::map! {"resized": {"required": ["width"]}});
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let worker = Worker::builder(env.transport("w-1"))
        .poll_timeout(Duration::from_millis(200))
        .heartbeat_interval(Duration::from_millis(50))
        .skill(skill.clone(), move |task, ctx| {
            let runs = counted.clone();
            async move {
                runs.fetch_add(1, Ordering::Relaxed);
                let refused = ctx.emit_event("resized", Map::new()).await;
                assert_eq!(refused.unwrap_err().kind(), ErrorKind::InvalidInput);
                let width = task.params["width"].clone();
                ctx.emit_event("resized", params(&[("width", width.clone())]))
                    .await
                    .map_err(|e| TaskFailure::internal(e.to_string()))?;
                if task.params.contains_key("break") {
                    return Ok(Map::new());
                }
                Ok(params(&[("width", width)]))
            }
        })
        .build()
        .unwrap();
    let running = Running::start(&worker);
    // The orchestrator hands over only what the worker's schema accepts: "zero" waits.
    env.orch
        .enqueue(task("zero", "resize", params(&[("width", Value::from(0))])))
        .await
        .unwrap();
    env.orch
        .enqueue(task("ok", "resize", params(&[("width", Value::from(640))])))
        .await
        .unwrap();
    env.orch
        .enqueue(task(
            "broken",
            "resize",
            params(&[("width", Value::from(8)), ("break", Value::from(true))]),
        ))
        .await
        .unwrap();
    let ok = result(&env.orch, "ok").await;
    assert_eq!(ok.status, TaskStatus::Success, "{ok:?}");
    let broken = result(&env.orch, "broken").await;
    assert_eq!(
        broken.error.map(|e| e.code),
        Some(ErrorCode::ContractViolation)
    );
    assert_eq!(
        env.orch.task_events("ok").await.len(),
        1,
        "only the valid event"
    );
    assert_eq!(
        env.orch.task_state("zero").await,
        Some(rxon::orchestrator::TaskState::Queued),
        "no worker whose schema accepts it: it waits"
    );
    let info = env.orch.workers().await.pop().unwrap();
    assert_eq!(info.catalog(), [skill]);
    assert!(info.skills_hash.is_some());
    running.shutdown().await;
    assert_eq!(
        runs.load(Ordering::Relaxed),
        2,
        "the rejected task never ran"
    );
}

/// The runtime checks params itself: a task whose params its schema rejects (handed
/// over by an orchestrator that does not check) fails with `INVALID_INPUT_ERROR`
/// without running the handler. The registration carries the catalog and its hash;
/// heartbeats after it carry only the hash.
#[tokio::test]
async fn params_the_schema_rejects_never_reach_the_handler() {
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let mut skill = rxon::SkillInfo::new("resize");
    skill.input_schema = Some(rxon::map! {"required": ["width"]});
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let worker = Worker::builder(transport)
        .poll_timeout(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(20))
        .skill(skill, move |task, _ctx| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move { Ok(task.params) }
        })
        .build()
        .unwrap();
    mock.push_task(task("t-1", "resize", Map::new()));
    let running = Running::start(&worker);
    let results = mock.wait_for_results(1, BOUND).await.unwrap();
    let error = results[0].error.clone().expect("a failure");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(error.message.contains("input_schema"), "{}", error.message);
    let registration = mock.registrations().remove(0);
    let hash = registration.skills_hash.clone().expect("a skills_hash");
    assert!(registration.supported_skills[0].input_schema.is_some());
    let beat = mock.wait_for_heartbeats(1, BOUND).await.unwrap().remove(0);
    assert_eq!(beat.supported_skills, None, "only the hash");
    assert_eq!(beat.skills_hash, Some(hash));
    running.shutdown().await;
    assert_eq!(runs.load(Ordering::Relaxed), 0);
}

/// A schema that does not compile is a configuration error at `build()`, naming the
/// skill.
#[tokio::test]
async fn a_schema_that_does_not_compile_fails_the_build() {
    let mock = MockHandle::new();
    let transport: Arc<dyn Transport> = Arc::new(mock.transport("w-1", "t").unwrap());
    let mut skill = rxon::SkillInfo::new("resize");
    skill.output_schema = Some(rxon::map! {"type": "nonsense"});
    let err = Worker::builder(transport)
        .skill(skill, |task, _ctx| async move { Ok(task.params) })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("\"resize\""), "{err}");
}
