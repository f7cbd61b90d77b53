//! Hand-built traces of every coordination pattern, for tests, benchmarks and demos.
//!
//! Each function returns one complete, consistent trace (root intent first, causal order),
//! signed with fixed keys at fixed times, so the results are deterministic. The shapes are
//! the ones [`crate::analyse()`] recognises:
//!
//! * [`contract_net`]: intent → 2 offers → reject + award → progress → done → receipt;
//! * [`auction`]: weighted intent → 3 offers → scored `selection` event → rejects → award → …;
//! * [`workflow`]: root intent → sub-intent `resize` → its task → receipt → sub-intent
//!   `compress` (parent: the first receipt) → its task → receipt;
//! * [`parallel`]: intent → `n` offers → `n` awards `shard-i` side by side → done → receipts;
//! * [`consensus`]: the protocol's sample trace (proposal, votes, quorum cert, award);
//! * [`failed`]: a contract-net whose task fails.

use pvl_protocol::fixtures::{T0, offer_for, requester};
use pvl_protocol::{
    Body, Constraints, Envelope, Event, Intent, Keypair, ObjectId, PatternHint, Payload,
    ProtocolError, Receipt, Reject, RejectCode, Resources, SignedObject, Strategy, TaskDone,
    TaskProgress, TaskStart, TaskStatus, Weights,
};

type R<T> = Result<T, ProtocolError>;

/// The key of provider number `i` (seed `0x10 + i` repeated).
pub fn provider_key(i: u8) -> Keypair {
    Keypair::from_seed([0x10u8.wrapping_add(i); 32])
}

/// Signs an envelope in `trace` (or a root when `trace` is `None`).
pub fn sign(
    key: &Keypair,
    trace: Option<ObjectId>,
    parents: &[&SignedObject],
    at: u64,
    body: Body,
) -> R<SignedObject> {
    Envelope {
        trace,
        parents: parents.iter().map(|p| p.id()).collect(),
        signer: key.public(),
        timestamp_ms: at,
        body,
    }
    .sign(key)
}

/// An intent for `capability`; a root if `trace` is `None`, else a sub-intent of `trace`.
pub fn intent(
    capability: &str,
    pattern: PatternHint,
    strategy: Strategy,
    trace: Option<ObjectId>,
    parents: &[&SignedObject],
    at: u64,
    nonce: u64,
) -> R<SignedObject> {
    sign(
        &requester(),
        trace,
        parents,
        at,
        Body::Intent(Intent {
            capability: capability.into(),
            input: Payload::Inline(b"input".to_vec()),
            constraints: Constraints {
                max_cost: Some(1_000),
                deadline_ms: Some(at + 60_000),
                min_reliability_bps: None,
                resources: Resources::default(),
            },
            strategy,
            pattern,
            committee: None,
            nonce,
            expires_at_ms: at + 30_000,
        }),
    )
}

/// The award of `offer` (signed by the requester) with `label`, after `parents`.
pub fn award(
    offer: &SignedObject,
    label: &str,
    parents: &[&SignedObject],
    at: u64,
    deadline_ms: Option<u64>,
) -> R<SignedObject> {
    sign(
        &requester(),
        Some(offer.trace_id()),
        parents,
        at,
        Body::TaskStart(TaskStart {
            offer: offer.id(),
            provider: offer.signer(),
            label: label.into(),
            input: Payload::Inline(b"input".to_vec()),
            deadline_ms,
            quorum: None,
        }),
    )
}

/// Progress, done and countersigned receipt of task `start` run by `provider` over
/// `[started, finished]`; returns `[progress, done, receipt]`.
pub fn finish(
    start: &SignedObject,
    intent: &SignedObject,
    provider: &Keypair,
    started: u64,
    finished: u64,
    status: TaskStatus,
) -> R<Vec<SignedObject>> {
    let trace = Some(start.trace_id());
    let progress = sign(
        provider,
        trace,
        &[start],
        started + 1,
        Body::TaskProgress(TaskProgress {
            task: start.id(),
            fraction_bps: Some(5_000),
            message: "working".into(),
        }),
    )?;
    let done = sign(
        provider,
        trace,
        &[&progress],
        finished,
        Body::TaskDone(TaskDone {
            task: start.id(),
            status: status.clone(),
            output: Some(Payload::Inline(b"output".to_vec())),
            started_at_ms: started,
            finished_at_ms: finished,
        }),
    )?;
    let receipt = sign(
        provider,
        trace,
        &[&done],
        finished + 5,
        Body::Receipt(Receipt {
            task: start.id(),
            intent: intent.id(),
            requester: requester().public(),
            status,
            output_sha256: Some(pvl_protocol::sha256(b"output")),
            output_size: 6,
            cost: 40,
            started_at_ms: started,
            finished_at_ms: finished,
        }),
    )?
    .countersign(&requester())?;
    Ok(vec![progress, done, receipt])
}

fn reject(offer: &SignedObject, at: u64) -> R<SignedObject> {
    sign(
        &requester(),
        Some(offer.trace_id()),
        &[offer],
        at,
        Body::Reject(Reject {
            offer: offer.id(),
            code: RejectCode::NotSelected,
            detail: "another offer was selected".into(),
        }),
    )
}

fn single_task(
    capability: &str,
    pattern: PatternHint,
    strategy: Strategy,
    offers: u8,
    status: TaskStatus,
    scored: bool,
    nonce: u64,
) -> R<Vec<SignedObject>> {
    let root = intent(capability, pattern, strategy, None, &[], T0, nonce)?;
    let mut all = vec![root.clone()];
    let mut offer_objs = Vec::new();
    for i in 0..offers {
        let o = offer_for(
            &root,
            &provider_key(i),
            40 + u64::from(i) * 10,
            T0 + 100 + u64::from(i) * 20,
        )?;
        offer_objs.push(o);
    }
    all.extend(offer_objs.iter().cloned());
    let Some(winner) = offer_objs.first() else {
        return Ok(all);
    };
    let mut award_parents: Vec<&SignedObject> = vec![winner];
    let selection;
    if scored {
        selection = sign(
            &requester(),
            Some(root.id()),
            &offer_objs.iter().collect::<Vec<_>>(),
            T0 + 400,
            Body::Event(Event {
                event_type: "selection".into(),
                about: offer_objs.iter().map(|o| o.id()).collect(),
                message: "best weighted score".into(),
                attrs: vec![("score".into(), "0.91".into())],
            }),
        )?;
        all.push(selection.clone());
        award_parents = vec![winner, &selection];
    }
    for (i, loser) in offer_objs.iter().enumerate().skip(1) {
        all.push(reject(loser, T0 + 450 + i as u64)?);
    }
    let start = award(winner, "main", &award_parents, T0 + 500, Some(T0 + 5_000))?;
    let rest = finish(
        &start,
        &root,
        &provider_key(0),
        T0 + 600,
        T0 + 1_600,
        status,
    )?;
    all.push(start);
    all.extend(rest);
    Ok(all)
}

/// A contract-net trace: 2 offers, cheapest wins, success.
pub fn contract_net() -> R<Vec<SignedObject>> {
    single_task(
        "sha256",
        PatternHint::ContractNet,
        Strategy::LowestCost,
        2,
        TaskStatus::Ok,
        false,
        1,
    )
}

/// A contract-net trace whose task fails.
pub fn failed() -> R<Vec<SignedObject>> {
    single_task(
        "sha256",
        PatternHint::ContractNet,
        Strategy::LowestCost,
        2,
        TaskStatus::Failed("out of memory".into()),
        false,
        2,
    )
}

/// An auction trace: 3 offers, weighted strategy, scored selection event.
pub fn auction() -> R<Vec<SignedObject>> {
    single_task(
        "render",
        PatternHint::Auction,
        Strategy::Weighted(Weights {
            cost: 500,
            latency: 300,
            reliability: 200,
        }),
        3,
        TaskStatus::Ok,
        true,
        3,
    )
}

/// A federated workflow: two stages (`resize`, then `compress`) as sub-intents, the second
/// caused by the first one's receipt. Stage `compress` takes longer (the bottleneck).
pub fn workflow() -> R<Vec<SignedObject>> {
    let root = intent(
        "image-pipeline",
        PatternHint::Workflow,
        Strategy::LowestCost,
        None,
        &[],
        T0,
        7,
    )?;
    let mut all = vec![root.clone()];
    let mut previous: SignedObject = root.clone();
    let mut at = T0;
    for (n, (stage, took)) in [("resize", 1_000u64), ("compress", 3_000)]
        .iter()
        .enumerate()
    {
        let sub = intent(
            stage,
            PatternHint::ContractNet,
            Strategy::LowestCost,
            Some(root.id()),
            &[&previous],
            at + 10,
            100 + n as u64,
        )?;
        let offer = offer_for(&sub, &provider_key(n as u8), 30, at + 50)?;
        let start = award(&offer, &format!("stage:{stage}"), &[&offer], at + 100, None)?;
        let rest = finish(
            &start,
            &sub,
            &provider_key(n as u8),
            at + 150,
            at + 150 + took,
            TaskStatus::Ok,
        )?;
        at += 150 + took + 10;
        previous = rest.last().cloned().unwrap_or_else(|| start.clone());
        all.extend([sub, offer, start]);
        all.extend(rest);
    }
    Ok(all)
}

/// A parallel trace: `n` shards (at least 2) awarded side by side to `n` providers; shard
/// `n-1` is the slowest.
pub fn parallel(n: u8) -> R<Vec<SignedObject>> {
    let n = n.max(2);
    let root = intent(
        "transcode",
        PatternHint::Parallel,
        Strategy::LowestCost,
        None,
        &[],
        T0,
        9,
    )?;
    let mut all = vec![root.clone()];
    for i in 0..n {
        let key = provider_key(i);
        let offer = offer_for(&root, &key, 20, T0 + 100 + u64::from(i))?;
        let start = award(
            &offer,
            &format!("shard-{i}"),
            &[&offer],
            T0 + 300 + u64::from(i),
            None,
        )?;
        let took = 500 + u64::from(i) * 250;
        let rest = finish(
            &start,
            &root,
            &key,
            T0 + 400,
            T0 + 400 + took,
            TaskStatus::Ok,
        )?;
        all.extend([offer, start]);
        all.extend(rest);
    }
    Ok(all)
}

/// The protocol's consensus sample trace (without its separate capability ad).
pub fn consensus() -> R<Vec<SignedObject>> {
    Ok(pvl_protocol::fixtures::sample_objects()?
        .into_iter()
        .filter(|o| o.kind() != pvl_protocol::Kind::CapabilityAd)
        .collect())
}

/// A synthetic trace of about `len` objects for load tests: a root intent (made unique by
/// `nonce`), then repeated offer → award → progress → done groups from 8 providers. Cheap to
/// vary, realistic in size (each object signed for real).
pub fn synthetic(nonce: u64, len: usize) -> R<Vec<SignedObject>> {
    let t = T0 + nonce * 10;
    let root = intent(
        "bench",
        PatternHint::Parallel,
        Strategy::LowestCost,
        None,
        &[],
        t,
        nonce,
    )?;
    let mut all = Vec::with_capacity(len);
    all.push(root.clone());
    let mut i = 0u64;
    while all.len() < len {
        let key = provider_key((i % 8) as u8);
        let offer = offer_for(&root, &key, 10 + i, t + 10 + i)?;
        let start = award(&offer, &format!("shard-{i}"), &[&offer], t + 20 + i, None)?;
        let progress = sign(
            &key,
            Some(root.id()),
            &[&start],
            t + 30 + i,
            Body::TaskProgress(TaskProgress {
                task: start.id(),
                fraction_bps: Some(5_000),
                message: "working".into(),
            }),
        )?;
        let done = sign(
            &key,
            Some(root.id()),
            &[&progress],
            t + 40 + i,
            Body::TaskDone(TaskDone {
                task: start.id(),
                status: TaskStatus::Ok,
                output: Some(Payload::Hash {
                    sha256: pvl_protocol::sha256(&i.to_be_bytes()),
                    size: 1024,
                }),
                started_at_ms: t + 25 + i,
                finished_at_ms: t + 39 + i,
            }),
        )?;
        all.extend([offer, start, progress, done]);
        i += 1;
    }
    all.truncate(len.max(1));
    Ok(all)
}
