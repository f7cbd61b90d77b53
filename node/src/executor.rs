//! Executors: what actually runs a task a node was awarded.
//!
//! Declared per capability in `config.toml` as `[[executor]]` tables:
//! - `builtin`: the capabilities `echo` (output = input), `sha256` (lowercase hex digest),
//!   `wordcount` (number of whitespace-separated words) and `sleep` (input: milliseconds);
//!   for demos and tests;
//! - `exec`: a command; the task input on its stdin, the output from its stdout, its exit
//!   status decides success, and it is killed when the timeout passes;
//! - `http`: the input is POSTed to a local agent URL; a 2xx response body is the output;
//! - `agent`: agent programs connected through the control API bid with their own terms and
//!   run the tasks (see `pvl_api::agents` and [`crate::agents`]).

use std::time::Duration;

use pvl_api::{BidAnswer, BidRequest, TaskAnswer, TaskRequest, VoteAnswer, VoteRequest, Work};
use pvl_patterns::{BidDecision, VoteDecision};
use pvl_protocol::{Body, ObjectId, Payload, SignedObject};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::agents::{AgentHub, Answer};

/// The builtin capabilities.
pub const BUILTINS: [&str; 4] = ["echo", "sha256", "wordcount", "sleep"];

/// How a capability is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// One of [`BUILTINS`].
    Builtin,
    /// A local command.
    Exec,
    /// A local HTTP agent.
    Http,
    /// An agent program connected through the control API (`/v1/agents/work`): it bids on
    /// the capability's intents with its own terms and runs its tasks.
    Agent,
}

/// One `[[executor]]` table: a capability this node serves and how.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// The capability served.
    pub capability: String,
    /// builtin, exec, http or agent.
    pub kind: ExecutorKind,
    /// For `exec`: the program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// For `http`: the URL the input is POSTed to.
    #[serde(default)]
    pub url: Option<String>,
    /// The price offered for a task.
    pub price: u64,
    /// The estimated completion time offered, in ms.
    pub eta_ms: u64,
    /// The reliability claimed, in basis points.
    #[serde(default = "default_reliability")]
    pub reliability_bps: u16,
    /// A task running longer than this is killed and reported failed, in ms.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// For `agent`: how long the program may take to answer a bid request, ms (never past
    /// the intent's offer window).
    #[serde(default = "default_bid_timeout")]
    pub bid_timeout_ms: u64,
}

fn default_bid_timeout() -> u64 {
    1_000
}

fn default_reliability() -> u16 {
    9_500
}

fn default_timeout() -> u64 {
    30_000
}

impl ExecutorConfig {
    /// Checks that the table is complete for its kind.
    pub fn check(&self) -> Result<(), String> {
        match self.kind {
            ExecutorKind::Builtin if !BUILTINS.contains(&self.capability.as_str()) => Err(format!(
                "no builtin executor `{}` (builtins: {})",
                self.capability,
                BUILTINS.join(", ")
            )),
            ExecutorKind::Exec if self.command.is_empty() => Err(format!(
                "executor `{}`: kind exec needs a command",
                self.capability
            )),
            ExecutorKind::Http if self.url.is_none() => Err(format!(
                "executor `{}`: kind http needs a url",
                self.capability
            )),
            _ if self.reliability_bps > 10_000 => Err(format!(
                "executor `{}`: reliability_bps above 10000",
                self.capability
            )),
            _ => Ok(()),
        }
    }
}

/// Asks the agent programs of the intent's capability for terms: their bid, or a decline
/// when they decline, do not answer within the executor's `bid_timeout_ms` (or before the
/// intent closes), or none is configured.
pub async fn bid_by_agent(
    agents: &AgentHub,
    executor: Option<&ExecutorConfig>,
    intent: &SignedObject,
) -> BidDecision {
    let decline = |reason: String| BidDecision::Decline(reason);
    let (Some(executor), pvl_protocol::Body::Intent(body)) = (executor, intent.body()) else {
        return decline("no agent executor for this intent".into());
    };
    let now = pvl_net::now_ms();
    let answer_by = now
        .saturating_add(executor.bid_timeout_ms)
        .min(body.expires_at_ms);
    let (input, input_hex) = payload_text(&body.input);
    let work = Work::Bid(BidRequest {
        intent: intent.id(),
        trace_id: intent.trace_id(),
        requester: intent.signer(),
        input,
        input_hex,
        input_size: body.input.size(),
        budget: body.constraints.max_cost,
        deadline_ms: body.constraints.deadline_ms,
        min_reliability_bps: body.constraints.min_reliability_bps,
        offers_close_ms: body.expires_at_ms,
    });
    let (id, answer) = match agents.queue(&executor.capability, work, answer_by) {
        Ok(queued) => queued,
        Err(e) => return decline(e.to_string()),
    };
    let wait = Duration::from_millis(answer_by.saturating_sub(now));
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(Answer::Bid(BidAnswer::Offer {
            cost,
            eta_ms,
            reliability_bps,
            expires_in_ms,
            cpu_millicores,
            memory_bytes,
            disk_bytes,
        }))) => {
            let now = pvl_net::now_ms();
            BidDecision::Bid(pvl_protocol::Offer {
                intent: intent.id(),
                cost,
                eta_ms,
                reliability_bps: reliability_bps.min(10_000),
                resources: pvl_protocol::Resources {
                    cpu_millicores,
                    memory_bytes,
                    disk_bytes,
                },
                // Without a stated lifetime the provider's offer lifetime applies.
                expires_at_ms: expires_in_ms.map_or(u64::MAX, |ms| now.saturating_add(ms)),
            })
        }
        Ok(Ok(Answer::Bid(BidAnswer::Decline { reason }))) => decline(reason),
        Ok(Ok(Answer::Task(_) | Answer::Vote(_))) | Ok(Err(_)) => {
            agents.forget(id);
            decline("the agent program gave no bid".into())
        }
        Err(_) => {
            agents.forget(id);
            decline(format!(
                "no agent program answered within {} ms",
                wait.as_millis()
            ))
        }
    }
}

/// Runs one task through the agent programs of its capability: their output, or why it
/// failed (their reason, or that none finished within the executor's `timeout_ms`).
pub async fn by_agent(
    agents: &AgentHub,
    executor: &ExecutorConfig,
    task: ObjectId,
    input: &Payload,
    deadline_ms: Option<u64>,
) -> Result<Payload, String> {
    let now = pvl_net::now_ms();
    let answer_by = now.saturating_add(executor.timeout_ms);
    let (text, hex_text) = payload_text(input);
    let work = Work::Task(TaskRequest {
        task,
        input: text,
        input_hex: hex_text,
        deadline_ms,
    });
    let (id, answer) = agents
        .queue(&executor.capability, work, answer_by)
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_millis(executor.timeout_ms), answer).await {
        Ok(Ok(Answer::Task(TaskAnswer::Done { output, output_hex }))) => {
            match (output, output_hex) {
                (Some(text), None) => Ok(Payload::Inline(text.into_bytes())),
                (None, Some(h)) => hex::decode(h.trim())
                    .map(Payload::Inline)
                    .map_err(|e| format!("the agent program's output_hex: {e}")),
                (None, None) => Ok(Payload::Inline(Vec::new())),
                (Some(_), Some(_)) => {
                    Err("the agent program gave both output and output_hex".into())
                }
            }
        }
        Ok(Ok(Answer::Task(TaskAnswer::Failed { reason }))) => Err(reason),
        Ok(Ok(Answer::Bid(_) | Answer::Vote(_))) | Ok(Err(_)) => {
            agents.forget(id);
            Err("the agent program gave no result".into())
        }
        Err(_) => {
            agents.forget(id);
            Err(format!(
                "no agent program finished within {} ms",
                executor.timeout_ms
            ))
        }
    }
}

/// Asks the voter program how to vote on `proposal`: its decision, or a rejection saying
/// that none answered within `timeout` (or before the proposal's deadline).
pub async fn vote_by_agent(
    agents: &AgentHub,
    proposal: &SignedObject,
    timeout: Duration,
) -> VoteDecision {
    let Body::Proposal(body) = proposal.body() else {
        return VoteDecision::reject("not a proposal");
    };
    let now = pvl_net::now_ms();
    let answer_by = now
        .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
        .min(body.deadline_ms);
    let work = Work::Vote(VoteRequest {
        proposal: proposal.id(),
        trace_id: proposal.trace_id(),
        proposer: proposal.signer(),
        subject: body.subject,
        round: body.round,
        action: body.action.clone(),
        members: body.committee.members.len(),
        threshold: body.committee.threshold,
        deadline_ms: body.deadline_ms,
    });
    let (id, answer) = match agents.queue(crate::agents::VOTES, work, answer_by) {
        Ok(queued) => queued,
        Err(e) => return VoteDecision::reject(e.to_string()),
    };
    let wait = Duration::from_millis(answer_by.saturating_sub(now));
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(Answer::Vote(VoteAnswer { approve, reason }))) => VoteDecision { approve, reason },
        Ok(_) => {
            agents.forget(id);
            VoteDecision::reject("the voter program gave no vote")
        }
        Err(_) => {
            agents.forget(id);
            VoteDecision::reject(format!(
                "no voter program answered within {} ms",
                wait.as_millis()
            ))
        }
    }
}

/// An input as text when it is UTF-8, as hex otherwise (nothing for a reference).
fn payload_text(payload: &Payload) -> (Option<String>, Option<String>) {
    let Some(bytes) = payload.inline() else {
        return (None, None);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(hex::encode(bytes))),
    }
}

/// Runs one task: the output, or why it failed.
pub async fn run(config: &ExecutorConfig, input: &Payload) -> Result<Payload, String> {
    let Some(input) = input.inline() else {
        return Err("inputs by content hash are not supported by this node".into());
    };
    let timeout = Duration::from_millis(config.timeout_ms);
    let work = async {
        match config.kind {
            ExecutorKind::Builtin => builtin(&config.capability, input).await,
            ExecutorKind::Exec => exec(&config.command, input).await,
            ExecutorKind::Http => {
                http(config.url.clone().unwrap_or_default(), input.to_vec()).await
            }
            ExecutorKind::Agent => {
                Err("an agent executor's tasks go to its programs (by_agent)".into())
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result.map(Payload::Inline),
        Err(_) => Err(format!("timed out after {} ms", config.timeout_ms)),
    }
}

async fn builtin(capability: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    match capability {
        "echo" => Ok(input.to_vec()),
        "sha256" => Ok(hex::encode(pvl_protocol::sha256(input)).into_bytes()),
        "wordcount" => Ok(String::from_utf8_lossy(input)
            .split_whitespace()
            .count()
            .to_string()
            .into_bytes()),
        "sleep" => {
            let text = String::from_utf8_lossy(input);
            let ms: u64 = text.trim().parse().map_err(|_| {
                format!(
                    "sleep wants a number of milliseconds, got `{}`",
                    text.trim()
                )
            })?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(format!("slept {ms} ms").into_bytes())
        }
        other => Err(format!("no builtin executor `{other}`")),
    }
}

/// Asks the `[consensus] exec` vote handler how to vote on `proposal`: the terms (the
/// proposal's action line) on stdin, `approve [reason]` or `reject reason` expected on stdout.
/// Anything else (another answer, a failure, a timeout) is a rejection saying so.
pub async fn vote(command: &[String], proposal: &SignedObject, timeout: Duration) -> VoteDecision {
    let reject = |reason: String| VoteDecision {
        approve: false,
        reason,
    };
    let Body::Proposal(p) = proposal.body() else {
        return reject(format!("a {} is not a proposal", proposal.kind()));
    };
    let input = format!("{}\n", p.action);
    match tokio::time::timeout(timeout, exec(command, input.as_bytes())).await {
        Err(_) => reject(format!(
            "the vote handler timed out after {} ms",
            timeout.as_millis()
        )),
        Ok(Err(e)) => reject(format!("the vote handler failed: {e}")),
        Ok(Ok(out)) => parse_vote(&String::from_utf8_lossy(&out)),
    }
}

/// Reads a vote handler's answer: its first line, `approve [reason]` or `reject reason`.
fn parse_vote(answer: &str) -> VoteDecision {
    let line = answer.lines().next().unwrap_or("").trim();
    let (word, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let reason = reason.trim();
    match word {
        "approve" => VoteDecision {
            approve: true,
            reason: if reason.is_empty() {
                "approved by the vote handler".into()
            } else {
                reason.into()
            },
        },
        "reject" => VoteDecision {
            approve: false,
            reason: if reason.is_empty() {
                "rejected by the vote handler".into()
            } else {
                reason.into()
            },
        },
        _ => VoteDecision {
            approve: false,
            reason: format!("the vote handler answered `{line}`, not approve or reject"),
        },
    }
}

async fn exec(command: &[String], input: &[u8]) -> Result<Vec<u8>, String> {
    let (program, args) = command.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input may close stdin early: not an error.
        let _ = stdin.write_all(input).await;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("`{program}` failed: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        Err(format!(
            "`{program}` exited with {}: {first}",
            output.status
        ))
    }
}

async fn http(url: String, input: Vec<u8>) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .header("Content-Type", "application/octet-stream")
            .send(&input[..])
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(pvl_protocol::MAX_INLINE_PAYLOAD as u64)
            .read_to_vec()
            .map_err(|e| format!("POST {url}: {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("POST {url}: HTTP {}", status.as_u16()))
        }
    })
    .await
    .map_err(|e| format!("http executor panicked: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capability: &str, kind: ExecutorKind, command: &[&str]) -> ExecutorConfig {
        ExecutorConfig {
            capability: capability.into(),
            kind,
            command: command.iter().map(|s| s.to_string()).collect(),
            url: None,
            price: 1,
            eta_ms: 100,
            reliability_bps: 9_000,
            timeout_ms: 2_000,
            bid_timeout_ms: 1_000,
        }
    }

    fn text(p: Payload) -> String {
        String::from_utf8(p.inline().unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn builtins_compute_what_they_say() {
        let input = Payload::Inline(b"hello pervasive world".to_vec());
        let out = run(&config("sha256", ExecutorKind::Builtin, &[]), &input)
            .await
            .unwrap();
        assert_eq!(
            text(out),
            hex::encode(pvl_protocol::sha256(b"hello pervasive world"))
        );
        let out = run(&config("wordcount", ExecutorKind::Builtin, &[]), &input)
            .await
            .unwrap();
        assert_eq!(text(out), "3");
        let out = run(&config("echo", ExecutorKind::Builtin, &[]), &input)
            .await
            .unwrap();
        assert_eq!(text(out), "hello pervasive world");
        let bad = run(&config("sleep", ExecutorKind::Builtin, &[]), &input)
            .await
            .unwrap_err();
        assert!(bad.contains("milliseconds"), "{bad}");
        assert!(
            config("resize", ExecutorKind::Builtin, &[])
                .check()
                .is_err()
        );
    }

    #[test]
    fn vote_answers_are_read_strictly() {
        let yes = parse_vote("approve cheap enough\nignored");
        assert!(yes.approve);
        assert_eq!(yes.reason, "cheap enough");
        assert!(parse_vote("approve").approve);
        let no = parse_vote("reject too slow");
        assert!(!no.approve);
        assert_eq!(no.reason, "too slow");
        let odd = parse_vote("yes please");
        assert!(!odd.approve);
        assert!(
            odd.reason.contains("not approve or reject"),
            "{}",
            odd.reason
        );
        assert!(!parse_vote("").approve);
    }

    #[tokio::test]
    async fn exec_uses_stdin_stdout_exit_status_and_timeout() {
        let input = Payload::Inline(b"a b c".to_vec());
        let out = run(&config("count", ExecutorKind::Exec, &["wc", "-w"]), &input)
            .await
            .unwrap();
        assert_eq!(text(out).trim(), "3");
        let err = run(
            &config(
                "fail",
                ExecutorKind::Exec,
                &["sh", "-c", "echo oops >&2; exit 3"],
            ),
            &input,
        )
        .await
        .unwrap_err();
        assert!(err.contains("oops"), "{err}");
        let mut slow = config("slow", ExecutorKind::Exec, &["sleep", "5"]);
        slow.timeout_ms = 200;
        let err = run(&slow, &input).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(config("x", ExecutorKind::Exec, &[]).check().is_err());
    }

    /// A local agent on port 0: `/upper` answers the input in capitals, `/fail` with 500,
    /// `/slow` after 5 s.
    async fn agent() -> std::net::SocketAddr {
        use axum::routing::post;
        let app = axum::Router::new()
            .route(
                "/upper",
                post(|body: axum::body::Bytes| async move { body.to_ascii_uppercase() }),
            )
            .route(
                "/fail",
                post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn http_posts_the_input_and_a_2xx_body_is_the_output() {
        let addr = agent().await;
        let input = Payload::Inline(b"shout this".to_vec());
        let mut upper = config("upper", ExecutorKind::Http, &[]);
        upper.url = Some(format!("http://{addr}/upper"));
        assert!(upper.check().is_ok());
        assert_eq!(text(run(&upper, &input).await.unwrap()), "SHOUT THIS");

        let mut fail = config("fail", ExecutorKind::Http, &[]);
        fail.url = Some(format!("http://{addr}/fail"));
        let err = run(&fail, &input).await.unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");

        let mut slow = config("slow", ExecutorKind::Http, &[]);
        slow.url = Some(format!("http://{addr}/slow"));
        slow.timeout_ms = 200;
        let err = run(&slow, &input).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");

        // Nobody listens on a port that was just released.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut gone = config("gone", ExecutorKind::Http, &[]);
        gone.url = Some(format!("http://127.0.0.1:{port}/upper"));
        let err = run(&gone, &input).await.unwrap_err();
        assert!(err.starts_with("POST http://127.0.0.1"), "{err}");

        assert!(config("nourl", ExecutorKind::Http, &[]).check().is_err());
    }
}
