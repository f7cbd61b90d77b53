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

/// One event of every type in [`crate::EventType::ALL`], in the sample trace of
/// [`sample_objects`], with every attribute its type defines (the golden event vectors).
///
/// `award-refused` is signed by the provider, every other event by the requester.
pub fn sample_events() -> Result<Vec<SignedObject>, ProtocolError> {
    use crate::vocab::{EventType as T, RunSpec, attr};
    let objects = sample_objects()?;
    let find = |kind: crate::Kind| {
        objects
            .iter()
            .find(|o| o.kind() == kind)
            .ok_or_else(|| ProtocolError::field("fixtures", "sample trace incomplete"))
    };
    let intent = find(crate::Kind::Intent)?;
    let offer = find(crate::Kind::Offer)?;
    let proposal = find(crate::Kind::Proposal)?;
    let start = find(crate::Kind::TaskStart)?;
    let done = find(crate::Kind::TaskDone)?;
    let receipt = find(crate::Kind::Receipt)?;
    let votes: Vec<&SignedObject> = objects
        .iter()
        .filter(|o| o.kind() == crate::Kind::Vote)
        .collect();
    let (vote_a, vote_b) = match votes.as_slice() {
        [a, b, ..] => (*a, *b),
        _ => return Err(ProtocolError::field("fixtures", "two votes needed")),
    };
    let requester = requester();
    let provider = provider();
    let prov = provider.public().to_string();
    let task = start.id().to_string();
    let short_sha = "b6e1a4e3c2a8d2f0".to_string();
    let kv = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    };
    let run_spec = RunSpec {
        window_ms: 2_000,
        min_offers: 1,
        grace_ms: 2_000,
        silence_ms: Some(10_000),
        receipt_wait_ms: 5_000,
        max_offers: 1_024,
        max_republish: 1,
        vote_round_ms: 3_000,
        max_vote_rounds: 2,
        label: "main".into(),
        avoid: vec![other_provider().public()],
        asked: vec![provider.public(), other_provider().public()],
    };
    // (type, signed by the provider?, about, parents, message, attrs)
    type Row<'a> = (
        T,
        bool,
        Vec<crate::ObjectId>,
        Vec<&'a SignedObject>,
        &'static str,
        Vec<(String, String)>,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            T::Selection,
            false,
            vec![offer.id()],
            vec![intent],
            "offer 1 of 1 wins: lowest cost 40",
            kv(&[
                (attr::STRATEGY, "lowest-cost".into()),
                (attr::VALID_OFFERS, "1".into()),
                (attr::PAGE, "1/1".into()),
                (attr::WINNER, offer.id().to_string()),
                (attr::WINNER_PROVIDER, prov.clone()),
                (attr::WINNER_SCORE, "1.000".into()),
                (attr::SCORE, "1.000".into()),
                (attr::AVOIDED_OFFERS, offer.id().short()),
                ("rejected:over-budget", "1".into()),
                (
                    &format!("{}{}", attr::OFFER_PREFIX, offer.id().short()),
                    format!(
                        "rank=1 score=1.000 cost=40 eta_ms=500 reliability_bps=9900 \
                         claimed_bps=9900 provider={}",
                        provider.public().short()
                    ),
                ),
            ]),
        ),
        (
            T::RankedLast,
            false,
            vec![offer.id()],
            vec![intent],
            "1 offer(s) from providers already holding another part ranked last",
            kv(&[(attr::COUNT, "1".into())]),
        ),
        (
            T::PatternChosen,
            false,
            vec![intent.id()],
            vec![intent],
            "pattern contract-net chosen: one provider known",
            kv(&[
                (attr::PATTERN, "contract-net".into()),
                (attr::REASONS, "one provider known".into()),
                (attr::AVOID, other_provider().public().to_string()),
            ]),
        ),
        (
            T::AwardRefused,
            true,
            vec![start.id(), offer.id()],
            vec![start],
            "award refused: at capacity",
            kv(&[(attr::REASON, "at capacity".into())]),
        ),
        (
            T::Reassigned,
            false,
            vec![start.id()],
            vec![start, done],
            "task failed; re-publishing the intent (round 2)",
            kv(&[
                (attr::FROM_TASK, task.clone()),
                (attr::FROM_PROVIDER, prov.clone()),
                (attr::REASON, "late".into()),
                (attr::TO_OFFER, offer.id().to_string()),
                (attr::TO_PROVIDER, prov.clone()),
                (attr::TO_SCORE, "0.500".into()),
                (attr::TO, attr::REPUBLISH.into()),
                (attr::ROUND, "2".into()),
            ]),
        ),
        (
            T::ReceiptMissing,
            false,
            vec![start.id(), done.id()],
            vec![done],
            "the task was reported done but no valid receipt arrived within 5000 ms",
            kv(&[(attr::PROVIDER, prov.clone())]),
        ),
        (
            T::IntentFailed,
            false,
            vec![intent.id()],
            vec![intent],
            "no-offers: no offer arrived",
            kv(&[
                (attr::REASON, "no-offers".into()),
                (attr::OFFERS_RECEIVED, "0".into()),
                (attr::AWARDS, "0".into()),
            ]),
        ),
        (
            T::ConsensusRejected,
            false,
            vec![proposal.id(), vote_a.id(), vote_b.id()],
            vec![proposal],
            "the committee rejected the award",
            kv(&[
                (attr::ROUND, "1".into()),
                (attr::OFFER, offer.id().to_string()),
                (attr::THRESHOLD, "2".into()),
                (
                    &format!("{}{}", attr::MEMBER_PREFIX, vote_a.signer().short()),
                    format!("reject: over budget (member {})", vote_a.signer()),
                ),
            ]),
        ),
        (
            T::Equivocation,
            false,
            vec![vote_a.id(), vote_b.id()],
            vec![vote_a, vote_b],
            "member signed two different votes in round 1",
            kv(&[
                (attr::MEMBER, vote_a.signer().to_string()),
                (attr::ROUND, "1".into()),
                (attr::FIRST_VOTE, vote_a.id().to_string()),
                (attr::SECOND_VOTE, vote_b.id().to_string()),
            ]),
        ),
        (
            T::RoundTimeout,
            false,
            vec![proposal.id()],
            vec![proposal],
            "voting round 1 closed with 1 of 2 approvals needed",
            kv(&[
                (attr::ROUND, "1".into()),
                (attr::APPROVALS, "1".into()),
                (attr::THRESHOLD, "2".into()),
                (attr::SILENT, vote_b.signer().short()),
            ]),
        ),
        (
            T::StageStarted,
            false,
            vec![start.id()],
            vec![start],
            "stage `hash` (sha256) awarded",
            kv(&[
                (attr::STAGE, "hash".into()),
                (attr::CAPABILITY, "sha256".into()),
                (attr::PROVIDER, prov.clone()),
                (attr::TASK, task.clone()),
                (attr::AWARD, "1".into()),
            ]),
        ),
        (
            T::StageDone,
            false,
            vec![start.id()],
            vec![receipt],
            "stage `hash` (sha256) done for 40",
            kv(&[
                (attr::STAGE, "hash".into()),
                (attr::CAPABILITY, "sha256".into()),
                (attr::PROVIDER, prov.clone()),
                (attr::TASK, task.clone()),
                (attr::COST, "40".into()),
                (attr::OUTPUT_SHA256, short_sha.clone()),
                (attr::RECEIPT, receipt.id().to_string()),
            ]),
        ),
        (
            T::StageFailed,
            false,
            vec![start.id()],
            vec![intent, start],
            "stage `hash` (sha256) failed",
            kv(&[
                (attr::STAGE, "hash".into()),
                (attr::CAPABILITY, "sha256".into()),
                (attr::PROVIDER, prov.clone()),
                (attr::TASK, task.clone()),
                (attr::REASON, "all-providers-failed".into()),
            ]),
        ),
        (
            T::WorkflowDone,
            false,
            vec![intent.id(), start.id()],
            vec![receipt],
            "workflow `digest`: 1 stage(s) done, total cost 40",
            kv(&[
                (attr::STAGES, "1".into()),
                (attr::COST, "40".into()),
                (attr::FINAL_STAGE, "hash".into()),
                (attr::OUTPUT_SHA256, short_sha.clone()),
            ]),
        ),
        (
            T::WorkflowFailed,
            false,
            vec![intent.id()],
            vec![intent],
            "stage `hash` failed",
            kv(&[
                (attr::STAGE, "hash".into()),
                (attr::REASON, "all-providers-failed".into()),
            ]),
        ),
        (
            T::ShardStarted,
            false,
            vec![start.id()],
            vec![start],
            "shard-0 awarded (award 1)",
            kv(&[
                (attr::SHARD, "shard-0".into()),
                (attr::PROVIDER, prov.clone()),
                (attr::TASK, task.clone()),
                (attr::AWARD, "1".into()),
            ]),
        ),
        (
            T::ShardDone,
            false,
            vec![start.id()],
            vec![receipt],
            "shard-0 done for 40",
            kv(&[
                (attr::SHARD, "shard-0".into()),
                (attr::PROVIDER, prov.clone()),
                (attr::TASK, task.clone()),
                (attr::COST, "40".into()),
                (attr::OUTPUT_SHA256, short_sha.clone()),
            ]),
        ),
        (
            T::ShardFailed,
            false,
            vec![start.id()],
            vec![intent, start],
            "shard-0 failed (attempt 1): restarting it with a fresh intent",
            kv(&[
                (attr::SHARD, "shard-0".into()),
                (attr::REASON, "deadline-passed".into()),
                (attr::ATTEMPT, "1".into()),
                (attr::RESTART, attr::TRUE.into()),
            ]),
        ),
        (
            T::ReduceStarted,
            false,
            vec![start.id()],
            vec![start],
            "reduce awarded (award 1)",
            kv(&[
                (attr::SHARD, "reduce".into()),
                (attr::PROVIDER, prov.clone()),
                (attr::TASK, task.clone()),
                (attr::AWARD, "1".into()),
            ]),
        ),
        (
            T::ReduceFailed,
            false,
            vec![start.id()],
            vec![intent, start],
            "reduce failed (attempt 2): no restart left",
            kv(&[
                (attr::SHARD, "reduce".into()),
                (attr::REASON, "all-providers-failed".into()),
                (attr::ATTEMPT, "2".into()),
                (attr::RESTART, "false".into()),
            ]),
        ),
        (
            T::ParallelDone,
            false,
            vec![intent.id()],
            vec![receipt],
            "2 shard(s) reduced by concat, total cost 80",
            kv(&[
                (attr::HOW, "concat".into()),
                (attr::SHARDS, "2".into()),
                (attr::COST, "80".into()),
                (attr::OUTPUT_SHA256, short_sha),
            ]),
        ),
        (
            T::ParallelFailed,
            false,
            vec![intent.id()],
            vec![intent],
            "shard-0 failed 2 time(s)",
            kv(&[(attr::REASON, "deadline-passed".into())]),
        ),
        (
            T::AudienceWidened,
            false,
            vec![intent.id()],
            vec![intent],
            "the 3 of about 9 providers asked brought no acceptable offer: re-publishing to every provider (round 2)",
            kv(&[
                (attr::WANTED, "3".into()),
                (attr::OF, "9".into()),
                (attr::ROUND, "2".into()),
            ]),
        ),
        (
            T::RunSpec,
            false,
            vec![intent.id()],
            vec![intent],
            "run main: window 2000 ms, grace 2000 ms, receipt wait 5000 ms",
            run_spec.to_attrs(),
        ),
    ];
    rows.into_iter()
        .enumerate()
        .map(
            |(i, (event_type, by_provider, about, parents, message, attrs))| {
                let key = if by_provider { &provider } else { &requester };
                sign(
                    key,
                    Some(intent),
                    &parents,
                    T0 + 2_000 + i as u64,
                    Body::Event(Event {
                        event_type: event_type.to_string(),
                        about,
                        message: message.into(),
                        attrs,
                    }),
                )
            },
        )
        .collect()
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
