//! The integration tests of `rxon-orchestrator` (the orchestrator and local://), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod conformance_local;
mod orchestrator;
