//! Network-namespace mode: each node in its own namespace on a bridge; a partition cuts a node
//! off, `heal` restores it; `down` removes every namespace and bridge. Skipped without root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pvl_e2e::{TestnetGuard, success, testnet, wait_until};
use serde_json::Value;

/// `pvl ARGS --json --dir DIR` inside a namespace, which must succeed.
fn pvl_in(ns: &str, dir: &str, args: &[&str]) -> Value {
    pvl_e2e::netns_pvl(ns, dir, args).unwrap()
}

#[test]
fn nodes_in_namespaces_coordinate_partition_heal_and_leave_nothing_behind() {
    if !pvl_e2e::is_root() {
        eprintln!("skipped: needs root and ip netns");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "3", "--netns"]);
    let state = net.state();
    let node = |i: usize| {
        let n = &state["nodes"][i];
        (
            n["netns"].as_str().unwrap().to_owned(),
            n["dir"].as_str().unwrap().to_owned(),
        )
    };
    let tag = state["netns"]["tag"].as_str().unwrap().to_owned();
    assert!(
        state["nodes"][1]["listen"]
            .as_str()
            .unwrap()
            .starts_with("/ip4/10.77.0.")
    );
    assert_eq!(
        pvl_e2e::namespaces()
            .matches(&format!("pvl-{tag}-"))
            .count(),
        3
    );

    // A contract-net across the bridge.
    let (ns0, dir0) = node(0);
    let outcome = pvl_in(
        &ns0,
        &dir0,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input",
            "across",
            "--min-offers",
            "2",
            "--window",
            "5s",
            "--deadline",
            "30s",
            "--wait",
        ],
    );
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["output"], "across");

    // Partition node-2: an intent from node-0 reaches node-1 only. The intents are for `echo`,
    // which every node serves: a node keeps only the traces it takes part in (SPEC.md §20.3),
    // and a provider that bids keeps the intent it bids on.
    let dir = net.dir.to_str().unwrap();
    success(
        &testnet(&["partition", "node-2", "--dir", dir]),
        "partition",
    );
    let published = pvl_in(
        &ns0,
        &dir0,
        &["intent", "publish", "--capability", "echo", "--input", "p"],
    );
    let trace = published["trace_id"].as_str().unwrap().to_owned();
    let holds = |i: usize, trace: &str| {
        let (ns, dir) = node(i);
        pvl_in(&ns, &dir, &["trace", "list", "--limit", "1000"])
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["trace_id"] == trace)
    };
    wait_until("the intent at node-1", || holds(1, &trace));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !holds(2, &trace),
        "the partitioned node-2 received the intent"
    );

    // Heal: a new intent reaches node-2 again.
    success(&testnet(&["heal", "--dir", dir]), "heal");
    let published = pvl_in(
        &ns0,
        &dir0,
        &["intent", "publish", "--capability", "echo", "--input", "h"],
    );
    let trace = published["trace_id"].as_str().unwrap().to_owned();
    wait_until("the intent at node-2 after heal", || holds(2, &trace));

    pvl_e2e::netns_down_leaves_nothing(dir, &tag);
}
