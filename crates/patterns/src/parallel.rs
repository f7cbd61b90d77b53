//! Parallel: split one input into shards, run every shard as its own contract-net round at the
//! same time, spread the shards over distinct providers, and reduce the outputs in shard order.
//!
//! ## Splitting ([`Split`], [`split`])
//!
//! | `Split` | text form | shards (at most N, none empty) |
//! |---|---|---|
//! | [`Split::Lines`] | `lines` | contiguous groups of whole lines (each keeps its `\n`), as even as possible in line count |
//! | [`Split::Bytes`] | `bytes:SIZE` | chunks of SIZE bytes; when that would make more than N shards, chunks of `ceil(len / N)` bytes |
//! | [`Split::JsonArray`] | `json-array` | the elements of a top-level JSON array in contiguous groups, each shard a JSON array |
//!
//! Concatenating the shards (for `json-array`: the elements of the shard arrays) restores the
//! input; the property tests check it.
//!
//! ## Reducing ([`Reduce`])
//!
//! * `concat`: the shard outputs joined in shard order, no separator;
//! * `sum`: each output, trimmed, parsed as an integer or a decimal (`-12`, `3.25`; no
//!   exponent), added exactly; the result keeps the largest number of decimals of any output;
//! * any other word is a capability: once every shard is done, a reducer sub-intent (child of
//!   the root, parents = the shards' receipts) whose input is the shard outputs joined by `\n`
//!   is awarded by contract-net; its output is the result. (Parents are capped at
//!   [`pvl_protocol::MAX_PARENTS`]: with more shards, the reducer intent and the `parallel-done`
//!   event name the root and the first shards' receipts.)
//!
//! ## A run ([`ParallelRun`])
//!
//! ```text
//!  start: split the input; sign + Record the root Intent (the capability, pattern Parallel,
//!         the whole input; NOT published)
//!    |
//!    +--> shard i: sub-requester, Intent child of the root, input = shard i   (all at once)
//!    |      awarded:   Event shard-started   (providers already holding another shard are
//!    |                                        ranked after the free ones: not excluded)
//!    |      provider fails or goes silent: the sub-requester reassigns / re-publishes
//!    |      sub-requester fails: Event shard-failed; restart the shard with a fresh
//!    |                           sub-intent, at most `max_restarts` times, else the run fails
//!    |                           (other shards are cancelled)
//!    |      done:      Event shard-done
//!    v
//!  all shards done: reduce (concat | sum locally, or a reducer sub-intent: reduce-started,
//!  reduce-failed + restart as for shards) -> Event parallel-done, Finished(Completed)
//! ```
//!
//! [`crate::Completion::parts`] lists the shards (`shard-0`, `shard-1`, ...) and, for a
//! reducer capability, the reducer (`reduce`) last. The completion's `task`, `offer`,
//! `provider` and `receipt` are the reducer's, or the last shard's for `concat` and `sum`;
//! `output` is the reduced result; `cost` and `awards` are totals.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use pvl_protocol::vocab::{REDUCE_LABEL, SHARD_LABEL_PREFIX};
use pvl_protocol::{EventType, attr};
use pvl_protocol::{
    Intent, Keypair, MAX_CAPABILITY_LEN, MAX_INLINE_PAYLOAD, ObjectId, PatternHint, Payload,
    SignedObject,
};
use tracing::{info, warn};

use crate::action::{
    Action, Completion, Failure, FailureReason, Input, Outcome, PartResult, PartStatus,
};
use crate::composite::{Composite, CompositeRun, PartEvent};
use crate::error::{PatternError, Result};
use crate::requester::RequestSpec;
use crate::select::ReliabilitySource;
use crate::workflow::hex_prefix;

/// Most shards of one parallel run.
pub const MAX_SHARDS: usize = 256;

/// How the input is cut into shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Contiguous groups of whole lines.
    Lines,
    /// Chunks of this many bytes (bigger when needed to stay within the shard count).
    Bytes(usize),
    /// Groups of the elements of a top-level JSON array, each shard a JSON array.
    JsonArray,
}

impl FromStr for Split {
    type Err = ParallelError;

    /// Parses `lines`, `bytes:SIZE` or `json-array`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "lines" => Ok(Split::Lines),
            "json-array" => Ok(Split::JsonArray),
            _ => {
                let size = s
                    .strip_prefix("bytes:")
                    .ok_or_else(|| ParallelError::UnknownSplit(s.to_string()))?;
                match size.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(Split::Bytes(n)),
                    _ => Err(ParallelError::BadChunkSize(size.to_string())),
                }
            }
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Split::Lines => f.write_str("lines"),
            Split::Bytes(n) => write!(f, "bytes:{n}"),
            Split::JsonArray => f.write_str("json-array"),
        }
    }
}

/// How the shard outputs become one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reduce {
    /// Join in shard order.
    Concat,
    /// Add the numbers the shards output.
    Sum,
    /// Hand the outputs, joined by newlines, to a provider of this capability.
    Capability(String),
}

impl FromStr for Reduce {
    type Err = ParallelError;

    /// Parses `concat`, `sum`, or a capability name.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "concat" => Ok(Reduce::Concat),
            "sum" => Ok(Reduce::Sum),
            other if is_capability(other) => Ok(Reduce::Capability(other.to_string())),
            other => Err(ParallelError::BadReducer(other.to_string())),
        }
    }
}

impl fmt::Display for Reduce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reduce::Concat => f.write_str("concat"),
            Reduce::Sum => f.write_str("sum"),
            Reduce::Capability(c) => f.write_str(c),
        }
    }
}

fn is_capability(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CAPABILITY_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
}

/// Why a parallel run cannot be set up, or a split or local reduction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParallelError {
    /// Not `lines`, `bytes:SIZE` or `json-array`.
    #[error("unknown split `{0}`; expected lines, bytes:SIZE or json-array")]
    UnknownSplit(String),
    /// `bytes:SIZE` with a size that is not a positive integer.
    #[error("`{0}` is not a positive chunk size")]
    BadChunkSize(String),
    /// A reducer that is neither `concat`, `sum` nor a capability name.
    #[error("`{0}` is not a reducer: expected concat, sum or a capability name")]
    BadReducer(String),
    /// Not a usable capability name.
    #[error("`{0}` is not a capability name")]
    BadCapability(String),
    /// Zero shards, or more than [`MAX_SHARDS`].
    #[error("the shard count must be 1 to {MAX_SHARDS}, not {0}")]
    ShardCount(usize),
    /// Nothing to split.
    #[error("the input is empty: nothing to split")]
    EmptyInput,
    /// The input is only known by its hash.
    #[error("the input travels as a hash only: the requester cannot split it")]
    HashOnlyInput,
    /// `json-array` on something else.
    #[error("the input is not a JSON array: {0}")]
    NotJsonArray(String),
    /// A shard output could not be reduced.
    #[error("cannot reduce: {0}")]
    Reduce(String),
}

/// Cuts `input` into at most `n` non-empty shards (see the module documentation).
pub fn split(
    input: &[u8],
    how: Split,
    n: usize,
) -> std::result::Result<Vec<Vec<u8>>, ParallelError> {
    if n == 0 || n > MAX_SHARDS {
        return Err(ParallelError::ShardCount(n));
    }
    if input.is_empty() {
        return Err(ParallelError::EmptyInput);
    }
    match how {
        Split::Lines => {
            let lines: Vec<&[u8]> = input.split_inclusive(|b| *b == b'\n').collect();
            Ok(groups(lines.len(), n)
                .into_iter()
                .map(|r| lines.get(r).unwrap_or_default().concat())
                .collect())
        }
        Split::Bytes(size) => {
            let size = size.max(input.len().div_ceil(n)).max(1);
            Ok(input.chunks(size).map(<[u8]>::to_vec).collect())
        }
        Split::JsonArray => {
            let items: Vec<serde_json::Value> = serde_json::from_slice(input)
                .map_err(|e| ParallelError::NotJsonArray(e.to_string()))?;
            if items.is_empty() {
                return Err(ParallelError::EmptyInput);
            }
            groups(items.len(), n)
                .into_iter()
                .map(|r| {
                    serde_json::to_vec(items.get(r).unwrap_or_default())
                        .map_err(|e| ParallelError::NotJsonArray(e.to_string()))
                })
                .collect()
        }
    }
}

/// `len` items in at most `n` contiguous non-empty groups whose sizes differ by at most one.
fn groups(len: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    let k = n.min(len).max(1);
    let (base, extra) = (len / k, len % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let size = base + usize::from(i < extra);
            let range = start..start + size;
            start += size;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Joins `outputs` in order (`Reduce::Concat`) or adds them (`Reduce::Sum`). A capability
/// reducer is not local: refused.
pub fn reduce_locally(
    how: &Reduce,
    outputs: &[&[u8]],
) -> std::result::Result<Vec<u8>, ParallelError> {
    match how {
        Reduce::Concat => Ok(outputs.concat()),
        Reduce::Sum => sum(outputs).map(String::into_bytes),
        Reduce::Capability(c) => Err(ParallelError::Reduce(format!(
            "`{c}` is reduced by a provider, not locally"
        ))),
    }
}

/// A decimal number: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// Most decimals a summed number may have.
const MAX_DECIMALS: u32 = 18;

fn parse_decimal(text: &str) -> std::result::Result<Decimal, String> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !valid(int) || !valid(frac) {
        return Err(format!("`{}` is not a number", crate::util::text(t)));
    }
    let scale = u32::try_from(frac.len())
        .ok()
        .filter(|s| *s <= MAX_DECIMALS)
        .ok_or_else(|| format!("`{t}` has more than {MAX_DECIMALS} decimals"))?;
    let mantissa: i128 = format!("{int}{frac}")
        .parse()
        .map_err(|_| format!("`{t}` is too large"))?;
    Ok(Decimal {
        mantissa: if negative { -mantissa } else { mantissa },
        scale,
    })
}

fn rescale(d: Decimal, scale: u32) -> Option<i128> {
    d.mantissa.checked_mul(10i128.checked_pow(scale - d.scale)?)
}

/// Adds the numbers in `outputs` exactly.
fn sum(outputs: &[&[u8]]) -> std::result::Result<String, ParallelError> {
    let numbers = outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            std::str::from_utf8(o)
                .map_err(|_| format!("shard {i} output is not text"))
                .and_then(parse_decimal)
                .map_err(|e| ParallelError::Reduce(format!("shard {i}: {e}")))
        })
        .collect::<std::result::Result<Vec<Decimal>, _>>()?;
    let scale = numbers.iter().map(|d| d.scale).max().unwrap_or(0);
    let overflow = || ParallelError::Reduce("the sum overflows".into());
    let mut total: i128 = 0;
    for d in numbers {
        total = total
            .checked_add(rescale(d, scale).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
    }
    if scale == 0 {
        return Ok(total.to_string());
    }
    let unit = 10i128.pow(scale);
    let sign = if total < 0 { "-" } else { "" };
    let abs = total.unsigned_abs();
    let unit = unit.unsigned_abs();
    Ok(format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = scale as usize
    ))
}

/// What a parallel run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParallelSpec {
    /// The capability every shard asks for.
    pub capability: String,
    /// How the input is split.
    pub split: Split,
    /// At most this many shards.
    pub shards: usize,
    /// How the outputs are combined.
    pub reduce: Reduce,
    /// How many times one shard (or the reducer) may be restarted with a fresh sub-intent
    /// after its sub-requester failed outright.
    pub max_restarts: u32,
    /// Coordination knobs of every shard and of the reducer (window, grace, silence, receipt
    /// wait, re-publications, constraints, strategy, nonce); its capability and input are
    /// ignored.
    pub template: RequestSpec,
}

impl ParallelSpec {
    /// `shards` shards of `capability`, split and reduced as given, two restarts per shard and
    /// the default [`RequestSpec::new`] knobs.
    pub fn new(capability: impl Into<String>, split: Split, shards: usize, reduce: Reduce) -> Self {
        ParallelSpec {
            capability: capability.into(),
            split,
            shards,
            reduce,
            max_restarts: 2,
            template: RequestSpec::new("parallel", Payload::Inline(Vec::new())),
        }
    }
}

/// A running parallel coordination. Sans-I/O, driven through [`Coordination`].
pub struct ParallelRun {
    spec: ParallelSpec,
    input: Payload,
    shards: Vec<Vec<u8>>,
    inner: Composite,
    /// Per part: the object proving it done (receipt, or task without one).
    proofs: Vec<Option<ObjectId>>,
}

impl fmt::Debug for ParallelRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelRun")
            .field("capability", &self.spec.capability)
            .field("shards", &self.shards.len())
            .field("trace", &self.inner.trace())
            .finish()
    }
}

impl ParallelRun {
    /// A run of `spec` on `input` (inline bytes), signing with `key`. Splits the input now;
    /// nothing is signed until [`Coordination::start`].
    pub fn new(
        key: Keypair,
        spec: ParallelSpec,
        input: Payload,
    ) -> std::result::Result<Self, ParallelError> {
        if !is_capability(&spec.capability) {
            return Err(ParallelError::BadCapability(spec.capability.clone()));
        }
        let bytes = input.inline().ok_or(ParallelError::HashOnlyInput)?;
        let shards = split(bytes, spec.split, spec.shards)?;
        let mut parts: Vec<(String, String)> = (0..shards.len())
            .map(|i| (format!("{SHARD_LABEL_PREFIX}{i}"), spec.capability.clone()))
            .collect();
        if let Reduce::Capability(c) = &spec.reduce {
            parts.push((REDUCE_LABEL.to_string(), c.clone()));
        }
        let count = parts.len();
        Ok(ParallelRun {
            inner: Composite::new(key, parts, shards.len()),
            proofs: vec![None; count],
            spec,
            input,
            shards,
        })
    }

    /// Uses observed reliabilities from `history` in every selection.
    pub fn with_history(mut self, history: Arc<dyn ReliabilitySource + Send + Sync>) -> Self {
        self.inner.set_history(history);
        self
    }

    /// The shards, in order.
    pub fn shards(&self) -> &[Vec<u8>] {
        &self.shards
    }

    /// Every part as it stands: the shards in order, then the reducer if any.
    pub fn parts(&self) -> Vec<PartResult> {
        self.inner.results()
    }

    /// The root intent, once started.
    pub fn root(&self) -> Option<&SignedObject> {
        self.inner.root.as_ref()
    }

    fn span(&self) -> tracing::span::EnteredSpan {
        let trace = self.inner.trace().map(|t| t.short()).unwrap_or_default();
        tracing::info_span!("parallel", trace = %trace).entered()
    }

    fn is_reducer(&self, part: usize) -> bool {
        part >= self.shards.len()
    }

    fn label(&self, part: usize) -> String {
        self.inner
            .part(part)
            .map(|p| p.result.label.clone())
            .unwrap_or_default()
    }

    /// Starts (or restarts) part `index` with a fresh sub-intent.
    fn launch(
        &mut self,
        index: usize,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let (capability, input) = if self.is_reducer(index) {
            let Reduce::Capability(c) = &self.spec.reduce else {
                return Err(PatternError::Invalid("no reducer capability".into()));
            };
            (c.clone(), Payload::Inline(self.joined_outputs()?))
        } else {
            let shard = self
                .shards
                .get(index)
                .ok_or_else(|| PatternError::Invalid(format!("no shard {index}")))?;
            (self.spec.capability.clone(), Payload::Inline(shard.clone()))
        };
        let attempt = self.inner.part(index)?.attempts;
        let mut r = self.spec.template.clone();
        r.capability = capability;
        r.input = input;
        r.pattern = PatternHint::ContractNet;
        r.label = self.label(index);
        r.nonce = r
            .nonce
            .wrapping_add((index as u64 + 1) << 32)
            .wrapping_add(u64::from(attempt) << 48);
        self.inner.launch(index, r, parents, now_ms, actions)
    }

    /// The shard outputs joined by newlines (the reducer's input).
    fn joined_outputs(&self) -> Result<Vec<u8>> {
        let outputs = self.shard_outputs().map_err(PatternError::Invalid)?;
        let joined = outputs.join(&b"\n"[..]);
        if joined.len() > MAX_INLINE_PAYLOAD {
            return Err(PatternError::Invalid(format!(
                "the joined shard outputs exceed the inline limit of {MAX_INLINE_PAYLOAD} bytes"
            )));
        }
        Ok(joined)
    }

    /// The inline outputs of the shards, in order.
    fn shard_outputs(&self) -> std::result::Result<Vec<&[u8]>, String> {
        (0..self.shards.len())
            .map(|i| {
                let part = self.inner.part(i).map_err(|e| e.to_string())?;
                match &part.result.output {
                    Some(Payload::Inline(b)) => Ok(b.as_slice()),
                    Some(Payload::Hash { .. }) => Err(format!(
                        "the output of shard-{i} is a hash only: the requester does not hold the bytes to reduce"
                    )),
                    None => Err(format!("shard-{i} reported no output")),
                }
            })
            .collect()
    }

    fn part_started(
        &mut self,
        part: usize,
        task: ObjectId,
        provider: pvl_protocol::PublicKey,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let label = self.label(part);
        let awards = self.inner.part(part)?.result.awards;
        let event_type = if self.is_reducer(part) {
            EventType::ReduceStarted
        } else {
            EventType::ShardStarted
        };
        let e = self.inner.event(
            event_type,
            vec![task],
            &[task],
            format!("{label} awarded to {} (award {awards})", provider.short()),
            vec![
                (attr::SHARD, label),
                (attr::PROVIDER, provider.to_string()),
                (attr::TASK, task.to_string()),
                (attr::AWARD, awards.to_string()),
            ],
            now_ms,
        )?;
        actions.push(Action::Record(e));
        Ok(())
    }

    fn part_done(
        &mut self,
        part: usize,
        c: &Completion,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let proof = c.receipt.as_ref().map_or(c.task, SignedObject::id);
        if let Some(slot) = self.proofs.get_mut(part) {
            *slot = Some(proof);
        }
        if self.is_reducer(part) {
            return self.reduced(Some(part), c.output.clone(), &[proof], now_ms, actions);
        }
        let label = self.label(part);
        let e = self.inner.event(
            EventType::ShardDone,
            vec![c.task],
            &[proof],
            format!("{label} done by {} for {}", c.provider.short(), c.cost),
            vec![
                (attr::SHARD, label),
                (attr::PROVIDER, c.provider.to_string()),
                (attr::TASK, c.task.to_string()),
                (attr::COST, c.cost.to_string()),
                (
                    attr::OUTPUT_SHA256,
                    c.output
                        .as_ref()
                        .map_or_else(|| attr::NONE.into(), |o| hex_prefix(&o.sha256())),
                ),
            ],
            now_ms,
        )?;
        actions.push(Action::Record(e));
        let all_done = (0..self.shards.len()).all(|i| {
            self.inner
                .part(i)
                .is_ok_and(|p| p.result.status == PartStatus::Done)
        });
        if all_done {
            self.reduce(now_ms, actions)?;
        }
        Ok(())
    }

    /// Every shard is done: reduce locally, or start the reducer.
    fn reduce(&mut self, now_ms: u64, actions: &mut Vec<Action>) -> Result<()> {
        let proofs: Vec<ObjectId> = self.proofs.iter().flatten().copied().collect();
        if matches!(self.spec.reduce, Reduce::Capability(_)) {
            let reducer = self.shards.len();
            let mut parents = vec![self.inner.root_id()?];
            parents.extend(&proofs);
            return match self.joined_outputs() {
                Ok(_) => self.launch(reducer, &parents, now_ms, actions),
                Err(e) => {
                    let why = e.to_string();
                    self.inner.mark_failed(reducer, &why, now_ms)?;
                    self.fail(FailureReason::BadInput, why, &proofs, now_ms, actions)
                }
            };
        }
        let reduced = self
            .shard_outputs()
            .map_err(ParallelError::Reduce)
            .and_then(|outputs| reduce_locally(&self.spec.reduce, &outputs));
        match reduced {
            Ok(bytes) => self.reduced(None, Some(Payload::Inline(bytes)), &proofs, now_ms, actions),
            Err(e) => self.fail(
                FailureReason::BadInput,
                e.to_string(),
                &proofs,
                now_ms,
                actions,
            ),
        }
    }

    /// Records `parallel-done` and completes the run with `output`.
    fn reduced(
        &mut self,
        reducer: Option<usize>,
        output: Option<Payload>,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let root = self.inner.root_id()?;
        let parts = self.inner.results();
        let last = reducer
            .or(self.shards.len().checked_sub(1))
            .and_then(|i| parts.get(i))
            .ok_or_else(|| PatternError::Invalid("no part to report".into()))?;
        let (Some(task), Some(offer), Some(provider)) = (last.task, last.offer, last.provider)
        else {
            return Err(PatternError::Invalid("a done part without a task".into()));
        };
        let cost = parts.iter().map(|p| p.cost).fold(0u64, u64::saturating_add);
        let awards = parts
            .iter()
            .map(|p| p.awards)
            .fold(0u32, u32::saturating_add);
        let e = self.inner.event(
            EventType::ParallelDone,
            vec![root],
            parents,
            format!(
                "{} shard(s) reduced by {}, total cost {cost}",
                self.shards.len(),
                self.spec.reduce
            ),
            vec![
                (attr::HOW, self.spec.reduce.to_string()),
                (attr::SHARDS, self.shards.len().to_string()),
                (attr::COST, cost.to_string()),
                (
                    attr::OUTPUT_SHA256,
                    output
                        .as_ref()
                        .map_or_else(|| attr::NONE.into(), |o| hex_prefix(&o.sha256())),
                ),
            ],
            now_ms,
        )?;
        info!(cost, "parallel run done");
        actions.push(Action::Record(e));
        let outcome = Outcome::Completed(Completion {
            trace: root,
            task,
            offer,
            provider,
            output,
            cost,
            receipt: last.receipt.clone(),
            awards,
            parts,
        });
        actions.push(Action::Finished(outcome.clone()));
        self.inner.outcome = Some(outcome);
        Ok(())
    }

    /// A part's sub-requester failed: restart it, or fail the run.
    fn part_failed(
        &mut self,
        part: usize,
        f: &Failure,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let label = self.label(part);
        let p = self.inner.part(part)?;
        let attempts = p.attempts;
        let mut parents: Vec<ObjectId> = p
            .requester
            .as_ref()
            .and_then(|r| r.intent().map(SignedObject::id))
            .into_iter()
            .collect();
        parents.extend(p.result.task);
        let restart = attempts <= self.spec.max_restarts;
        let event_type = if self.is_reducer(part) {
            EventType::ReduceFailed
        } else {
            EventType::ShardFailed
        };
        let e = self.inner.event(
            event_type,
            p.result.task.into_iter().collect(),
            &parents,
            format!(
                "{label} failed (attempt {attempts}): {}: {}{}",
                f.reason,
                f.detail,
                if restart {
                    "; restarting it with a fresh intent"
                } else {
                    "; no restart left"
                }
            ),
            vec![
                (attr::SHARD, label.clone()),
                (attr::REASON, f.reason.name().to_string()),
                (attr::ATTEMPT, attempts.to_string()),
                (attr::RESTART, restart.to_string()),
            ],
            now_ms,
        )?;
        let event = e.id();
        actions.push(Action::Record(e));
        warn!(part = %label, attempts, reason = %f.reason, restart, "part failed");
        if restart {
            let root = self.inner.root_id()?;
            return self.launch(part, &[root, event], now_ms, actions);
        }
        self.inner.cancel_running(
            &format!("{label} of the parallel run failed"),
            now_ms,
            actions,
        )?;
        let detail = format!(
            "{label} failed {attempts} time(s), the last: {}: {}",
            f.reason, f.detail
        );
        self.fail(f.reason, detail, &[event], now_ms, actions)
    }

    fn fail(
        &mut self,
        reason: FailureReason,
        detail: String,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let root = self.inner.root_id()?;
        let e = self.inner.event(
            EventType::ParallelFailed,
            vec![root],
            parents,
            detail.clone(),
            vec![(attr::REASON, reason.name().to_string())],
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
}

impl CompositeRun for ParallelRun {
    const WHAT: &'static str = "the parallel run";

    fn composite(&self) -> &Composite {
        &self.inner
    }

    fn composite_mut(&mut self) -> &mut Composite {
        &mut self.inner
    }

    fn start_run(&mut self, now_ms: u64) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        let t = &self.spec.template;
        let intent = Intent {
            capability: self.spec.capability.clone(),
            input: self.input.clone(),
            constraints: t.constraints.clone(),
            strategy: t.strategy,
            pattern: PatternHint::Parallel,
            committee: None,
            nonce: t.nonce,
            // Nobody may bid on the root: it accepts offers until now only.
            expires_at_ms: now_ms,
            audience: None,
        };
        self.inner.sign_root(intent, now_ms, &mut actions)?;
        let _span = self.span();
        info!(
            capability = %self.spec.capability, shards = self.shards.len(),
            split = %self.spec.split, reduce = %self.spec.reduce, "parallel run started"
        );
        let root = self.inner.root_id()?;
        for index in 0..self.shards.len() {
            self.launch(index, &[root], now_ms, &mut actions)?;
        }
        Ok(actions)
    }

    fn on_input(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>> {
        if self.inner.outcome.is_some() {
            return Err(PatternError::Invalid("the parallel run is over".into()));
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
                } => self.part_started(part, task, provider, now_ms, &mut actions)?,
                PartEvent::Finished {
                    part,
                    outcome: Outcome::Completed(c),
                } => self.part_done(part, &c, now_ms, &mut actions)?,
                PartEvent::Finished {
                    part,
                    outcome: Outcome::Failed(f),
                } => self.part_failed(part, &f, now_ms, &mut actions)?,
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
        self.fail(reason, detail, &[], now_ms, actions)
    }
}
