//! [`Wire`] for every message: 1.0b3 through the explicit shapes of [`crate::b3`],
//! 1.0b17 through the model's own serde form, reshaped where the generations differ
//! (resources, heartbeat load) and normalized as the reference normalizes.

use crate::b3::{B3Command, B3Heartbeat, B3Registration, B3Result, B3Task, B3Token, B3View};
use crate::{Wire, WireError, canonical, from_json_slice, from_value, to_json_vec, to_value};
use rxon_core::{
    Heartbeat, HeartbeatReply, ProgressUpdatePayload, Protocol, RegisterReply, ResultOutcome,
    TaskPayload, TaskResult, TokenResponse, WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use serde_json::{Map, Value, json};

/// `sealed`: the message carries the worker's envelope.
macro_rules! sealed_impl {
    // A message whose replay key is the `nonce` the sealing adds.
    (sealed) => {
        fn clear_envelope(&mut self) {
            self.timestamp = None;
            self.nonce = None;
            self.security = None;
        }
    };
    // A message whose own id is its replay key (events: `event_id`).
    (sealed_by_id) => {
        fn clear_envelope(&mut self) {
            self.timestamp = None;
            self.security = None;
        }
    };
}

/// A message with a 1.0b3 shape of its own and 1.0b17 fix-ups.
macro_rules! two_shapes {
    ($t:ty, $name:literal, $b3:ty, out: $out:expr, into: $in:expr $(, $sealed:ident)?) => {
        impl Wire for $t {
            const NAME: &'static str = $name;
            $(sealed_impl!($sealed);)?

            fn to_wire_bytes(&self, protocol: Protocol) -> Result<Vec<u8>, WireError> {
                match protocol {
                    Protocol::V1b3 => to_json_vec($name, &self.b3_view()),
                    Protocol::V1b17 => canonical::to_bytes(&self.to_wire(protocol)?),
                }
            }

            fn from_wire_bytes(protocol: Protocol, bytes: &[u8]) -> Result<Self, WireError> {
                match protocol {
                    Protocol::V1b3 => from_json_slice::<$b3>($name, bytes).map(Into::into),
                    Protocol::V1b17 => {
                        let value = serde_json::from_slice(bytes)
                            .map_err(|e| WireError::invalid(format!("malformed JSON: {e}")))?;
                        Self::from_wire(protocol, value)
                    }
                }
            }

            fn to_wire(&self, protocol: Protocol) -> Result<Value, WireError> {
                match protocol {
                    Protocol::V1b3 => to_value($name, &self.b3_view()),
                    Protocol::V1b17 => {
                        let mut v = to_value($name, self)?;
                        if let Value::Object(m) = &mut v {
                            let out: fn(&mut Map<String, Value>) = $out;
                            out(m);
                        }
                        canonical::normalize_owned(v)
                    }
                }
            }

            fn from_wire(protocol: Protocol, mut value: Value) -> Result<Self, WireError> {
                match protocol {
                    Protocol::V1b3 => from_value::<$b3>($name, value).map(Into::into),
                    Protocol::V1b17 => {
                        if let Value::Object(m) = &mut value {
                            let into: fn(&mut Map<String, Value>) = $in;
                            into(m);
                        }
                        from_value($name, value)
                    }
                }
            }
        }
    };
}

/// A message with one shape in both generations (normalized for 1.0b17).
macro_rules! one_shape {
    ($t:ty, $name:literal $(, $sealed:ident)?) => {
        impl Wire for $t {
            const NAME: &'static str = $name;
            $(sealed_impl!($sealed);)?

            fn to_wire(&self, protocol: Protocol) -> Result<Value, WireError> {
                let v = to_value($name, self)?;
                match protocol {
                    Protocol::V1b3 => Ok(v),
                    Protocol::V1b17 => canonical::normalize_owned(v),
                }
            }

            fn from_wire(_: Protocol, value: Value) -> Result<Self, WireError> {
                from_value($name, value)
            }

            fn from_wire_bytes(_: Protocol, bytes: &[u8]) -> Result<Self, WireError> {
                from_json_slice($name, bytes)
            }

            fn to_wire_bytes(&self, protocol: Protocol) -> Result<Vec<u8>, WireError> {
                match protocol {
                    Protocol::V1b3 => to_json_vec($name, self),
                    Protocol::V1b17 => canonical::to_bytes(&self.to_wire(protocol)?),
                }
            }
        }
    };
}

fn nothing(_: &mut Map<String, Value>) {}

two_shapes!(WorkerRegistration, "WorkerRegistration", B3Registration,
    out: |m| {
        if let Some(Value::Object(r)) = m.get_mut("resources") {
            resources_out(r);
        }
    },
    into: |m| {
        if let Some(Value::Object(r)) = m.get_mut("resources") {
            resources_in(r);
        }
    },
    sealed);

two_shapes!(Heartbeat, "Heartbeat", B3Heartbeat,
    out: |m| {
        let load = m.remove("load").and_then(|l| l.as_f64()).unwrap_or(0.0);
        m.remove("hot_cache");
        m.remove("skill_dependencies");
        if !m.contains_key("usage") && load > 0.0 {
            m.insert("usage".into(), json!({"cpu_load_percent": load * 100.0}));
        }
    },
    into: |m| {
        if !m.contains_key("load")
            && let Some(p) = m
                .get("usage")
                .and_then(|u| u.get("cpu_load_percent"))
                .and_then(Value::as_f64)
        {
            m.insert("load".into(), json!(p / 100.0));
        }
    },
    sealed);

two_shapes!(TaskPayload, "TaskPayload", B3Task, out: nothing, into: nothing);
two_shapes!(TaskResult, "TaskResult", B3Result, out: nothing, into: nothing, sealed);
two_shapes!(TokenResponse, "TokenResponse", B3Token, out: nothing, into: nothing);
two_shapes!(WorkerCommand, "WorkerCommand", B3Command, out: nothing, into: nothing);

one_shape!(ProgressUpdatePayload, "ProgressUpdatePayload");
one_shape!(WorkerEventPayload, "WorkerEventPayload", sealed_by_id);
one_shape!(RegisterReply, "RegisterReply");
one_shape!(HeartbeatReply, "HeartbeatReply");
one_shape!(ResultOutcome, "ResultOutcome");
one_shape!(rxon_core::Map, "object");

/// 1.0b17 resources: `devices` and `properties`; `cpu_cores` and
/// `max_concurrent_tasks` move into `properties` (unless already there), `gpu_info`
/// becomes a `"gpu"` device.
fn resources_out(r: &mut Map<String, Value>) {
    let mut props = match r.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    for key in ["cpu_cores", "max_concurrent_tasks"] {
        if let Some(v) = r.remove(key) {
            props.entry(key).or_insert(v);
        }
    }
    if let Some(Value::Object(gpu)) = r.remove("gpu_info") {
        let model = gpu.get("model").cloned().unwrap_or(Value::Null);
        let device = json!({
            "type": "gpu",
            "model": model,
            "properties": {"vram_gb": gpu.get("vram_gb").cloned().unwrap_or(Value::Null)},
        });
        // A GPU of that model listed already is this one (a message read from 1.0b17
        // holds both): written once, so that writing what was read gives the same JSON.
        let listed =
            |d: &Value| d.get("type") == Some(&json!("gpu")) && d.get("model") == Some(&model);
        match r.get_mut("devices") {
            Some(Value::Array(d)) if d.iter().any(listed) => {}
            Some(Value::Array(d)) => d.push(device),
            _ => {
                r.insert("devices".into(), Value::Array(vec![device]));
            }
        }
    }
    if !props.is_empty() {
        r.insert("properties".into(), Value::Object(props));
    }
}

/// The reverse of [`resources_out`]: whole-number `cpu_cores` / `max_concurrent_tasks`
/// properties and the first `"gpu"` device with a model fill the 1.0b3 fields.
fn resources_in(r: &mut Map<String, Value>) {
    let props = r.get("properties").and_then(Value::as_object);
    let mut found = Vec::new();
    for key in ["cpu_cores", "max_concurrent_tasks"] {
        if !r.contains_key(key)
            && let Some(n) = props
                .and_then(|p| p.get(key))
                .and_then(Value::as_u64)
                .filter(|n| u32::try_from(*n).is_ok())
        {
            found.push((key, n));
        }
    }
    let gpu = r
        .get("devices")
        .and_then(Value::as_array)
        .and_then(|d| {
            d.iter()
                .find(|d| d.get("type").and_then(Value::as_str) == Some("gpu"))
        })
        .and_then(|d| {
            let model = d.get("model")?.as_str()?;
            let vram = d
                .get("properties")
                .and_then(|p| p.get("vram_gb"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            Some(json!({"model": model, "vram_gb": vram}))
        });
    for (key, n) in found {
        r.insert(key.into(), json!(n));
    }
    if !r.contains_key("gpu_info")
        && let Some(g) = gpu
    {
        r.insert("gpu_info".into(), g);
    }
}
