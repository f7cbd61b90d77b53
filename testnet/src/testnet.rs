//! A testnet: N ordinary `pvl` node directories under one directory, N detached `pvl run`
//! processes, and a state file (`DIR/testnet.json`) that records the layout so that later
//! invocations (`status`, `kill`, `restart`, `down`) and other tools find everything.
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/testnet.json        the layout: pvl binary, nodes (dir, peer id, listen address, builtins)
//! DIR/swarm.key           the swarm key (--private)
//! DIR/allow.txt           the allow-list: every member's peer id (--private)
//! DIR/node-i/             an ordinary pvl directory (`pvl --dir DIR/node-i ...` works on it)
//! DIR/node-i/pid          the pid of its `pvl run`
//! DIR/node-i/node.log     its log (stderr)
//! ```
//!
//! Every node serves the builtin capabilities at a price, speed and claimed reliability that
//! depend only on its index ([`builtins_for`]), so auctions have predictable winners. node-0 is
//! the bootstrap node of every other node. Listen ports are fixed when the testnet is created
//! (`--base-port P`: P+i; otherwise free ports picked then), so a restarted node keeps its
//! address.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::netns::{self, NetnsLayout, NetnsOptions};
use crate::procs;
use crate::pvl::Pvl;

/// The state file inside a testnet directory.
pub const STATE_FILE: &str = "testnet.json";
/// The builtin capabilities every node serves.
pub const CAPABILITIES: [&str; 4] = ["echo", "sha256", "wordcount", "sleep"];
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a node may take to open its control API after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Polling interval while waiting on nodes.
const POLL: Duration = Duration::from_millis(200);

/// One builtin capability a node serves, and its terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builtin {
    /// Capability name (`echo`, `sha256`, `wordcount`, `sleep`).
    pub capability: String,
    /// Price offered.
    pub price: u64,
    /// Estimated completion time offered, ms.
    pub eta_ms: u64,
    /// Claimed reliability, basis points.
    pub reliability_bps: u64,
}

impl Builtin {
    /// The `pvl init --builtin` argument: `NAME:PRICE:ETA_MS:REL_BPS`.
    pub fn spec(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.capability, self.price, self.eta_ms, self.reliability_bps
        )
    }
}

/// The builtins of node `index`: deterministic, and varied so that each strategy has its own
/// winner among nodes 1..=4 (sha256: cheapest node-2, fastest node-3, most reliable node-1).
pub fn builtins_for(index: usize) -> Vec<Builtin> {
    let i = index as u64;
    CAPABILITIES
        .iter()
        .enumerate()
        .map(|(k, capability)| Builtin {
            capability: (*capability).to_owned(),
            price: 10 + 10 * ((3 * i) % 5) + i / 5 + k as u64,
            eta_ms: 100 + 200 * ((2 * i) % 5) + 10 * (i / 5),
            reliability_bps: (9000 + 200 * ((4 * i) % 5)).saturating_sub(i / 5),
        })
        .collect()
}

/// One node of the layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Index (node-0 is the bootstrap node).
    pub index: usize,
    /// `node-i`.
    pub name: String,
    /// Its pvl directory.
    pub dir: PathBuf,
    /// Its peer id.
    pub peer_id: String,
    /// Its listen multiaddress (without `/p2p/...`).
    pub listen: String,
    /// What it serves.
    pub builtins: Vec<Builtin>,
    /// Its network namespace (netns mode).
    pub netns: Option<String>,
    /// Its public key in hex, as objects name their signer (known once it ran).
    #[serde(default)]
    pub public_key: Option<String>,
}

impl NodeInfo {
    /// The address other nodes dial: listen address plus `/p2p/<peer id>`.
    pub fn dial_addr(&self) -> String {
        format!("{}/p2p/{}", self.listen, self.peer_id)
    }

    /// The builtin serving `capability`.
    pub fn builtin(&self, capability: &str) -> Option<&Builtin> {
        self.builtins.iter().find(|b| b.capability == capability)
    }
}

/// The state file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Format version (1).
    pub version: u32,
    /// The pvl binary the nodes run.
    pub pvl: PathBuf,
    /// Private network (swarm key and allow-list).
    pub private: bool,
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// Namespaces, veths and bridges made for netns mode.
    pub netns: Option<NetnsLayout>,
}

/// When a testnet is ready: not a full mesh (no real network is one, and at 100 nodes a node
/// keeps at most `max_peers` connections), but
/// - every node has at least [`Readiness::min_connections`] open connections, and
/// - the graph of connections is connected: every node reaches every other through
///   connections, so gossip reaches every node and Kademlia can find any peer, which a direct
///   message then dials on demand.
pub struct Readiness;

impl Readiness {
    /// Connections each node needs: all the others up to 4 nodes, then 4.
    pub fn min_connections(nodes: usize) -> usize {
        nodes.saturating_sub(1).min(4)
    }

    /// The nodes node 0 cannot reach through the connections listed (`ids[i]` is node i's
    /// peer id, `connections[i]` the peer ids node i is connected to; a connection counts in
    /// both directions).
    pub fn unreached(ids: &[&str], connections: &[Vec<String>]) -> Vec<usize> {
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut links: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
        for (i, peers) in connections.iter().enumerate() {
            for peer in peers {
                if let Some(&j) = index.get(peer.as_str()) {
                    links[i].push(j);
                    links[j].push(i);
                }
            }
        }
        let mut seen = vec![false; ids.len()];
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            if i < seen.len() && !seen[i] {
                seen[i] = true;
                stack.extend(links[i].iter().copied());
            }
        }
        (0..ids.len()).filter(|&i| !seen[i]).collect()
    }
}

/// Options of `up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Number of nodes (at least 2).
    pub nodes: usize,
    /// Private network: one swarm key, an allow-list of all members.
    pub private: bool,
    /// Testnet directory.
    pub dir: PathBuf,
    /// First listen port (node-i listens on base+i); free ports when `None`.
    pub base_port: Option<u16>,
    /// Network-namespace mode.
    pub netns: Option<NetnsOptions>,
    /// How long to wait for the testnet to be ready ([`Readiness`]).
    pub ready_timeout: Duration,
}

impl UpOptions {
    /// A public loopback testnet of `nodes` in `dir` on free ports, waiting up to 30 s plus
    /// `per_node` for it to be ready (the demo, bench and chaos start these).
    pub fn local(nodes: usize, dir: PathBuf, per_node: Duration) -> Self {
        UpOptions {
            nodes,
            private: false,
            dir,
            base_port: None,
            netns: None,
            ready_timeout: Duration::from_secs(30) + per_node * nodes as u32,
        }
    }
}

/// What one node looks like now.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// `node-i`.
    pub name: String,
    /// Its pid, if one is recorded.
    pub pid: Option<u32>,
    /// Whether that process is alive.
    pub alive: bool,
    /// Its peer id.
    pub peer_id: String,
    /// Connected peers (from `pvl status`).
    pub connected_peers: Option<u64>,
    /// Kademlia routing table size.
    pub routing_table: Option<u64>,
    /// Objects in its trace store.
    pub objects_stored: Option<u64>,
}

/// A testnet on disk, and the means to drive its nodes.
pub struct Testnet {
    /// The testnet directory.
    pub dir: PathBuf,
    /// Its layout.
    pub state: State,
    /// The pvl runner.
    pub pvl: Pvl,
}

impl Testnet {
    /// Creates the node directories, starts every node and waits until each sees all others.
    /// On failure the nodes already started are stopped again.
    pub fn up(options: &UpOptions, pvl_bin: PathBuf) -> Result<Testnet> {
        if options.nodes < 2 {
            bail!("a testnet needs at least 2 nodes");
        }
        refuse_running(&options.dir)?;
        std::fs::create_dir_all(&options.dir)
            .with_context(|| format!("cannot create {}", options.dir.display()))?;
        let dir = std::fs::canonicalize(&options.dir)?;
        let pvl = Pvl::new(pvl_bin.clone());
        let layout = match &options.netns {
            Some(netns_options) => Some(netns::create(&dir, options.nodes, netns_options)?),
            None => None,
        };
        let listens = listen_addrs(options, layout.as_ref())?;
        let mut nodes = Vec::with_capacity(options.nodes);
        for (index, listen) in listens.into_iter().enumerate() {
            let node_dir = dir.join(format!("node-{index}"));
            let init = pvl.ok(&node_dir, None, &["init", "--listen", &listen, "--force"])?;
            nodes.push(NodeInfo {
                index,
                name: format!("node-{index}"),
                dir: node_dir,
                peer_id: peer_id_of(&init)?,
                listen,
                // NAT testbed: the bootstrap node and the relay only route; every round is
                // between nodes behind NAT.
                builtins: if layout
                    .as_ref()
                    .is_some_and(|l| l.nat_segments > 0 && index < netns::PUBLIC_NODES)
                {
                    Vec::new()
                } else {
                    builtins_for(index)
                },
                netns: layout.as_ref().map(|l| l.namespace(index)),
                public_key: None,
            });
        }
        let mut testnet = Testnet {
            dir: dir.clone(),
            state: State {
                version: 1,
                pvl: pvl_bin,
                private: options.private,
                nodes,
                netns: layout,
            },
            pvl,
        };
        testnet.configure_nodes()?;
        testnet.save()?;
        let started = testnet
            .start_all()
            .and_then(|()| testnet.record_public_keys())
            .and_then(|()| testnet.wait_ready(options.ready_timeout));
        if let Err(e) = started {
            let _ = down_dir(&dir);
            return Err(e);
        }
        Ok(testnet)
    }

    /// Opens the testnet recorded in `dir`.
    pub fn load(dir: &Path) -> Result<Testnet> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no testnet in {} (no {STATE_FILE})", dir.display()))?;
        let state: State = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        Ok(Testnet {
            dir: dir.to_owned(),
            pvl: Pvl::new(state.pvl.clone()),
            state,
        })
    }

    fn save(&self) -> Result<()> {
        let tmp = self.dir.join(".testnet.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&self.state)?)?;
        std::fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        Ok(())
    }

    /// Asks every node for its public key (objects name their signer by it) and saves it.
    fn record_public_keys(&mut self) -> Result<()> {
        let all: Vec<usize> = (0..self.state.nodes.len()).collect();
        let keys = for_each_parallel(&all, |index| -> Result<Option<String>> {
            let node = self.node(index)?;
            Ok(if node.netns.is_some() {
                let id = self.cli_json(index, &["id"])?;
                id["public_key"].as_str().map(str::to_owned)
            } else {
                Some(self.api(index)?.id()?.public_key.to_string())
            })
        });
        for (index, key) in all.into_iter().zip(keys) {
            self.state.nodes[index].public_key = key?;
        }
        self.save()
    }

    /// The node whose peer id or public key (hex) this is.
    pub fn node_named_by(&self, key: &str) -> Option<&NodeInfo> {
        self.state
            .nodes
            .iter()
            .find(|n| n.peer_id == key || n.public_key.as_deref() == Some(key))
    }

    /// Writes every node's final configuration: builtins, bootstrap, swarm key, allow-list.
    fn configure_nodes(&self) -> Result<()> {
        let mut private_args: Vec<String> = Vec::new();
        if self.state.private {
            let key = self
                .pvl
                .ok(&self.dir.join("node-0"), None, &["psk", "gen"])?;
            let key_path = self.dir.join("swarm.key");
            std::fs::write(&key_path, key)?;
            let allow_path = self.dir.join("allow.txt");
            let ids: Vec<&str> = self
                .state
                .nodes
                .iter()
                .map(|n| n.peer_id.as_str())
                .collect();
            std::fs::write(&allow_path, format!("{}\n", ids.join("\n")))?;
            private_args = vec![
                "--psk".into(),
                key_path.display().to_string(),
                "--allow".into(),
                allow_path.display().to_string(),
            ];
        }
        let bootstrap = self.state.nodes[0].dial_addr();
        // NAT testbed: node-1 serves as the relay; nodes behind NAT reserve a slot on it.
        let nat = self.state.netns.as_ref().filter(|l| l.nat_segments > 0);
        let relay = self
            .state
            .nodes
            .get(netns::PUBLIC_NODES - 1)
            .map(NodeInfo::dial_addr);
        for node in &self.state.nodes {
            let mut args: Vec<String> = vec!["init".into(), "--force".into()];
            args.extend(["--listen".into(), node.listen.clone()]);
            if node.index != 0 {
                args.extend(["--bootstrap".into(), bootstrap.clone()]);
            }
            if let Some(layout) = nat {
                if node.index == netns::PUBLIC_NODES - 1 {
                    args.push("--relay-service".into());
                }
                if layout.segment(node.index).is_some()
                    && let Some(relay) = &relay
                {
                    args.extend(["--relay".into(), relay.clone()]);
                }
            }
            for builtin in &node.builtins {
                args.extend(["--builtin".into(), builtin.spec()]);
            }
            args.extend(private_args.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.pvl.ok(&node.dir, None, &args)?;
        }
        Ok(())
    }

    /// The node with this index.
    pub fn node(&self, index: usize) -> Result<&NodeInfo> {
        self.state.nodes.get(index).with_context(|| {
            format!(
                "no node-{index}: this testnet has {}",
                self.state.nodes.len()
            )
        })
    }

    /// Parses `3` or `node-3`.
    pub fn parse_node(&self, name: &str) -> Result<usize> {
        let index: usize = name
            .strip_prefix("node-")
            .unwrap_or(name)
            .parse()
            .with_context(|| format!("`{name}` is not a node (node-N or N)"))?;
        self.node(index)?;
        Ok(index)
    }

    /// The recorded pid of node `index`.
    pub fn pid(&self, index: usize) -> Option<u32> {
        let node = self.state.nodes.get(index)?;
        std::fs::read_to_string(node.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether node `index` has a live process.
    pub fn is_alive(&self, index: usize) -> bool {
        self.pid(index).is_some_and(procs::alive)
    }

    /// Starts every node (all at once: their addresses are fixed) and waits for their APIs.
    fn start_all(&self) -> Result<()> {
        for index in 0..self.state.nodes.len() {
            self.spawn(index)?;
        }
        for index in 0..self.state.nodes.len() {
            self.wait_api(index)?;
        }
        Ok(())
    }

    /// Starts node `index` detached and waits until its control API is up.
    pub fn start(&self, index: usize) -> Result<()> {
        self.spawn(index)?;
        self.wait_api(index)
    }

    fn spawn(&self, index: usize) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let node = self.node(index)?;
        if self.is_alive(index) {
            bail!("{} is running already", node.name);
        }
        // A node killed with SIGKILL leaves its api.addr behind.
        let _ = std::fs::remove_file(node.dir.join("api.addr"));
        wait_lock_released(&node.dir, &node.name)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("node.log"))?;
        let mut command = match &node.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.state.pvl);
                c
            }
            None => Command::new(&self.state.pvl),
        };
        let child = command
            .args(["run", "--dir"])
            .arg(&node.dir)
            .env_remove("PVL_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C in our terminal reaches us, and we stop it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", self.state.pvl.display()))?;
        std::fs::write(node.dir.join("pid"), child.id().to_string())?;
        Ok(())
    }

    fn wait_api(&self, index: usize) -> Result<()> {
        let node = self.node(index)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !node.dir.join("api.addr").exists() {
            if !self.is_alive(index) {
                bail!(
                    "{} exited at start; the end of its log:\n{}",
                    node.name,
                    log_tail(&node.dir, 15)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not open its control API within {START_TIMEOUT:?}",
                    node.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Runs `pvl ARGS` on node `index` (inside its namespace in netns mode).
    pub fn cli(&self, index: usize, args: &[&str]) -> Result<String> {
        let node = self.node(index)?;
        self.pvl.ok(&node.dir, node.netns.as_deref(), args)
    }

    /// Runs `pvl ARGS --json` on node `index`.
    pub fn cli_json(&self, index: usize, args: &[&str]) -> Result<Value> {
        let node = self.node(index)?;
        self.pvl.json(&node.dir, node.netns.as_deref(), args)
    }

    /// The peers node `index` knows (routing table and connections: `pvl peers`).
    ///
    /// Asked through the control API, or through `pvl peers` inside the node's namespace in
    /// netns mode (the API listens on the namespace's loopback). Readiness asks every node
    /// about five times a second: with 100 nodes, one `pvl` process per question took a
    /// good part of both cores while the nodes were connecting.
    pub fn peers(&self, index: usize) -> Result<Vec<pvl_api::Peer>> {
        if self.node(index)?.netns.is_none() {
            return Ok(self.api(index)?.peers()?);
        }
        let value = self.cli_json(index, &["peers"])?;
        serde_json::from_value(value).context("`pvl peers --json` gave an unexpected shape")
    }

    /// A control API client for node `index` (not in netns mode: its API is on the host).
    pub fn api(&self, index: usize) -> Result<pvl_api::Client> {
        let node = self.node(index)?;
        pvl_api::Client::open(&node.dir)
            .with_context(|| format!("cannot reach the control API of {}", node.name))
    }

    /// Waits until the testnet is ready (see [`Readiness`]), or fails naming the nodes that
    /// are not.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let ids: Vec<&str> = self
            .state
            .nodes
            .iter()
            .map(|n| n.peer_id.as_str())
            .collect();
        let need = Readiness::min_connections(ids.len());
        let deadline = Instant::now() + timeout;
        let mut connections: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        loop {
            let answers = for_each_parallel(&pending, |index| {
                self.peers(index)
                    .map(|peers| {
                        peers
                            .into_iter()
                            .filter(|p| p.connected)
                            .map(|p| p.peer_id)
                            .collect()
                    })
                    .unwrap_or_default()
            });
            for (&index, answer) in pending.iter().zip(answers) {
                connections[index] = answer;
            }
            pending.retain(|&i| connections[i].len() < need);
            if pending.is_empty() {
                let unreached = Readiness::unreached(&ids, &connections);
                if unreached.is_empty() {
                    return Ok(());
                }
                // Connections change (the node closes idle ones): ask everyone again.
                if Instant::now() > deadline {
                    bail!(
                        "the testnet is split within {timeout:?}: node-0 cannot reach {} \
                         through connections",
                        unreached
                            .iter()
                            .map(|i| format!("node-{i}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                pending = (0..ids.len()).collect();
            } else if Instant::now() > deadline {
                let names: Vec<String> = pending
                    .iter()
                    .map(|&i| format!("node-{i} has {} of {need}", connections[i].len()))
                    .collect();
                bail!(
                    "not every node has {need} connections within {timeout:?}: {}",
                    names.join(", ")
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Every node's status.
    pub fn status(&self) -> Vec<NodeStatus> {
        self.state
            .nodes
            .iter()
            .map(|node| {
                let pid = self.pid(node.index);
                let alive = pid.is_some_and(procs::alive);
                let status = if alive {
                    self.cli_json(node.index, &["status"]).ok()
                } else {
                    None
                };
                let field = |key: &str| status.as_ref().and_then(|s| s[key].as_u64());
                NodeStatus {
                    name: node.name.clone(),
                    pid,
                    alive,
                    peer_id: node.peer_id.clone(),
                    connected_peers: field("connected_peers"),
                    routing_table: field("routing_table"),
                    objects_stored: field("objects_stored"),
                }
            })
            .collect()
    }

    /// SIGKILL to node `index`; returns once it is gone.
    pub fn kill(&self, index: usize) -> Result<()> {
        let node = self.node(index)?;
        let pid = self
            .pid(index)
            .with_context(|| format!("{} has no pid", node.name))?;
        procs::signal(pid, rustix::process::Signal::KILL);
        let deadline = Instant::now() + STOP_GRACE;
        while procs::alive(pid) {
            if Instant::now() > deadline {
                bail!("{} (pid {pid}) survived SIGKILL", node.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops node `index` if it runs (SIGTERM, then SIGKILL) and starts it again.
    pub fn restart(&self, index: usize) -> Result<()> {
        if let Some(pid) = self.pid(index).filter(|&p| procs::alive(p)) {
            procs::terminate_all(&[pid], STOP_GRACE);
        }
        self.start(index)
    }

    /// Every recorded pid that is alive.
    fn live_pids(&self) -> Vec<u32> {
        (0..self.state.nodes.len())
            .filter_map(|i| self.pid(i))
            .filter(|&p| procs::alive(p))
            .collect()
    }

    /// SIGTERM to every node, SIGKILL to those still running after the grace period, then the
    /// namespaces, veths and bridges of netns mode. Returns the nodes that had to be killed.
    pub fn down(&self) -> Result<Vec<String>> {
        let pids = self.live_pids();
        let killed = procs::terminate_all(&pids, STOP_GRACE);
        let names = self
            .state
            .nodes
            .iter()
            .filter(|n| self.pid(n.index).is_some_and(|p| killed.contains(&p)))
            .map(|n| n.name.clone())
            .collect();
        for node in &self.state.nodes {
            let _ = std::fs::remove_file(node.dir.join("pid"));
        }
        if let Some(layout) = &self.state.netns {
            netns::destroy(layout)?;
        }
        Ok(names)
    }
}

/// Waits until no process holds the node directory's lock (`pvl.lock`, which `pvl run` holds
/// with `flock`). A process killed a moment ago can look gone (its main thread a zombie) while
/// its other threads still exit and hold the lock; a node started then would refuse to run.
fn wait_lock_released(dir: &Path, name: &str) -> Result<()> {
    let Ok(file) = std::fs::File::open(dir.join("pvl.lock")) else {
        return Ok(());
    };
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        let locked = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if locked.is_ok() {
            let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name}'s directory is still locked by a running pvl after {STOP_GRACE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `down` for the testnet in `dir` (used by clean-up paths).
pub fn down_dir(dir: &Path) -> Result<()> {
    let testnet = Testnet::load(dir)?;
    let killed = testnet.down()?;
    if !killed.is_empty() {
        eprintln!("killed after the grace period: {}", killed.join(", "));
    }
    Ok(())
}

/// Refuses to create a testnet over one that still runs.
fn refuse_running(dir: &Path) -> Result<()> {
    if let Ok(existing) = Testnet::load(dir)
        && !existing.live_pids().is_empty()
    {
        bail!(
            "a testnet is running in {} already: `pvl-testnet down --dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The listen address of every node.
fn listen_addrs(options: &UpOptions, layout: Option<&NetnsLayout>) -> Result<Vec<String>> {
    if let Some(layout) = layout {
        return Ok((0..options.nodes)
            .map(|i| format!("/ip4/{}/tcp/4001", layout.address(i)))
            .collect());
    }
    let ports: Vec<u16> = match options.base_port {
        Some(base) => (0..options.nodes)
            .map(|i| {
                u16::try_from(i)
                    .ok()
                    .and_then(|i| base.checked_add(i))
                    .context("--base-port plus the node count passes 65535")
            })
            .collect::<Result<_>>()?,
        None => free_ports(options.nodes)?,
    };
    Ok(ports
        .into_iter()
        .map(|p| format!("/ip4/127.0.0.1/tcp/{p}"))
        .collect())
}

/// `n` distinct free loopback TCP ports (all held open until every one is picked), below the
/// system's ephemeral range: a port from that range that is free now can be taken a moment
/// later by an outgoing connection (with 100 nodes dialling each other, it was), and the node
/// given it could not listen. The search starts at a point that depends on the process id,
/// so testnets started side by side (tests) rarely try the same ports.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOWEST: u16 = 10_000;
    let span = ephemeral_start.saturating_sub(LOWEST);
    if span < 1_000 {
        bail!("no room for testnet ports below the ephemeral range ({ephemeral_start})");
    }
    let offset = (std::process::id() as u64 * 7919 % u64::from(span)) as u16;
    let mut held = Vec::with_capacity(n);
    for step in 0..span {
        if held.len() == n {
            break;
        }
        let port = LOWEST + (offset + step) % span;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    if held.len() < n {
        bail!("cannot find {n} free loopback ports below {ephemeral_start}");
    }
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The peer id from `pvl init`'s output (`peer id     12D3...`).
fn peer_id_of(init_output: &str) -> Result<String> {
    init_output
        .lines()
        .find_map(|l| l.strip_prefix("peer id"))
        .map(|rest| rest.trim().to_owned())
        .filter(|id| !id.is_empty())
        .with_context(|| format!("`pvl init` printed no peer id: {init_output}"))
}

/// The last `lines` lines of a node's log.
pub fn log_tail(dir: &Path, lines: usize) -> String {
    let log = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Nodes asked at once by [`for_each_parallel`].
const PARALLEL_QUESTIONS: usize = 16;

/// `ask(i)` for every index, at most [`PARALLEL_QUESTIONS`] at a time; answers in the order of
/// `indices`. While 100 nodes connect on 2 cores a node takes a second or more to answer even
/// `GET /v1/id`: asked one after another, a single round of readiness questions took 90 s.
fn for_each_parallel<T: Send>(indices: &[usize], ask: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut answers: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_QUESTIONS.min(indices.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&index) = indices.get(at) else {
                            return mine;
                        };
                        mine.push((at, ask(index)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    answers.sort_by_key(|(at, _)| *at);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategy_has_its_own_winner_among_nodes_one_to_four() {
        let sha = |i: usize| builtins_for(i)[1].clone();
        let providers: Vec<usize> = (1..=4).collect();
        let cheapest = providers.iter().min_by_key(|&&i| sha(i).price);
        let fastest = providers.iter().min_by_key(|&&i| sha(i).eta_ms);
        let surest = providers.iter().max_by_key(|&&i| sha(i).reliability_bps);
        assert_eq!((cheapest, fastest, surest), (Some(&2), Some(&3), Some(&1)));
    }

    #[test]
    fn builtins_are_deterministic_and_parseable_specs() {
        assert_eq!(builtins_for(7), builtins_for(7));
        assert_eq!(builtins_for(2)[1].spec(), "sha256:21:900:9600");
        for i in 0..60 {
            for b in builtins_for(i) {
                assert!(b.reliability_bps <= 10_000 && b.price > 0 && b.eta_ms > 0);
            }
        }
    }

    #[test]
    fn readiness_needs_enough_connections_and_one_connected_graph() {
        assert_eq!(Readiness::min_connections(2), 1);
        assert_eq!(Readiness::min_connections(5), 4);
        assert_eq!(Readiness::min_connections(100), 4);
        let ids = ["a", "b", "c", "d"];
        let link = |peers: &[&str]| peers.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        // a-b and c-d: two islands.
        let split = [link(&["b"]), link(&[]), link(&["d"]), link(&[])];
        assert_eq!(Readiness::unreached(&ids, &split), vec![2, 3]);
        // One link from c's side to b joins them (a connection counts both ways).
        let joined = [link(&["b"]), link(&[]), link(&["d", "b"]), link(&[])];
        assert!(Readiness::unreached(&ids, &joined).is_empty());
    }

    #[test]
    fn parallel_questions_keep_the_order_of_the_nodes() {
        let indices: Vec<usize> = (0..100).rev().collect();
        let answers = for_each_parallel(&indices, |i| i * 2);
        assert_eq!(answers, indices.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(for_each_parallel(&[], |i: usize| i).is_empty());
    }

    #[test]
    fn reads_the_peer_id_from_init_output() {
        let out = "initialised x\npeer id     12D3KooWAbc\nrun it with `pvl run --dir x`\n";
        assert_eq!(peer_id_of(out).unwrap(), "12D3KooWAbc");
        assert!(peer_id_of("nothing").is_err());
    }
}
