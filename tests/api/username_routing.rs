//! `business_username_updates` reach only the number they concern (#21 item 3): by the display
//! number they name; without one, the WABA's only number; with several numbers and no display
//! number, none (the event is stored unrouted). Statuses are stored lower case, as the proxy
//! stores them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::meta::{envelope, post_webhook};
use crate::common::{eventually, TestApp};

async fn username_of(app: &TestApp, pnid: &str) -> (Value, Value) {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{pnid}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["data"]["username"].clone(),
        body["data"]["username_status"].clone(),
    )
}

async fn connect(app: &TestApp, pnid: &str, waba: &str, display: &str) {
    app.connect_number_with(
        &app.api_key,
        json!({"phone_number_id": pnid, "business_account_id": waba,
            "access_token": format!("token-{pnid}"), "display_phone_number": display}),
    )
    .await;
}

async fn update(app: &TestApp, waba: &str, value: Value) {
    let body = serde_json::to_vec(&envelope(waba, "business_username_updates", value)).unwrap();
    let response = post_webhook(&app.client, &app.base, &body).await;
    assert_eq!(response.status(), 200);
}

async fn username_updates_reach_their_number_only(app: TestApp) {
    connect(&app, "8001", "9100", "+1 555-000-0001").await;
    connect(&app, "8002", "9100", "+1 555-000-0002").await;
    connect(&app, "8003", "9200", "+1 555-000-0003").await;

    // Named by its display number: that number only, status lower case.
    update(&app, "9100", json!({"display_phone_number": "15550000002", "username": "acme.two", "status": "APPROVED"})).await;
    eventually(Duration::from_secs(10), "the update applied", || async {
        (username_of(&app, "8002").await == (json!("acme.two"), json!("approved"))).then_some(())
    })
    .await;
    assert_eq!(username_of(&app, "8001").await, (Value::Null, Value::Null));

    // No display number, a WABA with one number: that number.
    update(
        &app,
        "9200",
        json!({"username": "solo", "status": "RESERVED"}),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the lone number's update",
        || async {
            (username_of(&app, "8003").await == (json!("solo"), json!("reserved"))).then_some(())
        },
    )
    .await;

    // No display number, a WABA with two: ambiguous, applied to neither. The event is stored;
    // a later, named update shows the ingest went past it.
    update(
        &app,
        "9100",
        json!({"username": "everyone", "status": "APPROVED"}),
    )
    .await;
    update(&app, "9100", json!({"display_phone_number": "15550000001", "username": "acme.one", "status": "APPROVED"})).await;
    eventually(
        Duration::from_secs(10),
        "the named update after the ambiguous one",
        || async {
            (username_of(&app, "8001").await == (json!("acme.one"), json!("approved")))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        username_of(&app, "8002").await,
        (json!("acme.two"), json!("approved"))
    );
}

/// The display numbers given at connect are kept: the Graph double would answer one display
/// number for every id.
fn own_display_numbers(config: &mut wagate::config::Config) {
    config.graph.verify_numbers = false;
}

crate::both_backends!(app with own_display_numbers: username_updates_reach_their_number_only);
