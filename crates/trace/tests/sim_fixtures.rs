//! Analysis of traces the patterns really wrote: the bundles in `tests/fixtures/` are produced
//! by pvl-patterns' simulator (`crates/patterns/tests/trace_fixtures.rs`; pvl-trace does not
//! depend on pvl-patterns). Each must verify offline, use only the typed vocabulary, and be
//! read back as the pattern and ending that produced it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use pvl_protocol::{Body, EventType};
use pvl_trace::export::verify_bundle;
use pvl_trace::{Analysis, Pattern, TraceStatus, analyse};

fn load(name: &str) -> (Vec<pvl_protocol::SignedObject>, Analysis) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.bundle"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bundle = verify_bundle(&bytes).unwrap();
    assert!(bundle.is_ok(), "{name}: {:?}", bundle.report);
    for o in &bundle.objects {
        if let Body::Event(e) = o.body() {
            assert!(e.kind().is_known(), "{name}: unknown type {}", e.event_type);
            assert!(
                e.unknown_attrs().is_empty(),
                "{name}: {:?}",
                e.unknown_attrs()
            );
            assert!(
                e.missing_attrs().is_empty(),
                "{name}: {:?}",
                e.missing_attrs()
            );
        }
    }
    let analysis = analyse(&bundle.objects);
    (bundle.objects, analysis)
}

fn types(objects: &[pvl_protocol::SignedObject]) -> Vec<EventType> {
    objects
        .iter()
        .filter_map(|o| match o.body() {
            Body::Event(e) => Some(e.kind()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_plain_contract_net_is_done() {
    let (objects, a) = load("contract-net-done");
    assert_eq!(a.pattern, Pattern::ContractNet);
    assert_eq!(a.status, TraceStatus::Done);
    assert_eq!(a.tasks.len(), 1);
    assert!(a.tasks[0].countersigned);
    assert!(types(&objects).contains(&EventType::Selection));
}

#[test]
fn a_reassigned_contract_net_is_done_by_its_second_award() {
    let (objects, a) = load("contract-net-reassigned");
    assert_eq!(a.status, TraceStatus::Done, "{:?}", a.failure);
    assert_eq!(a.tasks.len(), 2);
    assert_eq!(a.tasks[0].ok, Some(false));
    assert_eq!(a.tasks[1].ok, Some(true));
    assert!(types(&objects).contains(&EventType::Reassigned));
}

#[test]
fn a_run_without_offers_fails_with_its_reason() {
    let (objects, a) = load("contract-net-no-offers");
    assert_eq!(a.status, TraceStatus::Failed);
    let failure = a.failure.unwrap();
    assert_eq!(failure.event_type, Some(EventType::IntentFailed));
    assert_eq!(failure.reason, "no-offers");
    assert!(types(&objects).contains(&EventType::IntentFailed));
}

#[test]
fn a_workflow_reads_back_as_its_stages() {
    let (objects, a) = load("workflow-two-stages");
    assert_eq!(a.pattern, Pattern::Workflow);
    assert_eq!(a.status, TraceStatus::Done, "{:?}", a.failure);
    assert_eq!(a.stages_in_order, vec!["fetch", "hash"]);
    let t = types(&objects);
    for expected in [
        EventType::StageStarted,
        EventType::StageDone,
        EventType::WorkflowDone,
    ] {
        assert!(t.contains(&expected), "{expected}");
    }
}

#[test]
fn a_parallel_run_reads_back_as_its_shards() {
    let (objects, a) = load("parallel-three-shards");
    assert_eq!(a.pattern, Pattern::Parallel);
    assert_eq!(a.status, TraceStatus::Done, "{:?}", a.failure);
    let labels: Vec<&str> = a.parts.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["shard-0", "shard-1", "shard-2"]);
    let t = types(&objects);
    assert!(t.contains(&EventType::ShardDone));
    assert!(t.contains(&EventType::ParallelDone));
}
