//! RXON blob storage: moving the bytes behind a task's `params_metadata` and a result's
//! `data_metadata` ([`FileMetadata`](rxon_core::FileMetadata) references) to and from
//! S3-compatible storage.
//!
//! **Status:** this release ships the URI scheme only; it provides no blob store yet.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// URI scheme of blob references (`s3://bucket/key`; a key ending in `/` is a directory).
pub const URI_SCHEME: &str = "s3";
