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

use std::sync::Arc;
use std::thread::JoinHandle;

use pvl_api::events::{Event, ObjectEvent};
use pvl_net::PeerId;
use pvl_protocol::SignedObject;
use pvl_trace::{InsertOutcome, TraceStore};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, debug_span, warn};

use crate::metrics::{KindLabel, Metrics};

/// Commands the writer thread accepts, at most this many queued.
const QUEUE: usize = 4096;

/// Most objects written in one store batch.
const MAX_BATCH: usize = 512;

/// One object to record: the object, where it came from (`local`, `gossip`, `direct`) and
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
    store: Arc<TraceStore>,
    events: broadcast::Sender<Event>,
    metrics: Metrics,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// Starts the writer thread for `store`, announcing new objects on `events`.
    /// New objects are counted by kind in `metrics`.
    pub fn start(
        store: Arc<TraceStore>,
        events: broadcast::Sender<Event>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = {
            let store = store.clone();
            let events = events.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("pvl-recorder".into())
                .spawn(move || writer(rx, &store, &events, &metrics))?
        };
        Ok(Recorder {
            tx,
            store,
            events,
            metrics,
            thread: std::sync::Mutex::new(Some(thread)),
        })
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
                write_and_announce(&self.store, &self.events, &self.metrics, entries);
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
fn writer(
    mut rx: mpsc::Receiver<Command>,
    store: &TraceStore,
    events: &broadcast::Sender<Event>,
    metrics: &Metrics,
) {
    let mut pending: Vec<Entry> = Vec::new();
    let mut barriers: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut stop = false;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(entries) => pending.extend(entries),
                Command::Barrier(done) => barriers.push(done),
                Command::Stop => stop = true,
            }
            if pending.len() >= MAX_BATCH || stop {
                break;
            }
            next = rx.try_recv().ok();
        }
        write_and_announce(store, events, metrics, std::mem::take(&mut pending));
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
        if stop {
            break;
        }
    }
}

/// Stores objects in one store batch, counts and announces each new one.
pub fn write_and_announce(
    store: &TraceStore,
    events: &broadcast::Sender<Event>,
    metrics: &Metrics,
    entries: Vec<Entry>,
) {
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
    for ((object, (origin, peer)), outcome) in plain.iter().zip(sources).zip(outcomes) {
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
        if events.receiver_count() == 0 {
            continue;
        }
        let _ = events.send(object_event(object, origin, peer, outcome.is_some()));
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
