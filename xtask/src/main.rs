//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci [--skip-tests]`: every check `.ci/run` runs, in the same order; stops at the
//!   first failure (the declared MSRV, fmt, docs-check, codegen, clippy, tests, each feature alone,
//!   docs, zero-dependency check, cargo deny, interop). `--skip-tests` leaves out the
//!   workspace tests, for `.ci/run`, which has just run them as the README says.
//! - `deps-check`: only the zero-dependency check of `rxon-core`.
//! - `docs-check`: each published crate's documentation has an example, its feature
//!   table and its MSRV; the umbrella's feature lists match its Cargo.toml (also a
//!   part of `ci`).
//! - `bench`: poll → result throughput of every listener, the Python reference and a
//!   bare hyper server on loopback, with ratios (see docs/performance.md).
//! - `codegen [--check]`: regenerate (or check) the gRPC code from `proto/` (re-runs
//!   xtask with its `codegen` feature, the only command that compiles protox).
//! - `interop`: the Python reference `rxon==1.0b3` (installed into a venv under
//!   `target/`) against our HTTP listener and transport, both directions, on loopback.
//! - `soak [tasks] [races]`: the fault tests (`crates/rxon/tests/it/faults.rs`) at soak size
//!   (default 3,000 tasks per transport and 3,000 hand-off races), release build.
//! - `deny`: `cargo deny check bans licenses sources` (needs `cargo-deny` installed;
//!   `.ci/run` installs it).
//! - `tor-net up|down`: a private Tor network on 127.0.0.1 (needs `tor`); `up` prints
//!   the `RXON_TOR_NET` file the Tor tests read.
//! - `tor-test`: a private Tor network for the length of the Tor tests (the ones named
//!   `tor::`, ignored by a plain `cargo test`), then stopped.
//! - `jobs-bench`: jobs end to end through `rxon orchestrator` and the `worker` example
//!   (each transport), avtomatika with its SDK, and avtomatika with our worker (also a
//!   part of `bench`).
//! - `tor-bench`: one worker's cycle (poll + result) over loopback and over an onion
//!   service of a private Tor network, per transport (also the last part of `bench`).
#![allow(clippy::print_stdout)]

mod bench;
#[cfg(feature = "codegen")]
mod codegen;
mod docs;
mod interop;
mod jobs;
mod tornet;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Features of the `rxon` crate that must each build alone.
const FEATURES: &[&str] = &[
    "http",
    "ws",
    "grpc",
    "blob",
    "orchestrator",
    "testing",
    "serde",
    "worker",
    "wire",
    "schema",
    "tor-control",
    "tor",
    "metrics",
    "otel",
];

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(std::env::args().nth(2).as_deref() == Some("--skip-tests")),
        Some("deps-check") => deps_check(),
        Some("docs-check") => docs::check(&workspace_root()),
        Some("interop") => interop::run(&workspace_root()),
        Some("bench") => bench::run(&workspace_root()),
        Some("soak") => soak(
            std::env::args().nth(2).as_deref().unwrap_or("3000"),
            std::env::args().nth(3).as_deref().unwrap_or("3000"),
        ),
        Some("deny") => deny(),
        Some("tor-net") => match std::env::args().nth(2).as_deref() {
            Some("up") => tornet::up(&workspace_root(), None).map(|_| ()),
            Some("down") => tornet::down(&workspace_root()),
            _ => Err("usage: cargo xtask tor-net up|down".into()),
        },
        Some("tor-test") => tor_test(),
        Some("tor-bench") => bench::tor(&workspace_root()),
        Some("jobs-bench") => bench::jobs(&workspace_root()),
        Some("codegen") => codegen(std::env::args().nth(2).as_deref() == Some("--check")),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci [--skip-tests]|deps-check|docs-check|interop|bench|soak [tasks] [races]|deny|codegen [--check]|tor-net up|down|tor-test|tor-bench|jobs-bench>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The Tor tests on a private network started for them (its start overlaps the build).
fn tor_test() -> Result<(), String> {
    let root = workspace_root();
    let owner = std::process::id();
    let net = std::thread::spawn({
        let root = root.clone();
        move || tornet::up(&root, Some(owner))
    });
    let built = cargo(&["test", "--workspace", "--all-features", "--no-run"]);
    let env = net.join().map_err(|_| "the tor-net thread panicked")??;
    let result = built.and_then(|()| {
        run(Command::new(cargo_bin())
            .args([
                "test",
                "--workspace",
                "--all-features",
                "--no-fail-fast",
                "--",
                "--ignored",
                "tor::",
            ])
            .env("RXON_TOR_NET", &env))
    });
    tornet::down(&root)?;
    result
}

/// The fault tests at soak size; each prints its figures.
fn soak(tasks: &str, races: &str) -> Result<(), String> {
    for (name, value) in [("tasks", tasks), ("races", races)] {
        value
            .parse::<usize>()
            .map_err(|_| format!("{name} must be a number, got {value:?}"))?;
    }
    run(Command::new(cargo_bin())
        .args([
            "test",
            "--release",
            "-p",
            "rxon",
            "--all-features",
            "--test",
            "it",
            "--",
            "faults::",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RXON_SOAK_TASKS", tasks)
        .env("RXON_SOAK_RACES", races))?;
    // The same across listener processes on one Redis (needs redis-server).
    run(Command::new(cargo_bin())
        .args([
            "test",
            "--release",
            "-p",
            "rxon-bench",
            "--test",
            "scale_out",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("RXON_SOAK_TASKS", tasks)
        .env("RXON_SOAK_RACES", races))
}

/// `codegen [--check]`, in this process when built with the `codegen` feature,
/// otherwise in a build of xtask that has it.
fn codegen(check: bool) -> Result<(), String> {
    #[cfg(feature = "codegen")]
    {
        codegen::run(&workspace_root(), check)
    }
    #[cfg(not(feature = "codegen"))]
    {
        let mut args = vec![
            "run",
            "--quiet",
            "-p",
            "xtask",
            "--features",
            "codegen",
            "--",
            "codegen",
        ];
        if check {
            args.push("--check");
        }
        cargo(&args)
    }
}

/// The declared `rust-version` must be the toolchain that builds this: a claim CI
/// does not build is no claim.
fn msrv_check() -> Result<(), String> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    let declared = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .ok_or("Cargo.toml declares no rust-version")?;
    let out = Command::new("rustc")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    let built = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.rsplit_once('.').map(|(mm, _)| mm.to_owned()))
        .ok_or_else(|| format!("cannot read {version:?}"))?;
    if built == declared {
        println!("xtask: the declared MSRV {declared} is the toolchain building this ({version})");
        Ok(())
    } else {
        Err(format!(
            "rust-version is {declared} but this builds with {}: build the claim or change it",
            version.trim()
        ))
    }
}

fn ci(skip_tests: bool) -> Result<(), String> {
    msrv_check()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    docs::check(&workspace_root())?;
    codegen(true)?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ])?;
    if skip_tests {
        println!("xtask: workspace tests skipped (--skip-tests: the caller ran them)");
    } else {
        cargo(&["test", "--workspace", "--all-features"])?;
    }
    // The umbrella with every transport off, in a workspace of its own (inside this one
    // the umbrella's dev-dependencies would turn the features back on): every built-in
    // scheme must fail with an error naming its feature.
    cargo(&[
        "test",
        "--manifest-path",
        "xtask/feature-off/Cargo.toml",
        "--target-dir",
        "target/feature-off",
    ])?;
    // The dialer without the embedded Tor client: an onion with no proxy, and
    // `proxy = "arti"`, are configuration errors naming the way out (a case that only
    // compiles without `tor`, which the all-features run above turns on).
    cargo(&["test", "-p", "rxon-net", "--test", "it"])?;
    check_without_warnings(&[])?;
    for feature in FEATURES {
        check_without_warnings(&["--features", feature])?;
    }
    run(Command::new(cargo_bin())
        .args(["doc", "--workspace", "--all-features", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    deps_check()?;
    deny()?;
    interop::run(&workspace_root())
}

/// Licenses, duplicate crates and sources (deny.toml); the parts that need no network.
fn deny() -> Result<(), String> {
    let installed = Command::new(cargo_bin())
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        return Err("cargo-deny is not installed: cargo install cargo-deny --locked".into());
    }
    cargo(&["deny", "check", "bans", "licenses", "sources"])
}

/// `rxon-core` must have no normal dependencies with its default features.
fn deps_check() -> Result<(), String> {
    let out = Command::new(cargo_bin())
        .args([
            "tree",
            "-p",
            "rxon-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = tree.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.as_slice() {
        [only] if only.starts_with("rxon-core ") => {
            println!("xtask: rxon-core has no dependencies ({only})");
            Ok(())
        }
        _ => Err(format!(
            "rxon-core must have no dependencies, cargo tree says:\n{tree}"
        )),
    }
}

/// `cargo check -p rxon --no-default-features` plus `extra`, failing on any warning
/// (a feature combination that compiles with unused code is a bug too).
fn check_without_warnings(extra: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(cargo_bin());
    cmd.args(["check", "-p", "rxon", "--no-default-features"])
        .args(extra)
        .current_dir(workspace_root());
    let shown = format!("{cmd:?}").replace('"', "");
    println!("xtask: running {shown}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("warning:") {
        eprintln!("{stderr}");
        return Err(format!("{shown}: failed or warned"));
    }
    Ok(())
}

pub(crate) fn cargo(args: &[&str]) -> Result<(), String> {
    run(Command::new(cargo_bin()).args(args))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    cmd.current_dir(workspace_root());
    let shown = format!("{cmd:?}").replace('"', "");
    println!("xtask: running {shown}");
    let start = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    println!("xtask: {:.1}s for {shown}", start.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `rxon orchestrator`, from the `rxon` binary built beside `examples` (a
/// `target/<profile>/examples` directory).
pub(crate) fn rxon_orchestrator(examples: &std::path::Path) -> Command {
    let bin = examples.parent().unwrap_or(examples).join("rxon");
    let mut command = Command::new(bin);
    command.arg("orchestrator");
    command
}
