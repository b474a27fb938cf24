//! The integration tests of `rxon-core` (the core types and traits), in one test binary: one link step
//! instead of one per file. Each module is one former test file.

#[cfg(feature = "serde")]
mod config_formats;
mod dyn_traits;
#[cfg(feature = "serde")]
mod matching;
#[cfg(feature = "serde")]
mod values;
