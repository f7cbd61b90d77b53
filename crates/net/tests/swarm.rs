//! Real libp2p swarms on loopback: discovery, gossip, direct messages, private networks and
//! invalid gossip. Every wait has a timeout; every node listens on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use pvl_net::{Ack, DirectAcks, NetConfig, NetEvent, PeerId, SwarmKey, Via, identity::Keypair};
use pvl_protocol::fixtures::{self};
use pvl_protocol::{Body, Envelope, Intent, Payload, SignedObject};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(30);

struct Node {
    client: pvl_net::Client,
    events: mpsc::Receiver<NetEvent>,
    addr: pvl_net::Multiaddr,
    keypair: Keypair,
    seen: Vec<NetEvent>,
}

impl Node {
    async fn start(configure: impl FnOnce(&mut NetConfig)) -> Node {
        start_with_key(Keypair::generate_ed25519(), configure).await
    }

    fn peer_id(&self) -> PeerId {
        self.client.peer_id()
    }

    /// Waits for an event matching `pred`, keeping every event seen in `self.seen`.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&NetEvent) -> bool) -> NetEvent {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what} on {}", self.peer_id()))
                .expect("event channel closed");
            self.seen.push(event.clone());
            if pred(&event) {
                return event;
            }
        }
    }

    fn protocol_key(&self) -> pvl_protocol::Keypair {
        pvl_net::protocol_keypair(&self.keypair).unwrap()
    }

    /// This node's offer of `cost` on the fixture intent. The intent is old; an offer
    /// answering it is fresh because it is dated now.
    fn fresh_offer(&self, cost: u64) -> SignedObject {
        fixtures::offer_for(
            &fixtures::intent().unwrap(),
            &self.protocol_key(),
            cost,
            pvl_net::now_ms(),
        )
        .unwrap()
    }
}

fn intent_by(key: &pvl_protocol::Keypair, capability: &str, nonce: u64) -> SignedObject {
    intent_with_input(key, capability, nonce, b"input".to_vec())
}

fn intent_with_input(
    key: &pvl_protocol::Keypair,
    capability: &str,
    nonce: u64,
    input: Vec<u8>,
) -> SignedObject {
    let now = pvl_net::now_ms();
    Envelope {
        trace: None,
        parents: vec![],
        signer: key.public(),
        timestamp_ms: now,
        body: Body::Intent(Intent {
            capability: capability.into(),
            input: Payload::Inline(input),
            constraints: Default::default(),
            strategy: Default::default(),
            pattern: Default::default(),
            committee: None,
            nonce,
            expires_at_ms: now + 60_000,
            audience: None,
        }),
    }
    .sign(key)
    .unwrap()
}

fn is_object(id: pvl_protocol::ObjectId) -> impl Fn(&NetEvent) -> bool {
    move |e| matches!(e, NetEvent::Object { object, .. } if object.id() == id)
}

/// Publishes probe intents from `sender` until one reaches `receiver`: gossip gives no delivery
/// guarantee to a peer whose subscription the mesh has not learnt yet, so tests wait for the
/// path before they rely on it.
async fn warm_up(sender: &Node, receiver: &mut Node) {
    let deadline = Instant::now() + WAIT;
    for nonce in 1_000_000.. {
        assert!(Instant::now() < deadline, "the gossip path never formed");
        let probe = intent_by(&sender.protocol_key(), "sha256", nonce);
        if sender.client.publish(probe.clone()).await.is_err() {
            continue;
        }
        let arrived = timeout(
            Duration::from_secs(1),
            receiver.wait_for("a probe", is_object(probe.id())),
        )
        .await;
        if arrived.is_ok() {
            return;
        }
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_discover_each_other_and_receive_an_intent() {
    let boot = Node::start(|_| {}).await;
    let boot_addr = boot.addr.clone();
    let mut nodes = vec![boot];
    for _ in 0..4 {
        let addr = boot_addr.clone();
        nodes.push(Node::start(move |c| c.bootstrap = vec![addr]).await);
    }
    let ids: Vec<PeerId> = nodes.iter().map(Node::peer_id).collect();
    // Every node learns every other node through Kademlia (the bootstrap node only told them
    // about itself at first).
    for node in &nodes {
        let client = node.client.clone();
        let me = node.peer_id();
        let others: HashSet<PeerId> = ids.iter().copied().filter(|p| *p != me).collect();
        wait_until("kademlia discovery", || {
            let client = client.clone();
            let others = others.clone();
            async move {
                let known: HashSet<PeerId> = client
                    .peers()
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|p| p.peer_id)
                    .collect();
                others.is_subset(&known)
            }
        })
        .await;
    }
    // An intent published on a non-bootstrap node reaches all the others.
    let intent = intent_by(&nodes[3].protocol_key(), "sha256", 1);
    nodes[3].client.publish(intent.clone()).await.unwrap();
    for (i, node) in nodes.iter_mut().enumerate().filter(|(i, _)| *i != 3) {
        let event = node.wait_for("the intent", is_object(intent.id())).await;
        let NetEvent::Object { via, object, .. } = event else {
            unreachable!()
        };
        assert_eq!(
            object.bytes(),
            intent.bytes(),
            "node {i} got different bytes"
        );
        assert!(matches!(via, Via::Gossip { .. }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_reaches_a_peer_found_only_through_kademlia() {
    let boot = Node::start(|_| {}).await;
    let addr = boot.addr.clone();
    let mut target = Node::start({
        let addr = addr.clone();
        move |c| c.bootstrap = vec![addr]
    })
    .await;
    // The sender is given only the bootstrap node's address and never dials discovered peers
    // by itself: the target's address can only come from Kademlia.
    let sender = Node::start(move |c| {
        c.bootstrap = vec![addr];
        c.target_peers = 0;
    })
    .await;
    let offer = sender.fresh_offer(5);
    sender
        .client
        .send(target.peer_id(), offer.clone())
        .await
        .unwrap();
    let event = target.wait_for("the offer", is_object(offer.id())).await;
    let NetEvent::Object { from, via, .. } = event else {
        unreachable!()
    };
    assert_eq!(from, sender.peer_id());
    assert_eq!(via, Via::Direct);
    // Sending it again is a harmless duplicate; an old object is refused with the reason.
    sender.client.send(target.peer_id(), offer).await.unwrap();
    let stale = fixtures::sample_objects().unwrap().remove(1);
    let err = sender
        .client
        .send(target.peer_id(), stale)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // A peer nobody knows is an error, not a hang.
    let nobody = Keypair::generate_ed25519().public().to_peer_id();
    let offer = sender.fresh_offer(6);
    let err = sender.client.send(nobody, offer).await.unwrap_err();
    assert!(
        matches!(
            err,
            pvl_net::NetError::UnknownPeer(_)
                | pvl_net::NetError::SendFailed(_)
                | pvl_net::NetError::Unreachable { .. }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_network_keeps_out_both_kinds_of_outsider() {
    let key = SwarmKey::generate().unwrap();
    let member_keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let allow: HashSet<PeerId> = member_keys
        .iter()
        .map(|k| k.public().to_peer_id())
        .collect();
    let private = |k: &SwarmKey, allow: &HashSet<PeerId>| {
        let (k, allow) = (k.clone(), allow.clone());
        move |c: &mut NetConfig| {
            c.swarm_key = Some(k);
            c.allow = Some(allow);
        }
    };
    let mut members = Vec::new();
    for (i, keypair) in member_keys.iter().enumerate() {
        let boot = members.first().map(|m: &Node| m.addr.clone());
        let keypair = keypair.clone();
        let configure = private(&key, &allow);
        members.push(
            start_with_key(keypair, move |c| {
                configure(c);
                c.bootstrap = boot.into_iter().collect();
                let _ = i;
            })
            .await,
        );
    }
    // Outsider 1: a different swarm key. Outsider 2: the right key, not on the allow-list.
    let wrong_key = SwarmKey::generate().unwrap();
    let boot = members[0].addr.clone();
    let outsider_without_key = Node::start({
        let (k, boot) = (wrong_key.clone(), boot.clone());
        move |c| {
            c.swarm_key = Some(k);
            c.bootstrap = vec![boot];
        }
    })
    .await;
    let outsider_not_listed = Node::start({
        let (k, boot) = (key.clone(), boot.clone());
        move |c| {
            c.swarm_key = Some(k);
            c.bootstrap = vec![boot];
        }
    })
    .await;
    // The bootstrap member logs and reports both refusals, each for its own reason.
    members[0]
        .wait_for("a refused handshake", |e| {
            matches!(e, NetEvent::ConnectionRefused { peer: None, reason } if reason.contains("pre-shared key"))
        })
        .await;
    let listed = outsider_not_listed.peer_id();
    members[0]
        .wait_for("an allow-list refusal", |e| {
            matches!(e, NetEvent::ConnectionRefused { peer: Some(p), reason } if *p == listed && reason.contains("allow-list"))
        })
        .await;
    // Members keep working: an intent from member 2 reaches member 1, and a direct message
    // goes through; the outsiders receive nothing.
    let (first, rest) = members.split_at_mut(2);
    warm_up(&rest[0], &mut first[1]).await;
    let intent = intent_by(&members[2].protocol_key(), "echo", 7);
    members[2].client.publish(intent.clone()).await.unwrap();
    members[1]
        .wait_for("the intent", is_object(intent.id()))
        .await;
    let offer =
        fixtures::offer_for(&intent, &members[1].protocol_key(), 3, pvl_net::now_ms()).unwrap();
    members[1]
        .client
        .send(members[2].peer_id(), offer.clone())
        .await
        .unwrap();
    members[2]
        .wait_for("the offer", is_object(offer.id()))
        .await;
    // The outsiders took no part: nothing reached them (a connection the allow-list cuts may
    // flicker up for a moment, but no object ever crosses it).
    for mut outsider in [outsider_without_key, outsider_not_listed] {
        while let Ok(event) = outsider.events.try_recv() {
            outsider.seen.push(event);
        }
        assert!(
            !outsider
                .seen
                .iter()
                .any(|e| matches!(e, NetEvent::Object { .. })),
            "an outsider received an object: {:?}",
            outsider.seen
        );
    }
    // And private mode refuses QUIC outright.
    let mut quic = NetConfig::new(Keypair::generate_ed25519());
    quic.swarm_key = Some(key);
    quic.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
    assert!(pvl_net::new(quic).is_err());
}

async fn start_with_key(keypair: Keypair, configure: impl FnOnce(&mut NetConfig)) -> Node {
    let mut config = NetConfig::new(keypair.clone());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    // These tests are about the network alone: no node decides on direct messages, so the
    // event loop acknowledges them itself (the node's own acknowledgements are tested below).
    config.direct_acks = DirectAcks::OnReceipt;
    configure(&mut config);
    let (client, mut events, event_loop) = pvl_net::new(config).unwrap();
    tokio::spawn(event_loop.run());
    let addr = timeout(WAIT, async {
        loop {
            if let Some(NetEvent::Listening(addr)) = events.recv().await {
                return addr;
            }
        }
    })
    .await
    .expect("node did not start listening");
    Node {
        client,
        events,
        addr,
        keypair,
        seen: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_with_a_bad_signature_is_rejected_and_not_forwarded() {
    // A line: sender - relay - receiver. Sender and receiver allow only the relay, so even
    // connections Kademlia opens between them are cut at once.
    let relay_key = Keypair::generate_ed25519();
    let sender_key = Keypair::generate_ed25519();
    let receiver_key = Keypair::generate_ed25519();
    let only_relay = |me: &Keypair| -> HashSet<PeerId> {
        [relay_key.public().to_peer_id(), me.public().to_peer_id()].into()
    };
    let mut relay = start_with_key(relay_key.clone(), |_| {}).await;
    let relay_addr = relay.addr.clone();
    let sender = start_with_key(sender_key.clone(), {
        let (a, allow) = (relay_addr.clone(), only_relay(&sender_key));
        move |c| {
            c.bootstrap = vec![a];
            c.allow = Some(allow);
        }
    })
    .await;
    let mut receiver = start_with_key(receiver_key.clone(), {
        let allow = only_relay(&receiver_key);
        move |c| {
            c.bootstrap = vec![relay_addr];
            c.allow = Some(allow);
        }
    })
    .await;
    // Warm the path up: the gossip mesh forms over a few heartbeats.
    warm_up(&sender, &mut receiver).await;

    // A forged copy: valid CBOR, signature bit flipped.
    let forged_source = intent_by(&sender.protocol_key(), "sha256", 2);
    let mut forged = forged_source.bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    sender
        .client
        .publish_unchecked(pvl_net::TOPIC_ALL, forged)
        .await
        .unwrap();
    relay
        .wait_for(
            "the rejection",
            |e| matches!(e, NetEvent::Refused { reason, .. } if reason.contains("bad signature")),
        )
        .await;
    // The sender's peer score is now below the graylist threshold at the relay, so the relay
    // ignores it from now on. A valid intent published by the relay itself after the forged
    // one arrives; the forged one, had it been forwarded on that same connection, would have
    // arrived first.
    let after = intent_by(&relay.protocol_key(), "sha256", 3);
    relay.client.publish(after.clone()).await.unwrap();
    receiver
        .wait_for("the later valid intent", is_object(after.id()))
        .await;
    assert!(
        !receiver.seen.iter().any(|e| matches!(e, NetEvent::Refused { .. })
            || matches!(e, NetEvent::Object { object, .. } if object.id() == forged_source.id())),
        "the forged intent reached the receiver: {:?}",
        receiver.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_decides_the_acknowledgement_of_a_direct_message() {
    let mut target = Node::start(|c| {
        c.direct_acks = DirectAcks::ByNode {
            timeout: Duration::from_millis(600),
        }
    })
    .await;
    let addr = target.addr.clone();
    let sender = Node::start(move |c| c.bootstrap = vec![addr]).await;
    let intent = intent_by(&target.protocol_key(), "echo", 1);
    let offer = |cost| {
        fixtures::offer_for(&intent, &sender.protocol_key(), cost, pvl_net::now_ms()).unwrap()
    };
    let peer = target.peer_id();
    let deliver = |object: SignedObject| {
        let client = sender.client.clone();
        tokio::spawn(async move { client.deliver(peer, object).await.unwrap() })
    };
    let ack_of = |event: NetEvent| match event {
        NetEvent::Object {
            ack: Some(id),
            via: Via::Direct,
            ..
        } => id,
        other => panic!("no acknowledgement to give: {other:?}"),
    };

    // Refused by the node: the sender sees the node's reason, and the same object sent again
    // is refused again (not acknowledged as a duplicate).
    let refused = offer(1);
    let pending = deliver(refused.clone());
    let id = ack_of(target.wait_for("the offer", is_object(refused.id())).await);
    target
        .client
        .acknowledge(id, Ack::Refused("unknown-intent: no such intent".into()))
        .unwrap();
    assert_eq!(
        pending.await.unwrap(),
        Ack::Refused("unknown-intent: no such intent".into())
    );
    assert_eq!(
        deliver(refused).await.unwrap(),
        Ack::Refused("unknown-intent: no such intent".into())
    );

    // Accepted by the node; a replay is a duplicate, acknowledged by the event loop at once.
    let accepted = offer(2);
    let pending = deliver(accepted.clone());
    let id = ack_of(target.wait_for("the offer", is_object(accepted.id())).await);
    target.client.acknowledge(id, Ack::Accepted).unwrap();
    assert_eq!(pending.await.unwrap(), Ack::Accepted);
    assert_eq!(deliver(accepted).await.unwrap(), Ack::Duplicate);

    // A node that never decides: `busy` at the deadline, not a hang and not an acceptance.
    let ignored = offer(3);
    let pending = deliver(ignored.clone());
    target.wait_for("the offer", is_object(ignored.id())).await;
    match timeout(WAIT, pending).await.unwrap().unwrap() {
        Ack::Refused(reason) => assert!(reason.starts_with("busy"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// A peer that cannot be reached when a direct message is sent (here: it is restarting) is
/// tried again: the message arrives once the peer is back (SPEC §14.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_to_a_peer_that_is_restarting_arrives_when_it_is_back() {
    let receiver = Node::start(|_| {}).await;
    let (key, addr) = (receiver.keypair.clone(), receiver.addr.clone());
    let target = receiver.peer_id();
    let sender = Node::start({
        let addr = addr.clone();
        move |c| c.bootstrap = vec![addr]
    })
    .await;
    wait_until("the sender to be connected to the receiver", || async {
        sender
            .client
            .peers()
            .await
            .is_ok_and(|peers| peers.iter().any(|p| p.peer_id == target && p.connected))
    })
    .await;
    receiver.client.shutdown().await.unwrap();
    drop(receiver);
    wait_until("the sender to see the receiver gone", || async {
        sender
            .client
            .peers()
            .await
            .is_ok_and(|peers| !peers.iter().any(|p| p.peer_id == target && p.connected))
    })
    .await;
    let offer = sender.fresh_offer(7);
    // The first attempt meets a closed port; the receiver comes back on the same address
    // while the sender waits to try again.
    let send = tokio::spawn({
        let client = sender.client.clone();
        let offer = offer.clone();
        async move { client.send(target, offer).await }
    });
    // Down for a quarter of a second: longer than a refused dial takes, shorter than the
    // pauses between the sender's attempts add up to (at least 700 ms before the fourth).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let listen: pvl_net::Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    let mut back = start_with_key(key, move |c| c.listen = vec![listen]).await;
    timeout(WAIT, send)
        .await
        .expect("the send did not finish")
        .unwrap()
        .unwrap();
    back.wait_for("the offer", is_object(offer.id())).await;
}

/// A node with sessions and one without (`/pvl/direct/1` only, as nodes before sessions):
/// direct messages go both ways, the session side falling back to one stream per object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_sessions_and_one_without_exchange_direct_messages() {
    let mut old = Node::start(|c| c.direct_sessions = false).await;
    let addr = old.addr.clone();
    let mut new = Node::start(move |c| c.bootstrap = vec![addr]).await;
    for round in 0..3 {
        delivered(&new, &mut old, 10 + round).await;
        delivered(&old, &mut new, 20 + round).await;
    }
}

/// `from` sends `to` a fresh offer of `cost`: it is accepted, and `to` receives it.
async fn delivered(from: &Node, to: &mut Node, cost: u64) {
    let offer = from.fresh_offer(cost);
    let ack = from
        .client
        .deliver(to.peer_id(), offer.clone())
        .await
        .unwrap();
    assert_eq!(ack, Ack::Accepted);
    to.wait_for("the offer", is_object(offer.id())).await;
}

/// A bare libp2p peer that speaks `/pvl/direct/2` from SPEC.md §14.6 alone, byte by byte.
struct SessionPeer {
    control: libp2p_stream::Control,
    key: pvl_protocol::Keypair,
    peer_id: PeerId,
}

impl SessionPeer {
    async fn connect(to: &Node) -> SessionPeer {
        use futures::StreamExt as _;
        let keypair = Keypair::generate_ed25519();
        let key = pvl_net::protocol_keypair(&keypair).unwrap();
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
            .build();
        let control = swarm.behaviour().new_control();
        swarm.dial(to.addr.clone()).unwrap();
        tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        SessionPeer {
            control,
            key,
            peer_id,
        }
    }

    fn offer(&self, cost: u64) -> SignedObject {
        fixtures::offer_for(
            &fixtures::intent().unwrap(),
            &self.key,
            cost,
            pvl_net::now_ms(),
        )
        .unwrap()
    }
}

impl SessionPeer {
    /// Opens a `/pvl/direct/2` session to `node`.
    async fn open_session(&self, node: &Node) -> libp2p::Stream {
        timeout(
            WAIT,
            self.control
                .clone()
                .open_stream(node.peer_id(), libp2p::StreamProtocol::new("/pvl/direct/2")),
        )
        .await
        .expect("no session opened")
        .unwrap()
    }
}

/// Writes `bytes` on a session and flushes them.
async fn write_flushed(stream: &mut libp2p::Stream, bytes: &[u8]) {
    use futures::AsyncWriteExt as _;
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// Waits until the node ends the session: the read fails or finds the stream closed.
async fn assert_ended(stream: &mut libp2p::Stream, what: &str) {
    use futures::AsyncReadExt as _;
    let mut rest = Vec::new();
    let read = timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
}

fn message_frame(id: u32, object: &[u8]) -> Vec<u8> {
    let mut frame = id.to_be_bytes().to_vec();
    frame.extend_from_slice(&(object.len() as u32).to_be_bytes());
    frame.extend_from_slice(object);
    frame
}

/// Reads one acknowledgement frame: its id and its ack.
async fn read_ack(stream: &mut libp2p::Stream) -> (u32, Ack) {
    use futures::AsyncReadExt as _;
    let mut header = [0u8; 6];
    timeout(WAIT, stream.read_exact(&mut header))
        .await
        .expect("no acknowledgement frame")
        .unwrap();
    let id = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let mut ack = vec![0u8; u16::from_be_bytes([header[4], header[5]]) as usize];
    stream.read_exact(&mut ack).await.unwrap();
    (id, Ack::decode(&ack).unwrap())
}

/// SPEC.md §14.6 from the outside: objects framed on one stream are each acknowledged under
/// their id (a replay as a duplicate), and a frame over the size limit ends the session
/// without harming the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_a_foreign_peer_carries_many_objects_and_a_bad_frame_ends_it() {
    let mut node = Node::start(|_| {}).await;
    let peer = SessionPeer::connect(&node).await;
    let mut stream = peer.open_session(&node).await;

    // Two objects in one write; then the first again.
    let (first, second) = (peer.offer(1), peer.offer(2));
    let mut bytes = message_frame(5, first.bytes());
    bytes.extend(message_frame(6, second.bytes()));
    write_flushed(&mut stream, &bytes).await;
    let mut acks = vec![read_ack(&mut stream).await, read_ack(&mut stream).await];
    acks.sort_by_key(|(id, _)| *id);
    assert_eq!(acks, vec![(5, Ack::Accepted), (6, Ack::Accepted)]);
    node.wait_for("the first offer", is_object(first.id()))
        .await;
    node.wait_for("the second offer", is_object(second.id()))
        .await;
    write_flushed(&mut stream, &message_frame(7, first.bytes())).await;
    assert_eq!(read_ack(&mut stream).await, (7, Ack::Duplicate));

    // A frame announcing more than MAX_OBJECT_SIZE bytes: the node ends the session.
    let mut oversized = 8u32.to_be_bytes().to_vec();
    oversized.extend_from_slice(&u32::MAX.to_be_bytes());
    write_flushed(&mut stream, &oversized).await;
    assert_ended(&mut stream, "the node kept the session open").await;

    // A new session works.
    let mut again = peer.open_session(&node).await;
    let third = peer.offer(3);
    write_flushed(&mut again, &message_frame(1, third.bytes())).await;
    assert_eq!(read_ack(&mut again).await, (1, Ack::Accepted));
}

/// A peer that takes sessions and never reads them: each direct message to it fails at the
/// timeout (a small one for want of an acknowledgement, large ones once its flow-control
/// window is full and the write stalls) instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_its_session_fails_each_message_at_the_timeout() {
    use futures::StreamExt as _;
    let timeout_after = Duration::from_millis(800);
    let node = Node::start(|c| c.direct_timeout = timeout_after).await;
    let mut peer = SessionPeer::connect(&node).await;
    let mut incoming = peer
        .control
        .accept(libp2p::StreamProtocol::new("/pvl/direct/2"))
        .unwrap();
    // Holds every session it is given, unread.
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Some(stream) = incoming.next().await {
            streams.push(stream);
        }
    });
    let to = peer.peer_id;
    wait_until("the node to be connected to the peer", || async {
        node.client
            .peers()
            .await
            .is_ok_and(|peers| peers.iter().any(|p| p.peer_id == to && p.connected))
    })
    .await;
    let started = Instant::now();
    let small = node.client.deliver(to, node.fresh_offer(1)).await;
    assert!(
        matches!(&small, Err(pvl_net::NetError::SendFailed(r)) if r.contains("no acknowledgement")),
        "{small:?}"
    );
    // Three intents of 600 kB each: more than the peer's 256 KiB window holds.
    let key = node.protocol_key();
    let big = |nonce: u64| {
        let intent = intent_with_input(&key, "sha256", nonce, vec![7; 600_000]);
        assert!(intent.bytes().len() > 600_000);
        intent
    };
    let sends: Vec<_> = (0..3)
        .map(|n| {
            let client = node.client.clone();
            let object = big(n);
            tokio::spawn(async move { client.deliver(to, object).await })
        })
        .collect();
    for send in sends {
        let result = timeout(WAIT, send).await.expect("a send hung").unwrap();
        assert!(
            matches!(&result, Err(pvl_net::NetError::SendFailed(_))),
            "{result:?}"
        );
    }
    // Each failed within a few timeouts (about two here), not the 30 s a hung send waits:
    // the margin is for a loaded machine.
    assert!(
        started.elapsed() < 15 * timeout_after,
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

/// SPEC.md §14.6's bound on sessions: a peer gets at most 4 served at once; a fifth is dropped
/// without an answer, and a place freed by a closed session is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_at_most_four_sessions_at_once() {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _};
    assert_eq!(pvl_net::MAX_SESSIONS_PER_PEER, 4, "SPEC.md §14.6 says 4");
    let node = Node::start(|_| {}).await;
    let peer = SessionPeer::connect(&node).await;
    let mut open = Vec::new();
    for n in 0..4u32 {
        let mut stream = peer.open_session(&node).await;
        let offer = peer.offer(u64::from(n) + 1);
        write_flushed(&mut stream, &message_frame(n, offer.bytes())).await;
        // Answered: the session is being served.
        assert_eq!(read_ack(&mut stream).await, (n, Ack::Accepted));
        open.push(stream);
    }
    let mut fifth = peer.open_session(&node).await;
    let offer = peer.offer(5);
    // The write may already fail: the node dropped the stream as soon as it came.
    let _ = fifth.write_all(&message_frame(9, offer.bytes())).await;
    let _ = fifth.flush().await;
    assert_ended(&mut fifth, "the fifth session was kept open").await;

    // One session closed: its place is free again.
    let mut first = open.remove(0);
    first.close().await.unwrap();
    let mut closed = Vec::new();
    timeout(WAIT, first.read_to_end(&mut closed))
        .await
        .expect("the node did not close its side")
        .unwrap();
    let mut again = peer.open_session(&node).await;
    write_flushed(&mut again, &message_frame(1, offer.bytes())).await;
    assert_eq!(read_ack(&mut again).await, (1, Ack::Accepted));
}
