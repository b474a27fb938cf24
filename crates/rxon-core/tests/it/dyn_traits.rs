//! The traits are dyn-compatible and their forwarding impls forward: a handler behind
//! `Arc<dyn Handler>`, with std alone (no async runtime: these futures finish at once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::*;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Polls a future that completes without waiting.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future was expected to complete at once"),
    }
}

#[derive(Default)]
struct TinyOrchestrator {
    queue: Mutex<Vec<TaskPayload>>,
    results: Mutex<Vec<TaskResult>>,
}

impl Handler for TinyOrchestrator {
    fn register(
        &self,
        ctx: RequestContext,
        registration: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
        Box::pin(async move {
            if ctx.token.as_deref() != Some("good") {
                return Err(HandlerError::unauthorized("bad token"));
            }
            let mut reply = RegisterReply::default();
            reply
                .extra
                .insert("id".into(), Value::from(registration.worker_id));
            Ok(reply)
        })
    }

    fn poll(
        &self,
        _ctx: RequestContext,
        _wait: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
        Box::pin(async move { Ok(self.queue.lock().unwrap().pop()) })
    }

    fn result(
        &self,
        _ctx: RequestContext,
        result: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
        Box::pin(async move {
            let mut results = self.results.lock().unwrap();
            if results.iter().any(|r| r.task_id == result.task_id) {
                return Ok(ResultOutcome::ignored(
                    IgnoredReason::StaleTask,
                    "duplicate",
                ));
            }
            results.push(result);
            Ok(ResultOutcome::Accepted)
        })
    }

    fn heartbeat(
        &self,
        _ctx: RequestContext,
        heartbeat: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
        Box::pin(async move {
            Ok(HeartbeatReply {
                require_full_sync: heartbeat.is_none(),
                ..Default::default()
            })
        })
    }
}

#[test]
fn a_handler_behind_arc_dyn_answers_every_message() {
    let inner = Arc::new(TinyOrchestrator::default());
    inner.queue.lock().unwrap().push(TaskPayload {
        task_id: "t1".into(),
        ..Default::default()
    });
    let handler: Arc<dyn Handler> = inner.clone();
    let ctx = RequestContext::new("test")
        .with_token("good")
        .with_worker_id("w1")
        .with_protocol_version(PROTOCOL_VERSION);
    assert_eq!(ctx.transport, "test");

    let reg = WorkerRegistration {
        worker_id: "w1".into(),
        ..Default::default()
    };
    let reply = ready(handler.register(ctx.clone(), reg.clone())).unwrap();
    assert_eq!(reply.extra["id"].as_str(), Some("w1"));
    let refused = ready(handler.register(RequestContext::new("test"), reg)).unwrap_err();
    assert_eq!(refused.kind(), HandlerErrorKind::Unauthorized);

    let task = ready(handler.poll(ctx.clone().with_worker_id("w1"), Duration::from_secs(1)))
        .unwrap()
        .unwrap();
    assert_eq!(task.task_id, "t1");
    let none =
        ready(handler.poll(ctx.clone().with_worker_id("w1"), Duration::from_secs(1))).unwrap();
    assert_eq!(none, None);

    let result = TaskResult::success(&task, "w1", Map::new());
    assert!(
        ready(handler.result(ctx.clone(), result.clone()))
            .unwrap()
            .is_accepted()
    );
    let dup = ready(handler.result(ctx.clone(), result)).unwrap();
    assert_eq!(dup.ignored_reason(), Some(&IgnoredReason::StaleTask));
    assert_eq!(inner.results.lock().unwrap().len(), 1);

    assert!(
        ready(handler.heartbeat(ctx.clone().with_worker_id("w1"), None))
            .unwrap()
            .require_full_sync
    );

    // Optional operations default to a typed "not implemented".
    let p = ProgressUpdatePayload::new("t1", "j", 1.0);
    for err in [
        ready(handler.progress(ctx.clone(), p)).unwrap_err(),
        ready(handler.token(ctx.clone())).unwrap_err(),
        ready(handler.commands(ctx)).err().unwrap(),
    ] {
        assert_eq!(err.kind(), HandlerErrorKind::NotImplemented);
        // A worker connected in-process sees it as Unsupported.
        assert_eq!(RxonError::from(err).kind(), ErrorKind::Unsupported);
    }
}

struct Queue(Vec<WorkerCommand>);

impl CommandReceiver for Queue {
    fn recv(&mut self) -> BoxFuture<'_, Option<WorkerCommand>> {
        Box::pin(async move { self.0.pop() })
    }
}

#[test]
fn command_receivers_are_boxable() {
    let mut rx: Box<dyn CommandReceiver> = Box::new(Queue(vec![WorkerCommand::cancel_task(
        "t9",
        Some("j9".into()),
    )]));
    let cmd = ready(rx.recv()).unwrap();
    assert_eq!(cmd.command, CommandName::CancelTask);
    assert_eq!(ready(rx.recv()), None);
}
