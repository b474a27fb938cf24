//! `rxon worker`: a worker whose skills are shell commands.

use crate::command::{self, Skill};
use rxon::TransportConfig;
use rxon::worker::Worker;
use std::sync::Arc;
use std::time::Duration;

/// The long help of `rxon worker`: the contract between a task and its command.
pub(crate) const LONG_ABOUT: &str = "\
Serve skills with programs. `--skill NAME=COMMAND` (repeatable) runs COMMAND with
`sh -c` for every task of skill NAME:

  stdin     the task's params, as a JSON object, then closed
  env       RXON_TASK_ID, RXON_JOB_ID, RXON_TASK_TYPE, and RXON_PARAMS (the same JSON,
            when it is at most 64 KiB); TRACEPARENT and TRACESTATE (W3C Trace
            Context) when the task carries a trace, for a program that continues it
  stdout    the result: a JSON object is the result's data; anything else becomes
            {\"stdout\": TEXT}. At most 16 MiB.
  stderr    a line `rxon-progress FRACTION [MESSAGE]` (FRACTION from 0 to 1) reports
            progress; other lines are logged, and the last 4 KiB of them explain a
            failure
  exit      0: success. 75 (EX_TEMPFAIL): a transient failure (the orchestrator may
            retry elsewhere). Anything else, or a signal: a permanent failure.
  cancel    the command's process group gets SIGTERM, then SIGKILL after
            --cancel-grace; the task is reported cancelled
";

/// `rxon worker`'s options.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Orchestrator URL: http(s)://, ws(s)://, grpc(s)://.
    #[arg(long, env = "RXON_URL")]
    url: String,
    /// This worker's id.
    #[arg(long, env = "RXON_WORKER_ID")]
    worker_id: String,
    /// The worker credential.
    #[arg(
        long,
        env = "RXON_WORKER_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    token: String,
    /// A skill and the command that serves it: NAME=COMMAND (repeat for several).
    #[arg(long = "skill", value_name = "NAME=COMMAND", required = true)]
    skills: Vec<Skill>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds a cancelled command has between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 5.0)]
    cancel_grace: f64,
    /// Seconds a task may run before it is killed and fails (none by default).
    #[arg(long)]
    task_timeout: Option<f64>,
    /// Protocol generation: `auto` (default: ask the orchestrator), `1.0b3` or `1.0b17`.
    #[arg(long, env = "RXON_PROTOCOL")]
    protocol: Option<String>,
    /// The orchestrator's task-signing key: 1.0b17 tasks whose `sig` does not verify
    /// are refused.
    #[arg(long, env = "RXON_TASK_KEY", hide_env_values = true)]
    task_key: Option<String>,
    /// Dial through this proxy: `socks5h://[user:pass@]host:port`.
    #[arg(long, env = "RXON_PROXY", hide_env_values = true)]
    proxy: Option<String>,
}

/// Seconds given on the command line as a duration: finite, 0 to a day.
pub(crate) fn seconds(value: f64, what: &str) -> rxon::Result<Duration> {
    if value.is_finite() && (0.0..=86_400.0).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(rxon::RxonError::config(format!(
            "{what} must be 0 to 86400 seconds, not {value}"
        )))
    }
}

/// Runs the worker until Ctrl-C or SIGTERM: running tasks finish, then it stops.
pub(crate) async fn run(args: Args) -> rxon::Result<()> {
    let mut config = TransportConfig::new(&args.url, &args.worker_id, &args.token);
    if let Some(p) = args.proxy.as_deref().filter(|p| !p.trim().is_empty()) {
        config.options.proxy = Some(p.parse()?);
    }
    if let Some(p) = &args.protocol {
        config.options.protocol = p.parse()?;
    }
    config.options.task_key = args.task_key;
    let term_grace = seconds(args.cancel_grace, "--cancel-grace")?;
    let transport = rxon::create_transport_from_config(&config)?;
    let mut builder = Worker::builder(transport)
        .max_concurrent_tasks(args.concurrency.max(1))
        // The runtime stops waiting a little after the command's own grace: by then
        // the command got SIGKILL.
        .cancel_grace(term_grace + Duration::from_secs(1));
    if let Some(t) = args.task_timeout {
        builder = builder.task_timeout(seconds(t, "--task-timeout")?);
    }
    let names: Vec<String> = args.skills.iter().map(|s| s.name.clone()).collect();
    for skill in args.skills {
        let skill = Arc::new(skill);
        builder = builder.handler(&skill.name.clone(), move |task, ctx| {
            command::run(skill.clone(), task, ctx, term_grace)
        });
    }
    let worker = builder.build()?;
    tracing::info!(url = %args.url, worker_id = %args.worker_id, skills = ?names, "worker starting");
    worker.run_until_signal().await?;
    let stats = worker.stats();
    tracing::info!(?stats, "worker stopped");
    Ok(())
}
