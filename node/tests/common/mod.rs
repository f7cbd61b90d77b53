//! Helpers shared by the end-to-end tests: run the `pvl` binary, start `pvl run` processes that
//! are killed when their guard drops, wait on conditions with a timeout.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod rogue;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn pvl(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvl"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("PVL_HOME")
        .output()
        .unwrap()
}

pub fn pvl_ok(dir: &Path, args: &[&str]) -> String {
    let out = pvl(dir, args);
    assert!(
        out.status.success(),
        "pvl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn pvl_json(dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&pvl_ok(dir, &args)).unwrap()
}

/// A running `pvl run`; killed on drop.
pub struct Running {
    child: Child,
    /// The node directory.
    pub dir: PathBuf,
}

impl Running {
    pub fn start(dir: &Path) -> Running {
        // A node killed with SIGKILL leaves its address file behind.
        let _ = std::fs::remove_file(dir.join("api.addr"));
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pvl"))
            .args(["run", "--dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let running = Running {
            child,
            dir: dir.to_owned(),
        };
        wait_until("the control API", || dir.join("api.addr").exists());
        running
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process ends at once, nothing is flushed or said goodbye to.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pvl run did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
            eprintln!("--- log of {} ---\n{log}", self.dir.display());
        }
    }
}

pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn init(dir: &Path, extra: &[&str]) {
    init_at(dir, "/ip4/127.0.0.1/tcp/0", extra)
}

/// `pvl init` listening on `listen`.
pub fn init_at(dir: &Path, listen: &str, extra: &[&str]) {
    let mut args = vec!["init", "--listen", listen];
    args.extend_from_slice(extra);
    pvl_ok(dir, &args);
}

pub struct Net {
    pub nodes: Vec<Running>,
    pub requester: PathBuf,
    /// Public keys of the providers, in the order given.
    pub providers: Vec<String>,
    pub _tmp: tempfile::TempDir,
}

/// A requester plus one provider per `--builtin` spec (and optional extra config lines).
pub fn network(providers: &[(&str, &str)]) -> Net {
    network_at("/ip4/127.0.0.1/tcp/0", providers)
}

/// [`network`] with the requester listening on `listen` (a fixed port lets it come back on
/// the same address after a restart).
pub fn network_at(listen: &str, providers: &[(&str, &str)]) -> Net {
    let tmp = tempfile::tempdir().unwrap();
    let requester = tmp.path().join("requester");
    init_at(&requester, listen, &[]);
    let mut nodes = vec![Running::start(&requester)];
    let boot = pvl_json(&requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut keys = Vec::new();
    for (i, (builtin, extra_config)) in providers.iter().enumerate() {
        let dir = tmp.path().join(format!("provider-{i}"));
        let mut args = vec!["--bootstrap", boot.as_str()];
        if !builtin.is_empty() {
            args.extend(["--builtin", builtin]);
        }
        init(&dir, &args);
        if !extra_config.is_empty() {
            let mut config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
            config.push_str(extra_config);
            std::fs::write(dir.join("config.toml"), config).unwrap();
        }
        nodes.push(Running::start(&dir));
        keys.push(
            pvl_json(&dir, &["id"])["public_key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let n = providers.len();
    wait_until("the requester to know every provider", || {
        pvl_json(&requester, &["peers"]).as_array().unwrap().len() >= n
    });
    Net {
        nodes,
        requester,
        providers: keys,
        _tmp: tmp,
    }
}

/// Exports `trace` from the node in `dir` as a bundle and checks it offline with
/// `pvl trace verify` (`--complete`: no link to an object the copy lacks).
pub fn verifies(dir: &Path, trace: &str, complete: bool) {
    let bundle = dir.join(format!("{}.bundle", &trace[..8]));
    pvl_ok(
        dir,
        &[
            "trace",
            "export",
            trace,
            "--format",
            "bundle",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let mut args = vec!["trace", "verify", bundle.to_str().unwrap()];
    if complete {
        args.push("--complete");
    }
    let out = pvl(dir, &args);
    assert!(
        out.status.success(),
        "trace {trace} does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`verifies`] as a complete copy.
pub fn verifies_complete(dir: &Path, trace: &str) {
    verifies(dir, trace, true)
}
