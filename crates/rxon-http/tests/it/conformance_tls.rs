//! The shared conformance suite over HTTPS with client certificates (mTLS required).

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
                .with_tls(pki().server_mtls()),
        ))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        HttpTransportFactory.create(&pki().client_mtls(config))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

rxon_testing::conformance_tests!(Https);

/// mTLS end to end through a SOCKS5 proxy: the proxy carries the bytes, the worker
/// verifies the orchestrator's certificate and presents its own.
mod through_socks {
    rxon_testing::conformance_tests!(rxon_testing::socks::ThroughSocks::new(super::Https));
}

/// mTLS end to end over a real onion service (`cargo xtask tor-test`).
mod tls_tor {
    rxon_testing::conformance_tests!(rxon_testing::tor::ThroughTor::new(super::Https), needs: tor);
}
