//! Micro-benchmarks: message encoding and decoding (JSON and MessagePack, small and
//! 64 KiB params) and the HTTP listener's dispatch path without the network.
//!
//! `cargo bench -p rxon-bench --bench codec`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use rxon::{Heartbeat, Map, TaskPayload, TaskResult, Value};
use std::hint::black_box;
use std::sync::Arc;

fn task(param_bytes: usize) -> TaskPayload {
    let mut params = Map::new();
    params.insert("n".into(), Value::from(42u8));
    params.insert("blob".into(), Value::from("x".repeat(param_bytes)));
    TaskPayload {
        job_id: "job-1".into(),
        task_id: "task-1".into(),
        task_type: "echo".into(),
        params,
        tracing_context: [(
            "traceparent".to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        )]
        .into(),
        ..Default::default()
    }
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        worker_id: "worker-1".into(),
        status: "busy".into(),
        load: 0.5,
        current_tasks: (0..8).map(|i| format!("task-{i}")).collect(),
        supported_skills: Some(rxon::SkillInfo::list(["echo", "render"])),
        hot_cache: vec!["model-a".into()],
        ..Default::default()
    }
}

fn codecs(c: &mut Criterion) {
    for (label, size) in [("small", 16), ("64KiB", 64 * 1024)] {
        let t = task(size);
        let r = TaskResult::success(&t, "worker-1", t.params.clone());
        let mut group = c.benchmark_group(format!("codec/{label}"));
        let json = serde_json::to_vec(&t).unwrap();
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_function(BenchmarkId::new("TaskPayload", "json-encode"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&t)).unwrap())
        });
        group.bench_function(BenchmarkId::new("TaskPayload", "json-decode"), |b| {
            b.iter(|| serde_json::from_slice::<TaskPayload>(black_box(&json)).unwrap())
        });
        let msgpack = rmp_serde::to_vec_named(&t).unwrap();
        group.bench_function(BenchmarkId::new("TaskPayload", "msgpack-encode"), |b| {
            b.iter(|| rmp_serde::to_vec_named(black_box(&t)).unwrap())
        });
        group.bench_function(BenchmarkId::new("TaskPayload", "msgpack-decode"), |b| {
            b.iter(|| rmp_serde::from_slice::<TaskPayload>(black_box(&msgpack)).unwrap())
        });
        let rjson = serde_json::to_vec(&r).unwrap();
        group.bench_function(BenchmarkId::new("TaskResult", "json-encode"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&r)).unwrap())
        });
        group.bench_function(BenchmarkId::new("TaskResult", "json-decode"), |b| {
            b.iter(|| serde_json::from_slice::<TaskResult>(black_box(&rjson)).unwrap())
        });
        let rmsg = rmp_serde::to_vec_named(&r).unwrap();
        group.bench_function(BenchmarkId::new("TaskResult", "msgpack-decode"), |b| {
            b.iter(|| rmp_serde::from_slice::<TaskResult>(black_box(&rmsg)).unwrap())
        });
        group.finish();
    }
    let h = heartbeat();
    let hjson = serde_json::to_vec(&h).unwrap();
    c.bench_function("codec/Heartbeat/json-encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&h)).unwrap())
    });
    c.bench_function("codec/Heartbeat/json-decode", |b| {
        b.iter(|| serde_json::from_slice::<Heartbeat>(black_box(&hjson)).unwrap())
    });
    let hmsg = rmp_serde::to_vec_named(&h).unwrap();
    c.bench_function("codec/Heartbeat/msgpack-decode", |b| {
        b.iter(|| rmp_serde::from_slice::<Heartbeat>(black_box(&hmsg)).unwrap())
    });
}

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = task(16);
    let service = rxon::http::HttpService::new(Arc::new(rxon::testing::FixedTask(t.clone())));
    let result = bytes::Bytes::from(
        serde_json::to_vec(&TaskResult::success(&t, "worker-1", Map::new())).unwrap(),
    );
    c.bench_function("dispatch/http/poll", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let req = http::Request::get("/_worker/workers/worker-1/tasks/next?timeout=1")
                    .header("X-Worker-Token", "t")
                    .body(Full::new(bytes::Bytes::new()))
                    .unwrap();
                let resp = service.handle(req).await;
                black_box(resp.into_body().collect().await.unwrap().to_bytes())
            })
        })
    });
    c.bench_function("dispatch/http/result", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let req = http::Request::post("/_worker/tasks/result")
                    .header("X-Worker-Token", "t")
                    .body(Full::new(result.clone()))
                    .unwrap();
                let resp = service.handle(req).await;
                black_box(resp.into_body().collect().await.unwrap().to_bytes())
            })
        })
    });
}

/// The 1.0b17 envelope of one result: sealed (canonical JSON + HMAC) by the worker,
/// verified by the listener; and the check of one task's `sig`.
fn envelope(c: &mut Criterion) {
    let t = task(16);
    let mut r = TaskResult::success(&t, "worker-1", t.params.clone());
    r.costs = Some(rxon::map! {"execution_time_seconds": 0.25});
    let serde_json::Value::Object(message) = rxon_wire::encode(rxon::Protocol::V1b17, &r).unwrap()
    else {
        unreachable!()
    };
    let now = rxon_wire::envelope::unix_now();
    c.bench_function("envelope/seal result", |b| {
        b.iter(|| {
            let mut m = black_box(&message).clone();
            rxon_wire::envelope::seal(&mut m, "token", "worker-1", now, &[]).unwrap();
            m
        })
    });
    let mut sealed = message.clone();
    rxon_wire::envelope::seal(&mut sealed, "token", "worker-1", now, &[]).unwrap();
    let sealed = serde_json::Value::Object(sealed);
    let sig = sealed["security"]["signature"].as_str().unwrap().to_owned();
    c.bench_function("envelope/verify result", |b| {
        b.iter(|| {
            assert!(rxon_wire::envelope::verify(
                black_box(&sealed),
                &sig,
                "token",
                &[]
            ));
        })
    });
    let serde_json::Value::Object(mut signed) =
        rxon_wire::encode(rxon::Protocol::V1b17, &t).unwrap()
    else {
        unreachable!()
    };
    rxon_wire::envelope::sign_task(&mut signed, "orchestrator").unwrap();
    let signed = serde_json::Value::Object(signed);
    c.bench_function("envelope/verify task sig", |b| {
        b.iter(|| {
            assert!(rxon_wire::envelope::verify_task(
                black_box(&signed),
                "orchestrator"
            ))
        })
    });
}

criterion_group!(benches, codecs, dispatch, envelope);
criterion_main!(benches);
