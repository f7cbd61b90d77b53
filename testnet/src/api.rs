//! A small client of a node's control API (`DIR/api.addr`, bearer token in `DIR/api-token`),
//! for what the CLI does not expose in a form a benchmark can use: many concurrent
//! `POST /v1/intents` and the server-sent event stream with arrival times.

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// How many event lines may wait unread before the reader thread blocks.
const EVENT_QUEUE: usize = 65_536;

/// A client of one node's control API.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    /// Reads the address and token of the node in `dir` (which must be running).
    pub fn open(dir: &Path) -> Result<Api> {
        let addr = std::fs::read_to_string(dir.join("api.addr"))
            .with_context(|| format!("no running node in {} (no api.addr)", dir.display()))?;
        let token = std::fs::read_to_string(dir.join("api-token"))
            .with_context(|| format!("cannot read the API token of {}", dir.display()))?;
        Ok(Api {
            base: format!("http://{}", addr.trim()),
            token: token.trim().to_owned(),
            agent: agent(Some(Duration::from_secs(180))),
        })
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("GET {path} on {}", self.base))?;
        read_json(response, path)
    }

    /// `POST path` with a JSON body; an HTTP error status is an error carrying the node's message.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body)
            .with_context(|| format!("POST {path} on {}", self.base))?;
        read_json(response, path)
    }

    /// Subscribes to `GET /v1/events`; every `data:` line arrives with the instant it was read.
    /// The subscription exists once this returns; the reader thread ends with the connection.
    pub fn events(&self) -> Result<Receiver<(Instant, Value)>> {
        let response = agent(None)
            .get(format!("{}/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .context("GET /v1/events")?;
        if !response.status().is_success() {
            bail!("the node refused the event stream ({})", response.status());
        }
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        std::thread::Builder::new()
            .name("sse".into())
            .spawn(move || {
                let reader = std::io::BufReader::new(response.into_body().into_reader());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    if tx.send((Instant::now(), event)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(rx)
    }
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

fn read_json(mut response: ureq::http::Response<ureq::Body>, path: &str) -> Result<Value> {
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .with_context(|| format!("reading the answer to {path}"))?;
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value["error"].as_str().map_or_else(
            || String::from_utf8_lossy(&body).into_owned(),
            str::to_owned,
        );
        bail!("{path}: {message} ({status})");
    }
    Ok(value)
}
