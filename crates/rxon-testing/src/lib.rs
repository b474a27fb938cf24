//! Test tools for RXON workers and transports.
//!
//! This crate provides:
//!
//! - [`MockTransport`], an in-memory [`Transport`](rxon_core::Transport) that needs no
//!   orchestrator, with its [`MockHandle`] to push tasks and commands and to inspect
//!   what the worker sent; and [`MockTransportFactory`], which serves `mock://` URLs so
//!   that a worker built from configuration runs against the mock by changing only its
//!   URL;
//! - the [`conformance`] suite every transport and listener runs, end to end against
//!   the embedded orchestrator of `rxon-orchestrator`;
//! - a fault-injecting TCP proxy ([`faults`]), a SOCKS5 server ([`socks`]), throwaway certificates (`pki`), a real
//!   S3 server (`s3`), a log capture ([`Captured`]) and small handlers for tests.
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
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `pki` |  | throwaway certificates (a CA, a server and a client certificate) for TLS tests |
//! | `s3` |  | a real S3-compatible server (moto, from PyPI) on 127.0.0.1 for blob storage tests; installs moto on first use |
//! | `tor` |  | the conformance suite over real onion services of the private Tor network `cargo xtask tor-net up` starts (`RXON_TOR_NET`) |
//! | `arti` |  | the same with the embedded Tor client (`ThroughTor::arti`); implies `tor` |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod capture;
pub mod conformance;
pub mod faults;
mod handlers;
mod mock;
#[cfg(feature = "pki")]
pub mod pki;
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
pub mod socks;
#[cfg(feature = "tor")]
pub mod tor;

pub use capture::Captured;
pub use handlers::{ContextEcho, FixedTask};
pub use mock::{MockHandle, MockTransport, MockTransportFactory, Operation, SCHEMES};
