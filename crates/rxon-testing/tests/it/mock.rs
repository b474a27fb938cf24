#![allow(clippy::unwrap_used, clippy::expect_used)]
use rxon_core::{
    ErrorKind, Heartbeat, HeartbeatReply, IgnoredReason, Map, ProgressUpdatePayload, ResultOutcome,
    TaskPayload, TaskResult, Transport, TransportConfig, TransportFactory, WorkerCommand,
    WorkerRegistration,
};
use rxon_testing::{MockHandle, MockTransport, MockTransportFactory, Operation};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn task(id: &str) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: "echo".into(),
        ..Default::default()
    }
}

fn spawn_poll(
    t: &Arc<MockTransport>,
) -> tokio::task::JoinHandle<rxon_core::Result<Option<TaskPayload>>> {
    let t = t.clone();
    tokio::spawn(async move { t.poll_task(Duration::from_secs(30)).await })
}

async fn connected(mock: &MockHandle) -> MockTransport {
    let t = mock.transport("w-1", "tok").unwrap();
    t.connect().await.unwrap();
    t
}

#[tokio::test]
async fn operations_require_connect_and_fail_after_close() {
    let mock = MockHandle::new();
    let t = mock.transport("w-1", "tok").unwrap();
    let err = t.poll_task(Duration::from_millis(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    t.connect().await.unwrap();
    t.connect().await.unwrap(); // idempotent
    t.register(&WorkerRegistration::default()).await.unwrap();
    t.close().await.unwrap();
    let err = t
        .register(&WorkerRegistration::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(t.next_command().await.unwrap(), None);
    assert_eq!(mock.registrations().len(), 1);
}

#[tokio::test]
async fn poll_returns_queued_tasks_in_fifo_order_then_times_out_empty() {
    let mock = MockHandle::new();
    let t = connected(&mock).await;
    mock.push_task(task("a"));
    mock.push_task(task("b"));
    assert_eq!(mock.queued_tasks(), 2);
    let first = t.poll_task(WAIT).await.unwrap().unwrap();
    let second = t.poll_task(WAIT).await.unwrap().unwrap();
    assert_eq!(
        (first.task_id.as_str(), second.task_id.as_str()),
        ("a", "b")
    );
    assert_eq!(t.poll_task(Duration::from_millis(20)).await.unwrap(), None);
    assert_eq!(mock.pending_polls(), 0);
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_a_task_is_pushed() {
    let mock = MockHandle::new();
    let t = Arc::new(connected(&mock).await);
    let poller = spawn_poll(&t);
    mock.wait_for_pollers(1, WAIT).await.unwrap();
    mock.push_task(task("late"));
    let got = tokio::time::timeout(WAIT, poller)
        .await
        .expect("poll woke up")
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap().task_id, "late");
    assert_eq!(mock.pending_polls(), 0);
}

#[tokio::test]
async fn dropping_a_poll_uncounts_it_and_loses_no_task() {
    let mock = MockHandle::new();
    let t = Arc::new(connected(&mock).await);
    let poller = spawn_poll(&t);
    mock.wait_for_pollers(1, WAIT).await.unwrap();
    poller.abort();
    assert!(poller.await.unwrap_err().is_cancelled());
    assert_eq!(mock.pending_polls(), 0);
    mock.push_task(task("kept"));
    assert_eq!(mock.queued_tasks(), 1);
    assert_eq!(t.poll_task(WAIT).await.unwrap().unwrap().task_id, "kept");
}

#[tokio::test]
async fn close_ends_a_pending_command_wait() {
    let mock = MockHandle::new();
    let t = Arc::new(connected(&mock).await);
    mock.push_command(WorkerCommand::cancel_task("t-1", None));
    assert_eq!(
        t.next_command().await.unwrap().unwrap().task_id.as_deref(),
        Some("t-1")
    );
    let reader = {
        let t = t.clone();
        tokio::spawn(async move { t.next_command().await })
    };
    t.close().await.unwrap();
    let ended = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(ended.unwrap(), None);
}

#[tokio::test]
async fn records_everything_and_replays_scripted_replies() {
    let mock = MockHandle::new();
    let t = connected(&mock).await;
    let tk = task("t");
    mock.push_result_outcome(ResultOutcome::ignored(
        IgnoredReason::DeadlineExceeded,
        "late",
    ));
    let outcome = t
        .send_result(&TaskResult::success(&tk, "w-1", Map::new()))
        .await
        .unwrap();
    assert_eq!(
        outcome.ignored_reason(),
        Some(&IgnoredReason::DeadlineExceeded)
    );
    let outcome = t
        .send_result(&TaskResult::cancelled(&tk, "w-1"))
        .await
        .unwrap();
    assert!(outcome.is_accepted(), "scripted replies are used once");

    mock.push_heartbeat_reply(HeartbeatReply {
        cancel_task_ids: vec!["t".into()],
        ..Default::default()
    });
    let hb = Heartbeat {
        worker_id: "w-1".into(),
        status: "busy".into(),
        ..Default::default()
    };
    assert_eq!(t.send_heartbeat(&hb).await.unwrap().cancel_task_ids, ["t"]);
    assert_eq!(
        t.send_heartbeat(&hb).await.unwrap(),
        HeartbeatReply::default()
    );
    t.send_progress(&ProgressUpdatePayload::new("t", "job-t", 0.5))
        .await
        .unwrap();

    assert_eq!(mock.results().len(), 2);
    assert_eq!(mock.heartbeats().len(), 2);
    assert_eq!(mock.progress()[0].progress, 0.5);
    let results = mock.wait_for_results(2, WAIT).await.unwrap();
    assert_eq!(results[1].status, rxon_core::TaskStatus::Cancelled);
    let err = mock
        .wait_for_results(3, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[tokio::test]
async fn injected_failures_hit_once_in_order() {
    let mock = MockHandle::new();
    let t = connected(&mock).await;
    mock.fail_next(Operation::Result, ErrorKind::Network, "blink");
    mock.fail_next(Operation::Result, ErrorKind::Auth, "bad token");
    let r = TaskResult::cancelled(&task("x"), "w-1");
    assert_eq!(
        t.send_result(&r).await.unwrap_err().kind(),
        ErrorKind::Network
    );
    let second = t.send_result(&r).await.unwrap_err();
    assert_eq!(
        (second.kind(), second.message()),
        (ErrorKind::Auth, "bad token")
    );
    assert!(t.send_result(&r).await.unwrap().is_accepted());
    assert_eq!(mock.results().len(), 1, "failed sends are not recorded");
}

#[tokio::test]
async fn refresh_token_issues_a_new_credential() {
    let mock = MockHandle::new();
    let t = connected(&mock).await;
    let a = t.refresh_token().await.unwrap();
    let b = t.refresh_token().await.unwrap();
    assert_ne!(a.access_token, b.access_token);
    assert_eq!(t.token(), b.access_token);
    assert_eq!(b.worker_id, "w-1");
}

#[tokio::test]
async fn factory_attaches_named_urls_and_validates() {
    let mock = MockHandle::new();
    let cfg = TransportConfig::new(mock.url(), "w-2", "tok");
    let t = MockTransportFactory.create(&cfg).unwrap();
    assert_eq!((t.name(), t.worker_id()), ("mock", "w-2"));
    t.connect().await.unwrap();
    mock.push_task(task("via-url"));
    assert_eq!(t.poll_task(WAIT).await.unwrap().unwrap().task_id, "via-url");

    // The same name reaches the same mock from anywhere in the process.
    let again = MockHandle::named(mock.name());
    again.push_task(task("shared"));
    assert_eq!(t.poll_task(WAIT).await.unwrap().unwrap().task_id, "shared");

    let bad_id = TransportConfig::new("mock://x", "no/slashes", "t");
    assert_eq!(
        MockTransportFactory.create(&bad_id).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
    let bad_name = TransportConfig::new("mock://a/../b", "w", "t");
    assert_eq!(
        MockTransportFactory.create(&bad_name).err().unwrap().kind(),
        ErrorKind::Config
    );
    let private = MockTransportFactory
        .create(&TransportConfig::new("mock://", "w", "t"))
        .unwrap();
    private.connect().await.unwrap();
    assert_eq!(
        private.poll_task(Duration::from_millis(10)).await.unwrap(),
        None
    );
}
