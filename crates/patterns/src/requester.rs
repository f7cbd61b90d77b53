//! The requester side of contract-net: publish an intent, collect offers, select, award,
//! follow the task, verify and countersign the receipt; reassign when the winner fails.
//!
//! See the crate documentation for the state diagram.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use pvl_protocol::{
    Body, Committee, Constraints, Event, Intent, Keypair, Kind, ObjectId, Offer, PatternHint,
    Payload, PublicKey, Receipt, Reject, RejectCode, SignedObject, Strategy, TaskDone, TaskStart,
    TaskStatus, TraceId,
};
use pvl_protocol::{EventType, RunSpec, attr};
use tracing::{debug, info, warn};

use crate::action::{
    Action, Completion, Failure, FailureReason, Input, Outcome, TimerKind, TimerToken,
};
use crate::adaptive::demote_avoided;
use crate::admission::Refusal;
use crate::consensus::{Ballot, Decision, ProposalTerms};
use crate::error::{PatternError, Result};
use crate::select::{
    self, Candidate, NoHistory, ReliabilitySource, Scored, check_offer, fmt_score, rank,
};
use crate::util::{EventText, sign, sign_event, text};

/// Everything the requester needs to run one intent: what is wanted and how to coordinate it.
///
/// [`RequestSpec::new`] fills in sensible defaults for the coordination knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The capability wanted.
    pub capability: String,
    /// The task input.
    pub input: Payload,
    /// What an acceptable offer must satisfy.
    pub constraints: Constraints,
    /// How the winner is selected.
    pub strategy: Strategy,
    /// The pattern hint carried in the intent.
    pub pattern: PatternHint,
    /// The intent's nonce (the caller supplies randomness; re-publications add the round).
    pub nonce: u64,
    /// The task label in the `TaskStart`.
    pub label: String,
    /// How long offers are collected after the intent is published, ms. The window closes
    /// earlier at the deadline.
    pub offer_window_ms: u64,
    /// Close the window as soon as this many acceptable offers are held (`0`: always wait for
    /// the window timer).
    pub min_offers: usize,
    /// Time added to the winning offer's eta before the task counts as late, ms.
    pub grace_ms: u64,
    /// Longest silence (no progress, done or receipt) tolerated from the awarded provider, ms;
    /// `None` only applies the eta-plus-grace and deadline limits.
    pub silence_ms: Option<u64>,
    /// How long to wait for the receipt after a successful `TaskDone`, ms.
    pub receipt_wait_ms: u64,
    /// Most offers processed per collection round; further offers are refused unread.
    pub max_offers: usize,
    /// How many times the intent may be re-published when every offer is used up.
    pub max_republish: u32,
    /// Who must approve an award before execution (carried in the intent). When set, every
    /// award first runs a consensus [`Ballot`] on the chosen offer.
    pub committee: Option<Committee>,
    /// How long one voting round lasts, ms.
    pub vote_round_ms: u64,
    /// How many voting rounds a ballot runs before it fails with `no-quorum`.
    pub max_vote_rounds: u32,
    /// Providers to avoid (e.g. from [`crate::adaptive::choose`]): their offers rank after all
    /// others, and are used only when nobody else offers.
    pub avoid: Vec<PublicKey>,
    /// Ask only some of the providers in the first round, so that the round's cost is bounded
    /// by the offers it needs rather than by the number of providers: directly, a few of those
    /// the node's directory lists ([`Requester::with_candidates`], [`select::directed_count`],
    /// SPEC.md §4.3), or, when it lists too few, by gossip to a sample sized by
    /// [`select::audience_for`] from `min_offers` and the history's provider count (see
    /// [`pvl_protocol::Audience`]). Only applies when `min_offers > 0` (the requester is
    /// content with the first offers anyway); a round whose providers brought no acceptable
    /// offer is re-published to everyone, and so is every later round.
    pub sample_audience: bool,
}

impl RequestSpec {
    /// A spec for `capability` on `input` with no constraints, the lowest-cost strategy, a
    /// 2 s offer window, 2 s grace, 5 s receipt wait, at most 1024 offers and one
    /// re-publication.
    pub fn new(capability: impl Into<String>, input: Payload) -> Self {
        RequestSpec {
            capability: capability.into(),
            input,
            constraints: Constraints::default(),
            strategy: Strategy::LowestCost,
            pattern: PatternHint::ContractNet,
            nonce: 0,
            label: pvl_protocol::vocab::MAIN_LABEL.to_string(),
            offer_window_ms: 2_000,
            min_offers: 0,
            grace_ms: 2_000,
            silence_ms: None,
            receipt_wait_ms: 5_000,
            max_offers: 1024,
            max_republish: 1,
            committee: None,
            vote_round_ms: 2_000,
            max_vote_rounds: 2,
            avoid: Vec::new(),
            sample_audience: true,
        }
    }
}

/// Counters of one requester, for reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequesterStats {
    /// Offers received and processed (over all rounds).
    pub offers_received: usize,
    /// Offers that satisfied the constraints when they arrived.
    pub offers_valid: usize,
    /// Rejects sent, indexed by `RejectCode as usize`.
    pub rejects: [usize; 8],
    /// Offers refused unread because the per-round cap was reached.
    pub offers_over_cap: usize,
    /// Tasks awarded (1 + reassignments).
    pub awards: u32,
    /// Intents published (1 + re-publications).
    pub rounds: u32,
}

impl RequesterStats {
    /// Rejects sent with `code`.
    pub fn rejected(&self, code: RejectCode) -> usize {
        self.rejects[code as usize]
    }

    /// Rejects sent for any reason other than "not selected".
    pub fn rejected_invalid(&self) -> usize {
        self.rejects.iter().sum::<usize>() - self.rejected(RejectCode::NotSelected)
    }
}

/// What the requester is doing, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequesterState {
    /// Created, [`Requester::start`] not called yet.
    Idle,
    /// Collecting offers in round `round` until `closes_at_ms`.
    Collecting {
        /// The round (1 for the first intent).
        round: u32,
        /// When the window closes at the latest, unix ms.
        closes_at_ms: u64,
    },
    /// The approval committee votes on the award of `offer`.
    Voting {
        /// The offer voted on.
        offer: ObjectId,
        /// The voting round (from 1).
        round: u32,
    },
    /// A task is awarded and being followed.
    Awarded {
        /// The task id.
        task: ObjectId,
        /// The provider.
        provider: PublicKey,
    },
    /// The intent is over; see [`Requester::outcome`].
    Finished,
}

/// An acceptable offer held for selection.
#[derive(Debug, Clone)]
struct Held {
    object: SignedObject,
    offer: Offer,
    candidate: Candidate,
}

/// The task being followed.
#[derive(Debug, Clone)]
struct Running {
    start: SignedObject,
    held: Held,
    /// The round's intent the task serves.
    intent: ObjectId,
    awarded_at_ms: u64,
    last_heard_ms: u64,
    done: Option<SignedObject>,
    receipt: Option<SignedObject>,
}

/// The award waiting for the committee's decision.
#[derive(Debug, Clone)]
struct Voting {
    held: Held,
    /// Parents of the `TaskStart` besides the offer and the certificate.
    parents: Vec<ObjectId>,
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Collecting { closes_at_ms: u64 },
    Voting(Box<Voting>),
    Running(Box<Running>),
    Finished(Box<Outcome>),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Collecting { .. } => "collecting offers",
            Phase::Voting(_) => "waiting for the committee",
            Phase::Running(_) => "following a task",
            Phase::Finished(_) => "finished",
        }
    }
}

/// The requester side of contract-net for one intent. Sans-I/O: feed it inputs with the
/// current time, carry out the [`Action`]s it returns.
pub struct Requester {
    key: Keypair,
    spec: RequestSpec,
    history: Arc<dyn ReliabilitySource + Send + Sync>,
    trace: Option<TraceId>,
    /// The intent of the current round.
    intent: Option<SignedObject>,
    round: u32,
    phase: Phase,
    /// Acceptable offers of the current round (until selection).
    held: Vec<Held>,
    /// Offer ids processed in the current round.
    seen: HashSet<ObjectId>,
    /// Providers who offered in the current round.
    bidders: HashSet<PublicKey>,
    received_this_round: usize,
    /// Ranked runners-up of the last selection, best first.
    standby: VecDeque<(Scored, Held)>,
    /// Providers who failed a task of this intent.
    excluded: HashSet<PublicKey>,
    republished: u32,
    stats: RequesterStats,
    /// The consensus ballot of the last award that needed approval.
    ballot: Option<Ballot>,
    /// The id of the first intent: the scope of this requester's timers.
    scope: Option<ObjectId>,
    /// Every intent this requester signed (one per round).
    intents: Vec<ObjectId>,
    /// Every task this requester awarded.
    tasks: Vec<ObjectId>,
    /// Providers ranked after all others at selection and reassignment (set by a composite:
    /// those already holding another part of the trace).
    ranked_last: HashSet<PublicKey>,
    /// Providers of the capability the node's directory lists (see
    /// [`Requester::with_candidates`]): whom a directed first intent may go to.
    candidates: Vec<PublicKey>,
    /// The providers the first intent was sent to directly (SPEC.md §4.3); empty when it was
    /// gossiped.
    asked: Vec<PublicKey>,
    /// Providers asked in the current round who declined the directed intent (or could not
    /// be reached): they will not offer.
    declined: HashSet<PublicKey>,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester")
            .field("signer", &self.key.public())
            .field("trace", &self.trace)
            .field("round", &self.round)
            .field("phase", &self.phase.name())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Requester {
    /// A requester that will sign with `key` and run `spec`. Nothing happens until
    /// [`Requester::start`].
    pub fn new(key: Keypair, spec: RequestSpec) -> Self {
        Requester {
            key,
            spec,
            history: Arc::new(NoHistory),
            trace: None,
            intent: None,
            round: 0,
            phase: Phase::Idle,
            held: Vec::new(),
            seen: HashSet::new(),
            bidders: HashSet::new(),
            received_this_round: 0,
            standby: VecDeque::new(),
            excluded: HashSet::new(),
            republished: 0,
            stats: RequesterStats::default(),
            ballot: None,
            scope: None,
            intents: Vec::new(),
            tasks: Vec::new(),
            ranked_last: HashSet::new(),
            candidates: Vec::new(),
            asked: Vec::new(),
            declined: HashSet::new(),
        }
    }

    /// The providers of the capability this node knows of (its directory of capability
    /// ads). When they are enough for `min_offers` (and [`RequestSpec::sample_audience`] is
    /// set), the first intent is sent directly to a few of them instead of being gossiped
    /// (SPEC.md §4.3, [`select::directed_choice`]).
    pub fn with_candidates(mut self, providers: Vec<PublicKey>) -> Self {
        self.candidates = providers;
        self
    }

    /// The providers the first intent was sent to directly; empty when it was gossiped.
    pub fn asked(&self) -> &[PublicKey] {
        &self.asked
    }

    /// The scope of this requester's timers (the id of its first intent), once started.
    pub fn scope(&self) -> Option<ObjectId> {
        self.scope
    }

    /// Ranks offers of `providers` after every other acceptable offer, at selection and when
    /// choosing a standby offer after a failure (they are not excluded). A composite sets this
    /// before each input so that parts spread over distinct providers where enough exist.
    pub fn set_ranked_last(&mut self, providers: impl IntoIterator<Item = PublicKey>) {
        self.ranked_last = providers.into_iter().collect();
    }

    /// Whether `object` belongs to this requester: an offer for one of its intents (any
    /// round), or a progress, done, receipt or event about one of the tasks it awarded. Lets a
    /// composite route objects among requesters that share one trace.
    pub fn claims(&self, object: &SignedObject) -> bool {
        if Some(object.trace_id()) != self.trace {
            return false;
        }
        match object.body() {
            Body::Offer(o) => self.intents.contains(&o.intent),
            Body::TaskProgress(p) => self.tasks.contains(&p.task),
            Body::TaskDone(d) => self.tasks.contains(&d.task),
            Body::Receipt(r) => self.tasks.contains(&r.task),
            Body::Event(e) => e.about.iter().any(|id| self.tasks.contains(id)),
            _ => false,
        }
    }

    /// Uses observed reliabilities from `history` instead of providers' claims where known.
    pub fn with_history(mut self, history: Arc<dyn ReliabilitySource + Send + Sync>) -> Self {
        self.history = history;
        self
    }

    /// The trace id (the id of the first intent), once started.
    pub fn trace(&self) -> Option<TraceId> {
        self.trace
    }

    /// The intent of the current round (the root intent in round 1).
    pub fn intent(&self) -> Option<&SignedObject> {
        self.intent.as_ref()
    }

    /// The spec.
    pub fn spec(&self) -> &RequestSpec {
        &self.spec
    }

    /// Counters.
    pub fn stats(&self) -> &RequesterStats {
        &self.stats
    }

    /// What the requester is doing.
    pub fn state(&self) -> RequesterState {
        match &self.phase {
            Phase::Idle => RequesterState::Idle,
            Phase::Collecting { closes_at_ms } => RequesterState::Collecting {
                round: self.round,
                closes_at_ms: *closes_at_ms,
            },
            Phase::Voting(v) => RequesterState::Voting {
                offer: v.held.object.id(),
                round: self.ballot.as_ref().map_or(0, Ballot::round),
            },
            Phase::Running(r) => RequesterState::Awarded {
                task: r.start.id(),
                provider: r.held.candidate.provider,
            },
            Phase::Finished(_) => RequesterState::Finished,
        }
    }

    /// How the intent ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Finished(o) => Some(o),
            _ => None,
        }
    }

    /// Whether the intent is over.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// Signs and publishes the intent, as the root of a new trace, and opens the offer window.
    pub fn start(&mut self, now_ms: u64) -> Result<Vec<Action>> {
        self.begin(None, &[], now_ms)
    }

    /// Like [`Requester::start`], but the intent is a child in the existing trace `trace`,
    /// with `parents` (objects of that trace, at least one) as its causal predecessors. Used
    /// by composites (workflow stages, parallel shards). Timers carry the new intent's id as
    /// their scope.
    pub fn start_within(
        &mut self,
        trace: TraceId,
        parents: &[ObjectId],
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        if parents.is_empty() {
            return Err(PatternError::Invalid(
                "an intent inside a trace needs at least one parent".into(),
            ));
        }
        self.begin(Some(trace), parents, now_ms)
    }

    fn begin(
        &mut self,
        trace: Option<TraceId>,
        parents: &[ObjectId],
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        if !matches!(self.phase, Phase::Idle) {
            return Err(PatternError::Invalid(
                "the requester was already started".into(),
            ));
        }
        if self.spec.offer_window_ms == 0 {
            return Err(PatternError::Invalid(
                "the offer window must be positive".into(),
            ));
        }
        if self.spec.max_offers == 0 {
            return Err(PatternError::Invalid("max_offers must be positive".into()));
        }
        if let Some(deadline) = self.spec.constraints.deadline_ms
            && deadline <= now_ms
        {
            return Err(PatternError::Invalid(format!(
                "the deadline {deadline} ms is not after now ({now_ms} ms)"
            )));
        }
        let mut actions = Vec::new();
        self.open_round(trace, parents, now_ms, &mut actions)?;
        Ok(actions)
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>> {
        match input {
            Input::Received(object) => self.on_object(object, now_ms),
            Input::Timer(token) => self.on_timer(token, now_ms),
            Input::Progress { task, .. } | Input::Executed { task, .. } => {
                Err(PatternError::Invalid(format!(
                    "a requester executes nothing (executor input for task {})",
                    task.short()
                )))
            }
            Input::AwardRefused { task, reason, .. } => {
                let mut actions = Vec::new();
                self.on_award_refused(task, &reason, now_ms, &mut actions)?;
                Ok(actions)
            }
            Input::IntentDeclined {
                intent,
                provider,
                reason,
                ..
            } => {
                let mut actions = Vec::new();
                self.on_declined(intent, provider, &reason, now_ms, &mut actions)?;
                Ok(actions)
            }
            Input::VoteDecided { proposal, .. } => Err(PatternError::Invalid(format!(
                "a requester does not vote (decision on proposal {})",
                proposal.id().short()
            ))),
            Input::OfferDecided { intent, .. } => Err(PatternError::Invalid(format!(
                "a requester does not bid (terms for intent {})",
                intent.short()
            ))),
            Input::OfferRefused { offer, .. } => Err(PatternError::Invalid(format!(
                "a requester makes no offers (refusal of offer {})",
                offer.short()
            ))),
        }
    }

    /// An object of this trace arrived: an offer, progress, done or receipt.
    pub fn on_object(&mut self, object: SignedObject, now_ms: u64) -> Result<Vec<Action>> {
        let Some(trace) = self.trace else {
            return Err(self.unexpected(&object));
        };
        let _span = tracing::info_span!("requester", trace = %trace.short()).entered();
        if object.trace_id() != trace {
            return Err(PatternError::WrongTrace {
                id: object.id(),
                expected: trace,
                actual: object.trace_id(),
            });
        }
        let mut actions = Vec::new();
        match object.kind() {
            Kind::Offer => self.on_offer(object, now_ms, &mut actions)?,
            Kind::TaskProgress | Kind::TaskDone | Kind::Receipt => {
                self.on_task_report(object, now_ms, &mut actions)?
            }
            Kind::Event => self.on_refusal(object, now_ms, &mut actions)?,
            Kind::Vote => self.on_vote(object, now_ms, &mut actions)?,
            _ => return Err(self.unexpected(&object)),
        }
        Ok(actions)
    }

    /// A timer this requester set fired.
    pub fn on_timer(&mut self, token: TimerToken, now_ms: u64) -> Result<Vec<Action>> {
        if Some(token.trace) != self.trace || Some(token.scope) != self.scope {
            return Err(PatternError::Invalid(format!(
                "timer {} belongs to another trace or requester",
                token.kind
            )));
        }
        let _span = tracing::info_span!("requester", trace = %token.trace.short()).entered();
        let mut actions = Vec::new();
        match (token.kind, &self.phase) {
            (TimerKind::OfferWindow { round }, Phase::Collecting { closes_at_ms })
                if round == self.round && now_ms >= *closes_at_ms =>
            {
                debug!(round, "offer window closed by its timer");
                self.select(now_ms, &mut actions)?;
            }
            (TimerKind::TaskWatchdog { task }, Phase::Running(r))
                if r.start.id() == task && r.done.is_none() =>
            {
                let (limit, why) = self.watchdog_limit(r);
                if now_ms >= limit {
                    let reason = format!("{why} (checked at {now_ms} ms)");
                    self.fail_winner(reason, now_ms, &mut actions)?;
                } else {
                    actions.push(self.timer(limit, TimerKind::TaskWatchdog { task }));
                }
            }
            (TimerKind::ReceiptWait { task }, Phase::Running(r))
                if r.start.id() == task && r.done.is_some() && r.receipt.is_none() =>
            {
                self.complete_without_receipt(now_ms, &mut actions)?;
            }
            (TimerKind::VoteRound { .. }, _) => self.on_vote_timer(token, now_ms, &mut actions)?,
            _ => debug!(timer = %token.kind, "stale timer ignored"),
        }
        Ok(actions)
    }

    /// Gives up on the intent: held offers are rejected as cancelled and the outcome is a
    /// `Cancelled` failure. A running task cannot be stopped (the protocol has no cancel
    /// object); its late reports are refused.
    pub fn cancel(&mut self, reason: &str, now_ms: u64) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        if matches!(self.phase, Phase::Idle | Phase::Finished(_)) {
            return Ok(actions);
        }
        let mut held = std::mem::take(&mut self.held);
        if let Phase::Voting(voting) = &self.phase {
            held.push(voting.held.clone());
        }
        let refused: Vec<(SignedObject, RejectCode, String)> = held
            .into_iter()
            .map(|held| {
                let detail = format!("the intent was cancelled: {reason}");
                (held.object, RejectCode::Cancelled, detail)
            })
            .collect();
        self.reject_together(refused, now_ms, &mut actions)?;
        self.fail(
            FailureReason::Cancelled,
            reason.to_string(),
            now_ms,
            &mut actions,
        )?;
        Ok(actions)
    }

    // ----- rounds and offers -------------------------------------------------------------

    /// Signs and publishes the intent of a new round (round 1: the root).
    fn open_round(
        &mut self,
        trace: Option<TraceId>,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let mut closes_at = now_ms.saturating_add(self.spec.offer_window_ms);
        if let Some(deadline) = self.spec.constraints.deadline_ms {
            closes_at = closes_at.min(deadline);
        }
        let round = self.round + 1;
        let directed = if round == 1 && self.spec.sample_audience {
            select::directed_count(self.spec.min_offers, self.candidates.len())
        } else {
            None
        };
        let audience = if directed.is_none() && round == 1 && self.spec.sample_audience {
            self.history
                .provider_count()
                .and_then(|n| select::audience_for(self.spec.min_offers, n))
        } else {
            None
        };
        let intent = sign(
            &self.key,
            trace,
            parents,
            now_ms,
            Body::Intent(Intent {
                capability: self.spec.capability.clone(),
                input: self.spec.input.clone(),
                constraints: self.spec.constraints.clone(),
                strategy: self.spec.strategy,
                pattern: self.spec.pattern,
                committee: self.spec.committee.clone(),
                nonce: self.spec.nonce.wrapping_add(u64::from(round - 1)),
                expires_at_ms: closes_at,
                audience,
            }),
        )?;
        let trace = intent.trace_id();
        self.trace = Some(trace);
        self.scope.get_or_insert(intent.id());
        self.intents.push(intent.id());
        self.round = round;
        self.stats.rounds = round;
        self.held.clear();
        self.seen.clear();
        self.bidders.clear();
        self.declined.clear();
        self.received_this_round = 0;
        actions.push(Action::Record(intent.clone()));
        match directed {
            Some(count) => {
                let mut avoid = self.spec.avoid.clone();
                avoid.extend(self.ranked_last.iter().copied());
                self.asked = select::directed_choice(&intent.id(), &self.candidates, &avoid, count);
                info!(
                    trace = %trace.short(), round, intent = %intent.id().short(),
                    capability = %self.spec.capability, closes_at, asked = self.asked.len(),
                    known = self.candidates.len(), "intent sent directly"
                );
                for to in &self.asked {
                    actions.push(Action::Send {
                        to: *to,
                        object: intent.clone(),
                    });
                }
            }
            None => {
                info!(
                    trace = %trace.short(), round, intent = %intent.id().short(),
                    capability = %self.spec.capability, closes_at, "intent published"
                );
                actions.push(Action::Publish(intent.clone()));
            }
        }
        actions.push(self.timer(closes_at, TimerKind::OfferWindow { round }));
        self.intent = Some(intent);
        self.phase = Phase::Collecting {
            closes_at_ms: closes_at,
        };
        Ok(())
    }

    fn on_offer(
        &mut self,
        object: SignedObject,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let Body::Offer(offer) = object.body() else {
            return Err(self.unexpected(&object));
        };
        let offer = offer.clone();
        if self.seen.contains(&object.id()) {
            debug!(offer = %object.id().short(), "duplicate delivery ignored");
            return Ok(());
        }
        if !self.intents.contains(&offer.intent) {
            // Not an answer to anything this requester asked: refused, not recorded.
            return Err(PatternError::refused(
                Refusal::UnknownIntent,
                format!(
                    "offer {} answers intent {}, which this requester never published",
                    object.id().short(),
                    offer.intent.short()
                ),
            ));
        }
        // Once the window has closed (the offers were selected from), an offer can change
        // nothing: it is refused unrecorded, and its provider gives it up (SPEC.md §19.1).
        let closed = match self.phase {
            Phase::Collecting { .. } => None,
            Phase::Finished(_) => Some("whose round is over"),
            _ => Some("whose offer window has closed: an offer was selected already"),
        };
        if let Some(why) = closed {
            return Err(PatternError::refused(
                Refusal::IntentClosed,
                format!(
                    "offer {} answers intent {}, {why}",
                    object.id().short(),
                    offer.intent.short()
                ),
            ));
        }
        if self.received_this_round >= self.spec.max_offers {
            self.stats.offers_over_cap += 1;
            warn!(offer = %object.id().short(), cap = self.spec.max_offers, "offer cap reached");
            let detail = format!(
                "this intent already received its limit of {} offers",
                self.spec.max_offers
            );
            // Refused unread and not stored, so that a flood costs no memory.
            let reject = self.sign_reject(&object, RejectCode::Other, detail, now_ms)?;
            actions.push(Action::Send {
                to: object.signer(),
                object: reject,
            });
            return Ok(());
        }
        self.seen.insert(object.id());
        self.received_this_round += 1;
        self.stats.offers_received += 1;
        actions.push(Action::Record(object.clone()));

        let current = self.intent.as_ref().map(SignedObject::id);
        if Some(offer.intent) != current {
            return self.reject(
                &object,
                RejectCode::Other,
                format!(
                    "the offer answers intent {}, not the current intent {}",
                    offer.intent.short(),
                    current.map(|c| c.short()).unwrap_or_default()
                ),
                now_ms,
                actions,
            );
        }
        if self.excluded.contains(&object.signer()) {
            return self.reject(
                &object,
                RejectCode::Other,
                "this provider already failed a task of this intent".into(),
                now_ms,
                actions,
            );
        }
        if !self.bidders.insert(object.signer()) {
            return self.reject(
                &object,
                RejectCode::Other,
                "duplicate: this provider already made an offer for this intent".into(),
                now_ms,
                actions,
            );
        }
        let candidate = Candidate::new(object.id(), object.signer(), &offer, &*self.history);
        if let Err(v) = check_offer(
            &offer,
            candidate.reliability_bps,
            &self.spec.constraints,
            now_ms,
        ) {
            return self.reject(&object, v.code, v.detail, now_ms, actions);
        }
        self.stats.offers_valid += 1;
        debug!(
            offer = %object.id().short(), provider = %object.signer().short(),
            cost = offer.cost, eta = offer.eta_ms, "offer accepted for selection"
        );
        // Waiting past `deadline - eta` would make this offer too slow: the deadline forces
        // the choice by then at the latest.
        if let (Some(deadline), Phase::Collecting { closes_at_ms }) =
            (self.spec.constraints.deadline_ms, &mut self.phase)
        {
            let latest = deadline.saturating_sub(offer.eta_ms).max(now_ms);
            if latest < *closes_at_ms {
                *closes_at_ms = latest;
                debug!(
                    closes_at = latest,
                    "the deadline moves the window close earlier"
                );
                let round = self.round;
                actions.push(self.timer(latest, TimerKind::OfferWindow { round }));
            }
        }
        self.held.push(Held {
            object,
            offer,
            candidate,
        });
        if self.spec.min_offers > 0 && self.held.len() >= self.spec.min_offers {
            debug!(
                k = self.spec.min_offers,
                "offer window closed: enough offers"
            );
            self.select(now_ms, actions)?;
        } else if self.all_asked_answered() {
            debug!("offer window closed: every provider asked has offered or declined");
            self.select(now_ms, actions)?;
        }
        Ok(())
    }

    /// Whether the current round's intent was directed and every provider it was sent to
    /// has offered or declined: no other offer can come.
    fn all_asked_answered(&self) -> bool {
        self.round == 1
            && !self.asked.is_empty()
            && self
                .asked
                .iter()
                .all(|p| self.bidders.contains(p) || self.declined.contains(p))
    }

    /// A provider the directed intent `intent` was sent to declined it (or could not be
    /// reached). Once every provider asked has offered or declined, the window closes at once:
    /// the offers in hand are selected from, or, with none, the round is widened to everyone.
    fn on_declined(
        &mut self,
        intent: ObjectId,
        provider: PublicKey,
        reason: &str,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let current = self.intent.as_ref().map(SignedObject::id);
        if current != Some(intent)
            || !matches!(self.phase, Phase::Collecting { .. })
            || !self.asked.contains(&provider)
        {
            // An earlier round's intent, a window already closed, or not asked: nothing waits.
            return Ok(());
        }
        if self.declined.insert(provider) {
            debug!(provider = %provider.short(), reason, "the directed intent was declined");
        }
        if self.all_asked_answered() {
            info!(
                asked = self.asked.len(),
                declined = self.declined.len(),
                "offer window closed early: every provider asked has offered or declined"
            );
            self.select(now_ms, actions)?;
        }
        Ok(())
    }

    /// Closes the window: re-checks the held offers, ranks them, explains the ranking, rejects
    /// the losers and awards the winner. Every offer refused here is named in one signed
    /// `Reject` (per [`pvl_protocol::MAX_REJECT_OFFERS`] offers) that goes to each of their
    /// providers, each entry with its own reason: one signature for all losers, not one each.
    fn select(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let intent_id = self.current_intent_id()?;
        let mut valid = Vec::new();
        let mut refused: Vec<(SignedObject, RejectCode, String)> = Vec::new();
        for held in std::mem::take(&mut self.held) {
            // Time passed since the offer arrived: it may have expired or become too slow.
            match check_offer(
                &held.offer,
                held.candidate.reliability_bps,
                &self.spec.constraints,
                now_ms,
            ) {
                Ok(()) => valid.push(held),
                Err(v) => refused.push((held.object, v.code, v.detail)),
            }
        }
        if valid.is_empty() {
            self.reject_together(refused, now_ms, actions)?;
            let sampled = if self.round == 1 && !self.asked.is_empty() {
                // A directed first intent: the providers asked, of those known (after a
                // restart the candidates are not known again: at least those asked).
                Some((
                    self.asked.len(),
                    self.candidates.len().max(self.asked.len()),
                ))
            } else {
                self.intent.as_ref().and_then(|i| match i.body() {
                    Body::Intent(b) => b.audience.map(|a| (a.wanted as usize, a.of as usize)),
                    _ => None,
                })
            };
            let time_left = self
                .spec
                .constraints
                .deadline_ms
                .is_none_or(|deadline| now_ms < deadline);
            if let Some((wanted, of)) = sampled
                && time_left
            {
                // The sample brought nothing usable: ask everyone (a new intent, so a new
                // round; it does not use up a re-publication).
                let event = self.event(
                    EventType::AudienceWidened,
                    vec![intent_id],
                    &[intent_id],
                    format!(
                        "the {} of about {} providers asked brought no acceptable offer ({} received): re-publishing to every provider (round {})",
                        wanted,
                        of,
                        self.received_this_round,
                        self.round + 1
                    ),
                    vec![
                        (attr::WANTED.into(), wanted.to_string()),
                        (attr::OF.into(), of.to_string()),
                        (attr::ROUND.into(), (self.round + 1).to_string()),
                    ],
                    now_ms,
                )?;
                let parents = vec![intent_id, event.id()];
                actions.push(Action::Record(event));
                return self.open_round(self.trace, &parents, now_ms, actions);
            }
            let (reason, detail) = if self.stats.awards > 0 {
                (
                    FailureReason::AllProvidersFailed,
                    format!(
                        "every awarded provider failed and the re-published intent (round {}) got no acceptable offer",
                        self.round
                    ),
                )
            } else if self.received_this_round == 0 {
                (
                    FailureReason::NoOffers,
                    format!(
                        "no provider offered to do `{}` within the offer window",
                        self.spec.capability
                    ),
                )
            } else {
                (
                    FailureReason::NoValidOffers,
                    format!(
                        "{} offer(s) arrived but none satisfied the constraints ({})",
                        self.received_this_round,
                        self.reject_summary()
                    ),
                )
            };
            return self.fail(reason, detail, now_ms, actions);
        }
        let candidates: Vec<Candidate> = valid.iter().map(|h| h.candidate.clone()).collect();
        let ranking = rank(self.spec.strategy, &candidates);
        let mut ranking = self.rank_busy_last(ranking, intent_id, now_ms, actions)?;
        let avoided = demote_avoided(&mut ranking, &self.spec.avoid);
        let rejected: Vec<(RejectCode, usize)> = [
            RejectCode::OverBudget,
            RejectCode::TooSlow,
            RejectCode::LowReliability,
            RejectCode::Expired,
            RejectCode::ResourceLimits,
            RejectCode::Other,
        ]
        .into_iter()
        // Offers refused on re-check above are counted once their reject is signed, below.
        .map(|c| {
            let now = refused.iter().filter(|(_, code, _)| *code == c).count();
            (c, self.stats.rejected(c) + now)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
        let mut first_event = None;
        for mut body in select::selection_events(&ranking, &rejected) {
            explain_avoided(&mut body, &avoided, &ranking);
            let event = sign(
                &self.key,
                self.trace,
                &[intent_id],
                now_ms,
                Body::Event(body),
            )?;
            first_event.get_or_insert(event.id());
            actions.push(Action::Record(event));
        }
        let mut ranked = ranking.ranked.into_iter();
        let Some(winner) = ranked.next() else {
            return Err(PatternError::Invalid("ranking lost the offers".into()));
        };
        info!(
            winner = %winner.candidate.offer.short(), provider = %winner.candidate.provider.short(),
            score = %fmt_score(winner.score), valid = candidates.len(), "offer selected"
        );
        let total = candidates.len();
        let mut by_id: HashMap<ObjectId, Held> =
            valid.into_iter().map(|h| (h.object.id(), h)).collect();
        let Some(winner_held) = by_id.remove(&winner.candidate.offer) else {
            return Err(PatternError::Invalid(
                "the winning offer went missing".into(),
            ));
        };
        let mut standby = VecDeque::with_capacity(total.saturating_sub(1));
        for (i, loser) in ranked.enumerate() {
            let Some(held) = by_id.remove(&loser.candidate.offer) else {
                continue;
            };
            let detail = format!(
                "not selected under {}: score {} (rank {} of {total}) vs winner {} with score {}; the offer may still be awarded if the winner fails before it expires",
                self.spec.strategy,
                fmt_score(loser.score),
                i + 2,
                winner.candidate.offer.short(),
                fmt_score(winner.score),
            );
            refused.push((held.object.clone(), RejectCode::NotSelected, detail));
            standby.push_back((loser, held));
        }
        self.standby = standby;
        self.reject_together(refused, now_ms, actions)?;
        let parents: Vec<ObjectId> = first_event.into_iter().collect();
        self.award(winner_held, &parents, now_ms, actions)
    }

    /// Awards `held`: at once, or after the committee's approval when the spec names one.
    fn award(
        &mut self,
        held: Held,
        extra_parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        match self.spec.committee.clone() {
            Some(committee) => self.start_ballot(held, committee, extra_parents, now_ms, actions),
            None => self.send_award(held, extra_parents, None, now_ms, actions),
        }
    }

    /// Sends the `TaskStart` for `held` (with the committee's certificate, if any) and starts
    /// watching the task.
    fn send_award(
        &mut self,
        held: Held,
        extra_parents: &[ObjectId],
        quorum: Option<SignedObject>,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let intent = self.current_intent_id()?;
        let mut parents = vec![held.object.id()];
        parents.extend_from_slice(extra_parents);
        parents.extend(quorum.as_ref().map(SignedObject::id));
        let start = sign(
            &self.key,
            self.trace,
            &parents,
            now_ms,
            Body::TaskStart(TaskStart {
                offer: held.object.id(),
                provider: held.object.signer(),
                label: self.spec.label.clone(),
                input: self.spec.input.clone(),
                deadline_ms: self.spec.constraints.deadline_ms,
                quorum: quorum.map(Box::new),
            }),
        )?;
        self.stats.awards += 1;
        self.tasks.push(start.id());
        info!(
            task = %start.id().short(), provider = %held.object.signer().short(),
            award = self.stats.awards, "task awarded"
        );
        actions.push(Action::Record(start.clone()));
        actions.push(Action::Send {
            to: held.object.signer(),
            object: start.clone(),
        });
        let running = Running {
            start,
            held,
            intent,
            awarded_at_ms: now_ms,
            last_heard_ms: now_ms,
            done: None,
            receipt: None,
        };
        let (limit, _) = self.watchdog_limit(&running);
        actions.push(self.timer(
            limit,
            TimerKind::TaskWatchdog {
                task: running.start.id(),
            },
        ));
        self.phase = Phase::Running(Box::new(running));
        Ok(())
    }

    // ----- committee approval ------------------------------------------------------------

    /// Opens a consensus ballot on awarding `held`; the award waits for its decision.
    fn start_ballot(
        &mut self,
        held: Held,
        committee: Committee,
        extra_parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let trace = self
            .trace
            .ok_or_else(|| PatternError::Invalid("the requester was not started".into()))?;
        let terms = ProposalTerms {
            capability: self.spec.capability.clone(),
            provider: held.object.signer(),
            offer: held.object.id(),
            cost: held.offer.cost,
            eta_ms: held.offer.eta_ms,
            input_sha256: self.spec.input.sha256(),
        };
        let mut parents = vec![held.object.id()];
        parents.extend_from_slice(extra_parents);
        let mut ballot = Ballot::new(
            self.key.clone(),
            trace,
            parents,
            terms,
            committee,
            self.spec.vote_round_ms,
            self.spec.max_vote_rounds,
        )?
        .with_scope(self.scope.unwrap_or(trace));
        actions.extend(ballot.start(now_ms)?);
        info!(offer = %held.object.id().short(), "award waits for the committee");
        self.ballot = Some(ballot);
        self.phase = Phase::Voting(Box::new(Voting {
            held,
            parents: extra_parents.to_vec(),
        }));
        Ok(())
    }

    /// A committee member's vote: to the ballot, then act on its decision.
    fn on_vote(
        &mut self,
        object: SignedObject,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let Some(ballot) = self.ballot.as_mut() else {
            return Err(PatternError::refused(
                Refusal::NoOpenBallot,
                format!(
                    "vote {}: no ballot of this requester is open",
                    object.id().short()
                ),
            ));
        };
        actions.extend(ballot.on_vote(object, now_ms)?);
        self.act_on_decision(now_ms, actions)
    }

    fn on_vote_timer(
        &mut self,
        token: TimerToken,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        match self.ballot.as_mut() {
            Some(ballot) if ballot.owns_timer(&token) => {
                actions.extend(ballot.on_timer(token, now_ms)?);
                self.act_on_decision(now_ms, actions)
            }
            _ => {
                debug!(timer = %token.kind, "stale vote timer ignored");
                Ok(())
            }
        }
    }

    /// While voting: award with the certificate, or fail with the committee's reasons.
    fn act_on_decision(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        if !matches!(self.phase, Phase::Voting(_)) {
            return Ok(());
        }
        let Some(decision) = self.ballot.as_ref().and_then(Ballot::decision).cloned() else {
            return Ok(());
        };
        let Phase::Voting(voting) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Ok(());
        };
        if !matches!(decision, Decision::Approved { .. }) {
            let detail = format!(
                "the approval committee did not approve: {}",
                decision.summary()
            );
            self.reject(
                &voting.held.object,
                RejectCode::Other,
                detail,
                now_ms,
                actions,
            )?;
        }
        match decision {
            Decision::Approved { certificate, .. } => self.send_award(
                voting.held,
                &voting.parents,
                Some(*certificate),
                now_ms,
                actions,
            ),
            Decision::Rejected { .. } => self.fail(
                FailureReason::RejectedByCommittee,
                format!(
                    "the committee rejected offer {}: {}",
                    voting.held.object.id().short(),
                    decision.summary()
                ),
                now_ms,
                actions,
            ),
            Decision::TimedOut { .. } => self.fail(
                FailureReason::NoQuorum,
                format!(
                    "offer {}: {}",
                    voting.held.object.id().short(),
                    decision.summary()
                ),
                now_ms,
                actions,
            ),
        }
    }

    /// When the running task counts as failed if nothing more is heard, and why.
    fn watchdog_limit(&self, r: &Running) -> (u64, String) {
        let eta = r
            .awarded_at_ms
            .saturating_add(r.held.offer.eta_ms)
            .saturating_add(self.spec.grace_ms);
        let mut limit = (
            eta,
            format!(
                "no TaskDone within the offer's eta {} ms plus {} ms grace",
                r.held.offer.eta_ms, self.spec.grace_ms
            ),
        );
        if let Some(silence) = self.spec.silence_ms {
            let quiet = r.last_heard_ms.saturating_add(silence);
            if quiet < limit.0 {
                limit = (
                    quiet,
                    format!("provider silent for {silence} ms (no progress or done)"),
                );
            }
        }
        if let Some(deadline) = self.spec.constraints.deadline_ms
            && deadline < limit.0
        {
            limit = (deadline, format!("the deadline {deadline} ms passed"));
        }
        limit
    }

    // ----- the running task --------------------------------------------------------------

    fn on_task_report(
        &mut self,
        object: SignedObject,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let task = match object.body() {
            Body::TaskProgress(p) => p.task,
            Body::TaskDone(d) => d.task,
            Body::Receipt(r) => r.task,
            _ => return Err(self.unexpected(&object)),
        };
        let Phase::Running(running) = &mut self.phase else {
            return Err(PatternError::UnknownTask(task));
        };
        if running.start.id() != task {
            return Err(PatternError::UnknownTask(task));
        }
        let provider = running.held.candidate.provider;
        if object.signer() != provider {
            return Err(PatternError::WrongSigner {
                kind: object.kind(),
                id: object.id(),
                expected: provider,
                actual: object.signer(),
            });
        }
        running.last_heard_ms = now_ms;
        match object.body() {
            Body::TaskProgress(p) => {
                debug!(task = %task.short(), fraction = ?p.fraction_bps, "progress");
                actions.push(Action::Record(object));
                Ok(())
            }
            Body::TaskDone(done) => {
                if running.done.is_some() {
                    debug!(task = %task.short(), "second TaskDone ignored");
                    return Ok(());
                }
                actions.push(Action::Record(object.clone()));
                match &done.status {
                    TaskStatus::Failed(reason) => {
                        let reason = format!("the provider reported failure: {reason}");
                        self.fail_winner(reason, now_ms, actions)
                    }
                    TaskStatus::Ok => {
                        running.done = Some(object);
                        if running.receipt.is_some() {
                            self.try_complete(now_ms, actions)
                        } else {
                            let at = now_ms.saturating_add(self.spec.receipt_wait_ms);
                            actions.push(self.timer(at, TimerKind::ReceiptWait { task }));
                            Ok(())
                        }
                    }
                }
            }
            Body::Receipt(_) => {
                if running.receipt.is_some() {
                    debug!(task = %task.short(), "second receipt ignored");
                    return Ok(());
                }
                actions.push(Action::Record(object.clone()));
                running.receipt = Some(object);
                if running.done.is_some() {
                    self.try_complete(now_ms, actions)
                } else {
                    Ok(())
                }
            }
            _ => Err(self.unexpected(&object)),
        }
    }

    /// The awarded provider refused the award (an `award-refused` event about the task, see
    /// [`crate::Provider`]): reassign at once instead of waiting for the watchdog.
    fn on_refusal(
        &mut self,
        object: SignedObject,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let Body::Event(event) = object.body() else {
            return Err(self.unexpected(&object));
        };
        let Phase::Running(running) = &self.phase else {
            return Err(self.unexpected(&object));
        };
        let task = running.start.id();
        if !event.is(&EventType::AwardRefused) || !event.about.contains(&task) {
            return Err(self.unexpected(&object));
        }
        let provider = running.held.candidate.provider;
        if object.signer() != provider {
            return Err(PatternError::WrongSigner {
                kind: object.kind(),
                id: object.id(),
                expected: provider,
                actual: object.signer(),
            });
        }
        let reason = format!("the provider refused the award: {}", event.message);
        actions.push(Action::Record(object));
        self.fail_winner(reason, now_ms, actions)
    }

    /// The awarded provider refused the award in its acknowledgement: reassign at once.
    fn on_award_refused(
        &mut self,
        task: ObjectId,
        reason: &str,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let Phase::Running(running) = &self.phase else {
            return Err(PatternError::UnknownTask(task));
        };
        if running.start.id() != task {
            return Err(PatternError::UnknownTask(task));
        }
        let reason = format!("the provider refused the award in its acknowledgement: {reason}");
        self.fail_winner(reason, now_ms, actions)
    }

    /// Whether `task` is one of the tasks this requester awarded.
    pub fn awarded(&self, task: &ObjectId) -> bool {
        self.tasks.contains(task)
    }

    /// Done and receipt are both in: verify the receipt, countersign, finish.
    fn try_complete(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let Phase::Running(running) = &self.phase else {
            return Ok(());
        };
        let (Some(done), Some(receipt)) = (&running.done, &running.receipt) else {
            return Ok(());
        };
        if let Err(problem) = self.verify_receipt(running, done, receipt) {
            warn!(%problem, "receipt refused");
            return self.fail_winner(format!("invalid receipt: {problem}"), now_ms, actions);
        }
        let cosigned = receipt.countersign(&self.key)?;
        let completion = self.completion(running, done, Some(cosigned.clone()));
        info!(task = %completion.task.short(), "receipt countersigned, intent completed");
        actions.push(Action::Record(cosigned.clone()));
        actions.push(Action::Send {
            to: completion.provider,
            object: cosigned,
        });
        self.finish(Outcome::Completed(completion), actions);
        Ok(())
    }

    /// The outcome of a task that finished well, with or without its countersigned receipt.
    fn completion(
        &self,
        running: &Running,
        done: &SignedObject,
        receipt: Option<SignedObject>,
    ) -> Completion {
        let output = match done.body() {
            Body::TaskDone(d) => d.output.clone(),
            _ => None,
        };
        Completion {
            trace: running.start.trace_id(),
            task: running.start.id(),
            offer: running.held.object.id(),
            provider: running.held.candidate.provider,
            output,
            cost: running.held.offer.cost,
            receipt,
            awards: self.stats.awards,
            parts: Vec::new(),
        }
    }

    fn verify_receipt(
        &self,
        running: &Running,
        done: &SignedObject,
        receipt: &SignedObject,
    ) -> std::result::Result<(), String> {
        let (Body::TaskDone(d), Body::Receipt(r)) = (done.body(), receipt.body()) else {
            return Err("not a done and a receipt".into());
        };
        let r: &Receipt = r;
        let d: &TaskDone = d;
        if r.task != running.start.id() {
            return Err(format!("receipt is for task {}", r.task.short()));
        }
        if r.intent != running.intent {
            return Err(format!(
                "receipt names intent {}, the task served {}",
                r.intent.short(),
                running.intent.short()
            ));
        }
        if r.requester != self.key.public() {
            return Err(format!("receipt names requester {}", r.requester.short()));
        }
        if r.status != d.status {
            return Err("receipt status differs from the TaskDone status".into());
        }
        let (sha, size) = match &d.output {
            Some(p) => (Some(p.sha256()), p.size()),
            None => (None, 0),
        };
        if r.output_sha256 != sha || r.output_size != size {
            return Err("receipt output hash or size differs from the TaskDone output".into());
        }
        if r.cost > running.held.offer.cost {
            return Err(format!(
                "receipt charges {}, the offer said {}",
                r.cost, running.held.offer.cost
            ));
        }
        if r.started_at_ms != d.started_at_ms || r.finished_at_ms != d.finished_at_ms {
            return Err("receipt timings differ from the TaskDone timings".into());
        }
        Ok(())
    }

    fn complete_without_receipt(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let Phase::Running(running) = &self.phase else {
            return Ok(());
        };
        let Some(done) = &running.done else {
            return Ok(());
        };
        let completion = self.completion(running, done, None);
        let event = self.event(
            EventType::ReceiptMissing,
            vec![completion.task, done.id()],
            &[done.id()],
            format!(
                "the task was reported done but no valid receipt arrived within {} ms",
                self.spec.receipt_wait_ms
            ),
            vec![(attr::PROVIDER.into(), completion.provider.to_string())],
            now_ms,
        )?;
        warn!("completed without a receipt");
        actions.push(Action::Record(event));
        self.finish(Outcome::Completed(completion), actions);
        Ok(())
    }

    /// The awarded provider failed (reported failure, late, silent, bad receipt): award the
    /// next-best offer, re-publish, or fail the intent.
    fn fail_winner(
        &mut self,
        reason: String,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return Ok(());
        };
        let failed_task = running.start.id();
        let failed_provider = running.held.candidate.provider;
        self.excluded.insert(failed_provider);
        warn!(task = %failed_task.short(), provider = %failed_provider.short(), %reason, "awarded provider failed");
        let mut parents = vec![failed_task];
        parents.extend(running.done.as_ref().map(SignedObject::id));

        // The next standby offer still acceptable now, free providers first.
        if !self.ranked_last.is_empty() {
            let (free, busy): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.standby)
                .into_iter()
                .partition(|(_, h)| !self.ranked_last.contains(&h.candidate.provider));
            self.standby = free.into_iter().chain(busy).collect();
        }
        let mut next = None;
        while let Some((scored, held)) = self.standby.pop_front() {
            if self.excluded.contains(&held.candidate.provider) {
                continue;
            }
            match check_offer(
                &held.offer,
                held.candidate.reliability_bps,
                &self.spec.constraints,
                now_ms,
            ) {
                Ok(()) => {
                    next = Some((held, scored));
                    break;
                }
                Err(v) => {
                    debug!(offer = %held.object.id().short(), detail = %v.detail, "standby offer no longer acceptable")
                }
            }
        }
        let base_attrs = vec![
            (attr::FROM_TASK.to_string(), failed_task.to_string()),
            (attr::FROM_PROVIDER.to_string(), failed_provider.to_string()),
            (attr::REASON.to_string(), text(&reason)),
        ];
        if let Some((held, scored)) = next {
            let mut attrs = base_attrs;
            attrs.push((attr::TO_OFFER.into(), held.object.id().to_string()));
            attrs.push((
                attr::TO_PROVIDER.into(),
                held.candidate.provider.to_string(),
            ));
            attrs.push((attr::TO_SCORE.into(), fmt_score(scored.score)));
            let event = self.event(
                EventType::Reassigned,
                vec![failed_task, held.object.id()],
                &parents,
                format!(
                    "task {} by {} failed ({reason}); reassigned to the next-best offer {} by {} (score {})",
                    failed_task.short(),
                    failed_provider.short(),
                    held.object.id().short(),
                    held.candidate.provider.short(),
                    fmt_score(scored.score)
                ),
                attrs,
                now_ms,
            )?;
            let event_id = event.id();
            actions.push(Action::Record(event));
            return self.award(held, &[event_id], now_ms, actions);
        }
        let time_left = self
            .spec
            .constraints
            .deadline_ms
            .is_none_or(|deadline| now_ms < deadline);
        if self.republished < self.spec.max_republish && time_left {
            self.republished += 1;
            let mut attrs = base_attrs;
            attrs.push((attr::TO.into(), attr::REPUBLISH.into()));
            attrs.push((attr::ROUND.into(), (self.round + 1).to_string()));
            let event = self.event(
                EventType::Reassigned,
                vec![failed_task],
                &parents,
                format!(
                    "task {} by {} failed ({reason}); no acceptable offer left, re-publishing the intent (round {})",
                    failed_task.short(),
                    failed_provider.short(),
                    self.round + 1
                ),
                attrs,
                now_ms,
            )?;
            let mut parents = vec![self.current_intent_id()?, event.id()];
            parents.dedup();
            actions.push(Action::Record(event));
            return self.open_round(self.trace, &parents, now_ms, actions);
        }
        let reason_kind = if time_left {
            FailureReason::AllProvidersFailed
        } else {
            FailureReason::DeadlinePassed
        };
        let detail = format!(
            "{} task(s) awarded, the last ({} by {}) failed: {reason}; no acceptable offer left{}",
            self.stats.awards,
            failed_task.short(),
            failed_provider.short(),
            if time_left {
                " and no re-publication left"
            } else {
                " and the deadline passed"
            }
        );
        self.fail(reason_kind, detail, now_ms, actions)
    }

    // ----- endings -----------------------------------------------------------------------

    fn fail(
        &mut self,
        reason: FailureReason,
        detail: String,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let trace = self.trace.unwrap_or(ObjectId([0; 32]));
        let intent = self.current_intent_id()?;
        let event = self.event(
            EventType::IntentFailed,
            vec![intent],
            &[intent],
            format!("{reason}: {detail}"),
            vec![
                (attr::REASON.into(), reason.name().into()),
                (
                    attr::OFFERS_RECEIVED.into(),
                    self.stats.offers_received.to_string(),
                ),
                (attr::AWARDS.into(), self.stats.awards.to_string()),
            ],
            now_ms,
        )?;
        warn!(%reason, %detail, "intent failed");
        actions.push(Action::Record(event));
        self.finish(
            Outcome::Failed(Failure {
                trace,
                reason,
                detail: text(detail),
                parts: Vec::new(),
            }),
            actions,
        );
        Ok(())
    }

    fn finish(&mut self, outcome: Outcome, actions: &mut Vec<Action>) {
        self.standby.clear();
        self.held.clear();
        actions.push(Action::Finished(outcome.clone()));
        self.phase = Phase::Finished(Box::new(outcome));
    }

    // ----- helpers -----------------------------------------------------------------------

    /// Moves offers of [`Requester::set_ranked_last`] providers after the others (keeping
    /// the order within each group) and records a `ranked-last` event when that changed
    /// anything.
    fn rank_busy_last(
        &self,
        mut ranking: select::Ranking,
        intent: ObjectId,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<select::Ranking> {
        let busy = |s: &Scored| self.ranked_last.contains(&s.candidate.provider);
        let moved: Vec<ObjectId> = ranking
            .ranked
            .iter()
            .filter(|s| busy(s))
            .map(|s| s.candidate.offer)
            .collect();
        if moved.is_empty() || moved.len() == ranking.ranked.len() {
            return Ok(ranking);
        }
        let (free, taken): (Vec<Scored>, Vec<Scored>) =
            ranking.ranked.into_iter().partition(|s| !busy(s));
        ranking.ranked = free.into_iter().chain(taken).collect();
        let event = self.event(
            EventType::RankedLast,
            moved.clone(),
            &[intent],
            format!(
                "{} offer(s) from providers already holding another part of this trace ranked after the free ones",
                moved.len()
            ),
            vec![(attr::COUNT.into(), moved.len().to_string())],
            now_ms,
        )?;
        actions.push(Action::Record(event));
        Ok(ranking)
    }

    fn current_intent_id(&self) -> Result<ObjectId> {
        self.intent
            .as_ref()
            .map(SignedObject::id)
            .ok_or_else(|| PatternError::Invalid("the requester was not started".into()))
    }

    fn timer(&self, at_ms: u64, kind: TimerKind) -> Action {
        Action::SetTimer {
            at_ms,
            token: TimerToken {
                trace: self.trace.unwrap_or(ObjectId([0; 32])),
                scope: self.scope.unwrap_or(ObjectId([0; 32])),
                kind,
            },
        }
    }

    fn unexpected(&self, object: &SignedObject) -> PatternError {
        PatternError::Unexpected {
            kind: object.kind(),
            id: object.id(),
            state: self.phase.name(),
        }
    }

    fn sign_reject(
        &mut self,
        offer: &SignedObject,
        code: RejectCode,
        detail: String,
        now_ms: u64,
    ) -> Result<SignedObject> {
        self.stats.rejects[code as usize] += 1;
        sign(
            &self.key,
            self.trace,
            &[offer.id()],
            now_ms,
            Body::Reject(Reject::one(offer.id(), code, text(detail))),
        )
    }

    /// Signs one `Reject` per [`pvl_protocol::MAX_REJECT_OFFERS`] of `refused` offers (each
    /// entry with its own code and detail, every offer a parent), records it once and sends the
    /// same object to the provider of each offer it names.
    fn reject_together(
        &mut self,
        refused: Vec<(SignedObject, RejectCode, String)>,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let mut refused = refused.into_iter().peekable();
        while refused.peek().is_some() {
            let chunk: Vec<(SignedObject, RejectCode, String)> = refused
                .by_ref()
                .take(pvl_protocol::MAX_REJECT_OFFERS)
                .collect();
            let mut entries = chunk.iter().map(|(offer, code, detail)| {
                self.stats.rejects[*code as usize] += 1;
                debug!(offer = %offer.id().short(), code = code.name(), %detail, "offer rejected");
                pvl_protocol::RejectedOffer {
                    offer: offer.id(),
                    code: *code,
                    detail: text(detail.clone()),
                }
            });
            let Some(first) = entries.next() else {
                break;
            };
            let more: Vec<pvl_protocol::RejectedOffer> = entries.collect();
            let parents: Vec<ObjectId> = chunk.iter().map(|(o, _, _)| o.id()).collect();
            let reject = sign(
                &self.key,
                self.trace,
                &parents,
                now_ms,
                Body::Reject(Reject {
                    offer: first.offer,
                    code: first.code,
                    detail: first.detail,
                    more,
                }),
            )?;
            actions.push(Action::Record(reject.clone()));
            let mut told = HashSet::new();
            for (offer, _, _) in &chunk {
                if told.insert(offer.signer()) {
                    actions.push(Action::Send {
                        to: offer.signer(),
                        object: reject.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Signs a `Reject` for `offer`, sends it to its provider and records it.
    fn reject(
        &mut self,
        offer: &SignedObject,
        code: RejectCode,
        detail: String,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        debug!(offer = %offer.id().short(), code = code.name(), %detail, "offer rejected");
        let reject = self.sign_reject(offer, code, detail, now_ms)?;
        actions.push(Action::Record(reject.clone()));
        actions.push(Action::Send {
            to: offer.signer(),
            object: reject,
        });
        Ok(())
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
            self.trace,
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

    fn reject_summary(&self) -> String {
        let parts: Vec<String> = self
            .stats
            .rejects
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(i, n)| RejectCode::ALL.get(i).map(|c| format!("{} {n}", c.name())))
            .collect();
        parts.join(", ")
    }
}

// ----- restart ---------------------------------------------------------------------------

/// Most providers listed in a `run-spec` event's `avoid` attribute (the attribute must fit
/// the protocol's text limit).
pub(crate) const MAX_AVOID_LISTED: usize = 60;

/// The spec of a run from its root intent and its `run-spec` knobs.
fn spec_from(intent: &Intent, run: RunSpec) -> Result<RequestSpec> {
    let number = |key: &str, v: u64| {
        usize::try_from(v)
            .map_err(|_| PatternError::Invalid(format!("run-spec `{key}` {v} is too large")))
    };
    let small = |key: &str, v: u64| {
        u32::try_from(v)
            .map_err(|_| PatternError::Invalid(format!("run-spec `{key}` {v} is too large")))
    };
    let mut spec = RequestSpec::new(intent.capability.clone(), intent.input.clone());
    spec.constraints = intent.constraints.clone();
    spec.strategy = intent.strategy;
    spec.pattern = intent.pattern;
    spec.committee = intent.committee.clone();
    spec.nonce = intent.nonce;
    spec.offer_window_ms = run.window_ms;
    spec.min_offers = number(attr::MIN_OFFERS, run.min_offers)?;
    spec.grace_ms = run.grace_ms;
    spec.silence_ms = run.silence_ms;
    spec.receipt_wait_ms = run.receipt_wait_ms;
    spec.max_offers = number(attr::MAX_OFFERS, run.max_offers)?;
    spec.max_republish = small(attr::MAX_REPUBLISH, run.max_republish)?;
    spec.vote_round_ms = run.vote_round_ms;
    spec.max_vote_rounds = small(attr::MAX_VOTE_ROUNDS, run.max_vote_rounds)?;
    spec.label = run.label;
    spec.avoid = run.avoid;
    Ok(spec)
}

impl Requester {
    /// Rebuilds the requester of a contract-net run from the objects of its trace (in any
    /// order) after the node restarted, and returns the actions due now. The trace is the
    /// log: the root intent and the `run-spec` event give the spec; re-published intents,
    /// offers, the awards (`TaskStart`s), `reassigned` events and the provider's reports give
    /// the state:
    ///
    /// * a round still collecting keeps the offers received (each is checked again as when it
    ///   arrived, at its own signed time) and closes at its intent's expiry (at once when
    ///   that passed while the node was down, or when enough offers are in);
    /// * an award already sent is followed, not repeated: the task's progress, done and
    ///   receipt are replayed, the watchdog or the receipt wait is re-armed from their signed
    ///   timestamps, and the other offers of its round stand by as before;
    /// * a round whose deadline passed while the node was down ends, `deadline-passed`.
    ///
    /// A round that was waiting for its committee's votes selects again (a new ballot).
    /// Records of objects already in `objects` are not repeated. `Err` when the objects are
    /// not an open contract-net run of `key` (no root intent of its own, no `run-spec` event,
    /// or the run already ended).
    pub fn restore(
        key: Keypair,
        objects: &[SignedObject],
        history: Arc<dyn ReliabilitySource + Send + Sync>,
        now_ms: u64,
    ) -> Result<(Self, Vec<Action>)> {
        let me = key.public();
        let mine = |kind: Kind| {
            let mut v: Vec<&SignedObject> = objects
                .iter()
                .filter(|o| o.kind() == kind && o.signer() == me)
                .collect();
            v.sort_by_key(|o| (o.timestamp_ms(), !o.is_root()));
            v
        };
        let intents = mine(Kind::Intent);
        let Some(root) = intents.first().copied().filter(|o| o.is_root()) else {
            return Err(PatternError::Invalid(
                "no root intent signed by this node".into(),
            ));
        };
        let Body::Intent(intent) = root.body() else {
            return Err(PatternError::Invalid("the root is not an intent".into()));
        };
        let events: Vec<(&SignedObject, &Event)> = mine(Kind::Event)
            .into_iter()
            .filter_map(|o| match o.body() {
                Body::Event(e) => Some((o, e)),
                _ => None,
            })
            .collect();
        let Some((_, run_spec)) = events.iter().find(|(_, e)| e.is(&EventType::RunSpec)) else {
            return Err(PatternError::Invalid(
                "the trace has no run-spec event (started by an older version)".into(),
            ));
        };
        if events.iter().any(|(_, e)| e.kind().ends_task_run())
            || objects
                .iter()
                .any(|o| o.kind() == Kind::Receipt && o.is_countersigned())
        {
            return Err(PatternError::Invalid("the run already ended".into()));
        }
        let run = RunSpec::from_event(run_spec)?;
        let asked = run.asked.clone();
        let spec = spec_from(intent, run)?;
        let mut r = Requester::new(key, spec).with_history(history);
        r.asked = asked;
        r.trace = Some(root.id());
        r.scope = Some(root.id());
        r.intents = intents.iter().map(|o| o.id()).collect();
        r.round = intents.len() as u32;
        r.republished = r.round.saturating_sub(1);
        r.stats.rounds = r.round;
        let latest_intent = intents.last().copied().unwrap_or(root);
        r.intent = Some(latest_intent.clone());

        let starts = mine(Kind::TaskStart);
        r.tasks = starts.iter().map(|o| o.id()).collect();
        r.stats.awards = starts.len() as u32;
        let failed: HashSet<ObjectId> = events
            .iter()
            .filter(|(_, e)| e.is(&EventType::Reassigned))
            .filter_map(|(_, e)| e.about.first().copied())
            .collect();
        for start in &starts {
            if failed.contains(&start.id())
                && let Body::TaskStart(t) = start.body()
            {
                r.excluded.insert(t.provider);
            }
        }
        let stored: HashSet<(ObjectId, bool)> = objects
            .iter()
            .map(|o| (o.id(), o.is_countersigned()))
            .collect();
        let mut actions = Vec::new();

        if let Some(deadline) = r.spec.constraints.deadline_ms
            && deadline <= now_ms
        {
            r.phase = Phase::Collecting {
                closes_at_ms: deadline,
            };
            r.fail(
                FailureReason::DeadlinePassed,
                format!("the deadline {deadline} ms passed while the requester was down"),
                now_ms,
                &mut actions,
            )?;
            return Ok((r, actions));
        }

        let offers_for = |intent: ObjectId| {
            let mut v: Vec<&SignedObject> = objects
                .iter()
                .filter(|o| matches!(o.body(), Body::Offer(of) if of.intent == intent))
                .collect();
            v.sort_by_key(|o| o.timestamp_ms());
            v
        };
        let running = starts.last().copied().filter(|s| {
            !failed.contains(&s.id()) && s.timestamp_ms() >= latest_intent.timestamp_ms()
        });
        if let Some(start) = running {
            let Body::TaskStart(task) = start.body() else {
                return Err(PatternError::Invalid("not a task start".into()));
            };
            let Some(winner) = objects.iter().find(|o| o.id() == task.offer) else {
                return Err(PatternError::Invalid(format!(
                    "the awarded offer {} is not in the trace",
                    task.offer.short()
                )));
            };
            let Body::Offer(offer) = winner.body() else {
                return Err(PatternError::Invalid(
                    "the awarded object is not an offer".into(),
                ));
            };
            let served = offer.intent;
            r.replay_offers(&offers_for(served), latest_intent.timestamp_ms());
            let held = std::mem::take(&mut r.held);
            let winner_held = Held {
                object: winner.clone(),
                offer: offer.clone(),
                candidate: Candidate::new(winner.id(), winner.signer(), offer, &*r.history),
            };
            let others: Vec<Held> = held
                .into_iter()
                .filter(|h| {
                    h.object.id() != winner.id() && !r.excluded.contains(&h.candidate.provider)
                })
                .collect();
            let candidates: Vec<Candidate> = others.iter().map(|h| h.candidate.clone()).collect();
            let mut by_id: HashMap<ObjectId, Held> =
                others.into_iter().map(|h| (h.object.id(), h)).collect();
            r.standby = rank(r.spec.strategy, &candidates)
                .ranked
                .into_iter()
                .filter_map(|scored| {
                    let held = by_id.remove(&scored.candidate.offer)?;
                    Some((scored, held))
                })
                .collect();
            r.phase = Phase::Running(Box::new(Running {
                start: start.clone(),
                held: winner_held,
                intent: served,
                awarded_at_ms: start.timestamp_ms(),
                last_heard_ms: start.timestamp_ms(),
                done: None,
                receipt: None,
            }));
            let mut reports: Vec<&SignedObject> = objects
                .iter()
                .filter(|o| o.signer() == task.provider && !o.is_countersigned())
                .filter(|o| match o.body() {
                    Body::TaskProgress(p) => p.task == start.id(),
                    Body::TaskDone(d) => d.task == start.id(),
                    Body::Receipt(rc) => rc.task == start.id(),
                    Body::Event(e) => {
                        e.is(&EventType::AwardRefused) && e.about.contains(&start.id())
                    }
                    _ => false,
                })
                .collect();
            reports.sort_by_key(|o| o.timestamp_ms());
            for report in reports {
                let at = report.timestamp_ms().clamp(start.timestamp_ms(), now_ms);
                match r.on_object(report.clone(), at) {
                    Ok(more) => actions.extend(more),
                    Err(e) => debug!(id = %report.id().short(), "report not replayed: {e}"),
                }
            }
            if let Phase::Running(running) = &r.phase
                && running.done.is_none()
            {
                let (limit, _) = r.watchdog_limit(running);
                let task = running.start.id();
                actions.push(r.timer(limit, TimerKind::TaskWatchdog { task }));
            }
        } else {
            let Body::Intent(current) = latest_intent.body() else {
                return Err(PatternError::Invalid(
                    "the latest intent is not an intent".into(),
                ));
            };
            r.phase = Phase::Collecting {
                closes_at_ms: current.expires_at_ms,
            };
            r.replay_offers(
                &offers_for(latest_intent.id()),
                latest_intent.timestamp_ms(),
            );
            let closes_at = match r.phase {
                Phase::Collecting { closes_at_ms } => closes_at_ms,
                _ => current.expires_at_ms,
            };
            if r.spec.min_offers > 0 && r.held.len() >= r.spec.min_offers {
                r.select(now_ms, &mut actions)?;
            } else {
                let round = r.round;
                actions.push(r.timer(closes_at, TimerKind::OfferWindow { round }));
            }
        }
        actions.retain(
            |a| !matches!(a, Action::Record(o) if stored.contains(&(o.id(), o.is_countersigned()))),
        );
        info!(
            trace = %root.id().short(), round = r.round, phase = r.phase.name(),
            offers = r.stats.offers_received, held = r.held.len(), objects = objects.len(),
            "run resumed after a restart"
        );
        Ok((r, actions))
    }

    /// Takes the offers of a round back as they arrived, each at its own signed time (not
    /// before the round's intent): held, seen and the counters are as before the restart.
    /// Nothing is sent or recorded again, and the window does not close here.
    fn replay_offers(&mut self, offers: &[&SignedObject], round_start_ms: u64) {
        let min_offers = std::mem::replace(&mut self.spec.min_offers, 0);
        if !matches!(self.phase, Phase::Collecting { .. }) {
            self.phase = Phase::Collecting {
                closes_at_ms: u64::MAX,
            };
        }
        for offer in offers {
            let mut ignored = Vec::new();
            let at = offer.timestamp_ms().max(round_start_ms);
            if let Err(e) = self.on_offer((*offer).clone(), at, &mut ignored) {
                info!(id = %offer.id().short(), "offer not taken back after the restart: {e}");
            }
        }
        self.spec.min_offers = min_offers;
    }
}

/// Adds to a `selection` event body why avoided providers' offers rank last.
fn explain_avoided(body: &mut Event, avoided: &[ObjectId], ranking: &select::Ranking) {
    if avoided.is_empty() {
        return;
    }
    let winner_avoided = ranking
        .winner()
        .is_some_and(|w| avoided.contains(&w.candidate.offer));
    let ids: Vec<String> = avoided.iter().map(ObjectId::short).collect();
    body.attrs
        .push((attr::AVOIDED_OFFERS.to_string(), text(ids.join(","))));
    let note = if winner_avoided {
        " Only offers from avoided providers (poor record) were acceptable, so one of them was chosen."
    } else {
        " Offers from providers avoided for a poor record rank after all others."
    };
    body.message = text(format!("{}{note}", body.message));
}

impl crate::coordination::Coordination for Requester {
    fn start(&mut self, now_ms: u64) -> Result<Vec<Action>> {
        Requester::start(self, now_ms)
    }

    fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>> {
        Requester::handle(self, input, now_ms)
    }

    fn trace(&self) -> Option<TraceId> {
        self.trace
    }

    fn claims(&self, object: &SignedObject) -> bool {
        !self.is_finished() && Requester::claims(self, object)
    }

    fn is_finished(&self) -> bool {
        Requester::is_finished(self)
    }

    fn outcome(&self) -> Option<&Outcome> {
        Requester::outcome(self)
    }

    fn asked(&self) -> &[PublicKey] {
        Requester::asked(self)
    }

    fn cancel(&mut self, reason: &str, now_ms: u64) -> Result<Vec<Action>> {
        Requester::cancel(self, reason, now_ms)
    }
}
