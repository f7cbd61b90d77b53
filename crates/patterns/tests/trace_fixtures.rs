//! The trace fixtures of pvl-trace, produced by running the patterns in the simulator.
//!
//! pvl-trace analyses traces; it must not depend on pvl-patterns, yet its tests should read
//! traces the patterns really write rather than hand-copied event shapes. So this test runs
//! one scenario per pattern (real state machines, real signatures, fixed keys, a simulated
//! clock) and stores each trace as a bundle (`pvl_protocol::Bundle`) in
//! `crates/trace/tests/fixtures/<scenario>.bundle`, which `crates/trace/tests/sim_fixtures.rs`
//! reads. The runs are deterministic, so the test fails when a pattern's output changes;
//! after an intended change regenerate with
//! `PVL_UPDATE_FIXTURES=1 cargo test -p pvl-patterns --test trace_fixtures` and commit the
//! files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{
    Coordination, OfferPolicy, ParallelRun, ParallelSpec, Provider, Reduce, Requester, Split,
    WorkflowRun, WorkflowSpec,
};
use pvl_protocol::{Bundle, ObjectId, Payload, PublicKey, SignedObject, Strategy};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../trace/tests/fixtures")
}

/// The objects of one trace as a store keeps them: each id once, a countersigned receipt
/// instead of the provider's copy, in first-recorded order.
fn trace_objects(recorded: &[SignedObject]) -> Vec<SignedObject> {
    let mut order: Vec<ObjectId> = Vec::new();
    let mut by_id: HashMap<ObjectId, SignedObject> = HashMap::new();
    for o in recorded {
        match by_id.get(&o.id()) {
            None => {
                order.push(o.id());
                by_id.insert(o.id(), o.clone());
            }
            Some(kept) if o.is_countersigned() && !kept.is_countersigned() => {
                by_id.insert(o.id(), o.clone());
            }
            Some(_) => {}
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// Writes (with `PVL_UPDATE_FIXTURES`) or compares the bundle of `sim`'s trace.
fn check<C: Coordination>(name: &str, sim: &Sim<C>) {
    assert!(sim.outcome().is_some(), "{name} did not finish");
    let objects = trace_objects(&sim.recorded);
    let bytes = Bundle::of_trace(&objects).encode().unwrap();
    let path = fixtures_dir().join(format!("{name}.bundle"));
    if std::env::var_os("PVL_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        return;
    }
    let stored = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with PVL_UPDATE_FIXTURES=1",
            path.display()
        )
    });
    assert!(
        stored == bytes,
        "{name}: the simulated trace differs from the stored fixture; regenerate with \
         PVL_UPDATE_FIXTURES=1 and review"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn compute(capability: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    match capability {
        "echo" => Ok(input.to_vec()),
        "sha256" => Ok(hex(&pvl_protocol::sha256(input)).into_bytes()),
        "upper" => Ok(input.to_ascii_uppercase()),
        other => Err(format!("cannot {other}")),
    }
}

/// Computes the real result after 300 ms; the providers in `fail` report a failure.
fn executor(fail: Vec<PublicKey>) -> Executor {
    Box::new(move |who, _task, capability, input| ExecPlan::Finish {
        after_ms: 300,
        result: if fail.contains(who) {
            Err("disk full".into())
        } else {
            compute(capability, input.inline().unwrap_or_default()).map(Payload::Inline)
        },
        progress: true,
    })
}

/// Providers 11, 12, 13 at prices 30, 50, 80 serving `capabilities`.
fn providers(capabilities: &[&str]) -> Vec<Provider> {
    [(11u8, 30u64), (12, 50), (13, 80)]
        .into_iter()
        .map(|(seed, price)| {
            capabilities
                .iter()
                .fold(Provider::new(key(seed), 4), |p, c| {
                    let mut policy = OfferPolicy::fixed(price, 1_000, 9_500);
                    policy.resources = fitting_resources();
                    p.serve(*c, policy)
                })
        })
        .collect()
}

fn contract_net(name: &str, providers: Vec<Provider>, fail: Vec<PublicKey>) {
    let requester = Requester::new(key(1), spec(Strategy::LowestCost));
    let mut sim = Sim::new(requester, key(1).public(), providers, 10, executor(fail));
    sim.run(T0, T0 + 120_000);
    check(name, &sim);
}

#[test]
fn contract_net_done() {
    contract_net("contract-net-done", providers(&["sha256"]), vec![]);
}

#[test]
fn contract_net_reassigned() {
    contract_net(
        "contract-net-reassigned",
        providers(&["sha256"]),
        vec![key(11).public()],
    );
}

#[test]
fn contract_net_no_offers() {
    contract_net("contract-net-no-offers", providers(&["echo"]), vec![]);
}

#[test]
fn workflow_two_stages() {
    let spec = WorkflowSpec::parse(
        "name = \"digest\"\n[[stage]]\nname = \"fetch\"\ncapability = \"echo\"\n\
         [[stage]]\nname = \"hash\"\ncapability = \"sha256\"\ninputs = [\"fetch\"]\n",
    )
    .unwrap();
    let mut template = spec_template();
    template.nonce = 99;
    let run = WorkflowRun::new(key(1), spec, Payload::Inline(b"hello world".to_vec()))
        .unwrap()
        .with_template(template);
    let mut sim = Sim::new(
        run,
        key(1).public(),
        providers(&["echo", "sha256"]),
        10,
        executor(vec![]),
    );
    sim.run(T0, T0 + 120_000);
    check("workflow-two-stages", &sim);
}

#[test]
fn parallel_three_shards() {
    let mut spec = ParallelSpec::new("upper", Split::Lines, 3, Reduce::Concat);
    spec.template.offer_window_ms = 200;
    spec.template.nonce = 5;
    let run = ParallelRun::new(
        key(1),
        spec,
        Payload::Inline(b"alpha\nbeta\ngamma\n".to_vec()),
    )
    .unwrap();
    let mut sim = Sim::new(
        run,
        key(1).public(),
        providers(&["upper"]),
        10,
        executor(vec![]),
    );
    sim.run(T0, T0 + 120_000);
    check("parallel-three-shards", &sim);
}

fn spec_template() -> pvl_patterns::RequestSpec {
    let mut t = pvl_patterns::RequestSpec::new("unused", Payload::Inline(Vec::new()));
    t.offer_window_ms = 200;
    t
}
