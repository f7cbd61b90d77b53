//! Drives the sans-I/O coordination state machines of `pvl-patterns` inside a running node.
//!
//! The [`Coordinator`] holds this node's provider (when it serves capabilities through
//! executors) and one requester per intent it published. It never does I/O itself: every method
//! takes an input and returns the state machines' actions, which the daemon performs
//! ([`crate::daemon::perform`]): publish or send objects, run an executor, set a timer, record
//! an object. Inputs are routed by trace id: objects of a trace this node requested go to its
//! requester; intents, awards, rejects and countersigned receipts go to the provider.

use std::collections::HashMap;

use pvl_patterns::{Action, Input, Outcome, Provider, RequestSpec, Requester, TimerToken};
use pvl_protocol::{Body, Keypair, ObjectId, Payload, SignedObject, TraceId};
use tokio::sync::oneshot;
use tracing::debug;

use crate::executor::ExecutorConfig;

/// One intent this node coordinates as requester.
struct Active {
    requester: Requester,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

/// The node's coordination state.
pub struct Coordinator {
    key: Keypair,
    provider: Option<Provider>,
    executors: HashMap<String, ExecutorConfig>,
    requesters: HashMap<TraceId, Active>,
    /// Outcomes of intents finished before anyone waited for them (bounded).
    finished: HashMap<TraceId, Outcome>,
}

const MAX_REMEMBERED_OUTCOMES: usize = 1024;

impl Coordinator {
    /// A coordinator for `key`, serving the capabilities of `executors` (none: requester only).
    pub fn new(key: Keypair, executors: Vec<ExecutorConfig>, max_concurrent: usize) -> Self {
        let provider = (!executors.is_empty()).then(|| {
            executors
                .iter()
                .fold(Provider::new(key.clone(), max_concurrent), |p, e| {
                    p.serve(
                        e.capability.clone(),
                        pvl_patterns::OfferPolicy::fixed(e.price, e.eta_ms, e.reliability_bps),
                    )
                })
        });
        Coordinator {
            key,
            provider,
            executors: executors
                .into_iter()
                .map(|e| (e.capability.clone(), e))
                .collect(),
            requesters: HashMap::new(),
            finished: HashMap::new(),
        }
    }

    /// The executor of a capability.
    pub fn executor(&self, capability: &str) -> Option<&ExecutorConfig> {
        self.executors.get(capability)
    }

    /// Starts coordinating a new intent; returns its trace id and the first actions (the
    /// intent's publication among them).
    pub fn request(
        &mut self,
        spec: RequestSpec,
        now_ms: u64,
    ) -> Result<(TraceId, Vec<Action>), String> {
        let mut requester = Requester::new(self.key.clone(), spec);
        let actions = requester.start(now_ms).map_err(|e| e.to_string())?;
        let trace = requester
            .trace()
            .ok_or("the requester did not sign an intent")?;
        self.requesters.insert(
            trace,
            Active {
                requester,
                waiters: Vec::new(),
            },
        );
        Ok((trace, self.after(actions)))
    }

    /// A receiver of the outcome of `trace`, or `None` when this node does not coordinate it.
    pub fn wait(&mut self, trace: &TraceId) -> Option<oneshot::Receiver<Outcome>> {
        let (tx, rx) = oneshot::channel();
        if let Some(outcome) = self.finished.get(trace) {
            let _ = tx.send(outcome.clone());
            return Some(rx);
        }
        self.requesters.get_mut(trace)?.waiters.push(tx);
        Some(rx)
    }

    /// An object arrived from the network.
    pub fn on_object(&mut self, object: &SignedObject, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(active) = self.requesters.get_mut(&object.trace_id()) {
            match active.requester.on_object(object.clone(), now_ms) {
                Ok(more) => actions.extend(more),
                Err(e) => debug!(id = %object.id().short(), "requester ignored the object: {e}"),
            }
        }
        let for_provider = matches!(
            object.body(),
            Body::Intent(_) | Body::TaskStart(_) | Body::Reject(_) | Body::Receipt(_)
        );
        if let (true, Some(provider)) = (for_provider, self.provider.as_mut()) {
            match provider.handle(Input::Received(object.clone()), now_ms) {
                Ok(more) => actions.extend(more),
                Err(e) => debug!(id = %object.id().short(), "provider ignored the object: {e}"),
            }
        }
        self.after(actions)
    }

    /// A timer fired.
    pub fn on_timer(&mut self, token: TimerToken, now_ms: u64) -> Vec<Action> {
        let Some(active) = self.requesters.get_mut(&token.trace) else {
            return Vec::new();
        };
        let actions = active
            .requester
            .on_timer(token, now_ms)
            .unwrap_or_else(|e| {
                debug!("timer ignored: {e}");
                Vec::new()
            });
        self.after(actions)
    }

    /// An executor finished a task this node was awarded.
    pub fn on_executed(
        &mut self,
        task: ObjectId,
        result: Result<Payload, String>,
        now_ms: u64,
    ) -> Vec<Action> {
        let Some(provider) = self.provider.as_mut() else {
            return Vec::new();
        };
        let actions = provider
            .on_executed(task, result, now_ms)
            .unwrap_or_else(|e| {
                debug!("execution result ignored: {e}");
                Vec::new()
            });
        self.after(actions)
    }

    /// Handles `Finished` actions here (waiters are told, the requester is dropped) and passes
    /// the rest on.
    fn after(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut rest = Vec::with_capacity(actions.len());
        for action in actions {
            match action {
                Action::Finished(outcome) => {
                    let trace = outcome.trace();
                    if let Some(active) = self.requesters.remove(&trace) {
                        for waiter in active.waiters {
                            let _ = waiter.send(outcome.clone());
                        }
                    }
                    if self.finished.len() >= MAX_REMEMBERED_OUTCOMES {
                        self.finished.clear();
                    }
                    self.finished.insert(trace, outcome);
                }
                other => rest.push(other),
            }
        }
        rest
    }
}
