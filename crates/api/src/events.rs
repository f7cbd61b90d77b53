//! What `GET /v1/events` streams: one JSON [`Event`] per server-sent `data:` line.

use pvl_protocol::{Kind, ObjectId, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Something that happened on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An object was recorded in the trace store (sent, received or made by this node), or,
    /// with `stored: false`, an intent seen on the network that this node takes no part in
    /// and does not keep (SPEC.md §20).
    Object(ObjectEvent),
    /// A peer sent something this node refused.
    Refused {
        /// The peer.
        peer: String,
        /// Why: for an object refused by admission, `<code>: <detail>` (SPEC.md §19.2).
        reason: String,
        /// How it came: `direct` or `gossip`, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<String>,
        /// The refused object's kind, when it was decoded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
    /// A connection to a peer opened.
    PeerConnected {
        /// The peer.
        peer: String,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: String,
    },
    /// A connection was refused (allow-list, limits).
    ConnectionRefused {
        /// The peer, when known.
        peer: Option<String>,
        /// Why.
        reason: String,
    },
    /// A peer was banned for its offences (SPEC.md §20): disconnected and ignored until
    /// `until_ms`.
    PeerBanned {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
        /// When the ban ends, unix ms.
        until_ms: u64,
    },
    /// The node listens on a new address.
    Listening {
        /// The multiaddress.
        addr: String,
    },
    /// This subscriber fell behind and missed events.
    Lagged {
        /// How many.
        missed: u64,
    },
}

impl Event {
    /// The trace an event is about, if any.
    pub fn trace(&self) -> Option<ObjectId> {
        match self {
            Event::Object(o) => Some(o.trace_id),
            _ => None,
        }
    }
}

/// An object recorded in the trace store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ObjectEvent {
    /// Its id.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub id: ObjectId,
    /// Its kind.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub kind: Kind,
    /// For an event object: its type (`intent-failed`, `offer-selected`, ...).
    pub event_type: Option<String>,
    /// Where it came from: `local`, `gossip` or `direct`.
    pub origin: String,
    /// The peer that sent it, for a received object.
    pub peer: Option<String>,
    /// Its trace.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// Who signed it.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub signer: PublicKey,
    /// When it was signed, unix ms.
    pub timestamp_ms: u64,
    /// Whether it is in the store: false for an observed intent, which is not kept, or when
    /// the store refused it.
    pub stored: bool,
}
