//! RXON over one WebSocket: [`WsTransport`] for workers, [`WsListener`] and
//! [`WsMount`] for orchestrators.
//!
//! Every worker operation travels over a single connection to
//! `ws(s)://host/_worker/rxon/{worker_id}`, as request/response frames with correlation
//! ids, with commands pushed by the orchestrator on the same socket. Frames are JSON
//! (`rxon.v1.json`, text frames) or MessagePack (`rxon.v1.msgpack`, binary frames),
//! chosen by subprotocol negotiation. `docs/protocol.md` specifies the envelope.
//!
//! The same [`Handler`](rxon_core::Handler) serves HTTP and WebSocket workers: mount a
//! [`WsMount`] in an `HttpListenerConfig` to serve both on one port, or run a
//! [`WsListener`] on its own port.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod codec;
mod server;

pub use client::{SCHEMES, WsTransport, WsTransportFactory};
pub use codec::{Codec, PATH_PREFIX, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK};
pub use server::{
    DEFAULT_READ_BUFFER_BYTES, TRANSPORT_NAME, WsConfig, WsListener, WsListenerConfig, WsMount,
};
