#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Analysis of hand-built traces of every pattern.

use pvl_protocol::{Kind, PatternHint};
use pvl_trace::{Pattern, TraceStatus, TraceStore, analyse, testkit};

#[test]
fn contract_net_is_detected() {
    let objects = testkit::contract_net().unwrap();
    let a = analyse(&objects);
    assert_eq!(a.pattern, Pattern::ContractNet);
    assert_eq!(a.hint, Some(PatternHint::ContractNet));
    assert_eq!(a.status, TraceStatus::Done);
    assert_eq!(a.tasks.len(), 1);
    let task = &a.tasks[0];
    assert_eq!(task.label, "main");
    assert_eq!(task.duration_ms(), Some(1_000));
    assert_eq!(task.on_time(), Some(true));
    assert!(task.countersigned);
    assert!(task.on_critical_path);
    assert_eq!(a.bottleneck.as_ref().unwrap().task, task.task);
    // Offers at T0+100 and T0+120 answer the intent at T0.
    let lat: Vec<u64> = a.offer_latencies.iter().map(|l| l.latency_ms).collect();
    assert_eq!(lat, vec![100, 120]);
    assert_eq!(a.tasks_per_agent.len(), 1);
    assert_eq!(a.tasks_per_agent[0].succeeded, 1);
    // Critical path: intent -> winning offer -> award -> progress -> done -> receipt.
    let kinds: Vec<Kind> = a.critical_path.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::Intent,
            Kind::Offer,
            Kind::TaskStart,
            Kind::TaskProgress,
            Kind::TaskDone,
            Kind::Receipt
        ]
    );
    assert_eq!(a.critical_path.total_ms, 1_605);
    let sum: u64 = a
        .critical_path
        .steps
        .iter()
        .map(|s| s.since_previous_ms)
        .sum();
    assert_eq!(sum, a.critical_path.total_ms);
}

#[test]
fn auction_is_detected() {
    let a = analyse(&testkit::auction().unwrap());
    assert_eq!(a.pattern, Pattern::Auction);
    assert_eq!(a.offer_latencies.len(), 3);
    assert_eq!(a.status, TraceStatus::Done);
    // The award waited for the scored selection event.
    assert!(a.critical_path.steps.iter().any(|s| s.kind == Kind::Event));
}

#[test]
fn workflow_is_detected_with_its_bottleneck_stage() {
    let a = analyse(&testkit::workflow().unwrap());
    assert_eq!(a.pattern, Pattern::Workflow);
    assert_eq!(a.tasks.len(), 2);
    let labels: Vec<&str> = a.tasks.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels, vec!["stage:resize", "stage:compress"]);
    assert_eq!(a.tasks[0].capability.as_deref(), Some("resize"));
    assert!(a.tasks.iter().all(|t| t.on_critical_path));
    let b = a.bottleneck.unwrap();
    assert_eq!(
        (b.label.as_str(), b.duration_ms()),
        ("stage:compress", Some(3_000))
    );
    assert_eq!(a.tasks_per_agent.len(), 2);
    assert_eq!(a.status, TraceStatus::Done);
}

#[test]
fn parallel_is_detected_with_tasks_per_agent() {
    let a = analyse(&testkit::parallel(4).unwrap());
    assert_eq!(a.pattern, Pattern::Parallel);
    assert_eq!(a.tasks.len(), 4);
    assert_eq!(a.tasks_per_agent.len(), 4);
    assert!(
        a.tasks_per_agent
            .iter()
            .all(|t| t.awarded == 1 && t.succeeded == 1)
    );
    // The slowest shard (shard-3, 1250 ms) ends last and is the bottleneck on the path.
    let b = a.bottleneck.unwrap();
    assert_eq!(b.label, "shard-3");
    assert!(b.on_critical_path);
    assert_eq!(a.tasks.iter().filter(|t| t.on_critical_path).count(), 1);
}

#[test]
fn consensus_is_detected() {
    let objects = testkit::consensus().unwrap();
    let a = analyse(&objects);
    assert_eq!(a.pattern, Pattern::Consensus);
    assert_eq!(a.hint, Some(PatternHint::Consensus));
    assert_eq!(a.status, TraceStatus::Done);
    assert_eq!(a.tasks.len(), 1);
    assert_eq!(a.offer_latencies.len(), 2);
    // The award waited for the quorum certificate.
    assert!(
        a.critical_path
            .steps
            .iter()
            .any(|s| s.kind == Kind::QuorumCert)
    );
}

#[test]
fn failed_and_open_traces() {
    let a = analyse(&testkit::failed().unwrap());
    assert_eq!(a.status, TraceStatus::Failed);
    assert_eq!(a.tasks[0].failure.as_deref(), Some("out of memory"));
    assert_eq!(a.tasks_per_agent[0].failed, 1);
    let objects = testkit::contract_net().unwrap();
    let a = analyse(&objects[..1]);
    assert_eq!((a.pattern, a.status), (Pattern::Unknown, TraceStatus::Open));
    assert!(a.bottleneck.is_none());
    let a = analyse(&objects[..3]);
    assert_eq!(
        (a.pattern, a.status),
        (Pattern::ContractNet, TraceStatus::Open)
    );
    let empty = analyse(&[]);
    assert_eq!(empty.objects, 0);
}

#[test]
fn store_analysis_matches_pure_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    let objects = testkit::workflow().unwrap();
    store.insert_batch(&objects).unwrap();
    let a = store.analyse(&objects[0].id()).unwrap();
    assert_eq!(a, analyse(&objects));
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["pattern"], "workflow");
    assert_eq!(json["status"], "done");
}
