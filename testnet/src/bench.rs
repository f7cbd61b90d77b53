//! `pvl-testnet bench`: measurements on a fresh testnet, all through the control API of real
//! processes:
//!
//! 1. gossip: node-0 publishes intents for a capability nobody serves; every other node's
//!    event stream (`/v1/events`) timestamps their arrival. Delivery ratio and latency p50/p99
//!    from the publish call, and from each intent's signed timestamp (the gossip alone); how
//!    long node-0's publish calls took; the nodes' CPU time per intent.
//! 2. contract-net latency: sequential rounds from node-0 (`echo`, an offer from every provider
//!    awaited); intent->award and intent->receipt from the objects' timestamps in the trace.
//! 3. throughput: contract-net rounds/s sustained by one requester under concurrent
//!    `POST /v1/intents` with `wait`.
//! 4. consensus round latency: sequential rounds from node-0 with a committee of up to 7 other
//!    nodes; proposal -> quorum certificate from the objects' timestamps.
//! 5. workflow coordination overhead: sequential 3-stage workflows (echo -> sha256 ->
//!    wordcount); per stage, its wall time (first intent to end) minus the task's own
//!    execution time (from the receipt).
//! 6. resources: RSS (`VmRSS`) and CPU time (`/proc/PID/stat`) of every node at the end.
//!
//! Around the throughput phase the benchmark reads every node's work counters (`counters` in
//! `GET /v1/status`: signatures, verifications, gossip and direct messages, store writes) and
//! CPU time, and divides the difference by the completed rounds: what one contract-net round
//! costs the whole network, split into the requester (node-0) and all providers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pvl_api::{Client, Counters, Event, ObjectView, Outcome, PublishIntent, Published};
use pvl_protocol::{Kind, ObjectId};
use serde::Serialize;

use crate::procs;
use crate::stats::{mean, percentile};
use crate::testnet::{Testnet, UpOptions};

/// Options of `bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Write the results here as JSON.
    pub json: Option<PathBuf>,
    /// Gossip: intents to publish.
    pub intents: usize,
    /// Latency: sequential rounds.
    pub rounds: usize,
    /// Throughput: rounds in all.
    pub load_rounds: usize,
    /// Throughput: concurrent requests.
    pub concurrency: usize,
    /// Testnet directory (fresh under the temporary directory if `None`).
    pub dir: Option<PathBuf>,
}

/// Gossip results.
#[derive(Debug, Serialize)]
pub struct Gossip {
    /// Intents published.
    pub intents: usize,
    /// (intent, receiver) pairs that arrived.
    pub deliveries: usize,
    /// (intent, receiver) pairs expected.
    pub expected: usize,
    /// deliveries / expected.
    pub delivery_ratio: f64,
    /// Publish-to-arrival latency, ms.
    pub p50_ms: Option<f64>,
    /// Publish-to-arrival latency, ms.
    pub p99_ms: Option<f64>,
    /// Worst latency, ms.
    pub max_ms: Option<f64>,
    /// How long node-0's `POST /v1/intents` took (it answers once the intent is out), ms.
    pub publish_call_p50_ms: Option<f64>,
    /// How long node-0's `POST /v1/intents` took, ms.
    pub publish_call_p99_ms: Option<f64>,
    /// From the intent's signed timestamp (taken when it goes out) to its arrival, ms: the
    /// gossip alone, without the publisher's API call before it. Millisecond resolution
    /// (the timestamp's); every clock is this machine's.
    pub signed_p50_ms: Option<f64>,
    /// From the intent's signed timestamp to its arrival, ms.
    pub signed_p99_ms: Option<f64>,
    /// Wall time from the first publish call to the end of the wait for the last arrivals, s.
    pub duration_s: f64,
    /// CPU time of all node processes over that time, divided by the intents published, ms
    /// (it includes what the nodes do anyway: about 0.2 core on a quiet 100-node testnet).
    pub cpu_ms_per_intent: Option<f64>,
}

/// Sequential contract-net latency.
#[derive(Debug, Serialize)]
pub struct RoundLatency {
    /// Rounds run.
    pub rounds: usize,
    /// Rounds that completed.
    pub completed: usize,
    /// Offers awaited per round.
    pub min_offers: usize,
    /// Intent to award, ms.
    pub award_p50_ms: Option<f64>,
    /// Intent to award, ms.
    pub award_p99_ms: Option<f64>,
    /// Intent to provider-signed receipt, ms.
    pub receipt_p50_ms: Option<f64>,
    /// Intent to provider-signed receipt, ms.
    pub receipt_p99_ms: Option<f64>,
}

/// Concurrent contract-net throughput.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// Rounds submitted.
    pub rounds: usize,
    /// Concurrent requests.
    pub concurrency: usize,
    /// Offers that let the requester select early.
    pub min_offers: usize,
    /// Rounds completed.
    pub completed: usize,
    /// Rounds failed, by reason.
    pub failed: HashMap<String, usize>,
    /// Wall time, s.
    pub seconds: f64,
    /// completed / seconds.
    pub rounds_per_s: f64,
    /// What one completed round cost, from the counters read before and after.
    pub per_round: Option<RoundCost>,
}

/// The work counters of one or more nodes (the `counters` field of `GET /v1/status`) and their
/// CPU time; per round when divided by the rounds completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Work {
    /// ed25519 signatures made.
    pub signatures: f64,
    /// ed25519 signatures checked.
    pub verifications: f64,
    /// Gossip messages published (once per topic).
    pub gossip_published: f64,
    /// Gossip messages received and validated.
    pub gossip_received: f64,
    /// Received gossip that repeated an object already received.
    pub gossip_duplicates: f64,
    /// Direct messages sent.
    pub direct_sent: f64,
    /// Direct messages received.
    pub direct_received: f64,
    /// Objects written to trace stores.
    pub store_writes: f64,
    /// Store batches those objects were written in (each one insert call).
    pub store_batches: f64,
    /// sled keys those batches wrote.
    pub store_keys: f64,
    /// User + system CPU time of the node processes, ms.
    pub cpu_ms: f64,
}

impl Work {
    /// One node's reading: its status counters and its process CPU time.
    fn read(c: &Counters, cpu_ticks: Option<u64>) -> Work {
        Work {
            signatures: c.signatures as f64,
            verifications: c.verifications as f64,
            gossip_published: c.gossip_published as f64,
            gossip_received: c.gossip_received as f64,
            gossip_duplicates: c.gossip_duplicates as f64,
            direct_sent: c.direct_sent as f64,
            direct_received: c.direct_received as f64,
            store_writes: c.store_writes as f64,
            store_batches: c.store_batches as f64,
            store_keys: c.store_keys as f64,
            cpu_ms: ticks_to_ms(cpu_ticks.unwrap_or(0)),
        }
    }

    fn fields(&self) -> [f64; 11] {
        [
            self.signatures,
            self.verifications,
            self.gossip_published,
            self.gossip_received,
            self.gossip_duplicates,
            self.direct_sent,
            self.direct_received,
            self.store_writes,
            self.store_batches,
            self.store_keys,
            self.cpu_ms,
        ]
    }

    fn from_fields(f: [f64; 11]) -> Work {
        let [
            signatures,
            verifications,
            gossip_published,
            gossip_received,
            gossip_duplicates,
            direct_sent,
            direct_received,
            store_writes,
            store_batches,
            store_keys,
            cpu_ms,
        ] = f;
        Work {
            signatures,
            verifications,
            gossip_published,
            gossip_received,
            gossip_duplicates,
            direct_sent,
            direct_received,
            store_writes,
            store_batches,
            store_keys,
            cpu_ms,
        }
    }

    /// Combines two readings field by field.
    fn zip(&self, other: &Work, op: impl Fn(f64, f64) -> f64) -> Work {
        let (a, b) = (self.fields(), other.fields());
        Work::from_fields(std::array::from_fn(|i| op(a[i], b[i])))
    }

    /// Every field divided by `n`.
    fn per(&self, n: f64) -> Work {
        let f = self.fields();
        Work::from_fields(std::array::from_fn(|i| f[i] / n))
    }
}

/// What one completed contract-net round cost during the throughput phase (counter differences
/// over all nodes divided by the rounds completed).
#[derive(Debug, Clone, Serialize)]
pub struct RoundCost {
    /// Rounds the differences are divided by.
    pub rounds: usize,
    /// Summed over every node.
    pub total: Work,
    /// node-0, the requester.
    pub requester: Work,
    /// Summed over the other nodes, the providers.
    pub providers: Work,
}

/// Reads every node's work counters and CPU time (index = node index).
fn read_work(testnet: &Testnet) -> Vec<Work> {
    testnet
        .state
        .nodes
        .iter()
        .map(|node| {
            let counters = Client::open(&node.dir)
                .and_then(|api| api.status())
                .map(|s| s.counters)
                .unwrap_or_default();
            let ticks = testnet.pid(node.index).and_then(procs::cpu_ticks);
            Work::read(&counters, ticks)
        })
        .collect()
}

/// The cost per round between two readings of [`read_work`].
fn round_cost(before: &[Work], after: &[Work], rounds: usize) -> Option<RoundCost> {
    if rounds == 0 || before.len() != after.len() || before.is_empty() {
        return None;
    }
    let n = rounds as f64;
    let diffs: Vec<Work> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.zip(b, |x, y| (x - y).max(0.0)))
        .collect();
    let sum = |ws: &[Work]| {
        ws.iter()
            .fold(Work::default(), |acc, w| acc.zip(w, |x, y| x + y))
    };
    let requester = diffs[0].per(n);
    let providers = sum(&diffs[1..]).per(n);
    Some(RoundCost {
        rounds,
        total: sum(&diffs).per(n),
        requester,
        providers,
    })
}

/// Consensus rounds: proposal to quorum certificate.
#[derive(Debug, Serialize)]
pub struct ConsensusLatency {
    /// Rounds attempted.
    pub rounds: usize,
    /// Rounds whose award was approved.
    pub approved: usize,
    /// Committee size.
    pub members: usize,
    /// Median proposal -> certificate, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

/// Workflow stages: wall time minus execution time.
#[derive(Debug, Serialize)]
pub struct WorkflowOverhead {
    /// Workflows run.
    pub runs: usize,
    /// Stages measured.
    pub stages: usize,
    /// Median coordination overhead per stage, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
}

/// One node's resource use.
#[derive(Debug, Serialize)]
pub struct Resources {
    /// `node-i`.
    pub node: String,
    /// VmRSS, KiB.
    pub rss_kib: Option<u64>,
    /// User + system CPU time, s.
    pub cpu_s: Option<f64>,
    /// Peers connected at the end (`connected_peers` of `pvl status`).
    pub connections: Option<u64>,
}

/// Everything `bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Nodes in the testnet.
    pub nodes: usize,
    /// CPU cores available to them (and to this benchmark).
    pub cores: usize,
    /// From the first `pvl run` to a ready testnet (see `testnet::Readiness`), s.
    pub up_s: f64,
    /// From ready to quiet (the nodes together under [`QUIET_CORES`] core; or
    /// [`QUIET_TIMEOUT`] if they never were), s: the measurements start then. Nodes that start
    /// together connect, look each other up and advertise for a while after the testnet is
    /// ready, and on a small machine that start-up traffic, not the network, would set every
    /// latency measured during it.
    pub quiet_s: f64,
    /// Gossip delivery.
    pub gossip: Gossip,
    /// Sequential round latency.
    pub contract_net: RoundLatency,
    /// Throughput under concurrency.
    pub throughput: Throughput,
    /// Consensus round latency.
    pub consensus: ConsensusLatency,
    /// Workflow coordination overhead per stage.
    pub workflow: WorkflowOverhead,
    /// Mean RSS, MiB.
    pub rss_mean_mib: Option<f64>,
    /// Largest RSS, MiB.
    pub rss_max_mib: Option<f64>,
    /// Mean connected peers per node at the end.
    pub connections_mean: Option<f64>,
    /// Most connected peers of any node at the end.
    pub connections_max: Option<u64>,
    /// Most connected peers of any node once the load is over: sampled when every node is
    /// down to `max_peers` (32, pvl's default) or [`SETTLE_TIMEOUT`] after the end.
    pub connections_settled_max: Option<u64>,
    /// How long after the end of the load that sample was taken, s.
    pub settle_s: f64,
    /// Per node.
    pub resources: Vec<Resources>,
}

/// Runs the benchmark on a fresh testnet and prints the table (and writes JSON if asked).
pub fn run(options: &BenchOptions, pvl_bin: PathBuf) -> Result<Report> {
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => crate::demo::fresh_dir("pvl-bench")?,
    };
    let up = UpOptions::local(options.nodes, dir.clone(), Duration::from_secs(2));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    out!(
        "==> bench: {} nodes on {cores} core(s), testnet in {}",
        options.nodes,
        dir.display()
    );
    procs::own(dir.clone());
    let started = Instant::now();
    let testnet = Testnet::up(&up, pvl_bin)?;
    let up_s = started.elapsed().as_secs_f64();
    out!("    testnet ready after {up_s:.1} s (node directories, start, connections)");
    let (quiet_s, quiet) = wait_quiet(&testnet);
    if quiet {
        out!(
            "    nodes quiet after {quiet_s:.1} s more (together under {QUIET_CORES} core over {} s)",
            QUIET_WINDOW.as_secs()
        );
    } else {
        out!("    nodes still busy after {quiet_s:.1} s more: measuring anyway");
    }
    out!("==> gossip: {} intents from node-0", options.intents);
    let gossip = gossip(&testnet, options.intents)?;
    out!(
        "==> contract-net latency: {} sequential rounds",
        options.rounds
    );
    let contract_net = round_latency(&testnet, options.rounds)?;
    out!(
        "==> throughput: {} rounds, {} concurrent",
        options.load_rounds,
        options.concurrency
    );
    let throughput = throughput(&testnet, options.load_rounds, options.concurrency)?;
    out!("==> consensus: {} sequential rounds", options.rounds);
    let consensus = consensus(&testnet, options.rounds)?;
    out!("==> workflow: {} sequential 3-stage runs", options.rounds);
    let workflow = workflow_overhead(&testnet, options.rounds)?;
    let resources = resources(&testnet);
    let rss: Vec<f64> = resources
        .iter()
        .filter_map(|r| r.rss_kib.map(|k| k as f64 / 1024.0))
        .collect();
    let connections: Vec<u64> = resources.iter().filter_map(|r| r.connections).collect();
    let (connections_settled_max, settle_s) = settle(&testnet);
    let report = Report {
        nodes: options.nodes,
        cores,
        up_s,
        quiet_s,
        connections_mean: mean(&connections.iter().map(|&c| c as f64).collect::<Vec<_>>()),
        connections_max: connections.iter().copied().max(),
        connections_settled_max,
        settle_s,
        gossip,
        contract_net,
        throughput,
        consensus,
        workflow,
        rss_mean_mib: mean(&rss),
        rss_max_mib: rss.iter().copied().reduce(f64::max),
        resources,
    };
    testnet.down()?;
    print_table(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        out!("JSON written to {}", path.display());
    }
    Ok(report)
}

fn gossip(testnet: &Testnet, intents: usize) -> Result<Gossip> {
    let n = testnet.state.nodes.len();
    let publisher = Client::open(&testnet.state.nodes[0].dir)?;
    let mut collectors = Vec::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for node in &testnet.state.nodes[1..] {
        let events = Client::open(&node.dir)?.events(None)?;
        let stop = stop.clone();
        collectors.push(std::thread::spawn(move || {
            // Per intent: when it arrived, and how long after its signed timestamp.
            let mut arrivals: HashMap<ObjectId, (Instant, f64)> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some((at, Event::Object(object))) =
                    events.next_within(Duration::from_millis(100))
                    && object.kind == Kind::Intent
                {
                    let arrived_ms = unix_ms_at(at);
                    let after_signing = arrived_ms - object.timestamp_ms as f64;
                    arrivals
                        .entry(object.trace_id)
                        .or_insert((at, after_signing));
                }
            }
            arrivals
        }));
    }
    let cpu_before = cpu_ms_of_all(testnet);
    let phase = Instant::now();
    let mut published: HashMap<ObjectId, Instant> = HashMap::new();
    let mut calls = Vec::with_capacity(intents);
    for i in 0..intents {
        let at = Instant::now();
        let answer = publisher.publish(&PublishIntent {
            capability: "bench-nobody-serves-this".into(),
            input: Some(format!("gossip probe {i}")),
            expires_in_ms: Some(5_000),
            deadline_ms: Some(10_000),
            ..PublishIntent::default()
        })?;
        calls.push(at.elapsed().as_secs_f64() * 1000.0);
        published.insert(answer.trace_id, at);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let duration_s = phase.elapsed().as_secs_f64();
    let cpu_ms_per_intent = match (cpu_before, cpu_ms_of_all(testnet)) {
        (Some(before), Some(after)) if !published.is_empty() => {
            Some((after - before) / published.len() as f64)
        }
        _ => None,
    };
    let (mut latencies, mut after_signing) = (Vec::new(), Vec::new());
    for collector in collectors {
        let arrivals = collector
            .join()
            .map_err(|_| anyhow::anyhow!("an event collector panicked"))?;
        for (trace, (at, signed)) in arrivals {
            if let Some(sent) = published.get(&trace) {
                latencies.push(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
                after_signing.push(signed.max(0.0));
            }
        }
    }
    let expected = published.len() * (n - 1);
    Ok(Gossip {
        intents: published.len(),
        deliveries: latencies.len(),
        expected,
        delivery_ratio: latencies.len() as f64 / expected.max(1) as f64,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: latencies.iter().copied().reduce(f64::max),
        publish_call_p50_ms: percentile(&calls, 50.0),
        publish_call_p99_ms: percentile(&calls, 99.0),
        signed_p50_ms: percentile(&after_signing, 50.0),
        signed_p99_ms: percentile(&after_signing, 99.0),
        duration_s,
        cpu_ms_per_intent,
    })
}

/// User + system CPU time of every node process, ms; `None` when a node's is unknown.
fn cpu_ms_of_all(testnet: &Testnet) -> Option<f64> {
    let ticks: Option<Vec<u64>> = testnet
        .state
        .nodes
        .iter()
        .map(|node| testnet.pid(node.index).and_then(procs::cpu_ticks))
        .collect();
    Some(ticks_to_ms(ticks?.iter().sum()))
}

/// CPU time in clock ticks (`/proc/PID/stat`), as milliseconds.
fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / procs::TICKS_PER_SECOND as f64
}

/// The wall-clock time (unix ms) of a moment measured on the monotonic clock a moment ago.
fn unix_ms_at(at: Instant) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(at.elapsed()).as_secs_f64() * 1000.0
}

fn round_latency(testnet: &Testnet, rounds: usize) -> Result<RoundLatency> {
    let api = waiting_client(testnet)?;
    let min_offers = testnet.state.nodes.len() - 1;
    let (mut award, mut receipt) = (Vec::new(), Vec::new());
    let mut completed = 0;
    for i in 0..rounds {
        let answer = api.publish(&PublishIntent {
            capability: "echo".into(),
            input: Some(format!("round {i}")),
            budget: Some(1000),
            deadline_ms: Some(60_000),
            min_offers: Some(min_offers),
            window_ms: Some(10_000),
            wait: true,
            ..PublishIntent::default()
        })?;
        if !completed_run(&answer) {
            continue;
        }
        completed += 1;
        let trace = api.trace(&answer.trace_id.to_string())?;
        let (a, r) = award_and_receipt_ms(&trace.objects);
        award.extend(a);
        receipt.extend(r);
    }
    Ok(RoundLatency {
        rounds,
        completed,
        min_offers,
        award_p50_ms: percentile(&award, 50.0),
        award_p99_ms: percentile(&award, 99.0),
        receipt_p50_ms: percentile(&receipt, 50.0),
        receipt_p99_ms: percentile(&receipt, 99.0),
    })
}

/// Sequential consensus rounds from node-0, the committee being up to 7 other nodes (their
/// default policy approves).
fn consensus(testnet: &Testnet, rounds: usize) -> Result<ConsensusLatency> {
    let api = waiting_client(testnet)?;
    let members: Vec<String> = testnet.state.nodes[1..]
        .iter()
        .take(7)
        .map(|n| n.peer_id.clone())
        .collect();
    let min_offers = testnet.state.nodes.len() - 1;
    let mut latencies = Vec::new();
    for i in 0..rounds {
        let answer = api.publish(&PublishIntent {
            capability: "echo".into(),
            input: Some(format!("approve {i}")),
            committee: Some(members.clone()),
            min_offers: Some(min_offers),
            window_ms: Some(10_000),
            wait: true,
            ..PublishIntent::default()
        })?;
        if !completed_run(&answer) {
            continue;
        }
        let trace = api.trace(&answer.trace_id.to_string())?;
        if let (Some(p), Some(q)) = (
            first_of(&trace.objects, Kind::Proposal),
            first_of(&trace.objects, Kind::QuorumCert),
        ) {
            latencies.push(q.saturating_sub(p) as f64);
        }
    }
    Ok(ConsensusLatency {
        rounds,
        approved: latencies.len(),
        members: members.len(),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
    })
}

/// The workflow the benchmark runs.
const BENCH_WORKFLOW: &str = "[[stage]]\nname = \"fetch\"\ncapability = \"echo\"\n\
    [[stage]]\nname = \"hash\"\ncapability = \"sha256\"\ninputs = [\"fetch\"]\n\
    [[stage]]\nname = \"count\"\ncapability = \"wordcount\"\ninputs = [\"hash\"]\n";

/// Sequential 3-stage workflows from node-0; per stage, wall time minus execution time.
fn workflow_overhead(testnet: &Testnet, runs: usize) -> Result<WorkflowOverhead> {
    let api = waiting_client(testnet)?;
    let min_offers = testnet.state.nodes.len() - 1;
    let mut overheads = Vec::new();
    for i in 0..runs {
        let answer = api.publish(&PublishIntent {
            workflow: Some(BENCH_WORKFLOW.into()),
            pattern: Some("workflow".into()),
            input: Some(format!("run {i}")),
            min_offers: Some(min_offers),
            window_ms: Some(10_000),
            wait: true,
            ..PublishIntent::default()
        })?;
        let Some(Outcome::Completed(outcome)) = &answer.outcome else {
            continue;
        };
        let trace = api.trace(&answer.trace_id.to_string())?;
        // Receipt bodies are the protocol's JSON view (SPEC §4): task, started/finished times.
        let execution: HashMap<String, u64> = trace
            .objects
            .iter()
            .filter(|o| o.kind == Kind::Receipt)
            .filter_map(|o| {
                let b = &o.body;
                let ran = b["finished_at_ms"]
                    .as_u64()?
                    .saturating_sub(b["started_at_ms"].as_u64()?);
                Some((b["task"].as_str()?.to_owned(), ran))
            })
            .collect();
        for part in &outcome.parts {
            let (Some(start), Some(end), Some(task)) =
                (part.started_ms, part.finished_ms, part.task)
            else {
                continue;
            };
            let ran = execution.get(&task.to_string()).copied().unwrap_or(0);
            overheads.push(end.saturating_sub(start).saturating_sub(ran) as f64);
        }
    }
    Ok(WorkflowOverhead {
        runs,
        stages: overheads.len(),
        p50_ms: percentile(&overheads, 50.0),
        p99_ms: percentile(&overheads, 99.0),
    })
}

/// (intent->first award, intent->first receipt) in ms, from the objects' signed timestamps.
fn award_and_receipt_ms(objects: &[ObjectView]) -> (Option<f64>, Option<f64>) {
    let Some(intent) = first_of(objects, Kind::Intent) else {
        return (None, None);
    };
    let since = |t: Option<u64>| t.map(|t| t.saturating_sub(intent) as f64);
    (
        since(first_of(objects, Kind::TaskStart)),
        since(first_of(objects, Kind::Receipt)),
    )
}

/// The earliest signed timestamp among the objects of `kind`.
fn first_of(objects: &[ObjectView], kind: Kind) -> Option<u64> {
    objects
        .iter()
        .filter(|o| o.kind == kind)
        .map(|o| o.timestamp_ms)
        .min()
}

/// Whether a waited-for run completed.
fn completed_run(answer: &Published) -> bool {
    matches!(answer.outcome, Some(Outcome::Completed(_)))
}

/// A client of node-0 whose calls may wait as long as the runs they wait for.
fn waiting_client(testnet: &Testnet) -> Result<Client> {
    Ok(Client::open(&testnet.state.nodes[0].dir)?.with_timeout(Some(Duration::from_secs(180))))
}

fn throughput(testnet: &Testnet, rounds: usize, concurrency: usize) -> Result<Throughput> {
    let api = waiting_client(testnet)?;
    let min_offers = (testnet.state.nodes.len() - 1).min(3);
    let next = Arc::new(AtomicUsize::new(0));
    let before = read_work(testnet);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (api, next) = (api.clone(), next.clone());
            std::thread::spawn(move || {
                let mut results: Vec<std::result::Result<(), String>> = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < rounds {
                    let answer = api.publish(&PublishIntent {
                        capability: "echo".into(),
                        input: Some("load".into()),
                        budget: Some(1000),
                        deadline_ms: Some(60_000),
                        min_offers: Some(min_offers),
                        window_ms: Some(2_000),
                        wait: true,
                        ..PublishIntent::default()
                    });
                    results.push(match answer.map(|a| a.outcome) {
                        Ok(Some(Outcome::Completed(_))) => Ok(()),
                        Ok(Some(Outcome::Failed(f))) => Err(f.reason),
                        Ok(None) => Err("no outcome".to_owned()),
                        Err(e) => Err(format!("api: {}", first_line(&e.to_string()))),
                    });
                }
                results
            })
        })
        .collect();
    let mut completed = 0;
    let mut failed: HashMap<String, usize> = HashMap::new();
    for worker in workers {
        let results = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a load worker panicked"))?;
        for result in results {
            match result {
                Ok(()) => completed += 1,
                Err(reason) => *failed.entry(reason).or_default() += 1,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the last receipts, rejects and store writes of the final rounds land.
    std::thread::sleep(Duration::from_millis(500));
    let per_round = round_cost(&before, &read_work(testnet), completed);
    Ok(Throughput {
        rounds,
        concurrency,
        min_offers,
        completed,
        failed,
        seconds,
        rounds_per_s: completed as f64 / seconds.max(f64::EPSILON),
        per_round,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect()
}

fn resources(testnet: &Testnet) -> Vec<Resources> {
    testnet
        .state
        .nodes
        .iter()
        .map(|node| {
            let pid = testnet.pid(node.index);
            Resources {
                node: node.name.clone(),
                rss_kib: pid.and_then(procs::rss_kib),
                cpu_s: pid
                    .and_then(procs::cpu_ticks)
                    .map(|t| t as f64 / procs::TICKS_PER_SECOND as f64),
                connections: connected_peers(testnet, node.index),
            }
        })
        .collect()
}

/// The nodes count as quiet when together they use less than this many cores ...
const QUIET_CORES: f64 = 0.5;
/// ... over this window.
const QUIET_WINDOW: Duration = Duration::from_secs(5);
/// Longest wait for quiet; the measurements start then anyway.
const QUIET_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits until the nodes are quiet (see [`Report::quiet_s`]) or [`QUIET_TIMEOUT`]; returns
/// the time waited, s, and whether they were quiet.
fn wait_quiet(testnet: &Testnet) -> (f64, bool) {
    let started = Instant::now();
    let pids: Vec<u32> = (0..testnet.state.nodes.len())
        .filter_map(|i| testnet.pid(i))
        .collect();
    let ticks = || -> u64 { pids.iter().filter_map(|&p| procs::cpu_ticks(p)).sum() };
    let mut before = ticks();
    while started.elapsed() < QUIET_TIMEOUT {
        std::thread::sleep(QUIET_WINDOW);
        let now = ticks();
        let cores = now.saturating_sub(before) as f64
            / procs::TICKS_PER_SECOND as f64
            / QUIET_WINDOW.as_secs_f64();
        if cores < QUIET_CORES {
            return (started.elapsed().as_secs_f64(), true);
        }
        before = now;
    }
    (started.elapsed().as_secs_f64(), false)
}

/// pvl's default `[network] max_peers`, which testnet nodes keep: above it a node closes
/// connections it has not used for 10 s.
const MAX_PEERS: u64 = 32;
/// Longest wait for the connection counts to come down after the load.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until no node has more than [`MAX_PEERS`] connections (or [`SETTLE_TIMEOUT`]);
/// returns the largest count then and the time waited.
fn settle(testnet: &Testnet) -> (Option<u64>, f64) {
    let started = Instant::now();
    loop {
        let most = (0..testnet.state.nodes.len())
            .filter_map(|i| connected_peers(testnet, i))
            .max();
        if most.is_none_or(|m| m <= MAX_PEERS) || started.elapsed() >= SETTLE_TIMEOUT {
            return (most, started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `connected_peers` of node `index`'s status, through its control API.
fn connected_peers(testnet: &Testnet, index: usize) -> Option<u64> {
    let status = testnet.api(index).ok()?.status().ok()?;
    Some(status.connected_peers as u64)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn print_table(r: &Report) {
    let g = &r.gossip;
    let c = &r.contract_net;
    let t = &r.throughput;
    let cpu: Vec<f64> = r.resources.iter().filter_map(|x| x.cpu_s).collect();
    out!(
        "\nbench: {} nodes, {} core(s), release pvl processes on loopback",
        r.nodes,
        r.cores
    );
    out!("{:<44} value", "measure");
    out!(
        "{:<44} {}/{} = {:.4}",
        "gossip delivery (intent, receiver)",
        g.deliveries,
        g.expected,
        g.delivery_ratio
    );
    out!(
        "{:<44} p50 {} p99 {} max {}",
        "gossip latency to all nodes, ms",
        ms(g.p50_ms),
        ms(g.p99_ms),
        ms(g.max_ms)
    );
    out!(
        "{:<44} p50 {} p99 {}",
        "  node-0's publish call (part of it), ms",
        ms(g.publish_call_p50_ms),
        ms(g.publish_call_p99_ms)
    );
    out!(
        "{:<44} p50 {} p99 {}",
        "  signed intent to all nodes, ms",
        ms(g.signed_p50_ms),
        ms(g.signed_p99_ms)
    );
    out!(
        "{:<44} {} ({} intents in {:.1} s)",
        "  CPU per intent, all nodes, ms",
        ms(g.cpu_ms_per_intent),
        g.intents,
        g.duration_s
    );
    out!(
        "{:<44} p50 {} p99 {} ({}/{} rounds, {} offers each)",
        "intent -> award, ms",
        ms(c.award_p50_ms),
        ms(c.award_p99_ms),
        c.completed,
        c.rounds,
        c.min_offers
    );
    out!(
        "{:<44} p50 {} p99 {}",
        "intent -> receipt, ms",
        ms(c.receipt_p50_ms),
        ms(c.receipt_p99_ms)
    );
    out!(
        "{:<44} {:.1} ({} of {} completed in {:.1} s, {} concurrent, min_offers {})",
        "contract-net rounds/s, one requester",
        t.rounds_per_s,
        t.completed,
        t.rounds,
        t.seconds,
        t.concurrency,
        t.min_offers
    );
    if !t.failed.is_empty() {
        out!("{:<44} {:?}", "  failed rounds by reason", t.failed);
    }
    if let Some(cost) = &t.per_round {
        print_round_cost(cost);
    }
    let k = &r.consensus;
    out!(
        "{:<44} p50 {} p99 {} ({} members, {}/{} approved)",
        "consensus round (proposal -> certificate), ms",
        ms(k.p50_ms),
        ms(k.p99_ms),
        k.members,
        k.approved,
        k.rounds
    );
    let w = &r.workflow;
    out!(
        "{:<44} p50 {} p99 {} ({} stages of {} runs)",
        "workflow coordination per stage, ms",
        ms(w.p50_ms),
        ms(w.p99_ms),
        w.stages,
        w.runs
    );
    out!("{:<44} {:.1}", "testnet up and ready, s", r.up_s);
    out!(
        "{:<44} {:.1}",
        "then quiet (measurements start), s",
        r.quiet_s
    );
    out!(
        "{:<44} mean {} max {}",
        "connected peers per node at the end",
        ms(r.connections_mean),
        r.connections_max
            .map_or_else(|| "-".into(), |c| c.to_string())
    );
    out!(
        "{:<44} max {} ({:.1} s after the end)",
        "connected peers per node, settled",
        r.connections_settled_max
            .map_or_else(|| "-".into(), |c| c.to_string()),
        r.settle_s
    );
    out!(
        "{:<44} mean {} max {}",
        "RSS per node, MiB",
        ms(r.rss_mean_mib),
        ms(r.rss_max_mib)
    );
    out!(
        "{:<44} mean {} max {}",
        "CPU time per node, s",
        ms(mean(&cpu)),
        ms(cpu.iter().copied().reduce(f64::max))
    );
}

fn print_round_cost(cost: &RoundCost) {
    out!(
        "  per round (throughput phase, {} rounds)      {:>10} {:>10} {:>10}",
        cost.rounds,
        "all nodes",
        "requester",
        "providers"
    );
    type Row = (&'static str, fn(&Work) -> f64);
    let rows: [Row; 11] = [
        ("signatures", |w| w.signatures),
        ("signature verifications", |w| w.verifications),
        ("gossip published", |w| w.gossip_published),
        ("gossip received", |w| w.gossip_received),
        ("  of which duplicates", |w| w.gossip_duplicates),
        ("direct sent", |w| w.direct_sent),
        ("direct received", |w| w.direct_received),
        ("store writes", |w| w.store_writes),
        ("  in store batches", |w| w.store_batches),
        ("  sled keys written", |w| w.store_keys),
        ("CPU ms", |w| w.cpu_ms),
    ];
    for (name, get) in rows {
        out!(
            "    {:<40} {:>10.2} {:>10.2} {:>10.2}",
            name,
            get(&cost.total),
            get(&cost.requester),
            get(&cost.providers)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn award_and_receipt_come_from_the_first_objects_of_their_kind() {
        let object = |kind: Kind, timestamp_ms: u64| ObjectView {
            id: ObjectId::of_content(&timestamp_ms.to_be_bytes()),
            kind,
            version: 1,
            trace_id: ObjectId::of_content(b"trace"),
            parents: Vec::new(),
            signer: pvl_protocol::Keypair::from_seed([7; 32]).public(),
            timestamp_ms,
            body: serde_json::Value::Null,
            signature: String::new(),
            countersignature: None,
        };
        let objects = [
            object(Kind::Intent, 1000),
            object(Kind::Offer, 1005),
            object(Kind::TaskStart, 1020),
            object(Kind::TaskStart, 1500),
            object(Kind::Receipt, 1031),
        ];
        assert_eq!(award_and_receipt_ms(&objects), (Some(20.0), Some(31.0)));
        assert_eq!(award_and_receipt_ms(&[]), (None, None));
    }

    #[test]
    fn round_cost_divides_the_differences_and_splits_requester_from_providers() {
        let reading = |sig: u64, direct: u64, ticks: u64| {
            Work::read(
                &Counters {
                    signatures: sig,
                    direct_sent: direct,
                    ..Counters::default()
                },
                Some(ticks),
            )
        };
        let before = vec![reading(10, 0, 100), reading(5, 1, 50), reading(0, 0, 0)];
        let after = vec![reading(30, 4, 110), reading(15, 5, 52), reading(10, 4, 8)];
        let cost = round_cost(&before, &after, 2).unwrap();
        assert_eq!(cost.requester.signatures, 10.0);
        assert_eq!(cost.providers.signatures, 10.0);
        assert_eq!(cost.total.signatures, 20.0);
        assert_eq!(cost.total.direct_sent, 6.0);
        assert_eq!(cost.requester.cpu_ms, 50.0);
        assert_eq!(cost.total.cpu_ms, 100.0);
        assert!(round_cost(&before, &after, 0).is_none());
    }
}
