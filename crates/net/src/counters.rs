//! Per-process counters of the messages this node's network layer handled, by transport. Plain
//! relaxed atomics incremented where the message is handled, so that a benchmark can read them
//! before and after a phase and tell what one coordination round costs in messages.
//!
//! They count whole pvl objects, not libp2p frames: a gossip message forwarded by gossipsub on
//! our behalf (mesh relaying) is not seen by the event loop and so not counted. Every swarm in
//! the process adds to the same numbers (one node per process is the normal case).

use std::sync::atomic::{AtomicU64, Ordering};

static GOSSIP_PUBLISHED: AtomicU64 = AtomicU64::new(0);
static GOSSIP_RECEIVED: AtomicU64 = AtomicU64::new(0);
static GOSSIP_DUPLICATES: AtomicU64 = AtomicU64::new(0);
static DIRECT_SENT: AtomicU64 = AtomicU64::new(0);
static DIRECT_RECEIVED: AtomicU64 = AtomicU64::new(0);
static GOSSIP_RATE_LIMITED: AtomicU64 = AtomicU64::new(0);
static DIRECT_RATE_LIMITED: AtomicU64 = AtomicU64::new(0);
static OFFENCES: AtomicU64 = AtomicU64::new(0);
static BANS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of this process's message counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Objects this node published, counted once per topic they went out on.
    pub gossip_published: u64,
    /// Gossip messages delivered to this node by gossipsub (each one is decoded and validated),
    /// valid or not.
    pub gossip_received: u64,
    /// Of those, valid messages carrying an object this node had already received (the same
    /// object on a second topic, or a replay): work that bought nothing.
    pub gossip_duplicates: u64,
    /// Direct (request-response) messages this node sent.
    pub direct_sent: u64,
    /// Direct messages this node received (each one is decoded and verified), valid or not.
    pub direct_received: u64,
    /// Gossip messages dropped because their signer was over its budget (SPEC.md §20).
    pub gossip_rate_limited: u64,
    /// Direct messages refused because their sender was over its budget.
    pub direct_rate_limited: u64,
    /// Offences counted against peers (over budget, invalid, or refused as impossible).
    pub offences: u64,
    /// Peers banned for their offences.
    pub bans: u64,
}

impl NetCounters {
    /// The counters now.
    pub fn snapshot() -> Self {
        NetCounters {
            gossip_published: GOSSIP_PUBLISHED.load(Ordering::Relaxed),
            gossip_received: GOSSIP_RECEIVED.load(Ordering::Relaxed),
            gossip_duplicates: GOSSIP_DUPLICATES.load(Ordering::Relaxed),
            direct_sent: DIRECT_SENT.load(Ordering::Relaxed),
            direct_received: DIRECT_RECEIVED.load(Ordering::Relaxed),
            gossip_rate_limited: GOSSIP_RATE_LIMITED.load(Ordering::Relaxed),
            direct_rate_limited: DIRECT_RATE_LIMITED.load(Ordering::Relaxed),
            offences: OFFENCES.load(Ordering::Relaxed),
            bans: BANS.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn gossip_published() {
    GOSSIP_PUBLISHED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn gossip_received() {
    GOSSIP_RECEIVED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn gossip_duplicate() {
    GOSSIP_DUPLICATES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn direct_sent() {
    DIRECT_SENT.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn direct_received() {
    DIRECT_RECEIVED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn gossip_rate_limited() {
    GOSSIP_RATE_LIMITED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn direct_rate_limited() {
    DIRECT_RATE_LIMITED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn offence() {
    OFFENCES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn ban() {
    BANS.fetch_add(1, Ordering::Relaxed);
}
