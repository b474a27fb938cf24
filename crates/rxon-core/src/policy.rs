//! The worker-side rules of the [`Transport`](crate::Transport) contract, written once:
//! every built-in transport keeps a [`Policy`] and sends each operation through it, so
//! a transport crate implements only how bytes move.
//!
//! | rule | where |
//! | --- | --- |
//! | connect before use, `Closed` after close, no command after close | [`Policy::ready`], [`Policy::next_command`] |
//! | a refused credential (401 / `UNAUTHENTICATED`) is refreshed once, concurrent refusals share one refresh, then the call is retried once | [`Policy::call`], [`Credential`] |
//! | an issued token the token service refuses (expired, revoked) is exchanged again with the configured credential | [`Credential`] |
//! | an issued token is renewed before it expires (a fifth of its lifetime before, at most a minute), once, by one caller | [`Credential::renew_if_due`], [`renew_margin`] |
//! | results are retried on network failures with an exact doubling backoff, never on refusals or "ignored" answers | [`Policy::send_result`] |
//! | a peer's retry-after hint is clamped | [`RxonError::with_retry_after`](crate::RxonError::with_retry_after) |
//! | an HTTP status means the same error kind on every HTTP-shaped wire | [`RxonError::for_status`](crate::RxonError::for_status) |
//!
//! A transport gives the policy two things: a sleep function of its runtime (this crate
//! has none) and its token exchange ([`TokenExchange`]). Each operation is then a
//! closure that sends one request with the [`Token`] it is given:
//!
//! ```
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
//! #         std::task::Poll::Ready(v) => v, _ => unreachable!() } }
//! use rxon_core::policy::{Policy, Token, TokenExchange};
//! use rxon_core::{BoxFuture, Result, RxonError, TokenResponse, TransportConfig};
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! /// A wire that refuses "old" once, and exchanges it for "new".
//! struct Wire { calls: AtomicU32 }
//! impl TokenExchange for Wire {
//!     fn exchange_token<'a>(&'a self, _: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
//!         Box::pin(async { Ok(TokenResponse { access_token: "new".into(), ..Default::default() }) })
//!     }
//! }
//! let wire = Wire { calls: AtomicU32::new(0) };
//! let policy = Policy::new("demo", &TransportConfig::new("demo://x", "w1", "old"), |_| Box::pin(async {}));
//! policy.connect()?;
//! let seen = block_on(policy.call(&wire, |token| {
//!     wire.calls.fetch_add(1, Ordering::Relaxed);
//!     async move {
//!         match token.as_str() {
//!             "old" => Err(RxonError::credential_refused("401")),
//!             other => Ok(other.to_owned()),
//!         }
//!     }
//! }))?;
//! assert_eq!(seen, "new");
//! assert_eq!(wire.calls.load(Ordering::Relaxed), 2, "refused, refreshed, retried once");
//! # Ok::<(), RxonError>(())
//! ```

use crate::config::{TransportConfig, TransportOptions};
use crate::error::{Result, RxonError};
use crate::future::BoxFuture;
use crate::messages::{ResultOutcome, TokenResponse, WorkerCommand};
use crate::transport::Lifecycle;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The credential a request is sent with: the token and the generation it belongs to
/// (bumped by every refresh). Cheap to clone. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: Arc<str>,
    generation: u64,
}

impl Token {
    /// The token, to put on the wire.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// How many refreshes came before this token.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The configured credential itself (generation 0), for a token exchange that
    /// falls back to it.
    pub fn configured(token: &str) -> Token {
        Token {
            value: token.into(),
            generation: 0,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("generation", &self.generation)
            .finish()
    }
}

/// A transport's token exchange: one request that trades `token` for a fresh one at the
/// orchestrator's token service (`POST /_worker/auth/token` on HTTP). No retry and no
/// bookkeeping: the [`Credential`] installs what it returns.
pub trait TokenExchange: Send + Sync {
    /// Exchanges `token` once.
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>>;
}

impl<T: TokenExchange + ?Sized> TokenExchange for Arc<T> {
    fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
        (**self).exchange_token(token)
    }
}

/// The worker token, replaced by refreshes that never stampede: after a refusal,
/// [`refresh_after`](Self::refresh_after) refreshes only if nobody has since the
/// refused token was sent, and one refresh runs at a time (concurrent callers wait for
/// it, then use its token). Runtime-independent: the wait is a std-only async lock.
///
/// `Debug` shows the generation, never the token.
pub struct Credential {
    current: Mutex<Token>,
    /// The configured credential (generation 0): what an exchange falls back to when
    /// the token service refuses an issued token (expired, revoked).
    configured: String,
    /// When the current token should be replaced before it expires (set from an
    /// exchange's `expires_in`), and the clock that says so.
    renew_at: Mutex<Option<Instant>>,
    clock: Clock,
    gate: Gate,
    /// Refresh attempts so far, and the message of the last one that failed: callers
    /// that queued behind a failed refresh share its failure instead of each trying
    /// again in turn.
    attempts: Mutex<(u64, Option<String>)>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("token", &"<redacted>")
            .field("generation", &self.current().generation)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A credential holding `token`, generation 0.
    pub fn new(token: &str) -> Self {
        Self::with_clock(token, Instant::now)
    }

    /// [`new`](Self::new) with another clock (tests).
    pub fn with_clock(token: &str, clock: Clock) -> Self {
        Credential {
            current: Mutex::new(Token {
                value: token.into(),
                generation: 0,
            }),
            configured: token.into(),
            renew_at: Mutex::new(None),
            clock,
            gate: Gate::default(),
            attempts: Mutex::new((0, None)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Token> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token to send now.
    pub fn current(&self) -> Token {
        self.lock().clone()
    }

    /// Installs `token` as the next generation.
    pub fn set(&self, token: &str) {
        let mut guard = self.lock();
        guard.value = token.into();
        guard.generation += 1;
    }

    fn attempts(&self) -> MutexGuard<'_, (u64, Option<String>)> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After `refused` was refused: exchanges the current token unless a refresh
    /// already happened since `refused` was sent; one refresh at a time, and callers
    /// that waited behind one share its outcome (a new token, or its failure). A failed
    /// exchange is an [`ErrorKind::Auth`](crate::ErrorKind::Auth) error saying so (the
    /// refusal stands, the current token is kept), with the cause as its source.
    pub async fn refresh_after(&self, refused: &Token, exchange: &dyn TokenExchange) -> Result<()> {
        let seen = self.attempts().0;
        let _single = self.gate.lock().await;
        if self.current().generation != refused.generation {
            return Ok(());
        }
        {
            let attempts = self.attempts();
            if attempts.0 != seen {
                let why = attempts.1.as_deref().unwrap_or("it failed");
                return Err(RxonError::auth(format!(
                    "the credential was refused and refreshing it failed: {why}"
                )));
            }
        }
        let outcome = self.exchange(exchange).await;
        let mut attempts = self.attempts();
        attempts.0 += 1;
        match outcome {
            Ok(_) => {
                attempts.1 = None;
                Ok(())
            }
            Err(e) => {
                attempts.1 = Some(e.to_string());
                // The refresh's details (its status, say) stay visible.
                Err(RxonError::auth(format!(
                    "the credential was refused and refreshing it failed: {e}"
                ))
                .with_details(e.details().clone())
                .with_source(e))
            }
        }
    }

    /// Exchanges the current token now, after any refresh in progress.
    pub async fn refresh_now(&self, exchange: &dyn TokenExchange) -> Result<TokenResponse> {
        let _single = self.gate.lock().await;
        self.exchange(exchange).await
    }

    fn renew_at(&self) -> MutexGuard<'_, Option<Instant>> {
        self.renew_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `true` when the current token came from an exchange that gave it a lifetime and
    /// most of that lifetime has passed (see [`renew_margin`]).
    pub fn is_due(&self) -> bool {
        self.renew_at().is_some_and(|at| (self.clock)() >= at)
    }

    /// Refreshes before expiry: exchanges the current token if it [is due](Self::is_due),
    /// one caller at a time (the others find it renewed). A failure is returned and the
    /// current token kept: it may still be accepted, and a refusal refreshes anyway.
    pub async fn renew_if_due(&self, exchange: &dyn TokenExchange) -> Result<()> {
        if !self.is_due() {
            return Ok(());
        }
        let _single = self.gate.lock().await;
        if !self.is_due() {
            return Ok(());
        }
        // A failed (or abandoned) attempt is tried again a little later, not never.
        *self.renew_at() = Some((self.clock)() + RENEW_RETRY);
        self.exchange(exchange).await.map(drop)
    }

    async fn exchange(&self, exchange: &dyn TokenExchange) -> Result<TokenResponse> {
        let token = self.current();
        let response = match exchange.exchange_token(&token).await {
            // An issued token the token service refuses (it expired, was revoked):
            // ask again with the configured credential, as the reference worker does.
            Err(e) if e.is_auth() && token.generation > 0 => {
                exchange
                    .exchange_token(&Token::configured(&self.configured))
                    .await?
            }
            other => other?,
        };
        if response.access_token.is_empty() {
            return Err(RxonError::protocol(
                "the token service answered an empty access_token",
            ));
        }
        self.set(&response.access_token);
        *self.renew_at() = (response.expires_in > 0).then(|| {
            let lifetime = Duration::from_secs(response.expires_in.min(MAX_TOKEN_LIFETIME_SECS));
            (self.clock)() + lifetime - renew_margin(lifetime)
        });
        Ok(response)
    }
}

/// How long after a failed early renewal the next one is tried.
pub const RENEW_RETRY: Duration = Duration::from_secs(10);

/// The longest token lifetime believed (a year): a peer's `expires_in` is clamped.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// How long before its expiry a token is renewed: a fifth of its lifetime, at most a
/// minute (a one-hour token is renewed after 59 minutes).
pub fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 5).min(Duration::from_secs(60))
}

/// The clock the credential reads (`Instant::now`; tests pass their own).
pub type Clock = fn() -> Instant;

/// A std-only async lock: one holder; the others wait, all woken when it is released
/// (also when the holder's future is dropped midway), the first to poll again taking
/// it. Not FIFO. A waiter dropped while waiting leaves its waker queued until the next
/// release, so the queue holds at most the wakers of the callers that arrived during
/// one hold (a refresh, bounded by the transport's request timeout).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    held: bool,
    waiting: Vec<Waker>,
}

struct GateGuard<'a>(&'a Gate);

impl Gate {
    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn lock(&self) -> GateGuard<'_> {
        std::future::poll_fn(|cx| {
            let mut state = self.state();
            if state.held {
                // A waker already queued is not queued again.
                if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            } else {
                state.held = true;
                Poll::Ready(GateGuard(self))
            }
        })
        .await
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.0.state();
            state.held = false;
            std::mem::take(&mut state.waiting)
        };
        for w in waiting {
            w.wake();
        }
    }
}

/// The runtime's timer, as the policy needs it (e.g.
/// `|d| Box::pin(tokio::time::sleep(d))`).
pub type Sleep = fn(Duration) -> BoxFuture<'static, ()>;

/// A transport's lifecycle, credential and options, with the contract's rules applied
/// to every operation sent through it. See the [module](self) documentation.
pub struct Policy {
    lifecycle: Lifecycle,
    credential: Credential,
    options: TransportOptions,
    sleep: Sleep,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("lifecycle", &self.lifecycle)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// The policy of the transport called `name` (used in errors), for `config`'s
    /// token and options; `sleep` is the runtime's timer.
    pub fn new(name: &'static str, config: &TransportConfig, sleep: Sleep) -> Self {
        Policy {
            lifecycle: Lifecycle::new(name),
            credential: Credential::new(&config.token),
            options: config.options.clone(),
            sleep,
        }
    }

    /// [`new`](Self::new) whose credential reads `clock` (tests of renewal).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        let token = self.credential.current();
        self.credential = Credential::with_clock(token.as_str(), clock);
        self
    }

    /// The transport options.
    pub fn options(&self) -> &TransportOptions {
        &self.options
    }

    /// The credential.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The token to send now.
    pub fn token(&self) -> Token {
        self.credential.current()
    }

    /// [`Transport::connect`](crate::Transport::connect)'s state change.
    pub fn connect(&self) -> Result<()> {
        self.lifecycle.connect()
    }

    /// [`Transport::close`](crate::Transport::close)'s state change.
    pub fn close(&self) {
        self.lifecycle.close();
    }

    /// `true` once closed.
    pub fn is_closed(&self) -> bool {
        self.lifecycle.is_closed()
    }

    /// `Ok` when connected; otherwise the contract's `Closed` error.
    pub fn ready(&self) -> Result<()> {
        self.lifecycle.ready()
    }

    /// Waits `duration` on the runtime's timer.
    pub fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        (self.sleep)(duration)
    }

    /// One operation: checks the lifecycle, runs `op` with the current token and, when
    /// it fails with a [refused credential](RxonError::is_credential_refused),
    /// refreshes once through `exchange` and runs `op` once more.
    pub async fn call<T, F, Fut>(&self, exchange: &dyn TokenExchange, op: F) -> Result<T>
    where
        F: Fn(Token) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.ready()?;
        // A token near its expiry is renewed first; if that fails, the call goes out
        // with the current one and a refusal takes the usual path.
        let _ = self.credential.renew_if_due(exchange).await;
        let token = self.token();
        match op(token.clone()).await {
            Err(e) if e.is_credential_refused() => {
                self.credential.refresh_after(&token, exchange).await?;
                op(self.token()).await.map_err(|e| {
                    if e.is_credential_refused() {
                        RxonError::auth(format!(
                            "{}: refused again after a token refresh",
                            e.message()
                        ))
                        .with_details(e.details().clone())
                    } else {
                        e
                    }
                })
            }
            other => other,
        }
    }

    /// [`Transport::send_result`](crate::Transport::send_result): [`call`](Self::call),
    /// retried on network failures ([`retry_network`](crate::retry::retry_network));
    /// no answer body means accepted.
    pub async fn send_result<F, Fut>(
        &self,
        exchange: &dyn TokenExchange,
        op: F,
    ) -> Result<ResultOutcome>
    where
        F: Fn(Token) -> Fut,
        Fut: Future<Output = Result<Option<ResultOutcome>>>,
    {
        let op = &op;
        crate::retry::retry_network(&self.options, |_| self.call(exchange, op), self.sleep)
            .await
            .map(|outcome| outcome.unwrap_or(ResultOutcome::Accepted))
    }

    /// [`Transport::refresh_token`](crate::Transport::refresh_token): an exchange now,
    /// after any refresh in progress.
    pub async fn refresh_token(&self, exchange: &dyn TokenExchange) -> Result<TokenResponse> {
        self.ready()?;
        self.credential.refresh_now(exchange).await
    }

    /// After a long-lived channel (a command stream, a socket) was refused with
    /// `refused`: refreshes once, unless someone already did.
    pub async fn refresh_after(&self, refused: &Token, exchange: &dyn TokenExchange) -> Result<()> {
        self.credential.refresh_after(refused, exchange).await
    }

    /// [`Transport::next_command`](crate::Transport::next_command): `Ok(None)` once
    /// closed, `Closed` before connect, otherwise `op`.
    pub async fn next_command<F, Fut>(&self, op: F) -> Result<Option<WorkerCommand>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<WorkerCommand>>>,
    {
        if self.is_closed() {
            return Ok(None);
        }
        self.ready()?;
        op().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::Context;

    struct Counting {
        exchanges: AtomicU32,
        fail: bool,
    }

    impl TokenExchange for Counting {
        fn exchange_token<'a>(&'a self, token: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
            let n = self.exchanges.fetch_add(1, Ordering::Relaxed) + 1;
            let fail = self.fail;
            let old = token.as_str().to_owned();
            Box::pin(async move {
                if fail {
                    return Err(RxonError::network("sts down"));
                }
                Ok(TokenResponse {
                    access_token: format!("{old}+{n}"),
                    ..Default::default()
                })
            })
        }
    }

    use crate::retry::tests::ready;

    fn policy() -> Policy {
        let p = Policy::new("t", &TransportConfig::new("t://x", "w", "tok"), |_| {
            Box::pin(async {})
        });
        p.connect().expect("connect");
        p
    }

    static NOW_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    fn test_clock() -> Instant {
        *BASE.get_or_init(Instant::now) + Duration::from_millis(NOW_MS.load(Ordering::SeqCst))
    }

    struct Expiring(AtomicU32);
    impl TokenExchange for Expiring {
        fn exchange_token<'a>(&'a self, _: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                Ok(TokenResponse {
                    access_token: format!("sts-{n}"),
                    expires_in: 100,
                    ..Default::default()
                })
            })
        }
    }

    #[test]
    fn issued_tokens_are_renewed_before_they_expire_once() {
        let p = policy().with_clock(test_clock);
        let ex = Expiring(AtomicU32::new(0));
        let seen = |p: &Policy| {
            ready(p.call(
                &ex,
                |t| async move { Ok::<_, RxonError>(t.as_str().to_owned()) },
            ))
        };
        // The configured token has no known lifetime: never renewed early.
        assert_eq!(seen(&p).unwrap(), "tok");
        assert_eq!(ready(p.refresh_token(&ex)).unwrap().access_token, "sts-1");
        // 100 s lifetime: renewed 20 s before expiry (a fifth, under the minute cap).
        NOW_MS.fetch_add(79_000, Ordering::SeqCst);
        assert_eq!(seen(&p).unwrap(), "sts-1");
        NOW_MS.fetch_add(1_000, Ordering::SeqCst);
        assert_eq!(seen(&p).unwrap(), "sts-2", "renewed at 80 s");
        assert_eq!(seen(&p).unwrap(), "sts-2", "once per token");
        assert_eq!(ex.0.load(Ordering::SeqCst), 2);
        // A failed renewal is tried again RENEW_RETRY later, not never.
        NOW_MS.fetch_add(80_000, Ordering::SeqCst);
        let failing = Counting {
            exchanges: AtomicU32::new(0),
            fail: true,
        };
        let seen_with = |ex: &dyn TokenExchange| {
            ready(p.call(
                ex,
                |t| async move { Ok::<_, RxonError>(t.as_str().to_owned()) },
            ))
        };
        assert_eq!(
            seen_with(&failing).unwrap(),
            "sts-2",
            "the call still goes out"
        );
        assert_eq!(seen_with(&failing).unwrap(), "sts-2");
        assert_eq!(
            failing.exchanges.load(Ordering::SeqCst),
            1,
            "not again at once"
        );
        NOW_MS.fetch_add(RENEW_RETRY.as_millis() as u64, Ordering::SeqCst);
        assert_eq!(seen(&p).unwrap(), "sts-3", "renewed on the retry");
        assert_eq!(
            renew_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_second_refusal_is_a_plain_auth_error_and_one_refresh_ran() {
        let p = policy();
        let ex = Counting {
            exchanges: AtomicU32::new(0),
            fail: false,
        };
        let calls = AtomicU32::new(0);
        let out: Result<()> = ready(p.call(&ex, |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(RxonError::for_status(401, "op", "no", None)) }
        }));
        let e = out.unwrap_err();
        assert!(e.is_auth() && !e.is_credential_refused(), "{e:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(ex.exchanges.load(Ordering::Relaxed), 1);
        assert_eq!(p.token().as_str(), "tok+1");
        assert_eq!(p.token().generation(), 1);
    }

    #[test]
    fn forbidden_is_not_refreshed_and_a_failed_refresh_is_auth() {
        let p = policy();
        let ex = Counting {
            exchanges: AtomicU32::new(0),
            fail: true,
        };
        let out: Result<()> = ready(p.call(&ex, |_| async {
            Err(RxonError::for_status(403, "op", "", None))
        }));
        assert!(out.unwrap_err().is_auth());
        assert_eq!(ex.exchanges.load(Ordering::Relaxed), 0);
        let out: Result<()> =
            ready(p.call(&ex, |_| async { Err(RxonError::credential_refused("401")) }));
        let e = out.unwrap_err();
        assert!(e.is_auth(), "{e:?}");
        assert!(e.message().contains("refreshing it failed"), "{e}");
    }

    /// An exchange that waits until `release` is set, then fails; counts its calls.
    struct Stuck {
        release: Arc<std::sync::atomic::AtomicBool>,
        calls: AtomicU32,
    }

    impl TokenExchange for Stuck {
        fn exchange_token<'a>(&'a self, _: &'a Token) -> BoxFuture<'a, Result<TokenResponse>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let release = self.release.clone();
            Box::pin(std::future::poll_fn(move |_| {
                if release.load(Ordering::Relaxed) {
                    Poll::Ready(Err(RxonError::network("token service down")))
                } else {
                    Poll::Pending
                }
            }))
        }
    }

    #[test]
    fn callers_queued_behind_a_failed_refresh_share_its_failure() {
        let p = policy();
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ex = Stuck {
            release: release.clone(),
            calls: AtomicU32::new(0),
        };
        let refused = p.token();
        let mut cx = Context::from_waker(Waker::noop());
        let mut first = Box::pin(p.refresh_after(&refused, &ex));
        let mut second = Box::pin(p.refresh_after(&refused, &ex));
        assert!(first.as_mut().poll(&mut cx).is_pending(), "exchanging");
        assert!(
            second.as_mut().poll(&mut cx).is_pending(),
            "queued behind it"
        );
        release.store(true, Ordering::Relaxed);
        let Poll::Ready(first) = first.as_mut().poll(&mut cx) else {
            panic!("done")
        };
        let Poll::Ready(second) = second.as_mut().poll(&mut cx) else {
            panic!("done")
        };
        assert!(first.unwrap_err().message().contains("token service down"));
        let second = second.unwrap_err();
        assert!(
            second.is_auth() && !second.is_credential_refused(),
            "{second:?}"
        );
        assert!(second.message().contains("token service down"), "{second}");
        assert_eq!(ex.calls.load(Ordering::Relaxed), 1, "one exchange for both");
        assert_eq!(p.token(), refused, "the token is kept");
        // A later refusal tries again.
        let _ = ready(p.refresh_after(&refused, &ex));
        assert_eq!(ex.calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_refusal_of_an_old_token_does_not_refresh_again() {
        let p = policy();
        let ex = Counting {
            exchanges: AtomicU32::new(0),
            fail: false,
        };
        let stale = p.token();
        ready(p.refresh_after(&stale, &ex)).expect("first refresh");
        // A second caller that sent the same (now replaced) token: no second exchange.
        ready(p.refresh_after(&stale, &ex)).expect("shared refresh");
        assert_eq!(ex.exchanges.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn lifecycle_and_results() {
        let p = Policy::new("t", &TransportConfig::new("t://x", "w", "tok"), |_| {
            Box::pin(async {})
        });
        let ex = Counting {
            exchanges: AtomicU32::new(0),
            fail: false,
        };
        let e = ready(p.call(&ex, |_| async { Ok(()) })).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "before connect");
        p.connect().expect("connect");
        let calls = AtomicU32::new(0);
        let out = ready(p.send_result(&ex, |_| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err(RxonError::network("blink"))
                } else {
                    Ok(None)
                }
            }
        }));
        assert_eq!(out.expect("accepted"), ResultOutcome::Accepted);
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "retried once after the blink"
        );
        p.close();
        assert_eq!(
            ready(p.next_command(|| async { Err(RxonError::network("x")) })).expect("none"),
            None
        );
        assert_eq!(
            ready(p.refresh_token(&ex)).unwrap_err().kind(),
            ErrorKind::Closed
        );
    }

    #[test]
    fn waiters_wake_when_the_holder_is_dropped() {
        use std::sync::atomic::AtomicBool;
        use std::task::Wake;
        struct Flag(AtomicBool);
        impl Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let gate = Gate::default();
        let mut first = Box::pin(gate.lock());
        let noop = Context::from_waker(Waker::noop());
        let mut cx = noop;
        let Poll::Ready(guard) = first.as_mut().poll(&mut cx) else {
            panic!("free gate")
        };
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut second = Box::pin(gate.lock());
        assert!(
            second
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert!(
            second
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        assert_eq!(gate.state().waiting.len(), 1, "one waiter queued once");
        drop(guard);
        assert!(flag.0.load(Ordering::Relaxed), "woken on release");
        assert!(
            second
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        );
    }
}
