//! Prometheus metrics, served at `GET /metrics` on the control API (behind the same bearer
//! token as every other route).
//!
//! One [`prometheus_client`] registry per node holds two kinds of series:
//!
//! * **Recorded where the event happens**, as atomic counters and histograms (no lock on the
//!   message path): rounds started / completed / failed by pattern and reason, request→first
//!   award and request→receipt latencies (the actor, from the engine's actions), offers
//!   received, offers turned down (the rejects this node signs) and direct objects refused by kind and reason (the actor's admission), objects
//!   stored by kind (the store writer) and executor durations by capability (the actor's jobs).
//!   libp2p's own swarm, gossipsub, Kademlia, identify and ping series are recorded by pvl-net's
//!   event loop into the same registry (`libp2p_` prefix, [`pvl_net::new_with_metrics`]).
//! * **Read when scraped**: what other parts already keep (connected peers, routing table,
//!   store size and object count, engine runs and jobs, the engine's refusals by reason, queue
//!   depths). [`Metrics::encode`] takes those readings and sets the gauges, then encodes the
//!   whole registry; scrapes are serialised so the readings of one never mix with another's.
//!
//! Label values are bounded: patterns and failure reasons are closed sets, object kinds and
//! refusal codes are the protocol's, and capabilities are those of this node's executors.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets, seconds: 5 ms to ~82 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.005, 2.0, 15)
}

/// Labels: a coordination pattern.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PatternLabel {
    /// `contract-net`, `auction`, `workflow`, `parallel`, `consensus`, or `resumed` for a run
    /// taken up again after a restart (its pattern is not kept).
    pub pattern: String,
}

/// Labels: a failed round.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The pattern, as in [`PatternLabel`].
    pub pattern: String,
    /// The failure reason's name (`no-offers`, `deadline-passed`, ...).
    pub reason: String,
}

/// Labels: an object kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The protocol object kind.
    pub kind: String,
}

/// Labels: a refused object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The protocol object kind.
    pub kind: String,
    /// The admission refusal's code.
    pub reason: String,
}

/// Labels: a refusal reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The refusal's code.
    pub reason: String,
}

/// Labels: one executor run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutorLabels {
    /// The capability the executor serves.
    pub capability: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// Labels: a queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// `jobs` (actor jobs running), `recorder` (objects waiting for the store writer),
    /// `publishes` (publications waiting for a subscribed peer).
    pub queue: String,
}

type U64Counter = Counter<u64, AtomicU64>;
type I64Gauge = Gauge<i64, std::sync::atomic::AtomicI64>;

/// The node's metrics. Cheap to clone: every series is shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Rounds this node started as requester, by pattern.
    pub rounds_started: Family<PatternLabel, U64Counter>,
    /// Rounds that ended with the work done, by pattern.
    pub rounds_completed: Family<PatternLabel, U64Counter>,
    /// Rounds that ended without the work done, by pattern and reason.
    pub rounds_failed: Family<FailureLabels, U64Counter>,
    /// Offers admitted (received directly and accepted by the engine).
    pub offers_received: U64Counter,
    /// Offers this node turned down as requester (from the signed rejects it records), by
    /// reject code (`not-selected`, `over-budget`, ...).
    pub offers_rejected: Family<ReasonLabel, U64Counter>,
    /// Direct objects the engine refused at admission, by kind and reason (`kind="offer"`:
    /// offers refused).
    pub refused: Family<RefusedLabels, U64Counter>,
    /// From a request to its first award, seconds, by pattern.
    pub intent_to_award: Family<PatternLabel, Histogram>,
    /// From a request to its outcome with a countersigned receipt, seconds, by pattern.
    pub intent_to_receipt: Family<PatternLabel, Histogram>,
    /// New objects written to the trace store, by kind.
    pub objects_stored: Family<KindLabel, U64Counter>,
    /// Executor runs, seconds, by capability and result.
    pub executor_duration: Family<ExecutorLabels, Histogram>,
    scraped: Scraped,
}

/// The series set from readings at scrape time.
#[derive(Clone, Default)]
struct Scraped {
    peers: I64Gauge,
    routing_table: I64Gauge,
    store_bytes: I64Gauge,
    store_objects: I64Gauge,
    runs_running: I64Gauge,
    queues: Family<QueueLabel, I64Gauge>,
    engine_refusals: Family<ReasonLabel, U64Counter>,
    flood: Family<ReasonLabel, U64Counter>,
    banned: I64Gauge,
}

/// What the control API reads from the node's parts when scraped.
#[derive(Debug, Default)]
pub struct Readings {
    /// Peers connected.
    pub peers: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
    /// The trace store's size on disk, bytes.
    pub store_bytes: u64,
    /// Objects in the trace store.
    pub store_objects: u64,
    /// Runs the engine has open.
    pub runs_running: usize,
    /// Actor jobs running.
    pub jobs: usize,
    /// Objects waiting for the store writer.
    pub recorder_queue: usize,
    /// Publications waiting for a subscribed peer.
    pub queued_publishes: usize,
    /// The engine's refusals so far, by code (monotonic).
    pub refusals: Vec<(String, u64)>,
    /// Flood control so far (monotonic): `gossip-rate-limited`, `direct-rate-limited`,
    /// `offence`, `ban` (SPEC.md §20).
    pub flood: Vec<(&'static str, u64)>,
    /// Peers banned now.
    pub banned: usize,
}

fn gauge(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    /// A registry with every pvl series registered (prefix `pvl`).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let histograms = || {
            Family::<PatternLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(latency_buckets())
            })
        };
        let mut metrics = Metrics {
            // Replaced by the registry holding every series, below.
            registry: Arc::default(),
            rounds_started: Family::default(),
            rounds_completed: Family::default(),
            rounds_failed: Family::default(),
            offers_received: Counter::default(),
            offers_rejected: Family::default(),
            refused: Family::default(),
            intent_to_award: histograms(),
            intent_to_receipt: histograms(),
            objects_stored: Family::default(),
            executor_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            scraped: Scraped::default(),
        };
        let pvl = registry.sub_registry_with_prefix("pvl");
        pvl.register(
            "rounds_started",
            "Rounds this node started as requester",
            metrics.rounds_started.clone(),
        );
        pvl.register(
            "rounds_completed",
            "Rounds that ended with the work done",
            metrics.rounds_completed.clone(),
        );
        pvl.register(
            "rounds_failed",
            "Rounds that ended without the work done, by reason",
            metrics.rounds_failed.clone(),
        );
        pvl.register(
            "offers_received",
            "Offers received directly and admitted",
            metrics.offers_received.clone(),
        );
        pvl.register(
            "offers_rejected",
            "Offers this node turned down as requester, by reject code",
            metrics.offers_rejected.clone(),
        );
        pvl.register(
            "objects_refused",
            "Direct objects refused at admission, by kind and reason",
            metrics.refused.clone(),
        );
        pvl.register_with_unit(
            "intent_to_award",
            "From a request to its first award",
            Unit::Seconds,
            metrics.intent_to_award.clone(),
        );
        pvl.register_with_unit(
            "intent_to_receipt",
            "From a request to its outcome with a countersigned receipt",
            Unit::Seconds,
            metrics.intent_to_receipt.clone(),
        );
        pvl.register(
            "objects_stored",
            "Objects written to the trace store (new, or a receipt upgraded with its countersignature)",
            metrics.objects_stored.clone(),
        );
        pvl.register_with_unit(
            "executor_duration",
            "Executor runs by capability and result",
            Unit::Seconds,
            metrics.executor_duration.clone(),
        );
        let s = &metrics.scraped;
        pvl.register("peers_connected", "Peers connected", s.peers.clone());
        pvl.register(
            "routing_table_peers",
            "Peers in the Kademlia routing table",
            s.routing_table.clone(),
        );
        pvl.register_with_unit(
            "store_size",
            "The trace store's size on disk",
            Unit::Bytes,
            s.store_bytes.clone(),
        );
        pvl.register(
            "store_objects",
            "Objects in the trace store",
            s.store_objects.clone(),
        );
        pvl.register(
            "runs_running",
            "Runs the engine has open",
            s.runs_running.clone(),
        );
        pvl.register("queue_depth", "Items waiting in a queue", s.queues.clone());
        pvl.register(
            "engine_refusals",
            "Objects the engine refused, by reason",
            s.engine_refusals.clone(),
        );
        pvl.register(
            "flood_control",
            "Flood control: messages over budget, offences and bans (SPEC.md §20), by event",
            s.flood.clone(),
        );
        pvl.register("peers_banned", "Peers banned now", s.banned.clone());
        metrics.registry = Arc::new(Mutex::new(registry));
        metrics
    }

    /// Runs `f` on the registry (pvl-net registers libp2p's series through it).
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut registry)
    }

    /// Sets the scrape-time series from `readings` and encodes the registry in the
    /// Prometheus/OpenMetrics text format.
    pub fn encode(&self, readings: &Readings) -> Result<String, std::fmt::Error> {
        // One scrape at a time: the registry lock also orders the counter updates below.
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let s = &self.scraped;
        s.peers.set(gauge(readings.peers));
        s.routing_table.set(gauge(readings.routing_table));
        s.store_bytes.set(gauge(readings.store_bytes));
        s.store_objects.set(gauge(readings.store_objects));
        s.runs_running.set(gauge(readings.runs_running));
        for (queue, depth) in [
            ("jobs", readings.jobs),
            ("recorder", readings.recorder_queue),
            ("publishes", readings.queued_publishes),
        ] {
            s.queues
                .get_or_create(&QueueLabel {
                    queue: queue.to_owned(),
                })
                .set(gauge(depth));
        }
        s.banned.set(gauge(readings.banned));
        let monotonic = readings
            .refusals
            .iter()
            .map(|(reason, count)| (&s.engine_refusals, reason.as_str(), *count))
            .chain(
                readings
                    .flood
                    .iter()
                    .map(|(event, count)| (&s.flood, *event, *count)),
            );
        for (family, reason, count) in monotonic {
            let counter = family.get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            });
            let seen = counter.get();
            if count > seen {
                counter.inc_by(count - seen);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }

    /// Counts a round started by this node.
    pub fn round_started(&self, pattern: &str) {
        self.rounds_started
            .get_or_create(&PatternLabel {
                pattern: pattern.to_owned(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scraped_counters_follow_the_readings_and_never_go_back() {
        let metrics = Metrics::new();
        metrics.round_started("workflow");
        let mut readings = Readings {
            refusals: vec![("unknown-trace".into(), 3)],
            ..Readings::default()
        };
        let text = metrics.encode(&readings).expect("encodes");
        assert!(
            text.contains("pvl_rounds_started_total{pattern=\"workflow\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pvl_engine_refusals_total{reason=\"unknown-trace\"} 3"),
            "{text}"
        );
        readings.refusals = vec![("unknown-trace".into(), 5)];
        readings.flood = vec![("ban", 1)];
        readings.banned = 1;
        let text = metrics.encode(&readings).expect("encodes");
        assert!(
            text.contains("pvl_engine_refusals_total{reason=\"unknown-trace\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("pvl_flood_control_total{reason=\"ban\"} 1"),
            "{text}"
        );
        assert!(text.contains("pvl_peers_banned 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
