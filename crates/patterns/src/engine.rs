//! The coordination engine: every state machine of one node behind one sans-I/O surface.
//!
//! In the spirit of quinn-proto's `Endpoint`, the [`Engine`] owns everything a node
//! coordinates and does no I/O: every coordination run it started (by trace), the node's
//! [`Provider`] (when it serves capabilities), its committee [`Voter`], the outcomes of
//! finished runs (bounded) and **one timer queue**. The driver (the node's actor, or the
//! simulator, which runs N engines) feeds it inputs with the current time and carries out the
//! actions it returns:
//!
//! ```text
//!   request(Planned, now) ──► (trace, actions)        a new run: publish its intent, ...
//!   handle(Input, now)    ──► actions                 an object, an executor report, a vote decision
//!   handle_timeout(now)   ──► actions                 every timer due at `now`
//!   poll_timeout()        ──► Option<at_ms>           when to call handle_timeout next
//!   cancel(trace, why, now), outcome(trace), restore(traces, now)
//! ```
//!
//! ## Routing
//!
//! An object received goes to the run of its trace, when this node coordinates that trace
//! (a composite routes further to its stage or shard); intents, awards, rejects and
//! countersigned receipts go to the provider; proposals go to the voter. Timers never leave
//! the engine: [`Action::SetTimer`] goes into its queue and comes back through
//! [`Engine::handle_timeout`], routed by [`crate::TimerToken::trace`]. An object a state
//! machine sends to this node itself (a requester on its own committee: proposal and vote) is
//! delivered inside the engine, never through the network.
//!
//! ## Recording: one rule
//!
//! **An object is recorded once per process, by the state machine that signs it or admits
//! it**: every object a run, the provider or the voter signs, or accepts from the network,
//! comes out as exactly one [`Action::Record`]; the driver stores exactly those and nothing
//! else. An intent that no state machine takes (this node does not serve its capability, or
//! its provider does not bid) is not recorded: it comes out as [`Action::Observe`], for the
//! node's event stream only, so that a flood of intents costs no node that does not answer
//! them any storage. An object delivered inside the engine (sent to itself)
//! was recorded by its signer, so the receiving state machine's record of it is dropped.
//! Objects every state machine refused are not recorded: they are counted in
//! [`EngineStats::refused`], and by reason in [`EngineStats::refusals`].
//!
//! ## Admission
//!
//! An object that arrived **directly** from a peer goes to [`Engine::admit`] instead of
//! [`Engine::handle`]: the same routing, plus a verdict the driver sends back as the
//! acknowledgement: `Ok` when a state machine admitted it, or the typed [`Refused`] of the
//! state machine whose rule governs it (the run for offers, reports, award refusals and votes;
//! the provider for awards, rejects and its countersigned receipts; the voter for proposals).
//! When no such state machine exists here the engine says why ([`Refusal::UnknownIntent`],
//! [`Refusal::IntentClosed`] when the run's outcome is remembered, [`Refusal::UnknownTrace`],
//! ...). Capability ads are refused directly ([`Refusal::GossipOnly`]); an intent sent directly
//! (SPEC.md §4.3) is admitted when the provider bids on it ([`Refusal::NotBidding`]). See
//! [`crate::admission`] for every rule.
//!
//! ## Votes decided outside
//!
//! With [`VoteMode::External`] the engine does not decide votes itself: a proposal it may
//! vote on comes out as [`Action::DecideVote`]; the driver asks whoever decides (a program,
//! an agent) and feeds the answer back as [`Input::VoteDecided`]. No lock is shared.
//!
//! ## Restarts
//!
//! The trace is the log. [`Engine::restore`] takes the traces of runs this node started and
//! that never ended, and rebuilds their state machines from the signed objects in them (see
//! [`Requester::restore`]): offers already received count, timers are re-armed from the
//! signed timestamps, an award already sent is followed, not repeated. Only a round whose
//! deadline passed while the node was down ends, with that reason. Composite runs (workflow,
//! parallel) are not rebuilt: they end with a signed `intent-failed` event, reason
//! `requester-restarted`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use pvl_protocol::{
    Body, EventType, Keypair, Kind, ObjectId, PatternHint, PublicKey, SignedObject, TraceId, attr,
};
use tracing::debug;

use crate::action::{Action, Input, Outcome};
use crate::admission::{Refusal, RefusalCounts, Refused, Verdict};
use crate::consensus::{RulePolicy, Voter};
use crate::coordination::Coordination;
use crate::directory::Directory;
use crate::error::{PatternError, Result};
use crate::parallel::ParallelRun;
use crate::provider::Provider;
use crate::request::{Planned, Request};
use crate::requester::{RequestSpec, Requester};
use crate::select::ReliabilitySource;
use crate::util::{EventText, sign, sign_event};
use crate::workflow::WorkflowRun;

/// Finished outcomes remembered by default (the oldest are forgotten first).
pub const DEFAULT_REMEMBERED_OUTCOMES: usize = 4096;

/// Most finished traces kept per capability for its history (see
/// [`Engine::take_finished`]).
const MAX_UNSEEN_FINISHED: usize = 1024;

/// Why a run was ended on restart instead of resumed (the `reason` attribute of its
/// `intent-failed` event).
pub const RESTARTED: &str = attr::REQUESTER_RESTARTED;

/// How this node's committee member decides its votes.
#[derive(Debug, Clone)]
pub enum VoteMode {
    /// By these rules, inside the engine.
    Rules(RulePolicy),
    /// Outside the engine: [`Action::DecideVote`] out, [`Input::VoteDecided`] in.
    External,
}

/// What an engine is made of.
pub struct EngineConfig {
    /// The node's signing key.
    pub key: Keypair,
    /// The provider, when the node serves capabilities.
    pub provider: Option<Provider>,
    /// How committee votes are decided.
    pub votes: VoteMode,
    /// How many finished outcomes are remembered.
    pub remembered_outcomes: usize,
}

impl EngineConfig {
    /// A requester-only engine for `key` that votes by the default rules.
    pub fn new(key: Keypair) -> Self {
        EngineConfig {
            key,
            provider: None,
            votes: VoteMode::Rules(RulePolicy::default()),
            remembered_outcomes: DEFAULT_REMEMBERED_OUTCOMES,
        }
    }

    /// With `provider`.
    pub fn with_provider(mut self, provider: Provider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// With `votes`.
    pub fn with_votes(mut self, votes: VoteMode) -> Self {
        self.votes = votes;
        self
    }
}

/// Counters of one engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Runs started by [`Engine::request`].
    pub started: u64,
    /// Runs rebuilt by [`Engine::restore`].
    pub restored: u64,
    /// Runs finished (completed or failed).
    pub finished: u64,
    /// Objects received that every state machine refused (not recorded).
    pub refused: u64,
    /// The same refusals, by reason.
    pub refusals: RefusalCounts,
    /// Objects delivered inside the engine (sent by this node to itself).
    pub local: u64,
    /// Timers fired.
    pub timers: u64,
}

/// One run this node coordinates.
struct Run {
    coordination: Box<dyn Coordination>,
    capability: String,
    /// The intent's budget and input size, for what the directory says when nobody offered.
    budget: Option<u64>,
    input_size: u64,
}

/// The coordination engine of one node (see the module documentation).
pub struct Engine {
    key: Keypair,
    provider: Option<Provider>,
    /// Capability ads seen on the network.
    directory: Directory,
    voter: Voter,
    external_votes: bool,
    runs: HashMap<TraceId, Run>,
    outcomes: HashMap<TraceId, Outcome>,
    outcome_order: VecDeque<TraceId>,
    max_outcomes: usize,
    unseen_finished: HashMap<String, Vec<TraceId>>,
    timers: BinaryHeap<Reverse<(u64, crate::TimerToken)>>,
    stats: EngineStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("signer", &self.key.public())
            .field("runs", &self.runs.len())
            .field("timers", &self.timers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Engine {
    /// An engine made of `config`.
    pub fn new(config: EngineConfig) -> Self {
        let (voter, external_votes) = match config.votes {
            VoteMode::Rules(rules) => (Voter::new(config.key.clone(), rules), false),
            VoteMode::External => (Voter::new(config.key.clone(), RulePolicy::default()), true),
        };
        Engine {
            key: config.key,
            provider: config.provider,
            directory: Directory::default(),
            voter,
            external_votes,
            runs: HashMap::new(),
            outcomes: HashMap::new(),
            outcome_order: VecDeque::new(),
            max_outcomes: config.remembered_outcomes.max(1),
            unseen_finished: HashMap::new(),
            timers: BinaryHeap::new(),
            stats: EngineStats::default(),
        }
    }

    /// The node's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// The node's signing key.
    pub fn key(&self) -> &Keypair {
        &self.key
    }

    /// The provider, when the node serves capabilities.
    pub fn provider(&self) -> Option<&Provider> {
        self.provider.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// How many runs are in progress.
    pub fn running(&self) -> usize {
        self.runs.len()
    }

    /// Whether this node coordinates `trace` now.
    pub fn is_running(&self, trace: &TraceId) -> bool {
        self.runs.contains_key(trace)
    }

    /// How `trace` ended, when it ended in this process and is still remembered.
    pub fn outcome(&self, trace: &TraceId) -> Option<&Outcome> {
        self.outcomes.get(trace)
    }

    /// The traces of runs for `capability` finished since the last call (for its history).
    pub fn take_finished(&mut self, capability: &str) -> Vec<TraceId> {
        self.unseen_finished.remove(capability).unwrap_or_default()
    }

    /// When [`Engine::handle_timeout`] must be called next, unix ms.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Starts coordinating a planned request: signs its root intent (and the `run-spec`
    /// event that lets a restart rebuild it, and the `pattern-chosen` event when the node
    /// chose the pattern); returns the trace id and the actions (the publication first).
    pub fn request(&mut self, planned: Planned, now_ms: u64) -> Result<(TraceId, Vec<Action>)> {
        let Planned {
            request,
            choice,
            history,
        } = planned;
        let capability = request.capability().to_string();
        // A history is a reliability source: the same Arc, seen through its supertrait.
        let reliability: Arc<dyn ReliabilitySource + Send + Sync> = history;
        let spec = match &request {
            Request::ContractNet(spec) => Some(spec.clone()),
            _ => None,
        };
        let budget = spec.as_ref().and_then(|s| s.constraints.max_cost);
        let input_size = spec.as_ref().map_or(0, |s| s.input.size());
        // The providers this node knows of (other than itself): whom a directed first intent
        // may go to (SPEC.md §4.3).
        let me = self.key.public();
        let known: Vec<PublicKey> = self
            .directory
            .providers_of(&capability, now_ms)
            .into_iter()
            .map(|listing| listing.provider)
            .filter(|provider| *provider != me)
            .collect();
        let mut run: Box<dyn Coordination> = match request {
            Request::ContractNet(spec) => Box::new(
                Requester::new(self.key.clone(), spec)
                    .with_history(reliability)
                    .with_candidates(known),
            ),
            Request::Workflow {
                workflow,
                input,
                template,
            } => Box::new(
                WorkflowRun::new(self.key.clone(), workflow, input)
                    .map_err(|e| PatternError::Invalid(format!("workflow: {e}")))?
                    .with_template(template)
                    .with_history(reliability),
            ),
            Request::Parallel { spec, input } => Box::new(
                ParallelRun::new(self.key.clone(), spec, input)
                    .map_err(|e| PatternError::Invalid(format!("parallel: {e}")))?
                    .with_history(reliability),
            ),
        };
        let mut actions = run.start(now_ms)?;
        let trace = run
            .trace()
            .ok_or_else(|| PatternError::Invalid("the run did not sign an intent".into()))?;
        if let Some(choice) = &choice {
            actions.push(Action::Record(choice.to_event(
                &self.key,
                trace,
                &[trace],
                now_ms,
            )?));
        }
        if let Some(spec) = &spec {
            actions.push(Action::Record(run_spec_event(
                &self.key,
                trace,
                spec,
                run.asked().to_vec(),
                now_ms,
            )?));
        }
        self.stats.started += 1;
        self.runs.insert(
            trace,
            Run {
                coordination: run,
                capability,
                budget,
                input_size,
            },
        );
        Ok((trace, self.process(None, actions, now_ms)))
    }

    /// Feeds one input: an object received (decoded and verified by the driver), an
    /// executor's progress or result, or a vote decided outside the engine. Refusals change
    /// nothing and are counted.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Vec<Action> {
        let actions = match input {
            Input::Received(object) => self.route(object, now_ms).1,
            Input::Timer(token) => self.fire(token, now_ms),
            Input::Progress {
                task,
                fraction_bps,
                message,
            } => match self.provider.as_mut() {
                Some(p) => p
                    .report_progress(task, fraction_bps, &message, now_ms)
                    .unwrap_or_else(|e| {
                        debug!("progress ignored: {e}");
                        Vec::new()
                    }),
                None => Vec::new(),
            },
            Input::Executed { task, result } => match self.provider.as_mut() {
                Some(p) => p.on_executed(task, result, now_ms).unwrap_or_else(|e| {
                    debug!("execution result ignored: {e}");
                    Vec::new()
                }),
                None => Vec::new(),
            },
            Input::OfferDecided { .. } | Input::OfferRefused { .. } => {
                match self.provider.as_mut() {
                    Some(p) => p.handle(input, now_ms).unwrap_or_else(|e| {
                        debug!("bid answer or offer refusal ignored: {e}");
                        Vec::new()
                    }),
                    None => Vec::new(),
                }
            }
            // Reports on a run's own sends (from the acknowledgements): to that run.
            Input::AwardRefused { trace, .. } | Input::IntentDeclined { trace, .. } => {
                match self.runs.get_mut(&trace) {
                    Some(run) => run.coordination.handle(input, now_ms).unwrap_or_else(|e| {
                        debug!("acknowledgement report ignored: {e}");
                        Vec::new()
                    }),
                    None => Vec::new(),
                }
            }
            Input::VoteDecided { proposal, decision } => {
                match self.voter.on_decided(proposal, decision, now_ms) {
                    Ok(actions) => actions,
                    Err(e) => {
                        debug!("no vote: {e}");
                        Vec::new()
                    }
                }
            }
        };
        self.process(None, actions, now_ms)
    }

    /// Fires every timer due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((_, token))) = self.timers.pop() else {
                break;
            };
            let actions = self.fire(token, now_ms);
            out.extend(self.process(None, actions, now_ms));
        }
        out
    }

    /// Gives up on `trace`: its run ends with a `cancelled` failure.
    pub fn cancel(&mut self, trace: &TraceId, reason: &str, now_ms: u64) -> Result<Vec<Action>> {
        let Some(run) = self.runs.get_mut(trace) else {
            return Err(PatternError::Invalid(format!(
                "this node does not coordinate trace {}",
                trace.short()
            )));
        };
        let actions = run.coordination.cancel(reason, now_ms)?;
        Ok(self.process(None, actions, now_ms))
    }

    /// Rebuilds the runs of `traces` (each the objects of one trace this node started and
    /// that never ended, in any order) after a restart; returns the actions to carry out now
    /// (re-armed timers stay inside; a selection or a failure that is due comes out).
    /// A trace that cannot be rebuilt ends with `intent-failed` (`requester-restarted`).
    pub fn restore(
        &mut self,
        traces: Vec<Vec<SignedObject>>,
        history: Arc<dyn crate::request::History>,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        for objects in traces {
            let Some(root) = objects
                .iter()
                .find(|o| o.kind() == Kind::Intent && o.is_root())
                .cloned()
            else {
                continue;
            };
            if root.signer() != self.key.public() || self.runs.contains_key(&root.id()) {
                continue;
            }
            let trace = root.id();
            let Body::Intent(intent) = root.body() else {
                continue;
            };
            let composite = matches!(
                intent.pattern,
                PatternHint::Workflow | PatternHint::Parallel
            );
            let rebuilt = if composite {
                Err(PatternError::Invalid(
                    "workflow and parallel runs are not resumed".into(),
                ))
            } else {
                let reliability: Arc<dyn ReliabilitySource + Send + Sync> = history.clone();
                Requester::restore(self.key.clone(), &objects, reliability, now_ms)
            };
            match rebuilt {
                Ok((requester, actions)) => {
                    self.stats.restored += 1;
                    self.runs.insert(
                        trace,
                        Run {
                            capability: intent.capability.clone(),
                            coordination: Box::new(requester),
                            budget: intent.constraints.max_cost,
                            input_size: intent.input.size(),
                        },
                    );
                    out.extend(self.process(None, actions, now_ms));
                }
                Err(e) => {
                    debug!(trace = %trace.short(), "not resumed: {e}");
                    match abandon(&self.key, &objects, &root, &e.to_string(), now_ms) {
                        Ok(event) => out.push(Action::Record(event)),
                        Err(e) => debug!(trace = %trace.short(), "cannot end the run: {e}"),
                    }
                }
            }
        }
        out
    }

    /// Feeds an object received **directly** from a peer and returns the admission verdict
    /// with the actions. `Ok` means a state machine of this node admitted it (it is recorded by
    /// one of the actions, or was a harmless repeat); `Err` carries the typed reason, nothing
    /// changed and nothing is recorded. Capability ads are refused here: they travel by gossip
    /// ([`Engine::handle`] with [`Input::Received`]). An intent sent directly (a directed
    /// intent, SPEC.md §4.3) is admitted when this node's provider takes it (offers, or asks
    /// its agent program), and refused [`Refusal::NotBidding`] with the provider's reason
    /// otherwise.
    pub fn admit(&mut self, object: SignedObject, now_ms: u64) -> (Verdict, Vec<Action>) {
        match object.kind() {
            Kind::CapabilityAd => {
                let refused = Refused::new(
                    Refusal::GossipOnly,
                    "capability ads travel by gossip, never directly",
                );
                self.count_refusal(refused.refusal);
                (Err(refused), Vec::new())
            }
            Kind::Intent => self.admit_intent(object, now_ms),
            _ => {
                let (verdict, actions) = self.route(object, now_ms);
                (verdict, self.process(None, actions, now_ms))
            }
        }
    }

    /// A directed intent: admitted when the provider bids (it records the intent), refused
    /// with the provider's reason otherwise (nothing recorded, nothing observed).
    fn admit_intent(&mut self, object: SignedObject, now_ms: u64) -> (Verdict, Vec<Action>) {
        let id = object.id();
        let (_, actions) = self.route(object.clone(), now_ms);
        let taken = actions.iter().any(|a| match a {
            Action::Record(o) | Action::DecideOffer(o) => o.id() == id,
            _ => false,
        });
        if taken {
            return (Ok(()), self.process(None, actions, now_ms));
        }
        let detail = match &self.provider {
            Some(provider) => match provider.evaluate(&object, now_ms) {
                crate::provider::BidDecision::Decline(reason) => reason,
                crate::provider::BidDecision::Bid(_) => "the provider made no offer".to_string(),
            },
            None => "this node serves no capability".to_string(),
        };
        let refused = Refused::new(Refusal::NotBidding, detail);
        self.count_refusal(refused.refusal);
        (Err(refused), Vec::new())
    }

    fn count_refusal(&mut self, refusal: Refusal) {
        self.stats.refused += 1;
        self.stats.refusals.count(refusal);
    }

    /// Routes a received object to the state machines it belongs to; the verdict is the
    /// refusal of the state machine whose rule applies when none admitted it.
    fn route(&mut self, object: SignedObject, now_ms: u64) -> (Verdict, Vec<Action>) {
        let mut actions = Vec::new();
        let mut taken = false;
        let kind = object.kind();
        let trace = object.trace_id();
        let mine = object.signer() == self.key.public();
        // The refusal of the state machine whose rule governs this object.
        let mut run_refused: Option<PatternError> = None;
        let mut other_refused: Option<PatternError> = None;
        let has_run = self.runs.contains_key(&trace);
        if let Some(run) = self.runs.get_mut(&trace) {
            match run
                .coordination
                .handle(Input::Received(object.clone()), now_ms)
            {
                Ok(more) => {
                    taken = true;
                    actions.extend(more);
                }
                Err(e) => {
                    debug!(id = %object.id().short(), "the run refused the object: {e}");
                    run_refused = Some(e);
                }
            }
        }
        match kind {
            Kind::CapabilityAd => {
                // Kept in the directory, never recorded: an ad is no conversation's.
                taken = self.directory.observe(&object, now_ms);
            }
            Kind::Proposal => {
                let result = if self.external_votes {
                    self.voter.prepare(&object, now_ms).map(|again| {
                        again.unwrap_or_else(|| vec![Action::DecideVote(object.clone())])
                    })
                } else {
                    self.voter.on_proposal(object.clone(), now_ms)
                };
                match result {
                    Ok(more) => {
                        taken = true;
                        actions.extend(more);
                    }
                    Err(e) => {
                        debug!(id = %object.id().short(), "no vote on the proposal: {e}");
                        other_refused = Some(e);
                    }
                }
            }
            Kind::Intent | Kind::TaskStart | Kind::Reject | Kind::Receipt => {
                if let Some(provider) = self.provider.as_mut() {
                    match provider.on_object(object.clone(), now_ms) {
                        Ok(more) => {
                            taken = true;
                            actions.extend(more);
                        }
                        Err(e) => {
                            debug!(id = %object.id().short(), "the provider refused the object: {e}");
                            other_refused = Some(e);
                        }
                    }
                }
                if kind == Kind::Intent {
                    taken = true;
                    let id = object.id();
                    let recorded = actions
                        .iter()
                        .any(|a| matches!(a, Action::Record(o) if o.id() == id));
                    if !recorded && !mine {
                        // Observed: an intent on the network this node does not bid on.
                        actions.insert(0, Action::Observe(object.clone()));
                    }
                }
            }
            _ => {}
        }
        if taken {
            return (Ok(()), actions);
        }
        let refused = self.refusal(&object, has_run, run_refused, other_refused);
        self.count_refusal(refused.refusal);
        (Err(refused), actions)
    }

    /// The typed refusal of an object nobody admitted: the error of the state machine whose
    /// rule governs it, or, when no such state machine exists here, why not.
    fn refusal(
        &self,
        object: &SignedObject,
        has_run: bool,
        run_refused: Option<PatternError>,
        other_refused: Option<PatternError>,
    ) -> Refused {
        let kind = object.kind();
        let mine = object.signer() == self.key.public();
        // Who decides: awards and rejects are the provider's, proposals the voter's, this
        // node's own (countersigned) receipts the provider's; the rest belongs to the run.
        let provider_side = matches!(kind, Kind::TaskStart | Kind::Reject | Kind::Proposal)
            || (kind == Kind::Receipt && mine);
        let governing = if provider_side {
            other_refused.or(run_refused)
        } else {
            run_refused.or(other_refused)
        };
        if let Some(e) = governing {
            let refusal = e.refusal(kind);
            let detail = match e {
                PatternError::Refused(r) => r.detail,
                other => other.to_string(),
            };
            return Refused::new(refusal, detail);
        }
        let trace = object.trace_id();
        let ended = self.outcomes.contains_key(&trace);
        let short = trace.short();
        match kind {
            Kind::TaskStart | Kind::Reject => Refused::new(
                Refusal::NotYourOffer,
                "this node serves no capability and makes no offers",
            ),
            Kind::Offer if ended => Refused::new(
                Refusal::IntentClosed,
                format!("the round of trace {short} is over"),
            ),
            Kind::Offer => Refused::new(
                Refusal::UnknownIntent,
                format!("this node coordinates no trace {short}"),
            ),
            Kind::TaskProgress | Kind::TaskDone | Kind::Receipt | Kind::Event if ended => {
                Refused::new(
                    Refusal::TaskNotLive,
                    format!("the run of trace {short} is over"),
                )
            }
            Kind::Vote if ended => Refused::new(
                Refusal::NoOpenBallot,
                format!("the run of trace {short} is over"),
            ),
            _ if !has_run => Refused::new(
                Refusal::UnknownTrace,
                format!("this node takes no part in trace {short}"),
            ),
            _ => Refused::new(
                Refusal::Unexpected,
                format!("a {kind} is not expected in trace {short}"),
            ),
        }
    }

    /// Routes a timer to the run of its trace.
    fn fire(&mut self, token: crate::TimerToken, now_ms: u64) -> Vec<Action> {
        let Some(run) = self.runs.get_mut(&token.trace) else {
            return Vec::new();
        };
        self.stats.timers += 1;
        run.coordination
            .handle(Input::Timer(token), now_ms)
            .unwrap_or_else(|e| {
                debug!("timer ignored: {e}");
                Vec::new()
            })
    }

    /// Keeps timers, remembers outcomes, delivers objects sent to this node itself, and
    /// passes everything else on in order. `delivered` is the object being delivered inside
    /// the engine, whose record by the receiver is dropped (its signer recorded it).
    fn process(
        &mut self,
        delivered: Option<ObjectId>,
        actions: Vec<Action>,
        now_ms: u64,
    ) -> Vec<Action> {
        let me = self.key.public();
        let mut out = Vec::with_capacity(actions.len());
        let mut local = Vec::new();
        for action in actions {
            match action {
                Action::SetTimer { at_ms, token } => self.timers.push(Reverse((at_ms, token))),
                Action::Record(o) if Some(o.id()) == delivered => {}
                Action::Send { to, object } if to == me => local.push(object),
                Action::Finished(mut outcome) => {
                    self.explain_no_offers(&mut outcome, now_ms);
                    self.finished(&outcome);
                    out.push(Action::Finished(outcome));
                }
                other => out.push(other),
            }
        }
        for object in local {
            self.stats.local += 1;
            let id = object.id();
            let (_, more) = self.route(object, now_ms);
            out.extend(self.process(Some(id), more, now_ms));
        }
        out
    }

    /// A round that got no offer says what the directory knows about its capability.
    fn explain_no_offers(&self, outcome: &mut Outcome, now_ms: u64) {
        let Outcome::Failed(failure) = outcome else {
            return;
        };
        if failure.reason != crate::FailureReason::NoOffers {
            return;
        }
        let Some(run) = self.runs.get(&failure.trace) else {
            return;
        };
        let known = self
            .directory
            .summary(&run.capability, run.input_size, run.budget, now_ms);
        failure.detail = format!("{} ({known})", failure.detail);
    }

    /// The capabilities advertised on the network, as far as this node has seen.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Takes in one of this node's own capability ads (gossip does not deliver them back).
    pub fn observe_ad(&mut self, ad: &SignedObject, now_ms: u64) -> bool {
        self.directory.observe(ad, now_ms)
    }

    fn finished(&mut self, outcome: &Outcome) {
        let trace = outcome.trace();
        if let Some(run) = self.runs.remove(&trace) {
            self.stats.finished += 1;
            let unseen = self.unseen_finished.entry(run.capability).or_default();
            if unseen.len() >= MAX_UNSEEN_FINISHED {
                unseen.remove(0);
            }
            unseen.push(trace);
        }
        while self.outcome_order.len() >= self.max_outcomes {
            if let Some(old) = self.outcome_order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        if self.outcomes.insert(trace, outcome.clone()).is_none() {
            self.outcome_order.push_back(trace);
        }
    }
}

/// The `run-spec` event: the coordination knobs of a contract-net run that its intent does
/// not carry, recorded in the trace (never sent) so that a restart can rebuild the run.
fn run_spec_event(
    key: &Keypair,
    trace: TraceId,
    spec: &RequestSpec,
    asked: Vec<PublicKey>,
    now_ms: u64,
) -> Result<SignedObject> {
    let mut run = pvl_protocol::RunSpec::from(spec);
    run.avoid.truncate(crate::requester::MAX_AVOID_LISTED);
    run.asked = asked;
    sign(
        key,
        Some(trace),
        &[trace],
        now_ms,
        Body::Event(run.to_event(trace)),
    )
}

/// The `intent-failed` event that ends a run this node does not resume after a restart.
fn abandon(
    key: &Keypair,
    objects: &[SignedObject],
    root: &SignedObject,
    why: &str,
    now_ms: u64,
) -> Result<SignedObject> {
    // The latest intent of the run (a re-publication, or a composite's part), else the root.
    let latest = objects
        .iter()
        .filter(|o| o.kind() == Kind::Intent && o.signer() == key.public())
        .max_by_key(|o| o.timestamp_ms())
        .unwrap_or(root);
    let mut parents = vec![latest.id()];
    if latest.id() != root.id() {
        parents.push(root.id());
    }
    sign_event(
        key,
        Some(root.id()),
        &parents,
        now_ms.max(latest.timestamp_ms()),
        EventText {
            event_type: EventType::IntentFailed,
            about: vec![root.id()],
            message: format!(
                "{RESTARTED}: the requester restarted and could not resume the run ({why})"
            ),
            attrs: vec![(attr::REASON.into(), RESTARTED.into())],
        },
    )
}
