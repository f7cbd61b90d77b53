//! Consensus rounds: a committee approves an award before the provider may execute it.
//!
//! When an intent names a [`Committee`], the requester does not award the winning offer at
//! once. It runs a [`Ballot`]: a signed [`Proposal`] whose `action` states exactly what will be
//! executed ([`ProposalTerms`]: capability, provider, offer, cost, eta, input hash), sent to
//! every member directly. Each member's [`Voter`] decides from that signed data with a
//! [`VotePolicy`] (the node builds a [`RulePolicy`] from its configuration) and answers with a
//! signed [`Vote`]. A threshold of approving votes becomes a [`QuorumCert`] that the requester
//! embeds in the `TaskStart`; the provider refuses to execute without one
//! ([`verify_certificate`]).
//!
//! ```text
//!  requester (Ballot)                         member (Voter)
//!  start: sign Proposal(round 1) --Send-->    on_proposal: decide with its policy,
//!         SetTimer(VoteRound 1)               sign Vote --Send--> requester
//!  on_vote: check (member, proposal, round), record
//!    approvals >= threshold        -> sign QuorumCert        -> Approved(cert)
//!    threshold out of reach        -> Event consensus-rejected -> Rejected(reasons)
//!  on_timer(VoteRound r), undecided:
//!    r < max_rounds                -> Event round-timeout, Proposal(round r+1) to everyone
//!    r = max_rounds                -> Event round-timeout       -> TimedOut
//! ```
//!
//! ## Rules
//!
//! * Only votes for the **current** proposal and round count. Votes for the proposal of an
//!   earlier round, or arriving after the decision, are recorded (they are evidence) and
//!   ignored.
//! * A member who signs two different votes for one round **equivocates**: both votes are
//!   recorded, an `equivocation` event names the member, and none of its votes counts in that
//!   round (it may vote again in a later round).
//! * A round is rejected as soon as the threshold can no longer be reached:
//!   `members - rejections - equivocators < threshold`. The `consensus-rejected` event and
//!   [`Decision::Rejected`] list every member's stance and reason.
//! * A [`Voter`] answers one proposal (one round) once: a duplicate delivery gets the same
//!   signed vote again, never a second, different one.
//!
//! ## Proposal terms
//!
//! The protocol's `Proposal` has a `subject` (the winning offer's id) and a free-text
//! `action`. The action is the canonical text of [`ProposalTerms`] (defined, with its
//! grammar, in `pvl_protocol`):
//!
//! ```text
//! award capability=sha256 provider=<64 hex> offer=<64 hex> cost=5 eta_ms=100 input_sha256=<64 hex>
//! ```
//!
//! [`ProposalTerms::parse`] accepts exactly that form (it re-renders the parsed terms and
//! compares), so a signed proposal has one meaning, and a member decides from signed data only.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use pvl_protocol::{
    Body, Committee, Keypair, Kind, ObjectId, Proposal, PublicKey, QuorumCert, SignedObject,
    TraceId, Vote,
};
use pvl_protocol::{EventType, attr};
use tracing::{debug, info, warn};

use crate::action::{Action, TimerKind, TimerToken};
use crate::admission::Refusal;
use crate::error::{PatternError, Result};
use crate::util::{EventText, sign, sign_event, text};

/// The ballot terms grammar lives in the protocol crate (SPEC.md §9); re-exported here
/// because every ballot speaks it.
pub use pvl_protocol::{AWARD_VERB, ProposalTerms, TermsError};

/// How many proposals a [`Voter`] remembers its vote for (older ones are forgotten first).
pub const DEFAULT_VOTER_MEMORY: usize = 4096;

/// Where one member stood when a round was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stance {
    /// It approved.
    Approve,
    /// It rejected.
    Reject,
    /// It signed two different votes; neither counts.
    Equivocated,
    /// No vote arrived.
    Silent,
}

impl Stance {
    /// A short machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Stance::Approve => "approve",
            Stance::Reject => "reject",
            Stance::Equivocated => "equivocated",
            Stance::Silent => "silent",
        }
    }
}

impl fmt::Display for Stance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One member's stance and reason in the deciding round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReason {
    /// The member.
    pub member: PublicKey,
    /// How it voted.
    pub stance: Stance,
    /// The reason in its vote (or why it has none).
    pub reason: String,
}

/// How a ballot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A threshold of members approved: the signed certificate to embed in the `TaskStart`.
    Approved {
        /// The signed `QuorumCert`.
        certificate: Box<SignedObject>,
        /// The round that decided.
        round: u32,
    },
    /// The threshold could no longer be reached in `round`.
    Rejected {
        /// The round that decided.
        round: u32,
        /// Every member's stance and reason, in committee order.
        reasons: Vec<MemberReason>,
    },
    /// No round reached a decision before its timer.
    TimedOut {
        /// How many rounds were run.
        rounds: u32,
    },
}

impl Decision {
    /// The reasons as one line: `ab12cd34 reject: too expensive; ...`.
    pub fn summary(&self) -> String {
        match self {
            Decision::Approved { round, .. } => format!("approved in round {round}"),
            Decision::TimedOut { rounds } => {
                format!("no quorum in {rounds} round(s): the voting timer ran out each time")
            }
            Decision::Rejected { round, reasons } => {
                let parts: Vec<String> = reasons
                    .iter()
                    .map(|r| format!("{} {}: {}", r.member.short(), r.stance, r.reason))
                    .collect();
                format!("rejected in round {round}: {}", parts.join("; "))
            }
        }
    }
}

/// The proposer side of a consensus round on one award. Sans-I/O like
/// [`crate::Requester`]: feed it votes and its timers, carry out the actions.
#[derive(Debug)]
pub struct Ballot {
    key: Keypair,
    trace: TraceId,
    /// The scope of the requester that runs this ballot (its timers carry it).
    scope: ObjectId,
    parents: Vec<ObjectId>,
    terms: ProposalTerms,
    committee: Committee,
    round_timeout_ms: u64,
    max_rounds: u32,
    round: u32,
    proposal: Option<SignedObject>,
    closes_at_ms: u64,
    /// Proposals of earlier rounds: their late votes are recorded and ignored.
    earlier: HashSet<ObjectId>,
    /// The first vote of each member in the current round.
    votes: HashMap<PublicKey, SignedObject>,
    /// Members who equivocated in the current round.
    equivocators: HashSet<PublicKey>,
    /// Votes recorded, to record each once; capped per member.
    recorded: HashSet<ObjectId>,
    recorded_per_member: HashMap<PublicKey, u32>,
    decision: Option<Decision>,
}

impl Ballot {
    /// A ballot signed by `key` in `trace` on `terms` for `committee`; the first proposal's
    /// parents are `parents` (e.g. the winning offer and the selection event). Each round
    /// lasts `round_timeout_ms`; after `max_rounds` rounds without decision it times out.
    pub fn new(
        key: Keypair,
        trace: TraceId,
        parents: Vec<ObjectId>,
        terms: ProposalTerms,
        committee: Committee,
        round_timeout_ms: u64,
        max_rounds: u32,
    ) -> Result<Self> {
        check_committee(&committee)?;
        if round_timeout_ms == 0 || max_rounds == 0 {
            return Err(PatternError::Invalid(
                "a ballot needs a positive round timeout and at least one round".into(),
            ));
        }
        Ok(Ballot {
            key,
            trace,
            scope: trace,
            parents,
            terms,
            committee,
            round_timeout_ms,
            max_rounds,
            round: 0,
            proposal: None,
            closes_at_ms: 0,
            earlier: HashSet::new(),
            votes: HashMap::new(),
            equivocators: HashSet::new(),
            recorded: HashSet::new(),
            recorded_per_member: HashMap::new(),
            decision: None,
        })
    }

    /// The terms voted on.
    pub fn terms(&self) -> &ProposalTerms {
        &self.terms
    }

    /// The committee.
    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    /// The current round (0 before [`Ballot::start`]).
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The proposal of the current round.
    pub fn proposal(&self) -> Option<&SignedObject> {
        self.proposal.as_ref()
    }

    /// The decision, once there is one.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// Whether `token` is one of this ballot's timers (any round).
    pub fn owns_timer(&self, token: &TimerToken) -> bool {
        token.trace == self.trace
            && token.scope == self.scope
            && matches!(token.kind, TimerKind::VoteRound { offer, .. } if offer == self.terms.offer)
    }

    /// Sets the scope its timers carry: that of the requester running the ballot (default: the
    /// trace id, the scope of a requester that is not part of a composite).
    pub fn with_scope(mut self, scope: ObjectId) -> Self {
        self.scope = scope;
        self
    }

    /// Signs the round-1 proposal: Record it, Send it to every member, SetTimer(VoteRound 1).
    pub fn start(&mut self, now_ms: u64) -> Result<Vec<Action>> {
        if self.round != 0 {
            return Err(PatternError::Invalid(
                "the ballot was already started".into(),
            ));
        }
        let mut actions = Vec::new();
        let parents = self.parents.clone();
        self.open_round(1, &parents, now_ms, &mut actions)?;
        Ok(actions)
    }

    /// A vote arrived. `Err` when it is not a vote of a member for a proposal of this ballot.
    pub fn on_vote(&mut self, vote: SignedObject, now_ms: u64) -> Result<Vec<Action>> {
        let _span = tracing::info_span!("ballot", trace = %self.trace.short()).entered();
        let Body::Vote(body) = vote.body() else {
            return Err(PatternError::Unexpected {
                kind: vote.kind(),
                id: vote.id(),
                state: "voting",
            });
        };
        let body = body.clone();
        if vote.trace_id() != self.trace {
            return Err(PatternError::WrongTrace {
                id: vote.id(),
                expected: self.trace,
                actual: vote.trace_id(),
            });
        }
        let member = vote.signer();
        if !self.committee.members.contains(&member) {
            return Err(PatternError::refused(
                Refusal::NotABallotMember,
                format!(
                    "vote {} is signed by {}, who is not in the committee",
                    vote.id().short(),
                    member.short()
                ),
            ));
        }
        let current = self.proposal.as_ref().map(SignedObject::id);
        let mut actions = Vec::new();
        if self.earlier.contains(&body.proposal)
            || (self.decision.is_some() && Some(body.proposal) == current)
        {
            debug!(vote = %vote.id().short(), member = %member.short(), "late vote recorded, ignored");
            self.record_vote(&vote, &mut actions);
            return Ok(actions);
        }
        if Some(body.proposal) != current || body.round != self.round {
            return Err(PatternError::Mismatch(format!(
                "vote {} is for proposal {} round {}, the ballot is at proposal {} round {}",
                vote.id().short(),
                body.proposal.short(),
                body.round,
                current.map(|c| c.short()).unwrap_or_default(),
                self.round
            )));
        }
        match self.votes.get(&member) {
            Some(first) if first.id() == vote.id() => {
                debug!(vote = %vote.id().short(), "vote delivered twice");
            }
            Some(_) if self.equivocators.contains(&member) => {
                debug!(member = %member.short(), "further vote of an equivocator ignored");
            }
            Some(first) => {
                let first = first.clone();
                self.record_vote(&vote, &mut actions);
                self.equivocation(&first, &vote, now_ms, &mut actions)?;
                self.evaluate(now_ms, &mut actions)?;
            }
            None => {
                debug!(member = %member.short(), approve = body.approve, reason = %body.reason, "vote");
                self.record_vote(&vote, &mut actions);
                self.votes.insert(member, vote);
                self.evaluate(now_ms, &mut actions)?;
            }
        }
        Ok(actions)
    }

    /// A timer fired. Only this ballot's `VoteRound` timer for the current round, at or after
    /// its close, has an effect: a new round, or the time-out decision.
    pub fn on_timer(&mut self, token: TimerToken, now_ms: u64) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        let TimerKind::VoteRound { offer, round } = token.kind else {
            return Err(PatternError::Invalid(format!(
                "a ballot sets only vote-round timers, got {}",
                token.kind
            )));
        };
        if !self.owns_timer(&token)
            || self.decision.is_some()
            || round != self.round
            || now_ms < self.closes_at_ms
        {
            debug!(timer = %token.kind, offer = %offer.short(), "stale vote timer ignored");
            return Ok(actions);
        }
        let _span = tracing::info_span!("ballot", trace = %self.trace.short()).entered();
        let event = self.round_timeout_event(now_ms)?;
        let event_id = event.id();
        actions.push(Action::Record(event));
        if self.round < self.max_rounds {
            let parents = vec![self.current_proposal_id()?, event_id];
            self.open_round(self.round + 1, &parents, now_ms, &mut actions)?;
        } else {
            warn!(
                rounds = self.round,
                "no quorum: every voting round timed out"
            );
            self.decision = Some(Decision::TimedOut { rounds: self.round });
        }
        Ok(actions)
    }

    // ----- rounds ------------------------------------------------------------------------

    fn open_round(
        &mut self,
        round: u32,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let closes_at_ms = now_ms.saturating_add(self.round_timeout_ms);
        let proposal = sign(
            &self.key,
            Some(self.trace),
            parents,
            now_ms,
            Body::Proposal(Proposal {
                subject: self.terms.offer,
                round,
                committee: self.committee.clone(),
                action: self.terms.to_action(),
                deadline_ms: closes_at_ms,
            }),
        )?;
        if let Some(old) = self.proposal.take() {
            self.earlier.insert(old.id());
        }
        self.round = round;
        self.closes_at_ms = closes_at_ms;
        self.votes.clear();
        self.equivocators.clear();
        info!(
            round, proposal = %proposal.id().short(), offer = %self.terms.offer.short(),
            members = self.committee.members.len(), threshold = self.committee.threshold,
            "consensus round opened"
        );
        actions.push(Action::Record(proposal.clone()));
        for member in &self.committee.members {
            actions.push(Action::Send {
                to: *member,
                object: proposal.clone(),
            });
        }
        actions.push(Action::SetTimer {
            at_ms: closes_at_ms,
            token: TimerToken {
                trace: self.trace,
                scope: self.scope,
                kind: TimerKind::VoteRound {
                    offer: self.terms.offer,
                    round,
                },
            },
        });
        self.proposal = Some(proposal);
        Ok(())
    }

    /// Decides the round when the votes allow it.
    fn evaluate(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let threshold = self.committee.threshold as usize;
        let mut approving: Vec<&SignedObject> = Vec::new();
        let mut rejections = 0usize;
        for (member, vote) in &self.votes {
            if self.equivocators.contains(member) {
                continue;
            }
            match vote.body() {
                Body::Vote(v) if v.approve => approving.push(vote),
                _ => rejections += 1,
            }
        }
        if approving.len() >= threshold {
            approving.sort_by_key(|v| v.signer());
            let votes: Vec<SignedObject> = approving.into_iter().cloned().collect();
            return self.approve(votes, now_ms, actions);
        }
        let reachable = self
            .committee
            .members
            .len()
            .saturating_sub(rejections + self.equivocators.len());
        if reachable < threshold {
            return self.reject(now_ms, actions);
        }
        Ok(())
    }

    fn approve(
        &mut self,
        votes: Vec<SignedObject>,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let proposal = self
            .proposal
            .clone()
            .ok_or_else(|| PatternError::Invalid("no proposal to certify".into()))?;
        let count = votes.len();
        let certificate = sign(
            &self.key,
            Some(self.trace),
            &[proposal.id()],
            now_ms,
            Body::QuorumCert(QuorumCert {
                proposal: Box::new(proposal),
                votes,
            }),
        )?;
        info!(round = self.round, approvals = count, cert = %certificate.id().short(), "consensus reached");
        actions.push(Action::Record(certificate.clone()));
        self.decision = Some(Decision::Approved {
            certificate: Box::new(certificate),
            round: self.round,
        });
        Ok(())
    }

    fn reject(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let proposal = self.current_proposal_id()?;
        let reasons = self.member_reasons();
        let decision = Decision::Rejected {
            round: self.round,
            reasons,
        };
        let mut attrs = vec![
            (attr::ROUND.to_string(), self.round.to_string()),
            (attr::OFFER.to_string(), self.terms.offer.to_string()),
            (
                attr::THRESHOLD.to_string(),
                self.committee.threshold.to_string(),
            ),
        ];
        if let Decision::Rejected { reasons, .. } = &decision {
            for r in reasons {
                // Attribute names are at most 64 characters: the short key names the member,
                // the value repeats the full key.
                attrs.push((
                    format!("{}{}", attr::MEMBER_PREFIX, r.member.short()),
                    format!("{}: {} (member {})", r.stance, r.reason, r.member),
                ));
            }
        }
        let mut about = vec![proposal];
        about.extend(self.votes.values().map(SignedObject::id));
        let event = self.event(
            EventType::ConsensusRejected,
            about,
            &[proposal],
            format!(
                "the committee rejected the award of offer {}: {}",
                self.terms.offer.short(),
                decision.summary()
            ),
            attrs,
            now_ms,
        )?;
        warn!(round = self.round, "consensus rejected");
        actions.push(Action::Record(event));
        self.decision = Some(decision);
        Ok(())
    }

    /// Every member's stance in the current round, in committee order.
    fn member_reasons(&self) -> Vec<MemberReason> {
        self.committee
            .members
            .iter()
            .map(|member| {
                let (stance, reason) = if self.equivocators.contains(member) {
                    (
                        Stance::Equivocated,
                        "signed two different votes".to_string(),
                    )
                } else {
                    match self.votes.get(member).map(SignedObject::body) {
                        Some(Body::Vote(v)) if v.approve => (Stance::Approve, v.reason.clone()),
                        Some(Body::Vote(v)) => (Stance::Reject, v.reason.clone()),
                        _ => (Stance::Silent, "no vote".to_string()),
                    }
                };
                MemberReason {
                    member: *member,
                    stance,
                    reason,
                }
            })
            .collect()
    }

    fn equivocation(
        &mut self,
        first: &SignedObject,
        second: &SignedObject,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let member = second.signer();
        self.equivocators.insert(member);
        warn!(member = %member.short(), round = self.round, "equivocation: two different votes");
        let event = self.event(
            EventType::Equivocation,
            vec![first.id(), second.id()],
            &[first.id(), second.id()],
            format!(
                "member {} signed two different votes in round {}; neither counts in this round",
                member.short(),
                self.round
            ),
            vec![
                (attr::MEMBER.into(), member.to_string()),
                (attr::ROUND.into(), self.round.to_string()),
                (attr::FIRST_VOTE.into(), first.id().to_string()),
                (attr::SECOND_VOTE.into(), second.id().to_string()),
            ],
            now_ms,
        )?;
        actions.push(Action::Record(event));
        Ok(())
    }

    fn round_timeout_event(&self, now_ms: u64) -> Result<SignedObject> {
        let proposal = self.current_proposal_id()?;
        let silent: Vec<String> = self
            .committee
            .members
            .iter()
            .filter(|m| !self.votes.contains_key(m))
            .map(PublicKey::short)
            .collect();
        let approvals = self
            .member_reasons()
            .iter()
            .filter(|r| r.stance == Stance::Approve)
            .count();
        let next = if self.round < self.max_rounds {
            format!("opening round {}", self.round + 1)
        } else {
            "no round left: no quorum".to_string()
        };
        self.event(
            EventType::RoundTimeout,
            vec![proposal],
            &[proposal],
            format!(
                "voting round {} on offer {} closed with {approvals} of {} approvals needed; silent: {}; {next}",
                self.round,
                self.terms.offer.short(),
                self.committee.threshold,
                if silent.is_empty() { "none".to_string() } else { silent.join(", ") },
            ),
            vec![
                (attr::ROUND.into(), self.round.to_string()),
                (attr::APPROVALS.into(), approvals.to_string()),
                (attr::THRESHOLD.into(), self.committee.threshold.to_string()),
                (attr::SILENT.into(), silent.join(",")),
            ],
            now_ms,
        )
    }

    // ----- helpers -----------------------------------------------------------------------

    /// Records `vote` unless it was recorded already or its member reached its cap.
    fn record_vote(&mut self, vote: &SignedObject, actions: &mut Vec<Action>) {
        let cap = self.max_rounds.saturating_mul(2).saturating_add(2);
        let count = self.recorded_per_member.entry(vote.signer()).or_insert(0);
        if *count >= cap || !self.recorded.insert(vote.id()) {
            return;
        }
        *count += 1;
        actions.push(Action::Record(vote.clone()));
    }

    fn current_proposal_id(&self) -> Result<ObjectId> {
        self.proposal
            .as_ref()
            .map(SignedObject::id)
            .ok_or_else(|| PatternError::Invalid("the ballot was not started".into()))
    }

    fn event(
        &self,
        event_type: EventType,
        about: Vec<ObjectId>,
        parents: &[ObjectId],
        message: String,
        attrs: Vec<(String, String)>,
        now_ms: u64,
    ) -> Result<SignedObject> {
        sign_event(
            &self.key,
            Some(self.trace),
            parents,
            now_ms,
            EventText {
                event_type,
                about,
                message,
                attrs,
            },
        )
    }
}

/// The same rules as the protocol's committee check (1 to 64 distinct members, threshold
/// between 1 and the member count), so that a bad committee fails before anything is signed.
fn check_committee(committee: &Committee) -> Result<()> {
    let members = committee.members.len();
    if members == 0 || members > pvl_protocol::MAX_COMMITTEE {
        return Err(PatternError::Invalid(format!(
            "a committee needs 1 to {} members, not {members}",
            pvl_protocol::MAX_COMMITTEE
        )));
    }
    let unique: HashSet<&PublicKey> = committee.members.iter().collect();
    if unique.len() != members {
        return Err(PatternError::Invalid(
            "a committee member is listed twice".into(),
        ));
    }
    if committee.threshold == 0 || committee.threshold as usize > members {
        return Err(PatternError::Invalid(format!(
            "threshold {} is not between 1 and {members}",
            committee.threshold
        )));
    }
    Ok(())
}

// ----- member side -----------------------------------------------------------------------

/// A member's answer to one proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteDecision {
    /// Approve (or reject).
    pub approve: bool,
    /// Why, in words (sent in the vote).
    pub reason: String,
}

impl VoteDecision {
    /// An approval for `reason`.
    pub fn approve(reason: impl Into<String>) -> Self {
        VoteDecision {
            approve: true,
            reason: reason.into(),
        }
    }

    /// A rejection for `reason`.
    pub fn reject(reason: impl Into<String>) -> Self {
        VoteDecision {
            approve: false,
            reason: reason.into(),
        }
    }
}

/// How a committee member decides on a proposal, from the signed terms only.
pub trait VotePolicy {
    /// The vote on `terms` (parsed from `proposal.action`).
    fn decide(&self, terms: &ProposalTerms, proposal: &Proposal) -> VoteDecision;
}

impl<F> VotePolicy for F
where
    F: Fn(&ProposalTerms, &Proposal) -> VoteDecision,
{
    fn decide(&self, terms: &ProposalTerms, proposal: &Proposal) -> VoteDecision {
        self(terms, proposal)
    }
}

/// A rule-based policy, meant to be built from the node's configuration:
///
/// ```toml
/// [committee.policy]
/// max_cost = 100                       # reject offers costing more (absent: no limit)
/// max_eta_ms = 60000                   # reject offers slower than this (absent: no limit)
/// allowed_capabilities = ["sha256"]    # reject other capabilities (empty or absent: any)
/// denied_providers = ["<64 hex>"]      # reject awards to these providers
/// default_approve = true               # the vote when no rule rejects
/// ```
///
/// Rules are checked in the order denied provider, capability, cost, eta; the first that fails
/// gives the rejection reason. When none fails the vote is `default_approve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePolicy {
    /// Highest acceptable cost.
    pub max_cost: Option<u64>,
    /// Longest acceptable estimated completion time, ms.
    pub max_eta_ms: Option<u64>,
    /// Capabilities that may be awarded; empty means any.
    pub allowed_capabilities: Vec<String>,
    /// Providers who must not be awarded.
    pub denied_providers: Vec<PublicKey>,
    /// The vote when no rule rejects.
    pub default_approve: bool,
}

impl Default for RulePolicy {
    /// No limits, approve by default.
    fn default() -> Self {
        RulePolicy {
            max_cost: None,
            max_eta_ms: None,
            allowed_capabilities: Vec::new(),
            denied_providers: Vec::new(),
            default_approve: true,
        }
    }
}

impl VotePolicy for RulePolicy {
    fn decide(&self, terms: &ProposalTerms, _proposal: &Proposal) -> VoteDecision {
        if self.denied_providers.contains(&terms.provider) {
            return VoteDecision::reject(format!(
                "provider {} is denied by policy",
                terms.provider.short()
            ));
        }
        if !self.allowed_capabilities.is_empty()
            && !self.allowed_capabilities.contains(&terms.capability)
        {
            return VoteDecision::reject(format!(
                "capability `{}` is not allowed by policy",
                terms.capability
            ));
        }
        if let Some(max) = self.max_cost
            && terms.cost > max
        {
            return VoteDecision::reject(format!(
                "cost {} is above the policy maximum {max}",
                terms.cost
            ));
        }
        if let Some(max) = self.max_eta_ms
            && terms.eta_ms > max
        {
            return VoteDecision::reject(format!(
                "eta {} ms is above the policy maximum {max} ms",
                terms.eta_ms
            ));
        }
        if self.default_approve {
            VoteDecision::approve("within policy")
        } else {
            VoteDecision::reject("no rule approves and the policy rejects by default")
        }
    }
}

/// The member side of consensus rounds, for one node over any number of proposals.
pub struct Voter {
    key: Keypair,
    policy: Box<dyn VotePolicy + Send + Sync>,
    /// The vote signed for each remembered proposal.
    answered: HashMap<ObjectId, SignedObject>,
    /// Remembered proposals, oldest first.
    order: VecDeque<ObjectId>,
    memory: usize,
}

impl std::fmt::Debug for Voter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voter")
            .field("signer", &self.key.public())
            .field("remembered", &self.answered.len())
            .finish()
    }
}

impl Voter {
    /// A voter signing with `key` and deciding with `policy`; it remembers its votes for the
    /// last [`DEFAULT_VOTER_MEMORY`] proposals.
    pub fn new(key: Keypair, policy: impl VotePolicy + Send + Sync + 'static) -> Self {
        Voter {
            key,
            policy: Box::new(policy),
            answered: HashMap::new(),
            order: VecDeque::new(),
            memory: DEFAULT_VOTER_MEMORY,
        }
    }

    /// This member's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// A proposal arrived: Record(proposal), Record(vote), Send(vote) to the proposer. A
    /// proposal answered before gets the same vote again (Send only). `Err` when the object is
    /// not a proposal, this node is not in its committee, or its voting deadline passed.
    pub fn on_proposal(&mut self, proposal: SignedObject, now_ms: u64) -> Result<Vec<Action>> {
        if let Some(again) = self.prepare(&proposal, now_ms)? {
            return Ok(again);
        }
        let decision = self.decide(&proposal);
        self.on_decided(proposal, decision, now_ms)
    }

    /// Checks a proposal before anyone decides on it: `Ok(Some(actions))` when it was
    /// answered before (the same vote is sent again), `Ok(None)` when it needs a decision
    /// (from the policy, or from an outside decider whose answer goes to
    /// [`Voter::on_decided`]), `Err` when it is not a proposal, this node is not in its
    /// committee, or its voting deadline passed.
    pub fn prepare(&self, proposal: &SignedObject, now_ms: u64) -> Result<Option<Vec<Action>>> {
        let Body::Proposal(body) = proposal.body() else {
            return Err(PatternError::Unexpected {
                kind: proposal.kind(),
                id: proposal.id(),
                state: "voting",
            });
        };
        if let Some(vote) = self.answered.get(&proposal.id()) {
            debug!(proposal = %proposal.id().short(), "proposal delivered again: same vote");
            return Ok(Some(vec![Action::Send {
                to: proposal.signer(),
                object: vote.clone(),
            }]));
        }
        if !body.committee.members.contains(&self.key.public()) {
            return Err(PatternError::refused(
                Refusal::NotInCommittee,
                format!(
                    "this node ({}) is not in the committee of proposal {}",
                    self.key.public().short(),
                    proposal.id().short()
                ),
            ));
        }
        if body.deadline_ms < now_ms {
            return Err(PatternError::refused(
                Refusal::VotingClosed,
                format!(
                    "voting on proposal {} closed at {} ms",
                    proposal.id().short(),
                    body.deadline_ms
                ),
            ));
        }
        Ok(None)
    }

    /// The policy's decision on `proposal` (a rejection when its terms are unreadable).
    pub fn decide(&self, proposal: &SignedObject) -> VoteDecision {
        let Body::Proposal(body) = proposal.body() else {
            return VoteDecision::reject("not a proposal");
        };
        match ProposalTerms::from_proposal(body) {
            Ok(terms) => self.policy.decide(&terms, body),
            Err(e) => VoteDecision::reject(format!("unreadable terms: {e}")),
        }
    }

    /// Signs the vote `decision` on `proposal` (checked again, see [`Voter::prepare`]):
    /// Record(proposal), Record(vote), Send(vote) to the proposer.
    pub fn on_decided(
        &mut self,
        proposal: SignedObject,
        decision: VoteDecision,
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        let _span = tracing::info_span!("voter", trace = %proposal.trace_id().short()).entered();
        if let Some(again) = self.prepare(&proposal, now_ms)? {
            return Ok(again);
        }
        let Body::Proposal(body) = proposal.body() else {
            return Err(PatternError::Unexpected {
                kind: proposal.kind(),
                id: proposal.id(),
                state: "voting",
            });
        };
        let vote = sign(
            &self.key,
            Some(proposal.trace_id()),
            &[proposal.id()],
            now_ms,
            Body::Vote(Vote {
                proposal: proposal.id(),
                round: body.round,
                approve: decision.approve,
                reason: text(&decision.reason),
            }),
        )?;
        info!(proposal = %proposal.id().short(), round = body.round, approve = decision.approve, reason = %decision.reason, "voted");
        self.remember(proposal.id(), vote.clone());
        Ok(vec![
            Action::Record(proposal.clone()),
            Action::Record(vote.clone()),
            Action::Send {
                to: proposal.signer(),
                object: vote,
            },
        ])
    }

    fn remember(&mut self, proposal: ObjectId, vote: SignedObject) {
        while self.order.len() >= self.memory {
            if let Some(old) = self.order.pop_front() {
                self.answered.remove(&old);
            }
        }
        self.order.push_back(proposal);
        self.answered.insert(proposal, vote);
    }
}

// ----- provider side ---------------------------------------------------------------------

/// Checks the quorum certificate of a `TaskStart` (`task_start_quorum`) before executing an
/// award whose intent named `committee`: the certificate's proposal is for exactly `offer`
/// and `input_sha256`, its committee equals the intent's, [`QuorumCert::check`] passes (votes
/// for that proposal and round, from distinct members, approving, in its trace) and the
/// approvals reach the threshold. Vote signatures were verified when the object was decoded
/// (or signed).
pub fn verify_certificate(
    task_start_quorum: &SignedObject,
    committee: &Committee,
    offer: ObjectId,
    input_sha256: [u8; 32],
) -> Result<()> {
    let Body::QuorumCert(cert) = task_start_quorum.body() else {
        return Err(PatternError::Mismatch(format!(
            "the certificate is a {}, not a quorum_cert",
            task_start_quorum.kind()
        )));
    };
    let proposal = cert.proposal_body()?;
    if cert.proposal.kind() != Kind::Proposal {
        return Err(PatternError::Mismatch(
            "the certificate does not embed a proposal".into(),
        ));
    }
    if proposal.committee != *committee {
        return Err(PatternError::Mismatch(
            "the certificate's committee is not the intent's committee".into(),
        ));
    }
    let terms = ProposalTerms::from_proposal(proposal)?;
    if terms.offer != offer {
        return Err(PatternError::Mismatch(format!(
            "the certificate approves offer {}, not offer {}",
            terms.offer.short(),
            offer.short()
        )));
    }
    if terms.input_sha256 != input_sha256 {
        return Err(PatternError::Mismatch(
            "the certificate approves another input (sha256 differs)".into(),
        ));
    }
    cert.check()?;
    let approvers: HashSet<PublicKey> = cert
        .votes
        .iter()
        .filter(|v| matches!(v.body(), Body::Vote(b) if b.approve))
        .map(SignedObject::signer)
        .filter(|s| committee.members.contains(s))
        .collect();
    if approvers.len() < committee.threshold as usize {
        return Err(PatternError::Mismatch(format!(
            "{} approvals, the committee needs {}",
            approvers.len(),
            committee.threshold
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> ProposalTerms {
        ProposalTerms {
            capability: "sha256".into(),
            provider: PublicKey([3; 32]),
            offer: ObjectId([4; 32]),
            cost: 5,
            eta_ms: 100,
            input_sha256: [6; 32],
        }
    }

    fn proposal(action: String, subject: ObjectId) -> Proposal {
        Proposal {
            subject,
            round: 1,
            committee: Committee {
                members: vec![PublicKey([1; 32])],
                threshold: 1,
            },
            action,
            deadline_ms: 10,
        }
    }

    #[test]
    fn rule_policy_checks_each_rule_in_order() {
        let p = proposal(terms().to_action(), ObjectId([4; 32]));
        let t = terms();
        assert!(RulePolicy::default().decide(&t, &p).approve);
        let denied = RulePolicy {
            denied_providers: vec![t.provider],
            max_cost: Some(1),
            ..RulePolicy::default()
        };
        let d = denied.decide(&t, &p);
        assert!(!d.approve && d.reason.contains("denied"), "{d:?}");
        let caps = RulePolicy {
            allowed_capabilities: vec!["resize".into()],
            ..RulePolicy::default()
        };
        assert!(caps.decide(&t, &p).reason.contains("not allowed"));
        let allowed = RulePolicy {
            allowed_capabilities: vec!["sha256".into()],
            ..RulePolicy::default()
        };
        assert!(allowed.decide(&t, &p).approve);
        let cheap = RulePolicy {
            max_cost: Some(4),
            ..RulePolicy::default()
        };
        assert!(cheap.decide(&t, &p).reason.contains("cost 5"));
        let fast = RulePolicy {
            max_eta_ms: Some(99),
            ..RulePolicy::default()
        };
        assert!(!fast.decide(&t, &p).approve);
        let strict = RulePolicy {
            default_approve: false,
            ..RulePolicy::default()
        };
        assert!(!strict.decide(&t, &p).approve);
    }

    #[test]
    fn bad_ballots_are_refused_before_signing() {
        let key = Keypair::from_seed([1; 32]);
        let committee = |members: Vec<PublicKey>, threshold| Committee { members, threshold };
        let one = PublicKey([1; 32]);
        for (c, timeout, rounds) in [
            (committee(vec![], 1), 10, 1),
            (committee(vec![one, one], 1), 10, 1),
            (committee(vec![one], 2), 10, 1),
            (committee(vec![one], 0), 10, 1),
            (committee(vec![one], 1), 0, 1),
            (committee(vec![one], 1), 10, 0),
        ] {
            let ballot = Ballot::new(
                key.clone(),
                ObjectId([0; 32]),
                vec![],
                terms(),
                c,
                timeout,
                rounds,
            );
            assert!(ballot.is_err());
        }
    }
}
