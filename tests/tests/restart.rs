//! Restarts keep the network: every node listens on the fixed port `pvl init` wrote and keeps a
//! peer book (`peers.json`) of the peers it reached, so
//! - a bootstrap node SIGKILLed and started again is connected to every node within 10 s, and
//!   a round runs across it;
//! - every node restarted in turn, each with its bootstrap list removed, finds the network
//!   again from its peer book alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use pvl_e2e::{TestnetGuard, pvl_json, success, testnet};

/// The peer ids node `dir` has a connection to now.
fn connected(dir: &Path) -> Vec<String> {
    pvl_json(dir, &["peers"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["connected"] == true)
        .map(|p| p["peer_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Peers in the peer book node `dir` saved (0 before it saved one).
fn book_size(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("peers.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|b| b["peers"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn peer_id(dir: &Path) -> String {
    pvl_json(dir, &["id"])["peer_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until `check` holds, for at most `limit`; returns how long it took.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A contract-net round from `dir` for `echo` (every testnet node serves it), with offers from
/// two providers; it must complete.
fn round(dir: &Path, input: &str) {
    let outcome = pvl_json(
        dir,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input",
            input,
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
    assert_eq!(outcome["output"], input, "{outcome}");
}

#[test]
fn a_bootstrap_node_killed_and_restarted_is_rejoined_within_ten_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "5"]);
    let dir = net.dir.to_str().unwrap();
    let bootstrap = peer_id(&net.node(0));
    let before = std::fs::read_to_string(net.node(0).join("config.toml")).unwrap();
    within(
        Duration::from_secs(15),
        "node-0's peer book lists the others",
        || book_size(&net.node(0)) >= 4,
    );
    success(&testnet(&["kill", "node-0", "--dir", dir]), "kill");
    within(
        Duration::from_secs(20),
        "the others notice node-0 is gone",
        || (1..5).all(|i| !connected(&net.node(i)).contains(&bootstrap)),
    );
    success(&testnet(&["restart", "node-0", "--dir", dir]), "restart");
    let took = within(
        Duration::from_secs(10),
        "every node connected to the restarted bootstrap node",
        || {
            (1..5).all(|i| connected(&net.node(i)).contains(&bootstrap))
                && connected(&net.node(0)).len() == 4
        },
    );
    eprintln!("every node was connected to node-0 again {took:?} after its API was up");
    // Same configuration, same listen address: nothing was rewritten.
    let after = std::fs::read_to_string(net.node(0).join("config.toml")).unwrap();
    assert_eq!(before, after);
    round(&net.node(1), "after the bootstrap node came back");
    round(&net.node(0), "from the bootstrap node itself");
}

#[test]
fn every_node_restarted_in_turn_without_bootstrap_peers_finds_the_network_again() {
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "5"]);
    let dir = net.dir.to_str().unwrap();
    let ids: Vec<String> = (0..5).map(|i| peer_id(&net.node(i))).collect();
    // Let every node save its peer book (its first change is written within a second, later
    // ones at most every 10 s, and on a clean stop; a SIGKILL gives no clean stop).
    within(
        Duration::from_secs(30),
        "every node's peer book lists the others",
        || (0..5).all(|i| book_size(&net.node(i)) >= 4),
    );
    for i in 0..5 {
        let node = format!("node-{i}");
        success(&testnet(&["kill", &node, "--dir", dir]), "kill");
        // No bootstrap peers any more: only the peer book knows where the others are.
        let config_path = net.node(i).join("config.toml");
        let config = std::fs::read_to_string(&config_path).unwrap();
        let without: String = config
            .lines()
            .map(|l| {
                if l.starts_with("bootstrap = ") {
                    "bootstrap = []"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&config_path, without + "\n").unwrap();
        success(&testnet(&["restart", &node, "--dir", dir]), "restart");
        let others: Vec<&String> = ids.iter().filter(|id| **id != ids[i]).collect();
        let took = within(
            Duration::from_secs(20),
            &format!("{node} connected to every other node again"),
            || {
                let now = connected(&net.node(i));
                others.iter().all(|id| now.contains(id))
            },
        );
        eprintln!("{node} rejoined in {took:?}");
    }
    for i in 0..5 {
        let config = std::fs::read_to_string(net.node(i).join("config.toml")).unwrap();
        assert!(config.contains("bootstrap = []"), "node-{i}: {config}");
    }
    round(&net.node(0), "with no bootstrap list anywhere");
    round(&net.node(3), "once more from another node");
}
