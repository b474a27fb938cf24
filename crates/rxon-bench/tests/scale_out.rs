//! Three listener processes (`rxon-bench serve-shared`) of one orchestrator whose state
//! is in a real `redis-server` on loopback, workers spread over them through fault
//! proxies: every task ends with exactly one applied result while connections are cut,
//! one listener process is killed with SIGKILL and started again, and Redis itself is
//! killed and restarted from its append-only file.
//!
//! Sizes scale with `RXON_SOAK_TASKS` (`cargo xtask soak` sets it). Each test prints its
//! figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use rxon::orchestrator::{Orchestrator, Storage, TaskState};
use rxon::testing::faults::FaultProxy;
use rxon::testing::redis::RedisServer;
use rxon::worker::Worker;
use rxon::{Map, TaskPayload, TaskStatus, Transport, TransportOptions, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PREFIX: &str = "scale";
const LEASE: Duration = Duration::from_secs(1);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn task(id: &str) -> TaskPayload {
    TaskPayload {
        job_id: "job-scale".into(),
        task_id: id.into(),
        task_type: "work".into(),
        ..Default::default()
    }
}

/// The host side: an orchestrator on the same state, in this process.
fn host(url: &str) -> Orchestrator {
    host_on(url, PREFIX)
}

fn host_on(url: &str, prefix: &str) -> Orchestrator {
    let storage = Storage::redis(url).unwrap().with_prefix(prefix).unwrap();
    Orchestrator::builder()
        .token("bench")
        .storage(storage)
        .claim_lease(LEASE)
        .build()
}

/// A listener process on `addr` (port 0: any), and the address it listens on.
async fn listener_process(redis: &str, addr: &str) -> (Child, SocketAddr) {
    listener_process_on(redis, PREFIX, addr).await
}

async fn listener_process_on(redis: &str, prefix: &str, addr: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rxon-bench"))
        .args(["serve-shared", redis, prefix, addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("rxon-bench serve-shared starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the listener process reports its address within 30 s")
        .unwrap()
        .expect("a LISTENING line");
    let url = line.strip_prefix("LISTENING ").expect("LISTENING <url>");
    let addr = url.rsplit("//").next().unwrap().parse().unwrap();
    (child, addr)
}

/// N tasks through six workers on three listener processes, with faults: see the
/// module documentation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_redis_exactly_once_under_faults() {
    let tasks = env_or("RXON_SOAK_TASKS", 150);
    let mut redis = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let url = redis.url();
    let mut processes = Vec::new();
    let mut proxies = Vec::new();
    for _ in 0..3 {
        let (child, addr) = listener_process(&url, "127.0.0.1:0").await;
        let proxy = Arc::new(FaultProxy::start(addr).await.unwrap());
        // One connection in twenty is cut somewhere in its first 4 KiB.
        proxy.reset_share(0.05, 4096, 0x5ca1e ^ addr.port() as u64);
        processes.push((child, addr));
        proxies.push(proxy);
    }
    let host = host(&url);

    let executions = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let mut runs = Vec::new();
    for w in 0..6 {
        let mut options = TransportOptions::default();
        options.request_timeout = Duration::from_secs(5);
        options.connect_timeout = Duration::from_secs(2);
        let proxy = &proxies[w % 3];
        let transport: Arc<dyn Transport> =
            rxon::create_transport(&proxy.url("http"), &format!("w-{w}"), "bench", options)
                .unwrap();
        let worker = Worker::builder(transport)
            .max_concurrent_tasks(4)
            .poll_timeout(Duration::from_millis(500))
            .heartbeat_interval(Duration::from_millis(200))
            .handler("work", {
                let executions = executions.clone();
                move |task, _ctx| {
                    *executions
                        .lock()
                        .unwrap()
                        .entry(task.task_id.clone())
                        .or_default() += 1;
                    async move {
                        let mut data = Map::new();
                        data.insert("task".into(), Value::from(task.task_id));
                        Ok(data)
                    }
                }
            })
            .build()
            .unwrap();
        let stop = worker.shutdown_handle();
        runs.push((stop, tokio::spawn(async move { worker.run().await })));
    }

    let started = Instant::now();
    for i in 0..tasks {
        host.enqueue(task(&format!("t-{i}"))).await.unwrap();
    }
    // A third of the way: the first listener process is killed (SIGKILL) and started
    // again on its port; its workers' connections die with it.
    host.wait_for_applied_results((tasks / 3) as u64, Duration::from_secs(60))
        .await
        .expect("progress before the kill");
    let (mut first, addr) = processes.remove(0);
    first.kill().await.unwrap();
    proxies[0].reset_all();
    let (again, _) = listener_process(&url, &addr.to_string()).await;
    processes.insert(0, (again, addr));
    // Two thirds of the way: Redis is killed (SIGKILL) and restarted from its AOF.
    host.wait_for_applied_results((2 * tasks / 3) as u64, Duration::from_secs(60))
        .await
        .expect("progress before the Redis restart");
    tokio::task::block_in_place(|| redis.restart()).expect("redis restarts");
    for p in &proxies {
        p.reset_all();
    }

    let mut lost = Vec::new();
    for i in 0..tasks {
        let id = format!("t-{i}");
        match host.wait_result(&id, Duration::from_secs(90)).await {
            // The applied result is the one the handler produced for this very task.
            Ok(r)
                if r.status == TaskStatus::Success
                    && r.data.as_ref().and_then(|d| d["task"].as_str()) == Some(id.as_str()) => {}
            other => lost.push((id, format!("{other:?}"))),
        }
    }
    let elapsed = started.elapsed();
    for (stop, _) in &runs {
        stop.shutdown();
    }
    for (_, run) in runs {
        let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    }
    let applied = host.applied_results().await;
    let lapsed = host.lapsed_claims().await;
    let executions = executions.lock().unwrap().clone();
    let never_ran: Vec<String> = (0..tasks)
        .map(|i| format!("t-{i}"))
        .filter(|id| !executions.contains_key(id))
        .collect();
    let total_runs: u64 = executions.values().map(|&n| u64::from(n)).sum();
    let ran_again = executions.values().filter(|&&n| n > 1).count();
    let cuts: u64 = proxies.iter().map(|p| p.stats().resets).sum();
    println!(
        "scale-out: {tasks} tasks over 3 listener processes in {elapsed:.2?}: applied {applied}, \
         lost {}, handler runs {total_runs} ({ran_again} tasks ran again), lapsed claims \
         {lapsed}, connections cut {cuts}, 1 listener SIGKILL + restart, 1 Redis SIGKILL + restart",
        lost.len()
    );
    assert!(lost.is_empty(), "tasks without their result: {lost:?}");
    assert_eq!(applied, tasks as u64, "exactly one applied result per task");
    assert!(
        never_ran.is_empty(),
        "results without a handler run: {never_ran:?}"
    );
    for i in 0..tasks {
        assert_eq!(
            host.task_state(&format!("t-{i}")).await,
            Some(TaskState::Finished(TaskStatus::Success))
        );
    }
    for (mut child, _) in processes {
        drop(child.stdin.take()); // a clean stop
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
}

/// When the worker's last parked poll's wait ends (Unix ms; 0 when none is parked):
/// marked by the process where the poll parks, cleared when it ends.
fn parked_until(redis: &RedisServer, prefix: &str, worker: &str) -> i64 {
    let reply = redis
        .command(&[
            "ZRANGE",
            &format!("{prefix}:park:{worker}"),
            "-1",
            "-1",
            "WITHSCORES",
        ])
        .unwrap();
    // `*2`, the poll's id, its score (the end of its wait); `*0` when none is parked.
    reply
        .lines()
        .nth(4)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

async fn registered(url: &str, worker: &str) -> Arc<dyn Transport> {
    let t: Arc<dyn Transport> =
        rxon::create_transport(url, worker, "bench", Default::default()).unwrap();
    t.connect().await.unwrap();
    t.register(&rxon::WorkerRegistration {
        worker_id: worker.into(),
        supported_skills: vec!["work".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    t
}

/// The hand-off race across processes: a poll parked on a listener process, the task
/// enqueued by another process while the poll's connection is cut (or silenced): the
/// task is never orphaned, and a claim lost with the connection is requeued within the
/// lease and a reaper round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_handed_across_processes_to_a_vanished_poll_is_requeued() {
    const RACE: &str = "race";
    let races = env_or("RXON_SOAK_RACES", 10);
    let redis = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let url = redis.url();
    let (mut child, addr) = listener_process_on(&url, RACE, "127.0.0.1:0").await;
    let proxy = FaultProxy::start(addr).await.unwrap();
    let host = host_on(&url, RACE);
    let mut t = registered(&proxy.url("http"), "w-race").await;
    let mut worst = Duration::ZERO;
    let mut lost_claims = 0u64;
    let mut orphaned = Vec::new();
    for i in 0..races {
        let silence = i % 2 == 1;
        // A poll parked on the listener process (bounded tries: right after a cut, the
        // first poll may fail on the connection the transport has not seen die).
        let mut tries = 0;
        let (poll, parked) = loop {
            tries += 1;
            assert!(tries <= 5, "no poll parked in 5 tries");
            let before = parked_until(&redis, RACE, "w-race");
            let mut poll = {
                let t = t.clone();
                tokio::spawn(async move { t.poll_task(Duration::from_secs(10)).await })
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            let parked = loop {
                if parked_until(&redis, RACE, "w-race") > before {
                    break true;
                }
                if poll.is_finished() || Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            if parked {
                break (poll, parked_until(&redis, RACE, "w-race"));
            }
            let e = (&mut poll)
                .await
                .unwrap()
                .expect_err("nothing is queued: a poll ends early only on an error");
            assert!(e.is_network(), "{e}");
        };
        let id = format!("race-{i}");
        let lapsed_before = host.lapsed_claims().await;
        if silence {
            proxy.strand_all();
            host.enqueue(task(&id)).await.unwrap();
        } else {
            let (_, ()) = tokio::join!(host.enqueue(task(&id)), async { proxy.reset_all() });
        }
        let gone_at = Instant::now();
        // The parked poll ends on the listener process (its mark is cleared): it
        // claimed the task, or the connection's end dropped it first.
        let deadline = Instant::now() + Duration::from_secs(5);
        while parked_until(&redis, RACE, "w-race") >= parked {
            assert!(
                Instant::now() < deadline,
                "{id}: the parked poll did not end"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Then the task is queued again (or was never taken): no worker confirms it.
        let queued = host
            .wait_for_task_state(&id, &TaskState::Queued, LEASE * 20)
            .await;
        let requeued_in = gone_at.elapsed();
        if queued.is_err() {
            orphaned.push((id.clone(), host.task_state(&id).await));
        }
        if host.lapsed_claims().await > lapsed_before {
            lost_claims += 1;
            worst = worst.max(requeued_in);
        }
        poll.abort();
        t.close().await.unwrap();
        t = registered(&proxy.url("http"), "w-race").await;
        host.cancel(&id).await.unwrap();
    }
    println!(
        "hand-off race across processes: attempts {races}, claims lost with the connection \
         {lost_claims}, orphaned {}, worst time until requeue {worst:?} (lease {LEASE:?}, \
         reaper round 50ms)",
        orphaned.len()
    );
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    assert!(orphaned.is_empty(), "orphaned: {orphaned:?}");
    assert!(
        lost_claims >= (races / 2) as u64,
        "every silenced poll lost its claim"
    );
    let bound = LEASE + Duration::from_millis(50) + Duration::from_millis(250);
    assert!(worst < bound, "worst requeue {worst:?}, bound {bound:?}");
}
