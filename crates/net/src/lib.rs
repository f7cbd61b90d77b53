//! # pvl-net: the network layer of a pvl node
//!
//! One [`EventLoop`] owns the libp2p `Swarm`; everything else talks to it through a cloneable
//! [`Client`] (commands with oneshot replies) and receives [`NetEvent`]s (domain events: a
//! verified object arrived, a peer came or went), never raw swarm events. Every channel is
//! bounded.
//!
//! ## The behaviour
//!
//! - **gossipsub** carries intents and capability ads. Each is published on the catch-all topic
//!   `pvl/1/all` and on its capability's topic `pvl/1/cap/<name>`; message ids are
//!   SHA-256(topic, data), so the same object on two topics is two messages. A node joins
//!   **either** the catch-all (an observer: `NetConfig::observe_all`, it sees every intent,
//!   those of its own capabilities included) **or** the topics of the capabilities it serves,
//!   never both, so every node receives, decodes and verifies each intent once. A provider
//!   that only wants the intents it can serve turns `observe_all` off. Messages are
//!   anonymous at the gossipsub level (no libp2p author signature: every pvl object carries its
//!   own, so a second one would only double the verification cost). Messages are
//!   validated before they are forwarded (`validate_messages`): decoded, signature-checked and
//!   checked for freshness by `pvl-protocol`. Invalid ones are rejected, which counts against the
//!   sender's peer score; stale ones are ignored. Direct-only kinds on gossip are rejected.
//! - **Kademlia** (server mode, protocol `/pvl/kad/1.0.0`) finds peers: bootstrap from the
//!   configured peers, addresses learnt through identify, a provider record per served
//!   capability (re-published at half the record TTL, so it never lapses while the node runs).
//!   Newly discovered peers are dialled until the node has enough connections.
//! - **request-response** (`/pvl/direct/1`) carries offers, awards, progress, done, receipts,
//!   proposals, votes and rejects between the two peers concerned. A request is the object's
//!   exact signed bytes (never re-encoded); the response is a short acknowledgement saying
//!   whether the receiver accepted the object. A peer known only by its id is looked up
//!   through Kademlia first.
//!
//! ## Acknowledging direct messages: the node decides
//!
//! The event loop only checks what it can alone (decoding, signature, freshness, replays:
//! a replay is acknowledged `Duplicate` at once). Whether the object belongs to a conversation
//! of the node's is the node's answer ([`DirectAcks::ByNode`], the default): the loop keeps the
//! libp2p response channel in a bounded map (at most [`MAX_PENDING_ACKS`]) under an
//! [`AckId`], emits [`NetEvent::Object`] with `ack: Some(id)`, and sends whatever the node
//! answers through [`Client::acknowledge`]. A node that does not answer within the timeout
//! (default [`DEFAULT_ACK_TIMEOUT`]) gets `Refused("busy: ...")` sent for it; when the map is
//! full a new direct message is refused as `busy` at once. A refusal is remembered (bounded),
//! so the same object sent again is refused again with the same reason, not acknowledged as a
//! duplicate.
//! - **identify**, **ping** and **connection limits**.
//!
//! ## Transports and private networks
//!
//! TCP (noise, yamux) and QUIC. In a private network the TCP stream is first wrapped in libp2p
//! `pnet` with the pre-shared swarm key, so a peer without the key cannot complete any
//! handshake; QUIC is then off, because pnet protects a byte stream and QUIC brings its own
//! encryption that pnet cannot wrap. An optional allow-list of peer ids disconnects peers that
//! have the key but are not listed. The log says which of the two happened.
//!
//! ## Publishing before peers are known
//!
//! A publish made while no peer is subscribed to the topic yet is queued and retried until its
//! deadline; the caller learns whether it went out ([`PublishError::NoPeers`] otherwise). When
//! every peer's send queue is full the publish fails at once with
//! [`PublishError::Backpressure`]: gossipsub has then already filed the message as seen, so a
//! retry of the same bytes could never go out.

mod codec;
mod config;
mod counters;
mod event_loop;
mod keys;

pub use codec::{Ack, DIRECT_PROTOCOL};
pub use config::{
    DEFAULT_ACK_TIMEOUT, DirectAcks, MAX_PENDING_ACKS, NetConfig, SwarmKey, TOPIC_ALL,
    capability_topic,
};
pub use counters::NetCounters;
pub use event_loop::{
    AckId, Client, EventLoop, NetError, NetEvent, NetStatus, PeerInfo, PublishError, PublishReport,
    Via, new,
};
pub use keys::{peer_id_of, protocol_keypair, public_key_of};

pub use libp2p::{Multiaddr, PeerId, identity};

/// The current time in unix milliseconds (the clock objects are checked against).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
