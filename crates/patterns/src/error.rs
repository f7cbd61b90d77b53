//! The error type of the patterns.

use pvl_protocol::{Kind, ObjectId, ProtocolError, PublicKey, TraceId};

/// Why a pattern refused an input or could not produce its actions.
///
/// An `Err` from a `handle`/`on_*` method means the input changed nothing: the node may log it
/// and, for objects from the network, count it against the sender.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    /// Signing or checking an object failed in the protocol layer.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The object belongs to another conversation than this state machine's.
    #[error("object {id} belongs to trace {actual}, not {expected}")]
    WrongTrace {
        /// The object.
        id: ObjectId,
        /// The trace this state machine runs.
        expected: TraceId,
        /// The object's trace.
        actual: TraceId,
    },
    /// The object was signed by someone who has no say here.
    #[error("{kind} {id} signed by {actual}, expected {expected}")]
    WrongSigner {
        /// The object kind.
        kind: Kind,
        /// The object.
        id: ObjectId,
        /// Who should have signed.
        expected: PublicKey,
        /// Who signed.
        actual: PublicKey,
    },
    /// The object is of a kind, or arrives at a moment, this state machine does not handle.
    #[error("unexpected {kind} {id} while {state}")]
    Unexpected {
        /// The object kind.
        kind: Kind,
        /// The object.
        id: ObjectId,
        /// What the state machine is doing.
        state: &'static str,
    },
    /// The object refers to a task this state machine does not know (or no longer runs).
    #[error("unknown task {0}")]
    UnknownTask(ObjectId),
    /// The object is well-formed but does not match what it must match (e.g. a receipt whose
    /// output hash differs from the reported output).
    #[error("{0}")]
    Mismatch(String),
    /// The object was refused by the admission rules (see [`crate::admission`]).
    #[error(transparent)]
    Refused(#[from] crate::admission::Refused),
    /// The caller's specification or call is unusable.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = PatternError> = std::result::Result<T, E>;

/// A proposal whose action is not valid ballot terms is a mismatch with what was signed.
impl PatternError {
    /// A refusal by the admission rules: `refusal`, with `detail`.
    pub fn refused(refusal: crate::admission::Refusal, detail: impl Into<String>) -> Self {
        PatternError::Refused(crate::admission::Refused::new(refusal, detail))
    }

    /// The admission refusal this error means for a received object of `kind`.
    pub fn refusal(&self, kind: Kind) -> crate::admission::Refusal {
        use crate::admission::Refusal;
        match self {
            PatternError::Refused(r) => r.refusal,
            PatternError::UnknownTask(_) => Refusal::TaskNotLive,
            PatternError::WrongTrace { .. } => Refusal::UnknownTrace,
            PatternError::WrongSigner { kind, .. } => match kind {
                Kind::TaskProgress | Kind::TaskDone | Kind::Receipt | Kind::Event => {
                    Refusal::NotTheAwardedProvider
                }
                Kind::TaskStart | Kind::Reject => Refusal::NotYourOffer,
                _ => Refusal::Unexpected,
            },
            _ => match kind {
                Kind::Intent => Refusal::NotBidding,
                Kind::CapabilityAd => Refusal::GossipOnly,
                _ => Refusal::Unexpected,
            },
        }
    }
}

impl From<pvl_protocol::TermsError> for PatternError {
    fn from(e: pvl_protocol::TermsError) -> Self {
        PatternError::Mismatch(e.to_string())
    }
}
