//! The boxed future every async trait method in rxon returns.

use std::future::Future;
use std::pin::Pin;

/// An owned, `Send`, type-erased future.
///
/// Trait methods return this instead of `impl Future` so that [`Transport`](crate::Transport),
/// [`Handler`](crate::Handler) and [`Listener`](crate::Listener) stay dyn-compatible: a
/// transport chosen at run time from configuration is a `Box<dyn Transport>`. The cost
/// is one allocation per call, which is noise next to a network round trip.
///
/// Implementations write `Box::pin(async move { ... })`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
