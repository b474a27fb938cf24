//! How RXON's typed errors become HTTP statuses and back, and the reference's JSON
//! error body: the tables every HTTP-shaped wire (HTTP, the WebSocket upgrade and
//! frames) uses.

use bytes::Bytes;
use http::StatusCode;
use rxon_core::{HandlerError, HandlerErrorKind, RxonError};
use std::time::Duration;

/// The status a handler's refusal is answered with.
pub fn status_for(kind: HandlerErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `{"error": "<message>"}`, the reference's error body.
pub fn error_body(message: &str) -> Bytes {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error: &'a str,
    }
    serde_json::to_vec(&Body { error: message })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(br#"{"error":"internal error"}"#))
}

/// The message of an error body, or the body itself (bounded) when it is not one.
///
/// A message that is itself an error body is unwrapped once: avtomatika 1.0b30 answers
/// 429 with `{"error":"{\"error\": \"Too Many Requests\"}"}` (its handler's body,
/// wrapped again by the listener).
pub fn error_text(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => match serde_json::from_str::<Body>(&b.error) {
            Ok(inner) => inner.error,
            Err(_) => b.error,
        },
        Err(_) => {
            let shown = &body[..body.len().min(512)];
            String::from_utf8_lossy(shown).into_owned()
        }
    }
}

/// The worker-side error for a refused status: [`RxonError::for_status`] (the one
/// table) with the message of an `{"error": …}` body, or the body itself, bounded.
/// `what` names the operation in the message.
pub fn error_for_status(
    status: StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    what: &str,
) -> RxonError {
    RxonError::for_status(status.as_u16(), what, &error_text(body), retry_after)
}

/// A handler error as the listener answers it.
pub fn handler_error_status(e: &HandlerError) -> StatusCode {
    status_for(e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(error_for_status(StatusCode::UNAUTHORIZED, b"", None, "x").is_credential_refused());
        assert_eq!(
            error_for_status(StatusCode::NOT_IMPLEMENTED, b"", None, "x").kind(),
            rxon_core::ErrorKind::Unsupported
        );
        assert!(error_for_status(StatusCode::SERVICE_UNAVAILABLE, b"", None, "x").is_retryable());
        let r = error_for_status(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":"Too Many Requests"}"#,
            Some(Duration::from_secs(2)),
            "x",
        );
        assert_eq!(r.kind(), rxon_core::ErrorKind::RateLimited);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(2)));
        // avtomatika's double-encoded 429, without Retry-After.
        let r = error_for_status(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":"{\"error\": \"Too Many Requests\"}"}"#,
            None,
            "x",
        );
        assert_eq!(r.message(), "x: HTTP 429: Too Many Requests");
        assert_eq!(
            (r.kind(), r.retry_after()),
            (rxon_core::ErrorKind::RateLimited, None)
        );
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
