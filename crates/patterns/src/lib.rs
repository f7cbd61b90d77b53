//! # pvl-patterns: coordination patterns as sans-I/O state machines
//!
//! A pattern is a state machine over [`pvl_protocol`] objects. It never touches the network,
//! the clock or a store: the driver (the node's event loop, a test, a simulation) feeds it
//! **inputs** with an explicit `now_ms` and carries out the **actions** it returns. Tests
//! therefore run with a fake clock and real signatures, and thousands of state machines can
//! run in one process.
//!
//! This crate implements contract-net with auction-style selection, committee approval,
//! adaptive pattern choice, and two composite patterns built from contract-net:
//!
//! * [`Requester`]: one intent, from publication to a countersigned receipt (or a clear
//!   failure); either the root of its own trace ([`Requester::start`]) or a child in an
//!   existing trace ([`Requester::start_within`]);
//! * [`WorkflowRun`] ([`workflow`]): a DAG of stages read from a TOML file, each stage a
//!   contract-net round inside one trace, outputs flowing to the stages that read them;
//! * [`ParallelRun`] ([`parallel`]): one input split into shards run at the same time on
//!   distinct providers where enough exist, outputs reduced in shard order;
//! * [`Provider`]: one node's bidding and task execution over any number of intents;
//! * [`select`]: constraint checks, scoring and ranking of offers, and the `selection` events
//!   that explain a choice;
//! * [`consensus`]: a committee approves an award before execution: the requester's
//!   [`Ballot`], each member's [`Voter`], and [`verify_certificate`] for the provider;
//! * [`adaptive`]: [`choose`] the pattern for a request and the providers to avoid, from its
//!   situation and the node's history;
//! * [`admission`]: the typed verdict ([`Refusal`]) on an object received directly, given by
//!   [`Engine::admit`] from the refusals of the state machine whose rule governs it;
//! * [`sim`]: an in-memory driver (simulated clock and network) for tests, examples and
//!   simulations at scale.
//!
//! ## One driver interface
//!
//! Requester, workflow and parallel runs all implement [`Coordination`]: `start(now)`,
//! `handle(input, now)`, `trace()`, `claims(object)`, `is_finished()`, `outcome()`,
//! `cancel(reason, now)`. A node keeps one `Box<dyn Coordination>` per trace it coordinates
//! and routes to it every received object of that trace and every timer whose
//! [`TimerToken::trace`] is that trace. A composite routes further inside: objects to the
//! sub-requester that [`Requester::claims`] them, timers by [`TimerToken::scope`] (the id of
//! the sub-requester's first intent; for a root requester `scope == trace`).
//!
//! | pattern | root intent | sub-intents | outcome |
//! |---|---|---|---|
//! | contract-net ([`Requester`]) | published, bid on | re-publications after failures | [`Completion`] of the task; `parts` empty |
//! | workflow ([`WorkflowRun`]) | `workflow:<name>`, pattern Workflow, recorded only | one per stage (+ re-publications, in the same trace) | `parts` = every stage; task/output = the final stage's; cost/awards = totals |
//! | parallel ([`ParallelRun`]) | the capability, pattern Parallel, recorded only | one per shard (+ restarts) and a reducer | `parts` = shards then reducer; output = reduced; cost/awards = totals |
//!
//! ```text
//!                      root Intent (recorded, not published)
//!                     /            |             \
//!        stage/shard Intent   stage/shard Intent   ...      each: offers, selection,
//!          (sub-requester)      (sub-requester)             award, progress, done,
//!                |                    |                     receipt, reassignment
//!        stage-done/shard-done  stage-done/shard-done
//!                 \                  /
//!      downstream stage Intent | reducer Intent (parents: root + upstream receipts)
//!                           |
//!               workflow-done | reduced  ->  Finished(Outcome with parts)
//! ```
//!
//! ## Inputs
//!
//! | input | requester | provider | workflow / parallel |
//! |---|---|---|---|
//! | [`Input::Received`] (an object of the trace, decoded and checked by the node) | offer, progress, done, receipt, the winner's `award-refused` event, committee votes | intent, award (`TaskStart`), reject, countersigned receipt | the same as a requester, for any of its sub-requesters |
//! | [`Input::Timer`] (a [`TimerToken`] it asked for) | window close, watchdog, receipt wait, vote round | none | its sub-requesters' timers |
//! | [`Input::Progress`], [`Input::Executed`] (from the executor) | refused | progress, done + receipt | refused |
//! | [`Input::AwardRefused`] (the provider refused an award in its acknowledgement) | reassign | refused | the part that awarded the task |
//! | [`Input::IntentDeclined`] (a provider refused a directed intent in its acknowledgement, or could not be reached) | closes the window once every provider asked has offered or declined | refused | refused (its parts gossip) |
//!
//! A committee member's node feeds the proposals it receives to its [`Voter`]
//! ([`Voter::on_proposal`]); a voter sets no timers.
//!
//! `handle`/`on_*` return `Result<Vec<Action>, PatternError>`. An `Err` means the input was
//! refused and nothing changed (wrong trace, wrong signer, unknown task, ...): the node logs it
//! and may count it against the sender.
//!
//! ## Actions
//!
//! [`Action::Publish`] (gossip an intent), [`Action::Send`] (an object to one peer, by its
//! public key), [`Action::Execute`] (start a task), [`Action::SetTimer`] (deliver a token back
//! at a time; timers are never cancelled, stale tokens are ignored), [`Action::Record`] (store
//! an object: every object a pattern creates or accepts is recorded exactly once) and
//! [`Action::Finished`] (the intent's [`Outcome`]). Actions must be carried out in order.
//!
//! ## Timers
//!
//! The requester sets four kinds of timers, all keyed by its trace id so the driver can
//! route them, and by its scope so that a composite can tell its sub-requesters apart:
//! [`TimerKind::VoteRound`] (a committee voting round closes, see [`consensus`]), [`TimerKind::OfferWindow`] (close the offer window of a round),
//! [`TimerKind::TaskWatchdog`] (the awarded provider must deliver within its eta plus a grace,
//! must not stay silent longer than the silence limit, and must not pass the deadline; the
//! watchdog re-arms itself when progress moved the limit) and [`TimerKind::ReceiptWait`]
//! (how long a successful `TaskDone` may wait for its receipt).
//!
//! ## A requester round
//!
//! ```text
//!                 start(now)
//!                     |  sign + Publish intent, SetTimer(window)
//!                     v
//!    +-------> COLLECTING --- offer --> check constraints --bad--> Reject(code)
//!    |                |   (dup provider, wrong intent, expired, over budget,
//!    |                |    too slow, low reliability, resources, over the cap)
//!    |                | window timer | k acceptable offers | deadline - eta of a held offer
//!    |                v
//!    |            SELECT -- none acceptable --> FINISHED(Failed: no-offers / no-valid-offers)
//!    |                |  rank, Record selection Event(s),
//!    |                |  Reject(NotSelected, scores) to the others
//!    |                v
//!    |          (committee?) -- VOTING: Ballot on the winner's offer (see [`consensus`])
//!    |                |   rejected -> FINISHED(Failed: rejected-by-committee)
//!    |                |   no quorum after the last round -> FINISHED(Failed: no-quorum)
//!    |                v   approved: the certificate goes into the TaskStart
//!    |             AWARDED -- TaskStart to winner, SetTimer(watchdog)
//!    |                |   progress: record, extends the silence limit
//!    |                |   done(ok) + receipt (any order): verify, countersign,
//!    |                |      Send back, FINISHED(Completed)
//!    |                |   done(ok), no receipt in time: FINISHED(Completed, receipt-missing)
//!    |                |   done(failed) | award-refused | watchdog | bad receipt:
//!    |                v
//!    |            REASSIGN -- next standby offer still acceptable --> Event `reassigned`,
//!    |                |                                                AWARDED (next-best)
//!    |                |   (with a committee, the next-best offer is voted on first)
//!    |                | none left, time left, re-publications left
//!    +-- Event `reassigned` (to = republish), new intent in the same trace
//!                     | otherwise
//!                     v
//!                 FINISHED(Failed: all-providers-failed / deadline-passed)
//! ```
//!
//! A re-published intent stays in the original trace (its parents are the previous intent
//! and the `reassigned` event); providers who failed are refused in later rounds.
//!
//! ## Bounds
//!
//! Everything kept per network input is capped: a requester processes at most
//! [`RequestSpec::max_offers`] offers per round (the rest are refused unread and not stored);
//! a provider holds at most a configurable number of outstanding offers and runs at most
//! `max_concurrent` tasks, declining to bid when it has no free slot.

pub mod action;
pub mod adaptive;
pub mod admission;
mod composite;
pub mod consensus;
pub mod coordination;
pub mod directory;
pub mod engine;
mod error;
pub mod parallel;
pub mod provider;
pub mod request;
pub mod requester;
pub mod select;
pub mod sim;
mod util;
pub mod workflow;

pub use action::{
    Action, Completion, Failure, FailureReason, Input, Outcome, PartResult, PartStatus, TimerKind,
    TimerToken,
};
pub use adaptive::{
    Choice, NoPatternHistory, PatternHistory, PatternRecord, ProviderRecord, Situation, choose,
};
pub use admission::{Refusal, RefusalCounts, Refused, Verdict};
pub use consensus::{
    Ballot, Decision, MemberReason, ProposalTerms, RulePolicy, Stance, VoteDecision, VotePolicy,
    Voter, verify_certificate,
};
pub use coordination::Coordination;
pub use directory::{Directory, Listing};
pub use engine::{Engine, EngineConfig, EngineStats, RESTARTED, VoteMode};
pub use error::{PatternError, Result};
pub use parallel::{ParallelError, ParallelRun, ParallelSpec, Reduce, Split, split};
pub use provider::{BidDecision, OfferPolicy, Provider};
pub use request::{History, NoRecords, Planned, Request, RequestError, RequestOptions};
pub use requester::{RequestSpec, Requester, RequesterState, RequesterStats};
pub use select::{Candidate, NoHistory, Ranking, ReliabilitySource, Scored, Violation};
pub use workflow::{StageSpec, WorkflowError, WorkflowRun, WorkflowSpec};
