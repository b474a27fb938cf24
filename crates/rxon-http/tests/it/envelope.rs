//! The 1.0b17 signed envelope on the listener: every broken envelope is refused with
//! 403 and the reference's message, a good one passes once, 1.0b3 requests need none,
//! and tasks handed to 1.0b17 workers carry a `sig` that verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rxon_core::*;
use rxon_http::HttpService;
use rxon_orchestrator::Orchestrator;
use rxon_wire::envelope::{self, unix_now};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "static-token";
const ORCHESTRATOR_KEY: &str = "orchestrator-secret";

fn service() -> (Orchestrator, HttpService) {
    let orch = Orchestrator::builder()
        .token(TOKEN)
        .task_signing_key(ORCHESTRATOR_KEY)
        .build();
    (orch.clone(), HttpService::new(Arc::new(orch)))
}

async fn call(
    service: &HttpService,
    method: &str,
    target: &str,
    version: Option<&str>,
    body: &[u8],
) -> (u16, Json) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(target)
        .header("X-Worker-Token", TOKEN)
        .header("Content-Type", "application/json");
    if let Some(v) = version {
        request = request
            .header("X-RXON-Version", v)
            .header("X-Worker-ID", "w-1");
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), service.handle(request))
        .await
        .expect("answered in bounded time");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

fn registration() -> serde_json::Map<String, Json> {
    let reg = WorkerRegistration {
        worker_id: "w-1".into(),
        supported_skills: SkillInfo::list(["echo"]),
        ..Default::default()
    };
    match rxon_wire::encode(Protocol::V1b17, &reg).unwrap() {
        Json::Object(m) => m,
        _ => unreachable!(),
    }
}

fn sealed(key: &str, at: i64) -> serde_json::Map<String, Json> {
    let mut m = registration();
    envelope::seal(&mut m, key, "w-1", at, &[]).unwrap();
    m
}

fn bytes(m: &serde_json::Map<String, Json>) -> Vec<u8> {
    serde_json::to_vec(m).unwrap()
}

const REGISTER: &str = "/_worker/workers/register";

/// A service whose worker w-1 registered with a signed 1.0b17 registration, and one
/// queued task `task-1` of `job-1` with `params`.
async fn registered_with_a_task(params: Map) -> HttpService {
    let (orch, s) = service();
    let (status, body) = call(
        &s,
        "POST",
        REGISTER,
        Some("1.0b17"),
        &bytes(&sealed(TOKEN, unix_now())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    orch.enqueue(TaskPayload {
        job_id: "job-1".into(),
        task_id: "task-1".into(),
        task_type: "echo".into(),
        params,
        ..Default::default()
    })
    .await
    .unwrap();
    s
}

#[tokio::test]
async fn broken_envelopes_get_403_with_the_reference_reasons() {
    let (_, s) = service();
    let v17 = Some("1.0b17");
    let refused = |reason: &str, (status, body): (u16, Json)| {
        assert_eq!(status, 403, "{reason}: {body}");
        assert_eq!(body["error"], reason);
    };

    let mut no_timestamp = registration();
    no_timestamp.insert("security".into(), json!({"signature": "00"}));
    refused(
        "Missing required timestamp for replay protection",
        call(&s, "POST", REGISTER, v17, &bytes(&no_timestamp)).await,
    );
    let mut no_security = registration();
    no_security.insert("timestamp".into(), json!(unix_now()));
    refused(
        "Missing required security context",
        call(&s, "POST", REGISTER, v17, &bytes(&no_security)).await,
    );
    // Two minutes off either way: outside the ±60 s window.
    for skew in [-120, 120] {
        refused(
            "Message timestamp expired (replay protection)",
            call(
                &s,
                "POST",
                REGISTER,
                v17,
                &bytes(&sealed(TOKEN, unix_now() + skew)),
            )
            .await,
        );
    }
    refused(
        "Invalid cryptographic signature",
        call(
            &s,
            "POST",
            REGISTER,
            v17,
            &bytes(&sealed("another-key", unix_now())),
        )
        .await,
    );
    let mut tampered = sealed(TOKEN, unix_now());
    tampered.insert("worker_type".into(), json!("gpu"));
    refused(
        "Invalid cryptographic signature",
        call(&s, "POST", REGISTER, v17, &bytes(&tampered)).await,
    );
    let mut other_signer = registration();
    envelope::seal(&mut other_signer, TOKEN, "w-2", unix_now(), &[]).unwrap();
    refused(
        "Message signer ID does not match worker ID",
        call(&s, "POST", REGISTER, v17, &bytes(&other_signer)).await,
    );

    // A good one passes once; the identical resend is a replay.
    let good = bytes(&sealed(TOKEN, unix_now()));
    let (status, body) = call(&s, "POST", REGISTER, v17, &good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "registered", "version": "1.0b17"}));
    refused(
        "Duplicate message detected (replay attack)",
        call(&s, "POST", REGISTER, v17, &good).await,
    );
}

#[tokio::test]
async fn one_point_zero_b3_requests_need_no_envelope_and_empty_heartbeats_neither() {
    let (_, s) = service();
    let b3 = serde_json::to_vec(
        &rxon_wire::encode(
            Protocol::V1b3,
            &WorkerRegistration {
                worker_id: "w-1".into(),
                supported_skills: SkillInfo::list(["echo"]),
                ..Default::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    let (status, body) = call(&s, "POST", REGISTER, None, &b3).await;
    assert_eq!((status, body["version"].clone()), (200, json!("1.0b3")));
    // An unsigned 1.0b17 heartbeat with a body is refused; without one it passes.
    let hb = br#"{"worker_id":"w-1","status":"idle"}"#;
    let (status, _) = call(&s, "PATCH", "/_worker/workers/w-1", Some("1.0b17"), hb).await;
    assert_eq!(status, 403);
    let (status, _) = call(&s, "PATCH", "/_worker/workers/w-1", Some("1.0b17"), b"").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tasks_for_1_0b17_workers_carry_a_sig_that_verifies() {
    let s = registered_with_a_task(map! {"x": 1.5}).await;
    let (status, task) = call(
        &s,
        "GET",
        "/_worker/workers/w-1/tasks/next?timeout=1",
        Some("1.0b17"),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{task}");
    let now = unix_now();
    let stamped = task["timestamp"].as_i64().unwrap();
    assert!((now - 5..=now).contains(&stamped), "{task}");
    assert!(envelope::verify_task(&task, ORCHESTRATOR_KEY), "{task}");
    assert!(!envelope::verify_task(&task, "wrong"), "{task}");
    let mut changed = task.clone();
    changed["params"]["x"] = json!(2);
    assert!(!envelope::verify_task(&changed, ORCHESTRATOR_KEY));
}

#[tokio::test]
async fn a_body_naming_another_worker_than_the_request_is_refused() {
    let (_, s) = service();
    // X-Worker-ID says w-1; the body (signed by w-1's key) says w-2.
    let mut m = registration();
    m.insert("worker_id".into(), json!("w-2"));
    envelope::seal(&mut m, TOKEN, "w-1", unix_now(), &[]).unwrap();
    let (status, body) = call(&s, "POST", REGISTER, Some("1.0b17"), &bytes(&m)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("worker_id"),
        "{body}"
    );
}

#[tokio::test]
async fn a_refused_credential_does_not_spend_the_nonce() {
    let (_, s) = service();
    let sealed = bytes(&sealed(TOKEN, unix_now()));
    let wrong = http::Request::builder()
        .method("POST")
        .uri(REGISTER)
        .header("X-Worker-Token", "wrong")
        .header("X-RXON-Version", "1.0b17")
        .header("X-Worker-ID", "w-1")
        .body(Full::new(Bytes::from(sealed.clone())))
        .unwrap();
    let response = s.handle(wrong).await;
    assert_eq!(response.status(), 401);
    // The same message with the right credential (a retry after a refresh) passes.
    let (status, body) = call(&s, "POST", REGISTER, Some("1.0b17"), &sealed).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_1_0b17_worker_cannot_be_spoken_for_in_1_0b3() {
    let s = registered_with_a_task(Map::new()).await;
    // Unsigned 1.0b3 requests for w-1 (same token) are refused: no envelope to skip.
    let result = br#"{"job_id":"job-1","task_id":"task-1","worker_id":"w-1","status":"success"}"#;
    let (status, body) = call(&s, "POST", "/_worker/tasks/result", None, result).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &s,
        "GET",
        "/_worker/workers/w-1/tasks/next?timeout=0",
        None,
        b"",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1.0b17"), "{body}");
}
