//! # pvl-node: the `pvl` program
//!
//! One `pvl` process runs on every participant machine. This crate wires the pieces:
//!
//! - [`home`]: the node directory (`config.toml`, `key` (0600), `api-token` (0600),
//!   `api.addr`, `store/`, `pvl.lock`, and for a private network `swarm.key` and `allow.txt`);
//! - [`config`]: the configuration file, strictly parsed, every problem named with its line
//!   (`pvl config check`), and its reference generated from the types (`docs/CONFIG.md`);
//! - [`daemon`]: `pvl run`, which starts the network event loop (`pvl-net`), opens the trace
//!   store (`pvl-trace`), resumes the runs a previous process left open, starts the actor,
//!   serves the control API and shuts down cleanly on SIGINT/SIGTERM (store flushed,
//!   `api.addr` removed);
//! - [`actor`]: the one task that owns the coordination engine (`pvl_patterns::Engine`) and
//!   carries out its actions: records, publications, sends, executors, vote handlers;
//! - [`history`]: what the trace store says about a capability's providers and patterns
//!   (for the adaptive choice);
//! - [`recorder`]: the trace-store writer thread that keeps sled off the message path;
//! - [`recovery`]: the runs a previous process left open, for the engine to rebuild, and
//!   outcomes read back from the store;
//! - [`api`]: the control API (HTTP + JSON on loopback, bearer token, server-sent events);
//! - [`metrics`]: Prometheus metrics at `GET /metrics`;
//! - [`ui`]: the web view at `/ui/` (embedded assets, one-time sign-in codes, read-only
//!   session cookies);
//! - [`cli`]: the command line, a thin client of that API;
//! - [`mcp`]: `pvl mcp`, the node's tools for LLM agents over the Model Context Protocol.

pub mod actor;
pub mod agents;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod history;
pub mod home;
pub mod mcp;
pub mod metrics;
pub mod recorder;
pub mod recovery;
pub mod ui;
