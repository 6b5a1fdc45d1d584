//! Business usernames through the proxy (local checks, Meta's errors, recorded state) and
//! business-scoped user IDs end to end, against the recording Graph mock and the emulator, on
//! both backends.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;
use wagate::sandbox::SandboxNumber;
use wagate::store::StoreInspect as _;

use crate::common::app::json_of;
use crate::common::graph::Canned;
use crate::common::TestApp;
use crate::ingest::{Env, PNID, WABA};

const V: &str = "/meta/whatsapp/v24.0";
/// The number connected against the Graph mock.
const MOCK_PNID: &str = "1001";

async fn claim(app: &TestApp, pnid: &str, body: Value) -> (u16, Value) {
    json_of(
        app.request(Method::POST, &format!("{V}/{pnid}/username"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `(username, username_status)` as the Platform phone-number object shows them.
async fn platform_username(app: &TestApp, pnid: &str) -> (Value, Value) {
    let (status, body) = json_of(
        app.request(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{pnid}"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["data"]["username"].clone(),
        body["data"]["username_status"].clone(),
    )
}

fn canned(app: &TestApp, status: u16, body: &[u8]) {
    app.graph.respond(Canned {
        status,
        content_type: "application/json; charset=UTF-8",
        body: body.to_vec(),
        delay: Duration::ZERO,
    });
}

/// Every format rule, each with its own details, checked before Meta is called; valid names
/// (and the request bytes) reach Meta untouched.
async fn claims_are_checked_before_meta(app: TestApp) {
    app.connect_number(&app.api_key, MOCK_PNID, "2001", "EAAG-token")
        .await;
    let before = app.graph.recorded().len();
    let rejected: [(Value, &str); 24] = [
        (
            json!({"username": "ab"}),
            "username: must be 3 to 35 characters long",
        ),
        (
            json!({"username": ""}),
            "username: must be 3 to 35 characters long",
        ),
        (
            json!({"username": "a".repeat(36)}),
            "username: must be 3 to 35 characters long",
        ),
        (
            json!({"username": "acme-support"}),
            "username: may only contain English letters, digits, periods (.) and underscores (_)",
        ),
        (
            json!({"username": "@acme"}),
            "username: may only contain English letters",
        ),
        (
            json!({"username": "acme support"}),
            "username: may only contain English letters",
        ),
        (
            json!({"username": "acmé"}),
            "username: may only contain English letters",
        ),
        (
            json!({"username": "1234"}),
            "username: must contain at least one letter",
        ),
        (
            json!({"username": "12_3.4"}),
            "username: must contain at least one letter",
        ),
        (
            json!({"username": ".acme"}),
            "username: must not start or end with a period",
        ),
        (
            json!({"username": "acme."}),
            "username: must not start or end with a period",
        ),
        (
            json!({"username": "ac..me"}),
            "username: must not contain two periods in a row",
        ),
        (
            json!({"username": "wwwacme"}),
            "username: must not start with www",
        ),
        (
            json!({"username": "WWW.acme"}),
            "username: must not start with www",
        ),
        (
            json!({"username": "acme.com"}),
            "username: must not end with a domain suffix",
        ),
        (
            json!({"username": "acme.ORG"}),
            "username: must not end with a domain suffix",
        ),
        (
            json!({"username": "acme.net"}),
            "username: must not end with a domain suffix",
        ),
        (
            json!({"username": "acme.io"}),
            "username: must not end with a domain suffix",
        ),
        (
            json!({"username": "acme.ai"}),
            "username: must not end with a domain suffix",
        ),
        (
            json!({"username": "acme_team", "transfer_action": "steal"}),
            "transfer_action: must be none or force_transfer",
        ),
        (
            json!({"username": "acme_team", "transfer_action": "FORCE_TRANSFER"}),
            "transfer_action: must be none or force_transfer",
        ),
        (
            json!({"username": "acme_team", "transfer_action": true}),
            "transfer_action: must be none or force_transfer",
        ),
        (json!({"transfer_action": "none"}), "username: required"),
        (json!({"username": 42}), "username: must be a string"),
    ];
    for (body, details) in rejected {
        let (status, answer) = claim(&app, MOCK_PNID, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        let error = &answer["error"];
        assert_eq!(error["code"], 100, "{body}: {answer}");
        assert_eq!(error["message"], "(#100) Invalid parameter");
        assert!(error["fbtrace_id"].is_string());
        let got = error["error_data"]["details"].as_str().unwrap_or_default();
        assert!(got.starts_with(details), "{body}: {got}");
    }
    // Malformed bodies.
    for raw in ["{not json", "[\"acme\"]", "\"acme\""] {
        let (status, answer) = json_of(
            app.request(Method::POST, &format!("{V}/{MOCK_PNID}/username"))
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_i64()),
            (400, Some(100)),
            "{raw}: {answer}"
        );
        assert!(answer["error"]["error_data"]["details"]
            .as_str()
            .unwrap()
            .starts_with("body: "));
    }
    let (status, answer) = json_of(
        app.request(Method::POST, &format!("{V}/{MOCK_PNID}/username"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(100)));
    assert_eq!(
        app.graph.recorded().len(),
        before,
        "no rejected claim reached Meta"
    );
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (Value::Null, Value::Null)
    );

    // Accepted names, case kept: the bytes Meta gets are the caller's.
    canned(&app, 200, br#"{"status":"reserved"}"#);
    for name in [
        "abc",
        "Acme_Support",
        "acme.team",
        "a1_",
        "_acme_",
        "shop.comics",
        "acme_com",
        "my.www",
        "x2345678901234567890123456789012345",
    ] {
        for action in [None, Some("none"), Some("force_transfer")] {
            let mut body = json!({"username": name});
            if let Some(action) = action {
                body["transfer_action"] = json!(action);
            }
            let raw = body.to_string();
            let (status, answer) = json_of(
                app.request(Method::POST, &format!("{V}/{MOCK_PNID}/username"))
                    .header("content-type", "application/json")
                    .body(raw.clone())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (status, &answer),
                (200, &json!({"status": "reserved"})),
                "{raw}"
            );
            let seen = app.graph.last();
            assert_eq!(seen.method, Method::POST);
            assert_eq!(seen.path_and_query, format!("/v24.0/{MOCK_PNID}/username"));
            assert_eq!(seen.body, raw.as_bytes(), "forwarded untouched");
            assert_eq!(seen.headers["authorization"], "Bearer EAAG-token");
        }
        assert_eq!(
            platform_username(&app, MOCK_PNID).await,
            (json!(name), json!("reserved"))
        );
    }
    // A form body and query parameters are read like Graph reads them.
    let (status, _) = json_of(
        app.request(Method::POST, &format!("{V}/{MOCK_PNID}/username"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=acme.form&transfer_action=none")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let count = app.graph.recorded().len();
    let (status, answer) = json_of(
        app.request(
            Method::POST,
            &format!("{V}/{MOCK_PNID}/username?username=acme.com"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(app.graph.recorded().len(), count);

    // Suggestions are a plain passthrough.
    canned(
        &app,
        200,
        br#"{"data":[{"username_suggestions":["acme_support","acme_ai"]}]}"#,
    );
    let response = app
        .request(
            Method::GET,
            &format!("{V}/{MOCK_PNID}/username_suggestions"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        br#"{"data":[{"username_suggestions":["acme_support","acme_ai"]}]}"#
    );
    assert_eq!(
        app.graph.last().path_and_query,
        format!("/v24.0/{MOCK_PNID}/username_suggestions")
    );
}

/// Meta's username errors come back byte for byte, with Meta's status, and record nothing.
async fn meta_errors_pass_through_unchanged(app: TestApp) {
    app.connect_number(&app.api_key, MOCK_PNID, "2001", "EAAG-token")
        .await;
    let errors: [(u32, u16, &str); 8] = [
        (
            10,
            403,
            "Application does not have permission for this action",
        ),
        (33, 400, "The business phone number has been deleted"),
        (147001, 400, "Username not available"),
        (147002, 400, "Account not eligible for a username"),
        (147003, 400, "Link a Facebook Page to claim a username"),
        (147004, 400, "Link an Instagram account to claim a username"),
        (147005, 400, "Use force_transfer within the same portfolio"),
        (133010, 400, "Phone number not registered"),
    ];
    for (code, status, message) in errors {
        let body = format!(
            "{{\"error\":{{\"message\":\"(#{code}) {message}\",\"type\":\"OAuthException\",\"code\":{code},\"error_data\":{{\"messaging_product\":\"whatsapp\",\"details\":\"{message}.\"}},\"fbtrace_id\":\"AbCdEf{code}\"}}}}"
        );
        canned(&app, status, body.as_bytes());
        let requests: [(Method, Option<Value>); 3] = [
            (
                Method::POST,
                Some(json!({"username": "acme_support", "transfer_action": "none"})),
            ),
            (Method::GET, None),
            (Method::DELETE, None),
        ];
        for (method, payload) in requests {
            let mut request = app.request(method.clone(), &format!("{V}/{MOCK_PNID}/username"));
            if let Some(payload) = &payload {
                request = request.json(payload);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{code} {method}");
            assert_eq!(response.headers()["x-fb-trace-id"], "mock-trace");
            let bytes = response.bytes().await.unwrap();
            assert_eq!(
                std::str::from_utf8(&bytes).unwrap(),
                body,
                "{code} {method}: byte-identical"
            );
            assert_eq!(app.graph.last().method, method);
        }
        assert_eq!(
            platform_username(&app, MOCK_PNID).await,
            (Value::Null, Value::Null),
            "{code}: nothing recorded"
        );
    }
}

/// Successful answers update the number: POST (requested name, Meta's status), GET (Meta's
/// view), DELETE (null, deleted).
async fn proxy_calls_record_the_number_username(app: TestApp) {
    app.connect_number(&app.api_key, MOCK_PNID, "2001", "EAAG-token")
        .await;
    canned(&app, 200, br#"{"status":"reserved"}"#);
    let (status, answer) = claim(&app, MOCK_PNID, json!({"username": "Acme_Support"})).await;
    assert_eq!((status, answer), (200, json!({"status": "reserved"})));
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (json!("Acme_Support"), json!("reserved"))
    );

    canned(
        &app,
        200,
        br#"{"username":"acme_support","status":"approved"}"#,
    );
    let response = app
        .request(Method::GET, &format!("{V}/{MOCK_PNID}/username"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        br#"{"username":"acme_support","status":"approved"}"#
    );
    assert_eq!(app.graph.last().method, Method::GET);
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (json!("acme_support"), json!("approved"))
    );

    canned(&app, 200, br#"{"success":true}"#);
    let response = app
        .request(Method::DELETE, &format!("{V}/{MOCK_PNID}/username"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        br#"{"success":true}"#
    );
    let seen = app.graph.last();
    assert_eq!(
        (seen.method, seen.path_and_query.as_str()),
        (Method::DELETE, "/v24.0/1001/username")
    );
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (Value::Null, json!("deleted"))
    );

    // Meta's answer when the number holds none: the record follows it.
    canned(&app, 200, br#"{}"#);
    app.request(Method::GET, &format!("{V}/{MOCK_PNID}/username"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (Value::Null, Value::Null)
    );

    // Bearer callers (the number's own token) are recorded the same way.
    canned(&app, 200, br#"{"status":"reserved"}"#);
    let response = app
        .client
        .post(app.url(&format!("{V}/{MOCK_PNID}/username")))
        .bearer_auth("EAAG-token")
        .json(&json!({"username": "acme.bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (json!("acme.bearer"), json!("reserved"))
    );

    // Another project's number answers like an unknown one, and nothing reaches Meta.
    let (_, other_key) = app.other_project().await;
    let count = app.graph.recorded().len();
    let response = app
        .request_with_key(
            Method::POST,
            &format!("{V}/{MOCK_PNID}/username"),
            &other_key,
        )
        .json(&json!({"username": "stolen_name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.graph.recorded().len(), count);
    assert_eq!(
        platform_username(&app, MOCK_PNID).await,
        (json!("acme.bearer"), json!("reserved"))
    );
}

crate::both_backends!(app:
    claims_are_checked_before_meta,
    meta_errors_pass_through_unchanged,
    proxy_calls_record_the_number_username,
);

// ---------------------------------------------------------------------------------------------
// Through the emulator.

const PNID2: &str = "100000000000002";
const TOKEN2: &str = "sandbox-token-100000000000002";
const PNID3: &str = "100000000000003";
const WABA3: &str = "200000000000003";
const TOKEN3: &str = "sandbox-token-100000000000003";

/// A second number in the demo number's portfolio and a third in another portfolio, both
/// connected to the gateway.
async fn three_numbers(env: &Env) {
    for (pnid, waba, token, display) in [
        (PNID2, WABA, TOKEN2, "+1 555-000-0002"),
        (PNID3, WABA3, TOKEN3, "+1 555-000-0003"),
    ] {
        env._sandbox
            .add_number(SandboxNumber {
                phone_number_id: pnid.into(),
                business_account_id: waba.into(),
                access_token: token.into(),
                display_phone_number: display.into(),
                verified_name: format!("Number {pnid}"),
            })
            .unwrap();
        env.app
            .connect_number(&env.app.api_key, pnid, waba, token)
            .await;
    }
}

async fn username_call(env: &Env, method: Method, pnid: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = env.app.request(method, &format!("{V}/{pnid}/username"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

/// The `business_username_updates` values the gateway stored, oldest first.
async fn username_webhooks(env: &Env) -> Vec<Value> {
    let mut events = env.app.store.webhook_events(None, 100).await.unwrap();
    events.reverse();
    events
        .iter()
        .filter_map(|e| serde_json::from_slice::<Value>(&e.body).ok())
        .filter(|body| body["entry"][0]["changes"][0]["field"] == "business_username_updates")
        .map(|body| body["entry"][0]["changes"][0]["value"].clone())
        .collect()
}

/// Claim, a refused and a forced transfer, another portfolio's name, the launch and a delete,
/// through the proxy against the emulator; every change also arrives as a signed webhook.
async fn username_journey_through_the_emulator(backend: Backend) {
    let env = Env::start(backend).await;
    three_numbers(&env).await;
    let app = &env.app;

    let (status, suggestions) = json_of(
        app.request(Method::GET, &format!("{V}/{PNID}/username_suggestions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(suggestions["data"][0]["username_suggestions"]
        .as_array()
        .unwrap()
        .contains(&json!("wagate_sandbox")));

    // A rule broken locally never reaches the emulator.
    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID,
        Some(json!({"username": "acme.com"})),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(100)));
    let requests: Value = env
        .http
        .get(format!("{}/_sandbox/requests", env.sandbox_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!requests.to_string().contains("/username\""), "{requests}");

    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID,
        Some(json!({"username": "Acme_Support"})),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"status": "reserved"})));
    assert_eq!(
        platform_username(app, PNID).await,
        (json!("Acme_Support"), json!("reserved"))
    );
    assert_eq!(
        username_webhooks(&env).await,
        [
            json!({"display_phone_number": "15550000001", "username": "Acme_Support", "status": "reserved"})
        ]
    );
    assert_eq!(
        username_call(&env, Method::GET, PNID, None).await,
        (
            200,
            json!({"username": "Acme_Support", "status": "reserved"})
        )
    );

    // Another portfolio: not available, whatever the case.
    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID3,
        Some(json!({"username": "acme_support", "transfer_action": "force_transfer"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (400, Some(147001))
    );
    // The same portfolio: only with force_transfer.
    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID2,
        Some(json!({"username": "acme_support"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (400, Some(147005))
    );
    assert_eq!(
        platform_username(app, PNID2).await,
        (Value::Null, Value::Null)
    );
    // `.` and `_` differ: this is another name, free.
    let (status, _) = username_call(
        &env,
        Method::POST,
        PNID3,
        Some(json!({"username": "acme.support"})),
    )
    .await;
    assert_eq!(status, 200);

    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID2,
        Some(json!({"username": "acme_support", "transfer_action": "force_transfer"})),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"status": "reserved"})));
    assert_eq!(
        platform_username(app, PNID2).await,
        (json!("acme_support"), json!("reserved"))
    );
    // The previous holder learns it from its webhook.
    assert_eq!(
        platform_username(app, PNID).await,
        (Value::Null, json!("deleted"))
    );
    assert_eq!(
        username_call(&env, Method::GET, PNID, None).await,
        (200, json!({"status": "deleted"}))
    );

    // Usernames launch: reserved ones are approved, by webhook.
    let launched: Value = env
        .http
        .post(format!("{}/_sandbox/usernames/launch", env.sandbox_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(launched["launched"], true);
    let approved = launched["approved"].as_array().unwrap();
    assert_eq!(approved.len(), 2, "{launched}");
    assert!(approved.iter().all(|a| a["webhook_status"] == 200));
    assert_eq!(
        platform_username(app, PNID2).await,
        (json!("acme_support"), json!("approved"))
    );
    assert_eq!(
        platform_username(app, PNID3).await,
        (json!("acme.support"), json!("approved"))
    );
    assert_eq!(
        username_call(&env, Method::GET, PNID2, None).await,
        (
            200,
            json!({"username": "acme_support", "status": "approved"})
        )
    );

    // After the launch, claims are approved at once.
    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID,
        Some(json!({"username": "acme_help"})),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"status": "approved"})));
    assert_eq!(
        platform_username(app, PNID).await,
        (json!("acme_help"), json!("approved"))
    );

    let (status, answer) = username_call(&env, Method::DELETE, PNID2, None).await;
    assert_eq!((status, answer), (200, json!({"success": true})));
    assert_eq!(
        platform_username(app, PNID2).await,
        (Value::Null, json!("deleted"))
    );

    // Meta's eligibility errors come through from the emulator too.
    env.http
        .post(format!("{}/_sandbox/knobs", env.sandbox_url))
        .json(&json!({"fail_usernames_with": 147002}))
        .send()
        .await
        .unwrap();
    let (status, answer) = username_call(
        &env,
        Method::POST,
        PNID2,
        Some(json!({"username": "acme_again"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (400, Some(147002))
    );
    assert_eq!(
        platform_username(app, PNID2).await,
        (Value::Null, json!("deleted"))
    );

    let statuses: Vec<(Value, Value, Value)> = username_webhooks(&env)
        .await
        .into_iter()
        .map(|v| {
            (
                v["display_phone_number"].clone(),
                v["username"].clone(),
                v["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (
                json!("15550000001"),
                json!("Acme_Support"),
                json!("reserved")
            ),
            (
                json!("15550000003"),
                json!("acme.support"),
                json!("reserved")
            ),
            (json!("15550000001"), Value::Null, json!("deleted")),
            (
                json!("15550000002"),
                json!("acme_support"),
                json!("reserved")
            ),
            (
                json!("15550000002"),
                json!("acme_support"),
                json!("approved")
            ),
            (
                json!("15550000003"),
                json!("acme.support"),
                json!("approved")
            ),
            (json!("15550000001"), json!("acme_help"), json!("approved")),
            (json!("15550000002"), Value::Null, json!("deleted")),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Business-scoped user IDs.

const PHONE: &str = "15551230000";
const BSUID: &str = "US.13491208655302741918";
const PARENT: &str = "US.ENT.11815799212886844830";
const NEW_BSUID: &str = "US.24810000000000000001";

async fn get(env: &Env, path: &str) -> (u16, Value) {
    json_of(
        env.app
            .request(Method::GET, &format!("{V}/{path}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn send(env: &Env, body: Value) -> (u16, Value) {
    json_of(
        env.app
            .request(Method::POST, &format!("{V}/{PNID}/messages"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A phone user adopts a username, writes without a phone number, gets a reply by `recipient`,
/// then rotates their BSUID: one contact, one conversation, the whole history.
async fn bsuid_journey_through_the_emulator(backend: Backend) {
    let env = Env::start(backend).await;

    // 1. A phone user, before BSUIDs.
    env.inbound(
        json!({"from": PHONE, "profile_name": "Ada", "type": "text", "text": {"body": "hi"}}),
    )
    .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 1);
    let contact_id = contacts[0].id;
    assert_eq!(contacts[0].business_scoped_user_id, None);

    // 2. They adopt a username: Meta now shows their BSUID (and parent BSUID) beside the phone.
    env.inbound(json!({"from": PHONE, "user_id": BSUID, "parent_user_id": PARENT, "username": "@ada", "profile_name": "Ada", "type": "text", "text": {"body": "I have a username"}}))
        .await;
    // 3. Then the phone number is withheld (absent, and in the Nov-2025 form an empty string).
    env.inbound(json!({"user_id": BSUID, "parent_user_id": PARENT, "username": "@ada", "profile_name": "Ada", "type": "text", "text": {"body": "no phone"}}))
        .await;
    env.inbound(json!({"from": "", "user_id": BSUID, "username": "@ada", "type": "text", "text": {"body": "empty phone"}}))
        .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 1, "one contact: {contacts:?}");
    let contact = &contacts[0];
    assert_eq!(contact.id, contact_id);
    assert_eq!(contact.wa_id.as_deref(), Some(PHONE));
    assert_eq!(contact.business_scoped_user_id.as_deref(), Some(BSUID));
    assert_eq!(
        contact.parent_business_scoped_user_id.as_deref(),
        Some(PARENT)
    );
    assert_eq!(contact.username.as_deref(), Some("@ada"));

    // Readable through the stored-data routes, by BSUID and username.
    let (status, found) = get(&env, &format!("{PNID}/contacts/{BSUID}")).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["id"], json!(contact_id));
    assert_eq!(found["business_scoped_user_id"], BSUID);
    assert_eq!(found["parent_business_scoped_user_id"], PARENT);
    assert_eq!(found["username"], "@ada");
    let (_, listed) = get(
        &env,
        &format!("{PNID}/contacts?business_scoped_user_id={BSUID}"),
    )
    .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    let (_, conversations) = get(
        &env,
        &format!("{PNID}/conversations?business_scoped_user_id={BSUID}"),
    )
    .await;
    assert_eq!(conversations["data"].as_array().map(Vec::len), Some(1));
    let conversation = conversations["data"][0].clone();
    assert_eq!(conversation["business_scoped_user_id"], BSUID);
    assert_eq!(conversation["parent_business_scoped_user_id"], PARENT);
    assert_eq!(conversation["username"], "@ada");
    let (_, by_username) = get(&env, &format!("{PNID}/conversations?username=%40ada")).await;
    assert_eq!(by_username["data"][0]["id"], conversation["id"]);
    // A BSUID wherever a phone is accepted; usernames with or without Meta's `@`, any case;
    // parent BSUIDs find the one contact under them.
    for query in [
        format!("contacts?wa_id={BSUID}"),
        format!("contacts?wa_id={PARENT}"),
        format!("contacts?business_scoped_user_id={PARENT}"),
        "contacts?username=ada".to_owned(),
        "contacts?username=%40ADA".to_owned(),
        format!("conversations?phone_number={BSUID}"),
        "conversations?username=Ada".to_owned(),
    ] {
        let (status, listed) = get(&env, &format!("{PNID}/{query}")).await;
        assert_eq!(status, 200, "{query}: {listed}");
        assert_eq!(
            listed["data"].as_array().map(Vec::len),
            Some(1),
            "{query}: {listed}"
        );
    }
    for query in ["contacts?username=bob", "contacts?wa_id=US.999999"] {
        let (_, listed) = get(&env, &format!("{PNID}/{query}")).await;
        assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{query}");
    }
    let (status, by_parent) = get(&env, &format!("{PNID}/contacts/{PARENT}")).await;
    assert_eq!(status, 200, "{by_parent}");
    assert_eq!(by_parent["id"], json!(contact_id));
    let (_, messages) = get(&env, &format!("{PNID}/messages")).await;
    let newest = &messages["data"][0];
    assert_eq!(newest["kapso"]["content"], "empty phone");
    assert_eq!(newest["from_user_id"], BSUID);
    assert_eq!(newest["kapso"]["business_scoped_user_id"], BSUID);
    assert_eq!(newest["kapso"]["parent_business_scoped_user_id"], PARENT);
    assert_eq!(newest["kapso"]["username"], "@ada");
    let no_phone = &messages["data"][1];
    assert_eq!(no_phone["kapso"]["content"], "no phone");
    assert!(no_phone.get("from").is_none());
    assert_eq!(no_phone["from_parent_user_id"], PARENT);

    // 4. The reply goes by `recipient`, untouched; Meta answers with the user id, no wa_id.
    let (status, answer) = send(
        &env,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "recipient": BSUID, "type": "text", "text": {"body": "hello by BSUID"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["contacts"],
        json!([{"input": BSUID, "user_id": BSUID}])
    );
    let sent: Value = env
        .http
        .get(format!("{}/_sandbox/sent", env.sandbox_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let forwarded = &sent["data"].as_array().unwrap().last().unwrap()["request"];
    assert_eq!(forwarded["recipient"], BSUID);
    assert!(forwarded.get("to").is_none());
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let reply = env.wait_message(&wamid, |m| m.status == "read").await;
    assert_eq!(reply.direction, "outbound");
    assert_eq!(reply.contact_id, Some(contact_id));
    let conversation_id = reply.conversation_id.expect("in a conversation");
    assert_eq!(json!(conversation_id), conversation["id"]);
    // Looked up in the list: Meta's wamids are base64 and may hold a `/`.
    let (_, outbound) = get(&env, &format!("{PNID}/messages?direction=outbound")).await;
    let stored = outbound["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == wamid.as_str())
        .expect("listed")
        .clone();
    assert_eq!(stored["recipient"], BSUID);
    assert_eq!(stored["to_user_id"], BSUID);
    assert_eq!(stored["kapso"]["business_scoped_user_id"], BSUID);
    assert_eq!(stored["kapso"]["phone_number"], format!("+{PHONE}"));

    // `to` and `recipient` together: Meta's rule, `to` wins, so does the record.
    let (status, answer) = send(
        &env,
        json!({"messaging_product": "whatsapp", "to": "+1 555 999 0000", "recipient": BSUID, "type": "text", "text": {"body": "to wins"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let both = env
        .wait_message(answer["messages"][0]["id"].as_str().unwrap(), |_| true)
        .await;
    let other = env
        .app
        .store
        .contacts_of(env.number)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.wa_id.as_deref() == Some("15559990000"))
        .expect("a phone contact for `to`");
    assert_eq!(both.contact_id, Some(other.id));
    assert_eq!(other.business_scoped_user_id, None);

    // Authentication templates cannot go to a BSUID: Meta's 131062, passed through, not stored.
    let (status, created) = json_of(
        env.app
            .request(Method::POST, &format!("{V}/{WABA}/message_templates"))
            .json(&json!({"name": "login_code", "language": "en_US", "category": "AUTHENTICATION", "components": [{"type": "BODY"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    crate::common::eventually(Duration::from_secs(30), "the template approved", || async {
        let (_, template) = get(&env, created["id"].as_str().unwrap()).await;
        (template["status"] == "APPROVED").then_some(())
    })
    .await;
    let before = env.messages().await.len();
    let (status, answer) = send(
        &env,
        json!({"messaging_product": "whatsapp", "recipient": BSUID, "type": "template", "template": {"name": "login_code", "language": {"code": "en_US"}}}),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_i64()),
        (400, Some(131062)),
        "{answer}"
    );
    assert_eq!(env.messages().await.len(), before);

    // 5. The BSUID rotates: the same contact takes the new one, with history.
    env.inject(
        "user_id_update",
        json!({"phone_number_id": PNID, "previous": BSUID, "current": NEW_BSUID, "profile_name": "Ada"}),
    )
    .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 2, "Ada and the `to` contact: {contacts:?}");
    let ada = contacts.iter().find(|c| c.id == contact_id).unwrap();
    assert_eq!(ada.business_scoped_user_id.as_deref(), Some(NEW_BSUID));
    assert_eq!(ada.wa_id.as_deref(), Some(PHONE));
    assert_eq!(
        env.app.store.identity_changes(contact_id).await.unwrap(),
        [(
            "business_scoped_user_id".into(),
            Some(BSUID.into()),
            Some(NEW_BSUID.into())
        )]
    );
    let (status, _) = get(&env, &format!("{PNID}/contacts/{BSUID}")).await;
    assert_eq!(status, 404, "the old BSUID names nobody now");
    let (status, found) = get(&env, &format!("{PNID}/contacts/{NEW_BSUID}")).await;
    assert_eq!((status, found["id"].clone()), (200, json!(contact_id)));
    let (status, answer) = json_of(
        env.app
            .request(Method::PATCH, &format!("{V}/{PNID}/contacts/{NEW_BSUID}"))
            .json(&json!({"display_name": "Ada L."}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"success": true})));
    // History and conversation intact; the next message continues the same conversation.
    env.inbound(json!({"user_id": NEW_BSUID, "type": "text", "text": {"body": "after rotation"}}))
        .await;
    let ada_messages: Vec<_> = env
        .messages()
        .await
        .into_iter()
        .filter(|m| m.contact_id == Some(contact_id))
        .collect();
    assert_eq!(ada_messages.len(), 6, "5 inbound and the reply");
    assert!(ada_messages
        .iter()
        .all(|m| m.conversation_id == Some(conversation_id)));
    let (_, conversations) = get(
        &env,
        &format!(
            "{PNID}/conversations?business_scoped_user_id={NEW_BSUID}&fields=kapso(messages_count)"
        ),
    )
    .await;
    assert_eq!(conversations["data"][0]["id"], json!(conversation_id));
    assert_eq!(conversations["data"][0]["status"], "active");
    assert_eq!(conversations["data"][0]["kapso"]["messages_count"], 6);
    let (_, messages) = get(
        &env,
        &format!("{PNID}/messages?conversation_id={conversation_id}"),
    )
    .await;
    assert_eq!(messages["data"].as_array().map(Vec::len), Some(6));
    assert!(messages["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["kapso"]["business_scoped_user_id"] == NEW_BSUID));

    // 6. `system` notices re-key the contact too, and belong to it (no stray contact with
    // the identifiers the user left).
    let newer = "US.35790000000000000002";
    env.inbound(json!({"user_id": NEW_BSUID, "type": "system", "system": {"type": "user_changed_user_id", "user_id": newer, "body": format!("User Ada changed from {NEW_BSUID} to {newer}")}}))
        .await;
    env.inbound(json!({"from": PHONE, "user_id": newer, "type": "system", "system": {"type": "user_changed_number", "wa_id": "15551230001", "body": "User Ada changed from 15551230000 to 15551230001"}}))
        .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(
        contacts.len(),
        2,
        "still Ada and the `to` contact: {contacts:?}"
    );
    let ada = contacts.iter().find(|c| c.id == contact_id).unwrap();
    assert_eq!(ada.display_name.as_deref(), Some("Ada L."));
    assert_eq!(ada.business_scoped_user_id.as_deref(), Some(newer));
    assert_eq!(ada.wa_id.as_deref(), Some("15551230001"));
    let history = env.app.store.identity_changes(contact_id).await.unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(
        history[2],
        (
            "wa_id".into(),
            Some(PHONE.into()),
            Some("15551230001".into())
        )
    );
    let ada_messages = env
        .messages()
        .await
        .into_iter()
        .filter(|m| m.contact_id == Some(contact_id))
        .count();
    assert_eq!(ada_messages, 8);

    // By parent BSUID: recorded against the one contact under that parent (it still
    // carries the parent after the identity changes).
    let (status, answer) = send(
        &env,
        json!({"messaging_product": "whatsapp", "recipient": PARENT, "type": "text", "text": {"body": "hello by parent"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    let by_parent = env.wait_message(&wamid, |m| m.status == "read").await;
    assert_eq!(
        by_parent.contact_id,
        Some(contact_id),
        "parent send recorded against the contact"
    );
}

/// A BSUID-only contact gets the phone number a later webhook reveals (an inbound message or
/// a status's `contacts[]`); BSUIDs are never treated as phone numbers.
async fn later_webhooks_attach_phone_numbers(backend: Backend) {
    let env = Env::start(backend).await;
    // Digits inside a BSUID are not a phone number.
    let digits_bsuid = "US.15551234567";
    env.inbound(json!({"user_id": digits_bsuid, "type": "text", "text": {"body": "digits"}}))
        .await;
    let (status, found) = get(&env, &format!("{PNID}/contacts/{digits_bsuid}")).await;
    assert_eq!(status, 200);
    assert_eq!(found["wa_id"], Value::Null);
    assert_eq!(found["business_scoped_user_id"], digits_bsuid);
    let (status, _) = get(&env, &format!("{PNID}/contacts/15551234567")).await;
    assert_eq!(status, 404);
    // A send by `to` carrying a BSUID (Meta's Nov-2025 form) is recorded against that BSUID.
    let (status, answer) = send(
        &env,
        json!({"messaging_product": "whatsapp", "to": digits_bsuid, "type": "text", "text": {"body": "by to"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let row = env
        .wait_message(answer["messages"][0]["id"].as_str().unwrap(), |_| true)
        .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(row.contact_id, Some(contacts[0].id));
    assert_eq!(contacts[0].wa_id, None);

    // A message revealing the phone.
    env.inbound(json!({"from": "15550001111", "user_id": digits_bsuid, "type": "text", "text": {"body": "with phone"}}))
        .await;
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].wa_id.as_deref(), Some("15550001111"));

    // A status revealing the phone (and the username) of a BSUID-only contact.
    let bsuid = "CO.98765432100000000001";
    env.inbound(json!({"user_id": bsuid, "type": "text", "text": {"body": "hola"}}))
        .await;
    let (_, answer) = send(
        &env,
        json!({"messaging_product": "whatsapp", "recipient": bsuid, "type": "text", "text": {"body": "hola"}}),
    )
    .await;
    let wamid = answer["messages"][0]["id"].as_str().unwrap().to_owned();
    env.wait_message(&wamid, |m| m.status == "read").await;
    let envelope = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Pablo", "username": "@pablo"}, "wa_id": "573001234567", "user_id": bsuid}],
        "statuses": [{"id": wamid, "status": "read", "timestamp": "1750030073", "recipient_user_id": bsuid, "recipient_id": "573001234567"}]
    }}]}]});
    assert_eq!(
        env.post_signed(envelope.to_string().as_bytes())
            .await
            .status(),
        200
    );
    let contacts = env.app.store.contacts_of(env.number).await.unwrap();
    assert_eq!(contacts.len(), 2);
    let pablo = contacts
        .iter()
        .find(|c| c.business_scoped_user_id.as_deref() == Some(bsuid))
        .unwrap();
    assert_eq!(pablo.wa_id.as_deref(), Some("573001234567"));
    assert_eq!(pablo.username.as_deref(), Some("@pablo"));
    // A call from the same user, by BSUID only, is theirs too.
    env.inject(
        "calls",
        json!({"phone_number_id": PNID, "event": "connect", "call_id": "wacid.BSUID1", "user_id": bsuid}),
    )
    .await;
    let calls = env.app.store.calls_of(env.number).await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].contact_id, Some(pablo.id));
    // A status about someone wagate never saw creates nobody.
    let stranger = json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Nobody"}, "wa_id": "4915112345678", "user_id": "DE.1"}],
        "statuses": [{"id": "wamid.unknown", "status": "delivered", "timestamp": "1750030073", "recipient_user_id": "DE.1"}]
    }}]}]});
    assert_eq!(
        env.post_signed(stranger.to_string().as_bytes())
            .await
            .status(),
        200
    );
    assert_eq!(
        env.app.store.contacts_of(env.number).await.unwrap().len(),
        2
    );
}

crate::both_backends!(backend:
    username_journey_through_the_emulator,
    bsuid_journey_through_the_emulator,
    later_webhooks_attach_phone_numbers,
);
