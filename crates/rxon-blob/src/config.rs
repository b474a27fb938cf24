//! [`BlobConfig`]: which store, where, with which credentials and transfer limits.

use rxon_core::config::duration_serde;
use rxon_core::{Result, RxonError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest multipart part S3 accepts (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest multipart part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Most parallel part uploads a store may be configured with.
pub const MAX_UPLOAD_CONCURRENCY: usize = 64;

/// Where blobs live and how they move. Built from a URL with [`BlobConfig::new`], or read
/// from TOML/JSON (unknown keys are refused, every field but `url` has a default):
///
/// ```
/// let config: rxon_blob::BlobConfig = toml::from_str(r#"
///     url = "s3://rxon-data/jobs/"
///     endpoint = "http://127.0.0.1:9000"
///     access_key_id = "minio"
///     secret_access_key = "minio-secret"
///     part_size = 16777216
///     upload_concurrency = 8
///     request_timeout = "2m"
/// "#).unwrap();
/// assert_eq!(config.path_style(), true); // the default with a custom endpoint
/// let store = rxon_blob::BlobStore::from_config(&config).unwrap();
/// assert_eq!(store.bucket(), "rxon-data");
/// ```
///
/// The URL picks the backend:
///
/// | URL | store | bucket |
/// | --- | --- | --- |
/// | `s3://bucket` or `s3://bucket/prefix/` | S3 or an S3-compatible server (`endpoint`) | from the URL |
/// | `file:///abs/dir` | a local directory | `bucket` (default `rxon-local`) |
/// | `memory://` | in process memory, for tests | `bucket` (default `rxon-memory`) |
///
/// A prefix in an `s3://` URL is prepended to relative references, as the reference's
/// `parse_uri(uri, bucket, prefix)` does.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobConfig {
    /// `s3://bucket[/prefix/]`, `file:///dir` or `memory://`.
    pub url: String,
    /// Bucket name for `file://` and `memory://` stores (an `s3://` URL names its own).
    pub bucket: Option<String>,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000`; unset for AWS itself.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never printed by `Debug`).
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials (never printed by `Debug`).
    pub session_token: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style.
    /// Default: on when `endpoint` is set (what S3-compatible servers expect), else off.
    pub path_style: Option<bool>,
    /// PEM file of the CA that signed an `https://` endpoint's certificate (default: the
    /// system roots).
    pub ca_file: Option<PathBuf>,
    /// Objects larger than this are sent with multipart upload (default 8 MiB).
    pub multipart_threshold: u64,
    /// Size of each multipart part (default 8 MiB; S3 needs 5 MiB to 5 GiB).
    pub part_size: u64,
    /// Parts uploaded at once for one object (default 4, at most 64). Memory held by an
    /// upload is about `part_size × (upload_concurrency + 1)`.
    pub upload_concurrency: usize,
    /// Most objects a directory download or upload handles (default 10,000).
    pub max_dir_entries: usize,
    /// Retries of a failed request, with backoff (default 3).
    pub max_retries: usize,
    /// Limit on establishing a connection (default 10 s).
    #[serde(with = "duration_serde")]
    pub connect_timeout: Duration,
    /// Limit on waiting for a response's head (default 60 s).
    #[serde(with = "duration_serde")]
    pub request_timeout: Duration,
    /// Limit on a pause between two chunks of a response body (default 60 s).
    #[serde(with = "duration_serde")]
    pub idle_timeout: Duration,
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig {
            url: String::new(),
            bucket: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            path_style: None,
            ca_file: None,
            multipart_threshold: 8 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            upload_concurrency: 4,
            max_dir_entries: 10_000,
            max_retries: 3,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for BlobConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("BlobConfig")
            .field("url", &self.url)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("path_style", &self.path_style)
            .field("ca_file", &self.ca_file)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("max_dir_entries", &self.max_dir_entries)
            .field("max_retries", &self.max_retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// The backend a [`BlobConfig`] URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    S3 { bucket: String, prefix: String },
    File { root: PathBuf },
    Memory,
}

impl BlobConfig {
    /// Defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        BlobConfig {
            url: url.into(),
            ..BlobConfig::default()
        }
    }

    /// Fills the fields left unset from the standard AWS variables: `AWS_ENDPOINT_URL`,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub fn with_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let fill = |field: &mut Option<String>, names: &[&str]| {
            if field.is_none() {
                *field = names.iter().find_map(|n| var(n));
            }
        };
        fill(&mut self.endpoint, &["AWS_ENDPOINT_URL"]);
        fill(&mut self.region, &["AWS_REGION", "AWS_DEFAULT_REGION"]);
        fill(&mut self.access_key_id, &["AWS_ACCESS_KEY_ID"]);
        fill(&mut self.secret_access_key, &["AWS_SECRET_ACCESS_KEY"]);
        fill(&mut self.session_token, &["AWS_SESSION_TOKEN"]);
        self
    }

    /// Whether requests use path style: `path_style`, else on exactly when `endpoint` is set.
    pub fn path_style(&self) -> bool {
        self.path_style.unwrap_or(self.endpoint.is_some())
    }

    /// The bucket this configuration serves (from the `s3://` URL, else `bucket` or the
    /// backend's default).
    pub fn bucket_name(&self) -> Result<String> {
        Ok(match self.backend()? {
            Backend::S3 { bucket, .. } => bucket,
            Backend::File { .. } => self.bucket.clone().unwrap_or_else(|| "rxon-local".into()),
            Backend::Memory => self.bucket.clone().unwrap_or_else(|| "rxon-memory".into()),
        })
    }

    /// The reference's storage hash of this configuration (see
    /// [`calculate_config_hash`](crate::calculate_config_hash)); `None` without an
    /// endpoint, an access key, or for local and memory stores.
    pub fn config_hash(&self) -> Option<String> {
        match self.backend().ok()? {
            Backend::S3 { bucket, .. } => crate::calculate_config_hash(
                self.endpoint.as_deref(),
                self.access_key_id.as_deref(),
                Some(&bucket),
            ),
            _ => None,
        }
    }

    pub(crate) fn backend(&self) -> Result<Backend> {
        let url = self.url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let uri = crate::BlobUri::parse(&format!("s3://{bucket}/"), None, "")
                .map_err(|e| RxonError::config(format!("blob url {url:?}: {}", e.message())))?;
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() {
                crate::uri::check_key(prefix)
                    .map_err(|why| RxonError::config(format!("blob url {url:?}: prefix: {why}")))?;
            }
            return Ok(Backend::S3 {
                bucket: uri.bucket().to_owned(),
                prefix: if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                },
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(RxonError::config(format!(
                    "blob url {url:?}: a file:// URL needs an absolute path (file:///dir)"
                )));
            }
            return Ok(Backend::File { root: path.into() });
        }
        if url == "memory://" || url == "memory:" {
            return Ok(Backend::Memory);
        }
        Err(RxonError::config(if url.is_empty() {
            "blob url is not set (s3://bucket, file:///dir or memory://)".to_owned()
        } else {
            format!("blob url {url:?}: expected s3://bucket, file:///dir or memory://")
        }))
    }

    /// Checks every limit and the URL.
    pub fn validate(&self) -> Result<()> {
        let backend = self.backend()?;
        if let Some(bucket) = &self.bucket {
            crate::BlobUri::parse(&format!("s3://{bucket}/"), None, "")
                .map_err(|e| RxonError::config(format!("bucket: {}", e.message())))?;
        }
        let min_part = if matches!(backend, Backend::S3 { .. }) {
            MIN_PART_SIZE
        } else {
            1
        };
        if !(min_part..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(RxonError::config(format!(
                "part_size {} is outside {min_part}..={MAX_PART_SIZE}",
                self.part_size
            )));
        }
        if self.multipart_threshold > MAX_PART_SIZE {
            return Err(RxonError::config(format!(
                "multipart_threshold {} exceeds {MAX_PART_SIZE}",
                self.multipart_threshold
            )));
        }
        if !(1..=MAX_UPLOAD_CONCURRENCY).contains(&self.upload_concurrency) {
            return Err(RxonError::config(format!(
                "upload_concurrency {} is outside 1..={MAX_UPLOAD_CONCURRENCY}",
                self.upload_concurrency
            )));
        }
        if self.max_dir_entries == 0 {
            return Err(RxonError::config("max_dir_entries must be at least 1"));
        }
        if self.max_retries > 10 {
            return Err(RxonError::config("max_retries must be at most 10"));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(RxonError::config(format!("{name} must be above zero")));
            }
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(RxonError::config(format!(
                "endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(RxonError::config(
                "access_key_id and secret_access_key go together",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        let c = BlobConfig::new("s3://data/jobs/in/");
        assert_eq!(
            c.backend().unwrap(),
            Backend::S3 {
                bucket: "data".into(),
                prefix: "jobs/in/".into()
            }
        );
        assert_eq!(
            BlobConfig::new("file:///var/blobs").backend().unwrap(),
            Backend::File {
                root: "/var/blobs".into()
            }
        );
        assert_eq!(
            BlobConfig::new("memory://").backend().unwrap(),
            Backend::Memory
        );
        for bad in [
            "",
            "http://x",
            "file://relative",
            "s3://",
            "s3://data/../x",
            "s3://a",
        ] {
            let e = BlobConfig::new(bad).validate().unwrap_err();
            assert_eq!(e.kind(), rxon_core::ErrorKind::Config, "{bad:?}");
        }
    }

    #[test]
    fn limits_are_checked() {
        let ok = BlobConfig::new("s3://data");
        assert!(ok.validate().is_ok());
        let cases: [fn(&mut BlobConfig); 7] = [
            |c| c.part_size = 1024,
            |c| c.upload_concurrency = 0,
            |c| c.upload_concurrency = 65,
            |c| c.request_timeout = Duration::ZERO,
            |c| c.endpoint = Some("127.0.0.1:9000".into()),
            |c| c.access_key_id = Some("only-half".into()),
            |c| c.max_dir_entries = 0,
        ];
        for (i, set) in cases.into_iter().enumerate() {
            let mut c = ok.clone();
            set(&mut c);
            assert!(c.validate().is_err(), "case {i}");
        }
        // Small parts are fine where S3's minimum does not apply.
        let mut mem = BlobConfig::new("memory://");
        mem.part_size = 1024;
        assert!(mem.validate().is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut c = BlobConfig::new("s3://data");
        c.secret_access_key = Some("very-secret".into());
        c.session_token = Some("session-secret".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret") && !shown.contains("session-secret"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn hash_and_style_follow_the_endpoint() {
        let mut c = BlobConfig::new("s3://bucket");
        assert!(!c.path_style());
        assert_eq!(c.config_hash(), None);
        c.endpoint = Some("http://127.0.0.1:9000".into());
        c.access_key_id = Some("AKIA".into());
        assert!(c.path_style());
        assert_eq!(c.config_hash().as_deref(), Some("24a21b7fb7faf2c8"));
        assert_eq!(BlobConfig::new("memory://").config_hash(), None);
    }

    #[test]
    fn json_refuses_unknown_keys() {
        let e =
            serde_json::from_str::<BlobConfig>(r#"{"url":"memory://","part_sise":1}"#).unwrap_err();
        assert!(e.to_string().contains("part_sise"), "{e}");
        let c: BlobConfig =
            serde_json::from_str(r#"{"url":"memory://","idle_timeout":"500ms"}"#).unwrap();
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
    }
}
