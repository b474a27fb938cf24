//! Retries and waits, independent of any runtime: the one [`Backoff`], the result
//! retry rule ([`retry_network`]) and the bounds on a peer's retry-after hint.

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

/// Exponential backoff, the one every part of rxon uses: result retries, the worker
/// runtime's reconnects, a command channel's reconnects.
///
/// The pause starts at `first` and doubles after each [`next`](Self::next) up to `max`,
/// which no pause exceeds. [`jittered`](Self::jittered) spreads each pause by ±25 %
/// (below `max`) so that many workers losing
/// the same orchestrator do not come back in lockstep; [`exact`](Self::exact) does not
/// (the reference's result retries: `base`, `2 × base`, `4 × base`, …).
///
/// ```
/// use rxon_core::retry::Backoff;
/// use std::time::Duration;
/// let mut b = Backoff::exact(Duration::from_millis(100), Duration::from_secs(30));
/// assert_eq!(b.next(), Duration::from_millis(100));
/// assert_eq!(b.next(), Duration::from_millis(200));
/// for _ in 0..40 { b.next(); }
/// assert_eq!(b.next(), Duration::from_secs(30));
/// b.reset();
/// assert_eq!(b.next(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    /// xorshift64 state; 0 means no jitter.
    seed: u64,
}

impl Backoff {
    /// Doubling pauses from `first` to `max`, exactly.
    pub fn exact(first: Duration, max: Duration) -> Self {
        let first = first.min(max);
        Backoff {
            first,
            max,
            next: first,
            seed: 0,
        }
    }

    /// Doubling pauses from `first` to `max`, each spread by ±25 %.
    pub fn jittered(first: Duration, max: Duration) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Backoff {
            seed: (time ^ SEQ.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)) | 1,
            ..Self::exact(first, max)
        }
    }

    /// Back to the first pause (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The next pause.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let mut pause = self.next;
        if self.seed != 0 {
            // xorshift64: plenty for jitter.
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            pause = pause
                .mul_f64(0.75 + (self.seed % 1000) as f64 / 2000.0)
                .min(self.max);
        }
        self.next = self.next.saturating_mul(2).min(self.max);
        pause
    }

    /// The pause after `error`: the peer's retry-after hint when it gave one, else the
    /// next pause, at least [`RATE_LIMITED_FLOOR`] when the peer said "too many" without
    /// saying for how long (avtomatika sends 429 without `Retry-After`).
    ///
    /// ```
    /// use rxon_core::retry::{Backoff, RATE_LIMITED_FLOOR};
    /// use rxon_core::RxonError;
    /// use std::time::Duration;
    /// let mut b = Backoff::exact(Duration::from_millis(200), Duration::from_secs(60));
    /// let silent_429 = RxonError::for_status(429, "x", "Too Many Requests", None);
    /// assert_eq!(b.pause_after(&silent_429), RATE_LIMITED_FLOOR);
    /// let hinted = RxonError::for_status(429, "x", "", Some(Duration::from_secs(3)));
    /// assert_eq!(b.pause_after(&hinted), Duration::from_secs(3));
    /// assert_eq!(b.pause_after(&RxonError::network("down")), Duration::from_millis(400));
    /// ```
    pub fn pause_after(&mut self, error: &crate::RxonError) -> Duration {
        match error.retry_after() {
            Some(hint) => hint,
            None if error.kind() == crate::ErrorKind::RateLimited => {
                self.next().max(RATE_LIMITED_FLOOR)
            }
            None => self.next(),
        }
    }
}

/// The shortest pause after a rate-limit refusal that named no delay.
pub const RATE_LIMITED_FLOOR: Duration = Duration::from_secs(1);

/// Parses an HTTP `Retry-After` value: delta-seconds or an HTTP date in any of the
/// three forms RFC 9110 §5.6.7 asks recipients to accept (IMF-fixdate, RFC 850,
/// asctime); `None` for anything else. A date in the past is a zero wait. The value is
/// the peer's: [`RxonError::with_retry_after`](crate::RxonError::with_retry_after)
/// clamps it.
///
/// ```
/// use rxon_core::retry::parse_retry_after;
/// use std::time::{Duration, SystemTime};
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_717); // 08:48:37
/// assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
/// let date = "Sun, 06 Nov 1994 08:49:37 GMT";
/// assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = std::time::UNIX_EPOCH + Duration::from_secs(parse_http_date(v)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the Unix epoch of an HTTP date (the three forms of RFC 9110 §5.6.7).
fn parse_http_date(v: &str) -> Option<u64> {
    let t: Vec<&str> = v.split_ascii_whitespace().collect();
    // (day, month, year, time)
    let (day, month, year, time) = match t.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, m, y, time, "GMT"] if wd.ends_with(',') => (*d, *m, y.parse::<u64>().ok()?, *time),
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, time, "GMT"] if wd.ends_with(',') => {
            let mut parts = dmy.split('-');
            let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || y.len() != 2 {
                return None;
            }
            // Two-digit years: RFC 9110 says a year more than 50 years ahead is in the
            // past century.
            let yy = y.parse::<u64>().ok()?;
            (d, m, if yy < 70 { 2000 + yy } else { 1900 + yy }, *time)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_, m, d, time, y] => (*d, *m, y.parse::<u64>().ok()?, *time),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let day: u64 = day.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some()
        || !(1970..=9999).contains(&year)
        || day == 0
        || day > 31
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years ≥ 1970.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// Runs `attempt` up to `options.result_retries` times, pausing with `sleep` for an
/// [exact](Backoff::exact) [`Backoff`] from `options.result_retry_delay` to
/// [`MAX_RETRY_DELAY`] between tries, as long as it fails with a network error
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
    let mut pauses = Backoff::exact(options.result_retry_delay, MAX_RETRY_DELAY);
    let mut n = 0;
    loop {
        match attempt(n).await {
            Err(e)
                if matches!(e.kind(), ErrorKind::Network | ErrorKind::Timeout)
                    && n + 1 < attempts =>
            {
                sleep(pauses.next()).await;
                n += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::RxonError;
    use std::cell::RefCell;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Runs a future that must complete without waiting (the tests' runtime).
    pub(crate) fn ready<F: Future>(f: F) -> F::Output {
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
    fn http_dates_agree_with_httpdate_in_all_three_forms() {
        let base = std::time::UNIX_EPOCH;
        // Bounded: 2,000 instants spread over 1970..2100.
        for i in 0..2000u64 {
            let secs = i.wrapping_mul(2_069_993_731) % 4_102_444_800;
            let t = base + Duration::from_secs(secs);
            let imf = httpdate::fmt_http_date(t);
            assert_eq!(parse_http_date(&imf), Some(secs), "{imf}");
            // httpdate parses all three forms; ours must read its IMF output and the
            // asctime / RFC 850 forms of the same instant as httpdate does.
            let parts: Vec<&str> = imf.split_ascii_whitespace().collect();
            let (wd, d, m, y, time) = (
                parts[0].trim_end_matches(','),
                parts[1],
                parts[2],
                parts[3],
                parts[4],
            );
            let asc = format!("{wd} {m} {:>2} {time} {y}", d.trim_start_matches('0'));
            assert_eq!(httpdate::parse_http_date(&asc).ok(), Some(t), "{asc}");
            assert_eq!(parse_http_date(&asc), Some(secs), "{asc}");
            let year: u64 = y.parse().expect("year");
            if (1970..2070).contains(&year) {
                let long = [
                    "Monday",
                    "Tuesday",
                    "Wednesday",
                    "Thursday",
                    "Friday",
                    "Saturday",
                    "Sunday",
                ]
                .iter()
                .find(|l| l.starts_with(wd))
                .expect("weekday");
                let rfc850 = format!("{long}, {d}-{m}-{:02} {time} GMT", year % 100);
                assert_eq!(httpdate::parse_http_date(&rfc850).ok(), Some(t), "{rfc850}");
                assert_eq!(parse_http_date(&rfc850), Some(secs), "{rfc850}");
            }
        }
        for bad in [
            "",
            "GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
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
