//! RXON WebSocket command channel and WebSocket transport (tokio-tungstenite).
//!
//! This crate is the home of the WebSocket command channel of the HTTP transport and a full WebSocket transport (`ws://`, `wss://`).
//!
//! **Status:** this release ships the crate's URL schemes only; it provides no transport
//! yet. `rxon::create_transport` answers these schemes with an
//! [`ErrorKind::Unsupported`](rxon_core::ErrorKind::Unsupported) error that says so,
//! rather than a transport that pretends to work.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// URL schemes this crate serves.
pub const SCHEMES: &[&str] = &["ws", "wss"];
