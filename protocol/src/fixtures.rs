//! Deterministic sample objects of every kind, from fixed keys and fixed times.
//!
//! They make one complete, consistent trace (intent, offers, a consensus round, the award,
//! progress, done, a countersigned receipt, an event and a reject) plus a capability ad. The
//! golden vectors, the benchmarks, the fuzzer's seed corpus and the documentation use them;
//! other crates' tests may too. Nothing here is random, so the bytes never change unless the
//! format does.

use crate::{
    Audience, Body, CapabilityAd, Committee, Constraints, Envelope, Event, Intent, Keypair, Offer,
    PatternHint, Payload, PriceModel, Proposal, ProtocolError, QuorumCert, Receipt, Reject,
    RejectCode, RejectedOffer, Resources, SignedObject, Strategy, TaskDone, TaskProgress,
    TaskStart, TaskStatus, Vote, Weights,
};

/// The fixed time of the samples: 2026-01-01T00:00:00Z in unix ms.
pub const T0: u64 = 1_767_225_600_000;

/// The requester's key (seed 0x01 repeated).
pub fn requester() -> Keypair {
    Keypair::from_seed([1; 32])
}

/// The winning provider's key (seed 0x02 repeated).
pub fn provider() -> Keypair {
    Keypair::from_seed([2; 32])
}

/// A losing provider's key (seed 0x03 repeated).
pub fn other_provider() -> Keypair {
    Keypair::from_seed([3; 32])
}

/// The three committee members' keys (seeds 0x04, 0x05, 0x06 repeated).
pub fn committee() -> [Keypair; 3] {
    [4u8, 5, 6].map(|b| Keypair::from_seed([b; 32]))
}

fn sign(
    key: &Keypair,
    trace: Option<&SignedObject>,
    parents: &[&SignedObject],
    at: u64,
    body: Body,
) -> Result<SignedObject, ProtocolError> {
    Envelope {
        trace: trace.map(SignedObject::trace_id),
        parents: parents.iter().map(|p| p.id()).collect(),
        signer: key.public(),
        timestamp_ms: at,
        body,
    }
    .sign(key)
}

/// A typical intent (the root of the sample trace).
pub fn intent() -> Result<SignedObject, ProtocolError> {
    let members = committee().map(|k| k.public()).to_vec();
    sign(
        &requester(),
        None,
        &[],
        T0,
        Body::Intent(Intent {
            capability: "sha256".into(),
            input: Payload::Inline(b"hello, pervasive world".to_vec()),
            constraints: Constraints {
                max_cost: Some(100),
                deadline_ms: Some(T0 + 60_000),
                min_reliability_bps: Some(9_000),
                resources: Resources {
                    cpu_millicores: Some(2_000),
                    memory_bytes: Some(512 << 20),
                    disk_bytes: None,
                },
            },
            strategy: Strategy::Weighted(Weights {
                cost: 500,
                latency: 300,
                reliability: 200,
            }),
            pattern: PatternHint::Consensus,
            committee: Some(Committee {
                members,
                threshold: 2,
            }),
            nonce: 42,
            expires_at_ms: T0 + 30_000,
            audience: None,
        }),
    )
}

/// An offer answering `intent`, signed by `key`.
pub fn offer_for(
    intent: &SignedObject,
    key: &Keypair,
    cost: u64,
    at: u64,
) -> Result<SignedObject, ProtocolError> {
    sign(
        key,
        Some(intent),
        &[intent],
        at,
        Body::Offer(Offer {
            intent: intent.id(),
            cost,
            eta_ms: 1_500,
            reliability_bps: 9_900,
            resources: Resources {
                cpu_millicores: Some(1_000),
                memory_bytes: Some(64 << 20),
                disk_bytes: Some(0),
            },
            expires_at_ms: at + 20_000,
        }),
    )
}

/// The whole sample trace, one object of every kind, in causal order.
pub fn sample_objects() -> Result<Vec<SignedObject>, ProtocolError> {
    let requester = requester();
    let provider = provider();
    let intent = intent()?;
    let offer = offer_for(&intent, &provider, 40, T0 + 100)?;
    let losing = offer_for(&intent, &other_provider(), 70, T0 + 120)?;
    let committee = committee();
    let proposal = sign(
        &requester,
        Some(&intent),
        &[&offer],
        T0 + 500,
        Body::Proposal(Proposal {
            subject: offer.id(),
            round: 1,
            committee: Committee {
                members: committee.iter().map(Keypair::public).collect(),
                threshold: 2,
            },
            action: "award the sha256 task to the offer".into(),
            deadline_ms: T0 + 5_500,
        }),
    )?;
    let votes = committee[..2]
        .iter()
        .enumerate()
        .map(|(i, member)| {
            sign(
                member,
                Some(&intent),
                &[&proposal],
                T0 + 600 + i as u64,
                Body::Vote(Vote {
                    proposal: proposal.id(),
                    round: 1,
                    approve: true,
                    reason: "cost within budget".into(),
                }),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cert = sign(
        &requester,
        Some(&intent),
        &votes.iter().collect::<Vec<_>>(),
        T0 + 700,
        Body::QuorumCert(QuorumCert {
            proposal: Box::new(proposal.clone()),
            votes: votes.clone(),
        }),
    )?;
    let event = sign(
        &requester,
        Some(&intent),
        &[&offer, &losing],
        T0 + 750,
        Body::Event(Event {
            event_type: "selection".into(),
            about: vec![offer.id(), losing.id()],
            message: "offer 1 wins: best weighted score".into(),
            attrs: vec![
                ("winner".into(), offer.id().short()),
                ("score".into(), "0.912".into()),
            ],
        }),
    )?;
    let reject = sign(
        &requester,
        Some(&intent),
        &[&losing],
        T0 + 760,
        Body::Reject(Reject {
            offer: losing.id(),
            code: RejectCode::NotSelected,
            detail: "another offer scored higher (0.912 vs 0.640)".into(),
            more: Vec::new(),
        }),
    )?;
    let start = sign(
        &requester,
        Some(&intent),
        &[&offer, &cert],
        T0 + 800,
        Body::TaskStart(TaskStart {
            offer: offer.id(),
            provider: provider.public(),
            label: "main".into(),
            input: Payload::Inline(b"hello, pervasive world".to_vec()),
            deadline_ms: Some(T0 + 60_000),
            quorum: Some(Box::new(cert.clone())),
        }),
    )?;
    let progress = sign(
        &provider,
        Some(&intent),
        &[&start],
        T0 + 900,
        Body::TaskProgress(TaskProgress {
            task: start.id(),
            fraction_bps: Some(5_000),
            message: "hashing".into(),
        }),
    )?;
    let output = crate::sha256(b"hello, pervasive world");
    let done = sign(
        &provider,
        Some(&intent),
        &[&progress],
        T0 + 1_000,
        Body::TaskDone(TaskDone {
            task: start.id(),
            status: TaskStatus::Ok,
            output: Some(Payload::Inline(hex::encode(output).into_bytes())),
            started_at_ms: T0 + 850,
            finished_at_ms: T0 + 990,
        }),
    )?;
    let receipt = sign(
        &provider,
        Some(&intent),
        &[&done],
        T0 + 1_010,
        Body::Receipt(Receipt {
            task: start.id(),
            intent: intent.id(),
            requester: requester.public(),
            status: TaskStatus::Ok,
            output_sha256: Some(crate::sha256(hex::encode(output).as_bytes())),
            output_size: 64,
            cost: 40,
            started_at_ms: T0 + 850,
            finished_at_ms: T0 + 990,
        }),
    )?
    .countersign(&requester)?;
    let ad = sign(
        &provider,
        None,
        &[],
        T0 - 1_000,
        Body::CapabilityAd(CapabilityAd {
            capability: "sha256".into(),
            version: "1.0".into(),
            input_desc: "any bytes".into(),
            output_desc: "lowercase hex SHA-256 of the input".into(),
            price: PriceModel::PerKib {
                base: 10,
                per_kib: 1,
            },
            max_concurrent: 4,
            expires_at_ms: T0 + 3_600_000,
        }),
    )?;
    let mut all = vec![intent, offer, losing, proposal];
    all.extend(votes);
    all.extend([cert, event, reject, start, progress, done, receipt, ad]);
    Ok(all)
}

/// Samples of the optional fields added after the first release (`intent.audience`,
/// `reject.more`), kept apart from [`sample_objects`] so that the first set stays one
/// consistent trace: an intent with an audience, and one reject refusing two offers of the
/// sample intent (the second offer, by a committee key, is not itself a sample).
pub fn later_samples() -> Result<Vec<SignedObject>, ProtocolError> {
    let requester = requester();
    let intent = intent()?;
    let losing = offer_for(&intent, &other_provider(), 70, T0 + 120)?;
    let committee = committee();
    let sampled = sampled_intent()?;
    let third = offer_for(&intent, &committee[0], 90, T0 + 130)?;
    let reject_two = sign(
        &requester,
        Some(&intent),
        &[&losing, &third],
        T0 + 770,
        Body::Reject(Reject {
            offer: losing.id(),
            code: RejectCode::NotSelected,
            detail: "rank 2 of 2: score 0.640 vs 0.912".into(),
            more: vec![RejectedOffer {
                offer: third.id(),
                code: RejectCode::OverBudget,
                detail: "cost 90 is above the budget 80".into(),
            }],
        }),
    )?;
    Ok(vec![sampled, reject_two])
}

/// A root intent whose audience asks about 2 of 5 providers (see `Audience`).
pub fn sampled_intent() -> Result<SignedObject, ProtocolError> {
    sign(
        &requester(),
        None,
        &[],
        T0 + 2_000,
        Body::Intent(Intent {
            capability: "sha256".into(),
            input: Payload::Inline(b"sampled".to_vec()),
            constraints: Constraints::default(),
            strategy: Strategy::LowestCost,
            pattern: PatternHint::ContractNet,
            committee: None,
            nonce: 7,
            expires_at_ms: T0 + 32_000,
            audience: Some(Audience { wanted: 2, of: 5 }),
        }),
    )
}
