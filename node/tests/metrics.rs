//! Prometheus metrics between real `pvl` processes: a requester and two providers run
//! contract-net rounds and a failing round; the requester's and a provider's `/metrics`
//! parse as Prometheus text, and their counters move with the rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{network, pvl_json};
use pvl_api::Client;

/// Scrapes the node in `dir` and parses the answer with an independent Prometheus text
/// parser: sample name + sorted labels -> value.
fn scrape(dir: &std::path::Path) -> HashMap<String, f64> {
    let text = Client::open(dir).unwrap().metrics().unwrap();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut samples = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or(0.0)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    assert!(!samples.is_empty(), "{text}");
    samples
}

fn get(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_the_rounds() {
    let net = network(&[("sha256:10:100", ""), ("sha256:20:100", "")]);
    let before = scrape(&net.requester);
    assert_eq!(
        get(&before, "pvl_rounds_started_total{pattern=contract-net}"),
        0.0
    );
    assert!(get(&before, "pvl_peers_connected{}") >= 2.0, "{before:?}");
    assert!(
        before.keys().any(|k| k.starts_with("libp2p_")),
        "libp2p's own series are in the same registry: {before:?}"
    );

    for _ in 0..3 {
        let outcome = pvl_json(
            &net.requester,
            &[
                "intent",
                "publish",
                "--capability",
                "sha256",
                "--input",
                "hello",
                "--min-offers",
                "2",
                "--window",
                "5s",
                "--wait",
            ],
        );
        assert_eq!(outcome["status"], "completed", "{outcome}");
    }
    // Nobody serves `nothing`: the round fails with no offers.
    let failed = pvl_json(
        &net.requester,
        &[
            "intent",
            "publish",
            "--capability",
            "nothing",
            "--input",
            "x",
            "--window",
            "300ms",
            "--wait",
        ],
    );
    assert_eq!(failed["status"], "failed", "{failed}");

    let after = scrape(&net.requester);
    assert_eq!(
        get(&after, "pvl_rounds_started_total{pattern=contract-net}"),
        4.0,
        "{after:?}"
    );
    assert_eq!(
        get(&after, "pvl_rounds_completed_total{pattern=contract-net}"),
        3.0
    );
    assert_eq!(
        get(
            &after,
            "pvl_rounds_failed_total{pattern=contract-net,reason=no-offers}"
        ),
        1.0,
        "{after:?}"
    );
    assert_eq!(get(&after, "pvl_offers_received_total{}"), 6.0, "{after:?}");
    // Each round turned the dearer of the two offers down.
    assert_eq!(
        get(&after, "pvl_offers_rejected_total{reason=not-selected}"),
        3.0,
        "{after:?}"
    );
    assert_eq!(
        get(
            &after,
            "pvl_intent_to_award_seconds_count{pattern=contract-net}"
        ),
        3.0
    );
    assert_eq!(
        get(
            &after,
            "pvl_intent_to_receipt_seconds_count{pattern=contract-net}"
        ),
        3.0
    );
    assert!(
        get(&after, "pvl_objects_stored_total{kind=offer}") >= 6.0,
        "{after:?}"
    );
    assert!(
        get(&after, "pvl_objects_stored_total{kind=receipt}") >= 3.0,
        "{after:?}"
    );
    assert!(get(&after, "pvl_store_objects{}") > get(&before, "pvl_store_objects{}"));
    assert!(get(&after, "pvl_store_size_bytes{}") > 0.0);
    assert!(
        after.contains_key("pvl_queue_depth{queue=jobs}"),
        "{after:?}"
    );

    // Every series the Grafana dashboard queries is one the node serves.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana/pvl.json"),
    )
    .unwrap();
    // (Executors run on the providers: the requester's and a provider's series together.)
    let provider = net.requester.parent().unwrap().join("provider-0");
    let text = Client::open(&net.requester).unwrap().metrics().unwrap()
        + &Client::open(&provider).unwrap().metrics().unwrap();
    let mut queried = 0;
    for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        // A labelled family shows only once it has a sample; this run refuses nothing.
        let refusals = word == "pvl_objects_refused_total";
        if (word.starts_with("pvl_") || word.starts_with("libp2p_")) && !refusals {
            queried += 1;
            assert!(
                {
                    // A family is declared (`# TYPE`) even before its first sample.
                    let family = ["_total", "_bucket"]
                        .iter()
                        .find_map(|suffix| word.strip_suffix(suffix))
                        .unwrap_or(word);
                    text.lines()
                        .any(|l| l.starts_with(&format!("# TYPE {family} ")))
                },
                "the dashboard queries `{word}`, which the node does not serve"
            );
        }
    }
    assert!(queried >= 15, "{queried} series queried by the dashboard");

    // The cheaper provider won the three rounds and timed its executor each time.
    let served = scrape(&provider);
    assert_eq!(
        get(
            &served,
            "pvl_executor_duration_seconds_count{capability=sha256,result=ok}"
        ),
        3.0,
        "{served:?}"
    );
}
