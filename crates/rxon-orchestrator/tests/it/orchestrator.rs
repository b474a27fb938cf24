// The orchestrator's tests, included once per storage (see main.rs): `builder()` is
// the including module's.
use rxon_core::{
    ErrorCode, ErrorKind, Handler, HandlerErrorKind, Heartbeat, IgnoredReason, Map,
    ProgressUpdatePayload, RequestContext, ResultOutcome, SkillInfo, TaskError, TaskPayload,
    TaskResult, TaskStatus, Value, WorkerCommand, WorkerRegistration,
};
use rxon_orchestrator::{CancelOutcome, Orchestrator, TaskState, WorkerStatus};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const NOW: Duration = Duration::ZERO;

fn ctx() -> RequestContext {
    RequestContext::new("test").with_token("secret")
}

fn orch() -> Orchestrator {
    builder().token("secret").build()
}

fn task(id: &str, task_type: &str) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: task_type.into(),
        ..Default::default()
    }
}

fn registration(worker_id: &str, skills: &[&str]) -> WorkerRegistration {
    WorkerRegistration {
        worker_id: worker_id.into(),
        supported_skills: SkillInfo::list(skills.iter().copied()),
        ..Default::default()
    }
}

async fn register(h: &dyn Handler, worker_id: &str, skills: &[&str]) {
    h.register(ctx(), registration(worker_id, skills))
        .await
        .unwrap();
}

async fn poll(h: &dyn Handler, worker_id: &str, wait: Duration) -> Option<TaskPayload> {
    h.poll(ctx().with_worker_id(worker_id), wait).await.unwrap()
}

fn success(task: &TaskPayload, worker_id: &str, n: i64) -> TaskResult {
    let mut data = Map::new();
    data.insert("n".into(), Value::from(n));
    TaskResult::success(task, worker_id, data)
}

async fn send(h: &dyn Handler, r: TaskResult) -> ResultOutcome {
    h.result(ctx(), r).await.unwrap()
}

fn ignored(outcome: &ResultOutcome) -> Option<&IgnoredReason> {
    outcome.ignored_reason()
}

#[tokio::test]
async fn fifo_within_a_type_and_globally_oldest_across_types() {
    let o = orch();
    for (id, ty) in [
        ("a1", "a"),
        ("b1", "b"),
        ("a2", "a"),
        ("b2", "b"),
        ("c1", "c"),
    ] {
        o.enqueue(task(id, ty)).await.unwrap();
    }
    assert_eq!(o.queued().await, 5);
    register(&o, "w", &["b", "a"]).await;
    let mut got = Vec::new();
    while let Some(t) = poll(&o, "w", NOW).await {
        got.push(t.task_id);
    }
    assert_eq!(got, ["a1", "b1", "a2", "b2"]);
    assert_eq!(o.queued().await, 1, "type c is nobody's skill");
    assert_eq!(o.task_state("c1").await, Some(TaskState::Queued));
    let info = &o.workers().await[0];
    assert_eq!(info.current_tasks, ["a1", "b1", "a2", "b2"]);
    assert_eq!(info.skills, ["b", "a"]);
    assert_eq!(info.status, WorkerStatus::Active);
}

#[tokio::test]
async fn a_worker_only_gets_the_types_it_registered_for() {
    let o = orch();
    register(&o, "wa", &["a"]).await;
    register(&o, "wb", &["b"]).await;
    o.enqueue(task("t-b", "b")).await.unwrap();
    assert_eq!(poll(&o, "wa", NOW).await, None);
    assert_eq!(poll(&o, "wb", NOW).await.unwrap().task_id, "t-b");
    assert_eq!(
        o.task_state("t-b").await,
        Some(TaskState::Running {
            worker_id: "wb".into()
        })
    );
    // Re-registering changes the skills.
    o.enqueue(task("t-b2", "b")).await.unwrap();
    register(&o, "wa", &["a", "b"]).await;
    assert_eq!(poll(&o, "wa", NOW).await.unwrap().task_id, "t-b2");
}

#[tokio::test]
async fn polling_before_registering_is_not_found() {
    let o = orch();
    o.enqueue(task("t", "a")).await.unwrap();
    let err = o
        .poll(ctx().with_worker_id("ghost"), NOW)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::NotFound);
    assert!(err.message().contains("not registered"), "{err}");
    assert_eq!(o.queued().await, 1);
    assert_eq!(o.pending_polls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_poll_is_woken_by_enqueue_through_dyn_handler() {
    let o = orch();
    let h: Arc<dyn Handler> = Arc::new(o.clone());
    register(&*h, "w", &["a"]).await;
    let poller = {
        let h = h.clone();
        tokio::spawn(async move {
            h.poll(ctx().with_worker_id("w"), Duration::from_secs(60))
                .await
        })
    };
    o.wait_for_pollers(1, WAIT).await.unwrap();
    assert_eq!(o.pending_polls(), 1);
    o.enqueue(task("late", "a")).await.unwrap();
    let got = tokio::time::timeout(WAIT, poller)
        .await
        .expect("the poll woke up")
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap().task_id, "late");
    assert_eq!(o.pending_polls(), 0);
    assert_eq!(o.queued().await, 0);
}

#[tokio::test]
async fn a_parked_poll_ignores_other_types_and_takes_its_own() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    let poller = {
        let o = o.clone();
        tokio::spawn(async move {
            o.poll(ctx().with_worker_id("w"), Duration::from_secs(60))
                .await
        })
    };
    o.wait_for_pollers(1, WAIT).await.unwrap();
    o.enqueue(task("other", "b")).await.unwrap();
    // The poll was woken, found nothing of its type and parked again.
    tokio::task::yield_now().await;
    o.wait_for_pollers(1, WAIT).await.unwrap();
    assert!(!poller.is_finished());
    o.enqueue(task("mine", "a")).await.unwrap();
    let got = tokio::time::timeout(WAIT, poller).await.unwrap().unwrap();
    assert_eq!(got.unwrap().unwrap().task_id, "mine");
    assert_eq!(o.task_state("other").await, Some(TaskState::Queued));
}

#[tokio::test]
async fn results_are_applied_once_and_duplicates_accepted() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("t", "a")).await.unwrap();
    let t = poll(&o, "w", NOW).await.unwrap();
    let r = success(&t, "w", 7);
    assert_eq!(send(&o, r.clone()).await, ResultOutcome::Accepted);
    assert_eq!(o.applied_results().await, 1);
    assert_eq!(send(&o, r.clone()).await, ResultOutcome::Accepted);
    assert_eq!(
        o.applied_results().await,
        1,
        "a duplicate is not applied twice"
    );
    assert_eq!(o.task_result("t").await, Some(r.clone()));
    assert_eq!(
        o.task_state("t").await,
        Some(TaskState::Finished(TaskStatus::Success))
    );
    assert_eq!(o.wait_result("t", WAIT).await.unwrap(), r);
    assert!(o.workers().await[0].current_tasks.is_empty());

    // A different result for the finished task is stale.
    let other = success(&t, "w", 8);
    assert_eq!(
        ignored(&send(&o, other).await),
        Some(&IgnoredReason::StaleTask)
    );
    assert_eq!(o.task_result("t").await, Some(r));
    assert_eq!(o.applied_results().await, 1);
}

#[tokio::test]
async fn every_ignored_reason() {
    let o = orch();
    register(&o, "w1", &["a"]).await;
    register(&o, "w2", &["a"]).await;

    // Unknown task.
    let unknown = success(&task("nope", "a"), "w1", 1);
    assert_eq!(
        ignored(&send(&o, unknown).await),
        Some(&IgnoredReason::JobNotFound)
    );

    // Queued, not assigned to anyone.
    o.enqueue(task("queued", "a")).await.unwrap();
    let early = success(&task("queued", "a"), "w1", 1);
    assert_eq!(
        ignored(&send(&o, early).await),
        Some(&IgnoredReason::StaleTask)
    );
    assert_eq!(o.task_state("queued").await, Some(TaskState::Queued));

    // Held by another worker.
    let t = poll(&o, "w1", NOW).await.unwrap();
    assert_eq!(t.task_id, "queued");
    assert_eq!(
        ignored(&send(&o, success(&t, "w2", 1)).await),
        Some(&IgnoredReason::WorkerMismatch)
    );
    assert_eq!(
        o.task_state("queued").await,
        Some(TaskState::Running {
            worker_id: "w1".into()
        })
    );

    // Cancelled.
    o.enqueue(task("doomed", "a")).await.unwrap();
    let d = poll(&o, "w2", NOW).await.unwrap();
    o.cancel("doomed").await.unwrap();
    assert_eq!(
        ignored(&send(&o, success(&d, "w2", 1)).await),
        Some(&IgnoredReason::JobCancelled)
    );

    // Stale: already finished with another result.
    assert!(send(&o, success(&t, "w1", 1)).await.is_accepted());
    assert_eq!(
        ignored(&send(&o, success(&t, "w1", 2)).await),
        Some(&IgnoredReason::StaleTask)
    );
    assert_eq!(o.applied_results().await, 1);
}

#[tokio::test]
async fn cancelling_a_queued_task_dequeues_it() {
    let o = orch();
    o.enqueue(task("t1", "a")).await.unwrap();
    o.enqueue(task("t2", "a")).await.unwrap();
    assert_eq!(o.cancel("t1").await.unwrap(), CancelOutcome::Dequeued);
    assert_eq!(o.queued().await, 1);
    assert_eq!(o.task_state("t1").await, Some(TaskState::Cancelled));
    assert_eq!(
        o.cancel("t1").await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
    let err = o.wait_result("t1", WAIT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "no result will come");
    register(&o, "w", &["a"]).await;
    assert_eq!(poll(&o, "w", NOW).await.unwrap().task_id, "t2");
    assert_eq!(poll(&o, "w", NOW).await, None);
    assert_eq!(
        o.cancel("missing").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn cancelling_a_held_task_signals_the_channel_and_the_heartbeat() {
    let o = orch();
    let h: Arc<dyn Handler> = Arc::new(o.clone());
    register(&*h, "w", &["a"]).await;
    let mut rx = h.commands(ctx().with_worker_id("w")).await.unwrap();
    o.enqueue(task("t", "a")).await.unwrap();
    let t = poll(&*h, "w", NOW).await.unwrap();

    assert_eq!(
        o.cancel("t").await.unwrap(),
        CancelOutcome::Signalled {
            worker_id: "w".into()
        }
    );
    assert_eq!(o.task_state("t").await, Some(TaskState::Cancelled));
    let cmd = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cmd, WorkerCommand::cancel_task("t", Some("job-t".into())));
    let reply = h.heartbeat(ctx().with_worker_id("w"), None).await.unwrap();
    assert_eq!(reply.cancel_task_ids, ["t"]);
    assert!(!reply.require_full_sync);
    // Until the worker acknowledges it, every reply repeats the cancel: a reply lost
    // with its connection does not lose it.
    let listing = |tasks: &[&str]| {
        Some(Heartbeat {
            worker_id: "w".into(),
            current_tasks: tasks.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
    };
    let reply = h
        .heartbeat(ctx().with_worker_id("w"), listing(&["t"]))
        .await
        .unwrap();
    assert_eq!(
        reply.cancel_task_ids,
        ["t"],
        "repeated while the task is listed"
    );
    let reply = h
        .heartbeat(ctx().with_worker_id("w"), listing(&[]))
        .await
        .unwrap();
    assert!(
        reply.cancel_task_ids.is_empty(),
        "a confirmed task the worker no longer lists is acknowledged"
    );

    // The worker confirms: accepted and recorded, once.
    let confirm = TaskResult::cancelled(&t, "w");
    assert!(send(&*h, confirm.clone()).await.is_accepted());
    assert!(send(&*h, confirm.clone()).await.is_accepted());
    assert_eq!(o.applied_results().await, 1);
    assert_eq!(o.wait_result("t", WAIT).await.unwrap(), confirm);
    assert!(o.workers().await[0].current_tasks.is_empty());
    assert_eq!(o.cancel("t").await.unwrap(), CancelOutcome::AlreadyFinished);
}

#[tokio::test]
async fn a_cancelled_task_applies_one_result_whatever_arrives_after() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("t", "a")).await.unwrap();
    let t = poll(&o, "w", NOW).await.unwrap();
    o.cancel("t").await.unwrap();
    let confirm = TaskResult::cancelled(&t, "w");
    assert!(send(&o, confirm.clone()).await.is_accepted());

    // The same worker reports again: another cancelled result with other contents,
    // then a success and a failure. None of them is applied.
    let mut other = TaskResult::cancelled(&t, "w");
    other.error = Some(TaskError::new(ErrorCode::Transient, "stopped late"));
    let failure = TaskResult::failure(&t, "w", TaskError::new(ErrorCode::Transient, "gave up"));
    for later in [other, success(&t, "w", 1), failure] {
        assert_eq!(
            ignored(&send(&o, later.clone()).await),
            Some(&IgnoredReason::JobCancelled),
            "{later:?}"
        );
    }
    assert_eq!(o.applied_results().await, 1, "one result applied");
    assert_eq!(
        o.task_result("t").await,
        Some(confirm.clone()),
        "the first one"
    );
    // The first result repeated is still a duplicate, accepted.
    assert!(send(&o, confirm).await.is_accepted());
    assert_eq!(o.applied_results().await, 1);
}

#[tokio::test]
async fn a_cancel_with_no_channel_open_waits_in_the_heartbeat_list() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("t1", "a")).await.unwrap();
    o.enqueue(task("t2", "a")).await.unwrap();
    let t1 = poll(&o, "w", NOW).await.unwrap();
    poll(&o, "w", NOW).await.unwrap();
    o.cancel("t1").await.unwrap();
    o.cancel("t2").await.unwrap();
    let hb = Heartbeat {
        worker_id: "w".into(),
        status: "busy".into(),
        ..Default::default()
    };
    let reply = o
        .heartbeat(ctx().with_worker_id("w"), Some(hb.clone()))
        .await
        .unwrap();
    assert_eq!(reply.cancel_task_ids, ["t1", "t2"]);

    // A success after the cancel is refused, and the worker no longer holds the task.
    assert_eq!(
        ignored(&send(&o, success(&t1, "w", 1)).await),
        Some(&IgnoredReason::JobCancelled)
    );
    assert_eq!(o.workers().await[0].current_tasks, ["t2"]);
    let reply = o
        .heartbeat(ctx().with_worker_id("w"), Some(hb))
        .await
        .unwrap();
    assert_eq!(
        reply.cancel_task_ids,
        ["t2"],
        "t1 is answered; t2, never confirmed, is repeated"
    );
    assert_eq!(
        o.wait_result("t1", WAIT).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(o.applied_results().await, 0);
}

#[tokio::test]
async fn cancel_job_cancels_each_of_its_tasks() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    for id in ["x1", "x2"] {
        o.enqueue(TaskPayload {
            job_id: "job-x".into(),
            ..task(id, "a")
        })
        .await
        .unwrap();
    }
    o.enqueue(task("other", "a")).await.unwrap();
    poll(&o, "w", NOW).await.unwrap();
    let out = o.cancel_job("job-x").await.unwrap();
    assert_eq!(
        out,
        [
            (
                "x1".to_string(),
                CancelOutcome::Signalled {
                    worker_id: "w".into()
                }
            ),
            ("x2".to_string(), CancelOutcome::Dequeued),
        ]
    );
    assert_eq!(o.queued().await, 1);
    assert_eq!(
        o.cancel_job("job-none").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn a_newer_command_channel_replaces_the_older() {
    let o = orch();
    let err = match o.commands(ctx()).await {
        Err(e) => e,
        Ok(_) => panic!("a channel without worker id"),
    };
    assert_eq!(err.kind(), HandlerErrorKind::BadRequest);
    register(&o, "w", &["a"]).await;
    let mut old = o.commands(ctx().with_worker_id("w")).await.unwrap();
    let mut new = o.commands(ctx().with_worker_id("w")).await.unwrap();
    assert_eq!(tokio::time::timeout(WAIT, old.recv()).await.unwrap(), None);
    o.enqueue(task("t", "a")).await.unwrap();
    poll(&o, "w", NOW).await.unwrap();
    o.cancel("t").await.unwrap();
    let cmd = tokio::time::timeout(WAIT, new.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cmd.task_id.as_deref(), Some("t"));
}

#[tokio::test]
async fn a_heartbeat_from_an_unknown_worker_asks_for_a_full_sync() {
    let o = orch();
    let reply = o
        .heartbeat(ctx().with_worker_id("stranger"), None)
        .await
        .unwrap();
    assert!(reply.require_full_sync);
    assert!(reply.cancel_task_ids.is_empty());
    register(&o, "w", &["a"]).await;
    assert!(
        !o.heartbeat(ctx().with_worker_id("w"), None)
            .await
            .unwrap()
            .require_full_sync
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_on_every_operation() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("t", "a")).await.unwrap();
    let t = poll(&o, "w", NOW).await.unwrap();
    let h: Arc<dyn Handler> = Arc::new(o.clone());
    for bad in [
        RequestContext::new("test"),
        RequestContext::new("test").with_token(""),
        RequestContext::new("test").with_token("wrong"),
    ] {
        let c = || bad.clone().with_worker_id("w");
        let kinds = [
            h.register(c(), registration("w", &["a"])).await.err(),
            h.poll(c().with_worker_id("w"), NOW).await.err(),
            h.result(c(), success(&t, "w", 1)).await.err(),
            h.heartbeat(c().with_worker_id("w"), None).await.err(),
            h.progress(c(), ProgressUpdatePayload::new("t", "job-t", 0.1))
                .await
                .err(),
            h.token(c()).await.err(),
            h.commands(c()).await.err(),
        ]
        .map(|e| e.map(|e| e.kind()));
        assert!(
            kinds
                .iter()
                .all(|k| *k == Some(HandlerErrorKind::Unauthorized)),
            "{bad:?}: {kinds:?}"
        );
    }
    assert_eq!(o.applied_results().await, 0);
    assert!(o.task_progress("t").await.is_empty());

    // With no token configured, any non-empty token is accepted.
    let open = Orchestrator::new();
    open.register(
        RequestContext::new("test").with_token("anything"),
        registration("w", &["a"]),
    )
    .await
    .unwrap();
    let err = open
        .register(RequestContext::new("test"), registration("w", &["a"]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::Unauthorized);
}

#[tokio::test]
async fn enqueue_validates_identifiers_duplicates_and_the_bound() {
    let o = builder().max_queue_len(2).build();
    for bad in [
        TaskPayload {
            job_id: "a/b".into(),
            ..task("t", "a")
        },
        task("", "a"),
        task("t t", "a"),
        task("t", "../x"),
        task(&"x".repeat(257), "a"),
    ] {
        let err = o.enqueue(bad.clone()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    o.enqueue(task("t", "a")).await.unwrap();
    let err = o.enqueue(task("t", "b")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("duplicate"));
    o.enqueue(task("u", "a")).await.unwrap();
    let err = o.enqueue(task("v", "a")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert_eq!(o.queued().await, 2);
    // A finished task frees a place.
    o.cancel("t").await.unwrap();
    o.enqueue(task("v", "a")).await.unwrap();
}

#[tokio::test]
async fn registration_validates_the_worker_and_its_skills() {
    let o = orch();
    for r in [registration("a b", &["x"]), registration("w", &["x/y"])] {
        let err = o.register(ctx(), r).await.unwrap_err();
        assert_eq!(err.kind(), HandlerErrorKind::BadRequest);
    }
    assert!(o.workers().await.is_empty());
    let reply = o
        .register(ctx(), registration("w", &["x", "x"]))
        .await
        .unwrap();
    assert_eq!(reply.status, "registered");
    assert_eq!(o.workers().await[0].skills, ["x"]);
}

#[tokio::test]
async fn progress_is_recorded_broadcast_and_bounded() {
    let o = builder()
        .token("secret")
        .progress_history(3)
        .build();
    let mut sub = o.subscribe_progress();
    o.enqueue(task("t", "a")).await.unwrap();
    for i in 0..5 {
        let p = ProgressUpdatePayload::new("t", "job-t", f64::from(i) / 4.0);
        Handler::progress(&o, ctx(), p).await.unwrap();
    }
    let kept: Vec<f64> = o
        .task_progress("t")
        .await
        .iter()
        .map(|p| p.progress)
        .collect();
    assert_eq!(kept, [0.5, 0.75, 1.0]);
    for i in 0..5 {
        let p = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.progress, f64::from(i) / 4.0);
    }
    let err = Handler::progress(&o, ctx(), ProgressUpdatePayload::new("nope", "j", 0.0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::NotFound);
    assert!(sub.try_recv().is_err(), "refused updates are not broadcast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_result_is_woken_by_the_result() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("t", "a")).await.unwrap();
    let waiter = {
        let o = o.clone();
        tokio::spawn(async move { o.wait_result("t", Duration::from_secs(60)).await })
    };
    let t = poll(&o, "w", WAIT).await.unwrap();
    let failure = TaskResult::failure(&t, "w", TaskError::new(ErrorCode::Permanent, "no"));
    assert!(send(&o, failure.clone()).await.is_accepted());
    let got = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
    assert_eq!(got.unwrap(), failure);
    assert_eq!(
        o.task_state("t").await,
        Some(TaskState::Finished(TaskStatus::Failure))
    );
}

/// Waiters of several tasks: each is woken by its own task's end (a result, a
/// cancel), whatever happens to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_result_is_woken_by_its_own_task_ending() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("run", "a")).await.unwrap();
    o.enqueue(task("queued", "a")).await.unwrap();
    let wait = |id: &'static str| {
        let o = o.clone();
        tokio::spawn(async move { o.wait_result(id, Duration::from_secs(60)).await })
    };
    let (run, queued, twice) = (wait("run"), wait("queued"), wait("run"));
    let t = poll(&o, "w", WAIT).await.unwrap();
    assert_eq!(t.task_id, "run");
    let done = TaskResult::success(&t, "w", Map::new());
    assert!(send(&o, done.clone()).await.is_accepted());
    for waiter in [run, twice] {
        let got = tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap();
        assert_eq!(got.unwrap(), done, "every waiter of the task gets its result");
    }
    assert!(!queued.is_finished(), "another task's result ends no wait");
    assert_eq!(o.cancel("queued").await.unwrap(), CancelOutcome::Dequeued);
    let err = tokio::time::timeout(WAIT, queued).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "a cancelled task gets no result");
}

/// An enqueue wakes the polls of its skill only; a poll parked before its worker
/// registered again with one more skill is woken by that skill's tasks too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_poll_takes_a_skill_its_worker_registered_since() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    register(&o, "other", &["c"]).await;
    let (p1, p2) = (o.clone(), o.clone());
    let parked = tokio::spawn(async move { poll(&p1, "w", Duration::from_secs(60)).await });
    let bystander =
        tokio::spawn(async move { poll(&p2, "other", Duration::from_secs(60)).await });
    o.wait_for_pollers(2, WAIT).await.unwrap();
    register(&o, "w", &["a", "b"]).await;
    o.enqueue(task("t", "b")).await.unwrap();
    let got = tokio::time::timeout(WAIT, parked).await.unwrap().unwrap();
    assert_eq!(got.unwrap().task_id, "t");
    assert!(!bystander.is_finished(), "a poll of another skill takes nothing");
    bystander.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parked_polls_each_get_one_task() {
    let o = orch();
    let n = 8;
    let mut pollers = Vec::new();
    for i in 0..n {
        let w = format!("w{i}");
        register(&o, &w, &["a"]).await;
        let o = o.clone();
        pollers.push(tokio::spawn(async move {
            o.poll(ctx().with_worker_id(w), Duration::from_secs(60))
                .await
        }));
    }
    o.wait_for_pollers(n, WAIT).await.unwrap();
    for i in 0..n {
        o.enqueue(task(&format!("t{i}"), "a")).await.unwrap();
    }
    let mut got = Vec::new();
    for p in pollers {
        let t = tokio::time::timeout(WAIT, p).await.unwrap().unwrap();
        got.push(t.unwrap().unwrap().task_id);
    }
    got.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    want.sort();
    assert_eq!(got, want, "no task handed out twice, none lost");
    assert_eq!(o.queued().await, 0);
}

#[tokio::test]
async fn finished_tasks_are_retained_up_to_the_bound() {
    let o = builder().max_finished_tasks(2).build();
    for id in ["t1", "t2", "t3"] {
        o.enqueue(task(id, "a")).await.unwrap();
        o.cancel(id).await.unwrap();
    }
    assert_eq!(
        o.task_state("t1").await,
        None,
        "the oldest ended task is forgotten"
    );
    assert_eq!(o.task_state("t3").await, Some(TaskState::Cancelled));
}

#[tokio::test]
async fn a_worker_token_acts_only_as_its_worker() {
    let o = builder()
        .worker_token("w-1", "token-of-w1")
        .worker_token("w-2", "token-of-w2")
        .build();
    let as_w1 = || RequestContext::new("test").with_token("token-of-w1");
    o.register(as_w1(), registration("w-1", &["t"]))
        .await
        .unwrap();
    o.register(
        RequestContext::new("test").with_token("token-of-w2"),
        registration("w-2", &["t"]),
    )
    .await
    .unwrap();
    o.enqueue(task("a", "t")).await.unwrap();
    let got = o
        .poll(as_w1().with_worker_id("w-1"), NOW)
        .await
        .unwrap()
        .expect("w-1 polls for itself");

    // Everything that names w-2 with w-1's token is refused, and changes nothing.
    let forbidden = |e: rxon_core::HandlerError| {
        assert_eq!(e.kind(), HandlerErrorKind::Forbidden, "{}", e.message());
        assert!(e.message().contains("w-1"), "{}", e.message());
        assert!(!e.message().contains("token-of"), "{}", e.message());
    };
    forbidden(
        o.register(as_w1(), registration("w-2", &["t"]))
            .await
            .unwrap_err(),
    );
    forbidden(
        o.poll(as_w1().with_worker_id("w-2"), NOW)
            .await
            .unwrap_err(),
    );
    forbidden(
        o.heartbeat(as_w1().with_worker_id("w-2"), None)
            .await
            .unwrap_err(),
    );
    forbidden(
        o.result(as_w1(), success(&got, "w-2", 1))
            .await
            .unwrap_err(),
    );
    forbidden(
        o.commands(as_w1().with_worker_id("w-2"))
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    // w-2 reporting progress on w-1's task is refused too.
    let progress = ProgressUpdatePayload::new("a", "job-a", 0.5);
    let e = o
        .progress(
            RequestContext::new("test").with_token("token-of-w2"),
            progress.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), HandlerErrorKind::Forbidden);
    assert_eq!(
        o.task_state("a").await,
        Some(TaskState::Running {
            worker_id: "w-1".into()
        })
    );

    // As itself, w-1 goes on normally.
    o.progress(as_w1(), progress).await.unwrap();
    assert_eq!(
        o.result(as_w1(), success(&got, "w-1", 1)).await.unwrap(),
        ResultOutcome::Accepted
    );
    // A token nobody configured is refused outright once tokens are configured.
    let e = o
        .heartbeat(
            RequestContext::new("test")
                .with_token("token-of-w3")
                .with_worker_id("w-1"),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), HandlerErrorKind::Unauthorized);
}

#[tokio::test]
async fn an_issued_token_cannot_act_as_or_be_refreshed_for_another_worker() {
    let o = builder().sts_credential("bootstrap").build();
    let minted = o
        .token(
            RequestContext::new("test")
                .with_token("bootstrap")
                .with_worker_id("w-1"),
        )
        .await
        .unwrap();
    let as_w1 = || RequestContext::new("test").with_token(minted.access_token.clone());
    o.register(as_w1(), registration("w-1", &["t"]))
        .await
        .unwrap();
    let e = o
        .register(as_w1(), registration("w-9", &["t"]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), HandlerErrorKind::Forbidden);
    let e = o.token(as_w1().with_worker_id("w-9")).await.unwrap_err();
    assert_eq!(e.kind(), HandlerErrorKind::Forbidden);
    let refreshed = o.token(as_w1().with_worker_id("w-1")).await.unwrap();
    assert_eq!(refreshed.worker_id, "w-1");
}

#[tokio::test]
async fn bound_certificates_decide_who_a_worker_is() {
    let o = builder()
        .token("secret")
        .bind_cert_identity(true)
        .build();
    let cert = |cn: Option<&str>| {
        let mut c = ctx();
        c.cert_identity = cn.map(str::to_owned);
        c
    };
    o.register(cert(Some("w-1")), registration("w-1", &["t"]))
        .await
        .unwrap();
    for (cn, claimed) in [(Some("w-1"), "w-2"), (None, "w-1")] {
        let e = o
            .register(cert(cn), registration(claimed, &["t"]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), HandlerErrorKind::Forbidden, "{cn:?} as {claimed}");
        let e = o
            .heartbeat(cert(cn).with_worker_id(claimed), None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), HandlerErrorKind::Forbidden, "{cn:?} as {claimed}");
    }
    assert!(
        o.poll(cert(Some("w-1")).with_worker_id("w-1"), NOW)
            .await
            .unwrap()
            .is_none()
    );
}

fn schema_skill(name: &str, schema: Map) -> SkillInfo {
    let mut s = SkillInfo::new(name);
    s.input_schema = Some(schema);
    s
}

/// A task every worker offering its type refuses (its params break their input
/// schemas) is reported as such, and ended after `unplaceable_after` by the reaper as
/// an `INVALID_INPUT_ERROR` failure naming each worker's reason; a task no worker
/// offers waits; one a worker accepts is runnable.
#[tokio::test]
async fn tasks_nobody_can_run_are_reported_then_ended() {
    let o = builder()
        .token("secret")
        .unplaceable_after(Duration::ZERO)
        .build();
    let width = rxon_core::map! {"properties": {"w": {"type": "integer"}}, "required": ["w"]};
    for id in ["w-1", "w-2"] {
        let mut reg = registration(id, &[]);
        reg.supported_skills = vec![schema_skill("resize", width.clone())];
        o.register(ctx(), reg).await.unwrap();
    }
    let mut bad = task("bad", "resize");
    bad.params = rxon_core::map! {"w": "wide"};
    o.enqueue(bad).await.unwrap();
    let mut good = task("good", "resize");
    good.params = rxon_core::map! {"w": 3};
    o.enqueue(good).await.unwrap();
    o.enqueue(task("lonely", "crop")).await.unwrap();
    match o.placement("bad").await {
        Some(rxon_orchestrator::Placement::Refused(reasons)) => {
            let who: Vec<&str> = reasons.iter().map(|(w, _)| w.as_str()).collect();
            assert_eq!(who, ["w-1", "w-2"]);
            assert!(reasons[0].1.contains("input_schema"), "{reasons:?}");
        }
        other => panic!("refused by both: {other:?}"),
    }
    assert_eq!(
        o.placement("good").await,
        Some(rxon_orchestrator::Placement::Runnable { workers: 2 })
    );
    assert_eq!(
        o.placement("lonely").await,
        Some(rxon_orchestrator::Placement::NoWorker)
    );
    o.reap_expired().await;
    let ended = o.task_result("bad").await.expect("ended by the reaper");
    let error = ended.error.expect("a failure");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(error.message.contains("w-1, w-2"), "{}", error.message);
    assert_eq!(
        o.task_state("good").await,
        Some(TaskState::Queued),
        "runnable: kept"
    );
    assert_eq!(
        o.task_state("lonely").await,
        Some(TaskState::Queued),
        "waits for a worker"
    );
    assert_eq!(o.placement("bad").await, None, "not queued any more");
    // Dispatch passed over "bad" all along; "good" goes out.
    assert_eq!(
        poll(&o, "w-1", NOW).await.map(|t| t.task_id).as_deref(),
        Some("good")
    );
}

/// A schema that does not compile refuses the registration (400), naming the skill.
#[tokio::test]
async fn a_registration_with_a_broken_schema_is_refused() {
    let o = orch();
    let mut reg = registration("w-1", &[]);
    reg.supported_skills = vec![schema_skill("resize", rxon_core::map! {"type": "nonsense"})];
    let err = o.register(ctx(), reg).await.unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::BadRequest);
    assert!(err.message().contains("\"resize\""), "{}", err.message());
    assert!(o.workers().await.is_empty(), "nothing registered");
}

/// Resource matching in dispatch: a task that needs a GPU and a software version goes
/// to the worker that has them, even when another worker polls first; a task nobody
/// can host is refused by every worker and ended as `RESOURCE_EXHAUSTED`.
#[tokio::test]
async fn dispatch_matches_resources() {
    use rxon_core::matching::ResourceRequirements;
    use rxon_orchestrator::{Placement, TaskOptions};
    let o = builder()
        .token("secret")
        .unplaceable_after(Duration::ZERO)
        .build();
    let mut big = registration("big", &["train"]);
    big.resources.cpu_cores = 32;
    big.resources.gpu_info = Some(rxon_core::GpuInfo {
        model: "NVIDIA A100".into(),
        vram_gb: 80,
    });
    big.installed_software = [("cuda".to_owned(), "12.1".to_owned())].into();
    o.register(ctx(), big).await.unwrap();
    let mut small = registration("small", &["train"]);
    small.resources.cpu_cores = 4;
    o.register(ctx(), small).await.unwrap();
    let mut needs = ResourceRequirements::default();
    needs.resources.gpu_info = Some(rxon_core::GpuInfo {
        model: "a100".into(),
        vram_gb: 40,
    });
    needs.installed_software = [("cuda".to_owned(), "any".to_owned())].into();
    o.enqueue_with(
        task("gpu", "train"),
        TaskOptions::default().with_requirements(needs),
    )
    .await
    .unwrap();
    let mut huge = ResourceRequirements::default();
    huge.resources.cpu_cores = 64;
    o.enqueue_with(
        task("huge", "train"),
        TaskOptions::default().with_requirements(huge),
    )
    .await
    .unwrap();
    o.enqueue(task("any", "train")).await.unwrap();
    assert_eq!(
        o.placement("gpu").await,
        Some(Placement::Runnable { workers: 1 })
    );
    // "small" polls first: it gets the task it can run, not the GPU one before it.
    assert_eq!(
        poll(&o, "small", NOW).await.map(|t| t.task_id).as_deref(),
        Some("any")
    );
    assert_eq!(poll(&o, "small", NOW).await, None, "nothing else fits it");
    assert_eq!(
        poll(&o, "big", NOW).await.map(|t| t.task_id).as_deref(),
        Some("gpu")
    );
    match o.placement("huge").await {
        Some(Placement::Refused(r)) => {
            assert_eq!(r.len(), 2, "{r:?}");
            assert!(r.iter().all(|(_, why)| why.contains("cpu_cores")), "{r:?}");
        }
        other => panic!("nobody has 64 cores: {other:?}"),
    }
    o.reap_expired().await;
    let error = o.task_result("huge").await.unwrap().error.unwrap();
    assert_eq!(error.code, ErrorCode::ResourceExhausted);
    assert!(
        error
            .message
            .contains("cpu_cores is 32, which does not meet 64"),
        "{}",
        error.message
    );
}
