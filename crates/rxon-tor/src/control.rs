//! A client of the tor daemon's control protocol (control-spec.txt), for what an
//! orchestrator needs: authenticate, publish an onion service that forwards to a
//! loopback listener (`ADD_ONION`), learn when its descriptor is on the directories
//! (`HS_DESC UPLOADED`), remove it (`DEL_ONION`).
//!
//! ```no_run
//! # async fn demo() -> rxon_core::Result<()> {
//! use rxon_tor::control::{ControlAddr, OnionSpec, TorControl};
//! use std::time::Duration;
//! let mut tor = TorControl::connect(&"127.0.0.1:9051".parse::<ControlAddr>()?).await?;
//! tor.authenticate(None).await?;
//! let onion = tor.add_onion(&OnionSpec::forward(80, "127.0.0.1:8080".parse().unwrap())).await?;
//! tor.wait_published(&onion, Duration::from_secs(120)).await?;
//! println!("reach me at http://{}", onion.hostname());
//! # Ok(()) }
//! ```
//!
//! The service lives as long as this control connection (unless
//! [`OnionSpec::detach`]): dropping the [`TorControl`] takes it down.

use rxon_core::{Result, RxonError};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest control-protocol line accepted from tor.
const MAX_LINE: usize = 64 * 1024;
/// Most lines in one reply.
const MAX_REPLY_LINES: usize = 4096;
/// Deadline of one command's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where tor's control port is: a TCP address or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    /// `ControlPort 127.0.0.1:9051`.
    Tcp(SocketAddr),
    /// `ControlSocket /run/tor/control`.
    Unix(PathBuf),
}

impl FromStr for ControlAddr {
    type Err = RxonError;

    /// `host:port` (an IP address) or a path (`/…`, or `unix:/…`).
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(ControlAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(ControlAddr::Unix(PathBuf::from(s)));
        }
        s.parse().map(ControlAddr::Tcp).map_err(|_| {
            RxonError::config(format!(
                "tor control address {s:?}: expected IP:PORT or a unix socket path"
            ))
        })
    }
}

impl fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAddr::Tcp(a) => write!(f, "{a}"),
            ControlAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What [`TorControl::add_onion`] publishes.
#[derive(Clone, PartialEq, Eq)]
pub struct OnionSpec {
    /// `(virtual port, target)`: connections to `<address>.onion:virtual` reach `target`.
    pub ports: Vec<(u16, SocketAddr)>,
    /// An existing key (`ED25519-V3:<base64>`, as [`OnionService::private_key`] gave),
    /// to keep the same address; `None` makes a new one.
    pub key: Option<String>,
    /// Return the new key (to publish the same address again later); default `false`:
    /// tor discards it.
    pub keep_key: bool,
    /// Keep the service after this control connection closes.
    pub detach: bool,
}

impl OnionSpec {
    /// A new address with one port forwarded to `target`.
    pub fn forward(virtual_port: u16, target: SocketAddr) -> Self {
        OnionSpec {
            ports: vec![(virtual_port, target)],
            key: None,
            keep_key: false,
            detach: false,
        }
    }
}

impl fmt::Debug for OnionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnionSpec")
            .field("ports", &self.ports)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("keep_key", &self.keep_key)
            .field("detach", &self.detach)
            .finish()
    }
}

/// A published onion service.
#[derive(Clone, PartialEq, Eq)]
pub struct OnionService {
    /// The address without `.onion` (56 base32 characters).
    pub service_id: String,
    /// The key when [`OnionSpec::keep_key`] asked for it. `Debug` never shows it.
    pub private_key: Option<String>,
}

impl OnionService {
    /// `<service_id>.onion`.
    pub fn hostname(&self) -> String {
        format!("{}.onion", self.service_id)
    }
}

impl fmt::Debug for OnionService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnionService")
            .field("service_id", &self.service_id)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One authenticated control connection.
pub struct TorControl {
    io: BufReader<Box<dyn Io>>,
    /// Asynchronous events (`650 …`) read while waiting for a reply.
    events: std::collections::VecDeque<String>,
    addr: ControlAddr,
    /// `HS_DESC` events are subscribed to.
    subscribed: bool,
    /// A wait timed out mid-reply: what comes next cannot be matched to a command.
    broken: bool,
}

impl fmt::Debug for TorControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TorControl")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// One reply: its status code and lines (without the code and separator).
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl TorControl {
    /// Connects (not yet authenticated), within 10 s.
    pub async fn connect(addr: &ControlAddr) -> Result<Self> {
        let fail = |e: std::io::Error| {
            RxonError::network(format!("tor control {addr}: {e}")).with_source(e)
        };
        let connect = async {
            Ok::<Box<dyn Io>, std::io::Error>(match addr {
                ControlAddr::Tcp(a) => Box::new(tokio::net::TcpStream::connect(a).await?),
                ControlAddr::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            })
        };
        let io = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| RxonError::timeout(format!("tor control {addr}: connect timed out")))?
            .map_err(fail)?;
        Ok(TorControl {
            io: BufReader::new(io),
            events: Default::default(),
            addr: addr.clone(),
            subscribed: false,
            broken: false,
        })
    }

    /// Authenticates with the method tor offers (`PROTOCOLINFO`): none, the cookie
    /// file, or `password` for a `HashedControlPassword`.
    pub async fn authenticate(&mut self, password: Option<&str>) -> Result<()> {
        let info = self.command("PROTOCOLINFO 1").await?;
        let auth = info
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("AUTH "))
            .ok_or_else(|| self.protocol_error("PROTOCOLINFO without an AUTH line"))?;
        let methods = auth
            .split(' ')
            .find_map(|w| w.strip_prefix("METHODS="))
            .unwrap_or("");
        let methods: Vec<&str> = methods.split(',').collect();
        let secret = if let Some(p) = password.filter(|_| methods.contains(&"HASHEDPASSWORD")) {
            quote(p)
        } else if methods.contains(&"NULL") {
            String::new()
        } else if methods.contains(&"COOKIE") {
            let file = cookie_file(auth)
                .ok_or_else(|| self.protocol_error("COOKIE authentication without COOKIEFILE"))?;
            let cookie = read_cookie(&file).await?;
            if cookie.len() != 32 {
                return Err(self.protocol_error("the cookie file does not hold 32 bytes"));
            }
            cookie.iter().map(|b| format!("{b:02x}")).collect()
        } else {
            return Err(RxonError::config(format!(
                "tor control {}: no usable authentication method (tor offers {}{})",
                self.addr,
                methods.join(","),
                if password.is_none() {
                    "; a password may be needed"
                } else {
                    ""
                }
            )));
        };
        let line = if secret.is_empty() {
            "AUTHENTICATE".to_owned()
        } else {
            format!("AUTHENTICATE {secret}")
        };
        self.command(&line)
            .await
            .map(|_| ())
            .map_err(|e| RxonError::auth(format!("tor control {}: {}", self.addr, e.message())))
    }

    /// Publishes an onion service (`ADD_ONION`).
    pub async fn add_onion(&mut self, spec: &OnionSpec) -> Result<OnionService> {
        if spec.ports.is_empty() {
            return Err(RxonError::config(
                "an onion service needs at least one port",
            ));
        }
        let key = match &spec.key {
            Some(k) if k.starts_with("ED25519-V3:") && !k.contains([' ', '\r', '\n']) => k.clone(),
            Some(_) => {
                return Err(RxonError::config(
                    "onion key: expected ED25519-V3:<base64> (as tor returned it)",
                ));
            }
            None => "NEW:ED25519-V3".to_owned(),
        };
        let mut flags = Vec::new();
        if !spec.keep_key && spec.key.is_none() {
            flags.push("DiscardPK");
        }
        if spec.detach {
            flags.push("Detach");
        }
        let mut line = format!("ADD_ONION {key}");
        if !flags.is_empty() {
            line.push_str(&format!(" Flags={}", flags.join(",")));
        }
        for (virt, target) in &spec.ports {
            line.push_str(&format!(" Port={virt},{target}"));
        }
        // Subscribed first: an upload finishing right after ADD_ONION is not missed.
        if !self.subscribed {
            self.command("SETEVENTS HS_DESC").await?;
            self.subscribed = true;
        }
        let reply = self.command(&line).await?;
        let field = |name: &str| {
            reply
                .lines
                .iter()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_owned)
        };
        let service_id = field("ServiceID=")
            .filter(|id| id.len() == 56 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| self.protocol_error("ADD_ONION answered without a v3 ServiceID"))?;
        Ok(OnionService {
            service_id,
            private_key: field("PrivateKey="),
        })
    }

    /// Waits until the service's descriptor is on the directories: every upload tor
    /// started for it answered, at least one with success. Bounded by `timeout`.
    pub async fn wait_published(&mut self, onion: &OnionService, timeout: Duration) -> Result<()> {
        if !self.subscribed {
            self.command("SETEVENTS HS_DESC").await?;
            self.subscribed = true;
        }
        let id = onion.service_id.clone();
        let wait = async {
            let (mut started, mut done, mut ok) = (0u32, 0u32, 0u32);
            loop {
                let event = match self.events.pop_front() {
                    Some(e) => e,
                    None => {
                        let line = self.read_line().await?;
                        match line.strip_prefix("650 ") {
                            Some(e) => e.to_owned(),
                            None => continue,
                        }
                    }
                };
                let words: Vec<&str> = event.split(' ').collect();
                if words.first() != Some(&"HS_DESC") || words.get(2) != Some(&id.as_str()) {
                    continue;
                }
                match words.get(1).copied() {
                    Some("UPLOAD") => started += 1,
                    Some("UPLOADED") => {
                        done += 1;
                        ok += 1;
                    }
                    Some("FAILED") => done += 1,
                    _ => {}
                }
                if ok > 0 && done >= started {
                    return Ok::<(), RxonError>(());
                }
            }
        };
        let result = tokio::time::timeout(timeout, wait).await;
        if result.is_err() {
            // A line may be half read: nothing that follows can be trusted.
            self.broken = true;
            return Err(RxonError::timeout(format!(
                "the descriptor of {} was not published within {timeout:?}",
                onion.hostname()
            )));
        }
        if self.command("SETEVENTS").await.is_ok() {
            self.subscribed = false;
            self.events.clear();
        }
        result.unwrap_or(Ok(()))
    }

    /// Removes a service published on this connection (or a detached one).
    pub async fn del_onion(&mut self, onion: &OnionService) -> Result<()> {
        self.command(&format!("DEL_ONION {}", onion.service_id))
            .await
            .map(|_| ())
    }

    /// A configuration value (`GETINFO` / `GETCONF` style keys through `GETINFO`), e.g.
    /// `version` or `net/listeners/socks`.
    pub async fn getinfo(&mut self, key: &str) -> Result<String> {
        if key.contains([' ', '\r', '\n']) {
            return Err(RxonError::config("GETINFO key with spaces or line breaks"));
        }
        let reply = self.command(&format!("GETINFO {key}")).await?;
        reply
            .lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .ok_or_else(|| self.protocol_error(&format!("GETINFO {key}: no value")))
    }

    async fn command(&mut self, line: &str) -> Result<Reply> {
        if self.broken {
            return Err(RxonError::closed(format!(
                "tor control {}: the connection is unusable after a timeout; reconnect",
                self.addr
            )));
        }
        let io_err =
            |e: std::io::Error| RxonError::network(format!("tor control: {e}")).with_source(e);
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(io_err)?;
        let verb = line.split(' ').next().unwrap_or("").to_owned();
        let reply = match tokio::time::timeout(REPLY_TIMEOUT, self.reply()).await {
            Ok(reply) => reply?,
            Err(_) => {
                self.broken = true;
                return Err(RxonError::timeout(format!(
                    "tor control: no answer to {verb}"
                )));
            }
        };
        if reply.code == 250 {
            Ok(reply)
        } else {
            let text = reply.lines.join(" ");
            Err(RxonError::network(format!(
                "tor refused {verb}: {} {text}",
                reply.code
            )))
        }
    }

    /// Reads one reply, setting aside the asynchronous events met on the way.
    async fn reply(&mut self) -> Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.len() < 4 {
                return Err(self.protocol_error("a reply line shorter than its status"));
            }
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| self.protocol_error("a reply line without a status"))?;
            let (Some(&sep), Some(text)) = (line.as_bytes().get(3), line.get(4..)) else {
                return Err(self.protocol_error("a reply line without a separator"));
            };
            let text = text.to_owned();
            if code == 650 {
                // Multi-line events are not subscribed to; keep the first line.
                self.events.push_back(text);
                if self.events.len() > MAX_REPLY_LINES {
                    self.events.pop_front();
                }
                continue;
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(self.protocol_error("a reply with too many lines"));
            }
            match sep {
                b' ' => {
                    lines.push(text);
                    return Ok(Reply { code, lines });
                }
                b'-' => lines.push(text),
                b'+' => {
                    lines.push(text);
                    loop {
                        let data = self.read_line().await?;
                        if data == "." {
                            break;
                        }
                        if lines.len() >= MAX_REPLY_LINES {
                            return Err(self.protocol_error("a data reply with too many lines"));
                        }
                        lines.push(data.strip_prefix('.').map_or(data.clone(), str::to_owned));
                    }
                }
                _ => return Err(self.protocol_error("a reply line with an unknown separator")),
            }
        }
    }

    async fn read_line(&mut self) -> Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| RxonError::network(format!("tor control: {e}")).with_source(e))?;
        if n == 0 {
            return Err(RxonError::closed(format!(
                "tor control {}: connection closed",
                self.addr
            )));
        }
        if buf.last() != Some(&b'\n') {
            return Err(self.protocol_error("a line longer than 64 KiB"));
        }
        let text = String::from_utf8_lossy(&buf);
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn protocol_error(&self, what: &str) -> RxonError {
        RxonError::protocol(format!("tor control {}: {what}", self.addr))
    }
}

/// The cookie file tor named: a regular file, at most 33 bytes read, within 5 s.
async fn read_cookie(file: &str) -> Result<Vec<u8>> {
    let fail = |e: std::io::Error| {
        RxonError::config(format!("tor control: reading the cookie {file}: {e}"))
    };
    let read = async {
        let f = tokio::fs::File::open(file).await.map_err(fail)?;
        if !f.metadata().await.map_err(fail)?.is_file() {
            return Err(RxonError::config(format!(
                "tor control: the cookie {file} is not a regular file"
            )));
        }
        let mut cookie = Vec::with_capacity(33);
        f.take(33).read_to_end(&mut cookie).await.map_err(fail)?;
        Ok(cookie)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| RxonError::timeout(format!("tor control: reading the cookie {file}")))?
}

/// `COOKIEFILE="…"` of a PROTOCOLINFO AUTH line, unescaped.
fn cookie_file(auth: &str) -> Option<String> {
    let start = auth.find("COOKIEFILE=\"")? + "COOKIEFILE=\"".len();
    let mut out = String::new();
    let mut chars = auth[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// A control-protocol quoted string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_cookie_lines_parse() {
        assert_eq!(
            "127.0.0.1:9051".parse::<ControlAddr>().unwrap(),
            ControlAddr::Tcp("127.0.0.1:9051".parse().unwrap())
        );
        assert_eq!(
            "/run/tor/control".parse::<ControlAddr>().unwrap(),
            ControlAddr::Unix("/run/tor/control".into())
        );
        assert!("localhost:9051".parse::<ControlAddr>().is_err());
        let auth =
            r#"METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/lib/tor/a\"b/control_auth_cookie""#;
        assert_eq!(
            cookie_file(auth).as_deref(),
            Some(r#"/var/lib/tor/a"b/control_auth_cookie"#)
        );
        assert_eq!(quote(r#"p"w\"#), r#""p\"w\\""#);
    }

    #[test]
    fn keys_never_reach_debug() {
        let s = OnionService {
            service_id: "x".repeat(56),
            private_key: Some("ED25519-V3:c2VjcmV0".into()),
        };
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        let mut spec = OnionSpec::forward(80, "127.0.0.1:1".parse().unwrap());
        spec.key = Some("ED25519-V3:c2VjcmV0".into());
        assert!(!format!("{spec:?}").contains("c2VjcmV0"));
    }
}
