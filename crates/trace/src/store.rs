//! The sled-backed store: key layout, batched inserts, durability, orphan linking.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pvl_protocol::{Header, Kind, ObjectId, PublicKey, SignedObject, TraceId, read_header};
use sled::IVec;
use tracing::{debug, info, warn};

use crate::error::{Result, TraceError};
use crate::known::{self, KnownIds};

static STORE_WRITES: AtomicU64 = AtomicU64::new(0);
static STORE_BATCHES: AtomicU64 = AtomicU64::new(0);
static STORE_KEYS: AtomicU64 = AtomicU64::new(0);

/// Per-process counters of trace-store writes (every store in the process adds to them), for
/// benchmarks that compare them before and after a phase. Relaxed atomics: reading is free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounters {
    /// Objects written: inserted new or upgraded (a countersigned receipt replacing the bare
    /// one); duplicates are not counted.
    pub objects_written: u64,
    /// Insert calls (each one ordered run of sled writes, see
    /// [`TraceStore::insert_batch`]).
    pub batches: u64,
    /// sled keys written or removed by those calls: the objects, their chunks and index
    /// entries and the store's counters (what an insert costs is about this number).
    pub keys_written: u64,
}

impl StoreCounters {
    /// The counters now.
    pub fn snapshot() -> Self {
        StoreCounters {
            objects_written: STORE_WRITES.load(Ordering::Relaxed),
            batches: STORE_BATCHES.load(Ordering::Relaxed),
            keys_written: STORE_KEYS.load(Ordering::Relaxed),
        }
    }
}

/// The schema version this code writes and reads; stored under the `v/schema` key.
///
/// Version 2 carries the kinds of a chunk's objects in its time-index (`m/`) value instead of
/// one `k/` key per kind. Version 3 puts an object's trace in its `o/` value and records each
/// insert call's chunks in one `v/call` key, instead of one `c/` key per chunk and a `v/chunk`
/// counter. Version 4 keeps signer index (`s/`) entries for receipts only, the one kind a
/// query by signer asks for ([`TraceStore::receipts_by_signer`]). Older stores are migrated
/// when they are opened, one schema after the other.
pub const SCHEMA_VERSION: u32 = 4;

/// The schema before kinds moved into the time index; opened and migrated.
const SCHEMA_V1: u32 = 1;
/// Schema 2: `c/` chunk claims, a `v/chunk` counter and 9-byte `o/` values.
const SCHEMA_V2: u32 = 2;
/// Schema 3: a signer index (`s/`) entry for every signer of every chunk.
const SCHEMA_V3: u32 = 3;

/// Name of the one sled tree all keys live in.
const TREE: &str = "pvl-trace";

pub(crate) const P_OBJECT: u8 = b'o';
pub(crate) const P_TRACE: u8 = b't';
pub(crate) const P_MISSING: u8 = b'x';
/// Schema 2's chunk claims (`c/<chunk>` -> trace); removed by the migration to schema 3.
const P_CHUNK_V2: u8 = b'c';
pub(crate) const P_SIGNER: u8 = b's';
/// Schema 1's index by kind; removed by the migration to schema 2.
const P_KIND_V1: u8 = b'k';
pub(crate) const P_TIME: u8 = b'm';

const META_SCHEMA: &[u8] = b"vschema";
const META_COUNT: &[u8] = b"vcount";
/// Schema 2's next chunk number; replaced by [`META_CALL`] in schema 3.
const META_CHUNK_V2: &[u8] = b"vchunk";
/// The chunks of the last insert call that wrote any: `first chunk(8) ‖ trace(32)` per chunk,
/// chunk numbers `first`, `first + 1`, ... Written first by every such call: the next call's
/// first chunk is `first` plus their number, and after a crash [`TraceStore::repair`] completes
/// exactly these chunks.
const META_CALL: &[u8] = b"vcall";
/// Present while the store is open: found at open, it says the last process did not close the
/// store (a crash), and [`TraceStore::open_with`] completes the insert it may have torn.
const META_OPEN: &[u8] = b"vopen";

/// Most objects in one chunk (a chunk is one sled value holding several objects of a trace).
pub const MAX_CHUNK_OBJECTS: usize = 256;
/// A chunk is closed once it holds this many bytes (a single larger object gets its own).
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Flag bit in the `o/` value: the stored object is a countersigned receipt.
const FLAG_COUNTERSIGNED: u8 = 1;

/// When written data becomes durable.
///
/// An insert call writes its keys one by one in an order that keeps the store readable at
/// every step, and a store opened after a crash completes the last call (see "Crash safety"
/// in the crate docs). Inserts become *durable* (survive a power loss or `SIGKILL`) when sled
/// flushes its log: every `flush_every` in the background, on an
/// explicit [`TraceStore::flush`], after every batch when `flush_each_batch` is set, and when
/// the store is dropped if `flush_on_drop` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Background flush interval; `None` disables the background flusher.
    pub flush_every: Option<Duration>,
    /// Flush (fsync) after every insert batch before returning: slow, but every acknowledged
    /// insert is durable.
    pub flush_each_batch: bool,
    /// Flush when the store is dropped (clean shutdown).
    pub flush_on_drop: bool,
}

impl Default for Durability {
    /// 500 ms background flush, flush on drop, no flush per batch: at most the last half second
    /// of inserts can be lost on a crash.
    fn default() -> Self {
        Durability {
            flush_every: Some(Duration::from_millis(500)),
            flush_each_batch: false,
            flush_on_drop: true,
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Size of sled's page cache in bytes (sled's own default of 1 GB is far too much for a
    /// node; default here 32 MiB).
    pub cache_capacity: u64,
    /// When data becomes durable.
    pub durability: Durability,
    /// Trade write throughput for less disk space (sled `Mode::LowSpace`). Default `true`.
    pub low_space: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity: 32 * 1024 * 1024,
            durability: Durability::default(),
            low_space: true,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The object was new and is now stored.
    Inserted,
    /// The object (same id) was already stored; nothing changed.
    Duplicate,
    /// A countersigned receipt replaced the bare receipt with the same id.
    Upgraded,
}

/// The sled-backed trace graph store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct TraceStore {
    db: sled::Db,
    pub(crate) tree: sled::Tree,
    durability: Durability,
    /// Serialises writers so that the read-check-write of an insert batch is not interleaved,
    /// and holds what the writer needs from one call to the next.
    write_lock: Mutex<WriterState>,
}

/// What the writer keeps between insert calls, under the write lock: loaded when the store
/// opens, so that a call does not read its counters back from sled.
#[derive(Debug, Default)]
struct WriterState {
    /// Number of `x/` (missing parent) entries, so that the common case (no orphan waiting)
    /// skips looking for children of each new object.
    missing: u64,
    /// Number of distinct objects stored. Kept here, not written by every insert call: it is
    /// written to `v/count` when the store is closed, and a store that was not closed counts
    /// its objects again at open.
    count: u64,
    /// The first chunk number the next call may use.
    next_chunk: u64,
    /// Which ids are stored, so that most calls skip their sled reads: built from the
    /// object index by the first insert call (readers never pay for it).
    known: Option<KnownIds>,
    /// A filter of the parents `x/` entries wait for (never emptied: a wait that is over
    /// costs one needless look), so that a new object that no child waits for skips the
    /// look for its `x/` entries.
    awaited: KnownIds,
}

impl std::fmt::Debug for TraceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceStore")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Printable form of a key for error messages: `<prefix char>/<hex of the rest>`.
pub(crate) fn key_name(key: &[u8]) -> String {
    match key.split_first() {
        Some((p, rest)) => format!("{}/{}", char::from(*p), hex::encode(rest)),
        None => "<empty key>".into(),
    }
}

fn key2(prefix: u8, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + a.len() + b.len());
    k.push(prefix);
    k.extend_from_slice(a);
    k.extend_from_slice(b);
    k
}

fn key3(prefix: u8, a: &[u8], b: &[u8], c: &[u8]) -> Vec<u8> {
    let mut k = key2(prefix, a, b);
    k.extend_from_slice(c);
    k
}

/// The chunk number in a schema 2 claim key `c/<chunk u64 BE>`.
fn claimed_chunk(key: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(key.get(1..).unwrap_or(&[]))
        .map(u64::from_be_bytes)
        .map_err(|_| TraceError::Corrupt {
            key: key_name(key),
            reason: "malformed chunk key".into(),
        })
}

/// The `v/call` value: the first chunk number, then the trace of each chunk in order.
fn encode_call(first: u64, traces: &[TraceId]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 32 * traces.len());
    v.extend_from_slice(&first.to_be_bytes());
    for trace in traces {
        v.extend_from_slice(&trace.0);
    }
    v
}

/// Decodes a `v/call` value into its first chunk number and the traces of its chunks.
fn decode_call(v: &[u8]) -> Result<(u64, Vec<TraceId>)> {
    let corrupt = || TraceError::Corrupt {
        key: key_name(META_CALL),
        reason: format!("{} bytes, expected 8 plus 32 per chunk", v.len()),
    };
    let (first, traces) = v.split_first_chunk::<8>().ok_or_else(corrupt)?;
    if traces.len() % 32 != 0 {
        return Err(corrupt());
    }
    let traces = traces
        .chunks_exact(32)
        .map(|t| id_from(t, META_CALL))
        .collect::<Result<Vec<_>>>()?;
    Ok((u64::from_be_bytes(*first), traces))
}

/// The key of chunk `chunk` of trace `trace`: `t/<trace><chunk u64 BE>`.
pub(crate) fn chunk_key(trace: &TraceId, chunk: u64) -> Vec<u8> {
    key2(P_TRACE, &trace.0, &chunk.to_be_bytes())
}

/// Where an object is stored: its trace and chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub trace: TraceId,
    pub chunk: u64,
}

/// Length of an `o/` value: trace (32), chunk number (u64 BE), flags (1 byte).
const SLOT_LEN: usize = 41;

/// The `o/` value: the trace and chunk number of the object's chunk, and flags.
fn encode_slot(location: Location, countersigned: bool) -> [u8; SLOT_LEN] {
    let mut v = [0u8; SLOT_LEN];
    v[..32].copy_from_slice(&location.trace.0);
    v[32..40].copy_from_slice(&location.chunk.to_be_bytes());
    v[40] = if countersigned { FLAG_COUNTERSIGNED } else { 0 };
    v
}

/// Decodes an `o/` value into the object's location and whether it is countersigned.
fn decode_slot(key: &[u8], v: &[u8]) -> Result<(Location, bool)> {
    let corrupt = || TraceError::Corrupt {
        key: key_name(key),
        reason: format!("object location of {} bytes, expected {SLOT_LEN}", v.len()),
    };
    if v.len() != SLOT_LEN {
        return Err(corrupt());
    }
    let (trace, rest) = v.split_first_chunk::<32>().ok_or_else(corrupt)?;
    let (chunk, flags) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let location = Location {
        trace: ObjectId(*trace),
        chunk: u64::from_be_bytes(*chunk),
    };
    Ok((
        location,
        flags.first().is_some_and(|f| f & FLAG_COUNTERSIGNED != 0),
    ))
}

/// A schema 2 `o/` value (chunk number and flags, 9 bytes), for the migration.
fn decode_slot_v2(v: &[u8]) -> Option<(u64, u8)> {
    let (flags, chunk) = v.split_last()?;
    let chunk: [u8; 8] = chunk.try_into().ok()?;
    Some((u64::from_be_bytes(chunk), *flags))
}

/// One stored object as read back from a chunk.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The chunk key it was read from (for error messages).
    pub key: IVec,
    /// The id it is stored under.
    pub id: ObjectId,
    /// Its wire bytes.
    pub bytes: Vec<u8>,
}

/// A chunk that could not be split into entries: its key and why.
pub(crate) type BrokenChunk = (IVec, TraceError);

/// Encodes a chunk: for each object, `id(32) length(u32 BE) wire bytes`.
fn encode_chunk(objects: &[&SignedObject]) -> Vec<u8> {
    let size = objects.iter().map(|o| 36 + o.bytes().len()).sum();
    let mut v = Vec::with_capacity(size);
    for o in objects {
        v.extend_from_slice(&o.id().0);
        v.extend_from_slice(&(o.bytes().len() as u32).to_be_bytes());
        v.extend_from_slice(o.bytes());
    }
    v
}

/// Splits a chunk value into `(stored id, wire bytes)` entries.
pub(crate) fn parse_chunk<'a>(key: &[u8], value: &'a [u8]) -> Result<Vec<(ObjectId, &'a [u8])>> {
    let corrupt = |reason: &str| TraceError::Corrupt {
        key: key_name(key),
        reason: reason.into(),
    };
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        if rest.len() < 36 {
            return Err(corrupt("truncated chunk entry header"));
        }
        let (head, tail) = rest.split_at(36);
        let id = id_from(&head[..32], key)?;
        let len = u32::from_be_bytes(head[32..36].try_into().map_err(|_| corrupt("bad length"))?)
            as usize;
        if len > tail.len() || len > pvl_protocol::MAX_OBJECT_SIZE {
            return Err(corrupt("chunk entry length beyond the value"));
        }
        let (bytes, tail) = tail.split_at(len);
        out.push((id, bytes));
        rest = tail;
    }
    if out.is_empty() {
        return Err(corrupt("empty chunk"));
    }
    Ok(out)
}

fn is_countersigned_wire(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x83)
}

pub(crate) fn id_from(bytes: &[u8], key: &[u8]) -> Result<ObjectId> {
    bytes
        .try_into()
        .map(ObjectId)
        .map_err(|_| TraceError::Corrupt {
            key: key_name(key),
            reason: "malformed key".into(),
        })
}

/// How often opening a store retries a directory lock that is still held (see
/// [`TraceStore::open_with`]), and how long it waits between tries.
const LOCK_TRIES: u32 = 80;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(25);

/// Opens a sled database, waiting for the directory lock: sled's background threads let go of
/// it a moment after the store that held it in this process is closed, so a store reopened at
/// once may find it held for a few milliseconds. Another process holding it keeps it for good,
/// and the error then comes after the last try. Also what tests use to reach the raw database
/// of a store they just dropped (`testkit::open_sled`).
pub(crate) fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let mut tries = 0;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock") && tries < LOCK_TRIES =>
            {
                tries += 1;
                std::thread::sleep(LOCK_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

impl TraceStore {
    /// Opens (or creates) the store at `path` with the default configuration.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreConfig::default())
    }

    /// Opens (or creates) the store at `path`.
    ///
    /// Fails with [`TraceError::SchemaMismatch`] if the store was written with another schema.
    pub fn open_with(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        let mode = if config.low_space {
            sled::Mode::LowSpace
        } else {
            sled::Mode::HighThroughput
        };
        let sled_config = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(
                config
                    .durability
                    .flush_every
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            )
            .mode(mode);
        let db = open_sled(&sled_config)?;
        let tree = db.open_tree(TREE)?;
        match tree.get(META_SCHEMA)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| TraceError::Corrupt {
                        key: key_name(META_SCHEMA),
                        reason: format!("{} bytes, expected 4", v.len()),
                    })?;
                if !(SCHEMA_V1..=SCHEMA_VERSION).contains(&found) {
                    return Err(TraceError::SchemaMismatch {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                if tree.first()?.is_some() {
                    return Err(TraceError::Corrupt {
                        key: key_name(META_SCHEMA),
                        reason: "store has data but no schema version".into(),
                    });
                }
                tree.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        // Not closed on drop until it is open: a repair cut short by an error must run again.
        let mut store = TraceStore {
            db,
            tree,
            durability: Durability {
                flush_on_drop: false,
                ..config.durability
            },
            write_lock: Mutex::new(WriterState::default()),
        };
        // The migrations first (each can be repeated, and neither needs a torn insert call
        // completed: they read only what a call writes after the keys it points to), then the
        // crash repair, which knows the current schema only.
        if store.meta_u32(META_SCHEMA)? == SCHEMA_V1 {
            let chunks = store.migrate_v1()?;
            info!(path = %path.as_ref().display(), chunks, "trace store migrated to schema 2");
        }
        if store.meta_u32(META_SCHEMA)? == SCHEMA_V2 {
            let objects = store.migrate_v2()?;
            info!(path = %path.as_ref().display(), objects, "trace store migrated to schema 3");
        }
        if store.meta_u32(META_SCHEMA)? == SCHEMA_V3 {
            let removed = store.migrate_v3()?;
            info!(path = %path.as_ref().display(), removed, "trace store migrated to schema 4");
        }
        if store.tree.contains_key(META_OPEN)? {
            let indexed = store.repair()?;
            warn!(
                path = %path.as_ref().display(),
                indexed,
                "trace store was not closed (crash?): completed its last insert"
            );
        }
        store.tree.insert(META_OPEN, &[][..])?;
        store.db.flush()?;
        let (awaited, missing) = store.load_awaited(0)?;
        let next_chunk = store.first_free_chunk()?;
        *store.write_lock.lock().unwrap_or_else(|e| e.into_inner()) = WriterState {
            missing,
            count: store.meta_u64(META_COUNT)?,
            next_chunk,
            known: None,
            awaited,
        };
        store.durability = config.durability;
        info!(path = %path.as_ref().display(), orphans = missing, "trace store opened");
        Ok(store)
    }

    /// Inserts one verified object. See [`TraceStore::insert_batch`].
    pub fn insert(&self, object: &SignedObject) -> Result<InsertOutcome> {
        let mut out = self.insert_batch(std::slice::from_ref(object))?;
        Ok(out.pop().unwrap_or(InsertOutcome::Duplicate))
    }

    /// Decodes and verifies `bytes`, then inserts the object.
    pub fn insert_bytes(&self, bytes: &[u8]) -> Result<InsertOutcome> {
        let object = SignedObject::decode(bytes)?;
        self.insert(&object)
    }

    /// Decodes many objects with ed25519 batch verification and inserts the valid ones in one
    /// batch. Each input gets its own result: the outcome, or why it was refused.
    pub fn insert_bytes_batch(&self, inputs: &[&[u8]]) -> Result<Vec<Result<InsertOutcome>>> {
        let decoded = SignedObject::decode_batch(inputs);
        let valid: Vec<SignedObject> = decoded.iter().filter_map(|r| r.clone().ok()).collect();
        let mut outcomes = self.insert_batch(&valid)?.into_iter();
        Ok(decoded
            .into_iter()
            .map(|r| match r {
                Ok(_) => outcomes.next().ok_or_else(|| TraceError::Corrupt {
                    key: "<batch>".into(),
                    reason: "missing outcome".into(),
                }),
                Err(e) => Err(TraceError::Invalid(e)),
            })
            .collect())
    }

    /// Inserts already verified objects.
    ///
    /// Idempotent: an id already stored is a [`InsertOutcome::Duplicate`], except that a
    /// countersigned receipt replaces a stored bare receipt ([`InsertOutcome::Upgraded`]).
    /// Parents need not be stored yet: the missing parent is recorded under `x/` and the
    /// entry is removed when the parent arrives. New objects are written as chunks (several
    /// objects of one trace in one sled value, see the crate docs).
    ///
    /// The keys are written one by one, each after the keys it points to, not as one
    /// `sled::Batch`: sled makes a batch atomic by sealing its log buffer before and after it,
    /// which wrote and synced the log twice per call (about 270 µs of CPU per call against
    /// 70 µs for the same keys written singly, measured on this machine). Readers see a store
    /// that is consistent at every step, and a crash is repaired at the next open.
    pub fn insert_batch(&self, objects: &[SignedObject]) -> Result<Vec<InsertOutcome>> {
        let mut guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *guard;
        let mut known = match state.known.take() {
            Some(known) if !known.is_full() => known,
            old => self.load_known(state.count, old)?,
        };
        let planned = match self.plan_insert(objects, state, &known) {
            Ok(planned) => planned,
            Err(e) => {
                state.known = Some(known);
                return Err(e);
            }
        };
        STORE_KEYS.fetch_add(planned.ops.len() as u64, Ordering::Relaxed);
        // Chunk numbers are never handed out twice, even if a write below fails.
        state.next_chunk = planned.next_chunk;
        // Into the filters before any write: a call that fails may leave any of them stored,
        // and a filter must never deny a stored id or an awaited parent.
        for (id, _) in &planned.stored {
            known.add_to_filter(id);
        }
        for parent in &planned.awaited {
            state.awaited.add_to_filter(parent);
        }
        for op in planned.ops {
            if let Err(e) = op.apply(&self.tree) {
                state.known = Some(known);
                // Some of the call's objects may be indexed: count what is stored.
                state.count = self.count_objects()?;
                return Err(e);
            }
        }
        for (id, countersigned) in planned.stored {
            known.remember(id, countersigned);
        }
        state.known = Some(known);
        state.count = planned.count;
        let written = planned
            .outcomes
            .iter()
            .filter(|o| **o != InsertOutcome::Duplicate)
            .count() as u64;
        STORE_WRITES.fetch_add(written, Ordering::Relaxed);
        STORE_BATCHES.fetch_add(1, Ordering::Relaxed);
        debug!(objects = objects.len(), written, "insert batch applied");
        state.missing = (state.missing + planned.waits_added).saturating_sub(planned.waits_removed);
        if state.awaited.is_full() {
            let room = state.missing.max(state.awaited.bits() / known::BITS_PER_ID);
            (state.awaited, state.missing) = self.load_awaited(room)?;
        }
        if self.durability.flush_each_batch {
            self.tree.flush()?;
        }
        Ok(planned.outcomes)
    }

    /// A filter of the parents the `x/` entries wait for, with room for `room` of them (or,
    /// when they are more, for twice as many: one more scan), and the number of entries.
    fn load_awaited(&self, room: u64) -> Result<(KnownIds, u64)> {
        let mut awaited = KnownIds::with_room_for(room);
        let mut entries = 0u64;
        for key in self.tree.scan_prefix([P_MISSING]).keys() {
            let key = key?;
            awaited.add_to_filter(&id_from(key.get(1..33).unwrap_or(&[]), &key)?);
            entries += 1;
        }
        if awaited.is_full() {
            return self.load_awaited(entries);
        }
        Ok((awaited, entries))
    }

    /// A filter of the ids stored (a scan of the object index), sized for `count` objects or
    /// twice those `old` was sized for, and `old`'s recent ids.
    fn load_known(&self, count: u64, old: Option<KnownIds>) -> Result<KnownIds> {
        let room = count.max(old.as_ref().map_or(0, |k| k.bits() / known::BITS_PER_ID));
        let mut known = KnownIds::with_room_for(room);
        let mut ids = 0u64;
        for key in self.tree.scan_prefix([P_OBJECT]).keys() {
            let key = key?;
            known.add_to_filter(&suffix_id(&key)?);
            ids += 1;
        }
        if let Some(old) = old {
            old.hand_recent_to(&mut known);
        }
        debug!(ids, bits = known.bits(), "stored-id filter built");
        Ok(known)
    }

    /// What inserting `objects` writes, in order, given the writer's `state` and `known` ids.
    fn plan_insert(
        &self,
        objects: &[SignedObject],
        state: &WriterState,
        known: &KnownIds,
    ) -> Result<Planned> {
        let missing_entries = state.missing;
        // With few orphans waiting, one scan of them per batch beats one lookup per object.
        let scan_all = missing_entries <= objects.len() as u64;
        let mut writes = Writes::default();
        let mut outcomes = Vec::with_capacity(objects.len());
        // id -> countersigned, for objects accepted earlier in this batch.
        let mut in_batch: HashMap<ObjectId, bool> = HashMap::new();
        let mut missing: Vec<(ObjectId, ObjectId)> = Vec::new();
        let mut groups: Vec<(TraceId, Vec<&SignedObject>)> = Vec::new();
        let mut group_of: HashMap<TraceId, usize> = HashMap::new();
        let mut new_count = 0u64;
        for object in objects {
            let id = object.id();
            let okey = key2(P_OBJECT, &id.0, &[]);
            let existing = match in_batch.get(&id).copied().or_else(|| known.recent(&id)) {
                Some(cs) => Some(cs),
                None if !known.may_contain(&id) => None,
                None => match self.tree.get(&okey)? {
                    Some(v) => Some(decode_slot(&okey, &v)?.1),
                    None => None,
                },
            };
            let cs = object.is_countersigned();
            let outcome = match existing {
                Some(true) => InsertOutcome::Duplicate,
                Some(false) if !cs => InsertOutcome::Duplicate,
                Some(false) => {
                    debug!(%id, "bare receipt upgraded to countersigned");
                    InsertOutcome::Upgraded
                }
                None => {
                    for parent in object.parents() {
                        if !in_batch.contains_key(parent)
                            && known.recent(parent).is_none()
                            && (!known.may_contain(parent)
                                || !self.tree.contains_key(key2(P_OBJECT, &parent.0, &[]))?)
                        {
                            missing.push((*parent, id));
                        }
                    }
                    // Children that arrived before this object: their wait is over.
                    if !scan_all && state.awaited.may_contain(&id) {
                        for entry in self.tree.scan_prefix(key2(P_MISSING, &id.0, &[])) {
                            let (k, _) = entry?;
                            writes.waits_over.push(k);
                        }
                    }
                    new_count += 1;
                    InsertOutcome::Inserted
                }
            };
            if outcome != InsertOutcome::Duplicate {
                in_batch.insert(id, cs);
                let trace = object.trace_id();
                let g = *group_of.entry(trace).or_insert_with(|| {
                    groups.push((trace, Vec::new()));
                    groups.len() - 1
                });
                if let Some((_, members)) = groups.get_mut(g) {
                    // An upgrade within the batch replaces the earlier bare copy.
                    members.retain(|m| m.id() != id);
                    members.push(object);
                }
            }
            outcomes.push(outcome);
        }
        if scan_all && missing_entries > 0 {
            for entry in self.tree.scan_prefix([P_MISSING]) {
                let (k, _) = entry?;
                let parent = id_from(k.get(1..33).unwrap_or(&[]), &k)?;
                if in_batch.contains_key(&parent) {
                    writes.waits_over.push(k);
                }
            }
        }
        let first_chunk = state.next_chunk;
        let mut next_chunk = first_chunk;
        let mut call_traces = Vec::new();
        for (trace, members) in &groups {
            for part in split_chunks(members) {
                let chunk = next_chunk;
                next_chunk += 1;
                call_traces.push(*trace);
                writes
                    .chunks
                    .push((chunk_key(trace, chunk), encode_chunk(part)));
                writes.indexes.extend(index_entries(
                    trace,
                    chunk,
                    part.iter()
                        .map(|o| (o.timestamp_ms(), o.signer(), o.kind().code())),
                ));
                let location = Location {
                    trace: *trace,
                    chunk,
                };
                for o in part {
                    writes.objects.push((
                        key2(P_OBJECT, &o.id().0, &[]),
                        encode_slot(location, o.is_countersigned()),
                    ));
                }
            }
        }
        let mut added = 0u64;
        let mut awaited = Vec::new();
        for (parent, child) in missing {
            if !in_batch.contains_key(&parent) {
                debug!(%child, %parent, "parent not yet known; kept as orphan");
                writes.waits.push(key2(P_MISSING, &parent.0, &child.0));
                awaited.push(parent);
                added += 1;
            }
        }
        let waits_removed = writes.waits_over.len() as u64;
        if !call_traces.is_empty() {
            writes.call = Some(encode_call(first_chunk, &call_traces));
        }
        let count = state.count + new_count;
        Ok(Planned {
            outcomes,
            ops: writes.into_ops(),
            stored: in_batch.into_iter().collect(),
            awaited,
            waits_added: added,
            waits_removed,
            count,
            next_chunk,
        })
    }

    /// Writes only the first `n` keys of inserting `objects` and leaves the store marked
    /// open, as a crash at that point would: for tests of the repair at open.
    #[cfg(test)]
    fn insert_cut_short(&mut self, objects: &[SignedObject], n: usize) -> Result<usize> {
        let state = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let known = self.load_known(state.count, None)?;
        let planned = self.plan_insert(objects, &state, &known)?;
        drop(state);
        let total = planned.ops.len();
        for op in planned.ops.into_iter().take(n) {
            op.apply(&self.tree)?;
        }
        self.durability.flush_on_drop = false;
        Ok(total)
    }

    /// Completes what a crash may have left half written: the keys of the last insert call
    /// (see "Crash safety" in the crate docs). Called by [`TraceStore::open_with`] when the
    /// store was not closed, before anything else reads or writes it.
    ///
    /// The chunks that call wrote are the ones its `v/call` key names (it is written first):
    /// each that was written gets its index entries, its objects' `o/` entries (unless a
    /// countersigned copy is already indexed) and the `x/` entries of their missing parents; a
    /// chunk not written is skipped, and its number is not used again. Then `x/` entries whose
    /// parent is stored or whose child is not are removed, and the object count is set from
    /// what is stored (a scan of the object index). Returns the number of objects it indexed.
    fn repair(&self) -> Result<u64> {
        let mut indexed = 0u64;
        let (first, traces) = match self.tree.get(META_CALL)?.map(|v| decode_call(&v)) {
            Some(Ok(call)) => call,
            // Like a chunk that does not read back (below): left for reads to report, and
            // the store must still open.
            Some(Err(e)) => {
                warn!(error = %e, "crash repair: the last insert call is not readable");
                (0, Vec::new())
            }
            None => (0, Vec::new()),
        };
        for (chunk, trace) in (first..).zip(traces) {
            let ckey = chunk_key(&trace, chunk);
            let Some(value) = self.tree.get(&ckey)? else {
                continue;
            };
            // A chunk that does not read back is left as it is: reads report it as corrupt,
            // and the store must still open.
            let headers = parse_chunk(&ckey, &value).and_then(|list| {
                list.into_iter()
                    .map(|(id, bytes)| check_light(&ckey, bytes, &id).map(|h| (id, h)))
                    .collect::<Result<Vec<_>>>()
            });
            let headers = match headers {
                Ok(headers) => headers,
                Err(e) => {
                    warn!(error = %e, "crash repair: chunk left as it is");
                    continue;
                }
            };
            let location = Location { trace, chunk };
            let mut members = Vec::new();
            for (id, header) in headers {
                members.push((header.timestamp_ms, header.signer, header.kind.code()));
                for parent in &header.parents {
                    if !self.tree.contains_key(key2(P_OBJECT, &parent.0, &[]))? {
                        self.tree
                            .insert(key2(P_MISSING, &parent.0, &id.0), &[][..])?;
                    }
                }
                let okey = key2(P_OBJECT, &id.0, &[]);
                let indexed_cs = match self.tree.get(&okey)? {
                    Some(v) => match decode_slot(&okey, &v) {
                        Ok((_, cs)) => Some(cs),
                        // A broken location is reported when the object is read.
                        Err(_) => continue,
                    },
                    None => None,
                };
                if indexed_cs.is_none() || (indexed_cs == Some(false) && header.countersigned) {
                    self.tree
                        .insert(okey, &encode_slot(location, header.countersigned)[..])?;
                    indexed += 1;
                }
            }
            for (key, value) in index_entries(&trace, chunk, members.into_iter()) {
                self.tree.insert(key, value)?;
            }
        }
        for entry in self.tree.scan_prefix([P_MISSING]) {
            let (k, _) = entry?;
            let (Ok(parent), Ok(child)) = (id_from(k.get(1..33).unwrap_or(&[]), &k), suffix_id(&k))
            else {
                continue;
            };
            if self.contains(&parent)? || !self.contains(&child)? {
                self.tree.remove(&k)?;
            }
        }
        let count = self.count_objects()?;
        self.tree.insert(META_COUNT, &count.to_be_bytes())?;
        Ok(indexed)
    }

    /// The number of objects stored, counted: a scan of the object index.
    fn count_objects(&self) -> Result<u64> {
        let mut count = 0u64;
        for key in self.tree.scan_prefix([P_OBJECT]).keys() {
            key?;
            count += 1;
        }
        Ok(count)
    }

    /// The first chunk number no chunk has: after the last insert call's chunks (`v/call`),
    /// or, when that key is missing from a store with chunks or does not read (a damaged
    /// store), after the highest chunk number stored (a scan of the chunk keys), so that no
    /// chunk is ever overwritten.
    fn first_free_chunk(&self) -> Result<u64> {
        match self.tree.get(META_CALL)?.map(|v| decode_call(&v)) {
            Some(Ok((first, traces))) => return Ok(first.saturating_add(traces.len() as u64)),
            Some(Err(e)) => warn!(error = %e, "next chunk number found by a scan instead"),
            None => {}
        }
        let mut next = 0u64;
        for key in self.tree.scan_prefix([P_TRACE]).keys() {
            let key = key?;
            if let Some(chunk) = key.get(33..41).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
                next = next.max(u64::from_be_bytes(chunk).saturating_add(1));
            }
        }
        Ok(next)
    }

    /// Makes everything inserted so far durable; returns the number of bytes flushed.
    pub fn flush(&self) -> Result<usize> {
        Ok(self.tree.flush()?)
    }

    /// Flushes and closes the store.
    pub fn close(self) -> Result<()> {
        self.flush()?;
        Ok(())
    }

    /// Migrates a schema 1 store to schema 2: every time-index (`m/`) value gets the kinds of
    /// its chunk's objects, then the `k/` keys are removed and the schema version is written.
    /// Each step can be repeated, so a migration cut short by a crash completes at the next
    /// open. Returns the number of time-index entries rewritten.
    fn migrate_v1(&self) -> Result<u64> {
        let mut rewritten = 0u64;
        for entry in self.tree.scan_prefix([P_TIME]) {
            let (k, v) = entry?;
            if v.len() != 8 {
                continue;
            }
            let mut ckey = vec![P_TRACE];
            ckey.extend_from_slice(k.get(k.len().saturating_sub(40)..).unwrap_or(&[]));
            // A chunk that is gone or does not read is reported by reads, as before.
            let Some(value) = self.tree.get(&ckey)? else {
                continue;
            };
            let Ok(list) = parse_chunk(&ckey, &value) else {
                continue;
            };
            let mut kinds = 0u64;
            for (id, bytes) in list {
                if let Ok(header) = check_light(&ckey, bytes, &id) {
                    kinds |= kind_bit(header.kind.code());
                }
            }
            let mut new = v.to_vec();
            new.extend_from_slice(&kinds.to_be_bytes());
            self.tree.insert(k, new)?;
            rewritten += 1;
        }
        self.remove_prefix(P_KIND_V1)?;
        self.finish_migration(SCHEMA_V2)?;
        Ok(rewritten)
    }

    /// Migrates a schema 2 store to schema 3, in steps that can each be repeated (a migration
    /// cut short by a crash completes at the next open):
    ///
    /// 1. `v/call` is written from the `v/chunk` counter and the chunk claims at or past it
    ///    (the insert call a crash may have torn: [`TraceStore::repair`] then completes it);
    /// 2. every 9-byte `o/` value gets its chunk's trace, read from the chunk's claim;
    /// 3. `v/chunk` and then the `c/` claims are removed, and the schema version is written.
    ///
    /// Returns the number of `o/` values rewritten.
    fn migrate_v2(&self) -> Result<u64> {
        if self.tree.contains_key(META_CHUNK_V2)? {
            let next = self.meta_u64(META_CHUNK_V2)?;
            let mut torn = Vec::new();
            for entry in self
                .tree
                .range(key2(P_CHUNK_V2, &next.to_be_bytes(), &[])..[P_CHUNK_V2 + 1].to_vec())
            {
                let (k, v) = entry?;
                let (Ok(chunk), Ok(trace)) = (claimed_chunk(&k), id_from(&v, &k)) else {
                    break;
                };
                if chunk != next + torn.len() as u64 {
                    break;
                }
                torn.push(trace);
            }
            self.tree.insert(META_CALL, encode_call(next, &torn))?;
        }
        let mut rewritten = 0u64;
        for entry in self.tree.scan_prefix([P_OBJECT]) {
            let (k, v) = entry?;
            // A value of another length is left for reads to report.
            let Some((chunk, flags)) = decode_slot_v2(&v) else {
                continue;
            };
            let claim = key2(P_CHUNK_V2, &chunk.to_be_bytes(), &[]);
            let Some(trace) = self.tree.get(&claim)? else {
                continue;
            };
            let Ok(trace) = id_from(&trace, &claim) else {
                continue;
            };
            let location = Location { trace, chunk };
            let value = encode_slot(location, flags & FLAG_COUNTERSIGNED != 0);
            self.tree.insert(k, &value[..])?;
            rewritten += 1;
        }
        // The counter first: once it is gone, a repeated migration keeps the `v/call` above.
        self.tree.remove(META_CHUNK_V2)?;
        self.remove_prefix(P_CHUNK_V2)?;
        self.finish_migration(SCHEMA_V3)?;
        Ok(rewritten)
    }

    /// Migrates a schema 3 store to schema 4: every signer index (`s/`) entry is replaced by
    /// the entry the receipts of its chunk by its signer give (their time span), or removed
    /// when the chunk holds none. Each entry's step can be repeated, so a migration cut short
    /// by a crash completes at the next open. An entry that does not parse, or names a chunk
    /// that is gone or does not read, is left for reads and integrity checks to report.
    /// Returns the number of entries removed.
    fn migrate_v3(&self) -> Result<u64> {
        let receipt = Kind::Receipt.code();
        let mut removed = 0u64;
        for entry in self.tree.scan_prefix([P_SIGNER]) {
            let (k, v) = entry?;
            // s signer(32) min_ts(8) trace(32) chunk(8)
            if k.len() != 81 {
                continue;
            }
            let ckey = [&[P_TRACE][..], &k[41..]].concat();
            let Some(value) = self.tree.get(&ckey)? else {
                continue;
            };
            let Ok(list) = parse_chunk(&ckey, &value) else {
                continue;
            };
            let mut span: Option<(u64, u64)> = None;
            for (id, bytes) in list {
                if let Ok(h) = check_light(&ckey, bytes, &id)
                    && h.kind.code() == receipt
                    && h.signer.0[..] == k[1..33]
                {
                    widen(&mut span, h.timestamp_ms);
                }
            }
            let wanted = span.map(|(lo, hi)| {
                let key = [&k[..33], &lo.to_be_bytes()[..], &k[41..]].concat();
                (key, hi.to_be_bytes())
            });
            match wanted {
                Some((key, hi)) if key[..] == k[..] && hi[..] == v[..] => {}
                Some((key, hi)) => {
                    self.tree.insert(key, &hi[..])?;
                    self.tree.remove(&k)?;
                }
                None => {
                    self.tree.remove(&k)?;
                    removed += 1;
                }
            }
        }
        self.finish_migration(SCHEMA_VERSION)?;
        Ok(removed)
    }

    /// Removes every key under `prefix` (an index an older schema had).
    fn remove_prefix(&self, prefix: u8) -> Result<()> {
        for key in self.tree.scan_prefix([prefix]).keys() {
            self.tree.remove(key?)?;
        }
        Ok(())
    }

    /// The last step of a migration: the store's schema version is `schema`, durably.
    fn finish_migration(&self, schema: u32) -> Result<()> {
        self.tree.insert(META_SCHEMA, &schema.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// A stored counter of `N` bytes (big-endian), all zeros when absent.
    fn meta<const N: usize>(&self, key: &[u8]) -> Result<[u8; N]> {
        match self.tree.get(key)? {
            None => Ok([0; N]),
            Some(v) => <[u8; N]>::try_from(v.as_ref()).map_err(|_| TraceError::Corrupt {
                key: key_name(key),
                reason: format!("{} bytes, expected {N}", v.len()),
            }),
        }
    }

    fn meta_u32(&self, key: &[u8]) -> Result<u32> {
        self.meta(key).map(u32::from_be_bytes)
    }

    fn meta_u64(&self, key: &[u8]) -> Result<u64> {
        self.meta(key).map(u64::from_be_bytes)
    }

    /// Number of distinct objects stored.
    pub fn object_count(&self) -> Result<u64> {
        Ok(self
            .write_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .count)
    }

    /// Bytes the database occupies on disk (as reported by sled).
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Whether object `id` is stored.
    pub fn contains(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.tree.contains_key(key2(P_OBJECT, &id.0, &[]))?)
    }

    pub(crate) fn location(&self, id: &ObjectId) -> Result<Option<Location>> {
        let key = key2(P_OBJECT, &id.0, &[]);
        let Some(v) = self.tree.get(&key)? else {
            return Ok(None);
        };
        Ok(Some(decode_slot(&key, &v)?.0))
    }

    /// The trace object `id` belongs to, if stored.
    pub fn trace_of(&self, id: &ObjectId) -> Result<Option<TraceId>> {
        Ok(self.location(id)?.map(|l| l.trace))
    }

    /// The stored traces whose id starts with the hex digits `prefix` (any length, any case),
    /// at most `limit` of them, in id order. For commands and routes that accept an id prefix:
    /// exactly one match resolves it, more than one makes it ambiguous. Digits that are not
    /// hex match nothing.
    pub fn traces_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<TraceId>> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Vec::new());
        }
        let whole = &prefix[..prefix.len() / 2 * 2];
        let bytes = hex::decode(whole).unwrap_or_default();
        let mut found: Vec<TraceId> = Vec::new();
        for entry in self.tree.scan_prefix(key2(P_TRACE, &bytes, &[])) {
            let (key, _) = entry?;
            let Some(raw) = key.get(1..33) else { continue };
            let trace = id_from(raw, &key)?;
            if found.last() == Some(&trace) || !trace.to_string().starts_with(&prefix) {
                continue;
            }
            found.push(trace);
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// The sled key of the chunk holding object `id` (for tools and tests that inspect the
    /// raw store; see the key layout in the crate docs).
    pub fn chunk_key_of(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        Ok(self.location(id)?.map(|l| chunk_key(&l.trace, l.chunk)))
    }

    /// The stored entry of `id`: read from its chunk, parsed and checked to hash to `id`.
    fn entry(&self, id: &ObjectId) -> Result<Option<Entry>> {
        let Some(loc) = self.location(id)? else {
            return Ok(None);
        };
        let key = chunk_key(&loc.trace, loc.chunk);
        let Some(value) = self.tree.get(&key)? else {
            return Err(TraceError::Corrupt {
                key: key_name(&key),
                reason: format!("object {id} is indexed in a chunk that is missing"),
            });
        };
        let found = parse_chunk(&key, &value)?
            .into_iter()
            .find(|(eid, _)| eid == id)
            .map(|(_, b)| b.to_vec());
        match found {
            Some(bytes) => Ok(Some(Entry {
                key: IVec::from(key),
                id: *id,
                bytes,
            })),
            None => Err(TraceError::Corrupt {
                key: key_name(&key),
                reason: format!("chunk does not hold object {id}"),
            }),
        }
    }

    /// The stored wire bytes of `id`, checked to parse and hash to `id` (signature not checked).
    pub fn get_bytes(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        match self.entry(id)? {
            None => Ok(None),
            Some(e) => {
                check_light(&e.key, &e.bytes, id)?;
                Ok(Some(e.bytes))
            }
        }
    }

    /// The object `id`, fully decoded and signature-verified.
    pub fn get(&self, id: &ObjectId) -> Result<Option<SignedObject>> {
        match self.entry(id)? {
            None => Ok(None),
            Some(e) => decode_checked(&e.key, &e.bytes, id).map(Some),
        }
    }

    /// Raw chunks of one trace, in chunk order.
    pub(crate) fn trace_chunks(&self, trace: &TraceId) -> Result<Vec<(IVec, IVec)>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(key2(P_TRACE, &trace.0, &[])) {
            out.push(entry?);
        }
        Ok(out)
    }

    /// One trace's stored objects, one entry per id (a countersigned copy wins over a bare
    /// one left in an older chunk). Fails on a chunk whose framing is broken.
    pub(crate) fn trace_entries(&self, trace: &TraceId) -> Result<Vec<Entry>> {
        let (entries, broken) = self.trace_entries_lenient(trace)?;
        match broken.into_iter().next() {
            Some((_, err)) => Err(err),
            None => Ok(entries),
        }
    }

    /// Like `trace_entries`, but chunks whose framing is broken are returned apart, with the
    /// error, instead of failing the whole read.
    pub(crate) fn trace_entries_lenient(
        &self,
        trace: &TraceId,
    ) -> Result<(Vec<Entry>, Vec<BrokenChunk>)> {
        let mut out: Vec<Entry> = Vec::new();
        let mut broken = Vec::new();
        let mut index: HashMap<ObjectId, usize> = HashMap::new();
        for (key, value) in self.trace_chunks(trace)? {
            let list = match parse_chunk(&key, &value) {
                Ok(list) => list,
                Err(e) => {
                    broken.push((key.clone(), e));
                    continue;
                }
            };
            for (id, bytes) in list {
                match index.get(&id).and_then(|&i| out.get_mut(i)) {
                    Some(existing) => {
                        if is_countersigned_wire(bytes) && !is_countersigned_wire(&existing.bytes) {
                            existing.bytes = bytes.to_vec();
                            existing.key = key.clone();
                        }
                    }
                    None => {
                        index.insert(id, out.len());
                        out.push(Entry {
                            key: key.clone(),
                            id,
                            bytes: bytes.to_vec(),
                        });
                    }
                }
            }
        }
        Ok((out, broken))
    }

    /// Ids whose object index points to chunk `key` (a full scan of the object index: only
    /// used to name the objects of an unreadable chunk).
    pub(crate) fn ids_in_chunk(&self, key: &[u8]) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix([P_OBJECT]) {
            let (k, v) = entry?;
            // A broken location is reported when that object is read; skip it here.
            let Ok((location, _)) = decode_slot(&k, &v) else {
                continue;
            };
            if chunk_key(&location.trace, location.chunk) == key {
                out.push(suffix_id(&k)?);
            }
        }
        Ok(out)
    }

    /// All objects of a trace, decoded, in time order. Signatures are not checked again (the
    /// store holds only verified objects; [`TraceStore::verify_trace`] re-checks them): reads
    /// for display and analysis cost a parse, not an ed25519 verification per object.
    pub fn trace_objects(&self, trace: &TraceId) -> Result<Vec<SignedObject>> {
        let entries = self.trace_entries(trace)?;
        if entries.is_empty() {
            return Err(TraceError::UnknownTrace(*trace));
        }
        let decoded = entries
            .iter()
            .map(|e| SignedObject::decode_trusted(&e.bytes));
        let mut out = Vec::with_capacity(entries.len());
        for (e, result) in entries.iter().zip(decoded) {
            let object = result.map_err(|err| TraceError::Corrupt {
                key: key_name(&e.key),
                reason: format!("object {}: {err}", e.id),
            })?;
            if object.id() != e.id {
                return Err(TraceError::Corrupt {
                    key: key_name(&e.key),
                    reason: format!("object stored as {} has id {}", e.id, object.id()),
                });
            }
            out.push(object);
        }
        out.sort_by_key(|o| (o.timestamp_ms(), o.id()));
        Ok(out)
    }

    /// Ids of the children of `parent` (objects naming it as a parent), whether or not the
    /// parent itself is stored. Edges are kept inside traces (the protocol requires a parent
    /// to be in its child's trace): the parent's trace, or for a missing parent the traces of
    /// the children waiting for it, is read back and its parent lists inverted.
    pub fn children(&self, parent: &ObjectId) -> Result<Vec<ObjectId>> {
        let mut traces: Vec<TraceId> = Vec::new();
        if let Some(t) = self.trace_of(parent)? {
            traces.push(t);
        }
        for entry in self.tree.scan_prefix(key2(P_MISSING, &parent.0, &[])) {
            let (k, _) = entry?;
            if let Some(t) = self.trace_of(&suffix_id(&k)?)?
                && !traces.contains(&t)
            {
                traces.push(t);
            }
        }
        let mut out = Vec::new();
        for t in traces {
            for e in self.trace_entries(&t)? {
                let light = check_light(&e.key, &e.bytes, &e.id)?;
                if light.parents.contains(parent) {
                    out.push(e.id);
                }
            }
        }
        Ok(out)
    }

    /// Objects whose parents are not (yet) stored, as `(child, missing parent)` pairs.
    pub fn orphans(&self) -> Result<Vec<(ObjectId, ObjectId)>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix([P_MISSING]) {
            let (k, _) = entry?;
            let parent = id_from(k.get(1..33).unwrap_or(&[]), &k)?;
            let child = id_from(k.get(33..65).unwrap_or(&[]), &k)?;
            out.push((child, parent));
        }
        Ok(out)
    }

    /// Objects of the chunks named by index keys in `entries`, filtered by `keep`, as
    /// `(timestamp, id)` sorted oldest first without duplicates.
    fn collect_from_chunks(
        &self,
        entries: impl Iterator<Item = sled::Result<(IVec, IVec)>>,
        from_ms: u64,
        mut keep: impl FnMut(&Header) -> bool,
    ) -> Result<Vec<ObjectId>> {
        let mut found: Vec<(u64, ObjectId)> = Vec::new();
        let mut seen: HashSet<ObjectId> = HashSet::new();
        let mut chunks_seen: HashSet<Vec<u8>> = HashSet::new();
        for entry in entries {
            let (k, v) = entry?;
            let (max_ts, _) = index_value(&k, &v)?;
            if max_ts < from_ms || k.len() < 40 {
                continue;
            }
            let mut ckey = vec![P_TRACE];
            ckey.extend_from_slice(&k[k.len() - 40..]);
            if !chunks_seen.insert(ckey.clone()) {
                continue;
            }
            let Some(value) = self.tree.get(&ckey)? else {
                return Err(TraceError::Corrupt {
                    key: key_name(&k),
                    reason: "index entry names a missing chunk".into(),
                });
            };
            for (id, bytes) in parse_chunk(&ckey, &value)? {
                let light = check_light(&ckey, bytes, &id)?;
                if keep(&light) && seen.insert(id) {
                    found.push((light.timestamp_ms, id));
                }
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// Ids of the receipts signed by `signer` (a provider), oldest first, at most `limit`.
    ///
    /// Walks the signer index, which has entries for receipts only (schema 4): one for every
    /// signer of every chunk cost a sled write per signer per chunk, about a fifth of the keys
    /// a contract-net round wrote, for a query nothing asked for.
    pub fn receipts_by_signer(&self, signer: &PublicKey, limit: usize) -> Result<Vec<ObjectId>> {
        let mut ids = self.collect_from_chunks(
            self.tree.scan_prefix(key2(P_SIGNER, &signer.0, &[])),
            0,
            |l| l.signer == *signer && l.kind == Kind::Receipt,
        )?;
        ids.truncate(limit);
        Ok(ids)
    }

    /// Ids of objects of `kind` with `from_ms <= timestamp < to_ms`, oldest first.
    ///
    /// Walks the time index over the range and reads only the chunks whose kinds include
    /// `kind`.
    pub fn by_kind(&self, kind: Kind, from_ms: u64, to_ms: u64) -> Result<Vec<ObjectId>> {
        let lo = vec![P_TIME];
        let hi = key2(P_TIME, &to_ms.to_be_bytes(), &[]);
        let bit = kind_bit(kind.code());
        let entries = self.tree.range(lo..hi).filter(|entry| match entry {
            // A malformed value is kept, for `collect_from_chunks` to report.
            Ok((k, v)) => match index_value(k, v) {
                Ok((_, Some(kinds))) => kinds & bit != 0,
                _ => true,
            },
            Err(_) => true,
        });
        self.collect_from_chunks(entries, from_ms, |l| {
            l.kind == kind && l.timestamp_ms >= from_ms && l.timestamp_ms < to_ms
        })
    }

    /// Ids of objects with `from_ms <= timestamp < to_ms`, oldest first.
    pub fn by_time(&self, from_ms: u64, to_ms: u64) -> Result<Vec<ObjectId>> {
        let lo = vec![P_TIME];
        let hi = key2(P_TIME, &to_ms.to_be_bytes(), &[]);
        self.collect_from_chunks(self.tree.range(lo..hi), from_ms, |l| {
            l.timestamp_ms >= from_ms && l.timestamp_ms < to_ms
        })
    }

    /// Trace ids of the most recently started chunks, newest first (may repeat a trace).
    pub(crate) fn recent_trace_ids(&self) -> impl Iterator<Item = Result<TraceId>> + '_ {
        self.tree.scan_prefix([P_TIME]).rev().map(|entry| {
            let (k, _) = entry?;
            // m ts(8) trace(32) chunk(8)
            id_from(k.get(9..41).unwrap_or(&[]), &k)
        })
    }

    /// Walks the whole store and checks it: every chunk parses, every object in it hashes to
    /// its stored id and verifies; every object index entry points to a chunk holding the
    /// object; every index entry names a stored chunk; every parent is stored or recorded as
    /// missing; the counter matches. Returns the number of objects, or the first problem.
    /// Meant for recovery checks and tests (it verifies every signature).
    pub fn check_integrity(&self) -> Result<u64> {
        let corrupt = |k: &[u8], reason: String| TraceError::Corrupt {
            key: key_name(k),
            reason,
        };
        let mut held: HashSet<(ObjectId, Vec<u8>)> = HashSet::new();
        let mut parents: Vec<(ObjectId, ObjectId)> = Vec::new();
        let mut chunks: HashSet<Vec<u8>> = HashSet::new();
        for entry in self.tree.scan_prefix([P_TRACE]) {
            let (k, v) = entry?;
            for (id, bytes) in parse_chunk(&k, &v)? {
                let object = decode_checked(&k, bytes, &id)?;
                if k.get(1..33) != Some(&object.trace_id().0[..]) {
                    return Err(corrupt(
                        &k,
                        format!("object {id} is in another trace's chunk"),
                    ));
                }
                parents.extend(object.parents().iter().map(|p| (id, *p)));
                held.insert((id, k.to_vec()));
            }
            chunks.insert(k.to_vec());
        }
        if let Some(entry) = self.tree.scan_prefix([P_CHUNK_V2]).next() {
            let (k, _) = entry?;
            return Err(corrupt(
                &k,
                "schema 2 chunk claim in a schema 3 store".into(),
            ));
        }
        let mut objects: HashSet<ObjectId> = HashSet::new();
        for entry in self.tree.scan_prefix([P_OBJECT]) {
            let (k, v) = entry?;
            let id = suffix_id(&k)?;
            let (location, _) = decode_slot(&k, &v)?;
            if !held.contains(&(id, chunk_key(&location.trace, location.chunk))) {
                return Err(corrupt(
                    &k,
                    "object index points to a chunk without it".into(),
                ));
            }
            objects.insert(id);
        }
        if let Some((id, k)) = held.iter().find(|(id, _)| !objects.contains(id)) {
            return Err(corrupt(k, format!("object {id} is stored but not indexed")));
        }
        for prefix in [P_SIGNER, P_TIME] {
            for entry in self.tree.scan_prefix([prefix]) {
                let (k, v) = entry?;
                let (_, kinds) = index_value(&k, &v)?;
                if (prefix == P_TIME) != kinds.is_some() {
                    return Err(corrupt(&k, format!("index value of {} bytes", v.len())));
                }
                let mut ckey = vec![P_TRACE];
                ckey.extend_from_slice(k.get(k.len().saturating_sub(40)..).unwrap_or(&[]));
                if !chunks.contains(&ckey) {
                    return Err(corrupt(&k, "index entry names a missing chunk".into()));
                }
            }
        }
        for (child, parent) in parents {
            if !objects.contains(&parent)
                && !self
                    .tree
                    .contains_key(key2(P_MISSING, &parent.0, &child.0))?
            {
                return Err(corrupt(
                    &key2(P_MISSING, &parent.0, &child.0),
                    format!("parent {parent} of {child} is neither stored nor recorded missing"),
                ));
            }
        }
        for entry in self.tree.scan_prefix([P_MISSING]) {
            let (k, _) = entry?;
            let parent = id_from(k.get(1..33).unwrap_or(&[]), &k)?;
            if objects.contains(&parent) || !objects.contains(&suffix_id(&k)?) {
                return Err(corrupt(&k, "stale missing-parent entry".into()));
            }
        }
        if let Some(v) = self.tree.get(META_CALL)? {
            decode_call(&v)?;
        }
        let count = self.object_count()?;
        let stored = objects.len() as u64;
        if count != stored {
            warn!(
                count,
                stored, "object counter disagrees with the objects stored"
            );
            return Err(corrupt(
                META_COUNT,
                format!("counter says {count}, {stored} objects stored"),
            ));
        }
        Ok(stored)
    }

    /// Replaces the stored bytes of object `id` inside its chunk, bypassing verification;
    /// returns the chunk key. Only for tests of the verify and corruption paths.
    #[doc(hidden)]
    pub fn replace_raw_for_tests(&self, id: &ObjectId, bytes: &[u8]) -> Result<Vec<u8>> {
        let loc = self.location(id)?.ok_or(TraceError::UnknownTrace(*id))?;
        let key = chunk_key(&loc.trace, loc.chunk);
        let value = self.tree.get(&key)?.unwrap_or_default();
        let mut out = Vec::new();
        for (eid, b) in parse_chunk(&key, &value)? {
            let b = if eid == *id { bytes } else { b };
            out.extend_from_slice(&eid.0);
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        self.tree.insert(&key, out)?;
        Ok(key)
    }
}

/// The keys one insert call writes, in the order they are written: every key is written
/// after the keys it points to, so that a reader between two writes, or a store cut short by
/// a crash, finds nothing that points to a missing key (an object is reachable by id once its
/// `o/` entry is written, and that comes after its chunk).
#[derive(Default)]
struct Writes {
    /// `v/call` -> the call's chunks: written first, so that after a crash the chunks of the
    /// torn call and the next free chunk number are known (see [`TraceStore::repair`]).
    call: Option<Vec<u8>>,
    /// `t/<trace><chunk>` -> the objects.
    chunks: Vec<(Vec<u8>, Vec<u8>)>,
    /// `m/` and `s/` entries naming those chunks.
    indexes: Vec<(Vec<u8>, Vec<u8>)>,
    /// `x/<parent><child>` for parents not stored yet (before the child's `o/` entry, so that
    /// a stored object's missing parents are always recorded).
    waits: Vec<Vec<u8>>,
    /// `o/<id>` -> trace, chunk and flags: the objects become visible by id.
    objects: Vec<(Vec<u8>, [u8; SLOT_LEN])>,
    /// `x/` entries whose parent is now stored.
    waits_over: Vec<IVec>,
}

impl Writes {
    /// Everything in order.
    fn into_ops(self) -> Vec<Op> {
        let mut ops: Vec<Op> = Vec::new();
        if let Some(call) = self.call {
            ops.push(Op::Insert(META_CALL.into(), call.into()));
        }
        ops.extend(
            self.chunks
                .into_iter()
                .chain(self.indexes)
                .map(|(k, v)| Op::Insert(k.into(), v.into())),
        );
        ops.extend(
            self.waits
                .into_iter()
                .map(|k| Op::Insert(k.into(), IVec::default())),
        );
        ops.extend(
            self.objects
                .into_iter()
                .map(|(k, v)| Op::Insert(k.into(), IVec::from(&v[..]))),
        );
        ops.extend(self.waits_over.into_iter().map(Op::Remove));
        ops
    }
}

/// One sled write of an insert call.
enum Op {
    Insert(IVec, IVec),
    Remove(IVec),
}

impl Op {
    fn apply(self, tree: &sled::Tree) -> Result<()> {
        match self {
            Op::Insert(k, v) => tree.insert(k, v).map(drop)?,
            Op::Remove(k) => tree.remove(k).map(drop)?,
        }
        Ok(())
    }
}

/// An insert call planned: its outcomes, its writes in order, and how it changes the writer's
/// state.
struct Planned {
    outcomes: Vec<InsertOutcome>,
    ops: Vec<Op>,
    /// The objects the call stores (new or upgraded), and whether each is countersigned.
    stored: Vec<(ObjectId, bool)>,
    /// The parents its new `x/` entries wait for.
    awaited: Vec<ObjectId>,
    waits_added: u64,
    waits_removed: u64,
    /// The object count once the call is written.
    count: u64,
    /// The first chunk number free after the call.
    next_chunk: u64,
}

/// The time (with kinds) and signer index entries of chunk `chunk` of `trace`, from its
/// objects' `(timestamp, signer, kind code)`: one time entry spanning all their timestamps,
/// and one signer entry per signer of a receipt, spanning that signer's receipts.
fn index_entries(
    trace: &TraceId,
    chunk: u64,
    members: impl Iterator<Item = (u64, PublicKey, u8)>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tail = key2(0, &trace.0, &chunk.to_be_bytes());
    let tail = &tail[1..];
    let mut span: Option<(u64, u64)> = None;
    let mut by_signer: HashMap<PublicKey, (u64, u64)> = HashMap::new();
    let mut kinds = 0u64;
    let receipt = Kind::Receipt.code();
    for (ts, signer, kind) in members {
        widen(&mut span, ts);
        if kind == receipt {
            widen_map(&mut by_signer, signer, ts);
        }
        kinds |= kind_bit(kind);
    }
    let mut out = Vec::new();
    if let Some((lo, hi)) = span {
        let mut value = hi.to_be_bytes().to_vec();
        value.extend_from_slice(&kinds.to_be_bytes());
        out.push((key2(P_TIME, &lo.to_be_bytes(), tail), value));
    }
    for (signer, (lo, hi)) in by_signer {
        out.push((
            key3(P_SIGNER, &signer.0, &lo.to_be_bytes(), tail),
            hi.to_be_bytes().to_vec(),
        ));
    }
    out
}

/// The bit of kind code `code` in a time-index value's kinds. Kind codes are 1 to 12 (SPEC.md
/// §2, "Kinds"); a code of 64 or more would have no bit, and a query by it would find nothing.
fn kind_bit(code: u8) -> u64 {
    1u64.checked_shl(u32::from(code)).unwrap_or(0)
}

/// An index value: the newest timestamp in the chunk, and for a time-index (`m/`) entry the
/// kinds of its objects (bit `code` set for each kind present).
fn index_value(key: &[u8], value: &[u8]) -> Result<(u64, Option<u64>)> {
    let corrupt = || TraceError::Corrupt {
        key: key_name(key),
        reason: format!("index value of {} bytes, expected 8 or 16", value.len()),
    };
    let u64_at = |at: usize| -> Result<u64> {
        value
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(corrupt)
    };
    match value.len() {
        8 => Ok((u64_at(0)?, None)),
        16 => Ok((u64_at(0)?, Some(u64_at(8)?))),
        _ => Err(corrupt()),
    }
}

fn widen(span: &mut Option<(u64, u64)>, ts: u64) {
    *span = Some(match *span {
        None => (ts, ts),
        Some((lo, hi)) => (lo.min(ts), hi.max(ts)),
    });
}

fn widen_map<K: std::hash::Hash + Eq>(map: &mut HashMap<K, (u64, u64)>, k: K, ts: u64) {
    let e = map.entry(k).or_insert((ts, ts));
    e.0 = e.0.min(ts);
    e.1 = e.1.max(ts);
}

/// Splits the objects of one trace into chunks of at most [`MAX_CHUNK_OBJECTS`] objects and
/// about [`MAX_CHUNK_BYTES`] bytes.
fn split_chunks<'a, 'b>(members: &'b [&'a SignedObject]) -> Vec<&'b [&'a SignedObject]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, o) in members.iter().enumerate() {
        let n = i - start;
        if n > 0 && (n >= MAX_CHUNK_OBJECTS || bytes + o.bytes().len() > MAX_CHUNK_BYTES) {
            out.push(&members[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += o.bytes().len() + 36;
    }
    if start < members.len() {
        out.push(&members[start..]);
    }
    out
}

impl Drop for TraceStore {
    /// With `flush_on_drop`: writes the object count, flushes, then marks the store closed (so
    /// the next open skips the crash repair and takes the count as written) and flushes that.
    /// Without it the mark stays, and the next open repairs and counts again.
    fn drop(&mut self) {
        if !self.durability.flush_on_drop {
            return;
        }
        let count = self
            .write_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .count;
        let closed = self
            .tree
            .insert(META_COUNT, &count.to_be_bytes())
            .and_then(|_| self.tree.flush())
            .and_then(|_| self.tree.remove(META_OPEN))
            .and_then(|_| self.tree.flush());
        if let Err(e) = closed {
            warn!(error = %e, "flush on drop failed");
        }
    }
}

/// The id in the last 32 bytes of an index key.
pub(crate) fn suffix_id(key: &[u8]) -> Result<ObjectId> {
    let start = key.len().saturating_sub(32);
    if key.len() < 33 {
        return Err(TraceError::Corrupt {
            key: key_name(key),
            reason: "index key too short".into(),
        });
    }
    id_from(&key[start..], key)
}

/// Parses the envelope of a stored value and checks it hashes to `id`.
pub(crate) fn check_light(key: &[u8], value: &[u8], id: &ObjectId) -> Result<Header> {
    let light = read_header(value).map_err(|e| TraceError::Corrupt {
        key: key_name(key),
        reason: e.to_string(),
    })?;
    if light.id != *id {
        return Err(TraceError::Corrupt {
            key: key_name(key),
            reason: format!("value hashes to {}, not to its key", light.id),
        });
    }
    Ok(light)
}

/// Decodes a stored value (every structural check, not the signatures: only verified objects
/// are stored) and checks its id.
pub(crate) fn decode_checked(key: &[u8], value: &[u8], id: &ObjectId) -> Result<SignedObject> {
    let object = SignedObject::decode_trusted(value).map_err(|e| TraceError::Corrupt {
        key: key_name(key),
        reason: e.to_string(),
    })?;
    if object.id() != *id {
        return Err(TraceError::Corrupt {
            key: key_name(key),
            reason: format!("value has id {}, not the id in its key", object.id()),
        });
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testkit;

    /// A crash can stop an insert after any of its writes. For every such point: the store
    /// opens (completing the cut insert), passes the full integrity check, still holds
    /// everything inserted before, holds the whole cut batch once the cut came after its
    /// objects' chunks were written, and takes the same batch again afterwards.
    #[test]
    fn every_cut_of_an_insert_is_repaired_at_open() {
        let workflow = testkit::workflow().unwrap();
        let (parents, children) = workflow.split_at(workflow.len() / 2);
        // Stored first: another trace, and the workflow's later half (orphans waiting for
        // their parents, so the cut insert also removes `x/` entries).
        let mut before = testkit::contract_net().unwrap();
        before.extend_from_slice(children);
        let cut: Vec<SignedObject> = parents.to_vec();
        let dir = tempfile::tempdir().unwrap();
        let total = {
            let mut store = TraceStore::open(dir.path().join("probe")).unwrap();
            store.insert_batch(&before).unwrap();
            store.insert_cut_short(&cut, 0).unwrap()
        };
        // `v/call`, the chunk, its time index entry, an `o/` entry per object and the `x/`
        // entries whose wait is over.
        assert!(total > cut.len() + 3, "{total} writes");
        for n in 0..=total {
            let path = dir.path().join(format!("cut-{n}"));
            {
                let mut store = TraceStore::open(&path).unwrap();
                store.insert_batch(&before).unwrap();
                assert!(!store.orphans().unwrap().is_empty());
                store.insert_cut_short(&cut, n).unwrap();
            }
            let store = TraceStore::open(&path).unwrap();
            let count = store
                .check_integrity()
                .unwrap_or_else(|e| panic!("cut after {n} of {total} writes: {e}"));
            for o in &before {
                assert!(store.contains(&o.id()).unwrap(), "cut {n}: lost {}", o.id());
            }
            let held = cut
                .iter()
                .filter(|o| store.contains(&o.id()).unwrap())
                .count();
            // The chunk is written right after the call's `v/call` entry: from then on the
            // repair indexes it.
            let chunk_written = n >= 2;
            assert_eq!(held == cut.len(), chunk_written, "cut {n}: {held} held");
            assert_eq!(count, (before.len() + held) as u64);
            store.insert_batch(&cut).unwrap();
            assert_eq!(
                store.check_integrity().unwrap(),
                (before.len() + cut.len()) as u64
            );
            assert!(store.orphans().unwrap().is_empty(), "cut {n}");
        }
    }

    /// A chunk of the cut insert that does not read back (a damaged disk) does not keep the
    /// store from opening: it is left for reads to report.
    #[test]
    fn a_damaged_chunk_does_not_keep_a_crashed_store_closed() {
        let dir = tempfile::tempdir().unwrap();
        let objects = testkit::contract_net().unwrap();
        let chunk = {
            let mut store = TraceStore::open(dir.path()).unwrap();
            // The call's `v/call` entry and its chunk written, nothing else.
            store.insert_cut_short(&objects, 2).unwrap();
            let trace = objects[0].trace_id();
            let key = chunk_key(&trace, 0);
            assert!(store.tree.contains_key(&key).unwrap());
            store.tree.insert(&key, &b"\x01\x02garbage"[..]).unwrap();
            key
        };
        let store = TraceStore::open(dir.path()).unwrap();
        assert!(store.tree.contains_key(&chunk).unwrap());
        assert_eq!(store.object_count().unwrap(), 0);
        assert!(store.get(&objects[0].id()).unwrap().is_none());
    }

    /// The open mark is there while the store is open and stays after a drop without closing
    /// (a crash); that store opens intact; a store closed normally loses the mark, so its next
    /// open skips the repair.
    #[test]
    fn the_open_mark_is_removed_only_by_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let objects = testkit::contract_net().unwrap();
        {
            let store = TraceStore::open(dir.path()).unwrap();
            store.insert_batch(&objects).unwrap();
            store.close().unwrap();
        }
        {
            let mut store = TraceStore::open(dir.path()).unwrap();
            assert!(store.tree.contains_key(META_OPEN).unwrap());
            store.durability.flush_on_drop = false;
        }
        let store = TraceStore::open(dir.path()).unwrap();
        assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
        drop(store);
        let db = testkit::open_sled(dir.path()).unwrap();
        let tree = db.open_tree(TREE).unwrap();
        assert!(
            !tree.contains_key(META_OPEN).unwrap(),
            "closed store still marked open"
        );
    }

    /// The writer's filter of stored ids answers for ids stored before the store was opened
    /// and grows as the store does: duplicates are found, upgrades are made, parents are
    /// found, whether an id is recent, only in the filter, or neither.
    #[test]
    fn the_stored_id_filter_knows_every_stored_id_across_reopen_and_growth() {
        let dir = tempfile::tempdir().unwrap();
        let objects = testkit::contract_net().unwrap();
        let receipt = objects.iter().position(|o| o.is_countersigned()).unwrap();
        let mut first = objects.clone();
        let countersigned = first.remove(receipt);
        let bare = pvl_protocol::Envelope::clone(countersigned.envelope())
            .sign(&testkit::provider_key(0))
            .unwrap();
        first.push(bare);
        {
            let store = TraceStore::open(dir.path()).unwrap();
            store.insert_batch(&first).unwrap();
            store.close().unwrap();
        }
        let store = TraceStore::open(dir.path()).unwrap();
        // Known from the object index only, not as recent ids.
        let again = store.insert_batch(&first).unwrap();
        assert!(again.iter().all(|o| *o == InsertOutcome::Duplicate));
        assert_eq!(
            store.insert(&countersigned).unwrap(),
            InsertOutcome::Upgraded
        );
        assert_eq!(
            store.insert(&countersigned).unwrap(),
            InsertOutcome::Duplicate
        );
        // Enough objects to fill the smallest filter more than once.
        let filled = (known::MIN_BITS_FOR_TESTS / known::BITS_PER_ID) as usize;
        let mut synthetic = Vec::new();
        for nonce in 0..3 {
            synthetic.extend(testkit::synthetic(nonce, filled / 2 + 1).unwrap());
        }
        for part in synthetic.chunks(1000) {
            store.insert_batch(part).unwrap();
        }
        let bits = store
            .write_lock
            .lock()
            .unwrap()
            .known
            .as_ref()
            .unwrap()
            .bits();
        assert!(bits > known::MIN_BITS_FOR_TESTS, "{bits} bits");
        // Every earlier one is still a duplicate, the oldest long out of the recent ids.
        let all: Vec<_> = objects.iter().chain(&synthetic).cloned().collect();
        let again = store.insert_batch(&all).unwrap();
        assert!(again.iter().all(|o| *o == InsertOutcome::Duplicate));
        assert!(store.orphans().unwrap().is_empty());
        assert_eq!(store.check_integrity().unwrap(), all.len() as u64);
    }

    /// Objects arriving one by one, children first, with many waits recorded: each parent
    /// ends its children's waits, with the filter of awaited parents built at open.
    #[test]
    fn waits_end_when_parents_arrive_one_by_one_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut objects = testkit::workflow().unwrap();
        objects.extend(testkit::contract_net().unwrap());
        // The leaves first: every one of them waits for its parents.
        let named: HashSet<ObjectId> = objects.iter().flat_map(|o| o.parents().to_vec()).collect();
        let (children, parents): (Vec<_>, Vec<_>) = objects
            .iter()
            .cloned()
            .partition(|o| !named.contains(&o.id()));
        {
            let store = TraceStore::open(dir.path()).unwrap();
            for o in &children {
                store.insert(o).unwrap();
            }
            assert!(store.orphans().unwrap().len() > 2);
            store.close().unwrap();
        }
        let store = TraceStore::open(dir.path()).unwrap();
        for o in &parents {
            store.insert(o).unwrap();
        }
        assert_eq!(store.orphans().unwrap(), vec![]);
        assert_eq!(store.write_lock.lock().unwrap().missing, 0);
        assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
    }

    /// Insert calls do not write the object count: a clean close writes it, and a store that
    /// was not closed counts its objects at open, so the count is right either way.
    #[test]
    fn the_object_count_is_written_at_close_and_counted_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let objects = testkit::contract_net().unwrap();
        let (first, later) = objects.split_at(objects.len() / 2);
        let stored_count = |store: &TraceStore| store.meta_u64(META_COUNT).unwrap();
        {
            let store = TraceStore::open(dir.path()).unwrap();
            store.insert_batch(first).unwrap();
            assert_eq!(store.object_count().unwrap(), first.len() as u64);
            assert_eq!(stored_count(&store), 0, "an insert call wrote the count");
            store.close().unwrap();
        }
        {
            let mut store = TraceStore::open(dir.path()).unwrap();
            assert_eq!(stored_count(&store), first.len() as u64);
            assert_eq!(store.object_count().unwrap(), first.len() as u64);
            store.insert_batch(later).unwrap();
            // A crash: the count on disk is the one of the last close.
            store.durability.flush_on_drop = false;
            store.flush().unwrap();
        }
        let store = TraceStore::open(dir.path()).unwrap();
        assert_eq!(store.object_count().unwrap(), objects.len() as u64);
        assert_eq!(store.check_integrity().unwrap(), objects.len() as u64);
    }
}
