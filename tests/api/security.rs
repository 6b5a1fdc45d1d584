//! The security suite: a BOLA matrix over every route form (another project's ids answer exactly
//! like ids that do not exist, and leak nothing), Bearer tokens confined to their own number, a
//! flood of bad keys answered without the database, and no secret stored in clear.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::receiver::Hook;
use crate::common::{meta, TestApp};

const V: &str = "/meta/whatsapp/v24.0";
const ALT: &str = "/api/meta/v24.0";
const A_PNID: &str = "311000000000001";
const A_WABA: &str = "321000000000001";
const A_TOKEN: &str = "EAAG-project-a-secret-token";
const B_PNID: &str = "411000000000001";
const B_WABA: &str = "421000000000001";
const B_TOKEN: &str = "EAAG-project-b-secret-token";
const A_WA_ID: &str = "15553330001";
const A_WAMID: &str = "wamid.SECURITY.A.1";
const A_CALL: &str = "wacid.SECURITY.A.1";
const A_WEBHOOK_SECRET: &str = "project-a-webhook-secret-value";

async fn signed(app: &TestApp, body: Value) {
    app.post_webhook_ok(body.to_string().as_bytes()).await;
}

fn change(field: &str, value: Value) -> Value {
    meta::envelope(A_WABA, field, value)
}

/// Project A's world: a number with a destination, a customer and its setup link, a contact, a
/// conversation, a message, a call and a delivery. Returns the ids a foreign caller will probe.
struct World {
    conversation: String,
    contact: String,
    customer: String,
    setup_link: String,
    delivery: String,
    setup_url: String,
}

async fn project_a(app: &TestApp) -> World {
    let receiver = Hook::start().await;
    app.connect_number_with(
        &app.api_key,
        json!({
            "phone_number_id": A_PNID, "business_account_id": A_WABA, "access_token": A_TOKEN,
            "display_phone_number": "+1 555-333-0000", "webhook_destination_url": receiver.url,
            "webhook_secret": A_WEBHOOK_SECRET}),
    )
    .await;
    let meta = json!({"display_phone_number": "15553330000", "phone_number_id": A_PNID});
    signed(app, change("messages", json!({"messaging_product": "whatsapp", "metadata": meta,
        "contacts": [{"profile": {"name": "Alice"}, "wa_id": A_WA_ID}],
        "messages": [{"from": A_WA_ID, "id": A_WAMID, "timestamp": "1750000000", "type": "text", "text": {"body": "private words"}}]}))).await;
    signed(app, change("calls", json!({"messaging_product": "whatsapp", "metadata": meta,
        "calls": [{"id": A_CALL, "from": A_WA_ID, "to": "15553330000", "event": "connect", "timestamp": "1750000001", "direction": "USER_INITIATED"}]}))).await;
    receiver.wait_for(2, Duration::from_secs(10)).await;

    let get = |path: String| async move {
        let response = app.request(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json::<Value>().await.unwrap()
    };
    let conversations = get(format!("{V}/{A_PNID}/conversations")).await;
    let contacts = get(format!("{V}/{A_PNID}/contacts")).await;
    let deliveries = get("/platform/v1/webhook_deliveries".into()).await;
    let customer = app
        .request(Method::POST, "/platform/v1/customers")
        .json(&json!({"customer": {"name": "A's customer"}}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let customer = customer["data"]["id"].as_str().unwrap().to_owned();
    let link = app
        .request(
            Method::POST,
            &format!("/platform/v1/customers/{customer}/setup_links"),
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    World {
        conversation: conversations["data"][0]["id"].as_str().unwrap().to_owned(),
        contact: contacts["data"][0]["id"].as_str().unwrap().to_owned(),
        delivery: deliveries["data"][0]["id"].as_str().unwrap().to_owned(),
        setup_link: link["data"]["id"].as_str().unwrap().to_owned(),
        setup_url: link["data"]["url"].as_str().unwrap().to_owned(),
        customer,
    }
}

/// A probe: method, path with `{…}` placeholders filled from either the foreign or unknown ids.
struct Ids<'a> {
    pnid: &'a str,
    waba: &'a str,
    wamid: &'a str,
    wa_id: &'a str,
    conversation: &'a str,
    contact: &'a str,
    call: &'a str,
    customer: &'a str,
    setup_link: &'a str,
    delivery: &'a str,
}

fn probes(ids: &Ids<'_>) -> Vec<(Method, String, Option<Value>)> {
    let Ids {
        pnid,
        waba,
        wamid,
        wa_id,
        conversation,
        contact,
        call,
        customer,
        setup_link,
        delivery,
    } = ids;
    let send = json!({"messaging_product": "whatsapp", "to": "15550000000", "type": "text", "text": {"body": "x"}});
    let mut out = Vec::new();
    for mount in [V, ALT] {
        out.extend([
            (
                Method::GET,
                format!("{mount}/{pnid}/whatsapp_business_profile"),
                None,
            ),
            (Method::GET, format!("{mount}/{pnid}"), None),
            // Bare objects with other methods and with field expansion: Meta, asked with a
            // token that reaches them, would answer (the double below does).
            (
                Method::POST,
                format!("{mount}/{pnid}"),
                Some(json!({"pin": "123456"})),
            ),
            (Method::DELETE, format!("{mount}/{pnid}"), None),
            (
                Method::GET,
                format!("{mount}/{pnid}?fields=verified_name,display_phone_number"),
                None,
            ),
            (Method::GET, format!("{mount}/{waba}"), None),
            (
                Method::GET,
                format!("{mount}/{waba}?fields=phone_numbers%7Bid%7D,message_templates"),
                None,
            ),
            (
                Method::POST,
                format!("{mount}/{waba}"),
                Some(json!({"name": "taken over"})),
            ),
            (
                Method::POST,
                format!("{mount}/{pnid}/messages"),
                Some(send.clone()),
            ),
            (Method::POST, format!("{mount}/{pnid}/media"), None),
            (
                Method::GET,
                format!("{mount}/{waba}/message_templates"),
                None,
            ),
            (Method::GET, format!("{mount}/{waba}/phone_numbers"), None),
            (
                Method::GET,
                format!("{mount}/9990001112223?phone_number_id={pnid}"),
                None,
            ),
            (
                Method::DELETE,
                format!("{mount}/9990001112223?phone_number_id={pnid}"),
                None,
            ),
            (Method::GET, format!("{mount}/{pnid}/messages"), None),
            (
                Method::GET,
                format!("{mount}/{pnid}/messages/{wamid}"),
                None,
            ),
            (Method::GET, format!("{mount}/{pnid}/conversations"), None),
            (
                Method::GET,
                format!("{mount}/{pnid}/conversations/{conversation}"),
                None,
            ),
            (
                Method::GET,
                format!("{mount}/conversations/{conversation}"),
                None,
            ),
            (
                Method::PATCH,
                format!("{mount}/conversations/{conversation}"),
                Some(json!({"status": "ended"})),
            ),
            (Method::GET, format!("{mount}/{pnid}/contacts"), None),
            (
                Method::GET,
                format!("{mount}/{pnid}/contacts/{wa_id}"),
                None,
            ),
            (
                Method::PATCH,
                format!("{mount}/{pnid}/contacts/{wa_id}"),
                Some(json!({"display_name": "pwned"})),
            ),
            (
                Method::PATCH,
                format!("{mount}/contacts/{contact}"),
                Some(json!({"name": "pwned"})),
            ),
            (Method::GET, format!("{mount}/{pnid}/calls"), None),
            (
                Method::GET,
                format!("{mount}/calls?phone_number_id={pnid}"),
                None,
            ),
            (
                Method::GET,
                format!("{mount}/calls/{call}?phone_number_id={pnid}"),
                None,
            ),
            (Method::GET, format!("{mount}/{pnid}/username"), None),
            (
                Method::POST,
                format!("{mount}/{pnid}/username"),
                Some(json!({"username": "acme_support"})),
            ),
            (
                Method::POST,
                format!("{mount}/{pnid}/register"),
                Some(json!({"messaging_product": "whatsapp", "pin": "123456"})),
            ),
        ]);
    }
    out.extend([
        (Method::GET, format!("/platform/v1/whatsapp/phone_numbers/{pnid}"), None),
        (Method::PATCH, format!("/platform/v1/whatsapp/phone_numbers/{pnid}"), Some(json!({"whatsapp_phone_number": {"name": "pwned"}}))),
        (Method::DELETE, format!("/platform/v1/whatsapp/phone_numbers/{pnid}"), None),
        (Method::POST, format!("/platform/v1/whatsapp/phone_numbers/{pnid}/webhook_replays"), Some(json!({"since": "2020-01-01T00:00:00Z"}))),
        (Method::GET, format!("/platform/v1/webhook_deliveries?phone_number_id={pnid}"), None),
        (Method::GET, format!("/platform/v1/webhook_deliveries/{delivery}"), None),
        (Method::POST, format!("/platform/v1/webhook_deliveries/{delivery}/retry"), None),
        (Method::GET, format!("/platform/v1/customers/{customer}"), None),
        (Method::PATCH, format!("/platform/v1/customers/{customer}"), Some(json!({"customer": {"name": "pwned"}}))),
        (Method::DELETE, format!("/platform/v1/customers/{customer}?force=true"), None),
        (Method::GET, format!("/platform/v1/customers/{customer}/setup_links"), None),
        (Method::POST, format!("/platform/v1/customers/{customer}/setup_links"), Some(json!({}))),
        (Method::PATCH, format!("/platform/v1/customers/{customer}/setup_links/{setup_link}"), Some(json!({"setup_link": {"status": "revoked"}}))),
        (Method::GET, format!("/platform/v1/customers/{customer}/whatsapp/phone_numbers"), None),
        (Method::POST, format!("/platform/v1/customers/{customer}/whatsapp/phone_numbers"), Some(json!({"whatsapp_phone_number": {"phone_number_id": "5", "business_account_id": "6", "access_token": "t"}}))),
    ]);
    out
}

/// A response body with the probed ids masked (Graph's messages name the object) and the
/// per-request trace id removed, so a foreign and an unknown answer can be compared.
fn comparable(body: &str, ids: &Ids<'_>) -> Value {
    let mut text = body.to_owned();
    for id in [
        ids.pnid,
        ids.waba,
        ids.wamid,
        ids.wa_id,
        ids.conversation,
        ids.contact,
        ids.call,
        ids.customer,
        ids.setup_link,
        ids.delivery,
    ] {
        text = text.replace(id, "<id>");
    }
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.remove("fbtrace_id");
    }
    body
}

async fn bola_matrix(app: TestApp) {
    let world = project_a(&app).await;
    let (_, b_key) = app.other_project().await;
    app.graph.own(B_TOKEN, B_PNID, B_WABA);
    let response = app
        .request_with_key(Method::POST, "/platform/v1/whatsapp/phone_numbers", &b_key)
        .json(&json!({"whatsapp_phone_number": {"phone_number_id": B_PNID, "business_account_id": B_WABA, "access_token": B_TOKEN}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Graph as Meta answers a token that reaches every number and WABA here (one system-user
    // token shared by the projects): only wagate stands between B and A's objects.
    app.graph
        .reach_like_meta(&[A_PNID, A_WABA, B_PNID, B_WABA, "9990001112223"]);
    let graph_calls_before = app.graph.recorded().len();

    let foreign = Ids {
        pnid: A_PNID,
        waba: A_WABA,
        wamid: A_WAMID,
        wa_id: A_WA_ID,
        conversation: &world.conversation,
        contact: &world.contact,
        call: A_CALL,
        customer: &world.customer,
        setup_link: &world.setup_link,
        delivery: &world.delivery,
    };
    let (u1, u2, u3, u4, u5) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let unknown = Ids {
        pnid: "311999999999999",
        waba: "321999999999999",
        wamid: "wamid.SECURITY.UNKNOWN",
        wa_id: "15559999999",
        conversation: &u1,
        contact: &u2,
        call: "wacid.SECURITY.UNKNOWN",
        customer: &u3,
        setup_link: &u4,
        delivery: &u5,
    };
    let secrets = [
        A_TOKEN,
        A_WEBHOOK_SECRET,
        A_WA_ID,
        "private words",
        "Alice",
        &world.setup_url,
    ];
    let mut probes_run = 0;
    let mut leaks = Vec::new();
    // With a key of project B, and with B's number's own Bearer token.
    for (header, value) in [
        ("x-api-key", b_key.clone()),
        ("authorization", format!("Bearer {B_TOKEN}")),
    ] {
        let is_bearer = header == "authorization";
        for ((method, foreign_path, body), (_, unknown_path, _)) in
            probes(&foreign).into_iter().zip(probes(&unknown))
        {
            if is_bearer && foreign_path.starts_with("/platform/") {
                continue; // The Platform API takes project keys only (401 for Bearer).
            }
            let send = |path: &str| {
                let mut request = app
                    .client
                    .request(method.clone(), app.url(path))
                    .header(header, &value);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                request.send()
            };
            let a = send(&foreign_path).await.unwrap();
            let (a_status, a_body) = (a.status().as_u16(), a.text().await.unwrap());
            let b = send(&unknown_path).await.unwrap();
            let (b_status, b_body) = (b.status().as_u16(), b.text().await.unwrap());
            probes_run += 1;
            let a_json = comparable(&a_body, &foreign);
            let b_json = comparable(&b_body, &unknown);
            let leaked = secrets.iter().find(|s| a_body.contains(*s));
            // A leak: the foreign id answers differently from an unknown one (status or body),
            // any of A's data shows, or the foreign probe succeeded at all.
            if a_status != b_status
                || a_json != b_json
                || leaked.is_some()
                || (200..300).contains(&a_status)
            {
                leaks.push(format!(
                    "{header} {method} {foreign_path}: {a_status} {a_body} vs unknown {b_status} {b_body} (leaked: {leaked:?})"
                ));
            }
        }
    }
    println!("BOLA matrix: {} leaks of {probes_run} probes", leaks.len());
    assert!(
        leaks.is_empty(),
        "{} leaks of {probes_run} probes:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    // A's token never reached Graph, and A's data is untouched.
    let with_a_token: Vec<_> = app.graph.recorded()[graph_calls_before..]
        .iter()
        .filter(|r| {
            r.headers
                .get("authorization")
                .is_some_and(|v| v.to_str().unwrap_or("").contains(A_TOKEN))
        })
        .map(|r| r.path_and_query.clone())
        .collect();
    assert!(
        with_a_token.is_empty(),
        "foreign probes used A's token: {with_a_token:?}"
    );
    // Nor did any request about A's number or WABA reach Graph, whatever token it carried.
    let about_a: Vec<_> = app.graph.recorded()[graph_calls_before..]
        .iter()
        .map(|r| r.path_and_query.clone())
        .filter(|p| p.contains(A_PNID) || p.contains(A_WABA))
        .collect();
    assert!(about_a.is_empty(), "forwarded to Graph: {about_a:?}");
    let number = app
        .request(
            Method::GET,
            &format!("/platform/v1/whatsapp/phone_numbers/{A_PNID}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(number.status(), 200);
    let contact = app
        .request(Method::GET, &format!("{V}/{A_PNID}/contacts/{A_WA_ID}"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_ne!(contact["display_name"], "pwned");
    let conversation = app
        .request(
            Method::GET,
            &format!("{V}/conversations/{}", world.conversation),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(conversation["status"], "active");
    let links = app
        .request(
            Method::GET,
            &format!(
                "/platform/v1/customers/{}/setup_links?status=active",
                world.customer
            ),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(links["data"].as_array().unwrap().len(), 1);
}

async fn auth_failures(app: TestApp) {
    let path = format!("{V}/{A_PNID}/whatsapp_business_profile");
    let revoked = wagate::domain::projects::create_project(&*app.store, &app.checksum, "revoked")
        .await
        .unwrap()
        .1;
    let record = app
        .store
        .find_api_key_by_hash(&wagate::crypto::sha256_hex(revoked.plaintext.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    app.store.revoke_api_key(record.id).await.unwrap();
    let forged = forged_key(&app);
    // The checksum anyone can compute, and a key of a server with another master key.
    let unkeyed = unkeyed_checksum_key();
    let foreign = wagate::crypto::ApiKeyChecksum::new(&[7u8; 32]).new_key();
    for (headers, status, code) in [
        (vec![], 401, 104),
        // A header that is present but unusable is a bad credential, not a missing one.
        (vec![("x-api-key", "")], 401, 190),
        (vec![("x-api-key", "not-a-key")], 401, 190),
        (vec![("x-api-key", forged.as_str())], 401, 190),
        (vec![("x-api-key", unkeyed.as_str())], 401, 190),
        (vec![("x-api-key", foreign.as_str())], 401, 190),
        (vec![("x-api-key", revoked.plaintext.as_str())], 401, 190),
        (vec![("authorization", "Bearer ")], 401, 190),
        (vec![("authorization", "Basic dXNlcjpwYXNz")], 401, 190),
        (
            vec![("authorization", "Bearer EAAG-never-issued")],
            401,
            190,
        ),
    ] {
        let mut request = app.client.get(app.url(&path));
        for (k, v) in &headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{headers:?}: {body}");
    }
    for (key, status) in [
        ("", 401),
        ("wag_x", 401),
        (forged.as_str(), 401),
        (unkeyed.as_str(), 401),
        (foreign.as_str(), 401),
        (revoked.plaintext.as_str(), 401),
    ] {
        let response = app
            .request_with_key(Method::GET, "/platform/v1/whatsapp/phone_numbers", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{key}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
}

/// Keys that were never issued fail their shape or checksum before any lookup: with the database
/// gone, a flood of them is still answered 401 (never 503), fast. The flood holds every kind of
/// key anyone can make without the server's secret: one-character typos of a real key, keys with
/// the unkeyed SHA-256 checksum computed the way old keys had it, keys minted under another
/// master key, and old-format keys (`wag_` + 43, no checksum) matching no live legacy key. The
/// failure limit is raised here: it is tested in `credentials.rs`.
async fn bad_key_flood_needs_no_database(app: TestApp) {
    app.store.close().await;
    let started = std::time::Instant::now();
    let mut statuses = std::collections::BTreeMap::new();
    let other_server = wagate::crypto::ApiKeyChecksum::new(&[7u8; 32]);
    let requests: Vec<_> = (0..2000)
        .map(|i| {
            let key = match i % 5 {
                0 => forged_key(&app),
                1 => unkeyed_checksum_key(),
                2 => other_server.new_key(),
                3 => format!("wag_{}", wagate::crypto::random_token(32)),
                // Malformed: any length but the ones keys were ever issued with.
                _ => format!("wag_{}", "x".repeat((i % 60) + usize::from(i % 60 >= 43))),
            };
            app.client
                .get(app.url(&format!("{V}/{A_PNID}/messages")))
                .header("x-api-key", key)
                .send()
        })
        .collect();
    for response in futures::future::join_all(requests).await {
        *statuses
            .entry(response.unwrap().status().as_u16())
            .or_insert(0) += 1;
    }
    println!(
        "bad-key flood: 2000 requests in {:?}, statuses {statuses:?}",
        started.elapsed()
    );
    assert_eq!(statuses.get(&401), Some(&2000), "{statuses:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

fn no_failure_limit(config: &mut wagate::config::Config) {
    config.security.failed_auth_burst = 1_000_000;
}

/// A real key of this app with one character of its random part changed.
fn forged_key(app: &TestApp) -> String {
    let mut key = app.checksum.new_key();
    let c = if &key[8..9] == "Q" { "R" } else { "Q" };
    key.replace_range(8..9, c);
    key
}

/// `wag_` + 43 random characters + the unkeyed checksum (first 4 bytes of SHA-256 of the rest, in
/// hex) that keys carried before it was keyed: anyone can compute it.
pub fn unkeyed_checksum_key() -> String {
    use sha2::Digest as _;
    let body = format!("wag_{}", wagate::crypto::random_token(32));
    let check = hex::encode(&sha2::Sha256::digest(body.as_bytes())[..4]);
    body + &check
}

/// Reads every row of every table as text (PostgreSQL) or the raw database files (SQLite) and
/// looks for any secret in clear.
async fn secrets_are_not_stored_in_clear(app: TestApp) {
    let world = project_a(&app).await;
    let token = world.setup_url.rsplit('/').next().unwrap().to_owned();
    let secrets = [
        A_TOKEN,
        A_WEBHOOK_SECRET,
        app.api_key.as_str(),
        token.as_str(),
    ];
    let url = secrecy::ExposeSecret::expose_secret(&app.config.database.url).to_owned();
    let dump: Vec<u8> = if url.starts_with("sqlite") {
        // Let WAL pages settle, then read the files themselves: nothing hides in a column type.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = url.trim_start_matches("sqlite://");
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            if let Ok(b) = std::fs::read(format!("{path}{suffix}")) {
                bytes.extend(b);
            }
        }
        bytes
    } else {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let tables: Vec<(String,)> =
            sqlx::query_as("select tablename::text from pg_tables where schemaname = 'public'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let mut text = String::new();
        for (table,) in tables {
            let rows: Vec<(String,)> = sqlx::query_as(&format!("select t::text from {table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for (row,) in rows {
                text.push_str(&row);
                text.push('\n');
            }
        }
        // bytea columns print as hex: look for the hex of each secret too.
        text.into_bytes()
    };
    assert!(
        dump.len() > 1000,
        "the dump holds the data ({} bytes)",
        dump.len()
    );
    let haystack = String::from_utf8_lossy(&dump);
    let mut found = Vec::new();
    for secret in secrets {
        if haystack.contains(secret) || haystack.contains(&hex::encode(secret)) {
            found.push(secret);
        }
    }
    // The stored message text is in clear (it is data, not a secret): proves the dump is real.
    assert!(
        haystack.contains("private words"),
        "dump reads the stored data"
    );
    println!(
        "secrets at rest: {} of {} found in clear",
        found.len(),
        secrets.len()
    );
    assert!(found.is_empty(), "secrets stored in clear: {found:?}");
}

crate::both_backends!(app:
    bola_matrix,
    auth_failures,
    secrets_are_not_stored_in_clear
);
crate::both_backends!(app with no_failure_limit: bad_key_flood_needs_no_database);
