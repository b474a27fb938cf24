//! Handler errors ↔ gRPC statuses ↔ worker errors.

use rxon_core::{ErrorKind, HandlerError, HandlerErrorKind, RxonError};
use std::time::Duration;
use tonic::{Code, Status};

/// Metadata key carrying a rate-limited refusal's retry-after, in milliseconds.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The gRPC code a handler's refusal is answered with.
pub fn code_for(kind: HandlerErrorKind) -> Code {
    match kind {
        HandlerErrorKind::BadRequest => Code::InvalidArgument,
        HandlerErrorKind::Unauthorized => Code::Unauthenticated,
        HandlerErrorKind::Forbidden => Code::PermissionDenied,
        HandlerErrorKind::NotFound => Code::NotFound,
        HandlerErrorKind::Conflict => Code::AlreadyExists,
        HandlerErrorKind::PayloadTooLarge => Code::OutOfRange,
        HandlerErrorKind::RateLimited => Code::ResourceExhausted,
        HandlerErrorKind::Unavailable => Code::Unavailable,
        HandlerErrorKind::NotImplemented => Code::Unimplemented,
        _ => Code::Internal,
    }
}

/// The handler refusal a code answers ([`code_for`] backwards), for the HTTP status a
/// worker reads on every transport.
fn kind_for(code: Code) -> Option<HandlerErrorKind> {
    Some(match code {
        Code::InvalidArgument => HandlerErrorKind::BadRequest,
        Code::Unauthenticated => HandlerErrorKind::Unauthorized,
        Code::PermissionDenied => HandlerErrorKind::Forbidden,
        Code::NotFound => HandlerErrorKind::NotFound,
        Code::AlreadyExists => HandlerErrorKind::Conflict,
        Code::OutOfRange => HandlerErrorKind::PayloadTooLarge,
        Code::ResourceExhausted => HandlerErrorKind::RateLimited,
        Code::Unavailable => HandlerErrorKind::Unavailable,
        Code::Unimplemented => HandlerErrorKind::NotImplemented,
        _ => return None,
    })
}

pub(crate) fn to_status(e: &HandlerError) -> Status {
    let mut status = Status::new(code_for(e.kind()), e.message());
    if let Some(after) = e.retry_after()
        && let Ok(v) = (after.as_millis() as u64).to_string().parse()
    {
        status.metadata_mut().insert(RETRY_AFTER_MS, v);
    }
    status
}

/// How a worker sees a status: `Unauthenticated`/`PermissionDenied` → `Auth`,
/// `ResourceExhausted` → `RateLimited` (with retry-after), `Unavailable` → `Network`,
/// `DeadlineExceeded` → `Timeout`, `Unimplemented` → `Unsupported`, the rest `Protocol`.
pub(crate) fn from_status(status: &Status, what: &str) -> RxonError {
    let kind = match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Auth,
        Code::ResourceExhausted => ErrorKind::RateLimited,
        Code::Unavailable | Code::Cancelled | Code::Aborted => ErrorKind::Network,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::Unimplemented => ErrorKind::Unsupported,
        // A connection that failed or broke (I/O, TLS, an HTTP/2 reset or GOAWAY, a
        // keepalive that timed out) surfaces as UNKNOWN or INTERNAL with the underlying
        // error as its source. A status the peer sent never carries one: that is the
        // network, not the peer's answer.
        Code::Unknown | Code::Internal if std::error::Error::source(status).is_some() => {
            ErrorKind::Network
        }
        _ => ErrorKind::Protocol,
    };
    let message = format!("{what}: {}: {}", code_name(status.code()), status.message());
    let mut e = if status.code() == Code::Unauthenticated {
        RxonError::credential_refused(message)
    } else {
        RxonError::new(kind, message)
    }
    .with_detail("grpc_code", i32::from(status.code()) as i64);
    if let Some(kind) = kind_for(status.code()) {
        e = e.with_detail("status", kind.http_status());
    }
    if let Some(ms) = status
        .metadata()
        .get(RETRY_AFTER_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        e = e.with_retry_after(Duration::from_millis(ms));
    }
    e
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::Unavailable => "UNAVAILABLE",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Internal => "INTERNAL",
        _ => "ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_code_and_back_to_the_same_family() {
        let cases = [
            (HandlerError::unauthorized("x"), ErrorKind::Auth),
            (HandlerError::forbidden("x"), ErrorKind::Auth),
            (HandlerError::bad_request("x"), ErrorKind::Protocol),
            (HandlerError::not_found("x"), ErrorKind::Protocol),
            (HandlerError::conflict("x"), ErrorKind::Protocol),
            (HandlerError::unavailable("x"), ErrorKind::Network),
            (HandlerError::not_implemented("x"), ErrorKind::Unsupported),
            (HandlerError::internal("x"), ErrorKind::Protocol),
        ];
        for (h, kind) in cases {
            assert_eq!(from_status(&to_status(&h), "op").kind(), kind, "{h}");
        }
        let limited = HandlerError::rate_limited("slow", Some(Duration::from_millis(2500)));
        let status = to_status(&limited);
        assert_eq!(status.code(), Code::ResourceExhausted);
        let e = from_status(&status, "op");
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
        assert_eq!(e.message(), "op: RESOURCE_EXHAUSTED: slow");
    }

    #[test]
    fn a_broken_connection_is_network_and_a_peer_status_is_not() {
        let io = || std::sync::Arc::new(std::io::Error::other("connection reset"));
        let unknown = Status::from_error(Box::new(std::io::Error::other("refused")));
        assert_eq!(from_status(&unknown, "op").kind(), ErrorKind::Network);
        let mut reset = Status::internal("h2 protocol error: error reading a body");
        reset.set_source(io());
        assert_eq!(from_status(&reset, "op").kind(), ErrorKind::Network);
        // The same codes sent by the peer are its answer.
        assert_eq!(
            from_status(&Status::internal("bug"), "op").kind(),
            ErrorKind::Protocol
        );
        assert_eq!(
            from_status(&Status::unknown("?"), "op").kind(),
            ErrorKind::Protocol
        );
    }
}
