//! Flood control: per-peer budgets, offences and bans (SPEC.md §20).
//!
//! Validly signed objects cost the receiver a signature check, a place in its queues and
//! possibly a state machine's attention, so a peer that sends them faster than any honest
//! peer would is cut off before they cost more:
//!
//! - **Gossip budget, per signer.** Every gossiped object spends one token of its signer's
//!   budget (a token bucket: [`Budget::per_second`] refilled, at most [`Budget::burst`]
//!   saved). The signer is read from the envelope header before the signature is checked, so
//!   an object over budget costs no verification. It is ignored (not forwarded), never
//!   rejected: gossipsub scores a rejection against every peer that delivered the message,
//!   and honest forwarders took it within the budget they saw. When the peer that delivered
//!   it is its signer (a pvl peer's libp2p key is its signing key, so the flooder is the first
//!   hop) it counts as an offence of that peer; a peer merely forwarding it is not blamed.
//!   A forged object naming someone else as signer spends that signer's token but is then
//!   rejected as invalid, which gossipsub scores against its sender and which is an offence.
//! - **Direct budget, per peer.** Every direct message spends one token of its sender's
//!   budget before it is decoded; one over budget is refused (`rate-limited: ...`) and counts
//!   as an offence.
//! - **Offences and bans.** Besides the above, the node reports objects it refused as out of
//!   context when no honest peer could have sent them ([`crate::Client::report_offence`]).
//!   A peer with [`FloodControl::ban_after`] offences within [`FloodControl::offence_window`]
//!   is banned for [`FloodControl::ban_for`]: its connections are closed, new ones are closed
//!   as they open, and gossipsub ignores it.
//!
//! Every map here is bounded ([`MAX_TRACKED`] keys each). The token buckets are governor's;
//! their idle entries are dropped every tick. Should more than [`MAX_TRACKED`] signers or
//! peers be active at once, new messages are refused (`busy`) until entries age out: the
//! node fails closed rather than grow.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use libp2p::PeerId;
use pvl_protocol::PublicKey;

use crate::counters;

/// Most signers, peers, offenders and banned peers remembered (each map separately).
pub const MAX_TRACKED: usize = 8192;

/// A token bucket: `per_second` tokens are added every second, at most `burst` are saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Sustained rate.
    pub per_second: NonZeroU32,
    /// Most messages accepted at once after a quiet period.
    pub burst: NonZeroU32,
}

impl Budget {
    /// A budget of `per_second` with a burst of `burst` (each at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Budget {
            per_second: NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The flood-control settings (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodControl {
    /// Gossiped objects (intents, capability ads) accepted per signer.
    pub gossip_per_signer: Budget,
    /// Direct messages accepted per peer.
    pub direct_per_peer: Budget,
    /// Offences within `offence_window` that get a peer banned.
    pub ban_after: u32,
    /// The window offences are counted in.
    pub offence_window: Duration,
    /// How long a ban lasts.
    pub ban_for: Duration,
}

impl Default for FloodControl {
    fn default() -> Self {
        FloodControl {
            gossip_per_signer: Budget::new(200, 400),
            direct_per_peer: Budget::new(1000, 2000),
            ban_after: 100,
            offence_window: Duration::from_secs(10),
            ban_for: Duration::from_secs(600),
        }
    }
}

/// A peer banned for its offences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BannedPeer {
    /// The peer.
    pub peer: PeerId,
    /// The offence that tipped it over.
    pub reason: String,
    /// When the ban ends, unix ms.
    pub until_ms: u64,
}

struct Ban {
    reason: String,
    until: Instant,
    until_ms: u64,
}

struct Offences {
    count: u32,
    since: Instant,
}

type Limiter<K> = RateLimiter<K, HashMapStateStore<K>, DefaultClock>;

/// What [`Guard`] says about a message over its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// Over the sender's budget.
    Budget,
    /// Too many senders are tracked to take a new one.
    Busy,
}

/// The flood-control state of one event loop.
pub(crate) struct Guard {
    config: FloodControl,
    gossip: Limiter<PublicKey>,
    direct: Limiter<PeerId>,
    offences: HashMap<PeerId, Offences>,
    banned: HashMap<PeerId, Ban>,
}

impl Guard {
    pub(crate) fn new(config: FloodControl) -> Self {
        Guard {
            gossip: RateLimiter::hashmap(config.gossip_per_signer.quota()),
            direct: RateLimiter::hashmap(config.direct_per_peer.quota()),
            config,
            offences: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    pub(crate) fn config(&self) -> &FloodControl {
        &self.config
    }

    /// Spends one token of `signer`'s gossip budget.
    pub(crate) fn gossip(&mut self, signer: &PublicKey) -> Result<(), Over> {
        if self.gossip.len() >= MAX_TRACKED {
            self.gossip.retain_recent();
            if self.gossip.len() >= MAX_TRACKED {
                return Err(Over::Busy);
            }
        }
        self.gossip.check_key(signer).map_err(|_| {
            counters::gossip_rate_limited();
            Over::Budget
        })
    }

    /// Spends one token of `peer`'s direct budget.
    pub(crate) fn direct(&mut self, peer: &PeerId) -> Result<(), Over> {
        if self.direct.len() >= MAX_TRACKED {
            self.direct.retain_recent();
            if self.direct.len() >= MAX_TRACKED {
                return Err(Over::Busy);
            }
        }
        self.direct.check_key(peer).map_err(|_| {
            counters::direct_rate_limited();
            Over::Budget
        })
    }

    /// Counts an offence of `peer`; returns the ban it earned, if this one tipped it over.
    pub(crate) fn offence(&mut self, peer: PeerId, reason: &str) -> Option<BannedPeer> {
        counters::offence();
        if self.banned.contains_key(&peer) {
            return None;
        }
        let now = Instant::now();
        let window = self.config.offence_window;
        if self.offences.len() >= MAX_TRACKED && !self.offences.contains_key(&peer) {
            self.offences
                .retain(|_, o| now.duration_since(o.since) < window);
            if self.offences.len() >= MAX_TRACKED {
                return None;
            }
        }
        let entry = self.offences.entry(peer).or_insert(Offences {
            count: 0,
            since: now,
        });
        if now.duration_since(entry.since) >= window {
            *entry = Offences {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
        if entry.count < self.config.ban_after {
            return None;
        }
        self.offences.remove(&peer);
        if self.banned.len() >= MAX_TRACKED {
            // Make room: the ban that ends soonest goes first.
            if let Some(first) = self
                .banned
                .iter()
                .min_by_key(|(_, b)| b.until)
                .map(|(p, _)| *p)
            {
                self.banned.remove(&first);
            }
        }
        let until_ms = crate::now_ms().saturating_add(self.config.ban_for.as_millis() as u64);
        let reason = format!(
            "{} offences within {} s, the last: {reason}",
            self.config.ban_after,
            window.as_secs()
        );
        self.banned.insert(
            peer,
            Ban {
                reason: reason.clone(),
                until: now + self.config.ban_for,
                until_ms,
            },
        );
        counters::ban();
        Some(BannedPeer {
            peer,
            reason,
            until_ms,
        })
    }

    /// Whether `peer` is banned now.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned
            .get(peer)
            .is_some_and(|b| b.until > Instant::now())
    }

    /// Ends the bans that expired and forgets idle budgets; returns the peers let back in.
    pub(crate) fn tick(&mut self) -> Vec<PeerId> {
        self.gossip.retain_recent();
        self.direct.retain_recent();
        let now = Instant::now();
        let window = self.config.offence_window;
        self.offences
            .retain(|_, o| now.duration_since(o.since) < window);
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, b)| b.until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in &expired {
            self.banned.remove(peer);
        }
        expired
    }

    /// The peers banned now.
    pub(crate) fn bans(&self) -> Vec<BannedPeer> {
        let mut list: Vec<BannedPeer> = self
            .banned
            .iter()
            .map(|(peer, b)| BannedPeer {
                peer: *peer,
                reason: b.reason.clone(),
                until_ms: b.until_ms,
            })
            .collect();
        list.sort_by_key(|b| b.peer.to_string());
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(ban_after: u32) -> Guard {
        Guard::new(FloodControl {
            gossip_per_signer: Budget::new(1, 3),
            direct_per_peer: Budget::new(1, 2),
            ban_after,
            offence_window: Duration::from_secs(10),
            ban_for: Duration::from_secs(60),
        })
    }

    #[test]
    fn budgets_allow_the_burst_then_refuse_per_key() {
        let mut g = guard(100);
        let a = pvl_protocol::Keypair::generate().unwrap().public();
        let b = pvl_protocol::Keypair::generate().unwrap().public();
        for _ in 0..3 {
            assert_eq!(g.gossip(&a), Ok(()));
        }
        assert_eq!(g.gossip(&a), Err(Over::Budget));
        assert_eq!(g.gossip(&b), Ok(()), "another signer has its own budget");
        let p = PeerId::random();
        assert_eq!(g.direct(&p), Ok(()));
        assert_eq!(g.direct(&p), Ok(()));
        assert_eq!(g.direct(&p), Err(Over::Budget));
        assert_eq!(g.direct(&PeerId::random()), Ok(()));
    }

    #[test]
    fn enough_offences_ban_a_peer_once() {
        let mut g = guard(3);
        let p = PeerId::random();
        assert!(g.offence(p, "x").is_none());
        assert!(g.offence(p, "y").is_none());
        assert!(!g.is_banned(&p));
        let ban = g.offence(p, "z").expect("the third offence bans");
        assert_eq!(ban.peer, p);
        assert!(ban.reason.contains("the last: z"), "{}", ban.reason);
        assert!(g.is_banned(&p));
        assert!(g.offence(p, "again").is_none(), "banned once");
        assert_eq!(g.bans().len(), 1);
        assert!(g.tick().is_empty(), "the ban lasts");
        assert!(!g.is_banned(&PeerId::random()));
    }

    #[test]
    fn maps_stay_bounded() {
        let mut g = guard(1_000_000);
        for _ in 0..(MAX_TRACKED + 10) {
            g.offence(PeerId::random(), "x");
        }
        assert!(g.offences.len() <= MAX_TRACKED);
    }
}
