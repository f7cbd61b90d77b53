//! The one interface through which a driver runs any coordination pattern.
//!
//! [`Coordination`] is implemented by [`crate::Requester`] (contract-net),
//! [`crate::WorkflowRun`] (federated workflow) and [`crate::ParallelRun`] (parallel). A node
//! keeps one `Box<dyn Coordination>` per trace it coordinates and routes to it:
//!
//! * every object received whose `trace_id()` is the coordination's [`Coordination::trace`]
//!   (`Input::Received`);
//! * every timer whose [`crate::TimerToken::trace`] is that trace (`Input::Timer`); a
//!   composite routes it further by [`crate::TimerToken::scope`] itself.
//!
//! When the coordination returns [`crate::Action::Finished`] it is over; the outcome is also
//! available from [`Coordination::outcome`]. Inputs refused with an `Err` changed nothing.

use pvl_protocol::{PublicKey, SignedObject, TraceId};

use crate::action::{Action, Input, Outcome};
use crate::error::Result;

/// A coordination pattern driven by inputs and the current time (sans-I/O).
pub trait Coordination: Send {
    /// Signs the first objects (the root intent) and returns the first actions. Called once.
    fn start(&mut self, now_ms: u64) -> Result<Vec<Action>>;

    /// Feeds one input: an object of this trace or a timer this coordination set.
    fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>>;

    /// The trace id (the id of the root intent), once started.
    fn trace(&self) -> Option<TraceId>;

    /// Whether this coordination has any use for `object` right now (it belongs to one of its
    /// intents or tasks). A `false` object would be refused by [`Coordination::handle`].
    fn claims(&self, object: &SignedObject) -> bool;

    /// Whether it is over.
    fn is_finished(&self) -> bool;

    /// How it ended, once it has.
    fn outcome(&self) -> Option<&Outcome>;

    /// The providers its first intent was sent to directly (a directed intent, SPEC.md §4.3),
    /// once started; empty when it was gossiped (the default: composites gossip).
    fn asked(&self) -> &[PublicKey] {
        &[]
    }

    /// Gives up: the outcome becomes a `Cancelled` failure (running tasks cannot be stopped,
    /// their late reports are refused). Does nothing when not started or already finished.
    fn cancel(&mut self, reason: &str, now_ms: u64) -> Result<Vec<Action>>;
}
