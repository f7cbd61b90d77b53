//! The control API: HTTP + JSON on loopback, bearer-token protected.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/id` | peer id, public key, listen addresses |
//! | GET | `/v1/status` | network state and store size |
//! | GET | `/v1/peers` | known peers |
//! | POST | `/v1/intents` | sign, record and publish an intent (`"wait": true`: answer with the outcome) |
//! | GET | `/v1/intents/{trace}/outcome?timeout_ms=N` | wait for the outcome of an intent this node coordinates |
//! | GET | `/v1/traces?limit=N` | recent traces with status |
//! | GET | `/v1/traces/{id}` | one trace: summary and objects |
//! | GET | `/v1/traces/{id}/analysis` | pattern, tasks per agent, critical path, latencies |
//! | GET | `/v1/traces/{id}/export?format=json\|dot\|mermaid\|bundle` | export |
//! | GET | `/v1/events` | server-sent events: objects recorded, peers, refusals |
//!
//! Errors are `{"error": "..."}` with 400 (bad request), 401 (missing or wrong token),
//! 404 (unknown trace), 503 (publish found no peer) or 500.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use pvl_patterns::parallel::{Reduce, Split};
use pvl_patterns::{Outcome, Request as CoordinationRequest, RequestOptions};
use pvl_protocol::{ObjectId, PatternHint, Payload, SignedObject, Strategy};
use pvl_trace::TraceError;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::daemon::NodeState;

type Shared = Arc<NodeState>;

/// A JSON error with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    extra: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<TraceError> for ApiError {
    fn from(e: TraceError) -> Self {
        match e {
            TraceError::UnknownTrace(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<pvl_net::NetError> for ApiError {
    fn from(e: pvl_net::NetError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let (Some(Value::Object(extra)), Some(map)) = (self.extra, body.as_object_mut()) {
            map.extend(extra);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router with every endpoint behind the token check.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/id", get(id))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/intents", post(publish_intent))
        .route("/v1/intents/{id}/outcome", get(intent_outcome))
        .route("/v1/traces", get(list_traces))
        .route("/v1/traces/{id}", get(show_trace))
        .route("/v1/traces/{id}/analysis", get(analyse_trace))
        .route("/v1/traces/{id}/export", get(export_trace))
        .route("/v1/events", get(events))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", state.token);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong API token").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` header",
        )
        .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn id(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let status = state.net.status().await?;
    Ok(Json(json!({
        "peer_id": status.peer_id.to_string(),
        "public_key": state.key.public().to_string(),
        "listen_addrs": status.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

async fn status(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let status = state.net.status().await?;
    let (engine, jobs) = state.actor.stats().await.map_err(stopped)?;
    state.recorder.synced().await;
    let objects = state.store.object_count().map_err(ApiError::from)?;
    Ok(Json(json!({
        "peer_id": status.peer_id.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "private": status.private,
        "listen_addrs": status.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "connected_peers": status.connected.len(),
        "routing_table": status.routing_table,
        "topics": status.topics,
        "queued_publishes": status.queued_publishes,
        "objects_stored": objects,
        "engine": {
            "runs_started": engine.started,
            "runs_resumed": engine.restored,
            "runs_finished": engine.finished,
            "refused": engine.refused,
            "refusals": engine
                .refusals
                .iter()
                .map(|(refusal, count)| (refusal.code().to_owned(), json!(count)))
                .collect::<serde_json::Map<String, Value>>(),
            "delivered_locally": engine.local,
            "timers_fired": engine.timers,
            "jobs_running": jobs,
        },
        "dir": state.dir.display().to_string(),
        "counters": Counters::snapshot(),
    })))
}

/// The `counters` field of `GET /v1/status`: this process's work so far (signatures,
/// verifications, messages by transport, store writes), monotonic, for benchmarks that compare
/// two readings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Counters {
    signatures: u64,
    verifications: u64,
    gossip_published: u64,
    gossip_received: u64,
    gossip_duplicates: u64,
    direct_sent: u64,
    direct_received: u64,
    store_writes: u64,
    store_batches: u64,
}

impl Counters {
    fn snapshot() -> Self {
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
        }
    }
}

async fn peers(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let peers = state.net.peers().await?;
    Ok(Json(Value::Array(
        peers
            .into_iter()
            .map(|p| {
                json!({
                    "peer_id": p.peer_id.to_string(),
                    "connected": p.connected,
                    "addresses": p.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )))
}

/// The body of `POST /v1/intents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishIntent {
    /// Capability wanted (not needed with `workflow`).
    #[serde(default)]
    pub capability: String,
    /// A workflow file's text (TOML, see `pvl_patterns::workflow`): run it instead of one
    /// intent.
    pub workflow: Option<String>,
    /// Split the input into at most this many shards, each awarded to its own provider.
    pub parallel: Option<usize>,
    /// How to split for `parallel`: `lines` (default), `bytes:SIZE`, `json-array`.
    pub split: Option<String>,
    /// How to combine shard outputs: `concat` (default), `sum`, or a capability.
    pub reduce: Option<String>,
    /// Approval committee: members' public keys (64 hex digits) or peer ids.
    pub committee: Option<Vec<String>>,
    /// Approvals needed (default: more than two thirds of the committee).
    pub threshold: Option<u32>,
    /// Input as UTF-8 text.
    pub input: Option<String>,
    /// Input as hex (for binary data).
    pub input_hex: Option<String>,
    /// Budget: highest acceptable cost.
    pub budget: Option<u64>,
    /// Deadline, in ms from now.
    pub deadline_ms: Option<u64>,
    /// Minimum reliability, in basis points.
    pub min_reliability_bps: Option<u16>,
    /// Selection strategy (`lowest-cost`, `fastest`, `highest-quality`, `weighted:...`).
    pub strategy: Option<String>,
    /// Pattern hint (`contract-net`, `auction`, ...).
    pub pattern: Option<String>,
    /// How long offers are accepted, in ms (default 60,000).
    pub expires_in_ms: Option<u64>,
    /// How long offers are collected before the selection, in ms (default 2,000).
    pub window_ms: Option<u64>,
    /// Select as soon as this many acceptable offers are in.
    pub min_offers: Option<usize>,
    /// Answer only when the intent is over (completed or failed), with its outcome.
    #[serde(default)]
    pub wait: bool,
    /// With `wait`: give up waiting after this many ms (default: deadline + 30 s, or 120 s).
    pub wait_timeout_ms: Option<u64>,
}

async fn publish_intent(
    State(state): State<Shared>,
    Json(request): Json<PublishIntent>,
) -> ApiResult<Response> {
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
            .get(&state.store, &options.capability, finished)
            .await
    };
    // Planned (and the intent signed) after the history was read: the intent's timestamp is
    // when it goes out.
    let planned = CoordinationRequest::plan(options, history, pvl_net::now_ms())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let started = state
        .actor
        .start(planned, wait)
        .await
        .map_err(stopped)?
        .map_err(ApiError::bad_request)?;
    let trace = started.trace;
    // The intent's first publication is awaited here, so the caller learns whether it went
    // out; everything else runs in the node actor.
    let mut body = json!({ "trace_id": trace.to_string(), "id": trace.to_string() });
    for object in started.publications {
        match state.net.publish(object).await {
            Ok(report) => {
                body["published"] = json!(true);
                body["topics"] = json!(report.topics);
                body["waited_ms"] = json!(report.waited_ms);
            }
            Err(e) => {
                let mut error = ApiError::from(e);
                body["published"] = json!(false);
                error.extra = Some(body);
                return Err(error);
            }
        }
    }
    let Some(waiter) = started.outcome else {
        return Ok((StatusCode::CREATED, Json(body)).into_response());
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(wait_timeout), waiter)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no outcome within {wait_timeout} ms"),
            )
        })?
        .map_err(|_| stopped(crate::actor::Stopped))?;
    // Whoever saw the outcome may read the trace next: it must all be in the store by then.
    state.recorder.synced().await;
    if let (Value::Object(outcome), Some(map)) = (outcome_json(&outcome), body.as_object_mut()) {
        map.extend(outcome);
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn stopped(e: crate::actor::Stopped) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The typed request of a `POST /v1/intents` body: text fields parsed, input decoded,
/// committee members resolved to keys. The field rules are [`CoordinationRequest::plan`]'s.
fn request_options(mut request: PublishIntent) -> ApiResult<RequestOptions> {
    let bad = |e: pvl_protocol::ProtocolError| ApiError::bad_request(e.to_string());
    let input = match (request.input.take(), request.input_hex.take()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `input` or `input_hex`, not both",
            ));
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex_text)) => hex::decode(hex_text.trim())
            .map_err(|e| ApiError::bad_request(format!("input_hex: {e}")))?,
        (None, None) => Vec::new(),
    };
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(RequestOptions {
        capability: request.capability,
        input,
        workflow: request.workflow,
        parallel: request.parallel,
        split: request
            .split
            .map(|s| s.parse::<Split>())
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        reduce: request
            .reduce
            .map(|r| r.parse::<Reduce>())
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
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
            .map_err(bad)?,
        pattern: match request.pattern.as_deref() {
            None | Some("auto") => None,
            Some(p) => Some(p.parse::<PatternHint>().map_err(bad)?),
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
                    ApiError::bad_request(format!(
                        "committee member `{m}` is neither a public key (64 hex digits) nor a \
                         peer id"
                    ))
                })
        })
        .collect()
}

/// The JSON shape of an intent's outcome: `status`, `provider`, `output`, `receipt_id`, ...,
/// and for a workflow or parallel run `parts` (one per stage or shard).
pub fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Completed(c) => {
            let (output, output_hex) = payload_json(c.output.as_ref());
            json!({
                "status": "completed",
                "provider": c.provider.to_string(),
                "task": c.task.to_string(),
                "offer": c.offer.to_string(),
                "cost": c.cost,
                "output": output,
                "output_hex": output_hex,
                "receipt_id": c.receipt.as_ref().map(|r| r.id().to_string()),
                "receipt_countersigned": c.receipt.as_ref().is_some_and(|r| r.is_countersigned()),
                "awards": c.awards,
                "parts": c.parts.iter().map(part_json).collect::<Vec<_>>(),
            })
        }
        Outcome::Failed(f) => json!({
            "status": "failed",
            "reason": f.reason.name(),
            "detail": f.detail,
            "parts": f.parts.iter().map(part_json).collect::<Vec<_>>(),
        }),
    }
}

/// An output as text when it is UTF-8, as hex otherwise.
fn payload_json(payload: Option<&Payload>) -> (Option<String>, Option<String>) {
    let Some(bytes) = payload.and_then(|p| p.inline()) else {
        return (None, None);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(hex::encode(bytes))),
    }
}

/// One stage or shard of a composite outcome.
fn part_json(part: &pvl_patterns::PartResult) -> Value {
    let (output, output_hex) = payload_json(part.output.as_ref());
    json!({
        "label": part.label,
        "capability": part.capability,
        "status": part.status.name(),
        "failure": match &part.status {
            pvl_patterns::PartStatus::Failed(reason) => Some(reason.as_str()),
            _ => None,
        },
        "provider": part.provider.map(|p| p.to_string()),
        "task": part.task.map(|t| t.to_string()),
        "cost": part.cost,
        "awards": part.awards,
        "output": output,
        "output_hex": output_hex,
        "receipt_id": part.receipt.as_ref().map(|r| r.id().to_string()),
        "started_ms": part.started_ms,
        "finished_ms": part.finished_ms,
        "duration_ms": part.started_ms.zip(part.finished_ms).map(|(s, f)| f.saturating_sub(s)),
    })
}

#[derive(Debug, Deserialize)]
struct OutcomeQuery {
    timeout_ms: Option<u64>,
}

async fn intent_outcome(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<OutcomeQuery>,
) -> ApiResult<Json<Value>> {
    let trace = parse_id(&id)?;
    let waiter = state.actor.wait(trace).await.map_err(stopped)?;
    let Some(waiter) = waiter else {
        // Not (or no longer) in memory: an intent of an earlier run answers from the store.
        state.recorder.synced().await;
        let objects = trace_objects(&state, &trace)?;
        return match crate::recovery::stored_outcome(&objects, trace, &state.key) {
            Some(mut body) => {
                body["trace_id"] = json!(trace.to_string());
                Ok(Json(body))
            }
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("this node does not coordinate intent {trace}"),
            )),
        };
    };
    let timeout = query.timeout_ms.unwrap_or(120_000);
    let outcome = tokio::time::timeout(std::time::Duration::from_millis(timeout), waiter)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no outcome within {timeout} ms"),
            )
        })?
        .map_err(|_| stopped(crate::actor::Stopped))?;
    state.recorder.synced().await;
    let mut body = outcome_json(&outcome);
    body["trace_id"] = json!(trace.to_string());
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_traces(
    State(state): State<Shared>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = query.limit.unwrap_or(50).min(10_000);
    state.recorder.synced().await;
    let traces = state.store.recent_traces(limit)?;
    let list: Vec<Value> = traces
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
            v["trace_id"] = json!(t.trace.to_string());
            v["kind"] = json!(t.pattern.name());
            v
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

fn parse_id(text: &str) -> ApiResult<ObjectId> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("`{text}` is not a trace id (64 hex digits)")))
}

fn trace_objects(state: &NodeState, id: &ObjectId) -> ApiResult<Vec<SignedObject>> {
    let dag = state.store.trace(id)?;
    Ok(dag.objects()?)
}

async fn show_trace(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    state.recorder.synced().await;
    let objects = trace_objects(&state, &id)?;
    let summary = state.store.trace_summary(&id)?;
    // Parents before children (see `pvl_trace::causal_order`): clients print as given.
    let objects = pvl_trace::causal_order(&objects);
    Ok(Json(json!({ "summary": summary, "objects": objects })))
}

async fn analyse_trace(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    state.recorder.synced().await;
    let analysis = state.store.analyse(&id)?;
    Ok(Json(serde_json::to_value(analysis).map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

async fn export_trace(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    state.recorder.synced().await;
    let objects = trace_objects(&state, &id)?;
    let format = query.format.unwrap_or_else(|| "json".into());
    let (content_type, body): (&str, Vec<u8>) = match format.as_str() {
        "json" => (
            "application/json",
            pvl_trace::export::to_json(&objects)?.into_bytes(),
        ),
        "dot" => (
            "text/vnd.graphviz",
            pvl_trace::export::to_dot(&objects).into_bytes(),
        ),
        "mermaid" => (
            "text/plain",
            pvl_trace::export::to_mermaid(&objects).into_bytes(),
        ),
        "bundle" => ("application/cbor", pvl_trace::export::to_bundle(&objects)?),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown format `{other}`: expected json, dot, mermaid or bundle"
            )));
        }
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

async fn events(State(state): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(state.events.subscribe()).map(|item| {
        let data = match item {
            Ok(json) => json,
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => {
                json!({ "type": "lagged", "missed": missed }).to_string()
            }
        };
        Ok(Event::default().data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
