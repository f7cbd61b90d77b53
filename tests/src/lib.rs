//! Helpers of the end-to-end tests: find the `pvl` and `pvl-testnet` binaries of this cargo
//! target directory, run them, and hold testnets and stray node processes that are stopped when
//! their guard drops (also when a test panics).
//!
//! The binaries are not built from here (a nested `cargo build` would wait on the lock the
//! running `cargo test` holds): `cargo test --workspace` builds both (each package has
//! integration tests, so cargo builds its binary); otherwise build them first with
//! `cargo build -p pvl-node -p pvl-testnet` in the same profile, or point `PVL_BIN` and
//! `PVL_TESTNET_BIN` at them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any one condition is awaited.
pub const WAIT: Duration = Duration::from_secs(60);

/// The directory of this profile's binaries (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    if deps.ends_with("deps") {
        deps.parent().unwrap().to_owned()
    } else {
        deps.to_owned()
    }
}

fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build -p pvl-node -p pvl-testnet, same profile) \
         or set {env}",
        path.display()
    );
    path
}

/// The `pvl` binary.
pub fn pvl_bin() -> PathBuf {
    binary("pvl", "PVL_BIN")
}

/// The `pvl-testnet` binary.
pub fn testnet_bin() -> PathBuf {
    binary("pvl-testnet", "PVL_TESTNET_BIN")
}

/// Runs `pvl-testnet ARGS` with the `pvl` binary of this target directory.
pub fn testnet(args: &[&str]) -> Output {
    Command::new(testnet_bin())
        .args(args)
        .env("PVL_BIN", pvl_bin())
        .env_remove("PVL_TESTNET_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `pvl ARGS --dir DIR`.
pub fn pvl(dir: &Path, args: &[&str]) -> Output {
    Command::new(pvl_bin())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("PVL_HOME")
        .output()
        .unwrap()
}

/// `pvl ARGS --dir DIR`, which must succeed; its standard output.
pub fn pvl_ok(dir: &Path, args: &[&str]) -> String {
    let out = pvl(dir, args);
    assert!(
        out.status.success(),
        "pvl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `pvl ARGS --json --dir DIR`, parsed.
pub fn pvl_json(dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&pvl_ok(dir, &args)).unwrap()
}

/// Asserts success and returns standard output, showing both streams otherwise.
pub fn success(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Retries `check` every 100 ms until it holds, or panics after [`WAIT`].
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pids recorded in a testnet directory (`node-*/pid`).
pub fn recorded_pids(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X"))
    })
}

/// A testnet started with `pvl-testnet up`; `down` on drop, then SIGKILL to any pid left.
pub struct TestnetGuard {
    /// The testnet directory.
    pub dir: PathBuf,
}

impl TestnetGuard {
    /// `pvl-testnet up --dir DIR EXTRA...`, which must succeed.
    pub fn up(dir: &Path, extra: &[&str]) -> TestnetGuard {
        let guard = TestnetGuard {
            dir: dir.to_owned(),
        };
        let mut args = vec!["up", "--dir", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        success(&testnet(&args), "pvl-testnet up");
        guard
    }

    /// The directory of node `i`.
    pub fn node(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{i}"))
    }

    /// The testnet's state file.
    pub fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("testnet.json")).unwrap())
            .unwrap()
    }
}

impl Drop for TestnetGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for pid_dir in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let log =
                    std::fs::read_to_string(pid_dir.path().join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("--- end of {}/node.log", pid_dir.path().display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let pids = recorded_pids(&self.dir);
        let _ = testnet(&["down", "--dir", self.dir.to_str().unwrap_or_default()]);
        for pid in pids.into_iter().filter(|&p| alive(p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// A `pvl run` started by a test itself (outside any testnet); killed on drop.
pub struct Node {
    child: Child,
    /// Its directory.
    pub dir: PathBuf,
}

impl Node {
    /// `pvl run --dir DIR`, waiting for its control API.
    pub fn start(dir: &Path) -> Node {
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Command::new(pvl_bin())
            .args(["run", "--dir"])
            .arg(dir)
            .env_remove("PVL_HOME")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let node = Node {
            child,
            dir: dir.to_owned(),
        };
        wait_until("the control API", || dir.join("api.addr").exists());
        node
    }

    /// Its peer id.
    pub fn peer_id(&self) -> String {
        pvl_json(&self.dir, &["id"])["peer_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this process runs as root (network-namespace tests need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `pvl ARGS --json --dir DIR` inside network namespace `ns`; the error is its stderr.
pub fn netns_pvl(ns: &str, dir: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(pvl_bin())
        .args(args)
        .args(["--json", "--dir", dir])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The network namespaces (`ip netns list`).
pub fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// `pvl-testnet down` on the netns testnet in `dir` whose names carry `tag`, and checks that
/// it left no namespace, veth or bridge of it behind.
pub fn netns_down_leaves_nothing(dir: &str, tag: &str) {
    success(&testnet(&["down", "--dir", dir]), "down");
    let left = namespaces();
    assert!(!left.contains(&format!("pvl-{tag}-")), "{left}");
    let out = Command::new("ip").args(["link", "show"]).output().unwrap();
    let links = String::from_utf8(out.stdout).unwrap();
    assert!(
        !links.contains(&format!("pv{tag}")) && !links.contains(&format!("pvbr{tag}")),
        "{links}"
    );
}
