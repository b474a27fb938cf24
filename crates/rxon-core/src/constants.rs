//! Protocol constants of RXON 1.0b3 and 1.0b17: versions, headers, status names,
//! timing defaults.
//! (HTTP routes are the HTTP binding's: `rxon_http::routes`.)
//!
//! Values are identical to the Python reference `rxon==1.0b3`. Statuses, error codes
//! and commands also exist as open enums in [`crate::codes`]; the string constants here
//! are for code that works with raw wire values.

/// The first protocol generation this crate implements (the seed), assumed for a peer
/// that sends no `X-RXON-Version`.
pub const PROTOCOL_VERSION: &str = "1.0b3";
/// The current protocol generation this crate implements.
pub const PROTOCOL_VERSION_1B17: &str = "1.0b17";

/// Header carrying the protocol version, sent on every request and every response.
pub const PROTOCOL_VERSION_HEADER: &str = "X-RXON-Version";
/// Header carrying the worker's credential on every worker request.
pub const AUTH_HEADER_WORKER: &str = "X-Worker-Token";
/// Header naming the worker on every 1.0b17 request (the identity hint).
pub const WORKER_ID_HEADER: &str = "X-Worker-ID";
/// Header carrying a client-API credential (the orchestrator's own API, not workers).
pub const AUTH_HEADER_CLIENT: &str = "X-Client-Token";

/// Task status `success`.
pub const TASK_STATUS_SUCCESS: &str = "success";
/// Task status `failure`.
pub const TASK_STATUS_FAILURE: &str = "failure";
/// Task status `cancelled`.
pub const TASK_STATUS_CANCELLED: &str = "cancelled";

/// Command `cancel_task`.
pub const COMMAND_CANCEL_TASK: &str = "cancel_task";
/// Conventional `event` of a progress update.
pub const MSG_TYPE_PROGRESS: &str = "progress_update";
/// `event_type` of a 1.0b17 progress event.
pub const EVENT_TYPE_PROGRESS: &str = "progress";
/// Default dialect of a skill's schemas.
pub const SCHEMA_DIALECT_JSON_SCHEMA: &str = "json-schema";

/// Worker status: nothing running.
pub const WORKER_STATUS_IDLE: &str = "idle";
/// Worker status: running tasks, room for more.
pub const WORKER_STATUS_BUSY: &str = "busy";
/// Worker status: at its concurrency limit (1.0b17).
pub const WORKER_STATUS_FULL: &str = "full";
/// Worker status: finishing its tasks before stopping; gets no new task (1.0b17).
pub const WORKER_STATUS_DRAINING: &str = "draining";
/// Worker status: stopping (1.0b17).
pub const WORKER_STATUS_OFFLINE: &str = "offline";

/// A 1.0b17 envelope's `timestamp` may differ from the receiver's clock by this many
/// seconds.
pub const SIGNATURE_CLOCK_WINDOW_SECS: u64 = 60;
/// A 1.0b17 receiver remembers each envelope's nonce this long, to refuse replays.
pub const REPLAY_WINDOW_SECS: u64 = 65;

/// Result error code: transient failure.
pub const ERROR_CODE_TRANSIENT: &str = "TRANSIENT_ERROR";
/// Result error code: permanent failure.
pub const ERROR_CODE_PERMANENT: &str = "PERMANENT_ERROR";
/// Result error code: invalid input.
pub const ERROR_CODE_INVALID_INPUT: &str = "INVALID_INPUT_ERROR";
/// Result error code: integrity check failed.
pub const ERROR_CODE_INTEGRITY_MISMATCH: &str = "INTEGRITY_MISMATCH_ERROR";
/// Result error code: timed out.
pub const ERROR_CODE_TIMEOUT: &str = "TIMEOUT_ERROR";
/// Result error code: refused as late.
pub const ERROR_CODE_LATE_RESULT: &str = "LATE_RESULT";
/// Result error code: local resources exhausted.
pub const ERROR_CODE_RESOURCE_EXHAUSTED: &str = "RESOURCE_EXHAUSTED_ERROR";
/// Result error code: a dependency failed.
pub const ERROR_CODE_DEPENDENCY: &str = "DEPENDENCY_ERROR";
/// Result error code: refused for security reasons.
pub const ERROR_CODE_SECURITY: &str = "SECURITY_ERROR";
/// Result error code: internal worker error.
pub const ERROR_CODE_INTERNAL: &str = "INTERNAL_ERROR";
/// Result error code: over a rate limit (1.0b17).
pub const ERROR_CODE_LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED_ERROR";
/// Result error code: a result or event broke the skill's contract (1.0b17).
pub const ERROR_CODE_CONTRACT_VIOLATION: &str = "CONTRACT_VIOLATION_ERROR";
/// Result error code: something the task needs is missing (1.0b17).
pub const ERROR_CODE_DEPENDENCY_MISSING: &str = "DEPENDENCY_MISSING_ERROR";

/// Ignored reason: deadline passed.
pub const IGNORED_REASON_LATE: &str = "deadline_exceeded";
/// Ignored reason: job cancelled.
pub const IGNORED_REASON_CANCELLED: &str = "job_cancelled";
/// Ignored reason: job not found.
pub const IGNORED_REASON_NOT_FOUND: &str = "job_not_found";
/// Ignored reason: task held by another worker.
pub const IGNORED_REASON_MISMATCH: &str = "worker_mismatch";
/// Ignored reason: task reassigned or job moved on.
pub const IGNORED_REASON_STALE: &str = "stale_task";

/// Job status `pending`.
pub const JOB_STATUS_PENDING: &str = "pending";
/// Job status `waiting_for_worker`.
pub const JOB_STATUS_WAITING_FOR_WORKER: &str = "waiting_for_worker";
/// Job status `running`.
pub const JOB_STATUS_RUNNING: &str = "running";
/// Job status `finished`.
pub const JOB_STATUS_FINISHED: &str = "finished";
/// Job status `failed`.
pub const JOB_STATUS_FAILED: &str = "failed";
/// Job status `error`.
pub const JOB_STATUS_ERROR: &str = "error";
/// Job status `quarantined`.
pub const JOB_STATUS_QUARANTINED: &str = "quarantined";
/// Job status `cancelled`.
pub const JOB_STATUS_CANCELLED: &str = "cancelled";
/// Job status `waiting_for_human`.
pub const JOB_STATUS_WAITING_FOR_HUMAN: &str = "waiting_for_human";
/// Job status `waiting_for_parallel_tasks`.
pub const JOB_STATUS_WAITING_FOR_PARALLEL: &str = "waiting_for_parallel_tasks";

/// Default long-poll wait a worker asks for, in seconds (reference default).
pub const DEFAULT_POLL_TIMEOUT_SECS: u64 = 30;
/// Extra time a worker gives a long-poll request beyond its wait, in seconds.
pub const POLL_REQUEST_MARGIN_SECS: u64 = 5;
/// Default keepalive interval of long-lived connections, in seconds.
pub const DEFAULT_KEEPALIVE_SECS: u64 = 20;
/// Default number of attempts for sending a result (reference default).
pub const DEFAULT_RESULT_RETRIES: u32 = 3;
/// Default base delay between result attempts, in milliseconds (reference: 0.1 s).
pub const DEFAULT_RESULT_RETRY_DELAY_MS: u64 = 100;
