//! What a node restarted mid-round takes up again, and how it answers for intents it
//! coordinated before the restart.
//!
//! On start the node looks through its recent traces for runs it started (root intent signed
//! by its own key) that never ended: no `intent-failed` or `receipt-missing` event, no
//! countersigned receipt of a successful task (or, for a workflow or parallel run, none of
//! the composite endings). [`open_runs`] hands their objects to
//! [`pvl_patterns::Engine::restore`], which rebuilds each contract-net run from its trace and
//! ends the others with a signed `intent-failed` event, reason `requester-restarted`.
//!
//! [`stored_outcome`] reads an ended intent's outcome back from its trace, so
//! `GET /v1/intents/{id}/outcome` still answers after a restart.

use pvl_api::{Completed, Failed, Outcome};
use pvl_protocol::{Body, EventType, Keypair, Kind, PatternHint, SignedObject, TraceId, attr};
use pvl_trace::TraceStore;
use tracing::warn;

/// How many recent traces are looked at on start.
pub const RECENT_TRACES: usize = 10_000;

/// Event types that end a contract-net (or auction, or consensus) intent.
const ENDINGS: [EventType; 2] = [EventType::IntentFailed, EventType::ReceiptMissing];

/// Event types that end a workflow or a parallel run (its sub-intents end with [`ENDINGS`]).
const COMPOSITE_ENDINGS: [EventType; 5] = [
    EventType::WorkflowDone,
    EventType::WorkflowFailed,
    EventType::ParallelDone,
    EventType::ParallelFailed,
    EventType::IntentFailed,
];

/// The objects of every run of `key` among the recent traces of `store` that never ended.
/// Errors on single traces are logged and skipped: recovery never stops a start.
pub fn open_runs(store: &TraceStore, key: &Keypair) -> Vec<Vec<SignedObject>> {
    let summaries = match store.recent_traces(RECENT_TRACES) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot list traces to recover open runs: {e}");
            return Vec::new();
        }
    };
    let mut open = Vec::new();
    for summary in summaries {
        let objects = match store.trace(&summary.trace).and_then(|dag| dag.objects()) {
            Ok(objects) => objects,
            Err(e) => {
                warn!(trace = %summary.trace.short(), "cannot read trace: {e}");
                continue;
            }
        };
        let Some(root) = own_root(&objects, summary.trace, key) else {
            continue;
        };
        if ended(&objects, root, key) {
            continue;
        }
        open.push(objects);
    }
    open
}

/// The root intent of the trace, if this node published it.
fn own_root<'a>(
    objects: &'a [SignedObject],
    trace: TraceId,
    key: &Keypair,
) -> Option<&'a SignedObject> {
    objects
        .iter()
        .find(|o| o.id() == trace && o.kind() == Kind::Intent && o.signer() == key.public())
}

fn is_composite(root: &SignedObject) -> bool {
    matches!(
        root.body(),
        Body::Intent(i) if matches!(i.pattern, PatternHint::Workflow | PatternHint::Parallel)
    )
}

/// Whether the intent rooted at `root` has ended (see the module doc).
fn ended(objects: &[SignedObject], root: &SignedObject, key: &Keypair) -> bool {
    let endings: &[EventType] = if is_composite(root) {
        &COMPOSITE_ENDINGS
    } else {
        &ENDINGS
    };
    objects.iter().any(|o| match o.body() {
        Body::Event(e) => o.signer() == key.public() && endings.contains(&e.kind()),
        Body::Receipt(r) => {
            !is_composite(root)
                && r.requester == key.public()
                && o.is_countersigned()
                && r.status.is_ok()
        }
        _ => false,
    })
}

/// The outcome of an ended intent of this node, read from its trace: the same JSON shape as
/// a live outcome (`status`, `reason`/`detail` or `provider`, `output`, `receipt_id`, ...).
/// `None` when the trace is not this node's or has not ended.
pub fn stored_outcome(objects: &[SignedObject], trace: TraceId, key: &Keypair) -> Option<Outcome> {
    let root = own_root(objects, trace, key)?;
    if !ended(objects, root, key) {
        return None;
    }
    let mine = |o: &&SignedObject| o.signer() == key.public();
    let failure = objects.iter().filter(mine).find_map(|o| match o.body() {
        Body::Event(e) if e.kind().is_run_failure() => Some(e),
        _ => None,
    });
    if let Some(event) = failure {
        let reason = event
            .attrs
            .iter()
            .find(|(k, _)| k == attr::REASON)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| event.event_type.clone());
        let detail = event
            .message
            .split_once(": ")
            .map_or(event.message.as_str(), |(_, d)| d);
        return Some(Outcome::Failed(Failed {
            reason,
            detail: detail.to_owned(),
            parts: Vec::new(),
            from_store: true,
        }));
    }
    let receipt = objects
        .iter()
        .filter(|o| o.is_countersigned())
        .find_map(|o| match o.body() {
            Body::Receipt(r) if r.requester == key.public() && r.status.is_ok() => Some((o, r)),
            _ => None,
        });
    let Some((receipt, body)) = receipt else {
        // Ended without a failure and without a countersigned receipt: a composite's
        // `*-done` event, or a task reported done whose receipt never came.
        let done = objects.iter().filter(mine).find_map(|o| match o.body() {
            Body::Event(e) if e.kind().is_run_done() => Some(e),
            _ => None,
        })?;
        return Some(Outcome::Completed(Completed {
            provider: None,
            task: None,
            offer: None,
            cost: 0,
            output: None,
            output_hex: None,
            receipt_id: None,
            receipt_countersigned: false,
            awards: 0,
            parts: Vec::new(),
            detail: Some(done.message.clone()),
            from_store: true,
        }));
    };
    let output = objects.iter().find_map(|o| match o.body() {
        Body::TaskDone(d) if d.task == body.task => d.output.as_ref().and_then(|p| p.inline()),
        _ => None,
    });
    let offer = objects.iter().find_map(|o| match o.body() {
        Body::TaskStart(s) if o.id() == body.task => Some(s.offer),
        _ => None,
    });
    let awards = objects
        .iter()
        .filter(|o| o.kind() == Kind::TaskStart && o.signer() == key.public())
        .count();
    let text = output.and_then(|b| std::str::from_utf8(b).ok());
    Some(Outcome::Completed(Completed {
        provider: Some(receipt.signer()),
        task: Some(body.task),
        offer,
        cost: body.cost,
        output: text.map(str::to_owned),
        output_hex: if text.is_none() {
            output.map(hex::encode)
        } else {
            None
        },
        receipt_id: Some(receipt.id()),
        receipt_countersigned: true,
        awards: u32::try_from(awards).unwrap_or(u32::MAX),
        parts: Vec::new(),
        detail: None,
        from_store: true,
    }))
}
