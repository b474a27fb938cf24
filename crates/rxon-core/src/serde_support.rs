//! Small serde helpers shared by the message and config types.

use serde::{Deserialize, Deserializer};

/// Decodes `null` as the type's default, for fields where a peer may write `null`
/// instead of omitting the key.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `true` when `v` is its type's default: the field is left out, as the reference's
/// `omit_defaults` does.
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Decodes any JSON number as an integer, truncating a float towards zero (a peer
/// may send `deadline` as a float); `null` or absence is `None`. Anything else, and a
/// number beyond `i64`, is an error.
pub(crate) fn any_number_as_int<'de, D>(d: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        U(u64),
        F(f64),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::I(i)) => Ok(Some(i)),
        Some(N::U(u)) => i64::try_from(u)
            .map(Some)
            .map_err(|_| serde::de::Error::custom("integer out of range")),
        Some(N::F(f)) if f.is_finite() && f.abs() < 9.2e18 => Ok(Some(f.trunc() as i64)),
        Some(N::F(_)) => Err(serde::de::Error::custom("number out of range")),
    }
}

pub(crate) fn default_unknown() -> String {
    "unknown".to_owned()
}

pub(crate) fn is_unknown(s: &str) -> bool {
    s == "unknown"
}

pub(crate) fn default_generic() -> String {
    "generic".to_owned()
}

pub(crate) fn default_ip() -> String {
    "0.0.0.0".to_owned()
}

pub(crate) fn default_dialect() -> String {
    crate::constants::SCHEMA_DIALECT_JSON_SCHEMA.to_owned()
}

pub(crate) fn is_default_dialect(s: &str) -> bool {
    s == crate::constants::SCHEMA_DIALECT_JSON_SCHEMA
}
