//! The OpenAPI 3.1 document of the control API, generated from this crate's types.
//!
//! The operations below are declarations only (the node's axum handlers implement them);
//! what they declare (paths, parameters, bodies, answers) is the contract, and the test at
//! the end keeps the checked-in `crates/api/openapi.json` equal to it.

#![allow(dead_code)] // the operation functions exist for their `#[utoipa::path]` only

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::agents::{
    BidAnswer, BidRequest, ProgressReport, TaskAnswer, TaskRequest, VoteAnswer, VoteRequest,
    VotesQuery, Work, WorkItem, WorkQuery,
};
use crate::analysis::{
    AdaptiveChoice, AgentTasks, ConsensusRound, CriticalPath, OfferLatency, PartKind, PartTiming,
    PathStep, RoundOutcome, RoundVote, TaskInfo, TraceAnalysis, TraceFailure, TraceVerification,
};
use crate::error::{ErrorBody, ErrorCode};
use crate::events::{Event, ObjectEvent};
use crate::types::*;

/// The generated document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pvl control API",
        description = "The loopback control API of a pvl node. Every route needs \
                       `Authorization: Bearer <token>` (the node directory's `api-token`). \
                       Errors are always an ErrorBody with a machine-readable `code`. Ids in \
                       paths may be a unique prefix of at least 8 hex digits."
    ),
    paths(
        id, status, peers, capabilities, publish_intent, publish_workflow, publish_parallel,
        publish_committee, intent_outcome, cancel_intent, list_traces, show_trace,
        analyse_trace, export_trace, events, openapi_json, metrics, ui_login, next_work, answer_bid,
        report_progress, answer_task, next_vote, answer_vote
    ),
    components(schemas(
        ErrorBody, ErrorCode, Event, ObjectEvent, NodeId, Status, EngineStatus, Counters, Peer, BannedPeer, Reachability, Link,
        CapabilityListing, ProviderListing,
        PublishIntent, CancelRequest, Published, Outcome, Completed, Failed, Part, RunOutcome, TraceStatus,
        Pattern, TraceSummary, ObjectView, TraceView, TraceAnalysis, AdaptiveChoice, TraceFailure,
        TaskInfo, PartKind, PartTiming, RoundOutcome, RoundVote, ConsensusRound, AgentTasks, TraceVerification, UiLogin,
        PathStep, CriticalPath, OfferLatency, ExportFormat, WorkItem, Work,
        BidRequest, TaskRequest, BidAnswer, ProgressReport, TaskAnswer, VoteRequest, VoteAnswer
    )),
    modifiers(&BearerToken),
    security(("token" = []))
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every route uses.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as pretty JSON, ending with a newline (what the node serves at
/// `GET /v1/openapi.json` and what is checked in).
pub fn document_json() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut text = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// Who this node is.
#[utoipa::path(get, path = "/v1/id", responses(
    (status = 200, description = "The node's ids and addresses", body = NodeId),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
))]
fn id() {}

/// Network state, store size, engine runs and work counters.
#[utoipa::path(get, path = "/v1/status", responses(
    (status = 200, description = "The node's state", body = Status),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
))]
fn status() {}

/// Known peers.
#[utoipa::path(get, path = "/v1/peers", responses(
    (status = 200, description = "Peers known to the node", body = Vec<Peer>),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
))]
fn peers() {}

/// The capability directory: capabilities advertised on the network (signed capability ads
/// this node received and its own), with their providers and terms, until the ads lapse.
#[utoipa::path(get, path = "/v1/capabilities", responses(
    (status = 200, description = "Capabilities by name, providers cheapest first", body = Vec<CapabilityListing>),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
))]
fn capabilities() {}

/// Sign, record and publish an intent (or start a workflow or parallel job); with `wait`,
/// answer with its outcome.
#[utoipa::path(post, path = "/v1/intents", request_body = PublishIntent, responses(
    (status = 201, description = "Published; the run goes on", body = Published),
    (status = 200, description = "With `wait`: the run is over", body = Published),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
    (status = 415, description = "Body is not `application/json`", body = ErrorBody),
    (status = 422, description = "Not a valid request", body = ErrorBody),
    (status = 503, description = "No peer to publish to, or shutting down", body = ErrorBody),
    (status = 504, description = "With `wait`: no outcome in time", body = ErrorBody),
))]
fn publish_intent() {}

/// Run a workflow (`workflow` required; `capability`, `parallel` and `committee` refused).
#[utoipa::path(post, path = "/v1/workflows", request_body = PublishIntent, responses(
    (status = 201, description = "Published; the run goes on", body = Published),
    (status = 200, description = "With `wait`: the run is over", body = Published),
    (status = 422, description = "Not a workflow request", body = ErrorBody),
    (status = 503, description = "No peer to publish to", body = ErrorBody),
))]
fn publish_workflow() {}

/// Run a parallel job (`capability` and `parallel` required; `workflow` and `committee`
/// refused).
#[utoipa::path(post, path = "/v1/parallel", request_body = PublishIntent, responses(
    (status = 201, description = "Published; the run goes on", body = Published),
    (status = 200, description = "With `wait`: the run is over", body = Published),
    (status = 422, description = "Not a parallel request", body = ErrorBody),
    (status = 503, description = "No peer to publish to", body = ErrorBody),
))]
fn publish_parallel() {}

/// Run a consensus round: the award goes to a committee first (`capability` and `committee`
/// required; `workflow` and `parallel` refused).
#[utoipa::path(post, path = "/v1/committees", request_body = PublishIntent, responses(
    (status = 201, description = "Published; the run goes on", body = Published),
    (status = 200, description = "With `wait`: the run is over", body = Published),
    (status = 422, description = "Not a committee request", body = ErrorBody),
    (status = 503, description = "No peer to publish to", body = ErrorBody),
))]
fn publish_committee() {}

/// Wait for the outcome of a run this node coordinates.
#[utoipa::path(get, path = "/v1/intents/{id}/outcome", params(
    ("id" = String, Path, description = "Trace id or a unique prefix (8+ hex digits)"),
    OutcomeQuery,
), responses(
    (status = 200, description = "The run is over", body = RunOutcome),
    (status = 400, description = "Not an id", body = ErrorBody),
    (status = 404, description = "Not a run of this node", body = ErrorBody),
    (status = 409, description = "Ambiguous prefix", body = ErrorBody),
    (status = 504, description = "Still running after the timeout", body = ErrorBody),
))]
fn intent_outcome() {}

/// Cancel a run this node coordinates: it ends at once, failed with reason `cancelled`, and
/// a signed event in its trace says why.
#[utoipa::path(post, path = "/v1/intents/{id}/cancel", request_body = CancelRequest, params(
    ("id" = String, Path, description = "Trace id or a unique prefix (8+ hex digits)"),
), responses(
    (status = 200, description = "The run ended", body = RunOutcome),
    (status = 404, description = "Not a run this node is running", body = ErrorBody),
    (status = 409, description = "Ambiguous prefix", body = ErrorBody),
))]
fn cancel_intent() {}

/// Recent traces, newest first.
#[utoipa::path(get, path = "/v1/traces", params(ListQuery), responses(
    (status = 200, description = "Trace summaries", body = Vec<TraceSummary>),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
))]
fn list_traces() {}

/// One trace: its summary and its objects, parents before children.
#[utoipa::path(get, path = "/v1/traces/{id}", params(
    ("id" = String, Path, description = "Trace id or a unique prefix (8+ hex digits)"),
), responses(
    (status = 200, description = "The trace", body = TraceView),
    (status = 400, description = "Not an id", body = ErrorBody),
    (status = 404, description = "No such trace", body = ErrorBody),
    (status = 409, description = "Ambiguous prefix", body = ErrorBody),
))]
fn show_trace() {}

/// Pattern, tasks per agent, critical path, bottleneck, latencies.
#[utoipa::path(get, path = "/v1/traces/{id}/analysis", params(
    ("id" = String, Path, description = "Trace id or a unique prefix (8+ hex digits)"),
), responses(
    (status = 200, description = "The analysis", body = TraceAnalysis),
    (status = 404, description = "No such trace", body = ErrorBody),
    (status = 409, description = "Ambiguous prefix", body = ErrorBody),
))]
fn analyse_trace() {}

/// Export a trace as JSON, DOT, Mermaid or a CBOR bundle.
#[utoipa::path(get, path = "/v1/traces/{id}/export", params(
    ("id" = String, Path, description = "Trace id or a unique prefix (8+ hex digits)"),
    ExportQuery,
), responses(
    (status = 200, description = "The export, in the format's content type"),
    (status = 400, description = "Unknown format", body = ErrorBody),
    (status = 404, description = "No such trace", body = ErrorBody),
    (status = 409, description = "Ambiguous prefix", body = ErrorBody),
))]
fn export_trace() {}

/// Server-sent events: one JSON `Event` per `data:` line.
#[utoipa::path(get, path = "/v1/events", params(EventsQuery), responses(
    (status = 200, description = "`text/event-stream` of Event", body = Event,
     content_type = "text/event-stream"),
    (status = 404, description = "No such trace", body = ErrorBody),
))]
fn events() {}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API"),
))]
fn openapi_json() {}

/// Prometheus metrics of this node (the OpenMetrics text format): rounds, offers,
/// latencies, the store, peers, refusals, queues, executors, and libp2p's own series.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "OpenMetrics text", body = String,
     content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
))]
fn metrics() {}

/// A one-time address that signs a browser in to the web view (`/ui/`). Its code is
/// single-use and short-lived, exchanged at `GET /ui/login?code=` for an `HttpOnly`,
/// `SameSite=Strict` session cookie that authorises `GET` requests only.
#[utoipa::path(post, path = "/v1/ui/login", responses(
    (status = 200, description = "The address to open", body = UiLogin),
    (status = 401, description = "Missing or wrong token", body = ErrorBody),
    (status = 503, description = "Too many codes outstanding", body = ErrorBody),
))]
fn ui_login() {}

/// Agent programs: the next bid or task for a capability (long poll).
#[utoipa::path(get, path = "/v1/agents/work", params(WorkQuery), responses(
    (status = 200, description = "Work to do", body = WorkItem),
    (status = 204, description = "Nothing came within the timeout"),
    (status = 404, description = "No agent executor serves the capability", body = ErrorBody),
))]
fn next_work() {}

/// Agent programs: the answer to a bid request.
#[utoipa::path(post, path = "/v1/agents/work/{id}/bid", request_body = BidAnswer, params(
    ("id" = u64, Path, description = "The work item"),
), responses(
    (status = 204, description = "Taken"),
    (status = 404, description = "No such item waiting for a bid (answered, or too late)", body = ErrorBody),
    (status = 422, description = "Not a valid answer", body = ErrorBody),
))]
fn answer_bid() {}

/// Agent programs: progress on a task.
#[utoipa::path(post, path = "/v1/agents/work/{id}/progress", request_body = ProgressReport, params(
    ("id" = u64, Path, description = "The work item"),
), responses(
    (status = 204, description = "Signed and sent to the requester"),
    (status = 404, description = "No such task running", body = ErrorBody),
))]
fn report_progress() {}

/// Agent programs: how a task ended.
#[utoipa::path(post, path = "/v1/agents/work/{id}/result", request_body = TaskAnswer, params(
    ("id" = u64, Path, description = "The work item"),
), responses(
    (status = 204, description = "Taken: the node signs done and the receipt"),
    (status = 404, description = "No such task running (answered, or too late)", body = ErrorBody),
    (status = 422, description = "Not a valid answer", body = ErrorBody),
))]
fn answer_task() {}

/// Voter programs: the next proposal to vote on (long poll).
#[utoipa::path(get, path = "/v1/agents/votes", params(VotesQuery), responses(
    (status = 200, description = "A proposal to vote on", body = WorkItem),
    (status = 204, description = "Nothing came within the timeout"),
    (status = 404, description = "This node's votes are not decided by an agent", body = ErrorBody),
))]
fn next_vote() {}

/// Voter programs: the vote.
#[utoipa::path(post, path = "/v1/agents/work/{id}/vote", request_body = VoteAnswer, params(
    ("id" = u64, Path, description = "The work item"),
), responses(
    (status = 204, description = "Taken: the node signs the vote"),
    (status = 404, description = "No such proposal waiting (answered, or too late)", body = ErrorBody),
    (status = 422, description = "Not a valid answer", body = ErrorBody),
))]
fn answer_vote() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in document is the generated one. Regenerate with
    /// `PVL_UPDATE_OPENAPI=1 cargo test -p pvl-api`.
    #[test]
    fn the_checked_in_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let generated = document_json();
        if std::env::var_os("PVL_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "crates/api/openapi.json is out of date: run `PVL_UPDATE_OPENAPI=1 cargo test -p \
             pvl-api` and commit it"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/id",
            "/v1/status",
            "/v1/peers",
            "/v1/capabilities",
            "/v1/intents",
            "/v1/workflows",
            "/v1/parallel",
            "/v1/committees",
            "/v1/intents/{id}/outcome",
            "/v1/intents/{id}/cancel",
            "/v1/traces",
            "/v1/traces/{id}",
            "/v1/traces/{id}/analysis",
            "/v1/traces/{id}/export",
            "/v1/events",
            "/v1/openapi.json",
            "/metrics",
            "/v1/ui/login",
            "/v1/agents/work",
            "/v1/agents/work/{id}/bid",
            "/v1/agents/work/{id}/progress",
            "/v1/agents/work/{id}/result",
            "/v1/agents/votes",
            "/v1/agents/work/{id}/vote",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["token"]["scheme"],
            "bearer"
        );
    }
}
