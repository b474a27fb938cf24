//! A real S3-compatible server for blob storage tests: [moto](https://pypi.org/project/moto/)
//! in server mode, started on `127.0.0.1` on a port the kernel picks, stopped on drop.
//!
//! moto is installed on first use with `python3 -m pip install --target` into
//! `target/s3-pylib` (pinned to [`MOTO_VERSION`]); set `RXON_MOTO_PYTHONPATH` to use an
//! existing installation and `RXON_PYTHON` to pick the interpreter. Starting fails with
//! a message saying why (no Python, no network for the first install, the server did not
//! come up in time): a test using this server fails rather than skips.
//!
//! moto accepts any credentials and does not check signatures. [`MotoServer::request`]
//! sends raw, unsigned requests, for inspecting what a client left behind (for example
//! unfinished multipart uploads) or storing objects no client would write.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The moto release installed on first use.
pub const MOTO_VERSION: &str = "5.2.5";

/// How long the server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Limit on one raw request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A running moto server; killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Installs moto if needed and starts a server. Blocks until it listens (at most
    /// 90 s after the installation).
    pub fn start() -> Result<Self, String> {
        let pythonpath = python_lib()?;
        let mut child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONPATH", &pythonpath)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} -m moto.server: {e}", python()))?;
        let stderr = child.stderr.take().ok_or("moto server: no stderr pipe")?;
        let (tx, rx) = mpsc::channel();
        // Reads the startup line, then keeps draining so the server never blocks on a
        // full pipe; ends when the server exits.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(port) = listening_port(&line) {
                    let _ = tx.send(Ok(port));
                    sent = true;
                } else if !sent {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let mut output = Vec::new();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(port)) => return Ok(MotoServer { child, port }),
                Ok(Err(line)) => output.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "moto server did not start listening within {START_TIMEOUT:?}; it printed:\n{}",
                        output.join("\n")
                    ));
                }
            }
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), String> {
        let (status, body) = self.request("PUT", &format!("/{bucket}"), b"")?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("creating bucket {bucket}: HTTP {status}: {body}"))
        }
    }

    /// Sends one unsigned request with `Connection: close` and returns the status and
    /// the body as text.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let err = |e: std::io::Error| format!("{method} {target}: {e}");
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(err)?;
        stream
            .set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(err)?;
        stream
            .set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(err)?;
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(err)?;
        stream.write_all(body).map_err(err)?;
        let mut raw = Vec::new();
        stream
            .take(64 * 1024 * 1024)
            .read_to_end(&mut raw)
            .map_err(err)?;
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {target}: no HTTP status in {text:.200}"))?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((status, body.to_owned()))
    }

    /// Keys of the multipart uploads started and neither completed nor aborted in
    /// `bucket` (`ListMultipartUploads`).
    pub fn pending_multipart_uploads(&self, bucket: &str) -> Result<Vec<String>, String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"), b"")?;
        if status != 200 {
            return Err(format!(
                "listing uploads of {bucket}: HTTP {status}: {body}"
            ));
        }
        Ok(body
            .split("<Upload>")
            .skip(1)
            .filter_map(|u| {
                let start = u.find("<Key>")? + "<Key>".len();
                let end = u[start..].find("</Key>")? + start;
                Some(u[start..end].to_owned())
            })
            .collect())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("Running on http://127.0.0.1:").nth(1)?;
    rest.trim().trim_end_matches('/').parse().ok()
}

fn python() -> String {
    std::env::var("RXON_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
}

/// The directory holding moto: installed once, then reused. Concurrent first uses in each
/// process install into their own directory and the first rename wins.
fn python_lib() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("RXON_MOTO_PYTHONPATH") {
        return Ok(dir.into());
    }
    // One installation per process at a time; other processes race by rename.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = target_dir().join(format!("s3-pylib-{MOTO_VERSION}"));
    let marker = ".rxon-complete";
    if dir.join(marker).exists() {
        return Ok(dir);
    }
    let tmp = target_dir().join(format!("s3-pylib.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let output = Command::new(python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-conflicts",
            "--target",
        ])
        .arg(&tmp)
        .arg(format!("moto[s3,server]=={MOTO_VERSION}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} -m pip: {e}", python()))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "installing moto {MOTO_VERSION} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::write(tmp.join(marker), MOTO_VERSION).map_err(|e| e.to_string())?;
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(marker).exists() {
            return Err(format!("cannot move moto into {}", dir.display()));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::listening_port;

    #[test]
    fn reads_the_port_werkzeug_prints() {
        assert_eq!(
            listening_port(" * Running on http://127.0.0.1:34859"),
            Some(34859)
        );
        assert_eq!(
            listening_port("WARNING: This is a development server."),
            None
        );
    }
}
