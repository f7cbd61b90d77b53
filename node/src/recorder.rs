//! The trace-store writer: takes sled off the message path.
//!
//! Every object the node sends or receives is recorded, and a store write is not free: about a
//! millisecond per call when each call was one sled batch, and still about 70 µs of CPU for
//! 11 keys written one by one (measured on sled alone, keys shaped like a provider's intent
//! and offer; pvl-trace's "Crash safety"). Written inline, that cost sat between a message's arrival
//! and the node's answer: with 100 contract-net rounds in flight the net-event task spent most
//! of its time waiting on the store, and offers, awards and reports each queued for about
//! 600 ms behind it. So objects go through a bounded queue to one writer thread, which writes
//! whatever has queued up as one batch and then announces the new objects on the node's event
//! stream.
//!
//! * **Order**: objects are written in the order they were queued. When the queue is full the
//!   caller writes its objects itself (back-pressure instead of loss; inserts are idempotent
//!   and orphans are linked later, so an occasional reordering is harmless).
//! * **Read your writes**: [`Recorder::synced`] waits until everything queued before it is
//!   written. The control API calls it before reading the store for a caller who just saw an
//!   outcome, so `--wait` followed by `pvl trace show` always sees the whole round.
//! * **Shutdown**: [`Recorder::stop`] drains the queue and ends the thread; the daemon then
//!   flushes the store.
//! * **This node's runs in memory**: the objects of the runs this node started are kept after
//!   they are written, in a small bounded [`RecentRuns`], until the capability's history takes
//!   a finished run ([`RecentRuns::take`]): the history then analyses it from memory instead
//!   of reading it back from the store and decoding it again (about 7 % of a busy requester's
//!   CPU, measured with perf).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use pvl_api::events::{Event, ObjectEvent};
use pvl_net::PeerId;
use pvl_protocol::{SignedObject, TraceId};
use pvl_trace::{InsertOutcome, TraceStore};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, debug_span, warn};

use crate::metrics::{KindLabel, Metrics};

/// Commands the writer thread accepts, at most this many queued.
const QUEUE: usize = 4096;

/// Most objects written in one store batch.
const MAX_BATCH: usize = 512;

/// The origin of an object this node made (not received from a peer).
pub const LOCAL: &str = "local";

/// One object to record: the object, where it came from ([`LOCAL`], `gossip`, `direct`) and
/// the peer that sent it.
pub type Entry = (SignedObject, &'static str, Option<PeerId>);

enum Command {
    Write(Vec<Entry>),
    Barrier(oneshot::Sender<()>),
    Stop,
}

/// Handle to the writer thread. Cheap to share behind the node state.
pub struct Recorder {
    tx: mpsc::Sender<Command>,
    sinks: Sinks,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Where written objects go: the store, then the event stream, the metrics and the recent
/// runs.
#[derive(Clone)]
pub struct Sinks {
    /// The trace store.
    pub store: Arc<TraceStore>,
    /// The node's event stream (new objects are announced on it).
    pub events: broadcast::Sender<Event>,
    /// New objects are counted by kind.
    pub metrics: Metrics,
    /// The objects of this node's own recent runs.
    pub recent: Arc<RecentRuns>,
}

impl Recorder {
    /// Starts the writer thread for `sinks.store`, announcing new objects on `sinks.events`.
    pub fn start(sinks: Sinks) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = {
            let sinks = sinks.clone();
            std::thread::Builder::new()
                .name("pvl-recorder".into())
                .spawn(move || writer(rx, &sinks))?
        };
        Ok(Recorder {
            tx,
            sinks,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// The objects of this node's recent runs (see [`RecentRuns`]).
    pub fn recent(&self) -> &Arc<RecentRuns> {
        &self.sinks.recent
    }

    /// Queues objects for the store. Never blocks on the writer: if its queue is full the
    /// objects are written here and now.
    pub fn record(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        match self.tx.try_send(Command::Write(entries)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Command::Write(entries)))
            | Err(mpsc::error::TrySendError::Closed(Command::Write(entries))) => {
                write_and_announce(&self.sinks, entries);
            }
            Err(_) => {}
        }
    }

    /// Write commands waiting for the writer thread (each a batch of objects).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Completes once everything queued before this call is in the store.
    pub async fn synced(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Barrier(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes what is queued and ends the writer thread.
    pub async fn stop(&self) {
        let _ = self.tx.send(Command::Stop).await;
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The writer thread: blocks for the first command, takes whatever else has queued up (up to
/// [`MAX_BATCH`] objects), writes it as one batch, then answers the barriers that were
/// queued behind those objects.
fn writer(mut rx: mpsc::Receiver<Command>, sinks: &Sinks) {
    let mut pending: Vec<Entry> = Vec::new();
    let mut barriers: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut stop = false;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                // The common case, one command per wake-up, takes its list as it is.
                Command::Write(entries) if pending.is_empty() => pending = entries,
                Command::Write(entries) => pending.extend(entries),
                Command::Barrier(done) => barriers.push(done),
                Command::Stop => stop = true,
            }
            if pending.len() >= MAX_BATCH || stop {
                break;
            }
            next = rx.try_recv().ok();
        }
        write_and_announce(sinks, std::mem::take(&mut pending));
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
        if stop {
            break;
        }
    }
}

/// Stores objects in one store batch, counts and announces each new one, and keeps those of
/// this node's runs in [`RecentRuns`].
pub fn write_and_announce(sinks: &Sinks, entries: Vec<Entry>) {
    let Sinks {
        store,
        events,
        metrics,
        recent,
    } = sinks;
    if entries.is_empty() {
        return;
    }
    let (plain, sources): (Vec<SignedObject>, Vec<_>) = entries
        .into_iter()
        .map(|(object, origin, peer)| (object, (origin, peer)))
        .unzip();
    let outcomes = match store.insert_batch(&plain) {
        Ok(outcomes) => outcomes.into_iter().map(Some).collect(),
        Err(e) => {
            warn!(count = plain.len(), "could not store objects: {e}");
            vec![None; plain.len()]
        }
    };
    for ((object, (origin, peer)), outcome) in plain.into_iter().zip(sources).zip(outcomes) {
        // An object the store already held was announced when it first arrived.
        if outcome == Some(InsertOutcome::Duplicate) {
            continue;
        }
        if outcome.is_some() {
            metrics
                .objects_stored
                .get_or_create(&KindLabel {
                    kind: object.kind().to_string(),
                })
                .inc();
        }
        let _span = debug_span!("trace", trace = %object.trace_id().short()).entered();
        debug!(id = %object.id().short(), kind = %object.kind(), origin, ?outcome, "recorded");
        if events.receiver_count() > 0 {
            let _ = events.send(object_event(&object, origin, peer, outcome.is_some()));
        }
        if let Some(outcome) = outcome {
            recent.add(object, origin, outcome);
        }
    }
}

/// The objects of the runs this node started, from the moment each is written until the
/// history takes the run ([`RecentRuns::take`]). A run is kept from its root intent (signed
/// here, so written before anything else of the run: the queue keeps the order) on, so what
/// is kept is what the store holds for it: every object written, a countersigned receipt in
/// place of the bare one. Bounded: at most [`RecentRuns::RUNS`] runs of at most
/// [`RecentRuns::OBJECTS`] objects, and [`RecentRuns::BYTES`] wire bytes in all; the oldest
/// runs go first, and a run that grows past its bound is dropped. A run not held is read from
/// the store, as before.
pub struct RecentRuns {
    inner: Mutex<RecentInner>,
}

impl Default for RecentRuns {
    fn default() -> Self {
        RecentRuns::with_byte_limit(RecentRuns::BYTES)
    }
}

#[derive(Default)]
struct RecentInner {
    runs: HashMap<TraceId, Vec<SignedObject>>,
    /// The runs held, oldest first.
    order: VecDeque<TraceId>,
    /// Wire bytes of every object held.
    bytes: usize,
    /// Most wire bytes held ([`RecentRuns::BYTES`] but in tests).
    byte_limit: usize,
}

impl RecentInner {
    /// Stops holding run `trace`; returns its objects.
    fn forget(&mut self, trace: &TraceId) -> Option<Vec<SignedObject>> {
        let objects = self.runs.remove(trace)?;
        self.order.retain(|t| t != trace);
        self.bytes -= objects.iter().map(|o| o.bytes().len()).sum::<usize>();
        Some(objects)
    }

    /// Drops the oldest runs while more than `runs` runs or `byte_limit` bytes are held.
    fn trim(&mut self, runs: usize) {
        while self.runs.len() > runs || self.bytes > self.byte_limit {
            let Some(oldest) = self.order.front().copied() else {
                break;
            };
            self.forget(&oldest);
        }
    }
}

impl RecentRuns {
    /// Most runs held.
    pub const RUNS: usize = 64;
    /// Most objects held for one run.
    pub const OBJECTS: usize = 64;
    /// Most wire bytes held in all.
    pub const BYTES: usize = 2 * 1024 * 1024;

    /// Holds at most `byte_limit` wire bytes.
    fn with_byte_limit(byte_limit: usize) -> Self {
        RecentRuns {
            inner: Mutex::new(RecentInner {
                byte_limit,
                ..RecentInner::default()
            }),
        }
    }

    /// Takes note of an object the store just wrote (`outcome`), which came from `origin`.
    fn add(&self, object: SignedObject, origin: &str, outcome: InsertOutcome) {
        let trace = object.trace_id();
        let size = object.bytes().len();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if object.id() == trace {
            if origin == LOCAL && outcome == InsertOutcome::Inserted {
                inner.order.push_back(trace);
                inner.runs.insert(trace, vec![object]);
                inner.bytes += size;
                inner.trim(Self::RUNS);
            }
            return;
        }
        let inner = &mut *inner;
        let Some(objects) = inner.runs.get_mut(&trace) else {
            return;
        };
        match outcome {
            InsertOutcome::Upgraded => {
                if let Some(bare) = objects.iter_mut().find(|o| o.id() == object.id()) {
                    inner.bytes = inner.bytes - bare.bytes().len() + size;
                    *bare = object;
                }
            }
            InsertOutcome::Inserted if objects.len() < Self::OBJECTS => {
                objects.push(object);
                inner.bytes += size;
            }
            InsertOutcome::Inserted => {
                inner.forget(&trace);
            }
            InsertOutcome::Duplicate => {}
        }
        inner.trim(Self::RUNS);
    }

    /// The objects of run `trace`, if held: it is then no longer held.
    pub fn take(&self, trace: &TraceId) -> Option<Vec<SignedObject>> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(trace)
    }
}

/// The event-stream entry of an object: recorded (`stored`), or observed and not kept.
pub fn object_event(
    object: &SignedObject,
    origin: &str,
    peer: Option<PeerId>,
    stored: bool,
) -> Event {
    let event_type = match object.body() {
        pvl_protocol::Body::Event(e) => Some(e.event_type.as_str().to_owned()),
        _ => None,
    };
    Event::Object(ObjectEvent {
        id: object.id(),
        kind: object.kind(),
        event_type,
        origin: origin.to_owned(),
        peer: peer.map(|p| p.to_string()),
        trace_id: object.trace_id(),
        signer: object.signer(),
        timestamp_ms: object.timestamp_ms(),
        stored,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;

    use pvl_trace::testkit;

    use super::*;

    fn sinks(dir: &std::path::Path) -> Sinks {
        Sinks {
            store: Arc::new(TraceStore::open(dir.join("store")).unwrap()),
            events: broadcast::channel(16).0,
            metrics: Metrics::new(),
            recent: Arc::default(),
        }
    }

    /// Every object of `objects` as written by the actor: the root signed here, the rest
    /// received.
    fn entries(objects: &[SignedObject]) -> Vec<Entry> {
        objects
            .iter()
            .map(|o| {
                let origin = if o.id() == o.trace_id() {
                    LOCAL
                } else {
                    "direct"
                };
                (o.clone(), origin, None)
            })
            .collect()
    }

    /// The ids and countersigned flags of `objects`.
    fn shape(objects: &[SignedObject]) -> HashSet<(pvl_protocol::ObjectId, bool)> {
        objects
            .iter()
            .map(|o| (o.id(), o.is_countersigned()))
            .collect()
    }

    /// A run written in several batches, with a duplicate and a bare receipt upgraded to the
    /// countersigned one, is held exactly as the store holds it, and analyses the same.
    #[test]
    fn a_recent_run_is_what_the_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = sinks(dir.path());
        let objects = testkit::contract_net().unwrap();
        let trace = objects[0].trace_id();
        let receipt = objects.iter().find(|o| o.is_countersigned()).unwrap();
        let bare = pvl_protocol::Envelope::clone(receipt.envelope())
            .sign(&testkit::provider_key(0))
            .unwrap();
        let (head, tail) = objects.split_at(objects.len() / 2);
        // The bare receipt comes first; the countersigned one, later, upgrades it.
        assert!(tail.iter().any(|o| o.is_countersigned()));
        write_and_announce(&sinks, entries(head));
        write_and_announce(&sinks, vec![(bare, "direct", None)]);
        write_and_announce(&sinks, entries(head));
        write_and_announce(&sinks, entries(tail));
        let held = sinks.recent.take(&trace).expect("the run is held");
        let stored = sinks.store.trace_objects(&trace).unwrap();
        assert_eq!(shape(&held), shape(&stored));
        assert_eq!(held.len(), stored.len());
        assert_eq!(pvl_trace::analyse(&held), pvl_trace::analyse(&stored));
        // Taken once.
        assert!(sinks.recent.take(&trace).is_none());
    }

    /// A run whose root came from a peer is not held; at most `RUNS` runs are, the oldest
    /// going first; a run that grows past `OBJECTS` is dropped.
    #[test]
    fn only_own_runs_are_held_and_the_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = sinks(dir.path());
        let received = testkit::consensus().unwrap();
        let mut from_peer = entries(&received);
        from_peer[0].1 = "gossip";
        write_and_announce(&sinks, from_peer);
        assert!(sinks.recent.take(&received[0].trace_id()).is_none());

        let runs: Vec<Vec<SignedObject>> = (0..RecentRuns::RUNS as u64 + 1)
            .map(|n| testkit::synthetic(n, 3).unwrap())
            .collect();
        for run in &runs {
            write_and_announce(&sinks, entries(run));
        }
        assert!(
            sinks.recent.take(&runs[0][0].trace_id()).is_none(),
            "oldest pushed out"
        );
        for run in &runs[1..] {
            let held = sinks.recent.take(&run[0].trace_id()).unwrap();
            assert_eq!(shape(&held), shape(run));
        }

        let big = testkit::synthetic(1_000, RecentRuns::OBJECTS + 8).unwrap();
        assert!(big.len() > RecentRuns::OBJECTS);
        write_and_announce(&sinks, entries(&big));
        assert!(
            sinks.recent.take(&big[0].trace_id()).is_none(),
            "too big to hold"
        );
        let inner = sinks.recent.inner.lock().unwrap();
        assert!(inner.order.is_empty() && inner.runs.is_empty());
        assert_eq!(inner.bytes, 0);
    }

    /// The bytes held stay under the byte limit: the oldest runs go first.
    #[test]
    fn the_bytes_held_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 100_000;
        let sinks = Sinks {
            recent: Arc::new(RecentRuns::with_byte_limit(limit)),
            ..sinks(dir.path())
        };
        let runs: Vec<Vec<SignedObject>> = (0..RecentRuns::RUNS as u64)
            .map(|n| testkit::synthetic(n, RecentRuns::OBJECTS - 1).unwrap())
            .collect();
        let run_bytes: usize = runs[0].iter().map(|o| o.bytes().len()).sum();
        let fit = limit / run_bytes;
        assert!(
            fit + 2 < runs.len(),
            "{run_bytes} bytes a run: the byte bound must bite"
        );
        for run in &runs {
            write_and_announce(&sinks, entries(run));
            assert!(sinks.recent.inner.lock().unwrap().bytes <= limit);
        }
        let newest = runs.last().unwrap()[0].trace_id();
        assert!(
            sinks.recent.take(&runs[0][0].trace_id()).is_none(),
            "oldest gone"
        );
        assert!(sinks.recent.take(&newest).is_some(), "newest held");
        let held = 1 + runs
            .iter()
            .filter(|run| sinks.recent.take(&run[0].trace_id()).is_some())
            .count();
        assert!(
            held + 1 >= fit && held <= fit,
            "{held} runs held, {fit} fit"
        );
        assert_eq!(sinks.recent.inner.lock().unwrap().bytes, 0);
    }
}
