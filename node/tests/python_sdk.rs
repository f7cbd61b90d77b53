//! The Python SDK (`crates/api/python/pvl_sdk`) against real `pvl` processes: a requester and
//! a provider whose `translate` capability is served by agent programs; the Python test runs
//! an agent written with the SDK on the provider and publishes with the SDK on the requester.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

/// An agent executor for `translate`.
const AGENT: &str = "\n[[executor]]\ncapability = \"translate\"\nkind = \"agent\"\nprice = 0\n\
                     eta_ms = 0\ntimeout_ms = 5000\nbid_timeout_ms = 800\n";

#[test]
fn the_python_sdk_publishes_and_serves_as_an_agent() {
    let net = common::network(&[("", AGENT)]);
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/api/python");
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v", "tests/test_sdk.py"])
        .current_dir(&sdk)
        .env("PVL_REQUESTER_DIR", &net.requester)
        .env("PVL_PROVIDER_DIR", &net.nodes[1].dir)
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python SDK tests failed:\n{report}"
    );
    assert!(report.contains("Ran 3 tests"), "{report}");
    assert!(!report.contains("skipped"), "{report}");
}
