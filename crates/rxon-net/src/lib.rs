//! The network plumbing the tokio-based RXON transports share, so that each transport
//! crate writes only its wire: how bytes move, not how connections are made.
//!
//! - [`dial`]: the one dialer (TCP directly or through a `socks5h://` proxy, then TLS
//!   for secure URLs), also as a `tower` connector for hyper and tonic;
//! - [`tls`]: the one PEM loader and the rustls client and server configurations for
//!   [`TlsOptions`](rxon_core::TlsOptions) and
//!   [`ServerTlsOptions`](rxon_core::ServerTlsOptions);
//! - [`keepalive`]: the ping clock of a long-lived connection;
//! - [`io`]: [`Tap`](io::Tap), the one I/O wrapper (activity for keepalive checks,
//!   sniffing an upgrade's answer);
//! - [`status`]: HTTP statuses ↔ RXON errors and the reference's JSON error body.
//!
//! The worker-side rules (lifecycle, token refresh, retries) are not here: they are
//! protocol, in [`rxon_core::policy`].
//!
//! # Quickstart
//!
//! ```
//! use rxon_net::dial::{host_port, is_onion};
//!
//! // The host and port a transport dials for a URL (the scheme's port by default).
//! assert_eq!(host_port("https://orchestrator.example/api", true)?, ("orchestrator.example".into(), 443));
//! assert_eq!(host_port("http://127.0.0.1:8080", false)?, ("127.0.0.1".into(), 8080));
//! // Onion hosts are never resolved locally: they go through Tor (a proxy or arti).
//! assert!(is_onion("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"));
//! // The reference's statuses for handler errors, and its JSON error body.
//! assert_eq!(rxon_net::status::status_for(rxon_core::HandlerErrorKind::Unauthorized), 401);
//! # Ok::<(), rxon_core::RxonError>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tor` |  | the embedded Tor client (arti): `proxy = "arti"`, and `.onion` hosts with no proxy configured, are dialed through it |
//! | `metrics` | | [`metrics`]: the listeners' connection gauge and refusal counter, through the `metrics` facade |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dial;
pub mod io;
pub mod keepalive;
pub mod metrics;
mod socks;
pub mod status;
pub mod tls;
