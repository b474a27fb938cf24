//! TLS for both sides, with rustls (ring provider, no process-wide state): the one PEM
//! loader, client configuration from [`TlsOptions`], server configuration from
//! [`ServerTlsOptions`].

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rxon_core::{Result, RxonError, ServerTlsOptions, TlsOptions};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> RxonError {
    RxonError::config(format!("TLS: {what}: {e}"))
}

/// The certificates of a PEM file (at least one), or a `Config` error naming the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&format!("cannot read {}", path.display()), e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("invalid PEM in {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(tls_error(
            &path.display().to_string(),
            "no CERTIFICATE block found",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file, or a `Config` error naming the file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_error(&format!("no usable private key in {}", path.display()), e))
}

/// A root store holding the certificates of a PEM file.
pub fn roots_from(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(&format!("bad CA certificate in {}", path.display()), e))?;
    }
    Ok(roots)
}

/// The client configuration for `tls`: the system roots unless `ca_file` is set, and a
/// client certificate when `client_cert` and `client_key` are.
pub fn client_config(tls: &TlsOptions) -> Result<ClientConfig> {
    let roots = match &tls.ca_file {
        Some(ca) => roots_from(ca)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls_error(
                    "system root certificates",
                    "none found; set tls.ca_file",
                ));
            }
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_root_certificates(roots);
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| tls_error("client certificate and key do not match", e)),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(RxonError::config(
            "tls.client_cert and tls.client_key must be given together",
        )),
    }
}

/// A client configuration that trusts nothing, for `http://` URLs (never used for a
/// handshake there, but the connector type is the same).
pub fn plain_client_config() -> Result<ClientConfig> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// The rustls server configuration for a listener's [`ServerTlsOptions`].
pub fn server_config(tls: &ServerTlsOptions) -> Result<Arc<ServerConfig>> {
    tls.validate()?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots_from(ca)?), provider());
            let verifier = if tls.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| tls_error("client certificate verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(&tls.cert_file)?, load_key(&tls.key_file)?)
        .map_err(|e| tls_error("certificate and key do not match", e))?;
    Ok(Arc::new(config))
}

/// Subject common name of the peer's leaf certificate, if it sent one.
pub fn peer_common_name(conn: &rustls::ServerConnection) -> Option<String> {
    common_name(conn.peer_certificates()?.first()?)
}

/// Subject common name of a DER certificate (the identity RXON takes from a client
/// certificate), if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The bytes of a PEM file, for TLS stacks that parse PEM themselves (tonic), with the
/// same error as [`load_certs`] when it cannot be read.
pub fn read_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(&format!("cannot read {}", path.display()), e))
}
