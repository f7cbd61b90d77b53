//! `config.toml`: what a node listens on, whom it bootstraps from, its private network, its
//! control API and its store. Unknown keys are errors (a typo must not be silently ignored), and
//! TOML errors carry the line at fault.

use serde::{Deserialize, Serialize};

use crate::executor::ExecutorConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Peer-to-peer settings.
    pub network: NetworkSection,
    /// Control API settings.
    pub api: ApiSection,
    /// Trace store settings.
    pub store: StoreSection,
    /// Task execution settings.
    pub tasks: TasksSection,
    /// How this node votes when it sits on an approval committee.
    pub consensus: ConsensusSection,
    /// Per-peer budgets and bans (flood control).
    pub flood: FloodSection,
    /// Executors: one `[[executor]]` table per capability served.
    #[serde(rename = "executor")]
    pub executors: Vec<ExecutorConfig>,
}

/// `[consensus]`: how this node votes on the proposals of committees it is a member of.
///
/// Either rules (checked in the order denied provider, capability, cost, eta; the first that
/// fails is the rejection reason; otherwise the vote is `approve`), or an `exec` handler that
/// decides instead: it gets the proposal's terms on stdin (one line, `award capability=...
/// provider=<hex> offer=<hex> cost=N eta_ms=N input_sha256=<hex>`) and answers on stdout with
/// `approve [reason]` or `reject reason`; a non-zero exit, a timeout or any other answer is a
/// rejection with that as the reason.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// The vote when no rule rejects.
    pub approve: bool,
    /// Reject awards costing more than this.
    pub max_cost: Option<u64>,
    /// Reject awards slower than this (the offer's eta), in ms.
    pub max_eta_ms: Option<u64>,
    /// Capabilities that may be awarded; empty: any.
    pub capabilities: Vec<String>,
    /// Providers (public keys, 64 hex digits) that must not be awarded.
    pub deny_providers: Vec<String>,
    /// A command that decides instead of the rules (see above); empty: use the rules.
    pub exec: Vec<String>,
    /// How long the `exec` handler (or the agent program) may take, in ms.
    pub exec_timeout_ms: u64,
    /// Votes decided by an agent program connected to the control API
    /// (`GET /v1/agents/votes`) instead of the rules or `exec`.
    pub agent: bool,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            approve: true,
            max_cost: None,
            max_eta_ms: None,
            capabilities: Vec::new(),
            deny_providers: Vec::new(),
            exec: Vec::new(),
            exec_timeout_ms: 5_000,
            agent: false,
        }
    }
}

impl ConsensusSection {
    /// The rules as a policy for [`pvl_patterns::Voter`].
    pub fn rules(&self) -> anyhow::Result<pvl_patterns::RulePolicy> {
        let denied = self
            .deny_providers
            .iter()
            .map(|k| {
                k.parse::<pvl_protocol::PublicKey>()
                    .map_err(|e| anyhow::anyhow!("[consensus] deny_providers `{k}`: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(pvl_patterns::RulePolicy {
            max_cost: self.max_cost,
            max_eta_ms: self.max_eta_ms,
            allowed_capabilities: self.capabilities.clone(),
            denied_providers: denied,
            default_approve: self.approve,
        })
    }
}

/// `[flood]`: per-peer budgets, offences and bans (SPEC.md §20).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FloodSection {
    /// Gossiped intents and ads accepted per signer per second.
    pub gossip_per_second: u32,
    /// Most of them accepted at once after a quiet period.
    pub gossip_burst: u32,
    /// Direct messages accepted per peer per second.
    pub direct_per_second: u32,
    /// Most of them accepted at once after a quiet period.
    pub direct_burst: u32,
    /// Offences within `offence_window_ms` that get a peer banned.
    pub ban_after_offences: u32,
    /// The window offences are counted in, in ms.
    pub offence_window_ms: u64,
    /// How long a ban lasts, in ms.
    pub ban_ms: u64,
}

impl Default for FloodSection {
    fn default() -> Self {
        let d = pvl_net::FloodControl::default();
        FloodSection {
            gossip_per_second: d.gossip_per_signer.per_second.get(),
            gossip_burst: d.gossip_per_signer.burst.get(),
            direct_per_second: d.direct_per_peer.per_second.get(),
            direct_burst: d.direct_per_peer.burst.get(),
            ban_after_offences: d.ban_after,
            offence_window_ms: d.offence_window.as_millis() as u64,
            ban_ms: d.ban_for.as_millis() as u64,
        }
    }
}

impl FloodSection {
    /// The network layer's settings.
    pub fn to_net(&self) -> pvl_net::FloodControl {
        pvl_net::FloodControl {
            gossip_per_signer: pvl_net::Budget::new(self.gossip_per_second, self.gossip_burst),
            direct_per_peer: pvl_net::Budget::new(self.direct_per_second, self.direct_burst),
            ban_after: self.ban_after_offences.max(1),
            offence_window: std::time::Duration::from_millis(self.offence_window_ms.max(1)),
            ban_for: std::time::Duration::from_millis(self.ban_ms),
        }
    }
}

/// `[tasks]`: how this node runs the tasks it is awarded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TasksSection {
    /// Most awarded tasks this node runs at once.
    pub max_concurrent: usize,
}

impl Default for TasksSection {
    fn default() -> Self {
        TasksSection { max_concurrent: 4 }
    }
}

/// The well-known port a node listens on (TCP and QUIC) unless `pvl init` was told otherwise
/// or found it taken.
pub const DEFAULT_PORT: u16 = 4001;

/// `[network]`: what the node listens on, whom it bootstraps from, its private network
/// (`psk` + `allow`) and the capabilities whose topics it joins.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Bootstrap peers (`.../p2p/<peer id>`); empty makes this node a bootstrap node.
    pub bootstrap: Vec<String>,
    /// Swarm key file (relative to the node directory); set for a private network.
    pub psk: Option<String>,
    /// Allow-list file (relative to the node directory), one peer id per line.
    pub allow: Option<String>,
    /// Capabilities served (their gossip topics are joined, their DHT records provided).
    pub capabilities: Vec<String>,
    /// Subscribe to the catch-all topic and see every intent.
    pub observe_all: bool,
    /// Dial discovered peers, peers from the peer book and the bootstrap peers while fewer
    /// than this many are connected.
    pub target_peers: usize,
    /// Above this many connected peers, close the least recently used connections (never
    /// gossip mesh links) down to halfway between `target_peers` and this.
    pub max_peers: usize,
    /// Most connections open at once (a hard limit; beyond it new connections are refused).
    pub max_connections: u32,
    /// How long a publish waits for a subscribed peer, in ms.
    pub publish_timeout_ms: u64,
    /// Lifetime of this node's capability ads, in ms (renewed at half of it; others drop an
    /// ad from their directory when it lapses).
    pub capability_ad_ttl_ms: u64,
    /// Circuit relays (`.../p2p/<relay peer id>`, at most 8) this node reserves a slot on when
    /// AutoNAT finds it behind NAT; others then reach it through the relay.
    pub relays: Vec<String>,
    /// Serve as a circuit relay for nodes behind NAT (a publicly reachable node).
    pub relay_service: bool,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
            ],
            bootstrap: Vec::new(),
            psk: None,
            allow: None,
            capabilities: Vec::new(),
            observe_all: true,
            target_peers: 16,
            max_peers: 32,
            max_connections: 128,
            publish_timeout_ms: 10_000,
            capability_ad_ttl_ms: 600_000,
            relays: Vec::new(),
            relay_service: false,
        }
    }
}

/// `[api]`: the control API used by the CLI, the SDKs, agent programs and `pvl mcp`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Loopback address of the control API (port 0 picks a free port; see `api.addr`).
    pub listen: String,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:0".into(),
        }
    }
}

/// `[store]`: the trace store (sled) in `DIR/store`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// sled page cache, in MiB.
    pub cache_mb: u64,
    /// Writes are flushed to disk at least this often, in ms.
    pub flush_interval_ms: u64,
    /// Flush (fsync) after every store write, before the node announces the objects on its
    /// event stream: what a crash can lose shrinks from the last `flush_interval_ms` to a write
    /// in progress, at the cost of one fsync per write.
    pub flush_each_write: bool,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            cache_mb: 32,
            flush_interval_ms: 500,
            flush_each_write: false,
        }
    }
}

/// One problem of a configuration file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The 1-based line, when it could be found.
    pub line: Option<usize>,
    /// The setting, e.g. `[network] bootstrap`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// The top-level tables of the file.
const SECTIONS: [&str; 7] = [
    "network",
    "api",
    "store",
    "tasks",
    "consensus",
    "flood",
    "executor",
];

/// Collects problems, finding each one's line in the text.
struct Problems<'a> {
    text: &'a str,
    found: Vec<Problem>,
}

impl Problems<'_> {
    /// A problem with `key` of `section` (`None`: the table itself); `nth` counts `[[executor]]`
    /// tables.
    fn add(&mut self, section: &str, nth: usize, key: Option<&str>, message: String) {
        let line = line_of(self.text, section, nth, key);
        let key = match (section, key) {
            ("executor", Some(k)) => format!("[[executor]] #{} {k}", nth + 1),
            ("executor", None) => format!("[[executor]] #{}", nth + 1),
            (s, Some(k)) => format!("[{s}] {k}"),
            (s, None) => format!("[{s}]"),
        };
        self.found.push(Problem { line, key, message });
    }
}

/// The line of `key` in the `nth` table named `section` (its header line without a key).
fn line_of(text: &str, section: &str, nth: usize, key: Option<&str>) -> Option<usize> {
    let mut current = String::new();
    let mut seen = 0usize;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            if name == section {
                seen += 1;
                if key.is_none() && seen == nth + 1 {
                    return Some(number + 1);
                }
            }
            current = name.to_owned();
            continue;
        }
        if let Some(key) = key
            && current == section
            && seen == nth + 1
            && line.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=')
            })
        {
            return Some(number + 1);
        }
    }
    None
}

/// A decoding error of table `section`: its line from the error's place, its key quoted in
/// the message (an unknown field) or else the key written on that line.
fn decode_problem(text: &str, section: &str, e: &toml::de::Error) -> Problem {
    let message = e.message().trim().to_owned();
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
    // `lines().count()` of the text before the place: the place's own line, unless the
    // place starts a line (then the count is one short).
    let line = line.map(|l| match e.span() {
        Some(span) if span.start > 0 && text.as_bytes().get(span.start - 1) == Some(&b'\n') => {
            l + 1
        }
        _ => l,
    });
    let key = quoted_field(&message).map(str::to_owned).or_else(|| {
        let l = text.lines().nth(line? - 1)?;
        let (key, _) = l.split_once('=')?;
        Some(key.trim().to_owned())
    });
    let table = if section == "executor" {
        "[[executor]]".to_owned()
    } else {
        format!("[{section}]")
    };
    Problem {
        line,
        key: match key {
            Some(k) => format!("{table} {k}"),
            None => table,
        },
        message,
    }
}

/// The first `` `name` `` quoted in a deserialisation message (the field at fault).
fn quoted_field(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

impl Config {
    /// Parses and checks the file's text; the error lists every problem found.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Config::check(text).map_err(|problems| {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", lines.join("; "))
        })
    }

    /// Parses and checks the file's text: the configuration, or every problem found, each
    /// with its line and key (TOML syntax stops at the first error; each table is decoded
    /// on its own, so a mistake in one does not hide those in another).
    pub fn check(text: &str) -> Result<Config, Vec<Problem>> {
        let mut problems = Problems {
            text,
            found: Vec::new(),
        };
        let table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => {
                let line = e
                    .span()
                    .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
                return Err(vec![Problem {
                    line,
                    key: "TOML syntax".into(),
                    message: e.message().trim().to_owned(),
                }]);
            }
        };
        for name in table.keys() {
            if !SECTIONS.contains(&name.as_str()) {
                problems.found.push(Problem {
                    line: text
                        .lines()
                        .position(|l| {
                            let l = l.trim();
                            l.trim_matches(|c| c == '[' || c == ']').trim() == name
                                || l.starts_with(name.as_str())
                        })
                        .map(|n| n + 1),
                    key: name.clone(),
                    message: format!(
                        "not a table of the configuration (the tables are {})",
                        SECTIONS.join(", ")
                    ),
                });
            }
        }
        let mut config = Config::default();
        // Each table is decoded from the text on its own (the other tables ignored), so its
        // errors carry their place in the file.
        macro_rules! section {
            ($name:ident, $type:ty, $into:expr) => {{
                #[derive(serde::Deserialize)]
                struct Only {
                    $name: Option<$type>,
                }
                match toml::from_str::<Only>(text) {
                    Ok(Only {
                        $name: Some(decoded),
                    }) => $into = decoded,
                    Ok(_) => {}
                    Err(e) => problems
                        .found
                        .push(decode_problem(text, stringify!($name), &e)),
                }
            }};
        }
        section!(network, NetworkSection, config.network);
        section!(api, ApiSection, config.api);
        section!(store, StoreSection, config.store);
        section!(tasks, TasksSection, config.tasks);
        section!(consensus, ConsensusSection, config.consensus);
        section!(flood, FloodSection, config.flood);
        section!(executor, Vec<ExecutorConfig>, config.executors);
        config.semantic_problems(&mut problems);
        if problems.found.is_empty() {
            Ok(config)
        } else {
            Err(problems.found)
        }
    }

    /// The checks beyond the types: addresses, the API's loopback rule, executors, votes.
    fn semantic_problems(&self, problems: &mut Problems<'_>) {
        match self.api.listen.parse::<std::net::SocketAddr>() {
            Err(e) => problems.add(
                "api",
                0,
                Some("listen"),
                format!("`{}` is not HOST:PORT: {e}", self.api.listen),
            ),
            Ok(api) if !api.ip().is_loopback() => problems.add(
                "api",
                0,
                Some("listen"),
                format!(
                    "must be a loopback address, not {} (e.g. 127.0.0.1:0)",
                    self.api.listen
                ),
            ),
            Ok(_) => {}
        }
        let mut seen = std::collections::HashSet::new();
        for (i, executor) in self.executors.iter().enumerate() {
            if let Err(e) = executor.check() {
                problems.add("executor", i, None, e);
            }
            if !seen.insert(executor.capability.as_str()) {
                problems.add(
                    "executor",
                    i,
                    Some("capability"),
                    format!("`{}` is declared twice", executor.capability),
                );
            }
        }
        let n = &self.network;
        for addr in &n.listen {
            if let Err(e) = addr.parse::<pvl_net::Multiaddr>() {
                problems.add(
                    "network",
                    0,
                    Some("listen"),
                    format!("address `{addr}`: {e}"),
                );
            }
        }
        for addr in &n.bootstrap {
            match addr.parse::<pvl_net::Multiaddr>() {
                Err(e) => problems.add(
                    "network",
                    0,
                    Some("bootstrap"),
                    format!("address `{addr}`: {e}"),
                ),
                Ok(parsed)
                    if !matches!(
                        parsed.iter().last(),
                        Some(libp2p::multiaddr::Protocol::P2p(_))
                    ) =>
                {
                    problems.add(
                        "network",
                        0,
                        Some("bootstrap"),
                        format!(
                            "`{addr}` does not end in /p2p/<peer id>: a bootstrap peer is \
                             dialled and checked by its id (`pvl id` on that node prints its \
                             full address)"
                        ),
                    )
                }
                Ok(_) => {}
            }
        }
        if n.max_peers < n.target_peers {
            problems.add(
                "network",
                0,
                Some("max_peers"),
                format!(
                    "{} is below target_peers ({}): the node would close the connections it \
                     just dialled",
                    n.max_peers, n.target_peers
                ),
            );
        }
        if n.relays.len() > pvl_net::MAX_RELAYS {
            problems.add(
                "network",
                0,
                Some("relays"),
                format!(
                    "{} relays listed: at most {}",
                    n.relays.len(),
                    pvl_net::MAX_RELAYS
                ),
            );
        }
        for addr in &n.relays {
            match addr.parse::<pvl_net::Multiaddr>() {
                Err(e) => problems.add(
                    "network",
                    0,
                    Some("relays"),
                    format!("address `{addr}`: {e}"),
                ),
                Ok(parsed)
                    if !matches!(
                        parsed.iter().last(),
                        Some(libp2p::multiaddr::Protocol::P2p(_))
                    ) || parsed
                        .iter()
                        .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit) =>
                {
                    problems.add(
                        "network",
                        0,
                        Some("relays"),
                        format!(
                            "`{addr}` must be a relay's own address ending in /p2p/<relay peer id>, without /p2p-circuit (`pvl id` on the relay prints it)"
                        ),
                    )
                }
                Ok(_) => {}
            }
        }
        if n.psk.is_some() && !n.listen.is_empty() && n.listen.iter().all(|a| a.contains("/quic")) {
            problems.add(
                "network",
                0,
                Some("listen"),
                "a private network (psk) cannot use QUIC, and every listen address is QUIC: \
                 add a TCP address such as /ip4/0.0.0.0/tcp/4001"
                    .into(),
            );
        }
        if let Err(e) = self.consensus.rules() {
            problems.add("consensus", 0, Some("deny_providers"), format!("{e:#}"));
        }
    }

    /// The commented file `pvl init` writes: every setting with its value.
    pub fn render(&self) -> String {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let opt = |name: &str, value: &Option<String>, help: &str| match value {
            Some(v) => format!("# {help}\n{name} = {v:?}\n"),
            None => format!("# {help}\n# {name} = \"{}\"\n", name_example(name)),
        };
        let n = &self.network;
        format!(
            "# pvl node configuration. Every setting is shown; edit and restart `pvl run`.\n\
             \n\
             [network]\n\
             # Multiaddresses to listen on (TCP and QUIC; a private network uses TCP only).\n\
             listen = {listen}\n\
             # Bootstrap peers, each ending in /p2p/<peer id>. Empty: this node is a bootstrap node.\n\
             bootstrap = {bootstrap}\n\
             {psk}\
             {allow}\
             # Capabilities this node serves (gossip topics joined, DHT provider records).\n\
             capabilities = {caps}\n\
             # Subscribe to the catch-all topic and see every intent.\n\
             observe_all = {observe_all}\n\
             # Dial discovered peers, peers from the peer book and the bootstrap peers while\n\
             # fewer than this many are connected.\n\
             target_peers = {target_peers}\n\
             # Above this many connected peers, close the least recently used connections\n\
             # (never gossip mesh links) down to halfway between target_peers and this.\n\
             max_peers = {max_peers}\n\
             # Most connections open at once (beyond it new connections are refused).\n\
             max_connections = {max_connections}\n\
             # How long a publish waits for a subscribed peer, in ms.\n\
             publish_timeout_ms = {publish_timeout_ms}\n\
             # Lifetime of this node's capability ads (renewed at half of it).\n\
             capability_ad_ttl_ms = {ad_ttl}\n\
             # Circuit relays (each ending in /p2p/<relay peer id>) this node reserves a slot on\n\
             # when AutoNAT finds it behind NAT; others then reach it through the relay.\n\
             relays = {relays}\n\
             # Serve as a circuit relay for nodes behind NAT (only on a publicly reachable node).\n\
             relay_service = {relay_service}\n\
             \n\
             [api]\n\
             # Control API address; loopback only. Port 0 picks a free port, written to api.addr.\n\
             listen = {api:?}\n\
             \n\
             [store]\n\
             # sled page cache in MiB.\n\
             cache_mb = {cache_mb}\n\
             # Writes reach the disk at least this often, in ms.\n\
             flush_interval_ms = {flush}\n\
             # fsync after every store write, so a crash loses at most the write in progress.\n\
             flush_each_write = {flush_each_write}\n\
             \n\
             [flood]\n\
             # Flood control (SPEC.md §20): gossiped intents and ads accepted per signer, direct\n\
             # messages per peer (per second, and at once after a quiet period); a peer with\n\
             # ban_after_offences offences (over budget, invalid, or out of context) within\n\
             # offence_window_ms is disconnected and ignored for ban_ms.\n\
             gossip_per_second = {gossip_rate}\n\
             gossip_burst = {gossip_burst}\n\
             direct_per_second = {direct_rate}\n\
             direct_burst = {direct_burst}\n\
             ban_after_offences = {ban_after}\n\
             offence_window_ms = {offence_window}\n\
             ban_ms = {ban_ms}\n\
             \n\
             [tasks]\n\
             # Most awarded tasks this node runs at once.\n\
             max_concurrent = {max_concurrent}\n\
             \n\
             [consensus]\n\
             # How this node votes on proposals of committees it sits on. Rules: a denied\n\
             # provider, another capability, a higher cost or a slower eta is rejected with that\n\
             # reason; otherwise the vote is `approve`. Or an exec handler decides instead: the\n\
             # terms on stdin, `approve [reason]` or `reject reason` on stdout. Or (agent = true)\n\
             # an agent program polling GET /v1/agents/votes decides.\n\
             approve = {approve}\n\
             {max_cost}\
             {max_eta}\
             capabilities = {vote_caps}\n\
             deny_providers = {deny}\n\
             exec = {vote_exec}\n\
             exec_timeout_ms = {exec_timeout}\n\
             agent = {vote_agent}\n\
             \n\
             # Executors: one [[executor]] table per capability this node serves. kind is builtin\n\
             # (echo, sha256, wordcount, sleep), exec (command = [...]: input on stdin, output from\n\
             # stdout, exit status decides), http (url = \"...\": the input is POSTed) or agent (agent\n\
             # programs connected to the control API bid with their own terms and run the tasks;\n\
             # they answer a bid within bid_timeout_ms, default 1000). Example:\n\
             # [[executor]]\n\
             # capability = \"sha256\"\n\
             # kind = \"builtin\"\n\
             # price = 10            # cost units per task\n\
             # eta_ms = 500          # estimated completion time offered\n\
             # reliability_bps = 9500\n\
             # timeout_ms = 30000\n\
             {executors}",
            listen = list(&n.listen),
            bootstrap = list(&n.bootstrap),
            psk = opt(
                "psk",
                &n.psk,
                "Private network: swarm key file in this directory (pvl psk gen)."
            ),
            allow = opt(
                "allow",
                &n.allow,
                "Private network: allow-list file, one peer id per line."
            ),
            caps = list(&n.capabilities),
            observe_all = n.observe_all,
            target_peers = n.target_peers,
            max_peers = n.max_peers,
            max_connections = n.max_connections,
            publish_timeout_ms = n.publish_timeout_ms,
            ad_ttl = n.capability_ad_ttl_ms,
            relays = list(&n.relays),
            relay_service = n.relay_service,
            api = self.api.listen,
            cache_mb = self.store.cache_mb,
            flush = self.store.flush_interval_ms,
            flush_each_write = self.store.flush_each_write,
            max_concurrent = self.tasks.max_concurrent,
            gossip_rate = self.flood.gossip_per_second,
            gossip_burst = self.flood.gossip_burst,
            direct_rate = self.flood.direct_per_second,
            direct_burst = self.flood.direct_burst,
            ban_after = self.flood.ban_after_offences,
            offence_window = self.flood.offence_window_ms,
            ban_ms = self.flood.ban_ms,
            approve = self.consensus.approve,
            max_cost = match self.consensus.max_cost {
                Some(v) => format!("max_cost = {v}\n"),
                None => "# max_cost = 100\n".into(),
            },
            max_eta = match self.consensus.max_eta_ms {
                Some(v) => format!("max_eta_ms = {v}\n"),
                None => "# max_eta_ms = 60000\n".into(),
            },
            vote_caps = list(&self.consensus.capabilities),
            deny = list(&self.consensus.deny_providers),
            vote_exec = list(&self.consensus.exec),
            exec_timeout = self.consensus.exec_timeout_ms,
            vote_agent = self.consensus.agent,
            executors = self.render_executors(),
        )
    }
}

impl Config {
    fn render_executors(&self) -> String {
        self.executors
            .iter()
            .map(|e| format!("\n[[executor]]\n{}", toml::to_string(e).unwrap_or_default()))
            .collect()
    }

    /// Every capability this node serves: the listed ones and those with an executor.
    pub fn served_capabilities(&self) -> Vec<String> {
        let mut all = self.network.capabilities.clone();
        for e in &self.executors {
            if !all.contains(&e.capability) {
                all.push(e.capability.clone());
            }
        }
        all
    }
}

fn name_example(name: &str) -> &'static str {
    match name {
        "psk" => crate::home::SWARM_KEY_FILE,
        _ => crate::home::ALLOW_FILE,
    }
}

/// The problems of the files the configuration names (swarm key, allow-list), read from
/// `dir`; their lines are those of `config.toml` when found.
pub fn file_problems(dir: &std::path::Path, config: &Config) -> Vec<Problem> {
    let mut found = Vec::new();
    let n = &config.network;
    if let Some(psk) = &n.psk {
        let path = dir.join(psk);
        let problem = match std::fs::read_to_string(&path) {
            Err(e) => Some(format!(
                "cannot read {}: {e} (create one with `pvl psk gen`)",
                path.display()
            )),
            Ok(text) => pvl_net::SwarmKey::parse(&text)
                .err()
                .map(|e| format!("{} is not a swarm key: {e}", path.display())),
        };
        if let Some(message) = problem {
            found.push(Problem {
                line: None,
                key: "[network] psk".into(),
                message,
            });
        }
    }
    if let Some(allow) = &n.allow
        && let Err(e) = crate::daemon::read_allow_list(&dir.join(allow))
    {
        found.push(Problem {
            line: None,
            key: "[network] allow".into(),
            message: format!("{e:#}"),
        });
    }
    found
}

/// The configuration reference (Markdown), generated from the types of this module and their
/// documentation: `docs/CONFIG.md` is this text (a test keeps the two together).
pub fn reference() -> String {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let defs = &root["$defs"];
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# pvl configuration reference\n\n\
         <!-- Generated from node/src/config.rs by `pvl config reference`; do not edit. \
         Regenerate with `PVL_UPDATE_CONFIG_DOC=1 cargo test -p pvl-node --lib config`. -->\n\n\
         A node reads `config.toml` in its directory (`pvl init` writes one with every setting). \
         Unknown keys are errors. Check a file with `pvl config check --dir DIR`; \
         restart `pvl run` after a change.\n",
    );
    let sections = [
        ("network", "NetworkSection", "[network]"),
        ("api", "ApiSection", "[api]"),
        ("store", "StoreSection", "[store]"),
        ("tasks", "TasksSection", "[tasks]"),
        ("consensus", "ConsensusSection", "[consensus]"),
        ("flood", "FloodSection", "[flood]"),
        ("executor", "ExecutorConfig", "[[executor]]"),
    ];
    for (name, def, header) in sections {
        let def = &defs[def];
        out.push_str(&format!("\n## `{header}`\n\n"));
        if let Some(text) = def["description"].as_str() {
            out.push_str(&one_paragraph_per_blank_line(text));
            out.push_str("\n\n");
        }
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        let required: Vec<&str> = def["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if let Some(props) = def["properties"].as_object() {
            for (key, prop) in props {
                let default = match defaults[name].get(key) {
                    Some(v) => format!("`{}`", toml_value(v)),
                    None if required.contains(&key.as_str()) => "required".to_owned(),
                    None => match prop.get("default") {
                        Some(v) => format!("`{}`", toml_value(v)),
                        None => "none".to_owned(),
                    },
                };
                out.push_str(&format!(
                    "| `{key}` | {} | {default} | {} |\n",
                    type_name(prop, defs),
                    prop["description"]
                        .as_str()
                        .unwrap_or("")
                        .replace('\n', " ")
                        .replace('|', "\\|")
                ));
            }
        }
    }
    out
}

fn one_paragraph_per_blank_line(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.replace('\n', " "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A schema's type in TOML words.
fn type_name(prop: &serde_json::Value, defs: &serde_json::Value) -> String {
    if let Some(reference) = prop["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or("");
        return type_name(&defs[name], defs);
    }
    if let Some(values) = prop["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", toml_value(v)))
            .collect();
        return format!("one of {}", names.join(", "));
    }
    if let Some(options) = prop["oneOf"].as_array() {
        let names: Vec<String> = options
            .iter()
            .filter_map(|o| o["const"].as_str().or_else(|| o["enum"][0].as_str()))
            .map(|v| format!("`\"{v}\"`"))
            .collect();
        return format!("one of {}", names.join(", "));
    }
    let base = |t: &str| match t {
        "array" => format!("array of {}", type_name(&prop["items"], defs)),
        "integer" => "integer".to_owned(),
        "boolean" => "boolean".to_owned(),
        other => other.to_owned(),
    };
    match &prop["type"] {
        serde_json::Value::String(t) => base(t),
        serde_json::Value::Array(ts) => {
            let names: Vec<String> = ts
                .iter()
                .filter_map(|t| t.as_str())
                .filter(|t| *t != "null")
                .map(base)
                .collect();
            format!("{} (optional)", names.join(" or "))
        }
        _ => "value".to_owned(),
    }
}

/// A JSON value as TOML writes it.
fn toml_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".to_owned(),
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_default_parses_back_to_the_default() {
        let config = Config::default();
        assert_eq!(Config::parse(&config.render()).unwrap(), config);
        let mut private = Config::default();
        private.network.psk = Some("swarm.key".into());
        private.network.allow = Some("allow.txt".into());
        assert_eq!(Config::parse(&private.render()).unwrap(), private);
        let mut voter = Config::default();
        voter.consensus.max_cost = Some(50);
        voter.consensus.exec = vec!["./vote.sh".into()];
        voter.consensus.deny_providers = vec!["ab".repeat(32)];
        assert_eq!(Config::parse(&voter.render()).unwrap(), voter);
        let err = Config::parse("[consensus]\ndeny_providers = [\"nope\"]\n").unwrap_err();
        assert!(err.to_string().contains("deny_providers"), "{err}");
    }

    #[test]
    fn bad_lines_are_named() {
        let err =
            Config::parse("[network]\nlisten = [\"/ip4/1.2.3.4/tcp/1\"]\ntypo = 3\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("typo") && text.contains("line 3"), "{text}");
        let err = Config::parse("[api]\nlisten = \"0.0.0.0:80\"\n").unwrap_err();
        assert!(err.to_string().contains("loopback"));
        let err = Config::parse("[network]\nbootstrap = [\"not an address\"]\n").unwrap_err();
        assert!(err.to_string().contains("not an address"));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "[network]\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n\n[api]\nlisten = \
                    \"0.0.0.0:1\"\n\n[store]\ncache = 3\n";
        let problems = Config::check(text).unwrap_err();
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("line 2: [network] bootstrap") && l.contains("/p2p/")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("line 5: [api] listen") && l.contains("loopback")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("line 8: [store] cache")),
            "{lines:?}"
        );
        let quic_only =
            "[network]\npsk = \"swarm.key\"\nlisten = [\"/ip4/0.0.0.0/udp/0/quic-v1\"]\n";
        let problems = Config::check(quic_only).unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .starts_with("line 3: [network] listen: a private network (psk) cannot use QUIC"),
            "{problems:?}"
        );
        let unknown =
            Config::check("[tasks]\nmax_concurrent = 2\n\n[netwrk]\nlisten = []\n").unwrap_err();
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(
            (unknown[0].line, unknown[0].key.as_str()),
            (Some(4), "netwrk")
        );
        let syntax = Config::check("[network]\nlisten = [\n").unwrap_err();
        assert!(syntax[0].line.is_some(), "{syntax:?}");
    }

    /// docs/CONFIG.md is the generated reference. Regenerate with
    /// `PVL_UPDATE_CONFIG_DOC=1 cargo test -p pvl-node --lib config`.
    #[test]
    fn the_checked_in_reference_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md");
        let generated = reference();
        if std::env::var_os("PVL_UPDATE_CONFIG_DOC").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/CONFIG.md is out of date: run `PVL_UPDATE_CONFIG_DOC=1 cargo test -p pvl-node \
             --lib config` and commit it"
        );
        for key in [
            "bootstrap",
            "listen",
            "cache_mb",
            "max_concurrent",
            "deny_providers",
            "eta_ms",
        ] {
            assert!(generated.contains(&format!("| `{key}` |")), "{key} missing");
        }
    }
}
