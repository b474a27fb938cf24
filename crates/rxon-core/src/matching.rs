//! Resource matching (1.0b17): whether a worker meets a task's
//! [`ResourceRequirements`], with the reference's rules (`models.py::*.matches` and
//! avtomatika's `_check_worker_compliance`):
//!
//! - a required **property** (of the resources, a device, an artifact) must be present;
//!   a required number is a minimum (`worker >= required`); a required list is a set of
//!   acceptable values (the worker's value is one of them, or the worker's list shares
//!   one); a worker's list must include a required single value; anything else must be
//!   equal;
//! - each required **device** needs its own worker device: same `type` and `id` when
//!   given, the required `model` a case-insensitive substring of the worker's, and the
//!   properties as above;
//! - each required **artifact** needs one of that name, of that version unless the
//!   required version is `"unknown"`, with the properties as above;
//! - required **software** must be installed, at that version unless `"any"`;
//! - the worker's **skill** must have the required `version` and `type` when given;
//! - required **extra capabilities** must equal the worker's `capabilities.extra`.
//!
//! A worker's 1.0b3 fields count too: `cpu_cores` and `max_concurrent_tasks` are
//! properties, `gpu_info` a `"gpu"` device (with a `vram_gb` property), as a 1.0b17 peer
//! sees them.
//!
//! ```
//! use rxon_core::matching::ResourceRequirements;
//! use rxon_core::{map, GpuInfo, Resources, SkillInfo, WorkerRegistration};
//! let worker = WorkerRegistration {
//!     worker_id: "w".into(),
//!     resources: Resources {
//!         cpu_cores: 16,
//!         gpu_info: Some(GpuInfo { model: "NVIDIA A100-SXM4".into(), vram_gb: 80 }),
//!         ..Default::default()
//!     },
//!     ..Default::default()
//! };
//! let mut needs = ResourceRequirements::default();
//! needs.resources.properties = Some(map! {"cpu_cores": 8});
//! needs.resources.devices = Some(vec![rxon_core::HardwareDevice {
//!     device_type: "gpu".into(),
//!     model: Some("a100".into()),
//!     properties: Some(map! {"vram_gb": 40}),
//!     ..Default::default()
//! }]);
//! assert!(needs.check(&worker, &SkillInfo::new("train")).is_ok());
//! needs.resources.properties = Some(map! {"cpu_cores": 32});
//! let why = needs.check(&worker, &SkillInfo::new("train")).unwrap_err();
//! assert!(why.contains("cpu_cores"), "{why}");
//! ```

use crate::messages::{
    HardwareDevice, InstalledArtifact, Resources, SkillInfo, WorkerRegistration,
};
use crate::value::{Map, Value};
use std::collections::BTreeMap;

/// What a task needs from the worker that runs it. Empty (the [`Default`]) needs
/// nothing.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct ResourceRequirements {
    /// Devices and properties; its 1.0b3 fields count as they do for a worker
    /// (`cpu_cores: 8` is the property `cpu_cores >= 8`, `gpu_info` a required GPU).
    pub resources: Resources,
    /// Artifacts that must be installed.
    pub installed_artifacts: Vec<InstalledArtifact>,
    /// Software that must be installed: name → version, or `"any"`.
    pub installed_software: BTreeMap<String, String>,
    /// The skill's required version.
    pub skill_version: Option<String>,
    /// The skill's required type.
    pub skill_type: Option<String>,
    /// Values `capabilities.extra` must hold.
    pub extra_requirements: Map,
}

impl ResourceRequirements {
    /// Whether nothing is required.
    pub fn is_empty(&self) -> bool {
        *self == ResourceRequirements::default()
    }

    /// Whether `worker` (its registration) meets these requirements with `skill` (its
    /// catalog entry for the task's type); `Err` says the first requirement it misses.
    pub fn check(&self, worker: &WorkerRegistration, skill: &SkillInfo) -> Result<(), String> {
        let wanted = devices_of(&self.resources);
        if !wanted.is_empty() {
            let mut free = devices_of(&worker.resources);
            for want in &wanted {
                match free.iter().position(|d| device_meets(d, want)) {
                    // Each required device takes its own worker device.
                    Some(i) => drop(free.swap_remove(i)),
                    None => return Err(format!("no free device matches {}", describe(want))),
                }
            }
        }
        let wanted = properties_of(&self.resources);
        if !wanted.is_empty() {
            let mine = properties_of(&worker.resources);
            properties_meet(&mine, &wanted).map_err(|e| format!("resources: {e}"))?;
        }
        for want in &self.installed_artifacts {
            if !worker
                .installed_artifacts
                .iter()
                .any(|a| artifact_meets(a, want))
            {
                return Err(if want.version == "unknown" {
                    format!("missing artifact {:?}", want.name)
                } else {
                    format!(
                        "missing artifact {:?} version {:?}",
                        want.name, want.version
                    )
                });
            }
        }
        for (name, version) in &self.installed_software {
            match worker.installed_software.get(name) {
                None => return Err(format!("missing software {name:?}")),
                Some(v) if version != "any" && v != version => {
                    return Err(format!("software {name:?} is {v:?}, not {version:?}"));
                }
                Some(_) => {}
            }
        }
        if let Some(version) = &self.skill_version
            && skill.version.as_ref() != Some(version)
        {
            return Err(format!(
                "skill {:?} is version {:?}, not {version:?}",
                skill.name,
                skill.version.as_deref().unwrap_or("unknown")
            ));
        }
        if let Some(kind) = &self.skill_type
            && skill.skill_type.as_ref() != Some(kind)
        {
            return Err(format!("skill {:?} is not of type {kind:?}", skill.name));
        }
        let extra = worker.capabilities.extra.as_ref();
        for (key, want) in &self.extra_requirements {
            let mine = extra.and_then(|e| e.get(key));
            if !mine.is_some_and(|m| same(m, want)) {
                return Err(format!("capabilities.extra.{key} is not {}", show(want)));
            }
        }
        Ok(())
    }
}

/// The worker's devices as a 1.0b17 peer sees them: `devices`, and `gpu_info` as a
/// `"gpu"` device unless a GPU of that model is listed already.
fn devices_of(r: &Resources) -> Vec<HardwareDevice> {
    let mut devices = r.devices.clone().unwrap_or_default();
    if let Some(gpu) = &r.gpu_info
        && !devices
            .iter()
            .any(|d| d.device_type == "gpu" && d.model.as_deref() == Some(gpu.model.as_str()))
    {
        let mut properties = Map::new();
        properties.insert("vram_gb".into(), Value::from(gpu.vram_gb));
        devices.push(HardwareDevice {
            device_type: "gpu".into(),
            model: Some(gpu.model.clone()),
            properties: Some(properties),
            ..Default::default()
        });
    }
    devices
}

/// The worker's properties as a 1.0b17 peer sees them: `properties`, with
/// `cpu_cores` and `max_concurrent_tasks` when set and not listed already.
fn properties_of(r: &Resources) -> Map {
    let mut props = r.properties.clone().unwrap_or_default();
    for (key, n) in [
        ("cpu_cores", r.cpu_cores),
        ("max_concurrent_tasks", r.max_concurrent_tasks),
    ] {
        if n > 0 {
            props.entry(key.into()).or_insert_with(|| Value::from(n));
        }
    }
    props
}

fn device_meets(mine: &HardwareDevice, want: &HardwareDevice) -> bool {
    if !want.device_type.is_empty() && mine.device_type != want.device_type {
        return false;
    }
    if let Some(model) = &want.model
        && !mine
            .model
            .as_ref()
            .is_some_and(|m| m.to_lowercase().contains(&model.to_lowercase()))
    {
        return false;
    }
    if want.id.is_some() && mine.id != want.id {
        return false;
    }
    match &want.properties {
        Some(wanted) => {
            properties_meet(mine.properties.as_ref().unwrap_or(&Map::new()), wanted).is_ok()
        }
        None => true,
    }
}

fn artifact_meets(mine: &InstalledArtifact, want: &InstalledArtifact) -> bool {
    mine.name == want.name
        && (want.version == "unknown" || mine.version == want.version)
        && want.properties.as_ref().is_none_or(|wanted| {
            properties_meet(mine.properties.as_ref().unwrap_or(&Map::new()), wanted).is_ok()
        })
}

/// Every required property, by the rules of the [module](self).
fn properties_meet(mine: &Map, wanted: &Map) -> Result<(), String> {
    for (key, want) in wanted {
        let Some(have) = mine.get(key).filter(|v| !v.is_null()) else {
            return Err(format!("{key} is missing"));
        };
        if !value_meets(have, want) {
            return Err(format!(
                "{key} is {}, which does not meet {}",
                show(have),
                show(want)
            ));
        }
    }
    Ok(())
}

fn value_meets(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Number(h), Value::Number(w)) => h.as_f64() >= w.as_f64(),
        (Value::Array(h), Value::Array(w)) => h.iter().any(|x| w.iter().any(|y| same(x, y))),
        (_, Value::Array(w)) => w.iter().any(|y| same(have, y)),
        (Value::Array(h), _) => h.iter().any(|x| same(x, want)),
        _ => same(have, want),
    }
}

/// Equality with Python's number rules (`1 == 1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// A value for an error message, bounded.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(80).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn describe(d: &HardwareDevice) -> String {
    let mut parts = vec![format!("type {:?}", d.device_type)];
    if let Some(m) = &d.model {
        parts.push(format!("model {m:?}"));
    }
    if let Some(id) = &d.id {
        parts.push(format!("id {id:?}"));
    }
    if let Some(p) = &d.properties {
        parts.push(format!("properties {}", show(&Value::Object(p.clone()))));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map;

    fn worker() -> WorkerRegistration {
        WorkerRegistration {
            worker_id: "w".into(),
            resources: Resources {
                devices: Some(vec![
                    HardwareDevice {
                        device_type: "gpu".into(),
                        model: Some("NVIDIA RTX 4090".into()),
                        id: Some("gpu0".into()),
                        properties: Some(map! {"vram_gb": 24, "arch": ["ada", "sm89"]}),
                        ..Default::default()
                    },
                    HardwareDevice {
                        device_type: "camera".into(),
                        ..Default::default()
                    },
                ]),
                properties: Some(map! {"ram_gb": 64, "region": "eu", "tags": ["fast", "ssd"]}),
                ..Default::default()
            },
            installed_artifacts: vec![InstalledArtifact::new("llama", "7b")],
            installed_software: [("cuda".to_owned(), "12.1".to_owned())].into(),
            capabilities: crate::WorkerCapabilities {
                extra: Some(map! {"zone": "a", "n": 1}),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn skill() -> SkillInfo {
        let mut s = SkillInfo::new("train");
        s.version = Some("2.0".into());
        s.skill_type = Some("ml".into());
        s
    }

    fn props(p: Map) -> ResourceRequirements {
        let mut r = ResourceRequirements::default();
        r.resources.properties = Some(p);
        r
    }

    fn device(d: HardwareDevice) -> ResourceRequirements {
        let mut r = ResourceRequirements::default();
        r.resources.devices = Some(vec![d]);
        r
    }

    #[test]
    fn nothing_required_is_met_by_anyone() {
        let r = ResourceRequirements::default();
        assert!(r.is_empty());
        assert!(
            r.check(&WorkerRegistration::default(), &SkillInfo::new("x"))
                .is_ok()
        );
    }

    #[test]
    fn properties_numbers_are_minimums_lists_are_choices_else_equal() {
        let (w, s) = (worker(), skill());
        assert!(props(map! {"ram_gb": 32}).check(&w, &s).is_ok());
        assert!(props(map! {"ram_gb": 64.0}).check(&w, &s).is_ok());
        assert!(props(map! {"ram_gb": 65}).check(&w, &s).is_err());
        assert!(props(map! {"region": ["us", "eu"]}).check(&w, &s).is_ok());
        assert!(props(map! {"region": ["us"]}).check(&w, &s).is_err());
        assert!(
            props(map! {"tags": "ssd"}).check(&w, &s).is_ok(),
            "a list includes it"
        );
        assert!(
            props(map! {"tags": ["gpu", "fast"]}).check(&w, &s).is_ok(),
            "lists intersect"
        );
        assert!(props(map! {"tags": ["gpu"]}).check(&w, &s).is_err());
        assert!(props(map! {"region": "eu"}).check(&w, &s).is_ok());
        assert!(props(map! {"region": "us"}).check(&w, &s).is_err());
        let why = props(map! {"disk_gb": 1}).check(&w, &s).unwrap_err();
        assert!(why.contains("disk_gb is missing"), "{why}");
    }

    #[test]
    fn devices_match_by_type_model_substring_id_and_properties_each_once() {
        let (w, s) = (worker(), skill());
        let gpu = |model: &str, vram: u64| HardwareDevice {
            device_type: "gpu".into(),
            model: Some(model.into()),
            properties: Some(map! {"vram_gb": vram}),
            ..Default::default()
        };
        assert!(
            device(gpu("rtx 4090", 16)).check(&w, &s).is_ok(),
            "case-insensitive substring"
        );
        assert!(
            device(gpu("4090", 48)).check(&w, &s).is_err(),
            "too little memory"
        );
        assert!(
            device(gpu("A100", 16)).check(&w, &s).is_err(),
            "another model"
        );
        let mut by_id = gpu("4090", 1);
        by_id.id = Some("gpu1".into());
        assert!(device(by_id).check(&w, &s).is_err());
        let mut two = ResourceRequirements::default();
        two.resources.devices = Some(vec![gpu("4090", 1), gpu("4090", 1)]);
        let why = two.check(&w, &s).unwrap_err();
        assert!(
            why.contains("no free device"),
            "one GPU serves one requirement: {why}"
        );
        let mut arch = gpu("4090", 1);
        arch.properties = Some(map! {"arch": "sm89"});
        assert!(device(arch).check(&w, &s).is_ok());
    }

    #[test]
    fn the_1b3_fields_count_as_properties_and_a_gpu_device() {
        let w = WorkerRegistration {
            resources: Resources {
                cpu_cores: 8,
                max_concurrent_tasks: 2,
                gpu_info: Some(crate::GpuInfo {
                    model: "A100".into(),
                    vram_gb: 40,
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = SkillInfo::new("x");
        assert!(
            props(map! {"cpu_cores": 8, "max_concurrent_tasks": 2})
                .check(&w, &s)
                .is_ok()
        );
        assert!(props(map! {"cpu_cores": 9}).check(&w, &s).is_err());
        let mut flat = ResourceRequirements::default();
        flat.resources.cpu_cores = 9;
        assert!(
            flat.check(&w, &s).is_err(),
            "a 1.0b3-style requirement counts too"
        );
        flat.resources.cpu_cores = 4;
        assert!(flat.check(&w, &s).is_ok());
        let a100 = HardwareDevice {
            device_type: "gpu".into(),
            model: Some("a100".into()),
            properties: Some(map! {"vram_gb": 40}),
            ..Default::default()
        };
        assert!(device(a100).check(&w, &s).is_ok());
    }

    #[test]
    fn artifacts_software_skill_and_extra() {
        let (w, s) = (worker(), skill());
        let mut r = ResourceRequirements {
            installed_artifacts: vec![InstalledArtifact::new("llama", "unknown")],
            ..Default::default()
        };
        assert!(r.check(&w, &s).is_ok(), "any version");
        r.installed_artifacts = vec![InstalledArtifact::new("llama", "13b")];
        assert!(r.check(&w, &s).unwrap_err().contains("13b"));
        let mut r = ResourceRequirements {
            installed_software: [("cuda".to_owned(), "any".to_owned())].into(),
            ..Default::default()
        };
        assert!(r.check(&w, &s).is_ok());
        r.installed_software = [("cuda".to_owned(), "11.8".to_owned())].into();
        assert!(r.check(&w, &s).is_err());
        r.installed_software = [("rocm".to_owned(), "any".to_owned())].into();
        assert!(r.check(&w, &s).unwrap_err().contains("missing software"));
        let mut r = ResourceRequirements {
            skill_version: Some("2.0".into()),
            skill_type: Some("ml".into()),
            ..Default::default()
        };
        assert!(r.check(&w, &s).is_ok());
        r.skill_version = Some("3.0".into());
        assert!(r.check(&w, &s).is_err());
        let mut r = ResourceRequirements {
            extra_requirements: map! {"zone": "a", "n": 1.0},
            ..Default::default()
        };
        assert!(r.check(&w, &s).is_ok());
        r.extra_requirements = map! {"zone": "b"};
        assert!(r.check(&w, &s).is_err());
    }
}
