//! The proxy in front of the Graph emulator (`wagate sandbox`): real Meta-shaped answers.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;
use wagate::sandbox::Sandbox;

use crate::common::receiver::Hook;
use crate::common::{emulator, TestApp};

const V: &str = "/meta/whatsapp/v24.0";

struct Env {
    app: TestApp,
    sandbox: Sandbox,
    sandbox_url: String,
    pnid: String,
    waba: String,
    token: String,
}

async fn env(backend: Backend) -> Env {
    let mut number = None;
    let (sandbox, sandbox_url) = emulator(|config| {
        config.status_delay = Duration::from_millis(10);
        number = Some(config.numbers[0].clone());
    })
    .await;
    let number = number.unwrap();
    let app = TestApp::spawn_against(backend, &sandbox_url, |_| {}).await;
    app.connect_emulator_number(&number).await;
    Env {
        app,
        sandbox,
        sandbox_url,
        pnid: number.phone_number_id,
        waba: number.business_account_id,
        token: number.access_token,
    }
}

async fn sends_return_wamids_and_signed_statuses_follow(backend: Backend) {
    let env = env(backend).await;
    let receiver = Hook::start().await;
    env.sandbox.set_webhook_url(Some(receiver.url.clone()));
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{}/messages", env.pnid))
        .json(&json!({"messaging_product": "whatsapp", "to": "+15551234567", "type": "text", "text": {"body": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["contacts"][0]["input"], "+15551234567");
    let wamid = body["messages"][0]["id"].as_str().unwrap().to_owned();
    assert!(wamid.starts_with("wamid."));

    let hooks = receiver.wait_for(3, Duration::from_secs(10)).await;
    let statuses: Vec<String> = hooks
        .iter()
        .map(|h| {
            h.json()["entry"][0]["changes"][0]["value"]["statuses"][0]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, ["sent", "delivered", "read"]);
    for hook in &hooks {
        let signature = hook.headers["x-hub-signature-256"].to_str().unwrap();
        assert!(wagate::crypto::verify_hub_signature(
            b"sandbox-app-secret",
            &hook.body,
            signature
        ));
        assert_eq!(
            hook.json()["entry"][0]["changes"][0]["value"]["statuses"][0]["id"],
            wamid.as_str()
        );
    }
}

async fn meta_validation_errors_come_back_unchanged(backend: Backend) {
    let env = env(backend).await;
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{}/messages", env.pnid))
        .json(&json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "no recipient"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 100);
    assert!(body["error"]["fbtrace_id"].is_string());

    // Connecting proves control with Graph: a token Meta refuses, a number it does not know, or a
    // number outside the given WABA is refused (422), and a stranger learns nothing (no 409).
    let (_, other_key) = env.app.other_project().await;
    let cases = [
        (
            json!({"phone_number_id": env.pnid, "business_account_id": env.waba, "access_token": "stolen-guess"}),
            "access_token",
        ),
        (
            json!({"phone_number_id": "100000000000077", "business_account_id": env.waba, "access_token": env.token}),
            "access_token",
        ),
        (
            json!({"phone_number_id": env.pnid, "business_account_id": "299999999999999", "access_token": env.token}),
            "business_account_id",
        ),
    ];
    for (input, field) in cases {
        let response = env
            .app
            .request_with_key(
                Method::POST,
                "/platform/v1/whatsapp/phone_numbers",
                &other_key,
            )
            .json(&json!({ "whatsapp_phone_number": input }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{input}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"][0]["field"], field, "{body}");
    }
    let mine = env
        .app
        .store
        .find_phone_number(&env.pnid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mine.project_id, env.app.project_id,
        "still the rightful owner's"
    );
    // Meta's details are taken from Graph, not from the caller.
    assert_eq!(mine.verified_name.as_deref(), Some("wagate sandbox"));
    // A new token is verified the same way.
    let patch = env
        .app
        .request(
            Method::PATCH,
            &format!("/platform/v1/whatsapp/phone_numbers/{}", env.pnid),
        )
        .json(&json!({"whatsapp_phone_number": {"access_token": "not-the-token"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 422);
}

async fn media_templates_profile_and_registration(backend: Backend) {
    let env = env(backend).await;
    // Upload through the proxy (multipart, streamed).
    let boundary = "b0undary";
    let png: &[u8] = b"\x89PNG\r\n\x1a\n0000";
    let body = crate::common::media_upload(boundary, "a.png", "image/png", png);
    let response = env
        .app
        .request(Method::POST, &format!("{V}/{}/media", env.pnid))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let media_id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let meta: Value = env
        .app
        .request(
            Method::GET,
            &format!("{V}/{media_id}?phone_number_id={}", env.pnid),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["id"], media_id.as_str());
    assert_eq!(meta["mime_type"], "image/png");
    // Graph's URL needs the number's token, so wagate hands out its own short-lived signed link
    // (in `url` too: the Python SDK only reads `url`), which needs no credentials.
    let url = meta["url"].as_str().unwrap();
    assert!(url.starts_with(&env.app.base), "{url}");
    assert_eq!(meta["download_url"], url);
    assert!(meta["download_url_expires_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let downloaded = env.app.client.get(url).send().await.unwrap();
    assert_eq!(downloaded.status(), 200);
    assert_eq!(downloaded.headers()["content-type"], "image/png");
    assert_eq!(&downloaded.bytes().await.unwrap()[..], png);
    let tampered = url.replace("token=", "token=x");
    let refused = env.app.client.get(&tampered).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    // The Graph request carried the number's token, never the caller's key.
    let log: Value = env
        .app
        .client
        .get(format!("{}/_sandbox/requests", env.sandbox_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fetch = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["path"].as_str().unwrap().contains("/download"))
        .unwrap();
    assert_eq!(
        fetch["headers"]["authorization"],
        format!("Bearer {}", env.token).as_str()
    );

    let deleted = env
        .app
        .request(
            Method::DELETE,
            &format!("{V}/{media_id}?phone_number_id={}", env.pnid),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);

    // One template by id: the JS SDK's `{waba}/message_templates/{id}` and the Python SDK's bare
    // `/{id}` (this project has a single number, so no phone_number_id is needed).
    let list: Value = env
        .app
        .request(Method::GET, &format!("{V}/{}/message_templates", env.waba))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let template_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("{}/message_templates/{template_id}", env.waba),
        template_id.clone(),
    ] {
        let one: Value = env
            .app
            .request(Method::GET, &format!("{V}/{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one["id"], template_id.as_str(), "{path}: {one}");
    }

    let templates: Value = env
        .app
        .request(
            Method::GET,
            &format!("{V}/{}/message_templates?limit=10", env.waba),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(templates["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "hello_world"));
    assert!(templates["paging"]["cursors"].is_object());

    let profile = env
        .app
        .request(
            Method::POST,
            &format!("{V}/{}/whatsapp_business_profile", env.pnid),
        )
        .json(&json!({"messaging_product": "whatsapp", "about": "Open 9-5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);
    let profile: Value = env
        .app
        .request(
            Method::GET,
            &format!("{V}/{}/whatsapp_business_profile", env.pnid),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(profile["data"][0]["about"], "Open 9-5");

    let register = env
        .app
        .request(Method::POST, &format!("{V}/{}/register", env.pnid))
        .json(&json!({"messaging_product": "whatsapp", "pin": "123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 200);
    let bad_pin = env
        .app
        .request(Method::POST, &format!("{V}/{}/register", env.pnid))
        .json(&json!({"messaging_product": "whatsapp", "pin": "12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_pin.status(), 400);
}

crate::both_backends!(backend:
    sends_return_wamids_and_signed_statuses_follow,
    meta_validation_errors_come_back_unchanged,
    media_templates_profile_and_registration
);
