//! Federated workflow: a DAG of stages, each stage a contract-net round of its own, the
//! output of a stage feeding the stages that read it.
//!
//! ## The workflow file (TOML)
//!
//! ```toml
//! name = "digest"                 # optional, default "workflow"; [A-Za-z0-9._:/-], <= 55 bytes
//! [[stage]]
//! name = "fetch"                  # required, unique, not "input"
//! capability = "echo"             # required
//! inputs = ["input"]              # "input" = the workflow input; otherwise stage names.
//!                                 # default ["input"]
//! [[stage]]
//! name = "hash"
//! capability = "sha256"
//! inputs = ["fetch"]
//! strategy = "lowest-cost"        # optional: lowest-cost | highest-quality | fastest |
//!                                 #   weighted:cost=1,latency=1,reliability=1
//! budget = 10                     # optional: the stage's max cost
//! deadline_ms = 5000              # optional: relative to the stage's start
//! min_reliability = 0.9           # optional: 0.0 to 1.0
//! window_ms = 300                 # optional: the stage's offer window
//! min_offers = 2                  # optional: close the window at this many acceptable offers
//! ```
//!
//! A stage with several inputs receives them **concatenated in the listed order** (no
//! separator). [`WorkflowSpec::parse`] refuses, naming the line at fault: TOML syntax errors,
//! unknown keys, a stage without name or capability, a duplicate stage name, a reference to an
//! unknown stage, a cycle (naming the stages in it) and a file without stages.
//!
//! ## A run
//!
//! ```text
//!  start: sign + Record the root Intent (capability workflow:<name>, pattern Workflow,
//!         the workflow input; NOT published: nobody bids on it)
//!    |
//!    v
//!  every stage whose inputs are ready  ---> sub-requester: Intent child of the root, parents =
//!    ^      (independent stages run        root + the receipts (or tasks) of its upstream
//!    |       at the same time)             stages; contract-net as usual (offers, selection,
//!    |                                     award, reassignment, re-publication)
//!    |                                       | awarded: Event stage-started
//!    |                                       | completed: Event stage-done, output kept
//!    +--------- more stages ready <----------+
//!                                            | failed: Event stage-failed, running stages are
//!  all stages done: Event workflow-done,     |   cancelled, Event workflow-failed,
//!  Finished(Completed)                       |   Finished(Failed)
//! ```
//!
//! * A failing provider is handled inside the stage: its sub-requester awards the next-best
//!   offer or re-publishes the stage's intent. Only when that fails too does the stage fail.
//! * When a stage fails, the workflow fails at once: stages still running are **cancelled**
//!   (their held offers are rejected; a task already awarded cannot be stopped, its late
//!   reports are refused) and stages never started stay `pending`. Stages already done keep
//!   their outputs and receipts in [`crate::Failure::parts`].
//! * A stage output that travels as a hash only ([`Payload::Hash`]) cannot feed another stage
//!   (the requester does not hold the bytes): the reading stage fails with reason
//!   [`crate::FailureReason::BadInput`]. So does a stage whose upstream reported no output,
//!   or whose concatenated input exceeds [`pvl_protocol::MAX_INLINE_PAYLOAD`].
//!
//! A stage intent lists at most [`pvl_protocol::MAX_PARENTS`] parents (the root first, then
//! the upstream proofs in input order); so does the `workflow-done` event.
//!
//! ## Outcome
//!
//! [`crate::Completion::parts`] lists every stage in declaration order. The completion's own
//! `task`, `offer`, `provider`, `output` and `receipt` are those of the **final stage**: the
//! last declared stage no other stage reads. `cost` and `awards` are totals over the stages.
//!
//! Events (all signed by the requester and recorded): `stage-started` (at every award of a
//! stage, attrs `stage`, `capability`, `provider`, `task`, `award`), `stage-done` (attrs
//! `stage`, `capability`, `provider`, `task`, `cost`, `output-sha256`, `receipt`),
//! `stage-failed` (attrs `stage`, `capability`, `provider`, `task`, `reason`),
//! `workflow-done` and `workflow-failed` (attr `stage` naming the failed stage).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use pvl_protocol::{
    BASIS_POINTS, Intent, Keypair, MAX_CAPABILITY_LEN, MAX_INLINE_PAYLOAD, ObjectId, PatternHint,
    Payload, SignedObject, Strategy,
};
use pvl_protocol::{EventType, attr};
use serde::Deserialize;
use toml::Spanned;
use tracing::{info, warn};

use crate::action::{
    Action, Completion, Failure, FailureReason, Input, Outcome, PartResult, PartStatus,
};
use crate::composite::{Composite, CompositeRun, PartEvent};
use crate::error::{PatternError, Result};
use crate::requester::RequestSpec;
use crate::select::ReliabilitySource;

/// The name of the workflow input in a stage's `inputs`.
pub const WORKFLOW_INPUT: &str = "input";

/// Most stages in one workflow.
pub const MAX_STAGES: usize = 64;

/// A parsed, checked workflow: stages in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSpec {
    /// The workflow's name (the root intent's capability is `workflow:<name>`).
    pub name: String,
    /// The stages, in declaration order.
    pub stages: Vec<StageSpec>,
}

/// One stage of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// Unique name.
    pub name: String,
    /// The capability the stage asks for.
    pub capability: String,
    /// What the stage reads: [`WORKFLOW_INPUT`] or names of other stages, concatenated in
    /// this order.
    pub inputs: Vec<String>,
    /// Selection strategy (default: the run's template).
    pub strategy: Option<Strategy>,
    /// Max cost of the stage's task.
    pub budget: Option<u64>,
    /// Deadline relative to the stage's start, ms.
    pub deadline_ms: Option<u64>,
    /// Minimum reliability, basis points.
    pub min_reliability_bps: Option<u16>,
    /// Offer window, ms.
    pub window_ms: Option<u64>,
    /// Close the window at this many acceptable offers.
    pub min_offers: Option<usize>,
    /// The line of the stage in the workflow file (1-based; 0 when built in code).
    pub line: usize,
}

impl StageSpec {
    /// A stage reading `inputs`, with every option left to the run's template.
    pub fn new(name: impl Into<String>, capability: impl Into<String>, inputs: &[&str]) -> Self {
        StageSpec {
            name: name.into(),
            capability: capability.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            strategy: None,
            budget: None,
            deadline_ms: None,
            min_reliability_bps: None,
            window_ms: None,
            min_offers: None,
            line: 0,
        }
    }
}

/// Why a workflow file or spec is unusable. `line` is 1-based; 0 when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("line {line}: {message}")]
    Syntax {
        /// Where.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// The file declares no stage.
    #[error("the workflow has no stages (add [[stage]] tables)")]
    NoStages,
    /// A stage has no `name`.
    #[error("line {line}: a stage has no name")]
    MissingName {
        /// Where.
        line: usize,
    },
    /// A stage has no `capability`.
    #[error("line {line}: stage `{stage}` has no capability")]
    MissingCapability {
        /// Where.
        line: usize,
        /// The stage.
        stage: String,
    },
    /// Two stages share a name.
    #[error("line {line}: duplicate stage name `{stage}` (first declared on line {first_line})")]
    DuplicateStage {
        /// The second declaration.
        line: usize,
        /// The name.
        stage: String,
        /// The first declaration.
        first_line: usize,
    },
    /// A stage reads something that is neither the workflow input nor a stage.
    #[error(
        "line {line}: stage `{stage}` reads `{input}`, which is neither `input` nor a stage of this workflow"
    )]
    UnknownInput {
        /// Where the reference is.
        line: usize,
        /// The reading stage.
        stage: String,
        /// The unknown name.
        input: String,
    },
    /// Stages read each other in a cycle.
    #[error("line {line}: the stages {} form a cycle", cycle_text(.stages))]
    Cycle {
        /// The line of the first stage of the cycle.
        line: usize,
        /// The stages in the cycle, each reading the previous one (the first reads the last).
        stages: Vec<String>,
    },
    /// Any other unusable value (bad name, strategy, reliability, empty inputs...).
    #[error("line {line}: {message}")]
    Invalid {
        /// Where.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

fn cycle_text(stages: &[String]) -> String {
    let mut names: Vec<String> = stages.iter().map(|s| format!("`{s}`")).collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    names.join(" -> ")
}

impl WorkflowError {
    /// The line at fault (1-based), if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            WorkflowError::NoStages => None,
            WorkflowError::Syntax { line, .. }
            | WorkflowError::MissingName { line }
            | WorkflowError::MissingCapability { line, .. }
            | WorkflowError::DuplicateStage { line, .. }
            | WorkflowError::UnknownInput { line, .. }
            | WorkflowError::Cycle { line, .. }
            | WorkflowError::Invalid { line, .. } => (*line > 0).then_some(*line),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    name: Option<Spanned<String>>,
    #[serde(default)]
    stage: Vec<Spanned<RawStage>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Option<Spanned<String>>,
    capability: Option<Spanned<String>>,
    inputs: Option<Spanned<Vec<Spanned<String>>>>,
    strategy: Option<Spanned<String>>,
    budget: Option<u64>,
    deadline_ms: Option<Spanned<u64>>,
    min_reliability: Option<Spanned<f64>>,
    window_ms: Option<Spanned<u64>>,
    min_offers: Option<usize>,
}

/// Line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
        + 1
}

/// Whether `name` is 1 to `max` bytes of `[A-Za-z0-9._:/-]` (the protocol's name rule).
fn is_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
}

const WORKFLOW_PREFIX: &str = pvl_protocol::vocab::WORKFLOW_CAPABILITY_PREFIX;

impl WorkflowSpec {
    /// Parses and checks a workflow file (format in the module documentation).
    pub fn parse(toml_text: &str) -> std::result::Result<WorkflowSpec, WorkflowError> {
        let raw: RawWorkflow = toml::from_str(toml_text).map_err(|e| WorkflowError::Syntax {
            line: e.span().map_or(0, |s| line_of(toml_text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let line = |span: std::ops::Range<usize>| line_of(toml_text, span.start);
        let name = match raw.name {
            Some(n) => {
                let l = line(n.span());
                let n = n.into_inner();
                if !is_name(&n, MAX_CAPABILITY_LEN - WORKFLOW_PREFIX.len()) {
                    return Err(WorkflowError::Invalid {
                        line: l,
                        message: format!(
                            "workflow name `{n}` is not 1 to {} characters of [A-Za-z0-9._:/-]",
                            MAX_CAPABILITY_LEN - WORKFLOW_PREFIX.len()
                        ),
                    });
                }
                n
            }
            None => "workflow".to_string(),
        };
        let mut stages = Vec::with_capacity(raw.stage.len());
        // Line of each input reference, to point at the exact entry.
        let mut input_lines: Vec<Vec<usize>> = Vec::with_capacity(raw.stage.len());
        for spanned in raw.stage {
            let table_line = line(spanned.span());
            let r = spanned.into_inner();
            let Some(name) = r.name else {
                return Err(WorkflowError::MissingName { line: table_line });
            };
            let stage_line = line(name.span());
            let name = name.into_inner();
            let Some(capability) = r.capability else {
                return Err(WorkflowError::MissingCapability {
                    line: table_line,
                    stage: name,
                });
            };
            let capability_line = line(capability.span());
            let capability = capability.into_inner();
            if !is_name(&capability, MAX_CAPABILITY_LEN) {
                return Err(WorkflowError::Invalid {
                    line: capability_line,
                    message: format!(
                        "stage `{name}`: capability `{capability}` is not 1 to {MAX_CAPABILITY_LEN} characters of [A-Za-z0-9._:/-]"
                    ),
                });
            }
            let (inputs, lines) = match r.inputs {
                Some(list) => {
                    let list_line = line(list.span());
                    let list = list.into_inner();
                    if list.is_empty() {
                        return Err(WorkflowError::Invalid {
                            line: list_line,
                            message: format!(
                                "stage `{name}` has an empty inputs list (omit it to read the workflow input)"
                            ),
                        });
                    }
                    list.into_iter()
                        .map(|i| (line(i.span()), i.into_inner()))
                        .map(|(l, i)| (i, l))
                        .unzip()
                }
                None => (vec![WORKFLOW_INPUT.to_string()], vec![stage_line]),
            };
            let strategy =
                match r.strategy {
                    Some(s) => {
                        let l = line(s.span());
                        Some(s.get_ref().parse::<Strategy>().map_err(|e| {
                            WorkflowError::Invalid {
                                line: l,
                                message: format!("stage `{name}`: {e}"),
                            }
                        })?)
                    }
                    None => None,
                };
            let min_reliability_bps = match r.min_reliability {
                Some(m) => {
                    let l = line(m.span());
                    let v = *m.get_ref();
                    if !(0.0..=1.0).contains(&v) {
                        return Err(WorkflowError::Invalid {
                            line: l,
                            message: format!(
                                "stage `{name}`: min_reliability {v} is not between 0 and 1"
                            ),
                        });
                    }
                    // In range 0..=10_000 by the check above.
                    Some((v * f64::from(BASIS_POINTS)).round() as u16)
                }
                None => None,
            };
            for (value, what) in [(&r.window_ms, "window_ms"), (&r.deadline_ms, "deadline_ms")] {
                if let Some(v) = value
                    && *v.get_ref() == 0
                {
                    return Err(WorkflowError::Invalid {
                        line: line(v.span()),
                        message: format!("stage `{name}`: {what} must be positive"),
                    });
                }
            }
            input_lines.push(lines);
            stages.push(StageSpec {
                name,
                capability,
                inputs,
                strategy,
                budget: r.budget,
                deadline_ms: r.deadline_ms.map(Spanned::into_inner),
                min_reliability_bps,
                window_ms: r.window_ms.map(Spanned::into_inner),
                min_offers: r.min_offers,
                line: stage_line,
            });
        }
        let spec = WorkflowSpec { name, stages };
        spec.check_with(|stage, input| {
            input_lines
                .get(stage)
                .and_then(|l| l.get(input))
                .copied()
                .unwrap_or(0)
        })?;
        Ok(spec)
    }

    /// Checks a spec built in code (the same rules as [`WorkflowSpec::parse`]).
    pub fn check(&self) -> std::result::Result<(), WorkflowError> {
        self.check_with(|stage, _| self.stages.get(stage).map_or(0, |s| s.line))
    }

    fn check_with(
        &self,
        input_line: impl Fn(usize, usize) -> usize,
    ) -> std::result::Result<(), WorkflowError> {
        if self.stages.is_empty() {
            return Err(WorkflowError::NoStages);
        }
        if self.stages.len() > MAX_STAGES {
            return Err(WorkflowError::Invalid {
                line: self.stages.get(MAX_STAGES).map_or(0, |s| s.line),
                message: format!("more than {MAX_STAGES} stages"),
            });
        }
        let mut first_line: HashMap<&str, usize> = HashMap::new();
        for stage in &self.stages {
            if stage.name.is_empty() || stage.name == WORKFLOW_INPUT {
                return Err(WorkflowError::Invalid {
                    line: stage.line,
                    message: format!(
                        "`{}` cannot name a stage (empty, or the reserved name of the workflow input)",
                        stage.name
                    ),
                });
            }
            if stage.capability.is_empty() {
                return Err(WorkflowError::MissingCapability {
                    line: stage.line,
                    stage: stage.name.clone(),
                });
            }
            if let Some(first) = first_line.insert(&stage.name, stage.line) {
                return Err(WorkflowError::DuplicateStage {
                    line: stage.line,
                    stage: stage.name.clone(),
                    first_line: first,
                });
            }
        }
        for (s, stage) in self.stages.iter().enumerate() {
            if stage.inputs.is_empty() {
                return Err(WorkflowError::Invalid {
                    line: stage.line,
                    message: format!("stage `{}` has no inputs", stage.name),
                });
            }
            for (i, input) in stage.inputs.iter().enumerate() {
                if input != WORKFLOW_INPUT && !first_line.contains_key(input.as_str()) {
                    return Err(WorkflowError::UnknownInput {
                        line: input_line(s, i),
                        stage: stage.name.clone(),
                        input: input.clone(),
                    });
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            let line = cycle
                .first()
                .and_then(|&i| self.stages.get(i))
                .map_or(0, |s| s.line);
            return Err(WorkflowError::Cycle {
                line,
                stages: cycle
                    .into_iter()
                    .filter_map(|i| self.stages.get(i).map(|s| s.name.clone()))
                    .collect(),
            });
        }
        Ok(())
    }

    /// Indices of the stages `stage` reads (without the workflow input), in input order.
    pub fn upstream(&self, stage: usize) -> Vec<usize> {
        let Some(s) = self.stages.get(stage) else {
            return Vec::new();
        };
        s.inputs
            .iter()
            .filter_map(|name| self.stages.iter().position(|t| &t.name == name))
            .collect()
    }

    /// The final stage: the last declared stage that no other stage reads.
    pub fn final_stage(&self) -> Option<usize> {
        let read: HashSet<&str> = self
            .stages
            .iter()
            .flat_map(|s| s.inputs.iter().map(String::as_str))
            .collect();
        self.stages
            .iter()
            .rposition(|s| !read.contains(s.name.as_str()))
    }

    /// A cycle of stage indices (each reads the previous one, the first reads the last), if
    /// the stages do not form a DAG.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        // Kahn's algorithm removes every stage not on or behind a cycle.
        let n = self.stages.len();
        let ups: Vec<Vec<usize>> = (0..n).map(|i| self.upstream(i)).collect();
        let mut pending: Vec<usize> = ups.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&i| pending.get(i) == Some(&0)).collect();
        let mut removed = vec![false; n];
        while let Some(i) = ready.pop() {
            removed[i] = true;
            for (j, up) in ups.iter().enumerate() {
                for _ in up.iter().filter(|&&u| u == i) {
                    pending[j] -= 1;
                    if pending[j] == 0 {
                        ready.push(j);
                    }
                }
            }
        }
        let start = (0..n).find(|&i| !removed[i])?;
        // Walk upstream among the remaining stages until a stage repeats: that is a cycle.
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = ups[current].iter().copied().find(|&u| !removed[u])?;
            if let Some(pos) = path.iter().position(|&p| p == next) {
                let mut cycle: Vec<usize> = path.split_off(pos);
                // `path` lists each stage followed by one it reads; present it in data-flow
                // order (each stage reads the previous one).
                cycle.reverse();
                // Start at the first declared stage of the cycle.
                let first = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, stage)| **stage)
                    .map_or(0, |(i, _)| i);
                cycle.rotate_left(first);
                return Some(cycle);
            }
            path.push(next);
            current = next;
        }
    }
}

/// A running workflow: the root intent, one sub-requester per started stage. Sans-I/O, driven
/// through [`Coordination`].
pub struct WorkflowRun {
    spec: WorkflowSpec,
    input: Payload,
    template: RequestSpec,
    inner: Composite,
    /// Per stage: the object that proves it done (its receipt, or its task without one).
    proofs: Vec<Option<ObjectId>>,
}

impl fmt::Debug for WorkflowRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowRun")
            .field("name", &self.spec.name)
            .field("trace", &self.inner.trace())
            .field(
                "stages",
                &self
                    .inner
                    .parts
                    .iter()
                    .map(|p| (p.result.label.as_str(), p.result.status.name()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl WorkflowRun {
    /// A run of `spec` on `input`, signing with `key`. Checks the spec; nothing is signed
    /// until [`Coordination::start`]. Stage options not given in the spec come from the
    /// template ([`WorkflowRun::with_template`], default [`RequestSpec::new`]).
    pub fn new(
        key: Keypair,
        spec: WorkflowSpec,
        input: Payload,
    ) -> std::result::Result<Self, WorkflowError> {
        spec.check()?;
        let parts = spec
            .stages
            .iter()
            .map(|s| (s.name.clone(), s.capability.clone()))
            .collect();
        let stages = spec.stages.len();
        Ok(WorkflowRun {
            spec,
            input,
            template: RequestSpec::new("workflow", Payload::Inline(Vec::new())),
            inner: Composite::new(key, parts, 0),
            proofs: vec![None; stages],
        })
    }

    /// Takes the coordination knobs of every stage (window, grace, silence, receipt wait,
    /// re-publications, constraints, strategy, nonce) from `template`, unless the stage sets
    /// them. The template's capability and input are ignored; its deadline, if any, is an
    /// absolute deadline for every stage.
    pub fn with_template(mut self, template: RequestSpec) -> Self {
        self.template = template;
        self
    }

    /// Uses observed reliabilities from `history` in every stage's selection.
    pub fn with_history(mut self, history: Arc<dyn ReliabilitySource + Send + Sync>) -> Self {
        self.inner.set_history(history);
        self
    }

    /// The spec.
    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }

    /// Every stage as it stands, in declaration order.
    pub fn parts(&self) -> Vec<PartResult> {
        self.inner.results()
    }

    /// The root intent, once started.
    pub fn root(&self) -> Option<&SignedObject> {
        self.inner.root.as_ref()
    }

    fn span(&self) -> tracing::span::EnteredSpan {
        let trace = self.inner.trace().map(|t| t.short()).unwrap_or_default();
        tracing::info_span!("workflow", trace = %trace).entered()
    }

    fn stage(&self, index: usize) -> Result<StageSpec> {
        self.spec
            .stages
            .get(index)
            .cloned()
            .ok_or_else(|| PatternError::Invalid(format!("no stage {index}")))
    }

    fn all_done(&self) -> bool {
        self.inner
            .parts
            .iter()
            .all(|p| p.result.status == PartStatus::Done)
    }

    /// Starts every pending stage whose inputs are all done.
    fn launch_ready(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        for index in 0..self.spec.stages.len() {
            if self.inner.outcome.is_some() {
                return Ok(());
            }
            let pending = self.inner.part(index)?.result.status == PartStatus::Pending;
            let upstream = self.spec.upstream(index);
            let ready = upstream.iter().all(|&u| {
                self.inner
                    .part(u)
                    .is_ok_and(|p| p.result.status == PartStatus::Done)
            });
            if !pending || !ready {
                continue;
            }
            let stage = self.stage(index)?;
            let input = match self.stage_input(&stage) {
                Ok(input) => input,
                Err(why) => {
                    self.inner.mark_failed(index, &why, now_ms)?;
                    return self.stage_failed(
                        index,
                        FailureReason::BadInput,
                        &why,
                        now_ms,
                        actions,
                    );
                }
            };
            let request = self.stage_request(index, &stage, input, now_ms);
            let mut parents = vec![self.inner.root_id()?];
            parents.extend(
                upstream
                    .iter()
                    .filter_map(|&u| self.proofs.get(u).copied().flatten()),
            );
            info!(stage = %stage.name, capability = %stage.capability, "stage ready");
            if let Err(e) = self.inner.launch(index, request, &parents, now_ms, actions) {
                let why = format!("the stage could not start: {e}");
                let reason = if self
                    .template
                    .constraints
                    .deadline_ms
                    .is_some_and(|d| d <= now_ms)
                {
                    FailureReason::DeadlinePassed
                } else {
                    FailureReason::BadInput
                };
                self.inner.mark_failed(index, &why, now_ms)?;
                return self.stage_failed(index, reason, &why, now_ms, actions);
            }
        }
        Ok(())
    }

    /// The input of `stage`: its inputs concatenated in order.
    fn stage_input(&self, stage: &StageSpec) -> std::result::Result<Payload, String> {
        if let [only] = stage.inputs.as_slice()
            && only == WORKFLOW_INPUT
        {
            return Ok(self.input.clone());
        }
        let mut bytes = Vec::new();
        for name in &stage.inputs {
            let chunk: &[u8] = if name == WORKFLOW_INPUT {
                self.input.inline().ok_or_else(|| {
                    "the workflow input travels as a hash only and cannot be concatenated with other inputs".to_string()
                })?
            } else {
                let part = self
                    .spec
                    .stages
                    .iter()
                    .position(|s| &s.name == name)
                    .and_then(|i| self.inner.part(i).ok())
                    .ok_or_else(|| format!("unknown input `{name}`"))?;
                match &part.result.output {
                    Some(Payload::Inline(b)) => b,
                    Some(Payload::Hash { sha256, size }) => {
                        return Err(format!(
                            "the output of stage `{name}` is a hash only ({} bytes, sha256 {}): the requester does not hold the bytes to pass on",
                            size,
                            hex_prefix(sha256)
                        ));
                    }
                    None => return Err(format!("stage `{name}` reported no output")),
                }
            };
            bytes.extend_from_slice(chunk);
            if bytes.len() > MAX_INLINE_PAYLOAD {
                return Err(format!(
                    "the concatenated input exceeds the inline limit of {MAX_INLINE_PAYLOAD} bytes"
                ));
            }
        }
        Ok(Payload::Inline(bytes))
    }

    /// The contract-net spec of one stage: the template with the stage's options.
    fn stage_request(
        &self,
        index: usize,
        stage: &StageSpec,
        input: Payload,
        now_ms: u64,
    ) -> RequestSpec {
        let mut r = self.template.clone();
        r.capability = stage.capability.clone();
        r.input = input;
        r.pattern = PatternHint::ContractNet;
        r.label = stage.name.clone();
        r.nonce = self.template.nonce.wrapping_add((index as u64 + 1) << 32);
        if let Some(s) = stage.strategy {
            r.strategy = s;
        }
        if let Some(b) = stage.budget {
            r.constraints.max_cost = Some(b);
        }
        if let Some(d) = stage.deadline_ms {
            let relative = now_ms.saturating_add(d);
            r.constraints.deadline_ms = Some(
                self.template
                    .constraints
                    .deadline_ms
                    .map_or(relative, |abs| abs.min(relative)),
            );
        }
        if let Some(m) = stage.min_reliability_bps {
            r.constraints.min_reliability_bps = Some(m);
        }
        if let Some(w) = stage.window_ms {
            r.offer_window_ms = w;
        }
        if let Some(k) = stage.min_offers {
            r.min_offers = k;
        }
        r
    }

    fn stage_done(
        &mut self,
        index: usize,
        c: &Completion,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let stage = self.stage(index)?;
        let proof = c.receipt.as_ref().map_or(c.task, SignedObject::id);
        if let Some(slot) = self.proofs.get_mut(index) {
            *slot = Some(proof);
        }
        let output_sha = c
            .output
            .as_ref()
            .map(|o| hex_prefix(&o.sha256()))
            .unwrap_or_else(|| attr::NONE.into());
        let e = self.inner.event(
            EventType::StageDone,
            vec![c.task],
            &[proof],
            format!(
                "stage `{}` ({}) done by {} for {}",
                stage.name,
                stage.capability,
                c.provider.short(),
                c.cost
            ),
            vec![
                (attr::STAGE, stage.name.clone()),
                (attr::CAPABILITY, stage.capability.clone()),
                (attr::PROVIDER, c.provider.to_string()),
                (attr::TASK, c.task.to_string()),
                (attr::COST, c.cost.to_string()),
                (attr::OUTPUT_SHA256, output_sha),
                (
                    attr::RECEIPT,
                    c.receipt
                        .as_ref()
                        .map_or_else(|| attr::MISSING.into(), |r| r.id().to_string()),
                ),
            ],
            now_ms,
        )?;
        info!(stage = %stage.name, provider = %c.provider.short(), "stage done");
        actions.push(Action::Record(e));
        Ok(())
    }

    /// Records `stage-failed`, cancels running stages and fails the workflow.
    fn stage_failed(
        &mut self,
        index: usize,
        reason: FailureReason,
        detail: &str,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let stage = self.stage(index)?;
        let part = self.inner.part(index)?;
        let task = part.result.task;
        let provider = part.result.provider;
        let mut parents: Vec<ObjectId> = part
            .requester
            .as_ref()
            .and_then(|r| r.intent().map(SignedObject::id))
            .into_iter()
            .collect();
        parents.extend(task);
        let e = self.inner.event(
            EventType::StageFailed,
            task.into_iter().collect(),
            &parents,
            format!(
                "stage `{}` ({}) failed: {detail}",
                stage.name, stage.capability
            ),
            vec![
                (attr::STAGE, stage.name.clone()),
                (attr::CAPABILITY, stage.capability.clone()),
                (
                    attr::PROVIDER,
                    provider.map_or_else(|| attr::NONE.into(), |p| p.to_string()),
                ),
                (
                    attr::TASK,
                    task.map_or_else(|| attr::NONE.into(), |t| t.to_string()),
                ),
                (attr::REASON, reason.name().to_string()),
            ],
            now_ms,
        )?;
        warn!(stage = %stage.name, %reason, %detail, "stage failed");
        let failed_event = e.id();
        actions.push(Action::Record(e));
        self.inner.cancel_running(
            &format!("stage `{}` of the workflow failed", stage.name),
            now_ms,
            actions,
        )?;
        let detail = format!(
            "stage `{}` ({}) failed: {reason}: {detail}",
            stage.name, stage.capability
        );
        self.fail(
            reason,
            detail,
            Some(&stage.name),
            &[failed_event],
            now_ms,
            actions,
        )
    }

    fn fail(
        &mut self,
        reason: FailureReason,
        detail: String,
        stage: Option<&str>,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let root = self.inner.root_id()?;
        let e = self.inner.event(
            EventType::WorkflowFailed,
            vec![root],
            parents,
            detail.clone(),
            vec![
                (attr::STAGE, stage.unwrap_or(attr::NONE).to_string()),
                (attr::REASON, reason.name().to_string()),
            ],
            now_ms,
        )?;
        actions.push(Action::Record(e));
        let outcome = Outcome::Failed(Failure {
            trace: root,
            reason,
            detail: crate::util::text(detail),
            parts: self.inner.results(),
        });
        actions.push(Action::Finished(outcome.clone()));
        self.inner.outcome = Some(outcome);
        Ok(())
    }

    fn complete(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let root = self.inner.root_id()?;
        let parts = self.inner.results();
        let last = self
            .spec
            .final_stage()
            .and_then(|i| parts.get(i))
            .ok_or_else(|| PatternError::Invalid("the workflow has no final stage".into()))?;
        let (Some(task), Some(offer), Some(provider)) = (last.task, last.offer, last.provider)
        else {
            return Err(PatternError::Invalid(
                "the final stage is done without a task".into(),
            ));
        };
        let cost = parts.iter().map(|p| p.cost).fold(0u64, u64::saturating_add);
        let awards = parts
            .iter()
            .map(|p| p.awards)
            .fold(0u32, u32::saturating_add);
        let proofs: Vec<ObjectId> = self.proofs.iter().flatten().copied().collect();
        let e = self.inner.event(
            EventType::WorkflowDone,
            vec![root, task],
            &proofs,
            format!(
                "workflow `{}`: {} stage(s) done, total cost {cost}",
                self.spec.name,
                parts.len()
            ),
            vec![
                (attr::STAGES, parts.len().to_string()),
                (attr::COST, cost.to_string()),
                (attr::FINAL_STAGE, last.label.clone()),
                (
                    attr::OUTPUT_SHA256,
                    last.output
                        .as_ref()
                        .map_or_else(|| attr::NONE.into(), |o| hex_prefix(&o.sha256())),
                ),
            ],
            now_ms,
        )?;
        info!(cost, "workflow done");
        actions.push(Action::Record(e));
        let outcome = Outcome::Completed(Completion {
            trace: root,
            task,
            offer,
            provider,
            output: last.output.clone(),
            cost,
            receipt: last.receipt.clone(),
            awards,
            parts,
        });
        actions.push(Action::Finished(outcome.clone()));
        self.inner.outcome = Some(outcome);
        Ok(())
    }
}

/// Hex of a hash.
pub(crate) fn hex_prefix(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompositeRun for WorkflowRun {
    const WHAT: &'static str = "the workflow";

    fn composite(&self) -> &Composite {
        &self.inner
    }

    fn composite_mut(&mut self) -> &mut Composite {
        &mut self.inner
    }

    fn start_run(&mut self, now_ms: u64) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        let intent = Intent {
            capability: format!("{WORKFLOW_PREFIX}{}", self.spec.name),
            input: self.input.clone(),
            constraints: self.template.constraints.clone(),
            strategy: self.template.strategy,
            pattern: PatternHint::Workflow,
            committee: None,
            nonce: self.template.nonce,
            // Nobody may bid on the root: it accepts offers until now only.
            expires_at_ms: now_ms,
            audience: None,
        };
        self.inner.sign_root(intent, now_ms, &mut actions)?;
        let _span = self.span();
        info!(name = %self.spec.name, stages = self.spec.stages.len(), "workflow started");
        self.launch_ready(now_ms, &mut actions)?;
        Ok(actions)
    }

    fn on_input(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>> {
        if self.inner.outcome.is_some() {
            return Err(PatternError::Invalid("the workflow is over".into()));
        }
        let _span = self.span();
        let mut actions = Vec::new();
        let events = self.inner.route(input, now_ms, &mut actions)?;
        for event in events {
            if self.inner.outcome.is_some() {
                break;
            }
            match event {
                PartEvent::Awarded {
                    part,
                    task,
                    provider,
                } => {
                    let stage = self.stage(part)?;
                    let awards = self.inner.part(part)?.result.awards;
                    let e = self.inner.event(
                        EventType::StageStarted,
                        vec![task],
                        &[task],
                        format!(
                            "stage `{}` ({}) awarded to {} (award {awards})",
                            stage.name,
                            stage.capability,
                            provider.short()
                        ),
                        vec![
                            (attr::STAGE, stage.name.clone()),
                            (attr::CAPABILITY, stage.capability.clone()),
                            (attr::PROVIDER, provider.to_string()),
                            (attr::TASK, task.to_string()),
                            (attr::AWARD, awards.to_string()),
                        ],
                        now_ms,
                    )?;
                    actions.push(Action::Record(e));
                }
                PartEvent::Finished {
                    part,
                    outcome: Outcome::Completed(c),
                } => {
                    self.stage_done(part, &c, now_ms, &mut actions)?;
                }
                PartEvent::Finished {
                    part,
                    outcome: Outcome::Failed(f),
                } => {
                    let detail = f.detail.clone();
                    self.stage_failed(part, f.reason, &detail, now_ms, &mut actions)?;
                }
            }
        }
        if self.inner.outcome.is_none() {
            if self.all_done() {
                self.complete(now_ms, &mut actions)?;
            } else {
                self.launch_ready(now_ms, &mut actions)?;
            }
        }
        Ok(actions)
    }

    fn fail_run(
        &mut self,
        reason: FailureReason,
        detail: String,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        self.fail(reason, detail, None, &[], now_ms, actions)
    }
}
