//! An in-memory driver: one coordination (a [`Requester`], or any [`Coordination`] such as a
//! workflow or a parallel run), many [`Provider`]s and, optionally, the committee members'
//! [`Voter`]s on a simulated network with a simulated clock.
//!
//! It is what the node does, minus the sockets and the store: objects travel as wire bytes
//! and are decoded (signatures verified) on delivery, timers and executions are events on a
//! simulated timeline, every [`Action::Record`] is collected. Tests and the `auction_1000`
//! example use it; it is also a template for the node's event loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use pvl_protocol::{Body, Kind, ObjectId, Payload, PublicKey, SignedObject};

use crate::action::{Action, Input, Outcome, TimerToken};
use crate::consensus::Voter;
use crate::coordination::Coordination;
use crate::provider::Provider;
use crate::requester::Requester;

/// What a simulated executor does with a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecPlan {
    /// Finish after `after_ms` with `result`, reporting progress halfway when `progress`.
    Finish {
        /// Execution time, ms.
        after_ms: u64,
        /// The output, or the failure reason.
        result: Result<Payload, String>,
        /// Whether to send one progress report halfway.
        progress: bool,
    },
    /// Never finish and never report (a silent provider).
    Hang,
}

/// Decides how each provider executes each task: `(provider, task, capability, input)`.
pub type Executor = Box<dyn FnMut(&PublicKey, &ObjectId, &str, &Payload) -> ExecPlan>;

/// Decides whether committee member `member` answers the proposal of voting round `round`
/// (`false`: the proposal is lost and the member stays silent).
pub type VoterPlan = Box<dyn FnMut(&PublicKey, u32) -> bool>;

enum Event {
    ToRequester(Vec<u8>),
    ToProvider(usize, Vec<u8>),
    ToVoter(usize, Vec<u8>),
    Broadcast(Vec<u8>),
    Timer(TimerToken),
    Progress(usize, ObjectId),
    Executed(usize, ObjectId, Result<Payload, String>),
}

/// Counters of a simulation run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Objects delivered (and decoded) to some state machine.
    pub delivered: usize,
    /// Inputs a state machine refused (with the error text in [`Sim::errors`]).
    pub refused: usize,
    /// Events processed.
    pub events: usize,
}

/// The simulation, of a requester (`C` = [`Requester`]) or any other [`Coordination`].
pub struct Sim<C: Coordination = Requester> {
    /// The simulated clock, unix ms.
    pub now_ms: u64,
    latency_ms: u64,
    requester: C,
    requester_key: PublicKey,
    providers: Vec<Provider>,
    index: HashMap<PublicKey, usize>,
    executor: Executor,
    voters: Vec<Voter>,
    voter_index: HashMap<PublicKey, usize>,
    voter_plan: VoterPlan,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    /// Every object recorded by any state machine, in order.
    pub recorded: Vec<SignedObject>,
    /// Errors returned by state machines, as text.
    pub errors: Vec<String>,
    /// Counters.
    pub stats: SimStats,
    outcome: Option<Outcome>,
}

impl<C: Coordination> std::fmt::Debug for Sim<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now_ms", &self.now_ms)
            .field("providers", &self.providers.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<C: Coordination> Sim<C> {
    /// A simulation of `requester` (not yet started, signing as `requester_key`) and
    /// `providers`, with a one-way network latency of `latency_ms`.
    pub fn new(
        requester: C,
        requester_key: PublicKey,
        providers: Vec<Provider>,
        latency_ms: u64,
        executor: Executor,
    ) -> Self {
        let index = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.public(), i))
            .collect();
        Sim {
            now_ms: 0,
            latency_ms,
            requester,
            requester_key,
            providers,
            index,
            executor,
            voters: Vec::new(),
            voter_index: HashMap::new(),
            voter_plan: Box::new(|_, _| true),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            recorded: Vec::new(),
            errors: Vec::new(),
            stats: SimStats::default(),
            outcome: None,
        }
    }

    /// Adds the committee members: proposals sent to a member's key go to its [`Voter`],
    /// unless `plan` says the member stays silent in that round.
    pub fn with_voters(mut self, voters: Vec<Voter>, plan: VoterPlan) -> Self {
        self.voter_index = voters
            .iter()
            .enumerate()
            .map(|(i, v)| (v.public(), i))
            .collect();
        self.voters = voters;
        self.voter_plan = plan;
        self
    }

    /// The requester (the coordination being simulated).
    pub fn requester(&self) -> &C {
        &self.requester
    }

    /// The providers.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The outcome, once the requester finished.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Starts the requester at `now_ms` and runs until it finishes, nothing is left to do, or
    /// the clock passes `until_ms`. Returns the outcome, if any.
    pub fn run(&mut self, now_ms: u64, until_ms: u64) -> Option<&Outcome> {
        self.now_ms = now_ms;
        match self.requester.start(now_ms) {
            Ok(actions) => self.apply(None, actions),
            Err(e) => self.errors.push(format!("start: {e}")),
        }
        while self.outcome.is_none() {
            let Some(Reverse((at, seq))) = self.queue.pop() else {
                break;
            };
            if at > until_ms {
                break;
            }
            self.now_ms = self.now_ms.max(at);
            if let Some(event) = self.events.remove(&seq) {
                self.stats.events += 1;
                self.dispatch(event);
            }
        }
        self.outcome.as_ref()
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq)));
    }

    fn decode(&mut self, bytes: &[u8]) -> Option<SignedObject> {
        match SignedObject::decode(bytes) {
            Ok(o) => {
                self.stats.delivered += 1;
                Some(o)
            }
            Err(e) => {
                self.errors.push(format!("decode: {e}"));
                None
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        let now = self.now_ms;
        match event {
            Event::ToRequester(bytes) => {
                if let Some(o) = self.decode(&bytes) {
                    let r = self.requester.handle(Input::Received(o), now);
                    self.after(None, r);
                }
            }
            Event::Timer(token) => {
                let r = self.requester.handle(Input::Timer(token), now);
                self.after(None, r);
            }
            Event::ToProvider(i, bytes) => {
                if let Some(o) = self.decode(&bytes)
                    && let Some(p) = self.providers.get_mut(i)
                {
                    let r = p.on_object(o, now);
                    self.after(Some(i), r);
                }
            }
            Event::ToVoter(i, bytes) => {
                if let Some(o) = self.decode(&bytes) {
                    let round = match o.body() {
                        Body::Proposal(p) => p.round,
                        _ => 0,
                    };
                    let Some(member) = self.voters.get(i).map(Voter::public) else {
                        return;
                    };
                    if !(self.voter_plan)(&member, round) {
                        return;
                    }
                    if let Some(v) = self.voters.get_mut(i) {
                        let r = v.on_proposal(o, now);
                        self.after(None, r);
                    }
                }
            }
            Event::Broadcast(bytes) => {
                for i in 0..self.providers.len() {
                    if let Some(o) = self.decode(&bytes)
                        && let Some(p) = self.providers.get_mut(i)
                    {
                        let r = p.on_object(o, now);
                        self.after(Some(i), r);
                    }
                }
            }
            Event::Progress(i, task) => {
                if let Some(p) = self.providers.get_mut(i) {
                    let r = p.report_progress(task, Some(5_000), "halfway", now);
                    self.after(Some(i), r);
                }
            }
            Event::Executed(i, task, result) => {
                if let Some(p) = self.providers.get_mut(i) {
                    let r = p.on_executed(task, result, now);
                    self.after(Some(i), r);
                }
            }
        }
    }

    fn after(&mut self, from: Option<usize>, result: crate::Result<Vec<Action>>) {
        match result {
            Ok(actions) => self.apply(from, actions),
            Err(e) => {
                self.stats.refused += 1;
                self.errors.push(e.to_string());
            }
        }
    }

    /// Carries out the actions of the requester (`from = None`) or provider `from`.
    fn apply(&mut self, from: Option<usize>, actions: Vec<Action>) {
        let arrive = self.now_ms + self.latency_ms;
        for action in actions {
            match action {
                Action::Publish(o) => self.schedule(arrive, Event::Broadcast(o.into_bytes())),
                Action::Send { to, object } => {
                    let voter = self.voter_index.get(&to).copied();
                    if object.kind() == Kind::Proposal
                        && let Some(i) = voter
                    {
                        self.schedule(arrive, Event::ToVoter(i, object.into_bytes()));
                    } else if to == self.requester_key {
                        self.schedule(arrive, Event::ToRequester(object.into_bytes()));
                    } else if let Some(&i) = self.index.get(&to) {
                        self.schedule(arrive, Event::ToProvider(i, object.into_bytes()));
                    } else {
                        self.errors
                            .push(format!("send to unknown peer {}", to.short()));
                    }
                }
                Action::SetTimer { at_ms, token } => self.schedule(at_ms, Event::Timer(token)),
                Action::Record(o) => self.recorded.push(o),
                Action::Finished(outcome) => self.outcome = Some(outcome),
                Action::Execute {
                    task,
                    capability,
                    input,
                    ..
                } => {
                    let Some(i) = from else { continue };
                    let Some(key) = self.providers.get(i).map(Provider::public) else {
                        continue;
                    };
                    match (self.executor)(&key, &task, &capability, &input) {
                        ExecPlan::Finish {
                            after_ms,
                            result,
                            progress,
                        } => {
                            if progress {
                                self.schedule(self.now_ms + after_ms / 2, Event::Progress(i, task));
                            }
                            self.schedule(self.now_ms + after_ms, Event::Executed(i, task, result));
                        }
                        ExecPlan::Hang => {}
                    }
                }
            }
        }
    }
}
