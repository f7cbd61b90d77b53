//! The blocking Rust client of the control API: one method per route, typed answers, typed
//! errors. The CLI, `pvl-testnet` and the tests all use it.

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agents::{BidAnswer, ProgressReport, TaskAnswer, VoteAnswer, WorkItem};
use crate::analysis::TraceAnalysis;
use crate::error::{ErrorBody, ErrorCode};
use crate::events::Event;
use crate::types::*;
use crate::{ADDR_FILE, TOKEN_FILE};

/// The default overall time limit of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes of one answer read (an exported trace bundle can be large).
const MAX_ANSWER: u64 = 1 << 30;

/// Events that may wait unread before the reader thread blocks (then the socket, and after it
/// the node's own buffer, hold the rest; a reader that falls further behind is told how many
/// events it missed). std's bounded channel allocates and writes every slot when it is
/// created, so this bound is memory paid up front by every stream: at 65,536 slots, the
/// 99 streams `pvl-testnet bench` opens on 100 nodes zeroed gigabytes of pages.
const EVENT_QUEUE: usize = 4096;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// There is no running node in the directory (no address file) or its token is missing.
    #[error("no node is running in {dir} (no {file}): start it with `pvl run --dir {dir}`")]
    NotRunning {
        /// The node directory.
        dir: String,
        /// The file that is missing.
        file: &'static str,
    },
    /// The node could not be reached, or the connection broke.
    #[error("cannot reach the node at {base}: {detail} (is `pvl run` still running?)")]
    Unreachable {
        /// The API's base URL.
        base: String,
        /// What the HTTP client said.
        detail: String,
    },
    /// The node answered with an error.
    #[error("{body} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error answer.
        body: ErrorBody,
    },
    /// The request is larger than the API takes ([`crate::MAX_BODY_BYTES`]); it was not sent.
    #[error(
        "the request to {path} is {bytes} bytes, more than the control API's limit of {limit} \
         bytes: send a smaller input (an intent carries at most 786,432 bytes inline)"
    )]
    TooLarge {
        /// The route.
        path: String,
        /// The request body's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The node's answer was not what the contract says.
    #[error("unexpected answer to {path}: {detail}")]
    Decode {
        /// The route.
        path: String,
        /// What did not match.
        detail: String,
    },
}

impl ClientError {
    /// The error code, when the node answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }
}

/// A client of one node's control API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the API at `addr` (`host:port`) with `token`.
    pub fn new(addr: &str, token: &str) -> Client {
        Client {
            base: format!("http://{}", addr.trim()),
            token: token.trim().to_owned(),
            agent: agent(Some(DEFAULT_TIMEOUT)),
        }
    }

    /// A client of the node running in `dir` (its address and token files).
    pub fn open(dir: &Path) -> Result<Client, ClientError> {
        let read = |file: &'static str| {
            std::fs::read_to_string(dir.join(file)).map_err(|_| ClientError::NotRunning {
                dir: dir.display().to_string(),
                file,
            })
        };
        let addr = read(ADDR_FILE)?;
        let token = read(TOKEN_FILE)?;
        Ok(Client::new(&addr, &token))
    }

    /// The same client with another overall time limit per call (`None`: no limit).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Client {
        Client {
            agent: agent(timeout),
            ..self.clone()
        }
    }

    /// The API's base URL (`http://host:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/id`.
    pub fn id(&self) -> Result<NodeId, ClientError> {
        self.get_json("/v1/id")
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status, ClientError> {
        self.get_json("/v1/status")
    }

    /// `GET /v1/peers`.
    pub fn peers(&self) -> Result<Vec<Peer>, ClientError> {
        self.get_json("/v1/peers")
    }

    /// `GET /v1/capabilities`: the capability directory.
    pub fn capabilities(&self) -> Result<Vec<CapabilityListing>, ClientError> {
        self.get_json("/v1/capabilities")
    }

    /// `POST /v1/intents`. With `wait`, the call's time limit should exceed the run's.
    pub fn publish(&self, request: &PublishIntent) -> Result<Published, ClientError> {
        self.post_json("/v1/intents", request)
    }

    /// `POST /v1/workflows`: `request.workflow` is the workflow file's text.
    pub fn publish_workflow(&self, request: &PublishIntent) -> Result<Published, ClientError> {
        self.post_json("/v1/workflows", request)
    }

    /// `POST /v1/parallel`: `request.parallel` shards of `request.capability`.
    pub fn publish_parallel(&self, request: &PublishIntent) -> Result<Published, ClientError> {
        self.post_json("/v1/parallel", request)
    }

    /// `POST /v1/committees`: a consensus round with `request.committee`.
    pub fn publish_committee(&self, request: &PublishIntent) -> Result<Published, ClientError> {
        self.post_json("/v1/committees", request)
    }

    /// `GET /v1/intents/{id}/outcome`: waits up to `timeout` for the run to end.
    pub fn outcome(&self, id: &str, timeout: Duration) -> Result<RunOutcome, ClientError> {
        let path = format!(
            "/v1/intents/{}/outcome?timeout_ms={}",
            encode(id),
            timeout.as_millis()
        );
        self.get_json(&path)
    }

    /// `POST /v1/intents/{id}/cancel`: ends the run at once; how it ended.
    pub fn cancel(&self, id: &str, reason: Option<&str>) -> Result<RunOutcome, ClientError> {
        self.post_json(
            &format!("/v1/intents/{}/cancel", encode(id)),
            &CancelRequest {
                reason: reason.map(str::to_owned),
            },
        )
    }

    /// `GET /v1/traces?limit=N`.
    pub fn traces(&self, limit: usize) -> Result<Vec<TraceSummary>, ClientError> {
        self.get_json(&format!("/v1/traces?limit={limit}"))
    }

    /// `GET /v1/traces/{id}`.
    pub fn trace(&self, id: &str) -> Result<TraceView, ClientError> {
        self.get_json(&format!("/v1/traces/{}", encode(id)))
    }

    /// `GET /v1/traces/{id}/analysis`.
    pub fn analysis(&self, id: &str) -> Result<TraceAnalysis, ClientError> {
        self.get_json(&format!("/v1/traces/{}/analysis", encode(id)))
    }

    /// `GET /v1/traces/{id}/export?format=F`: the export's bytes.
    pub fn export(&self, id: &str, format: ExportFormat) -> Result<Vec<u8>, ClientError> {
        self.get_bytes(&format!(
            "/v1/traces/{}/export?format={}",
            encode(id),
            format.name()
        ))
    }

    /// `GET /v1/openapi.json`: the document the node serves.
    pub fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/openapi.json")
    }

    /// `POST /v1/ui/login`: a one-time address that signs a browser in to the web view.
    pub fn ui_login(&self) -> Result<UiLogin, ClientError> {
        // The route takes no body; `()` sends `null`, which it ignores.
        self.post_json("/v1/ui/login", &())
    }

    /// `GET /metrics`: the node's Prometheus metrics, in the OpenMetrics text format.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let bytes = self.get_bytes("/metrics")?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET /v1/agents/work`: the next bid or task for `capability`, waiting up to `wait`
    /// (`None` when nothing came).
    pub fn next_work(
        &self,
        capability: &str,
        wait: Duration,
    ) -> Result<Option<WorkItem>, ClientError> {
        let path = format!(
            "/v1/agents/work?capability={}&timeout_ms={}",
            encode(capability),
            wait.as_millis()
        );
        self.long_poll(&path, wait)
    }

    /// `GET /v1/agents/votes`: the next proposal to vote on, waiting up to `wait`.
    pub fn next_vote(&self, wait: Duration) -> Result<Option<WorkItem>, ClientError> {
        let path = format!("/v1/agents/votes?timeout_ms={}", wait.as_millis());
        self.long_poll(&path, wait)
    }

    /// A long poll: the item, or `None` when the node answered 204 (nothing within `wait`).
    fn long_poll(&self, path: &str, wait: Duration) -> Result<Option<WorkItem>, ClientError> {
        let body = self
            .with_timeout(Some(wait + DEFAULT_TIMEOUT))
            .get_bytes(path)?;
        if body.is_empty() {
            return Ok(None);
        }
        decode(path, &body).map(Some)
    }

    /// `POST /v1/agents/work/{id}/vote`.
    pub fn vote(&self, id: u64, answer: &VoteAnswer) -> Result<(), ClientError> {
        self.post_empty(&format!("/v1/agents/work/{id}/vote"), answer)
    }

    /// `POST /v1/agents/work/{id}/bid`.
    pub fn bid(&self, id: u64, answer: &BidAnswer) -> Result<(), ClientError> {
        self.post_empty(&format!("/v1/agents/work/{id}/bid"), answer)
    }

    /// `POST /v1/agents/work/{id}/progress`.
    pub fn progress(&self, id: u64, report: &ProgressReport) -> Result<(), ClientError> {
        self.post_empty(&format!("/v1/agents/work/{id}/progress"), report)
    }

    /// `POST /v1/agents/work/{id}/result`.
    pub fn finish(&self, id: u64, answer: &TaskAnswer) -> Result<(), ClientError> {
        self.post_empty(&format!("/v1/agents/work/{id}/result"), answer)
    }

    /// Subscribes to `GET /v1/events` (only `trace`'s objects when given). The subscription
    /// exists once this returns; every event arrives with the instant it was read.
    pub fn events(&self, trace: Option<&str>) -> Result<EventStream, ClientError> {
        let path = match trace {
            Some(t) => format!("/v1/events?trace={}", encode(t)),
            None => "/v1/events".to_owned(),
        };
        let response = agent(None)
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err(self.api_error(status, &read_body(response, &self.base)?));
        }
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("pvl-api-events".into())
            .spawn(move || {
                let reader = std::io::BufReader::new(response.into_body().into_reader());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    // An event this client does not know (a newer node) is skipped.
                    let Ok(event) = serde_json::from_str::<Event>(data.trim()) else {
                        continue;
                    };
                    if tx.send((Instant::now(), event)).is_err() {
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            return Err(ClientError::Unreachable {
                base: self.base.clone(),
                detail: format!("cannot start the event reader: {e}"),
            });
        }
        Ok(EventStream { rx })
    }

    fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.check(response)
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        decode(path, &self.get_bytes(path)?)
    }

    fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        decode(path, &self.post_bytes(path, body)?)
    }

    fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ClientError> {
        self.post_bytes(path, body).map(drop)
    }

    fn post_bytes<B: Serialize>(&self, path: &str, body: &B) -> Result<Vec<u8>, ClientError> {
        // Checked here: the node refuses a larger body before reading it, which the sender
        // sees as a broken connection rather than the node's 413.
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            path: path.to_owned(),
            detail: format!("cannot encode the request: {e}"),
        })?;
        if json.len() > crate::MAX_BODY_BYTES {
            return Err(ClientError::TooLarge {
                path: path.to_owned(),
                bytes: json.len(),
                limit: crate::MAX_BODY_BYTES,
            });
        }
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(&json[..])
            .map_err(|e| self.unreachable(e))?;
        self.check(response)
    }

    fn check(&self, response: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>, ClientError> {
        let status = response.status().as_u16();
        let body = read_body(response, &self.base)?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(self.api_error(status, &body))
        }
    }

    fn api_error(&self, status: u16, body: &[u8]) -> ClientError {
        let body = serde_json::from_slice::<ErrorBody>(body).unwrap_or_else(|_| {
            ErrorBody::new(
                ErrorCode::from_status(status),
                String::from_utf8_lossy(body).trim().to_owned(),
            )
        });
        ClientError::Api { status, body }
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            base: self.base.clone(),
            detail: e.to_string(),
        }
    }
}

/// The events of a subscription, each with the instant it was read.
#[derive(Debug)]
pub struct EventStream {
    rx: Receiver<(Instant, Event)>,
}

impl EventStream {
    /// The next event, waiting at most `timeout`; `None` on time-out or when the stream ended.
    pub fn next_within(&self, timeout: Duration) -> Option<(Instant, Event)> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event; `None` when the stream ended.
    pub fn next_event(&self) -> Option<(Instant, Event)> {
        self.rx.recv().ok()
    }

    /// An event already read, if any, without waiting.
    pub fn try_next(&self) -> Option<(Instant, Event)> {
        self.rx.try_recv().ok()
    }
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

fn read_body(
    mut response: ureq::http::Response<ureq::Body>,
    base: &str,
) -> Result<Vec<u8>, ClientError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| ClientError::Unreachable {
            base: base.to_owned(),
            detail: e.to_string(),
        })
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// Keeps only hex digits and the characters an id prefix can hold; anything else is
/// percent-encoded so that a bad id reaches the node (and its clear error) intact.
fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
