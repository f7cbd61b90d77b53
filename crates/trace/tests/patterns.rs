#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Analysis of traces shaped the way pvl-patterns records them (testkit `*_run` builders):
//! pattern, status, per-part timings, stage order, consensus rounds, adaptive choice.

use pvl_protocol::fixtures::{T0, committee};
use pvl_protocol::{Body, Kind, PatternHint, SignedObject};
use pvl_trace::testkit::{self, provider_key};
use pvl_trace::{
    PartKind, Pattern, RoundOutcome, TraceStatus, TraceStore, analyse, export::to_dot,
    export::to_mermaid,
};

fn part<'a>(a: &'a pvl_trace::Analysis, label: &str) -> &'a pvl_trace::PartTiming {
    a.parts
        .iter()
        .find(|p| p.label == label)
        .unwrap_or_else(|| panic!("no part {label} in {:?}", a.parts))
}

#[test]
fn workflow_stages_have_timings_and_dependency_order() {
    let objects = testkit::workflow_run().unwrap();
    let a = analyse(&objects);
    assert_eq!(a.pattern, Pattern::Workflow);
    assert_eq!(a.status, TraceStatus::Done);
    assert!(a.failure.is_none());
    assert_eq!(a.capability.as_deref(), Some("workflow:pack"));
    // Order of the DAG, not of the labels (alphabetical would be archive, encode, zip).
    assert_eq!(a.stages_in_order, vec!["zip", "encode", "archive"]);
    let labels: Vec<&str> = a.parts.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, vec!["zip", "encode", "archive"]);
    for (label, capability, took) in [
        ("zip", "gzip", 1_000),
        ("encode", "base64", 2_000),
        ("archive", "tar", 500),
    ] {
        let p = part(&a, label);
        assert_eq!(p.kind, PartKind::Stage);
        assert_eq!(p.capability.as_deref(), Some(capability));
        assert_eq!(p.duration_ms, Some(took), "{label}");
        assert_eq!(p.waited_ms, Some(110), "{label}: sub-intent to award");
        // Sub-intent at +0, execution from +150 to +150+took.
        assert_eq!(p.elapsed_ms, Some(150 + took), "{label}");
        assert_eq!((p.awards, p.ok), (1, Some(true)), "{label}");
        assert!(p.intent.is_some() && p.task.is_some());
    }
    assert!(part(&a, "zip").depends_on.is_empty());
    assert_eq!(part(&a, "encode").depends_on, vec!["zip"]);
    assert_eq!(part(&a, "archive").depends_on, vec!["zip", "encode"]);
    // The stages run one after the other: each opens after the previous one's receipt.
    let zip = part(&a, "zip");
    let encode = part(&a, "encode");
    assert!(encode.opened_at_ms.unwrap() > zip.finished_at_ms.unwrap());
    // The bottleneck is the longest stage on the critical path, named by its label.
    let b = a.bottleneck.as_ref().unwrap();
    assert_eq!((b.label.as_str(), b.duration_ms()), ("encode", Some(2_000)));
    assert!(a.parts.iter().all(|p| p.on_critical_path));
    // The critical path crosses every stage and names them.
    let parts_on_path: Vec<&str> = a
        .critical_path
        .steps
        .iter()
        .filter_map(|s| s.part.as_deref())
        .collect();
    for label in ["zip", "encode", "archive"] {
        assert!(
            parts_on_path.contains(&label),
            "{label} not on {parts_on_path:?}"
        );
    }
    assert_eq!(
        a.critical_path.steps.last().map(|s| s.label.as_str()),
        Some("workflow-done")
    );
    // Serialised as the node serves it.
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["pattern"], "workflow");
    assert_eq!(json["stages_in_order"][2], "archive");
    assert_eq!(json["parts"][1]["kind"], "stage");
    assert_eq!(json["parts"][1]["duration_ms"], 2_000);
    assert_eq!(json["parts"][1]["waited_ms"], 110);
    assert!(json["chosen_by_adaptive"].is_null());
}

#[test]
fn parallel_with_a_reawarded_shard_is_done() {
    let objects = testkit::parallel_run().unwrap();
    let a = analyse(&objects);
    assert_eq!(a.pattern, Pattern::Parallel);
    assert_eq!(a.status, TraceStatus::Done, "{:?}", a.failure);
    // 4 shards + 1 re-award + reducer.
    assert_eq!(a.tasks.len(), 6);
    assert_eq!(a.tasks.iter().filter(|t| t.ok == Some(false)).count(), 1);
    let labels: Vec<&str> = a.parts.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        vec!["shard-0", "shard-1", "shard-2", "shard-3", "reduce"]
    );
    for i in [0u8, 1, 3] {
        let p = part(&a, &format!("shard-{i}"));
        assert_eq!(p.kind, PartKind::Shard);
        assert_eq!((p.awards, p.ok), (1, Some(true)));
        assert_eq!(p.provider, Some(provider_key(i).public()));
        assert_eq!(p.duration_ms, Some(400 + u64::from(i) * 100));
        assert_eq!(p.waited_ms, Some(110));
    }
    let s2 = part(&a, "shard-2");
    assert_eq!((s2.awards, s2.ok), (2, Some(true)));
    assert!(s2.failure.is_none());
    // The last award went to the next offer's provider; its timing is that attempt's.
    assert_eq!(s2.provider, Some(provider_key(3).public()));
    assert_eq!(s2.duration_ms, Some(600));
    // First award at T0+115 for a sub-intent at T0+5; the whole shard took until the end
    // of the second attempt.
    assert_eq!(s2.waited_ms, Some(110));
    assert_eq!(s2.awarded_at_ms, Some(T0 + 115));
    assert_eq!(s2.elapsed_ms, Some(s2.finished_at_ms.unwrap() - (T0 + 5)));
    assert!(s2.elapsed_ms.unwrap() > s2.duration_ms.unwrap() + s2.waited_ms.unwrap());
    let reduce = part(&a, "reduce");
    assert_eq!(reduce.kind, PartKind::Reduce);
    assert_eq!(reduce.capability.as_deref(), Some("merge"));
    assert_eq!(reduce.depends_on.len(), 4);
    assert!(a.stages_in_order.is_empty());
    // The re-awarded shard is the slowest path: it is the bottleneck among the shards.
    let b = a.bottleneck.as_ref().unwrap();
    assert!(b.on_critical_path);
    assert!(
        a.critical_path
            .steps
            .iter()
            .any(|s| s.part.as_deref() == Some("shard-2"))
    );
}

#[test]
fn without_the_reaward_the_failed_shard_would_fail_the_trace() {
    // The same run cut right after shard-2's failed report (before `reassigned`): the part
    // has failed for now and nothing ended the run, but the run has recorded its own
    // events, so it stays Awarded until `parallel-failed`/`parallel-done`.
    let objects = testkit::parallel_run().unwrap();
    let cut = objects
        .iter()
        .position(|o| matches!(o.body(), Body::Event(e) if e.event_type == "reassigned"))
        .unwrap();
    let a = analyse(&objects[..cut]);
    assert_eq!(a.status, TraceStatus::Awarded);
    assert_eq!(part(&a, "shard-2").ok, Some(false));
    // With `reassigned` the part is running again.
    let a = analyse(&objects[..=cut]);
    assert_eq!(part(&a, "shard-2").ok, None);
    assert_eq!(a.status, TraceStatus::Awarded);
}

#[test]
fn reawarded_contract_net_is_done_not_failed() {
    let a = analyse(&testkit::reassigned_run().unwrap());
    assert_eq!(a.pattern, Pattern::ContractNet);
    assert_eq!(a.status, TraceStatus::Done);
    assert_eq!(a.parts.len(), 1);
    let p = &a.parts[0];
    assert_eq!(
        (p.label.as_str(), p.kind, p.awards),
        ("main", PartKind::Task, 2)
    );
    assert_eq!(p.ok, Some(true));
    assert_eq!(p.provider, Some(provider_key(1).public()));
    assert_eq!(a.tasks_per_agent.iter().map(|t| t.failed).sum::<usize>(), 1);
}

#[test]
fn consensus_rounds_time_out_then_approve() {
    let objects = testkit::consensus_run().unwrap();
    let a = analyse(&objects);
    assert_eq!(a.pattern, Pattern::Consensus);
    assert_eq!(a.status, TraceStatus::Done);
    assert_eq!(a.rounds.len(), 2);
    let members = committee();
    let r1 = &a.rounds[0];
    assert_eq!((r1.round, r1.outcome), (1, RoundOutcome::TimedOut));
    assert_eq!((r1.members, r1.threshold), (3, 2));
    assert_eq!(r1.opened_at_ms, T0 + 200);
    assert_eq!(r1.decided_at_ms, Some(T0 + 1_200));
    assert_eq!(r1.latency_ms, Some(1_000));
    assert_eq!(r1.votes.len(), 3);
    assert_eq!(r1.equivocators, vec![members[2].public()]);
    assert!(r1.certificate.is_none());
    assert!(r1.action.starts_with("award capability=sha256 provider="));
    let r2 = &a.rounds[1];
    assert_eq!((r2.round, r2.outcome), (2, RoundOutcome::Approved));
    assert_eq!(r2.latency_ms, Some(100));
    assert!(r2.certificate.is_some());
    assert!(r2.equivocators.is_empty());
    let votes: Vec<(bool, u64)> = r2.votes.iter().map(|v| (v.approve, v.at_ms)).collect();
    assert_eq!(
        votes,
        vec![(true, T0 + 1_250), (true, T0 + 1_300), (false, T0 + 1_310)]
    );
    assert_eq!(r2.votes[0].member, members[0].public());
    assert_eq!(r2.subject, r1.subject);
    // The award waited for the committee: the coordination overhead shows in the part.
    let main = part(&a, "main");
    assert_eq!(main.waited_ms, Some(1_301));
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["rounds"][0]["outcome"], "timed-out");
    assert_eq!(json["rounds"][1]["outcome"], "approved");
    assert_eq!(json["rounds"][1]["votes"][0]["approve"], true);
}

#[test]
fn consensus_rounds_are_read_from_an_embedded_certificate_too() {
    // A provider's trace may hold the award (with its certificate) but not the votes.
    let objects: Vec<SignedObject> = testkit::consensus_run()
        .unwrap()
        .into_iter()
        .filter(|o| !matches!(o.kind(), Kind::Proposal | Kind::Vote | Kind::QuorumCert))
        .collect();
    let a = analyse(&objects);
    assert_eq!(a.pattern, Pattern::Consensus);
    let approved: Vec<_> = a
        .rounds
        .iter()
        .filter(|r| r.outcome == RoundOutcome::Approved)
        .collect();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].votes.len(), 2);
}

#[test]
fn adaptive_choice_is_reported() {
    let a = analyse(&testkit::adaptive_run().unwrap());
    assert_eq!(a.hint, Some(PatternHint::Adaptive));
    let c = a.chosen_by_adaptive.as_ref().unwrap();
    assert_eq!(c.pattern, PatternHint::Auction);
    assert_eq!(c.reasons, vec!["3 providers compete", "weights given"]);
    assert_eq!(c.avoid, vec![provider_key(5).public()]);
    assert_eq!(c.at_ms, T0 + 1);
    // The choice is the explicit objective that tells an auction from a contract-net.
    assert_eq!(a.pattern, Pattern::Auction);
    assert_eq!(a.status, TraceStatus::Done);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["chosen_by_adaptive"]["pattern"], "auction");
    assert_eq!(json["chosen_by_adaptive"]["reasons"][1], "weights given");
}

#[test]
fn restarted_requester_fails_the_trace() {
    let a = analyse(&testkit::restarted(false).unwrap());
    assert_eq!(a.pattern, Pattern::ContractNet);
    assert_eq!(a.status, TraceStatus::Failed);
    let f = a.failure.as_ref().unwrap();
    assert_eq!(f.reason, "requester-restarted");
    assert_eq!(f.event_type, Some(pvl_protocol::EventType::IntentFailed));
    assert_eq!(a.parts[0].ok, Some(false));

    let a = analyse(&testkit::restarted(true).unwrap());
    assert_eq!(a.pattern, Pattern::Workflow);
    assert_eq!(a.status, TraceStatus::Failed);
    assert_eq!(a.failure.as_ref().unwrap().reason, "requester-restarted");
    assert_eq!(part(&a, "zip").ok, Some(true));
    // The stage in flight never ended: no outcome of its own.
    assert_eq!(part(&a, "encode").ok, None);
    assert_eq!(a.stages_in_order, vec!["zip", "encode"]);
}

#[test]
fn unfinished_runs_are_open_or_awarded() {
    let objects = testkit::workflow_run().unwrap();
    // Root and first sub-intent only.
    assert_eq!(analyse(&objects[..2]).status, TraceStatus::Open);
    let first_award = objects
        .iter()
        .position(|o| o.kind() == Kind::TaskStart)
        .unwrap();
    let a = analyse(&objects[..=first_award]);
    assert_eq!(
        (a.pattern, a.status),
        (Pattern::Workflow, TraceStatus::Awarded)
    );
    // Everything but workflow-done: all stages done, the run not ended yet.
    let a = analyse(&objects[..objects.len() - 1]);
    assert_eq!(a.status, TraceStatus::Awarded);
    assert!(a.parts.iter().all(|p| p.ok == Some(true)));
}

#[test]
fn summaries_carry_status_parts_and_failure_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let runs = [
        testkit::parallel_run().unwrap(),
        testkit::restarted(true).unwrap(),
        testkit::adaptive_run().unwrap(),
    ];
    for r in &runs {
        store.insert_batch(r).unwrap();
    }
    let s = store.trace_summary(&runs[0][0].id()).unwrap();
    assert_eq!((s.status, s.parts, s.tasks), (TraceStatus::Done, 5, 6));
    let s = store.trace_summary(&runs[1][0].id()).unwrap();
    assert_eq!(s.status, TraceStatus::Failed);
    assert_eq!(s.failure_reason.as_deref(), Some("requester-restarted"));
    let s = store.trace_summary(&runs[2][0].id()).unwrap();
    assert_eq!(s.chosen_by_adaptive, Some(PatternHint::Auction));
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["chosen_by_adaptive"], "auction");
    assert!(json["failure_reason"].is_null());
    // The store's analysis is the pure one.
    assert_eq!(store.analyse(&runs[0][0].id()).unwrap(), analyse(&runs[0]));
}

#[test]
fn analysis_ignores_object_order() {
    for objects in [
        testkit::workflow_run().unwrap(),
        testkit::parallel_run().unwrap(),
        testkit::consensus_run().unwrap(),
    ] {
        let mut reversed = objects.clone();
        reversed.reverse();
        assert_eq!(analyse(&reversed), analyse(&objects));
    }
}

#[test]
fn dot_and_mermaid_cluster_stages_shards_and_consensus() {
    let dot = to_dot(&testkit::workflow_run().unwrap());
    for stage in ["zip", "encode", "archive"] {
        assert!(
            dot.contains(&format!("subgraph \"cluster_{stage}\"")),
            "{dot}"
        );
        assert!(dot.contains(&format!("label=\"{stage}\";")));
    }
    assert!(!dot.contains("cluster_consensus"));
    // A workflow with a single stage started so far is still drawn by stage.
    let objects = testkit::workflow_run().unwrap();
    let first_award = objects
        .iter()
        .position(|o| o.kind() == Kind::TaskStart)
        .unwrap();
    let dot = to_dot(&objects[..=first_award]);
    assert_eq!(dot.matches("subgraph \"cluster_").count(), 1);
    assert!(dot.contains("subgraph \"cluster_zip\""));
    // A contract-net (one part) is not clustered.
    assert!(!to_dot(&testkit::reassigned_run().unwrap()).contains("subgraph"));
    let objects = testkit::parallel_run().unwrap();
    let dot = to_dot(&objects);
    assert_eq!(dot.matches("subgraph \"cluster_").count(), 5);
    // The root intent and parallel-done stay outside every cluster.
    let root_line = format!("  \"{}\" [label=", objects[0].id());
    assert!(dot.lines().any(|l| l.starts_with(&root_line)));
    let dot = to_dot(&testkit::consensus_run().unwrap());
    assert!(dot.contains("subgraph \"cluster_consensus\""));
    let m = to_mermaid(&testkit::parallel_run().unwrap());
    assert_eq!(m.matches("subgraph ").count(), 5);
    assert_eq!(m.matches("\n  end\n").count(), 5);
}
