//! The integration tests of `rxon-ws` (the WebSocket transport and listener), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod conformance;
mod security;
mod ws;
