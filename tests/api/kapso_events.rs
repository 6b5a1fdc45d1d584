//! Kapso-format webhook events end to end: the emulator plays Meta (inbound messages, statuses),
//! wagate stores them and delivers Kapso's v2 events to webhook resources, and a receiver checks
//! bodies, headers and signatures (with an HMAC computed here, independently of wagate).

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use wagate::config::Backend;
use wagate::store::StoreInspect as _;

use crate::common::receiver::{Hit, Hook, Reply};
use crate::ingest::{wamid_of, Env, PNID};

const NUMBER_EVENTS: [&str; 8] = [
    "whatsapp.message.received",
    "whatsapp.message.sent",
    "whatsapp.message.delivered",
    "whatsapp.message.read",
    "whatsapp.message.failed",
    "whatsapp.conversation.created",
    "whatsapp.conversation.ended",
    "whatsapp.conversation.inactive",
];

/// A created webhook: its id and the `secret_key` shown once.
pub struct Created {
    pub id: String,
    pub secret: String,
}

/// Creates a webhook (`path`: the number's or the project's collection) and returns it.
pub async fn create_webhook(app: &crate::common::TestApp, path: &str, body: Value) -> Created {
    let (status, answer) = app
        .call(
            Method::POST,
            path,
            Some(json!({ "whatsapp_webhook": body })),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let data = answer["data"].clone();
    Created {
        id: data["id"].as_str().unwrap().to_owned(),
        secret: data["secret_key"]
            .as_str()
            .expect("secret_key shown on create")
            .to_owned(),
    }
}

fn number_webhooks() -> String {
    format!("/platform/v1/whatsapp/phone_numbers/{PNID}/webhooks")
}

/// Lower-case hex HMAC-SHA256, written here so the check does not share wagate's code.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts a Kapso delivery's headers: event name, signature over the exact bytes, version.
pub fn assert_signed(hit: &Hit, secret: &str, event: &str) {
    assert_eq!(hit.header("x-webhook-event"), event);
    assert_eq!(
        hit.header("x-webhook-signature"),
        hmac_hex(secret, &hit.body)
    );
    assert_eq!(hit.header("x-webhook-payload-version"), "v2");
    assert!(!hit.header("x-idempotency-key").is_empty());
    assert_eq!(hit.header("content-type"), "application/json");
}

fn events_of(hits: &[Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| h.header("x-webhook-event").to_owned())
        .collect()
}

/// Waits until the receiver holds a request for `event`, and returns it.
async fn wait_event(hook: &Hook, event: &str) -> Hit {
    crate::common::eventually(Duration::from_secs(20), event, || async {
        hook.hits().into_iter().find(|h| {
            h.headers
                .get("x-webhook-event")
                .and_then(|v| v.to_str().ok())
                == Some(event)
        })
    })
    .await
}

async fn message_and_conversation_events(backend: Backend) {
    let env = Env::start(backend).await;
    let all = Hook::start().await;
    let reads = Hook::start().await;
    let hook = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": all.url, "events": NUMBER_EVENTS, "headers": {"X-Webhook-Source": "kapso"}}),
    )
    .await;
    let only_reads = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": reads.url, "events": ["whatsapp.message.read"]}),
    )
    .await;

    // Inbound: the conversation opens, then the message is received.
    let envelope = env
        .inbound(json!({"from": "15551234567", "profile_name": "Ada", "type": "text", "text": {"body": "Hello"}}))
        .await;
    let wamid = wamid_of(&envelope);
    let created = wait_event(&all, "whatsapp.conversation.created").await;
    assert_signed(&created, &hook.secret, "whatsapp.conversation.created");
    assert_eq!(created.header("x-webhook-source"), "kapso");
    let body = created.json();
    assert_eq!(body["phone_number_id"], PNID);
    assert_eq!(body["conversation"]["status"], "active");
    assert_eq!(body["conversation"]["phone_number"], "15551234567");

    let received = wait_event(&all, "whatsapp.message.received").await;
    assert_signed(&received, &hook.secret, "whatsapp.message.received");
    let body = received.json();
    assert_eq!(body["message"]["id"], wamid.as_str());
    assert_eq!(body["message"]["text"]["body"], "Hello");
    let kapso = &body["message"]["kapso"];
    assert_eq!(kapso["direction"], "inbound");
    assert_eq!(kapso["status"], "received");
    assert_eq!(kapso["content"], "Hello");
    assert_eq!(kapso["has_media"], false);
    assert_eq!(body["conversation"]["kapso"]["messages_count"], 1);
    assert_eq!(
        body["conversation"]["kapso"]["last_message_id"],
        wamid.as_str()
    );
    assert_eq!(body["conversation"]["kapso"]["contact_name"], "Ada");
    assert_eq!(body["is_new_conversation"], true);
    assert_eq!(body["phone_number_id"], PNID);
    // The received message's processing follows this delivery.
    env.wait_message(&wamid, |m| m.processing_status == "completed")
        .await;

    // Outbound through the proxy: Meta's sent, delivered and read become three events whose
    // message carries every status so far.
    let sent = env.send_text("15551234567").await;
    for (event, count) in [
        ("whatsapp.message.sent", 1),
        ("whatsapp.message.delivered", 2),
        ("whatsapp.message.read", 3),
    ] {
        let hit = wait_event(&all, event).await;
        assert_signed(&hit, &hook.secret, event);
        let body = hit.json();
        assert_eq!(body["message"]["id"], sent.as_str());
        assert_eq!(body["message"]["kapso"]["direction"], "outbound");
        let statuses = body["message"]["kapso"]["statuses"].as_array().unwrap();
        assert_eq!(statuses.len(), count, "{body}");
        assert_eq!(body["is_new_conversation"], false);
        assert_eq!(body["conversation"]["kapso"]["messages_count"], 2);
    }
    // The filter: the read-only webhook got exactly the read event, signed with its own key.
    let read = reads.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events_of(&reads.hits()), ["whatsapp.message.read"]);
    assert_signed(&read[0], &only_reads.secret, "whatsapp.message.read");
    // One delivery per (event, webhook): idempotency keys never repeat.
    let mut keys: Vec<String> = all
        .hits()
        .iter()
        .map(|h| h.header("x-idempotency-key").to_owned())
        .collect();
    let total = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total);

    // Deliveries name their webhook in the delivery log.
    let (status, log) = env
        .app
        .get("/platform/v1/webhook_deliveries?status=succeeded")
        .await;
    assert_eq!(status, 200);
    assert!(log["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["webhook_id"] == hook.id.as_str() && d["event"] == "whatsapp.message.received"));
}

async fn failed_sends_announce_failure_with_errors(backend: Backend) {
    let env = Env::start(backend).await;
    let hook_receiver = Hook::start().await;
    let hook = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": hook_receiver.url, "events": ["whatsapp.message.failed"]}),
    )
    .await;
    env.http
        .post(format!("{}/_sandbox/knobs", env.sandbox_url))
        .json(&json!({"fail_sends_with": 131047}))
        .send()
        .await
        .unwrap();
    let wamid = env.send_text("15551234567").await;
    let hit = wait_event(&hook_receiver, "whatsapp.message.failed").await;
    assert_signed(&hit, &hook.secret, "whatsapp.message.failed");
    let body = hit.json();
    assert_eq!(body["message"]["id"], wamid.as_str());
    assert_eq!(body["message"]["kapso"]["status"], "failed");
    let statuses = body["message"]["kapso"]["statuses"].as_array().unwrap();
    let failed = statuses.last().unwrap();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"][0]["code"], 131047);
}

async fn buffered_messages_arrive_in_batches(backend: Backend) {
    let env = Env::start(backend).await;
    let receiver = Hook::start().await;
    let hook = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": receiver.url, "events": ["whatsapp.message.received"],
               "buffer_enabled": true, "buffer_window_seconds": 2, "max_buffer_size": 3}),
    )
    .await;
    let started = std::time::Instant::now();
    for i in 0..5 {
        env.inbound(
            json!({"from": "15551234567", "type": "text", "text": {"body": format!("part {i}")}}),
        )
        .await;
    }
    // Three fill a batch at once; the other two wait for their window.
    let first = receiver.wait_for(1, Duration::from_secs(10)).await;
    let batch = first[0].json();
    assert_signed(&first[0], &hook.secret, "whatsapp.message.received");
    assert_eq!(first[0].header("x-webhook-batch"), "true");
    assert_eq!(first[0].header("x-batch-size"), "3");
    assert_eq!(batch["type"], "whatsapp.message.received");
    assert_eq!(batch["batch"], true);
    let texts = |batch: &Value| -> Vec<String> {
        batch["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["message"]["text"]["body"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(&batch), ["part 0", "part 1", "part 2"]);
    assert_eq!(batch["data"][0]["phone_number_id"], PNID);
    let hits = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the rest waited for the window"
    );
    assert_eq!(hits[1].header("x-batch-size"), "2");
    assert_eq!(texts(&hits[1].json()), ["part 3", "part 4"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.hits().len(), 2, "nothing sent twice");
}

/// A restart inside a window: the instance that buffered the events stops delivering (as if it
/// died), another one on the same database sends the batch, once.
async fn buffered_events_survive_a_restart(backend: Backend) {
    let env = Env::start_with(backend, |config| config.workers.delivery = false).await;
    let receiver = Hook::start().await;
    create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": receiver.url, "events": ["whatsapp.message.received"],
               "buffer_enabled": true, "buffer_window_seconds": 1, "max_buffer_size": 10}),
    )
    .await;
    for i in 0..2 {
        env.inbound(
            json!({"from": "15551234567", "type": "text", "text": {"body": format!("kept {i}")}}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receiver.hits().is_empty(),
        "the first instance delivers nothing"
    );

    let mut config = (*env.app.config).clone();
    config.workers.delivery = true;
    // Each instance locks its own spill file.
    config.writer.spill_path += ".second";
    let second = wagate::App::build(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(second.run(async move {
        let _ = stopped.await;
    }));
    let hits = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(hits[0].header("x-batch-size"), "2");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hits().len(), 1, "the batch went once");
    let _ = stop.send(());
}

async fn inactivity_fires_once_per_quiet_period(backend: Backend) {
    let env = Env::start(backend).await;
    let quick = Hook::start().await;
    let slow = Hook::start().await;
    let one = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": quick.url, "events": ["whatsapp.conversation.inactive"], "inactivity_minutes": 1}),
    )
    .await;
    create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": slow.url, "events": ["whatsapp.conversation.inactive"], "inactivity_minutes": 5}),
    )
    .await;
    let envelope = env
        .inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "anyone?"}}))
        .await;
    let wamid = wamid_of(&envelope);
    let store = env.app.store.clone();
    let numbers = env.app.state.numbers.clone();
    let sweep = |minutes: i64| {
        let (store, numbers) = (store.clone(), numbers.clone());
        async move {
            let now = wagate::store::now() + chrono::Duration::minutes(minutes);
            wagate::domain::webhooks::sweeps::fire_inactive(&store, &numbers, now)
                .await
                .unwrap()
        }
    };
    // The test owns the clock: each sweep is told what time it is.
    assert_eq!(sweep(0).await, 0, "not quiet yet");
    // Two instances sweeping at the same moment fire it once.
    let (a, b) = tokio::join!(sweep(2), sweep(2));
    assert_eq!(a + b, 1);
    let hit = quick.wait_for(1, Duration::from_secs(10)).await;
    assert_signed(&hit[0], &one.secret, "whatsapp.conversation.inactive");
    let body = hit[0].json();
    assert_eq!(body["inactivity"]["minutes"], 1);
    assert_eq!(body["since_message"]["whatsapp_message_id"], wamid.as_str());
    assert_eq!(body["since_message"]["direction"], "inbound");
    assert_eq!(body["conversation"]["status"], "active");
    assert_eq!(body["phone_number_id"], PNID);
    assert_eq!(sweep(3).await, 0, "once per quiet period");
    assert!(
        slow.hits().is_empty(),
        "the 5-minute webhook waits for its own threshold"
    );
    assert_eq!(sweep(6).await, 1);
    slow.wait_for(1, Duration::from_secs(10)).await;

    // A new message starts a new quiet period, which fires again.
    env.send_text("15551234567").await;
    crate::common::eventually(Duration::from_secs(10), "the reply counted", || async {
        let conversations = env.app.store.conversations_of(env.number).await.unwrap();
        (conversations[0].messages_count == 2).then_some(())
    })
    .await;
    assert_eq!(sweep(2).await, 1);
    quick.wait_for(2, Duration::from_secs(10)).await;
}

async fn failing_webhooks_pause_and_resume(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.delivery.pause_after_failures = 3;
        config.delivery.backoff_initial = Duration::from_millis(50);
        config.delivery.backoff_max = Duration::from_millis(100);
        config.delivery.jitter = 0.0;
    })
    .await;
    let receiver = Hook::start().await;
    receiver.always(Reply::status(500));
    let hook = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": receiver.url, "events": ["whatsapp.message.received"]}),
    )
    .await;
    let path = format!("{}/{}", number_webhooks(), hook.id);
    env.inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "one"}}))
        .await;
    let paused =
        crate::common::eventually(Duration::from_secs(20), "the webhook paused", || async {
            let (_, body) = env.app.get(&path).await;
            (body["data"]["active"] == false).then_some(body["data"].clone())
        })
        .await;
    assert!(paused["paused_reason"]
        .as_str()
        .unwrap()
        .contains("3 consecutive failed deliveries"));
    assert_eq!(receiver.hits().len(), 3);
    // Events while paused are held, not sent and not lost.
    env.inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "two"}}))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.hits().len(),
        3,
        "a paused webhook receives nothing"
    );

    receiver.always(Reply::ok());
    let (status, resumed) = env
        .app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"whatsapp_webhook": {"active": true}})),
        )
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["data"]["active"], true);
    assert_eq!(resumed["data"]["paused_reason"], Value::Null);
    let texts =
        crate::common::eventually(Duration::from_secs(20), "held deliveries sent", || async {
            let ok: Vec<String> = receiver
                .hits()
                .iter()
                .filter(|h| h.answered == 200)
                .map(|h| {
                    h.json()["message"]["text"]["body"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            (ok.len() >= 2).then_some(ok)
        })
        .await;
    let mut texts = texts;
    texts.sort();
    assert_eq!(texts, ["one", "two"]);
}

async fn meta_and_kapso_webhooks_side_by_side(backend: Backend) {
    let env = Env::start(backend).await;
    let meta = Hook::start().await;
    let kapso = Hook::start().await;
    env.forward_to(&meta.url).await;
    let (_, list) = env.app.get(&number_webhooks()).await;
    let meta_hook = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "meta")
        .cloned()
        .expect("the destination URL is the number's meta webhook");
    assert_eq!(meta_hook["url"], meta.url.as_str());
    create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": kapso.url, "events": ["whatsapp.message.received"]}),
    )
    .await;
    env.inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "both"}}))
        .await;
    let raw = meta.wait_for(1, Duration::from_secs(10)).await;
    let kapso_hit = kapso.wait_for(1, Duration::from_secs(10)).await;
    // Meta's payload as Meta sent it, with Meta's signature header; Kapso's event beside it.
    assert!(raw[0].json()["entry"][0]["changes"][0]["value"]["messages"].is_array());
    assert!(raw[0].headers.contains_key("x-hub-signature-256"));
    assert!(!raw[0].headers.contains_key("x-webhook-event"));
    assert_eq!(kapso_hit[0].json()["message"]["text"]["body"], "both");
}

async fn idle_conversations_end_with_an_event(backend: Backend) {
    let env = Env::start(backend).await;
    let receiver = Hook::start().await;
    let hook = create_webhook(
        &env.app,
        &number_webhooks(),
        json!({"url": receiver.url, "events": ["whatsapp.conversation.ended"]}),
    )
    .await;
    env.inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "bye"}}))
        .await;
    let (store, numbers) = (&env.app.store, &env.app.state.numbers);
    let now = wagate::store::now();
    let ended =
        |cutoff, now| wagate::domain::webhooks::sweeps::end_idle(store, numbers, cutoff, now);
    assert_eq!(
        ended(now - chrono::Duration::hours(1), now).await.unwrap(),
        0
    );
    // A day later (the test's clock), the idle conversation ends and says so.
    let later = now + chrono::Duration::hours(25);
    assert_eq!(
        ended(later - chrono::Duration::hours(24), later)
            .await
            .unwrap(),
        1
    );
    let hit = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_signed(&hit[0], &hook.secret, "whatsapp.conversation.ended");
    let body = hit[0].json();
    assert_eq!(body["conversation"]["status"], "ended");
    assert_eq!(body["phone_number_id"], PNID);
    assert_eq!(
        ended(later - chrono::Duration::hours(24), later)
            .await
            .unwrap(),
        0
    );
}

async fn connection_events_reach_project_webhooks_only(backend: Backend) {
    let app = crate::common::TestApp::spawn(backend).await;
    let receiver = Hook::start().await;
    let hook = create_webhook(
        &app,
        "/platform/v1/whatsapp/webhooks",
        json!({"url": receiver.url, "events": ["whatsapp.phone_number.created", "whatsapp.phone_number.deleted"]}),
    )
    .await;
    let number = app
        .connect(&app.api_key, "100000000000042", "200000000000042", None)
        .await;
    let created = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_signed(&created[0], &hook.secret, "whatsapp.phone_number.created");
    assert_eq!(created[0].json()["phone_number_id"], number.pnid.as_str());
    assert_eq!(
        created[0].json()["project"]["id"],
        app.project_id.to_string()
    );
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/platform/v1/whatsapp/phone_numbers/{}", number.pnid),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let hits = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_signed(&hits[1], &hook.secret, "whatsapp.phone_number.deleted");
    assert_eq!(hits[1].json()["phone_number_id"], number.pnid.as_str());
}

async fn a_slow_webhook_never_delays_another(backend: Backend) {
    let env = Env::start(backend).await;
    // The slow receiver holds every answer longer than the fast one's deadline below: if its
    // deliveries held the fast one's back, the fast receiver could not get its three in time.
    let slow = Hook::start().await;
    slow.always(Reply::ok().after(Duration::from_secs(40)));
    let fast = Hook::start().await;
    for hook in [&slow, &fast] {
        create_webhook(
            &env.app,
            &number_webhooks(),
            json!({"url": hook.url, "events": ["whatsapp.message.received"]}),
        )
        .await;
    }
    for i in 0..3 {
        env.inbound(
            json!({"from": format!("1555123450{i}"), "type": "text", "text": {"body": "hi"}}),
        )
        .await;
    }
    fast.wait_for(3, Duration::from_secs(20)).await;
    // One event, one delivery per webhook: the slow one gets its three too.
    slow.wait_for(3, Duration::from_secs(20)).await;
}

crate::both_backends!(backend:
    a_slow_webhook_never_delays_another,
    idle_conversations_end_with_an_event,
    connection_events_reach_project_webhooks_only,
    message_and_conversation_events,
    failed_sends_announce_failure_with_errors,
    buffered_messages_arrive_in_batches,
    buffered_events_survive_a_restart,
    inactivity_fires_once_per_quiet_period,
    failing_webhooks_pause_and_resume,
    meta_and_kapso_webhooks_side_by_side,
);
