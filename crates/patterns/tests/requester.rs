//! Requester-side contract-net with hand-signed offers and a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use pvl_patterns::{
    FailureReason, Outcome, Refusal, Requester, RequesterState, TimerKind, TimerToken,
};
use pvl_protocol::{Body, Keypair, RejectCode, SignedObject, Strategy, Weights};

/// Starts a requester and returns it with its intent.
fn started(strategy: Strategy) -> (Requester, SignedObject) {
    let mut r = Requester::new(key(1), spec(strategy));
    let actions = r.start(T0).unwrap();
    let intent = published(&actions).pop().unwrap();
    assert_eq!(
        timers(&actions),
        vec![(T0 + 1_000, TimerKind::OfferWindow { round: 1 })]
    );
    assert_eq!(recorded(&actions), vec![intent.clone()]);
    (r, intent)
}

fn window_timer(r: &Requester, round: u32) -> TimerToken {
    TimerToken {
        trace: r.trace().unwrap(),
        scope: r.scope().unwrap(),
        kind: TimerKind::OfferWindow { round },
    }
}

/// The three providers of the strategy tests: A cheapest, B fastest, C most reliable.
fn three_offers(intent: &SignedObject) -> Vec<(Keypair, SignedObject)> {
    [
        (11u8, 30, 3_000, 9_200),
        (12, 50, 1_000, 9_500),
        (13, 80, 2_000, 9_900),
    ]
    .into_iter()
    .map(|(seed, cost, eta, rel)| {
        let k = key(seed);
        let o = offer(intent, &k, cost, eta, rel, T0 + 100 + u64::from(seed));
        (k, o)
    })
    .collect()
}

/// Runs a selection over `offers` and returns (winner provider seed, all actions).
fn select_with(
    strategy: Strategy,
    extra: Option<(u8, u64, u64, u16)>,
) -> (u8, Vec<pvl_patterns::Action>) {
    let (mut r, intent) = started(strategy);
    let mut all = Vec::new();
    let mut offers = three_offers(&intent);
    if let Some((seed, cost, eta, rel)) = extra {
        let k = key(seed);
        let o = offer(&intent, &k, cost, eta, rel, T0 + 150);
        offers.push((k, o));
    }
    for (_, o) in &offers {
        let actions = r.on_object(o.clone(), T0 + 200).unwrap();
        assert_eq!(
            recorded(&actions),
            vec![o.clone()],
            "an accepted offer is recorded"
        );
        all.extend(actions);
    }
    let actions = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    let starts = task_starts(&actions);
    assert_eq!(starts.len(), 1);
    let Body::TaskStart(start) = starts[0].body() else {
        unreachable!()
    };
    let seed = offers
        .iter()
        .find(|(k, _)| k.public() == start.provider)
        .map(|(k, _)| k.seed()[0])
        .unwrap();
    // Losers are told, with scores.
    let rejects = rejects(&actions);
    assert_eq!(rejects.len(), offers.len() - 1);
    for (_, code, detail, to) in &rejects {
        assert_eq!(*code, RejectCode::NotSelected);
        assert!(detail.contains("score"), "{detail}");
        assert_ne!(*to, start.provider);
    }
    assert_decodes(&recorded(&actions));
    all.extend(actions);
    (seed, all)
}

#[test]
fn lowest_cost_fastest_and_highest_quality_pick_their_winner() {
    assert_eq!(select_with(Strategy::LowestCost, None).0, 11);
    assert_eq!(select_with(Strategy::Fastest, None).0, 12);
    assert_eq!(select_with(Strategy::HighestQuality, None).0, 13);
}

#[test]
fn weighted_picks_the_hand_computed_winner_and_explains_every_offer() {
    // Three offers, weights cost 0.5, latency 0.3, reliability 0.2 (thousandths):
    //   cost:        A 30 -> 1.0, B 50 -> 0.6, C 80 -> 0.0
    //   latency:     A 3000 -> 0.0, B 1000 -> 1.0, C 2000 -> 0.5
    //   reliability: A 9200 -> 0.0, B 9500 -> 0.428571, C 9900 -> 1.0
    //   A = 0.5, B = (0.5*0.6 + 0.3*1 + 0.2*0.428571) = 0.685714, C = 0.15 + 0.2 = 0.35
    let w = Weights {
        cost: 500,
        latency: 300,
        reliability: 200,
    };
    let (winner, actions) = select_with(Strategy::Weighted(w), None);
    assert_eq!(winner, 12);
    let selection = events_in(&recorded(&actions), "selection");
    assert_eq!(selection.len(), 1);
    let e = &selection[0];
    assert_eq!(e.about.len(), 3, "every offer is listed");
    let scores: Vec<&str> = e
        .attrs
        .iter()
        .filter(|(k, _)| k.starts_with("offer:"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(scores.len(), 3);
    assert!(scores[0].contains("rank=1 score=0.685714"), "{scores:?}");
    assert!(scores[1].contains("rank=2 score=0.500000"), "{scores:?}");
    assert!(scores[2].contains("rank=3 score=0.350000"), "{scores:?}");
    assert_eq!(attr(e, "winner-score"), Some("0.685714"));
    assert!(
        e.message.contains("best weighted score 0.685714"),
        "{}",
        e.message
    );

    // With a fourth, balanced offer D (cost 40, eta 1500, reliability 9600) and equal weights:
    //   D = (0.8 + 0.75 + 0.571428) / 3 = 0.707142 beats B = (0.6 + 1 + 0.428571) / 3 = 0.676190,
    //   although D is best on no single criterion.
    let w = Weights {
        cost: 1_000,
        latency: 1_000,
        reliability: 1_000,
    };
    let (winner, actions) = select_with(Strategy::Weighted(w), Some((14, 40, 1_500, 9_600)));
    assert_eq!(winner, 14);
    let e = &events_in(&recorded(&actions), "selection")[0];
    assert_eq!(attr(e, "winner-score"), Some("0.707142"));
    assert_eq!(e.about.len(), 4);
}

#[test]
fn observed_reliability_replaces_the_claim() {
    let (_, intent) = started(Strategy::HighestQuality);
    let offers = three_offers(&intent);
    // History says C (claims 9900) really delivers 9100 and B delivers 9950.
    let history: HashMap<_, _> = [(key(13).public(), 9_100u16), (key(12).public(), 9_950u16)]
        .into_iter()
        .collect();
    let mut r =
        Requester::new(key(1), spec(Strategy::HighestQuality)).with_history(Arc::new(history));
    let actions = r.start(T0).unwrap();
    let intent = published(&actions).pop().unwrap();
    let offers: Vec<_> = offers
        .iter()
        .map(|(k, o)| {
            let Body::Offer(b) = o.body() else {
                unreachable!()
            };
            offer(&intent, k, b.cost, b.eta_ms, b.reliability_bps, T0 + 100)
        })
        .collect();
    for o in &offers {
        r.on_object(o.clone(), T0 + 200).unwrap();
    }
    let actions = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    let Body::TaskStart(start) = task_starts(&actions)[0].body().clone() else {
        unreachable!()
    };
    assert_eq!(start.provider, key(12).public());
}

#[test]
fn offers_breaking_constraints_are_rejected_with_the_right_code() {
    let (mut r, intent) = started(Strategy::LowestCost);
    let at = T0 + 100;
    let cases: Vec<(u8, SignedObject, RejectCode)> = vec![
        (
            21,
            offer(&intent, &key(21), 150, 1_000, 9_500, at),
            RejectCode::OverBudget,
        ),
        (
            22,
            offer(&intent, &key(22), 50, 70_000, 9_500, at),
            RejectCode::TooSlow,
        ),
        (
            23,
            offer(&intent, &key(23), 50, 1_000, 8_000, at),
            RejectCode::LowReliability,
        ),
        (
            24,
            offer_with(&intent, &key(24), T0 + 10, |o| o.expires_at_ms = T0 + 50),
            RejectCode::Expired,
        ),
        (
            25,
            offer_with(&intent, &key(25), at, |o| {
                o.resources.cpu_millicores = Some(4_000)
            }),
            RejectCode::ResourceLimits,
        ),
        (
            26,
            offer_with(&intent, &key(26), at, |o| o.resources.memory_bytes = None),
            RejectCode::ResourceLimits,
        ),
    ];
    // An offer for an intent this requester never published belongs to no conversation of
    // its own: refused, nothing recorded, nothing sent.
    let stray = offer_with(&intent, &key(27), at, |o| {
        o.intent = pvl_protocol::ObjectId([9; 32])
    });
    assert!(r.on_object(stray, at).is_err());
    for (seed, o, code) in &cases {
        let actions = r.on_object(o.clone(), at).unwrap();
        let rj = rejects(&actions);
        assert_eq!(rj.len(), 1, "provider {seed}");
        assert_eq!(rj[0].0, o.id());
        assert_eq!(rj[0].1, *code, "provider {seed}: {}", rj[0].2);
        assert_eq!(
            rj[0].3,
            key(*seed).public(),
            "the reject goes to the bidder"
        );
        // The offer and the signed reject are both recorded.
        let rec = recorded(&actions);
        assert_eq!(rec.len(), 2);
        assert_decodes(&rec);
        assert_eq!(rec[1].signer(), key(1).public());
    }
    // A valid offer, then a second one from the same provider: a duplicate.
    let good = offer(&intent, &key(30), 60, 1_000, 9_500, at);
    assert!(rejects(&r.on_object(good.clone(), at).unwrap()).is_empty());
    let again = offer(&intent, &key(30), 55, 1_000, 9_500, at + 1);
    let rj = rejects(&r.on_object(again, at + 1).unwrap());
    assert_eq!(rj[0].1, RejectCode::Other);
    assert!(rj[0].2.contains("duplicate"), "{}", rj[0].2);
    // The very same offer delivered twice is ignored silently.
    assert!(r.on_object(good.clone(), at + 2).unwrap().is_empty());
    // An object of another trace is refused.
    let other = pvl_protocol::fixtures::intent().unwrap();
    let stray = offer(&other, &key(31), 10, 10, 9_999, at);
    assert!(r.on_object(stray, at).is_err());

    let s = r.stats();
    assert_eq!(s.offers_valid, 1);
    assert_eq!(s.rejected(RejectCode::OverBudget), 1);
    assert_eq!(s.rejected(RejectCode::ResourceLimits), 2);
    assert_eq!(s.rejected_invalid(), 7);

    let actions = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    assert_eq!(task_starts(&actions).len(), 1);
    let sel = &events_in(&recorded(&actions), "selection")[0];
    assert_eq!(attr(sel, "rejected:over-budget"), Some("1"));
}

#[test]
fn an_offer_that_expires_during_the_window_is_rejected_at_selection() {
    let (mut r, intent) = started(Strategy::LowestCost);
    let short = offer_with(&intent, &key(40), T0 + 100, |o| {
        o.cost = 10;
        o.expires_at_ms = T0 + 500;
    });
    let long = offer(&intent, &key(41), 20, 1_000, 9_500, T0 + 100);
    r.on_object(short.clone(), T0 + 100).unwrap();
    r.on_object(long, T0 + 100).unwrap();
    let actions = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    let rj = rejects(&actions);
    assert!(
        rj.iter()
            .any(|(id, code, _, _)| *id == short.id() && *code == RejectCode::Expired)
    );
    let Body::TaskStart(start) = task_starts(&actions)[0].body().clone() else {
        unreachable!()
    };
    assert_eq!(start.provider, key(41).public());
}

#[test]
fn the_window_closes_on_k_offers_before_its_timer() {
    let mut s = spec(Strategy::LowestCost);
    s.min_offers = 2;
    let mut r = Requester::new(key(1), s);
    let intent = published(&r.start(T0).unwrap()).pop().unwrap();
    let a = r
        .on_object(offer(&intent, &key(11), 30, 1_000, 9_500, T0 + 50), T0 + 50)
        .unwrap();
    assert!(task_starts(&a).is_empty());
    assert!(matches!(r.state(), RequesterState::Collecting { .. }));
    // An invalid offer does not count towards k.
    r.on_object(
        offer(&intent, &key(12), 500, 1_000, 9_500, T0 + 60),
        T0 + 60,
    )
    .unwrap();
    assert!(matches!(r.state(), RequesterState::Collecting { .. }));
    let b = r
        .on_object(offer(&intent, &key(13), 20, 1_000, 9_500, T0 + 70), T0 + 70)
        .unwrap();
    assert_eq!(
        task_starts(&b).len(),
        1,
        "the second valid offer closes the window"
    );
    assert!(matches!(r.state(), RequesterState::Awarded { .. }));
    // The window timer fires later and is stale.
    assert!(
        r.on_timer(window_timer(&r, 1), T0 + 1_000)
            .unwrap()
            .is_empty()
    );
    // Late offers are refused (`intent-closed` in their acknowledgement), never recorded:
    // they could change nothing, and their providers give them up.
    for (i, provider) in [(80, 14), (81, 15)] {
        let late = offer(&intent, &key(provider), 5, 1_000, 9_500, T0 + i);
        let refused = r.on_object(late, T0 + i).unwrap_err();
        assert_eq!(
            refused.refusal(pvl_protocol::Kind::Offer),
            Refusal::IntentClosed,
            "{refused}"
        );
    }
    assert!(matches!(r.state(), RequesterState::Awarded { .. }));
}

#[test]
fn the_window_timer_closes_the_window_otherwise() {
    let (mut r, intent) = started(Strategy::LowestCost);
    let a = r
        .on_object(offer(&intent, &key(11), 30, 1_000, 9_500, T0 + 50), T0 + 50)
        .unwrap();
    assert!(task_starts(&a).is_empty());
    // A timer of another round is stale.
    assert!(
        r.on_timer(window_timer(&r, 7), T0 + 999)
            .unwrap()
            .is_empty()
    );
    let b = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    assert_eq!(task_starts(&b).len(), 1);
}

#[test]
fn the_deadline_closes_the_window_early() {
    let mut s = spec(Strategy::LowestCost);
    s.offer_window_ms = 10_000;
    s.constraints.deadline_ms = Some(T0 + 3_000);
    let mut r = Requester::new(key(1), s);
    let actions = r.start(T0).unwrap();
    assert_eq!(
        timers(&actions),
        vec![(T0 + 3_000, TimerKind::OfferWindow { round: 1 })]
    );
    let Body::Intent(i) = published(&actions)[0].body().clone() else {
        unreachable!()
    };
    assert_eq!(i.expires_at_ms, T0 + 3_000);
}

#[test]
fn no_offers_is_a_clear_failure() {
    let (mut r, _) = started(Strategy::LowestCost);
    let actions = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    let Some(Outcome::Failed(f)) = finished(&actions) else {
        panic!("{actions:?}")
    };
    assert_eq!(f.reason, FailureReason::NoOffers);
    assert!(f.detail.contains("sha256"), "{}", f.detail);
    assert_eq!(f.trace, r.trace().unwrap());
    let failed = events_in(&recorded(&actions), "intent-failed");
    assert_eq!(attr(&failed[0], "reason"), Some("no-offers"));
    assert!(r.is_finished());
    assert!(r.outcome().is_some());
}

#[test]
fn only_invalid_offers_is_a_clear_failure() {
    let (mut r, intent) = started(Strategy::LowestCost);
    r.on_object(
        offer(&intent, &key(11), 1_000, 1_000, 9_500, T0 + 50),
        T0 + 50,
    )
    .unwrap();
    let actions = r.on_timer(window_timer(&r, 1), T0 + 1_000).unwrap();
    let Some(Outcome::Failed(f)) = finished(&actions) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::NoValidOffers);
    assert!(f.detail.contains("over-budget 1"), "{}", f.detail);
}

#[test]
fn the_offer_cap_bounds_what_is_kept() {
    let mut s = spec(Strategy::LowestCost);
    s.max_offers = 3;
    let mut r = Requester::new(key(1), s);
    let intent = published(&r.start(T0).unwrap()).pop().unwrap();
    for seed in 50..53u8 {
        r.on_object(
            offer(&intent, &key(seed), 30, 1_000, 9_500, T0 + 50),
            T0 + 50,
        )
        .unwrap();
    }
    let over = r
        .on_object(offer(&intent, &key(60), 1, 1_000, 9_500, T0 + 50), T0 + 50)
        .unwrap();
    assert_eq!(rejects(&over)[0].1, RejectCode::Other);
    assert!(
        recorded(&over).is_empty(),
        "an offer over the cap is not stored"
    );
    assert_eq!(r.stats().offers_over_cap, 1);
    assert_eq!(r.stats().offers_received, 3);
}

#[test]
fn cancel_rejects_held_offers() {
    let (mut r, intent) = started(Strategy::LowestCost);
    r.on_object(offer(&intent, &key(11), 30, 1_000, 9_500, T0 + 50), T0 + 50)
        .unwrap();
    let actions = r.cancel("user gave up", T0 + 60).unwrap();
    assert_eq!(rejects(&actions)[0].1, RejectCode::Cancelled);
    let Some(Outcome::Failed(f)) = finished(&actions) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::Cancelled);
}

#[test]
fn the_deadline_forces_the_choice_before_a_held_offer_becomes_too_slow() {
    let mut s = spec(Strategy::LowestCost);
    s.offer_window_ms = 10_000;
    s.constraints.deadline_ms = Some(T0 + 5_000);
    let mut r = Requester::new(key(1), s);
    let intent = published(&r.start(T0).unwrap()).pop().unwrap();
    // Eta 3 s: awarding after T0 + 2 s would miss the deadline.
    let a = r
        .on_object(
            offer(&intent, &key(11), 30, 3_000, 9_500, T0 + 100),
            T0 + 100,
        )
        .unwrap();
    assert_eq!(
        timers(&a),
        vec![(T0 + 2_000, TimerKind::OfferWindow { round: 1 })]
    );
    assert_eq!(
        r.state(),
        RequesterState::Collecting {
            round: 1,
            closes_at_ms: T0 + 2_000
        }
    );
    // A faster offer does not move the close later.
    let b = r
        .on_object(offer(&intent, &key(12), 40, 500, 9_500, T0 + 200), T0 + 200)
        .unwrap();
    assert!(timers(&b).is_empty());
    // The original window timer (T0 + 5 s) is not what closes it: the forced one is.
    let actions = r.on_timer(window_timer(&r, 1), T0 + 2_000).unwrap();
    let Body::TaskStart(start) = task_starts(&actions)[0].body().clone() else {
        unreachable!()
    };
    assert_eq!(
        start.provider,
        key(11).public(),
        "the cheap slow offer still made it"
    );
}
