//! RXON blob storage: moving the bytes behind a task's `params_metadata` and a result's
//! `data_metadata` ([`FileMetadata`] references: uri, size, etag) to and from
//! S3-compatible storage, a local directory or memory, through [object_store].
//!
//! - [`BlobStore`]: upload a file, a reader or a directory tree; download a file or a
//!   directory reference. Large objects stream both ways with bounded memory (multipart
//!   upload with configurable part size and concurrency; streamed download). Downloads
//!   are checked against size and etag and land under their final name only when
//!   complete. Dropping an upload aborts its multipart upload.
//! - [`parse_uri`] and [`calculate_config_hash`]: the reference's helpers, with its exact
//!   semantics; [`BlobUri`] is the strict form every transfer goes through (no `..`,
//!   no absolute keys, no escaping a prefix or a work directory).
//! - Worker helpers: [`BlobStore::fetch_params`] and [`BlobStore::store_outputs`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> rxon_core::Result<()> {
//! use rxon_blob::{BlobConfig, BlobStore};
//!
//! let work = tempfile::tempdir().unwrap();
//! std::fs::write(work.path().join("frame.png"), b"...png...").unwrap();
//!
//! let store = BlobStore::from_config(&BlobConfig::new("memory://"))?;
//! // Worker: outputs to references for the result.
//! let data_metadata = store
//!     .store_outputs([("frame", work.path().join("frame.png"))], "results/job-1/")
//!     .await?;
//! assert_eq!(data_metadata["frame"].uri, "s3://rxon-memory/results/job-1/frame");
//! # Ok(()) }
//! ```
//!
//! The S3 backend talks through hyper and rustls (ring), the same stack as the rest of
//! rxon; every connect, response and body chunk has a time limit.
//!
//! # Feature flags
//!
//! This crate has no features.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod connector;
mod store;
mod uri;
mod worker;

pub use config::{BlobConfig, MAX_PART_SIZE, MAX_UPLOAD_CONCURRENCY, MIN_PART_SIZE};
pub use rxon_core::FileMetadata;
pub use store::{BlobStore, DirEntry};
pub use uri::{
    BlobUri, MAX_KEY_LEN, URI_SCHEME, calculate_config_hash, check_config_hash, parse_uri,
};
