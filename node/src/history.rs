//! What this node's traces say about a capability: how each provider did and how each
//! pattern did. Feeds the adaptive choice ([`pvl_patterns::choose`]) and the requester's
//! observed reliabilities ([`pvl_patterns::select::ReliabilitySource`]).
//!
//! Built on demand (and cached, see [`HistoryCache`]) from the most recent
//! [`RECENT_TRACES`] traces asking for the capability (the root intent's, or a workflow
//! stage's), analysed by `pvl-trace`: a task that
//! finished well is a success; a task that failed, or that never finished in a trace that is
//! over, is a failure of its provider. A trace is a run of its detected pattern, a success
//! when it ended done.

use std::collections::HashMap;

use pvl_patterns::select::ReliabilitySource;
use pvl_patterns::{PatternHistory, PatternRecord, ProviderRecord};
use pvl_protocol::{Body, PatternHint, PublicKey};
use pvl_trace::{Pattern, TraceStatus, TraceStore};
use tracing::debug;

/// How many recent traces are looked at.
pub const RECENT_TRACES: usize = 200;

/// How long a loaded history is reused before it is read again anyway.
pub const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// While rounds of a capability are in flight, its history is read again at most this often.
pub const BUSY_RELOAD: std::time::Duration = std::time::Duration::from_millis(500);

/// A loaded history: when, at which generation (runs finished), and what it says.
type Loaded = (std::time::Instant, u64, std::sync::Arc<StoreHistory>);

/// Histories by capability. Reading one decodes a few thousand objects, far too much for
/// every intent of a busy requester, so a history is reused until a run of its capability
/// finishes (the history changed), and while other runs are in flight at most every
/// [`BUSY_RELOAD`]; in any case it is read again after [`FRESH_FOR`].
#[derive(Default)]
pub struct HistoryCache {
    loaded: tokio::sync::Mutex<HashMap<String, Loaded>>,
}

impl HistoryCache {
    /// The history of `capability`, whose runs have finished `generation` times and of which
    /// `in_flight` are running. Concurrent callers wait for one read instead of each doing it.
    pub async fn get(
        &self,
        store: &std::sync::Arc<TraceStore>,
        capability: &str,
        generation: u64,
        in_flight: usize,
    ) -> std::sync::Arc<StoreHistory> {
        let mut loaded = self.loaded.lock().await;
        if let Some((at, seen, history)) = loaded.get(capability) {
            let age = at.elapsed();
            let unchanged = *seen == generation;
            let busy = in_flight > 0 && age < BUSY_RELOAD;
            if age < FRESH_FOR && (unchanged || busy) {
                return history.clone();
            }
        }
        let (store, cap) = (store.clone(), capability.to_owned());
        let history = tokio::task::spawn_blocking(move || StoreHistory::load(&store, &cap))
            .await
            .map(std::sync::Arc::new)
            .unwrap_or_default();
        loaded.insert(
            capability.to_owned(),
            (std::time::Instant::now(), generation, history.clone()),
        );
        history
    }
}

/// A capability's history, read from the trace store.
#[derive(Debug, Default, Clone)]
pub struct StoreHistory {
    capability: String,
    providers: HashMap<PublicKey, (ProviderRecord, u64)>,
    patterns: HashMap<PatternHint, PatternRecord>,
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
                .is_some_and(|c| c.starts_with("workflow:"));
            if summary.capability.as_deref() != Some(capability) && !composite {
                continue;
            }
            let Ok(objects) = store.trace(&summary.trace).and_then(|dag| dag.objects()) else {
                continue;
            };
            let asks = objects
                .iter()
                .any(|o| matches!(o.body(), Body::Intent(i) if i.capability == capability));
            if !asks {
                continue;
            }
            let analysis = pvl_trace::analyse(&objects);
            let over = matches!(analysis.status, TraceStatus::Done | TraceStatus::Failed);
            for task in &analysis.tasks {
                if task.capability.as_deref() != Some(capability) {
                    continue;
                }
                let (record, latency_sum) = history.providers.entry(task.provider).or_default();
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
            }
            if over && let Some(hint) = hint_of(analysis.pattern) {
                let record = history.patterns.entry(hint).or_default();
                record.runs += 1;
                if analysis.status == TraceStatus::Done {
                    record.successes += 1;
                }
            }
        }
        for (record, latency_sum) in history.providers.values_mut() {
            record.mean_latency_ms =
                (record.successes > 0).then(|| *latency_sum / record.successes);
        }
        debug!(
            capability,
            providers = history.providers.len(),
            patterns = history.patterns.len(),
            "history loaded"
        );
        history
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

impl ReliabilitySource for StoreHistory {
    /// The provider's success rate for the capability, once it has two or more tasks.
    fn observed_bps(&self, provider: &PublicKey) -> Option<u16> {
        let (record, _) = self.providers.get(provider)?;
        (record.tasks >= 2).then(|| (record.successes * 10_000 / record.tasks) as u16)
    }
}
