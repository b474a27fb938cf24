//! One task run by a shell command: params in, result out, progress from stderr,
//! cancellation by signals to the command's process group.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rxon::worker::{TaskContext, TaskFailure};
use rxon::{Map, TaskPayload};
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The largest result a command may print.
pub(crate) const MAX_STDOUT: usize = 16 << 20;
/// `RXON_PARAMS` is set up to this size (the environment has a limit; stdin has none).
pub(crate) const MAX_PARAMS_ENV: usize = 64 << 10;
/// How much of stderr explains a failure.
pub(crate) const STDERR_TAIL: usize = 4 << 10;
/// The longest stderr line read whole (progress lines are short); longer ones are cut.
const MAX_LINE: usize = 4 << 10;
/// After the command exits, how long its stdout and stderr may stay open (a background
/// process holding them) before they are left unread.
const DRAIN: Duration = Duration::from_secs(1);
/// `EX_TEMPFAIL` (sysexits.h): the command says "try again later".
const EXIT_TRANSIENT: i32 = 75;

/// `--skill NAME=COMMAND`.
#[derive(Clone, Debug)]
pub(crate) struct Skill {
    pub(crate) name: String,
    pub(crate) command: String,
}

impl FromStr for Skill {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let Some((name, command)) = s.split_once('=') else {
            return Err(format!("{s:?} is not NAME=COMMAND"));
        };
        rxon::validate::validate_identifier(name, "skill name").map_err(|e| e.to_string())?;
        if command.trim().is_empty() {
            return Err(format!("skill {name:?} has an empty command"));
        }
        Ok(Skill {
            name: name.to_owned(),
            command: command.to_owned(),
        })
    }
}

/// The command's process group, killed when the task ends without the command's
/// normal exit (cancelled, timed out, shut down): nothing it started keeps running.
struct Group {
    pid: Option<Pid>,
}

impl Group {
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid {
            // ESRCH: already gone.
            let _ = killpg(pid, signal);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// Runs `skill`'s command for `task`; see `rxon worker --help` for the contract.
pub(crate) async fn run(
    skill: Arc<Skill>,
    task: TaskPayload,
    ctx: TaskContext,
    term_grace: Duration,
) -> Result<Map, TaskFailure> {
    let params = serde_json::to_vec(&task.params)
        .map_err(|e| TaskFailure::internal(format!("cannot encode the params: {e}")))?;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&skill.command)
        .env("RXON_TASK_ID", &task.task_id)
        .env("RXON_JOB_ID", &task.job_id)
        .env("RXON_TASK_TYPE", &task.task_type)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // Nothing of the worker's own environment that is not the task's: its secrets,
    // and a trace or params of its own that this task would seem to carry.
    for inherited in [
        "RXON_WORKER_TOKEN",
        "RXON_TASK_KEY",
        "RXON_PROXY",
        "RXON_PARAMS",
        "TRACEPARENT",
        "TRACESTATE",
    ] {
        command.env_remove(inherited);
    }
    // The task's trace, for a program that continues it (OpenTelemetry SDKs read these).
    for (key, value) in crate::trace::context(|k| task.tracing_context.get(k).map(String::as_str)) {
        command.env(key.to_ascii_uppercase(), value);
    }
    if params.len() <= MAX_PARAMS_ENV {
        command.env("RXON_PARAMS", String::from_utf8_lossy(&params).as_ref());
    }
    let mut child = command.spawn().map_err(|e| {
        TaskFailure::internal(format!("cannot start `sh -c {:?}`: {e}", skill.command))
    })?;
    let mut group = Group {
        pid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(TaskFailure::internal("the command's pipes are missing"));
    };
    // A command that does not read its stdin just closes it.
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&params).await;
    });
    let mut stdout = tokio::spawn(read_bounded(stdout, MAX_STDOUT));
    let mut lines = Lines::new(stderr);
    let mut stderr_open = true;
    let mut exited: Option<ExitStatus> = None;
    let mut drained_by: Option<tokio::time::Instant> = None;
    let mut output: Option<Option<Vec<u8>>> = None;
    loop {
        if exited.is_some() && output.is_some() && !stderr_open {
            break;
        }
        let drain = async {
            match drained_by {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.next(), if stderr_open => match line {
                Some(line) => match progress(&line) {
                    Some((fraction, message)) => ctx.progress(fraction, message).await,
                    None => {
                        tracing::debug!(task_id = %task.task_id, stderr = %line, "command");
                        lines.keep(line);
                    }
                },
                None => stderr_open = false,
            },
            read = &mut stdout, if output.is_none() => {
                let read = read.unwrap_or(None);
                if read.is_none() {
                    // Over the limit: the command is stopped, not left blocked on a
                    // full pipe.
                    group.signal(Signal::SIGKILL);
                }
                output = Some(read);
            }
            status = child.wait(), if exited.is_none() => {
                let status = status.map_err(|e| {
                    TaskFailure::internal(format!("cannot wait for the command: {e}"))
                })?;
                exited = Some(status);
                drained_by = Some(tokio::time::Instant::now() + DRAIN);
            }
            () = drain => {
                // Something the command started still holds its output open.
                stdout.abort();
                output.get_or_insert(Some(Vec::new()));
                stderr_open = false;
            }
            () = ctx.cancelled() => {
                group.signal(Signal::SIGTERM);
                if tokio::time::timeout(term_grace, child.wait()).await.is_err() {
                    group.signal(Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                feed.abort();
                return Err(TaskFailure::permanent("cancelled"));
            }
        }
    }
    feed.abort();
    // The command exited by itself: its group is left alone from here.
    group.pid = None;
    let status = exited.unwrap_or_default();
    let Some(Some(stdout)) = output else {
        return Err(TaskFailure::permanent(format!(
            "the command printed more than {} MiB",
            MAX_STDOUT >> 20
        )));
    };
    if !status.success() {
        let tail = lines.tail();
        let message = format!("the command ended with {status}: {tail}");
        return Err(match status.code() {
            Some(EXIT_TRANSIENT) => TaskFailure::transient(message),
            _ => TaskFailure::permanent(message),
        });
    }
    Ok(result_data(&stdout))
}

/// The result's data from what the command printed: a JSON object as it is, anything
/// else as `{"stdout": TEXT}`.
pub(crate) fn result_data(stdout: &[u8]) -> Map {
    // Only a JSON object deserializes as a map.
    if let Ok(map) = serde_json::from_slice::<Map>(stdout) {
        return map;
    }
    let mut data = Map::new();
    data.insert(
        "stdout".into(),
        String::from_utf8_lossy(stdout).into_owned().into(),
    );
    data
}

/// `rxon-progress FRACTION [MESSAGE]`: the fraction (clamped to 0..=1) and message.
pub(crate) fn progress(line: &str) -> Option<(f64, Option<&str>)> {
    let rest = line.strip_prefix("rxon-progress ")?;
    let (fraction, message) = match rest.split_once(' ') {
        Some((f, m)) => (f, Some(m.trim()).filter(|m| !m.is_empty())),
        None => (rest.trim(), None),
    };
    let fraction: f64 = fraction.parse().ok().filter(|f: &f64| f.is_finite())?;
    Some((fraction.clamp(0.0, 1.0), message))
}

/// Everything `reader` yields, or `None` past `limit` bytes.
async fn read_bounded(reader: impl AsyncRead + Unpin, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let read = reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .await;
    match read {
        Ok(_) if out.len() as u64 <= limit => Some(out),
        _ => None,
    }
}

/// Stderr as lines, each at most [`MAX_LINE`] bytes, and the tail of those kept.
struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
    eof: bool,
    kept: VecDeque<String>,
    kept_bytes: usize,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            buffer: Vec::new(),
            eof: false,
            kept: VecDeque::new(),
            kept_bytes: 0,
        }
    }

    /// The next line, without its newline; `None` at the end.
    async fn next(&mut self) -> Option<String> {
        loop {
            // A newline within the first MAX_LINE bytes ends a line; past them the
            // line is cut.
            let newline = self
                .buffer
                .iter()
                .take(MAX_LINE + 1)
                .position(|b| *b == b'\n');
            if let Some(end) = newline {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(text(&line[..line.len() - 1]));
            }
            if self.buffer.len() >= MAX_LINE || (self.eof && !self.buffer.is_empty()) {
                let cut = self.buffer.len().min(MAX_LINE);
                let line: Vec<u8> = self.buffer.drain(..cut).collect();
                return Some(text(&line));
            }
            if self.eof {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.reader.read(&mut chunk).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Keeps `line` in the tail.
    fn keep(&mut self, line: String) {
        self.kept_bytes += line.len() + 1;
        self.kept.push_back(line);
        while self.kept_bytes > STDERR_TAIL && self.kept.len() > 1 {
            if let Some(old) = self.kept.pop_front() {
                self.kept_bytes -= old.len() + 1;
            }
        }
    }

    /// The kept lines, joined; "no output on stderr" when there are none.
    fn tail(&self) -> String {
        if self.kept.is_empty() {
            return "no output on stderr".into();
        }
        let joined: Vec<&str> = self.kept.iter().map(String::as_str).collect();
        let text = joined.join("\n");
        let start = text.len().saturating_sub(STDERR_TAIL);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches('\r')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_are_name_equals_command() {
        let s: Skill = "resize=convert - -resize 50% -".parse().unwrap();
        assert_eq!(s.name, "resize");
        assert_eq!(s.command, "convert - -resize 50% -");
        let s: Skill = "math=echo $((1+1))=2".parse().unwrap();
        assert_eq!(s.command, "echo $((1+1))=2", "only the first = splits");
        for bad in ["nocommand", "=cat", "x=", "x=  ", "bad name=cat"] {
            assert!(bad.parse::<Skill>().is_err(), "{bad}");
        }
    }

    #[test]
    fn progress_lines_are_read_and_clamped() {
        assert_eq!(progress("rxon-progress 0.5"), Some((0.5, None)));
        assert_eq!(
            progress("rxon-progress 0.25 resizing  "),
            Some((0.25, Some("resizing")))
        );
        assert_eq!(progress("rxon-progress 7 done"), Some((1.0, Some("done"))));
        assert_eq!(progress("rxon-progress -1"), Some((0.0, None)));
        for other in [
            "rxon-progress",
            "rxon-progress NaN",
            "progress 0.5",
            "rxon-progress x",
        ] {
            assert_eq!(progress(other), None, "{other}");
        }
    }

    #[test]
    fn stdout_is_the_data_when_it_is_an_object() {
        let data = result_data(br#"{"n": 2, "s": "x"}"#);
        assert_eq!(data["n"].as_i64(), Some(2));
        for other in [&b"[1,2]"[..], b"hello\n", b"", b"\"text\""] {
            let data = result_data(other);
            assert_eq!(data.len(), 1);
            assert_eq!(
                data["stdout"].as_str(),
                Some(String::from_utf8_lossy(other).as_ref())
            );
        }
    }

    #[tokio::test]
    async fn stderr_lines_are_bounded_and_the_tail_is_kept() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("first\r\n{long}\nlast");
        let mut lines = Lines::new(input.as_bytes());
        assert_eq!(lines.next().await.as_deref(), Some("first"));
        assert_eq!(lines.next().await.map(|l| l.len()), Some(MAX_LINE));
        assert_eq!(lines.next().await.as_deref(), Some("xxxxxxxxxx"));
        assert_eq!(lines.next().await.as_deref(), Some("last"));
        assert_eq!(lines.next().await, None);
        for i in 0..2000 {
            lines.keep(format!("line {i}"));
        }
        let tail = lines.tail();
        assert!(tail.len() <= STDERR_TAIL, "{}", tail.len());
        assert!(tail.ends_with("line 1999"), "{tail}");
    }

    #[tokio::test]
    async fn reads_are_bounded() {
        assert_eq!(
            read_bounded(&b"12345"[..], 5).await,
            Some(b"12345".to_vec())
        );
        assert_eq!(read_bounded(&b"123456"[..], 5).await, None);
    }
}
