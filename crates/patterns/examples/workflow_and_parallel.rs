//! A federated workflow and a parallel run through the in-memory simulation, printing every
//! part of each outcome: how a driver uses [`pvl_patterns::Coordination`] composites.
//!
//! ```text
//! cargo run -p pvl-patterns --example workflow_and_parallel
//! ```

use anyhow::{Context, Result, bail};
use pvl_patterns::sim::{ExecPlan, Executor, Sim};
use pvl_patterns::{
    Coordination, OfferPolicy, Outcome, ParallelRun, ParallelSpec, Provider, Reduce, Split,
    WorkflowRun, WorkflowSpec,
};
use pvl_protocol::{Keypair, Payload};

const WORKFLOW: &str = r#"name = "digest"
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
inputs = ["fetch"]
[[stage]]
name = "report"
capability = "echo"
inputs = ["hash", "count"]
"#;

fn compute(capability: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    match capability {
        "echo" => Ok(input.to_vec()),
        "sha256" => Ok(pvl_protocol::sha256(input)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes()),
        "wordcount" => Ok(format!(
            " words={}",
            String::from_utf8_lossy(input).split_whitespace().count()
        )
        .into_bytes()),
        "count" => Ok(String::from_utf8_lossy(input)
            .split_whitespace()
            .count()
            .to_string()
            .into_bytes()),
        other => Err(format!("cannot {other}")),
    }
}

fn executor() -> Executor {
    Box::new(|_, _, capability, input| ExecPlan::Finish {
        after_ms: 250,
        result: compute(capability, input.inline().unwrap_or_default()).map(Payload::Inline),
        progress: true,
    })
}

fn providers() -> Vec<Provider> {
    (0..4u8)
        .map(|i| {
            ["echo", "sha256", "wordcount", "count"].iter().fold(
                Provider::new(Keypair::from_seed([20 + i; 32]), 4),
                |p, c| p.serve(*c, OfferPolicy::fixed(u64::from(i) + 1, 200, 9_500)),
            )
        })
        .collect()
}

fn print<C: Coordination>(title: &str, sim: &Sim<C>) -> Result<()> {
    let outcome = sim.outcome().context("the run did not finish")?;
    println!("== {title}: {} objects recorded", sim.recorded.len());
    let parts = match outcome {
        Outcome::Completed(c) => {
            let output = c
                .output
                .as_ref()
                .and_then(Payload::inline)
                .unwrap_or_default();
            println!(
                "completed: cost {}, {} award(s), output {:?}",
                c.cost,
                c.awards,
                String::from_utf8_lossy(output)
            );
            &c.parts
        }
        Outcome::Failed(f) => bail!("{title} failed: {}: {}", f.reason, f.detail),
    };
    for p in parts {
        println!(
            "  {:<8} {:<10} {:<5} provider {} cost {} ms {}..{} receipt {}",
            p.label,
            p.capability,
            p.status.name(),
            p.provider.map(|k| k.short()).unwrap_or_default(),
            p.cost,
            p.started_ms.unwrap_or_default(),
            p.finished_ms.unwrap_or_default(),
            p.receipt
                .as_ref()
                .map(|r| r.id().short())
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let key = Keypair::from_seed([1; 32]);
    let now = pvl_protocol::fixtures::T0;

    let spec = WorkflowSpec::parse(WORKFLOW)?;
    let run = WorkflowRun::new(key.clone(), spec, Payload::Inline(b"to be or not".to_vec()))?;
    let mut sim = Sim::new(run, key.public(), providers(), 10, executor());
    sim.run(now, now + 60_000);
    print("workflow", &sim)?;

    let mut spec = ParallelSpec::new("count", Split::Lines, 4, Reduce::Sum);
    spec.template.offer_window_ms = 300;
    let input = b"one two\nthree\nfour five six\nseven\neight nine\n".to_vec();
    let run = ParallelRun::new(key.clone(), spec, Payload::Inline(input))?;
    let mut sim = Sim::new(run, key.public(), providers(), 10, executor());
    sim.run(now, now + 60_000);
    print("parallel", &sim)?;
    Ok(())
}
