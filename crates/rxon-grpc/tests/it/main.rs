//! The integration tests of `rxon-grpc` (the gRPC transport and listener), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod conformance;
mod grpc;
