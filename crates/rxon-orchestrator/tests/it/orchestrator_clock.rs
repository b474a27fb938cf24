// The orchestrator's tests that run on Tokio's paused clock (or step a poll future
// by hand), on the in-memory storage only: a paused clock jumps while a request to
// Redis is in flight. `shared_redis.rs` covers the same behaviour on Redis in real
// time.

use std::task::Poll;

#[tokio::test(start_paused = true)]
async fn a_poll_with_no_task_times_out_with_none() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    let start = tokio::time::Instant::now();
    assert_eq!(poll(&o, "w", Duration::from_secs(30)).await, None);
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert_eq!(o.pending_polls(), 0);
    // A zero wait answers at once.
    assert_eq!(poll(&o, "w", NOW).await, None);
}

#[tokio::test]
async fn a_dropped_poll_loses_no_task() {
    let o = orch();
    register(&o, "w", &["a"]).await;

    // Poll once so that it parks, let the enqueue wake it, then drop it unpolled.
    let mut fut = o.poll(ctx().with_worker_id("w"), Duration::from_secs(60));
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await;
    assert!(first, "no task yet: the poll parks");
    assert_eq!(o.pending_polls(), 1);
    o.enqueue(task("kept", "a")).await.unwrap();
    drop(fut);
    assert_eq!(o.pending_polls(), 0);
    assert_eq!(o.queued().await, 1);
    assert_eq!(o.task_state("kept").await, Some(TaskState::Queued));

    // A spawned poll aborted while parked loses nothing either.
    register(&o, "w2", &["b"]).await;
    let poller = {
        let o = o.clone();
        tokio::spawn(async move {
            o.poll(ctx().with_worker_id("w2"), Duration::from_secs(60))
                .await
        })
    };
    o.wait_for_pollers(1, WAIT).await.unwrap();
    poller.abort();
    assert!(poller.await.unwrap_err().is_cancelled());
    assert_eq!(o.pending_polls(), 0);
    o.enqueue(task("kept-b", "b")).await.unwrap();
    assert_eq!(o.task_state("kept-b").await, Some(TaskState::Queued));
    assert_eq!(poll(&o, "w2", NOW).await.unwrap().task_id, "kept-b");

    assert_eq!(poll(&o, "w", NOW).await.unwrap().task_id, "kept");
}

#[tokio::test(start_paused = true)]
async fn a_result_after_the_deadline_is_ignored_and_the_task_fails_late() {
    let o = builder()
        .token("secret")
        .default_task_deadline(Duration::from_secs(10))
        .build();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("slow", "a")).await.unwrap();
    o.enqueue_with_deadline(task("quick", "a"), Duration::from_secs(100))
        .await
        .unwrap();
    let slow = poll(&o, "w", NOW).await.unwrap();
    let quick = poll(&o, "w", NOW).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;

    let late = success(&slow, "w", 1);
    assert_eq!(
        ignored(&send(&o, late.clone()).await),
        Some(&IgnoredReason::DeadlineExceeded)
    );
    assert_eq!(
        ignored(&send(&o, late).await),
        Some(&IgnoredReason::DeadlineExceeded),
        "a retry is refused the same way"
    );
    assert_eq!(
        o.task_state("slow").await,
        Some(TaskState::Finished(TaskStatus::Failure))
    );
    let recorded = o.wait_result("slow", WAIT).await.unwrap();
    assert_eq!(recorded.error.unwrap().code, ErrorCode::LateResult);
    assert_eq!(o.applied_results().await, 0);

    // The explicit deadline has not passed.
    assert!(send(&o, success(&quick, "w", 1)).await.is_accepted());
    assert_eq!(o.applied_results().await, 1);
}

#[tokio::test(start_paused = true)]
async fn reaping_requeues_the_tasks_of_silent_workers_in_order() {
    let o = orch(); // worker TTL 30 s
    register(&o, "w1", &["a"]).await;
    let mut rx = o.commands(ctx().with_worker_id("w1")).await.unwrap();
    for id in ["t1", "t2", "t3"] {
        o.enqueue(task(id, "a")).await.unwrap();
    }
    let t1 = poll(&o, "w1", NOW).await.unwrap();
    poll(&o, "w1", NOW).await.unwrap(); // t2
    tokio::time::advance(Duration::from_secs(20)).await;
    assert!(o.reap_expired().await.is_empty(), "20 s is within the TTL");
    o.enqueue(task("t4", "a")).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    register(&o, "w2", &["a"]).await;
    assert_eq!(o.queued().await, 2);
    assert_eq!(o.reap_expired().await, ["w1"]);
    assert_eq!(o.queued().await, 4);
    assert_eq!(o.task_state("t1").await, Some(TaskState::Queued));
    let w1 = o
        .workers()
        .await
        .into_iter()
        .find(|w| w.worker_id == "w1")
        .unwrap();
    assert_eq!(w1.status, WorkerStatus::Gone);
    assert!(w1.current_tasks.is_empty());
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap(), None);

    let mut order = Vec::new();
    while let Some(t) = poll(&o, "w2", NOW).await {
        order.push(t.task_id);
    }
    assert_eq!(order, ["t1", "t2", "t3", "t4"]);

    // The gone worker must register again; its late result is not applied.
    let err = o.poll(ctx().with_worker_id("w1"), NOW).await.unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::NotFound);
    assert!(
        o.heartbeat(ctx().with_worker_id("w1"), None)
            .await
            .unwrap()
            .require_full_sync
    );
    assert_eq!(
        ignored(&send(&o, success(&t1, "w1", 1)).await),
        Some(&IgnoredReason::WorkerMismatch)
    );
    register(&o, "w1", &["a"]).await;
    assert_eq!(o.workers().await[0].status, WorkerStatus::Active);
}

#[tokio::test(start_paused = true)]
async fn a_worker_with_a_poll_in_progress_is_not_reaped() {
    let o = orch();
    register(&o, "w", &["a"]).await;
    let poller = {
        let o = o.clone();
        tokio::spawn(async move {
            o.poll(ctx().with_worker_id("w"), Duration::from_secs(120))
                .await
        })
    };
    o.wait_for_pollers(1, WAIT).await.unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(o.reap_expired().await.is_empty());
    assert_eq!(poller.await.unwrap().unwrap(), None);
    // The poll's end counts as contact.
    assert!(o.reap_expired().await.is_empty());
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(o.reap_expired().await, ["w"]);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_runs_periodically_and_stops_with_the_orchestrator() {
    let o = builder()
        .token("secret")
        .worker_ttl(Duration::from_secs(5))
        .build();
    register(&o, "w", &["a"]).await;
    o.enqueue(task("t", "a")).await.unwrap();
    poll(&o, "w", NOW).await.unwrap();
    let reaper = o.spawn_reaper(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(o.workers().await[0].status, WorkerStatus::Gone);
    assert_eq!(o.task_state("t").await, Some(TaskState::Queued));
    drop(o);
    let ended = tokio::time::timeout(WAIT, reaper)
        .await
        .expect("reaper stopped");
    assert!(ended.is_ok() || ended.unwrap_err().is_cancelled());
}

/// 1.0b17: a refresh token beside each access token, traded for new access tokens
/// (it stays valid) without the expired access token; envelopes keyed by the static
/// credential a token descends from.
#[tokio::test(start_paused = true)]
async fn refresh_tokens_and_envelope_keys() {
    let o = builder()
        .token("shared")
        .worker_token("w-own", "own-token")
        .sts_credential("bootstrap")
        .token_ttl(Duration::from_secs(60))
        .refresh_token_ttl(Duration::from_secs(600))
        .build();
    let v17 = |t: &str| {
        let mut c = RequestContext::new("test")
            .with_token(t)
            .with_worker_id("w");
        c.protocol_version = Some("1.0b17".into());
        c
    };
    let b3 = o
        .token(
            RequestContext::new("test")
                .with_token("bootstrap")
                .with_worker_id("w"),
        )
        .await
        .unwrap();
    assert_eq!(b3.refresh_token, None, "1.0b3 workers get no refresh token");
    let first = o.token(v17("bootstrap")).await.unwrap();
    let refresh = first.refresh_token.clone().expect("a refresh token");
    assert!(refresh.starts_with("rt-"), "{refresh}");

    // The access token expires; the refresh token still buys new ones, and stays.
    tokio::time::advance(Duration::from_secs(61)).await;
    let second = o.refresh(v17("expired"), refresh.clone()).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.refresh_token.as_deref(), Some(refresh.as_str()));
    assert_eq!(second.worker_id, "w");
    o.heartbeat(v17(&second.access_token), None).await.unwrap();
    let third = o.refresh(v17(""), refresh.clone()).await.unwrap();
    assert_ne!(third.access_token, second.access_token);

    for (bad, hint) in [("rt-forged", "w"), (refresh.as_str(), "another")] {
        let mut c = v17("x");
        c.worker_id = Some(hint.into());
        let err = o.refresh(c, bad.to_owned()).await.unwrap_err();
        assert_eq!(err.kind(), HandlerErrorKind::Forbidden, "{bad} as {hint}");
        assert!(err.message().starts_with("Unauthorized"), "{err}");
    }
    tokio::time::advance(Duration::from_secs(600)).await;
    let err = o.refresh(v17("x"), refresh.clone()).await.unwrap_err();
    assert_eq!(
        err.kind(),
        HandlerErrorKind::Forbidden,
        "expired refresh token"
    );

    // Envelope keys: the worker's own token; else the static credential behind the
    // request's token, issued tokens included; else the shared token.
    let key = |c: RequestContext| o.envelope_key(c);
    let fresh = o.token(v17("bootstrap")).await.unwrap();
    assert_eq!(
        key(v17(&fresh.access_token)).await.unwrap().as_deref(),
        Some("bootstrap")
    );
    assert_eq!(key(v17("shared")).await.unwrap().as_deref(), Some("shared"));
    assert_eq!(
        key(v17("unknown")).await.unwrap().as_deref(),
        Some("shared")
    );
    let mut own = v17("shared");
    own.worker_id = Some("w-own".into());
    assert_eq!(key(own).await.unwrap().as_deref(), Some("own-token"));
    let open = builder().build();
    assert_eq!(
        open.envelope_key(v17("any")).await.unwrap(),
        None,
        "open: unchecked"
    );
}

#[tokio::test(start_paused = true)]
async fn sts_bootstrap_flow_and_expiry() {
    let o = builder()
        .token("secret")
        .sts_credential("bootstrap")
        .token_ttl(Duration::from_secs(60))
        .build();
    let boot = || RequestContext::new("test").with_token("bootstrap");

    // The bootstrap credential is good for the STS operation only.
    let err = o
        .register(boot(), registration("w", &["a"]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::Unauthorized);
    let issued = o.token(boot().with_worker_id("w")).await.unwrap();
    assert!(issued.access_token.starts_with("sts-"), "{issued:?}");
    assert_eq!((issued.expires_in, issued.worker_id.as_str()), (60, "w"));
    let no_id = o.token(boot()).await.unwrap();
    assert_eq!(no_id.worker_id, "unknown");
    assert_ne!(no_id.access_token, issued.access_token);

    // The issued token works everywhere, and can be refreshed.
    let with = |t: &str| RequestContext::new("test").with_token(t);
    o.register(with(&issued.access_token), registration("w", &["a"]))
        .await
        .unwrap();
    // A static token also gets a token.
    assert_eq!(o.token(ctx()).await.unwrap().worker_id, "unknown");

    tokio::time::advance(Duration::from_secs(59)).await;
    o.heartbeat(with(&issued.access_token).with_worker_id("w"), None)
        .await
        .unwrap();
    let refreshed = o.token(with(&issued.access_token)).await.unwrap();
    assert_eq!(refreshed.worker_id, "w", "taken from the token");
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = o
        .heartbeat(with(&issued.access_token).with_worker_id("w"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::Unauthorized);
    let err = o.token(with(&issued.access_token)).await.unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::Unauthorized);
    // The refreshed one is still valid.
    o.heartbeat(with(&refreshed.access_token).with_worker_id("w"), None)
        .await
        .unwrap();

    for bad in ["wrong", ""] {
        let err = o.token(with(bad)).await.unwrap_err();
        assert_eq!(err.kind(), HandlerErrorKind::Unauthorized, "{bad:?}");
    }
    let err = o.token(RequestContext::new("test")).await.unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::Unauthorized);
}

#[tokio::test(start_paused = true)]
async fn rate_limiting_answers_with_retry_after() {
    let o = builder()
        .token("secret")
        .rate_limit(2, Duration::from_secs(10))
        .build();
    register(&o, "w", &["a"]).await; // 1
    o.heartbeat(ctx().with_worker_id("w"), None).await.unwrap(); // 2
    let err = o
        .heartbeat(ctx().with_worker_id("w"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), HandlerErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    // Another worker has its own budget.
    register(&o, "v", &["a"]).await;

    tokio::time::advance(Duration::from_secs(4)).await;
    let err = o.poll(ctx().with_worker_id("w"), NOW).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(6)));
    tokio::time::advance(Duration::from_secs(6)).await;
    o.heartbeat(ctx().with_worker_id("w"), None).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn wait_result_times_out_or_refuses_unknown_tasks() {
    let o = orch();
    o.enqueue(task("t", "a")).await.unwrap();
    let err = o
        .wait_result("t", Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let err = o.wait_result("nope", WAIT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = o.wait_for_pollers(1, WAIT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_claim_lapses_and_its_task_is_requeued() {
    let o = builder()
        .token("secret")
        .claim_lease(Duration::from_secs(10))
        .build();
    register(&o, "w-1", &["t"]).await;
    register(&o, "w-2", &["t"]).await;
    for id in ["lost", "kept", "progressed"] {
        o.enqueue(task(id, "t")).await.unwrap();
    }
    // Three claims; only two are ever confirmed.
    for _ in 0..3 {
        assert!(poll(&o, "w-1", NOW).await.is_some());
    }
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        current_tasks: vec!["kept".into()],
        ..Default::default()
    };
    o.heartbeat(ctx().with_worker_id("w-1"), Some(hb))
        .await
        .unwrap();
    o.progress(
        ctx(),
        ProgressUpdatePayload::new("progressed", "job-progressed", 0.1),
    )
    .await
    .unwrap();

    tokio::time::advance(Duration::from_secs(9)).await;
    o.reap_expired().await;
    assert_eq!(o.lapsed_claims().await, 0, "not before the lease");
    tokio::time::advance(Duration::from_secs(2)).await;
    o.reap_expired().await;
    assert_eq!(o.lapsed_claims().await, 1);
    assert_eq!(o.task_state("lost").await, Some(TaskState::Queued));
    assert_eq!(
        o.task_state("kept").await,
        Some(TaskState::Running {
            worker_id: "w-1".into()
        })
    );
    assert_eq!(
        o.task_state("progressed").await,
        Some(TaskState::Running {
            worker_id: "w-1".into()
        })
    );
    // w-1 no longer holds it; another worker gets it.
    let info = o
        .workers()
        .await
        .into_iter()
        .find(|w| w.worker_id == "w-1")
        .unwrap();
    assert!(!info.current_tasks.contains(&"lost".to_owned()));
    assert_eq!(poll(&o, "w-2", NOW).await.unwrap().task_id, "lost");
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_holders_result_is_applied_instead_of_running_the_task_again() {
    let o = builder()
        .token("secret")
        .claim_lease(Duration::from_secs(1))
        .build();
    register(&o, "w-1", &["t"]).await;
    o.enqueue(task("slow", "t")).await.unwrap();
    let t = poll(&o, "w-1", NOW).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    o.reap_expired().await;
    assert_eq!(o.task_state("slow").await, Some(TaskState::Queued));
    assert_eq!(o.queued().await, 1);
    // The worker had it after all.
    assert_eq!(
        send(&o, success(&t, "w-1", 7)).await,
        ResultOutcome::Accepted
    );
    assert_eq!(
        o.task_state("slow").await,
        Some(TaskState::Finished(TaskStatus::Success))
    );
    assert_eq!((o.queued().await, o.applied_results().await), (0, 1));
    // A second delivery of the same result changes nothing.
    assert_eq!(
        send(&o, success(&t, "w-1", 7)).await,
        ResultOutcome::Accepted
    );
    assert_eq!(o.applied_results().await, 1);
    // Another worker's result for a requeued task is still refused.
    o.enqueue(task("other", "t")).await.unwrap();
    let t2 = poll(&o, "w-1", NOW).await.unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    o.reap_expired().await;
    register(&o, "w-2", &["t"]).await;
    let outcome = send(&o, success(&t2, "w-2", 1)).await;
    assert!(ignored(&outcome).is_some(), "{outcome:?}");
}
