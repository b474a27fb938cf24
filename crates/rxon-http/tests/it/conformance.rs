//! The shared conformance suite over HTTP: `HttpListener` on 127.0.0.1 and clients built
//! through the URL factory (`Box<dyn Transport>`).

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
