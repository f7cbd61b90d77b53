//! The `pvl` binary: where it is, and running its commands the way a user's script would.
//!
//! [`locate`] looks for `pvl` next to this executable (the same cargo target directory and
//! profile), then in `$PVL_BIN`, and otherwise builds it with cargo in the same profile.
//! [`Pvl`] runs one command against one node directory, optionally inside a network namespace
//! (`ip netns exec NS pvl ...`: the control API listens on the namespace's own loopback).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Finds the `pvl` binary, building it with cargo when it is nowhere to be found.
pub fn locate() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PVL_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("PVL_BIN={} is not a file", path.display());
    }
    let me = std::env::current_exe().context("cannot find this executable")?;
    let profile_dir = me
        .parent()
        .context("this executable has no parent directory")?
        .to_owned();
    // target/<profile>/pvl-testnet, or target/<profile>/deps/<test binary> for tests.
    for dir in [profile_dir.clone(), profile_dir.join("..")] {
        let candidate = dir.join("pvl");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    build(&profile_dir)
}

/// `cargo build -p pvl-node` in the profile of this executable's directory.
fn build(profile_dir: &Path) -> Result<PathBuf> {
    let profile_dir = if profile_dir.ends_with("deps") {
        profile_dir.parent().unwrap_or(profile_dir)
    } else {
        profile_dir
    };
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir
        .parent()
        .context("cannot tell the cargo target directory")?;
    eprintln!(
        "==> pvl not found next to pvl-testnet: building it (cargo build{} -p pvl-node)",
        if release { " --release" } else { "" }
    );
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.args(["build", "-p", "pvl-node"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .context("cannot run cargo to build pvl (set PVL_BIN to a built pvl binary)")?;
    if !status.success() {
        bail!("building pvl failed ({status})");
    }
    let built = profile_dir.join("pvl");
    if !built.is_file() {
        bail!("cargo built pvl-node but {} is missing", built.display());
    }
    Ok(built)
}

/// Runs `pvl` commands against node directories.
#[derive(Debug, Clone)]
pub struct Pvl {
    /// The binary.
    pub bin: PathBuf,
}

impl Pvl {
    /// A runner for this binary.
    pub fn new(bin: PathBuf) -> Pvl {
        Pvl { bin }
    }

    /// `pvl ARGS --dir DIR`, inside namespace `netns` if given.
    pub fn command(&self, dir: &Path, netns: Option<&str>, args: &[&str]) -> Command {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        command
            .args(args)
            .arg("--dir")
            .arg(dir)
            .env_remove("PVL_HOME")
            .stdin(Stdio::null());
        command
    }

    /// Runs a command and returns its output, whatever its exit status.
    pub fn output(&self, dir: &Path, netns: Option<&str>, args: &[&str]) -> Result<Output> {
        self.command(dir, netns, args)
            .output()
            .with_context(|| format!("cannot run {}", self.bin.display()))
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok(&self, dir: &Path, netns: Option<&str>, args: &[&str]) -> Result<String> {
        let out = self.output(dir, netns, args)?;
        if !out.status.success() {
            bail!(
                "`pvl {}` on {} failed: {}",
                args.join(" "),
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("pvl printed something that is not UTF-8")
    }

    /// Runs a command with `--json` that must succeed; returns the parsed JSON.
    pub fn json(&self, dir: &Path, netns: Option<&str>, args: &[&str]) -> Result<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let text = self.ok(dir, netns, &args)?;
        serde_json::from_str(&text)
            .with_context(|| format!("`pvl {}` did not print JSON", args.join(" ")))
    }
}
