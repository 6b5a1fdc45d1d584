//! Queued sends under faults (#22): a send whose answer is lost (the emulator accepts it and
//! withholds the answer past wagate's timeout) is confirmed by Meta's status and never sent
//! twice, or sent again after the grace when no status comes (the stated exception); and a
//! SIGKILL of the process mid-broadcast loses no recipient and sends none twice once another
//! process takes over on the same database.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::common::process::{self, Instance};
use crate::common::{emulator, eventually, fresh_database_url, APP_SECRET};
use crate::ingest::{Env, PNID};

const BROADCASTS: &str = "/platform/v1/whatsapp/broadcasts";

fn recipients(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"to": format!("{prefix}{i:03}"), "type": "text", "text": {"body": format!("q{i}")}}))
        .collect()
}

/// Accepted sends of broadcasts at the emulator, counted per recipient.
async fn sends_per_recipient(http: &reqwest::Client, sandbox_url: &str) -> HashMap<String, usize> {
    let sent: Value = http
        .get(format!("{sandbox_url}/_sandbox/sent"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut counts = HashMap::new();
    for message in sent["data"].as_array().unwrap() {
        let tagged = message["request"]["biz_opaque_callback_data"]
            .as_str()
            .is_some_and(|d| d.starts_with("wagate:broadcast:"));
        if tagged {
            *counts
                .entry(message["request"]["to"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    counts
}

async fn start_broadcast(env: &Env, items: Vec<Value>) -> String {
    let (status, body) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            Some(json!({"whatsapp_broadcast": {"phone_number_id": PNID, "recipients": items}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn wait_done(env: &Env, id: &str, within: Duration) -> Value {
    eventually(within, "the broadcast ends", || async {
        let (_, body) = env.app.get(&format!("{BROADCASTS}/{id}")).await;
        (body["data"]["status"] == "completed").then(|| body["data"].clone())
    })
    .await
}

async fn a_lost_answer_is_confirmed_by_meta_and_not_sent_twice(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.graph.timeout = Duration::from_millis(800);
        config.pacing.lost_answer_grace = Duration::from_secs(4);
        config.pacing.poll_interval = Duration::from_millis(100);
        config.pacing.retry_base = Duration::from_millis(200);
    })
    .await;
    env.knobs(json!({"lose_answers": {"count": 1, "hold_ms": 3000}}))
        .await;
    let id = start_broadcast(&env, recipients("4471000", 3)).await;
    let done = wait_done(&env, &id, Duration::from_secs(30)).await;
    assert_eq!(done["sent_count"], 3, "{done}");
    let counts = sends_per_recipient(&env.http, &env.sandbox_url).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "sent twice: {counts:?}");
    // Every recipient has its wamid, and every message is stored (the lost one from Meta's
    // status, with the body wagate kept).
    let (_, list) = env.app.get(&format!("{BROADCASTS}/{id}/recipients")).await;
    let wamids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["wamid"].as_str().expect("wamid").to_owned())
        .collect();
    assert_eq!(wamids.len(), 3);
    eventually(
        Duration::from_secs(10),
        "all three messages stored",
        || async {
            let stored = env.messages().await;
            wamids
                .iter()
                .all(|w| stored.iter().any(|m| &m.wamid == w))
                .then_some(())
        },
    )
    .await;
    // Meta's status confirmed the recipient before the worker's own timeout ran out.
    let metrics = eventually(
        Duration::from_secs(10),
        "the lost answer counted",
        || async {
            let metrics = env.app.metrics().await;
            metrics
                .contains("wagate_broadcast_sends_total{outcome=\"lost\"} 1")
                .then_some(metrics)
        },
    )
    .await;
    assert!(
        !metrics.contains("wagate_broadcast_resent_in_doubt_total"),
        "{metrics}"
    );
}

async fn without_a_status_a_lost_answer_is_sent_again_after_the_grace(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.graph.timeout = Duration::from_millis(800);
        config.pacing.lost_answer_grace = Duration::from_secs(2);
        config.pacing.poll_interval = Duration::from_millis(100);
    })
    .await;
    // Meta's statuses never come: the stated exception.
    env.knobs(json!({"lose_answers": {"count": 1, "hold_ms": 3000}, "drop": ["sent", "delivered", "read"]}),
    )
    .await;
    let id = start_broadcast(&env, recipients("4472000", 1)).await;
    let done = wait_done(&env, &id, Duration::from_secs(30)).await;
    assert_eq!(done["sent_count"], 1, "{done}");
    let counts = sends_per_recipient(&env.http, &env.sandbox_url).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![2],
        "{counts:?}"
    );
    assert!(env
        .app
        .metrics()
        .await
        .contains("wagate_broadcast_resent_in_doubt_total 1"));
}

crate::both_backends!(backend:
    a_lost_answer_is_confirmed_by_meta_and_not_sent_twice,
    without_a_status_a_lost_answer_is_sent_again_after_the_grace
);

fn spawn(dir: &std::path::Path, db: &str, graph: &str) -> Instance {
    process::spawn(
        dir,
        db,
        &[
            ("WAGATE__GRAPH__BASE_URL", graph.to_owned()),
            ("WAGATE__PACING__BROADCAST_LEASE", "12s".into()),
            ("WAGATE__GRAPH__TIMEOUT", "1s".into()),
            ("WAGATE__PACING__LOST_ANSWER_GRACE", "4s".into()),
            ("WAGATE__PACING__POLL_INTERVAL", "100ms".into()),
        ],
    )
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// SIGKILL mid-broadcast, then a new process on the same database: every recipient sent, none
/// twice.
async fn a_killed_worker_loses_no_recipient_and_sends_none_twice(backend: Backend) {
    let (sandbox, sandbox_url) = emulator(|config| {
        config.status_delay = Duration::from_millis(5);
        config.app_secret = APP_SECRET.into();
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(backend, dir.path()).await;
    let http = reqwest::Client::new();
    let first = spawn(dir.path(), &db, &sandbox_url);
    let key = first.api_key();
    sandbox.set_webhook_url(Some(format!("{}/webhooks/whatsapp", first.base)));
    let number = wagate::sandbox::SandboxConfig::demo().numbers[0].clone();
    let (status, body) = call(&http, &first.base, &key, Method::POST, "/platform/v1/whatsapp/phone_numbers", Some(json!({"whatsapp_phone_number": {
        "phone_number_id": number.phone_number_id, "business_account_id": number.business_account_id,
        "access_token": number.access_token}}))).await;
    assert_eq!(status, 201, "{body}");
    let pnid = number.phone_number_id.clone();
    let (status, _) = call(
        &http,
        &first.base,
        &key,
        Method::PATCH,
        &format!("/platform/v1/whatsapp/phone_numbers/{pnid}/pacing"),
        Some(json!({"pacing_rate": 20})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &http,
        &first.base,
        &key,
        Method::POST,
        BROADCASTS,
        Some(json!({"whatsapp_broadcast": {
        "phone_number_id": pnid, "recipients": recipients("4473000", 60)}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    // Some sent, most not: then the process dies with recipients claimed and sends in flight.
    eventually(Duration::from_secs(20), "a third sent", || async {
        (sends_per_recipient(&http, &sandbox_url).await.len() >= 20).then_some(())
    })
    .await;
    first.kill();
    let second = spawn(dir.path(), &db, &sandbox_url);
    sandbox.set_webhook_url(Some(format!("{}/webhooks/whatsapp", second.base)));
    let done = eventually(
        Duration::from_secs(60),
        "the broadcast completes",
        || async {
            let (_, body) = call(
                &http,
                &second.base,
                &key,
                Method::GET,
                &format!("{BROADCASTS}/{id}"),
                None,
            )
            .await;
            (body["data"]["status"] == "completed").then(|| body["data"].clone())
        },
    )
    .await;
    assert_eq!(done["sent_count"], 60, "{done}");
    let counts = sends_per_recipient(&http, &sandbox_url).await;
    assert_eq!(counts.len(), 60, "a recipient was never sent");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
}

crate::both_backends!(backend: a_killed_worker_loses_no_recipient_and_sends_none_twice);
