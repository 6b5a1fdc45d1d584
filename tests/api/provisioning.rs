//! Phone-number provisioning on the Platform API (#20): the project's Twilio account, its pools,
//! the setup-link rules, the signed Twilio callbacks, and two instances racing for pool numbers.
//! Twilio is the emulator's Twilio double (`/twilio/2010-04-01/…`), on both backends.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use wagate::config::{Backend, Config};
use wagate::sandbox::{Sandbox, SANDBOX_APP_ID};

use crate::common::{emulator, TestApp, APP_SECRET};

/// The app, the emulator (Graph and the Twilio double) and a Twilio account of the test's own.
pub(crate) struct Env {
    pub app: TestApp,
    pub _sandbox: Sandbox,
    pub sandbox_url: String,
    pub http: Client,
    pub account_sid: String,
    pub auth_token: String,
}

impl Env {
    pub async fn start(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let (sandbox, sandbox_url) = emulator(|config| config.app_secret = APP_SECRET.into()).await;
        let twilio = format!("{sandbox_url}/twilio");
        let app = TestApp::spawn_against(backend, &sandbox_url, move |c| {
            c.meta.app_id = SANDBOX_APP_ID.into();
            c.onboarding.simulated_signup = true;
            c.provisioning.twilio_api_base = twilio;
            adjust(c);
        })
        .await;
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let account: Value = http
            .post(format!("{sandbox_url}/_sandbox/twilio/accounts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            app,
            _sandbox: sandbox,
            sandbox_url,
            http,
            account_sid: account["account_sid"].as_str().unwrap().to_owned(),
            auth_token: account["auth_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn api(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        self.app
            .call(method, path, (!body.is_null()).then_some(body))
            .await
    }

    /// Registers the test's Twilio account with the default project.
    pub async fn register_twilio(&self) {
        let (status, body) = self
            .api(
                Method::PUT,
                "/platform/v1/phone_number_providers/twilio",
                json!({"phone_number_provider": {"account_sid": self.account_sid, "auth_token": self.auth_token}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// A number the test's Twilio account already owns (no inbound URLs yet); its `PN…` sid.
    pub async fn owned_number(&self, e164: &str) -> String {
        let response = self
            .http
            .post(format!(
                "{}/_sandbox/twilio/accounts/{}/numbers",
                self.sandbox_url, self.account_sid
            ))
            .json(&json!({"phone_number": e164}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["sid"].as_str().unwrap().to_owned()
    }

    /// Adds a number to the default project's pool of `country`, returning its id.
    pub async fn pool_number(&self, country: &str, fields: Value) -> String {
        let (status, body) = self
            .api(
                Method::POST,
                &format!("/platform/v1/phone_number_pools/{country}/numbers"),
                json!({ "pool_number": fields }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    /// The Twilio double's view of one of the account's numbers.
    pub async fn twilio_number(&self, sid: &str) -> Value {
        self.http
            .get(format!(
                "{}/twilio/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{sid}.json",
                self.sandbox_url, self.account_sid
            ))
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn customer(&self, name: &str) -> String {
        let (status, body) = self
            .api(
                Method::POST,
                "/platform/v1/customers",
                json!({"customer": {"name": name}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a link for `customer`; (status, body).
    pub async fn create_link(&self, customer: &str, fields: Value) -> (u16, Value) {
        self.api(
            Method::POST,
            &format!("/platform/v1/customers/{customer}/setup_links"),
            json!({ "setup_link": fields }),
        )
        .await
    }

    /// `POST /setup/{token}/provision`, as the page does when Dedicated is picked.
    pub async fn provision(&self, base: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{base}/setup/{token}/provision"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn token_of(link: &Value) -> String {
    link["data"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn provider_account(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let path = "/platform/v1/phone_number_providers/twilio";
    let (status, _) = env.api(Method::GET, path, Value::Null).await;
    assert_eq!(status, 404);
    // Every field rule, before Twilio is asked.
    for (fields, field) in [
        (
            json!({"account_sid": "PN0123", "auth_token": env.auth_token}),
            "account_sid",
        ),
        (
            json!({"account_sid": env.account_sid, "auth_token": "short"}),
            "auth_token",
        ),
        (json!({"account_sid": env.account_sid}), "auth_token"),
    ] {
        let (status, body) = env
            .api(Method::PUT, path, json!({"phone_number_provider": fields}))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["details"][0]["field"], field, "{body}");
    }
    let (status, body) = env.api(Method::PUT, path, json!({})).await;
    assert_eq!(status, 422, "{body}");
    // Twilio refuses a wrong token: nothing is stored.
    let wrong = "0123456789abcdef0123456789abcdef";
    let (status, body) = env
        .api(
            Method::PUT,
            path,
            json!({"phone_number_provider": {"account_sid": env.account_sid, "auth_token": wrong}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Twilio refused"),
        "{body}"
    );
    let (status, _) = env.api(Method::GET, path, Value::Null).await;
    assert_eq!(status, 404);

    env.register_twilio().await;
    let (status, body) = env.api(Method::GET, path, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["account_sid"], env.account_sid.as_str());
    assert_eq!(body["data"]["kind"], "twilio");
    let project = env.app.project_id;
    assert_eq!(
        body["data"]["inbound_sms_url"],
        format!("{}/providers/twilio/{project}/sms", env.app.base)
    );
    assert!(
        !body.to_string().contains(&env.auth_token),
        "the token is never shown: {body}"
    );
    // Sealed at rest: the row does not hold the token in clear.
    let row = env
        .app
        .store
        .provider(project, "twilio")
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&row.auth_token_sealed).contains(&env.auth_token));

    // Another project cannot see or remove it.
    let (_, other) = env
        .app
        .state
        .api_keys
        .create_project("other")
        .await
        .unwrap();
    let (status, _) = env
        .app
        .call_with_key(&other.plaintext, Method::GET, path, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = env
        .app
        .call_with_key(&other.plaintext, Method::DELETE, path, None)
        .await;
    assert_eq!(status, 404);

    let (status, _) = env.api(Method::DELETE, path, Value::Null).await;
    assert_eq!(status, 204);
    let (status, _) = env.api(Method::DELETE, path, Value::Null).await;
    assert_eq!(status, 404);
}

async fn pools(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let numbers = "/platform/v1/phone_number_pools/US/numbers";
    for (fields, field) in [
        (json!({}), "phone_number"),
        (json!({"phone_number": "14155550101"}), "phone_number"),
        (json!({"phone_number": "+56912345678"}), "phone_number"),
        (
            json!({"phone_number": "+14155550101", "area_code": "4a"}),
            "area_code",
        ),
        (
            json!({"phone_number": "+14155550101", "provider": "telnyx", "provider_reference": "X1"}),
            "provider",
        ),
        (
            json!({"phone_number": "+14155550101", "provider": "twilio"}),
            "provider_reference",
        ),
        // A provider reference needs the project's Twilio account.
        (
            json!({"phone_number": "+14155550101", "provider_reference": "PN0123456789abcdef0123456789abcdef"}),
            "provider_reference",
        ),
    ] {
        let (status, body) = env
            .api(Method::POST, numbers, json!({"pool_number": fields}))
            .await;
        assert_eq!(status, 422, "{fields}: {body}");
        assert_eq!(body["details"][0]["field"], field, "{body}");
    }
    let (status, _) = env
        .api(
            Method::POST,
            "/platform/v1/phone_number_pools/XX/numbers",
            json!({"pool_number": {"phone_number": "+14155550101"}}),
        )
        .await;
    assert_eq!(status, 404);

    let plain = env
        .pool_number("US", json!({"phone_number": "+1 415 555 0101"}))
        .await;
    let (status, body) = env
        .api(
            Method::POST,
            numbers,
            json!({"pool_number": {"phone_number": "+14155550101"}}),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // With the project's Twilio account, a provider number is pointed at wagate.
    env.register_twilio().await;
    let sid = env.owned_number("+14155550102").await;
    let owned = env
        .pool_number(
            "US",
            json!({"phone_number": "+14155550102", "provider_reference": sid}),
        )
        .await;
    let at_twilio = env.twilio_number(&sid).await;
    assert_eq!(
        at_twilio["sms_url"],
        format!(
            "{}/providers/twilio/{}/sms",
            env.app.base, env.app.project_id
        ),
        "{at_twilio}"
    );
    let (status, body) = env
        .api(
            Method::POST,
            numbers,
            json!({"pool_number": {"phone_number": "+14155550103", "provider_reference": "PNffffffffffffffffffffffffffffffff"}}),
        )
        .await;
    assert_eq!(status, 422, "Twilio has no such number: {body}");

    let (status, body) = env
        .api(Method::GET, &format!("{numbers}/{owned}"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    let number = &body["data"];
    assert_eq!(number["state"], "available");
    assert_eq!(number["origin"], "pool");
    assert_eq!(number["country_dial_code"], "1");
    assert_eq!(number["area_code"], "415");
    assert_eq!(number["provider"], "twilio");
    assert_eq!(number["provider_reference"], sid.as_str());
    assert!(number["display_number"]
        .as_str()
        .unwrap()
        .starts_with("+1 415"));

    let (_, body) = env
        .api(Method::GET, "/platform/v1/phone_number_pools", Value::Null)
        .await;
    assert_eq!(
        body["data"],
        json!([{"available": 2, "country_iso": "US", "failed": 0, "in_use": 0,
            "released": 0, "reserved": 0, "total": 2}])
    );
    let (_, body) = env
        .api(
            Method::GET,
            &format!("{numbers}?state=available&per_page=1"),
            Value::Null,
        )
        .await;
    assert_eq!(body["meta"]["total_count"], 2, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (status, _) = env
        .api(Method::GET, &format!("{numbers}?state=busy"), Value::Null)
        .await;
    assert_eq!(status, 422);
    // The country is part of the address.
    let (status, _) = env
        .api(
            Method::GET,
            &format!("/platform/v1/phone_number_pools/CL/numbers/{owned}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 404);

    // Another project sees none of it.
    let (_, other) = env
        .app
        .state
        .api_keys
        .create_project("other")
        .await
        .unwrap();
    let (status, body) = env
        .app
        .call_with_key(&other.plaintext, Method::GET, numbers, None)
        .await;
    assert_eq!(
        (status, body["meta"]["total_count"].clone()),
        (200, json!(0))
    );
    let (status, _) = env
        .app
        .call_with_key(
            &other.plaintext,
            Method::DELETE,
            &format!("{numbers}/{plain}"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A number that cannot receive Meta's code is marked failed by hand: reservations skip it.
    let (status, body) = env
        .api(
            Method::PATCH,
            &format!("{numbers}/{plain}"),
            json!({"pool_number": {"state": "failed"}}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["state"].clone()),
        (200, json!("failed")),
        "{body}"
    );
    let (status, _) = env
        .api(
            Method::PATCH,
            &format!("{numbers}/{plain}"),
            json!({"pool_number": {"state": "in_use"}}),
        )
        .await;
    assert_eq!(status, 422);
    let (_, body) = env
        .api(Method::GET, "/platform/v1/phone_number_pools", Value::Null)
        .await;
    assert_eq!(body["data"][0]["failed"], 1, "{body}");

    // Release gives the number back to Twilio and keeps it as released; removal forgets it.
    let (status, body) = env
        .api(
            Method::POST,
            &format!("{numbers}/{owned}/release"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["state"], "released");
    let gone = env
        .http
        .get(format!(
            "{}/twilio/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{sid}.json",
            env.sandbox_url, env.account_sid
        ))
        .basic_auth(&env.account_sid, Some(&env.auth_token))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let (status, _) = env
        .api(
            Method::POST,
            &format!("{numbers}/{plain}/release"),
            Value::Null,
        )
        .await;
    assert_eq!(
        status, 409,
        "a number without a provider reference is released where it is owned"
    );
    for id in [&plain, &owned] {
        let (status, _) = env
            .api(Method::DELETE, &format!("{numbers}/{id}"), Value::Null)
            .await;
        assert_eq!(status, 204);
    }
    let (status, _) = env
        .api(Method::DELETE, &format!("{numbers}/{plain}"), Value::Null)
        .await;
    assert_eq!(status, 404);
}

async fn link_rules(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let customer = env.customer("Acme").await;
    let seed = json!({
        "allowed_connection_types": ["dedicated"],
        "provision_phone_number": true,
        "phone_number_country_isos": ["US", "CL"],
    });
    let (status, body) = env.create_link(&customer, seed.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"][0]["field"], "provision_phone_number");
    assert!(body["error"].as_str().unwrap().contains("US, CL"), "{body}");
    // A pool number in one of the countries is enough.
    env.pool_number("CL", json!({"phone_number": "+56912345678"}))
        .await;
    let (status, body) = env.create_link(&customer, seed.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["provisioned_phone_number"], Value::Null);
    assert_eq!(
        body["data"]["phone_number_country_isos"],
        json!(["US", "CL"])
    );
    let (status, body) = env
        .create_link(&customer, json!({"provision_phone_number": true}))
        .await;
    assert_eq!(status, 422, "only US asked, no pool there: {body}");
    // A provider makes every country possible.
    env.register_twilio().await;
    let (status, body) = env
        .create_link(&customer, json!({"provision_phone_number": true}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = env
        .create_link(
            &customer,
            json!({"provision_phone_number": true, "allowed_connection_types": ["coexistence"]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("dedicated"),
        "{body}"
    );
}

/// Posts a signed (or not) Twilio callback to wagate.
async fn callback(
    env: &Env,
    path: &str,
    params: &[(&str, &str)],
    token: Option<&str>,
) -> (u16, String) {
    let url = format!("{}{path}", env.app.base);
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut request = env.http.post(&url).form(&pairs);
    if let Some(token) = token {
        request = request.header(
            "x-twilio-signature",
            wagate::telephony::signature::sign(token, &url, &pairs),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn signed_callbacks(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    env.register_twilio().await;
    env.pool_number("US", json!({"phone_number": "+14155550111"}))
        .await;
    let customer = env.customer("Acme").await;
    let (_, link) = env
        .create_link(&customer, json!({"provision_phone_number": true}))
        .await;
    let token = token_of(&link);
    let (status, reserved) = env.provision(&env.app.base, &token).await;
    assert_eq!(status, 200, "{reserved}");
    assert_eq!(reserved["number"]["phone_number"], "+14155550111");

    let project = env.app.project_id;
    let sms = format!("/providers/twilio/{project}/sms");
    let sid = env.account_sid.clone();
    let params = [
        ("AccountSid", sid.as_str()),
        ("From", "+15550001111"),
        ("To", "+14155550111"),
        (
            "Body",
            "<#> 482-913 is your WhatsApp Business verification code.",
        ),
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
    ];
    // Unsigned, wrongly signed, another token, another account, unknown project: 403, nothing kept.
    let (status, _) = callback(&env, &sms, &params, None).await;
    assert_eq!(status, 403);
    let (status, _) = callback(
        &env,
        &sms,
        &params,
        Some("0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(status, 403);
    let mut other_account = params;
    other_account[0].1 = "AC0123456789abcdef0123456789abcdef";
    let (status, _) = callback(&env, &sms, &other_account, Some(&env.auth_token)).await;
    assert_eq!(status, 403);
    let (status, _) = callback(
        &env,
        &format!("/providers/twilio/{}/sms", uuid::Uuid::now_v7()),
        &params,
        Some(&env.auth_token),
    )
    .await;
    assert_eq!(status, 403);
    let seen = env
        .http
        .get(format!("{}/setup/{token}/provisioned", env.app.base))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(seen["number"]["code"], Value::Null, "{seen}");

    let (status, twiml) = callback(&env, &sms, &params, Some(&env.auth_token)).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Response>"), "{twiml}");
    let seen = env
        .http
        .get(format!("{}/setup/{token}/provisioned", env.app.base))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(seen["number"]["code"], "482913", "{seen}");

    // A call is answered with a recording whose transcript comes back, signed, with the code.
    let voice = format!("/providers/twilio/{project}/voice");
    let (status, twiml) = callback(
        &env,
        &voice,
        &[
            ("AccountSid", sid.as_str()),
            ("To", "+14155550111"),
            ("CallSid", "CA1"),
        ],
        Some(&env.auth_token),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains(&format!(
            "transcribeCallback=\"{}{voice}/transcription\"",
            env.app.base
        )),
        "{twiml}"
    );
    let (status, _) = callback(
        &env,
        &format!("{voice}/transcription"),
        &[
            ("AccountSid", sid.as_str()),
            ("To", "+14155550111"),
            (
                "TranscriptionText",
                "Your WhatsApp verification code is 7 7 1 2 0 4.",
            ),
        ],
        Some(&env.auth_token),
    )
    .await;
    assert_eq!(status, 200);
    let seen = env
        .http
        .get(format!("{}/setup/{token}/provisioned", env.app.base))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(seen["number"]["code"], "771204", "{seen}");
}

/// Two instances behind a load balancer, many links at once, fewer pool numbers than links:
/// every number goes to exactly one link.
async fn instances_race_for_pool_numbers(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let second = crate::cache_sync::Sibling::beside(&env.app).await;
    const NUMBERS: usize = 3;
    const LINKS: usize = 8;
    for i in 0..NUMBERS {
        env.pool_number("US", json!({"phone_number": format!("+1415555020{i}")}))
            .await;
    }
    let mut tokens = Vec::new();
    for i in 0..LINKS {
        let customer = env.customer(&format!("Customer {i}")).await;
        let (status, link) = env
            .create_link(&customer, json!({"provision_phone_number": true}))
            .await;
        assert_eq!(status, 201, "{link}");
        tokens.push(token_of(&link));
    }
    let attempts = tokens.iter().enumerate().map(|(i, token)| {
        let base = if i % 2 == 0 {
            env.app.base.clone()
        } else {
            second.base.clone()
        };
        let env = &env;
        async move { env.provision(&base, token).await }
    });
    let answers = futures::future::join_all(attempts).await;
    let mut won: Vec<String> = answers
        .iter()
        .filter(|(_, a)| a["status"] == "reserved")
        .map(|(_, a)| a["number"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(won.len(), NUMBERS, "{answers:?}");
    won.sort();
    won.dedup();
    assert_eq!(
        won.len(),
        NUMBERS,
        "no number went to two links: {answers:?}"
    );
    assert!(answers
        .iter()
        .all(|(s, a)| *s == 200 && (a["status"] == "reserved" || a["status"] == "unavailable")));
}

crate::both_backends!(backend:
    provider_account,
    pools,
    link_rules,
    signed_callbacks,
    instances_race_for_pool_numbers,
);
