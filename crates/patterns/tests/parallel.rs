//! Parallel runs: splitting (with property tests), local and remote reduction, and whole runs
//! through the simulation (real providers and signatures, simulated clock and network).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use proptest::prelude::*;
use pvl_patterns::parallel::reduce_locally;
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{
    Coordination, FailureReason, OfferPolicy, Outcome, ParallelError, ParallelRun, ParallelSpec,
    PartStatus, Provider, Reduce, Split, split,
};
use pvl_protocol::{Body, Kind, Payload, PublicKey, SignedObject};

// ----- split and reduce ----------------------------------------------------------------------

#[test]
fn split_and_reduce_parse_from_text() {
    assert_eq!("lines".parse::<Split>().unwrap(), Split::Lines);
    assert_eq!("bytes:512".parse::<Split>().unwrap(), Split::Bytes(512));
    assert_eq!("json-array".parse::<Split>().unwrap(), Split::JsonArray);
    assert!(matches!(
        "bytes:0".parse::<Split>(),
        Err(ParallelError::BadChunkSize(_))
    ));
    assert!(matches!(
        "words".parse::<Split>(),
        Err(ParallelError::UnknownSplit(_))
    ));
    assert_eq!(Split::Bytes(7).to_string(), "bytes:7");
    assert_eq!("concat".parse::<Reduce>().unwrap(), Reduce::Concat);
    assert_eq!("sum".parse::<Reduce>().unwrap(), Reduce::Sum);
    assert_eq!(
        "merge-sorted".parse::<Reduce>().unwrap(),
        Reduce::Capability("merge-sorted".into())
    );
    assert!("no spaces".parse::<Reduce>().is_err());
}

#[test]
fn lines_split_into_even_groups_of_whole_lines() {
    let shards = split(b"a\nb\nc\nd\ne", Split::Lines, 2).unwrap();
    assert_eq!(shards, vec![b"a\nb\nc\n".to_vec(), b"d\ne".to_vec()]);
    let shards = split(b"one\ntwo\n", Split::Lines, 8).unwrap();
    assert_eq!(shards.len(), 2, "never more shards than lines");
    assert_eq!(split(b"", Split::Lines, 2), Err(ParallelError::EmptyInput));
    assert_eq!(
        split(b"x", Split::Lines, 0),
        Err(ParallelError::ShardCount(0))
    );
}

#[test]
fn bytes_and_json_arrays_split_as_documented() {
    let shards = split(b"abcdefghij", Split::Bytes(3), 10).unwrap();
    assert_eq!(shards.len(), 4);
    assert_eq!(shards[3], b"j".to_vec());
    // 3-byte chunks would make 4 shards; at most 2 allowed: 5-byte chunks.
    let shards = split(b"abcdefghij", Split::Bytes(3), 2).unwrap();
    assert_eq!(shards, vec![b"abcde".to_vec(), b"fghij".to_vec()]);
    let shards = split(br#"[1, "two", {"three": 3}, [4]]"#, Split::JsonArray, 3).unwrap();
    let texts: Vec<String> = shards
        .iter()
        .map(|s| String::from_utf8(s.clone()).unwrap())
        .collect();
    assert_eq!(texts, vec![r#"[1,"two"]"#, r#"[{"three":3}]"#, "[[4]]"]);
    assert!(matches!(
        split(b"{\"a\": 1}", Split::JsonArray, 2),
        Err(ParallelError::NotJsonArray(_))
    ));
}

#[test]
fn sum_adds_integers_and_decimals_exactly() {
    let sum = |xs: &[&str]| {
        let bytes: Vec<&[u8]> = xs.iter().map(|s| s.as_bytes()).collect();
        reduce_locally(&Reduce::Sum, &bytes).map(|b| String::from_utf8(b).unwrap())
    };
    assert_eq!(sum(&["1", " 2\n", "39"]).unwrap(), "42");
    assert_eq!(sum(&["1", " 2.5 ", "-0.25"]).unwrap(), "3.25");
    assert_eq!(sum(&["0.1", "0.2"]).unwrap(), "0.3");
    assert_eq!(sum(&["-3.5", "1"]).unwrap(), "-2.5");
    assert_eq!(sum(&["-0.5", "0.25"]).unwrap(), "-0.25");
    let err = sum(&["1", "many"]).unwrap_err().to_string();
    assert!(err.contains("shard 1") && err.contains("many"), "{err}");
    assert!(sum(&["1e3"]).is_err());
    assert_eq!(
        reduce_locally(&Reduce::Concat, &[b"ab", b"", b"c"]).unwrap(),
        b"abc"
    );
}

proptest! {
    #[test]
    fn line_shards_concatenate_to_the_input(
        input in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 1..400),
        n in 1usize..12,
    ) {
        let shards = split(&input, Split::Lines, n).unwrap();
        prop_assert!(!shards.is_empty() && shards.len() <= n);
        prop_assert!(shards.iter().all(|s| !s.is_empty()));
        for s in &shards[..shards.len() - 1] {
            prop_assert_eq!(s.last(), Some(&b'\n'), "only whole lines");
        }
        prop_assert_eq!(shards.concat(), input);
    }

    #[test]
    fn byte_shards_concatenate_to_the_input(
        input in proptest::collection::vec(any::<u8>(), 1..400),
        size in 1usize..64,
        n in 1usize..12,
    ) {
        let shards = split(&input, Split::Bytes(size), n).unwrap();
        prop_assert!(!shards.is_empty() && shards.len() <= n);
        prop_assert!(shards.iter().all(|s| !s.is_empty()));
        prop_assert_eq!(shards.concat(), input);
    }

    #[test]
    fn json_shards_regroup_to_the_array(
        items in proptest::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(serde_json::Value::from),
                "[a-z ]{0,8}".prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
            ],
            1..40,
        ),
        n in 1usize..12,
    ) {
        let input = serde_json::to_vec(&items).unwrap();
        let shards = split(&input, Split::JsonArray, n).unwrap();
        prop_assert!(!shards.is_empty() && shards.len() <= n);
        let mut regrouped = Vec::new();
        for s in &shards {
            let part: Vec<serde_json::Value> = serde_json::from_slice(s).unwrap();
            prop_assert!(!part.is_empty());
            regrouped.extend(part);
        }
        prop_assert_eq!(regrouped, items);
    }
}

// ----- runs ----------------------------------------------------------------------------------

fn compute(capability: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(input);
    match capability {
        "upper" => Ok(input.to_ascii_uppercase()),
        "wordcount" => Ok(text.split_whitespace().count().to_string().into_bytes()),
        "sum-lines" => Ok(text
            .lines()
            .map(|l| l.trim().parse::<i64>().unwrap())
            .sum::<i64>()
            .to_string()
            .into_bytes()),
        other => Err(format!("cannot {other}")),
    }
}

/// Computes the real result after 300 ms; the providers in `fail` fail their tasks.
fn executor(fail: Vec<PublicKey>) -> Executor {
    Box::new(move |who, _task, capability, input| ExecPlan::Finish {
        after_ms: 300,
        result: if fail.contains(who) {
            Err("out of memory".into())
        } else {
            compute(capability, input.inline().unwrap()).map(Payload::Inline)
        },
        progress: false,
    })
}

/// Providers 11.. with prices 1, 2, 3, ... serving `capabilities`.
fn providers(count: u8, capabilities: &[&str]) -> Vec<Provider> {
    (0..count)
        .map(|i| {
            capabilities
                .iter()
                .fold(Provider::new(key(11 + i), 4), |p, c| {
                    p.serve(*c, OfferPolicy::fixed(u64::from(i) + 1, 500, 9_500))
                })
        })
        .collect()
}

const TEXT: &[u8] =
    b"alpha beta\ngamma\ndelta epsilon zeta\neta\ntheta iota\nkappa\nlambda mu nu\nxi\n";

fn run(
    spec: ParallelSpec,
    input: &[u8],
    providers: Vec<Provider>,
    exec: Executor,
) -> Sim<ParallelRun> {
    let run = ParallelRun::new(key(1), spec, Payload::Inline(input.to_vec())).unwrap();
    let mut sim = Sim::new(run, key(1).public(), providers, 10, exec);
    sim.run(T0, T0 + 120_000);
    sim
}

fn spec(capability: &str, reduce: Reduce) -> ParallelSpec {
    let mut spec = ParallelSpec::new(capability, Split::Lines, 4, reduce);
    spec.template.offer_window_ms = 200;
    spec.template.nonce = 5;
    spec
}

/// Requester-signed events of `event_type`, in record order.
fn events(sim: &Sim<ParallelRun>, event_type: &str) -> Vec<SignedObject> {
    sim.recorded
        .iter()
        .filter(|o| o.signer() == key(1).public())
        .filter(|o| matches!(o.body(), Body::Event(e) if e.event_type == event_type))
        .cloned()
        .collect()
}

fn attr_of(o: &SignedObject, k: &str) -> String {
    let Body::Event(e) = o.body() else {
        panic!("not an event")
    };
    attr(e, k).unwrap().to_string()
}

fn completed(sim: &Sim<ParallelRun>) -> pvl_patterns::Completion {
    match sim.outcome() {
        Some(Outcome::Completed(c)) => c.clone(),
        other => panic!("{other:?}\n{:?}", sim.errors),
    }
}

#[test]
fn four_shards_on_four_providers_survive_a_failing_provider() {
    // 12 fails whatever it is given; its shard goes to another provider.
    let sim = run(
        spec("upper", Reduce::Concat),
        TEXT,
        providers(4, &["upper"]),
        executor(vec![key(12).public()]),
    );
    let done = completed(&sim);
    assert_eq!(
        done.output,
        Some(Payload::Inline(TEXT.to_ascii_uppercase()))
    );
    assert_eq!(done.parts.len(), 4);
    let labels: Vec<&str> = done.parts.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, vec!["shard-0", "shard-1", "shard-2", "shard-3"]);
    // The first four awards went to four distinct providers.
    let started = events(&sim, "shard-started");
    let first: std::collections::HashSet<String> = started
        .iter()
        .take(4)
        .map(|e| attr_of(e, "provider"))
        .collect();
    assert_eq!(first.len(), 4, "one shard per provider");
    // The failed shard was re-awarded; nobody else stopped.
    assert_eq!(started.len(), 5);
    assert_eq!(events_in(&sim.recorded, "reassigned").len(), 1);
    let failing = key(12).public();
    assert!(done.parts.iter().all(|p| p.provider != Some(failing)));
    assert!(done.parts.iter().all(|p| p.status == PartStatus::Done));
    assert_eq!(done.parts.iter().map(|p| p.awards).sum::<u32>(), 5);
    assert_eq!(done.awards, 5);
    assert_eq!(events(&sim, "shard-done").len(), 4);
    assert_eq!(events(&sim, "parallel-done").len(), 1);
    assert_decodes(&sim.recorded);
}

#[test]
fn a_spare_provider_takes_the_failed_shard_so_every_shard_has_its_own() {
    let sim = run(
        spec("upper", Reduce::Concat),
        TEXT,
        providers(5, &["upper"]),
        executor(vec![key(12).public()]),
    );
    let done = completed(&sim);
    let finals: std::collections::HashSet<PublicKey> =
        done.parts.iter().map(|p| p.provider.unwrap()).collect();
    assert_eq!(finals.len(), 4, "four shards, four distinct providers");
    assert!(finals.contains(&key(15).public()), "the spare took over");
    assert_eq!(
        done.output,
        Some(Payload::Inline(TEXT.to_ascii_uppercase()))
    );
}

#[test]
fn reduce_sum_adds_the_shard_outputs() {
    let sim = run(
        spec("wordcount", Reduce::Sum),
        TEXT,
        providers(4, &["wordcount"]),
        executor(vec![]),
    );
    let done = completed(&sim);
    let words = String::from_utf8_lossy(TEXT).split_whitespace().count();
    assert_eq!(words, 14);
    assert_eq!(done.output, Some(Payload::Inline(b"14".to_vec())));
    let reduced = events(&sim, "parallel-done");
    assert_eq!(attr_of(&reduced[0], "how"), "sum");
}

#[test]
fn reduce_by_capability_awards_a_reducer_after_every_shard() {
    let sim = run(
        spec("wordcount", Reduce::Capability("sum-lines".into())),
        TEXT,
        providers(4, &["wordcount", "sum-lines"]),
        executor(vec![]),
    );
    let done = completed(&sim);
    assert_eq!(done.output, Some(Payload::Inline(b"14".to_vec())));
    assert_eq!(done.parts.len(), 5);
    let reducer = &done.parts[4];
    assert_eq!(reducer.label, "reduce");
    assert_eq!(reducer.capability, "sum-lines");
    assert_eq!(done.task, reducer.task.unwrap());
    assert!(done.receipt.as_ref().unwrap().is_countersigned());
    // The reducer's intent is a child of the root and of every shard's receipt, and it was
    // published only after the last shard was done.
    let intent = sim
        .recorded
        .iter()
        .find(|o| matches!(o.body(), Body::Intent(i) if i.capability == "sum-lines"))
        .unwrap();
    let root = sim.requester().root().unwrap();
    assert!(intent.parents().contains(&root.id()));
    for shard in &done.parts[..4] {
        assert!(
            intent
                .parents()
                .contains(&shard.receipt.as_ref().unwrap().id())
        );
        assert!(shard.finished_ms.unwrap() <= reducer.started_ms.unwrap());
    }
    let Body::Intent(body) = intent.body() else {
        unreachable!()
    };
    let shard_outputs: Vec<Vec<u8>> = done.parts[..4]
        .iter()
        .map(|p| p.output.as_ref().unwrap().inline().unwrap().to_vec())
        .collect();
    assert_eq!(
        body.input,
        Payload::Inline(shard_outputs.join(&b"\n"[..])),
        "the reducer reads the shard outputs joined by newlines"
    );
    assert_eq!(events(&sim, "reduce-started").len(), 1);
    assert_eq!(
        attr_of(&events(&sim, "parallel-done")[0], "how"),
        "sum-lines"
    );
    // Root: recorded, never published, pattern Parallel.
    let Body::Intent(root_body) = root.body() else {
        unreachable!()
    };
    assert_eq!(root_body.pattern, pvl_protocol::PatternHint::Parallel);
    assert_eq!(
        sim.recorded.iter().filter(|o| o.id() == root.id()).count(),
        1
    );
    assert!(sim.recorded.iter().all(|o| o.trace_id() == root.id()));
    assert_eq!(
        sim.recorded
            .iter()
            .filter(|o| o.kind() == Kind::Intent && o.signer() == key(1).public())
            .filter(|o| !o.is_root())
            .map(SignedObject::id)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        5,
        "four shard intents and one reducer intent"
    );
}

/// Fails the first `failures` tasks whose input is `poison`, computes the rest.
fn flaky(poison: &'static [u8], mut failures: u32) -> Executor {
    Box::new(move |_, _, capability, input| {
        let bytes = input.inline().unwrap();
        let result = if bytes == poison && failures > 0 {
            failures -= 1;
            Err("segfault".into())
        } else {
            compute(capability, bytes).map(Payload::Inline)
        };
        ExecPlan::Finish {
            after_ms: 200,
            result,
            progress: false,
        }
    })
}

#[test]
fn a_shard_whose_requester_fails_is_restarted_with_a_fresh_intent() {
    // Two providers; shard-1 fails on both (award + reassignment), there is no re-publication,
    // so its sub-requester fails; the restart gets fresh offers and succeeds.
    let mut spec = spec("upper", Reduce::Concat);
    spec.shards = 2;
    spec.template.max_republish = 0;
    let sim = run(spec, b"a\nb\n", providers(2, &["upper"]), flaky(b"b\n", 2));
    let done = completed(&sim);
    assert_eq!(done.output, Some(Payload::Inline(b"A\nB\n".to_vec())));
    let failed = events(&sim, "shard-failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(attr_of(&failed[0], "shard"), "shard-1");
    assert_eq!(attr_of(&failed[0], "restart"), "true");
    assert_eq!(done.parts[1].awards, 3);
    assert_eq!(done.parts[0].awards, 1);
    // The restarted shard's intent is a child of the root and of the shard-failed event.
    let restarted = sim
        .recorded
        .iter()
        .filter(|o| o.kind() == Kind::Intent && o.parents().contains(&failed[0].id()))
        .count();
    assert!(restarted >= 1);
}

#[test]
fn a_shard_that_keeps_failing_fails_the_run_after_its_restarts() {
    let mut spec = spec("upper", Reduce::Concat);
    spec.shards = 2;
    spec.max_restarts = 1;
    spec.template.max_republish = 0;
    let sim = run(
        spec,
        b"a\nb\n",
        providers(2, &["upper"]),
        flaky(b"b\n", 100),
    );
    let Some(Outcome::Failed(failure)) = sim.outcome() else {
        panic!("{:?}", sim.outcome())
    };
    assert_eq!(failure.reason, FailureReason::AllProvidersFailed);
    assert!(
        failure.detail.contains("shard-1 failed 2 time(s)"),
        "{}",
        failure.detail
    );
    assert_eq!(failure.parts[0].status, PartStatus::Done);
    assert!(failure.parts[0].receipt.is_some());
    assert!(matches!(failure.parts[1].status, PartStatus::Failed(_)));
    assert_eq!(events(&sim, "shard-failed").len(), 2);
    assert_eq!(events(&sim, "parallel-failed").len(), 1);
}

#[test]
fn a_hash_only_input_cannot_be_split() {
    let spec = spec("upper", Reduce::Concat);
    let err = ParallelRun::new(
        key(1),
        spec,
        Payload::Hash {
            sha256: [0; 32],
            size: 10,
        },
    )
    .unwrap_err();
    assert_eq!(err, ParallelError::HashOnlyInput);
    let mut run = ParallelRun::new(
        key(1),
        ParallelSpec::new("upper", Split::Bytes(1), 3, Reduce::Concat),
        Payload::Inline(b"abc".to_vec()),
    )
    .unwrap();
    assert_eq!(run.shards().len(), 3);
    let actions = run.start(T0).unwrap();
    assert_eq!(
        published(&actions).len(),
        3,
        "one intent per shard, root unpublished"
    );
    assert!(run.start(T0).is_err());
    let actions = run.cancel("stop", T0 + 1).unwrap();
    assert!(matches!(
        finished(&actions),
        Some(Outcome::Failed(f)) if f.reason == FailureReason::Cancelled
    ));
}

#[test]
fn a_silent_shard_provider_is_replaced_without_stopping_the_others() {
    let mut spec = spec("upper", Reduce::Concat);
    spec.template.silence_ms = Some(1_000);
    let silent = key(13).public();
    let exec: Executor = Box::new(move |who, _, capability, input| {
        if *who == silent {
            ExecPlan::Hang
        } else {
            ExecPlan::Finish {
                after_ms: 300,
                result: compute(capability, input.inline().unwrap()).map(Payload::Inline),
                progress: false,
            }
        }
    });
    let sim = run(spec, TEXT, providers(4, &["upper"]), exec);
    let done = completed(&sim);
    assert_eq!(
        done.output,
        Some(Payload::Inline(TEXT.to_ascii_uppercase()))
    );
    assert!(done.parts.iter().all(|p| p.provider != Some(silent)));
    let reassigned = events_in(&sim.recorded, "reassigned");
    assert_eq!(reassigned.len(), 1);
    assert!(
        attr(&reassigned[0], "reason").unwrap().contains("silent"),
        "{:?}",
        reassigned[0]
    );
    // The other shards finished long before the silent one was replaced.
    let replaced = done
        .parts
        .iter()
        .find(|p| p.awards == 2)
        .expect("one shard was awarded twice");
    for p in done.parts.iter().filter(|p| p.awards == 1) {
        assert!(p.finished_ms.unwrap() < replaced.finished_ms.unwrap());
    }
}
