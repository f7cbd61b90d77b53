//! Operating a node (issue 16), each from real `pvl` processes: shell completions, the man
//! page, `pvl run --log-file`, `pvl config check`, and the one-line errors of the usual
//! mistakes (a second node on a directory, an input over the API's limit, a bootstrap address
//! without its peer id, a private network listening on QUIC only), a bootstrap peer named by
//! DNS, and the fixed listen port `pvl init` writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Running, init, pvl, pvl_ok, wait_until};

/// The one line a failed command printed on stderr (asserted to be one line).
fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    err
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (shell, marker) in [
        ("bash", "_pvl()"),
        ("zsh", "#compdef pvl"),
        ("fish", "complete -c pvl"),
    ] {
        let script = pvl_ok(dir, &["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script:.200}");
        assert!(script.contains("publish"), "{shell} completes subcommands");
    }
    let out = pvl(dir, &["completions", "tcsh"]);
    assert!(one_line_error(&out).contains("tcsh"));

    let page = pvl_ok(dir, &["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH pvl 1"),
        "{page:.300}"
    );
    assert!(
        page.contains("completions") && page.contains("config"),
        "{page:.300}"
    );
    let out_dir = dir.join("man");
    pvl_ok(dir, &["man", "--out", out_dir.to_str().unwrap()]);
    for page in ["pvl.1", "pvl-run.1", "pvl-intent-publish.1", "pvl-mcp.1"] {
        let text =
            std::fs::read_to_string(out_dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(out_dir.join("pvl-run.1")).unwrap();
    assert!(
        run.contains("log\\-file"),
        "pvl run's page names --log-file"
    );
}

#[test]
fn run_writes_its_log_to_the_log_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir, &[]);
    let logs = tmp.path().join("logs");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pvl"))
        .args(["run", "--dir"])
        .arg(&dir)
        .arg("--log-file")
        .arg(logs.join("node.log"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    wait_until("the control API", || dir.join("api.addr").exists());
    let file = || {
        std::fs::read_dir(&logs)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with("node.") && name.ends_with(".log")
            })
    };
    wait_until("the log file to say the API listens", || {
        file().is_some_and(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| t.contains("control API listening"))
        })
    });
    let name = file()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // node.YYYY-MM-DD.log: the date of the day, rotated daily.
    assert_eq!(name.len(), "node.2026-01-01.log".len(), "{name}");
    drop(guard);
    assert!(
        !std::fs::read_to_string(file().unwrap())
            .unwrap()
            .contains('\u{1b}'),
        "no colours in files"
    );
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn config_check_names_every_problem_with_its_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir, &[]);
    let ok = pvl_ok(&dir, &["config", "check"]);
    assert!(ok.trim().ends_with("config.toml: ok"), "{ok}");

    let path = dir.join("config.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config
        .replace("observe_all = true", "observe_everything = true")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:8080\"")
        .replace("cache_mb = 32", "cache_mb = \"lots\"");
    std::fs::write(&path, &config).unwrap();
    let line_of = |needle: &str| config.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let out = pvl(&dir, &["config", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 4, "three problems and a summary: {err}");
    let at = |line: usize| format!("config.toml:line {line}: ");
    assert!(
        lines[0].contains(&at(line_of("observe_everything")))
            && lines[0].contains("[network] observe_everything"),
        "{err}"
    );
    assert!(
        lines[1].contains(&at(line_of("listen = \"0.0.0.0")))
            && lines[1].contains("[api] listen")
            && lines[1].contains("loopback"),
        "{err}"
    );
    assert!(
        lines[2].contains(&at(line_of("cache_mb"))) && lines[2].contains("[store] cache_mb"),
        "{err}"
    );
    assert!(lines[3].contains("3 problem(s)"), "{err}");

    // The files it names are checked too.
    init(&dir, &["--force"]);
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, config.replace("# psk = ", "psk = ")).unwrap();
    let out = pvl(&dir, &["config", "check"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("[network] psk") && err.contains("pvl psk gen"),
        "{err}"
    );

    // The reference printed is the checked-in one.
    let reference = pvl_ok(&dir, &["config", "reference"]);
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md"))
            .unwrap();
    assert_eq!(reference, doc);
}

#[test]
fn a_second_node_on_the_same_directory_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir, &[]);
    let node = Running::start(&dir);
    let out = pvl(&dir, &["run"]);
    let err = one_line_error(&out);
    assert!(
        err.contains(&format!(
            "a node is already running on {} (pid {})",
            dir.display(),
            node.pid()
        )),
        "{err}"
    );
    // The first node is unharmed.
    pvl_ok(&dir, &["status"]);
    // Once it stopped, the directory is free again.
    assert!(node.stop().success());
    let again = Running::start(&dir);
    pvl_ok(&dir, &["status"]);
    drop(again);
}

#[test]
fn an_input_over_the_limit_is_refused_by_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir, &[]);
    let _node = Running::start(&dir);
    // 10 MB: more than a command line takes, so from a file.
    let big = tmp.path().join("big.txt");
    std::fs::write(&big, "a".repeat(10 * 1024 * 1024)).unwrap();
    let big = big.to_str().unwrap();
    let out = pvl(
        &dir,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input-file",
            big,
        ],
    );
    let err = one_line_error(&out);
    assert!(
        err.contains("the input is 10485760 bytes, more than the 786432")
            && err.contains("2097152"),
        "{err}"
    );
    // A parallel job splits its input, but the request still has to fit the API's limit.
    let out = pvl(
        &dir,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--parallel",
            "4",
            "--input-file",
            big,
        ],
    );
    let err = one_line_error(&out);
    assert!(
        err.contains("more than the control API's limit of 2097152 bytes")
            && !err.contains("cannot reach"),
        "{err}"
    );
    // Nothing went out, and the node is fine.
    assert_eq!(
        common::pvl_json(&dir, &["trace", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn a_bootstrap_address_without_its_peer_id_is_refused_at_init() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = pvl(&dir, &["init", "--bootstrap", "/ip4/127.0.0.1/tcp/4001"]);
    let err = one_line_error(&out);
    assert!(
        err.contains("/ip4/127.0.0.1/tcp/4001` does not end in /p2p/<peer id>"),
        "{err}"
    );
    assert!(!dir.join("config.toml").exists());
}

#[test]
fn a_private_network_on_quic_only_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("swarm.key");
    std::fs::write(&key, pvl_ok(tmp.path(), &["psk", "gen"])).unwrap();
    let key = key.to_str().unwrap();
    let quic = "/ip4/127.0.0.1/udp/0/quic-v1";

    // At init.
    let dir = tmp.path().join("node");
    let out = pvl(&dir, &["init", "--psk", key, "--listen", quic]);
    let err = one_line_error(&out);
    assert!(
        err.contains("a private network (psk) cannot use QUIC") && err.contains("/tcp/"),
        "{err}"
    );

    // And a configuration edited to QUIC only does not start listening nowhere.
    common::init_at(&dir, "/ip4/127.0.0.1/tcp/0", &["--psk", key]);
    let path = dir.join("config.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replace("\"/ip4/127.0.0.1/tcp/0\"", &format!("\"{quic}\"")),
    )
    .unwrap();
    let out = pvl(&dir, &["run"]);
    let err = one_line_error(&out);
    assert!(
        err.contains("[network] listen: a private network (psk) cannot use QUIC"),
        "{err}"
    );
    assert!(!dir.join("api.addr").exists());
}

/// A bootstrap entry may name its host by DNS (`/dns4/localhost/...`): the node resolves it and
/// connects. And `pvl init` writes a fixed listen port (here the one `--port` asked for), which
/// `init --force` keeps.
#[test]
fn a_bootstrap_peer_named_by_dns_is_reached_and_init_writes_a_fixed_port() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    common::init(&a, &[]);
    let _first = common::Running::start(&a);
    let addr = common::pvl_json(&a, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // /ip4/127.0.0.1/tcp/PORT/p2p/ID -> /dns4/localhost/tcp/PORT/p2p/ID
    let by_name = addr.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    assert!(by_name.starts_with("/dns4/localhost/tcp/"), "{by_name}");

    let b = tmp.path().join("b");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    common::pvl_ok(&b, &["init", "--port", &port, "--bootstrap", &by_name]);
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(
        config.contains(&format!(
            "\"/ip4/0.0.0.0/tcp/{port}\", \"/ip4/0.0.0.0/udp/{port}/quic-v1\""
        )),
        "{config}"
    );
    // Re-initialising keeps the port.
    common::pvl_ok(&b, &["init", "--force", "--bootstrap", &by_name]);
    let again = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(again.contains(&format!("/tcp/{port}\"")), "{again}");
    let _second = common::Running::start(&b);
    let a_id = common::pvl_json(&a, &["id"])["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    common::wait_until("b connected to a through its DNS bootstrap address", || {
        common::pvl_json(&b, &["peers"])
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == a_id.as_str() && p["connected"] == true)
    });
}
