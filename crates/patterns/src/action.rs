//! What the state machines ask their driver to do, and the timers they ask for.

use std::fmt;

use pvl_protocol::{Kind, ObjectId, Payload, PublicKey, SignedObject, TraceId};

/// One thing the driver (the node's event loop, or a simulation) must do for a state machine.
///
/// Actions are returned in the order they must be carried out. Every object a state machine
/// creates or accepts appears once in a [`Action::Record`], before or after the action that
/// sends it, so that the trace store sees everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Broadcast the object on the capability's topic (intents).
    Publish(SignedObject),
    /// Send the object directly to one peer (offers, awards, rejects, progress, done, receipts).
    Send {
        /// The peer, by its signing key.
        to: PublicKey,
        /// The object to send.
        object: SignedObject,
    },
    /// Start executing a task (provider side). When it ends, call
    /// [`crate::Provider::on_executed`]; while it runs, [`crate::Provider::report_progress`].
    Execute {
        /// The task id (the id of its `TaskStart`).
        task: ObjectId,
        /// The capability to run.
        capability: String,
        /// The input for the task.
        input: Payload,
        /// When the task must be done, unix ms, if the requester set a deadline.
        deadline_ms: Option<u64>,
    },
    /// Deliver `token` back to the state machine (as a timer input) at `at_ms` or later.
    /// Timers are never cancelled: a state machine ignores a token that no longer applies.
    SetTimer {
        /// When, unix ms.
        at_ms: u64,
        /// What to deliver.
        token: TimerToken,
    },
    /// Store the object in the trace store.
    Record(SignedObject),
    /// An intent seen on the network that no state machine here takes part in: not stored
    /// (a trace this node has no part in costs it nothing to keep), only shown to whoever
    /// watches the node (its event stream).
    Observe(SignedObject),
    /// The intent is over; no further action will come from this state machine.
    Finished(Outcome),
    /// Decide this node's vote on a proposal it may vote on (only with
    /// [`crate::VoteMode::External`]): the driver asks whoever decides and feeds the answer
    /// back as [`Input::VoteDecided`].
    DecideVote(SignedObject),
    /// Ask whoever bids for this capability (an agent program, see
    /// [`crate::Provider::serve_by_agent`]) whether and on what terms to offer on this intent;
    /// the driver feeds the answer back as [`Input::OfferDecided`].
    DecideOffer(SignedObject),
}

/// A timer a state machine asked for; routed back to it by its trace id, then (inside a
/// composite such as a workflow, where several requesters share one trace) by its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerToken {
    /// The trace of the state machine that set the timer: the driver routes on this.
    pub trace: TraceId,
    /// Which requester inside the trace set the timer: the id of that requester's first
    /// intent. For a requester that is the root of its own trace, `scope == trace`.
    pub scope: ObjectId,
    /// What the timer is for.
    pub kind: TimerKind,
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// The offer window of collection round `round` (1 for the first intent, 2 after the first
    /// re-publication, ...) closes.
    OfferWindow {
        /// The round.
        round: u32,
    },
    /// Check that the awarded provider of `task` is neither late nor silent.
    TaskWatchdog {
        /// The task id.
        task: ObjectId,
    },
    /// Stop waiting for the receipt of a task whose `TaskDone` arrived.
    ReceiptWait {
        /// The task id.
        task: ObjectId,
    },
    /// Voting round `round` of the consensus ballot on `offer` closes (see
    /// [`crate::consensus::Ballot`]).
    VoteRound {
        /// The offer voted on (the proposal's subject).
        offer: ObjectId,
        /// The round, from 1.
        round: u32,
    },
}

impl fmt::Display for TimerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerKind::OfferWindow { round } => write!(f, "offer-window#{round}"),
            TimerKind::TaskWatchdog { task } => write!(f, "watchdog:{}", task.short()),
            TimerKind::ReceiptWait { task } => write!(f, "receipt-wait:{}", task.short()),
            TimerKind::VoteRound { offer, round } => {
                write!(f, "vote-round#{round}:{}", offer.short())
            }
        }
    }
}

/// How an intent ended.
// Produced once per intent: the size difference does not matter, boxing would only make
// matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A provider did the work.
    Completed(Completion),
    /// Nobody did the work.
    Failed(Failure),
}

impl Outcome {
    /// Whether the work was done.
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed(_))
    }

    /// The trace of the intent.
    pub fn trace(&self) -> TraceId {
        match self {
            Outcome::Completed(c) => c.trace,
            Outcome::Failed(f) => f.trace,
        }
    }
}

/// The successful end of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The trace (id of the root intent).
    pub trace: TraceId,
    /// The task that did the work (id of its `TaskStart`).
    pub task: ObjectId,
    /// The offer that won the task.
    pub offer: ObjectId,
    /// The provider who did the work.
    pub provider: PublicKey,
    /// The output as reported in `TaskDone`.
    pub output: Option<Payload>,
    /// The cost of the winning offer.
    pub cost: u64,
    /// The receipt countersigned by the requester; `None` if the provider never sent a valid
    /// one within the receipt wait (an `Event` `receipt-missing` is recorded then).
    pub receipt: Option<SignedObject>,
    /// How many tasks were awarded in total (1 when the first winner delivered).
    pub awards: u32,
    /// For a composite (workflow, parallel): every part (stage, shard, reducer) in order,
    /// each with its own task, provider, cost, receipt and output; the fields above then
    /// describe the final part (see the composite's documentation) except `cost` and `awards`,
    /// which are totals. Contract-net leaves `parts` **empty**: the fields above are its
    /// single task.
    pub parts: Vec<PartResult>,
}

/// The unsuccessful end of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The trace (id of the root intent).
    pub trace: TraceId,
    /// Why, as a category.
    pub reason: FailureReason,
    /// Why, in words.
    pub detail: String,
    /// For a composite (workflow, parallel): every part in order, including those that
    /// finished well before the failure (with their receipts). Contract-net leaves `parts`
    /// **empty**.
    pub parts: Vec<PartResult>,
}

/// One part of a composite coordination: a workflow stage, a parallel shard or a reducer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartResult {
    /// The part's name: the stage name, `shard-<i>` (from 0) or `reduce`.
    pub label: String,
    /// The capability the part asked for.
    pub capability: String,
    /// Where the part stands.
    pub status: PartStatus,
    /// The last task awarded for the part (id of its `TaskStart`), if any.
    pub task: Option<ObjectId>,
    /// The provider of that task.
    pub provider: Option<PublicKey>,
    /// The offer that won that task.
    pub offer: Option<ObjectId>,
    /// The cost of that offer (0 when nothing was awarded).
    pub cost: u64,
    /// The countersigned receipt, when the part completed with one.
    pub receipt: Option<SignedObject>,
    /// The output as reported in `TaskDone`, when the part completed.
    pub output: Option<Payload>,
    /// How many tasks were awarded for the part, over all its attempts.
    pub awards: u32,
    /// When the part's first intent was signed, unix ms (`None`: never started).
    pub started_ms: Option<u64>,
    /// When the part ended, unix ms.
    pub finished_ms: Option<u64>,
}

impl PartResult {
    /// A part that has not started yet.
    pub fn pending(label: impl Into<String>, capability: impl Into<String>) -> Self {
        PartResult {
            label: label.into(),
            capability: capability.into(),
            status: PartStatus::Pending,
            task: None,
            provider: None,
            offer: None,
            cost: 0,
            receipt: None,
            output: None,
            awards: 0,
            started_ms: None,
            finished_ms: None,
        }
    }
}

/// Where one part of a composite stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartStatus {
    /// Not started (its inputs were not ready when the composite ended).
    Pending,
    /// Collecting offers or following a task.
    Running,
    /// Completed: output (and normally a receipt) available.
    Done,
    /// Failed, with the reason.
    Failed(String),
    /// Cancelled because the composite ended first.
    Cancelled,
}

impl PartStatus {
    /// A short machine-readable name.
    pub fn name(&self) -> &'static str {
        match self {
            PartStatus::Pending => "pending",
            PartStatus::Running => "running",
            PartStatus::Done => "done",
            PartStatus::Failed(_) => "failed",
            PartStatus::Cancelled => "cancelled",
        }
    }
}

/// Why an intent failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No offer at all arrived in the offer window.
    NoOffers,
    /// Offers arrived, but none satisfied the constraints.
    NoValidOffers,
    /// Every awarded provider failed or went silent, and no re-publication was possible.
    AllProvidersFailed,
    /// The deadline passed before any provider delivered.
    DeadlinePassed,
    /// The requester cancelled the intent.
    Cancelled,
    /// The approval committee rejected the award (the detail lists every member's reason).
    RejectedByCommittee,
    /// The approval committee did not reach its threshold in any voting round.
    NoQuorum,
    /// A composite could not feed a part: its input is unusable (e.g. an upstream output
    /// travels as a hash only, or a parallel input cannot be split).
    BadInput,
}

impl FailureReason {
    /// A short machine-readable name.
    pub fn name(self) -> &'static str {
        match self {
            FailureReason::NoOffers => "no-offers",
            FailureReason::NoValidOffers => "no-valid-offers",
            FailureReason::AllProvidersFailed => "all-providers-failed",
            FailureReason::DeadlinePassed => "deadline-passed",
            FailureReason::Cancelled => "cancelled",
            FailureReason::RejectedByCommittee => "rejected-by-committee",
            FailureReason::NoQuorum => "no-quorum",
            FailureReason::BadInput => "bad-input",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An input from the driver to a state machine.
// Objects are the common input; boxing them would cost an allocation per message to save
// space in the rare timer input.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An object arrived (from the network, already decoded and checked for freshness and
    /// replay by the node's `LiveValidator`).
    Received(SignedObject),
    /// A timer the state machine asked for fired.
    Timer(TimerToken),
    /// The executor reports progress on a task it runs (provider side).
    Progress {
        /// The task.
        task: ObjectId,
        /// Fraction done, basis points.
        fraction_bps: Option<u16>,
        /// A note for the requester.
        message: String,
    },
    /// The executor finished a task (provider side): the output, or why it failed.
    Executed {
        /// The task.
        task: ObjectId,
        /// The output, or the failure reason.
        result: Result<Payload, String>,
    },
    /// The provider of `task` refused its award in the acknowledgement (an admission refusal,
    /// e.g. `not-your-offer` when it no longer holds the offer): the requester reassigns at
    /// once instead of waiting for its watchdog (requester side).
    AwardRefused {
        /// The trace of the award.
        trace: TraceId,
        /// The task (the id of the refused `TaskStart`).
        task: ObjectId,
        /// The reason the provider gave.
        reason: String,
    },
    /// The requester of an offer refused it in its acknowledgement (an admission refusal:
    /// `intent-closed` once the offer window has closed, `unknown-intent`): the offer can never
    /// be awarded, so the provider gives it up at once instead of holding it until it expires
    /// (provider side; SPEC.md §19.3).
    OfferRefused {
        /// The trace of the offer.
        trace: TraceId,
        /// The refused offer.
        offer: ObjectId,
        /// The reason the requester gave.
        reason: String,
    },
    /// A provider a directed intent was sent to (SPEC.md §4.3) refused it in its
    /// acknowledgement (`not-bidding: ...`), or could not be reached: it will not offer. When
    /// every provider asked has offered or declined, the requester closes the offer window at
    /// once (selects among the offers it has, or widens the round to everyone) instead of
    /// waiting for the window's end (requester side).
    IntentDeclined {
        /// The trace of the intent.
        trace: TraceId,
        /// The directed intent.
        intent: ObjectId,
        /// The provider that declined it.
        provider: PublicKey,
        /// Its reason, or why it could not be reached.
        reason: String,
    },
    /// The decision on a proposal asked for with [`Action::DecideVote`].
    VoteDecided {
        /// The proposal.
        proposal: SignedObject,
        /// The decision.
        decision: crate::VoteDecision,
    },
    /// The answer to an [`Action::DecideOffer`]: the terms to offer on, or why not. The
    /// offer's `intent` field is the intent asked about.
    OfferDecided {
        /// The intent.
        intent: ObjectId,
        /// Bid (on these terms) or decline (with a reason).
        decision: crate::BidDecision,
    },
}

impl Input {
    /// What the sender's engine is told when the engine of `receiver` refused an object it
    /// sent directly (`reason` is the acknowledgement's `<code>: <detail>`, see
    /// [`crate::Refusal::of_reason`]): a refused award ([`Input::AwardRefused`]), offer
    /// ([`Input::OfferRefused`]) or directed intent ([`Input::IntentDeclined`]). Other kinds
    /// change nothing at their sender.
    pub fn after_refusal(
        kind: Kind,
        trace: TraceId,
        object: ObjectId,
        receiver: PublicKey,
        reason: String,
    ) -> Option<Input> {
        match kind {
            Kind::Intent => Some(Input::IntentDeclined {
                trace,
                intent: object,
                provider: receiver,
                reason,
            }),
            Kind::TaskStart => Some(Input::AwardRefused {
                trace,
                task: object,
                reason,
            }),
            Kind::Offer => Some(Input::OfferRefused {
                trace,
                offer: object,
                reason,
            }),
            _ => None,
        }
    }
}
