//! Context admission between real `pvl` processes and a rogue peer: every object sent directly
//! out of context is refused with its reason in the acknowledgement, stored nowhere, counted
//! by reason in `GET /v1/status`, and the round the forgeries target completes and its trace
//! verifies `--complete`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::rogue::{Rogue, of_kind, refusal};
use common::{Net, network, pvl, pvl_json, pvl_ok, verifies_complete, wait_until};
use pvl_net::Ack;
use pvl_protocol::{Keypair, Kind, ObjectId, PublicKey, SignedObject};
use serde_json::Value;

fn public_key(dir: &Path) -> PublicKey {
    pvl_json(dir, &["id"])["public_key"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The objects `dir` stores in `trace` (none when it has no such trace).
fn objects(dir: &Path, trace: &str) -> Vec<Value> {
    let out = pvl(dir, &["trace", "show", trace, "--json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    shown["objects"].as_array().cloned().unwrap_or_default()
}

/// The ids of the objects `dir` stores in `trace`.
fn stored(dir: &Path, trace: &str) -> Vec<String> {
    objects(dir, trace)
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_stored_nowhere(net: &Net, trace: &str, forged: &[&SignedObject]) {
    for node in &net.nodes {
        let ids = stored(&node.dir, trace);
        for object in forged {
            assert!(
                !ids.contains(&object.id().to_string()),
                "{} {} was stored by {}",
                object.kind(),
                object.id().short(),
                node.dir.display()
            );
        }
    }
}

fn assert_refused(ack: &Ack, code: &str) {
    let reason = refusal(ack);
    println!("refused: {reason}");
    assert!(
        reason.starts_with(&format!("{code}: ")),
        "expected `{code}: ...`, got `{reason}`"
    );
}

fn refusals(dir: &Path) -> Value {
    pvl_json(dir, &["status"])["engine"]["refusals"].clone()
}

fn publish_in_background(dir: &Path, args: &[&str]) -> std::thread::JoinHandle<Value> {
    let dir = dir.to_owned();
    let mut all: Vec<String> = ["intent", "publish", "--wait"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    std::thread::spawn(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        pvl_json(&dir, &args)
    })
}

#[test]
fn out_of_context_objects_are_refused_with_their_reason_and_the_round_completes() {
    // The provider sleeps 2.5 s on the task: the rogue strikes while it is live.
    let net = network(&[("sleep:10:2500", "")]);
    let requester = public_key(&net.requester);
    let provider_dir = net.nodes[1].dir.clone();
    let provider = public_key(&provider_dir);
    let mut rogue = Rogue::join(&net.requester);

    // Before any round: an intent sent directly to a node that does not serve its
    // capability, an offer for an intent that does not exist.
    let (ack, direct_intent) = rogue.intent_directly(&requester);
    assert_refused(&ack, "not-bidding");
    let (ack, unknown) = rogue.offer_for_unknown_intent(&requester);
    assert_refused(&ack, "unknown-intent");
    // Sent again, it is refused again (not acknowledged as a duplicate).
    assert_refused(&rogue.send(&requester, unknown.clone()), "unknown-intent");

    let publisher = publish_in_background(
        &net.requester,
        &[
            "--capability",
            "sleep",
            "--input",
            "2500",
            // Every offer of the window wanted: the intent is gossiped to every provider
            // (not sent to a few directly), so the rogue sees it.
            "--min-offers",
            "0",
            "--window",
            "1s",
        ],
    );
    let intent = rogue.wait_for("the intent", |o| {
        o.kind() == Kind::Intent && o.signer() == requester
    });
    let trace = intent.trace_id().to_string();
    let task_start = || {
        objects(&provider_dir, &trace)
            .into_iter()
            .find(|o| o["kind"] == "task_start")
    };
    wait_until("the award to reach the provider", || task_start().is_some());
    let task: ObjectId = task_start().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // While the task is live: done and receipt from someone other than the awarded provider,
    // an award to the provider for an offer it never made, and an offer.
    let (ack, done) = rogue.task_done_for(&intent, task);
    assert_refused(&ack, "not-the-awarded-provider");
    let (ack, receipt) = rogue.receipt_for(&intent, task);
    assert_refused(&ack, "not-the-awarded-provider");
    let (ack, award) = rogue.award_for_offer_never_made(&intent, &provider);
    assert_refused(&ack, "not-your-offer");
    // An offer once the window has closed (the task is awarded): it can change nothing.
    let (ack, offer_while_live) = rogue.offer_for(&intent);
    assert_refused(&ack, "intent-closed");

    // The round completes with the honest provider, and its trace verifies `--complete`.
    let outcome = publisher.join().unwrap();
    assert_eq!(outcome["status"], "completed", "{outcome}");
    assert_eq!(outcome["provider"], provider.to_string());
    assert_eq!(outcome["trace_id"], trace.as_str());
    verifies_complete(&net.requester, &trace);

    // After the end: an offer for the closed intent, a report for the finished task.
    let (ack, late_offer) = rogue.offer_for(&intent);
    assert_refused(&ack, "intent-closed");
    let (ack, late_done) = rogue.task_done_for(&intent, task);
    assert_refused(&ack, "task-not-live");
    verifies_complete(&net.requester, &trace);

    // Stored nowhere: not in the round's trace, not as traces of their own.
    assert_stored_nowhere(
        &net,
        &trace,
        &[
            &done,
            &receipt,
            &award,
            &offer_while_live,
            &late_offer,
            &late_done,
        ],
    );
    for forged in [&unknown, &direct_intent] {
        for node in &net.nodes {
            assert!(stored(&node.dir, &forged.trace_id().to_string()).is_empty());
        }
    }

    // Counted by reason.
    let counted = refusals(&net.requester);
    for (code, at_least) in [
        ("not-bidding", 1),
        // The second send of the same offer was refused by the network layer's memory of
        // refusals, without asking the engine again.
        ("unknown-intent", 1),
        ("not-the-awarded-provider", 2),
        ("intent-closed", 2),
        ("task-not-live", 1),
    ] {
        assert!(
            counted[code].as_u64().unwrap() >= at_least,
            "{code}: {counted}"
        );
    }
    assert_eq!(refusals(&provider_dir)["not-your-offer"], 1);
    let shown = pvl_ok(&net.requester, &["status"]);
    println!("{shown}");
    assert!(shown.contains("not-the-awarded-provider 2"), "{shown}");
}

#[test]
fn a_vote_from_a_non_member_and_a_stranger_proposal_are_refused_and_the_ballot_completes() {
    // A provider and a committee member; the rogue is the committee's second member, so the
    // ballot stays open until it votes.
    let net = network(&[("sha256:10:300", ""), ("", "")]);
    let requester = public_key(&net.requester);
    let voter_dir = net.nodes[2].dir.clone();
    let voter = public_key(&voter_dir);
    let mut rogue = Rogue::join(&net.requester);
    let committee = format!("{voter},{}", rogue.key.public());
    let publisher = publish_in_background(
        &net.requester,
        &[
            "--capability",
            "sha256",
            "--input",
            "hello",
            // Gossiped to every provider (see above), so the rogue sees the intent.
            "--min-offers",
            "0",
            "--window",
            "1s",
            "--committee",
            &committee,
            "--threshold",
            "2",
        ],
    );
    let intent = rogue.wait_for("the intent", |o| {
        o.kind() == Kind::Intent && o.signer() == requester
    });
    let trace = intent.trace_id().to_string();
    let proposal = rogue.wait_for("the proposal", of_kind(Kind::Proposal));

    // A vote signed by someone outside the committee.
    let outsider = Keypair::generate().unwrap();
    let (ack, outsider_vote) = rogue.vote_as(&outsider, &proposal, true);
    assert_refused(&ack, "not-a-ballot-member");
    // A proposal to the voter whose committee does not name it.
    let (ack, stranger_proposal) = rogue.proposal_without(&intent, &voter);
    assert_refused(&ack, "not-in-committee");

    // The rogue's own (member) vote is admitted and the ballot decides.
    let (ack, _) = rogue.vote_as(&rogue.key, &proposal, true);
    assert_eq!(ack, Ack::Accepted);
    let outcome = publisher.join().unwrap();
    assert_eq!(outcome["status"], "completed", "{outcome}");
    verifies_complete(&net.requester, &trace);

    // After the end, even a member's vote finds no open ballot.
    let (ack, late_vote) = rogue.vote_as(&rogue.key, &proposal, false);
    assert_refused(&ack, "no-open-ballot");
    verifies_complete(&net.requester, &trace);

    assert_stored_nowhere(
        &net,
        &trace,
        &[&outsider_vote, &stranger_proposal, &late_vote],
    );
    assert_eq!(refusals(&net.requester)["not-a-ballot-member"], 1);
    assert_eq!(refusals(&net.requester)["no-open-ballot"], 1);
    assert_eq!(refusals(&voter_dir)["not-in-committee"], 1);
}
