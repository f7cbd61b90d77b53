//! Context admission: the engine's verdict on an object that arrived directly from a peer.
//!
//! An object received directly (SPEC §14, either protocol) is admitted (acknowledged as accepted, then
//! recorded) only when it belongs to a conversation this node is a party to and its signer may
//! send it there. Each rule is enforced by the state machine that owns the conversation; the
//! [`crate::Engine`] turns their refusals into one typed [`Refusal`]:
//!
//! | object | admitted when | otherwise |
//! |---|---|---|
//! | offer | it answers an intent of a run this node coordinates, whose offer window is still open | [`Refusal::UnknownIntent`], [`Refusal::IntentClosed`] |
//! | task_start (award) | it names this provider and an offer this provider made and still holds, signed by that offer's requester, in the offer's trace | [`Refusal::NotYourOffer`] |
//! | task_progress, task_done, provider receipt, `award-refused` event | signed by the provider awarded that task, while the task is live | [`Refusal::NotTheAwardedProvider`], [`Refusal::TaskNotLive`] |
//! | countersigned receipt (to the provider) | it is this provider's own receipt, countersigned | [`Refusal::NotTheAwardedProvider`], [`Refusal::Unexpected`] |
//! | reject | it names an offer of this provider's, signed by that offer's requester | [`Refusal::NotYourOffer`] |
//! | vote | from a member of the committee of an open ballot of this node's | [`Refusal::NotABallotMember`], [`Refusal::NoOpenBallot`] |
//! | proposal | its committee names this node and its voting deadline has not passed | [`Refusal::NotInCommittee`], [`Refusal::VotingClosed`] |
//! | intent (directed, SPEC.md §4.3) | this node's provider bids on it | [`Refusal::NotBidding`] |
//! | capability ad | never directly: it is gossiped | [`Refusal::GossipOnly`] |
//!
//! An object of a trace this node takes no part in is [`Refusal::UnknownTrace`]; anything
//! else a conversation does not accept at that moment is [`Refusal::Unexpected`]. The set is
//! fixed, so that counting refusals by reason ([`RefusalCounts`]) stays bounded.
//!
//! On the wire the reason of a refused acknowledgement is `<code>: <detail>`, `<code>` being
//! [`Refusal::code`] (see SPEC.md §19).

use std::fmt;

/// Why an object received directly was refused (a fixed set: see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The object belongs to no conversation this node takes part in.
    UnknownTrace,
    /// An offer for an intent this node never published.
    UnknownIntent,
    /// An offer for an intent of this node's whose offer window has closed (it selected
    /// already) or whose round is over.
    IntentClosed,
    /// An award or reject for an offer this provider never made (or no longer holds), or not
    /// signed by the requester the offer answered, or naming another provider.
    NotYourOffer,
    /// Progress, done, receipt or award refusal signed by someone other than the provider
    /// awarded the task.
    NotTheAwardedProvider,
    /// Progress, done or receipt for a task that is not (or no longer) running.
    TaskNotLive,
    /// A vote signed by someone outside the ballot's committee.
    NotABallotMember,
    /// A vote when no ballot of that trace is open.
    NoOpenBallot,
    /// A proposal whose committee does not name this node.
    NotInCommittee,
    /// A proposal whose voting deadline has passed.
    VotingClosed,
    /// A capability ad sent directly: ads travel by gossip only.
    GossipOnly,
    /// An intent sent directly that this node does not bid on (it does not serve the
    /// capability, is not free, or the intent's terms do not suit it): what a directed intent
    /// to a provider whose ad is out of date meets, so not an offence.
    NotBidding,
    /// Any other object the conversation does not accept at this moment.
    Unexpected,
}

impl Refusal {
    /// Every refusal, in counter order.
    pub const ALL: [Refusal; 13] = [
        Refusal::UnknownTrace,
        Refusal::UnknownIntent,
        Refusal::IntentClosed,
        Refusal::NotYourOffer,
        Refusal::NotTheAwardedProvider,
        Refusal::TaskNotLive,
        Refusal::NotABallotMember,
        Refusal::NoOpenBallot,
        Refusal::NotInCommittee,
        Refusal::VotingClosed,
        Refusal::GossipOnly,
        Refusal::NotBidding,
        Refusal::Unexpected,
    ];

    /// The stable code that starts the reason of a refused acknowledgement.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::UnknownTrace => "unknown-trace",
            Refusal::UnknownIntent => "unknown-intent",
            Refusal::IntentClosed => "intent-closed",
            Refusal::NotYourOffer => "not-your-offer",
            Refusal::NotTheAwardedProvider => "not-the-awarded-provider",
            Refusal::TaskNotLive => "task-not-live",
            Refusal::NotABallotMember => "not-a-ballot-member",
            Refusal::NoOpenBallot => "no-open-ballot",
            Refusal::NotInCommittee => "not-in-committee",
            Refusal::VotingClosed => "voting-closed",
            Refusal::GossipOnly => "gossip-only",
            Refusal::NotBidding => "not-bidding",
            Refusal::Unexpected => "unexpected",
        }
    }

    /// The refusal whose [`Refusal::code`] is `code`.
    pub fn from_code(code: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The refusal a refused acknowledgement's reason (`<code>: <detail>`) names, when the
    /// receiver's engine refused the object; `None` for the network layer's refusals
    /// (decoding, signature, `busy`, `rate-limited`, ...), which carry no code.
    pub fn of_reason(reason: &str) -> Option<Refusal> {
        let code = reason.split(':').next()?;
        Refusal::from_code(code.trim())
    }

    /// Whether no honest peer sends such an object: it names a conversation the sender has
    /// no part in (an offer for an intent never published, an award for an offer never made,
    /// a report from a provider not awarded, a vote from outside the committee, a proposal
    /// to a node not on it, a capability ad sent directly). These count as offences against
    /// the sender (SPEC.md §20). The others (`intent-closed`, `task-not-live`,
    /// `no-open-ballot`, `voting-closed`, `not-bidding`, `unexpected`) are what a late but
    /// honest message meets.
    pub fn is_offence(self) -> bool {
        matches!(
            self,
            Refusal::UnknownTrace
                | Refusal::UnknownIntent
                | Refusal::NotYourOffer
                | Refusal::NotTheAwardedProvider
                | Refusal::NotABallotMember
                | Refusal::NotInCommittee
                | Refusal::GossipOnly
        )
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal with the state machine's words about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{refusal}: {detail}")]
pub struct Refused {
    /// The typed reason.
    pub refusal: Refusal,
    /// What exactly did not fit, for people.
    pub detail: String,
}

impl Refused {
    /// A refusal for `refusal` with `detail`.
    pub fn new(refusal: Refusal, detail: impl Into<String>) -> Self {
        Refused {
            refusal,
            detail: detail.into(),
        }
    }
}

/// The engine's verdict on one object received directly.
pub type Verdict = std::result::Result<(), Refused>;

/// Refusals counted by reason (one counter per [`Refusal`]: bounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; Refusal::ALL.len()]);

impl RefusalCounts {
    /// Counts one `refusal`.
    pub fn count(&mut self, refusal: Refusal) {
        let slot = &mut self.0[refusal.index()];
        *slot = slot.saturating_add(1);
    }

    /// How many objects were refused for `refusal`.
    pub fn get(&self, refusal: Refusal) -> u64 {
        self.0[refusal.index()]
    }

    /// Every refusal with its count (zeros included), in [`Refusal::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL.into_iter().map(|r| (r, self.get(r)))
    }

    /// All refusals together.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for r in Refusal::ALL {
            assert_eq!(Refusal::from_code(r.code()), Some(r));
        }
        let mut counts = RefusalCounts::default();
        counts.count(Refusal::TaskNotLive);
        counts.count(Refusal::TaskNotLive);
        assert_eq!(counts.get(Refusal::TaskNotLive), 2);
        assert_eq!(counts.total(), 2);
        assert_eq!(
            Refused::new(Refusal::NotInCommittee, "x").to_string(),
            "not-in-committee: x"
        );
    }
}
