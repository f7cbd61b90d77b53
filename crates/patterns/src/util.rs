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

/// The `run-spec` event's knobs of a request (see [`pvl_protocol::RunSpec`]): what a
/// requester records at the start of a run so that its trace tells how it was coordinated.
impl From<&crate::RequestSpec> for pvl_protocol::RunSpec {
    fn from(spec: &crate::RequestSpec) -> Self {
        pvl_protocol::RunSpec {
            window_ms: spec.offer_window_ms,
            min_offers: spec.min_offers as u64,
            grace_ms: spec.grace_ms,
            silence_ms: spec.silence_ms,
            receipt_wait_ms: spec.receipt_wait_ms,
            max_offers: spec.max_offers as u64,
            max_republish: u64::from(spec.max_republish),
            vote_round_ms: spec.vote_round_ms,
            max_vote_rounds: u64::from(spec.max_vote_rounds),
            label: spec.label.clone(),
            avoid: spec.avoid.clone(),
            asked: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_request_spec_becomes_the_run_spec_event() {
        let mut spec = crate::RequestSpec::new("sha256", pvl_protocol::Payload::Inline(vec![]));
        spec.min_offers = 3;
        spec.silence_ms = Some(7_000);
        spec.avoid = vec![pvl_protocol::PublicKey([9; 32])];
        let run = pvl_protocol::RunSpec::from(&spec);
        assert_eq!(run.window_ms, spec.offer_window_ms);
        assert_eq!(run.min_offers, 3);
        assert_eq!(run.label, pvl_protocol::vocab::MAIN_LABEL);
        let event = run.to_event(ObjectId([1; 32]));
        assert!(event.is(&EventType::RunSpec));
        assert!(event.missing_attrs().is_empty());
        assert_eq!(pvl_protocol::RunSpec::from_event(&event).unwrap(), run);
    }
}
