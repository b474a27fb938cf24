//! `cargo xtask interop`: our HTTP side against the Python reference, both directions.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The reference release the wire facts were read from.
const REFERENCE: &str = "rxon==1.0b3";
/// An independent gRPC implementation, to check that the proto is a usable contract.
const GRPC_CLIENT: &[&str] = &["grpcio>=1.60", "grpcio-tools>=1.60"];
/// How long a peer may take to print its `LISTENING <url>` line.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a peer may take to exit once asked to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn run(root: &Path) -> Result<(), String> {
    let python = venv(root)?;
    crate::cargo(&["build", "-p", "rxon-http", "--examples"])?;
    let examples = root.join("target/debug/examples");
    let scripts = root.join("xtask/interop");

    println!("interop 1/4: Python HttpTransport -> Rust HttpListener");
    let listener = Peer::start(Command::new(examples.join("interop_listener")))?;
    let worker = Command::new(&python)
        .arg(scripts.join("py_worker.py"))
        .arg(&listener.url)
        .status()
        .map_err(|e| format!("cannot run the Python worker: {e}"))?;
    let (listener_ok, _) = listener.finish()?;

    println!("interop 2/4: Rust HttpTransport -> Python HttpListener");
    let mut py = Command::new(&python);
    py.arg(scripts.join("py_listener.py"));
    let py_listener = Peer::start(py)?;
    let rust_worker = Command::new(examples.join("interop_worker"))
        .arg(&py_listener.url)
        .status()
        .map_err(|e| format!("cannot run the Rust worker: {e}"))?;
    let (py_listener_ok, _) = py_listener.finish()?;

    println!("interop 3/4: the `worker` example -> Python HttpListener");
    crate::cargo(&["build", "-p", "rxon", "--example", "worker"])?;
    let mut py = Command::new(&python);
    py.arg(scripts.join("py_listener.py")).arg("echo");
    let echo_listener = Peer::start(py)?;
    let mut example = Command::new(examples.join("worker"))
        .env("RXON_URL", &echo_listener.url)
        .env("RXON_WORKER_ID", "example-worker")
        .env("RXON_WORKER_TOKEN", "any")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the worker example: {e}"))?;
    // The Python side exits once it has the three results (bounded by its own timeout).
    let (echo_ok, lines) = echo_listener.finish_when_done()?;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(example.id().to_string())
        .status();
    let example_ok = wait_bounded(&mut example)?;
    let saw = |needle: &str| lines.iter().any(|l| l.starts_with(needle));

    println!(
        "interop 4/4: Python grpcio client (stubs from proto/) -> the `orchestrator` example's gRPC listener"
    );
    crate::cargo(&["build", "-p", "rxon", "--example", "orchestrator"])?;
    let mut orch = Command::new(examples.join("orchestrator"));
    orch.args([
        "--listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--token",
        "secret",
    ]);
    let orchestrator = Peer::start_matching(orch, "orchestrator listening on ")?;
    let grpc_target = orchestrator
        .earlier
        .iter()
        .find_map(|l| l.strip_prefix("gRPC on grpc://"))
        .map(str::to_owned)
        .ok_or("the orchestrator example did not print its gRPC address")?;
    let grpc_client = Command::new(&python)
        .arg(scripts.join("py_grpc_client.py"))
        .arg(&grpc_target)
        .arg(&orchestrator.url)
        .arg(root.join("proto"))
        .status()
        .map_err(|e| format!("cannot run the Python gRPC client: {e}"))?;
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(orchestrator.child.id().to_string())
        .status();
    let (orchestrator_ok, _) = orchestrator.finish_when_done()?;
    let example_results = echo_ok
        && saw("RESULT e-ok success")
        && saw("RESULT e-fail failure {'code': 'INVALID_INPUT_ERROR'")
        && saw("RESULT e-sleep success");

    let all = [
        (
            "Python worker vs Rust listener (worker side)",
            worker.success(),
        ),
        (
            "Python worker vs Rust listener (listener side)",
            listener_ok,
        ),
        (
            "Rust worker vs Python listener (worker side)",
            rust_worker.success(),
        ),
        (
            "Python listener checked every message and exited cleanly",
            py_listener_ok,
        ),
        (
            "`worker` example: echo, fail and sleep against the Python listener",
            example_results,
        ),
        ("`worker` example shut down cleanly on SIGTERM", example_ok),
        (
            "Python grpcio client against the gRPC listener",
            grpc_client.success(),
        ),
        (
            "`orchestrator` example shut down cleanly on SIGINT",
            orchestrator_ok,
        ),
    ];
    for (name, ok) in all {
        println!("interop: {} {name}", if ok { "PASS" } else { "FAIL" });
    }
    let failed = all.iter().filter(|(_, ok)| !ok).count();
    println!("interop: {} passed, {failed} failed", all.len() - failed);
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} interop check(s) failed"))
    }
}

/// A venv under target/ with the reference installed; returns its python.
pub(crate) fn venv(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join("target/interop-venv");
    let python = dir.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("cannot run python3: {e}"))?
            .success();
        if !ok {
            return Err("python3 -m venv failed".into());
        }
    }
    let installed = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; assert m.version('rxon') == '1.0b3'; import grpc, grpc_tools",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let ok = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                REFERENCE,
            ])
            .args(GRPC_CLIENT)
            .status()
            .map_err(|e| format!("cannot run pip: {e}"))?
            .success();
        if !ok {
            return Err(format!("pip install {REFERENCE} {GRPC_CLIENT:?} failed"));
        }
    }
    Ok(python)
}

/// A listener process that announces `LISTENING <url>` and stops when its stdin closes.
pub(crate) struct Peer {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// Lines printed before the one that announced the URL.
    earlier: Vec<String>,
    rest: mpsc::Receiver<String>,
}

impl Peer {
    pub(crate) fn start(cmd: Command) -> Result<Peer, String> {
        Self::start_matching(cmd, "LISTENING ")
    }

    /// Starts `cmd` and waits for the line that starts with `prefix`; the rest of that
    /// line is the peer's URL.
    fn start_matching(mut cmd: Command, prefix: &str) -> Result<Peer, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        forward_lines(stdout, tx);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut earlier = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    println!("  | {line}");
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        return Ok(Peer {
                            child,
                            url: url.to_owned(),
                            earlier,
                            rest: rx,
                        });
                    }
                    earlier.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("{cmd:?} did not announce its URL"));
                }
            }
        }
    }

    /// Waits (bounded) for the peer to exit on its own, keeping stdin open.
    fn finish_when_done(mut self) -> Result<(bool, Vec<String>), String> {
        let ok = wait_bounded(&mut self.child)?;
        let mut lines = Vec::new();
        while let Ok(line) = self.rest.recv_timeout(Duration::from_secs(1)) {
            println!("  | {line}");
            lines.push(line);
        }
        Ok((ok, lines))
    }

    /// Closes stdin, waits (bounded) for exit, echoes the rest of the output; returns
    /// whether it exited successfully and the lines it printed after its URL.
    pub(crate) fn finish(mut self) -> Result<(bool, Vec<String>), String> {
        drop(self.child.stdin.take());
        self.finish_when_done()
    }
}

/// Waits for `child` up to [`EXIT_TIMEOUT`] (then kills it); `true` on a clean exit.
fn wait_bounded(child: &mut Child) -> Result<bool, String> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn forward_lines(stdout: ChildStdout, tx: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}
