//! The shared conformance suite over gRPC, plain and with required client certificates.

use rxon_core::ServerTlsOptions;
use rxon_core::{Listener, Transport, TransportConfig, TransportFactory};
use rxon_grpc::{GrpcListener, GrpcListenerConfig, GrpcTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use rxon_testing::pki::Pki;
use std::sync::OnceLock;
use std::time::Duration;

fn both() -> Capabilities {
    Capabilities::none()
        .with_commands(true)
        .with_progress(true)
        .with_tcp(true)
}

struct Plain;

impl Harness for Plain {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        let mut config = GrpcListenerConfig::default();
        config.poll_wait = poll_wait;
        Box::new(GrpcListener::with_config(config))
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
        let mut config = GrpcListenerConfig::default();
        config.poll_wait = poll_wait;
        config.tls = Some(
            ServerTlsOptions::new(pki().path("server.pem"), pki().path("server.key"))
                .with_client_ca(pki().path("ca.pem"))
                .with_required_client_cert(true),
        );
        Box::new(GrpcListener::with_config(config))
    }
    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        let mut config = config.clone();
        config.options.tls.ca_file = Some(pki().path("ca.pem"));
        config.options.tls.client_cert = Some(pki().path("client.pem"));
        config.options.tls.client_key = Some(pki().path("client.key"));
        GrpcTransportFactory.create(&config)
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
