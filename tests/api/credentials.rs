//! Credential floods (issue #17): keys issued before keyed checksums keep working through the
//! legacy set while bogus old-format keys cost no lookup, and failed authentications are limited
//! per client address (the peer, or `X-Forwarded-For` from a trusted proxy only) with a 429 in
//! each API's own error envelope.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Client, Method, Response};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use uuid::Uuid;
use wagate::config::Config;
use wagate::crypto::{api_key_display_prefix, random_token, sha256_hex};
use wagate::store::NewApiKey;

use crate::common::{eventually, TestApp};
use crate::security::unkeyed_checksum_key;

const NUMBERS: &str = "/platform/v1/whatsapp/phone_numbers";
const KEYS: &str = "/platform/v1/api_keys";
/// A Graph route: the credentials are checked before anything else happens.
const GRAPH: &str = "/meta/whatsapp/v23.0/100000000000001/whatsapp_business_profile";

/// Stores `key` as a key issued before migration 0011 (marked legacy, as the migration marks
/// every key that exists when it runs); returns its id.
async fn store_legacy_key(app: &TestApp, key: &str) -> Uuid {
    let record = app
        .store
        .create_api_key(NewApiKey {
            project_id: app.project_id,
            key_sha256: sha256_hex(key.as_bytes()),
            display_prefix: api_key_display_prefix(key),
        })
        .await
        .unwrap();
    let url = app.config.database.url.expose_secret().to_owned();
    if url.starts_with("sqlite") {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("update api_keys set key_format = 'legacy' where id = ?")
            .bind(record.id)
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("update api_keys set key_format = 'legacy' where id = $1")
            .bind(record.id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    record.id
}

async fn status_with_key(app: &TestApp, key: &str) -> u16 {
    app.request_with_key(Method::GET, NUMBERS, key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn legacy_keys_work_until_revoked_and_bogus_ones_cost_no_lookup(app: TestApp) {
    let plain = format!("wag_{}", random_token(32));
    let checked = unkeyed_checksum_key();
    let plain_id = store_legacy_key(&app, &plain).await;
    store_legacy_key(&app, &checked).await;
    // What every start does: read which legacy keys are live.
    let live = app.state.auth.load_legacy_keys().await.unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    for key in [&plain, &checked] {
        assert_eq!(status_with_key(&app, key).await, 200, "legacy key {key}");
    }

    // Revoking one drops it at once, and from the set.
    let (status, body) = app
        .call(Method::DELETE, &format!("{KEYS}/{plain_id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_with_key(&app, &plain).await, 401);
    assert_eq!(
        app.store.live_legacy_api_key_prefixes().await.unwrap(),
        vec![api_key_display_prefix(&checked)]
    );

    // With the database gone, a lookup would answer 503: bogus old-format keys get 401, so they
    // were refused from memory...
    app.store.close().await;
    for _ in 0..8 {
        for key in [format!("wag_{}", random_token(32)), unkeyed_checksum_key()] {
            assert_eq!(status_with_key(&app, &key).await, 401, "{key}");
        }
    }
    // ...while one with a live legacy key's display prefix is the one kind still looked up.
    let twin = format!("{}{}", api_key_display_prefix(&checked), "A".repeat(35));
    assert_eq!(twin.len(), 47);
    assert_eq!(status_with_key(&app, &twin).await, 503);
}

fn legacy_keys_refused(config: &mut Config) {
    config.security.accept_legacy_api_keys = false;
}

async fn legacy_keys_can_be_switched_off(app: TestApp) {
    let legacy = unkeyed_checksum_key();
    store_legacy_key(&app, &legacy).await;
    assert_eq!(app.state.auth.load_legacy_keys().await.unwrap().len(), 1);
    assert_eq!(status_with_key(&app, &legacy).await, 401);
    assert_eq!(status_with_key(&app, &app.api_key).await, 200);
}

/// One failure a second, three at once: small enough to see both the limit and the recovery.
fn tiny_failure_limit(config: &mut Config) {
    config.security.failed_auth_per_minute = 60;
    config.security.failed_auth_burst = 3;
}

fn retry_after(response: &Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A client whose requests come from 127.0.0.2 (loopback answers the whole 127/8), another
/// address than the test kit's.
fn second_address() -> Client {
    Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn platform_status(client: &Client, app: &TestApp, key: &str) -> u16 {
    let request = client.get(app.url(NUMBERS)).header("x-api-key", key);
    request.send().await.unwrap().status().as_u16()
}

async fn graph_get(client: &Client, app: &TestApp, key: &str) -> Response {
    client
        .get(app.url(GRAPH))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

async fn failed_authentications_are_limited_per_client(app: TestApp) {
    // Distinct keys, so only the client's limit applies (each prefix fails once).
    for _ in 0..3 {
        let response = graph_get(&app.client, &app, &unkeyed_checksum_key()).await;
        assert_eq!(response.status(), 401);
    }
    let response = graph_get(&app.client, &app, &unkeyed_checksum_key()).await;
    assert_eq!(response.status(), 429);
    assert!((1..=60).contains(&retry_after(&response)));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 4, "{body}");
    assert_eq!(body["error"]["type"], "OAuthException", "{body}");
    assert!(body["error"]["fbtrace_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    // Blocked means blocked: this address's good key is refused before it is checked, on the
    // Platform API in its own envelope.
    assert_eq!(
        graph_get(&app.client, &app, &app.api_key).await.status(),
        429
    );
    let response = app.request(Method::GET, NUMBERS).send().await.unwrap();
    assert_eq!(response.status(), 429);
    retry_after(&response);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // Another address is untouched: its good key works, its bad keys get their own quota.
    let other = second_address();
    assert_eq!(platform_status(&other, &app, &app.api_key).await, 200);
    let response = graph_get(&other, &app, &unkeyed_checksum_key()).await;
    assert_eq!(response.status(), 401);

    // The quota refills: the first address gets through again.
    eventually(
        Duration::from_secs(15),
        "the limited client to recover",
        || async {
            let status = graph_get(&app.client, &app, &app.api_key).await.status();
            (status != 429).then_some(())
        },
    )
    .await;
    assert_eq!(status_with_key(&app, &app.api_key).await, 200);
    assert!(app
        .metrics()
        .await
        .contains("wagate_auth_rate_limited_total"));
}

/// Guesses at one key prefix are limited from any address; the real key with that prefix is not.
async fn guesses_at_a_prefix_are_limited_but_never_lock_out_the_key(app: TestApp) {
    let prefix = api_key_display_prefix(&app.api_key);
    let guess = || format!("{prefix}{}", &random_token(32)[..35]);
    let other = second_address();
    for _ in 0..3 {
        assert_eq!(graph_get(&app.client, &app, &guess()).await.status(), 401);
    }
    // The prefix is spent: another address guessing at it is refused too...
    assert_eq!(graph_get(&other, &app, &guess()).await.status(), 429);
    // ...but the key itself carries the server's checksum: it is not a guess.
    assert_eq!(platform_status(&other, &app, &app.api_key).await, 200);
}

/// Two failures, then a minute's wait: nothing recovers during the test.
fn two_failures(config: &mut Config) {
    config.security.failed_auth_per_minute = 1;
    config.security.failed_auth_burst = 2;
}

fn two_failures_behind_a_proxy(config: &mut Config) {
    two_failures(config);
    config.server.trusted_proxies = vec!["127.0.0.0/8".into()];
}

async fn with_forwarded(app: &TestApp, key: &str, forwarded: Option<&str>) -> u16 {
    let mut request = app.client.get(app.url(NUMBERS)).header("x-api-key", key);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn forwarded_for_is_ignored_from_untrusted_peers(app: TestApp) {
    for i in 0..2 {
        let forged = format!("198.51.100.{i}");
        let status = with_forwarded(&app, &unkeyed_checksum_key(), Some(&forged)).await;
        assert_eq!(status, 401);
    }
    // A new X-Forwarded-For each time does not make a new client.
    let status = with_forwarded(&app, &unkeyed_checksum_key(), Some("198.51.100.99")).await;
    assert_eq!(status, 429);
}

async fn forwarded_for_names_the_client_behind_a_trusted_proxy(app: TestApp) {
    let client = Some("198.51.100.1");
    for _ in 0..2 {
        assert_eq!(
            with_forwarded(&app, &unkeyed_checksum_key(), client).await,
            401
        );
    }
    assert_eq!(
        with_forwarded(&app, &unkeyed_checksum_key(), client).await,
        429
    );
    // The part left of the proxy's entry is the client's own word: a forged one changes nothing.
    let spoofed = Some("203.0.113.5, 198.51.100.1");
    assert_eq!(with_forwarded(&app, &app.api_key, spoofed).await, 429);
    // Another client behind the same proxy, and the proxy itself, are not limited.
    let neighbour = Some("198.51.100.2");
    assert_eq!(with_forwarded(&app, &app.api_key, neighbour).await, 200);
    assert_eq!(
        with_forwarded(&app, &unkeyed_checksum_key(), neighbour).await,
        401
    );
    assert_eq!(with_forwarded(&app, &app.api_key, None).await, 200);
}

crate::both_backends!(app:
    legacy_keys_work_until_revoked_and_bogus_ones_cost_no_lookup,
);
crate::both_backends!(app with legacy_keys_refused: legacy_keys_can_be_switched_off);
crate::both_backends!(app with tiny_failure_limit:
    failed_authentications_are_limited_per_client,
    guesses_at_a_prefix_are_limited_but_never_lock_out_the_key
);
crate::both_backends!(app with two_failures: forwarded_for_is_ignored_from_untrusted_peers);
crate::both_backends!(app with two_failures_behind_a_proxy:
    forwarded_for_names_the_client_behind_a_trusted_proxy
);
