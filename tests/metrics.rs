//! `/metrics` after traffic that produces each family. In a binary of its own, with one test: the
//! recorder is process-wide, so in a shared test binary other tests' traffic could produce the
//! series this test looks for. Here every increase between two scrapes is this test's own; each
//! backend's run is checked by what it added.

mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wagate::config::Backend;

use common::graph::Canned;
use common::TestApp;

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The series each path must move, as (metric, labels).
const SERIES: &[(&str, &[(&str, &str)])] = &[
    (
        "wagate_http_requests_total",
        &[
            ("route", "/meta/whatsapp/{version}/{*rest}"),
            ("status", "200"),
        ],
    ),
    (
        "wagate_http_requests_total",
        &[("route", "/webhooks/whatsapp"), ("status", "200")],
    ),
    ("wagate_http_request_duration_seconds_count", &[]),
    // Histograms with buckets (summaries cannot be combined across instances).
    (
        "wagate_http_request_duration_seconds_bucket",
        &[("le", "+Inf")],
    ),
    ("wagate_upstream_duration_seconds_bucket", &[("le", "0.25")]),
    ("wagate_upstream_duration_seconds_count", &[]),
    ("wagate_upstream_responses_total", &[("status", "400")]),
    ("wagate_meta_errors_total", &[("code", "131047")]),
    ("wagate_webhook_changes_total", &[("field", "messages")]),
    ("wagate_webhook_events_total", &[("state", "processed")]),
    ("wagate_cache_lookups_total", &[("cache", "api_keys")]),
    ("wagate_cache_misses_total", &[("cache", "numbers")]),
];

/// A proxied read, a send Meta refuses with 131047, a signed webhook: each series above moves.
async fn every_path_moves_its_series(app: &TestApp) {
    app.connect_number(&app.api_key, "7001", "7101", "metrics-token")
        .await;
    let before = app.metrics().await;

    let profile = app
        .request(
            Method::GET,
            "/meta/whatsapp/v24.0/7001/whatsapp_business_profile",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);
    app.graph.respond(Canned {
        status: 400,
        content_type: "application/json",
        body: br#"{"error":{"message":"Re-engagement message","type":"OAuthException","code":131047,"fbtrace_id":"x"}}"#.to_vec(),
        delay: Duration::ZERO,
    });
    let send = app
        .request(Method::POST, "/meta/whatsapp/v24.0/7001/messages")
        .json(&json!({"messaging_product": "whatsapp", "to": "15550001111", "type": "text", "text": {"body": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 400);
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "7101", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "1", "phone_number_id": "7001"},
        "statuses": [{"id": "wamid.metrics", "status": "sent", "timestamp": "1750000000", "recipient_id": "15550001111"}]}}]}]}).to_string();
    app.post_webhook_ok(body.as_bytes()).await;

    // The webhook's request metric is recorded as its response goes out: poll a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = |after: &str| {
        SERIES
            .iter()
            .all(|(name, labels)| sample(after, name, labels) > sample(&before, name, labels))
    };
    let after = loop {
        let after = app.metrics().await;
        if moved(&after) || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (name, labels) in SERIES {
        assert!(
            sample(&after, name, labels) > sample(&before, name, labels),
            "{name}{labels:?} did not move:\n{after}"
        );
    }
}

/// The only test in this binary: both backends, one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_each_path() {
    every_path_moves_its_series(&TestApp::spawn(Backend::Sqlite).await).await;
    if common::postgres::available().await {
        every_path_moves_its_series(&TestApp::spawn(Backend::Postgres).await).await;
    }
}

#[test]
fn sample_reads_prometheus_text() {
    let text = "# TYPE a counter\na{x=\"1\",y=\"2\"} 3\na{x=\"1\"} 4\nb 5\n";
    assert_eq!(sample(text, "a", &[("x", "1")]), 7.0);
    assert_eq!(sample(text, "a", &[("y", "2")]), 3.0);
    assert_eq!(sample(text, "b", &[]), 5.0);
    assert_eq!(sample(text, "a", &[("x", "2")]), 0.0);
}
