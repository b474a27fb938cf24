//! Values and messages through serde: MessagePack round trips, `Display` of values, the
//! serde_json bridge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rxon_core::*;
use serde_json::json;

#[test]
fn values_survive_messagepack_too() {
    let reg = WorkerRegistration {
        worker_id: "gpu-01".into(),
        supported_skills: SkillInfo::list(["resize"]),
        resources: Resources {
            cpu_cores: 4,
            ..Default::default()
        },
        installed_artifacts: vec![InstalledArtifact::new("whisper", "3")],
        ..Default::default()
    };
    let bytes = rmp_serde::to_vec_named(&reg).unwrap();
    let back: WorkerRegistration = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, reg);
    let v: Value = serde_json::from_value(json!({"a": [1, -1, 1.5, "s", null, true]})).unwrap();
    let back: Value = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
    assert_eq!(back, v);
}

#[test]
fn value_display_matches_serde_json_compact_output() {
    let j = json!({"b": [1, -2, 2.5, "q\"\\\n", null, false], "a": {"x": {}}});
    let v: Value = serde_json::from_value(j.clone()).unwrap();
    assert_eq!(v.to_string(), serde_json::to_string(&j).unwrap());
}

/// `serde_json::Value` and [`rxon_core::Value`] convert both ways through serde, as the
/// `value!` documentation says.
#[test]
fn serde_json_values_bridge_both_ways() {
    let json = serde_json::json!({"a": [1, -2, 2.5, null, true], "b": {"c": "d"}});
    let ours: rxon_core::Value = serde_json::from_value(json.clone()).expect("into rxon");
    assert_eq!(
        ours,
        rxon_core::value!({"a": [1, (-2), 2.5, null, true], "b": {"c": "d"}})
    );
    assert_eq!(serde_json::to_value(&ours).expect("back"), json);
}
