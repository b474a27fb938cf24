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
//! let listener = rxon_ws::WsListener::bind("127.0.0.1:0".parse().unwrap());
//! listener.start(Arc::new(orchestrator.clone())).await?;
//! let url = listener.endpoint().unwrap(); // ws://127.0.0.1:<port>
//!
//! let config = rxon_core::TransportConfig::new(url, "w1", "secret");
//! let worker = rxon_ws::WsTransport::from_config(&config)?;
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
//! | `metrics` | | `WsListener`'s open connections and refusals, through the `metrics` facade (`rxon_net::metrics`) |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

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
