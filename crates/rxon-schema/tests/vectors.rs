//! The verdicts of the reference validator (rxon 1.0b17's `validate_data`, written into
//! `vectors.json` by it, checked again against it by `cargo xtask interop`): ours must be
//! the same on every vector.

use rxon_core::{Map, Value};

#[test]
fn every_vector_gets_the_reference_verdict() {
    let vectors: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("vectors.json")).expect("vectors.json parses");
    assert!(vectors.len() >= 60, "the vectors are all read");
    let mut wrong = Vec::new();
    for v in &vectors {
        let name = v["name"].as_str().expect("a name");
        let schema: Map = serde_json::from_value(v["schema"].clone()).expect("an object");
        let expected = v["valid"].as_bool().expect("a verdict");
        let instance: Value = serde_json::from_value(v["instance"].clone()).expect("a value");
        let ours = match rxon_schema::Schema::compile(&schema) {
            Ok(s) => s.check(&instance).is_ok(),
            // The reference refuses every value for a schema it cannot compile.
            Err(_) => false,
        };
        if ours != expected {
            wrong.push(format!("{name}: reference {expected}, rxon {ours}"));
        }
    }
    assert!(wrong.is_empty(), "verdicts differ:\n{}", wrong.join("\n"));
}

#[test]
fn oversized_deep_and_remote_schemas_are_refused() {
    use rxon_schema::{MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, Schema};
    let big: Map = rxon_core::map! {"description": ("x".repeat(MAX_SCHEMA_BYTES))};
    assert!(
        Schema::compile(&big)
            .unwrap_err()
            .to_string()
            .contains("bytes")
    );
    let mut deep = serde_json::json!({"type": "object"});
    for _ in 0..MAX_SCHEMA_DEPTH {
        deep = serde_json::json!({"properties": {"a": deep}});
    }
    let deep: Map = serde_json::from_value(deep).unwrap();
    assert!(
        Schema::compile(&deep)
            .unwrap_err()
            .to_string()
            .contains("deeper")
    );
    let remote: Map = rxon_core::map! {"$ref": "https://example.com/schema.json"};
    assert!(Schema::compile(&remote).is_err(), "nothing is fetched");
}

#[test]
fn a_catastrophic_pattern_fails_its_check_instead_of_running_on() {
    let schema: Map = rxon_core::map! {"type": "string", "pattern": "^(a+)+$"};
    let s = rxon_schema::Schema::compile(&schema).expect("compiles");
    // Bounded by the backtrack limit: an answer, not a hang (the suite's timeout
    // would stop a runaway match).
    let hostile = Value::from(format!("{}!", "a".repeat(64)));
    assert!(s.check(&hostile).is_err());
    assert!(s.check(&Value::from("aaaa")).is_ok());
}

#[test]
fn contracts_name_the_skill_and_check_each_part() {
    use rxon_core::SkillInfo;
    let mut skill = SkillInfo::new("render");
    skill.output_schema = Some(rxon_core::map! {"required": ["frames"]});
    skill.events_schema = Some(rxon_core::map! {"rendered": {"required": ["frames"]}});
    let c = rxon_schema::Contract::compile(&skill).unwrap();
    assert!(
        c.check_input(&Map::new()).is_ok(),
        "no input schema: anything"
    );
    assert!(c.check_output(&Map::new()).is_err());
    assert!(c.check_output(&rxon_core::map! {"frames": 5}).is_ok());
    assert!(c.check_event("rendered", &Map::new()).is_err());
    assert!(
        c.check_event("other", &Map::new()).is_ok(),
        "undeclared type: anything"
    );
    skill.input_schema = Some(rxon_core::map! {"type": "nonsense"});
    let err = rxon_schema::Contract::compile(&skill)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"render\"") && err.contains("input_schema"),
        "{err}"
    );
    let mut other = SkillInfo::new("x");
    other.schema_dialect = "protobuf".into();
    other.input_schema = Some(Map::new());
    assert!(rxon_schema::Contract::compile(&other).is_err());
}

#[test]
fn the_cache_compiles_each_contract_once_and_stays_bounded() {
    use rxon_core::SkillInfo;
    let cache = rxon_schema::ContractCache::new(2);
    let skill = |n: u64| {
        let mut s = SkillInfo::new("s");
        s.input_schema = Some(rxon_core::map! {"minimum": n});
        s
    };
    let first = cache.get_or_compile(&skill(1)).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &first,
        &cache.get_or_compile(&skill(1)).unwrap()
    ));
    cache.get_or_compile(&skill(2)).unwrap();
    cache.get_or_compile(&skill(3)).unwrap();
    assert_eq!(cache.len(), 2, "bounded");
    assert!(
        !std::sync::Arc::ptr_eq(&first, &cache.get_or_compile(&skill(1)).unwrap()),
        "the oldest was dropped and compiled again"
    );
    assert!(
        cache
            .get_or_compile(&SkillInfo::new("bare"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(cache.len(), 2, "bare skills are not cached");
}
