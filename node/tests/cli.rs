//! The `pvl` binary end to end: `pvl init` and `pvl run` as real processes on loopback, then
//! the CLI against them. Every process is killed when its guard drops, even on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{Running, WAIT, init, pvl, pvl_json, pvl_ok, wait_until};

#[test]
fn five_nodes_find_each_other_and_an_intent_reaches_every_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..5)
        .map(|i| tmp.path().join(format!("node-{i}")))
        .collect();
    init(&dirs[0], &[]);
    let boot = Running::start(&dirs[0]);
    let id = pvl_json(&dirs[0], &["id"]);
    let boot_addr = id["listen_addrs"][0].as_str().unwrap().to_owned();
    assert!(boot_addr.ends_with(id["peer_id"].as_str().unwrap()));

    let mut nodes = vec![boot];
    for dir in &dirs[1..] {
        init(dir, &["--bootstrap", &boot_addr, "--subscribe", "sha256"]);
        nodes.push(Running::start(dir));
    }
    // Key and token are private to the owner.
    use std::os::unix::fs::PermissionsExt;
    for file in ["key", "api-token"] {
        let mode = std::fs::metadata(dirs[1].join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    for dir in &dirs {
        wait_until("every node to know the four others", || {
            pvl_json(dir, &["peers"]).as_array().unwrap().len() >= 4
        });
    }
    // Every other node's server-sent-event stream is open before the intent is published.
    let streams: Vec<_> = dirs[..4]
        .iter()
        .map(|dir| pvl_api::Client::open(dir).unwrap().events(None).unwrap())
        .collect();
    let published = pvl_json(
        &dirs[4],
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "hello",
            "--budget",
            "10",
            "--deadline",
            "30s",
        ],
    );
    assert_eq!(published["published"], true);
    let trace = published["trace_id"].as_str().unwrap().to_owned();
    // Every stream announces the intent as an object received by gossip and not stored: no
    // other node takes part in the trace, so none keeps it (SPEC.md §20).
    let deadline = Instant::now() + WAIT;
    for events in &streams {
        loop {
            let (_, event) = events
                .next_within(deadline.saturating_duration_since(Instant::now()))
                .expect("no server-sent event for the intent");
            if let pvl_api::Event::Object(object) = event
                && object.trace_id.to_string() == trace
            {
                assert_eq!(object.kind, pvl_protocol::Kind::Intent);
                assert_eq!(object.origin, "gossip");
                assert!(!object.stored, "an observed intent is not kept");
                break;
            }
        }
    }
    let listed = |dir: &PathBuf| {
        pvl_json(dir, &["trace", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["trace_id"] == trace.as_str() && t["capability"] == "sha256")
    };
    assert!(listed(&dirs[4]), "the publisher keeps its trace");
    for dir in &dirs[..4] {
        assert!(!listed(dir), "{} kept an observed trace", dir.display());
    }
    // The stored trace exports as a bundle that verifies offline.
    let bundle = tmp.path().join("t.bundle");
    pvl_ok(
        &dirs[4],
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
    let verified = pvl_ok(&dirs[4], &["trace", "verify", bundle.to_str().unwrap()]);
    assert!(
        verified.contains("every signature and link verifies"),
        "{verified}"
    );
    // Named by the first 8 hex digits of the trace id.
    let shown = pvl_ok(&dirs[4], &["trace", "show", &trace[..8]]);
    assert!(
        shown.contains("intent") && shown.contains("sha256"),
        "{shown}"
    );

    // SIGTERM stops a node cleanly and removes api.addr; the others keep running.
    let last = nodes.pop().unwrap();
    assert!(last.stop().success());
    assert!(!dirs[4].join("api.addr").exists());
    wait_until("node 0 to see node 4 gone", || {
        pvl_json(&dirs[0], &["status"])["connected_peers"].as_u64() == Some(3)
    });
}

#[test]
fn mistakes_get_a_one_line_error_and_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");

    // No node running.
    let out = pvl(&dir, &["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no node is running"), "{err}");

    // A wrong flag.
    let out = pvl(&dir, &["peers", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr)
            .unwrap()
            .trim()
            .lines()
            .count(),
        1
    );

    // `init --capability` would not serve anything: refused, pointing at what does.
    let out = pvl(&dir, &["init", "--capability", "sha256"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("--builtin sha256:PRICE:ETA_MS") && err.contains("--subscribe sha256"),
        "{err}"
    );
    assert!(!dir.join("config.toml").exists());

    // A bad configuration line is named with its line number, and nothing starts.
    init(&dir, &[]);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        config.replace("observe_all = true", "observe_everything = true"),
    )
    .unwrap();
    let out = pvl(&dir, &["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("observe_everything") && err.contains("line"),
        "{err}"
    );
    // Init refuses to overwrite, unless forced.
    assert!(!pvl(&dir, &["init"]).status.success());
    init(&dir, &["--force"]);

    // Pattern requests that cannot be run are refused with the reason, before anything is
    // published.
    let node = Running::start(&dir);
    for (args, expected) in [
        (
            &["--committee", "not-a-peer"][..],
            "neither a public key (64 hex digits) nor a peer id",
        ),
        (
            &["--parallel", "2", "--split", "bytes:lots"][..],
            "chunk size",
        ),
        (&["--pattern", "workflow"][..], "needs a workflow file"),
        (&["--pattern", "consensus"][..], "needs a committee"),
        (&["--pattern", "telepathy"][..], "unknown pattern"),
    ] {
        let mut all = vec!["intent", "publish", "--capability", "echo", "--input", "x"];
        all.extend_from_slice(args);
        let out = pvl(&dir, &all);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let cycle = tmp.path().join("cycle.toml");
    std::fs::write(
        &cycle,
        "[[stage]]\nname = \"a\"\ncapability = \"echo\"\ninputs = [\"a\"]\n",
    )
    .unwrap();
    let out = pvl(&dir, &["workflow", "check", cycle.to_str().unwrap()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success() && err.contains("line"), "{err}");
    assert_eq!(
        pvl_json(&dir, &["trace", "list"]).as_array().unwrap().len(),
        0,
        "nothing was published"
    );
    // A reader that goes away early (`| head`) ends the CLI quietly, not with a panic
    // (`workflow check` prints its one line with nobody reading).
    std::fs::write(
        tmp.path().join("digest.toml"),
        "[[stage]]\nname = \"a\"\ncapability = \"echo\"\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pvl"))
        .arg("workflow")
        .arg("check")
        .arg(tmp.path().join("digest.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{out:?}"
    );
    assert!(out.status.success(), "{out:?}");

    // A wrong token is refused by the API.
    std::fs::write(dir.join("api-token"), "not-the-token").unwrap();
    let out = pvl(&dir, &["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("wrong API token") && err.contains("401"),
        "{err}"
    );
    drop(node);

    // Offline verification of something that is not a bundle.
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"not a bundle").unwrap();
    let out = pvl(&dir, &["trace", "verify", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("not a valid trace bundle")
    );
}
