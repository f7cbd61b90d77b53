//! The demo's scenarios: each one runs one coordination end to end on a live testnet through
//! the `pvl` CLI and checks its outcome. A scenario is one function; the patterns the CLI does
//! not offer yet (workflow, parallel, consensus, `--pattern auto`) plug in as one more entry in
//! [`all`] each when it does.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::testnet::Testnet;

/// One scenario.
pub struct Scenario {
    /// Short name (also the name of its export folder).
    pub name: &'static str,
    /// What it shows.
    pub about: &'static str,
    /// Runs it with node `requester` as the requester.
    pub run: fn(&Testnet, usize) -> Result<Completed>,
}

/// A scenario that completed.
#[derive(Debug, Clone, Serialize)]
pub struct Completed {
    /// The trace id of the coordination.
    pub trace_id: String,
    /// The winning provider's node (`node-i`), if it is one of the testnet's.
    pub provider: Option<String>,
    /// The node the strategy should have picked, when the scenario knows.
    pub expected_provider: Option<String>,
    /// Awards made (more than 1: re-awarded).
    pub awards: u64,
    /// Wall time of the round as the CLI saw it, ms.
    pub elapsed_ms: u128,
    /// The outcome as `pvl intent publish --wait --json` printed it.
    pub outcome: Value,
}

/// Every scenario today's CLI can run.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "contract-net",
            about: "contract-net: wordcount, offers from every provider, lowest cost wins",
            run: contract_net,
        },
        Scenario {
            name: "auction-lowest-cost",
            about: "auction: sha256, the cheapest offer wins",
            run: |t, r| auction(t, r, "lowest-cost"),
        },
        Scenario {
            name: "auction-highest-quality",
            about: "auction: sha256, the most reliable offer wins",
            run: |t, r| auction(t, r, "highest-quality"),
        },
        Scenario {
            name: "auction-fastest",
            about: "auction: sha256, the shortest estimated time wins",
            run: |t, r| auction(t, r, "fastest"),
        },
        Scenario {
            name: "auction-weighted",
            about: "auction: sha256, weighted score over cost, latency and reliability",
            run: |t, r| auction(t, r, "weighted:cost=0.5,latency=0.3,reliability=0.2"),
        },
    ]
}

/// One contract-net round to run and check.
pub struct Round<'a> {
    /// Capability wanted.
    pub capability: &'a str,
    /// Input text.
    pub input: &'a str,
    /// The output every correct provider gives.
    pub expected_output: &'a str,
    /// Selection strategy.
    pub strategy: &'a str,
    /// Pattern hint.
    pub pattern: &'a str,
}

fn contract_net(testnet: &Testnet, requester: usize) -> Result<Completed> {
    run_round(
        testnet,
        requester,
        &Round {
            capability: "wordcount",
            input: "the quick brown fox jumps over the lazy dog",
            expected_output: "9",
            strategy: "lowest-cost",
            pattern: "contract-net",
        },
    )
}

fn auction(testnet: &Testnet, requester: usize, strategy: &str) -> Result<Completed> {
    run_round(
        testnet,
        requester,
        &Round {
            capability: "sha256",
            input: "hello",
            expected_output: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            strategy,
            pattern: "auction",
        },
    )
}

/// Publishes the round's intent on `requester` with `--wait --json`, waiting for an offer from
/// every other live node, and checks: completed, countersigned receipt, the right output, and
/// (for the single-criterion strategies) the provider the strategy must pick.
pub fn run_round(testnet: &Testnet, requester: usize, round: &Round<'_>) -> Result<Completed> {
    let providers: Vec<usize> = (0..testnet.state.nodes.len())
        .filter(|&i| i != requester && testnet.is_alive(i))
        .collect();
    let min_offers = providers.len().to_string();
    let started = Instant::now();
    let outcome = testnet.cli_json(
        requester,
        &[
            "intent",
            "publish",
            "--capability",
            round.capability,
            "--input",
            round.input,
            "--budget",
            "1000",
            "--deadline",
            "60s",
            "--strategy",
            round.strategy,
            "--pattern",
            round.pattern,
            "--min-offers",
            &min_offers,
            "--window",
            "10s",
            "--wait",
        ],
    )?;
    let elapsed_ms = started.elapsed().as_millis();
    if outcome["status"] != "completed" {
        bail!(
            "the intent failed: {} ({})",
            outcome["reason"].as_str().unwrap_or("?"),
            outcome["detail"].as_str().unwrap_or("")
        );
    }
    if outcome["receipt_countersigned"] != true {
        bail!("completed without a countersigned receipt: {outcome}");
    }
    if outcome["output"] != round.expected_output {
        bail!(
            "wrong output {} (expected {})",
            outcome["output"],
            round.expected_output
        );
    }
    let provider_key = outcome["provider"].as_str().unwrap_or_default();
    let Some(provider) = node_of(testnet, provider_key) else {
        bail!("completed by {provider_key}, which is no node of this testnet");
    };
    let provider = Some(provider);
    let expected = expected_winner(testnet, &providers, round.capability, round.strategy)
        .map(|i| testnet.state.nodes[i].name.clone());
    if let (Some(expected), Some(got)) = (&expected, &provider)
        && expected != got
    {
        bail!(
            "{} selected {got}, but {expected} made the best offer",
            round.strategy
        );
    }
    Ok(Completed {
        trace_id: outcome["trace_id"]
            .as_str()
            .context("the outcome has no trace_id")?
            .to_owned(),
        provider,
        expected_provider: expected,
        awards: outcome["awards"].as_u64().unwrap_or(0),
        elapsed_ms,
        outcome,
    })
}

/// The testnet node with this peer id or public key (outcomes name the provider by its key).
pub fn node_of(testnet: &Testnet, key: &str) -> Option<String> {
    testnet.node_named_by(key).map(|n| n.name.clone())
}

/// The provider a single-criterion strategy must pick, when exactly one offer is best.
fn expected_winner(
    testnet: &Testnet,
    providers: &[usize],
    capability: &str,
    strategy: &str,
) -> Option<usize> {
    let key = |i: usize| -> Option<i128> {
        let b = testnet.state.nodes.get(i)?.builtin(capability)?;
        Some(match strategy {
            "lowest-cost" => -i128::from(b.price),
            "fastest" => -i128::from(b.eta_ms),
            "highest-quality" => i128::from(b.reliability_bps),
            _ => return None,
        })
    };
    let scored: Vec<(usize, i128)> = providers
        .iter()
        .filter_map(|&i| key(i).map(|k| (i, k)))
        .collect();
    let best = scored.iter().map(|&(_, k)| k).max()?;
    let mut winners = scored.iter().filter(|&&(_, k)| k == best);
    let (winner, _) = *winners.next()?;
    winners.next().is_none().then_some(winner)
}
