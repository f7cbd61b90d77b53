//! Adaptive choice: which coordination pattern to run for a request, and which providers to
//! avoid, from the request's situation and the node's history.
//!
//! [`choose`] is a pure function: the node describes the request ([`Situation`]) and lends its
//! trace store through [`PatternHistory`]; the [`Choice`] says which pattern to run, why
//! (every rule that fired or was skipped is a reason) and which providers to avoid. The node
//! records the choice as a signed `pattern-chosen` event ([`Choice::to_event`]) and passes
//! `avoid` on in [`crate::RequestSpec::avoid`].
//!
//! ## Rules
//!
//! Rules list the patterns that *apply*, most specific first:
//!
//! 1. **stages** (a workflow file) → `workflow`, and nothing else applies (a pipeline cannot
//!    run as one task);
//! 2. **committee given** → `consensus`, and nothing else applies (skipping the committee is
//!    not an alternative);
//! 3. otherwise, in order:
//!    * `parallel` when parallel execution was requested, or the input is decomposable (at
//!      least [`Rules::min_lines`] lines and [`Rules::large_input_bytes`] bytes), **and** at
//!      least [`Rules::min_providers_parallel`] providers are known for the capability;
//!    * `auction` when an explicit objective (selection strategy) was given;
//!    * `contract-net` always.
//!
//! The first applicable pattern **without a poor record** for this capability is chosen; a
//! record is poor when at least [`Rules::min_runs`] runs succeeded less than
//! [`Rules::poor_below_bps`] of the time (default: under 50 % over at least 2 runs). A
//! skipped pattern is named in the reasons. When every applicable pattern has a poor record,
//! the first is chosen anyway, and the reasons say so.
//!
//! **Avoid**: every provider of the capability whose record is poor by the same measure
//! (tasks and successes) goes into [`Choice::avoid`]. The requester then ranks their offers
//! after all others ([`demote_avoided`]): they are used only when nobody else offers.

use pvl_protocol::{
    Body, Event, Keypair, ObjectId, PatternHint, PublicKey, SignedObject, Strategy, TraceId,
};
use pvl_protocol::{EventType, attr};

use crate::error::Result;
use crate::select::Ranking;
use crate::util::{sign, text};

/// What the node knows about a request when it chooses a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Situation {
    /// The capability wanted.
    pub capability: String,
    /// The request comes with stages (a workflow file).
    pub has_stages: bool,
    /// An approval committee was given.
    pub committee: bool,
    /// The user asked for parallel execution.
    pub parallel_requested: bool,
    /// Input size, bytes.
    pub input_size: u64,
    /// Lines in the input (0 when unknown or binary): a line-oriented input can be split.
    pub input_lines: u64,
    /// The explicit selection objective, when one was given.
    pub objective: Option<Strategy>,
    /// How many providers are known for the capability.
    pub providers_known: usize,
}

impl Situation {
    /// A plain request for `capability`: no stages, no committee, no objective, empty input,
    /// no provider known.
    pub fn new(capability: impl Into<String>) -> Self {
        Situation {
            capability: capability.into(),
            has_stages: false,
            committee: false,
            parallel_requested: false,
            input_size: 0,
            input_lines: 0,
            objective: None,
            providers_known: 0,
        }
    }
}

/// What the history says about one provider for one capability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderRecord {
    /// Tasks awarded to it.
    pub tasks: u64,
    /// Tasks it completed successfully.
    pub successes: u64,
    /// Mean time from award to done, ms, when known.
    pub mean_latency_ms: Option<u64>,
}

/// What the history says about one pattern for one capability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatternRecord {
    /// Requests run with the pattern.
    pub runs: u64,
    /// Requests that completed.
    pub successes: u64,
}

/// The node's history, per capability (the node implements it over its trace store).
pub trait PatternHistory {
    /// Every provider with a record for `capability`.
    fn providers(&self, capability: &str) -> Vec<(PublicKey, ProviderRecord)>;
    /// The record of `pattern` for `capability` (zero runs when unknown).
    fn pattern(&self, capability: &str, pattern: PatternHint) -> PatternRecord;
}

/// No history at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPatternHistory;

impl PatternHistory for NoPatternHistory {
    fn providers(&self, _capability: &str) -> Vec<(PublicKey, ProviderRecord)> {
        Vec::new()
    }

    fn pattern(&self, _capability: &str, _pattern: PatternHint) -> PatternRecord {
        PatternRecord::default()
    }
}

/// The thresholds of the rules (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Smallest input worth splitting, bytes.
    pub large_input_bytes: u64,
    /// Fewest input lines worth splitting.
    pub min_lines: u64,
    /// Fewest known providers for `parallel`.
    pub min_providers_parallel: usize,
    /// Fewest runs (or tasks) before a record can count as poor.
    pub min_runs: u64,
    /// A success rate below this (basis points) is poor.
    pub poor_below_bps: u64,
}

impl Default for Rules {
    /// 256 KiB and 2 lines to split, 2 providers for parallel, poor below 50 % over 2 runs.
    fn default() -> Self {
        Rules {
            large_input_bytes: 256 * 1024,
            min_lines: 2,
            min_providers_parallel: 2,
            min_runs: 2,
            poor_below_bps: 5_000,
        }
    }
}

impl Rules {
    /// Whether `successes` out of `runs` is a poor record.
    pub fn is_poor(&self, runs: u64, successes: u64) -> bool {
        runs >= self.min_runs
            && u128::from(successes) * 10_000 < u128::from(self.poor_below_bps) * u128::from(runs)
    }
}

/// The pattern to run, why, and whom to avoid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The chosen pattern.
    pub pattern: PatternHint,
    /// Why, one reason per rule that fired or pattern that was skipped, in order.
    pub reasons: Vec<String>,
    /// Providers with a poor record for the capability.
    pub avoid: Vec<PublicKey>,
}

impl Choice {
    /// The signed `pattern-chosen` event (attributes `pattern`, `reasons`, and `avoid` when
    /// some providers are avoided) in `trace`, e.g. with the request's intent as parent.
    pub fn to_event(
        &self,
        key: &Keypair,
        trace: TraceId,
        parents: &[ObjectId],
        now_ms: u64,
    ) -> Result<SignedObject> {
        let reasons = self.reasons.join("; ");
        let mut attrs = vec![
            (attr::PATTERN.to_string(), self.pattern.name().to_string()),
            (attr::REASONS.to_string(), text(&reasons)),
        ];
        if !self.avoid.is_empty() {
            let avoid: Vec<String> = self.avoid.iter().map(PublicKey::to_string).collect();
            attrs.push((attr::AVOID.to_string(), text(avoid.join(","))));
        }
        sign(
            key,
            Some(trace),
            parents,
            now_ms,
            Body::Event(Event {
                event_type: EventType::PatternChosen.to_string(),
                about: parents.to_vec(),
                message: text(format!("pattern {} chosen: {reasons}", self.pattern)),
                attrs,
            }),
        )
    }
}

/// Chooses with the default [`Rules`].
pub fn choose(situation: &Situation, history: &dyn PatternHistory) -> Choice {
    choose_with(&Rules::default(), situation, history)
}

/// Chooses the pattern and the providers to avoid (see the module documentation).
pub fn choose_with(rules: &Rules, situation: &Situation, history: &dyn PatternHistory) -> Choice {
    let mut reasons = Vec::new();
    let applicable = applicable_patterns(rules, situation, &mut reasons);
    let mut chosen = None;
    for (pattern, why) in &applicable {
        let record = history.pattern(&situation.capability, *pattern);
        if rules.is_poor(record.runs, record.successes) {
            reasons.push(format!(
                "{pattern} skipped: only {} of {} runs for `{}` succeeded",
                record.successes, record.runs, situation.capability
            ));
            continue;
        }
        reasons.push(why.clone());
        chosen = Some(*pattern);
        break;
    }
    let pattern = match chosen {
        Some(p) => p,
        None => {
            let (first, why) = applicable
                .first()
                .cloned()
                .unwrap_or((PatternHint::ContractNet, "default".to_string()));
            reasons.push(format!(
                "every applicable pattern has a poor record; {first} chosen anyway: {why}"
            ));
            first
        }
    };
    let avoid = poor_providers(rules, situation, history, &mut reasons);
    Choice {
        pattern,
        reasons,
        avoid,
    }
}

/// The patterns that apply, most specific first, each with the reason it applies. Notes on
/// rules that almost fired go to `notes`.
fn applicable_patterns(
    rules: &Rules,
    s: &Situation,
    notes: &mut Vec<String>,
) -> Vec<(PatternHint, String)> {
    if s.has_stages {
        return vec![(
            PatternHint::Workflow,
            "the request has stages (a workflow file): workflow".to_string(),
        )];
    }
    if s.committee {
        return vec![(
            PatternHint::Consensus,
            "an approval committee was given: consensus".to_string(),
        )];
    }
    let mut out = Vec::new();
    let enough_providers = s.providers_known >= rules.min_providers_parallel;
    let decomposable = s.input_lines >= rules.min_lines && s.input_size >= rules.large_input_bytes;
    if s.parallel_requested || decomposable {
        let why = if s.parallel_requested {
            "parallel execution was requested".to_string()
        } else {
            format!(
                "the input ({} bytes, {} lines) can be split",
                s.input_size, s.input_lines
            )
        };
        if enough_providers {
            out.push((
                PatternHint::Parallel,
                format!(
                    "{why} and {} providers are known: parallel",
                    s.providers_known
                ),
            ));
        } else {
            notes.push(format!(
                "{why}, but only {} provider(s) known (parallel needs {})",
                s.providers_known, rules.min_providers_parallel
            ));
        }
    }
    if let Some(objective) = s.objective {
        out.push((
            PatternHint::Auction,
            format!("an explicit objective ({objective}) was given: auction"),
        ));
    }
    out.push((
        PatternHint::ContractNet,
        "no stages, committee, split or objective: contract-net".to_string(),
    ));
    out
}

/// Providers of the capability with a poor record, each explained in `reasons`.
fn poor_providers(
    rules: &Rules,
    s: &Situation,
    history: &dyn PatternHistory,
    reasons: &mut Vec<String>,
) -> Vec<PublicKey> {
    let mut records = history.providers(&s.capability);
    records.sort_by_key(|(key, _)| *key);
    records
        .into_iter()
        .filter(|(_, r)| rules.is_poor(r.tasks, r.successes))
        .map(|(key, r)| {
            reasons.push(format!(
                "avoid provider {}: {} of {} tasks for `{}` succeeded",
                key.short(),
                r.successes,
                r.tasks,
                s.capability
            ));
            key
        })
        .collect()
}

/// Moves the offers of providers in `avoid` after all others, keeping the order within both
/// groups; returns the ids of the offers moved (in their new order).
pub fn demote_avoided(ranking: &mut Ranking, avoid: &[PublicKey]) -> Vec<ObjectId> {
    if avoid.is_empty() {
        return Vec::new();
    }
    let (kept, demoted): (Vec<_>, Vec<_>) = std::mem::take(&mut ranking.ranked)
        .into_iter()
        .partition(|s| !avoid.contains(&s.candidate.provider));
    let ids = demoted.iter().map(|s| s.candidate.offer).collect();
    ranking.ranked = kept;
    ranking.ranked.extend(demoted);
    ids
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Book {
        providers: Vec<(PublicKey, ProviderRecord)>,
        patterns: HashMap<PatternHint, PatternRecord>,
    }

    impl PatternHistory for Book {
        fn providers(&self, capability: &str) -> Vec<(PublicKey, ProviderRecord)> {
            if capability == "sha256" {
                self.providers.clone()
            } else {
                Vec::new()
            }
        }

        fn pattern(&self, capability: &str, pattern: PatternHint) -> PatternRecord {
            if capability == "sha256" {
                self.patterns.get(&pattern).copied().unwrap_or_default()
            } else {
                PatternRecord::default()
            }
        }
    }

    fn situation() -> Situation {
        Situation {
            providers_known: 3,
            ..Situation::new("sha256")
        }
    }

    fn large() -> Situation {
        Situation {
            input_size: 1 << 20,
            input_lines: 10_000,
            ..situation()
        }
    }

    #[test]
    fn stages_choose_workflow_even_with_a_committee() {
        let s = Situation {
            has_stages: true,
            committee: true,
            ..large()
        };
        let c = choose(&s, &NoPatternHistory);
        assert_eq!(c.pattern, PatternHint::Workflow);
        assert!(c.reasons[0].contains("stages"), "{:?}", c.reasons);
    }

    #[test]
    fn committee_chooses_consensus() {
        let s = Situation {
            committee: true,
            objective: Some(Strategy::Fastest),
            ..large()
        };
        assert_eq!(
            choose(&s, &NoPatternHistory).pattern,
            PatternHint::Consensus
        );
    }

    #[test]
    fn large_line_input_with_two_providers_goes_parallel() {
        assert_eq!(
            choose(&large(), &NoPatternHistory).pattern,
            PatternHint::Parallel
        );
        let one_provider = Situation {
            providers_known: 1,
            ..large()
        };
        let c = choose(&one_provider, &NoPatternHistory);
        assert_eq!(c.pattern, PatternHint::ContractNet);
        assert!(
            c.reasons.iter().any(|r| r.contains("only 1 provider")),
            "{:?}",
            c.reasons
        );
        let small = Situation {
            input_size: 100,
            ..large()
        };
        assert_eq!(
            choose(&small, &NoPatternHistory).pattern,
            PatternHint::ContractNet
        );
        let requested = Situation {
            parallel_requested: true,
            ..situation()
        };
        assert_eq!(
            choose(&requested, &NoPatternHistory).pattern,
            PatternHint::Parallel
        );
    }

    #[test]
    fn objective_chooses_auction_else_contract_net() {
        let s = Situation {
            objective: Some(Strategy::HighestQuality),
            ..situation()
        };
        let c = choose(&s, &NoPatternHistory);
        assert_eq!(c.pattern, PatternHint::Auction);
        assert!(c.reasons[0].contains("highest-quality"));
        assert_eq!(
            choose(&situation(), &NoPatternHistory).pattern,
            PatternHint::ContractNet
        );
    }

    #[test]
    fn a_pattern_with_a_poor_record_is_skipped_when_an_alternative_applies() {
        let mut book = Book::default();
        book.patterns.insert(
            PatternHint::Parallel,
            PatternRecord {
                runs: 4,
                successes: 1,
            },
        );
        let c = choose(&large(), &book);
        assert_eq!(c.pattern, PatternHint::ContractNet);
        assert!(
            c.reasons[0].contains("parallel skipped: only 1 of 4"),
            "{:?}",
            c.reasons
        );
        // One failure in one run is not yet a record.
        book.patterns.insert(
            PatternHint::Parallel,
            PatternRecord {
                runs: 1,
                successes: 0,
            },
        );
        assert_eq!(choose(&large(), &book).pattern, PatternHint::Parallel);
        // With no alternative, the only applicable pattern is chosen anyway.
        book.patterns.insert(
            PatternHint::Consensus,
            PatternRecord {
                runs: 3,
                successes: 0,
            },
        );
        let s = Situation {
            committee: true,
            ..situation()
        };
        let c = choose(&s, &book);
        assert_eq!(c.pattern, PatternHint::Consensus);
        assert!(c.reasons.iter().any(|r| r.contains("chosen anyway")));
    }

    #[test]
    fn providers_with_a_poor_record_are_avoided() {
        let (bad, good, new, half) = (
            PublicKey([1; 32]),
            PublicKey([2; 32]),
            PublicKey([3; 32]),
            PublicKey([4; 32]),
        );
        let rec = |tasks, successes| ProviderRecord {
            tasks,
            successes,
            mean_latency_ms: Some(100),
        };
        let book = Book {
            providers: vec![
                (good, rec(10, 9)),
                (bad, rec(4, 1)),
                (new, rec(1, 0)),
                (half, rec(2, 1)),
            ],
            ..Book::default()
        };
        let c = choose(&situation(), &book);
        assert_eq!(c.avoid, vec![bad]);
        assert!(
            c.reasons
                .iter()
                .any(|r| r.contains("1 of 4 tasks") && r.contains(&bad.short()))
        );
        // Another capability has no record: nobody avoided.
        assert!(choose(&Situation::new("resize"), &book).avoid.is_empty());
    }

    #[test]
    fn the_event_carries_pattern_and_reasons() {
        let key = Keypair::from_seed([9; 32]);
        let choice = Choice {
            pattern: PatternHint::Auction,
            reasons: vec!["one".into(), "two".into()],
            avoid: vec![PublicKey([1; 32])],
        };
        let trace = ObjectId([5; 32]);
        let event = choice.to_event(&key, trace, &[trace], 1_000).unwrap();
        let Body::Event(e) = event.body() else {
            panic!("not an event")
        };
        assert_eq!(e.kind(), EventType::PatternChosen);
        assert!(e.attrs.contains(&(attr::PATTERN.into(), "auction".into())));
        assert!(e.attrs.contains(&(attr::REASONS.into(), "one; two".into())));
        assert!(e.attrs.iter().any(|(k, _)| k == "avoid"));
        assert_eq!(event.trace_id(), trace);
    }

    #[test]
    fn demotion_keeps_order_within_groups() {
        use crate::select::{Candidate, rank};
        let cand = |n: u8, cost| Candidate {
            offer: ObjectId([n; 32]),
            provider: PublicKey([n; 32]),
            cost,
            eta_ms: 1,
            claimed_reliability_bps: 9_000,
            reliability_bps: 9_000,
            expires_at_ms: u64::MAX,
        };
        let mut r = rank(
            Strategy::LowestCost,
            &[cand(1, 10), cand(2, 20), cand(3, 30), cand(4, 5)],
        );
        let moved = demote_avoided(&mut r, &[PublicKey([4; 32]), PublicKey([1; 32])]);
        let order: Vec<u8> = r.ranked.iter().map(|s| s.candidate.offer.0[0]).collect();
        assert_eq!(order, vec![2, 3, 4, 1]);
        assert_eq!(moved, vec![ObjectId([4; 32]), ObjectId([1; 32])]);
    }
}
