//! The integration tests of `rxon` (the umbrella, the worker runtime and the examples), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

mod config_switch;
mod faults;
mod secrets;
mod tor_arti;
mod worker;
