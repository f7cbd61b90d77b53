//! `pvl run`: the node process. Wires the network event loop, the trace store and the control
//! API, records every object it sends or receives, and shuts down cleanly on SIGINT/SIGTERM.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pvl_net::{NetConfig, NetEvent, PeerId, SwarmKey, Via};
use pvl_patterns::Action;
use pvl_protocol::SignedObject;
use pvl_trace::{Durability, StoreConfig, TraceStore};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::coordinator::Coordinator;
use crate::home;
use crate::recorder::{Entry, Recorder};

/// Capacity of the node-event broadcast (server-sent events). A subscriber that falls this far
/// behind is told how many events it missed.
const EVENT_BUFFER: usize = 1024;

/// Most network events handled in one pass (their objects are recorded together).
const STORE_BATCH: usize = 256;

/// Everything the control API needs, shared between its handlers.
pub struct NodeState {
    /// The node directory.
    pub dir: PathBuf,
    /// The bearer token clients must present.
    pub token: String,
    /// Network handle.
    pub net: pvl_net::Client,
    /// The trace store.
    pub store: Arc<TraceStore>,
    /// The node's protocol signing key (same as its libp2p identity).
    pub key: pvl_protocol::Keypair,
    /// Node events as JSON lines, for the server-sent-events stream.
    pub events: broadcast::Sender<String>,
    /// The coordination state machines (provider, requesters).
    pub coordinator: Mutex<Coordinator>,
    /// The store writer: every object is recorded through it.
    pub recorder: Recorder,
    /// The `[consensus] exec` vote handler (empty: votes follow the rules).
    pub vote_exec: Vec<String>,
    /// How long the vote handler may take.
    pub vote_timeout: Duration,
    /// What the trace store says about each capability (for the adaptive choice).
    pub history: crate::history::HistoryCache,
}

impl NodeState {
    /// Stores an object this node created or received, and announces it (through the
    /// store writer, see [`crate::recorder`]).
    pub fn record(&self, object: &SignedObject, origin: &'static str, peer: Option<PeerId>) {
        self.recorder.record(vec![(object.clone(), origin, peer)]);
    }

    /// Stores objects (one store batch with whatever else is queued), and announces each.
    pub fn record_batch(&self, objects: Vec<Entry>) {
        self.recorder.record(objects);
    }

    /// The coordinator, even if a panicking task poisoned its lock (its state stays usable:
    /// every method leaves it consistent before it returns).
    pub fn coordinator(&self) -> MutexGuard<'_, Coordinator> {
        self.coordinator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn announce(&self, event: serde_json::Value) {
        let _ = self.events.send(event.to_string());
    }
}

/// Builds the network configuration from the node directory.
fn net_config(
    dir: &Path,
    config: &Config,
    keypair: pvl_net::identity::Keypair,
) -> Result<NetConfig> {
    let mut net = NetConfig::new(keypair);
    let n = &config.network;
    net.listen = n
        .listen
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    net.bootstrap = n
        .bootstrap
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    net.capabilities = config.served_capabilities();
    net.observe_all = n.observe_all;
    net.target_peers = n.target_peers;
    net.max_connections = n.max_connections;
    net.publish_timeout = Duration::from_millis(n.publish_timeout_ms);
    if let Some(psk) = &n.psk {
        let path = dir.join(psk);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the swarm key {}", path.display()))?;
        net.swarm_key = Some(SwarmKey::parse(&text).with_context(|| path.display().to_string())?);
        // QUIC cannot be wrapped by pnet: a private node listens on its TCP addresses only.
        net.listen.retain(|a| !a.to_string().contains("/quic"));
    }
    if let Some(allow) = &n.allow {
        net.allow = Some(read_allow_list(&dir.join(allow))?);
    }
    Ok(net)
}

/// Reads an allow-list: one peer id per line; blank lines and `#` comments are ignored.
pub fn read_allow_list(path: &Path) -> Result<HashSet<PeerId>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the allow-list {}", path.display()))?;
    let mut peers = HashSet::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let peer: PeerId = line.parse().map_err(|e| {
            anyhow::anyhow!(
                "{} line {}: `{line}` is not a peer id: {e}",
                path.display(),
                number + 1
            )
        })?;
        peers.insert(peer);
    }
    if peers.is_empty() {
        bail!("the allow-list {} lists no peer", path.display());
    }
    Ok(peers)
}

/// Runs the node until `shutdown` completes.
pub async fn run(dir: PathBuf, shutdown: impl Future<Output = ()>) -> Result<()> {
    let config = home::read_config(&dir)?;
    let keypair = home::read_key(&dir)?;
    let token = home::read_token(&dir)?;
    let key = pvl_net::protocol_keypair(&keypair)?;
    let net_config = net_config(&dir, &config, keypair)?;
    let private = net_config.is_private();

    let store_config = StoreConfig {
        cache_capacity: config.store.cache_mb * 1024 * 1024,
        durability: Durability {
            flush_every: Some(Duration::from_millis(config.store.flush_interval_ms.max(1))),
            ..Durability::default()
        },
        ..StoreConfig::default()
    };
    let store_path = dir.join(home::STORE_DIR);
    let store = Arc::new(
        TraceStore::open_with(&store_path, store_config)
            .with_context(|| format!("cannot open the trace store {}", store_path.display()))?,
    );

    crate::recovery::settle_open_intents(&store, &key, pvl_net::now_ms());

    let (net, mut net_events, event_loop) = pvl_net::new(net_config)?;
    let net_task = tokio::spawn(event_loop.run());
    info!(peer_id = %net.peer_id(), private, dir = %dir.display(), "node starting");

    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let recorder = Recorder::start(store.clone(), events.clone())
        .context("cannot start the trace-store writer")?;
    let state = Arc::new(NodeState {
        dir: dir.clone(),
        token,
        net: net.clone(),
        store: store.clone(),
        coordinator: Mutex::new(Coordinator::new(
            key.clone(),
            config.executors.clone(),
            config.tasks.max_concurrent,
            config.consensus.rules()?,
            !config.consensus.exec.is_empty(),
        )),
        vote_exec: config.consensus.exec.clone(),
        vote_timeout: Duration::from_millis(config.consensus.exec_timeout_ms),
        history: Default::default(),
        key,
        events,
        recorder,
    });

    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let api_addr = listener.local_addr()?;
    let app = crate::api::router(state.clone());
    let api_task = tokio::spawn(async move { axum::serve(listener, app).await });
    write_api_addr(&dir, &api_addr.to_string())?;
    info!(api = %api_addr, "control API listening");

    let consumer = {
        let state = state.clone();
        tokio::spawn(
            async move {
                // Whatever has queued up while the store was busy is written as one batch.
                while let Some(first) = net_events.recv().await {
                    let mut batch = vec![first];
                    while batch.len() < STORE_BATCH {
                        match net_events.try_recv() {
                            Ok(event) => batch.push(event),
                            Err(_) => break,
                        }
                    }
                    let started = std::time::Instant::now();
                    let count = batch.len();
                    on_net_events(&state, batch);
                    tracing::debug!(
                        count,
                        took_us = started.elapsed().as_micros() as u64,
                        "net events handled"
                    );
                }
            }
            .instrument(info_span!("net-events")),
        )
    };

    shutdown.await;
    info!("shutting down");
    let _ = std::fs::remove_file(dir.join(home::API_ADDR_FILE));
    api_task.abort();
    let _ = net.shutdown().await;
    let _ = net_task.await;
    let _ = consumer.await;
    state.recorder.stop().await;
    store.flush().context("flushing the trace store")?;
    info!("stopped cleanly");
    Ok(())
}

fn on_net_events(state: &Arc<NodeState>, events: Vec<NetEvent>) {
    let mut objects = Vec::new();
    for event in events {
        match event {
            NetEvent::Object { from, via, object } => {
                let origin = match via {
                    Via::Gossip { .. } => "gossip",
                    Via::Direct => "direct",
                };
                objects.push((*object, origin, Some(from)));
            }
            NetEvent::Refused { from, reason, .. } => {
                state.announce(
                    json!({"type": "refused", "peer": from.to_string(), "reason": reason}),
                );
            }
            NetEvent::PeerConnected(peer) => {
                state.announce(json!({"type": "peer_connected", "peer": peer.to_string()}));
            }
            NetEvent::PeerDisconnected(peer) => {
                state.announce(json!({"type": "peer_disconnected", "peer": peer.to_string()}));
            }
            NetEvent::ConnectionRefused { peer, reason } => {
                state.announce(json!({
                    "type": "connection_refused",
                    "peer": peer.map(|p| p.to_string()),
                    "reason": reason,
                }));
            }
            NetEvent::Listening(addr) => {
                state.announce(json!({"type": "listening", "addr": addr.to_string()}));
            }
        }
    }
    if objects.is_empty() {
        return;
    }
    let received: Vec<SignedObject> = objects.iter().map(|(o, _, _)| o.clone()).collect();
    state.record_batch(objects);
    deliver(state, received);
}

/// Hands objects (from the network, or sent by this node to itself) to the coordinator and
/// performs what it answers. Proposals go to the `exec` vote handler first when there is one.
fn deliver(state: &Arc<NodeState>, received: Vec<SignedObject>) {
    let (proposals, received): (Vec<SignedObject>, Vec<SignedObject>) =
        received.into_iter().partition(|o| {
            !state.vote_exec.is_empty() && matches!(o.body(), pvl_protocol::Body::Proposal(_))
        });
    for proposal in proposals {
        let state = state.clone();
        tokio::spawn(async move {
            let decision =
                crate::executor::vote(&state.vote_exec, &proposal, state.vote_timeout).await;
            let actions =
                state
                    .coordinator()
                    .on_decided_proposal(&proposal, decision, pvl_net::now_ms());
            perform(&state, actions);
        });
    }
    let now = pvl_net::now_ms();
    let actions: Vec<Action> = {
        let mut coordinator = state.coordinator();
        received
            .iter()
            .flat_map(|o| coordinator.on_object(o, now))
            .collect()
    };
    perform(state, actions);
}

/// Carries out the coordination state machines' actions: records objects, publishes and sends
/// them, runs executors and sets timers. Everything that waits runs in its own task and feeds
/// its result back to the coordinator.
///
/// The objects to record are stored first, all in one store batch: sends and publications
/// run in their own tasks and so start after the store has the object anyway, and one batch
/// per call instead of one per object is what keeps a busy requester's store cheap.
pub fn perform(state: &Arc<NodeState>, actions: Vec<Action>) {
    let (records, actions): (Vec<Action>, Vec<Action>) = actions
        .into_iter()
        .partition(|a| matches!(a, Action::Record(_)));
    let records: Vec<Entry> = records
        .into_iter()
        .filter_map(|a| match a {
            Action::Record(object) => Some((object, "local", None)),
            _ => None,
        })
        .collect();
    if !records.is_empty() {
        state.record_batch(records);
    }
    for action in actions {
        match action {
            Action::Publish(object) => {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = state.net.publish(object).await {
                        warn!("could not publish: {e}");
                    }
                });
            }
            // To itself (a requester on its own committee): handed over, not sent.
            Action::Send { to, object } if to == state.key.public() => {
                let state = state.clone();
                tokio::spawn(async move { deliver(&state, vec![object]) });
            }
            Action::Send { to, object } => {
                let state = state.clone();
                tokio::spawn(async move {
                    let kind = object.kind();
                    let result = match pvl_net::peer_id_of(&to) {
                        Ok(peer) => state.net.send(peer, object).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        warn!(to = %to.short(), %kind, "could not send: {e}");
                    }
                });
            }
            Action::Execute {
                task,
                capability,
                input,
                ..
            } => {
                let state = state.clone();
                let executor = state.coordinator().executor(&capability).cloned();
                tokio::spawn(async move {
                    let result = match executor {
                        Some(executor) => crate::executor::run(&executor, &input).await,
                        None => Err(format!("no executor for `{capability}`")),
                    };
                    info!(task = %task.short(), %capability, ok = result.is_ok(), "task executed");
                    let actions = state
                        .coordinator()
                        .on_executed(task, result, pvl_net::now_ms());
                    perform(&state, actions);
                });
            }
            Action::SetTimer { at_ms, token } => {
                let state = state.clone();
                tokio::spawn(async move {
                    let wait = at_ms.saturating_sub(pvl_net::now_ms());
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let actions = state.coordinator().on_timer(token, pvl_net::now_ms());
                    perform(&state, actions);
                });
            }
            // Records were written above; the coordinator handles `Finished` itself (it tells
            // the waiters).
            Action::Record(_) | Action::Finished(_) => {}
        }
    }
}

/// Writes `api.addr` atomically, so a reader never sees half an address.
fn write_api_addr(dir: &Path, addr: &str) -> Result<()> {
    let tmp = dir.join(".api.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, dir.join(home::API_ADDR_FILE))?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
