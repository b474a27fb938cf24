//! RXON HTTP transport and listener (hyper).
//!
//! This crate is the home of `HttpTransport` (worker side, `http://` and `https://`) and `HttpListener` (orchestrator side), wire-compatible with the Python reference.
//!
//! **Status:** this release ships the crate's URL schemes only; it provides no transport
//! yet. `rxon::create_transport` answers these schemes with an
//! [`ErrorKind::Unsupported`](rxon_core::ErrorKind::Unsupported) error that says so,
//! rather than a transport that pretends to work.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// URL schemes this crate serves.
pub const SCHEMES: &[&str] = &["http", "https"];
