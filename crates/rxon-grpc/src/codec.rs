//! Conversions between the core messages and the protobuf messages of `proto/`.
//!
//! Free-form maps travel as JSON bytes; decoding them is where a peer's bad input is
//! caught, so every `from_pb` returns a `Result` naming the field.

use crate::pb;
use rxon_core::{
    CommandName, DeviceUsage, ErrorCode, FileMetadata, GpuInfo, HardwareDevice, Heartbeat,
    HeartbeatReply, IgnoredReason, InstalledArtifact, Map, ProgressUpdatePayload, RegisterReply,
    Resources, ResourcesUsage, ResultOutcome, SecurityContext, SkillInfo, TaskError, TaskPayload,
    TaskResult, TaskStatus, TokenResponse, WorkerCapabilities, WorkerCommand, WorkerEventPayload,
    WorkerRegistration,
};
use std::collections::{BTreeMap, HashMap};

/// A field that could not be decoded.
pub(crate) type Invalid = String;

fn json(map: &Map) -> Vec<u8> {
    serde_json::to_vec(map).unwrap_or_else(|_| b"{}".to_vec())
}

fn map_from(bytes: &[u8], field: &str) -> Result<Map, Invalid> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("{field}: not a JSON object: {e}"))
}

fn opt_map_from(bytes: Option<&Vec<u8>>, field: &str) -> Result<Option<Map>, Invalid> {
    bytes.map(|b| map_from(b, field)).transpose()
}

fn files_to_pb(
    files: &Option<BTreeMap<String, FileMetadata>>,
) -> HashMap<String, pb::FileMetadata> {
    files
        .iter()
        .flatten()
        .map(|(k, f)| {
            (
                k.clone(),
                pb::FileMetadata {
                    uri: f.uri.clone(),
                    size: f.size,
                    etag: f.etag.clone(),
                    metadata_json: f.metadata.as_ref().map(json),
                },
            )
        })
        .collect()
}

fn files_from_pb(
    files: HashMap<String, pb::FileMetadata>,
) -> Result<Option<BTreeMap<String, FileMetadata>>, Invalid> {
    if files.is_empty() {
        return Ok(None);
    }
    files
        .into_iter()
        .map(|(k, f)| {
            let metadata = opt_map_from(f.metadata_json.as_ref(), &format!("{k}.metadata_json"))?;
            Ok((
                k,
                FileMetadata {
                    uri: f.uri,
                    size: f.size,
                    etag: f.etag,
                    metadata,
                },
            ))
        })
        .collect::<Result<_, Invalid>>()
        .map(Some)
}

fn device_to_pb(d: &HardwareDevice) -> pb::HardwareDevice {
    pb::HardwareDevice {
        r#type: d.device_type.clone(),
        model: d.model.clone(),
        id: d.id.clone(),
        properties_json: d.properties.as_ref().map(json),
        metrics_json: d.metrics.as_ref().map(json),
    }
}

fn device_from_pb(d: pb::HardwareDevice) -> Result<HardwareDevice, Invalid> {
    Ok(HardwareDevice {
        properties: opt_map_from(d.properties_json.as_ref(), "devices.properties_json")?,
        metrics: opt_map_from(d.metrics_json.as_ref(), "devices.metrics_json")?,
        device_type: d.r#type,
        model: d.model,
        id: d.id,
    })
}

fn usage_to_pb(u: &ResourcesUsage) -> pb::ResourcesUsage {
    pb::ResourcesUsage {
        cpu_load_percent: u.cpu_load_percent,
        ram_used_gb: u.ram_used_gb,
        devices_usage: u
            .devices_usage
            .iter()
            .flatten()
            .map(|d| pb::DeviceUsage {
                unit_id: d.unit_id.clone(),
                load_percent: d.load_percent,
                metrics_json: d.metrics.as_ref().map(json),
            })
            .collect(),
    }
}

fn usage_from_pb(u: pb::ResourcesUsage) -> Result<ResourcesUsage, Invalid> {
    let devices = u
        .devices_usage
        .into_iter()
        .map(|d| {
            Ok(DeviceUsage {
                metrics: opt_map_from(d.metrics_json.as_ref(), "usage.metrics_json")?,
                unit_id: d.unit_id,
                load_percent: d.load_percent,
            })
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    Ok(ResourcesUsage {
        cpu_load_percent: u.cpu_load_percent,
        ram_used_gb: u.ram_used_gb,
        devices_usage: (!devices.is_empty()).then_some(devices),
    })
}

fn strings(list: &Option<Vec<String>>) -> Option<pb::StringList> {
    list.clone().map(|values| pb::StringList { values })
}

fn security_to_pb(s: &Option<SecurityContext>) -> Option<pb::SecurityContext> {
    s.as_ref().map(|s| pb::SecurityContext {
        signature: s.signature.clone(),
        signer_id: s.signer_id.clone(),
        identity_chain: s.identity_chain.clone().unwrap_or_default(),
        metadata_json: s.metadata.as_ref().map(json),
    })
}

fn security_from_pb(s: Option<pb::SecurityContext>) -> Result<Option<SecurityContext>, Invalid> {
    s.map(|s| {
        Ok(SecurityContext {
            metadata: opt_map_from(s.metadata_json.as_ref(), "security.metadata_json")?,
            signature: s.signature,
            signer_id: s.signer_id,
            identity_chain: (!s.identity_chain.is_empty()).then_some(s.identity_chain),
        })
    })
    .transpose()
}

fn skill_to_pb(s: &SkillInfo) -> pb::SkillInfo {
    pb::SkillInfo {
        name: s.name.clone(),
        r#type: s.skill_type.clone(),
        description: s.description.clone(),
        version: s.version.clone(),
        input_schema_json: s.input_schema.as_ref().map(json),
        output_schema_json: s.output_schema.as_ref().map(json),
        events_schema_json: s.events_schema.as_ref().map(json),
        output_statuses: strings(&s.output_statuses),
        schema_dialect: if s.schema_dialect == rxon_core::constants::SCHEMA_DIALECT_JSON_SCHEMA {
            String::new()
        } else {
            s.schema_dialect.clone()
        },
        properties_json: s.properties.as_ref().map(json),
    }
}

fn skill_from_pb(s: pb::SkillInfo) -> Result<SkillInfo, Invalid> {
    let field = |what: &str| format!("skills[{:?}].{what}", s.name);
    Ok(SkillInfo {
        input_schema: opt_map_from(s.input_schema_json.as_ref(), &field("input_schema_json"))?,
        output_schema: opt_map_from(s.output_schema_json.as_ref(), &field("output_schema_json"))?,
        events_schema: opt_map_from(s.events_schema_json.as_ref(), &field("events_schema_json"))?,
        properties: opt_map_from(s.properties_json.as_ref(), &field("properties_json"))?,
        schema_dialect: if s.schema_dialect.is_empty() {
            rxon_core::constants::SCHEMA_DIALECT_JSON_SCHEMA.to_owned()
        } else {
            s.schema_dialect
        },
        name: s.name,
        skill_type: s.r#type,
        description: s.description,
        version: s.version,
        output_statuses: s.output_statuses.map(|l| l.values),
    })
}

/// The catalog: the contracts when sent, else the names (a 1.0b3 peer's).
fn catalog_from_pb(
    names: Vec<String>,
    skills: Vec<pb::SkillInfo>,
) -> Result<Vec<SkillInfo>, Invalid> {
    if skills.is_empty() {
        return Ok(SkillInfo::list(names));
    }
    skills.into_iter().map(skill_from_pb).collect()
}

/// Whether a skill says more than its name (then the catalog travels as contracts).
fn has_contract(s: &SkillInfo) -> bool {
    *s != SkillInfo::new(s.name.clone())
}

fn catalog_to_pb(skills: &[SkillInfo]) -> (Vec<String>, Vec<pb::SkillInfo>) {
    let names = skills.iter().map(|s| s.name.clone()).collect();
    let contracts = if skills.iter().any(has_contract) {
        skills.iter().map(skill_to_pb).collect()
    } else {
        Vec::new()
    };
    (names, contracts)
}

pub(crate) fn registration_to_pb(r: &WorkerRegistration) -> pb::WorkerRegistration {
    let (supported_skills, skills) = catalog_to_pb(&r.supported_skills);
    pb::WorkerRegistration {
        worker_id: r.worker_id.clone(),
        worker_type: r.worker_type.clone(),
        supported_skills,
        skills,
        skills_hash: r.skills_hash.clone(),
        available_skills: strings(&r.available_skills),
        hot_skills: strings(&r.hot_skills),
        timestamp: r.timestamp,
        nonce: r.nonce.clone(),
        security: security_to_pb(&r.security),
        resources: Some(pb::Resources {
            max_concurrent_tasks: r.resources.max_concurrent_tasks,
            cpu_cores: r.resources.cpu_cores,
            gpu_info: r.resources.gpu_info.as_ref().map(|g| pb::GpuInfo {
                model: g.model.clone(),
                vram_gb: g.vram_gb,
            }),
            devices: r
                .resources
                .devices
                .iter()
                .flatten()
                .map(device_to_pb)
                .collect(),
            properties_json: r.resources.properties.as_ref().map(json),
        }),
        metadata_json: r.metadata.as_ref().map(json),
        installed_software: r.installed_software.clone().into_iter().collect(),
        installed_models: r
            .installed_artifacts
            .iter()
            .map(|m| pb::InstalledModel {
                name: m.name.clone(),
                version: m.version.clone(),
                r#type: m.artifact_type.clone(),
                properties_json: m.properties.as_ref().map(json),
            })
            .collect(),
        capabilities: Some(pb::WorkerCapabilities {
            hostname: r.capabilities.hostname.clone(),
            ip_address: r.capabilities.ip_address.clone(),
            cost_per_skill: r.capabilities.cost_per_skill.clone().into_iter().collect(),
            s3_config_hash: r.capabilities.s3_config_hash.clone(),
            extra_json: r.capabilities.extra.as_ref().map(json),
        }),
    }
}

pub(crate) fn registration_from_pb(
    r: pb::WorkerRegistration,
) -> Result<WorkerRegistration, Invalid> {
    let resources = r.resources.unwrap_or_default();
    let caps = r.capabilities.unwrap_or_default();
    Ok(WorkerRegistration {
        worker_id: r.worker_id,
        worker_type: r.worker_type,
        supported_skills: catalog_from_pb(r.supported_skills, r.skills)?,
        skills_hash: r.skills_hash,
        available_skills: r.available_skills.map(|l| l.values),
        hot_skills: r.hot_skills.map(|l| l.values),
        timestamp: r.timestamp,
        nonce: r.nonce,
        security: security_from_pb(r.security)?,
        resources: Resources {
            max_concurrent_tasks: resources.max_concurrent_tasks,
            cpu_cores: resources.cpu_cores,
            gpu_info: resources.gpu_info.map(|g| GpuInfo {
                model: g.model,
                vram_gb: g.vram_gb,
            }),
            devices: if resources.devices.is_empty() {
                None
            } else {
                Some(
                    resources
                        .devices
                        .into_iter()
                        .map(device_from_pb)
                        .collect::<Result<_, _>>()?,
                )
            },
            properties: opt_map_from(
                resources.properties_json.as_ref(),
                "resources.properties_json",
            )?,
        },
        metadata: opt_map_from(r.metadata_json.as_ref(), "metadata_json")?,
        installed_software: r.installed_software.into_iter().collect(),
        installed_artifacts: r
            .installed_models
            .into_iter()
            .map(|m| {
                Ok::<_, Invalid>(InstalledArtifact {
                    properties: opt_map_from(
                        m.properties_json.as_ref(),
                        "installed_models.properties_json",
                    )?,
                    name: m.name,
                    version: m.version,
                    artifact_type: m.r#type,
                })
            })
            .collect::<Result<_, _>>()?,
        capabilities: WorkerCapabilities {
            hostname: caps.hostname,
            ip_address: caps.ip_address,
            cost_per_skill: caps.cost_per_skill.into_iter().collect(),
            s3_config_hash: caps.s3_config_hash,
            extra: opt_map_from(caps.extra_json.as_ref(), "capabilities.extra_json")?,
        },
    })
}

pub(crate) fn register_reply_to_pb(r: &RegisterReply) -> pb::RegisterReply {
    pb::RegisterReply {
        status: r.status.clone(),
        version: r.version.clone(),
        warning: r.warning.clone(),
        extra_json: if r.extra.is_empty() {
            Vec::new()
        } else {
            json(&r.extra)
        },
    }
}

pub(crate) fn register_reply_from_pb(r: pb::RegisterReply) -> Result<RegisterReply, Invalid> {
    Ok(RegisterReply {
        status: r.status,
        version: r.version,
        warning: r.warning,
        extra: map_from(&r.extra_json, "extra_json")?,
    })
}

pub(crate) fn task_to_pb(t: &TaskPayload) -> pb::TaskPayload {
    pb::TaskPayload {
        job_id: t.job_id.clone(),
        task_id: t.task_id.clone(),
        r#type: t.task_type.clone(),
        params_json: json(&t.params),
        tracing_context: t.tracing_context.clone().into_iter().collect(),
        params_metadata: files_to_pb(&t.params_metadata),
        priority: t.priority,
        deadline: t.deadline,
        policy_json: t.policy.as_ref().map(json),
        metadata_json: t.metadata.as_ref().map(json),
        timestamp: t.timestamp,
        sig: t.sig.clone(),
        step: t.step,
        depth: t.depth,
        parent_hash: t.parent_hash.clone(),
        security: security_to_pb(&t.security),
    }
}

pub(crate) fn task_from_pb(t: pb::TaskPayload) -> Result<TaskPayload, Invalid> {
    Ok(TaskPayload {
        job_id: t.job_id,
        task_id: t.task_id,
        task_type: t.r#type,
        params: map_from(&t.params_json, "params_json")?,
        tracing_context: t.tracing_context.into_iter().collect(),
        params_metadata: files_from_pb(t.params_metadata)?,
        priority: t.priority,
        deadline: t.deadline,
        policy: opt_map_from(t.policy_json.as_ref(), "policy_json")?,
        metadata: opt_map_from(t.metadata_json.as_ref(), "metadata_json")?,
        timestamp: t.timestamp,
        sig: t.sig,
        step: t.step,
        depth: t.depth,
        parent_hash: t.parent_hash,
        security: security_from_pb(t.security)?,
    })
}

pub(crate) fn result_to_pb(r: &TaskResult) -> pb::TaskResult {
    pb::TaskResult {
        job_id: r.job_id.clone(),
        task_id: r.task_id.clone(),
        worker_id: r.worker_id.clone(),
        status: r.status.as_str().to_owned(),
        data_json: r.data.as_ref().map(json),
        error: r.error.as_ref().map(|e| pb::TaskError {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            details_json: e.details.as_ref().map(json),
        }),
        data_metadata: files_to_pb(&r.data_metadata),
        origin_worker_id: r.origin_worker_id.clone(),
        costs_json: r.costs.as_ref().map(json),
        metadata_json: r.metadata.as_ref().map(json),
        timestamp: r.timestamp,
        nonce: r.nonce.clone(),
        security: security_to_pb(&r.security),
    }
}

pub(crate) fn result_from_pb(r: pb::TaskResult) -> Result<TaskResult, Invalid> {
    Ok(TaskResult {
        job_id: r.job_id,
        task_id: r.task_id,
        worker_id: r.worker_id,
        status: TaskStatus::from(r.status),
        data: opt_map_from(r.data_json.as_ref(), "data_json")?,
        error: r
            .error
            .map(|e| {
                Ok::<_, Invalid>(TaskError {
                    code: ErrorCode::from(e.code),
                    message: e.message,
                    details: opt_map_from(e.details_json.as_ref(), "error.details_json")?,
                })
            })
            .transpose()?,
        data_metadata: files_from_pb(r.data_metadata)?,
        origin_worker_id: r.origin_worker_id,
        costs: opt_map_from(r.costs_json.as_ref(), "costs_json")?,
        metadata: opt_map_from(r.metadata_json.as_ref(), "metadata_json")?,
        timestamp: r.timestamp,
        nonce: r.nonce,
        security: security_from_pb(r.security)?,
    })
}

pub(crate) fn outcome_to_pb(o: &ResultOutcome) -> pb::ResultReply {
    match o {
        ResultOutcome::Ignored { reason, message } => pb::ResultReply {
            status: "ignored".into(),
            reason: Some(reason.as_str().to_owned()),
            message: message.clone(),
        },
        _ => pb::ResultReply {
            status: "accepted".into(),
            reason: None,
            message: None,
        },
    }
}

pub(crate) fn outcome_from_pb(r: pb::ResultReply) -> ResultOutcome {
    if r.status == "ignored" {
        ResultOutcome::Ignored {
            reason: IgnoredReason::from(r.reason.unwrap_or_else(|| "unspecified".into())),
            message: r.message,
        }
    } else {
        ResultOutcome::Accepted
    }
}

pub(crate) fn heartbeat_to_pb(h: &Heartbeat) -> pb::Heartbeat {
    let (supported_skills, skills) =
        catalog_to_pb(h.supported_skills.as_deref().unwrap_or_default());
    pb::Heartbeat {
        worker_id: h.worker_id.clone(),
        status: h.status.clone(),
        load: h.load,
        current_tasks: h.current_tasks.clone(),
        supported_skills,
        skills,
        skills_hash: h.skills_hash.clone(),
        available_skills: strings(&h.available_skills),
        catalog_omitted: h.supported_skills.is_none(),
        usage: h.usage.as_ref().map(usage_to_pb),
        metadata_json: h.metadata.as_ref().map(json),
        timestamp: h.timestamp,
        nonce: h.nonce.clone(),
        security: security_to_pb(&h.security),
        hot_cache: h.hot_cache.clone(),
        skill_dependencies: h
            .skill_dependencies
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), pb::StringList { values: v.clone() }))
            .collect(),
        hot_skills: h.hot_skills.clone().map(|values| pb::StringList { values }),
    }
}

pub(crate) fn heartbeat_from_pb(h: pb::Heartbeat) -> Result<Heartbeat, Invalid> {
    Ok(Heartbeat {
        worker_id: h.worker_id,
        status: h.status,
        load: h.load,
        current_tasks: h.current_tasks,
        supported_skills: if h.catalog_omitted {
            None
        } else {
            Some(catalog_from_pb(h.supported_skills, h.skills)?)
        },
        skills_hash: h.skills_hash,
        available_skills: h.available_skills.map(|l| l.values),
        usage: h.usage.map(usage_from_pb).transpose()?,
        metadata: opt_map_from(h.metadata_json.as_ref(), "metadata_json")?,
        timestamp: h.timestamp,
        nonce: h.nonce,
        security: security_from_pb(h.security)?,
        hot_cache: h.hot_cache,
        skill_dependencies: (!h.skill_dependencies.is_empty()).then(|| {
            h.skill_dependencies
                .into_iter()
                .map(|(k, v)| (k, v.values))
                .collect()
        }),
        hot_skills: h.hot_skills.map(|l| l.values),
    })
}

pub(crate) fn heartbeat_reply_to_pb(r: &HeartbeatReply) -> pb::HeartbeatReply {
    pb::HeartbeatReply {
        cancel_task_ids: r.cancel_task_ids.clone(),
        require_full_sync: r.require_full_sync,
        extra_json: if r.extra.is_empty() {
            Vec::new()
        } else {
            json(&r.extra)
        },
    }
}

pub(crate) fn heartbeat_reply_from_pb(r: pb::HeartbeatReply) -> Result<HeartbeatReply, Invalid> {
    Ok(HeartbeatReply {
        cancel_task_ids: r.cancel_task_ids,
        require_full_sync: r.require_full_sync,
        extra: map_from(&r.extra_json, "extra_json")?,
    })
}

pub(crate) fn progress_to_pb(p: &ProgressUpdatePayload) -> pb::ProgressUpdate {
    pb::ProgressUpdate {
        event: p.event.clone(),
        task_id: p.task_id.clone(),
        job_id: p.job_id.clone(),
        progress: p.progress,
        message: p.message.clone(),
    }
}

pub(crate) fn progress_from_pb(p: pb::ProgressUpdate) -> ProgressUpdatePayload {
    ProgressUpdatePayload {
        event: p.event,
        task_id: p.task_id,
        job_id: p.job_id,
        progress: p.progress,
        message: p.message,
    }
}

pub(crate) fn event_to_pb(e: &WorkerEventPayload) -> pb::WorkerEvent {
    pb::WorkerEvent {
        event_id: e.event_id.clone(),
        worker_id: e.worker_id.clone(),
        origin_worker_id: e.origin_worker_id.clone(),
        event_type: e.event_type.clone(),
        payload_json: json(&e.payload),
        origin_task_id: e.origin_task_id.clone(),
        target_job_id: e.target_job_id.clone(),
        target_task_id: e.target_task_id.clone(),
        trace_context: e
            .trace_context
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        priority: e.priority,
        bubbling_chain: e.bubbling_chain.clone().unwrap_or_default(),
        metadata_json: e.metadata.as_ref().map(json),
        timestamp: e.timestamp,
        security: security_to_pb(&e.security),
    }
}

pub(crate) fn event_from_pb(e: pb::WorkerEvent) -> Result<WorkerEventPayload, Invalid> {
    Ok(WorkerEventPayload {
        payload: map_from(&e.payload_json, "payload_json")?,
        metadata: opt_map_from(e.metadata_json.as_ref(), "metadata_json")?,
        event_id: e.event_id,
        worker_id: e.worker_id,
        origin_worker_id: e.origin_worker_id,
        event_type: e.event_type,
        origin_task_id: e.origin_task_id,
        target_job_id: e.target_job_id,
        target_task_id: e.target_task_id,
        trace_context: (!e.trace_context.is_empty()).then(|| e.trace_context.into_iter().collect()),
        priority: e.priority,
        bubbling_chain: (!e.bubbling_chain.is_empty()).then_some(e.bubbling_chain),
        timestamp: e.timestamp,
        security: security_from_pb(e.security)?,
    })
}

pub(crate) fn token_to_pb(t: &TokenResponse) -> pb::TokenResponse {
    pb::TokenResponse {
        access_token: t.access_token.clone(),
        expires_in: t.expires_in,
        worker_id: t.worker_id.clone(),
        refresh_token: t.refresh_token.clone(),
    }
}

pub(crate) fn token_from_pb(t: pb::TokenResponse) -> TokenResponse {
    TokenResponse {
        access_token: t.access_token,
        expires_in: t.expires_in,
        worker_id: t.worker_id,
        refresh_token: t.refresh_token,
        ..Default::default()
    }
}

pub(crate) fn command_to_pb(c: &WorkerCommand) -> pb::WorkerCommand {
    pb::WorkerCommand {
        command: c.command.as_str().to_owned(),
        task_id: c.task_id.clone(),
        job_id: c.job_id.clone(),
        params_json: c.params.as_ref().map(json),
    }
}

pub(crate) fn command_from_pb(c: pb::WorkerCommand) -> Result<WorkerCommand, Invalid> {
    Ok(WorkerCommand {
        command: CommandName::from(c.command),
        task_id: c.task_id,
        job_id: c.job_id,
        params: opt_map_from(c.params_json.as_ref(), "params_json")?,
        metadata: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxon_core::Value;

    /// Every 1.0b17 field travels: the protobuf round trip gives back the message
    /// (a transport dropping one would fail the envelope check too).
    #[test]
    fn every_1b17_field_survives_the_protobuf_round_trip() {
        use rxon_core::map;
        let security = Some(SecurityContext {
            signature: Some("ab".into()),
            signer_id: Some("w".into()),
            identity_chain: Some(vec!["a".into()]),
            metadata: Some(map! {"k": 1}),
        });
        let mut skill = SkillInfo::new("echo");
        skill.version = Some("2".into());
        skill.input_schema = Some(map! {"type": "object"});
        let registration = WorkerRegistration {
            worker_id: "w".into(),
            worker_type: "gpu".into(),
            supported_skills: vec![skill],
            available_skills: Some(vec!["echo".into()]),
            hot_skills: Some(vec!["echo".into()]),
            resources: Resources {
                max_concurrent_tasks: 2,
                cpu_cores: 8,
                devices: Some(vec![HardwareDevice {
                    device_type: "gpu".into(),
                    model: Some("A100".into()),
                    id: Some("0".into()),
                    properties: Some(map! {"vram_gb": 80}),
                    metrics: Some(map! {"temp": 40.5}),
                }]),
                properties: Some(map! {"ram_gb": 64}),
                ..Default::default()
            },
            installed_artifacts: vec![InstalledArtifact {
                name: "llama".into(),
                version: "7b".into(),
                artifact_type: Some("model".into()),
                properties: Some(map! {"quant": "q4"}),
            }],
            skills_hash: Some("h".into()),
            metadata: Some(map! {"m": true}),
            timestamp: Some(1),
            nonce: Some("n".into()),
            security: security.clone(),
            ..Default::default()
        };
        assert_eq!(
            registration_from_pb(registration_to_pb(&registration)).unwrap(),
            registration
        );
        let heartbeat = Heartbeat {
            worker_id: "w".into(),
            status: "busy".into(),
            usage: Some(ResourcesUsage {
                cpu_load_percent: 50.0,
                ram_used_gb: 3.5,
                devices_usage: Some(vec![DeviceUsage {
                    unit_id: "0".into(),
                    load_percent: 90.0,
                    metrics: Some(map! {"w": 300}),
                }]),
            }),
            current_tasks: vec!["t".into()],
            supported_skills: None,
            skills_hash: Some("h".into()),
            metadata: Some(map! {"m": 1}),
            timestamp: Some(2),
            nonce: Some("n".into()),
            security: security.clone(),
            ..Default::default()
        };
        assert_eq!(
            heartbeat_from_pb(heartbeat_to_pb(&heartbeat)).unwrap(),
            heartbeat
        );
        let task = TaskPayload {
            job_id: "j".into(),
            task_id: "t".into(),
            task_type: "echo".into(),
            params: map! {"x": 1},
            params_metadata: Some(
                [(
                    "in".to_owned(),
                    FileMetadata {
                        uri: "s3://b/k".into(),
                        size: 3,
                        etag: Some("e".into()),
                        metadata: Some(map! {"ct": "text/plain"}),
                    },
                )]
                .into(),
            ),
            priority: 2.5,
            deadline: Some(99),
            security: security.clone(),
            metadata: Some(map! {"m": 1}),
            timestamp: Some(3),
            policy: Some(map! {"allowed_skills": ["echo"]}),
            sig: Some("s".into()),
            step: 4,
            depth: 1,
            parent_hash: Some("p".into()),
            ..Default::default()
        };
        assert_eq!(task_from_pb(task_to_pb(&task)).unwrap(), task);
        let mut result = TaskResult::success(&task, "w", map! {"ok": true});
        result.origin_worker_id = Some("w0".into());
        result.costs = Some(map! {"execution_time_seconds": 0.2});
        result.metadata = Some(map! {"m": 1});
        result.timestamp = Some(4);
        result.nonce = Some("n".into());
        result.security = security;
        assert_eq!(result_from_pb(result_to_pb(&result)).unwrap(), result);
        let token = TokenResponse {
            access_token: "a".into(),
            expires_in: 60,
            worker_id: "w".into(),
            refresh_token: Some("r".into()),
            ..Default::default()
        };
        assert_eq!(token_from_pb(token_to_pb(&token)), token);
    }

    #[test]
    fn messages_survive_the_protobuf_round_trip() {
        let mut params = Map::new();
        params.insert("big".into(), Value::from(u64::MAX));
        params.insert("neg".into(), Value::from(-3i64));
        params.insert("x".into(), Value::from(vec![Value::Null, Value::from(1.5)]));
        let task = TaskPayload {
            job_id: "j".into(),
            task_id: "t".into(),
            task_type: "echo".into(),
            params,
            tracing_context: [("traceparent".to_string(), "00-a-b-01".to_string())].into(),
            params_metadata: Some(
                [(
                    "in".to_string(),
                    FileMetadata {
                        uri: "s3://b/k".into(),
                        size: 9,
                        etag: None,
                        metadata: None,
                    },
                )]
                .into(),
            ),
            ..Default::default()
        };
        let back = task_from_pb(task_to_pb(&task)).unwrap();
        assert_eq!(back, task);
        assert_eq!(
            back.params["big"].as_u64(),
            Some(u64::MAX),
            "integers stay exact"
        );

        let mut result = TaskResult::failure(
            &task,
            "w",
            TaskError::new(ErrorCode::Other("X_ERR".into()), "m"),
        );
        result.status = TaskStatus::Other("partial".into());
        assert_eq!(result_from_pb(result_to_pb(&result)).unwrap(), result);

        let hb = Heartbeat {
            worker_id: "w".into(),
            // proto v1 carries the catalog as a list of names, always present.
            supported_skills: Some(vec![]),
            hot_skills: Some(vec![]),
            skill_dependencies: Some([("a".to_string(), vec!["m".to_string()])].into()),
            ..Default::default()
        };
        assert_eq!(heartbeat_from_pb(heartbeat_to_pb(&hb)).unwrap(), hb);
        let ignored = ResultOutcome::ignored(IgnoredReason::Other("job_paused".into()), "m");
        assert_eq!(outcome_from_pb(outcome_to_pb(&ignored)), ignored);
        let cmd = WorkerCommand::cancel_task("t", Some("j".into()));
        assert_eq!(command_from_pb(command_to_pb(&cmd)).unwrap(), cmd);
        let reg = WorkerRegistration {
            worker_id: "w".into(),
            resources: Resources {
                max_concurrent_tasks: 2,
                cpu_cores: 4,
                gpu_info: Some(GpuInfo {
                    model: "A".into(),
                    vram_gb: 8,
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(registration_from_pb(registration_to_pb(&reg)).unwrap(), reg);
    }

    #[test]
    fn bad_json_fields_are_named() {
        let mut pb = task_to_pb(&TaskPayload::default());
        pb.params_json = b"[1,2]".to_vec();
        let err = task_from_pb(pb).unwrap_err();
        assert!(err.contains("params_json"), "{err}");
    }
}

#[cfg(test)]
mod props {
    //! gRPC messages are what a peer controls: any bytes decode to a message or an error,
    //! and any decoded message converts to an RXON message or an error; never a panic.
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn any_bytes_decode_and_convert_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(m) = pb::WorkerRegistration::decode(bytes.as_slice()) { let _ = registration_from_pb(m); }
            if let Ok(m) = pb::RegisterReply::decode(bytes.as_slice()) { let _ = register_reply_from_pb(m); }
            if let Ok(m) = pb::TaskPayload::decode(bytes.as_slice()) { let _ = task_from_pb(m); }
            if let Ok(m) = pb::TaskResult::decode(bytes.as_slice()) { let _ = result_from_pb(m); }
            if let Ok(m) = pb::ResultReply::decode(bytes.as_slice()) { let _ = outcome_from_pb(m); }
            if let Ok(m) = pb::Heartbeat::decode(bytes.as_slice()) { let _ = heartbeat_from_pb(m); }
            if let Ok(m) = pb::WorkerEvent::decode(bytes.as_slice()) { let _ = event_from_pb(m); }
            if let Ok(m) = pb::HeartbeatReply::decode(bytes.as_slice()) { let _ = heartbeat_reply_from_pb(m); }
            if let Ok(m) = pb::ProgressUpdate::decode(bytes.as_slice()) { let _ = progress_from_pb(m); }
            if let Ok(m) = pb::TokenResponse::decode(bytes.as_slice()) { let _ = token_from_pb(m); }
            if let Ok(m) = pb::WorkerCommand::decode(bytes.as_slice()) { let _ = command_from_pb(m); }
        }

        /// The free-form maps travel as JSON bytes inside protobuf: any bytes there are
        /// refused cleanly too.
        #[test]
        fn any_bytes_in_the_json_fields(params in prop::collection::vec(any::<u8>(), 0..256)) {
            let m = pb::TaskPayload { params_json: params, ..Default::default() };
            let _ = task_from_pb(m);
        }
    }
}
