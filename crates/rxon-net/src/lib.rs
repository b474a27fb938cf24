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

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dial;
pub mod io;
pub mod keepalive;
mod socks;
pub mod status;
pub mod tls;
