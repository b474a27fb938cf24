//! The integration tests of `rxon-wire`, in one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod b17;
mod b3;
