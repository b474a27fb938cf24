//! The JSON of RXON on the wire, for both protocol generations.
//!
//! `rxon-core` holds one message model; this crate writes and reads it in the dialect
//! of each [`Protocol`] generation, exactly as the Python reference does:
//!
//! - [`encode`] / [`decode`]: a message as the JSON object of 1.0b3 or 1.0b17
//!   ([`Wire`] is implemented for every message a transport sends or receives);
//! - [`canonical`]: the reference's normalization and its sorted compact JSON;
//! - [`envelope`]: the 1.0b17 signed envelope (HMAC-SHA256 with `ring`): sealing,
//!   verifying, the replay cache, and task signatures;
//! - [`guard`]: the envelope as every transport applies it (`seal_message` on the
//!   worker side, `admit` on the listener side), written once;
//! - [`catalog`]: the `skills_hash` of a skill catalog.
//!
//! The mapping between the generations and the model is documented in
//! docs/protocol.md; in short: 1.0b3 sees skills as names, `load`, `installed_models`
//! and `cpu_cores`; 1.0b17 sees skill objects, `usage`, `installed_artifacts`,
//! devices and properties, no `null` anywhere in an object, integral floats as
//! integers, and default values left out.
//!
//! ```
//! use rxon_core::{Protocol, TaskResult, TaskPayload};
//! let task = TaskPayload { job_id: "j".into(), task_id: "t".into(), task_type: "echo".into(), ..Default::default() };
//! let ok = TaskResult::success(&task, "w-1", Default::default());
//! let b3 = rxon_wire::encode(Protocol::V1b3, &ok)?;
//! let b17 = rxon_wire::encode(Protocol::V1b17, &ok)?;
//! assert_eq!(b3["status"], "success");
//! assert!(b17.get("status").is_none(), "1.0b17 leaves the default out");
//! assert_eq!(rxon_wire::decode::<TaskResult>(Protocol::V1b17, b17)?, ok);
//! # Ok::<(), rxon_wire::WireError>(())
//! ```
//!
//! # Feature flags
//!
//! This crate has no features.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod b3;
pub mod canonical;
pub mod catalog;
mod dialect;
pub mod envelope;
pub mod guard;

use rxon_core::{HandlerError, Protocol, RxonError};
use serde_json::Value;
use std::fmt;

/// A message the wire can carry in either generation.
pub trait Wire: Sized {
    /// Name used in errors, e.g. `"TaskResult"`.
    const NAME: &'static str;

    /// The message as the JSON value `protocol` peers expect.
    fn to_wire(&self, protocol: Protocol) -> Result<Value, WireError>;

    /// The message from the JSON value a `protocol` peer sent.
    fn from_wire(protocol: Protocol, value: Value) -> Result<Self, WireError>;

    /// The message as `protocol`'s JSON bytes. The 1.0b3 shapes are written straight
    /// from the message (no JSON tree in between: the hot path of a 1.0b3 cycle).
    fn to_wire_bytes(&self, protocol: Protocol) -> Result<Vec<u8>, WireError> {
        canonical::to_bytes(&self.to_wire(protocol)?)
    }

    /// The message from `protocol`'s JSON bytes (1.0b3 shapes read straight, without a
    /// JSON tree in between).
    fn from_wire_bytes(protocol: Protocol, bytes: &[u8]) -> Result<Self, WireError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| WireError::invalid(format!("malformed JSON: {e}")))?;
        Self::from_wire(protocol, value)
    }

    /// Removes the 1.0b17 envelope (`timestamp`, `security`) of a received worker
    /// message once the listener has checked it: it belongs to one attempt, not to the
    /// message (two attempts of one result differ only there). Tasks keep theirs: the
    /// orchestrator's `sig` covers it.
    fn clear_envelope(&mut self) {}
}

/// `message` as `protocol`'s JSON (normalized as the reference does for 1.0b17).
pub fn encode<T: Wire>(protocol: Protocol, message: &T) -> Result<Value, WireError> {
    message.to_wire(protocol)
}

/// A `T` from `protocol`'s JSON.
pub fn decode<T: Wire>(protocol: Protocol, value: Value) -> Result<T, WireError> {
    T::from_wire(protocol, value)
}

/// [`decode`] from bytes.
pub fn decode_slice<T: Wire>(protocol: Protocol, bytes: &[u8]) -> Result<T, WireError> {
    T::from_wire_bytes(protocol, bytes)
}

/// [`encode`] to bytes: `protocol`'s JSON as the reference writes it.
pub fn to_vec<T: Wire>(protocol: Protocol, message: &T) -> Result<Vec<u8>, WireError> {
    message.to_wire_bytes(protocol)
}

/// JSON bytes of `value` as the reference writes them (compact, keys sorted).
pub fn to_bytes(value: &Value) -> Result<Vec<u8>, WireError> {
    canonical::to_bytes(value)
}

/// A message that cannot be written or read in a dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    message: String,
}

impl WireError {
    /// A message that does not have the shape its dialect requires.
    pub fn invalid(message: impl Into<String>) -> Self {
        WireError {
            message: message.into(),
        }
    }

    fn too_deep() -> Self {
        WireError::invalid(format!(
            "the message nests deeper than {} levels",
            canonical::MAX_DEPTH
        ))
    }

    fn decoding(name: &str, e: impl fmt::Display) -> Self {
        WireError::invalid(format!("Failed to instantiate {name}: {e}"))
    }

    /// The description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

impl From<WireError> for HandlerError {
    /// A peer's message that does not decode is a 400.
    fn from(e: WireError) -> Self {
        HandlerError::bad_request(e.message)
    }
}

impl WireError {
    /// As a worker-side error about what the orchestrator sent (a protocol error).
    pub fn from_peer(self, what: &str) -> RxonError {
        RxonError::protocol(format!(
            "invalid {what} from orchestrator: {}",
            self.message
        ))
    }

    /// As a worker-side error about what we were asked to send (invalid input).
    pub fn outgoing(self, what: &str) -> RxonError {
        RxonError::invalid_input(format!("cannot encode {what}: {}", self.message))
    }
}

/// Serializes with the model's own serde form.
fn to_value<T: serde::Serialize>(name: &str, v: &T) -> Result<Value, WireError> {
    serde_json::to_value(v).map_err(|e| WireError::invalid(format!("cannot encode {name}: {e}")))
}

/// Serializes a serde form to bytes.
fn to_json_vec<T: serde::Serialize>(name: &str, v: &T) -> Result<Vec<u8>, WireError> {
    serde_json::to_vec(v).map_err(|e| WireError::invalid(format!("cannot encode {name}: {e}")))
}

/// Deserializes a serde form from bytes.
fn from_json_slice<T: serde::de::DeserializeOwned>(
    name: &str,
    bytes: &[u8],
) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            WireError::invalid(format!("malformed JSON: {e}"))
        } else {
            WireError::decoding(name, e)
        }
    })
}

/// Deserializes with a serde form.
fn from_value<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, WireError> {
    if !v.is_object() {
        return Err(WireError::decoding(name, "expected an object"));
    }
    serde_json::from_value(v).map_err(|e| WireError::decoding(name, e))
}
