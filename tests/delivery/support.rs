//! What only the delivery tests share: a fast retry schedule, the delivery log, stored
//! processing statuses; the rest (apps, numbers, signed webhooks, receivers, independent
//! signature checks, polling) comes from the test kit, re-exported here.

use std::time::{Duration, Instant};

use serde_json::Value;
use wagate::config::{Backend, Config};

pub use crate::common::app::NUMBERS;
pub use crate::common::meta::{hmac_hex, sha256_hex};
pub use crate::common::receiver::{Hook, Reply};
pub use crate::common::{eventually, ms, Number, TestApp};

pub const DELIVERIES: &str = "/platform/v1/webhook_deliveries";

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

/// Waits until no duplicate of what was sent so far can still be on its way, so that a test
/// can then count what arrived: past the lease (a claim left unfinished comes due again after
/// it), a poll interval, the longest backoff (a failed attempt tried again) and a margin for a
/// loaded machine, all read from this app's configuration.
pub async fn past_any_duplicate(app: &TestApp) {
    let d = &app.config.delivery;
    tokio::time::sleep(d.lease + d.poll_interval + d.backoff_max + ms(1000)).await;
}

/// The number's deliveries, newest first (at most 100).
pub async fn deliveries_of(app: &TestApp, number: &Number) -> Vec<Value> {
    let (status, body) = app
        .get(&format!(
            "{DELIVERIES}?phone_number_id={}&limit=100",
            number.pnid
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// One delivery with its attempts.
pub async fn delivery(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("{DELIVERIES}/{id}")).await;
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
