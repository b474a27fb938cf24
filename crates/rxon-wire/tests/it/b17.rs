//! The 1.0b17 dialect (msgspec semantics, as `rxon==1.0b17` encodes and decodes) and
//! the signed envelope.

use rxon_core::*;
use rxon_wire::envelope::{self, Refusal, Verifier};
use rxon_wire::{decode, encode};
use serde_json::{Value as Json, json};

const P: Protocol = Protocol::V1b17;

#[test]
fn the_sdks_registration_decodes_onto_the_model() {
    // As avtomatika-worker 1.0b20 sends it (seen on the wire), plus its envelope.
    let sdk = json!({
        "worker_id": "w", "worker_type": "cpu",
        "supported_skills": [{"name": "echo", "input_schema": {"type": "object"}}],
        "resources": {"properties": {"cpu_cores": 4, "ram_gb": 0}},
        "installed_artifacts": [{"name": "whisper"}],
        "capabilities": {"hostname": "h", "extra": {"websockets": true}},
        "timestamp": 1700000000, "security": {"signature": "ab", "signer_id": "w"},
        "unknown_key": [1]
    });
    let reg: WorkerRegistration = decode(P, sdk).unwrap();
    assert_eq!(reg.supported_skills[0].name, "echo");
    assert_eq!(
        reg.supported_skills[0].input_schema,
        Some(value!({"type": "object"}).as_object().unwrap().clone())
    );
    assert_eq!(
        reg.supported_skills[0].schema_dialect, "json-schema",
        "default applied"
    );
    assert_eq!(reg.resources.cpu_cores, 4, "read back from properties");
    assert_eq!(
        reg.installed_artifacts[0].version, "unknown",
        "default applied"
    );
    assert_eq!(reg.capabilities.ip_address, "0.0.0.0", "default applied");
    assert_eq!(reg.timestamp, Some(1_700_000_000));
    assert_eq!(reg.security.unwrap().signer_id.as_deref(), Some("w"));
    // Only worker_id is required.
    let bare: WorkerRegistration = decode(P, json!({"worker_id": "w"})).unwrap();
    assert_eq!(bare.worker_type, "generic");
    assert!(decode::<WorkerRegistration>(P, json!({"worker_type": "x"})).is_err());
}

#[test]
fn registrations_are_written_as_the_reference_writes_them() {
    let reg = WorkerRegistration {
        worker_id: "w".into(),
        worker_type: "gpu".into(),
        supported_skills: SkillInfo::list(["echo"]),
        resources: Resources {
            max_concurrent_tasks: 2,
            cpu_cores: 8,
            gpu_info: Some(GpuInfo {
                model: "A100".into(),
                vram_gb: 80,
            }),
            ..Default::default()
        },
        installed_artifacts: vec![InstalledArtifact::new("m", "unknown")],
        ..Default::default()
    };
    let v = encode(P, &reg).unwrap();
    assert_eq!(
        v,
        json!({
            "worker_id": "w", "worker_type": "gpu",
            "supported_skills": [{"name": "echo"}],
            "resources": {
                "devices": [{"type": "gpu", "model": "A100", "properties": {"vram_gb": 80}}],
                "properties": {"cpu_cores": 8, "max_concurrent_tasks": 2}
            },
            "installed_artifacts": [{"name": "m"}]
        })
    );
    let back: WorkerRegistration = decode(P, v).unwrap();
    assert_eq!(back.resources.cpu_cores, 8);
    assert_eq!(back.resources.max_concurrent_tasks, 2);
    assert_eq!(back.resources.gpu_info, reg.resources.gpu_info);
    assert_eq!(back.supported_skills, reg.supported_skills);
}

#[test]
fn results_leave_defaults_out_and_read_them_back() {
    let task = TaskPayload {
        job_id: "j".into(),
        task_id: "t".into(),
        ..Default::default()
    };
    let mut ok = TaskResult::success(&task, "w", map! {"x": 1.0});
    ok.costs = Some(map! {"execution_time_seconds": 0.25});
    let v = encode(P, &ok).unwrap();
    assert_eq!(
        v,
        json!({"job_id": "j", "task_id": "t", "worker_id": "w", "data": {"x": 1},
               "costs": {"execution_time_seconds": 0.25}}),
        "no status for a success, integral floats as integers"
    );
    let back: TaskResult = decode(P, v).unwrap();
    assert_eq!(back.status, TaskStatus::Success);
    // A failure as the SDK sends it; worker_id may be absent.
    let f: TaskResult = decode(
        P,
        json!({"job_id": "j", "task_id": "t", "status": "failure",
        "data": {}, "error": {"code": "CONTRACT_VIOLATION_ERROR", "message": "m"}}),
    )
    .unwrap();
    assert_eq!(f.error.unwrap().code, ErrorCode::ContractViolation);
    assert_eq!(f.worker_id, "");
}

#[test]
fn tasks_from_avtomatika_decode_with_a_float_deadline_and_extra_keys() {
    let t: TaskPayload = decode(
        P,
        json!({
            "job_id": "j", "params": {"a": 1}, "priority": 0, "sig": "ab", "step": 1,
            "task_id": "task-1", "timestamp": 1700000000, "tracing_context": {}, "type": "echo",
            "deadline": 1700000030.75, "skill_version": "1", "skill_type": null
        }),
    )
    .unwrap();
    assert_eq!(t.deadline, Some(1_700_000_030));
    assert_eq!(t.step, 1);
    assert_eq!(t.sig.as_deref(), Some("ab"));
    assert_ne!(t.task_id, t.job_id);
    assert!(
        decode::<TaskPayload>(
            P,
            json!({"job_id": "j", "task_id": "t", "type": "x",
        "deadline": "soon"})
        )
        .is_err()
    );
}

#[test]
fn integers_stay_strict_and_floats_accept_integers() {
    let token = json!({"access_token": "a", "expires_in": 3600.0, "worker_id": "w"});
    assert!(
        decode::<TokenResponse>(P, token).is_err(),
        "an int field rejects a float"
    );
    let t: TokenResponse = decode(
        P,
        json!({"access_token": "a", "expires_in": 3600,
        "worker_id": "w", "refresh_token": "r"}),
    )
    .unwrap();
    assert_eq!(t.refresh_token.as_deref(), Some("r"));
    let hb: Heartbeat = decode(
        P,
        json!({"worker_id": "w", "status": "idle",
        "usage": {"cpu_load_percent": 50, "ram_used_gb": 1}}),
    )
    .unwrap();
    assert_eq!(hb.usage.as_ref().unwrap().cpu_load_percent, 50.0);
    assert_eq!(hb.load, 0.5, "load read from usage");
}

#[test]
fn heartbeats_drop_the_1_0b3_fields_and_keep_no_nulls() {
    let hb = Heartbeat {
        worker_id: "w".into(),
        status: "busy".into(),
        load: 0.5,
        current_tasks: vec!["t".into()],
        hot_cache: vec!["x".into()],
        metadata: Some(map! {"a": null, "b": [null, 2.0]}),
        ..Default::default()
    };
    let v = encode(P, &hb).unwrap();
    assert_eq!(
        v,
        json!({"worker_id": "w", "status": "busy", "current_tasks": ["t"],
               "usage": {"cpu_load_percent": 50}, "metadata": {"b": [null, 2]}})
    );
}

#[test]
fn progress_travels_as_an_event_and_back() {
    let mut p = ProgressUpdatePayload::new("t", "j", 0.5);
    p.message = Some("half".into());
    let e = WorkerEventPayload::progress(&p, "w", "e-1");
    assert_eq!(
        encode(P, &e).unwrap(),
        json!({"event_id": "e-1", "worker_id": "w", "origin_worker_id": "w",
               "event_type": "progress", "payload": {"progress": 0.5, "message": "half"},
               "origin_task_id": "t", "target_job_id": "j", "target_task_id": "t"})
    );
    assert_eq!(e.as_progress(), Some(p));
    let other = WorkerEventPayload {
        event_type: "log".into(),
        ..e
    };
    assert_eq!(other.as_progress(), None);
}

fn sealed(secret: &str, now: i64) -> Json {
    let mut m = encode(
        P,
        &Heartbeat {
            worker_id: "w".into(),
            status: "idle".into(),
            ..Default::default()
        },
    )
    .unwrap()
    .as_object()
    .unwrap()
    .clone();
    envelope::seal(&mut m, secret, "w", now, &[]).unwrap();
    Json::Object(m)
}

#[test]
fn sealed_messages_verify_once() {
    let v = Verifier::default();
    let msg = sealed("k", 1_000);
    assert!(msg["nonce"].as_str().is_some_and(|n| n.len() == 32));
    assert_eq!(msg["security"]["signer_id"], "w");
    assert_eq!(v.check(&msg, "w", "k", 1_030, &[]), Ok(()));
    assert_eq!(v.check(&msg, "w", "k", 1_031, &[]), Err(Refusal::Replay));
    // Two seals of the same content in the same second differ (fresh nonce).
    assert_ne!(
        sealed("k", 1_000)["security"],
        sealed("k", 1_000)["security"]
    );
}

#[test]
fn every_broken_envelope_is_refused_with_the_reference_reason() {
    let v = Verifier::default();
    let now = 5_000;
    let good = sealed("k", now);
    let check = |m: &Json, worker: &str, key: &str, at: i64| v.check(m, worker, key, at, &[]);

    assert_eq!(
        check(&sealed("k", now), "w", "k", now + 61),
        Err(Refusal::Expired)
    );
    assert_eq!(
        check(&sealed("k", now), "w", "k", now - 61),
        Err(Refusal::Expired)
    );
    assert_eq!(
        check(&sealed("wrong", now), "w", "k", now),
        Err(Refusal::BadSignature)
    );
    let mut tampered = good.clone();
    tampered["status"] = json!("busy");
    assert_eq!(check(&tampered, "w", "k", now), Err(Refusal::BadSignature));
    let mut no_ts = sealed("k", now);
    no_ts.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(check(&no_ts, "w", "k", now), Err(Refusal::MissingTimestamp));
    let mut no_sec = sealed("k", now);
    no_sec.as_object_mut().unwrap().remove("security");
    assert_eq!(check(&no_sec, "w", "k", now), Err(Refusal::MissingSecurity));
    let mut no_sig = sealed("k", now);
    no_sig["security"] = json!({"signer_id": "w"});
    assert_eq!(
        check(&no_sig, "w", "k", now),
        Err(Refusal::MissingSignature)
    );
    assert_eq!(
        check(&sealed("k", now), "other", "k", now),
        Err(Refusal::SignerMismatch)
    );
    let mut upper = sealed("k", now);
    let sig = upper["security"]["signature"]
        .as_str()
        .unwrap()
        .to_uppercase();
    upper["security"]["signature"] = json!(sig);
    assert_eq!(
        check(&upper, "w", "k", now),
        Err(Refusal::BadSignature),
        "hex is compared as text"
    );
    assert_eq!(
        check(&good, "w", "k", now),
        Ok(()),
        "forged copies did not spend its nonce"
    );
    assert_eq!(check(&good, "w", "k", now), Err(Refusal::Replay));
}

#[test]
fn the_replay_cache_is_bounded() {
    let v = Verifier::new(3);
    for i in 0..10 {
        assert_eq!(
            v.check(&sealed("k", 100 + i), "w", "k", 100 + i, &[]),
            Ok(())
        );
        assert!(v.remembered() <= 3);
    }
    // Expired nonces are forgotten as time passes.
    assert_eq!(v.check(&sealed("k", 1_000), "w", "k", 1_000, &[]), Ok(()));
    assert_eq!(v.remembered(), 1);
}

#[test]
fn task_signatures_leave_sig_out() {
    let task = TaskPayload {
        job_id: "j".into(),
        task_id: "t".into(),
        task_type: "echo".into(),
        timestamp: Some(1),
        ..Default::default()
    };
    let v = encode(P, &task).unwrap();
    let sig = envelope::signature(&v, "orch", envelope::TASK_UNSIGNED).unwrap();
    let mut signed = v.clone();
    signed["sig"] = json!(sig);
    assert!(envelope::verify(
        &signed,
        &sig,
        "orch",
        envelope::TASK_UNSIGNED
    ));
    assert!(!envelope::verify(
        &signed,
        &sig,
        "other",
        envelope::TASK_UNSIGNED
    ));
    signed["params"] = json!({"x": 1});
    assert!(!envelope::verify(
        &signed,
        &sig,
        "orch",
        envelope::TASK_UNSIGNED
    ));
}

#[test]
fn a_task_signature_covers_what_the_reference_worker_re_encodes() {
    // Unknown keys (added after signing), step 0 and sig fall out; a float deadline stays.
    let received = json!({"job_id": "j", "task_id": "t", "type": "echo", "params": {"a": 1.5},
        "tracing_context": {}, "priority": 0, "step": 0, "depth": 2, "deadline": 1700000030.75,
        "timestamp": 1, "skill_version": "1", "sig": "00"});
    let want = json!({"job_id": "j", "task_id": "t", "type": "echo", "params": {"a": 1.5},
        "tracing_context": {}, "priority": 0, "depth": 2, "deadline": 1700000030.75, "timestamp": 1});
    let sig = envelope::signature(&want, "k", &[]).unwrap();
    let mut signed = received.clone();
    signed["sig"] = json!(sig);
    assert!(envelope::verify_task(&signed, "k"));
    assert_eq!(
        envelope::task_signed_view(&signed),
        json!({"job_id": "j", "task_id": "t", "type": "echo", "params": {"a": 1.5},
            "tracing_context": {}, "priority": 0, "depth": 2, "deadline": 1700000030.75,
            "timestamp": 1, "sig": sig})
    );
    // With blob references (the slow path) the rules are the same.
    let mut with_files = signed.clone();
    with_files["params_metadata"] = json!({"in": {"uri": "s3://b/k", "size": 0, "etag": null}});
    let mut want_files = want.clone();
    want_files["params_metadata"] = json!({"in": {"uri": "s3://b/k"}});
    with_files["sig"] = json!(envelope::signature(&want_files, "k", &[]).unwrap());
    assert!(envelope::verify_task(&with_files, "k"));
}
