//! Credential floods (issue #17): keys issued before keyed checksums keep working through the
//! legacy set while bogus old-format keys cost no lookup.

use reqwest::Method;
use secrecy::ExposeSecret as _;
use uuid::Uuid;
use wagate::config::Config;
use wagate::crypto::{api_key_display_prefix, random_token, sha256_hex};
use wagate::store::NewApiKey;

use crate::common::TestApp;
use crate::security::unkeyed_checksum_key;

const NUMBERS: &str = "/platform/v1/whatsapp/phone_numbers";
const KEYS: &str = "/platform/v1/api_keys";

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

crate::both_backends!(app:
    legacy_keys_work_until_revoked_and_bogus_ones_cost_no_lookup,
);
crate::both_backends!(app with legacy_keys_refused: legacy_keys_can_be_switched_off);
