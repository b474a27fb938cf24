//! How RXON's typed errors become HTTP statuses and back, and the JSON error body.

use bytes::Bytes;
use http::StatusCode;
use rxon_core::{ErrorKind, HandlerError, HandlerErrorKind, RxonError};
use std::time::{Duration, SystemTime};

/// The status a handler's refusal is answered with.
pub fn status_for(kind: HandlerErrorKind) -> StatusCode {
    match kind {
        HandlerErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        HandlerErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        HandlerErrorKind::Forbidden => StatusCode::FORBIDDEN,
        HandlerErrorKind::NotFound => StatusCode::NOT_FOUND,
        HandlerErrorKind::Conflict => StatusCode::CONFLICT,
        HandlerErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        HandlerErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        HandlerErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        HandlerErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error": "<message>"}`, the reference's error body.
pub(crate) fn error_body(message: &str) -> Bytes {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error: &'a str,
    }
    serde_json::to_vec(&Body { error: message })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(br#"{"error":"internal error"}"#))
}

/// The message of an error body, or the body itself (bounded) when it is not one.
pub(crate) fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => b.error,
        Err(_) => {
            let shown = &body[..body.len().min(512)];
            String::from_utf8_lossy(shown).into_owned()
        }
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3); `None` for
/// anything else. The value is the peer's: [`RxonError::with_retry_after`] clamps it.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The worker-side error for a non-success status (other than a 401 that the caller
/// answers by refreshing the token): 401/403 `Auth`, 429 `RateLimited` with
/// `retry_after`, 502–504 `Network`, anything else `Protocol`. `body` is an
/// `{"error": …}` body or plain text; `what` names the operation in the message.
pub fn error_for_status(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    what: &str,
) -> RxonError {
    let text = error_text(body);
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Auth,
        429 => ErrorKind::RateLimited,
        502..=504 => ErrorKind::Network,
        _ => ErrorKind::Protocol,
    };
    let mut err = RxonError::new(kind, format!("{what}: HTTP {}: {text}", status.as_u16()))
        .with_detail("status", status.as_u16())
        .with_detail("body", text);
    if let Some(r) = retry_after {
        err = err.with_retry_after(r);
    }
    err
}

/// A handler error as the listener answers it.
pub(crate) fn handler_error_status(e: &HandlerError) -> StatusCode {
    status_for(e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("99999999999", now),
            Some(Duration::from_secs(99_999_999_999))
        );
    }

    #[test]
    fn statuses_map_to_worker_error_families() {
        let e = error_for_status(
            StatusCode::NOT_FOUND,
            br#"{"error":"no such worker"}"#,
            None,
            "poll",
        );
        assert!(e.is_protocol());
        assert_eq!(e.message(), "poll: HTTP 404: no such worker");
        assert_eq!(e.details()["status"].as_u64(), Some(404));
        assert!(error_for_status(StatusCode::FORBIDDEN, b"", None, "x").is_auth());
        assert!(error_for_status(StatusCode::SERVICE_UNAVAILABLE, b"", None, "x").is_retryable());
        let r = error_for_status(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":"Too Many Requests"}"#,
            Some(Duration::from_secs(2)),
            "x",
        );
        assert_eq!(r.kind(), ErrorKind::RateLimited);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(2)));
        // A body that is not JSON is quoted, bounded.
        let long = vec![b'x'; 10_000];
        let e = error_for_status(StatusCode::INTERNAL_SERVER_ERROR, &long, None, "x");
        assert!(e.message().len() < 600);
    }

    #[test]
    fn every_handler_kind_has_a_distinct_error_status() {
        let kinds = [
            HandlerErrorKind::BadRequest,
            HandlerErrorKind::Unauthorized,
            HandlerErrorKind::Forbidden,
            HandlerErrorKind::NotFound,
            HandlerErrorKind::Conflict,
            HandlerErrorKind::PayloadTooLarge,
            HandlerErrorKind::RateLimited,
            HandlerErrorKind::Unavailable,
            HandlerErrorKind::NotImplemented,
            HandlerErrorKind::Internal,
        ];
        let mut codes: Vec<u16> = kinds.iter().map(|k| status_for(*k).as_u16()).collect();
        assert!(codes.iter().all(|c| *c >= 400));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert_eq!(
            error_body("a \"b\""),
            Bytes::from_static(br#"{"error":"a \"b\""}"#)
        );
    }
}
