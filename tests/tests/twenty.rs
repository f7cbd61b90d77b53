//! A 20-node testnet starts, delivers an intent to all 20 nodes, and stops cleanly. The intent
//! is for `echo`, which every node serves: each provider bids and so keeps the intent (a node
//! keeps only the traces it takes part in, SPEC.md §20.3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pvl_e2e::{TestnetGuard, alive, pvl_json, pvl_ok, recorded_pids, success, testnet, wait_until};

#[test]
fn twenty_nodes_start_receive_an_intent_each_and_stop_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(
        &tmp.path().join("net"),
        &["--nodes", "20", "--timeout", "120s"],
    );
    let pids = recorded_pids(&net.dir);
    assert_eq!(pids.len(), 20);
    assert!(pids.iter().all(|&p| alive(p)));

    let status = success(
        &testnet(&["status", "--dir", net.dir.to_str().unwrap(), "--json"]),
        "pvl-testnet status",
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status.as_array().unwrap().len(), 20);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["alive"] == true)
    );

    let published = pvl_ok(
        &net.node(19),
        &["intent", "publish", "--capability", "echo", "--input", "x"],
    );
    let trace = published
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .unwrap()
        .trim()
        .to_owned();
    for i in 0..20 {
        wait_until(&format!("the intent in node-{i}'s store"), || {
            pvl_json(&net.node(i), &["trace", "list", "--limit", "1000"])
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["trace_id"] == trace.as_str())
        });
    }

    let down = success(
        &testnet(&["down", "--dir", net.dir.to_str().unwrap()]),
        "pvl-testnet down",
    );
    assert!(down.contains("every node stopped on SIGTERM"), "{down}");
    assert!(pids.iter().all(|&p| !alive(p)));
    // A clean stop removes api.addr; a killed node would have left it.
    for i in 0..20 {
        assert!(
            !net.node(i).join("api.addr").exists(),
            "node-{i} did not stop cleanly"
        );
    }
}
