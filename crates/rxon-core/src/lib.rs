//! The core of RXON ("Reverse Axon"), a reverse-connection protocol between workers and
//! orchestrators: workers always dial out, register, long-poll for tasks, post results,
//! send heartbeats, stream progress and receive commands over a channel they opened.
//!
//! This crate provides what every RXON implementation shares, with **no dependencies**:
//!
//! - the [messages] of RXON, one model for both protocol generations (1.0b3 and
//!   1.0b17, see [protocol]), and the open enums of [codes] (statuses, error codes,
//!   commands);
//! - [constants]: protocol version, headers, endpoint paths;
//! - [`RxonError`] (worker side) and [`HandlerError`] (orchestrator side);
//! - the traits: [`Transport`] for workers, [`Handler`] + [`Listener`] for orchestrators,
//!   [`TransportFactory`] for building transports from a [`TransportConfig`];
//! - the worker-side rules every transport applies, written once: [`policy`] (lifecycle,
//!   single-flight token refresh, result retries) and [`retry`] (the one backoff, the
//!   retry-after bounds and parser);
//! - the identifier rule in [`validate`].
//!
//! # Usage
//!
//! Applications depend on the `rxon` crate, which re-exports this one and adds the
//! transports. Depend on `rxon-core` directly when you write a transport, a handler or a
//! library that must not pull in a network stack.
//!
//! ```
//! use rxon_core::{TaskPayload, TaskResult, TaskStatus, Value, Map};
//!
//! let task = TaskPayload {
//!     job_id: "job-1".into(),
//!     task_id: "task-1".into(),
//!     task_type: "resize".into(),
//!     params: [("width", Value::from(640u32))].into_iter()
//!         .map(|(k, v)| (k.to_string(), v)).collect(),
//!     ..Default::default()
//! };
//! let width = task.params.get("width").and_then(Value::as_u64).unwrap_or(0);
//! let mut data = Map::new();
//! data.insert("pixels".into(), Value::from(width * 480));
//! let result = TaskResult::success(&task, "worker-1", data);
//! assert_eq!(result.status, TaskStatus::Success);
//! assert_eq!(result.task_id, "task-1");
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `serde` | | `Serialize` / `Deserialize` for every message, reply and configuration type, with the reference's wire names and the decoding rules described in [`messages`]; the only dependency this crate can have |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024), the toolchain CI builds with (`cargo xtask ci` checks that
//! the declared `rust-version` is the one it builds).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codes;
pub mod config;
pub mod constants;
pub mod error;
pub mod future;
pub mod listener;
pub mod matching;
pub mod messages;
pub mod policy;
pub mod protocol;
pub mod retry;
pub mod transport;
pub mod validate;
pub mod value;

#[cfg(feature = "serde")]
mod serde_support;

pub use codes::{CommandName, ErrorCode, IgnoredReason, JobStatus, TaskStatus};
pub use config::{
    Proxy, ProxyAuth, ServerTlsOptions, TlsOptions, TransportConfig, TransportOptions,
};
pub use constants::PROTOCOL_VERSION;
pub use error::{ErrorKind, HandlerError, HandlerErrorKind, HandlerResult, Result, RxonError};
pub use future::BoxFuture;
pub use listener::{CommandReceiver, Handler, Listener, ListenerOptions, RequestContext};
pub use messages::{
    DeviceUsage, FileMetadata, GpuInfo, HardwareDevice, Heartbeat, HeartbeatReply,
    InstalledArtifact, InstalledModel, ProgressUpdatePayload, RegisterReply, Resources,
    ResourcesUsage, ResultOutcome, SecurityContext, SkillInfo, TaskError, TaskPayload, TaskResult,
    TokenResponse, WorkerCapabilities, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
pub use protocol::{Protocol, ProtocolChoice};
pub use transport::{DynTransport, Transport, TransportFactory};
pub use value::{Map, Number, Value};
