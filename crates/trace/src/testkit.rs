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
//!
//! The `*_run` functions and [`restarted`] build traces with the exact shapes and events that
//! `pvl-patterns` records (sub-intents, `selection` events, `stage-*` / `shard-*` /
//! `reassigned` / `round-timeout` / `pattern-chosen` / `intent-failed` events with their
//! attributes), from real signed objects, without depending on that crate:
//!
//! * [`workflow_run`]: stages `zip` → `encode` → `archive` (reads both), `workflow-done`;
//! * [`parallel_run`]: 4 shards, `shard-2`'s first provider fails and the shard is re-awarded,
//!   a `merge` reducer, `parallel-done`;
//! * [`consensus_run`]: round 1 times out (with an equivocating member), round 2 approves;
//! * [`adaptive_run`]: a `pattern-chosen` event (auction), then the auction;
//! * [`reassigned_run`]: a contract-net whose winner fails and the next offer completes;
//! * [`restarted`]: a contract-net, or a workflow mid-run, ended by a restarted requester.

use pvl_protocol::EventType;
use pvl_protocol::fixtures::{T0, committee, offer_for, requester};
use pvl_protocol::{
    Body, Committee, Constraints, Envelope, Event, Intent, Keypair, ObjectId, PatternHint, Payload,
    Proposal, ProtocolError, QuorumCert, Receipt, Reject, RejectCode, Resources, SignedObject,
    Strategy, TaskDone, TaskProgress, TaskStart, TaskStatus, Vote, Weights,
};

type R<T> = Result<T, ProtocolError>;

/// A testkit trace that cannot be built as described (a bug in this module).
fn kit_error(field: &'static str, problem: &str) -> ProtocolError {
    ProtocolError::InvalidField {
        field,
        problem: problem.to_string(),
    }
}

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

fn intent_body(
    capability: &str,
    pattern: PatternHint,
    strategy: Strategy,
    at: u64,
    nonce: u64,
) -> Intent {
    Intent {
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
        audience: None,
    }
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
        Body::Intent(intent_body(capability, pattern, strategy, at, nonce)),
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
            more: Vec::new(),
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
                event_type: EventType::Selection.to_string(),
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

/// An event signed by the requester in `trace`.
pub fn event(
    trace: ObjectId,
    parents: &[&SignedObject],
    at: u64,
    event_type: EventType,
    about: &[ObjectId],
    attrs: &[(&str, String)],
) -> R<SignedObject> {
    sign(
        &requester(),
        Some(trace),
        parents,
        at,
        Body::Event(Event {
            event_type: event_type.to_string(),
            about: about.to_vec(),
            message: format!("{event_type} (testkit)"),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        }),
    )
}

/// One contract-net round as a requester records it, up to the award.
#[derive(Debug, Clone)]
pub struct AwardedRound {
    /// The (sub-)intent.
    pub intent: SignedObject,
    /// The offers, the winner first.
    pub offers: Vec<SignedObject>,
    /// The award (`TaskStart`) of the first offer.
    pub start: SignedObject,
    /// Every object of the round in causal order: intent, offers, selection, rejects, award.
    pub objects: Vec<SignedObject>,
}

/// A round opened at `at`: the intent (a root when `trace` is `None`), offers from
/// `providers` at `at + 20 + 10 i` (the first wins), a `selection` event at `at + 100`,
/// rejects of the others at `at + 101`, the award labelled `label` at `at + 110`.
#[allow(clippy::too_many_arguments)]
pub fn awarded_round(
    trace: Option<ObjectId>,
    capability: &str,
    pattern: PatternHint,
    label: &str,
    parents: &[&SignedObject],
    at: u64,
    nonce: u64,
    providers: &[u8],
) -> R<AwardedRound> {
    let intent = intent(
        capability,
        pattern,
        Strategy::LowestCost,
        trace,
        parents,
        at,
        nonce,
    )?;
    round_on(intent, label, at, providers)
}

fn round_on(intent: SignedObject, label: &str, at: u64, providers: &[u8]) -> R<AwardedRound> {
    let trace = intent.trace_id();
    let mut offers = Vec::new();
    for (i, p) in providers.iter().enumerate() {
        offers.push(offer_for(
            &intent,
            &provider_key(*p),
            30 + 10 * i as u64,
            at + 20 + 10 * i as u64,
        )?);
    }
    let mut objects = vec![intent.clone()];
    objects.extend(offers.iter().cloned());
    let Some(winner) = offers.first() else {
        return Err(kit_error("providers", "a round needs an offer"));
    };
    let selection = event(
        trace,
        &offers.iter().collect::<Vec<_>>(),
        at + 100,
        EventType::Selection,
        &offers.iter().map(SignedObject::id).collect::<Vec<_>>(),
        &[
            ("strategy", "lowest-cost".into()),
            ("valid-offers", offers.len().to_string()),
            ("winner", winner.id().to_string()),
            ("winner-provider", winner.signer().to_string()),
            ("winner-score", "1.000".into()),
        ],
    )?;
    objects.push(selection.clone());
    for loser in offers.iter().skip(1) {
        objects.push(reject(loser, at + 101)?);
    }
    let start = award(winner, label, &[winner, &selection], at + 110, None)?;
    objects.push(start.clone());
    Ok(AwardedRound {
        intent,
        offers,
        start,
        objects,
    })
}

/// A `stage-started` / `shard-started` style event for the award `start`.
fn started_event(
    kind: EventType,
    name_attr: &str,
    label: &str,
    start: &SignedObject,
    award_no: u32,
) -> R<SignedObject> {
    let provider = match start.body() {
        Body::TaskStart(s) => s.provider.to_string(),
        _ => String::new(),
    };
    event(
        start.trace_id(),
        &[start],
        start.timestamp_ms(),
        kind,
        &[start.id()],
        &[
            (name_attr, label.to_string()),
            ("provider", provider),
            ("task", start.id().to_string()),
            ("award", award_no.to_string()),
        ],
    )
}

/// A completed stage: round, `stage-started`, progress, done, receipt, `stage-done`.
/// Returns the objects and the receipt.
#[allow(clippy::too_many_arguments)]
fn stage(
    root: &SignedObject,
    name: &str,
    capability: &str,
    parents: &[&SignedObject],
    at: u64,
    took: u64,
    providers: &[u8],
    nonce: u64,
) -> R<(Vec<SignedObject>, SignedObject)> {
    let round = awarded_round(
        Some(root.id()),
        capability,
        PatternHint::ContractNet,
        name,
        parents,
        at,
        nonce,
        providers,
    )?;
    let mut all = round.objects.clone();
    all.push(started_event(
        EventType::StageStarted,
        "stage",
        name,
        &round.start,
        1,
    )?);
    let key = provider_key(providers.first().copied().unwrap_or(0));
    let rest = finish(
        &round.start,
        &round.intent,
        &key,
        at + 150,
        at + 150 + took,
        TaskStatus::Ok,
    )?;
    let receipt = rest.last().cloned().unwrap_or_else(|| round.start.clone());
    all.extend(rest);
    all.push(event(
        root.id(),
        &[&receipt],
        receipt.timestamp_ms() + 1,
        EventType::StageDone,
        &[round.start.id()],
        &[
            ("stage", name.into()),
            ("capability", capability.into()),
            ("provider", key.public().to_string()),
            ("task", round.start.id().to_string()),
            ("cost", "30".into()),
            ("receipt", receipt.id().to_string()),
        ],
    )?);
    Ok((all, receipt))
}

/// A workflow `pack` as `WorkflowRun` records it: root `workflow:pack` (pattern workflow),
/// stage `zip` (1000 ms of execution), then `encode` reading `zip` (2000 ms), then
/// `archive` reading both (500 ms); every stage awarded 110 ms after its sub-intent;
/// `workflow-done` at the end.
pub fn workflow_run() -> R<Vec<SignedObject>> {
    let root = intent(
        "workflow:pack",
        PatternHint::Workflow,
        Strategy::LowestCost,
        None,
        &[],
        T0,
        50,
    )?;
    let mut all = vec![root.clone()];
    let (zip, zip_receipt) = stage(&root, "zip", "gzip", &[&root], T0 + 10, 1_000, &[0, 1], 51)?;
    let at = zip_receipt.timestamp_ms() + 1;
    all.extend(zip);
    let (encode, encode_receipt) = stage(
        &root,
        "encode",
        "base64",
        &[&root, &zip_receipt],
        at,
        2_000,
        &[1, 2],
        52,
    )?;
    let at = encode_receipt.timestamp_ms() + 1;
    all.extend(encode);
    let (archive, archive_receipt) = stage(
        &root,
        "archive",
        "tar",
        &[&root, &zip_receipt, &encode_receipt],
        at,
        500,
        &[2, 0],
        53,
    )?;
    all.extend(archive);
    all.push(event(
        root.id(),
        &[&zip_receipt, &encode_receipt, &archive_receipt],
        archive_receipt.timestamp_ms() + 2,
        EventType::WorkflowDone,
        &[root.id()],
        &[("stages", "3".into()), ("final-stage", "archive".into())],
    )?);
    Ok(all)
}

/// A parallel run as `ParallelRun` records it: root `transcode` (pattern parallel), 4 shard
/// sub-intents opened at `T0 + 5`, each awarded to provider `i` (offers from `i` and
/// `i + 1`); `shard-2`'s provider reports failure, a `reassigned` event re-awards the shard
/// to the next offer, which completes; then a `merge` reducer (label `reduce`) reads the
/// shard receipts, and `parallel-done` ends the run.
pub fn parallel_run() -> R<Vec<SignedObject>> {
    let root = intent(
        "transcode",
        PatternHint::Parallel,
        Strategy::LowestCost,
        None,
        &[],
        T0,
        60,
    )?;
    let mut all = vec![root.clone()];
    let mut receipts = Vec::new();
    for i in 0..4u8 {
        let label = format!("shard-{i}");
        let round = awarded_round(
            Some(root.id()),
            "transcode",
            PatternHint::ContractNet,
            &label,
            &[&root],
            T0 + 5,
            61 + u64::from(i),
            &[i, (i + 1) % 4],
        )?;
        all.extend(round.objects.iter().cloned());
        all.push(started_event(
            EventType::ShardStarted,
            "shard",
            &label,
            &round.start,
            1,
        )?);
        let took = 400 + u64::from(i) * 100;
        let (start, key) = if i == 2 {
            let failed = finish(
                &round.start,
                &round.intent,
                &provider_key(i),
                T0 + 160,
                T0 + 300,
                TaskStatus::Failed("disk full".into()),
            )?;
            let done = failed
                .get(1)
                .cloned()
                .ok_or_else(|| kit_error("finish", "no done"))?;
            all.extend(failed.into_iter().take(2));
            let next = round
                .offers
                .get(1)
                .ok_or_else(|| kit_error("offers", "no second offer"))?;
            let reassigned = event(
                root.id(),
                &[&round.start, &done],
                T0 + 301,
                EventType::Reassigned,
                &[round.start.id(), next.id()],
                &[
                    ("from-task", round.start.id().to_string()),
                    ("from-provider", provider_key(i).public().to_string()),
                    ("reason", "the provider reported failure: disk full".into()),
                    ("to-offer", next.id().to_string()),
                    ("to-provider", next.signer().to_string()),
                    ("to-score", "0.900".into()),
                ],
            )?;
            let again = award(next, &label, &[next, &reassigned], T0 + 302, None)?;
            all.push(reassigned);
            all.push(again.clone());
            all.push(started_event(
                EventType::ShardStarted,
                "shard",
                &label,
                &again,
                2,
            )?);
            (again, provider_key((i + 1) % 4))
        } else {
            (round.start.clone(), provider_key(i))
        };
        let begin = start.timestamp_ms() + 40;
        let rest = finish(
            &start,
            &round.intent,
            &key,
            begin,
            begin + took,
            TaskStatus::Ok,
        )?;
        let receipt = rest.last().cloned().unwrap_or_else(|| start.clone());
        all.extend(rest);
        all.push(event(
            root.id(),
            &[&receipt],
            receipt.timestamp_ms() + 1,
            EventType::ShardDone,
            &[start.id()],
            &[
                ("shard", label.clone()),
                ("provider", key.public().to_string()),
                ("task", start.id().to_string()),
            ],
        )?);
        receipts.push(receipt);
    }
    let at = receipts
        .iter()
        .map(|r| r.timestamp_ms())
        .max()
        .unwrap_or(T0)
        + 2;
    let mut parents: Vec<&SignedObject> = vec![&root];
    parents.extend(receipts.iter());
    let reducer = awarded_round(
        Some(root.id()),
        "merge",
        PatternHint::ContractNet,
        "reduce",
        &parents,
        at,
        70,
        &[3],
    )?;
    all.extend(reducer.objects.iter().cloned());
    all.push(started_event(
        EventType::ReduceStarted,
        "shard",
        "reduce",
        &reducer.start,
        1,
    )?);
    let rest = finish(
        &reducer.start,
        &reducer.intent,
        &provider_key(3),
        at + 150,
        at + 250,
        TaskStatus::Ok,
    )?;
    let receipt = rest
        .last()
        .cloned()
        .unwrap_or_else(|| reducer.start.clone());
    all.extend(rest);
    all.push(event(
        root.id(),
        &[&receipt],
        receipt.timestamp_ms() + 1,
        EventType::ParallelDone,
        &[root.id()],
        &[("how", "merge".into()), ("shards", "4".into())],
    )?);
    Ok(all)
}

/// A consensus run as a committee requester records it: root `sha256` (pattern consensus,
/// committee of the 3 fixture members, threshold 2), offers from providers 0 and 1, then
/// round 1 (proposal at `T0 + 200`): member 0 approves, member 2 signs an approval and a
/// rejection (`equivocation`), `round-timeout` at `T0 + 1200`; round 2 (proposal at
/// `T0 + 1200`): members 0 and 1 approve, certificate at `T0 + 1300`, member 2's late
/// rejection at `T0 + 1310`; the award embeds the certificate; the task completes.
pub fn consensus_run() -> R<Vec<SignedObject>> {
    let members = committee();
    let mut body = intent_body(
        "sha256",
        PatternHint::Consensus,
        Strategy::LowestCost,
        T0,
        80,
    );
    body.committee = Some(Committee {
        members: members.iter().map(Keypair::public).collect(),
        threshold: 2,
    });
    let root = sign(&requester(), None, &[], T0, Body::Intent(body))?;
    let trace = root.id();
    let offers = [
        offer_for(&root, &provider_key(0), 30, T0 + 20)?,
        offer_for(&root, &provider_key(1), 40, T0 + 30)?,
    ];
    let [winner, loser] = &offers;
    let selection = event(
        trace,
        &[winner, loser],
        T0 + 100,
        EventType::Selection,
        &[winner.id(), loser.id()],
        &[
            ("strategy", "lowest-cost".into()),
            ("winner", winner.id().to_string()),
        ],
    )?;
    let action = format!(
        "award capability=sha256 provider={} offer={} cost=30 eta_ms=1500 input_sha256={}",
        winner.signer(),
        winner.id(),
        ObjectId(pvl_protocol::sha256(b"input"))
    );
    let proposal = |round: u32, parents: &[&SignedObject], at: u64| {
        sign(
            &requester(),
            Some(trace),
            parents,
            at,
            Body::Proposal(Proposal {
                subject: winner.id(),
                round,
                committee: Committee {
                    members: members.iter().map(Keypair::public).collect(),
                    threshold: 2,
                },
                action: action.clone(),
                deadline_ms: at + 1_000,
            }),
        )
    };
    let vote = |member: &Keypair, p: &SignedObject, round: u32, approve: bool, at: u64| {
        sign(
            member,
            Some(trace),
            &[p],
            at,
            Body::Vote(Vote {
                proposal: p.id(),
                round,
                approve,
                reason: if approve {
                    "terms acceptable"
                } else {
                    "cost too high"
                }
                .into(),
            }),
        )
    };
    let [m0, m1, m2] = &members;
    let p1 = proposal(1, &[winner, &selection], T0 + 200)?;
    let v10 = vote(m0, &p1, 1, true, T0 + 210)?;
    let v12a = vote(m2, &p1, 1, true, T0 + 220)?;
    let v12b = vote(m2, &p1, 1, false, T0 + 225)?;
    let equivocation = event(
        trace,
        &[&v12a, &v12b],
        T0 + 225,
        EventType::Equivocation,
        &[v12a.id(), v12b.id()],
        &[("member", m2.public().to_string()), ("round", "1".into())],
    )?;
    let timeout = event(
        trace,
        &[&p1],
        T0 + 1_200,
        EventType::RoundTimeout,
        &[p1.id()],
        &[
            ("round", "1".into()),
            ("approvals", "1".into()),
            ("threshold", "2".into()),
        ],
    )?;
    let p2 = proposal(2, &[&p1, &timeout], T0 + 1_200)?;
    let v20 = vote(m0, &p2, 2, true, T0 + 1_250)?;
    let v21 = vote(m1, &p2, 2, true, T0 + 1_300)?;
    let mut approving = vec![v20.clone(), v21.clone()];
    approving.sort_by_key(SignedObject::signer);
    let cert = sign(
        &requester(),
        Some(trace),
        &[&p2],
        T0 + 1_300,
        Body::QuorumCert(QuorumCert {
            proposal: Box::new(p2.clone()),
            votes: approving,
        }),
    )?;
    let v22 = vote(m2, &p2, 2, false, T0 + 1_310)?;
    let reject_loser = reject(loser, T0 + 1_300)?;
    let start = sign(
        &requester(),
        Some(trace),
        &[winner, &cert],
        T0 + 1_301,
        Body::TaskStart(TaskStart {
            offer: winner.id(),
            provider: winner.signer(),
            label: "main".into(),
            input: Payload::Inline(b"input".to_vec()),
            deadline_ms: Some(T0 + 60_000),
            quorum: Some(Box::new(cert.clone())),
        }),
    )?;
    let rest = finish(
        &start,
        &root,
        &provider_key(0),
        T0 + 1_350,
        T0 + 1_850,
        TaskStatus::Ok,
    )?;
    let mut all = vec![
        root,
        winner.clone(),
        loser.clone(),
        selection,
        p1,
        v10,
        v12a,
        v12b,
    ];
    all.extend([
        equivocation,
        timeout,
        p2,
        v20,
        v21,
        cert,
        v22,
        reject_loser,
        start,
    ]);
    all.extend(rest);
    Ok(all)
}

/// An adaptive run: root `render` (pattern adaptive), a `pattern-chosen` event choosing
/// `auction` (two reasons, one provider avoided) at `T0 + 1`, then a round with offers from
/// providers 0, 1 and 2 and a completed task.
pub fn adaptive_run() -> R<Vec<SignedObject>> {
    let round = awarded_round(
        None,
        "render",
        PatternHint::Adaptive,
        "main",
        &[],
        T0,
        90,
        &[0, 1, 2],
    )?;
    let root = round.intent.clone();
    let chosen = event(
        root.id(),
        &[&root],
        T0 + 1,
        EventType::PatternChosen,
        &[root.id()],
        &[
            ("pattern", "auction".into()),
            ("reasons", "3 providers compete; weights given".into()),
            ("avoid", provider_key(5).public().to_string()),
        ],
    )?;
    let mut all = vec![root.clone(), chosen];
    all.extend(round.objects.iter().skip(1).cloned());
    all.extend(finish(
        &round.start,
        &root,
        &provider_key(0),
        T0 + 150,
        T0 + 650,
        TaskStatus::Ok,
    )?);
    Ok(all)
}

/// A contract-net whose winner (provider 0) reports failure: `reassigned` to the next offer
/// (provider 1), which completes with a countersigned receipt.
pub fn reassigned_run() -> R<Vec<SignedObject>> {
    let round = awarded_round(
        None,
        "sha256",
        PatternHint::ContractNet,
        "main",
        &[],
        T0,
        95,
        &[0, 1],
    )?;
    let root = round.intent.clone();
    let mut all = round.objects.clone();
    let failed = finish(
        &round.start,
        &root,
        &provider_key(0),
        T0 + 150,
        T0 + 200,
        TaskStatus::Failed("crashed".into()),
    )?;
    let done = failed
        .get(1)
        .cloned()
        .ok_or_else(|| kit_error("finish", "no done"))?;
    all.extend(failed.into_iter().take(2));
    let next = round
        .offers
        .get(1)
        .ok_or_else(|| kit_error("offers", "no second offer"))?;
    let reassigned = event(
        root.id(),
        &[&round.start, &done],
        T0 + 201,
        EventType::Reassigned,
        &[round.start.id(), next.id()],
        &[
            ("from-task", round.start.id().to_string()),
            ("reason", "the provider reported failure: crashed".into()),
            ("to-offer", next.id().to_string()),
        ],
    )?;
    let again = award(next, "main", &[next, &reassigned], T0 + 202, None)?;
    all.push(reassigned);
    all.push(again.clone());
    all.extend(finish(
        &again,
        &root,
        &provider_key(1),
        T0 + 250,
        T0 + 750,
        TaskStatus::Ok,
    )?);
    Ok(all)
}

/// A trace ended by a restarted requester (`intent-failed`, reason `requester-restarted`,
/// about the root, as the node's recovery signs it): with `composite` false a contract-net
/// awarded and in progress; with `composite` true the [`workflow_run`] cut after `encode`
/// was awarded (stage `zip` done).
pub fn restarted(composite: bool) -> R<Vec<SignedObject>> {
    let mut all: Vec<SignedObject> = if composite {
        let full = workflow_run()?;
        let encode_award = full
            .iter()
            .position(|o| matches!(o.body(), Body::TaskStart(s) if s.label == "encode"))
            .ok_or_else(|| kit_error("workflow", "no encode award"))?;
        full.into_iter().take(encode_award + 1).collect()
    } else {
        let round = awarded_round(
            None,
            "sha256",
            PatternHint::ContractNet,
            "main",
            &[],
            T0,
            97,
            &[0],
        )?;
        let mut objects = round.objects.clone();
        objects.push(sign(
            &provider_key(0),
            Some(round.intent.id()),
            &[&round.start],
            T0 + 200,
            Body::TaskProgress(TaskProgress {
                task: round.start.id(),
                fraction_bps: Some(2_000),
                message: "working".into(),
            }),
        )?);
        objects
    };
    let root = all
        .first()
        .cloned()
        .ok_or_else(|| kit_error("trace", "empty"))?;
    let last_intent = all
        .iter()
        .filter(|o| o.kind() == pvl_protocol::Kind::Intent)
        .max_by_key(|o| o.timestamp_ms())
        .cloned()
        .unwrap_or_else(|| root.clone());
    let at = all
        .iter()
        .map(SignedObject::timestamp_ms)
        .max()
        .unwrap_or(T0)
        + 10_000;
    let mut parents = vec![&last_intent];
    if last_intent.id() != root.id() {
        parents.push(&root);
    }
    let ended = event(
        root.id(),
        &parents,
        at,
        EventType::IntentFailed,
        &[root.id()],
        &[("reason", "requester-restarted".into())],
    )?;
    all.push(ended);
    Ok(all)
}

/// The raw sled database under a store directory, for tests that damage it on purpose. Waits
/// for the directory lock like [`crate::TraceStore::open`] does: sled lets go of it a moment
/// after a store in this process was dropped.
pub fn open_sled(path: &std::path::Path) -> Result<sled::Db, crate::TraceError> {
    Ok(crate::store::open_sled(&sled::Config::new().path(path))?)
}
