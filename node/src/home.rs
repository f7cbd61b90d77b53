//! The node directory: `config.toml`, `key`, `api-token`, `api.addr`, `store/`, `pvl.lock`
//! (held by the running node: one node per directory), `peers.json` (the peer book: peers
//! reached, redialled on start), and in a private network `swarm.key` and `allow.txt`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pvl_net::identity::Keypair;

use crate::config::Config;

/// File names inside a node directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The node's ed25519 identity (libp2p protobuf encoding), mode 0600.
pub const KEY_FILE: &str = "key";
/// The bearer token of the control API, mode 0600.
pub const TOKEN_FILE: &str = "api-token";
/// Written by `pvl run` once the control API listens: `host:port`.
pub const API_ADDR_FILE: &str = "api.addr";
/// The private network key, when there is one.
pub const SWARM_KEY_FILE: &str = "swarm.key";
/// The private network allow-list, one peer id per line.
pub const ALLOW_FILE: &str = "allow.txt";
/// The trace store (sled).
pub const STORE_DIR: &str = "store";
/// The peer book: addresses of the peers this node reached, kept across restarts (pvl-net).
pub const PEER_BOOK_FILE: &str = "peers.json";
/// Held (`flock`) by the `pvl run` process using the directory; holds its process id.
pub const LOCK_FILE: &str = "pvl.lock";

/// Takes the directory for this process: one node per directory. The lock lasts as long as
/// the returned file is open (and ends with the process, however it ends).
pub fn lock_dir(dir: &Path) -> Result<fs::File> {
    use std::io::{Read, Seek};
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            bail!("cannot lock {}: {e}", path.display());
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = match pid.trim() {
            "" => "unknown".to_owned(),
            p => p.to_owned(),
        };
        bail!(
            "a node is already running on {} (pid {pid}): stop it first, or give another --dir",
            dir.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(file)
}

/// The directory a command works on: `--dir`, else `$PVL_HOME`, else a per-user data dir.
pub fn resolve_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = dir {
        return Ok(dir);
    }
    if let Some(home) = std::env::var_os("PVL_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let base = dirs::data_dir().context("no --dir, no $PVL_HOME and no per-user data directory")?;
    Ok(base.join("pvl"))
}

/// Writes `contents` to a new file readable by the owner only.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Reads the node key.
pub fn read_key(dir: &Path) -> Result<Keypair> {
    let path = dir.join(KEY_FILE);
    let bytes = fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (run `pvl init --dir {}` first)",
            path.display(),
            dir.display()
        )
    })?;
    Keypair::from_protobuf_encoding(&bytes)
        .with_context(|| format!("{} is not a pvl key file", path.display()))
}

/// Reads the API token.
pub fn read_token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    let token = fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(token)
}

/// Reads and checks `config.toml`.
pub fn read_config(dir: &Path) -> Result<Config> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (run `pvl init --dir {}` first)",
            path.display(),
            dir.display()
        )
    })?;
    Config::parse(&text).with_context(|| format!("bad configuration in {}", path.display()))
}

/// A new random API token (32 bytes, hex).
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(hex::encode(bytes))
}
