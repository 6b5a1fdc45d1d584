//! Shared pieces of the delivery tests: a fast retry schedule, connecting numbers with a
//! destination, signed Meta webhooks, Platform API calls, independent signature checks, polling.

use std::future::Future;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate::config::{Backend, Config};

use crate::helpers::{TestApp, APP_SECRET};

pub const DELIVERIES: &str = "/platform/v1/webhook_deliveries";
pub const NUMBERS: &str = "/platform/v1/whatsapp/phone_numbers";

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A schedule measured in milliseconds: 50 ms doubling to 200 ms, no jitter, dead after 1.5 s.
pub fn fast(config: &mut Config) {
    let d = &mut config.delivery;
    d.backoff_initial = ms(50);
    d.backoff_max = ms(200);
    d.jitter = 0.0;
    d.poll_interval = ms(100);
    d.give_up_after = ms(1500);
    d.request_timeout = ms(1000);
    d.connect_timeout = ms(500);
    // Only a crashed worker waits this out; long, so a loaded machine never re-sends.
    d.lease = ms(10_000);
}

/// An app with the fast schedule, then `adjust`; the result must pass config validation.
pub async fn spawn(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        fast(config);
        adjust(config);
        config.validate().expect("test configuration is valid");
    })
    .await
}

/// HMAC-SHA256, hex: computed here, independently of wagate's crypto module.
pub fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// A connected number: Meta's id, wagate's internal id, the secret its webhooks are signed with.
#[derive(Debug, Clone)]
pub struct Number {
    pub pnid: String,
    pub waba: String,
    pub internal_id: uuid::Uuid,
    pub secret: String,
}

/// Connects `pnid` (WABA `waba`) with `key`, forwarding to `url` when given.
pub async fn connect(
    app: &TestApp,
    key: &str,
    pnid: &str,
    waba: &str,
    url: Option<&str>,
) -> Number {
    let mut input = json!({
        "phone_number_id": pnid,
        "business_account_id": waba,
        "access_token": format!("token-{pnid}"),
        "name": format!("Line {pnid}"),
    });
    if let Some(url) = url {
        input["webhook_destination_url"] = json!(url);
    }
    let (status, body) = call(
        app,
        key,
        Method::POST,
        NUMBERS,
        Some(json!({ "whatsapp_phone_number": input })),
    )
    .await;
    assert_eq!(status, 201, "connect {pnid}: {body}");
    let data = &body["data"];
    assert_eq!(data["webhook_destination_url"], json!(url));
    Number {
        pnid: pnid.to_owned(),
        waba: waba.to_owned(),
        internal_id: data["internal_id"].as_str().unwrap().parse().unwrap(),
        secret: data["webhook_secret"]
            .as_str()
            .expect("a generated webhook secret is returned once")
            .to_owned(),
    }
}

/// A Platform API call with `key`; returns the status and the JSON body.
pub async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.request_with_key(method, path, key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    call(app, &app.api_key, Method::GET, path, None).await
}

/// One inbound text message to `number`, as Meta sends it (pretty-printed, so any re-encoding
/// on the way would show).
pub fn inbound(number: &Number, wamid: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": number.waba, "changes": [{"field": "messages", "value": change_value(number, wamid, text)}]}]
    }))
    .unwrap()
}

pub fn change_value(number: &Number, wamid: &str, text: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": number.pnid},
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": "15551230001"}],
        "messages": [{
            "from": "15551230001",
            "id": wamid,
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": text}
        }]
    })
}

/// POSTs `body` to the Meta webhook endpoint, signed with the app secret; asserts it was stored.
pub async fn post_webhook(app: &TestApp, body: &[u8]) {
    let response = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(APP_SECRET.as_bytes(), body)),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "webhook refused");
}

/// Polls `probe` every 25 ms until it yields a value; panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(25)).await;
    }
}

/// The number's deliveries, newest first (at most 100).
pub async fn deliveries_of(app: &TestApp, number: &Number) -> Vec<Value> {
    let (status, body) = get(
        app,
        &format!("{DELIVERIES}?phone_number_id={}&limit=100", number.pnid),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// One delivery with its attempts.
pub async fn delivery(app: &TestApp, id: &str) -> Value {
    let (status, body) = get(app, &format!("{DELIVERIES}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Waits until delivery `id` has `status`; returns it with its attempts.
pub async fn wait_status(app: &TestApp, id: &str, status: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let d = delivery(app, id).await;
        if d["status"] == status {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id} not {status} within {within:?}: {d:#}"
        );
        tokio::time::sleep(ms(25)).await;
    }
}

/// Waits until the number has `n` deliveries; returns them newest first.
pub async fn wait_deliveries(app: &TestApp, number: &Number, n: usize) -> Vec<Value> {
    eventually(
        ms(5000),
        &format!("{n} deliveries of {}", number.pnid),
        || async {
            let all = deliveries_of(app, number).await;
            (all.len() >= n).then_some(all)
        },
    )
    .await
}

/// The stored processing status of inbound message `wamid`.
pub async fn processing_status(app: &TestApp, number: &Number, wamid: &str) -> String {
    app.store
        .find_message(number.internal_id, wamid)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("message {wamid} stored"))
        .processing_status
        .to_string()
}

pub async fn wait_processing_status(app: &TestApp, number: &Number, wamid: &str, status: &str) {
    eventually(
        ms(5000),
        &format!("{wamid} processing_status {status}"),
        || async { (processing_status(app, number, wamid).await == status).then_some(()) },
    )
    .await
}

/// An ISO 8601 time for query strings and replay bodies.
pub fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Query-string encoding of a time (`+` and `:` kept safe).
pub fn q(t: chrono::DateTime<chrono::Utc>) -> String {
    url::form_urlencoded::byte_serialize(iso(t).as_bytes()).collect()
}
