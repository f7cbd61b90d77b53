//! Analysis of one trace: which pattern ran, who did what, where the time went.
//!
//! Everything here is a pure function of the trace's objects ([`analyse`]), so it works on a
//! trace read from the store and on a verified offline bundle alike.
//!
//! # Pattern detection rules (from the graph's shape, first match wins)
//!
//! 1. **consensus**: the trace holds a `Proposal`, `Vote` or `QuorumCert`, or a `TaskStart`
//!    embeds a quorum certificate (a committee approved before execution).
//! 2. **workflow**: two or more tasks, and at least one task's `TaskStart` (directly or through
//!    a sub-intent) descends from the `TaskDone` or `Receipt` of another task: stages run one
//!    after the other, each waiting for the previous one's result.
//! 3. **parallel**: two or more tasks and none descends from another's completion: shards run
//!    side by side (labels such as `shard-0` are typical but not required).
//! 4. **auction**: at most one task, at least two offers from distinct providers competed, and
//!    the award was made on an explicit objective: a `selection` event carrying a `score`
//!    attribute, or the root intent asks for a weighted strategy. (An auction and a
//!    contract-net have the same graph shape; the score is what tells them apart.)
//! 5. **contract-net**: at most one task (or none yet) after at least one offer.
//! 6. **unknown**: nothing above applies (e.g. a lone intent without offers).
//!
//! # Timing
//!
//! A task's duration is `finished_at_ms - started_at_ms` from its receipt (preferred) or
//! `TaskDone`; a task without either is still running and has no duration.
//!
//! The critical path ends at the latest object of the trace and walks back, at each step, to
//! the parent with the latest timestamp: the input that arrived last is the one that gated the
//! object. (Every path to a node spans the same wall-clock time, so "longest" means "the chain
//! of last-arriving causes".) The bottleneck is the task on the critical path with the longest
//! duration, or the longest task overall if none is on it.

use std::collections::{BTreeMap, HashMap, HashSet};

use pvl_protocol::{
    Body, Kind, ObjectId, PatternHint, PublicKey, SignedObject, Strategy, TaskStatus, TraceId,
};
use serde::Serialize;

/// A coordination pattern, as detected from a trace's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Offers, award to the best, progress, done, receipt.
    ContractNet,
    /// Contract-net with an explicit scored selection among competing offers.
    Auction,
    /// Sequential stages, each waiting for the previous one.
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
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a trace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    /// No task has been awarded yet.
    Open,
    /// At least one task was awarded and not every task has finished.
    Awarded,
    /// Every awarded task finished successfully.
    Done,
    /// At least one task finished with a failure.
    Failed,
}

/// One task (a `TaskStart`) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// The task id (id of the `TaskStart`).
    pub task: ObjectId,
    /// The task label, e.g. `main`, `shard-2`, `stage:resize`.
    pub label: String,
    /// Who executes it.
    pub provider: PublicKey,
    /// Who awarded it.
    pub requester: PublicKey,
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

/// Everything [`analyse`] finds out about a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// The trace.
    pub trace: TraceId,
    /// The pattern detected from the shape (see the module docs for the rules).
    pub pattern: Pattern,
    /// The pattern the root intent asked for, if the root is an intent.
    pub hint: Option<PatternHint>,
    /// The capability of the root intent.
    pub capability: Option<String>,
    /// Where the trace stands.
    pub status: TraceStatus,
    /// Number of objects analysed.
    pub objects: usize,
    /// Every task, in award order.
    pub tasks: Vec<TaskInfo>,
    /// Tasks per provider.
    pub tasks_per_agent: Vec<AgentTasks>,
    /// The critical path.
    pub critical_path: CriticalPath,
    /// The slowest task on the critical path (or overall).
    pub bottleneck: Option<TaskInfo>,
    /// Offer response latencies, in offer order.
    pub offer_latencies: Vec<OfferLatency>,
}

fn task_of(body: &Body) -> Option<ObjectId> {
    match body {
        Body::TaskProgress(p) => Some(p.task),
        Body::TaskDone(d) => Some(d.task),
        Body::Receipt(r) => Some(r.task),
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
        Body::Reject(r) => format!("{:?}", r.code),
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

/// Analyses one trace's objects (any order; objects of other traces are ignored only if
/// `objects` is filtered by the caller: all are taken as one trace).
pub fn analyse(objects: &[SignedObject]) -> Analysis {
    let by_id: HashMap<ObjectId, &SignedObject> = objects.iter().map(|o| (o.id(), o)).collect();
    let mut sorted: Vec<&SignedObject> = objects.iter().collect();
    sorted.sort_by_key(|o| (o.timestamp_ms(), o.id()));
    let root = sorted
        .iter()
        .find(|o| o.is_root())
        .or_else(|| sorted.first())
        .copied();
    let trace = root.map(|r| r.trace_id()).unwrap_or(ObjectId([0; 32]));
    let root_intent = root.and_then(|r| match r.body() {
        Body::Intent(i) => Some(i),
        _ => None,
    });

    let critical_path = critical_path(&sorted, &by_id);
    let on_path: HashSet<ObjectId> = critical_path.steps.iter().map(|s| s.id).collect();

    // Tasks.
    let mut tasks: Vec<TaskInfo> = Vec::new();
    let mut task_index: HashMap<ObjectId, usize> = HashMap::new();
    for o in &sorted {
        if let Body::TaskStart(s) = o.body() {
            let capability = by_id
                .get(&s.offer)
                .and_then(|offer| match offer.body() {
                    Body::Offer(of) => by_id.get(&of.intent),
                    _ => None,
                })
                .and_then(|i| match i.body() {
                    Body::Intent(i) => Some(i.capability.clone()),
                    _ => None,
                })
                .or_else(|| root_intent.map(|i| i.capability.clone()));
            task_index.insert(o.id(), tasks.len());
            tasks.push(TaskInfo {
                task: o.id(),
                label: s.label.clone(),
                provider: s.provider,
                requester: o.signer(),
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
    for o in &sorted {
        let Some(task) = task_of(o.body()) else {
            continue;
        };
        let Some(info) = task_index.get(&task).and_then(|&i| tasks.get_mut(i)) else {
            continue;
        };
        if on_path.contains(&o.id()) {
            info.on_critical_path = true;
        }
        let (status, started, finished) = match o.body() {
            Body::TaskDone(d) if info.receipt.is_none() => {
                (&d.status, d.started_at_ms, d.finished_at_ms)
            }
            Body::Receipt(r) => {
                info.receipt = Some(o.id());
                info.countersigned = o.is_countersigned();
                (&r.status, r.started_at_ms, r.finished_at_ms)
            }
            _ => continue,
        };
        info.started_at_ms = Some(started);
        info.finished_at_ms = Some(finished);
        info.ok = Some(status.is_ok());
        info.failure = match status {
            TaskStatus::Ok => None,
            TaskStatus::Failed(r) => Some(r.clone()),
        };
    }

    let status = if tasks.iter().any(|t| t.ok == Some(false)) {
        TraceStatus::Failed
    } else if tasks.is_empty() {
        TraceStatus::Open
    } else if tasks.iter().all(|t| t.ok == Some(true)) {
        TraceStatus::Done
    } else {
        TraceStatus::Awarded
    };

    let mut per_agent: BTreeMap<PublicKey, AgentTasks> = BTreeMap::new();
    for t in &tasks {
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

    let offer_latencies: Vec<OfferLatency> = sorted
        .iter()
        .filter_map(|o| match o.body() {
            Body::Offer(of) => Some(OfferLatency {
                offer: o.id(),
                provider: o.signer(),
                intent: of.intent,
                latency_ms: by_id
                    .get(&of.intent)
                    .map(|i| o.timestamp_ms().saturating_sub(i.timestamp_ms()))
                    .unwrap_or(0),
            }),
            _ => None,
        })
        .collect();

    let pattern = detect_pattern(&sorted, &by_id, &tasks, root_intent);

    let bottleneck = tasks
        .iter()
        .filter(|t| t.on_critical_path && t.duration_ms().is_some())
        .max_by_key(|t| t.duration_ms())
        .or_else(|| tasks.iter().max_by_key(|t| t.duration_ms()))
        .filter(|t| t.duration_ms().is_some())
        .cloned();

    Analysis {
        trace,
        pattern,
        hint: root_intent.map(|i| i.pattern),
        capability: root_intent.map(|i| i.capability.clone()),
        status,
        objects: objects.len(),
        tasks,
        tasks_per_agent: per_agent.into_values().collect(),
        critical_path,
        bottleneck,
        offer_latencies,
    }
}

fn critical_path(
    sorted: &[&SignedObject],
    by_id: &HashMap<ObjectId, &SignedObject>,
) -> CriticalPath {
    let Some(last) = sorted.last() else {
        return CriticalPath::default();
    };
    let mut chain = vec![*last];
    let mut seen = HashSet::from([last.id()]);
    let mut current = *last;
    while let Some(parent) = current
        .parents()
        .iter()
        .filter_map(|p| by_id.get(p))
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

fn detect_pattern(
    sorted: &[&SignedObject],
    by_id: &HashMap<ObjectId, &SignedObject>,
    tasks: &[TaskInfo],
    root_intent: Option<&pvl_protocol::Intent>,
) -> Pattern {
    let consensus = sorted.iter().any(|o| match o.body() {
        Body::Proposal(_) | Body::Vote(_) | Body::QuorumCert(_) => true,
        Body::TaskStart(s) => s.quorum.is_some(),
        _ => false,
    });
    if consensus {
        return Pattern::Consensus;
    }
    if tasks.len() >= 2 {
        // Completions (done or receipt) by task.
        let completion_task: HashMap<ObjectId, ObjectId> = sorted
            .iter()
            .filter(|o| matches!(o.kind(), Kind::TaskDone | Kind::Receipt))
            .filter_map(|o| task_of(o.body()).map(|t| (o.id(), t)))
            .collect();
        let sequential = tasks.iter().any(|t| {
            by_id.get(&t.task).is_some_and(|start| {
                ancestors(start, by_id)
                    .iter()
                    .any(|a| completion_task.get(a).is_some_and(|other| *other != t.task))
            })
        });
        return if sequential {
            Pattern::Workflow
        } else {
            Pattern::Parallel
        };
    }
    let offers: Vec<&SignedObject> = sorted
        .iter()
        .filter(|o| o.kind() == Kind::Offer)
        .copied()
        .collect();
    if offers.is_empty() {
        return if tasks.is_empty() {
            Pattern::Unknown
        } else {
            Pattern::ContractNet
        };
    }
    let providers: HashSet<PublicKey> = offers.iter().map(|o| o.signer()).collect();
    let scored_event = sorted.iter().any(|o| match o.body() {
        Body::Event(e) => e.event_type == "selection" && e.attrs.iter().any(|(k, _)| k == "score"),
        _ => false,
    });
    let weighted = root_intent.is_some_and(|i| matches!(i.strategy, Strategy::Weighted(_)));
    if providers.len() >= 2 && (scored_event || weighted) {
        Pattern::Auction
    } else {
        Pattern::ContractNet
    }
}
