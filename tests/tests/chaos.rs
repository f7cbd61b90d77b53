//! Chaos: providers killed and restarted under a stream of intents; every acknowledged receipt
//! is in the requester's store. And a requester killed mid-round resumes it.
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

/// A requester SIGKILLed in the middle of a round and started again takes the round up from
/// its trace: the offers it had count, the window closes when it was due, the award goes out
/// once, and the countersigned receipt completes the trace, which verifies as complete.
#[test]
fn a_requester_killed_mid_round_resumes_it() {
    use pvl_e2e::{TestnetGuard, pvl_json, pvl_ok};
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(&tmp.path().join("net"), &["--nodes", "3"]);
    // Every store write is flushed before the node reports it (the default flushes every
    // 500 ms), and `trace show` waits for the writes queued before it: an offer it shows is on
    // disk, and survives the kill. (A 5 ms flush interval was not enough: under the full
    // test suite's load, a kill right after the offers showed lost the whole trace.)
    let config_path = net.node(0).join("config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("flush_each_write = false"), "{config}");
    std::fs::write(
        &config_path,
        config.replace("flush_each_write = false", "flush_each_write = true"),
    )
    .unwrap();
    success(
        &testnet(&["restart", "node-0", "--dir", net.dir.to_str().unwrap()]),
        "restart",
    );
    // A 5 s offer window: node-0 is killed while the round collects offers.
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
            "5s",
        ],
    );
    let trace = published
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .unwrap()
        .trim()
        .to_owned();
    let offers = |dir: &std::path::Path| {
        pvl_json(dir, &["trace", "show", &trace])["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "offer")
            .count()
    };
    pvl_e2e::wait_until("the offers of both providers", || offers(&net.node(0)) >= 2);
    let dir = net.dir.to_str().unwrap();
    success(&testnet(&["kill", "node-0", "--dir", dir]), "kill");
    success(&testnet(&["restart", "node-0", "--dir", dir]), "restart");
    let outcome = pvl_json(&net.node(0), &["intent", "outcome", &trace]);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["receipt_countersigned"], true, "{outcome}");
    assert_eq!(outcome["awards"], 1, "{outcome}");
    let shown = pvl_json(&net.node(0), &["trace", "show", &trace]);
    let objects = shown["objects"].as_array().unwrap();
    let count = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
    assert_eq!(count("intent"), 1, "not re-published: {shown}");
    assert_eq!(count("task_start"), 1, "awarded once: {shown}");
    let bundle = tmp.path().join("resumed.bundle");
    pvl_ok(
        &net.node(0),
        &[
            "trace",
            "export",
            &trace,
            "--format",
            "bundle",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    pvl_ok(
        &net.node(0),
        &["trace", "verify", "--complete", bundle.to_str().unwrap()],
    );
}
