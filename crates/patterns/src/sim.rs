//! In-memory drivers on a simulated network with a simulated clock.
//!
//! * [`Network`]: N [`Engine`]s, exactly what N nodes run, with objects travelling as wire
//!   bytes between them (decoded and verified on delivery), executors as events on the
//!   timeline, and crashes: a node's engine can be dropped and rebuilt from the objects it
//!   recorded ([`Network::restart`]).
//! * [`Sim`]: one coordination state machine with providers and voters around it, for unit
//!   tests of a single pattern.
//!
//! [`Sim`], an in-memory driver of one coordination (a [`Requester`], or any [`Coordination`] such as a
//! workflow or a parallel run), many [`Provider`]s and, optionally, the committee members'
//! [`Voter`]s on a simulated network with a simulated clock.
//!
//! It is what the node does, minus the sockets and the store: objects travel as wire bytes
//! and are decoded (signatures verified) on delivery, timers and executions are events on a
//! simulated timeline, every [`Action::Record`] is collected. Tests and the `auction_1000`
//! example use it; it is also a template for the node's event loop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use pvl_protocol::{Body, Kind, ObjectId, Payload, PublicKey, SignedObject, TraceId};

use crate::action::{Action, Input, Outcome, TimerToken};
use crate::consensus::Voter;
use crate::coordination::Coordination;
use crate::engine::Engine;
use crate::provider::Provider;
use crate::request::Planned;
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
                // Voters in this harness decide by their own policy.
                Action::DecideVote(_) | Action::DecideOffer(_) | Action::Observe(_) => {}
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

// ----- N engines ---------------------------------------------------------------------------

/// What travels or happens on the simulated network of [`Network`].
enum NetEvent {
    /// Wire bytes arrive at node `to`: sent directly (admitted by [`Engine::admit`], as a
    /// node does) or broadcast ([`Engine::handle`]).
    Deliver {
        to: usize,
        bytes: Vec<u8>,
        direct: bool,
        from: usize,
    },
    /// The acknowledgement of an object that node `to` sent directly comes back refused (a
    /// directed intent, an award, an offer), and what that tells its engine.
    Refused { to: usize, input: Box<Input> },
    /// An executor of node `node` reports progress on `task`.
    Progress { node: usize, task: ObjectId },
    /// An executor of node `node` finished `task`.
    Executed {
        node: usize,
        task: ObjectId,
        result: Result<Payload, String>,
    },
}

/// N nodes' [`Engine`]s on a simulated network (see the module documentation): the node's
/// own coordination core, minus sockets and the store.
pub struct Network {
    /// The simulated clock, unix ms.
    pub now_ms: u64,
    latency_ms: u64,
    engines: Vec<Engine>,
    index: HashMap<PublicKey, usize>,
    executor: Executor,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, NetEvent>,
    seq: u64,
    /// Nodes that are down: whatever arrives for them is lost.
    down: Vec<bool>,
    /// Every object each node recorded, in order (its trace store).
    pub recorded: Vec<Vec<SignedObject>>,
    /// Messages put on the network (a publication counts once per receiver).
    pub messages: u64,
    /// Objects that failed to decode on delivery, as text.
    pub errors: Vec<String>,
    /// Direct messages refused by their receiver's admission, as `<code>: <detail>`.
    pub refusals: Vec<String>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("now_ms", &self.now_ms)
            .field("nodes", &self.engines.len())
            .field("messages", &self.messages)
            .finish()
    }
}

impl Network {
    /// `engines` on a network with one-way latency `latency_ms`; `executor` plans every
    /// execution a provider starts. The clock starts at `now_ms`.
    pub fn new(engines: Vec<Engine>, latency_ms: u64, executor: Executor, now_ms: u64) -> Self {
        let index = engines
            .iter()
            .enumerate()
            .map(|(i, e)| (e.public(), i))
            .collect();
        let n = engines.len();
        Network {
            now_ms,
            latency_ms,
            engines,
            index,
            executor,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            down: vec![false; n],
            recorded: vec![Vec::new(); n],
            messages: 0,
            errors: Vec::new(),
            refusals: Vec::new(),
        }
    }

    /// Node `i`'s engine.
    pub fn engine(&self, i: usize) -> &Engine {
        &self.engines[i]
    }

    /// Starts a request on node `i`; returns its trace.
    pub fn request(&mut self, i: usize, planned: Planned) -> crate::Result<TraceId> {
        let now = self.now_ms;
        let (trace, actions) = self.engines[i].request(planned, now)?;
        self.apply(i, actions);
        Ok(trace)
    }

    /// Takes node `i` down: its engine's memory is gone and messages to it are lost.
    pub fn crash(&mut self, i: usize) {
        self.down[i] = true;
    }

    /// Brings node `i` back with `engine` (same key, fresh memory) and rebuilds its open runs
    /// from the objects it recorded before, as the node does on start.
    pub fn restart(&mut self, i: usize, engine: Engine) {
        let mut by_trace: HashMap<TraceId, Vec<SignedObject>> = HashMap::new();
        for o in &self.recorded[i] {
            let objects = by_trace.entry(o.trace_id()).or_default();
            // The store keeps one copy per id: the countersigned one when there is one.
            match objects.iter_mut().find(|x| x.id() == o.id()) {
                Some(x) if o.is_countersigned() => *x = o.clone(),
                Some(_) => {}
                None => objects.push(o.clone()),
            }
        }
        self.engines[i] = engine;
        self.down[i] = false;
        let now = self.now_ms;
        let actions = self.engines[i].restore(
            by_trace.into_values().collect(),
            std::sync::Arc::new(crate::request::NoRecords),
            now,
        );
        self.apply(i, actions);
    }

    /// Runs until `done(self)` holds, nothing is left to happen, or the clock passes
    /// `until_ms`. Returns whether `done` held.
    pub fn run_until(&mut self, until_ms: u64, done: impl Fn(&Network) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let next_event = self.queue.peek().map(|Reverse((at, _))| *at);
            let next_timer = self
                .engines
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.down[*i])
                .filter_map(|(i, e)| e.poll_timeout().map(|at| (at, i)))
                .min();
            let timer_first = match (next_event, next_timer) {
                (None, None) => return false,
                (Some(e), Some((t, _))) => t < e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if timer_first {
                let Some((at, i)) = next_timer else {
                    return false;
                };
                if at > until_ms {
                    return false;
                }
                self.now_ms = self.now_ms.max(at);
                let now = self.now_ms;
                let actions = self.engines[i].handle_timeout(now);
                self.apply(i, actions);
            } else {
                let Some(Reverse((at, seq))) = self.queue.pop() else {
                    return false;
                };
                if at > until_ms {
                    self.queue.push(Reverse((at, seq)));
                    return false;
                }
                self.now_ms = self.now_ms.max(at);
                if let Some(event) = self.events.remove(&seq) {
                    self.dispatch(event);
                }
            }
        }
    }

    fn schedule(&mut self, at: u64, event: NetEvent) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq)));
    }

    fn dispatch(&mut self, event: NetEvent) {
        let now = self.now_ms;
        let (node, input) = match event {
            NetEvent::Deliver {
                to,
                bytes,
                direct,
                from,
            } => match SignedObject::decode(&bytes) {
                Ok(object) if direct => {
                    if self.down[to] {
                        return;
                    }
                    let (trace, id, kind) = (object.trace_id(), object.id(), object.kind());
                    let (verdict, actions) = self.engines[to].admit(object, now);
                    if let Err(refused) = verdict {
                        // What the sender learns from the refused acknowledgement, as a node's
                        // actor (awards, offers) or API (directed intents) tells its engine.
                        let receiver = self.engines[to].public();
                        let told =
                            Input::after_refusal(kind, trace, id, receiver, refused.to_string());
                        if let Some(input) = told {
                            self.schedule(
                                now + self.latency_ms,
                                NetEvent::Refused {
                                    to: from,
                                    input: Box::new(input),
                                },
                            );
                        }
                        self.refusals.push(refused.to_string());
                    }
                    self.apply(to, actions);
                    return;
                }
                Ok(object) => (to, Input::Received(object)),
                Err(e) => {
                    self.errors.push(format!("decode: {e}"));
                    return;
                }
            },
            NetEvent::Progress { node, task } => (
                node,
                Input::Progress {
                    task,
                    fraction_bps: Some(5_000),
                    message: "halfway".into(),
                },
            ),
            NetEvent::Executed { node, task, result } => (node, Input::Executed { task, result }),
            NetEvent::Refused { to, input } => (to, *input),
        };
        if self.down[node] {
            return;
        }
        let actions = self.engines[node].handle(input, now);
        self.apply(node, actions);
    }

    /// Carries out node `i`'s actions.
    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        let arrive = self.now_ms + self.latency_ms;
        for action in actions {
            match action {
                Action::Publish(o) => {
                    for to in 0..self.engines.len() {
                        if to != i {
                            self.messages += 1;
                            let bytes = o.bytes().to_vec();
                            self.schedule(
                                arrive,
                                NetEvent::Deliver {
                                    to,
                                    bytes,
                                    direct: false,
                                    from: i,
                                },
                            );
                        }
                    }
                }
                Action::Send { to, object } => match self.index.get(&to) {
                    Some(&to) => {
                        self.messages += 1;
                        self.schedule(
                            arrive,
                            NetEvent::Deliver {
                                to,
                                bytes: object.into_bytes(),
                                direct: true,
                                from: i,
                            },
                        );
                    }
                    None => self
                        .errors
                        .push(format!("send to unknown peer {}", to.short())),
                },
                Action::Record(o) => self.recorded[i].push(o),
                Action::Execute {
                    task,
                    capability,
                    input,
                    ..
                } => {
                    let key = self.engines[i].public();
                    match (self.executor)(&key, &task, &capability, &input) {
                        ExecPlan::Finish {
                            after_ms,
                            result,
                            progress,
                        } => {
                            if progress {
                                self.schedule(
                                    self.now_ms + after_ms / 2,
                                    NetEvent::Progress { node: i, task },
                                );
                            }
                            self.schedule(
                                self.now_ms + after_ms,
                                NetEvent::Executed {
                                    node: i,
                                    task,
                                    result,
                                },
                            );
                        }
                        ExecPlan::Hang => {}
                    }
                }
                // The engine keeps its timers; outcomes stay readable through it.
                Action::SetTimer { .. } | Action::Finished(_) => {}
                // Votes in this network are decided by the engines' rules.
                Action::DecideVote(_) | Action::DecideOffer(_) | Action::Observe(_) => {}
            }
        }
    }
}
