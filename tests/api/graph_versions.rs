//! The Graph version guard (#21 item 6): a version near or past its end of life gets
//! `X-Wagate-Graph-Version-Expires` and counts in a metric; `graph.version_policy` forwards an
//! expired or unreleased version as asked, upgrades it to `graph.minimum_version`, or refuses it
//! in Graph's envelope without calling Meta. The table is set relative to today, so the test does
//! not age.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;
use wagate::config::{Backend, Config, VersionPolicy};

use crate::common::TestApp;

/// v30 expires in 10 days, v31 expired 10 days ago, v32 lives on; v33 is unreleased.
fn table(config: &mut Config, policy: VersionPolicy) {
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();
    config.graph.version_expiry = BTreeMap::from([
        ("v30.0".to_owned(), day(10)),
        ("v31.0".to_owned(), day(-10)),
        ("v32.0".to_owned(), day(400)),
    ]);
    config.graph.version_policy = policy;
    config.graph.minimum_version = "v32.0".into();
}

async fn profile(app: &TestApp, version: &str) -> (u16, Option<String>, Value) {
    let response = app
        .request(
            Method::GET,
            &format!("/meta/whatsapp/{version}/7001/whatsapp_business_profile"),
        )
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let expires = response
        .headers()
        .get("x-wagate-graph-version-expires")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        expires,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn upstream_version(app: &TestApp) -> String {
    app.graph
        .last()
        .path_and_query
        .split('/')
        .nth(1)
        .unwrap()
        .to_owned()
}

async fn versions_are_guarded(backend: Backend) {
    let today = chrono::Utc::now().date_naive();
    let day = |offset: i64| (today + chrono::Duration::days(offset)).to_string();

    let app = TestApp::spawn_with(backend, |c| table(c, VersionPolicy::Forward)).await;
    app.connect_number(&app.api_key, "7001", "7101", "versions-token")
        .await;
    let (status, expires, _) = profile(&app, "v30.0").await;
    assert_eq!((status, expires), (200, Some(day(10))));
    assert_eq!(upstream_version(&app), "v30.0");
    let (_, expires, _) = profile(&app, "v32.0").await;
    assert_eq!(expires, None, "far from its end of life");
    let (status, expires, _) = profile(&app, "v31.0").await;
    assert_eq!(
        (status, expires),
        (200, Some(day(-10))),
        "forwarded as asked, dated"
    );
    assert_eq!(upstream_version(&app), "v31.0");
    let (status, _, _) = profile(&app, "v33.0").await;
    assert_eq!(status, 200);
    assert_eq!(upstream_version(&app), "v33.0");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("wagate_graph_version_expiring_requests_total{version=\"v30.0\"}"),
        "{metrics}"
    );

    let app = TestApp::spawn_with(backend, |c| table(c, VersionPolicy::Upgrade)).await;
    app.connect_number(&app.api_key, "7001", "7101", "versions-token")
        .await;
    for asked in ["v31.0", "v33.0", "v10.0"] {
        let (status, _, body) = profile(&app, asked).await;
        assert_eq!(status, 200, "{asked}: {body}");
        assert_eq!(upstream_version(&app), "v32.0", "{asked} is upgraded");
    }
    profile(&app, "v30.0").await;
    assert_eq!(
        upstream_version(&app),
        "v30.0",
        "a current version is left alone"
    );

    let app = TestApp::spawn_with(backend, |c| table(c, VersionPolicy::Refuse)).await;
    app.connect_number(&app.api_key, "7001", "7101", "versions-token")
        .await;
    let before = app.graph.recorded().len();
    for (asked, words) in [
        ("v31.0", "expired on"),
        ("v33.0", "not a version Meta has released"),
    ] {
        let (status, _, body) = profile(&app, asked).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], 100, "{body}");
        let details = body["error"]["error_data"]["details"].as_str().unwrap();
        assert!(details.contains(words), "{body}");
    }
    assert_eq!(app.graph.recorded().len(), before, "Meta never called");
}

crate::both_backends!(backend: versions_are_guarded);
