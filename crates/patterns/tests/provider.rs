//! Provider-side contract-net: bidding, awards, concurrency, progress, done and receipts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pvl_patterns::{Action, BidDecision, Input, OfferPolicy, Provider, Refusal, Requester};
use pvl_protocol::{
    Body, Envelope, Keypair, Payload, PriceModel, SignedObject, Strategy, TaskStart,
};

fn provider(max_concurrent: usize) -> Provider {
    let mut policy = OfferPolicy::fixed(40, 1_000, 9_500);
    policy.resources = fitting_resources();
    Provider::new(key(11), max_concurrent).serve("sha256", policy)
}

/// A started requester with its intent, nonce `n`.
fn intent(n: u64) -> (Requester, SignedObject) {
    let mut s = spec(Strategy::LowestCost);
    s.nonce = n;
    s.min_offers = 1;
    let mut r = Requester::new(key(1), s);
    let i = published(&r.start(T0).unwrap()).pop().unwrap();
    (r, i)
}

fn award(
    intent: &SignedObject,
    offer: pvl_protocol::ObjectId,
    to: &Keypair,
    signer: &Keypair,
) -> SignedObject {
    Envelope {
        trace: Some(intent.trace_id()),
        parents: vec![intent.id()],
        signer: signer.public(),
        timestamp_ms: T0 + 200,
        body: Body::TaskStart(TaskStart {
            offer,
            provider: to.public(),
            label: "main".into(),
            input: Payload::Inline(b"hello".to_vec()),
            deadline_ms: None,
            quorum: None,
        }),
    }
    .sign(signer)
    .unwrap()
}

fn refusal(actions: &[Action]) -> Option<String> {
    sends(actions)
        .into_iter()
        .find_map(|(_, o)| match o.body() {
            Body::Event(e) if e.event_type == "award-refused" => Some(e.message.clone()),
            _ => None,
        })
}

#[test]
fn bids_only_when_it_can_meet_the_constraints() {
    let (_, i) = intent(1);
    let p = provider(1);
    let BidDecision::Bid(o) = p.evaluate(&i, T0 + 10) else {
        panic!()
    };
    assert_eq!((o.cost, o.eta_ms, o.reliability_bps), (40, 1_000, 9_500));
    assert_eq!(o.intent, i.id());

    let expensive =
        Provider::new(key(12), 1).serve("sha256", OfferPolicy::fixed(500, 1_000, 9_500));
    let BidDecision::Decline(why) = expensive.evaluate(&i, T0 + 10) else {
        panic!()
    };
    assert!(why.contains("budget"), "{why}");
    // No stated resources while the intent sets limits.
    let vague = Provider::new(key(12), 1).serve("sha256", OfferPolicy::fixed(10, 1_000, 9_500));
    assert!(matches!(
        vague.evaluate(&i, T0 + 10),
        BidDecision::Decline(_)
    ));
    let other = Provider::new(key(12), 1).serve("resize", OfferPolicy::fixed(10, 1_000, 9_500));
    let BidDecision::Decline(why) = other.evaluate(&i, T0 + 10) else {
        panic!()
    };
    assert!(why.contains("not served"), "{why}");
    // An expired intent gets no offer.
    assert!(matches!(
        p.evaluate(&i, T0 + 5_000),
        BidDecision::Decline(_)
    ));
}

#[test]
fn per_kib_price_and_eta() {
    let mut policy = OfferPolicy::fixed(0, 100, 9_000);
    policy.price = PriceModel::PerKib {
        base: 10,
        per_kib: 2,
    };
    policy.eta_per_kib_ms = 5;
    assert_eq!(policy.price_for(0), 10);
    assert_eq!(policy.price_for(1), 12);
    assert_eq!(policy.price_for(2_049), 16);
    assert_eq!(policy.eta_for(2_048), 110);
}

#[test]
fn an_intent_is_answered_once_with_a_recorded_offer() {
    let (_, i) = intent(1);
    let mut p = provider(4);
    let actions = p.on_object(i.clone(), T0 + 10).unwrap();
    let sent = sends(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].0,
        key(1).public(),
        "the offer goes to the requester"
    );
    assert_eq!(recorded(&actions).len(), 2, "intent and offer recorded");
    assert_eq!(sent[0].1.trace_id(), i.trace_id());
    assert!(
        p.on_object(i, T0 + 20).unwrap().is_empty(),
        "no second offer"
    );
    assert_eq!(p.open_offers(), 1);
}

#[test]
fn refuses_awards_it_never_offered_on() {
    let (_, i) = intent(1);
    let mut p = provider(4);
    let not_ours = |e: pvl_patterns::PatternError| match e {
        pvl_patterns::PatternError::Refused(r) => {
            assert_eq!(r.refusal, Refusal::NotYourOffer);
            r.detail
        }
        other => panic!("not an admission refusal: {other}"),
    };
    // An award naming this provider for an offer someone else made: refused unrecorded (the
    // sender learns why in the acknowledgement), nothing executed, nothing signed.
    let foreign = offer(&i, &key(13), 10, 100, 9_900, T0 + 50);
    let a = award(&i, foreign.id(), &key(11), &key(1));
    let why = not_ours(p.on_object(a.clone(), T0 + 200).unwrap_err());
    assert!(why.contains("never made"), "{why}");

    // Its own offer, but the award is addressed to another provider.
    let bid = sends(&p.on_object(i.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    let a = award(&i, bid.id(), &key(12), &key(1));
    let why = not_ours(p.on_object(a, T0 + 200).unwrap_err());
    assert!(why.contains("names provider"), "{why}");

    // Its own offer, but the award is signed by someone other than the requester.
    let a = award(&i, bid.id(), &key(11), &key(66));
    let why = not_ours(p.on_object(a, T0 + 200).unwrap_err());
    assert!(why.contains("requested by"), "{why}");

    // The genuine award is executed.
    let a = award(&i, bid.id(), &key(11), &key(1));
    let actions = p.on_object(a.clone(), T0 + 200).unwrap();
    assert!(refusal(&actions).is_none());
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, Action::Execute { task, .. } if *task == a.id()))
    );
    assert_eq!(p.active_tasks(), 1);
    assert_eq!(p.open_offers(), 0, "an offer is awarded once");
}

#[test]
fn an_offer_its_requester_refused_is_given_up() {
    let (_, i) = intent(1);
    let mut p = provider(4);
    let bid = sends(&p.on_object(i.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    assert_eq!(p.open_offers(), 1);
    // The requester's acknowledgement refused the offer: the window had closed.
    let refused = Input::after_refusal(
        bid.kind(),
        bid.trace_id(),
        bid.id(),
        key(1).public(),
        "intent-closed: the offer window has closed".into(),
    )
    .unwrap();
    assert!(p.handle(refused.clone(), T0 + 20).unwrap().is_empty());
    assert_eq!(p.open_offers(), 0, "given up at once, not when it expires");
    // Told twice, nothing more happens; an award of it is now refused.
    assert!(p.handle(refused, T0 + 21).unwrap().is_empty());
    let a = award(&i, bid.id(), &key(11), &key(1));
    match p.on_object(a, T0 + 200).unwrap_err() {
        pvl_patterns::PatternError::Refused(r) => assert_eq!(r.refusal, Refusal::NotYourOffer),
        other => panic!("not an admission refusal: {other}"),
    }
    assert_eq!(p.active_tasks(), 0);
}

#[test]
fn respects_max_concurrent_tasks() {
    let mut p = provider(1);
    let (_, i1) = intent(1);
    let (_, i2) = intent(2);
    let bid = sends(&p.on_object(i1.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    let task = award(&i1, bid.id(), &key(11), &key(1));
    p.on_object(task.clone(), T0 + 20).unwrap();
    assert_eq!(p.active_tasks(), 1);
    // The only slot is taken: no bid on the second intent.
    let BidDecision::Decline(why) = p.evaluate(&i2, T0 + 30) else {
        panic!()
    };
    assert!(why.contains("no free slot"), "{why}");
    assert!(p.on_object(i2.clone(), T0 + 30).unwrap().is_empty());
    // Progress and completion free the slot.
    let progress = p
        .report_progress(task.id(), Some(5_000), "half", T0 + 40)
        .unwrap();
    assert_eq!(sends(&progress)[0].0, key(1).public());
    let done = p
        .on_executed(task.id(), Ok(Payload::Inline(b"out".to_vec())), T0 + 50)
        .unwrap();
    let kinds: Vec<_> = sends(&done).iter().map(|(_, o)| o.kind()).collect();
    assert_eq!(
        kinds,
        vec![pvl_protocol::Kind::TaskDone, pvl_protocol::Kind::Receipt]
    );
    assert_eq!(p.active_tasks(), 0);
    assert!(matches!(p.evaluate(&i2, T0 + 60), BidDecision::Bid(_)));
    assert!(
        p.on_executed(task.id(), Err("again".into()), T0 + 70)
            .is_err()
    );
}

#[test]
fn an_award_beyond_capacity_is_reported_as_a_failed_task() {
    let mut p = provider(1);
    let (_, i1) = intent(1);
    let (_, i2) = intent(2);
    // Bid on both while a slot is free, then both are awarded.
    let b1 = sends(&p.on_object(i1.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    let b2 = sends(&p.on_object(i2.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    p.on_object(award(&i1, b1.id(), &key(11), &key(1)), T0 + 20)
        .unwrap();
    let actions = p
        .on_object(award(&i2, b2.id(), &key(11), &key(1)), T0 + 20)
        .unwrap();
    let done = sends(&actions)
        .into_iter()
        .find_map(|(_, o)| match o.body() {
            Body::TaskDone(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(done.status, pvl_protocol::TaskStatus::Failed(ref r) if r.contains("no free slot"))
    );
    assert_eq!(p.active_tasks(), 1);
}

#[test]
fn a_direct_round_between_requester_and_provider_state_machines() {
    let (mut r, i) = intent(3);
    let mut p = provider(2);
    let offer = sends(&p.on_object(i, T0 + 10).unwrap())[0].1.clone();
    // k = 1: the offer closes the window at once.
    let start = task_starts(&r.on_object(offer, T0 + 20).unwrap())
        .pop()
        .unwrap();
    let task = start.id();
    p.on_object(start, T0 + 30).unwrap();
    let progress = sends(
        &p.report_progress(task, Some(2_500), "working", T0 + 40)
            .unwrap(),
    );
    assert!(r.on_object(progress[0].1.clone(), T0 + 41).unwrap().len() == 1);
    let reports = sends(
        &p.on_executed(task, Ok(Payload::Inline(b"digest".to_vec())), T0 + 90)
            .unwrap(),
    );
    // The receipt may overtake the done: deliver it first.
    let mut actions = r.on_object(reports[1].1.clone(), T0 + 95).unwrap();
    actions.extend(r.on_object(reports[0].1.clone(), T0 + 96).unwrap());
    let Some(pvl_patterns::Outcome::Completed(c)) = finished(&actions) else {
        panic!("{actions:?}")
    };
    let cosigned = c.receipt.unwrap();
    assert!(
        SignedObject::decode(cosigned.bytes())
            .unwrap()
            .is_countersigned()
    );
    // The provider records its countersigned receipt; an unsigned copy is refused.
    let back = sends(&actions)
        .into_iter()
        .find(|(_, o)| o.is_countersigned())
        .unwrap();
    assert_eq!(back.0, key(11).public());
    assert_eq!(p.on_object(back.1, T0 + 100).unwrap().len(), 1);
    assert!(p.on_object(reports[1].1.clone(), T0 + 100).is_err());
}

#[test]
fn a_report_from_the_wrong_signer_is_refused() {
    let (mut r, i) = intent(4);
    let mut p = provider(2);
    let offer = sends(&p.on_object(i.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    let start = task_starts(&r.on_object(offer, T0 + 20).unwrap())
        .pop()
        .unwrap();
    // Another key claims the task is done.
    let forged = Envelope {
        trace: Some(i.trace_id()),
        parents: vec![start.id()],
        signer: key(66).public(),
        timestamp_ms: T0 + 30,
        body: Body::TaskDone(pvl_protocol::TaskDone {
            task: start.id(),
            status: pvl_protocol::TaskStatus::Ok,
            output: None,
            started_at_ms: T0 + 25,
            finished_at_ms: T0 + 30,
        }),
    }
    .sign(&key(66))
    .unwrap();
    assert!(matches!(
        r.on_object(forged, T0 + 31),
        Err(pvl_patterns::PatternError::WrongSigner { .. })
    ));
}

/// A requester with an awarded task at provider 11: (requester, provider, intent, task start).
fn awarded(n: u64) -> (Requester, Provider, SignedObject, SignedObject) {
    let (mut r, i) = intent(n);
    let mut p = provider(2);
    let offer = sends(&p.on_object(i.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    let start = task_starts(&r.on_object(offer, T0 + 20).unwrap())
        .pop()
        .unwrap();
    p.handle(pvl_patterns::Input::Received(start.clone()), T0 + 30)
        .unwrap();
    (r, p, i, start)
}

#[test]
fn done_without_a_receipt_completes_after_the_receipt_wait() {
    let (mut r, mut p, _, start) = awarded(5);
    let reports = sends(
        &p.handle(
            pvl_patterns::Input::Executed {
                task: start.id(),
                result: Ok(Payload::Inline(b"x".to_vec())),
            },
            T0 + 100,
        )
        .unwrap(),
    );
    let actions = r.on_object(reports[0].1.clone(), T0 + 110).unwrap();
    let wait = timers(&actions);
    assert_eq!(
        wait,
        vec![(
            T0 + 5_110,
            pvl_patterns::TimerKind::ReceiptWait { task: start.id() }
        )]
    );
    let token = pvl_patterns::TimerToken {
        trace: r.trace().unwrap(),
        scope: r.scope().unwrap(),
        kind: wait[0].1,
    };
    let actions = r.on_timer(token, T0 + 5_110).unwrap();
    let Some(pvl_patterns::Outcome::Completed(c)) = finished(&actions) else {
        panic!()
    };
    assert!(c.receipt.is_none());
    assert_eq!(c.output, Some(Payload::Inline(b"x".to_vec())));
    assert_eq!(events_in(&recorded(&actions), "receipt-missing").len(), 1);
}

#[test]
fn a_receipt_that_does_not_match_the_done_is_refused() {
    let (mut r, mut p, i, start) = awarded(6);
    let reports = sends(
        &p.on_executed(start.id(), Ok(Payload::Inline(b"x".to_vec())), T0 + 100)
            .unwrap(),
    );
    let Body::Receipt(mut bad) = reports[1].1.body().clone() else {
        panic!()
    };
    bad.cost += 1; // charges more than offered
    let forged = Envelope {
        trace: Some(i.trace_id()),
        parents: vec![reports[0].1.id()],
        signer: key(11).public(),
        timestamp_ms: T0 + 101,
        body: Body::Receipt(bad),
    }
    .sign(&key(11))
    .unwrap();
    r.on_object(reports[0].1.clone(), T0 + 110).unwrap();
    let actions = r.on_object(forged, T0 + 111).unwrap();
    // The only bidder is out: re-publication.
    let moved = events_in(&recorded(&actions), "reassigned");
    assert!(
        attr(&moved[0], "reason")
            .unwrap()
            .contains("invalid receipt"),
        "{moved:?}"
    );
    assert_eq!(published(&actions).len(), 1, "the intent is re-published");
    assert_eq!(r.stats().rounds, 2);
}

#[test]
fn the_deadline_ends_a_task_that_never_finishes() {
    let mut s = spec(Strategy::LowestCost);
    s.constraints.deadline_ms = Some(T0 + 4_000);
    s.grace_ms = 30_000;
    s.min_offers = 1;
    let mut r = Requester::new(key(1), s);
    let i = published(&r.start(T0).unwrap()).pop().unwrap();
    let mut p = provider(2);
    let offer = sends(&p.on_object(i, T0 + 10).unwrap())[0].1.clone();
    let actions = r.on_object(offer, T0 + 20).unwrap();
    let watchdog = timers(&actions).pop().unwrap();
    assert_eq!(
        watchdog.0,
        T0 + 4_000,
        "the watchdog is capped by the deadline"
    );
    let token = pvl_patterns::TimerToken {
        trace: r.trace().unwrap(),
        scope: r.scope().unwrap(),
        kind: watchdog.1,
    };
    let actions = r.on_timer(token, T0 + 4_000).unwrap();
    let Some(pvl_patterns::Outcome::Failed(f)) = finished(&actions) else {
        panic!("{actions:?}")
    };
    assert_eq!(f.reason, pvl_patterns::FailureReason::DeadlinePassed);
}

#[test]
fn a_refused_award_is_reassigned_at_once() {
    // Two bidders; the requester's winner (12, cheaper) refuses because it lost its offer state.
    let mut s = spec(Strategy::LowestCost);
    s.nonce = 9;
    let mut r = Requester::new(key(1), s);
    let i = published(&r.start(T0).unwrap()).pop().unwrap();
    let cheap = offer(&i, &key(12), 10, 1_000, 9_500, T0 + 10);
    let mut p = provider(2);
    let fair = sends(&p.on_object(i.clone(), T0 + 10).unwrap())[0]
        .1
        .clone();
    r.on_object(cheap, T0 + 20).unwrap();
    r.on_object(fair.clone(), T0 + 20).unwrap();
    let token = pvl_patterns::TimerToken {
        trace: r.trace().unwrap(),
        scope: r.scope().unwrap(),
        kind: pvl_patterns::TimerKind::OfferWindow { round: 1 },
    };
    let start = task_starts(&r.on_timer(token, T0 + 1_000).unwrap())
        .pop()
        .unwrap();
    // Provider 12 cannot honour the award and says so with a signed `award-refused` event.
    let refused = Envelope {
        trace: Some(start.trace_id()),
        parents: vec![start.id()],
        signer: key(12).public(),
        timestamp_ms: T0 + 1_010,
        body: Body::Event(pvl_protocol::Event {
            event_type: "award-refused".into(),
            about: vec![start.id()],
            message: "award refused: no longer able".into(),
            attrs: vec![],
        }),
    }
    .sign(&key(12))
    .unwrap();
    let actions = r.on_object(refused, T0 + 1_020).unwrap();
    let next = task_starts(&actions).pop().unwrap();
    let Body::TaskStart(b) = next.body() else {
        panic!()
    };
    assert_eq!(b.offer, fair.id());
    let moved = events_in(&recorded(&actions), "reassigned");
    assert!(
        attr(&moved[0], "reason")
            .unwrap()
            .contains("refused the award")
    );
}

/// A reject by `signer` naming `offers` (the first with `code`, the others cancelled).
fn reject_of(
    intent: &SignedObject,
    offers: &[pvl_protocol::ObjectId],
    code: pvl_protocol::RejectCode,
    signer: &Keypair,
) -> SignedObject {
    let more = offers[1..]
        .iter()
        .map(|o| pvl_protocol::RejectedOffer {
            offer: *o,
            code: pvl_protocol::RejectCode::Cancelled,
            detail: "cancelled".into(),
        })
        .collect();
    Envelope {
        trace: Some(intent.trace_id()),
        parents: vec![intent.id()],
        signer: signer.public(),
        timestamp_ms: T0 + 300,
        body: Body::Reject(pvl_protocol::Reject {
            offer: offers[0],
            code,
            detail: "rejected".into(),
            more,
        }),
    }
    .sign(signer)
    .unwrap()
}

#[test]
fn a_reject_naming_several_offers_frees_ours_like_a_reject_of_one() {
    use pvl_protocol::RejectCode;
    let (_, i) = intent(1);
    let mut p = provider(1);
    let offer = sends(&p.on_object(i.clone(), T0 + 10).unwrap())[0].1.id();
    assert_eq!(p.open_offers(), 1);
    let stranger = pvl_protocol::ObjectId([9; 32]);

    // Our offer is the second entry (code "cancelled"): it frees the slot, as a reject of our
    // offer alone would.
    let r = reject_of(&i, &[stranger, offer], RejectCode::NotSelected, &key(1));
    let actions = p.on_object(r.clone(), T0 + 300).unwrap();
    assert_eq!(recorded(&actions), vec![r]);
    assert_eq!(p.open_offers(), 0, "our entry (cancelled) freed the offer");

    let (_, i2) = intent(2);
    let offer2 = sends(&p.on_object(i2.clone(), T0 + 10).unwrap())[0].1.id();
    let r = reject_of(&i2, &[offer2, stranger], RejectCode::NotSelected, &key(1));
    p.on_object(r, T0 + 300).unwrap();
    // Our offer is the first entry, "not selected": it stays open (it may still be awarded).
    assert_eq!(p.open_offers(), 1, "not selected: still open");

    // Only the requester of our offer may reject it, in any entry.
    let forged = reject_of(&i2, &[stranger, offer2], RejectCode::Expired, &key(2));
    assert!(p.on_object(forged, T0 + 300).is_err());
    assert_eq!(p.open_offers(), 1);
    // A reject naming none of ours is recorded as evidence and changes nothing.
    let other = reject_of(&i2, &[stranger], RejectCode::Expired, &key(1));
    assert_eq!(
        recorded(&p.on_object(other.clone(), T0 + 300).unwrap()),
        vec![other]
    );
    assert_eq!(p.open_offers(), 1);
}

#[test]
fn a_provider_outside_the_audience_declines() {
    let i = pvl_protocol::fixtures::sampled_intent().unwrap();
    let Body::Intent(body) = i.body() else {
        unreachable!()
    };
    let audience = body.audience.unwrap();
    let now = pvl_protocol::fixtures::T0 + 2_010;
    let (mut inside, mut outside) = (0, 0);
    for seed in 11..60u8 {
        let p = Provider::new(key(seed), 1).serve("sha256", OfferPolicy::fixed(10, 100, 9_500));
        let decision = p.evaluate(&i, now);
        if audience.includes(&i.id(), &key(seed).public()) {
            assert!(matches!(decision, BidDecision::Bid(_)), "{decision:?}");
            inside += 1;
        } else {
            let BidDecision::Decline(why) = decision else {
                panic!("{decision:?}")
            };
            assert!(why.contains("audience"), "{why}");
            outside += 1;
        }
    }
    assert!(inside > 0 && outside > 0, "{inside} in, {outside} out");
}

#[test]
fn at_the_open_offer_limit_a_standby_offer_gives_way_to_a_new_intent() {
    use pvl_protocol::RejectCode;
    let mut p = provider(8).with_max_open_offers(2);
    let (_, i1) = intent(1);
    let (_, i2) = intent(2);
    let (_, i3) = intent(3);
    let offer1 = sends(&p.on_object(i1.clone(), T0 + 10).unwrap())[0].1.id();
    let offer2 = sends(&p.on_object(i2.clone(), T0 + 10).unwrap())[0].1.id();
    assert_eq!(p.open_offers(), 2);

    // Two offers waiting for their selection: the limit is reached, a third intent is declined.
    assert!(sends(&p.on_object(i3.clone(), T0 + 20).unwrap()).is_empty());
    assert!(matches!(
        p.evaluate(&i3, T0 + 20),
        BidDecision::Decline(reason) if reason.contains("outstanding")
    ));

    // Offer 1 is passed over ("not selected"): a standby, which gives way to a new offer.
    p.on_object(
        reject_of(&i1, &[offer1], RejectCode::NotSelected, &key(1)),
        T0 + 300,
    )
    .unwrap();
    assert_eq!(
        p.open_offers(),
        2,
        "a standby stays open until room is needed"
    );
    let (_, i4) = intent(4);
    let offer4 = sends(&p.on_object(i4.clone(), T0 + 310).unwrap());
    assert_eq!(offer4.len(), 1, "the new intent gets an offer");
    assert_eq!(p.open_offers(), 2, "the standby offer was given up for it");

    // The given-up offer can no longer be awarded; the pending one can.
    let late = award(&i1, offer1, &key(11), &key(1));
    let refused = p.on_object(late, T0 + 400).unwrap_err().to_string();
    assert!(refused.contains("no longer holds"), "{refused}");
    let actions = p
        .on_object(award(&i2, offer2, &key(11), &key(1)), T0 + 400)
        .unwrap();
    assert!(
        actions.iter().any(|a| matches!(a, Action::Execute { .. })),
        "{actions:?}"
    );
}
