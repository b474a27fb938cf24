//! Against the service tor of the private network (`cargo xtask tor-test`): a loopback
//! listener published with ADD_ONION is reached through the client tor's SOCKS port by
//! rxon-net's dialer, and is gone after DEL_ONION.

use rxon_core::{Proxy, TransportOptions};
use rxon_tor::control::{ControlAddr, OnionSpec, TorControl};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn net() -> (String, String) {
    let path = std::env::var("RXON_TOR_NET")
        .expect("RXON_TOR_NET is not set: run with `cargo xtask tor-test`");
    let text = std::fs::read_to_string(&path).expect("the network description");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{path}: no {k}="))
            .to_owned()
    };
    (get("SOCKS"), get("CONTROL"))
}

#[tokio::test]
#[ignore = "needs a private Tor network (RXON_TOR_NET): cargo xtask tor-test"]
async fn tor_publishes_reaches_and_removes_an_onion() {
    let (socks, control) = net();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut tor = TorControl::connect(&ControlAddr::Unix(control.into()))
        .await
        .unwrap();
    tor.authenticate(None).await.unwrap();
    let mut spec = OnionSpec::forward(80, target);
    spec.keep_key = true;
    let onion = tor.add_onion(&spec).await.unwrap();
    assert!(
        onion
            .private_key
            .as_deref()
            .unwrap()
            .starts_with("ED25519-V3:")
    );
    tor.wait_published(&onion, Duration::from_secs(120))
        .await
        .unwrap();

    let mut options = TransportOptions::default();
    options.proxy = Some(Proxy::socks5h(
        socks.split(':').next().unwrap(),
        socks.split(':').nth(1).unwrap().parse().unwrap(),
    ));
    options.connect_timeout = Duration::from_secs(60);
    // A client that asked an HSDir just before the descriptor reached it caches the
    // miss and asks again after 5 s on a testing network (15 min on the real one):
    // up to 3 dials, 5 s apart.
    let mut attempt = 0;
    let mut s = loop {
        attempt += 1;
        match rxon_net::dial::connect_tcp(&onion.hostname(), 80, &options).await {
            Ok(s) => break s,
            Err(e) if attempt < 3 && e.to_string().contains("unreachable") => {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => panic!("dial {attempt}: {e}"),
        }
    };
    s.write_all(b"over tor").await.unwrap();
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"over tor");
    drop(s);

    tor.del_onion(&onion).await.unwrap();
    // The service is gone: the service tor refuses the rendezvous, or the stream ends.
    let after = rxon_net::dial::connect_tcp(&onion.hostname(), 80, &options).await;
    if let Ok(mut s) = after {
        let _ = s.write_all(b"x").await;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "the removed service still answered: {n:?}"
        );
    }
}
