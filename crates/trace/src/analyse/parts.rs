//! Parts: what was awarded under one `TaskStart` label (a stage, a shard, the reducer, the
//! task of a contract-net), which objects belong to it, and its timing and outcome.
//!
//! Objects are assigned to parts in causal order: a task by its label; its progress, done
//! and receipt by their task; an intent by the tasks answering it (or, for a restart or a
//! re-publication, by the intent or event it descends from); an offer by the task that
//! awarded it or its intent; a reject by its offer; a proposal by its subject, a vote by its
//! proposal; an event by its `stage` / `shard` attribute, else by what it is about, else by
//! its parents. The root intent and the run-level events (`workflow-*`, `parallel-*`,
//! `pattern-chosen`, an `intent-failed` about the root) belong to no part.

use std::collections::{HashMap, HashSet};

use pvl_protocol::{Body, Event, EventType, Kind, ObjectId, PublicKey, SignedObject, attr};
use serde::Serialize;

use super::{Pattern, TaskInfo, View};

/// What a part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// A workflow stage.
    Stage,
    /// A parallel shard.
    Shard,
    /// The reducer of a parallel run.
    Reduce,
    /// The task of a contract-net, auction or consensus round (or an unknown shape).
    Task,
}

/// One part and where its time went. Times are unix ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartTiming {
    /// The `TaskStart` label (the stage name, `shard-<i>`, `reduce`, `main`...).
    pub label: String,
    /// Stage, shard, reduce or task.
    pub kind: PartKind,
    /// The capability asked for.
    pub capability: Option<String>,
    /// The provider of the last award.
    pub provider: Option<PublicKey>,
    /// The last award (`TaskStart` id).
    pub task: Option<ObjectId>,
    /// The part's first intent (its sub-intent; the root intent for a contract-net).
    pub intent: Option<ObjectId>,
    /// When that intent was signed.
    pub opened_at_ms: Option<u64>,
    /// When the part was first awarded.
    pub awarded_at_ms: Option<u64>,
    /// When the last award started executing (from its done report or receipt).
    pub started_at_ms: Option<u64>,
    /// When the last award finished executing.
    pub finished_at_ms: Option<u64>,
    /// Execution time of the last award, ms.
    pub duration_ms: Option<u64>,
    /// From the first intent to the end of the last award, ms (coordination, failed
    /// attempts and execution).
    pub elapsed_ms: Option<u64>,
    /// Awards made (1 + re-awards and awards after restarts).
    pub awards: u32,
    /// `Some(true)` done, `Some(false)` failed for good, `None` still running.
    pub ok: Option<bool>,
    /// Why it failed, for a failed part.
    pub failure: Option<String>,
    /// Coordination overhead: from the first intent to the first award, ms.
    pub waited_ms: Option<u64>,
    /// Labels of the parts whose results it waited for (its intent's parents).
    pub depends_on: Vec<String>,
    /// Whether one of its tasks lies on the critical path.
    pub on_critical_path: bool,
}

/// The parts of a trace and the part of each object.
pub(crate) struct Built {
    /// Ordered by first activity, then label (numbers in labels compare as numbers).
    pub(crate) parts: Vec<PartTiming>,
    /// Object id → part label.
    pub(crate) part_of: HashMap<ObjectId, String>,
}

/// Whether an event type belongs to the run, not to one part.
fn is_run_type(t: &EventType) -> bool {
    t.ends_composite_run() || *t == EventType::PatternChosen
}

/// The part named by a stage/shard event (event types naming their part in a `stage` or
/// `shard` attribute: [`EventType::is_part_event`]).
fn named_part(event: &Event) -> Option<&str> {
    if !event.kind().is_part_event() {
        return None;
    }
    event.attr(attr::STAGE).or_else(|| event.attr(attr::SHARD))
}

/// Builds the parts of the trace from its tasks (kinds are set by [`classify`]).
pub(crate) fn build(view: &View<'_>, tasks: &[TaskInfo]) -> Built {
    let mut labels: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for t in tasks {
        if seen.insert(t.label.as_str()) {
            labels.push(t.label.clone());
        }
    }
    for (o, e) in view.events() {
        if let Some(label) = named_part(e)
            && view.by_requester(o)
            && seen.insert(label)
        {
            labels.push(label.to_string());
        }
    }
    let part_of = assign(view, tasks, &labels);
    let index = LabelIndex::new(view, tasks, &part_of);
    let completions = completions(view);
    let mut parts: Vec<PartTiming> = labels
        .iter()
        .map(|label| timing(view, label, &index, &part_of, &completions))
        .collect();
    parts.sort_by_key(|p| {
        (
            p.opened_at_ms.or(p.awarded_at_ms).unwrap_or(u64::MAX),
            natural(&p.label),
        )
    });
    Built { parts, part_of }
}

/// What [`timing`] needs per label, gathered in one pass over tasks, objects and events (so
/// that a trace with thousands of parts is analysed in linear time).
struct LabelIndex<'t, 'a> {
    tasks: HashMap<&'t str, Vec<&'t TaskInfo>>,
    intents: HashMap<String, HashSet<ObjectId>>,
    /// The requester's events that may change a part's outcome, by the labels they concern.
    events: HashMap<String, Vec<(&'a SignedObject, &'a Event)>>,
}

/// Whether an event type may change a part's outcome.
fn is_outcome_type(t: &EventType) -> bool {
    matches!(
        t,
        EventType::Reassigned | EventType::ReceiptMissing | EventType::IntentFailed
    )
}

impl<'t, 'a> LabelIndex<'t, 'a> {
    fn new(view: &View<'a>, tasks: &'t [TaskInfo], part_of: &HashMap<ObjectId, String>) -> Self {
        let mut by_label: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
        let mut intents: HashMap<String, HashSet<ObjectId>> = HashMap::new();
        let mut intent_labels: HashMap<ObjectId, HashSet<String>> = HashMap::new();
        for t in tasks {
            by_label.entry(t.label.as_str()).or_default().push(t);
            if let Some(i) = t.intent {
                intents.entry(t.label.clone()).or_default().insert(i);
                intent_labels.entry(i).or_default().insert(t.label.clone());
            }
        }
        for (id, label) in part_of {
            if view.by_id.get(id).is_some_and(|o| o.kind() == Kind::Intent) {
                intents.entry(label.clone()).or_default().insert(*id);
                intent_labels.entry(*id).or_default().insert(label.clone());
            }
        }
        let mut events: HashMap<String, Vec<(&SignedObject, &Event)>> = HashMap::new();
        for (o, e) in view.events().filter(|(o, _)| view.by_requester(o)) {
            let named = named_part(e);
            if named.is_none() && !is_outcome_type(&e.kind()) {
                continue;
            }
            let mut concerned: HashSet<String> = named.map(str::to_string).into_iter().collect();
            for a in &e.about {
                concerned.extend(part_of.get(a).cloned());
                concerned.extend(intent_labels.get(a).into_iter().flatten().cloned());
            }
            for label in concerned {
                events.entry(label).or_default().push((o, e));
            }
        }
        LabelIndex {
            tasks: by_label,
            intents,
            events,
        }
    }
}

/// `shard-10` after `shard-9`: the label split into text and a trailing number.
fn natural(label: &str) -> (String, u64, String) {
    let digits = label.chars().rev().take_while(char::is_ascii_digit).count();
    let (head, tail) = label.split_at(label.len() - digits);
    (
        head.to_string(),
        tail.parse().unwrap_or(0),
        label.to_string(),
    )
}

/// Done reports and receipts by task.
fn completions<'a>(view: &View<'a>) -> HashMap<ObjectId, Vec<&'a SignedObject>> {
    let mut out: HashMap<ObjectId, Vec<&SignedObject>> = HashMap::new();
    for o in &view.causal {
        if matches!(o.kind(), Kind::TaskDone | Kind::Receipt)
            && let Some(task) = o.body().task()
        {
            out.entry(task).or_default().push(*o);
        }
    }
    out
}

/// Whether an event belongs to the run as a whole.
fn is_run_event(view: &View<'_>, event: &Event) -> bool {
    let kind = event.kind();
    is_run_type(&kind)
        || (kind == EventType::IntentFailed
            && view.root_id().is_some_and(|r| event.about.contains(&r)))
}

/// Assigns objects to part labels (see the module docs).
fn assign(view: &View<'_>, tasks: &[TaskInfo], labels: &[String]) -> HashMap<ObjectId, String> {
    let root = view.root_id();
    let mut part_of: HashMap<ObjectId, String> = HashMap::new();
    let mut offer_label: HashMap<ObjectId, String> = HashMap::new();
    let mut root_labels: HashSet<&str> = HashSet::new();
    for t in tasks {
        part_of.insert(t.task, t.label.clone());
        if let Some(Body::TaskStart(s)) = view.by_id.get(&t.task).map(|o| o.body()) {
            offer_label.insert(s.offer, t.label.clone());
        }
        match t.intent {
            Some(i) if Some(i) == root => {
                root_labels.insert(t.label.as_str());
            }
            Some(i) => {
                part_of.entry(i).or_insert_with(|| t.label.clone());
            }
            None => {}
        }
    }
    // The root intent's offers belong to the one part answering it, if only one does.
    let root_label: Option<String> = match root_labels.iter().collect::<Vec<_>>().as_slice() {
        [only] => Some((**only).to_string()),
        _ => None,
    };
    for (o, e) in view.events() {
        let Some(label) = named_part(e).filter(|l| labels.iter().any(|x| x == l)) else {
            continue;
        };
        part_of.insert(o.id(), label.to_string());
        for p in o.parents() {
            let is_intent = view.by_id.get(p).is_some_and(|x| x.kind() == Kind::Intent);
            if is_intent && Some(*p) != root {
                part_of.entry(*p).or_insert_with(|| label.to_string());
            }
        }
    }
    for o in &view.causal {
        let id = o.id();
        if part_of.contains_key(&id) || Some(id) == root {
            continue;
        }
        let label = match o.body() {
            Body::Intent(_) => o
                .parents()
                .iter()
                .filter(|p| {
                    view.by_id
                        .get(*p)
                        .is_some_and(|x| matches!(x.kind(), Kind::Intent | Kind::Event))
                })
                .find_map(|p| part_of.get(p).cloned()),
            Body::Offer(of) => offer_label.get(&id).cloned().or_else(|| {
                if Some(of.intent) == root {
                    root_label.clone()
                } else {
                    part_of.get(&of.intent).cloned()
                }
            }),
            Body::Reject(r) => part_of.get(&r.offer).cloned(),
            Body::Proposal(p) => part_of.get(&p.subject).cloned(),
            Body::Vote(v) => part_of.get(&v.proposal).cloned(),
            Body::QuorumCert(q) => part_of.get(&q.proposal.id()).cloned(),
            Body::Event(e) if is_run_event(view, e) => None,
            Body::Event(e) => e
                .about
                .iter()
                .chain(o.parents())
                .find_map(|x| part_of.get(x).cloned()),
            body => body.task().and_then(|t| part_of.get(&t).cloned()),
        };
        if let Some(label) = label {
            part_of.insert(id, label);
        }
    }
    part_of
}

/// What the last signal about a part says.
enum Signal {
    Running,
    Ok,
    Failed(String),
}

/// The outcome of one part: the causally last of its awards, its last award's reports, its
/// (re-)intents and the requester's events about it.
struct Outcome<'v, 'a> {
    view: &'v View<'a>,
    best: Option<(usize, Signal)>,
}

impl Outcome<'_, '_> {
    fn see(&mut self, id: ObjectId, signal: Signal) {
        let pos = self.view.position(&id);
        if self.best.as_ref().is_none_or(|(p, _)| pos >= *p) {
            self.best = Some((pos, signal));
        }
    }

    /// `(ok, failure)`.
    fn result(self) -> (Option<bool>, Option<String>) {
        match self.best {
            Some((_, Signal::Ok)) => (Some(true), None),
            Some((_, Signal::Failed(why))) => (Some(false), Some(why)),
            Some((_, Signal::Running)) | None => (None, None),
        }
    }
}

/// The signal an event by the requester gives about the part `label`.
fn event_signal(
    event: &Event,
    label: &str,
    intents: &HashSet<ObjectId>,
    tasks: &HashSet<ObjectId>,
) -> Option<Signal> {
    let reason = || {
        event
            .attr(attr::REASON)
            .unwrap_or(event.event_type.as_str())
            .to_string()
    };
    let about_task = event.about.iter().any(|a| tasks.contains(a));
    match event.kind() {
        EventType::Reassigned if about_task => Some(Signal::Running),
        EventType::ReceiptMissing if about_task => Some(Signal::Ok),
        EventType::IntentFailed if event.about.iter().any(|a| intents.contains(a)) => {
            Some(Signal::Failed(reason()))
        }
        _ if named_part(event) != Some(label) => None,
        EventType::StageDone | EventType::ShardDone => Some(Signal::Ok),
        EventType::StageFailed => Some(Signal::Failed(reason())),
        EventType::ShardFailed | EventType::ReduceFailed
            if event.attr(attr::RESTART) == Some(attr::TRUE) =>
        {
            Some(Signal::Running)
        }
        EventType::ShardFailed | EventType::ReduceFailed => Some(Signal::Failed(reason())),
        _ => None,
    }
}

fn timing(
    view: &View<'_>,
    label: &str,
    index: &LabelIndex<'_, '_>,
    part_of: &HashMap<ObjectId, String>,
    completions: &HashMap<ObjectId, Vec<&SignedObject>>,
) -> PartTiming {
    let tasks: Vec<&TaskInfo> = index.tasks.get(label).cloned().unwrap_or_default();
    let task_ids: HashSet<ObjectId> = tasks.iter().map(|t| t.task).collect();
    let intents: HashSet<ObjectId> = index.intents.get(label).cloned().unwrap_or_default();
    let events = index
        .events
        .get(label)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let first_intent = intents
        .iter()
        .filter_map(|i| view.by_id.get(i))
        .min_by_key(|o| (o.timestamp_ms(), o.id()))
        .copied();
    let last = tasks.iter().max_by_key(|t| view.position(&t.task)).copied();

    let mut outcome = Outcome { view, best: None };
    for i in &intents {
        outcome.see(*i, Signal::Running);
    }
    for t in &tasks {
        outcome.see(t.task, Signal::Running);
    }
    for report in last
        .and_then(|t| completions.get(&t.task))
        .into_iter()
        .flatten()
    {
        let status = match report.body() {
            Body::TaskDone(d) => &d.status,
            Body::Receipt(r) => &r.status,
            _ => continue,
        };
        let signal = match status {
            pvl_protocol::TaskStatus::Ok => Signal::Ok,
            pvl_protocol::TaskStatus::Failed(why) => Signal::Failed(why.clone()),
        };
        outcome.see(report.id(), signal);
    }
    let mut named_capability = None;
    for (o, e) in events {
        if named_part(e) == Some(label) && named_capability.is_none() {
            named_capability = e.attr(attr::CAPABILITY).map(str::to_string);
        }
        if let Some(signal) = event_signal(e, label, &intents, &task_ids) {
            outcome.see(o.id(), signal);
        }
    }
    let (ok, failure) = outcome.result();

    let opened_at_ms = first_intent.map(|o| o.timestamp_ms());
    let awarded_at_ms = tasks.iter().map(|t| t.awarded_at_ms).min();
    let finished_at_ms = last.and_then(|t| t.finished_at_ms);
    let capability = last
        .and_then(|t| t.capability.clone())
        .or(named_capability)
        .or_else(|| {
            first_intent
                .and_then(super::intent_of)
                .map(|i| i.capability.clone())
        });
    PartTiming {
        label: label.to_string(),
        kind: PartKind::Task,
        capability,
        provider: last.map(|t| t.provider),
        task: last.map(|t| t.task),
        intent: first_intent.map(SignedObject::id),
        opened_at_ms,
        awarded_at_ms,
        started_at_ms: last.and_then(|t| t.started_at_ms),
        finished_at_ms,
        duration_ms: last.and_then(TaskInfo::duration_ms),
        elapsed_ms: finished_at_ms
            .zip(opened_at_ms)
            .map(|(f, o)| f.saturating_sub(o)),
        awards: u32::try_from(tasks.len()).unwrap_or(u32::MAX),
        ok,
        failure,
        waited_ms: awarded_at_ms
            .zip(opened_at_ms)
            .map(|(a, o)| a.saturating_sub(o)),
        depends_on: depends_on(view, label, &intents, part_of),
        on_critical_path: tasks.iter().any(|t| t.on_critical_path),
    }
}

/// Labels of the other parts whose objects are parents of the part's intents.
fn depends_on(
    view: &View<'_>,
    label: &str,
    intents: &HashSet<ObjectId>,
    part_of: &HashMap<ObjectId, String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut ordered: Vec<&SignedObject> = intents
        .iter()
        .filter_map(|i| view.by_id.get(i).copied())
        .collect();
    ordered.sort_by_key(|o| view.position(&o.id()));
    for intent in ordered {
        for p in intent.parents() {
            if let Some(l) = part_of.get(p)
                && l != label
                && !out.contains(l)
            {
                out.push(l.clone());
            }
        }
    }
    out
}

/// Sets each part's kind: from the stage/shard/reduce events naming it, else from the
/// pattern (`reduce` is the reducer of a parallel run).
pub(crate) fn classify(view: &View<'_>, pattern: Pattern, parts: &mut [PartTiming]) {
    let mut named: HashMap<String, PartKind> = HashMap::new();
    for (_, e) in view.events() {
        let Some(label) = named_part(e) else { continue };
        let kind = match e.kind() {
            EventType::StageStarted | EventType::StageDone | EventType::StageFailed => {
                PartKind::Stage
            }
            EventType::ShardStarted | EventType::ShardDone | EventType::ShardFailed => {
                PartKind::Shard
            }
            _ => PartKind::Reduce,
        };
        named.entry(label.to_string()).or_insert(kind);
    }
    for part in parts {
        part.kind = named.get(&part.label).copied().unwrap_or(match pattern {
            Pattern::Workflow => PartKind::Stage,
            Pattern::Parallel if part.label == pvl_protocol::vocab::REDUCE_LABEL => {
                PartKind::Reduce
            }
            Pattern::Parallel => PartKind::Shard,
            _ => PartKind::Task,
        });
    }
}

/// Stage labels in dependency order (Kahn's algorithm; among ready stages, the part order).
pub(crate) fn topological(parts: &[PartTiming]) -> Vec<String> {
    let stages: Vec<&PartTiming> = parts.iter().filter(|p| p.kind == PartKind::Stage).collect();
    let known: HashSet<&str> = stages.iter().map(|p| p.label.as_str()).collect();
    let mut done: Vec<String> = Vec::new();
    while done.len() < stages.len() {
        let next = stages.iter().find(|p| {
            !done.contains(&p.label)
                && p.depends_on
                    .iter()
                    .all(|d| !known.contains(d.as_str()) || done.contains(d))
        });
        match next {
            Some(p) => done.push(p.label.clone()),
            None => {
                // A cycle (only in a forged trace): the rest in part order.
                let rest: Vec<String> = stages
                    .iter()
                    .filter(|p| !done.contains(&p.label))
                    .map(|p| p.label.clone())
                    .collect();
                done.extend(rest);
            }
        }
    }
    done
}
