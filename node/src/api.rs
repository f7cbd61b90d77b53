//! The control API: HTTP + JSON on loopback, bearer-token protected. Its contract (every
//! request, answer, error and event type, and the OpenAPI document served at
//! `GET /v1/openapi.json`) is the `pvl-api` crate; this module implements it.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/id` | peer id, public key, listen addresses |
//! | GET | `/v1/status` | network state, store size, engine runs, work counters |
//! | GET | `/v1/peers` | known peers |
//! | GET | `/v1/capabilities` | the capability directory: advertised capabilities, providers, terms |
//! | POST | `/v1/intents` | sign, record and publish an intent (`"wait": true`: answer with the outcome) |
//! | POST | `/v1/workflows`, `/v1/parallel`, `/v1/committees` | the same body, for one kind of run: its own field required, the others refused |
//! | GET | `/v1/intents/{trace}/outcome?timeout_ms=N` | wait for the outcome of an intent this node coordinates |
//! | POST | `/v1/intents/{trace}/cancel` | end a run now, with a signed reason |
//! | GET | `/v1/traces?limit=N` | recent traces with status |
//! | GET | `/v1/traces/{id}` | one trace: summary and objects |
//! | GET | `/v1/traces/{id}/analysis` | pattern, tasks per agent, critical path, latencies |
//! | GET | `/v1/traces/{id}/export?format=json\|dot\|mermaid\|bundle` | export |
//! | GET | `/v1/events?trace=ID` | server-sent events: objects recorded, peers, refusals |
//! | GET | `/v1/openapi.json` | the OpenAPI 3.1 document of this API |
//! | GET | `/metrics` | Prometheus metrics, text format ([`crate::metrics`]) |
//! | POST | `/v1/ui/login` | a one-time address that signs a browser in to the web view ([`crate::ui`]) |
//!
//! The web view's pages (`/ui/`) are served without the token; a browser signed in through
//! `/v1/ui/login` holds a session cookie that stands in for the token on read-only `GET`
//! routes ([`crate::ui::cookie_may`]). Every `POST` needs the token.
//! | GET | `/v1/agents/work?capability=C&timeout_ms=N` | agent programs: the next bid or task (long poll) |
//! | POST | `/v1/agents/work/{id}/bid`, `/progress`, `/result` | agent programs: their answers |
//! | GET | `/v1/agents/votes?timeout_ms=N` | voter programs: the next proposal (long poll) |
//! | POST | `/v1/agents/work/{id}/vote` | voter programs: the vote |
//!
//! Errors are always a JSON `pvl_api::ErrorBody` with a machine-readable `code`: 400, 401,
//! 404, 409 (ambiguous id prefix), 413 (body over `pvl_api::MAX_BODY_BYTES`), 415 (body not
//! `application/json`), 422 (not a valid request), 500, 503 (no peer to publish to) and 504 (no outcome in time). Ids in paths are
//! 64 hex digits or a unique prefix of at least 8.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use pvl_api::{
    Completed, Counters, EngineStatus, ErrorBody, ErrorCode, Event, EventsQuery, ExportFormat,
    ExportQuery, Failed, ListQuery, MIN_ID_PREFIX, NodeId, ObjectView, Outcome, OutcomeQuery, Part,
    Peer, PublishIntent, Published, RunOutcome, Status, TraceAnalysis, TraceSummary, TraceView,
};
use pvl_patterns::parallel::{Reduce, Split};
use pvl_patterns::{Request as CoordinationRequest, RequestOptions};
use pvl_protocol::{ObjectId, PatternHint, Payload, SignedObject, Strategy, TraceId};
use pvl_trace::TraceError;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tracing::{info, warn};

use crate::daemon::NodeState;

type Shared = Arc<NodeState>;

/// An error answer: a status and a [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    body: ErrorBody,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            body: ErrorBody::new(code, message),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A body that is JSON but breaks a field rule.
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl From<TraceError> for ApiError {
    fn from(e: TraceError) -> Self {
        match e {
            TraceError::UnknownTrace(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<pvl_net::NetError> for ApiError {
    fn from(e: pvl_net::NetError) -> Self {
        ApiError::new(ErrorCode::Unavailable, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.body.code.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose rejections are [`ErrorBody`]s too: 415 without
/// `Content-Type: application/json`, 400 for malformed JSON, 422 for JSON that is not a
/// valid request.
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the request body is larger than {} bytes, the most this API takes \
                             (an intent's input is at most {} bytes, SPEC.md §6)",
                            pvl_api::MAX_BODY_BYTES,
                            pvl_protocol::MAX_INLINE_PAYLOAD
                        ),
                    ));
                }
                let code = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
                    JsonRejection::JsonDataError(_) => ErrorCode::InvalidRequest,
                    JsonRejection::JsonSyntaxError(_) => ErrorCode::BadRequest,
                    _ => ErrorCode::BadRequest,
                };
                Err(ApiError::new(code, rejection.body_text()))
            }
        }
    }
}

/// A query string whose rejection is an [`ErrorBody`] (400 `bad_request`), not plain text.
struct ApiQuery<T>(T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// A path parameter whose rejection is an [`ErrorBody`] (400 `bad_request`), not plain text.
struct ApiPath<T>(T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// The router with every endpoint behind the token check.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/id", get(id))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/capabilities", get(capabilities))
        .route("/v1/intents", post(publish_intent))
        .route(
            "/v1/workflows",
            post(|State(s), JsonBody(r)| publish_as(RunKind::Workflow, s, r)),
        )
        .route(
            "/v1/parallel",
            post(|State(s), JsonBody(r)| publish_as(RunKind::Parallel, s, r)),
        )
        .route(
            "/v1/committees",
            post(|State(s), JsonBody(r)| publish_as(RunKind::Committee, s, r)),
        )
        .route("/v1/intents/{id}/outcome", get(intent_outcome))
        .route("/v1/intents/{id}/cancel", post(cancel_intent))
        .route("/v1/traces", get(list_traces))
        .route("/v1/traces/{id}", get(show_trace))
        .route("/v1/traces/{id}/analysis", get(analyse_trace))
        .route("/v1/traces/{id}/export", get(export_trace))
        .route("/v1/events", get(events))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/ui/login", post(ui_login))
        .route("/v1/agents/work", get(next_work))
        .route("/v1/agents/work/{id}/bid", post(answer_bid))
        .route("/v1/agents/work/{id}/progress", post(report_progress))
        .route("/v1/agents/work/{id}/result", post(answer_task))
        .route("/v1/agents/votes", get(next_vote))
        .route("/v1/agents/work/{id}/vote", post(answer_vote))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(
            pvl_api::MAX_BODY_BYTES,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state.clone())
        .merge(crate::ui::router(state))
}

/// A one-time sign-in address for the web view.
async fn ui_login(
    State(state): State<Shared>,
    request: Request,
) -> ApiResult<Json<pvl_api::UiLogin>> {
    let code = state
        .ui
        .new_code()
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    // The address the caller reached this node at (the API listens on loopback).
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".:-[]".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    Ok(Json(pvl_api::UiLogin {
        url: format!("http://{host}/ui/login?code={code}"),
        expires_in_ms: u64::try_from(crate::ui::CODE_TTL.as_millis()).unwrap_or(u64::MAX),
    }))
}

async fn require_token(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", state.token);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given.is_none()
        && crate::ui::cookie_may(request.method(), request.uri().path())
        && state.ui.has_session(request.headers())
    {
        return next.run(request).await;
    }
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(ErrorCode::Unauthorized, "wrong API token").into_response(),
        None => ApiError::new(
            ErrorCode::Unauthorized,
            "missing `Authorization: Bearer <token>` header",
        )
        .into_response(),
    }
}

/// Compares secrets without an early exit.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn id(State(state): State<Shared>) -> ApiResult<Json<NodeId>> {
    let status = state.net.status().await?;
    Ok(Json(NodeId {
        peer_id: status.peer_id.to_string(),
        public_key: state.key.public(),
        listen_addrs: status
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}

async fn status(State(state): State<Shared>) -> ApiResult<Json<Status>> {
    let status = state.net.status().await?;
    let (engine, jobs) = state.actor.stats().await.map_err(stopped)?;
    state.recorder.synced().await;
    let objects = state.store.object_count().map_err(ApiError::from)?;
    Ok(Json(Status {
        peer_id: status.peer_id.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        private: status.private,
        listen_addrs: status
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect(),
        connected_peers: status.connected.len(),
        routing_table: status.routing_table,
        topics: status.topics,
        queued_publishes: status.queued_publishes,
        objects_stored: objects,
        engine: EngineStatus {
            runs_started: engine.started,
            runs_resumed: engine.restored,
            runs_finished: engine.finished,
            refused: engine.refused,
            refusals: engine
                .refusals
                .iter()
                .map(|(refusal, count)| (refusal.code().to_owned(), count))
                .collect(),
            delivered_locally: engine.local,
            timers_fired: engine.timers,
            jobs_running: jobs,
        },
        dir: state.dir.display().to_string(),
        counters: counters(),
        banned: status
            .banned
            .iter()
            .map(|b| pvl_api::BannedPeer {
                peer_id: b.peer.to_string(),
                reason: b.reason.clone(),
                until_ms: b.until_ms,
            })
            .collect(),
        reachability: reachability(status.reachability),
    }))
}

/// The network layer's reachability in the API's terms.
fn reachability(r: pvl_net::Reachability) -> pvl_api::Reachability {
    let strings = |addrs: Vec<pvl_net::Multiaddr>| addrs.iter().map(ToString::to_string).collect();
    match r {
        pvl_net::Reachability::Unknown { detail } => pvl_api::Reachability::Unknown { detail },
        pvl_net::Reachability::Public { addresses } => pvl_api::Reachability::Public {
            addresses: strings(addresses),
        },
        pvl_net::Reachability::Private { reason } => pvl_api::Reachability::Private { reason },
        pvl_net::Reachability::Relayed { relays, addresses } => pvl_api::Reachability::Relayed {
            relays: relays.iter().map(ToString::to_string).collect(),
            addresses: strings(addresses),
        },
    }
}

/// This process's work so far (signatures, verifications, messages by transport, store
/// writes), monotonic, for benchmarks that compare two readings.
fn counters() -> Counters {
    let crypto = pvl_protocol::CryptoCounters::snapshot();
    let net = pvl_net::NetCounters::snapshot();
    let store = pvl_trace::StoreCounters::snapshot();
    Counters {
        signatures: crypto.signatures,
        verifications: crypto.verifications,
        gossip_published: net.gossip_published,
        gossip_received: net.gossip_received,
        gossip_duplicates: net.gossip_duplicates,
        direct_sent: net.direct_sent,
        direct_received: net.direct_received,
        store_writes: store.objects_written,
        store_batches: store.batches,
        store_keys: store.keys_written,
        gossip_rate_limited: net.gossip_rate_limited,
        direct_rate_limited: net.direct_rate_limited,
        offences: net.offences,
        bans: net.bans,
    }
}

/// Prometheus metrics: readings of the node's parts, then the registry in the text format.
async fn metrics(State(state): State<Shared>) -> ApiResult<Response> {
    let status = state.net.status().await?;
    let (engine, jobs) = state.actor.stats().await.map_err(stopped)?;
    let readings = crate::metrics::Readings {
        peers: status.connected.len(),
        routing_table: status.routing_table,
        store_bytes: state.store.size_on_disk().map_err(ApiError::from)?,
        store_objects: state.store.object_count().map_err(ApiError::from)?,
        runs_running: usize::try_from(
            (engine.started + engine.restored).saturating_sub(engine.finished),
        )
        .unwrap_or(usize::MAX),
        jobs,
        recorder_queue: state.recorder.queued(),
        queued_publishes: status.queued_publishes,
        refusals: engine
            .refusals
            .iter()
            .map(|(refusal, count)| (refusal.code().to_owned(), count))
            .collect(),
        flood: {
            let net = pvl_net::NetCounters::snapshot();
            vec![
                ("gossip-rate-limited", net.gossip_rate_limited),
                ("direct-rate-limited", net.direct_rate_limited),
                ("offence", net.offences),
                ("ban", net.bans),
            ]
        },
        banned: status.banned.len(),
    };
    let text = state
        .metrics
        .encode(&readings)
        .map_err(|e| ApiError::internal(format!("cannot encode the metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

async fn peers(State(state): State<Shared>) -> ApiResult<Json<Vec<Peer>>> {
    let peers = state.net.peers().await?;
    Ok(Json(
        peers
            .into_iter()
            .map(|p| Peer {
                peer_id: p.peer_id.to_string(),
                connected: p.connected,
                addresses: p.addresses.iter().map(ToString::to_string).collect(),
                gossip_score: p.gossip_score,
                banned: p.banned,
                link: p.link.map(|link| match link {
                    pvl_net::Link::Direct => pvl_api::Link::Direct,
                    pvl_net::Link::HolePunched => pvl_api::Link::HolePunched,
                    pvl_net::Link::Relayed => pvl_api::Link::Relayed,
                }),
            })
            .collect(),
    ))
}

async fn publish_intent(
    State(state): State<Shared>,
    JsonBody(request): JsonBody<PublishIntent>,
) -> ApiResult<Response> {
    publish(&state, request).await
}

/// The kinds of run with a route of their own, besides `POST /v1/intents` (which takes any).
#[derive(Debug, Clone, Copy)]
enum RunKind {
    Workflow,
    Parallel,
    Committee,
}

impl RunKind {
    fn route(self) -> &'static str {
        match self {
            RunKind::Workflow => "/v1/workflows",
            RunKind::Parallel => "/v1/parallel",
            RunKind::Committee => "/v1/committees",
        }
    }

    /// Checks that `request` is this kind of run (its own field set, the others' absent) and
    /// sets the pattern.
    fn check(self, request: &mut PublishIntent) -> ApiResult<()> {
        let present = [
            ("workflow", request.workflow.is_some()),
            ("parallel", request.parallel.is_some()),
            ("committee", request.committee.is_some()),
        ];
        let own = match self {
            RunKind::Workflow => "workflow",
            RunKind::Parallel => "parallel",
            RunKind::Committee => "committee",
        };
        for (field, set) in present {
            if field == own && !set {
                return Err(ApiError::invalid(format!(
                    "{} needs `{field}`",
                    self.route()
                )));
            }
            if field != own && set {
                return Err(ApiError::invalid(format!(
                    "`{field}` does not belong in {} (use /v1/intents for a combination)",
                    self.route()
                )));
            }
        }
        match self {
            RunKind::Workflow => {
                if !request.capability.is_empty() {
                    return Err(ApiError::invalid(
                        "a workflow's stages name their capabilities: no `capability`",
                    ));
                }
                request.pattern = Some("workflow".into());
            }
            RunKind::Parallel => request.pattern = Some("parallel".into()),
            RunKind::Committee => request.pattern = Some("consensus".into()),
        }
        Ok(())
    }
}

/// `POST` of one kind of run: checked as that kind, then published like any intent.
async fn publish_as(
    kind: RunKind,
    state: Shared,
    mut request: PublishIntent,
) -> ApiResult<Response> {
    kind.check(&mut request)?;
    publish(&state, request).await
}

/// Plans, starts and publishes a run; with `wait`, answers with its outcome.
async fn publish(state: &NodeState, request: PublishIntent) -> ApiResult<Response> {
    let wait = request.wait;
    let wait_timeout = request
        .wait_timeout_ms
        .unwrap_or(match request.deadline_ms {
            Some(deadline) => deadline.saturating_add(30_000),
            None => 120_000,
        });
    let options = request_options(request)?;
    // The history of the capability. A workflow has no single capability (its stages have
    // theirs) and its pattern is settled by its stages: it needs none.
    let history: Arc<dyn pvl_patterns::History> = if options.workflow.is_some() {
        Arc::new(pvl_patterns::NoRecords)
    } else {
        let finished = state
            .actor
            .take_finished(&options.capability)
            .await
            .map_err(stopped)?;
        if !finished.is_empty() {
            // The finished runs' last objects may still be on their way to the store.
            state.recorder.synced().await;
        }
        state
            .history
            .get(
                &state.store,
                state.recorder.recent(),
                &options.capability,
                finished,
            )
            .await
    };
    // Planned (and the intent signed) after the history was read: the intent's timestamp is
    // when it goes out.
    let planned = CoordinationRequest::plan(options, history, pvl_net::now_ms())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let started = state
        .actor
        .start(planned, wait)
        .await
        .map_err(stopped)?
        .map_err(ApiError::invalid)?;
    let mut published = Published {
        trace_id: started.trace,
        published: false,
        topics: Vec::new(),
        sent_to: Vec::new(),
        waited_ms: 0,
        outcome: None,
    };
    // The intent's first publication is awaited here, so the caller learns whether it went
    // out; everything else runs in the node actor.
    for object in started.publications {
        match state.net.publish(object).await {
            Ok(report) => {
                published.published = true;
                published.topics = report.topics;
                published.waited_ms = report.waited_ms;
            }
            Err(e) => {
                let mut error = ApiError::from(e);
                error.body.trace_id = Some(started.trace);
                return Err(error);
            }
        }
    }
    // A directed intent goes to its providers at once; published when it reached one (a
    // provider that declines still received it). Each decline, and each provider that could
    // not be reached, is told to the run: once every provider asked has offered or declined,
    // it selects, or widens the round to everyone, without waiting for its window to close.
    if !started.directed.is_empty() {
        let began = std::time::Instant::now();
        let sends = started.directed.into_iter().map(|(to, object)| {
            let net = state.net.clone();
            let intent = object.id();
            async move { (to, intent, net.send_to_key(&to, object).await) }
        });
        for (to, intent, result) in futures::future::join_all(sends).await {
            let declined = match result {
                Ok(()) => {
                    published.sent_to.push(to);
                    continue;
                }
                Err(pvl_net::NetError::Refused(reason)) => {
                    info!(to = %to.short(), %reason, "the directed intent was declined");
                    published.sent_to.push(to);
                    reason
                }
                Err(e) => {
                    warn!(to = %to.short(), "could not send the directed intent: {e}");
                    format!("unreachable: {e}")
                }
            };
            state
                .actor
                .declined(started.trace, intent, to, declined)
                .await
                .map_err(stopped)?;
        }
        published.published = !published.sent_to.is_empty();
        published.waited_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    }
    let Some(waiter) = started.outcome else {
        return Ok((StatusCode::CREATED, Json(published)).into_response());
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(wait_timeout), waiter)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Timeout,
                format!("no outcome within {wait_timeout} ms"),
            )
        })?
        .map_err(|_| stopped(crate::actor::Stopped))?;
    // Whoever saw the outcome may read the trace next: it must all be in the store by then.
    state.recorder.synced().await;
    published.outcome = Some(outcome_of(&outcome));
    Ok((StatusCode::OK, Json(published)).into_response())
}

fn stopped(e: crate::actor::Stopped) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, e.to_string())
}

/// The typed request of a `POST /v1/intents` body: text fields parsed, input decoded,
/// committee members resolved to keys. The field rules are [`CoordinationRequest::plan`]'s.
fn request_options(mut request: PublishIntent) -> ApiResult<RequestOptions> {
    let invalid = |e: pvl_protocol::ProtocolError| ApiError::invalid(e.to_string());
    let input = match (request.input.take(), request.input_hex.take()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give `input` or `input_hex`, not both"));
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex_text)) => hex::decode(hex_text.trim())
            .map_err(|e| ApiError::invalid(format!("input_hex: {e}")))?,
        (None, None) => Vec::new(),
    };
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(RequestOptions {
        capability: request.capability,
        input,
        workflow: request.workflow,
        parallel: request.parallel,
        split: request
            .split
            .map(|s| s.parse::<Split>())
            .transpose()
            .map_err(|e| ApiError::invalid(e.to_string()))?,
        reduce: request
            .reduce
            .map(|r| r.parse::<Reduce>())
            .transpose()
            .map_err(|e| ApiError::invalid(e.to_string()))?,
        committee: request
            .committee
            .as_deref()
            .map(committee_members)
            .transpose()?,
        threshold: request.threshold,
        budget: request.budget,
        deadline_in_ms: request.deadline_ms,
        min_reliability_bps: request.min_reliability_bps,
        strategy: request
            .strategy
            .map(|s| s.parse::<Strategy>())
            .transpose()
            .map_err(invalid)?,
        pattern: match request.pattern.as_deref() {
            None | Some("auto") => None,
            Some(p) => Some(p.parse::<PatternHint>().map_err(invalid)?),
        },
        window_ms: request.window_ms,
        min_offers: request.min_offers,
        nonce: u64::from_le_bytes(nonce),
    })
}

/// Committee members by public key or peer id.
fn committee_members(members: &[String]) -> ApiResult<Vec<pvl_protocol::PublicKey>> {
    members
        .iter()
        .map(|m| {
            if let Ok(key) = m.parse::<pvl_protocol::PublicKey>() {
                return Ok(key);
            }
            m.parse::<pvl_net::PeerId>()
                .ok()
                .and_then(|peer| pvl_net::public_key_of(&peer))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "committee member `{m}` is neither a public key (64 hex digits) nor a \
                         peer id"
                    ))
                })
        })
        .collect()
}

/// An engine outcome in the API's terms.
pub fn outcome_of(outcome: &pvl_patterns::Outcome) -> Outcome {
    match outcome {
        pvl_patterns::Outcome::Completed(c) => {
            let (output, output_hex) = payload_text(c.output.as_ref());
            Outcome::Completed(Completed {
                provider: Some(c.provider),
                task: Some(c.task),
                offer: Some(c.offer),
                cost: c.cost,
                output,
                output_hex,
                receipt_id: c.receipt.as_ref().map(SignedObject::id),
                receipt_countersigned: c.receipt.as_ref().is_some_and(|r| r.is_countersigned()),
                awards: c.awards,
                parts: c.parts.iter().map(part_of).collect(),
                detail: None,
                from_store: false,
            })
        }
        pvl_patterns::Outcome::Failed(f) => Outcome::Failed(Failed {
            reason: f.reason.name().to_owned(),
            detail: f.detail.clone(),
            parts: f.parts.iter().map(part_of).collect(),
            from_store: false,
        }),
    }
}

/// An output as text when it is UTF-8, as hex otherwise.
fn payload_text(payload: Option<&Payload>) -> (Option<String>, Option<String>) {
    let Some(bytes) = payload.and_then(|p| p.inline()) else {
        return (None, None);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(hex::encode(bytes))),
    }
}

/// One stage or shard of a composite outcome.
fn part_of(part: &pvl_patterns::PartResult) -> Part {
    let (output, output_hex) = payload_text(part.output.as_ref());
    Part {
        label: part.label.clone(),
        capability: part.capability.clone(),
        status: part.status.name().to_owned(),
        failure: match &part.status {
            pvl_patterns::PartStatus::Failed(reason) => Some(reason.clone()),
            _ => None,
        },
        provider: part.provider,
        task: part.task,
        cost: part.cost,
        awards: part.awards,
        output,
        output_hex,
        receipt_id: part.receipt.as_ref().map(SignedObject::id),
        started_ms: part.started_ms,
        finished_ms: part.finished_ms,
        duration_ms: part
            .started_ms
            .zip(part.finished_ms)
            .map(|(s, f)| f.saturating_sub(s)),
    }
}

async fn intent_outcome(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<OutcomeQuery>,
) -> ApiResult<Json<RunOutcome>> {
    let trace = resolve_trace(&state, &id).await?;
    let waiter = state.actor.wait(trace).await.map_err(stopped)?;
    let Some(waiter) = waiter else {
        // Not (or no longer) in memory: an intent of an earlier run answers from the store
        // (written up to the request: `resolve_trace` waited for the writer).
        let objects = trace_objects(&state, &trace)?;
        return match crate::recovery::stored_outcome(&objects, trace, &state.key) {
            Some(outcome) => Ok(Json(RunOutcome {
                trace_id: trace,
                outcome,
            })),
            None => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("this node does not coordinate intent {trace}"),
            )),
        };
    };
    let timeout = query.timeout_ms.unwrap_or(120_000);
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(timeout), waiter)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Timeout,
                format!("no outcome within {timeout} ms"),
            )
        })?
        .map_err(|_| stopped(crate::actor::Stopped))?;
    state.recorder.synced().await;
    Ok(Json(RunOutcome {
        trace_id: trace,
        outcome: outcome_of(&outcome),
    }))
}

async fn list_traces(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<TraceSummary>>> {
    let limit = query.limit.unwrap_or(50).min(10_000);
    state.recorder.synced().await;
    let traces = state.store.recent_traces(limit)?;
    Ok(Json(traces.iter().map(summary_of).collect()))
}

/// A store summary in the API's terms.
fn summary_of(s: &pvl_trace::TraceSummary) -> TraceSummary {
    TraceSummary {
        trace_id: s.trace,
        capability: s.capability.clone(),
        hint: s.hint,
        pattern: pattern_of(s.pattern),
        chosen_by_adaptive: s.chosen_by_adaptive,
        status: match s.status {
            pvl_trace::TraceStatus::Open => pvl_api::TraceStatus::Open,
            pvl_trace::TraceStatus::Awarded => pvl_api::TraceStatus::Awarded,
            pvl_trace::TraceStatus::Done => pvl_api::TraceStatus::Done,
            pvl_trace::TraceStatus::Failed => pvl_api::TraceStatus::Failed,
        },
        failure_reason: s.failure_reason.clone(),
        objects: s.objects,
        tasks: s.tasks,
        parts: s.parts,
        first_ms: s.first_ms,
        last_ms: s.last_ms,
    }
}

fn pattern_of(p: pvl_trace::Pattern) -> pvl_api::Pattern {
    match p {
        pvl_trace::Pattern::ContractNet => pvl_api::Pattern::ContractNet,
        pvl_trace::Pattern::Auction => pvl_api::Pattern::Auction,
        pvl_trace::Pattern::Workflow => pvl_api::Pattern::Workflow,
        pvl_trace::Pattern::Parallel => pvl_api::Pattern::Parallel,
        pvl_trace::Pattern::Consensus => pvl_api::Pattern::Consensus,
        pvl_trace::Pattern::Unknown => pvl_api::Pattern::Unknown,
    }
}

/// The trace a path names: 64 hex digits, or a unique prefix of at least
/// [`MIN_ID_PREFIX`] of a stored trace. Waits for the store writer first, so the caller reads
/// everything recorded before the request.
async fn resolve_trace(state: &NodeState, text: &str) -> ApiResult<TraceId> {
    // What was recorded before this call is in the store, for the lookup and for the caller.
    state.recorder.synced().await;
    if text.len() == 64 {
        return text.parse().map_err(|_| {
            ApiError::bad_request(format!("`{text}` is not a trace id (64 hex digits)"))
        });
    }
    if text.len() < MIN_ID_PREFIX || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ApiError::bad_request(format!(
            "`{text}` is not a trace id: give 64 hex digits or a unique prefix of at least \
             {MIN_ID_PREFIX}"
        )));
    }
    let found = state.store.traces_with_prefix(text, 10)?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no trace starts with `{text}`"),
        )),
        many => {
            let mut error = ApiError::new(
                ErrorCode::AmbiguousId,
                format!("`{text}` is the start of more than one trace: give more digits"),
            );
            error.body.candidates = many.iter().map(ObjectId::to_string).collect();
            Err(error)
        }
    }
}

fn trace_objects(state: &NodeState, id: &ObjectId) -> ApiResult<Vec<SignedObject>> {
    let dag = state.store.trace(id)?;
    Ok(dag.objects()?)
}

async fn show_trace(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TraceView>> {
    let id = resolve_trace(&state, &id).await?;
    let objects = trace_objects(&state, &id)?;
    let summary = state.store.trace_summary(&id)?;
    // Parents before children (see `pvl_trace::causal_order`): clients print as given.
    let objects = pvl_trace::causal_order(&objects)
        .into_iter()
        .map(view_of)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(TraceView {
        summary: summary_of(&summary),
        objects,
    }))
}

/// An object's JSON view (its `Serialize` form) in the API's type.
fn view_of(object: &SignedObject) -> ApiResult<ObjectView> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::internal(format!("object {}: {e}", object.id())))
}

async fn analyse_trace(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TraceAnalysis>> {
    let id = resolve_trace(&state, &id).await?;
    let analysis = state.store.analyse(&id)?;
    // pvl-api states the analysis's JSON form itself (it cannot depend on pvl-trace); the
    // in-process API test decodes a real analysis, so a drift fails there.
    let mut typed = serde_json::to_value(analysis)
        .and_then(serde_json::from_value::<TraceAnalysis>)
        .map_err(|e| ApiError::internal(format!("analysis of {id}: {e}")))?;
    let report = state.store.verify_trace(&id)?;
    typed.verification = Some(pvl_api::analysis::TraceVerification {
        checked: report.checked,
        ok: report.is_ok(),
        ok_as_partial_copy: report.is_ok_as_partial_copy(),
        absent_links: report.absent_links(),
        problems: report
            .problems
            .iter()
            .take(pvl_api::analysis::MAX_LISTED_PROBLEMS)
            .map(|p| format!("{} {:?}: {}", p.object.short(), p.kind, p.detail))
            .collect(),
    });
    Ok(Json(typed))
}

async fn export_trace(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let format: ExportFormat = query
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(ApiError::bad_request)?;
    let id = resolve_trace(&state, &id).await?;
    let objects = trace_objects(&state, &id)?;
    let (content_type, body): (&str, Vec<u8>) = match format {
        ExportFormat::Json => (
            "application/json",
            pvl_trace::export::to_json(&objects)?.into_bytes(),
        ),
        ExportFormat::Dot => (
            "text/vnd.graphviz",
            pvl_trace::export::to_dot(&objects).into_bytes(),
        ),
        ExportFormat::Mermaid => (
            "text/plain",
            pvl_trace::export::to_mermaid(&objects).into_bytes(),
        ),
        ExportFormat::Bundle => ("application/cbor", pvl_trace::export::to_bundle(&objects)?),
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

async fn openapi() -> Response {
    let mut response = pvl_api::openapi::document_json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn events(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    // Subscribed before the trace is resolved, so nothing recorded meanwhile is missed.
    let subscription = state.events.subscribe();
    let only = match query.trace.as_deref() {
        Some(text) => Some(resolve_or_new_trace(&state, text).await?),
        None => None,
    };
    let stream = BroadcastStream::new(subscription).filter_map(move |item| {
        let event = match item {
            Ok(event) => event,
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => {
                Event::Lagged { missed }
            }
        };
        if let Some(trace) = only
            && !matches!(event, Event::Lagged { .. })
            && event.trace() != Some(trace)
        {
            return None;
        }
        let data = serde_json::to_string(&event).unwrap_or_default();
        Some(Ok(SseEvent::default().data(data)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// For `/v1/events?trace=`: a full id need not be stored yet (a client may subscribe before
/// the objects arrive); a prefix must resolve.
async fn resolve_or_new_trace(state: &NodeState, text: &str) -> ApiResult<TraceId> {
    if text.len() == 64
        && let Ok(id) = text.parse()
    {
        return Ok(id);
    }
    resolve_trace(state, text).await
}

/// Longest long poll of `GET /v1/agents/work`.
const MAX_WORK_WAIT_MS: u64 = 120_000;

async fn next_work(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<pvl_api::agents::WorkQuery>,
) -> ApiResult<Response> {
    if !state.agent_capabilities.contains(&query.capability) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "this node has no `kind = \"agent\"` executor for `{}`",
                query.capability
            ),
        ));
    }
    let wait = query.timeout_ms.unwrap_or(30_000).min(MAX_WORK_WAIT_MS);
    match state
        .agents
        .next(&query.capability, std::time::Duration::from_millis(wait))
        .await
    {
        Some(item) => Ok(Json(item).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

fn hub_error(e: crate::agents::HubError) -> ApiError {
    match e {
        crate::agents::HubError::Unknown(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        crate::agents::HubError::Mismatch(..) => ApiError::invalid(e.to_string()),
        crate::agents::HubError::Full(_) => ApiError::new(ErrorCode::Unavailable, e.to_string()),
    }
}

async fn answer_bid(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<u64>,
    JsonBody(answer): JsonBody<pvl_api::BidAnswer>,
) -> ApiResult<StatusCode> {
    if let pvl_api::BidAnswer::Offer {
        reliability_bps, ..
    } = &answer
        && *reliability_bps > 10_000
    {
        return Err(ApiError::invalid("reliability_bps is at most 10000"));
    }
    state
        .agents
        .answer(id, crate::agents::Answer::Bid(answer))
        .map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn report_progress(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<u64>,
    JsonBody(report): JsonBody<pvl_api::ProgressReport>,
) -> ApiResult<StatusCode> {
    let task = state.agents.task_of(id).map_err(hub_error)?;
    state
        .actor
        .progress(task, report.fraction_bps, report.message)
        .await
        .map_err(stopped)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn answer_task(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<u64>,
    JsonBody(answer): JsonBody<pvl_api::TaskAnswer>,
) -> ApiResult<StatusCode> {
    state
        .agents
        .answer(id, crate::agents::Answer::Task(answer))
        .map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn next_vote(
    State(state): State<Shared>,
    ApiQuery(query): ApiQuery<pvl_api::agents::VotesQuery>,
) -> ApiResult<Response> {
    if !state.vote_agent {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this node's votes are not decided by an agent program (set `agent = true` in \
             [consensus])",
        ));
    }
    let wait = query.timeout_ms.unwrap_or(30_000).min(MAX_WORK_WAIT_MS);
    match state
        .agents
        .next(crate::agents::VOTES, std::time::Duration::from_millis(wait))
        .await
    {
        Some(item) => Ok(Json(item).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn answer_vote(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<u64>,
    JsonBody(answer): JsonBody<pvl_api::VoteAnswer>,
) -> ApiResult<StatusCode> {
    state
        .agents
        .answer(id, crate::agents::Answer::Vote(answer))
        .map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_intent(
    State(state): State<Shared>,
    ApiPath(id): ApiPath<String>,
    JsonBody(request): JsonBody<pvl_api::CancelRequest>,
) -> ApiResult<Json<RunOutcome>> {
    let trace = resolve_trace(&state, &id).await?;
    let waiter = state
        .actor
        .wait(trace)
        .await
        .map_err(stopped)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("this node runs no intent {trace}"),
            )
        })?;
    let reason = request
        .reason
        .unwrap_or_else(|| "cancelled by the requester".to_owned());
    state
        .actor
        .cancel(trace, reason)
        .await
        .map_err(stopped)?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("this node runs no intent {trace} (it has ended): {e}"),
            )
        })?;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Timeout, "the run did not end after its cancel"))?
        .map_err(|_| stopped(crate::actor::Stopped))?;
    state.recorder.synced().await;
    Ok(Json(RunOutcome {
        trace_id: trace,
        outcome: outcome_of(&outcome),
    }))
}

async fn capabilities(
    State(state): State<Shared>,
) -> ApiResult<Json<Vec<pvl_api::CapabilityListing>>> {
    let listed = state.actor.directory().await.map_err(stopped)?;
    let mut by_capability: std::collections::BTreeMap<String, Vec<pvl_api::ProviderListing>> =
        std::collections::BTreeMap::new();
    for l in listed {
        let (price_base, price_per_kib) = match l.terms.price {
            pvl_protocol::PriceModel::Fixed(p) => (p, 0),
            pvl_protocol::PriceModel::PerKib { base, per_kib } => (base, per_kib),
        };
        by_capability
            .entry(l.capability.clone())
            .or_default()
            .push(pvl_api::ProviderListing {
                provider: l.provider,
                peer_id: pvl_net::peer_id_of(&l.provider)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                price_base,
                price_per_kib,
                max_concurrent: l.terms.max_concurrent,
                input_desc: l.terms.input_desc.clone(),
                output_desc: l.terms.output_desc.clone(),
                version: l.terms.version.clone(),
                expires_at_ms: l.terms.expires_at_ms,
                seen_at_ms: l.seen_at_ms,
                ad: l.ad,
            });
    }
    Ok(Json(
        by_capability
            .into_iter()
            .map(|(capability, mut providers)| {
                providers.sort_by_key(|p| (p.price_base, p.price_per_kib));
                pvl_api::CapabilityListing {
                    capability,
                    providers,
                }
            })
            .collect(),
    ))
}
