// What only a shared storage does: several orchestrators (each standing for a
// listener process) on one Redis state, in real time. Included in `mod redis`.

/// Two orchestrators on one fresh state, configured alike by `configure`.
fn pair(
    configure: impl Fn(rxon_orchestrator::OrchestratorBuilder) -> rxon_orchestrator::OrchestratorBuilder,
) -> (Orchestrator, Orchestrator) {
    let storage = super::shared::storage();
    let one = || configure(Orchestrator::builder().token("secret").storage(storage.clone())).build();
    (one(), one())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_on_one_process_wakes_a_poll_parked_on_another() {
    let (a, b) = pair(|b| b);
    register(&b, "w", &["echo"]).await;
    let parked = {
        let b = b.clone();
        tokio::spawn(async move { poll(&b, "w", Duration::from_secs(20)).await })
    };
    b.wait_for_pollers(1, WAIT).await.unwrap();
    let started = std::time::Instant::now();
    a.enqueue(task("t1", "echo")).await.unwrap();
    let got = tokio::time::timeout(WAIT, parked).await.unwrap().unwrap();
    assert_eq!(got.map(|t| t.task_id).as_deref(), Some("t1"));
    // Woken by the notification, not by the end of the poll's wait.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        a.task_state("t1").await,
        Some(TaskState::Running { worker_id: "w".into() })
    );
}

#[tokio::test]
async fn a_result_is_applied_once_whichever_process_receives_it() {
    let (a, b) = pair(|b| b);
    register(&a, "w", &["echo"]).await;
    a.enqueue(task("t1", "echo")).await.unwrap();
    let t = poll(&a, "w", NOW).await.unwrap();
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_result("t1", WAIT).await })
    };
    assert!(send(&b, success(&t, "w", 1)).await.is_accepted());
    // The same result again, through the other process: accepted, not applied twice.
    assert!(send(&a, success(&t, "w", 1)).await.is_accepted());
    let other = send(&a, success(&t, "w", 2)).await;
    assert_eq!(ignored(&other), Some(&IgnoredReason::StaleTask));
    assert_eq!(a.applied_results().await, 1);
    assert_eq!(b.applied_results().await, 1);
    let r = waiter.await.unwrap().unwrap();
    assert_eq!(r.data.unwrap().get("n"), Some(&Value::from(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_channel_held_by_another_process() {
    let (a, b) = pair(|b| b);
    register(&b, "w", &["echo"]).await;
    let mut rx = b.commands(ctx().with_worker_id("w")).await.unwrap();
    a.enqueue(task("t1", "echo")).await.unwrap();
    poll(&b, "w", NOW).await.unwrap();
    assert_eq!(
        a.cancel("t1").await.unwrap(),
        CancelOutcome::Signalled { worker_id: "w".into() }
    );
    let cmd = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(cmd.task_id.as_deref(), Some("t1"));
    // And in the heartbeat reply, whichever process answers it.
    let hb = Heartbeat {
        current_tasks: vec!["t1".into()],
        ..Heartbeat::default()
    };
    let reply = a.heartbeat(ctx().with_worker_id("w"), Some(hb)).await.unwrap();
    assert_eq!(reply.cancel_task_ids, vec!["t1".to_owned()]);
}

#[tokio::test]
async fn tokens_and_rate_limits_are_shared() {
    let (a, b) = pair(|b| b.sts_credential("boot").rate_limit(3, Duration::from_secs(30)));
    let boot = || RequestContext::new("test").with_token("boot").with_worker_id("w");
    let issued = a.token(boot()).await.unwrap().access_token;
    assert!(!format!("{issued:?}").is_empty());
    let as_w = || RequestContext::new("test").with_token(issued.clone());
    // Minted by one process, accepted by the other.
    b.register(as_w(), registration("w", &["echo"])).await.unwrap();
    b.heartbeat(as_w().with_worker_id("w"), None).await.unwrap();
    // The third request of w this window: the limit counts both processes.
    let e = a
        .heartbeat(as_w().with_worker_id("w"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), HandlerErrorKind::RateLimited);
    assert!(e.retry_after().is_some_and(|d| d <= Duration::from_secs(30)));
    // A token neither minted nor configured is refused by both.
    let forged = RequestContext::new("test").with_token("sts-forged").with_worker_id("w");
    assert_eq!(
        b.heartbeat(forged, None).await.unwrap_err().kind(),
        HandlerErrorKind::Unauthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_claim_lapses_and_any_process_requeues_it() {
    let lease = Duration::from_millis(300);
    let (a, b) = pair(|b| b.claim_lease(lease));
    register(&a, "w", &["echo"]).await;
    register(&a, "v", &["echo"]).await;
    a.enqueue(task("t1", "echo")).await.unwrap();
    let t = poll(&a, "w", NOW).await.unwrap();
    // The reapers of both processes run at once.
    let _ra = a.spawn_reaper(Duration::from_millis(20));
    let _rb = b.spawn_reaper(Duration::from_millis(20));
    b.wait_for_task_state("t1", &TaskState::Queued, WAIT).await.unwrap();
    assert_eq!(a.lapsed_claims().await, 1, "requeued once, not once per reaper");
    // The lapsed holder had it after all: its result is taken instead of a rerun.
    assert!(send(&b, success(&t, "w", 7)).await.is_accepted());
    assert_eq!(
        a.task_state("t1").await,
        Some(TaskState::Finished(TaskStatus::Success))
    );
    assert_eq!(poll(&b, "v", NOW).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_workers_are_reaped_and_their_tasks_requeued_in_order() {
    let ttl = Duration::from_millis(300);
    let (a, b) = pair(|b| b.worker_ttl(ttl));
    register(&a, "w", &["echo"]).await;
    for id in ["t1", "t2", "t3"] {
        a.enqueue(task(id, "echo")).await.unwrap();
    }
    poll(&a, "w", NOW).await.unwrap();
    poll(&a, "w", NOW).await.unwrap();
    let _rb = b.spawn_reaper(Duration::from_millis(20));
    b.wait_for_task_state("t1", &TaskState::Queued, WAIT).await.unwrap();
    let ws = a.workers().await;
    assert_eq!(ws[0].status, WorkerStatus::Gone);
    register(&a, "v", &["echo"]).await;
    let order: Vec<String> = [
        poll(&a, "v", NOW).await,
        poll(&a, "v", NOW).await,
        poll(&a, "v", NOW).await,
    ]
    .into_iter()
    .map(|t| t.unwrap().task_id)
    .collect();
    assert_eq!(order, ["t1", "t2", "t3"], "requeued ahead of later tasks");
}

#[tokio::test]
async fn a_result_after_the_deadline_fails_late() {
    let (a, b) = pair(|b| b);
    register(&a, "w", &["echo"]).await;
    a.enqueue_with_deadline(task("t1", "echo"), Duration::from_millis(200))
        .await
        .unwrap();
    let t = poll(&a, "w", NOW).await.unwrap();
    // Waiting for the deadline itself to pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = send(&b, success(&t, "w", 1)).await;
    assert_eq!(ignored(&late), Some(&IgnoredReason::DeadlineExceeded));
    let r = a.task_result("t1").await.unwrap();
    assert_eq!(r.status, TaskStatus::Failure);
    assert_eq!(r.error.unwrap().code, ErrorCode::LateResult);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_process_and_a_redis_restart() {
    let storage = super::shared::storage();
    let build = || Orchestrator::builder().token("secret").storage(storage.clone()).build();
    let a = build();
    register(&a, "w", &["echo"]).await;
    a.enqueue(task("t1", "echo")).await.unwrap();
    a.enqueue(task("t2", "echo")).await.unwrap();
    let t = poll(&a, "w", NOW).await.unwrap();
    assert!(send(&a, success(&t, "w", 1)).await.is_accepted());
    drop(a); // the process goes away
    super::shared::restart_server(); // Redis is killed and starts again from its AOF
    let c = build();
    assert_eq!(
        c.task_state("t1").await,
        Some(TaskState::Finished(TaskStatus::Success))
    );
    assert_eq!(c.task_state("t2").await, Some(TaskState::Queued));
    assert_eq!(c.applied_results().await, 1);
    let next = poll(&c, "w", NOW).await.unwrap();
    assert_eq!(next.task_id, "t2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_parked_on_one_process_keeps_its_worker_whatever_ends_on_another() {
    let ttl = Duration::from_millis(300);
    let (a, b) = pair(|b| b.worker_ttl(ttl));
    register(&a, "w", &["echo"]).await;
    let parked = {
        let b = b.clone();
        tokio::spawn(async move { poll(&b, "w", Duration::from_secs(3)).await })
    };
    b.wait_for_pollers(1, WAIT).await.unwrap();
    // Another poll of the same worker starts and ends on the other process.
    assert_eq!(poll(&a, "w", NOW).await, None);
    let _ra = a.spawn_reaper(Duration::from_millis(20));
    // Waiting for the worker's silence to outlast its TTL.
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(a.workers().await[0].status, WorkerStatus::Active);
    // The parked poll still gets work.
    a.enqueue(task("t1", "echo")).await.unwrap();
    let got = tokio::time::timeout(WAIT, parked).await.unwrap().unwrap();
    assert_eq!(got.map(|t| t.task_id).as_deref(), Some("t1"));
}
