//! Behaviour of signed objects: round trips, tampering, replay, expiry, structural rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pvl_protocol::fixtures::{self, T0};
use pvl_protocol::{
    Body, Envelope, Event, Keypair, Kind, LiveValidator, MAX_CLOCK_SKEW_MS, MAX_OBJECT_SIZE,
    ObjectId, ProtocolError, QuorumCert, SignedObject, check_fresh, check_parent, check_signer,
};

fn samples() -> Vec<SignedObject> {
    fixtures::sample_objects().unwrap()
}

fn of_kind(kind: Kind) -> SignedObject {
    samples().into_iter().find(|o| o.kind() == kind).unwrap()
}

#[test]
fn the_samples_cover_every_kind_and_round_trip() {
    let samples = samples();
    for kind in Kind::ALL {
        assert!(
            samples.iter().any(|o| o.kind() == kind),
            "no sample of {kind}"
        );
    }
    for object in &samples {
        let decoded = SignedObject::decode(object.bytes()).unwrap();
        assert_eq!(&decoded, object);
        assert_eq!(decoded.envelope(), object.envelope());
        assert_eq!(decoded.id(), object.id());
        assert_eq!(decoded.id(), ObjectId::of_content(decoded.content()));
    }
}

#[test]
fn trace_ids_link_every_sample_to_the_root_intent() {
    let samples = samples();
    let intent = &samples[0];
    assert!(intent.is_root());
    assert_eq!(intent.trace_id(), intent.id());
    for object in samples.iter().filter(|o| o.kind() != Kind::CapabilityAd) {
        assert_eq!(object.trace_id(), intent.id(), "{}", object.kind());
    }
}

#[test]
fn flipping_any_bit_of_an_offer_breaks_it() {
    let offer = of_kind(Kind::Offer);
    let bytes = offer.bytes().to_vec();
    for bit in 0..bytes.len() * 8 {
        let mut tampered = bytes.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert!(
            SignedObject::decode(&tampered).is_err(),
            "flipping bit {bit} still decodes"
        );
    }
}

#[test]
fn a_signature_for_one_kind_does_not_verify_as_another() {
    // A vote and a reject both hold an id, an integer-like field and text; re-labelling the
    // kind byte of a signed vote must not produce a valid object of another kind even when
    // the body happens to parse.
    let vote = of_kind(Kind::Vote);
    let content = vote.content().to_vec();
    // content = [1, kind, ...]: byte 0 is the array head, byte 1 the version, byte 2 the kind.
    assert_eq!(content[2], Kind::Vote.code());
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Vote) {
        let mut relabelled = content.clone();
        relabelled[2] = kind.code();
        let wire = rebuild_wire(&relabelled, &vote.signature());
        assert!(
            SignedObject::decode(&wire).is_err(),
            "vote re-labelled as {kind} decodes"
        );
    }
}

/// Builds `[content, signature]` by hand: a two-item array of byte strings.
fn rebuild_wire(content: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut wire = vec![0x82];
    push_bstr_head(&mut wire, content.len());
    wire.extend_from_slice(content);
    wire.extend_from_slice(&[0x58, 64]);
    wire.extend_from_slice(signature);
    wire
}

fn push_bstr_head(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xff => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

#[test]
fn non_canonical_encodings_are_refused() {
    let offer = of_kind(Kind::Offer);
    // Same content, but its length written in a longer head than necessary.
    let content = offer.content();
    let mut wire = vec![0x82, 0x59];
    wire.extend_from_slice(&(content.len() as u16).to_be_bytes());
    wire.extend_from_slice(content);
    wire.extend_from_slice(&[0x58, 64]);
    wire.extend_from_slice(&offer.signature());
    if content.len() < 256 {
        assert_eq!(
            SignedObject::decode(&wire),
            Err(ProtocolError::NonCanonical("wire array"))
        );
    }
    // Indefinite-length outer array.
    let mut indefinite = vec![0x9f];
    indefinite.extend_from_slice(&offer.bytes()[1..]);
    indefinite.push(0xff);
    assert!(SignedObject::decode(&indefinite).is_err());
}

#[test]
fn unknown_version_and_kind_are_named() {
    let offer = of_kind(Kind::Offer);
    let mut content = offer.content().to_vec();
    content[1] = 2; // version
    let err = SignedObject::decode(&rebuild_wire(&content, &offer.signature())).unwrap_err();
    assert_eq!(err, ProtocolError::UnknownVersion(2));
    let mut content = offer.content().to_vec();
    content[2] = 0x17; // kind 23
    let err = SignedObject::decode(&rebuild_wire(&content, &offer.signature())).unwrap_err();
    assert_eq!(err, ProtocolError::UnknownKind(23));
}

#[test]
fn oversize_and_garbage_inputs_are_typed_errors() {
    let big = vec![0u8; MAX_OBJECT_SIZE + 1];
    assert!(matches!(
        SignedObject::decode(&big),
        Err(ProtocolError::Oversize { .. })
    ));
    assert!(matches!(
        SignedObject::decode(&[]),
        Err(ProtocolError::MalformedCbor(_))
    ));
    assert!(matches!(
        SignedObject::decode(&[0xff]),
        Err(ProtocolError::MalformedCbor(_))
    ));
    assert!(matches!(
        SignedObject::decode(&[0x01]),
        Err(ProtocolError::InvalidField { field: "wire", .. })
    ));
    // Trailing bytes after a valid object.
    let mut trailing = of_kind(Kind::Offer).into_bytes();
    trailing.push(0);
    assert!(matches!(
        SignedObject::decode(&trailing),
        Err(ProtocolError::MalformedCbor(_))
    ));
}

#[test]
fn a_forged_signature_is_refused_with_the_object_id() {
    let offer = of_kind(Kind::Offer);
    let mut signature = offer.signature();
    signature[10] ^= 0x40;
    let err = SignedObject::decode(&rebuild_wire(offer.content(), &signature)).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::BadSignature {
            which: "signature",
            id: offer.id()
        }
    );
}

#[test]
fn receipts_are_countersigned_by_their_requester_only() {
    let receipt = of_kind(Kind::Receipt);
    assert!(receipt.is_countersigned());
    // Stripping the countersignature leaves a valid, provider-signed receipt with the same id.
    let bare =
        SignedObject::decode(&rebuild_wire(receipt.content(), &receipt.signature())).unwrap();
    assert!(!bare.is_countersigned());
    assert_eq!(bare.id(), receipt.id());
    // Only the requester named in the receipt may countersign.
    let err = bare.countersign(&fixtures::provider()).unwrap_err();
    assert!(matches!(err, ProtocolError::SignerMismatch { .. }));
    let again = bare.countersign(&fixtures::requester()).unwrap();
    assert_eq!(again, receipt);
    // A countersignature by anyone else does not verify.
    let mut forged = bare.bytes().to_vec();
    forged[0] = 0x83;
    forged.extend_from_slice(&[0x58, 64]);
    forged.extend_from_slice(&receipt.signature()); // the provider's signature is not a valid cosig
    assert_eq!(
        SignedObject::decode(&forged).unwrap_err(),
        ProtocolError::BadSignature {
            which: "countersignature",
            id: receipt.id()
        }
    );
    // Other kinds cannot carry a countersignature at all.
    let offer = of_kind(Kind::Offer);
    assert!(matches!(
        offer.countersign(&fixtures::requester()),
        Err(ProtocolError::WrongKind { .. })
    ));
    let mut cosigned_offer = offer.bytes().to_vec();
    cosigned_offer[0] = 0x83;
    cosigned_offer.extend_from_slice(&[0x58, 64]);
    cosigned_offer.extend_from_slice(&offer.signature());
    assert!(matches!(
        SignedObject::decode(&cosigned_offer),
        Err(ProtocolError::InvalidField {
            field: "wire.countersignature",
            ..
        })
    ));
}

#[test]
fn the_live_validator_refuses_replays_expired_and_future_objects() {
    let offer = of_kind(Kind::Offer);
    let mut live = LiveValidator::new(1_000);
    let now = offer.timestamp_ms() + 10;
    live.accept(offer.bytes(), now).unwrap();
    assert_eq!(
        live.accept(offer.bytes(), now + 1),
        Err(ProtocolError::Replayed(offer.id()))
    );

    let Body::Offer(body) = offer.body() else {
        unreachable!()
    };
    let after_expiry = body.expires_at_ms + 1;
    assert!(matches!(
        LiveValidator::new(10).accept(offer.bytes(), after_expiry),
        Err(ProtocolError::Expired { .. })
    ));
    let long_before = offer.timestamp_ms() - MAX_CLOCK_SKEW_MS - 1;
    assert!(matches!(
        check_fresh(&offer, long_before),
        Err(ProtocolError::FromTheFuture { .. })
    ));
    // Within the skew bound a slightly future-dated object is fine.
    check_fresh(&offer, offer.timestamp_ms() - MAX_CLOCK_SKEW_MS).unwrap();
    // Objects without an expiry of their own go stale after the maximum message age.
    let progress = of_kind(Kind::TaskProgress);
    check_fresh(&progress, progress.timestamp_ms() + 60_000).unwrap();
    assert!(check_fresh(&progress, progress.timestamp_ms() + 3_600_000).is_err());
}

#[test]
fn the_replay_guard_stays_bounded_and_forgets_only_what_expired() {
    let intent = fixtures::intent().unwrap();
    let provider = fixtures::provider();
    let mut live = LiveValidator::new(8);
    let offers: Vec<_> = (0..20)
        .map(|i| fixtures::offer_for(&intent, &provider, i, T0 + 100 + i).unwrap())
        .collect();
    for offer in &offers {
        live.accept(offer.bytes(), T0 + 200).unwrap();
    }
    assert_eq!(live.replay_guard().len(), 8);
    assert_eq!(live.replay_guard().evicted(), 12);
    // The most recent ones are still remembered.
    assert_eq!(
        live.accept(offers[19].bytes(), T0 + 201),
        Err(ProtocolError::Replayed(offers[19].id()))
    );
}

#[test]
fn parents_must_share_the_trace_and_roles_the_signer() {
    let samples = samples();
    let intent = &samples[0];
    let offer = &samples[1];
    check_parent(offer, intent).unwrap();
    let ad = samples
        .iter()
        .find(|o| o.kind() == Kind::CapabilityAd)
        .unwrap();
    assert_eq!(
        check_parent(offer, ad),
        Err(ProtocolError::ParentOutsideTrace {
            id: offer.id(),
            parent: ad.id()
        })
    );
    check_signer(offer, &fixtures::provider().public()).unwrap();
    assert!(matches!(
        check_signer(offer, &fixtures::requester().public()),
        Err(ProtocolError::SignerMismatch { .. })
    ));
}

#[test]
fn signing_enforces_the_signer_and_the_structural_rules() {
    let requester = fixtures::requester();
    let event = Body::Event(Event {
        event_type: "note".into(),
        about: vec![],
        message: "hi".into(),
        attrs: vec![],
    });
    let envelope = |trace, parents: Vec<ObjectId>, signer: &Keypair| Envelope {
        trace,
        parents,
        signer: signer.public(),
        timestamp_ms: T0,
        body: event.clone(),
    };
    // A non-root kind without a trace.
    assert!(matches!(
        envelope(None, vec![], &requester).sign(&requester),
        Err(ProtocolError::InvalidField {
            field: "envelope.trace",
            ..
        })
    ));
    // Inside a trace but without a parent.
    let root = fixtures::intent().unwrap();
    assert!(matches!(
        envelope(Some(root.id()), vec![], &requester).sign(&requester),
        Err(ProtocolError::InvalidField {
            field: "envelope.parents",
            ..
        })
    ));
    // Duplicate parents.
    assert!(
        envelope(Some(root.id()), vec![root.id(), root.id()], &requester)
            .sign(&requester)
            .is_err()
    );
    // Signed by a key other than the stated signer.
    assert!(matches!(
        envelope(Some(root.id()), vec![root.id()], &requester).sign(&fixtures::provider()),
        Err(ProtocolError::SignerMismatch { .. })
    ));
    envelope(Some(root.id()), vec![root.id()], &requester)
        .sign(&requester)
        .unwrap();
}

#[test]
fn a_quorum_certificate_below_threshold_is_invalid() {
    let cert = of_kind(Kind::QuorumCert);
    let Body::QuorumCert(body) = cert.body() else {
        unreachable!()
    };
    body.check().unwrap();
    let short = QuorumCert {
        proposal: body.proposal.clone(),
        votes: body.votes[..1].to_vec(),
    };
    assert!(matches!(
        short.check(),
        Err(ProtocolError::InvalidField { .. })
    ));
    let doubled = QuorumCert {
        proposal: body.proposal.clone(),
        votes: vec![body.votes[0].clone(), body.votes[0].clone()],
    };
    assert!(doubled.check().is_err());
    let requester = fixtures::requester();
    let signed = Envelope {
        trace: cert.envelope().trace,
        parents: cert.parents().to_vec(),
        signer: requester.public(),
        timestamp_ms: T0 + 700,
        body: Body::QuorumCert(short),
    }
    .sign(&requester);
    assert!(
        signed.is_err(),
        "a short certificate must not even be signable"
    );
}

#[test]
fn batch_decoding_agrees_with_single_decoding() {
    let samples = samples();
    let mut inputs: Vec<Vec<u8>> = samples.iter().map(|o| o.bytes().to_vec()).collect();
    let all: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    for (result, original) in SignedObject::decode_batch(&all).into_iter().zip(&samples) {
        assert_eq!(&result.unwrap(), original);
    }
    // Break one signature: only that input fails.
    let offer_index = 1;
    let last = inputs[offer_index].len() - 1;
    inputs[offer_index][last] ^= 1;
    let all: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let results = SignedObject::decode_batch(&all);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.is_err(), i == offer_index, "input {i}: {result:?}");
    }
}

#[test]
fn trusted_decoding_checks_everything_but_the_signatures() {
    for original in samples() {
        let trusted = SignedObject::decode_trusted(original.bytes()).unwrap();
        assert_eq!(trusted, original);
        assert_eq!(trusted.id(), original.id());
    }
    // A flipped signature bit: refused by decode, accepted (as documented) by the trusted path.
    let offer = of_kind(Kind::Offer);
    let mut forged = offer.bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(SignedObject::decode(&forged).is_err());
    assert_eq!(
        SignedObject::decode_trusted(&forged).unwrap().id(),
        offer.id()
    );
    // Structure is still checked: truncation and trailing bytes fail.
    assert!(SignedObject::decode_trusted(&offer.bytes()[..offer.bytes().len() - 3]).is_err());
    let mut longer = offer.bytes().to_vec();
    longer.push(0);
    assert!(SignedObject::decode_trusted(&longer).is_err());
}

#[test]
fn json_view_names_the_kind_and_ids() {
    let receipt = of_kind(Kind::Receipt);
    let json = serde_json::to_value(&receipt).unwrap();
    assert_eq!(json["kind"], "receipt");
    assert_eq!(json["id"], receipt.id().to_string());
    assert_eq!(json["body"]["kind"], "receipt");
    assert!(json["countersignature"].is_string());
}

#[test]
fn what_cannot_be_decoded_cannot_be_signed() {
    // A message longer than MAX_TEXT_LEN would be refused by every receiver, so signing it
    // fails instead of producing an object nobody accepts.
    let root = fixtures::intent().unwrap();
    let requester = fixtures::requester();
    let long = Envelope {
        trace: Some(root.id()),
        parents: vec![root.id()],
        signer: requester.public(),
        timestamp_ms: T0,
        body: Body::Event(Event {
            event_type: "note".into(),
            about: vec![],
            message: "x".repeat(pvl_protocol::MAX_TEXT_LEN + 1),
            attrs: vec![],
        }),
    };
    assert!(matches!(
        long.sign(&requester),
        Err(ProtocolError::InvalidField {
            field: "event.message",
            ..
        })
    ));
}

/// Re-signs `content` (already encoded) with `key`, bypassing every check of `sign`.
fn raw_signed(content: &[u8], kind: Kind, key: &Keypair) -> Vec<u8> {
    let signing = ed25519_dalek::SigningKey::from_bytes(&key.seed());
    let input = pvl_protocol::signing_input(kind, content);
    let signature = ed25519_dalek::Signer::sign(&signing, &input).to_bytes();
    rebuild_wire(content, &signature)
}

/// The content of `object` with its body array edited by `edit`.
fn with_body(object: &SignedObject, edit: impl FnOnce(&mut Vec<ciborium::Value>)) -> Vec<u8> {
    let mut content: ciborium::Value = ciborium::from_reader(object.content()).unwrap();
    let ciborium::Value::Array(fields) = &mut content else {
        panic!()
    };
    let ciborium::Value::Array(body) = &mut fields[6] else {
        panic!()
    };
    edit(body);
    let mut out = Vec::new();
    ciborium::into_writer(&content, &mut out).unwrap();
    out
}

fn body_len(object: &SignedObject) -> usize {
    let mut n = 0;
    with_body(object, |b| n = b.len());
    n
}

#[test]
fn optional_trailing_fields_are_left_out_when_absent() {
    let [sampled, reject_two]: [SignedObject; 2] =
        fixtures::later_samples().unwrap().try_into().unwrap();
    for object in [&sampled, &reject_two] {
        assert_eq!(&SignedObject::decode(object.bytes()).unwrap(), object);
    }
    assert_eq!(body_len(&fixtures::intent().unwrap()), 8);
    assert_eq!(body_len(&sampled), 9);
    assert_eq!(body_len(&of_kind(Kind::Reject)), 3);
    assert_eq!(body_len(&reject_two), 4);
    let Body::Reject(r) = reject_two.body() else {
        unreachable!()
    };
    assert_eq!(r.entries().count(), 2);
    assert!(r.reason_for(&r.more[0].offer).is_some());
    // The JSON view shows the extra fields only when present.
    let json = serde_json::to_value(&reject_two).unwrap();
    assert_eq!(json["body"]["more"][0]["code"], "over-budget");
    let json = serde_json::to_value(of_kind(Kind::Reject)).unwrap();
    assert!(json["body"].get("more").is_none());
    let json = serde_json::to_value(fixtures::intent().unwrap()).unwrap();
    assert!(json["body"].get("audience").is_none());
}

#[test]
fn a_present_trailing_field_is_never_null_or_empty() {
    let requester = fixtures::requester();
    let reject = of_kind(Kind::Reject);
    for extra in [ciborium::Value::Null, ciborium::Value::Array(vec![])] {
        let content = with_body(&reject, |b| b.push(extra.clone()));
        assert!(
            SignedObject::decode(&raw_signed(&content, Kind::Reject, &requester)).is_err(),
            "{extra:?}"
        );
    }
    let intent = fixtures::intent().unwrap();
    let content = with_body(&intent, |b| b.push(ciborium::Value::Null));
    assert!(SignedObject::decode(&raw_signed(&content, Kind::Intent, &requester)).is_err());
    // Wanted must be below the population.
    for (wanted, of) in [(0u32, 5u32), (5, 5), (6, 5)] {
        let content = with_body(&intent, |b| {
            b.push(ciborium::Value::Array(vec![wanted.into(), of.into()]))
        });
        assert!(
            SignedObject::decode(&raw_signed(&content, Kind::Intent, &requester)).is_err(),
            "{wanted}/{of}"
        );
    }
}

#[test]
fn a_reject_names_each_offer_once_and_at_most_32() {
    let reject = of_kind(Kind::Reject);
    let requester = fixtures::requester();
    let Body::Reject(r) = reject.body() else {
        unreachable!()
    };
    let sign_with = |more: Vec<pvl_protocol::RejectedOffer>| {
        Envelope {
            trace: reject.envelope().trace,
            parents: reject.parents().to_vec(),
            signer: requester.public(),
            timestamp_ms: reject.timestamp_ms(),
            body: Body::Reject(pvl_protocol::Reject { more, ..r.clone() }),
        }
        .sign(&requester)
    };
    let entry = |n: u8| pvl_protocol::RejectedOffer {
        offer: ObjectId([n; 32]),
        code: pvl_protocol::RejectCode::Expired,
        detail: "expired".into(),
    };
    assert!(sign_with(vec![entry(1), entry(1)]).is_err(), "named twice");
    let twice = pvl_protocol::RejectedOffer {
        offer: r.offer,
        ..entry(0)
    };
    assert!(
        sign_with(vec![twice]).is_err(),
        "the first offer named again"
    );
    assert!(sign_with((1..32).map(entry).collect()).is_ok(), "32 offers");
    assert!(
        sign_with((1..33).map(entry).collect()).is_err(),
        "33 offers"
    );
}

#[test]
fn an_audience_includes_about_its_share_of_providers() {
    let intent = fixtures::sampled_intent().unwrap();
    let Body::Intent(i) = intent.body() else {
        unreachable!()
    };
    let audience = i.audience.unwrap();
    assert_eq!(audience, pvl_protocol::Audience::new(2, 5).unwrap());
    assert_eq!(pvl_protocol::Audience::new(5, 5), None);
    let n = 4000u32;
    let included = (0..n)
        .filter(|k| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&k.to_be_bytes());
            audience.includes(&intent.id(), &Keypair::from_seed(seed).public())
        })
        .count();
    // 2/5 of 4000 = 1600, standard deviation about 31.
    assert!((1450..=1750).contains(&included), "{included}");
    // The draw depends on the intent id: another intent asks other providers.
    let other = fixtures::intent().unwrap();
    let key = fixtures::provider().public();
    assert_ne!(
        pvl_protocol::Audience::draw(&intent.id(), &key),
        pvl_protocol::Audience::draw(&other.id(), &key)
    );
}
