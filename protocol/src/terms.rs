//! The ballot terms grammar: what a consensus `Proposal`'s `action` text means.
//!
//! A `proposal` body (SPEC.md §4) has a `subject` id and a free-text `action`. pvl's
//! requesters write the action as the canonical text of [`ProposalTerms`], and committee
//! members decide from that signed text alone:
//!
//! ```text
//! action = "award" 1*(SP field)          ; fields exactly in this order, single spaces
//! field  = "capability=" name            ; the capability to execute
//!        / "provider=" 64HEXLC           ; the provider (the offer's signer)
//!        / "offer=" 64HEXLC              ; the offer to award (= the proposal's subject)
//!        / "cost=" decimal               ; the offer's cost
//!        / "eta_ms=" decimal             ; the offer's estimated completion time
//!        / "input_sha256=" 64HEXLC       ; SHA-256 of the task input
//! ```
//!
//! [`ProposalTerms::parse`] accepts exactly the text [`ProposalTerms::to_action`] writes: it
//! re-renders the parsed terms and compares, so other orders, extra spaces, repeated, missing
//! or unknown fields, upper-case hex and leading zeros are all refused, and a signed proposal
//! has exactly one meaning.

use std::collections::HashMap;
use std::fmt;

use crate::body::Proposal;
use crate::ids::ObjectId;
use crate::keys::PublicKey;

/// The verb that starts every proposal action pvl writes.
pub const AWARD_VERB: &str = "award";

/// Why a proposal action is not valid ballot terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    /// The action is not in the one canonical form (see the module docs).
    #[error("proposal action: {0}")]
    Malformed(String),
    /// The proposal's subject is not the offer its action names.
    #[error("proposal subject {subject} is not the offer {offer} named in its action")]
    SubjectMismatch {
        /// The proposal's subject.
        subject: ObjectId,
        /// The offer named in the action.
        offer: ObjectId,
    },
}

/// What a proposal asks the committee to approve: the award of one offer on one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalTerms {
    /// The capability to execute.
    pub capability: String,
    /// The provider who will execute it (the offer's signer).
    pub provider: PublicKey,
    /// The offer to award (also the proposal's `subject`).
    pub offer: ObjectId,
    /// The offer's cost.
    pub cost: u64,
    /// The offer's estimated completion time, ms.
    pub eta_ms: u64,
    /// SHA-256 of the task input.
    pub input_sha256: [u8; 32],
}

impl ProposalTerms {
    /// The canonical action text (see the module documentation).
    pub fn to_action(&self) -> String {
        self.to_string()
    }

    /// Parses a canonical action text; anything else is refused.
    pub fn parse(action: &str) -> Result<Self, TermsError> {
        let bad = |problem: String| TermsError::Malformed(problem);
        let mut words = action.split(' ');
        if words.next() != Some(AWARD_VERB) {
            return Err(bad(format!("does not start with `{AWARD_VERB} `")));
        }
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for word in words {
            let (name, value) = word
                .split_once('=')
                .ok_or_else(|| bad(format!("`{word}` is not NAME=VALUE")))?;
            if fields.insert(name, value).is_some() {
                return Err(bad(format!("`{name}` given twice")));
            }
        }
        let field = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| bad(format!("`{name}` missing")))
        };
        let number = |name: &str| -> Result<u64, TermsError> {
            field(name)?
                .parse()
                .map_err(|_| bad(format!("`{name}` is not a number")))
        };
        let hex32 = |name: &str| -> Result<[u8; 32], TermsError> {
            field(name)?
                .parse::<ObjectId>()
                .map(|id| id.0)
                .map_err(|_| bad(format!("`{name}` is not 64 hex digits")))
        };
        let terms = ProposalTerms {
            capability: field("capability")?.to_string(),
            provider: PublicKey(hex32("provider")?),
            offer: ObjectId(hex32("offer")?),
            cost: number("cost")?,
            eta_ms: number("eta_ms")?,
            input_sha256: hex32("input_sha256")?,
        };
        if terms.to_action() != action {
            return Err(bad("not in canonical form".into()));
        }
        Ok(terms)
    }

    /// The terms of a signed proposal body: its action parsed, and its subject equal to the
    /// offer named in the action.
    pub fn from_proposal(proposal: &Proposal) -> Result<Self, TermsError> {
        let terms = Self::parse(&proposal.action)?;
        if terms.offer != proposal.subject {
            return Err(TermsError::SubjectMismatch {
                subject: proposal.subject,
                offer: terms.offer,
            });
        }
        Ok(terms)
    }
}

impl fmt::Display for ProposalTerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{AWARD_VERB} capability={} provider={} offer={} cost={} eta_ms={} input_sha256={}",
            self.capability,
            self.provider,
            self.offer,
            self.cost,
            self.eta_ms,
            ObjectId(self.input_sha256),
        )
    }
}

impl std::str::FromStr for ProposalTerms {
    type Err = TermsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProposalTerms::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::body::Committee;

    fn terms() -> ProposalTerms {
        ProposalTerms {
            capability: "sha256".into(),
            provider: PublicKey([3; 32]),
            offer: ObjectId([4; 32]),
            cost: 5,
            eta_ms: 100,
            input_sha256: [6; 32],
        }
    }

    fn proposal(action: String, subject: ObjectId) -> Proposal {
        Proposal {
            subject,
            round: 1,
            committee: Committee {
                members: vec![PublicKey([1; 32])],
                threshold: 1,
            },
            action,
            deadline_ms: 10,
        }
    }

    #[test]
    fn terms_round_trip_through_their_canonical_text() {
        let action = terms().to_action();
        assert!(action.starts_with("award capability=sha256 provider=0303"));
        assert!(action.contains(" cost=5 eta_ms=100 input_sha256=0606"));
        assert_eq!(ProposalTerms::parse(&action).unwrap(), terms());
    }

    #[test]
    fn non_canonical_or_incomplete_terms_are_refused() {
        let action = terms().to_action();
        let reordered = action.replace("cost=5 eta_ms=100", "eta_ms=100 cost=5");
        let doubled = action.replace("award ", "award  ");
        let missing = action.replace(" cost=5", "");
        let repeated = format!("{action} cost=5");
        let extra = format!("{action} note=x");
        let other_verb = action.replace("award", "pay");
        let bad_number = action.replace("cost=5", "cost=five");
        let leading_zero = action.replace("cost=5", "cost=05");
        let bad_hash = action.replace("input_sha256=06", "input_sha256=zz");
        let upper_hex = action.replace("offer=0404", "offer=0A04");
        for bad in [
            reordered,
            doubled,
            missing,
            repeated,
            extra,
            other_verb,
            bad_number,
            leading_zero,
            bad_hash,
            upper_hex,
            String::new(),
        ] {
            assert!(ProposalTerms::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_subject_must_be_the_offer_of_the_terms() {
        let good = proposal(terms().to_action(), ObjectId([4; 32]));
        assert_eq!(ProposalTerms::from_proposal(&good).unwrap(), terms());
        let other = proposal(terms().to_action(), ObjectId([5; 32]));
        assert!(matches!(
            ProposalTerms::from_proposal(&other),
            Err(TermsError::SubjectMismatch { .. })
        ));
    }
}
