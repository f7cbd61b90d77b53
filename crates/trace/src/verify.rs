//! Re-verification of a trace: every signature and every link, naming the object at fault.

use std::collections::{HashMap, HashSet};

use pvl_protocol::{Body, Kind, ObjectId, ProtocolError, PublicKey, SignedObject, TraceId};
use serde::Serialize;

use crate::error::Result;
use crate::store::TraceStore;

/// What is wrong with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The bytes are not a well-formed object.
    Undecodable,
    /// A signature or countersignature does not verify.
    BadSignature,
    /// The content does not hash to the id it is stored (or listed) under.
    IdMismatch,
    /// The object states another trace.
    WrongTrace,
    /// A parent is not in the trace.
    MissingParent,
    /// A parent exists but belongs to another trace.
    ParentOutsideTrace,
    /// A body field names an object (intent, offer, task, proposal) that is not in the trace.
    DanglingReference,
    /// A body field names an object of the trace that is of the wrong kind.
    WrongReference,
    /// The object is signed by someone other than the party that must sign it.
    WrongSigner,
}

impl ProblemKind {
    /// Whether the problem is only that a linked object is not in this copy (a missing parent
    /// or a reference to an absent object), not that something present is wrong.
    pub fn is_absence(self) -> bool {
        matches!(
            self,
            ProblemKind::MissingParent | ProblemKind::DanglingReference
        )
    }
}

/// One problem found by verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object at fault (the id it is stored or listed under).
    pub object: ObjectId,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// Details for people.
    pub detail: String,
}

/// The result of verifying a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The trace.
    pub trace: TraceId,
    /// Number of objects checked.
    pub checked: usize,
    /// Everything found wrong (empty if the trace verifies).
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether every problem is a link to an object this copy does not hold: what a
    /// participant's copy of a trace looks like (a provider never receives the requester's
    /// selection event or the other providers' offers). Every object present verified.
    pub fn is_ok_as_partial_copy(&self) -> bool {
        self.problems.iter().all(|p| p.kind.is_absence())
    }

    /// How many links point to objects this copy does not hold.
    pub fn absent_links(&self) -> usize {
        self.problems.iter().filter(|p| p.kind.is_absence()).count()
    }

    /// Ids of the objects at fault.
    pub fn bad_objects(&self) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> = self.problems.iter().map(|p| p.object).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Verifies one trace's objects given as `(id it is stored under, if any; wire bytes)`.
///
/// `outside` tells the trace of an object that is not among `items` (a store lookup), so a
/// parent in another trace is told apart from a missing one; offline it returns `None`.
pub fn verify_objects(
    trace: TraceId,
    items: &[(Option<ObjectId>, &[u8])],
    outside: &dyn Fn(&ObjectId) -> Option<TraceId>,
) -> VerifyReport {
    let mut problems = Vec::new();
    let inputs: Vec<&[u8]> = items.iter().map(|(_, b)| *b).collect();
    let decoded = SignedObject::decode_batch(&inputs);
    let mut objects: HashMap<ObjectId, SignedObject> = HashMap::new();
    // Objects present but failing verification: already reported, so links to them are not
    // reported again as missing.
    let mut bad: HashSet<ObjectId> = HashSet::new();
    for ((key, bytes), result) in items.iter().zip(decoded) {
        let named = key.unwrap_or_else(|| ObjectId(pvl_protocol::sha256(bytes)));
        match result {
            Ok(object) => {
                if let Some(k) = key
                    && *k != object.id()
                {
                    problems.push(Problem {
                        object: *k,
                        kind: ProblemKind::IdMismatch,
                        detail: format!(
                            "stored under {k} but its content hashes to {}",
                            object.id()
                        ),
                    });
                    bad.insert(*k);
                    continue;
                }
                if object.trace_id() != trace {
                    problems.push(Problem {
                        object: object.id(),
                        kind: ProblemKind::WrongTrace,
                        detail: format!("states trace {}", object.trace_id()),
                    });
                }
                objects.insert(object.id(), object);
            }
            Err(e) => {
                let kind = match e {
                    ProtocolError::BadSignature { .. } => ProblemKind::BadSignature,
                    _ => ProblemKind::Undecodable,
                };
                // A content change alters the id; name the object by the id it is stored under.
                let object = match (&e, key) {
                    (_, Some(k)) => *k,
                    (ProtocolError::BadSignature { id, .. }, None) => *id,
                    _ => named,
                };
                bad.insert(object);
                problems.push(Problem {
                    object,
                    kind,
                    detail: e.to_string(),
                });
            }
        }
    }
    let mut ids: Vec<&ObjectId> = objects.keys().collect();
    ids.sort();
    for id in ids {
        let Some(object) = objects.get(id) else {
            continue;
        };
        check_links(object, &objects, &bad, outside, &mut problems);
    }
    VerifyReport {
        trace,
        checked: items.len(),
        problems,
    }
}

fn check_links(
    object: &SignedObject,
    objects: &HashMap<ObjectId, SignedObject>,
    bad: &HashSet<ObjectId>,
    outside: &dyn Fn(&ObjectId) -> Option<TraceId>,
    problems: &mut Vec<Problem>,
) {
    let id = object.id();
    let mut push = |kind: ProblemKind, detail: String| {
        problems.push(Problem {
            object: id,
            kind,
            detail,
        })
    };
    for parent in object.parents() {
        if objects.contains_key(parent) || bad.contains(parent) {
            continue;
        }
        match outside(parent) {
            Some(t) if t != object.trace_id() => push(
                ProblemKind::ParentOutsideTrace,
                format!("parent {parent} belongs to trace {t}"),
            ),
            _ => push(
                ProblemKind::MissingParent,
                format!("parent {parent} is missing"),
            ),
        }
    }
    let find = |target: &ObjectId, kind: Kind| objects.get(target).filter(|o| o.kind() == kind);
    let mut dangling = |field: &str, target: &ObjectId, kind: Kind| -> Option<&SignedObject> {
        let found = find(target, kind);
        if found.is_none() && !bad.contains(target) {
            if objects.contains_key(target) {
                push(
                    ProblemKind::WrongReference,
                    format!("{field} names {target}, which is not a {kind}"),
                );
            } else {
                push(
                    ProblemKind::DanglingReference,
                    format!("{field} names {target}, which is not in this copy of the trace"),
                );
            }
        }
        found
    };
    let mut signer_problem: Option<(PublicKey, PublicKey, &str)> = None;
    match object.body() {
        Body::Offer(o) => {
            dangling("offer.intent", &o.intent, Kind::Intent);
        }
        Body::TaskStart(s) => {
            if let Some(offer) = dangling("task_start.offer", &s.offer, Kind::Offer)
                && offer.signer() != s.provider
            {
                signer_problem = Some((offer.signer(), s.provider, "task_start.provider"));
            }
        }
        Body::TaskProgress(p) => {
            if let Some(start) = dangling("task_progress.task", &p.task, Kind::TaskStart) {
                signer_problem = provider_check(start, object, "task_progress signer");
            }
        }
        Body::TaskDone(d) => {
            if let Some(start) = dangling("task_done.task", &d.task, Kind::TaskStart) {
                signer_problem = provider_check(start, object, "task_done signer");
            }
        }
        Body::Receipt(r) => {
            dangling("receipt.intent", &r.intent, Kind::Intent);
            if let Some(start) = dangling("receipt.task", &r.task, Kind::TaskStart) {
                if start.signer() != r.requester {
                    signer_problem = Some((start.signer(), r.requester, "receipt.requester"));
                } else {
                    signer_problem = provider_check(start, object, "receipt signer");
                }
            }
        }
        Body::Vote(v) => {
            dangling("vote.proposal", &v.proposal, Kind::Proposal);
        }
        Body::Reject(r) => {
            for (offer, _, _) in r.entries() {
                dangling("reject.offer", &offer, Kind::Offer);
            }
        }
        _ => {}
    }
    if let Some((expected, actual, what)) = signer_problem {
        problems.push(Problem {
            object: id,
            kind: ProblemKind::WrongSigner,
            detail: format!("{what} is {actual}, expected {expected}"),
        });
    }
}

fn provider_check<'a>(
    start: &SignedObject,
    object: &SignedObject,
    what: &'a str,
) -> Option<(PublicKey, PublicKey, &'a str)> {
    match start.body() {
        Body::TaskStart(s) if s.provider != object.signer() => {
            Some((s.provider, object.signer(), what))
        }
        _ => None,
    }
}

impl TraceStore {
    /// Re-verifies every stored object of `trace` (signatures, ids, trace membership) and every
    /// link (parents present and in the trace; body references to intents, offers, tasks and
    /// proposals; who must sign what). Problems are reported, naming the object at fault.
    pub fn verify_trace(&self, trace: &TraceId) -> Result<VerifyReport> {
        let _span = tracing::debug_span!("verify", trace = %trace.short()).entered();
        let (entries, broken) = self.trace_entries_lenient(trace)?;
        if entries.is_empty() && broken.is_empty() {
            return Err(crate::TraceError::UnknownTrace(*trace));
        }
        let mut items: Vec<(Option<ObjectId>, &[u8])> = entries
            .iter()
            .map(|e| (Some(e.id), e.bytes.as_slice()))
            .collect();
        let mut unreadable = Vec::new();
        for (key, err) in &broken {
            for id in self.ids_in_chunk(key)? {
                unreadable.push((id, err.to_string()));
            }
        }
        // Objects of an unreadable chunk are checked as empty input: reported undecodable,
        // named by their id, and not reported again as missing parents of their children.
        items.extend(unreadable.iter().map(|(id, _)| (Some(*id), &[][..])));
        let outside = |id: &ObjectId| self.trace_of(id).ok().flatten();
        let mut report = verify_objects(*trace, &items, &outside);
        for p in &mut report.problems {
            if let Some((_, detail)) = unreadable.iter().find(|(id, _)| *id == p.object) {
                p.detail = detail.clone();
            }
        }
        if !report.is_ok() {
            tracing::warn!(
                problems = report.problems.len(),
                bad = ?report.bad_objects(),
                "trace does not verify"
            );
        }
        Ok(report)
    }
}
