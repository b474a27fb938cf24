//! `cargo xtask bench`: poll → result cycles against every listener on loopback, in one
//! run, with ratios to the Python reference and to a bare hyper server.
//!
//! Every process it runs must succeed: a measurement that exits with a failure status,
//! or a server that exits before the bench stops it (or with a failure status once
//! stopped), fails the bench with an error naming the command and its exit status.

use crate::interop::{Peer, venv};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Workers of the load generator and seconds per target.
const WORKERS: usize = 32;
const SECONDS: u64 = 5;
/// The rows the others are set against.
const HYPER_CEILING: &str = "bare hyper (ceiling)";
const TONIC_CEILING: &str = "bare tonic (gRPC ceiling)";
const PYTHON: &str = "Python rxon 1.0b3 HTTP";
/// Alternating pairs of the worker-side measurement.
const WORKER_SIDE_PAIRS: usize = 5;
/// How long a server may take to exit once its stdin is closed; after that it is killed.
const SERVER_EXIT_TIMEOUT: Duration = Duration::from_secs(60);

struct Figures {
    name: &'static str,
    cycles_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    client_ms_per_1000: f64,
    server_ms_per_1000: f64,
}

/// Builds the release `rxon-bench`, `rxon` (its orchestrator) and the `worker` example in one
/// cargo run (so their shared crates are built once, with one set of features).
fn build_release() -> Result<(), String> {
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "rxon-bench",
        "-p",
        "rxon",
        "-p",
        "rxon-cli",
        "--bin",
        "rxon-bench",
        "--bin",
        "rxon",
        "--example",
        "worker",
    ])
}

pub(crate) fn run(root: &Path) -> Result<(), String> {
    build_release()?;
    let bench = root.join("target/release/rxon-bench");
    let python = venv(root)?;
    let mut rows = Vec::new();
    // Every rxon row is pinned to a generation: 1.0b3 (plain) or 1.0b17 (each result
    // sealed by the worker and verified by the listener, each task signed by the
    // listener and checked by the worker). The ceilings and Python get 1.0b3 requests.
    for (name, kind, protocol) in [
        (HYPER_CEILING, "hyper", Some("1.0b3")),
        (TONIC_CEILING, "tonic", Some("1.0b3")),
        ("rxon HTTP", "http", Some("1.0b3")),
        ("rxon HTTP 1.0b17 signed", "http", Some("1.0b17")),
        ("rxon WebSocket", "ws", Some("1.0b3")),
        ("rxon WebSocket 1.0b17 signed", "ws", Some("1.0b17")),
        ("rxon gRPC", "grpc", Some("1.0b3")),
        ("rxon gRPC 1.0b17 signed", "grpc", Some("1.0b17")),
        (PYTHON, "python", None),
    ] {
        let server = if kind == "python" {
            let mut c = Command::new(&python);
            c.arg(root.join("xtask/interop/py_bench_listener.py"));
            c
        } else {
            let mut c = Command::new(&bench);
            c.args(["serve", kind]);
            c
        };
        let (peer, server_shown) = start_server(server)?;
        // The load generator reads the server's CPU time itself, over its timed window.
        let pid = peer.child.id().to_string();
        let mut load = Command::new(&bench);
        load.args([
            "load",
            &peer.url,
            &WORKERS.to_string(),
            &SECONDS.to_string(),
            &pid,
        ]);
        if let Some(p) = protocol {
            load.env("RXON_BENCH_PROTOCOL", p);
        }
        let load = run_to_end(&mut load);
        // A server that died during the run is reported before the load's own error.
        stop_server(peer, &server_shown)?;
        let figures = parse(name, &load?, true)?;
        println!(
            "bench: {:<28} {:>9.0} cycles/s  p50 {:>7.0} us  p99 {:>7.0} us  server {:>6.1} ms/1000  client {:>6.1} ms/1000  errors {}",
            figures.name,
            figures.cycles_per_s,
            figures.p50_us,
            figures.p99_us,
            figures.server_ms_per_1000,
            figures.client_ms_per_1000,
            figures.errors
        );
        rows.push(figures);
    }
    let get = |n: &str| rows.iter().find(|r| r.name == n);
    if let (Some(ceiling), Some(python)) = (get(HYPER_CEILING), get(PYTHON)) {
        for ours in rows.iter().filter(|r| r.name.starts_with("rxon")) {
            // gRPC rows are also set against the bare tonic server: HTTP/2 and protobuf
            // cost what they cost whoever serves them.
            let tonic = match get(TONIC_CEILING) {
                Some(t) if ours.name.contains("gRPC") => format!(
                    ", {:>5.1}% of bare tonic",
                    100.0 * ours.cycles_per_s / t.cycles_per_s.max(f64::EPSILON)
                ),
                _ => String::new(),
            };
            println!(
                "bench: {:<28} {:>5.1}x Python cycles/s, {:>5.1}% of bare hyper{tonic}, server CPU per cycle {:>5.2}x Python's",
                ours.name,
                ours.cycles_per_s / python.cycles_per_s.max(f64::EPSILON),
                100.0 * ours.cycles_per_s / ceiling.cycles_per_s.max(f64::EPSILON),
                ours.server_ms_per_1000 / python.server_ms_per_1000.max(f64::EPSILON),
            );
        }
    }
    for transport in ["HTTP", "WebSocket", "gRPC"] {
        let (b3, b17) = (
            get(&format!("rxon {transport}")),
            get(&format!("rxon {transport} 1.0b17 signed")),
        );
        if let (Some(b3), Some(b17)) = (b3, b17) {
            // One cycle = a poll (a signed task, checked) and a result (sealed, verified).
            println!(
                "bench: 1.0b17 signing cost {transport:<9}  server {:+.1} ms/1000 cycles ({:+.1}%), client {:+.1} ms/1000 cycles ({:+.1}%), cycles/s {:.1}% of 1.0b3",
                b17.server_ms_per_1000 - b3.server_ms_per_1000,
                100.0 * (b17.server_ms_per_1000 / b3.server_ms_per_1000.max(f64::EPSILON) - 1.0),
                b17.client_ms_per_1000 - b3.client_ms_per_1000,
                100.0 * (b17.client_ms_per_1000 / b3.client_ms_per_1000.max(f64::EPSILON) - 1.0),
                100.0 * b17.cycles_per_s / b3.cycles_per_s.max(f64::EPSILON),
            );
        }
    }
    worker_side(&bench)?;
    for kind in ["http", "ws", "grpc"] {
        println!(
            "bench: dispatch latency {}",
            one_line(&bench, &["dispatch", kind, "500"])?
        );
    }
    // The same in process, beside 10,000 parked polls of workers with another skill:
    // an enqueue wakes the polls of its skill only.
    println!(
        "bench: dispatch latency {}",
        one_line(&bench, &["dispatch-crowd", "10000", "500"])?
    );
    // The Redis storage: enqueue → a parked worker holds the task, in the process of the
    // enqueue and in another listener process (a real redis-server on loopback).
    for line in one_line(&bench, &["dispatch-shared", "500"])?.lines() {
        println!("bench: dispatch latency {line}");
    }
    // Jobs end to end (enqueue → worker → result applied) with 1, 2 and 3 listener
    // processes on one Redis (appendfsync always), with each side's CPU per job.
    for processes in ["1", "2", "3"] {
        println!(
            "bench: shared storage {}",
            one_line(&bench, &["load-shared", processes, "12", "5"])?
        );
    }
    jobs_rows(root)?;
    // Idle cost: parked long-polls held by our listeners (HTTP on both storages,
    // WebSocket, gRPC), by a bare hyper server and by the Python reference (aiohttp).
    for (kind, n) in [
        ("rxon", "1000"),
        ("rxon", "10000"),
        ("rxon-redis", "10000"),
        ("ws", "10000"),
        ("grpc", "10000"),
        ("hyper", "10000"),
        ("python", "10000"),
    ] {
        let line = run_to_end(
            Command::new(&bench)
                .args(["idle", kind, n])
                .env("RXON_BENCH_PYTHON", &python),
        )?;
        println!("bench: idle {}", line.trim());
    }
    // Blob storage: one 1 GiB object up to a real S3-compatible server and back.
    println!("bench: blob {}", one_line(&bench, &["blob", "1024"])?);
    if rows.iter().any(|r| r.errors > 0) {
        return Err("some cycles failed; see the errors column".into());
    }
    tor(root)
}

/// Jobs end to end through each stack a user could pick (ours on each transport,
/// avtomatika with its SDK, avtomatika with our worker), with each side's CPU per job.
fn jobs_rows(root: &Path) -> Result<(), String> {
    crate::jobs::run(
        root,
        &root.join("target/release/rxon-bench"),
        &root.join("target/release/examples"),
        &crate::interop::venv_current(root)?,
    )
}

/// `cargo xtask jobs-bench`: only the jobs end to end of [`run`].
pub(crate) fn jobs(root: &Path) -> Result<(), String> {
    build_release()?;
    jobs_rows(root)
}

/// One worker's cycle over loopback and over an onion service of a private Tor network
/// (started here, stopped after), per transport. Skipped, saying so, without `tor`.
pub(crate) fn tor(root: &Path) -> Result<(), String> {
    if !Command::new("tor")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("bench: tor rows skipped: `tor` is not installed (apt-get install -y tor)");
        return Ok(());
    }
    let owner = std::process::id();
    let net = std::thread::spawn({
        let root = root.to_owned();
        move || crate::tornet::up(&root, Some(owner))
    });
    let built = build_release();
    let env = net.join().map_err(|_| "the tor-net thread panicked")??;
    let bench = root.join("target/release/rxon-bench");
    let result = built.and_then(|()| {
        for kind in ["http", "ws", "grpc"] {
            for via in [&[][..], &["tor"][..]] {
                let mut args = vec!["cycle", kind, "200"];
                args.extend_from_slice(via);
                let line = run_to_end(Command::new(&bench).args(&args).env("RXON_TOR_NET", &env))?;
                println!("bench: cycle {}", line.trim());
            }
        }
        Ok(())
    });
    crate::tornet::down(root)?;
    result
}

/// Runs one `rxon-bench` measurement and returns the line of figures it prints.
fn one_line(bench: &Path, args: &[&str]) -> Result<String, String> {
    Ok(run_to_end(Command::new(bench).args(args))?
        .trim()
        .to_owned())
}

/// `cmd` as it is shown in messages.
fn shown(cmd: &Command) -> String {
    format!("{cmd:?}").replace('"', "")
}

/// Runs `cmd` to its end and returns its standard output; an error naming the command
/// and its exit status (with its standard error) when it does not exit successfully.
pub(crate) fn run_to_end(cmd: &mut Command) -> Result<String, String> {
    let shown = shown(cmd);
    println!("bench: running {shown}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts a server that announces `LISTENING <url>`; returns it and its command line.
fn start_server(cmd: Command) -> Result<(Peer, String), String> {
    let shown = shown(&cmd);
    println!("bench: starting {shown}");
    Ok((Peer::start(cmd)?, shown))
}

/// Stops a server started by [`start_server`]: an error if it already exited (nothing
/// asked it to), or if it exits with a failure status once its stdin is closed. One that
/// has not exited [`SERVER_EXIT_TIMEOUT`] after that is killed, with a warning.
fn stop_server(mut peer: Peer, shown: &str) -> Result<(), String> {
    let early = peer.child.try_wait().map_err(|e| format!("{shown}: {e}"))?;
    if let Some(status) = early {
        return Err(format!(
            "{shown} exited with {status} before the bench stopped it"
        ));
    }
    drop(peer.child.stdin.take());
    let deadline = Instant::now() + SERVER_EXIT_TIMEOUT;
    loop {
        if let Some(status) = peer.child.try_wait().map_err(|e| format!("{shown}: {e}"))? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("{shown} exited with {status} once stopped"))
            };
        }
        if Instant::now() >= deadline {
            let _ = peer.child.kill();
            let _ = peer.child.wait();
            eprintln!(
                "bench: warning: {shown} did not exit within {}s of its stdin closing; killed",
                SERVER_EXIT_TIMEOUT.as_secs()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Worker-side cost: `HttpTransport` against a bare hyper client making the same
/// requests, both against the bare hyper server, in [`WORKER_SIDE_PAIRS`] pairs run back
/// to back (which goes first alternates), so that each ratio compares two runs made
/// under the same load of the machine. Prints each pair, then the median and the spread.
fn worker_side(bench: &Path) -> Result<(), String> {
    let mut ratios = Vec::with_capacity(WORKER_SIDE_PAIRS);
    for pair in 0..WORKER_SIDE_PAIRS {
        let mut order = [("load", 0.0), ("load-hyper", 0.0)];
        if pair % 2 == 1 {
            order.reverse();
        }
        for (mode, into) in &mut order {
            let mut server = Command::new(bench);
            server.args(["serve", "hyper"]);
            let (peer, server_shown) = start_server(server)?;
            // Pinned, so no protocol probe: the same requests as the bare client.
            let out = run_to_end(
                Command::new(bench)
                    .args([*mode, &peer.url, &WORKERS.to_string(), &SECONDS.to_string()])
                    .env("RXON_BENCH_PROTOCOL", "1.0b3"),
            );
            stop_server(peer, &server_shown)?;
            let f = parse("client", &out?, false)?;
            if f.errors > 0 {
                return Err(format!("{mode}: {} failed cycles", f.errors));
            }
            *into = f.client_ms_per_1000;
        }
        let of = |mode: &str| {
            order
                .iter()
                .find(|(m, _)| *m == mode)
                .map_or(0.0, |(_, v)| *v)
        };
        let (ours, bare) = (of("load"), of("load-hyper"));
        let ratio = ours / bare.max(f64::EPSILON);
        println!(
            "bench: worker side pair {}: HttpTransport {ours:.1} ms CPU per 1000 cycles, bare hyper client {bare:.1} ms: {ratio:.2}x",
            pair + 1
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let (low, high) = (ratios[0], ratios[ratios.len() - 1]);
    println!(
        "bench: worker side: HttpTransport / bare hyper client CPU per cycle, {} pairs: median {:.2}x, spread {low:.2}x to {high:.2}x, pairs at or under 1.2x: {}",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios.iter().filter(|r| **r <= 1.2).count()
    );
    Ok(())
}

/// The figures of one `rxon-bench load` line; `server`: it must carry `server_cpu_s`
/// (it was given the server's process id).
fn parse(name: &'static str, text: &str, server: bool) -> Result<Figures, String> {
    let field = |key: &str| json_field(text, key).map_err(|e| format!("{name}: {e}"));
    let cycles = field("cycles")?.max(1.0);
    let server_cpu_s = if server { field("server_cpu_s")? } else { 0.0 };
    Ok(Figures {
        name,
        cycles_per_s: field("cycles_per_s")?,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        errors: field("errors")? as u64,
        client_ms_per_1000: field("client_cpu_s")? * 1e6 / cycles,
        server_ms_per_1000: server_cpu_s * 1e6 / cycles,
    })
}

/// The number under `key` in a line of JSON figures printed by `rxon-bench`.
pub(crate) fn json_field(text: &str, key: &str) -> Result<f64, String> {
    let at = text
        .find(&format!("\"{key}\":"))
        .ok_or_else(|| format!("no {key} in {text:?}"))?;
    let rest = &text[at + key.len() + 3..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .map_err(|e| format!("{key}: {e}"))
}
