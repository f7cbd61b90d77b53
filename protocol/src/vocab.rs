//! The event vocabulary above the envelope: event types, attribute keys, the run-spec event.
//!
//! The envelope and the `event` body (SPEC.md §4) are deliberately open: `event_type` is any
//! name and `attrs` any ordered list of `[name, text]` pairs, so that a peer may record
//! observations this implementation does not know. What pvl itself writes and reads, though,
//! is a closed vocabulary, and this module is its one definition:
//!
//! * [`EventType`]: every event type pvl emits, with [`EventType::Other`] keeping a foreign
//!   peer's unknown type decodable. The wire field stays the text [`Event::event_type`]; the
//!   typed view is [`Event::kind`], so no byte of an encoded event depends on this module.
//! * [`attr`]: the attribute keys, as constants, and the few fixed attribute values.
//! * [`EventType::attr_keys`] / [`EventType::attr_prefixes`]: which attributes each type
//!   carries (SPEC.md §8 lists them with their meaning), and [`EventType::signed_by`]: who
//!   signs it.
//! * [`RunSpec`]: the `run-spec` event's attributes as a typed struct (the coordination knobs a
//!   requester recorded at the start of a run), with a total parser.
//!
//! Readers match on [`EventType`] (`if e.kind() == EventType::Selection`) or test cheaply with
//! [`Event::is`]; writers build the text with [`EventType::as_str`] and the attribute
//! constants, never with string literals of their own.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use crate::body::Event;
use crate::error::ProtocolError;
use crate::keys::PublicKey;

/// The capability of a workflow's root intent is this prefix and the workflow's name
/// (`workflow:thumbnails`); its stages ask for their own capabilities.
pub const WORKFLOW_CAPABILITY_PREFIX: &str = "workflow:";

/// The `TaskStart` label of a single-task run (contract-net, auction, consensus).
pub const MAIN_LABEL: &str = "main";

/// The `TaskStart` label of a parallel run's reducer.
pub const REDUCE_LABEL: &str = "reduce";

/// The `TaskStart` label of parallel shard `i` is this prefix and `i` (`shard-0`, `shard-1`).
pub const SHARD_LABEL_PREFIX: &str = "shard-";

/// Who signs events of a given type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignedBy {
    /// The requester of the trace (the signer of the root intent, or of a sub-intent's run).
    Requester,
    /// The provider of the task the event is about.
    Provider,
    /// Anyone: a type this implementation does not know.
    Anyone,
}

macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $signer:ident,
        [$($key:expr),* $(,)?], [$($prefix:expr),* $(,)?]; )*) => {
        /// The type of an [`Event`]: every type pvl writes, and [`EventType::Other`] for the
        /// rest. The text form ([`EventType::as_str`]) is what travels in `event.event_type`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $( $(#[$doc])* $variant, )*
            /// A type this implementation does not know (e.g. from a newer or foreign peer),
            /// kept verbatim.
            Other(String),
        }

        impl EventType {
            /// Every known type, in SPEC.md order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The wire text of the type.
            pub fn as_str(&self) -> &str {
                match self {
                    $(EventType::$variant => $name,)*
                    EventType::Other(s) => s,
                }
            }

            /// The typed view of a wire text; unknown texts become [`EventType::Other`].
            pub fn parse(text: &str) -> EventType {
                match text {
                    $($name => EventType::$variant,)*
                    other => EventType::Other(other.to_string()),
                }
            }

            /// Who signs events of this type.
            pub fn signed_by(&self) -> SignedBy {
                match self {
                    $(EventType::$variant => SignedBy::$signer,)*
                    EventType::Other(_) => SignedBy::Anyone,
                }
            }

            /// The attribute keys events of this type may carry (SPEC.md §8), in the order
            /// pvl writes them; attributes named by [`EventType::attr_prefixes`] come on top.
            /// Empty for [`EventType::Other`], which may carry anything.
            pub fn attr_keys(&self) -> &'static [&'static str] {
                match self {
                    $(EventType::$variant => &[$($key),*],)*
                    EventType::Other(_) => &[],
                }
            }

            /// Prefixes of attribute keys with a variable part (e.g. `offer:<id8>`).
            pub fn attr_prefixes(&self) -> &'static [&'static str] {
                match self {
                    $(EventType::$variant => &[$($prefix),*],)*
                    EventType::Other(_) => &[],
                }
            }
        }
    };
}

use attr::*;

event_types! {
    /// Why an offer won: the ranking of one page of offers (requester).
    Selection = "selection", Requester,
        [STRATEGY, VALID_OFFERS, PAGE, WINNER, WINNER_PROVIDER, WINNER_SCORE, SCORE,
         AVOIDED_OFFERS],
        [REJECTED_PREFIX, OFFER_PREFIX];
    /// Offers of providers already busy in this trace were ranked after the others.
    RankedLast = "ranked-last", Requester, [COUNT], [];
    /// The adaptive pattern choice and its reasons.
    PatternChosen = "pattern-chosen", Requester, [PATTERN, REASONS, AVOID], [];
    /// The provider refused an award (signed by the provider).
    AwardRefused = "award-refused", Provider, [REASON], [];
    /// A failed task was re-awarded to the next-best offer, or the intent re-published.
    Reassigned = "reassigned", Requester,
        [FROM_TASK, FROM_PROVIDER, REASON, TO_OFFER, TO_PROVIDER, TO_SCORE, TO, ROUND], [];
    /// A task was reported done but its receipt never came; the run ends as done.
    ReceiptMissing = "receipt-missing", Requester, [PROVIDER], [];
    /// The intent failed for good.
    IntentFailed = "intent-failed", Requester, [REASON, OFFERS_RECEIVED, AWARDS], [];
    /// The committee rejected the award.
    ConsensusRejected = "consensus-rejected", Requester, [ROUND, OFFER, THRESHOLD],
        [MEMBER_PREFIX];
    /// A committee member signed two different votes in one round.
    Equivocation = "equivocation", Requester, [MEMBER, ROUND, FIRST_VOTE, SECOND_VOTE], [];
    /// A voting round closed without a decision.
    RoundTimeout = "round-timeout", Requester, [ROUND, APPROVALS, THRESHOLD, SILENT], [];
    /// A workflow stage was awarded.
    StageStarted = "stage-started", Requester, [STAGE, CAPABILITY, PROVIDER, TASK, AWARD], [];
    /// A workflow stage finished.
    StageDone = "stage-done", Requester,
        [STAGE, CAPABILITY, PROVIDER, TASK, COST, OUTPUT_SHA256, RECEIPT], [];
    /// A workflow stage failed for good.
    StageFailed = "stage-failed", Requester, [STAGE, CAPABILITY, PROVIDER, TASK, REASON], [];
    /// The workflow finished: its final stage's output is the result.
    WorkflowDone = "workflow-done", Requester, [STAGES, COST, FINAL_STAGE, OUTPUT_SHA256], [];
    /// The workflow failed.
    WorkflowFailed = "workflow-failed", Requester, [STAGE, REASON], [];
    /// A parallel shard was awarded.
    ShardStarted = "shard-started", Requester, [SHARD, PROVIDER, TASK, AWARD], [];
    /// A parallel shard finished.
    ShardDone = "shard-done", Requester, [SHARD, PROVIDER, TASK, COST, OUTPUT_SHA256], [];
    /// A parallel shard failed (restarted when `restart` is `true`).
    ShardFailed = "shard-failed", Requester, [SHARD, REASON, ATTEMPT, RESTART], [];
    /// The reducer of a parallel run was awarded.
    ReduceStarted = "reduce-started", Requester, [SHARD, PROVIDER, TASK, AWARD], [];
    /// The reducer failed (restarted when `restart` is `true`).
    ReduceFailed = "reduce-failed", Requester, [SHARD, REASON, ATTEMPT, RESTART], [];
    /// The parallel run finished.
    ParallelDone = "parallel-done", Requester, [HOW, SHARDS, COST, OUTPUT_SHA256], [];
    /// The parallel run failed.
    ParallelFailed = "parallel-failed", Requester, [REASON], [];
    /// A sampled intent's audience brought no acceptable offer: the intent is published again
    /// to every provider (SPEC.md §4.2).
    AudienceWidened = "audience-widened", Requester, [WANTED, OF, ROUND], [];
    /// The coordination knobs of a run, recorded by its requester at the start ([`RunSpec`]).
    RunSpec = "run-spec", Requester,
        [WINDOW_MS, MIN_OFFERS, GRACE_MS, SILENCE_MS, RECEIPT_WAIT_MS, MAX_OFFERS,
         MAX_REPUBLISH, VOTE_ROUND_MS, MAX_VOTE_ROUNDS, LABEL, AVOID, ASKED], [];
}

impl EventType {
    /// The attributes of [`EventType::attr_keys`] that may be left out (e.g. the winner of a
    /// selection without acceptable offers); every other key is always written.
    pub fn optional_attrs(&self) -> &'static [&'static str] {
        match self {
            EventType::Selection => &[WINNER, WINNER_PROVIDER, WINNER_SCORE, SCORE, AVOIDED_OFFERS],
            EventType::PatternChosen => &[AVOID],
            EventType::Reassigned => &[TO_OFFER, TO_PROVIDER, TO_SCORE, TO, ROUND],
            EventType::IntentFailed => &[OFFERS_RECEIVED, AWARDS],
            EventType::RunSpec => &[SILENCE_MS, AVOID, ASKED],
            _ => &[],
        }
    }

    /// The attributes every event of this type carries.
    pub fn required_attrs(&self) -> impl Iterator<Item = &'static str> + '_ {
        let optional = self.optional_attrs();
        self.attr_keys()
            .iter()
            .copied()
            .filter(move |k| !optional.contains(k))
    }

    /// Whether `key` is an attribute this type may carry (always true for
    /// [`EventType::Other`]).
    pub fn allows_attr(&self, key: &str) -> bool {
        matches!(self, EventType::Other(_))
            || self.attr_keys().contains(&key)
            || self.attr_prefixes().iter().any(|p| key.starts_with(p))
    }

    /// Whether the type is known to this implementation.
    pub fn is_known(&self) -> bool {
        !matches!(self, EventType::Other(_))
    }

    /// Whether an event of this type, signed by the requester, ends a single-task run
    /// (contract-net, auction, consensus): `intent-failed` or `receipt-missing`.
    pub fn ends_task_run(&self) -> bool {
        matches!(self, EventType::IntentFailed | EventType::ReceiptMissing)
    }

    /// Whether an event of this type, signed by the requester, ends a composite run
    /// (workflow or parallel), as done or failed. (`intent-failed` about the root ends one
    /// too: see SPEC.md §8.3.)
    pub fn ends_composite_run(&self) -> bool {
        matches!(
            self,
            EventType::WorkflowDone
                | EventType::WorkflowFailed
                | EventType::ParallelDone
                | EventType::ParallelFailed
        )
    }

    /// Whether the type reports the failure of a whole run (`intent-failed`,
    /// `workflow-failed`, `parallel-failed`), as opposed to the failure of one part.
    pub fn is_run_failure(&self) -> bool {
        matches!(
            self,
            EventType::IntentFailed | EventType::WorkflowFailed | EventType::ParallelFailed
        )
    }

    /// Whether the type reports the successful end of a run (`receipt-missing`,
    /// `workflow-done`, `parallel-done`).
    pub fn is_run_done(&self) -> bool {
        matches!(
            self,
            EventType::ReceiptMissing | EventType::WorkflowDone | EventType::ParallelDone
        )
    }

    /// Whether the type belongs to a workflow (`stage-*`, `workflow-*`).
    pub fn is_workflow(&self) -> bool {
        matches!(
            self,
            EventType::StageStarted
                | EventType::StageDone
                | EventType::StageFailed
                | EventType::WorkflowDone
                | EventType::WorkflowFailed
        )
    }

    /// Whether the type belongs to a parallel run (`shard-*`, `reduce-*`, `parallel-*`).
    pub fn is_parallel(&self) -> bool {
        matches!(
            self,
            EventType::ShardStarted
                | EventType::ShardDone
                | EventType::ShardFailed
                | EventType::ReduceStarted
                | EventType::ReduceFailed
                | EventType::ParallelDone
                | EventType::ParallelFailed
        )
    }

    /// Whether the type is a consensus ballot event (`round-timeout`, `equivocation`,
    /// `consensus-rejected`).
    pub fn is_consensus(&self) -> bool {
        matches!(
            self,
            EventType::RoundTimeout | EventType::Equivocation | EventType::ConsensusRejected
        )
    }

    /// Whether the type is about one part of a composite run (a stage, shard or reducer):
    /// its `stage` or `shard` attribute names the part.
    pub fn is_part_event(&self) -> bool {
        matches!(
            self,
            EventType::StageStarted
                | EventType::StageDone
                | EventType::StageFailed
                | EventType::ShardStarted
                | EventType::ShardDone
                | EventType::ShardFailed
                | EventType::ReduceStarted
                | EventType::ReduceFailed
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(EventType::parse(s))
    }
}

impl From<&str> for EventType {
    fn from(s: &str) -> Self {
        EventType::parse(s)
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> Self {
        match t {
            EventType::Other(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl PartialEq<EventType> for str {
    fn eq(&self, other: &EventType) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<EventType> for String {
    fn eq(&self, other: &EventType) -> bool {
        self.as_str() == other.as_str()
    }
}

impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Event {
    /// The typed view of [`Event::event_type`].
    pub fn kind(&self) -> EventType {
        EventType::parse(&self.event_type)
    }

    /// Whether the event is of type `ty` (no allocation).
    pub fn is(&self, ty: &EventType) -> bool {
        self.event_type == ty.as_str()
    }

    /// The value of the first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The required attributes of its type this event lacks (see
    /// [`EventType::required_attrs`]).
    pub fn missing_attrs(&self) -> Vec<&'static str> {
        self.kind()
            .required_attrs()
            .filter(|k| self.attr(k).is_none())
            .collect()
    }

    /// The attribute keys this event carries that its type does not define (empty for
    /// events of a known type written by pvl, and always for [`EventType::Other`]).
    pub fn unknown_attrs(&self) -> Vec<&str> {
        let kind = self.kind();
        self.attrs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !kind.allows_attr(k))
            .collect()
    }
}

/// Attribute keys of pvl's events, and the fixed values some attributes take.
///
/// Keys are names (SPEC.md §4: at most 64 ASCII bytes of `[A-Za-z0-9._:/-]`). Keys ending in
/// `:` are prefixes completed by a variable part (`offer:` + the first 8 hex digits of an
/// offer id). Values are text; ids and keys are written as 64 lowercase hex digits, numbers in
/// decimal, booleans as `true` / `false`.
pub mod attr {
    /// `selection`: the selection strategy (`lowest-cost`, `weighted(...)`, ...).
    pub const STRATEGY: &str = "strategy";
    /// `selection`: how many offers were acceptable.
    pub const VALID_OFFERS: &str = "valid-offers";
    /// `selection`: `<page>/<pages>` when the ranking spans several events.
    pub const PAGE: &str = "page";
    /// `selection`: the winning offer's id.
    pub const WINNER: &str = "winner";
    /// `selection`: the winning offer's provider.
    pub const WINNER_PROVIDER: &str = "winner-provider";
    /// `selection`: the winning offer's score.
    pub const WINNER_SCORE: &str = "winner-score";
    /// `selection`: the winner's score as hand-built and older traces write it (pvl writes
    /// [`WINNER_SCORE`]); either marks a scored selection.
    pub const SCORE: &str = "score";
    /// `selection`: short ids of offers ranked last because their providers are avoided.
    pub const AVOIDED_OFFERS: &str = "avoided-offers";
    /// `selection`: prefix of `rejected:<reject code>` = how many offers were refused for it.
    pub const REJECTED_PREFIX: &str = "rejected:";
    /// `selection`: prefix of `offer:<id8>` = `rank=.. score=.. cost=.. eta_ms=..
    /// reliability_bps=.. claimed_bps=.. provider=<key8>`.
    pub const OFFER_PREFIX: &str = "offer:";
    /// `ranked-last`: how many offers were moved.
    pub const COUNT: &str = "count";
    /// `pattern-chosen`: the chosen pattern's name.
    pub const PATTERN: &str = "pattern";
    /// `pattern-chosen`: the reasons, joined with `; `.
    pub const REASONS: &str = "reasons";
    /// `pattern-chosen`, `run-spec`: providers to avoid, comma-separated hex keys.
    pub const AVOID: &str = "avoid";
    /// The providers a run's first intent was sent to directly (SPEC.md §4.3), as a list of
    /// keys.
    pub const ASKED: &str = "asked";
    /// Why something failed or was refused (a failure reason name, or free text for
    /// `award-refused` and `reassigned`).
    pub const REASON: &str = "reason";
    /// `reassigned`: the failed task.
    pub const FROM_TASK: &str = "from-task";
    /// `reassigned`: the failed task's provider.
    pub const FROM_PROVIDER: &str = "from-provider";
    /// `reassigned`: the offer awarded next.
    pub const TO_OFFER: &str = "to-offer";
    /// `reassigned`: that offer's provider.
    pub const TO_PROVIDER: &str = "to-provider";
    /// `reassigned`: that offer's score.
    pub const TO_SCORE: &str = "to-score";
    /// `reassigned`: [`REPUBLISH`] when the intent is re-published instead.
    pub const TO: &str = "to";
    /// A round number (`reassigned` re-publication, `audience-widened`, consensus rounds).
    pub const ROUND: &str = "round";
    /// `audience-widened`: how many offers the sampled intent's audience asked for.
    pub const WANTED: &str = "wanted";
    /// `audience-widened`: how many providers the audience was drawn from.
    pub const OF: &str = "of";
    /// A provider's public key.
    pub const PROVIDER: &str = "provider";
    /// `intent-failed`: offers received over all rounds.
    pub const OFFERS_RECEIVED: &str = "offers-received";
    /// `intent-failed`: awards made.
    pub const AWARDS: &str = "awards";
    /// `consensus-rejected`: the offer voted on.
    pub const OFFER: &str = "offer";
    /// Consensus: the committee threshold.
    pub const THRESHOLD: &str = "threshold";
    /// `consensus-rejected`: prefix of `member:<key8>` = `<stance>: <reason> (member <key>)`.
    pub const MEMBER_PREFIX: &str = "member:";
    /// `equivocation`: the member who equivocated.
    pub const MEMBER: &str = "member";
    /// `equivocation`: the first vote.
    pub const FIRST_VOTE: &str = "first-vote";
    /// `equivocation`: the second, different vote.
    pub const SECOND_VOTE: &str = "second-vote";
    /// `round-timeout`: approvals received.
    pub const APPROVALS: &str = "approvals";
    /// `round-timeout`: short keys of members who did not vote, comma-separated.
    pub const SILENT: &str = "silent";
    /// Workflow events: the stage name.
    pub const STAGE: &str = "stage";
    /// The capability of a stage.
    pub const CAPABILITY: &str = "capability";
    /// A task id.
    pub const TASK: &str = "task";
    /// `*-started`: the award count of the part so far.
    pub const AWARD: &str = "award";
    /// A cost (a part's, or a run's total).
    pub const COST: &str = "cost";
    /// The first 16 hex digits of an output's SHA-256, or [`NONE`].
    pub const OUTPUT_SHA256: &str = "output-sha256";
    /// `stage-done`: the receipt id, or [`MISSING`].
    pub const RECEIPT: &str = "receipt";
    /// `workflow-done`: how many stages ran.
    pub const STAGES: &str = "stages";
    /// `workflow-done`: the final stage's name.
    pub const FINAL_STAGE: &str = "final-stage";
    /// Parallel events: the part label (`shard-<i>` or the reducer's label).
    pub const SHARD: &str = "shard";
    /// `shard-failed` / `reduce-failed`: the attempt number.
    pub const ATTEMPT: &str = "attempt";
    /// `shard-failed` / `reduce-failed`: `true` when the part is restarted.
    pub const RESTART: &str = "restart";
    /// `parallel-done`: the reduction.
    pub const HOW: &str = "how";
    /// `parallel-done`: how many shards ran.
    pub const SHARDS: &str = "shards";

    /// `run-spec`: the offer window, ms.
    pub const WINDOW_MS: &str = "window_ms";
    /// `run-spec`: close the window once this many acceptable offers are held.
    pub const MIN_OFFERS: &str = "min_offers";
    /// `run-spec`: time added to the winner's eta before the task is late, ms.
    pub const GRACE_MS: &str = "grace_ms";
    /// `run-spec`: longest silence tolerated from the awarded provider, ms (absent: none).
    pub const SILENCE_MS: &str = "silence_ms";
    /// `run-spec`: how long to wait for a receipt after a successful done, ms.
    pub const RECEIPT_WAIT_MS: &str = "receipt_wait_ms";
    /// `run-spec`: most offers read per round.
    pub const MAX_OFFERS: &str = "max_offers";
    /// `run-spec`: how often the intent may be re-published.
    pub const MAX_REPUBLISH: &str = "max_republish";
    /// `run-spec`: how long one voting round lasts, ms.
    pub const VOTE_ROUND_MS: &str = "vote_round_ms";
    /// `run-spec`: how many voting rounds a ballot runs.
    pub const MAX_VOTE_ROUNDS: &str = "max_vote_rounds";
    /// `run-spec`: the task label of the run.
    pub const LABEL: &str = "label";

    /// Value of [`TO`] when a failed task's intent is re-published.
    pub const REPUBLISH: &str = "republish";
    /// Value of [`REASON`] in the `intent-failed` event of a node that restarted mid-run.
    pub const REQUESTER_RESTARTED: &str = "requester-restarted";
    /// Value of an id attribute that has nothing to name.
    pub const NONE: &str = "none";
    /// Value of [`RECEIPT`] when the receipt never came.
    pub const MISSING: &str = "missing";
    /// Value of a boolean attribute.
    pub const TRUE: &str = "true";
}

/// The `run-spec` event's attributes: the coordination knobs a requester used for a run.
///
/// Encoded in [`RunSpec::to_attrs`] order; `silence_ms` is omitted when `None` and `avoid`
/// when empty. [`RunSpec::from_attrs`] is total: a missing required key or a malformed value
/// is an error, unknown keys are ignored (a newer writer may add knobs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSpec {
    /// How long offers are collected, ms.
    pub window_ms: u64,
    /// Close the window once this many acceptable offers are held (0: wait for the timer).
    pub min_offers: u64,
    /// Time added to the winner's eta before the task counts as late, ms.
    pub grace_ms: u64,
    /// Longest silence tolerated from the awarded provider, ms.
    pub silence_ms: Option<u64>,
    /// How long to wait for the receipt after a successful done, ms.
    pub receipt_wait_ms: u64,
    /// Most offers read per collection round.
    pub max_offers: u64,
    /// How often the intent may be re-published.
    pub max_republish: u64,
    /// How long one voting round lasts, ms.
    pub vote_round_ms: u64,
    /// How many voting rounds a ballot runs.
    pub max_vote_rounds: u64,
    /// The task label of the run.
    pub label: String,
    /// Providers whose offers rank last.
    pub avoid: Vec<PublicKey>,
    /// The providers the run's first intent was sent to directly (SPEC.md §4.3); empty when
    /// it was gossiped.
    pub asked: Vec<PublicKey>,
}

impl RunSpec {
    /// The attributes of the `run-spec` event, in canonical order.
    pub fn to_attrs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![
            (WINDOW_MS.into(), self.window_ms.to_string()),
            (MIN_OFFERS.into(), self.min_offers.to_string()),
            (GRACE_MS.into(), self.grace_ms.to_string()),
        ];
        if let Some(s) = self.silence_ms {
            out.push((SILENCE_MS.into(), s.to_string()));
        }
        out.extend([
            (RECEIPT_WAIT_MS.into(), self.receipt_wait_ms.to_string()),
            (MAX_OFFERS.into(), self.max_offers.to_string()),
            (MAX_REPUBLISH.into(), self.max_republish.to_string()),
            (VOTE_ROUND_MS.into(), self.vote_round_ms.to_string()),
            (MAX_VOTE_ROUNDS.into(), self.max_vote_rounds.to_string()),
            (LABEL.into(), self.label.clone()),
        ]);
        if !self.avoid.is_empty() {
            let keys: Vec<String> = self.avoid.iter().map(PublicKey::to_string).collect();
            out.push((AVOID.into(), keys.join(",")));
        }
        if !self.asked.is_empty() {
            let keys: Vec<String> = self.asked.iter().map(PublicKey::to_string).collect();
            out.push((ASKED.into(), keys.join(",")));
        }
        out
    }

    /// Reads the knobs back from a `run-spec` event (see the type docs).
    pub fn from_event(event: &Event) -> Result<RunSpec, ProtocolError> {
        if !event.is(&EventType::RunSpec) {
            return Err(ProtocolError::field(
                "event.event_type",
                format!("expected run-spec, got `{}`", event.event_type),
            ));
        }
        Self::from_attrs(&event.attrs)
    }

    /// Reads the knobs from attributes (see the type docs).
    pub fn from_attrs(attrs: &[(String, String)]) -> Result<RunSpec, ProtocolError> {
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let number = |key: &'static str| -> Result<u64, ProtocolError> {
            let v = get(key).ok_or_else(|| ProtocolError::field(key, "missing"))?;
            parse_decimal(v)
                .ok_or_else(|| ProtocolError::field(key, format!("`{v}` is not a number")))
        };
        let silence_ms = match get(SILENCE_MS) {
            None => None,
            Some(v) => Some(parse_decimal(v).ok_or_else(|| {
                ProtocolError::field(SILENCE_MS, format!("`{v}` is not a number"))
            })?),
        };
        let keys = |key: &str| -> Result<Vec<PublicKey>, ProtocolError> {
            match get(key) {
                None | Some("") => Ok(Vec::new()),
                Some(list) => list.split(',').map(str::parse::<PublicKey>).collect(),
            }
        };
        let avoid = keys(AVOID)?;
        let asked = keys(ASKED)?;
        Ok(RunSpec {
            window_ms: number(WINDOW_MS)?,
            min_offers: number(MIN_OFFERS)?,
            grace_ms: number(GRACE_MS)?,
            silence_ms,
            receipt_wait_ms: number(RECEIPT_WAIT_MS)?,
            max_offers: number(MAX_OFFERS)?,
            max_republish: number(MAX_REPUBLISH)?,
            vote_round_ms: number(VOTE_ROUND_MS)?,
            max_vote_rounds: number(MAX_VOTE_ROUNDS)?,
            label: get(LABEL)
                .ok_or_else(|| ProtocolError::field(LABEL, "missing"))?
                .to_string(),
            avoid,
            asked,
        })
    }

    /// The `run-spec` event body about `intent` (the run's intent).
    pub fn to_event(&self, intent: crate::ObjectId) -> Event {
        Event {
            event_type: EventType::RunSpec.as_str().to_string(),
            about: vec![intent],
            message: format!(
                "run {}: window {} ms, grace {} ms, receipt wait {} ms",
                self.label, self.window_ms, self.grace_ms, self.receipt_wait_ms
            ),
            attrs: self.to_attrs(),
        }
    }
}

/// A canonical decimal: digits only, no sign, no leading zero (except `0` itself).
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_known_type_round_trips_through_its_text() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), *t);
            assert_eq!(t.to_string().parse::<EventType>().unwrap(), *t);
            assert!(t.is_known());
            for k in t.attr_keys() {
                assert!(crate::body::check_name(k, "attr").is_ok(), "{k}");
                assert!(t.allows_attr(k));
            }
        }
        let mut names: Vec<&str> = EventType::ALL.iter().map(EventType::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len(), "duplicate type text");
    }

    #[test]
    fn unknown_types_are_kept_verbatim() {
        let t = EventType::parse("note");
        assert_eq!(t, EventType::Other("note".into()));
        assert_eq!(t.as_str(), "note");
        assert!(t.allows_attr("anything"));
        assert_eq!(t.signed_by(), SignedBy::Anyone);
    }

    #[test]
    fn run_spec_round_trips_and_refuses_bad_numbers() {
        let spec = RunSpec {
            window_ms: 2000,
            min_offers: 1,
            grace_ms: 2000,
            silence_ms: Some(5000),
            receipt_wait_ms: 5000,
            max_offers: 1024,
            max_republish: 1,
            vote_round_ms: 3000,
            max_vote_rounds: 2,
            label: "main".into(),
            avoid: vec![PublicKey([7; 32])],
            asked: vec![PublicKey([8; 32]), PublicKey([9; 32])],
        };
        let event = spec.to_event(crate::ObjectId([1; 32]));
        assert!(event.unknown_attrs().is_empty());
        assert_eq!(RunSpec::from_event(&event).unwrap(), spec);
        let plain = RunSpec {
            silence_ms: None,
            avoid: vec![],
            asked: vec![],
            ..spec
        };
        assert_eq!(RunSpec::from_attrs(&plain.to_attrs()).unwrap(), plain);
        for bad in ["", "-1", "01", "1.5", "x"] {
            let mut attrs = plain.to_attrs();
            attrs[0].1 = bad.into();
            assert!(RunSpec::from_attrs(&attrs).is_err(), "{bad}");
        }
        assert!(RunSpec::from_attrs(&[]).is_err());
    }
}
