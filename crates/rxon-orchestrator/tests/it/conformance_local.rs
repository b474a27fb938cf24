//! The conformance suite over the in-process `local://` transport, with commands and
//! progress (which exercises the suite's capability branches too).

use rxon_core::{Listener, Transport, TransportConfig, TransportFactory};
use rxon_orchestrator::{LocalListener, LocalTransportFactory};
use rxon_testing::conformance::{Capabilities, Harness};
use std::time::Duration;

struct Local;

impl Harness for Local {
    fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
        Box::new(LocalListener::new().with_poll_wait(poll_wait))
    }

    fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
        LocalTransportFactory.create(config)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_commands(true)
            .with_progress(true)
            .with_v1b17(true)
    }
}

rxon_testing::conformance_tests!(Local, without: tcp);

/// The same suite with every orchestrator on the Redis storage.
#[cfg(feature = "redis")]
mod on_redis {
    use super::*;

    struct LocalRedis;

    impl Harness for LocalRedis {
        fn listener(&self, poll_wait: Duration) -> Box<dyn Listener> {
            Local.listener(poll_wait)
        }

        fn transport(&self, config: &TransportConfig) -> rxon_core::Result<Box<dyn Transport>> {
            Local.transport(config)
        }

        fn capabilities(&self) -> Capabilities {
            Local.capabilities()
        }

        fn storage(&self) -> rxon_orchestrator::Storage {
            crate::shared::storage()
        }
    }

    rxon_testing::conformance_tests!(LocalRedis, without: tcp);
}
