//! The result retry policy every transport applies, independent of any runtime.

use crate::config::TransportOptions;
use crate::error::{ErrorKind, Result};
use std::future::Future;
use std::time::Duration;

/// Longest pause between two attempts, whatever the configured base delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The shortest wait a peer's retry-after hint can impose: the floor of the backoff (the
/// worker runtime's first pause). A peer answering "retry after 0" cannot make a worker
/// spin.
pub const MIN_RETRY_AFTER: Duration = Duration::from_millis(200);

/// The longest wait a peer's retry-after hint can impose (one hour). A peer answering
/// "retry after a year" cannot park a worker for ever.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A peer's retry-after hint, clamped between [`MIN_RETRY_AFTER`] and
/// [`MAX_RETRY_AFTER`]. [`RxonError`](crate::RxonError) applies it to every hint it
/// carries ([`RxonError::rate_limited`](crate::RxonError::rate_limited),
/// [`RxonError::with_retry_after`](crate::RxonError::with_retry_after)), so every
/// transport and the worker runtime see clamped values by construction.
///
/// ```
/// use rxon_core::retry::{MAX_RETRY_AFTER, MIN_RETRY_AFTER, clamp_retry_after};
/// use std::time::Duration;
/// assert_eq!(clamp_retry_after(Duration::ZERO), MIN_RETRY_AFTER);
/// assert_eq!(clamp_retry_after(Duration::from_secs(5)), Duration::from_secs(5));
/// assert_eq!(clamp_retry_after(Duration::MAX), MAX_RETRY_AFTER);
/// ```
pub fn clamp_retry_after(hint: Duration) -> Duration {
    hint.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// The pause after failed attempt `attempt` (0-based): `base × 2^attempt`, capped at
/// [`MAX_RETRY_DELAY`].
///
/// ```
/// use rxon_core::retry::backoff;
/// use std::time::Duration;
/// let base = Duration::from_millis(100);
/// assert_eq!(backoff(base, 0), Duration::from_millis(100));
/// assert_eq!(backoff(base, 3), Duration::from_millis(800));
/// assert_eq!(backoff(base, 40), Duration::from_secs(30));
/// ```
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << attempt.min(20))
        .min(MAX_RETRY_DELAY)
}

/// Runs `attempt` up to `options.result_retries` times, pausing with `sleep` for
/// [`backoff`] between tries, as long as it fails with a network error
/// ([`ErrorKind::Network`] or [`ErrorKind::Timeout`]); any other outcome is returned at
/// once. The reference's rule for sending results.
///
/// `sleep` is the runtime's timer (e.g. `tokio::time::sleep`), so this crate needs none.
pub async fn retry_network<T, A, AF, S, SF>(
    options: &TransportOptions,
    mut attempt: A,
    mut sleep: S,
) -> Result<T>
where
    A: FnMut(u32) -> AF,
    AF: Future<Output = Result<T>>,
    S: FnMut(Duration) -> SF,
    SF: Future<Output = ()>,
{
    let attempts = options.result_retries.max(1);
    let mut n = 0;
    loop {
        match attempt(n).await {
            Err(e)
                if matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout)
                    && n + 1 < attempts =>
            {
                sleep(backoff(options.result_retry_delay, n)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RxonError;
    use std::cell::RefCell;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready<F: Future>(f: F) -> F::Output {
        match pin!(f)
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("expected to complete at once"),
        }
    }

    #[test]
    fn retries_network_errors_with_doubling_pauses_then_gives_up() {
        let options = TransportOptions::default();
        let pauses = RefCell::new(Vec::new());
        let calls = RefCell::new(0u32);
        let out: Result<()> = ready(retry_network(
            &options,
            |_| {
                *calls.borrow_mut() += 1;
                async { Err(RxonError::network("down")) }
            },
            |d| {
                pauses.borrow_mut().push(d);
                async {}
            },
        ));
        assert_eq!(out.unwrap_err().kind(), ErrorKind::Network);
        assert_eq!(*calls.borrow(), 3);
        assert_eq!(
            *pauses.borrow(),
            [Duration::from_millis(100), Duration::from_millis(200)]
        );
    }

    #[test]
    fn other_errors_and_successes_return_at_once() {
        let options = TransportOptions::default();
        let calls = RefCell::new(0u32);
        let out: Result<()> = ready(retry_network(
            &options,
            |_| {
                *calls.borrow_mut() += 1;
                async { Err(RxonError::auth("no")) }
            },
            |_| async {},
        ));
        assert!(out.unwrap_err().is_auth());
        assert_eq!(*calls.borrow(), 1);
        let out = ready(retry_network(
            &options,
            |n| async move {
                if n == 0 {
                    Err(RxonError::timeout("slow"))
                } else {
                    Ok(n)
                }
            },
            |_| async {},
        ));
        assert_eq!(out.unwrap(), 1, "succeeds on the second attempt");
    }
}
