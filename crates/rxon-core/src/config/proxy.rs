//! [`Proxy`]: how a worker reaches its orchestrator when not directly, e.g. through a
//! Tor daemon's SOCKS port to an onion service.
//!
//! ```
//! use rxon_core::Proxy;
//! let p: Proxy = "socks5h://worker:circuit-7@127.0.0.1:9050".parse().unwrap();
//! assert_eq!(p.to_string(), "socks5h://worker:<redacted>@127.0.0.1:9050");
//! assert!("socks5://127.0.0.1:9050".parse::<Proxy>().is_err()); // names resolved locally
//! assert_eq!("arti".parse::<Proxy>().unwrap(), Proxy::Arti);
//! ```

use crate::error::{Result, RxonError};
use std::fmt;
use std::str::FromStr;

/// Longest SOCKS5 username or password (RFC 1929: one length byte).
pub const MAX_PROXY_CREDENTIAL: usize = 255;

/// Where a transport's connections go first.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proxy {
    /// A SOCKS5 proxy that resolves host names itself (`socks5h://host:port`): the
    /// orchestrator's host name travels in the CONNECT request and is never looked up
    /// locally, so a `.onion` address works and no name reaches the local resolver.
    Socks5h {
        /// The proxy's host (a name is resolved locally: it is the proxy, not the target).
        host: String,
        /// The proxy's port (default 1080; a Tor daemon listens on 9050).
        port: u16,
        /// Username/password authentication (RFC 1929). Tor accepts any pair and uses it
        /// to keep streams with different credentials on different circuits.
        auth: Option<ProxyAuth>,
    },
    /// The embedded Tor client (`arti`), with the `tor` feature of `rxon-net` / `rxon`.
    Arti,
}

/// SOCKS5 username and password. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    /// The username (1–255 bytes).
    pub username: String,
    /// The password (1–255 bytes).
    pub password: String,
}

impl Proxy {
    /// A `socks5h://` proxy without authentication.
    pub fn socks5h(host: impl Into<String>, port: u16) -> Self {
        Proxy::Socks5h {
            host: host.into(),
            port,
            auth: None,
        }
    }

    /// Adds username/password authentication to a SOCKS5 proxy (no effect on `Arti`).
    pub fn with_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        if let Proxy::Socks5h { auth, .. } = &mut self {
            *auth = Some(ProxyAuth {
                username: username.into(),
                password: password.into(),
            });
        }
        self
    }

    /// The proxy as a URL, password included (what a configuration file holds).
    pub fn to_url(&self) -> String {
        self.render(false)
    }

    /// Checks bounds: a non-empty host, a non-zero port, credentials of at most
    /// [`MAX_PROXY_CREDENTIAL`] bytes and a non-empty username.
    pub fn validate(&self) -> Result<()> {
        let Proxy::Socks5h { host, port, auth } = self else {
            return Ok(());
        };
        if host.is_empty() || host.len() > 253 {
            return Err(RxonError::config(
                "proxy: the host must have 1 to 253 bytes",
            ));
        }
        if *port == 0 {
            return Err(RxonError::config("proxy: the port must not be 0"));
        }
        if let Some(a) = auth {
            if a.username.is_empty() || a.username.len() > MAX_PROXY_CREDENTIAL {
                return Err(RxonError::config(
                    "proxy: the username must have 1 to 255 bytes (RFC 1929)",
                ));
            }
            if a.password.is_empty() || a.password.len() > MAX_PROXY_CREDENTIAL {
                return Err(RxonError::config(
                    "proxy: the password must have 1 to 255 bytes (RFC 1929; for Tor, any \
                     value: the pair only selects a circuit)",
                ));
            }
        }
        Ok(())
    }

    fn render(&self, redact: bool) -> String {
        match self {
            Proxy::Arti => "arti".to_owned(),
            Proxy::Socks5h { host, port, auth } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let auth = auth.as_ref().map_or(String::new(), |a| {
                    let password = if redact {
                        "<redacted>".to_owned()
                    } else {
                        percent_encode(&a.password)
                    };
                    format!("{}:{password}@", percent_encode(&a.username))
                });
                format!("socks5h://{auth}{host}:{port}")
            }
        }
    }
}

impl FromStr for Proxy {
    type Err = RxonError;

    /// Parses `socks5h://[user[:password]@]host[:port]` (user and password
    /// percent-encoded, port 1080 by default) or `arti`.
    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("arti") || text.eq_ignore_ascii_case("arti://") {
            return Ok(Proxy::Arti);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(RxonError::config(format!(
                "proxy {:?}: expected socks5h://host:port or arti",
                redacted_text(text)
            )));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "socks5h" => {}
            "socks5" => {
                return Err(RxonError::config(
                    "proxy: socks5:// means resolving the orchestrator's name locally, which \
                     leaks it to the local resolver and cannot reach .onion addresses; use \
                     socks5h:// (the proxy resolves names)",
                ));
            }
            other => {
                return Err(RxonError::config(format!(
                    "proxy: unsupported scheme {other:?} (supported: socks5h://, arti)"
                )));
            }
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((auth, hostport)) => {
                let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
                let auth = ProxyAuth {
                    username: percent_decode(user)?,
                    password: percent_decode(password)?,
                };
                (Some(auth), hostport)
            }
            None => (None, rest),
        };
        if hostport.contains('/') || hostport.contains('?') {
            return Err(RxonError::config("proxy: a proxy URL has no path or query"));
        }
        let (host, port) = split_host_port(hostport)?;
        let proxy = Proxy::Socks5h {
            host: host.to_owned(),
            port: port.unwrap_or(1080),
            auth,
        };
        proxy.validate()?;
        Ok(proxy)
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>)> {
    let bad_port = |p: &str| RxonError::config(format!("proxy: invalid port {p:?}"));
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| RxonError::config("proxy: unclosed '[' in the host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad_port(p))?,
            ),
        };
        return Ok((host, port));
    }
    match hostport.split_once(':') {
        Some((host, p)) => Ok((host, Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((hostport, None)),
    }
}

fn redacted_text(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((_, host)) => format!("<credentials>@{host}"),
        None => text.to_owned(),
    }
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| RxonError::config("proxy: invalid %-escape in the credentials"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RxonError::config("proxy: credentials are not UTF-8"))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for Proxy {
    /// The URL with the password redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self})")
    }
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Proxy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_url())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Proxy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: RxonError| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_socks5h_urls() {
        let p: Proxy = "socks5h://127.0.0.1:9050".parse().unwrap();
        assert_eq!(p, Proxy::socks5h("127.0.0.1", 9050));
        let p: Proxy = "SOCKS5H://proxy.lan".parse().unwrap();
        assert_eq!(p, Proxy::socks5h("proxy.lan", 1080));
        let p: Proxy = "socks5h://[::1]:9150/".parse().unwrap();
        assert_eq!(p, Proxy::socks5h("::1", 9150));
        assert_eq!(p.to_url(), "socks5h://[::1]:9150");
        let p: Proxy = "socks5h://a%40b:p%3Ass@h:1".parse().unwrap();
        assert_eq!(p, Proxy::socks5h("h", 1).with_auth("a@b", "p:ss"));
        assert_eq!(p.to_url(), "socks5h://a%40b:p%3Ass@h:1");
        assert_eq!(p.to_url().parse::<Proxy>().unwrap(), p);
    }

    #[test]
    fn refuses_what_would_leak_or_cannot_work() {
        for bad in [
            "socks5://127.0.0.1:9050",
            "http://127.0.0.1:8080",
            "127.0.0.1:9050",
            "socks5h://:9050",
            "socks5h://h:0",
            "socks5h://h:99999",
            "socks5h://h:9050/path",
            "socks5h://@h:1",
            "socks5h://u:p%zz@h:1",
            "socks5h://[::1:1",
            "socks5h://user@h:1",
            "socks5h://user:@h:1",
        ] {
            assert!(bad.parse::<Proxy>().is_err(), "{bad}");
        }
        let long = "x".repeat(256);
        assert!(format!("socks5h://{long}:p@h:1").parse::<Proxy>().is_err());
        assert!(format!("socks5h://u:{long}@h:1").parse::<Proxy>().is_err());
    }

    #[test]
    fn never_shows_the_password() {
        let p: Proxy = "socks5h://user:hunter2@h:1".parse().unwrap();
        assert!(!p.to_string().contains("hunter2"));
        assert!(!format!("{p:?}").contains("hunter2"));
        let Proxy::Socks5h { auth: Some(a), .. } = &p else {
            panic!("no auth");
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        let e = "ftp://user:hunter2@h:1".parse::<Proxy>().unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = "user:hunter2@h:1".parse::<Proxy>().unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
