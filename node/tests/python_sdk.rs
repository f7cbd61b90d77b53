//! The Python SDK (`crates/api/python/pvl_sdk`) against real `pvl` processes: a requester, a
//! provider serving `echo` with the builtin executor, a provider whose `echo` is served by
//! agent programs, and a committee member whose votes a voter program decides; the Python test
//! runs an agent and a voter written with the SDK and publishes with the SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

/// An agent executor for `echo` whose tasks fail after 1.5 s without an answer.
const AGENT: &str = "\n[[executor]]\ncapability = \"echo\"\nkind = \"agent\"\nprice = 0\n\
                     eta_ms = 0\ntimeout_ms = 1500\nbid_timeout_ms = 800\n";

#[test]
fn the_python_sdk_publishes_and_serves_as_an_agent() {
    let mut net = common::network(&[("echo:5:50", ""), ("", AGENT)]);
    // A committee member whose votes a Python voter program decides.
    let boot = common::pvl_json(&net.requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let member = net._tmp.path().join("member");
    common::init(&member, &["--bootstrap", &boot]);
    let config = std::fs::read_to_string(member.join("config.toml")).unwrap();
    std::fs::write(
        member.join("config.toml"),
        config.replace("agent = false", "agent = true"),
    )
    .unwrap();
    net.nodes.push(common::Running::start(&member));
    let member_key = common::pvl_json(&member, &["id"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    common::wait_until("the requester to know both nodes", || {
        common::pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            >= 3
    });
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/api/python");
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v", "tests/test_sdk.py"])
        .current_dir(&sdk)
        .env("PVL_REQUESTER_DIR", &net.requester)
        .env("PVL_BUILTIN_KEY", &net.providers[0])
        .env("PVL_AGENT_DIR", &net.nodes[2].dir)
        .env("PVL_AGENT_KEY", &net.providers[1])
        .env("PVL_MEMBER_DIR", &member)
        .env("PVL_MEMBER_KEY", &member_key)
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python SDK tests failed:\n{report}"
    );
    assert!(report.contains("Ran 7 tests"), "{report}");
    assert!(!report.contains("skipped"), "{report}");
}
