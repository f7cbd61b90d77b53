//! Provider self-selection (`Intent::audience`, SPEC.md 4.1) through the in-memory simulation,
//! with real signatures: a round costs about the offers it needs, not one offer per provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use pvl_patterns::select::{ReliabilitySource, audience_for};
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{OfferPolicy, Outcome, Provider, Requester};
use pvl_protocol::{Audience, Body, Kind, Payload, PublicKey, SignedObject, Strategy};

/// A history that knows how many providers serve the capability and nothing else.
struct Known(usize);

impl ReliabilitySource for Known {
    fn observed_bps(&self, _provider: &PublicKey) -> Option<u16> {
        None
    }
    fn provider_count(&self) -> Option<usize> {
        Some(self.0)
    }
}

/// `n` providers with seeds 11.., all fitting the constraints, prices 30, 31, ...
fn providers(n: u8) -> Vec<Provider> {
    (0..n)
        .map(|i| {
            let mut policy = OfferPolicy::fixed(30 + u64::from(i), 1_000, 9_500);
            policy.resources = fitting_resources();
            Provider::new(key(11 + i), 2).serve("sha256", policy)
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

fn distinct(objects: &[SignedObject], kind: Kind) -> Vec<SignedObject> {
    let mut seen = std::collections::HashSet::new();
    objects
        .iter()
        .filter(|o| o.kind() == kind && seen.insert(o.id()))
        .cloned()
        .collect()
}

/// The only inputs refused are offers that came after the window closed (the sample brings
/// more offers than the requester waits for): refused `intent-closed`, never recorded.
fn assert_only_late_offers_refused(errors: &[String]) {
    assert!(
        errors.iter().all(|e| e.starts_with("intent-closed: ")),
        "{errors:?}"
    );
}

fn audience_of(intent: &SignedObject) -> Option<Audience> {
    match intent.body() {
        Body::Intent(i) => i.audience,
        _ => None,
    }
}

#[test]
fn a_sampled_intent_is_answered_by_its_audience_only() {
    let n = 60u8;
    let mut spec = spec(Strategy::LowestCost);
    spec.min_offers = 3;
    let requester = Requester::new(key(1), spec).with_history(Arc::new(Known(n.into())));
    let mut s = Sim::new(requester, key(1).public(), providers(n), 10, hashing());
    let outcome = s.run(T0, T0 + 120_000).cloned().unwrap();
    assert_only_late_offers_refused(&s.errors);
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");

    let intents = distinct(&s.recorded, Kind::Intent);
    assert_eq!(intents.len(), 1, "one round was enough");
    let intent = &intents[0];
    let audience = audience_of(intent).expect("the intent names an audience");
    assert_eq!(Some(audience), audience_for(3, n.into()));

    // Exactly the providers whose draw falls under the threshold offered.
    let asked: Vec<PublicKey> = (0..n)
        .map(|i| key(11 + i).public())
        .filter(|p| audience.includes(&intent.id(), p))
        .collect();
    let offers = distinct(&s.recorded, Kind::Offer);
    let mut bidders: Vec<PublicKey> = offers.iter().map(SignedObject::signer).collect();
    bidders.sort();
    let mut expected = asked.clone();
    expected.sort();
    assert_eq!(bidders, expected);
    assert!(offers.len() >= 3, "enough offers: {}", offers.len());
    assert!(
        offers.len() <= 2 * audience.wanted as usize,
        "{} offers from {n} providers (wanted {})",
        offers.len(),
        audience.wanted
    );
}

#[test]
fn without_history_or_min_offers_everyone_is_asked() {
    // No provider count known: no audience.
    let mut with_k = spec(Strategy::LowestCost);
    with_k.min_offers = 3;
    let requester = Requester::new(key(1), with_k.clone());
    let mut s = Sim::new(requester, key(1).public(), providers(8), 10, hashing());
    s.run(T0, T0 + 120_000);
    let intent = distinct(&s.recorded, Kind::Intent).remove(0);
    assert_eq!(audience_of(&intent), None);
    assert_eq!(distinct(&s.recorded, Kind::Offer).len(), 8);

    // Waiting for every offer of the window (min_offers 0): no audience either.
    let requester =
        Requester::new(key(1), spec(Strategy::LowestCost)).with_history(Arc::new(Known(8)));
    let mut s = Sim::new(requester, key(1).public(), providers(8), 10, hashing());
    s.run(T0, T0 + 120_000);
    let intent = distinct(&s.recorded, Kind::Intent).remove(0);
    assert_eq!(audience_of(&intent), None);

    // Opting out.
    with_k.sample_audience = false;
    let requester = Requester::new(key(1), with_k).with_history(Arc::new(Known(8)));
    let mut s = Sim::new(requester, key(1).public(), providers(8), 10, hashing());
    s.run(T0, T0 + 120_000);
    let intent = distinct(&s.recorded, Kind::Intent).remove(0);
    assert_eq!(audience_of(&intent), None);
}

#[test]
fn a_sample_that_brings_nothing_is_widened_to_everyone() {
    // The history believes in 1000 providers, but only 4 exist: the sample of about 7 of 1000
    // most likely holds none of them, and the requester asks everyone in a second round.
    let mut spec = spec(Strategy::LowestCost);
    spec.min_offers = 1;
    spec.max_republish = 0;
    let requester = Requester::new(key(1), spec).with_history(Arc::new(Known(1000)));
    let mut s = Sim::new(requester, key(1).public(), providers(4), 10, hashing());
    let outcome = s.run(T0, T0 + 120_000).cloned().unwrap();
    assert_only_late_offers_refused(&s.errors);
    let intents = distinct(&s.recorded, Kind::Intent);
    let first = intents.iter().find(|i| i.is_root()).unwrap();
    let audience = audience_of(first).unwrap();
    let asked = (0..4u8)
        .filter(|i| audience.includes(&first.id(), &key(11 + i).public()))
        .count();
    if asked > 0 {
        // This draw happened to include a provider: the first round was enough.
        assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
        return;
    }
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    assert_eq!(intents.len(), 2, "one widened round");
    let second = intents.iter().find(|i| !i.is_root()).unwrap();
    assert_eq!(audience_of(second), None, "the second round asks everyone");
    assert_eq!(second.trace_id(), first.id());
    let widened = events_in(&s.recorded, "audience-widened");
    assert_eq!(widened.len(), 1);
    assert_eq!(attr(&widened[0], "of"), Some("1000"));
}

#[test]
fn losers_share_one_signed_reject_each_with_its_own_reason() {
    let requester = Requester::new(key(1), spec(Strategy::LowestCost));
    let mut s = Sim::new(requester, key(1).public(), providers(5), 10, hashing());
    let outcome = s.run(T0, T0 + 120_000).cloned().unwrap();
    let Outcome::Completed(c) = outcome else {
        panic!("{outcome:?}")
    };
    let rejects = distinct(&s.recorded, Kind::Reject);
    assert_eq!(rejects.len(), 1, "one reject for the four losers");
    let Body::Reject(r) = rejects[0].body() else {
        unreachable!()
    };
    let entries: Vec<_> = r.entries().collect();
    assert_eq!(entries.len(), 4);
    let offers = distinct(&s.recorded, Kind::Offer);
    for (offer, code, detail) in &entries {
        assert_eq!(*code, pvl_protocol::RejectCode::NotSelected);
        assert!(detail.contains("score"), "{detail}");
        assert!(offers.iter().any(|o| o.id() == *offer));
        assert!(rejects[0].parents().contains(offer));
    }
    // Every loser received it (each recorded the same object), the winner did not.
    let holders = s
        .recorded
        .iter()
        .filter(|o| o.id() == rejects[0].id())
        .count();
    assert_eq!(
        holders,
        1 + 4,
        "the requester and the four losers recorded it"
    );
    assert!(!entries.iter().any(|(o, _, _)| {
        offers
            .iter()
            .any(|x| x.id() == *o && x.signer() == c.provider)
    }));
}
