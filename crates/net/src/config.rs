//! Network configuration, swarm keys and topic names.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId, identity::Keypair};

use crate::event_loop::NetError;
use crate::guard::FloodControl;
use crate::nat::{MAX_RELAYS, RelayLimits};

/// The catch-all gossip topic: every intent and capability ad is published here and on its
/// capability's topic. A node joins the catch-all *or* its capability topics, never both.
pub const TOPIC_ALL: &str = "pvl/1/all";

/// The gossip topic of one capability.
pub fn capability_topic(capability: &str) -> String {
    format!("pvl/1/cap/{capability}")
}

/// The gossipsub message id of `data` published on `topic` (SPEC.md §13): SHA-256 of the topic's
/// UTF-8 bytes, one `0x00` byte and the data, as 64 lowercase hex digits. The id travels in
/// IHAVE / IWANT / IDONTWANT as those 64 ASCII bytes. The same object on two topics is two
/// messages. Golden vectors: `protocol/tests/vectors/net/message-ids.json`.
pub fn gossip_message_id(topic: &str, data: &[u8]) -> String {
    let mut hashed = Vec::with_capacity(topic.len() + 1 + data.len());
    hashed.extend_from_slice(topic.as_bytes());
    hashed.push(0);
    hashed.extend_from_slice(data);
    hex::encode(pvl_protocol::sha256(&hashed))
}

/// A private network's pre-shared key, in the usual libp2p swarm-key file format:
///
/// ```text
/// /key/swarm/psk/1.0.0/
/// /base16/
/// <64 hex digits>
/// ```
#[derive(Clone)]
pub struct SwarmKey(pub(crate) PreSharedKey);

impl SwarmKey {
    /// A new random key.
    pub fn generate() -> Result<Self, NetError> {
        let mut bytes = [0u8; 32];
        getrandom_fill(&mut bytes)?;
        Ok(SwarmKey(PreSharedKey::new(bytes)))
    }

    /// Parses the swarm-key file format.
    pub fn parse(text: &str) -> Result<Self, NetError> {
        text.parse::<PreSharedKey>()
            .map(SwarmKey)
            .map_err(|e| NetError::Config(format!("not a swarm key file: {e}")))
    }

    /// The file contents (this is the secret itself).
    pub fn to_file_contents(&self) -> String {
        format!("{}\n", self.0)
    }

    /// A fingerprint that identifies the key without revealing it.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }
}

impl std::fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwarmKey(fingerprint {})", self.fingerprint())
    }
}

fn getrandom_fill(bytes: &mut [u8]) -> Result<(), NetError> {
    getrandom::fill(bytes).map_err(|e| NetError::Config(format!("no system randomness: {e}")))
}

/// How long the node may take to decide on a direct message before the event loop answers
/// `Refused("busy: ...")` for it (well inside the sender's 15 s request timeout).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Most direct messages waiting for the node's decision at once; beyond it a direct message is
/// refused at once as `busy` (memory stays bounded under any flood).
pub const MAX_PENDING_ACKS: usize = 4096;

/// Who acknowledges a direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectAcks {
    /// The receiving node decides: every [`crate::NetEvent::Object`] that came directly carries
    /// an [`crate::AckId`] the node answers with [`crate::Client::acknowledge`]. Without an
    /// answer within `timeout` the event loop acknowledges `Refused("busy: ...")`.
    ByNode {
        /// How long the node may take.
        timeout: Duration,
    },
    /// The event loop acknowledges `Accepted` as soon as the object decodes, verifies, is fresh
    /// and is not a replay, before anyone looked at its context. Only for tools and tests of
    /// the network layer alone; a node never uses it.
    OnReceipt,
}

impl Default for DirectAcks {
    fn default() -> Self {
        DirectAcks::ByNode {
            timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

/// Everything the network layer needs to start.
#[derive(Clone)]
pub struct NetConfig {
    /// The node identity (ed25519); also its protocol signing key.
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001` and `/ip4/0.0.0.0/udp/4001/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, each ending in `/p2p/<peer id>`. None: this node is a bootstrap node.
    pub bootstrap: Vec<Multiaddr>,
    /// The private network key; `Some` turns private mode on (TCP only).
    pub swarm_key: Option<SwarmKey>,
    /// In private mode, the only peers allowed to stay connected (the node itself is implied).
    pub allow: Option<HashSet<PeerId>>,
    /// Capabilities this node serves: it provides them in the DHT and, unless `observe_all`,
    /// subscribes to their topics.
    pub capabilities: Vec<String>,
    /// Whether to subscribe to the catch-all topic and so see every intent. The node then joins
    /// only the catch-all (the intents of its own capabilities arrive there as well), so that it
    /// never receives and verifies an intent twice.
    pub observe_all: bool,
    /// Connections kept at most, in total.
    pub max_connections: u32,
    /// Discovered peers (and peers from the peer book) are dialled while fewer than this many
    /// are connected; the bootstrap peers are dialled again while fewer are connected.
    pub target_peers: usize,
    /// Above this many connected peers the node closes connections to peers it has not used
    /// lately (never gossip mesh peers, never a connection younger than a few seconds), down to
    /// halfway between `target_peers` and this. Must be at least `target_peers`.
    pub max_peers: usize,
    /// Where the peer book (addresses of peers reached, kept across restarts) is saved; `None`
    /// keeps it in memory only.
    pub peer_book: Option<std::path::PathBuf>,
    /// How long a publish waits for subscribed peers before it is reported as not sent.
    pub publish_timeout: Duration,
    /// Gossipsub heartbeat (mesh maintenance) interval.
    pub heartbeat: Duration,
    /// Capacity of the command and event channels.
    pub channel_capacity: usize,
    /// How many object ids the replay guard remembers.
    pub replay_capacity: usize,
    /// Lifetime of provider records in the DHT.
    pub provider_record_ttl: Duration,
    /// Who acknowledges direct messages (by default the node, after its admission check).
    pub direct_acks: DirectAcks,
    /// Whether direct messages use sessions (`/pvl/direct/2`, SPEC.md §14.6: many objects on
    /// one stream) with peers that speak them. Off, the node neither offers nor opens sessions
    /// and sends and answers with `/pvl/direct/1` alone, as nodes before sessions did. On by
    /// default.
    pub direct_sessions: bool,
    /// How long a direct message may wait for its acknowledgement (and a session for a peer
    /// to take its bytes) before the sender gives up (SPEC.md §14.4: 15 s).
    pub direct_timeout: Duration,
    /// Per-peer budgets, offences and bans (SPEC.md §20).
    pub flood: FloodControl,
    /// Circuit relays (each ending in `/p2p/<peer id>`, at most [`crate::MAX_RELAYS`]) this
    /// node reserves a slot on when AutoNAT finds it private (see the `nat` module).
    pub relays: Vec<Multiaddr>,
    /// Whether this node serves as a circuit relay v2 for others (a public node).
    pub relay_service: bool,
    /// The bounds of the relay this node serves, when `relay_service` is on.
    pub relay_limits: RelayLimits,
}

impl NetConfig {
    /// Defaults for `keypair`: listen on all interfaces on random ports, no bootstrap peers.
    pub fn new(keypair: Keypair) -> Self {
        NetConfig {
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            swarm_key: None,
            allow: None,
            capabilities: Vec::new(),
            observe_all: true,
            max_connections: 128,
            target_peers: 16,
            max_peers: 32,
            peer_book: None,
            publish_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_millis(500),
            channel_capacity: 1024,
            replay_capacity: 100_000,
            provider_record_ttl: Duration::from_secs(60 * 60),
            direct_acks: DirectAcks::default(),
            direct_sessions: true,
            direct_timeout: Duration::from_secs(15),
            flood: FloodControl::default(),
            relays: Vec::new(),
            relay_service: false,
            relay_limits: RelayLimits::default(),
        }
    }

    /// Whether this node runs in private (pre-shared key) mode.
    pub fn is_private(&self) -> bool {
        self.swarm_key.is_some()
    }

    /// Checks the configuration, naming the first problem.
    pub(crate) fn check(&self) -> Result<Vec<(PeerId, Multiaddr)>, NetError> {
        if self.keypair.clone().try_into_ed25519().is_err() {
            return Err(NetError::Config(
                "the node identity must be an ed25519 key".into(),
            ));
        }
        for addr in &self.listen {
            let is_quic = addr
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1));
            if is_quic && self.is_private() {
                return Err(NetError::Config(format!(
                    "cannot listen on {addr}: QUIC is off in a private network (pnet protects TCP \
                     streams only)"
                )));
            }
        }
        if self.max_peers < self.target_peers {
            return Err(NetError::Config(format!(
                "max_peers ({}) must be at least target_peers ({})",
                self.max_peers, self.target_peers
            )));
        }
        for capability in &self.capabilities {
            if capability.is_empty() || capability.contains(char::is_whitespace) {
                return Err(NetError::Config(format!(
                    "bad capability name `{capability}`"
                )));
            }
        }
        if self.relays.len() > MAX_RELAYS {
            return Err(NetError::Config(format!(
                "{} relays configured: at most {MAX_RELAYS}",
                self.relays.len()
            )));
        }
        for addr in &self.relays {
            if !matches!(
                addr.iter().last(),
                Some(libp2p::multiaddr::Protocol::P2p(_))
            ) {
                return Err(NetError::Config(format!(
                    "relay address {addr} must end in /p2p/<relay peer id>"
                )));
            }
            if addr
                .iter()
                .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
            {
                return Err(NetError::Config(format!(
                    "relay address {addr} must be the relay's own address, without /p2p-circuit"
                )));
            }
        }
        self.bootstrap
            .iter()
            .map(|addr| match addr.iter().last() {
                Some(libp2p::multiaddr::Protocol::P2p(peer)) => Ok((peer, addr.clone())),
                _ => Err(NetError::Config(format!(
                    "bootstrap address {addr} must end in /p2p/<peer id>"
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_key_round_trips_through_its_file_format() {
        let key = SwarmKey::generate().unwrap();
        let text = key.to_file_contents();
        assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
        let again = SwarmKey::parse(&text).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert!(SwarmKey::parse("nonsense").is_err());
    }

    #[test]
    fn bootstrap_addresses_need_a_peer_id_and_private_mode_refuses_quic() {
        let mut config = NetConfig::new(Keypair::generate_ed25519());
        config.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()];
        assert!(matches!(config.check(), Err(NetError::Config(_))));
        config.bootstrap.clear();
        config.swarm_key = Some(SwarmKey::generate().unwrap());
        config.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
        let err = config.check().unwrap_err().to_string();
        assert!(err.contains("QUIC is off"), "{err}");
    }
}
