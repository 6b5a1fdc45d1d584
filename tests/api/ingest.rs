//! Webhook ingest and the stored model, driven by the emulator (`/_sandbox/*` injects what Meta
//! would deliver) and by hand-built signed envelopes; every effect asserted against the store.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;
use wagate::domain::message_content::content_of;
use wagate::sandbox::Sandbox;
use wagate::store::MessageRow;
use wagate::store::StoreInspect as _;

use crate::common::{emulator, meta, TestApp, APP_SECRET, VERIFY_TOKEN};

const V: &str = "/meta/whatsapp/v24.0";
pub const PNID: &str = "100000000000001";
pub const WABA: &str = "200000000000001";

pub struct Env {
    pub app: TestApp,
    pub _sandbox: Sandbox,
    pub sandbox_url: String,
    pub number: uuid::Uuid,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(
        backend: Backend,
        adjust: impl FnOnce(&mut wagate::config::Config),
    ) -> Self {
        let mut number = None;
        let (sandbox, sandbox_url) = emulator(|config| {
            config.status_delay = Duration::from_millis(5);
            config.app_secret = APP_SECRET.into();
            number = Some(config.numbers[0].clone());
        })
        .await;
        let number = number.unwrap();
        let app = TestApp::spawn_against(backend, &sandbox_url, adjust).await;
        sandbox.set_webhook_url(Some(app.url("/webhooks/whatsapp")));
        app.connect_emulator_number(&number).await;
        let number = app
            .store
            .find_phone_number(PNID)
            .await
            .unwrap()
            .unwrap()
            .internal_id;
        Self {
            app,
            _sandbox: sandbox,
            sandbox_url,
            number,
            http: reqwest::Client::new(),
        }
    }

    /// Calls the emulator's control API; asserts the gateway acknowledged the webhook.
    pub async fn inject(&self, path: &str, body: Value) -> Value {
        let response: Value = self
            .http
            .post(format!("{}/_sandbox/{path}", self.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            response["webhook_status"], 200,
            "gateway refused: {response}"
        );
        response
    }

    /// `POST /_sandbox/knobs`, asserting the emulator took them.
    pub async fn knobs(&self, body: Value) {
        let response = self
            .http
            .post(format!("{}/_sandbox/knobs", self.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    pub async fn inbound(&self, body: Value) -> Value {
        let mut body = body;
        body["phone_number_id"] = json!(PNID);
        self.inject("inbound", body).await["envelope"].clone()
    }

    pub async fn post_signed(&self, body: &[u8]) -> reqwest::Response {
        meta::post_webhook(&self.http, &self.app.base, body).await
    }

    /// Points the number's `webhook_destination_url` at `url`, through the Platform API.
    pub async fn forward_to(&self, url: &str) {
        let (status, body) = self
            .app
            .call(
                Method::PATCH,
                &format!("/platform/v1/whatsapp/phone_numbers/{PNID}"),
                Some(json!({"whatsapp_phone_number": {"webhook_destination_url": url}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The stored message `wamid` of this number, as it is now (no waiting).
    pub async fn stored_message(&self, wamid: &str) -> Option<MessageRow> {
        self.app
            .store
            .find_message(self.number, wamid)
            .await
            .unwrap()
    }

    pub async fn messages(&self) -> Vec<MessageRow> {
        self.app.store.messages_of(self.number).await.unwrap()
    }

    pub async fn send_text(&self, to: &str) -> String {
        let response: Value = self
            .app
            .request(Method::POST, &format!("{V}/{PNID}/messages"))
            .json(&json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hello"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["messages"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("send to {to} not accepted: {response}"))
            .to_owned()
    }

    /// [`Env::send_text`] with an owned recipient, for sends joined concurrently.
    pub async fn send_text_to(&self, to: String) -> String {
        self.send_text(&to).await
    }

    /// Waits until `check` holds on the stored message `wamid` (statuses arrive asynchronously).
    pub async fn wait_message(
        &self,
        wamid: &str,
        check: impl Fn(&MessageRow) -> bool,
    ) -> MessageRow {
        crate::common::eventually(
            Duration::from_secs(30),
            &format!("message {wamid} in the expected state"),
            || async {
                self.app
                    .store
                    .find_message(self.number, wamid)
                    .await
                    .unwrap()
                    .filter(|row| check(row))
            },
        )
        .await
    }
}

fn envelope(change_field: &str, value: Value) -> Value {
    meta::envelope(WABA, change_field, value)
}

fn metadata() -> Value {
    json!({"display_phone_number": "15550000001", "phone_number_id": PNID})
}

async fn verification_handshake(backend: Backend) {
    let env = Env::start(backend).await;
    let ok = env
        .http
        .get(env.app.url(&format!("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "",
    ] {
        let response = env
            .http
            .get(env.app.url(&format!("/webhooks/whatsapp?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{query}");
    }
}

async fn bad_signatures_store_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let body = envelope("messages", json!({"metadata": metadata(), "messages": [{"from": "1", "id": "wamid.x", "timestamp": "1", "type": "text", "text": {"body": "x"}}]}))
        .to_string();
    for signature in [
        None,
        Some("sha256=00".to_owned()),
        Some(wagate::crypto::hub_signature(
            b"other-secret",
            body.as_bytes(),
        )),
        Some("garbage".into()),
    ] {
        let mut request = env
            .http
            .post(env.app.url("/webhooks/whatsapp"))
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("x-hub-signature-256", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{signature:?}");
    }
    assert!(env
        .app
        .store
        .webhook_events(None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(env.messages().await.is_empty());

    // Over Meta's 3 MiB: 413, nothing stored.
    // Headers only: the 413 must come before the body is sent (a client still writing it could
    // otherwise see the connection close before it reads the answer).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(env.app.addr).await.unwrap();
        let head = format!(
            "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: {}\r\n\r\n",
            3 * 1024 * 1024 + 1
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));
    }
    assert!(env
        .app
        .store
        .webhook_events(None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn invalid_json_and_unknown_numbers_are_kept(backend: Backend) {
    let env = Env::start(backend).await;
    let response = env.post_signed(b"{not json").await;
    assert_eq!(response.status(), 200, "Meta must stop retrying");
    let failed = env
        .app
        .store
        .webhook_events(Some("invalid_json"), 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].body, b"{not json");
    assert!(failed[0].error.as_deref().unwrap().contains("not JSON"));
    // Operators see it from the command line.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wagate"))
        .args([
            "admin",
            "webhook-events",
            "list",
            "--state",
            "invalid_json",
            "--json",
        ])
        .env(
            "WAGATE__DATABASE__URL",
            secrecy::ExposeSecret::expose_secret(&env.app.config.database.url),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed["state"], "invalid_json");
    assert_eq!(listed["body"], "{not json");

    let unknown = envelope(
        "messages",
        json!({"metadata": {"display_phone_number": "1", "phone_number_id": "999999"}, "messages": [{"from": "1", "id": "wamid.u", "timestamp": "1", "type": "text", "text": {"body": "?"}}]}),
    );
    assert_eq!(
        env.post_signed(unknown.to_string().as_bytes())
            .await
            .status(),
        200
    );
    let unrouted = env
        .app
        .store
        .webhook_events(Some("unrouted"), 10)
        .await
        .unwrap();
    assert_eq!(unrouted.len(), 1);
    let routes = env.app.store.event_routes(unrouted[0].id).await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].phone_number_id, "999999");
    assert_eq!(routes[0].project_id, None);
    assert!(env.messages().await.is_empty());
}

async fn inbound_text_creates_contact_conversation_and_message(backend: Backend) {
    let env = Env::start(backend).await;
    let envelope = env.inbound(json!({"from": "15551234567", "profile_name": "Ada", "type": "text", "text": {"body": "Hi there"}})).await;
    let wamid = wamid_of(&envelope);
    let wamid = wamid.as_str();
    let messages = env.messages().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(
        (m.wamid.as_str(), m.direction.as_str(), m.status.as_str()),
        (wamid, "inbound", "received")
    );
    assert_eq!(m.message_type, "text");
    assert_eq!(content_of(m), "Hi there");
    assert_eq!(m.origin, "cloud_api");
    assert_eq!(
        m.processing_status, "completed",
        "no destination: nothing to forward"
    );
    let body: Value = serde_json::from_str(&m.body).unwrap();
    assert_eq!(body["text"]["body"], "Hi there");
    assert!(body["timestamp"].is_string());

    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].wa_id.as_deref(), Some("15551234567"));
    assert_eq!(contacts[0].profile_name.as_deref(), Some("Ada"));
    assert_eq!(m.contact_id, Some(contacts[0].id));

    let conversations = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(conversations.len(), 1);
    let c = &conversations[0];
    assert_eq!((c.status.as_str(), c.messages_count), ("active", 1));
    assert_eq!(c.last_message_id.as_deref(), Some(wamid));
    assert_eq!(c.last_message_text.as_deref(), Some("Hi there"));
    assert!(c.last_inbound_at.is_some() && c.last_outbound_at.is_none());
    assert_eq!(m.conversation_id, Some(c.id));

    // The raw event and its route (byte-identical: the POST concerned only this number).
    let events = env
        .app
        .store
        .webhook_events(Some("processed"), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let routes = env.app.store.event_routes(events[0].id).await.unwrap();
    assert_eq!(routes[0].payload, events[0].body);
    assert_eq!(routes[0].fields, "messages");
    // SQLite keeps those bytes once, on the route (the event reads them there).
    let own = env.app.store.event_own_bytes(events[0].id).await.unwrap();
    let expected = match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => events[0].body.len() as i64,
    };
    assert_eq!(own, expected);
}

async fn every_inbound_type_is_stored(backend: Backend) {
    let env = Env::start(backend).await;
    let types = [
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "button_reply",
        "list_reply",
        "nfm_reply",
        "button",
        "reaction",
        "order",
        "unsupported",
        "request_welcome",
    ];
    for kind in types {
        env.inbound(json!({"from": "15550001111", "type": kind}))
            .await;
    }
    let messages = env.messages().await;
    assert_eq!(messages.len(), types.len());
    for (m, kind) in messages.iter().zip(types) {
        let body: Value = serde_json::from_str(&m.body).unwrap();
        let expected_type = body["type"].as_str().unwrap();
        assert_eq!(m.message_type, expected_type, "{kind}");
        assert!(!content_of(m).is_empty(), "{kind} has content");
        assert_eq!(
            m.has_media,
            ["image", "audio", "video", "document", "sticker"].contains(&kind),
            "{kind}"
        );
        if m.has_media {
            // Meta's media id, mime type and sha256 are kept.
            let media = &body[expected_type];
            assert!(
                media["id"].is_string()
                    && media["mime_type"].is_string()
                    && media["sha256"].is_string(),
                "{kind}: {media}"
            );
        }
    }
    let conversations = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].messages_count as usize, types.len());
}

async fn bsuid_only_users_are_stored(backend: Backend) {
    let env = Env::start(backend).await;
    env.inbound(json!({"user_id": "US.13491208655302741918", "parent_user_id": "US.ENT.11815799212886844830", "username": "@ada", "profile_name": "Ada", "type": "text", "text": {"body": "no phone"}})).await;
    // The Nov-2025 form: empty strings instead of absent fields.
    env.inbound(
        json!({"from": "", "user_id": "US.999", "type": "text", "text": {"body": "empty from"}}),
    )
    .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].wa_id, None);
    assert_eq!(
        contacts[0].business_scoped_user_id.as_deref(),
        Some("US.13491208655302741918")
    );
    assert_eq!(
        contacts[0].parent_business_scoped_user_id.as_deref(),
        Some("US.ENT.11815799212886844830")
    );
    assert_eq!(contacts[0].username.as_deref(), Some("@ada"));
    assert_eq!(contacts[1].wa_id, None);
    assert_eq!(
        contacts[1].business_scoped_user_id.as_deref(),
        Some("US.999")
    );
    assert_eq!(env.messages().await.len(), 2);
    // Later the same user shows a phone number: one contact carries both.
    env.inbound(json!({"from": "15557654321", "user_id": "US.999", "type": "text", "text": {"body": "now with phone"}})).await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[1].wa_id.as_deref(), Some("15557654321"));
}

async fn duplicates_change_nothing(backend: Backend) {
    let env = Env::start(backend).await;
    let envelope = env.inbound(json!({"from": "15551234567", "id": "wamid.DUP1", "type": "text", "text": {"body": "once"}})).await;
    // Meta redelivers the same event, and the same message in a new envelope.
    assert_eq!(
        env.post_signed(envelope.to_string().as_bytes())
            .await
            .status(),
        200
    );
    env.inbound(json!({"from": "15551234567", "id": "wamid.DUP1", "type": "text", "text": {"body": "once"}})).await;
    assert_eq!(env.messages().await.len(), 1);
    let conversations = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(
        conversations[0].messages_count, 1,
        "counters unchanged by duplicates"
    );
    assert_eq!(
        env.app.store.webhook_events(None, 10).await.unwrap().len(),
        3,
        "each raw delivery is kept"
    );
}

async fn sends_are_recorded_and_statuses_move_forward(backend: Backend) {
    let env = Env::start(backend).await;
    let wamid = env.send_text("+1 555 123 4567").await;
    // Recorded before the client got Meta's answer.
    let row = env.stored_message(&wamid).await.expect("recorded at once");
    assert_eq!(
        (row.direction.as_str(), row.origin.as_str()),
        ("outbound", "cloud_api")
    );
    let body: Value = serde_json::from_str(&row.body).unwrap();
    assert_eq!(body["text"]["body"], "hello");
    assert_eq!(body["to"], "+1 555 123 4567");
    let row = env.wait_message(&wamid, |m| m.status == "read").await;
    let history: Vec<Value> = serde_json::from_str(&row.statuses).unwrap();
    let seen: Vec<&str> = history
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["sent", "delivered", "read"]);
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts[0].wa_id.as_deref(), Some("15551234567"));

    // Reordered and duplicated statuses: the status never moves backwards, every raw one is kept.
    env.http
        .post(format!("{}/_sandbox/knobs", env.sandbox_url))
        .json(&json!({"reorder": true, "duplicate": true}))
        .send()
        .await
        .unwrap();
    let wamid = env.send_text("15551234567").await;
    let row = env
        .wait_message(&wamid, |m| {
            serde_json::from_str::<Vec<Value>>(&m.statuses)
                .unwrap()
                .len()
                == 6
        })
        .await;
    assert_eq!(row.status, "read");
    let conversations = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].messages_count, 2);
    assert!(conversations[0].last_outbound_at.is_some());
}

async fn failed_statuses_keep_errors_and_early_statuses_are_parked(backend: Backend) {
    let env = Env::start(backend).await;
    env.http
        .post(format!("{}/_sandbox/knobs", env.sandbox_url))
        .json(&json!({"fail_sends_with": 131047}))
        .send()
        .await
        .unwrap();
    let wamid = env.send_text("15551234567").await;
    let row = env.wait_message(&wamid, |m| m.status == "failed").await;
    let errors: Value = serde_json::from_str(row.errors.as_deref().unwrap()).unwrap();
    assert_eq!(errors[0]["code"], 131047);

    // A status for a message not yet recorded waits for it (here a coexistence echo).
    let status = envelope(
        "messages",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
        "statuses": [{"id": "wamid.ECHO1", "status": "delivered", "timestamp": "1750000001", "recipient_id": "15550002222"}]}),
    );
    assert_eq!(
        env.post_signed(status.to_string().as_bytes())
            .await
            .status(),
        200
    );
    assert!(env.stored_message("wamid.ECHO1").await.is_none());
    let echo = envelope(
        "smb_message_echoes",
        json!({"messaging_product": "whatsapp", "metadata": metadata(),
        "message_echoes": [{"from": "15550000001", "to": "15550002222", "id": "wamid.ECHO1", "timestamp": "1750000000", "type": "text", "text": {"body": "from the app"}}]}),
    );
    assert_eq!(
        env.post_signed(echo.to_string().as_bytes()).await.status(),
        200
    );
    let row = env.stored_message("wamid.ECHO1").await.unwrap();
    assert_eq!(
        (
            row.direction.as_str(),
            row.origin.as_str(),
            row.status.as_str()
        ),
        ("outbound", "business_app", "delivered")
    );
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&row.statuses)
            .unwrap()
            .len(),
        1
    );
}

async fn marking_read_through_the_proxy_updates_the_inbound_message(backend: Backend) {
    let env = Env::start(backend).await;
    let envelope = env
        .inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "read me"}}))
        .await;
    let wamid = wamid_of(&envelope);
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{PNID}/messages"))
        .json(&json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid, "typing_indicator": {"type": "text"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let row = env.stored_message(&wamid).await.unwrap();
    assert_eq!(row.status, "read");
    assert_eq!(
        env.messages().await.len(),
        1,
        "a read receipt is not a message"
    );
}

async fn calls_usernames_and_identity_changes(backend: Backend) {
    let env = Env::start(backend).await;
    let connect = env.inject("calls", json!({"phone_number_id": PNID, "event": "connect", "call_id": "wacid.C1", "from": "15551234567"})).await;
    assert_eq!(connect["webhook_status"], 200);
    env.inject("calls", json!({"phone_number_id": PNID, "event": "terminate", "call_id": "wacid.C1", "from": "15551234567", "status": "COMPLETED", "duration": 42})).await;
    let calls = env.app.store.calls_of(env.number).await.unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (
            call.call_id.as_str(),
            call.direction.as_str(),
            call.status.as_str()
        ),
        ("wacid.C1", "inbound", "completed")
    );
    assert_eq!(call.duration_seconds, Some(42));
    assert!(call.ended_at.is_some());
    assert!(call.contact_id.is_some());

    // An outbound call placed through the proxy.
    let placed: Value = env
        .app
        .request(Method::POST, &format!("{V}/{PNID}/calls"))
        .json(&json!({"messaging_product": "whatsapp", "to": "15551234567", "action": "connect", "session": {"sdp_type": "offer", "sdp": "v=0"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call_id = placed["calls"][0]["id"].as_str().unwrap();
    let calls = env.app.store.calls_of(env.number).await.unwrap();
    let outbound = calls
        .iter()
        .find(|c| c.call_id == call_id)
        .expect("recorded");
    assert_eq!(outbound.direction, "outbound");

    env.inject(
        "username_update",
        json!({"phone_number_id": PNID, "status": "approved", "username": "acme.support"}),
    )
    .await;
    let number = env
        .app
        .store
        .find_phone_number(PNID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            number.username.as_deref(),
            number.username_status.as_deref()
        ),
        (Some("acme.support"), Some("approved"))
    );
    env.inject(
        "username_update",
        json!({"phone_number_id": PNID, "status": "deleted"}),
    )
    .await;
    let number = env
        .app
        .store
        .find_phone_number(PNID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            number.username.as_deref(),
            number.username_status.as_deref()
        ),
        (None, Some("deleted"))
    );

    // BSUID rotation (user_id_update) and a number change (system message), with history.
    env.inbound(json!({"from": "15559990000", "user_id": "US.OLD1", "type": "text", "text": {"body": "hi"}})).await;
    env.inject("user_id_update", json!({"phone_number_id": PNID, "previous": "US.OLD1", "current": "US.NEW1", "wa_id": "15559990000"})).await;
    env.inbound(json!({"from": "15559990000", "type": "system", "system": {"body": "changed", "wa_id": "15559990001", "type": "user_changed_number"}})).await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    let changed = contacts
        .iter()
        .find(|c| c.business_scoped_user_id.as_deref() == Some("US.NEW1"))
        .expect("BSUID rotated");
    assert_eq!(changed.wa_id.as_deref(), Some("15559990001"));
    let history = env.app.store.identity_changes(changed.id).await.unwrap();
    assert_eq!(
        history,
        [
            (
                "business_scoped_user_id".into(),
                Some("US.OLD1".into()),
                Some("US.NEW1".into())
            ),
            (
                "wa_id".into(),
                Some("15559990000".into()),
                Some("15559990001".into())
            ),
        ]
    );
}

async fn batched_envelopes_are_split_by_number(backend: Backend) {
    let env = Env::start(backend).await;
    // A second number in another project, on another WABA.
    let (_, other_key) = env.app.other_project().await;
    env.http
        .post(format!("{}/_sandbox/numbers", env.sandbox_url))
        .json(&json!({"phone_number_id": "100000000000009", "business_account_id": "200000000000009", "access_token": "tok9"}))
        .send()
        .await
        .unwrap();
    env.app
        .connect_number(&other_key, "100000000000009", "200000000000009", "tok9")
        .await;
    let other = env
        .app
        .store
        .find_phone_number("100000000000009")
        .await
        .unwrap()
        .unwrap()
        .internal_id;
    let batch = env
        .inject("batch", json!({"envelopes": [
            {"kind": "inbound", "phone_number_id": PNID, "from": "15550000001", "type": "text", "text": {"body": "to one"}},
            {"kind": "inbound", "phone_number_id": "100000000000009", "from": "15550000002", "type": "text", "text": {"body": "to nine"}},
            {"kind": "inbound", "phone_number_id": PNID, "from": "15550000003", "type": "text", "text": {"body": "to one again"}},
        ]}))
        .await;
    assert_eq!(
        batch["envelope"]["entry"].as_array().unwrap().len(),
        2,
        "two WABAs in one POST"
    );
    let mine = env.messages().await;
    assert_eq!(
        mine.iter().map(content_of).collect::<Vec<_>>(),
        ["to one", "to one again"]
    );
    let theirs = env.app.store.messages_of(other).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs[0].project_id, mine[0].project_id);

    let event = &env
        .app
        .store
        .webhook_events(Some("processed"), 1)
        .await
        .unwrap()[0];
    let routes = env.app.store.event_routes(event.id).await.unwrap();
    assert_eq!(routes.len(), 2);
    let one: Value = serde_json::from_slice(
        &routes
            .iter()
            .find(|r| r.phone_number_id == PNID)
            .unwrap()
            .payload,
    )
    .unwrap();
    let changes = one["entry"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "only this number's changes: {one}");
    assert!(changes
        .iter()
        .all(|c| c["value"]["metadata"]["phone_number_id"] == PNID));
}

async fn inactivity_ends_conversations(backend: Backend) {
    let env = Env::start_with(backend, |c| {
        c.conversations.inactivity = Duration::from_millis(800);
        c.conversations.sweep_interval = Duration::from_millis(100);
    })
    .await;
    env.inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "first"}}))
        .await;
    // The sweeper ends it once it has been idle for `inactivity` (on a loaded machine, later).
    crate::common::eventually(Duration::from_secs(30), "the sweeper ended it", || async {
        let conversations = env.app.store.conversations_of(env.number).await.unwrap();
        (conversations[0].status == "ended").then_some(())
    })
    .await;
    env.inbound(json!({"from": "15551234567", "type": "text", "text": {"body": "second"}}))
        .await;
    let conversations = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(conversations.len(), 2);
    assert_eq!(
        (
            conversations[1].status.as_str(),
            conversations[1].messages_count
        ),
        ("active", 1)
    );
    let messages = env.messages().await;
    assert_ne!(messages[0].conversation_id, messages[1].conversation_id);
}

/// Many related events at once, so they share writer batches (and its cached rows): messages,
/// their duplicates, statuses before and after their message, several users. Whatever the order
/// the writer applies them in, the outcome is the same.
async fn concurrent_related_events_share_batches_consistently(backend: Backend) {
    let env = Env::start(backend).await;
    let users = ["15551110001", "15551110002", "15551110003"];
    let mut bodies = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for i in 0..4 {
            let wamid = format!("wamid.C{u}.{i}");
            let message = envelope(
                "messages",
                json!({"metadata": metadata(),
                "contacts": [{"profile": {"name": format!("User {u}")}, "wa_id": user}],
                "messages": [{"from": user, "id": wamid, "timestamp": "1750000000", "type": "text", "text": {"body": format!("m{i}")}}]}),
            );
            bodies.push(message.to_string());
            bodies.push(message.to_string()); // Meta's duplicate
            for status in ["sent", "delivered", "read"] {
                bodies.push(envelope("messages", json!({"metadata": metadata(),
                    "statuses": [{"id": wamid, "status": status, "timestamp": "1750000001", "recipient_id": user}]})).to_string());
            }
        }
    }
    let posts = bodies.iter().map(|body| env.post_signed(body.as_bytes()));
    for response in futures::future::join_all(posts).await {
        assert_eq!(response.status(), 200);
    }
    let messages = env.messages().await;
    assert_eq!(messages.len(), users.len() * 4, "each wamid stored once");
    for m in &messages {
        // Inbound messages start `delivered`; `read` wins whatever arrived first.
        assert_eq!(m.status, "read", "{}", m.wamid);
        let history: Vec<Value> = serde_json::from_str(&m.statuses).unwrap();
        assert_eq!(history.len(), 3, "every raw status kept once: {}", m.wamid);
        assert!(m.conversation_id.is_some() && m.contact_id.is_some());
    }
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), users.len());
    let conversations = env.app.store.conversations_of(env.number).await.unwrap();
    assert_eq!(
        conversations.len(),
        users.len(),
        "one active conversation per user"
    );
    for c in &conversations {
        assert_eq!((c.status.as_str(), c.messages_count), ("active", 4));
        let of_contact = messages.iter().filter(|m| m.conversation_id == Some(c.id));
        assert!(of_contact
            .clone()
            .all(|m| m.contact_id == Some(c.contact_id)));
        assert_eq!(of_contact.count(), 4);
    }
    assert_eq!(
        env.app
            .store
            .webhook_events(None, 1000)
            .await
            .unwrap()
            .len(),
        bodies.len(),
        "each raw delivery is kept"
    );
}

crate::both_backends!(backend:
    verification_handshake,
    bad_signatures_store_nothing,
    invalid_json_and_unknown_numbers_are_kept,
    inbound_text_creates_contact_conversation_and_message,
    every_inbound_type_is_stored,
    bsuid_only_users_are_stored,
    duplicates_change_nothing,
    sends_are_recorded_and_statuses_move_forward,
    failed_statuses_keep_errors_and_early_statuses_are_parked,
    marking_read_through_the_proxy_updates_the_inbound_message,
    calls_usernames_and_identity_changes,
    batched_envelopes_are_split_by_number,
    inactivity_ends_conversations,
    concurrent_related_events_share_batches_consistently,
);

/// The wamid of the one message in an inbound webhook envelope.
pub fn wamid_of(envelope: &Value) -> String {
    envelope["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}
