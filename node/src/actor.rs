//! The node actor: one task that owns the coordination [`Engine`] and performs what it asks.
//!
//! ```text
//!   network events ─┐
//!   API commands ───┼──► select! ──► Engine::handle / request / handle_timeout ──► actions
//!   sleep_until(poll_timeout) ─┤                                                  │
//!   finished jobs ──┘                                                             ▼
//!        ▲            Record: one store batch per pass (the store writer, see [`crate::recorder`])
//!        │            Publish / Send / Execute / DecideVote: a job in a bounded JoinSet
//!        └────────────  whose result (executed, vote decided) comes back as an engine input
//! ```
//!
//! Nothing else touches the engine, so it needs no lock. The loop never waits on the network,
//! an executor or a vote handler: those run as jobs in a [`JoinSet`] of at most [`MAX_JOBS`]
//! (when it is full the actor waits for one to finish before starting another, so a burst
//! slows the node down instead of growing without bound). Commands arrive on a bounded channel
//! with oneshot replies, like pvl-net's own `Client`.
//!
//! **Admission.** An object that arrived directly goes to [`Engine::admit`]; its verdict is
//! the acknowledgement the sender waits for ([`pvl_net::Client::acknowledge`]): `Accepted`, or
//! `Refused("<code>: <detail>")` with the engine's typed [`pvl_patterns::Refusal`]. The
//! acknowledgements of one batch of network events are sent after the batch's records went to
//! the store writer; a refused object is never recorded.
//!
//! **Capability ads.** The actor signs one ad per executor and gossips them when it starts,
//! at half their lifetime, and shortly after peers join a topic (at most once per five
//! seconds, or 125 ms per ad in its directory if that is longer: 50 s with 100 nodes of 4
//! ads); its own ads go into the engine's directory directly.
//!
//! **Recording rule.** The actor stores exactly the objects the engine returns in
//! [`Action::Record`], and nothing else: the state machine that signs or admits an object
//! records it once (see [`pvl_patterns::engine`]). An object received from the network is
//! stored with its origin (`gossip` or `direct`) and sender; everything else as `local`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pvl_api::Event;
use pvl_net::{Ack, NetEvent, PeerId, Via};
use pvl_patterns::{Action, Engine, EngineStats, Input, Outcome, Planned, Refusal};
use pvl_protocol::{ObjectId, PublicKey, SignedObject, TraceId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::executor::{ExecutorConfig, ExecutorKind};
use crate::recorder::{Entry, Recorder};

/// Most jobs (sends, publications, executions, vote handlers) running at once.
pub const MAX_JOBS: usize = 4096;

/// Commands queued for the actor, at most.
pub const COMMAND_QUEUE: usize = 256;

/// Most network events handled in one pass (their objects are recorded in one batch).
const NET_BATCH: usize = 256;

/// A run started: its trace, its first publications (the caller sends them, to learn whether
/// they went out) and, when asked for, a receiver of its outcome.
#[derive(Debug)]
pub struct Started {
    /// The trace id (the root intent's id).
    pub trace: TraceId,
    /// The intents to publish now.
    pub publications: Vec<SignedObject>,
    /// The intent to send directly now, and to whom (a directed intent, SPEC.md §4.3).
    pub directed: Vec<(PublicKey, SignedObject)>,
    /// The outcome, when it comes.
    pub outcome: Option<oneshot::Receiver<Outcome>>,
}

/// What the actor can be asked.
enum Command {
    Start {
        planned: Box<Planned>,
        wait: bool,
        reply: oneshot::Sender<Result<Started, String>>,
    },
    Wait {
        trace: TraceId,
        reply: oneshot::Sender<Option<oneshot::Receiver<Outcome>>>,
    },
    TakeFinished {
        capability: String,
        reply: oneshot::Sender<Vec<TraceId>>,
    },
    Stats {
        reply: oneshot::Sender<(EngineStats, usize)>,
    },
    /// An input for the engine from outside the network: an agent program's progress, a
    /// directed intent's decline reported by the publish call. `handled`, when given, is
    /// answered once the engine has handled it and its sends are queued.
    Input {
        input: Box<Input>,
        handled: Option<oneshot::Sender<()>>,
    },
    Cancel {
        trace: TraceId,
        reason: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Directory {
        reply: oneshot::Sender<Vec<pvl_patterns::Listing>>,
    },
}

/// The handle the control API holds.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

/// The actor stopped (the node is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the node is shutting down")]
pub struct Stopped;

impl Handle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Starts a planned request; `wait`: also a receiver of its outcome.
    pub async fn start(
        &self,
        planned: Planned,
        wait: bool,
    ) -> Result<Result<Started, String>, Stopped> {
        self.ask(|reply| Command::Start {
            planned: Box::new(planned),
            wait,
            reply,
        })
        .await
    }

    /// A receiver of the outcome of `trace`, or `None` when this process does not coordinate
    /// it (nor remembers its end).
    pub async fn wait(
        &self,
        trace: TraceId,
    ) -> Result<Option<oneshot::Receiver<Outcome>>, Stopped> {
        self.ask(|reply| Command::Wait { trace, reply }).await
    }

    /// The engine's counters and the number of jobs running.
    pub async fn stats(&self) -> Result<(EngineStats, usize), Stopped> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// An agent program's progress on `task`: the engine signs it and sends it to the
    /// requester. Returns once the engine has handled it, so that the program's answer, which
    /// comes back by another path (the executor job), cannot overtake it: the done report would
    /// end the task and the progress would be dropped.
    pub async fn progress(
        &self,
        task: ObjectId,
        fraction_bps: Option<u16>,
        message: String,
    ) -> Result<(), Stopped> {
        self.ask(|reply| Command::Input {
            input: Box::new(Input::Progress {
                task,
                fraction_bps,
                message,
            }),
            handled: Some(reply),
        })
        .await
    }

    /// `provider` declined the directed intent `intent` of `trace` in its acknowledgement, or
    /// could not be reached: its run closes the offer window early once every provider asked
    /// has answered ([`Input::IntentDeclined`]).
    pub async fn declined(
        &self,
        trace: TraceId,
        intent: ObjectId,
        provider: pvl_protocol::PublicKey,
        reason: String,
    ) -> Result<(), Stopped> {
        self.input(Input::IntentDeclined {
            trace,
            intent,
            provider,
            reason,
        })
        .await
    }

    /// Hands `input` to the engine, without waiting for what it does with it.
    async fn input(&self, input: Input) -> Result<(), Stopped> {
        self.commands
            .send(Command::Input {
                input: Box::new(input),
                handled: None,
            })
            .await
            .map_err(|_| Stopped)
    }

    /// Ends the run of `trace` now, with `reason` (signed into its ending event).
    pub async fn cancel(
        &self,
        trace: TraceId,
        reason: String,
    ) -> Result<Result<(), String>, Stopped> {
        self.ask(|reply| Command::Cancel {
            trace,
            reason,
            reply,
        })
        .await
    }

    /// The capability ads this node knows (its own included) that have not lapsed.
    pub async fn directory(&self) -> Result<Vec<pvl_patterns::Listing>, Stopped> {
        self.ask(|reply| Command::Directory { reply }).await
    }

    /// The traces of runs for `capability` finished since the last call (for its history).
    pub async fn take_finished(&self, capability: &str) -> Result<Vec<TraceId>, Stopped> {
        let capability = capability.to_string();
        self.ask(|reply| Command::TakeFinished { capability, reply })
            .await
    }
}

/// What the actor needs besides the engine.
pub struct Parts {
    /// The network.
    pub net: pvl_net::Client,
    /// Network events.
    pub net_events: mpsc::Receiver<NetEvent>,
    /// The store writer.
    pub recorder: Arc<Recorder>,
    /// Node events for the server-sent-events stream.
    pub events: broadcast::Sender<pvl_api::Event>,
    /// Executors by capability.
    pub executors: HashMap<String, ExecutorConfig>,
    /// The `[consensus] exec` vote handler (empty: the engine votes by its rules).
    pub vote_exec: Vec<String>,
    /// How long the vote handler may take.
    pub vote_timeout: Duration,
    /// Work for agent programs (`kind = "agent"` executors, and votes when `vote_agent`).
    pub agents: Arc<crate::agents::AgentHub>,
    /// Votes are decided by a voter program (`[consensus] agent = true`).
    pub vote_agent: bool,
    /// The key this node's capability ads are signed with.
    pub key: pvl_protocol::Keypair,
    /// Lifetime of this node's capability ads (renewed at half of it).
    pub ad_ttl: Duration,
    /// Most tasks run at once (stated in the ads).
    pub max_concurrent: u32,
    /// Prometheus metrics, counted as the engine's actions are carried out.
    pub metrics: crate::metrics::Metrics,
}

/// A job's result: an input for the engine, or nothing.
type JobResult = Option<Input>;

struct Actor {
    engine: Engine,
    parts: Parts,
    jobs: JoinSet<JobResult>,
    waiters: HashMap<TraceId, Vec<oneshot::Sender<Outcome>>>,
    /// When this node's capability ads last went out.
    advertised: Option<tokio::time::Instant>,
    /// A round of ads due because peers joined a topic since the last one.
    readvertise_at: Option<tokio::time::Instant>,
    /// Peers seen joining one of this node's topics.
    joined: JoinMemory,
    /// The runs this node started, for their latencies (at most [`MAX_WATCHED`]).
    watched: HashMap<TraceId, Watched>,
    /// Reports on a task kept in order per peer.
    send_order: SendOrder,
}

/// Keeps the reports on one task (`task_progress`, `task_done`, receipt) to one peer in
/// order: each waits until the previous one's exchange ended (acknowledged, refused or
/// failed), so a requester sees a task's progress before its `task_done` and receipt (SPEC
/// §14.5). Everything else, and the reports on other tasks, go concurrently: a parallel run
/// of 72 shards in one trace still sends its offers, awards and rejects at once.
///
/// An entry is the completion signal of the last send queued for its (peer, task): the
/// sending job holds the sender half and drops it when its exchange ends. Entries whose send
/// ended are pruned when the map outgrows twice the entries pruning kept, so it stays
/// bounded by the sends in flight (at most [`MAX_JOBS`]) plus a margin.
#[derive(Default)]
struct SendOrder {
    last: HashMap<(PublicKey, ObjectId), oneshot::Receiver<()>>,
    /// Entries left after the last pruning.
    kept: usize,
}

impl SendOrder {
    /// Queues a report on `task` for `to`: returns what it must wait for before sending (the
    /// previous report on that task to that peer, if still being sent) and the signal to
    /// drop when it is done.
    fn queue(
        &mut self,
        to: pvl_protocol::PublicKey,
        task: ObjectId,
    ) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, signal) = oneshot::channel();
        let previous = self.last.insert((to, task), signal);
        if self.last.len() > 2 * self.kept.max(64) {
            self.last.retain(|_, signal| {
                matches!(signal.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
            self.kept = self.last.len();
        }
        (previous, done)
    }
}

/// A run this node started, as the metrics see it.
struct Watched {
    /// Its pattern's name.
    pattern: &'static str,
    /// When it was requested.
    started: std::time::Instant,
    /// Whether its first award was seen.
    awarded: bool,
}

/// Most runs whose latencies are watched at once; runs beyond are counted but not timed.
const MAX_WATCHED: usize = 65_536;

/// Least time between two rounds of capability ads brought on by peers joining topics, in a
/// small network.
const READVERTISE_AFTER: Duration = Duration::from_secs(5);

/// ... and per ad in the node's directory: in a larger network peers join topics all the time
/// (every new connection is a join), so the rounds are spaced by the network's size. Every
/// node's rounds then add up to about 8 ads per second network-wide whatever its size (with
/// 100 nodes, a round every 5 s on every node was 80 ads/s, each verified by all 100 nodes:
/// both cores of the test machine, idle).
const READVERTISE_PER_AD: Duration = Duration::from_millis(125);

/// How long after a peer joins a topic the round of ads goes out (so that one round serves
/// the peers joining together).
const READVERTISE_DELAY: Duration = Duration::from_millis(200);

/// Most peers remembered as having joined a topic; when full, those seen longer than the
/// memory ago are forgotten, then all.
const MAX_REMEMBERED_JOINS: usize = 4096;

/// Which peers joining this node's topics bring a round of capability ads.
///
/// Only a peer not seen joining within the memory (half an ad lifetime, the renewal period:
/// 5 minutes by default) counts: one seen since has this node's current ads already. Every
/// new connection is a join, and connections come and go all the time (a requester dials the
/// providers it awards, a connection one too many is closed and opened again later): in a
/// 100-node testnet, rounds of ads for such re-joins went on at about 8 ads per second
/// network-wide, each verified by every node, more gossip than the intents themselves.
#[derive(Default)]
struct JoinMemory {
    seen: HashMap<PeerId, std::time::Instant>,
}

impl JoinMemory {
    /// Whether `peer` joining at `now` is news (not seen within `memory`); remembers it.
    fn is_news(&mut self, peer: PeerId, now: std::time::Instant, memory: Duration) -> bool {
        if self.seen.len() >= MAX_REMEMBERED_JOINS && !self.seen.contains_key(&peer) {
            self.seen
                .retain(|_, at| now.saturating_duration_since(*at) < memory);
            if self.seen.len() >= MAX_REMEMBERED_JOINS {
                self.seen.clear();
            }
        }
        let news = self
            .seen
            .get(&peer)
            .is_none_or(|at| now.saturating_duration_since(*at) >= memory);
        self.seen.insert(peer, now);
        news
    }
}

/// Starts the actor on `engine` (with `initial` actions to carry out first, e.g. what
/// [`Engine::restore`] returned); it runs until `shutdown` completes and returns when its
/// jobs are done.
pub fn spawn(
    engine: Engine,
    parts: Parts,
    initial: Vec<Action>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> (Handle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let mut actor = Actor {
        engine,
        parts,
        jobs: JoinSet::new(),
        waiters: HashMap::new(),
        advertised: None,
        readvertise_at: None,
        joined: JoinMemory::default(),
        watched: HashMap::new(),
        send_order: SendOrder::default(),
    };
    let task = tokio::spawn(
        async move {
            actor.perform(initial, &HashMap::new()).await;
            actor.run(rx, shutdown).await;
        }
        .instrument(info_span!("node")),
    );
    (Handle { commands: tx }, task)
}

impl Actor {
    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        // This node's capability ads go out now and again at half their lifetime.
        let renew = (self.parts.ad_ttl / 2).max(Duration::from_millis(500));
        let mut advertise = tokio::time::interval(renew);
        advertise.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let timeout = self.engine.poll_timeout();
            let sleep = async {
                match timeout {
                    Some(at) => {
                        let wait = at.saturating_sub(pvl_net::now_ms());
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(command) = commands.recv() => self.on_command(command).await,
                Some(first) = self.parts.net_events.recv() => {
                    let mut batch = vec![first];
                    while batch.len() < NET_BATCH {
                        match self.parts.net_events.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                    self.on_net_events(batch).await;
                }
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    match done {
                        Ok(Some(input)) => {
                            let actions = self.engine.handle(input, pvl_net::now_ms());
                            self.perform(actions, &HashMap::new()).await;
                        }
                        Ok(None) => {}
                        Err(e) => warn!("a job failed: {e}"),
                    }
                }
                _ = sleep => {
                    let actions = self.engine.handle_timeout(pvl_net::now_ms());
                    self.perform(actions, &HashMap::new()).await;
                }
                _ = advertise.tick() => self.advertise().await,
                _ = sleep_until_some(self.readvertise_at) => {
                    self.readvertise_at = None;
                    self.advertise().await;
                }
            }
        }
        info!(
            jobs = self.jobs.len(),
            runs = self.engine.running(),
            "coordination stopped"
        );
        // Sends and executions in flight finish (their results are not used any more).
        while self.jobs.join_next().await.is_some() {}
    }

    /// Signs and gossips one capability ad per executor, and lists them in this node's own
    /// directory (gossip does not deliver a node's messages back to it).
    async fn advertise(&mut self) {
        self.advertised = Some(tokio::time::Instant::now());
        let now = pvl_net::now_ms();
        let ttl = u64::try_from(self.parts.ad_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut executors: Vec<&ExecutorConfig> = self.parts.executors.values().collect();
        executors.sort_by(|a, b| a.capability.cmp(&b.capability));
        let mut ads = Vec::new();
        for e in executors {
            let (input, output) = match e.kind {
                ExecutorKind::Agent => {
                    ("decided by an agent program", "decided by an agent program")
                }
                _ => ("bytes", "bytes"),
            };
            match pvl_patterns::directory::advertise(
                &self.parts.key,
                &e.capability,
                pvl_protocol::PriceModel::Fixed(e.price),
                self.parts.max_concurrent,
                input,
                output,
                ttl,
                now,
            ) {
                Ok(ad) => ads.push(ad),
                Err(e) => warn!("cannot sign a capability ad: {e}"),
            }
        }
        for ad in ads {
            self.engine.observe_ad(&ad, now);
            let net = self.parts.net.clone();
            self.job(async move {
                if let Err(e) = net.publish(ad).await {
                    debug!("capability ad not published: {e}");
                }
                None
            })
            .await;
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Start {
                planned,
                wait,
                reply,
            } => {
                let now = pvl_net::now_ms();
                let pattern = planned.request.pattern().name();
                match self.engine.request(*planned, now) {
                    Ok((trace, actions)) => {
                        self.parts.metrics.round_started(pattern);
                        if self.watched.len() < MAX_WATCHED {
                            self.watched.insert(
                                trace,
                                Watched {
                                    pattern,
                                    started: std::time::Instant::now(),
                                    awarded: false,
                                },
                            );
                        }
                        // The first intent goes out from the caller, who learns whether it
                        // reached anyone: published, or sent to the providers it addresses.
                        let mut publications = Vec::new();
                        let mut directed = Vec::new();
                        let mut rest = Vec::new();
                        for action in actions {
                            match action {
                                Action::Publish(o) => publications.push(o),
                                Action::Send { to, object }
                                    if object.kind() == pvl_protocol::Kind::Intent =>
                                {
                                    directed.push((to, object));
                                }
                                other => rest.push(other),
                            }
                        }
                        let outcome = wait.then(|| self.waiter(trace)).flatten();
                        self.perform(rest, &HashMap::new()).await;
                        let _ = reply.send(Ok(Started {
                            trace,
                            publications,
                            directed,
                            outcome,
                        }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            Command::Wait { trace, reply } => {
                let _ = reply.send(self.waiter(trace));
            }
            Command::TakeFinished { capability, reply } => {
                let _ = reply.send(self.engine.take_finished(&capability));
            }
            Command::Stats { reply } => {
                let _ = reply.send((self.engine.stats(), self.jobs.len()));
            }
            Command::Input { input, handled } => {
                let actions = self.engine.handle(*input, pvl_net::now_ms());
                self.perform(actions, &HashMap::new()).await;
                if let Some(handled) = handled {
                    let _ = handled.send(());
                }
            }
            Command::Directory { reply } => {
                let now = pvl_net::now_ms();
                let listed = self
                    .engine
                    .directory()
                    .list(now)
                    .into_iter()
                    .cloned()
                    .collect();
                let _ = reply.send(listed);
            }
            Command::Cancel {
                trace,
                reason,
                reply,
            } => match self.engine.cancel(&trace, &reason, pvl_net::now_ms()) {
                Ok(actions) => {
                    self.perform(actions, &HashMap::new()).await;
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
        }
    }

    /// A receiver of `trace`'s outcome (at once when it is known).
    fn waiter(&mut self, trace: TraceId) -> Option<oneshot::Receiver<Outcome>> {
        let (tx, rx) = oneshot::channel();
        if let Some(outcome) = self.engine.outcome(&trace) {
            let _ = tx.send(outcome.clone());
            return Some(rx);
        }
        if !self.engine.is_running(&trace) {
            return None;
        }
        self.waiters.entry(trace).or_default().push(tx);
        Some(rx)
    }

    async fn on_net_events(&mut self, events: Vec<NetEvent>) {
        let now = pvl_net::now_ms();
        let mut origins: HashMap<ObjectId, (&'static str, PeerId)> = HashMap::new();
        let mut actions = Vec::new();
        let mut subscribed = false;
        // The acknowledgements of the direct messages of this batch, sent once their objects
        // are handed to the store writer.
        let mut acks = Vec::new();
        for event in events {
            match event {
                NetEvent::Object {
                    from,
                    via,
                    object,
                    ack,
                } => {
                    let origin = match via {
                        Via::Gossip { .. } => "gossip",
                        Via::Direct => "direct",
                    };
                    origins.insert(object.id(), (origin, from));
                    if via != Via::Direct {
                        actions.extend(self.engine.handle(Input::Received(*object), now));
                        continue;
                    }
                    // Admission: the engine's verdict is the acknowledgement the sender sees.
                    let kind = object.kind();
                    let (verdict, more) = self.engine.admit(*object, now);
                    actions.extend(more);
                    let answer = match verdict {
                        Ok(()) => {
                            if kind == pvl_protocol::Kind::Offer {
                                self.parts.metrics.offers_received.inc();
                            }
                            Ack::Accepted
                        }
                        Err(refused) => {
                            self.parts
                                .metrics
                                .refused
                                .get_or_create(&crate::metrics::RefusedLabels {
                                    kind: kind.to_string(),
                                    reason: refused.refusal.code().to_owned(),
                                })
                                .inc();
                            info!(peer = %from, %kind, reason = %refused, "direct object refused");
                            if refused.refusal.is_offence() {
                                self.parts.net.report_offence(from, refused.to_string());
                            }
                            self.announce(Event::Refused {
                                peer: from.to_string(),
                                reason: refused.to_string(),
                                via: Some("direct".into()),
                                kind: Some(kind.to_string()),
                            });
                            Ack::Refused(refused.to_string())
                        }
                    };
                    if let Some(id) = ack {
                        acks.push((id, answer));
                    }
                }
                NetEvent::Refused { from, reason, .. } => {
                    self.announce(Event::Refused {
                        peer: from.to_string(),
                        reason,
                        via: None,
                        kind: None,
                    });
                }
                NetEvent::PeerConnected(peer) => {
                    self.announce(Event::PeerConnected {
                        peer: peer.to_string(),
                    });
                }
                NetEvent::PeerSubscribed { peer, .. } => {
                    let memory = self.parts.ad_ttl / 2;
                    subscribed |= self.joined.is_news(peer, std::time::Instant::now(), memory);
                }
                NetEvent::PeerBanned(ban) => {
                    self.announce(Event::PeerBanned {
                        peer: ban.peer.to_string(),
                        reason: ban.reason,
                        until_ms: ban.until_ms,
                    });
                }
                NetEvent::PeerDisconnected(peer) => {
                    self.announce(Event::PeerDisconnected {
                        peer: peer.to_string(),
                    });
                }
                NetEvent::ConnectionRefused { peer, reason } => {
                    self.announce(Event::ConnectionRefused {
                        peer: peer.map(|p| p.to_string()),
                        reason,
                    });
                }
                NetEvent::Listening(addr) => {
                    self.announce(Event::Listening {
                        addr: addr.to_string(),
                    });
                }
            }
        }
        self.perform(actions, &origins).await;
        // A peer that just joined a topic has seen none of this node's ads (a bootstrap node
        // that started alone has advertised to nobody): a round goes out a moment later, and
        // at most one every few seconds however many peers join.
        if subscribed && self.readvertise_at.is_none() {
            let soonest = tokio::time::Instant::now() + READVERTISE_DELAY;
            let ads = self.engine.directory().list(pvl_net::now_ms()).len();
            let spacing = READVERTISE_AFTER
                .max(READVERTISE_PER_AD * u32::try_from(ads).unwrap_or(u32::MAX))
                .min(self.parts.ad_ttl / 2);
            let allowed = self.advertised.map_or(soonest, |at| at + spacing);
            self.readvertise_at = Some(soonest.max(allowed));
        }
        for (id, ack) in acks {
            if let Err(e) = self.parts.net.acknowledge(id, ack) {
                warn!(%id, "could not acknowledge a direct message: {e}");
            }
        }
    }

    fn announce(&self, event: Event) {
        let _ = self.parts.events.send(event);
    }

    /// Carries out the engine's actions: records first (one store batch), then everything
    /// that waits as jobs, and tells the waiters of finished runs.
    async fn perform(
        &mut self,
        actions: Vec<Action>,
        origins: &HashMap<ObjectId, (&'static str, PeerId)>,
    ) {
        let mut records: Vec<Entry> = Vec::new();
        let mut rest = Vec::with_capacity(actions.len());
        for action in actions {
            match action {
                Action::Record(object) => {
                    if let pvl_protocol::Body::Reject(reject) = object.body()
                        && object.signer() == self.parts.key.public()
                    {
                        for (_, code, _) in reject.entries() {
                            self.parts
                                .metrics
                                .offers_rejected
                                .get_or_create(&crate::metrics::ReasonLabel {
                                    reason: code.name().to_owned(),
                                })
                                .inc();
                        }
                    }
                    if object.kind() == pvl_protocol::Kind::TaskStart
                        && let Some(run) = self.watched.get_mut(&object.trace_id())
                        && !run.awarded
                    {
                        run.awarded = true;
                        self.parts
                            .metrics
                            .intent_to_award
                            .get_or_create(&crate::metrics::PatternLabel {
                                pattern: run.pattern.to_owned(),
                            })
                            .observe(run.started.elapsed().as_secs_f64());
                    }
                    let entry = match origins.get(&object.id()) {
                        Some((origin, peer)) => (object, *origin, Some(*peer)),
                        None => (object, crate::recorder::LOCAL, None),
                    };
                    records.push(entry);
                }
                other => rest.push(other),
            }
        }
        if !records.is_empty() {
            self.parts.recorder.record(records);
        }
        for action in rest {
            match action {
                Action::Publish(object) => {
                    let net = self.parts.net.clone();
                    self.job(async move {
                        if let Err(e) = net.publish(object).await {
                            warn!("could not publish: {e}");
                        }
                        None
                    })
                    .await;
                }
                Action::Send { to, object } => {
                    let net = self.parts.net.clone();
                    let order = object
                        .body()
                        .task()
                        .map(|task| self.send_order.queue(to, task));
                    self.job(async move {
                        // Held until the exchange ended: the next report on this task to
                        // this peer waits for it.
                        let _done = match order {
                            Some((previous, done)) => {
                                if let Some(previous) = previous {
                                    // Ends when the previous send's job drops its signal.
                                    let _ = previous.await;
                                }
                                Some(done)
                            }
                            None => None,
                        };
                        let kind = object.kind();
                        let (trace, id) = (object.trace_id(), object.id());
                        let result = net.send_to_key(&to, object).await;
                        match result {
                            Ok(()) => None,
                            // The receiver's engine refused it (an award for an offer the
                            // provider no longer holds, an offer after the window closed):
                            // the requester reassigns now, the provider gives the offer up.
                            Err(pvl_net::NetError::Refused(reason))
                                if Refusal::of_reason(&reason).is_some() =>
                            {
                                info!(to = %to.short(), %kind, %reason, "sent object refused");
                                Input::after_refusal(kind, trace, id, to, reason)
                            }
                            Err(e) => {
                                warn!(to = %to.short(), %kind, "could not send: {e}");
                                None
                            }
                        }
                    })
                    .await;
                }
                Action::Execute {
                    task,
                    capability,
                    input,
                    deadline_ms,
                } => {
                    let executor = self.parts.executors.get(&capability).cloned();
                    let agents = self.parts.agents.clone();
                    let metrics = self.parts.metrics.clone();
                    self.job(async move {
                        let began = std::time::Instant::now();
                        let result = match executor {
                            Some(executor) if executor.kind == ExecutorKind::Agent => {
                                crate::executor::by_agent(&agents, &executor, task, &input, deadline_ms)
                                    .await
                            }
                            Some(executor) => crate::executor::run(&executor, &input).await,
                            None => Err(format!("no executor for `{capability}`")),
                        };
                        // Capabilities without an executor are refused at offer time; the
                        // label set stays this node's executors.
                        metrics
                            .executor_duration
                            .get_or_create(&crate::metrics::ExecutorLabels {
                                capability: capability.clone(),
                                result: if result.is_ok() { "ok" } else { "failed" }.to_owned(),
                            })
                            .observe(began.elapsed().as_secs_f64());
                        info!(task = %task.short(), %capability, ok = result.is_ok(), "task executed");
                        Some(Input::Executed { task, result })
                    })
                    .await;
                }
                Action::DecideVote(proposal) => {
                    let command = self.parts.vote_exec.clone();
                    let timeout = self.parts.vote_timeout;
                    let agents = self.parts.vote_agent.then(|| self.parts.agents.clone());
                    self.job(async move {
                        let decision = match agents {
                            Some(agents) => {
                                crate::executor::vote_by_agent(&agents, &proposal, timeout).await
                            }
                            None => crate::executor::vote(&command, &proposal, timeout).await,
                        };
                        Some(Input::VoteDecided { proposal, decision })
                    })
                    .await;
                }
                Action::DecideOffer(intent) => {
                    let agents = self.parts.agents.clone();
                    let executor = match intent.body() {
                        pvl_protocol::Body::Intent(i) => {
                            self.parts.executors.get(&i.capability).cloned()
                        }
                        _ => None,
                    };
                    self.job(async move {
                        let decision =
                            crate::executor::bid_by_agent(&agents, executor.as_ref(), &intent)
                                .await;
                        Some(Input::OfferDecided {
                            intent: intent.id(),
                            decision,
                        })
                    })
                    .await;
                }
                Action::Finished(outcome) => {
                    let trace = outcome.trace();
                    debug!(trace = %trace.short(), completed = outcome.is_completed(), "run finished");
                    self.count_outcome(&outcome);
                    for waiter in self.waiters.remove(&trace).unwrap_or_default() {
                        let _ = waiter.send(outcome.clone());
                    }
                }
                Action::Observe(intent) => {
                    // Not stored (SPEC.md §20): shown to whoever watches the event stream.
                    if self.parts.events.receiver_count() > 0 {
                        let (origin, peer) = origins
                            .get(&intent.id())
                            .map_or(("gossip", None), |(o, p)| (*o, Some(*p)));
                        self.announce(crate::recorder::object_event(&intent, origin, peer, false));
                    }
                }
                // The engine keeps its timers and records were written above.
                Action::SetTimer { .. } | Action::Record(_) => {}
            }
        }
    }

    /// Counts a finished run by pattern (and reason), and times its receipt.
    fn count_outcome(&mut self, outcome: &Outcome) {
        let run = self.watched.remove(&outcome.trace());
        let pattern = run.as_ref().map_or("resumed", |r| r.pattern).to_owned();
        let metrics = &self.parts.metrics;
        match outcome {
            Outcome::Completed(done) => {
                let label = crate::metrics::PatternLabel { pattern };
                if let Some(run) = &run
                    && done.receipt.is_some()
                {
                    metrics
                        .intent_to_receipt
                        .get_or_create(&label)
                        .observe(run.started.elapsed().as_secs_f64());
                }
                metrics.rounds_completed.get_or_create(&label).inc();
            }
            Outcome::Failed(failed) => {
                metrics
                    .rounds_failed
                    .get_or_create(&crate::metrics::FailureLabels {
                        pattern,
                        reason: failed.reason.name().to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Starts a job, first waiting for one to finish when [`MAX_JOBS`] are running.
    async fn job(&mut self, job: impl std::future::Future<Output = JobResult> + Send + 'static) {
        while self.jobs.len() >= MAX_JOBS {
            match self.jobs.join_next().await {
                Some(Ok(Some(input))) => {
                    // Fed to the engine at once; its actions wait for the next pass.
                    let actions = self.engine.handle(input, pvl_net::now_ms());
                    Box::pin(self.perform(actions, &HashMap::new())).await;
                }
                Some(_) => {}
                None => break,
            }
        }
        self.jobs.spawn(job);
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_waits_for_the_previous_one_of_its_peer_and_task_only() {
        let mut order = SendOrder::default();
        let (peer, other_peer) = (
            pvl_protocol::PublicKey([1; 32]),
            pvl_protocol::PublicKey([2; 32]),
        );
        let (task, other_task) = (ObjectId([1; 32]), ObjectId([2; 32]));
        let (none, first) = order.queue(peer, task);
        assert!(none.is_none());
        let (after_first, second) = order.queue(peer, task);
        let mut after_first = after_first.expect("the second report waits for the first");
        assert!(order.queue(other_peer, task).0.is_none());
        assert!(order.queue(peer, other_task).0.is_none());
        assert!(matches!(
            after_first.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        drop(first);
        assert!(matches!(
            after_first.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        let (after_second, _third) = order.queue(peer, task);
        drop(second);
        assert!(after_second.is_some());
    }

    #[test]
    fn finished_sends_are_forgotten_so_the_order_map_stays_bounded() {
        let mut order = SendOrder::default();
        let peer = pvl_protocol::PublicKey([1; 32]);
        let mut running = Vec::new();
        for i in 0..10_000u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            let (_, done) = order.queue(peer, ObjectId(id));
            // One send in 100 is still running; the others ended at once.
            if i % 100 == 0 {
                running.push(done);
            }
            assert!(order.last.len() <= 2 * 128 + 1, "{}", order.last.len());
        }
        assert!(order.last.len() >= running.len());
    }

    #[test]
    fn only_a_peer_not_seen_joining_within_the_memory_brings_ads() {
        let memory = Duration::from_secs(300);
        let mut joins = JoinMemory::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = std::time::Instant::now();
        assert!(joins.is_news(a, t0, memory), "a first join");
        assert!(
            !joins.is_news(a, t0 + Duration::from_secs(60), memory),
            "a re-join within the memory"
        );
        assert!(joins.is_news(b, t0 + Duration::from_secs(60), memory));
        // Each join renews the memory of that peer.
        assert!(!joins.is_news(a, t0 + Duration::from_secs(350), memory));
        assert!(joins.is_news(a, t0 + Duration::from_secs(700), memory));
    }

    #[test]
    fn the_join_memory_is_bounded() {
        let memory = Duration::from_secs(300);
        let mut joins = JoinMemory::default();
        let t0 = std::time::Instant::now();
        for _ in 0..MAX_REMEMBERED_JOINS {
            assert!(joins.is_news(PeerId::random(), t0, memory));
        }
        assert_eq!(joins.seen.len(), MAX_REMEMBERED_JOINS);
        // Full of recent joins: all are forgotten to make room.
        assert!(joins.is_news(PeerId::random(), t0, memory));
        assert_eq!(joins.seen.len(), 1);
        for _ in 1..MAX_REMEMBERED_JOINS {
            joins.is_news(PeerId::random(), t0, memory);
        }
        // Full, the old ones are forgotten first.
        let later = t0 + memory + Duration::from_secs(1);
        let fresh = PeerId::random();
        assert!(joins.is_news(fresh, later, memory));
        assert_eq!(joins.seen.len(), 1);
        assert!(!joins.is_news(fresh, later, memory));
    }
}
