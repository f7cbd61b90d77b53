//! Contract-net and auctions between real `pvl` processes: a requester and three providers of
//! one capability at different prices, speeds and reliabilities, each strategy picking its
//! winner, and a failing winner replaced by the next-best offer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Net, Running, WAIT, network, network_at, pvl, pvl_json, pvl_ok, verifies_complete, wait_until,
};
use serde_json::Value;

/// The trace of the requester's most recent round.
fn shown_trace_of_last_round(net: &Net) -> String {
    pvl_json(&net.requester, &["trace", "list"])[0]["trace_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn publish(net: &Net, strategy: &str) -> Value {
    // With min-offers equal to the number of providers the window closes once all have bid.
    pvl_json(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "hello",
            "--strategy",
            strategy,
            "--min-offers",
            &net.providers.len().to_string(),
            "--window",
            "5s",
            "--wait",
        ],
    )
}

#[test]
fn each_strategy_picks_its_winner_and_both_sides_hold_the_receipt() {
    // price, eta ms, reliability bps
    let net = network(&[
        ("sha256:30:300:9000", ""),
        ("sha256:10:900:9500", ""),
        ("sha256:20:600:9990", ""),
    ]);
    let expected_output = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    for (strategy, winner) in [
        ("lowest-cost", 1),
        ("fastest", 0),
        ("highest-quality", 2),
        ("weighted:cost=0,latency=1,reliability=0", 0),
    ] {
        let outcome = publish(&net, strategy);
        assert_eq!(outcome["status"], "completed", "{strategy}: {outcome}");
        assert_eq!(
            outcome["provider"],
            net.providers[winner].as_str(),
            "{strategy}"
        );
        assert_eq!(outcome["output"], expected_output);
        assert_eq!(outcome["receipt_countersigned"], true);
        let trace = outcome["trace_id"].as_str().unwrap();
        // The requester's trace holds every offer, the selection event, the award, the rejects
        // and the countersigned receipt, and the store calls it done.
        let shown = pvl_json(&net.requester, &["trace", "show", trace]);
        let kinds: Vec<&str> = shown["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "offer").count(),
            3,
            "{kinds:?}"
        );
        // One signed reject names both losers' offers, each with its own reason.
        let rejected: usize = shown["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "reject")
            .map(|o| 1 + o["body"]["more"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(rejected, 2, "{kinds:?}");
        for kind in ["intent", "event", "task_start", "task_done", "receipt"] {
            assert!(kinds.contains(&kind), "{strategy}: no {kind} in {kinds:?}");
        }
        assert_eq!(shown["summary"]["status"], "done");
    }

    // The winner's copy of the last trace lacks what it never received (the selection event,
    // the other offers): it verifies as a partial copy, and `--complete` says what is absent.
    let trace = shown_trace_of_last_round(&net);
    let winner_dir = net.nodes[1].dir.clone(); // provider 0, the last (weighted) winner
    let bundle = winner_dir.join("copy.bundle");
    pvl_ok(
        &winner_dir,
        &[
            "trace",
            "export",
            &trace,
            "--format",
            "bundle",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let partial = pvl_ok(&winner_dir, &["trace", "verify", bundle.to_str().unwrap()]);
    assert!(partial.contains("partial copy"), "{partial}");
    let complete = pvl(
        &winner_dir,
        &["trace", "verify", bundle.to_str().unwrap(), "--complete"],
    );
    assert!(!complete.status.success());
    assert!(String::from_utf8_lossy(&complete.stdout).contains("ABSENT"));

    // The same kind of round for people: `--wait` without `--json` follows it live (and
    // honours the strategy: the fastest provider is not the cheapest).
    let live = pvl_ok(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "hello",
            "--strategy",
            "fastest",
            "--min-offers",
            "3",
            "--window",
            "5s",
            "--wait",
        ],
    );
    let fastest = &net.providers[0][..8];
    for line in [
        // Three offers wanted, three providers known from their ads: the intent goes to
        // each of them directly, not by gossip (SPEC.md §4.3).
        "sent intent ",
        " directly to 3 provider(s): ",
        "trace ",
        "offer ",
        "award ",
        "reject ",
        &format!("done by {fastest}"),
        &format!("completed by {fastest} for 30 (awards: 1)"),
        &format!("output  {expected_output}"),
        "(countersigned: true)",
    ] {
        assert!(live.contains(line), "no `{line}` in:\n{live}");
    }
    assert_eq!(live.matches("  offer ").count(), 3, "{live}");
}

#[test]
fn a_failing_winner_is_replaced_by_the_next_best_offer() {
    // The cheapest provider's executor always fails.
    let failing = "\n[[executor]]\ncapability = \"sha256\"\nkind = \"exec\"\ncommand = [\"false\"]\nprice = 1\neta_ms = 300\n";
    let net = network(&[("", failing), ("sha256:10:300", "")]);
    let outcome = publish(&net, "lowest-cost");
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["provider"], net.providers[1].as_str());
    assert_eq!(outcome["awards"], 2);
    let trace = outcome["trace_id"].as_str().unwrap();
    let shown = pvl_json(&net.requester, &["trace", "show", trace]);
    let reassigned = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["body"]["event_type"] == "reassigned");
    assert!(reassigned, "no reassignment event");
}

#[test]
fn no_provider_means_a_clear_failure_not_a_hang() {
    let net = network(&[("echo:1:100", "")]);
    let out = pvl(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "x",
            "--window",
            "1s",
            "--wait",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("the intent failed"), "{err}");
}

#[test]
fn a_directed_intent_every_provider_declines_is_widened_at_once_not_when_its_window_closes() {
    let net = network(&[("sha256:50:100", "")]);
    wait_until("the provider's ad in the requester's directory", || {
        pvl_json(&net.requester, &["capabilities"])
            .as_array()
            .is_some_and(|listed| !listed.is_empty())
    });
    // One offer wanted, one provider known: the intent goes to it directly. It charges 50,
    // the budget is 20: it declines in its acknowledgement (`not-bidding`), so no offer can
    // come, and the round is widened to everyone by gossip right away, not after 30 s.
    let trace = publish_intent(
        &net,
        &[
            "--capability",
            "sha256",
            "--input",
            "x",
            "--budget",
            "20",
            "--min-offers",
            "1",
            "--window",
            "30s",
        ],
    );
    let mut objects = Vec::new();
    wait_until("the audience-widened event", || {
        objects = pvl_json(&net.requester, &["trace", "show", &trace])["objects"]
            .as_array()
            .unwrap()
            .clone();
        objects
            .iter()
            .any(|o| o["body"]["event_type"] == "audience-widened")
    });
    let time_of = |what: &dyn Fn(&Value) -> bool| {
        objects.iter().find(|o| what(o)).unwrap()["timestamp_ms"]
            .as_u64()
            .unwrap()
    };
    let intent = time_of(&|o| o["kind"] == "intent");
    let widened = time_of(&|o| o["body"]["event_type"] == "audience-widened");
    assert!(
        widened - intent < 10_000,
        "widened {} ms after the intent: it waited for the window",
        widened - intent
    );
    let intents = objects.iter().filter(|o| o["kind"] == "intent").count();
    assert_eq!(intents, 2, "the directed intent and the gossiped one");
}

#[test]
fn an_over_budget_offer_is_never_chosen_and_the_receipt_verifies_offline() {
    let net = network(&[("sha256:50:100", "")]);
    // The only provider charges 50: with a budget of 20 nothing is awarded and the intent fails
    // (the provider sees the budget in the intent and does not bid at all).
    let out = pvl(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "x",
            "--budget",
            "20",
            "--window",
            "1s",
            "--wait",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("the intent failed"), "{err}");
    // Within budget it completes, and the exported trace (offer, award, done, receipt with
    // both signatures) verifies offline from the bundle alone.
    let outcome = pvl_json(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "x",
            "--budget",
            "60",
            "--min-offers",
            "1",
            "--wait",
        ],
    );
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let trace = outcome["trace_id"].as_str().unwrap();
    let bundle = net.requester.join("t.bundle");
    let out = pvl(
        &net.requester,
        &[
            "trace",
            "export",
            trace,
            "--format",
            "bundle",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let out = pvl(
        &net.requester,
        &["trace", "verify", bundle.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let shown = pvl_json(&net.requester, &["trace", "show", trace]);
    let receipt = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "receipt")
        .unwrap();
    assert!(receipt["countersignature"].is_string(), "{receipt}");
}

#[test]
fn a_winner_killed_after_the_award_is_replaced_and_the_task_completes() {
    // Provider 0 is the cheapest but its task takes 30 s; it is killed once it holds the award.
    let slow = "\n[[executor]]\ncapability = \"sha256\"\nkind = \"exec\"\ncommand = [\"sleep\", \"30\"]\nprice = 1\neta_ms = 300\ntimeout_ms = 60000\n";
    let mut net = network(&[("", slow), ("sha256:10:300", "")]);
    let requester = net.requester.clone();
    let publisher = std::thread::spawn(move || {
        pvl_json(
            &requester,
            &[
                "intent",
                "publish",
                "--capability",
                "sha256",
                "--input",
                "hello",
                "--min-offers",
                "2",
                "--window",
                "5s",
                "--wait",
            ],
        )
    });
    let winner_dir = net.nodes[1].dir.clone();
    wait_until("the award to reach the cheap provider", || {
        pvl_json(&winner_dir, &["trace", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tasks"].as_u64().unwrap_or(0) >= 1)
    });
    drop(net.nodes.remove(1)); // SIGKILL
    let outcome = publisher.join().unwrap();
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["provider"], net.providers[1].as_str());
    assert_eq!(outcome["awards"], 2);
}

#[test]
fn junk_from_a_rogue_peer_is_refused_not_stored_and_the_round_completes() {
    use pvl_protocol::{Body, Envelope, ObjectId, Offer, Receipt, TaskDone, TaskStatus};

    let net = network(&[("sha256:10:300", "")]);
    // The rogue is a bare pvl-net peer in this test process, with its own key.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let boot: pvl_net::Multiaddr = pvl_json(&net.requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let keypair = pvl_net::identity::Keypair::generate_ed25519();
    let key = pvl_net::protocol_keypair(&keypair).unwrap();
    let mut config = pvl_net::NetConfig::new(keypair);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.bootstrap = vec![boot];
    let (rogue, mut events, event_loop) = runtime.block_on(async { pvl_net::new(config) }).unwrap();
    runtime.spawn(event_loop.run());
    wait_until("the requester to know the rogue too", || {
        pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            >= 2
    });

    // When the intent arrives, the rogue sends three bad objects in its trace: an offer for an
    // intent that does not exist, a TaskDone for a task nobody awarded it, and a receipt it
    // forged for that task.
    let requester_dir = net.requester.clone();
    let publisher = std::thread::spawn(move || {
        pvl_json(
            &requester_dir,
            &[
                "intent",
                "publish",
                "--capability",
                "sha256",
                "--input",
                "hello",
                "--window",
                "3s",
                "--wait",
            ],
        )
    });
    let intent = runtime.block_on(async {
        loop {
            match tokio::time::timeout(WAIT, events.recv())
                .await
                .expect("no intent reached the rogue")
            {
                Some(pvl_net::NetEvent::Object { object, .. })
                    if object.kind() == pvl_protocol::Kind::Intent =>
                {
                    break *object;
                }
                Some(_) => continue,
                None => panic!("rogue event loop stopped"),
            }
        }
    });
    let now = pvl_net::now_ms();
    let sign = |body: Body| {
        Envelope {
            trace: Some(intent.id()),
            parents: vec![intent.id()],
            signer: key.public(),
            timestamp_ms: now,
            body,
        }
        .sign(&key)
        .unwrap()
    };
    let fake_task = ObjectId([7; 32]);
    let junk = vec![
        sign(Body::Offer(Offer {
            intent: ObjectId([9; 32]),
            cost: 1,
            eta_ms: 10,
            reliability_bps: 10_000,
            resources: Default::default(),
            expires_at_ms: now + 20_000,
        })),
        sign(Body::TaskDone(TaskDone {
            task: fake_task,
            status: TaskStatus::Ok,
            output: None,
            started_at_ms: now,
            finished_at_ms: now,
        })),
        sign(Body::Receipt(Receipt {
            task: fake_task,
            intent: intent.id(),
            requester: intent.signer(),
            status: TaskStatus::Ok,
            output_sha256: None,
            output_size: 0,
            cost: 1,
            started_at_ms: now,
            finished_at_ms: now,
        })),
    ];
    // Sent to the requester itself (the gossip may have come through the provider).
    let requester = pvl_net::peer_id_of(&intent.signer()).unwrap();
    let junk_ids: Vec<String> = junk.iter().map(|o| o.id().to_string()).collect();
    runtime.block_on(async {
        for object in junk {
            // Refused in the acknowledgement, with the reason (see tests/admission.rs).
            match rogue.send(requester, object).await {
                Err(pvl_net::NetError::Refused(reason)) => assert!(
                    reason.starts_with("unknown-intent")
                        || reason.starts_with("task-not-live")
                        || reason.starts_with("not-the-awarded-provider"),
                    "{reason}"
                ),
                other => panic!("the junk was not refused: {other:?}"),
            }
        }
    });

    // The round is not disturbed: the honest provider wins, once.
    let outcome = publisher.join().unwrap();
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["provider"], net.providers[0].as_str());
    assert_eq!(outcome["awards"], 1);
    // The junk belongs to no conversation of the requester's: it is refused, counted, and
    // not stored (one record rule: only what a state machine admits is recorded).
    let shown = pvl_json(
        &net.requester,
        &["trace", "show", outcome["trace_id"].as_str().unwrap()],
    );
    let stored: Vec<&str> = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    for id in &junk_ids {
        assert!(
            !stored.contains(&id.as_str()),
            "rogue object {id} was stored: {}",
            serde_json::to_string_pretty(&shown).unwrap()
        );
    }
    let status = pvl_json(&net.requester, &["status"]);
    assert!(
        status["engine"]["refused"].as_u64().unwrap() >= 3,
        "{status}"
    );
}

/// A free TCP port on loopback (bound and released: the requester comes back on it after a
/// restart, so its providers find it where it was).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Flushes every store write as it is made (`flush_each_write`), so that what the requester
/// recorded, once a test sees it, is on disk when the test SIGKILLs it (with only the 500 ms
/// background flush, or even 5 ms, a loaded machine lost the offers a test had just seen).
fn flush_often(dir: &std::path::Path) {
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config = config
        .replace("flush_interval_ms = 500", "flush_interval_ms = 5")
        .replace("flush_each_write = false", "flush_each_write = true");
    assert!(config.contains("flush_each_write = true"), "{config}");
    std::fs::write(dir.join("config.toml"), config).unwrap();
}

/// A requester and its providers, the requester set up to come back after a SIGKILL as a
/// real deployment would: a fixed port, a bootstrap peer, every store write flushed before it
/// is visible (the tests kill it once they see the objects they need).
fn restartable(providers: &[(&str, &str)]) -> Net {
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let mut net = network_at(&listen, providers);
    flush_often(&net.requester);
    bootstrap_from_first_provider(&net);
    // Both settings take effect from the next start.
    assert!(net.nodes.remove(0).stop().success());
    net.nodes.insert(0, Running::start(&net.requester));
    wait_until("the requester to know its providers again", || {
        pvl_json(&net.requester, &["peers"])
            .as_array()
            .unwrap()
            .len()
            >= providers.len()
    });
    net
}

/// Publishes an intent from the requester (`pvl intent publish ARGS`); returns its trace.
fn publish_intent(net: &Net, args: &[&str]) -> String {
    let mut all = vec!["intent", "publish"];
    all.extend_from_slice(args);
    pvl_json(&net.requester, &all)["trace_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// SIGKILL to the requester, then `pvl run` on its directory again.
fn kill_and_restart_requester(net: &mut Net) {
    net.nodes.remove(0).kill();
    net.nodes.insert(0, Running::start(&net.requester));
}

/// After its restart the requester finds the network through the first provider (without a
/// bootstrap list it would know nobody until the providers dial it again).
fn bootstrap_from_first_provider(net: &Net) {
    let provider = net._tmp.path().join("provider-0");
    let addr = pvl_json(&provider, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let config = std::fs::read_to_string(net.requester.join("config.toml")).unwrap();
    assert!(config.contains("bootstrap = []"), "{config}");
    let config = config.replace("bootstrap = []", &format!("bootstrap = [\"{addr}\"]"));
    std::fs::write(net.requester.join("config.toml"), config).unwrap();
}

fn kinds(dir: &std::path::Path, trace: &str, kind: &str) -> usize {
    pvl_json(dir, &["trace", "show", trace])["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == kind)
        .count()
}

#[test]
fn a_requester_killed_after_the_award_resumes_and_countersigns_the_receipt() {
    // The provider sleeps 1.5 s on the task: the requester is SIGKILLed and back meanwhile.
    let mut net = restartable(&[("sleep:5:4000", ""), ("sleep:9:4000", "")]);
    let trace = publish_intent(
        &net,
        &[
            "--capability",
            "sleep",
            "--input",
            "1500",
            "--min-offers",
            "2",
            "--window",
            "5s",
        ],
    );
    wait_until("the task to be awarded", || {
        kinds(&net.requester, &trace, "task_start") == 1
    });
    kill_and_restart_requester(&mut net);

    // The restarted node follows the award it sent: the provider's done and receipt reach
    // it, it countersigns, and nothing is awarded twice.
    let outcome = pvl_json(&net.requester, &["intent", "outcome", &trace]);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(
        outcome["provider"],
        net.providers[0].as_str(),
        "the cheaper offer"
    );
    assert_eq!(outcome["receipt_countersigned"], true, "{outcome}");
    assert_eq!(outcome["awards"], 1, "{outcome}");
    assert_eq!(kinds(&net.requester, &trace, "task_start"), 1);
    assert_eq!(kinds(&net.requester, &trace, "intent"), 1);
    verifies_complete(&net.requester, &trace);
    // A second restart finds the run ended and leaves it alone.
    let requester = net.nodes.remove(0);
    assert!(requester.stop().success());
    net.nodes.insert(0, Running::start(&net.requester));
    let outcome = pvl_json(&net.requester, &["intent", "outcome", &trace]);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let shown = pvl_json(&net.requester, &["trace", "show", &trace]);
    assert!(
        !shown["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["body"]["event_type"] == "intent-failed"),
        "{shown}"
    );
}

#[test]
fn a_requester_killed_during_the_offer_window_keeps_its_offers_and_completes() {
    let mut net = restartable(&[("echo:7:100", ""), ("echo:3:100", "")]);
    // A 4 s window: both offers are in long before it closes.
    let trace = publish_intent(
        &net,
        &["--capability", "echo", "--input", "hi", "--window", "4s"],
    );
    wait_until("both offers", || {
        kinds(&net.requester, &trace, "offer") == 2
    });
    kill_and_restart_requester(&mut net);

    // The offers received before the kill count; the window closes when it was due.
    let outcome = pvl_json(&net.requester, &["intent", "outcome", &trace]);
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(
        outcome["provider"],
        net.providers[1].as_str(),
        "the cheaper offer"
    );
    assert_eq!(outcome["receipt_countersigned"], true, "{outcome}");
    assert_eq!(
        kinds(&net.requester, &trace, "intent"),
        1,
        "not re-published"
    );
    assert_eq!(kinds(&net.requester, &trace, "offer"), 2);
    assert_eq!(kinds(&net.requester, &trace, "task_start"), 1);
    verifies_complete(&net.requester, &trace);
}

#[test]
fn a_requester_cancels_a_round_and_its_trace_says_why() {
    let net = network(&[("echo:5:50", "")]);
    // Waits for 5 offers over 30 s: only one provider will ever offer.
    let published = pvl_json(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "echo",
            "--input",
            "never mind",
            "--min-offers",
            "5",
            "--window",
            "30s",
        ],
    );
    let trace = published["trace_id"].as_str().unwrap().to_owned();
    wait_until("the provider's offer", || {
        pvl_json(&net.requester, &["trace", "show", &trace])["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "offer")
    });
    let out = pvl(
        &net.requester,
        &[
            "intent",
            "cancel",
            &trace[..8],
            "--reason",
            "changed my mind",
            "--json",
        ],
    );
    let cancelled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cancelled["status"], "failed", "{cancelled}");
    assert_eq!(cancelled["reason"], "cancelled", "{cancelled}");
    assert!(
        cancelled["detail"]
            .as_str()
            .unwrap()
            .contains("changed my mind"),
        "{cancelled}"
    );
    // The ending event is signed by the requester and carries the reason.
    let shown = pvl_json(&net.requester, &["trace", "show", &trace]);
    let ended = shown["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "event" && o["body"]["event_type"] == "intent-failed")
        .expect("an intent-failed event")
        .clone();
    assert!(
        ended["body"]["message"]
            .as_str()
            .unwrap()
            .contains("changed my mind"),
        "{ended}"
    );
    verifies_complete(&net.requester, &trace);
    // Nothing left to cancel.
    let again = pvl(&net.requester, &["intent", "cancel", &trace]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("runs no intent"), "{err}");
}
