//! RXON over HTTP/1.1: [`HttpTransport`] for workers and [`HttpListener`] /
//! [`HttpService`] for orchestrators, wire-compatible with the Python reference
//! `rxon==1.0b3` in both directions.
//!
//! | operation | request | success |
//! | --- | --- | --- |
//! | register | `POST /_worker/workers/register` | 200 JSON |
//! | poll | `GET /_worker/workers/{id}/tasks/next` | 200 TaskPayload, 204 no task |
//! | result | `POST /_worker/tasks/result` | 200 `{"status":"accepted"}` or `"ignored"` |
//! | heartbeat | `PATCH /_worker/workers/{id}` | 200 JSON |
//! | token | `POST /_worker/auth/token` | 200 TokenResponse |
//!
//! Every request carries `X-Worker-Token` and `X-RXON-Version`; every response carries
//! `X-RXON-Version`. Errors are `{"error": "..."}` with the status of
//! [`status_for`] on the listener side, and map back to [`rxon_core::ErrorKind`] on the
//! worker side (401 → refresh once, then `Auth`; 403 → `Auth`; 429 → `RateLimited`
//! with `Retry-After`; 502–504 → `Network`; any other ≥ 400 → `Protocol`).
//!
//! TLS uses rustls: `https://` clients verify against the system roots or a CA file and
//! may present a client certificate; [`HttpListener`] serves HTTPS with optional or
//! required client certificates ([`ServerTlsOptions`](rxon_core::ServerTlsOptions)), and the client certificate's subject
//! CN reaches the handler as [`RequestContext::cert_identity`](rxon_core::RequestContext::cert_identity).
//!
//! Commands and progress travel over the reference's WebSocket channel on the same port
//! (`/_worker/ws/{worker_id}`): the listener upgrades after authorising through
//! [`Handler::commands`](rxon_core::Handler::commands); the worker keeps the channel open
//! in the background (ping keepalive, reconnect with backoff from 1 s to 60 s).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod client;
pub mod routes;
mod server;
mod service;

pub use client::{HttpTransport, HttpTransportFactory, SCHEMES};
pub use rxon_net::status::{error_for_status, status_for};
pub use server::{HttpListener, HttpListenerConfig};
pub use service::Mount;
pub use service::{ConnectionInfo, ConnectionSlot, HttpService, ServiceConfig, TRANSPORT_NAME};
