//! The built `rxon` binary as a worker of an embedded orchestrator on 127.0.0.1: each
//! skill's command gets the params, its stdout becomes the result, its stderr the
//! progress and the failure's explanation, and a cancel reaches it as SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::orchestrator::{Orchestrator, TaskState};
use rxon::{Listener, Map, TaskPayload, TaskResult, TaskStatus, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);

/// An orchestrator behind an HTTP listener on loopback.
struct Orch {
    orch: Orchestrator,
    listener: rxon::http::HttpListener,
    url: String,
}

async fn orchestrator() -> Orch {
    let orch = Orchestrator::builder().token("w-secret").build();
    let listener = rxon::http::HttpListener::bind("127.0.0.1:0".parse().unwrap());
    listener.start(Arc::new(orch.clone())).await.unwrap();
    let url = listener.endpoint().unwrap();
    Orch {
        orch,
        listener,
        url,
    }
}

/// `rxon worker` with `skills`, killed when dropped.
struct Worker(Child);

impl Worker {
    fn start(url: &str, skills: &[&str]) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rxon"));
        cmd.args([
            "worker",
            "--url",
            url,
            "--worker-id",
            "cli-1",
            "--token",
            "w-secret",
        ])
        .args(["--cancel-grace", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        for s in skills {
            cmd.args(["--skill", s]);
        }
        Worker(cmd.spawn().unwrap())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn task(id: &str, task_type: &str, params: Map) -> TaskPayload {
    TaskPayload {
        job_id: format!("job-{id}"),
        task_id: id.into(),
        task_type: task_type.into(),
        params,
        ..Default::default()
    }
}

async fn run(o: &Orch, id: &str, task_type: &str, params: Map) -> TaskResult {
    o.orch.enqueue(task(id, task_type, params)).await.unwrap();
    o.orch.wait_result(id, BOUND).await.unwrap()
}

#[tokio::test]
async fn commands_serve_skills() {
    let o = orchestrator().await;
    let _worker = Worker::start(
        &o.url,
        &[
            "echo=cat",
            r#"say=printf 'hello %s' "$RXON_TASK_ID""#,
            "env=printf '{\"params\": %s, \"job\": \"%s\"}' \"$RXON_PARAMS\" \"$RXON_JOB_ID\"",
            "fail=echo first >&2; echo 'it went wrong' >&2; exit 3",
            "later=echo busy >&2; exit 75",
            r#"steps=echo 'rxon-progress 0.5 halfway' >&2; echo '{"done": true}'"#,
        ],
    );
    let params: Map = [
        ("n".to_owned(), Value::from(7)),
        ("s".to_owned(), "é".into()),
    ]
    .into_iter()
    .collect();

    // stdin is the params; a JSON object on stdout is the data.
    let echoed = run(&o, "t-echo", "echo", params.clone()).await;
    assert_eq!(echoed.status, TaskStatus::Success, "{echoed:?}");
    assert_eq!(echoed.data.as_ref().unwrap(), &params);

    // Other output is kept as text.
    let said = run(&o, "t-say", "say", Map::new()).await;
    assert_eq!(said.status, TaskStatus::Success, "{said:?}");
    assert_eq!(said.data.unwrap()["stdout"].as_str(), Some("hello t-say"));

    // The environment carries the task.
    let env = run(&o, "t-env", "env", params.clone()).await;
    let data = env.data.unwrap();
    assert_eq!(
        data["params"].get("n").and_then(Value::as_i64),
        Some(7),
        "{data:?}"
    );
    assert_eq!(data["job"].as_str(), Some("job-t-env"));

    // A non-zero exit fails with the end of stderr; 75 is transient.
    let failed = run(&o, "t-fail", "fail", Map::new()).await;
    assert_eq!(failed.status, TaskStatus::Failure);
    let error = failed.error.unwrap();
    assert_eq!(error.code, rxon::ErrorCode::Permanent);
    assert!(
        error.message.contains("exit status: 3"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("first\nit went wrong"),
        "{}",
        error.message
    );
    let later = run(&o, "t-later", "later", Map::new()).await;
    assert_eq!(later.error.unwrap().code, rxon::ErrorCode::Transient);

    // Progress lines on stderr reach the orchestrator.
    let stepped = run(&o, "t-steps", "steps", Map::new()).await;
    assert_eq!(stepped.data.unwrap()["done"], Value::Bool(true));
    let progress = o.orch.task_progress("t-steps").await;
    assert!(
        progress
            .iter()
            .any(|p| p.progress == 0.5 && p.message.as_deref() == Some("halfway")),
        "{progress:?}"
    );
    o.listener.stop(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn a_cancel_sends_sigterm_to_the_command() {
    let o = orchestrator().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("terminated");
    let started = dir.path().join("started");
    let script = format!(
        "trap 'touch {}; exit 0' TERM; touch {}; while :; do sleep 0.05; done",
        marker.display(),
        started.display()
    );
    let _worker = Worker::start(&o.url, &[&format!("slow={script}")]);
    o.orch
        .enqueue(task("t-slow", "slow", Map::new()))
        .await
        .unwrap();
    // The command runs (bounded: 300 looks, 30 s).
    for _ in 0..300 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.exists(), "the command never started");
    assert!(matches!(
        o.orch.task_state("t-slow").await,
        Some(TaskState::Running { .. })
    ));
    o.orch.cancel("t-slow").await.unwrap();
    let result = o.orch.wait_result("t-slow", BOUND).await.unwrap();
    assert_eq!(result.status, TaskStatus::Cancelled, "{result:?}");
    assert!(marker.exists(), "the command did not get SIGTERM");
    o.listener.stop(Duration::from_secs(1)).await.unwrap();
}

#[test]
fn the_help_explains_the_contract() {
    let out = Command::new(env!("CARGO_BIN_EXE_rxon"))
        .args(["worker", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needed in [
        "--skill <NAME=COMMAND>",
        "rxon-progress",
        "SIGTERM",
        "RXON_PARAMS",
        "TRACEPARENT",
    ] {
        assert!(help.contains(needed), "{needed} missing from:\n{help}");
    }
    for (command, needed) in [
        (
            "orchestrator",
            &[
                "/admin/tasks",
                "traceparent",
                "/metrics",
                "--storage",
                "--tor",
                "X-Client-Token",
            ][..],
        ),
        (
            "probe",
            &[
                "generation",
                "--register",
                "--poll <SKILL>",
                "Exit status",
                "--json",
            ][..],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rxon"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for n in needed {
            assert!(
                help.contains(n),
                "{n} missing from `rxon {command} --help`:\n{help}"
            );
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_rxon"))
        .args(["worker", "--url", "http://127.0.0.1:1", "--worker-id", "w"])
        .args(["--skill", "no-command"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not NAME=COMMAND"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// A command sees the task, not the worker's own environment: not the worker token
/// given in `RXON_WORKER_TOKEN`, not a `TRACEPARENT` of the worker process when the
/// task carries no trace.
#[tokio::test]
async fn the_workers_secrets_and_trace_stay_out_of_commands() {
    let o = orchestrator().await;
    let skill = r#"leak=printf '{"token":"%s","tp":"%s"}' "$RXON_WORKER_TOKEN" "$TRACEPARENT""#;
    let child = Command::new(env!("CARGO_BIN_EXE_rxon"))
        .args([
            "worker",
            "--url",
            &o.url,
            "--worker-id",
            "cli-env",
            "--skill",
            skill,
        ])
        .env("RXON_WORKER_TOKEN", "w-secret")
        .env(
            "TRACEPARENT",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _worker = Worker(child);
    let result = run(&o, "t-leak", "leak", Map::new()).await;
    assert_eq!(result.status, TaskStatus::Success, "{result:?}");
    let data = result.data.unwrap();
    assert_eq!(data["token"].as_str(), Some(""), "{data:?}");
    assert_eq!(data["tp"].as_str(), Some(""), "{data:?}");
}
