//! Full contract-net rounds through the in-memory simulation: real `Provider` state machines,
//! wire bytes decoded on delivery, a simulated clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{FailureReason, OfferPolicy, Outcome, Provider, RequestSpec, Requester};
use pvl_protocol::{Body, Kind, Payload, PublicKey, SignedObject, Strategy, TaskStatus};

/// Providers 11 (cost 30), 12 (cost 50), 13 (cost 80), all fitting the constraints.
fn providers() -> Vec<Provider> {
    [(11u8, 30u64), (12, 50), (13, 80)]
        .into_iter()
        .map(|(seed, price)| {
            let mut policy = OfferPolicy::fixed(price, 1_000, 9_500);
            policy.resources = fitting_resources();
            Provider::new(key(seed), 2).serve("sha256", policy)
        })
        .collect()
}

/// An executor where the listed providers fail or hang and the others hash the input.
fn executor(fail: Vec<PublicKey>, hang: Vec<PublicKey>) -> Executor {
    Box::new(move |who, _task, _cap, input| {
        if hang.contains(who) {
            ExecPlan::Hang
        } else if fail.contains(who) {
            ExecPlan::Finish {
                after_ms: 200,
                result: Err("disk full".into()),
                progress: false,
            }
        } else {
            let digest = pvl_protocol::sha256(input.inline().unwrap_or_default());
            ExecPlan::Finish {
                after_ms: 300,
                result: Ok(Payload::Inline(digest.to_vec())),
                progress: true,
            }
        }
    })
}

fn sim(spec: RequestSpec, providers: Vec<Provider>, exec: Executor) -> Sim {
    let requester = Requester::new(key(1), spec);
    Sim::new(requester, key(1).public(), providers, 10, exec)
}

/// The distinct objects of `kind` (both sides of a conversation record what they exchange).
fn kinds(objects: &[SignedObject], kind: Kind) -> Vec<SignedObject> {
    let mut seen = std::collections::HashSet::new();
    objects
        .iter()
        .filter(|o| o.kind() == kind && seen.insert((o.id(), o.is_countersigned())))
        .cloned()
        .collect()
}

#[test]
fn full_round_ends_in_a_countersigned_receipt() {
    let mut s = sim(
        spec(Strategy::LowestCost),
        providers(),
        executor(vec![], vec![]),
    );
    let outcome = s.run(T0, T0 + 120_000).cloned().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let Outcome::Completed(c) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(c.provider, key(11).public());
    assert_eq!(c.cost, 30);
    assert_eq!(c.awards, 1);
    assert_eq!(
        c.output,
        Some(Payload::Inline(pvl_protocol::sha256(b"hello").to_vec()))
    );
    // The countersigned receipt survives the wire and verifies on its own.
    let receipt = c.receipt.unwrap();
    let decoded = SignedObject::decode(receipt.bytes()).unwrap();
    assert!(decoded.is_countersigned());
    assert_eq!(decoded.signer(), key(11).public());
    let Body::Receipt(r) = decoded.body() else {
        panic!()
    };
    assert_eq!(r.requester, key(1).public());
    assert_eq!(r.task, c.task);
    assert_eq!(r.status, TaskStatus::Ok);
    assert_eq!(r.cost, 30);
    // Everything anyone created or accepted was recorded and decodes.
    assert_decodes(&s.recorded);
    assert_eq!(kinds(&s.recorded, Kind::TaskProgress).len(), 1);
    let receipts = kinds(&s.recorded, Kind::Receipt);
    assert!(receipts.iter().any(SignedObject::is_countersigned));
    // Both losers are told by one signed reject naming both offers, each with its reason.
    let rejects = kinds(&s.recorded, Kind::Reject);
    assert_eq!(rejects.len(), 1, "one reject for the two losers");
    let Body::Reject(r) = rejects[0].body() else {
        unreachable!()
    };
    assert_eq!(r.entries().count(), 2, "two losers told");
    assert_eq!(events_in(&s.recorded, "selection").len(), 1);
    // The provider's slot is free again.
    assert!(s.providers().iter().all(|p| p.active_tasks() == 0));
}

#[test]
fn a_failed_winner_is_replaced_by_the_next_best() {
    let mut s = sim(
        spec(Strategy::LowestCost),
        providers(),
        executor(vec![key(11).public()], vec![]),
    );
    let Outcome::Completed(c) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(c.provider, key(12).public(), "the next cheapest took over");
    assert_eq!(c.awards, 2);
    let moved = events_in(&s.recorded, "reassigned");
    assert_eq!(moved.len(), 1);
    assert_eq!(
        attr(&moved[0], "from-provider"),
        Some(key(11).public().to_string().as_str())
    );
    assert_eq!(
        attr(&moved[0], "to-provider"),
        Some(key(12).public().to_string().as_str())
    );
    assert!(attr(&moved[0], "reason").unwrap().contains("disk full"));
}

#[test]
fn a_silent_winner_times_out_and_the_next_best_takes_over() {
    let mut spec = spec(Strategy::LowestCost);
    spec.grace_ms = 500;
    let mut s = sim(spec, providers(), executor(vec![], vec![key(11).public()]));
    let Outcome::Completed(c) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(c.provider, key(12).public());
    let moved = events_in(&s.recorded, "reassigned");
    assert!(
        attr(&moved[0], "reason").unwrap().contains("eta"),
        "{:?}",
        moved[0]
    );
    // Award at window close (T0+1000) + eta 1000 + grace 500: the watchdog fired then.
    let reassign = s
        .recorded
        .iter()
        .find(|o| matches!(o.body(), Body::Event(e) if e.event_type == "reassigned"))
        .unwrap();
    assert_eq!(reassign.timestamp_ms(), T0 + 2_500);
}

#[test]
fn a_silence_limit_catches_a_provider_that_stops_talking() {
    let mut spec = spec(Strategy::LowestCost);
    spec.grace_ms = 30_000;
    spec.silence_ms = Some(400);
    let mut s = sim(spec, providers(), executor(vec![], vec![key(11).public()]));
    let Outcome::Completed(c) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(c.provider, key(12).public());
    let moved = events_in(&s.recorded, "reassigned");
    assert!(
        attr(&moved[0], "reason").unwrap().contains("silent"),
        "{:?}",
        moved[0]
    );
}

#[test]
fn when_everyone_fails_the_intent_is_republished_then_fails_clearly() {
    let everyone: Vec<PublicKey> = [11u8, 12, 13].map(|s| key(s).public()).to_vec();
    let mut s = sim(
        spec(Strategy::LowestCost),
        providers(),
        executor(everyone, vec![]),
    );
    let Outcome::Failed(f) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::AllProvidersFailed);
    let intents = kinds(&s.recorded, Kind::Intent);
    // The requester's two intents (each also recorded by the three providers who bid).
    let mine: Vec<_> = intents
        .iter()
        .filter(|i| i.signer() == key(1).public())
        .map(SignedObject::id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(mine.len(), 2, "the intent was re-published once");
    let republished = intents.iter().find(|i| !i.is_root()).unwrap();
    assert_eq!(
        republished.trace_id(),
        f.trace,
        "the re-published intent stays in the trace"
    );
    let moved = events_in(&s.recorded, "reassigned");
    assert_eq!(moved.len(), 3);
    assert_eq!(attr(&moved[2], "to"), Some("republish"));
    // In round 2 the providers that failed are refused.
    let others = kinds(&s.recorded, Kind::Reject)
        .into_iter()
        .filter(|r| matches!(r.body(), Body::Reject(b) if b.detail.contains("already failed")))
        .count();
    assert_eq!(others, 3);
    assert!(!events_in(&s.recorded, "intent-failed").is_empty());
}

#[test]
fn without_republication_all_failing_ends_at_once() {
    let everyone: Vec<PublicKey> = [11u8, 12, 13].map(|s| key(s).public()).to_vec();
    let mut spec = spec(Strategy::LowestCost);
    spec.max_republish = 0;
    let mut s = sim(spec, providers(), executor(everyone, vec![]));
    let Outcome::Failed(f) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::AllProvidersFailed);
    assert!(f.detail.contains("3 task(s) awarded"), "{}", f.detail);
}

#[test]
fn no_provider_serves_the_capability() {
    let mut spec = spec(Strategy::LowestCost);
    spec.capability = "resize".into();
    let mut s = sim(spec, providers(), executor(vec![], vec![]));
    let Outcome::Failed(f) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::NoOffers);
}

#[test]
fn a_large_auction_pages_its_selection_events_and_rejects_every_loser() {
    // 250 providers, all acceptable, prices 10..=259: more offers than one event can list.
    let providers: Vec<Provider> = (0..250u64)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i + 1_000).to_le_bytes());
            let mut policy = OfferPolicy::fixed(
                10 + i,
                500 + (i * 37) % 3_000,
                9_000 + ((i * 13) % 1_000) as u16,
            );
            policy.resources = fitting_resources();
            Provider::new(pvl_protocol::Keypair::from_seed(seed), 1).serve("sha256", policy)
        })
        .collect();
    let mut spec = spec(Strategy::LowestCost);
    spec.constraints.max_cost = Some(1_000);
    let mut s = sim(spec, providers, executor(vec![], vec![]));
    let Outcome::Completed(c) = s.run(T0, T0 + 120_000).cloned().unwrap() else {
        panic!()
    };
    assert_eq!(c.cost, 10);
    let stats = s.requester().stats();
    assert_eq!(stats.offers_valid, 250);
    assert_eq!(stats.rejected(pvl_protocol::RejectCode::NotSelected), 249);
    let selection = events_in(&s.recorded, "selection");
    assert_eq!(selection.len(), 2);
    assert_eq!(selection.iter().map(|e| e.about.len()).sum::<usize>(), 250);
    assert_eq!(attr(&selection[1], "page"), Some("2/2"));
    assert_decodes(&s.recorded);
}
