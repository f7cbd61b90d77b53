//! Machinery shared by the composite patterns ([`crate::WorkflowRun`], [`crate::ParallelRun`]):
//! a root intent that is recorded but not published, and numbered parts, each run by a
//! contract-net [`Requester`] whose intents are children in the root's trace.
//!
//! The composite routes every input to the part it belongs to ([`Requester::claims`] for
//! objects, [`TimerToken::scope`] for timers), passes the part's actions on, and turns the
//! part's `Finished` action into a [`PartEvent`] for the pattern to act on. It also notices
//! each new award (the part's requester moved to a new task), so the pattern can record a
//! `stage-started` / `shard-started` event naming the provider.

use std::sync::Arc;

use pvl_protocol::EventType;
use pvl_protocol::{Body, Intent, Keypair, Kind, ObjectId, PublicKey, SignedObject, TraceId};

use crate::action::{Action, FailureReason, Input, Outcome, PartResult, PartStatus, TimerToken};
use crate::admission::Refusal;
use crate::coordination::Coordination;
use crate::error::{PatternError, Result};
use crate::requester::{RequestSpec, Requester, RequesterState};
use crate::select::{NoHistory, ReliabilitySource};
use crate::util::{EventText, sign, sign_event, text};

/// Something that happened to a part while an input was handled.
// At most two per input: boxing the outcome would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum PartEvent {
    /// The part's requester awarded a (new) task.
    Awarded {
        part: usize,
        task: ObjectId,
        provider: PublicKey,
    },
    /// The part's requester finished.
    Finished { part: usize, outcome: Outcome },
}

/// One part: what is known of it and the requester running its current attempt.
pub(crate) struct Part {
    pub(crate) result: PartResult,
    pub(crate) requester: Option<Requester>,
    /// Tasks awarded by the requesters of earlier attempts.
    awards_before: u32,
    /// Attempts started (1 + restarts).
    pub(crate) attempts: u32,
}

/// A root intent and its parts.
pub(crate) struct Composite {
    key: Keypair,
    history: Arc<dyn ReliabilitySource + Send + Sync>,
    pub(crate) root: Option<SignedObject>,
    pub(crate) parts: Vec<Part>,
    pub(crate) outcome: Option<Outcome>,
    /// Parts `0..spread` rank providers already holding another of these parts last when
    /// they select (parallel shards); 0 for none.
    spread: usize,
}

impl Composite {
    /// A composite signing with `key`, with parts `(label, capability)` not yet started.
    pub(crate) fn new(key: Keypair, parts: Vec<(String, String)>, spread: usize) -> Self {
        Composite {
            key,
            history: Arc::new(NoHistory),
            root: None,
            parts: parts
                .into_iter()
                .map(|(label, capability)| Part {
                    result: PartResult::pending(label, capability),
                    requester: None,
                    awards_before: 0,
                    attempts: 0,
                })
                .collect(),
            outcome: None,
            spread,
        }
    }

    pub(crate) fn set_history(&mut self, history: Arc<dyn ReliabilitySource + Send + Sync>) {
        self.history = history;
    }

    pub(crate) fn trace(&self) -> Option<TraceId> {
        self.root.as_ref().map(SignedObject::id)
    }

    pub(crate) fn root_id(&self) -> Result<ObjectId> {
        self.trace()
            .ok_or_else(|| PatternError::Invalid("the composite was not started".into()))
    }

    pub(crate) fn is_started(&self) -> bool {
        self.root.is_some()
    }

    /// Signs the root intent (a new trace) and records it; it is not published.
    pub(crate) fn sign_root(
        &mut self,
        intent: Intent,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        if self.root.is_some() {
            return Err(PatternError::Invalid("already started".into()));
        }
        let root = sign(&self.key, None, &[], now_ms, Body::Intent(intent))?;
        actions.push(Action::Record(root.clone()));
        self.root = Some(root);
        Ok(())
    }

    /// Signs an event of this trace.
    pub(crate) fn event(
        &self,
        event_type: EventType,
        about: Vec<ObjectId>,
        parents: &[ObjectId],
        message: String,
        attrs: Vec<(&str, String)>,
        now_ms: u64,
    ) -> Result<SignedObject> {
        let root = self.root_id()?;
        let parents: Vec<ObjectId> = if parents.is_empty() {
            vec![root]
        } else {
            parents.to_vec()
        };
        sign_event(
            &self.key,
            Some(root),
            &parents,
            now_ms,
            EventText {
                event_type,
                about,
                message,
                attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            },
        )
    }

    /// Starts (or restarts) part `index` with a fresh requester for `spec`, its intent a child
    /// of `parents` in the root's trace.
    pub(crate) fn launch(
        &mut self,
        index: usize,
        spec: RequestSpec,
        parents: &[ObjectId],
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let trace = self.root_id()?;
        let mut requester =
            Requester::new(self.key.clone(), spec).with_history(Arc::clone(&self.history));
        let out = requester.start_within(trace, parents, now_ms)?;
        let part = self.part_mut(index)?;
        part.awards_before = part.result.awards;
        part.attempts += 1;
        part.result.status = PartStatus::Running;
        part.result.started_ms.get_or_insert(now_ms);
        part.result.finished_ms = None;
        part.requester = Some(requester);
        // A requester never finishes in `start`; pass everything on.
        actions.extend(out);
        Ok(())
    }

    /// Routes one input to its part and reports what happened to the part.
    pub(crate) fn route(
        &mut self,
        input: Input,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<Vec<PartEvent>> {
        let trace = self.root_id()?;
        let index = match &input {
            Input::Received(object) => {
                if object.trace_id() != trace {
                    return Err(PatternError::WrongTrace {
                        id: object.id(),
                        expected: trace,
                        actual: object.trace_id(),
                    });
                }
                self.part_claiming(object).ok_or_else(|| {
                    // No part asked for it: an offer for none of the parts' intents, a
                    // report about none of their tasks (admission, see `crate::admission`).
                    let refusal = match object.kind() {
                        Kind::Offer => Refusal::UnknownIntent,
                        Kind::TaskProgress | Kind::TaskDone | Kind::Receipt | Kind::Event => {
                            Refusal::TaskNotLive
                        }
                        Kind::Vote => Refusal::NoOpenBallot,
                        _ => Refusal::Unexpected,
                    };
                    PatternError::refused(
                        refusal,
                        format!(
                            "{} {}: no part of this run claims it",
                            object.kind(),
                            object.id().short()
                        ),
                    )
                })?
            }
            Input::Timer(token) => self.part_of_timer(trace, token)?,
            Input::AwardRefused { task, .. } => self
                .parts
                .iter()
                .position(|p| p.requester.as_ref().is_some_and(|r| r.awarded(task)))
                .ok_or(PatternError::UnknownTask(*task))?,
            Input::Progress { task, .. } | Input::Executed { task, .. } => {
                return Err(PatternError::Invalid(format!(
                    "a composite executes nothing (executor input for task {})",
                    task.short()
                )));
            }
            Input::VoteDecided { proposal, .. } => {
                return Err(PatternError::Invalid(format!(
                    "a composite does not vote (decision on proposal {})",
                    proposal.id().short()
                )));
            }
            Input::OfferDecided { intent, .. } => {
                return Err(PatternError::Invalid(format!(
                    "a composite does not bid (terms for intent {})",
                    intent.short()
                )));
            }
            Input::OfferRefused { offer, .. } => {
                return Err(PatternError::Invalid(format!(
                    "a composite makes no offers (refusal of offer {})",
                    offer.short()
                )));
            }
            // Only single contract-net runs direct their intents; a composite's parts gossip.
            Input::IntentDeclined { intent, .. } => {
                return Err(PatternError::Invalid(format!(
                    "a composite directs no intents (decline of intent {})",
                    intent.short()
                )));
            }
        };
        let busy = if index < self.spread {
            self.busy_providers(index)
        } else {
            Vec::new()
        };
        let part = self.part_mut(index)?;
        let Some(requester) = part.requester.as_mut() else {
            return Err(PatternError::Invalid(format!(
                "part {index} has no requester"
            )));
        };
        requester.set_ranked_last(busy);
        let out = requester.handle(input, now_ms)?;
        let mut events = Vec::new();
        if let RequesterState::Awarded { task, provider } = requester.state()
            && part.result.task != Some(task)
        {
            part.result.task = Some(task);
            part.result.provider = Some(provider);
            part.result.awards = part.awards_before + requester.stats().awards;
            events.push(PartEvent::Awarded {
                part: index,
                task,
                provider,
            });
        }
        for action in out {
            match action {
                Action::Finished(outcome) => {
                    Self::settle(part, &outcome, now_ms);
                    events.push(PartEvent::Finished {
                        part: index,
                        outcome,
                    });
                }
                other => actions.push(other),
            }
        }
        Ok(events)
    }

    /// Whether some part's requester claims `object`.
    pub(crate) fn claims(&self, object: &SignedObject) -> bool {
        self.part_claiming(object).is_some()
    }

    /// Cancels every part still running; their outcomes are swallowed, the parts marked
    /// cancelled.
    pub(crate) fn cancel_running(
        &mut self,
        reason: &str,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        for part in &mut self.parts {
            let Some(requester) = part.requester.as_mut() else {
                continue;
            };
            if requester.is_finished() {
                continue;
            }
            let out = requester.cancel(reason, now_ms)?;
            actions.extend(
                out.into_iter()
                    .filter(|a| !matches!(a, Action::Finished(_))),
            );
            part.result.status = PartStatus::Cancelled;
            part.result.finished_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Every part's result, in part order.
    pub(crate) fn results(&self) -> Vec<PartResult> {
        self.parts.iter().map(|p| p.result.clone()).collect()
    }

    /// Marks a part failed without a requester outcome (e.g. its input could not be built).
    pub(crate) fn mark_failed(&mut self, index: usize, reason: &str, now_ms: u64) -> Result<()> {
        let part = self.part_mut(index)?;
        part.result.status = PartStatus::Failed(text(reason));
        part.result.started_ms.get_or_insert(now_ms);
        part.result.finished_ms = Some(now_ms);
        Ok(())
    }

    pub(crate) fn part(&self, index: usize) -> Result<&Part> {
        self.parts
            .get(index)
            .ok_or_else(|| PatternError::Invalid(format!("no part {index}")))
    }

    fn part_mut(&mut self, index: usize) -> Result<&mut Part> {
        self.parts
            .get_mut(index)
            .ok_or_else(|| PatternError::Invalid(format!("no part {index}")))
    }

    fn part_claiming(&self, object: &SignedObject) -> Option<usize> {
        self.parts
            .iter()
            .position(|p| p.requester.as_ref().is_some_and(|r| r.claims(object)))
    }

    fn part_of_timer(&self, trace: TraceId, token: &TimerToken) -> Result<usize> {
        if token.trace != trace {
            return Err(PatternError::Invalid(format!(
                "timer {} belongs to another trace",
                token.kind
            )));
        }
        self.parts
            .iter()
            .position(|p| {
                p.requester
                    .as_ref()
                    .is_some_and(|r| r.scope() == Some(token.scope))
            })
            .ok_or_else(|| {
                PatternError::Invalid(format!("timer {} belongs to no part", token.kind))
            })
    }

    /// Providers holding (awarded and running, or done) a spread part other than `index`.
    fn busy_providers(&self, index: usize) -> Vec<PublicKey> {
        self.parts
            .iter()
            .take(self.spread)
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, p)| match (&p.result.status, &p.requester) {
                (PartStatus::Done, _) => p.result.provider,
                (PartStatus::Running, Some(r)) => match r.state() {
                    RequesterState::Awarded { provider, .. } => Some(provider),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn settle(part: &mut Part, outcome: &Outcome, now_ms: u64) {
        let result = &mut part.result;
        result.finished_ms = Some(now_ms);
        match outcome {
            Outcome::Completed(c) => {
                result.status = PartStatus::Done;
                result.task = Some(c.task);
                result.provider = Some(c.provider);
                result.offer = Some(c.offer);
                result.cost = c.cost;
                result.receipt = c.receipt.clone();
                result.output = c.output.clone();
                result.awards = part.awards_before + c.awards;
            }
            Outcome::Failed(f) => {
                result.status = PartStatus::Failed(text(format!("{}: {}", f.reason, f.detail)));
            }
        }
    }
}

/// A pattern made of parts (workflow, parallel): what it adds to [`Composite`]. Every such
/// pattern is a [`Coordination`] through the blanket implementation below.
pub(crate) trait CompositeRun: Send {
    /// The pattern in words, for errors and the cancellation reason (`the workflow`).
    const WHAT: &'static str;
    /// The shared machinery.
    fn composite(&self) -> &Composite;
    /// The shared machinery, mutably.
    fn composite_mut(&mut self) -> &mut Composite;
    /// Signs the root and starts the parts that are ready.
    fn start_run(&mut self, now_ms: u64) -> Result<Vec<Action>>;
    /// One input for one of the parts.
    fn on_input(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>>;
    /// Ends the run as failed (records the pattern's failure event).
    fn fail_run(
        &mut self,
        reason: FailureReason,
        detail: String,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) -> Result<()>;
}

impl<T: CompositeRun> Coordination for T {
    fn start(&mut self, now_ms: u64) -> Result<Vec<Action>> {
        if self.composite().is_started() {
            return Err(PatternError::Invalid(format!(
                "{} was already started",
                T::WHAT
            )));
        }
        self.start_run(now_ms)
    }

    fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>> {
        self.on_input(input, now_ms)
    }

    fn trace(&self) -> Option<TraceId> {
        self.composite().trace()
    }

    fn claims(&self, object: &SignedObject) -> bool {
        self.composite().outcome.is_none() && self.composite().claims(object)
    }

    fn is_finished(&self) -> bool {
        self.composite().outcome.is_some()
    }

    fn outcome(&self) -> Option<&Outcome> {
        self.composite().outcome.as_ref()
    }

    fn cancel(&mut self, reason: &str, now_ms: u64) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        if !self.composite().is_started() || self.composite().outcome.is_some() {
            return Ok(actions);
        }
        self.composite_mut()
            .cancel_running(reason, now_ms, &mut actions)?;
        self.fail_run(
            FailureReason::Cancelled,
            format!("{} was cancelled: {reason}", T::WHAT),
            now_ms,
            &mut actions,
        )?;
        Ok(actions)
    }
}
