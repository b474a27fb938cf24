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
use crate::validate::validate_identifier;
use crate::value::{Map, Value};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
#[derive(Debug, Clone, PartialEq)]
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
            params: Map::new(),
        }
    }
}

/// TLS settings of a client. Without any, `https`/`wss`/`grpcs` use the system roots.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the CA(s) that sign the orchestrator's certificate.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mTLS.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against, when it differs from the URL host.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_name: Option<String>,
}

/// TLS of a listener: its certificate and, for mTLS, the CA of client certificates.
/// Each transport crate turns it into its own TLS stack's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct ServerTlsOptions {
    /// PEM certificate chain of the listener.
    pub cert_file: PathBuf,
    /// PEM private key of the listener.
    pub key_file: PathBuf,
    /// PEM CA(s) that sign client certificates; enables mTLS.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: refuse clients without a certificate (strict mTLS). Without it,
    /// a certificate is optional and, when sent, its subject CN reaches the handler.
    #[cfg_attr(feature = "serde", serde(default))]
    pub require_client_cert: bool,
}

impl ServerTlsOptions {
    /// TLS with `cert_file` and `key_file`, no client certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        ServerTlsOptions {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            require_client_cert: false,
        }
    }

    /// Verifies client certificates against `ca_file` (optional for clients unless
    /// [`require_client_cert`](Self::require_client_cert) is set).
    pub fn with_client_ca(mut self, ca_file: impl Into<PathBuf>) -> Self {
        self.client_ca_file = Some(ca_file.into());
        self
    }

    /// Refuses clients without a valid certificate.
    pub fn with_required_client_cert(mut self, required: bool) -> Self {
        self.require_client_cert = required;
        self
    }

    /// Checks that a required client certificate has a CA to be verified against.
    pub fn validate(&self) -> Result<()> {
        if self.require_client_cert && self.client_ca_file.is_none() {
            return Err(RxonError::config(
                "require_client_cert needs a client_ca_file to verify clients against",
            ));
        }
        Ok(())
    }
}

impl TransportConfig {
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
    /// `_TLS_SERVER_NAME`.
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

/// The lowercase scheme of `url` (the part before `://`).
///
/// ```
/// assert_eq!(rxon_core::config::url_scheme("HTTPS://x").unwrap(), "https");
/// assert!(rxon_core::config::url_scheme("localhost:8080").is_err());
/// ```
pub fn url_scheme(url: &str) -> Result<String> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(RxonError::config(format!(
            "transport URL {url:?} has no scheme (expected e.g. http://host:port)"
        )));
    };
    let valid = !scheme.is_empty()
        && scheme.as_bytes()[0].is_ascii_alphabetic()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid {
        return Err(RxonError::config(format!(
            "transport URL {url:?} has an invalid scheme {scheme:?}"
        )));
    }
    Ok(scheme.to_ascii_lowercase())
}

/// Parses `"250ms"`, `"30s"`, `"2m"`, `"1h"`, `"1.5s"`, or a bare number of seconds.
///
/// ```
/// use rxon_core::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad_duration(text)),
    };
    let n: f64 = num.parse().map_err(|_| bad_duration(text))?;
    secs_to_duration(n * scale).ok_or_else(|| bad_duration(text))
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0 && secs <= MAX_DURATION.as_secs_f64())
        .then(|| Duration::from_secs_f64(secs))
}

fn bad_duration(text: &str) -> RxonError {
    RxonError::config(format!(
        "invalid duration {text:?}: use e.g. \"250ms\", \"30s\", \"2m\" or a number of seconds (at most 24h)"
    ))
}

#[cfg(feature = "serde")]
pub mod duration_serde {
    //! `#[serde(with = "rxon_core::config::duration_serde")]` for a [`Duration`] written as
    //! `"30s"`, `"500ms"` or a number of seconds (see [`parse_duration`]).
    use super::{DisplayDuration, parse_duration, secs_to_duration};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    /// Writes the duration as text, e.g. `"30s"`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&DisplayDuration(*d))
    }

    /// Reads text (`"30s"`) or a number of seconds; negative or over 24 h is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map_err(|e| E::custom(e.message()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                secs_to_duration(v)
                    .ok_or_else(|| E::custom(format!("duration {v} s is negative or over 24h")))
            }
        }
        d.deserialize_any(V)
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
    fn debug_redacts_the_token() {
        let c = TransportConfig::new("mock://", "w", "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
