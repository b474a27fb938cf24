//! [`Storage`]: where an orchestrator keeps its state.

use rxon_core::{Result, RxonError};
use std::fmt;
use std::str::FromStr;

/// The key prefix of a Redis storage unless [`Storage::with_prefix`] says otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "rxon";

/// Where an orchestrator keeps its tasks, queues, claims, workers, tokens and rate
/// limits: in this process's memory (the default), or in Redis, where several
/// listener processes (on several machines) share them.
///
/// Parsed from configuration: `"memory"`, or a `redis://[user:password@]host[:port][/db]`
/// URL (`rediss://` is not supported). `Debug` and `Display` never show the password.
///
/// ```
/// use rxon_orchestrator::Storage;
/// assert_eq!("memory".parse::<Storage>()?, Storage::Memory);
/// assert!("postgres://db".parse::<Storage>().is_err());
/// let shared = "redis://:s3cret@127.0.0.1:6379/0".parse::<Storage>();
/// if cfg!(feature = "redis") {
///     let shared = shared?;
///     assert!(shared.is_shared());
///     assert_eq!(shared.to_string(), "redis://:***@127.0.0.1:6379/0");
/// } else {
///     // Without the feature, the error says which feature, never the password.
///     let e = shared.unwrap_err();
///     assert!(e.message().contains("`redis` feature") && !e.message().contains("s3cret"));
/// }
/// # Ok::<(), rxon_core::RxonError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Storage {
    /// This process's memory: nothing survives a restart, one process serves every
    /// worker.
    #[default]
    Memory,
    /// A Redis server (7.0 or later, standalone or a Sentinel-managed primary; not
    /// Redis Cluster), from [`Storage::redis`] (which needs the `redis` feature).
    #[non_exhaustive]
    Redis {
        /// The server's URL (with its credentials).
        url: String,
        /// The prefix of every key (default [`DEFAULT_REDIS_PREFIX`]): orchestrators
        /// with different prefixes share a server without sharing state.
        prefix: String,
    },
}

impl Storage {
    /// A Redis storage at `url` with the default prefix.
    pub fn redis(url: impl Into<String>) -> Result<Storage> {
        let url = url.into();
        check_redis_url(&url)?;
        Ok(Storage::Redis {
            url,
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
        })
    }

    /// The same storage with key prefix `prefix` (letters, digits, `_ - .`, at most
    /// 64; ignored for [`Storage::Memory`]). No `:`: it separates the parts of keys, so
    /// that two prefixes never share one.
    pub fn with_prefix(self, prefix: impl Into<String>) -> Result<Storage> {
        let prefix = prefix.into();
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok {
            return Err(RxonError::config(format!(
                "invalid storage prefix {:?}: use 1-64 letters, digits, '_', '-' or '.'",
                prefix.chars().take(64).collect::<String>()
            )));
        }
        Ok(match self {
            Storage::Memory => Storage::Memory,
            Storage::Redis { url, .. } => Storage::Redis { url, prefix },
        })
    }

    /// Whether several processes can share this storage.
    pub fn is_shared(&self) -> bool {
        !matches!(self, Storage::Memory)
    }
}

fn check_redis_url(url: &str) -> Result<()> {
    if url.starts_with("rediss://") {
        return Err(RxonError::config(
            "rediss:// (Redis over TLS) is not supported; use redis:// on a trusted network",
        ));
    }
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(RxonError::config(format!(
            "invalid storage {:?}: use \"memory\" or a redis:// URL",
            redacted(url)
        )));
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if host.is_empty() || host.starts_with('/') {
        return Err(RxonError::config(format!(
            "invalid storage {:?}: the redis:// URL names no host",
            redacted(url)
        )));
    }
    if !cfg!(feature = "redis") {
        return Err(RxonError::config(format!(
            "storage {:?} needs the `redis` feature of rxon-orchestrator",
            redacted(url)
        )));
    }
    Ok(())
}

/// `url` with the password of its user information replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.chars().take(128).collect();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

impl FromStr for Storage {
    type Err = RxonError;

    fn from_str(s: &str) -> Result<Storage> {
        match s.trim() {
            "memory" => Ok(Storage::Memory),
            url => Storage::redis(url),
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Memory => f.write_str("memory"),
            Storage::Redis { url, .. } => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Memory => f.write_str("Memory"),
            Storage::Redis { url, prefix } => f
                .debug_struct("Redis")
                .field("url", &redacted(url))
                .field("prefix", prefix)
                .finish(),
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        let s: Storage = "redis://alice:pw@10.0.0.5:6380/2".parse().unwrap();
        assert_eq!(s.to_string(), "redis://alice:***@10.0.0.5:6380/2");
        assert!(!format!("{s:?}").contains("pw"));
        assert_eq!(
            "redis://h".parse::<Storage>().unwrap().to_string(),
            "redis://h"
        );
        for bad in [
            "",
            "redis://",
            "redis:///0",
            "rediss://h",
            "mem",
            "redis://:x@",
        ] {
            let e = bad.parse::<Storage>().unwrap_err();
            assert!(!e.message().contains("x@"), "{bad}: {e}");
        }
        let p = s.clone().with_prefix("tenant-a").unwrap();
        assert!(matches!(&p, Storage::Redis { prefix, .. } if prefix == "tenant-a"));
        assert!(s.clone().with_prefix("bad prefix").is_err());
        assert!(
            s.with_prefix("a:t").is_err(),
            "':' would let prefixes share keys"
        );
        assert!(!Storage::Memory.is_shared());
    }
}
