//! Drives the sans-I/O coordination state machines of `pvl-patterns` inside a running node.
//!
//! The [`Coordinator`] holds this node's provider (when it serves capabilities through
//! executors), its committee [`Voter`], and one coordination run per intent it published: a
//! contract-net [`Requester`], a [`pvl_patterns::workflow::WorkflowRun`] or a
//! [`pvl_patterns::parallel::ParallelRun`], all behind [`Coordination`]. It never does I/O
//! itself: every method takes an input and returns the state machines' actions, which the
//! daemon performs ([`crate::daemon::perform`]): publish or send objects, run an executor, set
//! a timer, record an object.
//!
//! Routing is by trace id: every object of a trace this node coordinates goes to its run (a
//! composite routes further to its stage or shard); intents, awards, rejects and countersigned
//! receipts go to the provider; proposals go to the voter. Timers carry their trace id too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pvl_patterns::{
    Action, Coordination, Input, Outcome, ProposalTerms, Provider, RequestSpec, Requester,
    RulePolicy, TimerToken, VoteDecision, VotePolicy, Voter,
};
use pvl_protocol::{Body, Keypair, ObjectId, Payload, Proposal, SignedObject, TraceId};
use tokio::sync::oneshot;
use tracing::debug;

use crate::executor::ExecutorConfig;

/// One intent this node coordinates as requester.
struct Active {
    run: Box<dyn Coordination>,
    /// The capability asked for (the workflow's name for a workflow).
    capability: String,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

/// Decisions an `exec` vote handler made, waiting for the voter to sign them, keyed by the
/// proposal's subject and round.
pub type Decided = Arc<Mutex<HashMap<(ObjectId, u32), VoteDecision>>>;

/// The node's vote policy: the `[consensus]` rules, or the decisions of its `exec` handler
/// (made before the voter is asked; see [`Coordinator::on_decided_proposal`]).
struct NodePolicy {
    rules: RulePolicy,
    exec: bool,
    decided: Decided,
}

impl VotePolicy for NodePolicy {
    fn decide(&self, terms: &ProposalTerms, proposal: &Proposal) -> VoteDecision {
        if !self.exec {
            return self.rules.decide(terms, proposal);
        }
        self.decided
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(proposal.subject, proposal.round))
            .unwrap_or(VoteDecision {
                approve: false,
                reason: "the vote handler gave no decision".into(),
            })
    }
}

/// The node's coordination state.
pub struct Coordinator {
    key: Keypair,
    provider: Option<Provider>,
    voter: Voter,
    decided: Decided,
    executors: HashMap<String, ExecutorConfig>,
    runs: HashMap<TraceId, Active>,
    /// Outcomes of intents finished before anyone waited for them (bounded).
    finished: HashMap<TraceId, Outcome>,
    /// Traces of runs finished since their capability's history was last brought up to
    /// date, by capability (bounded: the oldest are dropped past [`MAX_UNSEEN_FINISHED`]).
    unseen_finished: HashMap<String, Vec<TraceId>>,
}

const MAX_REMEMBERED_OUTCOMES: usize = 1024;

/// Most finished traces kept per capability for its history (a capability asked for often
/// enough has its history brought up to date long before).
const MAX_UNSEEN_FINISHED: usize = 1024;

impl Coordinator {
    /// A coordinator for `key`, serving the capabilities of `executors` (none: requester only),
    /// voting by `rules` (or, with `exec_votes`, by the decisions handed to
    /// [`Coordinator::on_decided_proposal`]).
    pub fn new(
        key: Keypair,
        executors: Vec<ExecutorConfig>,
        max_concurrent: usize,
        rules: RulePolicy,
        exec_votes: bool,
    ) -> Self {
        let provider = (!executors.is_empty()).then(|| {
            executors
                .iter()
                .fold(Provider::new(key.clone(), max_concurrent), |p, e| {
                    p.serve(
                        e.capability.clone(),
                        pvl_patterns::OfferPolicy::fixed(e.price, e.eta_ms, e.reliability_bps),
                    )
                })
        });
        let decided: Decided = Arc::default();
        let voter = Voter::new(
            key.clone(),
            NodePolicy {
                rules,
                exec: exec_votes,
                decided: decided.clone(),
            },
        );
        Coordinator {
            key,
            provider,
            voter,
            decided,
            executors: executors
                .into_iter()
                .map(|e| (e.capability.clone(), e))
                .collect(),
            runs: HashMap::new(),
            finished: HashMap::new(),
            unseen_finished: HashMap::new(),
        }
    }

    /// The node's signing key.
    pub fn key(&self) -> &Keypair {
        &self.key
    }

    /// The executor of a capability.
    pub fn executor(&self, capability: &str) -> Option<&ExecutorConfig> {
        self.executors.get(capability)
    }

    /// Starts coordinating a contract-net intent; returns its trace id and the first actions
    /// (the intent's publication among them).
    pub fn request(
        &mut self,
        spec: RequestSpec,
        now_ms: u64,
    ) -> Result<(TraceId, Vec<Action>), String> {
        let capability = spec.capability.clone();
        self.start(
            Box::new(Requester::new(self.key.clone(), spec)),
            capability,
            now_ms,
        )
    }

    /// The traces of runs for `capability` finished since the last call (for its history).
    pub fn take_finished(&mut self, capability: &str) -> Vec<TraceId> {
        self.unseen_finished.remove(capability).unwrap_or_default()
    }

    /// Starts any coordination run (contract-net, workflow, parallel) for `capability`;
    /// returns its trace id and the first actions.
    pub fn start(
        &mut self,
        mut run: Box<dyn Coordination>,
        capability: String,
        now_ms: u64,
    ) -> Result<(TraceId, Vec<Action>), String> {
        let actions = run.start(now_ms).map_err(|e| e.to_string())?;
        let trace = run.trace().ok_or("the run did not sign an intent")?;
        self.runs.insert(
            trace,
            Active {
                run,
                capability,
                waiters: Vec::new(),
            },
        );
        Ok((trace, self.after(actions)))
    }

    /// A receiver of the outcome of `trace`, or `None` when this node does not coordinate it.
    pub fn wait(&mut self, trace: &TraceId) -> Option<oneshot::Receiver<Outcome>> {
        let (tx, rx) = oneshot::channel();
        if let Some(outcome) = self.finished.get(trace) {
            let _ = tx.send(outcome.clone());
            return Some(rx);
        }
        self.runs.get_mut(trace)?.waiters.push(tx);
        Some(rx)
    }

    /// An object arrived from the network (or from this node to itself, e.g. a proposal to
    /// a committee it sits on).
    pub fn on_object(&mut self, object: &SignedObject, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(active) = self.runs.get_mut(&object.trace_id()) {
            match active.run.handle(Input::Received(object.clone()), now_ms) {
                Ok(more) => actions.extend(more),
                Err(e) => debug!(id = %object.id().short(), "requester ignored the object: {e}"),
            }
        }
        match object.body() {
            Body::Proposal(_) => match self.voter.on_proposal(object.clone(), now_ms) {
                Ok(more) => actions.extend(more),
                Err(e) => debug!(id = %object.id().short(), "no vote on the proposal: {e}"),
            },
            Body::Intent(_) | Body::TaskStart(_) | Body::Reject(_) | Body::Receipt(_) => {
                if let Some(provider) = self.provider.as_mut() {
                    match provider.handle(Input::Received(object.clone()), now_ms) {
                        Ok(more) => actions.extend(more),
                        Err(e) => {
                            debug!(id = %object.id().short(), "provider ignored the object: {e}")
                        }
                    }
                }
            }
            _ => {}
        }
        self.after(actions)
    }

    /// Votes on a proposal whose decision the node's `exec` handler made.
    pub fn on_decided_proposal(
        &mut self,
        proposal: &SignedObject,
        decision: VoteDecision,
        now_ms: u64,
    ) -> Vec<Action> {
        if let Body::Proposal(p) = proposal.body() {
            self.decided
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert((p.subject, p.round), decision);
        }
        match self.voter.on_proposal(proposal.clone(), now_ms) {
            Ok(actions) => self.after(actions),
            Err(e) => {
                debug!(id = %proposal.id().short(), "no vote on the proposal: {e}");
                Vec::new()
            }
        }
    }

    /// A timer fired.
    pub fn on_timer(&mut self, token: TimerToken, now_ms: u64) -> Vec<Action> {
        let Some(active) = self.runs.get_mut(&token.trace) else {
            return Vec::new();
        };
        let actions = active
            .run
            .handle(Input::Timer(token), now_ms)
            .unwrap_or_else(|e| {
                debug!("timer ignored: {e}");
                Vec::new()
            });
        self.after(actions)
    }

    /// An executor finished a task this node was awarded.
    pub fn on_executed(
        &mut self,
        task: ObjectId,
        result: Result<Payload, String>,
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(provider) = self.provider.as_mut() else {
            return Vec::new();
        };
        let actions = provider
            .on_executed(task, result, now_ms)
            .unwrap_or_else(|e| {
                debug!("execution result ignored: {e}");
                Vec::new()
            });
        self.after(actions)
    }

    /// Handles `Finished` actions here (waiters are told, the run is dropped) and passes the
    /// rest on.
    fn after(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::with_capacity(actions.len());
        for action in actions {
            match action {
                Action::Finished(outcome) => {
                    let trace = outcome.trace();
                    if let Some(active) = self.runs.remove(&trace) {
                        let unseen = self.unseen_finished.entry(active.capability).or_default();
                        if unseen.len() >= MAX_UNSEEN_FINISHED {
                            unseen.remove(0);
                        }
                        unseen.push(trace);
                        for waiter in active.waiters {
                            let _ = waiter.send(outcome.clone());
                        }
                    }
                    if self.finished.len() >= MAX_REMEMBERED_OUTCOMES {
                        self.finished.clear();
                    }
                    self.finished.insert(trace, outcome);
                }
                other => rest.push(other),
            }
        }
        rest
    }
}
