//! Requesters whose intent is a child in an existing trace (the building block of the
//! composites): parents, timer scopes, which objects each one claims, and ranking busy
//! providers last.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pvl_patterns::{Action, Coordination, Input, Requester, TimerKind, TimerToken};
use pvl_protocol::{Body, Payload, SignedObject, Strategy};

fn tokens(actions: &[Action]) -> Vec<TimerToken> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTimer { token, .. } => Some(*token),
            _ => None,
        })
        .collect()
}

/// A root requester's intent, used as the existing trace.
fn root() -> SignedObject {
    let mut r = Requester::new(key(1), spec(Strategy::LowestCost));
    published(&r.start(T0).unwrap()).pop().unwrap()
}

fn child(capability: &str, root: &SignedObject) -> (Requester, SignedObject, Vec<Action>) {
    let mut s = spec(Strategy::LowestCost);
    s.capability = capability.into();
    s.input = Payload::Inline(capability.as_bytes().to_vec());
    let mut r = Requester::new(key(1), s);
    let actions = r.start_within(root.trace_id(), &[root.id()], T0).unwrap();
    let intent = published(&actions).pop().unwrap();
    (r, intent, actions)
}

#[test]
fn two_requesters_share_a_trace_with_their_own_timer_scopes() {
    let root = root();
    let (mut a, a_intent, a_actions) = child("sha256", &root);
    let (mut b, b_intent, b_actions) = child("echo", &root);
    for (r, intent) in [(&a, &a_intent), (&b, &b_intent)] {
        assert!(!intent.is_root());
        assert_eq!(intent.trace_id(), root.id());
        assert_eq!(intent.parents(), &[root.id()]);
        assert_eq!(r.trace(), Some(root.id()));
        assert_eq!(r.scope(), Some(intent.id()));
    }
    let (ta, tb) = (tokens(&a_actions)[0], tokens(&b_actions)[0]);
    assert_eq!((ta.trace, tb.trace), (root.id(), root.id()));
    assert_eq!((ta.scope, tb.scope), (a_intent.id(), b_intent.id()));
    // A timer goes only to the requester that set it.
    assert!(b.handle(Input::Timer(ta), T0 + 1_000).is_err());
    assert!(a.handle(Input::Timer(ta), T0 + 1_000).is_ok());
    // Offers are claimed by the requester of their intent only.
    let offer_b = offer(&b_intent, &key(11), 10, 500, 9_500, T0 + 10);
    assert!(b.claims(&offer_b));
    assert!(!a.claims(&offer_b));
    // A root requester's scope is its trace.
    let mut plain = Requester::new(key(1), spec(Strategy::LowestCost));
    let actions = plain.start(T0).unwrap();
    assert_eq!(tokens(&actions)[0].scope, plain.trace().unwrap());
}

#[test]
fn a_requester_inside_a_trace_needs_a_parent() {
    let root = root();
    let mut r = Requester::new(key(1), spec(Strategy::LowestCost));
    assert!(r.start_within(root.trace_id(), &[], T0).is_err());
}

#[test]
fn claims_follow_tasks_and_republished_intents() {
    let root = root();
    let (mut a, intent, _) = child("sha256", &root);
    let only = offer(&intent, &key(11), 10, 500, 9_500, T0 + 10);
    a.on_object(only, T0 + 20).unwrap();
    let actions = a
        .handle(
            Input::Timer(TimerToken {
                trace: root.id(),
                scope: intent.id(),
                kind: TimerKind::OfferWindow { round: 1 },
            }),
            T0 + 1_000,
        )
        .unwrap();
    let start = task_starts(&actions).pop().unwrap();
    // A progress report about the task is claimed; one about another task is not.
    let progress = |task| {
        pvl_protocol::Envelope {
            trace: Some(root.id()),
            parents: vec![task],
            signer: key(11).public(),
            timestamp_ms: T0 + 1_100,
            body: Body::TaskProgress(pvl_protocol::TaskProgress {
                task,
                fraction_bps: Some(100),
                message: "working".into(),
            }),
        }
        .sign(&key(11))
        .unwrap()
    };
    assert!(a.claims(&progress(start.id())));
    assert!(!a.claims(&progress(root.id())));
    // The watchdog fails the only provider; the intent is re-published in the same trace.
    let watchdog = tokens(&actions)
        .into_iter()
        .find(|t| matches!(t.kind, TimerKind::TaskWatchdog { .. }))
        .unwrap();
    assert_eq!(watchdog.scope, intent.id());
    let actions = a.handle(Input::Timer(watchdog), T0 + 5_000).unwrap();
    let second = published(&actions).pop().expect("re-published");
    assert_eq!(second.trace_id(), root.id());
    let late_offer = offer(&second, &key(12), 10, 500, 9_500, T0 + 5_010);
    assert!(a.claims(&late_offer), "offers on the re-published intent");
    assert_eq!(
        a.scope(),
        Some(intent.id()),
        "the scope stays the first intent"
    );
}

#[test]
fn providers_ranked_last_lose_to_free_ones_but_are_not_excluded() {
    let root = root();
    let (mut a, intent, _) = child("sha256", &root);
    a.set_ranked_last([key(11).public()]);
    let cheap = offer(&intent, &key(11), 10, 500, 9_500, T0 + 10);
    let dear = offer(&intent, &key(12), 40, 500, 9_500, T0 + 10);
    a.on_object(cheap.clone(), T0 + 20).unwrap();
    a.on_object(dear, T0 + 20).unwrap();
    let token = TimerToken {
        trace: root.id(),
        scope: intent.id(),
        kind: TimerKind::OfferWindow { round: 1 },
    };
    let actions = a.handle(Input::Timer(token), T0 + 1_000).unwrap();
    let Body::TaskStart(start) = task_starts(&actions)[0].body().clone() else {
        unreachable!()
    };
    assert_eq!(start.provider, key(12).public());
    let ranked_last = events_in(&recorded(&actions), "ranked-last");
    assert_eq!(ranked_last.len(), 1);
    assert_eq!(ranked_last[0].about, vec![cheap.id()]);

    // When every offer comes from a busy provider, the best of them still wins.
    let (mut b, intent, _) = child("echo", &root);
    b.set_ranked_last([key(11).public()]);
    b.on_object(offer(&intent, &key(11), 10, 500, 9_500, T0 + 10), T0 + 20)
        .unwrap();
    let token = TimerToken {
        trace: root.id(),
        scope: intent.id(),
        kind: TimerKind::OfferWindow { round: 1 },
    };
    let actions = b.handle(Input::Timer(token), T0 + 1_000).unwrap();
    assert_eq!(task_starts(&actions).len(), 1);
    assert!(events_in(&recorded(&actions), "ranked-last").is_empty());
}

#[test]
fn a_requester_runs_behind_the_coordination_trait() {
    let mut c: Box<dyn Coordination> = Box::new(Requester::new(key(1), spec(Strategy::LowestCost)));
    assert_eq!(c.trace(), None);
    let actions = c.start(T0).unwrap();
    let intent = published(&actions).pop().unwrap();
    assert_eq!(c.trace(), Some(intent.id()));
    assert!(c.claims(&offer(&intent, &key(11), 10, 500, 9_500, T0 + 10)));
    let actions = c.cancel("changed my mind", T0 + 20).unwrap();
    assert!(finished(&actions).is_some());
    assert!(c.is_finished() && c.outcome().is_some());
}
