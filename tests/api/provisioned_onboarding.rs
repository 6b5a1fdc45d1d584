//! Setup links that provision a number (#20), through the hosted page and the emulator's phone
//! step: a pool number reserved, Meta's code delivered to it by SMS through the Twilio double
//! and shown live, the signup completed with it; the wrong number refused; a number bought live
//! and kept after the link ends; reservations released on revoke and expiry. Both backends.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::common::eventually;
use crate::provisioning::Env;

const OK_URL: &str = "https://app.example.com/onboarding/complete";
const FAIL_URL: &str = "https://app.example.com/onboarding/error";

/// The seed's "Full example" body (Kapso's setup-links page).
fn full_example() -> Value {
    json!({
        "success_redirect_url": OK_URL,
        "failure_redirect_url": FAIL_URL,
        "allowed_connection_types": ["dedicated"],
        "provision_phone_number": true,
        "phone_number_country_isos": ["US"],
        "theme_config": {"primary_color": "#10b981", "background_color": "#ffffff", "text_color": "#111827"}
    })
}

struct Link {
    id: String,
    token: String,
    customer: String,
}

async fn link(env: &Env, fields: Value) -> Link {
    let customer = env.customer("Acme").await;
    let (status, body) = env.create_link(&customer, fields).await;
    assert_eq!(status, 201, "{body}");
    Link {
        id: body["data"]["id"].as_str().unwrap().to_owned(),
        token: body["data"]["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned(),
        customer,
    }
}

async fn page_json(
    env: &Env,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = env.http.request(method, format!("{}{path}", env.app.base));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn link_json(env: &Env, link: &Link) -> Value {
    let (_, body) = env
        .api(
            Method::GET,
            &format!("/platform/v1/customers/{}/setup_links", link.customer),
            Value::Null,
        )
        .await;
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == link.id.as_str())
        .cloned()
        .unwrap()
}

async fn pool_state(env: &Env, id: &str) -> Value {
    let (status, body) = env
        .api(
            Method::GET,
            &format!("/platform/v1/phone_number_pools/US/numbers/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Meta's phone step in the emulator, through the page's simulated sign-in: the number typed,
/// the code sent; returns (phone_number_id, waba, code_sent).
async fn phone_step(env: &Env, link: &Link, number: &str) -> (String, String, bool) {
    let (status, body) = page_json(
        env,
        Method::POST,
        &format!("/setup/{}/simulated/phone_number", link.token),
        Some(json!({"phone_number": number})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["phone_number_id"].as_str().unwrap().to_owned(),
        body["business_account_id"].as_str().unwrap().to_owned(),
        body["code_sent"].as_bool().unwrap(),
    )
}

/// The emulator's view of a number in Meta's phone step (its code, for numbers the Twilio double
/// does not own).
async fn pending_signup(env: &Env, pnid: &str) -> Value {
    let url = format!("{}/_sandbox/signup/phone_numbers/{pnid}", env.sandbox_url);
    env.http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn complete(env: &Env, link: &Link, pnid: &str, waba: &str) -> String {
    let response = env
        .http
        .post(format!("{}/setup/{}/complete", env.app.base, link.token))
        .form(&[
            ("code", format!("sandbox-code-{pnid}")),
            ("waba_id", waba.to_owned()),
            ("phone_number_id", pnid.to_owned()),
            ("connection_type", "dedicated".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn pool_number_end_to_end(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    env.register_twilio().await;
    let sid = env.owned_number("+14155550301").await;
    let pooled = env
        .pool_number(
            "US",
            json!({"phone_number": "+14155550301", "provider_reference": sid}),
        )
        .await;
    let link = link(&env, full_example()).await;

    let page = env
        .http
        .get(format!("{}/setup/{}", env.app.base, link.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"provisioned\""), "{page}");
    assert!(page.contains("Display name only"));

    let (status, reserved) = env.provision(&env.app.base, &link.token).await;
    assert_eq!(status, 200, "{reserved}");
    assert_eq!(reserved["number"]["id"], pooled.as_str());
    assert_eq!(reserved["number"]["display_number"], "+1 415-555-0301");
    let (_, again) = env.provision(&env.app.base, &link.token).await;
    assert_eq!(
        again["number"]["id"],
        pooled.as_str(),
        "one link, one number"
    );
    let shown = link_json(&env, &link).await;
    assert_eq!(
        shown["provisioned_phone_number"],
        json!({"id": pooled, "phone_number": "+14155550301", "status": "reserved", "area_code": "415",
            "country_iso": "US", "country_dial_code": "1", "display_number": "+1 415-555-0301"})
    );

    // Meta sends the code by SMS to the number; the page sees it without a reload.
    let (pnid, waba, sent) = phone_step(&env, &link, "+14155550301").await;
    assert!(
        sent,
        "the Twilio double owns the number, so the code goes out by SMS"
    );
    let code = eventually(Duration::from_secs(10), "the code on the page", || async {
        let (_, seen) = page_json(
            &env,
            Method::GET,
            &format!("/setup/{}/provisioned", link.token),
            None,
        )
        .await;
        seen["number"]["code"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(code.len(), 6);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let verify = format!("/setup/{}/simulated/verify", link.token);
    let (status, _) = page_json(
        &env,
        Method::POST,
        &verify,
        Some(json!({"phone_number_id": pnid, "code": wrong})),
    )
    .await;
    assert_eq!(status, 400, "Meta refuses a wrong code");
    let (status, body) = page_json(
        &env,
        Method::POST,
        &verify,
        Some(json!({"phone_number_id": pnid, "code": code})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let location = complete(&env, &link, &pnid, &waba).await;
    assert_eq!(
        location,
        format!("{OK_URL}?setup_link_id={}&status=completed&phone_number_id={pnid}&business_account_id={waba}&provisioned_phone_number_id={pooled}&display_phone_number=%2B14155550301", link.id)
    );
    let number = pool_state(&env, &pooled).await;
    assert_eq!(
        (number["state"].as_str(), number["phone_number_id"].as_str()),
        (Some("in_use"), Some(pnid.as_str()))
    );
    assert_eq!(
        link_json(&env, &link).await["provisioned_phone_number"]["status"],
        "in_use"
    );
    let (_, numbers) = env
        .api(
            Method::GET,
            &format!(
                "/platform/v1/whatsapp/phone_numbers?customer_id={}",
                link.customer
            ),
            Value::Null,
        )
        .await;
    assert_eq!(
        numbers["data"][0]["phone_number_id"],
        pnid.as_str(),
        "{numbers}"
    );
    // A number in use cannot be removed from the pool.
    let (status, _) = env
        .api(
            Method::DELETE,
            &format!("/platform/v1/phone_number_pools/US/numbers/{pooled}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 409);
}

async fn another_number_is_refused_and_the_reservation_released(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let pooled = env
        .pool_number("US", json!({"phone_number": "+14155550302"}))
        .await;
    let link = link(&env, full_example()).await;
    let (status, _) = env.provision(&env.app.base, &link.token).await;
    assert_eq!(status, 200);
    // The customer types another number in Meta's window.
    let (pnid, waba, sent) = phone_step(&env, &link, "+14155550399").await;
    assert!(!sent, "the double does not own that number");
    let pending = pending_signup(&env, &pnid).await;
    let (status, body) = page_json(
        &env,
        Method::POST,
        &format!("/setup/{}/simulated/verify", link.token),
        Some(json!({"phone_number_id": pnid, "code": pending["code"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let location = complete(&env, &link, &pnid, &waba).await;
    assert_eq!(
        location,
        format!(
            "{FAIL_URL}?setup_link_id={}&error_code=phone_verification_failed",
            link.id
        )
    );
    let (_, numbers) = env
        .api(
            Method::GET,
            &format!(
                "/platform/v1/whatsapp/phone_numbers?customer_id={}",
                link.customer
            ),
            Value::Null,
        )
        .await;
    assert_eq!(numbers["data"], json!([]), "nothing connected");
    let number = pool_state(&env, &pooled).await;
    assert_eq!(number["state"], "available", "{number}");
    assert_eq!(number["setup_link_id"], Value::Null);
    let (_, seen) = page_json(
        &env,
        Method::GET,
        &format!("/setup/{}/provisioned", link.token),
        None,
    )
    .await;
    assert_eq!(seen["status"], "none");
    // The link stays usable: opening the page again reserves again.
    let (status, again) = env.provision(&env.app.base, &link.token).await;
    assert_eq!(
        (status.as_u16(), again["number"]["id"].clone()),
        (200, json!(pooled))
    );
}

async fn bought_live_and_kept_when_the_link_ends(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    env.register_twilio().await;
    let first = link(
        &env,
        json!({"provision_phone_number": true, "phone_number_area_code": "212"}),
    )
    .await;
    let (status, reserved) = env.provision(&env.app.base, &first.token).await;
    assert_eq!(status, 200, "{reserved}");
    let number = &reserved["number"];
    assert!(
        number["phone_number"]
            .as_str()
            .unwrap()
            .starts_with("+1212"),
        "{number}"
    );
    let id = number["id"].as_str().unwrap().to_owned();
    let bought = pool_state(&env, &id).await;
    assert_eq!(
        (bought["origin"].as_str(), bought["state"].as_str()),
        (Some("purchased"), Some("reserved"))
    );
    let sid = bought["provider_reference"].as_str().unwrap().to_owned();
    let at_twilio = env.twilio_number(&sid).await;
    assert_eq!(
        at_twilio["sms_url"],
        format!(
            "{}/providers/twilio/{}/sms",
            env.app.base, env.app.project_id
        )
    );

    // Revoked: the bought number goes back to the pool, never released at Twilio.
    let (status, _) = env
        .api(
            Method::PATCH,
            &format!(
                "/platform/v1/customers/{}/setup_links/{}",
                first.customer, first.id
            ),
            json!({"setup_link": {"status": "revoked"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(pool_state(&env, &id).await["state"], "available");
    assert_eq!(
        env.twilio_number(&sid).await["sid"],
        sid.as_str(),
        "still owned"
    );
    let (status, _) = env.provision(&env.app.base, &first.token).await;
    assert_eq!(status, 410, "a revoked link reserves nothing");

    // The next link takes it from the pool instead of buying another.
    let second = link(&env, json!({"provision_phone_number": true})).await;
    let (_, reserved) = env.provision(&env.app.base, &second.token).await;
    assert_eq!(reserved["number"]["id"], id.as_str());
    let owned: Value = env
        .http
        .get(format!(
            "{}/twilio/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
            env.sandbox_url, env.account_sid
        ))
        .basic_auth(&env.account_sid, Some(&env.auth_token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        owned["incoming_phone_numbers"].as_array().unwrap().len(),
        1,
        "{owned}"
    );
}

async fn expiry_and_empty_pools(backend: Backend) {
    let env = Env::start(backend, |c| {
        c.provisioning.release_interval = Duration::from_millis(200);
    })
    .await;
    let pooled = env
        .pool_number("US", json!({"phone_number": "+14155550303"}))
        .await;
    let first = link(&env, json!({"provision_phone_number": true})).await;
    let (_, reserved) = env.provision(&env.app.base, &first.token).await;
    assert_eq!(reserved["number"]["id"], pooled.as_str());
    // The pool is empty and the project has no Twilio: the page explains, the link stays.
    let second = link(&env, json!({"provision_phone_number": true})).await;
    let (status, answer) = env.provision(&env.app.base, &second.token).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "unavailable", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("stays valid"),
        "{answer}"
    );
    assert_eq!(link_json(&env, &second).await["status"], "active");

    // The first link expires: the sweep gives its number back.
    let url = secrecy::ExposeSecret::expose_secret(&env.app.config.database.url).to_owned();
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    let id = uuid::Uuid::parse_str(&first.id).unwrap();
    crate::with_connection!(url.as_str(), conn => {
        sqlx::query("update setup_links set expires_at = $1 where id = $2")
            .bind(past).bind(id).execute(&mut conn).await.unwrap();
    });
    eventually(
        Duration::from_secs(10),
        "the expired link's number released",
        || async { (pool_state(&env, &pooled).await["state"] == "available").then_some(()) },
    )
    .await;
    let (_, answer) = env.provision(&env.app.base, &second.token).await;
    assert_eq!(answer["number"]["id"], pooled.as_str(), "{answer}");
}

/// Meta's code by voice: the double rings the number, wagate answers with a recording whose
/// transcript Twilio posts back, signed; the page shows the code read out.
async fn code_by_voice_call(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    env.register_twilio().await;
    let sid = env.owned_number("+14155550304").await;
    env.pool_number(
        "US",
        json!({"phone_number": "+14155550304", "provider_reference": sid}),
    )
    .await;
    let link = link(&env, full_example()).await;
    let (status, _) = env.provision(&env.app.base, &link.token).await;
    assert_eq!(status, 200);
    let (status, body) = page_json(
        &env,
        Method::POST,
        &format!("/setup/{}/simulated/phone_number", link.token),
        Some(json!({"phone_number": "+14155550304", "code_method": "VOICE"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code_sent"], true, "{body}");
    let pending = pending_signup(&env, body["phone_number_id"].as_str().unwrap()).await;
    let (_, seen) = page_json(
        &env,
        Method::GET,
        &format!("/setup/{}/provisioned", link.token),
        None,
    )
    .await;
    assert_eq!(seen["number"]["code"], pending["code"], "{seen}");
    assert!(seen["number"]["message"]
        .as_str()
        .unwrap()
        .contains("verification code"));
}

crate::both_backends!(backend:
    pool_number_end_to_end,
    another_number_is_refused_and_the_reservation_released,
    bought_live_and_kept_when_the_link_ends,
    expiry_and_empty_pools,
    code_by_voice_call,
);
