//! A private testnet: a node with the wrong swarm key and a node with the right key but not on
//! the allow-list cannot take part; the members complete a contract-net.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pvl_e2e::{Node, TestnetGuard, pvl_json, pvl_ok, wait_until};

#[test]
fn outsiders_cannot_take_part_in_a_private_testnet_and_members_complete_a_contract_net() {
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "3", "--private"]);
    let state = net.state();
    assert_eq!(state["private"], true);
    let bootstrap = format!(
        "{}/p2p/{}",
        state["nodes"][0]["listen"].as_str().unwrap(),
        state["nodes"][0]["peer_id"].as_str().unwrap()
    );
    let members: Vec<String> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["peer_id"].as_str().unwrap().to_owned())
        .collect();

    // An outsider with another swarm key, and an intruder with the right key whom nobody lists.
    // Both would win any lowest-cost auction: they ask 1.
    let wrong_key = tmp.path().join("wrong.key");
    std::fs::write(&wrong_key, pvl_ok(tmp.path(), &["psk", "gen"])).unwrap();
    let intruder_allow = tmp.path().join("intruder-allow.txt");
    std::fs::write(&intruder_allow, members.join("\n")).unwrap();
    let cheap = "sha256:1:10:9999";
    let outsider_dir = tmp.path().join("outsider");
    pvl_ok(
        &outsider_dir,
        &[
            "init",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &bootstrap,
            "--builtin",
            cheap,
            "--psk",
            wrong_key.to_str().unwrap(),
        ],
    );
    let intruder_dir = tmp.path().join("intruder");
    pvl_ok(
        &intruder_dir,
        &[
            "init",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &bootstrap,
            "--builtin",
            cheap,
            "--psk",
            net.dir.join("swarm.key").to_str().unwrap(),
            "--allow",
            intruder_allow.to_str().unwrap(),
        ],
    );
    let outsider = Node::start(&outsider_dir);
    let intruder = Node::start(&intruder_dir);
    let strangers = [outsider.peer_id(), intruder.peer_id()];

    // The intruder completes the key handshake and is then disconnected; the outsider never
    // completes it. Wait until node-0 has seen the intruder try (its log says so).
    let node0_log = || std::fs::read_to_string(net.node(0).join("node.log")).unwrap();
    wait_until("node-0 to refuse the intruder", || {
        node0_log().contains("not on the allow-list")
    });
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3 {
        let peers = pvl_json(&net.node(i), &["peers"]);
        for peer in peers.as_array().unwrap() {
            let id = peer["peer_id"].as_str().unwrap();
            let connected = peer["connected"] == true;
            assert!(
                !(connected && strangers.iter().any(|s| s == id)),
                "node-{i} is connected to a stranger {id}: {peers}"
            );
        }
    }

    // The members complete a contract-net: both member providers offer, strangers do not.
    let outcome = pvl_json(
        &net.node(0),
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "hello",
            "--budget",
            "100",
            "--deadline",
            "30s",
            "--strategy",
            "lowest-cost",
            "--window",
            "3s",
            "--wait",
        ],
    );
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["receipt_countersigned"], true);
    let provider = outcome["provider"].as_str().unwrap();
    let member_keys: Vec<&str> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["public_key"].as_str().unwrap())
        .collect();
    assert!(
        member_keys[1..].contains(&provider),
        "the winner {provider} is not a member provider ({member_keys:?})"
    );
    let trace = outcome["trace_id"].as_str().unwrap();
    let shown = pvl_json(&net.node(0), &["trace", "show", trace]);
    let signers: Vec<String> = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "offer")
        .map(|o| o["signer"].to_string())
        .collect();
    assert_eq!(signers.len(), 2, "offers: {shown}");
    // Neither stranger ever stored the intent.
    for stranger in [&outsider, &intruder] {
        let traces = pvl_json(&stranger.dir, &["trace", "list"]);
        assert!(
            traces
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["trace_id"] != trace),
            "a stranger holds the members' trace: {traces}\n{}",
            stranger.log()
        );
    }
}
