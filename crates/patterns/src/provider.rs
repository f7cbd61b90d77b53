//! The provider side of contract-net: bid on intents it can serve, accept awards for its own
//! offers, run tasks through the driver, report progress, done and a signed receipt.
//!
//! When an intent names an approval committee, an award for it runs only if its `TaskStart`
//! carries a valid quorum certificate for exactly that offer and input
//! ([`crate::verify_certificate`]); otherwise it is refused like any award the provider never
//! agreed to: an `award-refused` event with the reason goes back to the requester.
//!
//! **Open offers are bounded** ([`DEFAULT_MAX_OPEN_OFFERS`]). An offer passed over by a
//! `not-selected` reject stays open as a standby (its requester may still award it if the
//! winner fails) until it expires, but it gives way when the room is needed: at the limit, the
//! oldest standby offer is given up before a new intent is declined. Under a steady load of
//! rounds the standbys of finished rounds would otherwise fill the limit within seconds (an
//! offer lives 30 s by default) and the provider would decline every intent until they
//! expired. An award that names a given-up offer is refused `not-your-offer`, and the
//! requester awards another offer.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use pvl_protocol::{
    Body, Committee, Event, Intent, Keypair, Kind, ObjectId, Offer, Payload, PriceModel, PublicKey,
    Receipt, Resources, SignedObject, TaskDone, TaskProgress, TaskStatus,
};
use pvl_protocol::{EventType, attr};
use tracing::{debug, info, warn};

use crate::action::{Action, Input};
use crate::admission::Refusal;
use crate::consensus::verify_certificate;
use crate::error::{PatternError, Result};
use crate::util::{sign, text};

/// How a provider bids on one capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPolicy {
    /// What a task costs.
    pub price: PriceModel,
    /// Estimated completion time of any task, ms.
    pub eta_ms: u64,
    /// Estimated extra time per KiB of input, ms.
    pub eta_per_kib_ms: u64,
    /// The reliability it claims, basis points.
    pub reliability_bps: u16,
    /// The resources it promises not to exceed.
    pub resources: Resources,
    /// How long its offers stay valid, ms.
    pub offer_ttl_ms: u64,
}

impl OfferPolicy {
    /// A fixed-price policy with the given eta and reliability, no stated resources and
    /// offers valid for 30 s.
    pub fn fixed(price: u64, eta_ms: u64, reliability_bps: u16) -> Self {
        OfferPolicy {
            price: PriceModel::Fixed(price),
            eta_ms,
            eta_per_kib_ms: 0,
            reliability_bps,
            resources: Resources::default(),
            offer_ttl_ms: 30_000,
        }
    }

    /// The price of a task whose input is `input_size` bytes.
    pub fn price_for(&self, input_size: u64) -> u64 {
        match self.price {
            PriceModel::Fixed(p) => p,
            PriceModel::PerKib { base, per_kib } => {
                base.saturating_add(per_kib.saturating_mul(input_size.div_ceil(1024)))
            }
        }
    }

    /// The estimated completion time of a task whose input is `input_size` bytes.
    pub fn eta_for(&self, input_size: u64) -> u64 {
        self.eta_ms.saturating_add(
            self.eta_per_kib_ms
                .saturating_mul(input_size.div_ceil(1024)),
        )
    }
}

/// Whether and how a provider answers an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BidDecision {
    /// Offer on these terms.
    Bid(Offer),
    /// Do not offer, for this reason.
    Decline(String),
}

/// An offer this provider made and that can still be awarded.
#[derive(Debug, Clone)]
struct MadeOffer {
    offer: SignedObject,
    intent: ObjectId,
    requester: PublicKey,
    capability: String,
    cost: u64,
    expires_at_ms: u64,
    /// The intent's approval committee: an award needs its quorum certificate.
    committee: Option<Committee>,
    /// Passed over by a `not-selected` reject (and queued in `Provider::standby`).
    standby: bool,
}

/// A task this provider runs.
#[derive(Debug, Clone)]
struct Task {
    start: SignedObject,
    intent: ObjectId,
    requester: PublicKey,
    cost: u64,
    started_at_ms: u64,
    /// The last object of this task this provider signed or accepted (parent of the next).
    last: ObjectId,
}

/// Default cap on outstanding (not yet awarded or expired) offers.
pub const DEFAULT_MAX_OPEN_OFFERS: usize = 1024;

/// The intents a provider remembers having answered (until they expire, so that it bids at
/// most once on each) are capped at this many per open offer allowed: an entry is an id and
/// a time, and a short-lived intent is forgotten long before its standby offer expires.
const ANSWERED_PER_OPEN_OFFER: usize = 8;

/// Expired offers and answered intents are swept out at most this often: a sweep walks every
/// entry, and done on every object it put `on_object` at 9 % of a loaded provider's CPU
/// samples (`perf`, 1,000 standbys open). An
/// entry that expired since the last sweep changes nothing meanwhile (an expired intent is
/// declined, an award of an expired offer is answered with a failure, either way).
const SWEEP_EVERY_MS: u64 = 250;

/// The provider side of contract-net for one node, over any number of intents and tasks.
/// Sans-I/O: feed it objects with the current time, carry out the [`Action`]s it returns;
/// call [`Provider::report_progress`] and [`Provider::on_executed`] for the tasks it asked to
/// [`Action::Execute`].
pub struct Provider {
    key: Keypair,
    policies: BTreeMap<String, OfferPolicy>,
    max_concurrent: usize,
    max_open_offers: usize,
    /// Outstanding offers by offer id.
    offers: HashMap<ObjectId, MadeOffer>,
    /// Offers passed over by a `not-selected` reject, oldest first: given up first when the
    /// open offers reach their limit. An id whose offer is gone (awarded, expired) is skipped
    /// when met, and dropped at the next sweep of expired entries.
    standby: VecDeque<ObjectId>,
    /// How many of `offers` are standbys.
    standbys: usize,
    /// When expired offers and answered intents are next swept out (at most every
    /// [`SWEEP_EVERY_MS`]).
    next_sweep_ms: u64,
    /// Intents already answered (intent id -> expiry), to bid at most once per intent.
    answered: HashMap<ObjectId, u64>,
    /// Running tasks by task id.
    tasks: HashMap<ObjectId, Task>,
    /// Capabilities whose bids an agent program decides ([`Provider::serve_by_agent`]).
    agent_bids: BTreeSet<String>,
    /// Intents handed to an agent program for a bid, waiting for its answer.
    deciding: HashMap<ObjectId, SignedObject>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("signer", &self.key.public())
            .field("capabilities", &self.policies.keys().collect::<Vec<_>>())
            .field("max_concurrent", &self.max_concurrent)
            .field("open_offers", &self.offers.len())
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Provider {
    /// A provider signing with `key` that runs at most `max_concurrent` tasks at once and
    /// serves nothing until [`Provider::serve`] is called.
    pub fn new(key: Keypair, max_concurrent: usize) -> Self {
        Provider {
            key,
            policies: BTreeMap::new(),
            max_concurrent,
            max_open_offers: DEFAULT_MAX_OPEN_OFFERS,
            offers: HashMap::new(),
            standby: VecDeque::new(),
            standbys: 0,
            next_sweep_ms: 0,
            answered: HashMap::new(),
            tasks: HashMap::new(),
            agent_bids: BTreeSet::new(),
            deciding: HashMap::new(),
        }
    }

    /// Serves `capability`, its bids decided by an agent program: every intent that passes
    /// the checks that need no terms (audience, expiry, free slots, outstanding offers) goes
    /// out as [`Action::DecideOffer`], and the program's terms come back as
    /// [`Input::OfferDecided`]; they must still meet the intent's budget, deadline, minimum
    /// reliability and resource limits. `policy` gives only the offers' lifetime cap.
    pub fn serve_by_agent(mut self, capability: impl Into<String>, policy: OfferPolicy) -> Self {
        let capability = capability.into();
        self.agent_bids.insert(capability.clone());
        self.policies.insert(capability, policy);
        self
    }

    /// Serves `capability` with `policy` (replacing an earlier policy for it).
    pub fn serve(mut self, capability: impl Into<String>, policy: OfferPolicy) -> Self {
        self.policies.insert(capability.into(), policy);
        self
    }

    /// Caps the number of outstanding offers (default [`DEFAULT_MAX_OPEN_OFFERS`]).
    pub fn with_max_open_offers(mut self, max: usize) -> Self {
        self.max_open_offers = max;
        self
    }

    /// This provider's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// Tasks running now.
    pub fn active_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Offers made that are neither awarded nor known to be expired.
    pub fn open_offers(&self) -> usize {
        self.offers.len()
    }

    /// The ids of the running tasks.
    pub fn task_ids(&self) -> Vec<ObjectId> {
        self.tasks.keys().copied().collect()
    }

    /// Feeds one input. Providers set no timers, so a timer input is refused.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Result<Vec<Action>> {
        match input {
            Input::Received(object) => self.on_object(object, now_ms),
            Input::Progress {
                task,
                fraction_bps,
                message,
            } => self.report_progress(task, fraction_bps, &message, now_ms),
            Input::Executed { task, result } => self.on_executed(task, result, now_ms),
            Input::OfferDecided { intent, decision } => {
                self.on_offer_decided(intent, decision, now_ms)
            }
            Input::OfferRefused { offer, reason, .. } => {
                self.on_offer_refused(&offer, &reason);
                Ok(Vec::new())
            }
            Input::Timer(token) => Err(PatternError::Invalid(format!(
                "a provider sets no timers, got {}",
                token.kind
            ))),
            Input::AwardRefused { task, .. } => Err(PatternError::Invalid(format!(
                "a provider awards nothing (award refusal for task {})",
                task.short()
            ))),
            Input::IntentDeclined { intent, .. } => Err(PatternError::Invalid(format!(
                "a provider sends no intents (decline of intent {})",
                intent.short()
            ))),
            Input::VoteDecided { proposal, .. } => Err(PatternError::Invalid(format!(
                "a provider does not vote (decision on proposal {})",
                proposal.id().short()
            ))),
        }
    }

    /// An object arrived: an intent (maybe bid), an award, a reject of one of its offers, or
    /// its countersigned receipt.
    pub fn on_object(&mut self, object: SignedObject, now_ms: u64) -> Result<Vec<Action>> {
        let _span = tracing::info_span!(
            attr::PROVIDER,
            me = %self.key.public().short(),
            trace = %object.trace_id().short()
        )
        .entered();
        self.forget_expired(now_ms);
        match object.kind() {
            Kind::Intent => self.on_intent(object, now_ms),
            Kind::TaskStart => self.on_award(object, now_ms),
            Kind::Reject => self.on_reject(object),
            Kind::Receipt => self.on_countersigned(object),
            kind => Err(PatternError::Unexpected {
                kind,
                id: object.id(),
                state: "serving",
            }),
        }
    }

    /// Decides whether to bid on `intent` at `now_ms`, without changing anything. For a
    /// capability whose bids an agent program decides ([`Provider::serve_by_agent`]), `Bid`
    /// with zero terms means "ask the program": only the checks that need no terms were made.
    pub fn evaluate(&self, intent: &SignedObject, now_ms: u64) -> BidDecision {
        let Body::Intent(body) = intent.body() else {
            return BidDecision::Decline(format!("a {} is not an intent", intent.kind()));
        };
        self.evaluate_intent(intent.id(), body, now_ms)
    }

    fn evaluate_intent(&self, id: ObjectId, intent: &Intent, now_ms: u64) -> BidDecision {
        let decline = BidDecision::Decline;
        let Some(policy) = self.policies.get(&intent.capability) else {
            return decline(format!("capability `{}` not served", intent.capability));
        };
        if let Some(audience) = &intent.audience
            && !audience.includes(&id, &self.key.public())
        {
            return decline(format!(
                "not in the intent's audience (about {} of {} providers asked)",
                audience.wanted, audience.of
            ));
        }
        if intent.expires_at_ms < now_ms {
            return decline("the intent no longer accepts offers".into());
        }
        if self.answered.contains_key(&id) {
            return decline("already offered on this intent".into());
        }
        if self.tasks.len() >= self.max_concurrent {
            return decline(format!(
                "no free slot: {} of {} tasks running",
                self.tasks.len(),
                self.max_concurrent
            ));
        }
        // Standby offers give way to new ones (see the module docs): only the others count.
        let pending = self.offers.len().saturating_sub(self.standbys);
        if pending >= self.max_open_offers {
            return decline(format!("{pending} offers outstanding, the limit"));
        }
        let remembered = self.max_open_offers.saturating_mul(ANSWERED_PER_OPEN_OFFER);
        if self.answered.len() >= remembered {
            return decline(format!(
                "{} intents answered and not yet expired, the limit",
                self.answered.len()
            ));
        }
        if self.agent_bids.contains(&intent.capability) {
            // The terms are the agent program's: checked when they come back.
            return BidDecision::Bid(Offer {
                intent: id,
                cost: 0,
                eta_ms: 0,
                reliability_bps: 0,
                resources: Resources::default(),
                expires_at_ms: intent.expires_at_ms,
            });
        }
        let size = intent.input.size();
        let cost = policy.price_for(size);
        let eta_ms = policy.eta_for(size);
        self.check_terms(
            id,
            intent,
            cost,
            eta_ms,
            policy.reliability_bps,
            &policy.resources,
            policy.offer_ttl_ms,
            now_ms,
        )
    }

    /// Whether terms meet the intent's constraints: the offer on them, or why not.
    #[allow(clippy::too_many_arguments)]
    fn check_terms(
        &self,
        id: ObjectId,
        intent: &Intent,
        cost: u64,
        eta_ms: u64,
        reliability_bps: u16,
        resources: &Resources,
        ttl_ms: u64,
        now_ms: u64,
    ) -> BidDecision {
        let decline = BidDecision::Decline;
        let c = &intent.constraints;
        if let Some(max) = c.max_cost
            && cost > max
        {
            return decline(format!("price {cost} is above the budget {max}"));
        }
        if let Some(deadline) = c.deadline_ms
            && now_ms.saturating_add(eta_ms) > deadline
        {
            return decline(format!("eta {eta_ms} ms cannot meet the deadline"));
        }
        if let Some(min) = c.min_reliability_bps
            && reliability_bps < min
        {
            return decline(format!(
                "reliability {reliability_bps} bps is below the minimum {min} bps"
            ));
        }
        if !resources.fits_within(&c.resources) {
            return decline("the resources it needs exceed the intent's limits".into());
        }
        let ttl = ttl_ms.clamp(1, pvl_protocol::MAX_LIFETIME_MS);
        let mut expires_at_ms = now_ms.saturating_add(ttl);
        if let Some(deadline) = c.deadline_ms {
            expires_at_ms = expires_at_ms.min(deadline.max(now_ms));
        }
        BidDecision::Bid(Offer {
            intent: id,
            cost,
            eta_ms,
            reliability_bps,
            resources: resources.clone(),
            expires_at_ms,
        })
    }

    fn on_intent(&mut self, intent: SignedObject, now_ms: u64) -> Result<Vec<Action>> {
        let Body::Intent(body) = intent.body() else {
            return Err(PatternError::Invalid("not an intent".into()));
        };
        let offer = match self.evaluate_intent(intent.id(), body, now_ms) {
            BidDecision::Bid(offer) => offer,
            BidDecision::Decline(reason) => {
                debug!(intent = %intent.id().short(), %reason, "not bidding");
                return Ok(Vec::new());
            }
        };
        if self.agent_bids.contains(&body.capability) {
            debug!(intent = %intent.id().short(), "asking the agent program for terms");
            self.answered.insert(intent.id(), body.expires_at_ms);
            self.deciding.insert(intent.id(), intent.clone());
            return Ok(vec![
                Action::Record(intent.clone()),
                Action::DecideOffer(intent),
            ]);
        }
        self.make_offer(&intent, offer, now_ms)
    }

    /// The agent program's answer to an [`Action::DecideOffer`]: its terms, checked against the
    /// intent's constraints, become a signed offer; a decline (or terms that do not fit) ends
    /// the matter with nothing sent.
    fn on_offer_decided(
        &mut self,
        intent_id: ObjectId,
        decision: BidDecision,
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        let Some(intent) = self.deciding.remove(&intent_id) else {
            return Err(PatternError::Invalid(format!(
                "no bid was asked for intent {}",
                intent_id.short()
            )));
        };
        let Body::Intent(body) = intent.body() else {
            return Err(PatternError::Invalid("not an intent".into()));
        };
        let terms = match decision {
            BidDecision::Bid(terms) => terms,
            BidDecision::Decline(reason) => {
                info!(intent = %intent_id.short(), %reason, "the agent program declined");
                return Ok(Vec::new());
            }
        };
        if body.expires_at_ms < now_ms {
            info!(intent = %intent_id.short(), "the agent program answered after the intent closed");
            return Ok(Vec::new());
        }
        let ttl = terms.expires_at_ms.saturating_sub(now_ms).max(1);
        let policy_ttl = self
            .policies
            .get(&body.capability)
            .map_or(ttl, |p| p.offer_ttl_ms);
        match self.check_terms(
            intent_id,
            body,
            terms.cost,
            terms.eta_ms,
            terms.reliability_bps,
            &terms.resources,
            ttl.min(policy_ttl),
            now_ms,
        ) {
            BidDecision::Bid(offer) => self.make_offer(&intent, offer, now_ms),
            BidDecision::Decline(reason) => {
                info!(intent = %intent_id.short(), %reason, "the agent program's terms do not fit the intent");
                Ok(Vec::new())
            }
        }
    }

    /// Signs `offer` on `intent` and sends it to the requester (recording both).
    fn make_offer(
        &mut self,
        intent: &SignedObject,
        offer: Offer,
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        let Body::Intent(body) = intent.body() else {
            return Err(PatternError::Invalid("not an intent".into()));
        };
        let capability = body.capability.clone();
        let signed = sign(
            &self.key,
            Some(intent.trace_id()),
            &[intent.id()],
            now_ms,
            Body::Offer(offer.clone()),
        )?;
        debug!(intent = %intent.id().short(), cost = offer.cost, eta = offer.eta_ms, "offer sent");
        self.answered.insert(intent.id(), body.expires_at_ms);
        self.make_room();
        self.offers.insert(
            signed.id(),
            MadeOffer {
                offer: signed.clone(),
                intent: intent.id(),
                requester: intent.signer(),
                capability,
                cost: offer.cost,
                expires_at_ms: offer.expires_at_ms,
                committee: body.committee.clone(),
                standby: false,
            },
        );
        let mut actions = Vec::new();
        // The intent was recorded when it was handed to the agent program.
        if !self.agent_bids.contains(&body.capability) {
            actions.push(Action::Record(intent.clone()));
        }
        actions.push(Action::Record(signed.clone()));
        actions.push(Action::Send {
            to: intent.signer(),
            object: signed,
        });
        Ok(actions)
    }

    fn on_award(&mut self, start: SignedObject, now_ms: u64) -> Result<Vec<Action>> {
        let Body::TaskStart(award) = start.body() else {
            return Err(PatternError::Invalid("not a task start".into()));
        };
        let task = start.id();
        if self.tasks.contains_key(&task) {
            debug!(task = %task.short(), "award delivered twice");
            return Ok(Vec::new());
        }
        // Admission: an award for anything but an offer this provider made and holds, from
        // the requester that offer answered, is refused unrecorded (the sender sees why in the
        // acknowledgement).
        let not_ours = if award.provider != self.key.public() {
            Some(format!(
                "the award names provider {}, not this provider {}",
                award.provider.short(),
                self.key.public().short()
            ))
        } else {
            match self.offers.get(&award.offer) {
                None => Some(format!(
                    "this provider never made (or no longer holds) offer {}",
                    award.offer.short()
                )),
                Some(made) if made.requester != start.signer() => Some(format!(
                    "the award is signed by {}, but the intent was requested by {}",
                    start.signer().short(),
                    made.requester.short()
                )),
                Some(made) if made.offer.trace_id() != start.trace_id() => {
                    Some("the award belongs to another trace than the offer".to_string())
                }
                Some(_) => None,
            }
        };
        if let Some(reason) = not_ours {
            warn!(task = %task.short(), %reason, "award refused");
            return Err(PatternError::refused(
                Refusal::NotYourOffer,
                format!("award {}: {reason}", task.short()),
            ));
        }
        // A genuine award from the right requester whose certificate does not hold is part of
        // the conversation: recorded, and refused with an event back to the requester.
        let refusal = self
            .offers
            .get(&award.offer)
            .and_then(|made| made.committee.as_ref())
            .and_then(|committee| quorum_problem(&start, award, committee));
        if let Some(reason) = refusal {
            warn!(task = %task.short(), %reason, "award refused");
            let event = sign(
                &self.key,
                Some(start.trace_id()),
                &[task],
                now_ms,
                Body::Event(Event {
                    event_type: EventType::AwardRefused.to_string(),
                    about: vec![task, award.offer],
                    message: text(format!("award {} refused: {reason}", task.short())),
                    attrs: vec![(attr::REASON.into(), text(&reason))],
                }),
            )?;
            return Ok(vec![
                Action::Record(start.clone()),
                Action::Record(event.clone()),
                Action::Send {
                    to: start.signer(),
                    object: event,
                },
            ]);
        }
        let Some(made) = self.remove_offer(&award.offer) else {
            return Err(PatternError::Invalid("offer vanished".into()));
        };
        let mut actions = vec![Action::Record(start.clone())];
        // A genuine award this provider cannot honour: report failure so that the requester
        // reassigns at once instead of waiting for a timeout.
        let cannot = if made.expires_at_ms < now_ms {
            Some(format!(
                "the offer expired at {} ms before the award arrived",
                made.expires_at_ms
            ))
        } else if self.tasks.len() >= self.max_concurrent {
            Some(format!(
                "no free slot: {} of {} tasks running",
                self.tasks.len(),
                self.max_concurrent
            ))
        } else {
            None
        };
        if let Some(reason) = cannot {
            warn!(task = %task.short(), %reason, "cannot take the award");
            let done = sign(
                &self.key,
                Some(start.trace_id()),
                &[task],
                now_ms,
                Body::TaskDone(TaskDone {
                    task,
                    status: TaskStatus::Failed(text(reason)),
                    output: None,
                    started_at_ms: now_ms,
                    finished_at_ms: now_ms,
                }),
            )?;
            actions.push(Action::Record(done.clone()));
            actions.push(Action::Send {
                to: start.signer(),
                object: done,
            });
            return Ok(actions);
        }
        info!(task = %task.short(), capability = %made.capability, "award accepted, executing");
        actions.push(Action::Execute {
            task,
            capability: made.capability.clone(),
            input: award.input.clone(),
            deadline_ms: award.deadline_ms,
        });
        self.tasks.insert(
            task,
            Task {
                start: start.clone(),
                intent: made.intent,
                requester: made.requester,
                cost: made.cost,
                started_at_ms: now_ms,
                last: task,
            },
        );
        Ok(actions)
    }

    fn on_reject(&mut self, reject: SignedObject) -> Result<Vec<Action>> {
        let Body::Reject(body) = reject.body() else {
            return Err(PatternError::Invalid("not a reject".into()));
        };
        // One reject may name several offers (of several providers): act on ours.
        let mut ours = Vec::new();
        for (offer, code, _) in body.entries() {
            let Some(made) = self.offers.get(&offer) else {
                // The offer lapsed (or was awarded) here already, or is not ours; the reject
                // is still evidence.
                continue;
            };
            if made.requester != reject.signer() {
                return Err(PatternError::WrongSigner {
                    kind: Kind::Reject,
                    id: reject.id(),
                    expected: made.requester,
                    actual: reject.signer(),
                });
            }
            ours.push((offer, code));
        }
        if ours.is_empty() {
            // Evidence only when this provider takes part in the trace (an offer it still
            // holds there, or a task): otherwise not its conversation.
            let trace = reject.trace_id();
            let party = self.offers.values().any(|m| m.offer.trace_id() == trace)
                || self.tasks.values().any(|t| t.start.trace_id() == trace);
            if !party {
                return Err(PatternError::refused(
                    Refusal::NotYourOffer,
                    format!(
                        "reject {} names no offer of this provider's",
                        reject.id().short()
                    ),
                ));
            }
            debug!(offer = %body.offer.short(), code = ?body.code, "reject for no offer held");
        }
        for (offer, code) in ours {
            debug!(offer = %offer.short(), ?code, "offer rejected");
            // A "not selected" offer stays open as a standby: the requester may award it if
            // its winner fails.
            if code == pvl_protocol::RejectCode::NotSelected {
                if let Some(made) = self.offers.get_mut(&offer)
                    && !made.standby
                {
                    made.standby = true;
                    self.standbys += 1;
                    self.standby.push_back(offer);
                }
            } else {
                self.remove_offer(&offer);
            }
        }
        Ok(vec![Action::Record(reject)])
    }

    /// The requester refused `offer` in its acknowledgement (SPEC.md §19.3): it can never be
    /// awarded, so it is given up now rather than held, counted against the open-offer limit,
    /// until it expires. An offer already given up or awarded is no longer held: nothing to do.
    fn on_offer_refused(&mut self, offer: &ObjectId, reason: &str) {
        if self.remove_offer(offer).is_some() {
            info!(offer = %offer.short(), %reason, "offer refused by its requester: given up");
        }
    }

    fn on_countersigned(&mut self, receipt: SignedObject) -> Result<Vec<Action>> {
        let Body::Receipt(body) = receipt.body() else {
            return Err(PatternError::Invalid("not a receipt".into()));
        };
        if receipt.signer() != self.key.public() {
            // Not this provider's receipt: a requester's business (see the engine's routing).
            return Err(PatternError::WrongSigner {
                kind: Kind::Receipt,
                id: receipt.id(),
                expected: self.key.public(),
                actual: receipt.signer(),
            });
        }
        if !receipt.is_countersigned() {
            return Err(PatternError::Mismatch(format!(
                "receipt {} for task {} is not countersigned",
                receipt.id().short(),
                body.task.short()
            )));
        }
        info!(task = %body.task.short(), "countersigned receipt received");
        Ok(vec![Action::Record(receipt)])
    }

    /// Reports progress of a running task to its requester.
    pub fn report_progress(
        &mut self,
        task: ObjectId,
        fraction_bps: Option<u16>,
        message: &str,
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        let Some(t) = self.tasks.get_mut(&task) else {
            return Err(PatternError::UnknownTask(task));
        };
        let progress = sign(
            &self.key,
            Some(t.start.trace_id()),
            &[t.last],
            now_ms,
            Body::TaskProgress(TaskProgress {
                task,
                fraction_bps: fraction_bps.map(|f| f.min(pvl_protocol::BASIS_POINTS)),
                message: text(message),
            }),
        )?;
        t.last = progress.id();
        Ok(vec![
            Action::Record(progress.clone()),
            Action::Send {
                to: t.requester,
                object: progress,
            },
        ])
    }

    /// The driver finished executing `task`: `Ok(output)` or `Err(reason)`. Sends `TaskDone`
    /// and a signed `Receipt` to the requester and frees the slot.
    pub fn on_executed(
        &mut self,
        task: ObjectId,
        result: std::result::Result<Payload, String>,
        now_ms: u64,
    ) -> Result<Vec<Action>> {
        let Some(t) = self.tasks.remove(&task) else {
            return Err(PatternError::UnknownTask(task));
        };
        let _span = tracing::info_span!("provider", trace = %t.start.trace_id().short()).entered();
        let (status, output) = match result {
            Ok(output) => (TaskStatus::Ok, Some(output)),
            Err(reason) => (TaskStatus::Failed(text(reason)), None),
        };
        let finished_at_ms = now_ms.max(t.started_at_ms);
        let trace = Some(t.start.trace_id());
        let done = sign(
            &self.key,
            trace,
            &[t.last],
            now_ms,
            Body::TaskDone(TaskDone {
                task,
                status: status.clone(),
                output: output.clone(),
                started_at_ms: t.started_at_ms,
                finished_at_ms,
            }),
        )?;
        let receipt = sign(
            &self.key,
            trace,
            &[done.id()],
            now_ms,
            Body::Receipt(Receipt {
                task,
                intent: t.intent,
                requester: t.requester,
                status: status.clone(),
                output_sha256: output.as_ref().map(Payload::sha256),
                output_size: output.as_ref().map_or(0, Payload::size),
                cost: t.cost,
                started_at_ms: t.started_at_ms,
                finished_at_ms,
            }),
        )?;
        info!(task = %task.short(), ok = status.is_ok(), "task finished");
        Ok(vec![
            Action::Record(done.clone()),
            Action::Send {
                to: t.requester,
                object: done,
            },
            Action::Record(receipt.clone()),
            Action::Send {
                to: t.requester,
                object: receipt,
            },
        ])
    }

    /// At the open-offer limit, gives up standby offers, oldest first, until one more fits
    /// (or none is left).
    fn make_room(&mut self) {
        while self.offers.len() >= self.max_open_offers {
            let Some(oldest) = self.standby.pop_front() else {
                return;
            };
            if self.offers.get(&oldest).is_some_and(|made| made.standby) {
                self.remove_offer(&oldest);
                debug!(offer = %oldest.short(), "standby offer given up for a new one");
            }
        }
    }

    /// Removes an open offer, keeping the count of standbys.
    fn remove_offer(&mut self, id: &ObjectId) -> Option<MadeOffer> {
        let made = self.offers.remove(id)?;
        if made.standby {
            self.standbys = self.standbys.saturating_sub(1);
        }
        Some(made)
    }

    fn forget_expired(&mut self, now_ms: u64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        self.offers.retain(|_, o| o.expires_at_ms >= now_ms);
        let offers = &self.offers;
        self.standby
            .retain(|id| offers.get(id).is_some_and(|made| made.standby));
        self.standbys = self.standby.len();
        self.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        self.answered.retain(|_, expires| *expires >= now_ms);
        let answered = &self.answered;
        self.deciding.retain(|id, _| answered.contains_key(id));
    }
}

/// Why the award's quorum certificate does not let it run when the intent named `committee`
/// (none, forged, short, for another offer or input, proposed by someone else than the
/// requester who awards), or `None` when it does.
fn quorum_problem(
    start: &SignedObject,
    award: &pvl_protocol::TaskStart,
    committee: &Committee,
) -> Option<String> {
    let Some(quorum) = &award.quorum else {
        return Some(
            "the intent names an approval committee, but the award carries no quorum certificate"
                .to_string(),
        );
    };
    if let Err(e) = verify_certificate(quorum, committee, award.offer, award.input.sha256()) {
        return Some(format!("invalid quorum certificate: {e}"));
    }
    match quorum.body() {
        Body::QuorumCert(cert) if cert.proposal.signer() != start.signer() => Some(format!(
            "invalid quorum certificate: the proposal was signed by {}, not by the requester {}",
            cert.proposal.signer().short(),
            start.signer().short()
        )),
        _ => None,
    }
}
