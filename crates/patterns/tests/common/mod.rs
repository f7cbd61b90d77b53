//! Helpers shared by the integration tests: fixed keys, a fake clock origin, signed offers,
//! and filters over action lists.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use pvl_patterns::{Action, Outcome, RequestSpec, TimerKind};
use pvl_protocol::{
    Body, Constraints, Envelope, Event, Keypair, ObjectId, Offer, Payload, PublicKey, RejectCode,
    Resources, SignedObject, Strategy,
};

pub const T0: u64 = pvl_protocol::fixtures::T0;
pub const DEADLINE: u64 = T0 + 60_000;

pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

pub fn constraints() -> Constraints {
    Constraints {
        max_cost: Some(100),
        deadline_ms: Some(DEADLINE),
        min_reliability_bps: Some(9_000),
        resources: Resources {
            cpu_millicores: Some(2_000),
            memory_bytes: Some(512 << 20),
            disk_bytes: None,
        },
    }
}

pub fn spec(strategy: Strategy) -> RequestSpec {
    let mut spec = RequestSpec::new("sha256", Payload::Inline(b"hello".to_vec()));
    spec.constraints = constraints();
    spec.strategy = strategy;
    spec.offer_window_ms = 1_000;
    spec.nonce = 7;
    spec
}

pub fn fitting_resources() -> Resources {
    Resources {
        cpu_millicores: Some(1_000),
        memory_bytes: Some(64 << 20),
        disk_bytes: None,
    }
}

/// An offer for `intent` by `key`, signed at `at`, valid for 20 s.
pub fn offer(
    intent: &SignedObject,
    key: &Keypair,
    cost: u64,
    eta_ms: u64,
    reliability_bps: u16,
    at: u64,
) -> SignedObject {
    offer_with(intent, key, at, |o| {
        o.cost = cost;
        o.eta_ms = eta_ms;
        o.reliability_bps = reliability_bps;
    })
}

pub fn offer_with(
    intent: &SignedObject,
    key: &Keypair,
    at: u64,
    edit: impl FnOnce(&mut Offer),
) -> SignedObject {
    let mut o = Offer {
        intent: intent.id(),
        cost: 50,
        eta_ms: 1_000,
        reliability_bps: 9_500,
        resources: fitting_resources(),
        expires_at_ms: at + 20_000,
    };
    edit(&mut o);
    Envelope {
        trace: Some(intent.trace_id()),
        parents: vec![intent.id()],
        signer: key.public(),
        timestamp_ms: at,
        body: Body::Offer(o),
    }
    .sign(key)
    .unwrap()
}

pub fn published(actions: &[Action]) -> Vec<SignedObject> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

pub fn sends(actions: &[Action]) -> Vec<(PublicKey, SignedObject)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, object } => Some((*to, object.clone())),
            _ => None,
        })
        .collect()
}

pub fn recorded(actions: &[Action]) -> Vec<SignedObject> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(o) => Some(o.clone()),
            _ => None,
        })
        .collect()
}

/// (offer, code, detail, sent to) of every reject sent.
/// Every offer rejected in `actions`: (offer, code, detail, to whom the reject went). One reject
/// object may name several offers; it is then sent once to each of their providers, in the
/// order of its entries.
pub fn rejects(actions: &[Action]) -> Vec<(ObjectId, RejectCode, String, PublicKey)> {
    let mut out = Vec::new();
    let mut sent_so_far: std::collections::HashMap<ObjectId, usize> = Default::default();
    for (to, o) in sends(actions) {
        let Body::Reject(r) = o.body() else {
            continue;
        };
        let nth = sent_so_far.entry(o.id()).or_default();
        if let Some((offer, code, detail)) = r.entries().nth(*nth) {
            out.push((offer, code, detail.to_owned(), to));
        }
        *nth += 1;
    }
    out
}

pub fn task_starts(actions: &[Action]) -> Vec<SignedObject> {
    sends(actions)
        .into_iter()
        .filter(|(_, o)| matches!(o.body(), Body::TaskStart(_)))
        .map(|(_, o)| o)
        .collect()
}

pub fn timers(actions: &[Action]) -> Vec<(u64, TimerKind)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTimer { at_ms, token } => Some((*at_ms, token.kind)),
            _ => None,
        })
        .collect()
}

pub fn finished(actions: &[Action]) -> Option<Outcome> {
    actions.iter().find_map(|a| match a {
        Action::Finished(o) => Some(o.clone()),
        _ => None,
    })
}

pub fn events_in(objects: &[SignedObject], event_type: &str) -> Vec<Event> {
    objects
        .iter()
        .filter_map(|o| match o.body() {
            Body::Event(e) if e.event_type == event_type => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub fn attr<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Every object round-trips through the wire format.
pub fn assert_decodes(objects: &[SignedObject]) {
    for o in objects {
        let back = SignedObject::decode(o.bytes()).unwrap();
        assert_eq!(&back, o);
    }
}
