//! `serve --sandbox` hands every number's access token to its emulator: it must never start on a
//! database holding a number connected outside sandbox mode, and what it connects is marked as
//! the emulator's.

use reqwest::Method;
use serde_json::json;
use wagate::config::Backend;

use crate::common::app::NUMBERS;
use crate::common::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_mode_refuses_a_database_with_production_numbers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.connect(&app.api_key, "5500001", "5500900", None).await;

    let output = app
        .wagate_command(&["serve", "--sandbox"])
        .env("WAGATE__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "serve --sandbox started");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 phone number(s) connected outside sandbox mode"),
        "{stderr}"
    );
    assert!(stderr.contains("wagate serve"), "says what to do: {stderr}");
    // Nothing was touched: the number is still there, as it was.
    let (status, number) = app
        .call(Method::GET, &format!("{NUMBERS}/5500001"), None)
        .await;
    assert_eq!(status, 200, "{number}");
    assert_eq!(number["data"]["kind"], "production");
}

fn sandbox_mode(config: &mut wagate::config::Config) {
    config.sandbox_mode = true;
    config.graph.verify_numbers = false;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_mode_connects_numbers_as_the_emulators() {
    let app = TestApp::spawn_with(Backend::Sqlite, sandbox_mode).await;
    let data = app
        .connect_number_with(
            &app.api_key,
            json!({"phone_number_id": "5500002", "business_account_id": "5500900",
                   "access_token": "emulator-token"}),
        )
        .await;
    assert_eq!(data["kind"], "sandbox", "{data}");

    let (status, body) = app
        .call(
            Method::POST,
            NUMBERS,
            Some(json!({"whatsapp_phone_number": {
                "phone_number_id": "5500003", "business_account_id": "5500900",
                "access_token": "t", "kind": "production"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("kind"), "{body}");
    assert_eq!(
        app.store
            .count_phone_numbers_not_of_kind("sandbox")
            .await
            .unwrap(),
        0
    );
}
