//! The dialer through a real SOCKS5 server on loopback.

mod socks;
