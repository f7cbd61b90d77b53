//! An auction among 1,000 simulated providers, entirely in memory.
//!
//! Every provider is a [`Provider`] state machine with its own key and a seeded, random-ish
//! policy (price, eta, claimed reliability, resources, concurrency; a tenth of them serve
//! another capability). The requester has observed history for a fifth of them, which
//! replaces their claimed reliability. One [`Requester`] publishes a weighted-auction intent; the
//! [`Sim`] driver carries every object as wire bytes (decoded and signature-checked on
//! delivery) over a simulated network with a simulated clock, runs the selection, the award,
//! the execution, progress, done and the receipt, and the requester countersigns it.
//!
//! Run with `cargo run --release -p pvl-patterns --example auction_1000` (add `-- N SEED` to
//! change the number of providers and the seed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use pvl_patterns::sim::{ExecPlan, Sim};
use pvl_patterns::{OfferPolicy, Outcome, Provider, RequestSpec, Requester};
use pvl_protocol::{
    Body, Constraints, Keypair, Payload, PriceModel, PublicKey, RejectCode, Resources, Strategy,
    Weights,
};

/// SplitMix64: a tiny deterministic PRNG, enough for seeded simulations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn seed32(&mut self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        seed
    }
}

const T0: u64 = pvl_protocol::fixtures::T0;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
    let mut rng = Rng(seed);

    let wall = Instant::now();
    let providers: Vec<Provider> = (0..n)
        .map(|_| {
            let key = Keypair::from_seed(rng.seed32());
            let capability = if rng.range(0, 9) == 0 {
                "resize"
            } else {
                "sha256"
            };
            let policy = OfferPolicy {
                price: if rng.range(0, 1) == 0 {
                    PriceModel::Fixed(rng.range(10, 200))
                } else {
                    PriceModel::PerKib {
                        base: rng.range(5, 150),
                        per_kib: rng.range(1, 20),
                    }
                },
                eta_ms: rng.range(200, 20_000),
                eta_per_kib_ms: rng.range(0, 50),
                reliability_bps: u16::try_from(rng.range(8_000, 10_000)).unwrap(),
                resources: Resources {
                    cpu_millicores: Some(u32::try_from(rng.range(250, 4_000)).unwrap()),
                    memory_bytes: Some(rng.range(16, 1_024) << 20),
                    disk_bytes: None,
                },
                offer_ttl_ms: rng.range(1_000, 30_000),
            };
            Provider::new(key, usize::try_from(rng.range(1, 4)).unwrap()).serve(capability, policy)
        })
        .collect();
    let built = wall.elapsed();

    // The requester has history for every fifth provider: some deliver less than they claim.
    let history: HashMap<PublicKey, u16> = providers
        .iter()
        .step_by(5)
        .map(|p| {
            let observed = rng.range(7_500, 10_000);
            (p.public(), u16::try_from(observed).unwrap())
        })
        .collect();

    let requester_key = Keypair::from_seed(rng.seed32());
    let mut spec = RequestSpec::new("sha256", Payload::Inline(vec![0x5a; 4_096]));
    spec.constraints = Constraints {
        max_cost: Some(150),
        deadline_ms: Some(T0 + 60_000),
        min_reliability_bps: Some(9_000),
        resources: Resources {
            cpu_millicores: Some(3_000),
            memory_bytes: Some(768 << 20),
            disk_bytes: None,
        },
    };
    spec.strategy = Strategy::Weighted(Weights {
        cost: 500,
        latency: 300,
        reliability: 200,
    });
    spec.offer_window_ms = 2_000;
    spec.grace_ms = 2_000;
    spec.nonce = seed;
    let requester = Requester::new(requester_key.clone(), spec).with_history(Arc::new(history));

    // Executors succeed or fail (rarely) as a function of the task, like a flaky machine.
    let mut exec_rng = Rng(seed ^ 0xA5A5);
    let executor = Box::new(
        move |_who: &pvl_protocol::PublicKey,
              _task: &pvl_protocol::ObjectId,
              _cap: &str,
              input: &Payload| {
            let after_ms = exec_rng.range(100, 1_500);
            if exec_rng.range(0, 99) < 3 {
                ExecPlan::Finish {
                    after_ms,
                    result: Err("executor crashed".into()),
                    progress: true,
                }
            } else {
                let digest = pvl_protocol::sha256(input.inline().unwrap_or_default());
                ExecPlan::Finish {
                    after_ms,
                    result: Ok(Payload::Inline(digest.to_vec())),
                    progress: true,
                }
            }
        },
    );

    let mut sim = Sim::new(requester, requester_key.public(), providers, 25, executor);
    let started = Instant::now();
    let outcome = sim.run(T0, T0 + 120_000).cloned();
    let run = started.elapsed();
    let simulated = sim.now_ms - T0;

    let stats = sim.requester().stats().clone();
    println!("auction among {n} simulated providers (seed {seed})");
    println!(
        "offers: {} received ({} providers did not bid: capability not served or constraints they cannot meet), {} valid on arrival, {} rejected for constraints [over-budget {}, too-slow {}, low-reliability {}, expired {}, resource-limits {}, other {}], {} told not-selected",
        stats.offers_received,
        n - stats.offers_received,
        stats.offers_valid,
        stats.rejected_invalid(),
        stats.rejected(RejectCode::OverBudget),
        stats.rejected(RejectCode::TooSlow),
        stats.rejected(RejectCode::LowReliability),
        stats.rejected(RejectCode::Expired),
        stats.rejected(RejectCode::ResourceLimits),
        stats.rejected(RejectCode::Other),
        stats.rejected(RejectCode::NotSelected),
    );
    if let Some(selection) = sim.recorded.iter().find_map(|o| match o.body() {
        Body::Event(e) if e.event_type == "selection" => Some(e.clone()),
        _ => None,
    }) {
        println!("selection: {}", selection.message);
    }
    match &outcome {
        Some(Outcome::Completed(c)) => {
            let offer = sim
                .recorded
                .iter()
                .find(|o| o.id() == c.offer)
                .map(|o| o.body().clone());
            let (eta, rel) = match offer {
                Some(Body::Offer(o)) => (o.eta_ms, o.reliability_bps),
                _ => (0, 0),
            };
            println!(
                "winner: provider {} offer {} cost {} eta {} ms reliability {} bps; awards {} (reassignments {})",
                c.provider.short(),
                c.offer.short(),
                c.cost,
                eta,
                rel,
                c.awards,
                c.awards - 1
            );
            let receipt = c.receipt.as_ref().expect("receipt");
            let verified = pvl_protocol::SignedObject::decode(receipt.bytes())
                .map(|r| r.is_countersigned())
                .unwrap_or(false);
            println!(
                "receipt {} countersigned and verified from its bytes alone: {verified}",
                receipt.id().short()
            );
        }
        Some(Outcome::Failed(f)) => println!("failed: {} ({})", f.reason, f.detail),
        None => println!("no outcome before the simulated time limit"),
    }
    let selections = sim
        .recorded
        .iter()
        .filter(|o| matches!(o.body(), Body::Event(e) if e.event_type == "selection"))
        .count();
    println!(
        "objects: {} recorded ({} selection events, {} rejects), {} deliveries decoded, {} refused inputs",
        sim.recorded.len(),
        selections,
        stats.rejects.iter().sum::<usize>(),
        sim.stats.delivered,
        sim.stats.refused,
    );
    println!(
        "time: {simulated} ms simulated (offer window 2000 ms, latency 25 ms), {:.0?} wall to build providers, {:.0?} wall for the whole contract-net (1 machine, 1 core)",
        built, run
    );
}
