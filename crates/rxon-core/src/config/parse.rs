//! The textual forms of configuration values: URL schemes and durations.

use super::MAX_DURATION;
use crate::error::{Result, RxonError};
use std::time::Duration;

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
    use super::{parse_duration, secs_to_duration};
    use crate::error::DisplayDuration;
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
