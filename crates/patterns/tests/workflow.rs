//! Federated workflows: parsing the workflow file, and whole runs through the simulation
//! (real providers, real signatures, a simulated clock and network).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{
    Coordination, FailureReason, OfferPolicy, Outcome, PartStatus, Provider, RequestSpec,
    WorkflowError, WorkflowRun, WorkflowSpec,
};
use pvl_protocol::{Body, Kind, Payload, PublicKey, SignedObject};

// ----- parsing -------------------------------------------------------------------------------

const DIGEST: &str = r#"name = "digest"
[[stage]]
name = "fetch"
capability = "echo"
inputs = ["input"]

[[stage]]
name = "hash"
capability = "sha256"
inputs = ["fetch"]
strategy = "weighted:cost=1,latency=1,reliability=1"
budget = 10
deadline_ms = 5000
min_reliability = 0.9
window_ms = 300
min_offers = 2
"#;

#[test]
fn a_workflow_file_parses_with_every_option() {
    let spec = WorkflowSpec::parse(DIGEST).unwrap();
    assert_eq!(spec.name, "digest");
    assert_eq!(spec.stages.len(), 2);
    let fetch = &spec.stages[0];
    assert_eq!(
        (fetch.name.as_str(), fetch.capability.as_str()),
        ("fetch", "echo")
    );
    assert_eq!(fetch.inputs, vec!["input"]);
    assert_eq!(fetch.line, 3);
    let hash = &spec.stages[1];
    assert_eq!(hash.inputs, vec!["fetch"]);
    assert_eq!(
        hash.strategy.unwrap().to_string(),
        "weighted:cost=1,latency=1,reliability=1"
    );
    assert_eq!(hash.budget, Some(10));
    assert_eq!(hash.deadline_ms, Some(5_000));
    assert_eq!(hash.min_reliability_bps, Some(9_000));
    assert_eq!(hash.window_ms, Some(300));
    assert_eq!(hash.min_offers, Some(2));
    assert_eq!(spec.final_stage(), Some(1));
}

#[test]
fn inputs_default_to_the_workflow_input() {
    let spec = WorkflowSpec::parse("[[stage]]\nname = \"a\"\ncapability = \"echo\"\n").unwrap();
    assert_eq!(spec.name, "workflow");
    assert_eq!(spec.stages[0].inputs, vec!["input"]);
}

fn parse_err(text: &str) -> WorkflowError {
    WorkflowSpec::parse(text).unwrap_err()
}

#[test]
fn a_cycle_is_refused_naming_its_stages_and_line() {
    let text = r#"[[stage]]
name = "a"
capability = "echo"
inputs = ["input"]
[[stage]]
name = "b"
capability = "echo"
inputs = ["a", "d"]
[[stage]]
name = "c"
capability = "echo"
inputs = ["b"]
[[stage]]
name = "d"
capability = "echo"
inputs = ["c"]
"#;
    let err = parse_err(text);
    let WorkflowError::Cycle { line, stages } = &err else {
        panic!("not a cycle error: {err}");
    };
    let mut sorted = stages.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["b", "c", "d"], "a is not in the cycle");
    // Each stage reads the previous one.
    for (i, s) in stages.iter().enumerate() {
        let prev = &stages[(i + stages.len() - 1) % stages.len()];
        let reads: &[&str] = match s.as_str() {
            "b" => &["a", "d"],
            "c" => &["b"],
            _ => &["c"],
        };
        assert!(reads.contains(&prev.as_str()), "{s} does not read {prev}");
    }
    assert_eq!(
        stages[0], "b",
        "the cycle starts at its first declared stage"
    );
    assert_eq!(*line, 6, "the line of `b`");
    let text = err.to_string();
    assert!(text.starts_with(&format!("line {line}:")), "{text}");
    assert!(text.contains("cycle") && text.contains("`c`"), "{text}");
}

#[test]
fn a_stage_reading_itself_is_a_cycle() {
    let err = parse_err("[[stage]]\nname = \"a\"\ncapability = \"echo\"\ninputs = [\"a\"]\n");
    let two = "[[stage]]\nname = \"a\"\ncapability = \"echo\"\ninputs = [\"b\"]\n[[stage]]\nname = \"b\"\ncapability = \"echo\"\ninputs = [\"a\"]\n";
    assert_eq!(
        parse_err(two).to_string(),
        "line 2: the stages `a` -> `b` -> `a` form a cycle"
    );
    assert!(
        matches!(&err, WorkflowError::Cycle { line: 2, stages } if stages == &["a"]),
        "{err}"
    );
}

#[test]
fn an_unknown_reference_names_the_line_of_the_reference() {
    let text = r#"[[stage]]
name = "a"
capability = "echo"

[[stage]]
name = "b"
capability = "echo"
inputs = [
  "a",
  "nope",
]
"#;
    let err = parse_err(text);
    assert_eq!(
        err,
        WorkflowError::UnknownInput {
            line: 10,
            stage: "b".into(),
            input: "nope".into()
        }
    );
    assert!(
        err.to_string()
            .starts_with("line 10: stage `b` reads `nope`")
    );
}

#[test]
fn a_missing_capability_names_the_stage_line() {
    let text = "name = \"w\"\n\n[[stage]]\nname = \"a\"\ncapability = \"echo\"\n[[stage]]\nname = \"b\"\ninputs = [\"a\"]\n";
    let err = parse_err(text);
    let WorkflowError::MissingCapability { line, stage } = &err else {
        panic!("{err}");
    };
    assert_eq!(stage, "b");
    assert!((6..=8).contains(line), "line {line}");
    assert_eq!(err.line(), Some(*line));
}

#[test]
fn duplicate_names_unknown_keys_and_empty_files_are_refused() {
    let dup = "[[stage]]\nname = \"a\"\ncapability = \"echo\"\n[[stage]]\nname = \"a\"\ncapability = \"x\"\n";
    assert_eq!(
        parse_err(dup),
        WorkflowError::DuplicateStage {
            line: 5,
            stage: "a".into(),
            first_line: 2
        }
    );
    let unknown = "[[stage]]\nname = \"a\"\ncapability = \"echo\"\nbudgett = 3\n";
    let err = parse_err(unknown);
    assert!(
        matches!(&err, WorkflowError::Syntax { line: 4, message } if message.contains("budgett")),
        "{err:?}"
    );
    assert_eq!(parse_err("name = \"w\"\n"), WorkflowError::NoStages);
    let bad_strategy = "[[stage]]\nname = \"a\"\ncapability = \"echo\"\nstrategy = \"cheapest\"\n";
    assert!(matches!(
        parse_err(bad_strategy),
        WorkflowError::Invalid { line: 4, .. }
    ));
    let syntax = "[[stage]]\nname = \"a\"\ncapability = echo\n";
    assert!(matches!(
        parse_err(syntax),
        WorkflowError::Syntax { line: 3, .. }
    ));
    let reserved = "[[stage]]\nname = \"input\"\ncapability = \"echo\"\n";
    assert!(matches!(
        parse_err(reserved),
        WorkflowError::Invalid { line: 2, .. }
    ));
}

// ----- runs ----------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the fake executors compute: the real result of each capability.
fn compute(capability: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    match capability {
        "echo" => Ok(input.to_vec()),
        "sha256" => Ok(hex(&pvl_protocol::sha256(input)).into_bytes()),
        "wordcount" => Ok(String::from_utf8_lossy(input)
            .split_whitespace()
            .count()
            .to_string()
            .into_bytes()),
        "upper" => Ok(input.to_ascii_uppercase()),
        other => Err(format!("cannot {other}")),
    }
}

/// Executors that compute the real result after `after_ms`, except `fail`ing providers.
fn executor(after_ms: u64, fail: Vec<PublicKey>) -> Executor {
    Box::new(move |who, _task, capability, input| ExecPlan::Finish {
        after_ms,
        result: if fail.contains(who) {
            Err("the disk is full".into())
        } else {
            compute(capability, input.inline().unwrap_or_default()).map(Payload::Inline)
        },
        progress: false,
    })
}

/// A provider with key `seed` serving `capabilities` at `price`.
fn provider(seed: u8, price: u64, capabilities: &[&str]) -> Provider {
    capabilities
        .iter()
        .fold(Provider::new(key(seed), 4), |p, c| {
            p.serve(*c, OfferPolicy::fixed(price, 500, 9_500))
        })
}

fn template() -> RequestSpec {
    let mut t = RequestSpec::new("unused", Payload::Inline(Vec::new()));
    t.offer_window_ms = 200;
    t.nonce = 99;
    t
}

fn run(spec: &str, input: &[u8], providers: Vec<Provider>, exec: Executor) -> Sim<WorkflowRun> {
    let spec = WorkflowSpec::parse(spec).unwrap();
    let run = WorkflowRun::new(key(1), spec, Payload::Inline(input.to_vec()))
        .unwrap()
        .with_template(template());
    let mut sim = Sim::new(run, key(1).public(), providers, 10, exec);
    sim.run(T0, T0 + 120_000);
    sim
}

/// Requester-signed events of `event_type`, with their position in the record.
fn events(sim: &Sim<WorkflowRun>, event_type: &str) -> Vec<(usize, SignedObject)> {
    sim.recorded
        .iter()
        .enumerate()
        .filter(|(_, o)| o.signer() == key(1).public())
        .filter(|(_, o)| matches!(o.body(), Body::Event(e) if e.event_type == event_type))
        .map(|(i, o)| (i, o.clone()))
        .collect()
}

fn attr_of(o: &SignedObject, k: &str) -> String {
    let Body::Event(e) = o.body() else {
        panic!("not an event")
    };
    attr(e, k).unwrap().to_string()
}

fn inline(p: &Option<Payload>) -> Vec<u8> {
    p.as_ref().unwrap().inline().unwrap().to_vec()
}

const PIPELINE: &str = r#"name = "digest"
[[stage]]
name = "fetch"
capability = "echo"
[[stage]]
name = "hash"
capability = "sha256"
inputs = ["fetch"]
[[stage]]
name = "count"
capability = "wordcount"
inputs = ["hash"]
"#;

#[test]
fn a_three_stage_pipeline_passes_each_output_on() {
    let providers = vec![
        provider(11, 5, &["echo"]),
        provider(12, 7, &["sha256"]),
        provider(13, 3, &["wordcount"]),
    ];
    let sim = run(
        PIPELINE,
        b"hello big world",
        providers,
        executor(300, vec![]),
    );
    let outcome = sim.outcome().expect("the workflow finished").clone();
    let Outcome::Completed(done) = outcome else {
        panic!("{outcome:?}\n{:?}", sim.errors)
    };
    let parts = &done.parts;
    assert_eq!(parts.len(), 3);
    let sha = hex(&pvl_protocol::sha256(b"hello big world"));
    assert_eq!(inline(&parts[0].output), b"hello big world");
    assert_eq!(inline(&parts[1].output), sha.as_bytes());
    assert_eq!(inline(&parts[2].output), b"1");
    assert_eq!(inline(&done.output), b"1", "the final stage's output");
    assert_eq!(done.cost, 5 + 7 + 3);
    assert_eq!(done.provider, key(13).public());
    let providers: Vec<PublicKey> = parts.iter().map(|p| p.provider.unwrap()).collect();
    assert_eq!(
        providers,
        vec![key(11).public(), key(12).public(), key(13).public()]
    );
    for p in parts {
        assert_eq!(p.status, PartStatus::Done);
        let receipt = p.receipt.as_ref().expect("every stage has a receipt");
        assert!(receipt.is_countersigned());
        assert!(p.started_ms.unwrap() <= p.finished_ms.unwrap());
    }
    // Stages ran one after the other.
    assert!(parts[0].finished_ms.unwrap() <= parts[1].started_ms.unwrap());
    assert!(parts[1].finished_ms.unwrap() <= parts[2].started_ms.unwrap());

    // One trace; the root intent is recorded but never published, the stage intents are
    // children of the root and of the upstream stage's receipt.
    let trace = sim.requester().trace().unwrap();
    assert!(sim.recorded.iter().all(|o| o.trace_id() == trace));
    let mut seen = std::collections::HashSet::new();
    let intents: Vec<&SignedObject> = sim
        .recorded
        .iter()
        .filter(|o| o.kind() == Kind::Intent && o.signer() == key(1).public())
        .filter(|o| seen.insert(o.id()))
        .collect();
    let root = sim.requester().root().unwrap();
    assert!(root.is_root());
    let Body::Intent(root_body) = root.body() else {
        unreachable!()
    };
    assert_eq!(root_body.capability, "workflow:digest");
    assert_eq!(root_body.pattern, pvl_protocol::PatternHint::Workflow);
    assert_eq!(intents.len(), 4);
    for intent in intents.iter().filter(|i| !i.is_root()) {
        assert!(intent.parents().contains(&root.id()));
        let Body::Intent(b) = intent.body() else {
            unreachable!()
        };
        let upstream = match b.capability.as_str() {
            "echo" => None,
            "sha256" => Some(&parts[0]),
            _ => Some(&parts[1]),
        };
        if let Some(up) = upstream {
            assert!(
                intent
                    .parents()
                    .contains(&up.receipt.as_ref().unwrap().id()),
                "the stage intent points at its upstream receipt"
            );
        }
    }
    // Events: started and done per stage, then workflow-done.
    assert_eq!(events(&sim, "stage-started").len(), 3);
    let done_events = events(&sim, "stage-done");
    assert_eq!(done_events.len(), 3);
    assert_eq!(attr_of(&done_events[1].1, "stage"), "hash");
    assert_eq!(attr_of(&done_events[1].1, "capability"), "sha256");
    assert_eq!(
        attr_of(&done_events[1].1, "provider"),
        key(12).public().to_string()
    );
    let wf = events(&sim, "workflow-done");
    assert_eq!(wf.len(), 1);
    assert!(wf[0].0 > done_events[2].0);
    assert_decodes(&sim.recorded);
    assert!(sim.requester().is_finished());
}

const DIAMOND: &str = r#"
[[stage]]
name = "a"
capability = "echo"
[[stage]]
name = "b"
capability = "sha256"
inputs = ["a"]
[[stage]]
name = "c"
capability = "upper"
inputs = ["a"]
[[stage]]
name = "d"
capability = "echo"
inputs = ["b", "c"]
"#;

#[test]
fn a_diamond_runs_its_middle_stages_at_the_same_time() {
    let providers = vec![
        provider(11, 5, &["echo", "sha256", "upper"]),
        provider(12, 6, &["echo", "sha256", "upper"]),
    ];
    let sim = run(DIAMOND, b"abc", providers, executor(400, vec![]));
    let Some(Outcome::Completed(done)) = sim.outcome() else {
        panic!("{:?}\n{:?}", sim.outcome(), sim.errors)
    };
    let started = events(&sim, "stage-started");
    let finished = events(&sim, "stage-done");
    let pos = |evs: &[(usize, SignedObject)], stage: &str| {
        evs.iter()
            .find(|(_, o)| attr_of(o, "stage") == stage)
            .map(|(i, _)| *i)
            .unwrap()
    };
    let (b_start, c_start) = (pos(&started, "b"), pos(&started, "c"));
    let first_middle_done = pos(&finished, "b").min(pos(&finished, "c"));
    assert!(
        b_start < first_middle_done && c_start < first_middle_done,
        "both middle stages are awarded before either finishes"
    );
    let (b, c) = (&done.parts[1], &done.parts[2]);
    assert!(b.started_ms.unwrap() < c.finished_ms.unwrap());
    assert!(c.started_ms.unwrap() < b.finished_ms.unwrap());
    // d reads b then c, concatenated.
    let mut expected = hex(&pvl_protocol::sha256(b"abc")).into_bytes();
    expected.extend_from_slice(b"ABC");
    assert_eq!(inline(&done.output), expected);
    assert_eq!(done.parts[3].label, "d");
    assert!(pos(&started, "d") > pos(&finished, "b").max(pos(&finished, "c")));
}

#[test]
fn a_failing_stage_provider_is_replaced_and_the_workflow_completes() {
    // 12 is cheapest for sha256 and fails; 13 takes over.
    let providers = vec![
        provider(11, 5, &["echo", "wordcount"]),
        provider(12, 1, &["sha256"]),
        provider(13, 9, &["sha256"]),
    ];
    let sim = run(
        PIPELINE,
        b"one two",
        providers,
        executor(300, vec![key(12).public()]),
    );
    let Some(Outcome::Completed(done)) = sim.outcome() else {
        panic!("{:?}\n{:?}", sim.outcome(), sim.errors)
    };
    let hash = &done.parts[1];
    assert_eq!(hash.provider, Some(key(13).public()));
    assert_eq!(hash.awards, 2);
    assert_eq!(done.awards, 4);
    assert_eq!(
        inline(&hash.output),
        hex(&pvl_protocol::sha256(b"one two")).as_bytes()
    );
    assert_eq!(inline(&done.output), b"1");
    let reassigned = events_in(&sim.recorded, "reassigned");
    assert_eq!(reassigned.len(), 1);
    // The stage was started twice (two awards), done once.
    let started: Vec<String> = events(&sim, "stage-started")
        .iter()
        .map(|(_, o)| attr_of(o, "stage"))
        .collect();
    assert_eq!(started, vec!["fetch", "hash", "hash", "count"]);
}

#[test]
fn a_stage_nobody_can_do_fails_the_workflow_and_earlier_stages_keep_receipts() {
    let text = r#"
[[stage]]
name = "fetch"
capability = "echo"
[[stage]]
name = "translate"
capability = "klingon"
inputs = ["fetch"]
[[stage]]
name = "count"
capability = "wordcount"
inputs = ["translate"]
"#;
    let providers = vec![provider(11, 5, &["echo", "wordcount"])];
    let sim = run(text, b"hi", providers, executor(300, vec![]));
    let Some(Outcome::Failed(failure)) = sim.outcome() else {
        panic!("{:?}", sim.outcome())
    };
    assert_eq!(failure.reason, FailureReason::NoOffers);
    assert!(
        failure.detail.contains("stage `translate`"),
        "{}",
        failure.detail
    );
    let parts = &failure.parts;
    assert_eq!(parts[0].status, PartStatus::Done);
    assert!(parts[0].receipt.as_ref().unwrap().is_countersigned());
    assert_eq!(inline(&parts[0].output), b"hi");
    assert!(matches!(parts[1].status, PartStatus::Failed(_)));
    assert_eq!(parts[2].status, PartStatus::Pending);
    let failed = events(&sim, "stage-failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(attr_of(&failed[0].1, "stage"), "translate");
    assert_eq!(attr_of(&failed[0].1, "reason"), "no-offers");
    let wf = events(&sim, "workflow-failed");
    assert_eq!(wf.len(), 1);
    assert_eq!(attr_of(&wf[0].1, "stage"), "translate");
}

#[test]
fn a_hash_only_output_cannot_feed_the_next_stage() {
    let providers = vec![provider(11, 5, &["echo", "sha256", "wordcount"])];
    let exec: Executor = Box::new(|_, _, capability, input| ExecPlan::Finish {
        after_ms: 100,
        result: Ok(if capability == "echo" {
            Payload::Hash {
                sha256: pvl_protocol::sha256(input.inline().unwrap()),
                size: input.size(),
            }
        } else {
            Payload::Inline(b"x".to_vec())
        }),
        progress: false,
    });
    let sim = run(PIPELINE, b"data", providers, exec);
    let Some(Outcome::Failed(failure)) = sim.outcome() else {
        panic!("{:?}", sim.outcome())
    };
    assert_eq!(failure.reason, FailureReason::BadInput);
    assert!(
        failure.detail.contains("stage `hash`"),
        "{}",
        failure.detail
    );
    assert!(failure.detail.contains("hash only"), "{}", failure.detail);
    assert_eq!(failure.parts[0].status, PartStatus::Done);
}

#[test]
fn a_failing_stage_cancels_the_stages_still_running() {
    // b can be done by nobody; c is slow and still running when b fails.
    let text = r#"
[[stage]]
name = "a"
capability = "echo"
[[stage]]
name = "b"
capability = "nobody"
inputs = ["a"]
[[stage]]
name = "c"
capability = "upper"
inputs = ["a"]
"#;
    let providers = vec![provider(11, 5, &["echo", "upper"])];
    let exec: Executor = Box::new(|_, _, capability, input| ExecPlan::Finish {
        after_ms: if capability == "upper" { 10_000 } else { 100 },
        result: compute(capability, input.inline().unwrap()).map(Payload::Inline),
        progress: false,
    });
    let sim = run(text, b"x", providers, exec);
    let Some(Outcome::Failed(failure)) = sim.outcome() else {
        panic!("{:?}", sim.outcome())
    };
    assert_eq!(failure.parts[2].status, PartStatus::Cancelled);
    assert_eq!(failure.parts[0].status, PartStatus::Done);
}

#[test]
fn a_workflow_refuses_objects_of_other_traces_and_can_be_cancelled() {
    let spec = WorkflowSpec::parse(PIPELINE).unwrap();
    let mut run = WorkflowRun::new(key(1), spec, Payload::Inline(b"x".to_vec())).unwrap();
    let actions = run.start(T0).unwrap();
    assert!(
        published(&actions).iter().all(|i| !i.is_root()),
        "the root is never published"
    );
    let stage_intent = published(&actions).pop().unwrap();
    let offer = common::offer(&stage_intent, &key(11), 5, 100, 9_500, T0 + 5);
    assert!(run.claims(&offer));
    let mut other = pvl_patterns::Requester::new(key(2), spec_for_other());
    let other_intent = published(&other.start(T0).unwrap()).pop().unwrap();
    let foreign = common::offer(&other_intent, &key(11), 5, 100, 9_500, T0 + 5);
    assert!(!run.claims(&foreign));
    assert!(
        run.handle(pvl_patterns::Input::Received(foreign), T0 + 10)
            .is_err()
    );
    let actions = run
        .handle(pvl_patterns::Input::Received(offer), T0 + 10)
        .unwrap();
    assert!(finished(&actions).is_none());
    let actions = run.cancel("user asked", T0 + 20).unwrap();
    let Some(Outcome::Failed(f)) = finished(&actions) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::Cancelled);
    assert_eq!(f.parts[0].status, PartStatus::Cancelled);
    assert!(run.is_finished());
}

fn spec_for_other() -> RequestSpec {
    RequestSpec::new("echo", Payload::Inline(vec![]))
}

#[test]
fn stage_options_shape_the_stage_intent() {
    let text = r#"
[[stage]]
name = "hash"
capability = "sha256"
strategy = "fastest"
budget = 10
deadline_ms = 5000
min_reliability = 0.95
window_ms = 300
"#;
    let spec = WorkflowSpec::parse(text).unwrap();
    let mut template = template();
    template.constraints.max_cost = Some(1_000);
    let mut run = WorkflowRun::new(key(1), spec, Payload::Inline(b"x".to_vec()))
        .unwrap()
        .with_template(template);
    let actions = run.start(T0).unwrap();
    let intent = published(&actions).pop().unwrap();
    let Body::Intent(body) = intent.body() else {
        unreachable!()
    };
    assert_eq!(body.capability, "sha256");
    assert_eq!(body.input, Payload::Inline(b"x".to_vec()));
    assert_eq!(body.strategy, pvl_protocol::Strategy::Fastest);
    assert_eq!(body.constraints.max_cost, Some(10), "the stage budget wins");
    assert_eq!(body.constraints.deadline_ms, Some(T0 + 5_000));
    assert_eq!(body.constraints.min_reliability_bps, Some(9_500));
    assert_eq!(body.expires_at_ms, T0 + 300, "the stage's offer window");
    assert_eq!(body.pattern, pvl_protocol::PatternHint::ContractNet);
    let root = run.root().unwrap();
    assert_eq!(intent.parents(), &[root.id()]);
    assert_eq!(
        timers(&actions),
        vec![(T0 + 300, pvl_patterns::TimerKind::OfferWindow { round: 1 })]
    );
}
