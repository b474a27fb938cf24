//! Protocol generations: which dialect a peer speaks.
//!
//! RXON has two generations on the wire, and this crate's one message model covers
//! both (see [`crate::messages`]):
//!
//! - **1.0b3**, the seed: plain JSON, skills as names, progress frames;
//! - **1.0b17**, today's: skill catalogs, devices, events, signed envelopes
//!   (`timestamp` + `security`), refresh tokens, `X-Worker-ID`.
//!
//! A peer that sends no `X-RXON-Version` speaks 1.0b3. A worker either pins its
//! generation or lets the transport find out ([`ProtocolChoice::Auto`]).

use crate::constants::{PROTOCOL_VERSION, PROTOCOL_VERSION_1B17};
use crate::error::{Result, RxonError};
use std::fmt;
use std::str::FromStr;

/// A protocol generation.
///
/// ```
/// use rxon_core::protocol::Protocol;
/// assert_eq!(Protocol::from_header(None), Protocol::V1b3);
/// assert_eq!(Protocol::from_header(Some("1.0b17")), Protocol::V1b17);
/// // Versions between the two speak the 1.0b17 dialect (b4 brought its shapes).
/// assert_eq!(Protocol::from_header(Some("1.0b13")), Protocol::V1b17);
/// assert_eq!(Protocol::V1b17.as_str(), "1.0b17");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    /// RXON 1.0b3 (the seed).
    #[default]
    V1b3,
    /// RXON 1.0b17.
    V1b17,
}

impl Protocol {
    /// The newest generation this crate speaks.
    pub const LATEST: Protocol = Protocol::V1b17;

    /// The version string (`X-RXON-Version`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1b3 => PROTOCOL_VERSION,
            Protocol::V1b17 => PROTOCOL_VERSION_1B17,
        }
    }

    /// The generation of a peer that sent `header` as its `X-RXON-Version`: 1.0b3 when
    /// absent or `1.0b1`..`1.0b3`, 1.0b17 for any later or unknown version (the newest
    /// dialect, whose decoders ignore what they do not know).
    pub fn from_header(header: Option<&str>) -> Protocol {
        let Some(v) = header.map(str::trim) else {
            return Protocol::V1b3;
        };
        match v.strip_prefix("1.0b").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n <= 3 => Protocol::V1b3,
            _ if v.is_empty() => Protocol::V1b3,
            _ => Protocol::V1b17,
        }
    }

    /// `true` for the generations with the signed envelope.
    pub fn signs(self) -> bool {
        self >= Protocol::V1b17
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which generation a worker speaks: found out from the orchestrator, or pinned.
///
/// `"auto"` (the default) asks the orchestrator first: the transport sends one
/// harmless request before registering (on HTTP, an empty heartbeat,
/// `PATCH /_worker/workers/{id}` without a body, which both generations accept and
/// which needs no envelope) and reads the `X-RXON-Version` of the answer, whatever its
/// status; no header means 1.0b3 (a 5xx without one is asked again later). `"1.0b3"`
/// and `"1.0b17"` skip the question.
///
/// ```
/// use rxon_core::protocol::{Protocol, ProtocolChoice};
/// assert_eq!("auto".parse::<ProtocolChoice>().unwrap(), ProtocolChoice::Auto);
/// assert_eq!("1.0b17".parse::<ProtocolChoice>().unwrap(), ProtocolChoice::Pinned(Protocol::V1b17));
/// assert!("2.0".parse::<ProtocolChoice>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolChoice {
    /// Ask the orchestrator (default).
    #[default]
    Auto,
    /// Speak this generation.
    Pinned(Protocol),
}

impl ProtocolChoice {
    /// The generation a transport that has no negotiation of its own speaks (the
    /// WebSocket transport and gRPC, whose peers are rxon listeners that serve both):
    /// the pinned one, else the latest.
    ///
    /// ```
    /// use rxon_core::protocol::{Protocol, ProtocolChoice};
    /// assert_eq!(ProtocolChoice::Auto.without_negotiation(), Protocol::V1b17);
    /// assert_eq!(ProtocolChoice::Pinned(Protocol::V1b3).without_negotiation(), Protocol::V1b3);
    /// ```
    pub fn without_negotiation(self) -> Protocol {
        match self {
            ProtocolChoice::Auto => Protocol::LATEST,
            ProtocolChoice::Pinned(p) => p,
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolChoice::Auto => "auto",
            ProtocolChoice::Pinned(p) => p.as_str(),
        }
    }
}

impl FromStr for ProtocolChoice {
    type Err = RxonError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" | "" => Ok(ProtocolChoice::Auto),
            v if v == PROTOCOL_VERSION => Ok(ProtocolChoice::Pinned(Protocol::V1b3)),
            v if v == PROTOCOL_VERSION_1B17 => Ok(ProtocolChoice::Pinned(Protocol::V1b17)),
            other => Err(RxonError::config(format!(
                "protocol must be \"auto\", \"{PROTOCOL_VERSION}\" or \"{PROTOCOL_VERSION_1B17}\", got {other:?}"
            ))),
        }
    }
}

impl fmt::Display for ProtocolChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ProtocolChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ProtocolChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: RxonError| serde::de::Error::custom(e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_map_to_generations() {
        for (h, p) in [
            (None, Protocol::V1b3),
            (Some(""), Protocol::V1b3),
            (Some("1.0b1"), Protocol::V1b3),
            (Some(" 1.0b3 "), Protocol::V1b3),
            (Some("1.0b4"), Protocol::V1b17),
            (Some("1.0b17"), Protocol::V1b17),
            (Some("1.0b30"), Protocol::V1b17),
            (Some("2.0"), Protocol::V1b17),
        ] {
            assert_eq!(Protocol::from_header(h), p, "{h:?}");
        }
    }

    #[test]
    fn choices_round_trip() {
        for c in [
            ProtocolChoice::Auto,
            ProtocolChoice::Pinned(Protocol::V1b3),
            ProtocolChoice::Pinned(Protocol::V1b17),
        ] {
            assert_eq!(c.as_str().parse::<ProtocolChoice>().unwrap(), c);
        }
        assert!("1.0b9".parse::<ProtocolChoice>().is_err());
    }
}
