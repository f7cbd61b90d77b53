//! The trace bundle: one trace's signed objects in one file, for offline verification.
//!
//! ```text
//! bundle = [
//!   magic:   "pvl-trace-bundle",   ; text string, exactly this (BUNDLE_MAGIC)
//!   version: 1,                    ; unsigned integer, BUNDLE_VERSION
//!   trace:   bstr .size 32,        ; the trace id (id of the root intent)
//!   objects: [* bstr],             ; each: the exact wire bytes of one signed object,
//!                                  ; in causal or time order (order is not significant)
//! ]
//! ```
//!
//! The bundle is encoded like every pvl structure (SPEC.md §1: deterministic CBOR, arrays
//! only), and [`Bundle::decode`] refuses any other encoding. Decoding a bundle only takes its
//! frame apart: the objects inside are returned as wire bytes, still to be decoded and
//! verified one by one ([`crate::SignedObject::decode`]) and checked against the bundle's
//! trace (pvl-trace's `verify_bundle` does both and checks that every parent resolves).
//! Each object carries its own signature, its id is the SHA-256 of its content and its
//! parents are ids, so a bundle needs nothing but its bytes to be checked.

use ciborium::value::Value;

use crate::cbor;
use crate::error::ProtocolError;
use crate::ids::{ObjectId, TraceId};
use crate::{MAX_OBJECT_SIZE, SignedObject};

/// The first element of every bundle.
pub const BUNDLE_MAGIC: &str = "pvl-trace-bundle";
/// The bundle format version this crate writes and reads.
pub const BUNDLE_VERSION: u64 = 1;
/// Most objects a bundle may hold.
pub const MAX_BUNDLE_OBJECTS: usize = 1_000_000;
/// Largest bundle a decoder accepts, in bytes (1 GiB).
pub const MAX_BUNDLE_SIZE: usize = 1 << 30;

/// A decoded bundle frame: the trace id and the objects' wire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The trace the bundle states.
    pub trace: TraceId,
    /// The wire bytes of each object, in bundle order (not yet decoded or verified).
    pub objects: Vec<Vec<u8>>,
}

impl Bundle {
    /// A bundle of `objects` of trace `trace`.
    pub fn new(trace: TraceId, objects: &[SignedObject]) -> Bundle {
        Bundle {
            trace,
            objects: objects.iter().map(|o| o.bytes().to_vec()).collect(),
        }
    }

    /// A bundle of `objects`, its trace taken from their root (or from the first object
    /// when the root is missing; all zeros when `objects` is empty).
    pub fn of_trace(objects: &[SignedObject]) -> Bundle {
        let trace = objects
            .iter()
            .find(|o| o.is_root())
            .or_else(|| objects.first())
            .map(SignedObject::trace_id)
            .unwrap_or(ObjectId([0; 32]));
        Bundle::new(trace, objects)
    }

    /// The canonical bytes of the bundle.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        if self.objects.len() > MAX_BUNDLE_OBJECTS {
            return Err(ProtocolError::field(
                "bundle.objects",
                format!(
                    "{} objects, at most {MAX_BUNDLE_OBJECTS}",
                    self.objects.len()
                ),
            ));
        }
        let value = Value::Array(vec![
            cbor::text(BUNDLE_MAGIC),
            cbor::uint(BUNDLE_VERSION),
            cbor::id(&self.trace),
            Value::Array(self.objects.iter().map(|o| cbor::bytes(o)).collect()),
        ]);
        cbor::encode(&value)
    }

    /// Takes a bundle's frame apart (see the module docs). Total: any input yields a bundle
    /// or an error.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, ProtocolError> {
        if bytes.len() > MAX_BUNDLE_SIZE {
            return Err(ProtocolError::Oversize {
                size: bytes.len(),
                limit: MAX_BUNDLE_SIZE,
            });
        }
        let value = cbor::decode(bytes)?;
        let [magic, version, trace, objects] = cbor::tuple(value, "bundle")?;
        if cbor::as_text(magic, "bundle.magic", BUNDLE_MAGIC.len())? != BUNDLE_MAGIC {
            return Err(ProtocolError::field("bundle.magic", "wrong magic"));
        }
        let version = cbor::as_u64(version, "bundle.version")?;
        if version != BUNDLE_VERSION {
            return Err(ProtocolError::field(
                "bundle.version",
                format!("unsupported bundle version {version}"),
            ));
        }
        let trace = cbor::as_id(trace, "bundle.trace")?;
        let objects = cbor::array(objects, "bundle.objects", MAX_BUNDLE_OBJECTS)?
            .into_iter()
            .map(|o| cbor::as_bytes(o, "bundle.objects", MAX_OBJECT_SIZE))
            .collect::<Result<Vec<_>, _>>()?;
        let bundle = Bundle { trace, objects };
        if bundle.encode()? != bytes {
            return Err(ProtocolError::NonCanonical("bundle"));
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bundle_round_trips_and_is_canonical() {
        let objects = crate::fixtures::sample_objects().unwrap();
        let bundle = Bundle::of_trace(&objects);
        assert_eq!(bundle.trace, objects[0].id());
        let bytes = bundle.encode().unwrap();
        assert_eq!(Bundle::decode(&bytes).unwrap(), bundle);
        // A non-canonical length head (one-byte length 4 written in two bytes) is refused.
        let mut loose = vec![0x98, 0x04];
        loose.extend_from_slice(&bytes[1..]);
        assert!(Bundle::decode(&loose).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = Bundle::of_trace(&crate::fixtures::sample_objects().unwrap())
            .encode()
            .unwrap();
        for cut in (0..bytes.len()).step_by(7) {
            assert!(Bundle::decode(&bytes[..cut]).is_err());
        }
        let wrong_magic = Bundle::decode(
            &cbor::encode(&Value::Array(vec![
                cbor::text("pvl-trace-bundlf"),
                cbor::uint(1),
                cbor::bytes(&[0; 32]),
                Value::Array(vec![]),
            ]))
            .unwrap(),
        );
        assert!(wrong_magic.is_err());
        assert!(Bundle::decode(&[0x84, 0x01, 0x02, 0x03, 0x04]).is_err());
    }
}
