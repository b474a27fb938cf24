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
//!
//! # Quickstart
//!
//! A listener serving the embedded orchestrator of `rxon-orchestrator`, and a worker's
//! transport talking to it, on loopback:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use rxon_core::{Listener, Map, TaskPayload, TaskResult, Transport, WorkerRegistration};
//! use std::{sync::Arc, time::Duration};
//!
//! let orchestrator = rxon_orchestrator::Orchestrator::builder().token("secret").build();
//! let listener = rxon_http::HttpListener::bind("127.0.0.1:0".parse().unwrap());
//! listener.start(Arc::new(orchestrator.clone())).await?;
//! let url = listener.endpoint().unwrap(); // http://127.0.0.1:<port>
//!
//! let worker = rxon_http::HttpTransport::new(&url, "w1", "secret")?;
//! worker.connect().await?;
//! let skills = vec!["echo".into()];
//! worker.register(&WorkerRegistration { worker_id: "w1".into(), supported_skills: skills, ..Default::default() }).await?;
//! let task = TaskPayload { job_id: "j1".into(), task_id: "t1".into(), task_type: "echo".into(), ..Default::default() };
//! orchestrator.enqueue(task).await?;
//! let task = worker.poll_task(Duration::from_secs(5)).await?.expect("a task");
//! let outcome = worker.send_result(&TaskResult::success(&task, "w1", Map::new())).await?;
//! assert!(outcome.is_accepted());
//! listener.stop(Duration::from_secs(1)).await?;
//! # Ok::<(), rxon_core::RxonError>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tor` |  | dial through the embedded Tor client (arti, `rxon-net`'s `tor`) for `proxy = "arti"` and for `.onion` URLs with no proxy |
//! | `metrics` | | `HttpListener`'s open connections (upgraded sessions included) and refusals over `max_connections`, through the `metrics` facade ([`rxon_net::metrics`]) |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod client;
pub mod routes;
mod server;
mod service;

pub use client::{Connector, HttpTransport, HttpTransportFactory, SCHEMES, connector};
pub use rxon_net::status::{error_for_status, status_for};
pub use server::{HttpListener, HttpListenerConfig};
pub use service::Mount;
pub use service::{ConnectionInfo, ConnectionSlot, HttpService, ServiceConfig, TRANSPORT_NAME};
