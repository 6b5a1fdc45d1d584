//! Deliveries stay off private networks: refused when the URL is set, refused again at every
//! attempt (before any TCP connection), and redirects are never followed.

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;
use wagate::store::PhoneNumberPatch;

use crate::support::*;

fn strict(config: &mut wagate::config::Config) {
    config.delivery.allow_http = true;
    config.delivery.allow_private_networks = false;
}

/// A name no URL rule knows that resolves to loopback (the other answers given make it a
/// rebinding name: a public address beside a private one), so only the DNS-time checks can
/// refuse it. `.test` names are answered by the guard's test hook in this process, on every
/// machine, without /etc/hosts or a network.
fn rebinding_name(label: &str, public_too: bool) -> String {
    let name = format!("{label}.rebinding.wagate.test");
    let mut ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    if public_too {
        ips.push(std::net::IpAddr::from([93, 184, 216, 34]));
    }
    wagate::destination_guard::answer_test_name(&name, &ips);
    name
}

fn assert_refused(status: u16, body: &Value, url: &str) {
    assert_eq!(status, 422, "{url} accepted: {body}");
    assert!(
        body["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["field"] == "webhook_destination_url"),
        "{url}: {body}"
    );
}

async fn private_destinations_are_refused_when_set(backend: Backend) {
    let app = spawn(backend, strict).await;
    let live = Hook::start().await;
    let live6 = Hook::bind("[::1]:0").await;
    let (p, p6) = (live.port(), live6.port());
    let mut urls = vec![
        format!("http://127.0.0.1:{p}/hook"),
        format!("http://localhost:{p}/"),
        format!("http://[::1]:{p6}/"),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        "http://169.254.169.254/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://172.16.0.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://metadata.google.internal/".to_owned(),
        format!("http://0.0.0.0:{p}/"),
    ];
    urls.push(format!("http://{}:{p}/hook", rebinding_name("set", false)));
    urls.push(format!(
        "http://{}:{p}/hook",
        rebinding_name("set-mixed", true)
    ));

    for (n, url) in urls.iter().enumerate() {
        let (status, body) = app
            .call(
                Method::POST,
                NUMBERS,
                Some(json!({"whatsapp_phone_number": {
                    "phone_number_id": format!("1000000000001{n:02}"),
                    "business_account_id": "200000000000001",
                    "access_token": "token",
                    "webhook_destination_url": url,
                }})),
            )
            .await;
        assert_refused(status, &body, url);
    }

    let number = app
        .connect(&app.api_key, "100000000000001", "200000000000001", None)
        .await;
    let path = format!("{NUMBERS}/{}", number.pnid);
    for url in &urls {
        let (status, body) = app
            .call(
                Method::PATCH,
                &path,
                Some(json!({"whatsapp_phone_number": {"webhook_destination_url": url}})),
            )
            .await;
        assert_refused(status, &body, url);
    }
    let (_, shown) = app.get(&path).await;
    assert_eq!(shown["data"]["webhook_destination_url"], Value::Null);
    // A public address is accepted under the same policy (no DNS needed for a literal).
    let (status, body) = app.call(Method::PATCH,
        &path,
        Some(json!({"whatsapp_phone_number": {"webhook_destination_url": "http://93.184.216.34/hook"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        live.connections() + live6.connections(),
        0,
        "nothing probed"
    );
}

async fn private_destinations_are_refused_at_delivery(backend: Backend) {
    let app = spawn(backend, strict).await;
    let live = Hook::start().await;
    let p = live.port();
    let urls = vec![
        format!("http://127.0.0.1:{p}/hook"),
        format!("http://localhost:{p}/hook"),
        format!("http://[::ffff:127.0.0.1]:{p}/hook"),
        // Other spellings of the listener's address (0.0.0.0 reaches it too, on Linux).
        format!("http://2130706433:{p}/hook"),
        format!("http://0x7f.1:{p}/hook"),
        format!("http://0.0.0.0:{p}/hook"),
        // Only the delivery client's resolver can refuse these.
        format!("http://{}:{p}/hook", rebinding_name("deliver", false)),
        format!("http://{}:{p}/hook", rebinding_name("deliver-mixed", true)),
    ];
    let mut numbers = Vec::new();
    for (n, url) in urls.iter().enumerate() {
        let number = app
            .connect(
                &app.api_key,
                &format!("1000000000000{n:02}"),
                &format!("2000000000000{n:02}"),
                None,
            )
            .await;
        // Written as an instance with allow_private_networks would have accepted it.
        app.store
            .update_phone_number(
                app.project_id,
                &number.pnid,
                PhoneNumberPatch {
                    webhook_destination_url: Some(Some(url.clone())),
                    ..PhoneNumberPatch::default()
                },
            )
            .await
            .unwrap();
        numbers.push(number);
    }
    for (n, number) in numbers.iter().enumerate() {
        app.post_webhook_ok(&number.inbound(&format!("wamid.SSRF{n}"), "hi"))
            .await;
    }
    for (n, (number, url)) in numbers.iter().zip(&urls).enumerate() {
        let listed = wait_deliveries(&app, number, 1).await;
        let d = wait_status(&app, listed[0]["id"].as_str().unwrap(), "dead", ms(6000)).await;
        let attempts = d["attempts"].as_array().unwrap();
        assert!(!attempts.is_empty(), "{d:#}");
        for attempt in attempts {
            assert_eq!(attempt["status_code"], Value::Null, "{url}: {attempt}");
            assert_eq!(attempt["destination"], url.as_str());
            let error = attempt["error"].as_str().unwrap();
            assert!(error.starts_with("destination refused"), "{url}: {error}");
        }
        wait_processing_status(&app, number, &format!("wamid.SSRF{n}"), "failed").await;
    }
    assert_eq!(
        live.connections(),
        0,
        "a refused destination was connected to"
    );

    // The control: the same names do reach a receiver through wagate's delivery client when
    // private networks are allowed, so it was the guard that kept the attempts above away.
    let control = Hook::start().await;
    let mut open = app.config.delivery.clone();
    open.allow_private_networks = true;
    let client = wagate::delivery::worker::client(&open).unwrap();
    for label in ["deliver", "deliver-mixed"] {
        let url = format!(
            "http://{label}.rebinding.wagate.test:{}/hook",
            control.port()
        );
        let answered = client.post(&url).body("{}").send().await.unwrap();
        assert_eq!(answered.status(), 200, "{url}");
    }
    assert_eq!(control.connections(), 2);
}

async fn redirects_are_not_followed(backend: Backend) {
    let app = spawn(backend, |_| {}).await;
    let target = Hook::start().await;
    let redirector = Hook::start().await;
    redirector
        .then(Reply::status(302).header("location", &target.url))
        .then(Reply::status(307).header("location", &target.url));
    redirector.always(Reply::status(308).header("location", &target.url));
    let number = app
        .connect(
            &app.api_key,
            "100000000000001",
            "200000000000001",
            Some(&redirector.url),
        )
        .await;
    app.post_webhook_ok(&number.inbound("wamid.REDIRECT", "hop"))
        .await;
    let listed = wait_deliveries(&app, &number, 1).await;
    let d = wait_status(&app, listed[0]["id"].as_str().unwrap(), "dead", ms(6000)).await;
    let attempts = d["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "{d:#}");
    let codes: Vec<_> = attempts
        .iter()
        .take(3)
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(302), json!(307), json!(308)]);
    assert_eq!(attempts[0]["error"], "receiver answered 302");
    assert_eq!(redirector.hits().len(), attempts.len());
    assert_eq!(target.connections(), 0, "a redirect was followed");
}

crate::both_backends!(backend:
    private_destinations_are_refused_when_set,
    private_destinations_are_refused_at_delivery,
    redirects_are_not_followed,
);
