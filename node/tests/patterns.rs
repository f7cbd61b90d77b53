//! The composite and committee patterns between real `pvl` processes: a three-stage workflow
//! whose stage provider is killed mid-run, a parallel job over four providers with one killed,
//! consensus with a five-member committee (rules and an exec vote handler), and the adaptive
//! choice avoiding a provider with a failing record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Net, Running, init, network, pvl, pvl_json, verifies, wait_until};
use serde_json::Value;

/// An `exec` executor section for `capability` running `script` with `sh -c`.
fn exec(capability: &str, script: &str, price: u64, eta_ms: u64) -> String {
    format!(
        "\n[[executor]]\ncapability = \"{capability}\"\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \
         {script:?}]\nprice = {price}\neta_ms = {eta_ms}\ntimeout_ms = 60000\n"
    )
}

/// Waits until the provider in `dir` holds a task (an award is in its store).
fn wait_for_award(dir: &Path) {
    wait_until("the provider to be awarded a task", || {
        pvl_json(dir, &["trace", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tasks"].as_u64().unwrap_or(0) > 0)
    });
}

/// The objects of a trace in `dir`.
fn objects(dir: &Path, trace: &str) -> Vec<Value> {
    pvl_json(dir, &["trace", "show", trace])["objects"]
        .as_array()
        .unwrap()
        .clone()
}

fn events_of<'a>(objects: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "event" && o["body"]["event_type"] == event_type)
        .collect()
}

#[test]
fn a_three_stage_workflow_flows_and_a_killed_stage_provider_is_replaced() {
    // Stage 2 (`slowhash`) takes 1.5 s; its cheapest provider is killed while it works.
    let slowhash = "sleep 1.5; sha256sum | cut -c1-64";
    let mut net = network(&[
        ("echo:1:100", ""),
        ("", &exec("slowhash", slowhash, 1, 1500)),
        ("", &exec("slowhash", slowhash, 5, 1500)),
        ("wordcount:1:100", ""),
    ]);
    let file = net.requester.join("digest.toml");
    std::fs::write(
        &file,
        "name = \"digest\"\n\
         [[stage]]\nname = \"fetch\"\ncapability = \"echo\"\n\
         [[stage]]\nname = \"hash\"\ncapability = \"slowhash\"\ninputs = [\"fetch\"]\nmin_offers = 2\n\
         [[stage]]\nname = \"count\"\ncapability = \"wordcount\"\ninputs = [\"hash\"]\n",
    )
    .unwrap();
    let requester = net.requester.clone();
    let file_arg = file.to_str().unwrap().to_owned();
    let run = std::thread::spawn(move || {
        pvl_json(
            &requester,
            &[
                "workflow", "run", &file_arg, "--input", "hello", "--window", "1s", "--wait",
            ],
        )
    });
    let cheap = net.nodes.remove(2);
    wait_for_award(&cheap.dir);
    drop(cheap); // SIGKILL while the stage runs
    let outcome = run.join().unwrap();

    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["output"], "1", "{outcome}");
    let parts = outcome["parts"].as_array().unwrap();
    let labels: Vec<&str> = parts.iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["fetch", "hash", "count"]);
    assert_eq!(parts[0]["output"], "hello");
    let digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assert_eq!(parts[1]["output"], format!("{digest}\n"));
    assert_eq!(
        parts[1]["awards"], 2,
        "the hash stage was re-awarded: {outcome}"
    );
    assert_eq!(parts[1]["provider"], net.providers[2].as_str());
    for part in parts {
        assert_eq!(part["status"], "done", "{part}");
        assert!(part["receipt_id"].is_string(), "{part}");
    }
    // One trace links every stage, and it verifies offline.
    let trace = outcome["trace_id"].as_str().unwrap();
    let all = objects(&net.requester, trace);
    assert_eq!(events_of(&all, "stage-done").len(), 3);
    assert_eq!(events_of(&all, "workflow-done").len(), 1);
    verifies(&net.requester, trace, false);

    // A malformed workflow is refused before anything is published, with the line at fault.
    std::fs::write(
        &file,
        "[[stage]]\nname = \"a\"\ncapability = \"echo\"\ninputs = [\"b\"]\n\
         [[stage]]\nname = \"b\"\ncapability = \"echo\"\ninputs = [\"a\"]\n",
    )
    .unwrap();
    let out = pvl(&net.requester, &["workflow", "run", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cycle") && err.contains("line"), "{err}");
}

#[test]
fn a_parallel_job_completes_in_order_when_a_shard_provider_is_killed() {
    let slowcat = "sleep 1; cat";
    let mut net = network(&[
        ("", &exec("slowcat", slowcat, 1, 1000)),
        ("", &exec("slowcat", slowcat, 2, 1000)),
        ("", &exec("slowcat", slowcat, 3, 1000)),
        ("", &exec("slowcat", slowcat, 4, 1000)),
    ]);
    let input: String = (1..=8).map(|i| format!("line {i}\n")).collect();
    let requester = net.requester.clone();
    let input_arg = input.clone();
    let run = std::thread::spawn(move || {
        pvl_json(
            &requester,
            &[
                "intent",
                "publish",
                "--capability",
                "slowcat",
                "--input",
                &input_arg,
                "--parallel",
                "4",
                "--split",
                "lines",
                "--reduce",
                "concat",
                "--min-offers",
                "4",
                "--window",
                "2s",
                "--wait",
            ],
        )
    });
    let victim = net.nodes.remove(1);
    wait_for_award(&victim.dir);
    drop(victim);
    let outcome = run.join().unwrap();

    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["output"], input, "{outcome}");
    let parts = outcome["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 4, "{outcome}");
    let mut rebuilt = String::new();
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part["label"], format!("shard-{i}"));
        assert_eq!(part["status"], "done", "{part}");
        rebuilt.push_str(part["output"].as_str().unwrap());
    }
    assert_eq!(rebuilt, input);
    // The killed provider's shard was re-awarded; nobody else's was.
    let reawarded: Vec<&Value> = parts.iter().filter(|p| p["awards"] != 1).collect();
    assert_eq!(reawarded.len(), 1, "{outcome}");
    assert_ne!(reawarded[0]["provider"], net.providers[0].as_str());
    verifies(&net.requester, outcome["trace_id"].as_str().unwrap(), false);
}

/// Starts a committee member whose `[consensus]` section is edited by `edit`.
fn member(net: &mut Net, name: &str, edit: impl Fn(String) -> String) -> String {
    let boot = pvl_json(&net.requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let dir: PathBuf = net._tmp.path().join(name);
    init(&dir, &["--bootstrap", &boot]);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    std::fs::write(dir.join("config.toml"), edit(config)).unwrap();
    net.nodes.push(Running::start(&dir));
    pvl_json(&dir, &["id"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_committee_of_five_approves_with_four_and_rejects_with_two_refusals() {
    let mut net = network(&[("sha256:10:100", "")]);
    let mut members = Vec::new();
    members.push(member(&mut net, "m1", |c| c));
    members.push(member(&mut net, "m2", |c| c));
    // m3 decides with an exec handler that reads the terms and approves.
    members.push(member(&mut net, "m3", |c| {
        c.replace(
            "exec = []",
            "exec = [\"sh\", \"-c\", \"read terms; echo approve terms read\"]",
        )
    }));
    members.push(member(&mut net, "m4", |c| {
        c.replace("# max_cost = 100", "max_cost = 15")
    }));
    members.push(member(&mut net, "m5", |c| {
        c.replace("# max_cost = 100", "max_cost = 5")
    }));
    let n = members.len() + 1;
    wait_until("the requester to know every node", || {
        pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            >= n
    });
    let committee = members.join(",");
    let publish = |capability: &str| {
        pvl_json(
            &net.requester,
            &[
                "intent",
                "publish",
                "--capability",
                capability,
                "--input",
                "hello",
                "--committee",
                &committee,
                "--threshold",
                "4",
                "--min-offers",
                "1",
                "--window",
                "2s",
                "--wait",
            ],
        )
    };

    // Price 10: m5 (at most 5) rejects, four approve: the award goes ahead with a certificate.
    let outcome = publish("sha256");
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let trace = outcome["trace_id"].as_str().unwrap();
    let all = objects(&net.requester, trace);
    let kinds = |k: &str| all.iter().filter(|o| o["kind"] == k).count();
    assert_eq!(kinds("proposal"), 1);
    assert!(kinds("vote") >= 4, "{all:?}");
    assert_eq!(kinds("quorum_cert"), 1);
    let rejecting: Vec<&Value> = all
        .iter()
        .filter(|o| o["kind"] == "vote" && o["body"]["approve"] == false)
        .collect();
    for vote in &rejecting {
        assert_eq!(vote["signer"], members[4].as_str(), "{vote}");
    }
    verifies(&net.requester, trace, false);

    // Price 20 (another provider, of echo): m4 and m5 reject, the threshold cannot be met.
    let provider2 = net._tmp.path().join("pricey");
    let boot = pvl_json(&net.requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    init(
        &provider2,
        &["--bootstrap", &boot, "--builtin", "echo:20:100"],
    );
    net.nodes.push(Running::start(&provider2));
    wait_until("the requester to know the second provider", || {
        pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            > n
    });
    let out = pvl(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input",
            "hello",
            "--committee",
            &committee,
            "--threshold",
            "4",
            "--min-offers",
            "1",
            "--window",
            "2s",
            "--wait",
            "--json",
        ],
    );
    let rejected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rejected["status"], "failed", "{rejected}");
    assert_eq!(rejected["reason"], "rejected-by-committee", "{rejected}");
    let detail = rejected["detail"].as_str().unwrap();
    assert!(detail.contains("cost 20"), "{detail}");
}

#[test]
fn the_adaptive_choice_is_recorded_and_avoids_a_provider_that_keeps_failing() {
    // The cheap provider fails every task; the other one works.
    let mut net = network(&[
        ("", &exec("flaky", "exit 1", 1, 100)),
        ("", &exec("flaky", "cat", 5, 100)),
    ]);
    let publish = |net: &Net| {
        pvl_json(
            &net.requester,
            &[
                "intent",
                "publish",
                "--capability",
                "flaky",
                "--input",
                "data",
                "--min-offers",
                "2",
                "--window",
                "2s",
                "--wait",
            ],
        )
    };
    // Twice the cheap provider wins, fails, and the task goes to the other one.
    for _ in 0..2 {
        let outcome = publish(&net);
        assert_eq!(outcome["status"], "completed", "{outcome}");
        assert_eq!(outcome["awards"], 2, "{outcome}");
        assert_eq!(outcome["provider"], net.providers[1].as_str());
    }
    // Now its record is poor: it is avoided, and the first award goes to the good one.
    let outcome = publish(&net);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["awards"], 1, "{outcome}");
    assert_eq!(outcome["provider"], net.providers[1].as_str());
    let trace = outcome["trace_id"].as_str().unwrap();
    let all = objects(&net.requester, trace);
    let chosen = events_of(&all, "pattern-chosen");
    assert_eq!(chosen.len(), 1, "{all:?}");
    let text = chosen[0].to_string();
    assert!(text.contains("contract-net"), "{text}");
    assert!(
        text.contains(&net.providers[0][..8]),
        "the avoided provider is named: {text}"
    );
    net.nodes.truncate(1);
}

/// Sends a signal to a process (`STOP`, `CONT`).
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_round_with_two_silent_members_times_out_and_the_next_round_decides() {
    let mut net = network(&[("sha256:10:100", "")]);
    let members: Vec<String> = (1..=5)
        .map(|i| member(&mut net, &format!("m{i}"), |c| c))
        .collect();
    let n = members.len() + 1;
    wait_until("the requester to know every node", || {
        pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            >= n
    });
    // m4 and m5 stop answering (SIGSTOP): round 1 gets 3 approvals of the 4 needed.
    let silent: Vec<u32> = net.nodes[net.nodes.len() - 2..]
        .iter()
        .map(Running::pid)
        .collect();
    for pid in &silent {
        signal(*pid, "STOP");
    }
    let requester = net.requester.clone();
    let committee = members.join(",");
    let run = std::thread::spawn(move || {
        pvl_json(
            &requester,
            &[
                "intent",
                "publish",
                "--capability",
                "sha256",
                "--input",
                "hello",
                "--committee",
                &committee,
                "--threshold",
                "4",
                "--min-offers",
                "1",
                "--window",
                "2s",
                "--wait",
            ],
        )
    });
    // Once round 1 has timed out, the two come back and round 2 decides.
    wait_until("round 1 to time out", || {
        let traces = pvl_json(&net.requester, &["trace", "list"]);
        traces.as_array().unwrap().iter().any(|t| {
            let id = t["trace_id"].as_str().unwrap();
            !events_of(&objects(&net.requester, id), "round-timeout").is_empty()
        })
    });
    for pid in &silent {
        signal(*pid, "CONT");
    }
    let outcome = run.join().unwrap();
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let trace = outcome["trace_id"].as_str().unwrap();
    let analysis = pvl_json(&net.requester, &["trace", "analyze", trace]);
    let rounds = analysis["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 2, "{analysis}");
    assert_eq!(rounds[0]["outcome"], "timed-out", "{analysis}");
    assert_eq!(rounds.last().unwrap()["outcome"], "approved", "{analysis}");
}
