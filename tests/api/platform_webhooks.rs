//! Webhook resources (`/platform/v1/whatsapp/…/webhooks`): both scopes, every field rule, the
//! secret shown once, the `meta` kind kept in step with `webhook_destination_url`, isolation, the
//! signed test delivery, pausing and resuming.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::receiver::Hook;
use crate::common::TestApp;

const NUMBERS: &str = "/platform/v1/whatsapp/phone_numbers";
const HOOKS: &str = "/platform/v1/whatsapp/webhooks";
const PNID: &str = "4440001";

fn number_hooks(pnid: &str) -> String {
    format!("{NUMBERS}/{pnid}/webhooks")
}

fn fields(body: &Value) -> Vec<String> {
    let mut fields: Vec<String> = body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    fields.dedup();
    fields
}

fn message_of(body: &Value, field: &str) -> String {
    body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["field"] == field)
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn create(app: &TestApp, path: &str, webhook: Value) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            path,
            Some(json!({ "whatsapp_webhook": webhook })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"].clone()
}

async fn patch(app: &TestApp, path: &str, webhook: Value) -> (u16, Value) {
    app.call(
        Method::PATCH,
        path,
        Some(json!({ "whatsapp_webhook": webhook })),
    )
    .await
}

fn id_of(data: &Value) -> String {
    data["id"].as_str().unwrap().to_owned()
}

async fn number_webhooks_crud(app: TestApp) {
    app.connect_number(&app.api_key, PNID, "5550001", "tok")
        .await;
    let path = number_hooks(PNID);
    let created = create(
        &app,
        &path,
        json!({
            "url": "https://hooks.example.com/kapso",
            "events": ["whatsapp.message.received", "whatsapp.message.sent", "whatsapp.message.received"],
            "headers": {"X-Webhook-Source": "kapso"},
        }),
    )
    .await;
    let secret = created["secret_key"].as_str().unwrap();
    let random = secret.strip_prefix("wh_sec_").expect("wh_sec_ prefix");
    assert_eq!(random.len(), 32, "{secret}");
    assert!(
        random.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{secret}"
    );
    assert_eq!(created["kind"], "kapso");
    assert_eq!(created["active"], true);
    assert_eq!(created["payload_version"], "v2");
    assert_eq!(created["inactivity_minutes"], 60);
    assert_eq!(created["buffer_enabled"], false);
    assert_eq!(created["buffer_window_seconds"], Value::Null);
    assert_eq!(created["max_buffer_size"], Value::Null);
    assert_eq!(created["buffer_events"], json!([]));
    assert_eq!(
        created["events"],
        json!(["whatsapp.message.received", "whatsapp.message.sent"]),
        "duplicates go"
    );
    assert_eq!(created["headers"], json!({"X-Webhook-Source": "kapso"}));
    assert_eq!(created["phone_number_id"], PNID);
    assert_eq!(created["project_id"], app.project_id.to_string());
    assert_eq!(created["paused_reason"], Value::Null);
    assert_eq!(created["paused_at"], Value::Null);
    assert_eq!(created["consecutive_failures"], 0);
    for key in ["created_at", "updated_at", "url", "id"] {
        assert!(created[key].is_string(), "{key} in {created}");
    }
    let id = id_of(&created);
    let one = format!("{path}/{id}");

    let (status, shown) = app.get(&one).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["data"]["secret_key"], Value::Null, "shown once");
    assert_eq!(shown["data"]["url"], "https://hooks.example.com/kapso");
    // The project-level route finds it by id too, naming its number.
    let (status, by_id) = app.get(&format!("{HOOKS}/{id}")).await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(by_id["data"]["phone_number_id"], PNID);
    assert_eq!(by_id["data"]["secret_key"], Value::Null);

    let (status, list) = app.get(&path).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["secret_key"], Value::Null);
    assert!(list["paging"].is_object(), "{list}");
    let (_, project_list) = app.get(HOOKS).await;
    assert_eq!(
        project_list["data"],
        json!([]),
        "number webhooks are not the project's own"
    );

    // Buffering on: defaults fill in; then sizes set.
    let (status, buffered) = patch(&app, &one, json!({"buffer_enabled": true})).await;
    assert_eq!(status, 200, "{buffered}");
    let data = &buffered["data"];
    assert_eq!(data["buffer_enabled"], true);
    assert_eq!(data["buffer_window_seconds"], 5);
    assert_eq!(data["max_buffer_size"], 50);
    assert_eq!(data["buffer_events"], json!(["whatsapp.message.received"]));
    assert_eq!(data["secret_key"], Value::Null, "no rotation, no secret");
    let (status, changed) = patch(
        &app,
        &one,
        json!({
            "url": "https://hooks.example.com/other",
            "events": ["whatsapp.conversation.inactive"],
            "buffer_window_seconds": 60,
            "max_buffer_size": 1,
            "inactivity_minutes": 1440,
            "headers": {"X-A": "1", "X-B": "two words"},
        }),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let data = &changed["data"];
    assert_eq!(data["url"], "https://hooks.example.com/other");
    assert_eq!(data["events"], json!(["whatsapp.conversation.inactive"]));
    assert_eq!(data["buffer_window_seconds"], 60);
    assert_eq!(data["max_buffer_size"], 1);
    assert_eq!(data["inactivity_minutes"], 1440);
    assert_eq!(data["headers"], json!({"X-A": "1", "X-B": "two words"}));
    let (_, reread) = app.get(&one).await;
    assert_eq!(reread["data"]["inactivity_minutes"], 1440, "stored");
    assert_eq!(reread["data"]["max_buffer_size"], 1);
    // Off again: the buffer fields go back to null and [].
    let (_, off) = patch(
        &app,
        &one,
        json!({"buffer_enabled": false, "headers": null}),
    )
    .await;
    assert_eq!(off["data"]["buffer_window_seconds"], Value::Null, "{off}");
    assert_eq!(off["data"]["buffer_events"], json!([]));
    assert_eq!(off["data"]["headers"], json!({}));

    let response = app.request(Method::DELETE, &one).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let (status, _) = app.get(&one).await;
    assert_eq!(status, 404);
    let response = app.request(Method::DELETE, &one).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

async fn project_webhooks_crud_and_paging(app: TestApp) {
    let mut ids = Vec::new();
    for n in 0..3 {
        let data = create(
            &app,
            HOOKS,
            json!({
                "url": format!("https://hooks.example.com/p{n}"),
                "events": ["whatsapp.phone_number.created", "whatsapp.phone_number.deleted"],
            }),
        )
        .await;
        assert_eq!(data["phone_number_id"], Value::Null);
        assert!(data["secret_key"].as_str().unwrap().starts_with("wh_sec_"));
        ids.push(id_of(&data));
    }
    // Newest first, one per page, cursors both ways.
    let (status, first) = app.get(&format!("{HOOKS}?limit=1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"][0]["id"], ids[2].as_str());
    let after = first["paging"]["cursors"]["after"].as_str().unwrap();
    let (_, second) = app.get(&format!("{HOOKS}?limit=2&after={after}")).await;
    let second_ids: Vec<&str> = second["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(second_ids, [ids[1].as_str(), ids[0].as_str()]);
    let (status, bad) = app.get(&format!("{HOOKS}?limit=0")).await;
    assert_eq!(status, 400, "{bad}");

    let one = format!("{HOOKS}/{}", ids[0]);
    let (status, rotated) = patch(&app, &one, json!({"rotate_secret_key": true})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["data"]["secret_key"].as_str().unwrap();
    assert!(new_secret.starts_with("wh_sec_"));
    let (_, set) = patch(&app, &one, json!({"secret_key": "my-own-secret"})).await;
    assert_eq!(set["data"]["secret_key"], "my-own-secret", "{set}");
    let (_, shown) = app.get(&one).await;
    assert_eq!(shown["data"]["secret_key"], Value::Null);
    let (status, events) = patch(
        &app,
        &one,
        json!({"events": ["whatsapp.phone_number.deleted"], "kind": "kapso"}),
    )
    .await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(
        events["data"]["events"],
        json!(["whatsapp.phone_number.deleted"])
    );

    let response = app.request(Method::DELETE, &one).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let (_, list) = app.get(HOOKS).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
}

async fn validation_names_each_field(app: TestApp) {
    app.connect_number(&app.api_key, PNID, "5550001", "tok")
        .await;
    let number = number_hooks(PNID);
    let ok_events = json!(["whatsapp.message.received"]);
    let cases: Vec<(&str, Value, Vec<&str>, &str)> = vec![
        (
            &number,
            json!({"events": ok_events}),
            vec!["url"],
            "required",
        ),
        (
            &number,
            json!({"url": "ftp://x.example.com", "events": ok_events}),
            vec!["url"],
            "",
        ),
        (
            &number,
            json!({"url": "not a url", "events": ok_events}),
            vec!["url"],
            "",
        ),
        (
            &number,
            json!({"url": "https://u:p@x.example.com", "events": ok_events}),
            vec!["url"],
            "",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "kind": "other", "events": ok_events}),
            vec!["kind"],
            "",
        ),
        (
            &number,
            json!({"url": "https://x.example.com"}),
            vec!["events"],
            "required",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": []}),
            vec!["events"],
            "at least one",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ["whatsapp.message.bogus"]}),
            vec!["events"],
            "valid events",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ["whatsapp.phone_number.created"]}),
            vec!["events"],
            "project event",
        ),
        (
            HOOKS,
            json!({"url": "https://x.example.com", "events": ["whatsapp.message.received"]}),
            vec!["events"],
            "never goes to project webhooks",
        ),
        (
            HOOKS,
            json!({"url": "https://x.example.com", "events": ["whatsapp.conversation.ended"]}),
            vec!["events"],
            "never goes to project webhooks",
        ),
        (
            HOOKS,
            json!({"url": "https://x.example.com", "kind": "meta"}),
            vec!["kind"],
            "phone number",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "buffer_enabled": true, "buffer_window_seconds": 0}),
            vec!["buffer_window_seconds"],
            "1 to 60",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "buffer_enabled": true, "buffer_window_seconds": 61}),
            vec!["buffer_window_seconds"],
            "1 to 60",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "buffer_enabled": true, "max_buffer_size": 0}),
            vec!["max_buffer_size"],
            "1 to 100",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "buffer_enabled": true, "max_buffer_size": 101}),
            vec!["max_buffer_size"],
            "1 to 100",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "buffer_events": ["whatsapp.message.sent"]}),
            vec!["buffer_events"],
            "only whatsapp.message.received",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "inactivity_minutes": 0}),
            vec!["inactivity_minutes"],
            "1 to 1440",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "inactivity_minutes": 1441}),
            vec!["inactivity_minutes"],
            "1 to 1440",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "payload_version": "v1"}),
            vec!["payload_version"],
            "legacy",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "payload_version": "v3"}),
            vec!["payload_version"],
            "v2",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": {"Content-Type": "text/plain"}}),
            vec!["headers"],
            "cannot be overridden",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": {"x-webhook-signature": "forged"}}),
            vec!["headers"],
            "cannot be overridden",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": {"X-WAGATE-Delivery-Id": "1"}}),
            vec!["headers"],
            "cannot be overridden",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": {"Bad Name": "1"}}),
            vec!["headers"],
            "not a valid header name",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": {"X-Line": "a\r\nHost: evil"}}),
            vec!["headers"],
            "printable",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": {"X-Num": 1}}),
            vec!["headers"],
            "string",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "headers": ["X-A"]}),
            vec!["headers"],
            "",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "events": ok_events, "secret_key": " "}),
            vec!["secret_key"],
            "empty",
        ),
        (
            &number,
            json!({"url": "https://x.example.com", "kind": "meta", "events": ok_events, "inactivity_minutes": 5, "buffer_enabled": false}),
            vec!["events", "buffer_enabled", "inactivity_minutes"],
            "meta",
        ),
        // Several bad fields: all named.
        (
            &number,
            json!({"url": "ftp://x", "events": ["nope"], "max_buffer_size": 500, "buffer_enabled": true, "payload_version": "v1"}),
            vec!["url", "events", "max_buffer_size", "payload_version"],
            "",
        ),
    ];
    for (path, webhook, mut expected, words) in cases {
        expected.sort();
        let (status, body) = app
            .call(
                Method::POST,
                path,
                Some(json!({ "whatsapp_webhook": webhook.clone() })),
            )
            .await;
        assert_eq!(status, 422, "{webhook} → {body}");
        assert_eq!(fields(&body), expected, "{webhook} → {body}");
        let message = message_of(&body, expected[0]);
        assert!(
            message.contains(words),
            "{webhook}: '{message}' lacks '{words}'"
        );
    }
    let mut many = serde_json::Map::new();
    for n in 0..21 {
        many.insert(format!("X-H{n}"), json!("v"));
    }
    let (status, body) = app
        .call(
            Method::POST,
            &number,
            Some(json!({"whatsapp_webhook": {"url": "https://x.example.com", "events": ok_events, "headers": many}})),
        )
        .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["headers".to_owned()]),
        "{body}"
    );
    assert!(
        message_of(&body, "headers").contains("at most 20"),
        "{body}"
    );

    // The wrapper, like other resources; unknown fields refused.
    let (status, body) = app
        .call(
            Method::POST,
            HOOKS,
            Some(json!({"url": "https://x.example.com"})),
        )
        .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["whatsapp_webhook".to_owned()]),
        "{body}"
    );
    let (status, body) = app
        .call(
            Method::POST,
            HOOKS,
            Some(json!({"whatsapp_webhook": {"url": "https://x.example.com", "events": ["whatsapp.phone_number.created"], "colour": "red"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("colour"), "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            HOOKS,
            Some(json!({"whatsapp_webhook": {"url": "https://x.example.com", "events": "whatsapp.phone_number.created"}})),
        )
        .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["events".to_owned()]),
        "{body}"
    );

    // Nothing was created by any of that.
    let (_, list) = app.get(&number).await;
    assert_eq!(list["data"], json!([]), "{list}");
    let (_, list) = app.get(HOOKS).await;
    assert_eq!(list["data"], json!([]), "{list}");

    // PATCH: the same rules, and the kind is fixed.
    let created = create(
        &app,
        &number,
        json!({"url": "https://x.example.com", "events": ok_events}),
    )
    .await;
    let one = format!("{number}/{}", id_of(&created));
    for (webhook, expected) in [
        (json!({"kind": "meta"}), vec!["kind"]),
        (json!({"events": []}), vec!["events"]),
        (json!({"url": "http://"}), vec!["url"]),
        (
            json!({"inactivity_minutes": 0, "buffer_window_seconds": 99, "buffer_enabled": true}),
            vec!["buffer_window_seconds", "inactivity_minutes"],
        ),
        (
            json!({"rotate_secret_key": true, "secret_key": "abc"}),
            vec!["rotate_secret_key"],
        ),
        (
            json!({"headers": {"Host": "evil.example.com"}}),
            vec!["headers"],
        ),
    ] {
        let (status, body) = patch(&app, &one, webhook.clone()).await;
        assert_eq!(status, 422, "{webhook} → {body}");
        assert_eq!(fields(&body), expected, "{webhook} → {body}");
    }
    let (status, body) = app
        .call(
            Method::PATCH,
            &one,
            Some(json!({"url": "https://y.example.com"})),
        )
        .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["whatsapp_webhook".to_owned()]),
        "{body}"
    );
    let (_, unchanged) = app.get(&one).await;
    assert_eq!(
        unchanged["data"]["url"], "https://x.example.com",
        "refused PATCHes change nothing"
    );
    assert_eq!(unchanged["data"]["events"], ok_events);
}

async fn urls_refused_by_the_ssrf_guard(app: TestApp) {
    app.connect_number(&app.api_key, PNID, "5550001", "tok")
        .await;
    for url in [
        "http://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest",
        "https://localhost/hook",
        "http://hooks.example.com/plain-http",
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                &number_hooks(PNID),
                Some(
                    json!({"whatsapp_webhook": {"url": url, "events": ["whatsapp.message.read"]}}),
                ),
            )
            .await;
        assert_eq!(
            (status, fields(&body)),
            (422, vec!["url".to_owned()]),
            "{url}: {body}"
        );
        let (status, body) = app
            .call(
                Method::POST,
                &number_hooks(PNID),
                Some(json!({"whatsapp_webhook": {"url": url, "kind": "meta"}})),
            )
            .await;
        assert_eq!(
            (status, fields(&body)),
            (422, vec!["url".to_owned()]),
            "meta {url}: {body}"
        );
    }
}

fn strict_destinations(config: &mut wagate::config::Config) {
    config.delivery.allow_http = false;
    config.delivery.allow_private_networks = false;
}

async fn meta_kind_is_the_numbers_destination(app: TestApp) {
    let hook = Hook::start().await;
    let number = app.connect(&app.api_key, PNID, "5550001", None).await;
    let path = number_hooks(PNID);
    let phone = format!("{NUMBERS}/{PNID}");

    // Created as a webhook: the number shows the URL; the secret is the number's.
    let meta = create(&app, &path, json!({"kind": "meta", "url": hook.url})).await;
    assert_eq!(meta["kind"], "meta");
    assert_eq!(
        meta["id"],
        number.internal_id.to_string(),
        "a meta webhook's id is its number's"
    );
    assert_eq!(
        meta["secret_key"],
        number.secret.as_str(),
        "signs with the number's webhook secret"
    );
    assert_eq!(meta["events"], json!([]));
    assert_eq!(meta["inactivity_minutes"], Value::Null);
    let (_, shown) = app.get(&phone).await;
    assert_eq!(shown["data"]["webhook_destination_url"], hook.url.as_str());
    let (_, again) = app.get(&format!("{path}/{}", id_of(&meta))).await;
    assert_eq!(again["data"]["secret_key"], Value::Null);

    // One per number.
    let (status, body) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"whatsapp_webhook": {"kind": "meta", "url": "https://other.example.com"}})),
        )
        .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["kind".to_owned()]),
        "{body}"
    );
    assert!(
        message_of(&body, "kind").contains("webhook_destination_url"),
        "{body}"
    );

    // Its test delivery is Meta-signed with the number's secret.
    let meta_id = id_of(&meta);
    let (status, queued) = app
        .call(Method::POST, &format!("{HOOKS}/{meta_id}/test"), None)
        .await;
    assert_eq!(status, 202, "{queued}");
    let hit = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(
        hit.header("x-hub-signature-256"),
        format!("sha256={}", hmac_hex(&number.secret, &hit.body))
    );

    // PATCH the number's URL: the meta webhook follows.
    let (status, body) = app
        .call(
            Method::PATCH,
            &phone,
            Some(json!({"whatsapp_phone_number": {"webhook_destination_url": "https://moved.example.com/wa"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = app.get(&path).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["kind"], "meta");
    assert_eq!(list["data"][0]["url"], "https://moved.example.com/wa");

    // PATCH the webhook's URL (and its secret): the number follows.
    let (status, body) = patch(
        &app,
        &format!("{path}/{meta_id}"),
        json!({"url": hook.url, "secret_key": "meta-secret-2"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["secret_key"], "meta-secret-2");
    let (_, shown) = app.get(&phone).await;
    assert_eq!(shown["data"]["webhook_destination_url"], hook.url.as_str());
    hook.clear();
    let (status, _) = app
        .call(Method::POST, &format!("{HOOKS}/{meta_id}/test"), None)
        .await;
    assert_eq!(status, 202);
    let hit = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(
        hit.header("x-hub-signature-256"),
        format!("sha256={}", hmac_hex("meta-secret-2", &hit.body)),
        "the number's secret was replaced"
    );
    // Rotation shows the new one once.
    let (_, rotated) = patch(
        &app,
        &format!("{HOOKS}/{meta_id}"),
        json!({"rotate_secret_key": true}),
    )
    .await;
    let rotated = rotated["data"]["secret_key"].as_str().unwrap().to_owned();
    assert_ne!(rotated, "meta-secret-2");
    // Kapso-only fields do not apply.
    let (status, body) = patch(
        &app,
        &format!("{path}/{meta_id}"),
        json!({"events": ["whatsapp.message.read"]}),
    )
    .await;
    assert_eq!(
        (status, fields(&body)),
        (422, vec!["events".to_owned()]),
        "{body}"
    );

    // DELETE the meta webhook: the URL goes.
    let response = app
        .request(Method::DELETE, &format!("{path}/{meta_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (_, shown) = app.get(&phone).await;
    assert_eq!(shown["data"]["webhook_destination_url"], Value::Null);
    let (_, list) = app.get(&path).await;
    assert_eq!(list["data"], json!([]));

    // Set through the number: a meta webhook appears; cleared there: it goes.
    app.call(
        Method::PATCH,
        &phone,
        Some(json!({"whatsapp_phone_number": {"webhook_destination_url": "https://again.example.com/wa"}})),
    )
    .await;
    let (_, list) = app.get(&path).await;
    assert_eq!(list["data"][0]["kind"], "meta", "{list}");
    assert_eq!(list["data"][0]["url"], "https://again.example.com/wa");
    app.call(
        Method::PATCH,
        &phone,
        Some(json!({"whatsapp_phone_number": {"webhook_destination_url": null}})),
    )
    .await;
    let (_, list) = app.get(&path).await;
    assert_eq!(list["data"], json!([]), "{list}");

    // Created with its own secret: that becomes the number's webhook secret.
    let meta = create(
        &app,
        &path,
        json!({"kind": "meta", "url": hook.url, "secret_key": "given-meta-secret"}),
    )
    .await;
    assert_eq!(meta["secret_key"], "given-meta-secret");
    hook.clear();
    app.call(
        Method::POST,
        &format!("{HOOKS}/{}/test", id_of(&meta)),
        None,
    )
    .await;
    let hit = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(
        hit.header("x-hub-signature-256"),
        format!("sha256={}", hmac_hex("given-meta-secret", &hit.body))
    );
}

async fn other_projects_webhooks_look_like_unknown_ones(app: TestApp) {
    let (_, other_key) = app.other_project().await;
    app.connect_number(&app.api_key, PNID, "5550001", "mine")
        .await;
    let mine_number = create(
        &app,
        &number_hooks(PNID),
        json!({"url": "https://x.example.com", "events": ["whatsapp.message.read"]}),
    )
    .await;
    let mine_project = create(
        &app,
        HOOKS,
        json!({"url": "https://x.example.com", "events": ["whatsapp.phone_number.created"]}),
    )
    .await;
    let unknown = uuid::Uuid::now_v7().to_string();

    let (n, p) = (id_of(&mine_number), id_of(&mine_project));
    let body = || {
        Some(
            json!({"whatsapp_webhook": {"url": "https://pwned.example.com", "events": ["whatsapp.message.read"]}}),
        )
    };
    let mine = number_hooks(PNID);
    let nobody = number_hooks("999999");
    let cases: Vec<(Method, String, String, Option<Value>)> = vec![
        (
            Method::GET,
            format!("{HOOKS}/{n}"),
            format!("{HOOKS}/{unknown}"),
            None,
        ),
        (
            Method::GET,
            format!("{HOOKS}/{p}"),
            format!("{HOOKS}/not-a-uuid"),
            None,
        ),
        (
            Method::PATCH,
            format!("{HOOKS}/{n}"),
            format!("{HOOKS}/{unknown}"),
            body(),
        ),
        (
            Method::PATCH,
            format!("{HOOKS}/{p}"),
            format!("{HOOKS}/{unknown}"),
            body(),
        ),
        (
            Method::DELETE,
            format!("{HOOKS}/{p}"),
            format!("{HOOKS}/{unknown}"),
            None,
        ),
        (
            Method::DELETE,
            format!("{HOOKS}/{n}"),
            format!("{HOOKS}/{unknown}"),
            None,
        ),
        (
            Method::POST,
            format!("{HOOKS}/{p}/test"),
            format!("{HOOKS}/{unknown}/test"),
            None,
        ),
        (
            Method::POST,
            format!("{HOOKS}/{n}/test"),
            format!("{HOOKS}/{unknown}/test"),
            None,
        ),
        (
            Method::GET,
            format!("{mine}/{n}"),
            format!("{nobody}/{unknown}"),
            None,
        ),
        (
            Method::PATCH,
            format!("{mine}/{n}"),
            format!("{nobody}/{unknown}"),
            body(),
        ),
        (
            Method::DELETE,
            format!("{mine}/{n}"),
            format!("{nobody}/{unknown}"),
            None,
        ),
        (Method::GET, mine.clone(), nobody.clone(), None),
        (Method::POST, mine.clone(), nobody.clone(), body()),
    ];
    for (method, theirs, missing, body) in cases {
        let a = app
            .call_with_key(&other_key, method.clone(), &theirs, body.clone())
            .await;
        let b = app
            .call_with_key(&other_key, method.clone(), &missing, body)
            .await;
        assert_eq!(a.0, 404, "{method} {theirs}: {}", a.1);
        assert_eq!(
            a, b,
            "{method} {theirs}: no oracle between foreign and unknown"
        );
    }
    // A webhook of another number of mine is not this number's.
    app.connect_number(&app.api_key, "4440002", "5550001", "mine2")
        .await;
    let (status, _) = app
        .get(&format!(
            "{}/{}",
            number_hooks("4440002"),
            id_of(&mine_number)
        ))
        .await;
    assert_eq!(status, 404);
    let (_, list) = app
        .call_with_key(&other_key, Method::GET, HOOKS, None)
        .await;
    assert_eq!(list["data"], json!([]));
    let (_, still) = app.get(&format!("{HOOKS}/{}", id_of(&mine_number))).await;
    assert_eq!(still["data"]["url"], "https://x.example.com", "untouched");
}

async fn test_delivery_is_signed_with_the_secret(app: TestApp) {
    let hook = Hook::start().await;
    app.connect_number(&app.api_key, PNID, "5550001", "tok")
        .await;
    let created = create(
        &app,
        &number_hooks(PNID),
        json!({"url": hook.url, "events": ["whatsapp.message.received"], "headers": {"X-Webhook-Source": "kapso", "Authorization": "Bearer abc"}}),
    )
    .await;
    let secret = created["secret_key"].as_str().unwrap().to_owned();
    let id = id_of(&created);
    let (status, queued) = app
        .call(Method::POST, &format!("{HOOKS}/{id}/test"), None)
        .await;
    assert_eq!(status, 202, "{queued}");
    let delivery = &queued["data"];
    assert_eq!(delivery["webhook_id"], id.as_str());
    assert_eq!(delivery["event"], "whatsapp.webhook.test");
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["batch_size"], 1);
    assert_eq!(delivery["phone_number_id"], PNID);

    let hit = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(
        hit.header("x-webhook-signature"),
        hmac_hex(&secret, &hit.body)
    );
    assert_ne!(
        hit.header("x-webhook-signature"),
        hmac_hex("wrong", &hit.body)
    );
    assert_eq!(hit.header("x-webhook-event"), "whatsapp.webhook.test");
    assert_eq!(hit.header("x-webhook-payload-version"), "v2");
    assert_eq!(hit.header("x-webhook-source"), "kapso");
    assert_eq!(hit.header("authorization"), "Bearer abc");
    assert_eq!(
        hit.header("x-idempotency-key"),
        delivery["idempotency_key"].as_str().unwrap()
    );
    let body = hit.json();
    assert_eq!(body["test"], true);
    assert_eq!(body["webhook_id"], id.as_str());
    assert_eq!(body["project_id"], app.project_id.to_string());
    assert_eq!(body["phone_number_id"], PNID);
    assert!(body["sent_at"].is_string(), "{body}");
    assert!(
        !String::from_utf8_lossy(&hit.body).contains('\n'),
        "compact JSON"
    );
    // The delivery log shows it delivered.
    let delivery_id = delivery["id"].as_str().unwrap();
    crate::common::eventually(
        Duration::from_secs(10),
        "test delivery succeeded",
        || async {
            let (_, shown) = app
                .get(&format!("/platform/v1/webhook_deliveries/{delivery_id}"))
                .await;
            (shown["data"]["status"] == "succeeded").then_some(())
        },
    )
    .await;

    // A project webhook: no number.
    hook.clear();
    let project = create(
        &app,
        HOOKS,
        json!({"url": hook.url, "events": ["whatsapp.phone_number.deleted"]}),
    )
    .await;
    let (status, queued) = app
        .call(
            Method::POST,
            &format!("{HOOKS}/{}/test", id_of(&project)),
            None,
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let hit = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let project_secret = project["secret_key"].as_str().unwrap();
    assert_eq!(
        hit.header("x-webhook-signature"),
        hmac_hex(project_secret, &hit.body)
    );
    assert_eq!(hit.json()["phone_number_id"], Value::Null);
    assert_eq!(hit.json()["webhook_id"], id_of(&project).as_str());
}

async fn pause_and_resume(app: TestApp) {
    let hook = Hook::start().await;
    app.connect_number(&app.api_key, PNID, "5550001", "tok")
        .await;
    let created = create(
        &app,
        &number_hooks(PNID),
        json!({"url": hook.url, "events": ["whatsapp.message.received"]}),
    )
    .await;
    let id = id_of(&created);
    let one = format!("{HOOKS}/{id}");
    let test = format!("{one}/test");

    // By hand.
    let (status, paused) = patch(&app, &one, json!({"active": false})).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["data"]["active"], false);
    assert_eq!(paused["data"]["paused_reason"], Value::Null);
    let (status, body) = app.call(Method::POST, &test, None).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(fields(&body), ["active"]);
    assert!(message_of(&body, "active").contains("inactive"), "{body}");
    let (status, resumed) = patch(&app, &one, json!({"active": true})).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["data"]["active"], true);
    let (status, _) = app.call(Method::POST, &test, None).await;
    assert_eq!(status, 202);
    hook.wait_for(1, Duration::from_secs(10)).await;

    // Paused by wagate (a run of failures): the test is held, and goes out on resume.
    let uuid: uuid::Uuid = id.parse().unwrap();
    let mut row = app
        .store
        .get_webhook(app.project_id, uuid)
        .await
        .unwrap()
        .unwrap();
    row.active = false;
    row.paused_reason = Some("consecutive_failures".into());
    row.paused_at = Some(wagate::store::now());
    row.consecutive_failures = 7;
    app.store.update_webhook(&row).await.unwrap();
    app.state.numbers.invalidate();
    let (_, shown) = app.get(&one).await;
    assert_eq!(shown["data"]["paused_reason"], "consecutive_failures");
    assert_eq!(shown["data"]["consecutive_failures"], 7);
    assert!(shown["data"]["paused_at"].is_string());
    hook.clear();
    let (status, held) = app.call(Method::POST, &test, None).await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["data"]["status"], "paused");
    let (status, listed) = app
        .get("/platform/v1/webhook_deliveries?status=paused")
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"][0]["id"], held["data"]["id"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook.hits().is_empty(), "held while paused");
    let (status, resumed) = patch(&app, &one, json!({"active": true})).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["data"]["paused_reason"], Value::Null);
    assert_eq!(resumed["data"]["paused_at"], Value::Null);
    assert_eq!(resumed["data"]["consecutive_failures"], 0);
    let hit = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(hit.header("x-webhook-event"), "whatsapp.webhook.test");
}

crate::both_backends!(app:
    number_webhooks_crud,
    project_webhooks_crud_and_paging,
    validation_names_each_field,
    meta_kind_is_the_numbers_destination,
    other_projects_webhooks_look_like_unknown_ones,
    test_delivery_is_signed_with_the_secret,
    pause_and_resume,
);

crate::both_backends!(app with strict_destinations:
    urls_refused_by_the_ssrf_guard,
);
