//! `GET /v1/traces/{id}/analysis`: what a trace says about its run, typed.
//!
//! The node computes it with `pvl_trace::analyse`; these types are its JSON form (this crate
//! depends on `pvl-protocol` only, so it states the shape itself; the in-process API test
//! decodes a real analysis into them, so the two cannot drift apart unnoticed).

use pvl_protocol::{Kind, ObjectId, PatternHint, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::types::{Pattern, TraceStatus};

/// Everything the analysis finds out about a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TraceAnalysis {
    /// The trace.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace: ObjectId,
    /// The pattern detected.
    pub pattern: Pattern,
    /// The pattern the root intent asked for.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub hint: Option<PatternHint>,
    /// The adaptive choice recorded in the trace, if any.
    pub chosen_by_adaptive: Option<AdaptiveChoice>,
    /// The capability of the root intent.
    pub capability: Option<String>,
    /// Where the trace stands.
    pub status: TraceStatus,
    /// Why the trace failed, for a failed trace.
    pub failure: Option<TraceFailure>,
    /// Objects analysed.
    pub objects: usize,
    /// Every task, in award order.
    pub tasks: Vec<TaskInfo>,
    /// Every part (stage, shard, reducer, task label), by first activity then label.
    pub parts: Vec<PartTiming>,
    /// Workflow stages in dependency order (empty for other patterns).
    pub stages_in_order: Vec<String>,
    /// Consensus rounds, oldest first.
    pub rounds: Vec<ConsensusRound>,
    /// Tasks per provider.
    pub tasks_per_agent: Vec<AgentTasks>,
    /// The critical path.
    pub critical_path: CriticalPath,
    /// The slowest task on the critical path (or overall).
    pub bottleneck: Option<TaskInfo>,
    /// Offer response latencies, in offer order.
    pub offer_latencies: Vec<OfferLatency>,
    /// Whether this node's copy of the trace verifies (signatures, ids, links), as the node
    /// checked it when asked for the analysis.
    #[serde(default)]
    pub verification: Option<TraceVerification>,
}

/// Most problems listed in a [`TraceVerification`].
pub const MAX_LISTED_PROBLEMS: usize = 32;

/// The result of verifying a node's copy of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TraceVerification {
    /// Objects checked.
    pub checked: usize,
    /// No problem at all: every object verifies and every link resolves.
    pub ok: bool,
    /// Every object present verifies; the only problems are links to objects this copy does
    /// not hold (what a participant's partial copy looks like).
    pub ok_as_partial_copy: bool,
    /// Links to objects this copy does not hold.
    pub absent_links: usize,
    /// Problems found, for people (at most [`MAX_LISTED_PROBLEMS`]).
    pub problems: Vec<String>,
}

/// The pattern an adaptive requester chose, from its `pattern-chosen` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct AdaptiveChoice {
    /// The chosen pattern.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub pattern: PatternHint,
    /// Why, one reason per rule that fired.
    pub reasons: Vec<String>,
    /// Providers avoided for a poor record.
    #[schema(value_type = Vec<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Vec<String>"))]
    pub avoid: Vec<PublicKey>,
    /// The `pattern-chosen` event.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub event: ObjectId,
    /// When the choice was made, unix ms.
    pub at_ms: u64,
}

/// Why a trace failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TraceFailure {
    /// The ending event's `reason`, or the failed part's failure text.
    pub reason: String,
    /// The event that ended the trace, when one did.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub event: Option<ObjectId>,
    /// Its type (`intent-failed`, `workflow-failed`, `parallel-failed`).
    pub event_type: Option<String>,
    /// The part that failed, when known.
    pub part: Option<String>,
    /// When the trace was ended, unix ms.
    pub at_ms: Option<u64>,
}

/// One task (a `task_start`) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TaskInfo {
    /// The task id.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub task: ObjectId,
    /// Its label (`main`, `shard-2`, a stage name).
    pub label: String,
    /// Who executes it.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub provider: PublicKey,
    /// Who awarded it.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub requester: PublicKey,
    /// The intent the awarded offer answers.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub intent: Option<ObjectId>,
    /// The capability asked for.
    pub capability: Option<String>,
    /// When the award was signed, unix ms.
    pub awarded_at_ms: u64,
    /// The deadline stated in the award.
    pub deadline_ms: Option<u64>,
    /// When execution started.
    pub started_at_ms: Option<u64>,
    /// When execution finished.
    pub finished_at_ms: Option<u64>,
    /// `true` succeeded, `false` failed, absent not finished.
    pub ok: Option<bool>,
    /// The failure reason, for a failed task.
    pub failure: Option<String>,
    /// The receipt.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub receipt: Option<ObjectId>,
    /// Whether the requester countersigned the receipt.
    pub countersigned: bool,
    /// Whether the task lies on the critical path.
    pub on_critical_path: bool,
}

/// What a part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// A workflow stage.
    Stage,
    /// A parallel shard.
    Shard,
    /// The reducer of a parallel run.
    Reduce,
    /// The task of a contract-net, auction or consensus round.
    Task,
}

/// One part and where its time went. Times are unix ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PartTiming {
    /// The label.
    pub label: String,
    /// Stage, shard, reduce or task.
    pub kind: PartKind,
    /// The capability asked for.
    pub capability: Option<String>,
    /// The provider of the last award.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub provider: Option<PublicKey>,
    /// The last award.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub task: Option<ObjectId>,
    /// The part's first intent.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub intent: Option<ObjectId>,
    /// When that intent was signed.
    pub opened_at_ms: Option<u64>,
    /// When the part was first awarded.
    pub awarded_at_ms: Option<u64>,
    /// When the last award started executing.
    pub started_at_ms: Option<u64>,
    /// When the last award finished executing.
    pub finished_at_ms: Option<u64>,
    /// Execution time of the last award, ms.
    pub duration_ms: Option<u64>,
    /// From the first intent to the end of the last award, ms.
    pub elapsed_ms: Option<u64>,
    /// Awards made.
    pub awards: u32,
    /// `true` done, `false` failed for good, absent still running.
    pub ok: Option<bool>,
    /// Why it failed.
    pub failure: Option<String>,
    /// From the first intent to the first award, ms.
    pub waited_ms: Option<u64>,
    /// Labels of the parts whose results it waited for.
    pub depends_on: Vec<String>,
    /// Whether one of its tasks lies on the critical path.
    pub on_critical_path: bool,
}

/// How a consensus round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RoundOutcome {
    /// A quorum certificate was signed.
    Approved,
    /// The committee rejected.
    Rejected,
    /// Voting closed without a decision.
    TimedOut,
    /// Not decided yet.
    Open,
}

/// One member's vote in a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct RoundVote {
    /// The vote.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub vote: ObjectId,
    /// Who voted.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub member: PublicKey,
    /// Approve or reject.
    pub approve: bool,
    /// Why.
    pub reason: String,
    /// When, unix ms.
    pub at_ms: u64,
}

/// One voting round (one proposal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct ConsensusRound {
    /// The round number.
    pub round: u32,
    /// The proposal.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub proposal: ObjectId,
    /// What is voted on (the offer to award).
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub subject: ObjectId,
    /// The proposal's action text.
    pub action: String,
    /// Who proposed.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub proposer: PublicKey,
    /// Committee size.
    pub members: usize,
    /// Approvals needed.
    pub threshold: u32,
    /// When the proposal was signed, unix ms.
    pub opened_at_ms: u64,
    /// Votes, oldest first.
    pub votes: Vec<RoundVote>,
    /// When the round was decided, unix ms.
    pub decided_at_ms: Option<u64>,
    /// From proposal to decision, ms.
    pub latency_ms: Option<u64>,
    /// How the round ended.
    pub outcome: RoundOutcome,
    /// The quorum certificate, for an approved round.
    #[schema(value_type = Option<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Option<String>"))]
    pub certificate: Option<ObjectId>,
    /// Members who signed two different votes in this round.
    #[schema(value_type = Vec<String>)]
    #[cfg_attr(feature = "schemars", schemars(with = "Vec<String>"))]
    pub equivocators: Vec<PublicKey>,
}

/// Tasks handled by one provider in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct AgentTasks {
    /// The provider.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub provider: PublicKey,
    /// Tasks awarded to it.
    pub awarded: usize,
    /// Of those, finished successfully.
    pub succeeded: usize,
    /// Of those, failed.
    pub failed: usize,
}

/// One step of the critical path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct PathStep {
    /// The object.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub id: ObjectId,
    /// Its kind.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub kind: Kind,
    /// A short label.
    pub label: String,
    /// The part the object belongs to, if any.
    pub part: Option<String>,
    /// Its timestamp, unix ms.
    pub at_ms: u64,
    /// Time since the previous step.
    pub since_previous_ms: u64,
}

/// The chain of last-arriving causes from the trace's start to its latest object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct CriticalPath {
    /// Steps, oldest first.
    pub steps: Vec<PathStep>,
    /// Time from the first to the last step, ms.
    pub total_ms: u64,
}

/// How long a provider took to answer an intent with an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct OfferLatency {
    /// The offer.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub offer: ObjectId,
    /// Who offered.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub provider: PublicKey,
    /// The intent answered.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub intent: ObjectId,
    /// Offer timestamp minus intent timestamp, ms.
    pub latency_ms: u64,
}
