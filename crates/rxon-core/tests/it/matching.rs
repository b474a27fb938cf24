//! Resource matching against the reference's verdicts: `matching_vectors.json` was
//! written by rxon 1.0b17's own `Resources.matches` and `InstalledArtifact.matches`,
//! and `cargo xtask interop` checks the file against them again.

use rxon_core::matching::ResourceRequirements;
use rxon_core::{InstalledArtifact, Resources, SkillInfo, WorkerRegistration};

#[test]
fn every_vector_gets_the_reference_verdict() {
    let vectors: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("matching_vectors.json")).expect("the file parses");
    assert!(vectors.len() >= 25, "the vectors are all read");
    let mut wrong = Vec::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("a name");
        let worker = WorkerRegistration {
            worker_id: "w".into(),
            resources: serde_json::from_value::<Resources>(v["worker"]["resources"].clone())
                .expect("resources"),
            installed_artifacts: serde_json::from_value::<Vec<InstalledArtifact>>(
                v["worker"]["installed_artifacts"].clone(),
            )
            .expect("artifacts"),
            ..Default::default()
        };
        let needs: ResourceRequirements =
            serde_json::from_value(v["requirements"].clone()).expect("requirements");
        let ours = needs.check(&worker, &SkillInfo::new("x")).is_ok();
        if ours != v["matches"].as_bool().expect("a verdict") {
            wrong.push(format!("{name}: reference {}, rxon {ours}", v["matches"]));
        }
    }
    assert!(wrong.is_empty(), "verdicts differ:\n{}", wrong.join("\n"));
}
