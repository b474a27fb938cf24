//! Test tools for RXON workers and transports.
//!
//! This crate provides:
//!
//! - [`MockTransport`], an in-memory [`Transport`](rxon_core::Transport) that needs no
//!   orchestrator, with its [`MockHandle`] to push tasks and commands and to inspect
//!   what the worker sent; and [`MockTransportFactory`], which serves `mock://` URLs so
//!   that a worker built from configuration runs against the mock by changing only its
//!   URL;
//! - [`Orchestrator`], a small embedded orchestrator implementing
//!   [`Handler`](rxon_core::Handler) with real task queues, long-poll hand-off, worker
//!   tracking, results, cancellation, progress and tokens: the orchestrator a listener
//!   serves in demos and transport tests (see the [`orchestrator`] module).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use rxon_core::{Transport, TransportConfig, TransportFactory, WorkerCommand};
//! use rxon_testing::{MockHandle, MockTransportFactory};
//!
//! let mock = MockHandle::new();
//! let config = TransportConfig::new(mock.url(), "worker-1", "token");
//! let transport = MockTransportFactory.create(&config)?;
//! transport.connect().await?;
//!
//! mock.push_command(WorkerCommand::cancel_task("t-9", None));
//! let cmd = transport.next_command().await?.expect("a command");
//! assert_eq!(cmd.task_id.as_deref(), Some("t-9"));
//! # Ok::<(), rxon_core::RxonError>(())
//! # }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod capture;
pub mod conformance;
pub mod faults;
mod handlers;
mod local;
mod mock;
pub mod orchestrator;
#[cfg(feature = "pki")]
pub mod pki;
#[cfg(feature = "s3")]
pub mod s3;

pub use capture::Captured;
pub use handlers::{ContextEcho, FixedTask};
pub use local::{
    LOCAL_SCHEMES, LOCAL_TRANSPORT_NAME, LocalListener, LocalTransport, LocalTransportFactory,
};
pub use mock::{MockHandle, MockTransport, MockTransportFactory, Operation, SCHEMES};
pub use orchestrator::{
    CancelOutcome, Orchestrator, OrchestratorBuilder, TaskState, WorkerInfo, WorkerStatus,
};
