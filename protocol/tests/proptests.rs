//! Property tests: every kind round-trips through sign -> bytes -> decode, any byte string
//! decodes to an object or an error (never a panic), and any bit flip breaks an object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use pvl_protocol::fixtures::{self, T0};
use pvl_protocol::{
    Body, CapabilityAd, Committee, Constraints, Envelope, Event, Intent, Keypair, MAX_LIFETIME_MS,
    ObjectId, Offer, PatternHint, Payload, PriceModel, Proposal, PublicKey, Receipt, Reject,
    RejectCode, Resources, SignedObject, TaskDone, TaskProgress, TaskStart, TaskStatus, Vote,
    Weights,
};

fn id() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 32]>().prop_map(ObjectId)
}

fn key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(|seed| Keypair::from_seed(seed).public())
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:/-]{1,64}"
}

fn bps() -> impl Strategy<Value = u16> {
    0u16..=10_000
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(any::<u8>(), 0..200).prop_map(Payload::Inline),
        (any::<[u8; 32]>(), any::<u64>()).prop_map(|(sha256, size)| Payload::Hash { sha256, size }),
    ]
}

fn resources() -> impl Strategy<Value = Resources> {
    (
        option::of(any::<u32>()),
        option::of(any::<u64>()),
        option::of(any::<u64>()),
    )
        .prop_map(|(cpu_millicores, memory_bytes, disk_bytes)| Resources {
            cpu_millicores,
            memory_bytes,
            disk_bytes,
        })
}

fn strategy() -> impl Strategy<Value = pvl_protocol::Strategy> {
    prop_oneof![
        Just(pvl_protocol::Strategy::LowestCost),
        Just(pvl_protocol::Strategy::HighestQuality),
        Just(pvl_protocol::Strategy::Fastest),
        (1u32..=1_000_000, 0u32..=1_000_000, 0u32..=1_000_000).prop_map(
            |(cost, latency, reliability)| {
                pvl_protocol::Strategy::Weighted(Weights {
                    cost,
                    latency,
                    reliability,
                })
            }
        ),
    ]
}

fn committee() -> impl Strategy<Value = Committee> {
    vec(any::<[u8; 32]>(), 1..6).prop_flat_map(|seeds| {
        let mut members: Vec<PublicKey> = seeds
            .into_iter()
            .map(|s| Keypair::from_seed(s).public())
            .collect();
        members.sort();
        members.dedup();
        let n = members.len() as u32;
        (Just(members), 1..=n).prop_map(|(members, threshold)| Committee { members, threshold })
    })
}

fn status() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![Just(TaskStatus::Ok), text().prop_map(TaskStatus::Failed)]
}

/// A body of any kind except the two that embed other signed objects (covered by the
/// fixtures), with an expiry relative to `T0`.
fn body() -> impl Strategy<Value = Body> {
    let lifetime = 0u64..=MAX_LIFETIME_MS;
    prop_oneof![
        (
            name(),
            payload(),
            (
                option::of(any::<u64>()),
                option::of(any::<u64>()),
                option::of(bps()),
                resources()
            ),
            strategy(),
            prop_oneof![
                Just(PatternHint::Adaptive),
                Just(PatternHint::ContractNet),
                Just(PatternHint::Auction),
                Just(PatternHint::Workflow),
                Just(PatternHint::Parallel),
                Just(PatternHint::Consensus)
            ],
            option::of(committee()),
            any::<u64>(),
            lifetime.clone(),
        )
            .prop_map(
                |(
                    capability,
                    input,
                    (max_cost, deadline_ms, min_rel, res),
                    strategy,
                    pattern,
                    committee,
                    nonce,
                    life,
                )| {
                    Body::Intent(Intent {
                        capability,
                        input,
                        constraints: Constraints {
                            max_cost,
                            deadline_ms,
                            min_reliability_bps: min_rel,
                            resources: res,
                        },
                        strategy,
                        pattern,
                        committee,
                        nonce,
                        expires_at_ms: T0 + life,
                        audience: None,
                    })
                }
            ),
        (
            id(),
            any::<u64>(),
            any::<u64>(),
            bps(),
            resources(),
            lifetime.clone()
        )
            .prop_map(|(intent, cost, eta_ms, reliability_bps, resources, life)| {
                Body::Offer(Offer {
                    intent,
                    cost,
                    eta_ms,
                    reliability_bps,
                    resources,
                    expires_at_ms: T0 + life,
                })
            }),
        (id(), key(), text(), payload(), option::of(any::<u64>())).prop_map(
            |(offer, provider, label, input, deadline_ms)| Body::TaskStart(TaskStart {
                offer,
                provider,
                label,
                input,
                deadline_ms,
                quorum: None,
            })
        ),
        (id(), option::of(bps()), text()).prop_map(|(task, fraction_bps, message)| {
            Body::TaskProgress(TaskProgress {
                task,
                fraction_bps,
                message,
            })
        }),
        (
            id(),
            status(),
            option::of(payload()),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(task, status, output, start, len)| Body::TaskDone(TaskDone {
                    task,
                    status,
                    output,
                    started_at_ms: T0 + u64::from(start),
                    finished_at_ms: T0 + u64::from(start) + u64::from(len),
                })
            ),
        (
            id(),
            id(),
            key(),
            status(),
            option::of(any::<[u8; 32]>()),
            any::<u64>(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(
                |(task, intent, requester, status, output_sha256, output_size, cost, len)| {
                    Body::Receipt(Receipt {
                        task,
                        intent,
                        requester,
                        status,
                        output_sha256,
                        output_size,
                        cost,
                        started_at_ms: T0,
                        finished_at_ms: T0 + u64::from(len),
                    })
                }
            ),
        (name(), vec(id(), 0..5), text(), vec((name(), text()), 0..5)).prop_map(
            |(event_type, about, message, attrs)| Body::Event(Event {
                event_type,
                about,
                message,
                attrs
            })
        ),
        (
            name(),
            text(),
            text(),
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<u32>(),
            lifetime.clone()
        )
            .prop_map(
                |(
                    capability,
                    version,
                    input_desc,
                    output_desc,
                    a,
                    b,
                    per_kib,
                    max_concurrent,
                    life,
                )| {
                    Body::CapabilityAd(CapabilityAd {
                        capability,
                        version,
                        input_desc,
                        output_desc,
                        price: if per_kib {
                            PriceModel::PerKib {
                                base: a,
                                per_kib: b,
                            }
                        } else {
                            PriceModel::Fixed(a)
                        },
                        max_concurrent,
                        expires_at_ms: T0 + life,
                    })
                }
            ),
        (id(), any::<u32>(), committee(), text(), lifetime).prop_map(
            |(subject, round, committee, action, life)| Body::Proposal(Proposal {
                subject,
                round,
                committee,
                action,
                deadline_ms: T0 + life,
            })
        ),
        (id(), any::<u32>(), any::<bool>(), text()).prop_map(
            |(proposal, round, approve, reason)| {
                Body::Vote(Vote {
                    proposal,
                    round,
                    approve,
                    reason,
                })
            }
        ),
        (id(), 0usize..8, text()).prop_map(|(offer, code, detail)| {
            let codes = [
                RejectCode::NotSelected,
                RejectCode::OverBudget,
                RejectCode::TooSlow,
                RejectCode::LowReliability,
                RejectCode::Expired,
                RejectCode::ResourceLimits,
                RejectCode::Cancelled,
                RejectCode::Other,
            ];
            Body::Reject(Reject {
                offer,
                code: codes[code],
                detail,
                more: Vec::new(),
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_kind_round_trips(seed in any::<[u8; 32]>(), body in body(), parents in vec(id(), 1..4), trace in id()) {
        let key = Keypair::from_seed(seed);
        let mut parents = parents;
        parents.sort();
        parents.dedup();
        let root = body.kind().may_be_root() && seed[0] % 2 == 0;
        let envelope = Envelope {
            trace: if root { None } else { Some(trace) },
            parents: if root { vec![] } else { parents },
            signer: key.public(),
            timestamp_ms: T0,
            body,
        };
        let signed = envelope.clone().sign(&key).unwrap();
        let decoded = SignedObject::decode(signed.bytes()).unwrap();
        prop_assert_eq!(decoded.envelope(), &envelope);
        prop_assert_eq!(decoded.bytes(), signed.bytes());
        prop_assert_eq!(decoded.id(), ObjectId::of_content(decoded.content()));
    }

    #[test]
    fn any_bytes_decode_to_an_object_or_an_error(bytes in vec(any::<u8>(), 0..512)) {
        // Must return, never panic; random bytes are (overwhelmingly) not a signed object.
        let _ = SignedObject::decode(&bytes);
    }

    #[test]
    fn mutated_objects_never_panic_and_never_verify(index in 0usize..16, position in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()) {
        let samples = fixtures::sample_objects().unwrap();
        let object = &samples[index % samples.len()];
        let mut bytes = object.bytes().to_vec();
        let at = position.index(bytes.len());
        bytes[at] ^= 1 << bit;
        prop_assert!(SignedObject::decode(&bytes).is_err());
        // Truncation at any point is an error too.
        let truncated = &object.bytes()[..cut.index(object.bytes().len())];
        prop_assert!(SignedObject::decode(truncated).is_err());
    }
}
