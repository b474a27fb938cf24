//! The integration tests of `rxon-http` (the HTTP transport, listener and command channel), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod channel;
mod conformance;
mod conformance_tls;
mod envelope;
mod hostile;
mod http;
mod logs;
mod security;
mod tls;
