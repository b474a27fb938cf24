//! The conformance suite with workers dialing through the embedded Tor client (arti,
//! feature `tor`), pointed at the private Tor network, to real onion services
//! published by the network's service tor (`cargo xtask tor-test`).
#![cfg(all(
    feature = "tor",
    feature = "testing",
    feature = "http",
    feature = "grpc"
))]

use rxon::testing::conformance::{Capabilities, Harness};
use rxon::{Listener, ListenerOptions, Transport, TransportConfig, TransportFactory};
use std::time::Duration;

struct Http;

impl Harness for Http {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(rxon::http::HttpListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }
    fn transport(&self, config: &TransportConfig) -> rxon::Result<Box<dyn Transport>> {
        rxon::http::HttpTransportFactory.create(config)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

struct Grpc;

impl Harness for Grpc {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(rxon::grpc::GrpcListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }
    fn transport(&self, config: &TransportConfig) -> rxon::Result<Box<dyn Transport>> {
        rxon::grpc::GrpcTransportFactory.create(config)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

mod http_arti_tor {
    rxon::testing::conformance_tests!(rxon::testing::tor::ThroughTor::arti(super::Http), needs: tor);
}

mod grpc_arti_tor {
    rxon::testing::conformance_tests!(rxon::testing::tor::ThroughTor::arti(super::Grpc), needs: tor);
}
