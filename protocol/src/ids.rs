//! Content-derived identifiers.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::ProtocolError;

/// The id of an object: SHA-256 of its signed content bytes.
///
/// Displayed and parsed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

/// The id of a trace: the [`ObjectId`] of the intent that started the conversation.
pub type TraceId = ObjectId;

/// SHA-256 of `data`, the hash used for ids and content-addressed payloads.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl ObjectId {
    /// The id of content bytes.
    pub fn of_content(content: &[u8]) -> Self {
        ObjectId(sha256(content))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex digits, for logs and human-readable output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

impl FromStr for ObjectId {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| ProtocolError::field("object_id", format!("not 64 hex digits: {e}")))?;
        Ok(ObjectId(out))
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From the same 64 hex digits it serializes to (JSON views and the control API; the wire
/// format is CBOR bytes, not this).
impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let id = ObjectId::of_content(b"hello");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<ObjectId>().unwrap(), id);
        assert_eq!(id.short(), &text[..8]);
    }

    #[test]
    fn bad_hex_is_an_error() {
        assert!("zz".parse::<ObjectId>().is_err());
        assert!("00".parse::<ObjectId>().is_err());
    }
}
