//! The demo's scenarios: each one runs one coordination end to end on a live testnet through
//! the `pvl` CLI and checks its outcome: contract-net, an auction per strategy, a federated
//! workflow, a parallel job, a consensus round and an adaptive choice. A scenario is one
//! function and one entry in [`all`].

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

/// Every scenario, in the order the demo runs them.
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
        Scenario {
            name: "workflow",
            about: "federated workflow: echo -> sha256 -> wordcount, each stage awarded by contract-net",
            run: workflow,
        },
        Scenario {
            name: "parallel",
            about: "parallel: 8 lines split into 4 echo shards on different providers, concatenated",
            run: parallel,
        },
        Scenario {
            name: "consensus",
            about: "consensus: every other node on the committee approves the award first",
            run: consensus,
        },
        Scenario {
            name: "adaptive",
            about: "adaptive: the node chooses the pattern itself and records why",
            run: adaptive,
        },
    ]
}

/// The workflow the demo runs: the hash of the input, then the words of the hash.
const DIGEST_WORKFLOW: &str = "name = \"digest\"\n\n\
    [[stage]]\nname = \"fetch\"\ncapability = \"echo\"\n\n\
    [[stage]]\nname = \"hash\"\ncapability = \"sha256\"\ninputs = [\"fetch\"]\n\n\
    [[stage]]\nname = \"count\"\ncapability = \"wordcount\"\ninputs = [\"hash\"]\n";

fn workflow(testnet: &Testnet, requester: usize) -> Result<Completed> {
    let file = testnet.dir.join("digest.toml");
    std::fs::write(&file, DIGEST_WORKFLOW)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let file = file.to_string_lossy().into_owned();
    let (outcome, started) = publish_and_wait(
        testnet,
        requester,
        &["workflow", "run", &file, "--input", "hello"],
    )?;
    let stages = check_parts(&outcome, 3)?;
    if stages[1]["output"] != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        || outcome["output"] != "1"
    {
        bail!("the stages' outputs did not flow: {outcome}");
    }
    completed(testnet, outcome, started)
}

fn parallel(testnet: &Testnet, requester: usize) -> Result<Completed> {
    let input: String = (1..=8).map(|i| format!("line {i}\n")).collect();
    let (outcome, started) = publish_and_wait(
        testnet,
        requester,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input",
            &input,
            "--parallel",
            "4",
            "--split",
            "lines",
            "--reduce",
            "concat",
        ],
    )?;
    let shards = check_parts(&outcome, 4)?;
    if outcome["output"] != input.as_str() {
        bail!("the shards were not put back in order: {outcome}");
    }
    let providers: std::collections::HashSet<&str> = shards
        .iter()
        .filter_map(|s| s["provider"].as_str())
        .collect();
    if providers.len() < shards.len().min(live_providers(testnet, requester).len()) {
        bail!("shards were not spread over the providers: {outcome}");
    }
    completed(testnet, outcome, started)
}

fn consensus(testnet: &Testnet, requester: usize) -> Result<Completed> {
    let committee: Vec<String> = live_providers(testnet, requester)
        .into_iter()
        .map(|i| testnet.state.nodes[i].peer_id.clone())
        .collect();
    let committee = committee.join(",");
    let (outcome, started) = publish_and_wait(
        testnet,
        requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "hello",
            "--committee",
            &committee,
        ],
    )?;
    if outcome["status"] != "completed" {
        bail!("the committee round failed: {outcome}");
    }
    let trace = outcome["trace_id"].as_str().unwrap_or_default().to_owned();
    let shown = testnet.cli_json(requester, &["trace", "show", &trace])?;
    let has = |kind: &str| {
        shown["objects"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["kind"] == kind))
    };
    if !has("proposal") || !has("vote") || !has("quorum_cert") {
        bail!("no proposal, votes and certificate in the trace");
    }
    completed(testnet, outcome, started)
}

fn adaptive(testnet: &Testnet, requester: usize) -> Result<Completed> {
    let (outcome, started) = publish_and_wait(
        testnet,
        requester,
        &[
            "intent",
            "publish",
            "--capability",
            "wordcount",
            "--input",
            "one two three",
            "--pattern",
            "auto",
        ],
    )?;
    if outcome["output"] != "3" {
        bail!("wrong output: {outcome}");
    }
    let trace = outcome["trace_id"].as_str().unwrap_or_default().to_owned();
    let analysis = testnet.cli_json(requester, &["trace", "analyze", &trace])?;
    if !analysis["chosen_by_adaptive"].is_object() {
        bail!("the trace does not say which pattern was chosen and why");
    }
    completed(testnet, outcome, started)
}

/// Runs a `pvl` command that publishes (`intent publish`, `workflow run`) on `requester`,
/// waiting for an offer from every live provider and for the outcome; the outcome and when
/// it started.
fn publish_and_wait(
    testnet: &Testnet,
    requester: usize,
    args: &[&str],
) -> Result<(Value, Instant)> {
    let min_offers = live_providers(testnet, requester).len().to_string();
    let mut all = args.to_vec();
    all.extend(["--min-offers", &min_offers, "--window", "10s", "--wait"]);
    let started = Instant::now();
    Ok((testnet.cli_json(requester, &all)?, started))
}

/// The live nodes other than the requester.
fn live_providers(testnet: &Testnet, requester: usize) -> Vec<usize> {
    (0..testnet.state.nodes.len())
        .filter(|&i| i != requester && testnet.is_alive(i))
        .collect()
}

/// A composite outcome completed with `n` parts, each done with a receipt; its parts.
fn check_parts(outcome: &Value, n: usize) -> Result<Vec<Value>> {
    if outcome["status"] != "completed" {
        bail!(
            "the run failed: {} ({})",
            outcome["reason"].as_str().unwrap_or("?"),
            outcome["detail"].as_str().unwrap_or("")
        );
    }
    let parts = outcome["parts"].as_array().cloned().unwrap_or_default();
    if parts.len() != n {
        bail!("{} parts instead of {n}: {outcome}", parts.len());
    }
    for part in &parts {
        if part["status"] != "done" || !part["receipt_id"].is_string() {
            bail!(
                "part {} did not complete with a receipt: {part}",
                part["label"]
            );
        }
    }
    Ok(parts)
}

/// The `Completed` record of a run that was checked.
fn completed(testnet: &Testnet, outcome: Value, started: Instant) -> Result<Completed> {
    let provider_key = outcome["provider"].as_str().unwrap_or_default();
    Ok(Completed {
        trace_id: outcome["trace_id"]
            .as_str()
            .context("the outcome has no trace_id")?
            .to_owned(),
        provider: node_of(testnet, provider_key),
        expected_provider: None,
        awards: outcome["awards"].as_u64().unwrap_or(0),
        elapsed_ms: started.elapsed().as_millis(),
        outcome,
    })
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
