//! The `pvl-testnet` command line without starting nodes: help, argument errors, and the
//! messages for a missing testnet. (The end-to-end tests with real nodes are in `tests/`,
//! package `pvl-e2e`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pvl-testnet"))
        .args(args)
        .env_remove("PVL_TESTNET_DIR")
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in [
        "up",
        "status",
        "down",
        "kill",
        "restart",
        "partition",
        "heal",
        "demo",
        "bench",
        "chaos",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{text}"
        );
    }
}

#[test]
fn commands_on_a_missing_testnet_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing");
    for command in ["status", "down", "heal"] {
        let out = run(&[command, "--dir", dir.to_str().unwrap()]);
        assert!(!out.status.success(), "{command} succeeded on nothing");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("no testnet in"), "{command}: {err}");
    }
}

#[test]
fn a_testnet_needs_two_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pvl-testnet"))
        .args(["up", "--nodes", "1", "--dir", tmp.path().to_str().unwrap()])
        // Any file will do: the node count is refused before pvl runs.
        .env("PVL_BIN", env!("CARGO_BIN_EXE_pvl-testnet"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("at least 2 nodes")
    );
}

#[test]
fn netns_options_need_netns() {
    let out = run(&["up", "--latency", "20"]);
    assert_eq!(out.status.code(), Some(2));
}
