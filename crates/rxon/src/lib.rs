//! RXON ("Reverse Axon"): a reverse-connection protocol between workers and
//! orchestrators.
//!
//! Workers always dial out, so they work behind NAT and firewalls: they register,
//! long-poll for tasks, post results, send heartbeats, stream progress, and receive
//! commands (such as cancel) over a channel they opened. This crate is wire-compatible
//! with the Python reference `rxon==1.0b3`.
//!
//! This crate provides the protocol core (re-exported at the root from
//! [`rxon-core`](rxon_core)), a URL-driven [`create_transport`] and
//! [`TransportRegistry`], and each transport under its own module behind a feature.
//!
//! # Usage
//!
//! Applications depend on `rxon` with the features they need. Transport and handler
//! authors may depend on `rxon-core` alone.
//!
//! A worker written against [`Transport`] runs over any scheme; only the URL changes:
//!
//! ```
//! # #[cfg(feature = "testing")]
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use rxon::{Map, TaskPayload, TaskResult, Transport, TransportConfig, Value};
//! use std::time::Duration;
//!
//! async fn work(transport: &dyn Transport, polls: usize) -> rxon::Result<usize> {
//!     let mut done = 0;
//!     for _ in 0..polls {
//!         let Some(task) = transport.poll_task(Duration::from_millis(100)).await? else { continue };
//!         let mut data = Map::new();
//!         data.insert("echo".into(), task.params.get("text").cloned().unwrap_or(Value::Null));
//!         transport.send_result(&TaskResult::success(&task, transport.worker_id(), data)).await?;
//!         done += 1;
//!     }
//!     Ok(done)
//! }
//!
//! let mock = rxon::testing::MockHandle::new();          // stands in for an orchestrator
//! mock.push_task(TaskPayload { task_id: "t1".into(), ..Default::default() });
//! let config = TransportConfig::new(mock.url(), "worker-1", "secret"); // or "https://…"
//! let transport = rxon::create_transport_from_config(&config)?;
//! transport.connect().await?;
//! assert_eq!(work(transport.as_ref(), 1).await?, 1);
//! # Ok::<(), rxon::RxonError>(())
//! # }).unwrap();
//! ```
//!
//! # An orchestrator in your axum app
//!
//! [`http::HttpService`] is a tower `Service`: mount it as the fallback of an axum
//! `Router`, beside your own routes. HTTP workers, their command channels and WebSocket
//! workers ([`ws::WsMount`]: `ws://host:port`, the upgrade passing through axum) all
//! use your port. `rxon orchestrator` (the `rxon-cli` crate) does this beside a whole
//! admin API (typed extractors, JSON errors, a graceful stop), and its tests drive it
//! over loopback.
//!
//! ```no_run
//! # #[cfg(all(feature = "http", feature = "ws", feature = "orchestrator"))]
//! # async fn serve() -> std::io::Result<()> {
//! use axum::serve::ListenerExt;
//! use std::sync::Arc;
//!
//! let orchestrator = rxon::orchestrator::Orchestrator::builder().token("worker-secret").build();
//! let handler: Arc<dyn rxon::Handler> = Arc::new(orchestrator.clone());
//! let ws: Arc<dyn rxon::http::Mount> =
//!     Arc::new(rxon::ws::WsMount::new(handler.clone(), Default::default()));
//! let app = axum::Router::new()
//!     .route("/healthz", axum::routing::get(|| async { "ok" }))
//!     .fallback_service(rxon::http::HttpService::new(handler).with_mounts(vec![ws], true));
//! // Small frames (WebSocket sessions, command-channel pings) go out at once.
//! let tcp = tokio::net::TcpListener::bind("0.0.0.0:8080")
//!     .await?
//!     .tap_io(|tcp| {
//!         let _ = tcp.set_nodelay(true);
//!     });
//! axum::serve(tcp, app).await
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | provides |
//! | --- | --- | --- |
//! | `http` | yes | [`http`] module, `http://` and `https://` |
//! | `wire` | yes (with `http`) | [`wire`] module: each generation's JSON, the signed envelope |
//! | `serde` | yes | `Serialize`/`Deserialize` for messages and [`TransportConfig`] |
//! | `worker` | yes | [`worker`]: the worker runtime (polling, concurrency, heartbeats, cancellation, shutdown) |
//! | `ws` | | [`ws`] module, `ws://` and `wss://` |
//! | `grpc` | | [`grpc`] module, `grpc://` and `grpcs://` |
//! | `blob` | | [`blob`] module: S3-compatible blob storage |
//! | `orchestrator` | | [`orchestrator`] module: the embeddable `Orchestrator` (queues, leases, results once, cancellation, STS, rate limits) and `local://` (`LocalTransport`, `LocalListener`) |
//! | `testing` | | [`testing`] module: `MockTransport` (`mock://`), the conformance suite, fault proxy; implies `orchestrator` |
//! | `redis` | | the orchestrator's Redis storage (`Storage::redis`): several listener processes share one state; implies `orchestrator` |
//! | `schema` | yes (with `worker`) | [`schema`] module: skill contracts (JSON Schema for params, outputs and events) |
//! | `tor-control` | | [`tor`] module: onion services through a tor daemon's control port |
//! | `metrics` | | metrics through the `metrics` facade, for Prometheus or any recorder: the worker runtime's ([`worker::metrics`]), the orchestrator's (`rxon::orchestrator::metrics`) and the listeners' connections (`rxon_net::metrics`) |
//! | `otel` | | OpenTelemetry trace propagation (`rxon::otel`, W3C Trace Context): tasks carry the orchestrator's span to the worker, whose task span continues it; events carry the task's span back |
//! | `tor` | | the embedded Tor client (arti) in every enabled transport: `proxy = "arti"` and `.onion` URLs with no daemon; `rxon::tor::arti`; implies `tor-control` |
//! | `full` | | all of the above |
//!
//! A built-in scheme whose feature is off fails with an error naming the feature.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024), the toolchain CI builds with (`cargo xtask ci` checks that
//! the declared `rust-version` is the one it builds).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use rxon_core::*;

pub mod registry;

#[cfg(feature = "worker")]
#[cfg_attr(docsrs, doc(cfg(feature = "worker")))]
pub mod worker;

#[doc(inline)]
pub use registry::{Scheme, TransportRegistry, create_transport, create_transport_from_config};

/// HTTP transport and listener.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use rxon_http as http;

/// The JSON of both protocol generations, canonical JSON and the 1.0b17 signed
/// envelope.
#[cfg(feature = "wire")]
#[cfg_attr(docsrs, doc(cfg(feature = "wire")))]
pub use rxon_wire as wire;

/// Skill contracts: JSON Schema for a skill's params, outputs and events.
#[cfg(feature = "schema")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema")))]
pub use rxon_schema as schema;

/// WebSocket command channel and transport.
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub use rxon_ws as ws;

/// gRPC transport and listener.
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use rxon_grpc as grpc;

/// Blob storage for large inputs and outputs.
#[cfg(feature = "blob")]
#[cfg_attr(docsrs, doc(cfg(feature = "blob")))]
pub use rxon_blob as blob;

/// The embeddable orchestrator and the in-process `local://` transport.
#[cfg(feature = "orchestrator")]
#[cfg_attr(docsrs, doc(cfg(feature = "orchestrator")))]
pub use rxon_orchestrator as orchestrator;

/// Mock transport and test tools.
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use rxon_testing as testing;

/// OpenTelemetry trace propagation: W3C Trace Context in tasks and events (`rxon-otel`).
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use rxon_otel as otel;

/// Onion services through the tor daemon's control port (`rxon-tor`).
#[cfg(feature = "tor-control")]
#[cfg_attr(docsrs, doc(cfg(feature = "tor-control")))]
pub use rxon_tor as tor;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The code of `docs/contributing-a-transport.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/contributing-a-transport.md")]
pub struct ContributingDoctests;

/// The code of `docs/architecture.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/architecture.md")]
pub struct ArchitectureDoctests;
