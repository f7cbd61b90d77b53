//! Agent programs: a provider's bids and tasks decided by a program of its own, connected
//! through the control API.
//!
//! A node whose `[[executor]]` has `kind = "agent"` hands every intent it may bid on for that
//! capability, and every task it is awarded, to whichever program asks for work first:
//!
//! 1. the program long-polls `GET /v1/agents/work?capability=C&timeout_ms=N` and gets a
//!    [`WorkItem`] (or 204 when nothing came within `N`);
//! 2. for a [`Work::Bid`] it answers `POST /v1/agents/work/{id}/bid` with a [`BidAnswer`]: its
//!    own terms, or a decline with a reason; the node signs and sends the offer (terms that
//!    break the intent's budget, deadline, minimum reliability or resource limits are not
//!    offered);
//! 3. for a [`Work::Task`] it may post [`ProgressReport`]s to `.../progress` and ends with a
//!    [`TaskAnswer`] to `.../result`; the node signs progress, done and the receipt.
//!
//! A node with `[consensus] agent = true` hands the proposals of committees it sits on to a
//! voter program the same way: `GET /v1/agents/votes` gives a [`Work::Vote`], answered with a
//! [`VoteAnswer`] at `POST /v1/agents/work/{id}/vote`; the node signs the vote.
//!
//! Each item must be answered by its `answer_by_ms`: a bid not answered is a decline, a task
//! not finished is a failed task (the requester then re-awards), a vote not cast is a
//! rejection saying so. Several programs may poll the
//! same capability; each item goes to one of them.

use pvl_protocol::{ObjectId, PublicKey};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Query of `GET /v1/agents/work`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkQuery {
    /// The capability the program serves.
    pub capability: String,
    /// How long to wait for work, ms (default 30,000, at most 120,000).
    pub timeout_ms: Option<u64>,
}

/// One piece of work for an agent program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct WorkItem {
    /// The item's id, for the answer's path.
    pub id: u64,
    /// The capability.
    pub capability: String,
    /// The answer must arrive by then (unix ms), or the node answers for the program: a
    /// decline for a bid, a failure for a task.
    pub answer_by_ms: u64,
    /// What to do.
    pub work: Work,
}

/// What an agent program is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Bid on an intent, or decline.
    Bid(BidRequest),
    /// Run an awarded task.
    Task(TaskRequest),
    /// Vote on a proposal of a committee this node sits on.
    Vote(VoteRequest),
}

/// A proposal to vote on (`GET /v1/agents/votes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct VoteRequest {
    /// The proposal.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub proposal: ObjectId,
    /// Its trace.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// Who proposes (the requester).
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub proposer: PublicKey,
    /// What is voted on (the offer to award).
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub subject: ObjectId,
    /// The voting round.
    pub round: u32,
    /// The terms, one line (SPEC.md §9: `award capability=... provider=... offer=... cost=N
    /// eta_ms=N input_sha256=...`).
    pub action: String,
    /// Committee size.
    pub members: usize,
    /// Approvals needed.
    pub threshold: u32,
    /// Votes after this are not counted, unix ms.
    pub deadline_ms: u64,
}

/// The answer to a [`Work::Vote`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VoteAnswer {
    /// Approve or reject.
    pub approve: bool,
    /// Why (signed into the vote; the requester's trace shows it).
    #[serde(default)]
    pub reason: String,
}

/// Query of `GET /v1/agents/votes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VotesQuery {
    /// How long to wait for a proposal, ms (default 30,000, at most 120,000).
    pub timeout_ms: Option<u64>,
}

/// An intent to bid on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct BidRequest {
    /// The intent.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub intent: ObjectId,
    /// Its trace.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub trace_id: ObjectId,
    /// Who asks.
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub requester: PublicKey,
    /// The input, when it is UTF-8 text.
    pub input: Option<String>,
    /// The input as hex, when it is not.
    pub input_hex: Option<String>,
    /// The input's size in bytes.
    pub input_size: u64,
    /// The highest cost the requester accepts.
    pub budget: Option<u64>,
    /// When the work must be done, unix ms.
    pub deadline_ms: Option<u64>,
    /// The lowest reliability the requester accepts, basis points.
    pub min_reliability_bps: Option<u16>,
    /// When the intent stops accepting offers, unix ms.
    pub offers_close_ms: u64,
}

/// An awarded task to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TaskRequest {
    /// The task (its `task_start` id).
    #[schema(value_type = String)]
    #[cfg_attr(feature = "schemars", schemars(with = "String"))]
    pub task: ObjectId,
    /// The input, when it is UTF-8 text.
    pub input: Option<String>,
    /// The input as hex, when it is not.
    pub input_hex: Option<String>,
    /// When it must be done, unix ms.
    pub deadline_ms: Option<u64>,
}

/// The answer to a [`Work::Bid`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum BidAnswer {
    /// Offer on these terms.
    Offer {
        /// The price.
        cost: u64,
        /// Estimated completion time, ms.
        eta_ms: u64,
        /// Claimed reliability, basis points (at most 10,000).
        reliability_bps: u16,
        /// How long the offer stays valid, ms (default and upper bound: the node's offer
        /// lifetime, 30 s; never past the intent's deadline).
        #[serde(default)]
        expires_in_ms: Option<u64>,
        /// CPU it will use at most, thousandths of a core.
        #[serde(default)]
        cpu_millicores: Option<u32>,
        /// Memory it will use at most, bytes.
        #[serde(default)]
        memory_bytes: Option<u64>,
        /// Disk it will use at most, bytes.
        #[serde(default)]
        disk_bytes: Option<u64>,
    },
    /// Do not offer.
    Decline {
        /// Why (logged by the node).
        reason: String,
    },
}

/// Progress on a [`Work::Task`], signed and sent to the requester by the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProgressReport {
    /// Fraction done, basis points.
    #[serde(default)]
    pub fraction_bps: Option<u16>,
    /// A note for the requester.
    #[serde(default)]
    pub message: String,
}

/// How a [`Work::Task`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskAnswer {
    /// Done: the output (text, or hex for bytes).
    Done {
        /// The output as text.
        #[serde(default)]
        output: Option<String>,
        /// The output as hex.
        #[serde(default)]
        output_hex: Option<String>,
    },
    /// Failed, with the reason.
    Failed {
        /// Why.
        reason: String,
    },
}
