//! The capability directory on a 5-node testnet: every node serves the builtins at its own
//! prices, and `pvl capabilities` on any node lists each builtin with its 5 providers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pvl_e2e::{TestnetGuard, pvl_json, wait_until};

#[test]
fn pvl_capabilities_on_five_nodes_lists_every_builtin_with_five_providers() {
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "5"]);
    let builtins = ["echo", "sha256", "sleep", "wordcount"];
    let count = |listing: &serde_json::Value, capability: &str| {
        listing
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["capability"] == capability)
            .map_or(0, |c| c["providers"].as_array().unwrap().len())
    };
    for i in [0, 4] {
        wait_until("every builtin advertised by all five nodes", || {
            let listing = pvl_json(&net.node(i), &["capabilities"]);
            builtins.iter().all(|b| count(&listing, b) == 5)
        });
    }
    // Terms as each node's config states them, cheapest first.
    let listing = pvl_json(&net.node(2), &["capabilities"]);
    let echo = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["capability"] == "echo")
        .unwrap();
    let prices: Vec<u64> = echo["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["price_base"].as_u64().unwrap())
        .collect();
    let mut sorted = prices.clone();
    sorted.sort_unstable();
    assert_eq!(prices, sorted, "{echo}");
    assert!(
        echo["providers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["max_concurrent"].as_u64().unwrap() > 0
                && p["expires_at_ms"].as_u64().unwrap() > 0),
        "{echo}"
    );
}
