//! What this node's traces say about a capability: how each provider did and how each
//! pattern did. Feeds the adaptive choice ([`pvl_patterns::choose`]) and the requester's
//! observed reliabilities ([`pvl_patterns::select::ReliabilitySource`]).
//!
//! A capability's history is read from the store once, from the most recent
//! [`RECENT_TRACES`] traces asking for it (the root intent's, or a workflow stage's), and then
//! kept up to date one trace at a time: every run this node finishes is added when the next
//! request for the capability comes ([`HistoryCache`]), so no request waits for more than the
//! traces finished since the last one. Each trace is analysed by `pvl-trace`: a task that
//! finished well is a success; a task that failed, or that never finished in a trace that is
//! over, is a failure of its provider. A trace is a run of its detected pattern, a success
//! when it ended done.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pvl_patterns::select::ReliabilitySource;
use pvl_patterns::{PatternHistory, PatternRecord, ProviderRecord};
use pvl_protocol::{Body, PatternHint, PublicKey, SignedObject, TraceId};
use pvl_trace::{Pattern, TraceStatus, TraceStore};
use tracing::debug;

use crate::recorder::RecentRuns;

/// How many recent traces are read when a capability's history is first needed.
pub const RECENT_TRACES: usize = 200;

/// Histories by capability, each read once and then updated with every finished run.
#[derive(Default)]
pub struct HistoryCache {
    loaded: tokio::sync::Mutex<HashMap<String, Arc<StoreHistory>>>,
}

impl HistoryCache {
    /// The history of `capability`, with the runs in `finished` (traces this node ended
    /// since the last call for it) added: from `recent` when it holds them, else from the
    /// store. The caller makes sure they are written.
    pub async fn get(
        &self,
        store: &Arc<TraceStore>,
        recent: &Arc<RecentRuns>,
        capability: &str,
        finished: Vec<TraceId>,
    ) -> Arc<StoreHistory> {
        let mut loaded = self.loaded.lock().await;
        let current = loaded.get(capability).cloned();
        if let Some(history) = &current
            && finished.is_empty()
        {
            return history.clone();
        }
        let (store, recent, cap) = (store.clone(), recent.clone(), capability.to_owned());
        let updated = tokio::task::spawn_blocking(move || match current {
            Some(history) => {
                let mut history = (*history).clone();
                for trace in finished {
                    match recent.take(&trace) {
                        Some(objects) => history.add(&objects),
                        None => history.add_stored(&store, &trace),
                    }
                }
                history
            }
            None => StoreHistory::load(&store, &cap),
        })
        .await
        .map(Arc::new)
        .unwrap_or_default();
        loaded.insert(capability.to_owned(), updated.clone());
        updated
    }
}

/// A capability's history, read from the trace store.
#[derive(Debug, Default, Clone)]
pub struct StoreHistory {
    capability: String,
    providers: HashMap<PublicKey, (ProviderRecord, u64)>,
    patterns: HashMap<PatternHint, PatternRecord>,
    /// Every provider seen offering on an intent for the capability (awarded or not).
    bidders: HashSet<PublicKey>,
}

impl StoreHistory {
    /// Reads the history of `capability` from `store` (errors on single traces are skipped).
    pub fn load(store: &TraceStore, capability: &str) -> StoreHistory {
        let mut history = StoreHistory {
            capability: capability.to_owned(),
            ..StoreHistory::default()
        };
        let Ok(summaries) = store.recent_traces(RECENT_TRACES) else {
            return history;
        };
        for summary in summaries {
            // Roots of other capabilities are skipped unread (a workflow's root is
            // `workflow:<name>`: its stages may ask for the capability).
            let composite = summary
                .capability
                .as_deref()
                .is_some_and(|c| c.starts_with(pvl_protocol::vocab::WORKFLOW_CAPABILITY_PREFIX));
            if summary.capability.as_deref() != Some(capability) && !composite {
                continue;
            }
            history.add_stored(store, &summary.trace);
        }
        debug!(
            capability,
            providers = history.providers.len(),
            patterns = history.patterns.len(),
            "history loaded"
        );
        history
    }

    /// Adds one stored trace (nothing if it cannot be read or does not ask for the
    /// capability).
    fn add_stored(&mut self, store: &TraceStore, trace: &TraceId) {
        // The objects only: the analysis builds its own view of the graph.
        if let Ok(objects) = store.trace_objects(trace) {
            self.add(&objects);
        }
    }

    /// Adds one trace's tasks and, if it is over, its run.
    pub fn add(&mut self, objects: &[SignedObject]) {
        let capability = self.capability.as_str();
        let asks = objects
            .iter()
            .any(|o| matches!(o.body(), Body::Intent(i) if i.capability == capability));
        if !asks {
            return;
        }
        let intents: HashSet<_> = objects
            .iter()
            .filter(|o| matches!(o.body(), Body::Intent(i) if i.capability == capability))
            .map(SignedObject::id)
            .collect();
        self.bidders.extend(
            objects
                .iter()
                .filter(|o| matches!(o.body(), Body::Offer(b) if intents.contains(&b.intent)))
                .map(SignedObject::signer),
        );
        let analysis = pvl_trace::analyse(objects);
        let over = matches!(analysis.status, TraceStatus::Done | TraceStatus::Failed);
        for task in &analysis.tasks {
            if task.capability.as_deref() != Some(capability) {
                continue;
            }
            let (record, latency_sum) = self.providers.entry(task.provider).or_default();
            match task.ok {
                Some(true) => {
                    record.tasks += 1;
                    record.successes += 1;
                    if let Some(d) = task.duration_ms() {
                        *latency_sum += d;
                    }
                }
                Some(false) => record.tasks += 1,
                None if over => record.tasks += 1,
                None => {}
            }
            record.mean_latency_ms =
                (record.successes > 0).then(|| *latency_sum / record.successes);
        }
        if over && let Some(hint) = hint_of(analysis.pattern) {
            let record = self.patterns.entry(hint).or_default();
            record.runs += 1;
            if analysis.status == TraceStatus::Done {
                record.successes += 1;
            }
        }
    }

    /// How many providers have a record for the capability.
    pub fn providers_known(&self) -> usize {
        self.providers.len()
    }
}

fn hint_of(pattern: Pattern) -> Option<PatternHint> {
    Some(match pattern {
        Pattern::ContractNet => PatternHint::ContractNet,
        Pattern::Auction => PatternHint::Auction,
        Pattern::Workflow => PatternHint::Workflow,
        Pattern::Parallel => PatternHint::Parallel,
        Pattern::Consensus => PatternHint::Consensus,
        _ => return None,
    })
}

impl PatternHistory for StoreHistory {
    fn providers(&self, capability: &str) -> Vec<(PublicKey, ProviderRecord)> {
        if capability != self.capability {
            return Vec::new();
        }
        self.providers.iter().map(|(k, (r, _))| (*k, *r)).collect()
    }

    fn pattern(&self, capability: &str, pattern: PatternHint) -> PatternRecord {
        if capability != self.capability {
            return PatternRecord::default();
        }
        self.patterns.get(&pattern).copied().unwrap_or_default()
    }
}

impl pvl_patterns::History for StoreHistory {
    fn providers_known(&self, _capability: &str) -> usize {
        StoreHistory::providers_known(self)
    }
}

impl ReliabilitySource for StoreHistory {
    /// The provider's success rate for the capability, once it has two or more tasks.
    fn observed_bps(&self, provider: &PublicKey) -> Option<u16> {
        let (record, _) = self.providers.get(provider)?;
        (record.tasks >= 2).then(|| (record.successes * 10_000 / record.tasks) as u16)
    }

    /// The providers seen offering on this capability's intents or doing its tasks.
    fn provider_count(&self) -> Option<usize> {
        Some(self.bidders.len().max(self.providers.len()))
    }
}
