//! The emulator's Twilio double against Twilio's published behaviour: basic auth (20003),
//! search with and without an area code and a country without stock (404 20404), buy (201) and
//! a number no longer available (21422), release (204, then 20404), and a signed inbound SMS.

use reqwest::Client;
use serde_json::{json, Value};

use crate::common::emulator;

async fn call(
    http: &Client,
    method: reqwest::Method,
    url: String,
    auth: (&str, &str),
    form: Option<&[(&str, &str)]>,
) -> (u16, Value) {
    let mut request = http.request(method, url).basic_auth(auth.0, Some(auth.1));
    if let Some(form) = form {
        request = request.form(form);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A fresh account of the double: `{"account_sid", "auth_token"}`.
async fn new_account(http: &Client, url: &str) -> Value {
    let response = http
        .post(format!("{url}/_sandbox/twilio/accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// What the test receiver saw: each request's signature and form.
type Seen = std::sync::Arc<tokio::sync::Mutex<Vec<(String, Vec<(String, String)>)>>>;

#[tokio::test]
async fn twilio_double_follows_twilios_api() {
    let (_sandbox, url) = emulator(|_| {}).await;
    let http = Client::new();
    let account = new_account(&http, &url).await;
    let sid = account["account_sid"].as_str().unwrap();
    let token = account["auth_token"].as_str().unwrap();
    let base = format!("{url}/twilio/2010-04-01/Accounts/{sid}");
    let get = reqwest::Method::GET;

    let (status, body) = call(
        &http,
        get.clone(),
        format!("{base}.json"),
        (sid, "wrong"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (401, json!(20003)),
        "{body}"
    );
    assert_eq!(
        body["more_info"],
        "https://www.twilio.com/docs/errors/20003"
    );
    let (status, _) = call(
        &http,
        get.clone(),
        format!("{base}.json"),
        (sid, token),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let search = format!("{base}/AvailablePhoneNumbers/US/Local.json?SmsEnabled=true&PageSize=2");
    let (status, body) = call(
        &http,
        get.clone(),
        format!("{search}&AreaCode=212"),
        (sid, token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let first = body["available_phone_numbers"][0]["phone_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(first.starts_with("+1212"), "{body}");
    assert_eq!(body["available_phone_numbers"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["available_phone_numbers"][0]["capabilities"]["SMS"],
        true
    );
    let (status, body) = call(
        &http,
        get.clone(),
        format!("{base}/AvailablePhoneNumbers/FR/Local.json"),
        (sid, token),
        None,
    )
    .await;
    assert_eq!((status, body["code"].clone()), (404, json!(20404)));

    let buy = format!("{base}/IncomingPhoneNumbers.json");
    let form = [
        ("PhoneNumber", first.as_str()),
        ("SmsUrl", "http://127.0.0.1:9/sms"),
    ];
    let (status, bought) = call(
        &http,
        reqwest::Method::POST,
        buy.clone(),
        (sid, token),
        Some(&form),
    )
    .await;
    assert_eq!(status, 201, "{bought}");
    assert_eq!(bought["sms_url"], "http://127.0.0.1:9/sms");
    let pn = bought["sid"].as_str().unwrap().to_owned();
    assert!(pn.starts_with("PN") && pn.len() == 34);
    let (status, body) = call(&http, reqwest::Method::POST, buy, (sid, token), Some(&form)).await;
    assert_eq!(
        (status, body["code"].clone()),
        (400, json!(21422)),
        "{body}"
    );
    // A bought number leaves the stock.
    let (_, body) = call(
        &http,
        get.clone(),
        format!("{search}&AreaCode=212"),
        (sid, token),
        None,
    )
    .await;
    assert_ne!(
        body["available_phone_numbers"][0]["phone_number"],
        first.as_str()
    );

    // Switching a country's stock off answers like a country Twilio has no numbers in.
    http.put(format!("{url}/_sandbox/twilio/stock/US"))
        .json(&json!({"available": false}))
        .send()
        .await
        .unwrap();
    let (status, _) = call(&http, get.clone(), search.clone(), (sid, token), None).await;
    assert_eq!(status, 404);

    let number = format!("{base}/IncomingPhoneNumbers/{pn}.json");
    let (status, _) = call(
        &http,
        reqwest::Method::DELETE,
        number.clone(),
        (sid, token),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = call(&http, get, number, (sid, token), None).await;
    assert_eq!((status, body["code"].clone()), (404, json!(20404)));
}

#[tokio::test]
async fn inbound_sms_is_signed_as_twilio_signs() {
    use axum::extract::State;
    let (_sandbox, url) = emulator(|_| {}).await;
    let http = Client::new();
    let seen: Seen = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route(
            "/sms",
            axum::routing::post(
                |State(seen): State<Seen>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    let signature = headers["x-twilio-signature"].to_str().unwrap().to_owned();
                    let params = url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                    seen.lock().await.push((signature, params));
                    "<Response/>"
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let account = new_account(&http, &url).await;
    let sid = account["account_sid"].as_str().unwrap();
    let response = http
        .post(format!("{url}/_sandbox/twilio/accounts/{sid}/numbers"))
        .json(&json!({"phone_number": "+14155550188", "sms_url": receiver}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = http
        .post(format!("{url}/_sandbox/twilio/sms"))
        .json(&json!({"to": "+14155550188", "body": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"delivered": true, "status": 200}));
    let seen = seen.lock().await;
    let (signature, params) = &seen[0];
    let token = account["auth_token"].as_str().unwrap();
    assert!(wagate::telephony::signature::verify(
        token, &receiver, params, signature
    ));
    assert!(!wagate::telephony::signature::verify(
        "other", &receiver, params, signature
    ));
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(
        (get("To"), get("Body"), get("AccountSid")),
        (Some("+14155550188"), Some("hello"), Some(sid))
    );
    assert!(get("MessageSid").unwrap().starts_with("SM"));
    // No such number: 404, nothing posted.
    let response = http
        .post(format!("{url}/_sandbox/twilio/sms"))
        .json(&json!({"to": "+14155550199", "body": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
