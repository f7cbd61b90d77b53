//! Micro-benchmarks of the protocol hot paths on an offer-sized object: encode + sign,
//! decode + validate + verify (one by one and in batches), and the raw ed25519 operations for
//! comparison. Run with `cargo bench -p pvl-protocol`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pvl_protocol::fixtures::{self, T0};
use pvl_protocol::{Body, Envelope, LiveValidator, SignedObject};
use std::hint::black_box;

fn offer_envelope() -> Envelope {
    let intent = fixtures::intent().unwrap();
    fixtures::offer_for(&intent, &fixtures::provider(), 40, T0 + 100)
        .unwrap()
        .envelope()
        .clone()
}

fn bench_codec(c: &mut Criterion) {
    let key = fixtures::provider();
    let envelope = offer_envelope();
    let offer = envelope.clone().sign(&key).unwrap();
    println!("offer-sized object: {} wire bytes", offer.bytes().len());

    let mut group = c.benchmark_group("offer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode+sign", |b| {
        b.iter_batched(
            || envelope.clone(),
            |env| black_box(env.sign(&key).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode+validate+verify", |b| {
        b.iter(|| black_box(SignedObject::decode(black_box(offer.bytes())).unwrap()))
    });
    let mut now = T0 + 200;
    let mut live = LiveValidator::new(1 << 20);
    let variants: Vec<SignedObject> = (0..4096)
        .map(|i| {
            let mut env = envelope.clone();
            if let Body::Offer(o) = &mut env.body {
                o.cost = i;
            }
            env.sign(&key).unwrap()
        })
        .collect();
    let mut next = 0usize;
    group.bench_function("live accept (decode+verify+fresh+replay)", |b| {
        b.iter(|| {
            // Fresh validators every 4096 objects so no input is a replay.
            if next == variants.len() {
                next = 0;
                now += 1;
                live = LiveValidator::new(1 << 20);
            }
            let object = &variants[next];
            next += 1;
            black_box(live.accept(object.bytes(), now).unwrap())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("offer batch of 64");
    group.throughput(Throughput::Elements(64));
    let batch: Vec<&[u8]> = variants[..64].iter().map(|o| o.bytes()).collect();
    group.bench_function("decode+verify one by one", |b| {
        b.iter(|| {
            for bytes in &batch {
                black_box(SignedObject::decode(bytes).unwrap());
            }
        })
    });
    group.bench_function("decode+verify batched", |b| {
        b.iter(|| black_box(SignedObject::decode_batch(&batch)))
    });
    group.finish();

    let mut group = c.benchmark_group("raw ed25519");
    group.throughput(Throughput::Elements(1));
    let signing = ed25519_dalek::SigningKey::from_bytes(&key.seed());
    let verifying = signing.verifying_key();
    let message = offer.content().to_vec();
    let signature = ed25519_dalek::Signer::sign(&signing, &message);
    group.bench_function("sign", |b| {
        b.iter(|| black_box(ed25519_dalek::Signer::sign(&signing, black_box(&message))))
    });
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(&message), &signature)
                .unwrap()
        })
    });
    group.bench_function("verify (non-strict)", |b| {
        b.iter(|| {
            ed25519_dalek::Verifier::verify(&verifying, black_box(&message), &signature).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
