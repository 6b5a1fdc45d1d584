//! `/platform/v1/whatsapp/phone_numbers`: every route, success and each error, and isolation.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;

const PATH: &str = "/platform/v1/whatsapp/phone_numbers";

async fn post_number(app: &TestApp, body: Value) -> (u16, Value) {
    app.call(Method::POST, PATH, Some(body)).await
}

async fn connect_returns_the_full_object_without_secrets(app: TestApp) {
    app.graph
        .own("EAAG-secret-token", "1234567890", "98765432109");
    let response = app
        .request(Method::POST, PATH)
        .json(&json!({"whatsapp_phone_number": {
            "phone_number_id": "1234567890",
            "business_account_id": "98765432109",
            "access_token": "EAAG-secret-token",
            "name": "Support Line",
            "display_phone_number": "+1 555-123-4567",
            "webhook_destination_url": "https://hooks.example.com/wa",
            "calls_enabled": true,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("application/json"));
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("EAAG-secret-token"),
        "token must never be returned: {text}"
    );
    let data = serde_json::from_str::<Value>(&text).unwrap()["data"].clone();
    for key in [
        "id",
        "internal_id",
        "phone_number_id",
        "name",
        "business_account_id",
        "is_coexistence",
        "inbound_processing_enabled",
        "calls_enabled",
        "webhook_verified_at",
        "created_at",
        "updated_at",
        "customer_id",
        "display_name",
        "display_phone_number",
        "display_phone_number_normalized",
        "verified_name",
        "quality_rating",
        "code_verification_status",
        "name_status",
        "status",
        "throughput_tier",
        "whatsapp_business_manager_messaging_limit",
        "is_official_business_account",
        "is_pin_enabled",
    ] {
        assert!(data.get(key).is_some(), "missing {key} in {data}");
    }
    assert_eq!(data["id"], "1234567890");
    assert_eq!(data["phone_number_id"], "1234567890");
    assert_eq!(data["business_account_id"], "98765432109");
    // Meta's details (from the verification call) win over what the caller claimed.
    assert_eq!(data["display_phone_number"], "+1 555-000-0001");
    assert_eq!(data["display_phone_number_normalized"], "15550000001");
    assert_eq!(data["verified_name"], "Mock Business");
    assert_eq!(data["status"], "CONNECTED");
    assert_eq!(data["display_name"], "Support Line");
    assert_eq!(data["calls_enabled"], true);
    assert_eq!(data["inbound_processing_enabled"], true);
    assert_eq!(data["is_pin_enabled"], false);
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));
    uuid::Uuid::parse_str(data["internal_id"].as_str().unwrap()).unwrap();
    // The generated webhook secret is shown once, at creation.
    let secret = data["webhook_secret"].as_str().unwrap();
    assert!(secret.len() >= 32);

    let shown = app
        .request(Method::GET, &format!("{PATH}/1234567890"))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    let shown_text = shown.text().await.unwrap();
    assert!(!shown_text.contains(secret) && !shown_text.contains("EAAG-secret-token"));
    let shown: Value = serde_json::from_str(&shown_text).unwrap();
    assert_eq!(shown["data"]["internal_id"], data["internal_id"]);
    assert!(shown["data"].get("webhook_secret").is_none());

    // Stored encrypted: the token's bytes are not in the row.
    let row = app
        .store
        .find_phone_number("1234567890")
        .await
        .unwrap()
        .unwrap();
    assert!(!row
        .access_token_sealed
        .windows(b"EAAG-secret-token".len())
        .any(|w| w == b"EAAG-secret-token"));
    assert_eq!(
        row.access_token_sha256,
        wagate::crypto::sha256_hex(b"EAAG-secret-token")
    );
}

async fn connect_validation_names_each_field(app: TestApp) {
    let (status, body) = post_number(&app, json!({"whatsapp_phone_number": {}})).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["phone_number_id", "business_account_id", "access_token"]
    );
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("phone_number_id is required"));

    let cases = [
        (
            json!({"phone_number_id": "12ab", "business_account_id": "1", "access_token": "t"}),
            "phone_number_id",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "x", "access_token": "t"}),
            "business_account_id",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "  "}),
            "access_token",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "t", "webhook_destination_url": "ftp://x"}),
            "webhook_destination_url",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "t", "webhook_destination_url": "not a url"}),
            "webhook_destination_url",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "t", "kind": "weird"}),
            "kind",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "t", "customer_id": "nope"}),
            "customer_id",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "t", "calls_enabled": "yes"}),
            "calls_enabled",
        ),
        (
            json!({"phone_number_id": "1", "business_account_id": "1", "access_token": "t", "name": "x".repeat(300)}),
            "name",
        ),
    ];
    for (input, field) in cases {
        let (status, body) = post_number(&app, json!({ "whatsapp_phone_number": input })).await;
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(body["details"][0]["field"], field, "{body}");
    }

    let (status, body) = post_number(&app, json!({"phone_number_id": "1"})).await;
    assert_eq!(status, 422);
    assert_eq!(body["details"][0]["field"], "whatsapp_phone_number");

    let response = app
        .request(Method::POST, PATH)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    // Nothing was stored by any of the failures.
    let page = app
        .store
        .list_phone_numbers(app.project_id, None, 1, 100)
        .await
        .unwrap();
    assert_eq!(page.total_count, 0);
}

async fn duplicate_connect_is_409_and_keeps_the_original(app: TestApp) {
    app.connect_number(&app.api_key, "555", "777", "token-a")
        .await;
    // A second token Meta issued for the same number (another system user of the business).
    app.graph.own("token-b", "555", "777");
    let (status, body) = post_number(
        &app,
        json!({"whatsapp_phone_number": {"phone_number_id": "555", "business_account_id": "777", "access_token": "token-b", "name": "Second"}}),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("already connected"));
    let row = app.store.find_phone_number("555").await.unwrap().unwrap();
    assert_eq!(row.business_account_id, "777");
    assert_eq!(row.name.as_deref(), Some("Line 555"));
    assert_eq!(
        row.access_token_sha256,
        wagate::crypto::sha256_hex(b"token-a")
    );
}

async fn an_older_graph_still_verifies_with_the_base_fields(app: TestApp) {
    app.graph.own("old-graph-token", "4201", "4301");
    app.graph.like_an_older_graph();
    let before = app.graph.recorded().len();
    let response = app
        .request(Method::POST, PATH)
        .json(&json!({"whatsapp_phone_number": {"phone_number_id": "4201", "business_account_id": "4301", "access_token": "old-graph-token"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let asked: Vec<String> = app.graph.recorded()[before..]
        .iter()
        .filter(|r| r.path_and_query.contains("/4201?"))
        .map(|r| r.path_and_query.clone())
        .collect();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!(asked[0].contains("whatsapp_business_manager_messaging_limit"));
    assert!(!asked[1].contains("whatsapp_business_manager_messaging_limit"));
    assert!(asked[1].contains("display_phone_number"));
}

async fn customer_form_connects_and_lists(app: TestApp) {
    let customer = app.create_customer(app.project_id, "Acme").await;
    let path = format!("/platform/v1/customers/{customer}/whatsapp/phone_numbers");
    app.graph.own("t", "42", "43");
    let response = app
        .request(Method::POST, &path)
        .json(&json!({"whatsapp_phone_number": {"phone_number_id": "42", "business_account_id": "43", "access_token": "t"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let data: Value = response.json().await.unwrap();
    assert_eq!(data["data"]["customer_id"], customer.to_string());
    app.connect_number(&app.api_key, "44", "43", "t").await;

    let list: Value = app
        .request(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["meta"]["total_count"], 1);
    let filtered: Value = app
        .request(Method::GET, &format!("{PATH}?customer_id={customer}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["data"][0]["phone_number_id"], "42");

    // Unknown, malformed and other-project customers: the same 404.
    let (other_project, _) = app.other_project().await;
    let foreign = app.create_customer(other_project, "Theirs").await;
    let mut bodies = Vec::new();
    for id in [
        uuid::Uuid::now_v7().to_string(),
        "garbage".into(),
        foreign.to_string(),
    ] {
        let response = app
            .request(Method::POST, &format!("/platform/v1/customers/{id}/whatsapp/phone_numbers"))
            .json(&json!({"whatsapp_phone_number": {"phone_number_id": "45", "business_account_id": "43", "access_token": "t"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        bodies.push(response.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert!(app.store.find_phone_number("45").await.unwrap().is_none());
}

async fn list_pages_with_meta(app: TestApp) {
    for i in 0..5 {
        app.connect_number(&app.api_key, &format!("10{i}"), "9", "t")
            .await;
    }
    let page: Value = app
        .request(Method::GET, &format!("{PATH}?page=2&per_page=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["meta"],
        json!({"page": 2, "per_page": 2, "total_pages": 3, "total_count": 5})
    );
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["102", "101"], "newest first");
    for bad in [
        "per_page=0",
        "per_page=101",
        "page=0",
        "page=abc",
        "customer_id=zzz",
    ] {
        let response = app
            .request(Method::GET, &format!("{PATH}?{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string());
    }
}

async fn patch_updates_fields_and_rotates_secret(app: TestApp) {
    app.connect_number(&app.api_key, "77", "78", "old-token")
        .await;
    app.graph.own("new-token", "77", "78");
    let response = app
        .request(Method::PATCH, &format!("{PATH}/77"))
        .json(&json!({"whatsapp_phone_number": {
            "access_token": "new-token",
            "webhook_destination_url": "https://example.org/in",
            "name": "Renamed",
            "inbound_processing_enabled": false,
            "calls_enabled": true,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("new-token"));
    let data = serde_json::from_str::<Value>(&text).unwrap()["data"].clone();
    assert_eq!(data["name"], "Renamed");
    assert_eq!(data["webhook_destination_url"], "https://example.org/in");
    assert_eq!(data["inbound_processing_enabled"], false);
    assert_eq!(data["calls_enabled"], true);
    assert!(data.get("webhook_secret").is_none());
    let row = app.store.find_phone_number("77").await.unwrap().unwrap();
    assert_eq!(
        row.access_token_sha256,
        wagate::crypto::sha256_hex(b"new-token")
    );

    let rotated: Value = app
        .request(Method::PATCH, &format!("{PATH}/77"))
        .json(&json!({"whatsapp_phone_number": {"rotate_webhook_secret": true, "webhook_destination_url": null}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rotated["data"]["webhook_secret"].as_str().unwrap().len() >= 32);
    assert_eq!(rotated["data"]["webhook_destination_url"], Value::Null);
    assert_eq!(rotated["data"]["name"], "Renamed", "absent keys are kept");

    for (body, field) in [
        (
            json!({"webhook_destination_url": "javascript:alert(1)"}),
            "webhook_destination_url",
        ),
        (json!({"access_token": ""}), "access_token"),
        (json!({"calls_enabled": 3}), "calls_enabled"),
    ] {
        let response = app
            .request(Method::PATCH, &format!("{PATH}/77"))
            .json(&json!({ "whatsapp_phone_number": body }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"][0]["field"], field);
    }
    let missing = app
        .request(Method::PATCH, &format!("{PATH}/404404"))
        .json(&json!({"whatsapp_phone_number": {"name": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

async fn delete_disconnects(app: TestApp) {
    app.connect_number(&app.api_key, "88", "89", "t").await;
    let response = app
        .request(Method::DELETE, &format!("{PATH}/88"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let again = app
        .request(Method::DELETE, &format!("{PATH}/88"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let get = app
        .request(Method::GET, &format!("{PATH}/88"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404);
}

async fn other_projects_numbers_look_like_unknown_ones(app: TestApp) {
    let (_, other_key) = app.other_project().await;
    app.connect_number(&other_key, "31337", "1", "theirs").await;
    app.connect_number(&app.api_key, "1000", "1", "mine").await;

    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let mut bodies = Vec::new();
        for id in ["31337", "99999999"] {
            let mut request = app.request(method.clone(), &format!("{PATH}/{id}"));
            if method == Method::PATCH {
                request = request.json(&json!({"whatsapp_phone_number": {"name": "pwned"}}));
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 404, "{method} {id}");
            bodies.push(response.text().await.unwrap());
        }
        assert_eq!(
            bodies[0], bodies[1],
            "{method}: no oracle between foreign and unknown"
        );
    }
    let list: Value = app
        .request(Method::GET, PATH)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1000"]);
    let theirs = app.store.find_phone_number("31337").await.unwrap().unwrap();
    assert_eq!(theirs.name.as_deref(), Some("Line 31337"), "untouched");
}

async fn platform_auth_errors(app: TestApp) {
    let missing = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("X-API-Key"));

    for key in [
        "wag_wrongwrongwrongwrongwrongwrongwrongwrongwro",
        "not-a-key",
        "",
    ] {
        let response = app
            .request_with_key(Method::GET, PATH, key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{key:?}");
    }
    // A number's Bearer token identifies a number, not a project: not accepted here.
    app.connect_number(&app.api_key, "5", "6", "bearer-tok")
        .await;
    let bearer = app
        .client
        .get(app.url(PATH))
        .bearer_auth("bearer-tok")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);

    // A revoked key stops working (at once on the instance that revoked it).
    let issued =
        wagate::domain::projects::issue_api_key(&*app.store, &app.checksum, app.project_id)
            .await
            .unwrap();
    let ok = app
        .request_with_key(Method::GET, PATH, &issued.plaintext)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    app.store.revoke_api_key(issued.record.id).await.unwrap();
    // Another instance (or the CLI) revoked it: this instance notices once its cache entry
    // expires (cache.ttl; later on a loaded machine, never before the revocation).
    let within = app.config.cache.ttl + std::time::Duration::from_secs(20);
    crate::common::eventually(within, "the revoked key refused", || async {
        let answer = app
            .request_with_key(Method::GET, PATH, &issued.plaintext)
            .send()
            .await
            .unwrap();
        (answer.status() == 401).then_some(())
    })
    .await;
}

/// Number verification is negative unless Meta issued the token for that number and WABA:
/// the Graph double answers as Meta does (190 for a token it never issued, 100/33 for an object
/// the token cannot reach), and wagate refuses the connection or the new token with 422, after
/// asking Graph, storing nothing.
async fn verification_is_negative_unless_the_token_owns_the_number(app: TestApp) {
    const A: &str = "610000000000001";
    const A_WABA: &str = "620000000000001";
    const B: &str = "610000000000002";
    const B_WABA: &str = "620000000000002";
    app.graph.own("token-a", A, A_WABA);
    app.graph.own("token-b", B, B_WABA);
    let cases = [
        ("never-issued", A, A_WABA, "access_token"),
        ("token-b", A, A_WABA, "access_token"),
        ("token-b", A, B_WABA, "access_token"),
        ("token-b", B, A_WABA, "business_account_id"),
        ("token-a", A, B_WABA, "business_account_id"),
    ];
    for (token, pnid, waba, field) in cases {
        let asked = app.graph.recorded().len();
        let (status, body) = post_number(
            &app,
            json!({"whatsapp_phone_number": {
                "phone_number_id": pnid, "business_account_id": waba, "access_token": token}}),
        )
        .await;
        assert_eq!(status, 422, "{token} for {pnid} in {waba}: {body}");
        assert_eq!(
            body["details"][0]["field"], field,
            "{token}/{pnid}/{waba}: {body}"
        );
        let calls = app.graph.recorded()[asked..].to_vec();
        assert!(
            calls
                .iter()
                .any(|c| c.path_and_query.starts_with(&format!("/v23.0/{pnid}?"))
                    && c.headers["authorization"] == format!("Bearer {token}").as_str()),
            "Graph was asked with {token}: {calls:?}"
        );
    }
    let (_, listed) = app.get(PATH).await;
    assert_eq!(listed["data"], json!([]), "nothing was stored");

    // The owner's token connects; another number's token does not replace it.
    app.connect_number(&app.api_key, A, A_WABA, "token-a").await;
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("{PATH}/{A}"),
            Some(json!({"whatsapp_phone_number": {"access_token": "token-b"}})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"][0]["field"], "access_token", "{body}");
    let profile = app
        .request(
            Method::GET,
            &format!("/meta/whatsapp/v24.0/{A}/whatsapp_business_profile"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        profile.status(),
        200,
        "the owner's token still reaches Graph"
    );
    assert_eq!(app.graph.last().headers["authorization"], "Bearer token-a");
}

crate::both_backends!(app:
    verification_is_negative_unless_the_token_owns_the_number,
    connect_returns_the_full_object_without_secrets,
    connect_validation_names_each_field,
    duplicate_connect_is_409_and_keeps_the_original,
    an_older_graph_still_verifies_with_the_base_fields,
    customer_form_connects_and_lists,
    list_pages_with_meta,
    patch_updates_fields_and_rotates_secret,
    delete_disconnects,
    other_projects_numbers_look_like_unknown_ones,
    platform_auth_errors,
);
