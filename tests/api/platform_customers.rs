//! `/platform/v1/customers` and their setup links: every field rule, paging, and isolation.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;

async fn new_customer(app: &TestApp, name: &str, external: Option<&str>) -> String {
    let (status, body) = app
        .call(
            Method::POST,
            "/platform/v1/customers",
            Some(json!({"customer": {"name": name, "external_customer_id": external}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

fn fields(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn customers_crud_filters_and_paging(app: TestApp) {
    let id = new_customer(&app, "Acme Corp", Some("cus_1")).await;
    let (status, body) = app
        .call(Method::GET, &format!("/platform/v1/customers/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["name"], "Acme Corp");
    assert_eq!(data["external_customer_id"], "cus_1");
    for key in ["id", "created_at", "updated_at"] {
        assert!(data.get(key).is_some(), "{key}");
    }
    for i in 0..4 {
        new_customer(&app, &format!("Globex {i}"), None).await;
    }
    // Duplicate external id: 409.
    let (status, body) = app
        .call(
            Method::POST,
            "/platform/v1/customers",
            Some(json!({"customer": {"name": "Again", "external_customer_id": "cus_1"}})),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    let (_, page) = app
        .call(
            Method::GET,
            "/platform/v1/customers?name=globex&per_page=3",
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(
        page["meta"],
        json!({"page": 1, "per_page": 3, "total_pages": 2, "total_count": 4})
    );
    assert_eq!(page["data"][0]["name"], "Globex 3", "newest first");
    let (_, second) = app
        .call(
            Method::GET,
            "/platform/v1/customers?name=globex&per_page=3&page=2",
            None,
        )
        .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    let (_, by_external) = app
        .call(
            Method::GET,
            "/platform/v1/customers?external_customer_id=cus_1",
            None,
        )
        .await;
    assert_eq!(by_external["data"].as_array().unwrap().len(), 1);
    // `%` and `_` in the name filter are literal.
    let (_, literal) = app
        .call(Method::GET, "/platform/v1/customers?name=%25", None)
        .await;
    assert_eq!(literal["meta"]["total_count"], 0);

    let (status, updated) = app
        .call(
            Method::PATCH,
            &format!("/platform/v1/customers/{id}"),
            Some(json!({"customer": {"name": "Acme Inc", "external_customer_id": null}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["data"]["name"], "Acme Inc");
    assert_eq!(updated["data"]["external_customer_id"], Value::Null);

    for (body, field) in [
        (json!({"customer": {}}), "name"),
        (json!({"customer": {"name": ""}}), "name"),
        (json!({"customer": {"name": "x".repeat(256)}}), "name"),
        (
            json!({"customer": {"name": "ok", "external_customer_id": ""}}),
            "external_customer_id",
        ),
    ] {
        let (status, error) = app
            .call(Method::POST, "/platform/v1/customers", Some(body))
            .await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(fields(&error), [field]);
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/platform/v1/customers",
            Some(json!({"name": "unwrapped"})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .call(Method::GET, "/platform/v1/customers?per_page=101", None)
        .await;
    assert_eq!(status, 400);

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/platform/v1/customers/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .call(Method::GET, &format!("/platform/v1/customers/{id}"), None)
        .await;
    assert_eq!(status, 404);
}

async fn deleting_a_customer_with_numbers_needs_force(app: TestApp) {
    let id = new_customer(&app, "Has numbers", None).await;
    app.graph.own("EAAG-c1", "5550001", "6660001");
    let (status, body) = app.call(Method::POST,
        &format!("/platform/v1/customers/{id}/whatsapp/phone_numbers"),
        Some(json!({"whatsapp_phone_number": {
            "phone_number_id": "5550001", "business_account_id": "6660001", "access_token": "EAAG-c1",
            "display_phone_number": "+1 555-000-0001"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/platform/v1/customers/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("force=true"));
    let (status, _) = app
        .call(Method::GET, &format!("/platform/v1/customers/{id}"), None)
        .await;
    assert_eq!(status, 200, "nothing deleted");
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/platform/v1/customers/{id}?force=maybe"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/platform/v1/customers/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, number) = app
        .call(
            Method::GET,
            "/platform/v1/whatsapp/phone_numbers/5550001",
            None,
        )
        .await;
    assert_eq!(status, 200, "the number stays connected");
    assert_eq!(number["data"]["customer_id"], Value::Null);
}

async fn setup_links_rules(app: TestApp) {
    let customer = new_customer(&app, "Links", None).await;
    let path = format!("/platform/v1/customers/{customer}/setup_links");
    let (status, first) = app
        .call(Method::POST, &path, Some(json!({"setup_link": {}})))
        .await;
    assert_eq!(status, 201, "{first}");
    let link = &first["data"];
    assert_eq!(link["status"], "active");
    assert_eq!(
        link["allowed_connection_types"],
        json!(["coexistence", "dedicated"])
    );
    assert_eq!(link["phone_number_country_isos"], json!(["US"]));
    assert_eq!(link["provision_phone_number"], false);
    assert_eq!(link["theme_config"]["primary_color"], "#3b82f6");
    assert_eq!(link["theme_config"].as_object().unwrap().len(), 12);
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/setup/", app.base)), "{url}");
    let created =
        chrono::DateTime::parse_from_rfc3339(link["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(link["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::days(30));

    // A second link revokes the first.
    let (status, second) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"setup_link": {
                "success_redirect_url": "https://app.example.com/done",
                "failure_redirect_url": "https://app.example.com/failed",
                "allowed_connection_types": ["dedicated"],
                "theme_config": {"primary_color": "#FF0000"},
                "language": "es",
                "phone_number_country_isos": ["br", "US"],
            }})),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["data"]["theme_config"]["primary_color"], "#ff0000");
    assert_eq!(
        second["data"]["phone_number_country_isos"],
        json!(["BR", "US"])
    );
    let (_, list) = app.call(Method::GET, &path, None).await;
    let statuses: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("active"), json!("revoked")]);
    assert_eq!(list["meta"]["total_count"], 2);
    let (_, active) = app
        .call(Method::GET, &format!("{path}?status=active"), None)
        .await;
    assert_eq!(active["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        active["data"][0]["url"], second["data"]["url"],
        "url shown again in lists"
    );
    let (_, revoked) = app
        .call(Method::GET, &format!("{path}?status=revoked"), None)
        .await;
    assert_eq!(revoked["data"][0]["id"], link["id"]);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, none) = app
        .call(Method::GET, &format!("{path}?created_after={future}"), None)
        .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
    for bad in ["?status=bogus", "?created_after=yesterday", "?per_page=0"] {
        let (status, _) = app.call(Method::GET, &format!("{path}{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
    }

    // Field rules, each naming its field.
    for (body, field) in [
        (
            json!({"success_redirect_url": "/relative"}),
            "success_redirect_url",
        ),
        (
            json!({"failure_redirect_url": "ftp://x.example.com"}),
            "failure_redirect_url",
        ),
        (
            json!({"allowed_connection_types": []}),
            "allowed_connection_types",
        ),
        (
            json!({"allowed_connection_types": ["cloud"]}),
            "allowed_connection_types",
        ),
        (
            json!({"theme_config": {"primary_color": "blue"}}),
            "theme_config.primary_color",
        ),
        (
            json!({"theme_config": {"primary_color": "#12345"}}),
            "theme_config.primary_color",
        ),
        (
            json!({"theme_config": {"brand": "#123456"}}),
            "theme_config.brand",
        ),
        (json!({"language": "fr"}), "language"),
        (
            json!({"phone_number_country_isos": ["XX"]}),
            "phone_number_country_isos",
        ),
        (
            json!({"phone_number_country_isos": []}),
            "phone_number_country_isos",
        ),
        (
            json!({"provision_phone_number": true}),
            "provision_phone_number",
        ),
        (
            json!({"phone_number_area_code": "abc"}),
            "phone_number_area_code",
        ),
        (
            json!({"reconnect_phone_number": "+15559990000"}),
            "reconnect_phone_number",
        ),
        (
            json!({"reconnect_phone_number": "5559990000"}),
            "reconnect_phone_number",
        ),
    ] {
        let (status, error) = app
            .call(
                Method::POST,
                &path,
                Some(json!({"setup_link": body.clone()})),
            )
            .await;
        assert_eq!(status, 422, "{body} → {error}");
        assert_eq!(fields(&error), [field], "{body}");
    }
    let (status, _) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"setup_link": {"unknown": 1}})),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");
    let (_, list) = app
        .call(Method::GET, &format!("{path}?status=active"), None)
        .await;
    assert_eq!(
        list["data"][0]["id"], second["data"]["id"],
        "refused creations revoke nothing"
    );

    // PATCH: revoke, move the expiry; nothing else.
    let link_path = format!("{path}/{}", second["data"]["id"].as_str().unwrap());
    let later = (chrono::Utc::now() + chrono::Duration::days(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, moved) = app
        .call(
            Method::PATCH,
            &link_path,
            Some(json!({"setup_link": {"expires_at": later}})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["data"]["expires_at"], json!(later));
    for body in [
        json!({"status": "used"}),
        json!({"status": "active"}),
        json!({"expires_at": "2001-01-01T00:00:00Z"}),
        json!({"expires_at": "soon"}),
    ] {
        let (status, error) = app
            .call(
                Method::PATCH,
                &link_path,
                Some(json!({"setup_link": body.clone()})),
            )
            .await;
        assert_eq!(status, 422, "{body} → {error}");
    }
    let (status, revoked) = app
        .call(
            Method::PATCH,
            &link_path,
            Some(json!({"setup_link": {"status": "revoked"}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(revoked["data"]["status"], "revoked");
    assert!(revoked["data"]["revoked_at"].is_string());
    let (status, _) = app
        .call(
            Method::PATCH,
            &link_path,
            Some(json!({"setup_link": {"expires_at": later}})),
        )
        .await;
    assert_eq!(status, 422, "a revoked link cannot be extended");
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("{path}/{}", uuid::Uuid::now_v7()),
            Some(json!({"setup_link": {"status": "revoked"}})),
        )
        .await;
    assert_eq!(status, 404);
}

async fn reconnect_links_lock_to_the_existing_number(app: TestApp) {
    let customer = new_customer(&app, "Reconnect", None).await;
    let connect = |pnid: &str, display: &str, coexistence: bool| {
        json!({"whatsapp_phone_number": {"phone_number_id": pnid, "business_account_id": "7770001",
            "access_token": format!("EAAG-{pnid}"), "display_phone_number": display, "is_coexistence": coexistence}})
    };
    let numbers = format!("/platform/v1/customers/{customer}/whatsapp/phone_numbers");
    let (status, body) = app
        .call(
            Method::POST,
            &numbers,
            Some(connect("8880001", "+1 555-888-0001", true)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/platform/v1/customers/{customer}/setup_links");
    let (status, link) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"setup_link": {"reconnect_phone_number": "+15558880001"}})),
        )
        .await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(
        link["data"]["allowed_connection_types"],
        json!(["coexistence"]),
        "locked to the number's type"
    );
    assert_eq!(link["data"]["reconnect_phone_number"], "+15558880001");
    for (body, field) in [
        (
            json!({"reconnect_phone_number": "+15558880001", "provision_phone_number": true}),
            "provision_phone_number",
        ),
        (
            json!({"reconnect_phone_number": "+15558880001", "allowed_connection_types": ["dedicated"]}),
            "allowed_connection_types",
        ),
    ] {
        let (status, error) = app
            .call(Method::POST, &path, Some(json!({"setup_link": body})))
            .await;
        assert_eq!(status, 422, "{error}");
        assert_eq!(fields(&error), [field]);
    }
    // A second config with the same number: a distinct 422.
    let (status, _) = app
        .call(
            Method::POST,
            &numbers,
            Some(connect("8880002", "+1 (555) 888-0001", false)),
        )
        .await;
    assert_eq!(status, 201);
    let (status, error) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"setup_link": {"reconnect_phone_number": "+15558880001"}})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        error["error"].as_str().unwrap().contains("more than one"),
        "{error}"
    );
    // Another customer's number never matches.
    let other = new_customer(&app, "Other", None).await;
    let (status, error) = app
        .call(
            Method::POST,
            &format!("/platform/v1/customers/{other}/setup_links"),
            Some(json!({"setup_link": {"reconnect_phone_number": "+15558880001"}})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("must match an existing WhatsApp config for this customer"));
}

async fn customers_are_isolated_between_projects(app: TestApp) {
    let mine = new_customer(&app, "Mine", None).await;
    let (_, my_link) = app
        .call(
            Method::POST,
            &format!("/platform/v1/customers/{mine}/setup_links"),
            Some(json!({})),
        )
        .await;
    let link_id = my_link["data"]["id"].as_str().unwrap().to_owned();
    let (_, other_key) = app.other_project().await;
    let unknown = uuid::Uuid::now_v7().to_string();
    for id in [mine.as_str(), unknown.as_str(), "not-a-uuid"] {
        let mut bodies = Vec::new();
        for (method, path, body) in [
            (Method::GET, format!("/platform/v1/customers/{id}"), None),
            (
                Method::PATCH,
                format!("/platform/v1/customers/{id}"),
                Some(json!({"customer": {"name": "x"}})),
            ),
            (
                Method::DELETE,
                format!("/platform/v1/customers/{id}?force=true"),
                None,
            ),
            (
                Method::GET,
                format!("/platform/v1/customers/{id}/setup_links"),
                None,
            ),
            (
                Method::POST,
                format!("/platform/v1/customers/{id}/setup_links"),
                Some(json!({})),
            ),
            (
                Method::PATCH,
                format!("/platform/v1/customers/{id}/setup_links/{link_id}"),
                Some(json!({"setup_link": {"status": "revoked"}})),
            ),
        ] {
            let (status, body) = app.call_with_key(&other_key, method, &path, body).await;
            assert_eq!(status, 404, "{path}");
            bodies.push(body);
        }
        assert!(
            bodies
                .iter()
                .all(|b| b == &json!({"error": "customer not found"})),
            "{bodies:?}"
        );
    }
    let (_, list) = app
        .call_with_key(&other_key, Method::GET, "/platform/v1/customers", None)
        .await;
    assert_eq!(list["meta"]["total_count"], 0);
    let (_, still) = app
        .call(
            Method::GET,
            &format!("/platform/v1/customers/{mine}/setup_links?status=active"),
            None,
        )
        .await;
    assert_eq!(still["data"][0]["id"], json!(link_id), "nothing changed");
}

crate::both_backends!(app:
    customers_crud_filters_and_paging,
    deleting_a_customer_with_numbers_needs_force,
    setup_links_rules,
    customers_are_isolated_between_projects,
);

/// Numbers keep the display number given at connect (the Graph mock would answer its own).
fn unverified(config: &mut wagate::config::Config) {
    config.graph.verify_numbers = false;
}

crate::both_backends!(app with unverified: reconnect_links_lock_to_the_existing_number);
