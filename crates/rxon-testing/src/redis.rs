//! A real Redis server for tests of the shared storage: the distribution's
//! `redis-server`, started on `127.0.0.1` on a free port with its own temporary
//! directory and the append-only file on (`appendfsync always` unless asked otherwise:
//! nothing acknowledged is lost when it is killed), stopped on drop.
//!
//! The binary is `redis-server` from `PATH`, or `RXON_REDIS_SERVER`. Starting fails
//! with a message saying why (not installed, did not come up in time): a test using
//! this server fails rather than skips. On Debian or Ubuntu:
//! `apt-get install -y redis-server`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to answer `PING` after starting.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit on one raw command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`; killed when dropped (its directory removed).
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    appendfsync: String,
}

fn binary() -> String {
    std::env::var("RXON_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl RedisServer {
    /// Starts a server on a free loopback port. Blocks until it answers (at most
    /// 20 s).
    pub fn start() -> Result<Self, String> {
        Self::start_with_appendfsync("always")
    }

    /// The same with another `appendfsync` policy (`always`, `everysec`, `no`):
    /// `everysec` saves an fsync per write and may lose up to a second of writes when
    /// the server is killed.
    pub fn start_with_appendfsync(policy: &str) -> Result<Self, String> {
        if !["always", "everysec", "no"].contains(&policy) {
            return Err(format!("unknown appendfsync policy {policy:?}"));
        }
        let dir = std::env::temp_dir().join(format!(
            "rxon-redis-{}-{}",
            std::process::id(),
            crate::redis::unique()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // A port another process takes between the check and the start makes the
        // server exit; try another one.
        let mut last = String::new();
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port()?,
                dir: dir.clone(),
                appendfsync: policy.to_owned(),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let child = Command::new(binary())
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                &self.appendfsync,
                "--logfile",
                "redis.log",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (install it: apt-get install -y redis-server, \
                     or point RXON_REDIS_SERVER at the binary)",
                    binary()
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reply) = self.command(&["PING"])
                && reply.starts_with("+PONG")
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "redis-server exited ({status}) on port {}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "redis-server did not answer on 127.0.0.1:{} within {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (`None` while it is not running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL and starts it again on the same port and
    /// directory: it reloads its append-only file.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command (arguments without spaces or line breaks) and returns the
    /// raw reply.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let err = |e: std::io::Error| format!("{args:?}: {e}");
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(err)?;
        s.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(err)?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).map_err(err)?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).map_err(err)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A number not handed out before in this process.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_keeps_data_across_a_kill() {
        let mut server = RedisServer::start().unwrap();
        assert!(server.url().starts_with("redis://127.0.0.1:"));
        assert_eq!(server.command(&["SET", "k", "v"]).unwrap(), "+OK\r\n");
        server.restart().unwrap();
        assert_eq!(server.command(&["GET", "k"]).unwrap(), "$1\r\nv\r\n");
    }
}
