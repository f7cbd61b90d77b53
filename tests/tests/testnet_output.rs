//! `pvl-testnet` whose reader went away (`pvl-testnet status | head`): no panic, the command
//! finishes its work and succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use pvl_e2e::{TestnetGuard, pvl_bin, testnet_bin};

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let net = TestnetGuard::up(tmp.path(), &["--nodes", "2"]);
    // A pipe whose reading end is closed before the command writes: every write fails with
    // EPIPE, as when `head` has read what it wanted.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(testnet_bin())
        .args(["status", "--dir", net.dir.to_str().unwrap()])
        .env("PVL_BIN", pvl_bin())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
