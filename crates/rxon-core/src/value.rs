//! A dependency-free dynamic value for the protocol's free-form maps.
//!
//! RXON messages carry a few maps whose contents the protocol does not fix: a task's
//! `params`, a result's `data`, an error's `details`, a capability's `extra`. The Python
//! reference types them `dict[str, Any]`. [`Value`] is that "any": the JSON data model
//! (null, bool, number, string, array, object) with no dependency, so that `rxon-core`
//! stays free of `serde_json`. With the `serde` feature it (de)serializes from any
//! self-describing format (JSON, MessagePack, TOML…).

use std::collections::BTreeMap;
use std::fmt;

/// A free-form map: the protocol's `{str: any}`.
///
/// Ordered by key so that encodings are deterministic.
pub type Map = BTreeMap<String, Value>;

/// A number as it appears on the wire.
///
/// Integers keep their exact value (an `i64` or `u64`); everything else is an `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A non-negative integer.
    PosInt(u64),
    /// A negative integer.
    NegInt(i64),
    /// A floating point number.
    Float(f64),
}

impl Number {
    /// The number as an `f64` (integers beyond 2^53 lose precision).
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::PosInt(n) => n as f64,
            Number::NegInt(n) => n as f64,
            Number::Float(f) => f,
        }
    }

    /// The number as an `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Number::PosInt(n) => i64::try_from(n).ok(),
            Number::NegInt(n) => Some(n),
            Number::Float(_) => None,
        }
    }

    /// The number as a `u64`, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Number::PosInt(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::PosInt(n) => write!(f, "{n}"),
            Number::NegInt(n) => write!(f, "{n}"),
            Number::Float(x) => write!(f, "{x:?}"),
        }
    }
}

/// Any value of the JSON data model.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null` (Python `None`).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer or a float.
    Number(Number),
    /// A UTF-8 string.
    String(String),
    /// An ordered list.
    Array(Vec<Value>),
    /// A map with string keys.
    Object(Map),
}

impl Value {
    /// `true` for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as `f64`, if this is a [`Value::Number`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }

    /// The number as `i64`, if this is an integer [`Value::Number`] that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The number as `u64`, if this is a non-negative integer [`Value::Number`].
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The elements, if this is a [`Value::Array`].
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The map, if this is a [`Value::Object`].
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up `key` if this is an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(key))
    }

    /// Nesting depth: 0 for scalars, 1 for a flat array or object, and so on.
    ///
    /// Decoders bound the depth of what a peer may send; this lets a handler check
    /// a value it built itself against the same bound.
    pub fn depth(&self) -> usize {
        // Iterative so that measuring a hostile value cannot overflow the stack.
        let mut max = 0;
        let mut stack: Vec<(&Value, usize)> = vec![(self, 0)];
        while let Some((v, d)) = stack.pop() {
            match v {
                Value::Array(a) => {
                    max = max.max(d + 1);
                    stack.extend(a.iter().map(|x| (x, d + 1)));
                }
                Value::Object(m) => {
                    max = max.max(d + 1);
                    stack.extend(m.values().map(|x| (x, d + 1)));
                }
                _ => {}
            }
        }
        max
    }
}

impl fmt::Display for Value {
    /// Compact JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(Number::Float(x)) if !x.is_finite() => f.write_str("null"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write_json_string(f, s),
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Object(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_json_string(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

macro_rules! from_int {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Number(Number::$variant(n.into()))
            }
        }
    )*};
}
from_int!(u8 => PosInt, u16 => PosInt, u32 => PosInt, u64 => PosInt);

macro_rules! from_signed {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                let n = i64::from(n);
                Value::Number(if n < 0 { Number::NegInt(n) } else { Number::PosInt(n as u64) })
            }
        }
    )*};
}
from_signed!(i8, i16, i32, i64);

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Number(Number::Float(x))
    }
}

impl From<f32> for Value {
    fn from(x: f32) -> Self {
        Value::Number(Number::Float(x.into()))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Object(m)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Value::Object(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::{Map, Number, Value};
    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde::ser::{SerializeMap, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    impl Serialize for Value {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Value::Null => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Number(Number::PosInt(n)) => s.serialize_u64(*n),
                Value::Number(Number::NegInt(n)) => s.serialize_i64(*n),
                Value::Number(Number::Float(x)) => s.serialize_f64(*x),
                Value::String(v) => s.serialize_str(v),
                Value::Array(a) => {
                    let mut seq = s.serialize_seq(Some(a.len()))?;
                    for v in a {
                        seq.serialize_element(v)?;
                    }
                    seq.end()
                }
                Value::Object(m) => {
                    let mut map = s.serialize_map(Some(m.len()))?;
                    for (k, v) in m {
                        map.serialize_entry(k, v)?;
                    }
                    map.end()
                }
            }
        }
    }

    struct ValueVisitor;

    impl<'de> Visitor<'de> for ValueVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON-model value")
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            Value::deserialize(d)
        }
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::from(n))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Number(Number::PosInt(n)))
        }
        fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
            Ok(Value::Number(Number::Float(x)))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            // The size hint comes from the peer: cap it so that a lying length prefix
            // cannot make us allocate more than the elements actually sent.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(v) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(k) = access.next_key::<String>()? {
                let v = access.next_value()?;
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
            Err(E::custom(
                "binary values are not part of the RXON data model; send a string",
            ))
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            d.deserialize_any(ValueVisitor)
        }
    }
}

/// A [`Value`] literal, JSON-like: `null`, arrays in `[…]`, objects in `{"key": …}`,
/// anything else through [`Value::from`]. A value of more than one token (`-1`,
/// `n * n`, a call) goes in parentheses.
///
/// ```
/// use rxon_core::{Value, value};
/// let n = 7;
/// let v = value!({
///     "name": "resize",
///     "sizes": [640, 1280, null],
///     "area": (n * n),
///     "offset": (-1),
///     "nested": {"ok": true},
/// });
/// assert_eq!(v.get("area").and_then(Value::as_i64), Some(49));
/// assert_eq!(v.get("sizes").and_then(Value::as_array).map(<[Value]>::len), Some(3));
/// assert_eq!(v.get("nested").and_then(|n| n.get("ok")).and_then(Value::as_bool), Some(true));
/// ```
///
/// With the `serde` feature, a `serde_json::Value` converts both ways through serde:
/// `serde_json::from_value::<rxon_core::Value>(json)` and `serde_json::to_value(&value)`.
#[macro_export]
macro_rules! value {
    (null) => {
        $crate::Value::Null
    };
    ([ $($element:tt),* $(,)? ]) => {
        $crate::Value::Array(::std::vec![ $( $crate::value!($element) ),* ])
    };
    ({ $($key:tt : $item:tt),* $(,)? }) => {
        $crate::Value::Object($crate::map!{ $($key: $item),* })
    };
    ($other:expr) => {
        $crate::Value::from($other)
    };
}

/// A [`Map`] literal: `map!{"key": value, …}`, each value as in [`value!`](macro@crate::value).
///
/// ```
/// use rxon_core::{Map, Value, map};
/// let data: Map = map! {"pixels": (640 * 480), "format": "png"};
/// assert_eq!(data.get("pixels").and_then(Value::as_u64), Some(307_200));
/// assert_eq!(map! {}, Map::new());
/// ```
#[macro_export]
macro_rules! map {
    ($($key:tt : $item:tt),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut map = $crate::Map::new();
        $( map.insert(::std::string::String::from($key), $crate::value!($item)); )*
        map
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_compact_json_with_escapes() {
        let v: Value = [
            ("a", Value::from(1u8)),
            ("b", Value::from("x\"y\n")),
            (
                "c",
                Value::from(vec![Value::Null, Value::from(-2i32), Value::from(1.5)]),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(v.to_string(), r#"{"a":1,"b":"x\"y\n","c":[null,-2,1.5]}"#);
        assert_eq!(Value::from(f64::NAN).to_string(), "null");
        assert_eq!(Value::from("\u{1}").to_string(), "\"\\u0001\"");
    }

    #[test]
    fn numbers_convert_only_when_exact() {
        assert_eq!(Value::from(-3i64).as_i64(), Some(-3));
        assert_eq!(Value::from(-3i64).as_u64(), None);
        assert_eq!(Value::from(u64::MAX).as_i64(), None);
        assert_eq!(Value::from(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(Value::from(2.5).as_i64(), None);
        assert_eq!(Value::from(7u32).as_f64(), Some(7.0));
        assert_eq!(Value::from("7").as_f64(), None);
    }

    #[test]
    fn depth_counts_nesting_without_recursion() {
        assert_eq!(Value::Null.depth(), 0);
        assert_eq!(Value::from(vec![1u8, 2]).depth(), 1);
        let mut deep = Value::Null;
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(deep.depth(), 100_000);
        // Dropping a deeply nested value recursively would overflow: flatten it first.
        let mut v = deep;
        while let Value::Array(mut a) = v {
            v = a.pop().unwrap_or(Value::Null);
        }
    }
}
