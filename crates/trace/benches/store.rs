//! Micro-benchmarks of the trace store: batched inserts of verified objects, verify+insert
//! from wire bytes (batch verification), reading a 1,000-object trace as a DAG from a store
//! holding 50,000 objects, verifying and analysing it, and the bundle export.
//! Run with `cargo bench -p pvl-trace`. The 1,000,000-object load test is the
//! `pvl-trace-bench` binary, not this.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pvl_protocol::SignedObject;
use pvl_trace::{TraceStore, analyse, export, testkit};

fn bench_store(c: &mut Criterion) {
    let trace = testkit::synthetic(0, 1_000).unwrap();
    let wires: Vec<Vec<u8>> = trace.iter().map(|o| o.bytes().to_vec()).collect();

    let mut group = c.benchmark_group("insert");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(trace.len() as u64));
    group.bench_function("batch of 1000 verified objects", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = TraceStore::open(dir.path()).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                store.insert_batch(black_box(&trace)).unwrap();
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    for per_batch in [1usize, 10] {
        group.bench_function(format!("1000 objects in batches of {per_batch}"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let store = TraceStore::open(dir.path()).unwrap();
                    (dir, store)
                },
                |(dir, store)| {
                    for part in trace.chunks(per_batch) {
                        store.insert_batch(black_box(part)).unwrap();
                    }
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.bench_function("verify+insert 1000 wire objects", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = TraceStore::open(dir.path()).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let refs: Vec<&[u8]> = wires.iter().map(Vec::as_slice).collect();
                for r in store.insert_bytes_batch(black_box(&refs)).unwrap() {
                    r.unwrap();
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    // A store with 50 traces of 1,000 objects.
    let dir = tempfile::tempdir().unwrap();
    let store = TraceStore::open(dir.path()).unwrap();
    for k in 0..50 {
        store
            .insert_batch(&testkit::synthetic(k, 1_000).unwrap())
            .unwrap();
    }
    store.flush().unwrap();
    let root = trace[0].id();
    let mut group = c.benchmark_group("trace of 1000 in a store of 50000");
    group.sample_size(20);
    group.bench_function("read as DAG", |b| {
        b.iter(|| black_box(store.trace(black_box(&root)).unwrap()))
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(store.verify_trace(&root).unwrap()))
    });
    let objects: Vec<SignedObject> = store.trace_objects(&root).unwrap();
    group.bench_function("analyse (objects in memory)", |b| {
        b.iter(|| black_box(analyse(black_box(&objects))))
    });
    group.bench_function("export bundle", |b| {
        b.iter(|| black_box(export::to_bundle(&objects).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
