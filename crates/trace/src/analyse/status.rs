//! Where a trace stands: the requester's ending events first, then its parts (rules in the
//! [`analyse`](super) module docs).

use pvl_protocol::{Event, EventType, ObjectId, SignedObject, attr};
use serde::Serialize;

use super::parts::PartTiming;
use super::{Pattern, TraceStatus, View};

/// Why a trace failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceFailure {
    /// The ending event's `reason` attribute (e.g. `requester-restarted`,
    /// `all-providers-failed`), or the failed part's failure text.
    pub reason: String,
    /// The event that ended the trace, when one did.
    pub event: Option<ObjectId>,
    /// Its type: `intent-failed`, `workflow-failed` or `parallel-failed`.
    pub event_type: Option<EventType>,
    /// The part (stage, shard, task label) that failed, when known.
    pub part: Option<String>,
    /// When the trace was ended, unix ms (the event's time, else the part's end).
    pub at_ms: Option<u64>,
}

/// Whether `event` ends the run in failure.
fn ends_in_failure(view: &View<'_>, composite: bool, event: &Event) -> bool {
    match event.kind() {
        EventType::WorkflowFailed | EventType::ParallelFailed => true,
        EventType::IntentFailed => {
            !composite || view.root_id().is_some_and(|r| event.about.contains(&r))
        }
        _ => false,
    }
}

/// Whether `event` ends the run successfully.
fn ends_in_success(composite: bool, event: &Event) -> bool {
    match event.kind() {
        EventType::WorkflowDone | EventType::ParallelDone => true,
        EventType::ReceiptMissing => !composite,
        _ => false,
    }
}

fn failure_from_event(object: &SignedObject, event: &Event, parts: &[PartTiming]) -> TraceFailure {
    let part = event
        .attr(attr::STAGE)
        .filter(|s| *s != attr::NONE)
        .map(str::to_string)
        .or_else(|| {
            parts
                .iter()
                .find(|p| p.ok == Some(false))
                .map(|p| p.label.clone())
        });
    TraceFailure {
        reason: event
            .attr(attr::REASON)
            .unwrap_or(event.event_type.as_str())
            .to_string(),
        event: Some(object.id()),
        event_type: Some(event.kind()),
        part,
        at_ms: Some(object.timestamp_ms()),
    }
}

/// The status of the trace and, for a failed one, why.
pub(crate) fn status(
    view: &View<'_>,
    pattern: Pattern,
    parts: &[PartTiming],
) -> (TraceStatus, Option<TraceFailure>) {
    let composite = pattern.is_composite();
    let mine: Vec<(&SignedObject, &Event)> = view
        .events()
        .filter(|(o, _)| view.by_requester(o))
        .collect();
    if let Some((o, e)) = mine
        .iter()
        .find(|(_, e)| ends_in_failure(view, composite, e))
    {
        return (TraceStatus::Failed, Some(failure_from_event(o, e, parts)));
    }
    if mine.iter().any(|(_, e)| ends_in_success(composite, e)) {
        return (TraceStatus::Done, None);
    }
    let awarded = parts.iter().any(|p| p.awards > 0);
    let run_events = mine.iter().any(|(_, e)| {
        let t = e.kind();
        t.is_workflow() || t.is_parallel()
    });
    if composite && run_events {
        // The run records its own ending: until then it is running.
        let status = if awarded {
            TraceStatus::Awarded
        } else {
            TraceStatus::Open
        };
        return (status, None);
    }
    by_parts(parts, awarded)
}

/// Without an ending event: any part failed for good → Failed; all done → Done.
fn by_parts(parts: &[PartTiming], awarded: bool) -> (TraceStatus, Option<TraceFailure>) {
    if let Some(p) = parts.iter().find(|p| p.ok == Some(false)) {
        let failure = TraceFailure {
            reason: p.failure.clone().unwrap_or_else(|| "failed".into()),
            event: None,
            event_type: None,
            part: Some(p.label.clone()),
            at_ms: p.finished_at_ms,
        };
        return (TraceStatus::Failed, Some(failure));
    }
    if !awarded {
        return (TraceStatus::Open, None);
    }
    if parts.iter().all(|p| p.ok == Some(true)) {
        (TraceStatus::Done, None)
    } else {
        (TraceStatus::Awarded, None)
    }
}
