//! Request bodies, queries and responses of the control API.
//!
//! Ids and keys are [`ObjectId`] and [`PublicKey`]: 64 hex digits in JSON. Outputs are text
//! when they are UTF-8 (`output`) and hex otherwise (`output_hex`).

use pvl_protocol::{Kind, ObjectId, PatternHint, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /v1/id`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct NodeId {
    /// libp2p peer id (derived from the public key).
    pub peer_id: String,
    /// ed25519 public key: signs every object this node makes.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub public_key: PublicKey,
    /// Multiaddresses the node listens on.
    pub listen_addrs: Vec<String>,
}

/// `GET /v1/status`: network state, store size, the engine's runs and the work counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Status {
    /// libp2p peer id.
    pub peer_id: String,
    /// The node's version.
    pub version: String,
    /// Whether this is a private network (pre-shared key and allow-list).
    pub private: bool,
    /// Multiaddresses the node listens on.
    pub listen_addrs: Vec<String>,
    /// Peers connected now.
    pub connected_peers: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
    /// Gossip topics subscribed.
    pub topics: Vec<String>,
    /// Publications waiting for a peer.
    pub queued_publishes: usize,
    /// Objects in the trace store.
    pub objects_stored: u64,
    /// The coordination engine.
    pub engine: EngineStatus,
    /// The node directory.
    pub dir: String,
    /// This process's work so far.
    pub counters: Counters,
    /// Peers banned now for their offences (SPEC.md §20).
    #[serde(default)]
    pub banned: Vec<BannedPeer>,
    /// Whether and how other nodes can reach this node (AutoNAT, circuit relays).
    #[serde(default)]
    pub reachability: Reachability,
}

/// Whether and how other nodes can reach a node (SPEC.md §21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reachability {
    /// Still finding out (AutoNAT has not answered yet).
    Unknown {
        /// What is going on, in words.
        detail: String,
    },
    /// Publicly reachable at these confirmed external addresses.
    Public {
        /// The confirmed external addresses.
        addresses: Vec<String>,
    },
    /// Not reachable by other nodes, and why (with what to do about it).
    Private {
        /// Why, in one line.
        reason: String,
    },
    /// Reachable through circuit relays.
    Relayed {
        /// Peer ids of the relays holding a slot for this node.
        relays: Vec<String>,
        /// The circuit addresses (`<relay>/p2p-circuit`) other nodes dial.
        addresses: Vec<String>,
    },
}

impl Default for Reachability {
    fn default() -> Self {
        Reachability::Unknown {
            detail: "not reported by this node".into(),
        }
    }
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reachability::Unknown { detail } => write!(f, "unknown ({detail})"),
            Reachability::Public { addresses } => write!(f, "public at {}", addresses.join(", ")),
            Reachability::Private { reason } => write!(f, "private: {reason}"),
            Reachability::Relayed { addresses, .. } => {
                write!(f, "reachable through a relay at {}", addresses.join(", "))
            }
        }
    }
}

/// How the connections to a peer run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// A direct connection.
    Direct,
    /// A direct connection made by hole punching (DCUtR) after a relayed one.
    HolePunched,
    /// Only through a circuit relay.
    Relayed,
}

impl Link {
    /// `direct`, `hole_punched` or `relayed`.
    pub fn name(self) -> &'static str {
        match self {
            Link::Direct => "direct",
            Link::HolePunched => "hole_punched",
            Link::Relayed => "relayed",
        }
    }
}

/// A peer banned for its offences: disconnected and ignored until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct BannedPeer {
    /// libp2p peer id.
    pub peer_id: String,
    /// Why (the offence that tipped it over).
    pub reason: String,
    /// When the ban ends, unix ms.
    pub until_ms: u64,
}

/// The `engine` field of [`Status`]: runs and objects handled since the node started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct EngineStatus {
    /// Runs started by requests.
    pub runs_started: u64,
    /// Runs resumed from the trace store after a restart.
    pub runs_resumed: u64,
    /// Runs ended.
    pub runs_finished: u64,
    /// Objects received that no conversation of this node admitted (not stored).
    pub refused: u64,
    /// Those refusals by reason code (`unknown-intent`, `not-your-offer`, ...; SPEC.md §19).
    #[serde(default)]
    pub refusals: std::collections::BTreeMap<String, u64>,
    /// Objects this node sent to itself (delivered inside the engine).
    pub delivered_locally: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// Background jobs (sends, executors, vote handlers) running now.
    pub jobs_running: usize,
}

/// The `counters` field of [`Status`]: this process's work, monotonic, for benchmarks that
/// compare two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Counters {
    /// ed25519 signatures made.
    pub signatures: u64,
    /// ed25519 signatures checked.
    pub verifications: u64,
    /// Gossip messages published.
    pub gossip_published: u64,
    /// Gossip messages received and validated.
    pub gossip_received: u64,
    /// Received gossip that repeated an object already received.
    pub gossip_duplicates: u64,
    /// Direct messages sent.
    pub direct_sent: u64,
    /// Direct messages received.
    pub direct_received: u64,
    /// Objects written to the trace store.
    pub store_writes: u64,
    /// Store batches those objects were written in.
    pub store_batches: u64,
    /// Keys those batches wrote to the store's sled tree (objects, chunks, index entries,
    /// counters).
    #[serde(default)]
    pub store_keys: u64,
    /// Gossip dropped because its signer was over its budget (SPEC.md §20).
    #[serde(default)]
    pub gossip_rate_limited: u64,
    /// Direct messages refused because their sender was over its budget.
    #[serde(default)]
    pub direct_rate_limited: u64,
    /// Offences counted against peers.
    #[serde(default)]
    pub offences: u64,
    /// Peers banned.
    #[serde(default)]
    pub bans: u64,
}

/// One entry of `GET /v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Peer {
    /// libp2p peer id.
    pub peer_id: String,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Known addresses.
    pub addresses: Vec<String>,
    /// Its gossipsub score as this node sees it, while connected (below 0: penalised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_score: Option<f64>,
    /// Whether it is banned now for its offences.
    #[serde(default)]
    pub banned: bool,
    /// While connected: whether the connection is direct, hole punched or relayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
}

/// The body of `POST /v1/intents`: one intent (contract-net, auction, consensus, adaptive),
/// a workflow, or a parallel job. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishIntent {
    /// Capability wanted (not needed with `workflow`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capability: String,
    /// A workflow file's text (TOML): run it instead of one intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Split the input into at most this many shards, each awarded to its own provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<usize>,
    /// How to split for `parallel`: `lines` (default), `bytes:SIZE`, `json-array`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// How to combine shard outputs: `concat` (default), `sum`, or a capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce: Option<String>,
    /// Approval committee: members' public keys (64 hex digits) or peer ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committee: Option<Vec<String>>,
    /// Approvals needed (default: more than two thirds of the committee).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Input as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Input as hex (for binary data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hex: Option<String>,
    /// Budget: highest acceptable cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// Deadline, in ms from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Minimum reliability, in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reliability_bps: Option<u16>,
    /// Selection strategy (`lowest-cost`, `fastest`, `highest-quality`, `weighted:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Pattern hint (`auto`, `contract-net`, `auction`, `consensus`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// How long offers are accepted, in ms (default 60,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// How long offers are collected before the selection, in ms (default 2,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// Select as soon as this many acceptable offers are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_offers: Option<usize>,
    /// Answer only when the run is over (completed or failed), with its outcome.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
    /// With `wait`: give up waiting after this many ms (default: deadline + 30 s, or 120 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout_ms: Option<u64>,
}

/// The answer to `POST /v1/intents`: 201 once the intent went out, or 200 with the
/// `outcome` when the request asked to `wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Published {
    /// The run's trace (the root intent's id).
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// Whether the first intent reached at least one peer.
    pub published: bool,
    /// Gossip topics it went out on (none for a directed intent).
    pub topics: Vec<String>,
    /// The providers a directed intent (SPEC.md §4.3) reached, by key; empty when the intent
    /// was gossiped.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Vec<String>"))]
    pub sent_to: Vec<PublicKey>,
    /// How long the publication waited for a peer, ms.
    pub waited_ms: u64,
    /// With `wait`: how the run ended (its fields sit beside the ones above, `status` first
    /// among them).
    #[serde(flatten)]
    pub outcome: Option<Outcome>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The work was done and its receipt is in the trace.
    Completed(Completed),
    /// The run ended without the work done.
    Failed(Failed),
}

impl Outcome {
    /// `completed` or `failed`.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Completed(_) => "completed",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The stages or shards of a workflow or parallel run.
    pub fn parts(&self) -> &[Part] {
        match self {
            Outcome::Completed(c) => &c.parts,
            Outcome::Failed(f) => &f.parts,
        }
    }
}

/// A completed run: who did the work, at what cost, with what result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Completed {
    /// The provider of the (last) task (absent for a workflow or parallel run read back
    /// from the store: see `parts` of the live answer, or the trace).
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub provider: Option<PublicKey>,
    /// The task (its `task_start` id).
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub task: Option<ObjectId>,
    /// The offer awarded.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub offer: Option<ObjectId>,
    /// The cost agreed.
    pub cost: u64,
    /// The output, when it is UTF-8 text.
    pub output: Option<String>,
    /// The output as hex, when it is not UTF-8.
    pub output_hex: Option<String>,
    /// The receipt.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub receipt_id: Option<ObjectId>,
    /// Whether the requester countersigned the receipt.
    pub receipt_countersigned: bool,
    /// Awards made (more than one after a re-award).
    pub awards: u32,
    /// Stages or shards of a workflow or parallel run (empty otherwise).
    #[serde(default)]
    pub parts: Vec<Part>,
    /// What the run's ending event says, when it was read back from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether this answer was read back from the trace store (a run of an earlier process)
    /// rather than reported by the engine that ran it.
    #[serde(default)]
    pub from_store: bool,
}

/// A failed run and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Failed {
    /// The reason (`no-offers`, `deadline`, `all-providers-failed`, `requester-restarted`, ...).
    pub reason: String,
    /// More about it, for people.
    pub detail: String,
    /// Stages or shards of a workflow or parallel run (empty otherwise).
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Whether this answer was read back from the trace store.
    #[serde(default)]
    pub from_store: bool,
}

/// One stage (workflow) or shard (parallel) of a composite outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Part {
    /// Stage name, `shard-<i>` or `reduce`.
    pub label: String,
    /// The capability it asked for.
    pub capability: String,
    /// `pending`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    /// Why it failed.
    pub failure: Option<String>,
    /// Who did it.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub provider: Option<PublicKey>,
    /// Its task.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub task: Option<ObjectId>,
    /// Its cost (0 until awarded).
    pub cost: u64,
    /// Awards made.
    pub awards: u32,
    /// The output, when it is UTF-8 text.
    pub output: Option<String>,
    /// The output as hex, when it is not UTF-8.
    pub output_hex: Option<String>,
    /// Its receipt.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub receipt_id: Option<ObjectId>,
    /// When it started, unix ms.
    pub started_ms: Option<u64>,
    /// When it finished, unix ms.
    pub finished_ms: Option<u64>,
    /// How long it took, ms.
    pub duration_ms: Option<u64>,
}

/// `GET /v1/intents/{id}/outcome`: how the run of a trace this node coordinates ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RunOutcome {
    /// The trace.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// How it ended (its fields sit beside `trace_id`).
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Query of `GET /v1/intents/{id}/outcome`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutcomeQuery {
    /// How long to wait for a run still going, ms (default 120,000).
    pub timeout_ms: Option<u64>,
}

/// The body of `POST /v1/intents/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, signed into the event that ends the run (default: `cancelled by the requester`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Query of `GET /v1/traces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Most traces listed, newest first (default 50, at most 10,000).
    pub limit: Option<usize>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events about this trace (full id or a unique prefix of at least 8 hex digits):
    /// its objects. Peer and refusal events are left out.
    pub trace: Option<String>,
}

/// One capability in `GET /v1/capabilities`: who advertises it and on what terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CapabilityListing {
    /// The capability.
    pub capability: String,
    /// Its providers, cheapest first.
    pub providers: Vec<ProviderListing>,
}

/// One provider's advertisement of a capability (its signed capability ad).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ProviderListing {
    /// The provider's public key.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub provider: PublicKey,
    /// Its libp2p peer id (derived from the key).
    pub peer_id: String,
    /// The price of a task: `base` plus `per_kib` for each KiB of input.
    pub price_base: u64,
    /// The price per KiB of input (0 for a fixed price).
    pub price_per_kib: u64,
    /// Most tasks it runs at once.
    pub max_concurrent: u32,
    /// What input it takes.
    pub input_desc: String,
    /// What output it gives.
    pub output_desc: String,
    /// The ad's version field.
    pub version: String,
    /// When the ad lapses unless renewed, unix ms.
    pub expires_at_ms: u64,
    /// When this node last received it, unix ms.
    pub seen_at_ms: u64,
    /// The ad's id.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub ad: ObjectId,
}

/// Export formats of `GET /v1/traces/{id}/export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// The objects as JSON (`application/json`).
    #[default]
    Json,
    /// Graphviz DOT (`text/vnd.graphviz`).
    Dot,
    /// Mermaid flowchart (`text/plain`).
    Mermaid,
    /// The trace bundle: canonical CBOR of the wire objects (`application/cbor`).
    Bundle,
}

impl ExportFormat {
    /// The name used in the query string.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Dot => "dot",
            ExportFormat::Mermaid => "mermaid",
            ExportFormat::Bundle => "bundle",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(ExportFormat::Json),
            "dot" => Ok(ExportFormat::Dot),
            "mermaid" => Ok(ExportFormat::Mermaid),
            "bundle" => Ok(ExportFormat::Bundle),
            other => Err(format!(
                "unknown format `{other}`: expected json, dot, mermaid or bundle"
            )),
        }
    }
}

/// Query of `GET /v1/traces/{id}/export`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default), `dot`, `mermaid` or `bundle`.
    pub format: Option<String>,
}

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    /// No task has been awarded yet.
    Open,
    /// Work was awarded and the run has not ended.
    Awarded,
    /// The run ended successfully.
    Done,
    /// The run ended in failure.
    Failed,
}

impl TraceStatus {
    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            TraceStatus::Open => "open",
            TraceStatus::Awarded => "awarded",
            TraceStatus::Done => "done",
            TraceStatus::Failed => "failed",
        }
    }
}

/// A coordination pattern, as detected from a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Offers, award to the best, progress, done, receipt.
    ContractNet,
    /// Contract-net with an explicit scored selection among competing offers.
    Auction,
    /// Stages, each waiting for the ones it reads.
    Workflow,
    /// Sub-tasks run side by side.
    Parallel,
    /// A committee approved before execution.
    Consensus,
    /// Not enough structure to tell.
    Unknown,
}

impl Pattern {
    /// The name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::ContractNet => "contract-net",
            Pattern::Auction => "auction",
            Pattern::Workflow => "workflow",
            Pattern::Parallel => "parallel",
            Pattern::Consensus => "consensus",
            Pattern::Unknown => "unknown",
        }
    }
}

/// One trace in brief: `GET /v1/traces` lists these, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TraceSummary {
    /// The trace id.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// The capability of the root intent (if the root is stored).
    pub capability: Option<String>,
    /// The pattern the root intent asked for.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub hint: Option<PatternHint>,
    /// The pattern detected.
    pub pattern: Pattern,
    /// The pattern an adaptive requester chose, if any.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub chosen_by_adaptive: Option<PatternHint>,
    /// Where it stands.
    pub status: TraceStatus,
    /// Why it failed, for a failed trace.
    pub failure_reason: Option<String>,
    /// Objects stored.
    pub objects: usize,
    /// Tasks awarded (re-awards included).
    pub tasks: usize,
    /// Parts (stages, shards, reducer; 1 for a contract-net that awarded).
    pub parts: usize,
    /// Earliest object timestamp, unix ms.
    pub first_ms: u64,
    /// Latest object timestamp, unix ms.
    pub last_ms: u64,
}

/// One signed object as JSON (a view for people and programs; the wire form is CBOR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ObjectView {
    /// Its id (SHA-256 of its signed bytes).
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub id: ObjectId,
    /// Its kind.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub kind: Kind,
    /// Protocol version.
    pub version: u64,
    /// The trace it belongs to.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// Its parents' ids.
    #[schema(value_type = Vec<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Vec<String>"))]
    pub parents: Vec<ObjectId>,
    /// Who signed it.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub signer: PublicKey,
    /// When it was signed, unix ms.
    pub timestamp_ms: u64,
    /// The body, field by field as SPEC.md names them for its kind.
    #[schema(value_type = Object)]
    #[cfg_attr(feature = "schemars", schemars(with = "serde_json::Value"))]
    pub body: serde_json::Value,
    /// The signature, hex.
    pub signature: String,
    /// A receipt's countersignature, hex.
    pub countersignature: Option<String>,
}

/// `GET /v1/traces/{id}`: one trace, its summary and its objects, parents before children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TraceView {
    /// The trace in brief.
    pub summary: TraceSummary,
    /// Its objects in causal order.
    pub objects: Vec<ObjectView>,
}

/// `POST /v1/ui/login`: a one-time address that signs a browser in to the web view.
///
/// The code in it is single-use and short-lived; opening the address exchanges it for an
/// `HttpOnly`, `SameSite=Strict` session cookie, which authorises `GET` requests only (the web
/// view is read-only, and a cookie that cannot change anything leaves nothing to forge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct UiLogin {
    /// The address to open: `http://<api addr>/ui/login?code=<code>`.
    pub url: String,
    /// How long the code stays valid, ms.
    pub expires_in_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::of_content(&[n])
    }

    #[test]
    fn a_publication_round_trips_with_and_without_its_outcome() {
        let mut published = Published {
            trace_id: id(1),
            published: true,
            topics: vec!["pvl/1/all".into()],
            sent_to: Vec::new(),
            waited_ms: 3,
            outcome: None,
        };
        let json = serde_json::to_value(&published).unwrap();
        assert!(json.get("status").is_none(), "{json}");
        assert_eq!(
            serde_json::from_value::<Published>(json).unwrap(),
            published
        );

        published.outcome = Some(Outcome::Failed(Failed {
            reason: "no-offers".into(),
            detail: "nobody offered".into(),
            parts: Vec::new(),
            from_store: false,
        }));
        let json = serde_json::to_value(&published).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["reason"], "no-offers");
        assert_eq!(
            serde_json::from_value::<Published>(json).unwrap(),
            published
        );
    }

    #[test]
    fn an_outcome_sits_beside_its_trace_id() {
        let outcome = RunOutcome {
            trace_id: id(2),
            outcome: Outcome::Completed(Completed {
                provider: None,
                task: Some(id(3)),
                offer: None,
                cost: 7,
                output: Some("hi".into()),
                output_hex: None,
                receipt_id: Some(id(4)),
                receipt_countersigned: true,
                awards: 1,
                parts: Vec::new(),
                detail: None,
                from_store: true,
            }),
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["trace_id"], id(2).to_string());
        assert_eq!(json["output"], "hi");
        assert_eq!(serde_json::from_value::<RunOutcome>(json).unwrap(), outcome);
    }

    #[test]
    fn a_ui_login_round_trips() {
        let login = UiLogin {
            url: "http://127.0.0.1:1/ui/login?code=abc".into(),
            expires_in_ms: 60_000,
        };
        let json = serde_json::to_value(&login).unwrap();
        assert_eq!(serde_json::from_value::<UiLogin>(json).unwrap(), login);
    }

    #[test]
    fn unknown_fields_of_a_request_are_refused() {
        let err =
            serde_json::from_str::<PublishIntent>(r#"{"capability":"x","colour":1}"#).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
