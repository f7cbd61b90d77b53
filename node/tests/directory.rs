//! The capability directory between real `pvl` processes: providers gossip signed capability
//! ads, the requester lists them (`pvl capabilities`), a round nobody offers on says what the
//! directory knows, and a provider that goes away drops out when its ad lapses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Running, init, init_at, pvl, pvl_json, wait_until};
use serde_json::Value;

/// Starts a node whose capability ads live `ttl_ms`.
fn start(dir: &std::path::Path, args: &[&str], ttl_ms: u64) -> Running {
    init(dir, args);
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(config.contains("capability_ad_ttl_ms = 600000"), "{config}");
    std::fs::write(
        dir.join("config.toml"),
        config.replace(
            "capability_ad_ttl_ms = 600000",
            &format!("capability_ad_ttl_ms = {ttl_ms}"),
        ),
    )
    .unwrap();
    Running::start(dir)
}

fn listed(dir: &std::path::Path) -> Value {
    pvl_json(dir, &["capabilities"])
}

fn providers_of<'a>(listing: &'a Value, capability: &str) -> Vec<&'a Value> {
    listing
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["capability"] == capability)
        .flat_map(|c| c["providers"].as_array().unwrap())
        .collect()
}

#[test]
fn capability_ads_fill_the_directory_explain_missing_offers_and_lapse() {
    let tmp = tempfile::tempdir().unwrap();
    let requester = tmp.path().join("requester");
    init_at(&requester, "/ip4/127.0.0.1/tcp/0", &[]);
    let _requester = Running::start(&requester);
    let boot = pvl_json(&requester, &["id"])["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let echo = tmp.path().join("echo");
    let _echo = start(
        &echo,
        &["--bootstrap", &boot, "--builtin", "echo:5:50"],
        2_000,
    );
    let sha = tmp.path().join("sha");
    let sha_node = start(
        &sha,
        &["--bootstrap", &boot, "--builtin", "sha256:10:50"],
        2_000,
    );
    let sha_key = pvl_json(&sha, &["id"])["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until("both capabilities in the requester's directory", || {
        let l = listed(&requester);
        !providers_of(&l, "echo").is_empty() && !providers_of(&l, "sha256").is_empty()
    });
    let l = listed(&requester);
    let sha_listed = providers_of(&l, "sha256");
    assert_eq!(sha_listed.len(), 1, "{l}");
    assert_eq!(sha_listed[0]["provider"], sha_key.as_str());
    assert_eq!(sha_listed[0]["price_base"], 10);
    assert_eq!(providers_of(&l, "echo")[0]["price_base"], 5);
    let text = String::from_utf8(pvl(&requester, &["capabilities"]).stdout).unwrap();
    assert!(
        text.contains("sha256") && text.contains(&sha_key[..8]),
        "{text}"
    );

    // Nobody offers under a budget of 3: the outcome says what the directory knows.
    let out = pvl(
        &requester,
        &[
            "intent",
            "publish",
            "--capability",
            "sha256",
            "--input",
            "hi",
            "--budget",
            "3",
            "--window",
            "1s",
            "--wait",
            "--json",
        ],
    );
    let failed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["reason"], "no-offers", "{failed}");
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 provider advertises `sha256`, cheapest 10; the budget is 3"),
        "{detail}"
    );

    // The sha256 provider goes away: its ad lapses and it leaves the directory.
    drop(sha_node);
    wait_until("the lapsed ad to leave the directory", || {
        providers_of(&listed(&requester), "sha256").is_empty()
    });
    assert_eq!(providers_of(&listed(&requester), "echo").len(), 1);
}
