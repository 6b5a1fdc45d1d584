//! Queued sends through the Broadcasts API (#22), against the emulator, on both backends: the
//! lifecycle (draft, recipients, send, progress, per-recipient results with cursors, each send
//! tagged with its recipient and stored like a proxied one, delivery counts), schedule, cancel
//! and stop with their 409s; what is refused (bad items by index, per-call and per-broadcast
//! limits, paused or unknown templates, other projects' broadcasts and numbers); Meta's
//! permanent errors against retryable ones (retried with backoff until sent, or until
//! `pacing.max_attempts`); and that a status names only a recipient that was really sent.

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
        config.pacing.max_recipients = 10;
    })
    .await
}

/// `POST {BROADCASTS}{path}` with `body` in Kapso's `whatsapp_broadcast` wrapper (none if null).
async fn post(env: &Env, path: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then(|| json!({ "whatsapp_broadcast": body }));
    env.app
        .call(Method::POST, &format!("{BROADCASTS}{path}"), body)
        .await
}

fn template_item(phone: &str) -> Value {
    json!({"phone_number": phone, "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]})
}

fn text_item(to: &str) -> Value {
    json!({"to": to, "type": "text", "text": {"body": "hi"}})
}

/// A draft from the test number, with the `hello_world` template or (`false`) without one.
async fn draft(env: &Env, template: bool) -> String {
    let mut input = json!({"name": "July promo", "phone_number_id": PNID});
    if template {
        input["template"] = json!({"name": "hello_world", "language": "en_US"});
    }
    let (status, body) = post(env, "", input).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// Creates a broadcast with its recipients (whole send bodies), which starts it.
async fn start_raw(env: &Env, items: Vec<Value>) -> String {
    let (status, body) = post(
        env,
        "",
        json!({"phone_number_id": PNID, "recipients": items}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "sending");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn status_of(env: &Env, id: &str) -> Value {
    let (status, body) = env.app.get(&format!("{BROADCASTS}/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn wait_status(env: &Env, id: &str, want: &str) -> Value {
    let what = format!("broadcast {want}");
    eventually(Duration::from_secs(30), &what, || async {
        let b = status_of(env, id).await;
        (b["status"] == want).then_some(b)
    })
    .await
}

async fn recipients_of(env: &Env, id: &str, query: &str) -> Vec<Value> {
    let path = format!("{BROADCASTS}/{id}/recipients{query}");
    let (status, list) = env.app.get(&path).await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

/// The sends the emulator accepted that carry a `biz_opaque_callback_data` (broadcast sends).
async fn broadcast_sends(env: &Env) -> Vec<Value> {
    let url = format!("{}/_sandbox/sent", env.sandbox_url);
    let sent: Value = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = sent["data"].as_array().unwrap().iter();
    sent.filter(|m| m["request"]["biz_opaque_callback_data"].is_string())
        .cloned()
        .collect()
}

async fn a_broadcast_goes_from_draft_to_completed(backend: Backend) {
    let env = start(backend).await;
    let id = draft(&env, true).await;
    let b = status_of(&env, &id).await;
    assert_eq!(b["status"], "draft");
    assert_eq!(b["whatsapp_template"]["name"], "hello_world");
    let recipients = format!("/{id}/recipients");

    // Three new ones and a duplicate.
    let items = json!({"recipients": [template_item("+14155550101"), template_item("+14155550102"),
        template_item("+1 415 555 0103"), template_item("+14155550101")]});
    let (status, body) = post(&env, &recipients, items).await;
    assert_eq!(status, 200, "{body}");
    let want = json!({"added": 3, "duplicates": 1, "errors": []});
    assert_eq!(body["data"], want);
    // A bad item refuses the whole call, naming it: the good item before it is not stored.
    let bad = json!({"recipients": [template_item("+14155550104"), {"phone_number": "call me"}]});
    let (status, body) = post(&env, &recipients, bad).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("recipients[1]"), "{body}");
    assert_eq!(status_of(&env, &id).await["total_recipients"], 3);
    // The broadcast may hold ten (pacing.max_recipients here): eight more are refused.
    let eight: Vec<Value> = (0..8)
        .map(|i| template_item(&format!("+1415555020{i}")))
        .collect();
    let (status, body) = post(&env, &recipients, json!({ "recipients": eight })).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("max_recipients"), "{body}");

    let (status, body) = post(&env, &format!("/{id}/send"), Value::Null).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "sending");
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(done["sent_count"], 3, "{done}");
    assert_eq!(done["pending_count"], 0);
    assert!(done["completed_at"].is_string());

    // Meta got three sends of the template with its components.
    let sent = broadcast_sends(&env).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    for message in &sent {
        let template = &message["request"]["template"];
        assert_eq!(template["name"], "hello_world");
        assert_eq!(template["components"][0]["parameters"][0]["text"], "Ana");
    }

    // Per-recipient results, two at a time, in the order added.
    let path = format!("{BROADCASTS}{recipients}");
    let (status, page) = env.app.get(&format!("{path}?limit=2")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["phone_number"], "14155550101");
    assert_eq!(page["data"][0]["status"], "sent");
    assert!(page["paging"]["next"].is_string(), "{page}");
    let after = page["paging"]["cursors"]["after"].as_str().unwrap();
    let (_, next) = env.app.get(&format!("{path}?limit=2&after={after}")).await;
    assert_eq!(next["data"].as_array().unwrap().len(), 1);
    assert_eq!(next["data"][0]["phone_number"], "14155550103");
    assert!(next["paging"]["next"].is_null());
    assert_eq!(env.app.get(&format!("{path}?status=lost")).await.0, 400);
    // Each recipient was sent exactly once, to its number, tagged with its own id.
    for r in recipients_of(&env, &id, "").await {
        let tag = format!("wagate:broadcast:{}", r["id"].as_str().unwrap());
        let mine: Vec<&Value> = sent
            .iter()
            .filter(|m| m["request"]["biz_opaque_callback_data"] == tag.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{r} in {sent:?}");
        assert_eq!(mine[0]["request"]["to"], r["phone_number"]);
        assert_eq!(mine[0]["id"], r["wamid"]);
    }

    // Recorded like proxied sends, and Meta's statuses reach the counts.
    eventually(
        Duration::from_secs(15),
        "sends stored and delivered",
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
    let more = json!({"recipients": [template_item("+14155550199")]});
    assert_eq!(post(&env, &recipients, more).await.0, 409);
    assert_eq!(post(&env, &format!("/{id}/send"), Value::Null).await.0, 409);
    let (status, list) = env.app.get(BROADCASTS).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["id"], id.as_str());
}

async fn what_is_refused(backend: Backend) {
    let env = start(backend).await;
    let id = draft(&env, false).await;
    // Another project sees neither the number nor the broadcast; a malformed or unknown id is
    // the same 404.
    let (_, other) = env.app.other_project().await;
    let path = format!("{BROADCASTS}/{id}");
    let (status, _) = env
        .app
        .call_with_key(&other, Method::GET, &path, None)
        .await;
    assert_eq!(status, 404);
    let create = Some(json!({"whatsapp_broadcast": {"phone_number_id": PNID}}));
    let (status, _) = env
        .app
        .call_with_key(&other, Method::POST, BROADCASTS, create)
        .await;
    assert_eq!(status, 404);
    for path in [
        format!("{BROADCASTS}/not-a-uuid"),
        format!("{BROADCASTS}/{}", uuid::Uuid::now_v7()),
    ] {
        assert_eq!(env.app.get(&path).await.0, 404);
    }
    // Without a template, items are whole send bodies; template items are refused.
    let recipients = format!("/{id}/recipients");
    let items = json!({"recipients": [template_item("+14155550101")]});
    assert_eq!(post(&env, &recipients, items).await.0, 422);
    for bad in [
        json!({"to": "+14155550101"}),
        json!({"to": "+14155550101", "type": "text"}),
        json!([1]),
    ] {
        let (status, body) = post(&env, &recipients, json!({ "recipients": [bad] })).await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains("recipients[0]"), "{body}");
    }
    // More than 1000 in one call, whatever room the broadcast has.
    let many: Vec<Value> = (0..1001)
        .map(|i| text_item(&format!("+1415666{i:04}")))
        .collect();
    let (status, body) = post(&env, &recipients, json!({ "recipients": many })).await;
    assert_eq!(status, 422, "{body}");
    let unwrapped = Some(json!({"name": "no wrapper"}));
    let (status, _) = env.app.call(Method::POST, BROADCASTS, unwrapped).await;
    assert!(status == 400 || status == 422);

    // Schedule (not in the past), cancel, and the changes the status does not allow.
    let schedule = format!("/{id}/schedule");
    let past = json!({"scheduled_at": "2001-01-01T00:00:00Z"});
    assert_eq!(post(&env, &schedule, past).await.0, 422);
    let future = json!({"scheduled_at": "2099-01-01T00:00:00Z"});
    let (status, body) = post(&env, &schedule, future.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "scheduled");
    assert_eq!(post(&env, &schedule, future).await.0, 409);
    assert_eq!(post(&env, &format!("/{id}/stop"), Value::Null).await.0, 409);
    let (status, body) = post(&env, &format!("/{id}/cancel"), Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "draft");
    assert!(body["data"]["scheduled_at"].is_null(), "{body}");
    assert_eq!(
        post(&env, &format!("/{id}/cancel"), Value::Null).await.0,
        409
    );

    // A template Meta reported may be named by its id; an unknown id is refused.
    let event = |name: &str, id: u64, event: &str| {
        json!({"phone_number_id": PNID, "value": {"event": event, "message_template_name": name,
            "message_template_language": "en_US", "message_template_id": id}})
    };
    let field = "events/message_template_status_update";
    env.inject(field, event("promo", 2, "APPROVED")).await;
    let by_id = json!({"phone_number_id": PNID, "whatsapp_template_id": "2"});
    let b = eventually(Duration::from_secs(10), "the template by id", || async {
        let (status, body) = post(&env, "", by_id.clone()).await;
        (status == 201).then_some(body)
    })
    .await;
    assert_eq!(b["data"]["whatsapp_template"]["name"], "promo", "{b}");
    assert_eq!(b["data"]["whatsapp_template"]["language_code"], "en_US");
    let unknown = json!({"phone_number_id": PNID, "whatsapp_template_id": "999"});
    assert_eq!(post(&env, "", unknown).await.0, 422);
    // A template Meta paused: the broadcast is refused before anything is sent.
    env.inject(field, event("hello_world", 1, "PAUSED")).await;
    let paused =
        json!({"phone_number_id": PNID, "template": {"name": "hello_world", "language": "en_US"}});
    eventually(
        Duration::from_secs(10),
        "the paused template refused",
        || async {
            let (status, body) = post(&env, "", paused.clone()).await;
            (status == 422).then_some(body)
        },
    )
    .await;
}

async fn retryable_errors_are_retried_and_permanent_ones_fail(backend: Backend) {
    let env = start(backend).await;
    // Meta's throughput: one a second here, so most first attempts get 130429 and are retried.
    env.knobs(json!({"limits": {"enabled": true, "standard_mps": 1}}))
        .await;
    let items = (0..3)
        .map(|i| text_item(&format!("4474000{i:03}")))
        .collect();
    let id = start_raw(&env, items).await;
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(done["sent_count"], 3, "{done}");
    let list = recipients_of(&env, &id, "").await;
    assert!(
        list.iter().any(|r| r["attempts"].as_i64().unwrap() > 1),
        "{list:?}"
    );
    env.knobs(json!({"limits": {"enabled": false}})).await;

    // Meta refuses one send for good (a template it does not have: 132001): that recipient
    // fails at its first attempt with Meta's error; the others are sent, so it completes.
    let unknown = json!({"to": "4477000002", "type": "template",
        "template": {"name": "no_such_template", "language": {"code": "en_US"}}});
    let items = vec![text_item("4477000001"), unknown, text_item("4477000003")];
    let id = start_raw(&env, items).await;
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(
        (&done["sent_count"], &done["failed_count"]),
        (&json!(2), &json!(1))
    );
    let failed = recipients_of(&env, &id, "?status=failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["phone_number"], "4477000002");
    assert_eq!(failed[0]["attempts"], 1);
    assert_eq!(failed[0]["error"]["code"], 132001, "{failed:?}");
    assert!(failed[0]["wamid"].is_null());

    // Every send refused for good (368, the account restricted): a broadcast that sent nothing
    // ends failed, each recipient after one attempt with Meta's error.
    env.knobs(json!({"fail_sends_with": 368})).await;
    let id = start_raw(&env, vec![text_item("4475000001"), text_item("4475000002")]).await;
    let done = wait_status(&env, &id, "failed").await;
    assert_eq!(done["failed_count"], 2, "{done}");
    for r in recipients_of(&env, &id, "").await {
        assert_eq!(
            (&r["status"], &r["attempts"]),
            (&json!("failed"), &json!(1)),
            "{r}"
        );
        assert_eq!(r["error"]["code"], 368, "{r}");
    }

    // Meta's own transient failure (131000, HTTP 500) for a while: retried, then sent.
    env.knobs(json!({"fail_sends_with": 131000})).await;
    let id = start_raw(&env, vec![text_item("4478000001"), text_item("4478000002")]).await;
    eventually(
        Duration::from_secs(10),
        "first attempts refused",
        || async {
            // Both listed, both refused: `all` over a list not yet filled would pass at once.
            let list = recipients_of(&env, &id, "").await;
            (list.len() == 2
                && list
                    .iter()
                    .all(|r| r["error"]["code"] == 131000 && r["status"] != "failed"))
            .then_some(())
        },
    )
    .await;
    env.knobs(json!({"fail_sends_with": null})).await;
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(done["sent_count"], 2, "{done}");
    for r in recipients_of(&env, &id, "").await {
        assert_eq!(r["status"], "sent", "{r}");
        assert!(r["attempts"].as_i64().unwrap() > 1, "{r}");
        assert!(r["error"].is_null() && r["wamid"].is_string(), "{r}");
    }

    // One that never clears fails once pacing.max_attempts are used up.
    let env = Env::start_with(backend, |config| {
        config.pacing.poll_interval = Duration::from_millis(100);
        config.pacing.retry_base = Duration::from_millis(100);
        config.pacing.max_attempts = 2;
    })
    .await;
    env.knobs(json!({"fail_sends_with": 131000})).await;
    let id = start_raw(&env, vec![text_item("4479000001")]).await;
    wait_status(&env, &id, "failed").await;
    let list = recipients_of(&env, &id, "").await;
    assert_eq!(list[0]["attempts"], 2, "{list:?}");
    assert_eq!(list[0]["error"]["code"], 131000);
}

async fn stop_leaves_the_rest_pending(backend: Backend) {
    let env = start(backend).await;
    let path = format!("/platform/v1/whatsapp/phone_numbers/{PNID}/pacing");
    let rate = Some(json!({"pacing_rate": 2}));
    assert_eq!(env.app.call(Method::PATCH, &path, rate).await.0, 200);
    let items = (0..10)
        .map(|i| text_item(&format!("4476000{i:03}")))
        .collect();
    let id = start_raw(&env, items).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, body) = post(&env, &format!("/{id}/stop"), Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "stopped");
    assert!(body["data"]["stopped_at"].is_string());
    // A send already on its way may still land; then nothing more leaves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_then = broadcast_sends(&env).await.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_now = broadcast_sends(&env).await.len();
    assert_eq!(sent_now, sent_then, "sends went on after the stop");
    let b = status_of(&env, &id).await;
    assert_eq!(b["status"], "stopped");
    assert!(b["pending_count"].as_i64().unwrap() > 0, "{b}");
    assert_eq!(
        b["sending_count"], 0,
        "claimed ones go back to pending: {b}"
    );
    assert_eq!(b["sent_count"], sent_now, "{b}");
    let counted = b["pending_count"].as_i64().unwrap() + b["sent_count"].as_i64().unwrap();
    assert_eq!(counted, 10, "{b}");
    for change in ["stop", "send", "cancel"] {
        assert_eq!(
            post(&env, &format!("/{id}/{change}"), Value::Null).await.0,
            409
        );
    }
}

async fn a_schedule_starts_it_and_other_projects_see_nothing(backend: Backend) {
    let env = start(backend).await;
    let id = draft(&env, true).await;
    let recipients = format!("/{id}/recipients");
    let one = |phone: &str| json!({"recipients": [template_item(phone)]});
    assert_eq!(post(&env, &recipients, one("+14155550301")).await.0, 200);
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let when = json!({"scheduled_at": at.to_rfc3339()});
    let (status, body) = post(&env, &format!("/{id}/schedule"), when).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "scheduled");
    // Scheduled, it still takes recipients, and nothing leaves before its time.
    let (status, body) = post(&env, &recipients, one("+14155550302")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["added"], 1);
    assert!(broadcast_sends(&env).await.is_empty());
    let done = wait_status(&env, &id, "completed").await;
    assert_eq!(done["sent_count"], 2, "{done}");
    let started = chrono::DateTime::parse_from_rfc3339(done["started_at"].as_str().unwrap());
    assert!(
        started.unwrap() >= at - chrono::Duration::milliseconds(1),
        "{done}"
    );
    assert_eq!(broadcast_sends(&env).await.len(), 2);

    // The list, newest first, one at a time.
    let ids = [
        id.clone(),
        draft(&env, false).await,
        draft(&env, false).await,
    ];
    let (status, first) = env.app.get(&format!("{BROADCASTS}?limit=1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"][0]["id"], ids[2].as_str(), "{first}");
    let after = first["paging"]["cursors"]["after"].as_str().unwrap();
    let path = format!("{BROADCASTS}?limit=1&after={after}");
    let (_, second) = env.app.get(&path).await;
    assert_eq!(second["data"][0]["id"], ids[1].as_str(), "{second}");

    // Another project: every route is the 404 of an unknown broadcast.
    let (_, other) = env.app.other_project().await;
    let body = json!({"whatsapp_broadcast": {"recipients": [template_item("+14155550303")],
        "scheduled_at": "2099-01-01T00:00:00Z"}});
    for (method, tail) in [
        (Method::GET, ""),
        (Method::GET, "/recipients"),
        (Method::POST, "/recipients"),
        (Method::POST, "/send"),
        (Method::POST, "/schedule"),
        (Method::POST, "/cancel"),
        (Method::POST, "/stop"),
    ] {
        let path = format!("{BROADCASTS}/{}{tail}", ids[1]);
        let (status, answer) = env
            .app
            .call_with_key(&other, method.clone(), &path, Some(body.clone()))
            .await;
        assert_eq!(status, 404, "{method} {tail}: {answer}");
    }
    let (_, list) = env
        .app
        .call_with_key(&other, Method::GET, BROADCASTS, None)
        .await;
    assert_eq!(list["data"], json!([]), "{list}");
    let b = status_of(&env, &ids[1]).await;
    assert_eq!(
        (&b["status"], &b["total_recipients"]),
        (&json!("draft"), &json!(0))
    );
}

/// Meta's status confirms a recipient as sent by its `biz_opaque_callback_data`. A proxied send
/// that carries the tag of a recipient of a draft (never sent) must not make it `sent`.
async fn a_status_confirms_only_a_recipient_that_was_sent(backend: Backend) {
    let env = start(backend).await;
    let id = draft(&env, true).await;
    let one = json!({"recipients": [template_item("+14155550401")]});
    assert_eq!(post(&env, &format!("/{id}/recipients"), one).await.0, 200);
    let recipient = recipients_of(&env, &id, "").await[0]["id"].clone();
    let tag = format!("wagate:broadcast:{}", recipient.as_str().unwrap());
    let (status, answer) = crate::meta_state::send(
        &env,
        json!({"messaging_product": "whatsapp", "to": "4479100001", "type": "text",
            "text": {"body": "not the broadcast"}, "biz_opaque_callback_data": tag}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let wamid = answer["messages"][0]["id"].as_str().unwrap();
    env.wait_message(wamid, |m| m.status == "read").await;
    let r = &recipients_of(&env, &id, "").await[0];
    assert_eq!(r["status"], "pending", "never sent, yet: {r}");
    assert!(r["wamid"].is_null(), "{r}");
    let b = status_of(&env, &id).await;
    assert_eq!(
        (&b["status"], &b["sent_count"]),
        (&json!("draft"), &json!(0))
    );
}

crate::both_backends!(backend:
    a_broadcast_goes_from_draft_to_completed,
    what_is_refused,
    retryable_errors_are_retried_and_permanent_ones_fail,
    stop_leaves_the_rest_pending,
    a_schedule_starts_it_and_other_projects_see_nothing,
    a_status_confirms_only_a_recipient_that_was_sent
);
