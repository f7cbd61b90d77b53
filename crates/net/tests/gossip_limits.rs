//! A gossipsub peer with the defaults of go and js gossipsub lists up to 5000 message ids in
//! one IHAVE. With libp2p-gossipsub's default control limit (16 KiB per RPC), a pvl node
//! dropped that peer's inbound stream on the first such IHAVE, and the peer, which never reads
//! that stream, went on writing into it: cut off from the node's gossip for good (SPEC.md
//! §13.5). This test plays such a peer with a bare libp2p swarm (stock libp2p-gossipsub limits)
//! and checks both directions: a message it publishes after its large IHAVE still reaches the
//! pvl node, and a message the pvl node publishes after its own first IHAVE (of the same burst)
//! still reaches the peer, whose control limit is the 16 KiB default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, noise, tcp, yamux};
use pvl_net::{NetConfig, NetEvent, TOPIC_ALL, gossip_message_id, identity::Keypair};
use pvl_protocol::{Body, Envelope, Intent, Payload, SignedObject};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(30);
/// Ids in the IHAVE the peer sends: 1000 ids of 66 bytes is 66,000 bytes of control data, four
/// times the old limit.
const BURST: u64 = 1000;

fn intent(key: &pvl_protocol::Keypair, nonce: u64) -> SignedObject {
    let now = pvl_net::now_ms();
    Envelope {
        trace: None,
        parents: vec![],
        signer: key.public(),
        timestamp_ms: now,
        body: Body::Intent(Intent {
            capability: "sha256".into(),
            input: Payload::Inline(b"input".to_vec()),
            constraints: Default::default(),
            strategy: Default::default(),
            pattern: Default::default(),
            committee: None,
            nonce,
            expires_at_ms: now + 120_000,
            audience: None,
        }),
    }
    .sign(key)
    .unwrap()
}

/// A gossipsub peer speaking pvl's gossip (anonymous, pvl's message ids) that never takes the
/// pvl node into its mesh, so that it gossips IHAVE to it, with up to 5000 ids per IHAVE like
/// go and js gossipsub.
fn foreign_peer() -> Swarm<gossipsub::Behaviour> {
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_millis(200))
        // Every message of the burst stays in the gossip window (2 s) until it is advertised.
        .history_length(10)
        .history_gossip(10)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .max_transmit_size(2 * 1024 * 1024)
        .mesh_n(0)
        .mesh_n_low(0)
        .mesh_n_high(0)
        .mesh_outbound_min(0)
        .max_control_messages_sent(5000)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(gossip_message_id(m.topic.as_str(), &m.data))
        })
        .build()
        .unwrap();
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap()
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .behaviour_mut()
        .subscribe(&IdentTopic::new(TOPIC_ALL))
        .unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    swarm
}

enum Report {
    Listening(Multiaddr),
    Subscribed(PeerId),
    Message(Vec<u8>),
}

/// Runs the foreign peer: publishes what it is given on the catch-all topic, reports its
/// address and the peers that subscribe.
async fn run_peer(
    mut swarm: Swarm<gossipsub::Behaviour>,
    mut publish: mpsc::Receiver<Vec<u8>>,
    reports: mpsc::Sender<Report>,
) {
    loop {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    let _ = reports.send(Report::Listening(address)).await;
                }
                SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) => {
                    let _ = reports.send(Report::Subscribed(peer_id)).await;
                }
                SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                    let _ = reports.send(Report::Message(message.data)).await;
                }
                _ => {}
            },
            data = publish.recv() => match data {
                Some(data) => {
                    swarm.behaviour_mut().publish(IdentTopic::new(TOPIC_ALL), data).unwrap();
                }
                None => return,
            },
        }
    }
}

async fn wait_for_object(events: &mut mpsc::Receiver<NetEvent>, id: pvl_protocol::ObjectId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("object {} never arrived", id.short()))
            .expect("event channel closed");
        if matches!(&event, NetEvent::Object { object, .. } if object.id() == id) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_a_large_ihave_is_not_cut_off() {
    // RUST_LOG=libp2p_gossipsub=debug shows the IHAVE and, were the node to refuse it, "Failed
    // to read from inbound stream".
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let keypair = Keypair::generate_ed25519();
    let mut config = NetConfig::new(keypair);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    // The burst below comes from one signer: this test is about RPC limits, not the
    // per-signer gossip budget (SPEC.md §20), which would drop most of it.
    config.flood.gossip_per_signer = pvl_net::Budget::new(10_000, 10_000);
    let (node, mut events, event_loop) = pvl_net::new(config).unwrap();
    tokio::spawn(event_loop.run());

    let (publish, publish_rx) = mpsc::channel(1024);
    let (reports_tx, mut reports) = mpsc::channel(16);
    tokio::spawn(run_peer(foreign_peer(), publish_rx, reports_tx));
    let Some(Report::Listening(addr)) = timeout(WAIT, reports.recv()).await.unwrap() else {
        panic!("the foreign peer did not listen");
    };
    // The pvl node dials, so that it is an inbound peer of the foreign one, which then refuses
    // its GRAFT (mesh_n_high = 0) and gossips to it instead.
    node.dial(addr).await.unwrap();
    timeout(WAIT, async {
        while let Some(report) = reports.recv().await {
            if matches!(report, Report::Subscribed(peer) if peer == node.peer_id()) {
                return;
            }
        }
    })
    .await
    .expect("the pvl node never subscribed");

    // A burst of valid intents: delivered directly (flood publishing), then advertised in one
    // IHAVE of BURST ids at the peer's next heartbeat.
    let key = pvl_protocol::Keypair::from_seed([7; 32]);
    let burst: Vec<SignedObject> = (0..BURST).map(|n| intent(&key, n)).collect();
    for object in &burst {
        publish.send(object.bytes().to_vec()).await.unwrap();
    }
    wait_for_object(&mut events, burst[burst.len() - 1].id()).await;
    // Several heartbeats of the peer: its IHAVE has gone out.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let after = intent(&key, BURST + 1);
    publish.send(after.bytes().to_vec()).await.unwrap();
    wait_for_object(&mut events, after.id()).await;

    // The pvl node's first heartbeat (5 s after it started) advertises the burst to the peer,
    // which is outside its mesh: at most 240 ids, within the peer's 16 KiB. A message the node
    // publishes after that still arrives.
    tokio::time::sleep_until(started + Duration::from_secs(7)).await;
    let reply = intent(&pvl_protocol::Keypair::from_seed([8; 32]), 0);
    node.publish(reply.clone()).await.unwrap();
    timeout(Duration::from_secs(10), async {
        while let Some(report) = reports.recv().await {
            if matches!(&report, Report::Message(data) if data.as_slice() == reply.bytes()) {
                return;
            }
        }
    })
    .await
    .expect("the peer never received the node's message after the node's IHAVE");
}
