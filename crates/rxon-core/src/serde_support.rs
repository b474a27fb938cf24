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
