//! The `pvl` command line. Commands that need a running node talk to its control API through
//! `DIR/api.addr` and `DIR/api-token`; `init`, `psk gen`, `run` and `trace verify` work alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pvl_api::{Client, Event, ExportFormat, Outcome, Part, PublishIntent, TraceView};
use pvl_protocol::{Kind, ObjectId};
use serde_json::Value;

use crate::config::Config;
use crate::home;

/// `println!` that returns an error instead of panicking when stdout is closed (e.g. piped
/// into `head`); [`main`] ends quietly on that error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// pvl: a peer-to-peer coordination node for Pervasive.link.
#[derive(Debug, Parser)]
#[command(name = "pvl", version, about)]
pub struct Cli {
    /// Node directory (default: $PVL_HOME, else the per-user data directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node directory: config.toml, key (0600), api-token.
    Init(InitArgs),
    /// Pre-shared keys for private networks.
    Psk {
        /// What to do.
        #[command(subcommand)]
        command: PskCommand,
    },
    /// Run the node in the foreground (SIGINT/SIGTERM stop it cleanly).
    Run(RunArgs),
    /// Show this node's peer id and addresses.
    Id(JsonFlag),
    /// Open the web view: prints a one-time sign-in address (single-use, valid two minutes)
    /// and opens it with `xdg-open` when a display is available.
    Ui(JsonFlag),
    /// Show the node's network and store state.
    Status(JsonFlag),
    /// List known peers.
    Peers(JsonFlag),
    /// The capability directory: capabilities advertised on the network, their providers and
    /// terms.
    Capabilities(JsonFlag),
    /// Intents.
    Intent {
        /// What to do.
        #[command(subcommand)]
        command: IntentCommand,
    },
    /// Workflows: multi-stage pipelines.
    Workflow {
        /// What to do.
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// Traces: list, show, export, verify, analyse.
    Trace {
        /// What to do.
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// The node's configuration file: check it, or print its reference.
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Serve the node to LLM agents: a Model Context Protocol server on stdin/stdout, for the
    /// node running in the directory.
    Mcp,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page `pvl(1)`, or write one page per command into a directory.
    Man {
        /// Write pvl.1, pvl-run.1, ... into this directory instead of printing pvl.1.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `pvl run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Also write the log to files: PATH's stem plus the date, rotated daily, the last 7 kept
    /// (e.g. `--log-file /var/log/pvl/node.log` writes node.2026-01-31.log). Without it, the
    /// log goes to standard error only (journald collects it under systemd).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// `pvl config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate the node's config.toml: one line per problem, with its line and key.
    Check,
    /// Print the reference of every setting (Markdown, generated from the configuration types).
    Reference,
}

/// `--json` for scripts.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pvl init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Listen address (repeatable); default TCP and QUIC on all interfaces on one port: --port,
    /// else 4001, else (4001 taken) a free port chosen now. Written to the configuration, so
    /// the node keeps its address across restarts.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// The port of the default listen addresses (TCP and QUIC on all interfaces).
    #[arg(long, value_name = "PORT", conflicts_with = "listen")]
    pub port: Option<u16>,
    /// Bootstrap peer, ending in /p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Circuit relay to reserve a slot on when behind NAT, ending in /p2p/<relay peer id>
    /// (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub relay: Vec<String>,
    /// Serve as a circuit relay for nodes behind NAT (a publicly reachable node).
    #[arg(long)]
    pub relay_service: bool,
    /// Swarm key file of a private network (copied into the directory).
    #[arg(long, value_name = "FILE")]
    pub psk: Option<PathBuf>,
    /// Allow-list file, one peer id per line (copied into the directory).
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,
    /// Join a capability's gossip topic and announce it in the DHT without serving it (for
    /// observers; to serve, use --builtin or --agent; repeatable).
    #[arg(long, value_name = "NAME")]
    pub subscribe: Vec<String>,
    /// Refused with a pointer to --builtin, --agent and --subscribe (it used to subscribe
    /// only, which read as serving).
    #[arg(long, value_name = "NAME", hide = true)]
    pub capability: Vec<String>,
    /// Serve a builtin capability: NAME:PRICE:ETA_MS[:RELIABILITY_BPS] (echo, sha256,
    /// wordcount, sleep; repeatable).
    #[arg(long, value_name = "NAME:PRICE:ETA_MS")]
    pub builtin: Vec<String>,
    /// Serve a capability through agent programs connected to the control API (they bid with
    /// their own terms and run the tasks; repeatable).
    #[arg(long, value_name = "CAPABILITY")]
    pub agent: Vec<String>,
    /// Control API address (loopback).
    #[arg(long, value_name = "HOST:PORT")]
    pub api_listen: Option<String>,
    /// Replace an existing configuration (the key is kept).
    #[arg(long)]
    pub force: bool,
}

/// `pvl psk ...`
#[derive(Debug, Subcommand)]
pub enum PskCommand {
    /// Print a new swarm key (save it to a file and share it with the members only).
    Gen,
}

/// `pvl intent ...`
#[derive(Debug, Subcommand)]
pub enum IntentCommand {
    /// Sign, record and publish an intent.
    Publish(Box<PublishArgs>),
    /// The outcome of an intent this node published (waits while it is still running; after
    /// a restart, read from the trace store).
    Outcome {
        /// The intent's trace id.
        id: String,
        /// Give up waiting after this long, e.g. 30s.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
        timeout: Duration,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// End a run this node coordinates now; its trace gets a signed event saying why.
    Cancel {
        /// The intent's trace id (or 8+ hex digits of it).
        id: String,
        /// Why (signed into the event that ends the run).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `pvl intent publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Capability wanted.
    #[arg(long)]
    pub capability: String,
    /// Pattern: auto (the node chooses; the default), contract-net, auction, parallel,
    /// consensus.
    #[arg(long)]
    pub pattern: Option<String>,
    /// Split the input into at most N shards, each awarded to its own provider.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// How to split for --parallel: lines, bytes:SIZE, json-array.
    #[arg(long, value_name = "HOW")]
    pub split: Option<String>,
    /// How to combine shard outputs: concat, sum, or a capability that does it.
    #[arg(long, value_name = "HOW")]
    pub reduce: Option<String>,
    /// Approval committee: peer ids or public keys, comma-separated (or repeated).
    #[arg(long, value_delimiter = ',', value_name = "PEER")]
    pub committee: Vec<String>,
    /// Approvals needed (default: more than two thirds of the committee).
    #[arg(long, value_name = "K")]
    pub threshold: Option<u32>,
    /// Input, constraints and how to wait.
    #[command(flatten)]
    pub round: RoundArgs,
}

/// What every request has: input, constraints, selection and how to wait for it.
#[derive(Debug, Args)]
pub struct RoundArgs {
    /// Input text.
    #[arg(long, conflicts_with = "input_file")]
    pub input: Option<String>,
    /// Input file.
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Highest acceptable cost (per task).
    #[arg(long)]
    pub budget: Option<u64>,
    /// Deadline from now, e.g. 30s, 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// Selection strategy: lowest-cost, highest-quality, fastest, weighted:cost=W,latency=W,reliability=W.
    #[arg(long)]
    pub strategy: Option<String>,
    /// How long offers are accepted, e.g. 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires_in: Option<Duration>,
    /// How long offers are collected before selecting, e.g. 2s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub window: Option<Duration>,
    /// Select as soon as this many acceptable offers are in.
    #[arg(long, value_name = "K")]
    pub min_offers: Option<usize>,
    /// Wait until the intent is over and print its outcome (provider, output, receipt).
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `pvl workflow ...`
#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Run a workflow file (TOML stages): each ready stage is awarded by contract-net, the
    /// outputs of one stage are the inputs of the next.
    Run {
        /// The workflow file.
        file: PathBuf,
        /// Input, constraints (for every stage) and how to wait.
        #[command(flatten)]
        round: RoundArgs,
    },
    /// Check a workflow file without running it.
    Check {
        /// The workflow file.
        file: PathBuf,
    },
}

/// `pvl trace ...`
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Recent traces with their status.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One trace as a tree: who did what, when.
    Show {
        /// Trace id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Export a trace.
    Export {
        /// Trace id.
        id: String,
        /// json, dot, mermaid or bundle (self-contained signed CBOR).
        #[arg(long, value_parser = ["json", "dot", "mermaid", "bundle"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify an exported bundle offline: every signature and every link.
    Verify {
        /// Bundle file.
        file: PathBuf,
        /// Require every linked object to be in the bundle (by default a participant's
        /// partial copy verifies when every object it holds does).
        #[arg(long)]
        complete: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Which pattern ran, who did what, where the time went.
    Analyze {
        /// Trace id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Entry point: parses arguments and runs; errors are one line on stderr.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message up to its first blank line (the usage and tips follow), on one line.
            let text = e.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!("{} (see `pvl --help`)", message.join(" "));
            return std::process::ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`pvl trace show ... | head`): nothing left to say.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let dir = home::resolve_dir(cli.dir)?;
    match cli.command {
        Command::Init(args) => init(&dir, args),
        Command::Psk {
            command: PskCommand::Gen,
        } => {
            print!("{}", pvl_net::SwarmKey::generate()?.to_file_contents());
            Ok(())
        }
        Command::Run(args) => run_node(dir, args),
        Command::Ui(flag) => {
            let login = client(&dir)?.ui_login()?;
            if flag.json {
                return print_json(&login);
            }
            say!("{}", login.url);
            say!(
                "(single-use, valid {} s; it signs this browser in to the node's read-only web view)",
                login.expires_in_ms / 1000
            );
            let display = ["DISPLAY", "WAYLAND_DISPLAY"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
            if display {
                // Best effort: the address is printed either way.
                let _ = std::process::Command::new("xdg-open")
                    .arg(&login.url)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&dir),
        Command::Config {
            command: ConfigCommand::Reference,
        } => {
            print!("{}", crate::config::reference());
            Ok(())
        }
        Command::Mcp => crate::mcp::serve(dir),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "pvl", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out } => man(out.as_deref()),
        Command::Id(flag) => {
            let id = client(&dir)?.id()?;
            if flag.json {
                return print_json(&id);
            }
            say!("peer id     {}", id.peer_id);
            say!("public key  {}", id.public_key);
            for addr in &id.listen_addrs {
                say!("listening   {addr}");
            }
            Ok(())
        }
        Command::Status(flag) => {
            let status = client(&dir)?.status()?;
            if flag.json {
                return print_json(&status);
            }
            say!("{:<17} {}", "peer_id", status.peer_id);
            say!("{:<17} {}", "private", status.private);
            say!("{:<17} {}", "reachability", status.reachability);
            say!("{:<17} {}", "connected_peers", status.connected_peers);
            say!("{:<17} {}", "routing_table", status.routing_table);
            say!("{:<17} {}", "objects_stored", status.objects_stored);
            say!("{:<17} {}", "queued_publishes", status.queued_publishes);
            say!("{:<17} {}", "dir", status.dir);
            say!("{:<17} {}", "topics", status.topics.join(", "));
            let engine = &status.engine;
            say!(
                "{:<17} {} started, {} resumed after a restart, {} finished; {} objects refused",
                "runs",
                engine.runs_started,
                engine.runs_resumed,
                engine.runs_finished,
                engine.refused
            );
            let refusals: Vec<String> = engine
                .refusals
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            if !refusals.is_empty() {
                say!("{:<17} {}", "refused by", refusals.join(", "));
            }
            let c = &status.counters;
            if c.gossip_rate_limited + c.direct_rate_limited + c.offences > 0 {
                say!(
                    "{:<17} {} gossip and {} direct messages over budget; {} offences, {} bans",
                    "flood control",
                    c.gossip_rate_limited,
                    c.direct_rate_limited,
                    c.offences,
                    c.bans
                );
            }
            let now = pvl_net::now_ms();
            for ban in &status.banned {
                say!(
                    "{:<17} {} for {} s more: {}",
                    "banned",
                    ban.peer_id,
                    ban.until_ms.saturating_sub(now) / 1000,
                    ban.reason
                );
            }
            Ok(())
        }
        Command::Capabilities(flag) => {
            let listed = client(&dir)?.capabilities()?;
            if flag.json {
                return print_json(&listed);
            }
            let now = pvl_net::now_ms();
            say!(
                "{:<16} {:<10} {:>7} {:>8} {:>5} {:>9}  INPUT",
                "CAPABILITY",
                "PROVIDER",
                "PRICE",
                "PER KIB",
                "SLOTS",
                "LAPSES IN"
            );
            for c in &listed {
                for p in &c.providers {
                    say!(
                        "{:<16} {:<10} {:>7} {:>8} {:>5} {:>8}s  {}",
                        c.capability,
                        &p.provider.to_string()[..8],
                        p.price_base,
                        p.price_per_kib,
                        p.max_concurrent,
                        p.expires_at_ms.saturating_sub(now) / 1000,
                        p.input_desc
                    );
                }
            }
            if listed.is_empty() {
                say!("(no capability ad seen yet)");
            }
            Ok(())
        }
        Command::Peers(flag) => {
            let peers = client(&dir)?.peers()?;
            if flag.json {
                return print_json(&peers);
            }
            say!(
                "{:<54} {:<9} {:<12} {:>7} ADDRESSES",
                "PEER ID",
                "CONNECTED",
                "LINK",
                "SCORE"
            );
            for peer in &peers {
                let connected = match (peer.banned, peer.connected) {
                    (true, _) => "banned",
                    (false, true) => "yes",
                    (false, false) => "no",
                };
                let score = peer
                    .gossip_score
                    .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"));
                say!(
                    "{:<54} {:<9} {:<12} {:>7} {}",
                    peer.peer_id,
                    connected,
                    peer.link.map_or("-", |l| l.name()),
                    score,
                    peer.addresses.join(", ")
                );
            }
            Ok(())
        }
        Command::Intent {
            command: IntentCommand::Publish(args),
        } => publish(&dir, *args),
        Command::Intent {
            command: IntentCommand::Outcome { id, timeout, json },
        } => {
            let api = client(&dir)?.with_timeout(Some(timeout + Duration::from_secs(5)));
            let result = api.outcome(&id, timeout)?;
            if json {
                return print_json(&result);
            }
            say!("trace {}", result.trace_id);
            print_outcome(&result.outcome)
        }
        Command::Intent {
            command: IntentCommand::Cancel { id, reason, json },
        } => {
            let result = client(&dir)?.cancel(&id, reason.as_deref())?;
            if json {
                return print_json(&result);
            }
            say!("trace {}", result.trace_id);
            print_outcome(&result.outcome)
        }
        Command::Workflow { command } => workflow(&dir, command),
        Command::Trace { command } => trace(&dir, command),
    }
}

fn init(dir: &Path, args: InitArgs) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_path = dir.join(home::CONFIG_FILE);
    if config_path.exists() && !args.force {
        bail!(
            "{} exists already (use --force to replace the configuration)",
            config_path.display()
        );
    }
    let mut config = Config::default();
    let default_listen = args.listen.is_empty();
    if !default_listen {
        config.network.listen = args.listen;
    } else {
        let port = match args.port {
            Some(port) => port,
            None => default_port(dir)?,
        };
        config.network.listen = vec![
            format!("/ip4/0.0.0.0/tcp/{port}"),
            format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
        ];
    }
    config.network.bootstrap = args.bootstrap;
    config.network.relays = args.relay;
    config.network.relay_service = args.relay_service;
    if let Some(name) = args.capability.first() {
        bail!(
            "--capability {name} would not serve anything: serve it with --builtin \
             {name}:PRICE:ETA_MS or --agent {name}, or only subscribe to it with --subscribe {name}"
        );
    }
    config.network.capabilities = args.subscribe;
    for spec in &args.builtin {
        config.executors.push(parse_builtin(spec)?);
    }
    for capability in &args.agent {
        config.executors.push(crate::executor::ExecutorConfig {
            capability: capability.clone(),
            kind: crate::executor::ExecutorKind::Agent,
            command: Vec::new(),
            url: None,
            price: 0,
            eta_ms: 0,
            reliability_bps: 0,
            timeout_ms: 30_000,
            bid_timeout_ms: 1_000,
        });
    }
    if let Some(api) = args.api_listen {
        config.api.listen = api;
    }
    if let Some(psk) = &args.psk {
        let text = std::fs::read_to_string(psk)
            .with_context(|| format!("cannot read {}", psk.display()))?;
        let key = pvl_net::SwarmKey::parse(&text)?;
        home::write_secret(
            &dir.join(home::SWARM_KEY_FILE),
            key.to_file_contents().as_bytes(),
        )?;
        config.network.psk = Some(home::SWARM_KEY_FILE.into());
        // The default QUIC address goes (pnet is TCP only); QUIC addresses given with
        // --listen stay, and a configuration with nothing else is refused below.
        if default_listen {
            config.network.listen.retain(|a| !a.contains("/quic"));
        }
    }
    if let Some(allow) = &args.allow {
        crate::daemon::read_allow_list(allow)?;
        std::fs::copy(allow, dir.join(home::ALLOW_FILE))
            .with_context(|| format!("cannot copy {}", allow.display()))?;
        config.network.allow = Some(home::ALLOW_FILE.into());
    }
    // Refuse a configuration that `pvl run` would refuse.
    let text = config.render();
    if let Err(problems) = Config::check(&text) {
        // The file is not written yet: its lines mean nothing to the user, the keys do.
        let problems: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        bail!(
            "the options give an invalid configuration: {}",
            problems.join("; ")
        );
    }
    let key_path = dir.join(home::KEY_FILE);
    let keypair = if key_path.exists() {
        home::read_key(dir)?
    } else {
        let keypair = pvl_net::identity::Keypair::generate_ed25519();
        home::write_secret(&key_path, &keypair.to_protobuf_encoding()?)?;
        keypair
    };
    home::write_secret(&dir.join(home::TOKEN_FILE), home::new_token()?.as_bytes())?;
    std::fs::write(&config_path, text)?;
    say!("initialised {}", dir.display());
    say!("peer id     {}", keypair.public().to_peer_id());
    say!("run it with `pvl run --dir {}`", dir.display());
    Ok(())
}

/// The port `pvl init` writes when given neither --listen nor --port: the one already in
/// the directory's configuration (re-initialising keeps the address), else
/// [`crate::config::DEFAULT_PORT`] when both its TCP and UDP ports are free, else a free port
/// chosen by the system (said on stderr).
fn default_port(dir: &Path) -> Result<u16> {
    let existing = std::fs::read_to_string(dir.join(home::CONFIG_FILE))
        .ok()
        .and_then(|text| Config::parse(&text).ok())
        .and_then(|c| {
            c.network.listen.iter().find_map(|a| {
                let addr: pvl_net::Multiaddr = a.parse().ok()?;
                addr.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Tcp(port) if port != 0 => Some(port),
                    _ => None,
                })
            })
        });
    if let Some(port) = existing {
        return Ok(port);
    }
    let wanted = crate::config::DEFAULT_PORT;
    if port_free(wanted) {
        return Ok(wanted);
    }
    for _ in 0..32 {
        let listener = std::net::TcpListener::bind(("0.0.0.0", 0))
            .context("cannot find a free port for the node")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        if port_free(port) {
            eprintln!(
                "port {wanted} is taken on this machine: listening on port {port} instead \
                 (choose one with --port)"
            );
            return Ok(port);
        }
    }
    bail!("cannot find a port free for both TCP and UDP: choose one with --port")
}

/// Whether `port` is free for TCP and UDP on all interfaces now.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
}

/// Parses `NAME:PRICE:ETA_MS[:RELIABILITY_BPS]` into a builtin executor.
fn parse_builtin(spec: &str) -> Result<crate::executor::ExecutorConfig> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (name, price, eta, reliability) = match parts[..] {
        [name, price, eta] => (name, price, eta, "9500"),
        [name, price, eta, reliability] => (name, price, eta, reliability),
        _ => bail!(
            "--builtin `{spec}`: expected NAME:PRICE:ETA_MS[:RELIABILITY_BPS], e.g. sha256:10:500"
        ),
    };
    let number = |text: &str, what: &str| -> Result<u64> {
        text.parse()
            .with_context(|| format!("--builtin `{spec}`: {what}"))
    };
    let config = crate::executor::ExecutorConfig {
        capability: name.to_owned(),
        kind: crate::executor::ExecutorKind::Builtin,
        command: Vec::new(),
        url: None,
        price: number(price, "price")?,
        eta_ms: number(eta, "eta")?,
        reliability_bps: u16::try_from(number(reliability, "reliability")?)
            .map_err(|_| anyhow::anyhow!("--builtin `{spec}`: reliability above 10000"))?,
        timeout_ms: 30_000,
        bid_timeout_ms: 1_000,
    };
    config
        .check()
        .map_err(|e| anyhow::anyhow!("--builtin `{spec}`: {e}"))?;
    Ok(config)
}

fn run_node(dir: PathBuf, args: RunArgs) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,libp2p=warn"));
    let file = match &args.log_file {
        Some(path) => Some(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(log_files(path)?),
        ),
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .with(file)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::daemon::run(dir, crate::daemon::shutdown_signal()))
}

/// The daily-rotated log files of `--log-file PATH`: `STEM.DATE.EXT` beside PATH.
fn log_files(path: &Path) -> Result<tracing_appender::rolling::RollingFileAppender> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("--log-file: cannot create {}", parent.display()))?;
    let name = path
        .file_name()
        .map(Path::new)
        .context("--log-file needs a file name, e.g. /var/log/pvl/node.log")?;
    let mut builder = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .max_log_files(7)
        .filename_prefix(name.file_stem().unwrap_or_default().to_string_lossy());
    if let Some(ext) = name.extension() {
        builder = builder.filename_suffix(ext.to_string_lossy());
    }
    builder
        .build(parent)
        .with_context(|| format!("--log-file: cannot write in {}", parent.display()))
}

/// `pvl config check`: every problem of the directory's config.toml, one line each.
fn config_check(dir: &Path) -> Result<()> {
    let path = dir.join(home::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (create it with `pvl init --dir {}`)",
            path.display(),
            dir.display()
        )
    })?;
    let mut problems = match Config::check(&text) {
        Ok(config) => crate::config::file_problems(dir, &config),
        Err(problems) => problems,
    };
    problems.sort_by_key(|p| p.line);
    if problems.is_empty() {
        say!("{}: ok", path.display());
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{}:{problem}", path.display());
    }
    bail!(
        "{} problem(s) in {}: fix them and run `pvl config check` again",
        problems.len(),
        path.display()
    )
}

/// `pvl man`: pvl(1) on stdout, or every command's page into `out`.
fn man(out: Option<&Path>) -> Result<()> {
    let command = <Cli as clap::CommandFactory>::command();
    match out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            use std::io::Write as _;
            std::io::stdout().write_all(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            say!("wrote the man pages into {}", dir.display());
        }
    }
    Ok(())
}

fn publish(dir: &Path, args: PublishArgs) -> Result<()> {
    let mut request = round_request(&args.round)?;
    if args.parallel.is_none() {
        check_input_size(&request)?;
    }
    request.capability = args.capability;
    if let Some(pattern) = &args.pattern {
        if pattern != "auto" {
            pattern.parse::<pvl_protocol::PatternHint>()?;
        }
        request.pattern = Some(pattern.clone());
    }
    request.parallel = args.parallel;
    if let Some(split) = &args.split {
        split.parse::<pvl_patterns::parallel::Split>()?;
        request.split = Some(split.clone());
    }
    request.reduce = args.reduce;
    if !args.committee.is_empty() {
        request.committee = Some(args.committee);
    }
    request.threshold = args.threshold;
    submit(dir, request, &args.round)
}

fn workflow(dir: &Path, command: WorkflowCommand) -> Result<()> {
    match command {
        WorkflowCommand::Check { file } => {
            let spec = read_workflow(&file)?;
            say!(
                "{}: {} stages, final stage `{}`",
                file.display(),
                spec.stages.len(),
                spec.final_stage()
                    .and_then(|i| spec.stages.get(i))
                    .map_or("-", |s| s.name.as_str())
            );
            Ok(())
        }
        WorkflowCommand::Run { file, round } => {
            // Refused here, before anything is published, with the line at fault.
            read_workflow(&file)?;
            let text = std::fs::read_to_string(&file)?;
            let mut request = round_request(&round)?;
            request.workflow = Some(text);
            submit(dir, request, &round)
        }
    }
}

/// Reads and checks a workflow file; errors name the file and the line.
fn read_workflow(file: &Path) -> Result<pvl_patterns::workflow::WorkflowSpec> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    pvl_patterns::workflow::WorkflowSpec::parse(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// Refuses an input larger than one intent carries inline, before anything is sent.
fn check_input_size(request: &PublishIntent) -> Result<()> {
    let bytes = request
        .input
        .as_ref()
        .map(String::len)
        .or_else(|| request.input_hex.as_ref().map(|h| h.len() / 2))
        .unwrap_or(0);
    if bytes > pvl_protocol::MAX_INLINE_PAYLOAD {
        bail!(
            "the input is {bytes} bytes, more than the {} an intent carries (the control API \
             takes at most {} bytes per request): give a smaller input, or split it with \
             --parallel N",
            pvl_protocol::MAX_INLINE_PAYLOAD,
            pvl_api::MAX_BODY_BYTES
        );
    }
    Ok(())
}

/// The request fields shared by intents and workflows.
fn round_request(args: &RoundArgs) -> Result<PublishIntent> {
    let mut request = PublishIntent::default();
    match (&args.input, &args.input_file) {
        (Some(text), _) => request.input = Some(text.clone()),
        (None, Some(path)) => {
            let data =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            match String::from_utf8(data) {
                Ok(text) => request.input = Some(text),
                Err(e) => request.input_hex = Some(hex::encode(e.into_bytes())),
            }
        }
        (None, None) => {}
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    request.budget = args.budget;
    request.deadline_ms = args.deadline.map(ms);
    request.expires_in_ms = args.expires_in.map(ms);
    request.window_ms = args.window.map(ms);
    request.min_offers = args.min_offers;
    if let Some(strategy) = &args.strategy {
        strategy.parse::<pvl_protocol::Strategy>()?;
        request.strategy = Some(strategy.clone());
    }
    request.wait = args.wait;
    Ok(request)
}

/// Sends the request; with `--wait` follows it (live, or as one JSON object).
fn submit(dir: &Path, request: PublishIntent, args: &RoundArgs) -> Result<()> {
    if args.wait && !args.json {
        return publish_live(&client(dir)?, request);
    }
    let api = client(dir)?;
    // A waiting request takes as long as the run: the node enforces its own limit.
    let api = if request.wait {
        api.with_timeout(None)
    } else {
        api
    };
    let result = publish_by_kind(&api, &request)?;
    if args.json {
        return print_json(&result);
    }
    say!("{}", publication_line(&result, result.trace_id.to_string()));
    say!("trace {}", result.trace_id);
    Ok(())
}

/// Sends a request to the route of its kind of run (`/v1/workflows`, `/v1/parallel`,
/// `/v1/committees`), or to `/v1/intents` for an intent or a combination.
fn publish_by_kind(api: &Client, request: &PublishIntent) -> Result<pvl_api::Published> {
    Ok(if request.workflow.is_some() {
        api.publish_workflow(request)?
    } else if request.parallel.is_some() && request.committee.is_none() {
        api.publish_parallel(request)?
    } else if request.committee.is_some() && request.parallel.is_none() {
        api.publish_committee(request)?
    } else {
        api.publish(request)?
    })
}

fn trace(dir: &Path, command: TraceCommand) -> Result<()> {
    match command {
        TraceCommand::List { limit, json } => {
            let traces = client(dir)?.traces(limit)?;
            if json {
                return print_json(&traces);
            }
            say!(
                "{:<16} {:<13} {:<16} {:<8} {:>7} {:>5}",
                "TRACE",
                "PATTERN",
                "CAPABILITY",
                "STATUS",
                "OBJECTS",
                "TASKS"
            );
            for t in &traces {
                say!(
                    "{:<16} {:<13} {:<16} {:<8} {:>7} {:>5}",
                    &t.trace_id.to_string()[..16],
                    t.pattern.name(),
                    t.capability.as_deref().unwrap_or("-"),
                    t.status.name(),
                    t.objects,
                    t.tasks,
                );
            }
            Ok(())
        }
        TraceCommand::Show { id, json } => {
            let trace = client(dir)?.trace(&id)?;
            if json {
                return print_json(&trace);
            }
            print_tree(&trace)?;
            Ok(())
        }
        TraceCommand::Export { id, format, out } => {
            let format: ExportFormat = format.parse().map_err(anyhow::Error::msg)?;
            let bytes = client(dir)?.export(&id, format)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
                }
                None if format == ExportFormat::Bundle => {
                    bail!("a bundle is binary: give --out FILE")
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
            Ok(())
        }
        TraceCommand::Verify {
            file,
            json,
            complete,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let verified = pvl_trace::export::verify_bundle(&bytes)
                .with_context(|| format!("{} is not a valid trace bundle", file.display()))?;
            if json {
                print_json(&serde_json::to_value(&verified.report)?)?;
            } else {
                say!(
                    "trace {}: {} objects checked",
                    verified.report.trace,
                    verified.report.checked
                );
                for problem in &verified.report.problems {
                    say!(
                        "  {} {} {:?}: {}",
                        if problem.kind.is_absence() {
                            "ABSENT"
                        } else {
                            "BAD"
                        },
                        problem.object,
                        problem.kind,
                        problem.detail
                    );
                }
            }
            let report = &verified.report;
            if verified.is_ok() {
                if !json {
                    say!("every signature and link verifies");
                }
                return Ok(());
            }
            if report.is_ok_as_partial_copy() && !complete {
                if !json {
                    say!(
                        "every signature verifies; partial copy: {} link(s) to objects this \
                         copy does not hold (--complete to require them)",
                        report.absent_links()
                    );
                }
                return Ok(());
            }
            bail!("{} problem(s) found", report.problems.len())
        }
        TraceCommand::Analyze { id, json } => {
            let analysis = client(dir)?.analysis(&id)?;
            if json {
                return print_json(&analysis);
            }
            print_analysis(&analysis)?;
            Ok(())
        }
    }
}

fn print_tree(trace: &TraceView) -> Result<()> {
    let start = trace
        .objects
        .iter()
        .map(|o| o.timestamp_ms)
        .min()
        .unwrap_or(0);
    let summary = &trace.summary;
    say!(
        "trace {}  pattern {}  status {}",
        summary.trace_id,
        summary.pattern.name(),
        summary.status.name()
    );
    let mut depth: std::collections::HashMap<ObjectId, usize> = Default::default();
    // The node lists the objects in causal order (parents first): printed as they come.
    for object in &trace.objects {
        let d = object
            .parents
            .iter()
            .filter_map(|p| depth.get(p))
            .max()
            .map_or(0, |d| d + 1);
        depth.insert(object.id, d);
        let at = object.timestamp_ms.saturating_sub(start);
        say!(
            "{:>9}  {}{} {}  by {}{}",
            format!("+{}.{:03}s", at / 1000, at % 1000),
            "  ".repeat(d.min(12)),
            object.kind.name(),
            object.id.short(),
            &object.signer.to_string()[..8],
            detail(&object.body),
        );
    }
    Ok(())
}

fn detail(body: &Value) -> String {
    match body["kind"].as_str() {
        Some("intent") => format!(
            "  capability {} strategy {}",
            str_of(&body["capability"]),
            str_of(&body["strategy"])
        ),
        Some("offer") => format!(
            "  cost {} eta {} ms reliability {} bps",
            body["cost"], body["eta_ms"], body["reliability_bps"]
        ),
        Some("task_start") => format!(
            "  award to {} ({})",
            short(&body["provider"]),
            str_of(&body["label"])
        ),
        Some("task_done") => format!("  status {}", plain(&body["status"])),
        Some("receipt") => format!("  cost {} status {}", body["cost"], plain(&body["status"])),
        Some("event") => format!(
            "  {}: {}",
            str_of(&body["event_type"]),
            str_of(&body["message"])
        ),
        Some("reject") => {
            // One reject may name several offers, each with its own reason.
            let mut text = format!("  {}: {}", str_of(&body["code"]), str_of(&body["detail"]));
            for more in body["more"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "; offer {} {}: {}",
                    short(&more["offer"]),
                    str_of(&more["code"]),
                    str_of(&more["detail"])
                ));
            }
            text
        }
        _ => String::new(),
    }
}

fn print_analysis(a: &pvl_api::TraceAnalysis) -> Result<()> {
    use pvl_api::analysis::{PartKind, RoundOutcome};
    let short_key = |k: &pvl_protocol::PublicKey| k.to_string()[..8].to_owned();
    let or_dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    say!("trace      {}", a.trace);
    say!(
        "pattern    {} (asked for {})",
        a.pattern.name(),
        a.hint.map_or_else(|| "-".to_owned(), |h| h.to_string())
    );
    say!("status     {}", a.status.name());
    if let Some(f) = &a.failure {
        say!(
            "failure    {} ({})",
            f.reason,
            f.event_type.as_deref().unwrap_or("-")
        );
    }
    if let Some(c) = &a.chosen_by_adaptive {
        say!("adaptive   chose {}:", c.pattern);
        for reason in &c.reasons {
            say!("  - {reason}");
        }
    }
    say!("objects    {}", a.objects);
    if a.parts.len() > 1 || a.parts.iter().any(|p| p.kind != PartKind::Task) {
        say!(
            "parts:\n  {:<12} {:<6} {:<10} {:<8} {:>8} {:>9} {:>6}  result",
            "LABEL",
            "KIND",
            "CAPABILITY",
            "PROVIDER",
            "WAITED",
            "DURATION",
            "AWARDS"
        );
        for p in &a.parts {
            let result = match p.ok {
                Some(true) => "ok".to_string(),
                Some(false) => format!("failed: {}", p.failure.as_deref().unwrap_or("-")),
                None => "running".to_string(),
            };
            let kind = match p.kind {
                PartKind::Stage => "stage",
                PartKind::Shard => "shard",
                PartKind::Reduce => "reduce",
                PartKind::Task => "task",
            };
            say!(
                "  {:<12} {:<6} {:<10} {:<8} {:>5} ms {:>6} ms {:>6}  {result}{}",
                p.label,
                kind,
                p.capability.as_deref().unwrap_or("-"),
                p.provider
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), short_key),
                or_dash(p.waited_ms),
                or_dash(p.duration_ms),
                p.awards,
                if p.on_critical_path {
                    " (critical)"
                } else {
                    ""
                },
            );
        }
    }
    for r in &a.rounds {
        let approvals = r.votes.iter().filter(|v| v.approve).count();
        let outcome = match r.outcome {
            RoundOutcome::Approved => "approved",
            RoundOutcome::Rejected => "rejected",
            RoundOutcome::TimedOut => "timed-out",
            RoundOutcome::Open => "open",
        };
        say!(
            "consensus round {}: {outcome} ({approvals} of {} approvals, threshold {}) in {} ms",
            r.round,
            r.members,
            r.threshold,
            or_dash(r.latency_ms),
        );
        for v in &r.votes {
            say!(
                "  {} {} {}",
                short_key(&v.member),
                if v.approve { "approve" } else { "reject " },
                v.reason
            );
        }
        if !r.equivocators.is_empty() {
            let who: Vec<String> = r.equivocators.iter().map(ToString::to_string).collect();
            say!("  equivocated: {}", who.join(", "));
        }
    }
    say!("tasks per agent:");
    for t in &a.tasks_per_agent {
        say!(
            "  {}  awarded {} ok {} failed {}",
            short_key(&t.provider),
            t.awarded,
            t.succeeded,
            t.failed
        );
    }
    say!("critical path ({} ms):", a.critical_path.total_ms);
    for step in &a.critical_path.steps {
        say!(
            "  +{:>6} ms  {} {}",
            step.since_previous_ms,
            step.kind.name(),
            step.label
        );
    }
    if let Some(b) = &a.bottleneck {
        say!(
            "bottleneck task {} ({}) by {}",
            b.task.short(),
            b.label,
            short_key(&b.provider)
        );
    }
    for l in &a.offer_latencies {
        say!(
            "offer from {} after {} ms",
            short_key(&l.provider),
            l.latency_ms
        );
    }
    Ok(())
}

fn str_of(v: &Value) -> String {
    v.as_str().map_or_else(|| plain(v), str::to_owned)
}

fn short(v: &Value) -> String {
    str_of(v).chars().take(8).collect()
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// How the first intent went out, for people: on gossip topics, or directly to the
/// providers it addresses (SPEC.md §4.3).
fn publication_line(published: &pvl_api::Published, intent: String) -> String {
    if published.sent_to.is_empty() {
        format!(
            "published intent {intent} on {}",
            published.topics.join(", ")
        )
    } else {
        let keys: Vec<String> = published.sent_to.iter().map(|k| k.short()).collect();
        format!(
            "sent intent {intent} directly to {} provider(s): {}",
            keys.len(),
            keys.join(", ")
        )
    }
}

/// `--wait` for people: follows the node's event stream while the round runs (offers, award,
/// rejects, progress, done, receipt), then prints the outcome.
fn publish_live(api: &Client, mut request: PublishIntent) -> Result<()> {
    let events = api.events(None)?;
    request.wait = false;
    let published = publish_by_kind(api, &request)?;
    let trace = published.trace_id;
    say!("{}", publication_line(&published, trace.short()));
    say!("trace {trace}");
    let (tx, outcome) = std::sync::mpsc::channel();
    let waiter = api.with_timeout(None);
    let id = trace.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.outcome(&id, Duration::from_secs(600)));
    });
    let mut start = None;
    let result = loop {
        while let Some((_, event)) = events.try_next() {
            print_progress(&event, &trace, &mut start)?;
        }
        match outcome.recv_timeout(Duration::from_millis(50)) {
            Ok(result) => break result?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("lost the node while waiting")
            }
        }
    };
    // The last objects (the receipt) may be announced just after the outcome.
    while let Some((_, event)) = events.next_within(Duration::from_millis(100)) {
        print_progress(&event, &trace, &mut start)?;
    }
    print_outcome(&result.outcome)
}

/// Prints a finished intent's outcome; a failed intent is an error (non-zero exit).
fn print_outcome(outcome: &Outcome) -> Result<()> {
    match outcome {
        Outcome::Completed(c) => {
            let provider = c
                .provider
                .map_or_else(|| "-".to_owned(), |p| p.to_string()[..8].to_owned());
            match c.parts.len() {
                0 => say!(
                    "completed by {provider} for {} (awards: {})",
                    c.cost,
                    c.awards
                ),
                n => say!(
                    "completed: {n} parts for {} in all (awards: {})",
                    c.cost,
                    c.awards
                ),
            }
            print_parts(&c.parts)?;
            say!("output  {}", c.output.as_deref().unwrap_or("-"));
            say!(
                "receipt {} (countersigned: {})",
                c.receipt_id
                    .map_or_else(|| "-".to_owned(), |r| r.to_string()),
                c.receipt_countersigned
            );
            Ok(())
        }
        Outcome::Failed(f) => {
            print_parts(&f.parts)?;
            bail!("the intent failed: {} ({})", f.reason, f.detail)
        }
    }
}

/// One line per stage or shard of a workflow or parallel outcome.
fn print_parts(parts: &[Part]) -> Result<()> {
    for part in parts {
        let mut line = format!(
            "  {:<12} {:<10} {:<9} by {:<8} {:>6} ms  awards {}",
            part.label,
            part.capability,
            part.status,
            part.provider
                .map_or_else(|| "-".to_owned(), |p| p.to_string()[..8].to_owned()),
            part.duration_ms
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            part.awards,
        );
        if let Some(failure) = &part.failure {
            line.push_str(&format!("  ({failure})"));
        }
        say!("{line}");
    }
    Ok(())
}

/// One line per object of `trace` the node recorded, as it happens.
fn print_progress(event: &Event, trace: &ObjectId, start: &mut Option<u64>) -> Result<()> {
    let Event::Object(event) = event else {
        return Ok(());
    };
    if event.trace_id != *trace {
        return Ok(());
    }
    let id = event.id.short();
    let signer = &event.signer.to_string()[..8];
    let what = match (event.kind, event.origin.as_str()) {
        (Kind::Intent, _) => {
            if event.id == *trace {
                *start = Some(event.timestamp_ms);
            }
            return Ok(());
        }
        (Kind::Offer, _) => format!("offer {id} from {signer}"),
        (Kind::Event, _) => format!("{} ({id})", event.event_type.as_deref().unwrap_or("event")),
        (Kind::Proposal, _) => format!("proposal {id} to the committee"),
        (Kind::Vote, _) => format!("vote from {signer}"),
        (Kind::QuorumCert, _) => format!("quorum certificate {id}"),
        (Kind::TaskStart, _) => format!("award {id}"),
        (Kind::Reject, _) => format!("reject {id} sent to a loser"),
        (Kind::TaskProgress, _) => format!("progress from {signer}"),
        (Kind::TaskDone, _) => format!("done by {signer}"),
        (Kind::Receipt, "local") => format!("receipt {id} countersigned"),
        (Kind::Receipt, _) => format!("receipt {id} from {signer}"),
        (kind, _) => format!("{} {id}", kind.name()),
    };
    // Times are the objects' own (signed) timestamps, relative to the root intent's (or, if
    // it was missed, to the first object seen).
    let t0 = *start.get_or_insert(event.timestamp_ms);
    say!("  +{:>5} ms  {what}", event.timestamp_ms.saturating_sub(t0));
    Ok(())
}

/// The client of the node running in `dir`.
fn client(dir: &Path) -> Result<Client> {
    Ok(Client::open(dir)?)
}
