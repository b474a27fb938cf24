//! The shared conformance suite over gRPC, plain and with required client certificates.

use rxon_core::{Listener, ListenerOptions, Transport, TransportConfig, TransportFactory};
use rxon_grpc::{GrpcListener, GrpcTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use rxon_testing::pki::Pki;
use std::sync::OnceLock;
use std::time::Duration;

fn both() -> Capabilities {
    Capabilities::all()
}

struct Plain;

impl Harness for Plain {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(GrpcListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }
    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        GrpcTransportFactory.create(config)
    }
    fn capabilities(&self) -> Capabilities {
        both()
    }
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new(&["127.0.0.1", "localhost"], "grpc-worker").expect("certificates"))
}

struct Mtls;

impl Harness for Mtls {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(GrpcListener::with_options(
            ListenerOptions::default()
                .with_poll_wait(poll_wait)
                .with_tls(pki().server_mtls()),
        ))
    }
    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        GrpcTransportFactory.create(&pki().client_mtls(config))
    }
    fn capabilities(&self) -> Capabilities {
        both()
    }
}

mod plain {
    rxon_testing::conformance_tests!(super::Plain);
}

mod mtls {
    rxon_testing::conformance_tests!(super::Mtls);
}

/// Every common knob of `ListenerOptions` reaches the listener's own configuration.
#[test]
fn listener_options_reach_the_config() {
    let c =
        rxon_grpc::GrpcListenerConfig::from(rxon_testing::conformance::sample_listener_options());
    assert_eq!(c.bind.port(), 7);
    assert_eq!(c.poll_wait, Duration::from_secs(3));
    assert_eq!(c.max_message_bytes, 1234);
    assert_eq!(c.keepalive, Duration::from_secs(4));
    assert_eq!(c.max_connections, 5);
    assert_eq!(c.handshake_timeout, Duration::from_secs(6));
    assert!(c.tls.is_some());
}

/// Both again with the worker behind a SOCKS5 proxy (tonic through the one dialer).
mod plain_through_socks {
    rxon_testing::conformance_tests!(rxon_testing::socks::ThroughSocks::new(super::Plain));
}

mod mtls_through_socks {
    rxon_testing::conformance_tests!(rxon_testing::socks::ThroughSocks::new(super::Mtls));
}

/// Both over a real onion service of the private Tor network (`cargo xtask tor-test`).
mod plain_tor {
    rxon_testing::conformance_tests!(rxon_testing::tor::ThroughTor::new(super::Plain), needs: tor);
}

mod mtls_tor {
    rxon_testing::conformance_tests!(rxon_testing::tor::ThroughTor::new(super::Mtls), needs: tor);
}
