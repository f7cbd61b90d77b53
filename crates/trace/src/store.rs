//! The sled-backed store: key layout, batched inserts, durability, orphan linking.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use pvl_protocol::{Kind, ObjectId, PublicKey, SignedObject, TraceId};
use sled::IVec;
use tracing::{debug, info, warn};

use crate::error::{Result, TraceError};
use crate::wire::{self, Light};

/// The schema version this code writes and reads; stored under the `v/schema` key.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the one sled tree all keys live in (one tree, so that a batch is atomic).
const TREE: &str = "pvl-trace";

pub(crate) const P_OBJECT: u8 = b'o';
pub(crate) const P_TRACE: u8 = b't';
pub(crate) const P_EDGE: u8 = b'e';
pub(crate) const P_MISSING: u8 = b'x';
pub(crate) const P_SIGNER: u8 = b's';
pub(crate) const P_KIND: u8 = b'k';
pub(crate) const P_TIME: u8 = b'm';

const META_SCHEMA: &[u8] = b"vschema";
const META_COUNT: &[u8] = b"vcount";

/// Flag bit in the `o/` value: the stored object is a countersigned receipt.
const FLAG_COUNTERSIGNED: u8 = 1;

/// When written data becomes durable.
///
/// Inserts are applied to sled in one atomic batch per call (all keys of all objects of the
/// call appear together after a crash, or none do). They become *durable* (survive a power
/// loss or `SIGKILL`) when sled flushes its log: every `flush_every` in the background, on an
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
    /// node; default here 64 MiB).
    pub cache_capacity: u64,
    /// When data becomes durable.
    pub durability: Durability,
    /// Trade write throughput for less disk space (sled `Mode::LowSpace`). Default `true`.
    pub low_space: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_capacity: 64 * 1024 * 1024,
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
    /// Serialises writers so that the read-check-write of an insert batch is not interleaved.
    write_lock: Mutex<()>,
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

/// The key under which the wire bytes of object `id` of trace `trace` are stored
/// (`t/<trace><id>`). Public so that tests and tools can reach the raw value.
pub fn object_key(trace: &TraceId, id: &ObjectId) -> Vec<u8> {
    key2(P_TRACE, &trace.0, &id.0)
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
        let db = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(config.cache_capacity)
            .flush_every_ms(
                config
                    .durability
                    .flush_every
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)),
            )
            .mode(mode)
            .open()?;
        let tree = db.open_tree(TREE)?;
        match tree.get(META_SCHEMA)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| TraceError::Corrupt {
                        key: key_name(META_SCHEMA),
                        reason: format!("{} bytes, expected 4", v.len()),
                    })?;
                if found != SCHEMA_VERSION {
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
        info!(path = %path.as_ref().display(), "trace store opened");
        Ok(TraceStore {
            db,
            tree,
            durability: config.durability,
            write_lock: Mutex::new(()),
        })
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

    /// Inserts already verified objects in one atomic sled batch.
    ///
    /// Idempotent: an id already stored is a [`InsertOutcome::Duplicate`], except that a
    /// countersigned receipt replaces a stored bare receipt ([`InsertOutcome::Upgraded`]).
    /// Parents need not be stored yet: the edge is written anyway and the missing parent is
    /// recorded under `x/`; when the parent arrives its `x/` entries are removed.
    pub fn insert_batch(&self, objects: &[SignedObject]) -> Result<Vec<InsertOutcome>> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = sled::Batch::default();
        let mut outcomes = Vec::with_capacity(objects.len());
        // id -> countersigned, for objects written earlier in this batch.
        let mut in_batch: HashMap<ObjectId, bool> = HashMap::new();
        let mut missing: Vec<(ObjectId, ObjectId)> = Vec::new();
        let mut new_count = 0u64;
        for object in objects {
            let id = object.id();
            let trace = object.trace_id();
            let okey = key2(P_OBJECT, &id.0, &[]);
            let existing = match in_batch.get(&id) {
                Some(cs) => Some(*cs),
                None => self
                    .tree
                    .get(&okey)?
                    .map(|v| v.get(32).is_some_and(|f| f & FLAG_COUNTERSIGNED != 0)),
            };
            let cs = object.is_countersigned();
            let mut ovalue = Vec::with_capacity(33);
            ovalue.extend_from_slice(&trace.0);
            ovalue.push(if cs { FLAG_COUNTERSIGNED } else { 0 });
            match existing {
                Some(true) => outcomes.push(InsertOutcome::Duplicate),
                Some(false) if !cs => outcomes.push(InsertOutcome::Duplicate),
                Some(false) => {
                    batch.insert(object_key(&trace, &id), object.bytes());
                    batch.insert(okey, ovalue);
                    in_batch.insert(id, true);
                    debug!(%id, "bare receipt upgraded to countersigned");
                    outcomes.push(InsertOutcome::Upgraded);
                }
                None => {
                    batch.insert(object_key(&trace, &id), object.bytes());
                    batch.insert(okey, ovalue);
                    for parent in object.parents() {
                        batch.insert(key2(P_EDGE, &parent.0, &id.0), &[][..]);
                        if !in_batch.contains_key(parent)
                            && !self.tree.contains_key(key2(P_OBJECT, &parent.0, &[]))?
                        {
                            missing.push((*parent, id));
                        }
                    }
                    // Children that arrived before this object: their wait is over.
                    for entry in self.tree.scan_prefix(key2(P_MISSING, &id.0, &[])) {
                        let (k, _) = entry?;
                        batch.remove(k);
                    }
                    let ts = object.timestamp_ms().to_be_bytes();
                    batch.insert(key3(P_SIGNER, &object.signer().0, &ts, &id.0), &[][..]);
                    batch.insert(key3(P_KIND, &[object.kind().code()], &ts, &id.0), &[][..]);
                    batch.insert(key2(P_TIME, &ts, &id.0), &[][..]);
                    in_batch.insert(id, cs);
                    new_count += 1;
                    outcomes.push(InsertOutcome::Inserted);
                }
            }
        }
        for (parent, child) in missing {
            if !in_batch.contains_key(&parent) {
                debug!(%child, %parent, "parent not yet known; kept as orphan");
                batch.insert(key2(P_MISSING, &parent.0, &child.0), &[][..]);
            }
        }
        if new_count > 0 {
            let count = self.object_count()? + new_count;
            batch.insert(META_COUNT, &count.to_be_bytes());
        }
        self.tree.apply_batch(batch)?;
        if self.durability.flush_each_batch {
            self.tree.flush()?;
        }
        Ok(outcomes)
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

    /// Number of distinct objects stored.
    pub fn object_count(&self) -> Result<u64> {
        match self.tree.get(META_COUNT)? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| TraceError::Corrupt {
                    key: key_name(META_COUNT),
                    reason: format!("{} bytes, expected 8", v.len()),
                }),
        }
    }

    /// Bytes the database occupies on disk (as reported by sled).
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// Whether object `id` is stored.
    pub fn contains(&self, id: &ObjectId) -> Result<bool> {
        Ok(self.tree.contains_key(key2(P_OBJECT, &id.0, &[]))?)
    }

    /// The trace object `id` belongs to, if stored.
    pub fn trace_of(&self, id: &ObjectId) -> Result<Option<TraceId>> {
        let key = key2(P_OBJECT, &id.0, &[]);
        match self.tree.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(id_from(v.get(..32).unwrap_or(&[]), &key)?)),
        }
    }

    /// The stored wire bytes of `id`, checked to parse and hash to `id` (signature not checked).
    pub fn get_bytes(&self, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        let Some(trace) = self.trace_of(id)? else {
            return Ok(None);
        };
        let key = object_key(&trace, id);
        let Some(value) = self.tree.get(&key)? else {
            return Err(TraceError::Corrupt {
                key: key_name(&key),
                reason: "index names an object whose value is missing".into(),
            });
        };
        check_light(&key, &value, id)?;
        Ok(Some(value.to_vec()))
    }

    /// The object `id`, fully decoded and signature-verified.
    pub fn get(&self, id: &ObjectId) -> Result<Option<SignedObject>> {
        let Some(trace) = self.trace_of(id)? else {
            return Ok(None);
        };
        let key = object_key(&trace, id);
        match self.tree.get(&key)? {
            None => Err(TraceError::Corrupt {
                key: key_name(&key),
                reason: "index names an object whose value is missing".into(),
            }),
            Some(value) => decode_checked(&key, &value, id).map(Some),
        }
    }

    /// Raw `(key, value)` pairs of one trace's objects.
    pub(crate) fn trace_entries(&self, trace: &TraceId) -> Result<Vec<(IVec, IVec)>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(key2(P_TRACE, &trace.0, &[])) {
            out.push(entry?);
        }
        Ok(out)
    }

    /// All objects of a trace, fully decoded and verified (batch verification), in time order.
    pub fn trace_objects(&self, trace: &TraceId) -> Result<Vec<SignedObject>> {
        let entries = self.trace_entries(trace)?;
        if entries.is_empty() {
            return Err(TraceError::UnknownTrace(*trace));
        }
        let inputs: Vec<&[u8]> = entries.iter().map(|(_, v)| v.as_ref()).collect();
        let decoded = SignedObject::decode_batch(&inputs);
        let mut out = Vec::with_capacity(entries.len());
        for ((key, _), result) in entries.iter().zip(decoded) {
            let object = result.map_err(|e| TraceError::Corrupt {
                key: key_name(key),
                reason: e.to_string(),
            })?;
            let expected = id_from(key.get(33..65).unwrap_or(&[]), key)?;
            if object.id() != expected {
                return Err(TraceError::Corrupt {
                    key: key_name(key),
                    reason: format!("value has id {}", object.id()),
                });
            }
            out.push(object);
        }
        out.sort_by_key(|o| (o.timestamp_ms(), o.id()));
        Ok(out)
    }

    /// Ids of the stored children of `parent` (edges `parent -> child`), whether or not the
    /// parent itself is stored.
    pub fn children(&self, parent: &ObjectId) -> Result<Vec<ObjectId>> {
        self.scan_suffix_ids(key2(P_EDGE, &parent.0, &[]))
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

    /// Ids of objects signed by `signer`, oldest first, at most `limit`.
    pub fn by_signer(&self, signer: &PublicKey, limit: usize) -> Result<Vec<ObjectId>> {
        self.scan_ids_limited(key2(P_SIGNER, &signer.0, &[]), limit)
    }

    /// Ids of objects of `kind` with `from_ms <= timestamp < to_ms`, oldest first.
    pub fn by_kind(&self, kind: Kind, from_ms: u64, to_ms: u64) -> Result<Vec<ObjectId>> {
        let lo = key2(P_KIND, &[kind.code()], &from_ms.to_be_bytes());
        let hi = key2(P_KIND, &[kind.code()], &to_ms.to_be_bytes());
        self.range_ids(lo, hi)
    }

    /// Ids of objects with `from_ms <= timestamp < to_ms`, oldest first.
    pub fn by_time(&self, from_ms: u64, to_ms: u64) -> Result<Vec<ObjectId>> {
        let lo = key2(P_TIME, &from_ms.to_be_bytes(), &[]);
        let hi = key2(P_TIME, &to_ms.to_be_bytes(), &[]);
        self.range_ids(lo, hi)
    }

    fn range_ids(&self, lo: Vec<u8>, hi: Vec<u8>) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for entry in self.tree.range(lo..hi) {
            let (k, _) = entry?;
            out.push(suffix_id(&k)?);
        }
        Ok(out)
    }

    fn scan_suffix_ids(&self, prefix: Vec<u8>) -> Result<Vec<ObjectId>> {
        self.scan_ids_limited(prefix, usize::MAX)
    }

    fn scan_ids_limited(&self, prefix: Vec<u8>, limit: usize) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(prefix).take(limit) {
            let (k, _) = entry?;
            out.push(suffix_id(&k)?);
        }
        Ok(out)
    }

    /// Ids of the most recent objects (newest first), walking the time index backwards.
    pub(crate) fn time_index_rev(&self) -> impl Iterator<Item = Result<ObjectId>> + '_ {
        self.tree.scan_prefix([P_TIME]).rev().map(|entry| {
            let (k, _) = entry?;
            suffix_id(&k)
        })
    }

    /// Ids of objects of `kind`, oldest first.
    pub(crate) fn kind_index(&self, kind: Kind) -> impl Iterator<Item = Result<ObjectId>> + '_ {
        self.tree.scan_prefix([P_KIND, kind.code()]).map(|entry| {
            let (k, _) = entry?;
            suffix_id(&k)
        })
    }

    /// Walks the whole store and checks it: every object parses, hashes to its key and
    /// verifies; every index entry and edge names a stored object; every edge's parent is
    /// stored or recorded as missing. Returns the number of objects checked, or the first
    /// problem found. Meant for recovery checks and tests (it verifies every signature).
    pub fn check_integrity(&self) -> Result<u64> {
        let mut objects: HashSet<ObjectId> = HashSet::new();
        let mut checked = 0u64;
        for entry in self.tree.scan_prefix([P_TRACE]) {
            let (k, v) = entry?;
            let id = id_from(k.get(33..65).unwrap_or(&[]), &k)?;
            let object = decode_checked(&k, &v, &id)?;
            let okey = key2(P_OBJECT, &id.0, &[]);
            if self.trace_of(&id)? != Some(object.trace_id()) {
                return Err(TraceError::Corrupt {
                    key: key_name(&okey),
                    reason: "object index does not name the object's trace".into(),
                });
            }
            objects.insert(id);
            checked += 1;
        }
        let corrupt = |k: &[u8], reason: &str| TraceError::Corrupt {
            key: key_name(k),
            reason: reason.into(),
        };
        for entry in self.tree.scan_prefix([P_OBJECT]) {
            let (k, _) = entry?;
            if !objects.contains(&suffix_id(&k)?) {
                return Err(corrupt(&k, "object index names a missing object"));
            }
        }
        for prefix in [P_SIGNER, P_KIND, P_TIME] {
            for entry in self.tree.scan_prefix([prefix]) {
                let (k, _) = entry?;
                if !objects.contains(&suffix_id(&k)?) {
                    return Err(corrupt(&k, "index entry names a missing object"));
                }
            }
        }
        for entry in self.tree.scan_prefix([P_EDGE]) {
            let (k, _) = entry?;
            let parent = id_from(k.get(1..33).unwrap_or(&[]), &k)?;
            let child = suffix_id(&k)?;
            if !objects.contains(&child) {
                return Err(corrupt(&k, "edge from a missing child"));
            }
            if !objects.contains(&parent)
                && !self
                    .tree
                    .contains_key(key2(P_MISSING, &parent.0, &child.0))?
            {
                return Err(corrupt(
                    &k,
                    "edge to a missing parent not recorded as missing",
                ));
            }
        }
        let count = self.object_count()?;
        if count != checked {
            warn!(
                count,
                checked, "object counter disagrees with the objects stored"
            );
            return Err(corrupt(
                META_COUNT,
                &format!("counter says {count}, {checked} objects stored"),
            ));
        }
        Ok(checked)
    }

    /// Writes raw bytes under a trace key, bypassing verification. Only for tests of the
    /// verify and corruption paths; never use it in a node.
    #[doc(hidden)]
    pub fn put_raw_for_tests(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(key, value)?;
        Ok(())
    }
}

impl Drop for TraceStore {
    fn drop(&mut self) {
        if self.durability.flush_on_drop
            && let Err(e) = self.tree.flush()
        {
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
pub(crate) fn check_light(key: &[u8], value: &[u8], id: &ObjectId) -> Result<Light> {
    let light = wire::parse(value).map_err(|reason| TraceError::Corrupt {
        key: key_name(key),
        reason,
    })?;
    if light.id != *id {
        return Err(TraceError::Corrupt {
            key: key_name(key),
            reason: format!("value hashes to {}, not to its key", light.id),
        });
    }
    Ok(light)
}

/// Fully decodes (verifying signatures) a stored value and checks its id.
pub(crate) fn decode_checked(key: &[u8], value: &[u8], id: &ObjectId) -> Result<SignedObject> {
    let object = SignedObject::decode(value).map_err(|e| TraceError::Corrupt {
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
