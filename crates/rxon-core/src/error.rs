//! Errors: [`RxonError`] for the worker side and every library call, [`HandlerError`] for
//! what an orchestrator's handler answers.
//!
//! The reference's exception families map onto [`ErrorKind`]:
//!
//! | Python (`rxon.exceptions`) | [`ErrorKind`] | family test |
//! | --- | --- | --- |
//! | `RxonNetworkError` | [`Network`](ErrorKind::Network), [`Timeout`](ErrorKind::Timeout), [`Closed`](ErrorKind::Closed) | [`RxonError::is_network`] |
//! | `RxonAuthError` | [`Auth`](ErrorKind::Auth) | [`RxonError::is_auth`] |
//! | `RxonProtocolError` | [`Protocol`](ErrorKind::Protocol) | [`RxonError::is_protocol`] |
//! | `S3ConfigMismatchError` | [`S3ConfigMismatch`](ErrorKind::S3ConfigMismatch) | protocol |
//! | `IntegrityError` | [`Integrity`](ErrorKind::Integrity) | protocol |
//! | `ParamValidationError` | [`ParamValidation`](ErrorKind::ParamValidation) | protocol |
//! | — (429) | [`RateLimited`](ErrorKind::RateLimited) with [`RxonError::retry_after`] | [`RxonError::is_retryable`] |

use crate::value::{Map, Value};
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A `Result` whose error defaults to [`RxonError`].
pub type Result<T, E = RxonError> = std::result::Result<T, E>;

/// What went wrong, coarsely; see the module docs for the mapping to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer could not be reached or the connection broke.
    Network,
    /// An operation exceeded its deadline.
    Timeout,
    /// The transport is not connected, or was closed.
    Closed,
    /// The credential was refused and could not be refreshed.
    Auth,
    /// The peer answered something the protocol does not allow (status, body, frame).
    Protocol,
    /// Worker and orchestrator point at different blob storage.
    S3ConfigMismatch,
    /// Data failed a size or checksum check.
    Integrity,
    /// Task parameters failed validation.
    ParamValidation,
    /// The peer asked us to slow down; see [`RxonError::retry_after`].
    RateLimited,
    /// A caller-supplied argument is invalid (for example an identifier).
    InvalidInput,
    /// Configuration is invalid or names something this build cannot provide.
    Config,
    /// The operation is not supported by this transport or build.
    Unsupported,
    /// The named object, bucket or file does not exist.
    NotFound,
    /// Reading or writing a local file failed.
    Io,
    /// A bug or an unexpected state in this library or its environment.
    Internal,
}

impl ErrorKind {
    /// A short lowercase name, used in [`Display`](fmt::Display).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Network => "network error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "transport closed",
            ErrorKind::Auth => "authentication error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::S3ConfigMismatch => "storage configuration mismatch",
            ErrorKind::Integrity => "integrity error",
            ErrorKind::ParamValidation => "parameter validation error",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Config => "configuration error",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotFound => "not found",
            ErrorKind::Io => "local I/O error",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible operation in rxon.
///
/// Carries a [`kind`](Self::kind), a human-readable message, a details map (the
/// reference's `details`, e.g. `{"status": 500, "body": "..."}`), an optional
/// retry-after hint and an optional underlying cause available through
/// [`source()`](std::error::Error::source).
///
/// ```
/// use rxon_core::{ErrorKind, RxonError};
/// use std::time::Duration;
///
/// let err = RxonError::rate_limited("orchestrator busy", Some(Duration::from_secs(2)))
///     .with_detail("status", 429u16);
/// assert_eq!(err.kind(), ErrorKind::RateLimited);
/// assert!(err.is_retryable());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(err.to_string(), "rate limited: orchestrator busy (retry after 2s)");
/// ```
pub struct RxonError {
    kind: ErrorKind,
    message: String,
    details: Map,
    retry_after: Option<Duration>,
    /// The peer refused the credential itself (HTTP 401, gRPC `UNAUTHENTICATED`): the
    /// one case the [`policy`](crate::policy) answers with a refresh.
    credential_refused: bool,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl RxonError {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RxonError {
            kind,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
            credential_refused: false,
            source: None,
        }
    }

    /// The worker-side error for a refused HTTP status, from the one table every
    /// HTTP-shaped transport uses (the reference's statuses; a new transport that speaks
    /// HTTP statuses reports them the same way):
    ///
    /// | status | kind |
    /// | --- | --- |
    /// | 401 | [`ErrorKind::Auth`], [credential refused](Self::is_credential_refused) |
    /// | 403 | [`ErrorKind::Auth`] |
    /// | 429 | [`ErrorKind::RateLimited`] with `retry_after` (clamped) |
    /// | 501 | [`ErrorKind::Unsupported`] (the orchestrator lacks the operation) |
    /// | 502, 503, 504 | [`ErrorKind::Network`] (a gateway lost the orchestrator) |
    /// | anything else | [`ErrorKind::Protocol`] |
    ///
    /// `what` names the operation, `text` is the peer's error message; both go into the
    /// message, the status and text into the details (`status`, `body`).
    ///
    /// ```
    /// use rxon_core::{ErrorKind, RxonError};
    /// use std::time::Duration;
    /// let e = RxonError::for_status(404, "poll", "no such worker", None);
    /// assert_eq!(e.kind(), ErrorKind::Protocol);
    /// assert_eq!(e.message(), "poll: HTTP 404: no such worker");
    /// assert!(RxonError::for_status(401, "x", "", None).is_credential_refused());
    /// assert!(!RxonError::for_status(403, "x", "", None).is_credential_refused());
    /// let r = RxonError::for_status(429, "x", "", Some(Duration::from_secs(2)));
    /// assert_eq!(r.retry_after(), Some(Duration::from_secs(2)));
    /// assert_eq!(RxonError::for_status(501, "x", "", None).kind(), ErrorKind::Unsupported);
    /// ```
    pub fn for_status(status: u16, what: &str, text: &str, retry_after: Option<Duration>) -> Self {
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            429 => ErrorKind::RateLimited,
            501 => ErrorKind::Unsupported,
            502..=504 => ErrorKind::Network,
            _ => ErrorKind::Protocol,
        };
        let mut e = RxonError::new(kind, format!("{what}: HTTP {status}: {text}"))
            .with_detail("status", status)
            .with_detail("body", text);
        e.credential_refused = status == 401;
        if let Some(r) = retry_after {
            e = e.with_retry_after(r);
        }
        e
    }

    /// [`ErrorKind::Auth`] for a credential the peer refused (HTTP 401, gRPC
    /// `UNAUTHENTICATED`): the [`policy`](crate::policy) refreshes it once and retries.
    /// A refusal of an accepted credential (403) is a plain [`auth`](Self::auth) error.
    pub fn credential_refused(message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Auth, message);
        e.credential_refused = true;
        e
    }

    /// `true` for [`credential_refused`](Self::credential_refused) errors.
    pub fn is_credential_refused(&self) -> bool {
        self.credential_refused
    }

    /// [`ErrorKind::Network`].
    pub fn network(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Network, message)
    }
    /// [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// [`ErrorKind::Closed`].
    pub fn closed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Closed, message)
    }
    /// [`ErrorKind::Auth`].
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }
    /// [`ErrorKind::Protocol`].
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }
    /// [`ErrorKind::RateLimited`] with an optional retry-after hint, clamped with
    /// [`clamp_retry_after`](crate::retry::clamp_retry_after).
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, message);
        e.retry_after = retry_after.map(crate::retry::clamp_retry_after);
        e
    }
    /// [`ErrorKind::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::Integrity`]: data failed a size or checksum check.
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }
    /// [`ErrorKind::Io`], keeping the [`std::io::Error`] as the source.
    pub fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, message).with_source(source)
    }

    /// Adds one entry to the details map.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// Replaces the details map.
    pub fn with_details(mut self, details: Map) -> Self {
        self.details = details;
        self
    }

    /// Sets the underlying cause.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the retry-after hint, clamped between
    /// [`MIN_RETRY_AFTER`](crate::retry::MIN_RETRY_AFTER) and
    /// [`MAX_RETRY_AFTER`](crate::retry::MAX_RETRY_AFTER): a peer's hint can neither
    /// make a worker spin nor park it for ever.
    ///
    /// ```
    /// use rxon_core::RxonError;
    /// use rxon_core::retry::{MAX_RETRY_AFTER, MIN_RETRY_AFTER};
    /// use std::time::Duration;
    /// let e = RxonError::network("busy").with_retry_after(Duration::ZERO);
    /// assert_eq!(e.retry_after(), Some(MIN_RETRY_AFTER));
    /// let e = RxonError::network("busy").with_retry_after(Duration::from_secs(86_400 * 365));
    /// assert_eq!(e.retry_after(), Some(MAX_RETRY_AFTER));
    /// ```
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(crate::retry::clamp_retry_after(retry_after));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The details map (empty when there are none).
    pub fn details(&self) -> &Map {
        &self.details
    }
    /// The peer's HTTP status (or the status an HTTP-shaped wire maps its answer to),
    /// when the error came from one: the `status` detail.
    pub fn status(&self) -> Option<u16> {
        self.details
            .get("status")
            .and_then(crate::Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
    }
    /// How long the peer asked us to wait before retrying, when it said; always
    /// within [`MIN_RETRY_AFTER`](crate::retry::MIN_RETRY_AFTER) ..=
    /// [`MAX_RETRY_AFTER`](crate::retry::MAX_RETRY_AFTER).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Reference family `RxonNetworkError`: network, timeout, closed.
    pub fn is_network(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::Closed
        )
    }
    /// Reference family `RxonAuthError`.
    pub fn is_auth(&self) -> bool {
        self.kind == ErrorKind::Auth
    }
    /// Reference family `RxonProtocolError` and its narrower cases.
    pub fn is_protocol(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Protocol
                | ErrorKind::S3ConfigMismatch
                | ErrorKind::Integrity
                | ErrorKind::ParamValidation
        )
    }
    /// `true` when trying the same operation again later may succeed: network
    /// failures, timeouts and rate limiting. A closed transport is not retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::RateLimited
        )
    }
}

impl fmt::Debug for RxonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RxonError");
        d.field("kind", &self.kind).field("message", &self.message);
        if !self.details.is_empty() {
            d.field("details", &self.details);
        }
        if let Some(r) = self.retry_after {
            d.field("retry_after", &r);
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for RxonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(r) = self.retry_after {
            write!(f, " (retry after {})", DisplayDuration(r))?;
        }
        Ok(())
    }
}

impl StdError for RxonError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<HandlerError> for RxonError {
    /// How a worker sees a handler's refusal when no network sits in between
    /// (in-process transports); network transports go through their own mapping.
    fn from(e: HandlerError) -> Self {
        let kind = match e.kind {
            HandlerErrorKind::Unauthorized | HandlerErrorKind::Forbidden => ErrorKind::Auth,
            HandlerErrorKind::RateLimited => ErrorKind::RateLimited,
            HandlerErrorKind::Unavailable => ErrorKind::Network,
            HandlerErrorKind::NotImplemented => ErrorKind::Unsupported,
            _ => ErrorKind::Protocol,
        };
        let mut out = RxonError::new(kind, e.message).with_detail("status", e.kind.http_status());
        out.retry_after = e.retry_after.map(crate::retry::clamp_retry_after);
        out.credential_refused = e.kind == HandlerErrorKind::Unauthorized;
        out
    }
}

pub(crate) struct DisplayDuration(pub(crate) Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.as_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}us", d.as_micros())
        }
    }
}

/// Why a handler refused a request; each transport maps the kind onto its own status
/// (HTTP status code, gRPC code, WebSocket error frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerErrorKind {
    /// The request is malformed or an argument is invalid (HTTP 400).
    BadRequest,
    /// Missing or wrong credential (HTTP 401).
    Unauthorized,
    /// Valid credential, operation not allowed (HTTP 403).
    Forbidden,
    /// Unknown worker, task or job (HTTP 404).
    NotFound,
    /// The request conflicts with current state (HTTP 409).
    Conflict,
    /// The request body exceeds a limit (HTTP 413).
    PayloadTooLarge,
    /// Too many requests; may carry a retry-after (HTTP 429).
    RateLimited,
    /// The orchestrator cannot serve right now, e.g. shutting down (HTTP 503).
    Unavailable,
    /// The handler does not implement this operation (HTTP 501).
    NotImplemented,
    /// Anything else (HTTP 500).
    Internal,
}

/// A handler's typed refusal.
///
/// ```
/// use rxon_core::{HandlerError, HandlerErrorKind};
/// let e = HandlerError::unauthorized("bad token");
/// assert_eq!(e.kind(), HandlerErrorKind::Unauthorized);
/// assert_eq!(e.to_string(), "unauthorized: bad token");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    kind: HandlerErrorKind,
    message: String,
    retry_after: Option<Duration>,
}

/// A `Result` whose error is a [`HandlerError`].
pub type HandlerResult<T> = std::result::Result<T, HandlerError>;

impl HandlerError {
    /// A new error of `kind` with `message` (sent to the worker as the error text).
    pub fn new(kind: HandlerErrorKind, message: impl Into<String>) -> Self {
        HandlerError {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
    /// [`HandlerErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::BadRequest, message)
    }
    /// [`HandlerErrorKind::Unauthorized`].
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::Unauthorized, message)
    }
    /// [`HandlerErrorKind::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::Forbidden, message)
    }
    /// [`HandlerErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::NotFound, message)
    }
    /// [`HandlerErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::Conflict, message)
    }
    /// [`HandlerErrorKind::RateLimited`] with an optional retry-after.
    pub fn rate_limited(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        HandlerError {
            kind: HandlerErrorKind::RateLimited,
            message: message.into(),
            retry_after,
        }
    }
    /// [`HandlerErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::Unavailable, message)
    }
    /// [`HandlerErrorKind::NotImplemented`].
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::NotImplemented, message)
    }
    /// [`HandlerErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(HandlerErrorKind::Internal, message)
    }

    /// The kind.
    pub fn kind(&self) -> HandlerErrorKind {
        self.kind
    }
    /// The message sent to the worker.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The retry-after hint of a rate-limited refusal.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl HandlerErrorKind {
    /// The HTTP status this refusal is answered with, and the one every other wire's
    /// answer maps back to ([`RxonError::status`]), so that a worker reads the same
    /// status whatever the transport.
    ///
    /// ```
    /// use rxon_core::HandlerErrorKind;
    /// assert_eq!(HandlerErrorKind::Forbidden.http_status(), 403);
    /// assert_eq!(HandlerErrorKind::RateLimited.http_status(), 429);
    /// ```
    pub fn http_status(self) -> u16 {
        match self {
            HandlerErrorKind::BadRequest => 400,
            HandlerErrorKind::Unauthorized => 401,
            HandlerErrorKind::Forbidden => 403,
            HandlerErrorKind::NotFound => 404,
            HandlerErrorKind::Conflict => 409,
            HandlerErrorKind::PayloadTooLarge => 413,
            HandlerErrorKind::RateLimited => 429,
            HandlerErrorKind::Unavailable => 503,
            HandlerErrorKind::NotImplemented => 501,
            HandlerErrorKind::Internal => 500,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            HandlerErrorKind::BadRequest => "bad request",
            HandlerErrorKind::Unauthorized => "unauthorized",
            HandlerErrorKind::Forbidden => "forbidden",
            HandlerErrorKind::NotFound => "not found",
            HandlerErrorKind::Conflict => "conflict",
            HandlerErrorKind::PayloadTooLarge => "payload too large",
            HandlerErrorKind::RateLimited => "rate limited",
            HandlerErrorKind::Unavailable => "unavailable",
            HandlerErrorKind::NotImplemented => "not implemented",
            HandlerErrorKind::Internal => "internal error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl StdError for HandlerError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Io;
    impl fmt::Display for Io {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("connection refused")
        }
    }
    impl StdError for Io {}

    #[test]
    fn families_follow_the_reference_hierarchy() {
        let protocol_kinds = [
            ErrorKind::Protocol,
            ErrorKind::S3ConfigMismatch,
            ErrorKind::Integrity,
            ErrorKind::ParamValidation,
        ];
        for k in protocol_kinds {
            let e = RxonError::new(k, "x");
            assert!(e.is_protocol() && !e.is_network() && !e.is_auth(), "{k:?}");
            assert!(!e.is_retryable());
        }
        assert!(RxonError::network("x").is_network());
        assert!(RxonError::timeout("x").is_network());
        assert!(RxonError::auth("x").is_auth());
        assert!(!RxonError::auth("x").is_retryable());
        assert!(!RxonError::closed("x").is_retryable());
        assert!(RxonError::rate_limited("x", None).is_retryable());
    }

    #[test]
    fn source_display_and_details() {
        let e = RxonError::network("POST /_worker/tasks/result failed")
            .with_source(Io)
            .with_detail("attempt", 2u32);
        assert_eq!(
            e.to_string(),
            "network error: POST /_worker/tasks/result failed"
        );
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("connection refused")
        );
        assert_eq!(e.details().get("attempt"), Some(&Value::from(2u32)));
        assert!(format!("{e:?}").contains("source: Io"));
        let ms = RxonError::rate_limited("slow down", Some(Duration::from_millis(1500)));
        assert_eq!(
            ms.to_string(),
            "rate limited: slow down (retry after 1500ms)"
        );
    }

    #[test]
    fn handler_errors_become_the_matching_worker_family() {
        assert!(RxonError::from(HandlerError::unauthorized("t")).is_auth());
        assert!(RxonError::from(HandlerError::forbidden("t")).is_auth());
        assert!(RxonError::from(HandlerError::bad_request("t")).is_protocol());
        let r = RxonError::from(HandlerError::rate_limited(
            "t",
            Some(Duration::from_secs(3)),
        ));
        assert_eq!(r.kind(), ErrorKind::RateLimited);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            RxonError::from(HandlerError::not_implemented("t")).kind(),
            ErrorKind::Unsupported
        );
    }
}
