//! Adaptive choice end to end: the history of a failing cheap provider makes the lowest-cost
//! auction pass it over, through the in-memory simulation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pvl_patterns::adaptive::{PatternRecord, ProviderRecord};
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{OfferPolicy, Outcome, PatternHistory, Provider, Requester, Situation, choose};
use pvl_protocol::{Body, Kind, PatternHint, Payload, PublicKey, Strategy};

/// Provider 11 is the cheapest (cost 30) but failed 3 of its 4 tasks.
struct History;

impl PatternHistory for History {
    fn providers(&self, _capability: &str) -> Vec<(PublicKey, ProviderRecord)> {
        vec![
            (
                key(11).public(),
                ProviderRecord {
                    tasks: 4,
                    successes: 1,
                    mean_latency_ms: Some(900),
                },
            ),
            (
                key(12).public(),
                ProviderRecord {
                    tasks: 5,
                    successes: 5,
                    mean_latency_ms: Some(400),
                },
            ),
        ]
    }

    fn pattern(&self, _capability: &str, _pattern: PatternHint) -> PatternRecord {
        PatternRecord::default()
    }
}

fn providers(prices: &[(u8, u64)]) -> Vec<Provider> {
    prices
        .iter()
        .map(|(seed, price)| {
            let mut policy = OfferPolicy::fixed(*price, 1_000, 9_500);
            policy.resources = fitting_resources();
            Provider::new(key(*seed), 2).serve("sha256", policy)
        })
        .collect()
}

fn hashing() -> Executor {
    Box::new(|_, _, _, input| ExecPlan::Finish {
        after_ms: 100,
        result: Ok(Payload::Inline(
            pvl_protocol::sha256(input.inline().unwrap_or_default()).to_vec(),
        )),
        progress: false,
    })
}

fn selection_attrs(s: &Sim) -> Vec<(String, String)> {
    s.recorded
        .iter()
        .filter(|o| o.kind() == Kind::Event)
        .find_map(|o| match o.body() {
            Body::Event(e) if e.event_type == "selection" => Some(e.attrs.clone()),
            _ => None,
        })
        .expect("a selection event")
}

#[test]
fn lowest_cost_avoids_a_cheap_provider_with_a_failing_record() {
    let situation = Situation {
        providers_known: 3,
        objective: Some(Strategy::LowestCost),
        ..Situation::new("sha256")
    };
    let choice = choose(&situation, &History);
    assert_eq!(choice.pattern, PatternHint::Auction);
    assert_eq!(choice.avoid, vec![key(11).public()]);

    let mut spec = spec(Strategy::LowestCost);
    spec.avoid = choice.avoid.clone();
    let requester = Requester::new(key(1), spec);
    let mut s = Sim::new(
        requester,
        key(1).public(),
        providers(&[(11, 30), (12, 50), (13, 80)]),
        10,
        hashing(),
    );
    let outcome = s.run(T0, T0 + 60_000).cloned().unwrap();
    let Outcome::Completed(c) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(c.provider, key(12).public(), "the next cheapest, not 11");
    let attrs = selection_attrs(&s);
    assert!(
        attrs.iter().any(|(k, _)| k == "avoided-offers"),
        "{attrs:?}"
    );

    // Without the history, the cheapest wins.
    let mut plain = Sim::new(
        Requester::new(key(1), spec_lowest()),
        key(1).public(),
        providers(&[(11, 30), (12, 50), (13, 80)]),
        10,
        hashing(),
    );
    let Some(Outcome::Completed(c)) = plain.run(T0, T0 + 60_000).cloned() else {
        panic!("no completion")
    };
    assert_eq!(c.provider, key(11).public());
}

fn spec_lowest() -> pvl_patterns::RequestSpec {
    spec(Strategy::LowestCost)
}

#[test]
fn an_avoided_provider_is_still_used_when_nobody_else_offers() {
    let mut spec = spec(Strategy::LowestCost);
    spec.avoid = vec![key(11).public()];
    let mut s = Sim::new(
        Requester::new(key(1), spec),
        key(1).public(),
        providers(&[(11, 30)]),
        10,
        hashing(),
    );
    let Some(Outcome::Completed(c)) = s.run(T0, T0 + 60_000).cloned() else {
        panic!("no completion: {:?}", s.errors)
    };
    assert_eq!(c.provider, key(11).public());
    let message = s
        .recorded
        .iter()
        .find_map(|o| match o.body() {
            Body::Event(e) if e.event_type == "selection" => Some(e.message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        message.contains("Only offers from avoided providers"),
        "{message}"
    );
}
