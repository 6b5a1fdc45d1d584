//! Links wagate hands out (setup-link URLs, paging links) never point where a caller's `Host`
//! header says: `Host: evil.example` must not turn a setup link into a page on evil.example.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;

async fn setup_link_url(app: &TestApp, host: &str) -> String {
    let customer: Value = app
        .request(Method::POST, "/platform/v1/customers")
        .header("host", host)
        .json(&json!({"customer": {"name": "links"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customer = customer["data"]["id"].as_str().unwrap();
    let link: Value = app
        .request(
            Method::POST,
            &format!("/platform/v1/customers/{customer}/setup_links"),
        )
        .header("host", host)
        .header("x-forwarded-proto", "https")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    link["data"]["url"].as_str().unwrap().to_owned()
}

async fn a_foreign_host_never_names_links(app: TestApp) {
    let url = setup_link_url(&app, "evil.example").await;
    assert!(
        url.starts_with(&format!("{}/setup/", app.base)),
        "setup link built from the caller's Host: {url}"
    );
    let pnid = "106540352242922";
    app.connect_number(&app.api_key, pnid, "102290129340398", "links-token")
        .await;
    let page: Value = app
        .request(
            Method::GET,
            &format!("/meta/whatsapp/v24.0/{pnid}/messages?limit=1"),
        )
        .header("host", "evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = page.to_string();
    assert!(!text.contains("evil.example"), "{text}");
}

fn allow_the_balancer(config: &mut wagate::config::Config) {
    config.server.allowed_hosts = vec!["wa.example.com".into()];
}

async fn an_allowed_host_names_links(app: TestApp) {
    let url = setup_link_url(&app, "wa.example.com").await;
    assert!(url.starts_with("https://wa.example.com/setup/"), "{url}");
    let other = setup_link_url(&app, "evil.example").await;
    assert!(
        other.starts_with(&format!("{}/setup/", app.base)),
        "{other}"
    );
}

crate::both_backends!(app: a_foreign_host_never_names_links);
crate::both_backends!(app with allow_the_balancer: an_allowed_host_names_links);
