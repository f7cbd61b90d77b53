//! `pvl mcp`: the node as a Model Context Protocol server, so that LLM agents (Claude
//! Desktop, editors, agent frameworks) can use the network through tools.
//!
//! The server speaks MCP over stdin/stdout (rmcp's stdio transport); its log goes to stderr.
//! It is a client of the node running in the directory, like the CLI: every tool call opens
//! `DIR/api.addr` and `DIR/api-token` afresh (so it follows a node that restarts) and makes
//! blocking calls of `pvl_api::Client` on tokio's blocking pool. Tool inputs are the control
//! API's request types (`publish_intent` takes `pvl_api::PublishIntent` as it is, its JSON
//! Schema derived with pvl-api's `schemars` feature); every answer is the API's answer type
//! (`CapabilityListing`, `Published`, `TraceView`, `TraceAnalysis`) as structured content
//! with its JSON Schema as the tool's output schema (and the same JSON as text, for clients
//! that read only text), and a failure is a tool error whose text is the client's one-line
//! message.
//!
//! Tools:
//! - `list_capabilities`: the capability directory (who serves what, at which terms);
//! - `publish_intent`: publish an intent (or a parallel job or committee round) and wait for
//!   its outcome;
//! - `run_workflow`: run a workflow file (TOML stages) and wait for its outcome;
//! - `show_trace`: a trace's summary and its signed objects in causal order;
//! - `analyze_trace`: which pattern ran, who did what, the critical path and bottleneck.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use pvl_api::{CapabilityListing, Client, PublishIntent, Published, TraceAnalysis, TraceView};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{Json, ServerHandler, ServiceExt as _, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;

/// How long a tool waits for a run by default when the request names no deadline.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

/// The arguments of `run_workflow`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RunWorkflow {
    /// Path of the workflow file (TOML: `[[stage]]` tables with name, capability, needs).
    pub file: String,
    /// The input of the first stages, as UTF-8 text.
    #[serde(default)]
    pub input: Option<String>,
    /// Highest acceptable cost per task.
    #[serde(default)]
    pub budget: Option<u64>,
    /// Deadline of the whole workflow, in ms from now.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

/// The argument of the trace tools.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TraceId {
    /// The trace id (the root intent's id, 64 hex digits), or 8 or more of its first digits.
    pub id: String,
}

/// The MCP server of one node directory.
#[derive(Debug, Clone)]
pub struct PvlMcp {
    dir: PathBuf,
    tool_router: ToolRouter<PvlMcp>,
}

#[tool_router]
impl PvlMcp {
    /// A server for the node running in `dir`.
    pub fn new(dir: PathBuf) -> PvlMcp {
        PvlMcp {
            dir,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs `call` with a client of the node on the blocking pool; its typed answer.
    async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(Client) -> Result<T, pvl_api::ClientError> + Send + 'static,
    ) -> Result<Json<T>, String> {
        let dir = self.dir.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let client = Client::open(&dir).map_err(|e| e.to_string())?;
            call(client).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the call to the node did not finish: {e}"))??;
        Ok(Json(answer))
    }

    /// The capability directory.
    #[tool(
        description = "List the capabilities advertised on the pvl network: for each, its \
                       providers with their price, concurrency and input description. Use it \
                       to choose a capability before publish_intent."
    )]
    async fn list_capabilities(&self) -> Result<Json<Vec<CapabilityListing>>, String> {
        self.call(|client| client.capabilities()).await
    }

    /// Publish and wait.
    #[tool(
        description = "Publish an intent on the pvl network and wait for its outcome: providers \
                       of `capability` bid, one is awarded the task, runs it on `input` and \
                       signs a receipt. Answers the trace id and the outcome (status, provider, \
                       cost, output). Set `parallel` to shard the input, `committee` for an \
                       approval round; `wait` is always on."
    )]
    async fn publish_intent(
        &self,
        Parameters(mut request): Parameters<PublishIntent>,
    ) -> Result<Json<Published>, String> {
        if request.workflow.is_some() {
            return Err("give workflows to run_workflow".into());
        }
        if request.capability.is_empty() {
            return Err("`capability` is required (list_capabilities shows them)".into());
        }
        request.wait = true;
        let limit = wait_limit(&request);
        self.call(move |client| {
            let client = client.with_timeout(Some(limit));
            if request.parallel.is_some() && request.committee.is_none() {
                client.publish_parallel(&request)
            } else if request.committee.is_some() && request.parallel.is_none() {
                client.publish_committee(&request)
            } else {
                client.publish(&request)
            }
        })
        .await
    }

    /// Run a workflow file and wait.
    #[tool(
        description = "Run a workflow file (TOML stages, each awarded by contract-net; the \
                       outputs of one stage are the inputs of the next) on the pvl network and \
                       wait for its outcome, with one part per stage."
    )]
    async fn run_workflow(
        &self,
        Parameters(args): Parameters<RunWorkflow>,
    ) -> Result<Json<Published>, String> {
        let text = std::fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file))?;
        pvl_patterns::workflow::WorkflowSpec::parse(&text)
            .map_err(|e| format!("{}: {e}", args.file))?;
        let request = PublishIntent {
            workflow: Some(text),
            input: args.input,
            budget: args.budget,
            deadline_ms: args.deadline_ms,
            wait: true,
            ..PublishIntent::default()
        };
        let limit = wait_limit(&request);
        self.call(move |client| client.with_timeout(Some(limit)).publish_workflow(&request))
            .await
    }

    /// One trace.
    #[tool(
        description = "Show a trace: its summary (pattern, status, capability) and every signed \
                       object (intent, offers, award, progress, done, receipt, events) in causal \
                       order."
    )]
    async fn show_trace(
        &self,
        Parameters(args): Parameters<TraceId>,
    ) -> Result<Json<TraceView>, String> {
        self.call(move |client| client.trace(&args.id)).await
    }

    /// A trace's analysis.
    #[tool(
        description = "Analyse a trace: which pattern ran and why, who did what, consensus \
                       rounds, the critical path, the bottleneck task and offer latencies."
    )]
    async fn analyze_trace(
        &self,
        Parameters(args): Parameters<TraceId>,
    ) -> Result<Json<TraceAnalysis>, String> {
        self.call(move |client| client.analysis(&args.id)).await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "pvl",
    instructions = "Tools of a pvl node, a peer-to-peer coordination network: list the \
                    capabilities on offer, publish intents and workflows that providers bid on \
                    and run, then read and analyse their signed traces."
)]
impl ServerHandler for PvlMcp {}

/// How long the HTTP call of a waiting request may take: the node's own wait plus a margin.
fn wait_limit(request: &PublishIntent) -> Duration {
    let wait = request
        .wait_timeout_ms
        .or(request.deadline_ms.map(|d| d + 30_000))
        .map_or(DEFAULT_WAIT, Duration::from_millis);
    wait + Duration::from_secs(10)
}

/// `pvl mcp`: serves MCP on stdin/stdout until the client closes the connection.
pub fn serve(dir: PathBuf) -> anyhow::Result<()> {
    // Standard output carries the protocol: the log goes to stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    if Client::open(&dir).is_err() {
        tracing::warn!(
            dir = %dir.display(),
            "no node is running in this directory yet: tools will fail until `pvl run` starts"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let service = PvlMcp::new(dir)
            .serve(rmcp::transport::stdio())
            .await
            .context("the MCP client did not complete the handshake on stdin/stdout")?;
        service.waiting().await.context("the MCP server failed")?;
        Ok(())
    })
}
