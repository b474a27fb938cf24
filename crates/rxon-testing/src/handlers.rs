//! Two tiny [`Handler`]s for measuring and inspecting transports, where the embedded
//! orchestrator would be in the way.

use rxon_core::{
    BoxFuture, Handler, HandlerResult, Heartbeat, HeartbeatReply, RegisterReply, RequestContext,
    ResultOutcome, TaskPayload, TaskResult, Value, WorkerRegistration,
};
use std::time::Duration;

/// Answers every poll at once with the same task and accepts every result: the cost of
/// a poll → result cycle is then the transport's and the listener's alone.
#[derive(Debug, Clone)]
pub struct FixedTask(pub TaskPayload);

impl Handler for FixedTask {
    fn register(
        &self,
        _: RequestContext,
        _: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
        Box::pin(async { Ok(RegisterReply::default()) })
    }
    fn poll(
        &self,
        _: RequestContext,
        _: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
        let task = self.0.clone();
        Box::pin(async move { Ok(Some(task)) })
    }
    fn result(
        &self,
        _: RequestContext,
        _: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
        Box::pin(async { Ok(ResultOutcome::Accepted) })
    }
    fn heartbeat(
        &self,
        _: RequestContext,
        _: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
        Box::pin(async { Ok(HeartbeatReply::default()) })
    }
}

/// Answers a registration with what the listener put in its [`RequestContext`], in the
/// reply's `extra`: `transport`, `worker_id`, `cn` (certificate identity), `token`. A
/// worker can so check, end to end, what its transport delivered. Polls find no task.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextEcho;

impl Handler for ContextEcho {
    fn register(
        &self,
        ctx: RequestContext,
        _: WorkerRegistration,
    ) -> BoxFuture<'_, HandlerResult<RegisterReply>> {
        Box::pin(async move {
            let mut reply = RegisterReply::default();
            reply
                .extra
                .insert("transport".into(), Value::from(ctx.transport));
            reply
                .extra
                .insert("worker_id".into(), Value::from(ctx.worker_id));
            reply
                .extra
                .insert("cn".into(), Value::from(ctx.cert_identity));
            reply.extra.insert("token".into(), Value::from(ctx.token));
            Ok(reply)
        })
    }
    fn poll(
        &self,
        _: RequestContext,
        _: Duration,
    ) -> BoxFuture<'_, HandlerResult<Option<TaskPayload>>> {
        Box::pin(async { Ok(None) })
    }
    fn result(
        &self,
        _: RequestContext,
        _: TaskResult,
    ) -> BoxFuture<'_, HandlerResult<ResultOutcome>> {
        Box::pin(async { Ok(ResultOutcome::Accepted) })
    }
    fn heartbeat(
        &self,
        _: RequestContext,
        _: Option<Heartbeat>,
    ) -> BoxFuture<'_, HandlerResult<HeartbeatReply>> {
        Box::pin(async { Ok(HeartbeatReply::default()) })
    }
}
