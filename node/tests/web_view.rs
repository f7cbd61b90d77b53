//! The web view's sign-in and cookie rules on a real `pvl` process, without a browser (the
//! browser test is `tests/tests/web_view.rs`): `pvl ui` prints a one-time address; the page and
//! its assets are served with a strict content-security policy; the code signs in once, for an
//! `HttpOnly`, `SameSite=Strict` cookie that reads (`GET`) but never writes (`POST`) and never
//! reaches the agent routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Running, init, pvl_json, pvl_ok};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// `GET url` with an optional cookie: status, headers we look at, body.
fn get(url: &str, cookie: Option<&str>) -> (u16, Option<String>, Option<String>, String) {
    let mut request = agent().get(url);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let mut response = request.call().unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (set_cookie, csp) = (header("set-cookie"), header("content-security-policy"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, set_cookie, csp, body)
}

#[test]
fn pvl_ui_signs_a_browser_in_once_for_reading_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    init(&dir, &[]);
    let _node = Running::start(&dir);
    let addr = std::fs::read_to_string(dir.join(pvl_api::ADDR_FILE)).unwrap();
    let base = format!("http://{}", addr.trim());

    // The page and its assets need no token, and allow our own scripts only.
    let (status, _, csp, page) = get(&format!("{base}/ui/"), None);
    assert_eq!(status, 200);
    assert!(page.contains("/ui/app.js") && page.contains("/ui/vendor/dagre.min.js"));
    assert!(csp.unwrap().contains("script-src 'self'"));
    for asset in [
        "app.js",
        "graph.js",
        "style.css",
        "vendor/dagre.min.js",
        "vendor/LICENSE-dagre",
    ] {
        assert_eq!(get(&format!("{base}/ui/{asset}"), None).0, 200, "{asset}");
    }
    assert_eq!(get(&format!("{base}/ui/nothing.js"), None).0, 404);
    // The data does: no cookie, no token, 401.
    assert_eq!(get(&format!("{base}/v1/status"), None).0, 401);

    // `pvl ui` prints the address (no display here: nothing is opened).
    let printed = pvl_ok(&dir, &["ui"]);
    let url = printed.lines().next().unwrap();
    assert!(
        url.starts_with(&format!("{base}/ui/login?code=")),
        "{printed}"
    );
    let (status, set_cookie, _, _) = get(url, None);
    assert_eq!(status, 303, "the sign-in sends the browser to the view");
    let set_cookie = set_cookie.expect("a session cookie");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert_eq!(get(url, None).0, 401, "a code signs in once");
    assert_eq!(get(&format!("{base}/ui/login?code=0123"), None).0, 401);

    // The cookie reads...
    let (status, _, _, body) = get(&format!("{base}/v1/status"), Some(&cookie));
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&format!("{base}/v1/traces"), Some(&cookie)).0, 200);
    assert_eq!(get(&format!("{base}/metrics"), Some(&cookie)).0, 200);
    // ...but does not reach the agent routes (their long polls hand out work)...
    let work = format!("{base}/v1/agents/work?capability=echo&timeout_ms=1");
    assert_eq!(get(&work, Some(&cookie)).0, 401);
    // ...and never writes.
    let mut response = agent()
        .post(&format!("{base}/v1/intents"))
        .header("Cookie", &cookie)
        .header("Content-Type", "application/json")
        .send(r#"{"capability":"echo","input":"x"}"#)
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body = response.body_mut().read_to_string().unwrap();
    assert!(body.contains("unauthorized"), "{body}");
    // A made-up session is nobody's.
    assert_eq!(
        get(&format!("{base}/v1/status"), Some("pvl_session=00")).0,
        401
    );

    // The typed answer.
    let login = pvl_json(&dir, &["ui"]);
    assert!(login["url"].as_str().unwrap().contains("/ui/login?code="));
    assert_eq!(login["expires_in_ms"], 120_000);
}
