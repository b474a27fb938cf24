//! The object-store side of [`BlobStore`](super::BlobStore): the S3 client, object
//! paths, errors, and multipart uploads aborted when dropped.

use crate::config::BlobConfig;
use crate::connector::{HyperConnector, Limits};
use crate::uri::BlobUri;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, RetryConfig, WriteMultipart};
use rxon_core::{ErrorKind, Result, RxonError};
use std::time::Duration;

pub(super) fn s3(config: &BlobConfig, bucket: &str) -> Result<object_store::aws::AmazonS3> {
    let connector = HyperConnector::new(
        Limits {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
        },
        config.ca_file.as_deref(),
    )?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(config.region.as_deref().unwrap_or("us-east-1"))
        .with_virtual_hosted_style_request(!config.path_style())
        .with_http_connector(connector)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                base: 2.0,
            },
            max_retries: config.max_retries,
            retry_timeout: config.request_timeout * 3,
        });
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token);
    }
    builder
        .build()
        .map_err(|e| RxonError::config(format!("blob store s3://{bucket}: {e}")))
}

pub(super) fn location(uri: &BlobUri) -> Result<StorePath> {
    StorePath::parse(uri.key())
        .map_err(|e| RxonError::invalid_input(format!("invalid key in {uri}: {e}")))
}

/// S3 quotes etags (`"abc"`); references carry them bare.
pub(super) fn normalize_etag(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_owned()
}

pub(super) fn store_error(name: &str, e: object_store::Error) -> RxonError {
    use object_store::Error as E;
    let text = e.to_string();
    let (kind, message) = match &e {
        E::NotFound { .. } if text.contains("NoSuchBucket") => (
            ErrorKind::NotFound,
            format!("{name}: the bucket does not exist"),
        ),
        E::NotFound { .. } => (ErrorKind::NotFound, format!("{name}: no such object")),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            ErrorKind::Auth,
            format!("{name}: the store refused the credentials"),
        ),
        E::InvalidPath { .. } => (ErrorKind::InvalidInput, format!("{name}: {text}")),
        E::NotSupported { .. } | E::NotImplemented { .. } => (
            ErrorKind::Unsupported,
            format!("{name}: not supported by this store"),
        ),
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            (ErrorKind::Protocol, format!("{name}: {text}"))
        }
        E::Generic { .. } if text.contains("NoSuchBucket") => (
            ErrorKind::NotFound,
            format!("{name}: the bucket does not exist"),
        ),
        E::Generic { .. } => (ErrorKind::Network, format!("{name}: {text}")),
        _ => (ErrorKind::Internal, format!("{name}: {text}")),
    };
    RxonError::new(kind, message).with_source(e)
}

/// Aborts a multipart upload that is dropped before it finished.
pub(super) struct AbortOnDrop(pub(super) Option<WriteMultipart>);

impl AbortOnDrop {
    pub(super) fn writer(&mut self) -> Result<&mut WriteMultipart> {
        self.0
            .as_mut()
            .ok_or_else(|| RxonError::new(ErrorKind::Internal, "multipart upload already finished"))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if let Err(e) = writer.abort().await {
                            tracing::warn!(error = %e, "aborting a cancelled multipart upload failed");
                        }
                    });
                }
                Err(_) => tracing::warn!(
                    "multipart upload dropped outside a runtime; its parts stay in the store"
                ),
            }
        }
    }
}
