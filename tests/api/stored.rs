//! The stored-data read API: lists with Graph cursors, filters, `fields=kapso(…)`, gets and
//! updates, errors and isolation, on both backends.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::ingest::{wamid_of, Env, PNID};

const V: &str = "/meta/whatsapp/v24.0";

pub(crate) async fn get(env: &Env, path: &str) -> (u16, Value) {
    let response = env
        .app
        .request(Method::GET, &format!("{V}/{path}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("application/json"));
    (status, response.json().await.unwrap())
}

pub(crate) async fn get_ok(env: &Env, path: &str) -> Value {
    let (status, body) = get(env, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn seed_texts(env: &Env, n: usize) -> Vec<String> {
    let mut wamids = Vec::new();
    for i in 0..n {
        let envelope = env.inbound(json!({"from": format!("1555000{:04}", i % 3), "type": "text", "text": {"body": format!("m{i}")}})).await;
        wamids.push(wamid_of(&envelope));
    }
    wamids
}

async fn paging_walks_every_row_once_both_ways(backend: Backend) {
    let env = Env::start(backend).await;
    let seeded = seed_texts(&env, 13).await;
    let first = get_ok(&env, &format!("{PNID}/messages")).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 13);
    for key in ["before", "after"] {
        assert!(first["paging"]["cursors"]
            .as_object()
            .unwrap()
            .contains_key(key));
    }
    assert_eq!(
        first["paging"]["cursors"]["after"],
        Value::Null,
        "one page only"
    );
    assert_eq!(first["paging"]["next"], Value::Null);
    assert_eq!(first["paging"]["previous"], Value::Null);
    let newest_first: Vec<String> = seeded.iter().rev().cloned().collect();
    assert_eq!(ids(&first), newest_first);

    // Fixed edge limits plus random ones (seed printed, and settable with WAGATE_TEST_SEED, so a
    // failure can be replayed).
    let seed: u64 = std::env::var("WAGATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("paging property: WAGATE_TEST_SEED={seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let random_limits: Vec<usize> = (0..4)
        .map(|_| rand::Rng::gen_range(&mut rng, 1..=16))
        .collect();
    for limit in [1usize, 2, 3, 5, 13, 100].into_iter().chain(random_limits) {
        // Forward, while new messages keep arriving: every seeded row exactly once, in order.
        let mut seen = Vec::new();
        let mut page = get_ok(&env, &format!("{PNID}/messages?limit={limit}")).await;
        let mut arrivals = 0;
        loop {
            assert!(page["data"].as_array().unwrap().len() <= limit);
            seen.extend(ids(&page));
            if arrivals < 2 {
                seed_texts(&env, 1).await;
                arrivals += 1;
            }
            let Some(after) = page["paging"]["cursors"]["after"].as_str() else {
                break;
            };
            let next = page["paging"]["next"].as_str().unwrap();
            assert!(
                next.starts_with("http://") && next.contains("after="),
                "{next}"
            );
            page = get_ok(
                &env,
                &format!("{PNID}/messages?limit={limit}&after={after}"),
            )
            .await;
        }
        let seeded_seen: Vec<&String> = seen.iter().filter(|id| seeded.contains(id)).collect();
        assert_eq!(
            seeded_seen,
            newest_first.iter().collect::<Vec<_>>(),
            "limit {limit}"
        );
        assert_eq!(
            seen.len(),
            seen.iter().collect::<HashSet<_>>().len(),
            "no duplicates at limit {limit}"
        );

        // Backward from the last page: the same rows in the same order.
        let mut back = ids(&page);
        while let Some(before) = page["paging"]["cursors"]["before"].as_str() {
            page = get_ok(
                &env,
                &format!("{PNID}/messages?limit={limit}&before={before}"),
            )
            .await;
            let mut earlier = ids(&page);
            earlier.extend(back);
            back = earlier;
        }
        let back_seeded: Vec<&String> = back.iter().filter(|id| seeded.contains(id)).collect();
        assert_eq!(
            back_seeded,
            newest_first.iter().collect::<Vec<_>>(),
            "backward at limit {limit}"
        );
    }
}

async fn bad_parameters_are_400_naming_the_parameter(backend: Backend) {
    let env = Env::start(backend).await;
    seed_texts(&env, 2).await;
    let conversations = get_ok(&env, &format!("{PNID}/conversations?limit=1")).await;
    let other_cursor = conversations["paging"]["cursors"]["after"]
        .as_str()
        .map(str::to_owned);
    let mut cases = vec![
        ("messages?limit=0", "limit"),
        ("messages?limit=101", "limit"),
        ("messages?limit=abc", "limit"),
        ("messages?after=garbage!", "after"),
        ("messages?before=eyJrIjoibSJ9", "before"),
        ("messages?direction=sideways", "direction"),
        ("messages?status=SENTISH", "status"),
        ("messages?since=yesterday", "since"),
        ("messages?until=2024-13-01", "until"),
        ("messages?conversation_id=nope", "conversation_id"),
        ("messages?has_media=maybe", "has_media"),
        ("messages?fields=kapso(", "fields"),
        ("messages?fields=kapso%28direction", "fields"),
        ("conversations?status=open", "status"),
        ("conversations?last_active_since=x", "last_active_since"),
        ("contacts?customer_id=x", "customer_id"),
        ("contacts?has_customer=yes", "has_customer"),
        ("calls?status=ringingish", "status"),
    ];
    let foreign = other_cursor.map(|c| format!("messages?after={c}"));
    if let Some(foreign) = &foreign {
        cases.push((foreign.as_str(), "after"));
    }
    for (query, param) in cases {
        let (status, body) = get(&env, &format!("{PNID}/{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], 100);
        let details = body["error"]["error_data"]["details"].as_str().unwrap();
        assert!(details.starts_with(param), "{query}: {details}");
    }
}

async fn fields_select_the_kapso_block(backend: Backend) {
    let env = Env::start(backend).await;
    env.inbound(json!({"from": "15551234567", "profile_name": "Ada", "type": "image"}))
        .await;
    let page = get_ok(&env, &format!("{PNID}/messages")).await;
    let message = &page["data"][0];
    assert!(message["id"].is_string() && message["timestamp"].is_string());
    assert_eq!(message["type"], "image");
    assert!(message["image"]["id"].is_string());
    let kapso = &message["kapso"];
    assert_eq!(kapso["direction"], "inbound");
    // Stored as Kapso's `received`, listed as `delivered`: the Python SDK's enum has no `received`.
    assert_eq!(kapso["status"], "delivered");
    // Kapso's meaning: a kept file exists, which the vault's download decides, not the type.
    let media_status = kapso["media_data"]["status"].as_str().unwrap();
    assert!(["pending", "stored"].contains(&media_status), "{kapso}");
    assert_eq!(kapso["has_media"], media_status == "stored", "{kapso}");
    assert_eq!(kapso["phone_number"], "+15551234567");
    assert_eq!(kapso["contact_name"], "Ada");
    assert!(kapso["content"].is_string());
    assert!(kapso["whatsapp_conversation_id"].is_string());

    let none = get_ok(&env, &format!("{PNID}/messages?fields=kapso()")).await;
    assert!(none["data"][0].get("kapso").is_none());
    for all in [
        "kapso(default)",
        "kapso(*)",
        "kapso%28all%29",
        "kapso(default,direction)",
    ] {
        let page = get_ok(&env, &format!("{PNID}/messages?fields={all}")).await;
        assert_eq!(page["data"][0]["kapso"]["direction"], "inbound", "{all}");
        assert_eq!(
            page["data"][0]["kapso"]["contact_name"], "Ada",
            "{all}: the default set too"
        );
    }
    let some = get_ok(
        &env,
        &format!("{PNID}/messages?fields=kapso(direction,status,not_a_field)"),
    )
    .await;
    let keys: Vec<&String> = some["data"][0]["kapso"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["direction", "status"]);

    // Conversations carry a kapso block only when asked.
    let plain = get_ok(&env, &format!("{PNID}/conversations")).await;
    assert!(plain["data"][0].get("kapso").is_none());
    let with = get_ok(
        &env,
        &format!("{PNID}/conversations?fields=kapso(messages_count,contact_name)"),
    )
    .await;
    assert_eq!(
        with["data"][0]["kapso"],
        json!({"messages_count": 1, "contact_name": "Ada"})
    );
}

async fn message_filters(backend: Backend) {
    let env = Env::start(backend).await;
    seed_texts(&env, 2).await;
    env.inbound(json!({"from": "15551234567", "type": "image"}))
        .await;
    let sent = env.send_text("15551234567").await;
    env.wait_message(&sent, |m| m.status == "read").await;
    let check = |query: &'static str, expected: usize| {
        let env = &env;
        async move {
            let page = get_ok(env, &format!("{PNID}/messages?{query}")).await;
            assert_eq!(
                page["data"].as_array().unwrap().len(),
                expected,
                "{query}: {page}"
            );
            page
        }
    };
    check("direction=inbound", 3).await;
    let outbound = check("direction=OUTBOUND", 1).await;
    assert_eq!(outbound["data"][0]["id"], sent.as_str());
    check("status=read", 1).await;
    check("status=received", 3).await;
    check("status=delivered", 3).await;
    check("type=image", 1).await;
    // `has_media` means a kept file: the vault's download runs after the ingest, so wait for it.
    crate::common::eventually(
        std::time::Duration::from_secs(15),
        "the image's file kept",
        || async {
            let page = get_ok(&env, &format!("{PNID}/messages?has_media=true")).await;
            (page["data"].as_array().unwrap().len() == 1).then_some(())
        },
    )
    .await;
    check("has_media=true", 1).await;
    check("has_media=false", 3).await;
    check("since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", 4).await;
    check("until=2000-01-01T00:00:00Z", 0).await;
    let conversation = get_ok(
        &env,
        &format!("{PNID}/conversations?phone_number=%2B15551234567"),
    )
    .await;
    let conversation_id = conversation["data"][0]["id"].as_str().unwrap().to_owned();
    let page = get_ok(
        &env,
        &format!("{PNID}/messages?conversation_id={conversation_id}"),
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);

    let one = get_ok(&env, &format!("{PNID}/messages/{sent}")).await;
    assert_eq!(one["id"], sent.as_str(), "single objects are bare");
    assert_eq!(one["kapso"]["direction"], "outbound");
    let (status, body) = get(&env, &format!("{PNID}/messages/wamid.nope")).await;
    assert_eq!(
        (status, body["error"]["error_subcode"].as_u64()),
        (404, Some(33))
    );
}

async fn conversations_get_and_update(backend: Backend) {
    let env = Env::start(backend).await;
    seed_texts(&env, 3).await; // three contacts (1555000000{0,1,2})
    let page = get_ok(&env, &format!("{PNID}/conversations")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let conversation = &page["data"][0];
    let id = conversation["id"].as_str().unwrap().to_owned();
    assert_eq!(conversation["status"], "active");
    assert_eq!(conversation["phone_number_id"], PNID);
    assert!(conversation["last_active_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let bare = get_ok(&env, &format!("conversations/{id}")).await;
    assert_eq!(bare["id"], id.as_str());
    let scoped = get_ok(&env, &format!("{PNID}/conversations/{id}")).await;
    assert_eq!(scoped["id"], id.as_str());

    let response = env
        .app
        .request(Method::PATCH, &format!("{V}/conversations/{id}"))
        .json(&json!({"status": "ended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"success": true})
    );
    let ended = get_ok(&env, &format!("{PNID}/conversations?status=ended")).await;
    assert_eq!(ids(&ended), vec![id.clone()]);
    assert!(ended["data"][0]["ended_at"].is_string());
    let bad = env
        .app
        .request(Method::PATCH, &format!("{V}/conversations/{id}"))
        .json(&json!({"status": "closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (status, _) = get(&env, &format!("conversations/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(status, 404);
    let (status, _) = get(&env, "conversations/not-a-uuid").await;
    assert_eq!(status, 404);
}

async fn contacts_get_and_update(backend: Backend) {
    let env = Env::start(backend).await;
    env.inbound(json!({"from": "15551234567", "profile_name": "Ada", "type": "text", "text": {"body": "hi"}})).await;
    env.inbound(json!({"user_id": "US.13491208655302741918", "username": "@bo", "type": "text", "text": {"body": "hi"}})).await;
    let page = get_ok(&env, &format!("{PNID}/contacts")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let by_phone = get_ok(&env, &format!("{PNID}/contacts/15551234567")).await;
    assert_eq!(by_phone["profile_name"], "Ada");
    let by_plus = get_ok(&env, &format!("{PNID}/contacts/%2B15551234567")).await;
    assert_eq!(by_plus["id"], by_phone["id"]);
    let by_bsuid = get_ok(&env, &format!("{PNID}/contacts/US.13491208655302741918")).await;
    assert_eq!(by_bsuid["wa_id"], Value::Null);
    assert_eq!(by_bsuid["username"], "@bo");
    let by_id = get_ok(
        &env,
        &format!("{PNID}/contacts/{}", by_bsuid["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(by_id["business_scoped_user_id"], "US.13491208655302741918");
    let filtered = get_ok(
        &env,
        &format!("{PNID}/contacts?business_scoped_user_id=US.13491208655302741918"),
    )
    .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    let filtered = get_ok(&env, &format!("{PNID}/contacts?wa_id=15551234567")).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);

    // JS SDK body, on the number's path.
    let response = env
        .app
        .request(Method::PATCH, &format!("{V}/{PNID}/contacts/15551234567"))
        .json(&json!({"display_name": "Ada (VIP)", "metadata": {"tier": "gold"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"success": true})
    );
    // Python SDK body, on the bare path.
    let customer = env.app.create_customer(env.app.project_id, "Acme").await;
    let response = env
        .app
        .request(
            Method::PATCH,
            &format!("{V}/contacts/US.13491208655302741918"),
        )
        .json(&json!({"phone_number_id": PNID, "name": "Bo", "customer_id": customer.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ada = get_ok(&env, &format!("{PNID}/contacts/15551234567")).await;
    assert_eq!(
        (
            ada["display_name"].as_str(),
            ada["metadata"]["tier"].as_str()
        ),
        (Some("Ada (VIP)"), Some("gold"))
    );
    let bo = get_ok(&env, &format!("{PNID}/contacts/US.13491208655302741918")).await;
    assert_eq!(bo["display_name"], "Bo");
    assert_eq!(bo["customer_id"], customer.to_string());
    let with_customer = get_ok(&env, &format!("{PNID}/contacts?has_customer=true")).await;
    assert_eq!(ids(&with_customer), [bo["id"].as_str().unwrap().to_owned()]);
    let by_customer = get_ok(&env, &format!("{PNID}/contacts?customer_id={customer}")).await;
    assert_eq!(by_customer["data"].as_array().unwrap().len(), 1);

    for body in [
        json!({}),
        json!({"metadata": "x"}),
        json!({"customer_id": uuid::Uuid::now_v7().to_string()}),
    ] {
        let response = env
            .app
            .request(Method::PATCH, &format!("{V}/{PNID}/contacts/15551234567"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    let (status, _) = get(&env, &format!("{PNID}/contacts/15550000000")).await;
    assert_eq!(status, 404);
}

async fn calls_list_and_get(backend: Backend) {
    let env = Env::start(backend).await;
    env.inject("calls", json!({"phone_number_id": PNID, "event": "connect", "call_id": "wacid.A", "from": "15551234567"})).await;
    env.inject("calls", json!({"phone_number_id": PNID, "event": "terminate", "call_id": "wacid.A", "from": "15551234567", "status": "COMPLETED", "duration": 9})).await;
    env.inject("calls", json!({"phone_number_id": PNID, "event": "connect", "call_id": "wacid.B", "from": "15557654321"})).await;
    let page = get_ok(&env, &format!("{PNID}/calls")).await;
    assert_eq!(ids(&page).len(), 2);
    let done = get_ok(
        &env,
        &format!("{PNID}/calls?status=COMPLETED&direction=INBOUND"),
    )
    .await;
    assert_eq!(done["data"].as_array().unwrap().len(), 1);
    assert_eq!(done["data"][0]["call_id"], "wacid.A");
    assert_eq!(done["data"][0]["status"], "completed");
    assert_eq!(done["data"][0]["duration_seconds"], 9);
    let by_query = get_ok(
        &env,
        &format!("calls?phone_number_id={PNID}&call_id=wacid.B"),
    )
    .await;
    assert_eq!(by_query["data"][0]["call_id"], "wacid.B");
    let one = get_ok(&env, &format!("calls/wacid.A?phone_number_id={PNID}")).await;
    assert_eq!(one["user_wa_id"], "15551234567");
    // The listed id addresses the call as well as Meta's (the SDKs' calls.get(list[0].id)).
    let id = done["data"][0]["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "wacid.A");
    let by_id = get_ok(&env, &format!("calls/{id}?phone_number_id={PNID}")).await;
    assert_eq!(
        (by_id["id"].as_str(), by_id["call_id"].as_str()),
        (Some(id.as_str()), Some("wacid.A"))
    );
    let filtered = get_ok(&env, &format!("calls?phone_number_id={PNID}&call_id={id}")).await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["data"][0]["call_id"], "wacid.A");
    let (status, _) = get(
        &env,
        &format!("calls/{}?phone_number_id={PNID}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_eq!(status, 404, "an unknown id is not found");
    let (status, body) = get(&env, "calls").await;
    assert_eq!(status, 400);
    assert!(body["error"]["error_data"]["details"]
        .as_str()
        .unwrap()
        .starts_with("phone_number_id"));
}

async fn other_projects_data_is_unreachable(backend: Backend) {
    let env = Env::start(backend).await;
    seed_texts(&env, 1).await;
    env.inject("calls", json!({"phone_number_id": PNID, "event": "connect", "call_id": "wacid.A", "from": "15551234567"})).await;
    let conversation = get_ok(&env, &format!("{PNID}/conversations")).await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, other_key) = env.app.other_project().await;
    let paths = [
        format!("{PNID}/messages"),
        format!("{PNID}/conversations"),
        format!("{PNID}/conversations/{conversation}"),
        format!("conversations/{conversation}"),
        format!("{PNID}/contacts"),
        format!("{PNID}/contacts/15550000000"),
        format!("{PNID}/calls"),
        format!("calls?phone_number_id={PNID}"),
        format!("calls/wacid.A?phone_number_id={PNID}"),
    ];
    for path in &paths {
        let response = env
            .app
            .request_with_key(Method::GET, &format!("{V}/{path}"), &other_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["error_subcode"], 33, "{path}");
    }
    let patch = env
        .app
        .request_with_key(
            Method::PATCH,
            &format!("{V}/conversations/{conversation}"),
            &other_key,
        )
        .json(&json!({"status": "ended"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 404);
    let still = get_ok(&env, &format!("conversations/{conversation}")).await;
    assert_eq!(still["status"], "active", "untouched");
}

/// The activity second is indexed (the list's order, `last_active_since`, the inactivity
/// sweep), and on SQLite the per-message update sets it only when it changed: messages in one
/// second, then one in a later second, must each leave the conversation where it belongs.
async fn a_later_message_moves_its_conversation_first(backend: Backend) {
    let env = Env::start(backend).await;
    let text =
        |from: &str, body: &str| json!({"from": from, "type": "text", "text": {"body": body}});
    let phones = |page: &Value| -> Vec<String> {
        let data = page["data"].as_array().unwrap();
        data.iter()
            .map(|c| c["phone_number"].as_str().unwrap().to_owned())
            .collect()
    };
    env.inbound(text("15550000001", "a1")).await;
    env.inbound(text("15550000001", "a2")).await;
    env.inbound(text("15550000002", "b1")).await;
    let page = get_ok(&env, &format!("{PNID}/conversations")).await;
    assert_eq!(phones(&page), ["15550000002", "15550000001"]);

    // A whole second later than b1, whichever fraction of a second it came in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    env.inbound(text("15550000001", "a3")).await;
    let page = get_ok(
        &env,
        &format!("{PNID}/conversations?fields=kapso(messages_count)"),
    )
    .await;
    assert_eq!(phones(&page), ["15550000001", "15550000002"], "{page}");
    assert_eq!(page["data"][0]["status"], "active");
    assert_eq!(page["data"][0]["kapso"]["messages_count"], 3);
    let recent = get_ok(
        &env,
        &format!("{PNID}/conversations?last_active_since={since}"),
    )
    .await;
    assert_eq!(phones(&recent), ["15550000001"], "{recent}");
}

crate::both_backends!(backend:
    paging_walks_every_row_once_both_ways,
    bad_parameters_are_400_naming_the_parameter,
    fields_select_the_kapso_block,
    message_filters,
    conversations_get_and_update,
    contacts_get_and_update,
    calls_list_and_get,
    other_projects_data_is_unreachable,
    a_later_message_moves_its_conversation_first,
);
