//! Analysis of one trace: which pattern ran, who did what, where the time went, how it ended.
//!
//! Everything here is a pure function of the trace's objects ([`analyse`]), so it works on a
//! trace read from the store and on a verified offline bundle alike. Objects are read in
//! **causal order** (a topological order of the parent links, ties broken by timestamp): "the
//! last thing that happened to a part" is decided by causality first and clocks second, so a
//! provider whose clock runs ahead cannot reorder a requester's decisions.
//!
//! # Pattern detection (first match wins)
//!
//! What the requester said is authoritative; the graph's shape is the fallback.
//!
//! | # | rule | pattern |
//! |---|---|---|
//! | 1 | the root intent's pattern hint is `workflow`, `parallel` or `consensus` | that pattern |
//! | 2 | a `pattern-chosen` event (adaptive choice) names `workflow`, `parallel` or `consensus` | that pattern |
//! | 3 | a `stage-*` or `workflow-*` event | workflow |
//! | 4 | a `shard-*`, `reduce-*` or `parallel-*` event | parallel |
//! | 5 | a `Proposal`, `Vote` or `QuorumCert`, a `TaskStart` embedding a certificate, or a `round-timeout` / `equivocation` / `consensus-rejected` event | consensus |
//! | 6 | two or more parts (distinct task labels), one part's award descending from another part's `TaskDone` / `Receipt` | workflow |
//! | 7 | two or more parts, none waiting for another | parallel |
//! | 8 | offers from two or more providers and an explicit objective: root hint or adaptive choice `auction`, a weighted strategy, or a `selection` event with a `score` attribute or a `weighted…` `strategy` | auction |
//! | 9 | at least one offer or one task | contract-net |
//! | 10 | nothing above | unknown |
//!
//! A **part** is everything awarded under one `TaskStart` label: a workflow stage, a parallel
//! shard, the reducer, or the single task of a contract-net. Re-awards (`reassigned`) and
//! re-published or restarted intents of a part keep its label, so they are attempts of one
//! part, not new parts.
//!
//! # Status rules ([`TraceStatus`])
//!
//! Only events signed by the **requester** (the root intent's signer) end a trace.
//!
//! * **Failed**: a `workflow-failed` or `parallel-failed` event; an `intent-failed` event
//!   (for a workflow or parallel run: one about the root intent, e.g. reason
//!   `requester-restarted`; a sub-intent's `intent-failed` is handled by the run, which
//!   restarts the part or records `*-failed`).
//! * **Done**: a `workflow-done` / `parallel-done` event (workflow, parallel); for the
//!   contract-net family a `receipt-missing` event, or else every part ended successfully
//!   (its last award finished ok: `TaskDone` ok or an ok receipt).
//! * Without an ending event, parts decide (contract-net family, and hand-built composites
//!   without composite events): any part failed for good → Failed (a failed task followed by
//!   `reassigned` or a restart is not a failure of its part); every part ok → Done; some
//!   award → **Awarded**; none → **Open**. A workflow or parallel run that has recorded its
//!   own events but no ending yet is Awarded (or Open before its first award).
//!
//! # Timing
//!
//! A task's duration is `finished_at_ms - started_at_ms` from its receipt (preferred) or
//! `TaskDone` (the receipt / done / offer rule of SPEC.md §10, [`pvl_protocol::Settlement`]); a task without either is still running and has no duration. A part's timing
//! ([`PartTiming`]) adds the coordination overhead: `waited_ms` from its first (sub-)intent
//! to its first award (offer window, selection, committee), and `elapsed_ms` from that intent
//! to the end of its last attempt.
//!
//! The critical path ends at the latest object of the trace and walks back, at each step, to
//! the parent with the latest timestamp: the input that arrived last is the one that gated the
//! object. (Every path to a node spans the same wall-clock time, so "longest" means "the chain
//! of last-arriving causes".) Each step names the part it belongs to. The bottleneck is the
//! task on the critical path with the longest duration, or the longest task overall if none
//! is on it; its `label` is the stage or shard.
//!
//! # Consensus rounds
//!
//! Every `Proposal` (also those only embedded in a quorum certificate) is one round
//! ([`ConsensusRound`]): the votes for it, its decision (a `QuorumCert` → approved, a
//! `consensus-rejected` event → rejected, a `round-timeout` event → timed out), the latency
//! from proposal to decision and the members who signed two different votes.

mod consensus;
mod parts;
mod status;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use pvl_protocol::{
    Body, Event, EventType, Intent, Kind, ObjectId, PatternHint, PublicKey, SignedObject, Strategy,
    TaskStatus, TraceId, attr,
};
use serde::Serialize;

pub use consensus::{ConsensusRound, RoundOutcome, RoundVote};
pub use parts::{PartKind, PartTiming};
pub use status::TraceFailure;

/// A coordination pattern, as detected from a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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
    /// The name used in JSON and logs.
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

    /// Whether the pattern is a composite of sub-intents (workflow, parallel).
    pub fn is_composite(self) -> bool {
        matches!(self, Pattern::Workflow | Pattern::Parallel)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a trace stands (rules in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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

/// One task (a `TaskStart`) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// The task id (id of the `TaskStart`).
    pub task: ObjectId,
    /// The task label: the part it belongs to, e.g. `main`, `shard-2`, a stage name.
    pub label: String,
    /// Who executes it.
    pub provider: PublicKey,
    /// Who awarded it.
    pub requester: PublicKey,
    /// The intent the awarded offer answers, when the offer is in the trace.
    pub intent: Option<ObjectId>,
    /// The capability asked for, when the intent is known.
    pub capability: Option<String>,
    /// When the award was signed, unix ms.
    pub awarded_at_ms: u64,
    /// The deadline stated in the award.
    pub deadline_ms: Option<u64>,
    /// When execution started (from the done report or receipt).
    pub started_at_ms: Option<u64>,
    /// When execution finished.
    pub finished_at_ms: Option<u64>,
    /// `Some(true)` succeeded, `Some(false)` failed, `None` not finished.
    pub ok: Option<bool>,
    /// The failure reason, for a failed task.
    pub failure: Option<String>,
    /// The receipt, if any.
    pub receipt: Option<ObjectId>,
    /// Whether the receipt is countersigned by the requester.
    pub countersigned: bool,
    /// Whether the task lies on the trace's critical path.
    pub on_critical_path: bool,
}

impl TaskInfo {
    /// Execution time in ms, for a finished task.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_at_ms?.saturating_sub(self.started_at_ms?))
    }

    /// Whether the task finished by its deadline (`None` without deadline or not finished).
    pub fn on_time(&self) -> Option<bool> {
        Some(self.finished_at_ms? <= self.deadline_ms?)
    }
}

/// Tasks handled by one provider in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentTasks {
    /// The provider.
    pub provider: PublicKey,
    /// Tasks awarded to it.
    pub awarded: usize,
    /// Of those, finished successfully.
    pub succeeded: usize,
    /// Of those, failed.
    pub failed: usize,
}

/// One step of the critical path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStep {
    /// The object.
    pub id: ObjectId,
    /// Its kind.
    pub kind: Kind,
    /// A short human label (task label, capability, event type).
    pub label: String,
    /// The part (stage, shard, task label) the object belongs to, if any.
    pub part: Option<String>,
    /// Its timestamp, unix ms.
    pub at_ms: u64,
    /// Time since the previous step (0 for the first).
    pub since_previous_ms: u64,
}

/// The chain of last-arriving causes from the trace's start to its latest object.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CriticalPath {
    /// Steps, oldest first.
    pub steps: Vec<PathStep>,
    /// Time from the first to the last step, ms.
    pub total_ms: u64,
}

/// How long a provider took to answer an intent with an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferLatency {
    /// The offer.
    pub offer: ObjectId,
    /// Who offered.
    pub provider: PublicKey,
    /// The intent answered.
    pub intent: ObjectId,
    /// Offer timestamp minus intent timestamp, ms (0 if the clocks disagree).
    pub latency_ms: u64,
}

/// The pattern an adaptive requester chose, from its `pattern-chosen` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdaptiveChoice {
    /// The chosen pattern.
    pub pattern: PatternHint,
    /// Why, one reason per rule that fired (the event's `reasons`, split on `; `).
    pub reasons: Vec<String>,
    /// Providers avoided for a poor record (the event's `avoid`).
    pub avoid: Vec<PublicKey>,
    /// The `pattern-chosen` event.
    pub event: ObjectId,
    /// When the choice was made, unix ms.
    pub at_ms: u64,
}

/// Everything [`analyse`] finds out about a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// The trace.
    pub trace: TraceId,
    /// The pattern detected (see the module docs for the rules).
    pub pattern: Pattern,
    /// The pattern the root intent asked for, if the root is an intent.
    pub hint: Option<PatternHint>,
    /// The adaptive choice recorded in the trace, if any.
    pub chosen_by_adaptive: Option<AdaptiveChoice>,
    /// The capability of the root intent.
    pub capability: Option<String>,
    /// Where the trace stands.
    pub status: TraceStatus,
    /// Why the trace failed, for a failed trace.
    pub failure: Option<TraceFailure>,
    /// Number of objects analysed.
    pub objects: usize,
    /// Every task, in award order.
    pub tasks: Vec<TaskInfo>,
    /// Every part (stage, shard, reducer, task label), by first activity then label.
    pub parts: Vec<PartTiming>,
    /// Workflow stages in dependency (topological) order; empty for other patterns.
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
}

/// A read-only view of one trace's objects, shared by the analysis steps.
pub(crate) struct View<'a> {
    /// By timestamp, ties by id.
    pub(crate) by_time: Vec<&'a SignedObject>,
    /// Causal order: parents before children, ties by timestamp then id.
    pub(crate) causal: Vec<&'a SignedObject>,
    /// Position of each object in `causal`.
    pub(crate) order: HashMap<ObjectId, usize>,
    pub(crate) by_id: HashMap<ObjectId, &'a SignedObject>,
    pub(crate) root: Option<&'a SignedObject>,
    pub(crate) root_intent: Option<&'a Intent>,
    /// The root intent's signer (`None` without a stored root intent).
    pub(crate) requester: Option<PublicKey>,
}

impl<'a> View<'a> {
    pub(crate) fn new(objects: &'a [SignedObject]) -> Self {
        let by_id: HashMap<ObjectId, &SignedObject> = objects.iter().map(|o| (o.id(), o)).collect();
        let mut by_time: Vec<&SignedObject> = by_id.values().copied().collect();
        by_time.sort_by_key(|o| (o.timestamp_ms(), o.id()));
        let root = by_time
            .iter()
            .find(|o| o.is_root())
            .or_else(|| by_time.first())
            .copied();
        let root_intent = root.and_then(|r| intent_of(r));
        let requester = root.filter(|_| root_intent.is_some()).map(|r| r.signer());
        let causal = causal_order(&by_time, &by_id);
        let order = causal
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id(), i))
            .collect();
        View {
            by_time,
            causal,
            order,
            by_id,
            root,
            root_intent,
            requester,
        }
    }

    /// The root's id (the trace id when the root is stored).
    pub(crate) fn root_id(&self) -> Option<ObjectId> {
        self.root.map(SignedObject::id)
    }

    /// Whether `object` is signed by the requester (any signer when the root is missing).
    pub(crate) fn by_requester(&self, object: &SignedObject) -> bool {
        self.requester.is_none_or(|r| r == object.signer())
    }

    /// Causal position of `id` (objects not in the trace sort first).
    pub(crate) fn position(&self, id: &ObjectId) -> usize {
        self.order.get(id).copied().unwrap_or(0)
    }

    /// Events in causal order.
    pub(crate) fn events(&self) -> impl Iterator<Item = (&'a SignedObject, &'a Event)> + '_ {
        self.causal
            .iter()
            .filter_map(|o| event_of(o).map(|e| (*o, e)))
    }
}

/// Kahn's algorithm over the in-trace parent links; among ready objects the earliest
/// (timestamp, id) goes first. Objects in a (forged) cycle are appended by time.
pub(crate) fn causal_order<'a>(
    by_time: &[&'a SignedObject],
    by_id: &HashMap<ObjectId, &'a SignedObject>,
) -> Vec<&'a SignedObject> {
    let mut pending: HashMap<ObjectId, usize> = HashMap::new();
    let mut children: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for o in by_time {
        let parents: HashSet<&ObjectId> = o
            .parents()
            .iter()
            .filter(|p| by_id.contains_key(*p))
            .collect();
        pending.insert(o.id(), parents.len());
        for p in parents {
            children.entry(*p).or_default().push(o.id());
        }
    }
    let mut ready: BinaryHeap<Reverse<(u64, ObjectId)>> = by_time
        .iter()
        .filter(|o| pending.get(&o.id()) == Some(&0))
        .map(|o| Reverse((o.timestamp_ms(), o.id())))
        .collect();
    let mut out = Vec::with_capacity(by_time.len());
    let mut placed = HashSet::new();
    while let Some(Reverse((_, id))) = ready.pop() {
        let Some(object) = by_id.get(&id) else {
            continue;
        };
        placed.insert(id);
        out.push(*object);
        for child in children.get(&id).into_iter().flatten() {
            if let Some(n) = pending.get_mut(child) {
                *n = n.saturating_sub(1);
                if *n == 0
                    && let Some(c) = by_id.get(child)
                {
                    ready.push(Reverse((c.timestamp_ms(), *child)));
                }
            }
        }
    }
    out.extend(by_time.iter().filter(|o| !placed.contains(&o.id())));
    out
}

pub(crate) fn intent_of(object: &SignedObject) -> Option<&Intent> {
    match object.body() {
        Body::Intent(i) => Some(i),
        _ => None,
    }
}

pub(crate) fn event_of(object: &SignedObject) -> Option<&Event> {
    match object.body() {
        Body::Event(e) => Some(e),
        _ => None,
    }
}

fn short_label(object: &SignedObject) -> String {
    match object.body() {
        Body::Intent(i) => i.capability.clone(),
        Body::CapabilityAd(a) => a.capability.clone(),
        Body::TaskStart(s) => s.label.clone(),
        Body::Event(e) => e.event_type.clone(),
        Body::Offer(o) => format!("cost {}", o.cost),
        Body::TaskDone(d) => status_label(&d.status),
        Body::Receipt(r) => status_label(&r.status),
        Body::Vote(v) => if v.approve { "approve" } else { "reject" }.into(),
        Body::Reject(r) if r.more.is_empty() => format!("{:?}", r.code),
        Body::Reject(r) => format!("{:?} +{} more offers", r.code, r.more.len()),
        Body::Proposal(p) => format!("round {}", p.round),
        Body::QuorumCert(q) => format!("{} votes", q.votes.len()),
        Body::TaskProgress(p) => p.message.clone(),
    }
}

fn status_label(status: &TaskStatus) -> String {
    match status {
        TaskStatus::Ok => "ok".into(),
        TaskStatus::Failed(reason) => format!("failed: {reason}"),
    }
}

/// A human label for an object (used by the exports too).
pub(crate) fn label_of(object: &SignedObject) -> String {
    short_label(object)
}

/// How the exports group objects: the parts (when there are two or more, or the root asks
/// for a workflow or parallel run) and the consensus objects.
pub(crate) struct Groups {
    /// `(part label, objects)` in part order.
    pub(crate) parts: Vec<(String, Vec<ObjectId>)>,
    /// Proposals, votes, certificates and consensus events.
    pub(crate) consensus: Vec<ObjectId>,
}

/// Groups `objects` for the exports (see [`Groups`]).
pub(crate) fn groups(objects: &[SignedObject]) -> Groups {
    let view = View::new(objects);
    let tasks = collect_tasks(&view, &HashSet::new());
    let built = parts::build(&view, &tasks);
    let consensus: Vec<ObjectId> = view
        .by_time
        .iter()
        .filter(|o| consensus::is_consensus_object(o))
        .map(|o| o.id())
        .collect();
    let in_consensus: HashSet<ObjectId> = consensus.iter().copied().collect();
    let root = view.root_id();
    let composite = view
        .root_intent
        .is_some_and(|i| matches!(i.pattern, PatternHint::Workflow | PatternHint::Parallel));
    let parts = if built.parts.len() >= 2 || (composite && !built.parts.is_empty()) {
        let mut members: HashMap<&str, Vec<ObjectId>> = HashMap::new();
        for o in &view.by_time {
            let id = o.id();
            if Some(id) == root || in_consensus.contains(&id) {
                continue;
            }
            if let Some(label) = built.part_of.get(&id) {
                members.entry(label.as_str()).or_default().push(id);
            }
        }
        built
            .parts
            .iter()
            .map(|p| {
                let ids = members.remove(p.label.as_str()).unwrap_or_default();
                (p.label.clone(), ids)
            })
            .collect()
    } else {
        Vec::new()
    };
    Groups { parts, consensus }
}

/// Analyses one trace's objects (any order; all are taken as one trace: filter objects of
/// other traces out first). Duplicates (same id) are analysed once but counted in `objects`.
pub fn analyse(objects: &[SignedObject]) -> Analysis {
    let view = View::new(objects);
    let critical_path = critical_path(&view);
    let on_path: HashSet<ObjectId> = critical_path.steps.iter().map(|s| s.id).collect();
    let tasks = collect_tasks(&view, &on_path);
    let built = parts::build(&view, &tasks);
    let chosen_by_adaptive = adaptive_choice(&view);
    let pattern = detect_pattern(&view, &built.parts, chosen_by_adaptive.as_ref());
    let mut part_list = built.parts;
    parts::classify(&view, pattern, &mut part_list);
    let stages_in_order = if pattern == Pattern::Workflow {
        parts::topological(&part_list)
    } else {
        Vec::new()
    };
    let (status, failure) = status::status(&view, pattern, &part_list);
    let critical_path = label_path(critical_path, &built.part_of);
    let bottleneck = tasks
        .iter()
        .filter(|t| t.on_critical_path && t.duration_ms().is_some())
        .max_by_key(|t| t.duration_ms())
        .or_else(|| tasks.iter().max_by_key(|t| t.duration_ms()))
        .filter(|t| t.duration_ms().is_some())
        .cloned();
    Analysis {
        trace: view.root.map(|r| r.trace_id()).unwrap_or(ObjectId([0; 32])),
        pattern,
        hint: view.root_intent.map(|i| i.pattern),
        chosen_by_adaptive,
        capability: view.root_intent.map(|i| i.capability.clone()),
        status,
        failure,
        objects: objects.len(),
        tasks_per_agent: tasks_per_agent(&tasks),
        offer_latencies: offer_latencies(&view),
        rounds: consensus::rounds(&view),
        tasks,
        parts: part_list,
        stages_in_order,
        critical_path,
        bottleneck,
    }
}

/// Every `TaskStart`, in award order, with what became of it.
fn collect_tasks(view: &View<'_>, on_path: &HashSet<ObjectId>) -> Vec<TaskInfo> {
    let mut tasks: Vec<TaskInfo> = Vec::new();
    let mut task_index: HashMap<ObjectId, usize> = HashMap::new();
    for o in &view.by_time {
        if let Body::TaskStart(s) = o.body() {
            let intent = view
                .by_id
                .get(&s.offer)
                .and_then(|offer| match offer.body() {
                    Body::Offer(of) => Some(of.intent),
                    _ => None,
                });
            let capability = intent
                .and_then(|i| view.by_id.get(&i))
                .and_then(|i| intent_of(i))
                .map(|i| i.capability.clone())
                .or_else(|| view.root_intent.map(|i| i.capability.clone()));
            task_index.insert(o.id(), tasks.len());
            tasks.push(TaskInfo {
                task: o.id(),
                label: s.label.clone(),
                provider: s.provider,
                requester: o.signer(),
                intent,
                capability,
                awarded_at_ms: o.timestamp_ms(),
                deadline_ms: s.deadline_ms,
                started_at_ms: None,
                finished_at_ms: None,
                ok: None,
                failure: None,
                receipt: None,
                countersigned: false,
                on_critical_path: on_path.contains(&o.id()),
            });
        }
    }
    for o in &view.by_time {
        let Some(task) = o.body().task() else {
            continue;
        };
        let Some(info) = task_index.get(&task).and_then(|&i| tasks.get_mut(i)) else {
            continue;
        };
        if on_path.contains(&o.id()) {
            info.on_critical_path = true;
        }
        record_finish(info, o);
    }
    tasks
}

/// Takes the timings and status of a `TaskDone` (unless a receipt was seen) or a receipt.
fn record_finish(info: &mut TaskInfo, o: &SignedObject) {
    let (status, started, finished) = match o.body() {
        Body::TaskDone(d) if info.receipt.is_none() => {
            (&d.status, d.started_at_ms, d.finished_at_ms)
        }
        Body::Receipt(r) => {
            info.receipt = Some(o.id());
            info.countersigned = o.is_countersigned();
            (&r.status, r.started_at_ms, r.finished_at_ms)
        }
        _ => return,
    };
    info.started_at_ms = Some(started);
    info.finished_at_ms = Some(finished);
    info.ok = Some(status.is_ok());
    info.failure = match status {
        TaskStatus::Ok => None,
        TaskStatus::Failed(r) => Some(r.clone()),
    };
}

fn tasks_per_agent(tasks: &[TaskInfo]) -> Vec<AgentTasks> {
    let mut per_agent: BTreeMap<PublicKey, AgentTasks> = BTreeMap::new();
    for t in tasks {
        let a = per_agent.entry(t.provider).or_insert(AgentTasks {
            provider: t.provider,
            awarded: 0,
            succeeded: 0,
            failed: 0,
        });
        a.awarded += 1;
        match t.ok {
            Some(true) => a.succeeded += 1,
            Some(false) => a.failed += 1,
            None => {}
        }
    }
    per_agent.into_values().collect()
}

fn offer_latencies(view: &View<'_>) -> Vec<OfferLatency> {
    view.by_time
        .iter()
        .filter_map(|o| match o.body() {
            Body::Offer(of) => Some(OfferLatency {
                offer: o.id(),
                provider: o.signer(),
                intent: of.intent,
                latency_ms: view
                    .by_id
                    .get(&of.intent)
                    .map(|i| o.timestamp_ms().saturating_sub(i.timestamp_ms()))
                    .unwrap_or(0),
            }),
            _ => None,
        })
        .collect()
}

/// The first `pattern-chosen` event of the requester whose `pattern` is a known pattern.
fn adaptive_choice(view: &View<'_>) -> Option<AdaptiveChoice> {
    view.events()
        .filter(|(o, e)| e.is(&EventType::PatternChosen) && view.by_requester(o))
        .find_map(|(o, e)| {
            let pattern = e.attr(attr::PATTERN)?.parse::<PatternHint>().ok()?;
            let reasons = e
                .attr(attr::REASONS)
                .map(|r| {
                    r.split("; ")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let avoid = e
                .attr(attr::AVOID)
                .map(|a| a.split(',').filter_map(|k| k.trim().parse().ok()).collect())
                .unwrap_or_default();
            Some(AdaptiveChoice {
                pattern,
                reasons,
                avoid,
                event: o.id(),
                at_ms: o.timestamp_ms(),
            })
        })
}

fn critical_path(view: &View<'_>) -> CriticalPath {
    let Some(last) = view.by_time.last() else {
        return CriticalPath::default();
    };
    let mut chain = vec![*last];
    let mut seen = HashSet::from([last.id()]);
    let mut current = *last;
    while let Some(parent) = current
        .parents()
        .iter()
        .filter_map(|p| view.by_id.get(p))
        .max_by_key(|p| (p.timestamp_ms(), p.id()))
    {
        if !seen.insert(parent.id()) {
            break;
        }
        chain.push(parent);
        current = parent;
    }
    chain.reverse();
    let first_at = chain.first().map(|o| o.timestamp_ms()).unwrap_or(0);
    let mut prev = first_at;
    let steps = chain
        .iter()
        .map(|o| {
            let step = PathStep {
                id: o.id(),
                kind: o.kind(),
                label: short_label(o),
                part: None,
                at_ms: o.timestamp_ms(),
                since_previous_ms: o.timestamp_ms().saturating_sub(prev),
            };
            prev = o.timestamp_ms();
            step
        })
        .collect();
    CriticalPath {
        steps,
        total_ms: last.timestamp_ms().saturating_sub(first_at),
    }
}

fn label_path(mut path: CriticalPath, part_of: &HashMap<ObjectId, String>) -> CriticalPath {
    for step in &mut path.steps {
        step.part = part_of.get(&step.id).cloned();
    }
    path
}

/// All ancestors of `start` inside the trace.
fn ancestors(start: &SignedObject, by_id: &HashMap<ObjectId, &SignedObject>) -> HashSet<ObjectId> {
    let mut seen = HashSet::new();
    let mut stack: Vec<ObjectId> = start.parents().to_vec();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(o) = by_id.get(&id) {
            stack.extend_from_slice(o.parents());
        }
    }
    seen
}

/// A composite or consensus pattern named by the requester (rules 1 and 2).
fn stated_pattern(hint: PatternHint) -> Option<Pattern> {
    match hint {
        PatternHint::Workflow => Some(Pattern::Workflow),
        PatternHint::Parallel => Some(Pattern::Parallel),
        PatternHint::Consensus => Some(Pattern::Consensus),
        _ => None,
    }
}

/// A pattern told by the events and objects of the trace (rules 3 to 5).
fn pattern_from_events(view: &View<'_>) -> Option<Pattern> {
    let types: HashSet<EventType> = view.events().map(|(_, e)| e.kind()).collect();
    if types.iter().any(EventType::is_workflow) {
        return Some(Pattern::Workflow);
    }
    if types.iter().any(EventType::is_parallel) {
        return Some(Pattern::Parallel);
    }
    view.by_time
        .iter()
        .any(|o| {
            consensus::is_consensus_object(o)
                || matches!(o.body(), Body::TaskStart(s) if s.quorum.is_some())
        })
        .then_some(Pattern::Consensus)
}

fn detect_pattern(
    view: &View<'_>,
    parts: &[PartTiming],
    adaptive: Option<&AdaptiveChoice>,
) -> Pattern {
    let stated = view
        .root_intent
        .and_then(|i| stated_pattern(i.pattern))
        .or_else(|| adaptive.and_then(|c| stated_pattern(c.pattern)))
        .or_else(|| pattern_from_events(view));
    if let Some(p) = stated {
        return p;
    }
    let awarded: Vec<&PartTiming> = parts.iter().filter(|p| p.awards > 0).collect();
    if awarded.len() >= 2 {
        return if parts_wait_for_each_other(view) {
            Pattern::Workflow
        } else {
            Pattern::Parallel
        };
    }
    let offers: Vec<&SignedObject> = view
        .by_time
        .iter()
        .filter(|o| o.kind() == Kind::Offer)
        .copied()
        .collect();
    if offers.is_empty() {
        return if awarded.is_empty() {
            Pattern::Unknown
        } else {
            Pattern::ContractNet
        };
    }
    let providers: HashSet<PublicKey> = offers.iter().map(|o| o.signer()).collect();
    if providers.len() >= 2 && explicit_objective(view, adaptive) {
        Pattern::Auction
    } else {
        Pattern::ContractNet
    }
}

/// Rule 6: some award descends from the completion of a task with another label.
fn parts_wait_for_each_other(view: &View<'_>) -> bool {
    let label_of_task: HashMap<ObjectId, &str> = view
        .by_time
        .iter()
        .filter_map(|o| match o.body() {
            Body::TaskStart(s) => Some((o.id(), s.label.as_str())),
            _ => None,
        })
        .collect();
    let completion_label: HashMap<ObjectId, &str> = view
        .by_time
        .iter()
        .filter(|o| matches!(o.kind(), Kind::TaskDone | Kind::Receipt))
        .filter_map(|o| {
            let task = o.body().task()?;
            Some((o.id(), *label_of_task.get(&task)?))
        })
        .collect();
    view.by_time.iter().any(|o| {
        let Body::TaskStart(s) = o.body() else {
            return false;
        };
        ancestors(o, &view.by_id)
            .iter()
            .any(|a| completion_label.get(a).is_some_and(|l| *l != s.label))
    })
}

/// Rule 8's explicit objective.
fn explicit_objective(view: &View<'_>, adaptive: Option<&AdaptiveChoice>) -> bool {
    let hinted = view
        .root_intent
        .is_some_and(|i| i.pattern == PatternHint::Auction)
        || adaptive.is_some_and(|c| c.pattern == PatternHint::Auction);
    let weighted = view
        .root_intent
        .is_some_and(|i| matches!(i.strategy, Strategy::Weighted(_)));
    let scored = view.events().any(|(_, e)| {
        e.is(&EventType::Selection)
            && (e.attr(attr::SCORE).is_some()
                || e.attr(attr::STRATEGY)
                    .is_some_and(|s| s.starts_with("weighted")))
    });
    hinted || weighted || scored
}
