//! The 1.0b3 dialect: every message against JSON written the way the Python reference
//! 1.0b3 writes it (`orjson.dumps(to_dict(namedtuple))`: every field present, unset
//! ones as `null`).

use rxon_core::*;
use rxon_wire::{Wire, decode, encode};
use serde_json::{Value as Json, json};
use std::fmt::Debug;

const P: Protocol = Protocol::V1b3;

/// Decodes the Python JSON, checks it against `expected`, re-encodes, and checks that
/// the encoding equals the Python JSON with its `null` fields omitted, and decodes back.
fn check<T>(python: Json, expected: &T)
where
    T: Wire + PartialEq + Debug,
{
    let decoded: T = decode(P, python.clone()).expect("decode python json");
    assert_eq!(&decoded, expected);
    let encoded = encode(P, &decoded).unwrap();
    assert_eq!(
        encoded,
        strip_nulls(python),
        "encoding omits unset optionals"
    );
    let again: T = decode(P, encoded).unwrap();
    assert_eq!(&again, expected);
}

fn strip_nulls(v: Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Adds unknown keys at the top level: decoding must still give `expected`.
fn check_unknown_fields_ignored<T>(python: Json, expected: &T)
where
    T: Wire + PartialEq + Debug,
{
    let mut with_extra = python;
    let obj = with_extra.as_object_mut().unwrap();
    obj.insert("added_in_1_1".into(), json!({"nested": [1, 2, null]}));
    obj.insert("z_flag".into(), json!(true));
    let decoded: T = decode(P, with_extra).unwrap();
    assert_eq!(&decoded, expected);
}

fn map(v: Json) -> Map {
    decode(P, v).unwrap()
}

fn registration() -> (Json, WorkerRegistration) {
    let python = json!({
        "worker_id": "gpu-01",
        "worker_type": "gpu",
        "supported_skills": ["resize", "transcode"],
        "resources": {"max_concurrent_tasks": 4, "cpu_cores": 16,
                      "gpu_info": {"model": "A100", "vram_gb": 80}},
        "installed_software": {"ffmpeg": "6.1"},
        "installed_models": [{"name": "whisper", "version": "3"}],
        "capabilities": {"hostname": "node-7", "ip_address": "10.0.0.7",
                         "cost_per_skill": {"resize": 0.5, "transcode": 2.0},
                         "s3_config_hash": null, "extra": {"zone": "eu-1", "spot": true}}
    });
    let rust = WorkerRegistration {
        worker_id: "gpu-01".into(),
        worker_type: "gpu".into(),
        supported_skills: SkillInfo::list(["resize", "transcode"]),
        resources: Resources {
            max_concurrent_tasks: 4,
            cpu_cores: 16,
            gpu_info: Some(GpuInfo {
                model: "A100".into(),
                vram_gb: 80,
            }),
            ..Default::default()
        },
        installed_software: [("ffmpeg".to_string(), "6.1".to_string())].into(),
        installed_artifacts: vec![InstalledArtifact::new("whisper", "3")],
        capabilities: WorkerCapabilities {
            hostname: "node-7".into(),
            ip_address: "10.0.0.7".into(),
            cost_per_skill: [("resize".to_string(), 0.5), ("transcode".to_string(), 2.0)].into(),
            s3_config_hash: None,
            extra: Some(map(json!({"zone": "eu-1", "spot": true}))),
        },
        ..Default::default()
    };
    (python, rust)
}

#[test]
fn worker_registration() {
    let (python, rust) = registration();
    check(python.clone(), &rust);
    check_unknown_fields_ignored(python, &rust);
}

#[test]
fn resources_without_gpu_and_missing_optional_keys() {
    let (mut python, mut rust) = registration();
    python["resources"] = json!({"max_concurrent_tasks": 1, "cpu_cores": 2, "gpu_info": null});
    rust.resources = Resources {
        max_concurrent_tasks: 1,
        cpu_cores: 2,
        ..Default::default()
    };
    check(python.clone(), &rust);
    // Absence is the same as null.
    python["resources"] = json!({"max_concurrent_tasks": 1, "cpu_cores": 2});
    let absent: WorkerRegistration = decode(P, python).unwrap();
    assert_eq!(absent, rust);
}

#[test]
fn one_point_zero_b3_requires_every_field_it_always_sends() {
    let (python, _) = registration();
    for key in [
        "worker_type",
        "supported_skills",
        "resources",
        "installed_models",
        "capabilities",
    ] {
        let mut missing = python.clone();
        missing.as_object_mut().unwrap().remove(key);
        let err = decode::<WorkerRegistration>(P, missing).unwrap_err();
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    // Skill objects are 1.0b17's: a 1.0b3 registration has names.
    let mut objects = python;
    objects["supported_skills"] = json!([{"name": "resize"}]);
    assert!(decode::<WorkerRegistration>(P, objects).is_err());
}

#[test]
fn task_payload() {
    let python = json!({
        "job_id": "job-1", "task_id": "task-1", "type": "resize",
        "params": {"width": 640, "ratio": 1.5, "name": "a.png", "tags": ["x", null],
                   "nested": {"deep": {"deeper": -3}}},
        "tracing_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "params_metadata": {"video": {"uri": "s3://bucket/in/a.mp4", "size": 1048576, "etag": "\"abc\""}}
    });
    let rust = TaskPayload {
        job_id: "job-1".into(),
        task_id: "task-1".into(),
        task_type: "resize".into(),
        params: map(
            json!({"width": 640, "ratio": 1.5, "name": "a.png", "tags": ["x", null],
                           "nested": {"deep": {"deeper": -3}}}),
        ),
        tracing_context: [(
            "traceparent".to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        )]
        .into(),
        params_metadata: Some(
            [(
                "video".to_string(),
                FileMetadata {
                    uri: "s3://bucket/in/a.mp4".into(),
                    size: 1_048_576,
                    etag: Some("\"abc\"".into()),
                    metadata: None,
                },
            )]
            .into(),
        ),
        ..Default::default()
    };
    assert_eq!(rust.params["width"].as_u64(), Some(640));
    assert_eq!(rust.params["nested"].depth(), 2);
    check(python.clone(), &rust);
    check_unknown_fields_ignored(python, &rust);
}

#[test]
fn task_payload_missing_required_field_is_an_error() {
    for p in [Protocol::V1b3, Protocol::V1b17] {
        let err = decode::<TaskPayload>(
            p,
            json!({
                "job_id": "j", "task_id": "t", "params": {}, "tracing_context": {}
            }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing field `type`"), "{err}");
        // A wrong type is an error too, not a silent default.
        assert!(
            decode::<TaskPayload>(
                p,
                json!({
                    "job_id": "j", "task_id": "t", "type": "x", "params": [], "tracing_context": {}
                })
            )
            .is_err()
        );
    }
    // 1.0b3 requires params and tracing_context; 1.0b17 does not.
    let bare = json!({"job_id": "j", "task_id": "t", "type": "x"});
    assert!(decode::<TaskPayload>(P, bare.clone()).is_err());
    assert!(decode::<TaskPayload>(Protocol::V1b17, bare).is_ok());
}

#[test]
fn task_result_success_failure_cancelled() {
    let success = json!({
        "job_id": "j", "task_id": "t", "worker_id": "w", "status": "success",
        "data": {"out": "ok", "n": 3}, "error": null,
        "data_metadata": {"report": {"uri": "s3://b/out/r.json", "size": 12, "etag": null}}
    });
    let rust = TaskResult {
        job_id: "j".into(),
        task_id: "t".into(),
        worker_id: "w".into(),
        status: TaskStatus::Success,
        data: Some(map(json!({"out": "ok", "n": 3}))),
        error: None,
        data_metadata: Some(
            [(
                "report".to_string(),
                FileMetadata {
                    uri: "s3://b/out/r.json".into(),
                    size: 12,
                    etag: None,
                    metadata: None,
                },
            )]
            .into(),
        ),
        ..Default::default()
    };
    check(success.clone(), &rust);
    check_unknown_fields_ignored(success, &rust);

    let failure = json!({
        "job_id": "j", "task_id": "t", "worker_id": "w", "status": "failure", "data": null,
        "error": {"code": "TIMEOUT_ERROR", "message": "took too long", "details": {"limit_s": 30}},
        "data_metadata": null
    });
    let rust = TaskResult {
        status: TaskStatus::Failure,
        data: None,
        error: Some(TaskError {
            code: ErrorCode::Timeout,
            message: "took too long".into(),
            details: Some(map(json!({"limit_s": 30}))),
        }),
        data_metadata: None,
        ..rust
    };
    check(failure, &rust);

    let cancelled = json!({"job_id": "j", "task_id": "t", "worker_id": "w",
                           "status": "cancelled", "data": null, "error": null, "data_metadata": null});
    let task = TaskPayload {
        job_id: "j".into(),
        task_id: "t".into(),
        ..Default::default()
    };
    check(cancelled, &TaskResult::cancelled(&task, "w"));
}

#[test]
fn unknown_status_and_error_code_round_trip() {
    let python = json!({
        "job_id": "j", "task_id": "t", "worker_id": "w", "status": "partial",
        "error": {"code": "QUOTA_ERROR_V2", "message": "m", "details": null}
    });
    let decoded: TaskResult = decode(P, python.clone()).unwrap();
    assert_eq!(decoded.status, TaskStatus::Other("partial".into()));
    let code = &decoded.error.as_ref().unwrap().code;
    assert_eq!(code, &ErrorCode::Other("QUOTA_ERROR_V2".into()));
    assert_eq!(encode(P, &decoded).unwrap(), strip_nulls(python));
}

#[test]
fn heartbeat() {
    let python = json!({
        "worker_id": "w", "status": "busy", "load": 0.75, "current_tasks": ["t1", "t2"],
        "supported_skills": ["resize"], "hot_cache": ["model-a"],
        "skill_dependencies": {"resize": ["model-a"]}, "hot_skills": null
    });
    let rust = Heartbeat {
        worker_id: "w".into(),
        status: "busy".into(),
        load: 0.75,
        current_tasks: vec!["t1".into(), "t2".into()],
        supported_skills: Some(SkillInfo::list(["resize"])),
        hot_cache: vec!["model-a".into()],
        skill_dependencies: Some([("resize".to_string(), vec!["model-a".to_string()])].into()),
        ..Default::default()
    };
    check(python.clone(), &rust);
    check_unknown_fields_ignored(python, &rust);
    // `hot_skills` unset is omitted, never sent as null (orchestrators reject null there).
    let text = encode(P, &rust).unwrap().to_string();
    assert!(!text.contains("hot_skills"), "{text}");
    assert!(!text.contains("null"), "{text}");
}

#[test]
fn token_response_progress_and_command() {
    check(
        json!({"access_token": "sts-1", "expires_in": 3600, "worker_id": "w"}),
        &TokenResponse {
            access_token: "sts-1".into(),
            expires_in: 3600,
            worker_id: "w".into(),
            ..Default::default()
        },
    );
    let progress = json!({"event": "progress_update", "task_id": "t", "job_id": "j",
                          "progress": 0.5, "message": "half way"});
    let mut p = ProgressUpdatePayload::new("t", "j", 0.5);
    p.message = Some("half way".into());
    check(progress.clone(), &p);
    check_unknown_fields_ignored(progress, &p);

    let cmd = json!({"command": "cancel_task", "task_id": "t-1", "job_id": "j-1", "params": null});
    let rust = WorkerCommand::cancel_task("t-1", Some("j-1".into()));
    check(cmd.clone(), &rust);
    check_unknown_fields_ignored(cmd, &rust);
    let future: WorkerCommand =
        decode(P, json!({"command": "pause_task", "params": {"for_s": 5}})).unwrap();
    assert_eq!(future.command, CommandName::Other("pause_task".into()));
    assert_eq!(future.task_id, None);
}

#[test]
fn capabilities_accept_integer_prices() {
    let (mut python, _) = registration();
    python["capabilities"] =
        json!({"hostname": "h", "ip_address": "::1", "cost_per_skill": {"a": 1}});
    let reg: WorkerRegistration = decode(P, python).unwrap();
    assert_eq!(
        reg.capabilities.cost_per_skill["a"], 1.0,
        "an integer price decodes as a float"
    );
}

#[test]
fn replies_as_orchestrators_send_them() {
    let reg: RegisterReply = decode(
        P,
        json!({"status": "registered", "version": "1.0b3", "warning": null, "region": "eu"}),
    )
    .unwrap();
    assert_eq!(reg.status, "registered");
    assert_eq!(reg.version.as_deref(), Some("1.0b3"));
    assert_eq!(reg.warning, None);
    assert_eq!(reg.extra.get("region").and_then(Value::as_str), Some("eu"));
    let empty: RegisterReply = decode(P, json!({})).unwrap();
    assert_eq!(empty, RegisterReply::default());

    let ok: ResultOutcome = decode(P, json!({"status": "ok"})).unwrap();
    assert!(ok.is_accepted());
    let accepted: ResultOutcome = decode(P, json!({"status": "accepted", "job_id": "j"})).unwrap();
    assert!(accepted.is_accepted());
    for reason in IgnoredReason::KNOWN {
        let ignored: ResultOutcome = decode(
            P,
            json!({"status": "ignored", "reason": reason.as_str(), "message": "m"}),
        )
        .unwrap();
        assert_eq!(ignored, ResultOutcome::ignored(reason.clone(), "m"));
    }
    let unknown: ResultOutcome =
        decode(P, json!({"status": "ignored", "reason": "job_paused"})).unwrap();
    assert_eq!(
        unknown.ignored_reason(),
        Some(&IgnoredReason::Other("job_paused".into()))
    );
    let encoded = encode(
        P,
        &ResultOutcome::ignored(IgnoredReason::StaleTask, "moved"),
    )
    .unwrap();
    assert_eq!(
        encoded,
        json!({"status": "ignored", "reason": "stale_task", "message": "moved"})
    );
    assert_eq!(
        encode(P, &ResultOutcome::Accepted).unwrap(),
        json!({"status": "accepted"})
    );

    let hb: HeartbeatReply = decode(
        P,
        json!({"status": "ok", "cancel_task_ids": ["t1"], "require_full_sync": true}),
    )
    .unwrap();
    assert_eq!(hb.cancel_task_ids, vec!["t1".to_string()]);
    assert!(hb.require_full_sync);
    assert_eq!(hb.extra.get("status").and_then(Value::as_str), Some("ok"));
    let nulls: HeartbeatReply = decode(
        P,
        json!({"cancel_task_ids": null, "require_full_sync": null}),
    )
    .unwrap();
    assert_eq!(nulls, HeartbeatReply::default());
}
