//! A writer process for the crash-safety test: inserts a stream of signed objects into a
//! trace store and, after each flush, prints the ids that are now durable, one per line, as
//! `durable <hex id>`. The test kills it with SIGKILL at a random moment and checks that
//! every id it printed survived.
//!
//! Usage: `pvl-trace-writer <store dir> <seed> [traces]`. Each trace (40 objects) is inserted
//! in two batches, the second half first (children before their parents), and the store is
//! flushed after every second trace.

use std::io::Write;
use std::process::ExitCode;

use pvl_protocol::ObjectId;
use pvl_trace::{StoreConfig, TraceStore, testkit};

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: pvl-trace-writer <dir> <seed> [traces]")?;
    let seed: u64 = args.next().ok_or("missing seed")?.parse()?;
    let traces: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => u64::MAX,
    };
    let store = TraceStore::open_with(&path, StoreConfig::default())?;
    let stdout = std::io::stdout();
    let mut pending: Vec<ObjectId> = Vec::new();
    for k in 0..traces {
        let objects = testkit::synthetic(seed * 1_000_000 + k, 40)?;
        let (first, second) = objects.split_at(objects.len() / 2);
        store.insert_batch(second)?;
        store.insert_batch(first)?;
        pending.extend(objects.iter().map(|o| o.id()));
        if k % 2 == 1 {
            store.flush()?;
            let mut out = stdout.lock();
            for id in pending.drain(..) {
                writeln!(out, "durable {id}")?;
            }
            out.flush()?;
        }
    }
    store.close()?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvl-trace-writer: {e}");
            ExitCode::FAILURE
        }
    }
}
