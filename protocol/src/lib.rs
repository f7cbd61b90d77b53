//! # pvl-protocol: the Pervasive.link wire agreement
//!
//! This crate is the byte-for-byte agreement between pvl nodes (and any other implementation):
//! what each coordination object is, how it is encoded, how it is signed, how its id is derived
//! and which objects a node must refuse. It performs no I/O.
//!
//! ## Design
//!
//! Every object travels in one signed envelope:
//!
//! ```text
//! wire    = [ content: bstr, signature: bstr(64) (, countersignature: bstr(64))? ]
//! content = [ version, kind, trace / null, [parents..], signer, timestamp_ms, body ]
//! ```
//!
//! * The `content` bytes are deterministic CBOR (arrays only, shortest-form integers, definite
//!   lengths). They are produced once, by the signer, and from then on they are what is signed,
//!   sent, hashed and stored. Decoding re-encodes the parsed value only to *refuse* non-canonical
//!   input; signature checks always run over the received bytes.
//! * The signature is ed25519 over a domain-separated input: a fixed tag, the protocol version and
//!   the object kind, then the content ([`signing_input`]). A signature made for one kind can
//!   never verify as another kind.
//! * The id of an object is SHA-256 of its content bytes ([`ObjectId`]). The trace id of a
//!   conversation is the id of its root intent; the root itself carries `null` as trace.
//! * A [`Receipt`] is signed by the provider and may carry a countersignature by the requester
//!   named in its body, so verifying it needs nothing but its bytes.
//!
//! Decoding ([`SignedObject::decode`]) is total: any byte string yields a verified object or a
//! typed [`ProtocolError`], never a panic. Time-dependent rules (expiry, clock skew, replay) are
//! applied separately by [`LiveValidator`], because stored evidence must stay verifiable long
//! after it expired.
//!
//! Above the envelope, the vocabulary pvl writes and reads is typed here too, so that every
//! crate (and every other implementation, through SPEC.md) has one definition of it:
//!
//! * [`vocab`]: event types ([`EventType`]), attribute keys ([`attr`]) and the `run-spec`
//!   event ([`RunSpec`]);
//! * [`ProposalTerms`]: the ballot terms grammar of a consensus proposal's `action`;
//! * [`Settlement`]: the receipt / done / offer rule (which object is authoritative for a
//!   task's status, timings, cost and output);
//! * [`Bundle`]: the trace bundle file format;
//! * [`read_header`]: the envelope fields of stored bytes without a signature check.
//!
//! The sample objects in `fixtures` (feature `test-utils`) serve tests, benchmarks and docs.
//!
//! `SPEC.md` next to this crate describes the format field by field for other implementations.
//!
//! ## Example
//!
//! ```
//! use pvl_protocol::{Body, Envelope, Event, Keypair, SignedObject, fixtures};
//!
//! # fn main() -> Result<(), pvl_protocol::ProtocolError> {
//! let requester = Keypair::generate()?;
//! let intent = fixtures::intent()?; // a sample intent, the root of a trace
//! let event = Envelope {
//!     trace: Some(intent.trace_id()),
//!     parents: vec![intent.id()],
//!     signer: requester.public(),
//!     timestamp_ms: fixtures::T0 + 5,
//!     body: Body::Event(Event {
//!         event_type: "note".into(),
//!         about: vec![intent.id()],
//!         message: "seen".into(),
//!         attrs: vec![],
//!     }),
//! }
//! .sign(&requester)?;
//! // What a receiver does with the bytes:
//! let received = SignedObject::decode(event.bytes())?;
//! assert_eq!(received.id(), event.id());
//! assert_eq!(received.trace_id(), intent.id());
//! # Ok(())
//! # }
//! ```

mod body;
mod bundle;
mod cbor;
mod counters;
mod envelope;
mod error;
mod header;
mod ids;
mod keys;
mod settlement;
mod terms;
mod validate;
pub mod vocab;

#[cfg(any(test, feature = "test-utils"))]
pub mod fixtures;

pub use body::{
    AUDIENCE_TAG, Audience, Body, CapabilityAd, Committee, Constraints, Event, Intent, Kind, Offer,
    PatternHint, Payload, PriceModel, Proposal, QuorumCert, Receipt, Reject, RejectCode,
    RejectedOffer, Resources, Strategy, TaskDone, TaskProgress, TaskStart, TaskStatus, Vote,
    Weights,
};
pub use bundle::{BUNDLE_MAGIC, BUNDLE_VERSION, Bundle, MAX_BUNDLE_OBJECTS, MAX_BUNDLE_SIZE};
pub use counters::CryptoCounters;
pub use envelope::{Envelope, SignedObject, countersigning_input, signing_input};
pub use error::ProtocolError;
pub use header::{Header, read_header};
pub use ids::{ObjectId, TraceId, sha256};
pub use keys::{Keypair, PublicKey};
pub use settlement::{CostSource, Settlement, SettlementError};
pub use terms::{AWARD_VERB, ProposalTerms, TermsError};
pub use validate::{
    LiveValidator, ReplayGuard, check_fresh, check_parent, check_signer, expiry_of,
};
pub use vocab::{EventType, RunSpec, SignedBy, attr};

/// The protocol version this crate speaks; the first field of every envelope.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest encoded object (wire bytes) a decoder accepts, in bytes.
pub const MAX_OBJECT_SIZE: usize = 1024 * 1024;

/// Largest inline payload (task input or output) in bytes; bigger data travels as a hash.
pub const MAX_INLINE_PAYLOAD: usize = 768 * 1024;

/// Largest free-text field (messages, reasons, descriptions) in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 4096;

/// Largest capability name in bytes; names are ASCII `[A-Za-z0-9._:/-]`.
pub const MAX_CAPABILITY_LEN: usize = 64;

/// Most parent ids one object may list.
pub const MAX_PARENTS: usize = 32;

/// Most members of an approval committee (and so most votes in a quorum certificate).
pub const MAX_COMMITTEE: usize = 64;

/// Most entries in an event's `about` list and in its `attrs` list.
pub const MAX_EVENT_ITEMS: usize = 256;

/// Most offers one `Reject` refuses (its `offer` plus its `more` list). Equal to
/// [`MAX_PARENTS`], so a reject can list every offer it refuses as a parent.
pub const MAX_REJECT_OFFERS: usize = 32;

/// Deepest CBOR nesting a decoder follows before giving up.
pub const MAX_CBOR_DEPTH: usize = 16;

/// How far in the future an object's timestamp may be (clock skew between nodes), in ms.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;

/// How long an object without its own expiry stays acceptable on the live path, in ms.
pub const MAX_MESSAGE_AGE_MS: u64 = 10 * 60 * 1000;

/// Longest lifetime (`expires_at_ms - timestamp_ms`) an object may declare, in ms (7 days).
pub const MAX_LIFETIME_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Reliability and progress are integers in basis points: 10,000 means 100 %.
pub const BASIS_POINTS: u16 = 10_000;
