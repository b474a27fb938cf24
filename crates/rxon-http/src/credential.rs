//! [`Credential`]: the worker token, replaced by refreshes that never stampede.

use rxon_core::{Result, RxonError};
use std::future::Future;
use std::sync::RwLock;

/// The current worker token with a generation number bumped on every refresh, and a
/// lock that lets one refresh run at a time. Requests remember the generation they
/// were sent with; after a 401, [`refresh_after`](Self::refresh_after) refreshes only if
/// nobody has since, so concurrent 401s cause one refresh.
///
/// Public for transports that reuse it (such as `rxon-ws`).
///
/// `Debug` shows the generation, never the token.
pub struct Credential<T> {
    current: RwLock<(T, u64)>,
    refresh: tokio::sync::Mutex<()>,
}

impl<T> std::fmt::Debug for Credential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let generation = self.current.read().unwrap_or_else(|p| p.into_inner()).1;
        f.debug_struct("Credential")
            .field("token", &"<redacted>")
            .field("generation", &generation)
            .finish_non_exhaustive()
    }
}

impl<T: Clone> Credential<T> {
    /// A credential holding `token`, generation 0.
    pub fn new(token: T) -> Self {
        Credential {
            current: RwLock::new((token, 0)),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The token and its generation.
    pub fn current(&self) -> (T, u64) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new token (the next generation).
    pub fn set(&self, token: T) {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        guard.0 = token;
        guard.1 += 1;
    }

    /// After a refused credential: runs `fetch` (which installs the new token with
    /// [`set`](Self::set)) unless the token changed since generation `seen`; one refresh
    /// at a time. A failed refresh is an [`ErrorKind::Auth`](rxon_core::ErrorKind::Auth)
    /// error (the refusal stands), with the cause as its source.
    pub async fn refresh_after<R, F, Fut>(&self, seen: u64, fetch: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let _single = self.refresh.lock().await;
        if self.current().1 != seen {
            return Ok(());
        }
        match fetch().await {
            Ok(_) => Ok(()),
            Err(e) if e.is_auth() => Err(e),
            Err(e) => Err(RxonError::auth(format!(
                "the credential was refused and refreshing it failed: {e}"
            ))
            .with_source(e)),
        }
    }

    /// Runs `fetch` now, after any refresh in progress.
    pub async fn refresh_now<R, F, Fut>(&self, fetch: F) -> Result<R>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let _single = self.refresh.lock().await;
        fetch().await
    }
}
