//! The control API contract of a pvl node.
//!
//! A node serves its control API over HTTP + JSON on a loopback address, behind a bearer
//! token (the node directory's `api-token`). This crate is the one definition of that API:
//!
//! * [`types`]: every request body, response and query, with serde both ways. The node's
//!   server produces them, [`Client`] consumes them; nothing between our own parts builds or
//!   picks apart JSON by hand.
//! * [`error`]: every error answer is an [`ErrorBody`]: a message for people and a
//!   machine-readable [`ErrorCode`], whatever the HTTP status (400, 401, 404, 409, 413, 415,
//!   422, 500, 503, 504).
//! * [`events`]: what `GET /v1/events` streams (server-sent events, one JSON [`Event`] per
//!   `data:` line), optionally filtered to one trace.
//! * [`openapi`]: the OpenAPI 3.1 document generated from the types above. The node serves it
//!   at `GET /v1/openapi.json`; a copy is checked in as `crates/api/openapi.json` and a test
//!   fails when the two drift (regenerate with `PVL_UPDATE_OPENAPI=1 cargo test -p pvl-api`).
//! * [`agents`]: how agent programs bid and run tasks for a node (`/v1/agents/work`).
//! * [`client`]: the blocking Rust [`Client`] the CLI, `pvl-testnet` and the tests use.
//!
//! Ids in paths (`/v1/traces/{id}`, `/v1/intents/{id}/outcome`) may be given in full (64 hex
//! digits) or as a unique prefix of at least [`MIN_ID_PREFIX`] hex digits; an ambiguous
//! prefix is answered with [`ErrorCode::AmbiguousId`] and the candidates.
//!
//! This crate depends on `pvl-protocol` (ids, keys, kinds) only, so a client needs none of
//! the node's crates.

pub mod agents;
pub mod analysis;
pub mod client;
pub mod error;
pub mod events;
pub mod openapi;
pub mod types;

pub use agents::{
    BidAnswer, BidRequest, ProgressReport, TaskAnswer, TaskRequest, VoteAnswer, VoteRequest, Work,
    WorkItem,
};
pub use analysis::TraceAnalysis;
pub use client::{Client, ClientError, EventStream};
pub use error::{ErrorBody, ErrorCode};
pub use events::Event;
pub use types::*;

/// The largest request body the API takes, bytes (an intent's inline input is at most
/// 786,432 bytes, SPEC.md §6; as hex in JSON, twice that).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The fewest hex digits an id prefix may have in a path.
pub const MIN_ID_PREFIX: usize = 8;

/// The file in a node directory holding the control API's address (`host:port`).
pub const ADDR_FILE: &str = "api.addr";

/// The file in a node directory holding the control API's bearer token.
pub const TOKEN_FILE: &str = "api-token";
