//! HTTPS and mTLS on 127.0.0.1 with throwaway certificates made by rcgen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::*;
use rxon_http::{HttpListener, HttpListenerConfig, HttpTransport};
use rxon_testing::ContextEcho;
use rxon_testing::pki::Pki;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn server_tls(pki: &Pki) -> ServerTlsOptions {
    ServerTlsOptions::new(pki.path("server.pem"), pki.path("server.key"))
}

async fn listener(tls: ServerTlsOptions) -> HttpListener {
    let mut config = HttpListenerConfig::default();
    config.tls = Some(tls);
    config.header_read_timeout = Duration::from_secs(5);
    let l = HttpListener::with_config(config);
    l.start(Arc::new(ContextEcho)).await.unwrap();
    l
}

fn client(url: &str, ca: &Path, cert: Option<(&Path, &Path)>) -> HttpTransport {
    let mut config = TransportConfig::new(url, "w-1", "t");
    config.options.tls.ca_file = Some(ca.to_owned());
    if let Some((c, k)) = cert {
        config.options.tls.client_cert = Some(c.to_owned());
        config.options.tls.client_key = Some(k.to_owned());
    }
    config.options.request_timeout = Duration::from_secs(10);
    HttpTransport::from_config(&config).unwrap()
}

async fn register(t: &HttpTransport) -> Result<RegisterReply> {
    t.connect().await?;
    t.register(&WorkerRegistration {
        worker_id: "w-1".into(),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn https_with_optional_client_certificates_passes_the_cn() {
    let pki = Pki::new(&["localhost", "127.0.0.1"], "worker-7").unwrap();
    let l = listener(server_tls(&pki).with_client_ca(pki.path("ca.pem"))).await;
    let url = l.endpoint().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let anonymous = register(&client(&url, &pki.path("ca.pem"), None))
        .await
        .unwrap();
    // 1.0b17 replies leave nulls out.
    assert_eq!(anonymous.extra.get("cn"), None);
    assert_eq!(anonymous.extra["transport"].as_str(), Some("http"));

    let cert = (pki.path("client.pem"), pki.path("client.key"));
    let named = client(&url, &pki.path("ca.pem"), Some((&cert.0, &cert.1)));
    let reply = register(&named).await.unwrap();
    assert_eq!(reply.extra["cn"].as_str(), Some("worker-7"));
    // The pooled TLS connection keeps working.
    assert_eq!(
        named.poll_task(Duration::from_millis(50)).await.unwrap(),
        None
    );
    l.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn strict_mtls_refuses_clients_without_a_certificate() {
    let pki = Pki::new(&["127.0.0.1"], "worker-9").unwrap();
    let tls = server_tls(&pki)
        .with_client_ca(pki.path("ca.pem"))
        .with_required_client_cert(true);
    let l = listener(tls).await;
    let url = l.endpoint().unwrap();

    let err = register(&client(&url, &pki.path("ca.pem"), None))
        .await
        .unwrap_err();
    assert!(err.is_network(), "{err}");

    // A certificate from another CA is refused too.
    let other = Pki::new(&["127.0.0.1"], "intruder").unwrap();
    let (c, k) = (other.path("client.pem"), other.path("client.key"));
    let err = register(&client(&url, &pki.path("ca.pem"), Some((&c, &k))))
        .await
        .unwrap_err();
    assert!(err.is_network(), "{err}");

    // So is an expired certificate from the right CA.
    let (c, k) = (
        pki.path("client-expired.pem"),
        pki.path("client-expired.key"),
    );
    let err = register(&client(&url, &pki.path("ca.pem"), Some((&c, &k))))
        .await
        .unwrap_err();
    assert!(err.is_network(), "{err}");

    // The listener keeps serving clients that do have one.
    let (c, k) = (pki.path("client.pem"), pki.path("client.key"));
    let reply = register(&client(&url, &pki.path("ca.pem"), Some((&c, &k))))
        .await
        .unwrap();
    assert_eq!(reply.extra["cn"].as_str(), Some("worker-9"));
    l.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn servers_are_verified_by_ca_and_name() {
    let pki = Pki::new(&["localhost"], "w").unwrap();
    let l = listener(server_tls(&pki)).await;
    let url = l.endpoint().unwrap(); // https://127.0.0.1:…, not in the certificate

    let err = register(&client(&url, &pki.path("ca.pem"), None))
        .await
        .unwrap_err();
    assert!(err.is_network(), "{err}");
    assert!(
        err.message().to_lowercase().contains("certificate"),
        "{err}"
    );

    let mut config = TransportConfig::new(&url, "w-1", "t");
    config.options.tls.ca_file = Some(pki.path("ca.pem"));
    config.options.tls.server_name = Some("localhost".into());
    let named = HttpTransport::from_config(&config).unwrap();
    register(&named).await.unwrap();

    let stranger = Pki::new(&["localhost"], "w").unwrap();
    config.options.tls.ca_file = Some(stranger.path("ca.pem"));
    let wrong_ca = HttpTransport::from_config(&config).unwrap();
    let err = register(&wrong_ca).await.unwrap_err();
    // Same issuer name, different key: the signature check refuses it.
    assert!(err.message().contains("invalid peer certificate"), "{err}");

    // Plain HTTP to a TLS port fails cleanly, it does not hang.
    let plain = HttpTransport::new(&url.replace("https", "http"), "w-1", "t").unwrap();
    plain.connect().await.unwrap();
    assert!(plain.poll_task(Duration::from_millis(50)).await.is_err());
    l.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn bad_tls_configuration_is_a_config_error() {
    let pki = Pki::new(&["localhost"], "w").unwrap();
    let missing = TransportConfig::new("https://localhost:1", "w-1", "t").with_options({
        let mut o = TransportOptions::default();
        o.tls.ca_file = Some(pki.path("nope.pem"));
        o
    });
    let err = HttpTransport::from_config(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("nope.pem"), "{err}");

    let mut cfg = TransportConfig::new("https://localhost:1", "w-1", "t");
    cfg.options.tls.ca_file = Some(pki.path("ca.pem"));
    cfg.options.tls.client_cert = Some(pki.path("client.pem"));
    cfg.options.tls.client_key = Some(pki.path("server.key"));
    let err = HttpTransport::from_config(&cfg).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");

    let mismatched = ServerTlsOptions::new(pki.path("server.pem"), pki.path("client.key"));
    let mut config = HttpListenerConfig::default();
    config.tls = Some(mismatched);
    let err = HttpListener::with_config(config)
        .start(Arc::new(ContextEcho))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");

    let mut config = HttpListenerConfig::default();
    config.tls = Some(server_tls(&pki).with_required_client_cert(true));
    let err = HttpListener::with_config(config)
        .start(Arc::new(ContextEcho))
        .await
        .unwrap_err();
    assert!(err.message().contains("client_ca_file"), "{err}");
}

#[tokio::test]
async fn optional_client_certificates_are_still_verified() {
    // Client certificates optional: a client may come without one, but one it presents
    // must verify; a bad one is refused in the handshake, never passed on as a CN.
    let pki = Pki::new(&["127.0.0.1"], "worker-3").unwrap();
    let l = listener(server_tls(&pki).with_client_ca(pki.path("ca.pem"))).await;
    let url = l.endpoint().unwrap();
    let other = Pki::new(&["127.0.0.1"], "worker-3").unwrap();
    for (c, k) in [
        (other.path("client.pem"), other.path("client.key")),
        (
            pki.path("client-expired.pem"),
            pki.path("client-expired.key"),
        ),
    ] {
        let err = register(&client(&url, &pki.path("ca.pem"), Some((&c, &k))))
            .await
            .unwrap_err();
        assert!(err.is_network(), "{}: {err}", c.display());
    }
    let anonymous = register(&client(&url, &pki.path("ca.pem"), None))
        .await
        .unwrap();
    // 1.0b17 replies leave nulls out.
    assert_eq!(anonymous.extra.get("cn"), None);
    l.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn an_orchestrator_binding_certificates_refuses_another_workers_id() {
    let pki = Pki::new(&["127.0.0.1"], "w-1").unwrap();
    let tls = server_tls(&pki)
        .with_client_ca(pki.path("ca.pem"))
        .with_required_client_cert(true);
    let orchestrator = rxon_orchestrator::Orchestrator::builder()
        .bind_cert_identity(true)
        .build();
    let mut config = HttpListenerConfig::default();
    config.tls = Some(tls);
    let l = HttpListener::with_config(config);
    l.start(Arc::new(orchestrator.clone())).await.unwrap();
    let url = l.endpoint().unwrap();
    let cert = (pki.path("client.pem"), pki.path("client.key"));
    let as_w1 = client(&url, &pki.path("ca.pem"), Some((&cert.0, &cert.1)));
    register(&as_w1).await.unwrap();

    let mut config = TransportConfig::new(&url, "w-2", "t");
    config.options.tls.ca_file = Some(pki.path("ca.pem"));
    config.options.tls.client_cert = Some(cert.0.clone());
    config.options.tls.client_key = Some(cert.1.clone());
    let posing = HttpTransport::from_config(&config).unwrap();
    posing.connect().await.unwrap();
    let err = posing
        .register(&WorkerRegistration {
            worker_id: "w-2".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(err.details()["status"].as_u64(), Some(403), "{err}");
    let names: Vec<String> = orchestrator
        .workers()
        .await
        .into_iter()
        .map(|w| w.worker_id)
        .collect();
    assert_eq!(names, ["w-1"]);
    l.stop(Duration::from_secs(5)).await.unwrap();
}
