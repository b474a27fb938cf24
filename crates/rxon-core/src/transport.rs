//! The worker side: [`Transport`] and [`TransportFactory`].

use crate::config::TransportConfig;
use crate::error::Result;
use crate::future::BoxFuture;
use crate::messages::{
    Heartbeat, HeartbeatReply, ProgressUpdatePayload, RegisterReply, ResultOutcome, TaskPayload,
    TaskResult, TokenResponse, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use crate::protocol::Protocol;
use std::sync::Arc;
use std::time::Duration;

/// A worker's connection to an orchestrator, over any wire.
///
/// Every method takes `&self`: a transport is shared between the tasks of a worker (a
/// poll loop, a heartbeat loop, result uploads, a command reader) behind an `Arc`.
///
/// # Contract
///
/// What every implementation guarantees, checked by `rxon_testing::conformance`:
///
/// - **Lifecycle.** [`connect`](Self::connect) must be called before any other
///   operation, which otherwise fails with [`ErrorKind::Closed`](crate::ErrorKind::Closed).
///   `connect` is idempotent. After [`close`](Self::close) every operation fails with
///   `Closed` and a pending [`next_command`](Self::next_command) returns `Ok(None)`.
/// - **Identity.** The worker id given at construction is validated against
///   [`crate::validate`] before it is put into any path or key.
/// - **Polling.** [`poll_task`](Self::poll_task) waits at most `timeout` (plus a transport
///   margin) and returns `Ok(None)` when no task arrived: "no task" is not an error. A
///   task that arrives during the wait is returned promptly.
/// - **Results.** [`send_result`](Self::send_result) retries network failures with
///   bounded exponential backoff, never retries auth or protocol errors, and reports an
///   orchestrator's refusal as [`ResultOutcome::Ignored`] with its reason (not retried).
/// - **Auth.** When the orchestrator rejects the credential, the transport refreshes it
///   once ([`refresh_token`](Self::refresh_token)) and retries once; after that the
///   error is [`ErrorKind::Auth`](crate::ErrorKind::Auth).
/// - **Rate limiting** surfaces as [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited)
///   with the peer's retry-after when it sent one.
/// - **No panics** on anything a peer sends: bad bodies are
///   [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) errors.
/// - **Cancellation safety.** Dropping a returned future abandons the operation; the
///   transport stays usable.
pub trait Transport: Send + Sync {
    /// Short name of the transport, e.g. `"http"`, `"ws"`, `"mock"`.
    fn name(&self) -> &'static str;

    /// The worker id this transport speaks for.
    fn worker_id(&self) -> &str;

    /// Opens connections or other resources. Idempotent.
    fn connect(&self) -> BoxFuture<'_, Result<()>>;

    /// Releases resources and ends the command channel. Idempotent.
    fn close(&self) -> BoxFuture<'_, Result<()>>;

    /// Announces the worker and its capabilities.
    fn register<'a>(
        &'a self,
        registration: &'a WorkerRegistration,
    ) -> BoxFuture<'a, Result<RegisterReply>>;

    /// Waits up to `timeout` for the next task; `Ok(None)` when none arrived.
    fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>>;

    /// Sends a task's result; says whether the orchestrator applied it.
    fn send_result<'a>(&'a self, result: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>>;

    /// Sends a heartbeat; the reply may list tasks to cancel.
    fn send_heartbeat<'a>(
        &'a self,
        heartbeat: &'a Heartbeat,
    ) -> BoxFuture<'a, Result<HeartbeatReply>>;

    /// Reports progress of a running task. Optional: the default refuses with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) (progress is never
    /// silently dropped).
    fn send_progress<'a>(
        &'a self,
        progress: &'a ProgressUpdatePayload,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = progress;
        let name = self.name();
        Box::pin(async move {
            Err(crate::RxonError::unsupported(format!(
                "the {name} transport does not carry progress"
            )))
        })
    }

    /// Sends an event (1.0b17): progress, or any `event_type` a skill declares, aimed
    /// at the task it concerns ([`WorkerEventPayload::for_task`]). `Ok(())` means the
    /// orchestrator took it; a refusal (e.g. the worker does not hold the target task)
    /// is its error (`Forbidden` → [`ErrorKind::Auth`](crate::ErrorKind::Auth) with
    /// status 403). Events are not retried on network failures: a lost event is
    /// reported, never sent twice.
    ///
    /// The default sends a `"progress"` event through
    /// [`send_progress`](Self::send_progress) and refuses any other type with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    fn emit_event<'a>(&'a self, event: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
        match event.as_progress() {
            Some(progress) => Box::pin(async move { self.send_progress(&progress).await }),
            None => {
                let (name, kind) = (self.name(), event.event_type.clone());
                Box::pin(async move {
                    Err(crate::RxonError::unsupported(format!(
                        "the {name} transport does not carry events of type {kind:?}"
                    )))
                })
            }
        }
    }

    /// The protocol generation this transport speaks with its orchestrator, once known
    /// (after the first exchange when it negotiates). `None` (the default) when unknown
    /// or not applicable; the worker runtime then sends what every generation reads
    /// (e.g. the whole skill catalog in each heartbeat).
    fn known_protocol(&self) -> Option<Protocol> {
        None
    }

    /// Waits for the next command from the orchestrator; `Ok(None)` once the channel has
    /// ended (the transport was closed). Commands are delivered to one caller each.
    /// Optional: the default answers
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), which the worker
    /// runtime reads as "no command channel" (cancels then arrive in heartbeat replies).
    fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
        let name = self.name();
        Box::pin(async move {
            Err(crate::RxonError::unsupported(format!(
                "the {name} transport has no command channel"
            )))
        })
    }

    /// Exchanges the current credential for a fresh one and uses it from now on.
    fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>>;
}

macro_rules! forward_transport {
    ($($ptr:ty),*) => {$(
        impl<T: Transport + ?Sized> Transport for $ptr {
            fn name(&self) -> &'static str { (**self).name() }
            fn worker_id(&self) -> &str { (**self).worker_id() }
            fn connect(&self) -> BoxFuture<'_, Result<()>> { (**self).connect() }
            fn close(&self) -> BoxFuture<'_, Result<()>> { (**self).close() }
            fn register<'a>(&'a self, r: &'a WorkerRegistration) -> BoxFuture<'a, Result<RegisterReply>> {
                (**self).register(r)
            }
            fn poll_task(&self, timeout: Duration) -> BoxFuture<'_, Result<Option<TaskPayload>>> {
                (**self).poll_task(timeout)
            }
            fn send_result<'a>(&'a self, r: &'a TaskResult) -> BoxFuture<'a, Result<ResultOutcome>> {
                (**self).send_result(r)
            }
            fn send_heartbeat<'a>(&'a self, h: &'a Heartbeat) -> BoxFuture<'a, Result<HeartbeatReply>> {
                (**self).send_heartbeat(h)
            }
            fn send_progress<'a>(&'a self, p: &'a ProgressUpdatePayload) -> BoxFuture<'a, Result<()>> {
                (**self).send_progress(p)
            }
            fn emit_event<'a>(&'a self, e: &'a WorkerEventPayload) -> BoxFuture<'a, Result<()>> {
                (**self).emit_event(e)
            }
            fn known_protocol(&self) -> Option<Protocol> { (**self).known_protocol() }
            fn next_command(&self) -> BoxFuture<'_, Result<Option<WorkerCommand>>> {
                (**self).next_command()
            }
            fn refresh_token(&self) -> BoxFuture<'_, Result<TokenResponse>> {
                (**self).refresh_token()
            }
        }
    )*};
}
forward_transport!(Box<T>, Arc<T>, &T);

/// A shared transport, as the worker runtime holds it and
/// `rxon::create_transport` returns it.
pub type DynTransport = Arc<dyn Transport>;

/// Builds transports for one or more URL schemes from a [`TransportConfig`].
///
/// Each transport crate exports one; the `rxon` crate's registry maps schemes to
/// factories, and a third-party crate adds its own scheme by registering a factory.
pub trait TransportFactory: Send + Sync {
    /// The URL schemes served, lowercase, without `://` (e.g. `["http", "https"]`).
    fn schemes(&self) -> &[&'static str];

    /// Builds an unconnected transport for `config` (whose URL uses one of
    /// [`schemes`](Self::schemes)). Fails with
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) on an invalid configuration.
    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>>;
}

impl<F: TransportFactory + ?Sized> TransportFactory for Arc<F> {
    fn schemes(&self) -> &[&'static str] {
        (**self).schemes()
    }
    fn create(&self, config: &TransportConfig) -> Result<Box<dyn Transport>> {
        (**self).create(config)
    }
}

/// The connect/close state every [`Transport`] keeps, with the contract's errors.
///
/// ```
/// use rxon_core::transport::Lifecycle;
/// let life = Lifecycle::new("demo");
/// assert!(life.ready().is_err());      // not connected yet
/// life.connect().unwrap();
/// life.connect().unwrap();             // idempotent
/// assert!(life.ready().is_ok());
/// life.close();
/// assert!(life.is_closed() && life.connect().is_err());
/// ```
#[derive(Debug)]
pub struct Lifecycle {
    name: &'static str,
    state: std::sync::atomic::AtomicU8,
}

const NEW: u8 = 0;
const CONNECTED: u8 = 1;
const CLOSED: u8 = 2;

impl Lifecycle {
    /// A new, unconnected state for the transport called `name` (used in errors).
    pub const fn new(name: &'static str) -> Self {
        Lifecycle {
            name,
            state: std::sync::atomic::AtomicU8::new(NEW),
        }
    }

    /// Marks the transport connected; `Closed` if it was closed.
    pub fn connect(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        match self
            .state
            .compare_exchange(NEW, CONNECTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(CONNECTED) => Ok(()),
            Err(_) => Err(crate::RxonError::closed(format!(
                "{} transport was closed",
                self.name
            ))),
        }
    }

    /// Marks the transport closed, for good.
    pub fn close(&self) {
        self.state
            .store(CLOSED, std::sync::atomic::Ordering::Release);
    }

    /// `true` once closed.
    pub fn is_closed(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::Acquire) == CLOSED
    }

    /// `Ok` when connected; otherwise the contract's `Closed` error.
    pub fn ready(&self) -> Result<()> {
        match self.state.load(std::sync::atomic::Ordering::Acquire) {
            CONNECTED => Ok(()),
            CLOSED => Err(crate::RxonError::closed(format!(
                "{} transport was closed",
                self.name
            ))),
            _ => Err(crate::RxonError::closed(format!(
                "{} transport is not connected: call connect() first",
                self.name
            ))),
        }
    }
}
