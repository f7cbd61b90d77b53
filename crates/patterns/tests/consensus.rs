//! Consensus rounds: committee approval before execution, through the in-memory simulation
//! (real signatures, wire bytes decoded on delivery, a simulated clock) and against the
//! state machines directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pvl_patterns::consensus::{Ballot, Decision, ProposalTerms, Stance};
use pvl_patterns::sim::{ExecPlan, Executor, Sim, VoterPlan};
use pvl_patterns::{
    Action, FailureReason, OfferPolicy, Outcome, Provider, RequestSpec, Requester, RulePolicy,
    TimerKind, TimerToken, VoteDecision, Voter, verify_certificate,
};
use pvl_protocol::{
    Body, Committee, Envelope, Event, Intent, Kind, ObjectId, Payload, PublicKey, QuorumCert,
    SignedObject, Strategy, TaskStart, Vote,
};

const MEMBERS: [u8; 5] = [21, 22, 23, 24, 25];

fn committee(threshold: u32) -> Committee {
    Committee {
        members: MEMBERS.iter().map(|s| key(*s).public()).collect(),
        threshold,
    }
}

/// Providers 11 (cost 30) and 12 (cost 50).
fn providers() -> Vec<Provider> {
    [(11u8, 30u64), (12, 50)]
        .into_iter()
        .map(|(seed, price)| {
            let mut policy = OfferPolicy::fixed(price, 1_000, 9_500);
            policy.resources = fitting_resources();
            Provider::new(key(seed), 2).serve("sha256", policy)
        })
        .collect()
}

fn hashing() -> Executor {
    Box::new(|_, _, _, input| ExecPlan::Finish {
        after_ms: 300,
        result: Ok(Payload::Inline(
            pvl_protocol::sha256(input.inline().unwrap_or_default()).to_vec(),
        )),
        progress: false,
    })
}

/// Voters for the five members; those in `rejecting` reject everything costing more than 10.
fn voters(rejecting: &[u8]) -> Vec<Voter> {
    MEMBERS
        .iter()
        .map(|s| {
            let policy = if rejecting.contains(s) {
                RulePolicy {
                    max_cost: Some(10),
                    ..RulePolicy::default()
                }
            } else {
                RulePolicy::default()
            };
            Voter::new(key(*s), policy)
        })
        .collect()
}

fn consensus_spec(threshold: u32) -> RequestSpec {
    let mut spec = spec(Strategy::LowestCost);
    spec.committee = Some(committee(threshold));
    spec.vote_round_ms = 500;
    spec.max_vote_rounds = 2;
    spec
}

fn sim(spec: RequestSpec, voters: Vec<Voter>, plan: VoterPlan) -> Sim {
    Sim::new(
        Requester::new(key(1), spec),
        key(1).public(),
        providers(),
        10,
        hashing(),
    )
    .with_voters(voters, plan)
}

fn everyone_answers() -> VoterPlan {
    Box::new(|_, _| true)
}

fn distinct(objects: &[SignedObject], kind: Kind) -> Vec<SignedObject> {
    let mut seen = std::collections::HashSet::new();
    objects
        .iter()
        .filter(|o| o.kind() == kind && seen.insert(o.id()))
        .cloned()
        .collect()
}

fn events(objects: &[SignedObject], event_type: &str) -> Vec<Event> {
    distinct(objects, Kind::Event)
        .into_iter()
        .filter_map(|o| match o.body() {
            Body::Event(e) if e.event_type == event_type => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn quorum_of(start: &SignedObject) -> SignedObject {
    let Body::TaskStart(t) = start.body() else {
        panic!("not a task start")
    };
    (**t.quorum.as_ref().expect("a quorum certificate")).clone()
}

fn cert_parts(cert: &SignedObject) -> (pvl_protocol::Proposal, Vec<PublicKey>) {
    let Body::QuorumCert(q) = cert.body() else {
        panic!("not a certificate")
    };
    let voters = q.votes.iter().map(SignedObject::signer).collect();
    (q.proposal_body().unwrap().clone(), voters)
}

#[test]
fn five_members_threshold_four_pass_with_four_approvals() {
    // Member 25 rejects (cost 30 > 10): four approvals remain, exactly the threshold.
    let mut s = sim(consensus_spec(4), voters(&[25]), everyone_answers());
    let outcome = s.run(T0, T0 + 60_000).cloned().unwrap();
    let Outcome::Completed(c) = outcome else {
        panic!("{outcome:?} errors {:?}", s.errors)
    };
    assert_eq!(c.provider, key(11).public());
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let starts = distinct(&s.recorded, Kind::TaskStart);
    assert_eq!(starts.len(), 1);
    let cert = quorum_of(&starts[0]);
    let (proposal, cert_voters) = cert_parts(&cert);
    assert_eq!(proposal.round, 1);
    assert_eq!(cert_voters.len(), 4);
    assert!(!cert_voters.contains(&key(25).public()));
    // The certificate travelled inside the TaskStart and still verifies for this award.
    let Body::TaskStart(t) = starts[0].body() else {
        unreachable!()
    };
    verify_certificate(&cert, &committee(4), t.offer, t.input.sha256()).unwrap();
    // The terms the members approved are the award that ran.
    let terms = ProposalTerms::from_proposal(&proposal).unwrap();
    assert_eq!(terms.offer, c.offer);
    assert_eq!(terms.provider, c.provider);
    assert_eq!(terms.cost, 30);
    assert_eq!(terms.input_sha256, pvl_protocol::sha256(b"hello"));
    // The intent carried the committee; proposal, votes and certificate are in the trace.
    let intents = distinct(&s.recorded, Kind::Intent);
    let Body::Intent(i) = intents[0].body() else {
        unreachable!()
    };
    assert_eq!(i.committee, Some(committee(4)));
    assert_eq!(distinct(&s.recorded, Kind::Proposal).len(), 1);
    assert_eq!(distinct(&s.recorded, Kind::QuorumCert).len(), 1);
    assert!(distinct(&s.recorded, Kind::Vote).len() >= 4);
}

#[test]
fn two_rejections_fail_the_intent_with_every_reason() {
    let mut s = sim(consensus_spec(4), voters(&[24, 25]), everyone_answers());
    let outcome = s.run(T0, T0 + 60_000).cloned().unwrap();
    let Outcome::Failed(f) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(f.reason, FailureReason::RejectedByCommittee);
    assert_eq!(f.reason.name(), "rejected-by-committee");
    assert!(
        f.detail.contains("cost 30 is above the policy maximum 10"),
        "{}",
        f.detail
    );
    assert!(
        distinct(&s.recorded, Kind::TaskStart).is_empty(),
        "nothing may run"
    );
    let rejected = events(&s.recorded, "consensus-rejected");
    assert_eq!(rejected.len(), 1);
    let member_attrs: Vec<&(String, String)> = rejected[0]
        .attrs
        .iter()
        .filter(|(k, _)| k.starts_with("member:"))
        .collect();
    assert_eq!(member_attrs.len(), 5, "every member's stance is listed");
    let rejecting = member_attrs
        .iter()
        .filter(|(_, v)| v.starts_with("reject:"))
        .count();
    assert_eq!(rejecting, 2);
}

#[test]
fn silent_members_time_a_round_out_and_the_next_round_decides() {
    let silent = [key(24).public(), key(25).public()];
    let plan: VoterPlan = Box::new(move |member, round| round > 1 || !silent.contains(member));
    let mut s = sim(consensus_spec(4), voters(&[]), plan);
    let outcome = s.run(T0, T0 + 60_000).cloned().unwrap();
    assert!(outcome.is_completed(), "{outcome:?} {:?}", s.errors);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let timeouts = events(&s.recorded, "round-timeout");
    assert_eq!(timeouts.len(), 1);
    assert!(timeouts[0].attrs.contains(&("round".into(), "1".into())));
    assert!(
        timeouts[0]
            .attrs
            .contains(&("approvals".into(), "3".into()))
    );
    let proposals = distinct(&s.recorded, Kind::Proposal);
    assert_eq!(proposals.len(), 2);
    let cert = quorum_of(&distinct(&s.recorded, Kind::TaskStart)[0]);
    let (proposal, voters) = cert_parts(&cert);
    assert_eq!(proposal.round, 2);
    assert_eq!(voters.len(), 4);
}

#[test]
fn always_silent_members_end_in_no_quorum() {
    let silent = [key(24).public(), key(25).public()];
    let plan: VoterPlan = Box::new(move |member, _| !silent.contains(member));
    let mut s = sim(consensus_spec(4), voters(&[]), plan);
    let outcome = s.run(T0, T0 + 60_000).cloned().unwrap();
    let Outcome::Failed(f) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(f.reason, FailureReason::NoQuorum);
    assert_eq!(events(&s.recorded, "round-timeout").len(), 2);
    assert!(distinct(&s.recorded, Kind::TaskStart).is_empty());
}

// ----- the ballot alone ------------------------------------------------------------------

fn terms() -> ProposalTerms {
    ProposalTerms {
        capability: "sha256".into(),
        provider: key(11).public(),
        offer: ObjectId([7; 32]),
        cost: 30,
        eta_ms: 1_000,
        input_sha256: pvl_protocol::sha256(b"hello"),
    }
}

/// A ballot in the trace of a sample intent, started at T0; returns it and its proposal.
fn started_ballot() -> (Ballot, SignedObject) {
    let intent = pvl_protocol::fixtures::intent().unwrap();
    let mut ballot = Ballot::new(
        key(1),
        intent.trace_id(),
        vec![intent.id()],
        terms(),
        committee(4),
        500,
        2,
    )
    .unwrap();
    let actions = ballot.start(T0).unwrap();
    let proposal = recorded(&actions).remove(0);
    assert_eq!(
        sends(&actions).len(),
        5,
        "the proposal goes to every member"
    );
    assert_eq!(timers(&actions).len(), 1);
    (ballot, proposal)
}

fn vote(member: u8, proposal: &SignedObject, approve: bool, reason: &str) -> SignedObject {
    let Body::Proposal(p) = proposal.body() else {
        panic!("not a proposal")
    };
    Envelope {
        trace: Some(proposal.trace_id()),
        parents: vec![proposal.id()],
        signer: key(member).public(),
        timestamp_ms: T0 + 1,
        body: Body::Vote(Vote {
            proposal: proposal.id(),
            round: p.round,
            approve,
            reason: reason.into(),
        }),
    }
    .sign(&key(member))
    .unwrap()
}

#[test]
fn an_equivocating_member_is_caught_and_not_counted() {
    let (mut ballot, proposal) = started_ballot();
    let yes = vote(21, &proposal, true, "fine");
    let no = vote(21, &proposal, false, "changed my mind");
    assert!(recorded(&ballot.on_vote(yes.clone(), T0 + 10).unwrap()).contains(&yes));
    let actions = ballot.on_vote(no.clone(), T0 + 11).unwrap();
    let rec = recorded(&actions);
    assert!(rec.contains(&no), "the second vote is kept as evidence");
    let evidence = rec
        .iter()
        .find_map(|o| match o.body() {
            Body::Event(e) if e.event_type == "equivocation" => Some(e.clone()),
            _ => None,
        })
        .expect("an equivocation event");
    assert!(evidence.about.contains(&yes.id()) && evidence.about.contains(&no.id()));
    assert!(
        evidence
            .attrs
            .contains(&("member".into(), key(21).public().to_string()))
    );
    // 22, 23, 24 approve: with 21 that would be 4, but 21 does not count.
    for m in [22, 23, 24] {
        ballot
            .on_vote(vote(m, &proposal, true, "ok"), T0 + 20)
            .unwrap();
    }
    assert!(ballot.decision().is_none(), "{:?}", ballot.decision());
    ballot
        .on_vote(vote(25, &proposal, true, "ok"), T0 + 30)
        .unwrap();
    let Some(Decision::Approved { certificate, round }) = ballot.decision() else {
        panic!("{:?}", ballot.decision())
    };
    assert_eq!(*round, 1);
    let (_, voters) = cert_parts(certificate);
    assert_eq!(voters.len(), 4);
    assert!(!voters.contains(&key(21).public()));
}

#[test]
fn an_equivocator_can_make_the_threshold_unreachable() {
    let (mut ballot, proposal) = started_ballot();
    ballot
        .on_vote(vote(21, &proposal, false, "no"), T0 + 1)
        .unwrap();
    ballot
        .on_vote(vote(22, &proposal, true, "yes"), T0 + 2)
        .unwrap();
    assert!(ballot.decision().is_none());
    ballot
        .on_vote(vote(22, &proposal, false, "no"), T0 + 3)
        .unwrap();
    let Some(Decision::Rejected { reasons, .. }) = ballot.decision() else {
        panic!("{:?}", ballot.decision())
    };
    let stances: Vec<Stance> = reasons.iter().map(|r| r.stance).collect();
    assert_eq!(
        stances,
        vec![
            Stance::Reject,
            Stance::Equivocated,
            Stance::Silent,
            Stance::Silent,
            Stance::Silent
        ]
    );
}

#[test]
fn late_votes_of_an_old_round_are_recorded_and_ignored() {
    let (mut ballot, first) = started_ballot();
    let token = TimerToken {
        trace: first.trace_id(),
        scope: first.trace_id(),
        kind: TimerKind::VoteRound {
            offer: terms().offer,
            round: 1,
        },
    };
    // Too early: nothing happens.
    assert!(ballot.on_timer(token, T0 + 100).unwrap().is_empty());
    let actions = ballot.on_timer(token, T0 + 500).unwrap();
    assert_eq!(ballot.round(), 2);
    let second = ballot.proposal().unwrap().clone();
    assert!(recorded(&actions).contains(&second));
    for m in [21, 22, 23, 24] {
        let late = vote(m, &first, true, "late");
        let actions = ballot.on_vote(late.clone(), T0 + 600).unwrap();
        assert_eq!(recorded(&actions), vec![late]);
    }
    assert!(ballot.decision().is_none(), "round-1 votes do not count");
    // A vote from outside the committee, or for an unknown proposal, is refused.
    assert!(
        ballot
            .on_vote(vote(30, &second, true, "me too"), T0 + 600)
            .is_err()
    );
    for m in [21, 22, 23, 24] {
        ballot
            .on_vote(vote(m, &second, true, "ok"), T0 + 700)
            .unwrap();
    }
    assert!(matches!(
        ballot.decision(),
        Some(Decision::Approved { round: 2, .. })
    ));
}

// ----- the voter -------------------------------------------------------------------------

#[test]
fn a_voter_answers_a_proposal_once_and_only_as_a_member() {
    let (_, proposal) = started_ballot();
    let mut voter = Voter::new(key(21), |t: &ProposalTerms, _: &pvl_protocol::Proposal| {
        VoteDecision::approve(format!("cost {} is fine", t.cost))
    });
    let actions = voter.on_proposal(proposal.clone(), T0 + 10).unwrap();
    let rec = recorded(&actions);
    assert_eq!(rec.len(), 2);
    assert_eq!(rec[0], proposal);
    let (to, vote) = sends(&actions).remove(0);
    assert_eq!(to, key(1).public());
    let Body::Vote(v) = vote.body() else {
        panic!("not a vote")
    };
    assert!(v.approve && v.reason == "cost 30 is fine");
    // Again: the same vote, nothing new recorded.
    let again = voter.on_proposal(proposal.clone(), T0 + 20).unwrap();
    assert!(recorded(&again).is_empty());
    assert_eq!(sends(&again), vec![(key(1).public(), vote)]);
    // Not a member; voting closed.
    let mut outsider = Voter::new(key(30), RulePolicy::default());
    assert!(outsider.on_proposal(proposal.clone(), T0 + 10).is_err());
    let mut late = Voter::new(key(22), RulePolicy::default());
    assert!(late.on_proposal(proposal, T0 + 10_000).is_err());
}

// ----- the provider refuses awards without a valid certificate -------------------------

struct Setup {
    provider: Provider,
    intent: SignedObject,
    offer: SignedObject,
}

/// An intent with a committee of five (threshold 4) and provider 11's offer for it.
fn setup() -> Setup {
    let intent = Envelope {
        trace: None,
        parents: vec![],
        signer: key(1).public(),
        timestamp_ms: T0,
        body: Body::Intent(Intent {
            capability: "sha256".into(),
            input: Payload::Inline(b"hello".to_vec()),
            constraints: constraints(),
            strategy: Strategy::LowestCost,
            pattern: pvl_protocol::PatternHint::Consensus,
            committee: Some(committee(4)),
            nonce: 1,
            expires_at_ms: T0 + 1_000,
            audience: None,
        }),
    }
    .sign(&key(1))
    .unwrap();
    let mut provider = providers().remove(0);
    let actions = provider.on_object(intent.clone(), T0 + 10).unwrap();
    let (_, offer) = sends(&actions).remove(0);
    Setup {
        provider,
        intent,
        offer,
    }
}

/// A certificate signed by the requester over `members` votes for a proposal of `offer` with
/// `committee`, on `input`.
fn certificate(
    intent: &SignedObject,
    offer: ObjectId,
    committee: &Committee,
    members: &[u8],
    input: &[u8],
) -> SignedObject {
    certificate_by(1, intent, offer, committee, members, input)
}

/// [`certificate`] with the proposal signed by `proposer`.
fn certificate_by(
    proposer: u8,
    intent: &SignedObject,
    offer: ObjectId,
    committee: &Committee,
    members: &[u8],
    input: &[u8],
) -> SignedObject {
    let terms = ProposalTerms {
        offer,
        input_sha256: pvl_protocol::sha256(input),
        ..terms()
    };
    let proposal = Envelope {
        trace: Some(intent.trace_id()),
        parents: vec![offer],
        signer: key(proposer).public(),
        timestamp_ms: T0 + 20,
        body: Body::Proposal(pvl_protocol::Proposal {
            subject: offer,
            round: 1,
            committee: committee.clone(),
            action: terms.to_action(),
            deadline_ms: T0 + 1_000,
        }),
    }
    .sign(&key(proposer))
    .unwrap();
    let votes = members
        .iter()
        .map(|m| vote(*m, &proposal, true, "ok"))
        .collect();
    Envelope {
        trace: Some(intent.trace_id()),
        parents: vec![proposal.id()],
        signer: key(1).public(),
        timestamp_ms: T0 + 30,
        body: Body::QuorumCert(QuorumCert {
            proposal: Box::new(proposal),
            votes,
        }),
    }
    .sign(&key(1))
    .unwrap()
}

fn award(setup: &Setup, quorum: Option<SignedObject>) -> SignedObject {
    Envelope {
        trace: Some(setup.intent.trace_id()),
        parents: vec![setup.offer.id()],
        signer: key(1).public(),
        timestamp_ms: T0 + 40,
        body: Body::TaskStart(TaskStart {
            offer: setup.offer.id(),
            provider: key(11).public(),
            label: "main".into(),
            input: Payload::Inline(b"hello".to_vec()),
            deadline_ms: None,
            quorum: quorum.map(Box::new),
        }),
    }
    .sign(&key(1))
    .unwrap()
}

/// Feeds the award; returns the refusal reason, or `None` if the provider executes.
fn refusal(setup: &mut Setup, quorum: Option<SignedObject>) -> Option<String> {
    let start = award(setup, quorum);
    let actions = setup.provider.on_object(start.clone(), T0 + 50).unwrap();
    if actions.iter().any(|a| matches!(a, Action::Execute { .. })) {
        return None;
    }
    assert!(recorded(&actions).contains(&start), "the award is recorded");
    let (to, event) = sends(&actions).remove(0);
    assert_eq!(to, key(1).public());
    let Body::Event(e) = event.body() else {
        panic!("not an event: {event:?}")
    };
    assert_eq!(e.event_type, "award-refused");
    Some(e.message.clone())
}

#[test]
fn the_provider_refuses_awards_without_a_valid_certificate() {
    let mut s = setup();
    let (intent, offer) = (s.intent.clone(), s.offer.id());
    let missing = refusal(&mut s, None).unwrap();
    assert!(missing.contains("no quorum certificate"), "{missing}");

    // Short: three approvals under a committee with threshold 3 (not the intent's).
    let short = certificate(&intent, offer, &committee(3), &[21, 22, 23], b"hello");
    let why = refusal(&mut s, Some(short)).unwrap();
    assert!(why.contains("committee"), "{why}");

    // Forged: the attacker's own committee of keys 31..35 approves.
    let forged_committee = Committee {
        members: (31..36).map(|s| key(s).public()).collect(),
        threshold: 4,
    };
    let forged = certificate(
        &intent,
        offer,
        &forged_committee,
        &[31, 32, 33, 34],
        b"hello",
    );
    assert!(refusal(&mut s, Some(forged)).is_some());

    // For another offer, or for another input.
    let other_offer = certificate(
        &intent,
        ObjectId([9; 32]),
        &committee(4),
        &[21, 22, 23, 24],
        b"hello",
    );
    let why = refusal(&mut s, Some(other_offer)).unwrap();
    assert!(why.contains("approves offer"), "{why}");
    let other_input = certificate(&intent, offer, &committee(4), &[21, 22, 23, 24], b"bye");
    let why = refusal(&mut s, Some(other_input)).unwrap();
    assert!(why.contains("another input"), "{why}");

    // Members approved, but a proposal someone else made.
    let foreign = certificate_by(
        2,
        &intent,
        offer,
        &committee(4),
        &[21, 22, 23, 24],
        b"hello",
    );
    let why = refusal(&mut s, Some(foreign)).unwrap();
    assert!(why.contains("not by the requester"), "{why}");

    // The genuine certificate: it executes.
    let good = certificate(&intent, offer, &committee(4), &[21, 22, 23, 25], b"hello");
    assert_eq!(refusal(&mut s, Some(good)), None);
    assert_eq!(s.provider.active_tasks(), 1);
}

#[test]
fn a_reassigned_award_needs_its_own_approval() {
    // Provider 11 (the cheapest) fails its task: the next-best offer is voted on again.
    let failing = key(11).public();
    let exec: Executor = Box::new(move |who, _, _, input| {
        if *who == failing {
            ExecPlan::Finish {
                after_ms: 100,
                result: Err("disk full".into()),
                progress: false,
            }
        } else {
            ExecPlan::Finish {
                after_ms: 100,
                result: Ok(Payload::Inline(
                    pvl_protocol::sha256(input.inline().unwrap_or_default()).to_vec(),
                )),
                progress: false,
            }
        }
    });
    let mut s = Sim::new(
        Requester::new(key(1), consensus_spec(4)),
        key(1).public(),
        providers(),
        10,
        exec,
    )
    .with_voters(voters(&[]), everyone_answers());
    let outcome = s.run(T0, T0 + 60_000).cloned().unwrap();
    let Outcome::Completed(c) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(c.provider, key(12).public());
    assert_eq!(c.awards, 2);
    let subjects: Vec<ObjectId> = distinct(&s.recorded, Kind::Proposal)
        .iter()
        .map(|p| match p.body() {
            Body::Proposal(p) => p.subject,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(subjects.len(), 2);
    assert_ne!(subjects[0], subjects[1]);
    for start in distinct(&s.recorded, Kind::TaskStart) {
        let Body::TaskStart(t) = start.body() else {
            unreachable!()
        };
        verify_certificate(&quorum_of(&start), &committee(4), t.offer, t.input.sha256()).unwrap();
    }
}

#[test]
fn the_requester_refuses_votes_it_did_not_ask_for() {
    let mut requester = Requester::new(key(1), consensus_spec(4));
    let actions = requester.start(T0).unwrap();
    let intent = published(&actions).remove(0);
    let Body::Intent(i) = intent.body() else {
        unreachable!()
    };
    assert_eq!(i.committee, Some(committee(4)));
    // No ballot yet: a vote is unexpected.
    let stray = Envelope {
        trace: Some(intent.trace_id()),
        parents: vec![intent.id()],
        signer: key(21).public(),
        timestamp_ms: T0 + 1,
        body: Body::Vote(Vote {
            proposal: intent.id(),
            round: 1,
            approve: true,
            reason: "eager".into(),
        }),
    }
    .sign(&key(21))
    .unwrap();
    assert!(requester.on_object(stray, T0 + 2).is_err());
    // Offer, window close: the requester votes instead of awarding.
    let o = offer(&intent, &key(11), 30, 1_000, 9_500, T0 + 10);
    requester.on_object(o.clone(), T0 + 10).unwrap();
    let token = TimerToken {
        trace: intent.trace_id(),
        scope: intent.trace_id(),
        kind: TimerKind::OfferWindow { round: 1 },
    };
    let actions = requester.on_timer(token, T0 + 1_000).unwrap();
    assert!(task_starts(&actions).is_empty(), "no award before approval");
    assert!(matches!(
        requester.state(),
        pvl_patterns::RequesterState::Voting { round: 1, .. }
    ));
    let proposal = recorded(&actions)
        .into_iter()
        .find(|o| o.kind() == Kind::Proposal)
        .unwrap();
    // A vote signed by a stranger, or for another proposal, changes nothing.
    assert!(
        requester
            .on_object(vote(30, &proposal, true, "me"), T0 + 1_010)
            .is_err()
    );
    for m in [21, 22, 23] {
        requester
            .on_object(vote(m, &proposal, true, "ok"), T0 + 1_020)
            .unwrap();
    }
    let actions = requester
        .on_object(vote(24, &proposal, true, "ok"), T0 + 1_030)
        .unwrap();
    let starts = task_starts(&actions);
    assert_eq!(starts.len(), 1);
    assert!(starts[0].parents().contains(&o.id()));
    // The fifth, late vote is recorded, not refused.
    let late = vote(25, &proposal, true, "late");
    let actions = requester.on_object(late.clone(), T0 + 1_040).unwrap();
    assert_eq!(recorded(&actions), vec![late]);
}

#[test]
fn a_rejected_winner_is_told_and_a_cancelled_vote_rejects_it() {
    let mut s = sim(consensus_spec(4), voters(&[24, 25]), everyone_answers());
    s.run(T0, T0 + 60_000);
    let told = distinct(&s.recorded, Kind::Reject).into_iter().any(
        |r| matches!(r.body(), Body::Reject(b) if b.detail.contains("committee did not approve")),
    );
    assert!(told, "the winner learns that its award was not approved");

    let mut requester = Requester::new(key(1), consensus_spec(4));
    let intent = published(&requester.start(T0).unwrap()).remove(0);
    let o = offer(&intent, &key(11), 30, 1_000, 9_500, T0 + 10);
    requester.on_object(o.clone(), T0 + 10).unwrap();
    let token = TimerToken {
        trace: intent.trace_id(),
        scope: intent.trace_id(),
        kind: TimerKind::OfferWindow { round: 1 },
    };
    requester.on_timer(token, T0 + 1_000).unwrap();
    let actions = requester.cancel("user abort", T0 + 1_100).unwrap();
    let r = rejects(&actions);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, o.id());
    assert_eq!(r[0].1, pvl_protocol::RejectCode::Cancelled);
    assert!(
        matches!(finished(&actions), Some(Outcome::Failed(f)) if f.reason == FailureReason::Cancelled)
    );
}
