//! Auction strategies: which offers are acceptable, how they are scored, who wins and why.
//!
//! Pure functions, no state: [`check_offer`] decides whether one offer satisfies an intent's
//! constraints (and with which [`RejectCode`] it is refused otherwise); [`rank`] orders the
//! acceptable offers for a [`Strategy`] and gives each a score; [`selection_events`] turns a
//! ranking into the `selection` [`Event`] bodies that explain it.
//!
//! ## Scores
//!
//! Scores are integers in millionths ([`SCORE_SCALE`] = 1.0), higher is better, so that the
//! ranking is exact and the same on every machine. Each criterion is min-max normalised over
//! the offers being ranked:
//!
//! ```text
//! cost'        = (max_cost - cost) / (max_cost - min_cost)        lower cost is better
//! latency'     = (max_eta - eta)   / (max_eta - min_eta)          lower eta is better
//! reliability' = (rel - min_rel)   / (max_rel - min_rel)          higher reliability is better
//! ```
//!
//! (a criterion on which all offers are equal normalises to 1.0 for all). `LowestCost`,
//! `Fastest` and `HighestQuality` rank by the raw criterion and report its normalised value as
//! the score; `Weighted(w)` scores `(w.cost·cost' + w.latency·latency' + w.reliability·
//! reliability') / (w.cost + w.latency + w.reliability)`.
//!
//! Ties are broken deterministically: by the strategy's criterion, then score, then lower
//! cost, then lower eta, then higher reliability, then lower offer id. The ranking therefore
//! does not depend on the order in which offers arrived.
//!
//! ## Audience
//!
//! [`audience_for`] sizes an intent's [`Audience`] so that a round costs the network about the
//! offers it needs rather than one offer per provider: the smallest sample whose chance of
//! bringing fewer than `min_offers` offers stays below [`AUDIENCE_SHORTFALL`].
//!
//! When the requester's directory lists enough providers, its first intent is not gossiped at
//! all: [`directed_choice`] picks [`directed_count`] of them (SPEC.md §4.3), and the intent is
//! sent to each directly, so a round costs the network the offers it needs whatever the number
//! of providers.
//!
//! ## Reliability
//!
//! The reliability of an offer is the provider's claim unless a [`ReliabilitySource`] knows
//! better: when the requester has observed the provider before, the observed value replaces the
//! claim, both for the minimum-reliability constraint and for scoring.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use pvl_protocol::{
    Audience, Body, Constraints, Event, ObjectId, Offer, PublicKey, RejectCode, SignedObject,
    Strategy,
};
use pvl_protocol::{EventType, attr};

/// 1.0 in score units (scores are millionths).
pub const SCORE_SCALE: u64 = 1_000_000;

/// Most offers listed in one `selection` event (the protocol allows 256 attributes).
pub const OFFERS_PER_EVENT: usize = 200;

/// Observed reliability of providers, e.g. from the trace store's history.
pub trait ReliabilitySource {
    /// The observed reliability of `provider` in basis points, if there is history.
    fn observed_bps(&self, provider: &PublicKey) -> Option<u16>;

    /// How many providers of the capability the history knows, if it can tell: a lower bound
    /// of how many will see the intent. The requester sizes its intent's audience from it.
    fn provider_count(&self) -> Option<usize> {
        None
    }
}

/// The chance, at most, that a sampled audience brings fewer offers than the requester waits
/// for (it then waits for its offer window to close, and asks everyone if nobody offered).
pub const AUDIENCE_SHORTFALL: f64 = 1e-3;

/// The audience for an intent that waits for `min_offers` offers among about `providers`
/// providers: the smallest `wanted` such that, each provider answering independently with
/// probability `wanted / providers`, fewer than `min_offers` answer with probability at most
/// [`AUDIENCE_SHORTFALL`]. `None` (ask everyone) when no such sample is smaller than all of
/// them, or when `min_offers` is 0 (the requester waits for every offer of its window).
pub fn audience_for(min_offers: usize, providers: usize) -> Option<Audience> {
    if min_offers == 0 || providers <= min_offers {
        return None;
    }
    let n = u32::try_from(providers).ok()?;
    let k = u32::try_from(min_offers).ok()?;
    (k..n)
        .find(|&wanted| shortfall(n, k, f64::from(wanted) / f64::from(n)) <= AUDIENCE_SHORTFALL)
        .and_then(|wanted| Audience::new(wanted, n))
}

/// How many providers a directed first intent goes to (SPEC.md §4.3) when the requester waits
/// for `min_offers` offers and knows `known` providers: `min_offers` plus a spare for every
/// four (at least one), so that a provider that is down, busy or declines costs no waiting for
/// the offer window; at most all of them. `None` (gossip instead) when `min_offers` is 0 (the
/// requester waits for every offer of its window), when fewer than `min_offers` are known,
/// or when more than [`MAX_DIRECTED`] would be asked.
pub fn directed_count(min_offers: usize, known: usize) -> Option<usize> {
    if min_offers == 0 || known < min_offers {
        return None;
    }
    Some((min_offers + 1 + min_offers / 4).min(known)).filter(|&n| n <= MAX_DIRECTED)
}

/// Most providers a directed intent goes to: beyond that, gossip costs the requester less
/// than one direct message each, and the `run-spec` event's `asked` list stays within the
/// protocol's text limit (SPEC.md §6).
pub const MAX_DIRECTED: usize = 32;

/// The `count` providers a directed intent `intent` goes to (SPEC.md §4.3): providers in
/// `avoid` last, then the lowest audience draw ([`Audience::draw`], the same function as the
/// sampled audience's), so that rounds spread evenly over the providers and nobody can choose
/// to be asked; anyone can recompute the choice from the intent id and the keys.
pub fn directed_choice(
    intent: &ObjectId,
    known: &[PublicKey],
    avoid: &[PublicKey],
    count: usize,
) -> Vec<PublicKey> {
    let mut ranked: Vec<(bool, u64, PublicKey)> = known
        .iter()
        .map(|k| (avoid.contains(k), Audience::draw(intent, k), *k))
        .collect();
    ranked.sort_unstable();
    ranked.dedup_by_key(|(_, _, k)| *k);
    ranked.into_iter().take(count).map(|(_, _, k)| k).collect()
}

/// P(X < k) for X ~ Binomial(n, p), 0 < p < 1.
fn shortfall(n: u32, k: u32, p: f64) -> f64 {
    let q = 1.0 - p;
    let mut term = q.powi(i32::try_from(n).unwrap_or(i32::MAX)); // P(X = 0)
    let mut sum = 0.0;
    for i in 0..k {
        sum += term;
        term *= f64::from(n - i) / f64::from(i + 1) * p / q;
    }
    sum
}

/// No history: every provider's claim is taken as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

impl ReliabilitySource for NoHistory {
    fn observed_bps(&self, _provider: &PublicKey) -> Option<u16> {
        None
    }
}

impl ReliabilitySource for HashMap<PublicKey, u16> {
    fn observed_bps(&self, provider: &PublicKey) -> Option<u16> {
        self.get(provider).copied()
    }
}

impl ReliabilitySource for BTreeMap<PublicKey, u16> {
    fn observed_bps(&self, provider: &PublicKey) -> Option<u16> {
        self.get(provider).copied()
    }
}

/// One offer as the auction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The offer's id.
    pub offer: ObjectId,
    /// Who made it (its signer).
    pub provider: PublicKey,
    /// Its cost.
    pub cost: u64,
    /// Its estimated completion time, ms from award.
    pub eta_ms: u64,
    /// The reliability the provider claims, basis points.
    pub claimed_reliability_bps: u16,
    /// The reliability used for the constraint and the score: observed if known, else claimed.
    pub reliability_bps: u16,
    /// When the offer lapses, unix ms.
    pub expires_at_ms: u64,
}

impl Candidate {
    /// The candidate for a signed offer, with the reliability taken from `history` when it
    /// knows the provider. `None` if the object is not an offer.
    pub fn from_object(object: &SignedObject, history: &dyn ReliabilitySource) -> Option<Self> {
        let Body::Offer(offer) = object.body() else {
            return None;
        };
        Some(Self::new(object.id(), object.signer(), offer, history))
    }

    /// The candidate for `offer` (id `id`, signed by `provider`).
    pub fn new(
        id: ObjectId,
        provider: PublicKey,
        offer: &Offer,
        history: &dyn ReliabilitySource,
    ) -> Self {
        Candidate {
            offer: id,
            provider,
            cost: offer.cost,
            eta_ms: offer.eta_ms,
            claimed_reliability_bps: offer.reliability_bps,
            reliability_bps: history
                .observed_bps(&provider)
                .unwrap_or(offer.reliability_bps),
            expires_at_ms: offer.expires_at_ms,
        }
    }
}

/// Why an offer is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The code sent in the `Reject`.
    pub code: RejectCode,
    /// The reason in words.
    pub detail: String,
}

impl Violation {
    fn new(code: RejectCode, detail: String) -> Self {
        Violation { code, detail }
    }
}

/// Checks one offer against the intent's constraints at `now_ms`, assuming it would be awarded
/// now. `reliability_bps` is the reliability to hold against the minimum (see
/// [`Candidate::reliability_bps`]). Checks run in a fixed order: expiry, budget, deadline,
/// reliability, resources; the first failure is reported.
pub fn check_offer(
    offer: &Offer,
    reliability_bps: u16,
    constraints: &Constraints,
    now_ms: u64,
) -> Result<(), Violation> {
    if offer.expires_at_ms < now_ms {
        return Err(Violation::new(
            RejectCode::Expired,
            format!(
                "offer expired at {} ms, now is {now_ms} ms",
                offer.expires_at_ms
            ),
        ));
    }
    if let Some(max) = constraints.max_cost
        && offer.cost > max
    {
        return Err(Violation::new(
            RejectCode::OverBudget,
            format!("cost {} is above the budget of {max}", offer.cost),
        ));
    }
    if let Some(deadline) = constraints.deadline_ms {
        let done_at = now_ms.saturating_add(offer.eta_ms);
        if done_at > deadline {
            return Err(Violation::new(
                RejectCode::TooSlow,
                format!(
                    "eta {} ms would finish at {done_at} ms, after the deadline {deadline} ms",
                    offer.eta_ms
                ),
            ));
        }
    }
    if let Some(min) = constraints.min_reliability_bps
        && reliability_bps < min
    {
        let source = if reliability_bps == offer.reliability_bps {
            "claimed"
        } else {
            "observed"
        };
        return Err(Violation::new(
            RejectCode::LowReliability,
            format!("{source} reliability {reliability_bps} bps is below the minimum {min} bps"),
        ));
    }
    if !offer.resources.fits_within(&constraints.resources) {
        return Err(Violation::new(
            RejectCode::ResourceLimits,
            format!(
                "stated resources {:?} exceed the limits {:?}",
                offer.resources, constraints.resources
            ),
        ));
    }
    Ok(())
}

/// The normalised criteria of one candidate, each in millionths (1.0 = best of the set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Normalised {
    /// Normalised cost (1.0 = cheapest).
    pub cost: u64,
    /// Normalised latency (1.0 = fastest).
    pub latency: u64,
    /// Normalised reliability (1.0 = most reliable).
    pub reliability: u64,
}

/// A candidate with its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scored {
    /// The offer.
    pub candidate: Candidate,
    /// Its score in millionths, higher is better.
    pub score: u64,
    /// Its normalised criteria.
    pub normalised: Normalised,
}

/// The acceptable offers of one selection, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    /// The strategy used.
    pub strategy: Strategy,
    /// The offers, best first.
    pub ranked: Vec<Scored>,
}

impl Ranking {
    /// The best offer, if any.
    pub fn winner(&self) -> Option<&Scored> {
        self.ranked.first()
    }

    /// Why the winner won, in one sentence.
    pub fn explain(&self) -> String {
        let Some(w) = self.ranked.first() else {
            return "no acceptable offer".to_string();
        };
        let c = &w.candidate;
        let why = match self.strategy {
            Strategy::LowestCost => format!("lowest cost {}", c.cost),
            Strategy::Fastest => format!("shortest eta {} ms", c.eta_ms),
            Strategy::HighestQuality => format!("highest reliability {} bps", c.reliability_bps),
            Strategy::Weighted(wt) => format!(
                "best weighted score {} = ({}×cost {} + {}×latency {} + {}×reliability {}) / {}",
                fmt_score(w.score),
                wt.cost,
                fmt_score(w.normalised.cost),
                wt.latency,
                fmt_score(w.normalised.latency),
                wt.reliability,
                fmt_score(w.normalised.reliability),
                u64::from(wt.cost) + u64::from(wt.latency) + u64::from(wt.reliability),
            ),
        };
        let runner_up = match self.ranked.get(1) {
            Some(r) => format!(
                "; runner-up {} scored {} (cost {}, eta {} ms, reliability {} bps)",
                r.candidate.offer.short(),
                fmt_score(r.score),
                r.candidate.cost,
                r.candidate.eta_ms,
                r.candidate.reliability_bps
            ),
            None => "; it was the only acceptable offer".to_string(),
        };
        format!(
            "offer {} by {} wins under {}: {why} (score {}, cost {}, eta {} ms, reliability {} bps) among {} acceptable offer(s){runner_up}",
            c.offer.short(),
            c.provider.short(),
            self.strategy,
            fmt_score(w.score),
            c.cost,
            c.eta_ms,
            c.reliability_bps,
            self.ranked.len(),
        )
    }
}

/// Formats a score in millionths as a decimal with six digits (`912000` -> `0.912000`).
pub fn fmt_score(score: u64) -> String {
    format!("{}.{:06}", score / SCORE_SCALE, score % SCORE_SCALE)
}

/// `part / whole` in millionths; `whole == 0` means every value was equal: 1.0.
fn ratio(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return SCORE_SCALE;
    }
    let r = u128::from(part) * u128::from(SCORE_SCALE) / u128::from(whole);
    u64::try_from(r).unwrap_or(SCORE_SCALE)
}

/// Ranks the (already acceptable) `candidates` under `strategy`, best first.
pub fn rank(strategy: Strategy, candidates: &[Candidate]) -> Ranking {
    let (Some(min_cost), Some(max_cost)) = (
        candidates.iter().map(|c| c.cost).min(),
        candidates.iter().map(|c| c.cost).max(),
    ) else {
        return Ranking {
            strategy,
            ranked: Vec::new(),
        };
    };
    let min_eta = candidates.iter().map(|c| c.eta_ms).min().unwrap_or(0);
    let max_eta = candidates.iter().map(|c| c.eta_ms).max().unwrap_or(0);
    let min_rel = candidates
        .iter()
        .map(|c| c.reliability_bps)
        .min()
        .unwrap_or(0);
    let max_rel = candidates
        .iter()
        .map(|c| c.reliability_bps)
        .max()
        .unwrap_or(0);
    let mut ranked: Vec<Scored> = candidates
        .iter()
        .map(|c| {
            let normalised = Normalised {
                cost: ratio(max_cost - c.cost, max_cost - min_cost),
                latency: ratio(max_eta - c.eta_ms, max_eta - min_eta),
                reliability: ratio(
                    u64::from(c.reliability_bps - min_rel),
                    u64::from(max_rel - min_rel),
                ),
            };
            let score = match strategy {
                Strategy::LowestCost => normalised.cost,
                Strategy::Fastest => normalised.latency,
                Strategy::HighestQuality => normalised.reliability,
                Strategy::Weighted(w) => {
                    let total =
                        u128::from(w.cost) + u128::from(w.latency) + u128::from(w.reliability);
                    let sum = u128::from(w.cost) * u128::from(normalised.cost)
                        + u128::from(w.latency) * u128::from(normalised.latency)
                        + u128::from(w.reliability) * u128::from(normalised.reliability);
                    sum.checked_div(total)
                        .map_or(0, |v| u64::try_from(v).unwrap_or(SCORE_SCALE))
                }
            };
            Scored {
                candidate: c.clone(),
                score,
                normalised,
            }
        })
        .collect();
    ranked.sort_by(|a, b| compare(strategy, a, b));
    Ranking { strategy, ranked }
}

/// The total order of the ranking: `Less` means `a` ranks before (better than) `b`.
fn compare(strategy: Strategy, a: &Scored, b: &Scored) -> Ordering {
    let (x, y) = (&a.candidate, &b.candidate);
    let primary = match strategy {
        Strategy::LowestCost => x.cost.cmp(&y.cost),
        Strategy::Fastest => x.eta_ms.cmp(&y.eta_ms),
        Strategy::HighestQuality => y.reliability_bps.cmp(&x.reliability_bps),
        Strategy::Weighted(_) => Ordering::Equal,
    };
    primary
        .then(b.score.cmp(&a.score))
        .then(x.cost.cmp(&y.cost))
        .then(x.eta_ms.cmp(&y.eta_ms))
        .then(y.reliability_bps.cmp(&x.reliability_bps))
        .then(x.offer.cmp(&y.offer))
        .then(x.provider.cmp(&y.provider))
}

/// The `selection` event bodies explaining `ranking`: one event per [`OFFERS_PER_EVENT`]
/// offers, each listing its offers (in `about` and as `offer:<id8>` attributes with score,
/// cost, eta and reliability, in rank order) and repeating the decision. `rejected` lists how
/// many offers were refused per reason, added to the first event.
pub fn selection_events(ranking: &Ranking, rejected: &[(RejectCode, usize)]) -> Vec<Event> {
    let explanation = ranking.explain();
    let pages: Vec<&[Scored]> = if ranking.ranked.is_empty() {
        vec![&[]]
    } else {
        ranking.ranked.chunks(OFFERS_PER_EVENT).collect()
    };
    let page_count = pages.len();
    pages
        .into_iter()
        .enumerate()
        .map(|(page, offers)| {
            let mut attrs = vec![
                (attr::STRATEGY.to_string(), ranking.strategy.to_string()),
                (attr::VALID_OFFERS.to_string(), ranking.ranked.len().to_string()),
                (attr::PAGE.to_string(), format!("{}/{page_count}", page + 1)),
            ];
            if let Some(w) = ranking.winner() {
                attrs.push((attr::WINNER.to_string(), w.candidate.offer.to_string()));
                attrs.push((attr::WINNER_PROVIDER.to_string(), w.candidate.provider.to_string()));
                attrs.push((attr::WINNER_SCORE.to_string(), fmt_score(w.score)));
            }
            if page == 0 {
                for (code, count) in rejected {
                    attrs.push((format!("{}{}", attr::REJECTED_PREFIX, code.name()), count.to_string()));
                }
            }
            let first_rank = page * OFFERS_PER_EVENT;
            for (i, s) in offers.iter().enumerate() {
                let c = &s.candidate;
                attrs.push((
                    format!("{}{}", attr::OFFER_PREFIX, c.offer.short()),
                    format!(
                        "rank={} score={} cost={} eta_ms={} reliability_bps={} claimed_bps={} provider={}",
                        first_rank + i + 1,
                        fmt_score(s.score),
                        c.cost,
                        c.eta_ms,
                        c.reliability_bps,
                        c.claimed_reliability_bps,
                        c.provider.short()
                    ),
                ));
            }
            Event {
                event_type: EventType::Selection.to_string(),
                about: offers.iter().map(|s| s.candidate.offer).collect(),
                message: truncate(&explanation, pvl_protocol::MAX_TEXT_LEN),
                attrs,
            }
        })
        .collect()
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directed_intent_asks_the_needed_offers_and_a_spare() {
        assert_eq!(directed_count(0, 9), None);
        assert_eq!(directed_count(3, 2), None);
        assert_eq!(directed_count(3, 3), Some(3));
        assert_eq!(directed_count(3, 9), Some(4));
        assert_eq!(directed_count(3, 1_000), Some(4));
        assert_eq!(directed_count(8, 1_000), Some(11));
        assert_eq!(directed_count(9, 9), Some(9));
        assert_eq!(directed_count(25, 1_000), Some(32));
        assert_eq!(directed_count(26, 1_000), None);

        let keys: Vec<PublicKey> = (1..=9u8).map(|i| PublicKey([i; 32])).collect();
        let intent = ObjectId([42; 32]);
        let chosen = directed_choice(&intent, &keys, &[], 4);
        assert_eq!(chosen.len(), 4);
        // The lowest draws, whatever order the keys come in.
        let mut draws: Vec<(u64, PublicKey)> = keys
            .iter()
            .map(|k| (Audience::draw(&intent, k), *k))
            .collect();
        draws.sort_unstable();
        let lowest: Vec<PublicKey> = draws.iter().take(4).map(|(_, k)| *k).collect();
        assert_eq!(chosen, lowest);
        let mut reversed = keys.clone();
        reversed.reverse();
        assert_eq!(directed_choice(&intent, &reversed, &[], 4), lowest);
        // Avoided providers only when nobody else is left.
        let avoided = directed_choice(&intent, &keys, &lowest[..1], 4);
        assert!(!avoided.contains(&lowest[0]));
        assert_eq!(directed_choice(&intent, &keys, &keys[..8], 2)[0], keys[8]);
        // Another intent, another choice: rounds spread over the providers.
        let other = directed_choice(&ObjectId([43; 32]), &keys, &[], 4);
        assert_ne!(other, chosen);
    }

    #[test]
    fn the_audience_is_the_smallest_safe_sample() {
        assert_eq!(
            audience_for(0, 100),
            None,
            "waiting for every offer asks everyone"
        );
        assert_eq!(audience_for(3, 3), None);
        assert_eq!(audience_for(9, 9), None);
        // Nine providers, three offers wanted: seven of nine asked.
        assert_eq!(audience_for(3, 9), Audience::new(7, 9));
        assert!(shortfall(9, 3, 7.0 / 9.0) <= AUDIENCE_SHORTFALL);
        assert!(shortfall(9, 3, 6.0 / 9.0) > AUDIENCE_SHORTFALL);
        // However many providers there are, about a dozen are asked for three offers.
        for n in [100, 1_000, 100_000] {
            let a = audience_for(3, n).unwrap();
            assert!((10..=13).contains(&a.wanted), "{n}: {a:?}");
            assert_eq!(a.of as usize, n);
        }
        assert_eq!(audience_for(1, 1_000).unwrap().wanted, 7);
    }

    fn cand(n: u8, cost: u64, eta: u64, rel: u16) -> Candidate {
        Candidate {
            offer: ObjectId([n; 32]),
            provider: PublicKey([n; 32]),
            cost,
            eta_ms: eta,
            claimed_reliability_bps: rel,
            reliability_bps: rel,
            expires_at_ms: u64::MAX,
        }
    }

    #[test]
    fn weighted_score_by_hand() {
        // cost 10/20/30, eta 300/200/100, reliability 9000/9500/9900.
        let c = [
            cand(1, 10, 300, 9000),
            cand(2, 20, 200, 9500),
            cand(3, 30, 100, 9900),
        ];
        let w = pvl_protocol::Weights {
            cost: 500,
            latency: 300,
            reliability: 200,
        };
        let r = rank(Strategy::Weighted(w), &c);
        // 1: (500*1 + 300*0 + 200*0)/1000 = 0.5
        // 2: (500*0.5 + 300*0.5 + 200*0.555555)/1000 = 0.511111
        // 3: (0 + 300*1 + 200*1)/1000 = 0.5
        let scores: Vec<(u8, u64)> = r
            .ranked
            .iter()
            .map(|s| (s.candidate.offer.0[0], s.score))
            .collect();
        assert_eq!(scores, vec![(2, 511_111), (1, 500_000), (3, 500_000)]);
    }

    #[test]
    fn equal_values_normalise_to_one() {
        let r = rank(Strategy::LowestCost, &[cand(1, 5, 5, 5), cand(2, 5, 5, 5)]);
        assert!(r.ranked.iter().all(|s| s.score == SCORE_SCALE));
        assert_eq!(r.winner().map(|w| w.candidate.offer.0[0]), Some(1));
    }

    #[test]
    fn events_page_and_fit_the_protocol_limits() {
        let c: Vec<Candidate> = (0..=250u8).map(|i| cand(i, u64::from(i), 10, 10)).collect();
        let events = selection_events(&rank(Strategy::LowestCost, &c), &[]);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.attrs.len() <= 256 && e.about.len() <= 256)
        );
        assert_eq!(events.iter().map(|e| e.about.len()).sum::<usize>(), 251);
    }
}
