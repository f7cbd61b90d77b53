//! Golden vectors of the vocabulary above the envelope (SPEC.md §8 to §12): one event of every
//! type, the ballot terms grammar, the receipt / done / offer rule, the trace bundle and the
//! header reader.
//!
//! The files in `tests/vectors/vocab/` are generated from `pvl_protocol::fixtures` and this
//! crate's vocabulary types, and this test fails on any difference. After an intended change,
//! regenerate with `PVL_UPDATE_VECTORS=1 cargo test -p pvl-protocol --test vocab_vectors` and
//! review the diff. `tests/vectors/check_vectors.py` checks the same files from SPEC.md's
//! rules alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use pvl_protocol::{
    Body, Bundle, Envelope, EventType, Keypair, Kind, ObjectId, ProposalTerms, PublicKey, Receipt,
    Settlement, SignedObject, fixtures, read_header, signing_input,
};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/vocab")
}

/// Writes (with `PVL_UPDATE_VECTORS`) or compares one vector file.
fn check_file(name: &str, generated: &Value) {
    let path = dir().join(format!("{name}.json"));
    if std::env::var_os("PVL_UPDATE_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        let text = serde_json::to_string_pretty(generated).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with PVL_UPDATE_VECTORS=1",
            path.display()
        )
    });
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        &stored, generated,
        "vector {name} differs from the implementation"
    );
}

fn seed_of(public: PublicKey) -> String {
    let mut keys = vec![
        fixtures::requester(),
        fixtures::provider(),
        fixtures::other_provider(),
    ];
    keys.extend(fixtures::committee());
    hex::encode(
        keys.into_iter()
            .find(|k| k.public() == public)
            .expect("a fixture key")
            .seed(),
    )
}

/// The same fields as the envelope vectors in `tests/vectors/*.json`.
fn object_vector(name: &str, object: &SignedObject) -> Value {
    json!({
        "name": name,
        "kind": object.kind().name(),
        "kind_code": object.kind().code(),
        "signer_seed": seed_of(object.signer()),
        "signer_public_key": object.signer().to_string(),
        "fields": object,
        "content_hex": hex::encode(object.content()),
        "signing_input_hex": hex::encode(signing_input(object.kind(), object.content())),
        "wire_hex": hex::encode(object.bytes()),
        "id": object.id().to_string(),
        "signature": hex::encode(object.signature()),
    })
}

fn sample(kind: Kind) -> SignedObject {
    fixtures::sample_objects()
        .unwrap()
        .into_iter()
        .find(|o| o.kind() == kind)
        .unwrap()
}

#[test]
fn event_vectors() {
    let events = fixtures::sample_events().unwrap();
    let types: Vec<EventType> = events
        .iter()
        .map(|o| match o.body() {
            Body::Event(e) => e.kind(),
            _ => panic!("not an event"),
        })
        .collect();
    assert_eq!(types, EventType::ALL, "one sample per type, in SPEC order");
    let mut out = Vec::new();
    for o in &events {
        let Body::Event(e) = o.body() else { panic!() };
        let kind = e.kind();
        assert!(
            e.unknown_attrs().is_empty(),
            "{kind}: {:?}",
            e.unknown_attrs()
        );
        assert!(
            e.missing_attrs().is_empty(),
            "{kind}: {:?}",
            e.missing_attrs()
        );
        let signer = match kind.signed_by() {
            pvl_protocol::SignedBy::Requester => fixtures::requester().public(),
            pvl_protocol::SignedBy::Provider => fixtures::provider().public(),
            pvl_protocol::SignedBy::Anyone => panic!("known types have a signer"),
        };
        assert_eq!(o.signer(), signer);
        let mut v = object_vector(kind.as_str(), o);
        v["event_type"] = json!(kind);
        v["signed_by"] = json!(match kind.signed_by() {
            pvl_protocol::SignedBy::Provider => "provider",
            _ => "requester",
        });
        v["required_attrs"] = json!(kind.required_attrs().collect::<Vec<_>>());
        v["optional_attrs"] = json!(kind.optional_attrs());
        v["attr_prefixes"] = json!(kind.attr_prefixes());
        out.push(v);
    }
    check_file(
        "events",
        &json!({
            "name": "events",
            "requester_seed": hex::encode(fixtures::requester().seed()),
            "provider_seed": hex::encode(fixtures::provider().seed()),
            "trace_id": fixtures::intent().unwrap().id().to_string(),
            "events": out,
        }),
    );
}

#[test]
fn ballot_terms_vectors() {
    let offer = sample(Kind::Offer);
    let Body::Offer(o) = offer.body() else {
        panic!()
    };
    let terms = ProposalTerms {
        capability: "sha256".into(),
        provider: offer.signer(),
        offer: offer.id(),
        cost: o.cost,
        eta_ms: o.eta_ms,
        input_sha256: pvl_protocol::sha256(b"hello, pervasive world"),
    };
    let action = terms.to_action();
    assert_eq!(ProposalTerms::parse(&action).unwrap(), terms);
    let invalid: Vec<(String, &str)> = vec![
        (
            action.replace(" cost=", "  cost="),
            "two spaces between fields",
        ),
        (
            action.replacen("award", "pay", 1),
            "the verb is not `award`",
        ),
        (
            action.replace(&format!(" eta_ms={}", o.eta_ms), ""),
            "eta_ms missing",
        ),
        (format!("{action} cost={}", o.cost), "cost given twice"),
        (format!("{action} note=x"), "an unknown field"),
        (
            action.replace(&format!("cost={}", o.cost), &format!("cost=0{}", o.cost)),
            "a leading zero",
        ),
        (
            action.replace(
                &format!("offer={}", offer.id()),
                &format!("offer={}", offer.id().to_string().to_uppercase()),
            ),
            "upper-case hex",
        ),
        (
            action.replace(
                &format!("cost={} eta_ms={}", o.cost, o.eta_ms),
                &format!("eta_ms={} cost={}", o.eta_ms, o.cost),
            ),
            "fields out of order",
        ),
    ];
    for (text, why) in &invalid {
        assert!(ProposalTerms::parse(text).is_err(), "{why}: {text}");
    }
    let intent = fixtures::intent().unwrap();
    let requester = fixtures::requester();
    let proposal = Envelope {
        trace: Some(intent.id()),
        parents: vec![offer.id()],
        signer: requester.public(),
        timestamp_ms: fixtures::T0 + 500,
        body: Body::Proposal(pvl_protocol::Proposal {
            subject: offer.id(),
            round: 1,
            committee: pvl_protocol::Committee {
                members: fixtures::committee().iter().map(Keypair::public).collect(),
                threshold: 2,
            },
            action: action.clone(),
            deadline_ms: fixtures::T0 + 5_500,
        }),
    }
    .sign(&requester)
    .unwrap();
    let Body::Proposal(body) = proposal.body() else {
        panic!()
    };
    assert_eq!(ProposalTerms::from_proposal(body).unwrap(), terms);
    check_file(
        "ballot-terms",
        &json!({
            "name": "ballot-terms",
            "valid": [{
                "action": action,
                "terms": {
                    "capability": terms.capability,
                    "provider": terms.provider.to_string(),
                    "offer": terms.offer.to_string(),
                    "cost": terms.cost,
                    "eta_ms": terms.eta_ms,
                    "input_sha256": hex::encode(terms.input_sha256),
                },
            }],
            "invalid": invalid
                .iter()
                .map(|(text, why)| json!({"action": text, "why": why}))
                .collect::<Vec<_>>(),
            "proposal": object_vector("proposal-with-terms", &proposal),
        }),
    );
}

#[test]
fn settlement_vectors() {
    let objects = fixtures::sample_objects().unwrap();
    let offer = sample(Kind::Offer);
    let done = sample(Kind::TaskDone);
    let receipt = objects
        .iter()
        .find(|o| o.kind() == Kind::Receipt)
        .unwrap()
        .clone();
    let (Body::Offer(of), Body::TaskDone(d), Body::Receipt(r)) =
        (offer.body(), done.body(), receipt.body())
    else {
        panic!()
    };
    // A receipt charging more than the offer asked: it does not agree.
    let provider = fixtures::provider();
    let greedy = Envelope {
        trace: Some(receipt.trace_id()),
        parents: vec![done.id()],
        signer: provider.public(),
        timestamp_ms: receipt.timestamp_ms(),
        body: Body::Receipt(Receipt {
            cost: of.cost + 1,
            ..r.clone()
        }),
    }
    .sign(&provider)
    .unwrap();
    let Body::Receipt(g) = greedy.body() else {
        panic!()
    };
    let case = |name: &str, receipt: Option<(&SignedObject, &Receipt)>| {
        let s = Settlement {
            offer: Some(of),
            done: Some(d),
            receipt: receipt.map(|(_, r)| r),
        };
        let (cost, source) = s.cost().unwrap();
        json!({
            "name": name,
            "offer_wire_hex": hex::encode(offer.bytes()),
            "done_wire_hex": hex::encode(done.bytes()),
            "receipt_wire_hex": receipt.map(|(o, _)| hex::encode(o.bytes())),
            "expected": {
                "agrees": s.check().is_ok(),
                "status": s.status().map(|st| if st.is_ok() { "ok" } else { "failed" }),
                "started_at_ms": s.timings().map(|t| t.0),
                "finished_at_ms": s.timings().map(|t| t.1),
                "cost": cost,
                "cost_source": source,
                "output_sha256": s.output().map(|p| hex::encode(p.sha256())),
            },
        })
    };
    let cases = vec![
        case("receipt-agrees", Some((&receipt, r))),
        case("no-receipt", None),
        case("receipt-overcharges", Some((&greedy, g))),
    ];
    assert_eq!(cases[0]["expected"]["cost_source"], "receipt");
    assert_eq!(cases[1]["expected"]["cost_source"], "offer");
    assert_eq!(cases[2]["expected"]["agrees"], false);
    assert_eq!(cases[2]["expected"]["output_sha256"], Value::Null);
    check_file("settlement", &json!({"name": "settlement", "cases": cases}));
}

#[test]
fn bundle_vectors() {
    let objects = fixtures::sample_objects().unwrap();
    // A bundle holds one trace: the sample trace without the capability ad (its own root).
    let trace: Vec<SignedObject> = objects
        .into_iter()
        .filter(|o| o.kind() != Kind::CapabilityAd)
        .collect();
    let bundle = Bundle::of_trace(&trace);
    let bytes = bundle.encode().unwrap();
    assert_eq!(Bundle::decode(&bytes).unwrap(), bundle);
    let mut loose = vec![0x98, 0x04];
    loose.extend_from_slice(&bytes[1..]);
    let mut wrong_magic = bytes.clone();
    let at = wrong_magic
        .windows(16)
        .position(|w| w == b"pvl-trace-bundle")
        .unwrap();
    wrong_magic[at + 15] = b'f';
    let mut wrong_version = bytes.clone();
    wrong_version[at + 16] = 0x02;
    let short_trace = Bundle {
        trace: ObjectId([0; 32]),
        objects: vec![],
    }
    .encode()
    .unwrap();
    // [.., 0x58 0x20 <32 bytes>, 0x80]: declare and keep 31 bytes of the trace id.
    let mut short_trace = short_trace;
    let n = short_trace.len();
    short_trace[n - 34] = 31;
    short_trace.remove(n - 2);
    let invalid = vec![
        (hex::encode(&loose), "non-canonical array head"),
        (hex::encode(&wrong_magic), "wrong magic"),
        (hex::encode(&wrong_version), "unknown version 2"),
        (hex::encode(&short_trace), "trace id of 31 bytes"),
        (hex::encode(&bytes[..bytes.len() - 1]), "truncated"),
    ];
    for (hexed, why) in &invalid {
        assert!(
            Bundle::decode(&hex::decode(hexed).unwrap()).is_err(),
            "{why}"
        );
    }
    check_file(
        "bundle",
        &json!({
            "name": "bundle",
            "trace": bundle.trace.to_string(),
            "object_ids": trace.iter().map(|o| o.id().to_string()).collect::<Vec<_>>(),
            "bundle_hex": hex::encode(&bytes),
            "invalid": invalid
                .iter()
                .map(|(h, why)| json!({"bundle_hex": h, "why": why}))
                .collect::<Vec<_>>(),
        }),
    );
}

#[test]
fn header_vectors() {
    let objects = fixtures::sample_objects().unwrap();
    let headers: Vec<Value> = objects
        .iter()
        .map(|o| {
            let h = read_header(o.bytes()).unwrap();
            assert_eq!(h.id, o.id());
            json!({
                "wire_hex": hex::encode(o.bytes()),
                "header": {
                    "id": h.id.to_string(),
                    "kind": h.kind.name(),
                    "kind_code": h.kind.code(),
                    "trace": h.trace.map(|t| t.to_string()),
                    "trace_id": h.trace_id().to_string(),
                    "parents": h.parents.iter().map(ObjectId::to_string).collect::<Vec<_>>(),
                    "signer": h.signer.to_string(),
                    "timestamp_ms": h.timestamp_ms,
                    "countersigned": h.countersigned,
                },
            })
        })
        .collect();
    let intent = fixtures::intent().unwrap();
    let mut bad_version = intent.bytes().to_vec();
    // wire = [bstr(content), sig]; content starts 0x87 0x01: make the version 2.
    let at = bad_version
        .windows(2)
        .position(|w| w == [0x87, 0x01])
        .unwrap();
    bad_version[at + 1] = 0x02;
    let invalid = vec![
        (
            hex::encode(&intent.bytes()[..intent.bytes().len() - 1]),
            "truncated",
        ),
        (hex::encode(&bad_version), "unknown version 2"),
        (hex::encode([0x80]), "an empty array"),
    ];
    for (hexed, why) in &invalid {
        assert!(read_header(&hex::decode(hexed).unwrap()).is_err(), "{why}");
    }
    check_file(
        "headers",
        &json!({
            "name": "headers",
            "headers": headers,
            "invalid": invalid
                .iter()
                .map(|(h, why)| json!({"wire_hex": h, "why": why}))
                .collect::<Vec<_>>(),
        }),
    );
}
