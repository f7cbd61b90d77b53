//! The event loop that owns the swarm, the client handle that drives it, and the events it
//! reports.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use libp2p::core::upgrade;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash};
use libp2p::kad::{self, store::MemoryStore};
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, dial_opts::DialOpts, dial_opts::PeerCondition};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport, connection_limits, identify,
    noise, ping, tcp, yamux,
};
use pvl_protocol::{Body, Kind, ProtocolError, ReplayGuard, SignedObject, check_fresh};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::codec::{Ack, DIRECT_PROTOCOL, DirectCodec};
use crate::config::{DirectAcks, NetConfig, TOPIC_ALL, capability_topic, gossip_message_id};
use crate::counters;
use crate::guard::{BannedPeer, Guard, Over};
use crate::now_ms;
use crate::peer_book::PeerBook;
use crate::session::{Outgoing, SessionEvent, SessionSettings};

const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/pvl/kad/1.0.0");
const IDENTIFY_PROTOCOL: &str = "/pvl/id/1.0.0";
const TICK: Duration = Duration::from_millis(250);
/// How many direct messages may be in flight on one connection at once, in each direction.
/// A requester with 100 open intents among 9 providers receives about 900 offers in one burst;
/// the libp2p defaults (100 request-response streams, 512 yamux and 256 QUIC streams) dropped
/// most of them ("at capacity"), so the offers never arrived.
const MAX_DIRECT_STREAMS: usize = 2048;
const BOOTSTRAP_EVERY: Duration = Duration::from_secs(30);
/// How often the peer book and the connection count are looked after.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// Most peer-book entries dialled per upkeep.
const BOOK_DIALS_PER_UPKEEP: usize = 4;
/// A connection used (or made) within this time is never closed for being one too many.
///
/// 2 s, not 10 s as before: at start-up, Kademlia's bootstrap lookups connect a node of a
/// 100-node testnet to about every other node within seconds, and a grace of 10 s kept all of
/// them open at once. The heap those connections took stayed in the allocator's arenas after
/// they closed: 40.7 / 41.6 MiB mean RSS at the end of the 100-node bench, against 35.6 /
/// 35.7 MiB with 2 s (gossip p99 155.7 / 117.9 against 144.0 / 146.1 ms). 2 s still covers a
/// connection dialled for a direct message, which is used within milliseconds.
const TRIM_GRACE: Duration = Duration::from_secs(2);
/// How often a bootstrap peer this node is not connected to is dialled again (a bootstrap
/// node that restarted is found again within this time).
const BOOTSTRAP_REDIAL_EVERY: Duration = Duration::from_secs(1);

/// Dials `peer` at `addrs` unless it is connected or being dialled; a dial that cannot start
/// is logged at debug level with `what` the node was trying to do (the peer stays
/// reachable some other way or is tried again later).
fn dial_at(swarm: &mut Swarm<Behaviour>, peer: PeerId, addrs: Vec<Multiaddr>, what: &str) {
    let opts = DialOpts::peer_id(peer)
        .addresses(addrs)
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .build();
    if let Err(e) = swarm.dial(opts) {
        debug!(%peer, "cannot {what}: {e}");
    }
}

/// Incoming connections still in their handshake, at most (SPEC §17.3). A requester whose
/// intent reaches 100 providers gets about 100 dials at once and denies those beyond this:
/// the providers try again ([`SEND_ATTEMPTS`]).
const MAX_PENDING_INCOMING: u32 = 64;

/// Attempts at a direct message whose peer could not be reached, in all (SPEC §14.5).
pub const SEND_ATTEMPTS: u32 = 4;

/// The first pause before trying an unreachable peer again; each further pause doubles.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The pause after failed attempt `attempt` (1-based): `RETRY_PAUSE × 2^(attempt-1)`, times a
/// random factor in [1, 2), so that providers answering one intent at once spread out.
fn retry_pause(attempt: u32) -> Duration {
    let mut byte = [0u8; 1];
    // Without system randomness the pause is simply the lower bound.
    let _ = getrandom::fill(&mut byte);
    let base = RETRY_PAUSE * 2u32.saturating_pow(attempt.saturating_sub(1));
    base + base.mul_f64(f64::from(byte[0]) / 256.0)
}

/// Errors of the network layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The configuration is unusable.
    #[error("network configuration: {0}")]
    Config(String),
    /// A transport or listener could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// The event loop has stopped.
    #[error("the network event loop has stopped")]
    Stopped,
    /// Publishing failed.
    #[error("publish failed: {0}")]
    Publish(#[from] PublishError),
    /// No address is known for the peer, even after a DHT lookup.
    #[error("peer {0} is unknown: no address found through Kademlia")]
    UnknownPeer(PeerId),
    /// The peer received the object and refused it.
    #[error("peer refused the object: {0}")]
    Refused(String),
    /// The direct message could not be delivered.
    #[error("direct message not delivered: {0}")]
    SendFailed(String),
    /// The peer could not be reached for a direct message (the dial failed, or the
    /// connection closed before an acknowledgement came), after every attempt
    /// ([`SEND_ATTEMPTS`]).
    #[error("direct message not delivered: peer unreachable after {attempts} attempts: {reason}")]
    Unreachable {
        /// Attempts made.
        attempts: u32,
        /// What the last attempt met.
        reason: String,
    },
    /// A dial failed.
    #[error("dial failed: {0}")]
    Dial(String),
}

/// Why a publish did not go out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No subscribed peer appeared before the publish deadline.
    #[error("no peer subscribed to {topics:?} within {waited_ms} ms")]
    NoPeers {
        /// The topics tried.
        topics: Vec<String>,
        /// How long it waited.
        waited_ms: u64,
    },
    /// Only intents and capability ads are gossiped; the rest travel directly.
    #[error("a {0} is sent directly to a peer, never gossiped")]
    NotGossiped(&'static str),
    /// The object is larger than the gossip limit.
    #[error("the object is too large to gossip")]
    TooLarge,
    /// Every subscribed peer's send queue is full: the node is publishing faster than its
    /// peers take messages. Nothing was sent; slow down.
    #[error("every peer's send queue is full ({peers} peers): nothing was sent")]
    Backpressure {
        /// How many peers were tried.
        peers: usize,
    },
    /// gossipsub refuses the same message twice, and this one was never sent successfully.
    #[error("this object was already handed to gossipsub and refused earlier")]
    Duplicate,
    /// Another gossipsub failure.
    #[error("{0}")]
    Other(String),
}

/// How an object arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Through gossipsub, on this topic.
    Gossip {
        /// The topic it came on.
        topic: String,
    },
    /// As a direct request-response message.
    Direct,
}

/// What the network layer reports to the node.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// A valid, fresh object arrived for the first time.
    Object {
        /// The peer that delivered it (for gossip: the one that forwarded it).
        from: PeerId,
        /// How it came.
        via: Via,
        /// The verified object.
        object: Box<SignedObject>,
        /// For a direct message under [`crate::DirectAcks::ByNode`]: the acknowledgement the
        /// sender waits for; answer it with [`Client::acknowledge`]. `None` for gossip.
        ack: Option<AckId>,
    },
    /// An incoming object was refused (and, for gossip, not forwarded).
    Refused {
        /// The peer that delivered it.
        from: PeerId,
        /// How it came.
        via: Via,
        /// Why.
        reason: String,
    },
    /// A connection to a peer was established (its first one).
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A connection attempt failed or was cut for a network-membership reason.
    ConnectionRefused {
        /// The peer, when known.
        peer: Option<PeerId>,
        /// What happened, in words (handshake failure, not on the allow-list, ...).
        reason: String,
    },
    /// The node listens on a new address.
    Listening(Multiaddr),
    /// A peer joined one of the gossip topics this node is on (it can now receive what this
    /// node publishes there).
    PeerSubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: String,
    },
    /// A peer was banned for its offences (SPEC.md §20): its connections are closed and
    /// gossipsub ignores it until the ban ends.
    PeerBanned(BannedPeer),
}

/// A direct message waiting for the node's acknowledgement (see [`Client::acknowledge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId(u64);

impl std::fmt::Display for AckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ack#{}", self.0)
    }
}

/// A snapshot of the node's network state.
#[derive(Debug, Clone)]
pub struct NetStatus {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Addresses it listens on, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with at least one open connection.
    pub connected: Vec<PeerId>,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
    /// Whether the node runs in private mode.
    pub private: bool,
    /// Gossip topics subscribed to.
    pub topics: Vec<String>,
    /// Publishes waiting for subscribed peers.
    pub queued_publishes: usize,
    /// Peers banned now, for their offences.
    pub banned: Vec<BannedPeer>,
    /// Whether and how other nodes can reach this one (AutoNAT, relays).
    pub reachability: crate::nat::Reachability,
}

/// What the node knows about one peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer id.
    pub peer_id: PeerId,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Known addresses.
    pub addresses: Vec<Multiaddr>,
    /// Its gossipsub score as this node sees it, while connected (negative: penalised).
    pub gossip_score: Option<f64>,
    /// Whether it is banned now.
    pub banned: bool,
    /// While connected: whether the connection is direct, hole punched or relayed.
    pub link: Option<crate::nat::Link>,
}

/// The outcome of a publish that went out.
#[derive(Debug, Clone)]
pub struct PublishReport {
    /// The topics it was published on.
    pub topics: Vec<String>,
    /// How long it waited for peers, in ms (0 when peers were there already).
    pub waited_ms: u64,
}

enum Command {
    Publish {
        /// Boxed: a signed object is several hundred bytes, every other command a few dozen.
        object: Box<SignedObject>,
        reply: oneshot::Sender<Result<PublishReport, NetError>>,
    },
    Send {
        peer: PeerId,
        /// The object's wire bytes: shared, not copied, when a send is tried again.
        bytes: Bytes,
        reply: oneshot::Sender<Result<Ack, NetError>>,
    },
    Status {
        reply: oneshot::Sender<NetStatus>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    FindProviders {
        capability: String,
        reply: oneshot::Sender<Result<Vec<PeerId>, NetError>>,
    },
    #[cfg(feature = "test-utils")]
    PublishUnchecked {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Offence {
        peer: PeerId,
        reason: String,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A cloneable handle to the event loop.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    acks: mpsc::Sender<(AckId, Ack)>,
    peer_id: PeerId,
}

impl Client {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        response.await.map_err(|_| NetError::Stopped)
    }

    /// Gossips an intent or capability ad. Waits (up to the configured publish timeout) for a
    /// subscribed peer if there is none yet, and says whether it went out.
    pub async fn publish(&self, object: SignedObject) -> Result<PublishReport, NetError> {
        self.call(|reply| Command::Publish {
            object: Box::new(object),
            reply,
        })
        .await?
    }

    /// Sends an object directly to `peer` and waits for its acknowledgement. A duplicate is
    /// fine; a refusal is an error carrying the peer's reason.
    pub async fn send(&self, peer: PeerId, object: SignedObject) -> Result<(), NetError> {
        match self.deliver(peer, object).await? {
            Ack::Accepted | Ack::Duplicate => Ok(()),
            Ack::Refused(reason) => Err(NetError::Refused(reason)),
        }
    }

    /// [`Client::send`] to the peer whose signing key is `key` (SPEC.md §15.2).
    pub async fn send_to_key(
        &self,
        key: &pvl_protocol::PublicKey,
        object: SignedObject,
    ) -> Result<(), NetError> {
        self.send(crate::peer_id_of(key)?, object).await
    }

    /// Sends an object directly to `peer` and returns its acknowledgement as it came.
    ///
    /// A peer that cannot be reached (the dial failed, e.g. because the peer is over its
    /// limit of pending incoming connections when many providers answer one intent at once,
    /// or the connection closed before the acknowledgement) is tried again, up to
    /// [`SEND_ATTEMPTS`] in all, after a random pause that doubles each time (SPEC §14.5).
    /// Sending the same bytes again is harmless: a receiver that got them answers duplicate.
    pub async fn deliver(&self, peer: PeerId, object: SignedObject) -> Result<Ack, NetError> {
        let bytes = Bytes::from(object.into_bytes());
        let mut attempt = 1;
        loop {
            let result = self
                .call(|reply| Command::Send {
                    peer,
                    bytes: bytes.clone(),
                    reply,
                })
                .await?;
            match result {
                Err(NetError::Unreachable { reason, .. }) if attempt < SEND_ATTEMPTS => {
                    let pause = retry_pause(attempt);
                    debug!(%peer, attempt, ?pause, "peer unreachable, trying again: {reason}");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(NetError::Unreachable { reason, .. }) => {
                    return Err(NetError::Unreachable {
                        attempts: attempt,
                        reason,
                    });
                }
                other => return other,
            }
        }
    }

    /// Answers the direct message `id` (from [`NetEvent::Object`]) with `ack`. Never waits:
    /// an answer for a message already answered (or timed out) is ignored, and one that does
    /// not fit the bounded queue is dropped, the event loop then answering `busy` at the
    /// timeout.
    pub fn acknowledge(&self, id: AckId, ack: Ack) -> Result<(), NetError> {
        self.acks.try_send((id, ack)).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(_) => NetError::Stopped,
            mpsc::error::TrySendError::Full(_) => {
                NetError::SendFailed("the acknowledgement queue is full".into())
            }
        })
    }

    /// Counts an offence against `peer` (an object no honest peer could have sent, see
    /// SPEC.md §20); enough of them get the peer banned. Never waits: when the command queue
    /// is full the report is dropped (and logged).
    pub fn report_offence(&self, peer: PeerId, reason: String) {
        if let Err(e) = self.commands.try_send(Command::Offence { peer, reason }) {
            debug!(%peer, "offence report dropped: {e}");
        }
    }

    /// The node's network state.
    pub async fn status(&self) -> Result<NetStatus, NetError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Every peer the node knows (connected or in the routing table).
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// Peers that announced `capability` in the DHT.
    pub async fn find_providers(&self, capability: &str) -> Result<Vec<PeerId>, NetError> {
        let capability = capability.to_owned();
        self.call(|reply| Command::FindProviders { capability, reply })
            .await?
    }

    /// Publishes `data` on `topic` exactly as given, without any check. Only for tests and
    /// tools that must behave like a faulty or hostile peer (feature `test-utils`); a node
    /// never calls it.
    #[cfg(feature = "test-utils")]
    pub async fn publish_unchecked(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        let topic = topic.to_owned();
        self.call(|reply| Command::PublishUnchecked { topic, data, reply })
            .await?
    }

    /// Stops the event loop (connections are closed).
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.call(|reply| Command::Shutdown { reply }).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    gossipsub: gossipsub::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    direct: request_response::Behaviour<DirectCodec>,
    session: libp2p_stream::Behaviour,
    sessions_in: libp2p::swarm::behaviour::toggle::Toggle<crate::session::SessionListener>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    nat: crate::nat::NatBehaviour,
}

struct QueuedPublish {
    object: SignedObject,
    topics: Vec<String>,
    since: Instant,
    reply: oneshot::Sender<Result<PublishReport, NetError>>,
}

/// Providers found so far for one DHT query, and who is waiting for them.
type ProviderQuery = (
    HashSet<PeerId>,
    oneshot::Sender<Result<Vec<PeerId>, NetError>>,
);

/// A direct message waiting for its peer's address to be found in the DHT.
struct PendingLookup {
    peer: PeerId,
    sends: Vec<(Bytes, oneshot::Sender<Result<Ack, NetError>>)>,
    /// Lookups made so far; a peer that joined a moment ago may only show up on a later one.
    attempts: u32,
    retry_at: Instant,
}

const LOOKUP_ATTEMPTS: u32 = 4;
const LOOKUP_RETRY: Duration = Duration::from_millis(750);

/// The most session events (objects received on sessions, objects given back) waiting for the
/// event loop; a full queue stops the sessions' reading.
const SESSION_EVENTS: usize = 256;

/// Owns the swarm; run it with [`EventLoop::run`] on a tokio runtime.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    config: NetConfig,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    replay: ReplayGuard,
    listen_addrs: Vec<Multiaddr>,
    topics: Vec<String>,
    queued: Vec<QueuedPublish>,
    pending_sends: HashMap<OutboundRequestId, oneshot::Sender<Result<Ack, NetError>>>,
    lookups: HashMap<kad::QueryId, PendingLookup>,
    lookup_retries: Vec<PendingLookup>,
    provider_queries: HashMap<kad::QueryId, ProviderQuery>,
    /// Addresses of peers reached, kept across restarts (bounded).
    peer_book: PeerBook,
    /// When each connected peer was last used (connected, a direct message either way): the
    /// least recently used go first when there are too many connections.
    last_active: HashMap<PeerId, Instant>,
    /// When the peer book and the connection count were last looked after.
    last_upkeep: Instant,
    last_bootstrap: Option<Instant>,
    /// When disconnected bootstrap peers were last dialled again.
    last_redial: Instant,
    announced: bool,
    published: RecentIds,
    acks: mpsc::Receiver<(AckId, Ack)>,
    pending_acks: HashMap<AckId, PendingAck>,
    next_ack: u64,
    refusals: RecentRefusals,
    guard: Guard,
    /// libp2p's own metrics (swarm, gossipsub, Kademlia, identify, ping), when the node
    /// asked for them with [`new_with_metrics`].
    metrics: Option<libp2p::metrics::Metrics>,
    /// Reachability bookkeeping: AutoNAT, relay slots, direct or relayed links.
    nat: crate::nat::NatState,
    /// Opens direct-message sessions (`/pvl/direct/2`).
    control: libp2p_stream::Control,
    /// Inbound sessions, to the task that runs them (started by `run`).
    inbound_sessions: Option<mpsc::Sender<(PeerId, libp2p::Stream)>>,
    /// The queue of each peer's outbound session.
    sessions: HashMap<PeerId, mpsc::Sender<Outgoing>>,
    /// Peers that do not speak `/pvl/direct/2`: sent `/pvl/direct/1` until their last
    /// connection closes (bounded by the connections).
    legacy: HashSet<PeerId>,
    /// Objects received on sessions, and objects sessions gave back.
    session_events: mpsc::Receiver<SessionEvent>,
    session_events_tx: mpsc::Sender<SessionEvent>,
}

/// Where the acknowledgement of a received direct message goes.
enum Responder {
    /// A `/pvl/direct/1` stream.
    Stream(request_response::ResponseChannel<Ack>),
    /// A `/pvl/direct/2` session: the message's id there, and the session's queue of answers.
    Session {
        id: u32,
        acks: mpsc::Sender<(u32, Ack)>,
    },
}

/// A direct message waiting for the node's decision.
struct PendingAck {
    responder: Responder,
    peer: PeerId,
    object: pvl_protocol::ObjectId,
    deadline: Instant,
}

/// A bounded memory of the objects the node refused, with the reason, so that the same object
/// sent again is refused again rather than acknowledged as a duplicate.
struct RecentRefusals {
    reasons: HashMap<pvl_protocol::ObjectId, String>,
    order: std::collections::VecDeque<pvl_protocol::ObjectId>,
}

impl RecentRefusals {
    const CAPACITY: usize = 4096;

    fn new() -> Self {
        RecentRefusals {
            reasons: HashMap::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    fn remember(&mut self, id: pvl_protocol::ObjectId, reason: &str) {
        if self.reasons.insert(id, reason.to_owned()).is_none() {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.reasons.remove(&old);
            }
        }
    }

    fn get(&self, id: &pvl_protocol::ObjectId) -> Option<&String> {
        self.reasons.get(id)
    }
}

/// A bounded memory of recently published object ids.
struct RecentIds {
    ids: HashSet<pvl_protocol::ObjectId>,
    order: std::collections::VecDeque<pvl_protocol::ObjectId>,
}

impl RecentIds {
    const CAPACITY: usize = 16_384;

    fn new() -> Self {
        RecentIds {
            ids: HashSet::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    fn remember(&mut self, id: pvl_protocol::ObjectId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: &pvl_protocol::ObjectId) -> bool {
        self.ids.contains(id)
    }
}

/// Builds the swarm, starts listening, and returns the client, the event stream and the loop
/// (which the caller spawns).
pub fn new(config: NetConfig) -> Result<(Client, mpsc::Receiver<NetEvent>, EventLoop), NetError> {
    build(config, None)
}

/// [`new`], and the event loop records libp2p's own metrics (connections, dials, gossipsub
/// messages, Kademlia queries, identify and ping) into `registry`, under the `libp2p` prefix.
/// Recording is a few atomic increments per swarm event, done by the loop that owns the swarm.
pub fn new_with_metrics(
    config: NetConfig,
    registry: &mut libp2p::metrics::Registry,
) -> Result<(Client, mpsc::Receiver<NetEvent>, EventLoop), NetError> {
    // `Metrics::new` registers its series under its own `libp2p_` prefix.
    let metrics = libp2p::metrics::Metrics::new(registry);
    build(config, Some(metrics))
}

fn build(
    config: NetConfig,
    metrics: Option<libp2p::metrics::Metrics>,
) -> Result<(Client, mpsc::Receiver<NetEvent>, EventLoop), NetError> {
    let bootstrap = config.check()?;
    let mut swarm = build_swarm(&config)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Transport(format!("cannot listen on {addr}: {e}")))?;
    }
    let topics = subscriptions(&config);
    for topic in &topics {
        subscribe(&mut swarm, topic)?;
    }
    for (peer, addr) in &bootstrap {
        swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        if let Err(e) = swarm.dial(addr.clone()) {
            warn!(%addr, "cannot dial bootstrap peer: {e}");
        }
    }
    let mut peer_book = match &config.peer_book {
        Some(path) => {
            let (book, warning) = PeerBook::load(path, crate::now_ms());
            if let Some(warning) = warning {
                warn!("{warning}");
            }
            book
        }
        None => PeerBook::in_memory(),
    };
    // The peers reached most recently are dialled at once (more follow while the node has
    // fewer connections than it wants): a network reassembles even when no bootstrap peer is
    // up, or none is configured.
    let local = *swarm.local_peer_id();
    let allowed = |p: &PeerId| config.allow.as_ref().is_none_or(|a| a.contains(p));
    let dial_now = peer_book.due_for_dial(config.target_peers, Instant::now(), |p| {
        *p == local || !allowed(p) || bootstrap.iter().any(|(b, _)| b == p)
    });
    if !dial_now.is_empty() {
        info!(
            peers = dial_now.len(),
            known = peer_book.len(),
            "dialling peers from the peer book"
        );
    }
    for (peer, addrs) in dial_now {
        for addr in &addrs {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        dial_at(&mut swarm, peer, addrs, "dial a peer from the peer book");
    }
    let guard = Guard::new(config.flood.clone());
    let nat = crate::nat::NatState::new(&config, Instant::now());
    let (command_tx, command_rx) = mpsc::channel(config.channel_capacity);
    let (event_tx, event_rx) = mpsc::channel(config.channel_capacity);
    // One answer per pending message at most: this queue never holds more than the map.
    let (ack_tx, ack_rx) = mpsc::channel(crate::config::MAX_PENDING_ACKS);
    let client = Client {
        commands: command_tx,
        acks: ack_tx,
        peer_id: *swarm.local_peer_id(),
    };
    let control = swarm.behaviour().session.new_control();
    let (session_events_tx, session_events) = mpsc::channel(SESSION_EVENTS);
    let event_loop = EventLoop {
        swarm,
        commands: command_rx,
        events: event_tx,
        replay: ReplayGuard::new(config.replay_capacity),
        bootstrap,
        config,
        listen_addrs: Vec::new(),
        topics,
        queued: Vec::new(),
        pending_sends: HashMap::new(),
        lookups: HashMap::new(),
        lookup_retries: Vec::new(),
        provider_queries: HashMap::new(),
        peer_book,
        last_active: HashMap::new(),
        last_upkeep: Instant::now(),
        last_bootstrap: None,
        last_redial: Instant::now(),
        announced: false,
        published: RecentIds::new(),
        acks: ack_rx,
        pending_acks: HashMap::new(),
        next_ack: 0,
        refusals: RecentRefusals::new(),
        guard,
        metrics,
        nat,
        control,
        inbound_sessions: None,
        sessions: HashMap::new(),
        legacy: HashSet::new(),
        session_events,
        session_events_tx,
    };
    Ok((client, event_rx, event_loop))
}

/// Hands one swarm event to libp2p's metrics: the swarm's own view, and the event of the
/// behaviour that has a recorder.
fn record_metrics(metrics: &libp2p::metrics::Metrics, event: &SwarmEvent<BehaviourEvent>) {
    use libp2p::metrics::Recorder;
    metrics.record(event);
    match event {
        SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => metrics.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => metrics.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => metrics.record(e),
        SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => metrics.record(e),
        _ => {}
    }
}

fn subscribe(swarm: &mut Swarm<Behaviour>, topic: &str) -> Result<(), NetError> {
    let topic = IdentTopic::new(topic);
    let gossip = &mut swarm.behaviour_mut().gossipsub;
    gossip
        .subscribe(&topic)
        .map_err(|e| NetError::Config(format!("cannot subscribe to {topic}: {e}")))?;
    gossip
        .set_topic_params(topic, topic_score_params())
        .map_err(|e| NetError::Config(format!("topic score parameters: {e}")))
}

/// Score parameters: a sender of invalid messages is penalised hard; nothing else counts
/// against a peer (quiet topics are normal for pvl, so mesh delivery quotas are off).
fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    }
}

/// The largest gossipsub RPC frame accepted (protobuf bytes, without the length prefix). One
/// object of `MAX_OBJECT_SIZE` with its topic and protobuf framing needs about 100 bytes more;
/// the rest is headroom for a quirk of libp2p-gossipsub 0.50, which compares this limit with
/// everything buffered on the stream (up to 8 KiB of the next frame included), not with the
/// frame alone: with only 8 KiB of headroom a full-size object followed at once by another RPC
/// was refused.
const GOSSIP_MAX_RPC: usize = pvl_protocol::MAX_OBJECT_SIZE + 64 * 1024;
/// Published messages accepted in one RPC (the libp2p default, stated so that SPEC.md §13.5
/// and the code agree).
const GOSSIP_MAX_PUBLISH_PER_RPC: usize = 500;
/// Message ids this node puts in one IHAVE, and asks one peer for with IWANT per heartbeat:
/// 240 ids of 66 bytes and a topic of at most 74 bytes fit in 16 KiB of control data.
const GOSSIP_MAX_IDS_SENT: usize = 240;
/// IHAVE messages read from one peer per heartbeat; later ones are ignored (libp2p default).
const GOSSIP_MAX_IHAVE_PER_HEARTBEAT: usize = 10;

fn build_behaviour(
    config: &NetConfig,
    relay_client: libp2p::relay::client::Behaviour,
) -> Result<Behaviour, NetError> {
    let keypair = &config.keypair;
    let peer_id = keypair.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.heartbeat)
        // Every pvl object carries its own ed25519 signature, checked before forwarding; a second
        // libp2p signature per message would double the verification cost for nothing, so
        // messages are anonymous (no author, sequence number or signature) and identified by
        // the hash of their topic and content.
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        // RPC limits (SPEC.md §13.5). libp2p-gossipsub checks them on the raw frame before
        // decoding, and a frame over any of them is not refused message by message: the
        // connection handler half-closes and drops the inbound stream, logging only at debug
        // level. Over yamux the sender sees a FIN on a stream it never reads and no reset, so
        // it keeps writing into a stream nobody reads and is cut off from this node's gossip
        // for as long as the connection lasts. So these limits are set where no honest peer
        // reaches them, and floods are bounded by the per-heartbeat caps below, which ignore
        // the excess and keep the stream.
        .max_transmit_size(GOSSIP_MAX_RPC)
        // The default of 16 KiB for all control messages of one RPC cut off honest peers: a
        // go or js gossipsub peer lists up to 5000 ids per topic in one IHAVE, and a pvl id is
        // 64 bytes (66 on the wire), so 250 recent messages on a topic were enough. Control
        // data is bounded by the frame limit only.
        .max_control_message_size(GOSSIP_MAX_RPC)
        .max_publish_messages(GOSSIP_MAX_PUBLISH_PER_RPC)
        // What this node sends stays within the 16 KiB default of stock libp2p-gossipsub and of
        // earlier pvl nodes, which this node's own IHAVE (5000 ids by default) used to exceed,
        // cutting itself off from them: at most this many ids per IHAVE (a random sample when
        // there are more) and per heartbeat in IWANT requests to one peer. Gossip is only the
        // repair path (mesh and flood publishing deliver first), so the cap costs little.
        // Both directions are tested in `tests/gossip_limits.rs`.
        .max_control_messages_sent(GOSSIP_MAX_IDS_SENT)
        .max_ihave_messages_heartbeat(GOSSIP_MAX_IHAVE_PER_HEARTBEAT)
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::from(gossip_message_id(message.topic.as_str(), &message.data))
        })
        .build()
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)
            .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?;
    let score = gossipsub::PeerScoreParams {
        // Local testnets put every peer on 127.0.0.1: same-IP peers are not suspicious here.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    gossipsub
        .with_peer_score(score, gossipsub::PeerScoreThresholds::default())
        .map_err(|e| NetError::Config(format!("gossipsub scoring: {e}")))?;

    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config
        .set_query_timeout(Duration::from_secs(20))
        .set_provider_record_ttl(Some(config.provider_record_ttl))
        .set_provider_publication_interval(Some(config.provider_record_ttl / 2));
    let mut kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));

    let direct = request_response::Behaviour::with_codec(
        DirectCodec,
        [(DIRECT_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.direct_timeout)
            .with_max_concurrent_streams(MAX_DIRECT_STREAMS),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
            // A relay slot reserved after the first exchange is told to peers at once.
            .with_push_listen_addr_updates(true),
    );
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(4))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
    );
    Ok(Behaviour {
        limits,
        gossipsub,
        kad,
        direct,
        session: libp2p_stream::Behaviour::new(),
        sessions_in: config
            .direct_sessions
            .then(crate::session::SessionListener::default)
            .into(),
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
        nat: crate::nat::NatBehaviour::new(config, relay_client),
    })
}

/// Yamux with room for [`MAX_DIRECT_STREAMS`] streams (plus gossipsub, Kademlia, identify, ping);
/// yamux asserts that 256 KiB per stream fits its 1 GiB connection window, which this does.
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_DIRECT_STREAMS + 64);
    config
}

fn build_swarm(config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    // Every node has the relay client: its transport dials and listens on `/p2p-circuit`.
    let (relay_transport, relay_client) =
        libp2p::relay::client::new(config.keypair.public().to_peer_id());
    let behaviour = build_behaviour(config, relay_client)?;
    let transport_err = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(120));
    let builder = SwarmBuilder::with_existing_identity(config.keypair.clone()).with_tokio();
    let swarm = match &config.swarm_key {
        None => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux_config,
            )
            .map_err(|e| transport_err(&e))?
            .with_quic_config(|mut quic| {
                quic.max_concurrent_stream_limit = MAX_DIRECT_STREAMS as u32;
                quic
            })
            .with_other_transport(|keypair| {
                crate::nat::relayed(relay_transport, keypair, yamux_config())
            })
            .map_err(|e| transport_err(&e))?
            // `/dns4/`, `/dns6/` and `/dns/` addresses (bootstrap entries) resolve through the
            // system resolver.
            .with_dns()
            .map_err(|e| transport_err(&e))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| transport_err(&e))?
            .with_swarm_config(idle)
            .build(),
        Some(key) => {
            let psk = key.0;
            builder
                .with_other_transport(|keypair| {
                    let noise = noise::Config::new(keypair)
                        .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
                    // Relayed streams are wrapped in pnet too: both ends of a circuit must
                    // hold the key, whatever the relay in between does.
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                        tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                            .or_transport(relay_transport)
                            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                            .upgrade(upgrade::Version::V1Lazy)
                            .authenticate(noise)
                            .multiplex(yamux_config())
                            .timeout(Duration::from_secs(20)),
                    )
                })
                .map_err(|e| transport_err(&e))?
                .with_dns()
                .map_err(|e| transport_err(&e))?
                .with_behaviour(|_| behaviour)
                .map_err(|e| transport_err(&e))?
                .with_swarm_config(idle)
                .build()
        }
    };
    Ok(swarm)
}

impl EventLoop {
    /// Runs until shut down through the client or until every client handle is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        let (inbound_tx, inbound_rx) = mpsc::channel(crate::session::INBOUND_QUEUE);
        self.inbound_sessions = Some(inbound_tx);
        let accepting = tokio::spawn(crate::session::accept(
            inbound_rx,
            self.session_events_tx.clone(),
        ));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some((id, ack)) = self.acks.recv() => self.answer(id, ack),
                Some(event) = self.session_events.recv() => self.on_session_event(event).await,
                _ = tick.tick() => self.on_tick(),
            }
        }
        accepting.abort();
        if let Err(e) = self.peer_book.save_if_due(true) {
            warn!("{e}");
        }
        info!("network event loop stopped");
    }

    async fn emit(&mut self, event: NetEvent) {
        // The node consumes events promptly; waiting here is back-pressure, not loss.
        if self.events.send(event).await.is_err() {
            debug!("event receiver dropped");
        }
    }

    fn allowed(&self, peer: &PeerId) -> bool {
        match &self.config.allow {
            Some(allow) => allow.contains(peer) || peer == self.swarm.local_peer_id(),
            None => true,
        }
    }

    /// Sends the node's acknowledgement of the pending direct message `id`.
    fn answer(&mut self, id: AckId, ack: Ack) {
        let Some(pending) = self.pending_acks.remove(&id) else {
            debug!(%id, "acknowledgement for no pending message (answered or timed out)");
            return;
        };
        if let Ack::Refused(reason) = &ack {
            self.refusals.remember(pending.object, reason);
        }
        self.respond(&pending.peer, pending.responder, ack);
    }

    /// Sends `ack` on the stream or session the message came on.
    fn respond(&mut self, peer: &PeerId, responder: Responder, ack: Ack) {
        let sent = match responder {
            Responder::Stream(channel) => self
                .swarm
                .behaviour_mut()
                .direct
                .send_response(channel, ack)
                .is_ok(),
            // The session's queue holds an answer for every message it has unanswered.
            Responder::Session { id, acks } => acks.try_send((id, ack)).is_ok(),
        };
        if !sent {
            debug!(%peer, "could not acknowledge: the stream closed");
        }
    }

    /// Answers `busy` for every direct message the node did not decide on in time.
    fn expire_acks(&mut self) {
        let now = Instant::now();
        let late: Vec<AckId> = self
            .pending_acks
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            warn!(%id, "the node did not decide on a direct message in time: refused as busy");
            // Not remembered as a refusal: the sender may try again later.
            if let Some(pending) = self.pending_acks.remove(&id) {
                let ack = Ack::Refused("busy: the node did not decide in time".into());
                self.respond(&pending.peer, pending.responder, ack);
            }
        }
    }

    fn on_tick(&mut self) {
        self.expire_acks();
        // Sessions that ended (idle, or their connection went) are started again on demand.
        self.sessions.retain(|_, queue| !queue.is_closed());
        for peer in self.guard.tick() {
            info!(%peer, "ban ended");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
        self.retry_publishes();
        self.nat.tick(&mut self.swarm);
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.lookup_retries)
            .into_iter()
            .partition(|l| l.retry_at <= now);
        self.lookup_retries = later;
        for lookup in due {
            self.start_lookup(lookup);
        }
        let connected = self.swarm.connected_peers().count();
        if self.last_redial.elapsed() >= BOOTSTRAP_REDIAL_EVERY
            && connected < self.config.target_peers
        {
            self.last_redial = now;
            for (peer, addr) in &self.bootstrap {
                if self.swarm.is_connected(peer) {
                    continue;
                }
                dial_at(
                    &mut self.swarm,
                    *peer,
                    vec![addr.clone()],
                    "dial the bootstrap peer again",
                );
            }
        }
        if self.last_upkeep.elapsed() >= UPKEEP_EVERY {
            self.last_upkeep = now;
            self.upkeep(now);
        }
        let due = self
            .last_bootstrap
            .is_none_or(|at| at.elapsed() >= BOOTSTRAP_EVERY);
        // Only while the node wants more peers: a well-connected node leaves it to libp2p's own
        // periodic bootstrap (every 5 minutes). With 100 nodes, one every 30 s on every node
        // opened about a connection per second per node just for the lookups.
        if due && connected > 0 && connected < self.config.target_peers {
            self.last_bootstrap = Some(Instant::now());
            if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                debug!("kademlia bootstrap not possible yet: {e}");
            }
        }
    }

    /// Once a second: dials peers from the peer book while the node has fewer connections
    /// than it wants, closes the least recently used connections while it has too many, and
    /// saves the peer book when it changed.
    fn upkeep(&mut self, now: Instant) {
        let connected = self.swarm.connected_peers().count();
        if connected < self.config.target_peers {
            let want = (self.config.target_peers - connected).min(BOOK_DIALS_PER_UPKEEP);
            let local = *self.swarm.local_peer_id();
            let swarm = &self.swarm;
            let guard = &self.guard;
            let allow = self.config.allow.as_ref();
            let picked = self.peer_book.due_for_dial(want, now, |p| {
                *p == local
                    || swarm.is_connected(p)
                    || guard.is_banned(p)
                    || allow.is_some_and(|a| !a.contains(p))
            });
            for (peer, addrs) in picked {
                dial_at(
                    &mut self.swarm,
                    peer,
                    addrs,
                    "dial a peer from the peer book",
                );
            }
        }
        if connected > self.config.max_peers {
            self.trim_connections(now, connected);
        }
        if let Err(e) = self.peer_book.save_if_due(false) {
            warn!("{e}");
        }
    }

    /// Closes connections down to halfway between `target_peers` and `max_peers`, least
    /// recently used first (halfway, not `target_peers`: each closed connection is one fewer
    /// for the peer too, and a peer that fell below `target_peers` would dial again). Spared:
    /// gossip mesh peers (they carry the intents), peers used within [`TRIM_GRACE`] (a
    /// connection just made, or one a conversation is using).
    fn trim_connections(&mut self, now: Instant, connected: usize) {
        let mesh: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_mesh_peers()
            .copied()
            .collect();
        let keep =
            self.config.target_peers + (self.config.max_peers - self.config.target_peers) / 2;
        let peers = self
            .swarm
            .connected_peers()
            .map(|p| (*p, self.last_active.get(p).copied()));
        let closing = idle_to_close(peers, &mesh, now, connected.saturating_sub(keep));
        if !closing.is_empty() {
            debug!(
                connected,
                closing = closing.len(),
                "too many connections: closing idle ones"
            );
        }
        for peer in closing {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { object, reply } => {
                let topics = match gossip_topics(&object) {
                    Ok(topics) => topics,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                let queued = QueuedPublish {
                    object: *object,
                    topics,
                    since: Instant::now(),
                    reply,
                };
                if let Some(unsent) = self.try_publish(queued) {
                    debug!("no subscribed peer yet: publish queued");
                    self.queued.push(unsent);
                }
            }
            Command::Send { peer, bytes, reply } => self.send_direct(peer, bytes, reply),
            Command::Status { reply } => {
                let local = *self.swarm.local_peer_id();
                let status = NetStatus {
                    peer_id: local,
                    listen_addrs: self.listen_addrs.clone(),
                    connected: self.swarm.connected_peers().copied().collect(),
                    routing_table: self.routing_table_peers().len(),
                    private: self.config.is_private(),
                    topics: self.topics.clone(),
                    queued_publishes: self.queued.len(),
                    banned: self.guard.bans(),
                    reachability: self.nat.reachability(
                        &self.swarm.external_addresses().cloned().collect::<Vec<_>>(),
                        Instant::now(),
                    ),
                };
                let _ = reply.send(status);
            }
            Command::Peers { reply } => {
                let mut peers: HashMap<PeerId, PeerInfo> = HashMap::new();
                for (peer, addresses) in self.routing_table_peers() {
                    peers.insert(
                        peer,
                        PeerInfo {
                            peer_id: peer,
                            connected: false,
                            addresses,
                            gossip_score: None,
                            banned: false,
                            link: None,
                        },
                    );
                }
                for peer in self.swarm.connected_peers() {
                    peers
                        .entry(*peer)
                        .or_insert_with(|| PeerInfo {
                            peer_id: *peer,
                            connected: true,
                            addresses: self
                                .peer_book
                                .addrs(peer)
                                .map(<[Multiaddr]>::to_vec)
                                .unwrap_or_default(),
                            gossip_score: None,
                            banned: false,
                            link: None,
                        })
                        .connected = true;
                }
                for ban in self.guard.bans() {
                    peers
                        .entry(ban.peer)
                        .or_insert_with(|| PeerInfo {
                            peer_id: ban.peer,
                            connected: false,
                            addresses: Vec::new(),
                            gossip_score: None,
                            banned: true,
                            link: None,
                        })
                        .banned = true;
                }
                let gossip = &self.swarm.behaviour().gossipsub;
                for info in peers.values_mut() {
                    if info.connected {
                        info.gossip_score = gossip.peer_score(&info.peer_id);
                        info.link = self.nat.link(&info.peer_id);
                    }
                }
                let mut list: Vec<PeerInfo> = peers.into_values().collect();
                list.sort_by_key(|p| p.peer_id.to_string());
                let _ = reply.send(list);
            }
            Command::Dial { addr, reply } => {
                let result = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NetError::Dial(format!("{addr}: {e}")));
                let _ = reply.send(result);
            }
            Command::FindProviders { capability, reply } => {
                let key = provider_key(&capability);
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.provider_queries.insert(id, (HashSet::new(), reply));
            }
            #[cfg(feature = "test-utils")]
            Command::PublishUnchecked { topic, data, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic), data)
                    .map(|_| ())
                    .map_err(|e| PublishError::Other(e.to_string()).into());
                let _ = reply.send(result);
            }
            Command::Offence { peer, reason } => self.offence(peer, &reason),
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    /// Counts an offence of `peer` and bans it when that was one too many.
    fn offence(&mut self, peer: PeerId, reason: &str) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let Some(ban) = self.guard.offence(peer, reason) else {
            return;
        };
        warn!(%peer, reason = %ban.reason, "peer banned");
        self.peer_book.forget(&peer);
        self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        // Told to the node without waiting: this runs inside command handling.
        if let Err(e) = self.events.try_send(NetEvent::PeerBanned(ban)) {
            debug!(%peer, "ban not reported to the node: {e}");
        }
    }

    fn routing_table_peers(&mut self) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                out.push((
                    *entry.node.key.preimage(),
                    entry.node.value.iter().cloned().collect(),
                ));
            }
        }
        out
    }

    /// Publishes on every topic that has peers; returns the publish if none had any yet.
    fn try_publish(&mut self, queued: QueuedPublish) -> Option<QueuedPublish> {
        let mut sent = Vec::new();
        let mut failed = None;
        for topic in &queued.topics {
            let result = self.swarm.behaviour_mut().gossipsub.publish(
                IdentTopic::new(topic.as_str()),
                queued.object.bytes().to_vec(),
            );
            match result {
                Ok(_) => {
                    counters::gossip_published();
                    sent.push(topic.clone());
                    self.published.remember(queued.object.id());
                }
                // Only an object that did go out once counts as sent when gossipsub calls it a
                // duplicate: a refused one (full queues) is in gossipsub's duplicate cache too.
                Err(gossipsub::PublishError::Duplicate)
                    if self.published.contains(&queued.object.id()) =>
                {
                    sent.push(topic.clone());
                }
                Err(gossipsub::PublishError::Duplicate) => failed = Some(PublishError::Duplicate),
                Err(gossipsub::PublishError::AllQueuesFull(peers)) => {
                    failed = Some(PublishError::Backpressure { peers });
                }
                Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                Err(gossipsub::PublishError::MessageTooLarge) => {
                    let _ = queued.reply.send(Err(PublishError::TooLarge.into()));
                    return None;
                }
                Err(e) => {
                    let _ = queued
                        .reply
                        .send(Err(PublishError::Other(e.to_string()).into()));
                    return None;
                }
            }
        }
        if sent.is_empty() {
            if let Some(error) = failed {
                // Retrying would only meet gossipsub's duplicate cache: report it now.
                warn!(id = %queued.object.id().short(), "publish failed: {error}");
                let _ = queued.reply.send(Err(error.into()));
                return None;
            }
            return Some(queued);
        }
        info!(id = %queued.object.id().short(), kind = %queued.object.kind(), ?sent, "published");
        let report = PublishReport {
            topics: sent,
            waited_ms: queued.since.elapsed().as_millis() as u64,
        };
        let _ = queued.reply.send(Ok(report));
        None
    }

    fn retry_publishes(&mut self) {
        let timeout = self.config.publish_timeout;
        for queued in std::mem::take(&mut self.queued) {
            if queued.reply.is_closed() {
                continue;
            }
            if let Some(unsent) = self.try_publish(queued) {
                if unsent.since.elapsed() >= timeout {
                    warn!(id = %unsent.object.id().short(), "publish gave up: no subscribed peer");
                    let error = PublishError::NoPeers {
                        topics: unsent.topics.clone(),
                        waited_ms: unsent.since.elapsed().as_millis() as u64,
                    };
                    let _ = unsent.reply.send(Err(error.into()));
                } else {
                    self.queued.push(unsent);
                }
            }
        }
    }

    fn send_direct(
        &mut self,
        peer: PeerId,
        bytes: Bytes,
        reply: oneshot::Sender<Result<Ack, NetError>>,
    ) {
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(NetError::SendFailed("cannot send to ourselves".into())));
            return;
        }
        // Without a connection the request dials the peer on demand, at the addresses of the
        // peer book (and those Kademlia knows).
        let booked = self.peer_book.addrs(&peer).map(<[Multiaddr]>::to_vec);
        let reachable = self.swarm.is_connected(&peer)
            || booked.is_some()
            || self.routing_table_peers().iter().any(|(p, _)| *p == peer);
        if reachable {
            self.last_active.insert(peer, Instant::now());
            self.dispatch(peer, bytes, booked.unwrap_or_default(), reply);
            return;
        }
        debug!(%peer, "peer address unknown: looking it up in the DHT");
        self.start_lookup(PendingLookup {
            peer,
            sends: vec![(bytes, reply)],
            attempts: 0,
            retry_at: Instant::now(),
        });
    }

    /// Sends to a peer that is connected or has addresses (`addrs`, beyond those Kademlia
    /// knows): on its session, or with `/pvl/direct/1` to a peer without sessions.
    fn dispatch(
        &mut self,
        peer: PeerId,
        bytes: Bytes,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<Ack, NetError>>,
    ) {
        counters::direct_sent();
        if !self.config.direct_sessions || self.legacy.contains(&peer) {
            self.send_legacy(peer, bytes, addrs, reply);
            return;
        }
        if !addrs.is_empty() && !self.swarm.is_connected(&peer) {
            // The session waits for this connection: libp2p-stream dials only at the
            // addresses the behaviours know, and the peer book is not one of them.
            dial_at(&mut self.swarm, peer, addrs, "dial for a direct message");
        }
        self.queue_on_session(
            peer,
            Outgoing {
                object: bytes,
                reply,
            },
        );
    }

    /// Sends with `/pvl/direct/1`: a stream of its own (SPEC.md §14.1).
    fn send_legacy(
        &mut self,
        peer: PeerId,
        bytes: Bytes,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<Ack, NetError>>,
    ) {
        let id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request_with_addresses(&peer, bytes, addrs);
        self.pending_sends.insert(id, reply);
    }

    /// Queues `item` on `peer`'s outbound session, starting one when it has none (or its last
    /// one ended).
    fn queue_on_session(&mut self, peer: PeerId, item: Outgoing) {
        let item = match self.sessions.get(&peer) {
            Some(queue) => match queue.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(item)) => {
                    let _ = item.reply.send(Err(NetError::SendFailed(format!(
                        "busy: {} messages already queued for {peer}",
                        crate::session::SESSION_QUEUE
                    ))));
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(item)) => item,
            },
            None => item,
        };
        let settings = SessionSettings {
            timeout: self.config.direct_timeout,
            events: self.session_events_tx.clone(),
        };
        let queue = crate::session::start_outbound(peer, self.control.clone(), settings);
        if let Err(e) = queue.try_send(item) {
            // A new queue has room; only a session that already ended refuses.
            let item = match e {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            let _ = item.reply.send(Err(NetError::SendFailed(
                "the session ended at once".into(),
            )));
        }
        self.sessions.insert(peer, queue);
    }

    /// Admits an object received on a session, or sends again what a session gave back.
    async fn on_session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Inbound {
                peer,
                id,
                object,
                acks,
            } => {
                self.on_direct_request(peer, object, Responder::Session { id, acks })
                    .await
            }
            SessionEvent::Returned {
                peer,
                legacy,
                sends,
            } => {
                if legacy {
                    self.sessions.remove(&peer);
                    self.legacy.insert(peer);
                }
                for Outgoing { object, reply } in sends {
                    if self.legacy.contains(&peer) {
                        let addrs = self.peer_book.addrs(&peer).map(<[Multiaddr]>::to_vec);
                        self.send_legacy(peer, object, addrs.unwrap_or_default(), reply);
                    } else {
                        self.queue_on_session(peer, Outgoing { object, reply });
                    }
                }
            }
        }
    }

    fn start_lookup(&mut self, mut lookup: PendingLookup) {
        lookup.attempts += 1;
        let query = self
            .swarm
            .behaviour_mut()
            .kad
            .get_closest_peers(lookup.peer);
        self.lookups.insert(query, lookup);
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(metrics) = &self.metrics {
            record_metrics(metrics, &event);
        }
        self.nat.observe(&event);
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossip(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::Direct(event)) => self.on_direct(event).await,
            SwarmEvent::Behaviour(BehaviourEvent::SessionsIn((peer, stream))) => {
                let queued = self
                    .inbound_sessions
                    .as_ref()
                    .is_some_and(|queue| queue.try_send((peer, stream)).is_ok());
                if !queued {
                    debug!(%peer, "inbound session dropped: too many waiting to start");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Nat(event)) => {
                self.nat.on_event(&mut self.swarm, event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if !self.allowed(&peer_id) {
                    return;
                }
                let serves_kad = info.protocols.contains(&KAD_PROTOCOL);
                if serves_kad {
                    self.peer_book
                        .record(peer_id, &info.listen_addrs, crate::now_ms());
                }
                if serves_kad {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(*self.swarm.local_peer_id()));
                info!(addr = %full, "listening");
                self.listen_addrs.push(full.clone());
                self.emit(NetEvent::Listening(full)).await;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                if self.guard.is_banned(&peer_id) {
                    debug!(peer = %peer_id, "banned peer connected: disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    self.emit(NetEvent::ConnectionRefused {
                        peer: Some(peer_id),
                        reason: "banned for its offences".into(),
                    })
                    .await;
                    return;
                }
                if !self.allowed(&peer_id) {
                    warn!(
                        peer = %peer_id,
                        addr = %endpoint.get_remote_address(),
                        "peer completed the pre-shared-key handshake but is not on the allow-list: disconnecting"
                    );
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    self.emit(NetEvent::ConnectionRefused {
                        peer: Some(peer_id),
                        reason: "not on the allow-list".into(),
                    })
                    .await;
                    return;
                }
                self.last_active.insert(peer_id, Instant::now());
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.peer_book
                        .record(peer_id, std::slice::from_ref(address), crate::now_ms());
                }
                if num_established.get() == 1 {
                    debug!(peer = %peer_id, "connected");
                    self.emit(NetEvent::PeerConnected(peer_id)).await;
                }
                if self.bootstrap.iter().any(|(p, _)| *p == peer_id)
                    && self.last_bootstrap.is_none()
                {
                    self.last_bootstrap = Some(Instant::now());
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
                self.announce_capabilities();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                // Asked again on its next connection: it may have been upgraded.
                self.legacy.remove(&peer_id);
                if self.allowed(&peer_id) {
                    self.last_active.remove(&peer_id);
                    self.emit(NetEvent::PeerDisconnected(peer_id)).await;
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                let reason = self.handshake_failure(&error.to_string());
                warn!(addr = %send_back_addr, "incoming connection failed: {reason}");
                self.emit(NetEvent::ConnectionRefused { peer: None, reason })
                    .await;
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let Some(peer) = &peer_id {
                    self.peer_book.dial_failed(peer, Instant::now());
                }
                let reason = self.handshake_failure(&error.to_string());
                debug!(peer = ?peer_id, "outgoing connection failed: {reason}");
            }
            _ => {}
        }
    }

    fn handshake_failure(&self, error: &str) -> String {
        if self.config.is_private() {
            format!("{error} (in a private network this means the peer lacks our pre-shared key)")
        } else {
            error.to_owned()
        }
    }

    /// Provides every served capability in the DHT once the node has a peer to tell.
    fn announce_capabilities(&mut self) {
        if self.announced {
            return;
        }
        self.announced = true;
        for capability in self.config.capabilities.clone() {
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(provider_key(&capability))
            {
                warn!(%capability, "cannot provide capability: {e}");
            }
        }
    }

    async fn on_gossip(&mut self, event: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = event
        else {
            if let gossipsub::Event::Subscribed { peer_id, topic } = event {
                self.retry_publishes();
                self.emit(NetEvent::PeerSubscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                })
                .await;
            }
            return;
        };
        counters::gossip_received();
        let topic = message.topic.as_str().to_owned();
        let via = Via::Gossip {
            topic: topic.clone(),
        };
        let verdict = if self.allowed(&propagation_source) {
            self.within_budget(&message.data, &propagation_source)
                .and_then(|()| validate_gossip(&message.data, &message.topic))
        } else {
            Err((
                MessageAcceptance::Reject,
                "sender is not on the allow-list".to_owned(),
            ))
        };
        match verdict {
            Ok(object) => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        MessageAcceptance::Accept,
                    );
                // The same object arrives once per topic: hand it to the node once.
                if self.replay.check_and_record(&object, now_ms()).is_ok() {
                    debug!(id = %object.id().short(), kind = %object.kind(), from = %propagation_source, "gossip received");
                    self.emit(NetEvent::Object {
                        from: propagation_source,
                        via,
                        object: Box::new(object),
                        ack: None,
                    })
                    .await;
                } else {
                    counters::gossip_duplicate();
                }
            }
            Err((acceptance, reason)) => {
                if matches!(acceptance, MessageAcceptance::Reject) {
                    warn!(from = %propagation_source, %topic, "invalid gossip rejected: {reason}");
                    self.offence(propagation_source, &reason);
                } else {
                    debug!(from = %propagation_source, %topic, "gossip ignored: {reason}");
                }
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                self.emit(NetEvent::Refused {
                    from: propagation_source,
                    via,
                    reason,
                })
                .await;
            }
        }
    }

    /// Spends a token of the gossip budget of the message's signer, read from the envelope
    /// header (not yet verified: see the `guard` module for why that is sound). Over budget,
    /// the message is ignored (not forwarded), and counts as an offence when the peer that
    /// delivered it is its signer.
    fn within_budget(
        &mut self,
        data: &[u8],
        from: &PeerId,
    ) -> Result<(), (MessageAcceptance, String)> {
        // An undecodable message is rejected by full validation right after.
        let Ok(header) = pvl_protocol::read_header(data) else {
            return Ok(());
        };
        match self.guard.gossip(&header.signer) {
            Ok(()) => Ok(()),
            Err(Over::Busy) => Err((
                MessageAcceptance::Ignore,
                "busy: too many signers tracked at once".to_owned(),
            )),
            Err(Over::Budget) => {
                let budget = self.guard.config().gossip_per_signer;
                let reason = format!(
                    "rate-limited: the signer is over its gossip budget of {} objects/s (burst {})",
                    budget.per_second, budget.burst
                );
                // Ignored, never rejected: gossipsub would score a rejection against every
                // peer that delivered the message, honest forwarders included (they took it
                // within the budget they saw). The signer itself, when it is the first hop,
                // answers for it with an offence.
                if crate::keys::public_key_of(from) == Some(header.signer) {
                    self.offence(*from, &reason);
                }
                Err((MessageAcceptance::Ignore, reason))
            }
        }
    }

    /// Admits a direct message, from either protocol, and answers it (now, or through the
    /// node's decision).
    async fn on_direct_request(&mut self, peer: PeerId, request: Bytes, responder: Responder) {
        counters::direct_received();
        self.last_active.insert(peer, Instant::now());
        let by_node = match self.config.direct_acks {
            DirectAcks::ByNode { timeout } => Some(timeout),
            DirectAcks::OnReceipt => None,
        };
        // Full: refused before the replay guard sees it, so that the same object
        // sent again later is taken, not called a duplicate.
        let full = by_node.is_some() && self.pending_acks.len() >= crate::config::MAX_PENDING_ACKS;
        let budget = if self.guard.is_banned(&peer) {
            Err("banned: too many offences".to_owned())
        } else {
            match self.guard.direct(&peer) {
                Ok(()) => Ok(()),
                Err(Over::Busy) => Err("busy: too many peers tracked at once".into()),
                Err(Over::Budget) => {
                    let budget = self.guard.config().direct_per_peer;
                    let reason = format!(
                        "rate-limited: over the budget of {} direct messages/s (burst {})",
                        budget.per_second, budget.burst
                    );
                    self.offence(peer, &reason);
                    Err(reason)
                }
            }
        };
        let (ack, object) = if let Err(reason) = budget {
            (Ack::Refused(reason), None)
        } else if full {
            (
                Ack::Refused("busy: too many messages awaiting admission".into()),
                None,
            )
        } else {
            self.accept_direct(&peer, &request)
        };
        if let Ack::Refused(reason) = &ack {
            warn!(%peer, "direct message refused: {reason}");
            self.emit(NetEvent::Refused {
                from: peer,
                via: Via::Direct,
                reason: reason.clone(),
            })
            .await;
        }
        match (object, by_node) {
            (Some(object), Some(timeout)) if ack == Ack::Accepted => {
                // The node decides: the answer comes through `Client::acknowledge`
                // (or `busy` at the deadline, see `expire_acks`).
                self.next_ack += 1;
                let id = AckId(self.next_ack);
                self.pending_acks.insert(
                    id,
                    PendingAck {
                        responder,
                        peer,
                        object: object.id(),
                        deadline: Instant::now() + timeout,
                    },
                );
                self.emit(NetEvent::Object {
                    from: peer,
                    via: Via::Direct,
                    object: Box::new(object),
                    ack: Some(id),
                })
                .await;
            }
            (object, _) => {
                self.respond(&peer, responder, ack.clone());
                if let (Some(object), Ack::Accepted) = (object, ack) {
                    self.emit(NetEvent::Object {
                        from: peer,
                        via: Via::Direct,
                        object: Box::new(object),
                        ack: None,
                    })
                    .await;
                }
            }
        }
    }

    async fn on_direct(&mut self, event: request_response::Event<Bytes, Ack>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.on_direct_request(peer, request, Responder::Stream(channel))
                        .await
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_sends.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                debug!(%peer, "direct message failed: {error}");
                let failure = match error {
                    request_response::OutboundFailure::DialFailure
                    | request_response::OutboundFailure::ConnectionClosed => {
                        NetError::Unreachable {
                            attempts: 1,
                            reason: error.to_string(),
                        }
                    }
                    error => NetError::SendFailed(error.to_string()),
                };
                if let Some(reply) = self.pending_sends.remove(&request_id) {
                    let _ = reply.send(Err(failure));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound direct message failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn accept_direct(&mut self, peer: &PeerId, bytes: &[u8]) -> (Ack, Option<SignedObject>) {
        if !self.allowed(peer) {
            return (Ack::Refused("not on the allow-list".into()), None);
        }
        let object = match SignedObject::decode(bytes) {
            Ok(object) => object,
            Err(e) => return (Ack::Refused(e.to_string()), None),
        };
        let now = now_ms();
        if let Err(e) = check_fresh(&object, now) {
            return (Ack::Refused(e.to_string()), None);
        }
        if let Some(reason) = self.refusals.get(&object.id()) {
            // Refused by the node before: the same answer again.
            return (Ack::Refused(reason.clone()), None);
        }
        match self.replay.check_and_record(&object, now) {
            Ok(()) => (Ack::Accepted, Some(object)),
            Err(ProtocolError::Replayed(_)) => (Ack::Duplicate, None),
            Err(e) => (Ack::Refused(e.to_string()), None),
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                let connected = self.swarm.connected_peers().count();
                if connected < self.config.target_peers
                    && !self.swarm.is_connected(&peer)
                    && self.allowed(&peer)
                {
                    dial_at(
                        &mut self.swarm,
                        peer,
                        addresses.into_vec(),
                        "dial discovered peer",
                    );
                }
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                kad::QueryResult::GetClosestPeers(result) => {
                    let Some(lookup) = self.lookups.remove(&id) else {
                        return;
                    };
                    let found = match result {
                        Ok(ok) => ok.peers.into_iter().find(|p| p.peer_id == lookup.peer),
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => {
                            peers.into_iter().find(|p| p.peer_id == lookup.peer)
                        }
                    };
                    match found {
                        Some(info) if !info.addrs.is_empty() => {
                            for addr in &info.addrs {
                                self.swarm
                                    .behaviour_mut()
                                    .kad
                                    .add_address(&lookup.peer, addr.clone());
                            }
                            for (bytes, reply) in lookup.sends {
                                self.dispatch(lookup.peer, bytes, info.addrs.clone(), reply);
                            }
                        }
                        _ if lookup.attempts < LOOKUP_ATTEMPTS => {
                            debug!(peer = %lookup.peer, attempt = lookup.attempts, "peer not found yet");
                            self.lookup_retries.push(PendingLookup {
                                retry_at: Instant::now() + LOOKUP_RETRY,
                                ..lookup
                            });
                        }
                        _ => {
                            for (_, reply) in lookup.sends {
                                let _ = reply.send(Err(NetError::UnknownPeer(lookup.peer)));
                            }
                        }
                    }
                }
                kad::QueryResult::GetProviders(result) => {
                    let finished = step.last;
                    if let Some((found, _)) = self.provider_queries.get_mut(&id)
                        && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result
                    {
                        found.extend(providers);
                    }
                    if finished && let Some((found, reply)) = self.provider_queries.remove(&id) {
                        let mut list: Vec<PeerId> = found.into_iter().collect();
                        list.sort_by_key(|p| p.to_string());
                        let _ = reply.send(Ok(list));
                    }
                }
                kad::QueryResult::Bootstrap(result) => {
                    debug!("kademlia bootstrap step: {result:?}")
                }
                kad::QueryResult::StartProviding(result) => debug!("provider record: {result:?}"),
                _ => {}
            },
            _ => {}
        }
    }
}

/// The topics a node joins: the catch-all alone when it observes everything (every intent of
/// its own capabilities comes on the catch-all too), else the topics of the capabilities it
/// serves. Never both: an intent is published on both topics, so a node on both would receive,
/// decode and verify each intent twice.
fn subscriptions(config: &NetConfig) -> Vec<String> {
    if config.observe_all {
        vec![TOPIC_ALL.to_owned()]
    } else {
        let mut topics: Vec<String> = config
            .capabilities
            .iter()
            .map(|c| capability_topic(c))
            .collect();
        topics.dedup();
        topics
    }
}

fn provider_key(capability: &str) -> kad::RecordKey {
    kad::RecordKey::new(&format!("pvl/cap/{capability}"))
}

fn capability_of(object: &SignedObject) -> Option<&str> {
    match object.body() {
        Body::Intent(intent) => Some(&intent.capability),
        Body::CapabilityAd(ad) => Some(&ad.capability),
        _ => None,
    }
}

fn gossip_topics(object: &SignedObject) -> Result<Vec<String>, PublishError> {
    match capability_of(object) {
        Some(capability) => Ok(vec![TOPIC_ALL.to_owned(), capability_topic(capability)]),
        None => Err(PublishError::NotGossiped(object.kind().name())),
    }
}

/// Decides what gossipsub does with a message: accept (forward), reject (penalise the
/// sender) or ignore (drop without penalty: stale or early, which honest peers can cause).
fn validate_gossip(
    data: &[u8],
    topic: &TopicHash,
) -> Result<SignedObject, (MessageAcceptance, String)> {
    let object =
        SignedObject::decode(data).map_err(|e| (MessageAcceptance::Reject, e.to_string()))?;
    if !matches!(object.kind(), Kind::Intent | Kind::CapabilityAd) {
        return Err((
            MessageAcceptance::Reject,
            format!("a {} is never gossiped", object.kind()),
        ));
    }
    let on_right_topic = topic.as_str() == TOPIC_ALL
        || capability_of(&object).is_some_and(|c| capability_topic(c) == topic.as_str());
    if !on_right_topic {
        return Err((
            MessageAcceptance::Reject,
            format!("object published on the wrong topic {topic}"),
        ));
    }
    check_fresh(&object, now_ms()).map_err(|e| (MessageAcceptance::Ignore, e.to_string()))?;
    Ok(object)
}

/// Of the connected `peers` (each with when it was last used, `None` for never), the `excess`
/// least recently used to close: never a gossip `mesh` peer, nor one used within
/// [`TRIM_GRACE`] of `now` (a peer never used counts as used now).
fn idle_to_close(
    peers: impl Iterator<Item = (PeerId, Option<Instant>)>,
    mesh: &HashSet<PeerId>,
    now: Instant,
    excess: usize,
) -> Vec<PeerId> {
    let mut idle: Vec<(PeerId, Instant)> = peers
        .filter(|(p, _)| !mesh.contains(p))
        .map(|(p, at)| (p, at.unwrap_or(now)))
        .filter(|(_, at)| now.saturating_duration_since(*at) >= TRIM_GRACE)
        .collect();
    idle.sort_by_key(|(_, at)| *at);
    idle.into_iter().take(excess).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_pause_doubles_and_stays_within_its_random_range() {
        for _ in 0..200 {
            for (attempt, low) in [(1, 100), (2, 200), (3, 400)] {
                let pause = retry_pause(attempt);
                let low = Duration::from_millis(low);
                assert!(pause >= low && pause < 2 * low, "{attempt}: {pause:?}");
            }
        }
        // All the pauses of a send together stay well inside the offer windows pvl uses.
        let worst: Duration = (1..SEND_ATTEMPTS).map(|a| RETRY_PAUSE * 2u32.pow(a)).sum();
        assert!(worst <= Duration::from_millis(1400), "{worst:?}");
    }

    #[test]
    fn too_many_connections_close_the_least_recently_used_outside_the_mesh_and_the_grace() {
        let now = Instant::now();
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let used = [
            ago(30), // in the mesh: kept however old
            ago(20),
            None,                       // never used: as if used now, kept
            Some(now - TRIM_GRACE / 2), // used within the grace: kept
            ago(5),                     // idle past the grace
            Some(now - TRIM_GRACE),     // exactly at the grace: may close
        ];
        let mesh: HashSet<PeerId> = [peers[0]].into();
        let all = || peers.iter().copied().zip(used);
        // Least recently used first: 20 s, then 5 s, then the one at the grace.
        assert_eq!(
            idle_to_close(all(), &mesh, now, 2),
            vec![peers[1], peers[4]]
        );
        assert_eq!(
            idle_to_close(all(), &mesh, now, 10),
            vec![peers[1], peers[4], peers[5]],
            "never the mesh peer, the unused one or the one within the grace"
        );
        assert!(idle_to_close(all(), &mesh, now, 0).is_empty());
        // A connection made at start-up, idle since, closes once the grace has passed.
        let made = now - Duration::from_secs(3);
        assert!(TRIM_GRACE <= Duration::from_secs(3));
        assert_eq!(
            idle_to_close([(peers[2], Some(made))].into_iter(), &mesh, now, 1),
            vec![peers[2]]
        );
    }
}
