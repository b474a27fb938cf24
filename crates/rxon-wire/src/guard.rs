//! The 1.0b17 envelope as every transport applies it, written once: a worker seals
//! each message it sends ([`seal_message`]), a listener admits each signed message it
//! receives ([`admit`]) before the handler sees it. HTTP, the WebSocket transport and
//! gRPC call these two; only the bytes around them differ.

use crate::envelope::{self, Verifier};
use crate::{Wire, WireError};
use rxon_core::validate::is_valid_identifier;
use rxon_core::{Handler, HandlerError, Protocol, RequestContext};
use serde_json::Value;

/// `message` sealed as a 1.0b17 worker sends it: its 1.0b17 JSON with a fresh
/// `timestamp`, a `nonce` (unless it has its own id, as events do) and
/// `security {signature, signer_id}` over the rest, signed with `key` as `signer_id`;
/// returned as the model again, so a transport that carries the model (WebSocket,
/// gRPC) sends exactly what was signed. Seal every attempt afresh: a resend of the
/// same sealed message within the replay window is refused.
///
/// ```
/// use rxon_core::{Heartbeat, Protocol};
/// let hb = Heartbeat { worker_id: "w-1".into(), status: "idle".into(), ..Default::default() };
/// let sealed = rxon_wire::guard::seal_message(&hb, "secret", "w-1", &[])?;
/// assert!(sealed.timestamp.is_some() && sealed.nonce.is_some());
/// assert_eq!(sealed.security.as_ref().and_then(|s| s.signer_id.as_deref()), Some("w-1"));
/// # Ok::<(), rxon_wire::WireError>(())
/// ```
pub fn seal_message<T: Wire>(
    message: &T,
    key: &str,
    signer_id: &str,
    ignore: &[&str],
) -> Result<T, WireError> {
    let Value::Object(mut fields) = crate::encode(Protocol::V1b17, message)? else {
        return Err(WireError::invalid(format!(
            "{} is not a JSON object",
            T::NAME
        )));
    };
    envelope::seal(&mut fields, key, signer_id, envelope::unix_now(), ignore)?;
    crate::decode(Protocol::V1b17, Value::Object(fields))
}

/// Admits a signed 1.0b17 message (its JSON as received, or the 1.0b17 JSON of the
/// model a transport decoded) for the worker the request is about:
///
/// 1. **one identity**: the worker the request names (path, `X-Worker-ID`, stream) or,
///    when it names none, the message's `worker_id`; a message naming another worker
///    than the request is refused (403);
/// 2. **the credential first** ([`Handler::authenticate`]): a refused credential
///    (401) must not spend the message's nonce, or the retry with a fresh token would
///    be taken for a replay;
/// 3. **the envelope**: clock, signature with the key the handler names for this
///    worker ([`Handler::envelope_key`]; none: clock and replay only), replay (403
///    with the reference's texts).
pub async fn admit(
    handler: &dyn Handler,
    verifier: &Verifier,
    message: &Value,
    ctx: &RequestContext,
    ignore: &[&str],
) -> Result<(), HandlerError> {
    let named = message.get("worker_id").and_then(Value::as_str);
    let worker = match (&ctx.worker_id, named) {
        (Some(hint), Some(body)) if !body.is_empty() && body != hint => {
            return Err(HandlerError::forbidden(
                "the message's worker_id is not the worker the request names",
            ));
        }
        (Some(hint), _) => hint.clone(),
        (None, Some(id)) if is_valid_identifier(id) => id.to_owned(),
        (None, _) => {
            return Err(HandlerError::bad_request(
                "invalid worker_id: use 1-256 ASCII letters, digits, '_' or '-'",
            ));
        }
    };
    let mut asking = ctx.clone();
    asking.worker_id = Some(worker.clone());
    handler.authenticate(asking.clone()).await?;
    let key = handler.envelope_key(asking).await?;
    verifier
        .check_with(
            message,
            &worker,
            key.as_deref(),
            envelope::unix_now(),
            ignore,
        )
        .map_err(|refusal| HandlerError::forbidden(refusal.message()))
}

/// [`admit`] for a message a transport decoded into the model (WebSocket, gRPC): its
/// 1.0b17 JSON is what the worker signed ([`seal_message`]). On success the envelope
/// is removed from the message (it belongs to one attempt, not to the message).
pub async fn admit_message<T: Wire>(
    handler: &dyn Handler,
    verifier: &Verifier,
    message: &mut T,
    ctx: &RequestContext,
    ignore: &[&str],
) -> Result<(), HandlerError> {
    let value = crate::encode(Protocol::V1b17, &*message)
        .map_err(|e| HandlerError::bad_request(format!("{}: {e}", T::NAME)))?;
    admit(handler, verifier, &value, ctx, ignore).await?;
    message.clear_envelope();
    Ok(())
}

/// `task` as a 1.0b17 listener hands it out: its 1.0b17 JSON, stamped with the send
/// time (unless it has one) and, when the orchestrator has a task key, signed (`sig`,
/// [`envelope::sign_task`]).
pub fn task_for_worker(
    task: &rxon_core::TaskPayload,
    key: Option<&str>,
) -> Result<serde_json::Map<String, Value>, WireError> {
    let Value::Object(mut value) = crate::encode(Protocol::V1b17, task)? else {
        return Err(WireError::invalid("TaskPayload is not a JSON object"));
    };
    if let Some(key) = key {
        // A signed task carries the time it was signed (unless the handler set one).
        value
            .entry("timestamp")
            .or_insert_with(|| Value::from(envelope::unix_now()));
        envelope::sign_task(&mut value, key)?;
    }
    Ok(value)
}

/// A worker's check of a 1.0b17 task's `sig` (its JSON as received), when it holds the
/// orchestrator's task key: a task without a signature passes unless `require` is
/// set, one whose signature does not verify never does. The error names the task.
pub fn check_task(
    raw: &Value,
    key: Option<&str>,
    require: bool,
) -> Result<(), rxon_core::RxonError> {
    let Some(key) = key else {
        return Ok(());
    };
    let why = match raw.get("sig").filter(|s| !s.is_null()) {
        None if !require => return Ok(()),
        None => "it carries no signature",
        Some(_) if envelope::verify_task(raw, key) => return Ok(()),
        Some(_) => "its signature does not verify",
    };
    let task_id = raw.get("task_id").and_then(Value::as_str).unwrap_or("?");
    Err(
        rxon_core::RxonError::protocol(format!("task {task_id} refused: {why}"))
            .with_detail("task_id", task_id),
    )
}

/// [`task_for_worker`] for a transport that carries the model (WebSocket, gRPC): the
/// task with its `timestamp` and `sig` set.
pub fn signed_task(
    task: &rxon_core::TaskPayload,
    key: &str,
) -> Result<rxon_core::TaskPayload, WireError> {
    crate::decode(
        Protocol::V1b17,
        Value::Object(task_for_worker(task, Some(key))?),
    )
}

/// [`check_task`] for a task a transport decoded into the model: its 1.0b17 JSON is
/// what the orchestrator signed ([`signed_task`]). Only 1.0b17 tasks are signed: a
/// task received in `protocol` 1.0b3 is not checked, as on HTTP.
pub fn check_task_message(
    task: &rxon_core::TaskPayload,
    protocol: Protocol,
    key: Option<&str>,
    require: bool,
) -> Result<(), rxon_core::RxonError> {
    if key.is_none() || !protocol.signs() {
        return Ok(());
    }
    let raw = crate::encode(Protocol::V1b17, task)
        .map_err(|e| rxon_core::RxonError::protocol(format!("the task: {e}")))?;
    check_task(&raw, key, require)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxon_core::{GpuInfo, Heartbeat, Resources, SkillInfo, TaskResult, WorkerRegistration};

    /// What a transport that carries the model sends is what was signed: the 1.0b17
    /// JSON of a sealed message read back and written again verifies, for messages
    /// whose 1.0b17 form is derived from their 1.0b3 fields (resources, load).
    #[test]
    fn a_sealed_model_verifies_after_its_round_trip() {
        let registration = WorkerRegistration {
            worker_id: "w-1".into(),
            supported_skills: SkillInfo::list(["echo"]),
            resources: Resources {
                cpu_cores: 16,
                max_concurrent_tasks: 2,
                gpu_info: Some(GpuInfo {
                    model: "A100".into(),
                    vram_gb: 80,
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let heartbeat = Heartbeat {
            worker_id: "w-1".into(),
            status: "busy".into(),
            load: 0.5,
            current_tasks: vec!["t".into()],
            ..Default::default()
        };
        let task = rxon_core::TaskPayload {
            job_id: "j".into(),
            task_id: "t".into(),
            task_type: "echo".into(),
            ..Default::default()
        };
        let result = TaskResult::success(&task, "w-1", rxon_core::map! {"x": 1.5});
        let verifier = Verifier::new(16);
        let check =
            |value: Value| verifier.check_with(&value, "w-1", Some("k"), envelope::unix_now(), &[]);
        let sealed = seal_message(&registration, "k", "w-1", &[]).unwrap();
        let again: WorkerRegistration = crate::decode(
            Protocol::V1b17,
            crate::encode(Protocol::V1b17, &sealed).unwrap(),
        )
        .unwrap();
        assert_eq!(
            check(crate::encode(Protocol::V1b17, &again).unwrap()),
            Ok(())
        );
        let sealed = seal_message(&heartbeat, "k", "w-1", &[]).unwrap();
        assert_eq!(
            check(crate::encode(Protocol::V1b17, &sealed).unwrap()),
            Ok(())
        );
        let sealed = seal_message(&result, "k", "w-1", &[]).unwrap();
        let value = crate::encode(Protocol::V1b17, &sealed).unwrap();
        assert_eq!(check(value.clone()), Ok(()));
        assert!(
            check(value).is_err(),
            "the same sealed message again is a replay"
        );
        let mut forged = sealed.clone();
        forged.data = Some(rxon_core::map! {"x": 2});
        assert!(check(crate::encode(Protocol::V1b17, &forged).unwrap()).is_err());
    }
}
