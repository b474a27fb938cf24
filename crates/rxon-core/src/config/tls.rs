//! TLS settings as data: [`TlsOptions`] for a worker's transport, [`ServerTlsOptions`]
//! for a listener. Each transport crate turns them into its TLS stack's configuration.

use crate::error::{Result, RxonError};
use std::path::PathBuf;

/// TLS settings of a client. Without any, `https`/`wss`/`grpcs` use the system roots.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct TlsOptions {
    /// PEM file of the CA(s) that sign the orchestrator's certificate.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mTLS.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against, when it differs from the URL host.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub server_name: Option<String>,
}

/// TLS of a listener: its certificate and, for mTLS, the CA of client certificates.
/// Each transport crate turns it into its own TLS stack's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct ServerTlsOptions {
    /// PEM certificate chain of the listener.
    pub cert_file: PathBuf,
    /// PEM private key of the listener.
    pub key_file: PathBuf,
    /// PEM CA(s) that sign client certificates; enables mTLS.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: refuse clients without a certificate (strict mTLS). Without it,
    /// a certificate is optional and, when sent, its subject CN reaches the handler.
    #[cfg_attr(feature = "serde", serde(default))]
    pub require_client_cert: bool,
}

impl ServerTlsOptions {
    /// TLS with `cert_file` and `key_file`, no client certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        ServerTlsOptions {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            require_client_cert: false,
        }
    }

    /// Verifies client certificates against `ca_file` (optional for clients unless
    /// [`require_client_cert`](Self::require_client_cert) is set).
    pub fn with_client_ca(mut self, ca_file: impl Into<PathBuf>) -> Self {
        self.client_ca_file = Some(ca_file.into());
        self
    }

    /// Refuses clients without a valid certificate.
    pub fn with_required_client_cert(mut self, required: bool) -> Self {
        self.require_client_cert = required;
        self
    }

    /// Checks that a required client certificate has a CA to be verified against.
    pub fn validate(&self) -> Result<()> {
        if self.require_client_cert && self.client_ca_file.is_none() {
            return Err(RxonError::config(
                "require_client_cert needs a client_ca_file to verify clients against",
            ));
        }
        Ok(())
    }
}
