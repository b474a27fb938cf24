//! The shared conformance suite over HTTP: `HttpListener` on 127.0.0.1 and clients built
//! through the URL factory (`Box<dyn Transport>`).

use rxon_core::{Listener, Transport, TransportConfig, TransportFactory};
use rxon_http::{HttpListener, HttpListenerConfig, HttpTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use std::time::Duration;

struct Http;

impl Harness for Http {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        let mut config = HttpListenerConfig::default();
        config.service.poll_wait = poll_wait;
        Box::new(HttpListener::with_config(config))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        HttpTransportFactory.create(config)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_commands(true)
            .with_progress(true)
            .with_tcp(true)
    }
}

rxon_testing::conformance_tests!(Http);
