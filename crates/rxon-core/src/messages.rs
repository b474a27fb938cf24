//! The messages of RXON, one model for both protocol generations.
//!
//! Field names are the wire names of the Python reference. The structs hold what
//! either generation can say: the 1.0b17 fields (skill catalogs, devices, envelopes,
//! lineage) and the 1.0b3-only ones (`load`, `hot_cache`, `cpu_cores`, …). Which keys
//! a peer sees depends on its generation ([`crate::protocol::Protocol`]), and the
//! JSON of each generation is written by the `rxon-wire` crate; docs/protocol.md has
//! the mapping. With the `serde` feature, the types' own serde form (used by the
//! WebSocket and MessagePack wires, where both ends are rxon) follows 1.0b17 rules:
//!
//! - decoding ignores unknown fields (newer peers add fields), accepts both `null`
//!   and absence for optional fields and applies defaults (`status` absent is
//!   `success`); a missing required field is an error; integers are accepted where a
//!   float is expected, never the reverse (except [`TaskPayload::deadline`]);
//! - encoding **omits** unset optional fields and default values instead of writing
//!   `null` (some orchestrators reject `null` where they expect a list).

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
    /// A GPU a worker offers (1.0b3; a 1.0b17 peer sees it as a `"gpu"` [`HardwareDevice`]).
    pub struct GpuInfo {
        /// Model name, e.g. `"A100"`.
        pub model: String,
        /// Memory in GiB.
        pub vram_gb: u64,
    }
}

message! {
    /// A device a worker offers (1.0b17): a GPU, an accelerator, a camera…
    pub struct HardwareDevice {
        /// Kind of device, e.g. `"gpu"`.
        #[cfg_attr(feature = "serde", serde(rename = "type"))]
        pub device_type: String,
        /// Model name; resource matching compares it as a case-insensitive substring.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub model: Option<String>,
        /// Identifier of this unit on the worker.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub id: Option<String>,
        /// Static properties, e.g. `{"vram_gb": 80}`.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub properties: Option<Map>,
        /// Live metrics.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metrics: Option<Map>,
    }
}

message! {
    /// Load of one device (1.0b17 heartbeats).
    pub struct DeviceUsage {
        /// The [`HardwareDevice::id`] it measures.
        pub unit_id: String,
        /// Load in percent.
        pub load_percent: f64,
        /// Other live metrics.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metrics: Option<Map>,
    }
}

message! {
    /// What a worker uses right now (1.0b17 heartbeats; a 1.0b3 peer sees `load`).
    pub struct ResourcesUsage {
        /// CPU load in percent.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub cpu_load_percent: f64,
        /// Memory in use, GiB.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub ram_used_gb: f64,
        /// Per-device load.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub devices_usage: Option<Vec<DeviceUsage>>,
    }
}

message! {
    /// Capacity a worker declares at registration.
    ///
    /// 1.0b3 peers read `max_concurrent_tasks`, `cpu_cores` and `gpu_info`; 1.0b17 peers
    /// read `devices` and `properties`, where `cpu_cores` and `max_concurrent_tasks`
    /// are also written (as the reference SDK does) and `gpu_info` becomes a device.
    pub struct Resources {
        /// How many tasks the worker runs at once.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub max_concurrent_tasks: u32,
        /// CPU cores available to tasks.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub cpu_cores: u32,
        /// The GPU, if any (1.0b3).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub gpu_info: Option<GpuInfo>,
        /// Devices (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub devices: Option<Vec<HardwareDevice>>,
        /// Other properties, matched by resource requirements (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub properties: Option<Map>,
    }
}

message! {
    /// An artifact (model, dataset, binary) installed on a worker.
    ///
    /// 1.0b3 calls these `installed_models` and reads `name` and `version` only.
    pub struct InstalledArtifact {
        /// Name.
        pub name: String,
        /// Version; `"unknown"` when absent on the wire.
        #[cfg_attr(feature = "serde", serde(default = "crate::serde_support::default_unknown", skip_serializing_if = "crate::serde_support::is_unknown"))]
        pub version: String,
        /// Kind of artifact, e.g. `"model"`.
        #[cfg_attr(feature = "serde", serde(rename = "type", default, skip_serializing_if = "Option::is_none"))]
        pub artifact_type: Option<String>,
        /// Anything else.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub properties: Option<Map>,
    }
}

/// The 1.0b3 name of [`InstalledArtifact`].
pub type InstalledModel = InstalledArtifact;

impl InstalledArtifact {
    /// An artifact `name` at `version`.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        InstalledArtifact {
            name: name.into(),
            version: version.into(),
            ..Default::default()
        }
    }
}

message! {
    /// A skill (task type) a worker offers, with its contract (1.0b17).
    ///
    /// 1.0b3 peers see only the name. `SkillInfo::from("resize")` is a bare skill.
    pub struct SkillInfo {
        /// The task type.
        pub name: String,
        /// Kind of skill.
        #[cfg_attr(feature = "serde", serde(rename = "type", default, skip_serializing_if = "Option::is_none"))]
        pub skill_type: Option<String>,
        /// Human-readable description.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub description: Option<String>,
        /// Version of the skill.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub version: Option<String>,
        /// Schema of `params` (JSON Schema by default).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub input_schema: Option<Map>,
        /// Schema of a success's `data`.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub output_schema: Option<Map>,
        /// Schema of each event's payload, by `event_type`.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub events_schema: Option<Map>,
        /// Statuses a result may carry.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub output_statuses: Option<Vec<String>>,
        /// Dialect of the schemas; `"json-schema"` when absent.
        #[cfg_attr(feature = "serde", serde(default = "crate::serde_support::default_dialect", skip_serializing_if = "crate::serde_support::is_default_dialect"))]
        pub schema_dialect: String,
        /// Anything else.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub properties: Option<Map>,
    }
}

impl From<&str> for SkillInfo {
    fn from(name: &str) -> Self {
        SkillInfo::new(name)
    }
}

impl From<String> for SkillInfo {
    fn from(name: String) -> Self {
        SkillInfo::new(name)
    }
}

impl SkillInfo {
    /// A skill called `name`, without a contract.
    pub fn new(name: impl Into<String>) -> Self {
        SkillInfo {
            name: name.into(),
            schema_dialect: crate::constants::SCHEMA_DIALECT_JSON_SCHEMA.to_owned(),
            ..Default::default()
        }
    }

    /// `skills` as [`SkillInfo`]s (e.g. from a list of task types).
    pub fn list<S: Into<SkillInfo>>(skills: impl IntoIterator<Item = S>) -> Vec<SkillInfo> {
        skills.into_iter().map(Into::into).collect()
    }
}

/// The signed envelope of a 1.0b17 message (`security`).
///
/// The wire layer fills it when it sends and checks it when it receives; a handler
/// sees what the peer sent (e.g. `signer_id`).
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SecurityContext {
    /// Lowercase hex HMAC-SHA256 of the message's canonical JSON.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub signature: Option<String>,
    /// Who signed (the worker id).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub signer_id: Option<String>,
    /// Identities the message passed through.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub identity_chain: Option<Vec<String>>,
    /// Anything else.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub metadata: Option<Map>,
}

message! {
    /// What a worker can do and what it costs.
    pub struct WorkerCapabilities {
        /// Host name of the worker machine (`"unknown"` when a 1.0b17 peer omits it).
        #[cfg_attr(feature = "serde", serde(default = "crate::serde_support::default_unknown"))]
        pub hostname: String,
        /// Address of the worker machine as it sees itself (`"0.0.0.0"` when omitted).
        #[cfg_attr(feature = "serde", serde(default = "crate::serde_support::default_ip"))]
        pub ip_address: String,
        /// Price per skill (task type).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "crate::serde_support::null_as_default"))]
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
        /// Size in bytes (0 when absent).
        #[cfg_attr(feature = "serde", serde(default, deserialize_with = "crate::serde_support::null_as_default"))]
        pub size: u64,
        /// Entity tag reported by the store, when known.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub etag: Option<String>,
        /// Anything else (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metadata: Option<Map>,
    }
}

message! {
    /// Sent once by a worker to announce itself (`POST /_worker/workers/register`).
    pub struct WorkerRegistration {
        /// The worker's identifier (see [`crate::validate`]).
        pub worker_id: String,
        /// Free-form worker class, e.g. `"gpu"` (`"generic"` when a 1.0b17 peer omits it).
        #[cfg_attr(feature = "serde", serde(default = "crate::serde_support::default_generic"))]
        pub worker_type: String,
        /// The skills (task types) this worker accepts; 1.0b3 peers see the names.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::serde_support::null_as_default"))]
        pub supported_skills: Vec<SkillInfo>,
        /// Skills the worker can start now (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub available_skills: Option<Vec<String>>,
        /// Skills that are warm (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub hot_skills: Option<Vec<String>>,
        /// Declared capacity.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub resources: Resources,
        /// Installed software and versions.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "crate::serde_support::null_as_default"))]
        pub installed_software: BTreeMap<String, String>,
        /// Installed artifacts (1.0b3: `installed_models`).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::serde_support::null_as_default"))]
        pub installed_artifacts: Vec<InstalledArtifact>,
        /// Capabilities and prices.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub capabilities: WorkerCapabilities,
        /// Hash of the skill catalog, so heartbeats may omit it (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub skills_hash: Option<String>,
        /// Anything else (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metadata: Option<Map>,
        /// Send time, Unix seconds (1.0b17 envelope; set by the wire layer).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub timestamp: Option<i64>,
        /// The replay key of this message (1.0b17 envelope; set by the wire layer).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub nonce: Option<String>,
        /// Signature (1.0b17 envelope; set by the wire layer).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub security: Option<SecurityContext>,
    }
}

/// A short-lived credential issued by the STS endpoint.
///
/// `Debug` never shows the tokens:
///
/// ```
/// let t = rxon_core::TokenResponse {
///     access_token: "s3cret".into(),
///     refresh_token: Some("again".into()),
///     ..Default::default()
/// };
/// let shown = format!("{t:?}");
/// assert!(!shown.contains("s3cret") && !shown.contains("again"));
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
    /// A token that buys a new access token at the refresh endpoint (1.0b17).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub refresh_token: Option<String>,
    /// Anything else (1.0b17).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub metadata: Option<Map>,
}

impl std::fmt::Debug for TokenResponse {
    /// Redacts the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("worker_id", &self.worker_id)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

message! {
    /// A progress report for a running task.
    ///
    /// 1.0b3 sends it as is; 1.0b17 sends a [`WorkerEventPayload`] of type
    /// `"progress"` (see [`WorkerEventPayload::progress`]).
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

message! {
    /// An event from a worker (1.0b17, `POST /_worker/events`): progress, or anything
    /// a skill declares in its `events_schema`.
    pub struct WorkerEventPayload {
        /// Unique id of this event (also its replay nonce).
        pub event_id: String,
        /// The sending worker.
        pub worker_id: String,
        /// The worker the event started on.
        pub origin_worker_id: String,
        /// What happened, e.g. `"progress"`.
        pub event_type: String,
        /// The event's data.
        #[cfg_attr(feature = "serde", serde(default, deserialize_with = "crate::serde_support::null_as_default"))]
        pub payload: Map,
        /// The task the event started in.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub origin_task_id: Option<String>,
        /// Workers the event passed through (not signed).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub bubbling_chain: Option<Vec<String>>,
        /// The job it is for.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub target_job_id: Option<String>,
        /// The task it is for.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub target_task_id: Option<String>,
        /// Trace propagation headers.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub trace_context: Option<BTreeMap<String, String>>,
        /// Priority (0 by default).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub priority: f64,
        /// Send time, Unix seconds (envelope).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub timestamp: Option<i64>,
        /// Signature (envelope).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub security: Option<SecurityContext>,
        /// Anything else.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metadata: Option<Map>,
    }
}

impl WorkerEventPayload {
    /// An event of `event_type` with `payload`, sent by `worker_id` (also its origin),
    /// with a fresh [`unique_id`] as its `event_id`. Aim it with
    /// [`for_task`](Self::for_task).
    ///
    /// ```
    /// use rxon_core::{map, WorkerEventPayload};
    /// let e = WorkerEventPayload::new("w1", "frame_rendered", map! {"frame": 7})
    ///     .for_task("t1", "j1");
    /// assert_eq!(e.target_task_id.as_deref(), Some("t1"));
    /// assert_ne!(e.event_id, WorkerEventPayload::new("w1", "x", Default::default()).event_id);
    /// ```
    pub fn new(worker_id: impl Into<String>, event_type: impl Into<String>, payload: Map) -> Self {
        let worker_id = worker_id.into();
        WorkerEventPayload {
            event_id: unique_id(),
            origin_worker_id: worker_id.clone(),
            worker_id,
            event_type: event_type.into(),
            payload,
            ..Default::default()
        }
    }

    /// Aims the event at `task_id` of `job_id` (its origin task too): the orchestrator
    /// accepts it only from the worker holding that task.
    pub fn for_task(mut self, task_id: impl Into<String>, job_id: impl Into<String>) -> Self {
        let task_id = task_id.into();
        self.origin_task_id = Some(task_id.clone());
        self.target_task_id = Some(task_id);
        self.target_job_id = Some(job_id.into());
        self
    }

    /// The task the event is about: its target, else its origin.
    pub fn task_id(&self) -> Option<&str> {
        self.target_task_id
            .as_deref()
            .or(self.origin_task_id.as_deref())
    }

    /// The 1.0b17 form of `progress`, sent by `worker_id` with id `event_id`:
    /// `event_type: "progress"`, `payload: {"progress": p, "message": m}`, aimed at the
    /// progress's task and job, as the reference SDK sends it.
    pub fn progress(
        progress: &ProgressUpdatePayload,
        worker_id: impl Into<String>,
        event_id: impl Into<String>,
    ) -> Self {
        let worker_id = worker_id.into();
        let mut payload = Map::new();
        payload.insert("progress".into(), progress.progress.into());
        if let Some(m) = &progress.message {
            payload.insert("message".into(), m.clone().into());
        }
        WorkerEventPayload {
            event_id: event_id.into(),
            origin_worker_id: worker_id.clone(),
            worker_id,
            event_type: crate::constants::EVENT_TYPE_PROGRESS.to_owned(),
            payload,
            origin_task_id: Some(progress.task_id.clone()),
            target_job_id: Some(progress.job_id.clone()),
            target_task_id: Some(progress.task_id.clone()),
            ..Default::default()
        }
    }

    /// This event as a [`ProgressUpdatePayload`], when it is a `"progress"` event with
    /// a numeric `payload.progress` and a target (or origin) task and job.
    pub fn as_progress(&self) -> Option<ProgressUpdatePayload> {
        if self.event_type != crate::constants::EVENT_TYPE_PROGRESS {
            return None;
        }
        let progress = self.payload.get("progress")?.as_f64()?;
        let task_id = self.task_id()?;
        Some(ProgressUpdatePayload {
            event: crate::constants::MSG_TYPE_PROGRESS.to_owned(),
            task_id: task_id.to_owned(),
            job_id: self.target_job_id.clone().unwrap_or_default(),
            progress,
            message: self
                .payload
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned),
        })
    }
}

/// An identifier unique to this process and to each call (for `event_id` and other
/// message ids): 32 hex digits, a 64-bit prefix drawn once per process from the
/// operating system's randomness (through the standard library's hasher keys), then a
/// counter. Unique, not secret: nothing is protected by guessing it.
///
/// ```
/// let (a, b) = (rxon_core::messages::unique_id(), rxon_core::messages::unique_id());
/// assert_ne!(a, b);
/// assert_eq!(a.len(), 32);
/// assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
/// ```
pub fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
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
    /// Anything else (1.0b17).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub metadata: Option<Map>,
}

impl WorkerCommand {
    /// A `cancel_task` command.
    pub fn cancel_task(task_id: impl Into<String>, job_id: Option<String>) -> Self {
        WorkerCommand {
            command: CommandName::CancelTask,
            task_id: Some(task_id.into()),
            job_id,
            params: None,
            metadata: None,
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
        #[cfg_attr(feature = "serde", serde(default, deserialize_with = "crate::serde_support::null_as_default"))]
        pub params: Map,
        /// Trace propagation headers (e.g. W3C `traceparent`).
        #[cfg_attr(feature = "serde", serde(default, deserialize_with = "crate::serde_support::null_as_default"))]
        pub tracing_context: BTreeMap<String, String>,
        /// Large inputs held in blob storage, by parameter name.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub params_metadata: Option<BTreeMap<String, FileMetadata>>,
        /// Priority (1.0b17; 0 by default, and then left out).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub priority: f64,
        /// When the result is due, Unix seconds (1.0b17). Any number is accepted and
        /// truncated: avtomatika sends a float.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::serde_support::any_number_as_int"))]
        pub deadline: Option<i64>,
        /// Envelope of the orchestrator (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub security: Option<SecurityContext>,
        /// Anything else (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metadata: Option<Map>,
        /// Send time, Unix seconds (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub timestamp: Option<i64>,
        /// Execution policy, e.g. `allowed_skills` (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub policy: Option<Map>,
        /// The orchestrator's HMAC of the task (1.0b17), checked by a worker holding
        /// the orchestrator's key.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub sig: Option<String>,
        /// Transitions so far (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub step: u64,
        /// Nesting depth (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub depth: u64,
        /// Hash of the parent task (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub parent_hash: Option<String>,
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
    /// The reporting worker (empty when a 1.0b17 peer omits it).
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "crate::serde_support::null_as_default")
    )]
    pub worker_id: String,
    /// Success, failure or cancelled (`success` when absent).
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            skip_serializing_if = "TaskStatus::is_success",
            deserialize_with = "crate::serde_support::null_as_default"
        )
    )]
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
    /// The worker the task first ran on (1.0b17).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub origin_worker_id: Option<String>,
    /// Costs, e.g. `execution_time_seconds` (1.0b17).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub costs: Option<Map>,
    /// Anything else (1.0b17).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub metadata: Option<Map>,
    /// Send time, Unix seconds (1.0b17 envelope; set by the wire layer).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub timestamp: Option<i64>,
    /// The replay key of this message (1.0b17 envelope; set by the wire layer).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub nonce: Option<String>,
    /// Signature (1.0b17 envelope; set by the wire layer).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub security: Option<SecurityContext>,
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
            origin_worker_id: None,
            costs: None,
            metadata: None,
            timestamp: None,
            nonce: None,
            security: None,
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

impl Default for TaskResult {
    fn default() -> Self {
        TaskResult {
            job_id: String::new(),
            task_id: String::new(),
            worker_id: String::new(),
            status: TaskStatus::Success,
            data: None,
            error: None,
            data_metadata: None,
            origin_worker_id: None,
            costs: None,
            metadata: None,
            timestamp: None,
            nonce: None,
            security: None,
        }
    }
}

message! {
    /// A worker's periodic status (`PATCH /_worker/workers/{id}`).
    pub struct Heartbeat {
        /// The worker.
        pub worker_id: String,
        /// `idle`, `busy`, `full`, `draining` or `offline` ([`crate::constants`] `WORKER_STATUS_*`).
        pub status: String,
        /// Current load, conventionally `0.0..=1.0` (1.0b3; a 1.0b17 peer sees
        /// `usage.cpu_load_percent` = load × 100 when `usage` is unset).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "crate::serde_support::is_default", deserialize_with = "crate::serde_support::null_as_default"))]
        pub load: f64,
        /// What the worker uses (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub usage: Option<ResourcesUsage>,
        /// Ids of the tasks the worker is running.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::serde_support::null_as_default"))]
        pub current_tasks: Vec<String>,
        /// The skill catalog; `None` leaves it out (1.0b17 with `skills_hash`), which
        /// a 1.0b3 peer sees as an empty list.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub supported_skills: Option<Vec<SkillInfo>>,
        /// Skills the worker can start now (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub available_skills: Option<Vec<String>>,
        /// Skills that are warm right now.
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub hot_skills: Option<Vec<String>>,
        /// Cached artefacts that make some tasks cheaper here (1.0b3).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "crate::serde_support::null_as_default"))]
        pub hot_cache: Vec<String>,
        /// Which cached artefacts each skill needs (1.0b3).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub skill_dependencies: Option<BTreeMap<String, Vec<String>>>,
        /// Hash of the skill catalog (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub skills_hash: Option<String>,
        /// Anything else (1.0b17).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub metadata: Option<Map>,
        /// Send time, Unix seconds (1.0b17 envelope; set by the wire layer).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub timestamp: Option<i64>,
        /// The replay key of this message (1.0b17 envelope; set by the wire layer).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub nonce: Option<String>,
        /// Signature (1.0b17 envelope; set by the wire layer).
        #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
        pub security: Option<SecurityContext>,
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
