//! `pvl mcp` driven by the official MCP Python client (`mcp` on PyPI) on a real testnet: a
//! requester and a provider of the builtin `echo` and `wordcount`. The client lists the
//! tools, publishes an intent through them and gets its outcome, runs a workflow, and reads
//! the trace and its analysis (node/tests/mcp/client.py).
//!
//! Without the `mcp` package the test says so loudly and passes, except under CI (`CI` set),
//! where it fails: .ci/run installs the package.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

#[test]
fn the_mcp_python_client_publishes_an_intent_through_pvl_mcp() {
    let importable = Command::new("python3")
        .args(["-c", "import mcp.client.stdio"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "the `mcp` Python package is not importable under CI: .ci/run must install it"
        );
        eprintln!(
            "\n*** SKIPPED the_mcp_python_client_publishes_an_intent_through_pvl_mcp: the `mcp` \
             Python package is not installed (python3 -m pip install mcp) ***\n"
        );
        return;
    }
    let net = common::network(&[("echo:5:50", ""), ("wordcount:3:50", "")]);
    let workflow = net._tmp.path().join("flow.toml");
    std::fs::write(
        &workflow,
        "[[stage]]\nname = \"copy\"\ncapability = \"echo\"\n\n\
         [[stage]]\nname = \"count\"\ncapability = \"wordcount\"\ninputs = [\"copy\"]\n",
    )
    .unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("PVL_BIN", env!("CARGO_BIN_EXE_pvl"))
        .env("PVL_REQUESTER_DIR", &net.requester)
        .env("PVL_WORKFLOW", &workflow)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the MCP client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("10 passed, 0 failed"), "{stdout}\n{stderr}");
}
