//! `connect_tcp` / `connect_stream` through [`SocksServer`]: the CONNECT carries the
//! host name (never resolved here), credentials, and every way a proxy can fail.

use rxon_core::{ErrorKind, TransportOptions};
use rxon_net::dial::{connect_stream, connect_tcp, is_onion};
use rxon_testing::socks::{Behaviour, SocksServer, SocksTarget};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An echo server on loopback: what the proxy forwards to.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn through(proxy: &str) -> TransportOptions {
    let mut o = TransportOptions::default();
    o.proxy = Some(proxy.parse().expect("a proxy URL"));
    o.connect_timeout = Duration::from_secs(5);
    o
}

async fn round_trip(s: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin)) {
    s.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"ping");
}

const ONION: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

#[tokio::test]
async fn the_proxy_resolves_the_name() {
    let to = echo().await;
    let proxy = SocksServer::builder()
        .route("orchestrator.invalid", to)
        .route(ONION, to)
        .start()
        .await
        .unwrap();
    let o = through(&proxy.url());
    // `.invalid` has no address anywhere: only the proxy can route it.
    let mut s = connect_tcp("orchestrator.invalid", 8080, &o).await.unwrap();
    round_trip(&mut s).await;
    let mut s = connect_tcp(ONION, 80, &o).await.unwrap();
    round_trip(&mut s).await;
    let mut s = connect_tcp("127.0.0.1", to.port(), &o).await.unwrap();
    round_trip(&mut s).await;
    let seen: Vec<_> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.target, r.port))
        .collect();
    assert_eq!(
        seen,
        vec![
            (SocksTarget::Name("orchestrator.invalid".into()), 8080),
            (SocksTarget::Name(ONION.into()), 80),
            (SocksTarget::Ip([127, 0, 0, 1].into()), to.port()),
        ]
    );
}

#[test]
fn onion_names_are_recognised() {
    assert!(is_onion(ONION) && is_onion("X.ONION.") && is_onion("a.b.onion"));
    assert!(!is_onion(".onion") && !is_onion("onion") && !is_onion("onion.example"));
}

/// Without the embedded Tor client, an onion with no proxy (or `proxy = "arti"`) is a
/// configuration error naming the way out. (With it, they go to arti: tested on the
/// private Tor network, never here, where arti would reach for the public one.)
#[cfg(not(feature = "tor"))]
#[tokio::test]
async fn an_onion_without_a_proxy_is_refused_before_any_lookup() {
    assert!(
        is_onion(ONION)
            && is_onion("X.ONION.")
            && !is_onion(".onion")
            && !is_onion("onion.example")
    );
    let o = TransportOptions::default();
    let err = connect_tcp(ONION, 80, &o).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("socks5h://"), "{err}");
    let mut o = TransportOptions::default();
    o.proxy = Some(rxon_core::Proxy::Arti);
    let err = connect_tcp(ONION, 80, &o).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("`tor` feature"), "{err}");
}

#[tokio::test]
async fn credentials_are_sent_and_checked() {
    let to = echo().await;
    let proxy = SocksServer::builder()
        .route("orchestrator.invalid", to)
        .auth("worker-7", "circuit pass")
        .start()
        .await
        .unwrap();
    let port = proxy.addr().port();
    let good = through(&format!(
        "socks5h://worker-7:circuit%20pass@127.0.0.1:{port}"
    ));
    let mut s = connect_tcp("orchestrator.invalid", 1, &good).await.unwrap();
    round_trip(&mut s).await;
    assert_eq!(proxy.requests()[0].username.as_deref(), Some("worker-7"));

    let wrong = through(&format!("socks5h://worker-7:nope@127.0.0.1:{port}"));
    let err = connect_tcp("orchestrator.invalid", 1, &wrong)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        !err.to_string().contains("nope"),
        "the password leaked: {err}"
    );
    assert_eq!(proxy.auth_failures(), 1);

    let none = through(&proxy.url());
    let err = connect_tcp("orchestrator.invalid", 1, &none)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(
        proxy.requests().len(),
        1,
        "no CONNECT without authentication"
    );
}

#[tokio::test]
async fn refusals_are_network_errors_naming_the_reason() {
    for (code, words) in [(5u8, "refused"), (4, "unreachable"), (1, "General")] {
        let proxy = SocksServer::builder()
            .behaviour(Behaviour::Refuse(code))
            .start()
            .await
            .unwrap();
        let err = connect_tcp("orchestrator.invalid", 80, &through(&proxy.url()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Network, "{err}");
        assert!(err.to_string().contains(words), "{code}: {err}");
        assert!(err.to_string().contains("orchestrator.invalid:80"), "{err}");
    }
    // A name the proxy cannot route: its reply 4, not a local lookup.
    let proxy = SocksServer::builder().start().await.unwrap();
    let err = connect_tcp("unknown.invalid", 80, &through(&proxy.url()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[tokio::test]
async fn a_stalling_proxy_is_bounded_by_the_connect_timeout() {
    let proxy = SocksServer::builder()
        .behaviour(Behaviour::Stall)
        .start()
        .await
        .unwrap();
    let mut o = through(&proxy.url());
    o.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = connect_tcp("orchestrator.invalid", 80, &o)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "not bounded");
    assert_eq!(proxy.accepted(), 1);
    // The TLS path is bounded the same way.
    let tls = rxon_net::tls::plain_client_config().unwrap();
    let err = connect_stream(
        "https://orchestrator.invalid",
        Some(&std::sync::Arc::new(tls)),
        &o,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn a_proxy_that_hangs_up_or_is_absent_is_a_network_error() {
    let proxy = SocksServer::builder()
        .behaviour(Behaviour::CloseAfterGreeting)
        .start()
        .await
        .unwrap();
    let err = connect_tcp("orchestrator.invalid", 80, &through(&proxy.url()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");

    drop(proxy);
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let free = gone.local_addr().unwrap().port();
    drop(gone);
    let err = connect_tcp(
        "orchestrator.invalid",
        80,
        &through(&format!("socks5h://127.0.0.1:{free}")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("connecting to the proxy"), "{err}");
}
