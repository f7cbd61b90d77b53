//! The engine: N engines on the simulated network, as N nodes run them. Routing, timers,
//! cancellation, votes decided outside, one record per object, and rebuilding runs from the
//! recorded objects after a crash. Real signatures, a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use pvl_patterns::sim::{ExecPlan, Network};
use pvl_patterns::{
    Action, Engine, EngineConfig, FailureReason, Input, NoRecords, OfferPolicy, Outcome, Planned,
    Provider, Request, RequestOptions, RequestSpec, VoteDecision, VoteMode,
};
use pvl_protocol::{Body, Keypair, Kind, PatternHint, Payload, SignedObject, TraceId};

const T0: u64 = 1_800_000_000_000;

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i + 1; 32])
}

/// Node 0 requests; nodes 1..=n serve `echo` at prices 10, 20, 30, ... (node 1 is cheapest).
fn network(providers: u8) -> Network {
    let mut engines = vec![Engine::new(EngineConfig::new(key(0)))];
    engines.extend((1..=providers).map(echo_provider));
    network_of(engines, true)
}

/// Node `i`, serving `echo` at price `10 * i`.
fn echo_provider(i: u8) -> Engine {
    let provider =
        Provider::new(key(i), 4).serve("echo", OfferPolicy::fixed(u64::from(i) * 10, 100, 9_000));
    Engine::new(EngineConfig::new(key(i)).with_provider(provider))
}

/// `engines` on a network with 2 ms of latency, whose tasks echo their input after 50 ms.
fn network_of(engines: Vec<Engine>, progress: bool) -> Network {
    let executor = Box::new(
        move |_: &_, _: &_, _: &str, input: &Payload| ExecPlan::Finish {
            after_ms: 50,
            result: Ok(input.clone()),
            progress,
        },
    );
    Network::new(engines, 2, executor, T0)
}

fn spec(window_ms: u64, min_offers: usize) -> RequestSpec {
    let mut spec = RequestSpec::new("echo", Payload::Inline(b"hello".to_vec()));
    spec.offer_window_ms = window_ms;
    spec.min_offers = min_offers;
    spec.nonce = 7;
    spec
}

fn planned(spec: RequestSpec) -> Planned {
    Planned::new(Request::ContractNet(spec))
}

fn outcome(net: &Network, trace: &TraceId) -> Option<Outcome> {
    net.engine(0).outcome(trace).cloned()
}

fn completed(net: &Network, trace: &TraceId) -> pvl_patterns::Completion {
    match outcome(net, trace) {
        Some(Outcome::Completed(c)) => c,
        other => panic!("expected a completion, got {other:?}"),
    }
}

/// Runs the network until node 0 knows how `trace` ended (before `until_ms`).
fn run_to_outcome(net: &mut Network, trace: &TraceId, until_ms: u64) {
    assert!(
        net.run_until(until_ms, |n| n.engine(0).outcome(trace).is_some()),
        "no outcome by {until_ms}"
    );
}

/// Whether the completion carries the receipt countersigned by the requester.
fn countersigned(c: &pvl_patterns::Completion) -> bool {
    c.receipt
        .as_ref()
        .is_some_and(SignedObject::is_countersigned)
}

/// The first object the actions publish.
fn published(actions: &[Action]) -> Option<SignedObject> {
    actions.iter().find_map(|a| match a {
        Action::Publish(o) => Some(o.clone()),
        _ => None,
    })
}

/// The first object the actions send (of `kind`, when given).
fn sent(actions: &[Action], kind: Option<Kind>) -> Option<SignedObject> {
    actions.iter().find_map(|a| match a {
        Action::Send { object, .. } if kind.is_none_or(|k| object.kind() == k) => {
            Some(object.clone())
        }
        _ => None,
    })
}

fn of_kind(objects: &[SignedObject], kind: Kind) -> Vec<&SignedObject> {
    objects.iter().filter(|o| o.kind() == kind).collect()
}

/// Every node recorded every object at most once (a countersigned receipt is the second
/// version of the provider's receipt, and counts apart).
fn assert_recorded_once(net: &Network) {
    for (i, objects) in net.recorded.iter().enumerate() {
        let mut seen = HashSet::new();
        for o in objects {
            assert!(
                seen.insert((o.id(), o.is_countersigned())),
                "node {i} recorded {} {} twice",
                o.kind(),
                o.id().short()
            );
        }
    }
}

#[test]
fn a_round_between_engines_completes_and_records_each_object_once() {
    let mut net = network(3);
    let trace = net.request(0, planned(spec(200, 0))).unwrap();
    assert!(net.engine(0).is_running(&trace));
    assert_eq!(
        net.engine(0).poll_timeout(),
        Some(T0 + 200),
        "the offer window"
    );
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    let c = completed(&net, &trace);
    assert_eq!(c.provider, key(1).public(), "lowest cost wins");
    assert!(countersigned(&c));
    assert!(!net.engine(0).is_running(&trace));
    assert_recorded_once(&net);
    // The requester's store has the root, the run-spec event, three offers, one award.
    let mine = &net.recorded[0];
    assert_eq!(of_kind(mine, Kind::Offer).len(), 3);
    assert_eq!(of_kind(mine, Kind::TaskStart).len(), 1);
    assert!(
        mine.iter()
            .any(|o| matches!(o.body(), Body::Event(e) if e.is(&pvl_protocol::EventType::RunSpec)))
    );
    // A provider that lost recorded the intent it bid on, its offer and the reject.
    assert_eq!(of_kind(&net.recorded[2], Kind::Intent).len(), 1);
    assert_eq!(of_kind(&net.recorded[2], Kind::Reject).len(), 1);
}

#[test]
fn an_intent_nobody_serves_is_observed_not_stored_and_the_window_timer_fails_the_round() {
    let mut engines = vec![Engine::new(EngineConfig::new(key(0)))];
    engines.push(Engine::new(EngineConfig::new(key(1))));
    let mut net = Network::new(
        engines,
        2,
        Box::new(|_: &_, _: &_, _: &str, _: &Payload| ExecPlan::Hang),
        T0,
    );
    let trace = net.request(0, planned(spec(300, 0))).unwrap();
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    match outcome(&net, &trace) {
        Some(Outcome::Failed(f)) => assert_eq!(f.reason, FailureReason::NoOffers),
        other => panic!("expected no-offers, got {other:?}"),
    }
    assert_eq!(
        net.now_ms,
        T0 + 300,
        "failed when the window closed, not before"
    );
    assert!(
        of_kind(&net.recorded[1], Kind::Intent).is_empty(),
        "observed, not stored: node 1 takes no part in the trace"
    );
    assert_eq!(net.engine(0).stats().timers, 1);
}

#[test]
fn cancel_ends_a_run_and_unknown_traces_are_refused() {
    let mut engine = Engine::new(EngineConfig::new(key(0)));
    let (trace, _) = engine.request(planned(spec(1_000, 0)), T0).unwrap();
    let actions = engine.cancel(&trace, "changed my mind", T0 + 5).unwrap();
    assert!(actions.iter().any(|a| matches!(a,
        Action::Finished(Outcome::Failed(f)) if f.reason == FailureReason::Cancelled)));
    assert!(!engine.is_running(&trace));
    assert!(engine.cancel(&trace, "again", T0 + 6).is_err());
    // The window timer of the cancelled run fires into nothing.
    assert!(engine.handle_timeout(T0 + 2_000).is_empty());
}

#[test]
fn a_requester_on_its_own_committee_votes_inside_the_engine() {
    let mut net = network(3);
    let mut s = spec(200, 3);
    s.pattern = PatternHint::Consensus;
    s.committee = Some(pvl_protocol::Committee {
        members: vec![key(0).public(), key(2).public(), key(3).public()],
        threshold: 3,
    });
    let trace = net.request(0, planned(s)).unwrap();
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    let c = completed(&net, &trace);
    assert_eq!(c.provider, key(1).public());
    assert!(
        net.engine(0).stats().local >= 2,
        "proposal to itself and its vote back"
    );
    assert_eq!(of_kind(&net.recorded[0], Kind::Vote).len(), 3);
    assert_recorded_once(&net);
}

#[test]
fn votes_decided_outside_go_in_as_inputs() {
    let requester = key(0);
    let member = key(5);
    let mut engine = Engine::new(EngineConfig::new(member.clone()).with_votes(VoteMode::External));
    // A proposal from a requester's ballot: run a requester engine until it proposes.
    let mut req = Engine::new(EngineConfig::new(requester.clone()));
    let mut s = spec(100, 1);
    s.committee = Some(pvl_protocol::Committee {
        members: vec![member.public()],
        threshold: 1,
    });
    s.pattern = PatternHint::Consensus;
    let (_, actions) = req.request(planned(s), T0).unwrap();
    let intent = published(&actions).unwrap();
    // One provider offers.
    let mut provider = Provider::new(key(1), 1).serve("echo", OfferPolicy::fixed(5, 10, 9_000));
    let offer = sent(&provider.on_object(intent, T0 + 1).unwrap(), None).unwrap();
    let actions = req.handle(Input::Received(offer), T0 + 2);
    let proposal = sent(&actions, Some(Kind::Proposal)).expect("the requester proposes the award");
    let asked = engine.handle(Input::Received(proposal.clone()), T0 + 3);
    assert!(matches!(asked.as_slice(), [Action::DecideVote(p)] if p.id() == proposal.id()));
    let voted = engine.handle(
        Input::VoteDecided {
            proposal,
            decision: VoteDecision::reject("too expensive for me"),
        },
        T0 + 4,
    );
    let vote = sent(&voted, None).unwrap();
    assert!(
        matches!(vote.body(), Body::Vote(v) if !v.approve && v.reason == "too expensive for me")
    );
}

#[test]
fn a_requester_restarted_during_the_offer_window_resumes_with_the_offers_it_had() {
    let mut net = network(3);
    let trace = net.request(0, planned(spec(500, 0))).unwrap();
    // The three offers are in (2 ms latency each way), the window closes at +500.
    net.run_until(T0 + 100, |_| false);
    assert_eq!(of_kind(&net.recorded[0], Kind::Offer).len(), 3);
    net.crash(0);
    net.run_until(T0 + 300, |_| false);
    net.restart(0, Engine::new(EngineConfig::new(key(0))));
    assert!(net.engine(0).is_running(&trace));
    assert_eq!(net.engine(0).stats().restored, 1);
    assert_eq!(
        net.engine(0).poll_timeout(),
        Some(T0 + 500),
        "the window re-armed"
    );
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    let c = completed(&net, &trace);
    assert_eq!(
        c.provider,
        key(1).public(),
        "the offers received before the crash count"
    );
    assert!(countersigned(&c));
    assert_eq!(
        of_kind(&net.recorded[0], Kind::Intent).len(),
        1,
        "not re-published"
    );
    assert_recorded_once(&net);
}

#[test]
fn a_requester_restarted_after_the_award_follows_it_without_awarding_again() {
    let mut net = network(3);
    let trace = net.request(0, planned(spec(50, 0))).unwrap();
    // Window closes at +50; the award arrives at the winner at +52; the task runs 50 ms.
    net.run_until(T0 + 60, |_| false);
    assert_eq!(of_kind(&net.recorded[0], Kind::TaskStart).len(), 1);
    net.crash(0);
    // While the requester is down the provider's done and receipt are lost.
    net.run_until(T0 + 200, |_| false);
    net.restart(0, Engine::new(EngineConfig::new(key(0))));
    assert!(net.engine(0).is_running(&trace));
    // Nothing arrives any more: the watchdog (eta 100 + grace 2000 from the award) fails the
    // winner and the next-best offer is awarded.
    run_to_outcome(&mut net, &trace, T0 + 60_000);
    let c = completed(&net, &trace);
    assert_eq!(
        c.provider,
        key(2).public(),
        "the standby offer of the round"
    );
    assert_eq!(of_kind(&net.recorded[0], Kind::TaskStart).len(), 2);
    assert_recorded_once(&net);

    // The same crash, but the requester is back before the provider reports: one award.
    let mut net = network(3);
    let trace = net.request(0, planned(spec(50, 0))).unwrap();
    net.run_until(T0 + 60, |_| false);
    net.crash(0);
    net.restart(0, Engine::new(EngineConfig::new(key(0))));
    run_to_outcome(&mut net, &trace, T0 + 60_000);
    let c = completed(&net, &trace);
    assert_eq!(c.provider, key(1).public());
    assert_eq!(c.awards, 1);
    assert!(countersigned(&c));
    assert_eq!(
        of_kind(&net.recorded[0], Kind::TaskStart).len(),
        1,
        "not repeated"
    );
}

#[test]
fn a_round_whose_deadline_passed_while_down_ends_with_that_reason() {
    let mut net = network(2);
    let mut s = spec(500, 0);
    s.constraints.deadline_ms = Some(T0 + 1_000);
    let trace = net.request(0, planned(s)).unwrap();
    net.run_until(T0 + 100, |_| false);
    net.crash(0);
    net.run_until(T0 + 5_000, |_| false);
    net.now_ms = T0 + 5_000;
    net.restart(0, Engine::new(EngineConfig::new(key(0))));
    match outcome(&net, &trace) {
        Some(Outcome::Failed(f)) => {
            assert_eq!(f.reason, FailureReason::DeadlinePassed);
            assert!(
                f.detail.contains("while the requester was down"),
                "{}",
                f.detail
            );
        }
        other => panic!("expected deadline-passed, got {other:?}"),
    }
}

#[test]
fn plans_come_from_options_and_run_on_the_engine() {
    let mut net = network(2);
    let options = RequestOptions {
        capability: "echo".into(),
        input: b"x".to_vec(),
        pattern: Some(PatternHint::Auction),
        window_ms: Some(100),
        ..Default::default()
    };
    let planned = Request::plan(options, Arc::new(NoRecords), T0).unwrap();
    let trace = net.request(0, planned).unwrap();
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    assert!(matches!(outcome(&net, &trace), Some(Outcome::Completed(_))));
}

/// A history that knows how many providers serve the capability, and nothing else.
struct Known(usize);

impl pvl_patterns::PatternHistory for Known {
    fn providers(&self, _: &str) -> Vec<(pvl_protocol::PublicKey, pvl_patterns::ProviderRecord)> {
        Vec::new()
    }

    fn pattern(&self, _: &str, _: PatternHint) -> pvl_patterns::PatternRecord {
        pvl_patterns::PatternRecord::default()
    }
}

impl pvl_patterns::select::ReliabilitySource for Known {
    fn observed_bps(&self, _: &pvl_protocol::PublicKey) -> Option<u16> {
        None
    }

    fn provider_count(&self) -> Option<usize> {
        Some(self.0)
    }
}

impl pvl_patterns::History for Known {}

#[test]
fn the_history_given_with_a_request_sizes_its_audience() {
    let mut engine = Engine::new(EngineConfig::new(key(0)));
    let planned = Planned {
        request: Request::ContractNet(spec(100, 3)),
        choice: None,
        history: Arc::new(Known(40)),
    };
    let (_, actions) = engine.request(planned, T0).unwrap();
    let intent = published(&actions).unwrap();
    let Body::Intent(body) = intent.body() else {
        panic!("an intent is published");
    };
    let audience = body
        .audience
        .expect("40 known providers, 3 offers wanted: a sample");
    assert_eq!(audience.of, 40);
    assert!(audience.wanted >= 3 && audience.wanted < 40, "{audience:?}");
}

#[test]
fn a_composite_run_open_at_a_restart_ends_with_requester_restarted() {
    use pvl_patterns::parallel::{ParallelSpec, Reduce, Split};
    let mut net = network(3);
    let mut spec = ParallelSpec::new("echo", Split::Lines, 2, Reduce::Concat);
    spec.template.offer_window_ms = 500;
    let planned = Planned::new(Request::Parallel {
        spec,
        input: Payload::Inline(b"a\nb\n".to_vec()),
    });
    let trace = net.request(0, planned).unwrap();
    net.run_until(T0 + 100, |_| false);
    net.crash(0);
    net.restart(0, Engine::new(EngineConfig::new(key(0))));
    assert!(!net.engine(0).is_running(&trace));
    let ended: Vec<_> = net.recorded[0]
        .iter()
        .filter_map(|o| match o.body() {
            Body::Event(e) if e.is(&pvl_protocol::EventType::IntentFailed) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].attr("reason"), Some(pvl_patterns::RESTARTED));
    assert_eq!(ended[0].about, vec![trace]);
}

#[test]
fn an_agent_program_decides_the_bids_of_its_capability() {
    let mut req = Engine::new(EngineConfig::new(key(0)));
    let mut s = spec(100, 1);
    s.constraints.max_cost = Some(50);
    let (_, actions) = req.request(planned(s), T0).unwrap();
    let intent = published(&actions).unwrap();
    let provider = Provider::new(key(1), 2).serve_by_agent("echo", OfferPolicy::fixed(0, 0, 0));
    let mut engine = Engine::new(EngineConfig::new(key(1)).with_provider(provider));

    // The intent goes to the program, recorded once; nothing is sent yet.
    let asked = engine.handle(Input::Received(intent.clone()), T0 + 1);
    assert!(
        asked
            .iter()
            .any(|a| matches!(a, Action::DecideOffer(i) if i.id() == intent.id()))
    );
    assert!(sent(&asked, None).is_none());

    // Terms over the intent's budget are not offered; the intent is answered once only.
    let terms = |cost: u64| {
        pvl_patterns::BidDecision::Bid(pvl_protocol::Offer {
            intent: intent.id(),
            cost,
            eta_ms: 20,
            reliability_bps: 9_900,
            resources: Default::default(),
            expires_at_ms: T0 + 10_000,
        })
    };
    let over = engine.handle(
        Input::OfferDecided {
            intent: intent.id(),
            decision: terms(80),
        },
        T0 + 2,
    );
    assert!(sent(&over, None).is_none(), "an offer over budget went out");
    let again = engine.handle(Input::Received(intent.clone()), T0 + 3);
    assert!(!again.iter().any(|a| matches!(a, Action::DecideOffer(_))));

    // A second intent: the program's terms are signed and sent to the requester.
    let mut s = spec(100, 1);
    s.nonce = 8;
    s.constraints.max_cost = Some(50);
    let (_, actions) = req.request(planned(s), T0 + 4).unwrap();
    let intent = published(&actions).unwrap();
    engine.handle(Input::Received(intent.clone()), T0 + 5);
    let offered = engine.handle(
        Input::OfferDecided {
            intent: intent.id(),
            decision: pvl_patterns::BidDecision::Bid(pvl_protocol::Offer {
                intent: intent.id(),
                cost: 42,
                eta_ms: 20,
                reliability_bps: 9_900,
                resources: Default::default(),
                expires_at_ms: T0 + 10_000,
            }),
        },
        T0 + 6,
    );
    let offer = sent(&offered, Some(Kind::Offer)).expect("the program's offer");
    assert!(matches!(offer.body(), Body::Offer(o) if o.cost == 42 && o.reliability_bps == 9_900));
    assert_eq!(offer.signer(), key(1).public());
    // A decline, or an answer nobody asked for, sends nothing.
    let mut s = spec(100, 1);
    s.nonce = 9;
    let (_, actions) = req.request(planned(s), T0 + 7).unwrap();
    let intent = published(&actions).unwrap();
    engine.handle(Input::Received(intent.clone()), T0 + 8);
    let declined = engine.handle(
        Input::OfferDecided {
            intent: intent.id(),
            decision: pvl_patterns::BidDecision::Decline("busy".into()),
        },
        T0 + 9,
    );
    assert!(sent(&declined, None).is_none());
    let stray = engine.handle(
        Input::OfferDecided {
            intent: intent.id(),
            decision: terms(1),
        },
        T0 + 10,
    );
    assert!(stray.is_empty());
}

/// The capability ad of node `i` for `echo` (what the requester's directory learns by gossip).
fn echo_ad(i: u8) -> SignedObject {
    pvl_patterns::directory::advertise(
        &key(i),
        "echo",
        pvl_protocol::PriceModel::Fixed(u64::from(i) * 10),
        4,
        "bytes",
        "the same bytes",
        600_000,
        T0,
    )
    .unwrap()
}

/// The `run-spec` event node 0 recorded.
fn run_spec_of(net: &Network) -> pvl_protocol::RunSpec {
    net.recorded[0]
        .iter()
        .find_map(|o| match o.body() {
            Body::Event(e) if e.is(&pvl_protocol::EventType::RunSpec) => {
                Some(pvl_protocol::RunSpec::from_event(e).unwrap())
            }
            _ => None,
        })
        .expect("a run-spec event")
}

#[test]
fn a_directed_intent_goes_to_a_few_known_providers_and_the_round_completes() {
    // Eight providers, all advertised: a round that waits for 3 offers asks 4 of them
    // directly (the lowest audience draws) and gossips nothing.
    let mut requester = Engine::new(EngineConfig::new(key(0)));
    for i in 1..=8 {
        assert!(requester.observe_ad(&echo_ad(i), T0));
    }
    let mut engines = vec![requester];
    engines.extend((1..=8).map(echo_provider));
    let mut net = network_of(engines, false);
    let trace = net.request(0, planned(spec(2_000, 3))).unwrap();
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    let c = completed(&net, &trace);
    assert!(countersigned(&c));
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    // The fourth offer came after the third had closed the window: refused `intent-closed`
    // in its acknowledgement, recorded nowhere by the requester, and given up by its provider.
    assert_eq!(net.refusals.len(), 1, "{:?}", net.refusals);
    assert!(
        net.refusals[0].starts_with("intent-closed: "),
        "{:?}",
        net.refusals
    );
    assert_recorded_once(&net);
    for i in 1..=8 {
        let open = net.engine(i).provider().map_or(0, |p| p.open_offers());
        let standby = of_kind(&net.recorded[i], Kind::Reject).len();
        assert_eq!(open, standby, "node {i}: only standby offers stay open");
    }

    let intent = of_kind(&net.recorded[0], Kind::Intent)[0].clone();
    let Body::Intent(body) = intent.body() else {
        unreachable!()
    };
    assert_eq!(body.audience, None, "a directed intent names no audience");
    let known: Vec<_> = (1..=8).map(|i| key(i).public()).collect();
    let expected = pvl_patterns::select::directed_choice(&intent.id(), &known, &[], 4);
    let mut asked = run_spec_of(&net).asked;
    assert_eq!(
        asked, expected,
        "the run-spec names whom the intent went to"
    );
    // Exactly those providers saw the intent, and each offered.
    let mut saw: Vec<_> = (1..=8u8)
        .filter(|&i| !of_kind(&net.recorded[usize::from(i)], Kind::Intent).is_empty())
        .map(|i| key(i).public())
        .collect();
    saw.sort();
    asked.sort();
    assert_eq!(saw, asked);
    assert_eq!(of_kind(&net.recorded[0], Kind::Offer).len(), 3);
    assert!(asked.contains(&c.provider));
    // The messages of the round: 4 intents, 4 offers, 1 award, the one reject to each of the
    // 2 losers, done, receipt, countersigned receipt. Gossip would have been 8 intents.
    assert_eq!(net.messages, 4 + 4 + 1 + 2 + 2 + 1);
}

/// Node 0 knows the ads of nodes 1 to 4, which no longer serve `echo` (their ads are out of
/// date); nodes 5 and 6 serve it but their ads have not arrived.
fn stale_directory_network() -> Network {
    let mut requester = Engine::new(EngineConfig::new(key(0)));
    for i in 1..=4 {
        assert!(requester.observe_ad(&echo_ad(i), T0));
    }
    let mut engines = vec![requester];
    engines.extend((1..=4).map(|i| Engine::new(EngineConfig::new(key(i)))));
    engines.extend((5..=6).map(echo_provider));
    network_of(engines, false)
}

/// The `audience-widened` event node 0 recorded.
fn widened(net: &Network) -> pvl_protocol::Event {
    net.recorded[0]
        .iter()
        .find_map(|o| match o.body() {
            Body::Event(e) if e.is(&pvl_protocol::EventType::AudienceWidened) => Some(e.clone()),
            _ => None,
        })
        .expect("an audience-widened event")
}

#[test]
fn a_directed_intent_that_brings_nothing_is_widened_to_everyone() {
    let mut net = stale_directory_network();
    let trace = net.request(0, planned(spec(500, 1))).unwrap();
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    let c = completed(&net, &trace);
    assert_eq!(
        c.provider,
        key(5).public(),
        "the cheapest of those who serve it"
    );
    // min_offers 1: 2 of the 4 advertised providers were asked, and refused.
    assert_eq!(run_spec_of(&net).asked.len(), 2);
    // Both refused; then of the two offers on the gossiped intent, the second came after the
    // first had closed the window.
    assert_eq!(net.refusals.len(), 3, "{:?}", net.refusals);
    assert!(
        net.refusals[..2].iter().all(|r| r
            .starts_with("not-bidding: capability `echo` not served")
            || r.starts_with("not-bidding: this node serves no capability")),
        "{:?}",
        net.refusals
    );
    assert!(net.refusals[2].starts_with("intent-closed: "));
    // The second round went to everyone, by gossip, after an `audience-widened` event, as
    // soon as both refusals were back (+2 there, +2 back), not when the 500 ms window closed.
    let intents = of_kind(&net.recorded[0], Kind::Intent);
    assert_eq!(intents.len(), 2);
    assert_eq!(intents[1].timestamp_ms(), T0 + 4);
    let widened = widened(&net);
    assert!(
        widened
            .attrs
            .contains(&(pvl_protocol::attr::WANTED.to_string(), "2".to_string()))
    );
    assert!(
        widened
            .attrs
            .contains(&(pvl_protocol::attr::OF.to_string(), "4".to_string()))
    );
    assert!(!of_kind(&net.recorded[6], Kind::Intent).is_empty());
}

#[test]
fn a_requester_restarted_after_directing_its_intent_still_widens_it() {
    // The directed intents are refused at +2; the requester crashes before the refusals come
    // back (+4) and comes back with an empty directory: the run-spec's `asked` tells it the
    // first round was directed, and the round is widened when its window closes.
    let mut net = stale_directory_network();
    let trace = net.request(0, planned(spec(500, 1))).unwrap();
    net.run_until(T0 + 2, |_| false);
    assert_eq!(net.refusals.len(), 2, "{:?}", net.refusals);
    net.crash(0);
    net.run_until(T0 + 200, |_| false);
    net.restart(0, Engine::new(EngineConfig::new(key(0))));
    assert!(net.engine(0).is_running(&trace));
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    assert_eq!(completed(&net, &trace).provider, key(5).public());
    let widened = widened(&net);
    assert!(
        widened
            .attrs
            .contains(&(pvl_protocol::attr::WANTED.to_string(), "2".to_string()))
    );
    let intents = of_kind(&net.recorded[0], Kind::Intent);
    assert_eq!(intents.len(), 2);
    assert_eq!(
        intents[1].timestamp_ms(),
        T0 + 500,
        "widened when the window closed"
    );
    assert_recorded_once(&net);
}

#[test]
fn a_directed_round_selects_as_soon_as_every_provider_asked_has_offered_or_declined() {
    // min_offers 2 and 3 providers known: all 3 asked. Two of them no longer serve `echo`
    // and decline; the third offers. Nothing else can come, so the one offer is awarded when
    // the last refusal is back, not when the 500 ms window closes.
    let mut requester = Engine::new(EngineConfig::new(key(0)));
    for i in 1..=3 {
        assert!(requester.observe_ad(&echo_ad(i), T0));
    }
    let mut engines = vec![requester];
    engines.extend((1..=2).map(|i| Engine::new(EngineConfig::new(key(i)))));
    engines.push(echo_provider(3));
    let mut net = network_of(engines, false);
    let trace = net.request(0, planned(spec(500, 2))).unwrap();
    run_to_outcome(&mut net, &trace, T0 + 10_000);
    assert_eq!(completed(&net, &trace).provider, key(3).public());
    assert_eq!(run_spec_of(&net).asked.len(), 3);
    assert_eq!(net.refusals.len(), 2, "{:?}", net.refusals);
    let awards = of_kind(&net.recorded[0], Kind::TaskStart);
    assert_eq!(awards.len(), 1);
    assert!(
        awards[0].timestamp_ms() <= T0 + 4,
        "awarded at +{} ms",
        awards[0].timestamp_ms() - T0
    );
    // One intent: the round was not widened.
    assert_eq!(of_kind(&net.recorded[0], Kind::Intent).len(), 1);
    assert_recorded_once(&net);
}
