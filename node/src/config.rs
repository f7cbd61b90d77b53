//! `config.toml`: what a node listens on, whom it bootstraps from, its private network, its
//! control API and its store. Unknown keys are errors (a typo must not be silently ignored), and
//! TOML errors carry the line at fault.

use serde::{Deserialize, Serialize};

use crate::executor::ExecutorConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

/// `[tasks]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

/// `[network]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
    /// Dial discovered peers while fewer than this many are connected.
    pub target_peers: usize,
    /// Most connections kept open.
    pub max_connections: u32,
    /// How long a publish waits for a subscribed peer, in ms.
    pub publish_timeout_ms: u64,
    /// Lifetime of this node's capability ads, in ms (renewed at half of it; others drop an
    /// ad from their directory when it lapses).
    pub capability_ad_ttl_ms: u64,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".into(),
                "/ip4/0.0.0.0/udp/0/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            psk: None,
            allow: None,
            capabilities: Vec::new(),
            observe_all: true,
            target_peers: 16,
            max_connections: 128,
            publish_timeout_ms: 10_000,
            capability_ad_ttl_ms: 600_000,
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

/// `[store]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// sled page cache, in MiB.
    pub cache_mb: u64,
    /// Writes are flushed to disk at least this often, in ms.
    pub flush_interval_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            cache_mb: 32,
            flush_interval_ms: 500,
        }
    }
}

impl Config {
    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        let api: std::net::SocketAddr = config
            .api
            .listen
            .parse()
            .map_err(|e| anyhow::anyhow!("[api] listen `{}`: {e}", config.api.listen))?;
        if !api.ip().is_loopback() {
            anyhow::bail!(
                "[api] listen must be a loopback address, not {}",
                config.api.listen
            );
        }
        let mut seen = std::collections::HashSet::new();
        for executor in &config.executors {
            executor
                .check()
                .map_err(|e| anyhow::anyhow!("[[executor]] {e}"))?;
            if !seen.insert(executor.capability.as_str()) {
                anyhow::bail!("[[executor]] `{}` is declared twice", executor.capability);
            }
        }
        for addr in config
            .network
            .listen
            .iter()
            .chain(&config.network.bootstrap)
        {
            addr.parse::<pvl_net::Multiaddr>()
                .map_err(|e| anyhow::anyhow!("[network] address `{addr}`: {e}"))?;
        }
        config.consensus.rules()?;
        Ok(config)
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
             # Dial discovered peers while fewer than this many are connected.\n\
             target_peers = {target_peers}\n\
             # Most connections kept open.\n\
             max_connections = {max_connections}\n\
             # How long a publish waits for a subscribed peer, in ms.\n\
             publish_timeout_ms = {publish_timeout_ms}\n\
             # Lifetime of this node's capability ads (renewed at half of it).\n\
             capability_ad_ttl_ms = {ad_ttl}\n\
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
            max_connections = n.max_connections,
            publish_timeout_ms = n.publish_timeout_ms,
            ad_ttl = n.capability_ad_ttl_ms,
            api = self.api.listen,
            cache_mb = self.store.cache_mb,
            flush = self.store.flush_interval_ms,
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
}
