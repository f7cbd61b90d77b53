//! Micro-benchmarks of one consensus round with a 7-member committee (threshold 5), entirely
//! in memory: the proposer signs the proposal, each member decodes it and signs its vote, the
//! proposer decodes and counts the votes and signs the certificate; a provider decodes the
//! certificate (verifying its 7 embedded and outer signatures) and checks it. Run with
//! `cargo bench -p pvl-patterns --bench consensus`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pvl_patterns::{
    Action, Ballot, Decision, ProposalTerms, RulePolicy, Voter, verify_certificate,
};
use pvl_protocol::fixtures::{self, T0};
use pvl_protocol::{Committee, Keypair, ObjectId, SignedObject};
use std::hint::black_box;

const MEMBERS: u8 = 7;
const THRESHOLD: u32 = 5;

fn member_keys() -> Vec<Keypair> {
    (0..MEMBERS)
        .map(|i| Keypair::from_seed([40 + i; 32]))
        .collect()
}

fn committee(keys: &[Keypair]) -> Committee {
    Committee {
        members: keys.iter().map(Keypair::public).collect(),
        threshold: THRESHOLD,
    }
}

fn terms() -> ProposalTerms {
    ProposalTerms {
        capability: "sha256".into(),
        provider: Keypair::from_seed([11; 32]).public(),
        offer: ObjectId([7; 32]),
        cost: 30,
        eta_ms: 1_000,
        input_sha256: pvl_protocol::sha256(b"hello"),
    }
}

fn sent(actions: Vec<Action>) -> Vec<SignedObject> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { object, .. } => Some(object),
            _ => None,
        })
        .collect()
}

/// One full round over wire bytes; returns the certificate's wire bytes.
fn round(requester: &Keypair, voters: &mut [Voter], committee: &Committee) -> Vec<u8> {
    let intent = fixtures::intent().unwrap();
    let mut ballot = Ballot::new(
        requester.clone(),
        intent.trace_id(),
        vec![intent.id()],
        terms(),
        committee.clone(),
        1_000,
        1,
    )
    .unwrap();
    let proposal = sent(ballot.start(T0).unwrap()).remove(0).into_bytes();
    for voter in voters.iter_mut() {
        let received = SignedObject::decode(&proposal).unwrap();
        let vote = sent(voter.on_proposal(received, T0 + 1).unwrap()).remove(0);
        let vote = SignedObject::decode(vote.bytes()).unwrap();
        ballot.on_vote(vote, T0 + 2).unwrap();
        if ballot.decision().is_some() {
            break;
        }
    }
    match ballot.decision() {
        Some(Decision::Approved { certificate, .. }) => certificate.bytes().to_vec(),
        other => panic!("no approval: {other:?}"),
    }
}

fn bench_consensus(c: &mut Criterion) {
    let requester = Keypair::from_seed([1; 32]);
    let keys = member_keys();
    let committee = committee(&keys);
    let fresh_voters = || -> Vec<Voter> {
        keys.iter()
            .map(|k| Voter::new(k.clone(), RulePolicy::default()))
            .collect()
    };
    let cert = round(&requester, &mut fresh_voters(), &committee);
    println!(
        "7-member certificate (threshold {THRESHOLD}): {} wire bytes",
        cert.len()
    );

    let mut group = c.benchmark_group("consensus-7");
    group.throughput(Throughput::Elements(1));
    group.bench_function("full-round", |b| {
        b.iter(|| {
            // Fresh voters: a voter answers each proposal once and remembers it.
            let mut voters = fresh_voters();
            black_box(round(&requester, &mut voters, &committee))
        })
    });
    group.bench_function("certificate-decode+verify", |b| {
        b.iter(|| {
            let decoded = SignedObject::decode(black_box(&cert)).unwrap();
            verify_certificate(&decoded, &committee, terms().offer, terms().input_sha256).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_consensus);
criterion_main!(benches);
