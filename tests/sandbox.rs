//! The Graph emulator over real HTTP: `Sandbox::spawn` on 127.0.0.1:0 and the test kit's webhook
//! receiver, recording every POST with its `X-Hub-Signature-256` checked.

mod common;

use std::time::Duration;

use common::receiver::Hook;
use serde_json::{json, Value};
use wagate::crypto::verify_hub_signature;
use wagate::sandbox::{Sandbox, SandboxConfig, SandboxNumber};

const PNID: &str = "100000000000001";
const WABA: &str = "200000000000001";
const TOKEN: &str = "sandbox-token-100000000000001";
const PNID2: &str = "100000000000002";
const WABA2: &str = "200000000000002";
const TOKEN2: &str = "sandbox-token-2";
const SECRET: &str = "sandbox-app-secret";

#[derive(Clone, Debug)]
struct Received {
    signature_ok: bool,
    body: Value,
}

/// A webhook target (the kit's recording receiver): the POSTs it got, each with its
/// `X-Hub-Signature-256` checked; answers Meta's `hub.challenge` GET for `verify-me`.
#[derive(Clone)]
struct Receiver {
    hook: Hook,
}

impl Receiver {
    async fn spawn() -> (String, Receiver) {
        let hook = Hook::start().await;
        hook.answer_verification("verify-me");
        (hook.url.clone(), Receiver { hook })
    }

    fn all(&self) -> Vec<Received> {
        self.hook
            .hits()
            .iter()
            .map(|hit| {
                let signature = hit
                    .headers
                    .get("x-hub-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                Received {
                    signature_ok: verify_hub_signature(SECRET.as_bytes(), &hit.body, signature),
                    body: serde_json::from_slice(&hit.body).unwrap_or(Value::Null),
                }
            })
            .collect()
    }

    /// Forgets the webhooks received so far.
    fn clear(&self) {
        self.hook.clear();
    }

    /// Waits until at least `n` webhooks arrived (5 s at most) and returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        self.hook.wait_for(n, Duration::from_secs(5)).await;
        self.all()
    }

    /// Webhooks carrying a message status, as (status, wamid).
    fn statuses(&self) -> Vec<(String, String)> {
        self.all()
            .iter()
            .filter_map(|r| {
                let status = &r.body["entry"][0]["changes"][0]["value"]["statuses"][0];
                Some((
                    status["status"].as_str()?.to_owned(),
                    status["id"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }
}

struct Env {
    base: String,
    http: reqwest::Client,
    receiver: Receiver,
    hook_url: String,
    sandbox: Sandbox,
}

impl Env {
    async fn start() -> Env {
        let (hook_url, receiver) = Receiver::spawn().await;
        let (sandbox, base) = common::emulator(|config| {
            config.webhook_url = Some(hook_url.clone());
            config.status_delay = Duration::from_millis(10);
            config.numbers.push(SandboxNumber {
                phone_number_id: PNID2.into(),
                business_account_id: WABA2.into(),
                access_token: TOKEN2.into(),
                display_phone_number: "+1 555-000-0002".into(),
                verified_name: "second number".into(),
            });
        })
        .await;
        Env {
            base,
            http: reqwest::Client::new(),
            receiver,
            hook_url,
            sandbox,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A Graph call with a Bearer token; returns (status, JSON body).
    async fn graph(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn send_text(&self, to: &str) -> (u16, Value) {
        let body = json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}});
        self.graph(
            "POST",
            &format!("/v23.0/{PNID}/messages"),
            Some(TOKEN),
            Some(body),
        )
        .await
    }
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "wagate-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if let Some((filename, mime, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(env: &Env, token: &str, mime: &str, bytes: &[u8]) -> (u16, Value) {
    let (content_type, body) = multipart(
        &[("messaging_product", "whatsapp"), ("type", mime)],
        Some(("file.bin", mime, bytes)),
    );
    let response = env
        .http
        .post(env.url(&format!("/v24.0/{PNID}/media")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn auth_and_send_validation_errors_match_meta() {
    let env = Env::start().await;
    let path = format!("/v23.0/{PNID}/messages");
    let text = json!({"messaging_product": "whatsapp", "to": "15551234567", "text": {"body": "x"}});

    let (status, body) = env.graph("POST", &path, None, Some(text.clone())).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(104)));
    let (status, body) = env
        .graph("POST", &path, Some(TOKEN2), Some(text.clone()))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["type"], "OAuthException");
    assert_eq!(
        body["error"]["message"],
        "Invalid OAuth access token - Cannot parse access token"
    );
    assert!(body["error"]["fbtrace_id"].is_string());
    let (status, body) = env
        .graph("POST", &path, Some("nobody"), Some(text.clone()))
        .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(190)));

    let (status, body) = env.graph("GET", "/v23.0/999999", Some(TOKEN), None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(body["error"]["error_subcode"], 33);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Object with ID '999999' does not exist"));
    let (status, body) = env
        .graph(
            "POST",
            &format!("/v23.0/{PNID}/nonsense"),
            Some(TOKEN),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["error_subcode"].as_u64()),
        (400, Some(33))
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unsupported post request"));
    let (status, body) = env
        .graph("GET", &format!("/latest/{PNID}"), Some(TOKEN), None)
        .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(2500)));

    let response = env
        .http
        .post(env.url(&path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 100);
    assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");

    let cases = [
        (
            json!({"to": "15551234567", "text": {"body": "x"}}),
            100,
            "messaging_product",
        ),
        (
            json!({"messaging_product": "sms", "to": "1555", "text": {"body": "x"}}),
            100,
            "messaging_product",
        ),
        (
            json!({"messaging_product": "whatsapp", "text": {"body": "x"}}),
            100,
            "to",
        ),
        (
            json!({"messaging_product": "whatsapp", "recipient": "15551234567", "text": {"body": "x"}}),
            100,
            "recipient",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "fax"}),
            100,
            "type",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "text"}),
            131008,
            "text",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "15551234567", "text": {}}),
            131008,
            "body",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "image", "image": {"id": "123"}}),
            131009,
            "image",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "template", "template": {"name": "nope", "language": {"code": "en_US"}}}),
            132001,
            "nope",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "location", "location": {"latitude": 1}}),
            131008,
            "longitude",
        ),
        (
            json!({"messaging_product": "whatsapp", "to": "+1 555-000-0001", "text": {"body": "me"}}),
            131021,
            "same",
        ),
    ];
    for (request, code, mentions) in cases {
        let (status, body) = env
            .graph("POST", &path, Some(TOKEN), Some(request.clone()))
            .await;
        let expected_status = if code == 132001 { 404 } else { 400 };
        assert_eq!(status, expected_status, "{request} -> {body}");
        assert_eq!(body["error"]["code"], code, "{request} -> {body}");
        assert!(
            body.to_string().contains(mentions),
            "{request} -> {body} should mention {mentions}"
        );
    }
    assert!(
        env.receiver.all().is_empty(),
        "failed sends produce no webhooks"
    );
}

#[tokio::test]
async fn send_answers_a_wamid_and_signed_statuses_follow_in_order() {
    let env = Env::start().await;
    let (status, body) = env.send_text("+1 (555) 123-4567").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(
        body["contacts"],
        json!([{"input": "+1 (555) 123-4567", "wa_id": "15551234567"}])
    );
    let wamid = body["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(wamid.starts_with("wamid.") && wamid.len() > 30, "{wamid}");
    assert_eq!(body["messages"][0]["message_status"], "accepted");
    let (_, again) = env.send_text("15551234567").await;
    assert_ne!(again["messages"][0]["id"], body["messages"][0]["id"]);

    let received = env.receiver.wait_for(6).await;
    assert!(received.iter().all(|r| r.signature_ok));
    let first: Vec<&Received> = received
        .iter()
        .filter(|r| {
            r.body["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] == wamid.as_str()
        })
        .collect();
    let order: Vec<&str> = first
        .iter()
        .map(|r| {
            r.body["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(order, ["sent", "delivered", "read"]);
    let envelope = &first[0].body;
    assert_eq!(envelope["object"], "whatsapp_business_account");
    assert_eq!(envelope["entry"][0]["id"], WABA);
    let change = &envelope["entry"][0]["changes"][0];
    assert_eq!(change["field"], "messages");
    assert_eq!(
        change["value"]["metadata"],
        json!({"display_phone_number": "15550000001", "phone_number_id": PNID})
    );
    let sent = &change["value"]["statuses"][0];
    assert_eq!(sent["recipient_id"], "15551234567");
    assert!(sent["timestamp"].is_string());
    assert_eq!(sent["pricing"]["category"], "service");
    assert!(sent["conversation"]["expiration_timestamp"].is_string());
    let delivered = &first[1].body["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert!(
        delivered["pricing"].is_object()
            && delivered["conversation"]["expiration_timestamp"].is_null()
    );
    let read = &first[2].body["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert!(read["pricing"].is_null());

    let sent_log = env.get_json("/_sandbox/sent").await;
    let entry = sent_log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == wamid.as_str())
        .unwrap();
    assert_eq!(entry["statuses"], json!(["sent", "delivered", "read"]));
    assert_eq!(entry["request"]["text"]["body"], "hi");

    let read_mark = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid, "typing_indicator": {"type": "text"}});
    let (status, body) = env
        .graph(
            "POST",
            &format!("/v23.0/{PNID}/messages"),
            Some(TOKEN),
            Some(read_mark),
        )
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
}

#[tokio::test]
async fn bsuid_recipients_get_user_ids() {
    let env = Env::start().await;
    let body = json!({"messaging_product": "whatsapp", "recipient": "US.13491208655302741918", "text": {"body": "hi"}});
    let (status, answer) = env
        .graph(
            "POST",
            &format!("/v24.0/{PNID}/messages"),
            Some(TOKEN),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["contacts"],
        json!([{"input": "US.13491208655302741918", "user_id": "US.13491208655302741918"}])
    );
    let received = env.receiver.wait_for(3).await;
    let status = &received[0].body["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert_eq!(status["recipient_user_id"], "US.13491208655302741918");
    assert!(status.get("recipient_id").is_none());
}

#[tokio::test]
async fn knobs_reorder_duplicate_drop_and_fail() {
    let env = Env::start().await;
    let (status, knobs) = env
        .control("/_sandbox/knobs", json!({"reorder": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(knobs["reorder"], true);
    env.send_text("15551234567").await;
    env.receiver.wait_for(3).await;
    let order: Vec<String> = env.receiver.statuses().into_iter().map(|s| s.0).collect();
    assert_eq!(order, ["read", "delivered", "sent"]);

    env.receiver.clear();
    env.control(
        "/_sandbox/knobs",
        json!({"reorder": false, "duplicate": true, "drop": ["delivered"]}),
    )
    .await;
    env.send_text("15551234567").await;
    env.receiver.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let order: Vec<String> = env.receiver.statuses().into_iter().map(|s| s.0).collect();
    assert_eq!(order, ["sent", "sent", "read", "read"]);

    env.receiver.clear();
    env.control(
        "/_sandbox/knobs",
        json!({"duplicate": false, "drop": [], "fail_sends_with": 130429}),
    )
    .await;
    let (status, body) = env.send_text("15551234567").await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (400, Some(130429))
    );
    assert_eq!(body["error"]["message"], "(#130429) Rate limit hit");

    env.control("/_sandbox/knobs", json!({"fail_sends_with": 131047}))
        .await;
    let (status, body) = env.send_text("15551234567").await;
    assert_eq!(status, 200, "131047 is reported by webhook, as Meta does");
    let wamid = body["messages"][0]["id"].as_str().unwrap();
    let received = env.receiver.wait_for(1).await;
    let failed = &received[0].body["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert_eq!(
        (failed["status"].as_str(), failed["id"].as_str()),
        (Some("failed"), Some(wamid))
    );
    assert_eq!(failed["errors"][0]["code"], 131047);
    assert!(failed.get("pricing").is_none());

    let (status, knobs) = env
        .control("/_sandbox/knobs", json!({"fail_sends_with": null}))
        .await;
    assert_eq!(
        (status, knobs["fail_sends_with"].clone()),
        (200, Value::Null)
    );
    let (status, _) = env.control("/_sandbox/knobs", json!({"bogus": 1})).await;
    assert_eq!(status, 400);
    assert_eq!(env.send_text("15551234567").await.0, 200);
}

#[tokio::test]
async fn media_upload_get_download_and_delete() {
    let env = Env::start().await;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = upload(&env, TOKEN, "image/png", &bytes).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_digit()));

    let (status, meta) = env
        .graph(
            "GET",
            &format!("/v24.0/{id}?phone_number_id={PNID}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 200, "{meta}");
    use sha2::Digest as _;
    assert_eq!(meta["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(meta["file_size"], bytes.len());
    assert_eq!(meta["mime_type"], "image/png");
    assert_eq!(meta["messaging_product"], "whatsapp");
    let url = meta["url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/_sandbox/media/{id}/download", env.base));

    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        env.http
            .get(&url)
            .bearer_auth(TOKEN2)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let download = env.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "image/png");
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let (status, _) = env
        .graph("GET", &format!("/v24.0/{id}"), Some(TOKEN2), None)
        .await;
    assert_eq!(status, 401, "another WABA's token cannot read the media");
    let (status, _) = env
        .graph(
            "GET",
            &format!("/v24.0/{id}?phone_number_id=123"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(status, 400);

    let send = json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "image", "image": {"id": id}});
    assert_eq!(
        env.graph(
            "POST",
            &format!("/v24.0/{PNID}/messages"),
            Some(TOKEN),
            Some(send)
        )
        .await
        .0,
        200
    );

    let (status, body) = env
        .graph("DELETE", &format!("/v24.0/{id}"), Some(TOKEN), None)
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (status, body) = env
        .graph("GET", &format!("/v24.0/{id}"), Some(TOKEN), None)
        .await;
    assert_eq!(
        (status, body["error"]["error_subcode"].as_u64()),
        (400, Some(33))
    );
    assert_eq!(
        env.http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // Past axum's default 2 MB extractor limit: uploads stream up to Meta's 100 MiB.
    let large = vec![7u8; 3 * 1024 * 1024];
    let (status, body) = upload(&env, TOKEN, "video/mp4", &large).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = upload(&env, TOKEN, "application/zip", b"PK").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)));
    let (content_type, form) =
        multipart(&[("type", "image/png")], Some(("a.png", "image/png", b"x")));
    let response = env
        .http
        .post(env.url(&format!("/v24.0/{PNID}/media")))
        .bearer_auth(TOKEN)
        .header("content-type", content_type)
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messaging_product"));

    let log = env.get_json("/_sandbox/requests").await;
    let upload_entry = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == format!("/v24.0/{PNID}/media"))
        .unwrap();
    assert!(
        upload_entry["body"].as_str().unwrap().starts_with('<'),
        "{upload_entry}"
    );
}

#[tokio::test]
async fn templates_crud_review_and_paging() {
    let env = Env::start().await;
    let path = format!("/v23.0/{WABA}/message_templates");
    let (status, list) = env.graph("GET", &path, Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["name"], "hello_world");
    assert_eq!(list["data"][0]["status"], "APPROVED");
    assert!(list["paging"]["cursors"]["before"].is_string());

    let template = json!({
        "name": "order_update", "category": "utility", "language": "en_US",
        "components": [{"type": "BODY", "text": "Order {{1}} shipped"}, {"type": "FOOTER", "text": "wagate"}],
    });
    let mut bad = template.clone();
    bad["name"] = json!("Order Update");
    let (status, body) = env.graph("POST", &path, Some(TOKEN), Some(bad)).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)));
    let mut bad = template.clone();
    bad["components"] = json!([{"type": "FOOTER", "text": "x"}]);
    assert_eq!(
        env.graph("POST", &path, Some(TOKEN), Some(bad)).await.0,
        400
    );

    let (status, created) = env
        .graph("POST", &path, Some(TOKEN), Some(template.clone()))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["category"], "UTILITY");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, body) = env
        .graph("POST", &path, Some(TOKEN), Some(template.clone()))
        .await;
    assert_eq!(
        (status, body["error"]["error_subcode"].as_u64()),
        (400, Some(2388024))
    );

    let review = env.receiver.wait_for(1).await;
    let change = &review[0].body["entry"][0]["changes"][0];
    assert_eq!(change["field"], "message_template_status_update");
    assert_eq!(change["value"]["event"], "APPROVED");
    assert_eq!(change["value"]["message_template_name"], "order_update");
    let (status, one) = env
        .graph("GET", &format!("/v23.0/{id}"), Some(TOKEN), None)
        .await;
    assert_eq!((status, one["status"].as_str()), (200, Some("APPROVED")));

    let send = json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}}});
    assert_eq!(
        env.graph(
            "POST",
            &format!("/v23.0/{PNID}/messages"),
            Some(TOKEN),
            Some(send)
        )
        .await
        .0,
        200
    );

    let (_, page) = env
        .graph("GET", &format!("{path}?limit=1"), Some(TOKEN), None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let after = page["paging"]["cursors"]["after"].as_str().unwrap();
    assert!(page["paging"]["next"].is_string());
    let (_, next) = env
        .graph(
            "GET",
            &format!("{path}?limit=1&after={after}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_ne!(next["data"][0]["name"], page["data"][0]["name"]);
    let (_, filtered) = env
        .graph(
            "GET",
            &format!("{path}?name=order&status=APPROVED"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);

    let edit = json!({"components": [{"type": "BODY", "text": "Order {{1}} is on its way"}]});
    assert_eq!(
        env.graph("POST", &format!("/v23.0/{id}"), Some(TOKEN), Some(edit))
            .await
            .1,
        json!({"success": true})
    );
    let (_, one) = env
        .graph("GET", &format!("/v23.0/{id}"), Some(TOKEN), None)
        .await;
    assert_eq!(one["components"][0]["text"], "Order {{1}} is on its way");

    let (status, _) = env.graph("GET", &path, Some(TOKEN2), None).await;
    assert_eq!(status, 401, "another WABA's token");
    let (status, body) = env
        .graph(
            "DELETE",
            &format!("{path}?name=order_update"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    assert_eq!(
        env.graph("GET", &format!("/v23.0/{id}"), Some(TOKEN), None)
            .await
            .0,
        400
    );
    assert_eq!(
        env.graph(
            "DELETE",
            &format!("{path}?name=order_update"),
            Some(TOKEN),
            None
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn phone_node_profile_settings_and_registration() {
    let env = Env::start().await;
    let (status, node) = env
        .graph("GET", &format!("/v23.0/{PNID}"), Some(TOKEN), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(node["display_phone_number"], "+1 555-000-0001");
    assert_eq!(node["verified_name"], "wagate sandbox");
    assert_eq!(node["quality_rating"], "GREEN");
    assert_eq!(node["throughput"]["level"], "STANDARD");
    let (_, some) = env
        .graph(
            "GET",
            &format!("/v23.0/{PNID}?fields=verified_name,status"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(
        some,
        json!({"id": PNID, "verified_name": "wagate sandbox", "status": "CONNECTED"})
    );

    let profile_path = format!("/v23.0/{PNID}/whatsapp_business_profile");
    let (_, profile) = env.graph("GET", &profile_path, Some(TOKEN), None).await;
    assert_eq!(profile["data"][0]["messaging_product"], "whatsapp");
    assert!(profile["data"][0]["websites"].is_array());
    let update = json!({"messaging_product": "whatsapp", "about": "Open 9-5", "websites": ["https://example.com"]});
    assert_eq!(
        env.graph("POST", &profile_path, Some(TOKEN), Some(update))
            .await
            .1,
        json!({"success": true})
    );
    let (_, profile) = env
        .graph(
            "GET",
            &format!("{profile_path}?fields=about,websites"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(profile["data"][0]["about"], "Open 9-5");
    assert_eq!(
        profile["data"][0]["websites"],
        json!(["https://example.com"])
    );
    let bad = json!({"messaging_product": "whatsapp", "vertical": "SPACESHIPS"});
    assert_eq!(
        env.graph("POST", &profile_path, Some(TOKEN), Some(bad))
            .await
            .0,
        400
    );

    let settings = format!("/v23.0/{PNID}/settings");
    let enable = json!({"calling": {"status": "ENABLED"}});
    assert_eq!(
        env.graph("POST", &settings, Some(TOKEN), Some(enable))
            .await
            .0,
        200
    );
    let (_, stored) = env.graph("GET", &settings, Some(TOKEN), None).await;
    assert_eq!(stored["calling"]["status"], "ENABLED");
    assert_eq!(
        stored["user_identity_change"]["enable_identity_key_check"],
        false
    );

    let post = |edge: &str, body: Value| {
        let path = format!("/v23.0/{PNID}/{edge}");
        let env = &env;
        async move { env.graph("POST", &path, Some(TOKEN), Some(body)).await }
    };
    let (status, body) = post(
        "register",
        json!({"messaging_product": "whatsapp", "pin": "12"}),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)));
    assert_eq!(
        post("deregister", json!({})).await.1,
        json!({"success": true})
    );
    let (status, body) = env.send_text("15551234567").await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (400, Some(133010))
    );
    let (status, body) = post(
        "register",
        json!({"messaging_product": "whatsapp", "pin": "123456"}),
    )
    .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    assert_eq!(env.send_text("15551234567").await.0, 200);

    assert_eq!(
        post(
            "request_code",
            json!({"code_method": "FAX", "language": "en_US"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        post(
            "request_code",
            json!({"code_method": "SMS", "language": "en_US"})
        )
        .await
        .0,
        200
    );
    let (status, body) = post("verify_code", json!({"code": "000000"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (400, Some(136025))
    );
    assert_eq!(
        post("verify_code", json!({"code": "123456"})).await.1,
        json!({"success": true})
    );

    let (_, numbers) = env
        .graph(
            "GET",
            &format!("/v23.0/{WABA}/phone_numbers"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(numbers["data"][0]["id"], PNID);
    let (_, flows) = env
        .graph("GET", &format!("/v23.0/{PNID}/flows"), Some(TOKEN), None)
        .await;
    assert_eq!(flows["data"], json!([]));
    let flow = json!({"name": "signup", "categories": ["SIGN_UP"]});
    let (status, created) = post("flows", flow).await;
    assert_eq!((status, created["success"].as_bool()), (200, Some(true)));
    let (_, flows) = env
        .graph("GET", &format!("/v23.0/{PNID}/flows"), Some(TOKEN), None)
        .await;
    assert_eq!(flows["data"][0]["name"], "signup");
}

#[tokio::test]
async fn inbound_injection_of_several_types() {
    let env = Env::start().await;
    let (status, answer) = env
        .control("/_sandbox/inbound", json!({"phone_number_id": PNID, "type": "text", "text": {"body": "hello"}, "profile_name": "Ana"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["webhook_status"], 200);
    let received = env.receiver.wait_for(1).await;
    assert!(received[0].signature_ok);
    assert_eq!(received[0].body, answer["envelope"]);
    let value = &answer["envelope"]["entry"][0]["changes"][0]["value"];
    assert_eq!(answer["envelope"]["entry"][0]["id"], WABA);
    assert_eq!(
        value["contacts"][0],
        json!({"profile": {"name": "Ana"}, "wa_id": "15551234567"})
    );
    let message = &value["messages"][0];
    assert_eq!(
        (message["from"].as_str(), message["type"].as_str()),
        (Some("15551234567"), Some("text"))
    );
    assert_eq!(message["text"]["body"], "hello");
    assert!(message["id"].as_str().unwrap().starts_with("wamid."));
    assert!(message["timestamp"].is_string());

    // A BSUID-only user: no wa_id/from, but user_id/from_user_id.
    let (_, answer) = env
        .control("/_sandbox/inbound", json!({"phone_number_id": PNID, "user_id": "US.13491208655302741918",
            "parent_user_id": "US.ENT.11815799212886844830", "username": "@sheena", "type": "text"}))
        .await;
    let value = &answer["envelope"]["entry"][0]["changes"][0]["value"];
    let contact = &value["contacts"][0];
    assert!(contact.get("wa_id").is_none());
    assert_eq!(contact["user_id"], "US.13491208655302741918");
    assert_eq!(contact["parent_user_id"], "US.ENT.11815799212886844830");
    assert_eq!(contact["profile"]["username"], "@sheena");
    let message = &value["messages"][0];
    assert!(message.get("from").is_none());
    assert_eq!(message["from_user_id"], "US.13491208655302741918");
    assert_eq!(
        message["from_parent_user_id"],
        "US.ENT.11815799212886844830"
    );

    // Media messages point at real media the gateway can fetch with the number's token.
    let (_, answer) = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": PNID, "type": "image"}),
        )
        .await;
    let image = &answer["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0]["image"];
    let id = image["id"].as_str().unwrap();
    let (status, meta) = env
        .graph("GET", &format!("/v23.0/{id}"), Some(TOKEN), None)
        .await;
    assert_eq!(
        (status, meta["sha256"].clone()),
        (200, image["sha256"].clone())
    );
    let bytes = env
        .http
        .get(meta["url"].as_str().unwrap())
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));

    let interactive = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": PNID, "type": "list_reply"}),
        )
        .await
        .1;
    let payload = &interactive["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(payload["type"], "interactive");
    assert_eq!(payload["interactive"]["type"], "list_reply");
    assert!(payload["interactive"]["list_reply"]["id"].is_string());

    let flow = json!({"phone_number_id": PNID, "type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": "{\"flow_token\":\"t\"}"}}});
    let nfm = env.control("/_sandbox/inbound", flow).await.1;
    let reply = &nfm["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"]
        ["nfm_reply"];
    assert_eq!(
        (reply["name"].as_str(), reply["response_json"].as_str()),
        (Some("flow"), Some("{\"flow_token\":\"t\"}"))
    );

    let (_, sent) = env.send_text("15551234567").await;
    let wamid = sent["messages"][0]["id"].as_str().unwrap();
    let button = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": PNID, "type": "button"}),
        )
        .await
        .1;
    let message = &button["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(
        message["context"],
        json!({"from": "15550000001", "id": wamid})
    );
    assert_eq!(message["button"]["payload"], "sandbox-payload");

    for kind in [
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "reaction",
        "order",
        "system",
        "request_welcome",
        "referral",
    ] {
        let (status, answer) = env
            .control(
                "/_sandbox/inbound",
                json!({"phone_number_id": PNID, "type": kind, "deliver": false}),
            )
            .await;
        assert_eq!(status, 200, "{kind}: {answer}");
        assert_eq!(answer["webhook_status"], Value::Null);
        let message = &answer["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0];
        let wire = if kind == "referral" { "text" } else { kind };
        assert_eq!(message["type"], wire);
        if kind != "request_welcome" {
            assert!(!message[wire].is_null(), "{kind} has a payload: {message}");
        }
    }
    let unsupported = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": PNID, "type": "unsupported"}),
        )
        .await
        .1;
    let message = &unsupported["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(message["errors"][0]["code"], 131051);

    let duplicate =
        json!({"phone_number_id": PNID, "id": "wamid.DUPLICATE", "text": {"body": "twice"}});
    env.control("/_sandbox/inbound", duplicate.clone()).await;
    env.control("/_sandbox/inbound", duplicate).await;
    let copies = env
        .receiver
        .all()
        .into_iter()
        .filter(|r| {
            r.body["entry"][0]["changes"][0]["value"]["messages"][0]["id"] == "wamid.DUPLICATE"
        })
        .count();
    assert_eq!(copies, 2);

    assert_eq!(
        env.control(
            "/_sandbox/inbound",
            json!({"phone_number_id": "42", "type": "text"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        env.control(
            "/_sandbox/inbound",
            json!({"phone_number_id": PNID, "type": "fax"})
        )
        .await
        .0,
        400
    );
}

#[tokio::test]
async fn batch_merges_two_numbers_into_one_envelope() {
    let env = Env::start().await;
    let batch = json!({"envelopes": [
        {"phone_number_id": PNID, "type": "text", "text": {"body": "one"}},
        {"kind": "inbound", "phone_number_id": PNID2, "type": "text", "text": {"body": "two"}},
        {"phone_number_id": PNID, "type": "reaction"},
    ]});
    let (status, answer) = env.control("/_sandbox/batch", batch).await;
    assert_eq!(status, 200, "{answer}");
    let received = env.receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(env.receiver.all().len(), 1, "one POST for the whole batch");
    assert!(received[0].signature_ok);
    let entries = received[0].body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], WABA);
    assert_eq!(entries[0]["changes"].as_array().unwrap().len(), 2);
    assert_eq!(entries[1]["id"], WABA2);
    assert_eq!(
        entries[1]["changes"][0]["value"]["metadata"]["phone_number_id"],
        PNID2
    );
    assert_eq!(
        entries[1]["changes"][0]["value"]["messages"][0]["text"]["body"],
        "two"
    );
}

#[tokio::test]
async fn request_log_shows_what_graph_received() {
    let env = Env::start().await;
    env.http
        .post(env.url(&format!("/v23.0/{PNID}/messages?debug=all")))
        .bearer_auth(TOKEN)
        .header("x-forwarded-for", "10.0.0.1")
        .json(&json!({"messaging_product": "whatsapp", "to": "15551234567", "text": {"body": "logged"}}))
        .send()
        .await
        .unwrap();
    let log = env.get_json("/_sandbox/requests?limit=10").await;
    let entry = log["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["path"], format!("/v23.0/{PNID}/messages"));
    assert_eq!(entry["query"], "debug=all");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["headers"]["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(entry["headers"]["x-forwarded-for"], "10.0.0.1");
    assert!(entry["body"].as_str().unwrap().contains("\"logged\""));

    let cleared = env
        .http
        .delete(env.url("/_sandbox/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(env.get_json("/_sandbox/requests").await["data"], json!([]));
    assert_eq!(
        env.get_json("/_sandbox/health").await,
        json!({"status": "ok"})
    );
}

#[tokio::test]
async fn injected_statuses_calls_and_identity_events() {
    let env = Env::start().await;
    env.control(
        "/_sandbox/knobs",
        json!({"drop": ["sent", "delivered", "read"]}),
    )
    .await;
    let (_, sent) = env.send_text("15551234567").await;
    let wamid = sent["messages"][0]["id"].as_str().unwrap();
    let (status, answer) = env
        .control("/_sandbox/statuses", json!({"id": wamid, "statuses": ["read", "sent", "sent", {"status": "failed", "error_code": 131049}]}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let statuses = answer["envelope"]["entry"][0]["changes"][0]["value"]["statuses"]
        .as_array()
        .unwrap()
        .clone();
    let order: Vec<&str> = statuses
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["read", "sent", "sent", "failed"]);
    assert_eq!(statuses[1]["recipient_id"], "15551234567");
    assert_eq!(statuses[3]["errors"][0]["code"], 131049);

    let (status, call) = env
        .control(
            "/_sandbox/calls",
            json!({"phone_number_id": PNID, "event": "connect"}),
        )
        .await;
    assert_eq!(status, 200, "{call}");
    let value = &call["envelope"]["entry"][0]["changes"][0];
    assert_eq!(value["field"], "calls");
    let connect = &value["value"]["calls"][0];
    assert_eq!(
        (
            connect["event"].as_str(),
            connect["from"].as_str(),
            connect["to"].as_str()
        ),
        (Some("connect"), Some("15551234567"), Some("15550000001"))
    );
    assert_eq!(connect["session"]["sdp_type"], "offer");
    let call_id = connect["id"].as_str().unwrap();
    assert!(call_id.starts_with("wacid."));
    let accept = json!({"messaging_product": "whatsapp", "call_id": call_id, "action": "accept", "session": {"sdp_type": "answer", "sdp": "v=0"}});
    let (status, body) = env
        .graph(
            "POST",
            &format!("/v23.0/{PNID}/calls"),
            Some(TOKEN),
            Some(accept),
        )
        .await;
    assert_eq!((status, body["success"].as_bool()), (200, Some(true)));
    let (_, ended) = env.control("/_sandbox/calls", json!({"phone_number_id": PNID, "event": "terminate", "call_id": call_id, "duration": 30})).await;
    let terminate = &ended["envelope"]["entry"][0]["changes"][0]["value"]["calls"][0];
    assert_eq!(
        (terminate["status"].as_str(), terminate["duration"].as_i64()),
        (Some("COMPLETED"), Some(30))
    );

    let (_, update) = env
        .control(
            "/_sandbox/username_update",
            json!({"phone_number_id": PNID, "username": "wagate_demo", "status": "approved"}),
        )
        .await;
    let change = &update["envelope"]["entry"][0]["changes"][0];
    assert_eq!(change["field"], "business_username_updates");
    assert_eq!(
        change["value"],
        json!({"display_phone_number": "15550000001", "username": "wagate_demo", "status": "approved"})
    );
    assert!(update["envelope"]["entry"][0]["time"].is_i64());
    let (_, username) = env
        .graph("GET", &format!("/v23.0/{PNID}/username"), Some(TOKEN), None)
        .await;
    assert_eq!(
        username,
        json!({"username": "wagate_demo", "status": "approved"})
    );

    let rotate = json!({"phone_number_id": PNID, "wa_id": "15557654321", "previous": "US.1349", "current": "US.2481"});
    let (_, rotated) = env.control("/_sandbox/user_id_update", rotate).await;
    let change = &rotated["envelope"]["entry"][0]["changes"][0];
    assert_eq!(change["field"], "user_id_update");
    assert_eq!(
        change["value"]["user_id_update"][0]["user_id"],
        json!({"previous": "US.1349", "current": "US.2481"})
    );
    assert_eq!(change["value"]["user_id_update"][0]["wa_id"], "15557654321");
}

#[tokio::test]
async fn calls_permissions_usernames_and_oauth() {
    let env = Env::start().await;
    let permissions = format!("/v23.0/{PNID}/call_permissions?user_wa_id=15551234567");
    let (status, before) = env.graph("GET", &permissions, Some(TOKEN), None).await;
    assert_eq!(
        (status, before["permission"]["status"].as_str()),
        (200, Some("no_permission"))
    );
    env.control(
        "/_sandbox/inbound",
        json!({"phone_number_id": PNID, "type": "call_permission_reply"}),
    )
    .await;
    let (_, after) = env.graph("GET", &permissions, Some(TOKEN), None).await;
    assert_eq!(after["permission"]["status"], "temporary");
    assert_eq!(after["actions"][1]["action_name"], "start_call");

    let connect = json!({"messaging_product": "whatsapp", "to": "15551234567", "action": "connect", "session": {"sdp_type": "offer", "sdp": "v=0"}});
    let (status, body) = env
        .graph(
            "POST",
            &format!("/v23.0/{PNID}/calls"),
            Some(TOKEN),
            Some(connect),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["calls"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("wacid."));
    let (status, _) = env
        .graph(
            "POST",
            &format!("/v23.0/{PNID}/calls"),
            Some(TOKEN),
            Some(json!({"messaging_product": "whatsapp", "action": "dance"})),
        )
        .await;
    assert_eq!(status, 400);

    let claim = |name: &str, pnid: &str, token: &str| {
        let (env, path, body) = (
            &env,
            format!("/v23.0/{pnid}/username"),
            json!({"username": name}),
        );
        let token = token.to_owned();
        async move { env.graph("POST", &path, Some(&token), Some(body)).await }
    };
    assert_eq!(claim("no", PNID, TOKEN).await.1["error"]["code"], 100);
    assert_eq!(
        claim("whatsapp", PNID, TOKEN).await.1["error"]["code"],
        147001
    );
    assert_eq!(
        claim("wagate_team", PNID, TOKEN).await.1,
        json!({"status": "reserved"})
    );
    assert_eq!(
        claim("wagate_team", PNID2, TOKEN2).await.1["error"]["code"],
        147001
    );
    let (_, suggestions) = env
        .graph(
            "GET",
            &format!("/v23.0/{PNID}/username_suggestions"),
            Some(TOKEN),
            None,
        )
        .await;
    assert!(suggestions["data"][0]["username_suggestions"]
        .as_array()
        .unwrap()
        .contains(&json!("wagate_sandbox")));

    let exchange = format!("/v23.0/oauth/access_token?client_id=900000000000001&client_secret={SECRET}&code=sandbox-code-{PNID}");
    let (status, token) = env.graph("GET", &exchange, None, None).await;
    assert_eq!((status, token["access_token"].as_str()), (200, Some(TOKEN)));
    let (status, body) = env
        .graph(
            "GET",
            "/v23.0/oauth/access_token?client_id=900000000000001&client_secret=nope&code=x",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("OAuthException"))
    );
    let (_, debug) = env
        .graph(
            "GET",
            &format!("/v23.0/debug_token?input_token={TOKEN}"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(
        debug["data"]["granular_scopes"][0]["target_ids"],
        json!([WABA])
    );
}

/// The `business_username_updates` values received so far, in order.
fn username_updates(receiver: &Receiver) -> Vec<Value> {
    receiver
        .all()
        .iter()
        .filter(|r| r.body["entry"][0]["changes"][0]["field"] == "business_username_updates")
        .map(|r| {
            assert!(r.signature_ok, "signed like Meta");
            assert!(r.body["entry"][0]["time"].is_i64());
            r.body["entry"][0]["changes"][0]["value"].clone()
        })
        .collect()
}

#[tokio::test]
async fn usernames_claim_transfer_launch_and_delete_with_webhooks() {
    let env = Env::start().await;
    // A second number in the first portfolio (WABA), and an unregistered one.
    const PNID_B: &str = "100000000000009";
    const TOKEN_B: &str = "sandbox-token-b";
    env.sandbox
        .add_number(SandboxNumber {
            phone_number_id: PNID_B.into(),
            business_account_id: WABA.into(),
            access_token: TOKEN_B.into(),
            display_phone_number: "+1 555-000-0009".into(),
            verified_name: "Acme Team".into(),
        })
        .unwrap();
    env.control(
        "/_sandbox/numbers",
        json!({"phone_number_id": "100000000000008", "business_account_id": WABA, "access_token": "t8", "registered": false}),
    )
    .await;
    let path = |pnid: &str| format!("/v24.0/{pnid}/username");
    let claim = |pnid: &'static str, token: &'static str, body: Value| {
        let (env, path) = (&env, path(pnid));
        async move { env.graph("POST", &path, Some(token), Some(body)).await }
    };

    // Meta's format rules, each with its own details; nothing changes, nothing is sent.
    for (name, details) in [
        ("ab", "must be 3 to 35 characters long"),
        ("acme-team", "may only contain English letters"),
        ("1234", "must contain at least one letter"),
        ("acme.", "must not start or end with a period"),
        ("ac..me", "must not contain two periods in a row"),
        ("wwwacme", "must not start with www"),
        ("acme.io", "must not end with a domain suffix"),
    ] {
        let (status, body) = claim(PNID, TOKEN, json!({"username": name})).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (400, Some(100)),
            "{name}"
        );
        let got = body["error"]["error_data"]["details"].as_str().unwrap();
        assert!(
            got.starts_with(&format!("Param username {details}")),
            "{name}: {got}"
        );
    }
    let (status, body) = claim(
        PNID,
        TOKEN,
        json!({"username": "acme_team", "transfer_action": "steal"}),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(100)));
    let (status, body) = claim(PNID, TOKEN, json!({})).await;
    assert_eq!((status, body["error"]["code"].as_i64()), (400, Some(100)));
    let (status, body) = claim("100000000000008", "t8", json!({"username": "acme_team"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(133010))
    );
    let (status, body) = env
        .graph(
            "POST",
            &path(PNID),
            Some(TOKEN2),
            Some(json!({"username": "acme_team"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (401, Some(190)),
        "another business's token"
    );
    assert_eq!(
        env.graph("GET", &path(PNID), Some(TOKEN), None).await,
        (200, json!({}))
    );

    // Claim: reserved until the launch, one webhook.
    assert_eq!(
        claim(PNID, TOKEN, json!({"username": "Acme_Team"})).await,
        (200, json!({"status": "reserved"}))
    );
    env.receiver.wait_for(1).await;
    assert_eq!(
        username_updates(&env.receiver),
        [
            json!({"display_phone_number": "15550000001", "username": "Acme_Team", "status": "reserved"})
        ]
    );
    assert_eq!(
        env.graph("GET", &path(PNID), Some(TOKEN), None).await,
        (200, json!({"username": "Acme_Team", "status": "reserved"}))
    );
    // Claiming it again changes nothing.
    assert_eq!(
        claim(PNID, TOKEN, json!({"username": "acme_team"})).await,
        (200, json!({"status": "reserved"}))
    );
    // Another portfolio: not available; the same portfolio: only with force_transfer.
    let (status, body) = claim(
        PNID2,
        TOKEN2,
        json!({"username": "ACME_TEAM", "transfer_action": "force_transfer"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(147001))
    );
    let (status, body) = claim(
        PNID_B,
        TOKEN_B,
        json!({"username": "acme_team", "transfer_action": "none"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(147005)),
        "{body}"
    );
    assert_eq!(
        username_updates(&env.receiver).len(),
        1,
        "refusals send nothing"
    );
    // `.` and `_` are different names.
    let (status, _) = claim(PNID2, TOKEN2, json!({"username": "acme.team"})).await;
    assert_eq!(status, 200);

    assert_eq!(
        claim(
            PNID_B,
            TOKEN_B,
            json!({"username": "acme_team", "transfer_action": "force_transfer"})
        )
        .await,
        (200, json!({"status": "reserved"}))
    );
    assert_eq!(
        env.graph("GET", &path(PNID), Some(TOKEN), None).await,
        (200, json!({"status": "deleted"}))
    );
    assert_eq!(
        env.graph("GET", &path(PNID_B), Some(TOKEN_B), None).await,
        (200, json!({"username": "acme_team", "status": "reserved"}))
    );
    let (_, suggestions) = env
        .graph(
            "GET",
            &format!("/v24.0/{PNID_B}/username_suggestions"),
            Some(TOKEN_B),
            None,
        )
        .await;
    let suggested = suggestions["data"][0]["username_suggestions"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        !suggested.contains(&json!("acme_team")),
        "taken names are not suggested"
    );
    assert!(
        suggested.contains(&json!("acme_team_official")),
        "{suggestions}"
    );

    // The launch approves what is reserved (everywhere, or for one number).
    let (status, _) = env
        .control(
            "/_sandbox/usernames/launch",
            json!({"phone_number_id": "999"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, launched) = env
        .control(
            "/_sandbox/usernames/launch",
            json!({"phone_number_id": PNID2}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(launched["launched"], false);
    assert_eq!(launched["approved"][0]["username"], "acme.team");
    let (_, launched) = env.control("/_sandbox/usernames/launch", json!({})).await;
    assert_eq!(launched["launched"], true);
    assert_eq!(
        launched["approved"],
        json!([{"phone_number_id": PNID_B, "username": "acme_team", "webhook_status": 200}])
    );
    assert_eq!(
        env.graph("GET", &path(PNID_B), Some(TOKEN_B), None).await,
        (200, json!({"username": "acme_team", "status": "approved"}))
    );
    assert_eq!(
        claim(PNID, TOKEN, json!({"username": "acme_help"})).await,
        (200, json!({"status": "approved"}))
    );

    // Delete: a webhook when there was something to delete.
    assert_eq!(
        env.graph("DELETE", &path(PNID_B), Some(TOKEN_B), None)
            .await,
        (200, json!({"success": true}))
    );
    assert_eq!(
        env.graph("DELETE", &path(PNID_B), Some(TOKEN_B), None)
            .await,
        (200, json!({"success": true}))
    );
    assert_eq!(
        env.graph("GET", &path(PNID_B), Some(TOKEN_B), None).await,
        (200, json!({"status": "deleted"}))
    );

    // Eligibility errors on demand.
    env.control("/_sandbox/knobs", json!({"fail_usernames_with": 147004}))
        .await;
    let (status, body) = claim(PNID_B, TOKEN_B, json!({"username": "acme_again"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(147004))
    );
    let (_, knobs) = env
        .control("/_sandbox/knobs", json!({"fail_usernames_with": null}))
        .await;
    assert_eq!(knobs["fail_usernames_with"], Value::Null);

    let updates: Vec<(String, Value, String)> = username_updates(&env.receiver)
        .into_iter()
        .map(|v| {
            (
                v["display_phone_number"].as_str().unwrap().to_owned(),
                v["username"].clone(),
                v["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("15550000001", json!("Acme_Team"), "reserved"),
        ("15550000002", json!("acme.team"), "reserved"),
        ("15550000001", Value::Null, "deleted"),
        ("15550000009", json!("acme_team"), "reserved"),
        ("15550000002", json!("acme.team"), "approved"),
        ("15550000009", json!("acme_team"), "approved"),
        ("15550000001", json!("acme_help"), "approved"),
        ("15550000009", Value::Null, "deleted"),
    ]
    .map(|(d, u, s)| (d.to_owned(), u, s.to_owned()));
    assert_eq!(updates, expected);
    // The second portfolio's webhooks carry its WABA.
    let second = env
        .receiver
        .all()
        .into_iter()
        .find(|r| {
            r.body["entry"][0]["changes"][0]["value"]["display_phone_number"] == "15550000002"
        })
        .unwrap();
    assert_eq!(second.body["entry"][0]["id"], WABA2);
    let numbers = env.get_json("/_sandbox/numbers").await;
    let b = numbers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["phone_number_id"] == PNID_B)
        .unwrap()
        .clone();
    assert_eq!(
        (b["username"].clone(), b["username_status"].clone()),
        (Value::Null, json!("deleted"))
    );
}

#[tokio::test]
async fn authentication_templates_cannot_go_to_bsuids() {
    let env = Env::start().await;
    let (status, created) = env
        .graph(
            "POST",
            &format!("/v24.0/{WABA}/message_templates"),
            Some(TOKEN),
            Some(json!({"name": "login_code", "language": "en_US", "category": "AUTHENTICATION", "components": [{"type": "BODY"}]})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    for _ in 0..300 {
        let (_, template) = env
            .graph("GET", &format!("/v24.0/{id}"), Some(TOKEN), None)
            .await;
        if template["status"] == "APPROVED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let template = json!({"name": "login_code", "language": {"code": "en_US"}});
    for addressed in [
        json!({"recipient": "US.13491208655302741918"}),
        json!({"recipient": "US.ENT.11815799212886844830"}),
        json!({"to": "US.13491208655302741918"}),
    ] {
        let mut body =
            json!({"messaging_product": "whatsapp", "type": "template", "template": template});
        for (k, v) in addressed.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = env
            .graph(
                "POST",
                &format!("/v24.0/{PNID}/messages"),
                Some(TOKEN),
                Some(body),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_i64()),
            (400, Some(131062)),
            "{addressed}"
        );
    }
    // By phone it goes; `to` wins over `recipient`.
    let body = json!({"messaging_product": "whatsapp", "to": "15551234567", "recipient": "US.1", "type": "template", "template": template});
    let (status, answer) = env
        .graph(
            "POST",
            &format!("/v24.0/{PNID}/messages"),
            Some(TOKEN),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["contacts"],
        json!([{"input": "15551234567", "wa_id": "15551234567"}])
    );
}

#[tokio::test]
async fn subscribed_apps_route_and_gate_webhooks() {
    let env = Env::start().await;
    let path = format!("/v23.0/{WABA}/subscribed_apps");
    let (_, apps) = env.graph("GET", &path, Some(TOKEN), None).await;
    assert_eq!(
        apps["data"][0]["whatsapp_business_api_data"]["id"],
        "900000000000001"
    );

    assert_eq!(
        env.graph("DELETE", &path, Some(TOKEN), None).await.1,
        json!({"success": true})
    );
    let (_, answer) = env
        .control("/_sandbox/inbound", json!({"phone_number_id": PNID}))
        .await;
    assert_eq!(answer["webhook_status"], Value::Null);
    assert!(answer["webhook_error"]
        .as_str()
        .unwrap()
        .contains("subscribed"));

    let bad = json!({"override_callback_uri": env.hook_url, "verify_token": "wrong"});
    let (status, body) = env.graph("POST", &path, Some(TOKEN), Some(bad)).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(2200)));
    env.sandbox.set_webhook_url(None);
    let good = json!({"override_callback_uri": env.hook_url, "verify_token": "verify-me"});
    assert_eq!(
        env.graph("POST", &path, Some(TOKEN), Some(good)).await.1,
        json!({"success": true})
    );
    let (_, answer) = env
        .control("/_sandbox/inbound", json!({"phone_number_id": PNID}))
        .await;
    assert_eq!(
        answer["webhook_status"], 200,
        "the override receives webhooks without a global URL"
    );
    let (_, other) = env
        .control("/_sandbox/inbound", json!({"phone_number_id": PNID2}))
        .await;
    assert_eq!(other["webhook_status"], Value::Null);
}

#[tokio::test]
async fn raw_envelopes_can_carry_bad_signatures_and_numbers_can_be_added() {
    let env = Env::start().await;
    let envelope =
        json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": []}]});
    let (_, answer) = env
        .control(
            "/_sandbox/raw",
            json!({"envelope": envelope, "signature": "sha256=00"}),
        )
        .await;
    assert_eq!(answer["webhook_status"], 200);
    env.control("/_sandbox/raw", json!({"envelope": envelope}))
        .await;
    let received = env.receiver.wait_for(2).await;
    assert!(!received[0].signature_ok);
    assert!(received[1].signature_ok);
    assert_eq!(received[1].body, envelope);

    let number = json!({"phone_number_id": "100000000000003", "business_account_id": "200000000000003", "access_token": "t3"});
    let (status, created) = env.control("/_sandbox/numbers", number).await;
    assert_eq!((status, created["registered"].as_bool()), (201, Some(true)));
    let (status, node) = env
        .graph("GET", "/v23.0/100000000000003", Some("t3"), None)
        .await;
    assert_eq!(
        (status, node["id"].as_str()),
        (200, Some("100000000000003"))
    );
    let (status, _) = env
        .control("/_sandbox/numbers", json!({"phone_number_id": "x"}))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let sandbox = Sandbox::new(SandboxConfig::demo());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sandbox.serve(listener, async move {
        let _ = stopped.await;
    }));
    let health: Value = reqwest::get(format!("http://{addr}/_sandbox/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
