//! `pvl-testnet`: local testnets of real `pvl` processes, driven only through the `pvl` CLI and
//! the node's control API, the way a user's script would drive them.
//!
//! * `up` / `status` / `kill` / `restart` / `down`: a testnet that outlives the command
//!   ([`testnet`]: ordinary pvl directories, detached processes, a state file).
//! * `demo`: the README's main command: a fresh testnet, every [`scenarios`] entry end to end,
//!   traces printed, exported and verified ([`demo`]).
//! * `bench`: gossip delivery, round latency, throughput, RSS and CPU ([`bench`]).
//! * `chaos`: intents while providers are killed and restarted ([`chaos`]).
//! * `--netns`: every node in its own network namespace behind one bridge, with netem latency
//!   and loss, `partition` and `heal` ([`netns`]).
//!
//! Commands that own their testnet (`demo`, `bench`, `chaos`) stop it on every exit path:
//! return, error, panic (a drop guard) and Ctrl-C/SIGTERM (a signal thread) ([`procs`]).

#[macro_use]
mod out;
mod bench;
mod chaos;
mod demo;
mod netns;
mod procs;
mod pvl;
mod scenarios;
mod stats;
mod testnet;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::testnet::{Testnet, UpOptions};

/// pvl-testnet: local testnets of real pvl processes (demo, benchmarks, chaos).
#[derive(Debug, Parser)]
#[command(name = "pvl-testnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The testnet directory option shared by the commands that act on an existing testnet.
#[derive(Debug, clap::Args)]
struct DirArg {
    /// Testnet directory.
    #[arg(long, env = "PVL_TESTNET_DIR", default_value_os_t = default_dir())]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and start a testnet; returns once it is ready: every node has 4 connections (or
    /// all the others) and the connections join every node.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Private network: one swarm key, an allow-list of every member.
        #[arg(long)]
        private: bool,
        #[command(flatten)]
        dir: DirArg,
        /// node-i listens on BASE+i (default: free ports).
        #[arg(long, value_name = "PORT")]
        base_port: Option<u16>,
        /// Every node in its own network namespace on a bridge (Linux, root, iproute2).
        #[arg(long)]
        netns: bool,
        /// netns: added delay on every node's interface, ms.
        #[arg(long, value_name = "MS", default_value_t = 0, requires = "netns")]
        latency: u32,
        /// netns: packet loss on every node's interface, percent.
        #[arg(long, value_name = "PCT", default_value_t = 0.0, requires = "netns")]
        loss: f32,
        /// netns: NAT testbed with this many private segments. node-0 (bootstrap) and node-1
        /// (circuit relay) sit on the public bridge 10.77.0.0/24; node-2, node-3, ... go
        /// round-robin onto the private segments 10.78.S.0/24 (node-i on segment (i-2) mod N),
        /// each behind its own NAT router namespace (nftables masquerade; nothing dials in).
        /// Needs at least N+2 nodes and `nft`.
        #[arg(long, value_name = "N", default_value_t = 0, requires = "netns")]
        nat: usize,
        /// NAT testbed: symmetric NAT routers (a random outside port per connection), which
        /// defeat hole punching: connections between NATed nodes stay relayed.
        #[arg(long, requires = "nat")]
        symmetric_nat: bool,
        /// Give up if the testnet is not ready within this time (ready: every node has 4
        /// connections or all the others, and the connections join every node).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Per node: pid alive, peer id, peers, objects stored.
    Status {
        #[command(flatten)]
        dir: DirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every open connection between nodes and how it runs: direct, hole_punched (DCUtR) or
    /// relayed (from each node's `pvl peers`).
    Links {
        #[command(flatten)]
        dir: DirArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop every node: SIGTERM, wait, SIGKILL stragglers; remove netns plumbing.
    Down {
        #[command(flatten)]
        dir: DirArg,
    },
    /// SIGKILL one node.
    Kill {
        /// node-N or N.
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop (if running) and start one node.
    Restart {
        /// node-N or N.
        node: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// netns: cut these nodes off from the others (they still reach each other).
    Partition {
        /// node-N or N, one or more.
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        dir: DirArg,
    },
    /// netns: undo every partition.
    Heal {
        #[command(flatten)]
        dir: DirArg,
    },
    /// A fresh testnet, every scenario end to end, traces printed, exported and verified.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Output folder (default: a fresh folder in the temporary directory).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Only the scenarios whose name contains this.
        #[arg(long, value_name = "TEXT")]
        only: Option<String>,
    },
    /// Measure gossip, round latency, throughput, RSS and CPU on a fresh testnet.
    Bench {
        /// Number of nodes.
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Write the results as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Gossip: intents published.
        #[arg(long, default_value_t = 100)]
        intents: usize,
        /// Sequential contract-net rounds (latency).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Concurrent contract-net rounds (throughput).
        #[arg(long, default_value_t = 200)]
        load_rounds: usize,
        /// Concurrent requests for the throughput measure.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Testnet directory (default: fresh).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Intents while random providers are killed and restarted; checks every receipt.
    Chaos {
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Intents to publish.
        #[arg(long, default_value_t = 30)]
        intents: usize,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Intents in flight at once.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Testnet directory (default: fresh).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join("pvl-testnet")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _cleanup = procs::CleanupGuard;
    if let Err(e) = procs::install_interrupt_handler() {
        eprintln!("warning: no Ctrl-C handler ({e:#}): stop nodes with `pvl-testnet down`");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            nodes,
            private,
            dir,
            base_port,
            netns,
            latency,
            loss,
            nat,
            symmetric_nat,
            timeout,
        } => {
            if netns && let Some(reason) = crate::netns::unavailable() {
                out!("{reason}");
                return Ok(());
            }
            let options = UpOptions {
                nodes,
                private,
                dir: dir.dir,
                base_port,
                netns: netns.then_some(crate::netns::NetnsOptions {
                    latency_ms: latency,
                    loss_pct: loss,
                    nat_segments: nat,
                    nat_symmetric: symmetric_nat,
                }),
                ready_timeout: timeout
                    .unwrap_or_else(|| Duration::from_secs(30 + 2 * nodes as u64)),
            };
            let testnet = Testnet::up(&options, pvl::locate()?)?;
            out!(
                "testnet of {nodes} node(s) up in {} ({}); every node has {} connections or more, \
                 and the connections join every node",
                testnet.dir.display(),
                if private { "private" } else { "public" },
                crate::testnet::Readiness::min_connections(nodes)
            );
            for node in &testnet.state.nodes {
                let placement = testnet
                    .state
                    .netns
                    .as_ref()
                    .filter(|l| l.nat_segments > 0)
                    .map(|l| format!("  [{}]", l.placement(node.index)))
                    .unwrap_or_default();
                out!(
                    "  {:<8} {}  {}  pid {}{placement}",
                    node.name,
                    node.peer_id,
                    node.listen,
                    testnet.pid(node.index).unwrap_or(0)
                );
            }
            out!(
                "use `pvl --dir {}/node-0 ...`; stop with `pvl-testnet down --dir {}`",
                testnet.dir.display(),
                testnet.dir.display()
            );
            Ok(())
        }
        Command::Status { dir, json } => status(&Testnet::load(&dir.dir)?, json),
        Command::Links { dir, json } => links(&Testnet::load(&dir.dir)?, json),
        Command::Down { dir } => {
            let testnet = Testnet::load(&dir.dir)?;
            let killed = testnet.down()?;
            if killed.is_empty() {
                out!("every node stopped on SIGTERM");
            } else {
                out!(
                    "stopped; killed after the grace period: {}",
                    killed.join(", ")
                );
            }
            Ok(())
        }
        Command::Kill { node, dir } => {
            let testnet = Testnet::load(&dir.dir)?;
            let index = testnet.parse_node(&node)?;
            testnet.kill(index)?;
            out!("node-{index} killed (SIGKILL)");
            Ok(())
        }
        Command::Restart { node, dir } => {
            let testnet = Testnet::load(&dir.dir)?;
            let index = testnet.parse_node(&node)?;
            testnet.restart(index)?;
            out!(
                "node-{index} restarted (pid {})",
                testnet.pid(index).unwrap_or(0)
            );
            Ok(())
        }
        Command::Partition { nodes, dir } => {
            let testnet = Testnet::load(&dir.dir)?;
            let layout = netns_layout(&testnet)?;
            let indexes = nodes
                .iter()
                .map(|n| testnet.parse_node(n))
                .collect::<Result<Vec<_>>>()?;
            crate::netns::partition(layout, &indexes)?;
            out!("partitioned: {nodes:?} are cut off from the others");
            Ok(())
        }
        Command::Heal { dir } => {
            let testnet = Testnet::load(&dir.dir)?;
            crate::netns::heal(netns_layout(&testnet)?)?;
            out!("healed: every node is on the main bridge");
            Ok(())
        }
        Command::Demo { nodes, out, only } => {
            demo::run(&demo::DemoOptions { nodes, out, only }, pvl::locate()?)
        }
        Command::Bench {
            nodes,
            json,
            intents,
            rounds,
            load_rounds,
            concurrency,
            dir,
        } => {
            let options = bench::BenchOptions {
                nodes,
                json,
                intents,
                rounds,
                load_rounds,
                concurrency,
                dir,
            };
            bench::run(&options, pvl::locate()?).map(|_| ())
        }
        Command::Chaos {
            nodes,
            intents,
            seed,
            concurrency,
            dir,
        } => {
            let options = chaos::ChaosOptions {
                nodes,
                intents,
                seed,
                concurrency,
                dir,
            };
            chaos::run(&options, pvl::locate()?).map(|_| ())
        }
    }
}

/// One open connection between two nodes of the testnet.
#[derive(Debug, serde::Serialize)]
struct LinkRow {
    from: String,
    to: String,
    link: String,
}

/// `links`: every open connection between nodes and whether it is direct, hole punched or
/// relayed, with a count of each.
fn links(testnet: &Testnet, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for node in &testnet.state.nodes {
        let value = testnet.cli_json(node.index, &["peers"])?;
        let peers: Vec<pvl_api::Peer> = serde_json::from_value(value)
            .with_context(|| format!("{}: `pvl peers --json` is not a peer list", node.name))?;
        for peer in peers.iter().filter(|p| p.connected) {
            let to = testnet
                .node_named_by(&peer.peer_id)
                .map_or_else(|| peer.peer_id.clone(), |n| n.name.clone());
            rows.push(LinkRow {
                from: node.name.clone(),
                to,
                link: peer.link.map_or("unknown", |l| l.name()).to_owned(),
            });
        }
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for row in &rows {
        out!("{:<8} -> {:<8} {}", row.from, row.to, row.link);
    }
    let count = |name: &str| rows.iter().filter(|r| r.link == name).count();
    out!(
        "{} connection ends: {} direct, {} hole_punched, {} relayed",
        rows.len(),
        count("direct"),
        count("hole_punched"),
        count("relayed")
    );
    Ok(())
}

fn netns_layout(testnet: &Testnet) -> Result<&crate::netns::NetnsLayout> {
    testnet
        .state
        .netns
        .as_ref()
        .context("this testnet was not started with --netns")
}

fn status(testnet: &Testnet, json: bool) -> Result<()> {
    let statuses = testnet.status();
    if json {
        out!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        out!(
            "{:<8} {:>8} {:<6} {:<53} {:>5} {:>6} {:>8}",
            "NODE",
            "PID",
            "ALIVE",
            "PEER ID",
            "PEERS",
            "ROUTES",
            "OBJECTS"
        );
        let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
        for s in &statuses {
            out!(
                "{:<8} {:>8} {:<6} {:<53} {:>5} {:>6} {:>8}",
                s.name,
                s.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                if s.alive { "yes" } else { "no" },
                s.peer_id,
                opt(s.connected_peers),
                opt(s.routing_table),
                opt(s.objects_stored)
            );
        }
    }
    if statuses.iter().any(|s| !s.alive) {
        bail!("not every node is running");
    }
    Ok(())
}
