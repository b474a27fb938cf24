//! The integration tests of `rxon-orchestrator` (the orchestrator and local://), in one test binary: one link step
//! instead of one per file. Each module is one former test file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance_local;

/// The orchestrator's tests on the in-memory storage.
mod memory {
    fn builder() -> rxon_orchestrator::OrchestratorBuilder {
        rxon_orchestrator::Orchestrator::builder()
    }
    include!("orchestrator.rs");
    include!("orchestrator_clock.rs");
}

/// The same tests on the Redis storage (a real `redis-server` per test thread, each
/// orchestrator under a key prefix of its own), and what only a shared storage does:
/// several orchestrators (processes) on one state.
#[cfg(feature = "redis")]
mod redis {
    fn builder() -> rxon_orchestrator::OrchestratorBuilder {
        rxon_orchestrator::Orchestrator::builder().storage(super::shared::storage())
    }
    include!("orchestrator.rs");
    include!("shared_redis.rs");
}

#[cfg(feature = "redis")]
mod shared;
