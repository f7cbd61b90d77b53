//! A public testnet of 5 runs every demo scenario (contract-net, four auctions, a workflow, a
//! parallel job, a consensus round, an adaptive choice); every trace verifies on every node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pvl_e2e::{recorded_pids, success, testnet};

#[test]
fn a_public_testnet_of_five_runs_every_scenario_and_traces_verify_on_every_node() {
    let out = tempfile::tempdir().unwrap();
    let result = testnet(&[
        "demo",
        "--nodes",
        "5",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stdout = success(&result, "pvl-testnet demo");
    assert!(stdout.contains("demo OK"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    let scenarios = summary.as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "contract-net",
            "auction-lowest-cost",
            "auction-highest-quality",
            "auction-fastest",
            "auction-weighted",
            "workflow",
            "parallel",
            "consensus",
            "adaptive"
        ]
    );
    for scenario in scenarios {
        let name = scenario["name"].as_str().unwrap();
        assert_eq!(scenario["ok"], true, "{scenario}");
        // The intent reached every node, so every node holds (part of) the trace, and each
        // node's copy verified.
        assert_eq!(
            scenario["verified_on"].as_array().unwrap().len(),
            5,
            "{scenario}"
        );
        let completed = &scenario["completed"];
        assert_eq!(completed["outcome"]["receipt_countersigned"], true);
        if let Some(expected) = completed["expected_provider"].as_str() {
            assert_eq!(completed["provider"], expected, "{scenario}");
        }
        for file in ["trace.dot", "trace.json", "trace.bundle"] {
            let path = out.path().join(name).join(file);
            assert!(
                std::fs::metadata(&path).unwrap().len() > 0,
                "{} is empty",
                path.display()
            );
        }
        let dot = std::fs::read_to_string(out.path().join(name).join("trace.dot")).unwrap();
        assert!(dot.starts_with("digraph"), "{dot}");
    }
    // The single-criterion auctions have known winners (see builtins_for).
    let winner = |name: &str| {
        scenarios.iter().find(|s| s["name"] == name).unwrap()["completed"]["provider"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(winner("auction-lowest-cost"), "node-2");
    assert_eq!(winner("auction-fastest"), "node-3");
    assert_eq!(winner("auction-highest-quality"), "node-1");
    // The composite runs report their parts: three stages, four shards on distinct providers.
    let parts = |name: &str| {
        scenarios.iter().find(|s| s["name"] == name).unwrap()["completed"]["outcome"]["parts"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(parts("workflow").len(), 3);
    let shards = parts("parallel");
    let providers: std::collections::HashSet<&str> = shards
        .iter()
        .map(|s| s["provider"].as_str().unwrap())
        .collect();
    assert_eq!((shards.len(), providers.len()), (4, 4));
    // Every node was stopped.
    let pids = recorded_pids(&out.path().join("testnet"));
    assert!(pids.is_empty(), "pid files left behind: {pids:?}");
}
