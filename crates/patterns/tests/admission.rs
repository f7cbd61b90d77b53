//! Context admission in the engine: every object received directly gets a verdict, every
//! refusal has its typed reason, nothing refused is recorded, refusals are counted by reason,
//! and the round the forgeries target still completes. Real signatures, a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{key, offer, published, sends};
use pvl_patterns::{
    Action, Engine, EngineConfig, Input, OfferPolicy, Outcome, Planned, Provider, Refusal, Request,
    RequestSpec, Verdict,
};
use pvl_protocol::{
    Body, Committee, Envelope, Keypair, Kind, ObjectId, Payload, Proposal, Receipt, SignedObject,
    TaskDone, TaskProgress, TaskStart, TaskStatus, Vote,
};

const T0: u64 = 1_800_000_000_000;
const REQUESTER: u8 = 1;
const PROVIDER: u8 = 11;
const ROGUE: u8 = 13;

fn requester() -> Engine {
    Engine::new(EngineConfig::new(key(REQUESTER)))
}

fn provider() -> Engine {
    let provider =
        Provider::new(key(PROVIDER), 4).serve("sha256", OfferPolicy::fixed(10, 1_000, 9_500));
    Engine::new(EngineConfig::new(key(PROVIDER)).with_provider(provider))
}

fn spec() -> RequestSpec {
    let mut spec = RequestSpec::new("sha256", Payload::Inline(b"hello".to_vec()));
    spec.offer_window_ms = 1_000;
    spec.min_offers = 1;
    spec.nonce = 3;
    spec
}

/// Starts a round on `engine`; returns its intent.
fn start(engine: &mut Engine, spec: RequestSpec) -> SignedObject {
    let (_, actions) = engine
        .request(Planned::new(Request::ContractNet(spec)), T0)
        .unwrap();
    published(&actions).pop().unwrap()
}

fn sign(key: &Keypair, trace: &SignedObject, at: u64, body: Body) -> SignedObject {
    Envelope {
        trace: Some(trace.trace_id()),
        parents: vec![trace.id()],
        signer: key.public(),
        timestamp_ms: at,
        body,
    }
    .sign(key)
    .unwrap()
}

/// The refusal of a verdict that must be one, after checking nothing was recorded.
fn refused(engine: &mut Engine, object: SignedObject, at: u64) -> Refusal {
    let id = object.id();
    let (verdict, actions): (Verdict, Vec<Action>) = engine.admit(object, at);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Record(o) if o.id() == id)),
        "a refused object was recorded: {actions:?}"
    );
    let refused = verdict.expect_err("the object was admitted");
    assert!(!refused.detail.is_empty());
    refused.refusal
}

fn admitted(engine: &mut Engine, object: SignedObject, at: u64) -> Vec<Action> {
    let (verdict, actions) = engine.admit(object, at);
    verdict.unwrap();
    actions
}

fn sent_of(actions: &[Action], kind: Kind) -> SignedObject {
    sends(actions)
        .into_iter()
        .map(|(_, o)| o)
        .find(|o| o.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} sent in {actions:?}"))
}

/// A round between a requester and a provider up to the award: (requester, provider,
/// intent, the provider's offer, the award).
fn awarded() -> (Engine, Engine, SignedObject, SignedObject, SignedObject) {
    let mut r = requester();
    let mut p = provider();
    let intent = start(&mut r, spec());
    // The intent comes by gossip: the provider bids.
    let bid = sent_of(
        &p.handle(Input::Received(intent.clone()), T0 + 10),
        Kind::Offer,
    );
    let award = sent_of(&admitted(&mut r, bid.clone(), T0 + 20), Kind::TaskStart);
    (r, p, intent, bid, award)
}

fn task_done(signer: &Keypair, trace: &SignedObject, task: ObjectId, at: u64) -> SignedObject {
    sign(
        signer,
        trace,
        at,
        Body::TaskDone(TaskDone {
            task,
            status: TaskStatus::Ok,
            output: None,
            started_at_ms: at,
            finished_at_ms: at,
        }),
    )
}

fn receipt(signer: &Keypair, intent: &SignedObject, task: ObjectId, at: u64) -> SignedObject {
    sign(
        signer,
        intent,
        at,
        Body::Receipt(Receipt {
            task,
            intent: intent.id(),
            requester: intent.signer(),
            status: TaskStatus::Ok,
            output_sha256: None,
            output_size: 0,
            cost: 1,
            started_at_ms: at,
            finished_at_ms: at,
        }),
    )
}

#[test]
fn an_offer_for_an_unknown_intent_is_refused() {
    let mut r = requester();
    let intent = start(&mut r, spec());
    // Another trace entirely.
    let stranger = sign(
        &key(ROGUE),
        &intent,
        T0,
        Body::Intent(match intent.body() {
            Body::Intent(i) => i.clone(),
            _ => unreachable!(),
        }),
    );
    let elsewhere = offer(&stranger, &key(ROGUE), 1, 10, 9_900, T0 + 10);
    let elsewhere = Envelope {
        trace: Some(ObjectId([9; 32])),
        ..elsewhere.envelope().clone()
    }
    .sign(&key(ROGUE))
    .unwrap();
    assert_eq!(refused(&mut r, elsewhere, T0 + 20), Refusal::UnknownIntent);
    // In the requester's trace, but answering an intent it never published.
    let mut wrong = offer(&intent, &key(ROGUE), 1, 10, 9_900, T0 + 10);
    wrong = Envelope {
        body: Body::Offer(match wrong.body() {
            Body::Offer(o) => pvl_protocol::Offer {
                intent: ObjectId([8; 32]),
                ..o.clone()
            },
            _ => unreachable!(),
        }),
        ..wrong.envelope().clone()
    }
    .sign(&key(ROGUE))
    .unwrap();
    assert_eq!(refused(&mut r, wrong, T0 + 20), Refusal::UnknownIntent);
    let stats = r.stats();
    assert_eq!(stats.refusals.get(Refusal::UnknownIntent), 2);
    assert_eq!(stats.refused, 2);
    // The honest offer is still admitted and the round goes on.
    let good = offer(&intent, &key(PROVIDER), 10, 100, 9_900, T0 + 30);
    admitted(&mut r, good, T0 + 40);
}

#[test]
fn an_offer_for_a_closed_intent_is_refused() {
    let mut r = requester();
    let intent = start(&mut r, spec());
    r.cancel(&intent.id(), "enough", T0 + 5).unwrap();
    let late = offer(&intent, &key(PROVIDER), 10, 100, 9_900, T0 + 10);
    assert_eq!(refused(&mut r, late, T0 + 20), Refusal::IntentClosed);
    assert_eq!(r.stats().refusals.get(Refusal::IntentClosed), 1);
}

#[test]
fn an_award_for_an_offer_never_made_is_refused() {
    let (_, mut p, intent, bid, award) = awarded();
    let forged = |offer: ObjectId, to: &Keypair, signer: &Keypair| {
        sign(
            signer,
            &intent,
            T0 + 30,
            Body::TaskStart(TaskStart {
                offer,
                provider: to.public(),
                label: "main".into(),
                input: Payload::Inline(b"hello".to_vec()),
                deadline_ms: None,
                quorum: None,
            }),
        )
    };
    // An offer this provider never made, one for another provider, one not from the requester.
    let never = forged(ObjectId([5; 32]), &key(PROVIDER), &key(REQUESTER));
    assert_eq!(refused(&mut p, never, T0 + 40), Refusal::NotYourOffer);
    let other = forged(bid.id(), &key(ROGUE), &key(REQUESTER));
    assert_eq!(refused(&mut p, other, T0 + 40), Refusal::NotYourOffer);
    let stranger = forged(bid.id(), &key(PROVIDER), &key(ROGUE));
    assert_eq!(refused(&mut p, stranger, T0 + 40), Refusal::NotYourOffer);
    // A node that serves nothing makes no offers.
    let mut plain = requester();
    let never = forged(ObjectId([5; 32]), &key(REQUESTER), &key(ROGUE));
    assert_eq!(refused(&mut plain, never, T0 + 40), Refusal::NotYourOffer);
    // The genuine award is executed.
    let actions = admitted(&mut p, award.clone(), T0 + 50);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Execute { task, .. } if *task == award.id()))
    );
    assert_eq!(p.stats().refusals.get(Refusal::NotYourOffer), 3);
}

#[test]
fn reports_from_anyone_but_the_awarded_provider_are_refused_and_the_round_completes() {
    let (mut r, mut p, intent, _, award) = awarded();
    let task = award.id();
    let rogue = key(ROGUE);
    assert_eq!(
        refused(&mut r, task_done(&rogue, &intent, task, T0 + 30), T0 + 40),
        Refusal::NotTheAwardedProvider
    );
    assert_eq!(
        refused(&mut r, receipt(&rogue, &intent, task, T0 + 30), T0 + 40),
        Refusal::NotTheAwardedProvider
    );
    let progress = sign(
        &rogue,
        &intent,
        T0 + 30,
        Body::TaskProgress(TaskProgress {
            task,
            fraction_bps: Some(5_000),
            message: "half".into(),
        }),
    );
    assert_eq!(
        refused(&mut r, progress, T0 + 40),
        Refusal::NotTheAwardedProvider
    );
    // The awarded provider, about a task that is not live.
    assert_eq!(
        refused(
            &mut r,
            task_done(&key(PROVIDER), &intent, ObjectId([4; 32]), T0 + 30),
            T0 + 40
        ),
        Refusal::TaskNotLive
    );

    // The real task runs and completes.
    admitted(&mut p, award.clone(), T0 + 50);
    let reports = p.handle(
        Input::Executed {
            task,
            result: Ok(Payload::Inline(b"out".to_vec())),
        },
        T0 + 60,
    );
    let done = sent_of(&reports, Kind::TaskDone);
    let proof = sent_of(&reports, Kind::Receipt);
    admitted(&mut r, done.clone(), T0 + 70);
    let actions = admitted(&mut r, proof, T0 + 71);
    assert!(matches!(
        r.outcome(&intent.id()),
        Some(Outcome::Completed(_))
    ));
    // The countersigned receipt goes back to the provider, who admits it.
    let countersigned = sent_of(&actions, Kind::Receipt);
    admitted(&mut p, countersigned, T0 + 80);
    // After the end, even the provider's own reports find no live task.
    let again = task_done(&key(PROVIDER), &intent, task, T0 + 90);
    assert_eq!(refused(&mut r, again, T0 + 95), Refusal::TaskNotLive);
    let stats = r.stats();
    assert_eq!(stats.refusals.get(Refusal::NotTheAwardedProvider), 3);
    assert_eq!(stats.refusals.get(Refusal::TaskNotLive), 2);
    assert_eq!(stats.refused, 5);
    // A report in a trace this node never took part in.
    let mut fresh = requester();
    assert_eq!(
        refused(
            &mut fresh,
            task_done(&rogue, &intent, task, T0 + 30),
            T0 + 40
        ),
        Refusal::UnknownTrace
    );
}

fn committee_of(members: &[u8], threshold: u32) -> Committee {
    Committee {
        members: members.iter().map(|m| key(*m).public()).collect(),
        threshold,
    }
}

#[test]
fn a_vote_from_a_non_member_or_without_a_ballot_is_refused() {
    // A round with a committee of 21 and 22 (threshold 2): the ballot stays open.
    let mut r = requester();
    let mut p = provider();
    let mut s = spec();
    s.committee = Some(committee_of(&[21, 22], 2));
    let intent = start(&mut r, s);
    let bid = sent_of(
        &p.handle(Input::Received(intent.clone()), T0 + 10),
        Kind::Offer,
    );
    let proposal = sent_of(&admitted(&mut r, bid, T0 + 20), Kind::Proposal);
    let vote = |member: u8, proposal: &SignedObject| {
        sign(
            &key(member),
            proposal,
            T0 + 30,
            Body::Vote(Vote {
                proposal: proposal.id(),
                round: 1,
                approve: true,
                reason: "fine".into(),
            }),
        )
    };
    assert_eq!(
        refused(&mut r, vote(ROGUE, &proposal), T0 + 40),
        Refusal::NotABallotMember
    );
    // Members' votes are admitted and the award follows.
    admitted(&mut r, vote(21, &proposal), T0 + 41);
    let actions = admitted(&mut r, vote(22, &proposal), T0 + 42);
    sent_of(&actions, Kind::TaskStart);
    assert_eq!(r.stats().refusals.get(Refusal::NotABallotMember), 1);

    // A round without a committee has no ballot.
    let mut plain = requester();
    let other = start(&mut plain, spec());
    let stray = sign(
        &key(21),
        &other,
        T0 + 30,
        Body::Vote(Vote {
            proposal: ObjectId([3; 32]),
            round: 1,
            approve: true,
            reason: "fine".into(),
        }),
    );
    assert_eq!(refused(&mut plain, stray, T0 + 40), Refusal::NoOpenBallot);
}

#[test]
fn a_proposal_that_does_not_name_this_node_is_refused() {
    let mut voter = Engine::new(EngineConfig::new(key(21)));
    let mut r = requester();
    let intent = start(&mut r, spec());
    let proposal = |committee: Committee, deadline_ms: u64| {
        sign(
            &key(REQUESTER),
            &intent,
            T0 + 10,
            Body::Proposal(Proposal {
                subject: ObjectId([2; 32]),
                round: 1,
                committee,
                action: "award".into(),
                deadline_ms,
            }),
        )
    };
    let without = proposal(committee_of(&[22, 23], 1), T0 + 5_000);
    assert_eq!(
        refused(&mut voter, without, T0 + 20),
        Refusal::NotInCommittee
    );
    let closed = proposal(committee_of(&[21, 22], 1), T0 + 15);
    assert_eq!(refused(&mut voter, closed, T0 + 20), Refusal::VotingClosed);
    assert_eq!(voter.stats().refusals.get(Refusal::NotInCommittee), 1);
    assert_eq!(voter.stats().refusals.get(Refusal::VotingClosed), 1);
}

#[test]
fn an_intent_sent_directly_is_refused_unless_bid_on_and_a_gossiped_one_is_observed() {
    // The requester serves nothing: a directed intent is refused, with the reason.
    let mut r = requester();
    let intent = start(&mut Engine::new(EngineConfig::new(key(2))), spec());
    assert_eq!(refused(&mut r, intent.clone(), T0 + 5), Refusal::NotBidding);
    assert!(!Refusal::NotBidding.is_offence());
    let actions = r.handle(Input::Received(intent.clone()), T0 + 6);
    // Observed, not stored: a trace this node takes no part in costs it no storage.
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Observe(o) if o.id() == intent.id()))
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Record(_))));
    assert_eq!(r.stats().refusals.get(Refusal::NotBidding), 1);
    assert_eq!(r.stats().refusals.total(), 1);

    // A provider of the capability admits it, records it and offers.
    let mut p = provider();
    let actions = admitted(&mut p, intent.clone(), T0 + 7);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Record(o) if o.id() == intent.id()))
    );
    let offer = sent_of(&actions, Kind::Offer);
    assert_eq!(offer.trace_id(), intent.trace_id());
    // Sent again, it is not offered on twice: refused with the provider's reason.
    assert_eq!(refused(&mut p, intent.clone(), T0 + 8), Refusal::NotBidding);

    // A capability ad is never sent directly.
    let ad = pvl_patterns::directory::advertise(
        &key(PROVIDER),
        "sha256",
        pvl_protocol::PriceModel::Fixed(10),
        4,
        "bytes",
        "hex digest",
        60_000,
        T0,
    )
    .unwrap();
    assert_eq!(refused(&mut r, ad, T0 + 9), Refusal::GossipOnly);
}

#[test]
fn an_award_refused_in_the_acknowledgement_is_reassigned_at_once() {
    // Two bidders: the cheaper (the rogue's key, standing for a provider that lost its offer
    // state) is awarded first and refuses in the acknowledgement.
    let mut r = requester();
    let mut s = spec();
    s.min_offers = 2;
    let intent = start(&mut r, s);
    let cheap = offer(&intent, &key(ROGUE), 1, 100, 9_900, T0 + 10);
    let fair = offer(&intent, &key(PROVIDER), 10, 100, 9_900, T0 + 10);
    admitted(&mut r, cheap, T0 + 20);
    let first = sent_of(&admitted(&mut r, fair.clone(), T0 + 21), Kind::TaskStart);
    let Body::TaskStart(award) = first.body() else {
        unreachable!()
    };
    assert_eq!(award.provider, key(ROGUE).public());
    let actions = r.handle(
        Input::AwardRefused {
            trace: intent.trace_id(),
            task: first.id(),
            reason: "not-your-offer: this provider never made (or no longer holds) offer".into(),
        },
        T0 + 30,
    );
    let next = sent_of(&actions, Kind::TaskStart);
    let Body::TaskStart(award) = next.body() else {
        unreachable!()
    };
    assert_eq!(award.offer, fair.id());
    assert_eq!(award.provider, key(PROVIDER).public());
    // A refusal for a task that is not the current award changes nothing.
    let stale = r.handle(
        Input::AwardRefused {
            trace: intent.trace_id(),
            task: first.id(),
            reason: "not-your-offer: again".into(),
        },
        T0 + 40,
    );
    assert!(stale.is_empty(), "{stale:?}");
}

#[test]
fn rejects_and_receipts_a_provider_has_no_part_in_are_refused() {
    let (_, mut p, intent, bid, award) = awarded();
    // A reject naming no offer of this provider's, in a trace it has no part in.
    let mut other = requester();
    let elsewhere = start(&mut other, {
        let mut s = spec();
        s.nonce = 99;
        s
    });
    let foreign = offer(&elsewhere, &key(ROGUE), 1, 10, 9_900, T0 + 10);
    let reject = sign(
        &key(REQUESTER),
        &elsewhere,
        T0 + 20,
        Body::Reject(pvl_protocol::Reject {
            offer: foreign.id(),
            code: pvl_protocol::RejectCode::NotSelected,
            detail: "no".into(),
            more: vec![],
        }),
    );
    assert_eq!(refused(&mut p, reject, T0 + 30), Refusal::NotYourOffer);
    // A reject of its own offer by its requester is admitted (and recorded).
    let mine = sign(
        &key(REQUESTER),
        &intent,
        T0 + 20,
        Body::Reject(pvl_protocol::Reject {
            offer: bid.id(),
            code: pvl_protocol::RejectCode::NotSelected,
            detail: "no".into(),
            more: vec![],
        }),
    );
    admitted(&mut p, mine, T0 + 30);
    // Its own receipt coming back without the requester's countersignature.
    admitted(&mut p, award.clone(), T0 + 40);
    let reports = p.handle(
        Input::Executed {
            task: award.id(),
            result: Ok(Payload::Inline(b"out".to_vec())),
        },
        T0 + 50,
    );
    let plain = sent_of(&reports, Kind::Receipt);
    assert_eq!(refused(&mut p, plain, T0 + 60), Refusal::Unexpected);
    // Someone else's receipt.
    let theirs = receipt(&key(ROGUE), &intent, award.id(), T0 + 60);
    assert_eq!(
        refused(&mut p, theirs, T0 + 70),
        Refusal::NotTheAwardedProvider
    );
}

#[test]
fn a_composite_run_refuses_what_none_of_its_parts_asked_for() {
    let mut r = requester();
    let spec = pvl_patterns::ParallelSpec::new(
        "sha256",
        pvl_patterns::Split::Lines,
        2,
        pvl_patterns::Reduce::Concat,
    );
    let (trace, actions) = r
        .request(
            Planned::new(Request::Parallel {
                spec,
                input: Payload::Inline(b"a\nb\n".to_vec()),
            }),
            T0,
        )
        .unwrap();
    let shard = published(&actions).pop().unwrap();
    assert_eq!(shard.trace_id(), trace);
    // An offer in the run's trace for an intent none of its parts published.
    let wrong = offer_with_intent(&shard, ObjectId([6; 32]));
    assert_eq!(refused(&mut r, wrong, T0 + 20), Refusal::UnknownIntent);
    // A report about a task none of its parts awarded.
    let done = task_done(&key(ROGUE), &shard, ObjectId([4; 32]), T0 + 20);
    assert_eq!(refused(&mut r, done, T0 + 30), Refusal::TaskNotLive);
    // The shard's own offer is admitted.
    admitted(
        &mut r,
        offer(&shard, &key(PROVIDER), 1, 100, 9_900, T0 + 40),
        T0 + 41,
    );
}

/// An offer by the rogue in `shard`'s trace that answers `intent` instead.
fn offer_with_intent(shard: &SignedObject, intent: ObjectId) -> SignedObject {
    common::offer_with(shard, &key(ROGUE), T0 + 10, |o| o.intent = intent)
}
