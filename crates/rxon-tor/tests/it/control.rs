//! The control-protocol client against a scripted control port on loopback: each test
//! gives the lines tor would answer and checks what the client sent and concluded.

use rxon_core::ErrorKind;
use rxon_tor::control::{ControlAddr, OnionSpec, TorControl};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A control port that answers each command it reads with the next reply of
/// `script` (`None`: hang up); returns the commands it received.
async fn scripted(
    script: Vec<Option<&'static str>>,
) -> (ControlAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = ControlAddr::Tcp(listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut seen = Vec::new();
        for reply in script {
            let Ok(Some(line)) = lines.next_line().await else {
                break;
            };
            seen.push(line);
            match reply {
                Some(text) => w.write_all(text.as_bytes()).await.expect("write"),
                None => break,
            }
        }
        seen
    });
    (addr, task)
}

const PROTOCOLINFO_NULL: &str =
    "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n";
const ID: &str = "5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd";

#[tokio::test]
async fn publishes_and_waits_for_every_upload() {
    // The ADD_ONION reply with an upload event interleaved before it (subscribed
    // first, so it is not lost); then a second upload; one succeeds, one fails; an
    // event about another service is skipped.
    let events = concat!(
        "650 HS_DESC UPLOAD 5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd UNKNOWN $A\r\n",
        "250-ServiceID=5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd\r\n250 OK\r\n",
        "650 HS_DESC UPLOADED otherotherotherotherotherotherotherotherotherotherothe UNKNOWN $B\r\n",
        "650 HS_DESC UPLOAD 5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd UNKNOWN $C\r\n",
        "650 HS_DESC UPLOADED 5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd UNKNOWN $A\r\n",
        "650 HS_DESC FAILED 5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd UNKNOWN $C REASON=X\r\n",
    );
    let (addr, server) = scripted(vec![
        Some(PROTOCOLINFO_NULL),
        Some("250 OK\r\n"),
        Some("250 OK\r\n"),
        Some(events),
        Some("250 OK\r\n"),
    ])
    .await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    tor.authenticate(None).await.expect("authenticate");
    let mut spec = OnionSpec::forward(80, "127.0.0.1:8080".parse().expect("address"));
    spec.ports
        .push((443, "127.0.0.1:8443".parse().expect("address")));
    let onion = tor.add_onion(&spec).await.expect("add_onion");
    assert_eq!(onion.hostname(), format!("{ID}.onion"));
    assert_eq!(onion.private_key, None);
    tor.wait_published(&onion, Duration::from_secs(5))
        .await
        .expect("published");
    let seen = server.await.expect("server");
    assert_eq!(
        seen,
        vec![
            "PROTOCOLINFO 1",
            "AUTHENTICATE",
            "SETEVENTS HS_DESC",
            "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:8080 Port=443,127.0.0.1:8443",
            "SETEVENTS",
        ]
    );
}

#[tokio::test]
async fn authenticates_with_the_cookie_file() {
    let dir = std::env::temp_dir().join(format!("rxon-tor-cookie-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cookie = dir.join("control_auth_cookie");
    std::fs::write(&cookie, [0xABu8; 32]).expect("cookie");
    let info = format!(
        "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"{}\"\r\n250 OK\r\n",
        cookie.display()
    );
    let info: &'static str = Box::leak(info.into_boxed_str());
    let (addr, server) = scripted(vec![Some(info), Some("250 OK\r\n")]).await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    tor.authenticate(None).await.expect("authenticate");
    let seen = server.await.expect("server");
    assert_eq!(seen[1], format!("AUTHENTICATE {}", "ab".repeat(32)));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn refusals_and_broken_peers_are_typed_errors() {
    // A wrong password: tor's 515 becomes an authentication error.
    let info = "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250 OK\r\n";
    let (addr, _server) = scripted(vec![
        Some(info),
        Some("515 Authentication failed: Password did not match\r\n"),
    ])
    .await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    let err = tor.authenticate(Some("wrong \"pw\"")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the password leaked: {err}"
    );

    // Only a password is offered and none given.
    let (addr, _server) = scripted(vec![Some(info)]).await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    let err = tor.authenticate(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");

    // ADD_ONION refused, then an answer without a service id.
    let (addr, _server) = scripted(vec![
        Some(PROTOCOLINFO_NULL),
        Some("250 OK\r\n"),
        Some("250 OK\r\n"),
        Some("512 Invalid VIRTPORT/TARGET\r\n"),
        Some("250 OK\r\n"),
    ])
    .await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    tor.authenticate(None).await.expect("authenticate");
    let spec = OnionSpec::forward(80, "127.0.0.1:1".parse().expect("address"));
    let err = tor.add_onion(&spec).await.unwrap_err();
    assert!(err.to_string().contains("512"), "{err}");
    let err = tor.add_onion(&spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");

    // Hung up mid-conversation; a line with no status.
    let (addr, _server) = scripted(vec![None]).await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    let err = tor.authenticate(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    let (addr, _server) = scripted(vec![Some("hello\r\n")]).await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    let err = tor.authenticate(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn an_endless_line_is_refused_not_buffered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = ControlAddr::Tcp(listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let chunk = vec![b'2'; 64 * 1024];
        for _ in 0..4 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    let err = tor.authenticate(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("64 KiB"), "{err}");
}

#[tokio::test]
async fn publishing_is_bounded_in_time() {
    let add =
        "250-ServiceID=5ynaa4b4svsrrhps7dwdvyvayaabz2exfirvnzwkl2ee3uqtrnlrqoqd\r\n250 OK\r\n";
    // No upload event ever comes.
    let (addr, _server) = scripted(vec![
        Some(PROTOCOLINFO_NULL),
        Some("250 OK\r\n"),
        Some("250 OK\r\n"),
        Some(add),
        Some("250 OK\r\n"),
    ])
    .await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    tor.authenticate(None).await.expect("authenticate");
    let spec = OnionSpec::forward(80, "127.0.0.1:1".parse().expect("address"));
    let onion = tor.add_onion(&spec).await.expect("add_onion");
    let err = tor
        .wait_published(&onion, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // Whatever tor says next cannot be matched to a command: the connection refuses.
    let err = tor.del_onion(&onion).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}

#[tokio::test]
async fn a_line_cut_inside_a_character_is_an_error_not_a_panic() {
    // "25" then a 3-byte character: byte 3 falls inside it.
    let (addr, _server) = scripted(vec![Some("25\u{20ac}x\r\n")]).await;
    let mut tor = TorControl::connect(&addr).await.expect("connect");
    let err = tor.authenticate(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}
