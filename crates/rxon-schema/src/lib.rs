//! Skill contracts of RXON 1.0b17: the JSON Schemas a skill declares for its `params`
//! (`input_schema`), its results' `data` (`output_schema`) and each of its events
//! (`events_schema`), compiled once and checked with the verdicts of the reference
//! validator (rxon 1.0b17's `validate_data`, fastjsonschema).
//!
//! - The dialect is JSON Schema, draft-07 unless the schema's `$schema` names another
//!   draft (the reference's default); formats are checked (`email`, `date-time`,
//!   `ipv4`, `uri`…), unknown formats ignored, as the reference does.
//! - Nothing is fetched: a `$ref` outside the schema does not compile.
//! - Bounded: a schema of more than [`MAX_SCHEMA_BYTES`] or nested deeper than
//!   [`MAX_SCHEMA_DEPTH`] is refused, and a `pattern` that backtracks more than
//!   [`PATTERN_BACKTRACK_LIMIT`] steps fails its check instead of running on.
//! - A schema that does not compile is an error at compile time here; the reference
//!   logs it and then refuses every value, so a worker sending one can never be
//!   handed a task: rxon says so at once.
//!
//! ```
//! use rxon_core::{map, SkillInfo};
//! use rxon_schema::Contract;
//! let mut skill = SkillInfo::new("resize");
//! skill.input_schema = Some(map! {
//!     "type": "object",
//!     "properties": {"width": {"type": "integer", "minimum": 1}},
//!     "required": ["width"],
//! });
//! let contract = Contract::compile(&skill)?;
//! assert!(contract.check_input(&map! {"width": 640}).is_ok());
//! let refused = contract.check_input(&map! {"width": 0}).unwrap_err();
//! assert!(refused.to_string().contains("/width"), "{refused}");
//! # Ok::<(), rxon_schema::SchemaError>(())
//! ```
//!
//! # Feature flags
//!
//! This crate has no features.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.95 (edition 2024): the workspace's `rust-version`, the toolchain CI builds
//! with (`cargo xtask ci` checks that they agree).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use rxon_core::{Map, SkillInfo, Value};
use std::collections::BTreeMap;
use std::fmt;

/// Largest schema accepted, as compact JSON (64 KiB).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of objects and arrays accepted in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most backtracking steps one `pattern` match may take before it counts as failed.
pub const PATTERN_BACKTRACK_LIMIT: usize = 100_000;

/// A schema that cannot be used: too large, too deep, or not a valid schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    message: String,
}

impl SchemaError {
    fn new(message: impl Into<String>) -> Self {
        SchemaError {
            message: message.into(),
        }
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SchemaError {}

/// A value a schema rejects: where (a JSON pointer into the value) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending part (`""` for the whole value).
    pub path: String,
    /// What is wrong, e.g. `0 is less than the minimum of 1`.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for Violation {}

/// One compiled schema.
pub struct Schema {
    validator: jsonschema::Validator,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").finish_non_exhaustive()
    }
}

impl Schema {
    /// Compiles `schema` (see the [crate] documentation for the dialect and bounds).
    pub fn compile(schema: &Map) -> Result<Schema, SchemaError> {
        let value = json(schema).map_err(|e| SchemaError::new(format!("not JSON: {e}")))?;
        let size = serde_json::to_vec(&value)
            .map_err(|e| SchemaError::new(format!("not JSON: {e}")))?
            .len();
        if size > MAX_SCHEMA_BYTES {
            return Err(SchemaError::new(format!(
                "the schema is {size} bytes, more than {MAX_SCHEMA_BYTES}"
            )));
        }
        if depth(&value) > MAX_SCHEMA_DEPTH {
            return Err(SchemaError::new(format!(
                "the schema is nested deeper than {MAX_SCHEMA_DEPTH} levels"
            )));
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .with_pattern_options(
                jsonschema::PatternOptions::fancy_regex().backtrack_limit(PATTERN_BACKTRACK_LIMIT),
            )
            .offline()
            .build(&value)
            .map_err(|e| SchemaError::new(e.to_string()))?;
        Ok(Schema { validator })
    }

    /// Checks `value`; the first violation found when it fails.
    pub fn check(&self, value: &Value) -> Result<(), Violation> {
        self.check_json(&json(value).map_err(|e| Violation {
            path: String::new(),
            message: format!("not JSON: {e}"),
        })?)
    }

    /// [`check`](Self::check) for an object (params, data, an event's payload).
    pub fn check_map(&self, map: &Map) -> Result<(), Violation> {
        self.check_json(&json(map).map_err(|e| Violation {
            path: String::new(),
            message: format!("not JSON: {e}"),
        })?)
    }

    fn check_json(&self, value: &serde_json::Value) -> Result<(), Violation> {
        self.validator.validate(value).map_err(|e| Violation {
            path: e.instance_path().to_string(),
            message: e.to_string(),
        })
    }
}

/// The validator reads `serde_json` values: the model's value is converted (a cost
/// linear in its size, paid only where a schema is declared).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(v)
}

fn depth(v: &serde_json::Value) -> usize {
    // Iterative: a hostile schema must not recurse deeply here either.
    let mut deepest = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        if d > MAX_SCHEMA_DEPTH {
            break;
        }
        match v {
            serde_json::Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// What a skill promises, compiled: the schemas of its params, its outputs and each
/// of its events. A skill without schemas accepts everything.
#[derive(Debug, Default)]
pub struct Contract {
    input: Option<Schema>,
    output: Option<Schema>,
    events: BTreeMap<String, Schema>,
}

impl Contract {
    /// Compiles `skill`'s schemas. Fails naming the skill and the schema that cannot
    /// be used; a `schema_dialect` other than `json-schema` is refused too (there is
    /// no other dialect to check with).
    pub fn compile(skill: &SkillInfo) -> Result<Contract, SchemaError> {
        let named = |which: &str, e: SchemaError| {
            SchemaError::new(format!("skill {:?}: {which}: {e}", skill.name))
        };
        let has_schema = skill.input_schema.is_some()
            || skill.output_schema.is_some()
            || skill.events_schema.is_some();
        if has_schema && skill.schema_dialect != rxon_core::constants::SCHEMA_DIALECT_JSON_SCHEMA {
            return Err(named(
                "schema_dialect",
                SchemaError::new(format!(
                    "{:?} is not supported (only \"json-schema\")",
                    skill.schema_dialect
                )),
            ));
        }
        let compile = |which: &str, schema: &Option<Map>| {
            schema
                .as_ref()
                .map(Schema::compile)
                .transpose()
                .map_err(|e| named(which, e))
        };
        let mut events = BTreeMap::new();
        for (event_type, schema) in skill.events_schema.iter().flatten() {
            let which = format!("events_schema[{event_type:?}]");
            let Value::Object(schema) = schema else {
                return Err(named(&which, SchemaError::new("not a JSON object")));
            };
            events.insert(
                event_type.clone(),
                Schema::compile(schema).map_err(|e| named(&which, e))?,
            );
        }
        Ok(Contract {
            input: compile("input_schema", &skill.input_schema)?,
            output: compile("output_schema", &skill.output_schema)?,
            events,
        })
    }

    /// Whether the contract checks anything at all.
    pub fn is_empty(&self) -> bool {
        self.input.is_none() && self.output.is_none() && self.events.is_empty()
    }

    /// Checks a task's `params` against `input_schema`.
    pub fn check_input(&self, params: &Map) -> Result<(), Violation> {
        self.input.as_ref().map_or(Ok(()), |s| s.check_map(params))
    }

    /// Checks a success's `data` against `output_schema`.
    pub fn check_output(&self, data: &Map) -> Result<(), Violation> {
        self.output.as_ref().map_or(Ok(()), |s| s.check_map(data))
    }

    /// Checks an event's `payload` against `events_schema[event_type]`; an event type
    /// without a schema passes.
    pub fn check_event(&self, event_type: &str, payload: &Map) -> Result<(), Violation> {
        self.events
            .get(event_type)
            .map_or(Ok(()), |s| s.check_map(payload))
    }
}

/// Compiled contracts shared by every worker that declares the same skill (a fleet
/// sends one catalog many times): at most `capacity` of them, the oldest dropped
/// first, as the reference bounds its validator cache (1,024).
///
/// ```
/// use rxon_core::{map, SkillInfo};
/// let cache = rxon_schema::ContractCache::new(16);
/// let mut s = SkillInfo::new("echo");
/// s.input_schema = Some(map! {"type": "object"});
/// let a = cache.get_or_compile(&s)?;
/// let b = cache.get_or_compile(&s.clone())?;
/// assert!(std::sync::Arc::ptr_eq(&a, &b), "compiled once");
/// # Ok::<(), rxon_schema::SchemaError>(())
/// ```
#[derive(Debug)]
pub struct ContractCache {
    capacity: usize,
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    by_key: std::collections::HashMap<Vec<u8>, std::sync::Arc<Contract>>,
    order: std::collections::VecDeque<Vec<u8>>,
}

/// Default [`ContractCache`] capacity, the reference's.
pub const DEFAULT_CACHE_CAPACITY: usize = 1_024;

impl Default for ContractCache {
    fn default() -> Self {
        ContractCache::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl ContractCache {
    /// A cache of at most `capacity` contracts (at least 1).
    pub fn new(capacity: usize) -> Self {
        ContractCache {
            capacity: capacity.max(1),
            inner: std::sync::Mutex::default(),
        }
    }

    /// The contract of `skill`, compiled once per distinct skill (name and schemas).
    /// A skill without schemas gets an empty contract without being cached.
    pub fn get_or_compile(
        &self,
        skill: &SkillInfo,
    ) -> Result<std::sync::Arc<Contract>, SchemaError> {
        if skill.input_schema.is_none()
            && skill.output_schema.is_none()
            && skill.events_schema.is_none()
        {
            return Ok(std::sync::Arc::new(Contract::default()));
        }
        let key = serde_json::to_vec(&(
            &skill.schema_dialect,
            &skill.input_schema,
            &skill.output_schema,
            &skill.events_schema,
        ))
        .map_err(|e| SchemaError::new(format!("not JSON: {e}")))?;
        if let Some(c) = self.lock().by_key.get(&key) {
            return Ok(c.clone());
        }
        // Compiled without the lock: another thread may compile the same skill at
        // once; the first one stored wins.
        let compiled = std::sync::Arc::new(Contract::compile(skill)?);
        let mut inner = self.lock();
        if let Some(c) = inner.by_key.get(&key) {
            return Ok(c.clone());
        }
        while inner.order.len() >= self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.by_key.remove(&old);
            }
        }
        inner.order.push_back(key.clone());
        inner.by_key.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Contracts held now.
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether the cache holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
