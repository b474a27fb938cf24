//! The integration tests of `rxon-testing` (the mock transport), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod mock;
