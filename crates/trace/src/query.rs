//! Queries: a trace as a DAG, recent traces with status, provider history, capability stats.

use std::collections::{HashMap, HashSet};

use pvl_protocol::{Body, Kind, ObjectId, PatternHint, PublicKey, SignedObject, TraceId};
use serde::Serialize;

use crate::analyse::{Pattern, TraceStatus, analyse};
use crate::error::{Result, TraceError};
use crate::store::{TraceStore, check_light, key_name};

/// One object of a [`TraceDag`]: its envelope fields and its stored wire bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceNode {
    /// The object id.
    pub id: ObjectId,
    /// Its kind.
    pub kind: Kind,
    /// Who signed it.
    pub signer: PublicKey,
    /// When, unix ms.
    pub timestamp_ms: u64,
    /// Its parents (some may be missing from the store, see [`TraceDag::missing`]).
    pub parents: Vec<ObjectId>,
    /// Its children within the trace.
    pub children: Vec<ObjectId>,
    /// Whether it is a countersigned receipt.
    pub countersigned: bool,
    /// The exact stored wire bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

impl TraceNode {
    /// Fully decodes the node, re-verifying its signature(s).
    pub fn decode(&self) -> Result<SignedObject> {
        Ok(SignedObject::decode(&self.bytes)?)
    }
}

/// One trace read back as a graph.
///
/// Reading a DAG parses only the envelopes (the signatures were verified when the objects were
/// stored, and each value is re-hashed against its key); use [`TraceDag::objects`] or
/// [`TraceStore::verify_trace`] to re-verify signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceDag {
    /// The trace id.
    pub trace: TraceId,
    /// The nodes, in timestamp order (ties by id).
    pub nodes: Vec<TraceNode>,
    /// `(child, parent)` pairs whose parent is not in the trace (not yet received).
    pub missing: Vec<(ObjectId, ObjectId)>,
    #[serde(skip)]
    index: HashMap<ObjectId, usize>,
}

impl TraceDag {
    /// The node with id `id`.
    pub fn node(&self, id: &ObjectId) -> Option<&TraceNode> {
        self.index.get(id).and_then(|&i| self.nodes.get(i))
    }

    /// Nodes without a parent inside the trace (normally just the root intent).
    pub fn roots(&self) -> Vec<&TraceNode> {
        self.nodes
            .iter()
            .filter(|n| n.parents.iter().all(|p| !self.index.contains_key(p)))
            .collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the DAG has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All nodes decoded, in node order. Signatures are not checked again: the store holds
    /// only objects verified before they were inserted, and every structural check (and the
    /// id, in the store's reads) still runs; [`crate::TraceStore::verify_trace`] re-verifies
    /// everything, signatures included.
    pub fn objects(&self) -> Result<Vec<SignedObject>> {
        self.nodes
            .iter()
            .map(|n| SignedObject::decode_trusted(&n.bytes).map_err(TraceError::from))
            .collect()
    }
}

/// A trace in the list of recent traces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    /// The trace id.
    pub trace: TraceId,
    /// The capability of the root intent (if the root is stored).
    pub capability: Option<String>,
    /// The pattern the root intent asked for.
    pub hint: Option<PatternHint>,
    /// The pattern detected (rules in [`crate::analyse()`]'s module docs).
    pub pattern: Pattern,
    /// The pattern an adaptive requester chose (its `pattern-chosen` event), if any.
    pub chosen_by_adaptive: Option<PatternHint>,
    /// Where it stands.
    pub status: TraceStatus,
    /// Why it failed (the ending event's `reason`, or the failed part's failure), for a
    /// failed trace.
    pub failure_reason: Option<String>,
    /// Number of objects stored.
    pub objects: usize,
    /// Number of tasks awarded (re-awards included).
    pub tasks: usize,
    /// Number of parts (stages, shards, reducer; 1 for a contract-net that awarded).
    pub parts: usize,
    /// Earliest object timestamp, unix ms.
    pub first_ms: u64,
    /// Latest object timestamp, unix ms.
    pub last_ms: u64,
}

/// One task of a provider, from its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderTask {
    /// The task id.
    pub task: ObjectId,
    /// The receipt id.
    pub receipt: ObjectId,
    /// The trace.
    pub trace: TraceId,
    /// The capability (from the receipt's intent, if stored).
    pub capability: Option<String>,
    /// Whether it succeeded.
    pub ok: bool,
    /// Execution start, unix ms.
    pub started_at_ms: u64,
    /// Execution end, unix ms.
    pub finished_at_ms: u64,
    /// The deadline of the award (if the `TaskStart` is stored and has one).
    pub deadline_ms: Option<u64>,
    /// The cost charged.
    pub cost: u64,
    /// Whether the requester countersigned the receipt.
    pub countersigned: bool,
}

impl ProviderTask {
    /// Execution latency, ms.
    pub fn latency_ms(&self) -> u64 {
        self.finished_at_ms.saturating_sub(self.started_at_ms)
    }

    /// Whether it finished by the deadline (`None` without a known deadline).
    pub fn on_time(&self) -> Option<bool> {
        self.deadline_ms.map(|d| self.finished_at_ms <= d)
    }
}

/// A provider's track record, derived from the receipts it signed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderHistory {
    /// The provider.
    pub provider: PublicKey,
    /// Its tasks, oldest first.
    pub tasks: Vec<ProviderTask>,
    /// Fraction of tasks that succeeded (0 without tasks).
    pub success_rate: f64,
    /// Fraction of tasks with a deadline that finished by it (`None` if no task had one).
    pub on_time_rate: Option<f64>,
    /// Median execution latency, ms (`None` without tasks).
    pub median_latency_ms: Option<u64>,
    /// Number of receipts countersigned by their requester.
    pub countersigned: usize,
}

/// Statistics of one capability under one pattern, for adaptive selection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapabilityStats {
    /// The capability.
    pub capability: String,
    /// The pattern detected for the traces the receipts belong to.
    pub pattern: Pattern,
    /// Number of receipts.
    pub count: usize,
    /// Fraction that succeeded.
    pub success_rate: f64,
    /// Median execution latency, ms.
    pub median_latency_ms: u64,
    /// Mean execution latency, ms.
    pub mean_latency_ms: f64,
}

pub(crate) fn median(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values.get(mid).copied()
    } else {
        Some((values.get(mid - 1)? + values.get(mid)?) / 2)
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl TraceStore {
    /// Reads one trace back as a DAG (envelopes only, values re-hashed against their keys).
    pub fn trace(&self, trace: &TraceId) -> Result<TraceDag> {
        let _span = tracing::trace_span!("read_dag", trace = %trace.short()).entered();
        let entries = self.trace_entries(trace)?;
        if entries.is_empty() {
            return Err(TraceError::UnknownTrace(*trace));
        }
        let mut nodes = Vec::with_capacity(entries.len());
        for e in entries {
            let id = e.id;
            let light = check_light(&e.key, &e.bytes, &id)?;
            if light.trace_id() != *trace {
                return Err(TraceError::Corrupt {
                    key: key_name(&e.key),
                    reason: format!("object belongs to trace {}", light.trace_id()),
                });
            }
            nodes.push(TraceNode {
                id,
                kind: light.kind,
                signer: light.signer,
                timestamp_ms: light.timestamp_ms,
                parents: light.parents,
                children: Vec::new(),
                countersigned: light.countersigned,
                bytes: e.bytes,
            });
        }
        nodes.sort_by_key(|n| (n.timestamp_ms, n.id));
        let index: HashMap<ObjectId, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let mut missing = Vec::new();
        let mut links = Vec::new();
        for (ci, node) in nodes.iter().enumerate() {
            for p in &node.parents {
                match index.get(p) {
                    Some(&pi) => links.push((pi, ci)),
                    None => missing.push((node.id, *p)),
                }
            }
        }
        for (pi, ci) in links {
            let child = nodes.get(ci).map(|n| n.id);
            if let (Some(child), Some(parent)) = (child, nodes.get_mut(pi)) {
                parent.children.push(child);
            }
        }
        Ok(TraceDag {
            trace: *trace,
            nodes,
            missing,
            index,
        })
    }

    /// Summary of one trace (decodes and verifies its objects).
    pub fn trace_summary(&self, trace: &TraceId) -> Result<TraceSummary> {
        let objects = self.trace_objects(trace)?;
        let analysis = analyse(&objects);
        Ok(TraceSummary {
            trace: *trace,
            capability: analysis.capability,
            hint: analysis.hint,
            pattern: analysis.pattern,
            chosen_by_adaptive: analysis.chosen_by_adaptive.as_ref().map(|c| c.pattern),
            status: analysis.status,
            failure_reason: analysis.failure.as_ref().map(|f| f.reason.clone()),
            objects: objects.len(),
            tasks: analysis.tasks.len(),
            parts: analysis.parts.len(),
            first_ms: objects.first().map(|o| o.timestamp_ms()).unwrap_or(0),
            last_ms: objects.last().map(|o| o.timestamp_ms()).unwrap_or(0),
        })
    }

    /// The `limit` traces with the most recent activity, newest first, with their status.
    ///
    /// Walks the time index backwards; traces rooted in a capability ad (not a conversation)
    /// are skipped.
    pub fn recent_traces(&self, limit: usize) -> Result<Vec<TraceSummary>> {
        let mut seen: HashSet<TraceId> = HashSet::new();
        let mut out = Vec::new();
        for trace in self.recent_trace_ids() {
            if out.len() >= limit {
                break;
            }
            let trace = trace?;
            if !seen.insert(trace) {
                continue;
            }
            if let Some(root) = self.get_bytes(&trace)?
                && pvl_protocol::read_header(&root).is_ok_and(|l| l.kind == Kind::CapabilityAd)
            {
                continue;
            }
            out.push(self.trace_summary(&trace)?);
        }
        Ok(out)
    }

    /// A provider's history, derived from the receipts it signed: tasks, success rate, on-time
    /// rate (against the award's deadline) and median latency.
    pub fn provider_history(&self, provider: &PublicKey) -> Result<ProviderHistory> {
        let mut tasks = Vec::new();
        let mut intents: HashMap<ObjectId, Option<String>> = HashMap::new();
        for id in self.receipts_by_signer(provider, usize::MAX)? {
            let Some(receipt) = self.get(&id)? else {
                continue;
            };
            let Body::Receipt(r) = receipt.body() else {
                continue;
            };
            let deadline_ms = match self.get(&r.task)?.as_ref().map(SignedObject::body) {
                Some(Body::TaskStart(s)) => s.deadline_ms,
                _ => None,
            };
            let capability = match intents.get(&r.intent) {
                Some(c) => c.clone(),
                None => {
                    let c = self.capability_of_intent(&r.intent)?;
                    intents.insert(r.intent, c.clone());
                    c
                }
            };
            tasks.push(ProviderTask {
                task: r.task,
                receipt: id,
                trace: receipt.trace_id(),
                capability,
                ok: r.status.is_ok(),
                started_at_ms: r.started_at_ms,
                finished_at_ms: r.finished_at_ms,
                deadline_ms,
                cost: r.cost,
                countersigned: receipt.is_countersigned(),
            });
        }
        let ok = tasks.iter().filter(|t| t.ok).count();
        let with_deadline: Vec<bool> = tasks.iter().filter_map(ProviderTask::on_time).collect();
        let on_time_rate = (!with_deadline.is_empty()).then(|| {
            ratio(
                with_deadline.iter().filter(|b| **b).count(),
                with_deadline.len(),
            )
        });
        let mut latencies: Vec<u64> = tasks.iter().map(ProviderTask::latency_ms).collect();
        Ok(ProviderHistory {
            provider: *provider,
            success_rate: ratio(ok, tasks.len()),
            on_time_rate,
            median_latency_ms: median(&mut latencies),
            countersigned: tasks.iter().filter(|t| t.countersigned).count(),
            tasks,
        })
    }

    fn capability_of_intent(&self, intent: &ObjectId) -> Result<Option<String>> {
        Ok(match self.get(intent)?.as_ref().map(SignedObject::body) {
            Some(Body::Intent(i)) => Some(i.capability.clone()),
            _ => None,
        })
    }

    /// Per-capability, per-pattern statistics over every receipt in the store (optionally
    /// only for `capability`): count, success rate, latency. The pattern is the one detected
    /// for the receipt's trace; the capability is the one of the intent the receipt names
    /// (a stage's sub-intent for workflow stages).
    ///
    /// This walks every receipt and analyses each trace once: a background or on-demand
    /// query, not one for a hot path.
    pub fn capability_stats(&self, capability: Option<&str>) -> Result<Vec<CapabilityStats>> {
        let mut patterns: HashMap<TraceId, Pattern> = HashMap::new();
        let mut intents: HashMap<ObjectId, Option<String>> = HashMap::new();
        // (capability, pattern) -> (count, ok, latencies)
        let mut acc: HashMap<(String, Pattern), (usize, usize, Vec<u64>)> = HashMap::new();
        let receipts: Vec<ObjectId> = self.by_kind(Kind::Receipt, 0, u64::MAX)?;
        for id in receipts {
            let Some(receipt) = self.get(&id)? else {
                continue;
            };
            let Body::Receipt(r) = receipt.body() else {
                continue;
            };
            let cap = match intents.get(&r.intent) {
                Some(c) => c.clone(),
                None => {
                    let c = self.capability_of_intent(&r.intent)?;
                    intents.insert(r.intent, c.clone());
                    c
                }
            };
            let Some(cap) = cap else { continue };
            if capability.is_some_and(|c| c != cap) {
                continue;
            }
            let trace = receipt.trace_id();
            let pattern = match patterns.get(&trace) {
                Some(p) => *p,
                None => {
                    let p = analyse(&self.trace_objects(&trace)?).pattern;
                    patterns.insert(trace, p);
                    p
                }
            };
            let entry = acc.entry((cap, pattern)).or_default();
            entry.0 += 1;
            if r.status.is_ok() {
                entry.1 += 1;
            }
            entry
                .2
                .push(r.finished_at_ms.saturating_sub(r.started_at_ms));
        }
        let mut out: Vec<CapabilityStats> = acc
            .into_iter()
            .map(|((capability, pattern), (count, ok, mut lat))| {
                let mean = lat.iter().map(|&l| l as f64).sum::<f64>() / lat.len().max(1) as f64;
                CapabilityStats {
                    capability,
                    pattern,
                    count,
                    success_rate: ratio(ok, count),
                    median_latency_ms: median(&mut lat).unwrap_or(0),
                    mean_latency_ms: mean,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.capability, a.pattern).cmp(&(&b.capability, b.pattern)));
        Ok(out)
    }

    /// Analyses one trace (see [`crate::analyse()`]).
    pub fn analyse(&self, trace: &TraceId) -> Result<crate::Analysis> {
        Ok(analyse(&self.trace_objects(trace)?))
    }
}

/// The objects of a trace in **causal order**: every object after the objects it names as
/// parents (where they are in `objects`), and among objects whose parents are all placed the
/// earliest by (signed timestamp, id) first; objects of a forged cycle come last, by time.
/// Two objects signed in the same millisecond therefore never show a child before its
/// parent. This is the order `GET /v1/traces/{id}` returns and `pvl trace show` prints.
pub fn causal_order(objects: &[SignedObject]) -> Vec<&SignedObject> {
    let mut by_time: Vec<&SignedObject> = objects.iter().collect();
    by_time.sort_by_key(|o| (o.timestamp_ms(), o.id()));
    let by_id: HashMap<ObjectId, &SignedObject> = by_time.iter().map(|o| (o.id(), *o)).collect();
    crate::analyse::causal_order(&by_time, &by_id)
}

#[cfg(test)]
mod tests {
    use pvl_protocol::{Body, Event};

    use super::causal_order;
    use crate::testkit::{provider_key, sign};

    fn event(
        parents: &[&pvl_protocol::SignedObject],
        at: u64,
        name: &str,
    ) -> pvl_protocol::SignedObject {
        let trace = parents.first().map(|p| p.trace_id());
        sign(
            &provider_key(1),
            trace,
            parents,
            at,
            Body::Event(Event {
                event_type: "note".into(),
                about: Vec::new(),
                message: name.into(),
                attrs: Vec::new(),
            }),
        )
        .unwrap()
    }

    #[test]
    fn parents_come_before_children_even_in_the_same_millisecond() {
        let root = crate::testkit::intent(
            "echo",
            pvl_protocol::PatternHint::ContractNet,
            pvl_protocol::Strategy::LowestCost,
            None,
            &[],
            5,
            1,
        )
        .unwrap();
        let a = event(&[&root], 5, "a");
        let b = event(&[&a], 5, "b");
        let c = event(&[&b], 5, "c");
        let later = event(&[&root], 9, "later");
        let objects = vec![c.clone(), later.clone(), b.clone(), root.clone(), a.clone()];
        let order: Vec<_> = causal_order(&objects).iter().map(|o| o.id()).collect();
        let pos = |id| order.iter().position(|x| *x == id).unwrap();
        assert!(pos(root.id()) < pos(a.id()));
        assert!(pos(a.id()) < pos(b.id()));
        assert!(pos(b.id()) < pos(c.id()));
        assert_eq!(
            *order.last().unwrap(),
            later.id(),
            "later in time comes last"
        );
    }
}
