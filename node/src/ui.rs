//! The web view: a read-only browser view of this node's traces and network, served on the
//! control API's loopback address under `/ui/`.
//!
//! **Assets** (HTML, CSS, our JavaScript and the vendored dagre layout library with its
//! licence) are embedded in the binary with `include_str!`: nothing to build or install.
//! The pages read the ordinary control API (`/v1/traces`, `/v1/traces/{id}/analysis`,
//! `/v1/events`, `/v1/status`, ...) from the browser.
//!
//! **Sign-in.** The API wants `Authorization: Bearer <token>`, which a browser cannot send on
//! a link or an `EventSource`. So `pvl ui` asks the node (with the token) for a one-time
//! address, `POST /v1/ui/login` → `http://<api>/ui/login?code=<code>`. The code is random
//! (128 bits), single-use and valid for [`CODE_TTL`]; opening the address exchanges it for a
//! session cookie (`HttpOnly`, `SameSite=Strict`, valid for [`SESSION_TTL`]). The cookie
//! authorises **read-only `GET` requests only** ([`cookie_may`]): every `POST` still needs the
//! bearer token, so a page elsewhere cannot make the browser change anything (no CSRF), and
//! the agent long-polls, which hand out work, are not reachable with a cookie either.
//! Outstanding codes and sessions are bounded ([`MAX_CODES`], [`MAX_SESSIONS`]; the oldest
//! session goes first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::daemon::NodeState;

/// How long a one-time sign-in code is valid.
pub const CODE_TTL: Duration = Duration::from_secs(120);

/// Most sign-in codes outstanding at once.
pub const MAX_CODES: usize = 16;

/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most browser sessions at once (the oldest is dropped for a new one).
pub const MAX_SESSIONS: usize = 64;

/// The session cookie's name.
pub const COOKIE: &str = "pvl_session";

/// Too many sign-in codes are outstanding.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// [`MAX_CODES`] unexpired codes exist.
    #[error("{MAX_CODES} sign-in codes are outstanding; use one or wait two minutes")]
    TooManyCodes,
    /// The system's random source failed.
    #[error("no randomness for a sign-in code: {0}")]
    Random(String),
}

/// One-time codes and sessions of the web view.
#[derive(Debug, Default)]
pub struct UiAuth {
    inner: Mutex<Secrets>,
}

#[derive(Debug, Default)]
struct Secrets {
    /// Code -> when it expires.
    codes: HashMap<String, Instant>,
    /// Session -> when it expires.
    sessions: HashMap<String, Instant>,
}

fn random_hex() -> Result<String, LoginError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| LoginError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl UiAuth {
    fn secrets(&self) -> std::sync::MutexGuard<'_, Secrets> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new one-time code, valid for [`CODE_TTL`].
    pub fn new_code(&self) -> Result<String, LoginError> {
        let now = Instant::now();
        let mut secrets = self.secrets();
        secrets.codes.retain(|_, expires| *expires > now);
        if secrets.codes.len() >= MAX_CODES {
            return Err(LoginError::TooManyCodes);
        }
        let code = random_hex()?;
        secrets.codes.insert(code.clone(), now + CODE_TTL);
        Ok(code)
    }

    /// Exchanges a code for a new session; `None` if the code is unknown, used or expired.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let now = Instant::now();
        let mut secrets = self.secrets();
        let expires = secrets.codes.remove(code)?;
        if expires <= now {
            return None;
        }
        let session = random_hex().ok()?;
        secrets.sessions.retain(|_, expires| *expires > now);
        if secrets.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = secrets
                .sessions
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(s, _)| s.clone())
        {
            secrets.sessions.remove(&oldest);
        }
        secrets.sessions.insert(session.clone(), now + SESSION_TTL);
        Some(session)
    }

    /// Whether the request's headers carry a live session cookie.
    pub fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(session) = session_cookie(headers) else {
            return false;
        };
        let now = Instant::now();
        let secrets = self.secrets();
        secrets.sessions.iter().any(|(s, expires)| {
            *expires > now && crate::api::constant_time_eq(s.as_bytes(), session.as_bytes())
        })
    }
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// Whether a session cookie may authorise this request: reads only (`GET`), and not the
/// agent routes (their long polls hand out work).
pub fn cookie_may(method: &Method, path: &str) -> bool {
    method == Method::GET && !path.starts_with("/v1/agents")
}

/// The embedded assets: path under `/ui/`, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui/app.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui/graph.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/ui/style.css"),
    ),
    (
        "vendor/dagre.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/ui/vendor/dagre.min.js"),
    ),
    (
        "vendor/LICENSE-dagre",
        "text/plain; charset=utf-8",
        include_str!("../assets/ui/vendor/LICENSE-dagre"),
    ),
    (
        "vendor/LICENSE-graphlib",
        "text/plain; charset=utf-8",
        include_str!("../assets/ui/vendor/LICENSE-graphlib"),
    ),
];

const INDEX: &str = include_str!("../assets/ui/index.html");

/// Only our own scripts and styles, and requests to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The web view's routes (no token: the page itself holds nothing; its data needs the
/// session cookie).
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route(
            "/ui/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route("/ui/login", get(login))
        .route("/ui/{*asset}", get(asset))
        .with_state(state)
}

async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, body)) => page(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

/// Exchanges a one-time code for the session cookie and sends the browser to the view.
async fn login(State(state): State<Arc<NodeState>>, Query(query): Query<LoginQuery>) -> Response {
    let session = query.code.as_deref().and_then(|code| state.ui.redeem(code));
    match session {
        Some(session) => {
            let cookie = format!(
                "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                SESSION_TTL.as_secs()
            );
            let mut response = Redirect::to("/ui/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This sign-in address is unknown, used or expired. Run `pvl ui` for a new one.\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_signs_in_once_and_the_cookie_reads_only() {
        let auth = UiAuth::default();
        let code = auth.new_code().unwrap();
        let session = auth.redeem(&code).expect("a fresh code signs in");
        assert!(auth.redeem(&code).is_none(), "a code is single-use");
        assert!(auth.redeem("not-a-code").is_none());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={session}")).unwrap(),
        );
        assert!(auth.has_session(&headers));
        headers.insert(header::COOKIE, HeaderValue::from_static("pvl_session=0000"));
        assert!(!auth.has_session(&headers));
        assert!(cookie_may(&Method::GET, "/v1/traces"));
        assert!(!cookie_may(&Method::POST, "/v1/intents"));
        assert!(!cookie_may(&Method::GET, "/v1/agents/work"));
    }

    #[test]
    fn outstanding_codes_are_bounded() {
        let auth = UiAuth::default();
        for _ in 0..MAX_CODES {
            auth.new_code().unwrap();
        }
        assert!(matches!(auth.new_code(), Err(LoginError::TooManyCodes)));
    }
}
