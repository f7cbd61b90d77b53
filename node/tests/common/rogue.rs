//! A rogue peer for tests: a real libp2p swarm speaking pvl's protocols (pvl-net, from its
//! constants: direct-message sessions, the gossip topics, `/pvl/kad/1.0.0`) with its own key, that
//! sends validly signed objects out of context on demand and returns the acknowledgement it
//! received. It acknowledges whatever it is sent itself (it runs no engine).

use std::path::Path;
use std::time::Duration;

use pvl_net::{Ack, DirectAcks, NetConfig, NetEvent, PeerId};
use pvl_protocol::{
    Body, Committee, Envelope, Intent, Keypair, Kind, ObjectId, Offer, Payload, Proposal,
    PublicKey, Receipt, SignedObject, TaskDone, TaskStart, TaskStatus, Vote,
};
use tokio::sync::mpsc;

use super::{WAIT, pvl_json, wait_until};

/// A bare pvl-net peer in the test process.
pub struct Rogue {
    runtime: tokio::runtime::Runtime,
    client: pvl_net::Client,
    events: mpsc::Receiver<NetEvent>,
    /// Its signing key (also its libp2p key).
    pub key: Keypair,
    /// Every object it received, in order.
    pub received: Vec<SignedObject>,
}

impl Rogue {
    /// Joins the network through the node in `boot` and waits until that node knows it.
    pub fn join(boot: &Path) -> Rogue {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let addr: pvl_net::Multiaddr = pvl_json(boot, &["id"])["listen_addrs"][0]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let keypair = pvl_net::identity::Keypair::generate_ed25519();
        let key = pvl_net::protocol_keypair(&keypair).unwrap();
        let mut config = NetConfig::new(keypair);
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        config.bootstrap = vec![addr];
        config.direct_acks = DirectAcks::OnReceipt;
        // A flood stops once no peer takes it any more (the rogue banned): don't wait long.
        config.publish_timeout = Duration::from_secs(1);
        let (client, events, event_loop) =
            runtime.block_on(async { pvl_net::new(config) }).unwrap();
        runtime.spawn(event_loop.run());
        let me = client.peer_id().to_string();
        wait_until("the node to know the rogue", || {
            pvl_json(boot, &["peers"])
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["peer_id"] == me.as_str() && p["connected"] == true)
        });
        Rogue {
            runtime,
            client,
            events,
            key,
            received: Vec::new(),
        }
    }

    /// Waits (up to [`WAIT`]) for an object it received, by gossip or directly, that `pred`
    /// picks.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&SignedObject) -> bool) -> SignedObject {
        if let Some(o) = self.received.iter().find(|o| pred(o)) {
            return o.clone();
        }
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let events = &mut self.events;
            let event = self
                .runtime
                .block_on(async { tokio::time::timeout(left, events.recv()).await })
                .unwrap_or_else(|_| panic!("the rogue timed out waiting for {what}"))
                .expect("the rogue's event loop stopped");
            if let NetEvent::Object { object, .. } = event {
                let object = *object;
                self.received.push(object.clone());
                if pred(&object) {
                    return object;
                }
            }
        }
    }

    /// Sends `object` directly to the peer whose signing key is `to`; returns its ack.
    /// A message that could not be delivered (the peer not found yet through Kademlia, a
    /// connection not up yet) is sent again, until [`WAIT`].
    pub fn send(&self, to: &PublicKey, object: SignedObject) -> Ack {
        let peer: PeerId = pvl_net::peer_id_of(to).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let result = self
                .runtime
                .block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(20),
                        self.client.deliver(peer, object.clone()),
                    )
                    .await
                })
                .expect("no acknowledgement within 20 s");
            match result {
                Ok(ack) => return ack,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("rogue: {} not delivered ({e}); again", object.kind());
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("the rogue could not deliver a {}: {e}", object.kind()),
            }
        }
    }

    /// Signs `body` in `trace` with `parents`, dated now, with `key` (its own by default).
    pub fn sign_as(
        &self,
        key: &Keypair,
        trace: ObjectId,
        parents: &[ObjectId],
        body: Body,
    ) -> SignedObject {
        Envelope {
            trace: Some(trace),
            parents: parents.to_vec(),
            signer: key.public(),
            timestamp_ms: pvl_net::now_ms(),
            body,
        }
        .sign(key)
        .unwrap()
    }

    /// Signs `body` with its own key.
    pub fn sign(&self, trace: ObjectId, parents: &[ObjectId], body: Body) -> SignedObject {
        self.sign_as(&self.key, trace, parents, body)
    }

    fn offer_body(intent: ObjectId) -> Body {
        Body::Offer(Offer {
            intent,
            cost: 1,
            eta_ms: 10,
            reliability_bps: 10_000,
            resources: Default::default(),
            expires_at_ms: pvl_net::now_ms() + 20_000,
        })
    }

    /// An offer for an intent that does not exist (in a trace that does not exist), to `to`.
    /// Returns the ack and the offer.
    pub fn offer_for_unknown_intent(&self, to: &PublicKey) -> (Ack, SignedObject) {
        let nowhere = ObjectId(random_bytes());
        let offer = self.sign(nowhere, &[nowhere], Self::offer_body(nowhere));
        (self.send(to, offer.clone()), offer)
    }

    /// An offer for `intent` (e.g. one whose round is over), to its requester.
    pub fn offer_for(&self, intent: &SignedObject) -> (Ack, SignedObject) {
        let offer = self.sign(
            intent.trace_id(),
            &[intent.id()],
            Self::offer_body(intent.id()),
        );
        (self.send(&intent.signer(), offer.clone()), offer)
    }

    /// An award, in `intent`'s trace and signed by the rogue, naming `provider` and an offer
    /// it never made; sent to `provider`.
    pub fn award_for_offer_never_made(
        &self,
        intent: &SignedObject,
        provider: &PublicKey,
    ) -> (Ack, SignedObject) {
        let award = self.sign(
            intent.trace_id(),
            &[intent.id()],
            Body::TaskStart(TaskStart {
                offer: ObjectId(random_bytes()),
                provider: *provider,
                label: "main".into(),
                input: Payload::Inline(b"hello".to_vec()),
                deadline_ms: None,
                quorum: None,
            }),
        );
        (self.send(provider, award.clone()), award)
    }

    /// A successful `task_done` for `task` (awarded to someone else), to `requester`.
    pub fn task_done_for(&self, intent: &SignedObject, task: ObjectId) -> (Ack, SignedObject) {
        let now = pvl_net::now_ms();
        let done = self.sign(
            intent.trace_id(),
            &[task],
            Body::TaskDone(TaskDone {
                task,
                status: TaskStatus::Ok,
                output: None,
                started_at_ms: now,
                finished_at_ms: now,
            }),
        );
        (self.send(&intent.signer(), done.clone()), done)
    }

    /// A receipt for `task` (awarded to someone else), to the requester.
    pub fn receipt_for(&self, intent: &SignedObject, task: ObjectId) -> (Ack, SignedObject) {
        let now = pvl_net::now_ms();
        let receipt = self.sign(
            intent.trace_id(),
            &[task],
            Body::Receipt(Receipt {
                task,
                intent: intent.id(),
                requester: intent.signer(),
                status: TaskStatus::Ok,
                output_sha256: None,
                output_size: 0,
                cost: 1,
                started_at_ms: now,
                finished_at_ms: now,
            }),
        );
        (self.send(&intent.signer(), receipt.clone()), receipt)
    }

    /// A vote on `proposal` signed by `voter`, to the proposer.
    pub fn vote_as(
        &self,
        voter: &Keypair,
        proposal: &SignedObject,
        approve: bool,
    ) -> (Ack, SignedObject) {
        let Body::Proposal(body) = proposal.body() else {
            panic!("not a proposal")
        };
        let vote = self.sign_as(
            voter,
            proposal.trace_id(),
            &[proposal.id()],
            Body::Vote(Vote {
                proposal: proposal.id(),
                round: body.round,
                approve,
                reason: "rogue".into(),
            }),
        );
        (self.send(&proposal.signer(), vote.clone()), vote)
    }

    /// A proposal about `intent` whose committee is the rogue alone (not `to`), sent to `to`.
    pub fn proposal_without(&self, intent: &SignedObject, to: &PublicKey) -> (Ack, SignedObject) {
        let proposal = self.sign(
            intent.trace_id(),
            &[intent.id()],
            Body::Proposal(Proposal {
                subject: intent.id(),
                round: 1,
                committee: Committee {
                    members: vec![self.key.public()],
                    threshold: 1,
                },
                action: "award".into(),
                deadline_ms: pvl_net::now_ms() + 10_000,
            }),
        );
        (self.send(to, proposal.clone()), proposal)
    }

    /// A fresh, validly signed intent for `capability`.
    pub fn junk_intent(&self, capability: &str) -> SignedObject {
        junk_intent(&self.key, capability)
    }

    /// Gossips `count` fresh junk intents for `capability` as fast as it can, in the
    /// background; the handle yields how many went out and when the last one did (see
    /// [`Rogue::finish`]). It stops early once no peer takes them any more.
    pub fn flood_gossip(
        &self,
        count: usize,
        capability: &str,
    ) -> tokio::task::JoinHandle<(usize, std::time::Instant)> {
        let client = self.client.clone();
        let key = self.key.clone();
        let capability = capability.to_owned();
        self.runtime.spawn(async move {
            let (mut sent, mut failed_in_a_row) = (0, 0);
            let mut last = std::time::Instant::now();
            for _ in 0..count {
                if client.publish(junk_intent(&key, &capability)).await.is_ok() {
                    sent += 1;
                    last = std::time::Instant::now();
                    failed_in_a_row = 0;
                } else {
                    // No peer takes its gossip any more (banned everywhere): the flood is over.
                    failed_in_a_row += 1;
                    if failed_in_a_row == 3 {
                        break;
                    }
                }
            }
            (sent, last)
        })
    }

    /// Waits for a background flood to end.
    pub fn finish<T>(&self, flood: tokio::task::JoinHandle<T>) -> T {
        self.runtime.block_on(flood).unwrap()
    }

    /// Sends `count` offers for intents that do not exist to `to`, one after another, as fast
    /// as it can; returns each acknowledgement (or the error once the peer stopped taking
    /// them).
    pub fn flood_direct(&self, to: &PublicKey, count: usize) -> Vec<Result<Ack, String>> {
        let peer: PeerId = pvl_net::peer_id_of(to).unwrap();
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let nowhere = ObjectId(random_bytes());
            let offer = self.sign(nowhere, &[nowhere], Self::offer_body(nowhere));
            let result = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), self.client.deliver(peer, offer))
                    .await
            });
            out.push(match result {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no acknowledgement within 10 s".into()),
            });
        }
        out
    }

    /// A fresh intent signed by the rogue, sent directly (admitted only by a node that bids on
    /// it).
    pub fn intent_directly(&self, to: &PublicKey) -> (Ack, SignedObject) {
        let intent = self.junk_intent("sha256");
        (self.send(to, intent.clone()), intent)
    }
}

/// A fresh intent for `capability` signed with `key`, with a random nonce.
fn junk_intent(key: &Keypair, capability: &str) -> SignedObject {
    let now = pvl_net::now_ms();
    Envelope {
        trace: None,
        parents: vec![],
        signer: key.public(),
        timestamp_ms: now,
        body: Body::Intent(Intent {
            capability: capability.into(),
            input: Payload::Inline(b"junk".to_vec()),
            constraints: Default::default(),
            strategy: Default::default(),
            pattern: Default::default(),
            committee: None,
            nonce: u64::from_le_bytes(random_bytes()[..8].try_into().unwrap()),
            expires_at_ms: now + 60_000,
            audience: None,
        }),
    }
    .sign(key)
    .unwrap()
}

/// Whether `object` is of `kind`.
pub fn of_kind(kind: Kind) -> impl Fn(&SignedObject) -> bool {
    move |o| o.kind() == kind
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// The reason of a refused ack, or a panic naming what came instead.
pub fn refusal(ack: &Ack) -> &str {
    match ack {
        Ack::Refused(reason) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
