//! What Meta reports about a number beyond messages (#21 items 2, 7 and 10), driven by the
//! emulator: the phone-number object's values from Graph, the periodic refresh and the webhooks
//! that announce changes; the pricing ledger and the usage route; template and account state,
//! and the sends the proxy then answers itself without calling Meta.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::common::eventually;
use crate::common::receiver::Hook;
use crate::ingest::{Env, PNID, WABA};

const V: &str = "/meta/whatsapp/v24.0";

async fn number_object(env: &Env) -> Value {
    let (status, body) = env
        .app
        .call(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{PNID}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Waits until the phone-number object's `key` is `want`.
async fn wait_number_value(env: &Env, key: &str, want: Value) {
    eventually(
        Duration::from_secs(15),
        &format!("phone number {key} = {want}"),
        || async { (number_object(env).await[key] == want).then_some(()) },
    )
    .await;
}

async fn event(env: &Env, field: &str, value: Value) -> Value {
    env.inject(
        &format!("events/{field}"),
        json!({"phone_number_id": PNID, "value": value}),
    )
    .await
}

async fn sent_count(env: &Env) -> usize {
    let sent: Value = env
        .http
        .get(format!("{}/_sandbox/sent", env.sandbox_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sent["data"].as_array().map_or(0, Vec::len)
}

/// Sends `body` through the proxy from the test number; Meta's (or wagate's) status and answer.
pub async fn send(env: &Env, body: Value) -> (u16, Value) {
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{PNID}/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn number_values_follow_graph_webhooks_and_refresh(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.graph.number_refresh_interval = Duration::from_secs(1);
    })
    .await;
    // At connect, from Graph: the emulator's number is registered (PIN on), standard throughput,
    // a 1K limit (an integer on the object, as Kapso's), no official badge.
    let number = number_object(&env).await;
    assert_eq!(number["throughput_tier"], "STANDARD", "{number}");
    assert_eq!(number["whatsapp_business_manager_messaging_limit"], 1000);
    assert_eq!(number["is_official_business_account"], false);
    assert_eq!(number["is_pin_enabled"], true);
    assert_eq!(number["webhook_verified_at"], Value::Null);
    assert_eq!(number["account_state"], Value::Null);
    assert_eq!(number["blocked_templates"], json!([]));

    // The webhooks that announce changes apply at once.
    event(
        &env,
        "phone_number_quality_update",
        json!({"event": "UPGRADE", "old_limit": "TIER_1K", "max_daily_conversations_per_business": "TIER_10K"}),
    )
    .await;
    wait_number_value(
        &env,
        "whatsapp_business_manager_messaging_limit",
        json!(10000),
    )
    .await;
    event(
        &env,
        "phone_number_quality_update",
        json!({"event": "THROUGHPUT_UPGRADE", "current_limit": "TIER_UNLIMITED"}),
    )
    .await;
    wait_number_value(&env, "throughput_tier", json!("HIGH")).await;
    assert_eq!(
        number_object(&env).await["whatsapp_business_manager_messaging_limit"],
        10000,
        "a throughput upgrade leaves the messaging limit alone"
    );
    event(&env, "account_update", json!({"event": "VERIFIED_ACCOUNT"})).await;
    wait_number_value(&env, "is_official_business_account", json!(true)).await;

    // A change Meta makes without telling wagate (the webhook is not delivered) arrives with
    // the periodic refresh, from Graph.
    let built = env
        .http
        .post(format!(
            "{}/_sandbox/events/phone_number_quality_update",
            env.sandbox_url
        ))
        .json(&json!({"phone_number_id": PNID, "deliver": false,
            "value": {"event": "UPGRADE", "max_daily_conversations_per_business": "TIER_100K"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(built.status(), 200);
    wait_number_value(
        &env,
        "whatsapp_business_manager_messaging_limit",
        json!(100000),
    )
    .await;

    // The first delivery the number's webhook accepts stamps webhook_verified_at.
    let hook = Hook::start().await;
    env.forward_to(&hook.url).await;
    env.inbound(json!({"from": "15550001111", "type": "text", "text": {"body": "hi"}}))
        .await;
    hook.wait_for(1, Duration::from_secs(15)).await;
    eventually(Duration::from_secs(15), "webhook_verified_at", || async {
        number_object(&env).await["webhook_verified_at"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
}

async fn pin_of(env: &Env, pnid: &str) -> Value {
    let (_, body) = env
        .app
        .call(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{pnid}"),
            None,
        )
        .await;
    body["data"]["is_pin_enabled"].clone()
}

async fn registering_with_a_pin_turns_is_pin_enabled_on(backend: Backend) {
    let env = Env::start(backend).await;
    // A second emulator number, not registered yet: Graph says its PIN is off.
    let pnid = "100000000000007";
    let response = env
        .http
        .post(format!("{}/_sandbox/numbers", env.sandbox_url))
        .json(&json!({"phone_number_id": pnid, "business_account_id": WABA, "access_token": "tok7", "registered": false}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    env.app
        .connect_number(&env.app.api_key, pnid, WABA, "tok7")
        .await;
    assert_eq!(pin_of(&env, pnid).await, false);
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{pnid}/register"))
        .json(&json!({"messaging_product": "whatsapp", "pin": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    eventually(Duration::from_secs(10), "is_pin_enabled", || async {
        (pin_of(&env, pnid).await == true).then_some(())
    })
    .await;
}

async fn usage(env: &Env, query: &str) -> (u16, Value) {
    env.app
        .call(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{PNID}/usage{query}"),
            None,
        )
        .await
}

async fn status_pricing_feeds_the_usage_ledger(backend: Backend) {
    let env = Env::start(backend).await;
    // Two sends; the emulator sends sent, delivered and read, priced on sent and delivered.
    let first = env.send_text("+15551230001").await;
    let second = env.send_text("+15551230002").await;
    for wamid in [&first, &second] {
        env.wait_message(wamid, |m| m.status == "read").await;
    }
    let today = chrono::Utc::now().date_naive().to_string();
    let (status, body) = usage(&env, "?granularity=day").await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    // Once per message, however many priced statuses arrived.
    assert_eq!(data["total"], 2, "{data}");
    assert_eq!(data["until"], today);
    assert_eq!(data["days"].as_array().unwrap().len(), 1);
    assert_eq!(data["days"][0]["date"], today);
    let by_category = data["by_category"].as_array().unwrap();
    assert_eq!(
        by_category
            .iter()
            .map(|c| c["count"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );
    assert_eq!(
        data["billable"].as_i64().unwrap() + data["free"].as_i64().unwrap(),
        2
    );

    // A hand-made status with Meta's PMP pricing: free customer-service, counted as free.
    let body = serde_json::to_vec(&crate::common::meta::envelope(
        WABA,
        "messages",
        json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
            "statuses": [{"id": "wamid.priced-elsewhere", "status": "sent", "timestamp": chrono::Utc::now().timestamp().to_string(),
                "recipient_id": "15551230003",
                "pricing": {"billable": false, "pricing_model": "PMP", "type": "free_customer_service", "category": "service"}}]}),
    ))
    .unwrap();
    assert_eq!(env.post_signed(&body).await.status(), 200);
    eventually(
        Duration::from_secs(10),
        "the free message counted",
        || async {
            let (_, body) = usage(&env, "").await;
            (body["data"]["total"] == 3).then_some(body)
        },
    )
    .await;
    let (_, body) = usage(&env, "").await;
    let service = body["data"]["by_category"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "service")
        .cloned()
        .unwrap();
    assert_eq!(service["pricing_type"], "free_customer_service");
    assert_eq!(service["billable"], false);
    assert!(env
        .app
        .metrics()
        .await
        .contains("wagate_priced_messages_total{"));

    // Bad ranges are 422s naming the field; another project sees a 404, as for an unknown id.
    let (status, body) = usage(&env, "?granularity=hour").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"][0]["field"], "granularity");
    let (status, body) = usage(&env, "?since=2026-12-05&until=2026-12-01").await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = usage(&env, "?since=yesterday").await;
    assert_eq!(status, 422);
    let (_, other_key) = env.app.other_project().await;
    let (status, _) = env
        .app
        .call_with_key(
            &other_key,
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{PNID}/usage"),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

fn template_send(name: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": "+15551230009", "type": "template",
        "template": {"name": name, "language": {"code": "en_US"}}})
}

async fn paused_templates_and_lost_accounts_are_refused_locally(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, templates) = env
        .app
        .call(Method::GET, &format!("{V}/{WABA}/message_templates"), None)
        .await;
    assert_eq!(status, 200, "{templates}");
    let template_id = templates["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = send(&env, template_send("hello_world")).await;
    assert_eq!(status, 200, "the approved template sends");

    // Meta pauses it: the state is kept per template, shows on the number, and a send with it
    // is answered by wagate in Meta's words without reaching Meta.
    event(&env, "message_template_status_update", json!({"event": "PAUSED",
        "message_template_id": template_id.parse::<u64>().unwrap(), "message_template_name": "hello_world",
        "message_template_language": "en_US", "reason": "LOW_QUALITY"})).await;
    event(
        &env,
        "message_template_quality_update",
        json!({"previous_quality_score": "GREEN",
        "new_quality_score": "RED", "message_template_id": template_id.parse::<u64>().unwrap(),
        "message_template_name": "hello_world", "message_template_language": "en_US"}),
    )
    .await;
    wait_number_value(
        &env,
        "blocked_templates",
        json!([{"language": "en_US", "name": "hello_world", "status": "PAUSED"}]),
    )
    .await;
    let (status, states) = env
        .app
        .call(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{PNID}/templates"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{states}");
    assert_eq!(states["data"][0]["id"], template_id);
    assert_eq!(states["data"][0]["status"], "PAUSED");
    assert_eq!(states["data"][0]["quality_score"], "RED");
    assert_eq!(states["data"][0]["reason"], "LOW_QUALITY");

    // The number caches of every instance converge on the new state; from then on, no call.
    eventually(Duration::from_secs(10), "a local refusal", || async {
        (send(&env, template_send("hello_world")).await.0 == 400).then_some(())
    })
    .await;
    let before = sent_count(&env).await;
    let (status, body) = send(&env, template_send("hello_world")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 132015, "{body}");
    assert_eq!(body["error"]["message"], "(#132015) Template is paused");
    assert!(body["error"]["error_data"]["details"]
        .as_str()
        .unwrap()
        .contains("hello_world"));
    assert_eq!(sent_count(&env).await, before, "Meta was not called");
    // Other sends still go through.
    let (status, _) = send(&env, json!({"messaging_product": "whatsapp", "to": "+15551230009", "type": "text", "text": {"body": "plain"}})).await;
    assert_eq!(status, 200);

    // Reinstated: sends again.
    event(
        &env,
        "message_template_status_update",
        json!({"event": "APPROVED",
        "message_template_id": template_id, "message_template_name": "hello_world",
        "message_template_language": "en_US"}),
    )
    .await;
    wait_number_value(&env, "blocked_templates", json!([])).await;
    eventually(
        Duration::from_secs(10),
        "the template sends again",
        || async { (send(&env, template_send("hello_world")).await.0 == 200).then_some(()) },
    )
    .await;

    // The partner app is uninstalled: every send is refused locally, until it is installed again.
    event(
        &env,
        "account_update",
        json!({"event": "PARTNER_APP_UNINSTALLED",
        "waba_info": {"waba_id": WABA, "owner_business_id": "300000000000001"}}),
    )
    .await;
    wait_number_value(&env, "account_state", json!("partner_app_uninstalled")).await;
    let text = json!({"messaging_product": "whatsapp", "to": "+15551230009", "type": "text", "text": {"body": "x"}});
    eventually(
        Duration::from_secs(10),
        "refused for the account",
        || async { (send(&env, text.clone()).await.0 == 403).then_some(()) },
    )
    .await;
    let before = sent_count(&env).await;
    let (status, body) = send(&env, text.clone()).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], 200, "{body}");
    assert_eq!(sent_count(&env).await, before, "Meta was not called");
    event(
        &env,
        "account_update",
        json!({"event": "PARTNER_APP_INSTALLED",
        "waba_info": {"waba_id": WABA, "owner_business_id": "300000000000001"}}),
    )
    .await;
    wait_number_value(&env, "account_state", Value::Null).await;

    // A ban: Meta's 131031.
    event(
        &env,
        "account_update",
        json!({"event": "DISABLED_UPDATE",
        "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "2026-12-04"}}),
    )
    .await;
    wait_number_value(&env, "account_state", json!("disabled")).await;
    let (status, body) = eventually(Duration::from_secs(10), "refused for the ban", || async {
        let (status, body) = send(&env, template_send("hello_world")).await;
        (body["error"]["code"] == 131031).then_some((status, body))
    })
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        "(#131031) Business Account locked"
    );
}

crate::both_backends!(backend:
    number_values_follow_graph_webhooks_and_refresh,
    registering_with_a_pin_turns_is_pin_enabled_on,
    status_pricing_feeds_the_usage_ledger,
    paused_templates_and_lost_accounts_are_refused_locally
);
