//! The error type of the trace store.

use pvl_protocol::{ObjectId, ProtocolError};

/// Everything that can go wrong in the trace store.
///
/// A value read back from disk that does not parse, does not hash to its key or does not
/// verify is reported as [`TraceError::Corrupt`] naming the key; it never panics.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The underlying sled database failed (I/O, corruption detected by sled itself).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The store on disk was written with another schema version than this code reads.
    #[error("store schema version {found} is not the supported version {expected}")]
    SchemaMismatch {
        /// The version found on disk.
        found: u32,
        /// The version this code reads and writes.
        expected: u32,
    },
    /// A stored value could not be read back.
    #[error("corrupt value under key {key}: {reason}")]
    Corrupt {
        /// The key, as printable text (`<tree prefix>/<hex>`).
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// Bytes given to the store are not a valid signed object.
    #[error("invalid object: {0}")]
    Invalid(#[from] ProtocolError),
    /// The requested trace has no object in the store.
    #[error("trace {0} is not in the store")]
    UnknownTrace(ObjectId),
    /// An export could not be encoded.
    #[error("export failed: {0}")]
    Export(String),
    /// A bundle is malformed or does not verify.
    #[error("bad bundle: {0}")]
    Bundle(String),
}

/// Shorthand result type of this crate.
pub type Result<T, E = TraceError> = std::result::Result<T, E>;
