//! Agent programs bid and work for a provider node through the control API, with real `pvl`
//! processes: a requester and two providers whose `translate` capability is served by
//! programs (threads of this test speaking `pvl_api::Client`, as any program would).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Running, init, network, pvl_json, verifies_complete, wait_until};
use pvl_api::{BidAnswer, Client, ProgressReport, TaskAnswer, VoteAnswer, Work};

/// An agent executor for `translate` whose tasks fail after 1.5 s without an answer.
const AGENT: &str = "\n[[executor]]\ncapability = \"translate\"\nkind = \"agent\"\nprice = 0\n\
                     eta_ms = 0\ntimeout_ms = 1500\nbid_timeout_ms = 800\n";

/// A program serving `translate` on the node in `dir`: bids `cost_per_byte` times the input
/// length (declines inputs starting with "decline"), reports half-way progress, answers the
/// input upper-cased; while `stall` is set it takes tasks and never answers them.
fn program(dir: &Path, cost_per_byte: u64, stall: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let api = Client::open(dir).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(item)) = api.next_work("translate", Duration::from_millis(500)) else {
                continue;
            };
            match item.work {
                Work::Bid(bid) => {
                    let input = bid.input.unwrap_or_default();
                    let answer = if input.starts_with("decline") {
                        BidAnswer::Decline {
                            reason: "not my language".into(),
                        }
                    } else {
                        BidAnswer::Offer {
                            cost: cost_per_byte * input.len() as u64,
                            eta_ms: 50,
                            reliability_bps: 9_900,
                            expires_in_ms: None,
                            cpu_millicores: None,
                            memory_bytes: None,
                            disk_bytes: None,
                        }
                    };
                    let _ = api.bid(item.id, &answer);
                }
                Work::Vote(_) => {}
                Work::Task(task) => {
                    if stall.load(Ordering::Relaxed) {
                        continue;
                    }
                    let _ = api.progress(
                        item.id,
                        &ProgressReport {
                            fraction_bps: Some(5_000),
                            message: "half way".into(),
                        },
                    );
                    let _ = api.finish(
                        item.id,
                        &TaskAnswer::Done {
                            output: Some(task.input.unwrap_or_default().to_uppercase()),
                            output_hex: None,
                        },
                    );
                }
            }
        }
    });
}

/// A `translate` round from `dir` with `--wait --json` (two offers awaited for 1.5 s): the
/// JSON the CLI printed, whether the round completed or failed.
fn publish(dir: &Path, input: &str) -> serde_json::Value {
    let out = common::pvl(
        dir,
        &[
            "intent",
            "publish",
            "--capability",
            "translate",
            "--input",
            input,
            "--budget",
            "100",
            "--window",
            "1500ms",
            "--min-offers",
            "2",
            "--wait",
            "--json",
        ],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn agent_programs_bid_on_their_own_terms_and_do_the_work() {
    let net = network(&[("", AGENT), ("", AGENT)]);
    let stop = Arc::new(AtomicBool::new(false));
    let stall_cheap = Arc::new(AtomicBool::new(false));
    // Provider 0's program is the cheaper one.
    program(&net.nodes[1].dir, 1, stall_cheap.clone(), stop.clone());
    program(
        &net.nodes[2].dir,
        3,
        Arc::new(AtomicBool::new(false)),
        stop.clone(),
    );
    let _stop = StopOnDrop(stop);

    // Both programs bid; the cheaper one wins, reports progress and answers.
    let outcome = publish(&net.requester, "hello");
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["output"], "HELLO");
    assert_eq!(outcome["cost"], 5);
    assert_eq!(outcome["provider"], net.providers[0].as_str());
    let trace = outcome["trace_id"].as_str().unwrap().to_owned();
    let shown = pvl_json(&net.requester, &["trace", "show", &trace]);
    let kinds: Vec<&str> = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "offer").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"task_progress"), "{kinds:?}");
    verifies_complete(&net.requester, &trace);

    // Both decline: nobody offers.
    let failed = publish(&net.requester, "decline this");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["reason"], "no-offers", "{failed}");

    // The winner's program takes the task and goes silent: after the executor's time limit
    // the task fails and the requester re-awards it to the other program.
    stall_cheap.store(true, Ordering::Relaxed);
    let outcome = publish(&net.requester, "again");
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["output"], "AGAIN");
    assert_eq!(outcome["provider"], net.providers[1].as_str());
    assert_eq!(outcome["awards"], 2, "{outcome}");
    verifies_complete(&net.requester, outcome["trace_id"].as_str().unwrap());
}

/// Stops the program threads when the test ends, whatever way it ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_voter_program_decides_a_committee_members_vote() {
    let mut net = network(&[("echo:7:50", "")]);
    let boot = pvl_json(&net.requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = net._tmp.path().join("member");
    init(&dir, &["--bootstrap", &boot]);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("agent = false"), "{config}");
    std::fs::write(
        dir.join("config.toml"),
        config.replace("agent = false", "agent = true"),
    )
    .unwrap();
    net.nodes.push(Running::start(&dir));
    let member = pvl_json(&dir, &["id"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until("the requester to know the member", || {
        pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            >= 2
    });
    // The voter program approves awards costing at most 5: the only offer costs 7.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let api = Client::open(&dir).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(item)) = api.next_vote(Duration::from_millis(500)) else {
                continue;
            };
            let Work::Vote(proposal) = item.work else {
                continue;
            };
            let cost: u64 = proposal
                .action
                .split_whitespace()
                .find_map(|t| t.strip_prefix("cost="))
                .and_then(|c| c.parse().ok())
                .unwrap_or(u64::MAX);
            let answer = VoteAnswer {
                approve: cost <= 5,
                reason: format!("my limit is 5, the award costs {cost}"),
            };
            let _ = api.vote(item.id, &answer);
        }
    });
    let out = common::pvl(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input",
            "hello",
            "--committee",
            &member,
            "--threshold",
            "1",
            "--min-offers",
            "1",
            "--window",
            "2s",
            "--wait",
            "--json",
        ],
    );
    let rejected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rejected["status"], "failed", "{rejected}");
    assert_eq!(rejected["reason"], "rejected-by-committee", "{rejected}");
    let trace = rejected["trace_id"].as_str().unwrap();
    let shown = pvl_json(&net.requester, &["trace", "show", trace]);
    let vote = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "vote")
        .expect("the member's vote is in the requester's trace");
    assert_eq!(vote["body"]["approve"], false);
    assert_eq!(
        vote["body"]["reason"], "my limit is 5, the award costs 7",
        "{vote}"
    );
    assert_eq!(vote["signer"], member.as_str());
}
