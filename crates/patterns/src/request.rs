//! What a caller asks a node to coordinate, and the one place where a request's field rules
//! live.
//!
//! [`RequestOptions`] is what a user or an agent says (the control API's body, already parsed
//! into typed values): a capability and its input, constraints, an objective, a pattern or
//! `None` for the adaptive choice, and the pattern's own options (a workflow file, a shard
//! count with its split and reduce, a committee). [`Request::plan`] checks that the options
//! go together, runs the adaptive choice when no pattern was asked for, and yields a
//! [`Planned`] request: one validated [`Request`] per pattern, which
//! [`crate::Engine::request`] turns into a running coordination. A request that cannot run is
//! refused here, with its reason, before anything is signed or published.
//!
//! | pattern asked | needs | refuses |
//! |---|---|---|
//! | contract-net, auction | a capability | a workflow, `parallel` |
//! | consensus | a capability and a committee | a workflow, `parallel` |
//! | workflow | a workflow file | `parallel` |
//! | parallel | a capability and an inline input | a workflow |
//! | none (adaptive) | a capability or a workflow | |
//!
//! A `threshold` needs a committee and lies between 1 and the committee's size (default: more
//! than two thirds of the members).

use std::sync::Arc;

use pvl_protocol::{
    Committee, Constraints, MAX_COMMITTEE, PatternHint, Payload, PublicKey, Strategy,
};

use crate::adaptive::{Choice, PatternHistory, Situation, choose};
use crate::parallel::{ParallelSpec, Reduce, Split};
use crate::requester::RequestSpec;
use crate::select::ReliabilitySource;
use crate::workflow::WorkflowSpec;

/// Everything the node knows about past runs that a request may use: the adaptive choice
/// reads pattern and provider records, selection reads observed reliabilities.
pub trait History: PatternHistory + ReliabilitySource + Send + Sync {
    /// How many providers have a record for `capability`.
    fn providers_known(&self, capability: &str) -> usize {
        self.providers(capability).len()
    }
}

/// A history that knows nothing (every request starts from scratch).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecords;

impl PatternHistory for NoRecords {
    fn providers(&self, _capability: &str) -> Vec<(PublicKey, crate::ProviderRecord)> {
        Vec::new()
    }

    fn pattern(&self, _capability: &str, _pattern: PatternHint) -> crate::PatternRecord {
        crate::PatternRecord::default()
    }
}

impl ReliabilitySource for NoRecords {
    fn observed_bps(&self, _provider: &PublicKey) -> Option<u16> {
        None
    }
}

impl History for NoRecords {}

/// A request as the caller states it (typed, not yet checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// The capability wanted (empty for a workflow: its stages name theirs).
    pub capability: String,
    /// The task input.
    pub input: Vec<u8>,
    /// A workflow file's text (TOML, see [`crate::workflow`]).
    pub workflow: Option<String>,
    /// Split the input into at most this many shards.
    pub parallel: Option<usize>,
    /// How to split for `parallel` (default: lines).
    pub split: Option<Split>,
    /// How to combine shard outputs (default: concatenate).
    pub reduce: Option<Reduce>,
    /// Approval committee members.
    pub committee: Option<Vec<PublicKey>>,
    /// Approvals needed (default: more than two thirds of the committee).
    pub threshold: Option<u32>,
    /// Highest acceptable cost.
    pub budget: Option<u64>,
    /// Deadline, ms after the request is made.
    pub deadline_in_ms: Option<u64>,
    /// Lowest acceptable reliability, basis points.
    pub min_reliability_bps: Option<u16>,
    /// The selection strategy (`None`: lowest cost, and the adaptive choice picks freely).
    pub strategy: Option<Strategy>,
    /// The pattern asked for (`None` or [`PatternHint::Adaptive`]: the node chooses).
    pub pattern: Option<PatternHint>,
    /// How long offers are collected, ms (default [`RequestSpec::new`]'s).
    pub window_ms: Option<u64>,
    /// Select as soon as this many acceptable offers are in.
    pub min_offers: Option<usize>,
    /// The intent's nonce (the caller supplies randomness).
    pub nonce: u64,
}

/// Why a request cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

impl RequestError {
    fn new(message: impl Into<String>) -> Self {
        RequestError(message.into())
    }
}

/// A validated request, one variant per kind of coordination run.
// Built once per request; boxing would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Request {
    /// One intent: contract-net, an auction (the spec's strategy) or, with the spec's
    /// committee, a consensus-approved award.
    ContractNet(RequestSpec),
    /// A federated workflow: `template` carries the knobs every stage inherits.
    Workflow {
        /// The checked workflow.
        workflow: WorkflowSpec,
        /// The workflow's input.
        input: Payload,
        /// Knobs for every stage.
        template: RequestSpec,
    },
    /// A parallel job.
    Parallel {
        /// Shards, split, reduce and the knobs of every shard.
        spec: ParallelSpec,
        /// The input to split.
        input: Payload,
    },
}

impl Request {
    /// The pattern this request runs.
    pub fn pattern(&self) -> PatternHint {
        match self {
            Request::ContractNet(spec) => spec.pattern,
            Request::Workflow { .. } => PatternHint::Workflow,
            Request::Parallel { .. } => PatternHint::Parallel,
        }
    }

    /// The capability (the workflow's name for a workflow).
    pub fn capability(&self) -> &str {
        match self {
            Request::ContractNet(spec) => &spec.capability,
            Request::Workflow { workflow, .. } => &workflow.name,
            Request::Parallel { spec, .. } => &spec.capability,
        }
    }

    /// Checks `options`, makes the adaptive choice when no pattern was asked for (from
    /// `history`), and builds the request. `now_ms` turns the relative deadline into an
    /// absolute one.
    pub fn plan(
        mut options: RequestOptions,
        history: Arc<dyn History>,
        now_ms: u64,
    ) -> Result<Planned, RequestError> {
        if options.workflow.is_none() && options.capability.is_empty() {
            return Err(RequestError::new("give a `capability` (or a `workflow`)"));
        }
        let committee = match options.committee.take() {
            Some(members) => Some(committee(members, options.threshold)?),
            None if options.threshold.is_some() => {
                return Err(RequestError::new("`threshold` needs a `committee`"));
            }
            None => None,
        };
        let input_lines = options.input.iter().filter(|b| **b == b'\n').count() as u64;
        let input_size = options.input.len() as u64;
        let asked = match options.pattern {
            // Asking for shards is asking for the parallel pattern.
            None | Some(PatternHint::Adaptive) if options.parallel.is_some() => {
                PatternHint::Parallel
            }
            None => PatternHint::Adaptive,
            Some(pattern) => pattern,
        };
        let mut spec = RequestSpec::new(
            options.capability.clone(),
            Payload::Inline(std::mem::take(&mut options.input)),
        );
        spec.constraints = Constraints {
            max_cost: options.budget,
            deadline_ms: options.deadline_in_ms.map(|d| now_ms.saturating_add(d)),
            min_reliability_bps: options.min_reliability_bps,
            resources: Default::default(),
        };
        if let Some(strategy) = options.strategy {
            spec.strategy = strategy;
        }
        spec.nonce = options.nonce;
        if let Some(window) = options.window_ms {
            if window == 0 {
                return Err(RequestError::new("the offer window must be positive"));
            }
            spec.offer_window_ms = window;
        }
        if let Some(k) = options.min_offers {
            spec.min_offers = k;
        }
        spec.committee = committee;
        let choice = (asked == PatternHint::Adaptive).then(|| {
            let situation = Situation {
                capability: options.capability.clone(),
                has_stages: options.workflow.is_some(),
                committee: spec.committee.is_some(),
                parallel_requested: options.parallel.is_some(),
                input_size,
                // Only an input the caller said how to split is decomposable.
                input_lines: if options.split.is_some() {
                    input_lines
                } else {
                    0
                },
                objective: options.strategy,
                providers_known: history.providers_known(&options.capability),
            };
            choose(&situation, &*history)
        });
        let pattern = choice.as_ref().map_or(asked, |c| c.pattern);
        if let Some(choice) = &choice {
            spec.avoid = choice.avoid.clone();
        }
        spec.pattern = pattern;
        let request = build(&options, spec, pattern, &*history)?;
        Ok(Planned {
            request,
            choice,
            history,
        })
    }
}

/// A request ready for [`crate::Engine::request`]: what runs, why (the adaptive choice, when
/// the node chose), and the history its selections read.
pub struct Planned {
    /// What runs.
    pub request: Request,
    /// The adaptive choice, when no pattern was asked for (recorded as a `pattern-chosen`
    /// event in the trace).
    pub choice: Option<Choice>,
    /// Observed reliabilities for the selections.
    pub history: Arc<dyn History>,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("request", &self.request)
            .field("choice", &self.choice)
            .finish()
    }
}

impl Planned {
    /// A planned request without a history or an adaptive choice (tests, simulations).
    pub fn new(request: Request) -> Self {
        Planned {
            request,
            choice: None,
            history: Arc::new(NoRecords),
        }
    }
}

/// The committee of an intent: `members` and the threshold (default: more than two thirds).
fn committee(members: Vec<PublicKey>, threshold: Option<u32>) -> Result<Committee, RequestError> {
    if members.is_empty() {
        return Err(RequestError::new("a committee needs at least one member"));
    }
    if members.len() > MAX_COMMITTEE {
        return Err(RequestError::new(format!(
            "a committee has at most {MAX_COMMITTEE} members, not {}",
            members.len()
        )));
    }
    let n = members.len() as u32;
    if let Some(t) = threshold
        && (t == 0 || t > n)
    {
        return Err(RequestError::new(format!(
            "threshold {t} is not between 1 and the {n} committee members"
        )));
    }
    Ok(Committee {
        threshold: threshold.unwrap_or(n * 2 / 3 + 1).min(n),
        members,
    })
}

/// The request of `pattern` from checked options.
fn build(
    options: &RequestOptions,
    spec: RequestSpec,
    pattern: PatternHint,
    history: &dyn History,
) -> Result<Request, RequestError> {
    let conflict =
        |what: &str| RequestError::new(format!("{what} does not go with the pattern `{pattern}`"));
    match pattern {
        PatternHint::Workflow => {
            let Some(text) = &options.workflow else {
                return Err(RequestError::new(
                    "the pattern `workflow` needs a workflow file",
                ));
            };
            if options.parallel.is_some() {
                return Err(conflict("`parallel`"));
            }
            let workflow = WorkflowSpec::parse(text)
                .map_err(|e| RequestError::new(format!("workflow: {e}")))?;
            workflow
                .check()
                .map_err(|e| RequestError::new(format!("workflow: {e}")))?;
            let input = spec.input.clone();
            Ok(Request::Workflow {
                workflow,
                input,
                template: spec,
            })
        }
        PatternHint::Parallel => {
            if options.workflow.is_some() {
                return Err(conflict("a workflow"));
            }
            let shards = options
                .parallel
                .unwrap_or_else(|| history.providers_known(&options.capability).clamp(2, 8));
            if shards == 0 {
                return Err(RequestError::new("`parallel` needs at least 1 shard"));
            }
            let input = spec.input.clone();
            let mut parallel = ParallelSpec::new(
                spec.capability.clone(),
                options.split.unwrap_or(Split::Lines),
                shards,
                options.reduce.clone().unwrap_or(Reduce::Concat),
            );
            parallel.template = spec;
            // Split now, so that an input that cannot be split is refused before anything
            // is signed.
            crate::parallel::split(
                input.inline().unwrap_or_default(),
                parallel.split,
                parallel.shards,
            )
            .map_err(|e| RequestError::new(format!("parallel: {e}")))?;
            Ok(Request::Parallel {
                spec: parallel,
                input,
            })
        }
        _ => {
            if options.workflow.is_some() {
                return Err(conflict("a workflow"));
            }
            if options.parallel.is_some() {
                return Err(conflict("`parallel`"));
            }
            if pattern == PatternHint::Consensus && spec.committee.is_none() {
                return Err(RequestError::new(
                    "the pattern `consensus` needs a committee",
                ));
            }
            Ok(Request::ContractNet(spec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(options: RequestOptions) -> Result<Planned, RequestError> {
        Request::plan(options, Arc::new(NoRecords), 1_000)
    }

    fn key(seed: u8) -> PublicKey {
        pvl_protocol::Keypair::from_seed([seed; 32]).public()
    }

    #[test]
    fn a_capability_or_a_workflow_is_needed() {
        let e = plan(RequestOptions::default()).unwrap_err();
        assert!(e.0.contains("capability"), "{e}");
    }

    #[test]
    fn threshold_needs_a_committee_and_fits_it() {
        let mut o = RequestOptions {
            capability: "echo".into(),
            threshold: Some(2),
            ..Default::default()
        };
        assert!(
            plan(o.clone())
                .unwrap_err()
                .0
                .contains("needs a `committee`")
        );
        o.committee = Some(vec![key(1), key(2)]);
        o.threshold = Some(3);
        assert!(plan(o.clone()).unwrap_err().0.contains("between 1 and"));
        o.threshold = None;
        let planned = plan(o).unwrap();
        let Request::ContractNet(spec) = planned.request else {
            panic!("consensus is a contract-net request with a committee");
        };
        assert_eq!(spec.committee.unwrap().threshold, 2);
        assert_eq!(spec.pattern, PatternHint::Consensus);
    }

    #[test]
    fn patterns_refuse_options_of_other_patterns() {
        let o = RequestOptions {
            capability: "echo".into(),
            pattern: Some(PatternHint::ContractNet),
            parallel: Some(2),
            ..Default::default()
        };
        assert!(plan(o).unwrap_err().0.contains("does not go with"));
        let o = RequestOptions {
            capability: "echo".into(),
            pattern: Some(PatternHint::Consensus),
            ..Default::default()
        };
        assert!(plan(o).unwrap_err().0.contains("needs a committee"));
        let o = RequestOptions {
            pattern: Some(PatternHint::Workflow),
            capability: "x".into(),
            ..Default::default()
        };
        assert!(plan(o).unwrap_err().0.contains("workflow file"));
    }

    #[test]
    fn shards_mean_parallel_and_the_deadline_is_absolute() {
        let o = RequestOptions {
            capability: "wordcount".into(),
            input: b"a\nb\nc\n".to_vec(),
            parallel: Some(3),
            deadline_in_ms: Some(500),
            ..Default::default()
        };
        let planned = plan(o).unwrap();
        assert_eq!(planned.request.pattern(), PatternHint::Parallel);
        let Request::Parallel { spec, .. } = planned.request else {
            panic!("parallel expected");
        };
        assert_eq!(spec.template.constraints.deadline_ms, Some(1_500));
    }

    #[test]
    fn no_pattern_means_the_adaptive_choice() {
        let o = RequestOptions {
            capability: "echo".into(),
            ..Default::default()
        };
        let planned = plan(o).unwrap();
        let choice = planned.choice.expect("the node chose");
        assert_eq!(planned.request.pattern(), choice.pattern);
    }
}
