//! `pvl-testnet chaos`: a stream of intents from node-0 while random provider nodes are killed
//! (SIGKILL) and restarted; node-0, the requester, is never touched. Reports how many intents
//! completed, how many were re-awarded (a winner died and the next-best offer took over), how
//! many failed and why; then checks that every receipt the requester acknowledged (in a
//! `--wait --json` outcome) is in its trace store (`pvl trace show --json`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::procs;
use crate::stats::Rng;
use crate::testnet::{Testnet, UpOptions};

/// Options of `chaos`.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Number of nodes.
    pub nodes: usize,
    /// Intents to publish.
    pub intents: usize,
    /// Seed of the random choices (which node, when, which strategy).
    pub seed: u64,
    /// Intents in flight at once.
    pub concurrency: usize,
    /// Testnet directory (fresh under the temporary directory if `None`).
    pub dir: Option<PathBuf>,
}

/// What happened.
#[derive(Debug, Default, Serialize)]
pub struct ChaosReport {
    /// Intents published.
    pub intents: usize,
    /// Completed with the first award.
    pub completed: usize,
    /// Completed after a re-award.
    pub reawarded: usize,
    /// Failed, by reason.
    pub failed: BTreeMap<String, usize>,
    /// Kills made, as `node-i at +T s`.
    pub kills: Vec<String>,
    /// Acknowledged receipts checked in the requester's store.
    pub receipts_checked: usize,
    /// Acknowledged receipts the requester's store lacks.
    pub receipts_missing: Vec<String>,
}

const STRATEGIES: [&str; 4] = [
    "lowest-cost",
    "fastest",
    "highest-quality",
    "weighted:cost=1,latency=1,reliability=1",
];

/// Runs chaos on a fresh testnet; an error if an acknowledged receipt is missing.
pub fn run(options: &ChaosOptions, pvl_bin: PathBuf) -> Result<ChaosReport> {
    if options.nodes < 3 {
        bail!("chaos needs at least 3 nodes: the requester and two providers");
    }
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => crate::demo::fresh_dir("pvl-chaos")?,
    };
    let up = UpOptions::local(options.nodes, dir.clone(), Duration::from_secs(1));
    out!(
        "==> chaos: {} nodes, {} intents, seed {}, testnet in {}",
        options.nodes,
        options.intents,
        options.seed,
        dir.display()
    );
    procs::own(dir.clone());
    let testnet = Testnet::up(&up, pvl_bin)?;
    let rng = Mutex::new(Rng::new(options.seed));
    let done = AtomicBool::new(false);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let outcomes: Mutex<Vec<std::result::Result<Value, String>>> = Mutex::new(Vec::new());
    let kills = std::thread::scope(|scope| {
        let chaos = scope.spawn(|| monkey(&testnet, &rng, &done, started));
        let workers: Vec<_> = (0..options.concurrency.max(1))
            .map(|_| {
                scope.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < options.intents {
                        let strategy = STRATEGIES[lock(&rng).below(4) as usize];
                        let outcome = publish(&testnet, strategy);
                        print_outcome(&testnet, &outcome, started);
                        lock(&outcomes).push(outcome);
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
        done.store(true, Ordering::Relaxed);
        chaos.join().unwrap_or_default()
    });
    let outcomes = outcomes.into_inner().unwrap_or_default();
    let mut report = ChaosReport {
        intents: outcomes.len(),
        kills,
        ..ChaosReport::default()
    };
    for outcome in &outcomes {
        match outcome {
            Ok(o) if o["status"] == "completed" => {
                if o["awards"].as_u64().unwrap_or(1) > 1 {
                    report.reawarded += 1;
                } else {
                    report.completed += 1;
                }
            }
            Ok(o) => {
                let reason = o["reason"].as_str().unwrap_or("unknown").to_owned();
                *report.failed.entry(reason).or_default() += 1;
            }
            Err(e) => *report.failed.entry(e.clone()).or_default() += 1,
        }
    }
    check_receipts(&testnet, &outcomes, &mut report);
    testnet.down()?;
    print_report(&report);
    if !report.receipts_missing.is_empty() {
        bail!(
            "{} acknowledged receipt(s) missing from the requester's trace store",
            report.receipts_missing.len()
        );
    }
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One intent from node-0: the builtin `sleep` for 300 ms, so kills land during execution.
fn publish(testnet: &Testnet, strategy: &str) -> std::result::Result<Value, String> {
    testnet
        .cli_json(
            0,
            &[
                "intent",
                "publish",
                "--capability",
                "sleep",
                "--input",
                "300",
                "--budget",
                "1000",
                "--deadline",
                "30s",
                "--strategy",
                strategy,
                "--min-offers",
                "2",
                "--window",
                "1s",
                "--wait",
            ],
        )
        .map_err(|e| {
            let text = format!("{e:#}");
            format!("cli error: {}", text.rsplit(": ").next().unwrap_or(&text))
        })
}

fn print_outcome(
    testnet: &Testnet,
    outcome: &std::result::Result<Value, String>,
    started: Instant,
) {
    let at = started.elapsed().as_secs_f64();
    match outcome {
        Ok(o) if o["status"] == "completed" => out!(
            "  +{at:6.1}s completed by {} (awards {})",
            crate::scenarios::node_of(testnet, o["provider"].as_str().unwrap_or_default())
                .unwrap_or_else(|| "?".into()),
            o["awards"]
        ),
        Ok(o) => out!(
            "  +{at:6.1}s failed: {} ({})",
            o["reason"].as_str().unwrap_or("?"),
            o["detail"].as_str().unwrap_or("")
        ),
        Err(e) => out!("  +{at:6.1}s error: {e}"),
    }
}

/// Kills a random provider, waits, restarts it; again until `done`. Returns the kills.
fn monkey(testnet: &Testnet, rng: &Mutex<Rng>, done: &AtomicBool, started: Instant) -> Vec<String> {
    let providers = testnet.state.nodes.len() - 1;
    let mut kills = Vec::new();
    let pause = |ms: u64| {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until && !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    while !done.load(Ordering::Relaxed) {
        let (wait, victim, down_for) = {
            let mut rng = lock(rng);
            (
                500 + rng.below(1500),
                1 + rng.below(providers as u64) as usize,
                500 + rng.below(2000),
            )
        };
        pause(wait);
        if done.load(Ordering::Relaxed) {
            break;
        }
        let at = started.elapsed().as_secs_f64();
        if let Err(e) = testnet.kill(victim) {
            out!("  chaos: cannot kill node-{victim}: {e:#}");
            continue;
        }
        out!("  +{at:6.1}s chaos: node-{victim} killed (SIGKILL), down for {down_for} ms");
        kills.push(format!("node-{victim} at +{at:.1} s"));
        pause(down_for);
        match testnet.start(victim) {
            Ok(()) => out!(
                "  +{:6.1}s chaos: node-{victim} restarted",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => out!("  chaos: node-{victim} did not restart: {e:#}"),
        }
    }
    kills
}

/// Every receipt id of a completed outcome must be in node-0's copy of its trace.
fn check_receipts(
    testnet: &Testnet,
    outcomes: &[std::result::Result<Value, String>],
    report: &mut ChaosReport,
) {
    for outcome in outcomes.iter().flatten() {
        let (Some(trace), Some(receipt)) =
            (outcome["trace_id"].as_str(), outcome["receipt_id"].as_str())
        else {
            continue;
        };
        report.receipts_checked += 1;
        let present = testnet
            .cli_json(0, &["trace", "show", trace])
            .ok()
            .and_then(|t| t["objects"].as_array().cloned())
            .is_some_and(|objects| objects.iter().any(|o| o["id"] == receipt));
        if !present {
            report
                .receipts_missing
                .push(format!("{receipt} (trace {trace})"));
        }
    }
}

fn print_report(r: &ChaosReport) {
    out!("\nchaos: {} intents, {} kills", r.intents, r.kills.len());
    out!("  completed (first award)   {}", r.completed);
    out!("  completed after re-award  {}", r.reawarded);
    let failed: usize = r.failed.values().sum();
    out!("  failed                    {failed}");
    for (reason, count) in &r.failed {
        out!("    {count:>4}  {reason}");
    }
    out!(
        "  acknowledged receipts in the requester's store: {}/{}",
        r.receipts_checked - r.receipts_missing.len(),
        r.receipts_checked
    );
    for missing in &r.receipts_missing {
        out!("    MISSING {missing}");
    }
}
