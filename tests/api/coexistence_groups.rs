//! Coexistence and Groups API webhooks (#21 items 8 and 9), driven by the emulator's samples:
//! imported history is stored as the past (`kapso.origin: history`, no conversation, no Kapso
//! event), the business app's contacts name wagate's contacts, edits and revokes change the
//! stored message, and groups with their participants are readable while their messages never
//! become 1:1 contacts.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;
use wagate::domain::message_content::content_of;
use wagate::store::StoreInspect as _;

use crate::common::eventually;
use crate::common::receiver::Hook;
use crate::ingest::{wamid_of, Env, PNID};
use crate::kapso_events::create_webhook;

const V: &str = "/meta/whatsapp/v24.0";

async fn event(env: &Env, field: &str, value: Value) {
    env.inject(
        &format!("events/{field}"),
        json!({"phone_number_id": PNID, "value": value}),
    )
    .await;
}

async fn stored_message(env: &Env, wamid: &str) -> Value {
    let (status, body) = env
        .app
        .call(Method::GET, &format!("{V}/{PNID}/messages/{wamid}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn history_is_stored_as_the_past(backend: Backend) {
    let env = Env::start(backend).await;
    // The number forwards to an app: fresh inbound messages wait for that delivery
    // (`processing_status: pending`); history never does.
    let app_hook = Hook::start().await;
    env.forward_to(&app_hook.url).await;
    let hook = Hook::start().await;
    create_webhook(
        &env.app,
        &format!("/platform/v1/whatsapp/phone_numbers/{PNID}/webhooks"),
        json!({"url": hook.url, "events": ["whatsapp.message.received", "whatsapp.conversation.created"]}),
    )
    .await;
    event(
        &env,
        "history",
        json!({"history": [{"metadata": {"phase": 0, "chunk_order": 1, "progress": 100},
            "threads": [{"id": "15550002222", "messages": [
                {"from": "15550002222", "id": "wamid.hist-in", "timestamp": "1764000000", "type": "text",
                 "text": {"body": "old hello"}, "history_context": {"status": "READ"}},
                {"from": "15550000001", "to": "15550002222", "id": "wamid.hist-out", "timestamp": "1764000100",
                 "type": "text", "text": {"body": "old reply"}, "history_context": {"status": "DELIVERED"}}]}]}]}),
    )
    .await;
    let inbound = env.wait_message("wamid.hist-in", |_| true).await;
    assert_eq!(inbound.origin, "history");
    assert_eq!(
        inbound.processing_status,
        wagate::store::ProcessingStatus::Completed
    );
    assert_eq!(
        inbound.conversation_id, None,
        "history opens no conversation"
    );
    assert!(inbound.contact_id.is_some(), "the user is a contact");
    let outbound = env.wait_message("wamid.hist-out", |_| true).await;
    assert_eq!(outbound.status, "delivered");
    let body = stored_message(&env, "wamid.hist-in").await;
    assert_eq!(body["kapso"]["origin"], "history", "{body}");
    assert_eq!(body["kapso"]["direction"], "inbound");
    assert_eq!(
        stored_message(&env, "wamid.hist-out").await["kapso"]["direction"],
        "outbound"
    );

    // A live message afterwards: the only Kapso events are its own.
    env.inbound(json!({"from": "15550002222", "type": "text", "text": {"body": "live"}}))
        .await;
    let hits = hook.wait_for(2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hits = if hook.hits().len() > hits.len() {
        hook.hits()
    } else {
        hits
    };
    let kinds: Vec<String> = hits
        .iter()
        .map(|h| h.header("x-webhook-event").to_owned())
        .collect();
    assert_eq!(hits.len(), 2, "{kinds:?}");
    for hit in &hits {
        assert!(
            !hit.json().to_string().contains("old hello"),
            "history produced an event: {}",
            hit.json()
        );
    }
    let (_, list) = env
        .app
        .call(Method::GET, &format!("{V}/{PNID}/messages?limit=10"), None)
        .await;
    let origins: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kapso"]["origin"].as_str().unwrap())
        .collect();
    assert_eq!(origins, ["cloud_api", "history", "history"], "{list}");
}

async fn app_contacts_edits_and_revokes_change_what_is_stored(backend: Backend) {
    let env = Env::start(backend).await;
    // The business app's address book names the contact.
    event(
        &env,
        "smb_app_state_sync",
        json!({"state_sync": [{"type": "contact", "action": "add",
            "contact": {"full_name": "Ana from the shop", "first_name": "Ana", "phone_number": "15550003333"},
            "metadata": {"timestamp": "1764000000"}}]}),
    )
    .await;
    let contact = eventually(Duration::from_secs(10), "the synced contact", || async {
        env.app
            .store
            .contacts_of(env.number)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.wa_id.as_deref() == Some("15550003333"))
    })
    .await;
    assert_eq!(contact.display_name.as_deref(), Some("Ana from the shop"));

    // An inbound message, edited, then another revoked.
    let sent = env
        .inbound(json!({"from": "15550003333", "type": "text", "text": {"body": "first words"}}))
        .await;
    let wamid = wamid_of(&sent);
    env.wait_message(&wamid, |_| true).await;
    env.inbound(json!({"from": "15550003333", "type": "edit", "id": "wamid.edit-1",
        "edit": {"original_message_id": wamid, "message": {"type": "text", "text": {"body": "better words"}}}}))
        .await;
    let edited = env
        .wait_message(&wamid, |m| content_of(m).contains("better words"))
        .await;
    assert!(edited.edits.is_some());
    let preview = |env: &Env| {
        let store = env.app.store.clone();
        let number = env.number;
        async move {
            store.conversations_of(number).await.unwrap()[0]
                .last_message_text
                .clone()
        }
    };
    assert_eq!(
        preview(&env).await.as_deref(),
        Some("better words"),
        "the conversation shows the edited words"
    );
    let body = stored_message(&env, &wamid).await;
    assert_eq!(body["text"]["body"], "better words", "{body}");
    assert_eq!(body["kapso"]["edit_history"][0]["content"], "first words");
    assert_eq!(body["kapso"]["revoked_at"], Value::Null);
    assert!(
        env.app
            .store
            .messages_of(env.number)
            .await
            .unwrap()
            .iter()
            .all(|m| m.message_type != "edit"),
        "an edit is not a message of its own"
    );

    env.inbound(
        json!({"from": "15550003333", "type": "revoke", "id": "wamid.revoke-1",
        "revoke": {"original_message_id": wamid}}),
    )
    .await;
    let revoked = env.wait_message(&wamid, |m| m.revoked_at.is_some()).await;
    assert_eq!(content_of(&revoked), "");
    assert_eq!(
        preview(&env).await,
        None,
        "nor does its conversation show it"
    );
    assert_eq!(revoked.edits, None, "earlier versions go with the content");
    assert!(!revoked.body.contains("words"), "{}", revoked.body);
    let body = stored_message(&env, &wamid).await;
    assert!(body["kapso"]["revoked_at"].is_string(), "{body}");
    assert_eq!(
        body["kapso"]["message_type_data"]["original_type"],
        "revoke"
    );
    // An edit after the revoke changes nothing.
    env.inbound(json!({"from": "15550003333", "type": "edit", "id": "wamid.edit-2",
        "edit": {"original_message_id": wamid, "message": {"type": "text", "text": {"body": "too late"}}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = env.wait_message(&wamid, |_| true).await;
    assert_eq!(content_of(&still), "");
}

async fn groups(env: &Env, query: &str) -> Value {
    let (status, body) = env
        .app
        .call(Method::GET, &format!("{V}/{PNID}/groups{query}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn groups_and_their_participants_are_kept(backend: Backend) {
    let env = Env::start(backend).await;
    for (id, subject) in [("GROUP-A", "Team A"), ("GROUP-B", "Team B")] {
        event(&env, "group_lifecycle_update", json!({"groups": [{"timestamp": "1764000000", "group_id": id,
            "type": "group_create", "request_id": format!("req-{id}"), "subject": subject,
            "description": "Orders", "invite_link": format!("https://chat.whatsapp.com/{id}"), "join_approval_mode": "auto_approve"}]})).await;
    }
    event(&env, "group_participants_update", json!({"groups": [{"timestamp": "1764000001", "group_id": "GROUP-A",
        "type": "group_participants_add", "added_participants": [{"input": "+1 555 000 4444", "wa_id": "15550004444"}, {"wa_id": "15550005555"}]}]})).await;
    event(&env, "group_participants_update", json!({"groups": [{"timestamp": "1764000002", "group_id": "GROUP-A",
        "type": "group_participants_remove", "removed_participants": [{"wa_id": "15550005555"}], "initiated_by": "participant"}]})).await;
    event(&env, "group_settings_update", json!({"groups": [{"timestamp": "1764000003", "group_id": "GROUP-A",
        "type": "group_settings_update", "group_subject": {"text": "Team A (orders)", "update_successful": true},
        "group_description": {"text": "refused", "update_successful": false}}]})).await;
    event(&env, "group_status_update", json!({"groups": [{"timestamp": "1764000004", "group_id": "GROUP-B", "type": "group_suspend"}]})).await;

    let group = eventually(Duration::from_secs(10), "group A settled", || async {
        let (status, body) = env
            .app
            .call(Method::GET, &format!("{V}/{PNID}/groups/GROUP-A"), None)
            .await;
        (status == 200 && body["subject"] == "Team A (orders)").then_some(body)
    })
    .await;
    assert_eq!(
        group["description"], "Orders",
        "an unsuccessful setting is not applied"
    );
    assert_eq!(group["state"], "active");
    assert_eq!(group["participant_count"], 1);
    let members: Vec<(String, String)> = group["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["wa_id"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        members,
        [
            ("15550004444".to_owned(), "joined".to_owned()),
            ("15550005555".to_owned(), "removed".to_owned())
        ]
    );

    // Newest first, with cursors; filtered by state.
    let first = groups(&env, "?limit=1").await;
    assert_eq!(first["data"][0]["id"], "GROUP-B");
    assert_eq!(first["data"][0]["state"], "suspended");
    let after = first["paging"]["cursors"]["after"].as_str().unwrap();
    let second = groups(&env, &format!("?limit=1&after={after}")).await;
    assert_eq!(second["data"][0]["id"], "GROUP-A");
    let suspended = groups(&env, "?state=suspended").await;
    assert_eq!(suspended["data"].as_array().unwrap().len(), 1);
    let (status, body) = env
        .app
        .call(
            Method::GET,
            &format!("{V}/{PNID}/groups?state=sleeping"),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = env
        .app
        .call(
            Method::GET,
            &format!("{V}/{PNID}/groups/NO-SUCH-GROUP"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, other_key) = env.app.other_project().await;
    let (status, _) = env
        .app
        .call_with_key(&other_key, Method::GET, &format!("{V}/{PNID}/groups"), None)
        .await;
    assert_eq!(
        status, 404,
        "another project cannot see the number's groups"
    );

    // A group message is stored with its group and makes no 1:1 contact or conversation.
    let contacts_before = env.app.store.contacts_of(env.number).await.unwrap().len();
    env.inbound(json!({"from": "15550004444", "type": "text", "group_id": "GROUP-A", "text": {"body": "hello group"}}))
        .await;
    let message = eventually(Duration::from_secs(10), "the group message", || async {
        env.messages()
            .await
            .into_iter()
            .find(|m| content_of(m) == "hello group")
    })
    .await;
    assert_eq!(message.group_id.as_deref(), Some("GROUP-A"));
    assert_eq!(message.contact_id, None);
    assert_eq!(message.conversation_id, None);
    assert_eq!(
        env.app.store.contacts_of(env.number).await.unwrap().len(),
        contacts_before
    );
    let body = stored_message(&env, &message.wamid).await;
    assert_eq!(body["kapso"]["group_id"], "GROUP-A");

    // A send to a group through the proxy is recorded with the group, no contact either.
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{PNID}/messages"))
        .json(
            &json!({"messaging_product": "whatsapp", "recipient_type": "group", "to": "GROUP-A",
            "type": "text", "text": {"body": "hello members"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["messages"][0]["group_id"], "GROUP-A", "{answer}");
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let sent = env.wait_message(&wamid, |_| true).await;
    assert_eq!(sent.group_id.as_deref(), Some("GROUP-A"));
    assert_eq!(sent.contact_id, None);
    assert_eq!(
        env.app.store.contacts_of(env.number).await.unwrap().len(),
        contacts_before
    );

    // Deleting a group keeps it, marked deleted.
    event(
        &env,
        "group_lifecycle_update",
        json!({"groups": [{"timestamp": "1764000009", "group_id": "GROUP-B",
        "type": "group_delete", "request_id": "req-del"}]}),
    )
    .await;
    eventually(Duration::from_secs(10), "group B deleted", || async {
        (groups(&env, "?state=deleted").await["data"][0]["id"] == "GROUP-B").then_some(())
    })
    .await;
}

crate::both_backends!(backend:
    history_is_stored_as_the_past,
    app_contacts_edits_and_revokes_change_what_is_stored,
    groups_and_their_participants_are_kept
);
