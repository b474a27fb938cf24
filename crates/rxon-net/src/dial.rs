//! The dialer every network transport opens its connections with: TCP, then TLS for
//! secure URLs. (The one place a proxy or another way of reaching an orchestrator
//! plugs in.)

use rustls::ClientConfig;
use rxon_core::{Result, RxonError};
use std::sync::Arc;

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
