//! Credentials and rate limiting of the [`Orchestrator`](super::Orchestrator).

use super::Config;
use super::state::State;
use rxon_core::validate::constant_time_eq;
use rxon_core::{HandlerError, HandlerResult, TokenResponse};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
use tokio::time::Instant;

/// A token minted by the STS operation. `Debug` never shows the root credential.
#[derive(Clone)]
pub(crate) struct IssuedToken {
    /// The worker it was issued to; `None` when the request named none (the reference's
    /// HTTP STS request carries only the credential), so the token proves no worker.
    pub(super) worker_id: Option<String>,
    /// When it stops being accepted; `None` when the lifetime overflows the clock.
    pub(super) expires_at: Option<Instant>,
    /// The static credential it descends from (the token or bootstrap credential that
    /// bought it, through any refreshes): the key of the worker's 1.0b17 envelopes,
    /// which the reference signs with the static token even when it sends an issued one.
    pub(super) root: Option<String>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("worker_id", &self.worker_id)
            .field("expires_at", &self.expires_at)
            .field("root", &self.root.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl IssuedToken {
    pub(super) fn valid_at(&self, now: Instant) -> bool {
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
    /// A configured shared static token, or any non-empty token when no credential of
    /// any kind is configured (open auth): it proves no particular worker.
    Static,
    /// A static token configured for one worker.
    Worker {
        /// The worker the token belongs to.
        worker_id: String,
    },
    /// A bootstrap credential (STS operation only).
    Bootstrap,
    /// A still-valid token minted by the STS operation.
    Issued {
        /// The worker the token was issued to, when the request named one.
        worker_id: Option<String>,
    },
}

impl Credential {
    /// The worker this credential proves, if it names one.
    pub(super) fn worker(&self) -> Option<&str> {
        match self {
            Credential::Worker { worker_id }
            | Credential::Issued {
                worker_id: Some(worker_id),
            } => Some(worker_id),
            Credential::Issued { worker_id: None } | Credential::Static | Credential::Bootstrap => {
                None
            }
        }
    }
}

/// Whether `token` equals any of `secrets`, looking at every one of them in constant
/// time (no early exit), so the answer's timing does not tell how close a guess was.
fn matches_any<'a>(secrets: impl IntoIterator<Item = &'a String>, token: &str) -> bool {
    secrets.into_iter().fold(false, |hit, s| {
        hit | constant_time_eq(s.as_bytes(), token.as_bytes())
    })
}

/// Checks `token`; `for_sts` is true only for the STS operation, the one place a
/// bootstrap credential is accepted.
///
/// Configured secrets are compared in constant time. Issued tokens are looked up in a
/// map with a randomly keyed hash: the lookup's timing depends on that random hash, not
/// on how many leading characters of a guess are right.
pub(super) fn authenticate(
    cfg: &Config,
    st: &State,
    token: Option<&str>,
    for_sts: bool,
    now: Instant,
) -> HandlerResult<Credential> {
    let issued = token.and_then(|t| st.tokens.get(t));
    authenticate_with(cfg, issued, token, for_sts, now)
}

/// [`authenticate`] with the issued token of that name, if any, already looked up.
pub(super) fn authenticate_with(
    cfg: &Config,
    issued: Option<&IssuedToken>,
    token: Option<&str>,
    for_sts: bool,
    now: Instant,
) -> HandlerResult<Credential> {
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Err(HandlerError::unauthorized("missing worker token")),
    };
    if matches_any(&cfg.sts_credentials, token) {
        return if for_sts {
            Ok(Credential::Bootstrap)
        } else {
            Err(HandlerError::unauthorized(
                "a bootstrap credential is accepted only by the token operation",
            ))
        };
    }
    let mut owner = None;
    for (secret, worker_id) in &cfg.worker_tokens {
        if constant_time_eq(secret.as_bytes(), token.as_bytes()) {
            owner = Some(worker_id);
        }
    }
    if let Some(worker_id) = owner {
        return Ok(Credential::Worker {
            worker_id: worker_id.clone(),
        });
    }
    if let Some(issued) = issued {
        return if issued.valid_at(now) {
            Ok(Credential::Issued {
                worker_id: issued.worker_id.clone(),
            })
        } else {
            Err(HandlerError::unauthorized("worker token has expired"))
        };
    }
    if matches_any(&cfg.tokens, token) || cfg.is_open() {
        return Ok(Credential::Static);
    }
    Err(HandlerError::unauthorized("invalid worker token"))
}

/// Refuses a request that names a worker other than the one its credential or its
/// verified client certificate proves (when the orchestrator binds certificates).
pub(super) fn check_identity(
    cfg: &Config,
    cred: &Credential,
    cert_identity: Option<&str>,
    claimed: &str,
) -> HandlerResult<()> {
    let shown = |id: &str| id.chars().take(64).collect::<String>();
    if let Some(proven) = cred.worker()
        && proven != claimed
    {
        return Err(HandlerError::forbidden(format!(
            "this token belongs to worker {:?}; it cannot act as {:?}",
            shown(proven),
            shown(claimed)
        )));
    }
    if cfg.bind_cert_identity {
        match cert_identity {
            Some(cn) if cn == claimed => {}
            Some(cn) => {
                return Err(HandlerError::forbidden(format!(
                    "the client certificate is for {:?}; it cannot act as {:?}",
                    shown(cn),
                    shown(claimed)
                )));
            }
            None => {
                return Err(HandlerError::forbidden(
                    "a client certificate naming the worker is required",
                ));
            }
        }
    }
    Ok(())
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

/// Mints a token for `worker_id` (`None`: a worker the request did not name), valid for
/// the configured lifetime; with `refresh`, also a refresh token for it (1.0b17), or
/// the given one again (a refresh keeps its refresh token, as the reference does).
pub(super) fn mint(
    cfg: &Config,
    st: &mut State,
    worker_id: Option<String>,
    root: Option<String>,
    refresh: Refresh,
    now: Instant,
) -> TokenResponse {
    let access_token = issue(
        &mut st.tokens,
        &mut st.next_token,
        "sts",
        cfg,
        IssuedToken {
            worker_id: worker_id.clone(),
            expires_at: now.checked_add(cfg.token_ttl),
            root: root.clone(),
        },
        now,
    );
    let refresh_token = match refresh {
        Refresh::None => None,
        Refresh::Keep(token) => Some(token),
        Refresh::New => Some(issue(
            &mut st.refresh_tokens,
            &mut st.next_token,
            "rt",
            cfg,
            IssuedToken {
                worker_id: worker_id.clone(),
                expires_at: now.checked_add(cfg.refresh_token_ttl),
                root,
            },
            now,
        )),
    };
    token_response(cfg, access_token, refresh_token, worker_id)
}

/// The answer of the token operations.
pub(super) fn token_response(
    cfg: &Config,
    access_token: String,
    refresh_token: Option<String>,
    worker_id: Option<String>,
) -> TokenResponse {
    TokenResponse {
        access_token,
        expires_in: whole_seconds_up(cfg.token_ttl),
        worker_id: worker_id.unwrap_or_else(|| "unknown".to_owned()),
        refresh_token,
        metadata: None,
    }
}

/// Which refresh token an answer carries.
pub(crate) enum Refresh {
    /// None (a 1.0b3 worker).
    None,
    /// A new one.
    New,
    /// This one again.
    Keep(String),
}

/// Stores `token` under a fresh name in `tokens`, bounded by the configured cap: when
/// full, expired ones go first, then the one that expires first.
fn issue(
    tokens: &mut std::collections::HashMap<String, IssuedToken>,
    counter: &mut u64,
    prefix: &str,
    cfg: &Config,
    token: IssuedToken,
    now: Instant,
) -> String {
    let cap = cfg.max_issued_tokens.max(1);
    if tokens.len() >= cap {
        tokens.retain(|_, t| t.valid_at(now));
        while tokens.len() >= cap {
            let victim = tokens
                .iter()
                .min_by_key(|(_, t)| (t.expires_at.is_none(), t.expires_at))
                .map(|(k, _)| k.clone());
            match victim {
                Some(victim) => tokens.remove(&victim),
                None => break,
            };
        }
    }
    *counter += 1;
    let name = format!("{prefix}-{}-{:016x}", *counter, unpredictable(*counter));
    tokens.insert(name.clone(), token);
    name
}

/// The worker `refresh_token` was issued to and its root credential, if it is a live
/// refresh token and the request names no other worker.
pub(super) fn redeem(
    st: &State,
    refresh_token: &str,
    hint: Option<&str>,
    now: Instant,
) -> HandlerResult<(Option<String>, Option<String>)> {
    redeem_with(st.refresh_tokens.get(refresh_token), hint, now)
}

/// [`redeem`] with the refresh token already looked up.
pub(super) fn redeem_with(
    issued: Option<&IssuedToken>,
    hint: Option<&str>,
    now: Instant,
) -> HandlerResult<(Option<String>, Option<String>)> {
    let Some(issued) = issued.filter(|t| t.valid_at(now)) else {
        return Err(HandlerError::forbidden(
            "Unauthorized: Invalid refresh token (not found)",
        ));
    };
    if let (Some(hint), Some(owner)) = (hint, issued.worker_id.as_deref())
        && hint != owner
    {
        return Err(HandlerError::forbidden(
            "Unauthorized: the refresh token belongs to another worker",
        ));
    }
    Ok((issued.worker_id.clone(), issued.root.clone()))
}

/// The static credential behind `token`: itself when it is a configured token or
/// bootstrap credential, the root of an issued token, `None` otherwise.
pub(super) fn root_of(cfg: &Config, st: &State, token: &str, now: Instant) -> Option<String> {
    static_root(cfg, token).or_else(|| {
        st.tokens
            .get(token)
            .filter(|t| t.valid_at(now))
            .and_then(|t| t.root.clone())
    })
}

/// `token` itself when it is a configured static credential (token, worker token or
/// bootstrap credential).
pub(super) fn static_root(cfg: &Config, token: &str) -> Option<String> {
    (matches_any(&cfg.sts_credentials, token)
        || matches_any(&cfg.tokens, token)
        || matches_any(cfg.worker_tokens.iter().map(|(t, _)| t), token))
    .then(|| token.to_owned())
}

/// Every configured static credential (the roots issued tokens descend from).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(super) fn static_credentials(cfg: &Config) -> impl Iterator<Item = &String> {
    cfg.sts_credentials
        .iter()
        .chain(&cfg.tokens)
        .chain(cfg.worker_tokens.iter().map(|(t, _)| t))
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
