//! Credentials and rate limiting of the [`Orchestrator`](super::Orchestrator).

use super::Config;
use super::state::State;
use rxon_core::{HandlerError, HandlerResult, TokenResponse};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::Instant;

/// A token minted by the STS operation.
#[derive(Debug, Clone)]
pub(super) struct IssuedToken {
    /// The worker it was issued to.
    pub(super) worker_id: String,
    /// When it stops being accepted; `None` when the lifetime overflows the clock.
    pub(super) expires_at: Option<Instant>,
}

impl IssuedToken {
    fn valid_at(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// A fixed rate-limit window of one worker.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    start: Instant,
    count: u32,
}

/// What a request's credential turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Credential {
    /// A configured static token, or any non-empty token when none is configured.
    Static,
    /// A bootstrap credential (STS operation only).
    Bootstrap,
    /// A still-valid token minted by the STS operation.
    Issued {
        /// The worker the token was issued to.
        worker_id: String,
    },
}

/// Checks `token`; `for_sts` is true only for the STS operation, the one place a
/// bootstrap credential is accepted.
pub(super) fn authenticate(
    cfg: &Config,
    st: &State,
    token: Option<&str>,
    for_sts: bool,
    now: Instant,
) -> HandlerResult<Credential> {
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Err(HandlerError::unauthorized("missing worker token")),
    };
    if cfg.sts_credentials.contains(token) {
        return if for_sts {
            Ok(Credential::Bootstrap)
        } else {
            Err(HandlerError::unauthorized(
                "a bootstrap credential is accepted only by the token operation",
            ))
        };
    }
    if let Some(issued) = st.tokens.get(token) {
        return if issued.valid_at(now) {
            Ok(Credential::Issued {
                worker_id: issued.worker_id.clone(),
            })
        } else {
            Err(HandlerError::unauthorized("worker token has expired"))
        };
    }
    if cfg.tokens.is_empty() || cfg.tokens.contains(token) {
        return Ok(Credential::Static);
    }
    Err(HandlerError::unauthorized("invalid worker token"))
}

/// Counts one request of `key` against the configured limit.
pub(super) fn rate_limit(
    cfg: &Config,
    st: &mut State,
    key: &str,
    now: Instant,
) -> HandlerResult<()> {
    let Some((max, per)) = cfg.rate_limit else {
        return Ok(());
    };
    if !st.limiter.contains_key(key) && st.limiter.len() >= cfg.max_workers.max(1) {
        // Bounded: forget finished windows first, then any one window.
        st.limiter
            .retain(|_, w| now.saturating_duration_since(w.start) < per);
        if st.limiter.len() >= cfg.max_workers.max(1) {
            let victim = st.limiter.keys().next().cloned();
            if let Some(victim) = victim {
                st.limiter.remove(&victim);
            }
        }
    }
    let window = st.limiter.entry(key.to_owned()).or_insert(Window {
        start: now,
        count: 0,
    });
    if now.saturating_duration_since(window.start) >= per {
        *window = Window {
            start: now,
            count: 0,
        };
    }
    if window.count >= max {
        let retry_after = per.saturating_sub(now.saturating_duration_since(window.start));
        return Err(HandlerError::rate_limited(
            format!("too many requests: at most {max} per {per:?}"),
            Some(retry_after),
        ));
    }
    window.count += 1;
    Ok(())
}

/// Mints a token for `worker_id`, valid for the configured lifetime.
pub(super) fn mint(cfg: &Config, st: &mut State, worker_id: String, now: Instant) -> TokenResponse {
    let cap = cfg.max_issued_tokens.max(1);
    if st.tokens.len() >= cap {
        st.tokens.retain(|_, t| t.valid_at(now));
        while st.tokens.len() >= cap {
            // Still full of valid tokens: drop the one that expires first.
            let victim = st
                .tokens
                .iter()
                .min_by_key(|(_, t)| (t.expires_at.is_none(), t.expires_at))
                .map(|(k, _)| k.clone());
            match victim {
                Some(victim) => st.tokens.remove(&victim),
                None => break,
            };
        }
    }
    st.next_token += 1;
    let access_token = format!(
        "sts-{}-{:016x}",
        st.next_token,
        unpredictable(st.next_token)
    );
    st.tokens.insert(
        access_token.clone(),
        IssuedToken {
            worker_id: worker_id.clone(),
            expires_at: now.checked_add(cfg.token_ttl),
        },
    );
    TokenResponse {
        access_token,
        expires_in: whole_seconds_up(cfg.token_ttl),
        worker_id,
    }
}

/// A value that is hard to guess from earlier tokens (randomly keyed hash; not
/// cryptographic, which a test orchestrator does not need).
fn unpredictable(n: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish()
}

fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}
