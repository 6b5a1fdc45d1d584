//! What a receiver gets: the signed, byte-identical body and headers; retries until it answers
//! 2xx; dead letters, replays and manual retries; batched envelopes split per number.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::support::*;

const PNID: &str = "100000000000001";
const WABA: &str = "200000000000001";

async fn happy_path(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let hook = Hook::start().await;
    // A slow first answer, so the message is seen pending while its delivery is in flight.
    hook.then(Reply::ok().after(ms(700)));
    let number = app.connect(&app.api_key, PNID, WABA, Some(&hook.url)).await;
    let body = number.inbound("wamid.HAPPY", "hello");
    app.post_webhook_ok(&body).await;

    let hits = hook.wait_for(1, ms(5000)).await;
    assert_eq!(
        processing_status(&app, &number, "wamid.HAPPY").await,
        "pending"
    );
    let listed = wait_deliveries(&app, &number, 1).await;
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let d = wait_status(&app, &id, "succeeded", ms(5000)).await;
    wait_processing_status(&app, &number, "wamid.HAPPY", "completed").await;
    // Nothing else arrives: exactly one delivery, one request.
    past_any_duplicate(&app).await;
    assert_eq!(hook.hits().len(), 1);
    assert_eq!(deliveries_of(&app, &number).await.len(), 1);

    let hit = &hits[0];
    assert_eq!(&hit.body[..], &body[..], "byte-identical body");
    assert_eq!(hit.header("content-type"), "application/json");
    assert_eq!(
        hit.header("x-hub-signature-256"),
        format!("sha256={}", hmac_hex(number.secret.as_bytes(), &body))
    );
    assert_eq!(hit.header("x-idempotency-key"), sha256_hex(&body));
    assert_eq!(
        hit.header("x-wagate-event-id"),
        d["event_id"].as_str().unwrap()
    );
    assert_eq!(hit.header("x-wagate-delivery-id"), id);
    assert_eq!(hit.header("x-wagate-attempt"), "1");
    assert_eq!(
        hit.header("user-agent"),
        concat!("wagate/", env!("CARGO_PKG_VERSION"))
    );

    assert_eq!(d["phone_number_id"], PNID);
    assert_eq!(d["fields"], json!(["messages"]));
    assert_eq!(d["message_ids"], json!(["wamid.HAPPY"]));
    assert_eq!(d["idempotency_key"], sha256_hex(&body));
    assert_eq!(d["attempt_count"], 1);
    assert_eq!(d["last_status_code"], 200);
    assert_eq!(d["next_attempt_at"], Value::Null);
    assert!(d["delivered_at"].is_string(), "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{d:#}");
    let a = &attempts[0];
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["status_code"], 200);
    assert_eq!(a["error"], Value::Null);
    assert_eq!(a["destination"], hook.url);
    assert_eq!(a["response_excerpt"], "answer 200");
    assert!(a["duration_ms"].as_i64().unwrap() >= 600, "{a}");

    // The stored-data API shows the same processing status.
    let (status, page) = app
        .get(&format!("/meta/whatsapp/v24.0/{PNID}/messages"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"][0]["kapso"]["processing_status"], "completed");
}

async fn retries_until_the_receiver_recovers(backend: Backend) {
    let app = spawn(backend, |c| {
        // Long enough that the receiver's Retry-After: 1 is not capped away.
        c.delivery.backoff_max = Duration::from_secs(2);
        c.delivery.give_up_after = Duration::from_secs(10);
    })
    .await;
    let hook = Hook::start().await;
    hook.then(Reply::status(500))
        .then(Reply::status(503).header("retry-after", "0"))
        .then(Reply::status(429).header("retry-after", "1"))
        .then(Reply::ok());
    let number = app.connect(&app.api_key, PNID, WABA, Some(&hook.url)).await;
    let body = number.inbound("wamid.RETRY", "again");
    app.post_webhook_ok(&body).await;

    hook.wait_for(1, ms(5000)).await;
    assert_eq!(
        processing_status(&app, &number, "wamid.RETRY").await,
        "pending",
        "still pending while failing"
    );
    let id = wait_deliveries(&app, &number, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = wait_status(&app, &id, "succeeded", ms(8000)).await;
    wait_processing_status(&app, &number, "wamid.RETRY", "completed").await;
    past_any_duplicate(&app).await;

    let hits = hook.hits();
    assert_eq!(
        hits.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [500, 503, 429, 200],
        "delivered exactly once successfully"
    );
    for (n, hit) in hits.iter().enumerate() {
        assert_eq!(&hit.body[..], &body[..]);
        assert_eq!(hit.header("x-wagate-attempt"), (n + 1).to_string());
        assert_eq!(hit.header("x-wagate-delivery-id"), id);
        assert_eq!(hit.header("x-idempotency-key"), sha256_hex(&body));
        assert_eq!(
            hit.header("x-hub-signature-256"),
            format!("sha256={}", hmac_hex(number.secret.as_bytes(), &body))
        );
    }
    // Retry-After: 1 was honoured (it is longer than the 200 ms the schedule asked for).
    let gap = hits[3].at - hits[2].at;
    assert!(gap >= ms(950), "Retry-After ignored: {gap:?}");

    assert_eq!(d["attempt_count"], 4);
    assert_eq!(d["last_status_code"], 200);
    assert_eq!(d["last_error"], Value::Null, "{d:#}");
    let attempts = d["attempts"].as_array().unwrap();
    let summary: Vec<(i64, Value, Value)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status_code"].clone(),
                a["error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, json!(500), json!("receiver answered 500")),
            (2, json!(503), json!("receiver answered 503")),
            (3, json!(429), json!("receiver answered 429")),
            (4, json!(200), Value::Null),
        ],
        "{d:#}"
    );
}

async fn dead_letters_then_replay_and_retry(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let hook = Hook::start().await;
    hook.always(Reply::status(500));
    let number = app.connect(&app.api_key, PNID, WABA, Some(&hook.url)).await;
    // A second number whose receiver refuses connections.
    let closed = crate::common::ports::refusing_port();
    let refused_url = format!("http://127.0.0.1:{closed}/hook");
    let refused = app
        .connect(
            &app.api_key,
            "100000000000002",
            "200000000000002",
            Some(&refused_url),
        )
        .await;

    let since = chrono::Utc::now();
    let body = number.inbound("wamid.DEAD", "lost?");
    app.post_webhook_ok(&body).await;
    app.post_webhook_ok(&refused.inbound("wamid.REFUSED", "nobody home"))
        .await;
    let until = chrono::Utc::now();

    let id = wait_deliveries(&app, &number, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = wait_status(&app, &id, "dead", ms(6000)).await;
    wait_processing_status(&app, &number, "wamid.DEAD", "failed").await;
    let attempts = dead["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "{dead:#}");
    assert_eq!(
        attempts.len() as i64,
        dead["attempt_count"].as_i64().unwrap()
    );
    assert_eq!(hook.hits().len(), attempts.len(), "one request per attempt");
    assert!(attempts
        .iter()
        .all(|a| a["status_code"] == 500 && a["error"] == "receiver answered 500"));
    assert_eq!(dead["last_error"], "receiver answered 500");
    assert_eq!(dead["next_attempt_at"], Value::Null);
    // No more attempts once dead.
    let tried = hook.hits().len();
    past_any_duplicate(&app).await;
    assert_eq!(hook.hits().len(), tried);

    let refused_id = wait_deliveries(&app, &refused, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused_dead = wait_status(&app, &refused_id, "dead", ms(6000)).await;
    let first = &refused_dead["attempts"][0];
    assert_eq!(first["status_code"], Value::Null);
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .starts_with("could not connect"),
        "{first}"
    );
    wait_processing_status(&app, &refused, "wamid.REFUSED", "failed").await;

    // The receiver recovers; a replay of the time range re-sends the event as a new delivery.
    hook.always(Reply::ok());
    let (status, replay) = app
        .call(
            Method::POST,
            &format!("{NUMBERS}/{PNID}/webhook_replays"),
            Some(json!({"since": iso(since), "until": iso(until)})),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["data"]["queued"], 1);
    assert_eq!(replay["data"]["truncated"], false);
    let hits = hook.wait_for(tried + 1, ms(5000)).await;
    let replayed = &hits[tried];
    assert_eq!(replayed.answered, 200);
    assert_eq!(&replayed.body[..], &body[..]);
    assert_eq!(replayed.header("x-idempotency-key"), sha256_hex(&body));
    assert_eq!(replayed.header("x-wagate-attempt"), "1");
    assert_eq!(
        replayed.header("x-wagate-event-id"),
        dead["event_id"].as_str().unwrap()
    );
    let replay_id = replayed.header("x-wagate-delivery-id").to_owned();
    assert_ne!(replay_id, id, "a replay is a new delivery");
    wait_status(&app, &replay_id, "succeeded", ms(5000)).await;
    wait_processing_status(&app, &number, "wamid.DEAD", "completed").await;
    assert_eq!(
        delivery(&app, &id).await["status"],
        "dead",
        "the original stays dead"
    );

    // A manual retry of the dead delivery sends it again, as its next attempt.
    let (status, retried) = app
        .call(Method::POST, &format!("{DELIVERIES}/{id}/retry"), None)
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["data"]["status"], "pending");
    let done = wait_status(&app, &id, "succeeded", ms(5000)).await;
    let hits = hook.wait_for(tried + 2, ms(5000)).await;
    let again = &hits[tried + 1];
    assert_eq!(&again.body[..], &body[..]);
    assert_eq!(again.header("x-idempotency-key"), sha256_hex(&body));
    assert_eq!(again.header("x-wagate-delivery-id"), id);
    assert_eq!(again.header("x-wagate-attempt"), (tried + 1).to_string());
    assert_eq!(done["attempt_count"].as_u64().unwrap() as usize, tried + 1);
    assert_eq!(done["attempts"].as_array().unwrap().len(), tried + 1);
    assert!(done["delivered_at"].is_string());
    past_any_duplicate(&app).await;
    assert_eq!(hook.hits().len(), tried + 2);
}

async fn batched_envelopes_are_split_per_number(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (_, other_key) = app.other_project().await;
    let (hook_a, hook_b) = (Hook::start().await, Hook::start().await);
    let a = app
        .connect(&app.api_key, PNID, WABA, Some(&hook_a.url))
        .await;
    let b = app
        .connect(
            &other_key,
            "100000000000009",
            "200000000000009",
            Some(&hook_b.url),
        )
        .await;
    let envelope = json!({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": a.waba, "changes": [
                {"field": "messages", "value": a.text_value("wamid.A1", "one")},
                {"field": "messages", "value": a.text_value("wamid.A2", "two")},
            ]},
            {"id": b.waba, "changes": [
                {"field": "messages", "value": b.text_value("wamid.B1", "nine")},
            ]},
        ]
    });
    app.post_webhook_ok(&serde_json::to_vec(&envelope).unwrap())
        .await;

    let got_a = hook_a.wait_for(1, ms(5000)).await;
    let got_b = hook_b.wait_for(1, ms(5000)).await;
    past_any_duplicate(&app).await;
    assert_eq!(hook_a.hits().len(), 1);
    assert_eq!(hook_b.hits().len(), 1);
    for (hit, number, wamids) in [
        (&got_a[0], &a, vec!["wamid.A1", "wamid.A2"]),
        (&got_b[0], &b, vec!["wamid.B1"]),
    ] {
        let value = hit.json();
        assert_eq!(value["object"], "whatsapp_business_account");
        let entries = value["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{value}");
        assert_eq!(entries[0]["id"], number.waba);
        let changes = entries[0]["changes"].as_array().unwrap();
        assert!(
            changes
                .iter()
                .all(|c| c["value"]["metadata"]["phone_number_id"] == number.pnid.as_str()),
            "only its own number's changes: {value}"
        );
        let ids: Vec<&str> = changes
            .iter()
            .map(|c| c["value"]["messages"][0]["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, wamids);
        assert!(
            !String::from_utf8_lossy(&hit.body).contains(if number.pnid == PNID {
                "100000000000009"
            } else {
                PNID
            }),
            "the other number leaks into {value}"
        );
        assert_eq!(
            hit.header("x-hub-signature-256"),
            format!("sha256={}", hmac_hex(number.secret.as_bytes(), &hit.body))
        );
        assert_eq!(hit.header("x-idempotency-key"), sha256_hex(&hit.body));
    }
    assert_eq!(
        got_a[0].header("x-wagate-event-id"),
        got_b[0].header("x-wagate-event-id"),
        "one Meta event"
    );
    // Each project sees only its own delivery.
    assert_eq!(deliveries_of(&app, &a).await.len(), 1);
    let (status, theirs) = app
        .call_with_key(
            &other_key,
            Method::GET,
            &format!("{DELIVERIES}?limit=100"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["data"][0]["phone_number_id"], b.pnid);
    let (_, mine) = app.get(&format!("{DELIVERIES}?limit=100")).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        mine["data"][0]["message_ids"],
        json!(["wamid.A1", "wamid.A2"])
    );
}

crate::both_backends!(backend:
    happy_path,
    retries_until_the_receiver_recovers,
    dead_letters_then_replay_and_retry,
    batched_envelopes_are_split_per_number,
);

/// PostgreSQL text cannot hold NUL: a receiver answering with one must not make the outcome
/// unrecordable (and the delivery re-sent forever).
async fn answers_with_nul_bytes_are_recorded(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let hook = Hook::start().await;
    hook.always(Reply::ok().body("ok\0binary\u{0}tail"));
    let number = app.connect(&app.api_key, PNID, WABA, Some(&hook.url)).await;
    app.post_webhook_ok(&number.inbound("wamid.NUL", "hi"))
        .await;
    let id = wait_deliveries(&app, &number, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = wait_status(&app, &id, "succeeded", ms(5000)).await;
    let excerpt = d["attempts"][0]["response_excerpt"].as_str().unwrap();
    assert!(
        excerpt.starts_with("ok") && excerpt.ends_with("tail"),
        "{excerpt:?}"
    );
    past_any_duplicate(&app).await;
    assert_eq!(hook.hits().len(), 1);
}

/// A number deleted while one of its deliveries is in flight: the orphaned outcome must not
/// hold up recording everyone else's.
async fn deleting_a_number_mid_delivery_stalls_nothing(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let (slow, healthy) = (Hook::start().await, Hook::start().await);
    slow.always(Reply::ok().after(ms(600)));
    let gone = app.connect(&app.api_key, PNID, WABA, Some(&slow.url)).await;
    let kept = app
        .connect(
            &app.api_key,
            "100000000000002",
            "200000000000002",
            Some(&healthy.url),
        )
        .await;
    app.post_webhook_ok(&gone.inbound("wamid.GONE", "bye"))
        .await;
    slow.wait_for(1, ms(5000)).await;
    let gone_delivery: uuid::Uuid = deliveries_of(&app, &gone).await[0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, body) = app
        .call(Method::DELETE, &format!("{NUMBERS}/{PNID}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    // Let the orphaned attempt finish (the receiver has answered it), then deliver to the
    // other number.
    eventually(ms(10_000), "the orphaned attempt answered", || async {
        (slow.in_flight() == 0).then_some(())
    })
    .await;
    app.post_webhook_ok(&kept.inbound("wamid.KEPT", "still here"))
        .await;
    let id = wait_deliveries(&app, &kept, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_status(&app, &id, "succeeded", ms(3000)).await;
    wait_processing_status(&app, &kept, "wamid.KEPT", "completed").await;
    past_any_duplicate(&app).await;
    assert_eq!(healthy.hits().len(), 1);
    // The deleted number's stored rows went with it (explicitly on PostgreSQL, where these
    // tables carry no foreign keys; by cascade on SQLite), including the late attempt.
    let store = &app.store;
    assert_eq!(
        store
            .find_message(gone.internal_id, "wamid.GONE")
            .await
            .unwrap(),
        None
    );
    assert!(store
        .find_delivery(app.project_id, gone_delivery)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .delivery_attempts(gone_delivery)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .find_message(kept.internal_id, "wamid.KEPT")
        .await
        .unwrap()
        .is_some());
}

crate::both_backends!(backend:
    answers_with_nul_bytes_are_recorded,
    deleting_a_number_mid_delivery_stalls_nothing,
);

/// A manual retry of a delivery whose attempt is in flight must not send it a second time
/// alongside (nor throw away the attempt's outcome).
async fn retry_of_an_in_flight_delivery_sends_once(backend: Backend) {
    let app = spawn(backend, |c| {
        c.delivery.request_timeout = ms(2000);
        c.delivery.give_up_after = Duration::from_secs(10);
    })
    .await;
    let hook = Hook::start().await;
    hook.then(Reply::ok().after(ms(800)));
    let number = app.connect(&app.api_key, PNID, WABA, Some(&hook.url)).await;
    app.post_webhook_ok(&number.inbound("wamid.INFLIGHT", "hi"))
        .await;
    hook.wait_for(1, ms(5000)).await;
    let id = wait_deliveries(&app, &number, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .call(Method::POST, &format!("{DELIVERIES}/{id}/retry"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    wait_status(&app, &id, "succeeded", ms(5000)).await;
    past_any_duplicate(&app).await;
    let d = delivery(&app, &id).await;
    assert_eq!(hook.hits().len(), 1, "sent twice: {d:#}");
    assert_eq!(d["attempt_count"], 1, "{d:#}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1, "{d:#}");
}

crate::both_backends!(backend: retry_of_an_in_flight_delivery_sends_once);
