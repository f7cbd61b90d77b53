#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash safety: a writer process is killed with SIGKILL at random points of a stream of
//! inserts, many times over the same store; after each kill the store must open, every stored
//! object must verify, no edge may point to a missing child or to an unrecorded missing
//! parent, and every id the writer acknowledged as durable must be there.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pvl_protocol::ObjectId;
use pvl_trace::TraceStore;

const KILLS: u64 = 12;
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// Kills the child (SIGKILL) and reaps it when dropped, so a failing test leaves no process.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn sigkill_during_inserts_loses_nothing_acknowledged() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut acked: HashSet<ObjectId> = HashSet::new();
    for round in 0..KILLS {
        // Kill after 1..=5 flushes have been acknowledged (80 ids per flush), plus jitter.
        let target = (1 + rng.next() % 5) as usize * 80;
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_pvl-trace-writer"))
                .arg(&path)
                .arg((round + 1).to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<ObjectId>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(hex) = line.strip_prefix("durable ")
                    && tx.send(hex.parse().unwrap()).is_err()
                {
                    break;
                }
            }
        });
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let mut this_round = 0usize;
        while this_round < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(id) => {
                    acked.insert(id);
                    this_round += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("round {round}: writer acknowledged only {this_round} ids in time")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("round {round}: writer exited early after {this_round} ids")
                }
            }
        }
        // Jitter so that the kill lands at varied points of the next batch or flush. This
        // is not synchronisation: any moment is a valid kill point.
        std::thread::sleep(Duration::from_micros(rng.next() % 20_000));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        drop(child);
        // Ids printed before the kill were flushed before they were printed.
        reader.join().unwrap();
        acked.extend(rx.try_iter());

        let store = TraceStore::open(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let checked = store
            .check_integrity()
            .unwrap_or_else(|e| panic!("round {round}: integrity: {e}"));
        for id in &acked {
            assert!(
                store.get(id).unwrap().is_some(),
                "round {round}: acknowledged object {id} lost"
            );
        }
        println!(
            "round {round}: killed after {this_round} acks; {checked} objects stored, {} acknowledged",
            acked.len()
        );
        drop(store);
    }
}
