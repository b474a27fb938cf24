//! `rxon`: the RXON command line.
//!
//! ```text
//! rxon orchestrator --listen 127.0.0.1:8080 --token secret
//! rxon worker --url http://127.0.0.1:8080 --worker-id w1 --token secret \
//!     --skill 'resize=convert - -resize "$(jq -r .width <<<"$RXON_PARAMS")" -' \
//!     --skill 'echo=cat'
//! ```
//!
//! See `rxon orchestrator --help` for the admin API and `rxon worker --help` for how
//! a program becomes a skill.

mod admin;
mod command;
mod orchestrator;
mod probe;
mod trace;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The RXON command line.
#[derive(Parser, Debug)]
#[command(
    name = "rxon",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 on success; 2 when a command cannot run (its options, an \
                  address it cannot bind or reach); `rxon probe` exits 1 when a check fails."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an orchestrator: workers connect to it, an admin API feeds it tasks.
    #[command(long_about = orchestrator::LONG_ABOUT)]
    Orchestrator(orchestrator::Args),
    /// Check a live orchestrator against the protocol and print a report.
    #[command(long_about = probe::LONG_ABOUT)]
    Probe(probe::Args),
    /// Serve skills with programs: each task of a skill runs its command.
    #[command(long_about = worker::LONG_ABOUT)]
    Worker(worker::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The probe's report is its output; its transports' routine logs are not.
    let level = match cli.command {
        Command::Probe(_) => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let outcome = match cli.command {
        Command::Orchestrator(args) => orchestrator::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Worker(args) => worker::run(args).await.map(|()| ExitCode::SUCCESS),
        // 1: a check failed; 2 (below): the probe could not run.
        Command::Probe(args) => probe::run(args).await.map(|passed| {
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("rxon: {e}");
        ExitCode::from(2)
    })
}
