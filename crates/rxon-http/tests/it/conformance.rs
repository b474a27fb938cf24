//! The shared conformance suite over HTTP: `HttpListener` on 127.0.0.1 and clients built
//! through the URL factory (`Box<dyn Transport>`), once as configured by default
//! (`protocol = auto`, which finds 1.0b17 here) and once pinned to 1.0b3.

use rxon_core::{Listener, ListenerOptions, Transport, TransportConfig, TransportFactory};
use rxon_http::{HttpListener, HttpTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use std::time::Duration;

struct Http;

impl Harness for Http {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(HttpListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        HttpTransportFactory.create(config)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
}

rxon_testing::conformance_tests!(Http);

/// The same listener, with clients pinned to 1.0b3: the 1.0b3 wire, unsigned.
struct HttpB3;

impl Harness for HttpB3 {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Http.listener(poll_wait)
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        let mut config = config.clone();
        config.options.protocol = rxon_core::ProtocolChoice::Pinned(rxon_core::Protocol::V1b3);
        let t = HttpTransportFactory.create(&config)?;
        assert_eq!(t.known_protocol(), Some(rxon_core::Protocol::V1b3));
        Ok(t)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all().with_v1b17(false).with_signs(false)
    }
}

mod v1b3 {
    rxon_testing::conformance_tests!(super::HttpB3);
}

/// Every common knob of `ListenerOptions` reaches the listener's own configuration.
#[test]
fn listener_options_reach_the_config() {
    let c =
        rxon_http::HttpListenerConfig::from(rxon_testing::conformance::sample_listener_options());
    assert_eq!(c.bind.port(), 7);
    assert_eq!(c.service.poll_wait, Duration::from_secs(3));
    assert_eq!(c.service.max_body_bytes, 1234);
    assert_eq!(c.service.keepalive, Duration::from_secs(4));
    assert_eq!(c.max_connections, 5);
    assert_eq!(c.header_read_timeout, Duration::from_secs(6));
    assert!(c.tls.is_some());
}

/// Every case again with the worker behind a SOCKS5 proxy (`socks5h://`), the
/// orchestrator named by a host only the proxy can route.
mod through_socks {
    rxon_testing::conformance_tests!(rxon_testing::socks::ThroughSocks::new(super::Http));
}

/// Every case over a real onion service of the private Tor network
/// (`cargo xtask tor-test`).
mod tor {
    rxon_testing::conformance_tests!(rxon_testing::tor::ThroughTor::new(super::Http), needs: tor);
}
