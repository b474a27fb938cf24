//! The reference's canonical JSON: what `rxon.utils.to_dict` and `orjson.dumps(…,
//! OPT_SORT_KEYS)` make of a value, byte for byte.
//!
//! - [`normalize`]: object members that are `null` are removed (recursively; `null`
//!   inside arrays stays), integral floats become integers (`2.0` → `2`, `-0.0` → `0`),
//!   and nothing may sit more than [`MAX_DEPTH`] levels below the top value.
//! - [`to_bytes`]: compact, keys sorted by code point at every level, raw UTF-8
//!   (only `"`, `\` and control characters escaped, as orjson does), floats in their
//!   shortest round-trip form, written `0.00001` from 1e-5 up and `1e-7` below.
//!
//! ```
//! use serde_json::json;
//! let v = rxon_wire::canonical::normalize(&json!({"b": null, "a": [null, 2.0, 1e-7], "é": 0.5}))?;
//! assert_eq!(rxon_wire::canonical::to_string(&v)?, r#"{"a":[null,2,1e-7],"é":0.5}"#);
//! # Ok::<(), rxon_wire::WireError>(())
//! ```

use crate::WireError;
use serde_json::{Map, Number, Value};
use std::fmt::Write;

/// Deepest nesting the reference accepts: a value more than 30 levels below the top
/// object can be neither signed nor verified there (`RecursionError`).
pub const MAX_DEPTH: usize = 30;

/// `value` as the reference normalizes it before it sends or signs (see the
/// [module](self) documentation).
pub fn normalize(value: &Value) -> Result<Value, WireError> {
    normalize_at(value, 0)
}

/// [`normalize`] of a value the caller owns, done in place: the same result without
/// a copy of the tree (what encoding a message for 1.0b17 does with the tree it just
/// built).
pub fn normalize_owned(mut value: Value) -> Result<Value, WireError> {
    normalize_in_place(&mut value, 0)?;
    Ok(value)
}

fn normalize_in_place(value: &mut Value, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::too_deep());
    }
    match value {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                normalize_in_place(v, depth + 1)?;
            }
        }
        Value::Array(a) => {
            for v in a {
                normalize_in_place(v, depth + 1)?;
            }
        }
        Value::Number(n) => *n = integral(n)?,
        _ => {}
    }
    Ok(())
}

fn normalize_at(value: &Value, depth: usize) -> Result<Value, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::too_deep());
    }
    Ok(match value {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if !v.is_null() {
                    out.insert(k.clone(), normalize_at(v, depth + 1)?);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| normalize_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Number(n) => Value::Number(integral(n)?),
        other => other.clone(),
    })
}

/// An integral float as the integer it is; integers and other floats unchanged.
fn integral(n: &Number) -> Result<Number, WireError> {
    if n.is_u64() || n.is_i64() {
        return Ok(n.clone());
    }
    let Some(f) = n.as_f64() else {
        return Err(WireError::invalid(
            "a number that is neither integer nor float",
        ));
    };
    if f.fract() != 0.0 || !f.is_finite() {
        return Ok(n.clone());
    }
    // The reference turns it into a Python int, which orjson refuses beyond 64 bits.
    if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
        Ok(Number::from(f as u64))
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
        Ok(Number::from(f as i64))
    } else {
        Err(WireError::invalid(format!(
            "the integral number {f} exceeds 64 bits and cannot be encoded"
        )))
    }
}

/// `true` when [`normalize`] would return `value` unchanged: no `null` member in any
/// object, no integral float, nothing deeper than [`MAX_DEPTH`]. Checking costs no
/// allocation, so the common case (a message rxon encoded, or one the reference sent)
/// is signed and verified without copying it.
pub fn is_normalized(value: &Value) -> bool {
    fn at(v: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match v {
            Value::Object(m) => m.values().all(|v| !v.is_null() && at(v, depth + 1)),
            Value::Array(a) => a.iter().all(|v| at(v, depth + 1)),
            Value::Number(n) => {
                n.is_u64()
                    || n.is_i64()
                    || n.as_f64()
                        .is_some_and(|f| f.fract() != 0.0 || !f.is_finite())
            }
            _ => true,
        }
    }
    at(value, 0)
}

/// The canonical bytes of the top-level object `m` without the members `keep` refuses,
/// written from `m` itself; `m`'s values must be [normalized](is_normalized).
pub fn object_bytes_where(
    m: &Map<String, Value>,
    keep: impl Fn(&str, &Value) -> bool,
) -> Result<Vec<u8>, WireError> {
    let mut keys: Vec<&String> = m.keys().filter(|k| keep(k, &m[k.as_str()])).collect();
    keys.sort_unstable();
    let mut out = String::with_capacity(256);
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, k);
        out.push(':');
        write_value(&mut out, &m[k.as_str()], 1)?;
    }
    out.push('}');
    Ok(out.into_bytes())
}

/// The canonical bytes of an already [normalized](normalize) value.
pub fn to_bytes(value: &Value) -> Result<Vec<u8>, WireError> {
    to_string(value).map(String::into_bytes)
}

/// [`to_bytes`] as a `String`.
pub fn to_string(value: &Value) -> Result<String, WireError> {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value, 0)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::too_deep());
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, v, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_value(out, &m[k], depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), WireError> {
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else {
        let f = n
            .as_f64()
            .ok_or_else(|| WireError::invalid("a number that is neither integer nor float"))?;
        write_float(out, f)?;
    }
    Ok(())
}

/// orjson's float form: the shortest digits that round-trip, the closest to the
/// value when several are as short (Ryū, through serde_json: Rust's `Display` may
/// pick another), laid out as a decimal with a fraction when 1e-5 ≤ |f| < 1e16, else
/// as `d.ddde±x`.
fn write_float(out: &mut String, f: f64) -> Result<(), WireError> {
    let ryu = Number::from_f64(f)
        .ok_or_else(|| WireError::invalid("NaN or infinity cannot be encoded as JSON"))?
        .to_string();
    let (negative, body) = match ryu.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, ryu.as_str()),
    };
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (
            m,
            e.parse::<i32>()
                .map_err(|_| WireError::invalid(format!("unexpected float form {ryu}")))?,
        ),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // value = 0.DIGITS × 10^point
    let mut digits: String = format!("{int_part}{frac_part}");
    let mut point = i32::try_from(int_part.len()).unwrap_or(i32::MAX) + exp;
    let leading = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..leading);
    point -= i32::try_from(leading).unwrap_or(0);
    let kept = digits.trim_end_matches('0').len();
    digits.truncate(kept);
    if negative {
        out.push('-');
    }
    if digits.is_empty() {
        out.push_str("0.0");
        return Ok(());
    }
    let sci_exp = point - 1;
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if (-5..16).contains(&sci_exp) {
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(-point).unwrap_or(0),
            ));
            out.push_str(&digits);
        } else if point >= len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(point - len).unwrap_or(0),
            ));
            out.push_str(".0");
        } else {
            let (a, b) = digits.split_at(usize::try_from(point).unwrap_or(0));
            out.push_str(a);
            out.push('.');
            out.push_str(b);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        if sci_exp > 0 {
            out.push('+');
        }
        let _ = write!(out, "{sci_exp}");
    }
    Ok(())
}

fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs that need no escape are copied whole; only '"', '\\' and control
    // characters (all ASCII, so never inside a multi-byte character) are escaped.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        to_string(&normalize(&v).unwrap()).unwrap()
    }

    #[test]
    fn floats_are_written_as_orjson_writes_them() {
        // Each pair read from orjson 3.12 (`orjson.dumps([...])`).
        for (f, want) in [
            (1e-7, "1e-7"),
            (1e-5, "0.00001"),
            (1e-4, "0.0001"),
            (1e-6, "1e-6"),
            (1.25e-9, "1.25e-9"),
            (2.5e-300, "2.5e-300"),
            (5e-324, "5e-324"),
            (0.1, "0.1"),
            (123456789.5, "123456789.5"),
            (4503599627370495.5, "4503599627370495.5"),
            (0.30000000000000004, "0.30000000000000004"),
            // Two shortest forms round-trip here; orjson (like Python's repr) writes
            // the closer one, Rust's `Display` the other (…550.63).
            (-79379210612550.62, "-79379210612550.62"),
            (756165413982975.3, "756165413982975.2"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
        ] {
            let mut out = String::new();
            write_float(&mut out, f).unwrap();
            assert_eq!(out, want, "{f:e}");
        }
        for (f, want) in [(1.5e16, "1.5e+16"), (1.5e15, "1500000000000000.0")] {
            let mut out = String::new();
            write_float(&mut out, f).unwrap();
            assert_eq!(out, want);
        }
    }

    #[test]
    fn strings_escape_only_what_orjson_escapes() {
        assert_eq!(
            canon(json!(
                "\u{8}\u{c}\n\r\t\u{0}\u{1}\u{1b}/\\\"😀é\u{7f}\u{2028}"
            )),
            "\"\\b\\f\\n\\r\\t\\u0000\\u0001\\u001b/\\\\\\\"😀é\u{7f}\u{2028}\""
        );
    }

    /// Every string reads back as itself: each character below U+0100 and a few
    /// beyond, alone, between plain text and next to one another.
    #[test]
    fn every_string_reads_back_as_itself() {
        let mut samples: Vec<String> = (0u32..0x100)
            .chain([0x7ff, 0x800, 0x2028, 0xfffd, 0x1f600])
            .filter_map(char::from_u32)
            .flat_map(|c| [c.to_string(), format!("ab{c}cd"), format!("{c}{c}x{c}")])
            .collect();
        samples.push((0u8..0x80).map(char::from).collect());
        samples.push(String::new());
        for s in samples {
            let written = canon(json!(s));
            let back: String = serde_json::from_str(&written).expect("valid JSON");
            assert_eq!(back, s, "{written}");
        }
    }

    /// Normalizing in place gives what normalizing a copy gives, errors included.
    #[test]
    fn in_place_normalizing_is_normalizing() {
        let mut deep = json!(1.0);
        for _ in 0..31 {
            deep = json!({"a": [deep, null]});
        }
        let cases = [
            json!({"a": null, "b": 2.0, "c": [null, 1.5, -3.0, {"d": null, "e": 1e19}], "f": "x"}),
            json!([1.0, {"z": null}, [[2.0]]]),
            json!(-0.0),
            json!([1e300]),
            json!({"n": -1e19}),
            json!({"big": 18_446_744_073_709_551_615u64, "neg": i64::MIN}),
            deep,
        ];
        for v in cases {
            let copied = normalize(&v).map_err(|e| e.to_string());
            let owned = normalize_owned(v.clone()).map_err(|e| e.to_string());
            assert_eq!(owned, copied, "{v}");
        }
    }

    #[test]
    fn keys_sort_by_code_point_and_nulls_leave_objects_only() {
        assert_eq!(
            canon(
                json!({"b": 1, "a": {"é": 1, "z": 2, "A": 3, "😀": 4, "\u{ffff}": 5, "n": null}, "l": [null, {"x": null}]})
            ),
            "{\"a\":{\"A\":3,\"z\":2,\"é\":1,\"\u{ffff}\":5,\"😀\":4},\"b\":1,\"l\":[null,{}]}"
        );
    }

    #[test]
    fn integral_floats_become_integers_within_64_bits() {
        assert_eq!(
            canon(json!([2.0, -0.0, 1e16, -3.0, 0.5])),
            "[2,0,10000000000000000,-3,0.5]"
        );
        assert!(normalize(&json!([1e300])).is_err());
        assert!(normalize(&json!([-1e19])).is_err());
        assert_eq!(
            canon(json!([u64::MAX, i64::MIN])),
            "[18446744073709551615,-9223372036854775808]"
        );
    }

    #[test]
    fn the_fast_path_writes_what_the_general_one_writes() {
        let v =
            json!({"b": [1, 2.5, {"c": "é"}], "a": {"z": 1, "y": [true, null]}, "s": "x", "t": 3});
        assert!(is_normalized(&v));
        let m = v.as_object().unwrap();
        let fast = object_bytes_where(m, |k, _| k != "s").unwrap();
        let mut general = normalize(&v).unwrap();
        general.as_object_mut().unwrap().remove("s");
        assert_eq!(fast, to_bytes(&general).unwrap());
        for not in [
            json!({"a": null}),
            json!({"a": [2.0]}),
            json!({"a": {"b": null}}),
        ] {
            assert!(!is_normalized(&not), "{not}");
        }
        let mut deep = json!(1);
        for _ in 0..31 {
            deep = json!([deep]);
        }
        assert!(!is_normalized(&deep));
    }

    #[test]
    fn nesting_is_limited_to_thirty_levels_below_the_top() {
        let mut ok = json!(1);
        for _ in 0..30 {
            ok = json!([ok]);
        }
        assert!(normalize(&ok).is_ok(), "a scalar at depth 30 is accepted");
        let too_deep = json!([ok]);
        assert_eq!(
            normalize(&too_deep).unwrap_err().to_string(),
            WireError::too_deep().to_string()
        );
    }
}
