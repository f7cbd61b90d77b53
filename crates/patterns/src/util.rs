//! Small helpers shared by the state machines.

use pvl_protocol::{
    Body, Envelope, Event, EventType, Keypair, MAX_PARENTS, MAX_TEXT_LEN, ObjectId, SignedObject,
    TraceId,
};

use crate::error::Result;
use crate::select::truncate;

/// Signs `body` at `now_ms` in `trace` (or as a root when `None`), with `parents` deduplicated
/// and capped at the protocol limit.
pub(crate) fn sign(
    key: &Keypair,
    trace: Option<TraceId>,
    parents: &[ObjectId],
    now_ms: u64,
    body: Body,
) -> Result<SignedObject> {
    let mut unique: Vec<ObjectId> = Vec::with_capacity(parents.len());
    for p in parents {
        if !unique.contains(p) && unique.len() < MAX_PARENTS {
            unique.push(*p);
        }
    }
    Ok(Envelope {
        trace,
        parents: if trace.is_some() { unique } else { Vec::new() },
        signer: key.public(),
        timestamp_ms: now_ms,
        body,
    }
    .sign(key)?)
}

/// What an `Event` says: its type, the objects it is about, a message and attributes.
pub(crate) struct EventText {
    pub(crate) event_type: EventType,
    pub(crate) about: Vec<ObjectId>,
    pub(crate) message: String,
    pub(crate) attrs: Vec<(String, String)>,
}

/// Signs an `Event` in `trace`, its free text cut to the protocol's limits.
pub(crate) fn sign_event(
    key: &Keypair,
    trace: Option<TraceId>,
    parents: &[ObjectId],
    now_ms: u64,
    event: EventText,
) -> Result<SignedObject> {
    sign(
        key,
        trace,
        parents,
        now_ms,
        Body::Event(Event {
            event_type: event.event_type.into(),
            about: event.about,
            message: text(event.message),
            attrs: event.attrs.into_iter().map(|(k, v)| (k, text(v))).collect(),
        }),
    )
}

/// Cuts free text to the protocol's text limit.
pub(crate) fn text(s: impl AsRef<str>) -> String {
    truncate(s.as_ref(), MAX_TEXT_LEN)
}
