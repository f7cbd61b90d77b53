//! Small helpers shared by the state machines.

use pvl_protocol::{
    Body, Envelope, Keypair, MAX_PARENTS, MAX_TEXT_LEN, ObjectId, SignedObject, TraceId,
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

/// Cuts free text to the protocol's text limit.
pub(crate) fn text(s: impl AsRef<str>) -> String {
    truncate(s.as_ref(), MAX_TEXT_LEN)
}
