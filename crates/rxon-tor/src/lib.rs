//! Tor for RXON.
//!
//! A worker reaches an orchestrator's onion service through any transport by dialing
//! through Tor's SOCKS port: `proxy = "socks5h://127.0.0.1:9050"` in its
//! [`TransportConfig`](rxon_core::TransportConfig) (the dialer of `rxon-net` does it,
//! for HTTP, WebSocket and gRPC alike). This crate is the orchestrator's side:
//! [`control`] publishes a loopback listener as an onion service through the tor
//! daemon's control port, so the orchestrator needs neither an open port nor a public
//! address.
//!
//! | feature | what it adds |
//! | --- | --- |
//! | (none) | [`control`]: `ADD_ONION` / `DEL_ONION` / `HS_DESC` through a tor daemon |
//! | `arti` | `arti`: the embedded Tor client (`arti-client`): dial onions with no daemon |
//!
//! MSRV: the workspace's `rust-version`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "arti")]
pub mod arti;
pub mod control;

pub use control::{ControlAddr, OnionService, OnionSpec, TorControl};
