//! The one error type of the protocol crate: every way bytes or objects can be refused.

use crate::ids::ObjectId;
use crate::keys::PublicKey;

/// Why bytes could not become a valid object, or why a valid object is refused in context.
///
/// Variants name the rule that was broken so that callers can log, penalise a peer or report
/// to a user precisely. None of them is ever produced by a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The input is larger than the named limit.
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    Oversize {
        /// Size of the input in bytes.
        size: usize,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The bytes are not one well-formed CBOR item (or have trailing bytes).
    #[error("malformed CBOR: {0}")]
    MalformedCbor(String),
    /// The CBOR is well formed but not in the one deterministic encoding pvl accepts.
    #[error("non-canonical encoding of the {0}")]
    NonCanonical(&'static str),
    /// A field has the wrong type, length or value.
    #[error("invalid field `{field}`: {problem}")]
    InvalidField {
        /// Dotted path of the field, e.g. `offer.reliability_bps`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The envelope names a protocol version this implementation does not speak.
    #[error("unknown protocol version {0}")]
    UnknownVersion(u64),
    /// The envelope names an object kind that does not exist.
    #[error("unknown object kind {0}")]
    UnknownKind(u64),
    /// A signature does not verify for the stated signer.
    #[error("bad {which} on object {id}")]
    BadSignature {
        /// `signature` or `countersignature`.
        which: &'static str,
        /// Id of the object whose signature failed.
        id: ObjectId,
    },
    /// The object is signed by someone other than the party that must sign it.
    #[error("object {id} is signed by {actual}, expected {expected}")]
    SignerMismatch {
        /// Id of the object.
        id: ObjectId,
        /// Who had to sign it.
        expected: PublicKey,
        /// Who did.
        actual: PublicKey,
    },
    /// The object (or, for objects without an expiry, its age) is past its validity.
    #[error("object {id} expired at {expired_at_ms} (now {now_ms})")]
    Expired {
        /// Id of the object.
        id: ObjectId,
        /// When it stopped being valid, unix ms.
        expired_at_ms: u64,
        /// The clock it was checked against, unix ms.
        now_ms: u64,
    },
    /// The object's timestamp is further in the future than the allowed clock skew.
    #[error("object {id} is dated {timestamp_ms}, more than the allowed skew after now ({now_ms})")]
    FromTheFuture {
        /// Id of the object.
        id: ObjectId,
        /// Its timestamp, unix ms.
        timestamp_ms: u64,
        /// The clock it was checked against, unix ms.
        now_ms: u64,
    },
    /// The same object was already accepted once on the live path.
    #[error("object {0} was already received (replay)")]
    Replayed(ObjectId),
    /// A parent of the object belongs to a different trace.
    #[error("object {id} names parent {parent} from another trace")]
    ParentOutsideTrace {
        /// Id of the child object.
        id: ObjectId,
        /// The offending parent.
        parent: ObjectId,
    },
    /// The object is not of the kind the operation needs.
    #[error("expected a {expected} object, got {actual}")]
    WrongKind {
        /// The kind that was needed.
        expected: &'static str,
        /// The kind that was given.
        actual: &'static str,
    },
    /// Encoding failed (only possible for objects beyond the size limits).
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::InvalidField`].
    pub(crate) fn field(field: &'static str, problem: impl Into<String>) -> Self {
        ProtocolError::InvalidField {
            field,
            problem: problem.into(),
        }
    }
}
