//! Property tests of the auction: the winner is always acceptable, and the ranking does not
//! depend on the order in which offers arrived.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use pvl_patterns::NoHistory;
use pvl_patterns::select::{Candidate, check_offer, rank};
use pvl_protocol::Strategy as Auction;
use pvl_protocol::{Constraints, ObjectId, Offer, PublicKey, Resources, Weights};

const NOW: u64 = 1_000_000;

fn strategy() -> impl Strategy<Value = Auction> {
    prop_oneof![
        Just(Auction::LowestCost),
        Just(Auction::HighestQuality),
        Just(Auction::Fastest),
        (0u32..2_000, 0u32..2_000, 1u32..2_000).prop_map(|(cost, latency, reliability)| {
            Auction::Weighted(Weights {
                cost,
                latency,
                reliability,
            })
        }),
    ]
}

fn constraints() -> impl Strategy<Value = Constraints> {
    (
        proptest::option::of(0u64..200),
        proptest::option::of(NOW..NOW + 20_000),
        proptest::option::of(0u16..=10_000),
        proptest::option::of(0u32..4_000),
    )
        .prop_map(
            |(max_cost, deadline_ms, min_reliability_bps, cpu)| Constraints {
                max_cost,
                deadline_ms,
                min_reliability_bps,
                resources: Resources {
                    cpu_millicores: cpu,
                    memory_bytes: None,
                    disk_bytes: None,
                },
            },
        )
}

/// Offers with small value ranges so that ties are frequent.
fn offers() -> impl Strategy<Value = Vec<(ObjectId, PublicKey, Offer)>> {
    proptest::collection::vec(
        (
            0u64..120,
            0u64..15_000,
            8_000u16..=10_000,
            proptest::option::of(0u32..3_000),
            NOW - 10..NOW + 50_000,
        ),
        0..24,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (cost, eta_ms, reliability_bps, cpu, expires_at_ms))| {
                let n = u8::try_from(i).unwrap();
                (
                    ObjectId([n; 32]),
                    PublicKey([n.wrapping_mul(7); 32]),
                    Offer {
                        intent: ObjectId([0xee; 32]),
                        cost: cost / 10 * 10,
                        eta_ms: eta_ms / 1_000 * 1_000,
                        reliability_bps: reliability_bps / 500 * 500,
                        resources: Resources {
                            cpu_millicores: cpu,
                            memory_bytes: None,
                            disk_bytes: None,
                        },
                        expires_at_ms,
                    },
                )
            })
            .collect()
    })
}

fn acceptable(offers: &[(ObjectId, PublicKey, Offer)], c: &Constraints) -> Vec<Candidate> {
    offers
        .iter()
        .filter(|(_, _, o)| check_offer(o, o.reliability_bps, c, NOW).is_ok())
        .map(|(id, who, o)| Candidate::new(*id, *who, o, &NoHistory))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_winner_is_acceptable_and_the_ranking_is_order_free(
        strategy in strategy(),
        c in constraints(),
        (offers, shuffled) in offers().prop_flat_map(|o| (Just(o.clone()), Just(o).prop_shuffle())),
    ) {
        let valid = acceptable(&offers, &c);
        let ranking = rank(strategy, &valid);
        prop_assert_eq!(ranking.ranked.len(), valid.len());
        match ranking.winner() {
            None => prop_assert!(valid.is_empty()),
            Some(w) => {
                let (_, _, offer) = offers.iter().find(|(id, _, _)| *id == w.candidate.offer).unwrap();
                prop_assert!(check_offer(offer, offer.reliability_bps, &c, NOW).is_ok());
                if let Some(max) = c.max_cost { prop_assert!(offer.cost <= max); }
                if let Some(d) = c.deadline_ms { prop_assert!(NOW + offer.eta_ms <= d); }
                if let Some(min) = c.min_reliability_bps { prop_assert!(offer.reliability_bps >= min); }
                prop_assert!(offer.resources.fits_within(&c.resources));
                prop_assert!(offer.expires_at_ms >= NOW);
                // The winner is optimal for the single-criterion strategies.
                match strategy {
                    Auction::LowestCost => prop_assert!(valid.iter().all(|v| v.cost >= w.candidate.cost)),
                    Auction::Fastest => prop_assert!(valid.iter().all(|v| v.eta_ms >= w.candidate.eta_ms)),
                    Auction::HighestQuality => prop_assert!(valid.iter().all(|v| v.reliability_bps <= w.candidate.reliability_bps)),
                    Auction::Weighted(_) => prop_assert!(ranking.ranked.iter().all(|s| s.score <= w.score)),
                }
            }
        }
        let again = rank(strategy, &acceptable(&shuffled, &c));
        prop_assert_eq!(ranking, again);
    }
}

mod through_the_requester {
    use super::*;
    use pvl_patterns::{Action, RequestSpec, Requester, TimerKind, TimerToken};
    use pvl_protocol::{Body, Envelope, Keypair, Payload, SignedObject};

    const T0: u64 = pvl_protocol::fixtures::T0;

    fn requester(strategy: Auction) -> (Requester, SignedObject) {
        let mut spec = RequestSpec::new("sha256", Payload::Inline(b"x".to_vec()));
        spec.strategy = strategy;
        spec.constraints = Constraints {
            max_cost: Some(80),
            deadline_ms: Some(T0 + 30_000),
            min_reliability_bps: Some(9_000),
            resources: Resources {
                cpu_millicores: Some(2_000),
                memory_bytes: None,
                disk_bytes: None,
            },
        };
        let mut r = Requester::new(Keypair::from_seed([1; 32]), spec);
        let intent = r
            .start(T0)
            .unwrap()
            .into_iter()
            .find_map(|a| match a {
                Action::Publish(o) => Some(o),
                _ => None,
            })
            .unwrap();
        (r, intent)
    }

    /// Feeds `offers` (signed for `intent`'s trace) and closes the window; returns the
    /// awarded offer id, if any.
    fn award(mut r: Requester, offers: &[SignedObject]) -> Option<ObjectId> {
        for o in offers {
            r.on_object(o.clone(), T0 + 100).unwrap();
        }
        let token = TimerToken {
            trace: r.trace().unwrap(),
            scope: r.scope().unwrap(),
            kind: TimerKind::OfferWindow { round: 1 },
        };
        r.on_timer(token, T0 + 2_000)
            .unwrap()
            .into_iter()
            .find_map(|a| match a {
                Action::Send { object, .. } => match object.body() {
                    Body::TaskStart(s) => Some(s.offer),
                    _ => None,
                },
                _ => None,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn the_award_is_acceptable_and_order_free(
            strategy in strategy(),
            raw in proptest::collection::vec((0u64..120, 0u64..40_000, 8_500u16..=10_000, 500u32..3_000), 0..8),
            seed in any::<u64>(),
        ) {
            let (r1, intent) = requester(strategy);
            let (r2, intent2) = requester(strategy);
            prop_assert_eq!(intent.id(), intent2.id());
            let offers: Vec<SignedObject> = raw
                .iter()
                .enumerate()
                .map(|(i, (cost, eta, rel, cpu))| {
                    let key = Keypair::from_seed([u8::try_from(i).unwrap() + 10; 32]);
                    Envelope {
                        trace: Some(intent.trace_id()),
                        parents: vec![intent.id()],
                        signer: key.public(),
                        timestamp_ms: T0 + 50,
                        body: Body::Offer(Offer {
                            intent: intent.id(),
                            cost: *cost,
                            eta_ms: *eta,
                            reliability_bps: *rel,
                            resources: Resources { cpu_millicores: Some(*cpu), memory_bytes: None, disk_bytes: None },
                            expires_at_ms: T0 + 20_000,
                        }),
                    }
                    .sign(&key)
                    .unwrap()
                })
                .collect();
            let mut rotated = offers.clone();
            if !rotated.is_empty() {
                let k = usize::try_from(seed % rotated.len() as u64).unwrap();
                rotated.rotate_left(k);
                rotated.reverse();
            }
            let a = award(r1, &offers);
            let b = award(r2, &rotated);
            prop_assert_eq!(a, b);
            let acceptable = |o: &SignedObject| match o.body() {
                Body::Offer(b) => b.cost <= 80 && T0 + 2_000 + b.eta_ms <= T0 + 30_000
                    && b.reliability_bps >= 9_000 && b.resources.cpu_millicores <= Some(2_000),
                _ => false,
            };
            match a {
                Some(id) => prop_assert!(acceptable(offers.iter().find(|o| o.id() == id).unwrap())),
                None => prop_assert!(!offers.iter().any(acceptable)),
            }
        }
    }
}
