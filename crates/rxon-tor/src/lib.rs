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
//! # Quickstart
//!
//! An orchestrator's listener on loopback, published as an onion service through a
//! tor daemon whose control port is enabled (`ControlPort 9051`):
//!
//! ```no_run
//! # async fn publish() -> rxon_core::Result<()> {
//! use rxon_tor::{OnionSpec, TorControl};
//! use std::time::Duration;
//!
//! let mut tor = TorControl::connect(&"127.0.0.1:9051".parse()?).await?;
//! tor.authenticate(None).await?; // cookie or no authentication; or Some(password)
//! // Port 80 of the onion service forwards to the listener on 127.0.0.1:8080.
//! let onion = tor.add_onion(&OnionSpec::forward(80, "127.0.0.1:8080".parse().unwrap())).await?;
//! tor.wait_published(&onion, Duration::from_secs(180)).await?;
//! println!("workers dial http://{}", onion.hostname());
//! // The service lasts as long as `tor`, the control connection.
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `arti` | | `arti`: the embedded Tor client (`arti-client`, rustls, bundled SQLite): dial onion services with no tor daemon, and serve one (`ArtiOnion`) |
//!
//! Without a feature, [`control`] speaks to a tor daemon (`ADD_ONION`, `DEL_ONION`,
//! `HS_DESC`).
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "arti")]
pub mod arti;
pub mod control;

pub use control::{ControlAddr, OnionService, OnionSpec, TorControl};
