//! # pvl-trace: the sled-backed trace graph store
//!
//! Every object a pvl node sees (intents, offers, awards, progress, receipts, consensus
//! rounds, events) is kept here, as the exact signed wire bytes, so that the history of every
//! conversation ("trace") can be queried, re-verified, analysed and exported later.
//!
//! ## What it offers
//!
//! * **Store** ([`TraceStore`]): verified inserts, one at a time or in batches
//!   ([`TraceStore::insert_batch`], or [`TraceStore::insert_bytes_batch`] which verifies with
//!   ed25519 batch verification); idempotent; out-of-order delivery supported.
//! * **Queries**: [`TraceStore::trace`] (a [`TraceDag`]), [`TraceStore::recent_traces`] with
//!   [`TraceStatus`], [`TraceStore::provider_history`], [`TraceStore::capability_stats`],
//!   and index scans ([`TraceStore::receipts_by_signer`], [`TraceStore::by_kind`],
//!   [`TraceStore::by_time`], [`TraceStore::children`], [`TraceStore::orphans`]).
//! * **Verify**: [`TraceStore::verify_trace`] re-checks every signature and link and names the
//!   object at fault ([`VerifyReport`]).
//! * **Analyse**: [`analyse()`] / [`TraceStore::analyse`]: detected [`Pattern`] (the
//!   requester's hint and events first, the shape second), [`TraceStatus`] with its
//!   [`TraceFailure`], per-part timings ([`PartTiming`]: stages, shards, reducer, with
//!   re-awards and coordination overhead), workflow stages in dependency order, consensus
//!   rounds ([`ConsensusRound`]), the adaptive choice ([`AdaptiveChoice`]), tasks per agent,
//!   critical path, bottleneck stage, offer latencies (rules in [`analyse`](mod@analyse)).
//! * **Export** ([`export`]): JSON, Graphviz DOT and Mermaid (stages, shards and consensus
//!   rounds drawn as clusters), and a self-contained CBOR bundle
//!   that anyone can verify offline ([`export::verify_bundle`]).
//!
//! ## Key layout in sled
//!
//! All keys live in **one** sled tree (`pvl-trace`), distinguished by a one-byte prefix.
//! Integers are big-endian so that keys sort by time.
//!
//! Objects are stored in **chunks**: one sled value holds up to [`MAX_CHUNK_OBJECTS`] objects
//! (about [`MAX_CHUNK_BYTES`]) of one trace that arrived in the same insert call, each framed as
//! `id(32) length(u32) wire bytes`. Chunks are written once and never rewritten: a
//! countersigned receipt that upgrades a bare one goes to a new chunk and the object index
//! moves to it (readers prefer the countersigned copy). The secondary indexes point to chunks,
//! not to objects. This is what makes sled usable at a million objects: a first layout with one
//! key per object per index (seven keys per object) measured 4,800 objects/s, 12x disk
//! amplification and 430 MB RSS at 1,000,000 objects; with chunks sled writes about one key per
//! object (see `pvl-trace-bench`).
//!
//! | key | value | purpose |
//! |---|---|---|
//! | `v` `schema` | u32 | schema version ([`SCHEMA_VERSION`]); schemas 1 to 3 are migrated at open, another refuses to open |
//! | `v` `count` | u64 | number of distinct objects stored, written when the store is closed (the open store keeps it in memory; a store that was not closed counts its `o` keys at open) |
//! | `v` `call` | first chunk(8) trace(32)… | the chunks of the last insert call that wrote any: numbers `first`, `first + 1`, … with their traces (the next call starts after them; a crash repair completes them) |
//! | `v` `open` | empty | present while a process has the store open (see "Crash safety") |
//! | `t` trace(32) chunk(8) | framed objects | the objects, clustered by trace: a trace is one prefix scan |
//! | `o` id(32) | trace(32) chunk(8) flags(1) | object id → its chunk's key (flag 1: countersigned receipt) |
//! | `x` parent(32) child(32) | empty | children whose parent is not stored yet (orphans) |
//! | `s` signer(32) min_ts(8) trace(32) chunk(8) | max_ts(8) | chunks holding receipts by a signer (a provider's history) |
//! | `m` min_ts(8) trace(32) chunk(8) | max_ts(8) kinds(8) | chunks by time (recent traces walk this backwards); `kinds` has bit `code` set for each kind in the chunk, so a query by kind walks this index and reads only the chunks holding that kind |
//!
//! Schema 1 had a `k` kind(1) min_ts(8) trace(32) chunk(8) key per kind per chunk: up to a
//! dozen sled writes for one contract-net round's chunk, a fifth of the keys a round wrote on
//! 10 nodes. The only query by kind (receipts, for [`TraceStore::capability_stats`]) reads the
//! whole range anyway. Schema 2 had a `c` chunk(8) → trace(32) claim per chunk (the `o` value
//! was then chunk and flags only) and a `v` `chunk` counter: a sled write per chunk more, and a
//! read more per object read by id. Schema 3 had an `s` entry for every signer of every chunk:
//! 8.4 of the 33 keys a requester wrote per contract-net round (9 offers), for a query by
//! signer that only ever asked for receipts. All older schemas are migrated when a store is
//! opened.
//!
//! Parent → child edges are the parents lists of the stored objects, clustered by trace: the
//! protocol requires parents to be in their child's trace, so reading a trace (one prefix
//! scan) yields its complete edge set ([`TraceDag`] nodes carry parents and children), and
//! [`TraceStore::children`] inverts the parent lists of the parent's trace.
//!
//! Values are checked when read: a chunk's framing must hold, every object's envelope must
//! parse and hash to its stored id, and full reads re-verify the signature; a value that fails
//! is a [`TraceError::Corrupt`] naming the key, never a panic. Reading a trace as a DAG parses
//! only the envelopes (signatures were verified on insert; verifying 1,000 signatures would take
//! ~70 ms).
//!
//! ## Orphans (out-of-order delivery)
//!
//! Gossip delivers children before parents. An object is stored as soon as it verifies; if a
//! parent is not stored yet an `x` entry records the wait. When the parent arrives, its
//! `x/parent/*` entries are deleted by the same insert call; the child needs no rewrite, since
//! its edge is its own parents list. [`TraceStore::orphans`] lists objects still waiting, and a
//! [`TraceDag`] lists the parents it is missing.
//!
//! ## Idempotence
//!
//! An id already stored is not written again ([`InsertOutcome::Duplicate`]), with one
//! exception: a countersigned receipt replaces the bare receipt with the same id (same content,
//! one more signature: strictly more evidence) — [`InsertOutcome::Upgraded`]. A bare copy
//! arriving after the countersigned one changes nothing.
//!
//! The writer answers most of these checks, and the "is the parent stored?" ones, without
//! reading sled: a Bloom filter over every stored id (built from the `o` keys by the first
//! insert after open, grown as the store grows) proves an id new, and the last 1,024 stored
//! ids are known exactly (see the `known` module).
//!
//! ## Crash safety
//!
//! An insert call writes its keys one at a time, each after the keys it points to: first the
//! list of the chunks it is about to write (`v call`), then the chunks (`t`), index entries
//! (`m`, `s`), new `x` entries, object entries (`o`, the point from which an object is found by
//! id), and last `x` entries whose wait is over are removed. A reader between two writes finds
//! nothing that points to a missing key. The object count is not written by an insert call
//! (that was a sled write per call, 4.4 of the 90 keys a contract-net round wrote on 10
//! nodes): the open store counts in memory and writes `v count` when it is closed. sled
//! recovers a prefix of its log after a crash, so a crash can leave only the last insert call
//! cut short, and its chunks are the ones `v call` names. The `v open` key tells that the last
//! process did not close the store: [`TraceStore::open`] then completes that call (a chunk not
//! written is skipped; a written one gets its index, `o` and `x` entries), removes stale `x`
//! entries and counts the objects again (a scan of the `o` keys).
//! [`TraceStore::check_integrity`] holds after every cut point (unit test
//! `every_cut_of_an_insert_is_repaired_at_open`, and the SIGKILL test `tests/crash.rs`).
//!
//! One `sled::Batch` per call would make the call atomic instead, but sled seals and writes
//! its log buffer before and after every batch (with a `sync_file_range` each and a wake-up of
//! every thread of its I/O pool): measured on a 2-core machine, about 270 µs of CPU per call
//! of 11 keys against 70 µs for the same keys written one by one, and sled's I/O threads took
//! about 15 % of all CPU under a 10-node contract-net load.
//!
//! ## Durability policy
//!
//! Writes are durable once sled's log is flushed: by a background flush every
//! [`Durability::flush_every`] (default 500 ms), an explicit [`TraceStore::flush`] (what a node
//! calls before acknowledging something as stored), optionally after every insert call
//! ([`Durability::flush_each_batch`]), and on drop / [`TraceStore::close`] (clean shutdown).
//! So a crash loses at most the last flush interval. The sled page cache is bounded
//! ([`StoreConfig::cache_capacity`], 32 MiB by default instead of sled's 1 GB).
//!
//! Each insert call writes one chunk per trace it touches, plus a time-index key and one
//! index key per signer in the chunk. A node that receives objects one at a time should collect them for a
//! short while (e.g. up to its flush interval or a few hundred objects) and insert them with
//! one [`TraceStore::insert_batch`] call: single inserts work, but cost about six sled keys
//! each instead of about one.

mod error;
mod known;
mod query;
mod store;
mod verify;

pub mod analyse;
pub mod export;
#[cfg(feature = "test-utils")]
pub mod testkit;

pub use analyse::{
    AdaptiveChoice, AgentTasks, Analysis, ConsensusRound, CriticalPath, OfferLatency, PartKind,
    PartTiming, PathStep, Pattern, RoundOutcome, RoundVote, TaskInfo, TraceFailure, TraceStatus,
    analyse,
};
pub use error::{Result, TraceError};
pub use query::{
    CapabilityStats, ProviderHistory, ProviderTask, TraceDag, TraceNode, TraceSummary, causal_order,
};
pub use store::{
    Durability, InsertOutcome, MAX_CHUNK_BYTES, MAX_CHUNK_OBJECTS, SCHEMA_VERSION, StoreConfig,
    StoreCounters, TraceStore,
};
pub use verify::{Problem, ProblemKind, VerifyReport, verify_objects};
