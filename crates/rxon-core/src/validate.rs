//! The identifier rule of RXON (worker ids, job ids, task ids and task types), the
//! shape of W3C trace context values, and the constant-time comparison of secrets.
//!
//! An identifier is non-empty and made of ASCII letters, digits, `_` and `-`
//! (`^[a-zA-Z0-9_-]+$`, as in the reference). Identifiers end up in URL paths and
//! storage keys, so transports check them *before* building either: a bad id is an
//! [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) error, never a request.

use crate::error::{Result, RxonError};

/// Longest identifier accepted. The reference sets no bound; one is needed so that an
/// id cannot be used to make paths or keys of unbounded length.
pub const MAX_IDENTIFIER_LEN: usize = 256;

/// `true` if `value` follows the identifier rule.
///
/// ```
/// use rxon_core::validate::is_valid_identifier;
/// assert!(is_valid_identifier("gpu-worker_01"));
/// assert!(!is_valid_identifier("../etc"));
/// assert!(!is_valid_identifier(""));
/// ```
pub fn is_valid_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_IDENTIFIER_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `value` and names it (`what`, e.g. `"worker_id"`) in the error.
///
/// ```
/// use rxon_core::validate::validate_identifier;
/// let err = validate_identifier("a/b", "worker_id").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid input: invalid worker_id \"a/b\": use 1-256 ASCII letters, digits, '_' or '-'"
/// );
/// ```
pub fn validate_identifier(value: &str, what: &str) -> Result<()> {
    if is_valid_identifier(value) {
        return Ok(());
    }
    // Quote at most a bounded prefix of the offending value.
    let shown: String = value.chars().take(64).collect();
    Err(RxonError::invalid_input(format!(
        "invalid {what} {shown:?}: use 1-{MAX_IDENTIFIER_LEN} ASCII letters, digits, '_' or '-'"
    ))
    .with_detail("field", what))
}

/// Compares two secrets (tokens, credentials) in time that depends only on their
/// lengths, not on where they first differ, so a peer cannot learn a token byte by byte
/// from response times.
///
/// ```
/// use rxon_core::validate::constant_time_eq;
/// assert!(constant_time_eq(b"s3cret", b"s3cret"));
/// assert!(!constant_time_eq(b"s3cret", b"s3creT"));
/// assert!(!constant_time_eq(b"s3cret", b"s3cre"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The longest W3C `tracestate` passed on: what W3C Trace Context asks every
/// implementation to propagate.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// `true` for a W3C `traceparent` (a task's `tracing_context`, an event's
/// `trace_context`): `<version>-<trace id>-<span id>-<flags>` in lowercase hex, 2, 32,
/// 16 and 2 digits, version not `ff`, neither id all zeros.
///
/// ```
/// use rxon_core::validate::is_traceparent;
/// assert!(is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
/// assert!(!is_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
/// ```
pub fn is_traceparent(value: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let mut parts = value.split('-');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(version), Some(trace), Some(span), Some(flags), None) => {
            hex(version, 2)
                && version != "ff"
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && nonzero(trace)
                && nonzero(span)
        }
        _ => false,
    }
}

/// `true` for a W3C `tracestate` worth passing on: printable ASCII, at most
/// [`MAX_TRACESTATE_LEN`] bytes.
pub fn is_tracestate(value: &str) -> bool {
    value.len() <= MAX_TRACESTATE_LEN && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_trace_context_passes() {
        assert!(is_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        let long = format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01{}",
            "0".repeat(64)
        );
        for bad in [
            "",
            "garbage",
            long.as_str(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0-",
        ] {
            assert!(!is_traceparent(bad), "{bad:?}");
        }
        assert!(is_tracestate("rxon=1,vendor=a b"));
        assert!(!is_tracestate("a=\n"));
        assert!(!is_tracestate(&"a".repeat(MAX_TRACESTATE_LEN + 1)));
    }

    #[test]
    fn accepts_the_reference_alphabet() {
        for ok in [
            "a",
            "A-Z_0-9",
            "worker-1",
            "_",
            "-",
            &"x".repeat(MAX_IDENTIFIER_LEN),
        ] {
            assert!(is_valid_identifier(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let long = "x".repeat(MAX_IDENTIFIER_LEN + 1);
        for bad in [
            "", " ", "a b", "a/b", "..", "a.b", "a\n", "é", "a%2F", "a?b", "a#", &long,
        ] {
            assert!(!is_valid_identifier(bad), "{bad:?}");
            let err = validate_identifier(bad, "task_id").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
            assert!(err.message().contains("task_id"));
        }
    }
}
