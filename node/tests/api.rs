//! The control API in process, the way mini-redis tests its server: `daemon::run` on a tokio
//! runtime of the test's own (a real node: store, swarm, engine, axum on port 0), driven by
//! `pvl_api::Client` and, for the malformed requests a typed client cannot send, raw HTTP.
//! Every answer must be what the contract in `pvl-api` says, errors included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{init, wait_until};
use pvl_api::{Client, ErrorBody, ErrorCode, PublishIntent};

/// A node running inside this test process; stopped (gracefully) on drop.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl InProcess {
    fn start(dir: &Path) -> InProcess {
        let _ = std::fs::remove_file(dir.join(pvl_api::ADDR_FILE));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run_dir = dir.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let shutdown = async {
                let _ = stopped.await;
            };
            runtime
                .block_on(pvl_node::daemon::run(run_dir, shutdown))
                .unwrap();
        });
        wait_until("the API address file", || {
            dir.join(pvl_api::ADDR_FILE).exists()
        });
        InProcess {
            stop: Some(stop),
            thread: Some(thread),
            dir: dir.to_owned(),
        }
    }

    fn client(&self) -> Client {
        Client::open(&self.dir).unwrap()
    }

    /// `GET path` (no `body`), or `POST path` with `body` as `content_type`: the status and
    /// the answer's text.
    fn http(&self, path: &str, post: Option<(&str, &str)>) -> (u16, String) {
        let addr = std::fs::read_to_string(self.dir.join(pvl_api::ADDR_FILE)).unwrap();
        let token = std::fs::read_to_string(self.dir.join(pvl_api::TOKEN_FILE)).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let url = format!("http://{}{path}", addr.trim());
        let auth = format!("Bearer {}", token.trim());
        let mut response = match post {
            None => agent.get(&url).header("Authorization", &auth).call(),
            Some((content_type, body)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", content_type)
                .send(body),
        }
        .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// `GET path` or `POST path` (with an empty JSON object): the status and the body text.
    fn call(&self, method: &str, path: &str) -> (u16, String) {
        match method {
            "get" => self.http(path, None),
            _ => self.http(path, Some(("application/json", "{}"))),
        }
    }

    /// `POST path` with a raw body and content type: (status, error body if any).
    fn raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Option<ErrorBody>) {
        let (status, text) = self.http(path, Some((content_type, body)));
        (status, serde_json::from_str(&text).ok())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn code(result: Result<impl std::fmt::Debug, pvl_api::ClientError>) -> ErrorCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("not an API error: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn the_control_api_answers_as_its_contract_says() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir, &["--builtin", "echo:5:10"]);
    let node = InProcess::start(&dir);
    let api = node.client();

    // Typed answers.
    let id = api.id().unwrap();
    let status = api.status().unwrap();
    assert_eq!(status.peer_id, id.peer_id);
    assert_eq!(status.engine.runs_started, 0);
    assert!(api.peers().unwrap().is_empty());
    let generated: serde_json::Value =
        serde_json::from_str(&pvl_api::openapi::document_json()).unwrap();
    assert!(
        api.openapi().unwrap() == generated,
        "the node serves the document generated from the contract"
    );

    // Every route of the OpenAPI document is served (none falls through to "no such
    // endpoint"), and whatever it answers to a minimal request is the contract's: JSON, and an
    // ErrorBody with a code when it is an error. (The event stream, which never ends, is
    // checked below.)
    let doc = api.openapi().unwrap();
    let mut routes = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            if path == "/v1/events" {
                continue;
            }
            let concrete = path.replace("{id}", "12345678");
            let (status, text) = node.call(method, &concrete);
            routes += 1;
            assert!(
                !text.contains("no such endpoint"),
                "{method} {path}: not served"
            );
            if status >= 400 {
                let body: ErrorBody = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: {status} `{text}`: {e}"));
                assert_eq!(body.code.status(), status, "{method} {path}");
            } else if status != 204 && path != "/v1/traces/{id}/export" && path != "/metrics" {
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: {status} `{text}`: {e}"));
            }
        }
    }
    assert!(routes >= 18, "{routes} routes");

    // The wrong token.
    let addr = std::fs::read_to_string(dir.join(pvl_api::ADDR_FILE)).unwrap();
    let stranger = Client::new(&addr, "not-the-token");
    assert_eq!(code(stranger.status()), ErrorCode::Unauthorized);

    // An intent on a node with no peer is signed and recorded, but cannot go out: 503, with
    // its trace named in the error.
    let request = PublishIntent {
        capability: "echo".into(),
        input: Some("hello".into()),
        expires_in_ms: Some(2_000),
        ..PublishIntent::default()
    };
    let failed = api.publish(&request).unwrap_err();
    assert_eq!(failed.code(), Some(ErrorCode::Unavailable), "{failed}");
    let pvl_api::ClientError::Api { body, status } = failed else {
        unreachable!()
    };
    assert_eq!(status, 503);
    let trace = body
        .trace_id
        .expect("the unpublished intent's trace")
        .to_string();

    // The trace by its full id and by an 8-digit prefix; a short, a bad and an unknown one.
    wait_until("the intent in the store", || api.trace(&trace).is_ok());
    let shown = api.trace(&trace[..8]).unwrap();
    assert_eq!(shown.summary.trace_id.to_string(), trace);
    assert_eq!(shown.objects[0].kind, pvl_protocol::Kind::Intent);
    assert_eq!(code(api.trace(&trace[..7])), ErrorCode::BadRequest);
    assert_eq!(code(api.trace("not-hex-at-all")), ErrorCode::BadRequest);
    let unknown = if trace.starts_with("00000000") {
        "ffffffff"
    } else {
        "00000000"
    };
    assert_eq!(code(api.trace(unknown)), ErrorCode::NotFound);
    assert_eq!(code(api.analysis(unknown)), ErrorCode::NotFound);
    let analysis = api.analysis(&trace[..10]).unwrap();
    assert_eq!(analysis.trace.to_string(), trace);
    assert_eq!(analysis.status, pvl_api::TraceStatus::Failed);
    let listed = api.traces(10).unwrap();
    assert!(listed.iter().any(|t| t.trace_id.to_string() == trace));
    let bundle = api
        .export(&trace[..8], pvl_api::ExportFormat::Bundle)
        .unwrap();
    assert!(!bundle.is_empty());

    // The event stream, filtered to one trace: a prefix resolves, a bad one is refused.
    assert!(api.events(Some(&trace[..8])).is_ok());
    assert_eq!(code(api.events(Some("xyz"))), ErrorCode::BadRequest);

    // Bodies the typed client cannot send: every refusal is an ErrorBody with its code.
    let (status, body) = node.raw("/v1/intents", "text/plain", "capability=echo");
    assert_eq!(status, 415);
    assert_eq!(body.unwrap().code, ErrorCode::UnsupportedMediaType);
    let (status, body) = node.raw("/v1/intents", "application/json", "{not json");
    assert_eq!(status, 400);
    assert_eq!(body.unwrap().code, ErrorCode::BadRequest);
    let (status, body) = node.raw(
        "/v1/intents",
        "application/json",
        r#"{"capability": "echo", "colour": "blue"}"#,
    );
    assert_eq!(status, 422);
    let body = body.unwrap();
    assert_eq!(body.code, ErrorCode::InvalidRequest);
    assert!(body.error.contains("colour"), "{}", body.error);
    let (status, body) = node.raw(
        "/v1/intents",
        "application/json",
        r#"{"capability": "echo", "input": "a", "input_hex": "62"}"#,
    );
    assert_eq!(status, 422);
    assert!(body.unwrap().error.contains("not both"));
    // Each kind of run has its route: its own field required, the others refused.
    let (status, body) = node.raw("/v1/workflows", "application/json", r#"{"input": "a"}"#);
    assert_eq!(status, 422);
    assert!(body.unwrap().error.contains("needs `workflow`"));
    let (status, body) = node.raw(
        "/v1/parallel",
        "application/json",
        r#"{"capability": "echo", "parallel": 2, "committee": []}"#,
    );
    assert_eq!(status, 422);
    assert!(body.unwrap().error.contains("`committee` does not belong"));
    let (status, body) = node.raw(
        "/v1/workflows",
        "application/json",
        r#"{"capability": "echo", "workflow": "[[stage]]"}"#,
    );
    assert_eq!(status, 422);
    assert!(body.unwrap().error.contains("no `capability`"));

    // Too large: the body over the API's limit, or an input over the protocol's.
    let huge = format!(
        r#"{{"capability": "echo", "input": "{}"}}"#,
        "x".repeat(pvl_api::MAX_BODY_BYTES)
    );
    let (status, body) = node.raw("/v1/intents", "application/json", &huge);
    assert_eq!(status, 413);
    let body = body.unwrap();
    assert_eq!(body.code, ErrorCode::PayloadTooLarge);
    assert!(body.error.contains("2097152"), "{}", body.error);
    let big = format!(
        r#"{{"capability": "echo", "input": "{}"}}"#,
        "x".repeat(pvl_protocol::MAX_INLINE_PAYLOAD + 1)
    );
    let (status, body) = node.raw("/v1/intents", "application/json", &big);
    let body = body.unwrap();
    assert_eq!(
        (status, body.code),
        (422, ErrorCode::InvalidRequest),
        "{}",
        body.error
    );
    assert!(body.error.contains("786432"), "{}", body.error);
    let (status, body) = node.raw("/v1/no-such-thing", "application/json", "{}");
    assert_eq!(status, 404);
    assert_eq!(body.unwrap().code, ErrorCode::NotFound);
}
