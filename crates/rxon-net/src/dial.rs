//! The dialer every network transport opens its connections with: TCP (directly or
//! through the configured [`Proxy`]), then TLS for secure URLs. The one place a proxy
//! or another way of reaching an orchestrator plugs in.

use rustls::ClientConfig;
use rxon_core::{Proxy, Result, RxonError, TransportOptions};
use std::sync::Arc;

/// A connection to the orchestrator before TLS: a TCP stream (direct, or through a
/// SOCKS5 proxy, which hands the same socket over), or a stream of the embedded Tor
/// client (feature `tor`).
pub enum RawStream {
    /// TCP.
    Tcp(tokio::net::TcpStream),
    /// A stream of the embedded Tor client.
    #[cfg(feature = "tor")]
    Tor(std::pin::Pin<Box<arti_client::DataStream>>),
}

impl std::fmt::Debug for RawStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawStream::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            #[cfg(feature = "tor")]
            RawStream::Tor(_) => f.write_str("Tor(..)"),
        }
    }
}

/// A plain or a TLS client stream.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain.
    Plain(RawStream),
    /// TLS over the raw stream.
    Tls(Box<tokio_rustls::client::TlsStream<RawStream>>),
}

/// The host and port of `base_url` (`scheme://host[:port]`), the port defaulting to
/// 443 when `secure`, else 80.
pub fn host_port(base_url: &str, secure: bool) -> Result<(String, u16)> {
    let uri: http::Uri = base_url
        .parse()
        .map_err(|e| RxonError::config(format!("invalid URL {base_url:?}: {e}")))?;
    host_port_of(&uri, secure)
}

fn host_port_of(uri: &http::Uri, secure: bool) -> Result<(String, u16)> {
    let host = uri
        .host()
        .ok_or_else(|| RxonError::config(format!("URL {uri} has no host")))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    Ok((host, port))
}

/// Whether `host` is a Tor onion service name (`….onion`), which only Tor can reach
/// and which must never be looked up by the local resolver.
pub fn is_onion(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.len() > ".onion".len()
        && host
            .get(host.len() - ".onion".len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".onion"))
}

/// A stream to `host:port`: directly, through `options.proxy` (a SOCKS5 CONNECT
/// carrying the host name, never resolved here), or through the embedded Tor client
/// (`proxy = "arti"`, or a `.onion` host with no proxy, with the feature `tor`). The
/// connection (TCP connect and proxy handshake) is bounded by
/// `options.connect_timeout`; the embedded client's first bootstrap by its own bound.
pub async fn connect_tcp(host: &str, port: u16, options: &TransportOptions) -> Result<RawStream> {
    let limit = options.connect_timeout;
    let tcp = match &options.proxy {
        #[cfg(feature = "tor")]
        None if is_onion(host) => return arti(host, port, limit).await,
        #[cfg(feature = "tor")]
        Some(Proxy::Arti) => return arti(host, port, limit).await,
        None if is_onion(host) => {
            return Err(RxonError::config(format!(
                "{host} is a Tor onion service: set proxy = \"socks5h://127.0.0.1:9050\" \
                 (a tor daemon's SOCKS port) or proxy = \"arti\" (the embedded Tor client, \
                 feature `tor`)"
            )));
        }
        None => {
            let connect = tokio::net::TcpStream::connect((host, port));
            tokio::time::timeout(limit, connect)
                .await
                .map_err(|_| {
                    RxonError::timeout(format!(
                        "connecting to {host}:{port} timed out after {limit:?}"
                    ))
                })?
                .map_err(|e| {
                    RxonError::network(format!("connecting to {host}:{port}: {e}")).with_source(e)
                })?
        }
        Some(proxy @ Proxy::Socks5h { .. }) => tokio::time::timeout(
            limit,
            crate::socks::connect(proxy, host, port),
        )
        .await
        .map_err(|_| {
            RxonError::timeout(format!(
                "connecting to {host}:{port} through the proxy {proxy} timed out after {limit:?}"
            ))
        })??,
        #[cfg(not(feature = "tor"))]
        Some(Proxy::Arti) => {
            return Err(RxonError::config(
                "proxy = \"arti\" needs the embedded Tor client, which this build does not \
                 have: enable the `tor` feature, or use a tor daemon with \
                 proxy = \"socks5h://127.0.0.1:9050\"",
            ));
        }
        Some(other) => {
            return Err(RxonError::unsupported(format!(
                "proxy {other} is not supported by this dialer"
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    Ok(RawStream::Tcp(tcp))
}

#[cfg(feature = "tor")]
async fn arti(host: &str, port: u16, limit: std::time::Duration) -> Result<RawStream> {
    rxon_tor::arti::client().await?;
    let stream = tokio::time::timeout(limit, rxon_tor::arti::connect(host, port))
        .await
        .map_err(|_| {
            RxonError::timeout(format!(
                "connecting to {host}:{port} over Tor (arti) timed out after {limit:?}"
            ))
        })??;
    Ok(RawStream::Tor(Box::pin(stream)))
}

/// Connects to the host and port of `base_url` (`scheme://host[:port]`) with
/// [`connect_tcp`], then TLS when `tls` is given (verifying `options.tls.server_name`,
/// or the URL's host): through a proxy, TLS runs end to end with the orchestrator.
pub async fn connect_stream(
    base_url: &str,
    tls: Option<&Arc<ClientConfig>>,
    options: &TransportOptions,
) -> Result<ClientStream> {
    let (host, port) = host_port(base_url, tls.is_some())?;
    let tcp = connect_tcp(&host, port, options).await?;
    let Some(tls) = tls else {
        return Ok(ClientStream::Plain(tcp));
    };
    let name = options.tls.server_name.clone().unwrap_or(host);
    let name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|e| RxonError::config(format!("TLS: invalid server name: {e}")))?;
    let stream = tokio::time::timeout(
        options.connect_timeout,
        tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .map_err(|_| RxonError::timeout("TLS handshake timed out"))?
    .map_err(|e| RxonError::network(format!("TLS handshake: {e}")).with_source(e))?;
    Ok(ClientStream::Tls(Box::new(stream)))
}

/// The dialer as a `tower` service from URI to TCP stream: what hyper's client (under
/// hyper-rustls) and tonic's channel (which adds TLS itself) connect with, so that a
/// proxy applies to them as to every other connection.
#[derive(Debug, Clone)]
pub struct Connector {
    options: Arc<TransportOptions>,
}

impl Connector {
    /// A connector dialing with `options` (`proxy`, `connect_timeout`).
    pub fn new(options: &TransportOptions) -> Self {
        Connector {
            options: Arc::new(options.clone()),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for RawStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<RawStream>;
    type Error = RxonError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let options = self.options.clone();
        Box::pin(async move {
            let secure = matches!(uri.scheme_str(), Some("https" | "wss" | "grpcs"));
            let (host, port) = host_port_of(&uri, secure)?;
            let tcp = connect_tcp(&host, port, &options).await?;
            Ok(hyper_util::rt::TokioIo::new(tcp))
        })
    }
}

macro_rules! each_raw {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            RawStream::Tcp($s) => {
                let $s = std::pin::Pin::new($s);
                $e
            }
            #[cfg(feature = "tor")]
            RawStream::Tor($s) => {
                let $s = $s.as_mut();
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for RawStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_raw!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for RawStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_raw!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_raw!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_raw!(self, s => s.poll_shutdown(cx))
    }
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
