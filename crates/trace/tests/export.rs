#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Exports: JSON, DOT (checked with Graphviz when installed), Mermaid, and the CBOR bundle.

use std::io::Write;
use std::process::{Command, Stdio};

use pvl_trace::export::{to_bundle, to_dot, to_json, to_mermaid, verify_bundle};
use pvl_trace::{ProblemKind, TraceError, testkit};

#[test]
fn json_export_lists_objects_and_edges() {
    let objects = testkit::consensus().unwrap();
    let json: serde_json::Value = serde_json::from_str(&to_json(&objects).unwrap()).unwrap();
    assert_eq!(json["trace"], objects[0].id().to_string());
    assert_eq!(json["objects"].as_array().unwrap().len(), objects.len());
    let edges: usize = objects.iter().map(|o| o.parents().len()).sum();
    assert_eq!(json["edges"].as_array().unwrap().len(), edges);
    assert_eq!(json["objects"][0]["kind"], "intent");
}

#[test]
fn dot_export_has_every_node_and_edge_and_parses() {
    for objects in [
        testkit::consensus().unwrap(),
        testkit::workflow().unwrap(),
        testkit::parallel(3).unwrap(),
        // Real shapes: stage, shard and consensus clusters.
        testkit::workflow_run().unwrap(),
        testkit::parallel_run().unwrap(),
        testkit::consensus_run().unwrap(),
        // With a missing parent (the root left out).
        testkit::auction().unwrap()[1..].to_vec(),
    ] {
        let dot = to_dot(&objects);
        assert!(dot.starts_with("digraph"));
        assert!(dot.trim_end().ends_with('}'));
        for o in &objects {
            assert!(dot.contains(&format!("\"{}\" [label=", o.id())));
            for p in o.parents() {
                assert!(dot.contains(&format!("\"{p}\" -> \"{}\";", o.id())));
            }
        }
        let dot_available = Command::new("dot")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !dot_available {
            println!("graphviz `dot` not on PATH: skipped the `dot -Tsvg` parse check");
            continue;
        }
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(dot.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "dot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    }
}

#[test]
fn mermaid_export_has_every_node_and_edge() {
    let objects = testkit::parallel(2).unwrap();
    let m = to_mermaid(&objects);
    assert!(m.starts_with("flowchart TD\n"));
    // Object nodes (cluster headers `subgraph gN ["label"]` excluded).
    let nodes = m
        .lines()
        .filter(|l| l.contains("[\"") && !l.trim_start().starts_with("subgraph "))
        .count();
    assert_eq!(nodes, objects.len());
    let edges: usize = objects.iter().map(|o| o.parents().len()).sum();
    assert_eq!(m.lines().filter(|l| l.contains(" --> ")).count(), edges);
    assert!(!m.contains('"') || m.lines().all(|l| l.matches('"').count() % 2 == 0));
    // A missing parent gets a node of its own.
    let m = to_mermaid(&objects[1..]);
    assert!(m.contains("missing"));
}

#[test]
fn bundle_round_trip_verifies_offline_and_detects_tampering() {
    let objects = testkit::consensus().unwrap();
    let bundle = to_bundle(&objects).unwrap();
    // Verified from the bytes alone: no store.
    let verified = verify_bundle(&bundle).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.report);
    assert_eq!(verified.trace, objects[0].id());
    assert_eq!(verified.objects, objects);

    // Flip one byte inside each object in turn: the bundle must not verify, and the report
    // names a problem (or the bundle is refused as malformed).
    let mut offsets = Vec::new();
    for o in &objects {
        let pos = bundle
            .windows(o.bytes().len())
            .position(|w| w == o.bytes())
            .unwrap();
        offsets.push((pos, o.bytes().len(), o.id()));
    }
    for (pos, len, id) in offsets {
        for delta in [len / 3, len - 1] {
            let mut bad = bundle.clone();
            bad[pos + delta] ^= 0x20;
            match verify_bundle(&bad) {
                Ok(v) => {
                    assert!(!v.is_ok(), "tampered object {id} went unnoticed");
                }
                Err(TraceError::Bundle(_)) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }

    // A signature byte flipped: the report names exactly that object.
    let victim = &objects[3];
    let pos = bundle
        .windows(victim.bytes().len())
        .position(|w| w == victim.bytes())
        .unwrap();
    let mut bad = bundle.clone();
    bad[pos + victim.bytes().len() - 1] ^= 1;
    let v = verify_bundle(&bad).unwrap();
    assert_eq!(v.report.bad_objects(), vec![victim.id()]);
    assert_eq!(v.report.problems[0].kind, ProblemKind::BadSignature);

    // An object left out: its children's links break.
    let mut partial = objects.clone();
    partial.remove(1);
    let v = verify_bundle(&to_bundle(&partial).unwrap()).unwrap();
    assert!(!v.is_ok());

    // Not a bundle at all.
    for junk in [&b""[..], b"\x80", b"\xa0", b"garbage"] {
        assert!(matches!(verify_bundle(junk), Err(TraceError::Bundle(_))));
    }
}
