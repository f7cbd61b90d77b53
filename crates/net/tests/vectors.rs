//! Golden vectors of the network protocol (SPEC.md Part III): the direct-message
//! acknowledgement (§14.3), the frames of a direct-message session (§14.6), the gossip message id (§13.2) and the peer id of a signing key
//! (§15.2).
//!
//! The files in `protocol/tests/vectors/net/` are generated here from pvl-net's own functions,
//! and this test fails on any difference. After an intended change, regenerate with
//! `PVL_UPDATE_VECTORS=1 cargo test -p pvl-net --test vectors` and review the diff.
//! `protocol/tests/vectors/check_vectors.py` checks the same files from SPEC.md's rules alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use asynchronous_codec::{Decoder, Encoder};
use bytes::BytesMut;
use pvl_net::{
    Ack, AckCodec, AckFrame, MAX_ACK_REASON_LEN, MessageCodec, MessageFrame, TOPIC_ALL,
    capability_topic, gossip_message_id, peer_id_of, public_key_of,
};
use pvl_protocol::{Body, Keypair, fixtures};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protocol/tests/vectors/net")
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

fn ack_case(name: &str, ack: Ack, reason: Option<&str>) -> Value {
    let bytes = ack.encode();
    assert_eq!(Ack::decode(&bytes).unwrap(), decoded(&ack), "{name}");
    let mut case = json!({
        "name": name,
        "status": bytes[0],
        "ack_hex": hex::encode(&bytes),
    });
    if let Some(reason) = reason {
        case["reason"] = json!(reason);
        case["reason_hex"] = json!(hex::encode(reason.as_bytes()));
        case["sent_reason"] = json!(String::from_utf8(bytes[1..].to_vec()).unwrap());
    }
    case
}

/// What a receiver reads back: the reason as it was cut.
fn decoded(ack: &Ack) -> Ack {
    match ack {
        Ack::Refused(reason) => {
            let mut end = reason.len().min(MAX_ACK_REASON_LEN);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            Ack::Refused(reason[..end].to_owned())
        }
        other => other.clone(),
    }
}

/// Encodes `frame` with `codec`, checks that it decodes back to itself, and returns the wire
/// bytes.
fn round_trip<C, F>(mut codec: C, frame: F) -> BytesMut
where
    C: for<'a> Encoder<Item<'a> = F, Error = std::io::Error>
        + Decoder<Item = F, Error = std::io::Error>,
    F: Clone + PartialEq + std::fmt::Debug,
{
    let mut wire = BytesMut::new();
    codec.encode(frame.clone(), &mut wire).unwrap();
    let mut read = wire.clone();
    assert_eq!(codec.decode(&mut read).unwrap(), Some(frame));
    wire
}

#[test]
fn session_frames() {
    let intent = fixtures::intent().unwrap();
    let objects: [(&str, u32, &[u8]); 3] = [
        ("intent", 1, intent.bytes()),
        ("empty-object", 2, b""),
        ("largest-id", u32::MAX, b"\xa0"),
    ];
    let messages: Vec<Value> = objects
        .iter()
        .map(|(name, id, object)| {
            let frame = MessageFrame {
                id: *id,
                object: bytes::Bytes::copy_from_slice(object),
            };
            let wire = round_trip(MessageCodec, frame);
            json!({
                "name": name,
                "id": id,
                "object_hex": hex::encode(object),
                "frame_hex": hex::encode(&wire),
            })
        })
        .collect();
    let answers = [
        ("accepted", 1, Ack::Accepted),
        ("duplicate", 2, Ack::Duplicate),
        ("refused", 0xdead_beef, Ack::Refused("bad signature".into())),
    ];
    let acks: Vec<Value> = answers
        .iter()
        .map(|(name, id, ack)| {
            let frame = AckFrame {
                id: *id,
                ack: Ok(ack.clone()),
            };
            let wire = round_trip(AckCodec, frame);
            json!({
                "name": name,
                "id": id,
                "ack_hex": hex::encode(ack.encode()),
                "frame_hex": hex::encode(&wire),
            })
        })
        .collect();
    // Headers a reader refuses: the session ends.
    let bad_messages = ["0000000100100001", "00000001ffffffff"];
    for header in bad_messages {
        let mut read = BytesMut::from(&hex::decode(header).unwrap()[..]);
        assert!(MessageCodec.decode(&mut read).is_err(), "{header}");
    }
    let bad_acks = ["000000010000", "000000010402"];
    for header in bad_acks {
        let mut read = BytesMut::from(&hex::decode(header).unwrap()[..]);
        assert!(AckCodec.decode(&mut read).is_err(), "{header}");
    }
    check_file(
        "session",
        &json!({
            "spec": "SPEC.md section 14.6",
            "protocol": pvl_net::SESSION_PROTOCOL.as_ref(),
            "max_object_bytes": pvl_protocol::MAX_OBJECT_SIZE,
            "max_unanswered": pvl_net::MAX_UNANSWERED,
            "messages": messages,
            "acks": acks,
            "malformed_message_headers_hex": bad_messages,
            "malformed_ack_headers_hex": bad_acks,
        }),
    );
}

#[test]
fn acknowledgements() {
    let ascii = "bad signature";
    // 3-byte characters: 1024 is not a character boundary, so the reason is cut to 1023 bytes.
    let euros = "\u{20ac}".repeat(400);
    // Exactly 1024 bytes of 2-byte characters: sent whole.
    let exact = "\u{e9}".repeat(512);
    let cases = vec![
        ack_case("accepted", Ack::Accepted, None),
        ack_case("duplicate", Ack::Duplicate, None),
        ack_case("refused-ascii", Ack::Refused(ascii.into()), Some(ascii)),
        ack_case(
            "refused-empty-reason",
            Ack::Refused(String::new()),
            Some(""),
        ),
        ack_case(
            "refused-utf8-cut-on-a-char-boundary",
            Ack::Refused(euros.clone()),
            Some(&euros),
        ),
        ack_case(
            "refused-utf8-exactly-the-limit",
            Ack::Refused(exact.clone()),
            Some(&exact),
        ),
    ];
    assert_eq!(cases[4]["ack_hex"].as_str().unwrap().len(), 2 * (1 + 1023));
    assert_eq!(cases[5]["ack_hex"].as_str().unwrap().len(), 2 * (1 + 1024));
    // Byte strings that are not acknowledgements, and one with invalid UTF-8 in its reason,
    // which is read with U+FFFD in place of the bad bytes.
    let malformed = ["", "03", "ff", "0000", "0100", "00ff"];
    for hex_bytes in malformed {
        assert!(
            Ack::decode(&hex::decode(hex_bytes).unwrap()).is_err(),
            "{hex_bytes}"
        );
    }
    let lossy = hex::decode("0268698069").unwrap();
    assert_eq!(
        Ack::decode(&lossy).unwrap(),
        Ack::Refused("hi\u{fffd}i".into())
    );
    check_file(
        "acks",
        &json!({
            "spec": "SPEC.md section 14.3",
            "max_reason_bytes": MAX_ACK_REASON_LEN,
            "cases": cases,
            "malformed_hex": malformed,
            "lossy": [{"ack_hex": hex::encode(&lossy), "reason": "hi\u{fffd}i"}],
        }),
    );
}

#[test]
fn gossip_message_ids() {
    let mut cases = Vec::new();
    let objects = fixtures::sample_objects().unwrap();
    for object in objects
        .iter()
        .filter(|o| matches!(o.body(), Body::Intent(_) | Body::CapabilityAd(_)))
    {
        let capability = match object.body() {
            Body::Intent(intent) => intent.capability.clone(),
            Body::CapabilityAd(ad) => ad.capability.clone(),
            _ => unreachable!(),
        };
        for topic in [TOPIC_ALL.to_owned(), capability_topic(&capability)] {
            let mut hashed = topic.as_bytes().to_vec();
            hashed.push(0);
            hashed.extend_from_slice(object.bytes());
            cases.push(json!({
                "kind": object.kind().name(),
                "topic": topic,
                "data_hex": hex::encode(object.bytes()),
                "hashed_hex": hex::encode(&hashed),
                "message_id": gossip_message_id(&topic, object.bytes()),
                "message_id_wire_hex": hex::encode(gossip_message_id(&topic, object.bytes())),
            }));
        }
    }
    // Any bytes have an id; gossipsub computes it before validation.
    cases.push(json!({
        "kind": null,
        "topic": TOPIC_ALL,
        "data_hex": "",
        "hashed_hex": hex::encode(format!("{TOPIC_ALL}\0")),
        "message_id": gossip_message_id(TOPIC_ALL, b""),
        "message_id_wire_hex": hex::encode(gossip_message_id(TOPIC_ALL, b"")),
    }));
    assert_eq!(cases.len(), 5);
    assert_ne!(cases[0]["message_id"], cases[1]["message_id"]);
    check_file(
        "message-ids",
        &json!({"spec": "SPEC.md section 13.2", "cases": cases}),
    );
}

#[test]
fn peer_ids_of_signing_keys() {
    let mut keys: Vec<(&str, Keypair)> = vec![
        ("requester", fixtures::requester()),
        ("provider", fixtures::provider()),
        ("other-provider", fixtures::other_provider()),
    ];
    for (i, member) in fixtures::committee().into_iter().enumerate() {
        keys.push((["member-0", "member-1", "member-2"][i], member));
    }
    let cases: Vec<Value> = keys
        .iter()
        .map(|(name, key)| {
            let public = key.public();
            let peer = peer_id_of(&public).unwrap();
            assert_eq!(public_key_of(&peer), Some(public));
            // The same id from libp2p's own key type, from the seed.
            let libp2p_key =
                libp2p::identity::Keypair::ed25519_from_bytes(key.seed()).expect("a seed");
            assert_eq!(libp2p_key.public().to_peer_id(), peer);
            let protobuf = libp2p_key.public().encode_protobuf();
            json!({
                "name": name,
                "seed": hex::encode(key.seed()),
                "public_key": hex::encode(public.as_bytes()),
                "public_key_protobuf_hex": hex::encode(&protobuf),
                "peer_id_bytes_hex": hex::encode(peer.to_bytes()),
                "peer_id": peer.to_string(),
            })
        })
        .collect();
    check_file(
        "peer-ids",
        &json!({"spec": "SPEC.md section 15.2", "cases": cases}),
    );
}
