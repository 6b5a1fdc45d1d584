//! Queued sends through the Broadcasts API (#22), against the emulator: the lifecycle (draft,
//! recipients, send, progress, per-recipient results with cursors, stop, schedule, cancel), what
//! is refused (bad items by index, limits, paused templates, other projects), and retries of
//! Meta's retryable errors against permanent ones.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::common::eventually;
use crate::ingest::{Env, PNID};

const BROADCASTS: &str = "/platform/v1/whatsapp/broadcasts";

async fn start(backend: Backend) -> Env {
    Env::start_with(backend, |config| {
        config.pacing.poll_interval = Duration::from_millis(100);
        config.pacing.retry_base = Duration::from_millis(200);
        config.pacing.max_recipients = 6;
    })
    .await
}

fn wrap(value: Value) -> Option<Value> {
    Some(json!({ "whatsapp_broadcast": value }))
}

fn template_item(phone: &str) -> Value {
    json!({"phone_number": phone, "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]})
}

async fn status_of(env: &Env, id: &str) -> Value {
    let (status, body) = env.app.get(&format!("{BROADCASTS}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn wait_status(env: &Env, id: &str, want: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("broadcast {want}"),
        || async {
            let b = status_of(env, id).await;
            (b["status"] == want).then_some(b)
        },
    )
    .await
}

async fn template_sends(env: &Env) -> Vec<Value> {
    let sent: Value = env
        .http
        .get(format!("{}/_sandbox/sent", env.sandbox_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sent["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["request"]["biz_opaque_callback_data"].is_string())
        .cloned()
        .collect()
}

async fn a_broadcast_goes_from_draft_to_completed(backend: Backend) {
    let env = start(backend).await;
    let (status, body) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            wrap(json!({"name": "July promo", "phone_number_id": PNID,
            "template": {"name": "hello_world", "language": "en_US"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let b = &body["data"];
    assert_eq!(b["status"], "draft");
    assert_eq!(b["whatsapp_template"]["name"], "hello_world");
    let id = b["id"].as_str().unwrap().to_owned();
    let recipients = format!("{BROADCASTS}/{id}/recipients");

    // A bad item refuses the call, naming it; nothing of it is stored.
    let (status, body) = env
        .app
        .call(
            Method::POST,
            &recipients,
            wrap(
                json!({"recipients": [template_item("+14155550101"), {"phone_number": "call me"}]}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("recipients[1]"), "{body}");
    assert_eq!(status_of(&env, &id).await["total_recipients"], 0);

    // Three new ones and a duplicate.
    let items = json!({"recipients": [template_item("+14155550101"), template_item("+14155550102"),
        template_item("+1 415 555 0103"), template_item("+14155550101")]});
    let (status, body) = env.app.call(Method::POST, &recipients, wrap(items)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"added": 3, "duplicates": 1, "errors": []})
    );
    // The broadcast may hold six (pacing.max_recipients here): four more are refused.
    let four: Vec<Value> = (4..8)
        .map(|i| template_item(&format!("+1415555020{i}")))
        .collect();
    let (status, body) = env
        .app
        .call(Method::POST, &recipients, wrap(json!({"recipients": four})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("max_recipients"), "{body}");

    let (status, body) = env
        .app
        .call(Method::POST, &format!("{BROADCASTS}/{id}/send"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "sending");
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(done["sent_count"], 3, "{done}");
    assert_eq!(done["pending_count"], 0);
    assert!(done["completed_at"].is_string());

    // Meta got each recipient once, as the template with its components.
    let sent = template_sends(&env).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    for message in &sent {
        assert_eq!(message["request"]["template"]["name"], "hello_world");
        assert_eq!(
            message["request"]["template"]["components"][0]["parameters"][0]["text"],
            "Ana"
        );
        assert!(message["request"]["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .starts_with("wagate:broadcast:"));
    }

    // Per-recipient results, two at a time, in the order added.
    let (status, page) = env.app.get(&format!("{recipients}?limit=2")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["phone_number"], "14155550101");
    assert_eq!(page["data"][0]["status"], "sent");
    let wamid = page["data"][0]["wamid"].as_str().unwrap().to_owned();
    assert!(sent.iter().any(|m| m["id"] == wamid.as_str()));
    let after = page["paging"]["cursors"]["after"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, next) = env
        .app
        .get(&format!("{recipients}?limit=2&after={after}"))
        .await;
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert_eq!(next["data"][0]["phone_number"], "14155550103");
    assert!(next["paging"]["next"].is_null());
    let (status, _) = env.app.get(&format!("{recipients}?status=lost")).await;
    assert_eq!(status, 400);

    // Recorded like proxied sends, and Meta's statuses reach the counts.
    eventually(
        Duration::from_secs(15),
        "the sends stored and delivered",
        || async {
            let stored = env.messages().await;
            let all_stored = sent
                .iter()
                .all(|m| stored.iter().any(|s| s.wamid == m["id"].as_str().unwrap()));
            let b = status_of(&env, &id).await;
            (all_stored && b["delivered_count"].as_i64().unwrap_or(0) > 0).then_some(())
        },
    )
    .await;

    // A finished broadcast takes no recipients and cannot be sent again.
    let (status, _) = env
        .app
        .call(
            Method::POST,
            &recipients,
            wrap(json!({"recipients": [template_item("+14155550199")]})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = env
        .app
        .call(Method::POST, &format!("{BROADCASTS}/{id}/send"), None)
        .await;
    assert_eq!(status, 409);
    let (status, list) = env.app.get(BROADCASTS).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], id.as_str());
}

async fn what_is_refused(backend: Backend) {
    let env = start(backend).await;
    // Another project sees neither the number nor the broadcast.
    let (status, body) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            wrap(json!({"phone_number_id": PNID})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let (_, other) = env.app.other_project().await;
    let (status, _) = env
        .app
        .call_with_key(&other, Method::GET, &format!("{BROADCASTS}/{id}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = env
        .app
        .call_with_key(
            &other,
            Method::POST,
            BROADCASTS,
            wrap(json!({"phone_number_id": PNID})),
        )
        .await;
    assert_eq!(status, 404);
    for path in [
        format!("{BROADCASTS}/not-a-uuid"),
        format!("{BROADCASTS}/{}", uuid::Uuid::now_v7()),
    ] {
        assert_eq!(env.app.get(&path).await.0, 404);
    }
    // Without a template, items are whole send bodies; template items are refused.
    let (status, body) = env
        .app
        .call(
            Method::POST,
            &format!("{BROADCASTS}/{id}/recipients"),
            wrap(json!({"recipients": [template_item("+14155550101")]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    for bad in [
        json!({"to": "+14155550101"}),
        json!({"to": "+14155550101", "type": "text"}),
        json!([1]),
    ] {
        let (status, body) = env
            .app
            .call(
                Method::POST,
                &format!("{BROADCASTS}/{id}/recipients"),
                wrap(json!({"recipients": [bad]})),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains("recipients[0]"), "{body}");
    }
    let (status, _) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            Some(json!({"name": "no wrapper"})),
        )
        .await;
    assert!(status == 400 || status == 422);
    // Lifecycle: schedule, cancel, 409s.
    let (status, _) = env
        .app
        .call(
            Method::POST,
            &format!("{BROADCASTS}/{id}/schedule"),
            wrap(json!({"scheduled_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, body) = env
        .app
        .call(
            Method::POST,
            &format!("{BROADCASTS}/{id}/schedule"),
            wrap(json!({"scheduled_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "scheduled");
    assert_eq!(
        env.app
            .call(Method::POST, &format!("{BROADCASTS}/{id}/stop"), None)
            .await
            .0,
        409
    );
    let (status, body) = env
        .app
        .call(Method::POST, &format!("{BROADCASTS}/{id}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "draft");
    assert_eq!(
        env.app
            .call(Method::POST, &format!("{BROADCASTS}/{id}/cancel"), None)
            .await
            .0,
        409
    );

    // A template Meta paused: the broadcast is refused before anything is sent.
    env.inject(
        "events/message_template_status_update",
        json!({"phone_number_id": PNID, "value": {"event": "PAUSED", "message_template_name": "hello_world", "message_template_language": "en_US", "message_template_id": 1}}),
    )
    .await;
    eventually(Duration::from_secs(10), "the paused template refused", || async {
        let (status, body) = env
            .app
            .call(Method::POST, BROADCASTS, wrap(json!({"phone_number_id": PNID, "template": {"name": "hello_world", "language": "en_US"}})))
            .await;
        (status == 422).then_some(body)
    })
    .await;
}

async fn retryable_errors_are_retried_and_permanent_ones_fail(backend: Backend) {
    let env = start(backend).await;
    // Meta's throughput: one a second here, so most first attempts get 130429 and are retried.
    env.knobs(json!({"limits": {"enabled": true, "standard_mps": 1}}))
        .await;
    let items: Vec<Value> = (0..3)
        .map(|i| json!({"to": format!("4474000{i:03}"), "type": "text", "text": {"body": "retry"}}))
        .collect();
    let (status, body) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            wrap(json!({"phone_number_id": PNID, "recipients": items})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(done["sent_count"], 3, "{done}");
    let (_, list) = env.app.get(&format!("{BROADCASTS}/{id}/recipients")).await;
    let attempts: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempts"].as_i64().unwrap())
        .collect();
    assert!(attempts.iter().any(|a| *a > 1), "{list}");

    // A permanent error (368, the account restricted) fails the recipient with Meta's error,
    // after one attempt; a broadcast that sent nothing ends failed.
    env.knobs(json!({"limits": {"enabled": false}, "fail_sends_with": 368}))
        .await;
    let (status, body) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            wrap(json!({"phone_number_id": PNID, "recipients": [
            {"to": "4475000001", "type": "text", "text": {"body": "no"}}]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let done = wait_status(&env, &id, "failed").await;
    assert_eq!(done["failed_count"], 1, "{done}");
    let (_, list) = env.app.get(&format!("{BROADCASTS}/{id}/recipients")).await;
    assert_eq!(list["data"][0]["status"], "failed");
    assert_eq!(list["data"][0]["attempts"], 1);
    assert_eq!(list["data"][0]["error"]["code"], 368, "{list}");
}

async fn stop_leaves_the_rest_pending(backend: Backend) {
    let env = start(backend).await;
    let (status, _) = env
        .app
        .call(
            Method::PATCH,
            &format!("/platform/v1/whatsapp/phone_numbers/{PNID}/pacing"),
            Some(json!({"pacing_rate": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"to": format!("4476000{i:03}"), "type": "text", "text": {"body": "slow"}}))
        .collect();
    let (status, body) = env
        .app
        .call(
            Method::POST,
            BROADCASTS,
            wrap(json!({"phone_number_id": PNID, "recipients": items})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = env
        .app
        .call(Method::POST, &format!("{BROADCASTS}/{id}/stop"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "stopped");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_then = template_sends(&env).await.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        template_sends(&env).await.len(),
        sent_then,
        "sends went on after the stop"
    );
    let b = status_of(&env, &id).await;
    assert!(b["pending_count"].as_i64().unwrap() > 0, "{b}");
    assert_eq!(b["status"], "stopped");
    assert_eq!(
        env.app
            .call(Method::POST, &format!("{BROADCASTS}/{id}/stop"), None)
            .await
            .0,
        409
    );
}

crate::both_backends!(backend:
    a_broadcast_goes_from_draft_to_completed,
    what_is_refused,
    retryable_errors_are_retried_and_permanent_ones_fail,
    stop_leaves_the_rest_pending
);
