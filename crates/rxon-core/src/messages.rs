//! The messages of RXON 1.0b3 and the replies a worker reads.
//!
//! Field names are the wire names of the Python reference. With the `serde` feature:
//!
//! - decoding ignores unknown fields (newer peers add fields) and accepts both `null`
//!   and absence for optional fields; a missing required field is an error;
//! - encoding **omits** unset optional fields instead of writing `null`, which every
//!   peer accepts (some orchestrators reject `null` where they expect a list).

use crate::codes::{CommandName, ErrorCode, IgnoredReason, TaskStatus};
use crate::value::Map;
use std::collections::BTreeMap;

/// Applies the attributes every message shares.
macro_rules! message {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub struct $name { $($body)* }
    };
}

message! {
    /// A GPU a worker offers.
    pub struct GpuInfo {
        /// Model name, e.g. `"A100"`.
        pub model: String,
        /// Memory in GiB.
        pub vram_gb: u64,
    }
}

message! {
    /// Capacity a worker declares at registration.
    pub struct Resources {
        /// How many tasks the worker runs at once.
        pub max_concurrent_tasks: u32,
        /// CPU cores available to tasks.
        pub cpu_cores: u32,
        /// The GPU, if any.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub gpu_info: Option<GpuInfo>,
    }
}

message! {
    /// A model installed on a worker.
    pub struct InstalledModel {
        /// Model name.
        pub name: String,
        /// Model version.
        pub version: String,
    }
}

message! {
    /// What a worker can do and what it costs.
    pub struct WorkerCapabilities {
        /// Host name of the worker machine.
        pub hostname: String,
        /// Address of the worker machine as it sees itself.
        pub ip_address: String,
        /// Price per skill (task type).
        pub cost_per_skill: BTreeMap<String, f64>,
        /// Hash of the worker's blob-storage configuration, compared by the orchestrator.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub s3_config_hash: Option<String>,
        /// Anything else.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub extra: Option<Map>,
    }
}

message! {
    /// A reference to an object in blob storage, used instead of inline bytes.
    pub struct FileMetadata {
        /// `s3://bucket/key` (a key ending in `/` is a directory).
        pub uri: String,
        /// Size in bytes.
        pub size: u64,
        /// Entity tag reported by the store, when known.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub etag: Option<String>,
    }
}

message! {
    /// Sent once by a worker to announce itself (`POST /_worker/workers/register`).
    pub struct WorkerRegistration {
        /// The worker's identifier (see [`crate::validate`]).
        pub worker_id: String,
        /// Free-form worker class, e.g. `"gpu"`.
        pub worker_type: String,
        /// Task types this worker accepts.
        pub supported_skills: Vec<String>,
        /// Declared capacity.
        pub resources: Resources,
        /// Installed software and versions.
        pub installed_software: BTreeMap<String, String>,
        /// Installed models.
        pub installed_models: Vec<InstalledModel>,
        /// Capabilities and prices.
        pub capabilities: WorkerCapabilities,
    }
}

/// A short-lived credential issued by the STS endpoint.
///
/// `Debug` never shows the token:
///
/// ```
/// let t = rxon_core::TokenResponse { access_token: "s3cret".into(), ..Default::default() };
/// assert!(!format!("{t:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TokenResponse {
    /// The token to send as `X-Worker-Token`.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The worker the token was issued to.
    pub worker_id: String,
}

impl std::fmt::Debug for TokenResponse {
    /// Redacts the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

message! {
    /// A progress report for a running task.
    pub struct ProgressUpdatePayload {
        /// Message type; `"progress_update"` by convention ([`crate::constants::MSG_TYPE_PROGRESS`]).
        pub event: String,
        /// The task.
        pub task_id: String,
        /// The job the task belongs to.
        pub job_id: String,
        /// Completion, conventionally `0.0..=1.0`.
        pub progress: f64,
        /// A human-readable note.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub message: Option<String>,
    }
}

impl ProgressUpdatePayload {
    /// A `progress_update` event for `task_id` of `job_id`.
    pub fn new(task_id: impl Into<String>, job_id: impl Into<String>, progress: f64) -> Self {
        ProgressUpdatePayload {
            event: crate::constants::MSG_TYPE_PROGRESS.to_owned(),
            task_id: task_id.into(),
            job_id: job_id.into(),
            progress,
            message: None,
        }
    }
}

/// A command from the orchestrator to one worker.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WorkerCommand {
    /// What to do.
    pub command: CommandName,
    /// The task it concerns.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub task_id: Option<String>,
    /// The job it concerns.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub job_id: Option<String>,
    /// Command arguments.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub params: Option<Map>,
}

impl WorkerCommand {
    /// A `cancel_task` command.
    pub fn cancel_task(task_id: impl Into<String>, job_id: Option<String>) -> Self {
        WorkerCommand {
            command: CommandName::CancelTask,
            task_id: Some(task_id.into()),
            job_id,
            params: None,
        }
    }
}

message! {
    /// A unit of work handed to a worker (`GET /_worker/workers/{id}/tasks/next`).
    pub struct TaskPayload {
        /// The job this task belongs to.
        pub job_id: String,
        /// The task's identifier.
        pub task_id: String,
        /// The task type (skill) that selects the worker's handler.
        #[cfg_attr(feature = "serde", serde(rename = "type"))]
        pub task_type: String,
        /// Task parameters.
        pub params: Map,
        /// Trace propagation headers (e.g. W3C `traceparent`).
        pub tracing_context: BTreeMap<String, String>,
        /// Large inputs held in blob storage, by parameter name.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub params_metadata: Option<BTreeMap<String, FileMetadata>>,
    }
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TaskError {
    /// A standard or custom error code.
    pub code: ErrorCode,
    /// Human-readable description.
    pub message: String,
    /// Structured details.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub details: Option<Map>,
}

impl TaskError {
    /// An error with `code` and `message` and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        TaskError {
            code,
            message: message.into(),
            details: None,
        }
    }
}

/// The outcome of a task, sent by the worker (`POST /_worker/tasks/result`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TaskResult {
    /// The job.
    pub job_id: String,
    /// The task.
    pub task_id: String,
    /// The reporting worker.
    pub worker_id: String,
    /// Success, failure or cancelled.
    pub status: TaskStatus,
    /// Output of a successful task.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub data: Option<Map>,
    /// Why the task failed.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub error: Option<TaskError>,
    /// Large outputs held in blob storage, by name.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub data_metadata: Option<BTreeMap<String, FileMetadata>>,
}

impl TaskResult {
    /// A `success` result for `task` with `data`.
    pub fn success(task: &TaskPayload, worker_id: impl Into<String>, data: Map) -> Self {
        Self::base(task, worker_id.into(), TaskStatus::Success).with(|r| r.data = Some(data))
    }

    /// A `failure` result for `task` with `error`.
    pub fn failure(task: &TaskPayload, worker_id: impl Into<String>, error: TaskError) -> Self {
        Self::base(task, worker_id.into(), TaskStatus::Failure).with(|r| r.error = Some(error))
    }

    /// A `cancelled` result for `task`.
    pub fn cancelled(task: &TaskPayload, worker_id: impl Into<String>) -> Self {
        Self::base(task, worker_id.into(), TaskStatus::Cancelled)
    }

    fn base(task: &TaskPayload, worker_id: String, status: TaskStatus) -> Self {
        TaskResult {
            job_id: task.job_id.clone(),
            task_id: task.task_id.clone(),
            worker_id,
            status,
            data: None,
            error: None,
            data_metadata: None,
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

message! {
    /// A worker's periodic status (`PATCH /_worker/workers/{id}`).
    pub struct Heartbeat {
        /// The worker.
        pub worker_id: String,
        /// Free-form status, e.g. `"idle"` or `"busy"`.
        pub status: String,
        /// Current load, conventionally `0.0..=1.0`.
        pub load: f64,
        /// Ids of the tasks the worker is running.
        pub current_tasks: Vec<String>,
        /// Task types the worker accepts.
        pub supported_skills: Vec<String>,
        /// Cached artefacts (models, datasets) that make some tasks cheaper here.
        pub hot_cache: Vec<String>,
        /// Which cached artefacts each skill needs.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub skill_dependencies: Option<BTreeMap<String, Vec<String>>>,
        /// Skills that are warm right now.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub hot_skills: Option<Vec<String>>,
    }
}

/// The orchestrator's answer to a registration.
///
/// Orchestrators answer `{"status":"registered"}` and often more
/// (`version`, `warning`, …); keys this type does not name land in [`extra`](Self::extra).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RegisterReply {
    /// `"registered"` by default.
    #[cfg_attr(feature = "serde", serde(default = "registered"))]
    pub status: String,
    /// Protocol or orchestrator version, when sent.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub version: Option<String>,
    /// A warning for the operator (e.g. an outdated worker), when sent.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub warning: Option<String>,
    /// Every other key of the reply.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub extra: Map,
}

#[cfg(feature = "serde")]
fn registered() -> String {
    "registered".to_owned()
}

impl Default for RegisterReply {
    fn default() -> Self {
        RegisterReply {
            status: "registered".to_owned(),
            version: None,
            warning: None,
            extra: Map::new(),
        }
    }
}

/// The orchestrator's answer to a heartbeat.
///
/// Orchestrators may list tasks to cancel here (`cancel_task_ids`); some deliver
/// cancellation only this way, so a worker must act on it. A `null` or empty reply
/// is the [`Default`].
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HeartbeatReply {
    /// Tasks the worker must cancel.
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            deserialize_with = "crate::serde_support::null_as_default"
        )
    )]
    pub cancel_task_ids: Vec<String>,
    /// The orchestrator lost track of this worker: re-send full state (re-register).
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            skip_serializing_if = "std::ops::Not::not",
            deserialize_with = "crate::serde_support::null_as_default"
        )
    )]
    pub require_full_sync: bool,
    /// Every other key of the reply.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub extra: Map,
}

/// Whether the orchestrator applied a result.
///
/// On the wire: `{"status":"accepted"}` (or any status other than `"ignored"`, e.g. the
/// reference's default `{"status":"ok"}`), or
/// `{"status":"ignored","reason":R,"message":M}`. An ignored result must not be retried.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResultOutcome {
    /// The result was applied (or was a duplicate of one already applied).
    Accepted,
    /// The orchestrator refused the result; it must not be sent again.
    Ignored {
        /// Why. `Other("unspecified")` when the orchestrator gave no reason.
        reason: IgnoredReason,
        /// Human-readable explanation, when given.
        message: Option<String>,
    },
}

impl ResultOutcome {
    /// An ignored outcome with `reason` and `message`.
    pub fn ignored(reason: IgnoredReason, message: impl Into<String>) -> Self {
        ResultOutcome::Ignored {
            reason,
            message: Some(message.into()),
        }
    }

    /// `true` for [`ResultOutcome::Accepted`].
    pub fn is_accepted(&self) -> bool {
        matches!(self, ResultOutcome::Accepted)
    }

    /// The reason, when ignored.
    pub fn ignored_reason(&self) -> Option<&IgnoredReason> {
        match self {
            ResultOutcome::Ignored { reason, .. } => Some(reason),
            ResultOutcome::Accepted => None,
        }
    }
}

#[cfg(feature = "serde")]
mod result_outcome_serde {
    use super::{IgnoredReason, ResultOutcome};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wire {
        #[serde(default)]
        status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<IgnoredReason>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    }

    impl Serialize for ResultOutcome {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let wire = match self {
                ResultOutcome::Accepted => Wire {
                    status: Some("accepted".into()),
                    reason: None,
                    message: None,
                },
                ResultOutcome::Ignored { reason, message } => Wire {
                    status: Some("ignored".into()),
                    reason: Some(reason.clone()),
                    message: message.clone(),
                },
            };
            wire.serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for ResultOutcome {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let w = Wire::deserialize(d)?;
            Ok(if w.status.as_deref() == Some("ignored") {
                ResultOutcome::Ignored {
                    reason: w
                        .reason
                        .unwrap_or_else(|| IgnoredReason::Other("unspecified".into())),
                    message: w.message,
                }
            } else {
                ResultOutcome::Accepted
            })
        }
    }
}
