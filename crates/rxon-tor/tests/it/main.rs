//! `rxon-tor` against a scripted control port (always) and a real tor of the private
//! network (`cargo xtask tor-test`).

mod control;
mod tor;
