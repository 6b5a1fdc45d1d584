//! `/platform/v1/api_keys`: a project issues, lists and revokes its own keys, and a revoked key
//! fails on the very next request (its cache entry was warm), never only after `cache.ttl`.

use reqwest::Method;
use serde_json::Value;

use crate::common::TestApp;

const KEYS: &str = "/platform/v1/api_keys";
const NUMBERS: &str = "/platform/v1/whatsapp/phone_numbers";

async fn keys_are_issued_listed_and_revoked_at_once(app: TestApp) {
    let (status, issued) = app.call(Method::POST, KEYS, None).await;
    assert_eq!(status, 201, "{issued}");
    let new_key = issued["data"]["key"].as_str().unwrap().to_owned();
    let new_id = issued["data"]["id"].as_str().unwrap().to_owned();
    assert!(new_key.starts_with(issued["data"]["display_prefix"].as_str().unwrap()));

    // The new key works, and now sits in the API-key cache.
    let (status, _) = app
        .call_with_key(&new_key, Method::GET, NUMBERS, None)
        .await;
    assert_eq!(status, 200);

    let (status, listed) = app.call(Method::GET, KEYS, None).await;
    assert_eq!(status, 200);
    let listed = listed["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "the first key and the new one: {listed:?}");
    assert!(
        listed.iter().all(|k| k.get("key").is_none()),
        "a listing never shows a key: {listed:?}"
    );
    assert!(!Value::Array(listed).to_string().contains(&new_key));

    let (status, revoked) = app
        .call(Method::DELETE, &format!("{KEYS}/{new_id}"), None)
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["data"]["revoked_at"].is_string());
    // At once: no waiting for the cache to expire.
    let (status, body) = app
        .call_with_key(&new_key, Method::GET, NUMBERS, None)
        .await;
    assert_eq!(status, 401, "a revoked key still worked: {body}");
    // The key that revoked it still works.
    let (status, _) = app.call(Method::GET, NUMBERS, None).await;
    assert_eq!(status, 200);
}

async fn another_projects_keys_look_like_unknown_ones(app: TestApp) {
    let (_, other_key) = app.other_project().await;
    let (_, issued) = app
        .call_with_key(&other_key, Method::POST, KEYS, None)
        .await;
    let other_id = issued["data"]["id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();
    let (foreign_status, foreign) = app
        .call(Method::DELETE, &format!("{KEYS}/{other_id}"), None)
        .await;
    let (unknown_status, unknown_body) = app
        .call(Method::DELETE, &format!("{KEYS}/{unknown}"), None)
        .await;
    assert_eq!((foreign_status, unknown_status), (404, 404));
    assert_eq!(foreign, unknown_body);
    let (malformed, _) = app
        .call(Method::DELETE, &format!("{KEYS}/not-a-uuid"), None)
        .await;
    assert_eq!(malformed, 404);
    // The other project's key was not touched.
    let (status, _) = app
        .call_with_key(&other_key, Method::GET, NUMBERS, None)
        .await;
    assert_eq!(status, 200);
    let (_, listed) = app.call(Method::GET, KEYS, None).await;
    assert!(!listed.to_string().contains(&other_id));
}

crate::both_backends!(app:
    keys_are_issued_listed_and_revoked_at_once,
    another_projects_keys_look_like_unknown_ones
);
