//! The shared conformance suite over the WebSocket transport: standalone listener with
//! each codec, and mounted beside the HTTP routes on one port.

use rxon_core::{
    BoxFuture, Handler, Listener, ListenerOptions, Transport, TransportConfig, TransportFactory,
    Value,
};
use rxon_http::{HttpListener, HttpListenerConfig};
use rxon_testing::conformance::{Capabilities, Harness};
use rxon_testing::pki::Pki;
use rxon_testing::socks::ThroughSocks;
use rxon_ws::{WsConfig, WsListener, WsListenerConfig, WsMount, WsTransportFactory};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

fn ws_config(poll_wait: Duration) -> WsConfig {
    let mut c = WsConfig::default();
    c.poll_wait = poll_wait;
    c
}

fn both() -> Capabilities {
    Capabilities::all()
}

/// Standalone listener; the client insists on `codec` (or negotiates when `None`).
struct Standalone(Option<&'static str>);

impl Harness for Standalone {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(WsListener::with_options(
            ListenerOptions::default().with_poll_wait(poll_wait),
        ))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        let mut config = config.clone();
        if let Some(codec) = self.0 {
            config
                .options
                .params
                .insert("codec".into(), Value::from(codec));
        }
        WsTransportFactory.create(&config)
    }

    fn capabilities(&self) -> Capabilities {
        both()
    }
}

/// An HttpListener that also serves the WebSocket transport on its port.
struct MountedListener {
    poll_wait: Duration,
    inner: Mutex<Option<Arc<HttpListener>>>,
}

impl MountedListener {
    fn http(&self) -> Option<Arc<HttpListener>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Listener for MountedListener {
    fn start(&self, handler: Arc<dyn Handler>) -> BoxFuture<'_, rxon_core::Result<()>> {
        Box::pin(async move {
            let mut config = HttpListenerConfig::default();
            config.service.poll_wait = self.poll_wait;
            config.mounts = vec![Arc::new(WsMount::new(
                handler.clone(),
                ws_config(self.poll_wait),
            ))];
            let http = Arc::new(HttpListener::with_config(config));
            http.start(handler).await?;
            *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(http);
            Ok(())
        })
    }

    fn stop(&self, drain: Duration) -> BoxFuture<'_, rxon_core::Result<()>> {
        Box::pin(async move {
            let http = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
            match http {
                Some(h) => h.stop(drain).await,
                None => Ok(()),
            }
        })
    }

    fn endpoint(&self) -> Option<String> {
        self.http()
            .and_then(|h| h.endpoint())
            .map(|e| e.replacen("http", "ws", 1))
    }
}

struct Mounted;

impl Harness for Mounted {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(MountedListener {
            poll_wait,
            inner: Mutex::new(None),
        })
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        WsTransportFactory.create(config)
    }

    fn capabilities(&self) -> Capabilities {
        both()
    }
}

mod negotiated {
    rxon_testing::conformance_tests!(super::Standalone(None));
}

mod json {
    rxon_testing::conformance_tests!(super::Standalone(Some("json")));
}

mod mounted {
    rxon_testing::conformance_tests!(super::Mounted);
}

/// Every common knob of `ListenerOptions` reaches the listener's own configuration.
#[test]
fn listener_options_reach_the_config() {
    let c = WsListenerConfig::from(rxon_testing::conformance::sample_listener_options());
    assert_eq!(c.bind.map(|b| b.port()), Some(7));
    assert_eq!(c.ws.poll_wait, Duration::from_secs(3));
    assert_eq!(c.ws.max_message_bytes, 1234);
    assert_eq!(c.ws.keepalive, Duration::from_secs(4));
    assert_eq!(c.max_connections, 5);
    assert!(c.tls.is_some());
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new(&["127.0.0.1"], "ws-worker").expect("certificates"))
}

/// `wss://` with required client certificates.
struct Wss;

impl Harness for Wss {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(WsListener::with_options(
            ListenerOptions::default()
                .with_poll_wait(poll_wait)
                .with_tls(pki().server_mtls()),
        ))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        WsTransportFactory.create(&pki().client_mtls(config))
    }

    fn capabilities(&self) -> Capabilities {
        both()
    }
}

mod mtls {
    rxon_testing::conformance_tests!(super::Wss);
}

/// Plain and mTLS again with the worker behind a SOCKS5 proxy.
mod through_socks {
    rxon_testing::conformance_tests!(super::ThroughSocks::new(super::Standalone(None)));
}

mod mtls_through_socks {
    rxon_testing::conformance_tests!(super::ThroughSocks::new(super::Wss));
}

/// Plain and mTLS over a real onion service of the private Tor network
/// (`cargo xtask tor-test`).
mod plain_tor {
    rxon_testing::conformance_tests!(rxon_testing::tor::ThroughTor::new(super::Standalone(None)), needs: tor);
}

mod mtls_tor {
    rxon_testing::conformance_tests!(rxon_testing::tor::ThroughTor::new(super::Wss), needs: tor);
}
