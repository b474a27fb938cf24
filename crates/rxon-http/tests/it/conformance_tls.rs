//! The shared conformance suite over HTTPS with client certificates (mTLS required).

use rxon_core::ServerTlsOptions;
use rxon_core::{Listener, ListenerOptions, Transport, TransportConfig, TransportFactory};
use rxon_http::{HttpListener, HttpTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use rxon_testing::pki::Pki;
use std::sync::OnceLock;
use std::time::Duration;

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new(&["127.0.0.1"], "conformance-worker").expect("certificates"))
}

struct Https;

impl Harness for Https {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(HttpListener::with_options(
            ListenerOptions::default()
                .with_poll_wait(poll_wait)
                .with_tls(
                    ServerTlsOptions::new(pki().path("server.pem"), pki().path("server.key"))
                        .with_client_ca(pki().path("ca.pem"))
                        .with_required_client_cert(true),
                ),
        ))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        let mut config = config.clone();
        config.options.tls.ca_file = Some(pki().path("ca.pem"));
        config.options.tls.client_cert = Some(pki().path("client.pem"));
        config.options.tls.client_key = Some(pki().path("client.key"));
        HttpTransportFactory.create(&config)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_commands(true)
            .with_progress(true)
            .with_tcp(true)
    }
}

rxon_testing::conformance_tests!(Https);
