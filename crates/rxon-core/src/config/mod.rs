//! [`TransportConfig`]: a transport described as data, so that a worker switches
//! transports by editing configuration, not code.
//!
//! With the `serde` feature it deserializes from TOML, JSON or any serde format;
//! [`TransportConfig::from_env`] reads environment variables with std alone.
//!
//! ```toml
//! url = "https://orchestrator.example:8443"   # or ws://…, grpc://…, mock://name
//! worker_id = "gpu-01"
//! token = "secret"
//! poll_timeout = "30s"           # durations: "250ms", "30s", "2m", or a number of seconds
//! keepalive = "20s"              # a silent connection is replaced after twice this
//! result_retries = 3
//! result_retry_delay = "100ms"
//! protocol = "auto"             # or "1.0b3" / "1.0b17" to pin the generation
//! proxy = "socks5h://127.0.0.1:9050"  # e.g. a Tor daemon's SOCKS port, for .onion URLs
//!
//! [tls]
//! ca_file = "/etc/rxon/ca.pem"
//! client_cert = "/etc/rxon/worker.pem"
//! client_key = "/etc/rxon/worker.key"
//!
//! [params]                       # settings for third-party transports
//! circuit = "fast"
//! ```

use crate::constants::{
    DEFAULT_KEEPALIVE_SECS, DEFAULT_POLL_TIMEOUT_SECS, DEFAULT_RESULT_RETRIES,
    DEFAULT_RESULT_RETRY_DELAY_MS,
};
use crate::error::{DisplayDuration, Result, RxonError};
use crate::protocol::ProtocolChoice;
use crate::validate::validate_identifier;
use crate::value::{Map, Value};
use std::fmt;

mod parse;
mod proxy;
mod tls;

#[cfg(feature = "serde")]
pub use parse::duration_serde;
pub use parse::{parse_duration, url_scheme};
pub use proxy::{MAX_PROXY_CREDENTIAL, Proxy, ProxyAuth};
use std::path::PathBuf;
use std::time::Duration;
pub use tls::{ServerTlsOptions, TlsOptions};

/// Upper bound on [`TransportOptions::result_retries`].
pub const MAX_RESULT_RETRIES: u32 = 100;
/// Upper bound on every configured duration (one day).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Where to connect and as whom, plus [`TransportOptions`].
#[derive(Clone, PartialEq)]
pub struct TransportConfig {
    /// Orchestrator URL; its scheme selects the transport.
    pub url: String,
    /// This worker's identifier.
    pub worker_id: String,
    /// The worker credential.
    pub token: String,
    /// Everything else, with defaults.
    pub options: TransportOptions,
}

/// Tunables shared by all transports; each transport reads what applies to it.
#[derive(Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct TransportOptions {
    /// How long a poll waits for a task (default 30 s).
    #[cfg_attr(feature = "serde", serde(with = "duration_serde"))]
    pub poll_timeout: Duration,
    /// Deadline of every request other than a poll (default 30 s).
    #[cfg_attr(feature = "serde", serde(with = "duration_serde"))]
    pub request_timeout: Duration,
    /// Deadline for establishing a connection (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "duration_serde"))]
    pub connect_timeout: Duration,
    /// How often a long-lived connection proves the peer is still there (default 20 s).
    /// A connection that hears nothing back within twice this is treated as gone and
    /// replaced: after a NAT or firewall silently drops it, a worker reconnects within
    /// seconds instead of waiting on a dead socket. Each transport maps it to its own
    /// mechanism (WebSocket ping/pong, HTTP/2 keepalive pings).
    #[cfg_attr(feature = "serde", serde(with = "duration_serde"))]
    pub keepalive: Duration,
    /// Attempts for sending a result on network failure (default 3).
    pub result_retries: u32,
    /// Base delay between result attempts, doubled each time (default 100 ms).
    #[cfg_attr(feature = "serde", serde(with = "duration_serde"))]
    pub result_retry_delay: Duration,
    /// Largest message accepted from the peer, in bytes (default 16 MiB).
    pub max_message_bytes: usize,
    /// TLS files.
    pub tls: TlsOptions,
    /// Dial through this proxy (`socks5h://host:port`, or `arti` for the embedded Tor
    /// client); `None` (default) dials directly. TLS runs end to end through it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub proxy: Option<Proxy>,
    /// Protocol generation: `"auto"` (default: ask the orchestrator), `"1.0b3"` or
    /// `"1.0b17"` (see [`ProtocolChoice`]).
    pub protocol: ProtocolChoice,
    /// Key of the 1.0b17 signed envelope: the static worker token (the reference's
    /// rule, kept when the credential becomes an STS token). `None` (default) signs
    /// with [`TransportConfig::token`]. `Debug` never shows it.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub signing_key: Option<String>,
    /// The orchestrator's key for the `sig` of 1.0b17 tasks; with it, a task whose `sig`
    /// does not verify is refused. `None` (default) does not check.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub task_key: Option<String>,
    /// Refuse 1.0b17 tasks without a valid `sig` (needs `task_key`; default `true`, as
    /// the reference SDK's `REQUIRE_TASK_SIGNATURE`).
    pub require_task_signature: bool,
    /// Free-form settings for transports outside this workspace.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Map::is_empty"))]
    pub params: Map,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            poll_timeout: Duration::from_secs(DEFAULT_POLL_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(DEFAULT_KEEPALIVE_SECS),
            result_retries: DEFAULT_RESULT_RETRIES,
            result_retry_delay: Duration::from_millis(DEFAULT_RESULT_RETRY_DELAY_MS),
            max_message_bytes: 16 * 1024 * 1024,
            tls: TlsOptions::default(),
            proxy: None,
            protocol: ProtocolChoice::Auto,
            signing_key: None,
            task_key: None,
            require_task_signature: true,
            params: Map::new(),
        }
    }
}

impl TransportConfig {
    /// The secret that signs this worker's 1.0b17 envelopes: `signing_key` when set,
    /// else the token (as the reference worker signs with its static token).
    pub fn envelope_key(&self) -> &str {
        self.options
            .signing_key
            .as_deref()
            .unwrap_or(self.token.as_str())
    }

    /// A configuration with default options.
    pub fn new(
        url: impl Into<String>,
        worker_id: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        TransportConfig {
            url: url.into(),
            worker_id: worker_id.into(),
            token: token.into(),
            options: TransportOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: TransportOptions) -> Self {
        self.options = options;
        self
    }

    /// The URL scheme, lowercase (`"https"` for `HTTPS://host`).
    pub fn scheme(&self) -> Result<String> {
        url_scheme(&self.url)
    }

    /// Checks what every transport needs: a URL with a scheme, a valid worker id and
    /// bounded options.
    pub fn validate(&self) -> Result<()> {
        self.scheme()?;
        validate_identifier(&self.worker_id, "worker_id")?;
        self.options.validate()
    }

    /// Reads a configuration from environment variables named `{prefix}_URL`,
    /// `{prefix}_WORKER_ID`, `{prefix}_TOKEN` and, optionally, `{prefix}_POLL_TIMEOUT`,
    /// `_REQUEST_TIMEOUT`, `_CONNECT_TIMEOUT`, `_KEEPALIVE`, `_RESULT_RETRIES`, `_RESULT_RETRY_DELAY`,
    /// `_MAX_MESSAGE_BYTES`, `_TLS_CA_FILE`, `_TLS_CLIENT_CERT`, `_TLS_CLIENT_KEY`,
    /// `_TLS_SERVER_NAME`, `_PROXY`, `_PROTOCOL`, `_SIGNING_KEY`, `_TASK_KEY`,
    /// `_REQUIRE_TASK_SIGNATURE`.
    pub fn from_env(prefix: &str) -> Result<Self> {
        Self::from_lookup(prefix, |k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// ```
    /// use rxon_core::TransportConfig;
    /// use std::time::Duration;
    /// let vars = [("W_URL", "mock://demo"), ("W_WORKER_ID", "w1"), ("W_TOKEN", "t"),
    ///             ("W_POLL_TIMEOUT", "5s")];
    /// let cfg = TransportConfig::from_lookup("W", |k| {
    ///     vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    /// }).unwrap();
    /// assert_eq!(cfg.options.poll_timeout, Duration::from_secs(5));
    /// ```
    pub fn from_lookup(prefix: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(&format!("{prefix}_{name}"));
        let required = |name: &str| {
            get(name).ok_or_else(|| {
                RxonError::config(format!("environment variable {prefix}_{name} is not set"))
            })
        };
        let mut cfg =
            TransportConfig::new(required("URL")?, required("WORKER_ID")?, required("TOKEN")?);
        let o = &mut cfg.options;
        let dur = |name: &str, slot: &mut Duration| -> Result<()> {
            if let Some(v) = get(name) {
                *slot = parse_duration(&v)
                    .map_err(|e| RxonError::config(format!("{prefix}_{name}: {}", e.message())))?;
            }
            Ok(())
        };
        dur("POLL_TIMEOUT", &mut o.poll_timeout)?;
        dur("REQUEST_TIMEOUT", &mut o.request_timeout)?;
        dur("CONNECT_TIMEOUT", &mut o.connect_timeout)?;
        dur("KEEPALIVE", &mut o.keepalive)?;
        dur("RESULT_RETRY_DELAY", &mut o.result_retry_delay)?;
        let int = |name: &str| -> Result<Option<u64>> {
            get(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        RxonError::config(format!("{prefix}_{name}: {v:?} is not a whole number"))
                    })
                })
                .transpose()
        };
        if let Some(n) = int("RESULT_RETRIES")? {
            o.result_retries = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = int("MAX_MESSAGE_BYTES")? {
            o.max_message_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        o.tls.ca_file = get("TLS_CA_FILE").map(PathBuf::from);
        o.tls.client_cert = get("TLS_CLIENT_CERT").map(PathBuf::from);
        o.tls.client_key = get("TLS_CLIENT_KEY").map(PathBuf::from);
        o.tls.server_name = get("TLS_SERVER_NAME");
        if let Some(p) = get("PROXY").filter(|p| !p.trim().is_empty()) {
            o.proxy = Some(p.parse().map_err(|e: RxonError| {
                RxonError::config(format!("{prefix}_PROXY: {}", e.message()))
            })?);
        }
        if let Some(p) = get("PROTOCOL") {
            o.protocol = p.parse().map_err(|e: RxonError| {
                RxonError::config(format!("{prefix}_PROTOCOL: {}", e.message()))
            })?;
        }
        o.signing_key = get("SIGNING_KEY");
        o.task_key = get("TASK_KEY");
        if let Some(v) = get("REQUIRE_TASK_SIGNATURE") {
            o.require_task_signature = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(RxonError::config(format!(
                        "{prefix}_REQUIRE_TASK_SIGNATURE: {v:?} is not true or false"
                    )));
                }
            };
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl TransportOptions {
    /// Checks bounds: durations non-zero and at most [`MAX_DURATION`], retries at least
    /// 1 and at most [`MAX_RESULT_RETRIES`], a non-zero message limit, and client
    /// certificate and key given together.
    pub fn validate(&self) -> Result<()> {
        for (name, d) in [
            ("poll_timeout", self.poll_timeout),
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("keepalive", self.keepalive),
        ] {
            if d.is_zero() || d > MAX_DURATION {
                return Err(RxonError::config(format!(
                    "{name} must be between 1ns and 24h, got {}",
                    DisplayDuration(d)
                )));
            }
        }
        if self.result_retry_delay > MAX_DURATION {
            return Err(RxonError::config("result_retry_delay must be at most 24h"));
        }
        if self.result_retries == 0 || self.result_retries > MAX_RESULT_RETRIES {
            return Err(RxonError::config(format!(
                "result_retries must be between 1 and {MAX_RESULT_RETRIES}, got {}",
                self.result_retries
            )));
        }
        if self.max_message_bytes == 0 {
            return Err(RxonError::config("max_message_bytes must be positive"));
        }
        if let Some(proxy) = &self.proxy {
            proxy.validate()?;
        }
        if self.tls.client_cert.is_some() != self.tls.client_key.is_some() {
            return Err(RxonError::config(
                "tls.client_cert and tls.client_key must be given together",
            ));
        }
        Ok(())
    }

    /// A free-form parameter for a third-party transport.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.get(key)
    }
}

impl fmt::Debug for TransportOptions {
    /// Redacts the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |k: &Option<String>| k.as_ref().map(|_| "<redacted>");
        f.debug_struct("TransportOptions")
            .field("poll_timeout", &self.poll_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive)
            .field("result_retries", &self.result_retries)
            .field("result_retry_delay", &self.result_retry_delay)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("protocol", &self.protocol)
            .field("signing_key", &redacted(&self.signing_key))
            .field("task_key", &redacted(&self.task_key))
            .field("require_task_signature", &self.require_task_signature)
            .field("params", &self.params)
            .finish()
    }
}

impl fmt::Debug for TransportConfig {
    /// Redacts the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("url", &self.url)
            .field("worker_id", &self.worker_id)
            .field("token", &"<redacted>")
            .field("options", &self.options)
            .finish()
    }
}

#[cfg(feature = "serde")]
mod config_serde {
    //! `TransportConfig` keeps the options flat beside url/worker_id/token on the wire
    //! and still rejects unknown keys (a typo must not silently fall back to a default).
    use super::{TransportConfig, TransportOptions};
    use crate::value::Map;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Out<'a> {
        url: &'a str,
        worker_id: &'a str,
        token: &'a str,
        #[serde(flatten)]
        options: &'a TransportOptions,
    }

    #[derive(Deserialize)]
    struct In {
        url: String,
        worker_id: String,
        token: String,
        // Flattened structs take the keys they know; what is left lands in `unknown`.
        #[serde(flatten)]
        options: TransportOptions,
        #[serde(flatten)]
        unknown: Map,
    }

    impl Serialize for TransportConfig {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Out {
                url: &self.url,
                worker_id: &self.worker_id,
                token: &self.token,
                options: &self.options,
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for TransportConfig {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let raw = In::deserialize(d)?;
            if !raw.unknown.is_empty() {
                let keys: Vec<&str> = raw.unknown.keys().map(String::as_str).collect();
                return Err(D::Error::custom(format!(
                    "unknown transport config key(s): {}",
                    keys.join(", ")
                )));
            }
            Ok(TransportConfig {
                url: raw.url,
                worker_id: raw.worker_id,
                token: raw.token,
                options: raw.options,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("5us").unwrap(), Duration::from_micros(5));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "s", "-1s", "1d", "25h", "1e3", "NaN", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_bounds_every_option() {
        let ok = TransportConfig::new("http://127.0.0.1:1", "w-1", "t");
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.worker_id = "w/1".into();
        assert_eq!(
            c.validate().unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
        let mut c = ok.clone();
        c.url = "127.0.0.1:1".into();
        assert!(c.validate().unwrap_err().message().contains("no scheme"));
        let mut c = ok.clone();
        c.options.result_retries = 0;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.options.poll_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = ok.clone();
        c.options.tls.client_cert = Some("c.pem".into());
        assert!(c.validate().unwrap_err().message().contains("together"));
    }

    #[test]
    fn env_lookup_reads_every_variable_and_reports_missing_ones() {
        let vars: Vec<(String, String)> = [
            ("X_URL", "grpcs://o:443"),
            ("X_WORKER_ID", "w1"),
            ("X_TOKEN", "tok"),
            ("X_REQUEST_TIMEOUT", "2s"),
            ("X_CONNECT_TIMEOUT", "500ms"),
            ("X_KEEPALIVE", "3s"),
            ("X_RESULT_RETRIES", "7"),
            ("X_RESULT_RETRY_DELAY", "0.25"),
            ("X_MAX_MESSAGE_BYTES", "1024"),
            ("X_TLS_CA_FILE", "/ca.pem"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let look = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let c = TransportConfig::from_lookup("X", look).unwrap();
        assert_eq!(c.url, "grpcs://o:443");
        assert_eq!(c.options.request_timeout, Duration::from_secs(2));
        assert_eq!(c.options.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.options.keepalive, Duration::from_secs(3));
        assert_eq!(c.options.result_retries, 7);
        assert_eq!(c.options.result_retry_delay, Duration::from_millis(250));
        assert_eq!(c.options.max_message_bytes, 1024);
        assert_eq!(c.options.tls.ca_file, Some(PathBuf::from("/ca.pem")));
        let err = TransportConfig::from_lookup("Y", look).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: environment variable Y_URL is not set"
        );
        let bad = |k: &str| {
            if k == "X_RESULT_RETRIES" {
                Some("many".into())
            } else {
                look(k)
            }
        };
        assert!(
            TransportConfig::from_lookup("X", bad)
                .unwrap_err()
                .message()
                .contains("X_RESULT_RETRIES")
        );
    }

    #[test]
    fn debug_redacts_the_token_and_keys() {
        let mut c = TransportConfig::new("mock://", "w", "very-secret");
        c.options.signing_key = Some("signing-secret".into());
        c.options.task_key = Some("task-secret".into());
        let shown = format!("{c:?}");
        for secret in ["very-secret", "signing-secret", "task-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
