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
//!   and index scans ([`TraceStore::by_signer`], [`TraceStore::by_kind`],
//!   [`TraceStore::by_time`], [`TraceStore::children`], [`TraceStore::orphans`]).
//! * **Verify**: [`TraceStore::verify_trace`] re-checks every signature and link and names the
//!   object at fault ([`VerifyReport`]).
//! * **Analyse**: [`analyse()`] / [`TraceStore::analyse`]: detected [`Pattern`], tasks per
//!   agent, critical path, bottleneck stage, offer latencies (rules in [`analyse`](mod@analyse)).
//! * **Export** ([`export`]): JSON, Graphviz DOT, Mermaid, and a self-contained CBOR bundle
//!   that anyone can verify offline ([`export::verify_bundle`]).
//!
//! ## Key layout in sled
//!
//! All keys live in **one** sled tree (`pvl-trace`), distinguished by a one-byte prefix, so
//! that a whole insert batch is one atomic `sled::Batch`: after a crash either all keys of a
//! batch (object, edges, indexes, counter) are there or none are. Integers are big-endian so
//! that keys sort by time.
//!
//! | key | value | purpose |
//! |---|---|---|
//! | `v` `schema` | u32 | schema version ([`SCHEMA_VERSION`]); a mismatch refuses to open |
//! | `v` `count` | u64 | number of distinct objects stored |
//! | `t` trace(32) id(32) | wire bytes | the objects, clustered by trace: a trace is one prefix scan |
//! | `o` id(32) | trace(32) flags(1) | object id → trace (flag 1: countersigned receipt) |
//! | `e` parent(32) child(32) | empty | parent → child edges |
//! | `x` parent(32) child(32) | empty | edges whose parent is not stored yet (orphans) |
//! | `s` signer(32) ts(8) id(32) | empty | objects by signer, in time order |
//! | `k` kind(1) ts(8) id(32) | empty | objects by kind, in time order |
//! | `m` ts(8) id(32) | empty | objects by time |
//!
//! Values are checked when read: the envelope must parse and hash to the id in the key, and
//! full reads re-verify the signature; a value that fails is a [`TraceError::Corrupt`] naming
//! the key, never a panic. Reading a trace as a DAG parses only the envelopes (signatures were
//! verified on insert; verifying 1,000 signatures would take ~70 ms).
//!
//! ## Orphans (out-of-order delivery)
//!
//! Gossip delivers children before parents. An object is stored as soon as it verifies; for
//! each parent an `e` edge is written immediately, and if the parent is not stored yet an `x`
//! entry records the wait. When the parent arrives, its `x/parent/*` entries are deleted in
//! the same batch: the edges already exist, so the graph is linked with no rewrite of the
//! child. [`TraceStore::orphans`] lists objects still waiting.
//!
//! ## Idempotence
//!
//! An id already stored is not written again ([`InsertOutcome::Duplicate`]), with one
//! exception: a countersigned receipt replaces the bare receipt with the same id (same content,
//! one more signature: strictly more evidence) — [`InsertOutcome::Upgraded`]. A bare copy
//! arriving after the countersigned one changes nothing.
//!
//! ## Durability policy
//!
//! Writes are applied in batches (one `sled::Batch` per insert call) and are durable once
//! sled's log is flushed: by a background flush every [`Durability::flush_every`] (default
//! 500 ms), an explicit [`TraceStore::flush`] (what a node calls before acknowledging
//! something as stored), optionally after every batch ([`Durability::flush_each_batch`]), and
//! on drop / [`TraceStore::close`] (clean shutdown). So a crash loses at most the last flush
//! interval, and never tears a batch. The sled page cache is bounded
//! ([`StoreConfig::cache_capacity`], 64 MiB by default instead of sled's 1 GB).

mod error;
mod query;
mod store;
mod verify;
mod wire;

pub mod analyse;
pub mod export;
pub mod testkit;

pub use analyse::{
    AgentTasks, Analysis, CriticalPath, OfferLatency, PathStep, Pattern, TaskInfo, TraceStatus,
    analyse,
};
pub use error::{Result, TraceError};
pub use query::{
    CapabilityStats, ProviderHistory, ProviderTask, TraceDag, TraceNode, TraceSummary,
};
pub use store::{Durability, InsertOutcome, SCHEMA_VERSION, StoreConfig, TraceStore, object_key};
pub use verify::{Problem, ProblemKind, VerifyReport, verify_objects};
