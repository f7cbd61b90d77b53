//! NAT traversal: AutoNAT, circuit relay v2 and DCUtR, and the node's reachability.
//!
//! # What runs
//!
//! - **AutoNAT v1** (`/libp2p/autonat/1.0.0`), as client and server on every node. A node asks
//!   connected peers to dial its candidate addresses back; the first answer sets its status
//!   (public with the confirmed address, or private), later answers change it only after
//!   several agree. v1 rather than v2: v1 aggregates the probes into one NAT status with a
//!   confidence and confirms the external address itself, which is exactly the question
//!   "is this node reachable?" that [`Reachability`] answers; v2 tests one address at a time
//!   and leaves the aggregation to the caller, and fewer deployed peers serve it. Non-global
//!   (private-range) addresses are probed too (`only_global_ips = false`), so that testnets
//!   on a LAN or in network namespaces behave like the Internet does.
//! - **Circuit relay v2**: every node has the relay *client* (its transport listens on and
//!   dials `/p2p-circuit` addresses); a node with [`NetConfig::relay_service`] also *serves* as
//!   a relay, within [`RelayLimits`]. A node with relays configured ([`NetConfig::relays`])
//!   that AutoNAT finds private, or that is still unknown [`RESERVE_AFTER`] after start,
//!   reserves a slot on every configured relay (listening on `<relay>/p2p-circuit`) and
//!   confirms the circuit address as an external address, so identify and Kademlia spread it
//!   and direct messages can dial it.
//! - **DCUtR** (`/libp2p/dcutr`): over a relayed connection both ends exchange their observed
//!   addresses and dial each other at once (hole punching); on success the direct connection
//!   replaces the relayed one.
//!
//! A relay node is declared public by its operator: its non-loopback listen addresses are
//! confirmed as external addresses at once (the relay protocol is only served by a node with
//! a confirmed external address), without waiting for AutoNAT.
//!
//! # Private networks
//!
//! The pre-shared key wraps every byte stream, relayed ones included: in private mode the
//! transport is `(TCP or relay circuit) -> pnet -> noise -> yamux`, so the two ends of a
//! circuit must share the key even though the relay in between already does. A relay in
//! private mode grants reservations and circuits only to peers on the allow-list, and the
//! allow-list check on established connections applies to relayed connections like any other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::Swarm;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, relay};
use tracing::{debug, info, warn};

use crate::config::NetConfig;

/// How long a node with relays configured waits for AutoNAT to call it public before it
/// reserves relay slots anyway.
pub const RESERVE_AFTER: Duration = Duration::from_secs(20);
/// How long a failed relay reservation waits before it is tried again.
const RESERVE_RETRY: Duration = Duration::from_secs(10);
/// Most relays a node reserves slots on (and configures).
pub const MAX_RELAYS: usize = 8;
/// Most AutoNAT servers whose failed dial-backs are remembered for the reason text.
const MAX_REMEMBERED_SERVERS: usize = 64;
/// Most peers whose hole-punching outcome is remembered.
const MAX_PUNCHED: usize = 1024;

/// The bounds of a relay this node serves (circuit relay v2 limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held at once, over all peers.
    pub max_reservations: usize,
    /// Reservations one peer may hold at once.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the client must renew it.
    pub reservation_duration: Duration,
    /// Circuits relayed at once, over all peers.
    pub max_circuits: usize,
    /// Circuits one peer may have open at once.
    pub max_circuits_per_peer: usize,
    /// How long one circuit may stay open.
    pub max_circuit_duration: Duration,
    /// Bytes relayed per circuit, in each direction, before it is closed.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: 64,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(10 * 60),
            max_circuit_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Whether and how other nodes can reach this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// Still finding out (AutoNAT has not answered yet).
    Unknown {
        /// What is going on, in words.
        detail: String,
    },
    /// Publicly reachable at these confirmed external addresses.
    Public {
        /// The confirmed external addresses.
        addresses: Vec<Multiaddr>,
    },
    /// Not reachable by others: they cannot dial it, and it has no relay slot.
    Private {
        /// Why, in one line, with what to do about it.
        reason: String,
    },
    /// Reachable through relays: other nodes dial the circuit addresses.
    Relayed {
        /// The relays holding a slot for this node.
        relays: Vec<PeerId>,
        /// The circuit addresses (`<relay>/p2p-circuit`).
        addresses: Vec<Multiaddr>,
    },
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |addrs: &[Multiaddr]| {
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Reachability::Unknown { detail } => write!(f, "unknown ({detail})"),
            Reachability::Public { addresses } => write!(f, "public at {}", join(addresses)),
            Reachability::Private { reason } => write!(f, "private: {reason}"),
            Reachability::Relayed { addresses, .. } => {
                write!(f, "reachable through a relay at {}", join(addresses))
            }
        }
    }
}

/// How the connections to one peer run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// At least one direct connection, made without hole punching.
    Direct,
    /// A direct connection made by DCUtR hole punching after a relayed one.
    HolePunched,
    /// Only relayed connections.
    Relayed,
}

/// The NAT protocols, as one sub-behaviour of the swarm.
#[derive(NetworkBehaviour)]
pub(crate) struct NatBehaviour {
    autonat: autonat::Behaviour,
    relay_client: relay::client::Behaviour,
    relay: Toggle<relay::Behaviour>,
    dcutr: dcutr::Behaviour,
}

/// The AutoNAT configuration: probes start soon and repeat often enough for a node to learn
/// its status within a minute; private-range addresses count.
fn autonat_config() -> autonat::Config {
    autonat::Config {
        timeout: Duration::from_secs(15),
        boot_delay: Duration::from_secs(3),
        retry_interval: Duration::from_secs(20),
        refresh_interval: Duration::from_secs(5 * 60),
        throttle_server_period: Duration::from_secs(10),
        only_global_ips: false,
        ..Default::default()
    }
}

/// The relay server configuration for `limits`; in private mode only members of the
/// allow-list get reservations and circuits.
fn relay_config(config: &NetConfig) -> relay::Config {
    let limits = config.relay_limits;
    let mut relay = relay::Config {
        max_reservations: limits.max_reservations,
        max_reservations_per_peer: limits.max_reservations_per_peer,
        reservation_duration: limits.reservation_duration,
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: limits.max_circuits_per_peer,
        max_circuit_duration: limits.max_circuit_duration,
        max_circuit_bytes: limits.max_circuit_bytes,
        ..Default::default()
    };
    if let Some(allow) = &config.allow {
        let local = config.keypair.public().to_peer_id();
        let members: HashSet<PeerId> = allow.iter().copied().chain([local]).collect();
        let for_circuits = members.clone();
        relay.reservation_rate_limiters.push(Box::new(
            move |peer: PeerId, _: &Multiaddr, _: Instant| members.contains(&peer),
        ));
        relay.circuit_src_rate_limiters.push(Box::new(
            move |peer: PeerId, _: &Multiaddr, _: Instant| for_circuits.contains(&peer),
        ));
    }
    relay
}

impl NatBehaviour {
    pub(crate) fn new(config: &NetConfig, relay_client: relay::client::Behaviour) -> Self {
        let local = config.keypair.public().to_peer_id();
        let relay = config
            .relay_service
            .then(|| relay::Behaviour::new(local, relay_config(config)));
        NatBehaviour {
            autonat: autonat::Behaviour::new(local, autonat_config()),
            relay_client,
            relay: Toggle::from(relay),
            dcutr: dcutr::Behaviour::new(local),
        }
    }
}

/// What AutoNAT said last.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probed {
    Unknown,
    Public,
    Private,
}

/// One configured relay and this node's slot on it.
#[derive(Debug, Clone)]
struct RelaySlot {
    addr: Multiaddr,
    listener: Option<ListenerId>,
    /// The circuit address, once the reservation was accepted.
    reserved: Option<Multiaddr>,
    retry_at: Option<Instant>,
    last_error: Option<String>,
}

/// The reachability state: pure bookkeeping fed by swarm events, unit-tested without sockets.
#[derive(Debug)]
pub(crate) struct NatState {
    started: Instant,
    relay_service: bool,
    probed: Probed,
    failed_servers: HashSet<PeerId>,
    probes_sent: u32,
    last_probe_error: Option<String>,
    relays: BTreeMap<PeerId, RelaySlot>,
    /// Open connections: (relayed?) per connection, per peer.
    connections: HashMap<PeerId, HashMap<ConnectionId, bool>>,
    /// Peers a direct connection was hole punched to.
    punched: HashSet<PeerId>,
    /// Listen addresses a relay node confirms as external ones.
    to_confirm: Vec<Multiaddr>,
}

/// The relay's peer id in `addr` (its last `/p2p/`), if any.
pub(crate) fn relay_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback() || ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_loopback() || ip.is_unspecified(),
        _ => false,
    })
}

impl NatState {
    pub(crate) fn new(config: &NetConfig, now: Instant) -> Self {
        let relays = config
            .relays
            .iter()
            .filter_map(|addr| {
                relay_peer(addr).map(|peer| {
                    (
                        peer,
                        RelaySlot {
                            addr: addr.clone(),
                            listener: None,
                            reserved: None,
                            retry_at: None,
                            last_error: None,
                        },
                    )
                })
            })
            .take(MAX_RELAYS)
            .collect();
        NatState {
            started: now,
            relay_service: config.relay_service,
            probed: Probed::Unknown,
            failed_servers: HashSet::new(),
            probes_sent: 0,
            last_probe_error: None,
            relays,
            connections: HashMap::new(),
            punched: HashSet::new(),
            to_confirm: Vec::new(),
        }
    }

    /// Whether relay slots should be reserved now.
    fn wants_relay(&self, now: Instant) -> bool {
        match self.probed {
            Probed::Public => false,
            Probed::Private => true,
            Probed::Unknown => now.duration_since(self.started) >= RESERVE_AFTER,
        }
    }

    /// The relays to start a reservation on now (no listener, not waiting for a retry).
    fn due_reservations(&self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        if !self.wants_relay(now) {
            return Vec::new();
        }
        self.relays
            .iter()
            .filter(|(_, slot)| slot.listener.is_none() && slot.retry_at.is_none_or(|at| at <= now))
            .map(|(peer, slot)| (*peer, slot.addr.clone().with(Protocol::P2pCircuit)))
            .collect()
    }

    fn autonat_status(&mut self, status: &autonat::NatStatus) {
        self.probed = match status {
            autonat::NatStatus::Public(_) => Probed::Public,
            autonat::NatStatus::Private => Probed::Private,
            autonat::NatStatus::Unknown => Probed::Unknown,
        };
    }

    fn probe_failed(&mut self, server: Option<PeerId>, error: String) {
        if let Some(server) = server
            && self.failed_servers.len() < MAX_REMEMBERED_SERVERS
        {
            self.failed_servers.insert(server);
        }
        self.last_probe_error = Some(error);
    }

    fn probe_succeeded(&mut self, server: PeerId) {
        self.failed_servers.remove(&server);
    }

    fn reservation_accepted(&mut self, relay: PeerId) -> Option<Multiaddr> {
        let slot = self.relays.get_mut(&relay)?;
        let circuit = slot.addr.clone().with(Protocol::P2pCircuit);
        slot.reserved = Some(circuit.clone());
        slot.last_error = None;
        Some(circuit)
    }

    /// A circuit listener closed: the slot is gone; returns the circuit address it had.
    fn listener_closed(
        &mut self,
        listener: ListenerId,
        error: String,
        now: Instant,
    ) -> Option<Multiaddr> {
        let slot = self
            .relays
            .values_mut()
            .find(|slot| slot.listener == Some(listener))?;
        slot.listener = None;
        slot.retry_at = Some(now + RESERVE_RETRY);
        slot.last_error = Some(error);
        slot.reserved.take()
    }

    fn connection_opened(&mut self, peer: PeerId, id: ConnectionId, relayed: bool) {
        self.connections
            .entry(peer)
            .or_default()
            .insert(id, relayed);
    }

    fn connection_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(conns) = self.connections.get_mut(&peer) {
            conns.remove(&id);
            if conns.is_empty() {
                self.connections.remove(&peer);
                self.punched.remove(&peer);
            }
        }
    }

    fn hole_punched(&mut self, peer: PeerId) {
        if self.punched.len() < MAX_PUNCHED {
            self.punched.insert(peer);
        }
    }

    /// How the connections to `peer` run, while connected.
    pub(crate) fn link(&self, peer: &PeerId) -> Option<Link> {
        let conns = self.connections.get(peer)?;
        if conns.values().all(|relayed| *relayed) {
            Some(Link::Relayed)
        } else if self.punched.contains(peer) {
            Some(Link::HolePunched)
        } else {
            Some(Link::Direct)
        }
    }

    /// The node's reachability, given the swarm's confirmed external addresses.
    pub(crate) fn reachability(&self, external: &[Multiaddr], now: Instant) -> Reachability {
        let reserved: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .filter_map(|(peer, slot)| slot.reserved.clone().map(|a| (*peer, a)))
            .collect();
        if !reserved.is_empty() {
            return Reachability::Relayed {
                relays: reserved.iter().map(|(p, _)| *p).collect(),
                addresses: reserved.into_iter().map(|(_, a)| a).collect(),
            };
        }
        // Without the trailing `/p2p/<self>` (AutoNAT confirms with it, the relay service
        // without it), each address once.
        let mut direct: Vec<Multiaddr> = external
            .iter()
            .filter(|a| !a.iter().any(|p| p == Protocol::P2pCircuit))
            .map(|a| {
                let mut a = a.clone();
                if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                    a.pop();
                }
                a
            })
            .collect();
        direct.sort();
        direct.dedup();
        if self.probed == Probed::Public || (self.relay_service && !direct.is_empty()) {
            return Reachability::Public { addresses: direct };
        }
        let relay_state = || -> String {
            if self.relays.is_empty() {
                return "no relay configured — set [network] relays".to_owned();
            }
            let errors: Vec<String> = self
                .relays
                .iter()
                .filter_map(|(peer, slot)| {
                    slot.last_error
                        .as_ref()
                        .map(|e| format!("relay {peer}: {e}"))
                })
                .collect();
            if errors.is_empty() {
                format!("reserving a slot on {} relay(s)", self.relays.len())
            } else {
                format!("relay reservation failed: {}", errors.join("; "))
            }
        };
        match self.probed {
            Probed::Private => {
                let servers = self.failed_servers.len();
                let detail = self
                    .last_probe_error
                    .as_deref()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default();
                Reachability::Private {
                    reason: format!(
                        "AutoNAT: dial-back failed from {servers} server(s){detail}; {}",
                        relay_state()
                    ),
                }
            }
            _ => {
                let waited = now.duration_since(self.started).as_secs();
                let probing = match (&self.last_probe_error, self.probes_sent) {
                    (Some(e), _) => format!("AutoNAT has no answer yet (last: {e})"),
                    (None, 0) => "AutoNAT has not probed yet".to_owned(),
                    (None, n) => format!("AutoNAT sent {n} probe(s), no answer yet"),
                };
                if self.wants_relay(now) {
                    Reachability::Unknown {
                        detail: format!("{probing} after {waited} s; {}", relay_state()),
                    }
                } else {
                    Reachability::Unknown {
                        detail: format!("{probing} after {waited} s"),
                    }
                }
            }
        }
    }

    /// Notes what a swarm event says about connections, circuit listeners and listen
    /// addresses. Called for every swarm event, before the event loop handles it.
    pub(crate) fn observe<E>(&mut self, event: &SwarmEvent<E>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.connection_opened(*peer_id, *connection_id, is_relayed(endpoint)),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => self.connection_closed(*peer_id, *connection_id),
            SwarmEvent::NewListenAddr { address, .. }
                if self.relay_service
                    && !is_loopback(address)
                    && !address.iter().any(|p| p == Protocol::P2pCircuit) =>
            {
                self.to_confirm.push(address.clone());
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let error = match reason {
                    Ok(()) => "the relay closed the reservation".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.lost_listener(*listener_id, error);
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.lost_listener(*listener_id, error.to_string());
            }
            _ => {}
        }
    }

    fn lost_listener(&mut self, listener: ListenerId, error: String) {
        if let Some(slot) = self.relays.values().find(|s| s.listener == Some(listener)) {
            warn!(relay = %slot.addr, "relay slot lost: {error}");
        }
        // The circuit address stays an external address until the swarm expires it below.
        let _ = self.listener_closed(listener, error, Instant::now());
    }

    /// Periodic work: confirm a relay node's addresses, start due reservations, drop the
    /// external circuit addresses of lost slots.
    pub(crate) fn tick<B: NetworkBehaviour>(&mut self, swarm: &mut Swarm<B>) {
        for addr in std::mem::take(&mut self.to_confirm) {
            info!(%addr, "relay service: listen address confirmed as external");
            swarm.add_external_address(addr);
        }
        let reserved: HashSet<Multiaddr> = self
            .relays
            .values()
            .filter_map(|s| s.reserved.clone())
            .collect();
        let stale: Vec<Multiaddr> = swarm
            .external_addresses()
            .filter(|a| a.iter().any(|p| p == Protocol::P2pCircuit) && !reserved.contains(*a))
            .cloned()
            .collect();
        for addr in stale {
            swarm.remove_external_address(&addr);
        }
        let now = Instant::now();
        for (relay, circuit) in self.due_reservations(now) {
            match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    info!(%relay, "reserving a relay slot");
                    if let Some(slot) = self.relays.get_mut(&relay) {
                        slot.listener = Some(listener);
                        slot.retry_at = None;
                    }
                }
                Err(e) => {
                    if let Some(slot) = self.relays.get_mut(&relay) {
                        slot.retry_at = Some(now + RESERVE_RETRY);
                        slot.last_error = Some(e.to_string());
                    }
                }
            }
        }
    }

    /// Handles an event of the NAT protocols.
    pub(crate) fn on_event<B: NetworkBehaviour>(
        &mut self,
        swarm: &mut Swarm<B>,
        event: NatBehaviourEvent,
    ) {
        match event {
            NatBehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                info!(?old, ?new, "AutoNAT status changed");
                self.autonat_status(&new);
            }
            NatBehaviourEvent::Autonat(autonat::Event::OutboundProbe(probe)) => match probe {
                autonat::OutboundProbeEvent::Request { peer, .. } => {
                    self.probes_sent = self.probes_sent.saturating_add(1);
                    debug!(%peer, "AutoNAT probe sent");
                }
                autonat::OutboundProbeEvent::Response { peer, address, .. } => {
                    debug!(%peer, %address, "AutoNAT: dialled back");
                    self.probe_succeeded(peer);
                }
                autonat::OutboundProbeEvent::Error { peer, error, .. } => {
                    let error = probe_error(&error);
                    debug!(?peer, "AutoNAT probe failed: {error}");
                    self.probe_failed(peer, error);
                }
            },
            NatBehaviourEvent::Autonat(autonat::Event::InboundProbe(_)) => {}
            NatBehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                if let Some(circuit) = self.reservation_accepted(relay_peer_id)
                    && !renewal
                {
                    info!(relay = %relay_peer_id, addr = %circuit, "relay slot reserved");
                    swarm.add_external_address(circuit);
                }
            }
            NatBehaviourEvent::RelayClient(event) => debug!("relay client: {event:?}"),
            NatBehaviourEvent::Relay(event) => debug!("relay service: {event:?}"),
            NatBehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => {
                    info!(peer = %remote_peer_id, "hole punched: direct connection");
                    self.hole_punched(remote_peer_id);
                }
                Err(e) => info!(peer = %remote_peer_id, "hole punching failed: {e}"),
            },
        }
    }
}

/// The relay client transport of a public-mode node, upgraded like TCP (noise, yamux).
pub(crate) fn relayed(
    transport: relay::client::Transport,
    keypair: &libp2p::identity::Keypair,
    yamux: libp2p::yamux::Config,
) -> Result<
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use libp2p::Transport;
    let noise = libp2p::noise::Config::new(keypair)?;
    Ok(transport
        .upgrade(libp2p::core::upgrade::Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux)
        .map(|(peer, muxer), _| (peer, libp2p::core::muxing::StreamMuxerBox::new(muxer)))
        .boxed())
}

fn is_relayed(endpoint: &ConnectedPoint) -> bool {
    endpoint.is_relayed()
}

fn probe_error(error: &autonat::OutboundProbeError) -> String {
    match error {
        autonat::OutboundProbeError::NoServer => "no AutoNAT server connected".to_owned(),
        autonat::OutboundProbeError::NoAddresses => "no address to test yet".to_owned(),
        autonat::OutboundProbeError::OutboundRequest(e) => format!("request failed: {e}"),
        autonat::OutboundProbeError::Response(e) => format!("dial-back failed: {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;

    fn config(relays: usize) -> NetConfig {
        let mut config = NetConfig::new(Keypair::generate_ed25519());
        config.relays = (0..relays)
            .map(|i| {
                let peer = PeerId::random();
                format!("/ip4/10.0.0.{}/tcp/4001/p2p/{peer}", i + 1)
                    .parse()
                    .unwrap()
            })
            .collect();
        config
    }

    #[test]
    fn unknown_until_autonat_answers_then_private_says_why() {
        let start = Instant::now();
        let mut state = NatState::new(&config(0), start);
        assert!(matches!(
            state.reachability(&[], start),
            Reachability::Unknown { .. }
        ));
        state.probe_failed(Some(PeerId::random()), "dial-back failed: DialError".into());
        state.probe_failed(Some(PeerId::random()), "dial-back failed: DialError".into());
        state.autonat_status(&autonat::NatStatus::Private);
        let Reachability::Private { reason } = state.reachability(&[], start) else {
            panic!("expected private");
        };
        assert!(
            reason.contains("dial-back failed from 2 server(s)"),
            "{reason}"
        );
        assert!(
            reason.contains("no relay configured — set [network] relays"),
            "{reason}"
        );
        // Never reserves without relays.
        assert!(state.due_reservations(start + RESERVE_AFTER).is_empty());
    }

    #[test]
    fn public_lists_the_confirmed_direct_addresses() {
        let start = Instant::now();
        let mut state = NatState::new(&config(1), start);
        let addr: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().unwrap();
        state.autonat_status(&autonat::NatStatus::Public(addr.clone()));
        assert_eq!(
            state.reachability(std::slice::from_ref(&addr), start),
            Reachability::Public {
                addresses: vec![addr]
            }
        );
        // A public node does not reserve relay slots, however long it runs.
        assert!(
            state
                .due_reservations(start + RESERVE_AFTER * 10)
                .is_empty()
        );
    }

    #[test]
    fn private_node_reserves_then_is_relayed_and_a_lost_slot_is_retried() {
        let start = Instant::now();
        let config = config(2);
        let mut state = NatState::new(&config, start);
        assert!(
            state.due_reservations(start).is_empty(),
            "waits for AutoNAT first"
        );
        state.autonat_status(&autonat::NatStatus::Private);
        let due = state.due_reservations(start);
        assert_eq!(due.len(), 2);
        assert!(
            due.iter()
                .all(|(_, a)| a.iter().last() == Some(Protocol::P2pCircuit))
        );
        let (relay, _) = due[0];
        let listener = ListenerId::next();
        state.relays.get_mut(&relay).unwrap().listener = Some(listener);
        let circuit = state.reservation_accepted(relay).unwrap();
        let Reachability::Relayed { relays, addresses } = state.reachability(&[], start) else {
            panic!("expected relayed");
        };
        assert_eq!(relays, vec![relay]);
        assert_eq!(addresses, vec![circuit.clone()]);
        // The slot is lost: private again with the relay's error, retried later.
        let lost = state.listener_closed(listener, "connection reset".into(), start);
        assert_eq!(lost, Some(circuit));
        let Reachability::Private { reason } = state.reachability(&[], start) else {
            panic!("expected private");
        };
        assert!(reason.contains("connection reset"), "{reason}");
        assert!(
            !state
                .due_reservations(start)
                .iter()
                .any(|(p, _)| *p == relay)
        );
        assert!(
            state
                .due_reservations(start + RESERVE_RETRY)
                .iter()
                .any(|(p, _)| *p == relay)
        );
    }

    #[test]
    fn unknown_for_too_long_reserves_anyway() {
        let start = Instant::now();
        let state = NatState::new(&config(1), start);
        assert!(state.due_reservations(start).is_empty());
        assert_eq!(state.due_reservations(start + RESERVE_AFTER).len(), 1);
        let Reachability::Unknown { detail } = state.reachability(&[], start + RESERVE_AFTER)
        else {
            panic!("expected unknown");
        };
        assert!(
            detail.contains("reserving a slot on 1 relay(s)"),
            "{detail}"
        );
    }

    #[test]
    fn links_say_relayed_direct_or_hole_punched() {
        let start = Instant::now();
        let mut state = NatState::new(&config(0), start);
        let peer = PeerId::random();
        assert_eq!(state.link(&peer), None);
        let relayed = ConnectionId::new_unchecked(1);
        let direct = ConnectionId::new_unchecked(2);
        state.connection_opened(peer, relayed, true);
        assert_eq!(state.link(&peer), Some(Link::Relayed));
        state.connection_opened(peer, direct, false);
        assert_eq!(state.link(&peer), Some(Link::Direct));
        state.hole_punched(peer);
        assert_eq!(state.link(&peer), Some(Link::HolePunched));
        state.connection_closed(peer, relayed);
        state.connection_closed(peer, direct);
        assert_eq!(state.link(&peer), None);
        assert!(!state.punched.contains(&peer));
    }

    #[test]
    fn a_relay_node_with_confirmed_addresses_is_public_before_autonat() {
        let start = Instant::now();
        let mut config = config(0);
        config.relay_service = true;
        let state = NatState::new(&config, start);
        let addr: Multiaddr = "/ip4/10.77.0.3/tcp/4001".parse().unwrap();
        assert!(matches!(
            state.reachability(&[addr], start),
            Reachability::Public { .. }
        ));
    }
}
