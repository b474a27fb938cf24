//! The 1.0b3 shapes, exactly as the seed's reference writes and reads them: every
//! field the reference requires is present, optional ones are omitted when unset,
//! skills are names.

use rxon_core::{
    CommandName, ErrorCode, FileMetadata, GpuInfo, Heartbeat, InstalledArtifact, Map, Resources,
    SkillInfo, TaskError, TaskPayload, TaskResult, TaskStatus, TokenResponse, WorkerCapabilities,
    WorkerCommand, WorkerRegistration,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a model writes as in 1.0b3: an owned shape, or (on the hot path of a cycle,
/// tasks and results) one borrowing the message.
pub(crate) trait B3View {
    type View<'a>: Serialize
    where
        Self: 'a;
    fn b3_view(&self) -> Self::View<'_>;
}

macro_rules! owned_view {
    ($($t:ty => $b3:ty),* $(,)?) => {$(
        impl B3View for $t {
            type View<'a> = $b3;
            fn b3_view(&self) -> $b3 {
                <$b3>::from(self)
            }
        }
    )*};
}

owned_view!(
    WorkerRegistration => B3Registration,
    Heartbeat => B3Heartbeat,
    TokenResponse => B3Token,
    WorkerCommand => B3Command,
);

impl B3View for TaskPayload {
    type View<'a> = B3TaskRef<'a>;
    fn b3_view(&self) -> B3TaskRef<'_> {
        B3TaskRef {
            job_id: &self.job_id,
            task_id: &self.task_id,
            task_type: &self.task_type,
            params: &self.params,
            tracing_context: &self.tracing_context,
            params_metadata: self.params_metadata.as_ref().map(FilesRef),
        }
    }
}

impl B3View for TaskResult {
    type View<'a> = B3ResultRef<'a>;
    fn b3_view(&self) -> B3ResultRef<'_> {
        B3ResultRef {
            job_id: &self.job_id,
            task_id: &self.task_id,
            worker_id: &self.worker_id,
            status: &self.status,
            data: self.data.as_ref(),
            error: self.error.as_ref().map(|e| B3ErrorRef {
                code: &e.code,
                message: &e.message,
                details: e.details.as_ref(),
            }),
            data_metadata: self.data_metadata.as_ref().map(FilesRef),
        }
    }
}

/// A 1.0b3 task, borrowed.
#[derive(Serialize)]
pub(crate) struct B3TaskRef<'a> {
    job_id: &'a str,
    task_id: &'a str,
    #[serde(rename = "type")]
    task_type: &'a str,
    params: &'a Map,
    tracing_context: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params_metadata: Option<FilesRef<'a>>,
}

/// A 1.0b3 result, borrowed.
#[derive(Serialize)]
pub(crate) struct B3ResultRef<'a> {
    job_id: &'a str,
    task_id: &'a str,
    worker_id: &'a str,
    status: &'a TaskStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Map>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<B3ErrorRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_metadata: Option<FilesRef<'a>>,
}

#[derive(Serialize)]
pub(crate) struct B3ErrorRef<'a> {
    code: &'a ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Map>,
}

/// Blob references in their 1.0b3 shape (`uri`, `size`, `etag`), borrowed.
pub(crate) struct FilesRef<'a>(&'a BTreeMap<String, FileMetadata>);

impl Serialize for FilesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct File<'a> {
            uri: &'a str,
            size: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            etag: Option<&'a String>,
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, f) in self.0 {
            m.serialize_entry(
                k,
                &File {
                    uri: &f.uri,
                    size: f.size,
                    etag: f.etag.as_ref(),
                },
            )?;
        }
        m.end()
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Resources {
    max_concurrent_tasks: u32,
    cpu_cores: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gpu_info: Option<GpuInfo>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Model {
    name: String,
    version: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Capabilities {
    hostname: String,
    ip_address: String,
    cost_per_skill: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s3_config_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<Map>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Registration {
    worker_id: String,
    worker_type: String,
    supported_skills: Vec<String>,
    resources: B3Resources,
    installed_software: BTreeMap<String, String>,
    installed_models: Vec<B3Model>,
    capabilities: B3Capabilities,
}

impl From<&WorkerRegistration> for B3Registration {
    fn from(r: &WorkerRegistration) -> Self {
        B3Registration {
            worker_id: r.worker_id.clone(),
            worker_type: r.worker_type.clone(),
            supported_skills: names(&r.supported_skills),
            resources: B3Resources {
                max_concurrent_tasks: r.resources.max_concurrent_tasks,
                cpu_cores: r.resources.cpu_cores,
                gpu_info: r.resources.gpu_info.clone(),
            },
            installed_software: r.installed_software.clone(),
            installed_models: r
                .installed_artifacts
                .iter()
                .map(|a| B3Model {
                    name: a.name.clone(),
                    version: a.version.clone(),
                })
                .collect(),
            capabilities: B3Capabilities {
                hostname: r.capabilities.hostname.clone(),
                ip_address: r.capabilities.ip_address.clone(),
                cost_per_skill: r.capabilities.cost_per_skill.clone(),
                s3_config_hash: r.capabilities.s3_config_hash.clone(),
                extra: r.capabilities.extra.clone(),
            },
        }
    }
}

impl From<B3Registration> for WorkerRegistration {
    fn from(r: B3Registration) -> Self {
        WorkerRegistration {
            worker_id: r.worker_id,
            worker_type: r.worker_type,
            supported_skills: SkillInfo::list(r.supported_skills),
            resources: Resources {
                max_concurrent_tasks: r.resources.max_concurrent_tasks,
                cpu_cores: r.resources.cpu_cores,
                gpu_info: r.resources.gpu_info,
                ..Default::default()
            },
            installed_software: r.installed_software,
            installed_artifacts: r
                .installed_models
                .into_iter()
                .map(|m| InstalledArtifact::new(m.name, m.version))
                .collect(),
            capabilities: WorkerCapabilities {
                hostname: r.capabilities.hostname,
                ip_address: r.capabilities.ip_address,
                cost_per_skill: r.capabilities.cost_per_skill,
                s3_config_hash: r.capabilities.s3_config_hash,
                extra: r.capabilities.extra,
            },
            ..Default::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Heartbeat {
    worker_id: String,
    status: String,
    load: f64,
    current_tasks: Vec<String>,
    supported_skills: Vec<String>,
    hot_cache: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skill_dependencies: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hot_skills: Option<Vec<String>>,
}

impl From<&Heartbeat> for B3Heartbeat {
    fn from(h: &Heartbeat) -> Self {
        B3Heartbeat {
            worker_id: h.worker_id.clone(),
            status: h.status.clone(),
            load: h.load,
            current_tasks: h.current_tasks.clone(),
            supported_skills: h.supported_skills.as_deref().map(names).unwrap_or_default(),
            hot_cache: h.hot_cache.clone(),
            skill_dependencies: h.skill_dependencies.clone(),
            hot_skills: h.hot_skills.clone(),
        }
    }
}

impl From<B3Heartbeat> for Heartbeat {
    fn from(h: B3Heartbeat) -> Self {
        Heartbeat {
            worker_id: h.worker_id,
            status: h.status,
            load: h.load,
            current_tasks: h.current_tasks,
            supported_skills: Some(SkillInfo::list(h.supported_skills)),
            hot_skills: h.hot_skills,
            hot_cache: h.hot_cache,
            skill_dependencies: h.skill_dependencies,
            ..Default::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3File {
    uri: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
}

fn files_in(f: Option<BTreeMap<String, B3File>>) -> Option<BTreeMap<String, FileMetadata>> {
    f.map(|m| {
        m.into_iter()
            .map(|(k, f)| {
                (
                    k,
                    FileMetadata {
                        uri: f.uri,
                        size: f.size,
                        etag: f.etag,
                        metadata: None,
                    },
                )
            })
            .collect()
    })
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Task {
    job_id: String,
    task_id: String,
    #[serde(rename = "type")]
    task_type: String,
    params: Map,
    tracing_context: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params_metadata: Option<BTreeMap<String, B3File>>,
}

impl From<B3Task> for TaskPayload {
    fn from(t: B3Task) -> Self {
        TaskPayload {
            job_id: t.job_id,
            task_id: t.task_id,
            task_type: t.task_type,
            params: t.params,
            tracing_context: t.tracing_context,
            params_metadata: files_in(t.params_metadata),
            ..Default::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Result {
    job_id: String,
    task_id: String,
    worker_id: String,
    status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Map>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<B3Error>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_metadata: Option<BTreeMap<String, B3File>>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Error {
    code: ErrorCode,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Map>,
}

impl From<B3Result> for TaskResult {
    fn from(r: B3Result) -> Self {
        TaskResult {
            job_id: r.job_id,
            task_id: r.task_id,
            worker_id: r.worker_id,
            status: r.status,
            data: r.data,
            error: r.error.map(|e| TaskError {
                code: e.code,
                message: e.message,
                details: e.details,
            }),
            data_metadata: files_in(r.data_metadata),
            ..Default::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Token {
    access_token: String,
    expires_in: u64,
    worker_id: String,
}

impl From<&TokenResponse> for B3Token {
    fn from(t: &TokenResponse) -> Self {
        B3Token {
            access_token: t.access_token.clone(),
            expires_in: t.expires_in,
            worker_id: t.worker_id.clone(),
        }
    }
}

impl From<B3Token> for TokenResponse {
    fn from(t: B3Token) -> Self {
        TokenResponse {
            access_token: t.access_token,
            expires_in: t.expires_in,
            worker_id: t.worker_id,
            ..Default::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct B3Command {
    command: CommandName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<Map>,
}

impl From<&WorkerCommand> for B3Command {
    fn from(c: &WorkerCommand) -> Self {
        B3Command {
            command: c.command.clone(),
            task_id: c.task_id.clone(),
            job_id: c.job_id.clone(),
            params: c.params.clone(),
        }
    }
}

impl From<B3Command> for WorkerCommand {
    fn from(c: B3Command) -> Self {
        WorkerCommand {
            command: c.command,
            task_id: c.task_id,
            job_id: c.job_id,
            params: c.params,
            metadata: None,
        }
    }
}

fn names(skills: &[SkillInfo]) -> Vec<String> {
    skills.iter().map(|s| s.name.clone()).collect()
}
