//! RXON gRPC transport and listener (tonic + prost).
//!
//! This crate is the home of `GrpcTransport` (`grpc://`, `grpcs://`) and `GrpcListener`, generated from `proto/rxon/v1/rxon.proto`.
//!
//! **Status:** this release ships the crate's URL schemes only; it provides no transport
//! yet. `rxon::create_transport` answers these schemes with an
//! [`ErrorKind::Unsupported`](rxon_core::ErrorKind::Unsupported) error that says so,
//! rather than a transport that pretends to work.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// URL schemes this crate serves.
pub const SCHEMES: &[&str] = &["grpc", "grpcs"];
