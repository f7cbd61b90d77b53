//! The NAT testbed (`pvl-testnet up --netns --nat 2`): two nodes behind two different NAT
//! routers complete a contract-net round with each other (through the relay, or directly once
//! hole punched), a node behind NAT with no relay configured says why it is unreachable, and
//! a private network (PSK + allow-list) behind symmetric NATs completes a round through its
//! relay.
//! Skipped without root (and without `nft`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use pvl_e2e::{TestnetGuard, netns_pvl, pvl_bin, success, testnet};
use serde_json::Value;

fn skip_reason() -> Option<&'static str> {
    if !pvl_e2e::is_root() {
        return Some("skipped: needs root and ip netns");
    }
    if !Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("skipped: needs nftables (`nft`)");
    }
    None
}

/// A contract-net round for `echo` from the node in namespace `ns`: the fastest offer wins,
/// one offer is enough; its outcome.
fn nat_round(ns: &str, dir: &str, input: &str) -> Value {
    let args = [
        "intent",
        "publish",
        "--capability",
        "echo",
        "--input",
        input,
        "--strategy",
        "fastest",
        "--min-offers",
        "1",
        "--window",
        "3s",
        "--deadline",
        "60s",
        "--wait",
    ];
    netns_pvl(ns, dir, &args).unwrap()
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `timeout` with `what`
/// and the last value seen.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> (Option<T>, String)) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (found, last) = check();
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn nodes_behind_two_nats_complete_a_round_and_a_node_without_relay_says_why() {
    if let Some(reason) = skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let net = TestnetGuard::up(
        &tmp.path().join("net"),
        &["--nodes", "4", "--netns", "--nat", "2", "--timeout", "120s"],
    );
    eprintln!("testbed up in {:?}", started.elapsed());
    let state = net.state();
    let tag = state["netns"]["tag"].as_str().unwrap().to_owned();
    let node = |i: usize| {
        let n = &state["nodes"][i];
        (
            n["netns"].as_str().unwrap().to_owned(),
            n["dir"].as_str().unwrap().to_owned(),
            n["peer_id"].as_str().unwrap().to_owned(),
        )
    };
    assert!(
        state["nodes"][2]["listen"]
            .as_str()
            .unwrap()
            .starts_with("/ip4/10.78.0.")
    );
    assert!(
        state["nodes"][3]["listen"]
            .as_str()
            .unwrap()
            .starts_with("/ip4/10.78.1.")
    );
    assert!(pvl_e2e::namespaces().contains(&format!("pvl-{tag}-r1")));

    // Both private nodes end up reachable through the relay (node-1).
    let (_, _, relay_id) = node(1);
    for i in [2, 3] {
        let (ns, dir, _) = node(i);
        let reach = wait_for(
            &format!("node-{i} reachable through the relay"),
            Duration::from_secs(90),
            || match netns_pvl(&ns, &dir, &["status"]) {
                Ok(status) => {
                    let r = status["reachability"].clone();
                    let ok = r["state"] == "relayed"
                        && r["relays"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|p| p == relay_id.as_str()));
                    (ok.then(|| r.clone()), r.to_string())
                }
                Err(e) => (None, e),
            },
        );
        eprintln!("node-{i}: {reach}");
    }
    eprintln!("both private nodes relayed after {:?}", started.elapsed());

    // node-2 (behind NAT 0) asks; the fastest provider is node-3 (behind NAT 1): the public
    // nodes serve nothing and node-2's own eta is slower.
    let (ns2, dir2, _) = node(2);
    let round = Instant::now();
    let outcome = nat_round(&ns2, &dir2, "through the nat");
    eprintln!("round intent -> outcome in {:?}", round.elapsed());
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["output"], "through the nat");
    let provider = outcome["provider"].as_str().unwrap().to_owned();
    let node3_key = state["nodes"][3]["public_key"].as_str().unwrap();
    assert_eq!(provider, node3_key, "the provider behind the other NAT won");

    // The trace verifies as complete (every object, signature and receipt).
    let trace = outcome["trace_id"].as_str().unwrap().to_owned();
    let bundle = format!("{dir2}/nat.bundle");
    let plain_in = |ns: &str, args: &[&str], dir: &str| {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(pvl_bin())
            .args(args)
            .args(["--dir", dir])
            .output()
            .unwrap()
    };
    success(
        &plain_in(
            &ns2,
            &[
                "trace", "export", &trace, "--format", "bundle", "--out", &bundle,
            ],
            &dir2,
        ),
        "trace export",
    );
    let verified = plain_in(&ns2, &["trace", "verify", "--complete", &bundle], &dir2);
    success(&verified, "trace verify --complete");

    // How the two NATed nodes are connected now: relayed, or hole punched.
    let (ns3, dir3, id3) = node(3);
    let peers = netns_pvl(&ns2, &dir2, &["peers"]).unwrap();
    let link = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == id3.as_str())
        .map(|p| p["link"].clone())
        .unwrap_or(Value::Null);
    eprintln!("node-2 -> node-3 link: {link}");
    assert!(
        link == "relayed" || link == "hole_punched",
        "node-2 and node-3 are behind different NATs: {link}"
    );
    let links = success(
        &testnet(&["links", "--dir", net.dir.to_str().unwrap()]),
        "links",
    );
    eprintln!("{links}");
    let _ = (ns3, dir3);

    // A node behind NAT with no relay configured: node-3 restarted without its relay says why
    // it is unreachable.
    let dir = net.dir.to_str().unwrap().to_owned();
    success(&testnet(&["kill", "node-3", "--dir", &dir]), "kill node-3");
    let config_path = format!("{}/config.toml", state["nodes"][3]["dir"].as_str().unwrap());
    let config = std::fs::read_to_string(&config_path).unwrap();
    let without_relay: String = config
        .lines()
        .map(|l| {
            if l.starts_with("relays = ") {
                "relays = []".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(config, without_relay, "node-3 had a relay configured");
    std::fs::write(&config_path, without_relay + "\n").unwrap();
    success(
        &testnet(&["restart", "node-3", "--dir", &dir]),
        "restart node-3",
    );
    let (ns3, dir3, _) = node(3);
    let reason = wait_for(
        "node-3 to say why it is unreachable",
        Duration::from_secs(90),
        || match netns_pvl(&ns3, &dir3, &["status"]) {
            Ok(status) => {
                let r = &status["reachability"];
                let reason = (r["state"] == "private")
                    .then(|| r["reason"].as_str().unwrap_or_default().to_owned());
                (reason, r.to_string())
            }
            Err(e) => (None, e),
        },
    );
    eprintln!("node-3 without a relay: {reason}");
    assert!(reason.contains("AutoNAT"), "{reason}");
    assert!(reason.contains("no relay configured"), "{reason}");
    let plain = plain_in(&ns3, &["status"], &dir3);
    let text = success(&plain, "pvl status");
    assert!(
        text.lines()
            .any(|l| l.starts_with("reachability") && l.contains("no relay configured")),
        "{text}"
    );

    pvl_e2e::netns_down_leaves_nothing(&dir, &tag);
}

#[test]
fn a_private_network_works_across_symmetric_nats_through_its_relay() {
    if let Some(reason) = skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(
        &tmp.path().join("pnet"),
        &[
            "--nodes",
            "4",
            "--netns",
            "--nat",
            "2",
            "--private",
            "--symmetric-nat",
            "--timeout",
            "120s",
        ],
    );
    let state = net.state();
    assert_eq!(state["private"], true);
    let node = |i: usize| {
        let n = &state["nodes"][i];
        (
            n["netns"].as_str().unwrap().to_owned(),
            n["dir"].as_str().unwrap().to_owned(),
        )
    };
    // The relay reservations run over pnet, and the relay serves members of its allow-list.
    for i in [2, 3] {
        let (ns, dir) = node(i);
        wait_for(
            &format!("node-{i} reachable through the relay"),
            Duration::from_secs(90),
            || match netns_pvl(&ns, &dir, &["status"]) {
                Ok(status) => {
                    let r = status["reachability"].clone();
                    ((r["state"] == "relayed").then_some(()), r.to_string())
                }
                Err(e) => (None, e),
            },
        );
    }
    let (ns2, dir2) = node(2);
    let round = Instant::now();
    let outcome = nat_round(&ns2, &dir2, "members only");
    eprintln!("relayed round (private network) in {:?}", round.elapsed());
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(
        outcome["provider"].as_str().unwrap(),
        state["nodes"][3]["public_key"].as_str().unwrap()
    );
    let links = success(
        &testnet(&["links", "--dir", net.dir.to_str().unwrap()]),
        "links",
    );
    eprintln!("{links}");
    // Symmetric NATs defeat hole punching: the round went through the relay, over pnet.
    assert!(
        links
            .lines()
            .any(|l| l.starts_with("node-2   -> node-3") && l.ends_with("relayed")),
        "{links}"
    );
}
