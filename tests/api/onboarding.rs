//! The hosted onboarding page (`/setup/{token}`) and its completion, against the Graph emulator:
//! theme, language, connection types, the link states, and every completion outcome with its
//! redirect, on both backends.

use reqwest::redirect::Policy;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use wagate::config::{Backend, Config};
use wagate::sandbox::{Sandbox, SANDBOX_APP_ID};
use wagate::store::PhoneNumberPatch;

use crate::common::receiver::Hook;
use crate::common::{emulator, TestApp, APP_SECRET};
use crate::kapso_events::{assert_signed, create_webhook};

const OK_URL: &str = "https://platform.example.com/whatsapp/done?tab=wa";
const FAIL_URL: &str = "https://platform.example.com/whatsapp/failed";
/// Numbers the emulator serves besides its demo number: (phone_number_id, WABA, display).
const NUMBER_2: (&str, &str, &str) = ("100000000000002", "200000000000002", "+1 555-123-4567");
const NUMBER_3: (&str, &str, &str) = ("100000000000003", "200000000000003", "+1 555-765-4321");

struct Env {
    app: TestApp,
    _sandbox: Sandbox,
    sandbox_url: String,
    /// Follows no redirects, so every 303 is seen.
    http: Client,
    customer: String,
}

struct Link {
    id: String,
    token: String,
    url: String,
}

impl Env {
    async fn start(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let (sandbox, sandbox_url) = emulator(|config| config.app_secret = APP_SECRET.into()).await;
        let app = TestApp::spawn_against(backend, &sandbox_url, move |c| {
            c.meta.app_id = SANDBOX_APP_ID.into();
            c.onboarding.simulated_signup = true;
            adjust(c);
        })
        .await;
        let http = Client::builder().redirect(Policy::none()).build().unwrap();
        // Both extra numbers start unregistered and their WABAs unsubscribed, so what the
        // completion asks of Meta is seen.
        for (pnid, waba, display) in [NUMBER_2, NUMBER_3] {
            let response = http
                .post(format!("{sandbox_url}/_sandbox/numbers"))
                .json(&json!({"phone_number_id": pnid, "business_account_id": waba,
                    "access_token": format!("sandbox-token-{pnid}"), "display_phone_number": display,
                    "registered": false}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let response = http
                .delete(format!("{sandbox_url}/v23.0/{waba}/subscribed_apps"))
                .bearer_auth(format!("sandbox-token-{pnid}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        let (status, body) = api(
            &app,
            Method::POST,
            "/platform/v1/customers",
            json!({"customer": {"name": "Acme"}}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let customer = body["data"]["id"].as_str().unwrap().to_owned();
        Self {
            app,
            _sandbox: sandbox,
            sandbox_url,
            http,
            customer,
        }
    }

    async fn link(&self, fields: Value) -> Link {
        let (status, body) = api(
            &self.app,
            Method::POST,
            &format!("/platform/v1/customers/{}/setup_links", self.customer),
            json!({ "setup_link": fields }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let url = body["data"]["url"].as_str().unwrap().to_owned();
        Link {
            id: body["data"]["id"].as_str().unwrap().to_owned(),
            token: url.rsplit('/').next().unwrap().to_owned(),
            url,
        }
    }

    /// The link as the Platform API shows it.
    async fn link_json(&self, id: &str) -> Value {
        let (_, body) = api(
            &self.app,
            Method::GET,
            &format!(
                "/platform/v1/customers/{}/setup_links?per_page=100",
                self.customer
            ),
            Value::Null,
        )
        .await;
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .cloned()
            .unwrap()
    }

    async fn page(
        &self,
        link: &Link,
        accept_language: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut request = self.http.get(&link.url);
        if let Some(lang) = accept_language {
            request = request.header("accept-language", lang);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        (status, headers, response.text().await.unwrap())
    }

    /// Posts the completion form; returns the status, `Location` and body.
    async fn complete(
        &self,
        link: &Link,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        let response = self
            .http
            .post(format!("{}/complete", link.url))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location, response.text().await.unwrap())
    }

    async fn signup(
        &self,
        link: &Link,
        number: (&str, &str, &str),
        kind: &str,
    ) -> (StatusCode, Option<String>, String) {
        let code = format!("sandbox-code-{}", number.0);
        self.complete(
            link,
            &[
                ("code", &code),
                ("waba_id", number.1),
                ("phone_number_id", number.0),
                ("connection_type", kind),
            ],
        )
        .await
    }

    async fn sandbox_number(&self, pnid: &str) -> Value {
        let list: Value = self
            .http
            .get(format!("{}/_sandbox/numbers", self.sandbox_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["phone_number_id"] == pnid)
            .cloned()
            .unwrap()
    }

    async fn subscribed(&self, number: (&str, &str, &str)) -> bool {
        let body: Value = self
            .http
            .get(format!(
                "{}/v23.0/{}/subscribed_apps",
                self.sandbox_url, number.1
            ))
            .bearer_auth(format!("sandbox-token-{}", number.0))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        !body["data"].as_array().unwrap().is_empty()
    }
}

async fn api(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, Value) {
    app.call(method, path, (!body.is_null()).then_some(body))
        .await
}

fn failure(link: &Link, code: &str) -> String {
    format!("{FAIL_URL}?setup_link_id={}&error_code={code}", link.id)
}

fn urls() -> Value {
    json!({"success_redirect_url": OK_URL, "failure_redirect_url": FAIL_URL})
}

fn sha(token: &str) -> String {
    wagate::crypto::sha256_hex(token.as_bytes())
}

async fn page_follows_theme_language_and_allowed_types(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let link = env
        .link(
            json!({"language": "es", "allowed_connection_types": ["coexistence"],
            "theme_config": {"primary_color": "#FF0000", "card_color": "#101010"}}),
        )
        .await;
    assert!(link.url.starts_with(&env.app.base), "{}", link.url);
    let (status, headers, html) = env.page(&link, Some("ar")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'nonce-") && !csp.contains("facebook"),
        "{csp}"
    );
    // The link's language wins over the browser's.
    assert!(html.contains(r#"<html lang="es" dir="ltr">"#), "{html}");
    assert!(html.contains("Conecta tu número de WhatsApp"));
    assert!(html.contains("--primary: #ff0000;") && html.contains("--card: #101010;"));
    assert!(
        html.contains("--background: #ffffff;"),
        "defaults fill the rest"
    );
    // Only coexistence, auto-selected; with its throughput.
    assert!(html.contains(r#"value="coexistence" checked"#), "{html}");
    assert!(!html.contains(r#"value="dedicated""#));
    assert!(html.contains("5 msg/s"));
    // The warning against "Display name only", and the simulated sign-in instead of Facebook.
    assert!(html.contains(r#"id="display-name-warning""#) && html.contains("Display name only"));
    assert!(
        html.contains(r#"id="simulated-signup""#) && html.contains(r#"id="sim-phone-number-id""#)
    );
    assert!(!html.contains("connect.facebook.net") && !html.contains(r#"id="connect""#));
    assert!(html.contains(&format!(r#"action="{}/complete""#, link.token)));

    // No language on the link: the browser's best supported one, right to left for Arabic.
    let auto = env.link(json!({})).await;
    let (_, _, html) = env.page(&auto, Some("de-DE, ar;q=0.8, en;q=0.5")).await;
    assert!(html.contains(r#"<html lang="ar" dir="rtl">"#), "{html}");
    assert!(
        html.contains(r#"value="dedicated">"#) && html.contains(r#"value="coexistence">"#),
        "both, none checked"
    );
    assert!(html.contains("1000 رسالة/ثانية"));
    let (_, _, html) = env.page(&auto, Some("fr-FR")).await;
    assert!(html.contains(r#"<html lang="en" dir="ltr">"#));
    assert!(
        html.contains("Up to 1000 msg/s, API only")
            && html.contains("5 msg/s, keeps the WhatsApp Business app")
    );
    assert!(html.contains("do not choose “Display name only”: it breaks the connection"));

    // Every language has its own words.
    let mut titles = std::collections::HashSet::new();
    for lang in ["en", "es", "pt", "hi", "id", "ar"] {
        let link = env.link(json!({"language": lang})).await;
        let (_, _, html) = env.page(&link, None).await;
        assert!(html.contains(&format!(r#"lang="{lang}""#)), "{lang}");
        let title = html
            .split("<h1 id=\"title\">")
            .nth(1)
            .unwrap()
            .split("</h1>")
            .next()
            .unwrap()
            .to_owned();
        assert!(
            titles.insert(title),
            "{lang} repeats another language's title"
        );
    }

    // Simulated sign-in fields can be prefilled (digits only). (A new link revoked `auto`.)
    let fresh = env.link(json!({})).await;
    let (_, _, html) = env
        .page(
            &Link {
                url: format!("{}?phone_number_id=123&waba_id=4x5", fresh.url),
                ..fresh
            },
            None,
        )
        .await;
    assert!(html.contains(
        r#"id="sim-phone-number-id" dir="ltr" inputmode="numeric" autocomplete="off" value="123""#
    ));
    assert!(html
        .contains(r#"id="sim-waba-id" dir="ltr" inputmode="numeric" autocomplete="off" value="""#));
}

async fn facebook_mode_runs_embedded_signup(backend: Backend) {
    let env = Env::start(backend, |c| {
        c.onboarding.simulated_signup = false;
        c.meta.embedded_signup_config_id = "778899".into();
        c.onboarding.graph_version = "v24.0".into();
    })
    .await;
    let link = env.link(json!({})).await;
    let (status, headers, html) = env.page(&link, None).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("https://connect.facebook.net"), "{csp}");
    for needle in [
        "https://connect.facebook.net/en_US/sdk.js",
        &format!(r#""appId":"{SANDBOX_APP_ID}""#),
        r#""configId":"778899""#,
        r#""version":"v24.0""#,
        "FB.init",
        "FB.login",
        "response_type: 'code'",
        "override_default_response_type: true",
        "whatsapp_business_app_onboarding",
        "sessionInfoVersion: '3'",
        "WA_EMBEDDED_SIGNUP",
        "facebook\\.com$",
        r#"id="connect""#,
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains(r#"id="simulated-signup""#));
}

async fn unknown_tokens_get_a_404_page(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    for path in [
        "/setup/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/setup/not%20a%20token",
        "/setup/x",
    ] {
        let response = env
            .http
            .get(env.app.url(path))
            .header("accept-language", "pt-BR")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("Link de configuração não encontrado"),
            "{html}"
        );
    }
    let response = env
        .http
        .post(
            env.app
                .url("/setup/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/complete"),
        )
        .form(&[("code", "sandbox-code-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn completion_connects_the_number_and_uses_the_link(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    // The platform detects the connection with a project webhook (contract §9.4).
    let connections = Hook::start().await;
    let project_hook = create_webhook(
        &env.app,
        "/platform/v1/whatsapp/webhooks",
        json!({"url": connections.url, "events": ["whatsapp.phone_number.created"]}),
    )
    .await;
    let link = env.link(urls()).await;
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    let announced = connections
        .wait_for(1, std::time::Duration::from_secs(10))
        .await;
    assert_signed(
        &announced[0],
        &project_hook.secret,
        "whatsapp.phone_number.created",
    );
    let body = announced[0].json();
    assert_eq!(body["phone_number_id"], NUMBER_2.0);
    assert_eq!(body["project"]["id"], env.app.project_id.to_string());
    assert_eq!(body["customer"]["id"], env.customer.as_str());
    assert_eq!(
        location.unwrap(),
        format!(
            "{OK_URL}&setup_link_id={}&status=completed&phone_number_id={}&business_account_id={}&display_phone_number=%2B15551234567",
            link.id, NUMBER_2.0, NUMBER_2.1
        )
    );
    let number = env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(number.customer_id.unwrap().to_string(), env.customer);
    assert_eq!(number.project_id, env.app.project_id);
    assert_eq!(number.kind, "production");
    assert!(!number.is_coexistence);
    assert_eq!(number.business_account_id, NUMBER_2.1);
    assert_eq!(number.display_phone_number.as_deref(), Some(NUMBER_2.2));
    assert_eq!(
        number.access_token_sha256,
        sha(&format!("sandbox-token-{}", NUMBER_2.0))
    );
    // Meta's side: app subscribed to the WABA, dedicated number registered.
    assert!(env.subscribed(NUMBER_2).await);
    assert_eq!(env.sandbox_number(NUMBER_2.0).await["registered"], true);

    let shown = env.link_json(&link.id).await;
    assert_eq!(shown["status"], "used");
    assert_eq!(shown["whatsapp_setup_status"], "completed");
    assert_eq!(shown["phone_number_id"], NUMBER_2.0);
    assert_eq!(shown["business_account_id"], NUMBER_2.1);

    // The number is the customer's on the Platform API.
    let (_, numbers) = api(
        &env.app,
        Method::GET,
        &format!(
            "/platform/v1/customers/{}/whatsapp/phone_numbers",
            env.customer
        ),
        Value::Null,
    )
    .await;
    assert_eq!(numbers["data"][0]["phone_number_id"], NUMBER_2.0);

    // A second completion: already_used, and the link stays completed.
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), failure(&link, "already_used"));
    let shown = env.link_json(&link.id).await;
    assert_eq!(shown["whatsapp_setup_status"], "completed");
    assert!(shown["whatsapp_setup_error"].is_null());

    // Opening it again explains, then forwards to the failure URL.
    let (status, _, html) = env.page(&link, None).await;
    assert_eq!(status, 410);
    assert!(html.contains("This setup link was already used"), "{html}");
    let target = failure(&link, "already_used");
    assert!(
        html.contains(&format!(
            r#"<meta http-equiv="refresh" content="3;url={}">"#,
            target.replace('&', "&amp;")
        )),
        "{html}"
    );
    assert!(html.contains(r#"<code id="error-code">already_used</code>"#));
}

async fn coexistence_by_json_without_success_url(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let link = env
        .link(json!({"allowed_connection_types": ["coexistence"], "language": "id"}))
        .await;
    // JSON body; the only allowed type needs no choice. Meta's coexistence finish
    // (`FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`) names only the WABA: its one number is found.
    let response = env
        .http
        .post(format!("{}/complete", link.url))
        .json(&json!({"code": format!("sandbox-code-{}", NUMBER_3.0), "waba_id": NUMBER_3.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Nomor WhatsApp Anda sudah terhubung"),
        "{html}"
    );
    assert!(html.contains(NUMBER_3.2));
    let number = env
        .app
        .store
        .find_phone_number(NUMBER_3.0)
        .await
        .unwrap()
        .unwrap();
    assert!(number.is_coexistence);
    // A coexistence number stays on the app: no registration.
    assert_eq!(env.sandbox_number(NUMBER_3.0).await["registered"], false);
    assert!(env.subscribed(NUMBER_3).await);
}

async fn bad_code_is_token_exchange_failed_and_the_link_stays_usable(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let link = env.link(urls()).await;
    let (status, location, _) = env
        .complete(
            &link,
            &[
                ("code", "sandbox-code-999"),
                ("waba_id", NUMBER_2.1),
                ("phone_number_id", NUMBER_2.0),
                ("connection_type", "dedicated"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), failure(&link, "token_exchange_failed"));
    assert!(env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .is_none());
    assert!(
        !env.subscribed(NUMBER_2).await,
        "nothing asked of Meta after the refused exchange"
    );
    let shown = env.link_json(&link.id).await;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["whatsapp_setup_status"], "failed");
    assert_eq!(shown["whatsapp_setup_error"], "token_exchange_failed");

    // The customer tries again and succeeds.
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with(OK_URL));
    assert_eq!(
        env.link_json(&link.id).await["whatsapp_setup_status"],
        "completed"
    );
}

async fn invalid_inputs_fail_with_a_page_when_there_is_no_url(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let link = env.link(json!({"language": "en"})).await;
    let code = format!("sandbox-code-{}", NUMBER_2.0);
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[
                ("waba_id", NUMBER_2.1),
                ("phone_number_id", NUMBER_2.0),
                ("connection_type", "dedicated"),
            ],
            "facebook_auth_failed",
        ),
        (
            &[
                ("code", &code),
                ("waba_id", "20x"),
                ("phone_number_id", NUMBER_2.0),
                ("connection_type", "dedicated"),
            ],
            "facebook_auth_failed",
        ),
        (
            &[
                ("code", &code),
                ("waba_id", NUMBER_2.1),
                ("connection_type", "dedicated"),
            ],
            "phone_verification_failed",
        ),
        (
            &[
                ("code", &code),
                ("waba_id", NUMBER_2.1),
                ("phone_number_id", NUMBER_2.0),
            ],
            "facebook_auth_failed",
        ),
        (
            &[
                ("code", &code),
                ("waba_id", NUMBER_2.1),
                ("phone_number_id", NUMBER_2.0),
                ("connection_type", "shared"),
            ],
            "facebook_auth_failed",
        ),
    ];
    for (form, expected) in cases {
        let (status, location, html) = env.complete(&link, form).await;
        assert_eq!(status, 400, "{form:?}");
        assert!(location.is_none());
        assert!(
            html.contains(&format!(r#"<code id="error-code">{expected}</code>"#)),
            "{form:?}: {html}"
        );
        assert!(html.contains("The connection did not complete"));
        assert!(
            html.contains(&format!(r#"href="../{}""#, link.token)),
            "try again goes back to the page"
        );
    }
    // The WABA must list the number (Graph verification): another WABA's number is refused.
    let (status, _, html) = env
        .complete(
            &link,
            &[
                ("code", &code),
                ("waba_id", NUMBER_3.1),
                ("phone_number_id", NUMBER_2.0),
                ("connection_type", "dedicated"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(html.contains("phone_verification_failed"));
    assert!(env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .is_none());
    assert_eq!(env.link_json(&link.id).await["status"], "active");
}

async fn revoked_links_are_link_expired(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let link = env.link(urls()).await;
    let (status, _) = api(
        &env.app,
        Method::PATCH,
        &format!(
            "/platform/v1/customers/{}/setup_links/{}",
            env.customer, link.id
        ),
        json!({"setup_link": {"status": "revoked"}}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, html) = env.page(&link, Some("es")).await;
    assert_eq!(status, 410);
    assert!(
        html.contains("Este enlace de configuración ya no es válido"),
        "{html}"
    );
    assert!(html.contains(&failure(&link, "link_expired").replace('&', "&amp;")));
    assert!(html.contains(r#"id="continue""#));
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), failure(&link, "link_expired"));
    assert!(env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .is_none());
    // A newer link revokes the previous one too; without a failure URL the page only explains.
    let plain = env.link(json!({})).await;
    env.link(json!({})).await;
    let (status, _, html) = env.page(&plain, None).await;
    assert_eq!(status, 410);
    assert!(!html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("link_expired"));
}

/// A link past its expiry (set in the store: the API only moves it into the future) reads as
/// expired, explains itself and sends completions to the failure URL with `link_expired`.
async fn expired_links_are_link_expired(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let link = env.link(urls()).await;
    let customer = uuid::Uuid::parse_str(&env.customer.to_string()).unwrap();
    let id = uuid::Uuid::parse_str(&link.id).unwrap();
    let past = wagate::store::SetupLinkPatch {
        revoke: false,
        expires_at: Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
    };
    env.app
        .store
        .update_setup_link(customer, id, &past, chrono::Utc::now())
        .await
        .unwrap();
    let (status, listed) = api(
        &env.app,
        Method::GET,
        &format!(
            "/platform/v1/customers/{}/setup_links?status=expired",
            env.customer
        ),
        json!(null),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], json!(link.id));
    assert_eq!(listed["data"][0]["status"], "expired");
    let (status, _, html) = env.page(&link, None).await;
    assert_eq!(status, 410);
    assert!(
        html.contains(&failure(&link, "link_expired").replace('&', "&amp;")),
        "{html}"
    );
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), failure(&link, "link_expired"));
    assert!(env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .is_none());
}

async fn reconnect_links_update_the_token_only_for_their_number(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let first = env.link(urls()).await;
    let (status, _, _) = env.signup(&first, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    // The token went stale (as Meta's do): stored as something else.
    let stale = wagate::store::SealedSecret {
        sealed: vec![1, 2, 3],
        key_id: "old".into(),
    };
    env.app
        .store
        .update_phone_number(
            env.app.project_id,
            NUMBER_2.0,
            PhoneNumberPatch {
                access_token: Some((stale, "stale".into())),
                ..PhoneNumberPatch::default()
            },
        )
        .await
        .unwrap();
    let mut fields = urls();
    fields["reconnect_phone_number"] = json!("+15551234567");
    let link = env.link(fields).await;
    let (_, _, html) = env.page(&link, None).await;
    assert!(
        html.contains(r#"value="dedicated" checked"#),
        "locked to the number's type"
    );

    // Signing in with another number fails and changes nothing, here or at Meta.
    let (status, location, _) = env.signup(&link, NUMBER_3, "dedicated").await;
    assert_eq!(status, 303);
    assert_eq!(
        location.unwrap(),
        failure(&link, "phone_verification_failed")
    );
    let number = env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(number.access_token_sha256, "stale");
    assert!(env
        .app
        .store
        .find_phone_number(NUMBER_3.0)
        .await
        .unwrap()
        .is_none());
    assert!(!env.subscribed(NUMBER_3).await);
    assert_eq!(env.sandbox_number(NUMBER_3.0).await["registered"], false);
    let shown = env.link_json(&link.id).await;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["whatsapp_setup_error"], "phone_verification_failed");

    // The same number: its token is replaced, nothing else changes, and the reconnect is
    // announced like a first connect.
    let connections = Hook::start().await;
    create_webhook(
        &env.app,
        "/platform/v1/whatsapp/webhooks",
        json!({"url": connections.url, "events": ["whatsapp.phone_number.created"]}),
    )
    .await;
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    let announced = connections
        .wait_for(1, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(announced[0].json()["phone_number_id"], NUMBER_2.0);
    assert_eq!(status, 303);
    assert_eq!(
        location.unwrap(),
        format!(
            "{OK_URL}&setup_link_id={}&status=completed&phone_number_id={}&business_account_id={}&display_phone_number=%2B15551234567",
            link.id, NUMBER_2.0, NUMBER_2.1
        )
    );
    let after = env
        .app
        .store
        .find_phone_number(NUMBER_2.0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.access_token_sha256,
        sha(&format!("sandbox-token-{}", NUMBER_2.0))
    );
    assert_eq!(after.internal_id, number.internal_id);
    assert_eq!(after.customer_id, number.customer_id);
    assert_eq!(env.link_json(&link.id).await["status"], "used");
    // The new token works through the proxy.
    let response = env
        .app
        .request(Method::GET, &format!("/meta/whatsapp/v24.0/{}", NUMBER_2.0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn numbers_connected_elsewhere_are_refused(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    // The demo number belongs to the project already (no customer).
    env.app
        .connect_number(
            &env.app.api_key,
            "100000000000001",
            "200000000000001",
            "sandbox-token-100000000000001",
        )
        .await;
    let link = env.link(urls()).await;
    let (status, location, _) = env
        .signup(
            &link,
            ("100000000000001", "200000000000001", ""),
            "coexistence",
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        location.unwrap(),
        failure(&link, "phone_verification_failed")
    );
    let number = env
        .app
        .store
        .find_phone_number("100000000000001")
        .await
        .unwrap()
        .unwrap();
    assert!(number.customer_id.is_none());
    assert_eq!(env.link_json(&link.id).await["status"], "active");
}

async fn wrong_app_secret_is_token_exchange_failed(backend: Backend) {
    let env = Env::start(backend, |c| {
        c.meta.app_secret = "not-the-secret".to_owned().into()
    })
    .await;
    let link = env.link(urls()).await;
    let (status, location, _) = env.signup(&link, NUMBER_2, "dedicated").await;
    assert_eq!(status, 303);
    assert_eq!(location.unwrap(), failure(&link, "token_exchange_failed"));
}

crate::both_backends!(backend:
    page_follows_theme_language_and_allowed_types,
    facebook_mode_runs_embedded_signup,
    unknown_tokens_get_a_404_page,
    completion_connects_the_number_and_uses_the_link,
    coexistence_by_json_without_success_url,
    bad_code_is_token_exchange_failed_and_the_link_stays_usable,
    invalid_inputs_fail_with_a_page_when_there_is_no_url,
    revoked_links_are_link_expired,
    expired_links_are_link_expired,
    reconnect_links_update_the_token_only_for_their_number,
    numbers_connected_elsewhere_are_refused,
    wrong_app_secret_is_token_exchange_failed,
);
