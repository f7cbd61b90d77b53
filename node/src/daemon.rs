//! `pvl run`: the node process. Wires the network event loop, the trace store, the node
//! actor that owns the coordination engine ([`crate::actor`]) and the control API, resumes
//! the runs a previous process left open, and shuts down cleanly on SIGINT/SIGTERM: the API
//! stops taking requests (axum's graceful shutdown), the actor stops, the network closes,
//! the store writer drains and the store is flushed.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use pvl_net::{NetConfig, PeerId, SwarmKey};
use pvl_patterns::{Engine, EngineConfig, OfferPolicy, Provider, VoteMode};
use pvl_trace::{Durability, StoreConfig, TraceStore};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::Config;
use crate::home;
use crate::recorder::Recorder;

/// Capacity of the node-event broadcast (server-sent events). A subscriber that falls this far
/// behind is told how many events it missed.
const EVENT_BUFFER: usize = 1024;

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
    /// Node events, for the server-sent-events stream.
    pub events: broadcast::Sender<pvl_api::Event>,
    /// The node actor, which owns the coordination engine.
    pub actor: crate::actor::Handle,
    /// The store writer: every object is recorded through it.
    pub recorder: Arc<Recorder>,
    /// What the trace store says about each capability (for the adaptive choice).
    pub history: crate::history::HistoryCache,
    /// Work for agent programs and their answers.
    pub agents: Arc<crate::agents::AgentHub>,
    /// The capabilities served by agent programs (`kind = "agent"` executors).
    pub agent_capabilities: std::collections::HashSet<String>,
    /// Whether a voter program decides this node's votes (`[consensus] agent = true`).
    pub vote_agent: bool,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The web view's sign-in codes and sessions.
    pub ui: crate::ui::UiAuth,
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
    net.max_peers = n.max_peers;
    net.peer_book = Some(dir.join(crate::home::PEER_BOOK_FILE));
    net.max_connections = n.max_connections;
    net.publish_timeout = Duration::from_millis(n.publish_timeout_ms);
    net.flood = config.flood.to_net();
    net.relays = n
        .relays
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    net.relay_service = n.relay_service;
    if let Some(psk) = &n.psk {
        let path = dir.join(psk);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the swarm key {}", path.display()))?;
        net.swarm_key = Some(SwarmKey::parse(&text).with_context(|| path.display().to_string())?);
        // QUIC cannot be wrapped by pnet: a private node listens on its TCP addresses only
        // (a configuration with QUIC addresses only is refused by `Config::check`).
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
    // Before anything is opened: a second process on the directory stops here.
    let _lock = home::lock_dir(&dir)?;
    let keypair = home::read_key(&dir)?;
    let token = home::read_token(&dir)?;
    let key = pvl_net::protocol_keypair(&keypair)?;
    let net_config = net_config(&dir, &config, keypair)?;
    let private = net_config.is_private();

    let store_config = StoreConfig {
        cache_capacity: config.store.cache_mb * 1024 * 1024,
        durability: Durability {
            flush_every: Some(Duration::from_millis(config.store.flush_interval_ms.max(1))),
            flush_each_batch: config.store.flush_each_write,
            ..Durability::default()
        },
        ..StoreConfig::default()
    };
    let store_path = dir.join(home::STORE_DIR);
    let store = Arc::new(
        TraceStore::open_with(&store_path, store_config)
            .with_context(|| format!("cannot open the trace store {}", store_path.display()))?,
    );

    let metrics = crate::metrics::Metrics::new();
    let (net, net_events, event_loop) =
        metrics.with_registry(|registry| pvl_net::new_with_metrics(net_config, registry))?;
    let net_task = tokio::spawn(event_loop.run());
    info!(peer_id = %net.peer_id(), private, dir = %dir.display(), "node starting");

    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let recorder = Arc::new(
        Recorder::start(crate::recorder::Sinks {
            store: store.clone(),
            events: events.clone(),
            metrics: metrics.clone(),
            recent: Arc::default(),
        })
        .context("cannot start the trace-store writer")?,
    );
    let history = crate::history::HistoryCache::default();
    let mut engine = engine(&key, &config)?;
    // The trace is the log: runs this node left open are rebuilt from their objects.
    let open = crate::recovery::open_runs(&store, &key);
    let resumed = open.len();
    let restored = engine.restore(
        open,
        Arc::new(crate::history::StoreHistory::default()),
        pvl_net::now_ms(),
    );
    if resumed > 0 {
        info!(
            runs = resumed,
            resumed = engine.running(),
            "runs left open by the last process taken up again"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agents = Arc::new(crate::agents::AgentHub::default());
    let agent_capabilities = config
        .executors
        .iter()
        .filter(|e| e.kind == crate::executor::ExecutorKind::Agent)
        .map(|e| e.capability.clone())
        .collect();
    let (actor, actor_task) = crate::actor::spawn(
        engine,
        crate::actor::Parts {
            net: net.clone(),
            net_events,
            recorder: recorder.clone(),
            events: events.clone(),
            executors: config
                .executors
                .iter()
                .map(|e| (e.capability.clone(), e.clone()))
                .collect(),
            vote_exec: config.consensus.exec.clone(),
            vote_timeout: Duration::from_millis(config.consensus.exec_timeout_ms),
            agents: agents.clone(),
            vote_agent: config.consensus.agent,
            key: key.clone(),
            ad_ttl: Duration::from_millis(config.network.capability_ad_ttl_ms.max(1_000)),
            max_concurrent: u32::try_from(config.tasks.max_concurrent).unwrap_or(u32::MAX),
            metrics: metrics.clone(),
        },
        restored,
        stop_rx.clone(),
    );
    let state = Arc::new(NodeState {
        dir: dir.clone(),
        token,
        net: net.clone(),
        store: store.clone(),
        actor,
        history,
        key,
        events,
        recorder: recorder.clone(),
        agents,
        agent_capabilities,
        vote_agent: config.consensus.agent,
        metrics,
        ui: crate::ui::UiAuth::default(),
    });

    let listener = tokio::net::TcpListener::bind(&config.api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.api.listen))?;
    let api_addr = listener.local_addr()?;
    let app = crate::api::router(state.clone());
    let mut api_stop = stop_rx;
    let api_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = api_stop.changed().await;
            })
            .await
    });
    write_api_addr(&dir, &api_addr.to_string())?;
    info!(api = %api_addr, "control API listening");

    shutdown.await;
    info!("shutting down");
    let _ = std::fs::remove_file(dir.join(home::API_ADDR_FILE));
    let _ = stop_tx.send(true);
    // Requests in progress (an outcome someone waits for) are not waited for: the actor
    // stops with the API, and waiting callers are told the node is shutting down.
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Err(e))) => warn!("control API: {e}"),
        Ok(_) => {}
        Err(_) => warn!("the control API did not stop within 5 s"),
    }
    let _ = actor_task.await;
    let _ = net.shutdown().await;
    let _ = net_task.await;
    recorder.stop().await;
    store.flush().context("flushing the trace store")?;
    info!("stopped cleanly");
    Ok(())
}

/// The coordination engine of this node: its provider (one offer policy per executor), its
/// vote mode (the `[consensus]` rules, or the `exec` handler decided outside the engine).
fn engine(key: &pvl_protocol::Keypair, config: &Config) -> Result<Engine> {
    let mut engine_config = EngineConfig::new(key.clone());
    if !config.executors.is_empty() {
        let provider = config.executors.iter().fold(
            Provider::new(key.clone(), config.tasks.max_concurrent),
            |p, e| {
                let policy = OfferPolicy::fixed(e.price, e.eta_ms, e.reliability_bps);
                if e.kind == crate::executor::ExecutorKind::Agent {
                    p.serve_by_agent(e.capability.clone(), policy)
                } else {
                    p.serve(e.capability.clone(), policy)
                }
            },
        );
        engine_config = engine_config.with_provider(provider);
    }
    engine_config = engine_config.with_votes(
        if config.consensus.exec.is_empty() && !config.consensus.agent {
            VoteMode::Rules(config.consensus.rules()?)
        } else {
            VoteMode::External
        },
    );
    Ok(Engine::new(engine_config))
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
