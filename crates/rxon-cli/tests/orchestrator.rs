//! `rxon orchestrator` as a user runs it, on 127.0.0.1, with `rxon worker`s: it says
//! loudly when it runs with open auth, an STS credential alone closes it (a random worker token is
//! refused), its admin API accepts only the exact admin token and answers every error
//! in JSON, a task query can wait for the task's result, WebSocket workers reach it
//! through the axum router on the HTTP port, and Ctrl-C closes every connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon::Transport;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `rxon orchestrator …`: the built binary, which cargo builds for these tests.
fn rxon_orchestrator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rxon"));
    command.arg("orchestrator");
    for inherited in [
        "RXON_STORAGE",
        "RXON_TASK_SIGNING_KEY",
        "RXON_TOR_CONTROL_PASSWORD",
    ] {
        command.env_remove(inherited);
    }
    command
}

/// The `echo` skill of these tests: its params back as `{"echo": params}`.
const ECHO: &str = r#"echo=printf '{"echo":%s}' "$RXON_PARAMS""#;

/// `rxon worker` with the `echo` skill, at `url` as `worker_id`.
fn rxon_worker(url: &str, worker_id: &str, token: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rxon"));
    command
        .args(["worker", "--url", url, "--worker-id", worker_id])
        .args(["--token", token, "--skill", ECHO])
        .env_remove("RXON_PROTOCOL")
        .env_remove("RXON_TASK_KEY")
        .env_remove("RXON_PROXY")
        .env_remove("TRACEPARENT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A running orchestrator: its address, and its stderr collected until it exits.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// The lines of stdout after the address (read by the Tor test).
    #[cfg_attr(not(feature = "tor"), allow(dead_code))]
    lines: std::sync::mpsc::Receiver<String>,
    /// Taken by [`stop`](Self::stop).
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = rxon_orchestrator()
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Stdout is read to its end, so the orchestrator never writes into a closed pipe.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (found, address) = std::sync::mpsc::channel();
        let (more, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let addr = line
                    .split_once("orchestrator listening on http://")
                    .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok());
                match addr {
                    Some(addr) => {
                        let _ = found.send(addr);
                    }
                    None => {
                        let _ = more.send(line);
                    }
                }
            }
        });
        let addr: SocketAddr = address
            .recv_timeout(Duration::from_secs(30))
            .expect("the orchestrator prints its address");
        Running {
            child,
            addr,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Stops the orchestrator; returns what it wrote to stderr.
    fn stop(mut self) -> String {
        self.kill();
        let stderr = self.stderr.take().expect("stopped once");
        stderr.join().unwrap()
    }

    /// Sends SIGINT (Ctrl-C) and waits, at most `limit`, for the orchestrator to exit; its
    /// exit status and what it wrote to stderr.
    fn interrupt(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let interrupted = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(interrupted.success(), "kill -INT failed");
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the orchestrator did not exit within {limit:?} of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = self.stderr.take().expect("stopped once");
        (status, stderr.join().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A failing assertion does not leave the orchestrator running.
impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status of `GET path` with `headers`, over a fresh connection.
async fn status_of(addr: SocketAddr, path: &str, headers: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the orchestrator answers in time")
        .unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"))
}

#[tokio::test]
async fn it_warns_when_open_and_an_sts_credential_alone_closes_it() {
    let open = Running::start(&[]);
    let stderr = open.stop();
    assert!(
        stderr.contains("WARNING") && stderr.contains("open auth"),
        "no open-auth warning in: {stderr}"
    );

    let closed = Running::start(&["--sts-credential", "bootstrap-0b1c"]);
    let url = format!("http://{}", closed.addr);
    let random = rxon::http::HttpTransport::new(&url, "w-1", "random-7e2f").unwrap();
    random.connect().await.unwrap();
    let err = random
        .register(&rxon::WorkerRegistration {
            worker_id: "w-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err}");
    let stderr = closed.stop();
    assert!(
        !stderr.contains("open auth"),
        "warned although closed: {stderr}"
    );
}

#[test]
fn an_empty_admin_token_is_refused_and_an_open_admin_api_is_warned_about() {
    let out = rxon_orchestrator()
        .args(["--listen", "127.0.0.1:0", "--admin-token", ""])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with an empty admin token");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--admin-token must not be empty"),
        "{stderr}"
    );
    let open = Running::start(&["--token", "worker-secret"]).stop();
    assert!(open.contains("admin API"), "no warning: {open}");
}

#[tokio::test]
async fn the_admin_api_accepts_only_the_exact_admin_token() {
    let running = Running::start(&["--token", "worker-secret", "--admin-token", "admin-5ad2"]);
    let addr = running.addr;
    for (what, headers) in [
        ("no token", ""),
        ("a wrong token", "X-Client-Token: admin-5ad3\r\n"),
        ("a prefix", "X-Client-Token: admin-5ad\r\n"),
        ("a longer token", "X-Client-Token: admin-5ad2x\r\n"),
        ("an empty token", "X-Client-Token: \r\n"),
    ] {
        assert_eq!(
            status_of(addr, "/admin/workers", headers).await,
            401,
            "{what}"
        );
    }
    assert_eq!(
        status_of(addr, "/admin/workers", "X-Client-Token: admin-5ad2\r\n").await,
        200
    );
    running.stop();
}

/// Writes `method path` with a JSON body and the admin token `adm-1` on a fresh
/// connection; the connection, for [`answer`].
async fn send_admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> tokio::net::TcpStream {
    send_admin_with(addr, method, path, "", body).await
}

/// [`send_admin`] with more `headers` (each line ending in CRLF).
async fn send_admin_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client-Token: adm-1\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    s
}

/// The status and body of the answer on `s` (read to its end, within `limit`).
async fn answer(mut s: tokio::net::TcpStream, limit: Duration) -> (u16, String) {
    let mut answer = Vec::new();
    tokio::time::timeout(limit, s.read_to_end(&mut answer))
        .await
        .expect("the orchestrator answers in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap();
    (status, body)
}

/// `method path` with a JSON body on loopback; the status and the body.
async fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    answer(
        send_admin(addr, method, path, body).await,
        Duration::from_secs(10),
    )
    .await
}

/// `POST /admin/tasks` with `task`; the new task's id.
async fn create_task(addr: SocketAddr, task: &str) -> String {
    let (status, body) = admin(addr, "POST", "/admin/tasks", task).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A `traceparent` (and `tracestate`) header of `POST /admin/tasks` travels with the
/// task to `rxon worker`, whose command finds them in `TRACEPARENT` and `TRACESTATE`;
/// a malformed one is dropped.
#[tokio::test]
async fn a_callers_trace_reaches_the_workers_command() {
    let orch = Running::start(&["--token", "w-secret", "--admin-token", "adm-1"]);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut ids = Vec::new();
    for (parent, state) in [(parent, "rxon=7"), ("00-not-a-trace-01", "rxon=8")] {
        let headers = format!("traceparent: {parent}\r\ntracestate: {state}\r\n");
        let body = r#"{"type":"trace"}"#;
        let (status, body) = answer(
            send_admin_with(orch.addr, "POST", "/admin/tasks", &headers, body).await,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        ids.push(v["task_id"].as_str().unwrap().to_owned());
    }
    let skill = r#"trace=printf '{"tp":"%s","ts":"%s"}' "$TRACEPARENT" "$TRACESTATE""#;
    let _worker = Worker(
        rxon_worker(&format!("http://{}", orch.addr), "trace-w1", "w-secret")
            .args(["--skill", skill])
            .spawn()
            .unwrap(),
    );
    let mut seen = Vec::new();
    for id in &ids {
        let waiting = send_admin(orch.addr, "GET", &format!("/admin/tasks/{id}?wait=30"), "").await;
        let (status, body) = answer(waiting, Duration::from_secs(40)).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["state"], "success", "{body}");
        seen.push((
            v["result"]["data"]["tp"].clone(),
            v["result"]["data"]["ts"].clone(),
        ));
    }
    assert_eq!(seen[0], (parent.into(), "rxon=7".into()));
    assert_eq!(seen[1], ("".into(), "".into()));
    orch.stop();
}

/// `GET /admin/tasks/{id}?wait=S` answers once the task has its result (run by the
/// `rxon worker`, started after the request was sent), or with its state when `S`
/// passes first; a wait out of range is refused.
#[tokio::test]
async fn a_task_query_with_wait_answers_once_the_result_is_in() {
    let orch = Running::start(&["--token", "w-secret", "--admin-token", "adm-1"]);
    let id = create_task(orch.addr, r#"{"type":"echo","params":{"n":7}}"#).await;
    for bad in ["-1", "61", "soon", ""] {
        let (status, body) = admin(
            orch.addr,
            "GET",
            &format!("/admin/tasks/{id}?wait={bad}"),
            "",
        )
        .await;
        assert_eq!(status, 400, "wait={bad}: {body}");
        assert!(body.contains("wait must be 0 to 60 seconds"), "{body}");
    }
    // No worker yet: the wait passes and the task is still queued.
    let (status, body) = admin(orch.addr, "GET", &format!("/admin/tasks/{id}?wait=0.2"), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""state":"queued""#), "{body}");
    let waiting = send_admin(orch.addr, "GET", &format!("/admin/tasks/{id}?wait=30"), "").await;
    let mut worker = rxon_worker(&format!("http://{}", orch.addr), "wait-w1", "w-secret")
        .spawn()
        .unwrap();
    let (status, body) = answer(waiting, Duration::from_secs(40)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "success", "{body}");
    assert_eq!(v["result"]["data"]["echo"]["n"], 7, "{body}");
    orch.stop();
}

/// `GET /metrics`: the Prometheus text.
async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = admin(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of `series` (a name with its labels, as rendered) in `text`; 0 when the
/// series has not been recorded yet.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// The sum of every series of `name` whose labels contain `label`.
fn sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|l| l.split_once("} "))
        .filter(|(labels, _)| labels.contains(label))
        .map(|(_, v)| v.trim().parse::<f64>().unwrap())
        .sum()
}

/// Scrapes until `series` reaches at least `at_least` (bounded: 300 looks, 30 s).
async fn until_metric(addr: SocketAddr, series: &str, at_least: f64) -> String {
    for _ in 0..300 {
        let text = scrape(addr).await;
        if value(&text, series) >= at_least {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} never reached {at_least}: {}", scrape(addr).await);
}

/// `/metrics` counts what happens: a refused credential, a parked poll, a task enqueued,
/// claimed, answered and dispatched.
#[tokio::test]
async fn metrics_move_with_what_the_orchestrator_does() {
    let orch = Running::start(&["--token", "w-secret", "--admin-token", "adm-1"]);
    let before = scrape(orch.addr).await;
    // Refusals are counted by the handler call that refused: a listener authenticates
    // before it reads a body.
    let refused = |text: &str| {
        sum(
            text,
            "rxon_orchestrator_auth_failures_total",
            r#"kind="unauthorized""#,
        )
    };
    assert_eq!(refused(&before), 0.0, "{before}");
    // One poll with a wrong worker token: one refusal (a transport would also try
    // to refresh its token, and count again).
    let poll = "/_worker/workers/w-x/tasks/next?timeout=0";
    assert_eq!(
        status_of(orch.addr, poll, "X-Worker-Token: wrong\r\n").await,
        401
    );
    assert_eq!(refused(&scrape(orch.addr).await), 1.0);

    let _worker = Worker::start(&format!("http://{}", orch.addr), "m-w1");
    let parked = until_metric(orch.addr, "rxon_orchestrator_polls_waiting", 1.0).await;
    assert_eq!(
        value(&parked, "rxon_orchestrator_tasks_claimed_total"),
        0.0,
        "{parked}"
    );
    let id = create_task(orch.addr, r#"{"type":"echo","params":{"n":1}}"#).await;
    let waiting = send_admin(orch.addr, "GET", &format!("/admin/tasks/{id}?wait=30"), "").await;
    let (status, body) = answer(waiting, Duration::from_secs(40)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""state":"success""#), "{body}");
    let after = scrape(orch.addr).await;
    for (series, expected) in [
        ("rxon_orchestrator_tasks_enqueued_total", 1.0),
        ("rxon_orchestrator_tasks_claimed_total", 1.0),
        (
            r#"rxon_orchestrator_results_total{outcome="accepted",reason=""}"#,
            1.0,
        ),
        ("rxon_orchestrator_dispatch_seconds_count", 1.0),
    ] {
        assert_eq!(value(&after, series), expected, "{series} in:\n{after}");
    }
    assert_eq!(refused(&after), 1.0, "{after}");
    orch.stop();
}

/// A started `rxon worker`, killed when dropped.
struct Worker(Child);

impl Worker {
    fn start(url: &str, worker_id: &str) -> Worker {
        Worker(rxon_worker(url, worker_id, "w-secret").spawn().unwrap())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The orchestrator's worker API is the fallback of its axum router: a WebSocket worker
/// (`ws://` on the HTTP port, the upgrade passing through axum) runs tasks beside the
/// admin API; admin errors are JSON; and on Ctrl-C the open connections (that
/// session, an HTTP worker's parked poll and command channel) close at once instead
/// of holding the process for its grace period.
#[tokio::test]
async fn the_axum_router_serves_both_transports_json_errors_and_stops_cleanly() {
    let orch = Running::start(&["--token", "w-secret", "--admin-token", "adm-1"]);
    let active = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["status"] == "active")
            .map(|w| w["worker_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    // The WebSocket worker alone first: the tasks can only be its.
    let _ws = Worker::start(&format!("ws://{}", orch.addr), "ws-w1");
    for n in 0..3 {
        let id = create_task(
            orch.addr,
            &format!(r#"{{"type":"echo","params":{{"n":{n}}}}}"#),
        )
        .await;
        let waiting = send_admin(orch.addr, "GET", &format!("/admin/tasks/{id}?wait=30"), "").await;
        let (status, body) = answer(waiting, Duration::from_secs(40)).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["state"], "success", "{body}");
        assert_eq!(v["result"]["data"]["echo"]["n"], n, "{body}");
        assert_eq!(v["result"]["worker_id"], "ws-w1", "{body}");
    }
    // Then an HTTP worker, and a second WebSocket worker started once the HTTP one
    // has registered (its start gives the HTTP worker's first poll time to park).
    let registered = async |worker_id: &str| {
        // Bounded: 300 looks, 30 s.
        for _ in 0..300 {
            let (status, body) = admin(orch.addr, "GET", "/admin/workers", "").await;
            assert_eq!(status, 200, "{body}");
            if active(&body).iter().any(|w| w == worker_id) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{worker_id} did not register");
    };
    let _http = Worker::start(&format!("http://{}", orch.addr), "http-w1");
    registered("http-w1").await;
    let _ws2 = Worker::start(&format!("ws://{}", orch.addr), "ws-w2");
    registered("ws-w2").await;
    // Every worker's poll is parked (each keeps one in flight).
    until_metric(orch.addr, "rxon_orchestrator_polls_waiting", 3.0).await;

    // One byte over the 1 MiB limit: the whole body is read before the refusal.
    let too_large = format!(
        r#"{{"type":"echo","params":{{"s":"{}"}}}}"#,
        "x".repeat(1 << 20)
    )[..(1 << 20) + 1]
        .to_owned();
    for (method, path, body, status, says) in [
        (
            "POST",
            "/admin/tasks",
            too_large.as_str(),
            413,
            "length limit",
        ),
        ("GET", "/admin/nothing-here", "", 404, "no such admin route"),
        ("DELETE", "/admin/workers", "", 405, "method not allowed"),
        ("GET", "/admin/tasks/task-999", "", 404, "no such task"),
        ("POST", "/admin/tasks/task-999/cancel", "", 404, ""),
        ("POST", "/admin/tasks", "{", 400, "invalid JSON body"),
        (
            "POST",
            "/admin/tasks",
            r#"{"params":{}}"#,
            400,
            "missing field `type`",
        ),
    ] {
        let (got, text) = admin(orch.addr, method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {text}"));
        assert!(error.contains(says), "{method} {path}: {error}");
    }

    let (status, stderr) = orch.interrupt(Duration::from_secs(20));
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        !stderr.contains("still open"),
        "connections held the stop until its grace ran out: {stderr}"
    );
}

/// `rxon orchestrator` and `rxon worker` over a real onion service of the private Tor network: the
/// orchestrator publishes itself through the service tor's control socket (`--tor`),
/// the worker reaches it through the client tor's SOCKS port (`--proxy`).
#[cfg(feature = "tor")]
mod tor {
    use super::*;

    #[tokio::test]
    #[ignore = "needs a private Tor network (RXON_TOR_NET): cargo xtask tor-test"]
    async fn orchestrator_and_worker_meet_over_an_onion_service() {
        let net = rxon::testing::tor::TorNet::from_env().unwrap();
        let (socks, control) = (net.socks.to_string(), net.control.display().to_string());
        let orch = Running::start(&[
            "--token",
            "tor-secret",
            "--admin-token",
            "adm-1",
            "--tor",
            &control,
        ]);
        let onion = loop {
            let line = orch
                .lines
                .recv_timeout(Duration::from_secs(180))
                .expect("the orchestrator prints its onion address");
            if let Some(rest) = line.strip_prefix("onion service: http://") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        assert!(onion.ends_with(".onion") && onion.len() == 62, "{onion}");
        let mut worker = rxon_worker(&format!("http://{onion}"), "tor-w1", "tor-secret")
            .args(["--proxy", &format!("socks5h://{socks}")])
            .spawn()
            .unwrap();
        let id = create_task(orch.addr, r#"{"type":"echo","params":{"via":"tor"}}"#).await;
        // The worker is another process: its progress is read back from the admin API,
        // a bounded number of times.
        let mut last = String::new();
        for _ in 0..600 {
            let (_, body) = admin(orch.addr, "GET", &format!("/admin/tasks/{id}"), "").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["state"] == "success" {
                assert_eq!(v["result"]["data"]["echo"]["via"], "tor", "{body}");
                let _ = worker.kill();
                let _ = worker.wait();
                return;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = worker.kill();
        let _ = worker.wait();
        panic!("the task did not complete over Tor within 60 s: {last}");
    }
}
