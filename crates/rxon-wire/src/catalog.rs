//! The hash of a worker's skill catalog (`skills_hash`, 1.0b17), computed as the
//! reference SDK does, so that an orchestrator can tell "same catalog" without the
//! catalog being sent again.

use crate::WireError;
use rxon_core::{Map, SkillInfo};
use serde_json::Value;

/// SHA-256, lowercase hex, of the canonical JSON (sorted keys, the reference's
/// number layout) of `{"skills": [...], "capabilities": cost_per_skill, "extra":
/// extra}`, each skill in its 1.0b17 form (defaults left out): the avtomatika-worker
/// SDK's `_calculate_contract_hash`. Any change to a skill's contract (a schema, a
/// version) or to the costs changes it.
///
/// ```
/// use rxon_core::SkillInfo;
/// let a = rxon_wire::catalog::skills_hash(&SkillInfo::list(["echo"]), &Default::default(), &Default::default())?;
/// let mut versioned = SkillInfo::new("echo");
/// versioned.version = Some("2".into());
/// let b = rxon_wire::catalog::skills_hash(&[versioned], &Default::default(), &Default::default())?;
/// assert_eq!(a.len(), 64);
/// assert_ne!(a, b);
/// # Ok::<(), rxon_wire::WireError>(())
/// ```
pub fn skills_hash(
    skills: &[SkillInfo],
    cost_per_skill: &std::collections::BTreeMap<String, f64>,
    extra: &Map,
) -> Result<String, WireError> {
    let skills = skills
        .iter()
        .map(|s| {
            serde_json::to_value(s)
                .map_err(|e| WireError::invalid(format!("skill {:?}: {e}", s.name)))
        })
        .collect::<Result<Vec<Value>, _>>()?;
    let costs = serde_json::to_value(cost_per_skill)
        .map_err(|e| WireError::invalid(format!("cost_per_skill: {e}")))?;
    let extra =
        serde_json::to_value(extra).map_err(|e| WireError::invalid(format!("extra: {e}")))?;
    let contract = serde_json::json!({ "skills": skills, "capabilities": costs, "extra": extra });
    let bytes = crate::canonical::to_bytes(&crate::canonical::normalize_owned(contract)?)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes printed by the reference (rxon 1.0b17's `calculate_dict_hash` over the
    /// SDK's contract dict, `SkillInfo` from `rxon.models`).
    #[test]
    fn the_hash_is_the_reference_sdks() {
        let echo = SkillInfo::new("echo");
        let mut resize = SkillInfo::new("resize");
        resize.version = Some("2.1".into());
        resize.input_schema = Some(rxon_core::map! {
            "type": "object",
            "properties": {"width": {"type": "integer", "minimum": 1}},
            "required": ["width"],
        });
        resize.output_statuses = Some(vec!["success".into()]);
        let costs = [("echo".to_owned(), 0.5)].into();
        assert_eq!(
            skills_hash(&[echo.clone(), resize], &costs, &Map::new()).unwrap(),
            "322c605fd54bb5a33803db616d316993161ea17859afaadaa9c34fe102e3f617"
        );
        assert_eq!(
            skills_hash(&[echo], &Default::default(), &Map::new()).unwrap(),
            "770c2eba0b854492d0567db53e28314d546816c8d79149d6b8093a7368cf11c1"
        );
    }
}
