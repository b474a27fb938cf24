//! SOCKS5 (`socks5h://`) through `tokio-socks`: the CONNECT carries the target's host
//! name (address type 3) unless it is an IP literal, so the proxy resolves it and no
//! name reaches the local resolver. The caller bounds the whole exchange in time.

use rxon_core::{Proxy, Result, RxonError};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

/// A TCP stream to `host:port` through the SOCKS5 proxy `proxy`, after the proxy
/// answered the CONNECT with success.
pub(crate) async fn connect(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream> {
    let Proxy::Socks5h {
        host: proxy_host,
        port: proxy_port,
        auth,
    } = proxy
    else {
        return Err(RxonError::config(format!("{proxy} is not a SOCKS5 proxy")));
    };
    if host.len() > 255 {
        return Err(RxonError::config(format!(
            "host name of {} bytes: SOCKS5 carries at most 255",
            host.len()
        )));
    }
    let socket = TcpStream::connect((proxy_host.as_str(), *proxy_port))
        .await
        .map_err(|e| {
            RxonError::network(format!("connecting to the proxy {proxy}: {e}")).with_source(e)
        })?;
    let _ = socket.set_nodelay(true);
    let target = (host, port);
    let stream = match auth {
        None => Socks5Stream::connect_with_socket(socket, target).await,
        Some(a) => {
            Socks5Stream::connect_with_password_and_socket(socket, target, &a.username, &a.password)
                .await
        }
    }
    .map_err(|e| refused(proxy, host, port, e))?;
    Ok(stream.into_inner())
}

/// The proxy's refusal as an RXON error: wrong credentials or methods are
/// configuration (retrying cannot help), the rest network failures.
fn refused(proxy: &Proxy, host: &str, port: u16, e: tokio_socks::Error) -> RxonError {
    use tokio_socks::Error as E;
    let message = match &e {
        E::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the proxy closed the connection during the SOCKS5 handshake".to_owned()
        }
        E::HostUnreachable => {
            "host unreachable (for a .onion: no descriptor found, or the service is down)"
                .to_owned()
        }
        // tokio-socks reports reply codes it does not know (Tor's extended 0xF0-0xF7
        // among them) under this name.
        E::UnknownAuthMethod => {
            "the proxy answered with an unknown reply code or authentication method".to_owned()
        }
        other => other.to_string(),
    };
    let text = format!("connecting to {host}:{port} through the proxy {proxy}: {message}");
    match e {
        E::NoAcceptableAuthMethods | E::PasswordAuthFailure(_) | E::InvalidAuthValues(_) => {
            RxonError::config(text)
        }
        E::InvalidTargetAddress(_) => RxonError::config(text),
        e => RxonError::network(text).with_source(e),
    }
}
