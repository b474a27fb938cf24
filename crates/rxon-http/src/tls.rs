//! TLS for both sides, with rustls (ring provider, no process-wide state): client
//! configuration from [`TlsOptions`], server configuration from [`ServerTlsOptions`],
//! and the
//! client stream other transports reuse.

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

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
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

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_error(&format!("no usable private key in {}", path.display()), e))
}

fn roots_from(path: &Path) -> Result<RootCertStore> {
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
///
/// Public for transports that reuse this crate's TLS setup (such as `rxon-ws`).
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
pub(crate) fn plain_client_config() -> Result<ClientConfig> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// The rustls server configuration for a listener's [`ServerTlsOptions`].
pub(crate) fn server_config(tls: &ServerTlsOptions) -> Result<Arc<ServerConfig>> {
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
pub(crate) fn peer_common_name(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// A plain TCP or a TLS client stream.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP.
    Plain(tokio::net::TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// Connects to the host and port of `base_url` (`scheme://host[:port]`), with TLS when
/// `tls` is given (verifying `server_name`, or the URL's host).
///
/// Public for transports that reuse this crate's TLS setup (such as `rxon-ws`).
pub async fn connect_stream(
    base_url: &str,
    tls: Option<&Arc<ClientConfig>>,
    server_name: Option<&str>,
    connect_timeout: std::time::Duration,
) -> Result<ClientStream> {
    let uri: http::Uri = base_url
        .parse()
        .map_err(|e| RxonError::config(format!("invalid URL {base_url:?}: {e}")))?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    let tcp = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| RxonError::timeout(format!("connecting to {host}:{port} timed out")))?
        .map_err(|e| {
            RxonError::network(format!("connecting to {host}:{port}: {e}")).with_source(e)
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(ClientStream::Plain(tcp));
    };
    let name = server_name.map_or(host, str::to_owned);
    let name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|e| RxonError::config(format!("TLS: invalid server name: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| RxonError::network(format!("TLS handshake: {e}")).with_source(e))?;
    Ok(ClientStream::Tls(Box::new(stream)))
}

impl tokio::io::AsyncRead for ClientStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for ClientStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
