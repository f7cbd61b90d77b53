//! Golden vectors: the exact bytes, ids and signatures of one sample object of every kind.
//!
//! The vectors in `tests/vectors/*.json` are the reference for other implementations (see
//! `SPEC.md`). This test regenerates them from the fixed keys and fields in
//! `pvl_protocol::fixtures` and fails on any difference, so a format change can never slip in
//! unnoticed. After an intended format change, regenerate with
//! `PVL_UPDATE_VECTORS=1 cargo test -p pvl-protocol --test vectors` and review the diff.
//!
//! It also re-checks every stored vector the way SPEC.md tells a foreign implementation to:
//! id = SHA-256(content), signature = ed25519 over the domain-separated signing input, using
//! ed25519-dalek directly rather than this crate's decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ed25519_dalek::{Signature, VerifyingKey};
use pvl_protocol::{
    Audience, Body, Intent, Keypair, SignedObject, countersigning_input, fixtures, signing_input,
};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn known_keys() -> Vec<Keypair> {
    let mut keys = vec![
        fixtures::requester(),
        fixtures::provider(),
        fixtures::other_provider(),
    ];
    keys.extend(fixtures::committee());
    keys
}

fn seed_of(public: pvl_protocol::PublicKey) -> String {
    let key = known_keys()
        .into_iter()
        .find(|k| k.public() == public)
        .unwrap();
    hex::encode(key.seed())
}

fn vector(index: usize, object: &SignedObject) -> (String, Value) {
    let name = format!(
        "{:02}-{}",
        index + 1,
        object.kind().name().replace('_', "-")
    );
    let mut v = json!({
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
    });
    if let Body::Intent(Intent {
        audience: Some(audience),
        ..
    }) = object.body()
    {
        // The self-selection rule of SPEC.md 4.1, for every key the vectors use.
        v["audience_draws"] = json!(
            known_keys()
                .iter()
                .map(|k| {
                    let draw = Audience::draw(&object.id(), &k.public());
                    json!({
                        "public_key": k.public().to_string(),
                        "draw": format!("{draw:016x}"),
                        "included": audience.includes(&object.id(), &k.public()),
                    })
                })
                .collect::<Vec<_>>()
        );
    }
    if let (Some(cosig), Body::Receipt(receipt)) = (object.countersignature(), object.body()) {
        v["countersigner_seed"] = json!(seed_of(receipt.requester));
        v["countersigning_input_hex"] = json!(hex::encode(countersigning_input(
            object.kind(),
            object.content()
        )));
        v["countersignature"] = json!(hex::encode(cosig));
    }
    (name, v)
}

#[test]
fn golden_vectors_match_the_implementation() {
    let update = std::env::var_os("PVL_UPDATE_VECTORS").is_some();
    let dir = vectors_dir();
    let mut objects = fixtures::sample_objects().unwrap();
    objects.extend(fixtures::later_samples().unwrap());
    let mut expected_files = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let (name, generated) = vector(i, object);
        let path = dir.join(format!("{name}.json"));
        expected_files.push(path.clone());
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with PVL_UPDATE_VECTORS=1",
                path.display()
            )
        });
        let stored: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            stored, generated,
            "vector {name} differs from the implementation"
        );
    }
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    on_disk.sort();
    expected_files.sort();
    assert_eq!(on_disk, expected_files, "stale or missing vector files");
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap_or_else(|| panic!("no {field}"))).unwrap()
}

#[test]
fn stored_vectors_verify_by_the_spec_rules_alone() {
    let mut count = 0;
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let content = hex_field(&v, "content_hex");
        // id = SHA-256(content)
        assert_eq!(
            hex::encode(pvl_protocol::sha256(&content)),
            v["id"].as_str().unwrap()
        );
        // signing input = tag || 0x00 || version || kind || content
        let kind = v["kind_code"].as_u64().unwrap() as u8;
        let mut input = b"pervasive.link/pvl/signature".to_vec();
        input.extend_from_slice(&[0, 1, kind]);
        input.extend_from_slice(&content);
        assert_eq!(input, hex_field(&v, "signing_input_hex"));
        // The public key derives from the seed; the signature verifies.
        let seed: [u8; 32] = hex_field(&v, "signer_seed").try_into().unwrap();
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public: [u8; 32] = hex_field(&v, "signer_public_key").try_into().unwrap();
        assert_eq!(signing.verifying_key().to_bytes(), public);
        let key = VerifyingKey::from_bytes(&public).unwrap();
        let signature: [u8; 64] = hex_field(&v, "signature").try_into().unwrap();
        key.verify_strict(&input, &Signature::from_bytes(&signature))
            .unwrap();
        if let Some(cosig) = v.get("countersignature") {
            let seed: [u8; 32] = hex_field(&v, "countersigner_seed").try_into().unwrap();
            let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            let mut input = b"pervasive.link/pvl/countersignature".to_vec();
            input.extend_from_slice(&[0, 1, kind]);
            input.extend_from_slice(&content);
            let cosig: [u8; 64] = hex::decode(cosig.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            key.verify_strict(&input, &Signature::from_bytes(&cosig))
                .unwrap();
        }
        // Audience draws (SPEC.md 4.1), recomputed from the rule's text.
        if let Some(draws) = v.get("audience_draws").and_then(Value::as_array) {
            let audience = &v["fields"]["body"]["audience"];
            let wanted = u128::from(audience["wanted"].as_u64().unwrap());
            let of = u128::from(audience["of"].as_u64().unwrap());
            for d in draws {
                let mut input = b"pervasive.link/pvl/audience\0".to_vec();
                input.extend_from_slice(&pvl_protocol::sha256(&content));
                input.extend_from_slice(&hex::decode(d["public_key"].as_str().unwrap()).unwrap());
                let hash = pvl_protocol::sha256(&input);
                let draw = u64::from_be_bytes(hash[..8].try_into().unwrap());
                assert_eq!(format!("{draw:016x}"), d["draw"].as_str().unwrap());
                let included = u128::from(draw) * of < wanted << 64;
                assert_eq!(Value::Bool(included), d["included"]);
            }
        }
        // And the wire bytes decode to the same object.
        let object = SignedObject::decode(&hex_field(&v, "wire_hex")).unwrap();
        assert_eq!(object.content(), content.as_slice());
        count += 1;
    }
    assert!(count >= 12, "only {count} vectors found");
}
