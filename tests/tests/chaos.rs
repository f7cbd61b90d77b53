//! Chaos: providers killed and restarted under a stream of intents; every acknowledged receipt
//! is in the requester's store. And a requester restarted mid-round.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pvl_e2e::{success, testnet};

#[test]
fn chaos_keeps_every_acknowledged_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let out = testnet(&[
        "chaos",
        "--nodes",
        "4",
        "--intents",
        "10",
        "--seed",
        "7",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = success(&out, "pvl-testnet chaos");
    assert!(stdout.contains("chaos: 10 intents"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("acknowledged receipts in the requester's store"))
        .unwrap();
    let (have, total) = line.rsplit(' ').next().unwrap().split_once('/').unwrap();
    assert_eq!(have, total, "{stdout}");
    assert!(
        total.parse::<usize>().unwrap() > 0,
        "nothing completed: {stdout}"
    );
}

/// A requester restarted in the middle of a round finds its open intent in its store and ends
/// it with a signed reason (the round's offers and timers were in memory only, so it cannot be
/// resumed): nothing is silently lost, and the outcome is still answered after the restart.
#[test]
fn a_restarted_requester_ends_its_open_intents_with_a_reason() {
    use pvl_e2e::{TestnetGuard, pvl_json, pvl_ok};
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "3"]);
    // A 3 s offer window: the requester is restarted while the round collects offers.
    let published = pvl_ok(
        &net.node(0),
        &[
            "intent",
            "publish",
            "--capability",
            "sleep",
            "--input",
            "200",
            "--budget",
            "100",
            "--deadline",
            "60s",
            "--window",
            "3s",
        ],
    );
    let trace = published
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .unwrap()
        .trim()
        .to_owned();
    success(
        &testnet(&["restart", "node-0", "--dir", net.dir.to_str().unwrap()]),
        "restart",
    );
    let outcome = pvl_json(&net.node(0), &["intent", "outcome", &trace]);
    assert_eq!(outcome["status"], "failed", "{outcome}");
    assert_eq!(outcome["reason"], "requester-restarted", "{outcome}");
    let shown = pvl_json(&net.node(0), &["trace", "show", &trace]);
    assert_eq!(shown["summary"]["status"], "failed", "{shown}");
    // The offers that arrived before the restart are still there.
    let objects = shown["objects"].as_array().unwrap();
    assert!(objects.iter().any(|o| o["kind"] == "intent"), "{shown}");
}
