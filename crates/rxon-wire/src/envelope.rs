//! The signed envelope of RXON 1.0b17: `timestamp` + `security {signature, signer_id}`
//! on registrations, heartbeats with a body, results and events, and the orchestrator's
//! `sig` on tasks.
//!
//! The signature is the lowercase hex HMAC-SHA256, keyed by the secret's UTF-8 bytes,
//! of the [canonical] JSON of the message **as sent** without its
//! top-level `security` and `_signature` (and, for events, `bubbling_chain`). The
//! verifier rebuilds it from the JSON it received, unknown keys included, so
//! [`seal`] signs exactly the object that goes on the wire.
//!
//! ```
//! use serde_json::json;
//! // The test vector of the wire facts, checked against rxon 1.0b17.
//! let heartbeat = json!({"worker_id": "w-1", "status": "idle", "current_tasks": [],
//!     "timestamp": 1700000000, "usage": {"cpu_load_percent": 12.0, "ram_used_gb": 0.5},
//!     "hot_skills": null, "metadata": {"z": 1, "a": [null, 2.0, "é"]},
//!     "security": {"signature": "x"}});
//! assert_eq!(
//!     rxon_wire::envelope::signature(&heartbeat, "secret", &[])?,
//!     "9c38b44b48c0ce5aa7fe5c33de4cb670cc2ef0caeb83f21ecbdd1756dbda0671"
//! );
//! # Ok::<(), rxon_wire::WireError>(())
//! ```

use crate::WireError;
use crate::canonical;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use rxon_core::constants::{REPLAY_WINDOW_SECS, SIGNATURE_CLOCK_WINDOW_SECS};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Top-level keys never signed.
const UNSIGNED: [&str; 2] = ["security", "_signature"];
/// Keys an event leaves out of its signature.
pub const EVENT_UNSIGNED: &[&str] = &["bubbling_chain"];
/// Keys a task leaves out of its `sig`.
pub const TASK_UNSIGNED: &[&str] = &["sig", "orchestrator_signature"];

/// Keys each thread keeps derived ([`hmac_key`]).
const KEY_CACHE: usize = 8;

/// The HMAC-SHA256 key of `secret`. Deriving one hashes the padded secret twice, as
/// much as the HMAC of a short message itself, and a process signs and verifies with
/// few secrets: each thread keeps the [`KEY_CACHE`] it used last. The cache holds what
/// the caller already holds (the secrets it passes in), for the thread's lifetime.
fn hmac_key(secret: &str) -> hmac::Key {
    thread_local! {
        static KEYS: std::cell::RefCell<Vec<(Box<str>, hmac::Key)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let derive = || hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    KEYS.try_with(|keys| {
        let Ok(mut keys) = keys.try_borrow_mut() else {
            return derive();
        };
        if let Some(i) = keys.iter().position(|(s, _)| **s == *secret) {
            // The most recently used last: the first is the one evicted.
            let entry = keys.remove(i);
            let key = entry.1.clone();
            keys.push(entry);
            return key;
        }
        let key = derive();
        if keys.len() >= KEY_CACHE {
            keys.remove(0);
        }
        keys.push((secret.into(), key.clone()));
        key
    })
    .unwrap_or_else(|_| derive())
}

/// The signature of `message` under `secret`: HMAC-SHA256 over its canonical JSON
/// without `security`, `_signature` and `ignore`.
pub fn signature(message: &Value, secret: &str, ignore: &[&str]) -> Result<String, WireError> {
    if secret.is_empty() {
        return Err(WireError::invalid("the signing secret is empty"));
    }
    let bytes = signed_bytes(message, ignore)?;
    let key = hmac_key(secret);
    Ok(hex(hmac::sign(&key, &bytes).as_ref()))
}

/// The bytes a signature covers.
pub fn signed_bytes(message: &Value, ignore: &[&str]) -> Result<Vec<u8>, WireError> {
    // The common case: an already normalized object, written without a copy.
    if let Value::Object(m) = message
        && canonical::is_normalized(message)
    {
        return canonical::object_bytes_where(m, |k, _| {
            !UNSIGNED.contains(&k) && !ignore.contains(&k)
        });
    }
    let mut normalized = canonical::normalize(message)?;
    if let Value::Object(m) = &mut normalized {
        for k in UNSIGNED.iter().chain(ignore) {
            m.remove(*k);
        }
    }
    canonical::to_bytes(&normalized)
}

/// `true` when `claimed` is `message`'s signature under `secret` (constant-time
/// comparison).
pub fn verify(message: &Value, claimed: &str, secret: &str, ignore: &[&str]) -> bool {
    if claimed.is_empty() || secret.is_empty() {
        return false;
    }
    let Ok(bytes) = signed_bytes(message, ignore) else {
        return false;
    };
    let Some(claimed) = unhex(claimed) else {
        return false;
    };
    let key = hmac_key(secret);
    hmac::verify(&key, &bytes, &claimed).is_ok()
}

/// The keys of a 1.0b17 task a worker re-encodes to check its `sig`.
const TASK_FIELDS: &[&str] = &[
    "job_id",
    "task_id",
    "type",
    "params",
    "tracing_context",
    "params_metadata",
    "priority",
    "deadline",
    "security",
    "metadata",
    "timestamp",
    "policy",
    "sig",
    "step",
    "depth",
    "parent_hash",
];

/// What a task's `sig` covers, from the task as received: the reference worker
/// decodes the task into its struct and signs that again, so keys the struct does
/// not know (avtomatika adds `skill_version` / `skill_type` after signing), `null`s
/// and the integer defaults `step: 0`, `depth: 0` and `size: 0` fall out; everything
/// else stays exactly as sent (a float `deadline` included).
pub fn task_signed_view(task: &Value) -> Value {
    let Some(m) = task.as_object() else {
        return task.clone();
    };
    let mut view = Map::new();
    for (k, v) in m {
        if !TASK_FIELDS.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        if matches!(k.as_str(), "step" | "depth") && v.as_u64() == Some(0) {
            continue;
        }
        if k == "params_metadata"
            && let Value::Object(files) = v
        {
            let files = files
                .iter()
                .filter(|(_, f)| !f.is_null())
                .map(|(name, f)| {
                    let mut f = f.as_object().cloned().unwrap_or_default();
                    f.retain(|k, v| {
                        ["uri", "size", "etag", "metadata"].contains(&k.as_str())
                            && !v.is_null()
                            && !(k == "size" && v.as_u64() == Some(0))
                    });
                    (name.clone(), Value::Object(f))
                })
                .collect();
            view.insert(k.clone(), Value::Object(files));
            continue;
        }
        view.insert(k.clone(), v.clone());
    }
    Value::Object(view)
}

/// `true` when the task as received carries a `sig` that verifies under `key`.
pub fn verify_task(task: &Value, key: &str) -> bool {
    let Some(sig) = task.get("sig").and_then(Value::as_str) else {
        return false;
    };
    if key.is_empty() {
        return false;
    }
    let (Some(claimed), Ok(bytes)) = (unhex(sig), task_signed_bytes(task)) else {
        return false;
    };
    let key = hmac_key(key);
    hmac::verify(&key, &bytes, &claimed).is_ok()
}

/// The bytes a task's `sig` covers: [`task_signed_view`] without `sig`, written from
/// the task itself when it is normalized and has no blob references (which the view
/// rewrites).
fn task_signed_bytes(task: &Value) -> Result<Vec<u8>, WireError> {
    if let Value::Object(m) = task
        && m.get("params_metadata").is_none_or(Value::is_null)
        && canonical::is_normalized(task)
    {
        return canonical::object_bytes_where(m, |k, v| {
            let default_int = matches!(k, "step" | "depth") && v.as_u64() == Some(0);
            let unsigned = TASK_UNSIGNED.contains(&k) || UNSIGNED.contains(&k);
            TASK_FIELDS.contains(&k) && !unsigned && !default_int
        });
    }
    signed_bytes(&task_signed_view(task), TASK_UNSIGNED)
}

/// Signs a 1.0b17 task (its JSON as it will be sent) with the orchestrator's `key`
/// and stores the signature in `sig`.
pub fn sign_task(task: &mut Map<String, Value>, key: &str) -> Result<(), WireError> {
    if key.is_empty() {
        return Err(WireError::invalid("the signing secret is empty"));
    }
    task.remove("sig");
    let value = Value::Object(std::mem::take(task));
    let bytes = task_signed_bytes(&value);
    let Value::Object(back) = value else {
        unreachable!("an object stays an object")
    };
    *task = back;
    let key = hmac_key(key);
    let sig = hex(hmac::sign(&key, &bytes?).as_ref());
    task.insert("sig".into(), Value::String(sig));
    Ok(())
}

/// Seals an outgoing 1.0b17 message in place: a fresh `timestamp` (`now`, Unix
/// seconds), a fresh unique `nonce` unless the message has its own (`event_id`), then
/// `security {signature, signer_id}` over the result. Call it for every attempt: an
/// identical resend within the replay window is refused as a replay.
///
/// The nonce makes two messages with the same content in the same second distinct
/// (the reference takes `event_id`, `nonce`, `message_id` or the signature as the
/// replay key, in that order).
pub fn seal(
    message: &mut Map<String, Value>,
    secret: &str,
    signer_id: &str,
    now: i64,
    ignore: &[&str],
) -> Result<(), WireError> {
    message.insert("timestamp".into(), Value::from(now));
    if !message.contains_key("event_id") {
        // A replay key must be unique, not secret (the HMAC protects the message).
        message.insert(
            "nonce".into(),
            Value::String(rxon_core::messages::unique_id()),
        );
    }
    message.remove("security");
    let value = Value::Object(std::mem::take(message));
    let sig = signature(&value, secret, ignore);
    let Value::Object(back) = value else {
        unreachable!("an object stays an object")
    };
    *message = back;
    message.insert(
        "security".into(),
        json!({"signature": sig?, "signer_id": signer_id}),
    );
    Ok(())
}

/// Why a signed message was refused. The texts are the reference's (avtomatika's
/// `PermissionError`s), answered with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `timestamp`.
    MissingTimestamp,
    /// `timestamp` outside the clock window.
    Expired,
    /// The nonce was seen within the replay window.
    Replay,
    /// No `security` object.
    MissingSecurity,
    /// No `security.signature`.
    MissingSignature,
    /// `security.signer_id` names someone else.
    SignerMismatch,
    /// The signature does not verify.
    BadSignature,
}

impl Refusal {
    /// The reference's message.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::MissingTimestamp => "Missing required timestamp for replay protection",
            Refusal::Expired => "Message timestamp expired (replay protection)",
            Refusal::Replay => "Duplicate message detected (replay attack)",
            Refusal::MissingSecurity => "Missing required security context",
            Refusal::MissingSignature => "Missing required cryptographic signature",
            Refusal::SignerMismatch => "Message signer ID does not match worker ID",
            Refusal::BadSignature => "Invalid cryptographic signature",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Checks incoming 1.0b17 envelopes: the clock window (±60 s), the signer and the
/// HMAC, then the nonce against a bounded replay cache (65 s). The reference checks the
/// nonce before the signature; here only a message that verifies spends its nonce.
///
/// The cache holds at most `capacity` nonces (a 16-byte digest each, whatever the
/// nonce's length); when it is full of unexpired ones, the oldest is forgotten (a
/// replay of it would then pass within the clock window: size it above the signed
/// messages expected within 65 s). Only messages whose signature verifies are
/// remembered, so only key holders fill it.
#[derive(Debug)]
pub struct Verifier {
    capacity: usize,
    seen: Mutex<ReplayCache>,
}

#[derive(Debug, Default)]
struct ReplayCache {
    /// Digest of `worker:nonce` → when it expires. A digest, not the nonce: a peer's
    /// long nonce costs no more memory than a short one.
    by_nonce: HashMap<[u8; 16], i64>,
    /// (expiry, insertion order) → digest, for pruning oldest first.
    by_expiry: BTreeMap<(i64, u64), [u8; 16]>,
    counter: u64,
}

/// The replay key of `nonce` from `worker_id`: the first 16 bytes of a SHA-256.
fn replay_key(worker_id: &str, nonce: &str) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(worker_id.as_bytes());
    ctx.update(b":");
    ctx.update(nonce.as_bytes());
    let digest = ctx.finish();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

/// Nonces a [`Verifier`] remembers by default: about 16 MiB. At more than
/// 4,000 signed messages a second the oldest live ones are forgotten before their
/// 65 s are up (see [`Verifier`]).
pub const DEFAULT_REPLAY_CAPACITY: usize = 262_144;

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new(DEFAULT_REPLAY_CAPACITY)
    }
}

impl Verifier {
    /// A verifier remembering at most `capacity` nonces (at least 1).
    pub fn new(capacity: usize) -> Self {
        Verifier {
            capacity: capacity.max(1),
            seen: Mutex::new(ReplayCache::default()),
        }
    }

    /// Verifies `message` (the received JSON) from the worker authenticated as
    /// `worker_id`, keyed by `secret`, at `now` (Unix seconds).
    pub fn check(
        &self,
        message: &Value,
        worker_id: &str,
        secret: &str,
        now: i64,
        ignore: &[&str],
    ) -> Result<(), Refusal> {
        self.check_with(message, worker_id, Some(secret), now, ignore)
    }

    /// [`check`](Self::check) with an optional key: without one (an orchestrator that
    /// has no secret for this worker), the clock window and the replay cache still
    /// apply, the signature is not checked (the reference's "zero trust disabled for
    /// this worker").
    pub fn check_with(
        &self,
        message: &Value,
        worker_id: &str,
        secret: Option<&str>,
        now: i64,
        ignore: &[&str],
    ) -> Result<(), Refusal> {
        let timestamp = match message.get("timestamp") {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
            _ => None,
        };
        let Some(timestamp) = timestamp.filter(|t| *t != 0) else {
            return Err(Refusal::MissingTimestamp);
        };
        if now.abs_diff(timestamp) > SIGNATURE_CLOCK_WINDOW_SECS {
            return Err(Refusal::Expired);
        }
        let security = message.get("security").and_then(Value::as_object);
        let signature = security.and_then(|s| s.get("signature"));
        if let Some(secret) = secret {
            let Some(security) = security.filter(|s| !s.is_empty()) else {
                return Err(Refusal::MissingSecurity);
            };
            let Some(claimed) = signature.and_then(Value::as_str) else {
                return Err(Refusal::MissingSignature);
            };
            if let Some(signer) = security.get("signer_id").and_then(Value::as_str)
                && signer != worker_id
            {
                return Err(Refusal::SignerMismatch);
            }
            if !verify(message, claimed, secret, ignore) {
                return Err(Refusal::BadSignature);
            }
        }
        // Only a message that verifies spends its nonce: a forged copy cannot get the
        // genuine one refused as a replay.
        let nonce = ["event_id", "nonce", "message_id"]
            .iter()
            .find_map(|k| message.get(*k).and_then(nonce_text))
            .or_else(|| signature.and_then(nonce_text));
        match nonce {
            Some(n) if !self.remember(replay_key(worker_id, &n), timestamp, now) => {
                Err(Refusal::Replay)
            }
            _ => Ok(()),
        }
    }

    /// Records `key` until `now` + the replay window; `false` if it is already there.
    /// Records `key` for as long as a message stamped `timestamp` can be accepted
    /// (until its timestamp, or `now` if later, plus the replay window); `false` if it
    /// is already there.
    fn remember(&self, key: [u8; 16], timestamp: i64, now: i64) -> bool {
        let mut c = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((&(expiry, n), _)) = c.by_expiry.first_key_value() {
            if expiry > now && c.by_nonce.len() < self.capacity {
                break;
            }
            if let Some(old) = c.by_expiry.remove(&(expiry, n)) {
                c.by_nonce.remove(&old);
            }
        }
        if c.by_nonce.get(&key).is_some_and(|&e| e > now) {
            return false;
        }
        // Accepted until timestamp + the clock window: remembered at least that long.
        let expiry = timestamp.max(now).saturating_add(REPLAY_WINDOW_SECS as i64);
        c.counter += 1;
        let n = c.counter;
        c.by_nonce.insert(key, expiry);
        c.by_expiry.insert((expiry, n), key);
        true
    }

    /// How many nonces are remembered now.
    pub fn remembered(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_nonce
            .len()
    }
}

fn nonce_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Seconds since the Unix epoch: the clock of envelope timestamps.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> Result<String, WireError> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| WireError::invalid("the system random source failed"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        // Lowercase only: the reference compares the hex strings.
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key comes from the cache only for its own secret: secrets reused (hits),
    /// more secrets than the cache holds (evictions) and secrets seen again after
    /// their eviction all sign and verify as keys derived afresh do.
    #[test]
    fn cached_keys_sign_as_fresh_ones() {
        let message = json!({"worker_id": "w-1", "n": 1, "text": "é\n"});
        let bytes = signed_bytes(&message, &[]).expect("bytes");
        let check = |secret: &str| {
            let fresh = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            let expected = hex(hmac::sign(&fresh, &bytes).as_ref());
            assert_eq!(
                signature(&message, secret, &[]).expect("signs"),
                expected,
                "{secret}"
            );
            assert!(verify(&message, &expected, secret, &[]), "{secret}");
            assert!(
                !verify(&message, &expected, &format!("{secret}-other"), &[]),
                "{secret}: another secret's key must not verify"
            );
        };
        for _ in 0..5 {
            check("a");
            check("b");
        }
        let many: Vec<String> = (0..KEY_CACHE * 2 + 1).map(|i| format!("s-{i}")).collect();
        for secret in many.iter().chain(many.iter().rev()).chain(&many) {
            check(secret);
        }
        check("a");
    }
}
