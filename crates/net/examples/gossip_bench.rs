//! # Gossip benchmark: latency to every node, and intake throughput at one node
//!
//! Every node is a real `pvl-net` event loop (libp2p swarm, TCP on 127.0.0.1, noise, yamux,
//! gossipsub with message validation) and every intent is a real signed `pvl-protocol`
//! object. All nodes run in this one process on one multi-threaded tokio runtime, so they
//! share the machine's cores: the numbers say what N nodes cost together on this machine,
//! not what one node does on its own hardware.
//!
//! ## What it measures
//!
//! 1. **Gossip latency to all nodes.** `--nodes N` nodes (default 20) are bootstrapped from
//!    node 0 with the node defaults (`NetConfig::new`). The benchmark waits until every node
//!    has a few connections, then warms the gossip mesh up: probe intents are published from
//!    each node in turn until N probes in a row reached every other node. Then `--intents M`
//!    intents (default 200) are published round-robin from all nodes, one every
//!    `--interval-ms` (default 20). Each intent is signed right before it is handed to
//!    `Client::publish`; the clock starts after signing. For every (intent, receiving node)
//!    pair the time until that node emitted `NetEvent::Object` is recorded (that is after
//!    the receiver decoded and verified it). Reported: delivery ratio, latency p50/p90/p99/max
//!    over all pairs, and p50/p99/max of the time until the *last* node had each intent.
//! 2. **Intake throughput at one node.** A fresh receiver and `--throughput-publishers P`
//!    publishers (default 1) bootstrapped from it. `--throughput-intents K` intents (default
//!    20,000) are signed before the clock starts; the publishers then publish them as fast as
//!    the client accepts them (up to 256 publish calls in flight per publisher). At the
//!    receiver, the rate of valid intents it emits as `NetEvent::Object` (first to last) and
//!    how many of the K arrived are reported. For scale, the single-core cost of
//!    `SignedObject::decode` (which verifies the ed25519 signature) is measured first. Note
//!    that pvl-net publishes each intent on two topics (`pvl/1/all` and its capability
//!    topic) and a node joins one of the two, never both; gossipsub messages carry no
//!    signature of their own (the object's is checked), so a receiver verifies one signature
//!    per intent. A publish refused because every peer's queue is full
//!    is counted as an error (`PublishError::Backpressure`).
//!
//! ## Running it
//!
//! ```text
//! cargo run --release -p pvl-net --example gossip_bench -- \
//!     [--nodes 20] [--intents 200] [--interval-ms 20] \
//!     [--throughput-intents 20000] [--throughput-publishers 1] [--json FILE]
//! ```
//!
//! With the defaults it takes well under two minutes on two cores. `--json FILE` also writes
//! the numbers as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use pvl_net::{Client, Multiaddr, NetConfig, NetEvent, identity::Keypair};
use pvl_protocol::{Body, Envelope, Intent, ObjectId, Payload, SignedObject};
use tokio::time::{sleep, timeout};

/// Arrival instants of objects, per object id: (receiving node index, when).
type Arrivals = Arc<Mutex<HashMap<ObjectId, Vec<(usize, Instant)>>>>;

struct Args {
    nodes: usize,
    intents: usize,
    interval_ms: u64,
    throughput_intents: usize,
    throughput_publishers: usize,
    json: Option<String>,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            nodes: 20,
            intents: 200,
            interval_ms: 20,
            throughput_intents: 20_000,
            throughput_publishers: 1,
            json: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                println!(
                    "gossip_bench [--nodes N] [--intents M] [--interval-ms MS] \
                     [--throughput-intents K] [--throughput-publishers P] [--json FILE]"
                );
                std::process::exit(0);
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let number = || -> anyhow::Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("{flag}: `{value}` is not a number"))
            };
            match flag.as_str() {
                "--nodes" => args.nodes = number()?,
                "--intents" => args.intents = number()?,
                "--interval-ms" => args.interval_ms = number()? as u64,
                "--throughput-intents" => args.throughput_intents = number()?,
                "--throughput-publishers" => args.throughput_publishers = number()?,
                "--json" => args.json = Some(value.clone()),
                _ => bail!("unknown flag {flag} (try --help)"),
            }
        }
        if args.nodes < 2 {
            bail!("--nodes must be at least 2");
        }
        if args.throughput_publishers < 1 {
            bail!("--throughput-publishers must be at least 1");
        }
        Ok(args)
    }
}

struct Node {
    client: Client,
    key: pvl_protocol::Keypair,
    addr: Multiaddr,
}

/// Starts a node listening on a random loopback port; a task records every object it emits
/// into `arrivals` (under `index`) and counts refusals.
async fn start_node(
    index: usize,
    bootstrap: Option<Multiaddr>,
    arrivals: Arrivals,
    refused: Arc<AtomicU64>,
) -> anyhow::Result<Node> {
    let keypair = Keypair::generate_ed25519();
    let mut config = NetConfig::new(keypair.clone());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    config.bootstrap = bootstrap.into_iter().collect();
    let (client, mut events, event_loop) = pvl_net::new(config)?;
    tokio::spawn(event_loop.run());
    let addr = timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Some(NetEvent::Listening(addr)) => return Some(addr),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .context("node did not start listening")?
    .context("event loop stopped")?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Object { object, .. } => {
                    let at = Instant::now();
                    arrivals
                        .lock()
                        .unwrap()
                        .entry(object.id())
                        .or_default()
                        .push((index, at));
                }
                NetEvent::Refused { .. } => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    Ok(Node {
        client,
        key: pvl_net::protocol_keypair(&keypair)?,
        addr,
    })
}

fn intent(key: &pvl_protocol::Keypair, nonce: u64) -> SignedObject {
    let now = pvl_net::now_ms();
    Envelope {
        trace: None,
        parents: vec![],
        signer: key.public(),
        timestamp_ms: now,
        body: Body::Intent(Intent {
            capability: "sha256".into(),
            input: Payload::Inline(b"benchmark input".to_vec()),
            constraints: Default::default(),
            strategy: Default::default(),
            pattern: Default::default(),
            committee: None,
            nonce,
            expires_at_ms: now + 10 * 60_000,
            audience: None,
        }),
    }
    .sign(key)
    .expect("a benchmark intent is valid")
}

/// How many of `others` have received `id` (nodes other than the publisher).
fn received_by(arrivals: &Arrivals, id: &ObjectId, publisher: usize) -> usize {
    arrivals
        .lock()
        .unwrap()
        .get(id)
        .map_or(0, |v| v.iter().filter(|(i, _)| *i != publisher).count())
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct LatencyReport {
    nodes: usize,
    connect_secs: f64,
    min_connected: usize,
    mean_connected: f64,
    warmup_secs: f64,
    warmup_probes: u64,
    warmup_complete: bool,
    intents: usize,
    publish_errors: usize,
    mean_sign_us: f64,
    expected: usize,
    received: usize,
    fully_delivered: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    last_p50: Duration,
    last_p99: Duration,
    last_max: Duration,
    refused: u64,
}

async fn latency_bench(args: &Args) -> anyhow::Result<LatencyReport> {
    let n = args.nodes;
    let arrivals: Arrivals = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let mut nodes = vec![start_node(0, None, arrivals.clone(), refused.clone()).await?];
    let boot = nodes[0].addr.clone();
    for i in 1..n {
        nodes.push(start_node(i, Some(boot.clone()), arrivals.clone(), refused.clone()).await?);
    }

    // 1. Connections: every node has a few peers.
    let started = Instant::now();
    let want = 4.min(n - 1);
    let (min_connected, mean_connected) = loop {
        let mut counts = Vec::with_capacity(n);
        for node in &nodes {
            counts.push(node.client.status().await?.connected.len());
        }
        let min = counts.iter().copied().min().unwrap_or(0);
        let mean = counts.iter().sum::<usize>() as f64 / n as f64;
        if min >= want || started.elapsed() > Duration::from_secs(60) {
            break (min, mean);
        }
        sleep(Duration::from_millis(200)).await;
    };
    let connect_secs = started.elapsed().as_secs_f64();
    println!(
        "  connected after {connect_secs:.1} s: every node has >= {min_connected} peers \
         (mean {mean_connected:.1})"
    );

    // 2. Warm-up: probes from each node in turn until n in a row reached every other node.
    let started = Instant::now();
    let mut probes = 0u64;
    let mut in_a_row = 0usize;
    let warmup_complete = loop {
        if in_a_row >= n {
            break true;
        }
        if started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        let publisher = probes as usize % n;
        let probe = intent(&nodes[publisher].key, 1_000_000 + probes);
        probes += 1;
        if nodes[publisher]
            .client
            .publish(probe.clone())
            .await
            .is_err()
        {
            in_a_row = 0;
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut complete = false;
        while Instant::now() < deadline {
            if received_by(&arrivals, &probe.id(), publisher) == n - 1 {
                complete = true;
                break;
            }
            sleep(Duration::from_millis(5)).await;
        }
        in_a_row = if complete { in_a_row + 1 } else { 0 };
    };
    let warmup_secs = started.elapsed().as_secs_f64();
    println!(
        "  gossip warm-up: {probes} probes, {warmup_secs:.1} s{}",
        if warmup_complete {
            ""
        } else {
            " (GAVE UP: probes still missing nodes after 60 s)"
        }
    );
    let refused_before = refused.load(Ordering::Relaxed);

    // 3. Measurement: M intents, paced, round-robin over publishers.
    let mut published: Vec<(ObjectId, usize, Instant)> = Vec::with_capacity(args.intents);
    let mut publishes = Vec::with_capacity(args.intents);
    let mut sign_total = Duration::ZERO;
    let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..args.intents {
        ticker.tick().await;
        let publisher = i % n;
        let signing = Instant::now();
        let object = intent(&nodes[publisher].key, i as u64);
        sign_total += signing.elapsed();
        let t0 = Instant::now();
        published.push((object.id(), publisher, t0));
        let client = nodes[publisher].client.clone();
        publishes.push(tokio::spawn(async move { client.publish(object).await }));
    }
    let mut publish_errors = 0;
    for p in publishes {
        if !matches!(p.await, Ok(Ok(_))) {
            publish_errors += 1;
        }
    }
    let expected = args.intents * (n - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let received: usize = published
            .iter()
            .map(|(id, p, _)| received_by(&arrivals, id, *p))
            .sum();
        if received == expected || Instant::now() > deadline {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }

    let mut all = Vec::with_capacity(expected);
    let mut last = Vec::with_capacity(args.intents);
    let mut received = 0;
    {
        let arrivals = arrivals.lock().unwrap();
        for (id, publisher, t0) in &published {
            let got: Vec<Duration> = arrivals
                .get(id)
                .map(|v| {
                    v.iter()
                        .filter(|(i, _)| i != publisher)
                        .map(|(_, at)| at.saturating_duration_since(*t0))
                        .collect()
                })
                .unwrap_or_default();
            received += got.len();
            if got.len() == n - 1 {
                last.push(got.iter().copied().max().unwrap_or_default());
            }
            all.extend(got);
        }
    }
    all.sort();
    last.sort();
    let refused = refused.load(Ordering::Relaxed) - refused_before;
    for node in &nodes {
        let _ = node.client.shutdown().await;
    }
    Ok(LatencyReport {
        nodes: n,
        connect_secs,
        min_connected,
        mean_connected,
        warmup_secs,
        warmup_probes: probes,
        warmup_complete,
        intents: args.intents,
        publish_errors,
        mean_sign_us: sign_total.as_secs_f64() * 1e6 / args.intents.max(1) as f64,
        expected,
        received,
        fully_delivered: last.len(),
        p50: percentile(&all, 0.50),
        p90: percentile(&all, 0.90),
        p99: percentile(&all, 0.99),
        max: all.last().copied().unwrap_or_default(),
        last_p50: percentile(&last, 0.50),
        last_p99: percentile(&last, 0.99),
        last_max: last.last().copied().unwrap_or_default(),
        refused,
    })
}

struct ThroughputReport {
    publishers: usize,
    intents: usize,
    presign_rate: f64,
    decode_us: f64,
    publish_secs: f64,
    publish_errors: usize,
    received: usize,
    first_to_last_secs: f64,
    rate_first_to_last: f64,
    rate_from_start: f64,
    refused: u64,
}

async fn throughput_bench(args: &Args) -> anyhow::Result<ThroughputReport> {
    let k = args.throughput_intents;
    let p = args.throughput_publishers;
    let arrivals: Arrivals = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let receiver = start_node(0, None, arrivals.clone(), refused.clone()).await?;
    let mut publishers = Vec::new();
    for i in 1..=p {
        publishers.push(
            // Publishers' own arrivals (each other's intents) are not counted.
            start_node(
                i,
                Some(receiver.addr.clone()),
                Arrivals::default(),
                refused.clone(),
            )
            .await?,
        );
    }
    // Each publisher's path to the receiver works before the clock starts.
    for (i, publisher) in publishers.iter().enumerate() {
        let started = Instant::now();
        let mut nonce = 2_000_000;
        loop {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("publisher {} never reached the receiver", i + 1);
            }
            nonce += 1;
            let probe = intent(&publisher.key, nonce);
            if publisher.client.publish(probe.clone()).await.is_ok() {
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline
                    && !arrivals.lock().unwrap().contains_key(&probe.id())
                {
                    sleep(Duration::from_millis(5)).await;
                }
                if arrivals.lock().unwrap().contains_key(&probe.id()) {
                    break;
                }
            } else {
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let refused_before = refused.load(Ordering::Relaxed);

    // Pre-sign everything (and time it), then measure decode+verify on one core for scale.
    let signing = Instant::now();
    let batches: Vec<Vec<SignedObject>> = (0..p)
        .map(|j| {
            (0..k)
                .filter(|i| i % p == j)
                .map(|i| intent(&publishers[j].key, i as u64))
                .collect()
        })
        .collect();
    let presign_rate = k as f64 / signing.elapsed().as_secs_f64();
    let sample: Vec<&SignedObject> = batches.iter().flatten().take(2000).collect();
    let decoding = Instant::now();
    for object in &sample {
        SignedObject::decode(object.bytes()).expect("valid");
    }
    let decode_us = decoding.elapsed().as_secs_f64() * 1e6 / sample.len().max(1) as f64;
    let ids: Vec<ObjectId> = batches.iter().flatten().map(|o| o.id()).collect();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (publisher, batch) in publishers.iter().zip(batches) {
        let client = publisher.client.clone();
        tasks.push(tokio::spawn(async move {
            futures::stream::iter(batch)
                .map(|object| {
                    let client = client.clone();
                    async move { client.publish(object).await }
                })
                .buffer_unordered(256)
                .filter(|r| std::future::ready(r.is_err()))
                .count()
                .await
        }));
    }
    let mut publish_errors = 0;
    for task in tasks {
        publish_errors += task.await?;
    }
    let publish_secs = start.elapsed().as_secs_f64();

    // Wait for everything, or until nothing new arrived for 10 s (at most 90 s in all).
    let mut last_count = 0;
    let mut last_progress = Instant::now();
    loop {
        let count = {
            let arrivals = arrivals.lock().unwrap();
            ids.iter().filter(|id| arrivals.contains_key(id)).count()
        };
        if count != last_count {
            last_count = count;
            last_progress = Instant::now();
        }
        if count == k
            || last_progress.elapsed() > Duration::from_secs(10)
            || start.elapsed() > Duration::from_secs(90)
        {
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    let mut times: Vec<Instant> = {
        let arrivals = arrivals.lock().unwrap();
        ids.iter()
            .filter_map(|id| arrivals.get(id))
            .filter_map(|v| v.iter().find(|(i, _)| *i == 0).map(|(_, at)| *at))
            .collect()
    };
    times.sort();
    let received = times.len();
    let (first_to_last_secs, rate_first_to_last, rate_from_start) =
        match (times.first(), times.last()) {
            (Some(first), Some(last)) if received > 1 => {
                let span = last.duration_since(*first).as_secs_f64();
                (
                    span,
                    (received - 1) as f64 / span,
                    received as f64 / last.duration_since(start).as_secs_f64(),
                )
            }
            _ => (0.0, 0.0, 0.0),
        };
    let refused = refused.load(Ordering::Relaxed) - refused_before;
    let _ = receiver.client.shutdown().await;
    for publisher in &publishers {
        let _ = publisher.client.shutdown().await;
    }
    Ok(ThroughputReport {
        publishers: p,
        intents: k,
        presign_rate,
        decode_us,
        publish_secs,
        publish_errors,
        received,
        first_to_last_secs,
        rate_first_to_last,
        rate_from_start,
        refused,
    })
}

fn json(cores: usize, l: &LatencyReport, t: &ThroughputReport) -> String {
    format!(
        r#"{{
  "in_one_process": true,
  "cores": {cores},
  "latency": {{
    "nodes": {},
    "connect_secs": {:.3},
    "min_connected_peers": {},
    "mean_connected_peers": {:.2},
    "warmup_secs": {:.3},
    "warmup_probes": {},
    "warmup_complete": {},
    "intents": {},
    "publish_errors": {},
    "mean_sign_us": {:.1},
    "expected_deliveries": {},
    "received_deliveries": {},
    "delivery_ratio": {:.6},
    "intents_reaching_all_nodes": {},
    "latency_ms": {{ "p50": {:.3}, "p90": {:.3}, "p99": {:.3}, "max": {:.3} }},
    "last_node_ms": {{ "p50": {:.3}, "p99": {:.3}, "max": {:.3} }},
    "refused_events": {}
  }},
  "throughput": {{
    "publishers": {},
    "intents": {},
    "presign_per_sec": {:.0},
    "decode_verify_us": {:.1},
    "publish_secs": {:.3},
    "publish_errors": {},
    "received": {},
    "delivery_ratio": {:.6},
    "first_to_last_secs": {:.3},
    "accepted_per_sec_first_to_last": {:.0},
    "accepted_per_sec_from_start": {:.0},
    "refused_events": {}
  }}
}}
"#,
        l.nodes,
        l.connect_secs,
        l.min_connected,
        l.mean_connected,
        l.warmup_secs,
        l.warmup_probes,
        l.warmup_complete,
        l.intents,
        l.publish_errors,
        l.mean_sign_us,
        l.expected,
        l.received,
        l.received as f64 / l.expected.max(1) as f64,
        l.fully_delivered,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max),
        ms(l.last_p50),
        ms(l.last_p99),
        ms(l.last_max),
        l.refused,
        t.publishers,
        t.intents,
        t.presign_rate,
        t.decode_us,
        t.publish_secs,
        t.publish_errors,
        t.received,
        t.received as f64 / t.intents.max(1) as f64,
        t.first_to_last_secs,
        t.rate_first_to_last,
        t.rate_from_start,
        t.refused,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "gossip_bench: {} nodes, all in ONE process on {cores} core(s) (one tokio runtime), \
         real libp2p swarms over TCP on 127.0.0.1, real ed25519 signatures",
        args.nodes
    );
    let total = Instant::now();

    println!(
        "\n[1] gossip latency: {} nodes, {} intents, one every {} ms",
        args.nodes, args.intents, args.interval_ms
    );
    let l = latency_bench(&args).await?;
    println!(
        "  {:<44} {} ({} errors)",
        "intents published", l.intents, l.publish_errors
    );
    println!(
        "  {:<44} {:.1} us",
        "mean sign time per intent", l.mean_sign_us
    );
    println!(
        "  {:<44} {}/{} = {:.4}",
        "deliveries (intent, receiver) received",
        l.received,
        l.expected,
        l.received as f64 / l.expected.max(1) as f64
    );
    println!(
        "  {:<44} {}/{}",
        "intents that reached all other nodes", l.fully_delivered, l.intents
    );
    println!(
        "  {:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        "latency ms, all pairs: p50 p90 p99 max",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max)
    );
    println!(
        "  {:<44} {:>8.2} {:>8} {:>8.2} {:>8.2}",
        "latency ms, last node:  p50  -  p99 max",
        ms(l.last_p50),
        "",
        ms(l.last_p99),
        ms(l.last_max)
    );
    println!(
        "  {:<44} {}",
        "refused events during measurement", l.refused
    );

    println!(
        "\n[2] intake throughput: {} publisher(s) -> 1 receiver, {} pre-signed intents",
        args.throughput_publishers, args.throughput_intents
    );
    let t = throughput_bench(&args).await?;
    println!(
        "  {:<44} {:.0} /s (one core)",
        "pre-signing rate (not timed below)", t.presign_rate
    );
    println!(
        "  {:<44} {:.1} us (one core; ~{:.0}/s)",
        "SignedObject::decode (incl. verify)",
        t.decode_us,
        1e6 / t.decode_us.max(1e-9)
    );
    println!(
        "  {:<44} {:.2} s ({} errors)",
        "all publish calls returned after", t.publish_secs, t.publish_errors
    );
    println!(
        "  {:<44} {}/{} = {:.4}",
        "intents accepted at the receiver",
        t.received,
        t.intents,
        t.received as f64 / t.intents.max(1) as f64
    );
    println!(
        "  {:<44} {:.0} /s over {:.2} s",
        "accepted rate, first to last", t.rate_first_to_last, t.first_to_last_secs
    );
    println!(
        "  {:<44} {:.0} /s",
        "accepted rate, from publish start", t.rate_from_start
    );
    println!("  {:<44} {}", "refused events at the nodes", t.refused);
    println!("\ntotal run time {:.1} s", total.elapsed().as_secs_f64());

    if let Some(path) = &args.json {
        std::fs::write(path, json(cores, &l, &t)).with_context(|| format!("writing {path}"))?;
        println!("wrote {path}");
    }
    Ok(())
}
