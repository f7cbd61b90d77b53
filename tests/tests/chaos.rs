//! Chaos: providers killed and restarted under a stream of intents; every acknowledged receipt
//! is in the requester's store. And the requester-restart case the node cannot handle yet.
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

/// A requester restarted in the middle of a round finds its open intents again.
///
/// Ignored: the node cannot do this yet (run with `--ignored`: it times out). Its coordinator
/// keeps open rounds in memory only, so a `pvl run` restarted during the offer window has
/// forgotten the intent: the offers land in its trace store, but nothing selects, awards or
/// completes the round, and `GET /v1/intents/{trace}/outcome` answers 404. It needs the open
/// rounds persisted (or rebuilt at start from the trace store: open traces whose root intent
/// this node signed and whose deadline has not passed, with their offers) and the outcome
/// endpoint to serve them after the restart.
#[test]
#[ignore = "needs the node to persist or rebuild open intents across a restart"]
fn a_restarted_requester_finds_its_open_intents() {
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
    // The restarted requester still selects, awards and completes the round.
    pvl_e2e::wait_until("the round to finish on the restarted requester", || {
        pvl_json(&net.node(0), &["trace", "show", &trace])["summary"]["status"] == "done"
    });
}
