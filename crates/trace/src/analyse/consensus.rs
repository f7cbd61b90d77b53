//! Consensus rounds: one per proposal, with its votes, decision and latency.

use std::collections::{BTreeMap, HashMap, HashSet};

use pvl_protocol::{Body, EventType, ObjectId, PublicKey, SignedObject};
use serde::Serialize;

use super::{View, event_of};

/// Whether `object` belongs to a consensus round (proposal, vote, certificate, ballot event).
pub(crate) fn is_consensus_object(object: &SignedObject) -> bool {
    match object.body() {
        Body::Proposal(_) | Body::Vote(_) | Body::QuorumCert(_) => true,
        Body::Event(e) => e.kind().is_consensus(),
        _ => false,
    }
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundOutcome {
    /// A quorum certificate was signed.
    Approved,
    /// The committee rejected (`consensus-rejected`).
    Rejected,
    /// Voting closed without a decision (`round-timeout`).
    TimedOut,
    /// Not decided yet.
    Open,
}

/// One member's vote in a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundVote {
    /// The vote.
    pub vote: ObjectId,
    /// Who voted.
    pub member: PublicKey,
    /// Approve or reject.
    pub approve: bool,
    /// Why.
    pub reason: String,
    /// When, unix ms.
    pub at_ms: u64,
}

/// One voting round (one proposal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsensusRound {
    /// The round number stated by the proposal.
    pub round: u32,
    /// The proposal.
    pub proposal: ObjectId,
    /// What is voted on (the offer to award).
    pub subject: ObjectId,
    /// The proposal's action text (`award capability=.. provider=.. offer=..`).
    pub action: String,
    /// Who proposed.
    pub proposer: PublicKey,
    /// Committee size.
    pub members: usize,
    /// Approvals needed.
    pub threshold: u32,
    /// When the proposal was signed, unix ms.
    pub opened_at_ms: u64,
    /// Votes for this proposal, oldest first (also those only found in a certificate).
    pub votes: Vec<RoundVote>,
    /// When the round was decided (certificate, rejection or time-out), unix ms.
    pub decided_at_ms: Option<u64>,
    /// From proposal to decision, ms.
    pub latency_ms: Option<u64>,
    /// How the round ended.
    pub outcome: RoundOutcome,
    /// The quorum certificate, for an approved round.
    pub certificate: Option<ObjectId>,
    /// Members who signed two different votes in this round.
    pub equivocators: Vec<PublicKey>,
}

/// Every object of the trace, plus the proposals, votes and certificates embedded in
/// certificates (a provider's trace may hold only the `TaskStart` with its certificate).
fn with_embedded<'a>(view: &View<'a>) -> Vec<&'a SignedObject> {
    let mut out: Vec<&SignedObject> = Vec::new();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut push = |o: &'a SignedObject, out: &mut Vec<&'a SignedObject>| {
        if seen.insert(o.id()) {
            out.push(o);
        }
    };
    for o in &view.by_time {
        push(o, &mut out);
        let cert = match o.body() {
            Body::QuorumCert(_) => Some(*o),
            Body::TaskStart(s) => s.quorum.as_deref(),
            _ => None,
        };
        if let Some(cert) = cert {
            push(cert, &mut out);
            if let Body::QuorumCert(q) = cert.body() {
                push(&q.proposal, &mut out);
                for v in &q.votes {
                    push(v, &mut out);
                }
            }
        }
    }
    out
}

/// The decision on each proposal: (time, outcome, certificate); the earliest wins.
fn decisions(
    objects: &[&SignedObject],
) -> HashMap<ObjectId, (u64, RoundOutcome, Option<ObjectId>)> {
    let mut out: HashMap<ObjectId, (u64, RoundOutcome, Option<ObjectId>)> = HashMap::new();
    let mut decide =
        |proposal: ObjectId, at: u64, outcome: RoundOutcome, cert: Option<ObjectId>| {
            let entry = out.entry(proposal).or_insert((at, outcome, cert));
            if at < entry.0 {
                *entry = (at, outcome, cert);
            }
        };
    for o in objects {
        match o.body() {
            Body::QuorumCert(q) => {
                decide(
                    q.proposal.id(),
                    o.timestamp_ms(),
                    RoundOutcome::Approved,
                    Some(o.id()),
                );
            }
            Body::Event(e) => {
                let outcome = match e.kind() {
                    EventType::ConsensusRejected => RoundOutcome::Rejected,
                    EventType::RoundTimeout => RoundOutcome::TimedOut,
                    _ => continue,
                };
                let about: HashSet<&ObjectId> = e.about.iter().chain(o.parents()).collect();
                for proposal in objects.iter().filter(|p| about.contains(&p.id())) {
                    if matches!(proposal.body(), Body::Proposal(_)) {
                        decide(proposal.id(), o.timestamp_ms(), outcome, None);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every consensus round of the trace, oldest first.
pub(crate) fn rounds(view: &View<'_>) -> Vec<ConsensusRound> {
    let objects = with_embedded(view);
    let decisions = decisions(&objects);
    let mut votes: HashMap<ObjectId, Vec<&SignedObject>> = HashMap::new();
    for o in &objects {
        if let Body::Vote(v) = o.body() {
            votes.entry(v.proposal).or_default().push(*o);
        }
    }
    let flagged = flagged_equivocators(&objects);
    let mut out: Vec<ConsensusRound> = objects
        .iter()
        .filter_map(|o| match o.body() {
            Body::Proposal(p) => Some((*o, p)),
            _ => None,
        })
        .map(|(o, p)| {
            let mut round_votes: Vec<&SignedObject> =
                votes.get(&o.id()).cloned().unwrap_or_default();
            round_votes.sort_by_key(|v| (v.timestamp_ms(), v.id()));
            let decision = decisions.get(&o.id()).copied();
            let opened = o.timestamp_ms();
            ConsensusRound {
                round: p.round,
                proposal: o.id(),
                subject: p.subject,
                action: p.action.clone(),
                proposer: o.signer(),
                members: p.committee.members.len(),
                threshold: p.committee.threshold,
                opened_at_ms: opened,
                equivocators: equivocators(&round_votes, flagged.get(&o.id())),
                votes: round_votes.iter().filter_map(|v| round_vote(v)).collect(),
                decided_at_ms: decision.map(|d| d.0),
                latency_ms: decision.map(|d| d.0.saturating_sub(opened)),
                outcome: decision.map_or(RoundOutcome::Open, |d| d.1),
                certificate: decision.and_then(|d| d.2),
            }
        })
        .collect();
    out.sort_by_key(|r| (r.opened_at_ms, r.round, r.proposal));
    out
}

fn round_vote(vote: &SignedObject) -> Option<RoundVote> {
    let Body::Vote(v) = vote.body() else {
        return None;
    };
    Some(RoundVote {
        vote: vote.id(),
        member: vote.signer(),
        approve: v.approve,
        reason: v.reason.clone(),
        at_ms: vote.timestamp_ms(),
    })
}

/// Signers of the votes named by `equivocation` events, by proposal.
fn flagged_equivocators(objects: &[&SignedObject]) -> HashMap<ObjectId, Vec<PublicKey>> {
    let by_id: HashMap<ObjectId, &SignedObject> = objects.iter().map(|o| (o.id(), *o)).collect();
    let mut out: HashMap<ObjectId, Vec<PublicKey>> = HashMap::new();
    for o in objects {
        let Some(e) = event_of(o).filter(|e| e.is(&EventType::Equivocation)) else {
            continue;
        };
        for id in e.about.iter().chain(o.parents()) {
            if let Some(vote) = by_id.get(id)
                && let Body::Vote(v) = vote.body()
            {
                out.entry(v.proposal).or_default().push(vote.signer());
            }
        }
    }
    out
}

/// Members with two different votes in the round, plus those flagged by an event.
fn equivocators(votes: &[&SignedObject], flagged: Option<&Vec<PublicKey>>) -> Vec<PublicKey> {
    let mut per_member: BTreeMap<PublicKey, usize> = BTreeMap::new();
    for v in votes {
        *per_member.entry(v.signer()).or_insert(0) += 1;
    }
    for m in flagged.into_iter().flatten() {
        per_member
            .entry(*m)
            .and_modify(|n| *n = (*n).max(2))
            .or_insert(2);
    }
    per_member
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(m, _)| m)
        .collect()
}
